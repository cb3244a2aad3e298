import Foundation
import GRDB
import SentinelCore

/// What a workspace is configured with: source-control integrations, AI providers, repositories
/// and settings (policy versions).
struct ConfigurationHandlers: Sendable {
    let d: APIDependencies

    static func repository(_ r: RepositoryRecord) -> Components.Schemas.Repository {
        .init(enabled: r.enabled, fullName: r.fullName, id: Int(r.id), integrationId: r.integrationID, registeredAt: Date(epoch: r.registeredAt),
              removed: r.removed)
    }

    static func settings(scope: String, _ version: PolicyVersion?) throws -> Components.Schemas.Settings {
        .init(createdAt: version.flatMap { ISO8601.date($0.createdAt) }, createdBy: version?.createdBy, locks: version?.locks ?? [],
              scope: scope, values: try .converted(from: version?.values ?? [:]), versionId: version.map { Int($0.id) })
    }

    // MARK: Integrations

    func listIntegrations(_ input: Operations.ListIntegrations.Input, _ context: WorkspaceContext) async throws
        -> Operations.ListIntegrations.Output {
        let items = try await d.integrations.list(in: context.workspace)
        return .ok(.init(body: .json(.init(items: try items.map { try .converted(from: $0) }))))
    }

    func createIntegration(_ input: Operations.CreateIntegration.Input, _ context: WorkspaceContext) async throws
        -> Operations.CreateIntegration.Output {
        guard case .json(let body) = input.body else { throw Problem(status: .badRequest, detail: "a JSON body is required") }
        let apiURL = try IntegrationService.gitHubAPIURL(body.apiUrl)
        let summary = try await d.integrations.addGitHub(workspace: context.workspace, appID: Int64(body.appId), privateKeyPEM: body.privateKey,
                                                         webhookSecret: Data(body.webhookSecret.utf8), apiURL: apiURL,
                                                         caBundlePEM: body.caBundle, botLogin: body.botLogin, by: context.actorName)
        return .created(.init(body: .json(.init(integration: try .converted(from: summary),
                                                webhookUrl: context.request.baseURL + summary.webhookPath))))
    }

    func createGitLabIntegration(_ input: Operations.CreateGitLabIntegration.Input, _ context: WorkspaceContext) async throws
        -> Operations.CreateGitLabIntegration.Output {
        guard case .json(let body) = input.body else { throw Problem(status: .badRequest, detail: "a JSON body is required") }
        let summary = try await d.integrations.connectGitLab(workspace: context.workspace, baseURL: body.baseUrl, token: body.token,
                                                             webhookSecret: Data(body.webhookSecret.utf8), caBundlePEM: body.caBundle,
                                                             botUsername: body.botUsername, destinations: d.destinations, by: context.actorName)
        return .created(.init(body: .json(.init(integration: try .converted(from: summary),
                                                webhookUrl: context.request.baseURL + summary.webhookPath))))
    }

    func updateIntegration(_ input: Operations.UpdateIntegration.Input, _ context: WorkspaceContext) async throws
        -> Operations.UpdateIntegration.Output {
        guard case .json(let body) = input.body else { throw Problem(status: .badRequest, detail: "a JSON body is required") }
        guard let id = IntegrationID(input.path.integrationId) else { throw IntegrationError.notFound("no such integration") }
        let credentials = IntegrationCredentials(webhookSecret: body.webhookSecret.map { Data($0.utf8) }, privateKeyPEM: body.privateKey,
                                                 token: body.token, caBundlePEM: body.caBundle)
        let summary = try await d.integrations.rotate(id, in: context.workspace, credentials: credentials, by: context.actorName,
                                                      destinations: d.destinations)
        await d.gitHubIntegrations.forget(id)
        await d.gitLabIntegrations.forget(id)
        return .ok(.init(body: .json(.init(integration: try .converted(from: summary), webhookUrl: context.request.baseURL + summary.webhookPath))))
    }

    func deleteIntegration(_ input: Operations.DeleteIntegration.Input, _ context: WorkspaceContext) async throws
        -> Operations.DeleteIntegration.Output {
        guard let id = IntegrationID(input.path.integrationId) else { throw IntegrationError.notFound("no such integration") }
        try await d.integrations.remove(id, from: context.workspace, by: context.actorName)
        await d.gitHubIntegrations.forget(id)
        await d.gitLabIntegrations.forget(id)
        return .noContent(.init())
    }

    // MARK: AI providers

    func listProviders(_ input: Operations.ListProviders.Input, _ context: WorkspaceContext) async throws -> Operations.ListProviders.Output {
        let items = try await d.providers.list(in: context.workspace)
        return .ok(.init(body: .json(.init(items: try items.map { try .converted(from: $0) }))))
    }

    func createProvider(_ input: Operations.CreateProvider.Input, _ context: WorkspaceContext) async throws -> Operations.CreateProvider.Output {
        guard case .json(let body) = input.body else { throw Problem(status: .badRequest, detail: "a JSON body is required") }
        let baseURL = try body.baseUrl.map { raw -> URL in
            guard let url = WebAddress.parse(raw), url.scheme != nil else { throw IntegrationError.invalid("base_url is not an absolute URL") }
            return url
        }
        let summary = try await d.providers.add(kind: body.kind.rawValue, apiKey: body.apiKey, model: body.model, baseURL: baseURL,
                                                apiVersion: body.apiVersion, deployment: body.deployment, priority: body.priority ?? 100,
                                                by: context.actorName, in: context.workspace)
        return .created(.init(body: .json(try .converted(from: summary))))
    }

    func updateProvider(_ input: Operations.UpdateProvider.Input, _ context: WorkspaceContext) async throws -> Operations.UpdateProvider.Output {
        guard case .json(let body) = input.body else { throw Problem(status: .badRequest, detail: "a JSON body is required") }
        let id = input.path.providerId
        var summary = try await d.providers.get(id, in: context.workspace)
        if let key = body.apiKey { summary = try await d.providers.rotate(id, apiKey: key, by: context.actorName, in: context.workspace) }
        if let enabled = body.enabled { summary = try await d.providers.setEnabled(id, enabled, by: context.actorName, in: context.workspace) }
        if let priority = body.priority { summary = try await d.providers.setPriority(id, priority, by: context.actorName, in: context.workspace) }
        return .ok(.init(body: .json(try .converted(from: summary))))
    }

    func testProvider(_ input: Operations.TestProvider.Input, _ context: WorkspaceContext) async throws -> Operations.TestProvider.Output {
        let findings = try await d.connections.provider(input.path.providerId, in: context.workspace, workspaceName: try workspaceName(context))
        return .ok(.init(body: .json(Self.connectionTest(findings))))
    }

    func testIntegration(_ input: Operations.TestIntegration.Input, _ context: WorkspaceContext) async throws -> Operations.TestIntegration.Output {
        guard let id = IntegrationID(input.path.integrationId) else { throw IntegrationError.notFound("integration \(input.path.integrationId) does not exist in this workspace") }
        let findings = try await d.connections.integration(id, in: context.workspace, workspaceName: try workspaceName(context))
        return .ok(.init(body: .json(Self.connectionTest(findings))))
    }

    private func workspaceName(_ context: WorkspaceContext) throws -> String {
        try d.control.workspace(context.workspaceID)?.name ?? context.workspaceID.rawValue
    }

    static func connectionTest(_ findings: [DoctorFinding]) -> Components.Schemas.ConnectionTestResult {
        .init(ok: ConnectionTester.passed(findings),
              checks: findings.map { .init(severity: .init(rawValue: $0.severity.rawValue) ?? .error, message: $0.message, fix: $0.fix) })
    }

    func deleteProvider(_ input: Operations.DeleteProvider.Input, _ context: WorkspaceContext) async throws -> Operations.DeleteProvider.Output {
        try await d.providers.delete(input.path.providerId, by: context.actorName, in: context.workspace)
        return .noContent(.init())
    }

    func getAIBudget(_ input: Operations.GetAIBudget.Input, _ context: WorkspaceContext) async throws -> Operations.GetAIBudget.Output {
        .ok(.init(body: .json(try await aiBudget(context))))
    }

    func setAIBudget(_ input: Operations.SetAIBudget.Input, _ context: WorkspaceContext) async throws -> Operations.SetAIBudget.Output {
        guard case .json(let body) = input.body else { throw Problem(status: .badRequest, detail: "a JSON body is required") }
        try await d.providers.setMonthlyBudget(body.usd, by: context.actorName, in: context.workspace)
        return .ok(.init(body: .json(try await aiBudget(context))))
    }

    func aiBudget(_ context: WorkspaceContext) async throws -> Components.Schemas.AIBudget {
        .init(spentUsd: try await d.providers.spentThisMonth(in: context.workspace), usd: try await d.providers.monthlyBudget(in: context.workspace))
    }

    // MARK: Repositories

    func listRepositories(_ input: Operations.ListRepositories.Input, _ context: WorkspaceContext) async throws
        -> Operations.ListRepositories.Output {
        let window = PageWindow(input.query.limit)
        let after = try PageWindow.position(input.query.cursor, start: 0)
        let repos = try await context.workspace.read { db in try RepositoryStore.list(after: after, limit: window.limit + 1, in: db) }
        return .ok(.init(body: .json(.init(items: window.items(repos).map(Self.repository),
                                           nextCursor: window.nextCursor(repos) { String($0.id) }))))
    }

    func updateRepository(_ input: Operations.UpdateRepository.Input, _ context: WorkspaceContext) async throws
        -> Operations.UpdateRepository.Output {
        guard case .json(let body) = input.body else { throw Problem(status: .badRequest, detail: "a JSON body is required") }
        let (enabled, id) = (body.enabled, try PathID.parse(input.path.repositoryId, what: "repository"))
        let plan = try await d.billing.plan(for: context.workspaceID)
        let updated = try await context.workspace.write { tx in try RepositoryStore.setEnabled(enabled, id: id, plan: plan, by: context.actorName, in: &tx) }
        return .ok(.init(body: .json(Self.repository(updated))))
    }

    // MARK: Settings

    func getWorkspaceSettings(_ input: Operations.GetWorkspaceSettings.Input, _ context: WorkspaceContext) async throws
        -> Operations.GetWorkspaceSettings.Output {
        let version = try await context.workspace.read { db in try PolicyService.latest(scope: PolicyService.workspaceScope, in: db) }
        return .ok(.init(body: .json(try Self.settings(scope: PolicyService.workspaceScope, version))))
    }

    func putWorkspaceSettings(_ input: Operations.PutWorkspaceSettings.Input, _ context: WorkspaceContext) async throws
        -> Operations.PutWorkspaceSettings.Output {
        guard case .json(let body) = input.body else { throw Problem(status: .badRequest, detail: "a JSON body is required") }
        let version = try await save(values: body.values, locks: body.locks, scope: PolicyService.workspaceScope, context)
        return .ok(.init(body: .json(try Self.settings(scope: PolicyService.workspaceScope, version))))
    }

    func getRepositorySettings(_ input: Operations.GetRepositorySettings.Input, _ context: WorkspaceContext) async throws
        -> Operations.GetRepositorySettings.Output {
        let scope = PolicyService.repositoryScope(try await repository(input.path.repositoryId, context))
        let version = try await context.workspace.read { db in try PolicyService.latest(scope: scope, in: db) }
        return .ok(.init(body: .json(try Self.settings(scope: scope, version))))
    }

    func putRepositorySettings(_ input: Operations.PutRepositorySettings.Input, _ context: WorkspaceContext) async throws
        -> Operations.PutRepositorySettings.Output {
        guard case .json(let body) = input.body else { throw Problem(status: .badRequest, detail: "a JSON body is required") }
        let id = try await repository(input.path.repositoryId, context)
        let scope = PolicyService.repositoryScope(id)
        let version = try await save(values: body.values, locks: body.locks, scope: scope, context)
        var settings = try Self.settings(scope: scope, version)
        settings.notApplied = try await context.workspace.read { db in try PolicyService.repositorySettingsNotApplied(id, in: db) }.map(\.message)
        return .ok(.init(body: .json(settings)))
    }

    func explainConfig(_ input: Operations.ExplainConfig.Input, _ context: WorkspaceContext) async throws -> Operations.ExplainConfig.Output {
        let id = try await repository(input.path.repositoryId, context)
        let resolved = try await context.workspace.read { db in try PolicyService.resolve(in: db, repositoryID: id, fileText: nil) }
        return .ok(.init(body: .json(try .decoded(from: resolved.effective.explainJSON(pretty: false)))))
    }

    func previewConfig(_ input: Operations.PreviewConfig.Input, _ context: WorkspaceContext) async throws -> Operations.PreviewConfig.Output {
        guard case .json(let body) = input.body else { throw Problem(status: .badRequest, detail: "a JSON body is required") }
        let bytes = body.file.utf8.count
        guard bytes <= RepositoryConfigParser.maxBytes else {
            throw Problem(status: .contentTooLarge, detail: "file: \(bytes) bytes; a .sentinel.yml has at most \(RepositoryConfigParser.maxBytes)")
        }
        let id = try await repository(input.path.repositoryId, context)
        let resolved = try await context.workspace.read { db in try PolicyService.resolve(in: db, repositoryID: id, fileText: body.file) }
        var explain = try Components.Schemas.Explain.decoded(from: resolved.effective.explainJSON(pretty: false))
        explain.diagnostics = resolved.diagnostics.map(\.formatted)
        return .ok(.init(body: .json(explain)))
    }

    func save(values: some Encodable, locks: [String]?, scope: String, _ context: WorkspaceContext) async throws -> PolicyVersion? {
        let values = try [String: PolicyValue].converted(from: values)
        let (locks, by) = (Set(locks ?? []), context.actorName)
        return try await context.workspace.write { tx -> PolicyVersion? in
            try PolicyService.saveVersion(scope: scope, values: values, locks: locks, by: by, in: &tx)
            return try PolicyService.latest(scope: scope, in: tx.db)
        }
    }

    /// A repository of this workspace by id, or 404.
    func repository(_ raw: String, _ context: WorkspaceContext) async throws -> Int64 {
        let id = try PathID.parse(raw, what: "repository")
        guard let repo = try await context.workspace.read({ db in try RepositoryStore.find(id: id, in: db) }), !repo.removed else {
            throw StorageError.notFound("no such repository")
        }
        return repo.id
    }
}
