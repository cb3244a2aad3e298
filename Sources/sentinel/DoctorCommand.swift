import ArgumentParser
import Foundation
import GRDB
import SentinelCore

struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check the appliance and say what is wrong and how to fix it (exit 0 all good, 1 warnings, 2 errors).",
        discussion: "Offline checks, read-only, safe while serve runs: data-dir ownership and modes, master key, setup token, TLS certificate expiry, pending migrations, files newer than this binary, disk free, WAL sizes, dead jobs, stuck runs, offline workspaces, export lag. With --online, each GitHub integration is checked against its API (App JWT: GET /app and the installation list; clock skew from the API's Date header), each GitLab integration against its instance (the token accepted, its api scope, and an expiry within 30 days a warning), and each enabled AI provider's models endpoint is called with its key.")
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Print the findings as JSON.") var json = false
    @Flag(help: "Also check online: each GitHub integration's API, App credentials, installations and clock skew; each AI provider's models endpoint and key.")
    var online = false

    func run() async throws {
        let config = try await oneLine { try global.loadConfig() }
        var report = Doctor(dataDirectory: global.dataDirectory, config: config).run()
        if online { report.findings += try await oneLine { try await onlineFindings(config) } }
        if json {
            try printJSON(report)
        } else {
            for finding in report.findings {
                let label = finding.severity == .ok ? "ok   " : finding.severity == .warning ? "WARN " : "ERROR"
                print("\(label) \(finding.check): \(finding.message)" + (finding.fix.map { "\n      fix: \($0)" } ?? ""))
            }
        }
        if report.exitCode != 0 { throw ExitCode(report.exitCode) }
    }
}

extension DoctorCommand {
    /// The online checks of every GitHub integration (each workspace file opened in turn, beside a running server if any).
    func onlineFindings(_ config: SentinelConfig) async throws -> [DoctorFinding] {
        let (control, _) = try global.openControl(config)
        let service = IntegrationService(control: control, masterKey: try MasterKey.load(at: global.dataDirectory.masterKeyFile))
        let rows = try control.read { db in
            try Row.fetchAll(db, sql: """
                SELECT i.id, i.workspace_id, w.name FROM integrations i JOIN workspaces w ON w.id = i.workspace_id
                WHERE i.kind = 'github' ORDER BY w.name, i.id
                """).map { ($0["id"] as String, $0["workspace_id"] as String, $0["name"] as String) }
        }
        var findings: [DoctorFinding] = []
        if rows.isEmpty { findings.append(DoctorFinding(severity: .ok, check: "github", message: "no GitHub integrations to check online", fix: nil)) }
        for (rawID, workspace, name) in rows {
            guard let id = IntegrationID(rawID) else { continue }
            let integration: GitHubIntegration?
            do {
                integration = try await global.withWorkspace(workspace) { actor, _, _ in try await service.loadGitHub(id, from: actor) }
            } catch {
                findings.append(DoctorFinding(severity: .error, check: "github", message: "integration \(rawID) (workspace \(name)): cannot be read (\(error))",
                                              fix: "see the workspace checks above"))
                continue
            }
            guard let integration else { continue }
            let http = try AsyncOutboundHTTPClient(caBundlePEM: integration.caBundlePEM, destinations: DestinationPolicy(config.security))
            findings += await OnlineDoctor().checkGitHub(integration, workspaceName: name, http: http)
            await http.shutdown()
        }
        // Each GitLab integration.
        let gitLab = try control.read { db in
            try Row.fetchAll(db, sql: """
                SELECT i.id, i.workspace_id, w.name FROM integrations i JOIN workspaces w ON w.id = i.workspace_id
                WHERE i.kind = 'gitlab' ORDER BY w.name, i.id
                """).map { ($0["id"] as String, $0["workspace_id"] as String, $0["name"] as String) }
        }
        for (rawID, workspace, name) in gitLab {
            guard let id = IntegrationID(rawID) else { continue }
            let integration: GitLabIntegration?
            do {
                integration = try await global.withWorkspace(workspace) { actor, _, _ in try await service.loadGitLab(id, from: actor) }
            } catch {
                findings.append(DoctorFinding(severity: .error, check: "gitlab", message: "integration \(rawID) (workspace \(name)): cannot be read (\(error))",
                                              fix: "see the workspace checks above"))
                continue
            }
            guard let integration else { continue }
            let http = try AsyncOutboundHTTPClient(caBundlePEM: integration.caBundlePEM, destinations: DestinationPolicy(config.security))
            findings += await OnlineDoctor().checkGitLab(integration, workspaceName: name, http: http)
            await http.shutdown()
        }
        // Each workspace's enabled AI providers.
        let store = ProviderStore(masterKey: try MasterKey.load(at: global.dataDirectory.masterKeyFile))
        let http = try AsyncOutboundHTTPClient(destinations: DestinationPolicy(config.security))
        for record in try control.workspaces() {
            do {
                let providers = try await global.withWorkspace(record.id) { actor, _, _ in try await store.active(in: actor) }
                for stored in providers {
                    guard let provider = WorkspaceModelResolver.config(stored) else { continue }
                    findings.append(await OnlineDoctor().checkProvider(provider, workspaceName: record.name, http: http))
                }
            } catch {
                findings.append(DoctorFinding(severity: .error, check: "ai-provider", message: "workspace \(record.name): providers cannot be read (\(error))",
                                              fix: "see the workspace checks above"))
            }
        }
        await http.shutdown()
        return findings
    }
}
