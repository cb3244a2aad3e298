import Foundation
import SentinelCore
import SentinelTestSupport
import Testing

@Suite("AI provider router")
struct AIRouterTests {
    @Test func retriesAfter429HonouringRetryAfterThenSucceeds() async throws {
        try await withFakeLLM { server, http in
            await server.state.setReview(AIFixtures.goodReview)
            await server.state.inject(.rateLimited(retryAfter: 3), api: .anthropic, times: 1)
            let sleeps = AISleepRecorder()
            let router = ProviderRouter(workspaceID: "ws", providers: [server.config(.anthropic, id: "claude")], http: http,
                                        breakers: CircuitBreakerRegistry(), sleep: sleeps.sleep)
            let reply = try await router.complete(AIFixtures.prompt)
            #expect(reply.provider == "claude")
            #expect(reply.model == "claude-sonnet-4-20250514")
            #expect(sleeps.sleeps == [.seconds(3)])
            #expect(await server.state.requests(.anthropic).map(\.status) == [429, 200])
        }
    }

    @Test("a Retry-After longer than a review waits goes to the next provider at once (it waited 30 s and asked the same provider, refused again)")
    func longRetryAfterFallsBack() async throws {
        try await withFakeLLM { server, http in
            await server.state.setReview(AIFixtures.goodReview)
            await server.state.inject(.rateLimited(retryAfter: 100_000), api: .anthropic, times: nil)
            let sleeps = AISleepRecorder()
            let router = ProviderRouter(workspaceID: "ws", providers: [server.config(.anthropic, id: "claude", priority: 0), server.config(.openai, id: "oa", priority: 1)],
                                        http: http, breakers: CircuitBreakerRegistry(), sleep: sleeps.sleep)
            let reply = try await router.complete(AIFixtures.prompt)
            #expect(reply.provider == "oa")
            #expect(sleeps.sleeps.isEmpty)
            #expect(await server.state.requests(.anthropic).count == 1)
        }
    }

    @Test func retryAfterIsCappedAndBackoffIsExponential() async {
        let router = ProviderRouter(workspaceID: "ws", providers: [], http: AINoHTTP(), settings: RouterSettings(maxBackoff: .seconds(30)),
                                    breakers: CircuitBreakerRegistry())
        #expect(router.backoff(attempt: 1, retryAfter: 3_600) == .seconds(30))
        #expect(router.backoff(attempt: 1, retryAfter: nil) == .seconds(1))
        #expect(router.backoff(attempt: 3, retryAfter: nil) == .seconds(4))
        #expect(router.backoff(attempt: 30, retryAfter: nil) == .seconds(30))
    }

    @Test func serverErrorFallsBackToNextProvider() async throws {
        try await withFakeLLM { server, http in
            await server.state.setReview(AIFixtures.goodReview)
            await server.state.inject(.status(500), api: .openAI, times: nil)
            let router = ProviderRouter(workspaceID: "ws",
                                        providers: [server.config(.gemini, id: "gem", priority: 2), server.config(.openai, id: "oa", priority: 1)],
                                        http: http, breakers: CircuitBreakerRegistry(), sleep: AISleepRecorder().sleep)
            let reply = try await router.complete(AIFixtures.prompt)
            #expect(reply.provider == "gem")
            #expect(await server.state.requests(.openAI).count == 2)  // maxAttempts
            #expect(await server.state.requests(.gemini).count == 1)
            #expect(try ModelOutputParser.parse(reply.text).findings.count == 1)
        }
    }

    @Test func slowProviderTimesOutAndFallsBack() async throws {
        try await withFakeLLM { server, http in
            await server.state.setReview(AIFixtures.goodReview)
            // The slow provider would answer after 120 s; the call timeout is 10 s (room for a loaded machine). Had the timeout
            // not cut the call, the reply would come from "az" (the first priority), not "claude".
            await server.state.inject(.slow(.seconds(120)), api: .azure, times: nil)
            let router = ProviderRouter(workspaceID: "ws",
                                        providers: [server.config(.azureOpenAI, id: "az", priority: 0), server.config(.anthropic, id: "claude", priority: 1)],
                                        http: http, settings: RouterSettings(maxAttempts: 1, callTimeout: .seconds(10)),
                                        breakers: CircuitBreakerRegistry(), sleep: AISleepRecorder().sleep)
            let reply = try await router.complete(AIFixtures.prompt)
            #expect(reply.provider == "claude")
        }
    }

    @Test func fallbackOrderFollowsPreferenceThenPriority() async throws {
        let configs = [
            ProviderConfig.stub(.openai, id: "oa", priority: 1), ProviderConfig.stub(.anthropic, id: "claude", priority: 5),
            ProviderConfig.stub(.gemini, id: "gem", priority: 0), ProviderConfig.stub(.openAICompatible, id: "local", priority: 3),
        ]
        let order = ProviderRouter.ordered(configs, policy: RouterPolicy(providerPreference: ["anthropic", "local"])).map(\.id)
        #expect(order == ["claude", "local", "gem", "oa"])
        #expect(ProviderRouter.ordered(configs, policy: RouterPolicy()).map(\.id) == ["gem", "oa", "local", "claude"])

        // Every provider fails retryably: the router tries them exactly in that order.
        let log = AICallLog()
        let router = ProviderRouter(workspaceID: "ws", providers: configs, http: AINoHTTP(),
                                    policy: RouterPolicy(providerPreference: ["anthropic", "local"]),
                                    settings: RouterSettings(maxAttempts: 1), breakers: CircuitBreakerRegistry(),
                                    sleep: AISleepRecorder().sleep,
                                    providerFactory: { config, _ in AILoggingProvider(config, log: log, error: .server(status: 503)) })
        await #expect(throws: ProviderRouterError.self) { _ = try await router.complete(AIFixtures.prompt) }
        #expect(log.names == ["claude", "local", "gem", "oa"])
    }

    @Test func nonRetryableErrorFallsBackWithoutRetryOrBreaker() async throws {
        let registry = CircuitBreakerRegistry(failureThreshold: 1)
        let first = ProviderConfig.stub(.openai, id: "first", priority: 0)
        let second = ProviderConfig.stub(.anthropic, id: "second", priority: 1)
        let stubs = [
            "first": AIStubProvider(first, outcomes: [.failure(.unauthorized)]),
            "second": AIStubProvider(second, outcomes: [.success(AIFixtures.goodReview)]),
        ]
        let router = ProviderRouter(workspaceID: "ws", providers: [first, second], http: AINoHTTP(), breakers: registry,
                                    sleep: AISleepRecorder().sleep, providerFactory: { config, _ in stubs[config.id]! })
        let reply = try await router.complete(AIFixtures.prompt)
        #expect(reply.provider == "second")
        #expect(stubs["first"]!.calls == 1)
        #expect(await registry.state(workspaceID: "ws", providerID: "first") == .closed)
    }

    @Test func circuitOpensAfterNFailuresAndHalfOpensAfterCoolDown() async throws {
        let clock = AITestClock()
        let registry = CircuitBreakerRegistry(failureThreshold: 3, coolDown: .seconds(60), now: { clock.now })
        let config = ProviderConfig.stub(.openai, id: "oa")
        let stub = AIStubProvider(config, outcomes: [.failure(.server(status: 500)), .failure(.server(status: 500)),
                                                     .failure(.server(status: 500)), .success(AIFixtures.goodReview)])
        let router = ProviderRouter(workspaceID: "ws", providers: [config], http: AINoHTTP(),
                                    settings: RouterSettings(maxAttempts: 1), breakers: registry,
                                    sleep: AISleepRecorder().sleep, providerFactory: { _, _ in stub })
        for _ in 0..<3 {
            await #expect(throws: ProviderRouterError.self) { _ = try await router.complete(AIFixtures.prompt) }
        }
        #expect(await registry.state(workspaceID: "ws", providerID: "oa") == .open)
        // Open: not called at all, and the reason is plain.
        await #expect(throws: ProviderRouterError.noEligibleProvider(ProviderRouter.SkipReason.circuitsOpen)) {
            _ = try await router.complete(AIFixtures.prompt)
        }
        #expect(stub.calls == 3)
        #expect(await router.eligibility().skippedReason == "every AI provider's circuit is open")
        // Another workspace's breaker for the same provider id is unaffected.
        #expect(await registry.state(workspaceID: "other", providerID: "oa") == .closed)

        clock.advance(59)
        #expect(await registry.state(workspaceID: "ws", providerID: "oa") == .open)
        clock.advance(2)
        #expect(await registry.state(workspaceID: "ws", providerID: "oa") == .halfOpen)
        let reply = try await router.complete(AIFixtures.prompt)  // the probe succeeds
        #expect(reply.provider == "oa")
        #expect(await registry.state(workspaceID: "ws", providerID: "oa") == .closed)
    }

    @Test("the failure that opens a provider's circuit is what the run says, and no attempt is made after it (the run said only 'circuit open')")
    func failureThatOpensTheCircuitIsNamed() async throws {
        let registry = CircuitBreakerRegistry(failureThreshold: 1)
        let config = ProviderConfig.stub(.azureOpenAI, id: "az")
        let stub = AIStubProvider(config, outcomes: [.failure(.server(status: 500)), .success(AIFixtures.goodReview)])
        let router = ProviderRouter(workspaceID: "ws", providers: [config], http: AINoHTTP(), settings: RouterSettings(maxAttempts: 2),
                                    breakers: registry, sleep: AISleepRecorder().sleep, providerFactory: { _, _ in stub })
        do {
            _ = try await router.complete(AIFixtures.prompt)
            Issue.record("expected a failure")
        } catch ProviderRouterError.allProvidersFailed(let failures) {
            #expect(failures.count == 1 && failures[0].contains("server error (HTTP 500)") && failures[0].contains("its circuit is now open"), "\(failures)")
        }
        #expect(stub.calls == 1)
    }

    @Test("a 503 or 529 with Retry-After waits that long before the next attempt (it waited the default 1 s); a 403 is access refused with the provider's reason, not a rejected key")
    func serverRetryAfterAndForbidden() async throws {
        let headers = [("Retry-After", "8")]
        let overloaded = ProviderHTTP.classify(status: 503, headers: headers, body: Data(), kind: .openai)
        #expect(overloaded == .server(status: 503, retryAfter: 8) && overloaded.retryAfter == 8 && overloaded.isRetryable)
        let router = ProviderRouter(workspaceID: "ws", providers: [], http: AINoHTTP(), breakers: CircuitBreakerRegistry(),
                                    sleep: AISleepRecorder().sleep)
        #expect(router.backoff(attempt: 1, retryAfter: overloaded.retryAfter) == .seconds(8))
        let body = Data(#"{"error":{"code":"403","message":"Access denied due to Virtual Network/Firewall rules."}}"#.utf8)
        let refused = ProviderHTTP.classify(status: 403, body: body, kind: .azureOpenAI)
        #expect(refused == .forbidden("Access denied due to Virtual Network/Firewall rules.") && !refused.isRetryable, "\(refused)")
        #expect("\(refused)" == "access refused (HTTP 403): Access denied due to Virtual Network/Firewall rules.")
        #expect(ProviderHTTP.classify(status: 401, body: Data(), kind: .openai) == .unauthorized)
    }

    @Test("provider test: a 200 that is not the provider's JSON models list (a web server's page at that URL) is an error, not 'ok'")
    func healthCheckReadsTheModelsList() async throws {
        struct Answering: OutboundHTTPClient {
            let body: String
            let type: String
            func send(_ request: OutboundRequest) async throws -> OutboundResponse {
                OutboundResponse(status: 200, headers: [("Content-Type", type)], body: Data(body.utf8))
            }
        }
        let config = ProviderConfig.stub(.openAICompatible, id: "co")
        await #expect(throws: ProviderError.self) {
            try await ProviderHealth.check(config, http: Answering(body: "<html><body>Welcome to nginx</body></html>", type: "text/html"))
        }
        try await ProviderHealth.check(config, http: Answering(body: #"{"object":"list","data":[{"id":"m"}]}"#, type: "application/json"))
    }

    @Test func halfOpenProbeFailureReopens() {
        var breaker = CircuitBreaker(failureThreshold: 2, coolDown: .seconds(10))
        let t0 = Date(timeIntervalSince1970: 0)
        breaker.recordFailure(at: t0)
        #expect(breaker.state(at: t0) == .closed)
        breaker.recordFailure(at: t0)
        #expect(breaker.state(at: t0) == .open)
        let early = breaker.allowRequest(at: t0 + 5)
        #expect(!early)
        let probe = breaker.allowRequest(at: t0 + 10)
        #expect(probe)  // the probe
        let second = breaker.allowRequest(at: t0 + 10)
        #expect(!second)  // only one probe at a time
        breaker.recordFailure(at: t0 + 11)
        #expect(breaker.state(at: t0 + 12) == .open)
        #expect(breaker.state(at: t0 + 21) == .halfOpen)
        breaker.recordSuccess()
        #expect(breaker.state(at: t0 + 21) == .closed)
    }

    @Test func skippedReasons() async {
        let registry = CircuitBreakerRegistry()
        func reason(_ configs: [ProviderConfig], policy: RouterPolicy = RouterPolicy(), budget: Bool = true) async -> String? {
            let result = await ProviderRouter.eligibility(workspaceID: "ws", providers: configs, http: AINoHTTP(), policy: policy,
                                                          breakers: registry, budgetLeft: { budget })
            #expect(result.eligible.isEmpty == (result.skippedReason != nil))
            return result.skippedReason
        }
        #expect(await reason([]) == "no AI provider key is configured")
        #expect(await reason([.stub(.openai, id: "a", key: "")]) == "no AI provider key is configured")
        #expect(await reason([.stub(.openai, id: "a", enabled: false)]) == "every AI provider of the workspace is disabled")
        #expect(await reason([.stub(.openai, id: "a", model: "gpt-4o")], budget: false) == "the AI budget for this period is spent")
        #expect(await reason([.stub(.openai, id: "a", model: "gpt-3.5-turbo")], policy: RouterPolicy(allowedModels: ["gpt-4o*"]))
            == "no provider offers an allowed model")
        #expect(await reason([.stub(.openai, id: "a", model: "gpt-4o-mini")], policy: RouterPolicy(allowedModels: ["gpt-4o*"])) == nil)
        #expect(await reason([.stub(.openai, id: "a", model: "gpt-4o")], policy: RouterPolicy(allowedModels: ["gpt-4o"])) == nil)
        for _ in 0..<5 { await registry.recordFailure(workspaceID: "ws", providerID: "a") }
        #expect(await reason([.stub(.openai, id: "a")]) == "every AI provider's circuit is open")

        // Eligible providers come back in routing order, without the filtered ones.
        let result = await ProviderRouter.eligibility(
            workspaceID: "ws2",
            providers: [.stub(.openai, id: "x", priority: 2), .stub(.gemini, id: "y", priority: 1, model: "gemini-2.0-flash"),
                        .stub(.anthropic, id: "z", key: "")],
            http: AINoHTTP(), breakers: registry)
        #expect(result.eligible.map(\.name) == ["y", "x"])
        #expect(result.eligible.map(\.kind) == [.gemini, .openai])
    }

    @Test func keysNeverAppearInErrorsOrDescriptions() async throws {
        // Every API rejects the canary key or fails; collect every description the router produces.
        try await withFakeLLM { server, http in
            var descriptions: [String] = []
            let kinds: [ProviderKind] = [.openai, .azureOpenAI, .anthropic, .gemini, .openAICompatible]
            let configs = kinds.enumerated().map { i, kind in server.config(kind, id: "p\(i)", key: AIFixtures.leakyKey, priority: i) }
            for config in configs {
                descriptions.append(String(describing: config))
                descriptions.append(String(reflecting: config))
                var dumped = ""
                dump(config, to: &dumped)
                descriptions.append(dumped)
            }
            let router = ProviderRouter(workspaceID: "ws", providers: configs, http: http, breakers: CircuitBreakerRegistry(),
                                        sleep: AISleepRecorder().sleep)
            do {
                _ = try await router.complete(AIFixtures.prompt)
                Issue.record("the canary key must be rejected everywhere")
            } catch {
                descriptions.append(String(describing: error))
                descriptions.append(String(reflecting: error))
                descriptions.append(error.localizedDescription)
            }
            // Faults with provider-shaped messages, transport failures and parse failures.
            for fault in [FakeLLMFault.status(500), .rateLimited(retryAfter: 1), .html, .truncatedJSON] {
                for kind in kinds {
                    await server.state.inject(fault)
                    do { _ = try await makeProvider(server.config(kind), http: http).complete(AIFixtures.prompt, timeout: .seconds(5)) }
                    catch { descriptions.append(String(describing: error)) }
                }
            }
            let dead = makeProvider(ProviderConfig(kind: .openai, id: "dead", apiKey: AIFixtures.leakyKey,
                                                   baseURL: URL(string: "http://127.0.0.1:1/v1"), model: "gpt-4o"), http: http)
            do { _ = try await dead.complete(AIFixtures.prompt, timeout: .milliseconds(500)) } catch {
                descriptions.append(String(describing: error))
            }
            // Provider error bodies that echo a key are redacted.
            let echo = Data(#"{"error":{"message":"Incorrect API key provided: sk-LEAKCANARY-9f8e7d6c5b4a3210-zzTOPSECRET.","type":"invalid_request_error","code":"invalid_api_key"}}"#.utf8)
            descriptions.append(String(describing: ProviderHTTP.classify(status: 400, body: echo, kind: .openai, secret: AIFixtures.leakyKey)))
            descriptions.append(String(describing: ProviderHTTP.classify(status: 400, body: echo, kind: .openai)))

            #expect(descriptions.count > 20)
            for text in descriptions {
                #expect(!text.contains("LEAKCANARY"), "leaked: \(text)")
                #expect(!text.contains("zzTOPSECRET"), "leaked: \(text)")
                for key in FakeLLMServer.defaultKeys.values { #expect(!text.contains(key), "leaked: \(text)") }
            }
            // And the fake's own request log never holds a key either.
            for request in await server.state.requests() {
                for (_, value) in request.headers { #expect(!value.contains("LEAKCANARY")) }
            }
        }
    }

    @Test("the metrics' model label is a model family of the price table or `other`: a model name a workspace admin types is never a label of its own")
    func metricsModelLabel() {
        let table = PriceTable.builtIn
        #expect(table.metricsModel(kind: "openai", model: "gpt-4o-mini-2024-07-18") == "gpt-4o-mini")
        #expect(table.metricsModel(kind: "openai", model: "gpt-4o-2024-08-06") == "gpt-4o")
        #expect(table.metricsModel(kind: "openai-compatible", model: "llama3.1:8b") == "other")
        #expect(table.metricsModel(kind: "openai", model: "gpt-4o-" + String(repeating: "x", count: 180)) == "gpt-4o")
        #expect(table.metricsModel(kind: "openai", model: "made-up-\(UUID().uuidString)") == "other")
        let custom = table.overriding(["openai-compatible/llama*": ModelPrice(inputPerMillion: 1, outputPerMillion: 2)])
        #expect(custom.metricsModel(kind: "openai-compatible", model: "llama3.1:8b") == "llama")
    }

    @Test func priceTable() {
        let table = PriceTable.builtIn
        let usage = TokenUsage(inputTokens: 1_000_000, outputTokens: 100_000)
        #expect(abs(table.cost(usage, provider: .openai, model: "gpt-4o-2024-08-06") - (2.50 + 1.0)) < 1e-9)
        #expect(abs(table.cost(usage, provider: .openai, model: "gpt-4o-mini") - (0.15 + 0.06)) < 1e-9)  // longest prefix wins
        #expect(abs(table.cost(usage, provider: .azureOpenAI, model: "gpt-4o") - 3.5) < 1e-9)
        #expect(table.cost(usage, provider: .openAICompatible, model: "llama3.1:8b") == 0)
        let custom = table.overriding(["openai-compatible/llama*": ModelPrice(inputPerMillion: 1, outputPerMillion: 2),
                                       "openai/gpt-4o-2024-08-06": ModelPrice(inputPerMillion: 5, outputPerMillion: 5),
                                       "*/mistral*": ModelPrice(inputPerMillion: 0.5, outputPerMillion: 0.5)])
        #expect(abs(custom.cost(usage, provider: .openAICompatible, model: "llama3.1:8b") - 1.2) < 1e-9)
        #expect(abs(custom.cost(usage, provider: .openai, model: "gpt-4o-2024-08-06") - 5.5) < 1e-9)  // exact beats prefix
        #expect(abs(custom.cost(usage, provider: .openAICompatible, model: "mistral-7b") - 0.55) < 1e-9)

        // Models that were missing (counted as free, or at another model's price).
        #expect(abs(table.cost(usage, provider: .openai, model: "gpt-5-2025-08-07") - (1.25 + 1.0)) < 1e-9)
        #expect(abs(table.cost(usage, provider: .openai, model: "o1-pro") - (150 + 60)) < 1e-9)
        #expect(abs(table.cost(usage, provider: .openai, model: "gpt-4-0613") - (30 + 6)) < 1e-9)
        #expect(abs(table.cost(usage, provider: .openai, model: "gpt-4-turbo-2024-04-09") - (10 + 3)) < 1e-9)
        #expect(abs(table.cost(usage, provider: .openai, model: "gpt-5-pro") - (15 + 12)) < 1e-9)
        #expect(abs(table.cost(usage, provider: .openai, model: "gpt-4-32k-0613") - (60 + 12)) < 1e-9)
        #expect(abs(table.cost(usage, provider: .openai, model: "gpt-4-0125-preview") - (10 + 3)) < 1e-9)
        #expect(abs(table.cost(usage, provider: .azureOpenAI, model: "gpt-35-turbo") - (0.5 + 0.15)) < 1e-9)
        #expect(abs(table.cost(usage, provider: .anthropic, model: "claude-3-haiku-20240307") - (0.25 + 0.125)) < 1e-9)
        #expect(abs(table.cost(usage, provider: .anthropic, model: "claude-3-opus-20240229") - (15 + 7.5)) < 1e-9)

        // A billed vendor's model no entry names is counted at the dearest of its kind, not as free
        // (a workspace's AI budget let every call of it through): an estimate on the high side.
        #expect(abs(table.cost(usage, provider: .openai, model: "codex-next") - (150 + 60)) < 1e-9)
        #expect(abs(table.cost(usage, provider: .azureOpenAI, model: "my-deployment-model") - (150 + 60)) < 1e-9)
        #expect(abs(table.cost(usage, provider: .anthropic, model: "claude-next") - (15 + 7.5)) < 1e-9)
        #expect(abs(table.cost(usage, provider: .gemini, model: "gemini-3-pro") - (1.25 + 1.0)) < 1e-9)
        #expect(!table.names(kind: "openai", model: "codex-next") && table.names(kind: "openai", model: "gpt-4o"))
        #expect(table.dearest(kind: "openai")?.pattern == "openai/o1-pro*")
        #expect(table.dearest(kind: "openai-compatible") == nil)
        let dearer = table.overriding(["anthropic/claude-next*": ModelPrice(inputPerMillion: 100, outputPerMillion: 400)])
        #expect(abs(dearer.cost(usage, provider: .anthropic, model: "claude-unknown") - (100 + 40)) < 1e-9)

        let router = ProviderRouter(workspaceID: "ws", providers: [.stub(.anthropic, id: "claude", model: "claude-sonnet-4-20250514")],
                                    http: AINoHTTP(), breakers: CircuitBreakerRegistry())
        let reply = ModelReply(text: "", usage: usage, provider: "claude", model: "claude-sonnet-4-20250514")
        #expect(abs(router.cost(of: reply) - (3.0 + 1.5)) < 1e-9)
    }
}

/// An HTTP client that is never expected to be called.
struct AINoHTTP: OutboundHTTPClient {
    func send(_ request: OutboundRequest) async throws -> OutboundResponse {
        throw OutboundHTTPError.connection("no network in this test")
    }
}

final class AICallLog: @unchecked Sendable {
    private let lock = NSLock()
    private var entries: [String] = []
    var names: [String] { lock.withLock { entries } }
    func append(_ name: String) { lock.withLock { entries.append(name) } }
}

struct AILoggingProvider: LLMProvider {
    let kind: ProviderKind
    let name: String
    let model: String
    let log: AICallLog
    let error: ProviderError

    init(_ config: ProviderConfig, log: AICallLog, error: ProviderError) {
        self.kind = config.kind
        self.name = config.id
        self.model = config.model
        self.log = log
        self.error = error
    }

    func complete(_ prompt: ReviewPrompt, timeout: Duration) async throws -> ModelReply {
        log.append(name)
        throw error
    }
}
