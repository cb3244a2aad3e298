import Foundation

/// Builds GitHub sessions for review runs: one HTTP client per integration (with the integration's
/// own CA bundle when it has one) and one installation-token cache per integration, reused across
/// runs. `shutdown()` closes the clients when the appliance stops.
public actor GitHubConnector: SourceControlConnector {
    private struct Entry {
        let http: AsyncOutboundHTTPClient
        let tokens: GitHubTokenCache
        let apiURL: URL
        let botLogin: String?
    }

    let integrations: GitHubIntegrationCache
    let requestTimeout: Duration
    let destinations: DestinationPolicy
    private var entries: [IntegrationID: Entry] = [:]
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
        let entry: Entry
        if let cached = entries[id] {
            entry = cached
        } else {
            guard let integration = try await integrations.integration(id, in: workspace) else {
                throw SourceControlError.permanent("the repository's GitHub integration \(id) no longer exists")
            }
            let http: AsyncOutboundHTTPClient
            do { http = try AsyncOutboundHTTPClient(caBundlePEM: integration.caBundlePEM, destinations: destinations) } catch {
                throw SourceControlError.permanent("the integration's CA bundle cannot be used: \(error)")
            }
            let credentials = GitHubAppCredentials(appID: integration.appID, privateKeyPEM: integration.privateKeyPEM, apiBaseURL: integration.apiURL)
            entry = Entry(http: http, tokens: GitHubTokenCache(credentials: credentials, http: http), apiURL: integration.apiURL,
                          botLogin: integration.botLogin)
            entries[id] = entry
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

    public func shutdown() async {
        for entry in entries.values { await entry.http.shutdown() }
        entries.removeAll()
    }
}
