import Foundation
import SentinelCore
import Synchronization

/// Collects log lines in memory, so a test can read what the appliance logged (and prove that
/// secrets never reach the log).
public final class CapturedLog: Sendable {
    private let lines = Mutex<[String]>([])
    public init() {}
    public var sink: LogSink {
        LogSink { [self] data in
            let text = String(decoding: data, as: UTF8.self)
            self.lines.withLock { $0.append(contentsOf: text.split(separator: "\n").map(String.init)) }
        }
    }
    public var all: [String] { lines.withLock { $0 } }
    public var text: String { all.joined(separator: "\n") }
}
