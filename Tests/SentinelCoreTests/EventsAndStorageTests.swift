import Foundation
import GRDB
import GRDBSQLite
@testable import SentinelCore
import SentinelTestSupport
import Testing
import Synchronization

@Suite("Events log")
struct EventLogTests {
    @Test("SQLite itself refuses UPDATE and DELETE on events")
    func appendOnly() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        let seq = try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in try tx.append(DomainEvent(type: "RunCreated", subject: "run:1", data: Data(#"{"run":1}"#.utf8))) }
        }
        #expect(seq == 1)
        let events = try await h.supervisor.withWorkspace(ws) { actor in
            for sql in ["UPDATE events SET type = 'Tampered'", "DELETE FROM events", "UPDATE events SET data = '{}' WHERE seq = 1"] {
                await #expect {
                    try await actor.write { tx in try tx.db.execute(sql: sql) }
                } throws: { error in
                    (error as? DatabaseError)?.message?.contains("append-only") == true
                }
            }
            return try await actor.read { db in try EventLog.read(after: 0, limit: 10, in: db) }
        }
        #expect(events.count == 1)
        #expect(events[0].type == "RunCreated")
        #expect(events[0].data == #"{"run":1}"#)
        await h.stop()
    }

    @Test("control characters are stripped from stored events; a payload PostgreSQL's jsonb would refuse is not stored")
    func controlCharactersStripped() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        let events = try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in
                try tx.append(try DomainEvent(type: "FindingPosted", subject: "run:\u{0}1\n",
                                              payload: ["title": "a\u{0}b\u{1}c\td\ne\r\u{1F}", "k\u{2}": "v\u{8}\u{C}"]))
                // Raw control bytes in hand-made JSON: removed, or escaped where they are line breaks.
                try tx.append(DomainEvent(type: "Raw", data: Data("{\"a\":\"x\u{1}y\u{9}z\"}".utf8)))
                return try EventLog.read(after: 0, limit: 10, in: tx.db)
            }
        }
        #expect(events.count == 2)
        #expect(!events.contains { $0.data.utf8.contains { $0 < 0x20 } || $0.data.contains("\\u00") })
        let first = try JSONSerialization.jsonObject(with: Data(events[0].data.utf8)) as? [String: String]
        #expect(first == ["title": "abc\td\ne\r", "k": "v"])
        #expect(events[0].subject == "run:1 ")
        let second = try JSONSerialization.jsonObject(with: Data(events[1].data.utf8)) as? [String: String]
        #expect(second == ["a": "xy\tz"])
        for bad in [#"{"a":"\ud800"}"#, #"{"a":1,}"#, "not json"] {
            await #expect(throws: StorageError.self, "\(bad)") {
                try await h.supervisor.withWorkspace(ws) { actor in
                    try await actor.write { tx in try tx.append(DomainEvent(type: "Bad", data: Data(bad.utf8))) }
                }
            }
        }
        #expect(try await h.supervisor.withWorkspace(ws) { try await $0.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM events")! } } == 2)
        #expect(PostgresJSON.problem(in: #"{"a":"\u0000"}"#) != nil)
        #expect(PostgresJSON.problem(in: "{\"a\":\"\u{1}\"}") != nil)
        #expect(PostgresJSON.problem(in: #"{"a":[1,-2.5e3,true,null,"\ud83d\ude80 \u00e9"]}"#) == nil)
        await h.stop()
    }

    @Test("the jsonb check finds a control character, quote or backslash at every offset of a long string, and passes plain runs")
    func jsonCheckAtEveryOffset() {
        let plain = String(repeating: "abcdéfgh", count: 5)
        #expect(PostgresJSON.problem(in: "{\"k\":\"\(plain)\"}") == nil)
        for offset in 0...plain.utf8.count {
            var bytes = Array(plain.utf8)
            bytes.insert(0x01, at: offset)
            #expect(PostgresJSON.problem(in: "{\"k\":\"" + String(decoding: bytes, as: UTF8.self) + "\"}")?.contains("raw control character") == true,
                    "offset \(offset)")
            bytes[offset] = UInt8(ascii: "\"")  // ends the string early: the rest is not JSON
            #expect(PostgresJSON.problem(in: "{\"k\":\"" + String(decoding: bytes, as: UTF8.self) + "\"}") != nil, "offset \(offset)")
            bytes.insert(UInt8(ascii: "\\"), at: offset)  // now an escaped quote: valid again
            #expect(PostgresJSON.problem(in: "{\"k\":\"" + String(decoding: bytes, as: UTF8.self) + "\"}") == nil, "offset \(offset)")
        }
    }

    @Test("an event and the state change it describes commit or roll back together")
    func sameTransaction() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        await #expect(throws: TestFailure.self) {
            try await h.supervisor.withWorkspace(ws) { actor in
                try await actor.write { tx in
                    try tx.db.execute(sql: "INSERT INTO workspace_meta (key, value) VALUES ('k', 'v')")
                    try tx.append(DomainEvent(type: "SettingChanged"))
                    throw TestFailure("the change fails after the event was appended")
                }
            }
        }
        let (events, meta) = try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.read { db in
                (try Int.fetchOne(db, sql: "SELECT count(*) FROM events")!, try Int.fetchOne(db, sql: "SELECT count(*) FROM workspace_meta WHERE key = 'k'")!)
            }
        }
        #expect(events == 0)
        #expect(meta == 0)
        await h.stop()
    }

    @Test("listeners registered for an event type run as jobs, once per event, with the correlation id")
    func listenersRunAsJobs() async throws {
        let seen = Recorder<String>()
        var registry = JobRegistry()
        registry.listen(to: "RunCompleted", as: "notify") { ctx in
            let payload = try ctx.job.decodePayload(EventListenerPayload.self)
            seen.append("\(payload.type)#\(payload.seq)@\(ctx.correlationID ?? "-")")
        }
        let h = try TestHarness(registry: registry)
        let ws = try h.createWorkspace()
        try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in
                try tx.append(DomainEvent(type: "RunCreated", correlationID: "delivery-1"))
                try tx.append(DomainEvent(type: "RunCompleted", correlationID: "delivery-1"))
            }
        }
        h.startScheduler()
        #expect(await eventually { seen.count == 1 })
        try await Task.sleep(for: .milliseconds(100))
        #expect(seen.all == ["RunCompleted#2@delivery-1"])
        await h.stop()
    }

    @Test("a coalescing listener has one queued job for any number of events; once it starts, the next event queues another")
    func coalescingListener() async throws {
        let seen = Recorder<Int64>()
        var registry = JobRegistry()
        registry.listen(to: "UsageRecorded", as: "fold", coalescing: true) { ctx in
            // What a coalescing listener does: work through the log (here: count what it finds).
            let seqs = try await ctx.workspace.read { db in try Int64.fetchAll(db, sql: "SELECT seq FROM events WHERE type = 'UsageRecorded'") }
            for seq in seqs { seen.append(seq) }
        }
        let h = try TestHarness(registry: registry)
        let ws = try h.createWorkspace()
        for _ in 0..<5 {
            try await h.supervisor.withWorkspace(ws) { actor in
                try await actor.write { tx in try tx.append(DomainEvent(type: "UsageRecorded")) }
            }
        }
        let queued = try await h.jobs(in: ws, state: .queued).filter { $0.kind == EventListenerRegistry.jobKind("fold") }
        #expect(queued.count == 1, "five events, one queued job")
        h.startScheduler()
        #expect(await eventually { seen.count == 5 })
        #expect(await eventually { try await h.jobs(in: ws, state: .succeeded).count == 1 })
        try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in try tx.append(DomainEvent(type: "UsageRecorded")) }
        }
        #expect(await eventually { try await h.jobs(in: ws, state: .succeeded).count == 2 }, "the event after the first run queued a second")
        #expect(await eventually { seen.count == 5 + 6 })
        await h.stop()
    }

    @Test("a listener with a condition gets no job while the condition is false")
    func conditionalListener() async throws {
        var registry = JobRegistry()
        // True from the second event on (the appended event is already in the log when it is asked).
        registry.listen(to: "RunCompleted", as: "notify", when: { db in
            try Int.fetchOne(db, sql: "SELECT count(*) FROM events")! >= 2
        }) { _ in }
        let h = try TestHarness(registry: registry)
        let ws = try h.createWorkspace()
        try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in try tx.append(DomainEvent(type: "RunCompleted")) }
        }
        #expect(try await h.jobs(in: ws).isEmpty)
        try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in try tx.append(DomainEvent(type: "RunCompleted")) }
        }
        #expect(try await h.jobs(in: ws).map(\.kind) == [EventListenerRegistry.jobKind("notify")])
        await h.stop()
    }
}

@Suite("Storage")
struct StorageTests {
    @Test("acknowledging commits are durable: synchronous=FULL on control and workspace files, WAL, foreign keys")
    func durablePragmas() async throws {
        let h = try TestHarness(config: SentinelConfig())
        let ws = try h.createWorkspace()
        @Sendable func pragmas(_ db: Database) throws -> (Int, String, Int) {
            (try Int.fetchOne(db, sql: "PRAGMA synchronous")!, try String.fetchOne(db, sql: "PRAGMA journal_mode")!,
             try Int.fetchOne(db, sql: "PRAGMA foreign_keys")!)
        }
        let workspace = try await h.supervisor.withWorkspace(ws) { actor in try await actor.write { tx in try pragmas(tx.db) } }
        for (sync, journal, fk) in [try h.control.write(pragmas), workspace] {
            #expect(sync == 2)
            #expect(journal == "wal")
            #expect(fk == 1)
        }
        await h.stop()
    }

    @Test("writes arriving together share a commit; a failing one does not undo the others")
    func groupCommit() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        let results = try await h.supervisor.withWorkspace(ws) { actor in
            try await withThrowingTaskGroup(of: Bool.self) { group in
                for i in 0..<200 {
                    group.addTask {
                        do {
                            try await actor.write { tx in
                                try tx.db.execute(sql: "INSERT INTO workspace_meta (key, value) VALUES (?, 'v')", arguments: ["k\(i)"])
                                if i % 10 == 0 { throw TestFailure("every tenth write fails") }
                            }
                            return true
                        } catch is TestFailure { return false }
                    }
                }
                var ok = 0
                for try await r in group where r { ok += 1 }
                return ok
            }
        }
        #expect(results == 180)
        let stored = try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM workspace_meta WHERE key LIKE 'k%'")! }
        }
        #expect(stored == 180)
        await h.stop()
    }

    @Test("a failing write alone in its commit leaves nothing behind; a cancelled writer leading a commit fails no write in it")
    func groupCommitLeader() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        @Sendable func insert(_ key: String) -> @Sendable (inout WorkspaceTransaction) throws -> Void {
            { tx in try tx.db.execute(sql: "INSERT INTO workspace_meta (key, value) VALUES (?, 'v')", arguments: [key]) }
        }
        let stored = try await h.supervisor.withWorkspace(ws) { actor in
            // Alone in its batch (no savepoint), a failing body's insert is rolled back with it.
            await #expect(throws: TestFailure.self) {
                try await actor.write { tx in
                    try insert("alone")(&tx)
                    throw TestFailure("fails after its insert")
                }
            }
            // The writer is busy for 400 ms; `leader` arrives first behind it and so commits the
            // next batch, with `follower` in it; `leader` is cancelled while it waits.
            let holder = Task { try await actor.write { _ in usleep(400_000) } }
            try await Task.sleep(for: .milliseconds(100))
            let leader = Task { try await actor.write(insert("leader")) }
            try await Task.sleep(for: .milliseconds(50))
            let follower = Task { try await actor.write(insert("follower")) }
            try await Task.sleep(for: .milliseconds(50))
            leader.cancel()
            try await holder.value
            try await leader.value
            try await follower.value
            return try await actor.read { db in try String.fetchAll(db, sql: "SELECT key FROM workspace_meta WHERE key IN ('alone', 'leader', 'follower') ORDER BY key") }
        }
        #expect(stored == ["follower", "leader"])
        await h.stop()
    }

    @Test("a write queued behind a commit when its file is closed fails as closed, not on the closed handle")
    func writeQueuedAtClose() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        try await h.supervisor.withWorkspace(ws) { actor in
            // The writer is held until the file is closed; `queued` waits behind it. Released only
            // once the actor knows it is closed, so no machine is slow enough to let `queued`
            // commit first (fixed sleeps did, twice, beside a CI run).
            let started = Atomic<Bool>(false)
            let release = DispatchSemaphore(value: 0)
            let holder = Task { try await actor.write { _ in started.store(true, ordering: .relaxed); release.wait() } }
            while !started.load(ordering: .relaxed) { try await Task.sleep(for: .milliseconds(5)) }
            let queued = Task {
                try await actor.write { tx in try tx.db.execute(sql: "INSERT INTO workspace_meta (key, value) VALUES ('late', 'v')") }
            }
            try await Task.sleep(for: .milliseconds(200))
            let closing = Task { await actor.close() }
            while await !actor.isClosed { try await Task.sleep(for: .milliseconds(5)) }
            release.signal()
            try await holder.value
            await closing.value
            await #expect(throws: WorkspaceError.closed(ws)) { try await queued.value }
        }
        await h.stop()
    }

    @Test("a body failing alone in its batch leaves what the actor knows of the pending-work index")
    func failedBodyKeepsIndex() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        // Each enqueue that moves or re-reads the index wakes the scheduler.
        let wakes = Mutex(0)
        h.supervisor.setWorkDueHandler { wakes.withLock { $0 += 1 } }
        let later = Date().addingTimeInterval(3600)
        try await h.supervisor.withWorkspace(ws) { actor in
            _ = try await actor.enqueue(JobRequest(kind: "x", payload: Data(#"{"n":1}"#.utf8), runAt: later))
            #expect(wakes.withLock { $0 } == 1)
            await #expect(throws: TestFailure.self) {
                try await actor.write { _ in throw TestFailure("a validation error, nothing stored") }
            }
            // Due after what the index already says: no read of control.sqlite, no wake. (Had
            // the failure made the actor forget the index, it would read it again and wake.)
            _ = try await actor.enqueue(JobRequest(kind: "x", payload: Data(#"{"n":2}"#.utf8), runAt: later.addingTimeInterval(60)))
            #expect(wakes.withLock { $0 } == 1)
            // A job due earlier moves the index and wakes.
            _ = try await actor.enqueue(JobRequest(kind: "x", payload: Data(#"{"n":3}"#.utf8)))
            #expect(wakes.withLock { $0 } == 2)
        }
        await h.stop()
    }

    @Test("SQLite keeps no memory statistics: its allocations take no process-wide lock")
    func sqliteMemoryStatisticsOff() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        let used = try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in
                try tx.db.execute(sql: "INSERT INTO workspace_meta (key, value) VALUES ('k', ?)", arguments: [String(repeating: "x", count: 10_000)])
            }
            #expect(try await actor.read { db in try String.fetchOne(db, sql: "SELECT value FROM workspace_meta WHERE key = 'k'") }?.count == 10_000)
            // With the statistics on, SQLite counts every byte it holds: an open file's page cache
            // and statements alone are kilobytes.
            return sqlite3_memory_used()
        }
        #expect(used == 0)
        await h.stop()
    }

    @Test("workspace create makes a migrated file and registers it; a half-created file is never listed")
    func workspaceCreation() throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        // Leftover of a creation interrupted by a crash.
        try Data("half".utf8).write(to: h.dataDirectory.workspacesDirectory.appendingPathComponent(".ws_aaaaaaaaaaaaaaaa.creating.sqlite"))
        let record = try h.workspaces.create(name: "acme")
        #expect(try h.workspaces.list().map(\.name) == ["acme"])
        let summary = h.workspaces.summary(record, detailed: true)
        #expect(summary.status == "ok")
        #expect(summary.schemaVersion == DatabaseKind.workspace.knownMigrations.last)
        #expect(FileManager.default.fileExists(atPath: h.dataDirectory.workspaceFile(record.workspaceID!).path))
        #expect(throws: StorageError.self) { try h.workspaces.create(name: "acme") }
        #expect(throws: StorageError.self) { try h.workspaces.create(name: "  ") }
        #expect(try h.workspaces.find("acme").id == record.id)
        #expect(try h.workspaces.find(record.id).name == "acme")
    }

    @Test("the master key is created once, 0600, and seals secrets bound to their context")
    func masterKey() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let data = DataDirectory(path: dir.path)
        try data.prepare()
        let first = try Data(contentsOf: data.masterKeyFile)
        try data.prepare()
        #expect(try Data(contentsOf: data.masterKeyFile) == first)
        let mode = try FileManager.default.attributesOfItem(atPath: data.masterKeyFile.path)[.posixPermissions] as? NSNumber
        #expect(mode?.intValue == 0o600)
        let key = try MasterKey.load(at: data.masterKeyFile)
        let sealed = try key.seal(Data("s3cret".utf8), context: "integration:1:webhook_secret")
        #expect(!String(decoding: sealed, as: UTF8.self).contains("s3cret"))
        #expect(try key.open(sealed, context: "integration:1:webhook_secret") == Data("s3cret".utf8))
        #expect(throws: SecretError.self) { try key.open(sealed, context: "integration:2:webhook_secret") }
    }
}

@Suite("Supervisor")
struct SupervisorTests {
    @Test("at most max_open files stay open; the least recently used closes and reopens transparently")
    func lruEviction() async throws {
        let h = try TestHarness(config: testConfig { $0.workspaces.maxOpen = 2 })
        let a = try h.createWorkspace("a"), b = try h.createWorkspace("b"), c = try h.createWorkspace("c")
        try await h.enqueue(JobRequest(kind: "x", payload: Data(#"{"n":1}"#.utf8)), in: a)
        try await h.enqueue(JobRequest(kind: "x"), in: b)
        #expect(await h.supervisor.openWorkspaceIDs == [a, b].sorted())
        try await h.enqueue(JobRequest(kind: "x"), in: c)
        #expect(await h.supervisor.openWorkspaceIDs == [b, c].sorted())
        // Reopening a is transparent and its data is intact; b (now least recently used) closes.
        let jobs = try await h.jobs(in: a)
        #expect(jobs.count == 1)
        #expect(String(decoding: jobs[0].payload, as: UTF8.self) == #"{"n":1}"#)
        #expect(await h.supervisor.openWorkspaceIDs == [a, c].sorted())
        await h.stop()
    }

    @Test("the eviction order follows the last use, across hundreds of uses of the same files")
    func lruOrderAfterManyUses() async throws {
        let h = try TestHarness(config: testConfig { $0.workspaces.maxOpen = 3 })
        let (a, b, c) = (try h.createWorkspace("a"), try h.createWorkspace("b"), try h.createWorkspace("c"))
        let (d, e) = (try h.createWorkspace("d"), try h.createWorkspace("e"))
        func use(_ id: WorkspaceID) async throws { try await h.supervisor.withWorkspace(id) { _ in } }
        for id in [a, b, c] { try await use(id) }
        // c, opened last, is then the least recently used: a and b are used 150 times each after it.
        for _ in 0..<150 {
            try await use(b)
            try await use(a)
        }
        try await use(d)
        #expect(await h.supervisor.openWorkspaceIDs == [a, b, d].sorted())
        try await use(e)
        #expect(await h.supervisor.openWorkspaceIDs == [a, d, e].sorted())
        try await use(d)
        try await use(c)
        #expect(await h.supervisor.openWorkspaceIDs == [c, d, e].sorted())
        await h.stop()
    }

    @Test("a workspace opened again after eviction is not looked up in control.sqlite again")
    func reopenSkipsRegistrationRead() async throws {
        let h = try TestHarness(config: testConfig { $0.workspaces.maxOpen = 1 })
        let (a, b) = (try h.createWorkspace("a"), try h.createWorkspace("b"))
        for _ in 0..<5 {
            for id in [a, b] { try await h.supervisor.withWorkspace(id) { _ in } }
        }
        #expect(await h.supervisor.registrationReads == 2)
        let unknown = try #require(WorkspaceID("ws_unknown000000000"))
        await #expect(throws: WorkspaceError.self) { try await h.supervisor.withWorkspace(unknown) { _ in } }
        await #expect(throws: WorkspaceError.self) { try await h.supervisor.withWorkspace(unknown) { _ in } }
        #expect(await h.supervisor.registrationReads == 4, "an unknown workspace is looked up each time")
        await h.stop()
    }

    @Test("while it runs, the supervisor closes evicted files itself; pinned again at once they reopen intact; shutdown closes the rest")
    func evictedFilesClosedByRun() async throws {
        let h = try TestHarness(config: testConfig { $0.workspaces.maxOpen = 2 })
        h.startScheduler()
        var ids: [WorkspaceID] = []
        for i in 0..<5 { ids.append(try h.createWorkspace("w\(i)")) }
        var actors: [WorkspaceActor] = []
        let later = Date().addingTimeInterval(3_600)  // nothing for the scheduler to run
        for (i, id) in ids.enumerated() {
            actors.append(try await h.supervisor.withWorkspace(id) { actor in
                _ = try await actor.enqueue(JobRequest(kind: "x", payload: Data(#"{"n":\#(i)}"#.utf8), runAt: later))
                return actor
            })
        }
        #expect(await h.supervisor.openWorkspaceIDs == [ids[3], ids[4]].sorted())
        let evicted = Array(actors.prefix(3))
        #expect(await eventually {
            for actor in evicted where !(await actor.isClosed) { return false }
            return true
        })
        for (i, id) in ids.enumerated() {
            let jobs = try await h.jobs(in: id)
            #expect(jobs.map { String(decoding: $0.payload, as: UTF8.self) } == [#"{"n":\#(i)}"#])
        }
        #expect(await h.supervisor.openWorkspaceIDs.count == 2)
        await h.stop()
        for actor in actors { #expect(await actor.isClosed) }
    }

    @Test("files evicted under churn are closed at most workspaces.max_open / 16 (at least 1) at a time in the background; beyond that the evicting caller closes its victim")
    func backgroundClosesBounded() async throws {
        let h = try TestHarness(config: testConfig { $0.workspaces.maxOpen = 1 })
        h.startScheduler()
        var ids: [WorkspaceID] = []
        for i in 0..<12 { ids.append(try h.createWorkspace("w\(i)")) }
        let workspaces = ids
        let later = Date().addingTimeInterval(3_600)  // nothing for the scheduler to run
        #expect(await eventually { await h.supervisor.closesInBackground })
        // Six callers touching twelve workspaces through an LRU of one: every pin evicts another.
        // Without the limit, run() was closing three or four files at once here.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<6 {
                group.addTask {
                    for round in 0..<20 {
                        let id = workspaces[(task * 5 + round * 7) % workspaces.count]
                        try await h.supervisor.withWorkspace(id) { actor in
                            _ = try await actor.enqueue(JobRequest(kind: "x", payload: Data(#"{"t":\#(task),"r":\#(round)}"#.utf8), runAt: later))
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(await h.supervisor.closeLimit == 1)
        let peak = await h.supervisor.closingPeak
        #expect(peak == 1, "one file closing in the background at a time, saw \(peak)")
        var total = 0
        for id in ids { total += try await h.jobs(in: id).count }
        #expect(total == 120)
        await h.stop()
    }

    @Test("a workspace in use is never evicted")
    func pinnedNotEvicted() async throws {
        let h = try TestHarness(config: testConfig { $0.workspaces.maxOpen = 1 })
        let a = try h.createWorkspace("a"), b = try h.createWorkspace("b")
        let actorA = try await h.supervisor.pin(a)
        _ = try await h.jobs(in: b)
        #expect(await h.supervisor.openWorkspaceIDs.contains(a))
        #expect(try await actorA.jobs().isEmpty)
        await h.supervisor.unpin(a)
        await h.stop()
    }

    @Test("cold opens happen in parallel: many callers of one workspace share one open; other workspaces open alongside")
    func concurrentOpens() async throws {
        let h = try TestHarness(config: testConfig { $0.workspaces.maxOpen = 4 })
        var ids: [WorkspaceID] = []
        for i in 0..<12 { ids.append(try h.createWorkspace("w\(i)")) }
        let workspaces = ids
        let supervisor = h.supervisor
        // 8 callers at once on one cold workspace: one actor, one file handle.
        let actors = try await withThrowingTaskGroup(of: ObjectIdentifier.self) { group in
            for _ in 0..<8 { group.addTask { ObjectIdentifier(try await supervisor.pin(workspaces[0])) } }
            return try await group.reduce(into: Set<ObjectIdentifier>()) { $0.insert($1) }
        }
        #expect(actors.count == 1)
        for _ in 0..<8 { await supervisor.unpin(workspaces[0]) }
        // A caller cancelled while it opens a file fails none of the callers waiting for that open.
        let cold = workspaces[1]
        let cancelled = Task { try await supervisor.pin(cold) }
        cancelled.cancel()
        let others = try await withThrowingTaskGroup(of: ObjectIdentifier.self) { group in
            for _ in 0..<6 { group.addTask { ObjectIdentifier(try await supervisor.pin(cold)) } }
            return try await group.reduce(into: Set<ObjectIdentifier>()) { $0.insert($1) }
        }
        #expect(others.count == 1)
        if (try? await cancelled.value) != nil { await supervisor.unpin(cold) }
        for _ in 0..<6 { await supervisor.unpin(cold) }
        // Every workspace at once, more than the LRU holds: all succeed, the LRU settles at its size.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (i, id) in workspaces.enumerated() {
                group.addTask { try await supervisor.withWorkspace(id) { actor in
                    _ = try await actor.enqueue(JobRequest(kind: "x", payload: Data(#"{"n":\#(i)}"#.utf8)))
                } }
            }
            try await group.waitForAll()
        }
        #expect(await supervisor.openWorkspaceIDs.count <= 4)
        for id in workspaces { #expect(try await h.jobs(in: id).count == 1) }
        await h.stop()
    }

    @Test("idle workspaces are closed")
    func idleClose() async throws {
        let h = try TestHarness(config: testConfig { $0.workspaces.idleCloseSeconds = 0 })
        let a = try h.createWorkspace("a")
        _ = try await h.jobs(in: a)
        #expect(await h.supervisor.openWorkspaceIDs == [a])
        await h.supervisor.closeIdle()
        #expect(await h.supervisor.openWorkspaceIDs.isEmpty)
        await h.stop()
    }

    @Test("a corrupt or missing file takes only its own workspace offline")
    func corruptFileIsolation() async throws {
        let ran = Recorder<String>()
        var registry = JobRegistry()
        registry.register("j") { ctx in ran.append(ctx.workspaceID.rawValue) }
        let h = try TestHarness(registry: registry)
        let broken = try h.createWorkspace("broken"), missing = try h.createWorkspace("missing"), healthy = try h.createWorkspace("healthy")
        try await h.enqueue(JobRequest(kind: "j"), in: broken)
        try await h.enqueue(JobRequest(kind: "j"), in: healthy)
        await h.supervisor.shutdown()  // close every file, as after a restart

        let h2 = try TestHarness(registry: registry, reusing: h)
        try Data(repeating: 0x5A, count: 8192).write(to: h2.dataDirectory.workspaceFile(broken))
        try FileManager.default.removeItem(at: h2.dataDirectory.workspaceFile(missing))
        await #expect { try await h2.jobs(in: broken) } throws: { error in
            guard case WorkspaceError.offline(_, let reason, _) = error else { return false }
            return reason.contains("corrupt")
        }
        await #expect { try await h2.jobs(in: missing) } throws: { error in
            guard case WorkspaceError.offline(_, let reason, _) = error else { return false }
            return reason.contains("missing")
        }
        // A missing file is reported, never silently re-created empty.
        #expect(!FileManager.default.fileExists(atPath: h2.dataDirectory.workspaceFile(missing).path))
        h2.startScheduler()
        #expect(await eventually { ran.all.contains(healthy.rawValue) })
        #expect(await eventually { try await h2.jobs(in: healthy, state: .succeeded).count == 1 })
        #expect(await h2.supervisor.offlineWorkspaceIDs.contains(broken))
        #expect(h2.log.text.contains("workspace offline"))
        #expect(h2.log.text.contains(broken.rawValue))
        await h2.stop()
    }

    @Test("identifiers are random version 4 UUIDs from getrandom, never Foundation's nil UUID when descriptors run out")
    func randomUUIDs() throws {
        let made = (0..<2_000).map { _ in RandomIdentifier.uuid() }
        #expect(Set(made).count == made.count)
        let pattern = try Regex("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
        #expect(made.allSatisfy { $0.wholeMatch(of: pattern) != nil }, "\(made.prefix(3))")
        #expect(!made.contains("00000000-0000-4000-8000-000000000000"))
    }

    @Test("the pending-work index tells the scheduler which workspaces have due work")
    func pendingWorkIndex() async throws {
        var registry = JobRegistry()
        registry.register("now") { _ in }
        let h = try TestHarness(registry: registry)
        let a = try h.createWorkspace("a"), b = try h.createWorkspace("b")
        #expect(try h.control.dueWorkspaces(now: Date(), after: nil, limit: 10).isEmpty)
        try await h.enqueue(JobRequest(kind: "later", runAt: Date().addingTimeInterval(3600)), in: b)
        #expect(try h.control.dueWorkspaces(now: Date(), after: nil, limit: 10).isEmpty, "b's job is due in an hour")
        #expect(try h.control.dueWorkspaces(now: Date().addingTimeInterval(3601), after: nil, limit: 10) == [b])
        try await h.enqueue(JobRequest(kind: "now"), in: a)
        #expect(try h.control.dueWorkspaces(now: Date(), after: nil, limit: 10) == [a])
        h.startScheduler()
        #expect(await eventually { try await h.jobs(in: a, state: .succeeded).count == 1 })
        // Once a's queue is empty its index entry goes; b's stays with its future due time.
        #expect(await eventually { try h.control.dueEntry(a) == nil })
        #expect(try h.control.dueEntry(b) != nil)
        await h.stop()
    }
}
