import Foundation
import ServiceLifecycle

/// A `ServiceGroup` running in the background the way `sentinel serve` runs it, until `shutdown()`
/// triggers its graceful shutdown (as SIGTERM does) and waits for every service to stop.
public final class RunningGroup: Sendable {
    public let group: ServiceGroup
    private let task: Task<Void, Error>

    public init(_ group: ServiceGroup) {
        self.group = group
        task = Task { try await group.run() }
    }

    /// Starts the graceful shutdown without waiting for it (services stop in reverse order).
    public func beginShutdown() async {
        await group.triggerGracefulShutdown()
    }

    /// Shuts the group down gracefully and returns once `run()` has returned; rethrows its error.
    public func shutdown() async throws {
        await group.triggerGracefulShutdown()
        try await task.value
    }
}
