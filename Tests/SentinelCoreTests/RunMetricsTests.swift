import Foundation
import GRDB
import MetricsTestKit
@testable import SentinelCore
import SentinelTestSupport
import Testing

/// `sentinel_review_runs_total` counts every run that ends, however it ends, once, when the end
/// is committed: runs the review job finishes, and runs cancelled, closed or superseded elsewhere.
@Suite("Run outcome metrics")
struct RunMetricsTests {
    @Test("cancelled, closed and superseded runs are counted once each; a rolled-back end is not counted")
    func everyEndCounted() async throws {
        let recorded = TestMetrics()
        let h = try TestHarness(metrics: SentinelMetrics(factory: recorded))
        let ws = try h.createWorkspace()
        @Sendable func count(_ outcome: String, _ reason: String) -> Int64 {
            recorded.counterTotal(label: "sentinel_review_runs_total", dimensions: [("outcome", outcome), ("reason", reason)])
        }
        let repo = try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in
                try tx.db.execute(sql: "INSERT INTO integrations (id, kind, api_url, webhook_secret, created_at) VALUES ('int_metrics000000001', 'github', 'x', x'00', 0)")
                return try RepositoryStore.register(integrationID: IntegrationID("int_metrics000000001")!, externalID: 1, fullName: "acme/api",
                                                    installationID: 1, in: &tx)
            }
        }
        try await h.supervisor.withWorkspace(ws) { actor in
            // A push supersedes the open run of the previous head.
            _ = try await actor.write { tx in
                try ReviewRunStore.request(repository: repo, prNumber: 1, headSHA: "a1", baseSHA: nil, trigger: "opened", fullReview: false,
                                           correlationID: nil, in: &tx)
            }
            let pushed = try await actor.write { tx in
                try ReviewRunStore.request(repository: repo, prNumber: 1, headSHA: "b1", baseSHA: nil, trigger: "push", fullReview: false,
                                           correlationID: nil, in: &tx).0
            }
            #expect(count("superseded", "newer_head") == 1)
            _ = try await actor.write { tx in try ReviewRunStore.cancel(runID: pushed, by: "usr_test", in: &tx) }
            #expect(count("skipped", "cancelled") == 1)
            _ = try await actor.write { tx in
                try ReviewRunStore.request(repository: repo, prNumber: 2, headSHA: "c1", baseSHA: nil, trigger: "opened", fullReview: false,
                                           correlationID: nil, in: &tx)
            }
            // Ended inside a body that then fails: its savepoint rolls back, nothing is counted.
            struct Refused: Error {}
            await #expect(throws: Refused.self) {
                try await actor.write { tx in
                    _ = try ReviewRunStore.closePullRequest(repositoryID: repo.id, prNumber: 2, in: &tx)
                    throw Refused()
                }
            }
            #expect(count("skipped", "closed") == 0)
            let closed = try await actor.write { tx in try ReviewRunStore.closePullRequest(repositoryID: repo.id, prNumber: 2, in: &tx) }
            #expect(closed == 1)
            #expect(count("skipped", "closed") == 1)
            // Cancelling a run that already ended changes nothing and counts nothing.
            await #expect(throws: StorageError.self) {
                try await actor.write { tx in try ReviewRunStore.cancel(runID: pushed, by: "usr_test", in: &tx) }
            }
        }
        #expect(recorded.counterTotal(label: "sentinel_review_runs_total") == 3)

        // A running run whose review is stored to be posted is no longer cancelled (its job may be
        // posting it now); before that it is.
        try await h.supervisor.withWorkspace(ws) { actor in
            let (posting, running) = try await actor.write { tx in
                let posting = try ReviewRunStore.request(repository: repo, prNumber: 3, headSHA: "d1", baseSHA: nil, trigger: "opened", fullReview: false,
                                                         correlationID: nil, in: &tx).0
                let running = try ReviewRunStore.request(repository: repo, prNumber: 4, headSHA: "e1", baseSHA: nil, trigger: "opened", fullReview: false,
                                                         correlationID: nil, in: &tx).0
                try ReviewRunStore.markRunning(posting, in: &tx)
                try ReviewRunStore.markRunning(running, in: &tx)
                try ReviewRunStore.storePrepared(PreparedReview(body: "b", findings: [], requestChanges: false, conclusion: "success", title: "No findings",
                                                                checkSummary: "", filesReviewed: 1, filesTotal: 1, summary: ""), runID: posting, in: tx.db)
                return (posting, running)
            }
            await #expect(throws: StorageError.conflict("run \(posting) has its review ready and is posting it; it can no longer be cancelled")) {
                try await actor.write { tx in try ReviewRunStore.cancel(runID: posting, by: "usr_test", in: &tx) }
            }
            #expect(try await actor.read { db in try ReviewRunStore.find(posting, in: db)?.state } == .running)
            #expect(try await actor.write { tx in try ReviewRunStore.cancel(runID: running, by: "usr_test", in: &tx).state } == .skipped)
        }
        await h.stop()
    }
}

/// `sentinel_http_requests_total`, its latency and `sentinel_webhook_deliveries_total` are recorded
/// through handles kept by their dimensions (made once, not per request).
@Suite("Per-request metrics")
struct PerRequestMetricsTests {
    @Test("requests and deliveries with the same dimensions add up on one series, copies of the metrics included; other dimensions get their own")
    func keptHandlesAddUp() throws {
        let recorded = TestMetrics()
        let metrics = SentinelMetrics(factory: recorded)
        let copy = metrics
        for _ in 0..<3 { metrics.httpRequest(method: "POST", route: "/webhooks/github/{integration_id}", status: 202, duration: .milliseconds(2)) }
        copy.httpRequest(method: "POST", route: "/webhooks/github/{integration_id}", status: 202, duration: .milliseconds(4))
        metrics.httpRequest(method: "POST", route: "/webhooks/github/{integration_id}", status: 401, duration: .milliseconds(1))
        metrics.httpRequest(method: "GET", route: "/healthz", status: 200, duration: .microseconds(50))
        metrics.webhook(platform: "github", outcome: "accepted")
        copy.webhook(platform: "github", outcome: "accepted")
        metrics.webhook(platform: "gitlab", outcome: "accepted")
        metrics.webhook(platform: "github", outcome: "duplicate")
        func requests(_ method: String, _ route: String, _ status: String) -> Int64 {
            recorded.counterTotal(label: "sentinel_http_requests_total", dimensions: [("method", method), ("route", route), ("status", status)])
        }
        #expect(requests("POST", "/webhooks/github/{integration_id}", "202") == 4)
        #expect(requests("POST", "/webhooks/github/{integration_id}", "401") == 1)
        #expect(requests("GET", "/healthz", "200") == 1)
        let latency = try recorded.expectTimer("sentinel_http_request_duration_seconds",
                                               [("method", "POST"), ("route", "/webhooks/github/{integration_id}"), ("status", "202")])
        #expect(latency.values == [2_000_000, 2_000_000, 2_000_000, 4_000_000])
        func deliveries(_ platform: String, _ outcome: String) -> Int64 {
            recorded.counterTotal(label: "sentinel_webhook_deliveries_total", dimensions: [("platform", platform), ("outcome", outcome)])
        }
        #expect(deliveries("github", "accepted") == 2)
        #expect(deliveries("gitlab", "accepted") == 1)
        #expect(deliveries("github", "duplicate") == 1)
    }
}
