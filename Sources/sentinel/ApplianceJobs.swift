import SentinelCore

/// The job handlers and event listeners `serve` registers. Domains add theirs here as they land.
enum ApplianceJobs {
    static func registry() -> JobRegistry {
        var registry = JobRegistry()
        registry.register("noop") { _ in }
        return registry
    }
}
