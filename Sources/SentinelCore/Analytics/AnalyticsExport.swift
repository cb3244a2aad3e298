import Crypto
import Foundation
import GRDB

/// What one export wrote: the dump, its manifest and, per workspace, the events it carries.
public struct ExportManifest: Codable, Sendable, Equatable {
    public struct WorkspacePart: Codable, Sendable, Equatable {
        public var workspaceID: String
        /// Events after `fromSeq` up to and including `toSeq`.
        public var fromSeq: Int64
        public var toSeq: Int64
        public var events: Int
        /// Set when the workspace file could not be read (its events wait for the next export), or
        /// when an event could not be encoded for PostgreSQL: the events before it are exported,
        /// `toSeq` stops just before it, and the workspace stays there until the event is repaired.
        public var error: String?
    }

    public var exportID: String
    public var createdAt: String
    public var file: String
    public var sha256: String
    public var bytes: Int64
    public var events: Int
    public var workspaces: [WorkspacePart]
}

/// The nightly analytics export (SPEC §5): every workspace's events since its watermark, as one
/// PostgreSQL SQL file that creates its schema, loads the events with `COPY`, inserts them
/// idempotently and refreshes the central rollups, all in one transaction.
///
/// Crash safety comes from the order: write a temp file, fsync, rename, write the manifest, and
/// only then advance the watermarks (in control.sqlite). A crash before the watermark update means
/// the next export carries the same events again, which the dump's `ON CONFLICT DO NOTHING` makes
/// harmless; nothing is ever skipped. Rows stream from SQLite to the file through a fixed buffer,
/// so memory stays flat however many events there are.
public struct AnalyticsExporter: Sendable {
    let dataDirectory: DataDirectory
    let control: ControlStore
    let opener: DatabaseOpener

    public init(dataDirectory: DataDirectory, control: ControlStore, opener: DatabaseOpener) {
        self.dataDirectory = dataDirectory
        self.control = control
        self.opener = opener
    }

    /// Writes one dump (to `destination`, default `data/exports/<export id>.sql`) and its manifest
    /// (`<dump>.manifest.json`), then advances the watermarks. `beforeWatermarks` runs between the
    /// rename and the watermark update (crash-injection point for tests).
    @discardableResult
    public func export(to destination: URL? = nil, now: Date = Date(),
                       beforeWatermarks: () throws -> Void = {}) throws -> ExportManifest {
        try FileManager.default.createDirectory(at: dataDirectory.exportsDirectory, withIntermediateDirectories: true)
        guard let lock = try FileLock.tryAcquire(dataDirectory.exportsDirectory.appendingPathComponent(".export.lock")) else {
            throw StorageError.conflict("another export is running on \(dataDirectory.root.path)")
        }
        defer { withExtendedLifetime(lock) {} }

        let stamp = now.formatted(.iso8601.year().month().day().dateTimeSeparator(.standard).time(includingFractionalSeconds: false)
            .timeSeparator(.omitted).dateSeparator(.omitted))
        let exportID = "sentinel-export-\(stamp)-\(UUID().uuidString.prefix(8).lowercased())"
        let final = destination ?? dataDirectory.exportsDirectory.appendingPathComponent("\(exportID).sql")
        let temp = final.deletingLastPathComponent().appendingPathComponent(".\(final.lastPathComponent).tmp-\(getpid())")
        let writer = try DumpWriter(path: temp)
        var parts: [ExportManifest.WorkspacePart] = []
        do {
            writer.write(PostgresDump.header(exportID: exportID, createdAt: ISO8601.string(now)))
            let watermarks = try control.read { db in
                try Dictionary(uniqueKeysWithValues: Row.fetchAll(db, sql: "SELECT workspace_id, last_seq FROM export_watermarks").map {
                    ($0["workspace_id"] as String, $0["last_seq"] as Int64)
                })
            }
            for workspace in try control.workspaceIDs() {
                let from = watermarks[workspace.rawValue] ?? 0
                var progress = Progress(last: from)
                do {
                    try writeEvents(of: workspace, after: from, to: writer, progress: &progress)
                } catch {
                    progress.error = "\(error)"
                }
                parts.append(.init(workspaceID: workspace.rawValue, fromSeq: from, toSeq: progress.last, events: progress.count,
                                   error: progress.error))
            }
            let total = parts.reduce(0) { $0 + $1.events }
            writer.write(PostgresDump.footer(exportID: exportID, createdAt: ISO8601.string(now), events: total))
            try writer.finish()
        } catch {
            writer.abandon()
            try? FileManager.default.removeItem(at: temp)
            throw error
        }
        guard rename(temp.path, final.path) == 0 else {
            try? FileManager.default.removeItem(at: temp)
            throw StorageError.io("cannot rename \(temp.path) to \(final.path): \(String(cString: strerror(errno)))")
        }
        FileSystem.sync(final.deletingLastPathComponent())

        let manifest = ExportManifest(exportID: exportID, createdAt: ISO8601.string(now), file: final.lastPathComponent,
                                      sha256: writer.digest, bytes: writer.bytesWritten, events: parts.reduce(0) { $0 + $1.events },
                                      workspaces: parts)
        try Self.writeAtomically(try JSONEncoder.sentinelPretty.encode(manifest), to: Self.manifestURL(for: final))
        try beforeWatermarks()
        try control.write { db in
            // A workspace that stopped at an event it could not encode still advances over the
            // events before it: they are in the dump.
            for part in parts where part.toSeq > part.fromSeq {
                try db.execute(sql: """
                    INSERT INTO export_watermarks (workspace_id, last_seq, export_id, updated_at) VALUES (?, ?, ?, ?)
                    ON CONFLICT (workspace_id) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq),
                        export_id = excluded.export_id, updated_at = excluded.updated_at
                    """, arguments: [part.workspaceID, part.toSeq, exportID, now.epoch])
            }
        }
        return manifest
    }

    /// The manifest of the newest export in `directory` (`data/exports`), nil when there is none.
    /// A manifest is written only after its dump is complete; workspaces whose events wait for the
    /// next export carry an `error`.
    public static func latestManifest(in directory: URL) -> ExportManifest? {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { $0.hasSuffix(".manifest.json") && !$0.hasPrefix(".") }
            .compactMap { name in
                (try? Data(contentsOf: directory.appendingPathComponent(name))).flatMap { try? JSONDecoder.sentinel.decode(ExportManifest.self, from: $0) }
            }
            .max { $0.createdAt < $1.createdAt }
    }

    public static func manifestURL(for dump: URL) -> URL {
        dump.deletingLastPathComponent().appendingPathComponent(dump.lastPathComponent + ".manifest.json")
    }

    /// How far one workspace's events got into the dump.
    struct Progress {
        /// The last event written whole.
        var last: Int64
        var count = 0
        var error: String?
    }

    private static let timestampWithFraction = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
    private static let timestamp = Date.ISO8601FormatStyle()

    /// Why PostgreSQL would refuse this row, or nil when it loads.
    static func encodingProblem(occurredAt: String, data: String) -> String? {
        if occurredAt.utf8.contains(where: { $0 < 0x20 })
            || ((try? timestampWithFraction.parse(occurredAt)) == nil && (try? timestamp.parse(occurredAt)) == nil) {
            return "occurred_at '\(StoredText.singleLine(String(occurredAt.prefix(40))))' is not a timestamp"
        }
        return PostgresJSON.problem(in: data).map { "data is not valid jsonb: \($0)" }
    }

    /// Streams one workspace's events after `seq` as COPY rows. One SELECT is one snapshot. Each
    /// row is checked before any of it is written: the first one PostgreSQL would refuse ends the
    /// workspace's part (reported in `progress.error`), so one bad row never breaks the load.
    private func writeEvents(of workspace: WorkspaceID, after seq: Int64, to writer: DumpWriter, progress: inout Progress) throws {
        let file = dataDirectory.workspaceFile(workspace)
        guard FileManager.default.fileExists(atPath: file.path) else { throw StorageError.missingFile(file.path) }
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(opener.busyTimeout)
        let queue: DatabaseQueue
        do { queue = try DatabaseQueue(path: file.path, configuration: configuration) } catch {
            throw StorageError.corrupt("\(file.lastPathComponent): \(error)")
        }
        defer { try? queue.close() }
        try queue.read { db in
            let rows = try Row.fetchCursor(db, sql: """
                SELECT seq, id, type, occurred_at, subject, correlation_id, data FROM events WHERE seq > ? ORDER BY seq
                """, arguments: [seq])
            while let row = try rows.next() {
                let s: Int64 = row[0]
                let occurredAt: String = row[3]
                let data: String = row[6]
                if let problem = Self.encodingProblem(occurredAt: occurredAt, data: data) {
                    progress.error = "event seq \(s) (id \(StoredText.singleLine(row[1] as String))) cannot be exported: \(problem); "
                        + "the workspace's export stops before it"
                    return
                }
                writer.writeCopyField(workspace.rawValue)
                writer.write("\t\(s)\t")
                writer.writeCopyField(row[1] as String)
                writer.write("\t")
                writer.writeCopyField(row[2] as String)
                writer.write("\t")
                writer.writeCopyField(occurredAt)
                writer.write("\t")
                writer.writeCopyField(row[4] as String?)
                writer.write("\t")
                writer.writeCopyField(row[5] as String?)
                writer.write("\t")
                writer.writeCopyField(data)
                writer.write("\n")
                progress.last = s
                progress.count += 1
            }
        }
    }

    static func writeAtomically(_ data: Data, to url: URL) throws {
        let temp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
        try? FileManager.default.removeItem(at: temp)
        guard try FileSystem.createExclusive(temp, contents: data, mode: 0o644) else { throw StorageError.io("cannot create \(temp.path)") }
        guard rename(temp.path, url.path) == 0 else { throw StorageError.io("cannot rename \(temp.path): \(String(cString: strerror(errno)))") }
        FileSystem.sync(url.deletingLastPathComponent())
    }
}

/// A buffered, hashing, fsyncing file writer: the dump never sits in memory whole.
final class DumpWriter {
    private let fd: Int32
    private var buffer: [UInt8] = []
    private var hasher = SHA256()
    private var failure: Int32 = 0
    private var closed = false
    private(set) var bytesWritten: Int64 = 0
    private(set) var digest = ""
    private static let flushAt = 1 << 20

    init(path: URL) throws {
        try? FileManager.default.removeItem(at: path)
        fd = open(path.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw StorageError.io("cannot create \(path.path): \(String(cString: strerror(errno)))") }
        buffer.reserveCapacity(Self.flushAt + 64 * 1024)
    }

    func write(_ text: String) {
        buffer.append(contentsOf: text.utf8)
        if buffer.count >= Self.flushAt { flush() }
    }

    /// A value in COPY text format: `\N` for NULL; backslash, tab, newline and CR escaped.
    func writeCopyField(_ value: String?) {
        guard let value else { buffer.append(contentsOf: "\\N".utf8); return }
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\\"): buffer.append(UInt8(ascii: "\\")); buffer.append(UInt8(ascii: "\\"))
            case UInt8(ascii: "\t"): buffer.append(UInt8(ascii: "\\")); buffer.append(UInt8(ascii: "t"))
            case UInt8(ascii: "\n"): buffer.append(UInt8(ascii: "\\")); buffer.append(UInt8(ascii: "n"))
            case UInt8(ascii: "\r"): buffer.append(UInt8(ascii: "\\")); buffer.append(UInt8(ascii: "r"))
            case 0: break // PostgreSQL text cannot hold NUL
            default: buffer.append(byte)
            }
        }
        if buffer.count >= Self.flushAt { flush() }
    }

    private func flush() {
        guard !buffer.isEmpty, failure == 0 else { buffer.removeAll(keepingCapacity: true); return }
        hasher.update(data: buffer)
        var offset = 0
        buffer.withUnsafeBytes { raw in
            while offset < raw.count {
                let n = Foundation.write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                    return
                }
                offset += n
            }
        }
        bytesWritten += Int64(offset)
        buffer.removeAll(keepingCapacity: true)
    }

    /// Flushes, fsyncs and closes; throws if any write failed (disk full, …).
    func finish() throws {
        flush()
        defer { abandon() }
        if failure != 0 { throw StorageError.io("writing the export failed: \(String(cString: strerror(failure)))") }
        guard fsync(fd) == 0 else { throw StorageError.io("fsync of the export failed: \(String(cString: strerror(errno)))") }
        digest = hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }

    func abandon() {
        if !closed { close(fd); closed = true }
    }
}
