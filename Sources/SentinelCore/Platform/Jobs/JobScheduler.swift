import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// The global job loop. It learns which workspaces have due work, and of which priority, from the
/// supervisor's in-memory `PendingIndex` (fed from `pending_work` for work of other processes),
/// serves them highest priority first across the appliance (due work ages one priority up per
/// `jobs.priority_aging_seconds`, so nothing starves) and round-robin among workspaces within a
/// priority, within the global and per-workspace concurrency limits and each workspace's token
/// bucket, runs handlers while its `LeaseKeeper` renews their leases, and on shutdown lets running
/// jobs finish up to a deadline before giving the rest back.
///
/// Jobs run as children of a task group inside `run()`: when the loop stops (graceful shutdown of
/// its `ServiceGroup`, or cancellation), `run()` returns only once every job has finished or has
/// been released.
public actor JobScheduler: Service {
    public nonisolated let owner: String
    let supervisor: Supervisor
    let config: SentinelConfig
    let logger: Logger
    let metrics: SentinelMetrics
    private let wake = WakeSignal()
    private let leases: LeaseKeeper

    private var inFlight: [WorkspaceID: Int] = [:]
    /// Of those, the `low` and `bulk` jobs (`JobPriority.isBackground`).
    private var backgroundInFlight: [WorkspaceID: Int] = [:]
    private var globalBackgroundInFlight = 0
    /// The workspaces the scheduler holds a supervisor pin on, with how many holds keep it: one per
    /// running job and one per claim under way. The last hold to go unpins it (`release`).
    private var pins: [WorkspaceID: (actor: WorkspaceActor, holders: Int)] = [:]
    private var globalInFlight = 0
    private var buckets: [WorkspaceID: TokenBucket] = [:]
    /// Per rank, the workspace served last (round-robin within a priority).
    private var cursors: [Int: WorkspaceID] = [:]
    private var lastControlScan: ContinuousClock.Instant?
    private var running = false
    private var lastMaintenance = ContinuousClock.now
    private var wallClock = WallClockWatch(latest: nil)

    public init(supervisor: Supervisor, logger: Logger, metrics: SentinelMetrics = SentinelMetrics()) {
        self.owner = "worker-\(RandomIdentifier.uuid().prefix(8).lowercased())"
        self.supervisor = supervisor
        self.config = supervisor.config
        self.logger = logger
        self.metrics = metrics
        self.leases = LeaseKeeper(owner: owner, leaseSeconds: config.jobs.leaseSeconds, drainSeconds: config.shutdown.drainSeconds)
    }

    /// Wakes the loop now (new work was enqueued in this process).
    public nonisolated func signal() { wake.signal() }

    public var isRunning: Bool { running && !stopping }

    /// Graceful shutdown (or cancellation) has begun: no new claims; running jobs are draining.
    private nonisolated var stopping: Bool { wake.isStopped }

    public func run() async throws {
        let wake = self.wake
        supervisor.setWorkDueHandler { wake.signal() }
        running = true
        logger.info("job scheduler started", metadata: ["owner": "\(owner)"])
        do {
            wallClock = WallClockWatch(latest: try supervisor.control.latestWallClock())
        } catch {
            logger.error("could not read the wall clock's latest recorded time", metadata: ["error": "\(error)"])
        }
        let leases = self.leases
        await withTaskGroup(of: Void.self) { keeper in
            keeper.addTask { await leases.run(stop: wake) }
            await withDiscardingTaskGroup { jobs in
                await withTaskCancellationOrGracefulShutdownHandler {
                    await self.loop(launchingIn: &jobs)
                } onCancelOrGracefulShutdown: {
                    wake.stop()
                }
                if globalInFlight > 0 {
                    logger.info("draining running jobs", metadata: ["running": "\(globalInFlight)", "drain_seconds": "\(config.shutdown.drainSeconds)"])
                }
                // Leaving the group waits for every job: each finishes, or is released at the drain deadline.
            }
            keeper.cancelAll()
        }
        for id in await supervisor.openWorkspaceIDs {
            _ = try? await supervisor.withWorkspace(id) { [owner] in try await $0.releaseAll(owner: owner) }
        }
        recordWallClock()
        running = false
        logger.info("job scheduler stopped")
    }

    private func loop(launchingIn jobs: inout DiscardingTaskGroup) async {
        while !stopping {
            if let step = wallClock.observe(Date().epoch) { await moveSchedules(back: step) }
            var wait = Duration.milliseconds(config.jobs.pollIntervalMilliseconds)
            do {
                wait = min(wait, try await scheduleRound(launchingIn: &jobs))
            } catch {
                logger.error("scheduler round failed", metadata: ["error": "\(error)"])
            }
            await maintenanceIfDue()
            if stopping { break }
            if wait > .zero { await wake.wait(timeout: wait) }
        }
    }

    /// One pass over due workspaces. Returns how long the loop may sleep.
    private func scheduleRound(launchingIn jobs: inout DiscardingTaskGroup) async throws -> Duration {
        let globalLimit = config.jobs.globalConcurrency
        let poll = Duration.milliseconds(config.jobs.pollIntervalMilliseconds)
        guard globalInFlight < globalLimit else { return poll }
        let index = supervisor.pendingIndex
        let now = Date()
        // Work of other processes (and, at start, of the previous run) is known from pending_work only.
        let clock = ContinuousClock.now
        if lastControlScan.map({ clock - $0 >= poll }) ?? true {
            lastControlScan = clock
            index.merge(control: try supervisor.control.dueEntries(now: now, limit: 4_096))
        }
        let due = ranked(index.due(now: now.epoch, aging: config.jobs.priorityAgingSeconds))
        var sleep = poll
        if due.isEmpty {
            if let earliest = index.earliest() {
                // At most an hour: the loop polls sooner anyway, and centuries (a clock gone far
                // ahead or back) would overflow the nanoseconds.
                let seconds = min(max(0, earliest - now.epoch), 3_600)
                sleep = min(sleep, .nanoseconds(Int64(seconds * 1e9) + 1_000_000))
            }
            return sleep
        }
        // Plan: decide how many jobs each due workspace may start, reserving global slots, highest
        // rank first: a workspace with due critical work is planned before one with only bulk.
        struct Claim: Sendable {
            let id: WorkspaceID; let actor: WorkspaceActor; let limit: Int; let backgroundLimit: Int; let running: Int; let rank: Int; let through: JobPriority
        }
        var plan: [Claim] = []
        var reserved = 0
        // Background slots the plan may still hand out across the appliance (see `backgroundSlots`).
        var globalBackgroundFree = max(0, Self.backgroundSlots(of: globalLimit) - globalBackgroundInFlight)
        // The per-workspace rate limit keeps one tenant from starving the others: it holds a
        // workspace back only while another one has work due. Alone, a workspace runs at full
        // speed (its starts still drain its bucket, so it is held back as soon as another arrives).
        let contended = due.count > 1
        for candidate in due {
            let id = candidate.id
            if stopping || globalInFlight + reserved >= globalLimit { break }
            let running = inFlight[id, default: 0]
            let free = config.jobs.workspaceConcurrency - running
            if free <= 0 { continue }
            // Background jobs (notifications, rollups, export) leave a quarter (rounded up) of a
            // workspace's slots, and of the appliance's, to webhook processing and reviews: four notification
            // channels that hang for their 30 s timeout held every slot of their workspace (and
            // hung channels of several workspaces every slot of the appliance), and reviews waited.
            let backgroundFree = min(globalBackgroundFree, max(0, Self.backgroundSlots(of: config.jobs.workspaceConcurrency) - backgroundInFlight[id, default: 0]))
            if backgroundFree == 0, !index.hasForegroundDue(id, now: now.epoch) { continue }
            var bucket = buckets[id] ?? TokenBucket(rate: config.jobs.rateLimitPerSecond, burst: config.jobs.rateLimitBurst)
            let tokens = contended ? bucket.available() : Int.max
            buckets[id] = bucket
            if tokens < 1 {
                sleep = min(sleep, bucket.waitTime())
                continue
            }
            let actor: WorkspaceActor
            if let held = pins[id], !supervisor.isRetired(id) {
                // Jobs of this workspace are running: the pin they hold serves this claim too (unless
                // the workspace is being deleted: then `pin` refuses, and no new job starts in it).
                actor = held.actor
                pins[id] = (actor, held.holders + 1)
            } else {
                do {
                    actor = try await supervisor.pin(id)
                } catch let error as WorkspaceError {
                    if case .offline = error {
                        // Keep the rest of the appliance going; look again after the offline retry period.
                        let retry = Date().epoch + config.workspaces.offlineRetrySeconds
                        try? supervisor.control.setDue(id, to: retry)
                        index.holdBack(id, until: retry)
                    } else if case .outOfFileDescriptors = error {
                        // Passes once descriptors are free: look again shortly, without touching control.sqlite.
                        index.holdBack(id, until: Date().epoch + 1)
                    } else if case .notFound = error {
                        try? supervisor.control.setDue(id, to: nil)
                        index.holdBack(id, until: nil)
                    }
                    continue
                }
                if let held = pins[id] {
                    // Retired and then kept after all (its deletion failed): one pin is enough.
                    pins[id] = (held.actor, held.holders + 1)
                    await supervisor.unpin(id)
                } else {
                    pins[id] = (actor, 1)
                }
            }
            let limit = min(free, globalLimit - globalInFlight - reserved, tokens)
            reserved += limit
            globalBackgroundFree -= min(limit, backgroundFree)
            plan.append(Claim(id: id, actor: actor, limit: limit, backgroundLimit: min(limit, backgroundFree), running: running, rank: candidate.rank,
                              through: candidate.through))
        }
        // Claim in every planned workspace at once: each is its own file and its own commit.
        let owner = self.owner
        let claimed = await withTaskGroup(of: (Claim, Result<[JobRecord], Error>).self) { group in
            for claim in plan {
                let running = leases.runningJobIDs(in: claim.id)
                group.addTask {
                    do {
                        return (claim, .success(try await claim.actor.claim(owner: owner, limit: claim.limit, backgroundLimit: claim.backgroundLimit,
                                                                            through: claim.through, running: running)))
                    } catch {
                        return (claim, .failure(error))
                    }
                }
            }
            var results: [(Claim, Result<[JobRecord], Error>)] = []
            for await result in group { results.append(result) }
            return results
        }
        var launched = false
        let order = Dictionary(uniqueKeysWithValues: plan.enumerated().map { ($1.id, $0) })
        for (claim, result) in claimed.sorted(by: { order[$0.0.id]! < order[$1.0.id]! }) {
            let claimedJobs: [JobRecord]
            switch result {
            case .success(let list): claimedJobs = list
            case .failure(let error):
                await release(claim.id)
                logger.error("claim failed", metadata: ["workspace_id": "\(claim.id)", "error": "\(error)"])
                continue
            }
            if claimedJobs.isEmpty {
                if claim.running == 0 && inFlight[claim.id, default: 0] == 0 { _ = try? await claim.actor.refreshPendingIndex() }
                await release(claim.id)
                continue
            }
            buckets[claim.id]?.take(claimedJobs.count)
            cursors[claim.rank] = claim.id
            launched = true
            // Each job holds the workspace's pin until its outcome is recorded; the claim lets go of it.
            for job in claimedJobs { start(job, on: claim.actor, in: &jobs) }
            await release(claim.id)
        }
        return launched ? .zero : sleep
    }

    /// Of `slots` (a workspace's, or the appliance's), how many background jobs may take: all but a
    /// quarter (rounded up) kept for the rest; all of a single one.
    static func backgroundSlots(of slots: Int) -> Int {
        slots > 1 ? slots - (slots + 3) / 4 : slots
    }

    /// Due workspaces by rank, then round-robin within a rank: those after the rank's cursor first.
    private func ranked(_ due: [DueWorkspace]) -> [DueWorkspace] {
        let cursors = self.cursors
        return due.sorted { a, b in
            if a.rank != b.rank { return a.rank < b.rank }
            let cursor = cursors[a.rank]
            let (aAfter, bAfter) = (cursor.map { a.id > $0 } ?? true, cursor.map { b.id > $0 } ?? true)
            if aAfter != bAfter { return aAfter }
            return a.id < b.id
        }
    }

    private func start(_ job: JobRecord, on actor: WorkspaceActor, in jobs: inout DiscardingTaskGroup) {
        globalInFlight += 1
        inFlight[actor.id, default: 0] += 1
        if job.jobPriority.isBackground {
            backgroundInFlight[actor.id, default: 0] += 1
            globalBackgroundInFlight += 1
        }
        pins[actor.id]?.holders += 1
        jobs.addTask { await Telemetry.withJob(job, workspace: actor.id) { await self.execute(job, on: actor) } }
    }

    private func execute(_ job: JobRecord, on actor: WorkspaceActor) async {
        let workspaceID = actor.id
        let jobLogger = logger.with(["workspace_id": workspaceID.rawValue, "job_id": String(job.id), "job_kind": job.kind,
                                     "correlation_id": job.correlationID])
        let startedAt = ContinuousClock.now
        // Capped at about 31 years: a job due centuries before it started (a clock that jumped far
        // ahead) would overflow the nanoseconds and trap.
        let waited = min(max(0, (job.startedAt ?? job.runAt) - job.runAt), 1e9)
        metrics.queueLatency(.nanoseconds(Int64(waited * 1e9)), priority: job.jobPriority)
        let outcome: JobOutcome
        if let handler = supervisor.registry.handler(for: job.kind) {
            let context = JobContext(workspaceID: workspaceID, job: job, workspace: actor, logger: jobLogger)
            do {
                try await leases.runHoldingLease(job, on: actor) { try await handler(context) }
                outcome = .succeeded
            } catch is LeaseLost {
                jobLogger.warning("job lease was lost while it ran; the job was cancelled before any further side effect")
                outcome = .failed(message: "lease lost", retryAfter: nil, permanent: false)
            } catch is DrainDeadlineReached {
                jobLogger.warning("drain deadline reached; the running job was cancelled and is released back to the queue")
                outcome = .released
            } catch is CancellationError where stopping {
                outcome = .released
            } catch let failure as JobFailure {
                switch failure {
                case .retryAfter(let seconds, let message): outcome = .failed(message: message, retryAfter: seconds, permanent: false)
                case .permanent(let message): outcome = .failed(message: message, retryAfter: nil, permanent: true)
                case .postpone(let seconds, let message): outcome = .postponed(message: message, after: seconds)
                }
            } catch {
                outcome = .failed(message: String(describing: error), retryAfter: nil, permanent: false)
            }
        } else {
            outcome = .failed(message: "no handler registered for job kind '\(job.kind)'", retryAfter: nil, permanent: false)
        }
        let duration = ContinuousClock.now - startedAt
        // The slot is free once the handler returned: the next claim in this workspace can then
        // share the group commit that records this outcome. The pin is held until it is recorded.
        finished(job, workspaceID)
        do {
            let recorded = try await actor.finish(job, owner: owner, outcome: outcome)
            if !recorded { jobLogger.warning("job lease was lost before it finished; another worker owns it now") }
        } catch {
            jobLogger.error("could not record job outcome; its lease will expire and it will be retaken", metadata: ["error": "\(error)"])
        }
        let label: String
        switch outcome {
        case .succeeded: label = "succeeded"
        case .released: label = "released"
        case .postponed(let message, _):
            label = "postponed"
            jobLogger.info("job postponed: not ready yet", metadata: ["error": "\(message)"])
        case .failed(let message, _, let permanent):
            label = permanent || job.attempts >= job.maxAttempts ? "dead" : "retry"
            jobLogger.warning("job attempt failed", metadata: ["attempt": "\(job.attempts)", "error": "\(message)", "outcome": "\(label)"])
        }
        metrics.jobExecuted(kind: job.kind, outcome: label, duration: duration)
        await release(workspaceID)
    }

    /// Frees the job's slots (global and in its workspace) and wakes the loop.
    private func finished(_ job: JobRecord, _ id: WorkspaceID) {
        globalInFlight -= 1
        let left = (inFlight[id] ?? 1) - 1
        inFlight[id] = left > 0 ? left : nil
        if job.jobPriority.isBackground {
            let background = (backgroundInFlight[id] ?? 1) - 1
            backgroundInFlight[id] = background > 0 ? background : nil
            globalBackgroundInFlight -= 1
        }
        wake.signal()
    }

    /// Lets go of one hold on a workspace's pin (a job whose outcome is recorded, a claim that
    /// ended); the last hold unpins it, so the supervisor may close the file.
    private func release(_ id: WorkspaceID) async {
        guard let held = pins[id] else { return }
        if held.holders > 1 {
            pins[id] = (held.actor, held.holders - 1)
            return
        }
        pins[id] = nil
        await supervisor.unpin(id)
    }

    /// The wall clock was set back by `step` seconds (`WallClockWatch`): moves the due times and
    /// other processes' lease expiries of every workspace with queued work back by as much.
    private func moveSchedules(back step: Double) async {
        logger.warning("the wall clock was set back; moving the due times of queued jobs back by as much",
                       metadata: ["seconds": "\(Int(step.rounded()))"])
        recordWallClock()
        let ids: Set<WorkspaceID>
        do {
            try supervisor.control.moveDueTimes(back: step, now: Date().epoch)
            ids = try supervisor.control.workspacesWithPendingWork()
        } catch {
            logger.error("could not move the due times of the pending-work index", metadata: ["error": "\(error)"])
            return
        }
        var moved = 0
        for id in ids.sorted() where !stopping {
            do {
                moved += try await supervisor.withWorkspace(id) { [owner] in try await $0.moveSchedule(back: step, sparing: owner) }
            } catch {
                logger.error("could not move the due times of a workspace's jobs", metadata: ["workspace_id": "\(id)", "error": "\(error)"])
            }
        }
        lastControlScan = nil
        logger.info("due times moved back after the wall clock was set back", metadata: ["jobs": "\(moved)", "workspaces": "\(ids.count)"])
    }

    private func recordWallClock() {
        guard let latest = wallClock.latest else { return }
        do {
            try supervisor.control.recordWallClock(latest)
        } catch {
            logger.error("could not record the wall clock's latest time", metadata: ["error": "\(error)"])
        }
    }

    /// About once a minute: closes idle workspaces, enqueues the day's `retention` job in each open
    /// workspace (when the registry has it), and checkpoints WALs grown past `storage.wal_max_bytes`.
    private func maintenanceIfDue() async {
        let now = ContinuousClock.now
        guard now - lastMaintenance >= .seconds(60) else { return }
        lastMaintenance = now
        recordWallClock()
        await supervisor.closeIdle()
        if supervisor.registry.handler(for: Retention.jobKind) != nil {
            let today = Date()
            let day = String(ISO8601.string(today).prefix(10))
            if retentionDay != day { (retentionDay, retentionEnqueued) = (day, []) }
            for id in await supervisor.openWorkspaceIDs where !retentionEnqueued.contains(id) {
                if (try? await supervisor.withWorkspace(id, { try await $0.enqueue(Retention.request(on: today)) })) != nil {
                    retentionEnqueued.insert(id)
                }
            }
        }
        await supervisor.checkpointLargeWALs()
    }

    /// The UTC day whose retention jobs `retentionEnqueued` lists.
    private var retentionDay = ""
    private var retentionEnqueued: Set<WorkspaceID> = []

    public var runningJobs: Int { globalInFlight }
}

/// A running job's lease renewal found the lease gone.
struct LeaseLost: Error {}

/// Graceful shutdown began and the job ran past `shutdown.drain_seconds`.
struct DrainDeadlineReached: Error {}

/// A wake-up flag the loop sleeps on: set by new work, finished jobs or a timeout. Once stopped,
/// it stays set: the loop no longer sleeps and claims nothing more.
final class WakeSignal: Sendable {
    private struct State {
        var pending = false
        var stopped = false
        var waiter: CheckedContinuation<Void, Never>?
        /// Running jobs waiting for the stop (to start their drain deadline), by a per-wait key.
        var stopWaiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextKey = 0
    }
    private let state = Mutex(State())

    func signal() {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if let w = s.waiter { s.waiter = nil; return w }
            s.pending = true
            return nil
        }
        waiter?.resume()
    }

    /// Called from graceful-shutdown and cancellation handlers (synchronous, any thread).
    func stop() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.stopped = true
            defer { s.stopWaiters = [:] }
            return Array(s.stopWaiters.values)
        }
        for waiter in waiters { waiter.resume() }
        signal()
    }

    /// Returns once `stop()` has been called; throws `CancellationError` if cancelled first.
    func untilStopped() async throws {
        let key = state.withLock { s -> Int in
            defer { s.nextKey &+= 1 }
            return s.nextKey
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { s -> Bool in
                    if s.stopped || Task.isCancelled { return true }
                    s.stopWaiters[key] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.stopWaiters.removeValue(forKey: key) }?.resume()
        }
        try Task.checkCancellation()
    }

    var isStopped: Bool { state.withLock { $0.stopped } }

    /// Returns on the next signal or after `timeout`, whichever comes first.
    func wait(timeout: Duration) async {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask { (try? await Task.sleep(for: timeout)) != nil }
            group.addTask { await self.nextSignal(); return false }
            // A timer that ran out wakes the waiter; a signal first cancels the timer.
            if await group.next() == true { signal() }
            group.cancelAll()
        }
    }

    private func nextSignal() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { s -> Bool in
                if s.pending { s.pending = false; return true }
                s.waiter = continuation
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }
}
