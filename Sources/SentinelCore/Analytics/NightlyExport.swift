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

    public init(exporter: AnalyticsExporter, config: SentinelConfig.Export, logger: Logger, metrics: SentinelMetrics = SentinelMetrics()) {
        self.exporter = exporter
        self.metrics = metrics
        (hour, minute) = config.clock ?? (2, 0)
        self.logger = logger
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
            let exporter = self.exporter
            let started = ContinuousClock.now
            do {
                let manifest = try await NIOThreadPool.singleton.runIfActive { try exporter.export() }  // blocking file and SQLite work
                metrics.export(duration: ContinuousClock.now - started, rows: manifest.events, outcome: "ok")
                logger.info("analytics export written", metadata: ["file": "\(manifest.file)", "events": "\(manifest.events)"])
                for part in manifest.workspaces where part.error != nil {
                    logger.warning("workspace not fully exported; the rest waits", metadata: [
                        "workspace": "\(part.workspaceID)", "to_seq": "\(part.toSeq)", "error": "\(part.error!)"])
                }
            } catch {
                metrics.export(duration: ContinuousClock.now - started, rows: 0, outcome: "failed")
                logger.error("analytics export failed; the next one will carry its events", metadata: ["error": "\(error)"])
            }
        }
    }
}
