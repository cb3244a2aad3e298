/// Path globs used by `review.paths.include`, `review.paths.exclude` and `review.path_instructions`.
///
/// Paths are repository-relative with `/` separators (`Sources/App/main.swift`).
/// - A pattern without `/` matches the file name in any directory: `*.md`, `Package.resolved`.
/// - A pattern with `/` matches the whole path from the repository root: `docs/**`,
///   `Sources/**/*.swift`. A leading `/` is ignored; a trailing `/` means "everything below"
///   (`vendor/` = `vendor/**`).
/// - `*` matches any characters except `/`; `?` one character except `/`; `**` as a whole path
///   segment matches zero or more directories; `[abc]`, `[a-z]`, `[!abc]` match one character
///   of a set; `{a,b}` matches either alternative; `\` escapes the next character.
public struct PathGlob: Sendable, Hashable, CustomStringConvertible {
    public let pattern: String
    private let alternatives: [Alternative]

    /// Largest number of alternatives brace expansion may produce.
    public static let maxAlternatives = 256

    public var description: String { pattern }

    /// Parses a pattern; throws `PathGlobError` when it is malformed.
    public init(_ pattern: String) throws {
        if let p = PathGlob.problem(pattern) { throw PathGlobError(pattern: pattern, message: p) }
        self.pattern = pattern
        var body = Array(pattern)
        while body.first == "/" { body.removeFirst() }
        if body.last == "/" { body.append(contentsOf: "**") }
        let expanded = (try? PathGlob.expandBraces(body)) ?? [body]
        self.alternatives = expanded.map {
            Alternative(basenameOnly: !PathGlob.containsUnescapedSlash($0), segments: PathGlob.segments(of: $0))
        }
    }

    /// Whether the pattern is well formed; returns the problem or nil.
    public static func problem(_ pattern: String) -> String? {
        if pattern.isEmpty { return "empty pattern" }
        if pattern.unicodeScalars.contains(where: { $0.value < 0x20 }) { return "control character in pattern" }
        let chars = Array(pattern)
        var i = 0
        var braceDepth = 0
        while i < chars.count {
            let c = chars[i]
            switch c {
            case "\\":
                if i + 1 >= chars.count { return "trailing backslash" }
                i += 1
            case "[":
                guard let end = classEnd(chars, from: i) else { return "unclosed '['" }
                i = end
            case "{":
                braceDepth += 1
            case "}":
                if braceDepth == 0 { return "unmatched '}'" }
                braceDepth -= 1
            default:
                break
            }
            i += 1
        }
        if braceDepth > 0 { return "unclosed '{'" }
        var body = chars
        while body.first == "/" { body.removeFirst() }
        if body.isEmpty { return "pattern matches nothing" }
        do { _ = try expandBraces(body) } catch { return "too many {…} alternatives (more than \(maxAlternatives))" }
        return nil
    }

    /// A repository-relative path split into its segments once, to test it against many globs
    /// (a file against the engine's few dozen default skip patterns).
    public struct Path: Sendable {
        fileprivate let segments: [[Character]]

        public init(_ path: String) {
            var p = Substring(path)
            while p.first == "/" { p = p.dropFirst() }
            segments = p.split(separator: "/", omittingEmptySubsequences: true).map { Array($0) }
        }
    }

    /// Whether a repository-relative path matches.
    public func matches(_ path: String) -> Bool {
        matches(Path(path))
    }

    public func matches(_ path: Path) -> Bool {
        let pathSegments = path.segments
        if pathSegments.isEmpty { return false }
        for alt in alternatives {
            if alt.basenameOnly {
                if let last = pathSegments.last, alt.segments.count == 1,
                   PathGlob.matchSegment(alt.segments[0], last) { return true }
            } else if PathGlob.matchPath(alt.segments, pathSegments) {
                return true
            }
        }
        return false
    }

    // MARK: - Implementation

    private enum Token: Hashable {
        case literal(Character)
        case any          // ?
        case star         // *
        case set(ranges: [ClosedRange<Character>], negated: Bool)
    }

    private struct Alternative: Hashable {
        let basenameOnly: Bool
        let segments: [Segment]
    }

    private enum Segment: Hashable {
        case globstar
        case tokens([Token])
    }

    private static func containsUnescapedSlash(_ chars: [Character]) -> Bool {
        var i = 0
        while i < chars.count {
            if chars[i] == "\\" { i += 2; continue }
            if chars[i] == "[", let end = classEnd(chars, from: i) { i = end + 1; continue }
            if chars[i] == "/" { return true }
            i += 1
        }
        return false
    }

    /// Index of the `]` closing the class that opens at `start`, or nil.
    private static func classEnd(_ chars: [Character], from start: Int) -> Int? {
        var j = start + 1
        if j < chars.count, chars[j] == "!" || chars[j] == "^" { j += 1 }
        if j < chars.count, chars[j] == "]" { j += 1 }   // a leading ] is literal
        while j < chars.count {
            if chars[j] == "\\" { j += 2; continue }
            if chars[j] == "]" { return j }
            j += 1
        }
        return nil
    }

    private struct TooManyAlternatives: Error {}

    /// Expands `{a,b}` (nested allowed) into plain patterns; escapes are kept for `segments(of:)`.
    private static func expandBraces(_ chars: [Character]) throws -> [[Character]] {
        // Find the first top-level unescaped '{' outside a character class.
        var i = 0
        var open: Int?
        while i < chars.count {
            let c = chars[i]
            if c == "\\" { i += 2; continue }
            if c == "[", let end = classEnd(chars, from: i) { i = end + 1; continue }
            if c == "{" { open = i; break }
            i += 1
        }
        guard let start = open else { return [chars] }
        // Find its matching '}' and the top-level commas.
        var depth = 0
        var j = start
        var commas: [Int] = []
        var close: Int?
        while j < chars.count {
            let c = chars[j]
            if c == "\\" { j += 2; continue }
            if c == "[", let end = classEnd(chars, from: j) { j = end + 1; continue }
            if c == "{" { depth += 1 } else if c == "}" {
                depth -= 1
                if depth == 0 { close = j; break }
            } else if c == ",", depth == 1 { commas.append(j) }
            j += 1
        }
        guard let end = close else { return [chars] }
        let prefix = Array(chars[..<start])
        let suffix = Array(chars[(end + 1)...])
        var bounds = [start] + commas + [end]
        var options: [[Character]] = []
        for k in 0..<(bounds.count - 1) {
            options.append(Array(chars[(bounds[k] + 1)..<bounds[k + 1]]))
        }
        bounds.removeAll()
        var out: [[Character]] = []
        let expandedSuffix = try expandBraces(suffix)
        for option in options {
            for o in try expandBraces(option) {
                for s in expandedSuffix {
                    out.append(prefix + o + s)
                    if out.count > maxAlternatives { throw TooManyAlternatives() }
                }
            }
        }
        return out
    }

    private static func segments(of chars: [Character]) -> [Segment] {
        var result: [Segment] = []
        var current: [Character] = []
        var i = 0
        func flush() {
            if current == ["*", "*"] { result.append(.globstar) } else if !current.isEmpty {
                result.append(.tokens(tokens(of: current)))
            }
            current = []
        }
        while i < chars.count {
            let c = chars[i]
            if c == "\\", i + 1 < chars.count { current.append(c); current.append(chars[i + 1]); i += 2; continue }
            if c == "[", let end = classEnd(chars, from: i) { current.append(contentsOf: chars[i...end]); i = end + 1; continue }
            if c == "/" { flush(); i += 1; continue }
            current.append(c)
            i += 1
        }
        flush()
        // Collapse consecutive globstars.
        var collapsed: [Segment] = []
        for s in result {
            if case .globstar = s, let last = collapsed.last, case .globstar = last { continue }
            collapsed.append(s)
        }
        return collapsed
    }

    private static func tokens(of chars: [Character]) -> [Token] {
        var out: [Token] = []
        var i = 0
        while i < chars.count {
            let c = chars[i]
            switch c {
            case "\\":
                if i + 1 < chars.count { out.append(.literal(chars[i + 1])); i += 2 } else { i += 1 }
                continue
            case "?":
                out.append(.any)
            case "*":
                if case .star = out.last {} else { out.append(.star) }
            case "[":
                if let end = classEnd(chars, from: i) {
                    var j = i + 1
                    var negated = false
                    if chars[j] == "!" || chars[j] == "^" { negated = true; j += 1 }
                    var members: [Character] = []
                    while j < end {
                        if chars[j] == "\\", j + 1 < end { members.append(chars[j + 1]); j += 2 } else { members.append(chars[j]); j += 1 }
                    }
                    var ranges: [ClosedRange<Character>] = []
                    var k = 0
                    while k < members.count {
                        if k + 2 < members.count, members[k + 1] == "-", members[k] <= members[k + 2] {
                            ranges.append(members[k]...members[k + 2]); k += 3
                        } else {
                            ranges.append(members[k]...members[k]); k += 1
                        }
                    }
                    out.append(.set(ranges: ranges, negated: negated))
                    i = end + 1
                    continue
                }
                out.append(.literal(c))
            default:
                out.append(.literal(c))
            }
            i += 1
        }
        return out
    }

    private static func matchSegment(_ segment: Segment, _ name: [Character]) -> Bool {
        switch segment {
        case .globstar:
            return true
        case .tokens(let tokens):
            return matchTokens(tokens, name)
        }
    }

    /// Wildcard match with backtracking on the last star (linear-ish, no recursion).
    private static func matchTokens(_ tokens: [Token], _ s: [Character]) -> Bool {
        var t = 0, i = 0
        var starT = -1, starI = 0
        while i < s.count {
            if t < tokens.count {
                switch tokens[t] {
                case .star:
                    starT = t; starI = i; t += 1
                    continue
                case .any:
                    t += 1; i += 1
                    continue
                case .literal(let c):
                    if c == s[i] { t += 1; i += 1; continue }
                case .set(let ranges, let negated):
                    let inSet = ranges.contains { $0.contains(s[i]) }
                    if inSet != negated { t += 1; i += 1; continue }
                }
            }
            if starT >= 0 {
                t = starT + 1; starI += 1; i = starI
                continue
            }
            return false
        }
        while t < tokens.count, case .star = tokens[t] { t += 1 }
        return t == tokens.count
    }

    /// Segment-level match with `**`, memoized over (pattern index, path index).
    private static func matchPath(_ pattern: [Segment], _ path: [[Character]]) -> Bool {
        var memo = [Int: Bool]()
        func go(_ p: Int, _ s: Int) -> Bool {
            let key = p * (path.count + 1) + s
            if let v = memo[key] { return v }
            let result: Bool
            if p == pattern.count {
                result = s == path.count
            } else if case .globstar = pattern[p] {
                // Zero or more directories; a trailing ** must match at least one segment.
                if p == pattern.count - 1 {
                    result = s < path.count
                } else {
                    result = (s...path.count).contains { go(p + 1, $0) }
                }
            } else if s < path.count, matchSegment(pattern[p], path[s]) {
                result = go(p + 1, s + 1)
            } else {
                result = false
            }
            memo[key] = result
            return result
        }
        return go(0, 0)
    }
}

public struct PathGlobError: Error, Sendable, Equatable, CustomStringConvertible {
    public let pattern: String
    public let message: String
    public var description: String { "invalid glob '\(pattern)': \(message)" }
}
