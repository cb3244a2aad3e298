import Foundation
import GRDB
import Logging

/// Routes work to workspace actors. Opens workspace files lazily, keeps at most
/// `workspaces.max_open` of them open (least recently used goes first, never one in use), closes
/// idle ones, and takes a missing or corrupt file offline without affecting any other workspace.
public actor Supervisor {
    public nonisolated let dataDirectory: DataDirectory
    public nonisolated let control: ControlStore
    public nonisolated let config: SentinelConfig
    public nonisolated let registry: JobRegistry
    let opener: DatabaseOpener
    let logger: Logger
    let metrics: SentinelMetrics
    private var onWorkDue: @Sendable () -> Void = {}

    private struct Entry {
        let actor: WorkspaceActor
        var lastUsed: ContinuousClock.Instant
        var pins: Int
    }

    private var open: [WorkspaceID: Entry] = [:]
    private var offline: [WorkspaceID: (reason: String, since: ContinuousClock.Instant)] = [:]
    private var shuttingDown = false

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
    func setWorkDueHandler(_ handler: @escaping @Sendable () -> Void) { onWorkDue = handler }

    /// Runs `body` with the workspace's actor, which stays open (pinned) until `body` returns.
    public func withWorkspace<T: Sendable>(_ id: WorkspaceID, _ body: @Sendable (WorkspaceActor) async throws -> T) async throws -> T {
        let actor = try pin(id)
        do {
            let result = try await body(actor)
            unpin(id)
            return result
        } catch {
            unpin(id)
            throw error
        }
    }

    /// Opens (if needed) and pins a workspace. Every `pin` must be balanced by `unpin`.
    public func pin(_ id: WorkspaceID) throws -> WorkspaceActor {
        if shuttingDown { throw WorkspaceError.shuttingDown }
        let now = ContinuousClock.now
        if var entry = open[id] {
            entry.pins += 1
            entry.lastUsed = now
            open[id] = entry
            return entry.actor
        }
        if let down = offline[id], now - down.since < .seconds(config.workspaces.offlineRetrySeconds) {
            throw WorkspaceError.offline(id, reason: down.reason)
        }
        guard try control.workspace(id) != nil else { throw WorkspaceError.notFound(id.rawValue) }
        let actor = try openFile(id)
        offline[id] = nil
        metrics.offlineWorkspaces(offline.count)
        open[id] = Entry(actor: actor, lastUsed: now, pins: 1)
        evictIfNeeded()
        metrics.openWorkspaces(open.count)
        return actor
    }

    public func unpin(_ id: WorkspaceID) {
        guard var entry = open[id] else { return }
        entry.pins = max(0, entry.pins - 1)
        entry.lastUsed = .now
        open[id] = entry
    }

    private func openFile(_ id: WorkspaceID) throws -> WorkspaceActor {
        let url = dataDirectory.workspaceFile(id)
        do {
            let pool = try opener.open(url, kind: .workspace, label: id.rawValue)
            return WorkspaceActor(id: id, pool: pool, control: control, registry: registry, config: config.jobs, onWorkDue: onWorkDue)
        } catch {
            let reason: String
            let kind: String
            switch error {
            case StorageError.missingFile: (reason, kind) = ("its database file is missing", "missing")
            case StorageError.corrupt(let m): (reason, kind) = ("its database file is corrupt (\(m))", "corrupt")
            case let e as DatabaseError: (reason, kind) = ("its database file cannot be opened (\(e.message ?? "\(e.resultCode)"))", "unreadable")
            default: (reason, kind) = ("its database file cannot be opened (\(error))", "unreadable")
            }
            if offline[id] == nil {
                logger.error("workspace offline", metadata: ["workspace_id": "\(id)", "reason": "\(reason)", "file": "\(url.path)"])
                metrics.workspaceOffline(reason: kind)
            }
            offline[id] = (reason, .now)
            metrics.offlineWorkspaces(offline.count)
            throw WorkspaceError.offline(id, reason: reason)
        }
    }

    private func evictIfNeeded() {
        while open.count > config.workspaces.maxOpen {
            guard let victim = open.filter({ $0.value.pins == 0 }).min(by: { $0.value.lastUsed < $1.value.lastUsed }) else {
                return  // everything is in use; go over the limit rather than break running work
            }
            open[victim.key] = nil
            let actor = victim.value.actor
            Task { await actor.close() }
        }
    }

    /// Closes workspaces idle for longer than `workspaces.idle_close_seconds`.
    public func closeIdle(now: ContinuousClock.Instant = .now) async {
        let limit = Duration.seconds(config.workspaces.idleCloseSeconds)
        let idle = open.filter { $0.value.pins == 0 && now - $0.value.lastUsed >= limit }
        for (id, entry) in idle {
            open[id] = nil
            await entry.actor.close()
        }
        if !idle.isEmpty { metrics.openWorkspaces(open.count) }
    }

    public var openWorkspaceIDs: [WorkspaceID] { open.keys.sorted() }
    public var offlineWorkspaceIDs: [WorkspaceID] { offline.keys.sorted() }

    public func offlineReason(_ id: WorkspaceID) -> String? { offline[id]?.reason }

    /// Refuses new work, checkpoints and closes every open file.
    public func shutdown() async {
        shuttingDown = true
        for (_, entry) in open { await entry.actor.close() }
        open.removeAll()
        metrics.openWorkspaces(0)
        _ = try? await control.pool.writeWithoutTransaction { db in _ = try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
    }

    public var isShuttingDown: Bool { shuttingDown }
}
