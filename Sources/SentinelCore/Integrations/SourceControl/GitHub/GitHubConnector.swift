import Foundation

/// Builds GitHub sessions for review runs: one HTTP client per CA bundle (integrations without
/// one share a client, so connections to one host are pooled whatever the number of
/// integrations: descriptors stay bounded with thousands of workspaces) and one installation-token
/// cache per integration, reused across runs and catch-up sweeps. `shutdown()` closes the clients
/// when the appliance stops.
public actor GitHubConnector: SourceControlConnector, ReconcileConnector {
    private struct Entry {
        let http: AsyncOutboundHTTPClient
        let tokens: GitHubTokenCache
        let apiURL: URL
        let botLogin: String?
        /// What the entry was made with: a rotated key or CA bundle makes a new entry.
        let privateKeyPEM: String
        let caBundlePEM: String?
        /// The integration's API budget as GitHub last stated it (read by the catch-up sweep).
        let budget = GitHubRateBudget()

        func isCurrent(for integration: GitHubIntegration) -> Bool {
            privateKeyPEM == integration.privateKeyPEM && caBundlePEM == integration.caBundlePEM && botLogin == integration.botLogin
        }
    }

    let integrations: GitHubIntegrationCache
    let requestTimeout: Duration
    let destinations: DestinationPolicy
    private var entries: [IntegrationID: Entry] = [:]
    /// The clients by CA bundle (nil: the system roots).
    private var clients: [String?: AsyncOutboundHTTPClient] = [:]
    /// Bot logins learnt from GitHub (`GET /app`) for integrations that were not given one.
    private var botLogins: [IntegrationID: String] = [:]

    /// - Parameter destinations: where the clients may connect (`security.*`); GHES hosts on a
    ///   private network need an allowed CIDR.
    public init(integrations: GitHubIntegrationCache, requestTimeout: Duration = .seconds(30), destinations: DestinationPolicy = DestinationPolicy()) {
        self.integrations = integrations
        self.requestTimeout = requestTimeout
        self.destinations = destinations
    }

    public func session(for repository: RepositoryRecord, in workspace: WorkspaceActor) async throws -> any SourceControlSession {
        guard let id = IntegrationID(repository.integrationID) else { throw SourceControlError.permanent("repository has an invalid integration id") }
        guard let entry = try await entry(id, in: workspace) else {
            throw SourceControlError.permanent("the repository's GitHub integration \(id) no longer exists")
        }
        var installation = repository.installationID
        if installation == nil {
            installation = try await GitHubSession(client: GitHubClient(baseURL: entry.apiURL, installationID: 0, tokens: entry.tokens, http: entry.http))
                .mapped { try await entry.tokens.installationID(forRepository: repository.fullName) }
        }
        guard let installation else { throw SourceControlError.permanent("the GitHub App is not installed on \(repository.fullName)") }
        // The App's own bot account: only its reviews can carry a run marker Sentinel trusts.
        var botLogin = entry.botLogin ?? botLogins[id]
        if botLogin == nil {
            let learnt = try await GitHubSession(client: GitHubClient(baseURL: entry.apiURL, installationID: installation, tokens: entry.tokens,
                                                                      http: entry.http))
                .mapped { try await entry.tokens.botLogin() }
            botLogins[id] = learnt
            botLogin = learnt
        }
        return GitHubSession(client: GitHubClient(baseURL: entry.apiURL, installationID: installation, tokens: entry.tokens, http: entry.http,
                                                  timeout: requestTimeout), botLogin: botLogin)
    }

    /// The integration's client and token cache, made on first use and again after its
    /// credentials were rotated (the integration cache holds what is stored for up to a minute).
    private func entry(_ id: IntegrationID, in workspace: WorkspaceActor) async throws -> Entry? {
        guard let integration = try await integrations.integration(id, in: workspace) else { return nil }
        if let cached = entries[id], cached.isCurrent(for: integration) { return cached }
        let http: AsyncOutboundHTTPClient
        if let shared = clients[integration.caBundlePEM] {
            http = shared
        } else {
            do { http = try AsyncOutboundHTTPClient(caBundlePEM: integration.caBundlePEM, destinations: destinations) } catch {
                throw SourceControlError.permanent("the integration's CA bundle cannot be used: \(error)")
            }
            clients[integration.caBundlePEM] = http
        }
        let credentials = GitHubAppCredentials(appID: integration.appID, privateKeyPEM: integration.privateKeyPEM, apiBaseURL: integration.apiURL)
        let entry = Entry(http: http, tokens: GitHubTokenCache(credentials: credentials, http: http), apiURL: integration.apiURL,
                          botLogin: integration.botLogin, privateKeyPEM: integration.privateKeyPEM, caBundlePEM: integration.caBundlePEM)
        entries[id] = entry
        return entry
    }

    /// The online checks of integration `id` (`OnlineDoctor.checkGitHub`) through the client its
    /// reviews use; nil when the workspace has no GitHub integration of that id.
    public func check(_ id: IntegrationID, in workspace: WorkspaceActor, workspaceName: String) async throws -> [DoctorFinding]? {
        guard let integration = try await integrations.integration(id, in: workspace) else { return nil }
        let entry: Entry?
        do { entry = try await self.entry(id, in: workspace) } catch let error as SourceControlError {
            return [DoctorFinding(severity: .error, check: "github", message: "integration \(id) (workspace \(workspaceName)): \(error)",
                                  fix: "rotate the integration's CA bundle")]
        }
        guard let entry else { return nil }
        return await OnlineDoctor().checkGitHub(integration, workspaceName: workspaceName, http: entry.http)
    }

    public func reconcileSession(for integration: IntegrationID, in workspace: WorkspaceActor) async throws -> (any ReconcileSession)? {
        guard let entry = try await entry(integration, in: workspace) else { return nil }
        return GitHubReconcileSession(apiURL: entry.apiURL, tokens: entry.tokens, http: entry.http, timeout: requestTimeout, rateBudget: entry.budget)
    }

    public func shutdown() async {
        for client in clients.values { await client.shutdown() }
        clients.removeAll()
        entries.removeAll()
    }
}
