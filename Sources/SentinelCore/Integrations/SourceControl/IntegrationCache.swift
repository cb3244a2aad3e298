import GRDB
import Foundation

/// A source-control integration decrypted for use: what verifies its webhooks and calls its API.
public protocol SourceControlIntegration: Sendable {
    var id: IntegrationID { get }
    var workspaceID: WorkspaceID { get }
    /// Loads and decrypts the integration of this kind from its workspace file; nil when there is none.
    static func load(_ id: IntegrationID, from workspace: WorkspaceActor, service: IntegrationService) async throws -> Self?
}

/// Decrypted integrations of one platform, kept in memory for a short while: webhook intake and
/// review runs share one cache per platform, so a burst of deliveries or runs costs one read and
/// one decryption. Misses are never cached: an integration added from the CLI works on its next
/// delivery. An integration rotated or removed from the CLI (another process) is noticed within
/// `revisionInterval`: each entry remembers `control.sqlite`'s integration revision from before it
/// was read, and is used only while the revision, read again at most that often, has not moved.
public actor IntegrationCache<Integration: SourceControlIntegration> {
    private struct Entry {
        let integration: Integration
        let loadedAt: ContinuousClock.Instant
        /// The integration revision known before it was read: never newer than what was read.
        let revision: Int64
    }

    private var entries: [IntegrationID: Entry] = [:]
    /// When each integration was last read again for a delivery its cached secret refused, and
    /// the integration revision then.
    private var reloadedAt: [IntegrationID: (at: ContinuousClock.Instant, revision: Int64?)] = [:]
    /// The integration revision as last read from `control.sqlite`, and when.
    private var known: (revision: Int64, readAt: ContinuousClock.Instant)?
    let service: IntegrationService
    let ttl: Duration
    let revisionInterval: Duration

    public init(service: IntegrationService, ttl: Duration = .seconds(60), revisionInterval: Duration = .seconds(1)) {
        self.service = service
        self.ttl = ttl
        self.revisionInterval = revisionInterval
    }

    /// The integration revision, read again when the last reading is `revisionInterval` old; nil
    /// when it cannot be read (nothing is cached then: the workspace files stay the truth).
    private func revision() -> Int64? {
        let now = ContinuousClock.now
        if let known, now - known.readAt < revisionInterval { return known.revision }
        do {
            let current = try service.control.integrationRevision()
            known = (current, now)
            return current
        } catch {
            known = nil
            return nil
        }
    }

    private func fresh(_ id: IntegrationID) -> Integration? {
        guard let entry = entries[id], ContinuousClock.now - entry.loadedAt < ttl, entry.revision == revision() else { return nil }
        return entry.integration
    }

    private func keep(_ loaded: Integration?, _ id: IntegrationID, readUnder revision: Int64?) {
        guard let loaded, let revision else { return }
        entries[id] = Entry(integration: loaded, loadedAt: .now, revision: revision)
    }

    /// The integration, from the cache or from the workspace it routes to (nil when unknown).
    public func integration(_ id: IntegrationID, using supervisor: Supervisor) async throws -> Integration? {
        if let cached = fresh(id) { return cached }
        guard let workspaceID = try await service.workspaceOf(id) else { return nil }
        let service = self.service
        let basis = revision()
        let loaded = try await supervisor.withWorkspace(workspaceID) { try await Integration.load(id, from: $0, service: service) }
        keep(loaded, id, readUnder: basis)
        return loaded
    }

    /// Drops a cached integration (it was just removed or its credentials rotated): its next
    /// delivery looks it up again.
    public func forget(_ id: IntegrationID) {
        entries[id] = nil
    }

    /// The integration as stored now, read again unless it was read again less than `interval`
    /// ago and no integration changed since (nil then, or when it is gone): a delivery whose
    /// signature the cached webhook secret refuses asks for this, so a secret rotated from the
    /// command line (which this process's cache has not seen) works from the next delivery on,
    /// while a stream of refused deliveries reads the workspace file at most once per `interval`.
    /// The integration revision is read for every such delivery (one row of `control.sqlite`): a
    /// refused delivery just before a rotation once spent the re-read on the old secret, and the
    /// first deliveries signed with the new one were refused for up to `interval`.
    public func reloaded(_ id: IntegrationID, using supervisor: Supervisor, atMostEvery interval: Duration) async throws -> Integration? {
        let current = try? service.control.integrationRevision()
        if let last = reloadedAt[id], ContinuousClock.now - last.at < interval, current == nil || current == last.revision { return nil }
        if let current { known = (current, .now) }
        reloadedAt[id] = (.now, current)
        entries[id] = nil
        return try await integration(id, using: supervisor)
    }

    /// Whether the integration's workspace was deleted (never cached: a rare, final state).
    public func isRetired(_ id: IntegrationID) throws -> Bool {
        entries[id] = nil
        return try service.isRetired(id)
    }

    /// The integration, from the cache or from `workspace` (a job's own, already open).
    public func integration(_ id: IntegrationID, in workspace: WorkspaceActor) async throws -> Integration? {
        if let cached = fresh(id), cached.workspaceID == workspace.id { return cached }
        let basis = revision()
        let loaded = try await Integration.load(id, from: workspace, service: service)
        keep(loaded, id, readUnder: basis)
        return loaded
    }
}

public typealias GitHubIntegrationCache = IntegrationCache<GitHubIntegration>
public typealias GitLabIntegrationCache = IntegrationCache<GitLabIntegration>

extension GitHubIntegration: SourceControlIntegration {
    public static func load(_ id: IntegrationID, from workspace: WorkspaceActor, service: IntegrationService) async throws -> GitHubIntegration? {
        try await service.loadGitHub(id, from: workspace)
    }
}

/// Review runs of every platform: each repository's session comes from the connector of its
/// integration's kind (`github`, `gitlab`).
public struct SourceControlPlatforms: SourceControlConnector {
    let connectors: [String: any SourceControlConnector]

    public init(_ connectors: [String: any SourceControlConnector]) {
        self.connectors = connectors
    }

    public func session(for repository: RepositoryRecord, in workspace: WorkspaceActor) async throws -> any SourceControlSession {
        let integrationID = repository.integrationID
        let kind = try await workspace.read { db in
            try String.fetchOne(db, sql: "SELECT kind FROM integrations WHERE id = ?", arguments: [integrationID])
        }
        guard let kind, !kind.hasPrefix("removed:") else {
            throw SourceControlError.permanent("the repository's integration \(integrationID) was removed")
        }
        guard let connector = connectors[kind] else { throw SourceControlError.permanent("no connector for \(kind) integrations") }
        return try await connector.session(for: repository, in: workspace)
    }
}
