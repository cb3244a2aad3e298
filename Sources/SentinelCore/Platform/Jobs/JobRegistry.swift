import Foundation
import Logging

/// What a job handler gets: the job, its workspace (through its actor), and a logger that already
/// carries the correlation, workspace and job ids.
public struct JobContext: Sendable {
    public let workspaceID: WorkspaceID
    public let job: JobRecord
    public let workspace: WorkspaceActor
    public let logger: Logger

    public var correlationID: String? { job.correlationId }
}

public typealias JobHandler = @Sendable (JobContext) async throws -> Void

/// Handlers by job kind, plus event listeners (which are job handlers keyed by event type).
/// Built once at start-up and passed to the supervisor: no global registration.
public struct JobRegistry: Sendable {
    private(set) var handlers: [String: JobHandler] = [:]
    public private(set) var listeners = EventListenerRegistry()

    public init() {}

    public mutating func register(_ kind: String, handler: @escaping JobHandler) {
        handlers[kind] = handler
    }

    /// Runs `handler` as a job for every event of `eventType`; the payload is an `EventListenerPayload`.
    public mutating func listen(to eventType: String, as listener: String, handler: @escaping JobHandler) {
        listeners.add(type: eventType, listener: listener)
        handlers[EventListenerRegistry.jobKind(listener)] = handler
    }

    public func handler(for kind: String) -> JobHandler? { handlers[kind] }
    public var kinds: [String] { handlers.keys.sorted() }
}
