import Foundation
import Logging
import NIOPosix
import ServiceLifecycle

/// Runs the analytics export once a day at `export.time` (UTC) while the appliance serves. A
/// failed export is logged and retried at the next slot; the watermarks make a missed night
/// harmless (the next dump carries everything since).
public struct NightlyExportService: Service {
    let exporter: AnalyticsExporter
    let hour: Int
    let minute: Int
    let logger: Logger
    let metrics: SentinelMetrics
    let supervisor: Supervisor?
    /// Where a failed export is told (`ExportFailed`, notified to channels subscribed to `export.failed`): `export.notify_workspace`.
    let notifyWorkspace: WorkspaceID?

    public init(exporter: AnalyticsExporter, config: SentinelConfig.Export, logger: Logger, metrics: SentinelMetrics = SentinelMetrics(),
                supervisor: Supervisor? = nil) {
        self.exporter = exporter
        self.metrics = metrics
        (hour, minute) = config.clock ?? (2, 0)
        self.logger = logger
        self.supervisor = supervisor
        self.notifyWorkspace = config.notifyWorkspace.flatMap { WorkspaceID($0) }
    }

    /// The first slot strictly after `date`.
    public static func nextRun(after date: Date, hour: Int, minute: Int) -> Date {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar.nextDate(after: date, matching: DateComponents(hour: hour, minute: minute, second: 0),
                                 matchingPolicy: .nextTime) ?? date.addingTimeInterval(86_400)
    }

    public func run() async throws {
        while !Task.isCancelled {
            let next = Self.nextRun(after: Date(), hour: hour, minute: minute)
            logger.debug("next analytics export", metadata: ["at": "\(next)"])
            do {
                try await cancelWhenGracefulShutdown {
                    try await Task.sleep(for: .seconds(max(0, next.timeIntervalSinceNow)))
                }
            } catch {
                return  // shutting down
            }
            await exportOnce()
        }
    }

    /// One export, as the nightly slot runs it: a failure (or workspaces left out) is logged and,
    /// with `export.notify_workspace` set, appended there as `ExportFailed`.
    public func exportOnce() async {
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
            if let first = failed.first {
                await tell("\(failed.count) workspace(s) not fully exported (the rest waits for the next export), first \(first.workspaceID): \(first.error!)")
            }
        } catch {
            metrics.export(duration: ContinuousClock.now - started, rows: 0, outcome: "failed")
            logger.error("analytics export failed; the next one will carry its events", metadata: ["error": "\(error)"])
            await tell("\(error)")
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
