import Foundation
import GRDB

/// A workspace as registered in `control.sqlite`.
public struct WorkspaceRecord: Sendable, Codable, Equatable, FetchableRecord {
    public static let databaseColumnDecodingStrategy = DatabaseColumnDecodingStrategy.convertFromSnakeCase
    public var id: String
    public var name: String
    public var plan: String
    public var createdAt: Double

    public var workspaceID: WorkspaceID? { WorkspaceID(id) }
}

/// The supervisor's registry file. Shared by `serve` and CLI commands running at the same time
/// (SQLite's WAL locking coordinates the processes).
public final class ControlStore: Sendable {
    /// Only ever used with GRDB's synchronous methods. A synchronous access runs on the caller's
    /// thread and always finishes; an `await database.read/write` parks its work on a dispatch queue
    /// that needs a free thread, and under load every thread of the small cooperative pool can be
    /// blocked waiting for the connection that parked work holds (a deadlock seen with ~100
    /// concurrent API requests before this rule). Private: every use goes through this type's
    /// synchronous `read`/`write` or its methods.
    private let database: any DatabaseWriter
    public let dataDirectory: DataDirectory

    public init(dataDirectory: DataDirectory, opener: DatabaseOpener) throws {
        self.dataDirectory = dataDirectory
        self.database = try opener.open(dataDirectory.controlFile, kind: .control, create: true, label: "control")
    }

    /// A synchronous read, also from async code (where `database.read` would pick GRDB's async form).
    public func read<T>(_ body: (Database) throws -> T) throws -> T { try database.read(body) }

    /// A synchronous write transaction, also from async code.
    public func write<T>(_ body: (Database) throws -> T) throws -> T { try database.write(body) }

    /// The file as a reader, for an online backup of it (`BackupService`).
    func withReader<T>(_ body: (any DatabaseReader) throws -> T) throws -> T { try body(database) }

    /// Closes the file (restore, tests): the store is unusable afterwards.
    public func close() throws { try database.close() }

    /// Checkpoints the WAL into the file (shutdown), synchronously, without waiting for readers (a
    /// Litestream sidecar holds a read transaction all the time): what cannot be checkpointed now
    /// stays durable in the WAL. The connection's busy timeout is restored after.
    public func checkpoint() throws {
        try database.writeWithoutTransaction { db in
            let timeout = try Int.fetchOne(db, sql: "PRAGMA busy_timeout") ?? 0
            try db.execute(sql: "PRAGMA busy_timeout = 0")
            defer { try? db.execute(sql: "PRAGMA busy_timeout = \(timeout)") }
            try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)")
        }
    }

    // MARK: Workspaces

    /// Registers a workspace (audited `WorkspaceCreated` by `actor`).
    public func insertWorkspace(id: WorkspaceID, name: String, by actor: String = "cli", now: Date = Date()) throws {
        do {
            try database.write { db in
                try db.execute(sql: "INSERT INTO workspaces (id, name, created_at) VALUES (?, ?, ?)",
                               arguments: [id.rawValue, name, now.epoch])
                try AuditLog.append("WorkspaceCreated", actor: actor, subject: "workspace:\(id)", data: ["name": name], in: db, now: now)
            }
        } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE {
            throw StorageError.conflict("a workspace named '\(name)' already exists")
        }
    }

    public func workspace(_ id: WorkspaceID) throws -> WorkspaceRecord? {
        try database.read { db in
            try WorkspaceRecord.fetchOne(db, sql: "SELECT * FROM workspaces WHERE id = ?", arguments: [id.rawValue])
        }
    }

    /// By its name as stored (composed, NFC) or as given (a name stored before names were composed).
    public func workspace(named name: String) throws -> WorkspaceRecord? {
        try database.read { db in
            try WorkspaceRecord.fetchOne(db, sql: "SELECT * FROM workspaces WHERE name = ? OR name = ? ORDER BY name = ? DESC LIMIT 1",
                                         arguments: [name.precomposedStringWithCanonicalMapping, name, name.precomposedStringWithCanonicalMapping])
        }
    }

    public func workspaces() throws -> [WorkspaceRecord] {
        try database.read { db in try WorkspaceRecord.fetchAll(db, sql: "SELECT * FROM workspaces ORDER BY created_at, id") }
    }

    public func workspaceIDs() throws -> [WorkspaceID] {
        try database.read { db in try String.fetchAll(db, sql: "SELECT id FROM workspaces ORDER BY id") }.compactMap(WorkspaceID.init)
    }

    // MARK: Pending-work index

    /// Records that `workspace` has work due at `due` or earlier. Only ever moves the due time earlier,
    /// so concurrent writers (server and CLI) cannot hide each other's work.
    public func markDue(_ workspace: WorkspaceID, at due: Double, in db: Database) throws {
        try db.execute(sql: """
            INSERT INTO pending_work (workspace_id, due_at) VALUES (?, ?)
            ON CONFLICT(workspace_id) DO UPDATE SET due_at = min(due_at, excluded.due_at)
            """, arguments: [workspace.rawValue, due])
    }

    public func markDue(_ workspace: WorkspaceID, at due: Double) throws {
        try database.write { db in try markDue(workspace, at: due, in: db) }
    }

    /// Replaces the index entry with the file's true next due time (nil: nothing pending).
    public func setDue(_ workspace: WorkspaceID, to due: Double?) throws {
        try database.write { db in
            if let due {
                try db.execute(sql: """
                    INSERT INTO pending_work (workspace_id, due_at) VALUES (?, ?)
                    ON CONFLICT(workspace_id) DO UPDATE SET due_at = excluded.due_at
                    """, arguments: [workspace.rawValue, due])
            } else {
                try db.execute(sql: "DELETE FROM pending_work WHERE workspace_id = ?", arguments: [workspace.rawValue])
            }
        }
    }

    /// Workspaces with work due by `now`, in id order starting after `cursor` (round-robin fairness).
    public func dueWorkspaces(now: Date, after cursor: WorkspaceID?, limit: Int) throws -> [WorkspaceID] {
        try database.read { db in
            let t = now.epoch
            var ids = try String.fetchAll(db, sql: """
                SELECT workspace_id FROM pending_work WHERE due_at <= ? AND workspace_id > ? ORDER BY workspace_id LIMIT ?
                """, arguments: [t, cursor?.rawValue ?? "", limit])
            if ids.count < limit, cursor != nil {
                ids += try String.fetchAll(db, sql: """
                    SELECT workspace_id FROM pending_work WHERE due_at <= ? AND workspace_id <= ? ORDER BY workspace_id LIMIT ?
                    """, arguments: [t, cursor!.rawValue, limit - ids.count])
            }
            return ids.compactMap(WorkspaceID.init)
        }
    }

    /// Workspaces with work due by `now` and their due times, earliest first.
    public func dueEntries(now: Date, limit: Int) throws -> [(WorkspaceID, Double)] {
        try database.read { db in
            try Row.fetchAll(db, sql: "SELECT workspace_id, due_at FROM pending_work WHERE due_at <= ? ORDER BY due_at LIMIT ?",
                             arguments: [now.epoch, limit])
                .compactMap { row in WorkspaceID(row[0] as String).map { ($0, row[1] as Double) } }
        }
    }

    /// The latest wall-clock time the job scheduler recorded (nil before its first record).
    public func latestWallClock() throws -> Double? {
        try database.read { db in try Double.fetchOne(db, sql: "SELECT latest_seen_at FROM wall_clock WHERE id = 1") }
    }

    public func recordWallClock(_ seconds: Double) throws {
        try database.write { db in
            try db.execute(sql: """
                INSERT INTO wall_clock (id, latest_seen_at) VALUES (1, ?)
                ON CONFLICT(id) DO UPDATE SET latest_seen_at = excluded.latest_seen_at
                """, arguments: [seconds])
        }
    }

    // MARK: Integration changes

    /// How many times integrations were rotated or removed, by any process sharing this file.
    public func integrationRevision() throws -> Int64 {
        try database.read { db in try Int64.fetchOne(db, sql: "SELECT revision FROM integration_revision WHERE id = 1") ?? 0 }
    }

    /// Records that an integration's credentials changed or it was removed: a running server's
    /// cached copies are read again (`IntegrationCache`).
    public func noteIntegrationChanged(in db: Database) throws {
        try db.execute(sql: "UPDATE integration_revision SET revision = revision + 1 WHERE id = 1")
    }

    public func noteIntegrationChanged() throws {
        try database.write { db in try noteIntegrationChanged(in: db) }
    }

    /// Moves every due time of the index that lies after `now` back by `seconds`, never before
    /// `now` (the wall clock was set back: `WallClockWatch`).
    public func moveDueTimes(back seconds: Double, now: Double) throws {
        try database.write { db in
            try db.execute(sql: "UPDATE pending_work SET due_at = max(?, due_at - ?) WHERE due_at > ?",
                           arguments: [now, seconds, now])
        }
    }

    /// Every workspace with an index entry: all that have queued jobs (an entry is written before
    /// the jobs commit), and perhaps a few that no longer do.
    public func workspacesWithPendingWork() throws -> Set<WorkspaceID> {
        try database.read { db in Set(try String.fetchAll(db, sql: "SELECT workspace_id FROM pending_work").compactMap(WorkspaceID.init)) }
    }

    /// The earliest due time in the index, to know how long the scheduler may sleep.
    public func earliestDue() throws -> Double? {
        try database.read { db in try Double.fetchOne(db, sql: "SELECT min(due_at) FROM pending_work") }
    }

    public func dueEntry(_ workspace: WorkspaceID) throws -> Double? {
        try database.read { db in
            try Double.fetchOne(db, sql: "SELECT due_at FROM pending_work WHERE workspace_id = ?", arguments: [workspace.rawValue])
        }
    }
}
