import Foundation
import Synchronization

/// Builds each run's `ProviderRouter` from the workspace's stored providers (so key changes apply
/// to the next run without a restart) and the run's policy (preference order, allowed models).
/// One HTTP client and one breaker registry are shared by all runs of the appliance.
public struct WorkspaceModelResolver: ReviewModelResolver {
    let store: ProviderStore
    let http: any OutboundHTTPClient
    let breakers: CircuitBreakerRegistry
    let settings: RouterSettings
    let prices: PriceTable
    let metrics: SentinelMetrics
    /// The kinds of the providers runs resolved, for pricing their calls.
    let kinds = ProviderKinds()
    /// When each provider's refused key was last appended as `ProviderKeyRefused` (at most hourly).
    let keyRefusals = KeyRefusals()
    /// The models of the providers each workspace's runs last resolved, for pricing calls before they are made.
    let resolvedModels = ResolvedModels()

    public init(store: ProviderStore, http: any OutboundHTTPClient, breakers: CircuitBreakerRegistry = CircuitBreakerRegistry(),
                settings: RouterSettings = RouterSettings(), prices: PriceTable = .builtIn, metrics: SentinelMetrics = SentinelMetrics()) {
        self.metrics = metrics
        self.store = store
        self.http = http
        self.breakers = breakers
        self.settings = settings
        self.prices = prices
    }

    /// Priced from the kind of the provider the run resolved (`model(for:policy:)`), without reading
    /// the workspace file: that read queued behind the file's commits, in every model call's
    /// settlement. A provider unknown here (not resolved by this resolver) is read from the file.
    public func cost(of call: ModelCallRecord, in workspace: WorkspaceActor) async -> Double {
        if let kind = kinds.kind(of: call.provider, in: workspace.id) {
            return prices.cost(call.usage, provider: kind, model: call.model)
        }
        guard let provider = try? await store.get(call.provider, in: workspace), let kind = ProviderKind(rawValue: provider.kind) else { return 0 }
        kinds.remember([(provider.id, kind)], in: workspace.id)
        return prices.cost(call.usage, provider: kind, model: call.model)
    }

    /// A call of `tokens` (the engine's estimate: the prompt and `CallAdmission.expectedOutputTokens`
    /// of answer) at the price of the dearest model the workspace's providers may route it to.
    public func estimatedCost(ofCallWith tokens: Int, in workspace: WorkspaceActor) async -> Double {
        let models = resolvedModels.models(of: workspace.id)
        let output = min(tokens, CallAdmission.expectedOutputTokens)
        let usage = TokenUsage(inputTokens: tokens - output, outputTokens: output)
        return models.map { prices.cost(usage, provider: $0.kind, model: $0.model) }.max() ?? 0
    }

    public static func config(_ stored: StoredProvider) -> ProviderConfig? {
        guard let kind = ProviderKind(rawValue: stored.summary.kind) else { return nil }
        return ProviderConfig(kind: kind, id: stored.summary.id, apiKey: stored.apiKey ?? "", baseURL: stored.summary.baseURL.flatMap(URL.init(string:)),
                              model: stored.summary.model, apiVersion: stored.summary.apiVersion, deployment: stored.summary.deployment,
                              enabled: stored.summary.enabled, priority: stored.summary.priority)
    }

    public func model(for workspace: WorkspaceActor, policy: ReviewPolicy) async -> (model: (any ReviewModel)?, skippedReason: String?) {
        let stored: [StoredProvider]
        do { stored = try await store.active(in: workspace) } catch {
            return (nil, "the workspace's AI providers could not be read (\(error))")
        }
        let configs = stored.compactMap(Self.config)
        if configs.isEmpty {
            // Keys there, all switched off: saying none is configured sent admins to add one again.
            let disabled = ((try? await store.list(in: workspace)) ?? []).contains { !$0.enabled }
            return (nil, disabled ? ProviderRouter.SkipReason.allDisabled : ProviderRouter.SkipReason.noKey)
        }
        kinds.remember(configs.map { ($0.id, $0.kind) }, in: workspace.id)
        resolvedModels.remember(configs.map { (kind: $0.kind, model: $0.model) }, of: workspace.id)
        let router = ProviderRouter(workspaceID: workspace.id.rawValue, providers: configs, http: http,
                                    policy: RouterPolicy(providerPreference: policy.providerPreference, allowedModels: policy.allowedModels),
                                    settings: settings, breakers: breakers,
                                    budgetLeft: { [store] in await store.budgetLeft(in: workspace) },
                                    circuitOpened: { providerID, failures, retryAt in
                                        // Best effort: the run goes on with the other providers whatever happens here.
                                        _ = try? await workspace.write { tx in
                                            try tx.append(DomainEvent(type: "ProviderCircuitOpened", subject: "provider:\(providerID)", payload: [
                                                "provider": providerID, "failures": String(failures),
                                                "retry_at": retryAt.map(ISO8601.string) ?? "later"]))
                                        }
                                    },
                                    keyRefused: { [keyRefusals] providerID in
                                        guard keyRefusals.shouldTell(providerID, in: workspace.id, now: Date()) else { return }
                                        _ = try? await workspace.write { tx in
                                            try tx.append(DomainEvent(type: "ProviderKeyRefused", subject: "provider:\(providerID)", payload: [
                                                "provider": providerID, "reason": "the provider answered 401/403"]))
                                        }
                                    },
                                    metrics: metrics, prices: prices)
        let (eligible, reason) = await router.eligibility()
        if eligible.isEmpty { return (nil, reason ?? ProviderRouter.SkipReason.noKey) }
        return (router, nil)
    }
}

/// Provider kinds by workspace and provider id. A provider's kind is fixed when it is added and its
/// id is never given to another (`prv_` and 64 random bits), so what is remembered here stays true;
/// a deleted provider's entry only goes on pricing the calls made with it before.
final class ProviderKinds: Sendable {
    private struct Key: Hashable {
        let workspace: WorkspaceID
        let provider: String
    }
    private let known = Mutex<[Key: ProviderKind]>([:])

    func kind(of providerID: String, in workspace: WorkspaceID) -> ProviderKind? {
        known.withLock { $0[Key(workspace: workspace, provider: providerID)] }
    }

    func remember(_ providers: [(id: String, kind: ProviderKind)], in workspace: WorkspaceID) {
        known.withLock { known in
            for provider in providers { known[Key(workspace: workspace, provider: provider.id)] = provider.kind }
        }
    }
}

/// The provider kinds and models each workspace's runs last resolved (a run resolves them as it starts).
final class ResolvedModels: Sendable {
    private let known = Mutex<[WorkspaceID: [(kind: ProviderKind, model: String)]]>([:])

    func models(of workspace: WorkspaceID) -> [(kind: ProviderKind, model: String)] {
        known.withLock { $0[workspace] } ?? []
    }

    func remember(_ models: [(kind: ProviderKind, model: String)], of workspace: WorkspaceID) {
        known.withLock { $0[workspace] = models }
    }
}

/// When a provider's refused key was last told, per workspace and provider: every review meets a
/// revoked key again, and one message an hour says it.
final class KeyRefusals: Sendable {
    static let interval: TimeInterval = 3_600
    private let told = Mutex<[String: Date]>([:])

    /// True (and remembered) when nothing was told of this provider within the last hour. A last
    /// time after `now` means the wall clock was set back since: told again, rather than kept
    /// quiet until the clock has caught up and an hour more.
    func shouldTell(_ providerID: String, in workspace: WorkspaceID, now: Date) -> Bool {
        told.withLock { told in
            let key = workspace.rawValue + "/" + providerID
            if let last = told[key], (0..<Self.interval).contains(now.timeIntervalSince(last)) { return false }
            told[key] = now
            return true
        }
    }
}
