import ArgumentParser
import Foundation
import SentinelCore

struct ReconcileCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reconcile",
        abstract: "Run one catch-up sweep: review open pull requests (GitHub) and merge requests (GitLab) whose head has no run, have GitHub resend failed webhook deliveries.",
        discussion: "Works beside a running server (the requested reviews are queued for it). `serve` sweeps by itself every reconcile.interval_seconds. Exits 1 when a sweep ended in error, repositories failed before a sweep stopped early, or a workspace could not be swept (after printing the report).")
    @OptionGroup var global: GlobalOptions
    @Option(help: "Only this workspace (id or name); default: every workspace.") var workspace: String?
    @Flag(help: "Report what the sweep would request; request nothing and store nothing.") var dryRun = false
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let report = try await sweep()
        // Printed whole first; then, for cron and scripts, a sweep that failed (a platform
        // unreachable or answering what it should not) or a workspace not swept is exit status 1.
        if report.integrations.contains(where: \.failed) || !report.failures.isEmpty { throw ExitCode(1) }
    }

    private func sweep() async throws -> ReconcileReport {
        try await oneLine {
            let config = try global.loadConfig()
            let (control, _) = try global.openControl(config)
            let logger = cliLogger(config, command: "reconcile")
            let report = try await global.withPlatforms(control: control, config: config) { gitHub, gitLab in
                let reconciler = Reconciler(connectors: ["github": gitHub, "gitlab": gitLab], options: ReconcileOptions(config.reconcile, dryRun: dryRun))
                var report = ReconcileReport(dryRun: dryRun)
                let targets = try workspace.map { [$0] } ?? control.workspaceIDs().map(\.rawValue)
                for target in targets {
                    do {
                        report.integrations += try await global.withWorkspace(target) { actor, _, _ in
                            try await reconciler.sweep(actor, logger: logger.with(["workspace_id": actor.id.rawValue]))
                        }
                    } catch {
                        if workspace != nil { throw error }
                        report.failures[target] = "\(error)"
                    }
                }
                return report
            }
            if json { try printJSON(report) } else { print(Self.text(report), terminator: "") }
            return report
        }
    }

    static func text(_ report: ReconcileReport) -> String {
        var out = ""
        let verb = report.dryRun ? "would request" : "requested"
        if report.integrations.isEmpty && report.failures.isEmpty { out += "no integrations to sweep\n" }
        for sweep in report.integrations {
            out += "workspace \(sweep.workspaceID) integration \(sweep.integrationID) (\(sweep.platform)): \(sweep.outcome)"
            if let stopped = sweep.stopped { out += " — \(stopped)" }
            out += "\n  \(sweep.repositories) repositories, \(sweep.pullRequestsFound) open pull requests, \(sweep.reviewsRequested.count) reviews \(verb)"
                + ", \(sweep.redeliveries.count) redeliveries \(verb)\n"
            for review in sweep.reviewsRequested {
                out += "  review \(review.repository)#\(review.prNumber) at \(review.headSHA)" + (review.runID.map { " (run \($0))" } ?? "") + "\n"
            }
            for delivery in sweep.redeliveries {
                out += "  redelivery \(delivery.deliveryID) (\(delivery.event)\(delivery.action.map { ".\($0)" } ?? ""), answered \(delivery.statusCode)"
                    + " at \(ISO8601.string(delivery.deliveredAt))): \(delivery.outcome)\n"
            }
        }
        for (id, reason) in report.failures.sorted(by: { $0.key < $1.key }) { out += "workspace \(id) not swept: \(reason)\n" }
        return out
    }
}
