import Foundation
import GRDB

/// A domain event as written to a workspace's append-only log (SPEC §5).
public struct DomainEvent: Sendable {
    public var type: String
    public var subject: String?
    public var data: Data
    public var correlationID: String?

    public init(type: String, subject: String? = nil, data: Data = Data("{}".utf8), correlationID: String? = nil) {
        self.type = type
        self.subject = subject
        self.data = data
        self.correlationID = correlationID
    }

    public init<T: Encodable>(type: String, subject: String? = nil, payload: T, correlationID: String? = nil) throws {
        self.init(type: type, subject: subject, data: try JSONEncoder.sentinel.encode(payload), correlationID: correlationID)
    }
}

/// A row of the `events` table.
public struct StoredEvent: Sendable, Codable, Equatable, FetchableRecord {
    public static let databaseColumnDecodingStrategy = DatabaseColumnDecodingStrategy.sentinel
    public var seq: Int64
    public var id: String
    public var type: String
    public var occurredAt: String
    public var correlationID: String?
    public var subject: String?
    public var data: String
}

/// The payload of a listener job: which event to react to.
public struct EventListenerPayload: Codable, Sendable, Equatable {
    public var seq: Int64
    public var eventID: String
    public var type: String
}

public enum EventLog {
    /// The events a workspace's audit log shows (the API's `audit`, the console, `sentinel audit
    /// --workspace`): changes people made, each with its `by`, and the few the appliance makes on
    /// their behalf (a plan's soft limit, a review requested).
    public static let auditTypes = [
        "MemberAdded", "MemberRoleChanged", "MemberRemoved", "TeamCreated", "TeamDeleted", "TeamMemberAdded", "TeamMemberRemoved",
        "IntegrationAdded", "IntegrationCredentialsRotated", "IntegrationRemoved", "ProviderAdded", "ProviderKeyRotated", "ProviderEnabled", "ProviderDisabled", "ProviderDeleted",
        "ProviderPriorityChanged",
        "RepositoryEnabled", "RepositoryDisabled", "RepositoryNotEnabled", "PolicyVersionCreated", "AIBudgetChanged",
        "PlanSoftLimitReached", "RunCancelled", "RunRequested",
        "NotificationChannelAdded", "NotificationChannelRemoved", "NotificationChannelTested", "JobRetried", "JobDiscarded",
    ]

    /// Appends inside the caller's transaction and enqueues one job per registered listener, keyed by
    /// event and listener so a listener reacts to an event exactly once.
    ///
    /// Events leave the appliance in the analytics dump, so what is stored is what PostgreSQL's
    /// `jsonb` accepts: control characters other than tab, newline and carriage return are
    /// stripped from the payload's strings (and from subject and correlation id), and a payload
    /// that still would not load (not JSON, an unpaired surrogate, …) is refused.
    /// A coalescing listener gets one queued job however many events arrive before it runs (the
    /// job is keyed by the listener while queued); a listener with a condition gets none while the
    /// condition is false.
    @discardableResult
    public static func append(_ event: DomainEvent, in db: Database, now: Date, listeners: [EventListener]) throws -> (seq: Int64, jobs: [JobRequest]) {
        let data = String(decoding: StoredText.cleanJSON(event.data), as: UTF8.self)
        if let problem = PostgresJSON.problem(in: data) {
            throw StorageError.invalid("event \(event.type) data is not exportable JSON: \(problem)")
        }
        let id = RandomIdentifier.uuid()
        try db.execute(sql: """
            INSERT INTO events (id, type, occurred_at, correlation_id, subject, data) VALUES (?, ?, ?, ?, ?, ?)
            """, arguments: [id, StoredText.singleLine(event.type), ISO8601.string(now), event.correlationID.map(StoredText.singleLine),
                             event.subject.map(StoredText.singleLine), data])
        let seq = db.lastInsertedRowID
        var jobs: [JobRequest] = []
        for listener in listeners {
            if let condition = listener.condition, try !condition(db) { continue }
            let key = listener.coalescing ? EventListenerRegistry.pendingKey(listener.name) : "event:\(id):\(listener.name)"
            jobs.append(try JobRequest(kind: EventListenerRegistry.jobKind(listener.name),
                                       payload: EventListenerPayload(seq: seq, eventID: id, type: event.type),
                                       priority: .low, idempotencyKey: key, correlationID: event.correlationID))
        }
        return (seq, jobs)
    }

    public static func read(after seq: Int64, limit: Int, types: [String]? = nil, in db: Database) throws -> [StoredEvent] {
        if let types, !types.isEmpty {
            let marks = Array(repeating: "?", count: types.count).joined(separator: ",")
            return try StoredEvent.fetchAll(db, sql: "SELECT * FROM events WHERE seq > ? AND type IN (\(marks)) ORDER BY seq LIMIT ?",
                                            arguments: StatementArguments([seq] as [any DatabaseValueConvertible] + types + [limit]))
        }
        return try StoredEvent.fetchAll(db, sql: "SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?", arguments: [seq, limit])
    }

    /// The events about one subject (`run:12`, `provider:prv_…`), oldest first, optionally of
    /// some types only (the `events_subject` index).
    public static func events(subject: String, types: [String]? = nil, limit: Int = 1000, in db: Database) throws -> [StoredEvent] {
        var sql = "SELECT * FROM events WHERE subject = ?"
        var arguments: [any DatabaseValueConvertible] = [subject]
        if let types, !types.isEmpty {
            sql += " AND type IN (\(Array(repeating: "?", count: types.count).joined(separator: ",")))"
            arguments += types as [any DatabaseValueConvertible]
        }
        sql += " ORDER BY seq LIMIT ?"
        arguments.append(limit)
        return try StoredEvent.fetchAll(db, sql: sql, arguments: StatementArguments(arguments))
    }

    public static func event(seq: Int64, in db: Database) throws -> StoredEvent? {
        try StoredEvent.fetchOne(db, sql: "SELECT * FROM events WHERE seq = ?", arguments: [seq])
    }
}

/// A listener of events: a job handler run for the events of the types it listens to.
public struct EventListener: Sendable {
    public var name: String
    /// One job for every event (false), or one queued job for all events until it runs (true): for
    /// a listener that works through the log after a watermark of its own (the rollups), one run
    /// sees every event appended before it, so more jobs would only repeat it.
    public var coalescing: Bool
    /// Checked in the appending transaction: no job while it is false (e.g. no notification
    /// channel in the workspace, so nothing to notify).
    public var condition: (@Sendable (Database) throws -> Bool)?
}

/// Which listeners react to which event types. A listener is a job handler: it runs on the
/// workspace's queue, retried like any job, decoupled from the code that appended the event.
public struct EventListenerRegistry: Sendable {
    private(set) var byType: [String: [EventListener]] = [:]

    public init() {}

    public static func jobKind(_ listener: String) -> String { "listener.\(listener)" }

    /// The idempotency key of a coalescing listener's queued job; the job gives it up when it starts.
    static func pendingKey(_ listener: String) -> String { "listener:\(listener):pending" }

    mutating func add(type: String, listener: EventListener) {
        byType[type, default: []].append(listener)
    }

    public func listeners(for type: String) -> [EventListener] { byType[type] ?? [] }
}

/// The one timestamp format of events, manifests and API responses (UTC, milliseconds).
public enum ISO8601 {
    public static func string(_ date: Date) -> String {
        date.formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
    }

    /// Parses what `string` writes (fractional seconds optional).
    public static func date(_ text: String) -> Date? {
        (try? Date(text, strategy: .iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted)))
            ?? (try? Date(text, strategy: .iso8601))
    }
}
