import Foundation
import Testing
import SentinelCore
import SentinelTestSupport

/// A scripted model: the closure sees each prompt and returns the reply text or throws.
struct EngineFakeModel: ReviewModel {
    let respond: @Sendable (ReviewPrompt) async throws -> String

    func complete(_ prompt: ReviewPrompt) async throws -> ModelReply {
        let text = try await respond(prompt)
        return ModelReply(text: text, usage: TokenUsage(inputTokens: prompt.estimatedTokens, outputTokens: text.utf8.count / 4),
                          provider: "fake", model: "fake-1")
    }
}

/// Counts calls and the peak number of calls in flight.
actor EngineCallTracker {
    private(set) var inFlight = 0
    private(set) var peak = 0
    private(set) var calls: [String: Int] = [:]

    func enter(_ key: String = "") {
        inFlight += 1
        peak = max(peak, inFlight)
        calls[key, default: 0] += 1
    }

    func exit() { inFlight -= 1 }
}

struct EngineTestError: Error, CustomStringConvertible {
    var description: String { "provider returned HTTP 503" }
}

@Suite("Engine: end-to-end review")
struct EngineReviewTests {
    typealias F = EngineFixtures

    static let secret = "gh" + "p_" + F.token(36, seed: 90)

    /// Five files: two source files, a lock file, a binary and a deleted file.
    static var pullRequest: String {
        F.text(
            "diff --git a/src/api.ts b/src/api.ts",
            "--- a/src/api.ts",
            "+++ b/src/api.ts",
            "@@ -1,6 +1,8 @@",
            " import { db } from './db'",
            "-export function find(id) {",
            "+const TOKEN = '\(secret)'",
            "+export async function find(id: string) {",
            "+  const q = `SELECT * FROM users WHERE id = ${id}`",
            "   return db.query(q)",
            " }",
            " ",
            " export default find",
            "diff --git a/src/util.ts b/src/util.ts",
            "--- a/src/util.ts",
            "+++ b/src/util.ts",
            "@@ -10,4 +10,4 @@ export function sum(xs) {",
            "   let total = 0",
            "-  for (let i = 0; i < xs.length; i++) total += xs[i]",
            "+  for (let i = 0; i <= xs.length; i++) total += xs[i]",
            "   return total",
            " }",
            "diff --git a/package-lock.json b/package-lock.json",
            "--- a/package-lock.json",
            "+++ b/package-lock.json",
            "@@ -1,3 +1,3 @@",
            " {",
            "-  \"version\": \"1.0.0\"",
            "+  \"version\": \"1.0.1\"",
            " }",
            "diff --git a/assets/logo.png b/assets/logo.png",
            "index 1111111..2222222 100644",
            "Binary files a/assets/logo.png and b/assets/logo.png differ"
        )
    }

    static let modelAnswer = """
    Here is the review.
    ```json
    {
      "summary": "Makes `find` async and typed; adjusts `sum`.",
      "findings": [
        {"path": "src/api.ts", "line": 4, "side": "RIGHT", "severity": "critical", "category": "security",
         "title": "SQL injection", "body": "Interpolating `id` into SQL lets callers inject queries.",
         "suggestion": "  const q = 'SELECT * FROM users WHERE id = $1'"},
        {"path": "src/util.ts", "line": 13, "severity": "high", "category": "correctness",
         "title": "Off-by-one", "body": "`<=` reads past the end of the array."},
        {"path": "src/util.ts", "line": 11, "side": "RIGHT", "severity": "medium", "category": "correctness",
         "title": "Old loop was fine", "body": "Cited by old line number."},
        {"path": "src/api.ts", "line": 2, "side": "LEFT", "severity": "low", "category": "maintainability",
         "title": "Removed untyped signature", "body": "Good riddance."},
        {"path": "src/db.ts", "line": 40, "severity": "high", "category": "reliability",
         "title": "Pool never closed", "body": "The pool in db.ts leaks connections."},
        {"path": "src/util.ts", "line": 12, "severity": "info", "category": "style",
         "title": "Below the floor", "body": "Not posted."},
      ],
    }
    ```
    """

    @Test func endToEndWithFakeModel() async throws {
        let files = try UnifiedDiff.parse(Self.pullRequest + F.text(
            "diff --git a/old.txt b/old.txt", "deleted file mode 100644", "--- a/old.txt", "+++ /dev/null",
            "@@ -1 +0,0 @@", "-bye"))
        #expect(files.count == 5)
        let model = EngineFakeModel { _ in Self.modelAnswer }
        let options = ReviewOptions(minSeverity: .low, maxComments: 10)
        let result = await ReviewEngine.review(files: files, options: options, model: model)

        #expect(result.aiStatus == .completed)
        #expect(result.chunkCount == 1)
        #expect(result.usage.count == 1)
        #expect(result.usage[0].provider == "fake" && result.usage[0].parsed)
        #expect(result.totalUsage.inputTokens > 0)
        #expect(result.coverage == ReviewCoverage(reviewedFiles: 2, totalFiles: 5,
                                                  skipped: [.lockFile: 1, .binary: 1, .deleted: 1]))

        // Built-in secret first (critical, src/api.ts:2), then AI findings by severity.
        let titles = result.findings.map(\.title)
        #expect(titles == ["GitHub token committed", "SQL injection", "Off-by-one", "Old loop was fine",
                           "Removed untyped signature"])
        let secretFinding = result.findings[0]
        #expect(secretFinding.source == .builtin && secretFinding.line == 2)
        let sql = result.findings[1]
        #expect(sql.line == 4 && sql.side == .right && sql.suggestion != nil && sql.source == .ai)
        // Line 13 is the hunk's last context line ("}"): commentable, kept as is.
        #expect(result.findings[2].line == 13)
        // RIGHT 11 exists (the added loop line), so it stays on the right side.
        #expect(result.findings[3].line == 11 && result.findings[3].side == .right)
        #expect(result.findings[4].side == .left && result.findings[4].line == 2)

        #expect(result.unanchored.map(\.path) == ["src/db.ts"])
        #expect(result.droppedBelowFloor == 1)
        #expect(!result.summary.contains(Self.secret))

        let summary = result.summary
        #expect(summary.contains("Makes `find` async and typed"))
        #expect(summary.contains("- `src/api.ts` (modified, +3 −1)"))
        #expect(summary.contains("- `src/util.ts` (modified, +1 −1)"))
        #expect(!summary.contains("package-lock.json"))
        #expect(summary.contains("### Findings not on changed lines"))
        #expect(summary.contains("`src/db.ts:40` Pool never closed"))
        #expect(summary.contains("Reviewed 2 of 5 files; skipped 3: lock files (1), binary (1), deleted (1)."))
        #expect(!summary.contains("AI review skipped"))
    }

    @Test("the summary's lists show the most severe first: a blocking finding after 25 lesser ones was cut from the list and shown nowhere")
    func summaryListsMostSevereFirst() async throws {
        let files = [EngineFixtures.addedFile("multi.py", lines: ["x = 1"])]
        let ghosts = (1...30).map { #"{"path": "ghost\#($0).py", "line": 1, "severity": "medium", "title": "m\#($0)"}"# }
        let blocker = #"{"path": "zzz.py", "line": 1, "severity": "critical", "title": "THE BLOCKER"}"#
        let model = EngineFakeModel { _ in #"{"summary": "s", "findings": ["# + (ghosts + [blocker]).joined(separator: ", ") + "]}" }
        let result = await ReviewEngine.review(files: files, options: ReviewOptions(minSeverity: .low, maxComments: 10), model: model)
        let listed = result.summary.split(separator: "\n").filter { $0.hasPrefix("- **") }
        #expect(listed.first?.contains("THE BLOCKER") == true, "\(result.summary)")
        #expect(listed.count == 25 && result.summary.contains("- … and 6 more"))
        #expect(listed.dropFirst().first?.contains("m1") == true, "the model's order within a severity")
    }

    @Test("a file named with a leading or trailing space gets its inline comment (the path was trimmed and its findings never found their file)")
    func pathWithOuterSpacesAnchored() async throws {
        let files = [EngineFixtures.addedFile(" lead.py", lines: ["a = 1", "b = 2"]), EngineFixtures.addedFile("trail.py ", lines: ["a = 1", "b = 2"])]
        let model = EngineFakeModel { _ in
            #"{"summary": "s", "findings": [{"path": " lead.py", "line": 2, "severity": "high", "title": "Lead"}, {"path": "trail.py ", "line": 2, "severity": "high", "title": "Trail"}, {"path": "  nowhere.py ", "line": 2, "severity": "high", "title": "Nowhere"}]}"#
        }
        let result = await ReviewEngine.review(files: files, options: ReviewOptions(minSeverity: .low, maxComments: 10), model: model)
        #expect(Set(result.findings.map(\.path)) == [" lead.py", "trail.py "], "\(result.findings)")
        #expect(result.unanchored.map(\.path) == ["nowhere.py"], "a file not in the diff is named trimmed")
    }

    @Test("a finding about a file the review left out (excluded by the repository's paths, a lock file, deleted) or a path the paths exclude is not reported; one about another file is listed in the summary")
    func findingsOutsideTheReviewDropped() async throws {
        let files = [EngineFixtures.addedFile("src/app.py", lines: ["import sys", "x = eval(input())"]),
                     EngineFixtures.addedFile("docs/readme.md", lines: ["# Hi", "say more"]),
                     EngineFixtures.addedFile("package-lock.json", lines: ["{}"])]
        let model = EngineFakeModel { prompt in
            #expect(!prompt.user.contains("docs/readme.md") && !prompt.user.contains("package-lock.json"))
            return #"{"summary": "s", "findings": ["#
                + #"{"path": "src/app.py", "line": 2, "severity": "low", "title": "On the diff"},"#
                + #"{"path": "docs/readme.md", "line": 2, "severity": "critical", "title": "Excluded file"},"#
                + #"{"path": "./docs/other.md", "line": 1, "severity": "critical", "title": "Excluded path"},"#
                + #"{"path": "`package-lock.json`", "line": 1, "severity": "critical", "title": "Lock file"},"#
                + #"{"path": "src/caller.py", "line": 9, "severity": "medium", "title": "Caller breaks"}]}"#
        }
        let result = await ReviewEngine.review(files: files, options: ReviewOptions(exclude: ["docs/**"], minSeverity: .low, maxComments: 10), model: model)
        #expect(result.findings.map(\.title) == ["On the diff"])
        #expect(result.unanchored.map(\.title) == ["Caller breaks"], "\(result.unanchored)")
        #expect(!result.reportedSeverities.contains(.critical))
        #expect(!result.summary.contains("Excluded") && !result.summary.contains("Lock file"), "\(result.summary)")

        // A reviewed file cited as the diff names it (b/…) or by its name before a rename stays in
        // scope, whatever the include globs say of that name.
        var renamed = EngineFixtures.addedFile("src/new.py", lines: ["x = 1"])
        renamed.status = .renamed
        renamed.oldPath = "old/name.py"
        let second = EngineFakeModel { _ in
            #"{"summary": "s", "findings": [{"path": "b/src/app.py", "line": 100, "severity": "critical", "title": "Diff name"},"#
                + #"{"path": "old/name.py", "line": 50, "severity": "critical", "title": "Old name"},"#
                + #"{"path": "b/docs/x.md", "line": 1, "severity": "critical", "title": "Excluded, diff name"}]}"#
        }
        let kept = await ReviewEngine.review(files: [files[0], renamed], options: ReviewOptions(include: ["src/**"], exclude: ["docs/**"], minSeverity: .low, maxComments: 10), model: second)
        #expect(kept.unanchored.map(\.title) == ["Diff name", "Old name"], "\(kept.unanchored)")
        // Real top-level directories named a/ and b/ that the repository excludes stay excluded.
        let third = EngineFakeModel { _ in
            #"{"summary": "s", "findings": [{"path": "a/secrets_loader.py", "line": 5, "severity": "critical", "title": "A dir"},"#
                + #"{"path": "b/x/y.py", "line": 5, "severity": "critical", "title": "B dir"}]}"#
        }
        let excludedDirs = await ReviewEngine.review(files: [files[0]], options: ReviewOptions(exclude: ["a/**", "b/**"], minSeverity: .low, maxComments: 10), model: third)
        #expect(excludedDirs.unanchored.isEmpty, "\(excludedDirs.unanchored)")
    }

    @Test("a finding cites a file named with a control character as the prompt shows it (t\\u{9}b.py): it is anchored on that file")
    func escapedFileNameAnchored() async throws {
        let files = [EngineFixtures.addedFile("t\tb.py", lines: ["a = 1", "b = 2"])]
        let model = EngineFakeModel { _ in
            #"{"summary": "s", "findings": [{"path": "t\\u{9}b.py", "line": 2, "severity": "high", "title": "Shown"}, {"path": "t\tb.py", "line": 1, "severity": "high", "title": "Raw"}]}"#
        }
        let result = await ReviewEngine.review(files: files, options: ReviewOptions(minSeverity: .low, maxComments: 10), model: model)
        #expect(Set(result.findings.map(\.title)) == ["Shown", "Raw"] && result.unanchored.isEmpty, "\(result.findings) \(result.unanchored)")
    }

    @Test("a finding with no line (or line 0) is about its file: listed in the summary by path and counted, never placed on a line")
    func fileLevelFindingListed() async throws {
        let files = try UnifiedDiff.parse(Self.pullRequest)
        let model = EngineFakeModel { _ in
            #"{"summary": "s", "findings": [{"path": "src/api.ts", "line": 0, "severity": "high", "title": "Whole-file problem"}, {"path": "src/api.ts", "severity": "high", "title": "No line at all"}]}"#
        }
        let result = await ReviewEngine.review(files: files, options: ReviewOptions(minSeverity: .low, maxComments: 10), model: model)
        #expect(result.unanchored.map(\.title).sorted() == ["No line at all", "Whole-file problem"])
        #expect(!result.findings.contains { $0.title == "Whole-file problem" || $0.title == "No line at all" })
        #expect(result.summary.contains("`src/api.ts` Whole-file problem"), "\(result.summary)")
        #expect(result.reportedSeverities.filter { $0 == .high }.count >= 2)
    }

    @Test func coverageSentenceFormat() {
        let coverage = ReviewCoverage(reviewedFiles: 3, totalFiles: 5, skipped: [.binary: 1, .lockFile: 1])
        #expect(coverage.sentence == "Reviewed 3 of 5 files; skipped 2: lock files (1), binary (1).")
        #expect(ReviewCoverage(reviewedFiles: 1, totalFiles: 1, skipped: [:]).sentence == "Reviewed 1 of 1 file.")
    }

    @Test func alreadyPostedFindingsAreNotRepeated() async throws {
        let files = try UnifiedDiff.parse(Self.pullRequest)
        let model = EngineFakeModel { _ in Self.modelAnswer }
        let first = await ReviewEngine.review(files: files, options: ReviewOptions(), model: model)
        #expect(!first.findings.isEmpty)
        let again = await ReviewEngine.review(files: files, options: ReviewOptions(alreadyPosted: Set(first.findings.map(\.fingerprint))),
                                              model: model)
        #expect(again.findings.isEmpty)
        #expect(again.duplicates == first.findings.count)
    }

    @Test("model summaries cut to their cap inside a code block get the block closed: the walkthrough after it is not shown as code")
    func cutSummaryClosesItsCodeBlock() async throws {
        let files = try UnifiedDiff.parse(Self.pullRequest)
        let prose = String(repeating: "Long summary text. ", count: 1_050)
        let summary = prose + "\n\n```python\n" + String(repeating: "cursor.execute(q)\n", count: 200) + "```\nAfter the code."
        let model = EngineFakeModel { _ in
            String(decoding: try JSONSerialization.data(withJSONObject: ["summary": summary, "findings": [[String: Any]]()]), as: UTF8.self)
        }
        let result = await ReviewEngine.review(files: files, options: ReviewOptions(), model: model)
        let walkthrough = try #require(result.summary.range(of: "### Walkthrough"))
        let before = result.summary[..<walkthrough.lowerBound]
        #expect(before.contains("```python") && before.hasSuffix("…\n```\n\n"), "\(before.suffix(80))")
        #expect(ReviewSummary.closingOpenFence("a\n~~~~\nb\n~~~~\n```js\nx") == "a\n~~~~\nb\n~~~~\n```js\nx\n```")
        #expect(ReviewSummary.closingOpenFence("a\n```\nb\n```") == "a\n```\nb\n```")
    }

    @Test func noModelMeansSkippedButBuiltinFindingsRemain() async throws {
        let files = try UnifiedDiff.parse(Self.pullRequest)
        let result = await ReviewEngine.review(files: files, options: ReviewOptions(aiSkippedReason: "no provider key is configured"),
                                               model: nil)
        #expect(result.aiStatus == .skipped(reason: "no provider key is configured"))
        #expect(result.findings.map(\.title) == ["GitHub token committed"])
        #expect(result.usage.isEmpty)
        #expect(result.summary.contains("> AI review skipped: no provider key is configured."))
        #expect(result.summary.contains("Reviewed 2 of 4 files; skipped 2: lock files (1), binary (1)."))

        let noBuiltin = await ReviewEngine.review(files: files, options: ReviewOptions(builtinChecks: false), model: nil)
        #expect(noBuiltin.findings.isEmpty)
        #expect(noBuiltin.aiStatus == .skipped(reason: "no AI provider is configured"))

        // The AI budget spent before the run: the files the model would have read are not
        // reviewed, as when it runs out during a run, and the AI part is refused, not skipped
        // (it said "Reviewed 2 of 4 files" and concluded green).
        let spent = await ReviewEngine.review(files: files, options: ReviewOptions(aiSkippedReason: ProviderRouter.SkipReason.budgetSpent), model: nil)
        #expect(spent.aiStatus == .refused(reason: ProviderRouter.SkipReason.budgetSpent))
        #expect(spent.coverage.reviewedFiles == 0 && spent.coverage.notReviewed.count == 2, "\(spent.coverage)")
        #expect(spent.coverage.notReviewedReason == ProviderRouter.SkipReason.budgetSpent)
        #expect(spent.findings.map(\.title) == ["GitHub token committed"])
    }

    @Test("the built-in checks look at the paths of their own scope when one is given (a run's settings), not at the review's excludes")
    func builtinScopeIsItsOwn() async throws {
        let files = try UnifiedDiff.parse(Self.pullRequest)
        let excluded = await ReviewEngine.review(files: files, options: ReviewOptions(exclude: ["src/**"]), model: nil)
        #expect(excluded.findings.isEmpty, "without a scope of their own, the review's excludes apply")
        var options = ReviewOptions(exclude: ["src/**"])
        options.builtinScope = (include: [], exclude: [])
        let scoped = await ReviewEngine.review(files: files, options: options, model: nil)
        #expect(scoped.findings.map(\.title) == ["GitHub token committed"])
        #expect(scoped.summary.contains("skipped"), "the AI review's coverage still counts src/ as excluded: \(scoped.summary)")
        options.builtinScope = (include: [], exclude: ["src/api.ts"])
        #expect(await ReviewEngine.review(files: files, options: options, model: nil).findings.isEmpty, "the settings' own excludes apply")
    }

    /// Files big enough (~700 tokens) that each gets its own chunk at the minimum budget.
    private func manyFiles(_ count: Int) -> [DiffFile] {
        (0..<count).map { i in
            F.addedFile("pkg/file\(i).go", lines: (0..<60).map { "\tvalue\($0) := compute(\($0), \(i)) // keep going" })
        }
    }

    private static func chunkPaths(_ prompt: ReviewPrompt) -> [String] {
        prompt.user.split(separator: "\n").filter { $0.hasPrefix("### File: ") }.map {
            String($0.dropFirst("### File: ".count).split(separator: " ").first ?? "")
        }
    }

    @Test func garbageTwiceMakesThePartialStatus() async throws {
        let tracker = EngineCallTracker()
        let model = EngineFakeModel { prompt in
            let paths = Self.chunkPaths(prompt)
            await tracker.enter(paths.joined(separator: ","))
            await tracker.exit()
            if paths.contains("pkg/file1.go") { return "I'm sorry, I can't produce JSON today. {\"summary\": " }
            let finding = paths.first.map {
                "{\"path\": \"\($0)\", \"line\": 1, \"severity\": \"high\", \"title\": \"Issue in \($0)\", \"body\": \"b\"}"
            } ?? ""
            return "{\"summary\": \"part\", \"findings\": [\(finding)]}"
        }
        let options = ReviewOptions(chunkTokenBudget: 1, maxParallelChunks: 2)
        let result = await ReviewEngine.review(files: manyFiles(3), options: options, model: model)
        #expect(result.chunkCount == 3)
        guard case .partial(let failed, let total, let reason) = result.aiStatus else {
            Issue.record("expected partial, got \(result.aiStatus)")
            return
        }
        #expect(failed == 1 && total == 3)
        #expect(reason.contains("truncated"))
        #expect(await tracker.calls["pkg/file1.go"] == 2)
        #expect(await tracker.calls["pkg/file0.go"] == 1)
        #expect(result.usage.count == 4)
        #expect(result.usage.filter { !$0.parsed }.count == 2)
        #expect(result.findings.map(\.path) == ["pkg/file0.go", "pkg/file2.go"])
        #expect(result.summary.contains("AI review incomplete: 1 of 3 parts failed"))
    }

    /// A model whose every answer is cut off at its output-token limit.
    struct CutOffModel: ReviewModel {
        let tracker: EngineCallTracker
        func complete(_ prompt: ReviewPrompt) async throws -> ModelReply {
            await tracker.enter()
            await tracker.exit()
            return ModelReply(text: #"{"summary": "Adds the feature", "findings": [{"path": "pkg/fi"#,
                              usage: TokenUsage(inputTokens: 100, outputTokens: 8_192), provider: "fake", model: "fake-1", hitOutputLimit: true)
        }
    }

    @Test("an answer cut off at the output-token limit is not asked for again, and the status names the limit")
    func outputLimitIsNotRetried() async {
        let tracker = EngineCallTracker()
        let result = await ReviewEngine.review(files: manyFiles(1), options: ReviewOptions(), model: CutOffModel(tracker: tracker))
        #expect(await tracker.calls[""] == 1)
        #expect(result.usage.count == 1)
        #expect(result.aiStatus == .failed(reason: "the model's answer stopped at its output-token limit (8192 tokens) before the review was complete"))
    }

    @Test("the AI status is one sentence: a reason that already ends with a period (a model's refusal text) gets no second one")
    func statusSentenceEndsOnce() {
        #expect(AIReviewStatus.failed(reason: "the model declined: I can't assist with that.").description
                == "AI review failed: the model declined: I can't assist with that.")
        #expect(AIReviewStatus.failed(reason: "server error (HTTP 500)").description == "AI review failed: server error (HTTP 500).")
        #expect(AIReviewStatus.skipped(reason: "no key.").description == "AI review skipped: no key.")
        #expect(AIReviewStatus.partial(failedChunks: 1, of: 2, reason: "timed out").description == "AI review incomplete: 1 of 2 parts failed (timed out).")
    }

    @Test func providerErrorsPropagateIntoTheStatus() async throws {
        let failing = EngineFakeModel { _ in throw EngineTestError() }
        let result = await ReviewEngine.review(files: manyFiles(2), options: ReviewOptions(chunkTokenBudget: 1), model: failing)
        #expect(result.aiStatus == .failed(reason: "provider returned HTTP 503"))
        #expect(result.usage.isEmpty)

        let tracker = EngineCallTracker()
        let flaky = EngineFakeModel { prompt in
            let paths = Self.chunkPaths(prompt)
            await tracker.enter(paths.joined())
            await tracker.exit()
            if paths.contains("pkg/file0.go") { throw EngineTestError() }
            return "{\"summary\": \"ok\", \"findings\": []}"
        }
        let partial = await ReviewEngine.review(files: manyFiles(2), options: ReviewOptions(chunkTokenBudget: 1), model: flaky)
        // The status names the files the model did not read, and the coverage does not count them as reviewed.
        #expect(partial.aiStatus == .partial(failedChunks: 1, of: 2, reason: "provider returned HTTP 503; not read by the model: `pkg/file0.go`"))
        #expect(partial.coverage.sentence == "Reviewed 1 of 2 files; skipped 1: AI review failed (1).")
        #expect(partial.files.first { $0.path == "pkg/file0.go" }?.decision == .skip(.aiFailed))
        #expect(result.coverage.sentence == "Reviewed 0 of 2 files; skipped 2: AI review failed (2).")
        // Transport errors are not retried by the engine (the router already did).
        #expect(await tracker.calls["pkg/file0.go"] == 1)
    }

    @Test func parallelismIsBounded() async throws {
        let tracker = EngineCallTracker()
        let model = EngineFakeModel { _ in
            await tracker.enter()
            try? await Task.sleep(for: .milliseconds(15))
            await tracker.exit()
            return "{\"summary\": \"\", \"findings\": []}"
        }
        let result = await ReviewEngine.review(files: manyFiles(12),
                                               options: ReviewOptions(chunkTokenBudget: 1, maxParallelChunks: 3), model: model)
        #expect(result.chunkCount == 12)
        #expect(result.aiStatus == .completed)
        let peak = await tracker.peak
        #expect(peak <= 3)
        #expect(peak >= 2)
        #expect(await tracker.calls[""] == 12)
    }

    /// A 2,000-line pull request is five chunks: by default they all run at once, so the review
    /// takes one model call's time, not two rounds.
    @Test func defaultRunsEightChunksAtOnce() async throws {
        let tracker = EngineCallTracker()
        let model = EngineFakeModel { _ in
            await tracker.enter()
            try? await Task.sleep(for: .milliseconds(200))
            await tracker.exit()
            return "{\"summary\": \"\", \"findings\": []}"
        }
        var options = ReviewOptions()
        options.chunkTokenBudget = 1
        let result = await ReviewEngine.review(files: manyFiles(10), options: options, model: model)
        #expect(result.chunkCount == 10)
        #expect(await tracker.peak == 8)
    }

    @Test func emptyOrFullyFilteredChangeSkipsTheModel() async throws {
        let files = try UnifiedDiff.parse(Self.pullRequest)
        let model = EngineFakeModel { _ in
            Issue.record("the model must not be called")
            return "{}"
        }
        let result = await ReviewEngine.review(files: files, options: ReviewOptions(exclude: ["src/"]), model: model)
        #expect(result.aiStatus == .skipped(reason: "no files left to review after filters"))
        #expect(result.coverage.skipped[.excluded] == 2)
        // Excluded by the user: built-in checks respect that too.
        #expect(result.findings.isEmpty)
        // Every file over the total token budget: said so, not "after filters".
        let over = await ReviewEngine.review(files: files, options: ReviewOptions(maxTotalTokens: 1), model: model)
        #expect(over.aiStatus == .skipped(reason: "every file left to review is over the token budget"), "\(over.aiStatus)")
    }

    @Test func largePullRequestIsChunkedAndEveryFileReviewedOnce() async throws {
        var rng = SeededRNG(seed: 2025)
        let files = (0..<300).map { i in
            EngineFixtures.randomFile(&rng, path: "svc\(i % 9)/F\(i).swift", hunks: 2...4, linesPerHunk: 25...45)
        }
        actor Seen {
            var lines: [String] = []
            func add(_ keys: [String]) { lines += keys }
        }
        let seen = Seen()
        // The fake reads back what it was shown: every diff line must reach the model exactly once.
        let model = EngineFakeModel { prompt in
            var keys: [String] = []
            var path = ""
            let diff = prompt.user.components(separatedBy: "## Diff\n").last ?? ""
            for line in diff.split(separator: "\n", omittingEmptySubsequences: true) {
                if line.hasPrefix("### File: ") {
                    path = String(line.dropFirst("### File: ".count).split(separator: " ").first ?? "")
                } else if !line.hasPrefix("@@") {
                    keys.append(path + "|" + Fingerprint.normalize(String(line)))
                }
            }
            await seen.add(keys)
            return "{\"summary\": \"\", \"findings\": []}"
        }
        let result = await ReviewEngine.review(files: files, options: ReviewOptions(), model: model)
        #expect(result.aiStatus == .completed)
        #expect(result.coverage.reviewedFiles == 300)
        #expect(result.chunkCount > 1)
        let shown = await seen.lines
        let expected = files.flatMap { file in
            file.hunks.flatMap(\.lines).map { line in
                let marker = line.kind == .added ? "+" : line.kind == .removed ? "-" : " "
                let old = line.kind == .added ? "" : "\(line.oldLine!)"
                let new = line.kind == .removed ? "" : "\(line.newLine!)"
                return file.path + "|" + Fingerprint.normalize("\(old) \(new) \(marker)\(line.text)")
            }
        }
        #expect(shown.count == expected.count)
        #expect(shown.sorted() == expected.sorted())
        #expect(result.summary.contains("… and 200 more files"))
    }
}
