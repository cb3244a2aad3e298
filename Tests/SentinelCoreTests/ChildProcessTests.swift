import Foundation
import Testing
import SentinelTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The subprocess runner the tests and benchmarks use instead of Foundation's `Process`.
@Suite struct ChildProcessTests {
    static let environment = ProcessInfo.processInfo.environment

    @Test func capturesOutputErrorAndExitCode() async throws {
        let child = try ChildProcess(executable: "/bin/sh", arguments: ["-c", "echo out; echo err >&2; exit 3"], environment: Self.environment)
        #expect(await child.waitForExit(timeout: .seconds(30)) == 3)
        #expect(child.stdout == "out\n")
        #expect(child.stderr == "err\n")
    }

    @Test func feedsStandardInputThenEndOfFile() async throws {
        let text = String(repeating: "line of input\n", count: 1_000)
        let child = try ChildProcess(executable: "/bin/cat", arguments: [], environment: Self.environment, stdin: Data(text.utf8))
        #expect(await child.waitForExit(timeout: .seconds(30)) == 0)
        #expect(child.stdout == text)
    }

    @Test func passesTheEnvironmentAndWritesToFiles() throws {
        let directory = TemporaryDirectory("child-process")
        defer { directory.cleanup() }
        let file = directory.url.appendingPathComponent("out.log").path
        let child = try ChildProcess(executable: "/bin/sh", arguments: ["-c", "echo \"$GREETING\"; echo second >&2"],
                                     environment: ["GREETING": "hello"], stdout: .file(file), stderr: .file(file))
        #expect(child.waitUntilExitBlocking() == 0)
        let lines = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n").sorted()
        #expect(lines == ["hello", "second"])
    }

    @Test func reportsTheSignalThatEndedIt() async throws {
        let child = try ChildProcess(executable: "/bin/sleep", arguments: ["30"], environment: Self.environment)
        #expect(child.isRunning)
        child.signal(SIGKILL)
        #expect(await child.waitForExit(timeout: .seconds(30)) == SIGKILL)
        #expect(!child.isRunning)
    }

    @Test func refusesAMissingExecutable() {
        #expect(throws: ChildProcessError.self) {
            try ChildProcess(executable: "/nonexistent/sentinel", arguments: [], environment: [:])
        }
    }

    /// The child gets its three standard descriptors and nothing else, even descriptors this
    /// process opened without close-on-exec.
    @Test func childInheritsOnlyStandardDescriptors() async throws {
        let leaky = (0..<20).map { _ in open("/dev/null", O_RDONLY) }
        defer { for fd in leaky { close(fd) } }
        let child = try ChildProcess(executable: "/bin/sh", arguments: ["-c", "ls /proc/$$/fd"], environment: Self.environment)
        #expect(await child.waitForExit(timeout: .seconds(30)) == 0)
        let descriptors = Set(child.stdout.split(separator: "\n").compactMap { Int32($0) })
        #expect(descriptors.isSuperset(of: [0, 1, 2]))
        #expect(descriptors.isDisjoint(with: leaky), "inherited: \(descriptors.intersection(leaky).sorted())")
    }

    /// With thousands of descriptors open (as the parallel suite has), starting children keeps
    /// working: Foundation's `Process.run()` on this toolchain could over-read glibc's `readdir`
    /// buffer of /proc/self/fd there and kill the test process.
    @Test func startsChildrenWithThousandsOfDescriptorsOpen() async throws {
        var open: [Int32] = []
        defer { for fd in open { close(fd) } }
        for round in 0..<50 {
            for _ in 0..<30 {
                let fd = Glibc.open("/dev/null", O_RDONLY | O_CLOEXEC)
                if fd >= 0 { open.append(fd) }
            }
            let child = try ChildProcess(executable: "/bin/echo", arguments: ["\(round)"], environment: Self.environment)
            #expect(await child.waitForExit(timeout: .seconds(30)) == 0)
            #expect(child.stdout == "\(round)\n")
        }
    }
}
