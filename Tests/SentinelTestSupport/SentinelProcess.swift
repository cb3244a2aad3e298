import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The built `sentinel` executable run as a child process, with its output captured.
public final class SentinelProcess: Sendable {
    private let process: Process
    private let errorText = Mutex("")
    private let outputText = Mutex("")

    /// `.build/<config>/sentinel`, beside the test bundle.
    public static var executable: URL {
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [beside, beside.deletingLastPathComponent()] {
            let url = candidate.appendingPathComponent("sentinel")
            if FileManager.default.isExecutableFile(atPath: url.path) { return url }
        }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug/sentinel")
    }

    private init(process: Process) { self.process = process }

    /// `stdin`: bytes the process reads on standard input (then end of file); nil: /dev/null.
    public static func start(_ arguments: [String], environment: [String: String] = [:], stdin: String? = nil) throws -> SentinelProcess {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        // No catch-up sweep behind a test's back (it would call the integrations' APIs).
        env["SENTINEL_RECONCILE_ENABLED"] = "false"
        for (k, v) in environment { env[k] = v }
        process.environment = env
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        let input = stdin.map { _ in Pipe() }
        process.standardInput = input ?? FileHandle.nullDevice
        let child = SentinelProcess(process: process)
        // Plain threads doing blocking reads until EOF: no dispatch sources that could outlive the pipes.
        let readers: [(FileHandle, @Sendable (String) -> Void)] = [
            (err.fileHandleForReading, { text in child.errorText.withLock { $0 += text } }),
            (out.fileHandleForReading, { text in child.outputText.withLock { $0 += text } }),
        ]
        for (handle, append) in readers {
            let thread = Thread {
                while true {
                    let data = handle.availableData
                    if data.isEmpty { break }
                    append(String(decoding: data, as: UTF8.self))
                }
            }
            thread.start()
        }
        try process.run()
        if let input, let stdin {
            input.fileHandleForWriting.write(Data(stdin.utf8))
            try input.fileHandleForWriting.close()
        }
        return child
    }

    /// Runs a command to completion.
    public static func run(_ arguments: [String], environment: [String: String] = [:], stdin: String? = nil) async throws
        -> (status: Int32, stdout: String, stderr: String) {
        let child = try start(arguments, environment: environment, stdin: stdin)
        let status = await child.waitForExit(timeout: .seconds(120)) ?? -1
        try? await Task.sleep(for: .milliseconds(20))
        return (status, child.stdout, child.stderr)
    }

    public var stderr: String { errorText.withLock { $0 } }
    public var stdout: String { outputText.withLock { $0 } }
    public var pid: Int32 { process.processIdentifier }
    public var hasExited: Bool { !process.isRunning }

    /// The port from the server's `listening` log line.
    public func waitForListeningPort(timeout: Duration = .seconds(60)) async -> Int? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline, process.isRunning {
            for line in stderr.split(separator: "\n") where line.contains(#""message":"listening""#) {
                if let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                   let port = (object["port"] as? String).flatMap(Int.init) {
                    return port
                }
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return nil
    }

    public func terminate() { if process.isRunning { Glibc.kill(process.processIdentifier, SIGTERM) } }
    public func kill() { if process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL) } }

    public func waitForExit(timeout: Duration) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning { return nil }
        try? await Task.sleep(for: .milliseconds(50))
        return process.terminationStatus
    }
}
