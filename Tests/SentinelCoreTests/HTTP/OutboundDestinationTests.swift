import Foundation
import SentinelCore
import SentinelTestSupport
import Testing

/// Resolves names from a table, like a DNS server an attacker controls would.
struct TableResolver: HostResolver {
    let table: [String: [String]]
    func resolve(host: String, port: Int) async throws -> [IPAddress] {
        guard let entries = table[host] else { throw OutboundHTTPError.connection("\(host): the name could not be resolved") }
        return entries.compactMap(IPAddress.init)
    }
}

@Suite("Outbound destinations")
struct OutboundDestinationTests {
    @Test("configured URLs must be https unless the host is loopback")
    func httpsRequired() throws {
        for ok in ["https://api.openai.com/v1", "http://127.0.0.1:8080", "http://127.9.9.9", "http://localhost:11434", "http://[::1]:8080"] {
            #expect(throws: Never.self) { try DestinationPolicy.requireSecure(URL(string: ok)!, field: "base_url") }
        }
        for bad in ["http://api.openai.com/v1", "http://10.0.0.5:8080", "http://169.254.169.254/latest"] {
            #expect(throws: DestinationError.insecureScheme(field: "base_url", url: bad)) {
                try DestinationPolicy.requireSecure(URL(string: bad)!, field: "base_url")
            }
        }
        #expect(throws: DestinationError.self) { try DestinationPolicy.requireSecure(URL(string: "ftp://example.com")!, field: "api_url") }
        // A port outside 1...65535 parses as a URL but no connection can use it.
        for (bad, port) in [("https://api.example.com:99999/v1", 99999), ("https://api.example.com:0", 0), ("http://127.0.0.1:70000", 70000)] {
            #expect(throws: DestinationError.invalidPort(field: "base_url", port: port)) {
                try DestinationPolicy.requireSecure(URL(string: bad)!, field: "base_url")
            }
        }
        #expect(throws: Never.self) { try DestinationPolicy.requireSecure(URL(string: "https://api.example.com:65535")!, field: "base_url") }
    }

    @Test("security.plain_http_hosts lets a model server on the internal network be named with http: exact names and address blocks, nothing else")
    func plainHTTPHosts() throws {
        var security = testConfig().security
        security.plainHTTPHosts = " Ollama.Corp.Example , 10.20.0.0/16,fd00:abcd::7, vllm "
        let policy = try DestinationPolicy(security)
        for ok in ["http://ollama.corp.example:11434/v1", "http://OLLAMA.corp.example/v1", "http://10.20.3.4:8000/v1", "http://[fd00:abcd::7]:8000",
                   "http://vllm:8000/v1", "http://127.0.0.1:11434", "https://api.openai.com/v1"] {
            #expect(throws: Never.self, "\(ok)") { try policy.requireSecure(URL(string: ok)!, field: "base_url") }
        }
        for refused in ["http://evil.ollama.corp.example/v1", "http://ollama.corp.example.evil.com/v1", "http://10.21.0.1:8000", "http://[fd00:abcd::8]",
                        "http://vllm.internal:8000", "http://api.openai.com/v1"] {
            #expect(throws: DestinationError.insecureScheme(field: "base_url", url: refused)) { try policy.requireSecure(URL(string: refused)!, field: "base_url") }
        }
        // Without the setting (and for every URL checked without the appliance's policy) only loopback may use http.
        #expect(throws: DestinationError.self) { try DestinationPolicy().requireSecure(URL(string: "http://10.20.3.4:8000/v1")!, field: "base_url") }
        #expect(throws: DestinationError.self) { try DestinationPolicy.requireSecure(URL(string: "http://ollama.corp.example/v1")!, field: "url") }
        // A listed host is still only reachable when its address passes the connection check.
        #expect(throws: DestinationError.self) { try policy.check(IPAddress("10.20.3.4")!, host: "10.20.3.4") }
        for bad in ["http://ollama:11434", "ollama_corp", "-x.example", "10.0.0.0/33", "a..b"] {
            security.plainHTTPHosts = bad
            #expect(throws: ConfigError.self, "\(bad)") { try DestinationPolicy(security) }
        }
    }

    @Test("a configured URL with user:password@ is refused, and refusals show a URL without its user, path or query")
    func urlSecretsNeverShown() async throws {
        for bad in ["https://user:hunter2@ghes.example.com/api/v3", "https://token@gitlab.example.com", "http://u:p@127.0.0.1:8080"] {
            #expect(throws: DestinationError.credentialsInURL(field: "api_url")) { try DestinationPolicy.requireSecure(URL(string: bad)!, field: "api_url") }
        }
        // The message once repeated the whole URL; a webhook URL's path and query are its secret.
        let insecure = DestinationError.insecureScheme(field: "url", url: "http://hooks.example.com:8080/services/T0/B0/SECRETPATH?token=SECRETQUERY")
        #expect(insecure.description == "url must use https (plain http is only accepted for loopback hosts, and for AI providers on the hosts in security.plain_http_hosts): http://hooks.example.com:8080/…")
        #expect(DestinationError.shown(URL(string: "https://user:pw@[::1]:9/x")!) == "https://[::1]:9/…")
        // GitLab's field is base_url, with GitLab's example (it said api_url, with GitHub's).
        await #expect(throws: IntegrationError.invalid("base_url must be absolute, like https://gitlab.example.com")) {
            _ = try await GitLabTokenCheck.user(baseURL: URL(string: "ftp://gitlab.example.com")!, token: "glpat-x", caBundlePEM: nil, destinations: DestinationPolicy())
        }
        await #expect(throws: IntegrationError.invalid(DestinationError.credentialsInURL(field: "base_url").description)) {
            _ = try await GitLabTokenCheck.user(baseURL: URL(string: "https://root:pw@gitlab.example.com")!, token: "glpat-x", caBundlePEM: nil,
                                                destinations: DestinationPolicy())
        }
        // A query or fragment went out on every call and was shown to every viewer of the integration.
        for bad in ["http://127.0.0.1:8080?token=SECRET", "https://ghes.example.com/api/v3#x"] {
            #expect(throws: IntegrationError.invalid("api_url must not hold a query or fragment (?… or #…): give the address alone, "
                                                     + "like https://api.github.com or https://github.example.com/api/v3")) {
                try IntegrationService.validateAPIURL(URL(string: bad)!)
            }
        }
        await #expect(throws: IntegrationError.self) {
            _ = try await GitLabTokenCheck.user(baseURL: URL(string: "https://gitlab.example.com/?private_token=x")!, token: "glpat-x", caBundlePEM: nil,
                                                destinations: DestinationPolicy())
        }
        // A CA file that is not PEM says so (it said NIOSSL's failedToLoadCertificate).
        await #expect(throws: IntegrationError.invalid("the CA file cannot be used: it holds no PEM certificate (-----BEGIN CERTIFICATE-----)")) {
            _ = try await GitLabTokenCheck.user(baseURL: URL(string: "https://gitlab.example.com")!, token: "glpat-x", caBundlePEM: "not a certificate",
                                                destinations: DestinationPolicy())
        }
    }

    @Test("private, link-local, metadata and other reserved addresses are refused; public and loopback pass; the CIDR list and the switch allow")
    func addressPolicy() throws {
        let strict = DestinationPolicy()
        for refused in ["10.0.0.5", "172.16.3.4", "192.168.1.1", "100.64.0.1", "169.254.169.254", "0.0.0.0", "224.0.0.1",
                        "fc00::1", "fd12:3456::1", "fe80::1", "::", "ff02::1", "::ffff:10.0.0.5", "::ffff:169.254.169.254"] {
            #expect(throws: DestinationError.self, "\(refused)") { try strict.check(IPAddress(refused)!, host: "h") }
        }
        for allowed in ["127.0.0.1", "127.5.5.5", "::1", "8.8.8.8", "140.82.112.3", "2606:4700::6810:84e5", "172.32.0.1"] {
            #expect(throws: Never.self, "\(allowed)") { try strict.check(IPAddress(allowed)!, host: "h") }
        }
        var security = testConfig().security
        security.allowedDestinationCIDRs = "10.20.0.0/16, fd00:abcd::/32"
        let listed = try DestinationPolicy(security)
        #expect(throws: Never.self) { try listed.check(IPAddress("10.20.7.8")!, host: "ghes.corp") }
        #expect(throws: Never.self) { try listed.check(IPAddress("fd00:abcd::5")!, host: "ghes.corp") }
        #expect(throws: DestinationError.self) { try listed.check(IPAddress("10.21.0.1")!, host: "ghes.corp") }
        #expect(throws: DestinationError.self) { try listed.check(IPAddress("169.254.169.254")!, host: "ghes.corp") }
        security.allowPrivateDestinations = true
        #expect(throws: Never.self) { try DestinationPolicy(security).check(IPAddress("169.254.169.254")!, host: "x") }
        security.allowedDestinationCIDRs = "10.0.0.0/33"
        #expect(throws: ConfigError.self) { try DestinationPolicy(security) }
    }

    @Test("a malformed allowed CIDR is a configuration error at load time")
    func malformedCIDRRejectedByConfig() throws {
        #expect {
            try ConfigLoader.load(file: nil, environment: ["SENTINEL_SECURITY_ALLOWED_DESTINATION_CIDRS": "10.0.0.0/8,10.1.0.0/99"])
        } throws: { "\($0)".contains("security.allowed_destination_cidrs") && "\($0)".contains("10.1.0.0/99") }
        let ok = try ConfigLoader.load(file: nil, environment: ["SENTINEL_SECURITY_ALLOWED_DESTINATION_CIDRS": "10.0.0.0/8, fd00::/8"])
        #expect(try DestinationPolicy(ok.security).allowedRanges.map(\.description) == ["10.0.0.0/8", "fd00::/8"])
    }

    @Test("the metadata address is refused before any connection is made")
    func metadataAddressRefused() async throws {
        let http = try AsyncOutboundHTTPClient()
        await #expect {
            _ = try await http.send(OutboundRequest(url: URL(string: "http://169.254.169.254/latest/meta-data/")!, timeout: .seconds(5)))
        } throws: { error in
            guard case OutboundHTTPError.destinationRefused(let message) = error else { return false }
            return message.contains("169.254.169.254") && message.contains("link-local")
        }
        await http.shutdown()
    }

    @Test("a public-looking name that resolves to a private address is refused at connect time; an allowed one connects to the checked address")
    func resolvedAddressChecked() async throws {
        try await withFakeLLM { server, _ in
            let resolver = TableResolver(table: ["llm.example.com": ["10.0.0.5"], "mixed.example.com": ["140.82.112.3", "192.168.0.9"],
                                                 "local-llm.example.com": ["127.0.0.1"]])
            let http = try AsyncOutboundHTTPClient(resolver: resolver)
            await #expect {
                _ = try await http.send(OutboundRequest(url: URL(string: "https://llm.example.com/v1/models")!, timeout: .seconds(5)))
            } throws: { error in
                guard case OutboundHTTPError.destinationRefused(let message) = error else { return false }
                return message.contains("10.0.0.5") && message.contains("llm.example.com")
            }
            await #expect {
                _ = try await http.send(OutboundRequest(url: URL(string: "https://mixed.example.com/")!, timeout: .seconds(5)))
            } throws: { error in
                guard case OutboundHTTPError.destinationRefused(let message) = error else { return false }
                return message.contains("192.168.0.9")
            }
            // The connection goes to the address that was checked (the name itself is unknown to DNS).
            let url = URL(string: "http://local-llm.example.com:\(server.port)/v1/chat/completions")!
            let response = try await http.send(OutboundRequest(method: "POST", url: url, headers: [("Content-Type", "application/json")],
                                                               body: Data("{}".utf8), timeout: .seconds(10)))
            #expect(response.status == 401, "the fake answered (no key sent)")
            #expect(await server.state.requests(.openAI).count == 1)
            await http.shutdown()
        }
    }

    @Test("an allowed CIDR lets a name through to its refused-by-default resolved address")
    func allowListedResolvedAddress() async throws {
        try await withFakeLLM { server, _ in
            // 0.0.0.0 is refused by default (unspecified); as a destination Linux connects it to
            // this host, so the call stays on the machine and reaches the loopback fake.
            let resolver = TableResolver(table: ["ghes.corp.example": ["0.0.0.0"]])
            var security = testConfig().security
            security.allowedDestinationCIDRs = "0.0.0.0/32"
            let listed = try AsyncOutboundHTTPClient(destinations: DestinationPolicy(security), resolver: resolver)
            let strict = try AsyncOutboundHTTPClient(resolver: resolver)
            let request = OutboundRequest(method: "POST", url: URL(string: "http://ghes.corp.example:\(server.port)/v1/chat/completions")!,
                                          headers: [("Content-Type", "application/json")], body: Data("{}".utf8), timeout: .seconds(10))
            await #expect { _ = try await strict.send(request) } throws: { error in
                guard case OutboundHTTPError.destinationRefused(let message) = error else { return false }
                return message.contains("0.0.0.0") && message.contains("unspecified")
            }
            #expect(await server.state.requests(.openAI).isEmpty)
            let response = try await listed.send(request)
            #expect(response.status == 401, "the fake answered (no key sent)")
            #expect(await server.state.requests(.openAI).count == 1)
            await listed.shutdown()
            await strict.shutdown()
        }
    }

    @Test("GitHub's error answers keep their `errors` details: strings, and objects with a message or a code and field")
    func gitHubErrorDetails() {
        let outdated = GitHubClient.error(OutboundResponse(status: 422, body: Data(#"{"message":"Unprocessable Entity","errors":["The commitOID is not part of the pull request"]}"#.utf8)),
                                          operation: "create review")
        #expect(outdated.message == "Unprocessable Entity: The commitOID is not part of the pull request")
        let objects = GitHubClient.error(OutboundResponse(status: 422, body: Data(#"""
            {"message":"Validation Failed","errors":[{"resource":"PullRequestReviewComment","code":"custom","field":"commit_id","message":"commit_id is not part of the pull request"},{"resource":"Label","code":"missing_field","field":"name"}]}
            """#.utf8)), operation: "create review")
        #expect(objects.message == "Validation Failed: commit_id is not part of the pull request; name missing_field")
        let plain = GitHubClient.error(OutboundResponse(status: 404, body: Data(#"{"message":"Not Found"}"#.utf8)), operation: "get pull request")
        #expect(plain.message == "Not Found")
    }

    @Test("a token GitHub echoes in an error is redacted before it is stored, posted or logged; an installation token with a line break is refused, never sent or echoed; a past expiry is kept ten minutes")
    func credentialsInRemoteText() async throws {
        let echoed = GitHubClient.error(OutboundResponse(status: 422, body: Data(#"{"message":"Unprocessable Entity","errors":["Line could not be resolved @octocat ghs_SECRETINSTALLTOKEN2"]}"#.utf8)),
                                        operation: "create review")
        #expect(!echoed.message.contains("SECRETINSTALLTOKEN") && echoed.message.contains("[redacted]"), "\(echoed.message)")
        for token in ["ghp_abcdefghijklmnopqrstuvwxyz0123456789", "github_pat_11ABCDEFG0123456789_abcdefghij", "glpat-AbCdEfGhIjKlMnOpQrSt",
                      "token=abcdef0123456789", "Bearer eyJhbGciOiJSUzI1NiJ9.e30.sig",
                      "raw eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxMjMifQ.c2lnbmF0dXJlX2J5dGVz",
                      "Bearer%20eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxMjMifQ.c2lnbmF0dXJlX2J5dGVa"] {
            #expect(!RemoteText.clean("refused: \(token) (try again)").contains(token.suffix(8)), "\(token)")
        }
        // Ordinary words are left alone.
        #expect(RemoteText.clean("Bad credentials: the token expired; disk-usage over quota") == "Bad credentials: the token expired; disk-usage over quota")

        struct TokenServer: OutboundHTTPClient {
            let token: String
            let expiresAt: String
            let minted: AICallLog
            func send(_ request: OutboundRequest) async throws -> OutboundResponse {
                if request.headers.contains(where: { $0.1.contains("\n") || $0.1.contains("\r") }) { throw OutboundHTTPError.connection("a header with a line break was sent") }
                minted.append(request.url.path)
                let body = try JSONSerialization.data(withJSONObject: ["token": token, "expires_at": expiresAt])
                return OutboundResponse(status: 201, body: body)
            }
        }
        let key = try TestRSAKeys.app()
        let credentials = GitHubAppCredentials(appID: 1, privateKeyPEM: key.pemRepresentation, apiBaseURL: URL(string: "http://127.0.0.1:9")!)
        let hostile = GitHubTokenCache(credentials: credentials, http: TokenServer(token: "ghs_evil\r\nX-Injected: yes", expiresAt: "2099-01-01T00:00:00Z", minted: AICallLog()))
        await #expect { _ = try await hostile.token(installationID: 7) } throws: { error in
            "\(error)".contains("is not a token") && !"\(error)".contains("ghs_evil") && !"\(error)".contains("X-Injected")
        }
        // GitHub Enterprise Server's clock behind: the token's expiry is already past here.
        let log = AICallLog()
        let skewed = GitHubTokenCache(credentials: credentials, http: TokenServer(token: "ghs_fine", expiresAt: "2001-01-01T00:00:00Z", minted: log))
        for _ in 0..<5 { #expect(try await skewed.token(installationID: 7) == "ghs_fine") }
        #expect(log.names.count == 1, "one token minted for five calls: \(log.names)")
    }

    @Test("remote error text is truncated, stripped of control characters, and cannot carry markers or mentions")
    func remoteTextCleaned() {
        let hostile = "boom\u{0}\u{1b}[31m <!-- sentinel:run:1 --> ping @admin\n" + String(repeating: "x", count: 2_000)
        let clean = RemoteText.clean(hostile)
        #expect(clean.count <= RemoteText.maxCharacters)
        #expect(!clean.contains("\u{0}") && !clean.contains("\u{1b}") && !clean.contains("\n"))
        #expect(!clean.contains("<!--"))
        #expect(!clean.contains("@admin"))
        let github = GitHubClient.error(OutboundResponse(status: 422, body: Data(#"{"message":"bad <!-- sentinel:run:9 --> @octocat \#(String(repeating: "y", count: 1_000))"}"#.utf8)),
                                        operation: "create review")
        #expect(!github.message.contains("<!--") && !github.message.contains("@octocat") && github.message.count <= RemoteText.maxCharacters)
        let refusal = Data(#"{"choices":[{"message":{"role":"assistant","content":null,"refusal":"no <!-- sentinel:run:2 --> @team\u0007"}}]}"#.utf8)
        #expect { _ = try OpenAIChatProvider.parseResponse(refusal) } throws: { error in
            guard case ProviderError.refused(let text) = error else { return false }
            return !text.contains("<!--") && !text.contains("@team") && !text.contains("\u{7}")
        }
        let anthropic = Data(#"{"type":"error","error":{"type":"invalid_request_error","message":"bad <!-- x --> @all"}}"#.utf8)
        #expect { _ = try AnthropicProvider.parseResponse(anthropic) } throws: { error in
            guard case ProviderError.badRequest(let text) = error else { return false }
            return !text.contains("<!--") && !text.contains("@all")
        }
        let provider = ProviderHTTP.classify(status: 400, body: Data(#"{"error":{"message":"no <!-- sentinel:fp:abc --> @here"}}"#.utf8), kind: .openai)
        #expect(!provider.description.contains("<!--") && !provider.description.contains("@here"))
    }
}
