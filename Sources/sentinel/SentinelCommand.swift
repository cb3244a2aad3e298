import ArgumentParser
import Foundation
import Logging
import SentinelCore
import SentinelServer

@main
struct SentinelCommand: AsyncParsableCommand {
    /// Files Sentinel makes (databases, backups, exports, keys) hold every tenant's data: readable
    /// by its own user alone, from a shell too, as the systemd units' `UMask=0077` has it (from a
    /// shell with umask 022 every file was readable by the machine's other users).
    static func main() async {
        umask(0o077)
        do {
            var command = try parseAsRoot()
            if var command = command as? AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }

    static let configuration = CommandConfiguration(
        commandName: "sentinel",
        abstract: "Sentinel: a self-hosted AI code-review appliance.",
        version: SentinelVersion.current,
        subcommands: [Serve.self, Migrate.self, VersionCommand.self, WorkspaceCommand.self, IntegrationCommand.self, ProviderCommand.self, ConfigCommand.self, ReviewCommand.self, UsageCommand.self, PlanCommand.self, RepoCommand.self, UserCommand.self, TokenCommand.self, OpenAPICommand.self, AnalyticsCommand.self, ExportCommand.self, JobsCommand.self, Backup.self, Restore.self, Verify.self, DoctorCommand.self, ReconcileCommand.self, LitestreamCommand.self, NotifyCommand.self, AuditCommand.self])
}

/// Options every command shares: where the data lives and which config file to read.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "Data directory (default: $SENTINEL_DATA_DIR or ./data).")
    var dataDir: String?

    @Option(name: .long, help: "YAML config file (default: DATA_DIR/sentinel.yaml if present); every key has a default.")
    var config: String?

    var context: CLIContext { CLIContext(dataDir: dataDir, configFile: config) }
    var dataDirectory: DataDirectory { context.dataDirectory }
    func loadConfig() throws -> SentinelConfig { try context.loadConfig() }
    func openControl(_ config: SentinelConfig, create: Bool = false) throws -> (ControlStore, DatabaseOpener) {
        try context.openControl(config, create: create)
    }
    func requireDataDirectoryNotAFile() throws { try context.requireDataDirectoryNotAFile() }
    func requireEnterable(_ path: String, what: String) throws { try context.requireEnterable(path, what: what) }
    func withWorkspace<T>(_ idOrName: String, _ body: (WorkspaceActor, ControlStore, SentinelConfig) async throws -> T) async throws -> T {
        try await context.withWorkspace(idOrName, body)
    }
}

/// Where an administrative command finds the appliance's files.
struct CLIContext {
    var dataDir: String?
    var configFile: String?

    var dataDirectory: DataDirectory {
        DataDirectory(path: dataDir ?? ProcessInfo.processInfo.environment["SENTINEL_DATA_DIR"] ?? "data")
    }

    /// `--config FILE`, else `DATA_DIR/sentinel.yaml` when it exists, else the built-in defaults.
    func loadConfig() throws -> SentinelConfig {
        var file = configFile
        let inDataDir = dataDirectory.root.appendingPathComponent("sentinel.yaml")
        if file == nil, FileManager.default.fileExists(atPath: inDataDir.path) { file = inDataDir.path }
        do { return try ConfigLoader.load(file: file) } catch let error as ConfigError { throw CLIError(error.description) }
    }

    /// Opens a workspace's file (by id or name) in this process, beside a running server if any,
    /// with the command registry's listeners, runs `body` with it and closes it afterwards, whatever
    /// happens: the one way a command uses a workspace file.
    func withWorkspace<T>(_ idOrName: String, _ body: (WorkspaceActor, ControlStore, SentinelConfig) async throws -> T) async throws -> T {
        let (actor, control, config) = try openWorkspace(idOrName)
        do {
            let value = try await body(actor, control, config)
            await actor.close()
            return value
        } catch {
            await actor.close()
            throw error
        }
    }

    private func openWorkspace(_ idOrName: String) throws -> (WorkspaceActor, ControlStore, SentinelConfig) {
        let config = try loadConfig()
        let (control, opener) = try openControl(config)
        let record = try WorkspaceService(dataDirectory: dataDirectory, control: control, opener: opener).find(idOrName)
        guard let id = record.workspaceID else { throw CLIError("invalid workspace id in control.sqlite") }
        let file = dataDirectory.workspaceFile(id)
        // SQLite says only "unable to open database file"; `workspace show` said "corrupt".
        if let (problem, paths) = DataDirectory.databaseAccessProblem(file) {
            throw CLIError("cannot open workspace \(record.name)'s file \(file.path): \(problem); run sentinel as the user the service runs as "
                           + "(e.g. sudo -u sentinel sentinel …), or give the file to that user (chown sentinel:sentinel \(paths)); "
                           + "do not restore it, which would lose what was written since the backup")
        }
        let database = try opener.open(file, kind: .workspace, label: id.rawValue)
        return (WorkspaceActor(id: id, database: database, control: control, registry: ApplianceJobs.commandRegistry(), config: config.jobs), control, config)
    }

    /// A directory this user may not enter hides what is in it: that is not "no data directory" or
    /// "not a backup" (whose advice, `sentinel serve`, would make a new one elsewhere).
    func requireEnterable(_ path: String, what: String) throws {
        if FileManager.default.fileExists(atPath: path), access(path, X_OK) != 0, errno == EACCES {
            throw CLIError("cannot enter \(what) \(path) as user \(currentUserName()): permission denied; run the command as the "
                           + "user that owns it (e.g. sudo -u sentinel sentinel …)")
        }
    }

    /// The appliance's own database files (control.sqlite, the intake journal, with their `-wal`
    /// and `-shm`) this user may not read and write, as a command run as root leaves them, are said
    /// to be so with the fix: SQLite says only "unable to open database file". They are not damaged.
    func requireOwnFilesAccessible() throws {
        let directory = dataDirectory
        for base in [directory.controlFile, directory.intakeJournalFile] {
            for file in [base.path, base.path + "-wal", base.path + "-shm"].map(URL.init(fileURLWithPath:)) {
                if let problem = DataDirectory.accessProblem(file) {
                    throw CLIError("cannot open \(file.path): \(problem); run sentinel as the user the service runs as (e.g. sudo -u sentinel "
                                   + "sentinel …), or give the file to that user (chown sentinel:sentinel \(file.path)); it is not damaged: "
                                   + "do not restore it")
                }
            }
        }
    }

    /// A `--data-dir` that names a file is said to be one (not a Foundation error about creating a
    /// directory, or SQLite's "unable to open database file").
    func requireDataDirectoryNotAFile() throws {
        let path = dataDirectory.root.path
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue {
            throw CLIError("the data directory \(path) is a file, not a directory")
        }
    }

    /// Opens control.sqlite for administrative commands. Only the commands that set an appliance up
    /// (`workspace create`, `user create`; and `serve`) create the data directory: any other command
    /// pointed at a directory without `control.sqlite` (a mistyped `--data-dir`) stops with an error
    /// instead of leaving a new data directory, with a master key of its own, behind.

    func openControl(_ config: SentinelConfig, create: Bool = false) throws -> (ControlStore, DatabaseOpener) {
        let directory = dataDirectory
        let path = directory.root.path
        try requireDataDirectoryNotAFile()
        try requireEnterable(path, what: "the data directory")
        if let problem = directory.unfinishedRestoreProblem() { throw CLIError(problem) }
        if create {
            do { try directory.prepare() } catch let error as StorageError {
                throw CLIError(error.description)
            } catch {
                throw CLIError("cannot create the data directory \(path): \((error as NSError).localizedDescription)")
            }
        } else if !FileManager.default.fileExists(atPath: directory.controlFile.path) {
            throw CLIError("no Sentinel data directory at \(path) (no control.sqlite there): pass --data-dir or set SENTINEL_DATA_DIR; "
                           + "`sentinel serve`, `sentinel workspace create` or `sentinel user create` makes a new one")
        }
        // Not while a restore replaces the files: what this command changed would be lost with them.
        if FileManager.default.fileExists(atPath: path) {
            // A lock file that cannot even be opened (a read-only data directory) says nothing of a restore.
            var restoring = false
            // Shared: two commands probing at once (a cron script's) do not take each other for a restore.
            do { restoring = try FileLock.tryAcquireShared(directory.restoreLockFile) == nil } catch {}
            if restoring { throw CLIError("a restore is running on \(path); run this again when it has finished") }
        }
        try requireOwnFilesAccessible()
        let opener = DatabaseOpener(config: config)
        do {
            return (try ControlStore(dataDirectory: directory, opener: opener), opener)
        } catch {
            // SQLite says only "unable to open database file" (a WAL file needs its -shm beside it).
            switch DataDirectoryWriteProblem(at: path) {
            case .readOnlyFileSystem:
                throw CLIError("cannot open \(directory.controlFile.path): \(path) is on a read-only file system (`sentinel doctor` says more)")
            case .notWritable(let reason):
                throw CLIError("cannot open \(directory.controlFile.path): \(path) is not writable by uid \(geteuid()) (\(reason)); "
                               + "run sentinel as the user the service runs as")
            case nil:
                var isDirectory: ObjCBool = false
                if FileManager.default.fileExists(atPath: directory.controlFile.path, isDirectory: &isDirectory), isDirectory.boolValue {
                    throw CLIError("cannot open \(directory.controlFile.path): it is a directory, not a database file; "
                                   + "restore control.sqlite from a backup (sentinel restore --from BACKUP)")
                }
                throw error
            }
        }
    }
}

/// A file an admin names on the command line (a key, a secret, a password, a diff, a policy), read
/// whole: `-` is standard input, and pipes such as `/dev/stdin` or `<(vault read …)` work too, so a
/// secret need not be written to disk. A missing file, a directory, an unreadable one or one past
/// `limit` bytes (64 MiB unless the caller reads less; `/dev/zero` never ends) is an error that says
/// which (`what`: "API key file", "diff", …).
func readInput(_ path: String, what: String, limit: Int = 64 << 20) throws -> Data {
    let handle: FileHandle
    if path == "-" {
        handle = FileHandle.standardInput
    } else {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw CLIError("cannot read \(what) \(path): no such file") }
        if isDirectory.boolValue { throw CLIError("cannot read \(what) \(path): it is a directory") }
        do { handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path)) } catch {
            throw CLIError("cannot read \(what) \(path): \((error as NSError).localizedDescription)")
        }
    }
    defer { if path != "-" { try? handle.close() } }
    var data = Data()
    do {
        while let chunk = try handle.read(upToCount: min(1 << 20, limit + 1 - data.count)), !chunk.isEmpty {
            data.append(chunk)
            guard data.count <= limit else {
                throw CLIError("cannot read \(what) \(path): it holds more than \(bytesText(limit)), the most read from one")
            }
        }
    } catch let error as CLIError {
        throw error
    } catch {
        throw CLIError("cannot read \(what) \(path): \((error as NSError).localizedDescription)")
    }
    return data
}

/// `limit` as an admin reads it: "64 MiB", "256 KiB", "1000 bytes".
private func bytesText(_ count: Int) -> String {
    if count >= 1 << 20, count % (1 << 20) == 0 { return "\(count >> 20) MiB" }
    if count >= 1 << 10, count % (1 << 10) == 0 { return "\(count >> 10) KiB" }
    return "\(count) bytes"
}

/// `readInput` as UTF-8 text (a policy file, a password): other bytes are an error.
func readInputText(_ path: String, what: String) throws -> String {
    guard let text = String(data: try readInput(path, what: what), encoding: .utf8) else { throw CLIError("\(what) \(path) is not UTF-8 text") }
    return text
}

/// A one-line reason, printed by ArgumentParser as `Error: …` with a non-zero exit.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

func printJSON<T: Encodable>(_ value: T) throws {
    let data = try JSONEncoder.sentinelPretty.encode(value)
    print(String(decoding: data, as: UTF8.self))
}

/// `repo list --json` and `review --json` have printed their fields under the Swift names
/// (`fullName`, `integrationId`, `startLine`) since they were added, unlike every other `--json`
/// (snake_case); scripts read them, so they keep those names.
func printJSONWithSwiftNames<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder.sentinelPretty
    encoder.keyEncodingStrategy = .useDefaultKeys
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

func cliLogger(_ config: SentinelConfig, command: String) -> Logger {
    Logger.sentinel(label: "sentinel.\(command)", level: command == "serve" ? config.log.level : "warning")
}

/// Runs `body`, turning every error into a one-line CLIError.
func oneLine<T>(_ body: () async throws -> T) async throws -> T {
    do { return try await body() } catch let error as CLIError { throw error } catch let error as CustomStringConvertible {
        throw CLIError(error.description.replacingOccurrences(of: "\n", with: " "))
    } catch {
        throw CLIError("\(error)".replacingOccurrences(of: "\n", with: " "))
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the appliance: HTTPS API and webhooks, job workers.")

    @OptionGroup var global: GlobalOptions
    @Option(help: "Address to listen on (default 0.0.0.0).") var host: String?
    @Option(help: "Port to listen on (default 8443).") var port: Int?
    @Flag(help: "Serve plain HTTP (behind a TLS-terminating proxy, or for benchmarks).") var noTLS = false

    func run() async throws {
        // A server outlives whoever reads its output: a write to a pipe nobody reads fails with
        // EPIPE (the log line is dropped) instead of the signal ending the process.
        signal(SIGPIPE, SIG_IGN)
        let appliance: Appliance
        let logger: Logger
        do {
            (appliance, logger) = try await start()
        } catch {
            // Also as a JSON line, like every other line `serve` writes: a log reader filtering the
            // journal by level saw nothing of why it did not start (the text line follows).
            let reason = (error as? CLIError)?.description ?? "\(error)"
            Logger.sentinel(label: "sentinel.serve", level: "info").critical("serve could not start", metadata: ["error": "\(reason)"])
            throw error
        }
        do {
            try await appliance.run()
        } catch {
            logger.critical("server stopped with an error", metadata: ["error": "\(error)"])
            throw CLIError("server stopped: \(error)")
        }
    }

    /// Everything before the appliance serves: configuration, limits, the data directory.
    private func start() async throws -> (Appliance, Logger) {
        var config = try global.loadConfig()
        if let host { config.server.host = host }
        if let port { config.server.port = port }
        if noTLS { config.server.tlsEnabled = false }
        // The options get the config file's checks: a port past 65535 would wrap around in the socket address.
        do { try ConfigLoader.validate(config) } catch let error as ConfigError { throw CLIError(error.description) }
        // Before anything in this process starts an event loop.
        EventLoopThreads.install(config)
        let logger = cliLogger(config, command: "serve")
        let unknown = ConfigLoader.unknownEnvironmentNames()
        if !unknown.isEmpty {
            logger.warning("environment variables that name no setting change nothing: is one misspelt?",
                           metadata: ["variables": "\(unknown.joined(separator: ","))"])
        }
        checkFileDescriptorLimit(config, logger: logger)
        if let fs = DataDirectoryFileSystem.remote(at: global.dataDirectory.root.path), fs.isNetwork {
            logger.error("the data directory is on a network file system: SQLite's write-ahead log needs a local disk, and files on this one can be corrupted",
                         metadata: ["data_dir": "\(global.dataDirectory.root.path)", "file_system": "\(fs.name)"])
        }
        let appliance = try await oneLine {
            try global.requireDataDirectoryNotAFile()
            try global.context.requireOwnFilesAccessible()
            return try Appliance(dataDirectory: global.dataDirectory, config: config, registry: ApplianceJobs.registry(), logger: logger)
        }
        // Every stored credential is sealed with the key: readable by others, it gives them all.
        if let (path, mode) = global.dataDirectory.exposedMasterKey() {
            let fix = "chmod 600 \(path)"
            logger.warning("the master key can be read by other users of this machine, and with it every stored credential (integration keys, webhook secrets, AI provider keys)",
                           metadata: ["path": "\(path)", "mode": "\(String(mode, radix: 8))", "fix": "\(fix)"])
        }
        return (appliance, logger)
    }
}

/// Raises the open-file limit's soft value to its hard one (a service starts at 1,024 under
/// systemd) and warns when even that is below what this configuration can keep open.
func checkFileDescriptorLimit(_ config: SentinelConfig, logger: Logger) {
    guard let (before, after) = FileDescriptorLimit.raiseSoftLimit() else { return }
    if after.soft > before.soft {
        logger.info("open-file limit raised", metadata: ["from": "\(before.soft)", "to": "\(after.soft)"])
    }
    let needed = FileDescriptorLimit.needed(by: config)
    if after.soft < needed {
        logger.warning("open-file limit is below what this configuration can keep open; workspace files and connections past it are refused with 503 until others close",
                       metadata: ["limit": "\(after.soft)", "needed": "\(needed)",
                                  "fix": "raise LimitNOFILE in sentinel.service (or the hard limit of `ulimit -n`), or lower workspaces.max_open or server.max_connections"])
    }
}

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply pending migrations to control.sqlite and every workspace file.",
        discussion: "Each file with pending migrations is first copied into DATA_DIR/backups/pre-upgrade-FROM-TO/ (storage.pre_upgrade_snapshot); a file newer than this binary is refused.")
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        try await oneLine {
            let config = try global.loadConfig()
            let data = global.dataDirectory
            let opener = DatabaseOpener(config: config)
            // Look at every file before touching any: a control file newer than this binary stops
            // everything, and the snapshots of all files due must fit on the disk.
            let survey = PreUpgradeSnapshot.survey(data, busyTimeout: opener.busyTimeout)
            if let control = survey.first, control.isNewerThanBinary, let state = control.state {
                throw CLIError(StorageError.newerSchema(state.newerMessage(file: data.controlFile)).description)
            }
            try PreUpgradeSnapshot.checkFreeSpace(for: survey, in: data, opener: opener)
            let before = Dictionary(survey.map { ($0.file, $0.state?.version) }, uniquingKeysWith: { a, _ in a })
            let (control, _) = try global.openControl(config)
            let controlVersion = try control.read { db in try SchemaState.read(db, kind: .control) }.version
            var line = "control.sqlite: schema version \(controlVersion)"
            if let old = before[data.controlFile.path] ?? nil, old != controlVersion { line += " (migrated from \(old))" }
            print(line)
            var failures: [String] = []
            var migrated = 0
            // The folders the snapshots went to, named as they are (it printed `pre-upgrade-FROM-TO`).
            var snapshots: Set<String> = []
            if let old = before[data.controlFile.path] ?? nil, old != controlVersion {
                snapshots.insert(data.preUpgradeDirectory(from: old, to: controlVersion).path)
            }
            for id in try control.workspaceIDs() {
                let url = data.workspaceFile(id)
                do {
                    let database = try opener.open(url, kind: .workspace, label: id.rawValue)
                    try database.close()
                    if let old = before[url.path] ?? nil, old != DatabaseKind.workspace.knownVersion {
                        print("workspace \(id): schema version \(DatabaseKind.workspace.knownVersion) (migrated from \(old))")
                        snapshots.insert(data.preUpgradeDirectory(from: old, to: DatabaseKind.workspace.knownVersion).path)
                        migrated += 1
                    }
                } catch {
                    failures.append("\(id): " + (DataDirectory.databaseAccessProblem(url).map {
                        "\($0.problem); give it to the user Sentinel runs as (chown sentinel:sentinel \($0.paths)); it is not damaged: do not restore it"
                    } ?? "\(error)"))
                }
            }
            let controlMigrated = (before[data.controlFile.path] ?? nil).map { $0 != controlVersion } ?? false
            print("workspaces migrated: \(migrated)")
            if config.storage.preUpgradeSnapshot && (controlMigrated || migrated > 0) {
                let existing = snapshots.sorted().filter { FileManager.default.fileExists(atPath: $0) }
                print("pre-upgrade snapshots: \(existing.joined(separator: ", ")) (sentinel restore --from one of them undoes the upgrade)")
            }
            if !failures.isEmpty {
                throw CLIError("\(failures.count) workspace file(s) could not be migrated: \(failures.joined(separator: "; "))")
            }
        }
    }
}

struct VersionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "version", abstract: "The binary's version and the schema versions it knows.")
    @Flag(help: "Print as JSON.") var json = false

    struct Schema: Encodable {
        let version: Int
        let latest: String?
        let migrations: [String]
    }

    struct Output: Encodable {
        let version: String
        let schemas: [String: Schema]
    }

    func run() async throws {
        let schemas = Dictionary(uniqueKeysWithValues: [DatabaseKind.control, .workspace].map { kind in
            (kind.rawValue, Schema(version: kind.knownVersion, latest: kind.knownMigrations.last, migrations: kind.knownMigrations))
        })
        if json {
            try printJSON(Output(version: SentinelVersion.current, schemas: schemas))
        } else {
            print("sentinel \(SentinelVersion.current) (control schema \(DatabaseKind.control.knownVersion), workspace schema \(DatabaseKind.workspace.knownVersion))")
        }
    }
}

/// The name of the user this process runs as (its uid when it has none).
func currentUserName() -> String {
    let uid = getuid()
    guard let entry = getpwuid(uid), let name = entry.pointee.pw_name else { return "uid \(uid)" }
    return String(cString: name)
}
