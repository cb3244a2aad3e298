import Foundation
import SentinelCore
import SentinelTestSupport
import Testing

@Suite("AI review end to end")
struct AIEngineEndToEndTests {
    @Test(arguments: [ProviderKind.openai, .anthropic, .gemini])
    func findingsOffTheDiffAreReanchoredOrMovedNeverPostedOnWrongLines(kind: ProviderKind) async throws {
        try await withFakeLLM { server, http in
            await server.state.setReview(summary: "Replaces os.system with subprocess.", findings: [
                // Valid: an added line.
                FakeLLMFinding(path: "src/app.py", line: 5, severity: "critical", category: "security", title: "Shell injection"),
                // Not in the diff at all (far from any hunk): must go to the summary.
                FakeLLMFinding(path: "src/app.py", line: 200, severity: "high", title: "Far away"),
                // Two lines past the hunk's old side: re-anchored to the nearest removed line (LEFT 8).
                FakeLLMFinding(path: "src/app.py", line: 10, side: "LEFT", severity: "medium", title: "Near the end",
                               suggestion: "pass"),
                // The model cites a deleted line (old line 8, `pass`) as RIGHT: it must move to LEFT 8.
                FakeLLMFinding(path: "src/app.py", line: 8, side: "RIGHT", severity: "low", title: "Dead code removed"),
                // A file that is not in the PR.
                FakeLLMFinding(path: "src/other.py", line: 1, severity: "high", title: "Unknown file"),
            ])
            let files = try UnifiedDiff.parse(AIFixtures.diff)
            let router = ProviderRouter(workspaceID: "ws", providers: [server.config(kind, id: "primary")], http: http,
                                        breakers: CircuitBreakerRegistry(), sleep: AISleepRecorder().sleep)
            let result = await ReviewEngine.review(files: files, options: AIFixtures.options(), model: router)

            #expect(result.aiStatus == .completed)
            #expect(result.usage.first?.provider == "primary")
            #expect(result.usage.first?.usage.inputTokens == 1_200)
            let file = try #require(files.first)
            for finding in result.findings {
                #expect(file.commentableLines(side: finding.side).contains(finding.line),
                        "\(finding.title) posted on \(finding.side) \(finding.line), which is not in the diff")
            }
            let byTitle = Dictionary(uniqueKeysWithValues: result.findings.map { ($0.title, $0) })
            #expect(byTitle["Shell injection"]?.line == 5 && byTitle["Shell injection"]?.side == .right)
            let near = try #require(byTitle["Near the end"])
            #expect(near.side == .left && near.line == 8)
            #expect(near.suggestion == nil)  // moved, so the suggestion would replace the wrong lines
            let dead = try #require(byTitle["Dead code removed"])
            #expect(dead.side == .left && dead.line == 8)
            #expect(byTitle["Far away"] == nil && byTitle["Unknown file"] == nil)
            #expect(Set(result.unanchored.map(\.title)) == ["Far away", "Unknown file"])
            #expect(result.summary.contains("Far away"))
        }
    }

    @Test func noEligibleProviderSkipsAIWithAPlainReason() async throws {
        let files = try UnifiedDiff.parse(AIFixtures.diff)
        let registry = CircuitBreakerRegistry()
        let (eligible, reason) = await ProviderRouter.eligibility(workspaceID: "ws", providers: [], http: AINoHTTP(), breakers: registry)
        #expect(eligible.isEmpty)
        var options = AIFixtures.options()
        options.aiSkippedReason = reason
        let result = await ReviewEngine.review(files: files, options: options, model: nil)
        #expect(result.aiStatus == .skipped(reason: "no AI provider key is configured"))
    }

    @Test func everyProviderDownFailsTheAIPartButTheRunCompletes() async throws {
        try await withFakeLLM { server, http in
            await server.state.inject(.status(503), times: nil)
            let files = try UnifiedDiff.parse(AIFixtures.diff)
            let router = ProviderRouter(workspaceID: "ws",
                                        providers: [server.config(.openai, id: "a"), server.config(.gemini, id: "b", priority: 1)],
                                        http: http, breakers: CircuitBreakerRegistry(), sleep: AISleepRecorder().sleep)
            let result = await ReviewEngine.review(files: files, options: AIFixtures.options(), model: router)
            guard case .failed(let reason) = result.aiStatus else { Issue.record("expected failed, got \(result.aiStatus)"); return }
            #expect(reason.contains("server error (HTTP 503)"))
            #expect(!reason.contains(FakeLLMServer.defaultKeys[.openAI]!))
        }
    }
}
