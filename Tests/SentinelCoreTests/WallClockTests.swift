import Foundation
import GRDB
@testable import SentinelCore
import SentinelTestSupport
import Testing

@Suite("The wall clock set back")
struct WallClockTests {
    @Test("a reading more than the tolerance before the latest one is a step back, by the difference; smaller ones and jumps forward are not")
    func watch() {
        var watch = WallClockWatch(latest: nil)
        #expect(watch.observe(1_000) == nil)
        #expect(watch.observe(1_010) == nil)
        #expect(watch.observe(1_009) == nil, "within the tolerance")
        #expect(watch.latest == 1_010)
        #expect(watch.observe(5_000) == nil, "forward")
        #expect(watch.observe(1_400) == 3_600)
        #expect(watch.latest == 1_400)
        #expect(watch.observe(1_401) == nil)
        var restarted = WallClockWatch(latest: 10_000)
        #expect(restarted.observe(6_400) == 3_600, "against the reading recorded by the previous run")
    }

    @Test("jobs queued while the clock ran an hour ahead run at once after it was set back, a delay keeps its length, and a dead worker's lease expires on time")
    func setBackWhileStopped() async throws {
        let ran = Recorder<String>()
        var registry = JobRegistry()
        registry.register("now") { _ in ran.append("now") }
        registry.register("later") { _ in ran.append("later") }
        registry.register("leased") { _ in ran.append("leased") }
        let h = try TestHarness(registry: registry)
        let ws = try h.createWorkspace()
        // The previous run: its clock an hour ahead. It queued one job due at once and one due ten
        // minutes later, and a worker of it claimed a third with a 2 s lease and died.
        let ahead = Date().addingTimeInterval(3_600)
        try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in
                _ = try JobQueue.enqueue(JobRequest(kind: "leased"), in: tx.db, now: ahead, defaultMaxAttempts: 5)
                _ = try JobQueue.claim(in: tx.db, owner: "crashed-worker", now: ahead, limit: 1, lease: 2)
                _ = try JobQueue.enqueue(JobRequest(kind: "now"), in: tx.db, now: ahead, defaultMaxAttempts: 5)
                _ = try JobQueue.enqueue(JobRequest(kind: "later", runAt: ahead.addingTimeInterval(600)), in: tx.db, now: ahead,
                                         defaultMaxAttempts: 5)
            }
        }
        try h.control.setDue(ws, to: ahead.epoch)
        try h.control.recordWallClock(ahead.epoch + 1)

        h.startScheduler()
        #expect(await eventually(timeout: .seconds(20)) { ran.all.sorted() == ["leased", "now"] })
        let later = try #require(try await h.jobs(in: ws, state: .queued).first { $0.kind == "later" })
        let wait = later.runAt - Date().epoch
        #expect(wait > 560 && wait <= 600, "still due about ten minutes from now (\(wait) s)")
        #expect(h.log.text.contains("the wall clock was set back"))
        let indexed = try #require(try h.control.dueEntry(ws))
        #expect(indexed <= later.runAt && indexed < Date().epoch + 600, "the pending-work index moved with the file (\(indexed - Date().epoch) s)")

        // What the scheduler records for the next start is the clock as it reads now.
        await h.beginShutdown()
        #expect(await eventually { try h.control.latestWallClock().map { abs($0 - Date().epoch) < 30 } == true })
        await h.stop()
    }

    @Test("a job due centuries before it starts (a clock that jumped far ahead) runs; its queue latency does not overflow and trap")
    func clockFarAhead() async throws {
        let ran = Recorder<String>()
        var registry = JobRegistry()
        registry.register("old") { _ in ran.append("old") }
        let h = try TestHarness(registry: registry)
        let ws = try h.createWorkspace()
        // Due in 1653 by today's clock: as if the clock had jumped 373 years ahead since.
        try await h.enqueue(JobRequest(kind: "old", runAt: Date(timeIntervalSince1970: -1e10)), in: ws)
        h.startScheduler()
        #expect(await eventually(timeout: .seconds(20)) { ran.all == ["old"] })
        #expect(await eventually { try await h.jobs(in: ws, state: .succeeded).count == 1 })
        await h.stop()
    }

    @Test("failed sign-ins recorded before the clock was set back by an hour lock the account out for the window, not the window and the hour")
    func signInLockoutAfterSetBack() async {
        let throttle = LoginThrottle(window: 900, perAccount: 2, perAddress: 100)
        let ahead = Date(timeIntervalSince1970: 1_000_000 + 3_600)
        for _ in 0..<2 {
            guard case .admitted = await throttle.reserve(account: "a@example.com", address: "10.0.0.1", now: ahead) else {
                Issue.record("the first failures are admitted"); return
            }
        }
        let now = Date(timeIntervalSince1970: 1_000_000)
        guard case .limited(let wait) = await throttle.reserve(account: "a@example.com", address: "10.0.0.1", now: now) else {
            Issue.record("the account is at its limit"); return
        }
        #expect(wait <= 900, "\(wait) s")
        guard case .admitted = await throttle.reserve(account: "a@example.com", address: "10.0.0.1", now: now + 901) else {
            Issue.record("the window has passed since the clock was set back"); return
        }
    }

    @Test("a refused provider key told before the clock was set back by an hour is told again, then not for an hour")
    func keyRefusedAfterSetBack() {
        let refusals = KeyRefusals()
        let ws = WorkspaceID("ws_0123456789abcdef")!
        let now = Date(timeIntervalSince1970: 1_000_000)
        #expect(refusals.shouldTell("openai", in: ws, now: now + 3_600))
        #expect(refusals.shouldTell("openai", in: ws, now: now), "the last time lies after now")
        #expect(!refusals.shouldTell("openai", in: ws, now: now + 60))
        #expect(refusals.shouldTell("openai", in: ws, now: now + 3_600))
    }

    @Test("an open circuit read at a time before it opened (the clock set back since) lets a probe through")
    func circuitBeforeItOpened() {
        var breaker = CircuitBreaker(failureThreshold: 1, coolDown: .seconds(60))
        let opened = Date(timeIntervalSince1970: 10_000)
        breaker.recordFailure(at: opened)
        #expect(breaker.state(at: opened + 30) == .open)
        #expect(breaker.state(at: opened - 3_600) == .halfOpen)
    }
}
