import Foundation
import GRDB
@testable import SentinelCore
import SentinelTestSupport
import Testing

/// The workspace writer's WAL is checkpointed off its thread (`WALCheckpointer`): the log stays
/// short under a steady stream of commits, and nothing written is lost, closed mid-way or not.
@Suite("WAL checkpoints off the writer")
struct WALCheckpointerTests {
    /// `commits` commits of `bytes` bytes each into a scratch table of the workspace file.
    static func fill(_ actor: WorkspaceActor, commits: Int, bytes: Int, concurrent: Int = 8) async throws {
        _ = try await actor.write { tx in try tx.db.execute(sql: "CREATE TABLE IF NOT EXISTS scratch (id INTEGER PRIMARY KEY, body BLOB NOT NULL)") }
        let body = Data((0..<bytes).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in 0..<concurrent {
                group.addTask {
                    for _ in stride(from: lane, to: commits, by: concurrent) {
                        try await actor.write { tx in try tx.db.execute(sql: "INSERT INTO scratch (body) VALUES (?)", arguments: [body]) }
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    @Test("40 MB committed in 2,000 writes: checkpoints run in the background, the writer copies only tails, the WAL stays short")
    func walStaysShort() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        let wal = URL(fileURLWithPath: h.dataDirectory.workspaceFile(ws).path + "-wal")
        let largestWAL = Recorder<Int>()
        try await h.supervisor.withWorkspace(ws) { actor in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await Self.fill(actor, commits: 2_000, bytes: 20_000) }
                group.addTask {
                    // The WAL file's size while the writes go on (it is never truncated meanwhile,
                    // only started again from its beginning, so its size is its high-water mark).
                    while !Task.isCancelled {
                        if let size = try? FileManager.default.attributesOfItem(atPath: wal.path)[.size] as? Int { largestWAL.append(size) }
                        try await Task.sleep(for: .milliseconds(20))
                    }
                }
                try await group.next()
                group.cancelAll()
            }
            // Background copies run on threads other tests share: on a loaded machine the last
            // ones may end only now.
            let checkpointer = actor.checkpointer
            #expect(await eventually(timeout: .seconds(30)) { checkpointer.counts.background >= 3 }, "background checkpoints: \(checkpointer.counts)")
            let rows = try await actor.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM scratch") }
            #expect(rows == 2_000)
        }
        // 2,000 × 20 KB is ~10,000 pages; a log that was never started again would hold all of them.
        // It stays within the writer's limit (8,000 frames of 4,120 bytes, and one group commit
        // more) even when the shared threads run the background copies late.
        let largest = largestWAL.all.max() ?? 0
        #expect(largest > 0 && largest < (8_000 + 300) * 4_120, "largest WAL \(largest) bytes")
        await h.stop()
    }

    @Test("after each commit: a log at its limit is copied by the writer, never left to one more background copy")
    func checkpointPolicy() {
        var s = WALCheckpointer.State()
        func commit(_ pages: Int32) -> WALCheckpointer.Action { s.commit(pages: pages, threshold: 100, tail: 8, limit: 800) }
        #expect(commit(40) == .none)
        #expect(commit(120) == .background)
        #expect(commit(500) == .none)
        // At the limit the writer tries at once; SQLite refuses while the background copy runs.
        #expect(commit(900) == .inWriter)
        s.checkpointedInWriter(copied: nil)
        // The background copy ends, having copied what the log held when it started: the writer
        // appended far more than `tail` since. It completes the log itself (before: one more
        // background copy, and the log grew for as long as writes outran them).
        s.checkpointedInBackground(copied: 120)
        #expect(s.backfilled == 120 && !s.running)
        #expect(commit(910) == .inWriter)
        s.checkpointedInWriter(copied: 910)
        #expect(s.backfilled == 910)
        // A reader of another process kept the log from starting again: still past the limit.
        #expect(commit(930) == .inWriter)
        // The log started again from its beginning.
        #expect(commit(12) == .none)
        #expect(s.restarts == 1 && s.backfilled == 0)
        // Below the limit: background copies until the rest is at most `tail` pages, which the writer copies.
        #expect(commit(130) == .background)
        s.checkpointedInBackground(copied: 130)
        #expect(commit(150) == .none)
        #expect(commit(160) == .background)
        s.checkpointedInBackground(copied: 160)
        #expect(commit(166) == .inWriter)
        s.checkpointedInWriter(copied: 166)
        #expect(commit(8) == .none)
        // A relaxed commit (a cooperative thread) never copies: it leaves the rest to the next
        // durable commit, and past the limit starts a background copy.
        #expect(commit(140) == .background)
        s.checkpointedInBackground(copied: 140)
        s.relaxed = true
        #expect(commit(144) == .none)
        s.relaxed = false
        #expect(commit(146) == .inWriter)
        s.checkpointedInWriter(copied: 146)
        s.relaxed = true
        #expect(commit(820) == .background)
        #expect(commit(900) == .none)
        s.relaxed = false
        #expect(commit(910) == .inWriter)
        // A closed checkpointer does nothing more.
        s.closed = true
        #expect(commit(2_000) == .none)
    }

    @Test("commits faster than the background copies them: the writer completes the log and it starts again, within its limit")
    func logStartsAgainUnderSustainedWrites() async throws {
        let h = try TestHarness()
        let path = h.directory.url.appendingPathComponent("sustained.sqlite").path
        let queue = try DatabaseQueue(path: path)
        _ = try await queue.writeWithoutTransaction { db in
            try String.fetchOne(db, sql: "PRAGMA journal_mode = WAL")
            // No fsync per commit: the writer outruns every background checkpoint, as a busy
            // workspace writer does under a stream of webhook deliveries.
            try db.execute(sql: "PRAGMA synchronous = OFF")
            try db.execute(sql: "CREATE TABLE scratch (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
        }
        // Each commit adds about ten pages, more than `tail`: a background copy never ends within
        // `tail` pages of the end of the log, so only the writer can complete it.
        let checkpointer = WALCheckpointer(path: path, threshold: 100, tail: 8, limit: 800)
        try checkpointer.install(on: queue)
        let body = Data((0..<40_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        var largest: Int32 = 0
        for _ in 0..<600 {
            try await queue.write { db in try db.execute(sql: "INSERT INTO scratch (body) VALUES (?)", arguments: [body]) }
            largest = max(largest, checkpointer.logPages)
        }
        let (counts, restarts) = (checkpointer.counts, checkpointer.restarts)
        checkpointer.close(writer: queue)
        // 600 commits of ten pages are 6,000 pages; a log that never started again would hold them all.
        #expect(largest < 4_000, "largest log \(largest) pages; checkpoints \(counts), restarts \(restarts)")
        #expect(restarts >= 1, "the log started again \(restarts) times; checkpoints \(counts)")
        let rows = try await queue.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM scratch") }
        #expect(rows == 600)
        try queue.close()
        await h.stop()
    }

    @Test("relaxed commits (the queue's, on a cooperative thread) never copy the log in the writer; durable ones do")
    func relaxedCommitsLeaveTheCopy() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        try await h.supervisor.withWorkspace(ws) { actor in
            _ = try await actor.write { tx in try tx.db.execute(sql: "CREATE TABLE scratch (id INTEGER PRIMARY KEY, body BLOB NOT NULL)") }
            let body = Data((0..<20_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
            // One at a time: each background copy ends long before the next few commits, so the
            // rest after it is short, which a durable commit copies in the writer.
            for _ in 0..<600 {
                _ = try await actor.write(durable: false) { tx in try tx.db.execute(sql: "INSERT INTO scratch (body) VALUES (?)", arguments: [body]) }
            }
            // The log passed `threshold`: a background copy ran (on a loaded machine it may end only now).
            let checkpointer = actor.checkpointer
            #expect(await eventually(timeout: .seconds(30)) { checkpointer.counts.background >= 1 }, "\(checkpointer.counts)")
            #expect(checkpointer.counts.inWriter == 0, "\(checkpointer.counts)")
            // Durable commits: once a background copy has ended with a short rest, the writer copies it.
            var durable = 0
            while checkpointer.counts.inWriter == 0 && durable < 3_000 {
                _ = try await actor.write { tx in try tx.db.execute(sql: "INSERT INTO scratch (body) VALUES (?)", arguments: [body]) }
                durable += 1
            }
            #expect(checkpointer.counts.inWriter > 0, "\(checkpointer.counts) after \(durable) durable commits")
            let rows = try await actor.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM scratch") }
            #expect(rows == 600 + durable)
        }
        await h.stop()
    }

    @Test("relaxed commits only (a busy queue): the background copies catch up with the log between commits, and it starts again")
    func relaxedLogStartsAgain() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        try await h.supervisor.withWorkspace(ws) { actor in
            _ = try await actor.write { tx in try tx.db.execute(sql: "CREATE TABLE scratch (id INTEGER PRIMARY KEY, body BLOB NOT NULL)") }
            let body = Data((0..<20_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
            let checkpointer = actor.checkpointer
            var commits = 0
            var largest: Int32 = 0
            // Short pauses between the commits, as a queue's writer has between its batches. Before,
            // the log grew by every commit (no relaxed commit completes it) until a durable one came.
            while checkpointer.restarts == 0 && commits < 3_000 {
                _ = try await actor.write(durable: false) { tx in try tx.db.execute(sql: "INSERT INTO scratch (body) VALUES (?)", arguments: [body]) }
                commits += 1
                largest = max(largest, checkpointer.logPages)
                try await Task.sleep(for: .milliseconds(2))
            }
            #expect(checkpointer.restarts >= 1, "the log started again \(checkpointer.restarts) times in \(commits) commits; checkpoints \(checkpointer.counts)")
            #expect(checkpointer.counts.inWriter == 0, "\(checkpointer.counts)")
            #expect(largest < 3_000, "largest log \(largest) pages")
            let rows = try await actor.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM scratch") }
            #expect(rows == commits)
        }
        await h.stop()
    }

    @Test("a workspace closed while a background checkpoint may be running keeps every commit, and reopens")
    func closeDuringCheckpoint() async throws {
        let first = try TestHarness()
        let ws = try first.createWorkspace()
        try await first.supervisor.withWorkspace(ws) { try await Self.fill($0, commits: 300, bytes: 20_000) }
        // Closing right after the last commit: any background checkpoint is waited for, then the
        // writer's own checkpoint on close empties the log.
        await first.supervisor.shutdown()
        let walSize = (try? FileManager.default.attributesOfItem(atPath: first.dataDirectory.workspaceFile(ws).path + "-wal")[.size] as? Int) ?? 0
        #expect(walSize == 0)
        let h = try TestHarness(reusing: first)
        let rows = try await h.supervisor.withWorkspace(ws) { reopened in
            try await reopened.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM scratch") }
        }
        #expect(rows == 300)
        await h.stop()
    }

    @Test("a workspace closed and opened again keeps its -wal and -shm files (the same inodes), the log emptied at close")
    func logFilesKeptBetweenOpens() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        let path = h.dataDirectory.workspaceFile(ws).path
        func inode(_ suffix: String) -> Int? {
            (try? FileManager.default.attributesOfItem(atPath: path + suffix))?[.systemFileNumber] as? Int
        }
        var seen: [[Int?]] = []
        for round in 1...3 {
            try await h.supervisor.withWorkspace(ws) { try await Self.fill($0, commits: 20, bytes: 5_000, concurrent: 2) }
            // Closed as an idle or evicted file is: checkpointed, the log truncated, the files left.
            await h.supervisor.closeIdle(now: .now + .seconds(86_400))
            #expect(await h.supervisor.openWorkspaceIDs.isEmpty)
            let walSize = (try? FileManager.default.attributesOfItem(atPath: path + "-wal"))?[.size] as? Int
            #expect(walSize == 0, "round \(round): -wal size \(String(describing: walSize))")
            seen.append([inode("-wal"), inode("-shm")])
        }
        #expect(seen.allSatisfy { $0.allSatisfy { $0 != nil } }, "\(seen)")
        #expect(Set(seen).count == 1, "the files were made again: \(seen)")
        let rows = try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM scratch") }
        }
        #expect(rows == 60)
        await h.stop()
    }

    @Test("an evicted file keeps a short log as it is (no checkpoint on close) and checkpoints a long one; both read back whole")
    func shortLogKeptOnEviction() async throws {
        let h = try TestHarness(config: testConfig { $0.workspaces.maxOpen = 1 })
        let (ws, other) = (try h.createWorkspace("w1"), try h.createWorkspace("w2"))
        let wal = h.dataDirectory.workspaceFile(ws).path + "-wal"
        func walSize() -> Int { ((try? FileManager.default.attributesOfItem(atPath: wal))?[.size] as? Int) ?? -1 }
        func evict() async throws {
            try await h.supervisor.withWorkspace(other) { _ in }
            #expect(await h.supervisor.openWorkspaceIDs == [other])
        }
        // A few small commits: the log stays under `keptOnEviction` pages, and eviction leaves it.
        let pages = try await h.supervisor.withWorkspace(ws) { actor in
            try await Self.fill(actor, commits: 5, bytes: 1_000, concurrent: 1)
            return actor.checkpointer.logPages
        }
        #expect(pages > 0 && pages <= WALCheckpointer.keptOnEviction, "log pages \(pages)")
        try await evict()
        #expect(walSize() > 0, "the short log was checkpointed away on eviction")
        #expect(walSize() <= 32 + Int(WALCheckpointer.keptOnEviction) * (4_096 + 24), "-wal \(walSize()) bytes")
        // A backup of the closed file (a read-only connection) reads the kept log with it.
        let out = h.directory.url.appendingPathComponent("backup")
        _ = try BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener()).backup(to: out, workspace: ws, control: h.control)
        let copy = try DatabaseQueue(path: out.appendingPathComponent("workspaces/\(ws.rawValue).sqlite").path)
        #expect(try await copy.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM scratch") } == 5)
        try copy.close()
        // Opened again (a new connection reads the log back), then a long log: copied at eviction.
        let rows = try await h.supervisor.withWorkspace(ws) { actor in
            let rows = try await actor.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM scratch") }
            try await Self.fill(actor, commits: 40, bytes: 20_000, concurrent: 1)
            #expect(actor.checkpointer.logPages > WALCheckpointer.keptOnEviction)
            return rows
        }
        #expect(rows == 5)
        try await evict()
        #expect(walSize() == 0, "a long log stayed after eviction: \(walSize()) bytes")
        await h.supervisor.shutdown()
        let reopened = try TestHarness(reusing: h)
        let total = try await reopened.supervisor.withWorkspace(ws) { actor in
            try await actor.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM scratch") }
        }
        #expect(total == 45)
        await reopened.stop()
    }
}
