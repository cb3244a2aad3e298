import Foundation
import GRDB

/// What a full restore must not undo in control.sqlite: API tokens revoked, users disabled or
/// deleted and passwords changed after the backup was taken, sign-in sessions ended since, and the
/// audit entries written since (a restore brought a revoked token back to life and erased the
/// entry that revoked it). Read from the control.sqlite a restore is about to replace, applied to
/// the restored one. Nothing is carried from another appliance's file: with no user in common (a
/// new machine's fresh control.sqlite) the restored file stays as it was backed up.
struct RestoredCredentials: Sendable {
    struct UserState: Sendable {
        var passwordHash: String
        var disabledAt: Double?
    }

    var users: [String: UserState] = [:]
    var revokedTokens: [String: Double] = [:]
    var sessions: Set<String> = []
    var audit: [AuditEvent] = []

    /// The state of the file about to be replaced; nil when there is none or it cannot be read
    /// (the restore goes on: that file is being replaced).
    static func read(from file: URL) -> RestoredCredentials? {
        guard FileManager.default.fileExists(atPath: file.path) else { return nil }
        var configuration = Configuration()
        configuration.readonly = true
        do {
            let queue = try DatabaseQueue(path: file.path, configuration: configuration)
            defer { try? queue.close() }
            return try queue.read { db in
                var state = RestoredCredentials()
                for row in try Row.fetchAll(db, sql: "SELECT id, password_hash, disabled_at FROM users") {
                    state.users[row["id"]] = UserState(passwordHash: row["password_hash"], disabledAt: row["disabled_at"])
                }
                for row in try Row.fetchAll(db, sql: "SELECT id, revoked_at FROM api_tokens WHERE revoked_at IS NOT NULL") {
                    state.revokedTokens[row["id"]] = row["revoked_at"]
                }
                state.sessions = Set(try String.fetchAll(db, sql: "SELECT id FROM sessions"))
                state.audit = try AuditEvent.fetchAll(db, sql: "SELECT * FROM audit_events ORDER BY seq")
                return state
            }
        } catch {
            return nil
        }
    }

    /// Applies the changes made after the backup to the restored file (in `db`'s transaction) and
    /// says what it kept, for the restore's report.
    func apply(in db: Database, now: Date) throws -> [String] {
        let restored = try Row.fetchAll(db, sql: "SELECT id, password_hash, disabled_at FROM users")
        guard restored.contains(where: { users[$0["id"]] != nil }) else { return [] }
        var disabled = 0, deleted = 0, passwords = 0
        for row in restored {
            let id: String = row["id"]
            let disabledAt: Double? = row["disabled_at"]
            guard let current = users[id] else {
                // Deleted after the backup: disabled here (it signs in nowhere, its tokens refused),
                // for an admin to delete again.
                if disabledAt == nil {
                    try db.execute(sql: "UPDATE users SET disabled_at = ? WHERE id = ?", arguments: [now.epoch, id])
                    deleted += 1
                }
                continue
            }
            if let at = current.disabledAt, disabledAt == nil {
                try db.execute(sql: "UPDATE users SET disabled_at = ? WHERE id = ?", arguments: [at, id])
                disabled += 1
            }
            if current.passwordHash != row["password_hash"] {
                try db.execute(sql: "UPDATE users SET password_hash = ? WHERE id = ?", arguments: [current.passwordHash, id])
                passwords += 1
            }
        }
        var revoked = 0
        for (id, at) in revokedTokens.sorted(by: { $0.key < $1.key }) {
            try db.execute(sql: "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", arguments: [at, id])
            revoked += db.changesCount
        }
        var ended = 0
        for id in try String.fetchAll(db, sql: "SELECT id FROM sessions") where !sessions.contains(id) {
            try db.execute(sql: "DELETE FROM sessions WHERE id = ?", arguments: [id])
            ended += 1
        }
        let known = Set(try String.fetchAll(db, sql: "SELECT id FROM audit_events"))
        var entries = 0
        for event in audit where !known.contains(event.id) {
            try db.execute(sql: "INSERT INTO audit_events (id, type, occurred_at, actor, subject, data) VALUES (?, ?, ?, ?, ?, ?)",
                           arguments: [event.id, event.type, event.occurredAt, event.actor, event.subject, event.data])
            entries += 1
        }
        func count(_ n: Int, _ one: String, _ many: String) -> String { "\(n) \(n == 1 ? one : many)" }
        var said: [String] = []
        if revoked > 0 { said.append(count(revoked, "API token", "API tokens") + " revoked after this backup " + (revoked == 1 ? "stays" : "stay") + " revoked") }
        if disabled > 0 { said.append(count(disabled, "user", "users") + " disabled after this backup " + (disabled == 1 ? "stays" : "stay") + " disabled") }
        if deleted > 0 {
            said.append(count(deleted, "user", "users") + " deleted after this backup " + (deleted == 1 ? "is" : "are")
                        + " back, disabled (sentinel user list shows who; delete again with sentinel user delete)")
        }
        if passwords > 0 { said.append(count(passwords, "user keeps the password", "users keep the passwords") + " set after this backup") }
        if ended > 0 { said.append(count(ended, "sign-in session", "sign-in sessions") + " that ended after this backup " + (ended == 1 ? "stays" : "stay") + " ended") }
        if entries > 0 { said.append(count(entries, "audit entry", "audit entries") + " written after this backup " + (entries == 1 ? "is" : "are") + " kept") }
        return said
    }
}
