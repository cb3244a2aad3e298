import AsyncHTTPClient
import Foundation
import SentinelTestSupport
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// `sentinel serve` as a child process, exactly as an operator runs it (its own address space,
/// so its memory is measured alone), plain HTTP on a port the kernel picks. Its JSON log goes to
/// a file the benchmark reads: the port it listens on, and each run's stage timings.
final class ServeProcess {
    let process: ChildProcess
    let logFile: URL
    let started: ContinuousClock.Instant

    /// The `sentinel` executable: `path`, else the one beside this program (same build directory).
    static func executable(_ path: String?) throws -> URL {
        if let path { return URL(fileURLWithPath: path) }
        let me = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let beside = me.deletingLastPathComponent().appendingPathComponent("sentinel")
        guard FileManager.default.isExecutableFile(atPath: beside.path) else {
            throw BenchError("no sentinel executable at \(beside.path): build it (swift build -c release --product sentinel) or pass --sentinel")
        }
        return beside
    }

    /// Starts `sentinel serve --data-dir DATA --host 127.0.0.1 --port 0 --no-tls` with the
    /// catch-up sweep off (it would call the fake GitHub behind the measurement's back) and
    /// `environment` (`SENTINEL_…` configuration) on top.
    init(executable: URL, dataDirectory: URL, environment: [String: String] = [:]) throws {
        logFile = dataDirectory.deletingLastPathComponent().appendingPathComponent("\(dataDirectory.lastPathComponent)-serve.log")
        try? FileManager.default.removeItem(at: logFile)
        var env = ProcessInfo.processInfo.environment
        env["SENTINEL_RECONCILE_ENABLED"] = "false"
        env["SENTINEL_LOG_LEVEL"] = "info"
        for (k, v) in environment { env[k] = v }
        started = ContinuousClock.now
        process = try ChildProcess(executable: executable.path,
                                   arguments: ["serve", "--data-dir", dataDirectory.path, "--host", "127.0.0.1", "--port", "0", "--no-tls"],
                                   environment: env, stdout: .file(logFile.path), stderr: .file(logFile.path))
    }

    var pid: Int32 { process.pid }

    /// The log's JSON lines so far.
    func logLines() -> [[String: Any]] {
        guard let data = FileManager.default.contents(atPath: logFile.path) else { return [] }
        return data.split(separator: 0x0A).compactMap { (try? JSONSerialization.jsonObject(with: Data($0))) as? [String: Any] }
    }

    /// The port `serve` listens on, once its "listening" line is logged.
    func port(timeout: Duration = .seconds(60)) async throws -> Int {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            guard process.isRunning else { throw BenchError("sentinel serve exited (\(process.terminationStatus ?? -1)); see \(logFile.path)") }
            if let line = logLines().first(where: { $0["message"] as? String == "listening" }),
               let port = (line["port"] as? String).flatMap(Int.init) { return port }
            try await Task.sleep(for: .milliseconds(1))
        }
        throw BenchError("sentinel serve did not listen within \(timeout); see \(logFile.path)")
    }

    /// A line of /proc/PID/status in MiB (`VmRSS`: resident now; `VmHWM`: the peak).
    func memoryMiB(_ field: String) -> Double {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("\(field):") }) else { return -1 }
        return (Double(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) / 1024
    }

    /// Resets the peak (`VmHWM`) to the current resident size (Linux `clear_refs`, value 5).
    func resetPeak() {
        try? "5".write(toFile: "/proc/\(pid)/clear_refs", atomically: false, encoding: .utf8)
    }

    /// SIGTERM (a graceful shutdown, as systemd stops it), then waits for the exit.
    func stop() async {
        guard process.isRunning else { return }
        kill(pid, SIGTERM)
        let deadline = ContinuousClock.now + .seconds(30)
        while process.isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(10)) }
        if process.isRunning { kill(pid, SIGKILL) }
        while process.isRunning { try? await Task.sleep(for: .milliseconds(10)) }
    }
}

/// GETs `url` until it answers `status`; returns when it did.
func waitForStatus(_ client: HTTPClient, _ url: String, status: Int = 200, timeout: Duration = .seconds(60)) async throws -> ContinuousClock.Instant {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if let response = try? await client.execute(HTTPClientRequest(url: url), timeout: .seconds(5)) {
            _ = try? await response.body.collect(upTo: 1 << 20)
            if Int(response.status.code) == status { return ContinuousClock.now }
        }
        try await Task.sleep(for: .milliseconds(1))
    }
    throw BenchError("\(url) did not answer \(status) within \(timeout)")
}
