import Foundation
import GRDB
import SentinelCore
import SentinelTestSupport
import Testing

@Suite("User lifecycle")
struct UserLifecycleTests {
    let password = "a long enough password"

    func identity(_ h: TestHarness) -> IdentityService { IdentityService(control: h.control, bcryptCost: 4) }

    @Test("password rules speak in the units they count: at least 12 characters, at most 72 bytes (bcrypt's limit)")
    func passwordRules() throws {
        #expect(throws: IdentityError(.invalid, "a password needs at least 12 characters")) { try IdentityService.checkPasswordRules("short") }
        // 40 accented letters are 80 bytes: refused, and the message no longer says "12 to 72 characters" of a 40-character password.
        #expect(throws: IdentityError(.invalid, "a password may be at most 72 bytes of UTF-8 (72 ASCII characters, fewer with accented "
                                      + "letters or other scripts); this one has 80")) {
            try IdentityService.checkPasswordRules(String(repeating: "é", count: 40))
        }
        try IdentityService.checkPasswordRules(String(repeating: "é", count: 36))
        try IdentityService.checkPasswordRules(String(repeating: "a", count: 72))
    }

    @Test("emails are compared composed (NFC): two spellings of one address that look alike are one account, and either signs in")
    func emailsComposed() throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let identity = identity(h)
        let composed = try identity.createUser(email: "jos\u{E9}@x.io", password: password, isAdmin: false)
        #expect(composed.email.unicodeScalars.elementsEqual("jos\u{E9}@x.io".unicodeScalars))
        #expect(throws: IdentityError.self) { try identity.createUser(email: "jose\u{301}@x.io", password: password, isAdmin: false) }
        #expect(try identity.user(email: "JOSE\u{301}@X.IO")?.id == composed.id)
        // An address stored decomposed by an earlier version is rewritten by the migration.
        try h.control.write { db in
            try db.execute(sql: "INSERT INTO users (id, email, password_hash, is_admin, created_at) VALUES ('usr_old', ?, 'x', 0, 0)",
                           arguments: ["zo\u{65}\u{308}@x.io"])
            try db.execute(sql: "DELETE FROM grdb_migrations WHERE identifier = '0009_emails_composed'")
        }
        let restarted = try TestHarness(reusing: h)
        #expect(try self.identity(restarted).user(email: "zo\u{EB}@x.io")?.id == "usr_old")
    }

    @Test("a user holds at most 100 API tokens in use (revoked and expired ones do not count) and 50 sessions (the oldest end)")
    func tokenAndSessionCaps() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let identity = identity(h)
        let alice = try identity.createUser(email: "alice@example.com", password: password, isAdmin: false)
        var first: String?
        for i in 0..<IdentityService.maxActiveTokensPerUser {
            let (token, summary) = try identity.createToken(for: alice, name: "t\(i)", scopes: [.read], expiresInDays: nil)
            if i == 0 { first = summary.id; _ = token }
        }
        #expect(throws: IdentityError(.conflict, "a user has at most 100 API tokens in use; revoke one you no longer need first")) {
            try identity.createToken(for: alice, name: "one more", scopes: [.read], expiresInDays: nil)
        }
        try identity.revokeToken(id: try #require(first), of: alice)
        _ = try identity.createToken(for: alice, name: "after revoking", scopes: [.read], expiresInDays: nil)
        // One that expired does not count either.
        try identity.revokeToken(id: try identity.tokens(of: alice).last!.id, of: alice)
        _ = try identity.createToken(for: alice, name: "short", scopes: [.read], expiresInDays: 1, now: Date().addingTimeInterval(-2 * 86_400))
        _ = try identity.createToken(for: alice, name: "after expiry", scopes: [.read], expiresInDays: nil)

        var sessions: [String] = []
        for i in 0..<(IdentityService.maxSessionsPerUser + 5) {
            sessions.append(try identity.createSession(for: alice, now: Date().addingTimeInterval(Double(i))).token)
        }
        let live = try sessions.filter { try identity.authenticate(bearer: $0) != nil }
        #expect(live == Array(sessions.suffix(IdentityService.maxSessionsPerUser)), "the five oldest sessions ended")
    }

    @Test("tokens created and revoked are audited with who did it, never the secret; revoking twice is one entry")
    func tokensAudited() throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let identity = identity(h)
        let alice = try identity.createUser(email: "alice@example.com", password: password, isAdmin: false)
        let (secret, summary) = try identity.createToken(for: alice, name: "deploy", scopes: [.read, .write], expiresInDays: 30)
        _ = try identity.createToken(for: alice, name: "made by root", scopes: [.read], expiresInDays: nil, by: "cli")
        try identity.revokeToken(id: summary.id, of: alice, by: "cli")
        try identity.revokeToken(id: summary.id, of: alice)
        let audit = try identity.auditEvents(ofUser: alice.id).filter { $0.type.hasPrefix("Token") }
        #expect(audit.map { "\($0.type) by \($0.actor)" } == ["TokenCreated by alice@example.com", "TokenCreated by cli", "TokenRevoked by cli"])
        #expect(audit.allSatisfy { $0.data.contains(#""token_id":"tok_"#) } && !audit.contains { $0.data.contains(secret) })
        #expect(audit.first?.data.contains(#""scopes":"read write""#) == true && audit.first?.data.contains(#""name":"deploy""#) == true)
        #expect(throws: IdentityError(.notFound, "no such token")) { try identity.revokeToken(id: "tok_nothere", of: alice) }
    }

    @Test("revoked and expired tokens stay listed for 90 days after they ended, then go when their owner next creates one")
    func endedTokensPruned() throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let identity = identity(h)
        let alice = try identity.createUser(email: "alice@example.com", password: password, isAdmin: false)
        let bob = try identity.createUser(email: "bob@example.com", password: password, isAdmin: false)
        let now = Date()
        func daysAgo(_ days: Double) -> Date { now.addingTimeInterval(-days * 86_400) }
        let revokedLongAgo = try identity.createToken(for: alice, name: "revoked 100 days ago", scopes: [.read], expiresInDays: nil, now: daysAgo(200)).summary
        try identity.revokeToken(id: revokedLongAgo.id, of: alice, now: daysAgo(100))
        let revokedLately = try identity.createToken(for: alice, name: "revoked 10 days ago", scopes: [.read], expiresInDays: nil, now: daysAgo(200)).summary
        try identity.revokeToken(id: revokedLately.id, of: alice, now: daysAgo(10))
        _ = try identity.createToken(for: alice, name: "expired 95 days ago", scopes: [.read], expiresInDays: 5, now: daysAgo(100))
        _ = try identity.createToken(for: alice, name: "expired 5 days ago", scopes: [.read], expiresInDays: 5, now: daysAgo(10))
        _ = try identity.createToken(for: alice, name: "in use", scopes: [.read], expiresInDays: nil, now: daysAgo(300))
        let bobs = try identity.createToken(for: bob, name: "bob's, revoked 100 days ago", scopes: [.read], expiresInDays: nil, now: daysAgo(200)).summary
        try identity.revokeToken(id: bobs.id, of: bob, now: daysAgo(100))
        #expect(try identity.tokens(of: alice).count == 5)

        _ = try identity.createToken(for: alice, name: "new", scopes: [.read], expiresInDays: nil, now: now)
        #expect(try identity.tokens(of: alice).map(\.name).sorted() == ["expired 5 days ago", "in use", "new", "revoked 10 days ago"])
        #expect(try identity.tokens(of: bob).map(\.name) == ["bob's, revoked 100 days ago"], "another user's list is theirs to prune")
    }

    @Test("a disabled user's session and token stop authenticating at once, sign-in fails; enabling restores both")
    func disableAndEnable() throws {
        let h = try TestHarness()
        let identity = identity(h)
        _ = try identity.createUser(email: "admin@example.com", password: password, isAdmin: true)
        let alice = try identity.createUser(email: "alice@example.com", password: password, isAdmin: false)
        let (session, _) = try identity.createSession(for: alice)
        let (token, _) = try identity.createToken(for: alice, name: "ci", scopes: [.read], expiresInDays: nil)
        #expect(try identity.authenticate(bearer: session) != nil)
        #expect(try identity.authenticate(bearer: token) != nil)

        let disabled = try identity.disableUser(id: alice.id, by: "cli")
        #expect(disabled.isDisabled)
        #expect(try identity.authenticate(bearer: session) == nil)
        #expect(try identity.authenticate(bearer: token) == nil)
        #expect(try identity.checkPassword(email: alice.email, password: password) == nil)

        try identity.enableUser(id: alice.id, by: "cli")
        #expect(try identity.checkPassword(email: alice.email, password: password)?.user.id == alice.id)
        #expect(try identity.authenticate(bearer: token) != nil, "tokens are kept, not revoked")
        #expect(try identity.authenticate(bearer: session) == nil, "sessions ended with the disable")
        #expect(try identity.auditEvents(ofUser: alice.id).map(\.type) == ["UserCreated", "TokenCreated", "UserDisabled", "UserEnabled"])
    }

    @Test("the last active admin can be neither disabled nor deleted; with a second admin both work")
    func lastAdmin() throws {
        let h = try TestHarness()
        let identity = identity(h)
        let admin = try identity.createUser(email: "admin@example.com", password: password, isAdmin: true)
        #expect(throws: IdentityError.self) { try identity.disableUser(id: admin.id, by: "cli") }
        do {
            _ = try identity.deleteUser(id: admin.id, by: "cli")
            Issue.record("deleting the last admin was allowed")
        } catch let error as IdentityError {
            #expect(error.kind == .conflict && error.description.contains("last active admin"), "\(error)")
        }
        // A disabled admin does not count as active.
        let second = try identity.createUser(email: "second@example.com", password: password, isAdmin: true)
        try identity.disableUser(id: second.id, by: "cli")
        #expect(throws: IdentityError.self) { try identity.disableUser(id: admin.id, by: "cli") }
        try identity.enableUser(id: second.id, by: "cli")
        try identity.disableUser(id: admin.id, by: "cli")
        #expect(try identity.user(id: admin.id)?.isDisabled == true)
        #expect(try identity.auditEvents(ofUser: admin.id).map(\.type) == ["UserCreated", "UserDisabled"], "a refused change writes no audit entry")
    }

    @Test("set-password enforces the password rules, ends the user's other sessions and changes the password")
    func setPassword() throws {
        let h = try TestHarness()
        let identity = identity(h)
        let alice = try identity.createUser(email: "alice@example.com", password: password, isAdmin: false)
        let (kept, _) = try identity.createSession(for: alice)
        let (ended, _) = try identity.createSession(for: alice)
        #expect(throws: IdentityError.self) { try identity.setPassword(userID: alice.id, password: "short", by: "cli") }
        #expect(try identity.authenticate(bearer: ended) != nil, "a refused password changes nothing")
        guard case .session(let keptID)? = try identity.authenticate(bearer: kept)?.credential else { Issue.record("no session"); return }
        try identity.setPassword(userID: alice.id, password: "another long password", by: "user:\(alice.id)", keepingSession: keptID)
        #expect(try identity.authenticate(bearer: ended) == nil)
        #expect(try identity.authenticate(bearer: kept) != nil)
        #expect(try identity.checkPassword(email: alice.email, password: password) == nil)
        #expect(try identity.checkPassword(email: alice.email, password: "another long password")?.user.id == alice.id)
        let audit = try identity.auditEvents(ofUser: alice.id)
        #expect(audit.map(\.type) == ["UserCreated", "UserPasswordChanged"])
        #expect(audit.last?.actor == "user:\(alice.id)")
        #expect(audit.last.map { !$0.data.contains("another long password") } == true)
    }

    @Test("a sign-in checked against a password that changed, or a user disabled or deleted, while bcrypt ran starts no session; the setup token makes one admin; two changes of one's own password: the second is a 409")
    func signInChecksStillHold() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let identity = identity(h)
        _ = try identity.createUser(email: "admin@example.com", password: password, isAdmin: true)
        let alice = try identity.createUser(email: "alice@example.com", password: password, isAdmin: false)
        let wrong = IdentityError(.unauthenticated, "wrong email or password")

        // The check passed; then an admin reset the password (which ends every session it finds).
        let stale = try #require(try identity.checkPassword(email: alice.email, password: password))
        try identity.setPassword(userID: alice.id, password: "reset by the admin", by: "cli")
        #expect(throws: wrong) { try identity.createSession(for: stale) }
        // The same for a user disabled, and one deleted (which was a foreign-key error: a 500).
        let beforeDisable = try #require(try identity.checkPassword(email: alice.email, password: "reset by the admin"))
        try identity.disableUser(id: alice.id, by: "cli")
        #expect(throws: wrong) { try identity.createSession(for: beforeDisable) }
        try identity.enableUser(id: alice.id, by: "cli")
        let beforeDelete = try #require(try identity.checkPassword(email: alice.email, password: "reset by the admin"))
        let current = try identity.createSession(for: beforeDelete)
        #expect(try identity.authenticate(bearer: current.token)?.user.id == alice.id)
        _ = try identity.deleteUser(id: alice.id, by: "cli")
        #expect(throws: wrong) { try identity.createSession(for: beforeDelete) }
        let sessions = try h.control.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM sessions")! }
        #expect(sessions == 0)

        // Changing one's own password proves the current one; a change in between wins.
        let bob = try identity.createUser(email: "bob@example.com", password: password, isAdmin: false)
        let proved = try #require(try identity.checkPassword(email: bob.email, password: password))
        try identity.setPassword(userID: bob.id, password: "changed in the other tab", by: bob.email, replacing: proved)
        #expect(throws: IdentityError(.conflict, "the password was changed meanwhile; sign in with the new one and try again")) {
            try identity.setPassword(userID: bob.id, password: "changed in this tab!!", by: bob.email, replacing: proved)
        }
        #expect(try identity.checkPassword(email: bob.email, password: "changed in the other tab")?.user.id == bob.id)

        // The first admin: created only while there is no user, however many requests bring the token.
        #expect(throws: IdentityError(.conflict, "setup is already complete")) {
            try identity.createUser(email: "second-admin@example.com", password: password, isAdmin: true, by: "setup", onlyIfFirstAdmin: true)
        }
        let fresh = try TestHarness()
        defer { fresh.directory.cleanup() }
        let setup = self.identity(fresh)
        try setup.ensureSetupToken(in: fresh.dataDirectory)
        let token = try String(contentsOf: fresh.dataDirectory.setupTokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let created = await withTaskGroup(of: Bool.self) { group in
            for i in 0..<8 {
                group.addTask { (try? setup.completeSetup(token: token, email: "admin\(i)@example.com", password: "a long enough password",
                                                          in: fresh.dataDirectory)) != nil }
            }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(created == 1)
        #expect(try fresh.control.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM users")! } == 1)
    }

    @Test("setup stays open until an admin exists: a first user made without --admin keeps the setup token, which then makes the admin once")
    func setupOpenUntilAnAdmin() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let identity = self.identity(h)
        let member = try identity.createUser(email: "dev@example.com", password: "a long enough password", isAdmin: false)
        // Before: the token was deleted and setup refused ("already complete") with nobody able to add users or workspaces.
        #expect(try !identity.hasAdmins())
        // Without the token file (deleted by hand) it is said so, not "already complete".
        #expect(throws: IdentityError(.conflict, "no setup token at \(h.dataDirectory.setupTokenFile.path): restart sentinel serve to write a new one, or create the admin with `sentinel user create --admin`")) {
            try identity.completeSetup(token: "sst_x", email: "ops@example.com", password: "a long enough password", in: h.dataDirectory)
        }
        #expect(try identity.ensureSetupToken(in: h.dataDirectory))
        let token = try String(contentsOf: h.dataDirectory.setupTokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(throws: IdentityError(.conflict, "a user with email dev@example.com already exists")) {
            try identity.completeSetup(token: token, email: member.email, password: "a long enough password", in: h.dataDirectory)
        }
        let admin = try identity.completeSetup(token: token, email: "ops@example.com", password: "a long enough password", in: h.dataDirectory)
        #expect(admin.isAdmin)
        #expect(try identity.hasAdmins())
        #expect(!FileManager.default.fileExists(atPath: h.dataDirectory.setupTokenFile.path))
        #expect(throws: IdentityError(.conflict, "setup is already complete")) {
            try identity.completeSetup(token: token, email: "second@example.com", password: "a long enough password", in: h.dataDirectory)
        }
        #expect(try !identity.ensureSetupToken(in: h.dataDirectory))
    }

    @Test("membership changes apply only to the membership the rules saw: adds of one user at once make one member and one MemberAdded")
    func membershipChangesAtOnce() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let identity = identity(h)
        let owner = try identity.createUser(email: "owner@example.com", password: password, isAdmin: false)
        let dana = try identity.createUser(email: "dana@example.com", password: password, isAdmin: false)
        let workspace = try h.createWorkspace("acme")
        try identity.setRole(.owner, userID: owner.id, in: workspace)

        // Sixteen adds of one user, half as viewer and half as admin: one is added, the others are
        // told they are too late (before, several were "added", each logged, the last role winning).
        let outcomes = try await h.supervisor.withWorkspace(workspace) { actor in
            let members = WorkspaceMembers(identity: identity, workspaceID: workspace, workspace: actor, actorRole: .admin, actorName: "admin")
            return await withTaskGroup(of: String.self) { group in
                for i in 0..<16 {
                    group.addTask {
                        do { return "added \(try await members.add(email: "dana@example.com", role: i % 2 == 0 ? .viewer : .admin, seatLimit: nil).role.rawValue)" }
                        catch let error as IdentityError { return error.kind == .conflict ? "conflict" : "\(error)" }
                        catch { return "\(error)" }
                    }
                }
                return await group.reduce(into: [String]()) { $0.append($1) }
            }
        }
        let added = outcomes.filter { $0.hasPrefix("added") }
        #expect(added.count == 1 && outcomes.filter { $0 == "conflict" }.count == 15, "\(outcomes)")
        #expect(try identity.role(of: dana.id, in: workspace).map { "added \($0.rawValue)" } == added.first)
        let logged = try await h.supervisor.withWorkspace(workspace) { actor in
            try await actor.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM events WHERE type = 'MemberAdded'")! }
        }
        #expect(logged == 1)

        // Adding her to a team she is in changes nothing and logs nothing (three adds: one entry).
        let teamAdds = try await h.supervisor.withWorkspace(workspace) { actor in
            let team = try await actor.write { tx in try TeamStore.create(name: "core", by: "test", in: &tx).id }
            let members = WorkspaceMembers(identity: identity, workspaceID: workspace, workspace: actor, actorRole: .admin, actorName: "admin")
            for _ in 0..<3 { #expect(try await members.addToTeam(userID: dana.id, team: team).members.count == 1) }
            return try await actor.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM events WHERE type = 'TeamMemberAdded'")! }
        }
        #expect(teamAdds == 1)

        // An admin who saw Dana as a member does not demote or remove her once an owner has made
        // her an owner (only owners touch the owner role).
        try identity.setRole(.owner, userID: dana.id, in: workspace)
        let seen = WorkspaceRole.member
        #expect(throws: IdentityError(.conflict, "the member's role changed meanwhile (from member to owner); look again and retry")) {
            try identity.setRole(.viewer, userID: dana.id, in: workspace, expecting: .role(seen))
        }
        #expect(throws: IdentityError(.conflict, "the member's role changed meanwhile (from member to owner); look again and retry")) {
            try identity.removeMember(userID: dana.id, from: workspace, expecting: seen)
        }
        #expect(try identity.role(of: dana.id, in: workspace) == .owner)
        try identity.removeMember(userID: dana.id, from: workspace, expecting: .owner)
        #expect(throws: IdentityError(.notFound, "no such member (removed meanwhile)")) {
            try identity.setRole(.admin, userID: dana.id, in: workspace, expecting: .role(.owner))
        }
        #expect(try identity.role(of: dana.id, in: workspace) == nil)
    }

    @Test("delete removes memberships, sessions and tokens, keeps audit entries with the id; a workspace's only owner is refused")
    func delete() async throws {
        let h = try TestHarness()
        let identity = identity(h)
        _ = try identity.createUser(email: "admin@example.com", password: password, isAdmin: true)
        let alice = try identity.createUser(email: "alice@example.com", password: password, isAdmin: false)
        let bob = try identity.createUser(email: "bob@example.com", password: password, isAdmin: false)
        let workspace = try h.createWorkspace("acme")
        try identity.setRole(.owner, userID: alice.id, in: workspace)
        try identity.setRole(.member, userID: bob.id, in: workspace)
        let (token, _) = try identity.createToken(for: alice, name: "ci", scopes: [.read], expiresInDays: nil)
        _ = try identity.createSession(for: alice)
        let team = try await h.supervisor.withWorkspace(workspace) { actor in
            try await actor.write { tx in
                let team = try TeamStore.create(name: "core", by: "cli", in: &tx)
                return try TeamStore.addMember(alice.id, to: team.id, by: "cli", in: &tx).id
            }
        }

        do {
            _ = try identity.deleteUser(id: alice.id, by: "cli")
            Issue.record("deleting the only owner was allowed")
        } catch let error as IdentityError {
            #expect(error.kind == .conflict && error.description.contains("only owner of workspace(s) acme"), "\(error)")
        }
        try identity.setRole(.owner, userID: bob.id, in: workspace)
        // Control first, then the workspace file, the way the CLI and the API delete a user.
        let deletion = try await identity.deleteUser(id: alice.id, by: "cli") { id, body in try await h.supervisor.withWorkspace(id, body) }
        #expect(deletion.user.id == alice.id && deletion.workspaces == [workspace] && deletion.unreachable.isEmpty)

        #expect(try identity.user(id: alice.id) == nil)
        #expect(try identity.authenticate(bearer: token) == nil)
        let left = try h.control.read { db in
            try ["memberships", "sessions", "api_tokens"].map { try Int.fetchOne(db, sql: "SELECT count(*) FROM \($0) WHERE user_id = ?", arguments: [alice.id]) ?? -1 }
        }
        #expect(left == [0, 0, 0])
        #expect(try identity.members(of: workspace).map(\.email) == ["bob@example.com"])
        let audit = try identity.auditEvents(ofUser: alice.id)
        #expect(audit.map(\.type) == ["UserCreated", "TokenCreated", "UserDeleted"])
        #expect(audit.last?.data.contains("alice@example.com") == true)
        let (members, removed) = try await h.supervisor.withWorkspace(workspace) { actor in
            try await actor.read { db in
                (try TeamStore.find(team, in: db)?.members ?? [],
                 try Int.fetchOne(db, sql: "SELECT count(*) FROM events WHERE type = 'MemberRemoved' AND subject = ?", arguments: ["user:\(alice.id)"]) ?? 0)
            }
        }
        #expect(members.isEmpty)
        #expect(removed == 1)
        // A workspace file that cannot be reached is reported; the user is deleted all the same.
        let carol = try identity.createUser(email: "carol@example.com", password: password, isAdmin: false)
        try identity.setRole(.member, userID: carol.id, in: workspace)
        let offline = try await identity.deleteUser(id: carol.id, by: "cli") { id, _ in throw WorkspaceError.offline(id, reason: "test", retryAfter: 30) }
        #expect(offline.workspaces == [workspace] && offline.unreachable.map(\.workspace) == [workspace])
        #expect(offline.unreachable.first.map { "\($0.error)" } == "workspace \(workspace) is offline: test")
        #expect(try identity.user(id: carol.id) == nil)
        // The audit log is append-only.
        #expect(throws: DatabaseError.self) { try h.control.write { db in try db.execute(sql: "DELETE FROM audit_events") } }
    }
}
