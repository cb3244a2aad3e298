import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import SentinelCore

/// Providers, integrations, repositories, members and teams, settings and the audit log.
extension Console {
    /// A workspace page (GET) needing the role of `operation`.
    func get(_ router: Router<SentinelRequestContext>, _ path: String, _ operation: String,
             _ body: @escaping @Sendable (Member, SentinelRequestContext) async throws -> Response) {
        router.get(RouterPath(path)) { request, context in
            try await page(request, context) { visit in try await member(visit, context, operation: operation) { m in try await body(m, context) } }
        }
    }

    /// A workspace form post needing the role of `operation`: the form token is checked first.
    func post(_ router: Router<SentinelRequestContext>, _ path: String, _ operation: String,
              _ body: @escaping @Sendable (Member, Form, SentinelRequestContext) async throws -> Response) {
        router.post(RouterPath(path)) { request, context in
            try await page(request, context) { visit in
                let form = try await self.form(visit)
                return try await member(visit, context, operation: operation) { m in try await body(m, form, context) }
            }
        }
    }

    func addConfigurationPages(to router: Router<SentinelRequestContext>) {
        let ws = "/workspaces/:workspaceId"
        get(router, ws + "/providers", "listProviders") { m, _ in try await providersPage(m) }
        post(router, ws + "/providers", "createProvider") { m, form, _ in try await addProvider(m, form) }
        post(router, ws + "/providers/budget", "setAIBudget") { m, form, _ in
            // A form without the field is refused; a blank one removes the limit. Both were "no limit".
            _ = try form.present("usd", "The monthly budget (blank for no limit)")
            let raw = form.text("usd")
            let usd = try raw.map { text -> Double in
                // Digits with an optional decimal point, as typed: Double("0x10") read a hexadecimal 16.
                guard text.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || $0 == UInt8(ascii: ".") }),
                      let value = Double(text) else { throw IntegrationError.invalid("the budget must be a number of USD, such as 250 or 99.50") }
                return value
            }
            try await d.providers.setMonthlyBudget(usd, by: m.actorName, in: m.workspace)
            return Self.redirect(m.base + "/providers")
        }
        post(router, ws + "/providers/:providerId/:action", "updateProvider") { m, form, context in
            let id = context.parameters.get("providerId") ?? ""
            switch context.parameters.get("action") {
            case "enable": _ = try await d.providers.setEnabled(id, true, by: m.actorName, in: m.workspace)
            case "disable": _ = try await d.providers.setEnabled(id, false, by: m.actorName, in: m.workspace)
            case "rotate": _ = try await d.providers.rotate(id, apiKey: form["api_key"] ?? "", by: m.actorName, in: m.workspace)
            case "priority":
                guard let priority = try Self.priority(form) else { throw ConsoleError(status: .badRequest, heading: "Missing field", message: "The priority is required.") }
                _ = try await d.providers.setPriority(id, priority, by: m.actorName, in: m.workspace)
            case "delete":
                guard allowed("deleteProvider", m.role) else { throw ConsoleError(status: .forbidden, heading: "Not allowed", message: "You may not delete providers.") }
                try await d.providers.delete(id, by: m.actorName, in: m.workspace)
            case "test":
                guard allowed("testProvider", m.role) else { throw ConsoleError(status: .forbidden, heading: "Not allowed", message: "You may not test providers.") }
                let findings = try await d.connections.provider(id, in: m.workspace, workspaceName: m.record.name)
                return try await providersPage(m, tested: Self.tested("provider \(id)", findings))
            default: throw ConsoleError(status: .notFound, heading: "Page not found", message: "There is no such action.")
            }
            return Self.redirect(m.base + "/providers")
        }
        get(router, ws + "/integrations", "listIntegrations") { m, _ in try await integrationsPage(m) }
        post(router, ws + "/integrations", "createIntegration") { m, form, _ in try await addIntegration(m, form) }
        get(router, ws + "/repositories", "listRepositories") { m, _ in try await repositoriesPage(m) }
        post(router, ws + "/repositories/:repositoryId/:action", "updateRepository") { m, _, context in
            let id = try PathID.parse(context.parameters.get("repositoryId") ?? "", what: "repository")
            let enabled: Bool
            switch context.parameters.get("action") {
            case "enable": enabled = true
            case "disable": enabled = false
            default: throw ConsoleError(status: .notFound, heading: "Page not found", message: "There is no such action.")
            }
            let plan = try await d.billing.plan(for: m.id)
            _ = try await m.workspace.write { tx in try RepositoryStore.setEnabled(enabled, id: id, plan: plan, by: m.actorName, in: &tx) }
            return Self.redirect(m.base + "/repositories")
        }
        get(router, ws + "/members", "listMembers") { m, _ in try await membersPage(m) }
        post(router, ws + "/members", "addMember") { m, form, _ in try await addMember(m, form) }
        post(router, ws + "/members/:userId/role", "updateMember") { m, form, context in
            try await changeRole(m, userID: context.parameters.get("userId") ?? "", form)
        }
        post(router, ws + "/members/:userId/remove", "removeMember") { m, _, context in
            try await removeMember(m, userID: context.parameters.get("userId") ?? "")
        }
        post(router, ws + "/teams", "createTeam") { m, form, _ in
            let (name, by) = (try form.required("name", "The team's name"), m.actorName)
            _ = try await m.workspace.write { tx in try TeamStore.create(name: name, by: by, in: &tx) }
            return Self.redirect(m.base + "/members")
        }
        post(router, ws + "/teams/:teamId/delete", "deleteTeam") { m, _, context in
            let (team, by) = (try PathID.parse(context.parameters.get("teamId") ?? "", what: "team"), m.actorName)
            try await m.workspace.write { tx in try TeamStore.delete(team, by: by, in: &tx) }
            return Self.redirect(m.base + "/members")
        }
        post(router, ws + "/teams/:teamId/members", "addTeamMember") { m, form, context in
            let team = try PathID.parse(context.parameters.get("teamId") ?? "", what: "team")
            _ = try await members(m).addToTeam(userID: try form.required("user_id", "The member"), team: team)
            return Self.redirect(m.base + "/members")
        }
        post(router, ws + "/teams/:teamId/members/:userId/remove", "removeTeamMember") { m, _, context in
            let team = try PathID.parse(context.parameters.get("teamId") ?? "", what: "team")
            try await members(m).removeFromTeam(userID: context.parameters.get("userId") ?? "", team: team)
            return Self.redirect(m.base + "/members")
        }
        post(router, ws + "/integrations/gitlab", "createGitLabIntegration") { m, form, _ in try await addGitLab(m, form) }
        get(router, ws + "/integrations/:integrationId", "listIntegrations") { m, context in
            try await integrationPage(m, id: context.parameters.get("integrationId") ?? "")
        }
        post(router, ws + "/integrations/:integrationId", "updateIntegration") { m, form, context in
            try await rotateIntegration(m, form, id: context.parameters.get("integrationId") ?? "")
        }
        post(router, ws + "/integrations/:integrationId/test", "testIntegration") { m, _, context in
            try await testIntegration(m, id: context.parameters.get("integrationId") ?? "")
        }
        get(router, ws + "/repositories/:repositoryId", "getRepositorySettings") { m, context in
            try await repositoryPage(m, try PathID.parse(context.parameters.get("repositoryId") ?? "", what: "repository"))
        }
        post(router, ws + "/repositories/:repositoryId/preview", "previewConfig") { m, form, context in
            try await repositoryPage(m, try PathID.parse(context.parameters.get("repositoryId") ?? "", what: "repository"), file: form["file"] ?? "")
        }
        post(router, ws + "/repositories/:repositoryId", "putRepositorySettings") { m, form, context in
            let id = try PathID.parse(context.parameters.get("repositoryId") ?? "", what: "repository")
            let scope = PolicyService.repositoryScope(try await repository(m, id).id)
            do {
                try await saveSettings(m, form, scope: scope)
            } catch {
                // Refused: the page again with the error and what was typed, as the workspace's form.
                guard let (status, text) = Self.refusal(error) else { throw error }
                return try await repositoryPage(m, id, typed: form, error: text, status: status)
            }
            return Self.redirect(m.base + "/repositories/\(id)")
        }
        get(router, ws + "/settings", "getWorkspaceSettings") { m, _ in try await settingsPage(m) }
        post(router, ws + "/settings", "putWorkspaceSettings") { m, form, _ in
            do {
                try await saveSettings(m, form, scope: PolicyService.workspaceScope)
            } catch {
                // Refused: the page again with the error and what was typed (a page of its own,
                // whose Back link reloaded the saved values, lost it).
                guard let (status, text) = Self.refusal(error) else { throw error }
                return try await settingsPage(m, typed: form, error: text, status: status)
            }
            return Self.redirect(m.base + "/settings")
        }
        get(router, ws + "/audit", "listAuditEvents") { m, _ in try await auditPage(m) }
        addManifestPages(to: router)
    }

    // MARK: AI providers

    func providersPage(_ m: Member, tested: [String: Any]? = nil) async throws -> Response {
        let items = try await d.providers.list(in: m.workspace)
        let budget = try await d.providers.monthlyBudget(in: m.workspace)
        let spent = try await d.providers.spentThisMonth(in: m.workspace)
        var data: [String: Any] = [
            "items": items.map { p -> [String: Any] in
                var item: [String: Any] = ["id": p.id, "kind": p.kind, "model": p.model, "priority": p.priority, "enabled": p.enabled]
                if let suffix = p.keySuffix { item["suffix"] = suffix }
                return item
            },
            "canManage": allowed("createProvider", m.role) && allowed("updateProvider", m.role),
            "kinds": ProviderStore.kinds,
            "budget": budget.map { $0 > 0 && $0 < 0.01 ? "$" + $0.plainDecimalText : String(format: "$%.2f", $0) } ?? "no limit",
            "spent": "$" + spent.dollarText,
        ]
        // Plain digits, as the form takes them back: `String(0.00001)` wrote `1e-05`, which it refused.
        if let budget { data["budgetValue"] = budget.plainDecimalText }
        if let tested { data["tested"] = tested }
        return try render("providers", title: "AI providers", data, visit: m.visit, member: m)
    }

    func addProvider(_ m: Member, _ form: Form) async throws -> Response {
        let baseURL = try form.text("base_url").map { raw -> URL in
            guard let url = WebAddress.parse(raw), url.scheme != nil else { throw IntegrationError.invalid("base_url is not an absolute URL") }
            return url
        }
        let priority = try Self.priority(form) ?? 100
        _ = try await d.providers.add(kind: try form.required("kind", "The kind"), apiKey: form.text("api_key"), model: form.text("model"),
                                      baseURL: baseURL, apiVersion: form.text("api_version"), deployment: form.text("deployment"),
                                      priority: priority, by: m.actorName, in: m.workspace)
        return Self.redirect(m.base + "/providers")
    }

    /// The form's priority as a number (its range is `ProviderStore`'s rule); nil when blank.
    static func priority(_ form: Form) throws -> Int? {
        try form.text("priority").map { raw in
            guard let value = Int(raw) else { throw IntegrationError.invalid("priority: must be a whole number") }
            return value
        }
    }

    // MARK: Integrations

    func integrationsPage(_ m: Member) async throws -> Response {
        let base = baseURL(m.visit.request)
        let items = try await d.integrations.list(in: m.workspace)
        let ids = items.map(\.id)
        let deliveries = try await m.workspace.read { db in
            try ids.compactMap { id in try DeliverySummary.latest(integrationID: id, in: db).map { (id, $0) } }
        }
        let latest = Dictionary(deliveries) { a, _ in a }
        let data: [String: Any] = [
            "items": items.map { i -> [String: Any] in
                var item: [String: Any] = ["id": i.id, "kind": i.kind, "appID": i.appID.map(String.init) ?? "", "apiURL": i.apiURL,
                                           "webhookURL": base + i.webhookPath, "created": i.createdAt]
                if let delivery = latest[i.id] { item["delivery"] = Self.deliveryData(delivery) }
                return item
            },
            "canManage": allowed("createIntegration", m.role),
            "canAddGitLab": allowed("createGitLabIntegration", m.role),
        ]
        return try render("integrations", title: "Integrations", data, visit: m.visit, member: m)
    }

    /// Adds a GitHub App from its id, private key and webhook secret, as `POST …/integrations` does.
    func addIntegration(_ m: Member, _ form: Form) async throws -> Response {
        guard let appID = Int64(try form.required("app_id", "The App ID")), appID > 0 else {
            throw IntegrationError.invalid("app_id must be a positive whole number")
        }
        let apiURL = try IntegrationService.gitHubAPIURL(form.text("api_url"))
        _ = try await d.integrations.addGitHub(workspace: m.workspace, appID: appID, privateKeyPEM: try form.required("private_key", "The private key"),
                                               webhookSecret: Data(try form.requiredSecret("webhook_secret", "The webhook secret").utf8), apiURL: apiURL,
                                               caBundlePEM: form.text("ca_bundle"), botLogin: form.text("bot_login"), by: m.actorName)
        return Self.redirect(m.base + "/integrations")
    }

    // MARK: Repositories

    func repositoriesPage(_ m: Member) async throws -> Response {
        let after = try ConsoleQuery(m.visit.request).value("after", "a repository id", { Int64($0) }) ?? 0
        let limit = 50
        let repos = try await m.workspace.read { db in try RepositoryStore.list(after: after, limit: limit + 1, in: db) }
        var data: [String: Any] = [
            "items": repos.prefix(limit).map { ["id": $0.id, "name": $0.fullName, "enabled": $0.enabled, "removed": $0.removed] as [String: Any] },
            "canManage": allowed("updateRepository", m.role),
        ]
        if repos.count > limit, let last = repos.prefix(limit).last { data["next"] = "\(m.base)/repositories?after=\(last.id)" }
        return try render("repositories", title: "Repositories", data, visit: m.visit, member: m)
    }

    // MARK: Members and teams

    func membersPage(_ m: Member) async throws -> Response {
        let members = try d.identity.members(of: m.id)
        let teams = try await m.workspace.read { db in try TeamStore.list(in: db) }
        let canManage = allowed("addMember", m.role)
        let emails = Dictionary(members.map { ($0.userID, $0.email) }) { a, _ in a }
        // Owners may grant, change and remove every role; admins every role but owner.
        let grantable = WorkspaceRole.allCases.filter { $0 != .owner || m.role == .owner }
        let data: [String: Any] = [
            "items": members.map { member -> [String: Any] in
                ["userID": member.userID, "email": member.email, "role": member.role.rawValue,
                 "editable": member.role != .owner || m.role == .owner,
                 "roles": grantable.map { ["name": $0.rawValue, "selected": $0 == member.role] as [String: Any] }]
            },
            "grantable": grantable.map(\.rawValue),
            "canManage": canManage,
            "teams": teams.map { team -> [String: Any] in
                let inTeam = Set(team.members)
                return ["id": team.id, "name": team.name, "size": team.members.count,
                        "members": team.members.map { ["teamID": team.id, "userID": $0, "email": emails[$0] ?? $0] as [String: Any] },
                        "candidates": members.filter { !inTeam.contains($0.userID) }.map { ["userID": $0.userID, "email": $0.email] as [String: Any] }]
            },
            "canManageTeams": allowed("addTeamMember", m.role) && allowed("removeTeamMember", m.role),
        ]
        return try render("members", title: "Members", data, visit: m.visit, member: m)
    }

    func role(_ form: Form) throws -> WorkspaceRole {
        guard let role = form.text("role").flatMap(WorkspaceRole.init(rawValue:)) else {
            throw IdentityError(.invalid, "role must be one of viewer, member, admin, owner")
        }
        return role
    }

    /// The visitor's changes to the workspace's members, under the API's rules.
    func members(_ m: Member) -> WorkspaceMembers {
        WorkspaceMembers(identity: d.identity, workspaceID: m.id, workspace: m.workspace, actorRole: m.role, actorName: m.actorName)
    }

    func addMember(_ m: Member, _ form: Form) async throws -> Response {
        let role = try role(form)
        let email = try form.required("email", "The email")
        let plan = try await d.billing.plan(for: m.id)
        _ = try await members(m).add(email: email, role: role, seatLimit: plan)
        return Self.redirect(m.base + "/members")
    }

    func changeRole(_ m: Member, userID: String, _ form: Form) async throws -> Response {
        _ = try await members(m).changeRole(userID: userID, to: try role(form))
        return Self.redirect(m.base + "/members")
    }

    func removeMember(_ m: Member, userID: String) async throws -> Response {
        try await members(m).remove(userID: userID)
        return Self.redirect(m.base + "/members")
    }

    // MARK: Settings

    struct SettingsData: Sendable {
        let version: PolicyVersion?
        let history: [PolicyVersion]
        let entries: [ExplainedEntry]
        let repositories: [RepositoryRecord]
    }

    /// What a refused form is told on its own page: a request's fault with its status and words;
    /// nil for a server fault (the console's error page, logged).
    static func refusal(_ error: Error) -> (HTTPResponse.Status, String)? {
        if let error = error as? ConsoleError { return (error.status, error.message) }
        let problem = Problem.from(error)
        if problem.isServerFault { return nil }
        return (.init(code: problem.status), problem.detail ?? problem.title)
    }

    /// `typed`: a refused form's fields, shown again with `error`.
    func settingsPage(_ m: Member, typed: Form? = nil, error: String? = nil, status: HTTPResponse.Status = .ok) async throws -> Response {
        let repositoryID = try ConsoleQuery(m.visit.request).value("repository", "a repository id", { Int64($0) })
        let found = try await m.workspace.read { db -> SettingsData in
            var explained: Int64?
            if let repositoryID {
                guard let repo = try RepositoryStore.find(id: repositoryID, in: db), !repo.removed else { throw StorageError.notFound("no such repository") }
                explained = repo.id
            }
            return SettingsData(version: try PolicyService.latest(scope: PolicyService.workspaceScope, in: db),
                                history: try PolicyService.history(scope: PolicyService.workspaceScope, limit: 20, in: db),
                                entries: try PolicyService.resolve(in: db, repositoryID: explained, fileText: nil).effective.entries,
                                repositories: try RepositoryStore.all(in: db).filter { !$0.removed })
        }
        var data = try Self.policyData(entries: found.entries, version: found.version, history: found.history)
        data["repositories"] = found.repositories.map { ["id": $0.id, "name": $0.fullName, "selected": $0.id == repositoryID] as [String: Any] }
        data["canManage"] = allowed("putWorkspaceSettings", m.role)
        data["action"] = m.base + "/settings"
        if let typed {
            data["values"] = typed["values"] ?? ""
            data["locks"] = typed["locks"] ?? ""
        }
        if let error { data["formError"] = error }
        return try render("settings", title: "Settings", data, visit: m.visit, member: m, status: status)
    }

    /// What the settings and repository pages show of a scope: the effective entries with their
    /// sources and locks, the scope's newest values and locks, and its version history.
    static func policyData(entries: [ExplainedEntry], version: PolicyVersion?, history: [PolicyVersion]) throws -> [String: Any] {
        var data: [String: Any] = [
            "entries": entries.map { e -> [String: Any] in
                ["key": e.key, "value": display(e.value), "source": e.source.rawValue, "locked": e.locked, "lockedBy": e.lockedBy?.rawValue ?? ""]
            },
            "values": String(decoding: try JSONEncoder.sentinelPretty.encode(version?.values ?? [:]), as: UTF8.self),
            "locks": (version?.locks ?? []).joined(separator: ", "),
            "history": try history.map { v -> [String: Any] in
                ["id": v.id, "by": v.createdBy, "at": v.createdAt, "locks": v.locks.joined(separator: ", "),
                 "values": String(decoding: try JSONEncoder.sentinel.encode(v.values), as: UTF8.self)]
            },
        ]
        if let version { data["version"] = ["id": version.id, "by": version.createdBy, "at": version.createdAt] as [String: Any] }
        return data
    }

    /// An integration's latest delivery as shown: event, action, when and its outcome.
    static func deliveryData(_ delivery: DeliverySummary) -> [String: Any] {
        var item: [String: Any] = ["event": delivery.event, "at": date(delivery.receivedAt) ?? "", "outcome": delivery.outcome ?? "waiting to be processed"]
        if let action = delivery.action { item["action"] = action }
        return item
    }

    /// A setting's value as shown: text as it is, other values as JSON.
    static func display(_ value: PolicyValue) -> String {
        if case .string(let text) = value { return text }
        return value.description
    }

    /// Saves a new version of the workspace's or a repository's settings, as `PUT …/settings` does.
    func saveSettings(_ m: Member, _ form: Form, scope: String) async throws {
        // Both fields are always on the form; a post without one would have emptied the settings.
        let given = try form.present("values", "Values").trimmingCharacters(in: .whitespacesAndNewlines)
        let text = given.isEmpty ? "{}" : given
        let values: [String: PolicyValue]
        do {
            values = try JSONDecoder().decode([String: PolicyValue].self, from: Data(text.utf8))
        } catch let error as DecodingError {
            // A value of the wrong kind is named by its key, as the API names it: the whole object
            // was called "not a JSON object" for one value.
            switch error {
            case .dataCorrupted(let context) where !context.codingPath.isEmpty, .typeMismatch(_, let context) where !context.codingPath.isEmpty,
                 .valueNotFound(_, let context) where !context.codingPath.isEmpty:
                let key = context.codingPath.map(\.stringValue).joined(separator: ".")
                throw IdentityError(.invalid, "values.\(key): \(context.debugDescription)")
            default:
                throw IdentityError(.invalid, "values: not a JSON object of settings (e.g. {\"review.instructions\": \"…\"})")
            }
        } catch {
            throw IdentityError(.invalid, "values: not a JSON object of settings (e.g. {\"review.instructions\": \"…\"})")
        }
        // As the API's PUT …/settings: a setting given twice leaves unclear which value was meant.
        switch JSONStructure.firstProblem(in: Data(text.utf8)) {
        case .repeatedName(let name, let path)?:
            throw IdentityError(.invalid, "values: \(path.isEmpty ? "the object" : path) names \"\(StoredText.singleLine(String(name.prefix(100))))\" twice; give each setting once")
        case .trailingComma(let path)?:
            throw IdentityError(.invalid, "values: \(path.isEmpty ? "the object" : path) has a comma before its closing bracket; JSON allows none there")
        default:
            break
        }
        let locks = Set(try form.present("locks", "Locked keys").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
        let by = m.actorName
        _ = try await m.workspace.write { tx in try PolicyService.saveVersion(scope: scope, values: values, locks: locks, by: by, in: &tx) }
    }

    // MARK: Audit log

    func auditPage(_ m: Member) async throws -> Response {
        let after = try ConsoleQuery(m.visit.request).value("after", "an event id", { Int64($0) }) ?? 0
        let limit = 50
        let events = try await m.workspace.read { db in
            try EventLog.read(after: after, limit: limit + 1, types: EventLog.auditTypes, in: db)
        }
        var data: [String: Any] = [
            "items": events.prefix(limit).map { e -> [String: Any] in
                // Who made the change: the `by` every audited event carries (the appliance itself for the few it makes).
                let by = (try? JSONDecoder().decode([String: String].self, from: Data(e.data.utf8)))?["by"]
                return ["seq": e.seq, "at": e.occurredAt, "type": e.type, "subject": e.subject ?? "", "by": by ?? "Sentinel", "data": e.data]
            },
        ]
        if events.count > limit, let last = events.prefix(limit).last { data["next"] = "\(m.base)/audit?after=\(last.seq)" }
        return try render("audit", title: "Audit log", data, visit: m.visit, member: m)
    }
}

/// The GitHub App manifest flow: a page that posts the manifest to GitHub, and the callback that
/// exchanges GitHub's one-time code for the App's credentials. The round trip's `state` names the
/// integration id (the webhook URL had to be in the manifest) and the API URL, signed with the
/// visitor's session so that only they can complete it.
extension Console {
    func addManifestPages(to router: Router<SentinelRequestContext>) {
        let ws = "/workspaces/:workspaceId"
        post(router, ws + "/integrations/manifest", "createIntegration") { m, form, _ in try await startManifest(m, form) }
        get(router, ws + "/integrations/manifest/callback", "createIntegration") { m, _ in try await completeManifest(m) }
    }

    func manifestState(_ m: Member, id: IntegrationID, apiURL: String) -> String {
        let api = Data(apiURL.utf8).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
        return "\(id.rawValue).\(api).\(Self.formToken(secret: (m.visit.formSecret ?? "") + "|manifest|\(m.id.rawValue)|\(id.rawValue)|\(api)"))"
    }

    func startManifest(_ m: Member, _ form: Form) async throws -> Response {
        // A workspace with no room for another integration is told so before GitHub creates an App for it.
        try await m.workspace.read { db in try IntegrationService.checkRoom(db) }
        var apiURL = IntegrationService.defaultGitHubAPI
        if let raw = form.text("api_url") {
            guard let url = WebAddress.parse(raw), url.scheme != nil, url.host != nil else { throw IntegrationError.invalid("api_url is not a URL") }
            // The rules of adding an App by hand, before this page sends the visitor there: https
            // (or loopback), no credentials, a real port (an ftp:// or http:// URL was posted to).
            try IntegrationService.validateAPIURL(url)
            apiURL = url
        }
        let id = IntegrationID.generate()
        let base = baseURL(m.visit.request)
        let webhookURL = base + "/webhooks/github/\(id.rawValue)"
        let state = manifestState(m, id: id, apiURL: apiURL.absoluteString)
        let target = try GitHubAppManifest.creationURL(apiURL: apiURL, organization: form.text("organization"), state: state)
        let name = String((form.text("name") ?? "Sentinel \(m.record.name)").prefix(34))
        let manifest = GitHubAppManifest.manifest(name: name, homepage: base + "/", webhookURL: webhookURL,
                                                  redirectURL: base + m.base + "/integrations/manifest/callback")
        let data: [String: Any] = [
            "target": target.absoluteString, "manifest": manifest, "webhookURL": webhookURL, "host": target.host ?? "GitHub",
            "permissions": GitHubAppManifest.permissions.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", "),
            "events": GitHubAppManifest.events.joined(separator: ", "),
        ]
        var response = try render("manifest", title: "Create the GitHub App", data, visit: m.visit, member: m)
        // This one form posts to GitHub.
        // An IPv6 host in brackets, as a CSP source takes it (`http://::1:8080` is no source: the browser refused the form).
        let host = target.host.map { $0.contains(":") && !$0.hasPrefix("[") ? "[\($0)]" : $0 } ?? ""
        let origin = "\(target.scheme ?? "https")://\(host)\(target.port.map { ":\($0)" } ?? "")"
        response.headers[.contentSecurityPolicy] = (Self.htmlHeaders[.contentSecurityPolicy] ?? "")
            .replacingOccurrences(of: "form-action 'self'", with: "form-action 'self' \(origin)")
        return response
    }

    func completeManifest(_ m: Member) async throws -> Response {
        // Read as every console page reads its address: a parameter given twice is refused.
        let query = ConsoleQuery(m.visit.request)
        let sentCode = try query.value("code", "the code GitHub sends back", { $0 })
        let parts = (try query.value("state", "the state GitHub sends back", { $0 }) ?? "").split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 3, let id = IntegrationID(parts[0]),
              m.visit.formSecret != nil,
              constantTimeEqual(parts[2], Self.formToken(secret: (m.visit.formSecret ?? "") + "|manifest|\(m.id.rawValue)|\(id.rawValue)|\(parts[1])")),
              let apiData = Data(base64Encoded: Self.padded(parts[1].replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/"))),
              let apiURL = URL(string: String(decoding: apiData, as: UTF8.self)) else {
            throw ConsoleError(status: .forbidden, heading: "Could not finish",
                               message: "GitHub sent back a state this session did not start (or it was altered). Start the App creation again from the integrations page.")
        }
        guard let code = sentCode else { throw IntegrationError.invalid("GitHub sent no code back") }
        try IntegrationService.validateAPIURL(apiURL)
        // The page reloaded, or opened again from history: the App is already this integration.
        let alreadyAdded = ConsoleError(status: .conflict, heading: "Already added",
                                        message: "This GitHub App was added already as integration \(id.rawValue); it is on the integrations page.")
        if try await m.workspace.read({ db in try Bool.fetchOne(db, sql: "SELECT 1 FROM integrations WHERE id = ?", arguments: [id.rawValue]) }) != nil {
            throw alreadyAdded
        }
        let conversion: GitHubAppManifest.Conversion
        do {
            conversion = try await GitHubAppManifest.convert(code: code, apiURL: apiURL, http: outbound)
        } catch let error as OutboundHTTPError {
            // GitHub could not be reached, or the address is refused: say so (it was a 500).
            throw ConsoleError(status: .badGateway, heading: "Could not reach GitHub",
                               message: "Sentinel could not exchange GitHub's code for the App's credentials: \(error). "
                                   + "The App may exist on GitHub already; once GitHub is reachable, start again from the integrations page (and delete the unused App on GitHub).")
        }
        do {
            _ = try await d.integrations.addGitHub(workspace: m.workspace, appID: conversion.appID, privateKeyPEM: conversion.privateKeyPEM,
                                                   webhookSecret: Data(conversion.webhookSecret.utf8), apiURL: apiURL, id: id, by: m.actorName)
        } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT {
            throw alreadyAdded   // the same callback twice at once
        }
        return Self.redirect(m.base + "/integrations")
    }

    static func padded(_ base64: String) -> String {
        base64 + String(repeating: "=", count: (4 - base64.count % 4) % 4)
    }
}
