import Foundation
import GRDB

/// Priority classes of SPEC §4, highest first. Lower raw value runs first.
public enum JobPriority: Int, Sendable, Codable, CaseIterable, CustomStringConvertible {
    /// Delivery processing, posting results, reviews a person asked for.
    case critical = 0
    /// Review runs started by webhooks and the catch-up sweep.
    case normal = 1
    /// Rollups, notifications.
    case low = 2
    /// Export, retention.
    case bulk = 3

    /// `low` and `bulk`: work nobody waits for, which leaves a quarter (rounded up) of its
    /// workspace's slots, and of the appliance's, to the rest (`JobScheduler.backgroundSlots(of:)`).
    public var isBackground: Bool { rawValue >= JobPriority.low.rawValue }

    public var description: String {
        switch self {
        case .critical: return "critical"
        case .normal: return "normal"
        case .low: return "low"
        case .bulk: return "bulk"
        }
    }
}

public enum JobState: String, Sendable, Codable, CaseIterable {
    case queued, running, succeeded, dead, cancelled
}

/// What a caller asks to be done later. `idempotencyKey` makes enqueueing the same logical work
/// twice a no-op; the database enforces it with a unique index.
public struct JobRequest: Sendable {
    public var kind: String
    public var payload: Data
    public var priority: JobPriority
    public var runAt: Date?
    public var idempotencyKey: String?
    public var correlationID: String?
    public var maxAttempts: Int?

    public init(kind: String, payload: Data = Data("{}".utf8), priority: JobPriority = .normal, runAt: Date? = nil,
                idempotencyKey: String? = nil, correlationID: String? = nil, maxAttempts: Int? = nil) {
        self.kind = kind
        self.payload = payload
        self.priority = priority
        self.runAt = runAt
        self.idempotencyKey = idempotencyKey
        self.correlationID = correlationID
        self.maxAttempts = maxAttempts
    }

    public init<P: Encodable>(kind: String, payload: P, priority: JobPriority = .normal, runAt: Date? = nil,
                              idempotencyKey: String? = nil, correlationID: String? = nil, maxAttempts: Int? = nil) throws {
        self.init(kind: kind, payload: try JSONEncoder.sentinel.encode(payload), priority: priority, runAt: runAt,
                  idempotencyKey: idempotencyKey, correlationID: correlationID, maxAttempts: maxAttempts)
    }
}

/// A row of the `jobs` table.
public struct JobRecord: Sendable, Codable, Equatable, FetchableRecord, TableRecord {
    public static let databaseTableName = "jobs"
    public static let databaseColumnDecodingStrategy = DatabaseColumnDecodingStrategy.sentinel

    public var id: Int64
    public var kind: String
    public var payload: Data
    public var priority: Int
    public var state: JobState
    public var attempts: Int
    public var maxAttempts: Int
    public var runAt: Double
    public var leaseOwner: String?
    public var leaseExpiresAt: Double?
    public var idempotencyKey: String?
    public var correlationID: String?
    /// The W3C `traceparent` of the span that enqueued the job: its run continues that trace.
    public var traceContext: String?
    public var lastError: String?
    public var createdAt: Double
    public var startedAt: Double?
    public var finishedAt: Double?

    public var jobPriority: JobPriority { JobPriority(rawValue: priority) ?? .normal }

    /// Read by column name, without `Decodable`: every claim decodes its jobs, and the keyed
    /// decoding container (a key table built per row, each column name converted from snake case)
    /// cost more than the rest of the claim (`perf`, `sentinel-bench jobs`).
    public init(row: Row) throws {
        id = try row.decode(forColumn: "id")
        kind = try row.decode(forColumn: "kind")
        payload = try row.decode(forColumn: "payload")
        priority = try row.decode(forColumn: "priority")
        state = try row.decode(forColumn: "state")
        attempts = try row.decode(forColumn: "attempts")
        maxAttempts = try row.decode(forColumn: "max_attempts")
        runAt = try row.decode(forColumn: "run_at")
        leaseOwner = try row.decode(forColumn: "lease_owner")
        leaseExpiresAt = try row.decode(forColumn: "lease_expires_at")
        idempotencyKey = try row.decode(forColumn: "idempotency_key")
        correlationID = try row.decode(forColumn: "correlation_id")
        traceContext = try row.decode(forColumn: "trace_context")
        lastError = try row.decode(forColumn: "last_error")
        createdAt = try row.decode(forColumn: "created_at")
        startedAt = try row.decode(forColumn: "started_at")
        finishedAt = try row.decode(forColumn: "finished_at")
    }

    public func decodePayload<P: Decodable>(_ type: P.Type) throws -> P {
        try JSONDecoder.sentinel.decode(type, from: payload)
    }
}

extension JobState: DatabaseValueConvertible {}

public enum EnqueueResult: Sendable, Equatable {
    case created(Int64)
    /// A job with the same idempotency key already exists; its id.
    case duplicate(Int64)

    public var jobID: Int64 {
        switch self { case .created(let id), .duplicate(let id): return id }
    }
}

/// How a handler's attempt ended.
public enum JobOutcome: Sendable, Equatable {
    case succeeded
    case failed(message: String, retryAfter: TimeInterval?, permanent: Bool)
    /// Given back without counting the attempt (shutdown).
    case released
    /// Not ready to run yet: queued again `after` seconds from now, the attempt not counted.
    case postponed(message: String, after: TimeInterval)
}

/// Errors a job handler throws to steer the queue. Any other error is retried with backoff.
public enum JobFailure: Error, CustomStringConvertible {
    /// Retry no earlier than this many seconds from now (a `Retry-After`).
    case retryAfter(TimeInterval, String)
    /// Retrying cannot help: the job becomes dead now, visibly.
    case permanent(String)
    /// What the job needs is not ready yet (another system is still preparing it): run again in
    /// this many seconds, the attempt not counted. The handler bounds how long it waits so.
    case postpone(TimeInterval, String)

    public var description: String {
        switch self {
        case .retryAfter(let s, let m): return "\(m) (retry after \(Int(s.rounded(.up)))s)"
        case .permanent(let m): return m
        case .postpone(let s, let m): return "\(m) (looked at again in \(Int(s.rounded(.up)))s)"
        }
    }
}
