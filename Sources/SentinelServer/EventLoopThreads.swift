import NIOCore
import SentinelCore

/// The size of the process's event-loop group (`server.event_loop_threads`): SwiftNIO's shared
/// group, which the listener and every outbound client (AsyncHTTPClient, SMTP) run on. Request
/// handlers, reviews and jobs run on Swift's cooperative pool, one thread per core, beside it; a
/// loop per core as well put four busy threads on two cores, and one loop took more webhook
/// deliveries a second than two there (docs/benchmarks.md, "One event loop on two cores").
public enum EventLoopThreads {
    /// The count `configured` asks for: itself when above 0, otherwise half of `cores`, at least one.
    public static func count(configured: Int, cores: Int = System.coreCount) -> Int {
        configured > 0 ? configured : max(1, cores / 2)
    }

    /// Sizes the shared group for `config`. Must run before anything in the process uses the
    /// group (SwiftNIO stops a process that changes it after): first thing in `serve`.
    @discardableResult
    public static func install(_ config: SentinelConfig) -> Int {
        let threads = count(configured: config.server.eventLoopThreads)
        NIOSingletons.groupLoopCountSuggestion = threads
        return threads
    }

    /// The size the shared group has (or will have when first used).
    public static var current: Int { NIOSingletons.groupLoopCountSuggestion }
}
