import Foundation
import Logging
import NIOPosix
import ServiceLifecycle

/// Runs the analytics export once a day at `export.time` (UTC) while the appliance serves. A slot
/// missed while the appliance was down (its last export older than the last slot) is caught up
/// shortly after start; a failed export is tried again after 5, 15 and 60 minutes (never past the
/// next slot), and only a failure with no retry left is told to `export.notify_workspace`. The
/// watermarks make a missed night harmless either way: the next dump carries everything since.
public struct NightlyExportService: Service {
    let exporter: AnalyticsExporter
    let hour: Int
    let minute: Int
    let logger: Logger
    let metrics: SentinelMetrics
    let supervisor: Supervisor?
    /// Where a failed export is told (`ExportFailed`, notified to channels subscribed to `export.failed`): `export.notify_workspace`.
    let notifyWorkspace: WorkspaceID?
    /// The newest export's manifests: `data/exports`.
    let exportsDirectory: URL
    /// Waits before the tries after a failed export.
    let retryDelays: [Duration]
    /// The wait after start before a missed slot is caught up (the appliance settles first).
    let catchUpDelay: Duration

    public init(exporter: AnalyticsExporter, config: SentinelConfig.Export, logger: Logger, metrics: SentinelMetrics = SentinelMetrics(),
                supervisor: Supervisor? = nil, retryDelays: [Duration] = [.seconds(300), .seconds(900), .seconds(3600)],
                catchUpDelay: Duration = .seconds(30)) {
        self.exporter = exporter
        self.metrics = metrics
        (hour, minute) = config.clock ?? (2, 0)
        self.logger = logger
        self.supervisor = supervisor
        self.notifyWorkspace = config.notifyWorkspace.flatMap { WorkspaceID($0) }
        self.exportsDirectory = exporter.dataDirectory.exportsDirectory
        self.retryDelays = retryDelays
        self.catchUpDelay = catchUpDelay
    }

    /// The first slot strictly after `date`.
    public static func nextRun(after date: Date, hour: Int, minute: Int) -> Date {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar.nextDate(after: date, matching: DateComponents(hour: hour, minute: minute, second: 0),
                                 matchingPolicy: .nextTime) ?? date.addingTimeInterval(86_400)
    }

    /// The slot a start at `now` missed: the last slot at or before `now`, when the last export
    /// (`lastExport`) was written before it. Nil when nothing was missed, and on a data directory
    /// that never exported (its first slot does).
    public static func missedSlot(now: Date, lastExport: Date?, hour: Int, minute: Int) -> Date? {
        guard let lastExport else { return nil }
        let lastSlot = nextRun(after: now.addingTimeInterval(-86_400), hour: hour, minute: minute)
        return lastSlot <= now && lastExport < lastSlot ? lastSlot : nil
    }

    public func run() async throws {
        let lastExport = AnalyticsExporter.latestManifest(in: exportsDirectory).flatMap { ISO8601.date($0.createdAt) }
        var next: ContinuousClock.Instant
        if let missed = Self.missedSlot(now: Date(), lastExport: lastExport, hour: hour, minute: minute) {
            logger.info("the analytics export of the last slot was missed (the appliance was not running); exporting shortly",
                        metadata: ["slot": "\(ISO8601.string(missed))", "last_export": "\(lastExport.map(ISO8601.string) ?? "-")"])
            next = .now + catchUpDelay
        } else {
            next = Self.instant(of: Self.nextRun(after: Date(), hour: hour, minute: minute))
        }
        var failures = 0
        while !Task.isCancelled {
            do {
                let wakeAt = next
                try await cancelWhenGracefulShutdown { try await Task.sleep(until: wakeAt, clock: .continuous) }
            } catch {
                return  // shutting down
            }
            // A minute on: a wake-up a little before the slot (the monotonic clock against a wall
            // clock NTP slews, over a day's sleep) must not schedule that same slot again.
            let slot = Self.instant(of: Self.nextRun(after: Date().addingTimeInterval(60), hour: hour, minute: minute))
            // The next try after a failure, unless none is left or the next slot comes first: then
            // the failure is told.
            var retry: ContinuousClock.Instant?
            if failures < retryDelays.count, ContinuousClock.now + retryDelays[failures] < slot { retry = .now + retryDelays[failures] }
            if await exportOnce(tell: retry == nil) {
                failures = 0
                next = slot
            } else if let retry {
                logger.info("analytics export tried again later", metadata: ["in_seconds": "\(retryDelays[failures].components.seconds)"])
                failures += 1
                next = retry
            } else {
                failures = 0
                next = slot
            }
        }
    }

    private static func instant(of date: Date) -> ContinuousClock.Instant {
        .now + .milliseconds(Int64(max(0, date.timeIntervalSinceNow) * 1000))
    }

    /// One export, as the nightly slot runs it: a failure (or workspaces left out) is logged and,
    /// when `tell` and `export.notify_workspace` is set, appended there as `ExportFailed`. True
    /// when every workspace was exported.
    @discardableResult
    public func exportOnce(tell: Bool = true) async -> Bool {
        let exporter = self.exporter
        let started = ContinuousClock.now
        do {
            let manifest = try await NIOThreadPool.singleton.runIfActive { try exporter.export() }  // blocking file and SQLite work
            let failed = manifest.workspaces.filter { $0.error != nil }
            // A dump with workspaces left out is written, but the export did not do its whole job.
            metrics.export(duration: ContinuousClock.now - started, rows: manifest.events, outcome: failed.isEmpty ? "ok" : "failed")
            logger.info("analytics export written", metadata: ["file": "\(manifest.file)", "events": "\(manifest.events)"])
            for part in failed {
                logger.warning("workspace not fully exported; the rest waits", metadata: [
                    "workspace": "\(part.workspaceID)", "to_seq": "\(part.toSeq)", "error": "\(part.error!)"])
            }
            if let first = failed.first, tell {
                await self.tell("\(failed.count) workspace(s) not fully exported (the rest waits for the next export), first \(first.workspaceID): \(first.error!)")
            }
            return failed.isEmpty
        } catch {
            metrics.export(duration: ContinuousClock.now - started, rows: 0, outcome: "failed")
            logger.error("analytics export failed; the next one will carry its events", metadata: ["error": "\(error)"])
            if tell { await self.tell("\(error)") }
            return false
        }
    }

    private func tell(_ reason: String) async {
        guard let supervisor, let notifyWorkspace else { return }
        do {
            _ = try await supervisor.withWorkspace(notifyWorkspace) { actor in
                try await actor.write { tx in
                    try tx.append(DomainEvent(type: "ExportFailed", subject: "export", payload: ["reason": String(StoredText.singleLine(reason).prefix(300))]))
                }
            }
        } catch {
            logger.error("the failed export could not be told to export.notify_workspace", metadata: ["workspace": "\(notifyWorkspace)", "error": "\(error)"])
        }
    }
}
