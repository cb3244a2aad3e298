import Foundation
import SentinelCore
import SentinelServer
import SentinelTestSupport
import Testing
import _CryptoExtras

@Suite("Outbound destinations at add time")
struct DestinationAddTimeTests {
    @Test("a plain-http provider base URL or GHES API URL on a non-loopback host is refused with a 400 naming the field")
    func httpRefusedAtAdd() async throws {
        let world = try APIWorld()
        let key = try TestRSAKeys.other().pemRepresentation
        try await world.test { api in
            let owner = world.token(.owner)
            let base = "/workspaces/\(world.workspaceA)"
            let provider = try await api.call(.post, base + "/providers", token: owner,
                                              body: #"{"kind":"openai-compatible","base_url":"http://llm.example.com/v1"}"#)
            #expect(provider.status == .badRequest, "\(provider.body)")
            #expect((provider.json["detail"] as? String)?.contains("base_url must use https") == true, "\(provider.body)")
            let local = try await api.call(.post, base + "/providers", token: owner,
                                           body: #"{"kind":"openai-compatible","base_url":"http://127.0.0.1:11434"}"#)
            #expect(local.status == .created, "\(local.body)")
            let body = try String(decoding: JSONSerialization.data(withJSONObject: [
                "kind": "github", "app_id": 1, "private_key": key, "webhook_secret": "whsec-12345678", "api_url": "http://ghes.example.com/api/v3",
            ]), as: UTF8.self)
            let integration = try await api.call(.post, base + "/integrations", token: owner, body: body)
            #expect(integration.status == .badRequest, "\(integration.body)")
            #expect((integration.json["detail"] as? String)?.contains("api_url must use https") == true, "\(integration.body)")
        }
    }

    @Test("with security.plain_http_hosts, a model server on the internal network is added with http through the API and the CLI; other hosts still need https")
    func plainHTTPHostsAllowed() async throws {
        let world = try APIWorld { $0.security.plainHTTPHosts = "ollama.corp.example, 10.20.0.0/16" }
        try await world.test { api in
            let owner = world.token(.owner)
            let base = "/workspaces/\(world.workspaceA)"
            for url in ["http://ollama.corp.example:11434/v1", "http://10.20.3.4:8000/v1"] {
                let added = try await api.call(.post, base + "/providers", token: owner, body: #"{"kind":"openai-compatible","base_url":"\#(url)"}"#)
                #expect(added.status == .created, "\(url): \(added.body)")
            }
            let other = try await api.call(.post, base + "/providers", token: owner,
                                           body: #"{"kind":"openai-compatible","base_url":"http://llm.example.com/v1"}"#)
            #expect(other.status == .badRequest, "\(other.body)")
            #expect((other.json["detail"] as? String)?.contains("security.plain_http_hosts") == true, "\(other.body)")
        }

        let dir = TemporaryDirectory("sentinel-cli-plain-http")
        defer { dir.cleanup() }
        let data = dir.url.appendingPathComponent("data").path
        _ = try await SentinelProcess.run(["workspace", "create", "acme", "--data-dir", data])
        let arguments = ["provider", "add", "--data-dir", data, "--workspace", "acme", "--kind", "openai-compatible", "--base-url", "http://ollama.corp.example:11434/v1"]
        let refused = try await SentinelProcess.run(arguments)
        #expect(refused.status != 0 && refused.stderr.contains("security.plain_http_hosts"), "\(refused.stderr)")
        let added = try await SentinelProcess.run(arguments, environment: ["SENTINEL_SECURITY_PLAIN_HTTP_HOSTS": "ollama.corp.example"])
        #expect(added.status == 0, "\(added.stderr)")
    }

    @Test("the CLI refuses a plain-http base URL with a clear message")
    func cliRefusesHTTP() async throws {
        let dir = TemporaryDirectory("sentinel-cli-dest")
        defer { dir.cleanup() }
        let data = dir.url.appendingPathComponent("data").path
        _ = try await SentinelProcess.run(["workspace", "create", "acme", "--data-dir", data])
        let added = try await SentinelProcess.run(["provider", "add", "--data-dir", data, "--workspace", "acme", "--kind", "openai-compatible",
                                                   "--base-url", "http://llm.example.com/v1"])
        #expect(added.status != 0)
        #expect(added.stderr.contains("base_url must use https"), "\(added.stderr)")
    }
}
