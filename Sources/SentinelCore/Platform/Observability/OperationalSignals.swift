import Foundation
import GRDB

/// What `sentinel doctor` (offline, in another process) learns from a running server, kept in
/// control.sqlite: webhook deliveries refused for their signature or token, per integration, and
/// AI providers whose circuit is open. Written only when such a thing happens, never per request.
public struct OperationalSignals: Sendable {
    let control: ControlStore

    public init(control: ControlStore) {
        self.control = control
    }

    /// Adds `count` refused deliveries of an integration, the last one at `at`.
    public func recordAuthFailures(_ count: Int, integrationID: IntegrationID, workspaceID: WorkspaceID, at: Date) throws {
        try control.write { db in
            try db.execute(sql: """
                INSERT INTO integration_auth_failures (integration_id, workspace_id, failures, last_failed_at) VALUES (?, ?, ?, ?)
                ON CONFLICT (integration_id) DO UPDATE SET failures = failures + excluded.failures, last_failed_at = excluded.last_failed_at
                """, arguments: [integrationID.rawValue, workspaceID.rawValue, count, at.epoch])
        }
    }

    /// Forgets an integration's refused deliveries: one of its deliveries passed since.
    public func clearAuthFailures(integrationID: IntegrationID) throws {
        try control.write { db in
            try db.execute(sql: "DELETE FROM integration_auth_failures WHERE integration_id = ?", arguments: [integrationID.rawValue])
        }
    }

    /// Refused deliveries recorded for an integration so far.
    public func authFailures(integrationID: IntegrationID) throws -> Int? {
        try control.read { db in
            try Int.fetchOne(db, sql: "SELECT failures FROM integration_auth_failures WHERE integration_id = ?", arguments: [integrationID.rawValue])
        }
    }

    public func circuitOpened(workspaceID: String, providerID: String, at: Date, retryAt: Date) throws {
        try control.write { db in
            try db.execute(sql: """
                INSERT INTO provider_circuits (workspace_id, provider_id, opened_at, retry_at) VALUES (?, ?, ?, ?)
                ON CONFLICT (workspace_id, provider_id) DO UPDATE SET opened_at = excluded.opened_at, retry_at = excluded.retry_at
                """, arguments: [workspaceID, providerID, at.epoch, retryAt.epoch])
        }
    }

    public func circuitClosed(workspaceID: String, providerID: String) throws {
        try control.write { db in
            try db.execute(sql: "DELETE FROM provider_circuits WHERE workspace_id = ? AND provider_id = ?", arguments: [workspaceID, providerID])
        }
    }
}

extension OperationalSignals {
    /// Webhook deliveries of an integration refused for their signature or token.
    public struct RefusedDeliveries: Sendable, Equatable {
        public let integrationID: String
        public let failures: Int
        public let lastFailedAt: Date
    }

    /// An AI provider whose circuit is open until `retryAt`.
    public struct OpenCircuit: Sendable, Equatable {
        public let providerID: String
        public let openedAt: Date
        public let retryAt: Date
    }

    /// A workspace's integrations with refused deliveries, the last within `window` of `now`.
    /// Whether one was accepted since is the caller's to compare (the deliveries are in the workspace file).
    public func refusedDeliveries(workspaceID: WorkspaceID, now: Date = Date(), window: TimeInterval = 7 * 86_400) throws -> [RefusedDeliveries] {
        try control.read { db in
            try Row.fetchAll(db, sql: """
                SELECT * FROM integration_auth_failures WHERE workspace_id = ? AND last_failed_at > ? ORDER BY integration_id
                """, arguments: [workspaceID.rawValue, now.epoch - window]).map {
                RefusedDeliveries(integrationID: $0["integration_id"], failures: $0["failures"],
                                  lastFailedAt: Date(timeIntervalSince1970: $0["last_failed_at"]))
            }
        }
    }

    /// A workspace's AI providers whose circuit is open at `now`.
    public func openCircuits(workspaceID: WorkspaceID, now: Date = Date()) throws -> [OpenCircuit] {
        try control.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM provider_circuits WHERE workspace_id = ? AND retry_at > ? ORDER BY provider_id",
                             arguments: [workspaceID.rawValue, now.epoch]).map {
                OpenCircuit(providerID: $0["provider_id"], openedAt: Date(timeIntervalSince1970: $0["opened_at"]),
                            retryAt: Date(timeIntervalSince1970: $0["retry_at"]))
            }
        }
    }
}

extension OperationalSignals: CircuitJournal {
    public func opened(workspaceID: String, providerID: String, at: Date, retryAt: Date) {
        try? circuitOpened(workspaceID: workspaceID, providerID: providerID, at: at, retryAt: retryAt)
    }

    public func closed(workspaceID: String, providerID: String) {
        try? circuitClosed(workspaceID: workspaceID, providerID: providerID)
    }
}

/// Refused webhook deliveries, counted in memory and written at most every `interval` per
/// integration: a flood of forged deliveries costs one small write per interval, not one per request.
/// `failing` is also told (at most every `eventInterval` per integration, with the count so far):
/// `serve` appends `IntegrationAuthFailing` there for notification channels subscribed to it.
public actor DeliveryAuthFailures {
    private var pending: [IntegrationID: (workspaceID: WorkspaceID, count: Int, lastWrite: ContinuousClock.Instant?)] = [:]
    private var lastEvent: [IntegrationID: ContinuousClock.Instant] = [:]
    let signals: OperationalSignals
    let interval: Duration
    /// Tells that an integration's deliveries are refused; returns whether it was told (a
    /// workspace without a subscribed channel is asked again at the next write, not an hour later).
    let failing: (@Sendable (IntegrationID, WorkspaceID, Int) async -> Bool)?
    let eventInterval: Duration

    public init(signals: OperationalSignals, interval: Duration = .seconds(10), eventInterval: Duration = .seconds(3600),
                failing: (@Sendable (IntegrationID, WorkspaceID, Int) async -> Bool)? = nil) {
        self.signals = signals
        self.interval = interval
        self.eventInterval = eventInterval
        self.failing = failing
    }

    public func record(_ id: IntegrationID, workspaceID: WorkspaceID) async {
        var entry = pending[id] ?? (workspaceID, 0, nil)
        entry.count += 1
        let now = ContinuousClock.now
        var written = 0
        if entry.lastWrite.map({ now - $0 >= interval }) ?? true {
            try? signals.recordAuthFailures(entry.count, integrationID: id, workspaceID: workspaceID, at: Date())
            written = entry.count
            entry.count = 0
            entry.lastWrite = now
        }
        pending[id] = entry
        guard written > 0, let failing, lastEvent[id].map({ now - $0 >= eventInterval }) ?? true else { return }
        if await failing(id, workspaceID, (try? signals.authFailures(integrationID: id)) ?? written) { lastEvent[id] = now }
    }

    /// A delivery of the integration passed its check without being stored (GitHub's ping, which
    /// an admin redelivers once the secret is fixed): its refusals are over. A stored delivery says
    /// so by its `received_at`; a ping left doctor and the console warning "none accepted since".
    public func passed(_ id: IntegrationID) {
        pending[id] = nil
        if (try? signals.authFailures(integrationID: id)) != nil { try? signals.clearAuthFailures(integrationID: id) }
    }
}
