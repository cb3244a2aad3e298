import Foundation
import GRDB
import SentinelCore
import SentinelTestSupport
import Synchronization
import Testing

@Suite("Workspace lifecycle")
struct WorkspaceLifecycleTests {
    @Test("rename changes the name only, refuses a taken or blank one, and is audited")
    func rename() throws {
        let h = try TestHarness()
        let acme = try h.createWorkspace("acme")
        _ = try h.createWorkspace("globex")
        #expect(throws: StorageError.conflict("a workspace named 'globex' already exists")) { try h.workspaces.rename(acme, to: "globex", by: "cli") }
        #expect(throws: StorageError.self) { try h.workspaces.rename(acme, to: "  ", by: "cli") }
        // A name shaped like an id would read as another workspace's id, and commands would never find it by name.
        let idShaped = StorageError.invalid("workspace name '\(acme.rawValue)' has the shape of a workspace id (ws_ and 16 letters or digits); choose another name")
        #expect(throws: idShaped) { try h.workspaces.rename(try h.workspaces.find("globex").workspaceID!, to: acme.rawValue, by: "cli") }
        #expect(throws: idShaped) { try h.createWorkspace(acme.rawValue) }
        #expect(try h.createWorkspace("ws_not_an_id").rawValue != "ws_not_an_id")
        let renamed = try h.workspaces.rename(acme, to: "Acme Corp", by: "cli")
        #expect(renamed.id == acme.rawValue && renamed.name == "Acme Corp")
        #expect(try h.workspaces.find("Acme Corp").id == acme.rawValue)
        #expect(throws: WorkspaceError.self) { try h.workspaces.find("acme") }
        let audit = try h.workspaces.auditEvents(of: acme)
        #expect(audit.map(\.type) == ["WorkspaceCreated", "WorkspaceRenamed"])
        #expect(audit.last?.data.contains("\"from\":\"acme\"") == true && audit.last?.data.contains("\"to\":\"Acme Corp\"") == true)
    }

    @Test("deleting a workspace with a deep queue running starts no more of its jobs: the deletion waits only for those running")
    func deleteWithDeepQueue() async throws {
        let deleting = Mutex(false)
        let starts = Recorder<Bool>()
        var registry = JobRegistry()
        registry.register("slow") { _ in
            starts.append(deleting.withLock { $0 })
            try await Task.sleep(for: .milliseconds(20))
        }
        let h = try TestHarness(config: testConfig { $0.jobs.workspaceConcurrency = 2 }, registry: registry)
        let doomed = try h.createWorkspace("doomed")
        try await h.supervisor.withWorkspace(doomed) { actor in
            try await actor.write { tx in for _ in 0..<2_000 { try tx.enqueue(JobRequest(kind: "slow")) } }
        }
        h.startScheduler()
        #expect(await eventually { starts.count >= 10 })
        deleting.withLock { $0 = true }
        _ = try await h.supervisor.deleteWorkspace(doomed, using: h.workspaces, by: "cli")
        // Only what was claimed before the call reached the supervisor starts afterwards (a few
        // jobs; the bound leaves room for a slow machine), not the rest of the queue (1,990 before).
        let late = starts.all.filter { $0 }.count
        #expect(late < 200, "\(late) jobs started after the deletion began, of \(starts.count)")
        #expect(starts.count < 1_000)
        #expect(try h.control.workspace(doomed) == nil)
        await h.stop()
    }

    @Test("deleting waits for work inside the workspace only so long: past the limit nothing is deleted, the workspace is served again and the caller is told why (a review of a minute held the request and a SIGTERM)")
    func deleteGivesUpOnLongWork() async throws {
        let h = try TestHarness()
        let doomed = try h.createWorkspace("doomed")
        await h.supervisor.setDeleteWaitLimit(.milliseconds(300))
        let (release, releaser) = AsyncStream<Void>.makeStream()
        let (inside, entered) = AsyncStream<Void>.makeStream()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                defer { entered.finish() }
                try await h.supervisor.withWorkspace(doomed) { _ in
                    entered.yield()
                    for await _ in release { break }
                }
            }
            for await _ in inside { break }
            await #expect { try await h.supervisor.deleteWorkspace(doomed, using: h.workspaces, by: "cli") } throws: {
                "\($0)".contains("cannot be deleted now: work is running inside it")
            }
            #expect(try h.control.workspace(doomed) != nil)
            #expect(FileManager.default.fileExists(atPath: h.dataDirectory.workspaceFile(doomed).path))
            // Served again: new work gets in.
            #expect(try await h.supervisor.withWorkspace(doomed) { try await $0.jobs().count } == 0)
            releaser.yield()
            releaser.finish()
            try await group.waitForAll()
        }
        // With the work done, it is deleted.
        _ = try await h.supervisor.deleteWorkspace(doomed, using: h.workspaces, by: "cli")
        #expect(try h.control.workspace(doomed) == nil)
        await h.supervisor.shutdown()
    }

    @Test("deleting while serving waits for work inside the workspace, backs it up, removes file and control rows, and never reopens it")
    func deleteWhileServing() async throws {
        let h = try TestHarness()
        let doomed = try h.createWorkspace("doomed")
        let kept = try h.createWorkspace("kept")
        let identity = IdentityService(control: h.control, bcryptCost: 4)
        let user = try identity.createUser(email: "owner@example.com", password: "a long enough password", isAdmin: false)
        try identity.setRole(.owner, userID: user.id, in: doomed)
        try h.control.write { db in
            try db.execute(sql: "INSERT INTO integrations (id, workspace_id, kind, created_at) VALUES ('int_doomed0000000000', ?, 'github', 0)",
                           arguments: [doomed.rawValue])
        }
        try await h.enqueue(JobRequest(kind: "later", runAt: Date().addingTimeInterval(3600)), in: doomed)

        // Work inside the workspace holds it open; the deletion waits for it.
        // (The enqueue above left the file open, so "open" does not mean "in use": the test waits
        // for the work to be inside before it deletes, or a loaded machine deletes first.)
        let (release, releaser) = AsyncStream<Void>.makeStream()
        let (inside, entered) = AsyncStream<Void>.makeStream()
        let deletion = try await withThrowingTaskGroup(of: WorkspaceDeletion?.self) { group in
            group.addTask {
                defer { entered.finish() }  // (a failure to enter ends the wait below)
                try await h.supervisor.withWorkspace(doomed) { actor in
                    entered.yield()
                    for await _ in release { break }
                    try await actor.write { tx in try tx.append(DomainEvent(type: "LastWords")) }
                }
                return nil
            }
            for await _ in inside { break }
            group.addTask { try await h.supervisor.deleteWorkspace(doomed, using: h.workspaces, by: "cli") }
            #expect(await eventually { await h.supervisor.isWaitingToDelete(doomed) })
            // New work is refused from now on; the workspace is still there.
            await #expect(throws: WorkspaceError.notFound(doomed.rawValue)) { try await h.supervisor.withWorkspace(doomed) { _ in 0 } }
            #expect(FileManager.default.fileExists(atPath: h.dataDirectory.workspaceFile(doomed).path))
            releaser.yield()
            releaser.finish()
            var result: WorkspaceDeletion?
            for try await value in group { if let value { result = value } }
            return try #require(result)
        }

        #expect(!FileManager.default.fileExists(atPath: h.dataDirectory.workspaceFile(doomed).path))
        #expect(try h.control.workspace(doomed) == nil)
        let left = try h.control.read { db in
            try ["memberships", "integrations", "pending_work"].map {
                try Int.fetchOne(db, sql: "SELECT count(*) FROM \($0) WHERE workspace_id = ?", arguments: [doomed.rawValue]) ?? -1
            }
        }
        #expect(left == [0, 0, 0])
        #expect(try IntegrationService(control: h.control, masterKey: MasterKey.load(at: h.dataDirectory.masterKeyFile))
            .isRetired(IntegrationID("int_doomed0000000000")!))
        // The final backup holds the last write, and the control rows beside it.
        let backup = URL(fileURLWithPath: deletion.backup)
        #expect(backup.path.hasPrefix(h.dataDirectory.deletedBackupsDirectory.path))
        let copy = try DatabaseQueue(path: backup.appendingPathComponent("workspaces/\(doomed).sqlite").path)
        #expect(try await copy.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM events WHERE type = 'LastWords'") } == 1)
        try await copy.close()
        let rows = try String(contentsOf: backup.appendingPathComponent("workspace.json"), encoding: .utf8)
        #expect(rows.contains("int_doomed0000000000") && rows.contains(user.id))
        #expect(deletion.integrations == ["int_doomed0000000000"] && deletion.members == 1)
        #expect(try h.workspaces.auditEvents(of: doomed).map(\.type) == ["WorkspaceCreated", "WorkspaceDeleted"])
        // Never opened again, the other workspace unaffected.
        await #expect(throws: WorkspaceError.notFound(doomed.rawValue)) { try await h.supervisor.withWorkspace(doomed) { _ in 0 } }
        #expect(!(await h.supervisor.openWorkspaceIDs.contains(doomed)))
        #expect(try await h.supervisor.withWorkspace(kept) { try await $0.jobs().count } == 0)
        await h.supervisor.shutdown()
    }

    @Test("a workspace whose file is not a database can be deleted: its bytes are kept beside the final backup's control rows (it failed with a raw SQLite error, a 500 from the API); its refused-delivery and provider-circuit rows go too")
    func deleteUnreadableWorkspace() async throws {
        let h = try TestHarness()
        let doomed = try h.createWorkspace("doomed")
        await h.supervisor.shutdown()
        try h.control.write { db in
            try db.execute(sql: "INSERT INTO integration_auth_failures (integration_id, workspace_id, failures, last_failed_at) VALUES ('int_doomed0000000000', ?, 3, 0)",
                           arguments: [doomed.rawValue])
            try db.execute(sql: "INSERT INTO provider_circuits (workspace_id, provider_id, opened_at, retry_at) VALUES (?, 'p', 0, 0)",
                           arguments: [doomed.rawValue])
        }
        let garbage = Data((0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
        try garbage.write(to: h.dataDirectory.workspaceFile(doomed))
        let deletion = try h.workspaces.delete(doomed, by: "cli")
        #expect(!FileManager.default.fileExists(atPath: h.dataDirectory.workspaceFile(doomed).path))
        #expect(try h.control.workspace(doomed) == nil)
        let kept = URL(fileURLWithPath: deletion.backup).appendingPathComponent("\(doomed.rawValue).sqlite.unreadable")
        #expect(try Data(contentsOf: kept) == garbage)
        #expect(FileManager.default.fileExists(atPath: URL(fileURLWithPath: deletion.backup).appendingPathComponent("workspace.json").path))
        let deleted = try #require(try h.workspaces.auditEvents(of: doomed).last)
        #expect(deleted.type == "WorkspaceDeleted" && deleted.data.contains("could not be read as a database"), "\(deleted)")
        let left = try h.control.read { db in
            try ["integration_auth_failures", "provider_circuits"].map {
                try Int.fetchOne(db, sql: "SELECT count(*) FROM \($0) WHERE workspace_id = ?", arguments: [doomed.rawValue]) ?? -1
            }
        }
        #expect(left == [0, 0])
    }
}
