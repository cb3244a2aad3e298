import Foundation
import GRDB

extension DatabaseKind {
    /// Where a file of this kind lives in a data directory (and in a backup or snapshot folder).
    func relativePath(of url: URL) -> String {
        switch self {
        case .control: return "control.sqlite"
        case .journal: return "intake-journal.sqlite"
        case .workspace: return "workspaces/\(url.lastPathComponent)"
        }
    }

    /// The migrations this binary knows for the kind, in order.
    public var knownMigrations: [String] { migrator.migrations }
    /// The newest schema version this binary can serve: the number of migrations it knows.
    public var knownVersion: Int { knownMigrations.count }
}

/// A file's schema version against what this binary knows. A file's schema version is the number
/// of migrations applied to it (the identifiers in GRDB's `grdb_migrations` table, numbered from
/// 0001); a file holding an identifier this binary does not know was written by a newer Sentinel.
public struct SchemaState: Sendable, Codable, Equatable {
    public var kind: DatabaseKind
    /// Every applied migration, sorted (known or not).
    public var applied: [String]
    /// Known to this binary and not applied yet, in order.
    public var pending: [String]
    /// Applied but unknown to this binary: the file is newer than the binary.
    public var unknown: [String]
    public var knownVersion: Int

    public var version: Int { applied.count }
    public var isNewerThanBinary: Bool { !unknown.isEmpty }
    /// Applied migrations exist (a file just created has none and needs no snapshot).
    public var isInitialized: Bool { !applied.isEmpty }

    public static func read(_ db: Database, kind: DatabaseKind) throws -> SchemaState {
        try read(db, kind: kind, migrator: kind.migrator)
    }

    static func read(_ db: Database, kind: DatabaseKind, migrator: DatabaseMigrator) throws -> SchemaState {
        let applied = try migrator.appliedIdentifiers(db)
        let known = migrator.migrations
        return SchemaState(kind: kind, applied: applied.sorted(), pending: known.filter { !applied.contains($0) },
                           unknown: applied.filter { !known.contains($0) }.sorted(), knownVersion: known.count)
    }

    /// Reads the state of a file without changing it (no migration, no WAL setup).
    public static func read(file url: URL, kind: DatabaseKind, busyTimeout: TimeInterval = 5) throws -> SchemaState {
        let queue = try readOnlyQueue(url, busyTimeout: busyTimeout)
        defer { try? queue.close() }
        return try queue.read { db in try read(db, kind: kind) }
    }

    /// A read-only connection to a file, for looking at it without changing it.
    static func readOnlyQueue(_ url: URL, busyTimeout: TimeInterval) throws -> DatabaseQueue {
        if let problem = DatabaseOpener.emptiedBesideLog(url) { throw StorageError.corrupt("\(url.lastPathComponent) \(problem)") }
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(busyTimeout)
        return try DatabaseQueue(path: url.path, configuration: configuration)
    }

    /// The admin's message for a file newer than this binary: which file, which version, what to do.
    public func newerMessage(file url: URL) -> String {
        let root = DataDirectory(holding: url, kind: kind)
        let relative = kind.relativePath(of: url)
        // The snapshot the newer binary took of this file before migrating it, if it is there.
        let folders = ((try? FileManager.default.contentsOfDirectory(atPath: root.backupsDirectory.path)) ?? [])
            .filter { $0.hasPrefix("pre-upgrade-") && $0.hasSuffix("-\(version)") }
            .filter { FileManager.default.fileExists(atPath: root.backupsDirectory.appendingPathComponent($0).appendingPathComponent(relative).path) }
            .sorted()
        let snapshot = folders.last.map { "sentinel restore --from \(root.backupsDirectory.appendingPathComponent($0).path)" }
            ?? "sentinel restore --from \(root.backupsDirectory.path)/pre-upgrade-FROM-\(version), or a backup taken before the upgrade"
        return "\(url.path) is at \(kind.rawValue) schema version \(version) (it holds migration(s) \(unknown.joined(separator: ", ")) "
            + "that this binary does not know); sentinel \(SentinelVersion.current) knows \(kind.rawValue) schema versions up to \(knownVersion). "
            + "The file was written by a newer Sentinel: run that newer binary, or restore the pre-upgrade snapshot with this one (\(snapshot))"
    }
}

/// The copies taken before a migration: every file about to be migrated is first copied with
/// SQLite's online backup API into `data/backups/pre-upgrade-FROM-TO/` (FROM and TO: the file's
/// schema versions before and after), with a manifest, so `sentinel restore --from` that folder
/// (run by the previous binary) undoes the upgrade. Workspace files are migrated when first opened
/// after an upgrade, so their copies join the folder of their versions then.
public enum PreUpgradeSnapshot {
    /// Free bytes of the file system holding `url` (nil when unknown).
    @Sendable public static func freeSpace(_ url: URL) -> Int64? {
        var probe = url
        while !FileManager.default.fileExists(atPath: probe.path), probe.pathComponents.count > 1 { probe.deleteLastPathComponent() }
        let attributes = try? FileManager.default.attributesOfFileSystem(forPath: probe.path)
        return (attributes?[.systemFreeSize] as? NSNumber)?.int64Value
    }

    /// Bytes a copy of the file needs at most: the file and its WAL.
    static func size(of url: URL) -> Int64 {
        ["", "-wal"].reduce(Int64(0)) { sum, suffix in
            let attributes = try? FileManager.default.attributesOfItem(atPath: url.path + suffix)
            return sum + ((attributes?[.size] as? NSNumber)?.int64Value ?? 0)
        }
    }

    /// Refuses when the disk holding `directory` has less than `needed` bytes free.
    static func checkFreeSpace(needed: Int64, at directory: URL, files: String, freeSpace: @Sendable (URL) -> Int64?) throws {
        guard let free = freeSpace(directory), free < needed else { return }
        throw StorageError.io("not enough free space for the pre-upgrade snapshot of \(files): it needs \(needed) bytes, "
            + "\(free) are free on the disk holding \(directory.path); nothing was migrated. Free some space, "
            + "or set storage.pre_upgrade_snapshot: false to migrate without a snapshot")
    }

    /// Copies the open file into the pre-upgrade folder of its versions and records it in the
    /// folder's manifest. Returns the copy.
    static func take(_ reader: some DatabaseReader, file url: URL, kind: DatabaseKind, state: SchemaState,
                     freeSpace: @Sendable (URL) -> Int64?) throws -> URL {
        let data = DataDirectory(holding: url, kind: kind)
        let folder = data.preUpgradeDirectory(from: state.version, to: state.knownVersion)
        try checkFreeSpace(needed: size(of: url), at: data.root, files: url.lastPathComponent, freeSpace: freeSpace)
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("workspaces"), withIntermediateDirectories: true)
        let lock = try FileLock.acquire(folder.appendingPathComponent(".lock"))
        defer { _ = lock }
        let workspace = kind == .workspace ? WorkspaceID(url.deletingPathExtension().lastPathComponent) : nil
        let relative = kind.relativePath(of: url)
        let service = BackupService(dataDirectory: data, opener: DatabaseOpener())
        let entry = try service.copy(reader: reader, kind: kind, workspace: workspace, to: folder, relative: relative)
        let manifestURL = folder.appendingPathComponent(BackupManifest.fileName)
        var manifest = FileManager.default.contents(atPath: manifestURL.path).flatMap { try? JSONDecoder.sentinel.decode(BackupManifest.self, from: $0) }
            ?? BackupManifest(format: 1, createdAt: ISO8601.string(Date()), sentinelVersion: SentinelVersion.current, files: [])
        manifest.files.removeAll { $0.file == entry.file }
        manifest.files.append(entry)
        manifest.files.sort { ($0.kind == .control ? "" : $0.file) < ($1.kind == .control ? "" : $1.file) }
        try JSONEncoder.sentinelPretty.encode(manifest).write(to: manifestURL, options: .atomic)
        FileSystem.sync(manifestURL)
        FileSystem.sync(folder)
        return folder.appendingPathComponent(relative)
    }
}

extension DatabaseOpener {
    /// Migrates an open file: refuses a file newer than the binary, snapshots it first when it has
    /// migrations pending (and was migrated before), and on a failed migration puts the file back
    /// as it was (from the snapshot; without one, GRDB has rolled back the failing step) and says so.
    func migrateFile(_ writer: any DatabaseWriter, file url: URL, kind: DatabaseKind, migrator: DatabaseMigrator) throws {
        let state = try writer.read { db in try SchemaState.read(db, kind: kind, migrator: migrator) }
        if state.isNewerThanBinary { throw StorageError.newerSchema(state.newerMessage(file: url)) }
        guard !state.pending.isEmpty else { return }
        var snapshot: URL?
        if preUpgradeSnapshot && state.isInitialized {
            snapshot = try PreUpgradeSnapshot.take(writer, file: url, kind: kind, state: state, freeSpace: freeSpace)
        }
        do {
            try migrator.migrate(writer)
        } catch {
            var outcome: String
            if let snapshot {
                do {
                    var configuration = Configuration()
                    configuration.readonly = true
                    let copy = try DatabaseQueue(path: snapshot.path, configuration: configuration)
                    try copy.backup(to: writer)
                    try copy.close()
                    outcome = "the file was put back as it was before (schema version \(state.version), from \(snapshot.path))"
                } catch let restoreError {
                    let folder = DataDirectory(holding: url, kind: kind).preUpgradeDirectory(from: state.version, to: state.knownVersion)
                    let why = (restoreError as? DatabaseError).map(BackupService.copyFailure) ?? "\(restoreError)"
                    outcome = "putting the file back from \(snapshot.path) failed too (\(why)): stop Sentinel and run sentinel restore --from \(folder.path)"
                }
            } else {
                let now = (try? writer.read { db in try SchemaState.read(db, kind: kind, migrator: migrator) })?.version ?? state.version
                outcome = now == state.version
                    ? "the failing migration was rolled back: the file is as it was (schema version \(state.version))"
                    : "the failing migration was rolled back; earlier steps of this upgrade stay applied (schema version \(now), was \(state.version); no pre-upgrade snapshot was taken)"
            }
            let reason = "\(error)".split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
            throw StorageError.migrationFailed("\(url.path): migrating the \(kind.rawValue) schema from version \(state.version) to \(state.knownVersion) failed (\(reason)); \(outcome)")
        }
    }
}

/// The schema version of one file of a data directory, read without changing it.
public struct SchemaFileStatus: Sendable, Codable, Equatable {
    public var file: String
    public var kind: DatabaseKind
    public var workspaceID: String?
    public var bytes: Int64
    /// nil when the file is missing or cannot be read (`problem` says why).
    public var state: SchemaState?
    public var problem: String?

    public var needsMigration: Bool { state.map { !$0.pending.isEmpty && !$0.isNewerThanBinary } ?? false }
    public var isNewerThanBinary: Bool { state?.isNewerThanBinary ?? false }
}

extension PreUpgradeSnapshot {
    /// The schema state of control.sqlite and of every workspace file it registers, read only.
    public static func survey(_ data: DataDirectory, busyTimeout: TimeInterval = 5) -> [SchemaFileStatus] {
        var files: [SchemaFileStatus] = []
        let control = data.controlFile
        guard FileManager.default.fileExists(atPath: control.path) else { return [] }
        files.append(status(control, kind: .control, workspace: nil, busyTimeout: busyTimeout))
        var ids: [String] = []
        do {
            let queue = try SchemaState.readOnlyQueue(control, busyTimeout: busyTimeout)
            defer { try? queue.close() }
            ids = try queue.read { db in
                try db.tableExists("workspaces") ? String.fetchAll(db, sql: "SELECT id FROM workspaces ORDER BY id") : []
            }
        } catch {
            files[0].problem = files[0].problem ?? "cannot list workspaces: \(error)"
        }
        for raw in ids {
            guard let id = WorkspaceID(raw) else { continue }
            files.append(status(data.workspaceFile(id), kind: .workspace, workspace: raw, busyTimeout: busyTimeout))
        }
        return files
    }

    private static func status(_ url: URL, kind: DatabaseKind, workspace: String?, busyTimeout: TimeInterval) -> SchemaFileStatus {
        var status = SchemaFileStatus(file: url.path, kind: kind, workspaceID: workspace, bytes: size(of: url))
        guard FileManager.default.fileExists(atPath: url.path) else {
            status.problem = "the file is missing"
            return status
        }
        do { status.state = try SchemaState.read(file: url, kind: kind, busyTimeout: busyTimeout) } catch {
            status.problem = "cannot read its schema version: \(error)"
            return status
        }
        // What `DatabaseOpener` refuses to open: a workspace file with no schema (empty or another
        // program's) or another workspace's file in its place; control.sqlite with no schema while
        // workspace files exist.
        do {
            let queue = try SchemaState.readOnlyQueue(url, busyTimeout: busyTimeout)
            defer { try? queue.close() }
            try DatabaseOpener.checkHoldsItsOwnData(queue, file: url, kind: kind)
        } catch let error as StorageError {
            status.problem = "\(error)"
        } catch {
            status.problem = "cannot be read: \(error)"
        }
        return status
    }

    /// Refuses when the disk lacks room for pre-upgrade snapshots of every file in `files`.
    public static func checkFreeSpace(for files: [SchemaFileStatus], in data: DataDirectory, opener: DatabaseOpener) throws {
        let due = files.filter { $0.needsMigration && ($0.state?.isInitialized ?? false) }
        guard opener.preUpgradeSnapshot, !due.isEmpty else { return }
        try checkFreeSpace(needed: due.reduce(0) { $0 + $1.bytes }, at: data.root,
                           files: "\(due.count) file(s)", freeSpace: opener.freeSpace)
    }
}
