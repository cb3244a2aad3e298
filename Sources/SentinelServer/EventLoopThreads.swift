import NIOCore
import SentinelCore

/// The size of the process's event-loop group (`server.event_loop_threads`): SwiftNIO's shared
/// group, which the listener and every outbound client (AsyncHTTPClient, SMTP) run on. Request
/// handlers, reviews and jobs run on Swift's cooperative pool, one thread per core, beside it.
/// Serving plain HTTP (behind a TLS-terminating proxy) the loops only move bytes, and a loop per
/// core beside the pool put four busy threads on two cores: one loop took more webhook deliveries
/// a second there. Serving HTTPS the loops also run every TLS handshake and cipher, and one loop
/// took fewer (docs/benchmarks.md, "One event loop on two cores").
public enum EventLoopThreads {
    /// The count `configured` asks for: itself when above 0; otherwise one per core when serving
    /// HTTPS (`tls`), half the cores (at least one) when serving plain HTTP.
    public static func count(configured: Int, tls: Bool, cores: Int = System.coreCount) -> Int {
        if configured > 0 { return configured }
        return tls ? max(1, cores) : max(1, cores / 2)
    }

    /// Sizes the shared group for `config`. Must run before anything in the process uses the
    /// group (SwiftNIO stops a process that changes it after): first thing in `serve`.
    @discardableResult
    public static func install(_ config: SentinelConfig) -> Int {
        let threads = count(configured: config.server.eventLoopThreads, tls: config.server.tlsEnabled)
        NIOSingletons.groupLoopCountSuggestion = threads
        return threads
    }

    /// The size the shared group has (or will have when first used).
    public static var current: Int { NIOSingletons.groupLoopCountSuggestion }
}
