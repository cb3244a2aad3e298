import Foundation
import GRDB
import SentinelCore
import SentinelTestSupport
import Testing

/// A model that reports a fixed usage per call and counts its calls; `onCall` runs inside a call
/// (e.g. another run spending meanwhile).
struct MeteredFakeModel: ReviewModel {
    let tracker: EngineCallTracker
    let tokensPerCall: Int
    var onCall: @Sendable (Int) async throws -> Void = { _ in }

    func complete(_ prompt: ReviewPrompt) async throws -> ModelReply {
        await tracker.enter()
        let n = await tracker.calls[""] ?? 0
        try await onCall(n)
        await tracker.exit()
        return ModelReply(text: #"{"summary": "ok", "findings": []}"#,
                          usage: TokenUsage(inputTokens: tokensPerCall - 100, outputTokens: 100), provider: "prv_fake", model: "fake-1")
    }
}

@Suite("Engine: spend limits", .serialized)
struct EngineSpendTests {
    /// `count` small files, each its own chunk (the chunk budget fits one file).
    static func files(_ count: Int) throws -> [DiffFile] {
        var text = ""
        for i in 0..<count {
            text += "diff --git a/src/f\(i).swift b/src/f\(i).swift\n--- a/src/f\(i).swift\n+++ b/src/f\(i).swift\n"
            text += "@@ -1,1 +1,2 @@\n let a\(i) = \(i)\n+let b\(i) = a\(i) + \(String(repeating: "1", count: 3_000))\n"
        }
        return try UnifiedDiff.parse(text)
    }

    static func options() -> ReviewOptions {
        var options = ReviewOptions()
        options.builtinChecks = false
        options.chunkTokenBudget = 2_000
        options.maxParallelChunks = 1
        return options
    }

    @Test("a run budget smaller than the pull request makes fewer calls and names the files it did not review")
    func runBudgetStopsCalls() async throws {
        let files = try Self.files(5)
        var options = Self.options()
        let unlimited = EngineCallTracker()
        let all = await ReviewEngine.review(files: files, options: options, model: MeteredFakeModel(tracker: unlimited, tokensPerCall: 10_000))
        #expect(all.chunkCount == 5)
        #expect(await unlimited.calls[""] == 5)
        #expect(all.coverage.notReviewed.isEmpty)

        // 10,000 tokens per call: after two calls 20,000 are spent and the third call's estimate
        // (its prompt plus the expected reply) no longer fits in 22,000.
        options.maxTokensPerRun = 22_000
        let tracker = EngineCallTracker()
        let result = await ReviewEngine.review(files: files, options: options, model: MeteredFakeModel(tracker: tracker, tokensPerCall: 10_000))
        #expect(await tracker.calls[""] == 2)
        #expect(result.usage.count == 2)
        #expect(result.totalUsage.totalTokens <= 22_000)
        #expect(result.coverage.notReviewed == ["src/f2.swift", "src/f3.swift", "src/f4.swift"])
        #expect(result.coverage.reviewedFiles == 2)
        #expect(result.coverage.skipped[.aiLimitReached] == 3 && result.coverage.skipped[.overBudget] == nil)
        #expect(result.coverage.sentence.contains("AI spend limit reached (3)"), "\(result.coverage.sentence)")
        let sentence = result.coverage.sentence
        #expect(sentence.contains("`src/f2.swift`") && sentence.contains("`src/f4.swift`"), "\(sentence)")
        #expect(sentence.contains("review.max_tokens_per_run"), "\(sentence)")
        guard case .partial(let failed, let total, _) = result.aiStatus else { Issue.record("\(result.aiStatus)"); return }
        #expect(failed == 3 && total == 5)
        #expect(result.summary.contains("`src/f3.swift`"))
    }

    @Test("a provider that reports no usage (or 1 token for a long prompt) is metered at the estimate: the run budget still stops the calls")
    func missingUsageIsEstimated() async throws {
        let files = try Self.files(5)
        var options = Self.options()
        // Each prompt is about 1,000 tokens by the estimate (3,000 characters of code, the rules and
        // schema); with 2,000 expected for the answer a call is admitted while 3,000 tokens are left.
        options.maxTokensPerRun = 5_000
        for reported in [0, 1] {
            let tracker = EngineCallTracker()
            let result = await ReviewEngine.review(files: files, options: options, model: MeteredFakeModel(tracker: tracker, tokensPerCall: 100 + reported))
            let calls = await tracker.calls[""] ?? 0
            #expect(calls < 5, "\(calls) calls: the budget counted unreported usage as free")
            #expect(result.usage.allSatisfy { $0.usage.inputTokens >= 500 }, "\(result.usage.map(\.usage))")
            #expect(!result.coverage.notReviewed.isEmpty)
        }
        // A provider that reports usage keeps its own figures.
        let tracker = EngineCallTracker()
        let reported = await ReviewEngine.review(files: try Self.files(1), options: Self.options(), model: MeteredFakeModel(tracker: tracker, tokensPerCall: 10_000))
        #expect(reported.usage.map(\.usage) == [TokenUsage(inputTokens: 9_900, outputTokens: 100)])
    }

    /// A workspace with a repository and two queued runs (usage rows reference their run).
    static func workspaceWithRuns(_ h: TestHarness) async throws -> (WorkspaceID, Int64, Int64) {
        let ws = try h.createWorkspace()
        let (a, b) = try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in
                try tx.db.execute(sql: "INSERT INTO integrations (id, kind, api_url, webhook_secret, created_at) VALUES ('int_spend00000000001', 'github', 'x', x'00', 0)")
                let repo = try RepositoryStore.register(integrationID: IntegrationID("int_spend00000000001")!, externalID: 1, fullName: "acme/api",
                                                        installationID: 1, in: &tx)
                let a = try ReviewRunStore.request(repository: repo, prNumber: 1, headSHA: "a1", baseSHA: nil, trigger: "opened", fullReview: false,
                                                   correlationID: nil, in: &tx).0
                let b = try ReviewRunStore.request(repository: repo, prNumber: 2, headSHA: "b1", baseSHA: nil, trigger: "opened", fullReview: false,
                                                   correlationID: nil, in: &tx).0
                return (a, b)
            }
        }
        return (ws, a, b)
    }

    @Test("the workspace AI budget spent by another run meanwhile refuses this run's next call; each call is recorded as it returns")
    func budgetSpentByAnotherRunMidRun() async throws {
        let h = try TestHarness()
        let (ws, runA, runB) = try await Self.workspaceWithRuns(h)
        let store = ProviderStore(masterKey: try MasterKey.load(at: h.dataDirectory.masterKeyFile))
        try await h.supervisor.withWorkspace(ws) { actor in
            try await store.setMonthlyBudget(1.0, by: "test", in: actor)
            let guardB = RunSpendGuard(workspace: actor, runID: runB, jobAttempt: 1, repository: "acme/api", plan: nil, cost: { _ in 2.5 })
            let guardA = RunSpendGuard(workspace: actor, runID: runA, jobAttempt: 1, repository: "acme/api", plan: nil, cost: { _ in 0.01 })
            let tracker = EngineCallTracker()
            // While run A's first call is out, run B makes (and pays for) a call that spends the budget.
            let model = MeteredFakeModel(tracker: tracker, tokensPerCall: 1_000) { n in
                guard n == 1 else { return }
                try await guardB.admit(estimatedTokens: 1_000)
                await guardB.settle(estimatedTokens: 1_000, call: ModelCallRecord(chunk: 0, attempt: 1, provider: "prv_fake", model: "fake-1",
                                                                                  usage: TokenUsage(inputTokens: 900, outputTokens: 100), parsed: true))
            }
            let result = await ReviewEngine.review(files: try Self.files(3), options: Self.options(), model: model, gate: guardA)
            #expect(await tracker.calls[""] == 1, "the second call of run A is refused")
            #expect(result.coverage.notReviewed == ["src/f1.swift", "src/f2.swift"])
            #expect(result.coverage.notReviewedReason == ProviderRouter.SkipReason.budgetSpent)
            // Both runs' calls are in the usage table already (not only at the end of a run).
            let runs = try await actor.read { db in try Int64.fetchAll(db, sql: "SELECT run_id FROM usage_records ORDER BY id") }
            #expect(runs == [runB, runA])
            #expect(try await actor.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM events WHERE type = 'UsageRecorded'") } == 2)
        }
        await h.stop()
    }

    @Test("calls in flight count against the AI budget: parallel chunks cannot together overshoot it by more than one call")
    func budgetReservedForCallsInFlight() async throws {
        let h = try TestHarness()
        let (ws, runA, _) = try await Self.workspaceWithRuns(h)
        let store = ProviderStore(masterKey: try MasterKey.load(at: h.dataDirectory.masterKeyFile))
        try await h.supervisor.withWorkspace(ws) { actor in
            try await store.setMonthlyBudget(1.0, by: "test", in: actor)
            // 0.875 USD spent this month in 7 calls: one more call of about 0.125 reaches the budget.
            try await actor.write { tx in
                for i in 0..<7 {
                    try tx.db.execute(sql: """
                        INSERT INTO usage_records (run_id, call_key, provider, model, input_tokens, output_tokens, cost_usd, recorded_at)
                        VALUES (NULL, ?, 'prv_fake', 'fake-1', 900, 100, 0.125, ?)
                        """, arguments: ["history:\(i)", tx.now.timeIntervalSince1970])
                }
            }
            let gate = RunSpendGuard(workspace: actor, runID: runA, jobAttempt: 1, repository: "acme/api", plan: nil, cost: { _ in 0.125 })
            var options = Self.options()
            options.maxParallelChunks = 4
            let tracker = EngineCallTracker()
            // Each call takes a while, so all four chunks ask for admission while the first is out.
            let model = MeteredFakeModel(tracker: tracker, tokensPerCall: 1_000) { _ in try await Task.sleep(for: .milliseconds(300)) }
            let result = await ReviewEngine.review(files: try Self.files(4), options: options, model: model, gate: gate)
            #expect(await tracker.calls[""] == 1, "only one call fits in what is left of the budget")
            #expect(result.coverage.notReviewed.count == 3)
            // Refused for what the call in flight may spend, said so: the budget itself is not spent (it said it was).
            #expect(result.coverage.notReviewedReason?.hasPrefix("the AI budget for this period would be spent by the calls in flight (0.875 of 1.00 USD spent") == true,
                    "\(String(describing: result.coverage.notReviewedReason))")
        }
        await h.stop()
    }

    @Test("a job given back at shutdown runs the same attempt number again: its calls still count (they collided with the first claim's and were dropped)")
    func callsOfAReclaimedAttemptCount() async throws {
        let h = try TestHarness()
        let (ws, runA, _) = try await Self.workspaceWithRuns(h)
        let count = try await h.supervisor.withWorkspace(ws) { actor -> Int in
            let call = ModelCallRecord(chunk: 0, attempt: 1, provider: "prv_fake", model: "fake-1", usage: TokenUsage(inputTokens: 900, outputTokens: 100),
                                       parsed: true)
            for claimedAt in [1_000.25, 2_000.5] {
                try await actor.write { tx in
                    try UsageLedger.record([(call: call, costUSD: 0.1)], runID: runA, repository: "acme/api", jobAttempt: 1, claimedAt: claimedAt, in: &tx)
                    // The same call recorded twice within one claim (the gate, then the prepared review) is one.
                    try UsageLedger.record([(call: call, costUSD: 0.1)], runID: runA, repository: "acme/api", jobAttempt: 1, claimedAt: claimedAt, in: &tx)
                }
            }
            return try await actor.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM usage_records WHERE run_id = ?", arguments: [runA]) ?? 0 }
        }
        #expect(count == 2)
        await h.stop()
    }

    @Test("the plan's token limit is checked before every call, not only at run start")
    func planTokensCheckedPerCall() async throws {
        let h = try TestHarness()
        let (ws, runA, _) = try await Self.workspaceWithRuns(h)
        try await h.supervisor.withWorkspace(ws) { actor in
            let plan = Plan(name: "small", reviewsPerMonth: nil, tokensPerMonth: 25_000, repositories: nil, seats: nil)
            let gate = RunSpendGuard(workspace: actor, runID: runA, jobAttempt: 1, repository: "acme/api", plan: plan)
            let tracker = EngineCallTracker()
            let result = await ReviewEngine.review(files: try Self.files(5), options: Self.options(),
                                                   model: MeteredFakeModel(tracker: tracker, tokensPerCall: 10_000), gate: gate)
            // 0 → 10k → 20k used: the third call is still under the limit, the fourth is not.
            #expect(await tracker.calls[""] == 3)
            #expect(result.coverage.notReviewed == ["src/f3.swift", "src/f4.swift"])
            #expect(result.coverage.notReviewedReason?.hasPrefix("plan_limit:") == true)
        }
        await h.stop()
    }

    @Test("calls in flight count against the limits across runs: a third run's call is refused once two runs' calls in flight reach the plan's tokens")
    func inFlightSharedAcrossRuns() async throws {
        let h = try TestHarness()
        let (ws, runA, runB) = try await Self.workspaceWithRuns(h)
        try await h.supervisor.withWorkspace(ws) { actor in
            let plan = Plan(name: "small", reviewsPerMonth: nil, tokensPerMonth: 10_000, repositories: nil, seats: nil)
            let guards = [runA, runB, runA + runB].map { RunSpendGuard(workspace: actor, runID: $0, jobAttempt: 1, repository: "acme/api", plan: plan) }
            try await guards[0].admit(estimatedTokens: 6_000)
            try await guards[1].admit(estimatedTokens: 6_000)
            // Each run saw only its own calls in flight: the third started as if nothing were spent.
            await #expect {
                try await guards[2].admit(estimatedTokens: 6_000)
            } throws: { error in
                (error as? ModelCallRefused)?.reason.contains("12000 more by calls in flight") == true
            }
            #expect(actor.spendInFlight.current.calls == 2)
            await guards[0].settle(estimatedTokens: 6_000, call: nil)
            await guards[1].settle(estimatedTokens: 6_000, call: nil)
            #expect(actor.spendInFlight.current == SpendInFlight.Totals())
            try await guards[2].admit(estimatedTokens: 6_000)
            await guards[2].settle(estimatedTokens: 6_000, call: nil)
        }
        await h.stop()
    }

    @Test("the first calls of a month are priced before they are made: a budget of 1 USD admits calls until their estimates reach it, not all at once")
    func firstCallsPricedBeforehand() async throws {
        let h = try TestHarness()
        let (ws, runA, _) = try await Self.workspaceWithRuns(h)
        let store = ProviderStore(masterKey: try MasterKey.load(at: h.dataDirectory.masterKeyFile))
        try await h.supervisor.withWorkspace(ws) { actor in
            try await store.setMonthlyBudget(1.0, by: "test", in: actor)
            let gate = RunSpendGuard(workspace: actor, runID: runA, jobAttempt: 1, repository: "acme/api", plan: nil, estimate: { _ in 0.6 })
            try await gate.admit(estimatedTokens: 40_000)
            try await gate.admit(estimatedTokens: 40_000)
            // Nothing returned yet, nothing spent this month: every call was guessed free, and eight went out.
            await #expect(throws: ModelCallRefused.self) { try await gate.admit(estimatedTokens: 40_000) }
            #expect(abs(actor.spendInFlight.current.usd - 1.2) < 1e-9)
        }
        await h.stop()
    }

    @Test("a plan limit reached by another run before this run's first call: the AI review is refused with the limit's reason, not failed")
    func limitReachedBeforeEveryCallSkips() async throws {
        let h = try TestHarness()
        let (ws, runA, _) = try await Self.workspaceWithRuns(h)
        try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in
                try tx.db.execute(sql: """
                    INSERT INTO usage_records (run_id, call_key, provider, model, input_tokens, output_tokens, cost_usd, recorded_at)
                    VALUES (NULL, 'history:0', 'prv_fake', 'fake-1', 20000, 5000, 0.1, ?)
                    """, arguments: [tx.now.timeIntervalSince1970])
            }
            let plan = Plan(name: "small", reviewsPerMonth: nil, tokensPerMonth: 25_000, repositories: nil, seats: nil)
            let gate = RunSpendGuard(workspace: actor, runID: runA, jobAttempt: 1, repository: "acme/api", plan: plan)
            let tracker = EngineCallTracker()
            let result = await ReviewEngine.review(files: try Self.files(3), options: Self.options(),
                                                   model: MeteredFakeModel(tracker: tracker, tokensPerCall: 10_000), gate: gate)
            #expect(await tracker.calls[""] == nil)
            guard case .refused(let reason) = result.aiStatus else { Issue.record("\(result.aiStatus)"); return }
            #expect(reason.hasPrefix("plan_limit:"), "\(reason)")
            #expect(result.aiStatus.description.hasPrefix("AI review skipped: plan_limit:"))
        }
        await h.stop()
    }

    @Test("a run cancelled while its engine works makes no further model call")
    func cancelledRunStopsCalling() async throws {
        let h = try TestHarness()
        let (ws, runA, _) = try await Self.workspaceWithRuns(h)
        try await h.supervisor.withWorkspace(ws) { actor in
            let gate = RunSpendGuard(workspace: actor, runID: runA, jobAttempt: 1, repository: "acme/api", plan: nil,
                                     stopReason: { db in try ReviewRunStore.stopReason(runA, in: db) })
            let tracker = EngineCallTracker()
            // The second call's model answers after someone cancelled the run.
            let model = MeteredFakeModel(tracker: tracker, tokensPerCall: 1_000) { n in
                if n == 2 { _ = try await actor.write { tx in try ReviewRunStore.cancel(runID: runA, by: "usr_test", in: &tx) } }
            }
            let result = await ReviewEngine.review(files: try Self.files(5), options: Self.options(), model: model, gate: gate)
            #expect(await tracker.calls[""] == 2, "two calls, then none")
            #expect(result.coverage.notReviewed.count == 3)
            #expect(result.aiStatus.description.contains("the run ended (skipped: cancelled by usr_test)"), "\(result.aiStatus)")
        }
        await h.stop()
    }

    @Test("an unreadable usage table refuses every model call")
    func unreadableUsageFailsClosed() async throws {
        let h = try TestHarness()
        let (ws, runA, _) = try await Self.workspaceWithRuns(h)
        try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in try tx.db.execute(sql: "ALTER TABLE usage_months RENAME TO usage_months_moved") }
            let gate = RunSpendGuard(workspace: actor, runID: runA, jobAttempt: 1, repository: "acme/api", plan: nil)
            let tracker = EngineCallTracker()
            let result = await ReviewEngine.review(files: try Self.files(2), options: Self.options(),
                                                   model: MeteredFakeModel(tracker: tracker, tokensPerCall: 1_000), gate: gate)
            #expect(await tracker.calls[""] == nil, "no call is made")
            #expect(result.coverage.notReviewed.count == 2)
            guard case .failed(let reason) = result.aiStatus else { Issue.record("\(result.aiStatus)"); return }
            #expect(reason.contains("usage could not be read"), "\(reason)")
        }
        await h.stop()
    }
}
