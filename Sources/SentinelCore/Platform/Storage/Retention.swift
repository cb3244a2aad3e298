import Foundation
import GRDB

/// Bounded disk use per workspace file: the `retention` job prunes what the appliance no longer
/// needs (bodies of processed webhook deliveries after `retention.deliveries_days`, succeeded and
/// cancelled jobs after `retention.jobs_days`), gives the freed pages back to the file system
/// (incremental auto-vacuum) and truncates the WAL. It runs once a day in each open workspace:
/// the scheduler's maintenance enqueues it with the day in its idempotency key.
///
/// Auto-vacuum: workspace files are created with `auto_vacuum = INCREMENTAL`, so freed pages are
/// returned by `PRAGMA incremental_vacuum` without rewriting the file. A file created before that
/// (`auto_vacuum = NONE`) is switched by one full `VACUUM` the first time the job runs on it:
/// that rewrites the file once (it needs free disk for a copy and holds the workspace's writes
/// while it runs), and every later run is incremental.
public enum Retention {
    public static let jobKind = "retention"
    /// Rows changed per transaction, so that the workspace's other writes interleave.
    static let batchSize = 500

    public struct Report: Sendable, Codable, Equatable {
        public var deliveryPayloadsPruned = 0
        public var jobsPruned = 0
        /// The file was switched from `auto_vacuum = NONE` by a full VACUUM.
        public var convertedToIncremental = false
        public var pagesFreed = 0
        public var bytesBefore: Int64 = 0
        public var bytesAfter: Int64 = 0

        enum CodingKeys: String, CodingKey {
            case deliveryPayloadsPruned = "delivery_payloads_pruned", jobsPruned = "jobs_pruned"
            case convertedToIncremental = "converted_to_incremental", pagesFreed = "pages_freed"
            case bytesBefore = "bytes_before", bytesAfter = "bytes_after"
        }
    }

    /// Registers the job's handler.
    public static func register(in registry: inout JobRegistry, config: SentinelConfig) {
        registry.register(jobKind) { context in
            let report = try await run(on: context.workspace, config: config)
            context.logger.info("retention", metadata: [
                "delivery_payloads_pruned": "\(report.deliveryPayloadsPruned)", "jobs_pruned": "\(report.jobsPruned)",
                "pages_freed": "\(report.pagesFreed)", "converted_to_incremental": "\(report.convertedToIncremental)",
                "bytes_before": "\(report.bytesBefore)", "bytes_after": "\(report.bytesAfter)",
            ])
        }
    }

    /// The day's retention job of a workspace (enqueueing it twice the same UTC day is a no-op).
    public static func request(on day: Date) -> JobRequest {
        JobRequest(kind: jobKind, priority: .bulk, idempotencyKey: "retention:\(ISO8601.string(day).prefix(10))", maxAttempts: 3)
    }

    /// Prunes, vacuums and truncates the WAL of one workspace file.
    public static func run(on workspace: WorkspaceActor, config: SentinelConfig, now: Date = Date()) async throws -> Report {
        var report = Report()
        report.bytesBefore = try await workspace.maintenance { db in try fileBytes(db) }
        let deliveriesCutoff = now.addingTimeInterval(-config.retention.deliveriesDays * 86_400).epoch
        while true {
            let pruned = try await workspace.write { tx in
                try tx.db.execute(sql: """
                    UPDATE deliveries SET payload = X'', payload_encoding = 'identity', payload_bytes = NULL WHERE rowid IN (
                        SELECT rowid FROM deliveries
                        WHERE received_at < ? AND processed_at IS NOT NULL AND length(payload) > 0 LIMIT ?)
                    """, arguments: [deliveriesCutoff, batchSize])
                return tx.db.changesCount
            }
            report.deliveryPayloadsPruned += pruned
            if pruned < batchSize { break }
        }
        let jobsCutoff = now.addingTimeInterval(-config.retention.jobsDays * 86_400)
        report.jobsPruned = try await workspace.pruneFinishedJobs(finishedBefore: jobsCutoff)
        let walLimit = config.storage.walMaxBytes
        let checkpointer = workspace.checkpointer
        let (converted, freed) = try await workspace.maintenance { db -> (Bool, Int) in
            let before = try Int.fetchOne(db, sql: "PRAGMA freelist_count") ?? 0
            var converted = false
            if try Int.fetchOne(db, sql: "PRAGMA auto_vacuum") != 2 {
                try db.execute(sql: "PRAGMA auto_vacuum = INCREMENTAL")
                try db.execute(sql: "VACUUM")
                converted = true
            } else if before > 0 {
                try db.execute(sql: "PRAGMA incremental_vacuum")
            }
            // Everything freed is in the WAL now: checkpoint it into the file and cut the WAL back.
            try db.execute(sql: "PRAGMA journal_size_limit = \(walLimit)")
            try checkpointer.truncate(db)
            return (converted, before - (try Int.fetchOne(db, sql: "PRAGMA freelist_count") ?? 0))
        }
        report.convertedToIncremental = converted
        report.pagesFreed = freed
        report.bytesAfter = try await workspace.maintenance { db in try fileBytes(db) }
        return report
    }

    /// The main file's size in bytes, as SQLite sees it (pages × page size).
    static func fileBytes(_ db: Database) throws -> Int64 {
        let pages = try Int64.fetchOne(db, sql: "PRAGMA page_count") ?? 0
        let size = try Int64.fetchOne(db, sql: "PRAGMA page_size") ?? 0
        return pages * size
    }

    /// Bytes of a database file's WAL (0 when there is none).
    public static func walBytes(of file: URL) -> Int64 {
        ((try? FileManager.default.attributesOfItem(atPath: file.path + "-wal"))?[.size] as? NSNumber)?.int64Value ?? 0
    }
}
