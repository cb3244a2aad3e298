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

/// An appliance with an admin, two workspaces (A and B) and one user per role in A, driven
/// through the router like a real client.
struct APIWorld {
    let directory = TemporaryDirectory("sentinel-api")
    let appliance: Appliance
    let admin: User
    let adminToken: String
    let workspaceA: WorkspaceID
    let workspaceB: WorkspaceID
    /// role → (user, session-equivalent token with read+write)
    let members: [WorkspaceRole: (User, String)]

    init(adjust: (inout SentinelConfig) -> Void = { _ in }) throws {
        var config = testConfig()
        config.server.tlsEnabled = false
        config.auth.bcryptCost = 4
        adjust(&config)
        appliance = try Appliance(dataDirectory: DataDirectory(path: directory.path), config: config, logger: Logger.sentinel(level: "error"))
        let identity = appliance.identity
        admin = try identity.createUser(email: "root@example.com", password: "admin password 1", isAdmin: true)
        adminToken = try identity.createToken(for: admin, name: "t", scopes: Set(TokenScope.allCases), expiresInDays: nil).token
        workspaceA = try appliance.workspaces.create(name: "alpha").workspaceID!
        workspaceB = try appliance.workspaces.create(name: "beta").workspaceID!
        try identity.setRole(.owner, userID: admin.id, in: workspaceB)
        var members: [WorkspaceRole: (User, String)] = [:]
        for role in WorkspaceRole.allCases {
            let user = try identity.createUser(email: "\(role.rawValue)@example.com", password: "password of \(role.rawValue)", isAdmin: false)
            try identity.setRole(role, userID: user.id, in: workspaceA)
            members[role] = (user, try identity.createToken(for: user, name: "t", scopes: [.read, .write], expiresInDays: nil).token)
        }
        self.members = members
    }

    func token(_ role: WorkspaceRole) -> String { members[role]!.1 }

    func test(_ body: @escaping @Sendable (APIClient) async throws -> Void) async throws {
        let app = Application(router: try appliance.makeRouter())
        try await app.test(.router) { client in try await body(APIClient(client: client)) }
        await appliance.supervisor.shutdown()
        directory.cleanup()
    }

    /// Registers a repository, as an installation event would (with a bare integration row).
    static func registerRepository(_ name: String, in tx: inout WorkspaceTransaction) throws -> RepositoryRecord {
        let integration = IntegrationID("int_" + String(UUID().uuidString.lowercased().filter { $0.isLetter || $0.isNumber }.prefix(16)))!
        try tx.db.execute(sql: "INSERT INTO integrations (id, kind, api_url, webhook_secret, created_at) VALUES (?, 'github', 'x', x'00', 0)",
                          arguments: [integration.rawValue])
        return try RepositoryStore.register(integrationID: integration, externalID: Int64.random(in: 1...1_000_000), fullName: name,
                                            installationID: 1, in: &tx)
    }

    /// Registers a repository in workspace A.
    func addRepository(_ name: String = "acme/api", in workspace: WorkspaceID? = nil, enabled: Bool = true) async throws -> Int64 {
        try await appliance.supervisor.withWorkspace(workspace ?? workspaceA) { actor in
            try await actor.write { tx in
                let id = try Self.registerRepository(name, in: &tx).id
                if !enabled { try tx.db.execute(sql: "UPDATE repositories SET enabled = 0 WHERE id = ?", arguments: [id]) }
                return id
            }
        }
    }
}

struct APIClient: Sendable {
    let client: any TestClientProtocol

    struct Reply: Sendable {
        let status: HTTPResponse.Status
        let body: String
        let headers: HTTPFields
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]) ?? [:] }
    }

    @discardableResult
    func call(_ method: HTTPRequest.Method, _ path: String, token: String? = nil, body: String? = nil, authorization: String? = nil,
              accept: String? = nil, contentType: String = "application/json") async throws -> Reply {
        var headers: HTTPFields = [:]
        if let accept { headers[.accept] = accept }
        if let token { headers[.authorization] = "Bearer \(token)" }
        if let authorization { headers[.authorization] = authorization }
        if body != nil { headers[.contentType] = contentType }
        let response = try await client.execute(uri: "/api/v1" + path, method: method, headers: headers,
                                                body: body.map { ByteBuffer(string: $0) })
        return Reply(status: response.status, body: String(buffer: response.body), headers: response.headers)
    }
}

@Suite("API: identity and access")
struct APIAccessTests {
    @Test("the setup token creates the first admin once; it is a 0600 file and never in the log")
    func setupTokenOnce() async throws {
        let dir = TemporaryDirectory("sentinel-setup")
        var config = testConfig()
        config.auth.bcryptCost = 4
        let log = CapturedLog()
        let appliance = try Appliance(dataDirectory: DataDirectory(path: dir.path), config: config, logger: Logger.sentinel(level: "info", sink: log.sink))
        let file = appliance.dataDirectory.setupTokenFile
        let attributes = try FileManager.default.attributesOfItem(atPath: file.path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let token = try String(contentsOf: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(!log.text.contains(token))
        #expect(log.text.contains("setup-token"))
        let app = Application(router: try appliance.makeRouter())
        try await app.test(.router) { client in
            let api = APIClient(client: client)
            let wrong = try await api.call(.post, "/setup", body: #"{"setup_token":"sst_wrong","email":"root@example.com","password":"a long password"}"#)
            #expect(wrong.status == .unauthorized)
            let ok = try await api.call(.post, "/setup", body: #"{"setup_token":"\#(token)","email":"root@example.com","password":"a long password"}"#)
            #expect(ok.status == .created, "\(ok.body)")
            #expect(ok.json["is_admin"] as? Bool == true)
            let again = try await api.call(.post, "/setup", body: #"{"setup_token":"\#(token)","email":"two@example.com","password":"a long password"}"#)
            #expect(again.status == .conflict)
            #expect(!FileManager.default.fileExists(atPath: file.path))
            let login = try await api.call(.post, "/auth/login", body: #"{"email":"root@example.com","password":"a long password"}"#)
            #expect(login.status == .ok)
            // The address as typed, spaces and capitals included, signs in as the console's form does.
            let typed = try await api.call(.post, "/auth/login", body: #"{"email":"  Root@Example.com ","password":"a long password"}"#)
            #expect(typed.status == .ok, "\(typed.body)")
            let session = try #require(login.json["token"] as? String)
            #expect(session.hasPrefix("sns_"))
            let me = try await api.call(.get, "/auth/me", token: session)
            #expect((me.json["user"] as? [String: Any])?["email"] as? String == "root@example.com")
            #expect(try await api.call(.post, "/auth/logout", token: session).status == .noContent)
            #expect(try await api.call(.get, "/auth/me", token: session).status == .unauthorized)
        }
        await appliance.supervisor.shutdown()
        dir.cleanup()
    }

    @Test("failed sign-ins are limited per account: the sixth attempt answers 429 with Retry-After, even with the right password")
    func loginRateLimit() async throws {
        let world = try APIWorld()
        try await world.test { api in
            for _ in 0..<5 {
                #expect(try await api.call(.post, "/auth/login", body: #"{"email":"viewer@example.com","password":"wrong"}"#).status == .unauthorized)
            }
            let limited = try await api.call(.post, "/auth/login", body: #"{"email":"viewer@example.com","password":"password of viewer"}"#)
            #expect(limited.status == .tooManyRequests)
            #expect(Int(limited.headers[.retryAfter] ?? "") ?? 0 > 0)
            // Another account is not affected.
            #expect(try await api.call(.post, "/auth/login", body: #"{"email":"member@example.com","password":"password of member"}"#).status == .ok)
        }
    }

    @Test("parallel wrong-password sign-ins cannot exceed the limit: each reserves its slot before bcrypt runs")
    func parallelLoginsRespectLimit() async throws {
        let world = try APIWorld(adjust: { $0.auth.bcryptCost = 8 })
        let passwords = world.appliance.identity.passwords
        try await world.test { api in
            let before = passwords.verifications
            let statuses = try await withThrowingTaskGroup(of: HTTPResponse.Status.self) { group in
                for _ in 0..<12 {
                    group.addTask {
                        try await api.call(.post, "/auth/login", body: #"{"email":"viewer@example.com","password":"wrong"}"#).status
                    }
                }
                return try await group.reduce(into: [HTTPResponse.Status]()) { $0.append($1) }
            }
            #expect(statuses.filter { $0 == .unauthorized }.count == 5, "\(statuses)")
            #expect(statuses.filter { $0 == .tooManyRequests }.count == 7, "\(statuses)")
            #expect(passwords.verifications - before == 5, "a refused attempt computes no hash")
            // A right password still signs in on another account, and gives its slot back.
            #expect(try await api.call(.post, "/auth/login", body: #"{"email":"member@example.com","password":"password of member"}"#).status == .ok)
        }
    }

    @Test("an unknown email costs one bcrypt verification at the configured cost, like a known one")
    func unknownEmailCostsTheSame() async throws {
        let world = try APIWorld(adjust: { $0.auth.bcryptCost = 6 })
        let passwords = world.appliance.identity.passwords
        try await world.test { api async throws in
            let before = passwords.verifications
            #expect(try await api.call(.post, "/auth/login", body: #"{"email":"nobody@example.com","password":"whatever it is"}"#).status == .unauthorized)
            #expect(passwords.verifications - before == 1)
            #expect(try await api.call(.post, "/auth/login", body: #"{"email":"viewer@example.com","password":"wrong"}"#).status == .unauthorized)
            #expect(passwords.verifications - before == 2)
        }
        // The dummy hash has the configured work factor, not a cheaper fixed one.
        #expect(passwords.dummyHash.split(separator: "$").dropFirst().first == "06", "\(passwords.dummyHash)")
    }

    func listedHeaders(_ response: APIClient.Reply) -> [String?] {
        [response.headers[.cacheControl], response.headers[HTTPField.Name("X-Content-Type-Options")!]]
    }

    @Test("an Accept header that takes no JSON is a 406 before anything is done: the setup, a token or a run was made and its secret lost")
    func acceptCheckedFirst() async throws {
        let dir = TemporaryDirectory("sentinel-accept")
        var config = testConfig()
        config.auth.bcryptCost = 4
        let appliance = try Appliance(dataDirectory: DataDirectory(path: dir.path), config: config, logger: Logger.sentinel(level: "error", sink: CapturedLog().sink))
        let token = try String(contentsOf: appliance.dataDirectory.setupTokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let app = Application(router: try appliance.makeRouter())
        try await app.test(.router) { client in
            let api = APIClient(client: client)
            let setup = #"{"setup_token":"\#(token)","email":"root@example.com","password":"a long password"}"#
            for accept in ["text/html", "application/problem+json", "application/json;q=0, text/*", "application/xml"] {
                let refused = try await api.call(.post, "/setup", body: setup, accept: accept)
                #expect(refused.status == .notAcceptable, "\(accept): \(refused.body)")
                #expect(refused.body.contains("nothing was done"), "\(refused.body)")
            }
            // The token is unspent: the setup is made once, with a header that takes JSON.
            let made = try await api.call(.post, "/setup", body: setup, accept: "text/html;q=0.9, application/*;q=0.5")
            #expect(made.status == .created, "\(made.body)")
            let login = try await api.call(.post, "/auth/login", body: #"{"email":"root@example.com","password":"a long password"}"#, accept: "*/*")
            let session = try #require(login.json["token"] as? String)
            #expect(try await api.call(.post, "/tokens", token: session, body: #"{"name":"lost","scopes":["read"]}"#, accept: "text/html").status
                    == .notAcceptable)
            let listed = try await api.call(.get, "/tokens", token: session)
            #expect(!listed.body.contains("\"lost\""), "\(listed.body)")
            // The YAML document answers a header that takes YAML; a 204 takes any header.
            #expect(try await api.call(.get, "/openapi.yaml", accept: "application/yaml").status == .ok)
            #expect(try await api.call(.get, "/openapi.yaml", accept: "application/json").status == .notAcceptable)
            #expect(try await api.call(.post, "/auth/logout", token: session, accept: "text/html").status == .noContent)
        }
        await appliance.supervisor.shutdown()
        dir.cleanup()
    }

    @Test("expired, revoked and wrong-scope tokens are refused; token secrets are shown once, in an answer no cache keeps")
    func tokens() async throws {
        let world = try APIWorld()
        let identity = world.appliance.identity
        let member = world.members[.member]!.0
        let readOnly = try identity.createToken(for: member, name: "ro", scopes: [.read], expiresInDays: nil).token
        let expiring = try identity.createToken(for: member, name: "old", scopes: [.read], expiresInDays: 1)
        try world.appliance.control.write { db in
            try db.execute(sql: "UPDATE api_tokens SET expires_at = 1 WHERE id = ?", arguments: [expiring.summary.id])
        }
        try await world.test { api in
            #expect(try await api.call(.get, "/auth/me", token: readOnly).status == .ok)
            let refused = try await api.call(.post, "/tokens", token: readOnly, body: #"{"name":"x","scopes":["read"]}"#)
            #expect(refused.status == .forbidden)
            #expect(refused.body.contains("'write' scope"))
            #expect(try await api.call(.get, "/auth/me", token: expiring.token).status == .unauthorized)
            // Every 401 says how to authenticate (RFC 9110 §11.6.1, RFC 6750 §3): a bearer token, and
            // whether the one sent was refused.
            let unknown = try await api.call(.get, "/auth/me", token: "snt_not-a-token")
            #expect(unknown.status == .unauthorized)
            #expect(unknown.headers[.wwwAuthenticate] == #"Bearer realm="Sentinel", error="invalid_token""#)
            #expect(listedHeaders(unknown) == ["no-store", "nosniff"], "a problem document is not kept either")
            let anonymous = try await api.call(.get, "/auth/me")
            #expect(anonymous.status == .unauthorized)
            #expect(anonymous.headers[.wwwAuthenticate] == #"Bearer realm="Sentinel""#)
            let basic = try await api.call(.get, "/auth/me", authorization: "Basic Zm9vOmJhcg==")
            #expect(basic.status == .unauthorized)
            #expect(basic.headers[.wwwAuthenticate] == #"Bearer realm="Sentinel""#)
            #expect(basic.json["detail"] as? String == "the API takes a bearer token (Authorization: Bearer <session or API token>), not Basic")
            // A token sent without its scheme is never echoed, not even its start; a tab after the scheme is taken.
            let bare = try await api.call(.get, "/auth/me", authorization: "snt_not-a-token-secret")
            #expect(bare.status == .unauthorized && !bare.body.contains("snt_"), "\(bare.body)")
            let tabbed = try await api.call(.get, "/auth/me", authorization: "Bearer\t\(readOnly)")
            #expect(tabbed.status == .ok, "\(tabbed.body)")
            let login = try await api.call(.post, "/auth/login", body: #"{"email":"nobody@example.com","password":"whatever it is"}"#)
            #expect(login.status == .unauthorized)
            #expect(login.headers[.wwwAuthenticate] == #"Bearer realm="Sentinel""#)

            let created = try await api.call(.post, "/tokens", token: world.token(.member), body: #"{"name":"ci","scopes":["read"],"expires_in_days":30}"#)
            #expect(created.status == .created)
            // The one answer that shows the secret is kept out of every cache; so is every answer.
            #expect(created.headers[.cacheControl] == "no-store")
            #expect(created.headers[HTTPField.Name("X-Content-Type-Options")!] == "nosniff")
            #expect(listedHeaders(try await api.call(.get, "/auth/me", token: readOnly)) == ["no-store", "nosniff"])
            let secret = try #require(created.json["token"] as? String)
            let id = try #require((created.json["details"] as? [String: Any])?["id"] as? String)
            let listed = try await api.call(.get, "/tokens", token: world.token(.member))
            #expect(listed.body.contains(id))
            #expect(!listed.body.contains(secret))
            #expect(try await api.call(.get, "/auth/me", token: secret).status == .ok)
            #expect(try await api.call(.delete, "/tokens/\(id)", token: world.token(.member)).status == .noContent)
            #expect(try await api.call(.get, "/auth/me", token: secret).status == .unauthorized)
            // Another user's token is not there for you.
            #expect(try await api.call(.delete, "/tokens/\(id)", token: world.token(.viewer)).status == .notFound)
            // Admin scope is for appliance admins only.
            #expect(try await api.call(.post, "/tokens", token: world.token(.owner), body: #"{"name":"x","scopes":["admin"]}"#).status == .forbidden)
        }
    }

    @Test("a token creates only tokens with no scope it lacks that expire no later than it; signed in, any of the user's scopes")
    func tokensCreateNoMoreThanTheyHold() async throws {
        let world = try APIWorld()
        let identity = world.appliance.identity
        // An appliance admin's token without the admin scope minted one with it, which then listed and created users.
        let adminReadWrite = try identity.createToken(for: world.admin, name: "rw", scopes: [.read, .write], expiresInDays: nil).token
        let writeOnly = try identity.createToken(for: world.members[.member]!.0, name: "w", scopes: [.write], expiresInDays: nil).token
        let monthly = try identity.createToken(for: world.members[.member]!.0, name: "m", scopes: [.read, .write], expiresInDays: 30).token
        try await world.test { api in
            let escalated = try await api.call(.post, "/tokens", token: adminReadWrite, body: #"{"name":"esc","scopes":["read","write","admin"]}"#)
            #expect(escalated.status == .forbidden, "\(escalated.body)")
            #expect(escalated.json["detail"] as? String
                    == "this token lacks the 'admin' scope, so it cannot create a token that has it; create that token signed in, or with a token that holds the scope")
            let widened = try await api.call(.post, "/tokens", token: writeOnly, body: #"{"name":"rw","scopes":["read","write"]}"#)
            #expect(widened.status == .forbidden && widened.body.contains("lacks the 'read' scope"), "\(widened.body)")
            #expect(try await api.call(.post, "/tokens", token: writeOnly, body: #"{"name":"w2","scopes":["write"]}"#).status == .created)
            // A token that expires makes only tokens that expire by then.
            let everlasting = try await api.call(.post, "/tokens", token: monthly, body: #"{"name":"forever","scopes":["read"]}"#)
            #expect(everlasting.status == .forbidden && everlasting.body.contains("so a token it creates must expire by then: expires_in_days at most 29"),
                    "\(everlasting.body)")
            #expect(try await api.call(.post, "/tokens", token: monthly, body: #"{"name":"later","scopes":["read"],"expires_in_days":31}"#).status == .forbidden)
            #expect(try await api.call(.post, "/tokens", token: monthly, body: #"{"name":"sooner","scopes":["read"],"expires_in_days":7}"#).status == .created)
            // Signed in, the admin makes an admin-scoped token, and a token holding every scope does too.
            let login = try await api.call(.post, "/auth/login", body: #"{"email":"root@example.com","password":"admin password 1"}"#)
            let session = try #require(login.json["token"] as? String, "\(login.body)")
            #expect(try await api.call(.post, "/tokens", token: session, body: #"{"name":"admin","scopes":["read","write","admin"]}"#).status == .created)
            #expect(try await api.call(.post, "/tokens", token: world.adminToken, body: #"{"name":"admin2","scopes":["admin"]}"#).status == .created)
            #expect(try await api.call(.get, "/users", token: adminReadWrite).status == .forbidden)
        }
    }

    /// Every mutating workspace operation and the least role that may call it.
    static let mutatingRoutes: [(HTTPRequest.Method, String, String?, WorkspaceRole)] = [
        (.post, "/members", #"{"email":"nobody@example.com","role":"viewer"}"#, .admin),
        (.patch, "/members/{userId}", #"{"role":"viewer"}"#, .admin),
        (.delete, "/members/{userId}", nil, .admin),
        (.post, "/teams", #"{"name":"team-{role}"}"#, .admin),
        (.delete, "/teams/{teamId}", nil, .admin),
        (.put, "/teams/{teamId}/members/{userId}", nil, .admin),
        (.delete, "/teams/{teamId}/members/{userId}", nil, .admin),
        (.post, "/integrations", #"{"kind":"github","app_id":1,"private_key":"{privateKey}","webhook_secret":"12345678"}"#, .admin),
        // Its token is checked against an instance that is not there: allowed means a 400 that says so.
        (.post, "/integrations/gitlab", #"{"base_url":"http://127.0.0.1:9","token":"glpat-x","webhook_secret":"12345678"}"#, .admin),
        (.patch, "/integrations/{integrationId}", #"{"webhook_secret":"rotated-secret"}"#, .admin),
        (.post, "/integrations/{integrationId}/test", nil, .admin),
        (.delete, "/integrations/{integrationId}", nil, .admin),
        (.post, "/providers", #"{"kind":"openai","api_key":"sk-test"}"#, .admin),
        (.patch, "/providers/{providerId}", #"{"enabled":false}"#, .admin),
        (.post, "/providers/{providerId}/test", nil, .admin),
        (.delete, "/providers/{providerId}", nil, .admin),
        (.put, "/ai-budget", #"{"usd":10}"#, .admin),
        (.patch, "/repositories/{repositoryId}", #"{"enabled":true}"#, .admin),
        (.put, "/settings", #"{"values":{}}"#, .admin),
        (.put, "/repositories/{repositoryId}/settings", #"{"values":{}}"#, .admin),
        (.post, "/repositories/{repositoryId}/effective-config", #"{"file":""}"#, .viewer),
        (.post, "/runs", #"{"repository_id":999,"pr_number":1}"#, .member),
        (.post, "/runs/{runId}/cancel", nil, .member),
        (.post, "/notifications", #"{"kind":"slack","name":"alerts-{role}","url":"http://127.0.0.1:9/slack/T/B/X","events":["run.failed"]}"#, .admin),
        (.post, "/notifications/{channelId}/test", nil, .admin),
        (.delete, "/notifications/{channelId}", nil, .admin),
    ]

    static func concrete(_ path: String) -> String {
        path.replacingOccurrences(of: "{userId}", with: "usr_0000000000000000").replacingOccurrences(of: "{teamId}", with: "999")
            .replacingOccurrences(of: "{providerId}", with: "prv_none").replacingOccurrences(of: "{repositoryId}", with: "999")
            .replacingOccurrences(of: "{runId}", with: "999").replacingOccurrences(of: "{integrationId}", with: "int_0000000000000000")
            .replacingOccurrences(of: "{channelId}", with: "ntf_none")
    }

    @Test("role matrix: each role on each mutating workspace route is allowed or answers 403, as documented")
    func roleMatrix() async throws {
        // The table covers exactly the API's mutating workspace operations.
        let documented = Set(try APIDocument.load().operations.values.compactMap { op -> String? in
            guard case .workspace = op.access, op.method != .get else { return nil }
            return "\(op.method.rawValue) \(op.path)"
        })
        #expect(documented == Set(Self.mutatingRoutes.map { "\($0.0.rawValue) /workspaces/{workspaceId}\($0.1)" }))
        let world = try APIWorld()
        // Bodies valid for an allowed caller: a real App key, a team name per role.
        let pem = try TestRSAKeys.other().pemRepresentation.replacingOccurrences(of: "\n", with: "\\n")
        try await world.test { api in
            for (method, path, template, least) in Self.mutatingRoutes {
                for role in WorkspaceRole.allCases {
                    let body = template?.replacingOccurrences(of: "{role}", with: role.rawValue).replacingOccurrences(of: "{privateKey}", with: pem)
                    let reply = try await api.call(method, "/workspaces/\(world.workspaceA)\(Self.concrete(path))", token: world.token(role), body: body)
                    if role < least {
                        #expect(reply.status == .forbidden, "\(role) \(method) \(path): \(reply.status) \(reply.body)")
                    } else {
                        // Allowed means done (2xx) or hidden (404 for the placeholder ids); a 500, a 400 or
                        // any other status is a failure, never a pass.
                        let code = reply.status.code
                        if path == "/integrations/gitlab" {
                            #expect(code == 400 && reply.body.contains("cannot be reached"), "\(role) \(method) \(path): \(reply.status) \(reply.body)")
                            continue
                        }
                        #expect((200..<300).contains(code) || code == 404, "\(role) \(method) \(path): \(reply.status) \(reply.body)")
                    }
                }
            }
            // Reading the audit log takes an admin; reading anything else a viewer.
            #expect(try await api.call(.get, "/workspaces/\(world.workspaceA)/audit", token: world.token(.member)).status == .forbidden)
            #expect(try await api.call(.get, "/workspaces/\(world.workspaceA)/runs", token: world.token(.viewer)).status == .ok)
            // Appliance administration is for appliance admins.
            // (A user is made signed in: with a token it is a 403 for an admin too, below.)
            let adminSession = try world.appliance.identity.createSession(for: world.admin).token
            for (method, path, body) in [(HTTPRequest.Method.post, "/users", #"{"email":"x@example.com","password":"a long password"}"#),
                                         (.post, "/workspaces", #"{"name":"gamma"}"#),
                                         (.put, "/workspaces/\(world.workspaceA)/plan", #"{"plan":"team"}"#),
                                         (.get, "/users", nil)] {
                #expect(try await api.call(method, path, token: world.token(.owner), body: body).status == .forbidden, "\(path)")
                #expect(try await api.call(method, path, token: path == "/users" && method == .post ? adminSession : world.adminToken, body: body).status.code < 300,
                        "\(path)")
            }
            // A user (with a password that outlives the token) is not made with an API token: a leaked
            // short-lived admin token made an admin of its own, signed in, and minted an everlasting token.
            let byToken = try await api.call(.post, "/users", token: world.adminToken, body: #"{"email":"evil@example.com","password":"attackerpass123","is_admin":true}"#)
            #expect(byToken.status == .forbidden && byToken.body.contains("API token cannot create a user"), "\(byToken.body)")
            #expect(try world.appliance.identity.user(email: "evil@example.com") == nil)
            // The caller's role in what these answer: none where the admin is not a member (it said viewer, or owner).
            let renamed = try await api.call(.patch, "/workspaces/\(world.workspaceA)", token: world.adminToken, body: #"{"name":"alpha2"}"#)
            #expect(renamed.status == .ok && renamed.json["name"] as? String == "alpha2" && renamed.json["role"] == nil, "\(renamed.body)")
            let planned = try await api.call(.put, "/workspaces/\(world.workspaceA)/plan", token: world.adminToken, body: #"{"plan":"free"}"#)
            #expect(planned.status == .ok && planned.json["role"] == nil, "\(planned.body)")
            let forOther = try await api.call(.post, "/workspaces", token: world.adminToken, body: #"{"name":"delta","owner_email":"viewer@example.com"}"#)
            #expect(forOther.status == .created && forOther.json["role"] == nil, "\(forOther.body)")
            let own = try await api.call(.post, "/workspaces", token: world.adminToken, body: #"{"name":"epsilon"}"#)
            #expect(own.status == .created && own.json["role"] as? String == "owner", "\(own.body)")
            let ownB = try await api.call(.patch, "/workspaces/\(world.workspaceB)", token: world.adminToken, body: #"{"name":"beta2"}"#)
            #expect(ownB.json["role"] as? String == "owner", "\(ownB.body)")
            // Only owners grant the owner role.
            let grant = try await api.call(.patch, "/workspaces/\(world.workspaceA)/members/\(world.members[.viewer]!.0.id)",
                                           token: world.token(.admin), body: #"{"role":"owner"}"#)
            #expect(grant.status == .forbidden)
            // The role a member has already: 200, and nothing in the workspace's audit log.
            func roleChanges() async throws -> Int {
                try await world.appliance.supervisor.withWorkspace(world.workspaceA) { actor in
                    try await actor.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM events WHERE type = 'MemberRoleChanged'") ?? 0 }
                }
            }
            let before = try await roleChanges()
            for _ in 0..<2 {
                let same = try await api.call(.patch, "/workspaces/\(world.workspaceA)/members/\(world.members[.viewer]!.0.id)",
                                              token: world.token(.admin), body: #"{"role":"viewer"}"#)
                #expect(same.status == .ok && same.json["role"] as? String == "viewer", "\(same.body)")
            }
            #expect(try await roleChanges() == before)
        }
    }

    @Test("a workspace the caller is not a member of answers 404 for every resource kind, whatever their role elsewhere")
    func crossWorkspace() async throws {
        let world = try APIWorld()
        let runInB = try await world.appliance.supervisor.withWorkspace(world.workspaceB) { actor in
            try await actor.write { tx in
                let repo = try APIWorld.registerRepository("beta/secret", in: &tx)
                return try ReviewRunStore.request(repository: repo, prNumber: 1, headSHA: "abc", baseSHA: nil, trigger: "opened",
                                                  fullReview: false, correlationID: nil, in: &tx).0
            }
        }
        try await world.test { api in
            for op in try APIDocument.load().operations.values.sorted(by: { $0.id < $1.id }) {
                guard case .workspace = op.access else { continue }
                let path = op.path.replacingOccurrences(of: "{workspaceId}", with: world.workspaceB.rawValue)
                let body = op.body == nil ? nil : "{}"
                let reply = try await api.call(op.method, Self.concrete(path).replacingOccurrences(of: "999", with: String(runInB)),
                                               token: world.token(.owner), body: body)
                #expect(reply.status == .notFound, "\(op.method) \(op.path): \(reply.status)")
                #expect(!reply.body.contains("beta/secret"))
            }
            // B's run id asked for through A, where the caller is owner: A has no such run.
            #expect(try await api.call(.get, "/workspaces/\(world.workspaceA)/runs/\(runInB)", token: world.token(.owner)).status == .notFound)
            #expect(try await api.call(.get, "/workspaces/ws_doesnotexist0000/runs", token: world.adminToken).status == .notFound)
            #expect(try await api.call(.get, "/workspaces/not-an-id/runs", token: world.adminToken).status == .notFound)
            // Percent-encoded, the id is the same workspace for a member (404) as for an appliance admin (it was).
            let encoded = world.workspaceA.rawValue.replacingOccurrences(of: "_", with: "%5F")
            #expect(try await api.call(.get, "/workspaces/\(encoded)", token: world.token(.owner)).status == .ok)
            #expect(try await api.call(.get, "/workspaces/\(encoded)/members", token: world.token(.viewer)).status == .ok)
        }
    }

    @Test("secrets sent to the API never appear in any response or audit event")
    func secretsAreWriteOnly() async throws {
        let world = try APIWorld()
        let key = try TestRSAKeys.other().pemRepresentation
        let webhookSecret = "whsec-very-secret-value"
        let apiKey = "sk-live-abcdefghijklmnop1234"
        try await world.test { api in
            let owner = world.token(.owner)
            let base = "/workspaces/\(world.workspaceA)"
            let body = try String(decoding: JSONSerialization.data(withJSONObject: [
                "kind": "github", "app_id": 42, "private_key": key, "webhook_secret": webhookSecret,
            ]), as: UTF8.self)
            let integration = try await api.call(.post, base + "/integrations", token: owner, body: body)
            #expect(integration.status == .created, "\(integration.body)")
            #expect((integration.json["webhook_url"] as? String)?.contains("/webhooks/github/int_") == true)
            let added = try await api.call(.get, base + "/audit", token: owner)
            #expect((added.json["items"] as? [[String: Any]] ?? []).contains { $0["type"] as? String == "IntegrationAdded" && $0["by"] as? String == "owner@example.com" },
                    "who added the integration is recorded: \(added.body)")
            let provider = try await api.call(.post, base + "/providers", token: owner, body: #"{"kind":"openai","api_key":"\#(apiKey)"}"#)
            #expect(provider.status == .created)
            #expect(provider.json["key_suffix"] as? String == "1234")
            let providerID = try #require(provider.json["id"] as? String)
            let rotated = try await api.call(.patch, base + "/providers/\(providerID)", token: owner, body: #"{"api_key":"sk-rotated-zzzz9999"}"#)
            #expect(rotated.status == .ok)
            var everything = integration.body + provider.body + rotated.body
            for path in ["/integrations", "/providers", "/audit", "/settings", "/members", "/repositories"] {
                let reply = try await api.call(.get, base + path, token: owner)
                #expect(reply.status == .ok, "\(path)")
                everything += reply.body
            }
            let keyBody = key.split(separator: "\n").dropFirst().first.map(String.init) ?? key
            for secret in [keyBody, webhookSecret, apiKey, "sk-rotated-zzzz9999"] {
                #expect(!everything.contains(secret))
            }
        }
    }
}

@Suite("API: resources")
struct APIResourceTests {
    @Test("bodies are decoded strictly: unknown and wrong-typed fields and names given twice are 400s naming the field; oversized bodies 413")
    func strictDecoding() async throws {
        let world = try APIWorld()
        try await world.test { api in
            let owner = world.token(.owner)
            let unknown = try await api.call(.post, "/tokens", token: owner, body: #"{"name":"x","scopes":["read"],"colour":"red"}"#)
            #expect(unknown.status == .badRequest)
            #expect(unknown.json["detail"] as? String == "colour: unknown field")
            #expect(unknown.headers[.contentType] == "application/problem+json")
            let wrongType = try await api.call(.post, "/tokens", token: owner, body: #"{"name":"x","scopes":["read"],"expires_in_days":"7"}"#)
            #expect(wrongType.json["detail"] as? String == "expires_in_days: must be an integer")
            let nested = try await api.call(.post, "/tokens", token: owner, body: #"{"name":"x","scopes":["rule"]}"#)
            #expect((nested.json["detail"] as? String)?.hasPrefix("scopes[0]: must be one of") == true)
            let missing = try await api.call(.post, "/tokens", token: owner, body: #"{"scopes":["read"]}"#)
            #expect(missing.json["detail"] as? String == "name: required")
            let notJSON = try await api.call(.post, "/tokens", token: owner, body: "name=x")
            #expect(notJSON.status == .badRequest)
            // A charset other than UTF-8 is refused by name (a UTF-16 body was "not UTF-8"); utf-8 in any spelling passes.
            let latin1 = try await api.call(.post, "/tokens", token: owner, body: #"{"name":"x","scopes":["read"]}"#,
                                            contentType: "application/json; charset=latin1")
            #expect(latin1.status == .unsupportedMediaType && (latin1.json["detail"] as? String)?.contains("charset=latin1") == true, "\(latin1.body)")
            let utf8 = try await api.call(.post, "/tokens", token: owner, body: #"{"name":"x","scopes":["read"]}"#,
                                          contentType: "application/json;charset=\"UTF-8\"")
            #expect(utf8.status == .created, "\(utf8.body)")
            // ASCII is UTF-8; a charset inside another parameter's quoted value is not the body's.
            for type in ["application/json; charset=us-ascii", #"application/json; foo="x;charset=latin1"; charset=utf-8"#, #"application/json; charset="utf-8 ""#] {
                let reply = try await api.call(.post, "/tokens", token: owner, body: #"{"name":"x","scopes":["read"]}"#, contentType: type)
                #expect(reply.status == .created, "\(type): \(reply.body)")
            }
            let big = try await api.call(.put, "/workspaces/\(world.workspaceA)/settings", token: owner,
                                         body: #"{"values":{"review.instructions":""# + String(repeating: "a", count: 1_100_000) + #""}}"#)
            #expect(big.status == .contentTooLarge)
            let badLimit = try await api.call(.get, "/workspaces/\(world.workspaceA)/runs?limit=0", token: owner)
            #expect(badLimit.status == .badRequest)
            #expect(badLimit.json["title"] as? String == "Invalid query parameter", "a query parameter is not the body: \(badLimit.body)")
            #expect(badLimit.json["detail"] as? String == "limit: must be at least 1", "\(badLimit.body)")
            #expect(wrongType.json["title"] as? String == "Invalid request body")
            // A query value whose percent-encoding is not UTF-8 is refused naming the parameter; it
            // was skipped by validation (a cursor of "\0\u{FFFD}" answered 200, a state named a generated type).
            for (query, name) in [("cursor=%00%ff", "cursor"), ("limit=1%ff", "limit"), ("state=%ff", "state")] {
                let bad = try await api.call(.get, "/workspaces/\(world.workspaceA)/runs?\(query)", token: owner)
                #expect(bad.status == .badRequest, "\(query): \(bad.body)")
                #expect(bad.json["detail"] as? String == "\(name): is not valid percent-encoded UTF-8", "\(query): \(bad.body)")
            }
            // A cursor this API did not give is a 400 on every list: read as no cursor, it sent a
            // client paging with a damaged one back to the first page (runs, repositories, audit).
            for list in ["runs", "repositories", "audit"] {
                for cursor in ["99999999999999999999", "-5", "abc"] {
                    let damaged = try await api.call(.get, "/workspaces/\(world.workspaceA)/\(list)?cursor=\(cursor)", token: owner)
                    #expect(damaged.status == .badRequest, "\(list)?cursor=\(cursor): \(damaged.body)")
                    // (A list whose document gives the cursor a pattern names the pattern first.)
                    #expect((damaged.json["detail"] as? String)?.hasPrefix("cursor: ") == true, "\(list): \(damaged.body)")
                }
                #expect(try await api.call(.get, "/workspaces/\(world.workspaceA)/\(list)?cursor=0", token: owner).status == .ok)
            }
            let encoded = try await api.call(.get, "/workspaces/\(world.workspaceA)/runs?state=%63ompleted&limit=%35", token: owner)
            #expect(encoded.status == .ok, "\(encoded.body)")
            // A parameter given twice: checked here as one value, decoded as the other, it let
            // `limit=1000&limit=1` through as a page of 1,000.
            for (query, name) in [("limit=1000&limit=1", "limit"), ("state=bogus&state=completed", "state"), ("cursor=a&cursor=", "cursor")] {
                let twice = try await api.call(.get, "/workspaces/\(world.workspaceA)/runs?\(query)", token: owner)
                #expect(twice.status == .badRequest, "\(query): \(twice.body)")
                #expect(twice.json["detail"] as? String == "\(name): is given 2 times; give it once", "\(query): \(twice.body)")
            }
            // A name given twice in one object: the decoder would keep one value without a word.
            let twice = try await api.call(.post, "/tokens", token: owner, body: #"{"name":"x","scopes":["read"],"scopes":["read","write"]}"#)
            #expect(twice.status == .badRequest)
            #expect(twice.json["detail"] as? String == #"the body: names "scopes" twice; each name of a JSON object must be unique"#, "\(twice.body)")
            let escapedTwice = try await api.call(.put, "/workspaces/\(world.workspaceA)/settings", token: owner,
                                                  body: #"{"values":{"review.language":"de","review.l\u0061nguage":"fr"}}"#)
            #expect(escapedTwice.json["detail"] as? String == #"values: names "review.language" twice; each name of a JSON object must be unique"#,
                    "\(escapedTwice.body)")
            #expect(escapedTwice.json["type"] as? String == "urn:sentinel:problem:invalid-json")
            let deep = try await api.call(.post, "/tokens", token: owner,
                                          body: #"{"name":"x","scopes":"# + String(repeating: "[", count: 600) + String(repeating: "]", count: 600) + "}")
            #expect(deep.json["detail"] as? String == "the body nests arrays and objects deeper than 512 levels", "\(deep.body)")
        }
    }

    @Test("strings with control characters are 400s naming the field; line breaks only where text spans lines")
    func controlCharactersRefused() async throws {
        let world = try APIWorld()
        try await world.test { api in
            let owner = world.token(.owner)
            let base = "/workspaces/\(world.workspaceA)"
            let team = try await api.call(.post, base + "/teams", token: owner, body: #"{"name":"back\u0000end"}"#)
            #expect(team.status == .badRequest)
            #expect(team.json["detail"] as? String == "name: must not contain control characters")
            let tab = try await api.call(.post, base + "/teams", token: owner, body: #"{"name":"back\tend"}"#)
            #expect(tab.json["detail"] as? String == "name: must not contain control characters")
            let workspace = try await api.call(.post, "/workspaces", token: world.adminToken, body: #"{"name":"acme\u0001"}"#)
            #expect(workspace.status == .badRequest)
            #expect(workspace.json["detail"] as? String == "name: must not contain control characters")
            let user = try await api.call(.post, "/users", token: try world.appliance.identity.createSession(for: world.admin).token,
                                          body: #"{"email":"a\u001f@example.com","password":"a long enough password"}"#)
            #expect(user.json["detail"] as? String == "email: must not contain control characters")
            let setting = try await api.call(.put, base + "/settings", token: owner, body: #"{"values":{"review.instructions":"x\u0000y"}}"#)
            #expect(setting.status == .badRequest)
            #expect(setting.json["detail"] as? String == "values.review.instructions: must not contain control characters")
            // A provider preference that names no provider is refused, as `config set` refuses it (it was saved without a word).
            let providers = try await api.call(.put, base + "/settings", token: owner, body: #"{"values":{"ai.providers":["anthropic","claude"]}}"#)
            #expect(providers.status == .badRequest && (providers.json["detail"] as? String)?.hasPrefix("ai.providers: entry 2: 'claude' names no provider") == true, "\(providers.body)")
            // Bidirectional controls would display a name as another ("Trojan Source" in a list).
            let bidi = try await api.call(.post, base + "/teams", token: owner, body: #"{"name":"admins\u202E\u2066sratsil"}"#)
            #expect(bidi.status == .badRequest)
            #expect(bidi.json["detail"] as? String == "name: must not contain bidirectional control characters (U+202E at character 7)")
            let bidiWorkspace = try await api.call(.post, "/workspaces", token: world.adminToken, body: #"{"name":"acme\u2067"}"#)
            #expect(bidiWorkspace.json["detail"] as? String == "name: must not contain bidirectional control characters (U+2067 at character 5)")
            // Invisible characters (a word joiner, a soft hyphen, the Hangul filler) made a name or an
            // email display as another's.
            // A variation selector after a letter, and a joiner at the end, render as nothing too.
            for name in [#"acme\u2060"#, #"ac\u00ADme"#, #"\u3164acme"#, #"acme\uFEFF"#, #"acme\uFE0F"#, #"acme\uFE00"#, #"acm\u00E9\u200D"#,
                         #"\u0645\u200C"#] {
                let invisible = try await api.call(.post, "/workspaces", token: world.adminToken, body: #"{"name":""# + name + #""}"#)
                #expect(invisible.status == .badRequest && (invisible.json["detail"] as? String)?.contains("must not contain invisible characters") == true,
                        "\(name): \(invisible.body)")
            }
            let softHyphen = try await api.call(.post, "/users", token: try world.appliance.identity.createSession(for: world.admin).token,
                                                body: #"{"email":"ops@exam\u00ADple.com","password":"a long enough password"}"#)
            #expect(softHyphen.status == .badRequest, "\(softHyphen.body)")
            // Emoji sequences (joiners, variation selectors) and Persian's zero-width non-joiner stay.
            for name in [#"\uD83D\uDC68\u200D\uD83D\uDCBB team"#, #"\u2764\uFE0F team"#, #"\u0645\u06CC\u200C\u0631\u0648\u0645"#, #"1\uFE0F\u20E3 team"#] {
                let kept = try await api.call(.post, base + "/teams", token: owner, body: #"{"name":""# + name + #""}"#)
                #expect(kept.status == .created, "\(name): \(kept.body)")
            }
            // Right-to-left names with their marks, and instructions (text spanning lines), keep them.
            let hebrew = try await api.call(.post, base + "/teams", token: owner, body: #"{"name":"\u05E6\u05D5\u05D5\u05EA\u200F 1"}"#)
            #expect(hebrew.status == .created, "\(hebrew.body)")
            let prose = try await api.call(.put, base + "/settings", token: owner, body: #"{"values":{"review.instructions":"\u2067\u05E2\u05D1\u2069 ok"}}"#)
            #expect(prose.status == .ok, "\(prose.body)")
            let lines = try await api.call(.put, base + "/settings", token: owner, body: #"{"values":{"review.instructions":"one\n\ttwo\r\n"}}"#)
            #expect(lines.status == .ok, "\(lines.body)")
            // Nothing was created by the refused requests.
            let teams = try await api.call(.get, base + "/teams", token: owner)
            #expect((teams.json["items"] as? [[String: Any]])?.count == 5)
            #expect((teams.json["items"] as? [[String: Any]])?.contains { $0["name"] as? String == "\u{05E6}\u{05D5}\u{05D5}\u{05EA}\u{200F} 1" } == true)
        }
    }

    @Test("members, teams, settings and their audit trail; the last owner stays")
    func membersTeamsSettingsAudit() async throws {
        let world = try APIWorld()
        _ = try world.appliance.identity.createUser(email: "new@example.com", password: "new user password", isAdmin: false)
        try await world.test { api in
            let owner = world.token(.owner)
            let base = "/workspaces/\(world.workspaceA)"
            let added = try await api.call(.post, base + "/members", token: world.token(.admin), body: #"{"email":"new@example.com","role":"member"}"#)
            #expect(added.status == .created, "\(added.body)")
            let newID = try #require(added.json["user_id"] as? String)
            #expect(try await api.call(.post, base + "/members", token: owner, body: #"{"email":"new@example.com","role":"viewer"}"#).status == .conflict)
            let team = try await api.call(.post, base + "/teams", token: owner, body: #"{"name":"backend"}"#)
            #expect(team.status == .created)
            let teamID = try #require(team.json["id"] as? Int)
            let joined = try await api.call(.put, base + "/teams/\(teamID)/members/\(newID)", token: owner)
            #expect(joined.json["members"] as? [String] == [newID])
            #expect(try await api.call(.put, base + "/teams/\(teamID)/members/usr_notamember00000", token: owner).status == .notFound)
            let settings = try await api.call(.put, base + "/settings", token: owner, body: #"{"values":{"review.min_severity":"high"},"locks":["review.min_severity"]}"#)
            #expect(settings.status == .ok, "\(settings.body)")
            #expect(settings.json["locks"] as? [String] == ["review.min_severity"])
            let invalid = try await api.call(.put, base + "/settings", token: owner, body: #"{"values":{"review.min_severity":"loud"}}"#)
            #expect(invalid.status == .badRequest)
            #expect(invalid.body.contains("review.min_severity"))
            #expect(try await api.call(.delete, base + "/members/\(world.members[.owner]!.0.id)", token: owner).status == .conflict)
            #expect(try await api.call(.delete, base + "/members/\(newID)", token: owner).status == .noContent)
            let audit = try await api.call(.get, base + "/audit", token: owner)
            let types = (audit.json["items"] as? [[String: Any]] ?? []).compactMap { $0["type"] as? String }
            #expect(types == ["MemberAdded", "TeamCreated", "TeamMemberAdded", "PolicyVersionCreated", "MemberRemoved"])
            #expect((audit.json["items"] as? [[String: Any]] ?? []).map { $0["by"] as? String ?? "-" }
                    == ["admin@example.com", "owner@example.com", "owner@example.com", "owner@example.com", "owner@example.com"], "\(audit.body)")
                        #expect(audit.body.contains("owner@example.com"))
            let firstPage = try await api.call(.get, base + "/audit?limit=2", token: owner)
            let cursor = try #require(firstPage.json["next_cursor"] as? String)
            let secondPage = try await api.call(.get, base + "/audit?limit=2&cursor=\(cursor)", token: owner)
            #expect((secondPage.json["items"] as? [[String: Any]])?.first?["type"] as? String == "TeamMemberAdded")
        }
    }

    @Test("a manual review answers 202 with the run id; runs list, show and cancel; repositories enable within the plan")
    func runsAndRepositories() async throws {
        let world = try APIWorld()
        let repo = try await world.addRepository()
        try await world.test { api in
            let member = world.token(.member)
            let base = "/workspaces/\(world.workspaceA)"
            let accepted = try await api.call(.post, base + "/runs", token: member, body: #"{"repository_id":\#(repo),"pr_number":7}"#)
            #expect(accepted.status == .accepted, "\(accepted.body)")
            let runID = try #require(accepted.json["run_id"] as? Int)
            let list = try await api.call(.get, base + "/runs?repository_id=\(repo)&state=queued", token: world.token(.viewer))
            #expect((list.json["items"] as? [[String: Any]])?.first?["id"] as? Int == runID)
            let detail = try await api.call(.get, base + "/runs/\(runID)", token: world.token(.viewer))
            #expect((detail.json["run"] as? [String: Any])?["pr_number"] as? Int == 7)
            let cancelled = try await api.call(.post, base + "/runs/\(runID)/cancel", token: member)
            #expect(cancelled.json["state"] as? String == "skipped")
            #expect((cancelled.json["reason"] as? String)?.contains("member@example.com") == true)
            #expect(try await api.call(.post, base + "/runs/\(runID)/cancel", token: member).status == .conflict)

            let repos = try await api.call(.get, base + "/repositories", token: world.token(.viewer))
            #expect((repos.json["items"] as? [[String: Any]])?.first?["full_name"] as? String == "acme/api")
            let disabled = try await api.call(.patch, base + "/repositories/\(repo)", token: world.token(.admin), body: #"{"enabled":false}"#)
            #expect(disabled.json["enabled"] as? Bool == false)
            // The audit log says who disabled it (its `by` was empty).
            let audit = try await api.call(.get, base + "/audit", token: world.token(.owner))
            let entry = (audit.json["items"] as? [[String: Any]] ?? []).last { $0["type"] as? String == "RepositoryDisabled" }
            #expect(entry?["by"] as? String == "admin@example.com", "\(audit.body)")
            #expect(try await api.call(.post, base + "/runs", token: member, body: #"{"repository_id":\#(repo),"pr_number":8}"#).status == .conflict)
            let explain = try await api.call(.get, base + "/repositories/\(repo)/effective-config", token: world.token(.viewer))
            #expect(explain.status == .ok)
            #expect((explain.json["entries"] as? [[String: Any]])?.contains { $0["key"] as? String == "review.min_severity" } == true)
            let usage = try await api.call(.get, base + "/usage", token: world.token(.viewer))
            #expect(usage.json["plan"] as? String == "free")
            let analytics = try await api.call(.get, base + "/analytics?from=2000-01-01&to=2999-12-31", token: world.token(.viewer))
            #expect(analytics.status == .ok)
            // A day that is not on the calendar, or a range that ends before it starts, is a 400 saying so.
            let notADay = try await api.call(.get, base + "/analytics?from=2026-02-30", token: world.token(.viewer))
            #expect(notADay.status == .badRequest)
            #expect((notADay.json["detail"] as? String)?.contains("'2026-02-30' is not a day") == true, "\(notADay.json)")
            let backwards = try await api.call(.get, base + "/analytics?from=2026-12-01&to=2026-01-01", token: world.token(.viewer))
            #expect(backwards.status == .badRequest)
        }
    }

    @Test("two repositories of one name (two integrations) are changed by the id in the path; by name the CLI's store asks for the id")
    func repositoriesOfOneName() async throws {
        let world = try APIWorld()
        let first = try await world.addRepository("acme/r3", enabled: true)
        let second = try await world.addRepository("acme/r3", enabled: false)
        try await world.test { api in
            let enabled = try await api.call(.patch, "/workspaces/\(world.workspaceA)/repositories/\(second)", token: world.token(.admin),
                                             body: #"{"enabled":true}"#)
            #expect(enabled.status == .ok, "\(enabled.body)")
            #expect(enabled.json["id"] as? Int64 == second || (enabled.json["id"] as? Int).map(Int64.init) == second, "\(enabled.body)")
            let disabled = try await api.call(.patch, "/workspaces/\(world.workspaceA)/repositories/\(second)", token: world.token(.admin),
                                              body: #"{"enabled":false}"#)
            #expect((disabled.json["id"] as? Int).map(Int64.init) == second, "\(disabled.body)")
            let states = try await world.appliance.supervisor.withWorkspace(world.workspaceA) { actor in
                try await actor.read { db in
                    try [first, second].map { try RepositoryStore.find(id: $0, in: db)!.enabled }
                }
            }
            // The first keeps its state (both calls changed it, the name's first row, and never the second).
            #expect(states == [true, false])
            await #expect(throws: StorageError.self) {
                try await world.appliance.supervisor.withWorkspace(world.workspaceA) { actor in
                    try await actor.write { tx in try RepositoryStore.setEnabled(true, fullName: "acme/r3", plan: nil, in: &tx) }
                }
            }
            let byID = try await world.appliance.supervisor.withWorkspace(world.workspaceA) { actor in
                try await actor.write { tx in try RepositoryStore.setEnabled(true, fullName: String(second), plan: nil, in: &tx) }
            }
            #expect(byID.id == second && byID.enabled)
        }
    }

    @Test("the explain endpoint names the layer of every key and its lock, after settings changed through the API")
    func explainThroughTheAPI() async throws {
        let world = try APIWorld()
        let repo = try await world.addRepository()
        try await world.test { api in
            let owner = world.token(.owner)
            let base = "/workspaces/\(world.workspaceA)"
            #expect(try await api.call(.put, base + "/settings", token: owner,
                                       body: #"{"values":{"review.min_severity":"high","review.max_comments":7},"locks":["review.max_comments"]}"#).status == .ok)
            let saved = try await api.call(.put, base + "/repositories/\(repo)/settings", token: owner,
                                           body: #"{"values":{"review.min_severity":"low","review.max_comments":50}}"#)
            #expect(saved.status == .ok)
            // The save says which of its values a workspace lock keeps from applying (it said nothing).
            let notApplied = saved.json["not_applied"] as? [String] ?? []
            #expect(notApplied.count == 1 && notApplied.first == "review.max_comments is locked by workspace defaults; the value 50 from repository settings was ignored and 7 stays in effect", "\(saved.body)")
            let explain = try await api.call(.get, base + "/repositories/\(repo)/effective-config", token: world.token(.viewer))
            let entries = Dictionary(uniqueKeysWithValues: (explain.json["entries"] as? [[String: Any]] ?? []).map { ($0["key"] as! String, $0) })
            #expect(entries["review.min_severity"]?["source"] as? String == "repository")
            #expect(entries["review.min_severity"]?["value"] as? String == "low")
            #expect(entries["review.max_comments"]?["source"] as? String == "workspace")
            #expect(entries["review.max_comments"]?["value"] as? Int == 7)
            #expect(entries["review.max_comments"]?["locked"] as? Bool == true)
            #expect(entries["review.enabled"]?["source"] as? String == "builtin")
            let violations = explain.json["violations"] as? [[String: Any]] ?? []
            #expect(violations.contains { $0["key"] as? String == "review.max_comments" && $0["attempted_by"] as? String == "repository" })
            #expect((explain.json["sha256"] as? String)?.count == 64)
        }
    }

    @Test("previewConfig: a .sentinel.yml given in the body is explained in the file layer on top of the settings, locks hold, and a file with errors says where and is left out")
    func previewConfigWithAFile() async throws {
        let world = try APIWorld()
        let repo = try await world.addRepository()
        try await world.test { api in
            let owner = world.token(.owner)
            let base = "/workspaces/\(world.workspaceA)"
            #expect(try await api.call(.put, base + "/settings", token: owner,
                                       body: #"{"values":{"review.max_comments":7},"locks":["review.max_comments"]}"#).status == .ok)
            let file = "version: 1\nreview:\n  min_severity: high\n  max_comments: 90\n"
            let body = try String(decoding: JSONSerialization.data(withJSONObject: ["file": file]), as: UTF8.self)
            let preview = try await api.call(.post, base + "/repositories/\(repo)/effective-config", token: world.token(.viewer), body: body)
            #expect(preview.status == .ok, "\(preview.body)")
            let entries = Dictionary(uniqueKeysWithValues: (preview.json["entries"] as? [[String: Any]] ?? []).map { ($0["key"] as! String, $0) })
            #expect(entries["review.min_severity"]?["source"] as? String == "file")
            #expect(entries["review.min_severity"]?["value"] as? String == "high")
            #expect(entries["review.max_comments"]?["source"] as? String == "workspace", "locked: the file's 90 is not applied")
            #expect(entries["review.max_comments"]?["value"] as? Int == 7)
            let violations = preview.json["violations"] as? [[String: Any]] ?? []
            #expect(violations.contains { $0["key"] as? String == "review.max_comments" && $0["attempted_by"] as? String == "file" }, "\(violations)")
            #expect((preview.json["diagnostics"] as? [String])?.isEmpty == true, "\(preview.json["diagnostics"] ?? "-")")
            // Nothing was stored: the plain explain has no file layer.
            let plain = try await api.call(.get, base + "/repositories/\(repo)/effective-config", token: world.token(.viewer))
            #expect(!plain.body.contains("\"file\""))

            let broken = try String(decoding: JSONSerialization.data(withJSONObject: ["file": "version: 1\nreview:\n  min_severity: urgent\n"]), as: UTF8.self)
            let refused = try await api.call(.post, base + "/repositories/\(repo)/effective-config", token: world.token(.viewer), body: broken)
            #expect(refused.status == .ok, "\(refused.body)")
            let diagnostics = refused.json["diagnostics"] as? [String] ?? []
            #expect(diagnostics.contains { $0.hasPrefix(".sentinel.yml:3:") && $0.contains("error") }, "\(diagnostics)")
            let fallback = Dictionary(uniqueKeysWithValues: (refused.json["entries"] as? [[String: Any]] ?? []).map { ($0["key"] as! String, $0) })
            #expect(fallback["review.min_severity"]?["source"] as? String == "builtin", "a file with errors is left out")
            #expect(try await api.call(.post, base + "/repositories/\(repo)/effective-config", token: world.token(.viewer), body: "{}").status == .badRequest)
            #expect(try await api.call(.post, base + "/repositories/999999/effective-config", token: world.token(.viewer), body: body).status == .notFound)
        }
    }

    @Test("enabling a repository over the plan's limit and adding a member over its seats are refused with a plan-limit problem")
    func planLimitsThroughTheAPI() async throws {
        let world = try APIWorld()
        var added: [Int64] = []
        for i in 0..<6 { added.append(try await world.addRepository("acme/r\(i)", enabled: i < 5)) }  // free: 5 enabled repositories
        let repos = added
        _ = try world.appliance.identity.createUser(email: "sixth@example.com", password: "sixth user password", isAdmin: false)
        try await world.test { api in
            let owner = world.token(.owner)
            let base = "/workspaces/\(world.workspaceA)"
            let refused = try await api.call(.patch, base + "/repositories/\(repos[5])", token: owner, body: #"{"enabled":true}"#)
            #expect(refused.status == .forbidden)
            #expect(refused.json["type"] as? String == "urn:sentinel:problem:plan-limit")
            #expect((refused.json["detail"] as? String)?.contains("allows 5 enabled repositories") == true)
            // 4 role users + … the free plan has 5 seats: the admin is not a member of A.
            #expect(try await api.call(.post, base + "/members", token: owner, body: #"{"email":"root@example.com","role":"viewer"}"#).status == .created)
            let seats = try await api.call(.post, base + "/members", token: owner, body: #"{"email":"sixth@example.com","role":"viewer"}"#)
            #expect(seats.status == .forbidden)
            #expect((seats.json["detail"] as? String)?.contains("allows 5 seats") == true)
        }
    }

    @Test("the committed openapi.yaml is the served description (YAML and JSON), and every operation in it is routed")
    func openAPIInStep() async throws {
        let source = try Data(contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources/SentinelServer/openapi.yaml"))
        let document = try APIDocument.load()
        #expect(document.yaml == source, "the binary serves the document it was built from")
        let json = try #require(try JSONSerialization.jsonObject(with: document.json) as? [String: Any])
        #expect(json["openapi"] as? String == "3.1.0")
        let paths = try #require(json["paths"] as? [String: [String: Any]])
        let documented = Set(paths.flatMap { path, methods in methods.keys.map { "\($0.uppercased()) \(path)" } })
        #expect(documented == Set(document.operations.values.map { "\($0.method.rawValue) \($0.path)" }))
        #expect(document.operations.count == 62)
        let world = try APIWorld()
        try await world.test { api in
            let served = try await api.call(.get, "/openapi.json")
            #expect(served.status == .ok)
            let servedJSON = try JSONSerialization.jsonObject(with: Data(served.body.utf8)) as? NSDictionary
            #expect(servedJSON == (try JSONSerialization.jsonObject(with: document.json) as? NSDictionary))
            let yaml = try await api.call(.get, "/openapi.yaml")
            #expect(yaml.status == .ok)
            #expect(yaml.headers[.contentType]?.hasPrefix("application/yaml") == true)
            #expect(Data(yaml.body.utf8) == source)
            // Every documented operation is routed: none answers the router's own 404 for an unknown path.
            for op in document.operations.values.sorted(by: { $0.id < $1.id }) {
                let path = op.path.replacingOccurrences(of: "{workspaceId}", with: world.workspaceA.rawValue)
                let reply = try await api.call(op.method, APIAccessTests.concrete(path), token: world.adminToken, body: op.body == nil ? nil : "{}")
                #expect(reply.headers[.contentType]?.hasPrefix("application/") == true || reply.status == .noContent, "\(op.id): \(reply.status)")
            }
        }
    }
}
