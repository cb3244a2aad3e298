import _CryptoExtras
import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import SentinelCore
@testable import SentinelServer
import SentinelTestSupport
import Testing

/// A browser-like client of the console: keeps cookies, reads the form token from the last page.
actor ConsoleSession {
    let client: any TestClientProtocol
    private(set) var cookies: [String: String] = [:]
    /// The `csrf` field of the last page that had a form.
    private(set) var csrf: String?

    init(client: any TestClientProtocol) { self.client = client }

    struct Page: Sendable {
        let status: HTTPResponse.Status
        let body: String
        let headers: HTTPFields
        var location: String? { headers[.location] }
        var setCookies: [String] { headers[values: .setCookie] }
        /// How many post forms the page offers besides signing out.
        var actionForms: Int { body.components(separatedBy: #"method="post""#).count - 1 - (body.contains(#"action="/sign-out""#) ? 1 : 0) }
    }

    func get(_ path: String) async throws -> Page {
        try await send(.get, path, body: nil)
    }

    /// Posts a form; the token is the last page's unless `csrf` says otherwise (nil: none sent).
    func post(_ path: String, _ fields: [String: String] = [:], csrf override: String?? = .none) async throws -> Page {
        var fields = fields
        switch override {
        case .none: if let csrf { fields["csrf"] = csrf }
        case .some(let value?): fields["csrf"] = value
        case .some(nil): break
        }
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        let body = fields.map { "\($0.key)=\($0.value.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")" }.joined(separator: "&")
        return try await send(.post, path, body: body)
    }

    func send(_ method: HTTPRequest.Method, _ path: String, body: String?,
              contentType: String = "application/x-www-form-urlencoded", headers extra: HTTPFields = [:]) async throws -> Page {
        try await send(method, path, bytes: body.map { Array($0.utf8) }, contentType: contentType, headers: extra)
    }

    /// Sends a body as these bytes (which need not be UTF-8).
    func send(_ method: HTTPRequest.Method, _ path: String, bytes body: [UInt8]?,
              contentType: String = "application/x-www-form-urlencoded", headers extra: HTTPFields = [:]) async throws -> Page {
        var headers = extra
        if !cookies.isEmpty { headers[.cookie] = cookies.map { "\($0.key)=\($0.value)" }.joined(separator: "; ") }
        if body != nil { headers[.contentType] = contentType }
        let response = try await client.execute(uri: path, method: method, headers: headers, body: body.map { ByteBuffer(bytes: $0) })
        let page = Page(status: response.status, body: String(buffer: response.body), headers: response.headers)
        for header in page.setCookies {
            let pair = header.split(separator: ";")[0].split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let (name, value) = (String(pair[0]), pair.count > 1 ? String(pair[1]) : "")
            if value.isEmpty || header.contains("Max-Age=0") { cookies[name] = nil } else { cookies[name] = value }
        }
        if let range = page.body.range(of: #"name="csrf" value=""#) {
            csrf = String(page.body[range.upperBound...].prefix { $0 != "\"" })
        }
        return page
    }

    func forget(_ cookie: String) { cookies[cookie] = nil }
    func set(_ cookie: String, _ value: String) { cookies[cookie] = value }

    /// Signs in through the sign-in form.
    @discardableResult
    func signIn(_ email: String, _ password: String) async throws -> Page {
        _ = try await get("/sign-in")
        return try await post("/sign-in", ["email": email, "password": password])
    }
}

extension APIWorld {
    func console(_ body: @escaping @Sendable (ConsoleSession) async throws -> Void) async throws {
        try await test { api in try await body(ConsoleSession(client: api.client)) }
    }

    static func password(_ role: WorkspaceRole) -> String { "password of \(role.rawValue)" }

    /// A run of `repository` with one finding, finished (so the rollups count it).
    func addFinishedRun(repository: Int64, pr: Int = 7, title: String = "Unchecked input") async throws -> Int64 {
        try await appliance.supervisor.withWorkspace(workspaceA) { actor in
            try await actor.write { tx in
                guard let repo = try RepositoryStore.find(id: repository, in: tx.db) else { throw StorageError.notFound("repo") }
                let (id, _) = try ReviewRunStore.request(repository: repo, prNumber: pr, headSHA: "abc123", baseSHA: nil, trigger: "test:\(UUID())",
                                                         fullReview: false, correlationID: nil, in: &tx)
                try tx.db.execute(sql: """
                    INSERT INTO findings (run_id, repository_id, pr_number, path, line, severity, category, title, body, source, fingerprint)
                    VALUES (?, ?, ?, 'Sources/App.swift', 42, 'high', 'security', ?, 'The <b>input</b> is used unchecked.', 'model', 'fp1')
                    """, arguments: [id, repository, pr, title])
                try tx.db.execute(sql: """
                    INSERT INTO usage_records (run_id, call_key, provider, model, input_tokens, output_tokens, cost_usd, duration_ms, recorded_at)
                    VALUES (?, ?, 'fake-llm', 'm1', 1200, 300, 0.0125, 900, ?)
                    """, arguments: [id, "call-\(id)", tx.now.timeIntervalSince1970])
                _ = try ReviewRunStore.finish(runID: id, state: .completed, reason: nil, label: "completed", conclusion: "neutral", in: &tx)
                return id
            }
        }
    }
}

@Suite("Console: first start, sign-in, cookies and form tokens")
struct ConsoleAccessTests {
    @Test("a fresh appliance leads to the setup page, which names the token file, creates the admin once and signs them in")
    func firstStart() async throws {
        let dir = TemporaryDirectory("sentinel-console-setup")
        var config = testConfig()
        config.auth.bcryptCost = 4
        config.server.tlsEnabled = false
        let appliance = try Appliance(dataDirectory: DataDirectory(path: dir.path), config: config, logger: Logger.sentinel(level: "error"))
        let token = try String(contentsOf: appliance.dataDirectory.setupTokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let app = Application(router: try appliance.makeRouter())
        try await app.test(.router) { client in
            let browser = ConsoleSession(client: client)
            let start = try await browser.get("/")
            #expect(start.status == .seeOther)
            #expect(start.location == "/setup")
            #expect(try await browser.get("/sign-in").location == "/setup")
            let setup = try await browser.get("/setup")
            #expect(setup.status == .ok)
            #expect(setup.body.contains("<code>secrets/setup-token</code> in its data directory"))
            #expect(setup.body.contains(appliance.dataDirectory.setupTokenFile.path))
            #expect(setup.body.contains(#"<label for="setup_token">"#))
            let formCookie = try #require(setup.setCookies.first { $0.hasPrefix("sentinel_form=") })
            #expect(formCookie.contains("HttpOnly") && formCookie.contains("SameSite=Lax") && !formCookie.contains("Secure"))

            let forged = try await browser.post("/setup", ["setup_token": token, "email": "root@example.com", "password": "a long password"],
                                                csrf: .some(nil))
            #expect(forged.status == .forbidden)
            let wrong = try await browser.post("/setup", ["setup_token": "sst_wrong", "email": "root@example.com", "password": "a long password"])
            #expect(wrong.status == .unauthorized)
            #expect(wrong.body.contains("wrong setup token"))
            #expect(try !appliance.identity.hasUsers())

            let done = try await browser.post("/setup", ["setup_token": token, "email": "root@example.com", "password": "a long password"])
            #expect(done.status == .seeOther, "\(done.body)")
            #expect(done.location == "/workspaces")
            let session = try #require(done.setCookies.first { $0.hasPrefix("sentinel_session=sns_") })
            #expect(session.contains("HttpOnly") && session.contains("SameSite=Lax") && session.contains("Path=/") && !session.contains("Secure"))
            let workspaces = try await browser.get("/workspaces")
            #expect(workspaces.status == .ok)
            #expect(workspaces.body.contains("root@example.com (appliance admin)"))
            #expect(try await browser.get("/setup").location == "/workspaces")
            #expect(try appliance.identity.user(email: "root@example.com")?.isAdmin == true)
            #expect(!FileManager.default.fileExists(atPath: appliance.dataDirectory.setupTokenFile.path))
        }
        await appliance.supervisor.shutdown()
        dir.cleanup()
    }

    @Test("an appliance whose only user is not an admin: sign-in links to setup, and the setup page makes the admin with the token")
    func setupWithUsersButNoAdmin() async throws {
        let dir = TemporaryDirectory("sentinel-console-setup")
        defer { dir.cleanup() }
        var config = testConfig()
        config.auth.bcryptCost = 4
        config.server.tlsEnabled = false
        let appliance = try Appliance(dataDirectory: DataDirectory(path: dir.path), config: config, logger: Logger.sentinel(level: "error"))
        _ = try appliance.identity.createUser(email: "dev@example.com", password: "a long password", isAdmin: false)
        // What serve does at start (after `sentinel user create` without --admin): the token is kept.
        #expect(try appliance.identity.ensureSetupToken(in: appliance.dataDirectory))
        let token = try String(contentsOf: appliance.dataDirectory.setupTokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let app = Application(router: try appliance.makeRouter())
        try await app.test(.router) { client in
            let browser = ConsoleSession(client: client)
            #expect(try await browser.get("/").location == "/sign-in")
            let signIn = try await browser.get("/sign-in")
            #expect(signIn.body.contains(#"no administrator yet: <a href="/setup">create the first one</a>"#))
            #expect(try await browser.get("/setup").status == .ok)
            let done = try await browser.post("/setup", ["setup_token": token, "email": "root@example.com", "password": "a long password"])
            #expect(done.location == "/workspaces", "\(done.body)")
            #expect(try appliance.identity.user(email: "root@example.com")?.isAdmin == true)
            #expect(try await browser.get("/setup").location == "/workspaces")
            #expect(try await !browser.get("/sign-in").body.contains("no administrator yet"))
        }
        await appliance.supervisor.shutdown()
    }

    @Test("with TLS on, the session cookie is Secure; the page forbids framing and outside resources")
    func secureCookie() async throws {
        let world = try APIWorld { $0.server.tlsEnabled = true }
        try await world.console { browser in
            let signedIn = try await browser.signIn("owner@example.com", APIWorld.password(.owner))
            #expect(signedIn.status == .seeOther)
            let cookie = try #require(signedIn.setCookies.first { $0.hasPrefix("sentinel_session=") })
            #expect(cookie.contains("; Secure") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"))
            let page = try await browser.get("/workspaces")
            #expect(page.headers[.contentSecurityPolicy]?.contains("default-src 'none'") == true)
            #expect(page.headers[.contentSecurityPolicy]?.contains("frame-ancestors 'none'") == true)
            #expect(!page.body.contains("http://") && !page.body.contains("https://"))
        }
    }

    @Test("behind a proxy that ends TLS (public_url https, plain-HTTP listener) the cookies are Secure too")
    func secureCookieBehindProxy() async throws {
        let world = try APIWorld { $0.server.publicURL = "https://sentinel.example.com" }
        try await world.console { browser in
            let form = try #require(try await browser.get("/sign-in").setCookies.first { $0.hasPrefix("sentinel_form=") })
            #expect(form.contains("; Secure"), "\(form)")
            let signedIn = try await browser.signIn("owner@example.com", APIWorld.password(.owner))
            let cookie = try #require(signedIn.setCookies.first { $0.hasPrefix("sentinel_session=") })
            #expect(cookie.contains("; Secure"), "\(cookie)")
        }
    }

    @Test("sign-in takes the API's users and throttle; a wrong password re-shows the form; sign-out ends the session")
    func signInAndOut() async throws {
        let world = try APIWorld {
            $0.auth.loginFailuresPerAccount = 2
        }
        try await world.console { browser in
            #expect(try await browser.get("/").location == "/sign-in")
            #expect(try await browser.get("/workspaces").location == "/sign-in")
            let page = try await browser.get("/sign-in")
            #expect(page.body.contains(#"<label for="password">"#))
            let wrong = try await browser.post("/sign-in", ["email": "member@example.com", "password": "nope"])
            #expect(wrong.status == .unauthorized)
            #expect(wrong.body.contains("Wrong email or password."))
            _ = try await browser.post("/sign-in", ["email": "member@example.com", "password": "nope"])
            let limited = try await browser.post("/sign-in", ["email": "member@example.com", "password": APIWorld.password(.member)])
            #expect(limited.status == .tooManyRequests)
            #expect(limited.headers[.retryAfter] != nil)

            let ok = try await browser.signIn("viewer@example.com", APIWorld.password(.viewer))
            #expect(ok.status == .seeOther)
            let list = try await browser.get("/workspaces")
            #expect(list.status == .ok)
            #expect(list.body.contains("alpha"))
            #expect(!list.body.contains("beta"))
            #expect(!list.body.contains("Create a workspace"))

            #expect(try await browser.post("/sign-out", csrf: "wrong").status == .forbidden)
            let out = try await browser.post("/sign-out")
            #expect(out.status == .seeOther)
            #expect(out.location == "/sign-in")
            #expect(out.setCookies.contains { $0.hasPrefix("sentinel_session=;") && $0.contains("Max-Age=0") })
            #expect(try await browser.get("/workspaces").location == "/sign-in")
        }
    }

    @Test("a session ended elsewhere no longer opens pages, and an API token is not a console cookie")
    func endedSession() async throws {
        let world = try APIWorld()
        try await world.console { browser in
            await browser.set(Console.sessionCookie, world.token(.owner))
            let page = try await browser.get("/workspaces")
            #expect(page.location == "/sign-in")
            // Signing out of it (a page open from before) clears the cookie; it was a 403 "Form expired".
            await browser.set(Console.sessionCookie, "sns_ended-elsewhere")
            let out = try await browser.post("/sign-out", csrf: Console.formToken(secret: "sns_ended-elsewhere"))
            #expect(out.status == .seeOther)
            #expect(out.location == "/sign-in")
            #expect(out.setCookies.contains { $0.hasPrefix("sentinel_session=;") && $0.contains("Max-Age=0") })
        }
    }

    @Test("every form post without the form token, or with another session's, is refused with 403 and changes nothing")
    func formTokens() async throws {
        let world = try APIWorld()
        let base = "/workspaces/\(world.workspaceA)"
        try await world.console { browser in
            try await browser.signIn("owner@example.com", APIWorld.password(.owner))
            _ = try await browser.get(base + "/providers")
            let fields = ["kind": "openai", "api_key": "sk-test-secret-9876"]
            let missing = try await browser.post(base + "/providers", fields, csrf: .some(nil))
            #expect(missing.status == .forbidden)
            #expect(missing.body.contains("Form expired"))
            let other = Console.formToken(secret: "sns_someone-elses-session")
            #expect(try await browser.post(base + "/providers", fields, csrf: other).status == .forbidden)
            for path in ["/workspaces", base + "/members", base + "/settings", base + "/integrations", base + "/teams", "/sign-out"] {
                #expect(try await browser.post(path, ["name": "x"], csrf: "forged").status == .forbidden, "\(path)")
            }
            #expect(try await world.appliance.supervisor.withWorkspace(world.workspaceA) { try await world.appliance.api.providers.list(in: $0) }.isEmpty)

            let added = try await browser.post(base + "/providers", fields)
            #expect(added.status == .seeOther)
            let providers = try await browser.get(base + "/providers")
            #expect(providers.body.contains("…9876"))
            #expect(!providers.body.contains("sk-test-secret-9876"))
            #expect(providers.body.contains(#"type="password""#))
        }
    }
}

extension ConsoleAccessTests {
    @Test("a form field holding a control character (or a one-line one a bidirectional control), or given twice, is refused 400 naming it: a NUL no longer splits the sign-in limit or cuts a token's name")
    func formTextChecked() async throws {
        let world = try APIWorld { $0.auth.loginFailuresPerAccount = 2 }
        let base = "/workspaces/\(world.workspaceA)"
        try await world.console { browser in
            _ = try await browser.get("/sign-in")
            for _ in 0..<2 { _ = try await browser.post("/sign-in", ["email": "member@example.com", "password": "nope"]) }
            #expect(try await browser.post("/sign-in", ["email": "member@example.com", "password": APIWorld.password(.member)]).status == .tooManyRequests)
            // The same account spelled with a NUL after it was counted apart and signed in.
            let nul = try await browser.post("/sign-in", ["email": "member@example.com\u{0}b", "password": APIWorld.password(.member)])
            #expect(nul.status == .badRequest, "\(nul.status)")
            #expect(nul.body.contains("email: must not contain control characters"), "\(nul.body)")
            #expect(nul.setCookies.allSatisfy { !$0.hasPrefix(Console.sessionCookie + "=sns_") })

            try await browser.signIn("owner@example.com", APIWorld.password(.owner))
            _ = try await browser.get("/account")
            let cut = try await browser.post("/account/tokens", ["name": "a\u{0}b", "scope_read": "1"])
            #expect(cut.status == .badRequest && cut.body.contains("name: must not contain control characters"), "\(cut.body)")
            let bidi = try await browser.post("/account/tokens", ["name": "a\u{202E}b", "scope_read": "1"])
            #expect(bidi.status == .badRequest && bidi.body.contains("name: must not contain bidirectional control characters (U+202E at character 2)"), "\(bidi.body)")
            #expect(try world.appliance.identity.tokens(of: world.members[.owner]!.0).count == 1, "only the world's own token")
            // A field given twice: which one was meant is unclear.
            _ = try await browser.get(base + "/providers")
            let csrf = try #require(await browser.csrf)
            let twice = try await browser.send(.post, base + "/settings", body: "csrf=\(csrf)&values=%7B%7D&values=%7B%22review.max_comments%22%3A3%7D")
            #expect(twice.status == .badRequest && twice.body.contains("values: given twice; a form sends each field once"), "\(twice.body)")
            // A setting named twice in the values, as the API's PUT …/settings refuses.
            let named = try await browser.post(base + "/settings", ["values": #"{"review.max_comments": 3, "review.max_comments": 9}"#])
            #expect(named.status == .badRequest && named.body.contains(#"values: the object names &quot;review.max_comments&quot; twice"#), "\(named.body)")
            // On the settings page again with what was typed (a page of its own lost it).
            #expect(named.body.contains("<h1>Settings</h1>") && named.body.contains(#"role="alert">values: the object names"#), "\(named.body)")
            #expect(named.body.contains(#"<textarea id="values" name="values" rows="8">{&quot;review.max_comments&quot;: 3, &quot;review.max_comments&quot;: 9}</textarea>"#),
                    "\(named.body)")
            let days = try await browser.post("/account/tokens", ["name": "my-ci-token", "scope_write": "1", "expires_in_days": "5000"])
            #expect(days.status == .badRequest && days.body.contains("xpires after: a whole number of days, 1 to 3650"), "\(days.body)")
            // The refused form keeps what was typed and ticked (it came back empty with read ticked).
            #expect(days.body.contains(#"name="name" required maxlength="100" autocomplete="off" value="my-ci-token""#), "\(days.body)")
            #expect(days.body.contains(#"name="scope_write" value="1" checked"#) && !days.body.contains(#"name="scope_read" value="1" checked"#))
            #expect(days.body.contains(#"max="3650" value="5000""#))
            #expect(try await browser.get("/account").body.contains(#"name="scope_read" value="1" checked"#))
            // A form's address opened from the address bar is a page (it was the API's problem JSON).
            let reopened = try await browser.get("/account/password")
            #expect(reopened.status == .methodNotAllowed && reopened.headers[.contentType] == "text/html; charset=utf-8", "\(reopened.body)")
            #expect(reopened.headers[.allow] == "POST" && reopened.body.contains("This address does not answer GET"), "\(reopened.body)")
            // A page sent a form is not called a form's address.
            let posted = try await browser.post(base + "/runs", ["x": "1"])
            #expect(posted.status == .methodNotAllowed && posted.body.contains("This address does not answer POST; use the links and buttons"), "\(posted.body)")
            #expect(!posted.body.contains("forms is sent"))
            // Also where a literal segment shadows a page with a parameter (`/integrations/:integrationId`): it was a 404.
            for form in ["/integrations/manifest", "/integrations/gitlab"] {
                let shadowed = try await browser.get(base + form)
                #expect(shadowed.status == .methodNotAllowed && shadowed.headers[.allow] == "POST", "\(form): \(shadowed.status)")
            }
            // Multi-line fields keep their line breaks.
            let multiline = try await browser.post(base + "/settings", ["values": "{\n  \"review.max_comments\": 3\n}", "locks": ""])
            #expect(multiline.status == .seeOther, "\(multiline.body)")
        }
    }

    @Test("a refused form links back only to a page of this console: a Referer from another site, or a path a browser reads as another site's, gets no Back link")
    func backLinkStaysOnSite() async throws {
        let world = try APIWorld { $0.server.publicURL = "https://sentinel.example.com:8443" }
        try await world.console { browser in
            try await browser.signIn("owner@example.com", APIWorld.password(.owner))
            func refused(referer: String) async throws -> String {
                try await browser.send(.post, "/account/password", body: "csrf=forged", headers: [.referer: referer]).body
            }
            let own = try await refused(referer: "https://sentinel.example.com:8443/account?tab=1")
            #expect(own.contains(#"href="/account?tab=1""#), "\(own)")
            for referer in ["https://evil.example//evil.example/phish", "https://evil.example/account", "https://sentinel.example.com//evil.example/x",
                            "https://sentinel.example.com/\\evil.example/x"] {
                let page = try await refused(referer: referer)
                #expect(!page.contains("evil.example\"") && !page.contains(#"href="//"#) && !page.contains(#"href="/\"#), "\(referer): \(page)")
            }
            // Linked as sent, percent-encoded: a path of this site (it was decoded into `///evil.example`).
            #expect(try await refused(referer: "https://sentinel.example.com/%2F%2Fevil.example").contains(#"href="/%2F%2Fevil.example""#))
        }
    }
}

@Suite("Console: pages and roles")
struct ConsolePageTests {
    @Test("every page answers 200 to each role that may see it, 403 to a lower role, and 404 outside the visitor's workspaces")
    func pageStatuses() async throws {
        let world = try APIWorld()
        let repo = try await world.addRepository()
        let run = try await world.addFinishedRun(repository: repo)
        let base = "/workspaces/\(world.workspaceA)"
        let viewerPages = ["", "/runs", "/runs?state=completed&repository=\(repo)&pr=7", "/runs/\(run)", "/repositories", "/integrations",
                           "/providers", "/members", "/settings", "/settings?repository=\(repo)"]
        try await world.console { first in
            for role in WorkspaceRole.allCases {
                let browser = ConsoleSession(client: first.client)
                try await browser.signIn("\(role.rawValue)@example.com", APIWorld.password(role))
                for page in viewerPages {
                    let reply = try await browser.get(base + page)
                    #expect(reply.status == .ok, "\(role) \(page): \(reply.body)")
                    #expect(reply.headers[.contentType] == "text/html; charset=utf-8")
                    #expect(reply.body.contains("<h1>"))
                }
                let audit = try await browser.get(base + "/audit")
                #expect(audit.status == (role >= .admin ? .ok : .forbidden), "\(role) audit")
                #expect(try await browser.get(base).body.contains("Audit log") == (role >= .admin))
                let elsewhere = try await browser.get("/workspaces/\(world.workspaceB)")
                #expect(elsewhere.status == .notFound)
                #expect(elsewhere.body.contains("you are not a member"))
                #expect(try await browser.get(base + "/runs/999999").status == .notFound)
                #expect(try await browser.get(base + "/runs/abc").status == .notFound)
            }
            let browser = ConsoleSession(client: first.client)
            let missing = try await browser.get("/no/such/page")
            #expect(missing.status == .notFound)
            #expect(missing.body.contains("Page not found"))
            #expect(missing.headers[.contentType] == "text/html; charset=utf-8")
            let api = try await browser.get("/api/v1/no-such-operation")
            #expect(api.status == .notFound)
            #expect(api.headers[.contentType] == "application/problem+json")
            let css = try await browser.get("/console.css")
            #expect(css.status == .ok)
            #expect(css.headers[.contentType] == "text/css; charset=utf-8")
            #expect(css.body.contains("@media (max-width"))
        }
    }

    @Test("a viewer sees no buttons that would fail, and a forged post by a viewer is still refused by the API's role rule")
    func viewerHasNoButtons() async throws {
        let world = try APIWorld()
        let repo = try await world.addRepository()
        let base = "/workspaces/\(world.workspaceA)"
        let queued = try await world.appliance.supervisor.withWorkspace(world.workspaceA) { actor in
            try await actor.write { tx in
                let record = try RepositoryStore.find(id: repo, in: tx.db)!
                return try ReviewRunStore.request(repository: record, prNumber: 3, headSHA: "", baseSHA: nil, trigger: "test", fullReview: false,
                                                  correlationID: nil, in: &tx).0
            }
        }
        try await world.console { browser in
            try await browser.signIn("viewer@example.com", APIWorld.password(.viewer))
            for page in ["", "/runs", "/runs/\(queued)", "/repositories", "/integrations", "/providers", "/members", "/settings"] {
                let reply = try await browser.get(base + page)
                #expect(reply.actionForms == 0, "\(page) offers a viewer \(reply.actionForms) forms")
            }
            let cancel = try await browser.post(base + "/runs/\(queued)/cancel")
            #expect(cancel.status == .forbidden)
            #expect(cancel.body.contains("needs the member role"))
            #expect(try await browser.post(base + "/repositories/\(repo)/disable").status == .forbidden)
            #expect(try await browser.post(base + "/providers", ["kind": "openai", "api_key": "sk-x"]).status == .forbidden)
            #expect(try await browser.post(base + "/members", ["email": "viewer@example.com", "role": "owner"]).status == .forbidden)
            #expect(try await browser.post(base + "/settings", ["values": "{}"]).status == .forbidden)
            #expect(try await browser.post("/workspaces", ["name": "mine"]).status == .forbidden)
            let state = try await world.appliance.supervisor.withWorkspace(world.workspaceA) { actor in
                try await actor.read { db in try ReviewRunStore.find(queued, in: db)?.state }
            }
            #expect(state == .queued)
        }
    }

    @Test("members re-run and cancel runs from the run page; the run page shows state, coverage, findings, the policy and the PR")
    func runActions() async throws {
        let world = try APIWorld()
        let repo = try await world.addRepository()
        let finished = try await world.addFinishedRun(repository: repo)
        let base = "/workspaces/\(world.workspaceA)"
        try await world.console { browser in
            try await browser.signIn("member@example.com", APIWorld.password(.member))
            let page = try await browser.get(base + "/runs/\(finished)")
            #expect(page.body.contains("completed"))
            #expect(page.body.contains("Sources/App.swift:42"))
            #expect(page.body.contains("The &lt;b&gt;input&lt;/b&gt; is used unchecked."))
            #expect(page.body.contains(">high<"))
            #expect(page.body.contains("Re-run"))
            #expect(!page.body.contains(">Cancel<"))
            #expect(page.body.contains("not posted"))
            #expect(page.body.contains("<td>fake-llm</td><td>m1</td><td>1200</td><td>300</td><td>$0.0125</td><td>900 ms</td>"))
            let rerun = try await browser.post(base + "/runs/\(finished)/rerun")
            #expect(rerun.status == .seeOther)
            let location = try #require(rerun.location)
            #expect(location.hasPrefix(base + "/runs/") && location != base + "/runs/\(finished)")
            let fresh = try await browser.get(location)
            #expect(fresh.body.contains("queued"))
            #expect(fresh.body.contains(">Cancel<"))
            let newID = try #require(Int64(location.split(separator: "/").last.map(String.init) ?? ""))
            let cancelled = try await browser.post(base + "/runs/\(newID)/cancel")
            #expect(cancelled.status == .seeOther)
            let after = try await browser.get(base + "/runs/\(newID)")
            #expect(after.body.contains("cancelled by member@example.com"))
            let again = try await browser.post(base + "/runs/\(newID)/cancel")
            #expect(again.status == .conflict)
            #expect(again.body.contains("already ended"))
            let list = try await browser.get(base + "/runs?state=skipped")
            #expect(list.body.contains("#\(newID)"))
            #expect(!list.body.contains(">#\(finished)<"))
            let byPR = try await browser.get(base + "/runs?pr=8")
            // A filter that matches nothing is said to be so (it read "No runs yet." in a workspace with runs).
            #expect(byPR.body.contains("No runs match this filter.") && !byPR.body.contains("No runs yet."))
        }
    }

    @Test("the overview shows this month's figures and 30-day SVG charts with the data points from the rollups")
    func overview() async throws {
        let world = try APIWorld()
        let repo = try await world.addRepository()
        let finished = try await world.addFinishedRun(repository: repo)
        try await world.appliance.supervisor.withWorkspace(world.workspaceA) { actor in
            try await actor.write { tx in
                try tx.db.execute(sql: "UPDATE review_runs SET started_at = ? WHERE id = ?", arguments: [tx.now.timeIntervalSince1970, finished])
            }
        }
        // Queued runs (never started, as runs superseded or skipped before they start) are no reviews:
        // the figure counts what the plan's review limit counts.
        _ = try await world.addQueuedRun(repository: repo, pr: 8)
        _ = try await world.addQueuedRun(repository: repo, pr: 9)
        let base = "/workspaces/\(world.workspaceA)"
        try await world.console { browser in
            try await browser.signIn("viewer@example.com", APIWorld.password(.viewer))
            let page = try await browser.get(base)
            #expect(page.status == .ok)
            #expect(page.body.contains("<dt>Reviews started</dt><dd>1</dd>"), "\(page.body)")
            #expect(page.body.contains(#"<svg viewBox="0 0 600 180" role="img" aria-labelledby="runs-chart-title runs-chart-desc" data-points="1">"#))
            #expect(page.body.contains(#"aria-labelledby="findings-chart-title findings-chart-desc" data-points="1""#))
            #expect(page.body.contains(" high: 1</title>"))
            #expect(page.body.contains("<dt>Findings</dt><dd>1</dd>"))
            #expect(page.body.contains("acme/api"))
            #expect(page.body.contains("Nothing needs attention."))
        }
    }

    @Test("user-controlled names render inert: a repository, team or finding title with <script> is escaped")
    func escaping() async throws {
        let world = try APIWorld()
        let repo = try await world.addRepository("acme/<script>alert(1)</script>")
        _ = try await world.addFinishedRun(repository: repo, title: "<script>alert(2)</script>")
        try await world.appliance.supervisor.withWorkspace(world.workspaceA) { actor in
            _ = try await actor.write { tx in try TeamStore.create(name: "<script>alert(3)</script>", by: "test", in: &tx) }
        }
        let base = "/workspaces/\(world.workspaceA)"
        try await world.console { browser in
            try await browser.signIn("owner@example.com", APIWorld.password(.owner))
            for page in ["", "/runs", "/runs/1", "/repositories", "/members", "/settings"] {
                let reply = try await browser.get(base + page)
                #expect(reply.status == .ok)
                #expect(!reply.body.contains("<script"), "\(page)")
            }
            #expect(try await browser.get(base + "/repositories").body.contains("acme/&lt;script&gt;alert(1)&lt;/script&gt;"))
            #expect(try await browser.get(base + "/members").body.contains("&lt;script&gt;alert(3)&lt;/script&gt;"))
            #expect(try await browser.get(base + "/runs/1").body.contains("&lt;script&gt;alert(2)&lt;/script&gt;"))
        }
    }

    @Test("admins create workspaces; repositories enable and disable, with the plan limit explained when refused")
    func workspacesAndRepositories() async throws {
        let world = try APIWorld()
        var added: [Int64] = []
        for i in 0..<6 { added.append(try await world.addRepository("acme/r\(i)", enabled: i < 5)) }  // free: 5 enabled repositories
        let repos = added
        let base = "/workspaces/\(world.workspaceA)"
        try await world.console { browser in
            try await browser.signIn("root@example.com", "admin password 1")
            let list = try await browser.get("/workspaces")
            #expect(list.body.contains("Create a workspace"))
            #expect(list.body.contains("alpha") && list.body.contains("you are not a member"))
            let created = try await browser.post("/workspaces", ["name": "gamma"])
            #expect(created.status == .seeOther)
            let overview = try await browser.get(try #require(created.location))
            #expect(overview.status == .ok)
            #expect(overview.body.contains("gamma: overview"))
            #expect(overview.body.contains("Your role: owner"))

            let admin = ConsoleSession(client: browser.client)
            try await admin.signIn("admin@example.com", APIWorld.password(.admin))
            try await repositoriesPage(admin, base: base, repos: repos)
        }
    }

    func repositoriesPage(_ browser: ConsoleSession, base: String, repos: [Int64]) async throws {
        do {
            let page = try await browser.get(base + "/repositories")
            #expect(page.body.contains("Enable acme/r5"))
            let refused = try await browser.post(base + "/repositories/\(repos[5])/enable")
            #expect(refused.status == .forbidden)
            #expect(refused.body.contains("Plan limit reached"))
            #expect(refused.body.contains("allows 5 enabled repositories"))
            #expect(try await browser.post(base + "/repositories/\(repos[0])/disable").status == .seeOther)
            #expect(try await browser.post(base + "/repositories/\(repos[5])/enable").status == .seeOther)
            #expect(try await browser.get(base + "/repositories").body.contains("Disable acme/r5"))
            #expect(try await browser.post(base + "/repositories/\(repos[5])/explode").status == .notFound)
        }
    }

    @Test("members: admins add and change roles, only owners grant or remove the owner role; teams; the audit log records it")
    func membersAndAudit() async throws {
        let world = try APIWorld()
        _ = try world.appliance.identity.createUser(email: "new@example.com", password: "new user password", isAdmin: false)
        let base = "/workspaces/\(world.workspaceA)"
        let ownerID = world.members[.owner]!.0.id
        try await world.console { browser in
            try await browser.signIn("admin@example.com", APIWorld.password(.admin))
            let page = try await browser.get(base + "/members")
            #expect(!page.body.contains("<option>owner</option>"))
            #expect(!page.body.contains("Remove owner@example.com"))
            #expect(try await browser.post(base + "/members", ["email": "new@example.com", "role": "owner"]).status == .forbidden)
            #expect(try await browser.post(base + "/members/\(ownerID)/remove").status == .forbidden)
            #expect(try await browser.post(base + "/members/\(ownerID)/role", ["role": "viewer"]).status == .forbidden)
            #expect(try await browser.post(base + "/members", ["email": "new@example.com", "role": "member"]).status == .seeOther)
            #expect(try await browser.post(base + "/members", ["email": "new@example.com", "role": "member"]).status == .conflict)
            #expect(try await browser.post(base + "/members", ["email": "nobody@example.com", "role": "member"]).status == .notFound)
            #expect(try await browser.post(base + "/teams", ["name": "platform"]).status == .seeOther)
            let after = try await browser.get(base + "/members")
            #expect(after.body.contains("new@example.com"))
            #expect(after.body.contains("platform"))
            let audit = try await browser.get(base + "/audit")
            #expect(audit.body.contains("MemberAdded"))
            #expect(audit.body.contains("TeamCreated"))
            let owner = ConsoleSession(client: browser.client)
            try await owner.signIn("owner@example.com", APIWorld.password(.owner))
            #expect(try await owner.get(base + "/members").body.contains("<option>owner</option>"))
            let newID = try #require(try world.appliance.identity.user(email: "new@example.com")).id
            #expect(try await owner.post(base + "/members/\(newID)/role", ["role": "owner"]).status == .seeOther)
            #expect(try world.appliance.identity.role(of: newID, in: world.workspaceA) == .owner)
            #expect(try await owner.post(base + "/members/\(newID)/remove").status == .seeOther)
            #expect(try world.appliance.identity.role(of: newID, in: world.workspaceA) == nil)
        }
    }

    @Test("providers rotate, disable and enable with write-only keys; settings save a version and explain each value's source")
    func providersAndSettings() async throws {
        let world = try APIWorld()
        let base = "/workspaces/\(world.workspaceA)"
        try await world.console { browser in
            try await browser.signIn("admin@example.com", APIWorld.password(.admin))
            _ = try await browser.get(base + "/providers")
            #expect(try await browser.post(base + "/providers", ["kind": "anthropic", "api_key": "sk-ant-first-1111", "priority": "5"]).status == .seeOther)
            let missingKey = try await browser.post(base + "/providers", ["kind": "openai"])
            #expect(missingKey.status == .badRequest)
            #expect(missingKey.body.contains("an API key is required for openai"))
            let id = try #require(try await world.appliance.supervisor.withWorkspace(world.workspaceA) { try await world.appliance.api.providers.list(in: $0) }.first?.id)
            #expect(try await browser.post(base + "/providers/\(id)/rotate", ["api_key": "sk-ant-second-2222"]).status == .seeOther)
            #expect(try await browser.post(base + "/providers/\(id)/disable").status == .seeOther)
            let page = try await browser.get(base + "/providers")
            #expect(page.body.contains("…2222") && !page.body.contains("sk-ant-second"))
            #expect(page.body.contains("<td>disabled</td>"))
            #expect(try await world.providers().first?.enabled == false)
            #expect(try await browser.post(base + "/providers/\(id)/enable").status == .seeOther)
            #expect(try await world.providers().first?.enabled == true)
            #expect(try await browser.get(base + "/providers").body.contains("<td>enabled</td>"))
            #expect(try await browser.post(base + "/providers/budget", ["usd": "25"]).status == .seeOther)
            #expect(try await browser.get(base + "/providers").body.contains("Monthly AI budget: $25.00"))

            _ = try await browser.get(base + "/settings")
            let saved = try await browser.post(base + "/settings", ["values": #"{"review.min_severity": "high"}"#, "locks": "review.min_severity"])
            #expect(saved.status == .seeOther)
            let settings = try await browser.get(base + "/settings")
            #expect(settings.body.contains("saved by admin@example.com"))
            #expect(settings.body.contains("Version history"))
            #expect(settings.body.contains("<td>admin@example.com</td>"))
            #expect(settings.body.contains("<td><code>review.min_severity</code></td><td>high</td><td>workspace</td><td>by workspace</td>"))
            let bad = try await browser.post(base + "/settings", ["values": "not json"])
            #expect(bad.status == .badRequest)
            let control = try await browser.post(base + "/settings", ["values": #"{"review.instructions": "x\u0000y"}"#, "locks": ""])
            #expect(control.status == .badRequest)
            #expect(control.body.contains("must not contain control characters"))
        }
    }

    @Test("integrations: admins add a GitHub App with its key; the list shows its webhook URL")
    func integrations() async throws {
        let world = try APIWorld()
        let base = "/workspaces/\(world.workspaceA)"
        let key = try TestRSAKeys.other().pemRepresentation
        try await world.console { browser in
            try await browser.signIn("admin@example.com", APIWorld.password(.admin))
            _ = try await browser.get(base + "/integrations")
            let bad = try await browser.post(base + "/integrations", ["app_id": "12", "private_key": "not a key", "webhook_secret": "s3cret-webhook"])
            #expect(bad.status == .badRequest)
            let added = try await browser.post(base + "/integrations", ["app_id": "12", "private_key": key, "webhook_secret": "s3cret-webhook"])
            #expect(added.status == .seeOther, "\(added.body)")
            let page = try await browser.get(base + "/integrations")
            #expect(page.body.contains("/webhooks/github/int_"))
            #expect(page.body.contains("https://api.github.com"))
            #expect(!page.body.contains("s3cret-webhook"))
            #expect(page.body.contains("none yet"))
            let integration = try #require(try await world.appliance.supervisor.withWorkspace(world.workspaceA) { actor in
                try await world.appliance.integrations.list(in: actor)
            }.first?.id)
            try await world.appliance.supervisor.withWorkspace(world.workspaceA) { actor in
                try await actor.write { tx in
                    try tx.db.execute(sql: """
                        INSERT INTO deliveries (id, integration_id, event, action, payload, received_at, processed_at, outcome)
                        VALUES ('d-1', ?, 'pull_request', 'opened', x'7b7d', ?, ?, 'queued review run 1')
                        """, arguments: [integration, tx.now.timeIntervalSince1970, tx.now.timeIntervalSince1970])
                }
            }
            #expect(try await browser.get(base + "/integrations").body.contains("pull_request.opened at "))
            #expect(try await browser.get(base + "/integrations").body.contains(": queued review run 1"))
        }
    }

    @Test("the account page changes the visitor's own password with the current one")
    func accountPassword() async throws {
        let world = try APIWorld()
        try await world.console { first in
            let browser = ConsoleSession(client: first.client)
            try await browser.signIn("member@example.com", APIWorld.password(.member))
            #expect(try await browser.get("/workspaces").body.contains(#"<a href="/account">Account</a>"#))
            let page = try await browser.get("/account")
            #expect(page.status == .ok && page.body.contains("Signed in as member@example.com"), "\(page.body)")
            let wrong = try await browser.post("/account/password", ["current_password": "nope", "new_password": "a brand new password"])
            #expect(wrong.status == .forbidden && wrong.body.contains("The current password is wrong."), "\(wrong.body)")
            let short = try await browser.post("/account/password", ["current_password": APIWorld.password(.member), "new_password": "short"])
            #expect(short.status == .badRequest && short.body.contains("at least 12 characters"), "\(short.body)")
            let done = try await browser.post("/account/password", ["current_password": APIWorld.password(.member), "new_password": "a brand new password"])
            #expect(done.status == .ok && done.body.contains("Your password is changed"), "\(done.body)")
            #expect(try await browser.get("/workspaces").status == .ok, "still signed in")
            let again = ConsoleSession(client: first.client)
            #expect(try await again.signIn("member@example.com", APIWorld.password(.member)).status == .unauthorized)
            #expect(try await again.signIn("member@example.com", "a brand new password").status == .seeOther)
            #expect(try await ConsoleSession(client: first.client).get("/account").status == .seeOther, "signed out: to the sign-in page")
        }
    }

    @Test("the account page makes API tokens (the secret shown once), lists and revokes them; admin scope only for appliance admins")
    func accountTokens() async throws {
        let world = try APIWorld()
        try await world.console { first in
            let browser = ConsoleSession(client: first.client)
            try await browser.signIn("member@example.com", APIWorld.password(.member))
            let page = try await browser.get("/account")
            #expect(page.body.contains(#"name="scope_write""#) && !page.body.contains(#"name="scope_admin""#), "no admin scope for a non-admin")
            let made = try await browser.post("/account/tokens", ["name": "ci", "scope_read": "1", "scope_write": "1", "expires_in_days": "30"])
            #expect(made.status == .ok, "\(made.body)")
            let secret = try #require(made.body.range(of: #"<code>snt_[A-Za-z0-9_-]+"#, options: .regularExpression).map {
                String(made.body[made.body.index($0.lowerBound, offsetBy: 6)..<$0.upperBound])
            }, "\(made.body)")
            #expect(made.body.contains("<td>ci</td>") && made.body.contains("<td>read write</td>") && made.body.contains("<td>active</td>"))
            let api = APIClient(client: first.client)
            #expect(try await api.call(.get, "/auth/me", token: secret).status == .ok)
            #expect(!(try await browser.get("/account").body.contains(secret)), "the secret is shown once")

            let admin = try await browser.post("/account/tokens", ["name": "root", "scope_admin": "1"])
            #expect(admin.status == .forbidden && admin.body.contains("Only appliance admins can create admin-scoped tokens."), "\(admin.body)")
            let blank = try await browser.post("/account/tokens", ["name": " ", "scope_read": "1"])
            #expect(blank.status == .badRequest && blank.body.contains("A token needs a name of 1 to 100 characters."), "\(blank.body)")
            // 100 letters carrying 2,000 combining marks: 100 characters, as the API's rule refuses.
            let piled = try await browser.post("/account/tokens", ["name": String(repeating: "a" + String(repeating: "\u{301}", count: 20), count: 100),
                                                                   "scope_read": "1"])
            #expect(piled.status == .badRequest && piled.body.contains("A token needs a name of 1 to 100 characters."), "\(piled.body)")
            let noScope = try await browser.post("/account/tokens", ["name": "none"])
            #expect(noScope.status == .badRequest && noScope.body.contains("at least one scope"), "\(noScope.body)")

            let id = try #require(try world.appliance.identity.tokens(of: world.members[.member]!.0).first { $0.name == "ci" }?.id)
            #expect(try await browser.post("/account/tokens/\(id)/revoke").status == .seeOther)
            #expect(try await api.call(.get, "/auth/me", token: secret).status == .unauthorized)
            #expect(try await browser.get("/account").body.contains("<td>revoked</td>"))
            // Someone else's token id is not found.
            let others = try #require(try world.appliance.identity.tokens(of: world.members[.owner]!.0).first?.id)
            #expect(try await browser.post("/account/tokens/\(others)/revoke").status == .notFound)
        }
    }

    @Test("appliance admins see health, create users, set plans and retry or discard dead jobs; nobody else may")
    func adminPages() async throws {
        let world = try APIWorld()
        let dead = try await world.appliance.supervisor.withWorkspace(world.workspaceA) { actor in
            try await actor.write { tx in
                try (1...2).map { n -> Int64 in
                    try tx.db.execute(sql: """
                        INSERT INTO jobs (kind, payload, priority, state, attempts, max_attempts, run_at, last_error, created_at, finished_at)
                        VALUES ('test.kind', x'7b7d', 1, 'dead', 5, 5, 0, ?, 0, 0)
                        """, arguments: ["boom <\(n)>"])
                    return tx.db.lastInsertedRowID
                }
            }
        }
        try await world.console { first in
            let owner = ConsoleSession(client: first.client)
            try await owner.signIn("owner@example.com", APIWorld.password(.owner))
            #expect(!(try await owner.get("/workspaces").body.contains(#"href="/admin""#)))
            for path in ["/admin", "/admin/users", "/admin/workspaces", "/admin/jobs", "/admin/audit"] {
                #expect(try await owner.get(path).status == .forbidden, "\(path)")
            }
            _ = try await owner.get("/workspaces")
            #expect(try await owner.post("/admin/users", ["email": "x@example.com", "password": "a long password 1"]).status == .forbidden)
            #expect(try await owner.post("/admin/workspaces/\(world.workspaceA)/plan", ["plan": "team"]).status == .forbidden)
            #expect(try await owner.post("/admin/jobs/\(world.workspaceA)/\(dead[0])/retry").status == .forbidden)

            let admin = ConsoleSession(client: first.client)
            try await admin.signIn("root@example.com", "admin password 1")
            #expect(try await admin.get("/workspaces").body.contains(#"href="/admin""#))
            let health = try await admin.get("/admin")
            #expect(health.status == .ok)
            #expect(health.body.contains("<dt>License</dt><dd>no license</dd>"))
            #expect(health.body.contains("<dt>Workspaces</dt><dd>2"))

            let users = try await admin.get("/admin/users")
            #expect(users.body.contains("viewer@example.com"))
            #expect(try await admin.post("/admin/users", ["email": "fresh@example.com", "password": "a long password 1"]).status == .seeOther)
            #expect(try world.appliance.identity.user(email: "fresh@example.com")?.isAdmin == false)
            #expect(try await admin.post("/admin/users", ["email": "fresh@example.com", "password": "a long password 1"]).status == .conflict)
            let audit = try await admin.get("/admin/audit")
            #expect(audit.status == .ok)
            let fresh = try #require(try world.appliance.identity.user(email: "fresh@example.com"))
            #expect(audit.body.contains("<td>UserCreated</td><td>user:\(fresh.id)</td><td>root@example.com</td>"), "\(audit.body)")
            #expect(audit.body.contains("<td>WorkspaceCreated</td><td>workspace:\(world.workspaceA)</td><td>cli</td>"), "\(audit.body)")

            let plans = try await admin.get("/admin/workspaces")
            #expect(plans.body.contains("<option selected>free</option>"))
            #expect(try await admin.post("/admin/workspaces/\(world.workspaceA)/plan", ["plan": "team"]).status == .seeOther)
            #expect(try world.appliance.control.workspace(world.workspaceA)?.plan == "team")
            let planChange = try await admin.get("/admin/audit").body
            #expect(planChange.contains("<td>WorkspacePlanChanged</td><td>workspace:\(world.workspaceA)</td><td>root@example.com</td>"
                                        + "<td><code>{&quot;from&quot;:&quot;free&quot;,&quot;to&quot;:&quot;team&quot;}</code>"), "\(planChange)")
            #expect(try await admin.post("/admin/workspaces/\(world.workspaceA)/plan", ["plan": "platinum"]).status.code >= 400)
            // A plan no longer in force is shown as the workspace's, said to be held to free (nothing was selected).
            try world.appliance.control.write { db in try db.execute(sql: "UPDATE workspaces SET plan = 'gone' WHERE id = ?", arguments: [world.workspaceA.rawValue]) }
            let unknown = try await admin.get("/admin/workspaces").body
            #expect(unknown.contains(#"<option selected disabled value="">gone (not in force)</option>"#), "\(unknown)")
            #expect(unknown.contains("Plan gone is not defined in this appliance&#39;s plans: the workspace is held to the limits of free.")
                    || unknown.contains("Plan gone is not defined in this appliance's plans: the workspace is held to the limits of free."), "\(unknown)")

            let jobs = try await admin.get("/admin/jobs")
            #expect(jobs.body.contains("boom &lt;1&gt;") && jobs.body.contains("boom &lt;2&gt;"))
            #expect(try await admin.post("/admin/jobs/\(world.workspaceA)/\(dead[0])/retry").status == .seeOther)
            #expect(try await admin.post("/admin/jobs/\(world.workspaceA)/\(dead[1])/discard").status == .seeOther)
            let again = try await admin.post("/admin/jobs/\(world.workspaceA)/\(dead[1])/discard")
            #expect(again.status == .conflict && again.body.contains("job \(dead[1]) is not dead but cancelled: only a dead job can be retried or discarded"), "\(again.body)")
            // A job that was never there is not found (it said "not dead").
            let missing = try await admin.post("/admin/jobs/\(world.workspaceA)/999999/retry")
            #expect(missing.status == .notFound && missing.body.contains("There is no job 999999 in this workspace."), "\(missing.body)")
            let states = try await world.appliance.supervisor.withWorkspace(world.workspaceA) { actor in
                try await actor.read { db in try dead.map { try JobQueue.job(id: $0, in: db)?.state } }
            }
            #expect(states == [.queued, .cancelled])
            // Each is in the workspace's audit log with who did it (neither was recorded).
            let jobAudit = try await world.appliance.supervisor.withWorkspace(world.workspaceA) { actor in
                try await actor.read { db in
                    try Row.fetchAll(db, sql: "SELECT type, subject, data FROM events WHERE type IN ('JobRetried', 'JobDiscarded') ORDER BY seq")
                        .map { "\($0["type"] as String) \($0["subject"] as String) \($0["data"] as String)" }
                }
            }
            #expect(jobAudit.count == 2 && jobAudit[0].hasPrefix("JobRetried job:\(dead[0])") && jobAudit[1].hasPrefix("JobDiscarded job:\(dead[1])"), "\(jobAudit)")
            #expect(jobAudit.allSatisfy { $0.contains(#""by":"root@example.com""#) }, "\(jobAudit)")
            #expect(try await admin.get("/admin/jobs").body.contains("No dead jobs."))
            // A workspace whose file cannot be read is named, not passed over as having no dead jobs.
            let broken = try #require(try world.appliance.workspaces.create(name: "broken").workspaceID)
            try Data(repeating: 0x42, count: 4096).write(to: world.appliance.dataDirectory.workspaceFile(broken))
            let withOffline = try await admin.get("/admin/jobs").body
            #expect(withOffline.contains("Not read: broken (\(broken))") && withOffline.contains("No dead jobs in the workspaces read."), "\(withOffline)")
        }
    }

    @Test("the GitHub App manifest flow: the manifest goes to GitHub with the webhook URL; the code comes back and becomes a sealed integration")
    func manifestFlow() async throws {
        let github = try await FakeGitHub.start()
        let world = try APIWorld()
        let base = "/workspaces/\(world.workspaceA)"
        try await world.console { first in
            let browser = ConsoleSession(client: first.client)
            try await browser.signIn("admin@example.com", APIWorld.password(.admin))
            #expect(try await browser.get(base + "/integrations").body.contains("Continue to GitHub"))
            let start = try await browser.post(base + "/integrations/manifest", ["api_url": github.baseURL.absoluteString, "organization": "acme"])
            #expect(start.status == .ok, "\(start.body)")
            let action = try #require(start.body.range(of: #"<form method="post" action="http"#).map {
                "http" + String(start.body[$0.upperBound...].prefix { $0 != "\"" }).replacingOccurrences(of: "&amp;", with: "&")
            })
            #expect(action.hasPrefix("http://127.0.0.1:\(github.port)/organizations/acme/settings/apps/new?state=int_"))
            #expect(start.headers[.contentSecurityPolicy]?.contains("form-action 'self' http://127.0.0.1:\(github.port)") == true)
            // An IPv6 GitHub Enterprise: the source in brackets, as browsers read it (the form was refused by the page's own policy).
            let v6 = try await browser.post(base + "/integrations/manifest", ["api_url": "http://[::1]:\(github.port)/api/v3"])
            #expect(v6.headers[.contentSecurityPolicy]?.contains("form-action 'self' http://[::1]:\(github.port);") == true
                    || v6.headers[.contentSecurityPolicy]?.hasSuffix("form-action 'self' http://[::1]:\(github.port)") == true,
                    "\(String(describing: v6.headers[.contentSecurityPolicy])) \(v6.status)")
            let state = try #require(URLComponents(string: action)?.queryItems?.first { $0.name == "state" }?.value)
            let integrationID = String(state.prefix(20))
            #expect(start.body.contains("/webhooks/github/\(integrationID)"))
            #expect(start.body.contains("&quot;redirect_url&quot;:&quot;http://localhost\(base)/integrations/manifest/callback&quot;"))
            #expect(start.body.contains("&quot;pull_requests&quot;:&quot;write&quot;"))

            // A state from another session, or altered, is refused before GitHub is called.
            let code = await github.manifestCode()
            let other = ConsoleSession(client: first.client)
            try await other.signIn("owner@example.com", APIWorld.password(.owner))
            #expect(try await other.get(base + "/integrations/manifest/callback?code=\(code)&state=\(state)").status == .forbidden)
            #expect(try await browser.get(base + "/integrations/manifest/callback?code=\(code)&state=\(state)x").status == .forbidden)
            // A viewer cannot finish it either.
            let viewer = ConsoleSession(client: first.client)
            try await viewer.signIn("viewer@example.com", APIWorld.password(.viewer))
            #expect(try await viewer.get(base + "/integrations/manifest/callback?code=\(code)&state=\(state)").status == .forbidden)

            let done = try await browser.get(base + "/integrations/manifest/callback?code=\(code)&state=\(state)")
            #expect(done.status == .seeOther, "\(done.body)")
            let page = try await browser.get(base + "/integrations")
            #expect(page.body.contains("/webhooks/github/\(integrationID)"))
            #expect(page.body.contains("<td>\(github.appID)</td>"))
            let stored = try await world.appliance.supervisor.withWorkspace(world.workspaceA) { actor in
                try await world.appliance.integrations.loadGitHub(IntegrationID(integrationID)!, from: actor)
            }
            #expect(stored?.privateKeyPEM == github.privateKeyPEM)
            #expect(stored?.webhookSecret == Data("fake-manifest-webhook-secret".utf8))
            #expect(try await world.appliance.integrations.workspaceOf(IntegrationID(integrationID)!) == world.workspaceA)

            // The same callback again (a reload): the App is this integration already (it was a 500 when GitHub took the code twice).
            let again = try await browser.get(base + "/integrations/manifest/callback?code=\(code)&state=\(state)")
            #expect(again.status == .conflict && again.body.contains("This GitHub App was added already as integration \(integrationID)"), "\(again.body)")
            // GitHub's codes work once.
            func started(_ apiURL: String) async throws -> (ConsoleSession.Page, String?) {
                let page = try await browser.post(base + "/integrations/manifest", ["api_url": apiURL])
                let state = page.body.range(of: "state=").map { String(page.body[$0.upperBound...].prefix { $0 != "\"" && $0 != "&" }) }
                return (page, state)
            }
            _ = try await browser.get(base + "/integrations")
            let second = try #require(try await started(github.baseURL.absoluteString).1)
            let reused = try await browser.get(base + "/integrations/manifest/callback?code=\(code)&state=\(second)")
            #expect(reused.status == .badRequest)
            #expect(reused.body.contains("codes work once"))
            // GitHub unreachable: a 502 saying so (it was a 500).
            _ = try await browser.get(base + "/integrations")
            let unreachable = try #require(try await started("http://127.0.0.1:1").1)
            let failed = try await browser.get(base + "/integrations/manifest/callback?code=\(await github.manifestCode())&state=\(unreachable)")
            #expect(failed.status == .badGateway && failed.body.contains("Sentinel could not exchange GitHub&#39;s code"), "\(failed.body)")
            // An API URL the integration could not use is refused before the visitor is sent there.
            for url in ["ftp://evil.example/", "http://evil.example/api/v3", "https://user:pass@evil.example/"] {
                _ = try await browser.get(base + "/integrations")
                let (page, _) = try await started(url)
                #expect(page.status == .badRequest && !page.body.contains("settings/apps/new"), "\(url): \(page.body)")
            }
        }
        await github.stop()
    }
}
