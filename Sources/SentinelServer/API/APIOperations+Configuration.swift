import Foundation
import GRDB
import HTTPTypes
import SentinelCore

extension APIOperations {
    struct IntegrationBody: Decodable {
        let kind: String
        let app_id: Int64
        let private_key: String
        let webhook_secret: String
        let api_url: String?
        let ca_bundle: String?
        let bot_login: String?
    }

    struct ProviderBody: Decodable {
        let kind: String
        let api_key: String?
        let model: String?
        let base_url: String?
        let api_version: String?
        let deployment: String?
        let priority: Int?
    }

    struct ProviderPatch: Decodable { let enabled: Bool?; let api_key: String? }
    struct RepositoryPatch: Decodable { let enabled: Bool }
    struct SettingsBody: Decodable { let values: [String: PolicyValue]; let locks: [String]? }

    static func configuration() -> [APIOperation] {
        [
            APIOperation(method: .get, path: "/workspaces/{workspaceId}/integrations", id: "listIntegrations", tag: "integrations",
                         summary: "The workspace's source-control integrations (secrets are never returned).",
                         access: .workspace(.viewer, .read), status: .ok, response: .ref("IntegrationPage")) { d, _, actor in
                .json(.ok, Page(items: try await d.integrations.list(in: actor!), nextCursor: nil))
            },
            APIOperation(method: .post, path: "/workspaces/{workspaceId}/integrations", id: "createIntegration", tag: "integrations",
                         summary: "Connect a GitHub App (admins). The private key and webhook secret are write-only; the response has the webhook URL.",
                         access: .workspace(.admin, .write),
                         body: .object([
                            Property("kind", .string(values: ["github"])), Property("app_id", .integer(minimum: 1)),
                            Property("private_key", .string(minLength: 1, maxLength: 20_000, multiline: true), "the App's RSA private key, PEM"),
                            Property("webhook_secret", .string(minLength: 8, maxLength: 1_000)),
                            Property("api_url", .string(minLength: 1, maxLength: 500), required: false, "default https://api.github.com; GHES: https://HOST/api/v3"),
                            Property("ca_bundle", .string(minLength: 1, maxLength: 200_000, multiline: true), required: false, "PEM CA certificates of a GHES behind an internal CA"),
                            Property("bot_login", .string(minLength: 1, maxLength: 100), required: false),
                         ]),
                         status: .created, response: .ref("Integration")) { d, call, actor in
                let body = try call.decode(IntegrationBody.self)
                var apiURL = IntegrationService.defaultGitHubAPI
                if let raw = body.api_url {
                    guard let url = URL(string: raw) else { throw IntegrationError.invalid("api_url is not a URL") }
                    apiURL = url
                }
                let summary = try await d.integrations.addGitHub(workspace: actor!, appID: body.app_id, privateKeyPEM: body.private_key,
                                                                 webhookSecret: Data(body.webhook_secret.utf8), apiURL: apiURL,
                                                                 caBundlePEM: body.ca_bundle, botLogin: body.bot_login)
                return .json(.created, APIModels.IntegrationOut(integration: summary, webhookURL: call.baseURL + summary.webhookPath))
            },
            APIOperation(method: .get, path: "/workspaces/{workspaceId}/providers", id: "listProviders", tag: "providers",
                         summary: "The workspace's AI providers (keys are never returned, only their last 4 characters).",
                         access: .workspace(.viewer, .read), status: .ok, response: .ref("ProviderPage")) { d, _, actor in
                .json(.ok, Page(items: try await d.providers.list(in: actor!), nextCursor: nil))
            },
            APIOperation(method: .post, path: "/workspaces/{workspaceId}/providers", id: "createProvider", tag: "providers",
                         summary: "Add an AI provider with the workspace's own key (admins).", access: .workspace(.admin, .write),
                         body: .object([
                            Property("kind", .string(values: ProviderStore.kinds)),
                            Property("api_key", .string(minLength: 1, maxLength: 1_000), required: false, "write-only"),
                            Property("model", .string(minLength: 1, maxLength: 200), required: false),
                            Property("base_url", .string(minLength: 1, maxLength: 500), required: false),
                            Property("api_version", .string(minLength: 1, maxLength: 50), required: false),
                            Property("deployment", .string(minLength: 1, maxLength: 200), required: false),
                            Property("priority", .integer(minimum: 0, maximum: 10_000), required: false),
                         ]),
                         status: .created, response: .ref("Provider")) { d, call, actor in
                let body = try call.decode(ProviderBody.self)
                let baseURL = try body.base_url.map { raw -> URL in
                    guard let url = URL(string: raw), url.scheme != nil else { throw IntegrationError.invalid("base_url is not an absolute URL") }
                    return url
                }
                return .json(.created, try await d.providers.add(kind: body.kind, apiKey: body.api_key, model: body.model, baseURL: baseURL,
                                                                 apiVersion: body.api_version, deployment: body.deployment,
                                                                 priority: body.priority ?? 100, by: call.actor, in: actor!))
            },
            APIOperation(method: .patch, path: "/workspaces/{workspaceId}/providers/{providerId}", id: "updateProvider", tag: "providers",
                         summary: "Enable, disable or rotate the key of a provider (admins).", access: .workspace(.admin, .write),
                         body: .object([Property("enabled", .boolean, required: false),
                                        Property("api_key", .string(minLength: 1, maxLength: 1_000), required: false, "write-only")]),
                         status: .ok, response: .ref("Provider")) { d, call, actor in
                let body = try call.decode(ProviderPatch.self)
                let id = call.pathValue("providerId")
                var summary = try await d.providers.get(id, in: actor!)
                if let key = body.api_key { summary = try await d.providers.rotate(id, apiKey: key, by: call.actor, in: actor!) }
                if let enabled = body.enabled { summary = try await d.providers.setEnabled(id, enabled, by: call.actor, in: actor!) }
                return .json(.ok, summary)
            },
            APIOperation(method: .delete, path: "/workspaces/{workspaceId}/providers/{providerId}", id: "deleteProvider", tag: "providers",
                         summary: "Delete a provider and its key (admins).", access: .workspace(.admin, .write),
                         status: .noContent, response: nil) { d, call, actor in
                try await d.providers.delete(call.pathValue("providerId"), by: call.actor, in: actor!)
                return .noContent
            },
            APIOperation(method: .get, path: "/workspaces/{workspaceId}/repositories", id: "listRepositories", tag: "repositories",
                         summary: "Repositories registered through the workspace's integrations, in registration order.",
                         access: .workspace(.viewer, .read),
                         query: [limitParameter, QueryParameter(name: "cursor", schema: .string(maxLength: 20, pattern: "^[0-9]+$"),
                                                                description: "next_cursor of the previous page")],
                         status: .ok, response: .ref("RepositoryPage")) { d, call, actor in
                let limit = page(call)
                let after = Int64(call.query["cursor"] ?? "") ?? 0
                let repos = try await actor!.read { db in
                    try RepositoryRecord.fetchAll(db, sql: "SELECT * FROM repositories WHERE id > ? ORDER BY id LIMIT ?", arguments: [after, limit + 1])
                }
                return .json(.ok, Page(items: repos.prefix(limit).map(APIModels.RepositoryOut.init),
                                       nextCursor: repos.count > limit ? String(repos[limit - 1].id) : nil))
            },
            APIOperation(method: .patch, path: "/workspaces/{workspaceId}/repositories/{repositoryId}", id: "updateRepository", tag: "repositories",
                         summary: "Enable or disable reviews of a repository (admins). Enabling over the plan's repository limit is refused (403).",
                         access: .workspace(.admin, .write), body: .object([Property("enabled", .boolean)]),
                         status: .ok, response: .ref("Repository")) { d, call, actor in
                let enabled = try call.decode(RepositoryPatch.self).enabled
                let id = try call.pathInt("repositoryId", what: "repository")
                let plan = try await d.billing.plan(for: call.workspaceID!)
                let updated = try await actor!.write { tx -> RepositoryRecord in
                    guard let repo = try RepositoryStore.find(id: id, in: tx.db), !repo.removed else {
                        throw StorageError.notFound("no such repository")
                    }
                    return try RepositoryStore.setEnabled(enabled, fullName: repo.fullName, plan: plan, in: &tx)
                }
                return .json(.ok, APIModels.RepositoryOut(updated))
            },
            APIOperation(method: .get, path: "/workspaces/{workspaceId}/settings", id: "getWorkspaceSettings", tag: "settings",
                         summary: "The newest version of the workspace defaults.", access: .workspace(.viewer, .read),
                         status: .ok, response: .ref("Settings")) { d, _, actor in
                let v = try await actor!.read { db in try PolicyService.latest(scope: PolicyService.workspaceScope, in: db) }
                return .json(.ok, APIModels.SettingsOut(scope: PolicyService.workspaceScope, v))
            },
            APIOperation(method: .put, path: "/workspaces/{workspaceId}/settings", id: "putWorkspaceSettings", tag: "settings",
                         summary: "Save a new version of the workspace defaults (admins); keys as in .sentinel.yml, plus locks.",
                         access: .workspace(.admin, .write), body: settingsBody, status: .ok, response: .ref("Settings")) { d, call, actor in
                try await saveSettings(call, actor!, scope: PolicyService.workspaceScope)
            },
            APIOperation(method: .get, path: "/workspaces/{workspaceId}/repositories/{repositoryId}/settings", id: "getRepositorySettings",
                         tag: "settings", summary: "The newest version of a repository's settings.", access: .workspace(.viewer, .read),
                         status: .ok, response: .ref("Settings")) { d, call, actor in
                let id = try await repository(call, actor!)
                let scope = PolicyService.repositoryScope(id)
                let v = try await actor!.read { db in try PolicyService.latest(scope: scope, in: db) }
                return .json(.ok, APIModels.SettingsOut(scope: scope, v))
            },
            APIOperation(method: .put, path: "/workspaces/{workspaceId}/repositories/{repositoryId}/settings", id: "putRepositorySettings",
                         tag: "settings", summary: "Save a new version of a repository's settings (admins).", access: .workspace(.admin, .write),
                         body: settingsBody, status: .ok, response: .ref("Settings")) { d, call, actor in
                try await saveSettings(call, actor!, scope: PolicyService.repositoryScope(try await repository(call, actor!)))
            },
            APIOperation(method: .get, path: "/workspaces/{workspaceId}/repositories/{repositoryId}/effective-config", id: "explainConfig",
                         tag: "settings",
                         summary: "Every effective key for the repository with its value, source layer and lock (without the repository's .sentinel.yml, which lives in git).",
                         access: .workspace(.viewer, .read), status: .ok, response: .ref("Explain")) { d, call, actor in
                let id = try await repository(call, actor!)
                let resolved = try await actor!.read { db in try PolicyService.resolve(in: db, repositoryID: id, fileText: nil) }
                return .document(.ok, resolved.effective.explainJSON(pretty: false))
            },
        ]
    }

    static let settingsBody = Schema.object([
        Property("values", .map(.any), "keys as in .sentinel.yml (dotted), e.g. {\"review.min_severity\": \"medium\"}"),
        Property("locks", .array(.string(minLength: 1, maxLength: 100), maxItems: 200, unique: true), required: false),
    ])

    static func saveSettings(_ call: APICall, _ actor: WorkspaceActor, scope: String) async throws -> APIResult {
        let body = try call.decode(SettingsBody.self)
        let (values, locks, by) = (body.values, Set(body.locks ?? []), call.actor)
        let version = try await actor.write { tx -> PolicyVersion? in
            try PolicyService.saveVersion(scope: scope, values: values, locks: locks, by: by, in: &tx)
            return try PolicyService.latest(scope: scope, in: tx.db)
        }
        return .json(.ok, APIModels.SettingsOut(scope: scope, version))
    }

    /// A repository of this workspace by id, or 404.
    static func repository(_ call: APICall, _ actor: WorkspaceActor) async throws -> Int64 {
        let id = try call.pathInt("repositoryId", what: "repository")
        guard let repo = try await actor.read({ db in try RepositoryStore.find(id: id, in: db) }), !repo.removed else {
            throw StorageError.notFound("no such repository")
        }
        return repo.id
    }
}
