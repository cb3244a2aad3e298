import Dispatch
import Foundation
import NIOCore
import NIOPosix
@testable import SentinelCore
import SentinelTestSupport
import Testing

@Suite("Host resolution")
struct HostResolverTests {
    @Test("DNS lookups that hang (a name server that stopped answering) do not hold up opening workspace files")
    func hangingLookupsLeaveStorageAlone() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        await h.supervisor.closeIdle(now: .now + .seconds(86_400))          // the file is closed: the next use opens it
        // More hanging lookups than NIO's shared blocking pool and the resolver's own pool have threads.
        let hanging = max(NIOSingletons.blockingPoolThreadCountSuggestion, SystemHostResolver.threads) + 2
        let gate = DispatchSemaphore(value: 0)
        let started = Recorder<Int>()
        let resolver = SystemHostResolver { _, _ in
            started.append(1)
            gate.wait()
            return [IPAddress("127.0.0.1")!]
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<hanging { group.addTask { _ = try await resolver.resolve(host: "api.example.com", port: 443) } }
            let busy = min(SystemHostResolver.threads, NIOSingletons.blockingPoolThreadCountSuggestion)
            // The pool is the process's: lookups of other tests running beside this one (a name
            // that takes seconds to fail without a network) may hold its threads for a while first.
            #expect(await eventually(timeout: .seconds(60)) { started.count >= busy })
            // The open goes ahead while the lookups hang. Guarded: were they on the pool that opens
            // files, it would wait for them, so after 15 s they are let go and the test fails.
            let opened = try await withThrowingTaskGroup(of: Bool.self) { race in
                race.addTask { try await h.supervisor.withWorkspace(ws) { _ in true } }
                race.addTask {
                    try await Task.sleep(for: .seconds(15))
                    for _ in 0..<hanging { gate.signal() }
                    return false
                }
                let first = try await race.next() ?? false
                race.cancelAll()
                return first
            }
            #expect(opened, "opening a workspace file waited for hanging DNS lookups")
            #expect(started.count < hanging, "the lookups were still hanging when the file opened")
            for _ in 0..<hanging { gate.signal() }
            try await group.waitForAll()
        }
        #expect(started.count == hanging)
        await h.stop()
    }
}
