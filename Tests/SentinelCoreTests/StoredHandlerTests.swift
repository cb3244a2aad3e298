import Foundation
import Glibc
@testable import SentinelCore
import SentinelTestSupport
import Synchronization
import Testing

/// A closure kept in a generic lock (`Mutex<(() -> Void)?>`) is stored at the generic's
/// abstraction; each `withLock` hands the body a re-abstracted copy through `inout` and writes
/// back a closure wrapped in two more thunks. Called once per commit (the scheduler's wake-up) or
/// per log line, the stored handler grew into a chain walked on every call: CPU time and memory
/// growing with the process's age (24,930 frames deep in a long review benchmark). These tests call the
/// long-lived handlers many times and expect the call depth at which the handler runs to stay put.
@Suite("Long-lived handlers")
struct StoredHandlerTests {
    /// glibc's `backtrace(3)` (execinfo.h, which the Glibc module does not export).
    typealias Backtrace = @convention(c) (UnsafeMutablePointer<UnsafeMutableRawPointer?>?, Int32) -> Int32
    static let backtrace: Backtrace = unsafeBitCast(dlsym(UnsafeMutableRawPointer(bitPattern: 0), "backtrace"), to: Backtrace.self)

    /// Frames on the calling thread's stack right now (up to 65,536).
    static func stackDepth() -> Int {
        var frames = [UnsafeMutableRawPointer?](repeating: nil, count: 65_536)
        return Int(frames.withUnsafeMutableBufferPointer { backtrace($0.baseAddress, Int32($0.count)) })
    }

    @Test("the scheduler's wake-up runs at the same depth after a thousand commits with due work")
    func workDueHandlerDoesNotGrow() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        let depths = Recorder<Int>()
        h.supervisor.setWorkDueHandler { depths.append(Self.stackDepth()) }
        // Each job is due earlier than every job before it, so each commit wakes the scheduler.
        let start = Date()
        for i in 0..<1_000 {
            _ = try await h.enqueue(JobRequest(kind: "noop", runAt: start.addingTimeInterval(-Double(i))), in: ws)
        }
        #expect(depths.count >= 1_000)
        let all = depths.all
        let first = try #require(all.first), last = try #require(all.last)
        #expect(last - first < 20, "the wake-up ran \(last - first) frames deeper after \(all.count) calls")
        await h.stop()
    }

    @Test("the relay itself calls its handler at a constant depth")
    func relayDepthConstant() throws {
        let relay = WorkDueRelay()
        let depths = Recorder<Int>()
        relay.set { depths.append(Self.stackDepth()) }
        for _ in 0..<2_000 { relay.fire() }
        let all = depths.all
        #expect(all.count == 2_000)
        #expect(Set(all).count == 1, "depths ranged from \(all.min() ?? 0) to \(all.max() ?? 0)")
    }

    @Test("a log sink writes every line at a constant depth")
    func logSinkDepthConstant() throws {
        let depths = Recorder<Int>()
        let sink = LogSink { _ in depths.append(Self.stackDepth()) }
        for i in 0..<2_000 { sink.write(Data("line \(i)\n".utf8)) }
        let all = depths.all
        #expect(all.count == 2_000)
        #expect(Set(all).count == 1, "depths ranged from \(all.min() ?? 0) to \(all.max() ?? 0)")
    }
}
