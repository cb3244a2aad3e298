import Crypto
import Foundation
import GRDB
import Logging
import SentinelCore
import ServiceLifecycle
import Synchronization

/// A fresh data directory under the system temp dir, removed by `cleanup()`.
public struct TemporaryDirectory: Sendable {
    public let url: URL

    public init(_ label: String = "sentinel-test") {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("\(label)-\(UUID().uuidString.prefix(8))", isDirectory: true)
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    public var path: String { url.path }
    public func cleanup() { try? FileManager.default.removeItem(at: url) }
}

/// A configuration tuned for tests: tiny backoff, short leases, fast polling.
public func testConfig(_ adjust: (inout SentinelConfig) -> Void = { _ in }) -> SentinelConfig {
    var config = SentinelConfig()
    config.jobs.backoffBaseSeconds = 0.01
    config.jobs.backoffMaxSeconds = 0.05
    // Long enough that a loaded CI machine never loses a lease by accident; tests of lease expiry set their own.
    config.jobs.leaseSeconds = 10
    config.jobs.pollIntervalMilliseconds = 20
    config.jobs.rateLimitPerSecond = 10_000
    config.jobs.rateLimitBurst = 10_000
    config.shutdown.drainSeconds = 2
    // Tests sweep for missed work explicitly (`appliance.reconcile.sweepAll()`), never behind their back.
    config.reconcile.enabled = false
    adjust(&config)
    return config
}

/// The platform pieces of one appliance without HTTP: control store, workspaces, supervisor and
/// scheduler on a temp directory. Between `startScheduler` and `stop` the supervisor and scheduler
/// run as one `ServiceGroup`, in the order `sentinel serve` runs them.
public final class TestHarness: Sendable {
    public let directory: TemporaryDirectory
    public let dataDirectory: DataDirectory
    public let config: SentinelConfig
    public let control: ControlStore
    public let workspaces: WorkspaceService
    public let supervisor: Supervisor
    public let scheduler: JobScheduler
    public let log: CapturedLog
    private let running = Mutex<RunningGroup?>(nil)

    /// `reusing` opens another harness on the same data directory (a restart of the process).
    public init(config: SentinelConfig = testConfig(), registry: JobRegistry = JobRegistry(), reusing other: TestHarness? = nil,
                metrics: SentinelMetrics = SentinelMetrics()) throws {
        directory = other?.directory ?? TemporaryDirectory()
        dataDirectory = DataDirectory(path: directory.path)
        try dataDirectory.prepare()
        self.config = config
        let opener = DatabaseOpener(config: config)
        control = try ControlStore(dataDirectory: dataDirectory, opener: opener)
        workspaces = WorkspaceService(dataDirectory: dataDirectory, control: control, opener: opener, litestream: config.litestream)
        log = CapturedLog()
        let logger = Logger.sentinel(label: "test", level: "debug", sink: log.sink)
        supervisor = Supervisor(dataDirectory: dataDirectory, control: control, config: config, registry: registry, logger: logger,
                                metrics: metrics)
        scheduler = JobScheduler(supervisor: supervisor, logger: logger, metrics: metrics)
    }

    public func createWorkspace(_ name: String = "ws-\(UUID().uuidString.prefix(6))") throws -> WorkspaceID {
        try workspaces.create(name: name).workspaceID!
    }

    @discardableResult
    public func enqueue(_ request: JobRequest, in workspace: WorkspaceID) async throws -> EnqueueResult {
        try await supervisor.withWorkspace(workspace) { try await $0.enqueue(request) }
    }

    public func jobs(in workspace: WorkspaceID, state: JobState? = nil) async throws -> [JobRecord] {
        try await supervisor.withWorkspace(workspace) { try await $0.jobs(state: state, limit: 10_000) }
    }

    public func startScheduler() {
        let group = ServiceGroup(configuration: .init(services: [.init(service: supervisor), .init(service: scheduler)],
                                                      logger: Logger(label: "test.lifecycle")))
        running.withLock { $0 = RunningGroup(group) }
    }

    /// Triggers the graceful shutdown (as SIGTERM would) without waiting for the drain.
    public func beginShutdown() async {
        await running.withLock { $0 }?.beginShutdown()
    }

    public func stop() async {
        try? await running.withLock { $0 }?.shutdown()
        await supervisor.shutdown()
        directory.cleanup()
    }
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
/// A condition that throws counts as not (yet) holding.
public func eventually(timeout: Duration = .seconds(60), _ condition: @Sendable () async throws -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if (try? await condition()) == true { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return (try? await condition()) == true
}

/// A thread-safe recorder for what handlers observed.
public final class Recorder<T: Sendable>: Sendable {
    private let items = Mutex<[T]>([])
    public init() {}
    public func append(_ item: T) { items.withLock { $0.append(item) } }
    public var all: [T] { items.withLock { $0 } }
    public var count: Int { items.withLock { $0.count } }
}

public enum SHA256Hex {
    public static func of(_ data: Data) -> String {
        SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    }
}

/// Writes 64 bytes of 0xFF over the start of `table`'s root page in an SQLite file that is not
/// open: the file still opens, and reading that table (or `integrity_check`) finds it damaged.
public func damageRootPage(of table: String, in file: URL) throws {
    let reader = try DatabaseQueue(path: file.path)
    let (root, pageSize) = try reader.inDatabase { db in
        (try Int.fetchOne(db, sql: "SELECT rootpage FROM sqlite_master WHERE name = ?", arguments: [table])!, try Int.fetchOne(db, sql: "PRAGMA page_size")!)
    }
    try reader.close()
    let handle = try FileHandle(forWritingTo: file)
    try handle.seek(toOffset: UInt64((root - 1) * pageSize))
    try handle.write(contentsOf: Data(repeating: 0xFF, count: 64))
    try handle.close()
}
