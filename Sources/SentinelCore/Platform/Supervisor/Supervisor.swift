import Foundation
import GRDB
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// Routes work to workspace actors. Opens workspace files lazily, keeps at most
/// `workspaces.max_open` of them open (least recently used goes first, never one in use), closes
/// idle ones, and takes a missing, corrupt or too new file (or one whose migration failed) offline
/// without affecting any other workspace.
///
/// As a `Service` it owns the files' lifetime: run it first in the `ServiceGroup`, so that it stops
/// last; on graceful shutdown (or cancellation) it refuses new work, checkpoints and closes every
/// open file.
public actor Supervisor: Service {
    public nonisolated let dataDirectory: DataDirectory
    public nonisolated let control: ControlStore
    public nonisolated let config: SentinelConfig
    public nonisolated let registry: JobRegistry
    let opener: DatabaseOpener
    let logger: Logger
    let metrics: SentinelMetrics
    /// Wakes the scheduler when a workspace commits due work. Every actor calls through this one
    /// relay, so a file opened before the scheduler started (by a webhook, at start) wakes it too.
    private nonisolated let workDue = WorkDueRelay()
    /// What is due in which workspace, by priority: kept by the workspace actors, read by the scheduler.
    nonisolated let pendingIndex = PendingIndex()

    private struct Entry {
        let actor: WorkspaceActor
        var lastUsed: ContinuousClock.Instant
        var pins: Int
        /// The idle spell that began when its last pin went (0 while it has not been idle yet).
        var idleSpell: UInt64 = 0
    }

    private var open: [WorkspaceID: Entry] = [:]
    /// The keys of `open`, readable without a hop (`isOpen`: webhook intake asks on every
    /// delivery); changed wherever a file enters or leaves `open`.
    private nonisolated let openIDs = Mutex<Set<WorkspaceID>>([])
    /// The eviction order: workspaces in the order their last pin went, least recently used first,
    /// each with the idle spell that began then. An entry pinned, closed or idle again since keeps
    /// its old position here until eviction reaches it and skips it (its spell no longer matches),
    /// so touching a workspace costs one append, and finding the victim no scan of `open`.
    private var idleOrder = CircularBuffer<(id: WorkspaceID, spell: UInt64)>()
    private var lastSpell: UInt64 = 0
    /// Files being opened right now, with the callers waiting for each. The first caller opens the
    /// file off the actor, so cold opens of different workspaces proceed in parallel; a second
    /// caller for the same workspace waits for that open instead of starting another.
    private var opening: [WorkspaceID: [CheckedContinuation<Result<Void, Error>, Never>]] = [:]
    private var offline: [WorkspaceID: (reason: String, since: ContinuousClock.Instant)] = [:]
    /// When a shortage of file descriptors was last logged (at most one line per 10 s of it).
    private var lastDescriptorShortageLog: ContinuousClock.Instant?
    /// Workspaces found in control.sqlite by an earlier open: opened again (under LRU churn, again
    /// and again) without reading their row. `deleteWorkspace` takes a workspace out.
    private var registered: Set<WorkspaceID> = []
    /// How many opens read their workspace's row in control.sqlite (for tests).
    private(set) var registrationReads = 0
    private var shuttingDown = false
    /// Workspaces being deleted (or deleted) while this process runs: never opened again.
    /// Readable without a hop (`isRetired`): the scheduler asks before claiming on a pin it holds.
    private nonisolated let retired = Mutex<Set<WorkspaceID>>([])
    /// `deleteWorkspace` calls waiting for a workspace's last pin to go.
    private var unpinWaiters: [WorkspaceID: [CheckedContinuation<Void, Never>]] = [:]
    /// Evicted files for `run()` to close; nil while it is not running (they are closed inline).
    private var evicted: AsyncStream<WorkspaceActor>.Continuation?
    /// Evicted files handed to `run()` and not closed yet. Each still holds its three descriptors;
    /// at `closeLimit` the caller that evicts another closes it itself, so files being closed stay
    /// few however fast the LRU churns (the descriptor budget of `appliance/INSTALL.md`).
    private var closing = 0
    /// The most files `run()` was closing at once (for tests).
    private(set) var closingPeak = 0
    /// `workspaces.max_open / 16`, at least 1: 16 at the default 256.
    var closeLimit: Int { max(1, config.workspaces.maxOpen / 16) }
    /// Whether `run()` is running and closes evicted files (for tests).
    var closesInBackground: Bool { evicted != nil }

    public init(dataDirectory: DataDirectory, control: ControlStore, config: SentinelConfig, registry: JobRegistry,
                logger: Logger, metrics: SentinelMetrics = SentinelMetrics()) {
        self.dataDirectory = dataDirectory
        self.control = control
        self.config = config
        self.registry = registry
        self.opener = DatabaseOpener(config: config)
        self.logger = logger
        self.metrics = metrics
    }

    /// Called by the scheduler so that new due work wakes it immediately.
    /// Workspaces already open call it from then on as well.
    nonisolated func setWorkDueHandler(_ handler: @escaping @Sendable () -> Void) { workDue.set(handler) }

    /// Runs `body` with the workspace's actor, which stays open (pinned) until `body` returns.
    public func withWorkspace<T: Sendable>(_ id: WorkspaceID, _ body: @Sendable (WorkspaceActor) async throws -> T) async throws -> T {
        let actor = try await pin(id)
        do {
            let result = try await body(actor)
            await unpin(id)
            return result
        } catch {
            await unpin(id)
            throw error
        }
    }

    /// Closes the files evicted from the LRU until the group's graceful shutdown (or
    /// cancellation), then closes every open file.
    ///
    /// An evicted file is closed here, beside the work that evicted it: closing may checkpoint and
    /// fsync the file (when its log is longer than `WALCheckpointer.keptOnEviction` pages), and the
    /// caller that opened another workspace does not wait for that.
    public func run() async throws {
        let (victims, evicted) = AsyncStream.makeStream(of: WorkspaceActor.self)
        self.evicted = evicted
        await withDiscardingTaskGroup { group in
            group.addTask {
                try? await gracefulShutdown()
                evicted.finish()
            }
            for await actor in victims {
                group.addTask {
                    await actor.close(.checkpointUnlessShort)
                    await self.closed()
                }
            }
        }
        self.evicted = nil
        await shutdown()
    }

    /// Opens (if needed) and pins a workspace. Every `pin` must be balanced by `unpin`.
    public func pin(_ id: WorkspaceID) async throws -> WorkspaceActor {
        if shuttingDown { throw WorkspaceError.shuttingDown }
        if isRetired(id) { throw WorkspaceError.notFound(id.rawValue) }
        if let actor = pinIfOpen(id) { return actor }
        let retry = Duration.seconds(config.workspaces.offlineRetrySeconds)
        if let down = offline[id], ContinuousClock.now - down.since < retry {
            let left = retry - (ContinuousClock.now - down.since)
            throw WorkspaceError.offline(id, reason: down.reason, retryAfter: max(1, Int(left.components.seconds) + 1))
        }
        if opening[id] != nil {
            // Another caller is opening this file: wait for its outcome, then look again (it is
            // open, or offline, or the opener was cancelled and this caller opens it).
            try await withCheckedContinuation { opening[id, default: []].append($0) }.get()
            return try await pin(id)
        }
        opening[id] = []
        let (dataDirectory, control, opener, registry, jobs, workDue, pendingIndex, metrics)
            = (dataDirectory, control, opener, registry, config.jobs, workDue, pendingIndex, metrics)
        let isRegistered = registered.contains(id)
        if !isRegistered { registrationReads += 1 }
        let actor: WorkspaceActor
        do {
            // Opening blocks (file I/O, migrations, a read of control.sqlite): it runs on NIO's
            // blocking-work threads, never on the cooperative pool, whose threads GRDB's own
            // queues need in order to make progress.
            actor = try await NIOThreadPool.singleton.runIfActive {
                guard try isRegistered || control.workspace(id) != nil else { throw WorkspaceError.notFound(id.rawValue) }
                let database = try Self.openFile(id, dataDirectory: dataDirectory, opener: opener)
                return WorkspaceActor(id: id, database: database, control: control, registry: registry, config: jobs, onWorkDue: { workDue.fire() },
                                      pendingIndex: pendingIndex, metrics: metrics)
            }
        } catch {
            let failure = (error as? OpenFailure).map { markOffline(id, $0) } ?? error
            if case WorkspaceError.outOfFileDescriptors = failure, lastDescriptorShortageLog.map({ .now - $0 > .seconds(10) }) ?? true {
                lastDescriptorShortageLog = .now
                logger.error("workspace file cannot be opened: no file descriptor left", metadata: ["workspace_id": "\(id)", "error": "\(failure)"])
            }
            // This caller's cancellation is not the others': they try again.
            finishOpening(id, with: error is CancellationError ? .success(()) : .failure(failure))
            throw failure
        }
        // Deleted (`deleteWorkspace` waits for this open to end) or shutting down meanwhile.
        if isRetired(id) || shuttingDown {
            await actor.close()
            finishOpening(id, with: .success(()))
            throw isRetired(id) ? WorkspaceError.notFound(id.rawValue) : WorkspaceError.shuttingDown
        }
        offline[id] = nil
        metrics.offlineWorkspaces(offline.count)
        registered.insert(id)
        open[id] = Entry(actor: actor, lastUsed: .now, pins: 1)
        openIDs.withLock { _ = $0.insert(id) }
        metrics.workspaceOpened()
        finishOpening(id, with: .success(()))
        await evictIfNeeded()
        return actor
    }

    /// Whether the workspace is being deleted (or was) while this process runs: it is not opened
    /// again, and no new work starts in it.
    public nonisolated func isRetired(_ id: WorkspaceID) -> Bool { retired.withLock { $0.contains(id) } }

    /// Whether the workspace's file is open right now (pinned or idle in the LRU), without a hop.
    public nonisolated func isOpen(_ id: WorkspaceID) -> Bool { openIDs.withLock { $0.contains(id) } }

    /// Ends an open: the callers waiting for it look again (success) or get its error.
    private func finishOpening(_ id: WorkspaceID, with outcome: Result<Void, Error>) {
        for waiter in opening.removeValue(forKey: id) ?? [] { waiter.resume(returning: outcome) }
    }

    private func pinIfOpen(_ id: WorkspaceID) -> WorkspaceActor? {
        guard var entry = open[id] else { return nil }
        entry.pins += 1
        entry.lastUsed = .now
        open[id] = entry
        return entry.actor
    }

    /// Balances a `pin`. If more files are open than allowed because everything was in use, this
    /// shrinks back now that something is not.
    public func unpin(_ id: WorkspaceID) async {
        guard var entry = open[id] else { return }
        entry.pins = max(0, entry.pins - 1)
        entry.lastUsed = .now
        if entry.pins == 0 {
            lastSpell += 1
            entry.idleSpell = lastSpell
            idleOrder.append((id, lastSpell))
        }
        open[id] = entry
        if entry.pins == 0, let waiters = unpinWaiters.removeValue(forKey: id) {
            for waiter in waiters { waiter.resume() }
        }
        if open.count > config.workspaces.maxOpen {
            await evictIfNeeded()
        } else if idleOrder.count > 2 * open.count + 64 {
            // Mostly stale positions (the same few workspaces touched again and again): keep the live ones.
            idleOrder = CircularBuffer(idleOrder.lazy.filter { self.isIdle($0.id, since: $0.spell) })
        }
    }

    /// Whether the workspace is open, unpinned, and idle since the spell `spell` began.
    private func isIdle(_ id: WorkspaceID, since spell: UInt64) -> Bool {
        guard let entry = open[id] else { return false }
        return entry.pins == 0 && entry.idleSpell == spell
    }

    /// Why a file could not be opened, in words for the 503 and a kind for the metric.
    struct OpenFailure: Error {
        let reason: String
        let kind: String
        let path: String
    }

    private static func openFile(_ id: WorkspaceID, dataDirectory: DataDirectory, opener: DatabaseOpener) throws -> any DatabaseWriter {
        let url = dataDirectory.workspaceFile(id)
        do {
            return try opener.open(url, kind: .workspace, label: id.rawValue)
        } catch {
            // One Sentinel's user may not open (a command run as root made it) is not damaged.
            if let (problem, paths) = DataDirectory.databaseAccessProblem(url) {
                throw OpenFailure(reason: "its database file cannot be opened: \(problem); give it to the user Sentinel runs as "
                                  + "(chown sentinel:sentinel \(paths)); it is not damaged: do not restore it", kind: "unreadable", path: url.path)
            }
            switch error {
            case StorageError.missingFile: throw OpenFailure(reason: "its database file is missing", kind: "missing", path: url.path)
            case StorageError.corrupt(let m): throw OpenFailure(reason: "its database file is corrupt (\(m))", kind: "corrupt", path: url.path)
            case StorageError.newerSchema(let m): throw OpenFailure(reason: "its database file is newer than this binary: \(m)", kind: "newer_schema", path: url.path)
            case StorageError.migrationFailed(let m): throw OpenFailure(reason: "its database file could not be migrated: \(m)", kind: "migration_failed", path: url.path)
            case StorageError.io where FileDescriptorLimit.isExhausted(), is DatabaseError where FileDescriptorLimit.isExhausted():
                // Not the file's fault: it opens again once descriptors are free, so it is not taken offline.
                throw WorkspaceError.outOfFileDescriptors(id, limit: FileDescriptorLimit.current()?.soft)
            case StorageError.io(let m): throw OpenFailure(reason: "its database file cannot be opened (\(m))", kind: "unreadable", path: url.path)
            case let e as DatabaseError:
                throw OpenFailure(reason: "its database file cannot be opened (\(e.message ?? "\(e.resultCode)"))", kind: "unreadable", path: url.path)
            default: throw OpenFailure(reason: "its database file cannot be opened (\(error))", kind: "unreadable", path: url.path)
            }
        }
    }

    private func markOffline(_ id: WorkspaceID, _ failure: OpenFailure) -> WorkspaceError {
        if offline[id] == nil {
            logger.error("workspace offline", metadata: ["workspace_id": "\(id)", "reason": "\(failure.reason)", "file": "\(failure.path)"])
            metrics.workspaceOffline(reason: failure.kind)
        }
        offline[id] = (failure.reason, .now)
        metrics.offlineWorkspaces(offline.count)
        return WorkspaceError.offline(id, reason: failure.reason, retryAfter: max(1, Int(config.workspaces.offlineRetrySeconds.rounded(.up))))
    }

    /// Closes least recently used idle files until at most `workspaces.max_open` are open. Each
    /// leaves `open` before it is closed, so nothing pins a closing file (a later `pin` of the same
    /// workspace opens a new connection beside it). `run()` closes them while it runs; otherwise
    /// (administrative code without a service group) the close is awaited here.
    private func evictIfNeeded() async {
        var victims: [WorkspaceActor] = []
        // When `idleOrder` runs out, everything is in use: go over the limit rather than break
        // running work (the next `unpin` evicts).
        while open.count > config.workspaces.maxOpen, let next = idleOrder.popFirst() {
            guard isIdle(next.id, since: next.spell), let entry = open.removeValue(forKey: next.id) else { continue }
            openIDs.withLock { _ = $0.remove(next.id) }
            victims.append(entry.actor)
        }
        metrics.openWorkspaces(open.count)
        if !victims.isEmpty { metrics.workspacesEvicted(victims.count, reason: "lru") }
        for actor in victims {
            if closing < closeLimit, let evicted, case .enqueued = evicted.yield(actor) {
                closing += 1
                closingPeak = max(closingPeak, closing)
                continue
            }
            await actor.close(.checkpointUnlessShort)
        }
    }

    /// A file handed to `run()` is closed.
    private func closed() { closing -= 1 }

    /// Samples jobs by priority and state over the open workspace files into
    /// `sentinel_job_queue_depth` (a file that is not open is not read: sampling never opens one).
    public func sampleQueueDepth() async {
        var totals: [JobPriority: [JobState: Int]] = [:]
        for (_, entry) in open {
            let rows = (try? await entry.actor.read { db in
                try Row.fetchAll(db, sql: "SELECT priority, state, count(*) AS n FROM jobs WHERE state IN ('queued', 'running', 'dead') GROUP BY priority, state")
                    .map { (Int($0["priority"] as Int64), $0["state"] as String, Int($0["n"] as Int64)) }
            }) ?? []
            for (priority, state, n) in rows {
                guard let p = JobPriority(rawValue: priority), let st = JobState(rawValue: state) else { continue }
                totals[p, default: [:]][st, default: 0] += n
            }
        }
        metrics.queueDepth(totals)
    }

    /// Closes workspaces idle for longer than `workspaces.idle_close_seconds`.
    public func closeIdle(now: ContinuousClock.Instant = .now) async {
        let limit = Duration.seconds(config.workspaces.idleCloseSeconds)
        let idle = open.filter { $0.value.pins == 0 && now - $0.value.lastUsed >= limit }
        for (id, entry) in idle {
            open[id] = nil
            openIDs.withLock { _ = $0.remove(id) }
            await entry.actor.close()
        }
        if !idle.isEmpty {
            metrics.openWorkspaces(open.count)
            metrics.workspacesEvicted(idle.count, reason: "idle")
        }
    }

    /// Deletes a workspace while serving (`WorkspaceService.delete`, whose final backup and
    /// removal follow). From the call on, the workspace is never opened again (callers get
    /// `notFound`); work already inside it (pinned: a request, a running job) finishes first, then
    /// the file is closed, and only then backed up and removed. Work still running after
    /// `deleteWaitLimit` (10 s) leaves the workspace as it was, served again, and throws `busy`.
    public func deleteWorkspace(_ id: WorkspaceID, using service: WorkspaceService, by actor: String) async throws -> WorkspaceDeletion {
        guard try control.workspace(id) != nil, !isRetired(id) else { throw WorkspaceError.notFound(id.rawValue) }
        retired.withLock { _ = $0.insert(id) }
        registered.remove(id)
        // An open under way sees the workspace retired when it ends, and closes what it opened.
        if opening[id] != nil { _ = await withCheckedContinuation { opening[id, default: []].append($0) } }
        // Work running inside it (a review) is waited for, but not for ever: waited for without a
        // limit, a review of a minute held the request, and a SIGTERM meanwhile was not obeyed
        // within `shutdown.drain_seconds` (the HTTP server waits for its requests before the
        // scheduler is asked to stop). Past the limit nothing is deleted and the caller is told.
        let deadline = ContinuousClock.now + deleteWaitLimit
        while let entry = open[id], entry.pins > 0 {
            guard ContinuousClock.now < deadline else {
                retired.withLock { _ = $0.remove(id) }
                throw WorkspaceError.busy(id, reason: "work is running inside it (a review or another job); nothing was deleted; "
                                          + "try again when it has ended (sentinel jobs list --workspace \(id) --state running)")
            }
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await self.waitForUnpin(id) }
                group.addTask {
                    guard (try? await Task.sleep(until: deadline)) != nil else { return }
                    await self.wakeDeleteWaiters(id)
                }
                await group.next()
                group.cancelAll()
                await self.wakeDeleteWaiters(id)
            }
        }
        if let entry = open.removeValue(forKey: id) {
            openIDs.withLock { _ = $0.remove(id) }
            await entry.actor.close()
        }
        metrics.openWorkspaces(open.count)
        offline[id] = nil
        metrics.offlineWorkspaces(offline.count)
        do {
            return try await NIOThreadPool.singleton.runIfActive { try service.delete(id, by: actor) }
        } catch {
            // Nothing was removed (the backup comes first) or the control rows are gone: serve it
            // again only in the first case.
            if (try? control.workspace(id)) != nil { retired.withLock { _ = $0.remove(id) } }
            throw error
        }
    }

    /// Checkpoints and truncates the WAL of control.sqlite and of each idle open workspace file
    /// when it is over `storage.wal_max_bytes` (a long reader, such as a backup, lets a WAL grow
    /// past SQLite's automatic checkpoints), and reports WAL sizes as `sentinel_storage_wal_bytes`
    /// (`file`: `control`, or `workspace_largest` for the largest open workspace's WAL).
    public func checkpointLargeWALs() async {
        let limit = Int64(config.storage.walMaxBytes)
        let control = self.control
        var controlWAL = Retention.walBytes(of: dataDirectory.controlFile)
        if controlWAL > limit {
            try? await NIOThreadPool.singleton.runIfActive { try control.checkpoint() }
            controlWAL = Retention.walBytes(of: dataDirectory.controlFile)
        }
        var largest: Int64 = 0
        for (id, entry) in open {
            var wal = Retention.walBytes(of: dataDirectory.workspaceFile(id))
            if wal > limit, entry.pins == 0, let actor = pinIfOpen(id) {
                _ = try? await actor.truncateWAL()
                await unpin(id)
                wal = Retention.walBytes(of: dataDirectory.workspaceFile(id))
            }
            largest = max(largest, wal)
        }
        metrics.walBytes(file: "control", controlWAL)
        metrics.walBytes(file: "workspace_largest", largest)
    }

    /// Whether a `deleteWorkspace` is waiting for work inside the workspace to finish.
    public func isWaitingToDelete(_ id: WorkspaceID) -> Bool { unpinWaiters[id]?.isEmpty == false }

    /// How long `deleteWorkspace` waits for work running inside the workspace.
    private(set) var deleteWaitLimit: Duration = .seconds(10)

    /// For tests: a shorter wait than a review's.
    public func setDeleteWaitLimit(_ limit: Duration) { deleteWaitLimit = limit }

    private func waitForUnpin(_ id: WorkspaceID) async {
        await withCheckedContinuation { unpinWaiters[id, default: []].append($0) }
    }

    /// Ends the waits for `id`'s work (its limit passed, or the wait is over): the waiter looks again.
    private func wakeDeleteWaiters(_ id: WorkspaceID) {
        for waiter in unpinWaiters.removeValue(forKey: id) ?? [] { waiter.resume() }
    }

    public var openWorkspaceIDs: [WorkspaceID] { open.keys.sorted() }
    public var offlineWorkspaceIDs: [WorkspaceID] { offline.keys.sorted() }

    public func offlineReason(_ id: WorkspaceID) -> String? { offline[id]?.reason }

    /// Refuses new work, checkpoints and closes every open file. `run()` calls it when the group
    /// stops; administrative code without a group calls it directly.
    public func shutdown() async {
        shuttingDown = true
        let closing = open.values.map(\.actor)
        open.removeAll()
        openIDs.withLock { $0.removeAll() }
        metrics.openWorkspaces(0)
        for actor in closing { await actor.close() }
        let control = self.control
        try? await NIOThreadPool.singleton.runIfActive { try control.checkpoint() }
    }

    public var isShuttingDown: Bool { shuttingDown }
}

/// The scheduler's wake-up, set once it runs; until then a due commit wakes nobody (the
/// scheduler's first round looks at everything due anyway).
final class WorkDueRelay: Sendable {
    /// The closure lives in a struct: stored directly as a generic lock's value, it would be
    /// handed to each `withLock` body re-abstracted through `inout` and written back wrapped in
    /// two more thunks, a chain that grew with every commit (`StoredHandlerTests`).
    private struct Handler: Sendable { let wake: @Sendable () -> Void }
    private let handler = Mutex<Handler?>(nil)

    func set(_ wake: @escaping @Sendable () -> Void) { handler.withLock { $0 = Handler(wake: wake) } }

    func fire() { handler.withLock { $0 }?.wake() }
}
