import SentinelCore

/// The job handlers and event listeners `serve` adds to those `Appliance` registers (each domain
/// registers its own there), and the registry the CLI opens workspaces with: the listeners are
/// there, so an event a command appends enqueues its listener jobs exactly as in `serve`.
enum ApplianceJobs {
    static func registry() -> JobRegistry {
        var registry = JobRegistry()
        registry.register("noop") { _ in }
        return registry
    }

    /// What the CLI's workspace actors are opened with: the listeners that need no running service.
    static func commandRegistry() -> JobRegistry {
        var registry = registry()
        Rollups.register(in: &registry)
        // Events a command appends (a run it fails, a job it makes dead, …) are notified like the server's.
        Notifications.registerListener(in: &registry)
        return registry
    }
}
