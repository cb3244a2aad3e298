import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
@testable import SentinelCore
import SentinelServer
import SentinelTestSupport
import Testing
import Tracing

/// Tracing, correlation and metrics (docs/observability.md), end to end through a webhook delivery
/// and the review it causes, with the loopback fakes and an OTLP collector on loopback.
@Suite("Observability", .serialized)
struct ObservabilityTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// A delivery reviewed with an AI provider, exporting spans to `collector`; stopped (so the
    /// exporter has flushed) before returning.
    static func reviewedDelivery(collector: FakeOTLPCollector?, delivery: String, failFirstModelCall: Bool = false) async throws
        -> (world: GitHubWorld, llm: FakeLLMServer, metrics: String)
    {
        let llm = try await FakeLLMServer.start()
        let world = try await GitHubWorld { config in
            config.observability.otlpEndpoint = collector?.baseURL
        }
        try await world.addOpenAIProvider(llm)
        await llm.state.setReview(summary: "Fine.", findings: [])
        if failFirstModelCall { await llm.state.inject(.status(503), api: .openAI, times: 1) }
        let (status, body) = try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"),
                                                     delivery: delivery)
        #expect(status == 202, "\(body)")
        #expect(await world.waitForRun(state: .completed))
        let response = try await world.http.execute(HTTPClientRequest(url: "http://127.0.0.1:\(world.port)/metrics"), timeout: .seconds(10))
        let metrics = String(buffer: try await response.body.collect(upTo: 8 << 20))
        await world.stop()
        await llm.stop()
        return (world, llm, metrics)
    }

    @Test("one webhook delivery and its review export ONE connected trace over OTLP/HTTP: job spans lead back to the request span")
    func oneConnectedTrace() async throws {
        let collector = try await FakeOTLPCollector.start()
        _ = try await Self.reviewedDelivery(collector: collector, delivery: "delivery-trace-1")
        let spans = collector.spans
        await collector.stop()
        let request = try #require(spans.first { $0.name.hasPrefix("POST /webhooks/github") }, "\(spans.map(\.name))")
        #expect(request.parentSpanID.isEmpty, "the webhook request starts the trace")
        let trace = spans.filter { $0.traceID == request.traceID }
        let names = Set(trace.map(\.name))
        for expected in ["job github.delivery", "job review.run", "review.policy", "review.fetch_diff", "review.engine", "review.post", "ai.call"] {
            #expect(names.contains(expected), "\(expected) is not in the delivery's trace: \(names.sorted())")
        }
        #expect(names.contains { $0.hasPrefix("GET ") && $0.hasSuffix("/repos/{owner}/{repo}/pulls/{n}") }, "\(names.sorted())")
        #expect(names.contains { $0.hasPrefix("POST ") && $0.hasSuffix("/chat/completions") }, "\(names.sorted())")
        // Connected: every span of the trace but the request's has its parent in the trace, and
        // each job's chain of parents ends at the request span.
        let byID = Dictionary(trace.map { ($0.spanID, $0) }, uniquingKeysWith: { a, _ in a })
        for span in trace where span.spanID != request.spanID {
            #expect(byID[span.parentSpanID] != nil, "\(span.name) has a parent outside the trace")
        }
        for job in trace where job.name.hasPrefix("job ") {
            var current = job
            var steps = 0
            while let parent = byID[current.parentSpanID], steps < 50 { current = parent; steps += 1 }
            #expect(current.spanID == request.spanID, "\(job.name) does not lead back to the request span")
        }
        // Nothing of this delivery landed in another trace.
        let elsewhere = spans.filter { $0.traceID != request.traceID && ($0.name.hasPrefix("review.") || $0.name == "ai.call" || $0.name.hasPrefix("job github") || $0.name.hasPrefix("job review")) }
        #expect(elsewhere.isEmpty, "\(elsewhere.map(\.name))")
    }

    @Test("with no OTLP endpoint spans are not recorded, yet each has a trace id that traceparent carries; with one they are recorded and sampled")
    func spansRecordedOnlyWhenExported() throws {
        struct HeaderInjector: Injector {
            func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) { carrier[key] = value }
        }
        for endpoint in [nil, "http://127.0.0.1:9"] as [String?] {
            var observability = SentinelConfig().observability
            observability.otlpEndpoint = endpoint
            let (tracer, _) = try Telemetry.makeTracer(observability, logger: Logger(label: "test.otel"))
            let span = tracer.startAnySpan("request", context: .topLevel, ofKind: .server)
            defer { span.end() }
            var headers: [String: String] = [:]
            tracer.inject(span.context, into: &headers, using: HeaderInjector())
            let parts = try #require(headers["traceparent"], "no traceparent (endpoint \(endpoint ?? "none"))").split(separator: "-")
            #expect(parts.count == 4 && parts[1].count == 32 && parts[1] != Substring(String(repeating: "0", count: 32)), "\(parts)")
            #expect(span.isRecording == (endpoint != nil), "endpoint \(endpoint ?? "none")")
            #expect(parts.last == (endpoint != nil ? "01" : "00"), "\(parts)")
        }
    }

    @Test("swift-otel's diagnostic lines at info (each OTEL_* value it applies, the collector's key in OTEL_EXPORTER_OTLP_HEADERS among them) are not logged, whatever level it sets; its warnings are")
    func otelDiagnosticsWarningsOnly() throws {
        // (The environment is not set here: setenv while other tests start processes crashed Foundation's Process.)
        let log = CapturedLog()
        let base = Logger.sentinel(level: "trace", sink: log.sink)
        var diagnostics = Logger(label: "otel") { _ in OTelDiagnosticsLogHandler(wrapped: base.handler) }
        diagnostics.logLevel = .info   // as swift-otel sets it (OTEL_LOG_LEVEL, default info)
        diagnostics.info("Configuration updated from environment", metadata: ["new_value": "x-honeycomb-team=HCKEYsecret123"])
        diagnostics.warning("export failed")
        // A value it could not read is named in a warning: the value is not logged, the variable is.
        diagnostics.warning("Failed to update configuration from environment",
                            metadata: ["environment_key": "OTEL_EXPORTER_OTLP_HEADERS", "environment_value": "x-honeycomb-team: HCKEYsecret456"])
        #expect(!log.text.contains("HCKEYsecret123") && !log.text.contains("HCKEYsecret456"), "\(log.text)")
        #expect(log.text.contains("export failed") && log.text.contains("OTEL_EXPORTER_OTLP_HEADERS"))
    }

    @Test("outbound calls carry traceparent and X-Request-ID and log one line each, without credentials; every job log line has correlation_id and trace_id")
    func outboundCorrelationAndLogs() async throws {
        let (world, llm, _) = try await Self.reviewedDelivery(collector: nil, delivery: "delivery-corr-1")
        let github = await world.github.state.received
        #expect(!github.isEmpty)
        var traceIDs: Set<String> = []
        for request in github {
            let parent = try #require(request.headers["traceparent"], "\(request.method) \(request.path) has no traceparent")
            let parts = parent.split(separator: "-")
            #expect(parts.count == 4 && parts[1].count == 32 && parts[2].count == 16, "\(parent)")
            traceIDs.insert(String(parts[1]))
            #expect(request.headers["x-request-id"] == "delivery-corr-1", "\(request.method) \(request.path)")
        }
        #expect(traceIDs.count == 1, "every call of one delivery is in one trace: \(traceIDs)")
        let model = try #require(await llm.state.requests(.openAI).first)
        #expect(model.headers["traceparent"]?.contains(traceIDs.first!) == true)
        #expect(model.headers["x-request-id"] == "delivery-corr-1")

        let lines = world.log.all.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        let outbound = lines.filter { $0["message"] as? String == "outbound call" }
        #expect(outbound.count == github.count + 1, "one line per call (\(github.count) to GitHub, 1 to the model): \(outbound.count)")
        for line in outbound {
            for key in ["method", "host", "path", "status", "duration_ms", "attempt", "correlation_id", "trace_id"] {
                #expect(line[key] != nil, "\(key) missing in \(line)")
            }
            #expect(line["trace_id"] as? String == traceIDs.first)
            #expect(line["correlation_id"] as? String == "delivery-corr-1")
            // Made by jobs: with the job's workspace and id, as the job's own lines (SPEC §9); a review's with its run.
            #expect(line["workspace_id"] as? String == world.workspace.rawValue && line["job_id"] != nil, "\(line)")
        }
        #expect(outbound.filter { ($0["path"] as? String)?.contains("/pulls/{n}/files") == true }.allSatisfy { $0["run_id"] != nil })
        #expect(outbound.contains { ($0["path"] as? String)?.hasSuffix("/repos/{owner}/{repo}/pulls/{n}/files") == true })
        let outboundText = outbound.map { "\($0)" }.joined()
        #expect(!outboundText.contains("Bearer") && !outboundText.contains(FakeLLMServer.defaultKeys[.openAI]!) && !outboundText.contains("octo-org"))
        // The webhook request's own line carries the delivery id as its correlation id, as its jobs
        // do, and the same trace.
        let stored = try #require(lines.first { $0["message"] as? String == "delivery stored" }, "no request log line")
        #expect(stored["correlation_id"] as? String == "delivery-corr-1" && stored["delivery_id"] as? String == "delivery-corr-1", "\(stored)")
        #expect(stored["trace_id"] as? String == traceIDs.first, "\(stored)")
        let jobLines = lines.filter { $0["job_id"] != nil }
        #expect(!jobLines.isEmpty)
        for line in jobLines {
            #expect(line["correlation_id"] as? String == "delivery-corr-1" && line["trace_id"] != nil, "\(line)")
        }
    }

    @Test("calls to GitLab made for a merge request hook carry one trace's traceparent and the delivery's X-Request-ID")
    func gitLabCallsCarryTraceAndCorrelation() async throws {
        let world = try await GitLabWorld()
        let before = await world.gitlab.state.requests.count  // the token check when the integration was added
        let mr = try await world.mergeRequest()
        let uuid = UUID().uuidString.lowercased()
        #expect(try await world.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(action: "open", mr: mr, project: world.project), uuid: uuid).0 == 202)
        #expect(await world.waitForFinished(1))
        let calls = await world.gitlab.state.requests.dropFirst(before)
        await world.stop()
        #expect(!calls.isEmpty)
        var traces: Set<String> = []
        var ids: Set<String> = []
        for call in calls {
            let parent = try #require(call.traceparent, "\(call.method) \(call.target) has no traceparent")
            traces.insert(String(parent.split(separator: "-")[1]))
            ids.insert(try #require(call.requestID, "\(call.method) \(call.target) has no X-Request-ID"))
        }
        #expect(traces.count == 1, "\(traces)")
        // The delivery's id (GitLab's key with Sentinel's prefix) is the correlation id of every
        // call, and of the webhook request's own log line, in the same trace.
        #expect(ids == ["gitlab:\(uuid)"], "\(ids)")
        let lines = world.log.all.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        let stored = try #require(lines.first { $0["message"] as? String == "delivery stored" }, "no request log line")
        #expect(stored["correlation_id"] as? String == "gitlab:\(uuid)" && stored["delivery_id"] as? String == "gitlab:\(uuid)", "\(stored)")
        #expect((stored["trace_id"] as? String).map(traces.contains) == true, "\(stored)")
    }

    @Test("outbound paths are logged as templates: owner, repository, numbers, SHAs, file paths and queries never appear")
    func pathTemplates() {
        let cases = [
            ("https://api.github.com/repos/octo-org/hello-world/pulls/7/files?page=2", "/repos/{owner}/{repo}/pulls/{n}/files"),
            ("https://api.github.com/repos/octo-org/hello-world/contents/src/a.yml?ref=abc", "/repos/{owner}/{repo}/contents/{path}"),
            ("https://api.github.com/repos/o/r/compare/aaa111...bbb222", "/repos/{owner}/{repo}/compare/{base}...{head}"),
            ("https://api.github.com/app/installations/55/access_tokens", "/app/installations/{id}/access_tokens"),
            ("https://gitlab.example/api/v4/projects/group%2Fproj/merge_requests/3/diffs", "/api/v4/projects/{id}/merge_requests/{n}/diffs"),
            ("https://gitlab.example/api/v4/projects/12/repository/files/.sentinel.yml/raw?ref=main", "/api/v4/projects/{id}/repository/files/{path}"),
            ("https://gitlab.example/api/v4/projects/12/statuses/0123456789abcdef0123456789abcdef01234567", "/api/v4/projects/{id}/statuses/{sha}"),
            ("https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent?key=SECRET", "/v1beta/models/gemini-2.0-flash:generateContent"),
        ]
        for (url, template) in cases {
            #expect(Telemetry.pathTemplate(URL(string: url)!) == template, "\(url)")
        }
    }

    /// The metric names of docs/observability.md's table.
    static func documentedMetrics() throws -> [String] {
        let text = try String(contentsOf: root.appendingPathComponent("docs/observability.md"), encoding: .utf8)
        return text.split(separator: "\n").compactMap { line in
            guard line.hasPrefix("| `sentinel_") else { return nil }
            return line.split(separator: "`")[1].description
        }
    }

    @Test("after a review end to end, /metrics has every documented metric and no label holds a workspace id or repository")
    func metricsDocumentedAndBounded() async throws {
        let documented = try Self.documentedMetrics()
        #expect(documented.count >= 20)
        let (world, _, metrics) = try await Self.reviewedDelivery(collector: nil, delivery: "delivery-metrics-1", failFirstModelCall: true)
        // This world serves plain HTTP; the certificate's expiry is checked by CertificateReloadTests.
        for name in documented where name != "sentinel_tls_certificate_expiry_timestamp_seconds" {
            #expect(metrics.contains("# TYPE \(name) "), "\(name) is documented but not exported")
        }
        for line in metrics.split(separator: "\n") where line.hasPrefix("sentinel_") {
            #expect(!line.contains(world.workspace.rawValue) && line.range(of: "ws_[a-z0-9]{16}", options: .regularExpression) == nil, "\(line)")
            #expect(!line.contains("octo-org"), "\(line)")
        }
        /// A sample of `name` with all of `labels` (in any order), and its value.
        func sample(_ name: String, _ labels: [String]) -> String? {
            metrics.split(separator: "\n").first { line in
                line.hasPrefix(name + "{") && labels.allSatisfy { line.contains($0) }
            }.map { String($0.split(separator: " ").last ?? "") }
        }
        #expect(sample("sentinel_review_runs_total", [#"outcome="completed""#, #"reason="completed""#]) == "1", "\(metrics)")
        #expect(sample("sentinel_ai_calls_total", [#"provider="openai""#, #"model="gpt-4o-mini""#, #"outcome="ok""#]) == "1")
        #expect(sample("sentinel_ai_call_errors_total", [#"provider="openai""#, #"kind="server""#]) == "1")
        #expect(sample("sentinel_ai_tokens_total", [#"direction="input""#]).flatMap(Double.init) ?? 0 > 0)
        #expect(sample("sentinel_job_queue_latency_seconds_count", [#"priority="critical""#]) != nil)
        #expect(sample("sentinel_review_stage_duration_seconds_count", [#"stage="engine""#]) == "1")
        #expect(metrics.contains(#"route="/webhooks/github/{integrationID}""#) || metrics.contains(#"route="/webhooks/github/:integrationID""#))
        // Every exported sentinel_ metric is documented.
        let exported = Set(metrics.split(separator: "\n").filter { $0.hasPrefix("# TYPE sentinel_") }.map { $0.split(separator: " ")[2].description })
        #expect(exported.subtracting(documented).isEmpty, "undocumented: \(exported.subtracting(documented).sorted())")
    }

    @Test("the Grafana dashboard and the alert rules use only documented metrics, and the dashboard shows every one")
    func dashboardAndAlertsUseDocumentedNames() throws {
        let documented = Set(try Self.documentedMetrics())
        func names(in file: String) throws -> Set<String> {
            let text = try String(contentsOf: Self.root.appendingPathComponent(file), encoding: .utf8)
            let regex = try NSRegularExpression(pattern: "sentinel_[a-z0-9_]+")
            let found = regex.matches(in: text, range: NSRange(text.startIndex..., in: text)).map { String(text[Range($0.range, in: text)!]) }
            return Set(found.map { name in
                for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) {
                    let base = String(name.dropLast(suffix.count))
                    if documented.contains(base) { return base }
                }
                return name
            })
        }
        let dashboard = try names(in: "appliance/observability/grafana-dashboard.json")
        let alerts = try names(in: "appliance/observability/prometheus-alerts.yml")
        #expect(dashboard.subtracting(documented).isEmpty, "dashboard uses undocumented \(dashboard.subtracting(documented).sorted())")
        #expect(alerts.subtracting(documented).isEmpty, "alerts use undocumented \(alerts.subtracting(documented).sorted())")
        #expect(documented.subtracting(dashboard).isEmpty, "dashboard lacks \(documented.subtracting(dashboard).sorted())")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.root.appendingPathComponent("appliance/observability/grafana-dashboard.json")))
        #expect((json as? [String: Any])?["panels"] is [Any])
        // One series per target: PromQL's `a or b` keeps only b's series whose labels a lacks, and a
        // panel joining three sums by platform so showed the first alone.
        let joined = try NSRegularExpression(pattern: #""expr": "[^"]* or [^"]*""#)
        let dashboardText = try String(contentsOf: Self.root.appendingPathComponent("appliance/observability/grafana-dashboard.json"), encoding: .utf8)
        #expect(joined.numberOfMatches(in: dashboardText, range: NSRange(dashboardText.startIndex..., in: dashboardText)) == 0)
        let rules = try String(contentsOf: Self.root.appendingPathComponent("appliance/observability/prometheus-alerts.yml"), encoding: .utf8)
        for alert in ["SentinelDeadJobs", "SentinelWebhookDeliveriesFailing", "SentinelReviewRunsFailing", "SentinelAIProviderCircuitOpen", "SentinelDiskFilling"] {
            #expect(rules.contains("alert: \(alert)"), "\(alert) missing")
        }
    }

    @Test("/metrics answers only the address blocks of observability.metrics_allowed_cidrs (loopback and private networks by default); others get 403 naming the key; a block that does not parse is a configuration error")
    func metricsAllowedFrom() async throws {
        func scrape(_ world: GitHubWorld) async throws -> (Int, String) {
            let response = try await world.http.execute(HTTPClientRequest(url: "http://127.0.0.1:\(world.port)/metrics"), timeout: .seconds(10))
            return (Int(response.status.code), String(buffer: try await response.body.collect(upTo: 8 << 20)))
        }
        let byDefault = try await GitHubWorld()
        let (open, text) = try await scrape(byDefault)
        #expect(open == 200 && text.contains("sentinel_workspaces_open"), "\(text.prefix(300))")
        await byDefault.stop()

        let elsewhere = try await GitHubWorld { config in config.observability.metricsAllowedCIDRs = "10.0.0.0/8, fd00::/8" }
        let (refused, problem) = try await scrape(elsewhere)
        #expect(refused == 403)
        #expect(problem.contains("metrics are answered only to the addresses in observability.metrics_allowed_cidrs; this request came from 127.0.0.1"),
                "\(problem)")
        #expect(!problem.contains("sentinel_"), "no figure leaks into the refusal")
        await elsewhere.stop()

        var config = SentinelConfig()
        config.observability.metricsAllowedCIDRs = "10.0.0.0/8, prometheus.internal"
        #expect(throws: ConfigError.self) { try config.observability.metricsAllowedRanges() }
        #expect(try SentinelConfig().observability.metricsAllowedRanges().count == 6)
        // A block written IPv4-mapped matches the IPv4 client it stands for (it matched nobody), and the other way round.
        func matches(_ block: String, _ address: String) throws -> Bool {
            try #require(IPRange(block)).contains(try #require(IPAddress(address)))
        }
        #expect(try matches("::ffff:127.0.0.1/128", "127.0.0.1"))
        #expect(try !matches("::ffff:127.0.0.1/128", "127.0.0.2"))
        #expect(try matches("::ffff:10.0.0.0/104", "10.9.8.7"))
        #expect(try matches("127.0.0.0/8", "::ffff:127.0.0.1"))
        #expect(try !matches("::1/128", "127.0.0.1"))
    }
}
