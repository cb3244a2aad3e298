import CSentinelSQLite
import Foundation
import GRDB
@testable import SentinelCore
import Testing

/// The hot tables' `CHECK`s on a column's values are written as equalities (migrations 0016,
/// 0017): SQLite codes a constant `IN` list of three or more values as a temporary b-tree, which
/// it built for every job claimed or finished, every review run's change of state and every
/// delivery stored.
@Suite("Schema checks")
struct SchemaCheckTests {
    static let writes = [
        "INSERT INTO jobs (kind, payload, priority, state, max_attempts, run_at, created_at) VALUES ('noop', x'', 2, 'queued', 3, 0, 0)",
        "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = ?, lease_expires_at = ?, started_at = ? WHERE id = ?",
        "UPDATE jobs SET state = 'succeeded', lease_owner = NULL, lease_expires_at = NULL, finished_at = ? WHERE id = ? AND lease_owner = ?",
        "UPDATE review_runs SET state = ?, finished_at = ? WHERE id = ?",
        "INSERT INTO deliveries (id, integration_id, event, payload, payload_encoding, payload_bytes, received_at) VALUES (?, ?, 'pull_request', ?, 'zstd', ?, 0)",
    ]

    /// The statements of `writes` whose program opens a temporary b-tree.
    static func withTemporaryTrees(_ queue: DatabaseQueue) throws -> [String] {
        try queue.read { db in
            try writes.filter { sql in
                try Row.fetchAll(db, sql: "EXPLAIN " + sql.replacingOccurrences(of: "?", with: "NULL")).contains { ($0["opcode"] as String) == "OpenEphemeral" }
            }
        }
    }

    @Test("writing a job, a review run or a delivery builds no temporary b-tree for a CHECK; before 0016/0017 the job and run writes did")
    func noTemporaryTrees() throws {
        let before = try DatabaseQueue()
        try WorkspaceSchema.migrator.migrate(before, upTo: "0015_jobs_finished_index")
        // Every write of a job or a run (the deliveries' two values made no tree then).
        #expect(try Self.withTemporaryTrees(before).count == 4)

        let current = try DatabaseQueue()
        try WorkspaceSchema.migrator.migrate(current)
        #expect(try Self.withTemporaryTrees(current) == [])

        // The same file upgraded from 0015.
        try WorkspaceSchema.migrator.migrate(before)
        #expect(try Self.withTemporaryTrees(before) == [])
        #expect(try before.read { db in try String.fetchAll(db, sql: "PRAGMA integrity_check") } == ["ok"])
    }

    @Test("the checks written as equalities still refuse a state or an encoding outside their lists")
    func stillRefused() throws {
        let queue = try DatabaseQueue()
        try WorkspaceSchema.migrator.migrate(queue)
        try queue.write { db in
            for state in ["queued", "running", "succeeded", "dead", "cancelled"] {
                try db.execute(sql: "INSERT INTO jobs (kind, payload, priority, state, max_attempts, run_at, created_at) VALUES ('noop', x'', 2, ?, 3, 0, 0)",
                               arguments: [state])
            }
        }
        #expect(throws: DatabaseError.self) {
            try queue.write { db in
                try db.execute(sql: "INSERT INTO jobs (kind, payload, priority, state, max_attempts, run_at, created_at) VALUES ('noop', x'', 2, 'paused', 3, 0, 0)")
            }
        }
        #expect(throws: DatabaseError.self) {
            try queue.write { db in try db.execute(sql: "UPDATE jobs SET state = 'Queued' WHERE state = 'queued'") }
        }
        let runs = try queue.read { db in try String.fetchOne(db, sql: "SELECT sql FROM sqlite_schema WHERE name = 'review_runs'") }
        #expect(runs?.contains("CHECK (state = 'queued' OR state = 'running' OR state = 'completed' OR state = 'failed' OR state = 'skipped' OR state = 'superseded')") == true)
        #expect(try queue.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM jobs") } == 5)
    }

    @Test("a CHECK is rewritten on a connection in defensive mode too, which stays defensive after")
    func defensiveConnection() throws {
        let queue = try DatabaseQueue()
        try queue.writeWithoutTransaction { db in
            try db.execute(sql: "CREATE TABLE t (v TEXT CHECK (v IN ('a', 'b', 'c')))")
            #expect(sentinel_sqlite3_defensive(db.sqliteConnection, 1, nil) == SQLITE_OK)
            // Defensive mode refuses the edit itself.
            #expect(throws: DatabaseError.self) {
                try db.execute(sql: "PRAGMA writable_schema = ON")
                defer { try? db.execute(sql: "PRAGMA writable_schema = OFF") }
                try db.execute(sql: "UPDATE sqlite_schema SET sql = sql WHERE name = 't'")
            }
        }
        try queue.write { db in
            try SchemaEdit.replaceCheck(in: db, table: "t", from: "CHECK (v IN ('a', 'b', 'c'))", to: "CHECK (v = 'a' OR v = 'b' OR v = 'c')")
        }
        try queue.writeWithoutTransaction { db in
            var defensive: Int32 = 0
            _ = sentinel_sqlite3_defensive(db.sqliteConnection, -1, &defensive)
            #expect(defensive == 1)
            #expect(try String.fetchOne(db, sql: "SELECT sql FROM sqlite_schema WHERE name = 't'") == "CREATE TABLE t (v TEXT CHECK (v = 'a' OR v = 'b' OR v = 'c'))")
            try db.execute(sql: "INSERT INTO t VALUES ('c')")
            #expect(throws: DatabaseError.self) { try db.execute(sql: "INSERT INTO t VALUES ('d')") }
        }
    }
}
