import ArgumentParser
import Foundation
import SentinelCore

struct Backup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Online backup of control.sqlite and workspace files, with a manifest.")
    @OptionGroup var global: GlobalOptions
    @Option(help: "Directory to write the backup into (created; must not hold a backup).") var out: String
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
            var only: WorkspaceID?
            if let workspace {
                guard let id = WorkspaceID(workspace) else { throw CLIError("'\(workspace)' is not a workspace id") }
                only = id
            }
            let restored = try BackupService(dataDirectory: global.dataDirectory, opener: DatabaseOpener(config: config))
                .restore(from: URL(fileURLWithPath: from, isDirectory: true), workspace: only, log: { print($0) })
            print("restored \(restored.count) file(s): \(restored.map(\.file).joined(separator: ", "))")
        }
    }
}
