import Foundation
import HTTPTypes
import SentinelCore
import SentinelServer
import SentinelTestSupport
import Testing

@Suite("API: user and workspace lifecycle")
struct LifecycleAPITests {
    @Test("users change their own password with the current one: other sessions end, this one and tokens stay; wrong ones count as failed sign-ins")
    func changeOwnPassword() async throws {
        let world = try APIWorld()
        try await world.test { api in
            func login(_ password: String) async throws -> APIClient.Reply {
                try await api.call(.post, "/auth/login", body: #"{"email":"viewer@example.com","password":"\#(password)"}"#)
            }
            let old = APIWorld.password(.viewer)
            let mine = try #require(try await login(old).json["token"] as? String)
            let other = try #require(try await login(old).json["token"] as? String)
            func change(_ current: String, _ new: String, token: String) async throws -> APIClient.Reply {
                try await api.call(.post, "/auth/password", token: token, body: #"{"current_password":"\#(current)","new_password":"\#(new)"}"#)
            }
            let short = try await change(old, "short", token: mine)
            #expect(short.status == .badRequest && (short.json["detail"] as? String)?.contains("at least 12 characters") == true, "\(short.body)")
            let wrong = try await change("not my password", "a brand new password", token: mine)
            #expect(wrong.status == .forbidden && wrong.json["detail"] as? String == "the current password is wrong", "\(wrong.body)")
            #expect(try await change(old, "a brand new password", token: mine).status == .noContent)
            #expect(try await login(old).status == .unauthorized)
            #expect(try await login("a brand new password").status == .ok)
            #expect(try await api.call(.get, "/auth/me", token: mine).status == .ok, "the caller's own session stays")
            #expect(try await api.call(.get, "/auth/me", token: other).status == .unauthorized, "other sessions end")
            #expect(try await api.call(.get, "/auth/me", token: world.token(.viewer)).status == .ok, "API tokens stay")
            let audit = try world.appliance.identity.auditEvents(ofUser: world.members[.viewer]!.0.id).filter { $0.type == "UserPasswordChanged" }
            #expect(audit.map(\.actor) == ["viewer@example.com"])
            // Guessing the current password here is limited like signing in (the right one above cleared the count): 5 failures, then 429.
            for _ in 0..<5 { #expect(try await change("guess", "another new password", token: mine).status == .forbidden) }
            let limited = try await change("guess", "another new password", token: mine)
            #expect(limited.status == .tooManyRequests && limited.headers[.retryAfter] != nil, "\(limited.body)")
        }
    }

    @Test("GET /audit: the appliance's changes with who made them, oldest first, by subject and page; appliance admins only")
    func applianceAudit() async throws {
        let world = try APIWorld()
        try await world.test { api in
            let created = try await api.call(.post, "/users", token: try world.appliance.identity.createSession(for: world.admin).token,
                                             body: #"{"email":"carol@example.com","password":"a long password 1"}"#)
            #expect(created.status == .created, "\(created.body)")
            let carol = try #require(created.json["id"] as? String)
            #expect(try await api.call(.patch, "/users/\(carol)", token: world.adminToken, body: #"{"disabled":true}"#).status == .ok)
            let workspace = try await api.call(.post, "/workspaces", token: world.adminToken, body: #"{"name":"gamma"}"#)
            #expect(workspace.status == .created, "\(workspace.body)")

            func entries(_ reply: APIClient.Reply) -> [[String: Any]] { reply.json["items"] as? [[String: Any]] ?? [] }
            let all = try await api.call(.get, "/audit?limit=200", token: world.adminToken)
            #expect(all.status == .ok, "\(all.body)")
            let summary = entries(all).map { "\($0["type"] ?? "") \($0["actor"] ?? "")" }
            // The world's own setup (from code: cli), then this test's changes through the API (by the admin's email).
            #expect(summary.filter { $0.hasPrefix("WorkspaceCreated") } == ["WorkspaceCreated cli", "WorkspaceCreated cli", "WorkspaceCreated root@example.com"],
                    "\(summary)")
            #expect(summary.suffix(4) == ["UserCreated root@example.com", "UserDisabled root@example.com", "WorkspaceCreated root@example.com",
                                          "WorkspaceOwnerSet root@example.com"], "\(summary)")
            // The first owner is recorded (it was nowhere).
            #expect((entries(all).last?["data"] as? [String: Any])?["email"] as? String == "root@example.com", "\(all.body)")
            let seqs = entries(all).compactMap { $0["seq"] as? Int }
            #expect(seqs == seqs.sorted(), "oldest first")

            let about = try await api.call(.get, "/audit?subject=user:\(carol)", token: world.adminToken)
            #expect(entries(about).map { $0["type"] as? String ?? "" } == ["UserCreated", "UserDisabled"], "\(about.body)")
            #expect((entries(about).first?["data"] as? [String: Any])?["email"] as? String == "carol@example.com", "\(about.body)")

            let first = try await api.call(.get, "/audit?limit=1", token: world.adminToken)
            let cursor = try #require(first.json["next_cursor"] as? String, "\(first.body)")
            let second = try await api.call(.get, "/audit?limit=1&cursor=\(cursor)", token: world.adminToken)
            #expect(entries(second).first?["seq"] as? Int == seqs.dropFirst().first, "\(second.body)")

            #expect(try await api.call(.get, "/audit?subject=team:1", token: world.adminToken).status == .badRequest)
            #expect(try await api.call(.get, "/audit?cursor=abc", token: world.adminToken).status == .badRequest)
            #expect(try await api.call(.get, "/audit", token: world.token(.owner)).status == .forbidden, "a workspace owner is not an appliance admin")
        }
    }

    @Test("admins disable and enable users (their tokens stop and start at once), set passwords signed in (not with a token, not their own), delete users; others get 403")
    func users() async throws {
        let world = try APIWorld()
        let (viewer, viewerToken) = try #require(world.members[.viewer])
        let (member, _) = try #require(world.members[.member])
        try await world.test { api in
            #expect(try await api.call(.patch, "/users/\(viewer.id)", token: world.token(.owner), body: #"{"disabled":true}"#).status == .forbidden)
            let disabled = try await api.call(.patch, "/users/\(viewer.id)", token: world.adminToken, body: #"{"disabled":true}"#)
            #expect(disabled.status == .ok && disabled.json["disabled"] as? Bool == true, "\(disabled.body)")
            #expect(try await api.call(.get, "/auth/me", token: viewerToken).status == .unauthorized)
            #expect(try await api.call(.patch, "/users/\(viewer.id)", token: world.adminToken, body: #"{"disabled":false}"#).status == .ok)
            #expect(try await api.call(.get, "/auth/me", token: viewerToken).status == .ok)
            // Passwords are set signed in: a leaked short-lived admin token set its own user's
            // password, signed in with it and minted an everlasting token.
            let session = try world.appliance.identity.createSession(for: world.admin).token
            let byToken = try await api.call(.patch, "/users/\(viewer.id)", token: world.adminToken, body: #"{"password":"a brand new long password"}"#)
            #expect(byToken.status == .forbidden && byToken.body.contains("API token cannot set a password"), "\(byToken.body)")
            let own = try await api.call(.patch, "/users/\(world.admin.id)", token: session, body: #"{"password":"a brand new long password"}"#)
            #expect(own.status == .forbidden && own.body.contains("/auth/password"), "\(own.body)")
            #expect(try await api.call(.post, "/auth/login", body: #"{"email":"root@example.com","password":"admin password 1"}"#).status == .ok,
                    "the refused requests changed no password")
            let short = try await api.call(.patch, "/users/\(viewer.id)", token: session, body: #"{"password":"short"}"#)
            #expect(short.status == .badRequest && short.body.contains("password"), "\(short.body)")
            // All or nothing: a password the rules refuse leaves the account as it was (not disabled).
            let tooLong = String(repeating: "é", count: 40)
            let mixed = try await api.call(.patch, "/users/\(viewer.id)", token: session, body: #"{"disabled":true,"password":"\#(tooLong)"}"#)
            #expect(mixed.status == .badRequest, "\(mixed.body)")
            #expect(try await api.call(.get, "/auth/me", token: viewerToken).status == .ok, "the refused request disabled nobody")
            #expect(try await api.call(.patch, "/users/\(viewer.id)", token: session,
                                       body: #"{"password":"a brand new long password"}"#).status == .ok)
            let login = try await api.call(.post, "/auth/login", body: #"{"email":"viewer@example.com","password":"a brand new long password"}"#)
            #expect(login.status == .ok, "\(login.body)")
            // bcrypt reads 72 bytes: a longer text that starts with the password does not sign in.
            let seventyTwo = String(repeating: "p", count: 72)
            #expect(try await api.call(.patch, "/users/\(viewer.id)", token: session, body: #"{"password":"\#(seventyTwo)"}"#).status == .ok)
            #expect(try await api.call(.post, "/auth/login", body: #"{"email":"viewer@example.com","password":"\#(seventyTwo)"}"#).status == .ok)
            let longer = try await api.call(.post, "/auth/login", body: #"{"email":"viewer@example.com","password":"\#(seventyTwo)EXTRA"}"#)
            #expect(longer.status == .unauthorized, "\(longer.body)")
            // The last active admin stays.
            #expect(try await api.call(.patch, "/users/\(world.admin.id)", token: world.adminToken, body: #"{"disabled":true}"#).status == .conflict)
            #expect(try await api.call(.delete, "/users/\(member.id)", token: world.adminToken).status == .noContent)
            let members = try await api.call(.get, "/workspaces/\(world.workspaceA)/members", token: world.token(.owner))
            #expect(!members.body.contains(member.id), "\(members.body)")
            #expect(try await api.call(.delete, "/users/\(member.id)", token: world.adminToken).status == .notFound)
        }
    }

    @Test("admins rename and delete workspaces; deleting needs the workspace named again; a deleted one is gone")
    func workspaces() async throws {
        let world = try APIWorld()
        try await world.test { api in
            let renamed = try await api.call(.patch, "/workspaces/\(world.workspaceB)", token: world.adminToken, body: #"{"name":"renamed"}"#)
            #expect(renamed.status == .ok && renamed.json["name"] as? String == "renamed", "\(renamed.body)")
            #expect(try await api.call(.patch, "/workspaces/\(world.workspaceB)", token: world.token(.owner), body: #"{"name":"x"}"#).status == .forbidden)
            let wrong = try await api.call(.delete, "/workspaces/\(world.workspaceB)?confirm=acme", token: world.adminToken)
            #expect(wrong.status == .badRequest, "\(wrong.body)")
            #expect(try await api.call(.delete, "/workspaces/\(world.workspaceB)?confirm=renamed", token: world.adminToken).status == .noContent)
            #expect(try await api.call(.get, "/workspaces/\(world.workspaceB)", token: world.adminToken).status == .notFound)
            #expect(try await api.call(.delete, "/workspaces/\(world.workspaceB)?confirm=renamed", token: world.adminToken).status == .notFound)
            #expect(try await api.call(.get, "/workspaces/\(world.workspaceA)", token: world.token(.owner)).status == .ok)
        }
    }
}
