import ArgumentParser
import Foundation
import GRDB
import SentinelCore

struct ConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "config", abstract: "Review policy: validate .sentinel.yml, change settings, explain.",
                                                    subcommands: [Validate.self, Set.self, Explain.self, History.self])

    struct Validate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Check a .sentinel.yml; prints FILE:LINE:COLUMN: error|warning: message, exits 1 on any error.")
        @Argument(help: "The file to check (- or /dev/stdin: standard input).") var file: String

        func run() async throws {
            let data: Data
            do {
                data = try readInput(file, what: "file", limit: RepositoryConfigParser.maxBytes)
            } catch {
                print(ConfigDiagnostic(file: file, line: 1, column: 1, severity: .error, message: "\(error)").formatted)
                throw ExitCode(1)
            }
            let (lines, code) = RepositoryConfigParser.validate(data: data, path: file)
            for line in lines { print(line) }
            if code != 0 { throw ExitCode(code) }
        }
    }

    /// Opens a workspace for a settings command and resolves `--repo` to its registered repository.
    struct Target: ParsableArguments {
        @OptionGroup var global: GlobalOptions
        @Option(help: "Workspace id or name.") var workspace: String
        @Option(help: "Repository OWNER/NAME, or its id (`repo list`; two of one name are told apart by id). Omit for the workspace defaults.")
        var repo: String?

        /// Runs `body` with the workspace open (closed afterwards).
        func withWorkspace<T>(_ body: (WorkspaceActor) async throws -> T) async throws -> T {
            try await global.withWorkspace(workspace) { actor, _, _ in try await body(actor) }
        }

        func repositoryID(in actor: WorkspaceActor) async throws -> Int64? {
            guard let repo else { return nil }
            return try await actor.read { db in try RepositoryStore.resolve(repo, in: db).id }
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Save a new version of the workspace defaults (or a repository's settings) from a YAML file in .sentinel.yml format.")
        @OptionGroup var target: Target
        @Option(help: "YAML file with the settings (same keys as .sentinel.yml).") var file: String
        @Option(help: "Lock a key so higher layers cannot change it (repeatable).") var lock: [String] = []
        @Option(help: "Who makes the change (recorded on the version).") var by = "cli"
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            // Shown by `config history`: no control characters or escape sequences, one line, a name's length.
            if let problem = TextRules.problem(by, maxLength: 200) { throw CLIError("--by \(problem)") }
            try await oneLine {
                let text = try readInputText(file, what: "config file")
                let parsed = RepositoryConfigParser.parse(text, file: file, settings: true)
                if parsed.hasErrors { throw CLIError(parsed.errors.map(\.formatted).joined(separator: "; ")) }
                let (version, scope, notApplied) = try await target.withWorkspace { actor in
                    let repoID = try await target.repositoryID(in: actor)
                    let scope = repoID.map(PolicyService.repositoryScope) ?? PolicyService.workspaceScope
                    let (values, locks, by) = (parsed.values, Swift.Set(lock), self.by)
                    let version = try await actor.write { tx in
                        try PolicyService.saveVersion(scope: scope, values: values, locks: locks, by: by, in: &tx)
                    }
                    var notApplied: [LockViolation] = []
                    if let repoID { notApplied = try await actor.read { db in try PolicyService.repositorySettingsNotApplied(repoID, in: db) } }
                    return (version, scope, notApplied)
                }
                if json { try printJSON(["version_id": String(version), "scope": scope]) } else { print("saved policy version \(version) for \(scope)") }
                for w in parsed.warnings { FileHandle.standardError.write(Data((w.formatted + "\n").utf8)) }
                for v in notApplied { FileHandle.standardError.write(Data(("warning: not applied: \(v.message)\n").utf8)) }
            }
        }
    }

    struct Explain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every effective key of a repository with its value, source layer and lock state.")
        @OptionGroup var target: Target
        @Option(help: "A local copy of the repository's .sentinel.yml to include as the top layer.") var file: String?
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await oneLine {
                let text = try file.map { try readInputText($0, what: "config file") }
                let resolved = try await target.withWorkspace { actor in
                    let repoID = try await target.repositoryID(in: actor)
                    return try await actor.read { db in try PolicyService.resolve(in: db, repositoryID: repoID, fileText: text) }
                }
                if json { print(String(decoding: resolved.effective.explainJSON(pretty: true), as: UTF8.self)) } else {
                    print(resolved.effective.explainText())
                }
                for d in resolved.diagnostics { FileHandle.standardError.write(Data((d.formatted + "\n").utf8)) }
            }
        }
    }

    struct History: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Policy versions of the workspace defaults or a repository, newest first.")
        @OptionGroup var target: Target
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await oneLine {
                let versions = try await target.withWorkspace { actor in
                    let repoID = try await target.repositoryID(in: actor)
                    let scope = repoID.map(PolicyService.repositoryScope) ?? PolicyService.workspaceScope
                    return try await actor.read { db in try PolicyService.history(scope: scope, in: db) }
                }
                if json { try printJSON(versions) } else {
                    for v in versions { print("\(v.id)  \(v.createdAt)  by \(v.createdBy)  keys: \(v.values.keys.sorted().joined(separator: ", "))  locks: \(v.locks.joined(separator: ", "))") }
                }
            }
        }
    }
}
