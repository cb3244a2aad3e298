import Foundation
import GRDB

/// A GitLab integration (gitlab.com or self-managed), decrypted in memory only: the instance,
/// its access token and the webhook secret GitLab sends as `X-Gitlab-Token`.
public struct GitLabIntegration: SourceControlIntegration {
    public let id: IntegrationID
    public let workspaceID: WorkspaceID
    /// The instance root, e.g. `https://gitlab.example.com`; the API is at `/api/v4`.
    public let baseURL: URL
    public let caBundlePEM: String?
    public let token: String
    public let webhookSecret: Data
    /// The token's user, whose notes are the integration's own.
    public let botUsername: String?

    public static func load(_ id: IntegrationID, from workspace: WorkspaceActor, service: IntegrationService) async throws -> GitLabIntegration? {
        try await service.loadGitLab(id, from: workspace)
    }
}

extension IntegrationService {
    public static let defaultGitLab = URL(string: "https://gitlab.com")!

    /// Validates and stores a GitLab integration in the workspace file, then makes it routable in
    /// control.sqlite. The token and the webhook secret are sealed with the master key (the token
    /// in the credential column, where a GitHub App keeps its private key). Check the token against
    /// the instance first (`GitLabTokenCheck`).
    public func addGitLab(workspace: WorkspaceActor, baseURL: URL, token: String, webhookSecret: Data, caBundlePEM: String? = nil,
                          botUsername: String? = nil, by actor: String? = nil) async throws -> IntegrationSummary {
        let token = token.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !token.isEmpty, token.count <= 1_000, !StoredText.hasControlCharacters(token, multiline: false) else {
            throw IntegrationError.invalid("the GitLab access token is empty or malformed")
        }
        guard webhookSecret.count >= 8 else { throw IntegrationError.invalid("the webhook secret must be at least 8 bytes (there is no unsecured mode)") }
        try Self.checkTexts(webhookSecret: webhookSecret, caBundlePEM: caBundlePEM,
                            [("base_url", baseURL.absoluteString, 500, false), ("bot_username", botUsername, 100, false)])
        try Self.validateAPIURL(baseURL)
        try Self.checkCABundle(caBundlePEM)
        let id = IntegrationID.generate()
        let key = masterKey
        let now = Date()
        let root = baseURL.absoluteString.hasSuffix("/") ? String(baseURL.absoluteString.dropLast()) : baseURL.absoluteString
        try await workspace.write { tx in
            try Self.checkRoom(tx.db)
            try tx.db.execute(sql: """
                INSERT INTO integrations (id, kind, app_id, api_url, ca_bundle, private_key, webhook_secret, bot_login, created_at)
                VALUES (?, 'gitlab', NULL, ?, ?, ?, ?, ?, ?)
                """, arguments: [id.rawValue, root, caBundlePEM,
                                 try key.seal(Data(token.utf8), context: IntegrationSecret.token.context(id)),
                                 try key.seal(webhookSecret, context: IntegrationSecret.webhookSecret.context(id)),
                                 botUsername, now.epoch])
            try tx.append(DomainEvent(type: "IntegrationAdded", subject: "integration:\(id)",
                                      payload: ["kind": "gitlab", "api_url": root].merging(actor.map { ["by": $0] } ?? [:]) { a, _ in a }))
        }
        try control.write { db in
            try db.execute(sql: "INSERT INTO integrations (id, workspace_id, kind, created_at) VALUES (?, ?, 'gitlab', ?)",
                           arguments: [id.rawValue, workspace.id.rawValue, now.epoch])
        }
        return IntegrationSummary(id: id.rawValue, workspaceID: workspace.id.rawValue, kind: "gitlab", appID: nil, apiURL: root,
                                  hasCABundle: caBundlePEM != nil, webhookPath: "/webhooks/gitlab/\(id)", createdAt: ISO8601.string(now))
    }

    /// Loads and decrypts a GitLab integration from its workspace file.
    public func loadGitLab(_ id: IntegrationID, from workspace: WorkspaceActor) async throws -> GitLabIntegration? {
        struct Stored: Sendable { let api: String; let ca: String?; let token: Data; let secret: Data; let bot: String? }
        let stored = try await workspace.read { db -> Stored? in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM integrations WHERE id = ? AND kind = 'gitlab'", arguments: [id.rawValue]) else {
                return nil
            }
            return Stored(api: row["api_url"], ca: row["ca_bundle"], token: row["private_key"], secret: row["webhook_secret"], bot: row["bot_login"])
        }
        guard let stored else { return nil }
        let token = try masterKey.open(stored.token, context: IntegrationSecret.token.context(id))
        let secret = try masterKey.open(stored.secret, context: IntegrationSecret.webhookSecret.context(id))
        guard let url = URL(string: stored.api) else { throw IntegrationError.invalid("stored GitLab URL is invalid") }
        return GitLabIntegration(id: id, workspaceID: workspace.id, baseURL: url, caBundlePEM: stored.ca,
                                 token: String(decoding: token, as: UTF8.self), webhookSecret: secret, botUsername: stored.bot)
    }
}

extension IntegrationService {
    /// Connects a GitLab instance (the API's `createGitLabIntegration` and the console's form): the
    /// base URL must be absolute; the token is checked against the instance before anything is
    /// stored (a refused token stores nothing); the bot user name defaults to the token's user.
    public func connectGitLab(workspace: WorkspaceActor, baseURL raw: String, token: String, webhookSecret: Data, caBundlePEM: String?,
                              botUsername: String?, destinations: DestinationPolicy, by actor: String? = nil) async throws -> IntegrationSummary {
        guard let baseURL = WebAddress.parse(raw), baseURL.scheme != nil else {
            throw IntegrationError.invalid("base_url must be absolute, like https://gitlab.example.com")
        }
        // Checked before the instance is called; `addGitLab` checks them again with the token. A
        // short webhook secret was told as "GitLab cannot be reached" when the instance was down.
        try Self.checkTexts(webhookSecret: webhookSecret, caBundlePEM: caBundlePEM,
                            [("base_url", raw, 500, false), ("bot_username", botUsername, 100, false), ("token", token, 1_000, false)])
        guard webhookSecret.count >= 8 else { throw IntegrationError.invalid("the webhook secret must be at least 8 bytes (there is no unsecured mode)") }
        let user = try await GitLabTokenCheck.user(baseURL: baseURL, token: token, caBundlePEM: caBundlePEM, destinations: destinations)
        return try await addGitLab(workspace: workspace, baseURL: baseURL, token: token, webhookSecret: webhookSecret, caBundlePEM: caBundlePEM,
                                   botUsername: botUsername ?? user.username, by: actor)
    }
}

/// The one check of a GitLab token before an integration is stored: the instance answers, the
/// token is valid, and (where GitLab can say, 15.5+) it has the `api` scope Sentinel needs to post.
public enum GitLabTokenCheck {
    public static func user(baseURL: URL, token: String, caBundlePEM: String?, destinations: DestinationPolicy) async throws -> GitLabUser {
        try IntegrationService.validateAPIURL(baseURL, field: "base_url", example: "https://gitlab.example.com")
        let http: AsyncOutboundHTTPClient
        do { http = try AsyncOutboundHTTPClient(caBundlePEM: caBundlePEM, destinations: destinations) } catch {
            throw IntegrationError.invalid("the CA file cannot be used: \(error)")
        }
        do {
            let client = GitLabClient(baseURL: baseURL, token: token.trimmingCharacters(in: .whitespacesAndNewlines), http: http, timeout: .seconds(15))
            let user = try await client.currentUser()
            if let scopes = try await client.tokenScopes(), !scopes.contains("api") {
                throw IntegrationError.invalid("the GitLab token lacks the api scope (it has: \(scopes.sorted().joined(separator: ", "))); "
                                               + "create one with the api scope")
            }
            await http.shutdown()
            return user
        } catch let error as GitLabAPIError {
            await http.shutdown()
            switch error.status {
            case 401: throw IntegrationError.invalid("GitLab refused the token (401): it is wrong, expired or revoked")
            case 403: throw IntegrationError.invalid("GitLab refused the token (403): it needs the api scope — \(error.message)")
            default: throw IntegrationError.invalid("\(error.description); is \(DestinationError.shown(baseURL)) the GitLab instance root?")
            }
        } catch let error as OutboundHTTPError {
            await http.shutdown()
            throw IntegrationError.invalid("GitLab at \(DestinationError.shown(baseURL)) cannot be reached: \(error)")
        } catch {
            await http.shutdown()
            throw error
        }
    }
}

/// Builds GitLab sessions for review runs and the catch-up sweep: one HTTP client per integration
/// (with its own CA bundle when it has one), its rate-limit budget, and the token's user, looked up
/// once. `shutdown()` closes the clients.
public actor GitLabConnector: SourceControlConnector, ReconcileConnector {
    private struct Entry {
        let client: GitLabClient
        let http: AsyncOutboundHTTPClient
        let budget: GitLabRateBudget
        var bot: GitLabUser?
        /// What the entry was made with: a rotated token or CA bundle makes a new entry.
        let token: String
        let caBundlePEM: String?

        func isCurrent(for integration: GitLabIntegration) -> Bool {
            token == integration.token && caBundlePEM == integration.caBundlePEM
        }
    }

    let integrations: GitLabIntegrationCache
    let requestTimeout: Duration
    let destinations: DestinationPolicy
    /// `server.public_url`: when set, each `Sentinel` status links to its run in the API.
    let publicURL: String?
    private var entries: [IntegrationID: Entry] = [:]
    /// Clients of entries replaced after a rotation: calls in flight may still use them, so they
    /// are shut down with the connector.
    private var replaced: [AsyncOutboundHTTPClient] = []

    public init(integrations: GitLabIntegrationCache, requestTimeout: Duration = .seconds(30), destinations: DestinationPolicy = DestinationPolicy(),
                publicURL: String? = nil) {
        self.integrations = integrations
        self.requestTimeout = requestTimeout
        self.destinations = destinations
        self.publicURL = publicURL.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
    }

    /// The integration's API client (for the delivery processor's membership checks too).
    public func client(for id: IntegrationID, in workspace: WorkspaceActor) async throws -> GitLabClient {
        try await entry(id, in: workspace).client
    }

    /// The online checks of integration `id` (`OnlineDoctor.checkGitLab`) through the client its
    /// reviews use; nil when the workspace has no GitLab integration of that id.
    public func check(_ id: IntegrationID, in workspace: WorkspaceActor, workspaceName: String) async throws -> [DoctorFinding]? {
        guard let integration = try await integrations.integration(id, in: workspace) else { return nil }
        let http: AsyncOutboundHTTPClient
        do { http = try await entry(id, in: workspace).http } catch let error as SourceControlError {
            return [DoctorFinding(severity: .error, check: "gitlab", message: "integration \(id) (workspace \(workspaceName)): \(error)",
                                  fix: "rotate the integration's CA bundle")]
        }
        return await OnlineDoctor().checkGitLab(integration, workspaceName: workspaceName, http: http)
    }

    /// The integration's client, made on first use and again after its token or CA bundle was
    /// rotated (the integration cache holds what is stored for up to a minute).
    private func entry(_ id: IntegrationID, in workspace: WorkspaceActor) async throws -> Entry {
        guard let integration = try await integrations.integration(id, in: workspace) else {
            throw SourceControlError.permanent("the repository's GitLab integration \(id) no longer exists")
        }
        if let cached = entries[id] {
            if cached.isCurrent(for: integration) { return cached }
            replaced.append(cached.http)
            entries[id] = nil
        }
        let http: AsyncOutboundHTTPClient
        do { http = try AsyncOutboundHTTPClient(caBundlePEM: integration.caBundlePEM, destinations: destinations) } catch {
            throw SourceControlError.permanent("the integration's CA bundle cannot be used: \(error)")
        }
        let budget = GitLabRateBudget()
        let entry = Entry(client: GitLabClient(baseURL: integration.baseURL, token: integration.token, http: http, timeout: requestTimeout,
                                               observe: { await budget.observe($0) }),
                          http: http, budget: budget, bot: nil, token: integration.token, caBundlePEM: integration.caBundlePEM)
        entries[id] = entry
        return entry
    }

    public func session(for repository: RepositoryRecord, in workspace: WorkspaceActor) async throws -> any SourceControlSession {
        guard let id = IntegrationID(repository.integrationID) else { throw SourceControlError.permanent("repository has an invalid integration id") }
        var entry = try await entry(id, in: workspace)
        if entry.bot == nil {
            let client = entry.client
            let user = try await GitLabSession(client: client, project: repository.externalID, bot: GitLabUser(id: 0, username: ""))
                .mapped { try await client.currentUser() }
            entry.bot = user
            if entries[id]?.token == entry.token { entries[id]?.bot = user }
        }
        guard let bot = entry.bot else { throw SourceControlError.permanent("the GitLab token's user is unknown") }
        var runURL: (@Sendable (Int64) -> String)?
        if let publicURL {
            // The run's page in the console, where a developer following the status's link signs in
            // (the API's run answered a browser with a 401 problem document).
            let base = "\(publicURL)/workspaces/\(workspace.id.rawValue)/runs/"
            runURL = { base + String($0) }
        }
        return GitLabSession(client: entry.client, project: repository.externalID, bot: bot, runURL: runURL)
    }

    public func reconcileSession(for integration: IntegrationID, in workspace: WorkspaceActor) async throws -> (any ReconcileSession)? {
        guard try await integrations.integration(integration, in: workspace) != nil else { return nil }
        let entry = try await entry(integration, in: workspace)
        return GitLabReconcileSession(client: entry.client, rateBudget: entry.budget)
    }

    public func shutdown() async {
        for entry in entries.values { await entry.http.shutdown() }
        for http in replaced { await http.shutdown() }
        entries.removeAll()
        replaced.removeAll()
    }
}
