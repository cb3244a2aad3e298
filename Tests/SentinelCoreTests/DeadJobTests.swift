import Foundation
import GRDB
@testable import SentinelCore
import SentinelTestSupport
import Synchronization
import Testing

@Suite("Dead jobs and lost leases")
struct DeadJobTests {
    @Test("a job that goes dead on any error runs its kind's onDead hook once, with the reason and the job's payload")
    func deadHookAfterRetries() async throws {
        let seen = Recorder<DeadJob>()
        var registry = JobRegistry()
        registry.register("fragile", handler: { _ in throw TestFailure("disk on fire") }, onDead: { _, dead in seen.append(dead) })
        let h = try TestHarness(config: testConfig { $0.jobs.maxAttempts = 2 }, registry: registry)
        let ws = try h.createWorkspace()
        let id = try await h.enqueue(JobRequest(kind: "fragile", payload: Data(#"{"run_id":7}"#.utf8)), in: ws).jobID
        h.startScheduler()
        #expect(await eventually { seen.count == 1 })
        let dead = try #require(seen.all.first)
        #expect(dead.jobID == id)
        #expect(dead.kind == "fragile")
        #expect(dead.attempts == 2)
        #expect(dead.reason.contains("disk on fire"))
        #expect(String(decoding: dead.payload, as: UTF8.self) == #"{"run_id":7}"#)
        #expect(await eventually { try await h.jobs(in: ws, state: .succeeded).contains { $0.kind == JobRegistry.deadKind("fragile") } })
        try await Task.sleep(for: .milliseconds(100))
        #expect(seen.count == 1)
        await h.stop()
    }

    @Test("a lease that expires on the last attempt (worker lost) makes the job dead and runs its onDead hook")
    func deadHookAfterLostWorker() async throws {
        let seen = Recorder<DeadJob>()
        let ran = Recorder<Int>()
        var registry = JobRegistry()
        registry.register("work", handler: { ctx in ran.append(ctx.job.attempts) }, onDead: { _, dead in seen.append(dead) })
        let h = try TestHarness(registry: registry)
        let ws = try h.createWorkspace()
        let id = try await h.enqueue(JobRequest(kind: "work", maxAttempts: 1), in: ws).jobID
        // A worker of a previous process claims the only attempt with a short lease and dies.
        _ = try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in try JobQueue.claim(in: tx.db, owner: "crashed-worker", now: tx.now, limit: 1, lease: 0.2) }
        }
        h.startScheduler()
        #expect(await eventually { seen.count == 1 })
        #expect(seen.all.first?.jobID == id)
        #expect(seen.all.first?.reason.contains("lease expired on the last attempt") == true)
        #expect(try await h.jobs(in: ws).first { $0.id == id }?.state == .dead)
        #expect(ran.count == 0, "the job itself is not run again")
        await h.stop()
    }

    @Test("a job whose lease is taken away while it runs is cancelled before its side effect")
    func lostLeaseCancelsTheJob() async throws {
        let started = Recorder<Int>()
        let sideEffects = Recorder<Int>()
        let cancelled = Recorder<Bool>()
        var registry = JobRegistry()
        registry.register("slow") { ctx in
            started.append(ctx.job.attempts)
            do {
                // Stands for a long model call; a real side effect (posting) comes after it.
                try await Task.sleep(for: .seconds(30))
            } catch {
                cancelled.append(true)
                throw error
            }
            sideEffects.append(ctx.job.attempts)
        }
        // Renewed every second: long enough that a loaded machine does not let it expire between the
        // claim and the handler's start (a 0.3 s lease did, and the job ran twice), short enough
        // that the takeover is noticed soon.
        let h = try TestHarness(config: testConfig { $0.jobs.leaseSeconds = 3 }, registry: registry)
        let ws = try h.createWorkspace()
        let id = try await h.enqueue(JobRequest(kind: "slow"), in: ws).jobID
        h.startScheduler()
        #expect(await eventually { started.count >= 1 })
        // Another worker takes the job over (as after a pause longer than the lease).
        try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in
                try tx.db.execute(sql: "UPDATE jobs SET lease_owner = 'other-worker', lease_expires_at = ? WHERE id = ?",
                                  arguments: [tx.now.timeIntervalSince1970 + 3600, id])
            }
        }
        // On a machine stalled for longer than the lease (the full suite's start), the job's lease
        // can expire before the takeover and the job be claimed again: every attempt that started
        // loses its lease to the other worker and is cancelled.
        #expect(await eventually { cancelled.count >= 1 && cancelled.count == started.count })
        #expect(sideEffects.count == 0)
        #expect(await eventually { h.log.text.contains("lease was lost while it ran") })
        let job = try #require(try await h.jobs(in: ws).first { $0.id == id })
        #expect(job.leaseOwner == "other-worker", "the new owner's lease is left alone")
        await h.stop()
    }
}
