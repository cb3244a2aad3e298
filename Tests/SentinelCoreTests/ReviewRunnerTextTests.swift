import Foundation
@testable import SentinelCore
import Testing

@Suite("Review runner: outside text and incremental diffs")
struct ReviewRunnerTextTests {
    @Test("a finding's model-supplied category, title and body cannot carry a marker or a mention into its comment")
    func commentIsNeutralised() {
        let finding = Finding(path: "a.py", line: 3, side: .right, severity: .high, category: "<!-- sentinel:run:5 -->",
                              title: "ping @admin", body: "see <!-- sentinel:fp:abc -->", source: .ai, fingerprint: "0123456789abcdef")
        let body = ReviewRunner.comment(finding).body
        #expect(!body.contains("<!-- sentinel:run:5"))
        #expect(!body.contains("<!-- sentinel:fp:abc"))
        #expect(body.contains("@\u{200B}admin"))
        #expect(body.hasSuffix(ReviewRunner.fingerprintMarker("0123456789abcdef")), "Sentinel's own fingerprint marker stays")
        #expect(body.components(separatedBy: "<!--").count == 2)
    }

    @Test("text cut for a platform counts code points, never splits a character, and ends with its notice; text within the limit is kept")
    func platformTextFitted() {
        #expect(PlatformText.fitted("short", limit: 10, notice: "cut") == "short")
        // "é" written as e + U+0301 is one character of two code points: 65,000 of them were 130,000 for GitHub.
        let accented = String(repeating: "e\u{301}", count: 70_000)
        let fitted = PlatformText.fitted(accented, limit: 65_535, notice: "_(Cut.)_")
        #expect(fitted.unicodeScalars.count <= 65_535)
        #expect(fitted.hasSuffix("\n\n_(Cut.)_"))
        let kept = fitted.dropLast("\n\n_(Cut.)_".count)
        #expect(kept.allSatisfy { $0 == "e\u{301}" } && kept.unicodeScalars.count % 2 == 0, "no accent left without its letter")
        #expect(kept.unicodeScalars.count >= 65_535 - 20)
    }

    @Test("an incremental review keeps only the PR diff's hunks the push touched; files only in the comparison are dropped")
    func restrictToPullRequestDiff() throws {
        let pr = try DiffFile.fromPatch(path: "app.py", status: .modified,
                                        patch: "@@ -1,2 +1,3 @@\n a\n+b\n c\n@@ -40,2 +41,3 @@\n x\n+y\n z")
        let pushed = try DiffFile.fromPatch(path: "app.py", status: .modified, patch: "@@ -40,2 +40,3 @@\n x\n+y\n z")
        let upstream = try DiffFile.fromPatch(path: "upstream.py", status: .added, patch: "@@ -0,0 +1 @@\n+TOKEN")
        let kept = ReviewRunner.restrict([pr], to: [pushed, upstream])
        #expect(kept.map(\.path) == ["app.py"])
        #expect(kept.first?.hunks.map(\.newStart) == [41], "only the hunk the push touched, numbered as in the PR diff")
        #expect(ReviewRunner.restrict([pr], to: [upstream]).isEmpty)
    }

    @Test("the check's title and conclusion say when the AI review failed or was incomplete; blocking findings decide first")
    func titleAndConclusionCarryTheAIStatus() {
        let failed = AIReviewStatus.failed(reason: "provider returned HTTP 401")
        let partial = AIReviewStatus.partial(failedChunks: 1, of: 3, reason: "provider returned HTTP 503")
        #expect(ReviewRunner.title(findings: 0, aiStatus: .completed) == "No findings")
        #expect(ReviewRunner.title(findings: 1, aiStatus: .skipped(reason: "no AI provider is configured")) == "1 finding")
        #expect(ReviewRunner.title(findings: 0, aiStatus: failed) == "No findings; AI review failed")
        #expect(ReviewRunner.title(findings: 2, aiStatus: partial) == "2 findings; AI review incomplete")
        #expect(ReviewRunner.conclusion(blocking: false, aiStatus: failed, failedRunConclusion: .neutral) == .neutral)
        #expect(ReviewRunner.conclusion(blocking: false, aiStatus: failed, failedRunConclusion: .failure) == .failure)
        #expect(ReviewRunner.conclusion(blocking: true, aiStatus: failed, failedRunConclusion: .neutral) == .failure)
        #expect(ReviewRunner.conclusion(blocking: false, aiStatus: partial, failedRunConclusion: .failure) == .success)
        #expect(ReviewRunner.conclusion(blocking: false, aiStatus: .skipped(reason: "no AI provider is configured"), failedRunConclusion: .failure) == .success)
        // Every call refused by a limit other runs reached: neutral, as a run skipped for its plan's limit (it was a green "No findings").
        let refused = AIReviewStatus.refused(reason: "plan_limit: the workspace's free plan allows 2000000 AI tokens per month")
        #expect(ReviewRunner.conclusion(blocking: false, aiStatus: refused, failedRunConclusion: .failure) == .neutral)
        #expect(ReviewRunner.conclusion(blocking: true, aiStatus: refused, failedRunConclusion: .failure) == .failure)
        #expect(ReviewRunner.title(findings: 0, aiStatus: refused) == "No findings; AI review skipped")
    }
}
