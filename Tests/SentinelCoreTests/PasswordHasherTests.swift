import Dispatch
import Foundation
import SentinelCore
import SentinelTestSupport
import Synchronization
import Testing

@Suite("Password hashing pool")
struct PasswordHasherTests {
    /// Counts password jobs running at once and holds them until released.
    final class Gate: Sendable {
        private let state = Mutex((running: 0, most: 0))
        private let release = DispatchSemaphore(value: 0)
        func enter() {
            state.withLock { $0.running += 1; $0.most = max($0.most, $0.running) }
            release.wait()
            state.withLock { $0.running -= 1 }
        }
        var running: Int { state.withLock { $0.running } }
        var most: Int { state.withLock { $0.most } }
        func open(_ count: Int) { for _ in 0..<count { release.signal() } }
    }

    @Test("a flood of password work runs at most `threads` at once and leaves workspace opens free")
    func floodIsBoundedAndIsolated() async throws {
        let harness = try TestHarness()
        let workspace = try harness.createWorkspace()
        let hasher = PasswordHasher(cost: 4, threads: 2)
        let gate = Gate()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<6 {
                group.addTask { try await hasher.run { gate.enter() } }
            }
            // Generous: it returns as soon as both threads are busy, however loaded the machine is.
            #expect(await eventually(timeout: .seconds(120)) { gate.running == 2 })
            // Both password threads are busy: opening a workspace (NIO's blocking pool) still works.
            let jobs = try await harness.supervisor.withWorkspace(workspace) { try await $0.jobs() }
            #expect(jobs.isEmpty)
            gate.open(6)
            try await group.waitForAll()
        }
        #expect(gate.most == 2, "never more than the pool's threads at once")
        // Hashing and verifying on the pool: known and unknown accounts each cost one verification.
        let hash = try await hasher.run { hasher.hash("correct horse battery") }
        #expect(try await hasher.run { hasher.verify("correct horse battery", against: hash) })
        #expect(try await hasher.run { !hasher.verify("wrong", against: nil) })
        #expect(hasher.verifications == 2)
        await harness.stop()
    }
}
