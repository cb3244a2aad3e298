import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import SentinelCore

/// A repository's settings page, a GitLab integration's form and an integration's page.
extension Console {
    // MARK: Repositories

    /// A repository of this workspace that is not removed, or 404.
    func repository(_ m: Member, _ id: Int64) async throws -> RepositoryRecord {
        guard let repo = try await m.workspace.read({ db in try RepositoryStore.find(id: id, in: db) }), !repo.removed else {
            throw StorageError.notFound("no such repository")
        }
        return repo
    }

    struct RepositoryData: Sendable {
        let version: PolicyVersion?
        let history: [PolicyVersion]
        let entries: [ExplainedEntry]
        let diagnostics: [ConfigDiagnostic]
        /// What the file tried that a lock keeps from applying (the preview).
        let fileViolations: [LockViolation]
        /// What the repository's saved settings set that a workspace lock keeps from applying.
        let notApplied: [LockViolation]
    }

    /// The effective configuration of one repository with the source of every value (the API's
    /// `explainConfig`; with `file`, a `.sentinel.yml` to try, as `previewConfig`: what a pull
    /// request carrying it would get, and its problems), and its repository-scope settings
    /// (`getRepositorySettings` / `putRepositorySettings`).
    /// `typed`: a refused settings form's fields, shown again with `error`.
    func repositoryPage(_ m: Member, _ id: Int64, file: String? = nil, typed: Form? = nil, error: String? = nil,
                        status: HTTPResponse.Status = .ok) async throws -> Response {
        let repo = try await repository(m, id)
        let scope = PolicyService.repositoryScope(repo.id)
        if let file, file.utf8.count > RepositoryConfigParser.maxBytes {
            throw ConsoleError(status: .contentTooLarge, heading: "File too large",
                               message: "A .sentinel.yml has at most \(RepositoryConfigParser.maxBytes) bytes.")
        }
        let found = try await m.workspace.read { db in
            let resolved = try PolicyService.resolve(in: db, repositoryID: repo.id, fileText: file)
            return RepositoryData(version: try PolicyService.latest(scope: scope, in: db), history: try PolicyService.history(scope: scope, limit: 20, in: db),
                                  entries: resolved.effective.entries, diagnostics: resolved.diagnostics,
                                  fileViolations: resolved.effective.violations.filter { $0.attemptedBy == .repositoryFile },
                                  notApplied: try PolicyService.repositorySettingsNotApplied(repo.id, in: db))
        }
        var data = try Self.policyData(entries: found.entries, version: found.version, history: found.history)
        if let file {
            data["preview"] = ["file": file]
            data["diagnostics"] = found.diagnostics.map { ["text": $0.formatted] }
            // What the file tries that a lock keeps out (the API's preview lists it; this page did not).
            data["fileViolations"] = found.fileViolations.map { ["text": $0.message] }
        }
        data["repository"] = ["id": repo.id, "name": repo.fullName, "enabled": repo.enabled] as [String: Any]
        // Shown beside the form, after a save that changed a locked key as on every visit (it said nothing).
        data["notApplied"] = found.notApplied.map { ["text": $0.message] }
        data["canManage"] = allowed("putRepositorySettings", m.role)
        data["action"] = "\(m.base)/repositories/\(repo.id)"
        if let typed {
            data["values"] = typed["values"] ?? ""
            data["locks"] = typed["locks"] ?? ""
        }
        if let error { data["formError"] = error }
        return try render("repository", title: repo.fullName, data, visit: m.visit, member: m, status: status)
    }

    // MARK: Integrations

    /// Connects a GitLab instance (`IntegrationService.connectGitLab`, as `POST …/integrations/gitlab`),
    /// then shows the hook settings to paste into GitLab.
    func addGitLab(_ m: Member, _ form: Form) async throws -> Response {
        let summary = try await d.integrations.connectGitLab(
            workspace: m.workspace, baseURL: try form.required("base_url", "The GitLab URL"), token: try form.required("token", "The access token"),
            webhookSecret: Data(try form.requiredSecret("webhook_secret", "The webhook secret").utf8), caBundlePEM: form.text("ca_bundle"),
            botUsername: form.text("bot_username"), destinations: d.destinations, by: m.actorName)
        return Self.redirect("\(m.base)/integrations/\(summary.id)")
    }

    /// A connection test's findings for a page (the `connectionChecks` partial).
    static func tested(_ what: String, _ findings: [DoctorFinding]) -> [String: Any] {
        ["what": what, "ok": ConnectionTester.passed(findings),
         "checks": findings.map { f -> [String: Any] in
             var check: [String: Any] = ["severity": f.severity.rawValue, "message": f.message]
             if let fix = f.fix { check["fix"] = fix }
             return check
         }]
    }

    /// Tests the integration's connection now (`testIntegration`) and shows the page with the findings.
    func testIntegration(_ m: Member, id: String) async throws -> Response {
        guard let integrationID = IntegrationID(id) else { throw IntegrationError.notFound("no such integration") }
        let findings = try await d.connections.integration(integrationID, in: m.workspace, workspaceName: m.record.name)
        return try await integrationPage(m, id: id, tested: Self.tested("integration \(id)", findings))
    }

    /// One integration: where its webhook goes, the settings for GitLab's webhook form, its last
    /// delivery, and the findings of a connection test just made (`tested`).
    func integrationPage(_ m: Member, id: String, tested: [String: Any]? = nil) async throws -> Response {
        guard let integration = try await d.integrations.list(in: m.workspace).first(where: { $0.id == id }) else {
            throw IntegrationError.notFound("no such integration")
        }
        let delivery = try await m.workspace.read { db in try DeliverySummary.latest(integrationID: id, in: db) }
        var data: [String: Any] = [
            "integration": ["id": integration.id, "kind": integration.kind, "apiURL": integration.apiURL, "created": integration.createdAt,
                            "webhookURL": baseURL(m.visit.request) + integration.webhookPath, "gitlab": integration.kind == "gitlab",
                            "appID": integration.appID.map(String.init) ?? ""] as [String: Any],
        ]
        if let delivery { data["delivery"] = Self.deliveryData(delivery) }
        data["canRotate"] = allowed("updateIntegration", m.role)
        data["canTest"] = allowed("testIntegration", m.role)
        if let tested { data["tested"] = tested }
        return try render("integration", title: "Integration \(integration.id)", data, visit: m.visit, member: m)
    }

    /// Replaces what the form gives of an integration's credentials, as `PATCH …/integrations/{id}` does.
    func rotateIntegration(_ m: Member, _ form: Form, id: String) async throws -> Response {
        guard let integrationID = IntegrationID(id) else { throw IntegrationError.notFound("no such integration") }
        let credentials = IntegrationCredentials(webhookSecret: form.secret("webhook_secret").map { Data($0.utf8) }, privateKeyPEM: form.text("private_key"),
                                                 token: form.text("token"), caBundlePEM: form.text("ca_bundle"))
        _ = try await d.integrations.rotate(integrationID, in: m.workspace, credentials: credentials, by: m.actorName, destinations: d.destinations)
        await d.gitHubIntegrations.forget(integrationID)
        await d.gitLabIntegrations.forget(integrationID)
        return Self.redirect("\(m.base)/integrations/\(integrationID)")
    }
}
