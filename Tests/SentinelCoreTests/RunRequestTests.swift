import Foundation
import GRDB
@testable import SentinelCore
import SentinelTestSupport
import Testing

/// Which webhook events make a review run of a pull request's head, when runs of that head exist.
@Suite("Run requests")
struct RunRequestTests {
    let harness: TestHarness
    let workspace: WorkspaceID
    let repository: RepositoryRecord

    init() async throws {
        harness = try TestHarness()
        workspace = try harness.createWorkspace()
        repository = try await harness.supervisor.withWorkspace(workspace) { actor in
            try await actor.write { tx in
                try tx.db.execute(sql: "INSERT INTO integrations (id, kind, api_url, webhook_secret, created_at) VALUES ('int_requests00000001', 'github', 'x', x'00', 0)")
                return try RepositoryStore.register(integrationID: IntegrationID("int_requests00000001")!, externalID: 1, fullName: "acme/api",
                                                    installationID: 1, in: &tx)
            }
        }
    }

    func request(_ head: String, _ trigger: String) async throws -> (Int64, Bool) {
        try await harness.supervisor.withWorkspace(workspace) { [repository] actor in
            try await actor.write { tx in
                try ReviewRunStore.request(repository: repository, prNumber: 1, headSHA: head, baseSHA: "b0", trigger: trigger, fullReview: false,
                                           correlationID: nil, in: &tx)
            }
        }
    }

    func runs() async throws -> [ReviewRun] {
        try await harness.supervisor.withWorkspace(workspace) { try await $0.read { db in try ReviewRunStore.list(in: db) } }.sorted { $0.id < $1.id }
    }

    @Test("reopened twice at one head, closed again before the first reopening's run started: the second reopening gets a run of its own (it found the skipped run and nothing was reviewed, for good)",
          arguments: [("reopened", RunState.skipped), ("ready_for_review", .skipped), ("reopened", .superseded), ("reopened", .failed)])
    func reopenedAgain(trigger: String, ended: RunState) async throws {
        let (first, created) = try await request("a1", trigger)
        #expect(created)
        try await harness.supervisor.withWorkspace(workspace) { actor in
            _ = try await actor.write { tx in
                try ReviewRunStore.finish(runID: first, state: ended, reason: ReviewRunStore.closedReason, label: "closed", in: &tx)
            }
        }
        let (second, createdAgain) = try await request("a1", trigger)
        #expect(createdAgain && second != first)
        // While that run waits, the event again (a resend) is the same run.
        let (third, createdThird) = try await request("a1", trigger)
        #expect(!createdThird && third == second)
        #expect(try await runs().map(\.trigger) == [trigger, "\(trigger):2"])
        #expect(ReviewRunStore.event(ofTrigger: "\(trigger):2") == trigger)
        #expect(ReviewRunner.effectiveTrigger(try #require(try await runs().last), lastReviewedSHA: nil) == trigger)
    }

    @Test("the reopening of a head the pull request has moved on from, sent again, makes no run: it superseded the current head's run mid-review, and was superseded in turn")
    func resentReopeningOfOldHead() async throws {
        let (first, _) = try await request("a1", "reopened")
        _ = try await request("b2", "push")
        #expect(try await runs().map(\.state) == [.superseded, .queued])
        #expect(try await request("a1", "reopened") == (first, false))
        #expect(try await runs().map(\.state) == [.superseded, .queued])
    }

    @Test("a push redelivered for a head whose run ended is not reviewed again; nor is a reopening of a head a review completed for")
    func otherTriggersStay() async throws {
        let (pushed, _) = try await request("a1", "push")
        let (completed, _) = try await request("c1", "opened")
        try await harness.supervisor.withWorkspace(workspace) { actor in
            _ = try await actor.write { tx in
                try tx.db.execute(sql: "UPDATE review_runs SET state = 'completed' WHERE id = ?", arguments: [completed])
            }
        }
        #expect(try await request("a1", "push") == (pushed, false))
        #expect(try await request("c1", "reopened") == (completed, false))
    }

    @Test("a late webhook of an older push supersedes the new head's run; the old head's run, finding the pull request at the new head, requests a run of it (nothing reviewed the head until the next sweep)")
    func supersededHeadRequestedAgain() async throws {
        let (newHead, _) = try await request("b2", "push")
        let (late, _) = try await request("a2", "push")
        #expect(try await runs().map(\.state) == [.superseded, .queued])
        let pull = PullRequestInfo(headSHA: "b2", baseSHA: "b0", isDraft: false, isOpen: true, fromFork: false, title: "t")
        try await harness.supervisor.withWorkspace(workspace) { [repository] actor in
            let run = try #require(try await actor.read { db in try ReviewRunStore.find(late, in: db) })
            try await actor.write { tx in try ReviewRunStore.supersede(run, movedTo: pull, repository: repository, reason: "moved", in: &tx) }
        }
        let after = try await runs()
        #expect(after.map(\.state) == [.superseded, .superseded, .queued] && after.map(\.headSHA) == ["b2", "a2", "b2"], "\(after)")
        #expect(after.last?.trigger == ReviewRunStore.reconcileTrigger && after.first?.id == newHead)
        // Superseded once more the same way, the catch-up run is not asked for twice (the sweep's rule).
        let (later, _) = try await request("a3", "push")
        try await harness.supervisor.withWorkspace(workspace) { [repository] actor in
            let run = try #require(try await actor.read { db in try ReviewRunStore.find(later, in: db) })
            try await actor.write { tx in try ReviewRunStore.supersede(run, movedTo: pull, repository: repository, reason: "moved", in: &tx) }
        }
        #expect(try await runs().map(\.state) == [.superseded, .superseded, .superseded, .superseded])
    }

    @Test("a pull request moved back to a target branch it had, at the same head, is reviewed again (that branch moved on); a branch name with _ or % is matched as written",
          arguments: ["release", "rel_1%x"])
    func retargetedAgain(branch: String) async throws {
        let trigger = "retargeted:\(branch)"
        let (first, _) = try await request("a1", trigger)
        // A branch whose name a LIKE pattern would also match is not counted as this one's.
        _ = try await request("a1", "retargeted:relx1yx")
        try await harness.supervisor.withWorkspace(workspace) { actor in
            _ = try await actor.write { tx in try ReviewRunStore.finish(runID: first, state: .completed, reason: nil, label: "completed", in: &tx) }
        }
        let (again, created) = try await request("a1", trigger)
        #expect(created && again != first)
        #expect(try await runs().last?.trigger == "\(trigger):2")
        #expect(try await request("a1", trigger) == (again, false), "a run waiting stands for the event again")
        // Sent again once that run ended, with no move away between, it is the same event: no third review.
        try await harness.supervisor.withWorkspace(workspace) { actor in
            _ = try await actor.write { tx in try ReviewRunStore.finish(runID: again, state: .completed, reason: nil, label: "completed", in: &tx) }
        }
        #expect(try await request("a1", trigger) == (again, false))
    }

    @Test("a change of the target branch of a reviewed pull request follows review.auto_review.on_push (it was reviewed with automatic reviews off); of one never reviewed (moved right after opening, superseding that review), on_open")
    func retargetFollowsOnPush() async throws {
        let runner = ReviewRunner(connector: SourceControlPlatforms([:]))
        var values = PolicySchema.defaults
        values["review.auto_review.on_push"] = .bool(false)
        let pull = PullRequestInfo(headSHA: "a1", baseSHA: "b0", isDraft: false, isOpen: true, fromFork: false, title: "t")
        _ = try await request("a1", "retargeted:release")
        let run = try #require(try await runs().first)
        #expect(runner.skipReasonAndLabel(run: run, pr: pull, policy: ReviewPolicy(values: values), lastReviewedSHA: "a0")?.label == "push_not_reviewed")
        #expect(runner.skipReasonAndLabel(run: run, pr: pull, policy: ReviewPolicy(values: values), lastReviewedSHA: nil) == nil)
        values["review.auto_review.on_open"] = .bool(false)
        #expect(runner.skipReasonAndLabel(run: run, pr: pull, policy: ReviewPolicy(values: values), lastReviewedSHA: nil)?.label == "open_not_reviewed")
        #expect(runner.skipReasonAndLabel(run: run, pr: pull, policy: .defaults, lastReviewedSHA: "a0") == nil)
    }
}

