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
        // A configuration serve refuses is the first error (exit 2, in the JSON too); the other
        // checks run on the defaults (it ended doctor at once, exit 1, which means warnings).
        let config: SentinelConfig
        var configProblem: String? = nil
        do { config = try global.loadConfig() } catch {
            configProblem = "\(error)"
            config = SentinelConfig()
        }
        var report = Doctor(dataDirectory: global.dataDirectory, config: config).run()
        if let configProblem {
            report.findings.insert(DoctorFinding(severity: .error, check: "config", message: configProblem,
                                                 fix: "correct the configuration file or SENTINEL_* variable it names: serve and every command refuse it"),
                                   at: 0)
        } else if online {
            report.findings += try await oneLine { try await onlineFindings(config) }
        }
        if json { try printJSON(report) } else { Self.print(report.findings) }
        if report.exitCode != 0 { throw ExitCode(report.exitCode) }
    }

    /// Findings a line each, a fix on the line below.
    static func print(_ findings: [DoctorFinding]) {
        for finding in findings {
            let label = finding.severity == .ok ? "ok   " : finding.severity == .warning ? "WARN " : "ERROR"
            Swift.print("\(label) \(finding.check): \(finding.message)" + (finding.fix.map { "\n      fix: \($0)" } ?? ""))
        }
    }
}

/// `integration test` and `provider test`: the connection test of the API and console (the
/// checks of `doctor --online` for one integration or provider), made with clients built as the
/// server builds them; exit 1 when a check found an error.
struct ConnectionTestCommand {
    let global: GlobalOptions
    let workspace: String

    struct Report: Encodable {
        let ok: Bool
        let checks: [DoctorFinding]
    }

    func run(json: Bool, _ test: @escaping (ConnectionTester, WorkspaceActor, String) async throws -> [DoctorFinding]) async throws {
        let findings = try await oneLine {
            try await global.withWorkspace(workspace) { actor, control, config in
                try await global.withConnectionTester(control: control, config: config) { tester in
                    try await test(tester, actor, try control.workspace(actor.id)?.name ?? actor.id.rawValue)
                }
            }
        }
        let passed = ConnectionTester.passed(findings)
        if json { try printJSON(Report(ok: passed, checks: findings)) } else { DoctorCommand.print(findings) }
        if !passed { throw ExitCode.failure }
    }
}

extension GlobalOptions {
    /// GitHub's and GitLab's connectors built as the server builds them (each integration's CA
    /// bundle, the `security.*` destination rules), shut down after `body`: the one way commands
    /// reach the platforms.
    func withPlatforms<T>(control: ControlStore, config: SentinelConfig,
                          _ body: (GitHubConnector, GitLabConnector) async throws -> T) async throws -> T {
        let destinations = try DestinationPolicy(config.security)
        let service = IntegrationService(control: control, masterKey: try MasterKey.load(at: dataDirectory.masterKeyFile))
        let gitHub = GitHubConnector(integrations: GitHubIntegrationCache(service: service),
                                     requestTimeout: .seconds(config.github.requestTimeoutSeconds), destinations: destinations)
        let gitLab = GitLabConnector(integrations: GitLabIntegrationCache(service: service),
                                     requestTimeout: .seconds(config.gitlab.requestTimeoutSeconds), destinations: destinations,
                                     publicURL: config.server.publicURL)
        let outcome: Result<T, any Error>
        do { outcome = .success(try await body(gitHub, gitLab)) } catch { outcome = .failure(error) }
        await gitHub.shutdown()
        await gitLab.shutdown()
        return try outcome.get()
    }

    /// The connection tester of the API and console, with clients built as the server builds them,
    /// shut down after `body`: the one way `doctor --online`, `integration test` and `provider test`
    /// reach the outside.
    func withConnectionTester<T>(control: ControlStore, config: SentinelConfig, _ body: (ConnectionTester) async throws -> T) async throws -> T {
        let destinations = try DestinationPolicy(config.security)
        let masterKey = try MasterKey.load(at: dataDirectory.masterKeyFile)
        return try await withPlatforms(control: control, config: config) { gitHub, gitLab in
            let http = try AsyncOutboundHTTPClient(destinations: destinations)
            let tester = ConnectionTester(gitHub: gitHub, gitLab: gitLab, providers: ProviderStore(masterKey: masterKey, destinations: destinations), aiHTTP: http)
            let outcome: Result<T, any Error>
            do { outcome = .success(try await body(tester)) } catch { outcome = .failure(error) }
            await http.shutdown()
            return try outcome.get()
        }
    }
}

extension DoctorCommand {
    /// The online checks of every integration (GitHub's, then GitLab's) and every enabled AI
    /// provider, through the connection tester of `integration test` and `provider test`; each
    /// workspace file opened in turn, beside a running server if any.
    func onlineFindings(_ config: SentinelConfig) async throws -> [DoctorFinding] {
        let (control, _) = try global.openControl(config)
        let integrations = try control.read { db in
            try Row.fetchAll(db, sql: """
                SELECT i.id, i.workspace_id, i.kind, w.name FROM integrations i JOIN workspaces w ON w.id = i.workspace_id
                WHERE i.kind IN ('github', 'gitlab') ORDER BY i.kind, w.name, i.id
                """).map { ($0["id"] as String, $0["workspace_id"] as String, $0["kind"] as String, $0["name"] as String) }
        }
        let workspaces = try control.workspaces()
        return try await global.withConnectionTester(control: control, config: config) { tester in
            var findings: [DoctorFinding] = []
            if !integrations.contains(where: { $0.2 == "github" }) {
                findings.append(DoctorFinding(severity: .ok, check: "github", message: "no GitHub integrations to check online", fix: nil))
            }
            for (rawID, workspace, kind, name) in integrations {
                guard let id = IntegrationID(rawID) else { continue }
                do {
                    findings += try await global.withWorkspace(workspace) { actor, _, _ in try await tester.integration(id, in: actor, workspaceName: name) }
                } catch {
                    findings.append(DoctorFinding(severity: .error, check: kind, message: "integration \(rawID) (workspace \(name)): cannot be read (\(error))",
                                                  fix: "see the workspace checks above"))
                }
            }
            for record in workspaces {
                do {
                    findings += try await global.withWorkspace(record.id) { actor, _, _ in
                        try await tester.enabledProviders(in: actor, workspaceName: record.name)
                    }
                } catch {
                    findings.append(DoctorFinding(severity: .error, check: "ai-provider", message: "workspace \(record.name): providers cannot be read (\(error))",
                                                  fix: "see the workspace checks above"))
                }
            }
            return findings
        }
    }
}
