import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Logging
import Synchronization

/// One JSON object per line, so appliance logs can be shipped to any collector without parsing
/// rules. Correlation, workspace and job ids travel as logger metadata and land on every line.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let sink: LogSink

    public init(label: String, level: Logger.Level = .info, sink: LogSink = .standardError) {
        self.label = label
        self.logLevel = level
        self.sink = sink
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        // Each key once, the last source winning: the line's metadata over the provider's over the
        // logger's over the fixed fields. Gathered in a list and sorted once (merging dictionaries
        // hashed every key of every source again, and writing them sorted hashed each once more).
        var fields: [JSONLine.Field] = [
            ("time", .string(Self.timestamp())),
            ("level", .string(event.level.rawValue)),
            ("message", .string(event.message.description)),
            ("logger", .string(label)),
        ]
        fields.reserveCapacity(5 + metadata.count + (event.metadata?.count ?? 0))
        fields.append(contentsOf: metadata.lazy.map { ($0.key, $0.value) })
        if let provided = metadataProvider?.get() { fields.append(contentsOf: provided.lazy.map { ($0.key, $0.value) }) }
        if let extra = event.metadata { fields.append(contentsOf: extra.lazy.map { ($0.key, $0.value) }) }
        // The error a library passed with the event (`logger.warning(…, error:)`: why a trace
        // export failed), unless the line names one itself; token shapes redacted, at most 500 characters.
        if let error = event.error, event.metadata?["error"] == nil {
            fields.append(("error", .string(RemoteText.redactCredentials(String(String(describing: error).prefix(RemoteText.maxCharacters))))))
        }
        if event.level >= .warning { fields.append(("source", .string("\(event.file.split(separator: "/").last ?? ""):\(event.line)"))) }
        var line = JSONLine()
        line.object(fields)
        line.bytes.append(0x0A)
        sink.write(Data(line.bytes))
    }

    /// The current time in UTC as ISO 8601 with milliseconds, e.g. `2026-12-02T13:05:01.123Z`
    /// (written digit by digit: `Date.ISO8601FormatStyle` took about as long as the rest of the line).
    static func timestamp(_ now: timespec = Self.now()) -> String {
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let milliseconds = Int(now.tv_nsec / 1_000_000)
        return String(unsafeUninitializedCapacity: 24) { buffer in
            var i = 0
            func digits(_ value: Int, _ count: Int) {
                var value = value
                for offset in stride(from: count - 1, through: 0, by: -1) {
                    buffer[i + offset] = UInt8(ascii: "0") + UInt8(value % 10)
                    value /= 10
                }
                i += count
            }
            func byte(_ character: Unicode.Scalar) {
                buffer[i] = UInt8(ascii: character)
                i += 1
            }
            digits(Int(parts.tm_year) + 1900, 4); byte("-"); digits(Int(parts.tm_mon) + 1, 2); byte("-"); digits(Int(parts.tm_mday), 2)
            byte("T"); digits(Int(parts.tm_hour), 2); byte(":"); digits(Int(parts.tm_min), 2); byte(":"); digits(Int(parts.tm_sec), 2)
            byte("."); digits(milliseconds, 3); byte("Z")
            return i
        }
    }

    static func now() -> timespec {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return now
    }
}

/// Where log lines go. Tests capture them to prove secrets never reach the log.
public final class LogSink: Sendable {
    private let output: @Sendable (Data) -> Void
    /// One line at a time. The closure stays outside the lock: kept as a generic lock's value, it
    /// would come back from every `withLock` wrapped in two more thunks (`StoredHandlerTests`).
    private let lock = Mutex(())

    public init(_ write: @escaping @Sendable (Data) -> Void) { output = write }

    /// Standard error, written with `write(2)`. When nothing reads it any more (the pipe to a log
    /// shipper that exited, a closed terminal) the line is dropped and the process goes on:
    /// `FileHandle.write` trapped on that `EPIPE`, and without `serve` ignoring `SIGPIPE` the
    /// signal ended the appliance.
    public static let standardError = LogSink(fileDescriptor: STDERR_FILENO)

    /// Lines written to an open file descriptor with `write(2)`, as `standardError` writes them
    /// (the benchmarks' log files); the descriptor stays the caller's to close.
    public convenience init(fileDescriptor descriptor: Int32) {
        self.init { data in
            data.withUnsafeBytes { raw in
                guard let base = raw.baseAddress else { return }
                var offset = 0
                while offset < raw.count {
                    let written = Glibc.write(descriptor, base + offset, raw.count - offset)
                    if written > 0 {
                        offset += written
                    } else if written < 0 && errno == EINTR {
                        continue
                    } else {
                        return                              // EPIPE, EBADF, EAGAIN, a full disk: the line is lost
                    }
                }
            }
        }
    }

    func write(_ data: Data) { lock.withLock { _ in output(data) } }
}

/// One log line's JSON, written directly: keys sorted, `/` not escaped, control characters
/// escaped. `JSONSerialization` (sorted keys) took about 200 µs a line on Linux, more CPU than the
/// rest of a webhook delivery's intake, which logs one line at the default level.
struct JSONLine {
    var bytes: [UInt8] = []

    init() { bytes.reserveCapacity(512) }

    typealias Field = (key: String, value: Logger.Metadata.Value)

    mutating func object(_ fields: Logger.Metadata) {
        object(fields.map { ($0.key, $0.value) })
    }

    /// The fields sorted by key; of fields with the same key, the last one given.
    mutating func object(_ fields: [Field]) {
        // Keys and positions sorted by key, then by position, so the last of a key comes last
        // among its equals (the values stay where they are: comparing through them copied each).
        var order = fields.enumerated().map { (key: $0.element.key, index: $0.offset) }
        order.sort { $0.key < $1.key || ($0.key == $1.key && $0.index < $1.index) }
        bytes.append(UInt8(ascii: "{"))
        var first = true
        for (n, entry) in order.enumerated() {
            if n + 1 < order.count && order[n + 1].key == entry.key { continue }
            if !first { bytes.append(UInt8(ascii: ",")) }
            first = false
            string(entry.key)
            bytes.append(UInt8(ascii: ":"))
            value(fields[entry.index].value)
        }
        bytes.append(UInt8(ascii: "}"))
    }

    mutating func value(_ value: Logger.Metadata.Value) {
        switch value {
        case .string(let s): string(s)
        case .stringConvertible(let c): string(c.description)
        case .dictionary(let d): object(d)
        case .array(let a):
            bytes.append(UInt8(ascii: "["))
            for (i, element) in a.enumerated() {
                if i > 0 { bytes.append(UInt8(ascii: ",")) }
                self.value(element)
            }
            bytes.append(UInt8(ascii: "]"))
        }
    }

    /// Runs of bytes that need no escape are copied whole.
    mutating func string(_ text: String) {
        bytes.append(UInt8(ascii: "\""))
        var text = text
        text.withUTF8 { utf8 in
            var start = 0
            for (i, byte) in utf8.enumerated() where byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") {
                bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start..<i]))
                escape(byte)
                start = i + 1
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start...]))
        }
        bytes.append(UInt8(ascii: "\""))
    }

    private mutating func escape(_ byte: UInt8) {
        bytes.append(UInt8(ascii: "\\"))
        switch byte {
        case 0x0A: bytes.append(UInt8(ascii: "n"))
        case 0x0D: bytes.append(UInt8(ascii: "r"))
        case 0x09: bytes.append(UInt8(ascii: "t"))
        case 0x08: bytes.append(UInt8(ascii: "b"))
        case 0x0C: bytes.append(UInt8(ascii: "f"))
        case 0..<0x20:
            let hex = Array("0123456789abcdef".utf8)
            bytes.append(contentsOf: [UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]])
        default: bytes.append(byte)  // " and \
        }
    }
}

extension Logger {
    /// A logger writing JSON lines; the appliance's only way of building a root logger.
    public static func sentinel(label: String = "sentinel", level: String = "info", sink: LogSink = .standardError) -> Logger {
        let lvl = Logger.Level(rawValue: level) ?? .info
        return Logger(label: label) { name in
            var handler = JSONLogHandler(label: name, level: lvl, sink: sink)
            // `correlation_id` and `trace_id` of the request or job the logging task works for.
            handler.metadataProvider = Telemetry.metadataProvider
            return handler
        }
    }

    /// A copy carrying the given metadata on every line it writes.
    public func with(_ pairs: [String: String?]) -> Logger {
        var copy = self
        for (key, value) in pairs { if let value { copy[metadataKey: key] = .string(value) } }
        return copy
    }
}

/// A flat JSON object of strings, written as `JSONEncoder.sentinel` writes it (keys sorted, `/`
/// not escaped), for the short bodies of hot routes: a webhook's 202 built a `JSONEncoder` (a new
/// one per call) for two keys.
public enum FlatJSON {
    public static func encode(_ fields: [String: String]) -> [UInt8] {
        var line = JSONLine()
        line.object(fields.mapValues { .string($0) })
        return line.bytes
    }
}
