import Foundation
import GRDB

/// A workspace as shown to admins: its registry entry plus the state of its file.
public struct WorkspaceSummary: Sendable, Codable, Equatable {
    public var id: String
    public var name: String
    public var plan: String
    public var createdAt: String
    public var file: String
    public var fileBytes: Int64?
    public var status: String
    public var schemaVersion: String?
    public var jobs: [String: Int]?
    public var events: Int?
}

/// Creating and describing workspaces. Creation makes the file first, fully migrated and renamed
/// into place under a lock, and only then registers it: a half-created file is never visible.
public struct WorkspaceService: Sendable {
    public let dataDirectory: DataDirectory
    public let control: ControlStore
    public let opener: DatabaseOpener
    /// Replication settings: with Litestream set up, creating and deleting a workspace keep its
    /// configuration current (`LitestreamConfig.refresh`). nil: left alone (read-only commands).
    public let litestream: SentinelConfig.Litestream?

    public init(dataDirectory: DataDirectory, control: ControlStore, opener: DatabaseOpener, litestream: SentinelConfig.Litestream? = nil) {
        self.dataDirectory = dataDirectory
        self.control = control
        self.opener = opener
        self.litestream = litestream
    }

    /// The lock that orders workspace creation, deletion and the Litestream files that list them.
    public func workspacesLock() throws -> FileLock {
        try FileLock.acquire(dataDirectory.workspacesDirectory.appendingPathComponent(".create.lock"))
    }

    /// Brings the Litestream files up to date with the registered workspaces, as `serve` does at
    /// start (a newer version may replicate more databases than the files of an older one list).
    /// nil when Litestream is not set up (see `LitestreamConfig.refresh`).
    @discardableResult
    public func refreshReplication() throws -> (written: [String], removed: [String])? {
        guard let litestream else { return nil }
        let lock = try workspacesLock()
        defer { _ = lock }
        return try LitestreamConfig.refresh(dataDirectory: dataDirectory, workspaces: try control.workspaces().compactMap(\.workspaceID),
                                            settings: litestream)
    }

    /// Rewrites the Litestream files for these workspaces (see `LitestreamConfig.refresh`); called under `workspacesLock`.
    func refreshReplication(_ workspaces: [WorkspaceID]) throws {
        guard let litestream else { return }
        try LitestreamConfig.refresh(dataDirectory: dataDirectory, workspaces: workspaces, settings: litestream)
    }

    /// Creates a workspace file and registers it (audited `WorkspaceCreated` by `actor`).
    public func create(name rawName: String, by actor: String = "cli") throws -> WorkspaceRecord {
        let name = try Self.validName(rawName)
        let lock = try workspacesLock()
        defer { _ = lock }
        if try control.workspace(named: name) != nil {
            throw StorageError.conflict("a workspace named '\(name)' already exists")
        }
        let id = WorkspaceID.generate()
        let final = dataDirectory.workspaceFile(id)
        let temp = dataDirectory.workspacesDirectory.appendingPathComponent(".\(id.rawValue).creating.sqlite")
        try removeDatabaseFiles(temp)
        do {
            // The file is invisible until renamed and is fsynced before the rename, so its own
            // commits need not wait for the disk.
            var fast = opener
            fast.synchronous = .off
            let database = try fast.open(temp, kind: .workspace, create: true, label: id.rawValue)
            try database.write { db in
                try db.execute(sql: "INSERT INTO workspace_meta (key, value) VALUES ('workspace_id', ?), ('name', ?)",
                               arguments: [id.rawValue, name])
            }
            try database.writeWithoutTransaction { db in _ = try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
            try database.close()
            try removeDatabaseFiles(temp, keepMain: true)
            FileSystem.sync(temp)
            guard Glibc.rename(temp.path, final.path) == 0 else { throw StorageError.io("cannot move workspace file into place") }
            FileSystem.sync(dataDirectory.workspacesDirectory)
            // Replicated from its first write: listed for Litestream before it is registered (a
            // failure here creates nothing).
            try refreshReplication(try control.workspaces().compactMap(\.workspaceID) + [id])
            try control.insertWorkspace(id: id, name: name, by: actor)
        } catch {
            try? removeDatabaseFiles(temp)
            if FileManager.default.fileExists(atPath: final.path), (try? control.workspace(id)) == nil {
                try? removeDatabaseFiles(final)
                try? refreshReplication(try control.workspaces().compactMap(\.workspaceID))
            }
            throw error
        }
        guard let record = try control.workspace(id) else { throw StorageError.io("workspace vanished after creation") }
        return record
    }

    public func list() throws -> [WorkspaceRecord] { try control.workspaces() }

    /// Resolves an id or a name.
    public func find(_ idOrName: String) throws -> WorkspaceRecord {
        if let id = WorkspaceID(idOrName), let record = try control.workspace(id) { return record }
        if let record = try control.workspace(named: idOrName) { return record }
        throw WorkspaceError.notFound(idOrName)
    }

    /// Reads the file (read-only) to report its state; a damaged file shows as such, never throws.
    public func summary(_ record: WorkspaceRecord, detailed: Bool) -> WorkspaceSummary {
        let url = record.workspaceID.map(dataDirectory.workspaceFile) ?? dataDirectory.workspacesDirectory
        let attributes = try? FileManager.default.attributesOfItem(atPath: url.path)
        var summary = WorkspaceSummary(id: record.id, name: record.name, plan: record.plan,
                                       createdAt: ISO8601.string(Date(timeIntervalSince1970: record.createdAt)),
                                       file: url.path, fileBytes: (attributes?[.size] as? NSNumber)?.int64Value,
                                       status: DataDirectory.databaseAccessProblem(url) != nil ? "unreadable" : attributes == nil ? "missing" : "ok")
        // Emptied beside its -wal: not opened (SQLite would delete that -wal), and not "ok".
        if summary.status == "ok", DatabaseOpener.emptiedBesideLog(url) != nil { summary.status = "corrupt" }
        guard detailed, summary.status == "ok" else { return summary }
        do {
            var configuration = Configuration()
            configuration.readonly = true
            configuration.busyMode = .timeout(opener.busyTimeout)
            let queue = try DatabaseQueue(path: url.path, configuration: configuration)
            defer { try? queue.close() }
            try queue.read { db in
                summary.schemaVersion = try WorkspaceSchema.migrator.appliedIdentifiers(db).sorted().last
                let rows = try Row.fetchAll(db, sql: "SELECT state, count(*) AS n FROM jobs GROUP BY state")
                summary.jobs = Dictionary(uniqueKeysWithValues: rows.map { ($0["state"] as String, $0["n"] as Int) })
                summary.events = try Int.fetchOne(db, sql: "SELECT count(*) FROM events")
            }
        } catch {
            summary.status = "corrupt"
        }
        return summary
    }

    func removeDatabaseFiles(_ url: URL, keepMain: Bool = false) throws {
        for suffix in keepMain ? ["-wal", "-shm", "-journal"] : ["", "-wal", "-shm", "-journal"] {
            try FileSystem.removeIfPresent(URL(fileURLWithPath: url.path + suffix))
        }
    }
}

extension WorkspaceService {
    /// Creates a workspace with its first owner (the API's `createWorkspace` and the console's form):
    /// the user with `ownerEmail` when given (an unknown email is not found and creates nothing), else
    /// `creator`. Returns the workspace, its id and the owner.
    public func create(name: String, ownerEmail: String?, creator: User, identity: IdentityService) throws -> (WorkspaceRecord, WorkspaceID, User) {
        var owner = creator
        if let email = ownerEmail {
            guard let found = try identity.user(email: email) else { throw IdentityError(.notFound, "no user with email \(email)") }
            owner = found
        }
        let record = try create(name: name, by: creator.email)
        guard let id = record.workspaceID else { throw StorageError.invalid("the new workspace has a malformed id \(record.id)") }
        // Who was made its first owner, beside `WorkspaceCreated` in the appliance's log (it was recorded nowhere).
        try identity.setRole(.owner, userID: owner.id, in: id,
                             audit: ("WorkspaceOwnerSet", creator.email, ["email": owner.email, "role": WorkspaceRole.owner.rawValue]))
        return (record, id, owner)
    }
}
