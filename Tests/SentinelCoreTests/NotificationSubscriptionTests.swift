import Foundation
import GRDB
import Logging
import MetricsTestKit
@testable import SentinelCore
import SentinelTestSupport
import Testing

/// The subscriptions beyond runs, plan limits and dead jobs: each event comes from where it
/// happens, and a subscribed channel gets exactly one message for it.
@Suite("Notification subscriptions")
struct NotificationSubscriptionTests {
    @Test("the month's AI spend reaching the budget notifies ai.budget once (a refused call later tells nothing new)")
    func aiBudgetReached() async throws {
        let s = try await NotificationTests.setup()
        _ = try await s.add("slack", path: "/slack/budget", topics: ["ai.budget"])
        let runID = try await s.h.supervisor.withWorkspace(s.ws) { actor in
            try await actor.write { tx in
                try tx.db.execute(sql: "INSERT INTO integrations (id, kind, api_url, webhook_secret, created_at) VALUES ('int_spend00000000001', 'github', 'x', x'00', 0)")
                let repo = try RepositoryStore.register(integrationID: IntegrationID("int_spend00000000001")!, externalID: 1, fullName: "acme/api",
                                                        installationID: 1, in: &tx)
                return try ReviewRunStore.request(repository: repo, prNumber: 1, headSHA: "a1", baseSHA: nil, trigger: "opened", fullReview: false,
                                                  correlationID: nil, in: &tx).0
            }
        }
        let providers = ProviderStore(masterKey: try MasterKey.load(at: s.h.dataDirectory.masterKeyFile))
        try await s.h.supervisor.withWorkspace(s.ws) { actor in
            try await providers.setMonthlyBudget(1.0, by: "test", in: actor)
            let gate = RunSpendGuard(workspace: actor, runID: runID, jobAttempt: 1, repository: "acme/api", plan: nil, cost: { _ in 0.6 })
            for chunk in 0..<2 {
                try await gate.admit(estimatedTokens: 100)
                await gate.settle(estimatedTokens: 100, call: ModelCallRecord(chunk: chunk, attempt: 1, provider: "prv_fake", model: "fake-1",
                                                                              usage: TokenUsage(inputTokens: 90, outputTokens: 10), parsed: true))
            }
            await #expect(throws: ModelCallRefused.self) { try await gate.admit(estimatedTokens: 100) }
        }
        s.h.startScheduler()
        #expect(await eventually { await s.receiver.state.accepted().count == 1 })
        let text = try #require(await s.receiver.state.accepted().first?.json["text"] as? String)
        #expect(text.contains("AI budget reached") && text.contains("USD 1.20 spent of 1.00"), "\(text)")
        let events = try await s.h.supervisor.withWorkspace(s.ws) { actor in
            try await actor.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM events WHERE type = 'AIBudgetReached'") }
        }
        #expect(events == 1)
        #expect(await eventually { try await s.pending() == 0 })
        #expect(await s.receiver.state.received.count == 1)
        await s.stop()
    }

    @Test("a provider whose circuit opens during a run notifies provider.circuit_open once")
    func providerCircuitOpened() async throws {
        let s = try await NotificationTests.setup()
        _ = try await s.add("slack", path: "/slack/circuit", topics: ["provider.circuit_open"])
        let llm = try await FakeLLMServer.start()
        await llm.state.inject(.status(500), api: .openAI, times: nil)
        let providers = ProviderStore(masterKey: try MasterKey.load(at: s.h.dataDirectory.masterKeyFile))
        let resolver = WorkspaceModelResolver(store: providers, http: s.http, breakers: CircuitBreakerRegistry(failureThreshold: 2),
                                              settings: RouterSettings(initialBackoff: .milliseconds(1)))
        try await s.h.supervisor.withWorkspace(s.ws) { actor in
            _ = try await providers.add(kind: "openai", apiKey: FakeLLMServer.defaultKeys[.openAI], model: "gpt-4o-mini",
                                        baseURL: llm.openAIBaseURL, by: "test", in: actor)
            let model = try #require(await resolver.model(for: actor, policy: .defaults).model)
            for _ in 0..<2 {
                await #expect(throws: ProviderRouterError.self) { _ = try await model.complete(AIFixtures.prompt) }
            }
        }
        s.h.startScheduler()
        #expect(await eventually { await s.receiver.state.accepted().count == 1 })
        let text = try #require(await s.receiver.state.accepted().first?.json["text"] as? String)
        #expect(text.contains("AI provider prv_") && text.contains("circuit is open"), "\(text)")
        #expect(await eventually { try await s.pending() == 0 })
        #expect(await s.receiver.state.received.count == 1, "the second run found the circuit open: nothing new to tell")
        await llm.stop()
        await s.stop()
    }

    @Test("a provider that refuses its key (401) notifies provider.key_refused once an hour, with the rotate command; the circuit stays closed")
    func providerKeyRefused() async throws {
        let s = try await NotificationTests.setup()
        _ = try await s.add("slack", path: "/slack/key", topics: ["provider.key_refused"])
        let llm = try await FakeLLMServer.start()
        let providers = ProviderStore(masterKey: try MasterKey.load(at: s.h.dataDirectory.masterKeyFile))
        let breakers = CircuitBreakerRegistry(failureThreshold: 2)
        let resolver = WorkspaceModelResolver(store: providers, http: s.http, breakers: breakers,
                                              settings: RouterSettings(initialBackoff: .milliseconds(1)))
        let providerID = try await s.h.supervisor.withWorkspace(s.ws) { actor in
            let added = try await providers.add(kind: "openai", apiKey: "sk-revoked-0000", model: "gpt-4o-mini",
                                                baseURL: llm.openAIBaseURL, by: "test", in: actor)
            // Three reviews meet the refused key.
            for _ in 0..<3 {
                let model = try #require(await resolver.model(for: actor, policy: .defaults).model)
                await #expect(throws: ProviderRouterError.self) { _ = try await model.complete(AIFixtures.prompt) }
            }
            return added.id
        }
        #expect(await breakers.isAvailable(workspaceID: s.ws.rawValue, providerID: providerID), "a refused key says nothing of availability")
        s.h.startScheduler()
        #expect(await eventually { await s.receiver.state.accepted().count == 1 })
        #expect(await eventually { try await s.pending() == 0 })
        let text = try #require(await s.receiver.state.accepted().first?.json["text"] as? String)
        #expect(text.contains("AI provider \(providerID) refused its API key") && text.contains("sentinel provider rotate"), "\(text)")
        #expect(!text.contains("sk-revoked"))
        #expect(await s.receiver.state.received.count == 1, "three refusals within the hour: one message")
        await llm.stop()
        await s.stop()
    }

    @Test("a flood of refused deliveries of two integrations is one coalesced message for integration.auth_failing")
    func integrationAuthFailing() async throws {
        let s = try await NotificationTests.setup(window: 0.5)
        _ = try await s.add("slack", path: "/slack/auth", topics: ["integration.auth_failing"])
        let supervisor = s.h.supervisor
        let failures = DeliveryAuthFailures(signals: OperationalSignals(control: s.h.control)) { id, workspaceID, count in
            (try? await supervisor.withWorkspace(workspaceID) { try await Notifications.integrationAuthFailing(id, failures: count, in: $0) }) ?? false
        }
        for integration in ["int_aaaaaaaaaaaaaaaa", "int_bbbbbbbbbbbbbbbb"] {
            for _ in 0..<25 { await failures.record(IntegrationID(integration)!, workspaceID: s.ws) }
        }
        s.h.startScheduler()
        #expect(await eventually { await s.receiver.state.accepted().count == 1 })
        #expect(await eventually { try await s.pending() == 0 })
        let messages = await s.receiver.state.received
        #expect(messages.count == 1)
        let text = try #require(messages.first?.json["text"] as? String)
        #expect(text.hasPrefix("Sentinel (ws-") && text.contains("): 2 notifications (2 × webhook authentication failing)"), "\(text)")
        #expect(text.contains("int_aaaaaaaaaaaaaaaa") && text.contains("int_bbbbbbbbbbbbbbbb"))
        // The count is the one when the refusals were noticed (the first of the 25), and says so.
        #expect(text.contains("(1 refused when this was noticed; more may have followed)"), "\(text)")
        await s.stop()
    }

    @Test("integration.auth_failing is told at most hourly per integration by the event log: a restarted server (a new counter) does not tell it again")
    func authFailingHourlyAcrossRestarts() async throws {
        let s = try await NotificationTests.setup()
        let id = IntegrationID("int_cccccccccccccccc")!
        let supervisor = s.h.supervisor
        // No subscribed channel yet: nothing stored, and not counted as told.
        #expect(try await supervisor.withWorkspace(s.ws) { try await Notifications.integrationAuthFailing(id, failures: 1, in: $0) } == false)
        _ = try await s.add("slack", path: "/slack/auth2", topics: ["integration.auth_failing"])
        for _ in 0..<2 {
            // Each a fresh DeliveryAuthFailures, as after a restart.
            let failures = DeliveryAuthFailures(signals: OperationalSignals(control: s.h.control)) { id, workspaceID, count in
                (try? await supervisor.withWorkspace(workspaceID) { try await Notifications.integrationAuthFailing(id, failures: count, in: $0) }) ?? false
            }
            await failures.record(id, workspaceID: s.ws)
        }
        let told = try await supervisor.withWorkspace(s.ws) { actor in
            try await actor.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM events WHERE type = 'IntegrationAuthFailing'") ?? 0 }
        }
        #expect(told == 1)
        // An hour later it is told again.
        #expect(try await supervisor.withWorkspace(s.ws) {
            try await Notifications.integrationAuthFailing(id, failures: 3, in: $0, now: Date().addingTimeInterval(3_700))
        })
        await s.stop()
    }

    @Test("an integration's token expiring soon notifies integration.credentials_expiring with the date and the rotate command")
    func credentialsExpiring() async throws {
        let s = try await NotificationTests.setup()
        _ = try await s.add("slack", path: "/slack/expiring", topics: ["integration.credentials_expiring"])
        try await s.h.supervisor.withWorkspace(s.ws) { actor in
            try await actor.write { tx in
                try tx.append(DomainEvent(type: "IntegrationCredentialsExpiring", subject: "integration:int_expiring00000001", payload: [
                    "integration": "int_expiring00000001", "platform": "GitLab", "expires_at": "2026-12-15T00:00:00.000Z", "days": "9"]))
            }
        }
        s.h.startScheduler()
        #expect(await eventually { await s.receiver.state.accepted().count == 1 })
        let text = try #require(await s.receiver.state.accepted().first?.json["text"] as? String)
        #expect(text.contains("The GitLab access token of integration int_expiring00000001 expires on 2026-12-15 (in 9 day(s))"), "\(text)")
        // The command names the workspace by its id, ready to run (it said WORKSPACE).
        #expect(text.contains("sentinel integration rotate int_expiring00000001 --workspace \(s.ws) --token-file FILE"), "\(text)")
        await s.stop()
    }

    @Test("a plan limit passing its soft threshold notifies plan.soft_limit once a month, with the limit and its use")
    func planSoftLimit() async throws {
        let s = try await NotificationTests.setup()
        _ = try await s.add("slack", path: "/slack/plan", topics: ["plan.soft_limit"])
        let plan = Plan(name: "small", reviewsPerMonth: 10, tokensPerMonth: 1_000, repositories: nil, seats: nil)
        try await s.h.supervisor.withWorkspace(s.ws) { actor in
            try await actor.write { tx in
                try tx.db.execute(sql: """
                    INSERT INTO usage_records (call_key, provider, model, input_tokens, output_tokens, recorded_at) VALUES ('k', 'openai', 'm', 700, 150, ?)
                    """, arguments: [tx.now.timeIntervalSince1970])
                try PlanLimits.recordSoftLimits(plan: plan, startingRun: nil, in: &tx)
            }
            // Checked again at the next run's start: nothing new to tell.
            try await actor.write { tx in try PlanLimits.recordSoftLimits(plan: plan, startingRun: nil, in: &tx) }
        }
        s.h.startScheduler()
        #expect(await eventually { await s.receiver.state.accepted().count == 1 })
        let text = try #require(await s.receiver.state.accepted().first?.json["text"] as? String)
        #expect(text.contains("Plan small: tokens_per_month at 850 of 1000"), "\(text)")
        #expect(await eventually { try await s.pending() == 0 })
        #expect(await s.receiver.state.received.count == 1)
        await s.stop()
    }

    @Test("a failed nightly export notifies export.failed in the workspace named by export.notify_workspace, and nowhere else")
    func exportFailed() async throws {
        let s = try await NotificationTests.setup()
        _ = try await s.add("slack", path: "/slack/export", topics: ["export.failed"])
        let other = try s.h.createWorkspace()
        // The exports directory cannot be created: a file is in its place.
        try? FileManager.default.removeItem(at: s.h.dataDirectory.exportsDirectory)
        try Data("not a directory".utf8).write(to: s.h.dataDirectory.exportsDirectory)
        var config = SentinelConfig.Export()
        config.notifyWorkspace = s.ws.rawValue
        let recorded = TestMetrics()
        let service = NightlyExportService(exporter: AnalyticsExporter(dataDirectory: s.h.dataDirectory, control: s.h.control,
                                                                       opener: DatabaseOpener(config: s.h.config)),
                                           config: config, logger: Logger(label: "test"), metrics: SentinelMetrics(factory: recorded),
                                           supervisor: s.h.supervisor)
        await service.exportOnce()
        #expect(recorded.counterTotal(label: "sentinel_exports_total", dimensions: [("outcome", "failed")]) == 1)
        #expect(recorded.counterTotal(label: "sentinel_exports_total", dimensions: [("outcome", "ok")]) == 0)
        #expect(try recorded.expectTimer("sentinel_export_duration_seconds").values.count == 1)
        s.h.startScheduler()
        #expect(await eventually { await s.receiver.state.accepted().count == 1 })
        let text = try #require(await s.receiver.state.accepted().first?.json["text"] as? String)
        #expect(text.contains("The nightly analytics export failed"), "\(text)")
        let elsewhere = try await s.h.supervisor.withWorkspace(other) { actor in
            try await actor.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM events WHERE type = 'ExportFailed'") }
        }
        #expect(elsewhere == 0)
        #expect(throws: ConfigError.self) { try ConfigLoader.load(file: nil, environment: ["SENTINEL_EXPORT_NOTIFY_WORKSPACE": "acme"]) }
        await s.stop()
    }
}
