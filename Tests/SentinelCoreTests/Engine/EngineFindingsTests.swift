import Foundation
import Testing
import SentinelCore

@Suite("Engine: anchoring, fingerprints and ranking")
struct EngineFindingsTests {
    /// Hunk 1 spans old 10–15 / new 10–16; hunk 2 spans old 40–42 / new 41–44;
    /// hunk 3 is a pure deletion of old 61–63 (its new side only has line 62, as context).
    static let diff = EngineFixtures.text(
        "diff --git a/src/server.go b/src/server.go",
        "--- a/src/server.go",
        "+++ b/src/server.go",
        "@@ -10,6 +10,7 @@ func serve() {",
        " \tctx := context.Background()",
        " \tconn, err := dial(ctx)",
        "-\tif err != nil { panic(err) }",
        "+\tif err != nil {",
        "+\t\treturn err",
        " \t}",
        " \tdefer conn.Close()",
        " \treturn nil",
        "@@ -40,3 +41,4 @@ func handle() {",
        " \tmu.Lock()",
        "+\tcount++",
        " \tmu.Unlock()",
        " }",
        "@@ -60,4 +62,1 @@ func legacy() {",
        " // legacy helpers",
        "-func a() {}",
        "-func b() {}",
        "-func c() {}"
    )

    private func files() throws -> [DiffFile] { try UnifiedDiff.parse(Self.diff) }

    private func raw(_ line: Int, side: DiffSide = .right, start: Int? = nil, path: String = "src/server.go",
                     suggestion: String? = nil) -> RawFinding {
        RawFinding(path: path, startLine: start, line: line, side: side, severity: .high, category: "correctness",
                   title: "Problem at \(line)", body: "Details.", suggestion: suggestion)
    }

    @Test func findingOnDiffLineIsKept() throws {
        let (anchored, unanchored) = FindingAnchor.anchor([raw(12, suggestion: "\t\treturn fmt.Errorf(\"dial: %w\", err)"),
                                                           raw(12, side: .left), raw(42)],
                                                          source: .ai, files: try files())
        #expect(unanchored.isEmpty)
        #expect(anchored.map(\.line) == [12, 12, 42])
        #expect(anchored.map(\.side) == [.right, .left, .right])
        #expect(anchored[0].suggestion != nil)
        #expect(anchored[0].source == .ai)
        #expect(anchored[0].fingerprint.count == 16)
    }

    @Test("a finding moved to the other side keeps no suggestion (it was written for the lines the model named)")
    func sideSwitchDropsSuggestion() throws {
        // A new file has no old side: LEFT 2 is RIGHT 2.
        let added = EngineFixtures.addedFile("src/new.go", lines: ["package x", "var y = 1", "var z = 2"])
        let (anchored, _) = FindingAnchor.anchor([raw(2, side: .left, path: "src/new.go", suggestion: "REPLACEMENT"),
                                                  raw(3, path: "src/new.go", suggestion: "var z = 3")], source: .ai, files: [added])
        #expect(anchored.map(\.side) == [.right, .right] && anchored.map(\.line) == [2, 3], "\(anchored)")
        #expect(anchored[0].suggestion == nil && anchored[1].suggestion == "var z = 3")
        // Said, not dropped without a word.
        #expect(anchored[0].body.hasSuffix(FindingAnchor.omittedMovedSuggestion) && !anchored[1].body.contains("left out"), "\(anchored)")
    }

    @Test("model-supplied categories and titles are stored on one line without control characters")
    func controlCharactersLeaveFindings() throws {
        let model = RawFinding(path: "src/server.go", line: 12, side: .right, severity: .high, category: "sec\u{0}urity\u{1B}",
                               title: "Leaks\u{0} the\ttoken\nagain\u{7}", body: "Line one\u{0}\n\tline two\u{1}")
        let (anchored, _) = FindingAnchor.anchor([model], source: .ai, files: try files())
        let finding = try #require(anchored.first)
        #expect(finding.category == "security")
        #expect(finding.title == "Leaks the token again")
        #expect(finding.body == "Line one\n\tline two")
    }

    @Test func nearbyLineIsMovedToNearestChangedLineInHunk() throws {
        let (anchored, unanchored) = FindingAnchor.anchor([raw(8, suggestion: "x"), raw(19), raw(45)], source: .ai,
                                                          files: try files())
        #expect(unanchored.isEmpty)
        // 8 is two lines above hunk 1 → its nearest added line (12); 19 is three below → 13;
        // 45 is one below hunk 2 → 42.
        #expect(anchored.map(\.line) == [12, 13, 42])
        // A moved finding loses its suggestion: it would replace the wrong line.
        #expect(anchored[0].suggestion == nil)
    }

    @Test func farAwayLineAndUnknownPathAreUnanchored() throws {
        let findings = [raw(30), raw(100), raw(5, side: .left), raw(12, path: "src/other.go")]
        let (anchored, unanchored) = FindingAnchor.anchor(findings, source: .ai, files: try files())
        #expect(anchored.isEmpty)
        #expect(unanchored == findings)
    }

    @Test func deletedLineCitedOnRightMovesToLeft() throws {
        // RIGHT 63 is not on the new side of the diff, but old line 63 ("func c() {}") was removed.
        let (anchored, unanchored) = FindingAnchor.anchor([raw(63, suggestion: "func c() { }")], source: .ai, files: try files())
        #expect(unanchored.isEmpty)
        #expect(anchored.first?.side == .left)
        #expect(anchored.first?.line == 63)
        #expect(anchored.first?.suggestion == nil)
    }

    @Test func rangesMustStayInOneHunk() throws {
        let (anchored, _) = FindingAnchor.anchor([raw(13, start: 10), raw(42, start: 12), raw(12, start: 12)], source: .ai,
                                                 files: try files())
        #expect(anchored[0].startLine == 10 && anchored[0].line == 13)
        #expect(anchored[1].startLine == nil && anchored[1].line == 42)
        #expect(anchored[2].startLine == nil)
    }

    @Test func pathVariantsAreRecognised() throws {
        let (anchored, unanchored) = FindingAnchor.anchor([raw(12, path: "./src/server.go"), raw(12, path: "b/src/server.go"),
                                                           raw(12, path: "/src/server.go")], source: .ai, files: try files())
        #expect(unanchored.isEmpty)
        #expect(anchored.allSatisfy { $0.path == "src/server.go" })
    }

    @Test func fingerprintSurvivesLineShifts() throws {
        let before = EngineFixtures.text(
            "diff --git a/app.py b/app.py", "--- a/app.py", "+++ b/app.py",
            "@@ -1,2 +1,3 @@", " import os", "+password = os.environ['PW']", " print(1)")
        let after = EngineFixtures.text(
            "diff --git a/app.py b/app.py", "--- a/app.py", "+++ b/app.py",
            "@@ -1,2 +1,13 @@", " import os",
            "+# ten new lines", "+a = 1", "+b = 2", "+c = 3", "+d = 4", "+e = 5", "+f = 6", "+g = 7", "+h = 8", "+i = 9",
            "+password  =  os.environ['PW']   ", " print(1)")
        let finding = { (line: Int) in
            RawFinding(path: "app.py", line: line, severity: .medium, category: "Security", title: "Read secrets lazily",
                       body: "b")
        }
        let first = FindingAnchor.anchor([finding(2)], source: .ai, files: try UnifiedDiff.parse(before)).anchored
        let second = FindingAnchor.anchor([finding(12)], source: .ai, files: try UnifiedDiff.parse(after)).anchored
        #expect(first.count == 1 && second.count == 1)
        #expect(first[0].fingerprint == second[0].fingerprint)

        #expect(Fingerprint.of(path: "a", category: "c", title: "t", anchorText: "  x  =  1 ")
            == Fingerprint.of(path: "a", category: "C", title: "T ", anchorText: "x = 1"))
        #expect(Fingerprint.of(path: "a", category: "c", title: "t", anchorText: "x = 1")
            != Fingerprint.of(path: "a", category: "c", title: "t", anchorText: "x = 2"))
        #expect(Fingerprint.of(path: "a", category: "c", title: "t", anchorText: "x")
            != Fingerprint.of(path: "b", category: "c", title: "t", anchorText: "x"))
        #expect(Fingerprint.of(path: "a", category: "c", title: "t", anchorText: "x").allSatisfy { $0.isHexDigit })
    }

    private func finding(_ path: String, _ line: Int, _ severity: Severity, fingerprint: String) -> Finding {
        Finding(path: path, line: line, side: .right, severity: severity, category: "c", title: "t\(line)", body: "b",
                source: .ai, fingerprint: fingerprint)
    }

    @Test func rankerAppliesFloorLimitDedupeAndAlreadyPosted() {
        let findings = [
            finding("b.go", 5, .low, fingerprint: "f1"),
            finding("a.go", 9, .critical, fingerprint: "f2"),
            finding("a.go", 3, .high, fingerprint: "f3"),
            finding("a.go", 3, .critical, fingerprint: "f3"),   // same problem reported again, more severe
            finding("c.go", 1, .info, fingerprint: "f4"),
            finding("a.go", 1, .high, fingerprint: "f5"),
            finding("z.go", 7, .medium, fingerprint: "posted"),
        ]
        let result = FindingRanker.select(findings, minSeverity: .low, maxComments: 3, alreadyPosted: ["posted"])
        #expect(result.duplicates == 2)
        #expect(result.droppedBelowFloor == 1)
        #expect(result.droppedOverLimit == 1)
        #expect(result.selected.map(\.fingerprint) == ["f3", "f2", "f5"])
        #expect(result.selected[0].severity == .critical)

        let none = FindingRanker.select(findings, minSeverity: .info, maxComments: 0, alreadyPosted: [])
        #expect(none.selected.isEmpty)
        #expect(none.droppedOverLimit == 6)
    }

    @Test("the same problem on two identical lines is two findings, the second numbered; two reports of one line stay one")
    func identicalLinesAreTwoFindings() {
        let findings = [
            finding("db.py", 6, .high, fingerprint: "sql"),
            finding("db.py", 2, .high, fingerprint: "sql"),
            finding("db.py", 2, .high, fingerprint: "sql"),   // reported twice
        ]
        let result = FindingRanker.select(findings, minSeverity: .low, maxComments: 10, alreadyPosted: [])
        #expect(result.selected.map(\.line) == [2, 6])
        #expect(result.selected.map(\.fingerprint) == ["sql", "sql:2"])
        #expect(result.duplicates == 1)
        // Posted before, both are recognised again by their numbered fingerprints.
        let again = FindingRanker.select(findings, minSeverity: .low, maxComments: 10, alreadyPosted: ["sql", "sql:2"])
        #expect(again.selected.isEmpty && again.repeated.count == 2)
    }

    @Test("the severity floor is the model's: a built-in check's finding below it is kept, and the floor never rises above review.fail_on")
    func floorSparesBuiltinAndFailingFindings() throws {
        var conflict = finding("a.go", 2, .high, fingerprint: "builtin")
        conflict.source = .builtin
        let model = finding("b.go", 3, .high, fingerprint: "model")
        let result = FindingRanker.select([conflict, model], minSeverity: .critical, maxComments: 10, alreadyPosted: [])
        #expect(result.selected.map(\.fingerprint) == ["builtin"] && result.droppedBelowFloor == 1)
        // A pull request's own file setting min_severity: critical cannot hide what fail_on: high fails on.
        let parsed = RepositoryConfigParser.parse("version: 1\nreview:\n  min_severity: critical\n  fail_on: high\n")
        let policy = try PolicyService.resolve(fileText: "version: 1\nreview:\n  min_severity: critical\n  fail_on: high\n").policy
        #expect(parsed.diagnostics.isEmpty && policy.minSeverity == .critical)
        #expect(ReviewOptions(policy: policy).minSeverity == .high)
        let none = try PolicyService.resolve(fileText: "version: 1\nreview:\n  min_severity: critical\n  fail_on: none\n").policy
        #expect(ReviewOptions(policy: none).minSeverity == .critical)
    }

    @Test func findingIsCodable() throws {
        let f = Finding(path: "a", startLine: 1, line: 2, side: .left, severity: .low, category: "c", title: "t", body: "b",
                        suggestion: nil, source: .builtin, fingerprint: "0123456789abcdef")
        #expect(try JSONDecoder().decode(Finding.self, from: JSONEncoder().encode(f)) == f)
    }
}
