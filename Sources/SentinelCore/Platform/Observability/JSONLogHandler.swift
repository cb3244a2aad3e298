import Foundation
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
        var fields: Logger.Metadata = [
            "time": .string(Self.timestamp()),
            "level": .string(event.level.rawValue),
            "message": .string(event.message.description),
            "logger": .string(label),
        ]
        fields.merge(metadata) { _, new in new }
        if let provided = metadataProvider?.get() { fields.merge(provided) { _, new in new } }
        if let extra = event.metadata { fields.merge(extra) { _, new in new } }
        if event.level >= .warning { fields["source"] = .string("\(event.file.split(separator: "/").last ?? ""):\(event.line)") }
        var line = JSONLine()
        line.object(fields)
        line.bytes.append(0x0A)
        sink.write(Data(line.bytes))
    }

    static func timestamp() -> String {
        Date().formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
    }
}

/// Where log lines go. Tests capture them to prove secrets never reach the log.
public final class LogSink: Sendable {
    private let output: @Sendable (Data) -> Void
    /// One line at a time. The closure stays outside the lock: kept as a generic lock's value, it
    /// would come back from every `withLock` wrapped in two more thunks (`StoredHandlerTests`).
    private let lock = Mutex(())

    public init(_ write: @escaping @Sendable (Data) -> Void) { output = write }

    public static let standardError = LogSink { data in FileHandle.standardError.write(data) }

    func write(_ data: Data) { lock.withLock { _ in output(data) } }
}

/// One log line's JSON, written directly: keys sorted, `/` not escaped, control characters
/// escaped. `JSONSerialization` (sorted keys) took about 200 µs a line on Linux, more CPU than the
/// rest of a webhook delivery's intake, which logs one line at the default level.
struct JSONLine {
    var bytes: [UInt8] = []

    init() { bytes.reserveCapacity(512) }

    mutating func object(_ fields: Logger.Metadata) {
        bytes.append(UInt8(ascii: "{"))
        for (i, key) in fields.keys.sorted().enumerated() {
            if i > 0 { bytes.append(UInt8(ascii: ",")) }
            string(key)
            bytes.append(UInt8(ascii: ":"))
            value(fields[key]!)
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
