import Foundation
import GRDB

/// A user's life after creation: disabled, enabled again, given a new password, deleted. Each
/// change writes its audit event (`UserDisabled`, `UserEnabled`, `UserPasswordChanged`,
/// `UserDeleted`, subject `user:<id>`, with `actor`) in the transaction that makes it. `actor` is
/// `cli` or `user:<id>` of the admin calling the API.
extension IdentityService {
    /// Disables a user: they cannot sign in, their sessions end and their API tokens stop
    /// authenticating at once (the tokens are kept, unrevoked: enabling the user makes them work
    /// again; revoke them separately to end them for good). The last active appliance admin
    /// cannot be disabled. Disabling a disabled user changes nothing and writes nothing.
    @discardableResult
    public func disableUser(id: String, by actor: String, now: Date = Date()) throws -> User {
        try control.write { db in
            let user = try Self.existingUser(id, db)
            if user.isDisabled { return user }
            try Self.requireAnotherActiveAdmin(besides: user, db, doing: "disabled")
            try db.execute(sql: "UPDATE users SET disabled_at = ? WHERE id = ?", arguments: [now.epoch, id])
            try db.execute(sql: "DELETE FROM sessions WHERE user_id = ?", arguments: [id])
            let sessions = db.changesCount
            try AuditLog.append("UserDisabled", actor: actor, subject: "user:\(id)",
                                data: ["email": user.email, "sessions_ended": String(sessions)], in: db, now: now)
            return try Self.existingUser(id, db)
        }
    }

    /// Lets a disabled user sign in again (their unrevoked, unexpired API tokens work again too).
    @discardableResult
    public func enableUser(id: String, by actor: String, now: Date = Date()) throws -> User {
        try control.write { db in
            let user = try Self.existingUser(id, db)
            guard user.isDisabled else { return user }
            try db.execute(sql: "UPDATE users SET disabled_at = NULL WHERE id = ?", arguments: [id])
            try AuditLog.append("UserEnabled", actor: actor, subject: "user:\(id)", data: ["email": user.email], in: db, now: now)
            return try Self.existingUser(id, db)
        }
    }

    /// A user changing their own password: the new one follows the rules of creation (checked
    /// first, before any bcrypt work); the current one is checked like a sign-in, through
    /// `throttle` (a wrong one counts as a failed sign-in, so it cannot be guessed here faster than
    /// at the sign-in page); then the user's other sessions end (`keepingSession`: the caller's own).
    /// Audited `UserPasswordChanged` by the user's email.
    public func changeOwnPassword(_ user: User, current: String, new: String, keepingSession: String?, address: String,
                                  throttle: LoginThrottle) async throws {
        try Self.checkPasswordRules(new)
        guard let check = try await throttle.signIn(email: user.email, password: current, address: address, identity: self) else {
            throw IdentityError(.forbidden, "the current password is wrong")
        }
        let identity = self
        try await passwords.run {
            try identity.setPassword(userID: user.id, password: new, by: user.email, keepingSession: keepingSession, replacing: check)
        }
    }

    /// Refuses an API token for what makes a password (a user, a password reset): a leaked token
    /// would become a sign-in that outlives it.
    public static func requireSignedIn(_ principal: Principal, to action: String) throws {
        if case .token = principal.credential {
            throw IdentityError(.forbidden, "an API token cannot \(action) (a leaked token would become a sign-in that outlives it); "
                                + "sign in to do it, or use the sentinel command line")
        }
    }

    /// Whether `principal` may set `userID`'s password as an admin (`PATCH /users/{id}`, the
    /// console's reset): only signed in, and never their own. An API token that could set one would
    /// outlive itself: a leaked short-lived `admin` token set its own user's password, signed in
    /// with it and minted an everlasting token. One's own password changes with the current one
    /// (`changeOwnPassword`), so a session left open cannot take the account over either.
    public static func requirePasswordResetAllowed(of userID: String, by principal: Principal) throws {
        try requireSignedIn(principal, to: "set a password")
        if principal.user.id == userID {
            throw IdentityError(.forbidden, "change your own password with POST /api/v1/auth/password (or on your account page), "
                                + "which asks for the current one")
        }
    }

    /// Sets a new password (same rules as at creation) and ends the user's sessions, except
    /// `keepingSession` (the caller's own, when users change their password through the API).
    /// API tokens are not affected. `replacing`: the current password the caller proved, which must
    /// still be the user's (two changes of one's own password at once: the second is a 409, not a
    /// password set by a session the first one ended). Blocking (bcrypt): in the server, run it on
    /// `passwords.run`.
    public func setPassword(userID: String, password: String, by actor: String, keepingSession: String? = nil,
                            replacing current: PasswordCheck? = nil, now: Date = Date()) throws {
        try Self.checkPasswordRules(password)
        guard try user(id: userID) != nil else { throw IdentityError(.notFound, "no such user") }
        let hash = passwords.hash(password)
        try control.write { db in
            let user = try Self.existingUser(userID, db)
            if let current, try String.fetchOne(db, sql: "SELECT password_hash FROM users WHERE id = ?", arguments: [userID]) != current.passwordHash {
                throw IdentityError(.conflict, "the password was changed meanwhile; sign in with the new one and try again")
            }
            try db.execute(sql: "UPDATE users SET password_hash = ? WHERE id = ?", arguments: [hash, userID])
            try db.execute(sql: "DELETE FROM sessions WHERE user_id = ? AND id IS NOT ?", arguments: [userID, keepingSession])
            try AuditLog.append("UserPasswordChanged", actor: actor, subject: "user:\(userID)",
                                data: ["email": user.email, "sessions_ended": String(db.changesCount)], in: db, now: now)
        }
    }

    /// Deletes a user with their memberships, sessions and API tokens; audit entries keep their
    /// id. Refused for the last active appliance admin and for the only owner of a workspace (give
    /// it another owner first). Returns the workspaces the user was a member of: each workspace
    /// file still names the user in its teams, which `UserLifecycle.forgetDeletedUser` clears.
    public func deleteUser(id: String, by actor: String, now: Date = Date()) throws -> [WorkspaceID] {
        try control.write { db in
            let user = try Self.existingUser(id, db)
            try Self.requireAnotherActiveAdmin(besides: user, db, doing: "deleted")
            let soleOwner = try String.fetchAll(db, sql: """
                SELECT w.name FROM memberships m JOIN workspaces w ON w.id = m.workspace_id
                WHERE m.user_id = ? AND m.role = 'owner'
                  AND NOT EXISTS (SELECT 1 FROM memberships o WHERE o.workspace_id = m.workspace_id AND o.role = 'owner' AND o.user_id != m.user_id)
                ORDER BY w.name
                """, arguments: [id])
            if !soleOwner.isEmpty {
                throw IdentityError(.conflict, "\(user.email) is the only owner of workspace(s) \(soleOwner.joined(separator: ", ")); "
                                    + "make someone else owner first (sentinel workspace add-member --role owner)")
            }
            let workspaces = try String.fetchAll(db, sql: "SELECT workspace_id FROM memberships WHERE user_id = ? ORDER BY workspace_id",
                                                 arguments: [id]).compactMap(WorkspaceID.init)
            let tokens = try Int.fetchOne(db, sql: "SELECT count(*) FROM api_tokens WHERE user_id = ?", arguments: [id]) ?? 0
            // Memberships, sessions and tokens go with the row (ON DELETE CASCADE).
            try db.execute(sql: "DELETE FROM users WHERE id = ?", arguments: [id])
            try AuditLog.append("UserDeleted", actor: actor, subject: "user:\(id)",
                                data: ["email": user.email, "was_admin": String(user.isAdmin), "api_tokens": String(tokens),
                                       "workspaces": workspaces.map(\.rawValue).joined(separator: ",")], in: db, now: now)
            return workspaces
        }
    }

    /// Deletes a user (`deleteUser(id:by:)`, in control.sqlite), then takes them out of the teams of
    /// each workspace they belonged to (`UserLifecycle.forgetDeletedUser`), reaching each file
    /// through `workspace` (the supervisor in `serve`, a direct open in the CLI). A file that cannot
    /// be reached keeps naming the user in its teams: it is reported, and the others are updated.
    public func deleteUser(id: String, by actor: String,
                           through workspace: (WorkspaceID, @escaping @Sendable (WorkspaceActor) async throws -> Void) async throws -> Void)
        async throws -> UserDeletion {
        guard let user = try user(id: id) else { throw IdentityError(.notFound, "no such user") }
        let workspaces = try deleteUser(id: id, by: actor)
        var unreachable: [(workspace: WorkspaceID, error: any Error)] = []
        for id in workspaces {
            do {
                try await workspace(id) { file in
                    try await file.write { tx in try UserLifecycle.forgetDeletedUser(user.id, email: user.email, by: actor, in: &tx) }
                }
            } catch {
                unreachable.append((id, error))
            }
        }
        return UserDeletion(user: user, workspaces: workspaces, unreachable: unreachable)
    }

    /// The appliance's audit entries about a user (they remain after the user is deleted).
    public func auditEvents(ofUser id: String) throws -> [AuditEvent] {
        try control.read { db in try AuditLog.events(subject: "user:\(id)", limit: 10_000, in: db) }
    }

    private static func existingUser(_ id: String, _ db: Database) throws -> User {
        guard let user = try User.fetchOne(db, sql: "SELECT id, email, is_admin, created_at, disabled_at FROM users WHERE id = ?",
                                           arguments: [id]) else {
            throw IdentityError(.notFound, "no such user")
        }
        return user
    }

    private static func requireAnotherActiveAdmin(besides user: User, _ db: Database, doing: String) throws {
        guard user.isAdmin, !user.isDisabled else { return }
        let others = try Int.fetchOne(db, sql: "SELECT count(*) FROM users WHERE is_admin = 1 AND disabled_at IS NULL AND id != ?",
                                      arguments: [user.id]) ?? 0
        if others == 0 {
            throw IdentityError(.conflict, "\(user.email) is the appliance's last active admin and cannot be \(doing); "
                                + "create or enable another admin first (sentinel user create --admin)")
        }
    }
}

/// A deleted user, the workspaces they belonged to, and those whose files could not be updated.
public struct UserDeletion {
    public let user: User
    public let workspaces: [WorkspaceID]
    public let unreachable: [(workspace: WorkspaceID, error: any Error)]
}

/// What a deleted user leaves in each workspace file they belonged to.
public enum UserLifecycle {
    /// Takes a deleted user out of the workspace's teams and records `MemberRemoved` (with `by`
    /// and the reason) in the workspace's events, in one transaction.
    public static func forgetDeletedUser(_ userID: String, email: String, by actor: String, in tx: inout WorkspaceTransaction) throws {
        try TeamStore.removeFromAllTeams(userID, in: tx.db)
        try tx.append(DomainEvent(type: "MemberRemoved", subject: "user:\(userID)",
                                  payload: ["email": email, "reason": "user deleted", "by": actor]))
    }
}
