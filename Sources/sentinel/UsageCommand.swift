import ArgumentParser
import Foundation
import SentinelCore

struct UsageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "usage", abstract: "A workspace's review runs and AI usage for a month (UTC).")
    @OptionGroup var global: GlobalOptions
    @Option(help: "Workspace id or name.") var workspace: String
    @Option(help: "Billing period YYYY-MM (default: the current month).") var period: String?
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        try await oneLine {
            let period = self.period ?? UsageReport.currentPeriod()
            let current = period == UsageReport.currentPeriod()
            let (report, plan) = try await global.withWorkspace(workspace) { actor, control, config in
                let id = actor.id
                let plan = try global.billing(config, control).currentPlan(of: id)
                return (try await actor.read { db in
                    var report = try UsageReport.make(workspace: id, period: period, in: db)
                    report.plan = plan.name
                    if current { report.limits = try PlanLimits.status(plan: plan, in: db, now: Date()) }
                    return report
                }, plan)
            }
            if json { try printJSON(report) } else {
                let runs = report.runs.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
                print("\(report.period)  runs: \(runs.isEmpty ? "none" : runs)")
                for m in report.models {
                    print("  \(m.provider) \(m.model): \(m.calls) calls, \(m.inputTokens) in / \(m.outputTokens) out tokens, \(m.costUSD.plainDecimalText) USD")
                }
                print("  total: \(report.inputTokens) in / \(report.outputTokens) out tokens, \(report.costUSD.plainDecimalText) USD")
                print("  plan: \(plan.name)")
                for l in report.limits ?? [] {
                    print("    \(l.limit): \(l.used) of \(l.allowed)\(l.used >= l.allowed ? " (limit reached)" : l.softLimitReached ? " (over 80%)" : "")")
                }
            }
        }
    }
}
