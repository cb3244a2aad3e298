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
        var object: [String: Any] = [
            "time": Self.timestamp(),
            "level": event.level.rawValue,
            "message": event.message.description,
            "logger": label,
        ]
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        for (key, value) in merged { object[key] = Self.plain(value) }
        if event.level >= .warning { object["source"] = "\(event.file.split(separator: "/").last ?? ""):\(event.line)" }
        guard var data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else { return }
        data.append(0x0A)
        sink.write(data)
    }

    static func plain(_ value: Logger.Metadata.Value) -> Any {
        switch value {
        case .string(let s): return s
        case .stringConvertible(let c): return c.description
        case .array(let a): return a.map(plain)
        case .dictionary(let d): return d.mapValues(plain)
        }
    }

    static func timestamp() -> String {
        Date().formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
    }
}

/// Where log lines go. Tests capture them to prove secrets never reach the log.
public final class LogSink: Sendable {
    private let output: Mutex<(@Sendable (Data) -> Void)>

    public init(_ write: @escaping @Sendable (Data) -> Void) { output = Mutex(write) }

    public static let standardError = LogSink { data in FileHandle.standardError.write(data) }

    func write(_ data: Data) { output.withLock { $0(data) } }
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
