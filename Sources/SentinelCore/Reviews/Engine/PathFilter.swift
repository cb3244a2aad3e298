import Foundation

/// A compiled path glob with gitignore-like semantics, because that is how people already write
/// path patterns in repository config: `*` stays within a directory, `**` spans directories,
/// a pattern without `/` matches a file or directory name anywhere, a trailing `/` means
/// "this directory and everything in it", and a pattern that matches a directory also matches
/// everything below it. Supports `?`, `{a,b}` (nestable), `[abc]`, `[a-z]`, `[!x]`/`[^x]` and `\` escapes.
public struct Glob: Sendable, Hashable, CustomStringConvertible {
    public let pattern: String
    private let alternatives: [Alternative]

    private struct Alternative: Sendable, Hashable {
        var segments: [Segment]
        /// Only a proper directory prefix of the path may match (pattern ended in `/`).
        var directoryOnly: Bool
    }

    private enum Segment: Sendable, Hashable {
        case globstar
        case pattern([Token])
    }

    private enum Token: Sendable, Hashable {
        case literal(Character)
        case any
        case star
        case set([ClassItem], negated: Bool)
    }

    private enum ClassItem: Sendable, Hashable {
        case char(Character)
        case range(Character, Character)
    }

    public init(_ pattern: String) {
        self.pattern = pattern
        var alternatives: [Alternative] = []
        for expanded in Glob.expandBraces(pattern, limit: 256) {
            var p = Substring(expanded)
            var directoryOnly = false
            while p.hasSuffix("/") && p.count > 1 { p = p.dropLast(); directoryOnly = true }
            var anchored = false
            if p.hasPrefix("/") { p = p.drop(while: { $0 == "/" }); anchored = true }
            while p.hasPrefix("./") { p = p.dropFirst(2); anchored = true }
            if p.isEmpty { continue }
            var segments: [Segment] = []
            if !anchored && !p.contains("/") { segments.append(.globstar) }
            for part in p.split(separator: "/", omittingEmptySubsequences: true) {
                if part == "**" {
                    if segments.last != .globstar { segments.append(.globstar) }
                } else {
                    segments.append(.pattern(Glob.tokenize(part)))
                }
            }
            alternatives.append(Alternative(segments: segments, directoryOnly: directoryOnly))
        }
        self.alternatives = alternatives
    }

    public var description: String { pattern }

    /// Whether `path` (repository-relative, `/`-separated) is matched by this glob.
    public func matches(_ path: String) -> Bool {
        matches(segments: Glob.pathSegments(path))
    }

    static func pathSegments(_ path: String) -> [[Character]] {
        var p = Substring(path)
        while p.hasPrefix("./") { p = p.dropFirst(2) }
        return p.split(separator: "/", omittingEmptySubsequences: true).map { Array($0) }
    }

    func matches(segments path: [[Character]]) -> Bool {
        for alt in alternatives {
            // The path itself, then each directory containing it (gitignore: matching a directory
            // covers its contents).
            let upper = alt.directoryOnly ? path.count - 1 : path.count
            if upper < 1 { continue }
            for length in stride(from: upper, through: 1, by: -1) {
                if Glob.match(alt.segments[...], path[..<length]) { return true }
            }
        }
        return false
    }

    private static func match(_ pattern: ArraySlice<Segment>, _ path: ArraySlice<[Character]>) -> Bool {
        guard let first = pattern.first else { return path.isEmpty }
        switch first {
        case .globstar:
            let rest = pattern.dropFirst()
            if rest.isEmpty { return true }
            var p = path
            while true {
                if match(rest, p) { return true }
                if p.isEmpty { return false }
                p = p.dropFirst()
            }
        case .pattern(let tokens):
            guard let segment = path.first else { return false }
            return matchSegment(tokens, segment) && match(pattern.dropFirst(), path.dropFirst())
        }
    }

    /// Wildcard match of one path segment (no `/` inside), with star backtracking.
    private static func matchSegment(_ tokens: [Token], _ s: [Character]) -> Bool {
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
                case .set(let items, let negated):
                    if classContains(items, s[i]) != negated { t += 1; i += 1; continue }
                }
            }
            if starT >= 0 {
                t = starT + 1
                starI += 1
                i = starI
                continue
            }
            return false
        }
        while t < tokens.count, tokens[t] == .star { t += 1 }
        return t == tokens.count
    }

    private static func classContains(_ items: [ClassItem], _ c: Character) -> Bool {
        for item in items {
            switch item {
            case .char(let x): if x == c { return true }
            case .range(let lo, let hi): if lo <= c && c <= hi { return true }
            }
        }
        return false
    }

    private static func tokenize(_ part: Substring) -> [Token] {
        let chars = Array(part)
        var tokens: [Token] = []
        var i = 0
        while i < chars.count {
            let c = chars[i]
            switch c {
            case "\\":
                if i + 1 < chars.count { tokens.append(.literal(chars[i + 1])); i += 2 } else { tokens.append(.literal("\\")); i += 1 }
            case "*":
                if tokens.last != .star { tokens.append(.star) }
                i += 1
            case "?":
                tokens.append(.any); i += 1
            case "[":
                if let (token, next) = parseClass(chars, from: i) {
                    tokens.append(token); i = next
                } else {
                    tokens.append(.literal("[")); i += 1
                }
            default:
                tokens.append(.literal(c)); i += 1
            }
        }
        return tokens
    }

    private static func parseClass(_ chars: [Character], from start: Int) -> (Token, Int)? {
        var i = start + 1
        var negated = false
        if i < chars.count, chars[i] == "!" || chars[i] == "^" { negated = true; i += 1 }
        var items: [ClassItem] = []
        var first = true
        while i < chars.count {
            var c = chars[i]
            if c == "]" && !first { return (.set(items, negated: negated), i + 1) }
            first = false
            if c == "\\", i + 1 < chars.count { i += 1; c = chars[i] }
            if i + 2 < chars.count, chars[i + 1] == "-", chars[i + 2] != "]" {
                items.append(.range(c, chars[i + 2])); i += 3
            } else {
                items.append(.char(c)); i += 1
            }
        }
        return nil
    }

    /// Expands `{a,b}` alternations (nested allowed); braces without a top-level comma stay literal.
    static func expandBraces(_ pattern: String, limit: Int) -> [String] {
        let chars = Array(pattern)
        var depth = 0
        var open = -1
        var commas: [Int] = []
        var i = 0
        while i < chars.count {
            let c = chars[i]
            if c == "\\" { i += 2; continue }
            if c == "{" {
                if depth == 0 { open = i; commas = [] }
                depth += 1
            } else if c == "}" && depth > 0 {
                depth -= 1
                if depth == 0 {
                    if !commas.isEmpty {
                        let prefix = String(chars[..<open])
                        let suffix = String(chars[(i + 1)...])
                        var bounds = [open] + commas + [i]
                        var results: [String] = []
                        bounds.sort()
                        for k in 0..<(bounds.count - 1) {
                            let option = String(chars[(bounds[k] + 1)..<bounds[k + 1]])
                            for expanded in expandBraces(prefix + option + suffix, limit: limit) {
                                results.append(expanded)
                                if results.count >= limit { return results }
                            }
                        }
                        return results
                    }
                    open = -1
                }
            } else if c == "," && depth == 1 {
                commas.append(i)
            }
            i += 1
        }
        return [pattern]
    }
}

/// Why a file is not sent to the model. One enum for filters, the chunker and coverage reporting,
/// so the summary can say exactly what was left out and why.
public enum SkipReason: String, Sendable, Hashable, Codable, CaseIterable, Comparable {
    case lockFile, vendored, generated, minified, binary, excluded, notIncluded, overBudget, deleted

    /// The human label used in summaries and check output.
    public var label: String {
        switch self {
        case .lockFile: return "lock files"
        case .vendored: return "vendored"
        case .generated: return "generated"
        case .minified: return "minified"
        case .binary: return "binary"
        case .excluded: return "excluded by config"
        case .notIncluded: return "not in include paths"
        case .overBudget: return "over budget"
        case .deleted: return "deleted"
        }
    }

    private var order: Int { SkipReason.allCases.firstIndex(of: self)! }
    public static func < (a: SkipReason, b: SkipReason) -> Bool { a.order < b.order }
}

/// The filter's verdict on one file; a skip carries its reason so coverage can be reported.
public enum FileDecision: Sendable, Hashable {
    case review
    case skip(SkipReason)

    public var skipReason: SkipReason? {
        if case .skip(let reason) = self { return reason }
        return nil
    }
}

/// Decides which files of a change go to the model. Lock files, vendored code, generated and
/// minified files burn tokens and attract noise without anything a reviewer can act on, so they
/// are skipped by default; the repository's include/exclude globs narrow or widen the rest.
///
/// Order of decisions: deleted, binary (never reviewable), excluded by config, not in include
/// paths, then the default skips (lock, vendored, generated, minified).
public struct PathFilter: Sendable {
    public let include: [Glob]
    public let exclude: [Glob]
    public let defaultSkips: Bool

    /// Lock-file names matched anywhere in the tree.
    public static let lockFilePatterns = [
        "package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml", "Cargo.lock", "Gemfile.lock",
        "poetry.lock", "composer.lock", "go.sum", "Package.resolved", "packages.lock.json", "gradle.lockfile",
        "bun.lockb", "*.lock",
    ]
    public static let vendoredPatterns = [
        "vendor/", "third_party/", "third-party/", "node_modules/", "Pods/", "bower_components/",
    ]
    public static let generatedPatterns = [
        "*.pb.go", "*_pb2.py", "*_pb2.pyi", "*_pb2_grpc.py", "*.pb.swift", "*.pb.cc", "*.pb.h", "*.generated.*", "*.g.dart",
    ]
    public static let minifiedPatterns = ["*.min.js", "*.min.mjs", "*.min.css"]

    /// Markers that tools put at the top of files they generate.
    public static let generatedMarkers = ["@generated", "DO NOT EDIT"]
    /// A JS/CSS line longer than this (in Unicode scalars) means a minified bundle.
    public static let minifiedLineLength = 500

    private static let lockGlobs = lockFilePatterns.map(Glob.init)
    private static let vendoredGlobs = vendoredPatterns.map(Glob.init)
    private static let generatedGlobs = generatedPatterns.map(Glob.init)
    private static let minifiedGlobs = minifiedPatterns.map(Glob.init)

    public init(include: [String] = [], exclude: [String] = [], defaultSkips: Bool = true) {
        self.include = include.filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }.map(Glob.init)
        self.exclude = exclude.filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }.map(Glob.init)
        self.defaultSkips = defaultSkips
    }

    public func decision(for file: DiffFile) -> FileDecision {
        if file.status == .deleted { return .skip(.deleted) }
        if file.isBinary { return .skip(.binary) }
        let segments = Glob.pathSegments(file.path)
        if exclude.contains(where: { $0.matches(segments: segments) }) { return .skip(.excluded) }
        if !include.isEmpty && !include.contains(where: { $0.matches(segments: segments) }) { return .skip(.notIncluded) }
        guard defaultSkips else { return .review }
        if let reason = PathFilter.defaultSkipReason(file, segments: segments) { return .skip(reason) }
        return .review
    }

    /// Whether user include/exclude globs leave the file in scope at all (ignoring default skips);
    /// built-in checks use this, because a secret in a lock or vendored file is still leaked.
    public func isInScope(_ file: DiffFile) -> Bool {
        switch decision(for: file) {
        case .review: return true
        case .skip(let reason):
            switch reason {
            case .lockFile, .vendored, .generated, .minified: return true
            default: return false
            }
        }
    }

    static func defaultSkipReason(_ file: DiffFile, segments: [[Character]]) -> SkipReason? {
        if lockGlobs.contains(where: { $0.matches(segments: segments) }) { return .lockFile }
        if vendoredGlobs.contains(where: { $0.matches(segments: segments) }) { return .vendored }
        if generatedGlobs.contains(where: { $0.matches(segments: segments) }) || hasGeneratedMarker(file) {
            return .generated
        }
        if minifiedGlobs.contains(where: { $0.matches(segments: segments) }) || hasMinifiedLines(file) {
            return .minified
        }
        return nil
    }

    /// Looks at the top of the new file (first 10 lines, added or context) for a generator's marker.
    private static func hasGeneratedMarker(_ file: DiffFile) -> Bool {
        for hunk in file.hunks where hunk.newStart <= 10 {
            for line in hunk.lines where line.kind != .removed {
                guard let n = line.newLine, n <= 10 else { break }
                if generatedMarkers.contains(where: { line.text.contains($0) }) { return true }
            }
        }
        return false
    }

    private static func hasMinifiedLines(_ file: DiffFile) -> Bool {
        let ext = (file.path as NSString).pathExtension.lowercased()
        guard ["js", "mjs", "cjs", "css"].contains(ext) else { return false }
        for hunk in file.hunks {
            for line in hunk.lines where line.kind == .added && line.text.utf8.count > minifiedLineLength {
                if line.text.unicodeScalars.count > minifiedLineLength { return true }
            }
        }
        return false
    }
}
