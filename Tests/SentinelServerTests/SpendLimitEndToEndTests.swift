import Foundation
import GRDB
import SentinelCore
import SentinelServer
import SentinelTestSupport
import Testing

@Suite("Spend limits end to end", .serialized)
struct SpendLimitEndToEndTests {
    struct UnlimitedPlan: BillingProvider {
        func plan(for workspace: WorkspaceID) async throws -> Plan {
            Plan(name: "enterprise", reviewsPerMonth: nil, tokensPerMonth: nil, repositories: nil, seats: nil)
        }
    }

    @Test("an unreadable usage table fails closed: no request reaches the model, the run completes on the built-in checks")
    func unreadableUsageTableFailsClosed() async throws {
        let llm = try await FakeLLMServer.start()
        // No plan token limit, so nothing else reads the usage table before the model call.
        let world = try await GitHubWorld(billing: UnlimitedPlan())
        let store = ProviderStore(masterKey: world.appliance.integrations.masterKey)
        _ = try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            _ = try await store.add(kind: "openai", apiKey: FakeLLMServer.defaultKeys[.openAI]!, model: "gpt-4o-mini", baseURL: llm.openAIBaseURL,
                                    by: "test", in: actor)
            try await actor.write { tx in try tx.db.execute(sql: "ALTER TABLE usage_months RENAME TO usage_months_lost") }
        }
        await llm.state.setReview(summary: "Fine.", findings: [])
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        #expect(await llm.state.requests().isEmpty, "no AI call without metering")
        // No #require: a failure must still reach the clean-up below.
        let review = await world.github.state.reviews(on: GitHubWorld.repo, 7).first
        #expect(review?.body.contains("usage could not be read") == true, "\(review?.body ?? "no review")")
        await world.stop()
        await llm.stop()
    }

    @Test("review.max_tokens_per_run reaches the engine: a tiny run budget sends no call and says why")
    func runBudgetFromConfig() async throws {
        let llm = try await FakeLLMServer.start()
        let world = try await GitHubWorld(billing: UnlimitedPlan()) { $0.review.maxTokensPerRun = 10 }
        let store = ProviderStore(masterKey: world.appliance.integrations.masterKey)
        _ = try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            _ = try await store.add(kind: "openai", apiKey: FakeLLMServer.defaultKeys[.openAI]!, model: "gpt-4o-mini", baseURL: llm.openAIBaseURL,
                                    by: "test", in: actor)
        }
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        #expect(await llm.state.requests().isEmpty)
        let review = await world.github.state.reviews(on: GitHubWorld.repo, 7).first
        #expect(review?.body.contains("review.max_tokens_per_run") == true && review?.body.contains("`app.py`") == true,
                "\(review?.body ?? "no review")")
        await world.stop()
        await llm.stop()
    }
}
