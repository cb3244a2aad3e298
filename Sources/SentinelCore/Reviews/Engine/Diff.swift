import Foundation

/// Which version of a file a line number refers to. Raw values are GitHub's, because review
/// comments are posted with exactly these strings and the model is asked to answer in them too.
public enum DiffSide: String, Sendable, Codable, Hashable, CaseIterable {
    /// The old version (a removed or unchanged line, numbered in the base file).
    case left = "LEFT"
    /// The new version (an added or unchanged line, numbered in the head file).
    case right = "RIGHT"
}

/// One line of a hunk. Both line numbers are kept because a comment can only be placed on a line
/// that exists on the side it targets, and a context line exists on both.
public struct DiffLine: Sendable, Hashable, Codable {
    public enum Kind: String, Sendable, Hashable, Codable {
        case context, added, removed
    }

    public var kind: Kind
    /// Line number in the old file; nil for an added line.
    public var oldLine: Int?
    /// Line number in the new file; nil for a removed line.
    public var newLine: Int?
    /// The line's content without the leading marker character.
    public var text: String
    /// Set when the diff said `\ No newline at end of file` after this line.
    public var missingNewline: Bool

    public init(kind: Kind, oldLine: Int?, newLine: Int?, text: String, missingNewline: Bool = false) {
        self.kind = kind
        self.oldLine = oldLine
        self.newLine = newLine
        self.text = text
        self.missingNewline = missingNewline
    }

    /// The line number of this line on `side`, or nil when the line does not exist there.
    public func number(on side: DiffSide) -> Int? {
        switch side {
        case .left: return kind == .added ? nil : oldLine
        case .right: return kind == .removed ? nil : newLine
        }
    }
}

/// A contiguous region of change. Kept as its own value because comment ranges must not cross
/// hunks and re-anchoring only moves a finding within the hunk it belongs to.
public struct DiffHunk: Sendable, Hashable, Codable {
    public var oldStart: Int
    public var oldCount: Int
    public var newStart: Int
    public var newCount: Int
    /// The text after the closing `@@` (usually the enclosing function), trimmed.
    public var section: String
    public var lines: [DiffLine]

    public init(oldStart: Int, oldCount: Int, newStart: Int, newCount: Int, section: String = "", lines: [DiffLine]) {
        self.oldStart = oldStart
        self.oldCount = oldCount
        self.newStart = newStart
        self.newCount = newCount
        self.section = section
        self.lines = lines
    }

    /// The `@@ -a,b +c,d @@ section` line, as git prints it.
    public var header: String {
        DiffHunk.headerLine(oldStart: oldStart, oldCount: oldCount, newStart: newStart, newCount: newCount, section: section)
    }

    static func headerLine(oldStart: Int, oldCount: Int, newStart: Int, newCount: Int, section: String) -> String {
        var s = "@@ -\(oldStart),\(oldCount) +\(newStart),\(newCount) @@"
        if !section.isEmpty { s += " " + section }
        return s
    }

    /// The line numbers this hunk spans on `side` (empty for a side with no lines, e.g. the new
    /// side of a pure deletion).
    public func range(on side: DiffSide) -> Range<Int> {
        switch side {
        case .left: return oldStart..<(oldStart + max(0, oldCount))
        case .right: return newStart..<(newStart + max(0, newCount))
        }
    }

    /// A hunk made of `lines[range]` with headers recomputed, so a large hunk can be split into
    /// pieces that each still carry correct line numbers.
    public func slice(_ range: Range<Int>) -> DiffHunk {
        let clamped = range.clamped(to: lines.indices)
        var oldCursor = oldStart
        var newCursor = newStart
        for line in lines[..<clamped.lowerBound] {
            if line.kind != .added { oldCursor += 1 }
            if line.kind != .removed { newCursor += 1 }
        }
        let part = Array(lines[clamped])
        let oldCount = part.reduce(0) { $0 + ($1.kind != .added ? 1 : 0) }
        let newCount = part.reduce(0) { $0 + ($1.kind != .removed ? 1 : 0) }
        // git numbers an empty side by the line before the change; a side the whole hunk leaves
        // empty (a pure insertion's old side) is numbered so already, and keeps its start.
        let oldStart = self.oldCount == 0 ? self.oldStart : oldCount == 0 ? max(0, oldCursor - 1) : oldCursor
        let newStart = self.newCount == 0 ? self.newStart : newCount == 0 ? max(0, newCursor - 1) : newCursor
        return DiffHunk(oldStart: oldStart, oldCount: oldCount, newStart: newStart, newCount: newCount,
                        section: section, lines: part)
    }
}

/// One file of a change set, in the form the whole engine works on: filters decide on it, the
/// chunker splits it, the prompt renders it and anchoring checks findings against it.
public struct DiffFile: Sendable, Hashable, Codable {
    public enum Status: String, Sendable, Hashable, Codable, CaseIterable {
        case added, modified, deleted, renamed
    }

    /// Path in the base version; nil when the file is new (`/dev/null`).
    public var oldPath: String?
    /// Path in the head version; nil when the file was deleted.
    public var newPath: String?
    public var status: Status
    public var isBinary: Bool
    public var hunks: [DiffHunk]
    public var additions: Int
    public var deletions: Int
    /// git's similarity index for renames and copies, when given.
    public var similarity: Int?
    /// Why the file's change cannot be reviewed, when it is known before any filter: the platform
    /// gave no diff Sentinel can read (`.diffUnavailable`: too large for it, GitHub leaving the
    /// patch out, GitLab marking it `too_large` or `collapsed`, or a patch that does not parse), or
    /// the pull request's patches past `maxPatchBytes` (`.overBudget`). Not reviewed, and said so.
    public var unreviewable: SkipReason?

    /// Patch text parsed for one review, all files together: 32 MiB (eight times what the default
    /// `review.max_tokens_per_run` lets the model read). A platform listing more (a hostile or broken
    /// server, a generated monster) costs memory and CPU in proportion, starving the requests and
    /// runs beside it; files past it are counted "over budget" and not parsed.
    public static let maxPatchBytes = 32 << 20

    public init(oldPath: String?, newPath: String?, status: Status, isBinary: Bool = false, hunks: [DiffHunk] = [],
                additions: Int? = nil, deletions: Int? = nil, similarity: Int? = nil, unreviewable: SkipReason? = nil) {
        self.oldPath = oldPath
        self.newPath = newPath
        self.status = status
        self.isBinary = isBinary
        self.unreviewable = unreviewable
        self.hunks = hunks
        var added = 0, removed = 0
        if additions == nil || deletions == nil {
            for hunk in hunks {
                for line in hunk.lines {
                    if line.kind == .added { added += 1 } else if line.kind == .removed { removed += 1 }
                }
            }
        }
        self.additions = additions ?? added
        self.deletions = deletions ?? removed
        self.similarity = similarity
    }

    /// The path a reviewer knows the file by: the new path, or the old one for a deleted file.
    public var path: String { newPath ?? oldPath ?? "" }

    /// The hunk whose span on `side` contains `line`, if any.
    public func hunk(containing line: Int, side: DiffSide) -> DiffHunk? {
        hunks.first { $0.range(on: side).contains(line) }
    }

    /// The same file holding only `hunks` (counts recomputed): how the chunker represents part of
    /// a file.
    public func withHunks(_ hunks: [DiffHunk]) -> DiffFile {
        DiffFile(oldPath: oldPath, newPath: newPath, status: status, isBinary: isBinary, hunks: hunks,
                 similarity: similarity)
    }

    /// Builds a file from GitHub's pull-request file entry, whose `patch` holds only hunks.
    /// A missing patch means GitHub did not send one (binary or too large); such a file is treated
    /// as binary unless `isBinary` says otherwise, because it has no lines to review either way.
    public static func fromPatch(path: String, previousPath: String? = nil, status: Status, patch: String?,
                                 isBinary: Bool? = nil) throws -> DiffFile {
        let oldPath: String? = status == .added ? nil : (previousPath ?? path)
        let newPath: String? = status == .deleted ? nil : path
        guard let patch, !patch.isEmpty else {
            return DiffFile(oldPath: oldPath, newPath: newPath, status: status, isBinary: isBinary ?? true)
        }
        var cursor = LineCursor(patch)
        var hunks: [DiffHunk] = []
        while let line = cursor.current {
            if line.hasPrefix("@@") {
                hunks.append(try cursor.parseHunk())
            } else if line.isEmpty || line == "\r" {
                cursor.advance()
            } else {
                throw DiffParseError(line: cursor.lineNumber, message: "expected a hunk header (@@ -a,b +c,d @@) in the patch of \(path)")
            }
        }
        return DiffFile(oldPath: oldPath, newPath: newPath, status: status, isBinary: isBinary ?? false, hunks: hunks)
    }
}

/// Why a diff could not be read. Carries the input line so a bad diff is diagnosable without
/// dumping it (diffs can hold secrets).
public struct DiffParseError: Error, Sendable, Hashable, CustomStringConvertible {
    /// 1-based line of the input where parsing failed.
    public var line: Int
    public var message: String

    public init(line: Int, message: String) {
        self.line = line
        self.message = message
    }

    public var description: String { "invalid diff at line \(line): \(message)" }
}

/// Parser for `git diff` / `git format-patch` output (and plain unified diffs). Diffs come from
/// platforms and local files alike and may be hostile or truncated, so every malformed input is
/// a `DiffParseError` with a line number, never a crash.
public enum UnifiedDiff {
    /// Parses a whole diff into files. An empty diff yields no files; text with no file header at
    /// all, a malformed hunk header or a hunk whose body does not match its header throws.
    public static func parse(_ text: String) throws -> [DiffFile] {
        var cursor = LineCursor(text)
        var files: [DiffFile] = []
        var sawContent = false
        while let line = cursor.current {
            if line.hasPrefix("diff --git ") {
                files.append(try parseGitFile(&cursor))
            } else if line.hasPrefix("diff --cc ") || line.hasPrefix("diff --combined ") {
                throw DiffParseError(line: cursor.lineNumber, message: "combined (merge) diffs are not supported")
            } else if line.hasPrefix("--- "), let next = cursor.peek(1), next.hasPrefix("+++ ") {
                files.append(try parsePlainFile(&cursor))
            } else if line.hasPrefix("@@ ") {
                throw DiffParseError(line: cursor.lineNumber, message: "hunk header without a preceding file header")
            } else {
                if !line.allSatisfy({ $0.isWhitespace }) { sawContent = true }
                cursor.advance()
            }
        }
        if files.isEmpty && sawContent {
            throw DiffParseError(line: 1, message: "no file headers (diff --git or ---/+++) found")
        }
        return files
    }

    private static func parseGitFile(_ cursor: inout LineCursor) throws -> DiffFile {
        let headerLine = cursor.lineNumber
        let header = cursor.current!.dropFirst("diff --git ".count)
        guard let (headerOld, headerNew) = gitHeaderPaths(header) else {
            throw DiffParseError(line: headerLine, message: "cannot read the paths of a diff --git header")
        }
        cursor.advance()
        let (oldPrefix, newPrefix) = sidePrefixes(headerOld, headerNew) ?? ("", "")
        var oldPath: String? = stripPrefix(headerOld, oldPrefix)
        var newPath: String? = stripPrefix(headerNew, newPrefix)
        var status: DiffFile.Status = .modified
        var isBinary = false
        var similarity: Int?
        var renameFrom: String?, renameTo: String?
        var copied = false

        headers: while let raw = cursor.current {
            let line = trimCR(raw)
            if line.hasPrefix("diff ") || line.hasPrefix("@@") { break }
            if line.hasPrefix("new file mode") {
                status = .added
            } else if line.hasPrefix("deleted file mode") {
                status = .deleted
            } else if line.hasPrefix("rename from ") {
                renameFrom = unquote(line.dropFirst("rename from ".count))
            } else if line.hasPrefix("rename to ") {
                renameTo = unquote(line.dropFirst("rename to ".count))
            } else if line.hasPrefix("copy from ") {
                renameFrom = unquote(line.dropFirst("copy from ".count)); copied = true
            } else if line.hasPrefix("copy to ") {
                renameTo = unquote(line.dropFirst("copy to ".count)); copied = true
            } else if line.hasPrefix("similarity index ") {
                similarity = Int(line.dropFirst("similarity index ".count).filter { $0.isNumber })
            } else if line.hasPrefix("Binary files ") && line.hasSuffix(" differ") {
                isBinary = true
            } else if line.hasPrefix("GIT binary patch") {
                isBinary = true
                cursor.advance()
                // Skip the base85 payload up to the next file.
                while let l = cursor.current, !l.hasPrefix("diff ") { cursor.advance() }
                break headers
            } else if line.hasPrefix("--- ") {
                guard let next = cursor.peek(1), next.hasPrefix("+++ ") else {
                    throw DiffParseError(line: cursor.lineNumber, message: "'---' line not followed by '+++'")
                }
                let old = headerPath(line.dropFirst(4))
                let new = headerPath(trimCR(next).dropFirst(4))
                if let old { oldPath = old == "/dev/null" ? nil : stripPrefix(old, oldPrefix) }
                if let new { newPath = new == "/dev/null" ? nil : stripPrefix(new, newPrefix) }
                cursor.advance()
            } else if line.hasPrefix("old mode") || line.hasPrefix("new mode") || line.hasPrefix("index ")
                        || line.hasPrefix("dissimilarity index") {
                // Informational only.
            } else {
                // Anything else ends the extended header (e.g. the next commit's message).
                break
            }
            cursor.advance()
        }

        if let renameFrom { oldPath = renameFrom }
        if let renameTo { newPath = renameTo }
        if renameFrom != nil || renameTo != nil { status = copied ? .added : .renamed }
        switch status {
        case .added:
            if !copied { oldPath = nil }
        case .deleted: newPath = nil
        case .modified, .renamed: break
        }

        var hunks: [DiffHunk] = []
        if !isBinary { hunks = try parseHunks(&cursor) }
        if oldPath == nil && newPath == nil {
            throw DiffParseError(line: headerLine, message: "file has neither an old nor a new path")
        }
        return DiffFile(oldPath: oldPath, newPath: newPath, status: status, isBinary: isBinary, hunks: hunks,
                        similarity: similarity)
    }

    private static func parsePlainFile(_ cursor: inout LineCursor) throws -> DiffFile {
        let line = cursor.lineNumber
        let old = headerPath(trimCR(cursor.current!).dropFirst(4))
        cursor.advance()
        let new = headerPath(trimCR(cursor.current!).dropFirst(4))
        cursor.advance()
        guard let old, let new else {
            throw DiffParseError(line: line, message: "cannot read the paths of a ---/+++ header")
        }
        // One side /dev/null (a file added or deleted): the other's prefix is git's usual one, if any.
        let (oldPrefix, newPrefix) = sidePrefixes(old, new) ?? ("a/", "b/")
        let oldPath: String? = old == "/dev/null" ? nil : stripPrefix(old, oldPrefix)
        let newPath: String? = new == "/dev/null" ? nil : stripPrefix(new, newPrefix)
        let status: DiffFile.Status
        switch (oldPath, newPath) {
        case (nil, nil): throw DiffParseError(line: line, message: "both paths are /dev/null")
        case (nil, _): status = .added
        case (_, nil): status = .deleted
        case let (o?, n?): status = o == n ? .modified : .renamed
        }
        let hunks = try parseHunks(&cursor)
        return DiffFile(oldPath: oldPath, newPath: newPath, status: status, hunks: hunks)
    }

    private static func parseHunks(_ cursor: inout LineCursor) throws -> [DiffHunk] {
        var hunks: [DiffHunk] = []
        while let line = cursor.current {
            if line.hasPrefix("@@") {
                hunks.append(try cursor.parseHunk())
            } else if line.hasPrefix("diff ") {
                break
            } else if line.hasPrefix("--- "), let next = cursor.peek(1), next.hasPrefix("+++ ") {
                break
            } else if line == "-- " || line == "--" {
                // format-patch signature: the rest is not diff.
                break
            } else if let first = line.utf8.first, first == UInt8(ascii: "+") || first == UInt8(ascii: "-")
                        || first == UInt8(ascii: " ") {
                if hunks.isEmpty { break }
                throw DiffParseError(line: cursor.lineNumber,
                                     message: "diff line after the end of a hunk (its header declares fewer lines)")
            } else {
                break
            }
        }
        return hunks
    }

    // MARK: Path helpers

    static func trimCR(_ s: Substring) -> Substring {
        s.hasSuffix("\r") ? s.dropLast() : s
    }

    private static func stripPrefix(_ path: String, _ prefix: String) -> String {
        !prefix.isEmpty && path.hasPrefix(prefix) ? String(path.dropFirst(prefix.count)) : path
    }

    /// The prefixes git wrote before the old and the new path: `a/` and `b/`, or, with
    /// `diff.mnemonicPrefix`, the sides compared ((i)ndex and (w)ork tree, (c)ommit, (o)bject;
    /// `1/` and `2/` for `--no-index`), either way round (`-R`). Nil when the two paths do not
    /// start with such a pair: `--no-prefix` (a directory `b/` is part of the path) or custom
    /// prefixes, left as written. A mnemonic `w/` had stayed in the path, so `.sentinel.yml`'s
    /// excludes and path instructions did not match it.
    static func sidePrefixes(_ old: String, _ new: String) -> (String, String)? {
        let pairs: Set<String> = ["ab", "iw", "cw", "ci", "ow", "12", "ba", "wi", "wc", "ic", "wo", "21"]
        let o = Array(old.utf8.prefix(2)), n = Array(new.utf8.prefix(2))
        guard o.count == 2, n.count == 2, o[1] == UInt8(ascii: "/"), n[1] == UInt8(ascii: "/"),
              pairs.contains(String(decoding: [o[0], n[0]], as: UTF8.self)) else { return nil }
        return (String(old.prefix(2)), String(new.prefix(2)))
    }

    /// Path of a `---`/`+++` line: quoted, or up to a tab (GNU diff appends a timestamp).
    private static func headerPath(_ s: Substring) -> String? {
        if s.hasPrefix("\"") { return parseQuoted(s)?.value }
        let path = s.split(separator: "\t", maxSplits: 1, omittingEmptySubsequences: false).first ?? s
        return path.isEmpty ? nil : String(path)
    }

    private static func unquote(_ s: Substring) -> String {
        if s.hasPrefix("\""), let q = parseQuoted(s) { return q.value }
        return String(s)
    }

    /// Splits the two paths of `diff --git a/x b/y`, which may be C-quoted. Unquoted paths with
    /// spaces are ambiguous; the common unambiguous case (same path twice) is handled exactly and
    /// the `---`/`+++` or `rename` lines override the guess otherwise.
    static func gitHeaderPaths(_ s: Substring) -> (String, String)? {
        let s = trimCR(s)
        if s.hasPrefix("\"") {
            guard let (first, rest) = parseQuoted(s) else { return nil }
            let tail = rest.drop(while: { $0 == " " })
            if tail.hasPrefix("\"") {
                guard let (second, _) = parseQuoted(tail) else { return nil }
                return (first, second)
            }
            return tail.isEmpty ? nil : (first, String(tail))
        }
        if let q = s.range(of: " \"", options: .backwards), s.hasSuffix("\"") {
            let first = String(s[..<q.lowerBound])
            guard let (second, _) = parseQuoted(s[s.index(after: q.lowerBound)...]) else { return nil }
            return (first, second)
        }
        // "a/P b/P": both halves equal after the prefixes.
        let chars = Array(s)
        if chars.count >= 7, (chars.count - 1) % 2 == 0 {
            let half = (chars.count - 1) / 2
            let first = String(chars[..<half]), second = String(chars[(half + 1)...])
            if chars[half] == " ", first.dropFirst(2) == second.dropFirst(2) { return (first, second) }
        }
        if let r = s.range(of: " b/") {
            return (String(s[..<r.lowerBound]), String(s[s.index(after: r.lowerBound)...]))
        }
        let parts = s.split(separator: " ", maxSplits: 1)
        guard parts.count == 2 else { return nil }
        return (String(parts[0]), String(parts[1]))
    }

    /// Parses a C-style quoted string as git writes unusual paths (`"a/caf\303\251"`), returning
    /// the value and what follows the closing quote.
    static func parseQuoted(_ s: Substring) -> (value: String, rest: Substring)? {
        var bytes: [UInt8] = []
        let utf8 = Array(s.utf8)
        guard utf8.first == UInt8(ascii: "\"") else { return nil }
        var i = 1
        while i < utf8.count {
            let c = utf8[i]
            if c == UInt8(ascii: "\"") {
                let restStart = s.utf8.index(s.utf8.startIndex, offsetBy: i + 1)
                return (String(decoding: bytes, as: UTF8.self), s[restStart...])
            }
            if c == UInt8(ascii: "\\") {
                i += 1
                guard i < utf8.count else { return nil }
                let e = utf8[i]
                switch e {
                case UInt8(ascii: "n"): bytes.append(10)
                case UInt8(ascii: "t"): bytes.append(9)
                case UInt8(ascii: "r"): bytes.append(13)
                case UInt8(ascii: "a"): bytes.append(7)
                case UInt8(ascii: "b"): bytes.append(8)
                case UInt8(ascii: "f"): bytes.append(12)
                case UInt8(ascii: "v"): bytes.append(11)
                case UInt8(ascii: "0")...UInt8(ascii: "7"):
                    var value = 0, digits = 0
                    while digits < 3, i < utf8.count, (UInt8(ascii: "0")...UInt8(ascii: "7")).contains(utf8[i]) {
                        value = value * 8 + Int(utf8[i] - UInt8(ascii: "0"))
                        i += 1; digits += 1
                    }
                    bytes.append(UInt8(truncatingIfNeeded: value))
                    continue
                default: bytes.append(e)
                }
                i += 1
                continue
            }
            bytes.append(c)
            i += 1
        }
        return nil
    }
}

/// Walks the input line by line (splitting on LF bytes so CRLF content survives) and parses hunks.
struct LineCursor {
    private let lines: [Substring]
    private(set) var index = 0

    init(_ text: String) {
        var lines = LineCursor.splitLF(text)
        if lines.last?.isEmpty == true { lines.removeLast() }
        self.lines = lines
    }

    var current: Substring? { index < lines.count ? lines[index] : nil }
    func peek(_ offset: Int) -> Substring? { index + offset < lines.count ? lines[index + offset] : nil }
    /// 1-based line number of `current`.
    var lineNumber: Int { index + 1 }
    mutating func advance() { index += 1 }

    mutating func parseHunk() throws -> DiffHunk {
        let headerNumber = lineNumber
        guard let header = current, let parsed = LineCursor.parseHunkHeader(UnifiedDiff.trimCR(header)) else {
            throw DiffParseError(line: headerNumber, message: "malformed hunk header (expected @@ -a,b +c,d @@)")
        }
        advance()
        var oldRemaining = parsed.oldCount, newRemaining = parsed.newCount
        var oldNo = parsed.oldStart, newNo = parsed.newStart
        var lines: [DiffLine] = []
        lines.reserveCapacity(min(oldRemaining + newRemaining, 100_000))
        while oldRemaining > 0 || newRemaining > 0 {
            guard let line = current else {
                throw DiffParseError(line: headerNumber,
                                     message: "hunk is truncated: \(oldRemaining) old and \(newRemaining) new lines missing")
            }
            let first = line.utf8.first
            switch first {
            case UInt8(ascii: " "), nil:
                guard oldRemaining > 0, newRemaining > 0 else {
                    throw DiffParseError(line: lineNumber, message: "context line exceeds the hunk header's counts")
                }
                lines.append(DiffLine(kind: .context, oldLine: oldNo, newLine: newNo, text: String(line.dropFirst())))
                oldNo += 1; newNo += 1; oldRemaining -= 1; newRemaining -= 1
            case UInt8(ascii: "-"):
                guard oldRemaining > 0 else {
                    throw DiffParseError(line: lineNumber, message: "removed line exceeds the hunk header's old count")
                }
                lines.append(DiffLine(kind: .removed, oldLine: oldNo, newLine: nil, text: String(line.dropFirst())))
                oldNo += 1; oldRemaining -= 1
            case UInt8(ascii: "+"):
                guard newRemaining > 0 else {
                    throw DiffParseError(line: lineNumber, message: "added line exceeds the hunk header's new count")
                }
                lines.append(DiffLine(kind: .added, oldLine: nil, newLine: newNo, text: String(line.dropFirst())))
                newNo += 1; newRemaining -= 1
            case UInt8(ascii: "\\"):
                if !lines.isEmpty { lines[lines.count - 1].missingNewline = true }
            default:
                if line == "\r" && oldRemaining > 0 && newRemaining > 0 {
                    // A context line whose leading space was stripped by an editor.
                    lines.append(DiffLine(kind: .context, oldLine: oldNo, newLine: newNo, text: "\r"))
                    oldNo += 1; newNo += 1; oldRemaining -= 1; newRemaining -= 1
                } else {
                    throw DiffParseError(line: lineNumber,
                                         message: "unexpected line inside a hunk (\(oldRemaining) old and \(newRemaining) new lines still expected)")
                }
            }
            advance()
        }
        // A trailing "\ No newline at end of file" belongs to the last line.
        while let line = current, line.utf8.first == UInt8(ascii: "\\") {
            if !lines.isEmpty { lines[lines.count - 1].missingNewline = true }
            advance()
        }
        return DiffHunk(oldStart: parsed.oldStart, oldCount: parsed.oldCount, newStart: parsed.newStart,
                        newCount: parsed.newCount, section: parsed.section, lines: lines)
    }

    /// Parses `@@ -a[,b] +c[,d] @@[ section]`; nil when malformed.
    static func parseHunkHeader(_ s: Substring) -> (oldStart: Int, oldCount: Int, newStart: Int, newCount: Int, section: String)? {
        guard s.hasPrefix("@@ -") else { return nil }
        var rest = s.dropFirst(4)
        func range(_ r: inout Substring) -> (Int, Int)? {
            let token = r.prefix(while: { $0.isASCII && ($0.isNumber || $0 == ",") })
            r = r.dropFirst(token.count)
            let parts = token.split(separator: ",", omittingEmptySubsequences: false)
            guard (1...2).contains(parts.count), parts.allSatisfy({ !$0.isEmpty && $0.count <= 9 }),
                  let start = Int(parts[0]) else { return nil }
            let count = parts.count == 2 ? Int(parts[1]) : 1
            guard let count else { return nil }
            return (start, count)
        }
        guard let old = range(&rest), rest.hasPrefix(" +") else { return nil }
        rest = rest.dropFirst(2)
        guard let new = range(&rest), rest.hasPrefix(" @@") else { return nil }
        rest = rest.dropFirst(3)
        let section = rest.trimmingCharacters(in: .whitespaces)
        return (old.0, old.1, new.0, new.1, section)
    }
}

extension LineCursor {
    /// Splits on the LF byte rather than on Characters: "\r\n" is a single Character in Swift and
    /// would otherwise never split.
    static func splitLF(_ text: String) -> [Substring] {
        var result: [Substring] = []
        let utf8 = text.utf8
        var start = utf8.startIndex
        var i = utf8.startIndex
        let lf = UInt8(ascii: "\n")
        while i != utf8.endIndex {
            if utf8[i] == lf {
                result.append(text[start..<i])
                start = utf8.index(after: i)
            }
            i = utf8.index(after: i)
        }
        result.append(text[start..<utf8.endIndex])
        return result
    }
}
