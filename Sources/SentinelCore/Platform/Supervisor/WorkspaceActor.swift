import CSentinelSQLite
import Foundation
import GRDB
import NIOPosix
import Logging
import Synchronization
import Tracing

/// The handle a domain write closure gets: the open transaction plus the two things every state
/// change may need in the same transaction, appending events and enqueueing jobs.
public struct WorkspaceTransaction {
    public let db: Database
    public let now: Date
    public let workspaceID: WorkspaceID
    let listeners: EventListenerRegistry
    let defaultMaxAttempts: Int
    /// Earliest due time of jobs enqueued in this transaction (feeds the pending-work index).
    var earliestEnqueued: Double?
    /// What the pending-work index says for this workspace as far as this process knows.
    var indexedDue: Double?
    let control: ControlStore
    /// For the scheduler's in-memory `PendingIndex`: the file's exact due times by priority when
    /// this transaction read them, and what fell due by priority after that (or at all, if nil).
    var exactDue: PriorityDue?
    var dueSinceExact = PriorityDue.none
    /// The appliance's metrics (the supervisor's; a no-op factory in the CLI).
    public let metrics: SentinelMetrics
    /// What runs once this transaction is committed (counting what it changed); dropped with a
    /// body whose savepoint rolls back and with a batch whose commit fails.
    var committed: [@Sendable () -> Void] = []

    /// Runs `action` after the commit that makes this transaction's changes durable.
    public mutating func afterCommit(_ action: @escaping @Sendable () -> Void) {
        committed.append(action)
    }

    @discardableResult
    public mutating func enqueue(_ request: JobRequest) throws -> EnqueueResult {
        let result = try JobQueue.enqueue(request, in: db, now: now, defaultMaxAttempts: defaultMaxAttempts)
        if case .created = result { noteDue(request.priority, at: (request.runAt ?? now).epoch) }
        return result
    }

    /// A job of `priority` is queued to run at `due` (enqueued, retried, released).
    mutating func noteDue(_ priority: JobPriority, at due: Double) {
        earliestEnqueued = min(earliestEnqueued ?? due, due)
        dueSinceExact.lower(priority, to: due)
    }

    /// Reads the file's exact due times by priority for the scheduler's in-memory index.
    mutating func readExactDue() throws {
        exactDue = try JobQueue.dueByPriority(in: db)
        dueSinceExact = .none
    }

    /// Sets the pending-work index to the file's true next due time, inside this transaction so no
    /// enqueue can slip between computing it and writing it.
    mutating func replacePendingIndex() throws -> Double? {
        try readExactDue()
        let due = exactDue?.earliest
        try control.setDue(workspaceID, to: due)
        indexedDue = due
        return due
    }

    /// Appends a domain event and enqueues its listeners, atomically with the caller's change.
    @discardableResult
    public mutating func append(_ event: DomainEvent) throws -> Int64 {
        let (seq, jobs) = try EventLog.append(event, in: db, now: now, listeners: listeners.listeners(for: event.type))
        for job in jobs { try enqueue(job) }
        return seq
    }
}

/// Owns one workspace file: its database handle, its writes (group-committed), and the job
/// operations the scheduler performs on it. All access to a tenant's data goes through here.
public actor WorkspaceActor {
    public nonisolated let id: WorkspaceID
    /// The workspace file. Private: every read and write goes through `read`/`write` (and the
    /// queue, event and group-commit methods of this actor).
    private nonisolated let database: any DatabaseWriter
    /// Checkpoints the file's WAL off the writer's thread (see `WALCheckpointer`).
    nonisolated let checkpointer: WALCheckpointer
    /// The connection's `PRAGMA synchronous`, switched between relaxed and durable batches.
    nonisolated let synchronous = SynchronousSwitch()
    /// The workspace's model calls admitted and not yet recorded, across its runs (`RunSpendGuard`).
    public nonisolated let spendInFlight = SpendInFlight()
    let control: ControlStore
    let registry: JobRegistry
    let config: SentinelConfig.Jobs
    let onWorkDue: @Sendable () -> Void
    let backoff: BackoffPolicy
    /// The scheduler's view of what is due here, by priority (nil outside `serve`'s supervisor).
    let pendingIndex: PendingIndex?
    let metrics: SentinelMetrics

    private var pending: [PendingWrite] = []
    private var draining = false
    private var closed = false
    /// The due time this actor last wrote to the pending-work index, to skip redundant index writes.
    private var indexedDue: Double?

    public init(id: WorkspaceID, database: any DatabaseWriter, control: ControlStore, registry: JobRegistry,
                config: SentinelConfig.Jobs, onWorkDue: @escaping @Sendable () -> Void = {}) {
        self.init(id: id, database: database, control: control, registry: registry, config: config, onWorkDue: onWorkDue,
                  pendingIndex: nil, metrics: SentinelMetrics())
    }

    init(id: WorkspaceID, database: any DatabaseWriter, control: ControlStore, registry: JobRegistry,
         config: SentinelConfig.Jobs, onWorkDue: @escaping @Sendable () -> Void, pendingIndex: PendingIndex?, metrics: SentinelMetrics) {
        self.metrics = metrics
        self.id = id
        self.database = database
        self.checkpointer = WALCheckpointer(path: database.path)
        // Should the hook not go in, SQLite's own automatic checkpoint stays on.
        try? checkpointer.install(on: database)
        self.control = control
        self.registry = registry
        self.config = config
        self.onWorkDue = onWorkDue
        self.pendingIndex = pendingIndex
        self.backoff = BackoffPolicy(base: config.backoffBaseSeconds, cap: config.backoffMaxSeconds)
    }

    // MARK: Reads and writes

    public func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try ensureOpen()
        return try await database.read(body)
    }

    /// Runs `body` in a transaction, batched with other writes arriving at the same time into one
    /// commit (one fsync). In a batch of several, each body runs in its own savepoint: one failing
    /// body does not undo others. Returns once the commit is durable.
    public func write<T: Sendable>(_ body: @escaping @Sendable (inout WorkspaceTransaction) throws -> T) async throws -> T {
        try await write(durable: true, body)
    }

    /// `durable: false` is for queue-internal transitions only (see `PendingWrite.durable`): a batch
    /// holding nothing else commits with `synchronous=NORMAL` (WAL written, no fsync); any durable
    /// write in the batch makes the whole commit durable.
    ///
    /// Group commit without a drain task: a write arriving while no commit runs leads its batch,
    /// queueing the transaction on the file's writer and awaiting it in its own task. Writes
    /// arriving during a commit wait; when it is done the leader queues them as the next batch
    /// at once and hands the waiting for it to the first of them.
    func write<T: Sendable>(durable: Bool, _ body: @escaping @Sendable (inout WorkspaceTransaction) throws -> T) async throws -> T {
        try ensureOpen()
        let box = ResultBox<T>()
        // The body runs on the file's writer thread: give it the caller's tracer (task-local in
        // `serve`), trace and correlation id, so jobs it enqueues continue the caller's trace and
        // its log lines carry the caller's ids.
        let (tracer, context) = (InstrumentationSystem.tracer, ServiceContext.current)
        let run: @Sendable (inout WorkspaceTransaction) throws -> T = { tx in
            try withTracer(tracer) { try ServiceContext.withValue(context) { try body(&tx) } }
        }
        let apply: @Sendable (inout WorkspaceTransaction, Bool) -> Error? = { tx, isolated in
            let before = (tx.earliestEnqueued, tx.indexedDue, tx.exactDue, tx.dueSinceExact)
            let committedBefore = tx.committed.count
            do {
                var value: T?
                if isolated {
                    try tx.db.inBatchSavepoint { value = try run(&tx) }
                } else {
                    value = try run(&tx)
                }
                box.set(.success(value!))
                return nil
            } catch {
                (tx.earliestEnqueued, tx.indexedDue, tx.exactDue, tx.dueSinceExact) = before
                tx.committed.removeSubrange(committedBefore...)
                box.set(.failure(error))
                return error
            }
        }
        let fail: @Sendable (Error) -> Void = { box.set(.failure($0)) }
        let turn: WriteTurn
        if draining {
            turn = await withCheckedContinuation { (continuation: CheckedContinuation<WriteTurn, Never>) in
                pending.append(PendingWrite(apply: apply, fail: fail, waiter: continuation, durable: durable))
            }
        } else {
            draining = true
            pending.append(PendingWrite(apply: apply, fail: fail, waiter: nil, durable: durable))
            turn = .lead(startCommit())
        }
        if case .lead(let commit) = turn {
            if commit.inline != nil { await Self.commitInline(commit, on: database, checkpointer: checkpointer) }
            await finishCommit(commit)
        }
        return try box.take().get()
    }

    /// Takes everything pending as one batch. A durable batch's transaction is queued on the
    /// file's writer at once, through GRDB's callback API: the cancellation of the task that leads
    /// the batch must not fail the other writes in it (GRDB's async `write` honours task
    /// cancellation). A relaxed batch is run by its leader (`commitInline`), which GRDB's
    /// synchronous write does not cancel either.
    private func startCommit() -> BatchCommit {
        let (batch, known) = (pending, indexedDue)
        pending.removeAll(keepingCapacity: true)
        let (id, control, listeners, maxAttempts, metrics) = (self.id, self.control, registry.listeners, config.maxAttempts, self.metrics)
        let relaxed = !batch.contains { $0.durable }
        let synchronous = self.synchronous
        // A process without the scheduler's index (a command beside `serve`) tells `serve` of what
        // it queues through the index entry changing: `serve` reads the entries now and then and
        // looks at a file whose entry moved.
        let otherProcess = pendingIndex == nil
        let transaction: @Sendable (Database) -> Result<BatchOutcome, Error> = { db in
            Result {
                // NORMAL for a relaxed batch, the configured level (FULL) for any other.
                try synchronous.prepare(db, relaxed: relaxed)
                var outcome = BatchOutcome(indexed: known)
                // A batch of one needs no savepoint: its failure rolls the transaction back.
                let isolated = batch.count > 1
                try db.inTransaction {
                    var tx = WorkspaceTransaction(db: db, now: Date(), workspaceID: id, listeners: listeners,
                                                  defaultMaxAttempts: maxAttempts, earliestEnqueued: nil,
                                                  indexedDue: known, control: control, metrics: metrics)
                    for entry in batch {
                        guard let failure = entry.apply(&tx, isolated) else { continue }
                        // Some errors (SQLITE_FULL, SQLITE_IOERR, …) make SQLite roll the whole
                        // transaction back, not just the body's savepoint: nothing of the batch
                        // is stored, and every write in it fails with that cause (not with the
                        // commit's "transaction was aborted").
                        if !db.isInsideTransaction { throw failure }
                        // The body alone in its batch failed: undo it; nothing else changed, so
                        // what the index says stays known (the body already has its error).
                        if !isolated { return .rollback }
                    }
                    (outcome.indexed, outcome.exact, outcome.dueSinceExact, outcome.committed)
                        = (tx.indexedDue, tx.exactDue, tx.dueSinceExact, tx.committed)
                    // Index before commit: a crash in between leaves a harmless false positive,
                    // never a job the scheduler does not know about.
                    if let due = tx.earliestEnqueued, tx.indexedDue == nil || due < tx.indexedDue! {
                        // A read is enough when the index already says "due by then" (a reopened
                        // file does not know what it wrote before): only move it earlier.
                        if let existing = try control.dueEntry(id), existing <= due {
                            outcome.indexed = existing
                            if otherProcess {
                                // Already as early, but `serve` may know it from before and know the
                                // file holds nothing due: unmoved, the entry did not tell it of this
                                // work, which waited for good. Moved a millisecond earlier, it does.
                                try control.markDue(id, at: existing - 0.001)
                                outcome.indexed = existing - 0.001
                            }
                        } else {
                            try control.markDue(id, at: due)
                            outcome.indexed = due
                        }
                        outcome.wake = true
                    }
                    return .commit
                }
                return outcome
            }
        }
        let commit = BatchCommit(batch: batch, known: known, inline: relaxed ? transaction : nil)
        if !relaxed {
            database.asyncWriteWithoutTransaction { db in commit.complete(transaction(db)) }
        }
        return commit
    }

    /// Runs a relaxed batch (no fsync: tens of microseconds) on the leader's own thread, off the
    /// actor so writes arriving meanwhile join the next batch. GRDB's synchronous write runs the
    /// transaction on the calling thread when the file's writer is idle (it is: batches commit one
    /// after the other), instead of a hop to the writer's dispatch queue and back.
    @concurrent
    private nonisolated static func commitInline(_ commit: BatchCommit, on database: any DatabaseWriter, checkpointer: WALCheckpointer) async {
        commit.run(on: database, checkpointer: checkpointer)
    }

    /// Waits for a batch's commit, takes the next batch at once (a durable one is queued on the
    /// writer then, so the file's writer does not wait for a task switch between two fsyncs; a
    /// relaxed one runs when its leader wakes), then wakes this batch's writers and hands the next
    /// batch to the first writer in it.
    private func finishCommit(_ commit: BatchCommit) async {
        let result = await commit.outcome()
        // Updated before the next batch reads it: the leader of a batch is its only reader.
        switch result {
        case .success(let outcome): indexedDue = outcome.indexed
        case .failure: indexedDue = nil
        }
        var next: (leader: CheckedContinuation<WriteTurn, Never>?, commit: BatchCommit)?
        if pending.isEmpty {
            draining = false
        } else if closed {
            for entry in pending { entry.fail(WorkspaceError.closed(id)); entry.waiter?.resume(returning: .committed) }
            pending.removeAll()
            draining = false
        } else {
            let leader = pending[0].waiter
            pending[0].waiter = nil
            next = (leader, startCommit())
        }
        switch result {
        case .success(let outcome):
            var due = outcome.wake
            if let pendingIndex {
                // In commit order: the leaders of this actor's batches are the only writers of its entry.
                if let exact = outcome.exact {
                    pendingIndex.replace(id, with: exact, then: outcome.dueSinceExact)
                } else if pendingIndex.lower(id, to: outcome.dueSinceExact) {
                    due = true
                }
                if outcome.indexed != commit.known { pendingIndex.noteControl(id, due: outcome.indexed) }
            }
            if due { onWorkDue() }
            for action in outcome.committed { action() }
        case .failure(let error):
            for entry in commit.batch { entry.fail(error) }
        }
        for entry in commit.batch { entry.waiter?.resume(returning: .committed) }
        if let next { next.leader?.resume(returning: .lead(next.commit)) }
    }

    // MARK: Job operations (used by the scheduler and admin commands)

    public func enqueue(_ request: JobRequest) async throws -> EnqueueResult {
        try await write { tx in try tx.enqueue(request) }
    }

    /// Claims up to `limit` due jobs of priority `through` or higher, and (for the scheduler's
    /// in-memory index) reads what is due here by priority afterwards, in the same transaction.
    /// `running`: jobs of this file this process is running now; their leases are never taken over.
    func claim(owner: String, limit: Int, backgroundLimit: Int? = nil, through lowest: JobPriority = .bulk, running: Set<Int64> = []) async throws -> [JobRecord] {
        let lease = config.leaseSeconds
        let registry = self.registry
        let indexed = pendingIndex != nil
        return try await write(durable: false) { tx in
            var died: [(JobRecord, String)] = []
            let jobs = try JobQueue.claim(in: tx.db, owner: owner, now: tx.now, limit: limit, backgroundLimit: backgroundLimit, lease: lease,
                                          through: lowest, running: running) {
                died.append(($0, $1))
            }
            if indexed { try tx.readExactDue() }
            for (job, reason) in died {
                if let hook = try registry.deadHookRequest(for: job, reason: reason, at: tx.now) { try tx.enqueue(hook) }
                try tx.append(JobQueue.deadEvent(job, reason: reason))
            }
            return jobs
        }
    }

    @discardableResult
    func finish(_ job: JobRecord, owner: String, outcome: JobOutcome) async throws -> Bool {
        let backoff = self.backoff
        let registry = self.registry
        return try await write(durable: false) { tx in
            var died: [(JobRecord, String)] = []
            let finished = try JobQueue.finish(job, owner: owner, outcome: outcome, in: tx.db, now: tx.now, backoff: backoff) { died.append(($0, $1)) }
            for (dead, reason) in died {
                if let hook = try registry.deadHookRequest(for: dead, reason: reason, at: tx.now) { try tx.enqueue(hook) }
                try tx.append(JobQueue.deadEvent(dead, reason: reason))
            }
            // Queued again for later (a retry, or postponed): the scheduler is told when it is due
            // (a postponed job was found only when its old lease ran out, a minute after its 5 s).
            let later: Bool
            switch outcome {
            case .failed, .postponed: later = true
            case .succeeded, .released: later = false
            }
            if finished, later, let row = try JobQueue.job(id: job.id, in: tx.db), row.state == .queued {
                tx.noteDue(row.jobPriority, at: row.runAt)
            }
            if finished, case .released = outcome {
                // The row's priority: the job may have raised its own while it ran (`JobQueue.raisePriority`).
                let priority = try JobQueue.job(id: job.id, in: tx.db)?.jobPriority ?? job.jobPriority
                tx.noteDue(priority, at: tx.now.epoch)
            }
            return finished
        }
    }

    func heartbeat(jobID: Int64, owner: String) async throws -> Bool {
        let lease = config.leaseSeconds
        return try await write(durable: false) { tx in
            try JobQueue.heartbeat(jobID: jobID, owner: owner, in: tx.db, until: tx.now.addingTimeInterval(lease))
        }
    }

    func releaseAll(owner: String) async throws -> Int {
        try await write(durable: false) { tx in
            let n = try JobQueue.releaseAll(owner: owner, in: tx.db, now: tx.now)
            if n > 0 {
                tx.earliestEnqueued = tx.now.epoch
                try tx.readExactDue()
            }
            return n
        }
    }

    /// The wall clock was set back by `seconds`: moves the file's due times back by as much
    /// (`JobQueue.moveSchedule`) and its pending-work index entry with them.
    func moveSchedule(back seconds: Double, sparing owner: String) async throws -> Int {
        try await write { tx in
            let moved = try JobQueue.moveSchedule(back: seconds, now: tx.now.epoch, sparing: owner, in: tx.db)
            _ = try tx.replacePendingIndex()
            return moved
        }
    }

    /// Replaces this workspace's pending-work index entry with the file's true next due time.
    /// Runs through the write path so no enqueue can slip between the computation and the update.
    func refreshPendingIndex() async throws -> Double? {
        try await write { tx in try tx.replacePendingIndex() }
    }

    /// Runs `body` outside any transaction (VACUUM, `incremental_vacuum`, checkpoints), between
    /// the actor's batched writes: the file's one connection serialises them. For storage
    /// maintenance only; a domain change goes through `write`.
    public func maintenance<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try ensureOpen()
        let synchronous = self.synchronous
        return try await database.writeWithoutTransaction { db in
            try synchronous.prepare(db, relaxed: false)
            return try body(db)
        }
    }

    /// Copies the whole WAL into the file and truncates it, after any background checkpoint
    /// (`WALCheckpointer.truncate`). Returns whether the log was copied completely (a reader such
    /// as a backup can hold part of it back).
    @discardableResult
    public func truncateWAL() async throws -> Bool {
        let checkpointer = self.checkpointer
        return try await maintenance { db in try checkpointer.truncate(db) }
    }

    /// Deletes succeeded and cancelled jobs finished before `cutoff`, `window` jobs by id per
    /// transaction, so the workspace's other writes interleave. Returns how many went.
    public func pruneFinishedJobs(finishedBefore cutoff: Date, window: Int = 5_000) async throws -> Int {
        var (pruned, after): (Int, Int64?) = (0, 0)
        while let from = after {
            let step = try await write { tx in try JobQueue.prune(finishedBefore: cutoff, after: from, window: window, in: tx.db) }
            pruned += step.pruned
            after = step.last
        }
        return pruned
    }

    /// Puts a dead job back in the queue, audited (`JobRetried`, with who did it).
    public func retryDeadJob(_ jobID: Int64, by actor: String) async throws -> Bool {
        try await write { tx in
            guard try JobQueue.retryDead(jobID: jobID, in: tx.db, now: tx.now) else { return false }
            let job = try JobQueue.job(id: jobID, in: tx.db)
            tx.noteDue(job?.jobPriority ?? .critical, at: tx.now.epoch)
            try tx.append(DomainEvent(type: "JobRetried", subject: "job:\(jobID)", payload: ["kind": job?.kind ?? "", "by": actor]))
            return true
        }
    }

    /// Gives up on a dead job for good (a discarded review is never made), audited (`JobDiscarded`).
    public func discardDeadJob(_ jobID: Int64, by actor: String) async throws -> Bool {
        try await write { tx in
            guard try JobQueue.discardDead(jobID: jobID, in: tx.db, now: tx.now) else { return false }
            let kind = try JobQueue.job(id: jobID, in: tx.db)?.kind ?? ""
            try tx.append(DomainEvent(type: "JobDiscarded", subject: "job:\(jobID)", payload: ["kind": kind, "by": actor]))
            return true
        }
    }

    public func job(_ id: Int64) async throws -> JobRecord? {
        try await read { db in try JobQueue.job(id: id, in: db) }
    }

    public func jobs(state: JobState? = nil, limit: Int = 100) async throws -> [JobRecord] {
        try await read { db in try JobQueue.list(state: state, limit: limit, in: db) }
    }

    // MARK: Lifecycle

    /// What `close` does with the write-ahead log.
    public enum LogOnClose: Sendable {
        /// Copies it into the database file and truncates it: the file stands alone on disk
        /// (shutdown, idle files, deletion).
        case checkpoint
        /// Leaves a log of at most `WALCheckpointer.keptOnEviction` pages as it is (a longer one is
        /// checkpointed): an evicted file under LRU churn is opened again soon, and copying a few
        /// pages into it, fsyncing it and truncating the log on every eviction cost more than the
        /// next open reading them back. Every commit in the log is already durable; backups, the
        /// CLI and the next open read the log with the file.
        case checkpointUnlessShort
    }

    /// Closes the handle, checkpointing the WAL into the main file as `log` says. Later calls fail
    /// with `closed`. The checkpoint blocks on file I/O, so like opening it runs on NIO's
    /// blocking-work threads, never on the cooperative pool.
    public func close(_ log: LogOnClose = .checkpoint) async {
        guard !closed else { return }
        closed = true
        let (database, checkpointer) = (self.database, self.checkpointer)
        let checkpointAndClose: @Sendable () -> Void = {
            let keepLog = log == .checkpointUnlessShort && checkpointer.logPages <= WALCheckpointer.keptOnEviction
            checkpointer.close(writer: database)
            try? database.writeWithoutTransaction { db in
                if keepLog {
                    // SQLite would otherwise checkpoint as the file's last connection closes.
                    _ = sentinel_sqlite3_skip_checkpoint_on_close(db.sqliteConnection)
                    return
                }
                // No waiting for readers (a Litestream sidecar holds a read transaction all the time):
                // checkpoint what can be, then close; every commit is already durable in the WAL.
                try db.execute(sql: "PRAGMA busy_timeout = 0")
                _ = try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)")
            }
            try? database.close()
        }
        do { try await NIOThreadPool.singleton.runIfActive(checkpointAndClose) } catch { checkpointAndClose() }
    }

    public var isClosed: Bool { closed }

    private func ensureOpen() throws {
        if closed { throw WorkspaceError.closed(id) }
    }
}

struct PendingWrite: Sendable {
    /// Runs the body (in its own savepoint when `isolated`); returns its error, if any.
    let apply: @Sendable (inout WorkspaceTransaction, _ isolated: Bool) -> Error?
    /// Records that the batch's commit failed with this error.
    let fail: @Sendable (Error) -> Void
    /// The writer waiting for this batch (nil for the batch's leader, which is not waiting).
    var waiter: CheckedContinuation<WriteTurn, Never>?
    /// False for the queue's own bookkeeping (claim, finish, heartbeat, release): losing such a
    /// commit to a power cut only makes a job run again, which at-least-once already allows.
    var durable = true
}

/// What a waiting writer is woken for: its batch was committed, or it leads the next one (whose
/// commit is already queued on the file's writer).
enum WriteTurn: Sendable {
    case committed
    case lead(BatchCommit)
}

/// One batch of writes on its way through the file's writer: the writes, and the outcome of their
/// transaction once the writer has run it.
final class BatchCommit: Sendable {
    let batch: [PendingWrite]
    /// What the pending-work index said for the workspace when the batch was taken.
    let known: Double?
    private let state = Mutex<(result: Result<BatchOutcome, Error>?, waiter: CheckedContinuation<Result<BatchOutcome, Error>, Never>?)>((nil, nil))

    /// A relaxed batch's transaction, run by its leader on its own thread (`commitInline`); nil
    /// when the batch was queued on the file's writer.
    let inline: (@Sendable (Database) -> Result<BatchOutcome, Error>)?

    init(batch: [PendingWrite], known: Double?, inline: (@Sendable (Database) -> Result<BatchOutcome, Error>)? = nil) {
        self.batch = batch
        self.known = known
        self.inline = inline
    }

    /// Runs the inline transaction on the calling thread (GRDB's synchronous write), marked to
    /// `checkpointer` as relaxed once it holds the file's writer.
    func run(on database: any DatabaseWriter, checkpointer: WALCheckpointer) {
        guard let inline else { return }
        complete(database.writeWithoutTransaction { db in checkpointer.relaxedCommit { inline(db) } })
    }

    /// Called by the writer once the transaction has committed or failed.
    func complete(_ result: Result<BatchOutcome, Error>) {
        let waiter = state.withLock { state in
            guard let waiter = state.waiter else { state.result = result; return nil as CheckedContinuation<Result<BatchOutcome, Error>, Never>? }
            state.waiter = nil
            return waiter
        }
        waiter?.resume(returning: result)
    }

    /// The transaction's outcome, waiting for the writer if it has not run it yet.
    func outcome() async -> Result<BatchOutcome, Error> {
        await withCheckedContinuation { continuation in
            let result = state.withLock { state in
                if state.result == nil { state.waiter = continuation }
                return state.result
            }
            if let result { continuation.resume(returning: result) }
        }
    }
}

/// What a committed batch tells its leader for the actor's and the scheduler's bookkeeping.
struct BatchOutcome: Sendable {
    /// What the pending-work index says for the workspace after the commit.
    var indexed: Double?
    /// The index was moved earlier or confirmed by this commit: the scheduler should look.
    var wake = false
    var exact: PriorityDue?
    var dueSinceExact = PriorityDue.none
    var committed: [@Sendable () -> Void] = []

    init(indexed: Double?) {
        self.indexed = indexed
    }
}

/// Carries a write body's result from the database thread to its awaiting caller.
final class ResultBox<T: Sendable>: Sendable {
    private let value = Mutex<Result<T, Error>?>(nil)
    func set(_ result: Result<T, Error>) { value.withLock { $0 = result } }
    func take() -> Result<T, Error> {
        value.withLock { $0 } ?? .failure(StorageError.io("write produced no result"))
    }
}

/// Why a workspace cannot be served right now. The HTTP layer maps these to problem responses.
public enum WorkspaceError: Error, CustomStringConvertible, Equatable {
    case notFound(String)
    /// `retryAfter`: seconds until the file is tried again (`workspaces.offline_retry_seconds`).
    case offline(WorkspaceID, reason: String, retryAfter: Int)
    case closed(WorkspaceID)
    case shuttingDown
    /// The process has no file descriptor left to open the workspace's file with (its open-file
    /// limit, or the system's): the file itself is fine, and opening it again succeeds once
    /// descriptors are free. `limit` is the process's soft limit, when known.
    case outOfFileDescriptors(WorkspaceID, limit: UInt64?)
    /// The workspace cannot be deleted now: `reason` says why and what to do.
    case busy(WorkspaceID, reason: String)

    public var description: String {
        switch self {
        case .notFound(let id): return "workspace \(id) does not exist"
        case .offline(let id, let reason, _): return "workspace \(id) is offline: \(reason)"
        case .closed(let id): return "workspace \(id) was closed"
        case .shuttingDown: return "the appliance is shutting down"
        case .outOfFileDescriptors(let id, let limit):
            return "workspace \(id) cannot be opened now: the appliance has no file descriptor left"
                + (limit.map { " (its limit is \($0))" } ?? "")
                + "; raise LimitNOFILE in sentinel.service (or `ulimit -n`), or lower workspaces.max_open or server.max_connections"
        case .busy(let id, let reason): return "workspace \(id) cannot be deleted now: \(reason)"
        }
    }
}

extension Database {
    /// GRDB's `inSavepoint` inside the batch's transaction, with its statements prepared once per
    /// connection: GRDB compiles `SAVEPOINT` and `RELEASE` on every call, twice per delivery in a
    /// batch of intake writes. The transaction around it stays GRDB's `inTransaction`, which keeps
    /// statements from running once SQLite has rolled the whole transaction back (a body that
    /// fails with `SQLITE_FULL`, `SQLITE_IOERR`, …).
    func inBatchSavepoint(_ body: () throws -> Void) throws {
        try cachedStatement(sql: "SAVEPOINT batch_write").execute()
        do {
            try body()
        } catch {
            // Undo the body alone; after a rollback of the whole transaction there is no savepoint
            // left, and the caller sees the transaction gone.
            if isInsideTransaction {
                try? cachedStatement(sql: "ROLLBACK TRANSACTION TO SAVEPOINT batch_write").execute()
                try? cachedStatement(sql: "RELEASE SAVEPOINT batch_write").execute()
            }
            throw error
        }
        try cachedStatement(sql: "RELEASE SAVEPOINT batch_write").execute()
    }
}

/// The `PRAGMA synchronous` of a workspace file's one connection. A relaxed batch (the queue's
/// claims and outcomes) commits at NORMAL (the WAL written, no fsync), every other commit and
/// storage maintenance at the file's configured level (FULL by default). SQLite applies this
/// pragma when it compiles it, so each run of it is a parse; it is run only when the next batch
/// needs a level the connection is not at, so a queue's run of relaxed batches, or intake's run
/// of durable ones, switches nothing. Used only by the file's writer (GRDB serialises it), outside
/// a transaction.
final class SynchronousSwitch: Sendable {
    private struct State {
        /// The file's configured level, read from the connection once.
        var configured: Int?
        /// The level the connection is at; nil when unknown (a switch failed).
        var current: Int?
    }
    private let state = Mutex(State())

    /// Puts the connection at the level the next commit needs.
    func prepare(_ db: Database, relaxed: Bool) throws {
        var now = state.withLock { $0 }
        let configured = try now.configured ?? Int.fetchOne(db, sql: "PRAGMA synchronous") ?? 2
        if now.configured == nil { now = State(configured: configured, current: configured) }
        // Only ever relaxes FULL (or EXTRA) to NORMAL; OFF and NORMAL stay as configured.
        let wanted = relaxed && configured > 1 ? 1 : configured
        guard now.current != wanted else { return state.withLock { $0 = now } }
        state.withLock { $0 = State(configured: configured, current: nil) }
        try db.execute(sql: "PRAGMA synchronous = \(wanted)")
        state.withLock { $0 = State(configured: configured, current: wanted) }
    }
}
