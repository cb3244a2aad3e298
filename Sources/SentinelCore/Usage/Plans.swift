import Foundation
import GRDB

/// What a workspace may use per calendar month (UTC). `nil` means unlimited.
public struct Plan: Sendable, Codable, Equatable {
    public var name: String
    public var reviewsPerMonth: Int?
    public var tokensPerMonth: Int?
    public var repositories: Int?
    public var seats: Int?

    public init(name: String, reviewsPerMonth: Int?, tokensPerMonth: Int?, repositories: Int?, seats: Int?) {
        self.name = name
        self.reviewsPerMonth = reviewsPerMonth
        self.tokensPerMonth = tokensPerMonth
        self.repositories = repositories
        self.seats = seats
    }

    enum CodingKeys: String, CodingKey {
        case name, repositories, seats
        case reviewsPerMonth = "reviews_per_month"
        case tokensPerMonth = "tokens_per_month"
    }

    /// The plans an appliance knows without any configuration.
    public static let builtIn: [String: Plan] = [
        "free": Plan(name: "free", reviewsPerMonth: 100, tokensPerMonth: 2_000_000, repositories: 5, seats: 5),
        "team": Plan(name: "team", reviewsPerMonth: 2_000, tokensPerMonth: 50_000_000, repositories: 100, seats: 50),
        "enterprise": Plan(name: "enterprise", reviewsPerMonth: nil, tokensPerMonth: nil, repositories: nil, seats: nil),
    ]
}

/// Where plans come from: the integration point for a billing system. The built-in provider reads
/// the workspace's plan name from control.sqlite and the plan table above.
public protocol BillingProvider: Sendable {
    func plan(for workspace: WorkspaceID) async throws -> Plan
}

public struct BuiltinBillingProvider: BillingProvider {
    let control: ControlStore

    public init(control: ControlStore) { self.control = control }

    public func plan(for workspace: WorkspaceID) async throws -> Plan {
        let name = try control.workspace(workspace)?.plan ?? "free"
        return Plan.builtIn[name] ?? Plan.builtIn["free"]!
    }

    /// Assigns a plan (appliance admins).
    public func assign(_ name: String, to workspace: WorkspaceID) throws {
        guard Plan.builtIn[name] != nil else {
            throw StorageError.invalid("unknown plan '\(name)' (one of \(Plan.builtIn.keys.sorted().joined(separator: ", ")))")
        }
        guard try control.workspace(workspace) != nil else { throw WorkspaceError.notFound(workspace.rawValue) }
        try control.pool.write { db in
            try db.execute(sql: "UPDATE workspaces SET plan = ? WHERE id = ?", arguments: [name, workspace.rawValue])
        }
    }
}

/// The plan check a run makes before it starts, inside the transaction that marks it running, so
/// concurrent runs of one workspace cannot together exceed a limit.
public enum PlanLimits {
    static func monthStart(_ now: Date) -> Double {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar.date(from: calendar.dateComponents([.year, .month], from: now))!.timeIntervalSince1970
    }

    /// A reason when starting one more review would exceed the plan, else nil.
    public static func reasonToSkip(runID: Int64, plan: Plan, in db: Database, now: Date) throws -> String? {
        let start = monthStart(now)
        if let limit = plan.reviewsPerMonth {
            let used = try Int.fetchOne(db, sql: """
                SELECT count(*) FROM review_runs WHERE id != ? AND started_at >= ? AND state IN ('running','completed','failed')
                """, arguments: [runID, start]) ?? 0
            if used >= limit {
                return "plan_limit: the workspace's \(plan.name) plan allows \(limit) reviews per month and \(used) have run this month"
            }
        }
        if let limit = plan.tokensPerMonth {
            let used = try Int.fetchOne(db, sql: "SELECT coalesce(sum(input_tokens + output_tokens), 0) FROM usage_records WHERE recorded_at >= ?",
                                        arguments: [start]) ?? 0
            if used >= limit {
                return "plan_limit: the workspace's \(plan.name) plan allows \(limit) AI tokens per month and \(used) are used"
            }
        }
        return nil
    }
}
