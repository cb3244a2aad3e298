import Foundation

/// Decrypted GitHub integrations (App key, webhook secret, API URL, CA bundle), kept in memory for
/// a short while: webhook intake and review runs share this one cache, so a burst of deliveries or
/// runs costs one read and one decryption. Misses are never cached: an integration added from the
/// CLI works on its next delivery.
public actor GitHubIntegrationCache {
    private var entries: [IntegrationID: (integration: GitHubIntegration, loadedAt: ContinuousClock.Instant)] = [:]
    let service: IntegrationService
    let ttl: Duration

    public init(service: IntegrationService, ttl: Duration = .seconds(60)) {
        self.service = service
        self.ttl = ttl
    }

    private func fresh(_ id: IntegrationID) -> GitHubIntegration? {
        guard let entry = entries[id], ContinuousClock.now - entry.loadedAt < ttl else { return nil }
        return entry.integration
    }

    /// The integration, from the cache or from the workspace it routes to (nil when unknown).
    public func integration(_ id: IntegrationID, using supervisor: Supervisor) async throws -> GitHubIntegration? {
        if let cached = fresh(id) { return cached }
        guard let workspaceID = try await service.workspaceOf(id) else { return nil }
        let service = self.service
        let loaded = try await supervisor.withWorkspace(workspaceID) { try await service.loadGitHub(id, from: $0) }
        if let loaded { entries[id] = (loaded, .now) }
        return loaded
    }

    /// Whether the integration's workspace was deleted (never cached: a rare, final state).
    public func isRetired(_ id: IntegrationID) throws -> Bool {
        entries[id] = nil
        return try service.isRetired(id)
    }

    /// The integration, from the cache or from `workspace` (a job's own, already open).
    public func integration(_ id: IntegrationID, in workspace: WorkspaceActor) async throws -> GitHubIntegration? {
        if let cached = fresh(id), cached.workspaceID == workspace.id { return cached }
        let loaded = try await service.loadGitHub(id, from: workspace)
        if let loaded { entries[id] = (loaded, .now) }
        return loaded
    }
}
