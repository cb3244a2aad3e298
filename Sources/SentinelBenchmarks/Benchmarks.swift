import ArgumentParser
import Foundation
import GRDB
import Logging
import SentinelCore
import ServiceLifecycle
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Release-mode benchmarks whose figures go into docs/benchmarks.md. Each prints a markdown table
/// with its reference measured in the same run where one can run here.
@main
struct SentinelBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sentinel-bench",
        abstract: "Sentinel benchmarks (build with -c release).",
        subcommands: [JobsBenchmark.self, PriorityBenchmark.self, TenantsBenchmark.self, IntakeBenchmark.self, ReviewBenchmark.self,
                      IdleBenchmark.self, EngineBenchmark.self, ExportBenchmark.self, ChaosBenchmark.self])
}

struct JobsBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "jobs", abstract: "No-op jobs through the durable queue.")
    @Option(help: "Jobs per throughput run.") var jobs = 20_000
    @Option(help: "Workspace counts to run.") var workspaces: [Int] = [1, 100]
    @Option(help: "Enqueue rates of the latency phases, as fractions of the measured throughput.")
    var latencyLoad: [Double] = [0.1, 0.5]
    @Option(help: "Seconds of each latency phase.") var latencySeconds = 5.0
    @Option(help: "Seconds of rest before each latency phase, after the logs are checkpointed.") var settleSeconds = 1.0
    @Option(help: "jobs.global_concurrency.") var globalConcurrency = 64
    @Option(help: "jobs.workspace_concurrency (default: 256 / workspaces, 1...64).") var workspaceConcurrency: Int?

    func run() async throws {
        var rows: [String] = []
        let raw = try rawSQLiteRate(transactions: 2_000)
        for count in workspaces {
            let run = try await measure(workspaceCount: count)
            for phase in run.phases {
                rows.append("| \(count) | \(globalConcurrency) / \(perWorkspaceConcurrency(count)) | \(jobs) | \(fmt(run.throughput)) jobs/s | \(µs(run.cpuPerJob)) | \(fmt(raw)) txn pairs/s | \(String(format: "%.2f", run.throughput / raw))× | \(fmt(phase.rate))/s | \(ms(phase.latency.p50)) | \(ms(phase.latency.p99)) | \(µs(phase.cpuPerJob)) |")
            }
        }
        print("| workspaces | concurrency (global / per workspace) | jobs | Sentinel queue | CPU per drained job | raw SQLite insert+delete (FULL, 1 per txn) | ratio | latency phase load | queue latency p50 | p99 | CPU per job enqueued and run |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        rows.forEach { print($0) }
    }

    /// A drained backlog and the latency phases after it. CPU figures are this process's (the
    /// queue, its scheduler and, in the latency phases, the enqueues) per job.
    struct QueueRun {
        struct Phase { var rate: Double; var latency: Percentiles; var cpuPerJob: Double }
        var throughput: Double
        var cpuPerJob: Double
        var phases: [Phase]
    }

    func perWorkspaceConcurrency(_ workspaceCount: Int) -> Int {
        workspaceConcurrency ?? max(1, min(64, 256 / workspaceCount))
    }

    /// The same writes a job costs at minimum (one insert, one delete), one durable transaction each.
    func rawSQLiteRate(transactions: Int) throws -> Double {
        let dir = TemporaryBenchDirectory()
        defer { dir.remove() }
        let database = try DatabaseOpener(synchronous: .full).open(dir.url.appendingPathComponent("raw.sqlite"), kind: .workspace, create: true)
        let start = ContinuousClock.now
        for _ in 0..<transactions {
            let id = try database.write { db -> Int64 in
                try db.execute(sql: "INSERT INTO jobs (kind, payload, priority, state, max_attempts, run_at, created_at) VALUES ('noop', x'7b7d', 1, 'queued', 3, 0, 0)")
                return db.lastInsertedRowID
            }
            try database.write { db in try db.execute(sql: "DELETE FROM jobs WHERE id = ?", arguments: [id]) }
        }
        let elapsed = (ContinuousClock.now - start).seconds
        try database.close()
        return Double(transactions) / elapsed
    }

    /// The throughput of a drained backlog, then queue latency at each of `latencyLoad`.
    func measure(workspaceCount: Int) async throws -> QueueRun {
        let dir = TemporaryBenchDirectory()
        defer { dir.remove() }
        var config = SentinelConfig()
        config.jobs.globalConcurrency = globalConcurrency
        config.jobs.workspaceConcurrency = perWorkspaceConcurrency(workspaceCount)
        config.jobs.rateLimitPerSecond = 1_000_000
        config.jobs.rateLimitBurst = 1_000_000
        config.jobs.pollIntervalMilliseconds = 50
        let done = Counter()
        let latencies = LatencyRecorder()
        var registry = JobRegistry()
        registry.register("noop") { ctx in
            latencies.record(Date().timeIntervalSince1970 - ctx.job.runAt)
            done.increment()
        }
        let data = DataDirectory(path: dir.url.path)
        try data.prepare()
        let control = try ControlStore(dataDirectory: data, opener: DatabaseOpener(config: config))
        let service = WorkspaceService(dataDirectory: data, control: control, opener: DatabaseOpener(config: config))
        let ids = try (0..<workspaceCount).map { try service.create(name: "bench-\($0)").workspaceID! }
        let logger = Logger.sentinel(level: "error")
        let supervisor = Supervisor(dataDirectory: data, control: control, config: config, registry: registry, logger: logger)
        let scheduler = JobScheduler(supervisor: supervisor, logger: logger)

        // Throughput: a full backlog, drained.
        let perWorkspace = jobs / workspaceCount
        try await withThrowingTaskGroup(of: Void.self) { group in
            for id in ids {
                group.addTask {
                    try await supervisor.withWorkspace(id) { actor in
                        try await withThrowingTaskGroup(of: Void.self) { inner in
                            for _ in 0..<perWorkspace { inner.addTask { _ = try await actor.enqueue(JobRequest(kind: "noop")) } }
                            try await inner.waitForAll()
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        let total = perWorkspace * workspaceCount
        let services = ServiceGroup(configuration: .init(services: [.init(service: supervisor), .init(service: scheduler)], logger: logger))
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await services.run() }
            let (start, cpuAtStart) = (ContinuousClock.now, processCPUSeconds())
            while done.value < total { try await Task.sleep(for: .milliseconds(5)) }
            let throughput = Double(total) / (ContinuousClock.now - start).seconds
            let cpuPerJob = (processCPUSeconds() - cpuAtStart) / Double(total)

            // Latency: jobs enqueued at a steady rate below capacity, due immediately; due → started.
            var phases: [QueueRun.Phase] = []
            for load in latencyLoad {
                // The queue's own commits (claims, outcomes) are not fsynced: the first durable commit
                // in each file after a drained backlog flushes megabytes of them (about a second over
                // 100 files). A phase measures the steady state: the logs are checkpointed first.
                for id in ids { _ = try await supervisor.withWorkspace(id) { try await $0.truncateWAL() } }
                try await Task.sleep(for: .seconds(settleSeconds))
                let latencyRate = max(100, Int(throughput * load))
                latencies.reset()
                let (doneBefore, cpuBefore) = (done.value, processCPUSeconds())
                let target = done.value + Int(Double(latencyRate) * latencySeconds)
                let interval = Duration.nanoseconds(Int64(1e9 / Double(latencyRate) * 10))
                var next = ContinuousClock.now
                var produced = 0
                var cursor = 0
                while produced < Int(Double(latencyRate) * latencySeconds) {
                    for _ in 0..<10 {
                        let id = ids[cursor % ids.count]
                        cursor += 1
                        group.addTask { _ = try? await supervisor.withWorkspace(id) { try await $0.enqueue(JobRequest(kind: "noop")) } }
                        produced += 1
                    }
                    next += interval
                    try await Task.sleep(until: next, clock: .continuous)
                }
                while done.value < target { try await Task.sleep(for: .milliseconds(5)) }
                phases.append(.init(rate: Double(latencyRate), latency: latencies.percentiles(),
                                    cpuPerJob: (processCPUSeconds() - cpuBefore) / Double(max(1, done.value - doneBefore))))
            }
            await services.triggerGracefulShutdown()
            try await group.waitForAll()
            return QueueRun(throughput: throughput, cpuPerJob: cpuPerJob, phases: phases)
        }
    }
}

struct TenantsBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "tenants", abstract: "Many workspace files: create, cold open + query, memory.")
    @Option(help: "Workspace files to create.") var count = 10_000
    @Option(help: "Cold opens to sample.") var samples = 2_000
    @Option(help: "workspaces.max_open (LRU size).") var maxOpen = 256
    @Option(help: "Keep the data directory at this path instead of a temp dir.") var dataDir: String?

    func run() async throws {
        let dir = dataDir.map { TemporaryBenchDirectory(path: $0) } ?? TemporaryBenchDirectory()
        defer { if dataDir == nil { dir.remove() } }
        var config = SentinelConfig()
        config.workspaces.maxOpen = maxOpen
        let data = DataDirectory(path: dir.url.path)
        try data.prepare()
        let opener = DatabaseOpener(config: config)
        let control = try ControlStore(dataDirectory: data, opener: opener)
        let service = WorkspaceService(dataDirectory: data, control: control, opener: opener)
        var ids = try control.workspaceIDs()
        let createStart = ContinuousClock.now
        let toCreate = max(0, count - ids.count)
        for i in 0..<toCreate { ids.append(try service.create(name: "tenant-\(ids.count + i)-\(UUID().uuidString.prefix(6))").workspaceID!) }
        let createElapsed = (ContinuousClock.now - createStart).seconds
        let supervisor = Supervisor(dataDirectory: data, control: control, config: config, registry: JobRegistry(), logger: Logger.sentinel(level: "error"))
        let baselineRSS = residentMemoryMiB()
        var timings: [Double] = []
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<samples {
            let id = ids[Int(rng.next(upperBound: UInt64(ids.count)))]
            let wasOpen = await supervisor.openWorkspaceIDs.contains(id)
            let start = ContinuousClock.now
            _ = try await supervisor.withWorkspace(id) { actor in
                try await actor.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM jobs WHERE state = 'queued'") }
            }
            if !wasOpen { timings.append((ContinuousClock.now - start).seconds) }
        }
        // Fill the LRU completely, then read memory and descriptors.
        for id in ids.prefix(maxOpen) { _ = try await supervisor.withWorkspace(id) { try await $0.read { db in try Int.fetchOne(db, sql: "SELECT 1") } } }
        let open = await supervisor.openWorkspaceIDs.count
        let rss = residentMemoryMiB()
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
        await supervisor.shutdown()
        let p = Percentiles(timings)
        print("| workspace files | create (total, per file) | cold open + query p50 | p99 | open (LRU) | RSS with LRU full | RSS before opens | open fds |")
        print("|---|---|---|---|---|---|---|---|")
        let created = toCreate > 0 ? "\(String(format: "%.1f", createElapsed)) s, \(String(format: "%.2f", createElapsed / Double(toCreate) * 1000)) ms" : "(reused)"
        print("| \(ids.count) | \(created) | \(ms(p.p50)) | \(ms(p.p99)) | \(open) | \(String(format: "%.0f", rss)) MiB | \(String(format: "%.0f", baselineRSS)) MiB | \(fds) |")
    }
}

// MARK: - Helpers

struct TemporaryBenchDirectory {
    let url: URL
    init(path: String? = nil) {
        url = path.map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.temporaryDirectory.appendingPathComponent("sentinel-bench-\(UUID().uuidString.prefix(8))")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    func remove() { try? FileManager.default.removeItem(at: url) }
}

final class Counter: Sendable {
    private let count = Mutex(0)
    func increment() { count.withLock { $0 += 1 } }
    /// Returns the current value and increments it.
    func take() -> Int { count.withLock { v in defer { v += 1 }; return v } }
    var value: Int { count.withLock { $0 } }
}

/// Set once, read by many (a stop signal for load loops).
final class Flag: Sendable {
    private let value = Mutex(false)
    func set() { value.withLock { $0 = true } }
    var isSet: Bool { value.withLock { $0 } }
}

final class LatencyRecorder: Sendable {
    private let samples = Mutex<[Double]>([])
    func record(_ seconds: Double) { samples.withLock { $0.append(max(0, seconds)) } }
    func reset() { samples.withLock { $0.removeAll() } }
    func percentiles() -> Percentiles { Percentiles(samples.withLock { $0 }) }
    func values() -> [Double] { samples.withLock { $0 } }
}

struct Percentiles {
    let p50: Double
    let p95: Double
    let p99: Double
    let max: Double
    init(_ values: [Double]) {
        let sorted = values.sorted()
        func at(_ q: Double) -> Double { sorted.isEmpty ? .nan : sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))] }
        p50 = at(0.50)
        p95 = at(0.95)
        p99 = at(0.99)
        max = sorted.last ?? .nan
    }
}

func residentMemoryMiB() -> Double {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return -1 }
    let kb = Double(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
    return kb / 1024
}

/// CPU seconds (user and system) this process has used so far: the figure behind "µs of CPU per
/// job / delivery", steadier on this shared machine than a rate, and what bounds a rate on two
/// cores (at most 2,000,000 µs of CPU a second).
func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

func fmt(_ v: Double) -> String { String(format: "%.0f", v) }
/// Microseconds, from seconds.
func µs(_ seconds: Double) -> String { String(format: "%.0f µs", seconds * 1e6) }
func ms(_ seconds: Double) -> String { String(format: "%.2f ms", seconds * 1000) }
