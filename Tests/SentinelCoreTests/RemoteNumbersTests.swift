import Foundation
@testable import SentinelCore
import Testing

/// Numbers a remote server states (a wait, a rate limit's reset, a token count) are used in
/// durations, integers and sums: a misbehaving server's `1e300`, `inf` or `9223372036854775807`
/// once trapped the appliance where they became one.
@Suite("numbers from remote servers")
struct RemoteNumbersTests {
    @Test("Retry-After, retry-after-ms and a provider's retry hint are finite, at least 0 and at most a day")
    func waitsBounded() {
        func retryAfter(_ value: String) -> TimeInterval? { OutboundResponse(status: 429, headers: [("Retry-After", value)]).retryAfter }
        #expect(retryAfter("1e300") == RemoteDelay.maximum)
        #expect(retryAfter("9223372036854775807") == RemoteDelay.maximum)
        #expect(retryAfter("inf") == nil)
        #expect(retryAfter("nan") == nil)
        #expect(retryAfter("-5") == 0)
        #expect(retryAfter("12") == 12)
        #expect(retryAfter("Fri, 31 Dec 9999 23:59:59 GMT") == RemoteDelay.maximum)
        #expect(ProviderHTTP.classify(status: 429, headers: [("retry-after-ms", "1e300")], body: Data(), kind: .openai)
            == .rateLimited(retryAfter: RemoteDelay.maximum))
        #expect(ProviderHTTP.classify(status: 429, headers: [("retry-after-ms", "inf"), ("Retry-After", "3")], body: Data(), kind: .openai)
            == .rateLimited(retryAfter: 3))
        let gemini = Data(#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"1e300s"}]}}"#.utf8)
        #expect(ProviderHTTP.classify(status: 429, body: gemini, kind: .gemini) == .rateLimited(retryAfter: RemoteDelay.maximum))
    }

    @Test("a rate limit's reset far in the future is a day away at most, in the retry and in the sweep's budget")
    func resetsBounded() async throws {
        let github = OutboundResponse(status: 403, headers: [("x-ratelimit-remaining", "0"), ("x-ratelimit-limit", "5000"),
                                                             ("x-ratelimit-reset", "1e300")])
        let gitHubError = GitHubClient.error(github, operation: "list pull requests")
        #expect(gitHubError.retryAfter.map { $0 > RemoteDelay.maximum - 60 && $0 <= RemoteDelay.maximum } == true, "\(gitHubError)")
        #expect(JobFailure.retryAfter(gitHubError.retryAfter!, "rate limited").description.hasSuffix("(retry after 86400s)"))
        let gitLab = OutboundResponse(status: 429, headers: [("RateLimit-Reset", "9223372036854775807")])
        let gitLabError = GitLabClient.error(gitLab, operation: "list merge requests")
        #expect(gitLabError.retryAfter.map { $0 <= RemoteDelay.maximum } == true, "\(gitLabError)")
        let inf = GitLabClient.error(OutboundResponse(status: 429, headers: [("RateLimit-Reset", "inf")]), operation: "list merge requests")
        #expect(inf.retryAfter == 60, "a reset that is not a number: GitLab's default wait")

        let budget = GitHubRateBudget()
        await budget.observe(github)
        let reset = try #require(await budget.current?.resetAt)
        #expect(reset.timeIntervalSinceNow <= RemoteDelay.maximum)
        let gitLabBudget = GitLabRateBudget()
        await gitLabBudget.observe(OutboundResponse(status: 200, headers: [("RateLimit-Remaining", "0"), ("RateLimit-Limit", "600"),
                                                                           ("RateLimit-Reset", "nan")]))
        #expect(await gitLabBudget.current?.remaining == 0)
        #expect(await gitLabBudget.current?.resetAt == nil)
    }

    @Test("token counts a provider reports are at least 0 and at most 2^40 each, so the sums that meter spending cannot overflow")
    func tokenCountsBounded() throws {
        let openAI = Data(#"{"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"{\"findings\":[]}"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9223372036854775807,"completion_tokens":-40}}"#.utf8)
        let parsed = try OpenAIChatProvider.parseResponse(openAI)
        #expect(parsed.usage == TokenUsage(inputTokens: 1 << 40, outputTokens: 0))
        #expect((parsed.usage + parsed.usage).totalTokens == 1 << 41)
        let anthropic = Data(#"{"type":"message","content":[{"type":"text","text":"{\"findings\":[]}"}],"usage":{"input_tokens":9223372036854775807,"cache_creation_input_tokens":9223372036854775807,"cache_read_input_tokens":9223372036854775807,"output_tokens":12}}"#.utf8)
        #expect(try AnthropicProvider.parseResponse(anthropic).usage == TokenUsage(inputTokens: 3 << 40, outputTokens: 12))
        let gemini = Data(#"{"candidates":[{"content":{"parts":[{"text":"{\"findings\":[]}"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":100,"candidatesTokenCount":9223372036854775807,"thoughtsTokenCount":9223372036854775807}}"#.utf8)
        #expect(try GeminiProvider.parseResponse(gemini).usage == TokenUsage(inputTokens: 100, outputTokens: 2 << 40))
    }
}
