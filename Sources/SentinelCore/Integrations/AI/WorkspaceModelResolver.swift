import Foundation

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

    public init(store: ProviderStore, http: any OutboundHTTPClient, breakers: CircuitBreakerRegistry = CircuitBreakerRegistry(),
                settings: RouterSettings = RouterSettings(), prices: PriceTable = .builtIn, metrics: SentinelMetrics = SentinelMetrics()) {
        self.metrics = metrics
        self.store = store
        self.http = http
        self.breakers = breakers
        self.settings = settings
        self.prices = prices
    }

    public func cost(of call: ModelCallRecord, in workspace: WorkspaceActor) async -> Double {
        guard let provider = try? await store.get(call.provider, in: workspace), let kind = ProviderKind(rawValue: provider.kind) else { return 0 }
        return prices.cost(call.usage, provider: kind, model: call.model)
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
        if configs.isEmpty { return (nil, ProviderRouter.SkipReason.noKey) }
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
                                    metrics: metrics, prices: prices)
        let (eligible, reason) = await router.eligibility()
        if eligible.isEmpty { return (nil, reason ?? ProviderRouter.SkipReason.noKey) }
        return (router, nil)
    }
}
