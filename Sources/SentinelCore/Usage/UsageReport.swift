import Foundation
import GRDB

/// Usage of one billing period (a calendar month, UTC) of a workspace: review runs by state and AI
/// calls by provider and model, read from the workspace file.
public struct UsageReport: Codable, Sendable, Equatable {
    public struct ModelUsage: Codable, Sendable, Equatable {
        public var provider: String
        public var model: String
        public var calls: Int
        public var inputTokens: Int
        public var outputTokens: Int
        public var costUSD: Double
    }

    public var workspaceID: String
    public var period: String
    public var runs: [String: Int]
    public var models: [ModelUsage]
    public var inputTokens: Int
    public var outputTokens: Int
    public var costUSD: Double
    /// The workspace's plan and where it stands against each limit (current period only).
    public var plan: String?
    public var limits: [PlanLimitStatus]?

    /// `YYYY-MM` → [start, end) in seconds since 1970, UTC.
    public static func bounds(ofPeriod period: String) -> (Double, Double)? {
        // Exactly YYYY-MM: `Int()` read `+2026-12`, `2026-0012` and `2026-1` as months, under
        // headings that were not the month's name (and without the plan's limits).
        guard period.wholeMatch(of: /[0-9]{4}-[0-9]{2}/) != nil else { return nil }
        let parts = period.split(separator: "-")
        guard parts.count == 2, let year = Int(parts[0]), let month = Int(parts[1]), (1...12).contains(month), (1970...9999).contains(year) else {
            return nil
        }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        guard let start = calendar.date(from: DateComponents(year: year, month: month, day: 1)),
              let end = calendar.date(byAdding: .month, value: 1, to: start) else { return nil }
        return (start.timeIntervalSince1970, end.timeIntervalSince1970)
    }

    public static func currentPeriod(now: Date = Date()) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month], from: now)
        return String(format: "%04d-%02d", c.year!, c.month!)
    }

    public static func make(workspace: WorkspaceID, period: String, in db: Database) throws -> UsageReport {
        guard let (start, end) = bounds(ofPeriod: period) else { throw StorageError.invalid("period must be a month from 1970-01 to 9999-12 in the form YYYY-MM, not '\(period)'") }
        let runRows = try Row.fetchAll(db, sql: "SELECT state, count(*) AS n FROM review_runs WHERE created_at >= ? AND created_at < ? GROUP BY state",
                                       arguments: [start, end])
        let runs = Dictionary(uniqueKeysWithValues: runRows.map { ($0["state"] as String, $0["n"] as Int) })
        let models = try Row.fetchAll(db, sql: """
            SELECT provider, model, count(*) AS calls, sum(input_tokens) AS input, sum(output_tokens) AS output, sum(cost_usd) AS cost
            FROM usage_records WHERE recorded_at >= ? AND recorded_at < ? GROUP BY provider, model ORDER BY provider, model
            """, arguments: [start, end]).map {
            ModelUsage(provider: $0["provider"], model: $0["model"], calls: $0["calls"], inputTokens: $0["input"], outputTokens: $0["output"],
                       costUSD: Self.microDollars($0["cost"]))
        }
        return UsageReport(workspaceID: workspace.rawValue, period: period, runs: runs, models: models,
                           inputTokens: models.reduce(0) { $0 + $1.inputTokens }, outputTokens: models.reduce(0) { $0 + $1.outputTokens },
                           costUSD: Self.microDollars(models.reduce(0) { $0 + $1.costUSD }))
    }

    /// A sum of costs in whole micro-dollars, as each call is recorded (a floating-point sum
    /// showed 12.799999999999999 where the analytics said 12.8).
    static func microDollars(_ usd: Double) -> Double {
        (usd * 1_000_000).rounded() / 1_000_000
    }
}

/// One recorded AI call of a run: what it used and cost.
public struct UsageCall: Codable, Sendable, Equatable {
    public var provider: String
    public var model: String
    public var inputTokens: Int
    public var outputTokens: Int
    public var costUSD: Double
    public var durationMs: Int
    public var recordedAt: Double

    /// A run's AI calls in the order they were recorded.
    public static func list(ofRun runID: Int64, in db: Database) throws -> [UsageCall] {
        try Row.fetchAll(db, sql: """
            SELECT provider, model, input_tokens, output_tokens, cost_usd, duration_ms, recorded_at FROM usage_records WHERE run_id = ? ORDER BY id
            """, arguments: [runID]).map {
            UsageCall(provider: $0["provider"], model: $0["model"], inputTokens: $0["input_tokens"], outputTokens: $0["output_tokens"],
                      costUSD: $0["cost_usd"], durationMs: $0["duration_ms"], recordedAt: $0["recorded_at"])
        }
    }
}
