import ArgumentParser
import Foundation
import SentinelCore

struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check the appliance and say what is wrong and how to fix it (exit 0 all good, 1 warnings, 2 errors).",
        discussion: "Offline checks, read-only, safe while serve runs: data-dir ownership and modes, master key, setup token, TLS certificate expiry, pending migrations, files newer than this binary, disk free, WAL sizes, dead jobs, stuck runs, offline workspaces, export lag.")
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Print the findings as JSON.") var json = false

    func run() async throws {
        let config = try await oneLine { try global.loadConfig() }
        let report = Doctor(dataDirectory: global.dataDirectory, config: config).run()
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
