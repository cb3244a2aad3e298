#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The process's limit on open files (`RLIMIT_NOFILE`). Every open workspace file holds three
/// descriptors (the database, its `-wal` and its `-shm`), every client connection one: a
/// configuration that keeps more open than the limit allows fails to open workspace files and to
/// accept connections. systemd and most login shells start a process with a soft limit of 1,024
/// under a far higher hard limit and leave it to a program that needs more to raise its own, which
/// `serve` does at start (`raiseSoftLimit`).
public enum FileDescriptorLimit {
    public struct Limits: Sendable, Equatable {
        public var soft: UInt64
        public var hard: UInt64
    }

    /// The current soft and hard limits, or nil where the system does not say.
    public static func current() -> Limits? {
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0 else { return nil }
        return Limits(soft: UInt64(limit.rlim_cur), hard: UInt64(limit.rlim_max))
    }

    /// Raises the soft limit to the hard one; returns the limits before and after (unchanged when
    /// the system refuses).
    @discardableResult
    public static func raiseSoftLimit() -> (before: Limits, after: Limits)? {
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0 else { return nil }
        let before = Limits(soft: UInt64(limit.rlim_cur), hard: UInt64(limit.rlim_max))
        guard limit.rlim_cur < limit.rlim_max else { return (before, before) }
        limit.rlim_cur = limit.rlim_max
        guard setrlimit(resource, &limit) == 0 else { return (before, before) }
        return (before, current() ?? before)
    }

    /// Whether the process (`EMFILE`) or the whole system (`ENFILE`) has no file descriptor left
    /// right now: asked when opening a file failed, to tell a shortage that passes from a file that
    /// cannot be opened.
    public static func isExhausted() -> Bool {
        let descriptor = open("/dev/null", O_RDONLY | O_CLOEXEC)
        if descriptor >= 0 {
            close(descriptor)
            return false
        }
        return errno == EMFILE || errno == ENFILE
    }

    /// About how many descriptors `serve` needs with this configuration at its busiest: three per
    /// workspace file that can be open at once (the LRU's `workspaces.max_open`, exceeded by files in
    /// use: one per running job and per intake journal applier, and by evicted files still closing),
    /// one per client connection, and a margin for control.sqlite's pool, outbound connections, TLS
    /// files, the lock and the log.
    public static func needed(by config: SentinelConfig) -> Int {
        let maxOpen = config.workspaces.maxOpen
        let workspaceFiles = maxOpen + config.jobs.globalConcurrency + max(1, maxOpen / 4) + max(1, maxOpen / 16)
        return 3 * workspaceFiles + config.server.maxConnections + 128
    }

    #if canImport(Glibc)
    private static let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    #else
    private static let resource = RLIMIT_NOFILE
    #endif
}
