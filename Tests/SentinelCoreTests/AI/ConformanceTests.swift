import Foundation
import SentinelCore
import SentinelTestSupport
import Testing

/// Reads the published request/response/error bodies in `../shared/fixtures/llm/` and checks
/// Sentinel's decoders and request bodies against them. The tests are skipped when the folder is
/// absent; a named file missing from it fails its test.
@Suite("AI wire-format conformance")
struct AIConformanceTests {
    static let root: URL? = {
        var candidates: [URL] = []
        if let env = ProcessInfo.processInfo.environment["SENTINEL_LLM_FIXTURES"] { candidates.append(URL(fileURLWithPath: env)) }
        var dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        for _ in 0..<6 {
            candidates.append(dir.appendingPathComponent("../shared/fixtures/llm").standardizedFileURL)
            dir.deleteLastPathComponent()
        }
        candidates.append(URL(fileURLWithPath: "/work/shared/fixtures/llm"))
        return candidates.first { FileManager.default.fileExists(atPath: $0.appendingPathComponent("README.md").path) }
    }()

    struct MissingFixture: Error, CustomStringConvertible {
        let description: String
    }

    /// A named fixture; its absence fails the test (only the whole folder being absent skips).
    static func data(_ path: String) throws -> Data {
        guard let root else { throw MissingFixture(description: "the LLM fixtures folder is absent") }
        let url = root.appendingPathComponent(path)
        guard FileManager.default.fileExists(atPath: url.path) else { throw MissingFixture(description: "fixture \(url.path) is missing") }
        return try Data(contentsOf: url)
    }

    static func object(_ data: Data) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    @Test(.enabled(if: root != nil, "fixtures absent")) func openAIResponses() throws {
        do {
            let body = try Self.data("openai/chat_completions.response.json_schema.recorded.json")
            let parsed = try OpenAIChatProvider.parseResponse(body)
            #expect(parsed.usage == TokenUsage(inputTokens: 79, outputTokens: 14))
            #expect(parsed.text.contains("San Francisco"))
            #expect(parsed.model == "gpt-4o-2024-08-06")
        }
        do {
            let body = try Self.data("openai/chat_completions.response.json_schema.refusal.recorded.json")
            #expect(throws: ProviderError.refused("I'm very sorry, but I can't assist with that.")) {
                _ = try OpenAIChatProvider.parseResponse(body)
            }
        }
        do {
            let body = try Self.data("openai/chat_completions.response.default.json")
            let parsed = try OpenAIChatProvider.parseResponse(body)
            #expect(parsed.usage.inputTokens > 0)
        }
        do {
            let body = try Self.data("openai/chat_completions.response.json_schema.finish_length.recorded.json")
            let parsed = try OpenAIChatProvider.parseResponse(body)  // truncated content is the engine's problem, not a crash
            #expect(throws: ModelOutputError.self) { _ = try ModelOutputParser.parse(parsed.text) }
        }
    }

    @Test(.enabled(if: root != nil, "fixtures absent")) func openAIErrors() throws {
        do {
            let body = try Self.data("openai/error.429.rate_limit_exceeded.tokens.json")
            let error = ProviderHTTP.classify(status: 429, body: body, kind: .openai)
            guard case .rateLimited = error else { Issue.record("got \(error)"); return }
        }
        do {
            let body = try Self.data("openai/error.429.insufficient_quota.json")
            let error = ProviderHTTP.classify(status: 429, body: body, kind: .openai)
            guard case .quotaExhausted = error else { Issue.record("got \(error)"); return }
        }
        do {
            let body = try Self.data("openai/error.429.request_too_large.json")
            let error = ProviderHTTP.classify(status: 429, body: body, kind: .openai)
            #expect(!error.isRetryable, "request too large: retrying does not help (\(error))")
        }
        do {
            let body = try Self.data("openai/error.500.server_error.json")
            #expect(ProviderHTTP.classify(status: 500, body: body, kind: .openai) == .server(status: 500))
        }
    }

    @Test(.enabled(if: root != nil, "fixtures absent")) func openAIRequestMatchesPublishedShape() throws {
        let published = try Self.data("openai/chat_completions.request.json_schema.reconstructed.json")
        let reference = try Self.object(published)
        let provider = OpenAIChatProvider(config: ProviderConfig(kind: .openai, id: "oa", apiKey: "k", model: "gpt-4o-2024-08-06"),
                                          http: AINoHTTP())
        let ours = try Self.object(try provider.requestBody(AIFixtures.prompt))
        let refFormat = try #require(reference["response_format"] as? [String: Any])
        let ourFormat = try #require(ours["response_format"] as? [String: Any])
        #expect(ourFormat["type"] as? String == refFormat["type"] as? String)
        let refSpec = try #require(refFormat["json_schema"] as? [String: Any])
        let ourSpec = try #require(ourFormat["json_schema"] as? [String: Any])
        #expect(Set(ourSpec.keys) == Set(refSpec.keys))
        #expect(ourSpec["strict"] as? Bool == refSpec["strict"] as? Bool)
        let refMessages = try #require(reference["messages"] as? [[String: Any]])
        let ourMessages = try #require(ours["messages"] as? [[String: Any]])
        #expect(Set(ourMessages.flatMap(\.keys)).isSubset(of: Set(refMessages.flatMap(\.keys))))
        #expect(ours["model"] is String)
    }

    @Test(.enabled(if: root != nil, "fixtures absent")) func anthropicFixtures() throws {
        do {
            let body = try Self.data("anthropic/messages.response.example.json")
            let parsed = try AnthropicProvider.parseResponse(body)
            #expect(parsed.usage == TokenUsage(inputTokens: 2095, outputTokens: 503))
            #expect(parsed.text == "Hi! My name is Claude.")
        }
        do {
            let body = try Self.data("anthropic/error.400.invalid_request_error.json")
            #expect(ProviderHTTP.classify(status: 400, body: body, kind: .anthropic)
                == .badRequest("messages: roles must alternate between \"user\" and \"assistant\""))
        }
        do {
            let body = try Self.data("anthropic/error.429.rate_limit_error.json")
            #expect(ProviderHTTP.classify(status: 429, headers: [("retry-after", "12")], body: body, kind: .anthropic)
                == .rateLimited(retryAfter: 12))
        }
        do {
            let body = try Self.data("anthropic/error.529.overloaded_error.json")
            let error = ProviderHTTP.classify(status: 529, body: body, kind: .anthropic)
            #expect(error == .server(status: 529) && error.isRetryable)
        }
        do {
            let published = try Self.data("anthropic/messages.request.example.json")
            let reference = try Self.object(published)
            let provider = AnthropicProvider(config: ProviderConfig(kind: .anthropic, id: "c", apiKey: "k", model: "claude-opus-4-6"),
                                             http: AINoHTTP())
            let ours = try Self.object(try provider.requestBody(AIFixtures.prompt))
            for key in reference.keys { #expect(ours[key] != nil, "missing \(key)") }
            #expect(ours["max_tokens"] is Int)
        }
    }

    @Test(.enabled(if: root != nil, "fixtures absent")) func geminiFixtures() throws {
        do {
            let body = try Self.data("gemini/generateContent.response.unary-success-basic-reply-short.json")
            let parsed = try GeminiProvider.parseResponse(body)
            #expect(parsed.usage == TokenUsage(inputTokens: 7, outputTokens: 22))
            #expect(parsed.text.contains("Mountain View"))
        }
        do {
            let body = try Self.data("gemini/generateContent.response.unary-success-thinking-reply-thought-summary.json")
            let parsed = try GeminiProvider.parseResponse(body)
            #expect(parsed.text == "Mountain View")  // thought parts skipped
            #expect(parsed.usage == TokenUsage(inputTokens: 14, outputTokens: 26))  // thoughts billed as output
        }
        do {
            let body = try Self.data("gemini/generateContent.response.unary-failure-finish-reason-safety.json")
            #expect(throws: ProviderError.self) { _ = try GeminiProvider.parseResponse(body) }
        }
        do {
            let body = try Self.data("gemini/generateContent.response.unary-failure-only-prompt-feedback.json")
            do { _ = try GeminiProvider.parseResponse(body); Issue.record("expected refused") } catch let error as ProviderError {
                guard case .refused = error else { Issue.record("got \(error)"); return }
            }
        }
        do {
            let body = try Self.data("gemini/generateContent.response.unary-failure-api-key.json")
            let error = ProviderHTTP.classify(status: 400, body: body, kind: .gemini, secret: "key1234")
            #expect(error == .unauthorized)
        }
        do {
            let body = try Self.data("gemini/generateContent.response.unary-failure-unknown-model.json")
            let error = ProviderHTTP.classify(status: 404, body: body, kind: .gemini)
            guard case .badRequest(let message) = error else { Issue.record("got \(error)"); return }
            #expect(message.contains("is not found"))
        }
        do {
            let body = try Self.data("gemini/generateContent.response.unary-failure-quota-exceeded.vertexai.json")
            guard case .rateLimited = ProviderHTTP.classify(status: 429, body: body, kind: .gemini) else {
                Issue.record("expected rateLimited"); return
            }
        }
        do {
            let published = try Self.data("gemini/generateContent.request.json_schema.json")
            let reference = try Self.object(published)
            let refConfig = try #require(reference["generationConfig"] as? [String: Any])
            let refSchema = try #require(refConfig["response_schema"] as? [String: Any])
            let provider = GeminiProvider(config: ProviderConfig(kind: .gemini, id: "g", apiKey: "k", model: "gemini-2.0-flash"),
                                          http: AINoHTTP())
            let ours = try Self.object(try provider.requestBody(AIFixtures.prompt))
            let config = try #require(ours["generationConfig"] as? [String: Any])
            #expect(config["responseMimeType"] as? String == refConfig["response_mime_type"] as? String)
            let schema = try #require(config["responseSchema"] as? [String: Any])
            // Same dialect as Google's example: upper-case types.
            #expect((schema["type"] as? String).map { $0 == $0.uppercased() } == true)
            #expect((refSchema["type"] as? String).map { $0 == $0.uppercased() } == true)
        }
    }
}
