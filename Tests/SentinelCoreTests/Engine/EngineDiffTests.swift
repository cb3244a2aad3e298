import Foundation
import Testing
import SentinelCore
import SentinelTestSupport

@Suite("Engine: unified diff parsing")
struct EngineDiffTests {
    static let modified = EngineFixtures.text(
        "diff --git a/Sources/App/main.swift b/Sources/App/main.swift",
        "index 83db48f..bf269f4 100644",
        "--- a/Sources/App/main.swift",
        "+++ b/Sources/App/main.swift",
        "@@ -1,5 +1,6 @@ import Foundation",
        " import Foundation",
        "-let greeting = \"hi\"",
        "+let greeting = \"hello\"",
        "+let name = \"world\"",
        " ",
        " func main() {",
        "     print(greeting)",
        "@@ -20,3 +21,3 @@ func helper() {",
        " let a = 1",
        "-let b = 2",
        "+let b = 3",
        " let c = 4"
    )

    @Test func parsesModifiedFileWithTwoHunks() throws {
        let files = try UnifiedDiff.parse(Self.modified)
        #expect(files.count == 1)
        let file = try #require(files.first)
        #expect(file.path == "Sources/App/main.swift")
        #expect(file.oldPath == "Sources/App/main.swift")
        #expect(file.status == .modified)
        #expect(!file.isBinary)
        #expect(file.hunks.count == 2)
        #expect(file.additions == 3)
        #expect(file.deletions == 2)

        let first = file.hunks[0]
        #expect(first.oldStart == 1 && first.oldCount == 5 && first.newStart == 1 && first.newCount == 6)
        #expect(first.section == "import Foundation")
        #expect(first.lines.count == 7)
        #expect(first.lines[1] == DiffLine(kind: .removed, oldLine: 2, newLine: nil, text: "let greeting = \"hi\""))
        #expect(first.lines[2] == DiffLine(kind: .added, oldLine: nil, newLine: 2, text: "let greeting = \"hello\""))
        #expect(first.lines[4] == DiffLine(kind: .context, oldLine: 3, newLine: 4, text: ""))
        #expect(first.lines[6] == DiffLine(kind: .context, oldLine: 5, newLine: 6, text: "    print(greeting)"))

        let second = file.hunks[1]
        #expect(second.header == "@@ -20,3 +21,3 @@ func helper() {")
        #expect(second.lines.map(\.kind) == [.context, .removed, .added, .context])
        #expect(second.lines[2].newLine == 22)
        #expect(second.lines[3].oldLine == 22 && second.lines[3].newLine == 23)
    }

    @Test func commentableLinesOnBothSides() throws {
        let file = try #require(try UnifiedDiff.parse(Self.modified).first)
        // RIGHT: added + context, new numbering.
        #expect(file.commentableLines(side: .right) == [1, 2, 3, 4, 5, 6, 21, 22, 23])
        // LEFT: removed + context, old numbering.
        #expect(file.commentableLines(side: .left) == [1, 2, 3, 4, 5, 20, 21, 22])
        #expect(file.hunk(containing: 22, side: .right)?.newStart == 21)
        #expect(file.hunk(containing: 20, side: .left)?.oldStart == 20)
        #expect(file.hunk(containing: 10, side: .right) == nil)
        #expect(file.diffLine(at: 2, side: .left)?.kind == .removed)
        #expect(file.diffLine(at: 2, side: .right)?.kind == .added)
    }

    @Test func parsesAddedDeletedRenamedAndBinaryFiles() throws {
        let diff = EngineFixtures.text(
            "diff --git a/docs/new.md b/docs/new.md",
            "new file mode 100644",
            "index 0000000..e69de29",
            "--- /dev/null",
            "+++ b/docs/new.md",
            "@@ -0,0 +1,2 @@",
            "+# Title",
            "+Body",
            "diff --git a/old/gone.txt b/old/gone.txt",
            "deleted file mode 100644",
            "index e69de29..0000000",
            "--- a/old/gone.txt",
            "+++ /dev/null",
            "@@ -1,2 +0,0 @@",
            "-first",
            "-second",
            "diff --git a/src/Old Name.swift b/src/New Name.swift",
            "similarity index 88%",
            "rename from src/Old Name.swift",
            "rename to src/New Name.swift",
            "index 1234567..89abcde 100644",
            "--- a/src/Old Name.swift",
            "+++ b/src/New Name.swift",
            "@@ -3,3 +3,3 @@",
            " a",
            "-b",
            "+B",
            " c",
            "diff --git a/img/logo.png b/img/logo.png",
            "new file mode 100644",
            "index 0000000..a1b2c3d",
            "Binary files /dev/null and b/img/logo.png differ",
            "diff --git a/lib/pure.rb b/lib/moved/pure.rb",
            "similarity index 100%",
            "rename from lib/pure.rb",
            "rename to lib/moved/pure.rb",
            "diff --git a/bin/tool b/bin/tool",
            "old mode 100644",
            "new mode 100755"
        )
        let files = try UnifiedDiff.parse(diff)
        #expect(files.count == 6)

        #expect(files[0].status == .added)
        #expect(files[0].oldPath == nil)
        #expect(files[0].path == "docs/new.md")
        #expect(files[0].additions == 2)
        #expect(files[0].commentableLines(side: .left).isEmpty)

        #expect(files[1].status == .deleted)
        #expect(files[1].newPath == nil)
        #expect(files[1].path == "old/gone.txt")
        #expect(files[1].deletions == 2)
        #expect(files[1].commentableLines(side: .right).isEmpty)
        #expect(files[1].commentableLines(side: .left) == [1, 2])

        #expect(files[2].status == .renamed)
        #expect(files[2].oldPath == "src/Old Name.swift")
        #expect(files[2].path == "src/New Name.swift")
        #expect(files[2].similarity == 88)

        #expect(files[3].isBinary)
        #expect(files[3].status == .added)
        #expect(files[3].hunks.isEmpty)

        #expect(files[4].status == .renamed)
        #expect(files[4].oldPath == "lib/pure.rb" && files[4].path == "lib/moved/pure.rb")
        #expect(files[4].hunks.isEmpty)

        #expect(files[5].status == .modified)
        #expect(files[5].hunks.isEmpty)
    }

    @Test func gitBinaryPatchIsSkipped() throws {
        let diff = EngineFixtures.text(
            "diff --git a/font.woff b/font.woff",
            "index 1111111..2222222 100644",
            "GIT binary patch",
            "literal 12",
            "zcmZ?wbhEHbRA3Mu@>-W",
            "",
            "literal 0",
            "HcmV?d00001",
            "",
            "diff --git a/a.txt b/a.txt",
            "--- a/a.txt",
            "+++ b/a.txt",
            "@@ -1 +1 @@",
            "-x",
            "+y"
        )
        let files = try UnifiedDiff.parse(diff)
        #expect(files.count == 2)
        #expect(files[0].isBinary && files[0].path == "font.woff")
        #expect(files[1].hunks.first?.oldCount == 1 && files[1].hunks.first?.newCount == 1)
    }

    @Test func noNewlineMarkerIsAttachedNotCounted() throws {
        let diff = EngineFixtures.text(
            "diff --git a/VERSION b/VERSION",
            "--- a/VERSION",
            "+++ b/VERSION",
            "@@ -1 +1 @@",
            "-1.0.0",
            "\\ No newline at end of file",
            "+1.0.1",
            "\\ No newline at end of file"
        )
        let file = try #require(try UnifiedDiff.parse(diff).first)
        #expect(file.hunks[0].lines.count == 2)
        #expect(file.hunks[0].lines.allSatisfy { $0.missingNewline })
        #expect(file.additions == 1 && file.deletions == 1)
    }

    @Test func quotedPathsAreUnescaped() throws {
        let diff = EngineFixtures.text(
            "diff --git \"a/docs/caf\\303\\251 menu.md\" \"b/docs/caf\\303\\251 menu.md\"",
            "new file mode 100644",
            "--- /dev/null",
            "+++ \"b/docs/caf\\303\\251 menu.md\"",
            "@@ -0,0 +1 @@",
            "+bonjour"
        )
        let file = try #require(try UnifiedDiff.parse(diff).first)
        #expect(file.path == "docs/café menu.md")
        #expect(file.status == .added)
    }

    @Test func crlfContentAndPlainUnifiedDiff() throws {
        let diff = "--- a/win.txt\r\n+++ b/win.txt\r\n@@ -1,2 +1,2 @@\r\n line one\r\n-old\r\n+new\r\n"
        let file = try #require(try UnifiedDiff.parse(diff).first)
        #expect(file.path == "win.txt")
        #expect(file.hunks[0].lines.count == 3)
        #expect(file.hunks[0].lines[2].kind == .added)
        #expect(file.hunks[0].lines[2].text == "new\r")
    }

    @Test func formatPatchPreambleAndSignatureAreIgnored() throws {
        let diff = EngineFixtures.text(
            "From 1234 Mon Sep 17 00:00:00 2001",
            "Subject: [PATCH] Fix it",
            "",
            "---",
            " a.txt | 2 +-",
            "",
            "diff --git a/a.txt b/a.txt",
            "--- a/a.txt",
            "+++ b/a.txt",
            "@@ -1 +1 @@",
            "-x",
            "+y",
            "-- ",
            "2.43.0"
        )
        let files = try UnifiedDiff.parse(diff)
        #expect(files.count == 1)
        #expect(files[0].additions == 1)
    }

    @Test func emptyDiffHasNoFiles() throws {
        #expect(try UnifiedDiff.parse("").isEmpty)
        #expect(try UnifiedDiff.parse("\n\n").isEmpty)
    }

    @Test(arguments: [
        ("not a diff at all", "no file headers"),
        ("@@ -1 +1 @@\n-a\n+b\n", "without a preceding file header"),
        ("--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n", "truncated"),
        ("--- a/x\n+++ b/x\n@@ -one +1 @@\n", "malformed hunk header"),
        ("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n+c\n", "after the end of a hunk"),
        ("--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n*b\n", "unexpected line inside a hunk"),
        ("diff --cc file\n", "combined"),
    ])
    func malformedDiffsThrowClearErrors(input: String, expected: String) {
        do {
            _ = try UnifiedDiff.parse(input)
            Issue.record("expected an error for \(input.debugDescription)")
        } catch let error as DiffParseError {
            #expect(error.description.contains(expected), "\(error.description)")
            #expect(error.line >= 1)
        } catch {
            Issue.record("unexpected error type \(error)")
        }
    }

    @Test func fromGitHubPatch() throws {
        let patch = "@@ -10,4 +10,5 @@ class Foo\n   a\n-  b\n+  B\n+  C\n   d\n   e\n@@ -50 +51 @@\n-x\n\\ No newline at end of file\n+y"
        let file = try DiffFile.fromPatch(path: "src/foo.rb", previousPath: "src/bar.rb", status: .renamed, patch: patch)
        #expect(file.path == "src/foo.rb")
        #expect(file.oldPath == "src/bar.rb")
        #expect(file.hunks.count == 2)
        #expect(file.commentableLines(side: .right) == [10, 11, 12, 13, 14, 51])
        #expect(file.commentableLines(side: .left) == [10, 11, 12, 13, 50])
        #expect(file.hunks[1].lines[0].missingNewline)

        let binary = try DiffFile.fromPatch(path: "logo.png", status: .added, patch: nil)
        #expect(binary.isBinary && binary.oldPath == nil)

        let deleted = try DiffFile.fromPatch(path: "gone.txt", status: .deleted, patch: "@@ -1 +0,0 @@\n-bye")
        #expect(deleted.status == .deleted && deleted.newPath == nil && deleted.path == "gone.txt")

        #expect(throws: DiffParseError.self) {
            try DiffFile.fromPatch(path: "x", status: .modified, patch: "garbage\n@@ -1 +1 @@\n-a\n+b")
        }
    }

    @Test func randomDiffsRoundTrip() throws {
        var rng = SeededRNG(seed: 42)
        for round in 0..<50 {
            let files = (0..<rng.int(1...6)).map { i in
                EngineFixtures.randomFile(&rng, path: "dir\(round)/file\(i).swift", hunks: 1...5, linesPerHunk: 1...30)
            }
            let parsed = try UnifiedDiff.parse(EngineFixtures.gitDiff(files))
            #expect(parsed == files)
        }
    }

    @Test func fuzzNeverCrashes() {
        var rng = SeededRNG(seed: 2024)
        let valid = EngineFixtures.gitDiff((0..<3).map { i in
            var r = SeededRNG(seed: UInt64(i))
            return EngineFixtures.randomFile(&r, path: "f\(i).c", hunks: 1...3, linesPerHunk: 1...10)
        })
        let validLines = valid.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var outcomes = (parsed: 0, rejected: 0)
        for _ in 0..<1500 {
            let input: String
            switch rng.int(0...2) {
            case 0:
                let bytes = (0..<rng.int(0...400)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                input = String(decoding: bytes, as: UTF8.self)
            case 1:
                // Mutate a valid diff: drop, duplicate or corrupt lines.
                var lines = validLines
                for _ in 0..<rng.int(1...4) where !lines.isEmpty {
                    let i = rng.int(0...(lines.count - 1))
                    switch rng.int(0...3) {
                    case 0: lines.remove(at: i)
                    case 1: lines.insert(lines[i], at: i)
                    case 2: lines[i] = String(lines[i].shuffled(using: &rng))
                    default: lines[i] = "@@ -\(rng.int(-5...99999)),\(rng.int(0...9)) +\(rng.int(0...9)) @@"
                    }
                }
                input = lines.joined(separator: "\n")
            default:
                // Truncate anywhere.
                input = String(valid.prefix(rng.int(0...valid.count)))
            }
            do {
                _ = try UnifiedDiff.parse(input)
                outcomes.parsed += 1
            } catch is DiffParseError {
                outcomes.rejected += 1
            } catch {
                Issue.record("unexpected error type: \(error)")
            }
        }
        #expect(outcomes.parsed + outcomes.rejected == 1500)
        #expect(outcomes.rejected > 0)
    }

    @Test("git's mnemonic prefixes (diff.mnemonicPrefix: i/ w/, c/ w/, c/ i/) are not part of the paths; with --no-prefix a directory named a/ or b/ stays (the w/ had stayed, and .sentinel.yml's excludes missed the file)",
          arguments: [("i/", "w/"), ("c/", "w/"), ("c/", "i/"), ("a/", "b/"), ("1/", "2/")])
    func sidePrefixes(old: String, new: String) throws {
        let modified = EngineFixtures.text("diff --git \(old)docs/g.md \(new)docs/g.md", "--- \(old)docs/g.md", "+++ \(new)docs/g.md",
                                           "@@ -1 +1 @@", "-x", "+y")
        let added = EngineFixtures.text("diff --git \(old)src/n.py \(new)src/n.py", "new file mode 100644", "--- /dev/null", "+++ \(new)src/n.py",
                                        "@@ -0,0 +1 @@", "+z")
        let files = try UnifiedDiff.parse(modified + added)
        #expect(files.map(\.path) == ["docs/g.md", "src/n.py"] && files.first?.oldPath == "docs/g.md", "\(files.map(\.path))")
        let noPrefix = try UnifiedDiff.parse(EngineFixtures.text("diff --git b/x.c b/x.c", "--- b/x.c", "+++ b/x.c", "@@ -1 +1 @@", "-x", "+y"))
        #expect(noPrefix.map(\.path) == ["b/x.c"] && noPrefix.first?.oldPath == "b/x.c")
    }
}
