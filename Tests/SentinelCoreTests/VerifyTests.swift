import Foundation
import GRDB
@testable import SentinelCore
import SentinelTestSupport
import Testing

@Suite("sentinel verify")
struct VerifyTests {
    /// A data directory with one workspace holding three events.
    static func populated() async throws -> (TestHarness, WorkspaceID) {
        let h = try TestHarness()
        let ws = try h.createWorkspace("checked")
        let actor = try await h.supervisor.pin(ws)
        try await actor.write { tx in
            for i in 0..<3 { try tx.append(DomainEvent(type: "test.event", subject: "s\(i)")) }
        }
        await h.supervisor.unpin(ws)
        await h.supervisor.shutdown()
        return (h, ws)
    }

    @Test("a clean data directory and a fresh backup of it pass every check")
    func cleanPasses() async throws {
        let (h, ws) = try await Self.populated()
        defer { h.directory.cleanup() }
        let report = DataVerifier.verify(dataDirectory: h.dataDirectory)
        #expect(report.problems == [])
        #expect(report.files.map(\.file) == ["control.sqlite", "workspaces/\(ws.rawValue).sqlite"])
        #expect(report.files.last?.events == 3)
        let out = h.directory.url.appendingPathComponent("backup")
        _ = try BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener()).backup(to: out, control: h.control)
        let backup = DataVerifier.verify(backup: out)
        #expect(backup.ok)
        #expect(backup.files.count == 2)
    }

    @Test("the intake journal is checked beside the other files, and a damaged one is named")
    func journalChecked() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let ws = try h.createWorkspace("journalled")
        let journal = try IntakeJournalTests.journal(h)
        _ = try await journal.append(IntakeJournalTests.delivery("d-verify"), for: ws)
        let report = DataVerifier.verify(dataDirectory: h.dataDirectory)
        #expect(report.problems == [])
        #expect(report.files.map(\.file) == ["control.sqlite", "intake-journal.sqlite", "workspaces/\(ws.rawValue).sqlite"])
        await h.supervisor.shutdown()

        // Replaced by bytes that are not a database.
        let file = h.dataDirectory.intakeJournalFile
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: file.path + suffix) }
        try Data(repeating: 0x41, count: 4096).write(to: file)
        let damaged = DataVerifier.verify(dataDirectory: h.dataDirectory)
        #expect(damaged.problems.map(\.file) == ["intake-journal.sqlite"], "\(damaged.problems)")
        #expect(!damaged.ok)
    }

    @Test("one corrupted byte in a backup file is a checksum failure naming the file")
    func corruptedBackupFails() async throws {
        let (h, ws) = try await Self.populated()
        defer { h.directory.cleanup() }
        let out = h.directory.url.appendingPathComponent("backup")
        _ = try BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener()).backup(to: out, control: h.control)
        let copy = out.appendingPathComponent("workspaces/\(ws.rawValue).sqlite")
        var bytes = try Data(contentsOf: copy)
        bytes[bytes.count - 10] ^= 0x01
        try bytes.write(to: copy)
        let report = DataVerifier.verify(backup: out)
        #expect(!report.ok)
        #expect(report.problems.contains { $0.file == "workspaces/\(ws.rawValue).sqlite" && $0.check == "checksum" })
        #expect(!report.problems.contains { $0.file == "control.sqlite" })
    }

    @Test("a gap in a workspace's event sequence is a failure naming the first missing seq")
    func eventGapFails() async throws {
        let (h, ws) = try await Self.populated()
        defer { h.directory.cleanup() }
        let queue = try DatabaseQueue(path: h.dataDirectory.workspaceFile(ws).path)
        try run(queue, "DROP TRIGGER events_no_delete; DELETE FROM events WHERE seq = 2")
        try queue.close()
        let report = DataVerifier.verify(dataDirectory: h.dataDirectory)
        #expect(report.problems.map(\.check) == ["events"])
        #expect(report.problems.first?.detail.contains("first missing seq 2") == true)
        #expect(report.files.last?.ok == false)
    }

    @Test("a foreign key violation is named")
    func foreignKeyViolationFails() async throws {
        let (h, ws) = try await Self.populated()
        defer { h.directory.cleanup() }
        // A second connection to control.sqlite: the store's own is private.
        try run(try DatabaseQueue(path: h.dataDirectory.controlFile.path), "PRAGMA foreign_keys = OFF; INSERT INTO pending_work (workspace_id, due_at) VALUES ('ws_doesnotexist0000', 0); PRAGMA foreign_keys = ON", transaction: false)
        let report = DataVerifier.verify(dataDirectory: h.dataDirectory)
        _ = ws
        #expect(report.problems.contains { $0.file == "control.sqlite" && $0.check == "foreign_key_check" })
    }
}
