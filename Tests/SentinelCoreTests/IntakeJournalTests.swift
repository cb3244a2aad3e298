import Foundation
import GRDB
import Logging
import Metrics
import MetricsTestKit
@testable import SentinelCore
import SentinelTestSupport
import Testing

/// The shared write-ahead journal of webhook intake (issue 18): what it acknowledges reaches the
/// workspace file exactly once, after a restart too; a deleted workspace's deliveries go; a
/// workspace that cannot be written keeps them; backups hold them.
@Suite("intake journal")
struct IntakeJournalTests {
    static let integration = IntegrationID("int_journaltest00001")!

    static func delivery(_ id: String, action: String = "opened", settled: String? = nil, at seconds: Double = 1_700_000_000) -> IncomingDelivery {
        IncomingDelivery(deliveryID: id, integrationID: integration, event: "pull_request", action: action, body: body(action),
                                correlationID: id, settled: settled, receivedAt: Date(timeIntervalSince1970: seconds))
    }

    static func body(_ action: String) -> Data {
        Data(#"{"action":"\#(action)","number":7,"padding":"\#(String(repeating: "x", count: 2_000))"}"#.utf8)
    }

    /// The journal of the harness's data directory (its `run()` is not running: tests apply it themselves).
    static func journal(_ h: TestHarness, metrics: SentinelMetrics = SentinelMetrics(), roundPause: Duration = .zero) throws -> IntakeJournal {
        try IntakeJournal(dataDirectory: h.dataDirectory, opener: DatabaseOpener(config: h.config), supervisor: h.supervisor,
                          logger: Logger.sentinel(label: "test", level: "debug", sink: h.log.sink), metrics: metrics, roundPause: roundPause)
    }

    /// Runs `body` while the journal's `run()` applies in the background, then stops it.
    static func whileRunning(_ journal: IntakeJournal, _ body: () async throws -> Void) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await journal.run() }
            try await body()
            group.cancelAll()
        }
    }

    struct StoredDelivery: Sendable {
        var id: String
        var receivedAt: Double
        var processedAt: Double?
        var outcome: String?
        var body: Data
    }

    struct StoredJob: Sendable {
        var kind: String
        var idempotencyKey: String?
        var correlationID: String?
    }

    static func stored(_ h: TestHarness, _ ws: WorkspaceID) async throws -> (deliveries: [StoredDelivery], jobs: [StoredJob]) {
        try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.read { db in
                (try Row.fetchAll(db, sql: "SELECT id, received_at, processed_at, outcome, payload, payload_encoding, payload_bytes FROM deliveries ORDER BY id")
                    .map { StoredDelivery(id: $0["id"], receivedAt: $0["received_at"], processedAt: $0["processed_at"], outcome: $0["outcome"],
                                          body: try DeliveryPayload.body(of: $0)) },
                 try Row.fetchAll(db, sql: "SELECT kind, idempotency_key, correlation_id FROM jobs ORDER BY id")
                    .map { StoredJob(kind: $0["kind"], idempotencyKey: $0["idempotency_key"], correlationID: $0["correlation_id"]) })
            }
        }
    }

    @Test("an intake journal emptied by hand, or without its table, is refused when opened and named by doctor and verify (it was set up anew, the deliveries it had acknowledged gone without a word)")
    func damagedJournalRefused() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let ws = try h.createWorkspace()
        let file = h.dataDirectory.intakeJournalFile
        do {
            let journal = try Self.journal(h)
            #expect(try await journal.append(Self.delivery("d1"), for: ws) == .accepted)
        }
        // Made whole and moved into place: nothing is left beside it from its making.
        #expect(!FileManager.default.fileExists(atPath: h.dataDirectory.root.appendingPathComponent(".intake-journal.sqlite.new").path))
        func refused(_ words: String) throws {
            #expect { try Self.journal(h) } throws: { "\($0)".contains(words) && "\($0)".contains("may be lost") }
            let report = DataVerifier.verify(dataDirectory: h.dataDirectory)
            #expect(report.problems.contains { $0.file == "intake-journal.sqlite" && $0.check == "schema" }, "\(report.problems)")
            var doctor = Doctor(dataDirectory: h.dataDirectory, config: h.config, now: Date(), freeSpace: { _ in 1 << 40 })
            doctor.environment = [:]
            let found = doctor.run().findings.filter { $0.check == "intake-journal" }
            #expect(found.count == 1 && found.first?.severity == .error, "\(found)")
        }
        // Emptied: not set up as a new journal, and nothing written to it.
        for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: file.path + suffix) }
        try Data().write(to: file)
        try refused("holds no Sentinel schema")
        #expect(try Data(contentsOf: file).isEmpty)
        // Its table dropped.
        try FileManager.default.removeItem(at: file)
        _ = try Self.journal(h)
        let dropper = try DatabaseQueue(path: file.path)
        try await dropper.write { db in try db.execute(sql: "DROP TABLE journal") }
        try dropper.close()
        try refused("lacks the table(s) journal")
        // A -wal left without its journal (moved aside without it): not taken into a new journal.
        try FileManager.default.removeItem(at: file)
        for suffix in ["-shm"] { try? FileManager.default.removeItem(atPath: file.path + suffix) }
        try Data(repeating: 1, count: 4096).write(to: URL(fileURLWithPath: file.path + "-wal"))
        #expect { try Self.journal(h) } throws: { "\($0)".contains("intake-journal.sqlite-wal is there without intake-journal.sqlite") }
        #expect(!FileManager.default.fileExists(atPath: file.path))
        try FileManager.default.removeItem(atPath: file.path + "-wal")
        // A journal without its table is not read as an empty one by a backup.
        _ = try Self.journal(h)
        let dropTable = try DatabaseQueue(path: file.path)
        try await dropTable.write { db in try db.execute(sql: "DROP TABLE journal") }
        try dropTable.close()
        #expect { try IntakeJournal.deliveries(for: ws, in: h.dataDirectory) } throws: { "\($0)".contains("holds no journal table") }
        // Its header overwritten: said with the same fix (serve stopped on "file is not a database").
        try Data(repeating: 0x41, count: 4096).write(to: file)
        #expect { try Self.journal(h) } throws: { "\($0)".contains("is damaged") && "\($0)".contains("Litestream replica") }
    }

    @Test("acknowledged deliveries survive a restart and reach the workspace file once, with their arrival time; a redelivery changes nothing")
    func appliedAfterRestart() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        let first = try Self.journal(h)
        #expect(!first.holdsDeliveries(for: ws))
        #expect(try await first.append(Self.delivery("d1", at: 1_700_000_001), for: ws) == .accepted)
        #expect(try await first.append(Self.delivery("d2", action: "labeled", settled: "ignored_action", at: 1_700_000_002), for: ws) == .accepted)
        #expect(try await first.append(Self.delivery("d1"), for: ws) == .duplicate)
        #expect(first.holdsDeliveries(for: ws))
        // Nothing is in the workspace file yet.
        #expect(try await Self.stored(h, ws).deliveries.isEmpty)

        // Another process start: the journal read back from its file.
        let second = try Self.journal(h)
        #expect(second.holdsDeliveries(for: ws))
        #expect(try await second.entries().map(\.delivery.deliveryID) == ["d1", "d2"])
        #expect(await second.applyPending() == 2)
        #expect(try await second.entries().isEmpty)
        #expect(!second.holdsDeliveries(for: ws))
        let (deliveries, jobs) = try await Self.stored(h, ws)
        #expect(deliveries.map(\.id) == ["d1", "d2"])
        #expect(deliveries.map(\.receivedAt) == [1_700_000_001, 1_700_000_002])
        #expect(deliveries.first?.processedAt == nil)
        #expect(deliveries.last?.outcome == "ignored_action")
        #expect(deliveries.first?.body == Self.body("opened"))
        #expect(jobs.count == 1)
        #expect(jobs.first?.kind == DeliveryIntake.jobKind)
        #expect(jobs.first?.idempotencyKey == "delivery:d1")
        #expect(jobs.first?.correlationID == "d1")

        // The first journal's view of the file is stale: applying again changes nothing.
        #expect(await first.applyPending() == 0)
        // A redelivery after it was applied goes through the journal again and changes nothing.
        #expect(try await second.append(Self.delivery("d1"), for: ws) == .accepted)
        #expect(await second.applyPending() == 1)
        let after = try await Self.stored(h, ws)
        #expect(after.deliveries.count == 2 && after.jobs.count == 1)
        await h.stop()
    }

    @Test("under sustained intake the applier's rounds of settled deliveries are at least the pause apart, each taking what arrived meanwhile")
    func roundsPauseUnderLoad() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        let journal = try Self.journal(h, roundPause: .milliseconds(400))
        try await Self.whileRunning(journal) {
            for n in 1...30 {
                #expect(try await journal.append(Self.delivery("d\(n)", action: "labeled", settled: "ignored_action"), for: ws) == .accepted)
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(await eventually { !journal.holdsDeliveries(for: ws) })
        }
        #expect(try await Self.stored(h, ws).deliveries.count == 30)
        // Back to back, each delivery made a round of its own (an open and a durable commit of
        // the file each), 20 ms or so apart. With the pause, rounds end at least 400 ms apart
        // (their log lines' times, to the millisecond), however slowly the appends went.
        let format = ISO8601DateFormatter()
        format.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let ends = h.log.all.filter { $0.contains("intake journal round") }.compactMap { line -> Date? in
            guard let range = line.range(of: #""time":"[^"]+""#, options: .regularExpression) else { return nil }
            return format.date(from: String(line[range].dropFirst(8).dropLast()))
        }
        #expect(!ends.isEmpty)
        let gaps = zip(ends, ends.dropFirst()).map { $1.timeIntervalSince($0) }
        #expect(gaps.allSatisfy { $0 >= 0.395 }, "gaps between rounds: \(gaps)")
        await h.stop()
    }

    @Test("a delivery with a job (a review's trigger) ends the pause: applied at once, with what waits behind it")
    func jobDeliveryNotPaused() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        let journal = try Self.journal(h, roundPause: .seconds(120))
        try await Self.whileRunning(journal) {
            // The first round is at once; the next settled one would wait two minutes.
            #expect(try await journal.append(Self.delivery("d1", action: "labeled", settled: "ignored_action"), for: ws) == .accepted)
            #expect(await eventually { !journal.holdsDeliveries(for: ws) })
            #expect(try await journal.append(Self.delivery("d2", action: "labeled", settled: "ignored_action"), for: ws) == .accepted)
            // The applier is in its pause by now (or d3 joins d2's round, which then starts at once).
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await journal.append(Self.delivery("d3"), for: ws) == .accepted)
            #expect(await eventually(timeout: .seconds(60)) { !journal.holdsDeliveries(for: ws) })
        }
        let (deliveries, jobs) = try await Self.stored(h, ws)
        #expect(deliveries.map(\.id) == ["d1", "d2", "d3"])
        #expect(jobs.count == 1)
        await h.stop()
    }

    @Test("applied deliveries leave the journal in transactions of at most 256, so appends arriving meanwhile are not held behind one removal")
    func removalInChunks() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        let recorded = TestMetrics()
        let journal = try Self.journal(h, metrics: SentinelMetrics(factory: recorded))
        for n in 1...600 {
            _ = try await journal.append(Self.delivery("d\(n)", action: "labeled", settled: "ignored_action"), for: ws)
        }
        #expect(await journal.applyPending() == 600)
        #expect(try await journal.entries().isEmpty)
        // The gauge follows each removal's commit: 600 → 344 → 88 → 0 (one transaction: 600 → 0).
        let values = try recorded.expectGauge("sentinel_intake_journal_deliveries").values
        let afterApplying = Array(values.drop { $0 < 600 })
        #expect(afterApplying == [600, 344, 88, 0], "\(afterApplying)")
        await h.stop()
    }

    @Test("sentinel_intake_journal_deliveries follows what the journal holds: appends, duplicates, discarding, a restart, applying")
    func gauge() async throws {
        let h = try TestHarness()
        let (a, b) = (try h.createWorkspace(), try h.createWorkspace())
        func value(_ recorded: TestMetrics) throws -> Double? { try recorded.expectGauge("sentinel_intake_journal_deliveries").lastValue }
        let first = TestMetrics()
        let journal1 = try Self.journal(h, metrics: SentinelMetrics(factory: first))
        #expect(try value(first) == 0)
        _ = try await journal1.append(Self.delivery("d1"), for: a)
        _ = try await journal1.append(Self.delivery("d1"), for: a)
        _ = try await journal1.append(Self.delivery("d2"), for: b)
        #expect(try value(first) == 2)
        try await journal1.discard(b)
        #expect(try value(first) == 1)
        let second = TestMetrics()
        let journal2 = try Self.journal(h, metrics: SentinelMetrics(factory: second))
        #expect(try value(second) == 1)
        #expect(await journal2.applyPending() == 1)
        #expect(try value(second) == 0)
        await h.stop()
    }

    @Test("a deleted workspace's deliveries are discarded, by the applier and by discard")
    func deletedWorkspaceDiscarded() async throws {
        let h = try TestHarness()
        let (gone, other) = (try h.createWorkspace(), try h.createWorkspace())
        let journal = try Self.journal(h)
        _ = try await journal.append(Self.delivery("d-gone"), for: gone)
        _ = try await journal.append(Self.delivery("d-other"), for: other)
        _ = try await h.supervisor.deleteWorkspace(gone, using: h.workspaces, by: "test")
        #expect(await journal.applyPending() == 1)
        #expect(try await journal.entries().isEmpty)
        #expect(!journal.holdsDeliveries(for: gone))
        #expect(h.log.text.contains("deliveries for a deleted workspace discarded"))
        #expect(try await Self.stored(h, other).deliveries.count == 1)

        _ = try await journal.append(Self.delivery("d-later"), for: other)
        try await journal.discard(other)
        #expect(try await journal.entries().isEmpty)
        #expect(!journal.holdsDeliveries(for: other))
        await h.stop()
    }

    @Test("deliveries for a workspace that cannot be opened stay in the journal, and are applied once it can")
    func unavailableWorkspaceKept() async throws {
        var config = testConfig()
        config.workspaces.offlineRetrySeconds = 0
        let h = try TestHarness(config: config)
        let ws = try h.createWorkspace()
        let file = h.dataDirectory.workspaceFile(ws)
        let aside = file.appendingPathExtension("aside")
        try FileManager.default.moveItem(at: file, to: aside)
        let journal = try Self.journal(h)
        _ = try await journal.append(Self.delivery("d1"), for: ws)
        #expect(await journal.applyPending() == 0)
        #expect(try await journal.entries().count == 1)
        #expect(journal.holdsDeliveries(for: ws))
        #expect(h.log.text.contains("cannot apply to workspace yet"))

        try FileManager.default.moveItem(at: aside, to: file)
        #expect(await journal.applyPending() == 1)
        #expect(!journal.holdsDeliveries(for: ws))
        #expect(try await Self.stored(h, ws).deliveries.count == 1)
        await h.stop()
    }

    @Test("a backup of a workspace holds the deliveries still in the journal, with their jobs")
    func backupHoldsJournalled() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        let journal = try Self.journal(h)
        _ = try await journal.append(Self.delivery("d-backup"), for: ws)
        let destination = h.directory.url.appendingPathComponent("backup-\(UUID().uuidString)")
        let manifest = try BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener(config: h.config))
            .backup(to: destination, workspace: ws, control: h.control)
        let copy = destination.appendingPathComponent(try #require(manifest.files.first).file)
        let queue = try DatabaseQueue(path: copy.path)
        let (deliveries, jobs) = try await queue.read { db in
            (try String.fetchAll(db, sql: "SELECT id FROM deliveries"), try String.fetchAll(db, sql: "SELECT idempotency_key FROM jobs"))
        }
        try queue.close()
        #expect(deliveries == ["d-backup"])
        #expect(jobs == ["delivery:d-backup"])
        // The journal itself is untouched: the server still applies it to the live file.
        #expect(try await journal.entries().count == 1)
        await h.stop()
    }
}
