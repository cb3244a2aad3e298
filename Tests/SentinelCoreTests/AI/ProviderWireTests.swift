import Foundation
import SentinelCore
import SentinelTestSupport
import Testing

@Suite("AI providers over loopback HTTP")
struct AIProviderWireTests {
    @Test func openAIRequestShapeUsageAndParse() async throws {
        try await withFakeLLM { server, http in
            await server.state.setReview(AIFixtures.goodReview)
            await server.state.setUsage(input: 321, output: 45)
            let provider = makeProvider(server.config(.openai, id: "oa"), http: http)
            let reply = try await provider.complete(AIFixtures.prompt, timeout: .seconds(10))
            #expect(reply.usage == TokenUsage(inputTokens: 321, outputTokens: 45))
            #expect(reply.provider == "oa")
            let output = try ModelOutputParser.parse(reply.text)
            #expect(output.findings.count == 1)
            #expect(output.findings.first?.title == "Shell injection")

            let request = try #require(await server.state.requests(.openAI).first)
            #expect(request.status == 200)
            #expect(request.method == "POST")
            #expect(request.path == "/v1/chat/completions")
            #expect(request.headers["authorization"] == "Bearer <redacted>")
            #expect(request.headers["content-type"] == "application/json")
            let body = try #require(request.json())
            #expect(body["model"] as? String == "gpt-4o-2024-08-06")
            let messages = try #require(body["messages"] as? [[String: Any]])
            #expect(messages.map { $0["role"] as? String } == ["system", "user"])
            let format = try #require(body["response_format"] as? [String: Any])
            #expect(format["type"] as? String == "json_schema")
            let spec = try #require(format["json_schema"] as? [String: Any])
            #expect(spec["strict"] as? Bool == true)
            #expect(spec["name"] as? String == OpenAIChatProvider.schemaName)
            let schema = try #require(spec["schema"] as? [String: Any])
            #expect(schema["required"] as? [String] == ["summary", "findings"])
        }
    }

    @Test("a base URL with its scheme in capitals (HTTP://…, accepted when the provider was added) is called: every call was refused as an invalid base URL")
    func schemeInCapitals() async throws {
        try await withFakeLLM { server, http in
            await server.state.setReview(AIFixtures.goodReview)
            var config = server.config(.openAICompatible, id: "local")
            let base = try #require(config.baseURL?.absoluteString)
            config.baseURL = URL(string: "HTTP" + base.dropFirst("http".count))
            let reply = try await makeProvider(config, http: http).complete(AIFixtures.prompt, timeout: .seconds(10))
            #expect(try ModelOutputParser.parse(reply.text).findings.count == 1)
            #expect(await server.state.requests(.openAICompatible).count == 1)
        }
    }

    @Test("finish_reason content_filter with part of an answer is refused, so the next provider is asked (it was read as truncated JSON and retried on the same one)")
    func contentFilterWithPartialAnswer() throws {
        let body = Data(#"{"choices":[{"index":0,"message":{"role":"assistant","content":"{\"summary\": \"Adds con"},"finish_reason":"content_filter"}],"usage":{"prompt_tokens":10,"completion_tokens":4}}"#.utf8)
        #expect(throws: ProviderError.refused("the provider's content filter cut the answer off")) { _ = try OpenAIChatProvider.parseResponse(body) }
        let empty = Data(#"{"choices":[{"index":0,"message":{"role":"assistant","content":""},"finish_reason":"content_filter"}]}"#.utf8)
        #expect(throws: ProviderError.refused("the provider's content filter blocked the answer")) { _ = try OpenAIChatProvider.parseResponse(empty) }
    }

    @Test("no content at the output limit (a reasoning model's thinking used it up) is an empty answer that hit the limit, with its usage, so the call is metered and not asked for again")
    func noContentAtOutputLimit() throws {
        let body = Data(#"{"choices":[{"index":0,"message":{"role":"assistant","content":null},"finish_reason":"length"}],"usage":{"prompt_tokens":3000,"completion_tokens":8000,"completion_tokens_details":{"reasoning_tokens":8000}}}"#.utf8)
        let parsed = try OpenAIChatProvider.parseResponse(body)
        #expect(parsed.text.isEmpty && parsed.usage == TokenUsage(inputTokens: 3000, outputTokens: 8000))
        #expect(OpenAIChatProvider.hitOutputLimit(body))
        // Without the limit, no content is still an unreadable answer.
        let stopped = Data(#"{"choices":[{"index":0,"message":{"role":"assistant","content":null},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":0}}"#.utf8)
        #expect(throws: ProviderError.malformed("the response has no message content")) { _ = try OpenAIChatProvider.parseResponse(stopped) }
    }

    @Test func azureRequestShape() async throws {
        try await withFakeLLM { server, http in
            await server.state.setReview(AIFixtures.goodReview)
            let config = server.config(.azureOpenAI, id: "az", model: "gpt-4o-review")
            let reply = try await makeProvider(config, http: http).complete(AIFixtures.prompt, timeout: .seconds(10))
            #expect(try ModelOutputParser.parse(reply.text).findings.count == 1)
            #expect(reply.usage.inputTokens == 1_200)
            let request = try #require(await server.state.requests(.azure).first)
            #expect(request.status == 200)
            #expect(request.path == "/openai/deployments/gpt-4o-review/chat/completions")
            #expect(request.query == "api-version=\(AzureOpenAIDefaults.apiVersion)")
            #expect(request.headers["api-key"] == "<redacted>")
            #expect(request.headers["authorization"] == nil)
            let body = try #require(request.json())
            #expect(body["model"] == nil)
            #expect((body["response_format"] as? [String: Any])?["type"] as? String == "json_schema")
        }
    }

    @Test func anthropicRequestShapeToolUse() async throws {
        try await withFakeLLM { server, http in
            await server.state.setReview(AIFixtures.goodReview)
            await server.state.setUsage(input: 900, output: 77)
            let reply = try await makeProvider(server.config(.anthropic, id: "claude"), http: http)
                .complete(AIFixtures.prompt, timeout: .seconds(10))
            #expect(reply.usage == TokenUsage(inputTokens: 900, outputTokens: 77))
            let output = try ModelOutputParser.parse(reply.text)
            #expect(output.summary == "Switches to subprocess.")
            #expect(output.findings.first?.severity == .critical)

            let request = try #require(await server.state.requests(.anthropic).first)
            #expect(request.status == 200)
            #expect(request.path == "/v1/messages")
            #expect(request.headers["x-api-key"] == "<redacted>")
            #expect(request.headers["anthropic-version"] == "2023-06-01")
            let body = try #require(request.json())
            #expect(body["system"] as? String == AIFixtures.prompt.system)
            #expect((body["max_tokens"] as? Int ?? 0) > 0)
            let messages = try #require(body["messages"] as? [[String: Any]])
            #expect(messages.count == 1 && messages[0]["role"] as? String == "user")
            let tools = try #require(body["tools"] as? [[String: Any]])
            #expect(tools.first?["name"] as? String == AnthropicProvider.toolName)
            #expect((tools.first?["input_schema"] as? [String: Any])?["type"] as? String == "object")
            let choice = try #require(body["tool_choice"] as? [String: Any])
            #expect(choice["type"] as? String == "tool" && choice["name"] as? String == AnthropicProvider.toolName)
        }
    }

    @Test func anthropicFallsBackToTextBlocks() throws {
        let body = Data("""
        {"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[{"type":"text","text":"```json\\n{\\"summary\\":\\"ok\\",\\"findings\\":[]}\\n```"}],"stop_reason":"end_turn","usage":{"input_tokens":5,"output_tokens":6,"cache_read_input_tokens":4}}
        """.utf8)
        let parsed = try AnthropicProvider.parseResponse(body)
        #expect(parsed.usage == TokenUsage(inputTokens: 9, outputTokens: 6))
        #expect(try ModelOutputParser.parse(parsed.text).summary == "ok")
    }

    @Test func geminiRequestShapeAndSchemaConversion() async throws {
        try await withFakeLLM { server, http in
            await server.state.setReview(AIFixtures.goodReview)
            await server.state.setUsage(input: 600, output: 30)
            let reply = try await makeProvider(server.config(.gemini, id: "gem"), http: http)
                .complete(AIFixtures.prompt, timeout: .seconds(10))
            #expect(reply.usage == TokenUsage(inputTokens: 600, outputTokens: 30))
            #expect(try ModelOutputParser.parse(reply.text).findings.count == 1)

            let request = try #require(await server.state.requests(.gemini).first)
            #expect(request.status == 200)
            #expect(request.path == "/v1beta/models/gemini-2.0-flash:generateContent")
            #expect(request.query == nil)  // the key never goes in the URL
            #expect(request.headers["x-goog-api-key"] == "<redacted>")
            let body = try #require(request.json())
            let system = try #require(body["systemInstruction"] as? [String: Any])
            #expect(((system["parts"] as? [[String: Any]])?.first?["text"] as? String) == AIFixtures.prompt.system)
            #expect((body["contents"] as? [[String: Any]])?.first?["role"] as? String == "user")
            let config = try #require(body["generationConfig"] as? [String: Any])
            #expect(config["responseMimeType"] as? String == "application/json")
            let schema = try #require(config["responseSchema"] as? [String: Any])
            #expect(schema["type"] as? String == "OBJECT")
            #expect(schema["additionalProperties"] == nil)
            let items = try #require(((schema["properties"] as? [String: Any])?["findings"] as? [String: Any])?["items"] as? [String: Any])
            let startLine = try #require((items["properties"] as? [String: Any])?["start_line"] as? [String: Any])
            #expect(startLine["type"] as? String == "INTEGER")
            #expect(startLine["nullable"] as? Bool == true)
        }
    }

    @Test func geminiRejectsUnconvertedSchemaLikeTheRealAPI() async throws {
        // The fake enforces Gemini's schema dialect: a raw JSON Schema gets a 400.
        try await withFakeLLM { server, http in
            let body = Data("""
            {"contents":[{"role":"user","parts":[{"text":"hi"}]}],"generationConfig":{"responseMimeType":"application/json","responseSchema":{"type":"object","additionalProperties":false,"properties":{"a":{"type":"string"}}}}}
            """.utf8)
            var request = OutboundRequest(method: "POST", url: server.baseURL.appendingPathComponent("v1beta/models/gemini-2.0-flash:generateContent"),
                                          headers: [("x-goog-api-key", FakeLLMServer.defaultKeys[.gemini]!), ("Content-Type", "application/json")], body: body)
            request.timeout = .seconds(30)
            let response = try await http.send(request)
            #expect(response.status == 400)
            let error = ProviderHTTP.classify(status: response.status, body: response.body, kind: .gemini)
            guard case .badRequest(let message) = error else { Issue.record("expected badRequest, got \(error)"); return }
            #expect(message.contains("additionalProperties"))
            #expect(!error.isRetryable)
        }
    }

    @Test func openAICompatibleUsesJSONObjectAndSchemaInSystemPrompt() async throws {
        var keys = FakeLLMServer.defaultKeys
        keys[.openAICompatible] = nil  // an Ollama without auth
        try await withFakeLLM(keys: keys) { server, http in
            await server.state.setReview(AIFixtures.goodReview)
            let config = server.config(.openAICompatible, id: "ollama", key: "")
            #expect(config.hasKey)  // key optional for openai-compatible
            let reply = try await makeProvider(config, http: http).complete(AIFixtures.prompt, timeout: .seconds(10))
            #expect(try ModelOutputParser.parse(reply.text).findings.count == 1)
            let request = try #require(await server.state.requests(.openAICompatible).first)
            #expect(request.path == "/chat/completions")
            #expect(request.headers["authorization"] == nil)
            let body = try #require(request.json())
            #expect(body["model"] as? String == "llama3.1:8b")
            #expect((body["response_format"] as? [String: Any])?["type"] as? String == "json_object")
            let system = try #require((body["messages"] as? [[String: Any]])?.first?["content"] as? String)
            #expect(system.contains("\"start_line\""))
        }
    }

    @Test(arguments: [ProviderKind.openai, .azureOpenAI, .anthropic, .gemini, .openAICompatible])
    func malformedBodiesAreMalformedNotCrashes(kind: ProviderKind) async throws {
        try await withFakeLLM { server, http in
            let api: FakeLLMAPI = [.openai: .openAI, .azureOpenAI: .azure, .anthropic: .anthropic, .gemini: .gemini,
                                   .openAICompatible: .openAICompatible][kind]!
            let provider = makeProvider(server.config(kind), http: http)
            for (fault, named) in [(FakeLLMFault.truncatedJSON, "truncated JSON"), (.html, "HTML page"), (.eventStream, "event stream")] {
                await server.state.inject(fault, api: api)
                do {
                    _ = try await provider.complete(AIFixtures.prompt, timeout: .seconds(10))
                    Issue.record("expected .malformed for \(fault)")
                } catch let error as ProviderError {
                    guard case .malformed(let why) = error else { Issue.record("expected .malformed, got \(error)"); continue }
                    #expect(why.contains(named), "\(why)")
                    #expect(error.isRetryable)
                }
            }
        }
    }

    @Test(arguments: [ProviderKind.openai, .azureOpenAI, .anthropic, .gemini])
    func errorStatusesAreClassified(kind: ProviderKind) async throws {
        try await withFakeLLM { server, http in
            let provider = makeProvider(server.config(kind), http: http)
            await server.state.inject(.rateLimited(retryAfter: 7))
            await #expect(throws: ProviderError.rateLimited(retryAfter: 7)) {
                _ = try await provider.complete(AIFixtures.prompt, timeout: .seconds(10))
            }
            await server.state.inject(.status(500))
            await #expect(throws: ProviderError.server(status: 500)) {
                _ = try await provider.complete(AIFixtures.prompt, timeout: .seconds(10))
            }
            await server.state.inject(.status(529))
            await #expect(throws: ProviderError.server(status: 529)) {
                _ = try await provider.complete(AIFixtures.prompt, timeout: .seconds(10))
            }
            await server.state.inject(.slow(.seconds(2)))
            await #expect(throws: ProviderError.timeout) {
                _ = try await provider.complete(AIFixtures.prompt, timeout: .milliseconds(300))
            }
            await server.state.inject(.refusal)
            do {
                _ = try await provider.complete(AIFixtures.prompt, timeout: .seconds(10))
                Issue.record("expected a refusal")
            } catch let error as ProviderError {
                guard case .refused = error else { Issue.record("expected .refused, got \(error)"); return }
                #expect(!error.isRetryable)
            }
            // A wrong key: unauthorized, and the key is nowhere in the error.
            let bad = makeProvider(server.config(kind, key: AIFixtures.leakyKey), http: http)
            do {
                _ = try await bad.complete(AIFixtures.prompt, timeout: .seconds(10))
                Issue.record("expected unauthorized")
            } catch {
                #expect(error as? ProviderError == .unauthorized)
                #expect(!String(describing: error).contains("LEAKCANARY"))
            }
        }
    }

    @Test func unknownModelIsBadRequestWithProviderMessage() throws {
        let body = Data(#"{"error":{"message":"The model `gpt-9` does not exist or you do not have access to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#.utf8)
        let error = ProviderHTTP.classify(status: 404, body: body, kind: .openai)
        #expect(error == .badRequest("The model `gpt-9` does not exist or you do not have access to it."))
        #expect(!error.isRetryable)
    }

    @Test func retryAfterSourcesAndQuota() throws {
        #expect(ProviderHTTP.classify(status: 429, headers: [("retry-after-ms", "1500")], body: Data(), kind: .openai)
            == .rateLimited(retryAfter: 1.5))
        let gemini = Data(#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"26s"}]}}"#.utf8)
        #expect(ProviderHTTP.classify(status: 429, body: gemini, kind: .gemini) == .rateLimited(retryAfter: 26))
        let quota = Data(#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#.utf8)
        let error = ProviderHTTP.classify(status: 429, body: quota, kind: .openai)
        #expect(error == .quotaExhausted("You exceeded your current quota"))
        #expect(!error.isRetryable)
        #expect(ProviderHTTP.classify(status: 401, body: Data(), kind: .anthropic) == .unauthorized)
        #expect(ProviderHTTP.classify(status: 503, body: Data("<html>oops</html>".utf8), kind: .openai) == .server(status: 503))
    }

    @Test func fakeValidatesRequiredFieldsLikeTheRealAPIs() async throws {
        try await withFakeLLM { server, http in
            func post(_ path: String, _ headers: [(String, String)], _ json: String) async throws -> OutboundResponse {
                try await http.send(OutboundRequest(method: "POST", url: URL(string: server.baseURL.absoluteString + path)!,
                                                    headers: headers + [("Content-Type", "application/json")], body: Data(json.utf8),
                                                    timeout: .seconds(30)))
            }
            let openAI = try await post("/v1/chat/completions", [("Authorization", "Bearer \(FakeLLMServer.defaultKeys[.openAI]!)")],
                                        #"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"x","strict":true,"schema":{"type":"object","properties":{"a":{"type":"string"}}}}}}"#)
            #expect(openAI.status == 400)
            #expect(String(decoding: openAI.body, as: UTF8.self).contains("additionalProperties"))
            let anthropic = try await post("/v1/messages", [("x-api-key", FakeLLMServer.defaultKeys[.anthropic]!), ("anthropic-version", "2023-06-01")],
                                           #"{"model":"claude","messages":[{"role":"user","content":"hi"}]}"#)
            #expect(anthropic.status == 400)
            guard case .badRequest(let message) = ProviderHTTP.classify(status: anthropic.status, body: anthropic.body, kind: .anthropic) else {
                Issue.record("expected badRequest"); return
            }
            #expect(message.contains("max_tokens"))
            let noVersion = try await post("/v1/messages", [("x-api-key", FakeLLMServer.defaultKeys[.anthropic]!)],
                                           #"{"model":"claude","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#)
            #expect(noVersion.status == 400)
        }
    }

    @Test("any eight characters of the key in a row are redacted from a provider's text, from its middle too")
    func keyFragmentsRedacted() {
        let key = "sk-test-SECRETKEY-abcdef1234567890"
        let said = ProviderHTTP.redact("Bad key … SECRETKEY-abcdef12 partial; sk-test-S…; 567890", secret: key)
        #expect(!said.contains("SECRETKEY") && !said.contains("abcdef12"), "\(said)")
        #expect(said.hasPrefix("Bad key … ") && said.contains("[redacted]") && said.hasSuffix("567890"), "\(said)")
        // A placeholder key's words stay words in the provider's text.
        #expect(ProviderHTTP.redact("the messages field is required", secret: "sk-no-key-required") == "the messages field is required")
        // A passphrase key: its windows across the hyphens are fragments, not words (21 of its 28
        // characters were shown).
        let passphrase = ProviderHTTP.redact("Invalid model for key correct-horse-batt****aple (project correct-horse-battery)",
                                             secret: "correct-horse-battery-staple")
        #expect(!passphrase.contains("correct-") && !passphrase.contains("horse-") && !passphrase.contains("-batt"), "\(passphrase)")
        #expect(passphrase.hasPrefix("Invalid model for key "), "\(passphrase)")
    }
}
