import Foundation

/// The policy inputs the router needs (`ReviewPolicy.providerPreference` / `allowedModels`).
public struct RouterPolicy: Sendable, Hashable {
    /// Provider kinds (raw values, e.g. "anthropic") or provider ids, most preferred first.
    /// [] = the workspace's priority order.
    public var providerPreference: [String]
    /// Exact model names or prefixes ending in `*` (`gpt-4o*`); [] = any model.
    public var allowedModels: [String]

    public init(providerPreference: [String] = [], allowedModels: [String] = []) {
        self.providerPreference = providerPreference
        self.allowedModels = allowedModels
    }

    public func allowsModel(_ model: String) -> Bool {
        if allowedModels.isEmpty { return true }
        return allowedModels.contains { entry in
            let entry = entry.trimmingCharacters(in: .whitespaces)
            if entry.hasSuffix("*") { return model.hasPrefix(entry.dropLast()) }
            return entry == model
        }
    }

    /// Why an `ai.providers` entry names no provider (neither a kind nor a provider id), or nil.
    public static func nameProblem(_ name: String) -> String? {
        let normalized = name.trimmingCharacters(in: .whitespaces).lowercased()
        if ProviderKind(rawValue: normalized) != nil || normalized.hasPrefix("prv_") { return nil }
        return "'\(name)' names no provider: give a kind (" + ProviderKind.allCases.map(\.rawValue).joined(separator: ", ")
            + ") or a provider id (prv_…, `sentinel provider list`)"
    }

    /// Position in the preference list (nil = not listed).
    func rank(_ config: ProviderConfig) -> Int? {
        providerPreference.firstIndex { entry in
            let e = entry.trimmingCharacters(in: .whitespaces).lowercased()
            return e == config.id.lowercased() || e == config.kind.rawValue
        }
    }
}

/// Retry and timeout settings of a router.
public struct RouterSettings: Sendable, Hashable {
    /// Attempts per provider before falling back to the next one.
    public var maxAttempts: Int
    /// Per-call timeout.
    public var callTimeout: Duration
    /// First backoff; doubled on each further attempt.
    public var initialBackoff: Duration
    /// Upper bound on any wait, including a provider's `Retry-After`.
    public var maxBackoff: Duration

    public init(maxAttempts: Int = 2, callTimeout: Duration = .seconds(120), initialBackoff: Duration = .seconds(1),
                maxBackoff: Duration = .seconds(30)) {
        self.maxAttempts = max(1, maxAttempts)
        self.callTimeout = callTimeout
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
    }
}

/// Why the router produced no reply. Descriptions are plain sentences for the run summary and
/// never contain keys.
public enum ProviderRouterError: Error, Sendable, Hashable, CustomStringConvertible {
    /// No provider was eligible; the reason is `ProviderRouter.eligibility`'s.
    case noEligibleProvider(String)
    /// Every eligible provider failed; one line per provider tried.
    case allProvidersFailed([String])

    public var description: String {
        switch self {
        case .noEligibleProvider(let reason): return "AI review skipped: \(reason)"
        case .allProvidersFailed(let failures):
            return "every eligible AI provider failed: " + failures.joined(separator: "; ")
        }
    }
}

/// The engine's `ReviewModel` for one run: picks among the workspace's providers (eligibility,
/// policy preference, priority), retries with backoff honouring `Retry-After`, falls back to the
/// next provider, and feeds the shared circuit breakers. `ModelReply.provider` is the id of the
/// provider that answered.
public struct ProviderRouter: ReviewModel {
    public typealias Sleep = @Sendable (Duration) async throws -> Void

    /// Plain reasons for a skipped AI review.
    public enum SkipReason {
        public static let noKey = "no AI provider key is configured"
        public static let allDisabled = "every AI provider of the workspace is disabled"
        public static let budgetSpent = "the AI budget for this period is spent"
        public static let circuitsOpen = "every AI provider's circuit is open"
        public static let noAllowedModel = "no provider offers an allowed model"
    }

    struct Entry: Sendable {
        var config: ProviderConfig
        var provider: any LLMProvider
    }

    public let workspaceID: String
    public let policy: RouterPolicy
    public let settings: RouterSettings
    public let breakers: CircuitBreakerRegistry
    private let entries: [Entry]
    private let budgetLeft: @Sendable () async -> Bool
    private let circuitOpened: @Sendable (_ providerID: String, _ failures: Int, _ retryAt: Date?) async -> Void
    private let keyRefused: @Sendable (_ providerID: String) async -> Void
    private let sleep: Sleep
    /// Calls, durations, errors, tokens and cost per provider kind and model.
    private let metrics: SentinelMetrics
    private let prices: PriceTable

    /// - Parameters:
    ///   - providers: the workspace's configured providers (any order; disabled ones are ignored).
    ///   - budgetLeft: whether the workspace's AI budget still allows a call (asked before each call).
    ///   - circuitOpened: told when a failure of this router's opens a provider's circuit (e.g. to append `ProviderCircuitOpened`).
    ///   - keyRefused: told when a provider refuses its key (401/403), which no retry or circuit fixes.
    ///   - sleep: the backoff wait (injectable for tests).
    ///   - providerFactory: builds a provider from its config (injectable for tests).
    public init(workspaceID: String, providers: [ProviderConfig], http: any OutboundHTTPClient,
                policy: RouterPolicy = RouterPolicy(), settings: RouterSettings = RouterSettings(),
                breakers: CircuitBreakerRegistry, budgetLeft: @escaping @Sendable () async -> Bool = { true },
                circuitOpened: @escaping @Sendable (_ providerID: String, _ failures: Int, _ retryAt: Date?) async -> Void = { _, _, _ in },
                keyRefused: @escaping @Sendable (_ providerID: String) async -> Void = { _ in },
                sleep: @escaping Sleep = { try await Task.sleep(for: $0) },
                metrics: SentinelMetrics = SentinelMetrics(), prices: PriceTable = .builtIn,
                providerFactory: (ProviderConfig, any OutboundHTTPClient) -> any LLMProvider = { SentinelCore.makeProvider($0, http: $1) }) {
        self.metrics = metrics
        self.prices = prices
        self.workspaceID = workspaceID
        self.policy = policy
        self.settings = settings
        self.breakers = breakers
        self.budgetLeft = budgetLeft
        self.circuitOpened = circuitOpened
        self.keyRefused = keyRefused
        self.sleep = sleep
        self.entries = Self.ordered(providers, policy: policy).map { Entry(config: $0, provider: providerFactory($0, http)) }
    }

    /// Policy preference first (by list position), then the rest; within each group by priority
    /// (lower first), then id.
    public static func ordered(_ providers: [ProviderConfig], policy: RouterPolicy) -> [ProviderConfig] {
        providers.sorted { a, b in
            let ra = policy.rank(a) ?? Int.max, rb = policy.rank(b) ?? Int.max
            if ra != rb { return ra < rb }
            if a.priority != b.priority { return a.priority < b.priority }
            return a.id < b.id
        }
    }

    /// The providers that may be called now, in order, or the reason none may. Checks, in order:
    /// enabled with a key, model allowed by policy, budget left, circuit not open.
    public static func eligibility(workspaceID: String, providers: [ProviderConfig], http: any OutboundHTTPClient,
                                   policy: RouterPolicy = RouterPolicy(), breakers: CircuitBreakerRegistry,
                                   budgetLeft: @Sendable () async -> Bool = { true },
                                   providerFactory: (ProviderConfig, any OutboundHTTPClient) -> any LLMProvider = { SentinelCore.makeProvider($0, http: $1) })
        async -> (eligible: [any LLMProvider], skippedReason: String?)
    {
        let entries = ordered(providers, policy: policy).map { Entry(config: $0, provider: providerFactory($0, http)) }
        let (eligible, reason) = await eligibility(entries, workspaceID: workspaceID, policy: policy, breakers: breakers,
                                                   budgetLeft: budgetLeft)
        return (eligible.map(\.provider), reason)
    }

    static func eligibility(_ entries: [Entry], workspaceID: String, policy: RouterPolicy, breakers: CircuitBreakerRegistry,
                            budgetLeft: @Sendable () async -> Bool) async -> (eligible: [Entry], skippedReason: String?) {
        let configured = entries.filter { $0.config.enabled && $0.config.hasKey }
        guard !configured.isEmpty else {
            return ([], entries.contains { $0.config.hasKey && !$0.config.enabled } ? SkipReason.allDisabled : SkipReason.noKey)
        }
        let allowed = configured.filter { policy.allowsModel($0.config.model) }
        guard !allowed.isEmpty else { return ([], SkipReason.noAllowedModel) }
        guard await budgetLeft() else { return ([], SkipReason.budgetSpent) }
        var available: [Entry] = []
        for entry in allowed where await breakers.isAvailable(workspaceID: workspaceID, providerID: entry.config.id) {
            available.append(entry)
        }
        guard !available.isEmpty else { return ([], SkipReason.circuitsOpen) }
        return (available, nil)
    }

    /// This router's eligible providers now (see the static `eligibility`).
    public func eligibility() async -> (eligible: [any LLMProvider], skippedReason: String?) {
        let (eligible, reason) = await Self.eligibility(entries, workspaceID: workspaceID, policy: policy, breakers: breakers,
                                                        budgetLeft: budgetLeft)
        return (eligible.map(\.provider), reason)
    }

    /// The configured kind of a provider id (for pricing a `ModelReply`).
    public func kind(ofProvider id: String) -> ProviderKind? {
        entries.first { $0.config.id == id }?.config.kind
    }

    /// Cost in USD of a reply this router produced.
    public func cost(of reply: ModelReply, prices: PriceTable = .builtIn) -> Double {
        guard let kind = kind(ofProvider: reply.provider) else { return 0 }
        return prices.cost(reply.usage, provider: kind, model: reply.model)
    }

    public func complete(_ prompt: ReviewPrompt) async throws -> ModelReply {
        let (eligible, reason) = await Self.eligibility(entries, workspaceID: workspaceID, policy: policy, breakers: breakers,
                                                        budgetLeft: budgetLeft)
        guard !eligible.isEmpty else { throw ProviderRouterError.noEligibleProvider(reason ?? SkipReason.noKey) }

        var failures: [String] = []
        providers: for entry in eligible {
            let id = entry.config.id
            let label = "\(id) (\(entry.config.kind.rawValue) \(entry.config.model))"
            for attempt in 1...settings.maxAttempts {
                try Task.checkCancellation()
                guard await breakers.allowRequest(workspaceID: workspaceID, providerID: id) else {
                    failures.append("\(label): circuit open")
                    continue providers
                }
                let (kind, model) = (entry.config.kind.rawValue, entry.config.model)
                let modelLabel = prices.metricsModel(kind: kind, model: model)
                let started = ContinuousClock.now
                do {
                    var reply = try await Telemetry.withSpan("ai.call", kind: .client,
                                                             attributes: ["gen_ai.system": kind, "gen_ai.request.model": model]) { span in
                        span.attributes["sentinel.attempt"] = attempt
                        return try await Telemetry.$callAttempt.withValue(attempt) {
                            try await entry.provider.complete(prompt, timeout: settings.callTimeout)
                        }
                    }
                    await breakers.recordSuccess(workspaceID: workspaceID, providerID: id)
                    reply.provider = id
                    reply.model = entry.config.model
                    metrics.aiCall(provider: kind, model: modelLabel, outcome: "ok", duration: ContinuousClock.now - started,
                                   inputTokens: reply.usage.inputTokens, outputTokens: reply.usage.outputTokens,
                                   costUSD: prices.cost(reply.usage, provider: entry.config.kind, model: model))
                    return reply
                } catch is CancellationError {
                    await breakers.recordNeutral(workspaceID: workspaceID, providerID: id)
                    throw CancellationError()
                } catch {
                    let providerError = Self.classify(error, secret: entry.config.apiKey)
                    metrics.aiCall(provider: kind, model: modelLabel, outcome: providerError.metricLabel, duration: ContinuousClock.now - started,
                                   inputTokens: 0, outputTokens: 0, costUSD: 0)
                    guard providerError.isRetryable else {
                        await breakers.recordNeutral(workspaceID: workspaceID, providerID: id)
                        if case .unauthorized = providerError { await keyRefused(id) }
                        failures.append(ProviderHTTP.redact("\(label): \(providerError)", secret: entry.config.apiKey))
                        continue providers
                    }
                    if await breakers.recordFailure(workspaceID: workspaceID, providerID: id) {
                        await circuitOpened(id, breakers.failureThreshold, await breakers.retryAt(workspaceID: workspaceID, providerID: id))
                        // This failure opened the circuit: it is what the run says (it said only
                        // "circuit open" when the next attempt was refused), and no more tries.
                        failures.append(ProviderHTTP.redact("\(label): \(providerError)" + (attempt > 1 ? " after \(attempt) attempts" : "")
                                                            + "; its circuit is now open", secret: entry.config.apiKey))
                        continue providers
                    }
                    if attempt == settings.maxAttempts {
                        failures.append(ProviderHTTP.redact("\(label): \(providerError)" + (attempt > 1 ? " after \(attempt) attempts" : ""), secret: entry.config.apiKey))
                        continue providers
                    }
                    // A provider that asks for a longer wait than a review makes is not asked again
                    // sooner than it said (which it refuses again): the next one is, at once.
                    if let wait = providerError.retryAfter, wait.isFinite, Duration.milliseconds(Int64(min(wait, 86_400) * 1000)) > settings.maxBackoff {
                        failures.append(ProviderHTTP.redact("\(label): \(providerError): longer than a review waits (\(settings.maxBackoff.components.seconds) s)",
                                                            secret: entry.config.apiKey))
                        continue providers
                    }
                    try await sleep(backoff(attempt: attempt, retryAfter: providerError.retryAfter))
                }
            }
        }
        throw ProviderRouterError.allProvidersFailed(failures)
    }

    /// Wait before attempt `attempt + 1`: the provider's `Retry-After` if given, else exponential
    /// from `initialBackoff`; never more than `maxBackoff`.
    public func backoff(attempt: Int, retryAfter: TimeInterval?) -> Duration {
        let wait: Duration
        if let retryAfter, retryAfter.isFinite, retryAfter >= 0 {
            wait = .milliseconds(Int64((min(retryAfter, 86_400) * 1000).rounded(.up)))
        } else {
            wait = settings.initialBackoff * (1 << min(max(attempt - 1, 0), 16))
        }
        return min(wait, settings.maxBackoff)
    }

    static func classify(_ error: any Error, secret: String) -> ProviderError {
        if let e = error as? ProviderError { return e }
        if let e = error as? OutboundHTTPError {
            switch e {
            case .timeout: return .timeout
            case .connection(let m): return .connection(ProviderHTTP.redact(m, secret: secret))
            case .responseTooLarge: return .malformed("the response exceeded the size limit")
            case .destinationRefused: return .badRequest(e.description)
            }
        }
        return .connection(ProviderHTTP.redact(String(describing: error).prefix(300).description, secret: secret))
    }
}
