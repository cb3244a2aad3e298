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
            let counts = actor.checkpointer.counts
            #expect(counts.background >= 3, "background checkpoints: \(counts)")
            let rows = try await actor.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM scratch") }
            #expect(rows == 2_000)
        }
        // 2,000 × 20 KB is ~10,000 pages; a log that was never started again would hold all of them.
        let largest = largestWAL.all.max() ?? 0
        #expect(largest > 0 && largest < 24 << 20, "largest WAL \(largest) bytes")
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
