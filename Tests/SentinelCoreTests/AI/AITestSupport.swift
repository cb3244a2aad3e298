import Foundation
import SentinelCore
import SentinelTestSupport

/// Runs `body` against a fresh fake LLM server and a real loopback HTTP client.
func withFakeLLM<T>(keys: [FakeLLMAPI: String] = FakeLLMServer.defaultKeys,
                    _ body: (FakeLLMServer, AsyncOutboundHTTPClient) async throws -> T) async throws -> T {
    let server = try await FakeLLMServer.start(keys: keys)
    let http = try AsyncOutboundHTTPClient()
    do {
        let result = try await body(server, http)
        await http.shutdown()
        await server.stop()
        return result
    } catch {
        await http.shutdown()
        await server.stop()
        throw error
    }
}

enum AIFixtures {
    /// A distinctive key that must never show up in any error or description.
    static let leakyKey = "sk-LEAKCANARY-9f8e7d6c5b4a3210-zzTOPSECRET"

    static let prompt = ReviewPrompt(
        system: "You are Sentinel. Answer with one JSON object matching the response schema.",
        user: "## Diff\n### File: src/app.py\n  1   1  import os\n",
        responseSchema: PromptBuilder.responseSchema)

    /// `src/app.py`: old 8 lines → new 5 lines; removed lines at old 2, 5, 6, 7, 8; added at new 2, 5.
    static let diff = """
    diff --git a/src/app.py b/src/app.py
    index 1111111..2222222 100644
    --- a/src/app.py
    +++ b/src/app.py
    @@ -1,8 +1,5 @@
     import os
    -import sys
    +import subprocess
     
     def run(cmd):
    -    return os.system(cmd)
    -
    -def legacy():
    -    pass
    +    return subprocess.call(cmd, shell=True)

    """

    static let goodReview = FakeLLMFinding.reviewJSON(summary: "Switches to subprocess.", findings: [
        FakeLLMFinding(path: "src/app.py", line: 5, severity: "critical", category: "security",
                       title: "Shell injection", body: "`shell=True` with user input allows command injection."),
    ])

    static func options() -> ReviewOptions {
        var options = ReviewOptions()
        options.minSeverity = .info
        return options
    }
}

/// A mutable clock for circuit-breaker tests.
final class AITestClock: @unchecked Sendable {
    private let lock = NSLock()
    private var current = Date(timeIntervalSince1970: 1_700_000_000)
    var now: Date { lock.withLock { current } }
    func advance(_ seconds: TimeInterval) { lock.withLock { current += seconds } }
}

/// Records requested sleeps instead of sleeping.
final class AISleepRecorder: @unchecked Sendable {
    private let lock = NSLock()
    private var recorded: [Duration] = []
    var sleeps: [Duration] { lock.withLock { recorded } }
    var sleep: ProviderRouter.Sleep {
        { [self] d in lock.withLock { recorded.append(d) } }
    }
}

/// A provider stub scripted with a sequence of outcomes (the last repeats).
final class AIStubProvider: LLMProvider, @unchecked Sendable {
    let kind: ProviderKind
    let name: String
    let model: String
    private let lock = NSLock()
    private var outcomes: [Result<String, ProviderError>]
    private var count = 0

    init(_ config: ProviderConfig, outcomes: [Result<String, ProviderError>]) {
        self.kind = config.kind
        self.name = config.id
        self.model = config.model
        self.outcomes = outcomes
    }

    var calls: Int { lock.withLock { count } }

    func complete(_ prompt: ReviewPrompt, timeout: Duration) async throws -> ModelReply {
        let outcome: Result<String, ProviderError> = lock.withLock {
            let o = outcomes[min(count, outcomes.count - 1)]
            count += 1
            return o
        }
        switch outcome {
        case .success(let text): return ModelReply(text: text, usage: TokenUsage(inputTokens: 10, outputTokens: 2), provider: "stub", model: "stub")
        case .failure(let error): throw error
        }
    }
}

extension ProviderConfig {
    static func stub(_ kind: ProviderKind, id: String, priority: Int = 0, model: String = "m", key: String = "k",
                     enabled: Bool = true) -> ProviderConfig {
        ProviderConfig(kind: kind, id: id, apiKey: key, baseURL: URL(string: "http://127.0.0.1:9"), model: model,
                       enabled: enabled, priority: priority)
    }
}
