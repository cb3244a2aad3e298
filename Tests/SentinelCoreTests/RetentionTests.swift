import Foundation
import GRDB
import SentinelCore
import SentinelTestSupport
import Testing

@Suite("Retention")
struct RetentionTests {
    static let day = 86_400.0

    /// 400 deliveries of ~20 KB: 300 processed 40 days ago, 50 processed yesterday, 50 unprocessed
    /// 40 days ago; 2,000 succeeded jobs finished 20 days ago, 10 finished yesterday, one dead.
    func fill(_ actor: WorkspaceActor, now: Date) async throws {
        try await actor.write { tx in
            let old = now.timeIntervalSince1970 - 40 * Self.day, recent = now.timeIntervalSince1970 - Self.day
            for i in 0..<400 {
                let (received, processed): (Double, Double?) = i < 300 ? (old, old) : i < 350 ? (recent, recent) : (old, nil)
                try tx.db.execute(sql: """
                    INSERT INTO deliveries (id, integration_id, event, payload, received_at, processed_at, outcome)
                    VALUES (?, 'int_x', 'pull_request', randomblob(20000), ?, ?, ?)
                    """, arguments: ["d\(i)", received, processed, processed == nil ? nil : "review queued"])
            }
            for i in 0..<2_011 {
                let finished = i < 2_000 ? now.timeIntervalSince1970 - 20 * Self.day : now.timeIntervalSince1970 - Self.day
                try tx.db.execute(sql: """
                    INSERT INTO jobs (kind, payload, priority, state, max_attempts, run_at, created_at, finished_at)
                    VALUES ('noop', randomblob(200), 1, ?, 8, ?, ?, ?)
                    """, arguments: [i == 2_010 ? "dead" : "succeeded", finished, finished, finished])
            }
        }
        try await actor.maintenance { db in try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
    }

    func fileSize(_ url: URL) throws -> Int64 {
        (try FileManager.default.attributesOfItem(atPath: url.path)[.size] as? NSNumber)?.int64Value ?? 0
    }

    @Test("prunes old processed delivery bodies (rows and outcomes stay) and old finished jobs; the file shrinks")
    func pruneAndShrink() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        let file = h.dataDirectory.workspaceFile(ws)
        let now = Date()
        try await h.supervisor.withWorkspace(ws) { try await fill($0, now: now) }
        // Everything written is in the main file before it is measured.
        #expect(try await h.supervisor.withWorkspace(ws) { try await $0.truncateWAL() })
        let before = try fileSize(file)
        #expect(before > 8_000_000)
        let report = try await h.supervisor.withWorkspace(ws) { try await Retention.run(on: $0, config: h.config, now: now) }
        #expect(report.deliveryPayloadsPruned == 300)
        #expect(report.jobsPruned == 2_000)
        #expect(!report.convertedToIncremental, "a new workspace file is incremental from the start")
        let after = try fileSize(file)
        // 300 bodies of 20 KB (6 MB) went; the file gives back at least 5 MB of them.
        #expect(after <= before - 5_000_000, "\(before) -> \(after)")
        #expect(report.pagesFreed > 1_000 && report.bytesAfter == after)
        #expect(Retention.walBytes(of: file) <= Int64(h.config.storage.walMaxBytes))
        let (rows, outcomes, emptied, kept, unprocessed, jobs, mode) = try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.read { db in
                (try Int.fetchOne(db, sql: "SELECT count(*) FROM deliveries") ?? 0,
                 try Int.fetchOne(db, sql: "SELECT count(*) FROM deliveries WHERE outcome = 'review queued'") ?? 0,
                 try Int.fetchOne(db, sql: "SELECT count(*) FROM deliveries WHERE length(payload) = 0") ?? 0,
                 try Int.fetchOne(db, sql: "SELECT count(*) FROM deliveries WHERE processed_at > ? AND length(payload) = 20000",
                                  arguments: [now.timeIntervalSince1970 - 2 * Self.day]) ?? 0,
                 try Int.fetchOne(db, sql: "SELECT count(*) FROM deliveries WHERE processed_at IS NULL AND length(payload) = 20000") ?? 0,
                 try Row.fetchAll(db, sql: "SELECT state, count(*) AS n FROM jobs GROUP BY state ORDER BY state").map { "\($0["state"] as String)=\($0["n"] as Int)" },
                 try Int.fetchOne(db, sql: "PRAGMA auto_vacuum") ?? -1)
            }
        }
        #expect(rows == 400)
        #expect(outcomes == 350)
        #expect(emptied == 300)
        #expect(kept == 50, "recent bodies stay")
        #expect(unprocessed == 50, "a body not processed yet is never pruned")
        #expect(jobs == ["dead=1", "succeeded=10"])
        #expect(mode == 2)
        await h.supervisor.shutdown()
    }

    @Test("finished jobs are pruned window by window: old succeeded and cancelled ones go, recent, dead, queued and running ones stay")
    func prunesJobsInWindows() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        let now = Date()
        let (old, recent) = (now.timeIntervalSince1970 - 20 * Self.day, now.timeIntervalSince1970 - Self.day)
        // 2,000 jobs, succeeded 20 days ago but every 100th yesterday, and a few in other states.
        let states: [Int64: String] = [555: "dead", 1_001: "queued", 1_502: "running", 1_703: "cancelled"]
        try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in
                for id in Int64(1)...2_000 {
                    let state = states[id] ?? "succeeded"
                    let finished: Double? = ["queued", "running"].contains(state) ? nil : id % 100 == 0 ? recent : old
                    try tx.db.execute(sql: """
                        INSERT INTO jobs (id, kind, payload, priority, state, max_attempts, run_at, created_at, finished_at)
                        VALUES (?, 'noop', x'7b7d', 1, ?, 8, ?, ?, ?)
                        """, arguments: [id, state, old, old, finished])
                }
                // A gap in the ids, as earlier prunes leave.
                try tx.db.execute(sql: "DELETE FROM jobs WHERE id BETWEEN 800 AND 899")
            }
        }
        let pruned = try await h.supervisor.withWorkspace(ws) {
            try await $0.pruneFinishedJobs(finishedBefore: now.addingTimeInterval(-14 * Self.day), window: 300)
        }
        let left = try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.read { db in try Row.fetchAll(db, sql: "SELECT id, state FROM jobs ORDER BY id").map { "\($0["id"] as Int64):\($0["state"] as String)" } }
        }
        // Kept: the 19 finished yesterday (800 was deleted before), the dead, queued and running jobs.
        let yesterday = stride(from: Int64(100), through: 2_000, by: 100).filter { $0 != 800 }
        let expected = (yesterday + [555, 1_001, 1_502]).sorted().map { "\($0):\(states[$0] ?? "succeeded")" }
        #expect(left == expected)
        #expect(pruned == 1_900 - 22)
        await h.supervisor.shutdown()
    }

    @Test("no index orders finished jobs (0015): an outcome writes no index page for retention")
    func noFinishedIndex() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        let indexes = try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.read { db in try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'jobs' ORDER BY name") }
        }
        #expect(indexes == ["jobs_due", "jobs_idempotency", "jobs_leases"])
        await h.supervisor.shutdown()
    }

    @Test("a file made without incremental auto-vacuum is switched once by a full VACUUM and shrinks")
    func convertsOldFiles() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        let file = h.dataDirectory.workspaceFile(ws)
        let now = Date()
        try await h.supervisor.withWorkspace(ws) { actor in
            _ = try await actor.maintenance { db in
                try db.execute(sql: "PRAGMA auto_vacuum = NONE")
                try db.execute(sql: "VACUUM")
                return try Int.fetchOne(db, sql: "PRAGMA auto_vacuum")
            }
            try await fill(actor, now: now)
        }
        #expect(try await h.supervisor.withWorkspace(ws) { try await $0.read { try Int.fetchOne($0, sql: "PRAGMA auto_vacuum") } } == 0)
        // Everything written is in the main file before it is measured (background checkpoints
        // may have copied any part of the log by now).
        #expect(try await h.supervisor.withWorkspace(ws) { try await $0.truncateWAL() })
        let before = try fileSize(file)
        let first = try await h.supervisor.withWorkspace(ws) { try await Retention.run(on: $0, config: h.config, now: now) }
        #expect(first.convertedToIncremental)
        #expect(try fileSize(file) < before / 3)
        #expect(try await h.supervisor.withWorkspace(ws) { try await $0.read { try Int.fetchOne($0, sql: "PRAGMA auto_vacuum") } } == 2)
        let second = try await h.supervisor.withWorkspace(ws) { try await Retention.run(on: $0, config: h.config, now: now) }
        #expect(!second.convertedToIncremental && second.deliveryPayloadsPruned == 0 && second.jobsPruned == 0)
        await h.supervisor.shutdown()
    }

    @Test("an idle open file's WAL over storage.wal_max_bytes is checkpointed and truncated by the maintenance pass")
    func truncatesLargeWAL() async throws {
        let h = try TestHarness(config: testConfig { $0.storage.walMaxBytes = 1 << 20 })
        let ws = try h.createWorkspace()
        let file = h.dataDirectory.workspaceFile(ws)
        try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in
                try tx.db.execute(sql: "CREATE TABLE ballast (b BLOB); INSERT INTO ballast VALUES (randomblob(3000000))")
            }
        }
        #expect(Retention.walBytes(of: file) > 2_000_000, "the write is still in the WAL")
        await h.supervisor.checkpointLargeWALs()
        #expect(Retention.walBytes(of: file) == 0)
        #expect(await h.supervisor.openWorkspaceIDs == [ws], "the file stays open")
        #expect(try await h.supervisor.withWorkspace(ws) { try await $0.read { try Int.fetchOne($0, sql: "SELECT length(b) FROM ballast") } } == 3_000_000)
        await h.supervisor.shutdown()
    }

    @Test("retention runs as a job through the scheduler; the day's job is enqueued once")
    func runsAsAJob() async throws {
        var registry = JobRegistry()
        let config = testConfig { $0.retention.jobsDays = 1 }
        Retention.register(in: &registry, config: config)
        let h = try TestHarness(config: config, registry: registry)
        let ws = try h.createWorkspace()
        try await h.supervisor.withWorkspace(ws) { try await fill($0, now: Date()) }
        try await h.enqueue(Retention.request(on: Date()), in: ws)
        guard case .duplicate = try await h.enqueue(Retention.request(on: Date()), in: ws) else {
            Issue.record("the same day's retention job was enqueued twice")
            return
        }
        h.startScheduler()
        #expect(await eventually { try await h.jobs(in: ws).contains { $0.kind == Retention.jobKind && $0.state == .succeeded } })
        let left = try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM jobs WHERE kind = 'noop' AND state = 'succeeded'") ?? -1 }
        }
        #expect(left == 0, "jobs_days = 1 prunes the jobs finished yesterday too")
        await h.stop()
    }
}
