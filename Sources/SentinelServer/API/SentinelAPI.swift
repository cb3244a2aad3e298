import Foundation
import Hummingbird
import Logging
import OpenAPIHummingbird
import OpenAPIRuntime
import SentinelCore

/// What the API's handlers work with, passed in by `Appliance` (no globals).
struct APIDependencies: Sendable {
    let dataDirectory: DataDirectory
    let identity: IdentityService
    let workspaces: WorkspaceService
    let integrations: IntegrationService
    let providers: ProviderStore
    let billing: any BillingProvider
    let catalog: PlanCatalog
    let control: ControlStore
    let loginThrottle: LoginThrottle
    /// `https` or `http`: how callers reach the server, for webhook URLs.
    let publicScheme: String
    /// `server.public_url`, when set: the base of webhook URLs instead of the request's Host.
    let publicURL: String?
    /// Where outbound calls may go (`security.*`): a GitLab token is checked against its instance.
    let destinations: DestinationPolicy
    /// Workspaces open and closed for the API (deleting one goes through it).
    let supervisor: Supervisor
    /// Holds deliveries of workspaces whose file is not open; a deleted workspace's go with it.
    let journal: IntakeJournal
    /// The decrypted integrations intake uses: a removed integration is dropped from them at once.
    let gitHubIntegrations: GitHubIntegrationCache
    let gitLabIntegrations: GitLabIntegrationCache
    /// Notification channels and their test messages (the service the CLI and the listener jobs use).
    let notifications: Notifications
    /// "Test connection" for an integration or AI provider, through the clients reviews use.
    let connections: ConnectionTester
    /// Reviews (a workspace's unfinished reviews conclude their checks before it is deleted).
    let reviews: ReviewRunner
    /// The appliance's log, for what an operation does beside its answer.
    let logger: Logger
}

/// The `/api/v1` operations: the generated `APIProtocol`, implemented by one small handler type per
/// domain. This type only hands each operation to its domain with the typed context the access
/// middleware established (`APIContext`); the handlers translate between the generated types and
/// the domains.
struct SentinelAPI: APIProtocol {
    let document: APIDocument
    let identity: IdentityHandlers
    let workspaces: WorkspaceHandlers
    let configuration: ConfigurationHandlers
    let reviews: ReviewHandlers
    let notifications: NotificationHandlers

    init(document: APIDocument, dependencies: APIDependencies) {
        self.document = document
        identity = IdentityHandlers(d: dependencies)
        workspaces = WorkspaceHandlers(d: dependencies)
        configuration = ConfigurationHandlers(d: dependencies)
        reviews = ReviewHandlers(d: dependencies)
        notifications = NotificationHandlers(d: dependencies)
    }

    /// Registers every operation under `/api/v1` with its middlewares: request information from the
    /// Hummingbird context, the response headers of every answer, then access (who may call it, the workspace pinned open), then the
    /// request checks against the document, then the generated decoding and the handler.
    static func register(on router: Router<SentinelRequestContext>, document: APIDocument, dependencies: APIDependencies,
                         supervisor: Supervisor) throws {
        let group = router.group("api/v1")
            .add(middleware: RequestInfoMiddleware(publicScheme: dependencies.publicScheme, publicURL: dependencies.publicURL))
            .add(middleware: APIResponseHeadersMiddleware())
        let api = SentinelAPI(document: document, dependencies: dependencies)
        try api.registerHandlers(
            on: group, serverURL: URL(fileURLWithPath: "/"),
            configuration: Configuration(dateTranscoder: .iso8601WithFractionalSeconds, jsonEncodingOptions: [.sortedKeys, .withoutEscapingSlashes]),
            middlewares: [
                AccessMiddleware(document: document, identity: dependencies.identity, supervisor: supervisor),
                RequestValidationMiddleware(document: document),
            ])
    }

    // MARK: The document

    func getOpenAPI(_ input: Operations.GetOpenAPI.Input) async throws -> Operations.GetOpenAPI.Output {
        .ok(.init(body: .json(try OpenAPIValueContainer.decoded(from: document.json))))
    }

    func getOpenAPIYAML(_ input: Operations.GetOpenAPIYAML.Input) async throws -> Operations.GetOpenAPIYAML.Output {
        .ok(.init(body: .yaml(HTTPBody(document.yaml))))
    }

    // MARK: Identity

    func completeSetup(_ input: Operations.CompleteSetup.Input) async throws -> Operations.CompleteSetup.Output {
        try await identity.completeSetup(input, try APIContext.anonymous())
    }
    func login(_ input: Operations.Login.Input) async throws -> Operations.Login.Output {
        try await identity.login(input, try APIContext.anonymous())
    }
    func logout(_ input: Operations.Logout.Input) async throws -> Operations.Logout.Output {
        try await identity.logout(input, try APIContext.user())
    }
    func me(_ input: Operations.Me.Input) async throws -> Operations.Me.Output {
        try await identity.me(input, try APIContext.user())
    }
    func listTokens(_ input: Operations.ListTokens.Input) async throws -> Operations.ListTokens.Output {
        try await identity.listTokens(input, try APIContext.user())
    }
    func createToken(_ input: Operations.CreateToken.Input) async throws -> Operations.CreateToken.Output {
        try await identity.createToken(input, try APIContext.user())
    }
    func revokeToken(_ input: Operations.RevokeToken.Input) async throws -> Operations.RevokeToken.Output {
        try await identity.revokeToken(input, try APIContext.user())
    }
    func changePassword(_ input: Operations.ChangePassword.Input) async throws -> Operations.ChangePassword.Output {
        try await identity.changePassword(input, try APIContext.user())
    }
    func listUsers(_ input: Operations.ListUsers.Input) async throws -> Operations.ListUsers.Output {
        try await identity.listUsers(input, try APIContext.user())
    }
    func listApplianceAuditEvents(_ input: Operations.ListApplianceAuditEvents.Input) async throws -> Operations.ListApplianceAuditEvents.Output {
        try await identity.listApplianceAuditEvents(input, try APIContext.user())
    }
    func createUser(_ input: Operations.CreateUser.Input) async throws -> Operations.CreateUser.Output {
        try await identity.createUser(input, try APIContext.user())
    }

    func updateUser(_ input: Operations.UpdateUser.Input) async throws -> Operations.UpdateUser.Output {
        try await identity.updateUser(input, try APIContext.user())
    }
    func deleteUser(_ input: Operations.DeleteUser.Input) async throws -> Operations.DeleteUser.Output {
        try await identity.deleteUser(input, try APIContext.user())
    }

    // MARK: Workspaces, members, teams, audit

    func renameWorkspace(_ input: Operations.RenameWorkspace.Input) async throws -> Operations.RenameWorkspace.Output {
        try await workspaces.renameWorkspace(input, try APIContext.user())
    }
    func deleteWorkspace(_ input: Operations.DeleteWorkspace.Input) async throws -> Operations.DeleteWorkspace.Output {
        try await workspaces.deleteWorkspace(input, try APIContext.user())
    }

    func listWorkspaces(_ input: Operations.ListWorkspaces.Input) async throws -> Operations.ListWorkspaces.Output {
        try await workspaces.listWorkspaces(input, try APIContext.user())
    }
    func createWorkspace(_ input: Operations.CreateWorkspace.Input) async throws -> Operations.CreateWorkspace.Output {
        try await workspaces.createWorkspace(input, try APIContext.user())
    }
    func setWorkspacePlan(_ input: Operations.SetWorkspacePlan.Input) async throws -> Operations.SetWorkspacePlan.Output {
        try await workspaces.setWorkspacePlan(input, try APIContext.user())
    }
    func getWorkspace(_ input: Operations.GetWorkspace.Input) async throws -> Operations.GetWorkspace.Output {
        try await workspaces.getWorkspace(input, try APIContext.workspace())
    }
    func listMembers(_ input: Operations.ListMembers.Input) async throws -> Operations.ListMembers.Output {
        try await workspaces.listMembers(input, try APIContext.workspace())
    }
    func addMember(_ input: Operations.AddMember.Input) async throws -> Operations.AddMember.Output {
        try await workspaces.addMember(input, try APIContext.workspace())
    }
    func updateMember(_ input: Operations.UpdateMember.Input) async throws -> Operations.UpdateMember.Output {
        try await workspaces.updateMember(input, try APIContext.workspace())
    }
    func removeMember(_ input: Operations.RemoveMember.Input) async throws -> Operations.RemoveMember.Output {
        try await workspaces.removeMember(input, try APIContext.workspace())
    }
    func listTeams(_ input: Operations.ListTeams.Input) async throws -> Operations.ListTeams.Output {
        try await workspaces.listTeams(input, try APIContext.workspace())
    }
    func createTeam(_ input: Operations.CreateTeam.Input) async throws -> Operations.CreateTeam.Output {
        try await workspaces.createTeam(input, try APIContext.workspace())
    }
    func deleteTeam(_ input: Operations.DeleteTeam.Input) async throws -> Operations.DeleteTeam.Output {
        try await workspaces.deleteTeam(input, try APIContext.workspace())
    }
    func addTeamMember(_ input: Operations.AddTeamMember.Input) async throws -> Operations.AddTeamMember.Output {
        try await workspaces.addTeamMember(input, try APIContext.workspace())
    }
    func removeTeamMember(_ input: Operations.RemoveTeamMember.Input) async throws -> Operations.RemoveTeamMember.Output {
        try await workspaces.removeTeamMember(input, try APIContext.workspace())
    }
    func listAuditEvents(_ input: Operations.ListAuditEvents.Input) async throws -> Operations.ListAuditEvents.Output {
        try await workspaces.listAuditEvents(input, try APIContext.workspace())
    }

    // MARK: Integrations, providers, repositories, settings

    func listIntegrations(_ input: Operations.ListIntegrations.Input) async throws -> Operations.ListIntegrations.Output {
        try await configuration.listIntegrations(input, try APIContext.workspace())
    }
    func createIntegration(_ input: Operations.CreateIntegration.Input) async throws -> Operations.CreateIntegration.Output {
        try await configuration.createIntegration(input, try APIContext.workspace())
    }
    func createGitLabIntegration(_ input: Operations.CreateGitLabIntegration.Input) async throws -> Operations.CreateGitLabIntegration.Output {
        try await configuration.createGitLabIntegration(input, try APIContext.workspace())
    }
    func updateIntegration(_ input: Operations.UpdateIntegration.Input) async throws -> Operations.UpdateIntegration.Output {
        try await configuration.updateIntegration(input, try APIContext.workspace())
    }
    func deleteIntegration(_ input: Operations.DeleteIntegration.Input) async throws -> Operations.DeleteIntegration.Output {
        try await configuration.deleteIntegration(input, try APIContext.workspace())
    }
    func listNotificationChannels(_ input: Operations.ListNotificationChannels.Input) async throws -> Operations.ListNotificationChannels.Output {
        try await notifications.listNotificationChannels(input, try APIContext.workspace())
    }
    func createNotificationChannel(_ input: Operations.CreateNotificationChannel.Input) async throws -> Operations.CreateNotificationChannel.Output {
        try await notifications.createNotificationChannel(input, try APIContext.workspace())
    }
    func deleteNotificationChannel(_ input: Operations.DeleteNotificationChannel.Input) async throws -> Operations.DeleteNotificationChannel.Output {
        try await notifications.deleteNotificationChannel(input, try APIContext.workspace())
    }
    func testNotificationChannel(_ input: Operations.TestNotificationChannel.Input) async throws -> Operations.TestNotificationChannel.Output {
        try await notifications.testNotificationChannel(input, try APIContext.workspace())
    }
    func listProviders(_ input: Operations.ListProviders.Input) async throws -> Operations.ListProviders.Output {
        try await configuration.listProviders(input, try APIContext.workspace())
    }
    func createProvider(_ input: Operations.CreateProvider.Input) async throws -> Operations.CreateProvider.Output {
        try await configuration.createProvider(input, try APIContext.workspace())
    }
    func updateProvider(_ input: Operations.UpdateProvider.Input) async throws -> Operations.UpdateProvider.Output {
        try await configuration.updateProvider(input, try APIContext.workspace())
    }
    func testProvider(_ input: Operations.TestProvider.Input) async throws -> Operations.TestProvider.Output {
        try await configuration.testProvider(input, try APIContext.workspace())
    }
    func testIntegration(_ input: Operations.TestIntegration.Input) async throws -> Operations.TestIntegration.Output {
        try await configuration.testIntegration(input, try APIContext.workspace())
    }
    func deleteProvider(_ input: Operations.DeleteProvider.Input) async throws -> Operations.DeleteProvider.Output {
        try await configuration.deleteProvider(input, try APIContext.workspace())
    }
    func getAIBudget(_ input: Operations.GetAIBudget.Input) async throws -> Operations.GetAIBudget.Output {
        try await configuration.getAIBudget(input, try APIContext.workspace())
    }
    func setAIBudget(_ input: Operations.SetAIBudget.Input) async throws -> Operations.SetAIBudget.Output {
        try await configuration.setAIBudget(input, try APIContext.workspace())
    }
    func listRepositories(_ input: Operations.ListRepositories.Input) async throws -> Operations.ListRepositories.Output {
        try await configuration.listRepositories(input, try APIContext.workspace())
    }
    func updateRepository(_ input: Operations.UpdateRepository.Input) async throws -> Operations.UpdateRepository.Output {
        try await configuration.updateRepository(input, try APIContext.workspace())
    }
    func getWorkspaceSettings(_ input: Operations.GetWorkspaceSettings.Input) async throws -> Operations.GetWorkspaceSettings.Output {
        try await configuration.getWorkspaceSettings(input, try APIContext.workspace())
    }
    func putWorkspaceSettings(_ input: Operations.PutWorkspaceSettings.Input) async throws -> Operations.PutWorkspaceSettings.Output {
        try await configuration.putWorkspaceSettings(input, try APIContext.workspace())
    }
    func getRepositorySettings(_ input: Operations.GetRepositorySettings.Input) async throws -> Operations.GetRepositorySettings.Output {
        try await configuration.getRepositorySettings(input, try APIContext.workspace())
    }
    func putRepositorySettings(_ input: Operations.PutRepositorySettings.Input) async throws -> Operations.PutRepositorySettings.Output {
        try await configuration.putRepositorySettings(input, try APIContext.workspace())
    }
    func explainConfig(_ input: Operations.ExplainConfig.Input) async throws -> Operations.ExplainConfig.Output {
        try await configuration.explainConfig(input, try APIContext.workspace())
    }
    func previewConfig(_ input: Operations.PreviewConfig.Input) async throws -> Operations.PreviewConfig.Output {
        try await configuration.previewConfig(input, try APIContext.workspace())
    }

    // MARK: Runs, usage, analytics

    func listRuns(_ input: Operations.ListRuns.Input) async throws -> Operations.ListRuns.Output {
        try await reviews.listRuns(input, try APIContext.workspace())
    }
    func requestRun(_ input: Operations.RequestRun.Input) async throws -> Operations.RequestRun.Output {
        try await reviews.requestRun(input, try APIContext.workspace())
    }
    func getRun(_ input: Operations.GetRun.Input) async throws -> Operations.GetRun.Output {
        try await reviews.getRun(input, try APIContext.workspace())
    }
    func cancelRun(_ input: Operations.CancelRun.Input) async throws -> Operations.CancelRun.Output {
        try await reviews.cancelRun(input, try APIContext.workspace())
    }
    func getUsage(_ input: Operations.GetUsage.Input) async throws -> Operations.GetUsage.Output {
        try await reviews.getUsage(input, try APIContext.workspace())
    }
    func getAnalytics(_ input: Operations.GetAnalytics.Input) async throws -> Operations.GetAnalytics.Output {
        try await reviews.getAnalytics(input, try APIContext.workspace())
    }
}

extension Decodable {
    /// A value of a generated schema type from JSON that already has the schema's shape: domain
    /// values encoded with the one JSON strategy (`JSONEncoder.sentinel`), stored JSON, the
    /// document itself. Times are ISO 8601, as `ISO8601.string` writes them.
    static func decoded(from data: Data) throws -> Self {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            guard let date = ISO8601.date(text) else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "not an ISO 8601 time: \(text)")
            }
            return date
        }
        return try decoder.decode(Self.self, from: data)
    }

    static func converted(from value: some Encodable) throws -> Self {
        try decoded(from: JSONEncoder.sentinel.encode(value))
    }
}

/// Pagination: a page of at most `limit` items fetched as `limit + 1`, and the cursor of the next.
struct PageWindow {
    let limit: Int

    init(_ requested: Int?) { limit = requested ?? 50 }

    func items<T>(_ fetched: [T]) -> ArraySlice<T> { fetched.prefix(limit) }

    func nextCursor<T>(_ fetched: [T], _ cursor: (T) -> String) -> String? {
        fetched.count > limit ? cursor(fetched[limit - 1]) : nil
    }

    /// The row id a numeric `cursor` query parameter names, `start` when there is none. A cursor
    /// this API did not give (not a number, negative, past `Int64`) is a 400: read as no cursor, it
    /// sent a client paging with a damaged one back to the first page, round and round.
    static func position(_ cursor: String?, start: Int64) throws -> Int64 {
        guard let cursor else { return start }
        guard let position = Int64(cursor), position >= 0 else {
            throw Problem(status: .badRequest, detail: "cursor: not a cursor this API gave")
        }
        return position
    }
}

extension Date {
    /// Stored times are seconds since 1970.
    init(epoch: Double) { self.init(timeIntervalSince1970: epoch) }
}
