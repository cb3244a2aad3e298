import Foundation
import GRDB
@testable import SentinelCore
import SentinelTestSupport
import Testing

@Suite("Backup and restore")
struct BackupTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test("a backup taken during concurrent writes restores to an intact file holding every write committed before it began")
    func backupUnderWriteLoad() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace("busy")
        let actor = try await h.supervisor.pin(ws)
        try await actor.write { tx in try tx.db.execute(sql: "CREATE TABLE IF NOT EXISTS load (n INTEGER PRIMARY KEY, pad BLOB)") }
        // Grow the file so the copy takes a while, then keep writing during the backup.
        for batch in 0..<20 {
            try await actor.write { tx in
                for i in 0..<200 { try tx.db.execute(sql: "INSERT INTO load (n, pad) VALUES (?, randomblob(512))", arguments: [batch * 200 + i]) }
            }
        }
        let writer = Task {
            var n = 100_000
            while !Task.isCancelled {
                let value = n
                _ = try? await actor.write { tx in try tx.db.execute(sql: "INSERT INTO load (n, pad) VALUES (?, randomblob(512))", arguments: [value]) }
                n += 1
            }
            return n - 100_000
        }
        // The writer is committing before the backup starts (a fixed wait could end before a
        // loaded machine ran it at all).
        #expect(await eventually { try await actor.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM load WHERE n >= 100000")! } > 0 })
        let committedBefore = try await actor.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM load")! }
        let backupDir = TemporaryDirectory("sentinel-backup")
        defer { backupDir.cleanup() }
        let out = backupDir.url.appendingPathComponent("backup-1")
        let manifest = try BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener()).backup(to: out, control: h.control)
        try await Task.sleep(for: .milliseconds(50))
        writer.cancel()
        let writesDuring = await writer.value
        #expect(writesDuring > 0)
        #expect(manifest.files.map(\.kind) == [.control, .workspace])
        #expect(manifest.files[1].workspaceID == ws.rawValue)
        #expect(manifest.files[1].schemaVersion == DatabaseKind.workspace.knownMigrations.last)
        await h.supervisor.unpin(ws)
        await h.stop()

        // Restore into a brand-new data directory, one that does not exist yet (a new machine).
        let target = TemporaryDirectory()
        defer { target.cleanup() }
        let data = DataDirectory(path: target.url.appendingPathComponent("new-machine/data").path)
        let restored = try BackupService(dataDirectory: data, opener: DatabaseOpener()).restore(from: out)
        #expect(restored.count == 2)
        let file = data.workspaceFile(ws)
        #expect(!FileManager.default.fileExists(atPath: file.path + "-wal"))
        #expect(!FileManager.default.fileExists(atPath: file.path + "-shm"))
        let database = try DatabaseOpener().open(file, kind: .workspace)
        let (integrity, count) = try await database.read { db in
            (try String.fetchAll(db, sql: "PRAGMA integrity_check"), try Int.fetchOne(db, sql: "SELECT count(*) FROM load")!)
        }
        #expect(integrity == ["ok"])
        #expect(count >= committedBefore)
        try database.close()
        let control = try ControlStore(dataDirectory: data, opener: DatabaseOpener())
        #expect(try control.workspace(ws)?.name == "busy")
        #expect(try control.dueEntry(ws) != nil, "a restored workspace is looked at once by the scheduler")
        try control.close()
        // No master key was made for it (a backup holds none; the restored credentials are sealed
        // with the original): starting there says to copy it back, and makes none either.
        #expect(!FileManager.default.fileExists(atPath: data.masterKeyFile.path))
        #expect { try data.prepare() } throws: { "\($0)".contains("master.key is missing, but this data directory holds data") }
        #expect(!FileManager.default.fileExists(atPath: data.masterKeyFile.path))
    }

    @Test("restoring one workspace control.sqlite no longer lists (deleted) is refused (it came back as a file nothing serves, reported restored)")
    func restoreOfUnregisteredWorkspaceRefused() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace("gone")
        await h.supervisor.shutdown()
        let out = h.directory.url.appendingPathComponent("backup")
        _ = try BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener()).backup(to: out, workspace: ws, control: h.control)
        try h.control.write { db in try db.execute(sql: "DELETE FROM workspaces WHERE id = ?", arguments: [ws.rawValue]) }
        try FileManager.default.removeItem(at: h.dataDirectory.workspaceFile(ws))
        #expect {
            try BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener()).restore(from: out, workspace: ws)
        } throws: { error in
            "\(error)".contains("is not registered")
        }
        #expect(!FileManager.default.fileExists(atPath: h.dataDirectory.workspaceFile(ws).path))
        // Without --workspace (what the message once advised, and what a deleted workspace's final
        // backup, which holds no control.sqlite, would need): refused the same.
        #expect {
            try BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener()).restore(from: out)
        } throws: { error in
            "\(error)".contains("is not registered") && "\(error)".contains("nothing was restored")
        }
        #expect(!FileManager.default.fileExists(atPath: h.dataDirectory.workspaceFile(ws).path))
    }

    @Test("restoring one workspace realigns its webhook routes: an integration added after the backup is retired (410), one removed after it is routed again")
    func restoreRealignsIntegrationRoutes() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace("routes")
        let service = IntegrationService(control: h.control, masterKey: try MasterKey.load(at: h.dataDirectory.masterKeyFile))
        let actor = try await h.supervisor.pin(ws)
        func add(_ id: String) async throws { try await Self.addIntegration(id, to: actor, h) }
        let kept = try #require(IntegrationID("int_kept000000000000"))
        let later = try #require(IntegrationID("int_later00000000000"))
        try await add(kept.rawValue)
        let out = h.directory.url.appendingPathComponent("backup")
        _ = try BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener()).backup(to: out, workspace: ws, control: h.control)
        try await add(later.rawValue)
        try await service.remove(kept, from: actor, by: "cli")
        #expect(try service.isRetired(kept))
        await h.supervisor.shutdown()

        var said: [String] = []
        _ = try BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener()).restore(from: out, workspace: ws) { said.append($0) }
        // The integration the restored file does not know answered 404 and could not be removed: retired now.
        #expect(try await service.workspaceOf(later) == nil)
        #expect(try service.isRetired(later))
        // The one the restored file holds, with its secrets, is served again.
        #expect(try await service.workspaceOf(kept) == ws)
        #expect(try !service.isRetired(kept))
        #expect(said.contains { $0.contains("\(later)") && $0.contains("410 Gone") })
        #expect(said.contains { $0.contains("\(kept)") && $0.contains("routed to the workspace again") })
    }

    /// A GitHub integration row in the workspace's file and its route in control.sqlite.
    static func addIntegration(_ id: String, to actor: WorkspaceActor, _ h: TestHarness) async throws {
        try await actor.write { tx in
            try tx.db.execute(sql: """
                INSERT INTO integrations (id, kind, app_id, api_url, webhook_secret, created_at)
                VALUES (?, 'github', 1, 'https://127.0.0.1:1/', x'00', 5)
                """, arguments: [id])
        }
        try h.control.write { db in
            try db.execute(sql: "INSERT INTO integrations (id, workspace_id, kind, created_at) VALUES (?, ?, 'github', 5)", arguments: [id, actor.id.rawValue])
        }
    }

    @Test("a full restore keeps an integration removed after the backup removed: its webhooks answer 410, not 404")
    func fullRestoreKeepsRemovedIntegrations() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace("removed")
        let service = IntegrationService(control: h.control, masterKey: try MasterKey.load(at: h.dataDirectory.masterKeyFile))
        let actor = try await h.supervisor.pin(ws)
        let out = h.directory.url.appendingPathComponent("backup")
        _ = try BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener()).backup(to: out, control: h.control)
        let gone = try #require(IntegrationID("int_gone000000000000"))
        try await Self.addIntegration(gone.rawValue, to: actor, h)
        try await service.remove(gone, from: actor, by: "cli")
        #expect(try service.isRetired(gone))
        await h.supervisor.shutdown()

        var said: [String] = []
        _ = try BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener()).restore(from: out) { said.append($0) }
        #expect(try service.isRetired(gone))
        #expect(try await service.workspaceOf(gone) == nil)
        #expect(said.contains { $0.contains("1 integration (\(gone)) removed after this backup stays removed: its webhooks answer 410 Gone") }, "\(said)")
    }

    @Test("a full restore names a workspace created after the backup, no longer registered, and its integrations' webhooks answer 410 (404, and nothing said)")
    func fullRestoreNamesLaterWorkspaces() async throws {
        let h = try TestHarness()
        _ = try h.createWorkspace("before")
        let out = h.directory.url.appendingPathComponent("backup")
        _ = try BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener()).backup(to: out, control: h.control)
        let echo = try h.createWorkspace("echo")
        let later = try #require(IntegrationID("int_echo000000000000"))
        try await Self.addIntegration(later.rawValue, to: try await h.supervisor.pin(echo), h)
        await h.supervisor.shutdown()

        var said: [String] = []
        _ = try BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener()).restore(from: out) { said.append($0) }
        // (The restore replaced control.sqlite: read it anew.)
        let control = try ControlStore(dataDirectory: h.dataDirectory, opener: DatabaseOpener())
        #expect(try control.workspace(echo) == nil)
        #expect(try IntegrationService(control: control, masterKey: try MasterKey.load(at: h.dataDirectory.masterKeyFile)).isRetired(later))
        #expect(said.contains { $0.contains("workspace echo (\(echo)) created after this backup is not in it and is no longer registered")
                                && $0.contains("workspaces/\(echo).sqlite") }, "\(said)")
        #expect(FileManager.default.fileExists(atPath: h.dataDirectory.workspaceFile(echo).path), "its file is left where it is")
    }

    @Test("a restore waits for a running analytics export: the export's watermark, written after, undid the restore's rewind and lost the new events")
    func restoreRefusedDuringExport() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace("exported")
        await h.supervisor.shutdown()
        let out = h.directory.url.appendingPathComponent("backup")
        _ = try BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener()).backup(to: out, workspace: ws, control: h.control)
        var exporting = try FileLock.tryAcquire(h.dataDirectory.exportLockFile)
        #expect(exporting != nil)
        #expect {
            try BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener()).restore(from: out, workspace: ws)
        } throws: { error in
            "\(error)".contains("an analytics export is running")
        }
        exporting = nil
        #expect(try BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener()).restore(from: out, workspace: ws).count == 1)
        // And an export started while a restore runs is refused the same.
        var restoring = try FileLock.tryAcquire(h.dataDirectory.exportLockFile)
        #expect(restoring != nil)
        let exporter = AnalyticsExporter(dataDirectory: h.dataDirectory, control: h.control, opener: DatabaseOpener(config: h.config))
        #expect { try exporter.export() } throws: { error in "\(error)".contains("a restore") }
        restoring = nil
        #expect(try exporter.export().events >= 0)
    }

    @Test("a backup goes into a new or empty directory: one holding anything (another appliance's data directory) is refused and left as it was")
    func backupIntoNonEmptyDirectoryRefused() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace("kept")
        let service = BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener())
        let other = h.directory.url.appendingPathComponent("other-appliance")
        try FileManager.default.createDirectory(at: other, withIntermediateDirectories: true)
        try Data("precious".utf8).write(to: other.appendingPathComponent("control.sqlite"))
        #expect {
            try service.backup(to: other, control: h.control)
        } throws: { error in
            "\(error)".contains("is not empty") && "\(error)".contains("nothing was written")
        }
        #expect(try String(contentsOf: other.appendingPathComponent("control.sqlite"), encoding: .utf8) == "precious")
        #expect(!FileManager.default.fileExists(atPath: other.appendingPathComponent("workspaces").path))
        // An empty directory that exists takes it.
        let empty = h.directory.url.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        #expect(try service.backup(to: empty, workspace: ws, control: h.control).files.count == 1)
        await h.supervisor.shutdown()
    }

    @Test("a master key that cannot be looked at (another user's directory; here a link loop) is not called missing: that advice made a new key over the real one")
    func unreadableMasterKeyNotMissing() async throws {
        let h = try TestHarness()
        await h.supervisor.shutdown()
        let key = h.dataDirectory.masterKeyFile
        try FileManager.default.removeItem(at: key)
        try FileManager.default.createSymbolicLink(atPath: key.path, withDestinationPath: key.path)
        #expect {
            try h.dataDirectory.prepare()
        } throws: { error in
            "\(error)".contains("cannot look at") && "\(error)".contains("do not create a new key") && !"\(error)".contains("is missing")
        }
        // Truly missing, beside data: told so, as before.
        try FileManager.default.removeItem(at: key)
        #expect { try h.dataDirectory.prepare() } throws: { error in "\(error)".contains("is missing") }
    }

    @Test("a backup whose file is a link is refused: the link would have become the live workspace file, pointing outside the data directory")
    func linkInBackupRefused() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let ws = try h.createWorkspace("a")
        await h.supervisor.shutdown()
        let out = h.directory.url.appendingPathComponent("backup")
        _ = try BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener()).backup(to: out, workspace: ws, control: h.control)
        let copy = out.appendingPathComponent("workspaces/\(ws.rawValue).sqlite")
        let elsewhere = h.directory.url.appendingPathComponent("elsewhere.sqlite")
        try FileManager.default.moveItem(at: copy, to: elsewhere)
        try FileManager.default.createSymbolicLink(at: copy, withDestinationURL: elsewhere)
        try h.control.close()
        #expect {
            try BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener()).restore(from: out, workspace: ws)
        } throws: { error in
            "\(error)".contains("not a regular file")
        }
        let attributes = try FileManager.default.attributesOfItem(atPath: h.dataDirectory.workspaceFile(ws).path)
        #expect(attributes[.type] as? FileAttributeType == .typeRegular)
    }

    @Test("a restore names the workspaces its backup could not read when it was taken, and what becomes of them")
    func restoreNamesSkippedWorkspaces() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let healthy = try h.createWorkspace("healthy")
        let damaged = try h.createWorkspace("damaged")
        await h.supervisor.shutdown()
        try FileManager.default.removeItem(at: h.dataDirectory.workspaceFile(damaged))
        try Data(repeating: 0x5A, count: 100_000).write(to: h.dataDirectory.workspaceFile(damaged))
        let service = BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener())
        let out = h.directory.url.appendingPathComponent("nightly")
        #expect(try service.backup(to: out, control: h.control).skipped?.map(\.workspaceID) == [damaged.rawValue])
        try h.control.close()
        // Onto a new machine: the damaged workspace has no file there.
        let fresh = DataDirectory(path: h.directory.url.appendingPathComponent("new").path)
        var messages: [String] = []
        let restored = try BackupService(dataDirectory: fresh, opener: DatabaseOpener()).restore(from: out, log: { messages.append($0) })
        #expect(restored.count == 2 && restored.contains { $0.workspaceID == healthy.rawValue })
        #expect(messages.contains { $0.contains(damaged.rawValue) && $0.contains("not in this backup") && $0.contains("stays offline") }, "\(messages)")
    }

    @Test("restore refuses a damaged backup and leaves the data directory untouched")
    func damagedBackupRefused() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace("a")
        try await h.enqueue(JobRequest(kind: "x"), in: ws)
        await h.supervisor.shutdown()
        let out = h.directory.url.appendingPathComponent("backup")
        _ = try BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener()).backup(to: out, workspace: ws, control: h.control)
        let copy = out.appendingPathComponent("workspaces/\(ws.rawValue).sqlite")
        var bytes = try Data(contentsOf: copy)
        bytes[bytes.count / 2] ^= 0xFF
        try bytes.write(to: copy)
        let before = try Data(contentsOf: h.dataDirectory.workspaceFile(ws))
        #expect {
            try BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener()).restore(from: out, workspace: ws)
        } throws: { error in
            "\(error)".contains("checksum")
        }
        #expect(try Data(contentsOf: h.dataDirectory.workspaceFile(ws)) == before)
        // A backup directory without a manifest is not a backup.
        #expect(throws: StorageError.self) {
            try BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener()).restore(from: h.directory.url.appendingPathComponent("nope"))
        }
        // A backup into a path that is a file says so.
        let file = h.directory.url.appendingPathComponent("a-file")
        try Data("x".utf8).write(to: file)
        #expect(throws: StorageError.invalid("\(file.path) is a file; a backup goes into a directory")) {
            try BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener()).backup(to: file, control: h.control)
        }
        h.directory.cleanup()
    }

    @Test("a backup that fails half-way removes what it wrote: no partial directory is left on the disk")
    func failedBackupLeavesNothing() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let first = try h.createWorkspace("first")
        let second = try h.createWorkspace("second")
        try await h.enqueue(JobRequest(kind: "x"), in: first)
        try await h.enqueue(JobRequest(kind: "x"), in: second)
        await h.supervisor.shutdown()
        // The workspace's file cannot be read when its turn comes (a backup of it alone, as before a delete).
        let moved = h.directory.url.appendingPathComponent("moved.sqlite")
        try FileManager.default.moveItem(at: h.dataDirectory.workspaceFile(second), to: moved)
        let service = BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener())
        let out = h.directory.url.appendingPathComponent("nightly/20261205T030000Z")
        #expect(throws: StorageError.self) { try service.backup(to: out, workspace: second, control: h.control) }
        #expect(!FileManager.default.fileExists(atPath: out.path), "the directory the backup made is gone")
        // Into a directory that was there before (empty): it stays, empty.
        let given = h.directory.url.appendingPathComponent("given")
        try FileManager.default.createDirectory(at: given, withIntermediateDirectories: false)
        #expect(throws: StorageError.self) { try service.backup(to: given, workspace: second, control: h.control) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: given.path) == [])
        // With the file back, the same destination takes a complete backup.
        try FileManager.default.moveItem(at: moved, to: h.dataDirectory.workspaceFile(second))
        #expect(try service.backup(to: given, control: h.control).files.count == 3)
    }

    @Test("a full backup goes on past a workspace whose file is missing or damaged: the others are backed up and restorable, the skipped one named in the manifest")
    func fullBackupSkipsDamagedWorkspace() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let healthy = try h.createWorkspace("healthy")
        let missing = try h.createWorkspace("missing")
        let damaged = try h.createWorkspace("damaged")
        try await h.enqueue(JobRequest(kind: "x"), in: healthy)
        await h.supervisor.shutdown()
        try FileManager.default.removeItem(at: h.dataDirectory.workspaceFile(missing))
        try FileManager.default.removeItem(at: h.dataDirectory.workspaceFile(damaged))
        try Data(repeating: 0x5A, count: 100_000).write(to: h.dataDirectory.workspaceFile(damaged))
        let service = BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener())
        let out = h.directory.url.appendingPathComponent("nightly")
        let manifest = try service.backup(to: out, control: h.control)
        #expect(Set(manifest.files.map(\.file)) == ["control.sqlite", "workspaces/\(healthy.rawValue).sqlite"])
        #expect(manifest.skipped?.map(\.workspaceID).sorted() == [damaged.rawValue, missing.rawValue].sorted())
        #expect(manifest.skipped?.first { $0.workspaceID == missing.rawValue }?.reason.contains("is missing") == true)
        #expect(!FileManager.default.fileExists(atPath: out.appendingPathComponent("workspaces/\(damaged.rawValue).sqlite").path))
        // What it holds restores.
        try h.control.close()
        #expect(try service.restore(from: out, workspace: healthy).count == 1)
    }

    @Test("a workspace file with a damaged page (it opens and copies) is skipped by a full backup and named, not backed up as good: restore refused that backup whole, and the nightly prune deleted the good ones")
    func fullBackupSkipsDamagedPage() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let healthy = try h.createWorkspace("healthy")
        let damaged = try h.createWorkspace("damaged")
        let migrations = try h.createWorkspace("migrations")
        for _ in 0..<200 { try await h.enqueue(JobRequest(kind: "x", payload: Data(repeating: 0x61, count: 500)), in: damaged) }
        await h.supervisor.shutdown()
        try damageRootPage(of: "jobs", in: h.dataDirectory.workspaceFile(damaged))
        // The page the schema version is read from: that failed every workspace's backup, naming none.
        try damageRootPage(of: "grdb_migrations", in: h.dataDirectory.workspaceFile(migrations))
        let service = BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener())
        let out = h.directory.url.appendingPathComponent("nightly")
        let manifest = try service.backup(to: out, control: h.control)
        #expect(Set(manifest.files.map(\.file)) == ["control.sqlite", "workspaces/\(healthy.rawValue).sqlite"])
        #expect(Set(manifest.skipped?.map(\.workspaceID) ?? []) == [damaged.rawValue, migrations.rawValue])
        #expect(manifest.skipped?.allSatisfy { $0.reason.hasPrefix("its file is damaged (") && !$0.reason.contains("\n") } == true,
                "\(String(describing: manifest.skipped))")
        #expect(!FileManager.default.fileExists(atPath: out.appendingPathComponent("workspaces/\(damaged.rawValue).sqlite").path))
        // Backed up alone, it is refused.
        #expect { try service.backup(to: h.directory.url.appendingPathComponent("one"), workspace: damaged, control: h.control) } throws: {
            "\($0)".contains("its file is damaged")
        }
        // verify names what the backup lacks (it said all checks passed).
        let verified = DataVerifier.verify(backup: out)
        #expect(verified.problems.map(\.check) == ["skipped", "skipped"], "\(verified.problems)")
    }

    @Test("a backup into the data directory itself (by its path, a trailing slash, .. or a link) is refused and every live file stays, also with serve's workspaces open")
    func backupIntoDataDirectoryRefused() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let ws = try h.createWorkspace("acme")
        try await h.enqueue(JobRequest(kind: "x"), in: ws)
        let service = BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener())
        let link = h.directory.url.deletingLastPathComponent().appendingPathComponent("link-\(UUID().uuidString)")
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: h.dataDirectory.root)
        defer { try? FileManager.default.removeItem(at: link) }
        let root = h.dataDirectory.root
        for destination in [root, URL(fileURLWithPath: root.path + "/"), root.appendingPathComponent("workspaces/.."), link] {
            #expect { try service.backup(to: destination, control: h.control) } throws: {
                "\($0)".contains("is Sentinel's data directory (or holds its files)")
            }
        }
        #expect(FileManager.default.fileExists(atPath: h.dataDirectory.controlFile.path))
        #expect(FileManager.default.fileExists(atPath: h.dataDirectory.workspaceFile(ws).path))
        #expect(!FileManager.default.fileExists(atPath: root.appendingPathComponent(BackupManifest.fileName).path))
        // Refused before anything is made in it: no `workspaces/workspaces/` left behind.
        #expect(throws: (any Error).self) { try service.backup(to: h.dataDirectory.workspacesDirectory, control: h.control) }
        #expect(!FileManager.default.fileExists(atPath: h.dataDirectory.workspacesDirectory.appendingPathComponent("workspaces").path))
        #expect(try await h.supervisor.withWorkspace(ws) { try await $0.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM jobs")! } } == 1)
        // A directory of its own inside the data directory (backups/NAME, as the nightly timer does) is fine.
        #expect(try service.backup(to: h.dataDirectory.backupsDirectory.appendingPathComponent("manual"), control: h.control).files.count == 2)
    }

    /// Workspaces `a` (with a job) and `b`, their supervisor shut down.
    static func twoWorkspacesAtRest() async throws -> (TestHarness, WorkspaceID, WorkspaceID) {
        let h = try TestHarness()
        let a = try h.createWorkspace("a")
        let b = try h.createWorkspace("b")
        try await h.enqueue(JobRequest(kind: "x"), in: a)
        await h.supervisor.shutdown()
        return (h, a, b)
    }

    @Test("restore checks each staged file's kind, schema and workspace before replacing anything: a newer schema, a workspace file as control.sqlite, another workspace's file")
    func restoreChecksSchemaFirst() async throws {
        let (h, a, b) = try await Self.twoWorkspacesAtRest()
        defer { h.directory.cleanup() }
        let service = BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener())
        let good = h.directory.url.appendingPathComponent("good")
        _ = try service.backup(to: good, control: h.control)
        try h.control.close()
        let live = [h.dataDirectory.controlFile, h.dataDirectory.workspaceFile(a), h.dataDirectory.workspaceFile(b)]
        let before = try live.map { try Data(contentsOf: $0) }

        /// A copy of the good backup changed by `edit` (files and manifest), its checksums made right again.
        func variant(_ name: String, _ edit: (URL, inout BackupManifest) throws -> Void) throws -> URL {
            let dir = h.directory.url.appendingPathComponent(name)
            try FileManager.default.copyItem(at: good, to: dir)
            var manifest = try JSONDecoder.sentinel.decode(BackupManifest.self, from: Data(contentsOf: dir.appendingPathComponent(BackupManifest.fileName)))
            try edit(dir, &manifest)
            for i in manifest.files.indices { manifest.files[i].sha256 = try FileSystem.sha256(of: dir.appendingPathComponent(manifest.files[i].file)) }
            try JSONEncoder.sentinelPretty.encode(manifest).write(to: dir.appendingPathComponent(BackupManifest.fileName))
            return dir
        }
        let newer = try variant("newer") { dir, _ in
            let queue = try DatabaseQueue(path: dir.appendingPathComponent("control.sqlite").path)
            try queue.write { db in try db.execute(sql: "INSERT INTO grdb_migrations VALUES ('9999_future')") }
            try queue.writeWithoutTransaction { db in _ = try db.execute(sql: "PRAGMA journal_mode = DELETE") }
            try queue.close()
        }
        let swappedKind = try variant("kind") { dir, _ in
            try FileManager.default.removeItem(at: dir.appendingPathComponent("control.sqlite"))
            try FileManager.default.copyItem(at: dir.appendingPathComponent("workspaces/\(a.rawValue).sqlite"), to: dir.appendingPathComponent("control.sqlite"))
        }
        let swappedWorkspace = try variant("swapped") { _, manifest in
            let i = try #require(manifest.files.firstIndex { $0.workspaceID == b.rawValue })
            manifest.files[i].file = "workspaces/\(a.rawValue).sqlite"
        }
        // Workspace files beside a control.sqlite that does not register them (another backup's).
        let mixed = try variant("mixed") { dir, _ in
            let queue = try DatabaseQueue(path: dir.appendingPathComponent("control.sqlite").path)
            try queue.write { db in try db.execute(sql: "DELETE FROM workspaces WHERE id = ?", arguments: [b.rawValue]) }
            try queue.writeWithoutTransaction { db in _ = try db.execute(sql: "PRAGMA journal_mode = DELETE") }
            try queue.close()
        }
        let futureFormat = try variant("format") { _, manifest in manifest.format = 99 }
        let empty = try variant("empty") { _, manifest in manifest.files = [] }
        let twice = try variant("twice") { _, manifest in
            let entry = try #require(manifest.files.first { $0.workspaceID == a.rawValue })
            manifest.files.insert(entry, at: manifest.files.count)
        }
        let refusals: [(URL, String)] = [
            (futureFormat, "is a backup of format 99, which this binary does not read"),
            (empty, "lists no file: nothing to restore"),
            (newer, "control.sqlite was written by a newer Sentinel"),
            (swappedKind, "control.sqlite is not a control file of Sentinel (it has no users table)"),
            (swappedWorkspace, "is the file of workspace \(a.rawValue), not of \(b.rawValue)"),
            (mixed, "the backup's control.sqlite does not register workspace \(b.rawValue), whose file workspaces/\(b.rawValue).sqlite the backup holds"),
            // Both copies were staged at one place: the move into place failed half-way, control.sqlite already replaced.
            (twice, "its manifest lists the workspace \(a.rawValue) file twice"),
        ]
        #expect(DataVerifier.verify(backup: twice).problems.contains { $0.detail.contains("lists the workspace \(a.rawValue) file twice") })
        for (backup, message) in refusals {
            #expect { try service.restore(from: backup) } throws: { "\($0)".contains(message) }
            #expect(try live.map { try Data(contentsOf: $0) } == before, "nothing replaced by \(backup.lastPathComponent)")
        }
        // A backup copied off the machine and back under umask 0 comes back owner-only all the same.
        for file in try FileManager.default.subpathsOfDirectory(atPath: good.path) where file.hasSuffix(".sqlite") {
            #expect(chmod(good.appendingPathComponent(file).path, 0o666) == 0)
        }
        #expect(try service.restore(from: good).count == 3)
        for file in live {
            let mode = try #require(try FileManager.default.attributesOfItem(atPath: file.path)[.posixPermissions] as? NSNumber)
            #expect(mode.intValue & 0o777 == 0o600, "\(file.lastPathComponent): \(String(mode.intValue, radix: 8))")
        }
    }

    @Test("a restore waits for a backup reading the data directory, and a backup for a restore: a backup taken while a restore replaced the files mixed both and passed verify")
    func backupAndRestoreExcludeEachOther() async throws {
        let (h, _, _) = try await Self.twoWorkspacesAtRest()
        defer { h.directory.cleanup() }
        let service = BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener())
        let good = h.directory.url.appendingPathComponent("good")
        _ = try service.backup(to: good, control: h.control)
        var backingUp = try FileLock.tryAcquireShared(h.dataDirectory.backupLockFile)
        #expect(backingUp != nil)
        // Two backups may run at once.
        #expect(try service.backup(to: h.directory.url.appendingPathComponent("second"), control: h.control).files.count == 3)
        try h.control.close()
        #expect { try service.restore(from: good) } throws: { "\($0)".contains("a backup of \(h.dataDirectory.root.path) is being taken") }
        backingUp = nil
        var restoring = try FileLock.tryAcquire(h.dataDirectory.backupLockFile)
        #expect(restoring != nil)
        let control = try ControlStore(dataDirectory: h.dataDirectory, opener: DatabaseOpener())
        #expect { try service.backup(to: h.directory.url.appendingPathComponent("third"), control: control) } throws: {
            "\($0)".contains("a restore is running")
        }
        #expect(!FileManager.default.fileExists(atPath: h.directory.url.appendingPathComponent("third").path))
        try control.close()
        restoring = nil
        #expect(try service.restore(from: good).count == 3)
    }

    @Test("a full restore routes each integration as its restored workspace file says: one added while the backup was taken (in the workspace file, not in control.sqlite) answered 404")
    func fullRestoreRealignsIntegrationRoutes() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let ws = try h.createWorkspace("routes")
        let integration = try #require(IntegrationID("int_during0000000000"))
        try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in
                try tx.db.execute(sql: """
                    INSERT INTO integrations (id, kind, app_id, api_url, webhook_secret, created_at)
                    VALUES (?, 'github', 1, 'https://127.0.0.1:1/', x'00', 5)
                    """, arguments: [integration.rawValue])
            }
        }
        await h.supervisor.shutdown()
        // The workspace file holds it, control.sqlite (copied first) does not: added between the two copies.
        let out = h.directory.url.appendingPathComponent("backup")
        let service = BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener())
        _ = try service.backup(to: out, control: h.control)
        let integrations = IntegrationService(control: h.control, masterKey: try MasterKey.load(at: h.dataDirectory.masterKeyFile))
        #expect(try await integrations.workspaceOf(integration) == nil)
        try h.control.close()
        var said: [String] = []
        _ = try service.restore(from: out) { said.append($0) }
        let control = try ControlStore(dataDirectory: h.dataDirectory, opener: DatabaseOpener())
        defer { try? control.close() }
        let restored = IntegrationService(control: control, masterKey: try MasterKey.load(at: h.dataDirectory.masterKeyFile))
        #expect(try await restored.workspaceOf(integration) == ws)
        #expect(said.contains { $0.contains("\(integration)") && $0.contains("while this backup was taken") }, "\(said)")
    }

    @Test("a full restore over an older control.sqlite (a standby restored from an older backup before) keeps the backup as it is: it rolled a password back and disabled users created in between")
    func restoreOverOlderStateCarriesNothing() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        _ = try h.createWorkspace("acme")
        await h.supervisor.shutdown()
        let identity = IdentityService(control: h.control, bcryptCost: 4)
        let bob = try identity.createUser(email: "bob@example.com", password: "bob password 12", isAdmin: true)
        let service = BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener())
        let older = h.directory.url.appendingPathComponent("older")
        _ = try service.backup(to: older, control: h.control)
        try identity.setPassword(userID: bob.id, password: "bob's newer password", by: "cli")
        let erin = try identity.createUser(email: "erin@example.com", password: "erin password 1", isAdmin: false)
        let newer = h.directory.url.appendingPathComponent("newer")
        _ = try service.backup(to: newer, control: h.control)
        try h.control.close()
        var said: [String] = []
        _ = try service.restore(from: older)
        _ = try service.restore(from: newer) { said.append($0) }
        let control = try ControlStore(dataDirectory: h.dataDirectory, opener: DatabaseOpener())
        defer { try? control.close() }
        let restored = IdentityService(control: control, bcryptCost: 4)
        #expect(try restored.checkPassword(email: "bob@example.com", password: "bob's newer password") != nil)
        #expect(try restored.user(id: erin.id)?.disabledAt == nil)
        #expect(said.contains { $0.contains("not a later state of this backup") }, "\(said)")
        // Each restore is in the audit log.
        #expect(try control.read { db in try AuditLog.events(in: db) }.last?.type == "BackupRestored")
    }

    @Test("a full restore after a one-workspace restore still keeps what was done since the backup (the workspace restore's entry read as a full restore); with every user of the backup deleted since, they come back disabled, and a restore that leaves no admin who can sign in says so")
    func restoreContinuityAfterWorkspaceRestore() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let ws = try h.createWorkspace("acme")
        await h.supervisor.shutdown()
        let identity = IdentityService(control: h.control, bcryptCost: 4)
        let admin = try identity.createUser(email: "admin@example.com", password: "admin password 1", isAdmin: true)
        let bob = try identity.createUser(email: "bob@example.com", password: "bob password 12", isAdmin: false)
        let service = BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener())
        let out = h.directory.url.appendingPathComponent("backup")
        _ = try service.backup(to: out, control: h.control)
        _ = try identity.disableUser(id: bob.id, by: "cli")
        try h.control.close()
        _ = try service.restore(from: out, workspace: ws)
        _ = try service.restore(from: out)
        var control = try ControlStore(dataDirectory: h.dataDirectory, opener: DatabaseOpener())
        #expect(try IdentityService(control: control, bcryptCost: 4).user(id: bob.id)?.disabledAt != nil)
        #expect(try control.read { db in try AuditLog.events(in: db) }.contains { $0.type == "UserDisabled" })

        // Every user of a backup deleted since (a new admin made first): they come back disabled, the new admin is named.
        let later = h.directory.url.appendingPathComponent("later")
        _ = try service.backup(to: later, control: control)
        let second = IdentityService(control: control, bcryptCost: 4)
        let admin2 = try second.createUser(email: "admin2@example.com", password: "admin2 password", isAdmin: true)
        let adminUser = try #require(try second.user(id: admin.id))
        _ = try second.createToken(for: adminUser, name: "ci", scopes: [.read], expiresInDays: nil)
        _ = try second.createToken(for: admin2, name: "deploy", scopes: [.read], expiresInDays: nil)
        _ = try second.deleteUser(id: bob.id, by: "cli")
        _ = try second.deleteUser(id: admin.id, by: "cli")
        try control.close()
        var said: [String] = []
        _ = try service.restore(from: later) { said.append($0) }
        control = try ControlStore(dataDirectory: h.dataDirectory, opener: DatabaseOpener())
        defer { try? control.close() }
        let restored = IdentityService(control: control, bcryptCost: 4)
        #expect(try restored.user(id: admin.id)?.disabledAt != nil && restored.user(id: bob.id)?.disabledAt != nil)
        #expect(said.contains { $0.contains("1 user (admin@example.com) deleted after this backup is back, disabled") }, "\(said)")
        #expect(said.contains { $0.contains("1 user (admin2@example.com) created after this backup is not in it") }, "\(said)")
        // A token made since is named (its requests get 401); one of a user deleted since went with the user.
        #expect(said.contains { $0.contains("1 API token (deploy of admin2@example.com) created after this backup is not in it: its requests get 401") }, "\(said)")
        #expect(said.contains { $0.contains("no appliance admin can sign in now") }, "\(said)")
    }

    @Test("the same full restore run twice keeps what the first kept (the second put a deleted user, and the token, back to life); a user deleted and made again is told to be deleted first")
    func sameRestoreTwice() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        _ = try h.createWorkspace("acme")
        await h.supervisor.shutdown()
        let identity = IdentityService(control: h.control, bcryptCost: 4)
        _ = try identity.createUser(email: "admin@example.com", password: "admin password 1", isAdmin: true)
        let fired = try identity.createUser(email: "fired@example.com", password: "fired password 1", isAdmin: false)
        let moved = try identity.createUser(email: "moved@example.com", password: "moved password 1", isAdmin: false)
        let token = try identity.createToken(for: fired, name: "ci", scopes: [.read], expiresInDays: nil)
        let service = BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener())
        let out = h.directory.url.appendingPathComponent("backup")
        _ = try service.backup(to: out, control: h.control)
        _ = try identity.deleteUser(id: fired.id, by: "cli")
        _ = try identity.deleteUser(id: moved.id, by: "cli")
        _ = try identity.createUser(email: "moved@example.com", password: "moved password 2", isAdmin: false)
        try h.control.close()
        var said: [String] = []
        _ = try service.restore(from: out) { said.append($0) }
        #expect(said.contains { $0.contains("1 user (moved@example.com) deleted and created again after this backup") }, "\(said)")
        _ = try service.restore(from: out)
        let control = try ControlStore(dataDirectory: h.dataDirectory, opener: DatabaseOpener())
        defer { try? control.close() }
        let restored = IdentityService(control: control, bcryptCost: 4)
        #expect(try restored.user(id: fired.id)?.disabledAt != nil)
        #expect(try restored.authenticate(bearer: token.token) == nil)
    }

    @Test("a full restore goes on past a workspace the backup skipped whose kept file is damaged, and reports it (it stopped half-way with SQLite's 'file is not a database')")
    func fullRestorePastDamagedSkippedWorkspace() async throws {
        let (h, a, b) = try await Self.twoWorkspacesAtRest()
        defer { h.directory.cleanup() }
        try Data(repeating: 0x42, count: 4_096).write(to: h.dataDirectory.workspaceFile(b))
        let service = BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener())
        let out = h.directory.url.appendingPathComponent("backup")
        let manifest = try service.backup(to: out, control: h.control)
        #expect(manifest.skipped?.map(\.workspaceID) == [b.rawValue])
        try h.control.close()
        var said: [String] = []
        #expect(try service.restore(from: out) { said.append($0) }.count == 2)
        #expect(said.contains { $0.contains("workspace \(b.rawValue) is not in this backup") }, "\(said)")
        #expect(!said.contains { $0.contains("workspace \(a.rawValue)") && $0.contains("could not be read") }, "\(said)")
    }

    @Test("restoring one workspace into a data directory without control.sqlite is refused: it reported the file restored and left it served by nothing")
    func workspaceRestoreIntoNewDirectoryRefused() async throws {
        let (h, a, _) = try await Self.twoWorkspacesAtRest()
        defer { h.directory.cleanup() }
        let out = h.directory.url.appendingPathComponent("backup")
        _ = try BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener()).backup(to: out, control: h.control)
        let fresh = DataDirectory(path: h.directory.url.appendingPathComponent("new").path)
        #expect { try BackupService(dataDirectory: fresh, opener: DatabaseOpener()).restore(from: out, workspace: a) } throws: {
            "\($0)".contains("has no control.sqlite") && "\($0)".contains("nothing was restored")
        }
        #expect(!FileManager.default.fileExists(atPath: fresh.workspaceFile(a).path))
        #expect(!FileManager.default.fileExists(atPath: fresh.controlFile.path))
    }

    @Test("the advice for a missing master key quotes a path with a space (pasted as printed, it wrote the key elsewhere)")
    func missingKeyAdviceQuotesPath() {
        #expect(DataDirectory(path: "/srv/new dir/d").missingMasterKey.contains("head -c 32 /dev/urandom > '/srv/new dir/d/secrets/master.key'; chmod 600 '/srv/new dir/d/secrets/master.key'"))
        #expect(DataDirectory(path: "/var/lib/sentinel").missingMasterKey.contains("> /var/lib/sentinel/secrets/master.key;"))
    }

    @Test("a full restore keeps what was done to credentials after the backup: revoked tokens stay revoked, disabled and deleted users disabled, new passwords, ended sessions, audit entries (a revoked token came back to life, its revocation erased)")
    func fullRestoreKeepsCredentialChanges() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        _ = try h.createWorkspace("acme")
        await h.supervisor.shutdown()
        let identity = IdentityService(control: h.control, bcryptCost: 4)
        let alice = try identity.createUser(email: "alice@example.com", password: "alice password 1", isAdmin: true)
        let bob = try identity.createUser(email: "bob@example.com", password: "bob password 12", isAdmin: false)
        let carol = try identity.createUser(email: "carol@example.com", password: "carol password 1", isAdmin: false)
        let token = try identity.createToken(for: alice, name: "ci", scopes: [.read], expiresInDays: nil)
        let session = try identity.createSession(for: alice)
        let service = BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener())
        let out = h.directory.url.appendingPathComponent("backup")
        _ = try service.backup(to: out, control: h.control)
        // After the backup: the token leaks and is revoked, bob leaves, carol is deleted, alice changes her password and signs out.
        try identity.revokeToken(id: token.summary.id, of: alice, by: "alice@example.com")
        _ = try identity.disableUser(id: bob.id, by: "alice@example.com")
        _ = try identity.deleteUser(id: carol.id, by: "alice@example.com")
        try identity.setPassword(userID: alice.id, password: "a new password for alice", by: "cli")
        // (A new password ends the user's sessions; signing out ends one anyway.)
        if let sessionID = try h.control.read({ db in try String.fetchOne(db, sql: "SELECT id FROM sessions") }) { try identity.endSession(id: sessionID) }
        let auditBefore = try h.control.read { db in try AuditLog.events(in: db) }.map(\.id)
        try h.control.close()

        var said: [String] = []
        _ = try service.restore(from: out) { said.append($0) }
        let control = try ControlStore(dataDirectory: h.dataDirectory, opener: DatabaseOpener())
        defer { try? control.close() }
        let restored = IdentityService(control: control, bcryptCost: 4)
        #expect(try restored.authenticate(bearer: token.token) == nil)
        #expect(try restored.authenticate(bearer: session.token) == nil)
        #expect(try restored.user(id: bob.id)?.disabledAt != nil)
        #expect(try restored.user(id: carol.id)?.disabledAt != nil)
        #expect(try restored.checkPassword(email: "alice@example.com", password: "alice password 1") == nil)
        #expect(try restored.checkPassword(email: "alice@example.com", password: "a new password for alice") != nil)
        let auditAfter = try control.read { db in try AuditLog.events(in: db) }
        #expect(auditAfter.dropLast().map(\.id) == auditBefore && auditAfter.last?.type == "BackupRestored")
        for words in ["1 API token (\(token.summary.id) of alice@example.com) revoked after this backup stays revoked",
                      "1 user (bob@example.com) disabled after this backup", "1 user (carol@example.com) deleted after this backup is back, disabled",
                      "1 user (alice@example.com) keeps the password set after this backup", "1 sign-in session that ended",
                      "audit entries written after this backup are kept"] {
            #expect(said.contains { $0.contains(words) }, "\(words): \(said)")
        }
    }

    @Test("a full restore cut off while it moved files into place is named everywhere and finished by running it again, keeping what was done after the backup (run again, it brought a token revoked since back to life)")
    func interruptedRestoreFinishedByRunningItAgain() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let ws = try h.createWorkspace("acme")
        await h.supervisor.shutdown()
        let identity = IdentityService(control: h.control, bcryptCost: 4)
        let alice = try identity.createUser(email: "alice@example.com", password: "alice password 1", isAdmin: true)
        let token = try identity.createToken(for: alice, name: "ci", scopes: [.admin], expiresInDays: nil)
        let service = BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener())
        let out = h.directory.url.appendingPathComponent("backup")
        _ = try service.backup(to: out, control: h.control)
        try identity.revokeToken(id: token.summary.id, of: alice, by: "alice@example.com")
        try h.control.close()

        // Killed after the first file was moved into place (as a kill -9 there would).
        struct Killed: Error {}
        #expect(throws: Killed.self) {
            _ = try service.restore(from: out, workspace: nil, log: { _ in }, afterMove: { _ in throw Killed() })
        }
        let pending = try #require(h.dataDirectory.pendingRestore())
        #expect(pending.from == out.path && pending.full)
        #expect { try h.dataDirectory.prepare() } throws: { "\($0)".contains("did not finish") && "\($0)".contains("sentinel restore --data-dir") }
        let report = DataVerifier.verify(dataDirectory: h.dataDirectory)
        #expect(report.problems.contains { $0.check == "restore" && $0.detail.contains(out.path) }, "\(report.problems)")
        var doctor = Doctor(dataDirectory: h.dataDirectory, config: testConfig(), now: Date(), freeSpace: { _ in 1 << 40 })
        doctor.environment = [:]
        #expect(doctor.run().findings.contains { $0.check == "restore" && $0.severity == .error })
        // One workspace restored meanwhile would leave the rest of the mix as it is.
        #expect { try service.restore(from: out, workspace: ws) } throws: { "\($0)".contains("did not finish; run it again") }

        var said: [String] = []
        _ = try service.restore(from: out) { said.append($0) }
        #expect(said.contains { $0.contains("finishing the restore from \(out.path)") }, "\(said)")
        #expect(said.contains { $0.contains("revoked after this backup stays revoked") }, "\(said)")
        let control = try ControlStore(dataDirectory: h.dataDirectory, opener: DatabaseOpener())
        defer { try? control.close() }
        #expect(try IdentityService(control: control, bcryptCost: 4).authenticate(bearer: token.token) == nil)
        #expect(h.dataDirectory.pendingRestore() == nil)
        #expect(!FileManager.default.fileExists(atPath: h.dataDirectory.replacedControlFile.path))
        #expect(DataVerifier.verify(dataDirectory: h.dataDirectory).problems.isEmpty)
        try h.dataDirectory.prepare()
    }

    @Test("a workspace restore cut off is finished by the same command, named whole (--data-dir, --workspace); another workspace's restore is refused meanwhile (it cleared the record, and a full one rolled every workspace back)")
    func interruptedWorkspaceRestore() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let a = try h.createWorkspace("acme"), b = try h.createWorkspace("beta")
        await h.supervisor.shutdown()
        let service = BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener())
        let out = h.directory.url.appendingPathComponent("backup")
        _ = try service.backup(to: out, control: h.control)
        try h.control.close()
        struct Killed: Error {}
        #expect(throws: Killed.self) {
            _ = try service.restore(from: out, workspace: a, log: { _ in }, afterMove: { _ in throw Killed() })
        }
        let pending = try #require(h.dataDirectory.pendingRestore())
        #expect(pending.workspace == a.rawValue && !pending.full)
        let problem = try #require(h.dataDirectory.unfinishedRestoreProblem())
        #expect(problem.contains("sentinel restore --data-dir \(h.dataDirectory.root.path) --from \(out.path) --workspace \(a.rawValue)"), "\(problem)")
        #expect { try service.restore(from: out, workspace: b) } throws: { "\($0)".contains("before restoring another workspace") }
        #expect(h.dataDirectory.pendingRestore() != nil)
        // A record that cannot be read: the workspace's own restore finishes it (it was refused, as if a full one were pending).
        try Data("{garbled".utf8).write(to: h.dataDirectory.restorePendingFile)
        _ = try service.restore(from: out, workspace: a)
        #expect(h.dataDirectory.pendingRestore() == nil)
        #expect(DataVerifier.verify(dataDirectory: h.dataDirectory).problems.isEmpty)
    }

    @Test("a database file emptied beside a -wal that still holds pages is not opened by serve, doctor or verify (SQLite deleted that -wal, the last copy of what it held)")
    func emptiedBesideLogNotOpened() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let ws = try h.createWorkspace("acme")
        await h.supervisor.shutdown()
        let file = h.dataDirectory.workspaceFile(ws)
        let wal = URL(fileURLWithPath: file.path + "-wal")
        try Data().write(to: file)
        try Data(repeating: 1, count: 4096).write(to: wal)
        #expect { try DatabaseOpener().open(file, kind: .workspace) } throws: { "\($0)".contains("is empty while its -wal holds 4096 bytes") }
        var doctor = Doctor(dataDirectory: h.dataDirectory, config: testConfig(), now: Date(), freeSpace: { _ in 1 << 40 })
        doctor.environment = [:]
        #expect(doctor.run().findings.contains { $0.severity == .error && $0.message.contains("is empty while its -wal holds") })
        #expect(DataVerifier.verify(dataDirectory: h.dataDirectory).problems.contains { $0.detail.contains("is empty while its -wal holds") })
        // Nor by a backup (it destroyed the last copy and exited 0), a look at the workspace, an export's count.
        let service = BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener())
        let manifest = try service.backup(to: h.directory.url.appendingPathComponent("backup"), control: h.control)
        #expect(manifest.skipped?.contains { $0.workspaceID == ws.rawValue && $0.reason.contains("is empty while its -wal holds") } == true,
                "\(String(describing: manifest.skipped))")
        let record = try #require(try h.control.workspace(ws))
        #expect(WorkspaceService(dataDirectory: h.dataDirectory, control: h.control, opener: DatabaseOpener()).summary(record, detailed: true).status == "corrupt")
        #expect((try FileManager.default.attributesOfItem(atPath: wal.path)[.size] as? NSNumber)?.intValue == 4096, "the -wal is still there")
        // The intake journal's too, read by a backup.
        let journal = h.dataDirectory.intakeJournalFile
        try Data().write(to: journal)
        try Data(repeating: 1, count: 4096).write(to: URL(fileURLWithPath: journal.path + "-wal"))
        #expect { try IntakeJournal.deliveries(for: ws, in: h.dataDirectory) } throws: { "\($0)".contains("is empty while its -wal holds") }
        #expect(FileManager.default.fileExists(atPath: journal.path + "-wal"))
        // Its -wal without it: named by verify and doctor (they said all was well; serve refused).
        try FileManager.default.removeItem(at: journal)
        #expect(DataVerifier.verify(dataDirectory: h.dataDirectory).problems.contains { $0.detail.contains("intake-journal.sqlite-wal is there without") })
        #expect(doctor.run().findings.contains { $0.check == "intake-journal" && $0.severity == .error })
    }

    @Test("restoring a workspace whose file was emptied beside its -wal keeps that -wal aside (it was deleted without a word, the last copy of what it held)")
    func restoreKeepsTheWalOfAnEmptiedFile() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let ws = try h.createWorkspace("acme")
        await h.supervisor.shutdown()
        let service = BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener())
        let out = h.directory.url.appendingPathComponent("backup")
        _ = try service.backup(to: out, control: h.control)
        try h.control.close()
        let file = h.dataDirectory.workspaceFile(ws)
        try Data().write(to: file)
        try Data(repeating: 1, count: 4096).write(to: URL(fileURLWithPath: file.path + "-wal"))
        var said: [String] = []
        _ = try service.restore(from: out, workspace: ws) { said.append($0) }
        let kept = file.path + "-wal.before-restore"
        #expect((try FileManager.default.attributesOfItem(atPath: kept)[.size] as? NSNumber)?.intValue == 4096)
        #expect(said.contains { $0.contains("that -wal is kept as \(kept)") }, "\(said)")
        #expect(DataVerifier.verify(dataDirectory: h.dataDirectory).problems.isEmpty)
    }

    @Test("a data directory with workspace files but no control.sqlite is not started as a new, empty appliance, and doctor names the files")
    func workspaceFilesWithoutControlRefused() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let ws = try h.createWorkspace("acme")
        await h.supervisor.shutdown()
        try h.control.close()
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: h.dataDirectory.controlFile.path + suffix) }
        #expect { try h.dataDirectory.prepare() } throws: {
            "\($0)".contains("control.sqlite is missing") && "\($0)".contains("\(ws.rawValue).sqlite") && "\($0)".contains("sentinel restore --from")
        }
        #expect(!FileManager.default.fileExists(atPath: h.dataDirectory.controlFile.path))
        var doctor = Doctor(dataDirectory: h.dataDirectory, config: testConfig(), now: Date(), freeSpace: { _ in 1 << 40 })
        doctor.environment = [:]
        let schema = doctor.run().findings.filter { $0.check == "schema" }
        #expect(schema.contains { $0.severity == .error && $0.message.contains("\(ws.rawValue).sqlite") }, "\(schema)")
        #expect(!schema.contains { $0.message.contains("no control.sqlite yet") }, "\(schema)")
    }

    @Test("a config file that cannot be read says why (a missing one and one the service may not read said the same)")
    func unreadableConfigSaysWhy() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let missing = dir.url.appendingPathComponent("nope.yaml").path
        #expect { try ConfigLoader.load(file: missing, environment: [:]) } throws: { "\($0)".contains("cannot read config file \(missing): No such file or directory") }
        #expect { try ConfigLoader.load(file: dir.url.path, environment: [:]) } throws: { "\($0)".contains("cannot read config file \(dir.url.path): ") }
    }

    @Test("a workspace file without a table its schema version has is refused when opened (each request reading it was a 500) and named by verify (it said all checks passed)")
    func missingTableRefused() async throws {
        let (h, a, b) = try await Self.twoWorkspacesAtRest()
        defer { h.directory.cleanup() }
        let fileB = h.dataDirectory.workspaceFile(b)
        let dropper = try DatabaseQueue(path: fileB.path)
        try await dropper.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA foreign_keys = OFF")
            try db.execute(sql: "DROP TABLE policy_versions")
        }
        try dropper.close()
        #expect { try DatabaseOpener().open(fileB, kind: .workspace) } throws: {
            "\($0)".contains("lacks the table(s) policy_versions its schema version has")
        }
        let report = DataVerifier.verify(dataDirectory: h.dataDirectory)
        #expect(report.problems.contains { $0.check == "schema" && $0.file.contains(b.rawValue) && $0.detail.contains("policy_versions") }, "\(report.problems)")
        #expect(!report.problems.contains { $0.file.contains(a.rawValue) }, "the other workspace is fine")
        // An empty file in its place: named too (it passed, while serve and doctor took it offline).
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: fileB.path + suffix) }
        try Data().write(to: fileB)
        let empty = DataVerifier.verify(dataDirectory: h.dataDirectory)
        #expect(empty.problems.contains { $0.check == "schema" && $0.file.contains(b.rawValue) && $0.detail.contains("holds no Sentinel schema") },
                "\(empty.problems)")
    }

    @Test("a workspace file that is empty, foreign or another workspace's, and a control.sqlite emptied beside workspace files, are refused when opened, never set up as new")
    func openRefusesFilesNotItsOwn() async throws {
        let (h, a, b) = try await Self.twoWorkspacesAtRest()
        defer { h.directory.cleanup() }
        let opener = DatabaseOpener()
        let fileB = h.dataDirectory.workspaceFile(b)
        // Another workspace's file in b's place (copied; a link behaves the same).
        try FileManager.default.removeItem(at: fileB)
        try FileManager.default.copyItem(at: h.dataDirectory.workspaceFile(a), to: fileB)
        #expect { try opener.open(fileB, kind: .workspace) } throws: { "\($0)".contains("is the file of workspace \(a.rawValue), not of \(b.rawValue)") }
        // An empty file, and a foreign SQLite file.
        try Data().write(to: fileB)
        #expect { try opener.open(fileB, kind: .workspace) } throws: { "\($0)".contains("holds no Sentinel schema") }
        // Left as it was: it was given a header (4,096 bytes) before it was refused.
        #expect(try Data(contentsOf: fileB).isEmpty)
        let tables = try DatabaseQueue(path: fileB.path)
        #expect(try await tables.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM sqlite_master")! } == 0, "not set up as a new file")
        try tables.close()
        try FileManager.default.removeItem(at: fileB)
        let foreign = try DatabaseQueue(path: fileB.path)
        try await foreign.write { db in try db.execute(sql: "CREATE TABLE notes (text TEXT)") }
        try foreign.close()
        #expect { try opener.open(fileB, kind: .workspace) } throws: { "\($0)".contains("holds no Sentinel schema") }
        // Still in the journal mode it had: it was switched to WAL before it was refused.
        let untouched = try DatabaseQueue(path: fileB.path)
        #expect(try await untouched.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") } == "delete")
        try untouched.close()
        // control.sqlite emptied while workspace files remain.
        try h.control.close()
        for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: h.dataDirectory.controlFile.path + suffix) }
        try Data().write(to: h.dataDirectory.controlFile)
        #expect { try ControlStore(dataDirectory: h.dataDirectory, opener: opener) } throws: {
            "\($0)".contains("control.sqlite holds no Sentinel schema while workspaces/ holds 2 workspace file(s)")
        }
        // The healthy file still opens.
        try opener.open(h.dataDirectory.workspaceFile(a), kind: .workspace).close()
    }

    @Test("backup-prune.sh deletes incomplete backups an interrupted backup left behind a complete one, never one still being written")
    func pruneRemovesInterruptedBackups() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let ws = try h.createWorkspace("acme")
        try await h.enqueue(JobRequest(kind: "x"), in: ws)
        await h.supervisor.shutdown()
        let service = BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener())
        let nightly = h.directory.url.appendingPathComponent("nightly")
        let fm = FileManager.default
        func path(_ name: String) -> URL { nightly.appendingPathComponent(name) }
        /// What a backup killed half-way leaves: some files, no manifest, its lock file released.
        func interrupted(_ name: String) throws {
            try fm.createDirectory(at: path(name).appendingPathComponent("workspaces"), withIntermediateDirectories: true)
            try Data(repeating: 1, count: 4096).write(to: path(name).appendingPathComponent("control.sqlite"))
            try Data().write(to: path(name).appendingPathComponent(BackupManifest.inProgressFileName))
        }
        try interrupted("20261201T033000Z")
        try fm.removeItem(at: path("20261201T033000Z").appendingPathComponent(BackupManifest.inProgressFileName))  // an older Sentinel's
        _ = try service.backup(to: path("20261202T033000Z"), control: h.control)
        #expect(!fm.fileExists(atPath: path("20261202T033000Z").appendingPathComponent(BackupManifest.inProgressFileName).path),
                "a finished backup leaves no lock file")
        try interrupted("20261203T033000Z")
        try interrupted("20261203T040000Z")
        // A backup still writing 20261203T040000Z (begun by hand before the newer one finished).
        var running = Optional(try #require(try FileLock.tryAcquire(path("20261203T040000Z").appendingPathComponent(BackupManifest.inProgressFileName))))
        #expect(throws: StorageError.conflict("another backup is being written into \(path("20261203T040000Z").path); choose another directory")) {
            try service.backup(to: path("20261203T040000Z"), control: h.control)
        }
        _ = try service.backup(to: path("20261204T033000Z"), control: h.control)
        try interrupted("20261205T033000Z")
        try fm.createDirectory(at: path("not-a-backup"), withIntermediateDirectories: false)

        let script = Self.root.appendingPathComponent("appliance/backup-prune.sh").path
        let prune = try ChildProcess(executable: "/bin/sh", arguments: [script, nightly.path, "14"], environment: ProcessInfo.processInfo.environment)
        #expect(await prune.waitForExit(timeout: .seconds(30)) == 0, "\(prune.stderr)")
        #expect(try fm.contentsOfDirectory(atPath: nightly.path).sorted() == [
            "20261202T033000Z", "20261203T040000Z", "20261204T033000Z", "20261205T033000Z", "not-a-backup"])
        #expect(prune.stdout.contains("removing \(path("20261201T033000Z").path) (incomplete: the backup writing it was interrupted)"))
        #expect(prune.stderr.contains("\(path("20261203T040000Z").path) is incomplete and a backup is still writing it; left in place"))
        #expect(prune.stderr.contains("\(path("20261205T033000Z").path) has no manifest.json (incomplete backup, newer than every complete one)"))

        // Once that backup has stopped (killed: its lock released), the next prune removes it; KEEP counts complete ones only.
        #expect(running != nil)
        running = nil
        let again = try ChildProcess(executable: "/bin/sh", arguments: [script, nightly.path, "1"], environment: ProcessInfo.processInfo.environment)
        #expect(await again.waitForExit(timeout: .seconds(30)) == 0, "\(again.stderr)")
        #expect(try fm.contentsOfDirectory(atPath: nightly.path).sorted() == ["20261204T033000Z", "20261205T033000Z", "not-a-backup"])
    }

    @Test("a backup the destination disk has no room for is refused before anything is written, saying how much it needs")
    func backupWithoutRoomRefused() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let ws = try h.createWorkspace("a")
        try await h.enqueue(JobRequest(kind: "x"), in: ws)
        await h.supervisor.shutdown()
        let out = h.directory.url.appendingPathComponent("backup")
        let cramped = BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener(), freeSpace: { _ in 4_096 })
        #expect {
            try cramped.backup(to: out, control: h.control)
        } throws: { error in
            "\(error)".contains("not enough free space for the backup") && "\(error)".contains("4096 are free") && "\(error)".contains("nothing was written")
        }
        #expect(!FileManager.default.fileExists(atPath: out.path))
    }

    @Test("a backup that fills its disk (a small tmpfs) fails and frees what it had written",
          .enabled(if: geteuid() == 0, "mounting a file system needs root"))
    func backupFillingTheDiskFreesIt() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let ws = try h.createWorkspace("big")
        let actor = try await h.supervisor.pin(ws)
        try await actor.write { tx in
            try tx.db.execute(sql: "CREATE TABLE IF NOT EXISTS ballast (pad BLOB)")
            for _ in 0..<64 { try tx.db.execute(sql: "INSERT INTO ballast (pad) VALUES (randomblob(16384))") }
        }
        await h.supervisor.unpin(ws)
        await h.supervisor.shutdown()
        let disk = h.directory.url.appendingPathComponent("small-disk")
        try FileManager.default.createDirectory(at: disk, withIntermediateDirectories: false)
        let mount = try ChildProcess(executable: "/usr/bin/mount", arguments: ["-t", "tmpfs", "-o", "size=512k", "tmpfs", disk.path], environment: [:])
        // Some containers refuse mounts even to root: nothing to observe there.
        guard mount.waitUntilExitBlocking() == 0 else { return }
        defer { _ = try? ChildProcess(executable: "/usr/bin/umount", arguments: [disk.path], environment: [:]).waitUntilExitBlocking() }
        // Told there is room (the check is bypassed), the copy meets the full disk half-way.
        let unchecked = BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener(), freeSpace: { _ in nil })
        let out = disk.appendingPathComponent("20261205T030000Z")
        #expect(throws: (any Error).self) { try unchecked.backup(to: out, control: h.control) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: disk.path) == [], "the disk is empty again")
        // The real check refuses it up front.
        #expect {
            try BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener()).backup(to: out, control: h.control)
        } throws: { error in "\(error)".contains("not enough free space for the backup") }
    }

    @Test("a file that passes its checksum but fails integrity_check is refused")
    func integrityChecked() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace("a")
        await h.supervisor.shutdown()
        let out = h.directory.url.appendingPathComponent("backup")
        let manifest = try BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener()).backup(to: out, workspace: ws, control: h.control)
        // Corrupt a page and re-sign the manifest so only the integrity check can catch it.
        let copy = out.appendingPathComponent(manifest.files[0].file)
        var bytes = try Data(contentsOf: copy)
        for i in 4096..<4200 { bytes[i] = 0xEE }
        try bytes.write(to: copy)
        var forged = manifest
        forged.files[0].sha256 = SHA256Hex.of(bytes)
        try JSONEncoder.sentinelPretty.encode(forged).write(to: out.appendingPathComponent("manifest.json"))
        #expect {
            try BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener()).restore(from: out, workspace: ws)
        } throws: { error in
            "\(error)".contains("integrity") || "\(error)".contains("not a readable database")
        }
        h.directory.cleanup()
    }
}

@Suite("Configuration")
struct ConfigTests {
    @Test("defaults, then the YAML file, then SENTINEL_ environment variables")
    func layering() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let file = dir.url.appendingPathComponent("sentinel.yaml")
        try """
        server:
          port: 9443
          tls:
            enabled: false
        jobs:
          global_concurrency: 32
        """.write(to: file, atomically: true, encoding: .utf8)
        let fromFile = try ConfigLoader.load(file: file.path, environment: [:])
        #expect(fromFile.server.port == 9443)
        #expect(fromFile.server.tlsEnabled == false)
        #expect(fromFile.jobs.globalConcurrency == 32)
        #expect(fromFile.jobs.workspaceConcurrency == SentinelConfig().jobs.workspaceConcurrency)
        let withEnv = try ConfigLoader.load(file: file.path, environment: ["SENTINEL_SERVER_PORT": "7000", "SENTINEL_STORAGE_SYNCHRONOUS": "normal"])
        #expect(withEnv.server.port == 7000)
        #expect(withEnv.storage.synchronous == .normal)
        #expect(try ConfigLoader.load(file: nil, environment: [:]) == SentinelConfig())
    }

    @Test("unknown keys and wrong types are errors naming the key")
    func errors() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let file = dir.url.appendingPathComponent("bad.yaml")
        try "server:\n  prot: 1\n".write(to: file, atomically: true, encoding: .utf8)
        #expect { try ConfigLoader.load(file: file.path, environment: [:]) } throws: { "\($0)".contains("server.prot") }
        try "jobs:\n  max_attempts: many\n".write(to: file, atomically: true, encoding: .utf8)
        #expect { try ConfigLoader.load(file: file.path, environment: [:]) } throws: { "\($0)".contains("jobs.max_attempts") }
        // A YAML syntax error is one line (libyaml's source line and caret made it several).
        try "server: [\n".write(to: file, atomically: true, encoding: .utf8)
        #expect { try ConfigLoader.load(file: file.path, environment: [:]) } throws: {
            "\($0)".contains("invalid YAML") && !"\($0)".contains("\n")
        }
        // ... keeping the cause after a context line.
        try "server:\n\tport: 1\n".write(to: file, atomically: true, encoding: .utf8)
        #expect { try ConfigLoader.load(file: file.path, environment: [:]) } throws: {
            "\($0)".contains("found character that cannot start any token") && !"\($0)".contains("\n")
        }
        // One key nested and again dotted: the later one won, silently.
        try "server:\n  port: 46501\nserver.port: 46502\n".write(to: file, atomically: true, encoding: .utf8)
        #expect { try ConfigLoader.load(file: file.path, environment: [:]) } throws: { "\($0)".contains("'server.port' is given twice") }
        // Not UTF-8: said so (it was "cannot read config file", like a file that is not there).
        try Data([0x73, 0x65, 0x72, 0x76, 0x65, 0x72, 0x3a, 0x20, 0xff, 0xfe, 0x0a]).write(to: file)
        #expect { try ConfigLoader.load(file: file.path, environment: [:]) } throws: { "\($0)".contains("is not valid UTF-8 text") }
        #expect { try ConfigLoader.load(file: nil, environment: ["SENTINEL_SERVER_TLS_ENABLED": "maybe"]) } throws: {
            "\($0)".contains("SENTINEL_SERVER_TLS_ENABLED")
        }
        #expect(throws: ConfigError.self) { try ConfigLoader.load(file: dir.url.appendingPathComponent("absent.yaml").path, environment: [:]) }
        // A renamed key names its replacement.
        try "jobs:\n  retention_hours: 48\n".write(to: file, atomically: true, encoding: .utf8)
        #expect { try ConfigLoader.load(file: file.path, environment: [:]) } throws: { "\($0)".contains("replaced by retention.jobs_days") }
        try "retention:\n  deliveries_days: 7\n  jobs_days: 3\nstorage:\n  wal_max_bytes: 1000\n".write(to: file, atomically: true, encoding: .utf8)
        #expect { try ConfigLoader.load(file: file.path, environment: [:]) } throws: { "\($0)".contains("storage.wal_max_bytes") }
        try "retention:\n  deliveries_days: 7\n  jobs_days: 3\n".write(to: file, atomically: true, encoding: .utf8)
        let retention = try ConfigLoader.load(file: file.path, environment: [:]).retention
        #expect(retention.deliveriesDays == 7 && retention.jobsDays == 3)
    }

    @Test("every number in the configuration has bounds: a value past them is refused with the key's name, not trapped on later")
    func numbersBounded() throws {
        let numeric = ConfigLoader.keys.filter { $0.range != nil }
        #expect(numeric.count >= 35)
        for key in numeric {
            // A timeout of 1e300 seconds once passed and trapped where it became a Duration (serve crashed at start).
            #expect { try ConfigLoader.load(file: nil, environment: [key.environmentName: "9223372036854775807"]) } throws: {
                "\($0)".contains("\(key.path) must be \(key.range!), got ")
            }
            #expect { try ConfigLoader.load(file: nil, environment: [key.environmentName: "1e300"]) } throws: {
                "\($0)".contains("\(key.path) must be \(key.range!), got ") || "\($0)".hasSuffix("'1e300' is not an integer")
            }
        }
        #expect(throws: ConfigError.self) { try ConfigLoader.load(file: nil, environment: ["SENTINEL_JOBS_POLL_INTERVAL_MS": "0"]) }
        #expect(throws: ConfigError.self) { try ConfigLoader.load(file: nil, environment: ["SENTINEL_STORAGE_BUSY_TIMEOUT_MS": "-1"]) }
        #expect(throws: ConfigError.self) { try ConfigLoader.load(file: nil, environment: ["SENTINEL_JOBS_LEASE_SECONDS": "0"]) }
        var config = SentinelConfig()
        config.server.port = 99_999                        // as `serve --port` sets it
        #expect { try ConfigLoader.validate(config) } throws: { "\($0)" == "server.port must be 0...65535, got 99999" }
        #expect(try ConfigLoader.load(file: nil, environment: ["SENTINEL_SERVER_IDLE_TIMEOUT_SECONDS": "86400"]).server.idleTimeoutSeconds == 86_400)
        #expect(throws: ConfigError.self) { try ConfigLoader.load(file: nil, environment: ["SENTINEL_SERVER_EVENT_LOOP_THREADS": "-1"]) }
        #expect(try ConfigLoader.load(file: nil, environment: ["SENTINEL_SERVER_EVENT_LOOP_THREADS": "3"]).server.eventLoopThreads == 3)
    }

    @Test("appliance/sentinel.example.yaml documents every key and loads to the defaults")
    func exampleFileIsComplete() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let example = root.appendingPathComponent("appliance/sentinel.example.yaml")
        let text = try String(contentsOf: example, encoding: .utf8)
        for key in ConfigLoader.keys {
            let leaf = key.path.split(separator: ".").last!
            #expect(text.contains("\(leaf):"), "\(key.path) is not documented")
            #expect(text.contains(key.environmentName), "\(key.environmentName) is not documented")
            if let range = key.range {
                let line = text.split(separator: "\n").first { $0.contains(key.environmentName) } ?? ""
                #expect(line.contains("Range: \(range)."), "\(key.path)'s range \(range) is not documented")
            }
        }
        #expect(try ConfigLoader.load(file: example.path, environment: [:]) == SentinelConfig())
    }

    @Test("the AI price table can be overridden from a YAML file; bad entries are errors")
    func priceTableOverrides() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let file = dir.url.appendingPathComponent("prices.yaml")
        try "\"openai/gpt-4o-mini\": {input_per_million: 1, output_per_million: 2}\n\"openai-compatible/llama*\": {input_per_million: 0.5, output_per_million: 0.5}\n"
            .write(to: file, atomically: true, encoding: .utf8)
        let table = try PriceTable.load(overridesFile: file.path)
        let usage = TokenUsage(inputTokens: 1_000_000, outputTokens: 1_000_000)
        #expect(table.cost(usage, provider: .openai, model: "gpt-4o-mini") == 3)
        #expect(table.cost(usage, provider: .openAICompatible, model: "llama3.1") == 1)
        #expect(try PriceTable.load(overridesFile: nil) == PriceTable.builtIn)
        try "\"gpt-4o\": {input_per_million: -1}\n".write(to: file, atomically: true, encoding: .utf8)
        #expect(throws: ConfigError.self) { try PriceTable.load(overridesFile: file.path) }
        // Numbers past any price: infinite costs would break the spend limits and usage reports.
        for price in [".inf", ".nan", "-.inf", "1e300", "10001"] {
            try "\"openai/gpt-4o\": {input_per_million: \(price), output_per_million: 1}\n".write(to: file, atomically: true, encoding: .utf8)
            #expect("\(price)", performing: { try PriceTable.load(overridesFile: file.path) }, throws: { error in
                "\(error)".contains("input_per_million must be a number of USD from 0 to 10000")
            })
        }
    }
}
