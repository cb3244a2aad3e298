import ArgumentParser
import AsyncHTTPClient
import Foundation
import Logging
import SentinelCore

/// The idle appliance: `sentinel serve` (a child process) from exec to its first `/readyz` 200,
/// and its resident memory after sitting idle, with 1 and with many workspace files.
struct IdleBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "idle", abstract: "sentinel serve: start to /readyz 200, and RSS when idle.")
    @Option(help: "Workspace counts.") var workspaces: [Int] = [1, 1_000]
    @Option(help: "Seconds idle before memory is read.") var idleSeconds = 10.0
    @Option(help: "Starts measured per workspace count (the table shows the median and the slowest).") var starts = 3
    @Option(help: "The sentinel executable (default: beside this program).") var sentinel: String?

    func run() async throws {
        let executable = try ServeProcess.executable(sentinel)
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        var rows: [String] = []
        do {
            for count in workspaces {
                let dir = TemporaryBenchDirectory()
                defer { dir.remove() }
                let dataURL = dir.url.appendingPathComponent("data")
                let data = DataDirectory(path: dataURL.path)
                try data.prepare()
                let opener = DatabaseOpener(config: SentinelConfig())
                let control = try ControlStore(dataDirectory: data, opener: opener)
                let service = WorkspaceService(dataDirectory: data, control: control, opener: opener)
                for i in 0..<count { _ = try service.create(name: "idle-\(i)") }
                var ready: [Double] = []
                var listening: [Double] = []
                var rss = 0.0, peak = 0.0
                for attempt in 0..<starts {
                    let serve = try ServeProcess(executable: executable, dataDirectory: dataURL)
                    do {
                        let port = try await serve.port()
                        listening.append((ContinuousClock.now - serve.started).seconds)
                        let readyAt = try await waitForStatus(client, "http://127.0.0.1:\(port)/readyz")
                        ready.append((readyAt - serve.started).seconds)
                        if attempt == starts - 1 {
                            try await Task.sleep(for: .seconds(idleSeconds))
                            rss = serve.memoryMiB("VmRSS")
                            peak = serve.memoryMiB("VmHWM")
                        }
                    } catch {
                        await serve.stop()
                        throw error
                    }
                    await serve.stop()
                }
                let r = ready.sorted(), l = listening.sorted()
                rows.append("| \(count) | \(ms(l[l.count / 2])) | \(ms(r[r.count / 2])) | \(ms(r.last!)) | \(String(format: "%.0f", idleSeconds)) s | "
                    + "\(String(format: "%.1f", rss)) MiB | \(String(format: "%.1f", peak)) MiB |")
            }
        } catch {
            try? await client.shutdown()
            throw error
        }
        try await client.shutdown()
        print("| workspaces | exec → listening (median) | exec → /readyz 200 (median) | slowest of \(starts) | idle | RSS after idle | peak RSS |")
        print("|---|---|---|---|---|---|---|")
        rows.forEach { print($0) }
    }
}
