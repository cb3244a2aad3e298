import Foundation
import SentinelCore
import SentinelTestSupport

enum EngineFixtures {
    /// Joins lines with "\n" and ends with a newline, so fixtures keep significant leading and
    /// trailing spaces exactly.
    static func text(_ lines: String...) -> String { lines.joined(separator: "\n") + "\n" }

    static let alnum = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
    static let upperDigits = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")

    /// A random token built at run time, so no credential-shaped literal sits in the source.
    static func token(_ count: Int, from alphabet: [Character] = alnum, seed: UInt64 = 7) -> String {
        var rng = SeededRNG(seed: seed)
        return String((0..<count).map { _ in alphabet[rng.int(0...(alphabet.count - 1))] })
    }

    /// Serializes files back into `git diff` text (the parser's inverse), used for round trips.
    static func gitDiff(_ files: [DiffFile]) -> String {
        var out = ""
        for file in files {
            let old = file.oldPath ?? file.path
            let new = file.newPath ?? file.path
            out += "diff --git a/\(old) b/\(new)\n"
            switch file.status {
            case .added: out += "new file mode 100644\n"
            case .deleted: out += "deleted file mode 100644\n"
            case .renamed:
                out += "similarity index \(file.similarity ?? 90)%\nrename from \(old)\nrename to \(new)\n"
            case .modified: break
            }
            out += "index 1111111..2222222\n"
            if file.isBinary {
                out += "Binary files \(file.oldPath.map { "a/" + $0 } ?? "/dev/null") and \(file.newPath.map { "b/" + $0 } ?? "/dev/null") differ\n"
                continue
            }
            guard !file.hunks.isEmpty else { continue }
            out += "--- \(file.oldPath.map { "a/" + $0 } ?? "/dev/null")\n"
            out += "+++ \(file.newPath.map { "b/" + $0 } ?? "/dev/null")\n"
            for hunk in file.hunks {
                out += hunk.header + "\n"
                for line in hunk.lines {
                    switch line.kind {
                    case .context: out += " "
                    case .added: out += "+"
                    case .removed: out += "-"
                    }
                    out += line.text + "\n"
                    if line.missingNewline { out += "\\ No newline at end of file\n" }
                }
            }
        }
        return out
    }

    static func randomLine(_ rng: inout SeededRNG, length: ClosedRange<Int>) -> String {
        let words = ["let", "var", "func", "return", "value", "count", "if", "else", "for", "in", "self", "items",
                     "map", "{", "}", "(", ")", "=", "+", "1", "0", "\"text\"", "// note", "guard", "try", "await"]
        var s = String(repeating: " ", count: rng.int(0...8))
        let target = rng.int(length)
        while s.count < target { s += words[rng.int(0...(words.count - 1))] + " " }
        return String(s.prefix(target))
    }

    /// A random modified file whose hunks have consistent numbering.
    static func randomFile(_ rng: inout SeededRNG, path: String, hunks: ClosedRange<Int>, linesPerHunk: ClosedRange<Int>,
                           lineLength: ClosedRange<Int> = 0...80) -> DiffFile {
        var oldNo = rng.int(1...30)
        var newNo = oldNo + rng.int(0...5)
        var result: [DiffHunk] = []
        for _ in 0..<rng.int(hunks) {
            let oldStart = oldNo, newStart = newNo
            var lines: [DiffLine] = []
            for _ in 0..<rng.int(linesPerHunk) {
                let text = randomLine(&rng, length: lineLength)
                switch rng.int(0...2) {
                case 0:
                    lines.append(DiffLine(kind: .context, oldLine: oldNo, newLine: newNo, text: text)); oldNo += 1; newNo += 1
                case 1:
                    lines.append(DiffLine(kind: .added, oldLine: nil, newLine: newNo, text: text)); newNo += 1
                default:
                    lines.append(DiffLine(kind: .removed, oldLine: oldNo, newLine: nil, text: text)); oldNo += 1
                }
            }
            let oldCount = lines.filter { $0.kind != .added }.count
            let newCount = lines.filter { $0.kind != .removed }.count
            result.append(DiffHunk(oldStart: oldCount == 0 ? max(0, oldStart - 1) : oldStart, oldCount: oldCount,
                                   newStart: newCount == 0 ? max(0, newStart - 1) : newStart, newCount: newCount,
                                   section: rng.chance(0.5) ? "func f\(rng.int(0...99))()" : "", lines: lines))
            let gap = rng.int(4...40)
            oldNo += gap
            newNo += gap
        }
        return DiffFile(oldPath: path, newPath: path, status: .modified, hunks: result)
    }

    /// A file with `count` added lines starting at line 1.
    static func addedFile(_ path: String, lines: [String]) -> DiffFile {
        let diffLines = lines.enumerated().map { DiffLine(kind: .added, oldLine: nil, newLine: $0.offset + 1, text: $0.element) }
        return DiffFile(oldPath: nil, newPath: path, status: .added,
                        hunks: [DiffHunk(oldStart: 0, oldCount: 0, newStart: 1, newCount: lines.count, lines: diffLines)])
    }

    /// Identity of a line within a file, independent of how hunks were split.
    struct LineKey: Hashable {
        var path: String
        var kind: DiffLine.Kind
        var oldLine: Int?
        var newLine: Int?
        var text: String
    }

    static func lineKeys(_ files: [DiffFile]) -> [LineKey] {
        files.flatMap { file in
            file.hunks.flatMap { hunk in
                hunk.lines.map { LineKey(path: file.path, kind: $0.kind, oldLine: $0.oldLine, newLine: $0.newLine, text: $0.text) }
            }
        }
    }
}

/// Oracles the engine tests check results against.
extension DiffFile {
    /// Line numbers on `side` that appear in the diff and so can carry a review comment:
    /// RIGHT = added and context lines (new numbering), LEFT = removed and context lines (old numbering).
    func commentableLines(side: DiffSide) -> Set<Int> {
        Set(hunks.flatMap { hunk in hunk.lines.compactMap { $0.number(on: side) } })
    }

    /// The diff line shown at `line` on `side`, if that line is in the diff.
    func diffLine(at line: Int, side: DiffSide) -> DiffLine? {
        for hunk in hunks where hunk.range(on: side).contains(line) {
            for l in hunk.lines where l.number(on: side) == line { return l }
        }
        return nil
    }
}

extension ReviewResult {
    /// Tokens of every model call of the review.
    var totalUsage: TokenUsage { usage.reduce(.zero) { $0 + $1.usage } }
}
