import Foundation
import GRDB
import Logging
import ServiceLifecycle
import Synchronization

/// The shared write-ahead journal of webhook intake (`data/intake-journal.sqlite`).
///
/// A delivery for a workspace whose file is open is stored in that file directly
/// (`DeliveryIntake.store`). One for a workspace whose file is not open would cost a cold open
/// (SQLite parses the workspace schema), its own durable commit and, under LRU churn, the close of
/// another file before the platform got its 202. Such a delivery is appended here instead: one
/// group commit (one fsync under `storage.synchronous: full`) acknowledges the deliveries of every
/// workspace that arrived together, and the 202 follows it. `run()` then applies the journal to the
/// workspace files in the background, all of a workspace's waiting deliveries in one durable commit
/// of its file, and removes them from the journal only after that commit. Deliveries for a
/// workspace keep their order: while the journal holds any for it, new ones go through the journal
/// too (`holdsDeliveries`).
///
/// A delivery lives here only until it is in its workspace file. After a crash or a power cut the
/// journal is applied again at the next start (applying is idempotent: the workspace file ignores a
/// delivery id it holds); a backup of a workspace includes what the journal holds for it
/// (`deliveries(for:in:)`); deleting a workspace discards it here too.
public actor IntakeJournal: Service {
    private nonisolated let database: any DatabaseWriter
    nonisolated let supervisor: Supervisor
    let logger: Logger
    /// Deliveries held per workspace, readable without a hop. A count can dip below zero for a
    /// moment (the applier removed rows before the append that added them counted them).
    private nonisolated let held = Mutex<[WorkspaceID: Int]>([:])
    private nonisolated let wakeups: AsyncStream<Void>
    private nonisolated let wake: AsyncStream<Void>.Continuation
    /// Set when a round left deliveries it could not apply (an offline workspace, a full disk):
    /// they are tried again every `retryInterval`.
    private nonisolated let leftovers = Atomic<Bool>(false)
    /// Set when a delivery with a job is appended: it ends the pause between rounds.
    private nonisolated let withJobArrived = Atomic<Bool>(false)
    let retryInterval: Duration
    /// The least time between the end of one round of applying and the start of the next, for
    /// rounds of settled deliveries only (`workspaces.journal_round_pause_ms`): with 1,000 busy
    /// workspaces and 256 files open, back-to-back rounds applied about three deliveries per cold open.
    let roundPause: Duration
    private nonisolated let acceptedTotal = Atomic<Int>(0)
    /// Deliveries in the journal, for `sentinel_intake_journal_deliveries`.
    private nonisolated let journalled = Atomic<Int>(0)
    let metrics: SentinelMetrics
    /// Workspaces applied at once: `concurrency`, and at most a quarter of `workspaces.max_open`,
    /// so that the files the applier holds open (pinned, beyond the LRU's reach) stay few beside the
    /// LRU's own (the descriptor bound of `docs/reliability.md`).
    let concurrency: Int

    /// Appends waiting for the commit under way, in arrival order, and whether one is under way.
    /// Held in a `Mutex` rather than by the actor: the commit's completion, on the journal's
    /// writer, starts the next batch there at once (`startCommit`).
    private nonisolated let appends = Mutex<(waiting: [Append], committing: Bool)>(([], false))
    /// Workspaces whose deliveries could not be applied, with the reason logged once.
    private var failing: [WorkspaceID: String] = [:]
    /// When the applier's last round ended (`applyPending(pause:)` spaces rounds from it).
    private var lastRoundEnded: ContinuousClock.Instant?

    private struct Append: Sendable {
        let workspaceID: WorkspaceID
        let delivery: IncomingDelivery
        let done: CheckedContinuation<Result<DeliveryIntake.Outcome, any Error>, Never>
    }

    /// One delivery in the journal.
    public struct Entry: Sendable, Equatable {
        public var seq: Int64
        public var workspaceID: WorkspaceID
        public var delivery: IncomingDelivery
    }

    /// Opens (creating it if needed) the journal of `dataDirectory`.
    public init(dataDirectory: DataDirectory, opener: DatabaseOpener, supervisor: Supervisor, logger: Logger,
                metrics: SentinelMetrics = SentinelMetrics(), retryInterval: Duration = .seconds(1), roundPause: Duration = .zero,
                concurrency: Int = 16) throws {
        try Self.createIfMissing(dataDirectory.intakeJournalFile, opener: opener)
        self.database = try opener.open(dataDirectory.intakeJournalFile, kind: .journal, label: "intake-journal")
        self.supervisor = supervisor
        self.logger = logger
        self.metrics = metrics
        self.retryInterval = retryInterval
        self.roundPause = roundPause
        self.concurrency = max(1, min(concurrency, supervisor.config.workspaces.maxOpen / 4))
        (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        let counts = try database.read { db in
            try Row.fetchAll(db, sql: "SELECT workspace_id, count(*) AS n FROM journal GROUP BY workspace_id")
        }
        held.withLock { held in
            for row in counts {
                if let id = WorkspaceID(row["workspace_id"]) { held[id] = row["n"] }
            }
        }
        let total = counts.reduce(0) { $0 + ($1["n"] as Int) }
        journalled.store(total, ordering: .relaxed)
        metrics.intakeJournal(total)
        // What an earlier run acknowledged and did not apply is applied as soon as `run()` starts.
        if !counts.isEmpty { wake.yield() }
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("0001_journal") { db in
            try db.execute(sql: """
                CREATE TABLE journal (
                    seq INTEGER PRIMARY KEY,
                    workspace_id TEXT NOT NULL,
                    delivery_id TEXT NOT NULL,
                    integration_id TEXT NOT NULL,
                    event TEXT NOT NULL,
                    action TEXT,
                    payload BLOB NOT NULL,
                    payload_encoding TEXT NOT NULL,
                    payload_bytes INTEGER,
                    correlation_id TEXT NOT NULL,
                    job_kind TEXT NOT NULL,
                    settled TEXT,
                    received_at REAL NOT NULL,
                    UNIQUE (workspace_id, delivery_id)
                );
                CREATE INDEX journal_workspace ON journal (workspace_id, seq);
                """)
        }
        return m
    }

    // MARK: Intake

    /// Whether the journal holds deliveries for the workspace not yet in its file: a new delivery
    /// for it must go through the journal too, behind them.
    public nonisolated func holdsDeliveries(for id: WorkspaceID) -> Bool { held.withLock { ($0[id] ?? 0) > 0 } }

    /// Deliveries this process acknowledged through the journal.
    public nonisolated var accepted: Int { acceptedTotal.load(ordering: .relaxed) }

    /// Appends a delivery for `workspaceID` and returns once it is durable, batched with the
    /// appends arriving meanwhile into one commit. `.duplicate` when the journal holds the same
    /// delivery id for the workspace already (a redelivery of one already applied is answered
    /// `.accepted` here, and changes nothing when applied).
    public nonisolated func append(_ delivery: IncomingDelivery, for workspaceID: WorkspaceID) async throws -> DeliveryIntake.Outcome {
        let result = await withCheckedContinuation { done in
            let batch = appends.withLock { state -> [Append]? in
                state.waiting.append(Append(workspaceID: workspaceID, delivery: delivery, done: done))
                guard !state.committing else { return nil }
                state.committing = true
                defer { state.waiting.removeAll(keepingCapacity: true) }
                return state.waiting
            }
            if let batch { startCommit(batch) }
        }
        return try result.get()
    }

    /// One transaction for the batch, through GRDB's callback API. Its completion runs on the
    /// journal's writer and queues the batch that gathered meanwhile there at once, before it
    /// answers this batch's appends: a new batch used to wait for its leading append's task to
    /// be scheduled on the cooperative pool and to hop onto this actor, and under load
    /// (1,000 workspaces) each round of the group commit took about 11 ms, of which the
    /// `fdatasync` was half a millisecond.
    private nonisolated func startCommit(_ batch: [Append]) {
        database.asyncWrite({ db in
            let statement = try db.cachedStatement(sql: """
                INSERT OR IGNORE INTO journal (workspace_id, delivery_id, integration_id, event, action, payload, payload_encoding,
                                               payload_bytes, correlation_id, job_kind, settled, received_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
            return try batch.map { append in
                let d = append.delivery
                try statement.execute(arguments: [append.workspaceID.rawValue, d.deliveryID, d.integrationID.rawValue, d.event, d.action,
                                                  d.body.payload, d.body.encoding.rawValue, d.body.bytes, d.correlationID, d.jobKind,
                                                  d.settled, d.receivedAt])
                return db.changesCount == 1 ? DeliveryIntake.Outcome.accepted : .duplicate
            }
        }, completion: { _, result in
            let next = self.appends.withLock { state -> [Append]? in
                guard !state.waiting.isEmpty else {
                    state.committing = false
                    return nil
                }
                defer { state.waiting.removeAll(keepingCapacity: true) }
                return state.waiting
            }
            if let next { self.startCommit(next) }
            if case .success(let outcomes) = result { self.committed(batch, outcomes) }
            for (index, append) in batch.enumerated() {
                append.done.resume(returning: result.map { $0[index] })
            }
        })
    }

    /// Counts what a commit added, before its appends are answered.
    private nonisolated func committed(_ batch: [Append], _ outcomes: [DeliveryIntake.Outcome]) {
        held.withLock { held in
            for (append, outcome) in zip(batch, outcomes) where outcome == .accepted { held[append.workspaceID, default: 0] += 1 }
        }
        let accepted = outcomes.count { $0 == .accepted }
        if zip(batch, outcomes).contains(where: { $1 == .accepted && $0.delivery.settled == nil }) {
            withJobArrived.store(true, ordering: .relaxed)
        }
        acceptedTotal.add(accepted, ordering: .relaxed)
        metrics.intakeJournal(journalled.add(accepted, ordering: .relaxed).newValue)
        wake.yield()
    }

    /// Removes what the journal holds for a deleted workspace (its deliveries go with it).
    public func discard(_ id: WorkspaceID) async throws {
        let removed = try await database.write { db in
            try db.execute(sql: "DELETE FROM journal WHERE workspace_id = ?", arguments: [id.rawValue])
            return db.changesCount
        }
        held.withLock { _ = $0.removeValue(forKey: id) }
        metrics.intakeJournal(journalled.subtract(removed, ordering: .relaxed).newValue)
    }

    // MARK: Applying

    /// Applies the journal to the workspace files whenever deliveries arrive, until the group's
    /// graceful shutdown; then applies what is left once more (the supervisor, started before this
    /// service, stops after it) and returns. What cannot be applied stays for the next start.
    public func run() async throws {
        let interval = retryInterval
        await withDiscardingTaskGroup { group in
            group.addTask {
                while (try? await Task.sleep(for: interval)) != nil {
                    if self.leftovers.load(ordering: .relaxed) { self.wake.yield() }
                }
            }
            for await _ in wakeups.cancelOnGracefulShutdown() {
                await applyPending(pause: roundPause)
            }
            group.cancelAll()
        }
        await applyPending()
    }

    /// Applies everything the journal holds now, each workspace's deliveries in one durable
    /// commit of its file, up to `concurrency` files at once, then removes them from the journal.
    /// A round takes what is waiting (up to `limit` deliveries, read as sequence numbers and
    /// workspaces only), so a backlog makes each open of a file apply more deliveries. Rounds of
    /// deliveries settled at intake (nothing to process) are at least `pause` apart: one that
    /// would start sooner after the last one ended (under sustained load) waits out the rest (a
    /// graceful shutdown ends the wait) and takes what arrived meanwhile too. A delivery with a
    /// job (a review's trigger) is applied at once, with everything waiting: it starts a round or
    /// ends the pause. Deliveries
    /// of a deleted workspace are discarded; those of a workspace that cannot be written now
    /// (offline, a full disk, shutting down) stay. Returns how many went into workspace files.
    /// `run()` calls it; so do tests and tools on a journal whose `run()` is not running.
    @discardableResult
    public func applyPending(limit: Int = 100_000, pause: Duration = .zero) async -> Int {
        leftovers.store(false, ordering: .relaxed)
        var skipped: Set<WorkspaceID> = []
        var after: Int64 = 0
        var appliedTotal = 0
        while true {
            var waiting: [(seq: Int64, workspaceID: String, processed: Bool)]
            do {
                // Reset before the read: a delivery with a job appended from here on is in it (no
                // pause) or ends the pause.
                withJobArrived.store(false, ordering: .relaxed)
                waiting = try await self.waiting(after: after, limit: limit)
                if pause > .zero, let ended = lastRoundEnded, ContinuousClock.now < ended + pause, let lastSeq = waiting.last?.seq,
                   waiting.allSatisfy(\.processed) {
                    try? await cancelOnGracefulShutdown { try await self.pause(until: ended + pause) }
                    if waiting.count < limit { waiting += try await self.waiting(after: lastSeq, limit: limit - waiting.count) }
                }
            } catch {
                logger.error("intake journal unreadable", metadata: ["error": "\(error)"])
                leftovers.store(true, ordering: .relaxed)
                return appliedTotal
            }
            guard let last = waiting.last else { break }
            after = last.seq
            // Each workspace's deliveries up to its last one in this round.
            var workspaces: [WorkspaceID: Int64] = [:]
            var unknown: [Int64] = []
            for (seq, raw, _) in waiting {
                guard let id = WorkspaceID(raw) else { unknown.append(seq); continue }
                if !skipped.contains(id) { workspaces[id] = seq }
            }
            let outcomes = await apply(workspaces)
            lastRoundEnded = .now
            logger.debug("intake journal round", metadata: ["deliveries": "\(waiting.count)", "workspaces": "\(workspaces.count)"])
            if !unknown.isEmpty {
                // Not Sentinel's writing (a row edited by hand): it names no workspace to apply it to.
                logger.error("intake journal: deliveries naming no valid workspace discarded",
                             metadata: ["deliveries": "\(unknown.count)", "seqs": "\(unknown.prefix(10).map(String.init).joined(separator: ","))"])
            }
            var done = unknown
            var doneByWorkspace: [WorkspaceID: Int] = [:]
            for (id, seqs, outcome) in outcomes {
                switch outcome {
                case .success:
                    done += seqs
                    doneByWorkspace[id] = seqs.count
                    appliedTotal += seqs.count
                    if failing.removeValue(forKey: id) != nil {
                        logger.notice("intake journal applies to workspace again", metadata: ["workspace_id": "\(id)"])
                    }
                case .failure(WorkspaceError.notFound):
                    done += seqs
                    doneByWorkspace[id] = seqs.count
                    logger.warning("intake journal: deliveries for a deleted workspace discarded",
                                   metadata: ["workspace_id": "\(id)", "deliveries": "\(seqs.count)"])
                case .failure(let error):
                    skipped.insert(id)
                    leftovers.store(true, ordering: .relaxed)
                    let reason = "\(error)"
                    if failing[id] != reason {
                        failing[id] = reason
                        logger.warning("intake journal cannot apply to workspace yet; kept and retried",
                                       metadata: ["workspace_id": "\(id)", "deliveries": "\(seqs.count)", "error": "\(reason)"])
                    }
                }
            }
            if !done.isEmpty {
                do {
                    try await remove(done)
                    held.withLock { held in
                        for (id, count) in doneByWorkspace {
                            let left = (held[id] ?? 0) - count
                            held[id] = left == 0 ? nil : left
                        }
                    }
                } catch {
                    // Applied but still journalled: applied again later, which changes nothing.
                    logger.error("intake journal: applied deliveries not removed", metadata: ["error": "\(error)"])
                    leftovers.store(true, ordering: .relaxed)
                }
            }
        }
        return appliedTotal
    }

    /// Waits until `deadline`, or until a delivery with a job has been appended since the round's
    /// read began (checked every 20 ms).
    private nonisolated func pause(until deadline: ContinuousClock.Instant) async throws {
        while ContinuousClock.now < deadline, !withJobArrived.load(ordering: .relaxed) {
            try await Task.sleep(until: min(deadline, .now + .milliseconds(20)))
        }
    }

    /// Sequence numbers and workspaces of the deliveries after `seq`, oldest first, and whether
    /// each is already processed (settled at intake: no job to enqueue).
    private func waiting(after seq: Int64, limit: Int) async throws -> [(seq: Int64, workspaceID: String, processed: Bool)] {
        try await database.read { db in
            try Row.fetchAll(db, sql: "SELECT seq, workspace_id, settled IS NOT NULL AS processed FROM journal WHERE seq > ? ORDER BY seq LIMIT ?",
                             arguments: [seq, limit]).map { ($0["seq"], $0["workspace_id"], $0["processed"]) }
        }
    }

    /// For each workspace, its journalled deliveries up to sequence number `through`, read and
    /// applied in one durable commit of its file; `concurrency` workspaces at once. Returns the
    /// sequence numbers each applied (or would have, for a failure).
    private func apply(_ rounds: [WorkspaceID: Int64]) async -> [(WorkspaceID, [Int64], Result<Void, any Error>)] {
        let (supervisor, database) = (self.supervisor, self.database)
        return await withTaskGroup(of: (WorkspaceID, [Int64], Result<Void, any Error>).self) { group in
            var results: [(WorkspaceID, [Int64], Result<Void, any Error>)] = []
            var running = 0
            for (id, through) in rounds {
                if running == concurrency, let finished = await group.next() {
                    results.append(finished)
                    running -= 1
                }
                group.addTask {
                    let entries: [Entry]
                    do {
                        entries = try await database.read { db in
                            try Self.entries(db, sql: "WHERE workspace_id = ? AND seq <= ? ORDER BY seq", arguments: [id.rawValue, through])
                        }
                    } catch {
                        return (id, [], .failure(error))
                    }
                    let deliveries = entries.map(\.delivery)
                    do {
                        try await supervisor.withWorkspace(id) { workspace in
                            try await workspace.write { tx in
                                for delivery in deliveries { _ = try DeliveryIntake.insert(delivery, in: tx.db, now: tx.now) { try tx.enqueue($0) } }
                            }
                        }
                        return (id, entries.map(\.seq), .success(()))
                    } catch {
                        return (id, entries.map(\.seq), .failure(error))
                    }
                }
                running += 1
            }
            for await finished in group { results.append(finished) }
            return results
        }
    }

    /// Removes applied deliveries, in transactions of at most `removalChunk` deliveries: the appends of webhooks arriving
    /// meanwhile queue on the same writer, and one transaction freeing the pages of a whole
    /// round (thousands of bodies after a paused round) held their 202s back for hundreds of
    /// milliseconds.
    private func remove(_ seqs: [Int64]) async throws {
        for start in stride(from: 0, to: seqs.count, by: Self.removalChunk) {
            let chunk = seqs[start..<min(start + Self.removalChunk, seqs.count)]
            let removed = try await database.write { db in
                let statement = try db.cachedStatement(sql: "DELETE FROM journal WHERE seq = ?")
                var removed = 0
                for seq in chunk {
                    try statement.execute(arguments: [seq])
                    removed += db.changesCount
                }
                return removed
            }
            metrics.intakeJournal(journalled.subtract(removed, ordering: .relaxed).newValue)
        }
    }

    static let removalChunk = 256

    /// How many deliveries the journal holds.
    public func count() async throws -> Int {
        try await database.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM journal") ?? 0 }
    }

    /// Deliveries in the journal (oldest first).
    public func entries() async throws -> [Entry] {
        try await database.read { db in try Self.entries(db, sql: "ORDER BY seq", arguments: []) }
    }

    private static func entries(_ db: Database, sql: String, arguments: StatementArguments) throws -> [Entry] {
        try Row.fetchAll(db, sql: """
            SELECT seq, workspace_id, delivery_id, integration_id, event, action, payload, payload_encoding, payload_bytes,
                   correlation_id, job_kind, settled, received_at FROM journal \(sql)
            """, arguments: arguments).compactMap { row in
            guard let workspaceID = WorkspaceID(row["workspace_id"]), let integrationID = IntegrationID(row["integration_id"]),
                  let encoding = DeliveryPayload.Encoding(rawValue: row["payload_encoding"]) else { return nil }
            let stored = DeliveryPayload.Stored(payload: row["payload"], encoding: encoding, bytes: row["payload_bytes"])
            return Entry(seq: row["seq"], workspaceID: workspaceID,
                         delivery: IncomingDelivery(deliveryID: row["delivery_id"], integrationID: integrationID, event: row["event"],
                                                    action: row["action"], stored: stored, correlationID: row["correlation_id"],
                                                    jobKind: row["job_kind"], settled: row["settled"], receivedAt: row["received_at"]))
        }
    }

    /// A new journal is made beside its place and renamed into it once its schema is committed:
    /// a journal without its schema is then never Sentinel's own (emptied by hand, replaced), and is
    /// refused when opened rather than set up anew over the deliveries it had acknowledged.
    static func createIfMissing(_ url: URL, opener: DatabaseOpener) throws {
        guard !FileManager.default.fileExists(atPath: url.path) else { return }
        // A -wal without its journal (the journal moved aside without it): the new journal would
        // take its pages in, and be damaged.
        for suffix in ["-wal", "-shm"] where FileManager.default.fileExists(atPath: url.path + suffix) {
            throw StorageError.conflict(missingBesideLog(url, suffix))
        }
        let temp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).new")
        for suffix in ["", "-wal", "-shm", "-journal"] { try FileSystem.removeIfPresent(URL(fileURLWithPath: temp.path + suffix)) }
        let made = try opener.open(temp, kind: .journal, create: true, label: "intake-journal")
        // Closing checkpoints the log into the file and removes it: the file stands alone.
        try made.close()
        FileSystem.sync(temp)
        guard rename(temp.path, url.path) == 0 else {
            throw StorageError.io("cannot move the new intake journal \(temp.path) into place: \(String(cString: strerror(errno)))")
        }
        FileSystem.sync(url.deletingLastPathComponent())
    }

    /// What a journal's -wal (or -shm) found without the journal is told.
    public static func missingBesideLog(_ url: URL, _ suffix: String = "-wal") -> String {
        "\(url.lastPathComponent)\(suffix) is there without \(url.lastPathComponent) (moved aside without it?): move it beside the "
            + "journal it belongs to (with the -shm), then start again"
    }

    // MARK: Backups

    /// The deliveries the journal of `dataDirectory` holds for a workspace (none when there is no
    /// journal), read beside a running server: a backup of the workspace applies them to its copy.
    public static func deliveries(for id: WorkspaceID, in dataDirectory: DataDirectory, busyTimeout: TimeInterval = 5) throws -> [IncomingDelivery] {
        let url = dataDirectory.intakeJournalFile
        guard FileManager.default.fileExists(atPath: url.path) else {
            // Its -wal without it (moved aside without it): deliveries acknowledged may be in it.
            if FileManager.default.fileExists(atPath: url.path + "-wal") { throw StorageError.corrupt(missingBesideLog(url)) }
            return []
        }
        if let problem = DatabaseOpener.emptiedBesideLog(url) { throw StorageError.corrupt(DatabaseOpener.journalDamagedMessage(url, problem)) }
        let queue = try SchemaState.readOnlyQueue(url, busyTimeout: busyTimeout)
        defer { try? queue.close() }
        return try queue.read { db in
            // A journal without its table is damaged (serve refuses it): said, not taken for an empty one.
            guard try db.tableExists("journal") else {
                throw StorageError.corrupt(DatabaseOpener.journalDamagedMessage(url, "holds no journal table (emptied or replaced)"))
            }
            return try entries(db, sql: "WHERE workspace_id = ? ORDER BY seq", arguments: [id.rawValue]).map(\.delivery)
        }
    }

    /// Applies deliveries to a workspace database outside a running server (a backup's copy).
    static func apply(_ deliveries: [IncomingDelivery], to db: Database, maxAttempts: Int) throws {
        let now = Date()
        for delivery in deliveries {
            _ = try DeliveryIntake.insert(delivery, in: db, now: now) { request in
                _ = try JobQueue.enqueue(request, in: db, now: now, defaultMaxAttempts: maxAttempts)
            }
        }
    }
}
