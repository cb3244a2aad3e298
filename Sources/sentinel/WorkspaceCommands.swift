import ArgumentParser
import Foundation
import SentinelCore

struct WorkspaceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "workspace", abstract: "Create and inspect workspaces (tenants).",
                                                    subcommands: [Create.self, List.self, Show.self, AddMember.self, RemoveMember.self, Rename.self, Delete.self])

    struct Rename: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Rename a workspace (its id, file and webhook URLs stay); safe while serve runs.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Workspace id or name.") var workspace: String
        @Argument(help: "The new name (unique).") var newName: String

        func run() async throws {
            try await oneLine {
                let config = try global.loadConfig()
                let (control, opener) = try global.openControl(config)
                let service = WorkspaceService(dataDirectory: global.dataDirectory, control: control, opener: opener)
                let record = try service.find(workspace)
                guard let id = record.workspaceID else { throw CLIError("invalid workspace id in control.sqlite") }
                let renamed = try service.rename(id, to: newName, by: "cli")
                print("workspace \(renamed.id) renamed from \(record.name) to \(renamed.name)")
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a workspace: a final backup into DATA_DIR/backups/deleted/, then its file, members, integrations and pending work.",
            discussion: """
                Stop sentinel serve first: the command refuses while serve holds the data directory. The checks of its \
                unfinished reviews are concluded neutral first. Webhooks of the workspace's integrations then answer 410 Gone. What the analytics export already carried stays there.
                """)
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Workspace id or name.") var workspace: String
        @Option(help: "The workspace's id or name again, to confirm.") var confirm: String
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await oneLine {
                let config = try global.loadConfig()
                let data = global.dataDirectory
                guard let lock = try FileLock.tryAcquire(data.serveLockFile) else {
                    throw CLIError("sentinel serve is running on \(data.root.path); stop it before deleting a workspace (nothing was deleted)")
                }
                defer { _ = lock }
                let (control, opener) = try global.openControl(config)
                let service = WorkspaceService(dataDirectory: data, control: control, opener: opener, litestream: config.litestream)
                let record = try service.find(workspace)
                guard confirm == record.id || confirm == record.name else {
                    throw CLIError("--confirm must repeat the workspace's id or name (\(record.name)); nothing was deleted")
                }
                guard let id = record.workspaceID else { throw CLIError("invalid workspace id in control.sqlite") }
                // The checks of its unfinished reviews are concluded first: after it, no credentials
                // are left to do it (a file Sentinel cannot open has none to conclude).
                let logger = cliLogger(config, command: "workspace delete")
                try await global.withPlatforms(control: control, config: config) { gitHub, gitLab in
                    let reviews = ReviewRunner(connector: SourceControlPlatforms(["github": gitHub, "gitlab": gitLab]))
                    do {
                        try await global.withWorkspace(id.rawValue) { actor, _, _ in
                            await reviews.concludeChecksBeforeDeletion(of: actor, logger: logger)
                        }
                    } catch {
                        logger.warning("could not open the workspace to conclude its reviews' checks", metadata: ["error": "\(error)"])
                    }
                }
                let deletion = try service.delete(id, by: "cli")
                if json { try printJSON(deletion) } else {
                    print("deleted workspace \(deletion.id) (\(deletion.name)); final backup: \(deletion.backup)")
                    if let export = deletion.export {
                        print("its \(deletion.exportedEvents) event(s) not yet exported are in \(export), for the analytics loader")
                    }
                    if let left = deletion.exportError {
                        FileHandle.standardError.write(Data("warning: not every event could be exported (\(left)); the rest are in the final backup only\n".utf8))
                    }
                }
            }
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a workspace and its database file.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Workspace name (unique).") var name: String
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await oneLine {
                let config = try global.loadConfig()
                // Checked first: a name refused made a whole data directory, with a master key, and then failed.
                do { _ = try WorkspaceService.validName(name) } catch let error as StorageError { throw CLIError(error.description) }
                let (control, opener) = try global.openControl(config, create: true)
                let service = WorkspaceService(dataDirectory: global.dataDirectory, control: control, opener: opener, litestream: config.litestream)
                let record = try service.create(name: name)
                if json { try printJSON(service.summary(record, detailed: false)) } else { print("created workspace \(record.id) (\(record.name))") }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List workspaces.")
        @OptionGroup var global: GlobalOptions
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await oneLine {
                let config = try global.loadConfig()
                let (control, opener) = try global.openControl(config)
                let service = WorkspaceService(dataDirectory: global.dataDirectory, control: control, opener: opener)
                let summaries = try service.list().map { service.summary($0, detailed: false) }
                if json { try printJSON(summaries) } else {
                    for s in summaries { print("\(s.id)  \(s.name)  plan=\(s.plan)  file=\(s.status)") }
                    if summaries.isEmpty { print("no workspaces yet: sentinel workspace create NAME") }
                }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one workspace (by id or name) and the state of its file.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Workspace id or name.") var workspace: String
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await oneLine {
                let config = try global.loadConfig()
                let (control, opener) = try global.openControl(config)
                let service = WorkspaceService(dataDirectory: global.dataDirectory, control: control, opener: opener)
                let summary = service.summary(try service.find(workspace), detailed: true)
                if json { try printJSON(summary) } else {
                    print("id:      \(summary.id)\nname:    \(summary.name)\nplan:    \(summary.plan)\ncreated: \(summary.createdAt)")
                    print("file:    \(summary.file) (\(summary.status), \(summary.fileBytes ?? 0) bytes, schema \(summary.schemaVersion ?? "?"))")
                    let jobs = (summary.jobs ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
                    print("jobs:    \(jobs.isEmpty ? "none" : jobs)\nevents:  \(summary.events ?? 0)")
                }
            }
        }
    }
}

struct JobsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "jobs", abstract: "Inspect a workspace's job queue; retry or discard dead jobs.",
                                                    subcommands: [List.self, Retry.self, Discard.self])

    struct Target: ParsableArguments {
        @OptionGroup var global: GlobalOptions
        @Option(help: "Workspace id or name.") var workspace: String

        /// Runs `body` with the workspace open (closed afterwards).
        func withWorkspace<T>(_ body: (WorkspaceActor) async throws -> T) async throws -> T {
            try await global.withWorkspace(workspace) { actor, _, _ in try await body(actor) }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List jobs (default: dead ones).")
        @OptionGroup var target: Target
        @Option(help: "queued | running | succeeded | dead | cancelled | all") var state = "dead"
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await oneLine {
                let filter: JobState?
                if state == "all" { filter = nil } else {
                    guard let s = JobState(rawValue: state) else { throw CLIError("unknown state '\(state)'") }
                    filter = s
                }
                let shown = 1000
                var jobs = try await target.withWorkspace { actor in try await actor.jobs(state: filter, limit: shown + 1) }
                let more = jobs.count > shown
                if more { jobs.removeFirst() }
                if json { try printJSON(jobs.map(JobView.init)) } else {
                    if more { print("(the newest \(shown) \(state == "all" ? "" : state + " ")jobs; older ones are not shown)") }
                    for j in jobs.map(JobView.init) {
                        print("\(j.id)  \(j.kind)  \(j.state)  attempts=\(j.attempts)/\(j.maxAttempts)  \(j.lastError ?? "")")
                    }
                    if jobs.isEmpty { print("no \(state) jobs") }
                }
            }
        }
    }

    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Put a dead job back in the queue with a fresh attempt budget.")
        @OptionGroup var target: Target
        @Argument(help: "Job id.") var job: Int64

        func run() async throws {
            try await oneLine {
                let (ok, kind) = try await target.withWorkspace { actor in
                    let kind = try await actor.job(job)?.kind
                    return (try await actor.retryDeadJob(job, by: "cli"), kind)
                }
                guard ok else { throw CLIError("job \(job) is not dead (or does not exist)") }
                print("job \(job) queued again")
                if kind == Notifications.flushKind {
                    // Its batch was dropped when it went dead: the retry sends only what was queued since.
                    print("note: a notification job's messages were dropped when it went dead, so this retry does not send them again "
                          + "(only notices queued for the channel since, if any); check the channel with `sentinel notify test`")
                }
            }
        }
    }

    struct Discard: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Give up on a dead job; it is pruned with finished jobs.")
        @OptionGroup var target: Target
        @Argument(help: "Job id.") var job: Int64

        func run() async throws {
            try await oneLine {
                let ok = try await target.withWorkspace { actor in try await actor.discardDeadJob(job, by: "cli") }
                guard ok else { throw CLIError("job \(job) is not dead (or does not exist)") }
                print("job \(job) discarded")
            }
        }
    }
}

/// A job as admins see it: times as ISO 8601, payload left out (it may hold customer data).
struct JobView: Encodable {
    let id: Int64
    let kind: String
    let state: String
    let priority: String
    let attempts: Int
    let maxAttempts: Int
    let runAt: String
    let lastError: String?
    let correlationID: String?

    init(_ job: JobRecord) {
        id = job.id
        kind = job.kind
        state = job.state.rawValue
        priority = job.jobPriority.description
        attempts = job.attempts
        maxAttempts = job.maxAttempts
        runAt = Date(timeIntervalSince1970: job.runAt).formatted(.iso8601)
        lastError = job.lastError
        correlationID = job.correlationID
    }
}
