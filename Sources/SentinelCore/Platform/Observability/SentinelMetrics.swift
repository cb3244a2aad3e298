import CoreMetrics
import Foundation
import Metrics

/// The appliance's metric names in one place, created from an injected factory (Prometheus in
/// `serve`, a no-op or test factory elsewhere) so nothing depends on a process-global bootstrap.
public struct SentinelMetrics: Sendable {
    public let factory: any MetricsFactory

    public init(factory: any MetricsFactory = NOOPMetricsHandler.instance) {
        self.factory = factory
    }

    public func jobExecuted(kind: String, outcome: String, duration: Duration) {
        Counter(label: "sentinel_jobs_executed_total", dimensions: [("kind", kind), ("outcome", outcome)], factory: factory).increment()
        Timer(label: "sentinel_job_duration_seconds", dimensions: [("kind", kind)], preferredDisplayUnit: .seconds, factory: factory)
            .recordNanoseconds(duration.nanoseconds)
    }

    public func queueLatency(_ latency: Duration) {
        Timer(label: "sentinel_job_queue_latency_seconds", dimensions: [], preferredDisplayUnit: .seconds, factory: factory)
            .recordNanoseconds(max(0, latency.nanoseconds))
    }

    public func openWorkspaces(_ count: Int) {
        Gauge(label: "sentinel_workspaces_open", dimensions: [], factory: factory).record(count)
    }

    public func workspaceOffline(reason: String) {
        Counter(label: "sentinel_workspace_offline_total", dimensions: [("reason", reason)], factory: factory).increment()
    }

    public func offlineWorkspaces(_ count: Int) {
        Gauge(label: "sentinel_workspaces_offline", dimensions: [], factory: factory).record(count)
    }

    /// Size of a write-ahead log after the maintenance checkpoint (`file`: control, workspace_largest).
    public func walBytes(file: String, _ bytes: Int64) {
        Gauge(label: "sentinel_storage_wal_bytes", dimensions: [("file", file)], factory: factory).record(bytes)
    }

    public func webhook(platform: String, outcome: String) {
        Counter(label: "sentinel_webhook_deliveries_total", dimensions: [("platform", platform), ("outcome", outcome)], factory: factory).increment()
    }

    /// A recognised `@sentinel` comment command that was not obeyed (e.g. the commenter's author_association).
    public func reviewCommandRefused(reason: String) {
        Counter(label: "sentinel_review_commands_refused_total", dimensions: [("reason", reason)], factory: factory).increment()
    }

    /// One catch-up sweep of one integration; `outcome` is `complete` or why it stopped early
    /// (`rate_limited`, `cap_reached`, `error`).
    public func reconcileSweep(platform: String, outcome: String) {
        Counter(label: "sentinel_reconcile_sweeps_total", dimensions: [("platform", platform), ("outcome", outcome)], factory: factory).increment()
    }

    public func reconcilePullRequestsFound(platform: String, count: Int) {
        Counter(label: "sentinel_reconcile_pull_requests_found_total", dimensions: [("platform", platform)], factory: factory).increment(by: count)
    }

    public func reconcileReviewRequested(platform: String) {
        Counter(label: "sentinel_reconcile_reviews_requested_total", dimensions: [("platform", platform)], factory: factory).increment()
    }

    public func reconcileRedeliveryRequested(platform: String) {
        Counter(label: "sentinel_reconcile_redeliveries_requested_total", dimensions: [("platform", platform)], factory: factory).increment()
    }

    public func httpRequest(method: String, route: String, status: Int, duration: Duration) {
        Counter(label: "sentinel_http_requests_total", dimensions: [("method", method), ("route", route), ("status", String(status))], factory: factory).increment()
        Timer(label: "sentinel_http_request_duration_seconds", dimensions: [("method", method), ("route", route)], preferredDisplayUnit: .seconds, factory: factory)
            .recordNanoseconds(duration.nanoseconds)
    }
}

extension Duration {
    public var nanoseconds: Int64 {
        let (s, atto) = components
        return s * 1_000_000_000 + atto / 1_000_000_000
    }
    public var seconds: Double { Double(nanoseconds) / 1e9 }
}
