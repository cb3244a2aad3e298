import Foundation
import GRDB
import Synchronization

/// Whose model calls a usage record counts: one job attempt of a review run, or a review of a
/// local diff (`sentinel review --workspace`), which belongs to no run and no repository but is paid
/// for with the workspace's keys all the same.
public enum UsageOwner: Sendable, Equatable {
    /// `claimedAt`: when the job was claimed for this attempt; a job given back at shutdown counts
    /// the attempt again, and only the claim tells its calls from the earlier ones.
    case run(id: Int64, jobAttempt: Int, repository: String, claimedAt: Double? = nil)
    case localReview(id: String)
}

/// The usage table's writer: one row per model call (keyed by its owner, chunk and attempt, so a
/// retried transaction or a second recording of the same call counts it once) and one
/// `UsageRecorded` event per new row.
public enum UsageLedger {
    public static func callKey(runID: Int64, jobAttempt: Int, claimedAt: Double? = nil, call: ModelCallRecord) -> String {
        "run:\(runID):job:\(jobAttempt)\(claimedAt.map { "@" + String(format: "%.6f", $0) } ?? ""):chunk:\(call.chunk):attempt:\(call.attempt)"
    }

    public static func callKey(for owner: UsageOwner, call: ModelCallRecord) -> String {
        switch owner {
        case .run(let id, let jobAttempt, _, let claimedAt): callKey(runID: id, jobAttempt: jobAttempt, claimedAt: claimedAt, call: call)
        case .localReview(let id): "local:\(id):chunk:\(call.chunk):attempt:\(call.attempt)"
        }
    }

    public static func record(_ calls: [(call: ModelCallRecord, costUSD: Double)], runID: Int64, repository: String, jobAttempt: Int,
                              claimedAt: Double? = nil, in tx: inout WorkspaceTransaction) throws {
        try record(calls, for: .run(id: runID, jobAttempt: jobAttempt, repository: repository, claimedAt: claimedAt), in: &tx)
    }

    /// Records `calls` for `owner`. A local review's calls have no run, repository or platform:
    /// they count toward the month's usage, the AI budget and the plan's tokens like any others.
    public static func record(_ calls: [(call: ModelCallRecord, costUSD: Double)], for owner: UsageOwner,
                              in tx: inout WorkspaceTransaction) throws {
        guard !calls.isEmpty else { return }
        var context: [String: String] = [:]
        let (runID, subject): (Int64?, String)
        switch owner {
        case .run(let id, _, let repository, _):
            (runID, subject) = (id, "run:\(id)")
            context["repository"] = repository
            context["platform"] = try RepositoryStore.platform(ofRun: id, in: tx.db)
        case .localReview(let id):
            (runID, subject) = (nil, "local_review:\(id)")
        }
        for (call, exactCost) in calls {
            // In whole micro-dollars, as the event, the rollups and the analytics dump carry it:
            // the usage report summed the unrounded costs and disagreed with them.
            let cost = (exactCost * 1_000_000).rounded() / 1_000_000
            try UsageRecord(runID: runID, callKey: callKey(for: owner, call: call), provider: call.provider,
                            model: call.model, inputTokens: call.usage.inputTokens, outputTokens: call.usage.outputTokens, costUSD: cost,
                            durationMs: call.durationMs, recordedAt: tx.now.epoch).insert(tx.db, onConflict: .ignore)
            if tx.db.changesCount == 1 {
                let fields = context.merging([
                    "provider": call.provider, "model": call.model, "input_tokens": String(call.usage.inputTokens),
                    "output_tokens": String(call.usage.outputTokens), "cost_usd": String(format: "%.6f", cost),
                    "call_duration_ms": String(call.durationMs)]) { $1 }
                try tx.append(DomainEvent(type: "UsageRecorded", subject: subject, payload: fields))
            }
        }
        try recordBudgetReached(in: &tx)
    }

    /// Appends `AIBudgetReached` when this month's AI spend has reached the workspace's budget
    /// (`ai.monthly_budget_usd`): once per month and budget (a raised budget reached again is told again).
    public static func recordBudgetReached(in tx: inout WorkspaceTransaction) throws {
        guard let budget = try ProviderStore.monthlyBudget(in: tx.db) else { return }
        let spent = try monthToDate(in: tx.db, now: tx.now)
        guard spent.costUSD >= budget else { return }
        let period = UsageReport.currentPeriod(now: tx.now)
        let usd = { (value: Double) in String(format: "%.2f", value) }
        try tx.db.execute(sql: "INSERT OR IGNORE INTO workspace_meta (key, value) VALUES (?, ?)",
                          arguments: ["ai_budget_reached:\(period):\(usd(budget))", usd(spent.costUSD)])
        guard tx.db.changesCount == 1 else { return }
        // To the digit, as the budget was set (cents showed a budget of 0.001 as "0.00 spent of 0.00").
        try tx.append(DomainEvent(type: "AIBudgetReached", subject: "ai_budget:\(period)", payload: [
            "period": period, "budget_usd": budget.dollarText, "spent_usd": spent.costUSD.dollarText]))
    }

    /// This month's (UTC) AI spend of the workspace: tokens, estimated USD and model calls (every
    /// call recorded from the start of the month on). One row of `usage_months`, which a trigger keeps
    /// in step with `usage_records`: the same whether the month holds ten calls or a million.
    /// Months after this one count too: calls recorded while the clock ran ahead were spent now.
    public static func monthToDate(in db: Database, now: Date) throws -> (tokens: Int, costUSD: Double, calls: Int) {
        let row = try Row.fetchOne(db, sql: """
            SELECT coalesce(sum(tokens), 0) AS tokens, coalesce(sum(cost_usd), 0) AS cost, coalesce(sum(calls), 0) AS calls
            FROM usage_months WHERE month >= ?
            """, arguments: [UsageReport.currentPeriod(now: now)])
        let tokens: Int = row?["tokens"] ?? 0
        // In whole micro-dollars, as each call is recorded: summed as floating point, 12.8 spent
        // read 12.799999999999999, under a budget of 12.8, and the next call went out.
        let cost: Double = ((row?["cost"] ?? 0) * 1_000_000).rounded() / 1_000_000
        let calls: Int = row?["calls"] ?? 0
        return (tokens, cost, calls)
    }
}

/// A row of `usage_records`: one model call.
struct UsageRecord: Encodable, PersistableRecord {
    static let databaseTableName = "usage_records"
    static let databaseColumnEncodingStrategy = DatabaseColumnEncodingStrategy.sentinel
    /// Nil for a local review's calls.
    var runID: Int64?
    var callKey: String
    var provider: String
    var model: String
    var inputTokens: Int
    var outputTokens: Int
    var costUSD: Double
    var durationMs: Int
    var recordedAt: Double
}

/// The model calls of one workspace admitted and not yet recorded, across all its runs in this
/// process: what each run's `RunSpendGuard` reserves before a call and releases when it is
/// recorded. A run saw only its own calls in flight, so runs starting together could each reserve
/// the whole remaining limit (four runs spent 3.4 times a plan's monthly tokens).
public final class SpendInFlight: Sendable {
    public struct Totals: Sendable, Equatable {
        public var tokens = 0
        public var usd = 0.0
        public var calls = 0
        public init() {}
    }
    private let totals = Mutex(Totals())

    public init() {}

    public var current: Totals { totals.withLock { $0 } }

    /// Adds a call's reservation when `admit` (given the totals before it) allows it.
    func reserve(tokens: Int, usd: Double, if admit: (Totals) throws -> Void) throws {
        try totals.withLock { totals in
            try admit(totals)
            totals.tokens += tokens
            totals.usd += usd
            totals.calls += 1
        }
    }

    func release(tokens: Int, usd: Double) {
        totals.withLock { totals in
            totals.tokens -= tokens
            totals.usd -= usd
            totals.calls -= 1
            if totals.calls <= 0 { totals = Totals() }
        }
    }
}

/// The shared spend limits of one review run (or of one review of a local diff), checked before
/// every model call: the workspace's AI budget (`ai.monthly_budget_usd`) and the plan's monthly
/// token limit. Each call is recorded in the usage table as soon as it returns, so a concurrent
/// run sees it at its next check, and every call in flight in the workspace (this run's and the
/// others', `SpendInFlight`) is reserved against both limits: its estimated tokens, and for the
/// budget its estimated price (`estimate`, from the price of the workspace's dearest provider for
/// those tokens) or, when dearer, the dearest call seen so far (this run's, or the month's
/// average). Concurrent runs overshoot a limit by at most about one call in all. Anything that
/// cannot be read or recorded refuses the next call: an AI call that cannot be metered is not made.
public actor RunSpendGuard: ModelCallGate {
    public typealias Cost = @Sendable (ModelCallRecord) async -> Double
    /// The estimated price in USD of a call of about this many tokens.
    public typealias Estimate = @Sendable (Int) async -> Double

    let workspace: WorkspaceActor
    let owner: UsageOwner
    let plan: Plan?
    let cost: Cost
    let estimate: Estimate
    /// The USD each of this run's calls in flight reserved, by its estimated tokens.
    private var reservedUSD: [Int: [Double]] = [:]
    /// The most one call of this run has cost so far (USD).
    private var dearestCallUSD = 0.0
    private var recordingFailure: String?
    /// Read with the usage before each call: a reason no further call is wanted (the run was
    /// cancelled, superseded or closed meanwhile), or nil.
    let stopReason: (@Sendable (Database) throws -> String?)?

    public init(workspace: WorkspaceActor, owner: UsageOwner, plan: Plan?, cost: @escaping Cost = { _ in 0 },
                estimate: @escaping Estimate = { _ in 0 }, stopReason: (@Sendable (Database) throws -> String?)? = nil) {
        self.workspace = workspace
        self.owner = owner
        self.plan = plan
        self.cost = cost
        self.estimate = estimate
        self.stopReason = stopReason
    }

    /// The limits of a review run; `stopReason` tells when the run no longer wants calls.
    public init(workspace: WorkspaceActor, runID: Int64, jobAttempt: Int, claimedAt: Double? = nil, repository: String, plan: Plan?,
                cost: @escaping Cost = { _ in 0 }, estimate: @escaping Estimate = { _ in 0 },
                stopReason: (@Sendable (Database) throws -> String?)? = nil) {
        self.init(workspace: workspace, owner: .run(id: runID, jobAttempt: jobAttempt, repository: repository, claimedAt: claimedAt), plan: plan, cost: cost,
                  estimate: estimate, stopReason: stopReason)
    }

    public func admit(estimatedTokens: Int) async throws {
        if let recordingFailure {
            throw ModelCallRefused("AI usage could not be recorded (\(recordingFailure)); no further AI call is made")
        }
        let now = Date()
        let state: (budget: Double?, tokens: Int, costUSD: Double, calls: Int, stop: String?)
        let stopReason = stopReason
        do {
            state = try await workspace.read { db in
                let budget = try ProviderStore.monthlyBudget(in: db)
                let spent = try UsageLedger.monthToDate(in: db, now: now)
                return (budget: budget, tokens: spent.tokens, costUSD: spent.costUSD, calls: spent.calls, stop: try stopReason?(db))
            }
        } catch {
            throw ModelCallRefused("the workspace's AI usage could not be read (\(error)); no AI call is made without metering")
        }
        if let stop = state.stop { throw ModelCallRefused(stop, limitReached: true) }
        // This call will cost about its tokens at the dearest provider's price, or what a call has
        // cost so far when that is more (a call with nothing returned yet counted as free: the
        // first run of a month sent eight calls at once past a budget of one).
        let priced = state.budget == nil ? 0 : await estimate(estimatedTokens)
        let usd = max(priced, dearestCallUSD, state.calls > 0 ? state.costUSD / Double(state.calls) : 0)
        let (plan, budget) = (plan, state.budget)
        var spentAlready = false
        do {
            try workspace.spendInFlight.reserve(tokens: estimatedTokens, usd: usd) { inFlight in
                if let budget, state.costUSD + inFlight.usd >= budget {
                    spentAlready = state.costUSD >= budget
                    // Refused for what calls in flight may spend: said so (the budget was not spent,
                    // and the next review alone was reviewed).
                    throw ModelCallRefused(spentAlready ? ProviderRouter.SkipReason.budgetSpent
                                           : "the AI budget for this period would be spent by the calls in flight (\(state.costUSD.dollarText) "
                                             + "of \(budget.dollarText) USD spent, about \(inFlight.usd.dollarText) USD more reserved)",
                                           limitReached: true)
                }
                if let plan, let limit = plan.tokensPerMonth, state.tokens + inFlight.tokens >= limit {
                    let reserved = inFlight.tokens > 0 ? " (and about \(inFlight.tokens) more by calls in flight)" : ""
                    throw ModelCallRefused("plan_limit: the workspace's \(plan.name) plan allows \(limit) AI tokens per month and "
                                           + "\(state.tokens) are used\(reserved)", limitReached: true)
                }
            }
        } catch {
            if spentAlready {
                // Spent already (e.g. the budget was lowered): told once, like a call that reaches it.
                try? await workspace.write { tx in try UsageLedger.recordBudgetReached(in: &tx) }
            }
            throw error
        }
        reservedUSD[estimatedTokens, default: []].append(usd)
    }

    public func settle(estimatedTokens: Int, call: ModelCallRecord?) async {
        let reserved = reservedUSD[estimatedTokens]?.popLast() ?? 0
        if reservedUSD[estimatedTokens]?.isEmpty == true { reservedUSD[estimatedTokens] = nil }
        defer { workspace.spendInFlight.release(tokens: estimatedTokens, usd: reserved) }
        guard let call else { return }
        let usd = await cost(call)
        dearestCallUSD = max(dearestCallUSD, usd)
        let owner = owner
        do {
            try await workspace.write { tx in try UsageLedger.record([(call: call, costUSD: usd)], for: owner, in: &tx) }
        } catch {
            recordingFailure = String(describing: error)
        }
    }
}
