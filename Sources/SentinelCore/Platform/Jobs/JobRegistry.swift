import Foundation
import GRDB
import Logging

/// What a job handler gets: the job, its workspace (through its actor), and a logger that already
/// carries the correlation, workspace and job ids.
public struct JobContext: Sendable {
    public let workspaceID: WorkspaceID
    public let job: JobRecord
    public let workspace: WorkspaceActor
    public let logger: Logger

    public var correlationID: String? { job.correlationID }
}

public typealias JobHandler = @Sendable (JobContext) async throws -> Void

/// A job that went dead (retries exhausted, a permanent failure, or its lease expired on the last
/// attempt), as its kind's `onDead` hook sees it. The hook runs as a job of its own
/// (`JobRegistry.deadKind(kind)`), enqueued in the transaction that made the job dead, so it runs
/// even when the worker that held the job is gone.
public struct DeadJob: Codable, Sendable, Equatable {
    public var jobID: Int64
    public var kind: String
    public var payload: Data
    public var attempts: Int
    public var reason: String

    public init(jobID: Int64, kind: String, payload: Data, attempts: Int, reason: String) {
        self.jobID = jobID
        self.kind = kind
        self.payload = payload
        self.attempts = attempts
        self.reason = reason
    }
}

public typealias DeadJobHandler = @Sendable (JobContext, DeadJob) async throws -> Void

/// Handlers by job kind, plus event listeners (which are job handlers keyed by event type).
/// Built once at start-up and passed to the supervisor: no global registration.
public struct JobRegistry: Sendable {
    private(set) var handlers: [String: JobHandler] = [:]
    /// Kinds with an `onDead` hook.
    public private(set) var deadHooks: Set<String> = []
    public private(set) var listeners = EventListenerRegistry()

    public init() {}

    public mutating func register(_ kind: String, handler: @escaping JobHandler) {
        handlers[kind] = handler
    }

    /// Registers `handler` for `kind` and `onDead` for its jobs that go dead, whatever the reason.
    public mutating func register(_ kind: String, handler: @escaping JobHandler, onDead: @escaping DeadJobHandler) {
        handlers[kind] = handler
        deadHooks.insert(kind)
        handlers[Self.deadKind(kind)] = { context in
            try await onDead(context, try context.job.decodePayload(DeadJob.self))
        }
    }

    /// The job kind that runs the `onDead` hook of `kind`.
    public static func deadKind(_ kind: String) -> String { "dead:\(kind)" }

    /// The hook job for a job of a kind with an `onDead` hook that just went dead, else nil.
    func deadHookRequest(for job: JobRecord, reason: String, at now: Date) throws -> JobRequest? {
        guard deadHooks.contains(job.kind) else { return nil }
        return try JobRequest(kind: Self.deadKind(job.kind),
                              payload: DeadJob(jobID: job.id, kind: job.kind, payload: job.payload, attempts: job.attempts, reason: reason),
                              priority: .critical, idempotencyKey: "dead:\(job.id):\(now.epoch)", correlationID: job.correlationID)
    }

    /// Runs `handler` as a job for every event of `eventType`; the payload is an `EventListenerPayload`
    /// (with `coalescing`, of the first event since the last run: the handler works through the log
    /// itself). No job while `condition` is false in the appending transaction.
    public mutating func listen(to eventType: String, as listener: String, coalescing: Bool = false,
                                when condition: (@Sendable (Database) throws -> Bool)? = nil, handler: @escaping JobHandler) {
        listeners.add(type: eventType, listener: EventListener(name: listener, coalescing: coalescing, condition: condition))
        let kind = EventListenerRegistry.jobKind(listener)
        guard coalescing else { handlers[kind] = handler; return }
        handlers[kind] = { context in
            // Give up the queued job's key first, in its own commit: an event appended from now on
            // queues the next job, and every event appended before is in the log this run reads.
            let key = EventListenerRegistry.pendingKey(listener)
            try await context.workspace.write { tx in
                try tx.db.execute(sql: "UPDATE jobs SET idempotency_key = NULL WHERE id = ? AND idempotency_key = ?",
                                  arguments: [context.job.id, key])
            }
            try await handler(context)
        }
    }

    public func handler(for kind: String) -> JobHandler? { handlers[kind] }
    public var kinds: [String] { handlers.keys.sorted() }
}
