import Foundation

/// "Test connection" for one integration or AI provider (API `testIntegration` and
/// `testProvider`, the console's Test buttons): the checks `sentinel doctor --online` makes, for
/// that one alone, through the HTTP clients its reviews use (the integration's CA bundle, the
/// `security.*` destination rules). An integration: the API answers, the credentials are accepted,
/// the clock agrees; a provider: its models endpoint accepts the key (no tokens are spent).
public struct ConnectionTester: Sendable {
    let gitHub: GitHubConnector
    let gitLab: GitLabConnector
    let providers: ProviderStore
    let aiHTTP: any OutboundHTTPClient

    public init(gitHub: GitHubConnector, gitLab: GitLabConnector, providers: ProviderStore, aiHTTP: any OutboundHTTPClient) {
        self.gitHub = gitHub
        self.gitLab = gitLab
        self.providers = providers
        self.aiHTTP = aiHTTP
    }

    /// Whether a test passed: no check found an error (warnings allowed).
    public static func passed(_ findings: [DoctorFinding]) -> Bool {
        !findings.contains { $0.severity == .error }
    }

    /// The checks of integration `id`; `IntegrationError.notFound` when `workspace` has none of that id.
    public func integration(_ id: IntegrationID, in workspace: WorkspaceActor, workspaceName: String) async throws -> [DoctorFinding] {
        if let findings = try await gitHub.check(id, in: workspace, workspaceName: workspaceName) { return findings }
        if let findings = try await gitLab.check(id, in: workspace, workspaceName: workspaceName) { return findings }
        throw IntegrationError.notFound("integration \(id) does not exist in this workspace")
    }

    /// The check of AI provider `id`, enabled or not; `IntegrationError.notFound` when `workspace` has none of that id.
    public func provider(_ id: String, in workspace: WorkspaceActor, workspaceName: String) async throws -> [DoctorFinding] {
        [await check(try await providers.stored(id, in: workspace), workspaceName: workspaceName)]
    }

    /// The checks of every enabled AI provider of `workspace` (`sentinel doctor --online`).
    public func enabledProviders(in workspace: WorkspaceActor, workspaceName: String) async throws -> [DoctorFinding] {
        var findings: [DoctorFinding] = []
        for stored in try await providers.active(in: workspace) { findings.append(await check(stored, workspaceName: workspaceName)) }
        return findings
    }

    private func check(_ stored: StoredProvider, workspaceName: String) async -> DoctorFinding {
        guard let config = WorkspaceModelResolver.config(stored) else {
            return DoctorFinding(severity: .error, check: "ai-provider", message: "provider \(stored.summary.id): unknown kind \(stored.summary.kind)",
                                 fix: "remove the provider and add it again")
        }
        return await OnlineDoctor().checkProvider(config, workspaceName: workspaceName, http: aiHTTP)
    }
}
