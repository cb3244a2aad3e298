import Foundation
import GRDB
import Logging
@testable import SentinelCore
import SentinelTestSupport
import Testing

/// The exports run on NIO's shared thread pool, which the rest of a parallel test run keeps busy:
/// the waits below are long, and end as soon as what they wait for is there.
@Suite("Nightly export: missed slots and retries")
struct NightlyExportTests {
    static func utc(_ text: String) -> Date { ISO8601.date(text)! }

    @Test("a start after a slot the last export predates has missed it; an export after the last slot, or none ever, has not")
    func missedSlot() {
        let now = Self.utc("2026-12-05T10:00:00.000Z")
        #expect(NightlyExportService.missedSlot(now: now, lastExport: Self.utc("2026-12-03T02:00:04.000Z"), hour: 2, minute: 0)
                == Self.utc("2026-12-05T02:00:00.000Z"))
        #expect(NightlyExportService.missedSlot(now: now, lastExport: Self.utc("2026-12-05T02:00:04.000Z"), hour: 2, minute: 0) == nil)
        #expect(NightlyExportService.missedSlot(now: now, lastExport: nil, hour: 2, minute: 0) == nil, "a data directory that never exported")
        // Before today's slot: yesterday's is the last one.
        #expect(NightlyExportService.missedSlot(now: now, lastExport: Self.utc("2026-12-04T12:00:00.000Z"), hour: 11, minute: 30) == nil)
        #expect(NightlyExportService.missedSlot(now: now, lastExport: Self.utc("2026-12-04T09:00:00.000Z"), hour: 11, minute: 30)
                == Self.utc("2026-12-04T11:30:00.000Z"))
        #expect(NightlyExportService.missedSlot(now: now, lastExport: Self.utc("2026-12-04T09:00:00.000Z"), hour: 9, minute: 30)
                == Self.utc("2026-12-05T09:30:00.000Z"))
        #expect(NightlyExportService.missedSlot(now: now, lastExport: Self.utc("2026-12-04T10:00:00.000Z"), hour: 10, minute: 0)
                == Self.utc("2026-12-05T10:00:00.000Z"), "a slot exactly now")
    }

    static func manifests(_ h: TestHarness) throws -> Int {
        try FileManager.default.contentsOfDirectory(atPath: h.dataDirectory.exportsDirectory.path).filter { $0.hasSuffix(".manifest.json") }.count
    }

    static func exportFailures(_ h: TestHarness, _ ws: WorkspaceID) async throws -> Int {
        try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM events WHERE type = 'ExportFailed'") ?? 0 }
        }
    }

    @Test("the slot missed while the appliance was down is exported shortly after start; a failed export is tried again and, when a try succeeds, nothing is told")
    func catchUpAndRetry() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace("acme")
        try await h.supervisor.withWorkspace(ws) { try await ActivityGenerator.write(into: $0, seed: 1, days: 1, runsPerDay: 2) }
        let exporter = AnalyticsExporter(dataDirectory: h.dataDirectory, control: h.control, opener: DatabaseOpener(config: h.config))
        // The last export three days ago; the slot an hour ago.
        try exporter.export(now: Date().addingTimeInterval(-3 * 86_400))
        #expect(try Self.manifests(h) == 1)
        var config = SentinelConfig.Export()
        let slot = Calendar(identifier: .gregorian).dateComponents(in: TimeZone(identifier: "UTC")!, from: Date().addingTimeInterval(-3_600))
        config.time = String(format: "%02d:%02d", slot.hour!, slot.minute!)
        config.notifyWorkspace = ws.rawValue
        // Another export holds the lock: the catch-up fails until it is released.
        var lock = try FileLock.tryAcquire(h.dataDirectory.exportLockFile)
        #expect(lock != nil)
        let log = CapturedLog()
        let service = NightlyExportService(exporter: exporter, config: config, logger: Logger.sentinel(level: "info", sink: log.sink),
                                           supervisor: h.supervisor, retryDelays: Array(repeating: .milliseconds(200), count: 50), catchUpDelay: .zero)
        let running = Task { try await service.run() }
        #expect(await eventually(timeout: .seconds(120)) { log.text.contains("analytics export tried again later") }, "\(log.text)")
        #expect(log.text.contains("the analytics export of the last slot was missed"))
        #expect(try Self.manifests(h) == 1)
        lock = nil
        #expect(await eventually(timeout: .seconds(120)) { try Self.manifests(h) == 2 })
        running.cancel()
        try await running.value
        #expect(try await Self.exportFailures(h, ws) == 0, "a failure a later try made good is not told")
        await h.stop()
        h.directory.cleanup()
    }

    @Test("an export that fails on every try is told once, when no try is left before the next slot")
    func lastFailureTold() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace("acme")
        let exporter = AnalyticsExporter(dataDirectory: h.dataDirectory, control: h.control, opener: DatabaseOpener(config: h.config))
        try exporter.export(now: Date().addingTimeInterval(-3 * 86_400))
        var config = SentinelConfig.Export()
        let slot = Calendar(identifier: .gregorian).dateComponents(in: TimeZone(identifier: "UTC")!, from: Date().addingTimeInterval(-3_600))
        config.time = String(format: "%02d:%02d", slot.hour!, slot.minute!)
        config.notifyWorkspace = ws.rawValue
        let lock = try FileLock.tryAcquire(h.dataDirectory.exportLockFile)
        let log = CapturedLog()
        let service = NightlyExportService(exporter: exporter, config: config, logger: Logger.sentinel(level: "info", sink: log.sink),
                                           supervisor: h.supervisor, retryDelays: [.milliseconds(50), .milliseconds(50)], catchUpDelay: .zero)
        let running = Task { try await service.run() }
        #expect(await eventually(timeout: .seconds(120)) { try await Self.exportFailures(h, ws) == 1 })
        #expect(log.text.components(separatedBy: "analytics export failed").count - 1 == 3, "three tries: \(log.text)")
        running.cancel()
        try await running.value
        #expect(try await Self.exportFailures(h, ws) == 1)
        withExtendedLifetime(lock) {}
        await h.stop()
        h.directory.cleanup()
    }
}
