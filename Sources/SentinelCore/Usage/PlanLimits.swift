import Foundation
import GRDB

/// A limit near or at its end, reported by `sentinel usage` and as a `PlanSoftLimitReached`
/// event (once per limit and month) when a run takes it past 80%.
public struct PlanLimitStatus: Codable, Sendable, Equatable {
    public var limit: String
    public var used: Int
    public var allowed: Int
    public var softLimitReached: Bool
}

/// The plan checks. The run check happens inside the transaction that marks the run running, so
/// concurrent runs of one workspace cannot together exceed a limit.
public enum PlanLimits {
    public static let softLimitShare = 0.8

    static func monthStart(_ now: Date) -> Double {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar.date(from: calendar.dateComponents([.year, .month], from: now))!.timeIntervalSince1970
    }

    /// Reviews started this month: running or ended with a result, and those superseded or
    /// cancelled after they called a model (a pushed-on pull request had its reviews made, and
    /// superseded, past the limit for good).
    public static func reviewsUsed(excluding runID: Int64?, in db: Database, now: Date) throws -> Int {
        try Int.fetchOne(db, sql: """
            SELECT count(*) FROM review_runs r WHERE r.id != ? AND r.started_at >= ?
              AND (r.state IN ('running','completed','failed') OR EXISTS (SELECT 1 FROM usage_records u WHERE u.run_id = r.id))
            """, arguments: [runID ?? -1, monthStart(now)]) ?? 0
    }

    static func tokensUsed(in db: Database, now: Date) throws -> Int {
        try UsageLedger.monthToDate(in: db, now: now).tokens
    }

    /// A reason when starting one more review would exceed the plan, else nil.
    public static func reasonToSkip(runID: Int64, plan: Plan, in db: Database, now: Date) throws -> String? {
        if let limit = plan.reviewsPerMonth {
            let used = try reviewsUsed(excluding: runID, in: db, now: now)
            if used >= limit {
                return "plan_limit: the workspace's \(plan.name) plan allows \(limit) reviews per month and \(used) have run this month"
            }
        }
        if let limit = plan.tokensPerMonth {
            let used = try tokensUsed(in: db, now: now)
            if used >= limit {
                return "plan_limit: the workspace's \(plan.name) plan allows \(limit) AI tokens per month and \(used) are used"
            }
        }
        return nil
    }

    /// Where the workspace stands against its monthly limits (`runID`: a run about to start, counted).
    public static func status(plan: Plan, startingRun runID: Int64? = nil, in db: Database, now: Date) throws -> [PlanLimitStatus] {
        var out: [PlanLimitStatus] = []
        if let limit = plan.reviewsPerMonth {
            let used = try reviewsUsed(excluding: runID, in: db, now: now) + (runID == nil ? 0 : 1)
            out.append(PlanLimitStatus(limit: "reviews_per_month", used: used, allowed: limit, softLimitReached: reached(used, limit)))
        }
        if let limit = plan.tokensPerMonth {
            let used = try tokensUsed(in: db, now: now)
            out.append(PlanLimitStatus(limit: "tokens_per_month", used: used, allowed: limit, softLimitReached: reached(used, limit)))
        }
        if let limit = plan.repositories {
            let used = try RepositoryStore.enabledCount(in: db)
            out.append(PlanLimitStatus(limit: "repositories", used: used, allowed: limit, softLimitReached: reached(used, limit)))
        }
        return out
    }

    static func reached(_ used: Int, _ limit: Int) -> Bool { Double(used) >= softLimitShare * Double(limit) }

    /// Appends `PlanSoftLimitReached` for each limit past 80%, once per limit and month.
    public static func recordSoftLimits(plan: Plan, startingRun runID: Int64?, in tx: inout WorkspaceTransaction) throws {
        let period = UsageReport.currentPeriod(now: tx.now)
        for status in try status(plan: plan, startingRun: runID, in: tx.db, now: tx.now) where status.softLimitReached {
            // Keyed by what is allowed too: moved to another plan, or given a new limit, the workspace
            // is told again when it nears that one (a repository warning fired once ever).
            let scope = status.limit == "repositories" ? "any" : period
            let key = "soft_limit:\(status.limit):\(status.allowed):\(scope)"
            try tx.db.execute(sql: "INSERT OR IGNORE INTO workspace_meta (key, value) VALUES (?, ?)", arguments: [key, String(status.used)])
            // A notice given under the key of earlier versions (without the allowed number) counts
            // for the limit as it is now: after an upgrade each workspace was told a second time.
            guard tx.db.changesCount == 1 else { continue }
            let legacy = "soft_limit:\(status.limit):\(scope)"
            if try Bool.fetchOne(tx.db, sql: "SELECT EXISTS (SELECT 1 FROM workspace_meta WHERE key = ?)", arguments: [legacy]) ?? false {
                try tx.db.execute(sql: "DELETE FROM workspace_meta WHERE key = ?", arguments: [legacy])
                continue
            }
            try tx.append(DomainEvent(type: "PlanSoftLimitReached", subject: "plan:\(plan.name)", payload: [
                "plan": plan.name, "limit": status.limit, "used": String(status.used), "allowed": String(status.allowed), "period": period,
            ]))
        }
    }
}

/// An action refused because it would exceed the workspace's plan.
public struct PlanLimitError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public var description: String { message }
}
