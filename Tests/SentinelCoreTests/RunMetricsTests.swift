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
        await h.stop()
    }
}
