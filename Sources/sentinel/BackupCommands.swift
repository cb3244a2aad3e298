import ArgumentParser
import Foundation
import SentinelCore

struct Backup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Online backup of control.sqlite and workspace files, with a manifest.")
    @OptionGroup var global: GlobalOptions
    @Option(help: "Directory to write the backup into (created; new, or an empty directory).") var out: String
    @Option(help: "Back up only this workspace (id).") var workspace: String?
    @Flag(help: "Print the manifest as JSON.") var json = false

    func run() async throws {
        try await oneLine {
            let config = try global.loadConfig()
            let (control, opener) = try global.openControl(config)
            var only: WorkspaceID?
            if let workspace {
                guard let id = WorkspaceID(workspace) else { throw CLIError("'\(workspace)' is not a workspace id") }
                only = id
            }
            let manifest = try BackupService(dataDirectory: global.dataDirectory, opener: opener)
                .backup(to: URL(fileURLWithPath: out, isDirectory: true), workspace: only, control: control)
            if json { try printJSON(manifest) } else {
                let bytes = manifest.files.reduce(Int64(0)) { $0 + $1.size }
                print("backed up \(manifest.files.count) file(s), \(bytes) bytes, to \(out)")
            }
            if let skipped = manifest.skipped {
                throw CLIError("\(skipped.count) workspace(s) could not be backed up and are not in \(out): "
                    + skipped.map { "\($0.workspaceID) (\($0.reason))" }.joined(separator: "; ")
                    + "; restore from an earlier backup only one whose file is missing or damaged (sentinel restore --from BACKUP --workspace ID)")
            }
        }
    }
}

struct Restore: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Restore from a backup after verifying checksums and integrity (server stopped).")
    @OptionGroup var global: GlobalOptions
    @Option(help: "Backup directory (holds manifest.json).") var from: String
    @Option(help: "Restore only this workspace (id).") var workspace: String?

    func run() async throws {
        try await oneLine {
            let config = try global.loadConfig()
            try global.requireDataDirectoryNotAFile()
            try global.requireEnterable(from, what: "the backup")
            var only: WorkspaceID?
            if let workspace {
                guard let id = WorkspaceID(workspace) else { throw CLIError("'\(workspace)' is not a workspace id") }
                only = id
            }
            let restored = try BackupService(dataDirectory: global.dataDirectory, opener: DatabaseOpener(config: config))
                .restore(from: URL(fileURLWithPath: from, isDirectory: true), workspace: only, log: { print($0) })
            print("restored \(restored.count) file(s): \(restored.map(\.file).joined(separator: ", "))")
            if !FileManager.default.fileExists(atPath: global.dataDirectory.masterKeyFile.path) {
                print("note: a backup does not hold secrets/master.key: copy the original machine's key to "
                      + "\(global.dataDirectory.masterKeyFile.path) (mode 600) before starting sentinel serve; the restored credentials are sealed with it")
            }
        }
    }
}

struct Verify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check every file of the data directory (or of a backup): integrity, foreign keys, manifest checksums, event log without gaps.",
        discussion: "Only reads; safe while serve runs. Exits non-zero when any check fails, naming each problem.")
    @OptionGroup var global: GlobalOptions
    @Option(help: "Verify this backup directory (holds manifest.json) instead of the data directory.") var backup: String?
    @Flag(help: "Print the report as JSON.") var json = false

    func run() async throws {
        let report: VerifyReport
        if let backup {
            try await oneLine { try global.requireEnterable(backup, what: "the backup") }
            report = DataVerifier.verify(backup: URL(fileURLWithPath: backup, isDirectory: true))
        } else {
            try await oneLine { try global.requireEnterable(global.dataDirectory.root.path, what: "the data directory") }
            let config = try await oneLine { try global.loadConfig() }
            report = DataVerifier.verify(dataDirectory: global.dataDirectory, busyTimeout: Double(config.storage.busyTimeoutMilliseconds) / 1000)
        }
        if json {
            try printJSON(report)
        } else {
            for file in report.files {
                let events = file.events.map { ", \($0) events" } ?? ""
                print("\(file.ok ? "ok  " : "FAIL") \(file.file)\(events)")
            }
            for problem in report.problems { print("problem: \(problem.file): \(problem.check): \(problem.detail)") }
        }
        guard report.ok else {
            throw CLIError("verify found \(report.problems.count) problem(s) in \(report.source)")
        }
        if !json { print("verified \(report.files.count) file(s) in \(report.source): all checks passed") }
    }
}
