import Foundation
import GRDB
@testable import SentinelCore
import SentinelTestSupport
import Testing

/// Synchronous helpers (async tests would pick GRDB's async overloads).
func run(_ writer: some DatabaseWriter, _ sql: String, transaction: Bool = true) throws {
    if transaction { try writer.write { db in try db.execute(sql: sql) } } else { try writer.writeWithoutTransaction { db in try db.execute(sql: sql) } }
}

func version(of reader: some DatabaseReader) throws -> Int {
    try reader.read { db in try SchemaState.read(db, kind: .workspace) }.version
}

@Suite("Upgrades and downgrades")
struct UpgradeTests {
    /// Marks a file as migrated one step further than this binary knows.
    static func migrateOneStepFurther(_ url: URL) throws {
        let queue = try DatabaseQueue(path: url.path)
        try queue.write { db in try db.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('9999_from_a_newer_sentinel')") }
        try queue.close()
    }

    /// A workspace file at the schema version before the newest one this binary knows.
    static func makeOldWorkspaceFile(_ url: URL) throws {
        try FileManager.default.removeItem(at: url)
        let queue = try DatabaseQueue(path: url.path)
        let known = DatabaseKind.workspace.knownMigrations
        try WorkspaceSchema.migrator.migrate(queue, upTo: known[known.count - 2])
        try run(queue, "INSERT INTO events (id, type, occurred_at, data) VALUES ('evt_old', 'old.event', '2026-01-01T00:00:00Z', '{}')")
        try queue.close()
    }

    @Test("a workspace file migrated one step further than the binary knows is refused and taken offline, naming file, version and the way out")
    func newerWorkspaceFileGoesOffline() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let ws = try h.createWorkspace("future")
        let file = h.dataDirectory.workspaceFile(ws)
        try Self.migrateOneStepFurther(file)
        let newer = DatabaseKind.workspace.knownVersion + 1
        #expect {
            _ = try DatabaseOpener().open(file, kind: .workspace)
        } throws: { error in
            guard case StorageError.newerSchema(let message) = error else { return false }
            return message.contains(file.path) && message.contains("schema version \(newer)")
                && message.contains("9999_from_a_newer_sentinel") && message.contains("run that newer binary")
                && message.contains("pre-upgrade")
        }
        do {
            _ = try await h.supervisor.pin(ws)
            Issue.record("a newer file must not be served")
        } catch let WorkspaceError.offline(id, reason, _) {
            #expect(id == ws)
            #expect(reason.contains("newer than this binary") && reason.contains("schema version \(newer)"))
        }
        // When the newer binary's pre-upgrade snapshot of this file is there, the message names it.
        let known = DatabaseKind.workspace.knownVersion
        let folder = h.dataDirectory.backupsDirectory.appendingPathComponent("pre-upgrade-\(known)-\(newer)")
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("workspaces"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: file, to: folder.appendingPathComponent("workspaces/\(ws.rawValue).sqlite"))
        let state0 = try SchemaState.read(file: file, kind: .workspace)
        #expect(state0.newerMessage(file: file).contains("sentinel restore --from \(folder.path))"))
        // The file was not touched: still one step ahead, nothing removed from it.
        let state = try SchemaState.read(file: file, kind: .workspace)
        #expect(state.unknown == ["9999_from_a_newer_sentinel"])
        #expect(state.pending.isEmpty)
        await h.supervisor.shutdown()
    }

    @Test("control.sqlite newer than the binary stops the control store from opening with the reason")
    func newerControlFileRefused() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        await h.supervisor.shutdown()
        try h.control.close()
        try Self.migrateOneStepFurther(h.dataDirectory.controlFile)
        #expect {
            _ = try ControlStore(dataDirectory: h.dataDirectory, opener: DatabaseOpener())
        } throws: { error in
            guard case StorageError.newerSchema(let message) = error else { return false }
            return message.contains("control.sqlite") && message.contains("control schema version \(DatabaseKind.control.knownVersion + 1)")
        }
        #expect(PreUpgradeSnapshot.survey(h.dataDirectory).first?.isNewerThanBinary == true)
    }

    @Test("pending migrations: the file is first copied into backups/pre-upgrade-FROM-TO with a manifest, then migrated; the copy restores")
    func snapshotBeforeMigrating() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let ws = try h.createWorkspace("old")
        await h.supervisor.shutdown()
        let file = h.dataDirectory.workspaceFile(ws)
        try Self.makeOldWorkspaceFile(file)
        let (from, to) = (DatabaseKind.workspace.knownVersion - 1, DatabaseKind.workspace.knownVersion)
        #expect(PreUpgradeSnapshot.survey(h.dataDirectory).first { $0.workspaceID == ws.rawValue }?.needsMigration == true)

        let database = try DatabaseOpener().open(file, kind: .workspace)
        #expect(try version(of: database) == to)
        try database.close()

        let folder = h.dataDirectory.backupsDirectory.appendingPathComponent("pre-upgrade-\(from)-\(to)")
        let copy = folder.appendingPathComponent("workspaces/\(ws.rawValue).sqlite")
        let copied = try SchemaState.read(file: copy, kind: .workspace)
        #expect(copied.version == from)
        let manifest = try JSONDecoder.sentinel.decode(BackupManifest.self, from: Data(contentsOf: folder.appendingPathComponent("manifest.json")))
        #expect(manifest.files.map(\.workspaceID) == [ws.rawValue])
        #expect(manifest.files.first?.sha256 == (try FileSystem.sha256(of: copy)))

        // Restoring the snapshot puts the old file back (what the previous binary would do).
        try h.control.close()
        let restored = try BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener()).restore(from: folder)
        #expect(restored.count == 1)
        #expect(try SchemaState.read(file: h.dataDirectory.workspaceFile(ws), kind: .workspace).version == from)
    }

    @Test("a pre-upgrade snapshot of the intake journal is taken as intake-journal.sqlite and restores to the data directory's journal")
    func journalSnapshotRestores() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let ws = try h.createWorkspace()
        let journal = try IntakeJournalTests.journal(h)
        _ = try await journal.append(IntakeJournalTests.delivery("d-snapshot"), for: ws)
        let file = h.dataDirectory.intakeJournalFile
        let reader = try DatabaseQueue(path: file.path)
        let state = try await reader.read { try SchemaState.read($0, kind: .journal) }
        let copy = try PreUpgradeSnapshot.take(reader, file: file, kind: .journal, state: state, freeSpace: { _ in nil })
        try reader.close()
        #expect(copy.lastPathComponent == "intake-journal.sqlite")
        #expect(copy.deletingLastPathComponent().lastPathComponent.hasPrefix("pre-upgrade-"))

        let target = TemporaryDirectory()
        defer { target.cleanup() }
        let restored = try BackupService(dataDirectory: DataDirectory(path: target.path), opener: DatabaseOpener())
            .restore(from: copy.deletingLastPathComponent())
        #expect(restored.map(\.kind) == [.journal])
        let back = try DatabaseQueue(path: DataDirectory(path: target.path).intakeJournalFile.path)
        #expect(try await back.read { try String.fetchAll($0, sql: "SELECT delivery_id FROM journal") } == ["d-snapshot"])
        try back.close()
        await h.supervisor.shutdown()
    }

    @Test("a failed migration puts the file back as it was from the snapshot, and says so")
    func failedMigrationRestoresFile() throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let ws = try h.createWorkspace("fail")
        let file = h.dataDirectory.workspaceFile(ws)
        try FileManager.default.removeItem(at: file)
        var old = DatabaseMigrator()
        old.registerMigration("0001_a") { db in try db.execute(sql: "CREATE TABLE a (x INTEGER)") }
        let queue = try DatabaseQueue(path: file.path)
        try old.migrate(queue)
        try run(queue, "INSERT INTO a VALUES (42)")
        var new = old
        new.registerMigration("0002_b") { db in try db.execute(sql: "CREATE TABLE b (x INTEGER)") }
        new.registerMigration("0003_c") { db in try db.execute(sql: "INSERT INTO no_such_table VALUES (1)") }

        #expect {
            try DatabaseOpener().migrateFile(queue, file: file, kind: .workspace, migrator: new)
        } throws: { error in
            guard case StorageError.migrationFailed(let message) = error else { return false }
            return message.contains("from version 1 to 3") && message.contains("put back as it was before (schema version 1")
        }
        let (hasB, applied, x) = try queue.read { db in
            (try db.tableExists("b"), try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations"), try Int.fetchOne(db, sql: "SELECT x FROM a"))
        }
        #expect(hasB == false)
        #expect(applied == ["0001_a"])
        #expect(x == 42)

        // Without a snapshot, GRDB rolls back the failing step and the message says what stayed.
        #expect {
            try DatabaseOpener(preUpgradeSnapshot: false).migrateFile(queue, file: file, kind: .workspace, migrator: new)
        } throws: { error in
            guard case StorageError.migrationFailed(let message) = error else { return false }
            return message.contains("earlier steps of this upgrade stay applied (schema version 2, was 1")
        }
        #expect(try queue.read { db in try db.tableExists("b") })
        try queue.close()
    }

    @Test("not enough free space for the pre-upgrade snapshot: nothing is migrated and the message says how to proceed")
    func freeSpaceChecked() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let ws = try h.createWorkspace("tight")
        await h.supervisor.shutdown()
        let file = h.dataDirectory.workspaceFile(ws)
        try Self.makeOldWorkspaceFile(file)
        let opener = DatabaseOpener(freeSpace: { _ in 1024 })
        #expect {
            _ = try opener.open(file, kind: .workspace)
        } throws: { error in
            guard case StorageError.io(let message) = error else { return false }
            return message.contains("not enough free space") && message.contains("storage.pre_upgrade_snapshot: false")
        }
        #expect(throws: StorageError.self) {
            try PreUpgradeSnapshot.checkFreeSpace(for: PreUpgradeSnapshot.survey(h.dataDirectory), in: h.dataDirectory, opener: opener)
        }
        #expect(try SchemaState.read(file: file, kind: .workspace).version == DatabaseKind.workspace.knownVersion - 1)
        // Turned off, the file migrates without a copy.
        let database = try DatabaseOpener(preUpgradeSnapshot: false, freeSpace: { _ in 1024 }).open(file, kind: .workspace)
        try database.close()
        #expect(try SchemaState.read(file: file, kind: .workspace).pending.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: h.dataDirectory.backupsDirectory.path))
    }
}
