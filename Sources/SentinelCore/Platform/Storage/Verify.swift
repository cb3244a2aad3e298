import Foundation
import GRDB

/// One problem `sentinel verify` found, named by file and check.
public struct VerifyProblem: Sendable, Codable, Equatable {
    public var file: String
    /// integrity_check | schema | foreign_key_check | checksum | events | missing | manifest | open
    public var check: String
    public var detail: String
}

/// What was checked in one file.
public struct VerifiedFile: Sendable, Codable, Equatable {
    public var file: String
    public var kind: DatabaseKind
    public var workspaceID: String?
    public var events: Int?
    public var lastEventSeq: Int64?
    public var ok: Bool
}

public struct VerifyReport: Sendable, Codable, Equatable {
    /// The data directory or backup directory verified.
    public var source: String
    public var backup: Bool
    public var files: [VerifiedFile]
    public var problems: [VerifyProblem]
    public var ok: Bool { problems.isEmpty }

    enum CodingKeys: String, CodingKey { case source, backup, files, problems, ok }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(source, forKey: .source)
        try c.encode(backup, forKey: .backup)
        try c.encode(files, forKey: .files)
        try c.encode(problems, forKey: .problems)
        try c.encode(ok, forKey: .ok)
    }

    public init(source: String, backup: Bool, files: [VerifiedFile] = [], problems: [VerifyProblem] = []) {
        self.source = source
        self.backup = backup
        self.files = files
        self.problems = problems
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(source: try c.decode(String.self, forKey: .source), backup: try c.decode(Bool.self, forKey: .backup),
                  files: try c.decode([VerifiedFile].self, forKey: .files), problems: try c.decode([VerifyProblem].self, forKey: .problems))
    }
}

/// `sentinel verify`: every file of a data directory or of a backup passes `integrity_check` and
/// `foreign_key_check`, a backup's files match its manifest's checksums, and each workspace's
/// append-only event log has no gap in its sequence. Only reads; safe beside a running server.
public enum DataVerifier {
    public static func verify(dataDirectory data: DataDirectory, busyTimeout: TimeInterval = 5) -> VerifyReport {
        var report = VerifyReport(source: data.root.path, backup: false)
        // Each file may pass its checks while together they are a mix of a backup and what was there before.
        if let problem = data.unfinishedRestoreProblem() {
            report.problems.append(VerifyProblem(file: data.restorePendingFile.lastPathComponent, check: "restore", detail: problem))
        }
        guard FileManager.default.fileExists(atPath: data.controlFile.path) else {
            report.problems.append(VerifyProblem(file: data.controlFile.path, check: "missing", detail: "control.sqlite is missing"))
            return report
        }
        check(data.controlFile, name: "control.sqlite", kind: .control, workspace: nil, busyTimeout: busyTimeout, into: &report)
        // Deliveries acknowledged and not yet in their workspace files (absent until `serve` first ran).
        if !FileManager.default.fileExists(atPath: data.intakeJournalFile.path), FileManager.default.fileExists(atPath: data.intakeJournalFile.path + "-wal") {
            report.problems.append(VerifyProblem(file: "intake-journal.sqlite", check: "missing", detail: IntakeJournal.missingBesideLog(data.intakeJournalFile)))
        }
        if FileManager.default.fileExists(atPath: data.intakeJournalFile.path) {
            check(data.intakeJournalFile, name: "intake-journal.sqlite", kind: .journal, workspace: nil, busyTimeout: busyTimeout, into: &report)
        }
        var ids: [String] = []
        do {
            ids = try readOnly(data.controlFile, busyTimeout: busyTimeout) { db in
                try String.fetchAll(db, sql: "SELECT id FROM workspaces ORDER BY id")
            }
        } catch {
            report.problems.append(VerifyProblem(file: "control.sqlite", check: "open", detail: "cannot list workspaces: \(error)"))
        }
        for raw in ids {
            guard let id = WorkspaceID(raw) else {
                report.problems.append(VerifyProblem(file: "control.sqlite", check: "integrity_check", detail: "invalid workspace id \(raw)"))
                continue
            }
            let url = data.workspaceFile(id)
            let name = "workspaces/\(url.lastPathComponent)"
            // One this user may not reach (its directory root's, mode 700) is not missing.
            if let (problem, paths) = DataDirectory.databaseAccessProblem(url) {
                report.problems.append(VerifyProblem(file: name, check: "open", detail: "cannot be opened: \(problem); it is not damaged: give it to "
                                                     + "the user Sentinel runs as (chown sentinel:sentinel \(paths))"))
                continue
            }
            guard FileManager.default.fileExists(atPath: url.path) else {
                report.problems.append(VerifyProblem(file: name, check: "missing", detail: "workspace \(raw) is registered but its file is missing"))
                continue
            }
            check(url, name: name, kind: .workspace, workspace: raw, busyTimeout: busyTimeout, into: &report)
        }
        return report
    }

    public static func verify(backup directory: URL) -> VerifyReport {
        var report = VerifyReport(source: directory.path, backup: true)
        let manifestURL = directory.appendingPathComponent(BackupManifest.fileName)
        guard let data = FileManager.default.contents(atPath: manifestURL.path) else {
            report.problems.append(VerifyProblem(file: BackupManifest.fileName, check: "manifest", detail: "\(directory.path) has no \(BackupManifest.fileName); not a Sentinel backup"))
            return report
        }
        let manifest: BackupManifest
        do { manifest = try JSONDecoder.sentinel.decode(BackupManifest.self, from: data) } catch {
            report.problems.append(VerifyProblem(file: BackupManifest.fileName, check: "manifest", detail: "not a valid backup manifest: \(error)"))
            return report
        }
        // A workspace the backup could not read is not in it: a backup without it is not a good one.
        for missing in manifest.skipped ?? [] {
            report.problems.append(VerifyProblem(file: "workspaces/\(missing.workspaceID).sqlite", check: "skipped",
                                                 detail: "workspace \(missing.workspaceID) is not in this backup: \(missing.reason)"))
        }
        var seen = Set<String>()
        for entry in manifest.files {
            // Restore refuses a manifest naming one file twice: verify says so too (it passed it).
            let key = entry.kind == .workspace ? "workspace \(entry.workspaceID ?? "-")" : entry.kind.rawValue
            guard seen.insert(key).inserted else {
                report.problems.append(VerifyProblem(file: entry.file, check: "manifest", detail: "the manifest lists the \(key) file twice"))
                continue
            }
            guard !entry.file.contains(".."), !entry.file.hasPrefix("/") else {
                report.problems.append(VerifyProblem(file: entry.file, check: "manifest", detail: "the manifest names a file outside the backup"))
                continue
            }
            let url = directory.appendingPathComponent(entry.file)
            guard FileManager.default.fileExists(atPath: url.path) else {
                report.problems.append(VerifyProblem(file: entry.file, check: "missing", detail: "listed in the manifest but missing"))
                continue
            }
            let digest = (try? FileSystem.sha256(of: url)) ?? "unreadable"
            if digest != entry.sha256 {
                report.problems.append(VerifyProblem(file: entry.file, check: "checksum",
                                                     detail: "sha256 \(digest) does not match the manifest's \(entry.sha256)"))
            }
            check(url, name: entry.file, kind: entry.kind, workspace: entry.workspaceID, busyTimeout: 5, into: &report)
        }
        return report
    }

    private static func readOnly<T>(_ url: URL, busyTimeout: TimeInterval, _ body: (Database) throws -> T) throws -> T {
        let queue = try SchemaState.readOnlyQueue(url, busyTimeout: busyTimeout)
        defer { try? queue.close() }
        return try queue.read(body)
    }

    private static func check(_ url: URL, name: String, kind: DatabaseKind, workspace: String?, busyTimeout: TimeInterval, into report: inout VerifyReport) {
        var file = VerifiedFile(file: name, kind: kind, workspaceID: workspace, ok: true)
        let before = report.problems.count
        do {
            try readOnly(url, busyTimeout: busyTimeout) { db in
                let integrity = try String.fetchAll(db, sql: "PRAGMA integrity_check")
                if integrity != ["ok"] {
                    report.problems.append(VerifyProblem(file: name, check: "integrity_check", detail: integrity.prefix(5).joined(separator: "; ")))
                }
                if kind != .control, try kind.migrator.appliedIdentifiers(db).isEmpty {
                    // As serve and doctor take it: an empty or foreign file in a workspace's (or the journal's) place.
                    report.problems.append(VerifyProblem(file: name, check: "schema",
                                                         detail: "holds no Sentinel schema: an empty or foreign file stands in "
                                                            + (kind == .journal ? "the intake journal's place (the deliveries it held are gone)" : "the workspace's place")))
                } else if case let missing = try ExpectedSchema.missingTables(db, kind: kind), !missing.isEmpty {
                    report.problems.append(VerifyProblem(file: name, check: "schema",
                                                         detail: "lacks the table(s) \(missing.joined(separator: ", ")) its schema version has"))
                }
                let violations = try Row.fetchAll(db, sql: "PRAGMA foreign_key_check")
                if !violations.isEmpty {
                    let sample = violations.prefix(5).map { row in
                        "\(row[0] as String? ?? "?") row \(row[1] as Int64? ?? 0) → \(row[2] as String? ?? "?")"
                    }
                    report.problems.append(VerifyProblem(file: name, check: "foreign_key_check",
                                                         detail: "\(violations.count) broken reference(s): \(sample.joined(separator: "; "))"))
                }
                if kind == .workspace, try db.tableExists("events") {
                    let row = try Row.fetchOne(db, sql: "SELECT count(*), min(seq), max(seq) FROM events")!
                    let count: Int = row[0]
                    let first: Int64? = row[1]
                    let last: Int64? = row[2]
                    file.events = count
                    file.lastEventSeq = last
                    if let first, let last, Int64(count) != last - first + 1 || first != 1 {
                        let gap = first != 1 ? 1 : try Int64.fetchOne(db, sql: """
                            SELECT e.seq + 1 FROM events e WHERE e.seq < ? AND NOT EXISTS (SELECT 1 FROM events n WHERE n.seq = e.seq + 1) ORDER BY e.seq LIMIT 1
                            """, arguments: [last]) ?? 0
                        report.problems.append(VerifyProblem(file: name, check: "events",
                            detail: "the event log has a gap: \(count) events between seq \(first) and \(last), first missing seq \(gap)"))
                    }
                    if let issued = try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'events'"), issued > (last ?? 0) {
                        report.problems.append(VerifyProblem(file: name, check: "events",
                            detail: "events up to seq \(issued) were written but the log ends at \(last ?? 0): its tail is missing"))
                    }
                }
            }
        } catch {
            // One this user may not open (a command run as root made it) is not damaged: said so
            // rather than "not a readable database", whose fix, a restore, would lose data.
            let detail = DataDirectory.databaseAccessProblem(url).map { "cannot be opened: \($0.problem); it is not damaged: give it to the user Sentinel runs as (chown sentinel:sentinel \($0.paths))" }
                ?? "not a readable database: \(error)"
            report.problems.append(VerifyProblem(file: name, check: "open", detail: detail))
        }
        file.ok = report.problems.count == before
        report.files.append(file)
    }
}
