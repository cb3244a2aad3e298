import Foundation
@testable import SentinelCore
import Testing

/// What an incremental review carries from the last review: findings it did not look at again,
/// at the lines they are on at the new head.
@Suite("Carried findings")
struct CarriedFindingsTests {
    static func file(_ path: String, _ hunks: [(oldStart: Int, oldCount: Int, newStart: Int, newCount: Int)]) -> DiffFile {
        DiffFile(oldPath: path, newPath: path, status: .modified,
                 hunks: hunks.map { DiffHunk(oldStart: $0.oldStart, oldCount: $0.oldCount, newStart: $0.newStart, newCount: $0.newCount, lines: []) })
    }

    static func finding(line: Int, startLine: Int? = nil) -> Finding {
        Finding(path: "a.py", startLine: startLine, line: line, side: .right, severity: .high, category: "security", title: "Injection",
                body: "b", suggestion: nil, source: .ai, fingerprint: "fp-\(line)")
    }

    @Test("a finding below lines a push inserted is carried at its line at the new head; compared unmoved it fell into the grown hunk and was dropped")
    func movedBelowInsertion() {
        // The PR has hunks at lines 1–3 and 50–52; the push inserts 50 lines after line 2.
        let whole = [Self.file("a.py", [(1, 3, 1, 53), (50, 3, 100, 3)])]
        let reviewed = [Self.file("a.py", [(1, 3, 1, 53)])]
        let pushed = [Self.file("a.py", [(2, 2, 2, 52)])]
        let carried = ReviewRunner.carriedFindings([Self.finding(line: 51, startLine: 50)], reviewed: reviewed, wholePullRequest: whole, pushed: pushed,
                                                   result: ReviewResult(aiStatus: .completed, coverage: ReviewCoverage(reviewedFiles: 1, totalFiles: 1, skipped: [:])), minSeverity: .low)
        #expect(carried.map { $0.line } == [101])
        #expect(carried.first?.startLine == 100)
    }

    @Test("a finding in lines the push changed was looked at again: not carried; one above the push keeps its line")
    func changedOrAbove() {
        let whole = [Self.file("a.py", [(1, 60, 1, 62)])]
        let reviewed = whole
        let pushed = [Self.file("a.py", [(20, 4, 20, 6), (40, 0, 42, 3)])]
        let carried = ReviewRunner.carriedFindings([Self.finding(line: 22), Self.finding(line: 5), Self.finding(line: 45)], reviewed: reviewed,
                                                   wholePullRequest: whole, pushed: pushed, result: ReviewResult(aiStatus: .completed, coverage: ReviewCoverage(reviewedFiles: 1, totalFiles: 1, skipped: [:])), minSeverity: .low)
        // 22 was changed; 5 is above every hunk; 45 is below a hunk that grew by 2 and an insertion of 3 after line 40.
        #expect(carried.map { $0.line } == [5, 50])
        // Lines inserted inside a finding's range changed it: not moved.
        let inside = ReviewRunner.carriedFindings([Self.finding(line: 42, startLine: 38)], reviewed: reviewed, wholePullRequest: whole, pushed: pushed,
                                                  result: ReviewResult(aiStatus: .completed, coverage: ReviewCoverage(reviewedFiles: 1, totalFiles: 1, skipped: [:])),
                                                  minSeverity: .low)
        #expect(inside.isEmpty)
    }
}
