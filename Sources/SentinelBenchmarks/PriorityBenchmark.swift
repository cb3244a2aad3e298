import ArgumentParser
import Foundation
import Logging
import SentinelCore
import ServiceLifecycle
import Synchronization

/// Issue 17: a `critical` job in one workspace behind a `bulk` backlog in others. Also the
/// noisy-neighbour figure of issue 15 (a review requested in one workspace while another floods
/// the queue): the same measurement.
struct PriorityBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "priority", abstract: "Time for a critical job to start behind a bulk backlog in other workspaces.")
    @Option(help: "Bulk jobs queued before the measurement.") var bulk = 10_000
    @Option(help: "Workspaces the bulk backlog is spread over (one row each).") var bulkWorkspaces: [Int] = [1, 100]
    @Option(help: "Milliseconds each bulk job works (a sleep).") var bulkMilliseconds = 20
    @Option(help: "Critical jobs measured per row, one at a time.") var samples = 200
    @Option(help: "Milliseconds between one critical job starting and the next being enqueued.") var pauseMilliseconds = 10

    func run() async throws {
        print("| bulk backlog | spread over | scheduling | critical jobs | enqueue → started p50 | p95 | p99 | max | bulk left at end |")
        print("|---|---|---|---|---|---|---|---|---|")
        for count in bulkWorkspaces {
            for priorities in [true, false] {
                let (p, left) = try await measure(bulkWorkspaceCount: count, priorities: priorities)
                let mode = priorities ? "priorities across workspaces" : "round-robin only (aging 1 ms)"
                print("| \(bulk) | \(count) | \(mode) | \(samples) | \(ms(p.p50)) | \(ms(p.p95)) | \(ms(p.p99)) | \(ms(p.max)) | \(left) |")
            }
        }
    }

    func measure(bulkWorkspaceCount: Int, priorities: Bool) async throws -> (Percentiles, Int) {
        let dir = TemporaryBenchDirectory()
        defer { dir.remove() }
        // Production defaults (global 16, 4 per workspace, 50 starts/s per workspace), except the
        // aging that turns cross-workspace priorities off for the reference rows.
        var config = SentinelConfig()
        if !priorities { config.jobs.priorityAgingSeconds = 0.001 }
        let enqueuedAt = EnqueueTimes()
        let latencies = LatencyRecorder()
        let started = Counter()
        let bulkStarted = Counter()
        var registry = JobRegistry()
        let pause = Duration.milliseconds(bulkMilliseconds)
        registry.register("bulk") { _ in
            bulkStarted.increment()
            try await Task.sleep(for: pause)
        }
        registry.register("critical") { ctx in
            let now = ContinuousClock.now
            let sample = Int(String(decoding: ctx.job.payload, as: UTF8.self)) ?? -1
            if let at = enqueuedAt[sample] { latencies.record((now - at).seconds) }
            started.increment()
        }
        let data = DataDirectory(path: dir.url.path)
        try data.prepare()
        let control = try ControlStore(dataDirectory: data, opener: DatabaseOpener(config: config))
        let service = WorkspaceService(dataDirectory: data, control: control, opener: DatabaseOpener(config: config))
        let bulkIDs = try (0..<bulkWorkspaceCount).map { try service.create(name: "bulk-\($0)").workspaceID! }
        let critical = try service.create(name: "critical").workspaceID!
        let logger = Logger.sentinel(level: "error")
        let supervisor = Supervisor(dataDirectory: data, control: control, config: config, registry: registry, logger: logger)
        let scheduler = JobScheduler(supervisor: supervisor, logger: logger)
        let perWorkspace = bulk / bulkWorkspaceCount
        try await withThrowingTaskGroup(of: Void.self) { group in
            for id in bulkIDs {
                group.addTask {
                    try await supervisor.withWorkspace(id) { actor in
                        try await withThrowingTaskGroup(of: Void.self) { inner in
                            for _ in 0..<perWorkspace { inner.addTask { _ = try await actor.enqueue(JobRequest(kind: "bulk", priority: .bulk)) } }
                            try await inner.waitForAll()
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        let services = ServiceGroup(configuration: .init(services: [.init(service: supervisor), .init(service: scheduler)], logger: logger))
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await services.run() }
            // The backlog is being worked on before the first critical job arrives.
            while bulkStarted.value < min(perWorkspace * bulkWorkspaceCount, 32) { try await Task.sleep(for: .milliseconds(1)) }
            for sample in 0..<samples {
                let payload = Data(String(sample).utf8)
                enqueuedAt[sample] = ContinuousClock.now
                _ = try await supervisor.withWorkspace(critical) { try await $0.enqueue(JobRequest(kind: "critical", payload: payload, priority: .critical)) }
                while started.value <= sample { try await Task.sleep(for: .microseconds(200)) }
                try await Task.sleep(for: .milliseconds(pauseMilliseconds))
            }
            let left = perWorkspace * bulkWorkspaceCount - bulkStarted.value
            await services.triggerGracefulShutdown()
            try await group.waitForAll()
            return (latencies.percentiles(), left)
        }
    }
}

/// When each measured job was enqueued, by sample number.
final class EnqueueTimes: Sendable {
    private let times = Mutex<[Int: ContinuousClock.Instant]>([:])
    subscript(sample: Int) -> ContinuousClock.Instant? {
        get { times.withLock { $0[sample] } }
        set { times.withLock { $0[sample] = newValue } }
    }
}
