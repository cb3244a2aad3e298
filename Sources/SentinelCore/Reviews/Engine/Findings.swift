import Crypto
import Foundation

/// Where a finding came from. Built-in findings are deterministic and run without any AI
/// provider, so reports and policies treat them differently (they are never "model noise").
public enum FindingSource: String, Sendable, Hashable, Codable, CaseIterable {
    case ai, builtin
}

/// A finding that is safe to post: its path is in the diff and (line, side) is a line GitHub will
/// accept a comment on. Only `FindingAnchor` and the built-in checks create these.
public struct Finding: Sendable, Hashable, Codable {
    public var path: String
    /// First line of a multi-line range on the same side and hunk; nil for a single line.
    public var startLine: Int?
    public var line: Int
    public var side: DiffSide
    public var severity: Severity
    public var category: String
    public var title: String
    public var body: String
    /// Replacement code for startLine...line; only ever set on the RIGHT side.
    public var suggestion: String?
    public var source: FindingSource
    /// Identity across re-reviews (see `Fingerprint`).
    public var fingerprint: String

    public init(path: String, startLine: Int? = nil, line: Int, side: DiffSide, severity: Severity, category: String,
                title: String, body: String, suggestion: String? = nil, source: FindingSource, fingerprint: String) {
        self.path = path
        self.startLine = startLine
        self.line = line
        self.side = side
        self.severity = severity
        // Category and title reach events and the analytics dump: one line, no control characters.
        self.category = StoredText.singleLine(category)
        self.title = StoredText.singleLine(title)
        self.body = StoredText.multiline(body)
        self.suggestion = suggestion
        self.source = source
        self.fingerprint = fingerprint
    }
}

/// Finding identity that survives pushes. A line number shifts whenever code above it changes,
/// so the fingerprint hashes the (normalized) text of the anchored line instead: the same problem
/// on the same code is recognised after a rebase or an unrelated edit, and never posted twice.
public enum Fingerprint {
    /// First 16 hex digits of SHA-256 over path, category, title and the anchor line's text,
    /// each trimmed and whitespace-collapsed (category and title also lower-cased).
    public static func of(path: String, category: String, title: String, anchorText: String) -> String {
        let material = [path, normalize(category).lowercased(), normalize(title).lowercased(), normalize(anchorText)]
            .joined(separator: "\u{1F}")
        let digest = SHA256.hash(data: Data(material.utf8))
        return digest.prefix(8).map { byte in
            let hex = String(byte, radix: 16)
            return hex.count == 1 ? "0" + hex : hex
        }.joined()
    }

    /// Trims and collapses every run of whitespace to one space.
    public static func normalize(_ text: String) -> String {
        text.split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
    }
}

/// Puts model findings on lines that exist in the diff. Models miscount lines, cite removed lines
/// with the wrong side, or talk about code outside the change; posting those as-is either fails at
/// the platform or lands on the wrong line, so each finding is kept, moved, or sent to the summary.
public enum FindingAnchor {
    /// How far (in lines) outside a hunk a cited line may be and still be moved into that hunk.
    public static let reanchorDistance = 3

    /// - Kept when (line, side) is commentable; a RIGHT finding on a removed line moves to LEFT
    ///   (and a LEFT finding on an added line to RIGHT).
    /// - Otherwise moved to the nearest changed line of the same side in the hunk that contains the
    ///   line or lies within `reanchorDistance` of it (nearest commentable line if that side of the
    ///   hunk has no changes); else unanchored. An unknown path is always unanchored.
    /// - A range must lie in one hunk on one side, else it collapses to `line`.
    /// - A suggestion survives only on the RIGHT side and only when the finding was not moved or
    ///   collapsed (it would otherwise replace the wrong lines).
    public static func anchor(_ raw: [RawFinding], source: FindingSource, files: [DiffFile])
        -> (anchored: [Finding], unanchored: [RawFinding])
    {
        let byPath = pathIndex(files)
        var indexes: [Int: LineIndex] = [:]
        var anchored: [Finding] = []
        var unanchored: [RawFinding] = []

        for finding in raw {
            guard let fileIndex = lookup(finding.path, in: byPath) else {
                var named = finding
                named.path = finding.path.trimmingCharacters(in: .whitespacesAndNewlines)
                unanchored.append(named)
                continue
            }
            let file = files[fileIndex]
            let index: LineIndex
            if let cached = indexes[fileIndex] { index = cached } else {
                index = LineIndex(file)
                indexes[fileIndex] = index
            }
            if let result = place(finding, in: file, index: index, source: source) {
                anchored.append(result)
            } else {
                unanchored.append(finding)
            }
        }
        return (anchored, unanchored)
    }

    /// The findings a review leaves out: those about a file of the change it did not review
    /// (`notReviewed`: excluded by the repository's paths, skipped by default, over the budget,
    /// deleted), which the model was not shown, and those about a path the repository's paths keep
    /// out of review. What remains off the changed lines goes to the summary. A finding about a
    /// file the review read (`reviewed`), by any name the anchoring knows it by (`b/…`, its name
    /// before a rename), is in scope whatever the globs say of that name.
    public static func outOfScope(_ finding: RawFinding, reviewed: [String: Int], notReviewed: [String: Int], filter: PathFilter) -> Bool {
        if lookup(finding.path, in: reviewed) != nil { return false }
        if lookup(finding.path, in: notReviewed) != nil { return true }
        // As written, and without a diff's `a/`/`b/`: kept out when either is (`a/**` excluded
        // is a real directory `a`; `b/docs/x.md` with `docs/**` excluded is `docs/x.md`).
        let path = normalizedPath(finding.path)
        if !filter.allowsPath(path) { return true }
        if path.hasPrefix("a/") || path.hasPrefix("b/") { return !filter.allowsPath(String(path.dropFirst(2))) }
        return false
    }

    /// Where each file is in `files`, by its path, its previous path and the name the prompt shows.
    public static func pathIndex(_ files: [DiffFile]) -> [String: Int] {
        var byPath: [String: Int] = [:]
        for (i, file) in files.enumerated() {
            if byPath[file.path] == nil { byPath[file.path] = i }
        }
        for (i, file) in files.enumerated() {
            if let old = file.oldPath, byPath[old] == nil { byPath[old] = i }
        }
        // A name with a control character as the prompt shows it (`t\u{9}b.py`), which is what the
        // model is told to cite.
        for (i, file) in files.enumerated() {
            let shown = DiffRenderer.promptName(file.path)
            if shown != file.path, byPath[shown] == nil { byPath[shown] = i }
        }
        return byPath
    }

    private static func lookup(_ rawPath: String, in byPath: [String: Int]) -> Int? {
        if let i = byPath[rawPath] { return i }
        var path = rawPath.trimmingCharacters(in: .whitespacesAndNewlines)
        if path.hasPrefix("`") && path.hasSuffix("`") && path.count > 1 { path = String(path.dropFirst().dropLast()) }
        if let i = byPath[path] { return i }
        var p = Substring(path)
        while p.hasPrefix("./") { p = p.dropFirst(2) }
        while p.hasPrefix("/") { p = p.dropFirst() }
        if let i = byPath[String(p)] { return i }
        if p.hasPrefix("a/") || p.hasPrefix("b/"), let i = byPath[String(p.dropFirst(2))] { return i }
        return nil
    }

    /// A path as a model cites it, without quoting backticks, `./` or a leading `/`.
    static func normalizedPath(_ rawPath: String) -> String {
        var path = rawPath.trimmingCharacters(in: .whitespacesAndNewlines)
        if path.hasPrefix("`") && path.hasSuffix("`") && path.count > 1 { path = String(path.dropFirst().dropLast()) }
        var p = Substring(path)
        while p.hasPrefix("./") { p = p.dropFirst(2) }
        while p.hasPrefix("/") { p = p.dropFirst() }
        return String(p)
    }

    public static let omittedMovedSuggestion = "_(A suggested change was left out here: it was written for other lines than this comment is on.)_"

    private static func place(_ raw: RawFinding, in file: DiffFile, index: LineIndex, source: FindingSource) -> Finding? {
        // Line 0: about the whole file, never moved onto a line.
        guard !file.hunks.isEmpty, raw.line > 0 else { return nil }
        var side = raw.side
        var line = raw.line
        var start = raw.startLine
        var adjusted = false

        if index.entry(line, side) == nil {
            let other: DiffSide = side == .right ? .left : .right
            if let e = index.entry(line, other), e.line.kind == (other == .left ? .removed : .added) {
                // Moved to the other side: a suggestion written for the side the model named is not offered.
                side = other
                adjusted = true
            }
        }

        if index.entry(line, side) == nil {
            guard let target = nearest(line, side: side, in: file) else { return nil }
            line = target
            start = nil
            adjusted = true
        }
        guard let anchorEntry = index.entry(line, side) else { return nil }

        if let s = start {
            if s < line, let startEntry = index.entry(s, side), startEntry.hunk == anchorEntry.hunk {
                // Lines of one side within one hunk are contiguous, so the whole range exists.
            } else {
                start = nil
                adjusted = true
            }
        }

        let suggestion = (side == .right && !adjusted) ? raw.suggestion : nil
        // A suggestion written for other lines than the comment lands on is left out, and said so
        // (it went without a word, as none of the other omissions do).
        let body = raw.suggestion != nil && suggestion == nil ? raw.body + "\n\n" + Self.omittedMovedSuggestion : raw.body
        let fingerprint = Fingerprint.of(path: file.path, category: raw.category, title: raw.title,
                                         anchorText: anchorEntry.line.text)
        return Finding(path: file.path, startLine: start, line: line, side: side, severity: raw.severity,
                       category: raw.category, title: raw.title, body: body, suggestion: suggestion,
                       source: source, fingerprint: fingerprint)
    }

    /// Nearest changed (else commentable) line on `side` in the closest hunk within reach.
    private static func nearest(_ line: Int, side: DiffSide, in file: DiffFile) -> Int? {
        var best: (hunk: DiffHunk, distance: Int)?
        for hunk in file.hunks {
            let range = hunk.range(on: side)
            guard !range.isEmpty else { continue }
            let distance = line < range.lowerBound ? range.lowerBound - line
                : line >= range.upperBound ? line - (range.upperBound - 1) : 0
            if distance <= reanchorDistance, best == nil || distance < best!.distance {
                best = (hunk, distance)
            }
        }
        guard let hunk = best?.hunk else { return nil }
        let changedKind: DiffLine.Kind = side == .right ? .added : .removed
        func closest(_ candidates: [Int]) -> Int? {
            candidates.min { a, b in
                let da = abs(a - line), db = abs(b - line)
                return da != db ? da < db : a < b
            }
        }
        let changed = hunk.lines.filter { $0.kind == changedKind }.compactMap { $0.number(on: side) }
        if let target = closest(changed) { return target }
        return closest(hunk.lines.compactMap { $0.number(on: side) })
    }

    /// Per-file lookup of (line, side) → the diff line and its hunk.
    private struct LineIndex {
        struct Entry { var hunk: Int; var line: DiffLine }
        var right: [Int: Entry] = [:]
        var left: [Int: Entry] = [:]

        init(_ file: DiffFile) {
            for (h, hunk) in file.hunks.enumerated() {
                for line in hunk.lines {
                    if let n = line.number(on: .right) { right[n] = Entry(hunk: h, line: line) }
                    if let n = line.number(on: .left) { left[n] = Entry(hunk: h, line: line) }
                }
            }
        }

        func entry(_ line: Int, _ side: DiffSide) -> Entry? {
            side == .right ? right[line] : left[line]
        }
    }
}

/// Chooses what gets posted. A review with fifty comments is not read, so findings are deduped,
/// cut at the configured severity floor (the model's; built-in findings are always kept) and
/// capped, most severe first.
public enum FindingRanker {
    /// A fingerprint names a problem by its file, kind, title and line text, not its line, so that
    /// it is recognised after lines move. The same problem on two identical lines (`cursor.execute(q)`
    /// twice) is two findings: the second and later places of a fingerprint, in line order, get
    /// `:2`, `:3`, … (stable while the lines keep their order). Reports of one place stay one, and
    /// were the only ones kept: the second line was neither commented nor counted.
    static func occurrences(_ findings: [Finding]) -> [Finding] {
        var places: [String: [(side: DiffSide, line: Int)]] = [:]
        for finding in findings where !(places[finding.fingerprint] ?? []).contains(where: { $0 == (finding.side, finding.line) }) {
            places[finding.fingerprint, default: []].append((finding.side, finding.line))
        }
        return findings.map { finding in
            guard let all = places[finding.fingerprint], all.count > 1 else { return finding }
            let ordered = all.sorted { $0.line != $1.line ? $0.line < $1.line : $0.side == .left }
            guard let index = ordered.firstIndex(where: { $0 == (finding.side, finding.line) }), index > 0 else { return finding }
            var numbered = finding
            numbered.fingerprint += ":\(index + 1)"
            return numbered
        }
    }

    /// - Returns: the findings to post inline (severity descending, then path, then line), those
    ///   above the floor that the comment cap left out (`overLimit`: the summary lists them), those
    ///   whose fingerprint was already posted on the pull request (`repeated`: not posted again,
    ///   still open, so they still count toward the check's verdict), and how many were dropped for
    ///   each reason. `duplicates` counts repeats within the list and the repeated findings.
    public static func select(_ findings: [Finding], minSeverity: Severity, maxComments: Int, alreadyPosted: Set<String>)
        -> (selected: [Finding], droppedBelowFloor: Int, droppedOverLimit: Int, duplicates: Int, overLimit: [Finding], repeated: [Finding])
    {
        let findings = occurrences(findings)
        var duplicates = 0
        var positionByFingerprint: [String: Int] = [:]
        var unique: [Finding] = []
        var repeatedByFingerprint: [String: Finding] = [:]
        for finding in findings {
            if alreadyPosted.contains(finding.fingerprint) {
                duplicates += 1
                if finding.severity >= minSeverity || finding.source == .builtin, (repeatedByFingerprint[finding.fingerprint]?.severity ?? .info) <= finding.severity {
                    repeatedByFingerprint[finding.fingerprint] = finding
                }
                continue
            }
            if let existing = positionByFingerprint[finding.fingerprint] {
                duplicates += 1
                // Keep the most severe report of the same problem.
                if finding.severity > unique[existing].severity { unique[existing] = finding }
                continue
            }
            positionByFingerprint[finding.fingerprint] = unique.count
            unique.append(finding)
        }

        // The floor is for the model's findings: a built-in check's (a secret, a conflict marker)
        // is reported whatever a pull request's own `.sentinel.yml` sets it to.
        let aboveFloor = unique.filter { $0.severity >= minSeverity || $0.source == .builtin }
        let droppedBelowFloor = unique.count - aboveFloor.count
        let sorted = aboveFloor.sorted { a, b in
            if a.severity != b.severity { return a.severity > b.severity }
            if a.path != b.path { return a.path < b.path }
            if a.line != b.line { return a.line < b.line }
            if a.side != b.side { return a.side == .left }
            return a.title < b.title
        }
        let limit = max(0, maxComments)
        let selected = Array(sorted.prefix(limit))
        let repeated = repeatedByFingerprint.values.sorted { a, b in
            a.severity != b.severity ? a.severity > b.severity : a.path != b.path ? a.path < b.path : a.line < b.line
        }
        return (selected, droppedBelowFloor, sorted.count - selected.count, duplicates, Array(sorted.dropFirst(limit)), repeated)
    }
}
