import Foundation
import GRDB

/// One day of one repository's review activity: what dashboards and the analytics export show.
/// Folded from `RunCompleted` and `UsageRecorded` events only, so the central PostgreSQL rollups
/// (computed from the exported events) are the same numbers.
public struct DailyRollup: Codable, Sendable, Equatable {
    public var day: String
    public var repository: String
    public var runs: Int
    public var runsByOutcome: [String: Int]
    public var findings: Int
    public var findingsBySeverity: [String: Int]
    public var findingsByCategory: [String: Int]
    public var aiCalls: Int
    public var inputTokens: Int
    public var outputTokens: Int
    /// Exact: summed in micro-dollars, as the events carry six decimals.
    public var costUSD: Decimal
    public var durationP50Ms: Int?
    public var durationP95Ms: Int?

    public init(day: String, repository: String, runs: Int, runsByOutcome: [String: Int], findings: Int, findingsBySeverity: [String: Int],
                findingsByCategory: [String: Int], aiCalls: Int, inputTokens: Int, outputTokens: Int, costUSD: Decimal,
                durationP50Ms: Int?, durationP95Ms: Int?) {
        self.day = day
        self.repository = repository
        self.runs = runs
        self.runsByOutcome = runsByOutcome
        self.findings = findings
        self.findingsBySeverity = findingsBySeverity
        self.findingsByCategory = findingsByCategory
        self.aiCalls = aiCalls
        self.inputTokens = inputTokens
        self.outputTokens = outputTokens
        self.costUSD = costUSD
        self.durationP50Ms = durationP50Ms
        self.durationP95Ms = durationP95Ms
    }
}

/// Maintains the workspace's daily rollups from its events log. `advance` folds the events after
/// the watermark and moves the watermark in the same transaction, so each event counts exactly
/// once however often (or concurrently) it is called. It runs as an event listener job, and
/// readers call it first so what they see is current.
public enum Rollups {
    public static let listener = "analytics.rollup"
    public static let eventTypes = ["RunCompleted", "UsageRecorded"]
    /// The outcomes a finished run can have (its final state).
    public static let outcomes = ["completed", "failed", "skipped", "superseded"]
    public static let batchSize = 5_000

    /// Registers the rollup listener: a `RunCompleted` or `UsageRecorded` enqueues it unless a run
    /// of it is queued already (it coalesces), and it folds everything after the watermark.
    public static func register(in registry: inout JobRegistry) {
        for type in eventTypes {
            registry.listen(to: type, as: listener, coalescing: true) { context in
                while try await context.workspace.write({ tx in try advance(in: tx.db) }) == batchSize {}
            }
        }
    }

    /// Folds up to `limit` relevant events; returns how many events were folded.
    @discardableResult
    public static func advance(in db: Database, limit: Int = batchSize) throws -> Int {
        let watermark = try Int64.fetchOne(db, sql: "SELECT last_seq FROM rollup_watermark WHERE id = 1") ?? 0
        let events = try EventLog.read(after: watermark, limit: limit, types: eventTypes, in: db)
        for event in events { try fold(event, in: db) }
        // A full batch may stop short of the end; otherwise everything up to the log's end is done.
        let newMark = events.count == limit ? events.last!.seq
            : max(watermark, try Int64.fetchOne(db, sql: "SELECT coalesce(max(seq), 0) FROM events") ?? 0)
        try db.execute(sql: "UPDATE rollup_watermark SET last_seq = ? WHERE id = 1", arguments: [newMark])
        return events.count
    }

    /// Folds everything outstanding, in batches.
    public static func catchUp(in db: Database) throws {
        while try advance(in: db) == batchSize {}
    }

    static func fold(_ event: StoredEvent, in db: Database) throws {
        guard let object = try? JSONSerialization.jsonObject(with: Data(event.data.utf8)) as? [String: Any] else { return }
        let day = String(event.occurredAt.prefix(10))
        let repository = object["repository"] as? String ?? ""
        try db.execute(sql: "INSERT OR IGNORE INTO rollup_daily (day, repository) VALUES (?, ?)", arguments: [day, repository])
        switch event.type {
        case "RunCompleted":
            let state = object["state"] as? String ?? ""
            let column = outcomes.contains(state) ? "runs_\(state)" : nil
            try db.execute(sql: """
                UPDATE rollup_daily SET runs = runs + 1, findings = findings + ?\(column.map { ", \($0) = \($0) + 1" } ?? "")
                WHERE day = ? AND repository = ?
                """, arguments: [integer(object["findings"]) ?? 0, day, repository])
            for count in object["finding_counts"] as? [[String: Any]] ?? [] {
                try db.execute(sql: """
                    INSERT INTO rollup_daily_findings (day, repository, severity, category, findings) VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT (day, repository, severity, category) DO UPDATE SET findings = findings + excluded.findings
                    """, arguments: [day, repository, count["severity"] as? String ?? "", count["category"] as? String ?? "",
                                     integer(count["count"]) ?? 0])
            }
            if let duration = integer(object["duration_ms"]) {
                try db.execute(sql: "INSERT OR IGNORE INTO rollup_run_durations (event_seq, day, repository, duration_ms) VALUES (?, ?, ?, ?)",
                               arguments: [event.seq, day, repository, duration])
            }
        case "UsageRecorded":
            try db.execute(sql: """
                UPDATE rollup_daily SET ai_calls = ai_calls + 1, input_tokens = input_tokens + ?, output_tokens = output_tokens + ?,
                    cost_micro_usd = cost_micro_usd + ?
                WHERE day = ? AND repository = ?
                """, arguments: [integer(object["input_tokens"]) ?? 0, integer(object["output_tokens"]) ?? 0,
                                 microDollars(object["cost_usd"]), day, repository])
        default:
            break
        }
    }

    /// The days a query covers (`YYYY-MM-DD`, inclusive): `from` defaults to 30 days before `now`
    /// and `to` to `now`'s day (UTC). A day that is not on the calendar (`2026-02-30`) or a range
    /// that ends before it starts is refused, rather than answered with nothing.
    public static func days(from: String?, to: String?, now: Date = Date()) throws -> (from: String, to: String) {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        func checked(_ text: String, _ name: String) throws -> String {
            guard let match = text.wholeMatch(of: /(\d{4})-(\d{2})-(\d{2})/),
                  let year = Int(match.1), let month = Int(match.2), let day = Int(match.3),
                  let date = calendar.date(from: DateComponents(year: year, month: month, day: day)),
                  calendar.dateComponents([.year, .month, .day], from: date) == DateComponents(year: year, month: month, day: day) else {
                throw AnalyticsError("\(name): '\(text)' is not a day (YYYY-MM-DD, on the calendar)")
            }
            return text
        }
        let range = (try from.map { try checked($0, "from") } ?? String(ISO8601.string(now.addingTimeInterval(-30 * 86_400)).prefix(10)),
                     try to.map { try checked($0, "to") } ?? String(ISO8601.string(now).prefix(10)))
        guard range.0 <= range.1 else { throw AnalyticsError("from (\(range.0)) is after to (\(range.1))") }
        return range
    }

    /// Rollups for days in `from...to` (inclusive, `YYYY-MM-DD`), optionally one repository.
    public static func query(from: String, to: String, repository: String? = nil, in db: Database) throws -> [DailyRollup] {
        var sql = "SELECT * FROM rollup_daily WHERE day >= ? AND day <= ?"
        var arguments: [any DatabaseValueConvertible] = [from, to]
        if let repository { sql += " AND repository = ?"; arguments.append(repository) }
        sql += " ORDER BY day, repository"
        return try Row.fetchAll(db, sql: sql, arguments: StatementArguments(arguments)).map { row in
            let day: String = row["day"]
            let repository: String = row["repository"]
            var bySeverity: [String: Int] = [:]
            var byCategory: [String: Int] = [:]
            for f in try Row.fetchAll(db, sql: "SELECT severity, category, findings FROM rollup_daily_findings WHERE day = ? AND repository = ?",
                                      arguments: [day, repository]) {
                bySeverity[f["severity"], default: 0] += f["findings"] as Int
                byCategory[f["category"], default: 0] += f["findings"] as Int
            }
            let durations = try Int.fetchAll(db, sql: """
                SELECT duration_ms FROM rollup_run_durations WHERE day = ? AND repository = ? ORDER BY duration_ms
                """, arguments: [day, repository])
            var byOutcome: [String: Int] = [:]
            for outcome in outcomes { byOutcome[outcome] = row["runs_\(outcome)"] }
            return DailyRollup(day: day, repository: repository, runs: row["runs"], runsByOutcome: byOutcome, findings: row["findings"],
                               findingsBySeverity: bySeverity, findingsByCategory: byCategory, aiCalls: row["ai_calls"],
                               inputTokens: row["input_tokens"], outputTokens: row["output_tokens"],
                               costUSD: Decimal(row["cost_micro_usd"] as Int64) / 1_000_000,
                               durationP50Ms: percentile(0.50, of: durations), durationP95Ms: percentile(0.95, of: durations))
        }
    }

    /// Nearest rank, the definition of PostgreSQL's `percentile_disc`: the first value whose
    /// cumulative share reaches `p`.
    public static func percentile(_ p: Double, of sorted: [Int]) -> Int? {
        guard !sorted.isEmpty else { return nil }
        let rank = Int((p * Double(sorted.count)).rounded(.up))
        return sorted[min(max(rank, 1), sorted.count) - 1]
    }

    static func integer(_ value: Any?) -> Int? {
        switch value {
        case let n as NSNumber: return n.intValue
        case let s as String: return Int(s)
        default: return nil
        }
    }

    /// "0.001234" → 1234, exactly (no binary floating point on the way).
    static func microDollars(_ value: Any?) -> Int64 {
        let text: String
        switch value {
        case let s as String: text = s
        case let n as NSNumber: text = String(format: "%.6f", n.doubleValue)
        default: return 0
        }
        guard let decimal = Decimal(string: text) else { return 0 }
        var scaled = decimal * 1_000_000
        var rounded = Decimal()
        NSDecimalRound(&rounded, &scaled, 0, .plain)
        return NSDecimalNumber(decimal: rounded).int64Value
    }
}

/// A request for analytics the domain cannot answer as asked (a day not on the calendar, a range
/// that ends before it starts).
public struct AnalyticsError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
