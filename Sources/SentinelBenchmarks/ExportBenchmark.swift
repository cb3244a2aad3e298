import ArgumentParser
import Foundation
import SentinelTestSupport
import GRDB
import Logging
import SentinelCore

/// `export`: many events across many workspaces → one dump; events/s, peak memory while
/// exporting, and how long PostgreSQL takes to load the dump (first load and an idempotent reload).
struct ExportBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "export", abstract: "Analytics export: events/s, peak memory, PostgreSQL load time.")
    @Option(help: "Events in total.") var events = 1_000_000
    @Option(help: "Workspaces they are spread across.") var workspaces = 100
    @Option(help: "libpq connection string of a loopback PostgreSQL to load the dump into (skipped when unset).") var postgres: String?
    @Option(help: "Keep the data directory at this path instead of a temp dir (events are generated once).") var dataDir: String?

    func run() async throws {
        let dir = dataDir.map { TemporaryBenchDirectory(path: $0) } ?? TemporaryBenchDirectory()
        defer { if dataDir == nil { dir.remove() } }
        let config = SentinelConfig()
        let data = DataDirectory(path: dir.url.path)
        try data.prepare()
        let opener = DatabaseOpener(config: config)
        let control = try ControlStore(dataDirectory: data, opener: opener)
        let service = WorkspaceService(dataDirectory: data, control: control, opener: opener)
        if try control.workspaceIDs().isEmpty {
            let start = ContinuousClock.now
            let perWorkspace = events / workspaces
            for w in 0..<workspaces {
                let id = try service.create(name: "bench-\(w)").workspaceID!
                let writer = try opener.open(data.workspaceFile(id), kind: .workspace)
                try await writer.write { db in
                    let base = Date(timeIntervalSince1970: 1_795_000_000)
                    for i in 0..<perWorkspace {
                        let at = base.addingTimeInterval(Double(i) * 259.2)  // 10,000 events span 30 days
                        let repository = "acme/repo-\(i % 7)"
                        let event: DomainEvent
                        switch i % 3 {
                        case 0:
                            event = try DomainEvent(type: "RunCompleted", subject: "run:\(i)", payload: RunEventPayload(
                                runID: Int64(i), repository: repository, prNumber: i % 500, headSHA: "0123456789abcdef0123456789abcdef0123\(i % 10_000)",
                                trigger: "opened", state: Rollups.outcomes[i % 4], reason: nil, findings: i % 6, durationMs: 800 + (i * 31) % 9_000,
                                findingCounts: [FindingCount(severity: "medium", category: "correctness", count: i % 6)]))
                        case 1:
                            event = try DomainEvent(type: "UsageRecorded", subject: "run:\(i - 1)", payload: [
                                "repository": repository, "provider": "openai", "model": "gpt-4o", "input_tokens": String(3_000 + i % 900),
                                "output_tokens": String(400 + i % 90), "cost_usd": String(format: "%.6f", Double(i % 1_000) * 0.00001)])
                        default:
                            event = try DomainEvent(type: "RunCreated", subject: "run:\(i + 1)", payload: RunEventPayload(
                                runID: Int64(i + 1), repository: repository, prNumber: i % 500, headSHA: "fedcba9876543210", trigger: "synchronize"))
                        }
                        try EventLog.append(event, in: db, now: at, listeners: [])
                    }
                }
                try writer.close()
            }
            print("generated \(perWorkspace * workspaces) events in \(workspaces) workspaces in \(String(format: "%.1f", (ContinuousClock.now - start).seconds)) s")
        }
        // Peak memory of the export alone: reset the high-water mark first (Linux clear_refs).
        try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
        let before = residentMemoryMiB()
        let exporter = AnalyticsExporter(dataDirectory: data, control: control, opener: opener)
        let start = ContinuousClock.now
        let manifest = try exporter.export()
        let elapsed = (ContinuousClock.now - start).seconds
        let peak = peakResidentMemoryMiB()
        let file = data.exportsDirectory.appendingPathComponent(manifest.file)
        var load = "not measured"
        var reload = "not measured"
        if let postgres {
            load = String(format: "%.1f s", try psqlLoad(postgres, file))
            reload = String(format: "%.1f s", try psqlLoad(postgres, file))
        }
        print("| events | workspaces | export time | events/s | dump size | RSS before | peak RSS during export | PostgreSQL load | reload (no-op) |")
        print("|---|---|---|---|---|---|---|---|---|")
        print("| \(manifest.events) | \(manifest.workspaces.count) | \(String(format: "%.1f s", elapsed)) | \(fmt(Double(manifest.events) / elapsed)) "
              + "| \(manifest.bytes / 1_048_576) MiB | \(fmt(before)) MiB | \(fmt(peak)) MiB | \(load) | \(reload) |")
    }

    func psqlLoad(_ connection: String, _ file: URL) throws -> Double {
        let start = ContinuousClock.now
        let psql = try ChildProcess(executable: "/usr/bin/psql", arguments: ["-X", "-q", connection, "-v", "ON_ERROR_STOP=1", "-f", file.path],
                                    environment: ProcessInfo.processInfo.environment, stdout: .discard, stderr: .inherit)
        let status = psql.waitUntilExitBlocking()
        guard status == 0 else { throw BenchError("psql exited \(status)") }
        return (ContinuousClock.now - start).seconds
    }
}
