import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A child process started with `posix_spawn`, for the subprocesses of the tests and benchmarks
/// (the `sentinel` binary, `psql`, the aiosmtpd server, wrk).
///
/// Not Foundation's `Process`: on this toolchain its `run()` reads `/proc/self/fd` with a struct
/// copy that can run off the end of glibc's `readdir` buffer (swift-corelibs-foundation #5472), which
/// killed the whole test process once the parallel suite had ~1,300 descriptors open. `FileHandle`'s
/// blocking reads also trap on `EINTR`. Here reads retry on `EINTR`, the child gets only its three
/// standard descriptors (everything from 3 up is closed in the child), and exit status comes from
/// `waitpid` on this one pid.
public final class ChildProcess: Sendable {
    /// Where a standard stream of the child goes.
    public enum Output: Sendable {
        /// Read by a thread into `stdout`/`stderr`.
        case capture
        case discard
        /// This process's own stream.
        case inherit
        /// Appended to this file (created if missing).
        case file(String)
        /// A pipe nobody reads: its read end is closed once the child has started, so the child's
        /// writes fail with `EPIPE` (or `SIGPIPE` ends it), as when a log shipper it wrote to exits.
        case unread
    }

    public let pid: pid_t
    private let status = Mutex<Int32?>(nil)
    private let capturedOutput = Mutex("")
    private let capturedError = Mutex("")
    private let readers: Int
    private let readersDone = Mutex(0)

    // glibc has both, but Swift's Glibc module is imported without _GNU_SOURCE, which declares them.
    private typealias Pipe2 = @convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32
    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private static let pipe2: Pipe2? = dlsym(nil, "pipe2").map { unsafeBitCast($0, to: Pipe2.self) }
    private static let addCloseFrom: AddCloseFrom? =
        dlsym(nil, "posix_spawn_file_actions_addclosefrom_np").map { unsafeBitCast($0, to: AddCloseFrom.self) }

    /// Starts `executable` with `arguments`. `stdin`: bytes the child reads, then end of file; nil: /dev/null.
    public init(executable: String, arguments: [String], environment: [String: String],
                stdin: Data? = nil, stdout: Output = .capture, stderr: Output = .capture) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }

        var parentEnds: [Int32] = []   // the parent's ends of the pipes: read ends for output, write end for input
        var childEnds: [Int32] = []
        defer { for fd in childEnds { close(fd) } }
        func makePipe() throws -> (read: Int32, write: Int32) {
            // Close-on-exec from the start, so no child spawned meanwhile on another thread holds an end.
            guard let pipe2 = Self.pipe2 else { throw ChildProcessError("this libc has no pipe2") }
            var fds: [Int32] = [0, 0]
            guard pipe2(&fds, O_CLOEXEC) == 0 else { throw ChildProcessError("pipe2: \(String(cString: strerror(errno)))") }
            return (fds[0], fds[1])
        }

        var inputEnd: Int32?
        if stdin != nil {
            let p = try makePipe()
            posix_spawn_file_actions_adddup2(&actions, p.read, 0)
            childEnds.append(p.read)
            inputEnd = p.write
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        var readEnds: [(fd: Int32, stream: Int)] = []
        var unreadEnds: [Int32] = []
        defer { for fd in unreadEnds { close(fd) } }
        for (target, output) in [(Int32(1), stdout), (Int32(2), stderr)] {
            switch output {
            case .capture:
                let p = try makePipe()
                posix_spawn_file_actions_adddup2(&actions, p.write, target)
                childEnds.append(p.write)
                parentEnds.append(p.read)
                readEnds.append((p.read, Int(target)))
            case .discard:
                posix_spawn_file_actions_addopen(&actions, target, "/dev/null", O_WRONLY, 0)
            case .inherit:
                break
            case .file(let path):
                posix_spawn_file_actions_addopen(&actions, target, path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
            case .unread:
                let p = try makePipe()
                posix_spawn_file_actions_adddup2(&actions, p.write, target)
                childEnds.append(p.write)
                unreadEnds.append(p.read)
            }
        }
        guard let addCloseFrom = Self.addCloseFrom else { throw ChildProcessError("this libc has no posix_spawn_file_actions_addclosefrom_np") }
        _ = addCloseFrom(&actions, 3)

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, nil, argv, envp)
        guard result == 0 else {
            for fd in parentEnds { close(fd) }
            if let inputEnd { close(inputEnd) }
            throw ChildProcessError("cannot start \(executable): \(String(cString: strerror(result)))")
        }
        self.pid = pid
        self.readers = readEnds.count

        for end in readEnds {
            let output = end.stream == 1
            // A plain thread doing blocking reads until end of file.
            let thread = Thread {
                var buffer = [UInt8](repeating: 0, count: 16_384)
                while true {
                    let count = buffer.withUnsafeMutableBytes { read(end.fd, $0.baseAddress, $0.count) }
                    if count < 0 && errno == EINTR { continue }
                    if count <= 0 { break }
                    let text = String(decoding: buffer[0..<count], as: UTF8.self)
                    if output { self.capturedOutput.withLock { $0 += text } } else { self.capturedError.withLock { $0 += text } }
                }
                close(end.fd)
                self.readersDone.withLock { $0 += 1 }
            }
            thread.start()
        }
        if let inputEnd, let stdin {
            Self.writeAll(stdin, to: inputEnd)
            close(inputEnd)
        }
    }

    private static func writeAll(_ data: Data, to fd: Int32) {
        data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let written = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    return   // the child closed its standard input
                }
                offset += written
            }
        }
    }

    public var stdout: String { capturedOutput.withLock { $0 } }
    public var stderr: String { capturedError.withLock { $0 } }

    /// The exit code, or the signal's number when a signal ended it; nil while it runs.
    public var terminationStatus: Int32? {
        status.withLock { status in
            if let status { return status }
            var raw: Int32 = 0
            var result: pid_t
            repeat { result = waitpid(pid, &raw, WNOHANG) } while result < 0 && errno == EINTR
            guard result == pid else { return nil }
            let signal = raw & 0x7f
            status = signal == 0 ? (raw >> 8) & 0xff : signal
            return status
        }
    }

    public var isRunning: Bool { terminationStatus == nil }

    public func signal(_ number: Int32) {
        if isRunning { _ = kill(pid, number) }
    }

    /// Polls until the child has exited, or `timeout` has passed (nil then).
    public func waitForExit(timeout: Duration) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let status = terminationStatus {
                await waitForReaders(until: ContinuousClock.now + .seconds(2))
                return status
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return terminationStatus
    }

    /// Blocks the calling thread until the child has exited: for synchronous callers.
    public func waitUntilExitBlocking() -> Int32 {
        while true {
            if let status = terminationStatus {
                let deadline = ContinuousClock.now + .seconds(2)
                while readersDone.withLock({ $0 }) < readers && ContinuousClock.now < deadline { usleep(2_000) }
                return status
            }
            usleep(5_000)
        }
    }

    /// Output already written may still sit in the pipe when the child exits; give the readers a moment.
    private func waitForReaders(until deadline: ContinuousClock.Instant) async {
        while readersDone.withLock({ $0 }) < readers && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
    }
}

public struct ChildProcessError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
