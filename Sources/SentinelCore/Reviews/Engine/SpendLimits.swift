import Foundation

/// A model call the engine may not make: a spend limit is reached, or spend cannot be metered.
public struct ModelCallRefused: Error, Sendable, Equatable, CustomStringConvertible {
    public let reason: String
    /// A limit is reached (a budget spent, a plan's tokens used, the run ended): no failure. A
    /// review whose every call is refused so is skipped, not failed (a failed one turns the check
    /// red; a plan limit reached before the run starts skips it with a neutral check).
    public let limitReached: Bool
    public init(_ reason: String, limitReached: Bool = false) {
        self.reason = reason
        self.limitReached = limitReached
    }
    public var description: String { reason }
}

/// Asked by the engine before every model call and told after it, so limits that several runs
/// share (the workspace's AI budget, the plan's token limit) are enforced per call rather than per
/// run: a call's usage is visible to every other run as soon as the call returns. Implemented in
/// the Usage domain (`RunSpendGuard`); the engine only sees this edge.
public protocol ModelCallGate: Sendable {
    /// Reserves `estimatedTokens` for a call about to be made, or throws `ModelCallRefused`.
    func admit(estimatedTokens: Int) async throws
    /// Ends a reservation: `call` is the call that returned (it is metered whether or not its
    /// output was usable), nil when the call failed without reporting usage.
    func settle(estimatedTokens: Int, call: ModelCallRecord?) async
}

/// The run's own token budget (`review.max_tokens_per_run`). Calls reserve their estimate before
/// they are sent and settle with the reported usage, so parallel chunks together stay within it.
actor RunTokenBudget {
    let limit: Int
    private var spent = 0
    private var reserved = 0

    init(limit: Int) { self.limit = limit }

    func reserve(_ tokens: Int) -> Bool {
        guard spent + reserved + tokens <= limit else { return false }
        reserved += tokens
        return true
    }

    func settle(reserved tokens: Int, actual: Int?) {
        reserved -= tokens
        spent += actual ?? 0
    }

    var refusal: String { "the run's token budget (\(limit) tokens, review.max_tokens_per_run) is spent" }
}

/// Both checks a model call passes, in order: the run's own budget, then the shared limits.
struct CallAdmission: Sendable {
    var run: RunTokenBudget?
    var gate: (any ModelCallGate)?

    /// Tokens a reply is expected to take on top of the prompt, for the estimate of a call.
    static let expectedOutputTokens = 2_000

    static func estimate(_ prompt: ReviewPrompt) -> Int { prompt.estimatedTokens + expectedOutputTokens }

    func admit(_ tokens: Int) async throws {
        // The run's own cap (`review.max_tokens_per_run`) is the configuration's, not a limit others reached.
        if let run, !(await run.reserve(tokens)) { throw ModelCallRefused(await run.refusal) }
        guard let gate else { return }
        do { try await gate.admit(estimatedTokens: tokens) } catch {
            await run?.settle(reserved: tokens, actual: nil)
            if let refused = error as? ModelCallRefused { throw refused }
            throw ModelCallRefused("the AI spend could not be checked (\(error))")
        }
    }

    func settle(_ tokens: Int, call: ModelCallRecord?) async {
        await run?.settle(reserved: tokens, actual: call?.usage.totalTokens)
        await gate?.settle(estimatedTokens: tokens, call: call)
    }
}
