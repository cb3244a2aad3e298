import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The on-disk layout of one appliance (SPEC §1). Everything Sentinel keeps lives under this root,
/// so backing up, moving or wiping an appliance is a matter of this one directory.
public struct DataDirectory: Sendable, Equatable {
    /// Below this much free space on the data directory's disk, `/readyz` says the disk is full
    /// and `sentinel doctor` calls it an error.
    public static let fullDiskBytes: Int64 = 4 << 20

    public let root: URL

    public init(path: String) {
        self.root = URL(fileURLWithPath: path, isDirectory: true).standardizedFileURL
    }

    public var controlFile: URL { root.appendingPathComponent("control.sqlite") }
    /// Webhook deliveries acknowledged and not yet applied to their workspace file (`IntakeJournal`).
    public var intakeJournalFile: URL { root.appendingPathComponent("intake-journal.sqlite") }
    public var workspacesDirectory: URL { root.appendingPathComponent("workspaces", isDirectory: true) }
    public var secretsDirectory: URL { root.appendingPathComponent("secrets", isDirectory: true) }
    public var masterKeyFile: URL { secretsDirectory.appendingPathComponent("master.key") }
    /// One-time token that creates the first appliance admin (present only until then).
    public var setupTokenFile: URL { secretsDirectory.appendingPathComponent("setup-token") }
    public var tlsDirectory: URL { root.appendingPathComponent("tls", isDirectory: true) }
    public var exportsDirectory: URL { root.appendingPathComponent("exports", isDirectory: true) }
    public var serveLockFile: URL { root.appendingPathComponent(".serve.lock") }
    /// Held by an analytics export while it runs (from `serve` or the command line), and by
    /// `sentinel restore`: an export that read a workspace before a restore would move its
    /// watermark back past the restore's rewind.
    public var exportLockFile: URL { exportsDirectory.appendingPathComponent(".export.lock") }
    /// Held by `sentinel restore` while it runs; every other command checks it before it opens
    /// control.sqlite (a change made then would be overwritten or orphaned by the restore).
    public var restoreLockFile: URL { root.appendingPathComponent(".restore.lock") }
    /// Held shared by every backup while it reads the data directory, and exclusively by
    /// `sentinel restore`: a backup taken while a restore replaced the files was a mix of both.
    public var backupLockFile: URL { root.appendingPathComponent(".backup.lock") }
    public var backupsDirectory: URL { root.appendingPathComponent("backups", isDirectory: true) }
    /// Written by `sentinel restore` before it moves the first verified file into place, removed
    /// when it has finished: while it is there the data directory holds files of the backup beside
    /// files from before it, and nothing but that restore, run again, may use the directory.
    public var restorePendingFile: URL { root.appendingPathComponent("restore-pending.json") }
    /// control.sqlite as it was before a full restore replaced it, kept until the restore has
    /// finished: run again after an interruption, the restore reads what was done after the backup
    /// (tokens revoked, users disabled) from it, not from the backup's copy already in place.
    var replacedControlFile: URL { root.appendingPathComponent(".control.sqlite.before-restore") }

    /// A restore that began moving files into place and did not finish (`restorePendingFile`).
    public struct PendingRestore: Codable, Sendable, Equatable {
        /// The backup directory it restored from.
        public var from: String
        public var startedAt: String
        /// Whether it replaced control.sqlite (a full restore), not one workspace's file.
        public var full: Bool
        /// The workspace restored alone (`--workspace`); nil for a full restore.
        public var workspace: String?

        /// `from` of a record that cannot be read: any restore finishes it.
        public static let unknownBackup = "BACKUP_DIR"
    }

    /// The command that finishes `pending` here, as it was run (a full restore in its place rolled
    /// every other workspace back to the backup; one without `--data-dir`, pasted elsewhere, ran
    /// on another directory).
    public func finishingCommand(_ pending: PendingRestore) -> String {
        "sentinel restore --data-dir \(Self.shellQuoted(root.path)) --from \(Self.shellQuoted(pending.from))"
            + (pending.workspace.map { " --workspace \($0)" } ?? "")
    }

    /// The restore that did not finish here, if any; one whose record cannot be read is still one.
    public func pendingRestore() -> PendingRestore? {
        guard FileManager.default.fileExists(atPath: restorePendingFile.path) else { return nil }
        guard let data = FileManager.default.contents(atPath: restorePendingFile.path),
              let pending = try? JSONDecoder.sentinel.decode(PendingRestore.self, from: data) else {
            return PendingRestore(from: PendingRestore.unknownBackup, startedAt: "an unknown time (\(restorePendingFile.lastPathComponent) is unreadable)", full: true,
                                  workspace: nil)
        }
        return pending
    }

    /// What every command but `restore` says, and does not go on, while a restore is unfinished.
    public func unfinishedRestoreProblem() -> String? {
        guard let pending = pendingRestore() else { return nil }
        let what = pending.workspace.map { "a restore of workspace \($0)" } ?? "a restore"
        let unknown = pending.from == PendingRestore.unknownBackup ? " (with the backup it restored from, and its --workspace if it had one)" : ""
        return "\(what) from \(pending.from) begun at \(pending.startedAt) did not finish: \(root.path) holds files of that backup beside "
            + "files from before it. Run `\(finishingCommand(pending))` again to finish it\(unknown); nothing else uses the data directory until then"
    }

    /// Workspace files in `workspaces/` when there is no control.sqlite to register them (deleted
    /// or lost): an appliance started there would be a new, empty one beside them.
    public func workspaceFilesWithoutControl() -> [String] {
        guard !FileManager.default.fileExists(atPath: controlFile.path) else { return [] }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: workspacesDirectory.path)) ?? []
        return names.filter { $0.hasSuffix(".sqlite") && WorkspaceID(String($0.dropLast(7))) != nil }.sorted()
    }

    /// What `serve` and the commands that set an appliance up say, and do not go on, in a data
    /// directory with workspace files but no control.sqlite.
    public func missingControlProblem() -> String? {
        let files = workspaceFilesWithoutControl()
        guard let first = files.first else { return nil }
        return "\(controlFile.path) is missing, but \(workspacesDirectory.path) holds \(files.count) workspace file(s) (\(first)"
            + "\(files.count > 1 ? ", …" : "")) that only it registers: restore it from a full backup (sentinel restore --from BACKUP_DIR, "
            + "then sentinel verify). Starting here would make a new, empty appliance beside them"
    }

    /// Where files are copied before a migration from schema version `from` to `to`.
    public func preUpgradeDirectory(from: Int, to: Int) -> URL {
        backupsDirectory.appendingPathComponent("pre-upgrade-\(from)-\(to)", isDirectory: true)
    }

    /// The data directory holding `file` of `kind` (control.sqlite at the root, workspace files in workspaces/).
    public init(holding file: URL, kind: DatabaseKind) {
        let parent = file.deletingLastPathComponent()
        self.init(path: (kind != .workspace ? parent : parent.deletingLastPathComponent()).path)
    }

    public func workspaceFile(_ id: WorkspaceID) -> URL {
        workspacesDirectory.appendingPathComponent("\(id.rawValue).sqlite")
    }

    /// Whether `directory` is the data directory itself or its `workspaces/`, `secrets/` or `tls/`
    /// (the same directory, however it is reached: a symbolic link, `..`, a trailing slash): where
    /// the appliance's own files live, under the names a backup or a dump would write.
    public func holdsOwnFiles(_ directory: URL) -> Bool {
        var candidate = stat()
        guard stat(directory.path, &candidate) == 0 else { return false }
        return [root, workspacesDirectory, secretsDirectory, tlsDirectory].contains { own in
            var kept = stat()
            return stat(own.path, &kept) == 0 && kept.st_dev == candidate.st_dev && kept.st_ino == candidate.st_ino
        }
    }

    /// Creates the directories and, for a new data directory, the master key. Idempotent. A data
    /// directory that already holds data (`control.sqlite`) but no key gets none: its stored
    /// credentials are sealed with the lost key, and a new one made at start looked like a working
    /// appliance whose every credential was refused. `creatingKey: false` (a restore) makes none.
    public func prepare(creatingKey: Bool = true) throws {
        let fm = FileManager.default
        for dir in [root, workspacesDirectory, tlsDirectory, exportsDirectory] {
            try fm.createDirectory(at: dir, withIntermediateDirectories: true)
        }
        try fm.createDirectory(at: secretsDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        guard creatingKey else { return }
        if let problem = unfinishedRestoreProblem() { throw StorageError.conflict(problem) }
        if let problem = missingControlProblem() { throw StorageError.notFound(problem) }
        // Looked at with stat, which tells "missing" from "not allowed to look": run as another
        // user than the data directory's, `fileExists` said missing, and the advice to make a new
        // key would have replaced the real one.
        var info = stat()
        if stat(masterKeyFile.path, &info) == 0 { return }
        let reason = errno
        guard reason == ENOENT else {
            throw StorageError.io("cannot look at \(masterKeyFile.path): \(String(cString: strerror(reason))); run Sentinel as the user that owns "
                                  + "the data directory \(root.path) (the service's user, e.g. sudo -u sentinel), and do not create a new key")
        }
        if fm.fileExists(atPath: controlFile.path) { throw StorageError.io(missingMasterKey) }
        _ = try MasterKey.loadOrCreate(at: masterKeyFile)
    }

    /// The master key when group or others may read it (copied in with `cp` from a backup, or
    /// `chmod`ed by hand) and reach it (the secrets directory searchable by them): its path and
    /// mode, for `serve`'s warning at start; nil otherwise (or when it cannot be looked at).
    public func exposedMasterKey() -> (path: String, mode: mode_t)? {
        var key = stat(), directory = stat()
        guard stat(masterKeyFile.path, &key) == 0, stat(secretsDirectory.path, &directory) == 0 else { return nil }
        // Read by the group through a directory the group can search, or by others through one they can.
        let byGroup = key.st_mode & 0o040 != 0 && directory.st_mode & 0o010 != 0
        let byOthers = key.st_mode & 0o004 != 0 && directory.st_mode & 0o001 != 0
        return byGroup || byOthers ? (masterKeyFile.path, key.st_mode & 0o777) : nil
    }

    /// What a data directory with data but without its master key is told.
    public var missingMasterKey: String {
        "\(masterKeyFile.path) is missing, but this data directory holds data (control.sqlite) whose stored credentials "
            + "(integration keys, webhook secrets, AI provider keys) are sealed with it. Copy the key back from where you keep it "
            + "(a backup does not hold it), mode 600. To go on without the stored credentials instead, create a new key "
            + "(head -c 32 /dev/urandom > \(Self.shellQuoted(masterKeyFile.path)); chmod 600 \(Self.shellQuoted(masterKeyFile.path))) and enter them again"
    }

    /// A path as a shell reads it back whole: quoted when it holds anything but letters, digits and `/._-`.
    static func shellQuoted(_ path: String) -> String {
        let plain = path.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) && $0.isASCII || "/._-".unicodeScalars.contains($0) }
        return plain ? path : "'" + path.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}

/// An advisory `flock` held for the lifetime of the value; used to serialise workspace-file creation
/// across processes (the CLI may create a workspace while `serve` runs) and to detect a running server.
public final class FileLock: Sendable {
    private let fd: Int32

    private init(fd: Int32) { self.fd = fd }

    /// Blocks until the lock is held.
    public static func acquire(_ url: URL) throws -> FileLock {
        let fd = open(url.path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StorageError.io("cannot open lock file \(url.path): \(String(cString: strerror(errno)))") }
        while flock(fd, LOCK_EX) != 0 {
            if errno != EINTR { close(fd); throw StorageError.io("cannot lock \(url.path)") }
        }
        return FileLock(fd: fd)
    }

    /// Returns nil when another process holds the lock.
    public static func tryAcquire(_ url: URL) throws -> FileLock? {
        let fd = open(url.path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StorageError.io("cannot open lock file \(url.path): \(String(cString: strerror(errno)))") }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 { close(fd); return nil }
        return FileLock(fd: fd)
    }

    /// A shared lock (others may hold it shared too); nil when another process holds it exclusively.
    public static func tryAcquireShared(_ url: URL) throws -> FileLock? {
        let fd = open(url.path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StorageError.io("cannot open lock file \(url.path): \(String(cString: strerror(errno)))") }
        if flock(fd, LOCK_SH | LOCK_NB) != 0 { close(fd); return nil }
        return FileLock(fd: fd)
    }

    deinit { flock(fd, LOCK_UN); close(fd) }
}

extension DataDirectory {
    /// Why this process may not read and write an existing file (one a command run as root made,
    /// or this command run as the wrong user), naming this user and the file's owner; nil when it
    /// may, or when there is no such file. Such a file is not damaged: restoring it would lose
    /// what was written since the backup.
    public static func accessProblem(_ url: URL) -> String? {
        var info = stat()
        if stat(url.path, &info) != 0 {
            // A directory on the way this user may not search hides the file: it is not missing.
            guard errno == EACCES else { return nil }
            let directory = url.deletingLastPathComponent()
            return "it cannot be reached: uid \(geteuid()) may not search its directory \(directory.path)\(ownerAndMode(directory))"
        }
        // (A read-only file system, EROFS, is another problem, said by its own checks.)
        guard access(url.path, R_OK | W_OK) != 0, errno == EACCES || errno == EPERM else { return nil }
        return "it is not readable and writable by uid \(geteuid()) (its owner is uid \(info.st_uid), mode \(String(Int(info.st_mode) & 0o777, radix: 8)))"
    }

    /// " (its owner is uid N, mode M)" of a path, or nothing when it cannot be looked at.
    static func ownerAndMode(_ url: URL) -> String {
        var info = stat()
        guard stat(url.path, &info) == 0 else { return "" }
        return " (its owner is uid \(info.st_uid), mode \(String(Int(info.st_mode) & 0o777, radix: 8)))"
    }

    /// `accessProblem` of a database file and of its `-wal` and `-shm`: SQLite opens none of them
    /// when it may not write one, and a workspace whose `-wal` root owned was called corrupt, with
    /// a restore as the fix (which deletes that `-wal`, and what it holds). `paths` names the files
    /// to give back (for a `chown`).
    public static func databaseAccessProblem(_ url: URL) -> (problem: String, paths: String)? {
        // Its directory first: SQLite writes the -wal and -shm beside the file (a workspaces/ left
        // root's by a restore run as root read "missing" or "corrupt", with a restore as the fix).
        let directory = url.deletingLastPathComponent()
        if access(directory.path, W_OK | X_OK) != 0, errno == EACCES || errno == EPERM {
            return ("its directory \(directory.path) is not writable and searchable by uid \(geteuid())\(ownerAndMode(directory)) (SQLite "
                    + "writes the -wal and -shm beside the file)", directory.path)
        }
        var problems: [(String, String)] = []
        for suffix in ["", "-wal", "-shm"] {
            let file = URL(fileURLWithPath: url.path + suffix)
            if let problem = accessProblem(file) { problems.append((file.path, suffix.isEmpty ? problem : "its \(suffix) file \(file.lastPathComponent) \(problem.dropFirst(3))")) }
        }
        guard !problems.isEmpty else { return nil }
        return (problems.map(\.1).joined(separator: "; "), problems.map(\.0).joined(separator: " "))
    }
}

enum FileSystem {
    /// A file operation's failure in words: the system's reason (`File too large`, `No space left
    /// on device`) where Foundation wraps one, which it prints as `Code=512 "(null)"`.
    static func reason(_ error: any Error) -> String {
        let error = error as NSError
        if let underlying = (error.userInfo[NSUnderlyingErrorKey] as? any Error).map({ $0 as NSError }), underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code)))
        }
        if error.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(error.code))) }
        return error.localizedDescription
    }

    /// fsync a file or directory so a rename or a fresh file survives a power cut.
    static func sync(_ url: URL) {
        let fd = open(url.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
    }

    /// A kernel pseudo-file (`/proc/self/mounts`) read to its end. Foundation's
    /// `String(contentsOfFile:)` takes its size from `stat`, which is 0 for these, and stopped
    /// after the first page: a mount listed after about 4 KB was not found.
    static func readPseudoFile(_ path: String) -> String? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        guard let data = try? handle.readToEnd() else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    static func removeIfPresent(_ url: URL) throws {
        if FileManager.default.fileExists(atPath: url.path) { try FileManager.default.removeItem(at: url) }
    }

    /// Writes bytes to a new file with the given mode, failing if it already exists.
    static func createExclusive(_ url: URL, contents: Data, mode: mode_t) throws -> Bool {
        let fd = open(url.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        if fd < 0 {
            if errno == EEXIST { return false }
            throw StorageError.io("cannot create \(url.path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        let written = contents.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == contents.count else { throw StorageError.io("short write to \(url.path)") }
        fchmod(fd, mode)
        fsync(fd)
        return true
    }

    static func sha256(of url: URL) throws -> String {
        guard let handle = try? FileHandle(forReadingFrom: url) else { throw StorageError.io("cannot read \(url.path)") }
        defer { try? handle.close() }
        var hasher = SHA256()
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty { hasher.update(data: chunk) }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }
}

/// Why nothing can be written in a data directory, if so.
public enum DataDirectoryWriteProblem: Equatable, Sendable {
    /// The file system is mounted read-only (ext4 remounts read-only after disk errors). Mode bits
    /// say nothing of it, and SQLite says only "unable to open database file".
    case readOnlyFileSystem
    /// This process's user may not write there.
    case notWritable(reason: String)

    public init?(at path: String) {
        var volume = statvfs()
        if statvfs(path, &volume) == 0, volume.f_flag & UInt(ST_RDONLY) != 0 {
            self = .readOnlyFileSystem
        } else if access(path, W_OK) != 0 {
            self = .notWritable(reason: String(cString: strerror(errno)))
        } else {
            return nil
        }
    }
}

/// The file system a data directory is on, where it matters to SQLite: a write-ahead log needs its
/// `-shm` shared memory and POSIX locks to work between the processes of one machine, which a
/// network file system (NFS, SMB/CIFS, 9p, AFS, Ceph, GPFS, Lustre, sshfs) does not provide
/// reliably: files on one can be corrupted. Other FUSE mounts may be either.
public struct DataDirectoryFileSystem: Equatable, Sendable {
    /// The mount's file system type, as `/proc/mounts` gives it (`nfs4`, `fuse.sshfs`, …).
    public var name: String
    /// Known to be a network file system (not only possibly, as an unknown FUSE one is).
    public var isNetwork: Bool

    /// The file system holding `path` (or its nearest existing parent), when it is a network or
    /// FUSE one; nil for a local one, or when the system does not say.
    public static func remote(at path: String) -> DataDirectoryFileSystem? {
        var probe = URL(fileURLWithPath: path).resolvingSymlinksInPath()
        while !FileManager.default.fileExists(atPath: probe.path), probe.pathComponents.count > 1 { probe.deleteLastPathComponent() }
        guard let mounts = FileSystem.readPseudoFile("/proc/self/mounts") else { return nil }
        return remote(type: mountType(of: probe.resolvingSymlinksInPath().path, in: mounts) ?? "")
    }

    /// The type of the mount holding `path`: the longest mount point that contains it.
    static func mountType(of path: String, in mounts: String) -> String? {
        var best: (point: String, type: String)?
        for line in mounts.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 3 else { continue }
            // Spaces and other bytes in mount points are octal escapes (`\040`).
            let point = String(fields[1]).replacingOccurrences(of: "\\040", with: " ")
            let contains = point == "/" || path == point || path.hasPrefix(point + "/")
            if contains, point.count >= (best?.point.count ?? -1) { best = (point, String(fields[2])) }
        }
        return best?.type
    }

    static func remote(type: String) -> DataDirectoryFileSystem? {
        let network: Set<String> = ["nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "gpfs", "lustre", "glusterfs", "ncpfs", "davfs",
                                    "fuse.sshfs", "fuse.s3fs", "fuse.rclone", "fuse.gcsfuse", "fuse.glusterfs", "fuse.ceph-fuse", "fuse.juicefs"]
        if network.contains(type) { return DataDirectoryFileSystem(name: type, isNetwork: true) }
        if type == "fuse" || type == "fuseblk" || type.hasPrefix("fuse.") { return DataDirectoryFileSystem(name: type, isNetwork: false) }
        return nil
    }
}
