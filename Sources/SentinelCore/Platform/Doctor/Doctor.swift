import Foundation
import GRDB
#if canImport(Glibc)
import Glibc
#endif

/// One line of `sentinel doctor`: what was checked, what was found, and the fix.
public struct DoctorFinding: Sendable, Codable, Equatable {
    public enum Severity: String, Sendable, Codable, Comparable {
        case ok, warning, error

        var rank: Int { self == .ok ? 0 : self == .warning ? 1 : 2 }
        public static func < (a: Severity, b: Severity) -> Bool { a.rank < b.rank }
    }

    public var severity: Severity
    public var check: String
    public var message: String
    /// What to do about it (nil when all is well).
    public var fix: String?

    public init(severity: Severity, check: String, message: String, fix: String?) {
        (self.severity, self.check, self.message, self.fix) = (severity, check, message, fix)
    }
}

public struct DoctorReport: Sendable, Codable, Equatable {
    public var dataDirectory: String
    public var findings: [DoctorFinding]

    /// 0 all good, 1 warnings, 2 errors.
    public var exitCode: Int32 { Int32(findings.map(\.severity).max()?.rank ?? 0) }
}

/// `sentinel doctor`: offline checks of one appliance, each naming its fix. Reads only (files
/// are opened read-only and never migrated), so it is safe beside a running server.
public struct Doctor: Sendable {
    public var dataDirectory: DataDirectory
    public var config: SentinelConfig
    public var now: Date
    public var freeSpace: @Sendable (URL) -> Int64?
    /// The network or FUSE file system holding a path, if it is on one (injectable for tests).
    public var remoteFileSystem: @Sendable (String) -> DataDirectoryFileSystem? = DataDirectoryFileSystem.remote(at:)
    /// Whether this user may write a file (`access(2)`; injectable: the tests run as root, whom it never refuses).
    public var canWrite: @Sendable (URL) -> Bool = { access($0.path, W_OK) == 0 }
    /// Whether this user may read a file (`access(2)`; injectable as `canWrite`).
    public var canRead: @Sendable (URL) -> Bool = { access($0.path, R_OK) == 0 }
    /// A run `running` for longer than this is reported as stuck.
    public var stuckRunHours: Double = 6
    /// Events not exported for longer than this are reported (when the analytics export is in use).
    public var exportLagDays: Double = 2
    /// A WAL file larger than this is reported (`storage.wal_max_bytes`).
    public var walWarningBytes: Int64
    /// The environment whose `SENTINEL_…` variables are checked (injectable for tests).
    public var environment: [String: String] = ProcessInfo.processInfo.environment

    public init(dataDirectory: DataDirectory, config: SentinelConfig, now: Date = Date(),
                freeSpace: @escaping @Sendable (URL) -> Int64? = PreUpgradeSnapshot.freeSpace) {
        self.dataDirectory = dataDirectory
        self.config = config
        self.now = now
        self.freeSpace = freeSpace
        self.walWarningBytes = Int64(config.storage.walMaxBytes)
    }

    public func run() -> DoctorReport {
        var findings: [DoctorFinding] = []
        func add(_ severity: DoctorFinding.Severity, _ check: String, _ message: String, fix: String? = nil) {
            findings.append(DoctorFinding(severity: severity, check: check, message: message, fix: fix))
        }
        let unknown = ConfigLoader.unknownEnvironmentNames(environment)
        if !unknown.isEmpty {
            add(.warning, "config", "environment variable(s) \(unknown.joined(separator: ", ")) name no setting and change nothing",
                fix: "spell them as the settings' names (server.port → SENTINEL_SERVER_PORT; docs/configuration.md lists them), or remove them")
        }
        let root = dataDirectory.root
        guard FileManager.default.fileExists(atPath: root.path) else {
            add(.error, "data-dir", "\(root.path) does not exist", fix: "pass the right --data-dir (or SENTINEL_DATA_DIR), or start `sentinel serve` once to create it")
            return DoctorReport(dataDirectory: root.path, findings: findings)
        }
        if let problem = dataDirectory.unfinishedRestoreProblem(), let pending = dataDirectory.pendingRestore() {
            add(.error, "restore", problem, fix: "run `\(dataDirectory.finishingCommand(pending))` again, then `sentinel verify`; serve does not start until then")
        }
        checkModes(add)
        checkSetupToken(add)
        checkTLS(add)
        checkBilling(add)
        checkPriceTable(add)
        if case .readOnlyFileSystem = DataDirectoryWriteProblem(at: root.path) {
            // SQLite opens a file in WAL mode by writing its `-shm`: on a read-only file system every
            // database check fails, and their "restore it from a backup" would replace healthy files.
            add(.warning, "schema", "the database files are not checked while \(root.path) is read-only (SQLite needs to write beside them to read them)",
                fix: "remount it read-write, then run doctor again")
            return DoctorReport(dataDirectory: root.path, findings: findings)
        }
        // The same for a user who may not write there (doctor run as another user than the
        // service's): its checks said "restore it from a backup" of healthy files.
        for path in [root.path, dataDirectory.controlFile.path] where FileManager.default.fileExists(atPath: path) {
            if case .notWritable(let reason)? = DataDirectoryWriteProblem(at: path) {
                add(.warning, "schema", "the database files are not checked: this user may not write \(path) (\(reason)), and SQLite needs to write beside them to read them",
                    fix: "run doctor as the data directory's owner (the service's user: sudo -u sentinel sentinel doctor …)")
                return DoctorReport(dataDirectory: root.path, findings: findings)
            }
        }
        checkExportsWritable(add)
        let survey = PreUpgradeSnapshot.survey(dataDirectory, busyTimeout: Double(config.storage.busyTimeoutMilliseconds) / 1000)
        checkSchemas(survey, add)
        checkDisk(survey, add)
        checkWorkspaces(survey, add)
        checkJournal(add)
        checkSignals(add)
        return DoctorReport(dataDirectory: root.path, findings: findings)
    }

    typealias Add = (DoctorFinding.Severity, String, String, String?) -> Void

    /// Why `stat` fails on a path (`errno`), nil when it does not.
    static func statError(_ url: URL) -> Int32? {
        var info = stat()
        return stat(url.path, &info) == 0 ? nil : errno
    }

    private static func mode(_ url: URL) -> (mode: Int, owner: UInt32)? {
        var info = stat()
        guard stat(url.path, &info) == 0 else { return nil }
        return (Int(info.st_mode) & 0o7777, info.st_uid)
    }

    /// The SQLite files of the data directory (control, journal, workspaces) and their `-wal`/`-shm`.
    static func databaseFiles(in dataDirectory: DataDirectory) -> [URL] {
        var out: [URL] = []
        for directory in [dataDirectory.root, dataDirectory.workspacesDirectory] {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
            for name in names.sorted() where name.hasSuffix(".sqlite") || name.hasSuffix(".sqlite-wal") || name.hasSuffix(".sqlite-shm") {
                out.append(directory.appendingPathComponent(name))
            }
        }
        return out
    }

    private func checkModes(_ add: (DoctorFinding.Severity, String, String, String?) -> Void) {
        let root = dataDirectory.root
        let me = geteuid()
        switch DataDirectoryWriteProblem(at: root.path) {
        case .readOnlyFileSystem:
            add(.error, "data-dir", "\(root.path) is on a read-only file system: no delivery, job or run can be stored",
                "find why it is read-only (`dmesg`, `mount`; after disk errors, check the disk) and remount it read-write")
        case .notWritable(let reason):
            add(.error, "data-dir", "\(root.path) is not writable by uid \(me) (\(reason))",
                "run doctor as the user Sentinel runs as, or `chown -R sentinel:sentinel \(root.path)`")
        case nil:
            // The directory is writable; a file in it may not be (made by a command run as root:
            // every write to it then fails with "attempt to write a readonly database").
            let unwritable = Self.databaseFiles(in: dataDirectory).filter { !canWrite($0) }
            if let first = unwritable.first {
                let owner = Self.mode(first).map { " (owner uid \($0.1))" } ?? ""
                add(.error, "data-dir", "\(unwritable.count) database file(s) are not writable by uid \(me), e.g. \(first.path)\(owner)",
                    "run doctor as the user Sentinel runs as, or `chown -R sentinel:sentinel \(root.path)`")
            }
        }
        switch remoteFileSystem(root.path) {
        case let fs? where fs.isNetwork:
            add(.error, "data-dir", "\(root.path) is on a network file system (\(fs.name)): SQLite's write-ahead log needs the locks and shared "
                + "memory of a local disk, and its files can be corrupted on one",
                "move the data directory to a local disk (stop, copy with `sentinel backup` / `sentinel restore`, start); replicate it with Litestream instead")
        case let fs?:
            add(.warning, "data-dir", "\(root.path) is on a \(fs.name) file system: if it is a network one (sshfs, s3fs), SQLite's write-ahead "
                + "log is not safe on it", "keep the data directory on a local disk")
        case nil:
            break
        }
        if let (mode, owner) = Self.mode(root) {
            if owner != me {
                add(.warning, "data-dir", "\(root.path) belongs to uid \(owner), doctor runs as uid \(me)",
                    "run doctor as the user Sentinel runs as, or `chown -R sentinel:sentinel \(root.path)`")
            } else if mode & 0o002 != 0 {
                add(.error, "data-dir", "\(root.path) is writable by every user (mode \(String(mode, radix: 8)))", "chmod 750 \(root.path)")
            } else if mode & 0o020 != 0 {
                add(.warning, "data-dir", "\(root.path) is writable by its group (mode \(String(mode, radix: 8)))", "chmod 750 \(root.path)")
            } else {
                add(.ok, "data-dir", "\(root.path) belongs to uid \(owner), mode \(String(mode, radix: 8))", nil)
            }
        }
        // Every tenant's runs and findings, and the password and token hashes: readable by the
        // machine's other users when made from a shell with umask 022 (the unit sets 0077).
        let readable = Self.databaseFiles(in: dataDirectory).filter { Self.mode($0).map { $0.mode & 0o004 != 0 } ?? false }
        if let first = readable.first, let (rootMode, _) = Self.mode(root), rootMode & 0o001 != 0 {
            add(.warning, "data-dir", "\(readable.count) database file(s) are readable by every user of this machine, e.g. \(first.path)",
                "chmod 750 \(root.path) (or chmod o-rwx on the files); Sentinel creates new files readable by its own user alone")
        }
        if let (mode, _) = Self.mode(dataDirectory.secretsDirectory), mode & 0o077 != 0 {
            add(.error, "secrets", "\(dataDirectory.secretsDirectory.path) is readable by others (mode \(String(mode, radix: 8)))",
                "chmod 700 \(dataDirectory.secretsDirectory.path)")
        }
        let key = dataDirectory.masterKeyFile
        if let (mode, _) = Self.mode(key) {
            if mode & 0o777 != 0o600 {
                add(.error, "master-key", "\(key.path) has mode \(String(mode, radix: 8)), not 600", "chmod 600 \(key.path)")
            } else {
                do {
                    // Read as `serve` reads it: a key of another length (emptied, cut short) stops it from starting.
                    _ = try MasterKey.load(at: key)
                    add(.ok, "master-key", "\(key.path) present, mode 600", nil)
                } catch {
                    add(.error, "master-key", "\(error)",
                        "restore secrets/master.key from your backup (32 bytes): without it serve does not start and stored credentials cannot be decrypted")
                }
            }
        } else if let problem = Self.statError(key), problem != ENOENT {
            // Present or not, it cannot be looked at (a directory above it not searchable by this user).
            add(.error, "master-key", "\(key.path) cannot be read (\(String(cString: strerror(problem))))",
                "run doctor as the user sentinel runs as (sudo -u sentinel sentinel doctor), or fix the permissions of \(key.deletingLastPathComponent().path)")
        } else {
            let hasControl = FileManager.default.fileExists(atPath: dataDirectory.controlFile.path)
            add(hasControl ? .error : .warning, "master-key", "\(key.path) is missing",
                hasControl ? "restore secrets/master.key from your backup: without it stored credentials cannot be decrypted"
                           : "start `sentinel serve` once to create it")
        }
    }

    private func checkSetupToken(_ add: Add) {
        let token = FileManager.default.fileExists(atPath: dataDirectory.setupTokenFile.path)
        // With users but no admin (the first made without --admin), nobody can add users or workspaces.
        let users = (try? readOnly(dataDirectory.controlFile) { db in
            (count: try Int.fetchOne(db, sql: "SELECT count(*) FROM users") ?? 0, admins: try IdentityService.hasAdmins(db))
        })
        if let users, users.count > 0, !users.admins {
            add(.warning, "setup-token", "no appliance admin: \(users.count) user(s), none of them an active admin, so nobody can add users or workspaces",
                "`sentinel user create --admin` (a new email)" + (token ? ", or the one-time setup token \(dataDirectory.setupTokenFile.path) on the console's setup page (POST /api/v1/setup)" : ""))
        } else if token, users?.admins != true {
            add(.warning, "setup-token", "no admin yet: the one-time setup token \(dataDirectory.setupTokenFile.path) is unused",
                "create the first admin (POST /api/v1/setup with that token, or `sentinel user create --admin`)")
        }
    }

    private func checkTLS(_ add: Add) {
        guard config.server.tlsEnabled else {
            add(.ok, "tls", "TLS is off (server.tls.enabled: false; a proxy terminates TLS)", nil)
            return
        }
        let certificate = config.server.tlsCertFile.map { URL(fileURLWithPath: $0) }
            ?? dataDirectory.tlsDirectory.appendingPathComponent("sentinel.crt")
        guard FileManager.default.fileExists(atPath: certificate.path) else {
            if config.server.tlsCertFile != nil {
                add(.error, "tls", "the configured certificate \(certificate.path) is missing", "fix server.tls.cert_file or put the certificate there")
            } else {
                add(.ok, "tls", "no certificate yet: serve makes a self-signed one in \(dataDirectory.tlsDirectory.path)", nil)
            }
            return
        }
        // The configured pair, or the self-signed pair when both files are there (serve makes a new one otherwise).
        let selfSignedKey = dataDirectory.tlsDirectory.appendingPathComponent("sentinel.key").path
        if let key = config.server.tlsKeyFile
            ?? (config.server.tlsCertFile == nil && FileManager.default.fileExists(atPath: selfSignedKey) ? selfSignedKey : nil) {
            do { _ = try ServerTLS.configuration(certificateFile: certificate.path, keyFile: key) } catch {
                add(.error, "tls", "\(error)", "fix server.tls.cert_file and server.tls.key_file; serve does not start with these files")
                return
            }
        }
        do {
            let (validFrom, expiry) = try SelfSignedCertificate.validity(ofPEMFile: certificate)
            let days = expiry.timeIntervalSince(now) / 86400
            let fix = config.server.tlsCertFile == nil
                ? "delete \(certificate.path) and its key; serve makes a new self-signed one (clients that pin it need the new one)"
                : "renew the certificate at \(certificate.path): a running serve picks it up within server.tls.reload_check_seconds (or at once on SIGHUP: systemctl reload sentinel)"
            if days < 0 {
                add(.error, "tls", "the certificate \(certificate.path) expired on \(ISO8601.string(expiry))", fix)
            } else if validFrom > now {
                // Every client refuses it until then (a clock set wrong where it was made, or a
                // certificate issued for later).
                add(.error, "tls", "the certificate \(certificate.path) is not valid before \(ISO8601.string(validFrom))",
                    "check this machine's clock and the one that issued it; " + fix)
            } else if days < 30 {
                add(.warning, "tls", "the certificate \(certificate.path) expires in \(Int(days)) day(s), on \(ISO8601.string(expiry))", fix)
            } else {
                add(.ok, "tls", "the certificate \(certificate.path) is valid until \(ISO8601.string(expiry))", nil)
            }
        } catch {
            add(.error, "tls", "\(error)", "replace \(certificate.path) with a PEM certificate")
        }
    }

    /// The analytics export writes its dumps and its lock file in `exports/`: one this user may not
    /// write failed every night, said only once no export had happened for two days.
    private func checkExportsWritable(_ add: Add) {
        let exports = dataDirectory.exportsDirectory
        guard FileManager.default.fileExists(atPath: exports.path) else { return }
        let lock = dataDirectory.exportLockFile
        let problem: String?
        if !canWrite(exports) {
            problem = "this user (uid \(geteuid())) may not write \(exports.path)"
        } else if FileManager.default.fileExists(atPath: lock.path), !canRead(lock) || !canWrite(lock) {
            problem = "this user (uid \(geteuid())) may not open \(lock.path)" + (Self.mode(lock).map { " (owner uid \($0.1))" } ?? "")
        } else {
            problem = nil
        }
        if let problem {
            add(.error, "export", "\(problem): every analytics export fails until it can", "give it to the user Sentinel runs as "
                + "(chown -R sentinel:sentinel \(exports.path)), or run doctor as that user")
        }
    }

    private func checkSchemas(_ survey: [SchemaFileStatus], _ add: Add) {
        if let problem = dataDirectory.missingControlProblem() {
            add(.error, "schema", problem, "restore control.sqlite from a full backup (`sentinel restore --from BACKUP_DIR`, then `sentinel verify`); "
                + "serve does not start without it")
            return
        }
        guard !survey.isEmpty else {
            add(.warning, "schema", "no control.sqlite yet in \(dataDirectory.root.path)", "start `sentinel serve` (or `sentinel migrate`) to create it")
            return
        }
        // control.sqlite unreadable, or without its schema beside workspace files: nothing else
        // can be checked (its list of workspaces is what the other checks go through).
        if let control = survey.first(where: { $0.kind == .control }), let problem = control.problem {
            add(.error, "schema", "control.sqlite: \(problem)",
                "restore it from a backup (`sentinel restore --from BACKUP_DIR`, then `sentinel verify`); serve does not start with it")
        } else if survey.contains(where: { $0.kind == .control }), let damage = Self.damage(dataDirectory.controlFile, readOnly: readOnly) {
            // A damaged page opens: the schema read passed, and sign-ins answered 500.
            add(.error, "schema", "control.sqlite is damaged (\(damage))",
                "stop sentinel, restore it from a backup (`sentinel restore --from BACKUP_DIR`, then `sentinel verify`)")
        }
        let newer = survey.filter(\.isNewerThanBinary)
        for file in newer {
            add(.error, "schema", file.state!.newerMessage(file: URL(fileURLWithPath: file.file)),
                "run the newer sentinel binary, or restore the pre-upgrade snapshot with `sentinel restore --from`")
        }
        let pending = survey.filter { $0.needsMigration && ($0.state?.isInitialized ?? false) }
        if !pending.isEmpty {
            let names = pending.prefix(5).map { URL(fileURLWithPath: $0.file).lastPathComponent }.joined(separator: ", ")
            add(.warning, "schema", "\(pending.count) file(s) have pending migrations (\(names)\(pending.count > 5 ? ", …" : ""))",
                "run `sentinel migrate` (each file is copied into backups/pre-upgrade-FROM-TO first); serve migrates control.sqlite at start and workspace files when first opened")
        }
        if newer.isEmpty && pending.isEmpty && !survey.contains(where: { $0.kind == .control && $0.problem != nil }) {
            add(.ok, "schema", "\(survey.count) file(s) at the schema versions this binary knows (control \(DatabaseKind.control.knownVersion), workspace \(DatabaseKind.workspace.knownVersion))", nil)
        }
    }

    /// The fix for a workspace file that cannot be opened. One this user may not read or write
    /// (made by a command run as root, or doctor run as another user) is not damaged: restoring it
    /// from a backup, the fix for a damaged one, would lose what was written since.
    private func offlineFix(_ path: String, _ id: String) -> String {
        // A missing file has no owner to fix: a backup is the only way back (it said to chown it
        // and not to restore it).
        // Its -wal and -shm too: SQLite opens none of them when it may not write one (a -wal root
        // owned was "restore it", which deletes that -wal and the transactions it holds).
        // Its directory first: one this user may not search hides the file ("missing": restore it),
        // and one it may not write keeps SQLite from making the -wal ("corrupt": restore it).
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent()
        if !canRead(directory) || !canWrite(directory) {
            return "its directory \(directory.path) is not readable and writable by uid \(geteuid())\(DataDirectory.ownerAndMode(directory)): run "
                + "doctor as the user Sentinel runs as, or give it to that user (`chown sentinel:sentinel \(directory.path)`); do not restore the "
                + "file, which would lose what was written since the backup"
        }
        let blocked = FileManager.default.fileExists(atPath: path) ? ["", "-wal", "-shm"].map { URL(fileURLWithPath: path + $0) }
            .filter { FileManager.default.fileExists(atPath: $0.path) && (!canRead($0) || !canWrite($0)) } : []
        if !blocked.isEmpty {
            let owners = blocked.map { file in file.lastPathComponent + (Self.mode(file).map { " (owner uid \($0.1))" } ?? "") }
            return "\(owners.joined(separator: ", ")) not readable and writable by uid \(geteuid()): run doctor as the user Sentinel runs as, or give "
                + "\(blocked.count == 1 ? "it" : "them") to that user (`chown sentinel:sentinel \(blocked.map(\.path).joined(separator: " "))`); "
                + "do not restore it, which would lose what was written since the backup"
        }
        // Emptied beside its -wal: that -wal is the last copy of what it held, and a restore deletes it.
        if DatabaseOpener.emptiedBesideLog(URL(fileURLWithPath: path)) != nil {
            return "copy the file and its -wal aside first (a restore deletes that -wal), then restore it: "
                + "`sentinel restore --from BACKUP_DIR --workspace \(id)` (then `sentinel verify`)"
        }
        return "restore it: `sentinel restore --from BACKUP_DIR --workspace \(id)` (then `sentinel verify`)"
    }

    private func checkDisk(_ survey: [SchemaFileStatus], _ add: Add) {
        if let largest = survey.max(by: { $0.bytes < $1.bytes }), let free = freeSpace(dataDirectory.root) {
            if free < DataDirectory.fullDiskBytes {
                add(.error, "disk", "the disk holding \(dataDirectory.root.path) is nearly full (\(free) bytes free): /readyz answers 503, "
                    + "and once it is full deliveries, runs and API changes are refused until there is room",
                    "free space on that disk or grow it; nothing stored is lost, and the catch-up sweep reviews what webhooks refused "
                    + "meanwhile would have started")
            } else if free < largest.bytes {
                add(.warning, "disk", "\(free) bytes free, less than the largest file (\(URL(fileURLWithPath: largest.file).lastPathComponent), \(largest.bytes) bytes)",
                    "free space on the disk holding \(dataDirectory.root.path): backups, pre-upgrade snapshots and VACUUM need room for a copy of the largest file")
            } else {
                add(.ok, "disk", "\(free) bytes free; the largest file is \(largest.bytes) bytes", nil)
            }
        }
        for file in survey {
            let attributes = try? FileManager.default.attributesOfItem(atPath: file.file + "-wal")
            let wal = (attributes?[.size] as? NSNumber)?.int64Value ?? 0
            if wal > walWarningBytes {
                add(.warning, "wal", "\(URL(fileURLWithPath: file.file).lastPathComponent)-wal is \(wal) bytes (over storage.wal_max_bytes, \(walWarningBytes))",
                    "a long-lived reader blocks checkpoints: stop long-running CLI commands or exports; sentinel serve truncates it within a minute once "
                    + "the file is idle (closing a file also checkpoints its WAL), or raise storage.wal_max_bytes")
            }
        }
    }

    private func checkWorkspaces(_ survey: [SchemaFileStatus], _ add: Add) {
        let exportInUse = (try? readOnly(dataDirectory.controlFile) { db in
            try Int.fetchOne(db, sql: "SELECT count(*) FROM export_watermarks") ?? 0
        }) ?? 0 > 0
        let watermarks: [String: Int64] = exportInUse ? ((try? readOnly(dataDirectory.controlFile) { db in
            Dictionary(uniqueKeysWithValues: try Row.fetchAll(db, sql: "SELECT workspace_id, last_seq FROM export_watermarks").map {
                ($0["workspace_id"] as String, $0["last_seq"] as Int64)
            })
        }) ?? [:]) : [:]
        var offline = 0, dead = 0, stuck = 0, behind = 0
        let masterKey = try? MasterKey.load(at: dataDirectory.masterKeyFile)
        // A price table that cannot be read is its own finding (`checkPriceTable`); the built-in one stands in here.
        let prices = (try? PriceTable.load(overridesFile: config.ai.priceTableFile)) ?? .builtIn
        var secrets = 0, unreadable = 0
        var unreadableIn: [String] = []
        for file in survey where file.kind == .workspace {
            let id = file.workspaceID ?? "?"
            if let problem = file.problem {
                offline += 1
                add(.error, "workspace", "workspace \(id) is offline: \(problem)", offlineFix(file.file, id))
                continue
            }
            if file.isNewerThanBinary { offline += 1; continue }  // named by the schema check
            if let damage = Self.damage(URL(fileURLWithPath: file.file), readOnly: readOnly) {
                offline += 1
                add(.error, "workspace", "workspace \(id) is damaged (\(damage))",
                    "restore it from a backup (`sentinel restore --from BACKUP_DIR --workspace \(id)`, with serve stopped); `sentinel verify` names what is wrong")
                continue
            }
            do {
                try readOnly(URL(fileURLWithPath: file.file)) { db in
                    let deadJobs = try Int.fetchOne(db, sql: "SELECT count(*) FROM jobs WHERE state = 'dead'") ?? 0
                    if deadJobs > 0 {
                        dead += 1
                        add(.warning, "dead-jobs", "workspace \(id) has \(deadJobs) dead job(s)",
                            "see why with `sentinel jobs list --workspace \(id)`, then `sentinel jobs retry` or `sentinel jobs discard` each")
                    }
                    if try db.tableExists("review_runs") {
                        let limit = now.timeIntervalSince1970 - stuckRunHours * 3600
                        let stuckRuns = try Int.fetchOne(db, sql: "SELECT count(*) FROM review_runs WHERE state = 'running' AND coalesce(started_at, created_at) < ?", arguments: [limit]) ?? 0
                        if stuckRuns > 0 {
                            stuck += 1
                            add(.warning, "stuck-runs", "workspace \(id) has \(stuckRuns) review run(s) running for more than \(Int(stuckRunHours)) hours",
                                "check `sentinel jobs list --workspace \(id) --state running` and the server log; restarting sentinel serve re-runs work whose lease expired")
                        }
                    }
                    // A billed vendor's model no price names is counted at its kind's dearest (`PriceTable`).
                    if try db.tableExists("ai_providers") {
                        for row in try Row.fetchAll(db, sql: "SELECT id, kind, model FROM ai_providers WHERE enabled = 1 ORDER BY id") {
                            let (provider, kind, model): (String, String, String) = (row["id"], row["kind"], row["model"])
                            guard !prices.names(kind: kind, model: model), let stand = prices.dearest(kind: kind) else { continue }
                            add(.warning, "ai-prices", "workspace \(id): no price names the model of provider \(provider) (\(kind) \(model)): its calls are counted "
                                + "at \(stand.pattern)'s prices ($\(stand.price.inputPerMillion.plainDecimalText) in, $\(stand.price.outputPerMillion.plainDecimalText) out "
                                + "per million tokens) toward the AI budget and usage",
                                "add its prices to ai.price_table_file (\"\(kind)/\(model)\": {input_per_million: N, output_per_million: N})")
                        }
                    }
                    if let masterKey {
                        let sealed = try Self.sealedSecrets(db)
                        let failed = sealed.filter { (try? masterKey.open($0.value, context: $0.context)) == nil }.count
                        secrets += sealed.count
                        unreadable += failed
                        if failed > 0 { unreadableIn.append(id) }
                    }
                    if exportInUse {
                        let after = watermarks[id] ?? 0
                        if let oldest = try String.fetchOne(db, sql: "SELECT occurred_at FROM events WHERE seq > ? ORDER BY seq LIMIT 1", arguments: [after]),
                           let date = ISO8601.date(oldest), now.timeIntervalSince(date) > exportLagDays * 86400 {
                            behind += 1
                            add(.warning, "export", "workspace \(id) has events not exported since \(oldest) (export watermark at seq \(after))",
                                "run `sentinel export` and check the export timer and its log")
                        }
                    }
                }
            } catch {
                offline += 1
                add(.error, "workspace", "workspace \(id) is offline: its file cannot be read (\(error))", offlineFix(file.file, id))
            }
        }
        let count = survey.filter { $0.kind == .workspace }.count
        if offline == 0 { add(.ok, "workspace", "\(count) workspace file(s) readable", nil) }
        // Workspace files control.sqlite does not register: no API, job or backup reaches them.
        if survey.contains(where: { $0.kind == .control && $0.problem == nil }) {
            let registered = Set(survey.compactMap(\.workspaceID))
            let orphans = ((try? FileManager.default.contentsOfDirectory(atPath: dataDirectory.workspacesDirectory.path)) ?? []).compactMap { name -> String? in
                guard name.hasSuffix(".sqlite"), let id = WorkspaceID(String(name.dropLast(7))), !registered.contains(id.rawValue) else { return nil }
                return id.rawValue
            }.sorted()
            if !orphans.isEmpty {
                add(.warning, "workspace", "\(orphans.count) workspace file(s) in \(dataDirectory.workspacesDirectory.path) belong to no workspace of control.sqlite "
                    + "(\(orphans.prefix(5).joined(separator: ", "))\(orphans.count > 5 ? ", …" : "")): left by a restore of an older control.sqlite, "
                    + "or by a copy; nothing serves, backs up or exports them",
                    "restore control.sqlite from a backup that registers them, or move the files out of workspaces/ once you know they are not needed")
            }
        }
        if unreadable > 0 {
            add(.error, "secrets", "\(unreadable) of \(secrets) stored credential(s) (in workspace(s) \(unreadableIn.joined(separator: ", "))) cannot be decrypted "
                + "with \(dataDirectory.masterKeyFile.path): it is not the key they were sealed with (replaced, or the data restored without its own "
                + "key); their webhooks answer 503 and their reviews cannot reach the platform or the AI provider",
                "put back the master.key this data directory was created with (backups do not hold it; keep a copy separately), "
                + "or enter the credentials again: `sentinel integration rotate`, `sentinel provider rotate`")
        } else if secrets > 0 {
            add(.ok, "secrets", "\(secrets) stored credential(s) open with the master key", nil)
        }
        if dead == 0 { add(.ok, "dead-jobs", "no dead jobs", nil) }
        if stuck == 0 { add(.ok, "stuck-runs", "no review run running for more than \(Int(stuckRunHours)) hours", nil) }
        if exportInUse && behind == 0 { add(.ok, "export", "every workspace exported within \(Int(exportLagDays)) days", nil) }
    }

    /// The sealed credentials of a workspace file and what each was sealed for: the webhook secret
    /// of every integration in use and every AI provider's key.
    static func sealedSecrets(_ db: Database) throws -> [(value: Data, context: String)] {
        var sealed: [(value: Data, context: String)] = []
        if try db.tableExists("integrations") {
            for row in try Row.fetchAll(db, sql: "SELECT id, webhook_secret FROM integrations WHERE kind NOT LIKE 'removed:%'") {
                let id: String = row["id"]
                sealed.append((row["webhook_secret"], IntegrationSecret.webhookSecret.context(id)))
            }
        }
        if try db.tableExists("ai_providers") {
            for row in try Row.fetchAll(db, sql: "SELECT id, api_key FROM ai_providers WHERE api_key IS NOT NULL") {
                let id: String = row["id"]
                sealed.append((row["api_key"], ProviderStore.context(id)))
            }
        }
        // A notification channel's destination (its URL, signing secret or mail server password).
        if try db.tableExists("notification_channels") {
            for row in try Row.fetchAll(db, sql: "SELECT id, destination FROM notification_channels") {
                let id: String = row["id"]
                sealed.append((row["destination"], NotificationStore.context(id)))
            }
        }
        return sealed
    }

    /// Deliveries waiting in the intake journal: normally for milliseconds; one waiting longer than
    /// `journalWaitWarningSeconds` belongs to a workspace that cannot be written, or no server runs.
    private func checkJournal(_ add: Add) {
        let file = dataDirectory.intakeJournalFile
        guard FileManager.default.fileExists(atPath: file.path) else {
            if FileManager.default.fileExists(atPath: file.path + "-wal") {
                add(.error, "intake-journal", IntakeJournal.missingBesideLog(file), "serve does not start until it is; it may hold acknowledged deliveries")
            }
            return
        }
        do {
            let (count, oldest) = try readOnly(file) { db -> (Int, Double?) in
                // One without its table is not empty: it was emptied or replaced (serve creates it whole).
                guard try db.tableExists("journal") else {
                    throw StorageError.corrupt(DatabaseOpener.journalDamagedMessage(file, "holds no journal table (emptied or replaced)"))
                }
                let row = try Row.fetchOne(db, sql: "SELECT count(*) AS n, min(received_at) AS oldest FROM journal")
                return (row?["n"] ?? 0, row?["oldest"])
            }
            if let oldest, count > 0, now.timeIntervalSince1970 - oldest > Self.journalWaitWarningSeconds {
                let workspaces = (try? readOnly(file) { db in
                    try String.fetchAll(db, sql: "SELECT DISTINCT workspace_id FROM journal WHERE received_at < ? ORDER BY workspace_id LIMIT 5",
                                        arguments: [now.timeIntervalSince1970 - Self.journalWaitWarningSeconds])
                }) ?? []
                add(.warning, "intake-journal", "the intake journal holds \(count) acknowledged deliveries not yet in their workspace files, the oldest received at \(ISO8601.string(Date(timeIntervalSince1970: oldest))) (workspaces \(workspaces.joined(separator: ", ")))",
                    "`sentinel serve` applies them while it runs: start it if it is stopped; a workspace listed above as offline gets them once its file can be written (see the `workspace` lines)")
            } else {
                add(.ok, "intake-journal", count == 0 ? "the intake journal is empty" : "the intake journal holds \(count) deliveries being applied", nil)
            }
        } catch {
            add(.error, "intake-journal", "\(file.path) cannot be read (\(error))", "it holds acknowledged webhook deliveries: restore it from the file system's backup or check the disk")
        }
    }

    static let journalWaitWarningSeconds = 300.0

    /// What the running server wrote down: integrations whose webhooks keep failing authentication
    /// (none accepted since the last refusal, within a week), and AI providers with an open circuit.
    private func checkSignals(_ add: Add) {
        struct Refused { let integration: String; let workspace: String; let failures: Int; let last: Double }
        struct Circuit { let workspace: String; let provider: String; let retryAt: Double }
        guard let (refused, circuits) = try? readOnly(dataDirectory.controlFile, { db -> ([Refused], [Circuit]) in
            guard try db.tableExists("integration_auth_failures"), try db.tableExists("provider_circuits") else { return ([], []) }
            let refused = try Row.fetchAll(db, sql: "SELECT * FROM integration_auth_failures ORDER BY integration_id").map {
                Refused(integration: $0["integration_id"], workspace: $0["workspace_id"], failures: $0["failures"], last: $0["last_failed_at"])
            }
            let circuits = try Row.fetchAll(db, sql: "SELECT * FROM provider_circuits WHERE retry_at > ? ORDER BY workspace_id, provider_id",
                                            arguments: [now.timeIntervalSince1970]).map {
                Circuit(workspace: $0["workspace_id"], provider: $0["provider_id"], retryAt: $0["retry_at"])
            }
            return (refused, circuits)
        }) else { return }
        var failing = 0
        for r in refused where now.timeIntervalSince1970 - r.last < 7 * 86_400 {
            guard let id = WorkspaceID(r.workspace) else { continue }
            let lastAccepted = (try? readOnly(dataDirectory.workspaceFile(id)) { db in
                try Double.fetchOne(db, sql: "SELECT max(received_at) FROM deliveries WHERE integration_id = ?", arguments: [r.integration])
            }) ?? nil
            guard (lastAccepted ?? 0) < r.last else { continue }
            failing += 1
            add(.warning, "webhook-auth", "integration \(r.integration) (workspace \(r.workspace)): \(r.failures) webhook deliveries refused for their signature or token, the last at \(ISO8601.string(Date(timeIntervalSince1970: r.last))), none accepted since",
                "the webhook secret on GitHub or GitLab does not match the integration's: set the same secret on the webhook (or add the integration again)")
        }
        if failing == 0 { add(.ok, "webhook-auth", "no integration's webhooks are failing authentication", nil) }
        for c in circuits {
            add(.warning, "ai-circuit", "workspace \(c.workspace): AI provider \(c.provider)'s circuit is open until \(ISO8601.string(Date(timeIntervalSince1970: c.retryAt))) (its last calls failed; reviews use the next provider meanwhile)",
                "check the provider's status and key with `sentinel doctor --online`; rotate the key with `sentinel provider rotate` if it was refused")
        }
        if circuits.isEmpty { add(.ok, "ai-circuit", "no AI provider has an open circuit", nil) }
    }

    /// The price table file as `serve` loads it: one it refuses stops it at start.
    private func checkPriceTable(_ add: Add) {
        guard let file = config.ai.priceTableFile else { return }
        do {
            _ = try PriceTable.load(overridesFile: file)
        } catch {
            add(.error, "ai-prices", "\(error)", "correct ai.price_table_file \(file) (or unset it): serve refuses to start with it")
        }
    }

    /// The plans file and license as `serve` loads them (a problem there stops it at start; doctor
    /// said all was well), a license that ends within 30 days (the next restart would refuse it),
    /// and workspaces on a plan that is not in force (`serve` holds them to `free`, silently).
    private func checkBilling(_ add: Add) {
        let catalog: PlanCatalog
        do {
            catalog = try PlanCatalog.load(plansFile: config.billing.plansFile, licenseFile: config.billing.licenseFile, now: now)
        } catch {
            add(.error, "billing", "\(error)",
                "correct billing.plans_file or billing.license_file (or unset it): serve refuses to start with it")
            return
        }
        if let expiry = catalog.licenseExpiry, expiry < String(ISO8601.string(now.addingTimeInterval(30 * 86_400)).prefix(10)) {
            add(.warning, "billing", "the license ends on \(expiry): from the day after, serve refuses to start with it",
                "ask Sentinel's vendor for a renewed license file and put it at billing.license_file")
        }
        let assigned = (try? readOnly(dataDirectory.controlFile) { db in
            try Row.fetchAll(db, sql: "SELECT id, name, plan FROM workspaces ORDER BY name").map { ($0["id"] as String, $0["name"] as String, $0["plan"] as String) }
        }) ?? []
        let missing = assigned.filter { catalog.plan(named: $0.2) == nil }
        for (id, name, plan) in missing {
            add(.warning, "billing", "workspace \(name) (\(id)) is on plan '\(plan)', which is not in force: it is held to the limits of '\(PlanCatalog.defaultPlan)'",
                "define '\(plan)' in billing.plans_file and restart serve, or move the workspace: sentinel plan set --workspace \(name) PLAN")
        }
        if missing.isEmpty {
            add(.ok, "billing", "plans: \(catalog.plans.keys.sorted().joined(separator: ", ")); \(catalog.licenseStatus)", nil)
        }
    }

    /// What `PRAGMA quick_check` finds wrong in a file that opens (a damaged page), nil when
    /// nothing or when the file cannot be opened (other checks name that).
    static func damage(_ url: URL, readOnly: (URL, (Database) throws -> [String]) throws -> [String]) -> String? {
        do {
            let result = try readOnly(url) { db in try String.fetchAll(db, sql: "PRAGMA quick_check(3)") }
            return result == ["ok"] ? nil : "quick_check: " + result.joined(separator: "; ")
        } catch let error as DatabaseError where error.resultCode.primaryResultCode == .SQLITE_CORRUPT {
            return error.message ?? "database disk image is malformed"
        } catch {
            return nil
        }
    }

    private func readOnly<T>(_ url: URL, _ body: (Database) throws -> T) throws -> T {
        let queue = try SchemaState.readOnlyQueue(url, busyTimeout: Double(config.storage.busyTimeoutMilliseconds) / 1000)
        defer { try? queue.close() }
        return try queue.read(body)
    }
}
