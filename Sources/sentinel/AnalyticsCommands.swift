import ArgumentParser
import Foundation
import SentinelCore

struct ExportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write every workspace's new events into one PostgreSQL SQL dump (data/exports/) with a manifest.",
        discussion: "Load the dump with `psql -v ON_ERROR_STOP=1 -f FILE`; loading it twice changes nothing.")
    @OptionGroup var global: GlobalOptions
    @Option(help: "Where to write the dump: a file's path, or a directory to write it in under its export id (default: DATA_DIR/exports/<export id>.sql).") var out: String?
    @Flag(help: "Print the manifest as JSON.") var json = false

    func run() async throws {
        let incomplete = try await oneLine {
            let config = try global.loadConfig()
            let (control, opener) = try global.openControl(config)
            let exporter = AnalyticsExporter(dataDirectory: global.dataDirectory, control: control, opener: opener)
            // `--out exports/` names a directory: one that is not there is an error, not a file of that name.
            if let out, out.hasSuffix("/"), !FileManager.default.fileExists(atPath: out) {
                throw CLIError("cannot write the dump to \(out): the directory does not exist")
            }
            let manifest = try exporter.export(to: out.map { URL(fileURLWithPath: $0) })
            // The dump's directory: DATA_DIR/exports/, the directory --out names, or that of the file it names.
            let directory = out.map { URL(fileURLWithPath: $0) }.map { url in
                var isDirectory: ObjCBool = false
                return FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) && isDirectory.boolValue ? url : url.deletingLastPathComponent()
            } ?? global.dataDirectory.exportsDirectory
            let path = directory.appendingPathComponent(manifest.file).path
            if json { try printJSON(manifest) } else {
                print("\(path)  \(manifest.events) events")
                for part in manifest.workspaces where part.error != nil {
                    print("  workspace \(part.workspaceID) exported up to event \(part.toSeq) only: \(part.error!)")
                }
            }
            return manifest.workspaces.contains { $0.error != nil }
        }
        // A workspace left out (its events come with a later export) is a failure to cron and
        // scripts, as to the nightly service; it exited 0.
        if incomplete { throw ExitCode.failure }
    }
}

struct AnalyticsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "analytics",
                                                    abstract: "A workspace's daily rollups per repository: runs, findings, tokens, cost, durations.")
    @OptionGroup var global: GlobalOptions
    @Option(help: "Workspace id or name.") var workspace: String
    @Option(help: "First day, YYYY-MM-DD (default: 30 days ago).") var from: String?
    @Option(help: "Last day, YYYY-MM-DD (default: today).") var to: String?
    @Option(help: "Only this repository (owner/name).") var repository: String?
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        try await oneLine {
            let (from, to) = try Rollups.days(from: self.from, to: self.to)
            let repository = self.repository
            let rollups = try await global.withWorkspace(workspace) { actor, _, _ in
                // Fold what the server has not folded yet, so the numbers are current.
                try await actor.write { tx in try Rollups.catchUp(in: tx.db) }
                return try await actor.read { db in try Rollups.query(from: from, to: to, repository: repository, in: db) }
            }
            if json { try printJSON(rollups) } else if rollups.isEmpty {
                print("no activity from \(from) to \(to)")
            } else {
                for r in rollups {
                    let outcomes = r.runsByOutcome.filter { $0.value > 0 }.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
                    let p = [r.durationP50Ms.map { "p50 \($0) ms" }, r.durationP95Ms.map { "p95 \($0) ms" }].compactMap { $0 }
                    let byOutcome = outcomes.isEmpty ? "" : " (" + outcomes.joined(separator: ", ") + ")"
                    print("\(r.day) \(r.repository.isEmpty ? "(no repository)" : r.repository): \(r.runs) runs\(byOutcome)"
                          + ", \(r.findings) findings, \(r.inputTokens + r.outputTokens) tokens, \(r.costUSD) USD"
                          + (p.isEmpty ? "" : ", " + p.joined(separator: " ")))
                }
            }
        }
    }
}
