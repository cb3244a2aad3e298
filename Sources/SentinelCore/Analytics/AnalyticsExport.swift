import Crypto
import Foundation
import GRDB
import GRDBSQLite

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
    /// The workspaces the export was limited to (a workspace's last events, exported as it is
    /// deleted); nil: every workspace, as the nightly export does.
    public var only: [String]?
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
    /// (`<dump>.manifest.json`, written first), then advances the watermarks. `beforeRename` runs
    /// between the manifest and the dump's rename, `beforeWatermarks` between the rename and the
    /// watermark update (crash-injection points for tests). `only`: these workspaces, not every one.
    @discardableResult
    public func export(to destination: URL? = nil, only: [WorkspaceID]? = nil, now: Date = Date(), beforeRename: () throws -> Void = {},
                       beforeWatermarks: () throws -> Void = {}) throws -> ExportManifest {
        try FileManager.default.createDirectory(at: dataDirectory.exportsDirectory, withIntermediateDirectories: true)
        guard let lock = try FileLock.tryAcquire(dataDirectory.exportLockFile) else {
            throw StorageError.conflict("another export, or a restore, is running on \(dataDirectory.root.path)")
        }
        defer { withExtendedLifetime(lock) {} }
        removeAbandonedTempFiles()

        let stamp = now.formatted(.iso8601.year().month().day().dateTimeSeparator(.standard).time(includingFractionalSeconds: false)
            .timeSeparator(.omitted).dateSeparator(.omitted))
        let exportID = "sentinel-export-\(stamp)-\(RandomIdentifier.uuid().prefix(8).lowercased())"
        let chosen = try destination.map { try Self.dumpFile(at: $0, named: "\(exportID).sql") }
        if let chosen, dataDirectory.holdsOwnFiles(chosen.deletingLastPathComponent()) {
            throw StorageError.invalid("cannot write the dump to \(chosen.path): that directory holds Sentinel's own files (control.sqlite, "
                                       + "workspace files, keys); give a path outside the data directory, or leave --out out for \(dataDirectory.exportsDirectory.path)")
        }
        if let chosen { try Self.refusingExisting(chosen) }
        let final = chosen ?? dataDirectory.exportsDirectory.appendingPathComponent("\(exportID).sql")
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
            for workspace in try only ?? control.workspaceIDs() {
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
        // The manifest goes first, then the dump beside it: killed between the two, an export left
        // a dump without its manifest, which the loader refuses, and stops at, every night after.
        // A manifest without its dump is passed over by the loader and removed by the next export.
        let manifest = ExportManifest(exportID: exportID, createdAt: ISO8601.string(now), file: final.lastPathComponent,
                                      sha256: writer.digest, bytes: writer.bytesWritten, events: parts.reduce(0) { $0 + $1.events },
                                      workspaces: parts, only: only?.map(\.rawValue))
        do {
            try Self.writeAtomically(try JSONEncoder.sentinelPretty.encode(manifest), to: Self.manifestURL(for: final))
        } catch {
            try? FileManager.default.removeItem(at: temp)
            throw error
        }
        try beforeRename()
        guard rename(temp.path, final.path) == 0 else {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(at: temp)
            try? FileManager.default.removeItem(at: Self.manifestURL(for: final))
            throw StorageError.io("cannot rename \(temp.path) to \(final.path): \(reason)")
        }
        FileSystem.sync(final.deletingLastPathComponent())
        try beforeWatermarks()
        try control.write { db in
            // A workspace that stopped at an event it could not encode still advances over the
            // events before it: they are in the dump.
            // A workspace deleted while the dump was written has no watermark left to move (its row
            // would break the foreign key, and with it every other workspace's watermark).
            for part in parts where part.toSeq > part.fromSeq {
                try db.execute(sql: """
                    INSERT INTO export_watermarks (workspace_id, last_seq, export_id, updated_at)
                    SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM workspaces WHERE id = ?)
                    ON CONFLICT (workspace_id) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq),
                        export_id = excluded.export_id, updated_at = excluded.updated_at
                    """, arguments: [part.workspaceID, part.toSeq, exportID, now.epoch, part.workspaceID])
            }
        }
        return manifest
    }

    /// How many of a workspace's events the export has not carried yet (0 for a missing file, or
    /// one that is not a readable database).
    public func unexportedEvents(of workspace: WorkspaceID) throws -> Int {
        let from = try control.read { db in
            try Int64.fetchOne(db, sql: "SELECT last_seq FROM export_watermarks WHERE workspace_id = ?", arguments: [workspace.rawValue]) ?? 0
        }
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(opener.busyTimeout)
        let file = dataDirectory.workspaceFile(workspace)
        guard FileManager.default.fileExists(atPath: file.path) else { return 0 }
        if let problem = DatabaseOpener.emptiedBesideLog(file) { throw StorageError.corrupt("\(file.lastPathComponent) \(problem)") }
        do {
            let queue = try DatabaseQueue(path: file.path, configuration: configuration)
            defer { try? queue.close() }
            return try queue.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM events WHERE seq > ?", arguments: [from]) ?? 0 }
        } catch let error as DatabaseError where [ResultCode.SQLITE_NOTADB, .SQLITE_CORRUPT].contains(error.resultCode.primaryResultCode) {
            // Not a readable database: nothing can be exported from it (a delete keeps its bytes).
            return 0
        }
    }

    /// The manifest of the newest export in `directory` (`data/exports`), nil when there is none.
    /// A manifest is written only after its dump is complete; workspaces whose events wait for the
    /// next export carry an `error`.
    /// Exports of some workspaces only (as one is deleted) are not counted: they stand in for no
    /// nightly export (a missed slot was not caught up after one).
    public static func latestManifest(in directory: URL) -> ExportManifest? {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { $0.hasSuffix(".manifest.json") && !$0.hasPrefix(".") }
            .compactMap { name in
                (try? Data(contentsOf: directory.appendingPathComponent(name))).flatMap { try? JSONDecoder.sentinel.decode(ExportManifest.self, from: $0) }
            }
            .filter { $0.only == nil }
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
    static func encodingProblem(occurredAt: UnsafeBufferPointer<UInt8>, data: UnsafeBufferPointer<UInt8>) -> String? {
        if !isUTCTimestamp(occurredAt) {
            let text = String(decoding: occurredAt, as: UTF8.self)
            if occurredAt.contains(where: { $0 < 0x20 })
                || ((try? timestampWithFraction.parse(text)) == nil && (try? timestamp.parse(text)) == nil) {
                return "occurred_at '\(StoredText.singleLine(String(text.prefix(40))))' is not a timestamp"
            }
        }
        return PostgresJSON.problem(in: data).map { "data is not valid jsonb: \($0)" }
    }

    /// True for `YYYY-MM-DDTHH:MM:SS[.fraction]Z` on a real calendar day: what `ISO8601.string`
    /// writes, and a subset of what both Foundation's ISO 8601 parser and PostgreSQL's
    /// `timestamptz` read. Anything else goes through Foundation's parser (far slower per row).
    static func isUTCTimestamp(_ b: UnsafeBufferPointer<UInt8>) -> Bool {
        guard b.count >= 20, b.count <= 30, b[4] == UInt8(ascii: "-"), b[7] == UInt8(ascii: "-"), b[10] == UInt8(ascii: "T"),
              b[13] == UInt8(ascii: ":"), b[16] == UInt8(ascii: ":"), b[b.count - 1] == UInt8(ascii: "Z") else { return false }
        func number(_ at: Int, _ length: Int) -> Int {
            var value = 0
            for k in at..<(at + length) {
                let digit = b[k] &- UInt8(ascii: "0")
                guard digit < 10 else { return -1 }
                value = value * 10 + Int(digit)
            }
            return value
        }
        let year = number(0, 4), month = number(5, 2), day = number(8, 2)
        let hour = number(11, 2), minute = number(14, 2), second = number(17, 2)
        guard year >= 1, (1...12).contains(month), (0..<24).contains(hour), (0..<60).contains(minute), (0..<60).contains(second),
              day >= 1 else { return false }
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        switch month {
        case 2: guard day <= (leap ? 29 : 28) else { return false }
        case 4, 6, 9, 11: guard day <= 30 else { return false }
        default: guard day <= 31 else { return false }
        }
        if b.count == 20 { return true }
        guard b[19] == UInt8(ascii: "."), b.count >= 22 else { return false }
        return number(20, b.count - 21) >= 0
    }

    /// How much of a workspace file the export maps (SQLite `mmap_size`); pages beyond it are read.
    static let mmapBytes = 256 << 20

    /// Streams one workspace's events after `seq` as COPY rows. One SELECT is one snapshot. Each
    /// row is checked before any of it is written: the first one PostgreSQL would refuse ends the
    /// workspace's part (reported in `progress.error`), so one bad row never breaks the load.
    /// Columns are read as SQLite's own UTF-8 bytes, checked and escaped straight into the dump's
    /// buffer: no String per column (the export moves hundreds of thousands of rows a second).
    private func writeEvents(of workspace: WorkspaceID, after seq: Int64, to writer: DumpWriter, progress: inout Progress) throws {
        let file = dataDirectory.workspaceFile(workspace)
        guard FileManager.default.fileExists(atPath: file.path) else { throw StorageError.missingFile(file.path) }
        if let (problem, _) = DataDirectory.databaseAccessProblem(file) {
            throw StorageError.io("\(file.lastPathComponent) cannot be opened: \(problem); give it to the user Sentinel runs as; it is not damaged")
        }
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(opener.busyTimeout)
        // Read the file through a memory map: no copy of every page through read().
        configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA mmap_size = \(Self.mmapBytes)") }
        if let problem = DatabaseOpener.emptiedBesideLog(file) { throw StorageError.corrupt("\(file.lastPathComponent) \(problem)") }
        let queue: DatabaseQueue
        do { queue = try DatabaseQueue(path: file.path, configuration: configuration) } catch {
            throw StorageError.corrupt("\(file.lastPathComponent): \(error)")
        }
        defer { try? queue.close() }
        let workspaceField = Array(workspace.rawValue.utf8)
        try queue.read { db in
            let statement = try db.makeStatement(sql: """
                SELECT seq, id, type, occurred_at, subject, correlation_id, data FROM events WHERE seq > ? ORDER BY seq
                """)
            let rows = try Row.fetchCursor(statement, arguments: [seq])
            let sqlite = statement.sqliteStatement
            /// The bytes of a text column; nil for NULL. Valid until the next step.
            func text(_ column: Int32) -> UnsafeBufferPointer<UInt8>? {
                guard sqlite3_column_type(sqlite, column) != SQLITE_NULL else { return nil }
                let start = sqlite3_column_text(sqlite, column)
                return UnsafeBufferPointer(start: start, count: Int(sqlite3_column_bytes(sqlite, column)))
            }
            let empty = UnsafeBufferPointer<UInt8>(start: nil, count: 0)
            while try rows.next() != nil {
                let s = sqlite3_column_int64(sqlite, 0)
                let occurredAt = text(3) ?? empty
                let data = text(6) ?? empty
                if let problem = Self.encodingProblem(occurredAt: occurredAt, data: data) {
                    let id = text(1).map { String(decoding: $0, as: UTF8.self) } ?? ""
                    progress.error = "event seq \(s) (id \(StoredText.singleLine(id))) cannot be exported: \(problem); "
                        + "the workspace's export stops before it"
                    return
                }
                workspaceField.withUnsafeBufferPointer { writer.writeCopyField($0) }
                writer.writeTab()
                writer.writeInteger(s)
                for column: Int32 in 1...6 {  // id, type, occurred_at, subject, correlation_id, data
                    writer.writeTab()
                    writer.writeCopyField(text(column))
                }
                writer.writeNewline()
                progress.last = s
                progress.count += 1
            }
        }
    }

    /// Dumps (and manifests) an export killed half-way left behind (`.sentinel-export-….tmp-PID`):
    /// with the export lock held, no other export is writing one, and a partial dump of a big
    /// appliance would otherwise take its room on the data volume for good.
    /// So are a manifest whose dump never came (killed between the two) and a dump without its
    /// manifest (left so by an earlier version): their events were not counted as exported, and
    /// the next export carries them.
    func removeAbandonedTempFiles() {
        let directory = dataDirectory.exportsDirectory
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        let present = Set(names)
        for name in names where name.hasPrefix(".sentinel-export-") && name.contains(".tmp-") {
            try? FileManager.default.removeItem(at: directory.appendingPathComponent(name))
        }
        for name in names where name.hasPrefix("sentinel-export-") {
            let orphan = name.hasSuffix(".sql.manifest.json") ? !present.contains(String(name.dropLast(".manifest.json".count)))
                : name.hasSuffix(".sql") ? !present.contains(name + ".manifest.json") : false
            if orphan { try? FileManager.default.removeItem(at: directory.appendingPathComponent(name)) }
        }
    }

    /// Where a dump asked for at `destination` (`sentinel export --out`) goes: that path, a new file,
    /// or inside it under `name` when it is a directory. The dump is written beside it and renamed
    /// onto it, so anything else is refused before a byte is written: a device, pipe or socket
    /// (`--out /dev/stdout` replaced the machine's `/dev/stdout` link and reported the dump
    /// written), a symbolic link (the link would be replaced, not its file), a path whose directory
    /// does not exist. (An existing file is refused as well, by `refusingExisting`.)
    static func dumpFile(at destination: URL, named name: String) throws -> URL {
        let path = destination.path
        var link = stat(), target = stat()
        guard lstat(path, &link) == 0 else {
            let directory = destination.deletingLastPathComponent()
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw StorageError.invalid("cannot write the dump to \(path): the directory \(directory.path) does not exist")
            }
            return destination
        }
        let followed = stat(path, &target) == 0
        if followed, target.st_mode & S_IFMT == S_IFDIR { return destination.appendingPathComponent(name) }
        if link.st_mode & S_IFMT == S_IFLNK {
            throw StorageError.invalid("cannot write the dump to \(path): it is a symbolic link, and the dump, written beside it and renamed into place, "
                                       + "would replace the link; give the path of a file or a directory")
        }
        guard link.st_mode & S_IFMT == S_IFREG else {
            throw StorageError.invalid("cannot write the dump to \(path): it is not a regular file (a device, pipe or socket), and the dump, "
                                       + "written beside it and renamed into place, would replace it; give the path of a file or a directory")
        }
        return destination
    }

    /// A dump never replaces a file, neither at its own path nor at its manifest's: an earlier dump
    /// not loaded yet was replaced, and the events only it held were lost (they count as exported).
    /// Checked after `dumpFile` and the data directory's own places, whose refusals say more.
    private static func refusingExisting(_ file: URL) throws {
        for existing in [file, manifestURL(for: file)] {
            var info = stat()
            guard lstat(existing.path, &info) != 0 else {
                throw StorageError.invalid("cannot write the dump to \(file.path): \(existing.path) exists, and a dump never replaces a file "
                                           + "(an earlier dump not loaded yet would lose the events only it holds); remove it or give a new path or a directory")
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
    private static let flushAt = 1 << 20
    private static let capacity = flushAt + 64 * 1024
    private let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: DumpWriter.capacity)
    private var count = 0
    private var hasher = SHA256()
    private var failure: Int32 = 0
    private var closed = false
    private(set) var bytesWritten: Int64 = 0
    private(set) var digest = ""

    init(path: URL) throws {
        try? FileManager.default.removeItem(at: path)
        fd = open(path.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            buffer.deallocate()
            throw StorageError.io("cannot create \(path.path): \(String(cString: strerror(errno)))")
        }
    }

    deinit {
        abandon()
        buffer.deallocate()
    }

    func write(_ text: String) {
        var text = text
        text.withUTF8 { append($0) }
        flushIfFull()
    }

    func writeTab() { appendByte(UInt8(ascii: "\t")) }
    func writeNewline() { appendByte(UInt8(ascii: "\n")); flushIfFull() }

    /// A decimal integer.
    func writeInteger(_ value: Int64) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in  // "-9223372036854775808"
            var magnitude = value.magnitude
            var at = digits.count
            repeat {
                at -= 1
                digits[at] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            if value < 0 { at -= 1; digits[at] = UInt8(ascii: "-") }
            append(UnsafeBufferPointer(rebasing: digits[at...]))
        }
    }

    /// A value in COPY text format: `\N` for NULL; backslash, tab, newline and CR escaped. Runs
    /// without a byte to escape are copied whole.
    func writeCopyField(_ value: UnsafeBufferPointer<UInt8>?) {
        guard let value else {
            appendByte(UInt8(ascii: "\\")); appendByte(UInt8(ascii: "N"))
            return
        }
        var runStart = 0
        var i = 0
        while i < value.count {
            if i + 8 <= value.count {
                let word = UnsafeRawPointer(value.baseAddress! + i).loadUnaligned(as: UInt64.self)
                if !ByteScan.hasByte(below: 0x0E, in: word) && !ByteScan.has(UInt8(ascii: "\\"), in: word) { i += 8; continue }
            }
            let byte = value[i]
            // One comparison for the common byte: everything escaped is a backslash or below 0x0E.
            if byte != UInt8(ascii: "\\") && byte >= 0x0E { i += 1; continue }
            let escaped: UInt8?
            switch byte {
            case UInt8(ascii: "\\"): escaped = UInt8(ascii: "\\")
            case UInt8(ascii: "\t"): escaped = UInt8(ascii: "t")
            case UInt8(ascii: "\n"): escaped = UInt8(ascii: "n")
            case UInt8(ascii: "\r"): escaped = UInt8(ascii: "r")
            case 0: escaped = nil  // PostgreSQL text cannot hold NUL: dropped
            default: i += 1; continue
            }
            append(UnsafeBufferPointer(rebasing: value[runStart..<i]))
            if let escaped { appendByte(UInt8(ascii: "\\")); appendByte(escaped) }
            i += 1
            runStart = i
        }
        append(UnsafeBufferPointer(rebasing: value[runStart..<value.count]))
        flushIfFull()
    }

    private func appendByte(_ byte: UInt8) {
        if count == Self.capacity { flush() }
        buffer[count] = byte
        count += 1
    }

    private func append(_ bytes: UnsafeBufferPointer<UInt8>) {
        var rest = bytes
        while !rest.isEmpty {
            if count == Self.capacity { flush() }
            let n = min(rest.count, Self.capacity - count)
            (buffer + count).update(from: rest.baseAddress!, count: n)
            count += n
            rest = UnsafeBufferPointer(rebasing: rest[n...])
        }
    }

    private func flushIfFull() {
        if count >= Self.flushAt { flush() }
    }

    private func flush() {
        defer { count = 0 }
        guard count > 0, failure == 0 else { return }
        let pending = UnsafeRawBufferPointer(start: buffer, count: count)
        hasher.update(bufferPointer: pending)
        var offset = 0
        while offset < pending.count {
            let n = Foundation.write(fd, pending.baseAddress! + offset, pending.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                failure = errno
                return
            }
            offset += n
        }
        // Start writing this megabyte back to disk now, so the fsync at the end waits for the
        // tail only instead of the whole dump (Linux `sync_file_range`; asynchronous).
        if let startWriteback = Self.syncFileRange {
            _ = startWriteback(fd, bytesWritten, Int64(offset), Self.syncFileRangeWrite)
        }
        bytesWritten += Int64(offset)
    }

    private typealias SyncFileRange = @convention(c) (Int32, Int64, Int64, UInt32) -> Int32
    /// glibc's `sync_file_range` (declared only under `_GNU_SOURCE`, which Swift's Glibc module is
    /// imported without); nil where the C library has none.
    private static let syncFileRange: SyncFileRange? = dlsym(nil, "sync_file_range").map { unsafeBitCast($0, to: SyncFileRange.self) }
    private static let syncFileRangeWrite: UInt32 = 2  // SYNC_FILE_RANGE_WRITE

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
