import ArgumentParser
import Dispatch
import Foundation
import SentinelTestSupport
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The reliability suite (issue 15): the real `sentinel` binary (built beside this one) as a child
/// process, against the loopback fake GitHub and fake LLM served by this process. Prints the
/// scenario's table and writes it into its section of docs/reliability.md.
struct ChaosBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chaos",
        abstract: "Reliability scenarios against the real binary: kill9, lru, disk-full, soak, noisy-neighbour.")

    enum Scenario: String, ExpressibleByArgument, CaseIterable {
        case kill9, lru, diskFull = "disk-full", soak, noisyNeighbour = "noisy-neighbour"
    }

    @Argument(help: "kill9 | lru | disk-full | soak | noisy-neighbour") var scenario: Scenario
    @Option(help: "kill9: SIGKILLs.") var kills = 50
    @Option(help: "Workspaces (kill9, soak; lru uses 10 × --max-open).") var workspaces = 6
    @Option(help: "kill9: pull requests per workspace.") var pulls = 5
    @Option(help: "lru: workspaces.max_open of the served binary.") var maxOpen = 8
    @Option(help: "lru: rounds of a pull request in every workspace.") var rounds = 3
    @Option(help: "lru: jobs.global_concurrency of the served binary (files in use are never closed).") var globalConcurrency = 8
    @Option(help: "soak: seconds of load.") var duration = 1800
    @Option(help: "soak: seconds between samples.") var sampleEvery = 10
    @Option(help: "noisy-neighbour: deliveries into the noisy workspace.") var jobs = 10_000
    @Option(help: "noisy-neighbour: review requests in the quiet workspace.") var probes = 20
    @Option(help: "disk-full: size of the tmpfs the data directory is mounted on (needs root).") var tmpfsSize = "48m"
    @Option(help: "Markdown file whose section for the scenario is replaced (nothing written when it does not exist).")
    var docs = "docs/reliability.md"
    @ArgumentParser.Flag(help: "Do not write docs/reliability.md.") var noDocs = false

    func run() async throws {
        var options = RigOptions()
        var mount: URL?
        switch scenario {
        case .kill9, .soak: options.workspaces = workspaces
        case .lru:
            options.workspaces = 10 * maxOpen
            options.maxOpen = maxOpen
            options.environment["SENTINEL_JOBS_GLOBAL_CONCURRENCY"] = String(globalConcurrency)
        case .noisyNeighbour: options.workspaces = 2
        case .diskFull:
            options.workspaces = 2
            let point = FileManager.default.temporaryDirectory.appendingPathComponent("sentinel-diskfull-\(getpid())")
            try FileManager.default.createDirectory(at: point, withIntermediateDirectories: true)
            let status = try runTool("/bin/mount", ["-t", "tmpfs", "-o", "size=\(tmpfsSize)", "tmpfs", point.path])
            guard status == 0 else {
                throw BenchError("disk-full needs a tmpfs (mount -t tmpfs as root); here it failed. The max_page_count simulation runs in swift test (ReliabilityTests).")
            }
            mount = point
            options.dataPath = point.appendingPathComponent("data").path
        }
        let rig = try await ReliabilityRig.start(options)
        // Ctrl-C or SIGTERM: the child server is killed before this process goes.
        let handlers = Self.killChildOnSignals(rig)
        defer { handlers.forEach { $0.cancel() } }
        let report: ReliabilityReport
        do {
            switch scenario {
            case .kill9: report = try await ReliabilityScenarios.killUnderLoad(rig, kills: kills, pullsPerWorkspace: pulls)
            case .lru: report = try await ReliabilityScenarios.lruChurn(rig, rounds: rounds, concurrency: min(8, globalConcurrency))
            case .soak: report = try await ReliabilityScenarios.soak(rig, duration: .seconds(duration), every: .seconds(sampleEvery))
            case .noisyNeighbour: report = try await ReliabilityScenarios.noisyNeighbour(rig, jobs: jobs, probes: probes)
            case .diskFull: report = try await ReliabilityScenarios.diskFull(rig, ballast: mount!.appendingPathComponent("ballast"))
            }
        } catch {
            await rig.shutdown()
            if let mount { _ = try? runTool("/bin/umount", [mount.path]) }
            throw error
        }
        await rig.shutdown()
        if let mount { _ = try? runTool("/bin/umount", [mount.path]); try? FileManager.default.removeItem(at: mount) }

        print("## \(report.title)\n")
        print(report.markdown)
        if !noDocs, FileManager.default.fileExists(atPath: docs) {
            try Self.replaceSection(in: URL(fileURLWithPath: docs), report: report)
            print("\n(written to \(docs))")
        }
        if !report.passed { throw BenchError("failed: " + report.failures.joined(separator: "; ")) }
    }

    static func killChildOnSignals(_ rig: ReliabilityRig) -> [any DispatchSourceSignal] {
        [SIGINT, SIGTERM].map { signo in
            signal(signo, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signo, queue: .global())
            source.setEventHandler {
                rig.server?.kill()
                Glibc.exit(130)
            }
            source.resume()
            return source
        }
    }

    func runTool(_ path: String, _ arguments: [String]) throws -> Int32 {
        try ChildProcess(executable: path, arguments: arguments, environment: ProcessInfo.processInfo.environment,
                         stdout: .inherit, stderr: .inherit).waitUntilExitBlocking()
    }

    /// Replaces the scenario's section (between its markers) or appends one; other sections
    /// (the fault matrix) are left as they are.
    static func replaceSection(in file: URL, report: ReliabilityReport) throws {
        var text = try String(contentsOf: file, encoding: .utf8)
        let (open, close) = ("<!-- chaos:\(report.key) -->", "<!-- /chaos:\(report.key) -->")
        let stamp = ISO8601DateFormatter().string(from: Date())
        let section = "\(open)\n### \(report.title)\n\nMeasured \(stamp) with `sentinel-bench chaos \(report.key)`.\n\n\(report.markdown)\n\(close)"
        if let start = text.range(of: open), let end = text.range(of: close, range: start.upperBound..<text.endIndex) {
            text.replaceSubrange(start.lowerBound..<end.upperBound, with: section)
        } else {
            text += (text.hasSuffix("\n") ? "\n" : "\n\n") + section + "\n"
        }
        try text.write(to: file, atomically: true, encoding: .utf8)
    }
}
