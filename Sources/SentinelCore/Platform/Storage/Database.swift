import Foundation
import GRDB
import Synchronization

/// Errors of the storage layer. Messages are one line and safe to show an admin.
public enum StorageError: Error, CustomStringConvertible, Equatable {
    case io(String)
    case missingFile(String)
    case corrupt(String)
    case notFound(String)
    case conflict(String)
    case invalid(String)
    /// The file holds migrations this binary does not know (written by a newer Sentinel).
    case newerSchema(String)
    /// A migration failed; the message says in which state the file was left.
    case migrationFailed(String)

    public var description: String {
        switch self {
        case .io(let m), .invalid(let m), .conflict(let m), .newerSchema(let m), .migrationFailed(let m): return m
        case .missingFile(let path): return "database file is missing: \(path)"
        case .corrupt(let m): return "database file is unreadable: \(m)"
        case .notFound(let m): return m
        }
    }
}

/// The kinds of SQLite file the appliance keeps; each has its own migration history.
public enum DatabaseKind: String, Sendable, Codable {
    case control, workspace
    /// `intake-journal.sqlite`: deliveries acknowledged and not yet in their workspace file (`IntakeJournal`).
    case journal

    var migrator: DatabaseMigrator {
        switch self {
        case .control: return ControlSchema.migrator
        case .workspace: return WorkspaceSchema.migrator
        case .journal: return IntakeJournal.migrator
        }
    }
}

/// Opens SQLite files the one way the appliance does: WAL, busy timeout, foreign keys, the
/// configured `synchronous` level applied after GRDB's own setup, migrations applied on open.
public struct DatabaseOpener: Sendable {
    public var synchronous: SentinelConfig.SynchronousMode
    public var busyTimeout: TimeInterval
    /// Copy a file into `data/backups/pre-upgrade-FROM-TO/` before migrating it (`storage.pre_upgrade_snapshot`).
    public var preUpgradeSnapshot: Bool
    /// Free bytes on the disk holding a path (checked before a pre-upgrade snapshot).
    public var freeSpace: @Sendable (URL) -> Int64?
    /// SQLite's `journal_size_limit`: a WAL larger than this is truncated after a checkpoint resets it.
    public var walMaxBytes: Int

    public init(synchronous: SentinelConfig.SynchronousMode = .full, busyTimeout: TimeInterval = 5, preUpgradeSnapshot: Bool = true,
                freeSpace: @escaping @Sendable (URL) -> Int64? = PreUpgradeSnapshot.freeSpace, walMaxBytes: Int = 64 << 20) {
        self.walMaxBytes = walMaxBytes
        self.synchronous = synchronous
        self.busyTimeout = busyTimeout
        self.preUpgradeSnapshot = preUpgradeSnapshot
        self.freeSpace = freeSpace
    }

    public init(config: SentinelConfig) {
        self.init(synchronous: config.storage.synchronous,
                  busyTimeout: Double(config.storage.busyTimeoutMilliseconds) / 1000,
                  preUpgradeSnapshot: config.storage.preUpgradeSnapshot, walMaxBytes: config.storage.walMaxBytes)
    }

    /// Opens an existing file (or creates it when `create` is true) and migrates it (see
    /// `migrateFile`: a file newer than this binary is refused, a file with pending migrations is
    /// first copied into `data/backups/pre-upgrade-FROM-TO/`). control.sqlite
    /// gets a connection pool (HTTP requests read it concurrently); a workspace file gets one
    /// connection, because its actor already serialises access, and a cold open costs half as much.
    public func open(_ url: URL, kind: DatabaseKind, create: Bool = false, migrate: Bool = true, label: String? = nil) throws -> any DatabaseWriter {
        if !create && !FileManager.default.fileExists(atPath: url.path) {
            throw StorageError.missingFile(url.path)
        }
        let existed = FileManager.default.fileExists(atPath: url.path)
        if existed, let problem = Self.emptiedBesideLog(url) {
            throw StorageError.corrupt(kind == .journal ? Self.journalDamagedMessage(url, problem) : "\(url.lastPathComponent) \(problem)")
        }
        var configuration = Configuration()
        configuration.busyMode = .timeout(busyTimeout)
        configuration.foreignKeysEnabled = true
        configuration.label = label ?? kind.rawValue
        let writer: any DatabaseWriter
        do {
            switch kind {
            case .control:
                configuration.maximumReaderCount = 4
                writer = try DatabasePool(path: url.path, configuration: configuration)
            case .workspace, .journal:
                // WAL, as the pool sets it: the CLI and online backups read while the server writes.
                let isNew = !FileManager.default.fileExists(atPath: url.path)
                let checkFirst = existed
                configuration.prepareDatabase { db in
                    // An empty or foreign file is refused before anything is written to it (it was
                    // switched to WAL, and an empty one given a header, and then refused). The intake
                    // journal too: one emptied by hand was set up anew, and the deliveries it had
                    // acknowledged were gone without a word (serve creates it whole, `IntakeJournal`).
                    if checkFirst, try !db.tableExists("grdb_migrations") {
                        throw StorageError.corrupt(kind == .journal ? Self.journalDamagedMessage(url, "holds no Sentinel schema (emptied or replaced)")
                                                                   : Self.noSchemaMessage(url))
                    }
                    // Before the first table of a new file: freed pages can be given back without
                    // rewriting it (`Retention` converts older files once).
                    if isNew { try db.execute(sql: "PRAGMA auto_vacuum = INCREMENTAL") }
                    _ = try String.fetchOne(db, sql: "PRAGMA journal_mode = WAL")
                }
                writer = try DatabaseQueue(path: url.path, configuration: configuration)
            }
            let mode = synchronous.rawValue.uppercased()
            try writer.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA synchronous = \(mode)")
                try db.execute(sql: "PRAGMA journal_size_limit = \(walMaxBytes)")
            }
            do {
                if existed { try Self.checkHoldsItsOwnData(writer, file: url, kind: kind) }
                if migrate {
                    try migrateFile(writer, file: url, kind: kind, migrator: kind.migrator)
                } else {
                    let state = try writer.read { db in try SchemaState.read(db, kind: kind) }
                    if state.isNewerThanBinary { throw StorageError.newerSchema(state.newerMessage(file: url)) }
                }
                if existed, kind != .control {
                    let missing = try writer.read { db in try ExpectedSchema.missingTables(db, kind: kind) }
                    if !missing.isEmpty {
                        throw StorageError.corrupt(kind == .journal
                            ? Self.journalDamagedMessage(url, "lacks the table(s) \(missing.joined(separator: ", ")) of its schema (emptied or replaced)")
                            : ExpectedSchema.missingMessage(url, missing))
                    }
                }
            } catch {
                try? writer.close()
                throw error
            }
        } catch let error as DatabaseError where [.SQLITE_NOTADB, .SQLITE_CORRUPT].contains(error.resultCode) {
            // The journal's own words: what it may have held, and where a good copy is.
            if kind == .journal { throw StorageError.corrupt(Self.journalDamagedMessage(url, "is damaged (\(error.message ?? "not a database"))")) }
            throw StorageError.corrupt("\(url.lastPathComponent): \(error.message ?? "not a database")")
        }
        return writer
    }

    /// An existing file is one Sentinel wrote, for this place: a workspace file (always complete
    /// when it is renamed into place) with no schema is empty or foreign, and control.sqlite with
    /// none beside workspace files lost the appliance's users and workspaces. Either was set up as
    /// a new, empty file, its tenant's data silently gone from the API. A workspace file names its
    /// workspace (`workspace_meta`): another workspace's file under this one's name (copied or
    /// linked) would serve one tenant's data to another.
    static func checkHoldsItsOwnData(_ reader: any DatabaseReader, file url: URL, kind: DatabaseKind) throws {
        let (applied, storedID) = try reader.read { db -> ([String], String?) in
            let applied = try kind.migrator.appliedIdentifiers(db)
            guard kind == .workspace, try db.tableExists("workspace_meta") else { return (Array(applied), nil) }
            return (Array(applied), try String.fetchOne(db, sql: "SELECT value FROM workspace_meta WHERE key = 'workspace_id'"))
        }
        switch kind {
        case .workspace:
            guard !applied.isEmpty else { throw StorageError.corrupt(noSchemaMessage(url)) }
            let name = url.deletingPathExtension().lastPathComponent
            if let storedID, WorkspaceID(name) != nil, storedID != name {
                throw StorageError.corrupt("\(url.lastPathComponent) is the file of workspace \(storedID), not of \(name) (copied or linked "
                                           + "in its place); restore this workspace's own file from a backup (sentinel restore --from BACKUP --workspace \(name))")
            }
        case .control:
            let root = DataDirectory(holding: url, kind: .control)
            let workspaceFiles = ((try? FileManager.default.contentsOfDirectory(atPath: root.workspacesDirectory.path)) ?? [])
                .filter { $0.hasSuffix(".sqlite") && WorkspaceID(String($0.dropLast(7))) != nil }
            if applied.isEmpty, !workspaceFiles.isEmpty {
                throw StorageError.corrupt("\(url.lastPathComponent) holds no Sentinel schema while workspaces/ holds \(workspaceFiles.count) "
                                           + "workspace file(s): the appliance's users and workspaces are gone from it; restore it from a backup "
                                           + "(sentinel restore --from BACKUP)")
            }
        case .journal:
            return
        }
    }

    /// What a damaged intake journal is told: it may have held deliveries acknowledged to the platform.
    static func journalDamagedMessage(_ url: URL, _ problem: String) -> String {
        "\(url.lastPathComponent) \(problem): webhook deliveries it acknowledged and had not yet applied to their "
            + "workspace files may be lost. Restore it from the file system's backup or its Litestream replica; if it is known to have "
            + "held none, move it aside with its -wal and -shm and start again (the catch-up sweep reviews what webhooks brought meanwhile)"
    }

    /// A database file emptied (truncated to nothing) beside a -wal that still holds pages: SQLite,
    /// opening it even read-only, deletes that -wal, the last copy of what it held (doctor did,
    /// before it said the file held no schema). Said, and the file not opened.
    public static func emptiedBesideLog(_ url: URL) -> String? {
        let fm = FileManager.default
        guard let size = (try? fm.attributesOfItem(atPath: url.path))?[.size] as? NSNumber, size.int64Value == 0,
              let wal = (try? fm.attributesOfItem(atPath: url.path + "-wal"))?[.size] as? NSNumber, wal.int64Value > 0 else { return nil }
        return "is empty while its -wal holds \(wal.int64Value) bytes (emptied by hand?): it is not opened, which would delete that -wal "
            + "and what it holds; copy both aside before anything else"
    }

    static func noSchemaMessage(_ url: URL) -> String {
        "\(url.lastPathComponent) holds no Sentinel schema: an empty or foreign file stands in place of this "
            + "workspace's file; restore it from a backup (sentinel restore --from BACKUP --workspace ID)"
    }

    /// The applied migrations of a file, newest last; its "schema version".
    public static func schemaVersion(_ reader: any DatabaseReader, kind: DatabaseKind) throws -> String {
        try reader.read { db in
            try kind.migrator.appliedIdentifiers(db).sorted().last ?? "none"
        }
    }
}

extension Date {
    /// Seconds since 1970 as stored in SQLite REAL columns.
    var epoch: Double { timeIntervalSince1970 }
}

/// The tables a file at its schema version holds: those a new file gets from the migrations the
/// file has applied, made once per version in memory. A table missing from a file that says it
/// applied them (dropped by hand, or lost with the pages that held it) made every request that
/// reads it a 500 while `verify` and `doctor` called the file fine.
enum ExpectedSchema {
    private static let tables = Mutex<[String: Set<String>]>([:])

    /// The tables of `db`'s schema version that it lacks, by name; none for a file newer than
    /// this binary (its schema is not known here).
    static func missingTables(_ db: Database, kind: DatabaseKind) throws -> [String] {
        let migrator = kind.migrator
        let applied = try migrator.appliedIdentifiers(db)
        guard let last = migrator.migrations.last(where: { applied.contains($0) }),
              applied.allSatisfy({ migrator.migrations.contains($0) }) else { return [] }
        let expected = try expectedTables(kind: kind, through: last)
        let present = Set(try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table'"))
        return expected.subtracting(present).sorted()
    }

    static func missingMessage(_ url: URL, _ missing: [String]) -> String {
        "\(url.lastPathComponent) lacks the table(s) \(missing.prefix(5).joined(separator: ", ")) its schema version has; "
            + "restore it from a backup (sentinel restore --from BACKUP --workspace ID)"
    }

    private static func expectedTables(kind: DatabaseKind, through last: String) throws -> Set<String> {
        let key = "\(kind.rawValue) \(last)"
        if let known = tables.withLock({ $0[key] }) { return known }
        let scratch = try DatabaseQueue()
        try kind.migrator.migrate(scratch, upTo: last)
        let names = Set(try scratch.read { db in try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table'") })
        tables.withLock { $0[key] = names }
        return names
    }
}
