import Foundation
import GRDB
@testable import SentinelCore
import SentinelTestSupport
import Synchronization
import Testing

@Suite("Durable jobs")
struct JobQueueTests {
    @Test("a job that fails twice then succeeds is retried and ends succeeded")
    func retryThenSuccess() async throws {
        let attempts = Recorder<Int>()
        var registry = JobRegistry()
        registry.register("flaky") { ctx in
            attempts.append(ctx.job.attempts)
            if ctx.job.attempts < 3 { throw TestFailure("transient failure \(ctx.job.attempts)") }
        }
        let h = try TestHarness(registry: registry)
        let ws = try h.createWorkspace()
        let id = try await h.enqueue(JobRequest(kind: "flaky"), in: ws).jobID
        h.startScheduler()
        #expect(await eventually { try await h.jobs(in: ws, state: .succeeded).count == 1 })
        let job = try #require(try await h.jobs(in: ws).first { $0.id == id })
        #expect(job.state == .succeeded)
        #expect(job.attempts == 3)
        #expect(attempts.all == [1, 2, 3])
        await h.stop()
    }

    @Test("work enqueued in a workspace opened before the scheduler started wakes the scheduler; it does not wait for the poll")
    func wakeFromFileOpenedBeforeScheduler() async throws {
        var registry = JobRegistry()
        registry.register("noop") { _ in }
        // A poll this long never finds the second job within the test's patience, nor does the look
        // the scheduler takes when the first job's lease would have expired: only a wake does.
        let h = try TestHarness(config: testConfig {
            $0.jobs.pollIntervalMilliseconds = 600_000
            $0.jobs.leaseSeconds = 600
        }, registry: registry)
        let ws = try h.createWorkspace()
        // The file is opened (by this enqueue, as by a webhook at start) before the scheduler runs.
        try await h.enqueue(JobRequest(kind: "noop"), in: ws)
        #expect(await h.supervisor.openWorkspaceIDs.contains(ws))
        h.startScheduler()
        #expect(await eventually(timeout: .seconds(30)) { try await h.jobs(in: ws, state: .succeeded).count == 1 })
        // The scheduler found nothing more and sleeps; the still-open file's next job must wake it.
        try await Task.sleep(for: .milliseconds(200))
        try await h.enqueue(JobRequest(kind: "noop"), in: ws)
        #expect(await eventually(timeout: .seconds(30)) { try await h.jobs(in: ws, state: .succeeded).count == 2 })
        await h.stop()
    }

    @Test("once their jobs are recorded the scheduler holds no workspace open: every file closes when idle")
    func pinsReleased() async throws {
        var registry = JobRegistry()
        registry.register("noop") { _ in }
        registry.register("flaky") { ctx in if ctx.job.attempts < 2 { throw TestFailure("first attempt fails") } }
        let h = try TestHarness(config: testConfig { $0.jobs.workspaceConcurrency = 2 }, registry: registry)
        let workspaces = try (0..<5).map { _ in try h.createWorkspace() }
        for ws in workspaces {
            for i in 0..<20 { try await h.enqueue(JobRequest(kind: i % 5 == 0 ? "flaky" : "noop"), in: ws) }
        }
        h.startScheduler()
        #expect(await eventually {
            for ws in workspaces where try await h.jobs(in: ws, state: .succeeded).count < 20 { return false }
            return true
        })
        // Each job (and each claim) holds its workspace's pin only until its outcome is recorded:
        // a leaked hold would keep that file open for good.
        #expect(await eventually {
            await h.supervisor.closeIdle(now: .now + .seconds(86_400))
            return await h.supervisor.openWorkspaceIDs.isEmpty
        })
        await h.stop()
    }

    @Test("a job that always fails ends dead after max attempts, with its last error visible")
    func retryUntilDead() async throws {
        let calls = Recorder<Int>()
        var registry = JobRegistry()
        registry.register("broken") { ctx in
            calls.append(ctx.job.attempts)
            throw TestFailure("upstream said no")
        }
        let h = try TestHarness(config: testConfig { $0.jobs.maxAttempts = 4 }, registry: registry)
        let ws = try h.createWorkspace()
        try await h.enqueue(JobRequest(kind: "broken"), in: ws)
        h.startScheduler()
        #expect(await eventually { try await h.jobs(in: ws, state: .dead).count == 1 })
        try await Task.sleep(for: .milliseconds(150))
        #expect(calls.all == [1, 2, 3, 4])
        let dead = try #require(try await h.jobs(in: ws, state: .dead).first)
        #expect(dead.attempts == 4)
        #expect(dead.lastError?.contains("upstream said no") == true)
        await h.stop()
    }

    @Test("a permanent failure goes dead at once; a dead job can be retried and then succeeds")
    func permanentFailureAndRetryDead() async throws {
        let shouldFail = Recorder<Bool>()
        var registry = JobRegistry()
        registry.register("strict") { _ in
            if shouldFail.count == 0 { shouldFail.append(true); throw JobFailure.permanent("404 Not Found") }
        }
        let h = try TestHarness(registry: registry)
        let ws = try h.createWorkspace()
        let id = try await h.enqueue(JobRequest(kind: "strict"), in: ws).jobID
        h.startScheduler()
        #expect(await eventually { try await h.jobs(in: ws, state: .dead).count == 1 })
        #expect(try await h.jobs(in: ws, state: .dead).first?.attempts == 1)
        let retried = try await h.supervisor.withWorkspace(ws) { try await $0.retryDeadJob(id, by: "test") }
        #expect(retried)
        #expect(await eventually { try await h.jobs(in: ws, state: .succeeded).count == 1 })
        await h.stop()
    }

    @Test("backoff doubles per attempt up to the cap, jitter stays within [0.5, 1] of it, Retry-After wins")
    func backoffGrowth() throws {
        let policy = BackoffPolicy(base: 2, cap: 60)
        #expect((1...7).map { policy.ceiling(afterAttempt: $0) } == [2, 4, 8, 16, 32, 60, 60])
        for attempt in 1...10 {
            for _ in 0..<50 {
                let d = policy.delay(afterAttempt: attempt)
                let c = policy.ceiling(afterAttempt: attempt)
                #expect(d >= c * 0.5 && d <= c)
            }
        }
        #expect(policy.delay(afterAttempt: 1, retryAfter: 120) == 120)
        // A Retry-After of 0 (or a past date, read as 0) is not "now": the backoff applies.
        for attempt in 1...4 {
            let d = policy.delay(afterAttempt: attempt, retryAfter: 0, random: 0)
            #expect(d == policy.ceiling(afterAttempt: attempt) * 0.5)
        }
    }

    @Test("failed attempts are rescheduled further and further out, and Retry-After is honoured")
    func backoffInTheQueue() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let database = try DatabaseOpener().open(dir.url.appendingPathComponent("w.sqlite"), kind: .workspace, create: true)
        let policy = BackoffPolicy(base: 1, cap: 1000)
        let now = Date(timeIntervalSince1970: 1_000_000)
        var delays: [Double] = []
        try database.write { db in
            _ = try JobQueue.enqueue(JobRequest(kind: "k", maxAttempts: 10), in: db, now: now, defaultMaxAttempts: 10)
            var clock = now
            for _ in 0..<6 {
                let job = try #require(try JobQueue.claim(in: db, owner: "w", now: clock, limit: 1, lease: 30).first)
                try JobQueue.finish(job, owner: "w", outcome: .failed(message: "x", retryAfter: nil, permanent: false), in: db, now: clock, backoff: policy)
                let runAt = try #require(try JobQueue.job(id: job.id, in: db)).runAt
                delays.append(runAt - clock.epochSeconds)  // clock is 1 ms past the previous due time
                clock = Date(timeIntervalSince1970: runAt + 0.001)
            }
            let job = try #require(try JobQueue.claim(in: db, owner: "w", now: clock, limit: 1, lease: 30).first)
            try JobQueue.finish(job, owner: "w", outcome: .failed(message: "rate limited", retryAfter: 90, permanent: false), in: db, now: clock, backoff: policy)
            #expect(try JobQueue.job(id: job.id, in: db)!.runAt - clock.epochSeconds == 90)
        }
        for (i, d) in delays.enumerated() {
            let ceiling = pow(2, Double(i))
            #expect(d >= ceiling * 0.5 && d <= ceiling, "attempt \(i + 1) waited \(d)s")
        }
        #expect(delays.last! > delays.first! * 8)
    }

    @Test("a claim with room for one background job takes one expired background lease and the due critical job (the expired ones used up the claim, and the critical job waited)")
    func backgroundLimitWithExpiredLeases() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let database = try DatabaseOpener().open(dir.url.appendingPathComponent("w.sqlite"), kind: .workspace, create: true)
        let now = Date(timeIntervalSince1970: 1_000_000)
        try database.write { db in
            for _ in 0..<2 { _ = try JobQueue.enqueue(JobRequest(kind: "notify", priority: .low), in: db, now: now, defaultMaxAttempts: 5) }
            // A worker that died holding both.
            #expect(try JobQueue.claim(in: db, owner: "gone", now: now, limit: 2, lease: 1).count == 2)
            let critical = try JobQueue.enqueue(JobRequest(kind: "deliver", priority: .critical), in: db, now: now, defaultMaxAttempts: 5)
            let later = now.addingTimeInterval(10)
            let claimed = try JobQueue.claim(in: db, owner: "w", now: later, limit: 2, backgroundLimit: 1, lease: 30)
            #expect(claimed.map(\.kind).sorted() == ["deliver", "notify"], "\(claimed.map(\.kind))")
            #expect(claimed.contains { $0.id == critical.jobID })
        }
        // An expired review lease behind older expired background ones is taken with no background room left.
        let other = try DatabaseOpener().open(dir.url.appendingPathComponent("w2.sqlite"), kind: .workspace, create: true)
        try other.write { db in
            for _ in 0..<2 { _ = try JobQueue.enqueue(JobRequest(kind: "notify", priority: .low), in: db, now: now, defaultMaxAttempts: 5) }
            #expect(try JobQueue.claim(in: db, owner: "gone", now: now, limit: 2, lease: 1).count == 2)
            _ = try JobQueue.enqueue(JobRequest(kind: "review", priority: .normal), in: db, now: now, defaultMaxAttempts: 5)
            #expect(try JobQueue.claim(in: db, owner: "gone-too", now: now.addingTimeInterval(5), limit: 1, lease: 1, through: .normal).map(\.kind) == ["review"])
            let retaken = try JobQueue.claim(in: db, owner: "w", now: now.addingTimeInterval(100), limit: 1, backgroundLimit: 0, lease: 30)
            #expect(retaken.map(\.kind) == ["review"], "\(retaken.map(\.kind))")
        }
    }

    @Test("a crashed worker's job is retaken once its lease expires")
    func leaseExpiryRetake() async throws {
        let owners = Recorder<Int>()
        var registry = JobRegistry()
        registry.register("work") { ctx in owners.append(ctx.job.attempts) }
        let h = try TestHarness(registry: registry)
        let ws = try h.createWorkspace()
        let id = try await h.enqueue(JobRequest(kind: "work"), in: ws).jobID
        // A worker of a previous process claims the job with a short lease and dies.
        let claimed = try await h.supervisor.withWorkspace(ws) { actor in
            // 2 s: long enough that the lease still holds when the test looks below on a loaded
            // machine (0.3 s could pass before it did).
            try await actor.write { tx in try JobQueue.claim(in: tx.db, owner: "crashed-worker", now: tx.now, limit: 1, lease: 2) }
        }
        #expect(claimed.map(\.id) == [id])
        h.startScheduler()
        try await Task.sleep(for: .milliseconds(100))
        #expect(owners.count == 0, "the lease still holds")
        #expect(await eventually { try await h.jobs(in: ws, state: .succeeded).count == 1 })
        #expect(owners.all == [2])
        await h.stop()
    }

    @Test("a job whose lease is lost cannot record its outcome over the new owner's")
    func lostLeaseIsIgnored() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let database = try DatabaseOpener().open(dir.url.appendingPathComponent("w.sqlite"), kind: .workspace, create: true)
        let now = Date()
        try database.write { db in
            _ = try JobQueue.enqueue(JobRequest(kind: "k"), in: db, now: now, defaultMaxAttempts: 5)
            let first = try JobQueue.claim(in: db, owner: "a", now: now, limit: 1, lease: 1)[0]
            let second = try JobQueue.claim(in: db, owner: "b", now: now.addingTimeInterval(2), limit: 1, lease: 30)[0]
            #expect(second.id == first.id)
            #expect(try JobQueue.finish(first, owner: "a", outcome: .succeeded, in: db, now: now, backoff: .init(base: 1, cap: 1)) == false)
            #expect(try JobQueue.job(id: first.id, in: db)?.state == .running)
            #expect(try JobQueue.finish(second, owner: "b", outcome: .succeeded, in: db, now: now, backoff: .init(base: 1, cap: 1)) == true)
        }
    }

    @Test("what is due by priority: the earliest queued job of each, or an earlier running job's lease expiry")
    func dueByPriority() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let database = try DatabaseOpener().open(dir.url.appendingPathComponent("w.sqlite"), kind: .workspace, create: true)
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        func at(_ seconds: Double) -> Double { now.addingTimeInterval(seconds).timeIntervalSince1970 }
        try database.write { db in
            #expect(try JobQueue.dueByPriority(in: db) == .none)
            func enqueue(_ priority: JobPriority, at seconds: Double) throws {
                _ = try JobQueue.enqueue(JobRequest(kind: "k", priority: priority, runAt: now.addingTimeInterval(seconds)),
                                         in: db, now: now, defaultMaxAttempts: 5)
            }
            func claim(at seconds: Double, lease: Double) throws -> [JobRecord] {
                try JobQueue.claim(in: db, owner: "w", now: now.addingTimeInterval(seconds), limit: 1, lease: lease)
            }
            try enqueue(.critical, at: 30)
            try enqueue(.critical, at: 10)
            try enqueue(.low, at: 50)
            try enqueue(.bulk, at: 5)
            // At +5 only the bulk job is due: it runs with a lease until +105, and no bulk job is queued.
            #expect(try claim(at: 5, lease: 100).map(\.jobPriority) == [.bulk])
            #expect(try JobQueue.dueByPriority(in: db).times == [at(10), nil, at(50), at(105)])
            // The critical job due at +10 runs until +112: the one queued for +30 is earlier.
            #expect(try claim(at: 12, lease: 100).map(\.jobPriority) == [.critical])
            #expect(try JobQueue.dueByPriority(in: db).times == [at(30), nil, at(50), at(105)])
            // The one due at +30 runs until +32; a critical job queued for +200 is later than that lease.
            #expect(try claim(at: 31, lease: 1).map(\.jobPriority) == [.critical])
            try enqueue(.critical, at: 200)
            #expect(try JobQueue.dueByPriority(in: db).times == [at(32), nil, at(50), at(105)])
        }
    }

    @Test("an idempotency key makes a second enqueue a no-op, enforced by the database")
    func idempotencyKeyDedupe() async throws {
        let runs = Recorder<Int64>()
        var registry = JobRegistry()
        registry.register("once") { ctx in runs.append(ctx.job.id) }
        let h = try TestHarness(registry: registry)
        let ws = try h.createWorkspace()
        let first = try await h.enqueue(JobRequest(kind: "once", idempotencyKey: "delivery-42"), in: ws)
        let second = try await h.enqueue(JobRequest(kind: "once", idempotencyKey: "delivery-42"), in: ws)
        guard case .created(let id) = first else { Issue.record("first enqueue was not created"); return }
        #expect(second == .duplicate(id))
        // Concurrent enqueues of the same key: still one row.
        try await withThrowingTaskGroup(of: EnqueueResult.self) { group in
            for _ in 0..<20 { group.addTask { try await h.enqueue(JobRequest(kind: "once", idempotencyKey: "delivery-43"), in: ws) } }
            var created = 0
            for try await r in group { if case .created = r { created += 1 } }
            #expect(created == 1)
        }
        // The unique index itself refuses a raw duplicate insert.
        await #expect(throws: DatabaseError.self) {
            try await h.supervisor.withWorkspace(ws) { actor in
                try await actor.write { tx in
                    try tx.db.execute(sql: """
                        INSERT INTO jobs (kind, payload, priority, state, max_attempts, run_at, idempotency_key, created_at)
                        VALUES ('once', x'7b7d', 1, 'queued', 3, 0, 'delivery-42', 0)
                        """)
                }
            }
        }
        h.startScheduler()
        #expect(await eventually { runs.count == 2 })
        try await Task.sleep(for: .milliseconds(100))
        #expect(runs.count == 2)
        await h.stop()
    }

    @Test("due jobs run in priority order: critical, normal, low, bulk")
    func priorityOrder() async throws {
        let order = Recorder<String>()
        var registry = JobRegistry()
        registry.register("p") { ctx in order.append(String(decoding: ctx.job.payload, as: UTF8.self)) }
        let h = try TestHarness(config: testConfig { $0.jobs.workspaceConcurrency = 1; $0.jobs.globalConcurrency = 1 }, registry: registry)
        let ws = try h.createWorkspace()
        for priority in [JobPriority.bulk, .low, .normal, .critical, .bulk, .critical] {
            try await h.enqueue(JobRequest(kind: "p", payload: Data(priority.description.utf8), priority: priority), in: ws)
        }
        h.startScheduler()
        #expect(await eventually { order.count == 6 })
        #expect(order.all == ["critical", "critical", "normal", "low", "bulk", "bulk"])
        await h.stop()
    }

    @Test("a job that raised its own priority while it ran is retried at that priority, ahead of the work it was queued behind")
    func raisedPriorityRetriedFirst() async throws {
        let order = Recorder<String>()
        var registry = JobRegistry()
        registry.register("post") { ctx in
            order.append("post \(ctx.job.attempts)")
            if ctx.job.attempts == 1 {
                // As a review run does once its review is prepared: what is left is posting results.
                try await ctx.workspace.write { tx in try JobQueue.raisePriority(jobID: ctx.job.id, to: .critical, in: tx.db) }
                // Due again at once (a `Retry-After: 0` gets the jittered backoff, which let the
                // normal jobs it was queued behind run first now and then).
                throw JobFailure.retryAfter(0.000_001, "the platform answered 502")
            }
        }
        registry.register("n") { ctx in order.append("n") }
        let h = try TestHarness(config: testConfig { $0.jobs.workspaceConcurrency = 1; $0.jobs.globalConcurrency = 1 }, registry: registry)
        let ws = try h.createWorkspace()
        try await h.enqueue(JobRequest(kind: "post", priority: .normal), in: ws)
        for _ in 0..<3 { try await h.enqueue(JobRequest(kind: "n", priority: .normal), in: ws) }
        h.startScheduler()
        #expect(await eventually { order.count == 5 })
        #expect(order.all == ["post 1", "post 2", "n", "n", "n"])
        // Never lowered: raising a critical job to normal changes nothing.
        let job = try #require(try await h.jobs(in: ws).first { $0.kind == "post" })
        try await h.supervisor.withWorkspace(ws) { workspace in
            try await workspace.write { tx in try JobQueue.raisePriority(jobID: job.id, to: .normal, in: tx.db) }
        }
        #expect(try await h.jobs(in: ws).first { $0.kind == "post" }?.priority == JobPriority.critical.rawValue)
        await h.stop()
    }

    @Test("a quiet workspace is served while a busy one has a deep queue")
    func fairnessBetweenWorkspaces() async throws {
        let finished = Recorder<String>()
        var registry = JobRegistry()
        registry.register("w") { ctx in
            try await Task.sleep(for: .milliseconds(5))
            finished.append(String(decoding: ctx.job.payload, as: UTF8.self))
        }
        let h = try TestHarness(config: testConfig { $0.jobs.workspaceConcurrency = 2; $0.jobs.globalConcurrency = 2 }, registry: registry)
        let busy = try h.createWorkspace("busy")
        let quiet = try h.createWorkspace("quiet")
        for _ in 0..<200 { try await h.enqueue(JobRequest(kind: "w", payload: Data("busy".utf8)), in: busy) }
        for _ in 0..<5 { try await h.enqueue(JobRequest(kind: "w", payload: Data("quiet".utf8)), in: quiet) }
        h.startScheduler()
        #expect(await eventually { finished.all.filter { $0 == "quiet" }.count == 5 })
        let lastQuiet = finished.all.lastIndex(of: "quiet")!
        // Served in alternation: the quiet workspace's 5 jobs are done within the first ~12 completions,
        // not after the busy workspace's 200 (on a loaded machine completions reorder a little: 40 is
        // still far from first-come-first-served).
        #expect(lastQuiet < 40, "quiet workspace finished at position \(lastQuiet)")
        await h.stop()
    }

    @Test("the per-workspace token bucket limits how fast one workspace starts jobs while another has work due")
    func perWorkspaceRateLimit() async throws {
        let starts = Recorder<ContinuousClock.Instant>()
        var registry = JobRegistry()
        registry.register("r") { _ in starts.append(.now) }
        registry.register("other") { _ in }
        let h = try TestHarness(config: testConfig {
            $0.jobs.rateLimitPerSecond = 20
            $0.jobs.rateLimitBurst = 5
            $0.jobs.workspaceConcurrency = 50
            $0.jobs.globalConcurrency = 50
        }, registry: registry)
        let ws = try h.createWorkspace()
        // Another tenant with work due all along (its own bucket holds it back too).
        let other = try h.createWorkspace()
        for _ in 0..<200 { try await h.enqueue(JobRequest(kind: "other"), in: other) }
        for _ in 0..<25 { try await h.enqueue(JobRequest(kind: "r"), in: ws) }
        let began = ContinuousClock.now
        h.startScheduler()
        #expect(await eventually { starts.count == 25 })
        let elapsed = ContinuousClock.now - began
        // 5 at once, then 20/s: the last of 25 cannot start before ~1 s (lower bound only: a slow
        // machine makes it later, never earlier).
        #expect(elapsed >= .milliseconds(900), "25 jobs started in \(elapsed)")
        let firstWindow = starts.all.filter { $0 - began < .milliseconds(200) }.count
        #expect(firstWindow <= 5 + 4 + 1, "\(firstWindow) started in the first 200 ms")
        await h.stop()
    }

    @Test("a workspace alone with work due is not held back by its token bucket: nobody is waiting")
    func rateLimitOnlyUnderContention() async throws {
        let starts = Recorder<ContinuousClock.Instant>()
        var registry = JobRegistry()
        registry.register("r") { _ in starts.append(.now) }
        let h = try TestHarness(config: testConfig {
            // Held back, 10 jobs would take 15 minutes.
            $0.jobs.rateLimitPerSecond = 0.01
            $0.jobs.rateLimitBurst = 1
            $0.jobs.workspaceConcurrency = 50
            $0.jobs.globalConcurrency = 50
        }, registry: registry)
        let ws = try h.createWorkspace()
        for _ in 0..<10 { try await h.enqueue(JobRequest(kind: "r"), in: ws) }
        h.startScheduler()
        #expect(await eventually { starts.count == 10 }, "\(starts.count) of 10 started within a minute")
        await h.stop()
    }

    @Test("a running job's heartbeat moves its lease forward while the handler works")
    func heartbeatAdvancesLease() async throws {
        let release = Recorder<Bool>()
        var registry = JobRegistry()
        registry.register("held") { _ in
            while release.count == 0 { try await Task.sleep(for: .milliseconds(20)) }
        }
        let h = try TestHarness(config: testConfig { $0.jobs.leaseSeconds = 3 }, registry: registry)
        let ws = try h.createWorkspace()
        try await h.enqueue(JobRequest(kind: "held"), in: ws)
        h.startScheduler()
        #expect(await eventually { try await h.jobs(in: ws, state: .running).count == 1 })
        let claimed = try #require(try await h.jobs(in: ws, state: .running).first?.leaseExpiresAt)
        // Renewed every second (a third of the lease), each time to a second later than before.
        #expect(await eventually { (try await h.jobs(in: ws, state: .running).first?.leaseExpiresAt ?? 0) > claimed + 0.5 })
        release.append(true)
        #expect(await eventually { try await h.jobs(in: ws, state: .succeeded).count == 1 })
        await h.stop()
    }

    @Test("a wall clock that jumps past a running job's lease (a VM resumed, a clock stepped forward) does not start that job a second time")
    func clockJumpDoesNotRunAJobTwice() async throws {
        let starts = Recorder<Int64>()
        let release = Recorder<Bool>()
        var registry = JobRegistry()
        registry.register("held") { ctx in
            starts.append(ctx.job.id)
            while release.count == 0 { try await Task.sleep(for: .milliseconds(20)) }
        }
        registry.register("tick") { _ in }
        let h = try TestHarness(config: testConfig { $0.jobs.leaseSeconds = 60 }, registry: registry)
        let ws = try h.createWorkspace()
        let held = try await h.enqueue(JobRequest(kind: "held"), in: ws).jobID
        h.startScheduler()
        #expect(await eventually { starts.count == 1 })
        // What the scheduler's next claim sees after the clock jumped an hour: the lease long past.
        try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in
                try tx.db.execute(sql: "UPDATE jobs SET lease_expires_at = ? WHERE id = ?", arguments: [tx.now.epoch - 3_600, held])
            }
        }
        // Another job wakes the scheduler: the claim that takes it passes over the held job's lease.
        try await h.enqueue(JobRequest(kind: "tick"), in: ws)
        #expect(await eventually { try await h.jobs(in: ws, state: .succeeded).count == 1 })
        #expect(starts.all == [held], "the held job was started again while it ran")
        release.append(true)
        #expect(await eventually { try await h.jobs(in: ws, state: .succeeded).count == 2 })
        #expect(try await h.jobs(in: ws).first { $0.id == held }?.attempts == 1)
        await h.stop()
    }

    /// Timing: a lease can only be kept if the machine lets the heartbeat run within a lease, so
    /// this runs on its own (`.ci/run` sets `SENTINEL_TEST_TIMING=1`).
    @Test("jobs running several times longer than their lease keep it: renewed while they run, each runs once",
          .enabled(if: ProcessInfo.processInfo.environment["SENTINEL_TEST_TIMING"] == "1", "timing: run alone with SENTINEL_TEST_TIMING=1"))
    func leasesRenewedWhileRunning() async throws {
        let starts = Recorder<Int64>()
        let done = Recorder<Int64>()
        var registry = JobRegistry()
        registry.register("long") { ctx in
            starts.append(ctx.job.id)
            try await Task.sleep(for: .milliseconds(4_500))
            done.append(ctx.job.id)
        }
        // A 1.5 s lease renewed every 0.5 s: a loaded machine may delay a renewal by up to a second.
        let h = try TestHarness(config: testConfig { $0.jobs.leaseSeconds = 1.5; $0.jobs.workspaceConcurrency = 6 }, registry: registry)
        let ws = try h.createWorkspace()
        var enqueued: [Int64] = []
        for _ in 0..<6 { enqueued.append(try await h.enqueue(JobRequest(kind: "long"), in: ws).jobID) }
        let ids = enqueued
        h.startScheduler()
        #expect(await eventually { starts.count == ids.count })
        try await Task.sleep(for: .milliseconds(3_200))
        // Past twice the lease: every running job's lease still lies in the future.
        let running = try await h.jobs(in: ws).filter { $0.state == .running }
        #expect(!running.isEmpty)
        let now = Date().timeIntervalSince1970
        for job in running { #expect((job.leaseExpiresAt ?? 0) > now, "job \(job.id)'s lease was not renewed") }
        #expect(await eventually { done.count == ids.count })
        #expect(Set(starts.all) == Set(ids) && starts.count == ids.count, "a job ran twice: its lease was taken over")
        // The handler returned; the job's outcome commits right after.
        #expect(await eventually { try await h.jobs(in: ws).allSatisfy { $0.state == .succeeded } })
        #expect(try await h.jobs(in: ws).allSatisfy { $0.attempts == 1 })
        await h.stop()
    }

    @Test("shutdown lets a running job finish within the drain deadline and releases the rest")
    func drainOnShutdown() async throws {
        let done = Recorder<Int64>()
        // The slow job runs until the test has seen both jobs running and begins the shutdown (a
        // fixed 300 ms could end before a loaded machine let the test look), then a little more.
        let shuttingDown = Rendezvous<Void>()
        var registry = JobRegistry()
        registry.register("slow") { ctx in
            await shuttingDown.wait()
            try await Task.sleep(for: .milliseconds(200))
            done.append(ctx.job.id)
        }
        registry.register("stuck") { _ in try await Task.sleep(for: .seconds(60)) }
        let h = try TestHarness(config: testConfig { $0.shutdown.drainSeconds = 3 }, registry: registry)
        let ws = try h.createWorkspace()
        let slow = try await h.enqueue(JobRequest(kind: "slow"), in: ws).jobID
        let stuck = try await h.enqueue(JobRequest(kind: "stuck"), in: ws).jobID
        h.startScheduler()
        #expect(await eventually { await h.scheduler.runningJobs == 2 })
        let dir = h.dataDirectory
        await shuttingDown.set(())
        await h.beginShutdown()
        // Read the file independently until both outcomes are recorded: well before the stuck
        // job's 60 s, so its drain deadline cut it (a fixed wait here failed on a loaded machine).
        let database = try DatabaseOpener().open(dir.workspaceFile(ws), kind: .workspace)
        #expect(await eventually {
            let states = try await database.read { db in try JobQueue.list(state: nil, in: db).map(\.state) }
            return !states.contains(.running)
        })
        #expect(done.all == [slow])
        let rows = try await database.read { db in try JobQueue.list(state: nil, in: db) }
        #expect(rows.first { $0.id == slow }?.state == .succeeded)
        let released = try #require(rows.first { $0.id == stuck })
        #expect(released.state == .queued)
        #expect(released.attempts == 0, "a released job's attempt is not counted")
        try database.close()
        await h.stop()
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

extension Date {
    var epochSeconds: Double { timeIntervalSince1970 }
}

@Suite("Queue durability")
struct QueueDurabilityTests {
    @Test("claims and finishes commit without fsync; every other commit and storage maintenance at synchronous=FULL")
    func bookkeepingRelaxedThenRestored() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        let levels = try await h.supervisor.withWorkspace(ws) { actor -> [Int] in
            @Sendable func level(_ db: Database) throws -> Int { try Int.fetchOne(db, sql: "PRAGMA synchronous")! }
            var levels: [Int] = []
            _ = try await actor.enqueue(JobRequest(kind: "noop"))
            levels.append(try await actor.write { tx in try level(tx.db) })
            let claimed = try await actor.claim(owner: "test", limit: 1)
            levels.append(try await actor.write(durable: false) { tx in try level(tx.db) })
            _ = try await actor.finish(claimed[0], owner: "test", outcome: .succeeded)
            levels.append(try await actor.maintenance { db in try level(db) })
            levels.append(try await actor.write(durable: false) { tx in try level(tx.db) })
            levels.append(try await actor.write { tx in try level(tx.db) })
            #expect(try await actor.jobs(state: .succeeded).count == 1)
            return levels
        }
        #expect(levels == [2, 1, 2, 1, 2])
        await h.stop()
    }

    @Test("the level is switched only when the next commit needs another one: a run of relaxed commits sets it once")
    func synchronousSwitchedOnChangeOnly() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        let pragmas = Mutex(0)
        try await h.supervisor.withWorkspace(ws) { actor in
            // Counts every `PRAGMA synchronous = …` the file's connection runs from here.
            _ = try await actor.maintenance { db in
                db.trace(options: .statement) { event in
                    if event.description.hasPrefix("PRAGMA synchronous =") { pragmas.withLock { $0 += 1 } }
                }
            }
            for _ in 0..<50 { _ = try await actor.write(durable: false) { tx in try tx.db.execute(sql: "UPDATE workspace_meta SET value = value WHERE 0") } }
            #expect(pragmas.withLock { $0 } == 1, "one switch to NORMAL for 50 relaxed commits")
            for _ in 0..<5 { _ = try await actor.write { tx in try tx.db.execute(sql: "UPDATE workspace_meta SET value = value WHERE 0") } }
            #expect(pragmas.withLock { $0 } == 2, "and one back to FULL for the durable ones")
            _ = try await actor.maintenance { db in db.trace(options: []) }
        }
        await h.stop()
    }

    @Test("a list past its limit shows the newest jobs, oldest first (it showed the oldest, and the newest dead jobs were hidden)")
    func listShowsTheNewest() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        var ids: [Int64] = []
        for n in 0..<5 { ids.append(try await h.enqueue(JobRequest(kind: "k"), in: ws).jobID) }
        #expect(try await h.jobs(in: ws).map(\.id) == ids)
        let shown = try await h.supervisor.withWorkspace(ws) { try await $0.jobs(state: .queued, limit: 3) }
        #expect(shown.map(\.id) == Array(ids.suffix(3)))
        await h.stop()
    }
}
