import Foundation
import GRDB

/// One file in a backup.
public struct BackupEntry: Codable, Sendable, Equatable {
    public var file: String
    public var kind: DatabaseKind
    public var workspaceID: String?
    public var size: Int64
    public var sha256: String
    public var schemaVersion: String
}

public struct BackupManifest: Codable, Sendable, Equatable {
    public var format: Int
    public var createdAt: String
    public var sentinelVersion: String
    public var files: [BackupEntry]
    /// Workspaces whose file could not be read (missing, damaged) and are not in this backup, with
    /// why; nil when every file is in it.
    public var skipped: [SkippedWorkspace]?

    public struct SkippedWorkspace: Codable, Sendable, Equatable {
        public var workspaceID: String
        public var reason: String
    }

    public static let fileName = "manifest.json"
    /// Locked (`flock`) by the backup writing into the directory, removed when it ends.
    public static let inProgressFileName = ".backup-in-progress"
}

/// Online backups of tenant files (SPEC §10). Each file is copied with SQLite's backup API in a
/// single step: the copy reads one consistent snapshot while the server keeps writing (WAL lets
/// writers proceed), so it always completes, and holds everything committed before it began.
public struct BackupService: Sendable {
    public let dataDirectory: DataDirectory
    public let opener: DatabaseOpener
    /// Free bytes on the disk holding a URL (injectable for tests).
    let freeSpace: @Sendable (URL) -> Int64?

    public init(dataDirectory: DataDirectory, opener: DatabaseOpener, freeSpace: @escaping @Sendable (URL) -> Int64? = PreUpgradeSnapshot.freeSpace) {
        self.dataDirectory = dataDirectory
        self.opener = opener
        self.freeSpace = freeSpace
    }

    /// Backs up control.sqlite and every workspace file (or one workspace) into `destination`.
    /// Refused before anything is written when the destination's disk has less room than the files
    /// take; a backup that fails half-way (the disk filled up, a file could not be read) removes
    /// what it wrote, so a nightly backup on the data volume cannot leave it full.
    public func backup(to destination: URL, workspace only: WorkspaceID? = nil, control: ControlStore) throws -> BackupManifest {
        let fm = FileManager.default
        // Not while a restore replaces the files, nor a restore while this reads them (a lock file
        // that cannot be created, in a read-only data directory, says nothing of a restore).
        var reading: FileLock?
        do {
            reading = try FileLock.tryAcquireShared(dataDirectory.backupLockFile)
            if reading == nil {
                throw StorageError.conflict("a restore is running on \(dataDirectory.root.path); back up when it has finished (nothing was written)")
            }
        } catch let error as StorageError {
            // Only the refusal above; a lock file that cannot be opened (`try?` made that one "a
            // restore is running" too) is a data directory this user cannot write.
            if case .conflict = error { throw error }
        }
        defer { _ = reading }
        let ids: [WorkspaceID]
        if let only {
            guard try control.workspace(only) != nil else { throw WorkspaceError.notFound(only.rawValue) }
            ids = [only]
        } else {
            ids = try control.workspaceIDs()
        }
        let sources = (only == nil ? [dataDirectory.controlFile] : []) + ids.map { dataDirectory.workspaceFile($0) }
        let needed = sources.reduce(Int64(0)) { $0 + PreUpgradeSnapshot.size(of: $1) }
        if let free = freeSpace(destination), free < needed {
            throw StorageError.io("not enough free space for the backup: its files take \(needed) bytes, \(free) are free on the disk "
                + "holding \(destination.path); nothing was written. Free some space, or back up to another disk (--out)")
        }
        let existed = fm.fileExists(atPath: destination.path)
        let intoOwnFiles = StorageError.invalid("\(destination.path) is Sentinel's data directory (or holds its files); a backup goes into a directory "
            + "of its own, such as \(dataDirectory.backupsDirectory.path)/NAME or one on another disk")
        // Refused before anything is created in it (a `workspaces/workspaces/` was left behind).
        if existed, dataDirectory.holdsOwnFiles(destination) { throw intoOwnFiles }
        // A directory that exists must be empty: the copies replaced what it held (another
        // appliance's control.sqlite and workspace files, written over and lost).
        var isDirectory: ObjCBool = false
        if existed, fm.fileExists(atPath: destination.path, isDirectory: &isDirectory), isDirectory.boolValue {
            let held = (try? fm.contentsOfDirectory(atPath: destination.path)) ?? []
            if held.contains(BackupManifest.inProgressFileName) {
                throw StorageError.conflict("another backup is being written into \(destination.path); choose another directory")
            }
            if held.contains(BackupManifest.fileName) {
                throw StorageError.conflict("\(destination.path) already holds a backup; choose an empty directory")
            }
            if !held.isEmpty {
                throw StorageError.conflict("\(destination.path) is not empty (it holds \(held.count) item(s), such as \(held.sorted()[0])); "
                                            + "a backup goes into a new or empty directory; nothing was written")
            }
        }
        do {
            try fm.createDirectory(at: destination.appendingPathComponent("workspaces"), withIntermediateDirectories: true)
        } catch {
            var isDirectory: ObjCBool = false
            if fm.fileExists(atPath: destination.path, isDirectory: &isDirectory), !isDirectory.boolValue {
                throw StorageError.invalid("\(destination.path) is a file; a backup goes into a directory")
            }
            throw StorageError.io("cannot create the backup directory \(destination.path): \((error as NSError).localizedDescription)")
        }
        // Into the data directory itself (or its workspaces/ by a link), the copies would be
        // written over the files they copy, and a failure's clean-up would delete them.
        if dataDirectory.holdsOwnFiles(destination) || dataDirectory.holdsOwnFiles(destination.appendingPathComponent("workspaces")) {
            throw intoOwnFiles
        }
        if fm.fileExists(atPath: destination.appendingPathComponent(BackupManifest.fileName).path) {
            throw StorageError.conflict("\(destination.path) already holds a backup; choose an empty directory")
        }
        // Held while the backup is written: `backup-prune.sh` removes an incomplete backup (one a
        // kill or power cut interrupted) only when no process holds it.
        let inProgressFile = destination.appendingPathComponent(BackupManifest.inProgressFileName)
        guard let inProgress = try FileLock.tryAcquire(inProgressFile) else {
            throw StorageError.conflict("another backup is being written into \(destination.path); choose another directory")
        }
        defer {
            try? FileSystem.removeIfPresent(inProgressFile)
            _ = inProgress
        }
        do {
            return try write(to: destination, ids: ids, withControl: only == nil, control: control)
        } catch {
            try? FileSystem.removeIfPresent(inProgressFile)
            // What this backup wrote goes (a directory it found was empty: it holds only what this wrote).
            if existed {
                for file in ["control.sqlite"] + ids.map({ "workspaces/\($0.rawValue).sqlite" }) {
                    for suffix in ["", "-journal", "-wal", "-shm"] {
                        try? FileSystem.removeIfPresent(destination.appendingPathComponent(file + suffix))
                    }
                }
                try? FileSystem.removeIfPresent(destination.appendingPathComponent(BackupManifest.fileName))
                _ = rmdir(destination.appendingPathComponent("workspaces").path)  // only when empty
            } else {
                try? fm.removeItem(at: destination)
            }
            throw error
        }
    }

    private func write(to destination: URL, ids: [WorkspaceID], withControl: Bool, control: ControlStore) throws -> BackupManifest {
        let fm = FileManager.default
        var entries: [BackupEntry] = []
        if withControl {
            let entry = try control.withReader { try copy(reader: $0, kind: .control, workspace: nil, to: destination, relative: "control.sqlite") }
            if let problem = Self.integrityProblem(destination.appendingPathComponent(entry.file)) {
                throw StorageError.corrupt("control.sqlite is damaged (\(problem)); no backup was written: restore it from an earlier backup")
            }
            entries.append(entry)
        }
        var skipped: [BackupManifest.SkippedWorkspace] = []
        for id in ids {
            let source = dataDirectory.workspaceFile(id)
            var configuration = Configuration()
            configuration.readonly = true
            configuration.busyMode = .timeout(opener.busyTimeout)
            let queue: DatabaseQueue
            do {
                guard fm.fileExists(atPath: source.path) else { throw StorageError.missingFile(source.path) }
                // Not opened when emptied beside its -wal (SQLite would delete that -wal: the nightly
                // backup destroyed the last copy, exited 0, and the older backups were pruned).
                if let problem = DatabaseOpener.emptiedBesideLog(source) { throw StorageError.corrupt("\(source.lastPathComponent) \(problem)") }
                queue = try DatabaseQueue(path: source.path, configuration: configuration)  // reads its schema: a damaged file fails here
            } catch let error where withControl && Self.isUnreadableSource(error) {
                // A full backup goes on without a workspace whose own file is missing or damaged:
                // one tenant's broken file must not stop every other tenant's nightly backup. It is
                // named in the manifest, and the backup reports it (the command exits non-zero).
                skipped.append(.init(workspaceID: id.rawValue, reason: Self.unreadableReason(error, file: source)))
                continue
            }
            defer { try? queue.close() }
            let entry: BackupEntry
            do {
                // Deliveries acknowledged into the intake journal and not yet in the file go into the copy.
                let journalled = try IntakeJournal.deliveries(for: id, in: dataDirectory, busyTimeout: opener.busyTimeout)
                entry = try copy(reader: queue, kind: .workspace, workspace: id, to: destination,
                                 relative: "workspaces/\(id.rawValue).sqlite") { db in
                    try IntakeJournal.apply(journalled, to: db, maxAttempts: SentinelConfig.Jobs().maxAttempts)
                }
            } catch let error as StorageError {
                throw error  // writing the copy failed (a full disk): the backup fails whole
            } catch where withControl {
                // Its file opened but could not be read (a damaged page under its schema): skipped
                // and named like one that does not open; it failed every workspace's backup.
                try? FileSystem.removeIfPresent(destination.appendingPathComponent("workspaces/\(id.rawValue).sqlite"))
                skipped.append(.init(workspaceID: id.rawValue, reason: "its file is damaged (\(Self.oneLine(error)))"))
                continue
            }
            // A damaged page opens and copies: checked here, or the backup said it was good, restore
            // refused it whole, and the nightly prune deleted the good backups before it.
            if let problem = Self.integrityProblem(destination.appendingPathComponent(entry.file)) {
                try? FileSystem.removeIfPresent(destination.appendingPathComponent(entry.file))
                let reason = "its file is damaged (\(problem))"
                guard withControl else { throw StorageError.corrupt("workspace \(id): \(reason); no backup was written") }
                skipped.append(.init(workspaceID: id.rawValue, reason: reason))
                continue
            }
            entries.append(entry)
        }
        let manifest = BackupManifest(format: 1, createdAt: ISO8601.string(Date()), sentinelVersion: SentinelVersion.current, files: entries,
                                      skipped: skipped.isEmpty ? nil : skipped)
        let data = try JSONEncoder.sentinelPretty.encode(manifest)
        let manifestURL = destination.appendingPathComponent(BackupManifest.fileName)
        try data.write(to: manifestURL, options: .atomic)
        FileSystem.sync(manifestURL)
        FileSystem.sync(destination)
        return manifest
    }

    /// Opening the workspace's own file failed: it is missing, a directory, or not a readable
    /// database (what goes wrong writing the copy, a full disk or a failing destination, fails the
    /// backup whole).
    static func isUnreadableSource(_ error: any Error) -> Bool {
        if case StorageError.missingFile = error { return true }
        if case StorageError.corrupt = error { return true }
        if let error = error as? DatabaseError {
            return [.SQLITE_CORRUPT, .SQLITE_NOTADB, .SQLITE_CANTOPEN].contains(error.resultCode)
        }
        return false
    }

    /// Why SQLite's online backup could not write a copy, in words: its error carries the result
    /// code only (its message is the destination's last, "not an error").
    static func copyFailure(_ error: DatabaseError) -> String {
        switch error.resultCode.primaryResultCode {
        case .SQLITE_FULL: return "the disk is full"
        case .SQLITE_IOERR: return "a write failed (disk I/O error: the disk full, or a file-size limit reached)"
        case .SQLITE_CANTOPEN: return "the file cannot be created there"
        case .SQLITE_READONLY: return "the destination is read-only"
        case .SQLITE_BUSY, .SQLITE_LOCKED: return "the file is locked by another process"
        default:
            let message = error.message.flatMap { $0 == "not an error" ? nil : $0 }
            return message.map { "\($0) (SQLite error \(error.resultCode.rawValue))" } ?? "SQLite error \(error.resultCode.rawValue)"
        }
    }

    static func unreadableReason(_ error: any Error, file: URL) -> String {
        if case StorageError.missingFile(let path) = error { return "its file \(path) is missing" }
        // Not damaged: restoring it (the fix for a damaged one) would lose what was written since.
        if let (problem, paths) = DataDirectory.databaseAccessProblem(file) {
            return "its file \(file.path) cannot be opened: \(problem); it is not damaged: give it to the user Sentinel runs as "
                + "(chown sentinel:sentinel \(paths)) rather than restore it"
        }
        if let error = error as? DatabaseError { return "its file cannot be read: \(error.message ?? "\(error.resultCode)")" }
        return "\(error)"
    }

    /// `amend` changes the copy before it is sealed (in a transaction).
    func copy(reader: some DatabaseReader, kind: DatabaseKind, workspace: WorkspaceID?, to destination: URL, relative: String,
              amend: ((Database) throws -> Void)? = nil) throws -> BackupEntry {
        let target = destination.appendingPathComponent(relative)
        try FileSystem.removeIfPresent(target)
        let version = try DatabaseOpener.schemaVersion(reader, kind: kind)
        do {
            let copy: DatabaseQueue
            do {
                copy = try DatabaseQueue(path: target.path)
                try reader.backup(to: copy)  // all pages in one step: one snapshot, never restarted by writers
            } catch let error as DatabaseError {
                throw StorageError.io("writing the copy \(target.path) failed: \(Self.copyFailure(error))")
            }
            if let amend { try copy.write(amend) }
            try copy.writeWithoutTransaction { db in
                // A self-contained file: no -wal beside it, rollback journal until restored and opened.
                _ = try db.execute(sql: "PRAGMA journal_mode = DELETE")
            }
            try copy.close()
        }
        FileSystem.sync(target)
        let size = (try FileManager.default.attributesOfItem(atPath: target.path)[.size] as? NSNumber)?.int64Value ?? 0
        return BackupEntry(file: relative, kind: kind, workspaceID: workspace?.rawValue, size: size,
                           sha256: try FileSystem.sha256(of: target), schemaVersion: version)
    }

    /// Restores from a backup directory. Every file is checked (sha256, `PRAGMA integrity_check`)
    /// before anything in the data directory is touched; a damaged backup is refused whole. The
    /// server must be stopped (restore refuses to run beside it). `log` hears what the restore
    /// changed beyond the files (export watermarks moved back).
    public func restore(from source: URL, workspace only: WorkspaceID? = nil, log: (String) -> Void = { _ in }) throws -> [BackupEntry] {
        try restore(from: source, workspace: only, log: log, afterMove: { _ in })
    }

    /// `afterMove` hears each file moved into place (a test stops the restore there, as a kill would).
    func restore(from source: URL, workspace only: WorkspaceID?, log: (String) -> Void, afterMove: (URL) throws -> Void) throws -> [BackupEntry] {
        let manifestURL = source.appendingPathComponent(BackupManifest.fileName)
        guard let data = FileManager.default.contents(atPath: manifestURL.path) else {
            throw StorageError.invalid("\(source.path) has no \(BackupManifest.fileName); not a Sentinel backup")
        }
        let manifest: BackupManifest
        do { manifest = try JSONDecoder.sentinel.decode(BackupManifest.self, from: data) } catch {
            throw StorageError.invalid("\(manifestURL.path) is not a valid backup manifest")
        }
        guard manifest.format == 1 else {
            throw StorageError.invalid("\(manifestURL.path) is a backup of format \(manifest.format), which this binary does not read (it reads format 1)")
        }
        guard !manifest.files.isEmpty else { throw StorageError.invalid("\(manifestURL.path) lists no file: nothing to restore") }
        var selected = manifest.files
        if let only {
            selected = manifest.files.filter { $0.workspaceID == only.rawValue }
            guard !selected.isEmpty else { throw StorageError.notFound("the backup holds no file for workspace \(only)") }
        }
        // Onto a new machine the data directory may not exist yet: the lock file lives in it.
        try FileManager.default.createDirectory(at: dataDirectory.root, withIntermediateDirectories: true)
        guard let restoring = try FileLock.tryAcquire(dataDirectory.restoreLockFile) else {
            throw StorageError.conflict("another restore is running on \(dataDirectory.root.path); wait for it to finish")
        }
        guard let lock = try FileLock.tryAcquire(dataDirectory.serveLockFile) else {
            throw StorageError.conflict("sentinel serve is running on \(dataDirectory.root.path); stop it before restoring")
        }
        // An export running now (the command line's; serve's is ruled out above) may have read a
        // workspace before its file is replaced: its watermark, written after, would undo the
        // rewind below, and the workspace's new events would never be exported.
        try FileManager.default.createDirectory(at: dataDirectory.exportsDirectory, withIntermediateDirectories: true)
        guard let exporting = try FileLock.tryAcquire(dataDirectory.exportLockFile) else {
            throw StorageError.conflict("an analytics export is running on \(dataDirectory.root.path); wait for it to finish, then restore")
        }
        // A backup reading the data directory now would copy some files before and some after
        // this restore, and report the mix as a good backup.
        guard let backups = try FileLock.tryAcquire(dataDirectory.backupLockFile) else {
            throw StorageError.conflict("a backup of \(dataDirectory.root.path) is being taken (sentinel backup, or sentinel-backup.timer); "
                                        + "wait for it to finish, then restore; nothing was restored")
        }
        defer { _ = (lock, restoring, exporting, backups) }
        // No key is made here: the restored files' credentials are sealed with the original one,
        // which a backup does not hold (`serve` says so until it is copied back).
        try dataDirectory.prepare(creatingKey: false)
        // One that was cut off while it moved files into place (killed, the machine down) left
        // some of the backup's files beside older ones; nothing noticed, and run again it read
        // "what was done after the backup" from the backup's own control.sqlite: a token revoked
        // since came back to life. It is finished by running it again, whole.
        let pending = dataDirectory.pendingRestore()
        // Only a full restore, or one of the same workspace, finishes it: another workspace's
        // restore cleared the record and left the first one's file half done.
        if let pending, only != nil, pending.from != DataDirectory.PendingRestore.unknownBackup, pending.full || pending.workspace != only?.rawValue {
            throw StorageError.conflict("\(pending.workspace.map { "a restore of workspace \($0)" } ?? "a full restore") from \(pending.from) "
                                        + "begun at \(pending.startedAt) did not finish; run it again (\(dataDirectory.finishingCommand(pending))) "
                                        + "before restoring another workspace; nothing was restored")
        }
        if pending == nil { try FileSystem.removeIfPresent(dataDirectory.replacedControlFile) }
        if !selected.contains(where: { $0.kind == .control }), selected.contains(where: { $0.kind == .workspace }),
           !FileManager.default.fileExists(atPath: dataDirectory.controlFile.path) {
            // A new data directory: the workspace would be served by nothing (an empty control.sqlite was made after it).
            throw StorageError.notFound("\(dataDirectory.root.path) has no control.sqlite, so no workspace is registered there: a restored file "
                                        + "would be served by nothing; nothing was restored. Restore a full backup (without --workspace) first")
        }
        if !selected.contains(where: { $0.kind == .control }), FileManager.default.fileExists(atPath: dataDirectory.controlFile.path) {
            // A workspace control.sqlite does not list (deleted) would come back as a file nothing
            // serves, backs up or exports, reported restored all the same: with `--workspace`, and
            // from a backup that holds workspace files alone (a deleted workspace's final backup).
            let control = try ControlStore(dataDirectory: dataDirectory, opener: opener)
            let unregistered = try selected.compactMap { $0.workspaceID.flatMap(WorkspaceID.init) }.filter { try control.workspace($0) == nil }
            try control.close()
            if let first = unregistered.first {
                throw StorageError.notFound("workspace \(first) is not registered in \(dataDirectory.controlFile.path) (it was deleted, or belongs to "
                                            + "another appliance): a restored file would be served by nothing; nothing was restored. Restore a "
                                            + "full backup whose control.sqlite lists it (sentinel restore --from DIR, without --workspace), or "
                                            + "read this backup's file with sqlite3")
            }
        }
        // A full backup's control.sqlite registers every workspace file it holds: files of another
        // backup mixed in (their checksums written into the manifest) were restored beside a
        // control.sqlite that served none of them, and reported as unreadable afterwards.
        if let controlEntry = selected.first(where: { $0.kind == .control }),
           let registered = Self.workspaceIDs(registeredIn: source.appendingPathComponent(controlEntry.file)),
           let stray = selected.first(where: { $0.kind == .workspace && !registered.contains($0.workspaceID ?? "") }) {
            throw StorageError.invalid("the backup's \(controlEntry.file) does not register workspace \(stray.workspaceID ?? "-"), whose file "
                                       + "\(stray.file) the backup holds (files of another backup mixed in?): nothing was restored")
        }
        // A manifest naming one file twice would stage both copies at one place: the second
        // replaced the first, and the move into place failed half-way through.
        var seen = Set<String>()
        for entry in selected {
            let key = entry.kind == .workspace ? "workspace \(entry.workspaceID ?? "-")" : entry.kind.rawValue
            guard seen.insert(key).inserted else {
                throw StorageError.invalid("backup is damaged: its manifest lists the \(key) file twice; nothing was restored")
            }
        }
        // 1. Verify everything into staged copies next to their destinations.
        var staged: [(BackupEntry, URL, URL)] = []
        defer { for (_, temp, _) in staged { try? FileSystem.removeIfPresent(temp) } }
        for entry in selected {
            guard !entry.file.contains(".."), entry.file.hasSuffix(".sqlite") else {
                throw StorageError.invalid("backup manifest names an unexpected file: \(entry.file)")
            }
            let from = source.appendingPathComponent(entry.file)
            let target: URL
            switch entry.kind {
            case .control: target = dataDirectory.controlFile
            // Only a pre-upgrade snapshot of the journal holds one (backups apply it to the workspace copies).
            case .journal: target = dataDirectory.intakeJournalFile
            case .workspace:
                guard let raw = entry.workspaceID, let id = WorkspaceID(raw) else {
                    throw StorageError.invalid("backup manifest entry \(entry.file) has no valid workspace id")
                }
                target = dataDirectory.workspaceFile(id)
            }
            let temp = target.deletingLastPathComponent().appendingPathComponent(".\(target.lastPathComponent).restoring")
            try FileSystem.removeIfPresent(temp)
            guard FileManager.default.fileExists(atPath: from.path) else {
                throw StorageError.invalid("backup is damaged: \(entry.file) is missing")
            }
            // A link would be copied as a link and moved into place: the workspace's data would
            // then live wherever it points, outside the data directory.
            guard (try? FileManager.default.attributesOfItem(atPath: from.path)[.type] as? FileAttributeType) == .typeRegular else {
                throw StorageError.invalid("backup is damaged: \(entry.file) is not a regular file (a link, or a directory); nothing was restored")
            }
            // Staged before the copy: one that fails part-way (a full disk, a file-size limit) is
            // removed with the others. It stayed, hidden, taking the space it had filled.
            staged.append((entry, temp, target))
            do {
                try FileManager.default.copyItem(at: from, to: temp)
                // Owner-only, as Sentinel writes its files: a copy keeps the backup file's mode (a
                // backup copied off the machine and back came in world-readable, or writable).
                guard chmod(temp.path, 0o600) == 0 else { throw StorageError.io(String(cString: strerror(errno))) }
            } catch {
                throw StorageError.io("copying \(entry.file) from the backup to \(temp.path) failed (\(FileSystem.reason(error))); nothing was restored")
            }
            let digest = try FileSystem.sha256(of: temp)
            guard digest == entry.sha256 else {
                throw StorageError.invalid("backup is damaged: checksum of \(entry.file) does not match the manifest")
            }
            try verifyIntegrity(temp, name: entry.file)
            try verifySchema(temp, entry: entry)
        }
        // What happened to credentials after the backup is read from the file about to be replaced,
        // kept aside until the restore has finished (an unfinished one has replaced it already).
        let replacesControl = selected.contains { $0.kind == .control }
        let replaced = dataDirectory.replacedControlFile
        if replacesControl, !FileManager.default.fileExists(atPath: replaced.path), FileManager.default.fileExists(atPath: dataDirectory.controlFile.path) {
            keepAside(dataDirectory.controlFile, at: replaced)
        }
        let credentials = replacesControl
            ? RestoredCredentials.read(from: FileManager.default.fileExists(atPath: replaced.path) ? replaced : dataDirectory.controlFile) : nil
        if let pending { log("finishing the restore from \(pending.from) begun at \(pending.startedAt), which did not finish") }
        try markPending(DataDirectory.PendingRestore(from: source.path, startedAt: pending?.startedAt ?? ISO8601.string(Date()),
                                                     full: replacesControl || pending?.full == true, workspace: replacesControl ? nil : only?.rawValue))
        // 2. Move each verified copy into place, leaving no stale -wal/-shm from the old file.
        for (_, temp, target) in staged {
            // A file emptied beside its -wal: that -wal may be the last copy of what it held. Kept
            // aside, not deleted with the rest.
            if let problem = DatabaseOpener.emptiedBesideLog(target) {
                let kept = URL(fileURLWithPath: target.path + "-wal.before-restore")
                try FileSystem.removeIfPresent(kept)
                if rename(target.path + "-wal", kept.path) == 0 { log("\(target.lastPathComponent) \(problem.prefix { $0 != ":" }); that -wal is kept as \(kept.path)") }
            }
            for suffix in ["-wal", "-shm", "-journal"] {
                try FileSystem.removeIfPresent(URL(fileURLWithPath: target.path + suffix))
            }
            FileSystem.sync(temp)
            guard rename(temp.path, target.path) == 0 else { throw StorageError.io("cannot move \(temp.path) into place") }
            FileSystem.sync(target.deletingLastPathComponent())
            try afterMove(target)
        }
        staged.removeAll()
        // The pending-work index cannot know what a restored file holds: mark every restored
        // workspace due now, so the scheduler looks at it once and sets the true due time.
        let control = try ControlStore(dataDirectory: dataDirectory, opener: opener)
        let full = selected.contains { $0.kind == .control }
        let restoredIDs = full ? try control.workspaceIDs() : selected.compactMap { $0.workspaceID.flatMap(WorkspaceID.init) }
        // The workspaces whose files came from this backup (a full backup may have skipped one).
        let fromBackup = selected.compactMap { $0.workspaceID.flatMap(WorkspaceID.init) }
        let notKept = "API tokens revoked, users disabled, enabled or deleted, passwords changed and integrations added since the backup "
            + "are as the backup has them; revoke, disable, set and add them again"
        switch credentials {
        case .success(let changes):
            do {
                let restoredWorkspaces = Set(fromBackup.map(\.rawValue))
                for line in try control.write({ db in
                    try changes.apply(in: db, now: Date(), restoredWorkspaces: restoredWorkspaces, backupCreatedAt: manifest.createdAt)
                }) { log(line) }
            } catch {
                log("the changes made after this backup could not be kept (\(error)): " + notKept)
            }
        case .failure(let error):
            log("the control.sqlite this restore replaced could not be read (\(error)), so nothing done after the backup was kept: " + notKept)
        case nil:
            break
        }
        if full, let admins = try? control.read({ db in
            try Int.fetchOne(db, sql: "SELECT count(*) FROM users WHERE is_admin = 1 AND disabled_at IS NULL") ?? 0
        }), admins == 0, (try? control.read({ db in try Int.fetchOne(db, sql: "SELECT count(*) FROM users") ?? 0 })) ?? 0 > 0 {
            log("no appliance admin can sign in now (each is disabled, or was deleted after this backup): enable one with "
                + "sentinel user enable EMAIL, or make one with sentinel user create --admin")
        }
        let now = Date().epoch
        for id in restoredIDs where try control.workspace(id) != nil { try control.markDue(id, at: now) }
        // One workspace's file that cannot be read (one the backup skipped, kept damaged) stops
        // neither the other workspaces' steps nor the report: it is named, and the restore goes on.
        for id in fromBackup {
            do {
                try rewindExportWatermark(of: id, control: control, now: now, log: log)
                // A full backup copies control.sqlite before the workspace files: an integration
                // added or removed between the two copies is routed as its workspace file says.
                try realignIntegrationRouting(of: id, control: control, now: now, full: full, log: log)
            } catch {
                log("workspace \(id): its restored file could not be read to set its export watermark and webhook routes (\(error)); "
                    + "check it with sentinel verify")
            }
        }
        try control.write { db in
            try AuditLog.append("BackupRestored", actor: "cli", subject: only.map { "workspace:\($0)" } ?? "appliance",
                                data: ["backup": source.path, "backup_created_at": manifest.createdAt, "files": String(selected.count)], in: db)
        }
        // Workspaces the backup could not read when it was taken are not in it: said, not passed over.
        for missing in manifest.skipped ?? [] where only == nil || only?.rawValue == missing.workspaceID {
            let id = WorkspaceID(missing.workspaceID)
            let registered = try id.map { try control.workspace($0) != nil } ?? false
            let hasFile = id.map { FileManager.default.fileExists(atPath: dataDirectory.workspaceFile($0).path) } ?? false
            log("workspace \(missing.workspaceID) is not in this backup (it could not be read when the backup was taken: \(missing.reason)); "
                + (!registered ? "it is not registered here"
                   : hasFile ? "it keeps the file it has now (sentinel verify checks it); restore it from another backup if that file is damaged"
                   : "it has no file here and stays offline until it is restored from another backup (sentinel restore --from DIR --workspace \(missing.workspaceID))"))
        }
        try control.close()
        // Finished: the file kept aside first, so a restore cut off between the two, run again,
        // reads the restored control.sqlite (a later state of the backup) for what to keep.
        try FileSystem.removeIfPresent(replaced)
        try FileSystem.removeIfPresent(dataDirectory.restorePendingFile)
        FileSystem.sync(dataDirectory.root)
        return selected
    }

    /// A self-contained copy of control.sqlite as it is (its -wal included), synced; none when it
    /// cannot be read (the restore then says what it could not keep, as before).
    private func keepAside(_ file: URL, at destination: URL) {
        let temp = destination.deletingLastPathComponent().appendingPathComponent(destination.lastPathComponent + ".tmp")
        do {
            try FileSystem.removeIfPresent(temp)
            var configuration = Configuration()
            configuration.readonly = true
            let reader = try DatabaseQueue(path: file.path, configuration: configuration)
            defer { try? reader.close() }
            let copy = try DatabaseQueue(path: temp.path)
            try reader.backup(to: copy)
            try copy.writeWithoutTransaction { db in _ = try db.execute(sql: "PRAGMA journal_mode = DELETE") }
            try copy.close()
            guard chmod(temp.path, 0o600) == 0 else { throw StorageError.io(String(cString: strerror(errno))) }
            FileSystem.sync(temp)
            guard rename(temp.path, destination.path) == 0 else { throw StorageError.io(String(cString: strerror(errno))) }
            FileSystem.sync(destination.deletingLastPathComponent())
        } catch {
            try? FileSystem.removeIfPresent(temp)
        }
    }

    /// The record of a restore under way, written and synced before the first file is moved.
    private func markPending(_ pending: DataDirectory.PendingRestore) throws {
        let file = dataDirectory.restorePendingFile
        let temp = file.deletingLastPathComponent().appendingPathComponent(".\(file.lastPathComponent).tmp")
        do {
            try JSONEncoder.sentinel.encode(pending).write(to: temp)
            FileSystem.sync(temp)
            guard rename(temp.path, file.path) == 0 else { throw StorageError.io(String(cString: strerror(errno))) }
            FileSystem.sync(file.deletingLastPathComponent())
        } catch {
            try? FileSystem.removeIfPresent(temp)
            throw StorageError.io("cannot write \(file.path) (\(FileSystem.reason(error))); nothing was restored")
        }
    }

    /// A restored file may end before the events the analytics export has already carried (they
    /// were appended after the backup and are gone with the restore). New events will take those
    /// sequence numbers again, so the watermark moves back to the restored file's last event:
    /// the next export carries the new events, and the dump tells them from the lost ones by their
    /// event id. Events the file still holds up to the watermark were exported before.
    private func rewindExportWatermark(of id: WorkspaceID, control: ControlStore, now: Double, log: (String) -> Void) throws {
        guard let watermark = try control.read({ db in
            try Int64.fetchOne(db, sql: "SELECT last_seq FROM export_watermarks WHERE workspace_id = ?", arguments: [id.rawValue])
        }) else { return }
        let file = dataDirectory.workspaceFile(id)
        guard FileManager.default.fileExists(atPath: file.path) else { return }
        var configuration = Configuration()
        configuration.readonly = true
        let queue = try DatabaseQueue(path: file.path, configuration: configuration)
        let last = try queue.read { db in try Int64.fetchOne(db, sql: "SELECT coalesce(max(seq), 0) FROM events") ?? 0 }
        try queue.close()
        guard last < watermark else { return }
        try control.write { db in
            try db.execute(sql: "UPDATE export_watermarks SET last_seq = ?, updated_at = ? WHERE workspace_id = ?",
                           arguments: [last, now, id.rawValue])
        }
        log("workspace \(id): the analytics export had carried events up to \(watermark), the restored file ends at \(last); "
            + "the export watermark moved back to \(last), so the next export carries the workspace's new events")
    }

    /// The workspaces a control.sqlite registers; nil when it cannot be read (its checksum check says why).
    private static func workspaceIDs(registeredIn file: URL) -> Set<String>? {
        var configuration = Configuration()
        configuration.readonly = true
        guard let queue = try? DatabaseQueue(path: file.path, configuration: configuration) else { return nil }
        defer { try? queue.close() }
        return try? queue.read { db in Set(try String.fetchAll(db, sql: "SELECT id FROM workspaces")) }
    }

    /// control.sqlite routes each webhook URL to the workspace of its integration; a workspace
    /// restored alone may hold other integrations than the routes say. One added after the backup
    /// is not in the restored file: its route led to a workspace that no longer knew it (every
    /// delivery refused as unknown, and the integration listed nowhere, so not removable); it is
    /// retired now, its webhooks answering 410 Gone as a removed one's do. One removed after the
    /// backup is back in the file with its secrets: routed again, as it was when the backup was taken.
    private func realignIntegrationRouting(of id: WorkspaceID, control: ControlStore, now: Double, full: Bool, log: (String) -> Void) throws {
        let file = dataDirectory.workspaceFile(id)
        guard FileManager.default.fileExists(atPath: file.path) else { return }
        var configuration = Configuration()
        configuration.readonly = true
        let queue = try DatabaseQueue(path: file.path, configuration: configuration)
        let inFile = try queue.read { db in
            try Row.fetchAll(db, sql: "SELECT id, kind, created_at FROM integrations").map { row -> (id: String, kind: String, createdAt: Double) in
                (row["id"], row["kind"], row["created_at"])
            }
        }
        try queue.close()
        let active = inFile.filter { !$0.kind.hasPrefix("removed:") }
        let activeIDs = Set(active.map(\.id))
        var retired: [String] = []
        var routedAgain: [String] = []
        try control.write { db in
            let routed = try String.fetchAll(db, sql: "SELECT id FROM integrations WHERE workspace_id = ?", arguments: [id.rawValue])
            for integration in routed where !activeIDs.contains(integration) {
                try db.execute(sql: "INSERT OR REPLACE INTO retired_integrations (id, workspace_id, retired_at) VALUES (?, ?, ?)",
                               arguments: [integration, id.rawValue, now])
                try db.execute(sql: "DELETE FROM integrations WHERE id = ?", arguments: [integration])
                retired.append(integration)
            }
            let routedIDs = Set(routed)
            for integration in active where !routedIDs.contains(integration.id) {
                // An id routed to another workspace is that workspace's (ids are random; a copy
                // of another appliance's file would be refused as foreign before this).
                guard try String.fetchOne(db, sql: "SELECT workspace_id FROM integrations WHERE id = ?", arguments: [integration.id]) == nil
                else { continue }
                try db.execute(sql: "DELETE FROM retired_integrations WHERE id = ?", arguments: [integration.id])
                try db.execute(sql: "INSERT INTO integrations (id, workspace_id, kind, created_at) VALUES (?, ?, ?, ?)",
                               arguments: [integration.id, id.rawValue, integration.kind, integration.createdAt])
                routedAgain.append(integration.id)
            }
            if !retired.isEmpty || !routedAgain.isEmpty { try control.noteIntegrationChanged(in: db) }
        }
        let when = full ? "while this backup was taken" : "after this backup"
        for integration in retired {
            log("workspace \(id): integration \(integration) was added \(when) and is not in the restored file; its webhooks "
                + "now answer 410 Gone, as a removed integration's do (add the integration again to use it)")
        }
        for integration in routedAgain {
            log("workspace \(id): integration \(integration), " + (full ? "added or removed while this backup was taken, is in the restored file"
                                                                     : "removed after this backup, is back with the restored file")
                + "; its webhooks are routed to the workspace again (remove it again if it should stay removed)")
        }
    }

    /// A backup's file is of the kind its manifest says, holds a schema this binary reads (none
    /// newer), and a workspace file is the file of the workspace it is restored as: checked on the
    /// staged copy, before anything in the data directory is replaced.
    private func verifySchema(_ url: URL, entry: BackupEntry) throws {
        var configuration = Configuration()
        configuration.readonly = true
        let queue = try DatabaseQueue(path: url.path, configuration: configuration)
        defer { try? queue.close() }
        try queue.read { db in
            let marker = entry.kind == .control ? "users" : entry.kind == .workspace ? "workspace_meta" : "journal"
            guard try db.tableExists(marker) else {
                throw StorageError.invalid("backup is damaged: \(entry.file) is not a \(entry.kind.rawValue) file of Sentinel (it has no \(marker) table)")
            }
            let state = try SchemaState.read(db, kind: entry.kind)
            guard state.isInitialized else { throw StorageError.invalid("backup is damaged: \(entry.file) holds no Sentinel schema") }
            if state.isNewerThanBinary {
                throw StorageError.invalid("\(entry.file) was written by a newer Sentinel (schema version \(state.version), migrations "
                    + "\(state.unknown.joined(separator: ", ")) unknown to this binary, which reads up to \(state.knownVersion)); restore with that "
                    + "version of sentinel; nothing was changed")
            }
            if entry.kind == .workspace,
               let stored = try String.fetchOne(db, sql: "SELECT value FROM workspace_meta WHERE key = 'workspace_id'"), stored != entry.workspaceID {
                throw StorageError.invalid("backup is damaged: \(entry.file) is the file of workspace \(stored), not of \(entry.workspaceID ?? "-") "
                                           + "as its manifest says")
            }
        }
    }

    /// An error as one line of at most 300 characters (integrity_check returns one row of many lines).
    static func oneLine(_ error: Any) -> String {
        let text = "\(error)".split(whereSeparator: \.isNewline).joined(separator: "; ")
        return text.count > 300 ? String(text.prefix(299)) + "…" : text
    }

    /// What `PRAGMA integrity_check` finds wrong in a file (its first three lines), nil when it is sound.
    static func integrityProblem(_ url: URL) -> String? {
        var configuration = Configuration()
        configuration.readonly = true
        do {
            let queue = try DatabaseQueue(path: url.path, configuration: configuration)
            defer { try? queue.close() }
            let result = try queue.read { db in try String.fetchAll(db, sql: "PRAGMA integrity_check") }
            return result == ["ok"] ? nil : Self.oneLine("integrity_check: " + result.prefix(3).joined(separator: "; "))
        } catch let error as DatabaseError {
            return error.message ?? "SQLite error \(error.resultCode.rawValue)"
        } catch {
            return "\(error)"
        }
    }

    private func verifyIntegrity(_ url: URL, name: String) throws {
        if let problem = Self.integrityProblem(url) {
            throw StorageError.invalid("backup is damaged: \(name) fails its integrity check (\(problem))")
        }
    }
}
