import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The built `sentinel` executable run as a child process, with its output captured.
public final class SentinelProcess: Sendable {
    private let child: ChildProcess

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

    private init(child: ChildProcess) { self.child = child }

    /// `stdin`: bytes the process reads on standard input (then end of file); nil: /dev/null.
    /// `openFiles`: the soft and (optionally) hard limit on open files it starts with (`ulimit -n`);
    /// nil: this process's.
    /// `fileSizeBlocks`: the largest file it may write, in the shell's 512-byte blocks (`ulimit -f`).
    /// `user`: the uid (and gid) it runs as, through `setpriv` (the test runs as root).
    public static func start(_ arguments: [String], environment: [String: String] = [:], stdin: String? = nil,
                             openFiles: (soft: Int, hard: Int?)? = nil, fileSizeBlocks: Int? = nil, user: UInt32? = nil) throws -> SentinelProcess {
        var env = ProcessInfo.processInfo.environment
        // No catch-up sweep behind a test's back (it would call the integrations' APIs).
        env["SENTINEL_RECONCILE_ENABLED"] = "false"
        for (k, v) in environment { env[k] = v }
        if let user {
            return SentinelProcess(child: try ChildProcess(executable: "/usr/bin/setpriv",
                                                           arguments: ["--reuid=\(user)", "--regid=\(user)", "--clear-groups", executable.path] + arguments,
                                                           environment: env, stdin: stdin.map { Data($0.utf8) }))
        }
        guard openFiles != nil || fileSizeBlocks != nil else {
            return SentinelProcess(child: try ChildProcess(executable: executable.path, arguments: arguments, environment: env,
                                                           stdin: stdin.map { Data($0.utf8) }))
        }
        // The shell sets the limits and becomes the executable (same pid).
        var steps = openFiles.map { ["ulimit -Sn \($0.soft)"] + ($0.hard.map { ["ulimit -Hn \($0)"] } ?? []) } ?? []
        if let fileSizeBlocks { steps.append("ulimit -f \(fileSizeBlocks)") }
        let limits = steps.joined(separator: " && ")
        return SentinelProcess(child: try ChildProcess(executable: "/bin/sh", arguments: ["-c", limits + " && exec \"$0\" \"$@\"", executable.path] + arguments,
                                                       environment: env, stdin: stdin.map { Data($0.utf8) }))
    }

    /// Runs a command to completion.
    public static func run(_ arguments: [String], environment: [String: String] = [:], stdin: String? = nil, fileSizeBlocks: Int? = nil,
                           user: UInt32? = nil) async throws -> (status: Int32, stdout: String, stderr: String) {
        let child = try start(arguments, environment: environment, stdin: stdin, fileSizeBlocks: fileSizeBlocks, user: user)
        let status = await child.waitForExit(timeout: .seconds(120)) ?? -1
        return (status, child.stdout, child.stderr)
    }

    public var stderr: String { child.stderr }
    public var stdout: String { child.stdout }
    public var pid: Int32 { child.pid }
    public var hasExited: Bool { !child.isRunning }

    /// The port from the server's `listening` log line.
    public func waitForListeningPort(timeout: Duration = .seconds(60)) async -> Int? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline, child.isRunning {
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

    /// Waits until a log line holds `text` (standard error, where `serve` logs).
    public func waitForLog(_ text: String, timeout: Duration = .seconds(60)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if stderr.contains(text) { return true }
            if !child.isRunning { return stderr.contains(text) }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return false
    }

    public func signal(_ number: Int32) { child.signal(number) }
    public func terminate() { child.signal(SIGTERM) }
    public func kill() { child.signal(SIGKILL) }

    public func waitForExit(timeout: Duration) async -> Int32? {
        await child.waitForExit(timeout: timeout)
    }
}
