import CoreMetrics
import Foundation
import Metrics
import Synchronization

/// The appliance's metric names in one place, created from an injected factory (Prometheus in
/// `serve`, a no-op or test factory elsewhere) so nothing depends on a process-global bootstrap.
public struct SentinelMetrics: Sendable {
    public let factory: any MetricsFactory
    /// The handles every request and delivery records to, made once per set of dimensions.
    private let perRequest = PerRequestHandles()

    public init(factory: any MetricsFactory = NOOPMetricsHandler.instance) {
        self.factory = factory
    }

    public func jobExecuted(kind: String, outcome: String, duration: Duration) {
        Counter(label: "sentinel_jobs_executed_total", dimensions: [("kind", kind), ("outcome", outcome)], factory: factory).increment()
        Timer(label: "sentinel_job_duration_seconds", dimensions: [("kind", kind)], preferredDisplayUnit: .seconds, factory: factory)
            .recordNanoseconds(duration.nanoseconds)
    }

    /// Due → started, by priority.
    public func queueLatency(_ latency: Duration, priority: JobPriority) {
        Timer(label: "sentinel_job_queue_latency_seconds", dimensions: [("priority", priority.description)], preferredDisplayUnit: .seconds, factory: factory)
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

    /// Deliveries acknowledged into the intake journal and not yet in their workspace file.
    public func intakeJournal(_ count: Int) {
        Gauge(label: "sentinel_intake_journal_deliveries", dimensions: [], factory: factory).record(count)
    }

    /// Bytes of webhook bodies being read or held (`server.max_webhook_bytes_in_flight`); the
    /// budget keeps this gauge and records it as it changes.
    public func webhookBodyBytesHeld() -> Gauge {
        Gauge(label: "sentinel_webhook_body_bytes_held", dimensions: [], factory: factory)
    }

    public func webhook(platform: String, outcome: String) {
        perRequest.webhook(platform: platform, outcome: outcome, factory: factory).increment()
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
        let (requests, latency) = perRequest.http(method: method, route: route, status: status, factory: factory)
        requests.increment()
        latency.recordNanoseconds(duration.nanoseconds)
    }

    /// One stage of a review run: `fetch_diff`, `policy`, `engine`, `post`.
    public func reviewStage(_ stage: String, duration: Duration) {
        Timer(label: "sentinel_review_stage_duration_seconds", dimensions: [("stage", stage)], preferredDisplayUnit: .seconds, factory: factory)
            .recordNanoseconds(duration.nanoseconds)
    }

    /// Every `sentinel_review_runs_total` outcome and its reasons (docs/observability.md).
    public static let runOutcomes: [(String, [String])] = [
        ("completed", ["completed"]),
        ("skipped", ["closed", "cancelled", "disabled", "draft", "push_not_reviewed", "open_not_reviewed", "plan_limit"]),
        ("failed", ["platform_refused", "platform_retries_exhausted", "job_dead"]),
        ("superseded", ["newer_head", "head_moved"]),
    ]

    /// A run reached a final state (counted once, when that is committed): `outcome` completed /
    /// skipped / failed / superseded, `reason` a fixed word.
    public func runFinished(outcome: String, reason: String) {
        Counter(label: "sentinel_review_runs_total", dimensions: [("outcome", outcome), ("reason", reason)], factory: factory).increment()
    }

    /// One call to an AI provider (`provider`: its kind, never its id). `outcome` is `ok` or the
    /// error kind (`rate_limited`, `timeout`, `server`, `auth`, …).
    public func aiCall(provider: String, model: String, outcome: String, duration: Duration, inputTokens: Int, outputTokens: Int, costUSD: Double) {
        let dims = [("provider", provider), ("model", model)]
        Counter(label: "sentinel_ai_calls_total", dimensions: dims + [("outcome", outcome)], factory: factory).increment()
        Timer(label: "sentinel_ai_call_duration_seconds", dimensions: dims, preferredDisplayUnit: .seconds, factory: factory)
            .recordNanoseconds(duration.nanoseconds)
        if outcome != "ok" {
            Counter(label: "sentinel_ai_call_errors_total", dimensions: [("provider", provider), ("kind", outcome)], factory: factory).increment()
        }
        if inputTokens > 0 { Counter(label: "sentinel_ai_tokens_total", dimensions: dims + [("direction", "input")], factory: factory).increment(by: inputTokens) }
        if outputTokens > 0 { Counter(label: "sentinel_ai_tokens_total", dimensions: dims + [("direction", "output")], factory: factory).increment(by: outputTokens) }
        if costUSD > 0 { FloatingPointCounter(label: "sentinel_ai_cost_usd_total", dimensions: dims, factory: factory).increment(by: costUSD) }
    }

    /// A workspace file was opened.
    public func workspaceOpened() {
        Counter(label: "sentinel_workspace_opens_total", dimensions: [], factory: factory).increment()
    }

    /// Workspace files closed to stay under `workspaces.max_open` (`lru`) or for idleness (`idle`).
    public func workspacesEvicted(_ count: Int, reason: String) {
        Counter(label: "sentinel_workspace_evictions_total", dimensions: [("reason", reason)], factory: factory).increment(by: count)
    }

    /// One analytics export: how long it took and how many event rows it wrote.
    public func export(duration: Duration, rows: Int, outcome: String) {
        Counter(label: "sentinel_exports_total", dimensions: [("outcome", outcome)], factory: factory).increment()
        Timer(label: "sentinel_export_duration_seconds", dimensions: [], preferredDisplayUnit: .seconds, factory: factory)
            .recordNanoseconds(duration.nanoseconds)
        Counter(label: "sentinel_export_rows_total", dimensions: [], factory: factory).increment(by: rows)
    }

    /// Series that exist from the start (at zero), so dashboards and alerts see them before the
    /// first event: the unlabelled ones and those whose labels have a few fixed values.
    public func registerSeries() {
        workspacesEvicted(0, reason: "lru")
        workspacesEvicted(0, reason: "idle")
        Counter(label: "sentinel_workspace_opens_total", dimensions: [], factory: factory).increment(by: 0)
        for outcome in ["ok", "failed"] { Counter(label: "sentinel_exports_total", dimensions: [("outcome", outcome)], factory: factory).increment(by: 0) }
        _ = Timer(label: "sentinel_export_duration_seconds", dimensions: [], preferredDisplayUnit: .seconds, factory: factory)
        Counter(label: "sentinel_export_rows_total", dimensions: [], factory: factory).increment(by: 0)
        queueDepth([:])
        circuitsOpen(0, opened: false)
        Counter(label: "sentinel_ai_circuit_opened_total", dimensions: [], factory: factory).increment(by: 0)
        // Failure counters an alert watches: present at zero, so `rate()` and `increase()` work
        // before the first failure.
        for platform in ["github", "gitlab"] {
            for outcome in ["accepted", "duplicate", "bad_signature", "invalid_json", "unknown_integration"] {
                Counter(label: "sentinel_webhook_deliveries_total", dimensions: [("platform", platform), ("outcome", outcome)], factory: factory).increment(by: 0)
            }
        }
        for (outcome, reasons) in Self.runOutcomes {
            for reason in reasons {
                Counter(label: "sentinel_review_runs_total", dimensions: [("outcome", outcome), ("reason", reason)], factory: factory).increment(by: 0)
            }
        }
        for reason in ["missing", "corrupt", "newer_schema", "migration_failed", "unreadable"] {
            Counter(label: "sentinel_workspace_offline_total", dimensions: [("reason", reason)], factory: factory).increment(by: 0)
        }
        for reason in ["author_association", "access_level"] {
            Counter(label: "sentinel_review_commands_refused_total", dimensions: [("reason", reason)], factory: factory).increment(by: 0)
        }
        walBytes(file: "control", 0)
        walBytes(file: "workspace_largest", 0)
        for outcome in ["complete", "rate_limited", "cap_reached", "error"] {
            Counter(label: "sentinel_reconcile_sweeps_total", dimensions: [("platform", "github"), ("outcome", outcome)], factory: factory).increment(by: 0)
        }
        reconcilePullRequestsFound(platform: "github", count: 0)
        Counter(label: "sentinel_reconcile_reviews_requested_total", dimensions: [("platform", "github")], factory: factory).increment(by: 0)
        Counter(label: "sentinel_reconcile_redeliveries_requested_total", dimensions: [("platform", "github")], factory: factory).increment(by: 0)
    }

    /// AI provider circuits open now (all workspaces), and each opening.
    public func circuitsOpen(_ count: Int, opened: Bool) {
        Gauge(label: "sentinel_ai_circuits_open", dimensions: [], factory: factory).record(count)
        if opened { Counter(label: "sentinel_ai_circuit_opened_total", dimensions: [], factory: factory).increment() }
    }

    /// When the certificate the HTTPS listener serves expires (Unix seconds): set at start and at each reload.
    public func tlsCertificateExpiry(_ date: Date) {
        Gauge(label: "sentinel_tls_certificate_expiry_timestamp_seconds", dimensions: [], factory: factory).record(date.timeIntervalSince1970)
    }

    /// Space on the file system holding the data directory, sampled at each scrape.
    public func disk(freeBytes: Int64, totalBytes: Int64) {
        Gauge(label: "sentinel_data_disk_free_bytes", dimensions: [], factory: factory).record(freeBytes)
        Gauge(label: "sentinel_data_disk_total_bytes", dimensions: [], factory: factory).record(totalBytes)
    }

    /// Jobs by priority and state, sampled (summed over the open workspace files).
    public func queueDepth(_ counts: [JobPriority: [JobState: Int]]) {
        for priority in JobPriority.allCases {
            for state in [JobState.queued, .running, .dead] {
                Gauge(label: "sentinel_job_queue_depth", dimensions: [("priority", priority.description), ("state", state.rawValue)], factory: factory)
                    .record(counts[priority]?[state] ?? 0)
            }
        }
    }
}

extension Duration {
    public var nanoseconds: Int64 {
        let (s, atto) = components
        return s * 1_000_000_000 + atto / 1_000_000_000
    }
    public var seconds: Double { Double(nanoseconds) / 1e9 }
    public var milliseconds: Int64 { nanoseconds / 1_000_000 }
}

/// The handles of `sentinel_http_requests_total`, `sentinel_http_request_duration_seconds` and
/// `sentinel_webhook_deliveries_total`, kept by their dimensions (routes are templates, so there
/// are few): making a `Counter` or `Timer` asks the factory each time (Prometheus builds and looks
/// up its key under a lock), about 1 % of a webhook delivery's CPU when done per request.
private final class PerRequestHandles: Sendable {
    private struct HTTPKey: Hashable {
        let method: String
        let route: String
        let status: Int
    }

    private struct WebhookKey: Hashable {
        let platform: String
        let outcome: String
    }

    private let http = Mutex<[HTTPKey: (requests: Counter, latency: Timer)]>([:])
    private let webhooks = Mutex<[WebhookKey: Counter]>([:])

    func http(method: String, route: String, status: Int, factory: any MetricsFactory) -> (requests: Counter, latency: Timer) {
        let key = HTTPKey(method: method, route: route, status: status)
        if let known = http.withLock({ $0[key] }) { return known }
        let dimensions = [("method", method), ("route", route), ("status", String(status))]
        let made = (requests: Counter(label: "sentinel_http_requests_total", dimensions: dimensions, factory: factory),
                    latency: Timer(label: "sentinel_http_request_duration_seconds", dimensions: dimensions, preferredDisplayUnit: .seconds,
                                   factory: factory))
        return http.withLock { handles in
            if let known = handles[key] { return known }
            handles[key] = made
            return made
        }
    }

    func webhook(platform: String, outcome: String, factory: any MetricsFactory) -> Counter {
        let key = WebhookKey(platform: platform, outcome: outcome)
        if let known = webhooks.withLock({ $0[key] }) { return known }
        let made = Counter(label: "sentinel_webhook_deliveries_total", dimensions: [("platform", platform), ("outcome", outcome)], factory: factory)
        return webhooks.withLock { handles in
            if let known = handles[key] { return known }
            handles[key] = made
            return made
        }
    }
}
