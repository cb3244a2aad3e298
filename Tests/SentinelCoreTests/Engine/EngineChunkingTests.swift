import Foundation
import Testing
import SentinelCore
import SentinelTestSupport

@Suite("Engine: token budgeting and chunking")
struct EngineChunkingTests {
    @Test func tokenEstimate() {
        #expect(TokenEstimator.estimate("") == 0)
        #expect(TokenEstimator.estimate("a") == 1)
        #expect(TokenEstimator.estimate("abcd") == 1)
        #expect(TokenEstimator.estimate("abcde") == 2)
        #expect(TokenEstimator.estimate(String(repeating: "x", count: 4000)) == 1000)
        #expect(TokenEstimator.estimate("é") == 1)
    }

    /// Checks the invariants every chunking must keep.
    private func verify(_ files: [DiffFile], budget: Int, chunks: [ReviewChunk], overBudget: [DiffFile]) throws {
        let overPaths = Set(overBudget.map(\.path))
        let expected = EngineFixtures.lineKeys(files.filter { !overPaths.contains($0.path) })
        let actual = EngineFixtures.lineKeys(chunks.flatMap(\.files))
        // Exactly once: same multiset, and no key repeated.
        #expect(actual.count == expected.count)
        #expect(Set(actual) == Set(expected))
        #expect(Set(actual).count == actual.count)
        for chunk in chunks {
            #expect(chunk.estimatedTokens <= budget)
            #expect(!chunk.files.isEmpty)
            // What the prompt will send is never more than what was budgeted.
            let rendered = chunk.files.map { DiffRenderer.render($0) }.joined()
            #expect(TokenEstimator.estimate(rendered) <= chunk.estimatedTokens)
            // Split hunks carry headers that agree with their lines (a round trip through text).
            let reparsed = try UnifiedDiff.parse(EngineFixtures.gitDiff(chunk.files))
            #expect(reparsed.map(\.hunks) == chunk.files.map(\.hunks))
        }
        #expect(chunks.map(\.index) == Array(chunks.indices))
    }

    @Test func propertyRandomBigDiffs() throws {
        var rng = SeededRNG(seed: 99)
        for round in 0..<40 {
            let files = (0..<rng.int(1...25)).map { i in
                EngineFixtures.randomFile(&rng, path: "r\(round)/f\(i).swift", hunks: 1...8,
                                          linesPerHunk: 1...(rng.chance(0.3) ? 400 : 40), lineLength: 0...120)
            }
            let budget = rng.int(200...4000)
            let (chunks, overBudget) = Chunker.chunks(files: files, budget: budget)
            // Lines are at most ~130 bytes, far below any budget here, so everything fits somewhere.
            #expect(overBudget.isEmpty)
            try verify(files, budget: budget, chunks: chunks, overBudget: overBudget)
        }
    }

    @Test func smallFilesArePackedWholeAndInOrder() throws {
        var rng = SeededRNG(seed: 5)
        let files = (0..<10).map { EngineFixtures.randomFile(&rng, path: "s/\($0).go", hunks: 1...2, linesPerHunk: 1...5) }
        let (chunks, overBudget) = Chunker.chunks(files: files, budget: 100_000)
        #expect(chunks.count == 1)
        #expect(overBudget.isEmpty)
        #expect(chunks[0].files == files)
        #expect(chunks[0].estimatedTokens == TokenEstimator.estimate(files.map { DiffRenderer.render($0) }.joined()))
        #expect(chunks[0].estimatedTokens <= files.map { Chunker.estimatedTokens(of: $0) }.reduce(0, +))
    }

    @Test func hugeHunkIsSplitAtLineBoundariesWithCorrectNumbers() throws {
        let lines = (1...2000).map { "let value\($0) = compute(\($0)) // padding padding padding" }
        let file = EngineFixtures.addedFile("big/Generated.swift", lines: lines)
        let (chunks, overBudget) = Chunker.chunks(files: [file], budget: 1500)
        #expect(overBudget.isEmpty)
        #expect(chunks.count > 10)
        var nextLine = 1
        for chunk in chunks {
            #expect(chunk.files.count == 1)
            for hunk in chunk.files[0].hunks {
                #expect(hunk.newStart == nextLine)
                #expect(hunk.lines.first?.newLine == nextLine)
                #expect(hunk.newCount == hunk.lines.count)
                #expect(hunk.oldCount == 0)
                nextLine += hunk.newCount
            }
        }
        #expect(nextLine == 2001)
        try verify([file], budget: 1500, chunks: chunks, overBudget: overBudget)
    }

    @Test func threeHundredFilePullRequest() throws {
        var rng = SeededRNG(seed: 300)
        let files = (0..<300).map { i in
            EngineFixtures.randomFile(&rng, path: "module\(i % 12)/File\(i).swift", hunks: 2...4, linesPerHunk: 20...40)
        }
        let changed = files.reduce(0) { $0 + $1.additions + $1.deletions }
        #expect(changed > 15_000)
        let budget = 12_000
        let (chunks, overBudget) = Chunker.chunks(files: files, budget: budget)
        #expect(overBudget.isEmpty)
        try verify(files, budget: budget, chunks: chunks, overBudget: overBudget)
        // Greedy packing keeps chunks reasonably full.
        let total = files.map { Chunker.estimatedTokens(of: $0) }.reduce(0, +)
        #expect(chunks.count <= total / budget * 2 + 2)
        // Order is preserved: paths appear in input order across chunks.
        var seen: [String] = []
        for f in chunks.flatMap(\.files) where seen.last != f.path { seen.append(f.path) }
        #expect(seen == files.map(\.path))
    }

    @Test func lineLargerThanBudgetGoesOverBudget() {
        let huge = EngineFixtures.addedFile("data/blob.txt", lines: [String(repeating: "q", count: 10_000)])
        let small = EngineFixtures.addedFile("src/ok.swift", lines: ["print(1)"])
        let (chunks, overBudget) = Chunker.chunks(files: [huge, small], budget: 500)
        #expect(overBudget.map(\.path) == ["data/blob.txt"])
        #expect(chunks.flatMap(\.files).map(\.path) == ["src/ok.swift"])
    }

    @Test func totalTokenCapMovesLaterFilesOverBudget() throws {
        let files = (0..<10).map { i in
            EngineFixtures.addedFile("f\(i).swift", lines: (0..<40).map { "line \($0) of file \(i) with some text" })
        }
        let perFile = Chunker.estimatedTokens(of: files[0])
        let (chunks, overBudget) = Chunker.chunks(files: files, budget: 5_000, maxTotalTokens: perFile * 4 + perFile / 2)
        #expect(chunks.flatMap(\.files).map(\.path) == ["f0.swift", "f1.swift", "f2.swift", "f3.swift"])
        #expect(overBudget.map(\.path) == (4..<10).map { "f\($0).swift" })
        try verify(files, budget: 5_000, chunks: chunks, overBudget: overBudget)
    }

    @Test func filesWithoutHunksAreNotChunked() {
        let rename = DiffFile(oldPath: "a.txt", newPath: "b.txt", status: .renamed)
        let (chunks, overBudget) = Chunker.chunks(files: [rename], budget: 1000)
        #expect(chunks.isEmpty && overBudget.isEmpty)
    }

    @Test("a slice of a pure insertion keeps the old side's start (`-5,0`), and of a pure deletion the new side's")
    func slicesOfOneSidedHunks() {
        let insertion = DiffHunk(oldStart: 5, oldCount: 0, newStart: 6, newCount: 6,
                                 lines: (0..<6).map { DiffLine(kind: .added, oldLine: nil, newLine: 6 + $0, text: "x\($0)") })
        #expect(insertion.slice(0..<3).oldStart == 5 && insertion.slice(3..<6).oldStart == 5)
        #expect(insertion.slice(3..<6).newStart == 9 && insertion.slice(3..<6).newCount == 3)
        let deletion = DiffHunk(oldStart: 10, oldCount: 4, newStart: 9, newCount: 0,
                                lines: (0..<4).map { DiffLine(kind: .removed, oldLine: 10 + $0, newLine: nil, text: "y\($0)") })
        #expect(deletion.slice(2..<4).newStart == 9 && deletion.slice(2..<4).oldStart == 12)
        // A mixed hunk's slice of added lines alone still numbers its empty side by the line before.
        let mixed = DiffHunk(oldStart: 3, oldCount: 1, newStart: 3, newCount: 3, lines: [
            DiffLine(kind: .context, oldLine: 3, newLine: 3, text: "a"),
            DiffLine(kind: .added, oldLine: nil, newLine: 4, text: "b"),
            DiffLine(kind: .added, oldLine: nil, newLine: 5, text: "c")])
        #expect(mixed.slice(1..<3).oldStart == 3 && mixed.slice(1..<3).oldCount == 0)
    }
}
