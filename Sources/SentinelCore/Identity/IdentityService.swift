import Crypto
import Foundation
import GRDB

/// Users, sessions, API tokens, memberships and the setup token, all in `control.sqlite`.
public struct IdentityService: Sendable {
    public let control: ControlStore
    /// bcrypt at the configured cost, on its own bounded pool.
    public let passwords: PasswordHasher
    let sessionLifetime: TimeInterval

    public init(control: ControlStore, bcryptCost: Int = 12, sessionHours: Double = 12, passwordThreads: Int = 2) {
        self.control = control
        self.passwords = PasswordHasher(cost: bcryptCost, threads: passwordThreads)
        self.sessionLifetime = sessionHours * 3600
    }

    // MARK: Users

    public static let minimumPasswordLength = 12
    /// The longest email address (the API document's `maxLength` for it).
    public static let maxEmailLength = 254

    /// Creates a user (audited `UserCreated` by `actor`: `cli`, `setup`, or the admin's email).
    /// `onlyIfFirstAdmin`: only while the appliance has no active admin (the setup token's first
    /// admin), else a 409.
    public func createUser(email rawEmail: String, password: String, isAdmin: Bool, by actor: String = "cli", onlyIfFirstAdmin: Bool = false,
                           now: Date = Date()) throws -> User {
        let email = try Self.checkNewUser(email: rawEmail, password: password)
        let hash = passwords.hash(password)
        let user = User(id: RandomIdentifier.make(prefix: "usr_"), email: email, isAdmin: isAdmin, createdAt: now.epoch)
        try control.write { db in
            if onlyIfFirstAdmin, try Self.hasAdmins(db) {
                throw IdentityError(.conflict, "setup is already complete")
            }
            if try Int.fetchOne(db, sql: "SELECT 1 FROM users WHERE email = ?", arguments: [email]) != nil {
                throw IdentityError(.conflict, "a user with email \(email) already exists")
            }
            try db.execute(sql: "INSERT INTO users (id, email, password_hash, is_admin, created_at) VALUES (?, ?, ?, ?, ?)",
                           arguments: [user.id, email, hash, isAdmin, user.createdAt])
            try AuditLog.append("UserCreated", actor: actor, subject: "user:\(user.id)", data: ["email": email, "is_admin": String(isAdmin)],
                                in: db, now: now)
        }
        return user
    }

    /// A new user's email (normalized) and password checked against the rules, before anything is
    /// written (`sentinel user create` checks them before it makes a data directory).
    @discardableResult
    public static func checkNewUser(email rawEmail: String, password: String) throws -> String {
        let email = normalizedEmail(rawEmail)
        guard email.wholeMatch(of: /[^@\s]+@[^@\s]+\.[^@\s]+/) != nil, TextRules.problem(email, maxLength: maxEmailLength) == nil else {
            throw IdentityError(.invalid, "'\(rawEmail)' is not an email address")
        }
        try checkPasswordRules(password)
        return email
    }

    /// The rules every new password follows (creation, setup, `set-password`).
    public static func checkPasswordRules(_ password: String) throws {
        guard password.count >= minimumPasswordLength else {
            throw IdentityError(.invalid, "a password needs at least \(minimumPasswordLength) characters")
        }
        // bcrypt reads 72 bytes: more would be ignored, not checked. A limit in characters would
        // reject 40 accented letters (80 bytes) with a message saying they were within it.
        guard password.utf8.count <= 72 else {
            throw IdentityError(.invalid, "a password may be at most 72 bytes of UTF-8 (72 ASCII characters, fewer with accented letters "
                                + "or other scripts); this one has \(password.utf8.count)")
        }
        if let problem = TextRules.controlCharacterProblem(password, multiline: false) { throw IdentityError(.invalid, "password: \(problem)") }
    }

    public func user(id: String) throws -> User? {
        try control.read { db in try User.fetchOne(db, sql: "SELECT id, email, is_admin, created_at, disabled_at FROM users WHERE id = ?", arguments: [id]) }
    }

    /// An email address as users are stored and found by it: without the spaces around it, in
    /// lower case. Every way in (API, console, command line) reads addresses through this.
    /// An email as stored and compared: trimmed, lowercased and in Unicode's composed form (NFC),
    /// so two spellings of one address that display alike are one account.
    public static func normalizedEmail(_ email: String) -> String {
        email.trimmingCharacters(in: .whitespacesAndNewlines).lowercased().precomposedStringWithCanonicalMapping
    }

    public func user(email: String) throws -> User? {
        try control.read { db in
            try User.fetchOne(db, sql: "SELECT id, email, is_admin, created_at, disabled_at FROM users WHERE email = ?",
                              arguments: [Self.normalizedEmail(email)])
        }
    }

    public func users(after cursor: String?, limit: Int) throws -> [User] {
        try control.read { db in
            try User.fetchAll(db, sql: "SELECT id, email, is_admin, created_at, disabled_at FROM users WHERE id > ? ORDER BY id LIMIT ?",
                              arguments: [cursor ?? "", limit])
        }
    }

    public func hasUsers() throws -> Bool {
        try control.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM users") ?? 0 } > 0
    }

    /// Whether an appliance admin who can sign in exists: until one does, setup stays open (a first
    /// user made from the shell without `--admin` had closed it, leaving nobody to manage users).
    public func hasAdmins() throws -> Bool {
        try control.read { db in try Self.hasAdmins(db) }
    }

    public static func hasAdmins(_ db: Database) throws -> Bool {
        try Int.fetchOne(db, sql: "SELECT 1 FROM users WHERE is_admin = 1 AND disabled_at IS NULL LIMIT 1") != nil
    }

    /// A password found right for a user, with the hash it was checked against: what a session
    /// starts from (`createSession(for:)`) and what a change of one's own password replaces. bcrypt
    /// takes a good part of a second, so the password may be changed (or the user disabled or
    /// deleted) while it runs; what follows applies only if it is still that password.
    public struct PasswordCheck: Sendable {
        public let user: User
        let passwordHash: String
    }

    /// The user when the password is right. A missing user costs the same bcrypt work (a dummy
    /// hash of the configured cost). Blocking: run it on `passwords.run`.
    public func checkPassword(email: String, password: String) throws -> PasswordCheck? {
        let row = try control.read { db in
            try Row.fetchOne(db, sql: "SELECT id, email, is_admin, created_at, password_hash, disabled_at FROM users WHERE email = ?",
                             arguments: [Self.normalizedEmail(email)])
        }
        // bcrypt reads 72 bytes, and no password longer than that was ever set: a longer one that
        // starts with the real one signed in. It costs the same check and fails like a wrong one.
        let stored: String? = password.utf8.count <= 72 ? row?["password_hash"] : nil
        // A disabled account costs the same check and fails like a wrong password.
        guard passwords.verify(password, against: stored), let row, let stored, (row["disabled_at"] as Double?) == nil else { return nil }
        return PasswordCheck(user: User(id: row["id"], email: row["email"], isAdmin: row["is_admin"], createdAt: row["created_at"]),
                             passwordHash: stored)
    }

    // MARK: Sessions and tokens

    /// Tokens a user may hold unrevoked and unexpired at once; sessions a user keeps (the oldest
    /// end when a new one starts). Both live in control.sqlite, which every tenant shares.
    public static let maxActiveTokensPerUser = 100
    public static let maxSessionsPerUser = 50
    /// A revoked or expired token stays in its owner's list this long (when it ended is worth
    /// seeing), then goes when the owner next creates one.
    public static let endedTokenDays = 90.0

    /// A new session after a sign-in; returns the bearer secret (shown once) and its expiry. The
    /// password checked must still be the user's, and the user enabled: a password reset or a
    /// disabling committed while bcrypt ran ends this sign-in too, as it ends the sessions that
    /// existed (`IdentityError.unauthenticated`, as for a wrong password).
    public func createSession(for check: PasswordCheck, now: Date = Date()) throws -> (token: String, expiresAt: Date) {
        try createSession(userID: check.user.id, passwordHash: check.passwordHash, now: now)
    }

    /// A new session for a user who has just been created (the first admin, from the setup page).
    public func createSession(for user: User, now: Date = Date()) throws -> (token: String, expiresAt: Date) {
        try createSession(userID: user.id, passwordHash: nil, now: now)
    }

    private func createSession(userID: String, passwordHash: String?, now: Date) throws -> (token: String, expiresAt: Date) {
        let token = "sns_" + RandomIdentifier.secret()
        let expires = now.addingTimeInterval(sessionLifetime)
        try control.write { db in
            let row = try Row.fetchOne(db, sql: "SELECT password_hash, disabled_at FROM users WHERE id = ?", arguments: [userID])
            guard let row, (row["disabled_at"] as Double?) == nil, passwordHash.map({ $0 == row["password_hash"] }) ?? true else {
                throw IdentityError(.unauthenticated, "wrong email or password")
            }
            try db.execute(sql: "INSERT INTO sessions (id, token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                           arguments: [RandomIdentifier.make(prefix: "ses_"), Self.hash(token), userID, now.epoch, expires.epoch])
            try db.execute(sql: "DELETE FROM sessions WHERE expires_at < ?", arguments: [now.epoch])
            // Signing in over and over (a script) ends the oldest sessions rather than filling control.sqlite, which every tenant shares.
            try db.execute(sql: """
                DELETE FROM sessions WHERE user_id = ? AND id NOT IN (SELECT id FROM sessions WHERE user_id = ? ORDER BY created_at DESC, id LIMIT ?)
                """, arguments: [userID, userID, Self.maxSessionsPerUser])
        }
        return (token, expires)
    }

    public func endSession(id: String) throws {
        try control.write { db in try db.execute(sql: "DELETE FROM sessions WHERE id = ?", arguments: [id]) }
    }

    /// A new API token for `user` (audited `TokenCreated`, by `actor`: the user's own email when
    /// nil, as through the API; `cli` from the command line, which may make one for anyone).
    /// `creator` is the credential asking (nil from the command line): an API token makes only a
    /// token with no more than its own scopes that expires no later than it does, so a leaked
    /// write-scoped or short-lived token cannot mint an admin-scoped or an everlasting one. A
    /// signed-in session holds every scope of its user, and may make any.
    public func createToken(for user: User, name: String, scopes: Set<TokenScope>, expiresInDays: Int?, by actor: String? = nil,
                            creator: Principal? = nil, now: Date = Date()) throws -> (token: String, summary: APITokenSummary) {
        let trimmed = name.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty, TextRules.lengthProblem(trimmed, maxLength: 100) == nil else {
            throw IdentityError(.invalid, "a token needs a name of 1 to 100 characters")
        }
        // The API's schema held it to this already; the command line passed `a\u{1}b` and escape
        // sequences, and the console 2,000 combining marks on 100 letters.
        if let problem = TextRules.controlCharacterProblem(trimmed, multiline: false) { throw IdentityError(.invalid, "the token name \(problem)") }
        guard !scopes.isEmpty else { throw IdentityError(.invalid, "a token needs at least one scope (read, write, admin)") }
        if scopes.contains(.admin), !user.isAdmin { throw IdentityError(.forbidden, "only appliance admins can create admin-scoped tokens") }
        if let days = expiresInDays, !(1...3650).contains(days) { throw IdentityError(.invalid, "expires_in_days must be 1...3650") }
        if let creator, case .token = creator.credential {
            if let missing = TokenScope.allCases.first(where: { scopes.contains($0) && !creator.scopes.contains($0) }) {
                throw IdentityError(.forbidden, "this token lacks the '\(missing.rawValue)' scope, so it cannot create a token that has it; "
                                    + "create that token signed in, or with a token that holds the scope")
            }
            if let limit = creator.expiresAt {
                let daysLeft = Int(limit.timeIntervalSince(now) / 86_400)
                guard let days = expiresInDays, days <= daysLeft else {
                    throw IdentityError(.forbidden, daysLeft < 1
                        ? "this token expires within a day, so it cannot create another; create that token signed in"
                        : "this token expires on \(ISO8601.string(limit)), so a token it creates must expire by then: expires_in_days at most \(daysLeft)")
                }
            }
        }
        let token = "snt_" + RandomIdentifier.secret()
        let id = RandomIdentifier.make(prefix: "tok_")
        let expires = expiresInDays.map { now.addingTimeInterval(Double($0) * 86_400) }
        let sortedScopes = TokenScope.allCases.filter(scopes.contains)
        try control.write { db in
            let active = try Int.fetchOne(db, sql: """
                SELECT count(*) FROM api_tokens WHERE user_id = ? AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)
                """, arguments: [user.id, now.epoch]) ?? 0
            guard active < Self.maxActiveTokensPerUser else {
                throw IdentityError(.conflict, "a user has at most \(Self.maxActiveTokensPerUser) API tokens in use; revoke one you no longer need first")
            }
            // Creating and revoking a token per deployment (a script) would otherwise fill control.sqlite, which every tenant shares.
            try db.execute(sql: """
                DELETE FROM api_tokens WHERE user_id = ? AND min(coalesce(revoked_at, 9e18), coalesce(expires_at, 9e18)) < ?
                """, arguments: [user.id, now.epoch - Self.endedTokenDays * 86_400])
            try db.execute(sql: """
                INSERT INTO api_tokens (id, user_id, name, token_hash, prefix, scopes, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [id, user.id, trimmed, Self.hash(token), String(token.prefix(12)),
                                 sortedScopes.map(\.rawValue).joined(separator: " "), now.epoch, expires?.epoch])
            try AuditLog.append("TokenCreated", actor: actor ?? user.email, subject: "user:\(user.id)", data: [
                "token_id": id, "name": trimmed, "scopes": sortedScopes.map(\.rawValue).joined(separator: " "),
                "expires_at": expires.map(ISO8601.string) ?? ""], in: db, now: now)
        }
        return (token, APITokenSummary(id: id, name: trimmed, prefix: String(token.prefix(12)), scopes: sortedScopes,
                                       createdAt: ISO8601.string(now), expiresAt: expires.map(ISO8601.string), lastUsedAt: nil, revokedAt: nil))
    }

    public func tokens(of user: User) throws -> [APITokenSummary] {
        try control.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM api_tokens WHERE user_id = ? ORDER BY created_at, id", arguments: [user.id]).map(Self.summary)
        }
    }

    /// Revokes one of `user`'s tokens (audited `TokenRevoked` the first time, by `actor` as for `createToken`).
    public func revokeToken(id: String, of user: User, by actor: String? = nil, now: Date = Date()) throws {
        try control.write { db in
            guard let revoked = try Row.fetchOne(db, sql: "SELECT revoked_at, name FROM api_tokens WHERE id = ? AND user_id = ?",
                                                 arguments: [id, user.id]) else {
                throw IdentityError(.notFound, "no such token")
            }
            guard (revoked["revoked_at"] as Double?) == nil else { return }
            try db.execute(sql: "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND user_id = ?", arguments: [now.epoch, id, user.id])
            try AuditLog.append("TokenRevoked", actor: actor ?? user.email, subject: "user:\(user.id)",
                                data: ["token_id": id, "name": revoked["name"] as String], in: db, now: now)
        }
    }

    static func summary(_ row: Row) -> APITokenSummary {
        APITokenSummary(id: row["id"], name: row["name"], prefix: row["prefix"],
                        scopes: (row["scopes"] as String).split(separator: " ").compactMap { TokenScope(rawValue: String($0)) },
                        createdAt: ISO8601.string(Date(timeIntervalSince1970: row["created_at"])),
                        expiresAt: (row["expires_at"] as Double?).map { ISO8601.string(Date(timeIntervalSince1970: $0)) },
                        lastUsedAt: (row["last_used_at"] as Double?).map { ISO8601.string(Date(timeIntervalSince1970: $0)) },
                        revokedAt: (row["revoked_at"] as Double?).map { ISO8601.string(Date(timeIntervalSince1970: $0)) })
    }

    /// The caller behind a bearer secret, or nil (unknown, expired, revoked).
    public func authenticate(bearer: String, now: Date = Date()) throws -> Principal? {
        let hash = Self.hash(bearer)
        if bearer.hasPrefix("sns_") {
            guard let row = try control.read({ db in
                try Row.fetchOne(db, sql: """
                    SELECT s.id AS session_id, s.expires_at, u.id, u.email, u.is_admin, u.created_at
                    FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ? AND u.disabled_at IS NULL
                    """, arguments: [hash])
            }), (row["expires_at"] as Double) > now.epoch else { return nil }
            return Principal(user: User(id: row["id"], email: row["email"], isAdmin: row["is_admin"], createdAt: row["created_at"]),
                             scopes: Set(TokenScope.allCases), credential: .session(id: row["session_id"]),
                             expiresAt: Date(timeIntervalSince1970: row["expires_at"]))
        }
        guard bearer.hasPrefix("snt_"), let row = try control.read({ db in
            try Row.fetchOne(db, sql: """
                SELECT t.id AS token_id, t.scopes, t.expires_at, t.revoked_at, t.last_used_at, u.id, u.email, u.is_admin, u.created_at
                FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = ? AND u.disabled_at IS NULL
                """, arguments: [hash])
        }) else { return nil }
        if (row["revoked_at"] as Double?) != nil { return nil }
        if let expires = row["expires_at"] as Double?, expires <= now.epoch { return nil }
        let tokenID: String = row["token_id"]
        // Last use to the minute: no write per request.
        if ((row["last_used_at"] as Double?) ?? 0) < now.epoch - 60 {
            try control.write { db in
                try db.execute(sql: "UPDATE api_tokens SET last_used_at = ? WHERE id = ?", arguments: [now.epoch, tokenID])
            }
        }
        let scopes = Set((row["scopes"] as String).split(separator: " ").compactMap { TokenScope(rawValue: String($0)) })
        return Principal(user: User(id: row["id"], email: row["email"], isAdmin: row["is_admin"], createdAt: row["created_at"]),
                         scopes: scopes, credential: .token(id: tokenID), expiresAt: (row["expires_at"] as Double?).map(Date.init(timeIntervalSince1970:)))
    }

    // MARK: Memberships

    public func role(of userID: String, in workspace: WorkspaceID) throws -> WorkspaceRole? {
        try control.read { db in
            try String.fetchOne(db, sql: "SELECT role FROM memberships WHERE workspace_id = ? AND user_id = ?",
                                arguments: [workspace.rawValue, userID]).flatMap(WorkspaceRole.init)
        }
    }

    public func members(of workspace: WorkspaceID) throws -> [Membership] {
        try control.read { db in
            try Row.fetchAll(db, sql: """
                SELECT m.workspace_id, m.user_id, u.email, m.role FROM memberships m JOIN users u ON u.id = m.user_id
                WHERE m.workspace_id = ? ORDER BY u.email
                """, arguments: [workspace.rawValue]).map {
                Membership(workspaceID: $0["workspace_id"], userID: $0["user_id"], email: $0["email"],
                           role: WorkspaceRole(rawValue: $0["role"]) ?? .viewer)
            }
        }
    }

    /// Workspaces the user is a member of, with the role.
    public func memberships(of userID: String) throws -> [(WorkspaceRecord, WorkspaceRole)] {
        try control.read { db in
            try Row.fetchAll(db, sql: """
                SELECT w.*, m.role AS member_role FROM memberships m JOIN workspaces w ON w.id = m.workspace_id WHERE m.user_id = ? ORDER BY w.name
                """, arguments: [userID]).map { (try WorkspaceRecord(row: $0), WorkspaceRole(rawValue: $0["member_role"]) ?? .viewer) }
        }
    }

    /// What a membership must still be for a change to apply, checked in the change's own
    /// transaction: a member acts on the role they saw, so two changes made at once cannot both
    /// apply (two adds of one user, a role changed or a member removed just after another owner
    /// made them an owner, which only an owner may touch).
    public enum MembershipExpectation: Sendable, Equatable {
        /// Not a member yet (adding).
        case absent
        /// A member with this role (changing or removing).
        case role(WorkspaceRole)
    }

    /// Adds or changes a membership; refuses to leave a workspace without an owner, a new member
    /// over the plan's seat limit, and (with `expecting`) a membership that is no longer what the
    /// caller saw (409).
    /// `audit`: an entry of the appliance's log (subject the workspace) written with the change.
    public func setRole(_ role: WorkspaceRole, userID: String, in workspace: WorkspaceID, seatLimit: Plan? = nil,
                        expecting: MembershipExpectation? = nil, audit: (type: String, actor: String, data: [String: String])? = nil) throws {
        try control.write { db in
            guard try Int.fetchOne(db, sql: "SELECT 1 FROM users WHERE id = ?", arguments: [userID]) != nil else {
                throw IdentityError(.notFound, "no such user")
            }
            let current = try String.fetchOne(db, sql: "SELECT role FROM memberships WHERE workspace_id = ? AND user_id = ?",
                                              arguments: [workspace.rawValue, userID])
            if let expecting { try Self.check(current, expecting) }
            if current == nil, let plan = seatLimit, let seats = plan.seats {
                let used = try Int.fetchOne(db, sql: "SELECT count(*) FROM memberships WHERE workspace_id = ?", arguments: [workspace.rawValue]) ?? 0
                if used >= seats {
                    throw PlanLimitError(message: "the workspace's \(plan.name) plan allows \(seats) seats and \(used) are taken; "
                                         + "remove a member or move the workspace to a larger plan")
                }
            }
            if current == WorkspaceRole.owner.rawValue, role != .owner { try requireAnotherOwner(userID, workspace, db) }
            try db.execute(sql: """
                INSERT INTO memberships (workspace_id, user_id, role, created_at) VALUES (?, ?, ?, ?)
                ON CONFLICT (workspace_id, user_id) DO UPDATE SET role = excluded.role
                """, arguments: [workspace.rawValue, userID, role.rawValue, Date().epoch])
            if let audit { try AuditLog.append(audit.type, actor: audit.actor, subject: "workspace:\(workspace)", data: audit.data, in: db) }
        }
    }

    /// Removes a membership; refuses to leave a workspace without an owner and (with `expecting`)
    /// a member whose role is no longer the one the caller saw (409).
    public func removeMember(userID: String, from workspace: WorkspaceID, expecting: WorkspaceRole? = nil) throws {
        try control.write { db in
            let current = try String.fetchOne(db, sql: "SELECT role FROM memberships WHERE workspace_id = ? AND user_id = ?",
                                              arguments: [workspace.rawValue, userID])
            guard let current else { throw IdentityError(.notFound, "no such member") }
            if let expecting { try Self.check(current, .role(expecting)) }
            if current == WorkspaceRole.owner.rawValue { try requireAnotherOwner(userID, workspace, db) }
            try db.execute(sql: "DELETE FROM memberships WHERE workspace_id = ? AND user_id = ?", arguments: [workspace.rawValue, userID])
        }
    }

    private static func check(_ current: String?, _ expected: MembershipExpectation) throws {
        switch (expected, current) {
        case (.absent, nil): return
        case (.absent, _): throw IdentityError(.conflict, "the user was made a member meanwhile; change their role instead")
        case (.role, nil): throw IdentityError(.notFound, "no such member (removed meanwhile)")
        case let (.role(role), current?):
            if current != role.rawValue {
                throw IdentityError(.conflict, "the member's role changed meanwhile (from \(role.rawValue) to \(current)); look again and retry")
            }
        }
    }

    private func requireAnotherOwner(_ userID: String, _ workspace: WorkspaceID, _ db: Database) throws {
        let owners = try Int.fetchOne(db, sql: "SELECT count(*) FROM memberships WHERE workspace_id = ? AND role = 'owner' AND user_id != ?",
                                      arguments: [workspace.rawValue, userID]) ?? 0
        if owners == 0 { throw IdentityError(.conflict, "a workspace keeps at least one owner") }
    }

    // MARK: The setup token

    /// On an appliance without an admin (fresh, or whose only users were made without `--admin`),
    /// writes `secrets/setup-token` (0600) once; it lets the first admin be created through the API
    /// or the console. Returns whether a token file exists.
    @discardableResult
    public func ensureSetupToken(in dataDirectory: DataDirectory) throws -> Bool {
        let file = dataDirectory.setupTokenFile
        if try hasAdmins() {
            try? FileManager.default.removeItem(at: file)
            return false
        }
        if FileManager.default.fileExists(atPath: file.path) { return true }
        _ = try FileSystem.createExclusive(file, contents: Data(("sst_" + RandomIdentifier.secret() + "\n").utf8), mode: 0o600)
        return true
    }

    /// Creates the first appliance admin with the setup token, then deletes the token: it works
    /// once, also when two requests bring it at once (the admin is created only while there is
    /// none, checked in the transaction that creates it).
    public func completeSetup(token: String, email: String, password: String, in dataDirectory: DataDirectory) throws -> User {
        let file = dataDirectory.setupTokenFile
        guard try !hasAdmins() else { throw IdentityError(.conflict, "setup is already complete") }
        guard let stored = try? String(contentsOf: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines), !stored.isEmpty else {
            // No admin, but the token file is gone (deleted by hand): "already complete" misled.
            // (Gone because a setup at the same moment made the admin: that is what it is.)
            if try hasAdmins() { throw IdentityError(.conflict, "setup is already complete") }
            throw IdentityError(.conflict, "no setup token at \(file.path): restart sentinel serve to write a new one, or create the admin with `sentinel user create --admin`")
        }
        guard Self.constantTimeEqual(stored, token) else { throw IdentityError(.unauthenticated, "wrong setup token") }
        let user = try createUser(email: email, password: password, isAdmin: true, by: "setup", onlyIfFirstAdmin: true)
        try? FileManager.default.removeItem(at: file)
        return user
    }

    // MARK: Helpers

    static func hash(_ secret: String) -> String {
        SHA256.hash(data: Data(secret.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        return zip(x, y).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
