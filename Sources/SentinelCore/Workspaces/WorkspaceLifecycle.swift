import Foundation
import GRDB

/// What `WorkspaceService.delete` did.
public struct WorkspaceDeletion: Sendable, Codable, Equatable {
    public var id: String
    public var name: String
    /// The final backup (restorable with `sentinel restore --from DIR --workspace ID` once the
    /// workspace is registered again; `workspace.json` beside it holds the control rows).
    public var backup: String
    public var integrations: [String]
    public var members: Int
    /// The dump (in `data/exports`) that carried the events the nightly export had not carried yet,
    /// and how many: nil and 0 when there were none.
    public var export: String?
    public var exportedEvents: Int = 0
    /// Why that export stopped short (an event PostgreSQL would refuse): the events from there on
    /// are in the final backup only.
    public var exportError: String?

    enum CodingKeys: String, CodingKey {
        case id, name, backup, integrations, members, export
        case exportedEvents = "exported_events"
        case exportError = "export_error"
    }
}

/// Renaming and deleting workspaces. Each change writes its audit event (`WorkspaceRenamed`,
/// `WorkspaceDeleted`, subject `workspace:<id>`) in control.sqlite, in the transaction that makes it.
extension WorkspaceService {
    /// The longest workspace name (the API document's `maxLength` for it).
    public static let maxNameLength = 100

    /// A name as stored: trimmed and in Unicode's composed form (NFC), so `café` typed two ways is
    /// one name, not two workspaces that display alike.
    public static func validName(_ rawName: String) throws -> String {
        let name = rawName.trimmingCharacters(in: .whitespacesAndNewlines).precomposedStringWithCanonicalMapping
        guard !name.isEmpty, TextRules.problem(name, maxLength: maxNameLength) == nil, !name.contains(where: \.isNewline) else {
            throw StorageError.invalid("workspace name must be 1 to \(maxNameLength) printable characters")
        }
        // Commands take a workspace's id or its name, the id first: a name shaped like an id could
        // never be used, and would read as another workspace's id in every list.
        guard WorkspaceID(name) == nil else {
            throw StorageError.invalid("workspace name '\(name)' has the shape of a workspace id (ws_ and 16 letters or digits); choose another name")
        }
        return name
    }

    /// Renames a workspace (its id, file and webhook URLs stay). Safe while `serve` runs: the name
    /// lives in control.sqlite only.
    @discardableResult
    public func rename(_ id: WorkspaceID, to rawName: String, by actor: String, now: Date = Date()) throws -> WorkspaceRecord {
        let name = try Self.validName(rawName)
        do {
            return try control.write { db in
                guard let old = try WorkspaceRecord.fetchOne(db, sql: "SELECT * FROM workspaces WHERE id = ?", arguments: [id.rawValue]) else {
                    throw WorkspaceError.notFound(id.rawValue)
                }
                if old.name == name { return old }
                try db.execute(sql: "UPDATE workspaces SET name = ? WHERE id = ?", arguments: [name, id.rawValue])
                try AuditLog.append("WorkspaceRenamed", actor: actor, subject: "workspace:\(id)", data: ["from": old.name, "to": name], in: db, now: now)
                var renamed = old
                renamed.name = name
                return renamed
            }
        } catch let error as DatabaseError where error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE {
            throw StorageError.conflict("a workspace named '\(name)' already exists")
        }
    }

    /// Deletes a workspace: a final backup into `data/backups/deleted/ID-TIME/` first (nothing is
    /// removed if it fails), then, in one control.sqlite transaction, its registry row with its
    /// memberships, integrations' routing rows, pending-work entry and export watermark (its
    /// integrations are remembered as retired: their webhooks answer 410 Gone), then the file.
    /// Data the analytics export already carried stays where the export put it.
    ///
    /// The file must not be open in any process: the CLI calls this holding the serve lock (it
    /// refuses while `serve` runs); the server calls `Supervisor.deleteWorkspace`, which first
    /// retires the workspace from its LRU.
    public func delete(_ id: WorkspaceID, by actor: String, now: Date = Date()) throws -> WorkspaceDeletion {
        guard let record = try control.workspace(id) else { throw WorkspaceError.notFound(id.rawValue) }
        let stamp = ISO8601.string(now).replacingOccurrences(of: ":", with: "")
        let destination = dataDirectory.deletedBackupsDirectory.appendingPathComponent("\(id.rawValue)-\(stamp)", isDirectory: true)
        let file = dataDirectory.workspaceFile(id)
        // The control rows the backup cannot hold, for whoever brings the workspace back.
        struct ControlRows: Encodable {
            let workspace: WorkspaceRecord
            let integrations: [[String: String]]
            let memberships: [[String: String]]
        }
        let (integrations, memberships) = try control.read { db in
            (try Row.fetchAll(db, sql: "SELECT id, kind FROM integrations WHERE workspace_id = ? ORDER BY id", arguments: [id.rawValue])
                .map { ["id": $0["id"] as String, "kind": $0["kind"] as String] },
             try Row.fetchAll(db, sql: "SELECT user_id, role FROM memberships WHERE workspace_id = ? ORDER BY user_id", arguments: [id.rawValue])
                .map { ["user_id": $0["user_id"] as String, "role": $0["role"] as String] })
        }
        // The events the nightly export has not carried yet (the day's runs, AI calls and spend)
        // go out first, in a dump of their own beside the nightly ones, which the loader takes the
        // same way: after the delete nothing would carry them (the file and its watermark go).
        // First, so that an export that cannot run now (another one running) leaves nothing behind.
        var export: ExportManifest?
        let exporter = AnalyticsExporter(dataDirectory: dataDirectory, control: control, opener: opener)
        if try exporter.unexportedEvents(of: id) > 0 {
            do {
                export = try exporter.export(only: [id], now: now)
            } catch {
                throw StorageError.conflict("the workspace's events not yet exported could not be exported first (\(error)); "
                                            + "nothing was deleted: run the delete again")
            }
        }
        var unreadable: String?
        if FileManager.default.fileExists(atPath: file.path) {
            do {
                _ = try BackupService(dataDirectory: dataDirectory, opener: opener).backup(to: destination, workspace: id, control: control)
            } catch let error as DatabaseError where [ResultCode.SQLITE_NOTADB, .SQLITE_CORRUPT].contains(error.resultCode.primaryResultCode) {
                // A file that is not a readable database (the workspace is offline for it) has no
                // backup to make: its bytes are kept as they are, and the workspace can still go.
                try? FileManager.default.removeItem(at: destination)
                try FileManager.default.createDirectory(at: destination, withIntermediateDirectories: true)
                for suffix in ["", "-wal"] where FileManager.default.fileExists(atPath: file.path + suffix) {
                    try FileManager.default.copyItem(atPath: file.path + suffix,
                                                     toPath: destination.appendingPathComponent("\(id.rawValue).sqlite\(suffix).unreadable").path)
                }
                unreadable = "the file could not be read as a database (\(error.resultCode)); its bytes are kept as \(id.rawValue).sqlite.unreadable"
            }
        } else {
            try FileManager.default.createDirectory(at: destination, withIntermediateDirectories: true)
        }
        let rows = try JSONEncoder.sentinelPretty.encode(ControlRows(workspace: record, integrations: integrations, memberships: memberships))
        try rows.write(to: destination.appendingPathComponent("workspace.json"), options: .atomic)
        FileSystem.sync(destination)

        // Litestream stops listing the file before it goes (a failure here deletes nothing).
        let lock = try workspacesLock()
        defer { _ = lock }
        try refreshReplication(try control.workspaces().compactMap(\.workspaceID).filter { $0 != id })
        try control.write { db in
            for integration in integrations {
                try db.execute(sql: "INSERT OR REPLACE INTO retired_integrations (id, workspace_id, retired_at) VALUES (?, ?, ?)",
                               arguments: [integration["id"], id.rawValue, now.epoch])
            }
            // Memberships, integrations, pending work and the export watermark go with the row (ON DELETE CASCADE).
            try db.execute(sql: "DELETE FROM workspaces WHERE id = ?", arguments: [id.rawValue])
            // So do its operational signals: doctor warned about a deleted workspace's refused deliveries for a week.
            try db.execute(sql: "DELETE FROM integration_auth_failures WHERE workspace_id = ?", arguments: [id.rawValue])
            try db.execute(sql: "DELETE FROM provider_circuits WHERE workspace_id = ?", arguments: [id.rawValue])
            var data = ["name": record.name, "backup": destination.path,
                        "integrations": integrations.compactMap { $0["id"] }.joined(separator: ","), "members": String(memberships.count)]
            if let unreadable { data["backup_note"] = unreadable }
            if let export { data["export"] = export.file }
            if let left = export?.workspaces.first?.error { data["export_error"] = left }
            try AuditLog.append("WorkspaceDeleted", actor: actor, subject: "workspace:\(id)", data: data, in: db, now: now)
        }
        try removeDatabaseFiles(file)
        // Litestream's shadow copy of the log, beside the file: nothing replicates it any more.
        try? FileSystem.removeIfPresent(file.deletingLastPathComponent().appendingPathComponent(".\(file.lastPathComponent)-litestream", isDirectory: true))
        FileSystem.sync(dataDirectory.workspacesDirectory)
        return WorkspaceDeletion(id: id.rawValue, name: record.name, backup: destination.path,
                                 integrations: integrations.compactMap { $0["id"] }, members: memberships.count,
                                 export: export.map { dataDirectory.exportsDirectory.appendingPathComponent($0.file).path },
                                 exportedEvents: export?.events ?? 0, exportError: export?.workspaces.first?.error)
    }

    /// The appliance's audit entries about a workspace (they remain after it is deleted).
    public func auditEvents(of id: WorkspaceID) throws -> [AuditEvent] {
        try control.read { db in try AuditLog.events(subject: "workspace:\(id)", limit: 10_000, in: db) }
    }
}

extension DataDirectory {
    /// Final backups of deleted workspaces.
    public var deletedBackupsDirectory: URL { backupsDirectory.appendingPathComponent("deleted", isDirectory: true) }
}
