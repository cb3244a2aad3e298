import Foundation
import GRDB

/// What a full restore must not undo in control.sqlite: API tokens revoked, users disabled,
/// enabled or deleted and passwords changed after the backup was taken, sign-in sessions ended
/// since, integrations added since, and the audit entries written since (a restore brought a
/// revoked token back to life and erased the entry that revoked it). Read from the control.sqlite
/// a restore is about to replace, and applied to the restored one only when that file is a later
/// state of the backup: its audit log holds the backup's last entry. An older file (a standby
/// restored from an older backup before), or another appliance's, leaves the backup as it was.
struct RestoredCredentials: Sendable {
    struct UserState: Sendable {
        var passwordHash: String
        var disabledAt: Double?
    }

    var users: [String: UserState] = [:]
    var revokedTokens: [String: Double] = [:]
    var sessions: Set<String> = []
    var audit: [AuditEvent] = []
    /// Integration id → workspace id, as the file routed webhooks.
    var routes: [String: String] = [:]
    /// Every API token: id → "name of email", to name those made after the backup.
    var tokens: [String: String] = [:]
    /// Integrations removed (retired: their webhooks answer 410 Gone), with their workspace and when.
    var retired: [String: (workspace: String, at: Double)] = [:]
    /// Every workspace registered: id → name, to name those created after the backup.
    var workspaces: [String: String] = [:]

    /// The state of the file about to be replaced: nil when there is none; an error when it
    /// cannot be read (the restore goes on, and says what it could not keep).
    static func read(from file: URL) -> Result<RestoredCredentials, any Error>? {
        guard FileManager.default.fileExists(atPath: file.path) else { return nil }
        var configuration = Configuration()
        configuration.readonly = true
        return Result {
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
                for row in try Row.fetchAll(db, sql: "SELECT t.id, t.name, u.email FROM api_tokens t JOIN users u ON u.id = t.user_id") {
                    state.tokens[row["id"]] = "\(row["name"] as String) of \(row["email"] as String)"
                }
                state.audit = try AuditEvent.fetchAll(db, sql: "SELECT * FROM audit_events ORDER BY seq")
                for row in try Row.fetchAll(db, sql: "SELECT id, workspace_id FROM integrations") {
                    state.routes[row["id"]] = row["workspace_id"]
                }
                for row in try Row.fetchAll(db, sql: "SELECT id, workspace_id, retired_at FROM retired_integrations") {
                    state.retired[row["id"]] = (row["workspace_id"], row["retired_at"])
                }
                for row in try Row.fetchAll(db, sql: "SELECT id, name FROM workspaces") {
                    state.workspaces[row["id"]] = row["name"]
                }
                return state
            }
        }
    }

    /// Applies the changes made after the backup to the restored file (in `db`'s transaction) and
    /// says what it kept, for the restore's report.
    /// `restoredWorkspaces`: the workspaces whose files came from the backup.
    /// `backupCreatedAt`: the backup's `created_at` (a full restore of this same backup since does
    /// not break the chain: the file is still this backup and what was done after it).
    func apply(in db: Database, now: Date, restoredWorkspaces: Set<String>, backupCreatedAt: String) throws -> [String] {
        let restored = try Row.fetchAll(db, sql: "SELECT id, email, password_hash, disabled_at FROM users ORDER BY email")
        // A later state of this backup: its audit log goes on from the backup's last entry, with no
        // full restore since (an older file, or one a full restore made, rolled a password back and
        // disabled users created in between; a one-workspace restore leaves control.sqlite as it is).
        let last = try String.fetchOne(db, sql: "SELECT id FROM audit_events ORDER BY seq DESC LIMIT 1")
        let continuation = last.flatMap { last in audit.firstIndex { $0.id == last } }
            .map { index in !audit[(index + 1)...].contains { event in
                event.type == "BackupRestored" && event.subject == "appliance" && Self.field("backup_created_at", in: event) != backupCreatedAt
            } } ?? false
        // Neither that nor a user in common: another appliance's file, or a new machine's.
        guard continuation || restored.contains(where: { users[$0["id"]] != nil }) else { return [] }
        // Revocations only ever accumulate (a revoked token is never valid again), and an ended
        // session is only a sign-in more: those two are kept whatever the replaced file is.
        var revoked: [String] = []
        for (id, at) in revokedTokens.sorted(by: { $0.key < $1.key }) {
            try db.execute(sql: "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", arguments: [at, id])
            if db.changesCount == 1 {
                let owner = try String.fetchOne(db, sql: "SELECT u.email FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.id = ?",
                                                arguments: [id])
                revoked.append(owner.map { "\(id) of \($0)" } ?? id)
            }
        }
        var ended = 0
        for id in try String.fetchAll(db, sql: "SELECT id FROM sessions") where !sessions.contains(id) {
            try db.execute(sql: "DELETE FROM sessions WHERE id = ?", arguments: [id])
            ended += 1
        }
        // The rest only from a later state of this backup; a user disabled in the replaced file stays
        // disabled whatever it is (the safe side: an admin enables an account again in one command).
        guard continuation else {
            var disabled: [String] = []
            for row in restored where (row["disabled_at"] as Double?) == nil {
                guard let at = users[row["id"]]?.disabledAt else { continue }
                try db.execute(sql: "UPDATE users SET disabled_at = ? WHERE id = ?", arguments: [at, row["id"] as String])
                disabled.append(row["email"])
            }
            let kept = disabled.isEmpty ? [] : [Self.named(disabled, "user", "users") + " disabled in the replaced control.sqlite "
                                                + Self.verb(disabled.count, "stays", "stay") + " disabled"]
            return Self.report(revoked: revoked, ended: ended) + kept + [
                "users, passwords, integrations and the audit log are as the backup has them: the control.sqlite this restore replaced is not "
                + "a later state of this backup (an older one, or one a restore made), so nothing else done there was carried over"]
        }
        var disabled: [String] = [], enabled: [String] = [], deleted: [String] = [], passwords: [String] = []
        for row in restored {
            let (id, email): (String, String) = (row["id"], row["email"])
            let disabledAt: Double? = row["disabled_at"]
            guard let current = users[id] else {
                // Deleted after the backup: disabled here (it signs in nowhere, its tokens refused),
                // for an admin to delete again.
                if disabledAt == nil {
                    try db.execute(sql: "UPDATE users SET disabled_at = ? WHERE id = ?", arguments: [now.epoch, id])
                    deleted.append(email)
                }
                continue
            }
            if current.disabledAt != nil, disabledAt == nil {
                try db.execute(sql: "UPDATE users SET disabled_at = ? WHERE id = ?", arguments: [current.disabledAt, id])
                disabled.append(email)
            } else if current.disabledAt == nil, disabledAt != nil {
                try db.execute(sql: "UPDATE users SET disabled_at = NULL WHERE id = ?", arguments: [id])
                enabled.append(email)
            }
            if current.passwordHash != row["password_hash"] {
                try db.execute(sql: "UPDATE users SET password_hash = ? WHERE id = ?", arguments: [current.passwordHash, id])
                passwords.append(email)
            }
        }
        // An integration added after the backup to a workspace restored from it is in neither
        // restored file: its webhooks answer 410 Gone, as a removed one's do, not 404.
        var retired: [String] = []
        let routed = Set(try String.fetchAll(db, sql: "SELECT id FROM integrations"))
        // A workspace created after the backup is not in it: no longer registered, its file left
        // where it is, and its integrations' webhooks answer 410 Gone too (404, and the restore
        // said nothing of the tenant it had made unreachable).
        let registered = Set(try String.fetchAll(db, sql: "SELECT id FROM workspaces"))
        let unregistered = workspaces.filter { !registered.contains($0.key) }
        for (id, workspace) in routes.sorted(by: { $0.key < $1.key }) where !routed.contains(id)
            && (restoredWorkspaces.contains(workspace) || unregistered[workspace] != nil) {
            try db.execute(sql: "INSERT OR IGNORE INTO retired_integrations (id, workspace_id, retired_at) VALUES (?, ?, ?)",
                           arguments: [id, workspace, now.epoch])
            if db.changesCount == 1 { retired.append(id) }
        }
        // One removed after the backup (added after it, or removed from a restored workspace since
        // and not live in the backup) stays removed: its webhooks answered 404 after the restore.
        var stillRemoved: [String] = []
        for (id, removal) in self.retired.sorted(by: { $0.key < $1.key }) where !routed.contains(id) {
            try db.execute(sql: "INSERT OR IGNORE INTO retired_integrations (id, workspace_id, retired_at) VALUES (?, ?, ?)",
                           arguments: [id, removal.workspace, removal.at])
            if db.changesCount == 1 { stillRemoved.append(id) }
        }
        let known = Set(try String.fetchAll(db, sql: "SELECT id FROM audit_events"))
        var entries = 0
        for event in audit where !known.contains(event.id) {
            try db.execute(sql: "INSERT INTO audit_events (id, type, occurred_at, actor, subject, data) VALUES (?, ?, ?, ?, ?, ?)",
                           arguments: [event.id, event.type, event.occurredAt, event.actor, event.subject, event.data])
            entries += 1
        }
        var said = Self.report(revoked: revoked, ended: ended)
        // Users created after the backup are not in it: named, to be made again.
        let restoredIDs = Set(restored.map { $0["id"] as String })
        let created = users.keys.filter { !restoredIDs.contains($0) }
        if !created.isEmpty {
            let emails = created.compactMap { id in audit.last { $0.type == "UserCreated" && $0.subject == "user:\(id)" }.flatMap { Self.email(in: $0) } ?? id }
            // One deleted and made again under the same email: the account in the backup is back, and must go first.
            let remade = emails.filter { deleted.contains($0) }.sorted()
            let new = emails.filter { !deleted.contains($0) }.sorted()
            if !new.isEmpty {
                said.append(Self.named(new, "user", "users") + " created after this backup " + Self.verb(new.count, "is", "are")
                            + " not in it: create " + Self.verb(new.count, "it", "them") + " again (sentinel user create)")
            }
            if !remade.isEmpty {
                said.append(Self.named(remade, "user", "users") + " deleted and created again after this backup: the account in the backup is "
                            + "back, disabled; delete it (sentinel user delete EMAIL) and create it again (sentinel user create)")
            }
        }
        // API tokens made after the backup are not in it: their requests get 401.
        let restoredTokens = Set(try String.fetchAll(db, sql: "SELECT id FROM api_tokens"))
        let madeSince = tokens.filter { !restoredTokens.contains($0.key) && revokedTokens[$0.key] == nil }.map(\.value).sorted()
        if !madeSince.isEmpty {
            said.append(Self.named(madeSince, "API token", "API tokens") + " created after this backup " + Self.verb(madeSince.count, "is", "are")
                        + " not in it: " + Self.verb(madeSince.count, "its", "their") + " requests get 401; create "
                        + Self.verb(madeSince.count, "it", "them") + " again (sentinel token create)")
        }
        if !disabled.isEmpty {
            said.append(Self.named(disabled, "user", "users") + " disabled after this backup " + Self.verb(disabled.count, "stays", "stay") + " disabled")
        }
        if !enabled.isEmpty {
            said.append(Self.named(enabled, "user", "users") + " enabled after this backup " + Self.verb(enabled.count, "stays", "stay") + " enabled")
        }
        if !deleted.isEmpty {
            said.append(Self.named(deleted, "user", "users") + " deleted after this backup " + Self.verb(deleted.count, "is", "are")
                        + " back, disabled (delete again with sentinel user delete)")
        }
        if !passwords.isEmpty {
            said.append(Self.named(passwords, "user", "users") + Self.verb(passwords.count, " keeps the password", " keep the passwords")
                        + " set after this backup (set another with sentinel user set-password if that change should not stand)")
        }
        if !retired.isEmpty {
            said.append(Self.named(retired, "integration", "integrations") + " added after this backup " + Self.verb(retired.count, "is", "are")
                        + " in no restored file: " + Self.verb(retired.count, "its", "their") + " webhooks answer 410 Gone (add it again to use it)")
        }
        if !stillRemoved.isEmpty {
            said.append(Self.named(stillRemoved, "integration", "integrations") + " removed after this backup " + Self.verb(stillRemoved.count, "stays", "stay")
                        + " removed: " + Self.verb(stillRemoved.count, "its", "their") + " webhooks answer 410 Gone")
        }
        for (id, name) in unregistered.sorted(by: { $0.value < $1.value }) {
            said.append("workspace \(name) (\(id)) created after this backup is not in it and is no longer registered: its file stays at "
                        + "workspaces/\(id).sqlite (sentinel doctor lists it; move it aside or delete it), and its integrations' webhooks answer 410 Gone")
        }
        if entries > 0 { said.append("\(entries) audit entr\(entries == 1 ? "y" : "ies") written after this backup " + Self.verb(entries, "is", "are") + " kept") }
        return said
    }

    /// "1 user (a@x)", "3 users (a@x, b@x, c@x)": named, for the admin to set right what should not have been kept.
    static func named(_ names: [String], _ one: String, _ many: String) -> String {
        let shown = names.prefix(10).joined(separator: ", ") + (names.count > 10 ? ", …" : "")
        return "\(names.count) \(names.count == 1 ? one : many) (\(shown))"
    }

    static func verb(_ count: Int, _ one: String, _ many: String) -> String { count == 1 ? one : many }

    /// The email an audit entry's data names, if any.
    static func email(in event: AuditEvent) -> String? { field("email", in: event) }

    /// A field of an audit entry's data.
    static func field(_ name: String, in event: AuditEvent) -> String? {
        (try? JSONDecoder().decode([String: String].self, from: Data(event.data.utf8)))?[name]
    }

    static func report(revoked: [String], ended: Int) -> [String] {
        var said: [String] = []
        if !revoked.isEmpty {
            said.append(Self.named(revoked, "API token", "API tokens") + " revoked after this backup " + Self.verb(revoked.count, "stays", "stay") + " revoked")
        }
        if ended > 0 { said.append("\(ended) sign-in session\(ended == 1 ? "" : "s") that ended after this backup " + Self.verb(ended, "stays", "stay") + " ended") }
        return said
    }
}
