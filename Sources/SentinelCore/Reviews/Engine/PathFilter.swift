import Foundation

public enum SkipReason: String, Sendable, Hashable, Codable, CaseIterable, Comparable {
    case lockFile, vendored, generated, minified, binary, noChangedLines, diffUnavailable, excluded, notIncluded, overBudget, deleted
    /// In scope, but the model call of its part failed: the model never read it.
    case aiFailed

    /// The human label used in summaries and check output.
    public var label: String {
        switch self {
        case .lockFile: return "lock files"
        case .vendored: return "vendored"
        case .generated: return "generated"
        case .minified: return "minified"
        case .binary: return "binary"
        case .noChangedLines: return "no changed lines (renamed only)"
        case .diffUnavailable: return "diff not available from the platform"
        case .excluded: return "excluded by config"
        case .notIncluded: return "not in include paths"
        case .overBudget: return "over budget"
        case .deleted: return "deleted"
        case .aiFailed: return "AI review failed"
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
    public let include: [PathGlob]
    public let exclude: [PathGlob]
    public let defaultSkips: Bool

    /// Lock-file names matched anywhere in the tree.
    public static let lockFilePatterns = [
        "package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml", "Cargo.lock", "Gemfile.lock",
        "poetry.lock", "composer.lock", "go.sum", "Package.resolved", "packages.lock.json", "gradle.lockfile",
        "bun.lockb", "*.lock",
    ]
    public static let vendoredPatterns = [
        "**/vendor/**", "**/third_party/**", "**/third-party/**", "**/node_modules/**", "**/Pods/**", "**/bower_components/**",
    ]
    public static let generatedPatterns = [
        "*.pb.go", "*_pb2.py", "*_pb2.pyi", "*_pb2_grpc.py", "*.pb.swift", "*.pb.cc", "*.pb.h", "*.generated.*", "*.g.dart",
    ]
    public static let minifiedPatterns = ["*.min.js", "*.min.mjs", "*.min.css"]

    /// Markers that tools put at the top of files they generate.
    public static let generatedMarkers = ["@generated", "DO NOT EDIT"]
    /// A JS/CSS line longer than this (in Unicode scalars) means a minified bundle.
    public static let minifiedLineLength = 500

    private static let lockGlobs = compile(lockFilePatterns)
    private static let vendoredGlobs = compile(vendoredPatterns)
    private static let generatedGlobs = compile(generatedPatterns)
    private static let minifiedGlobs = compile(minifiedPatterns)

    /// Patterns that do not parse are dropped here; configuration validation reports them.
    static func compile(_ patterns: [String]) -> [PathGlob] {
        patterns.filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }.compactMap { try? PathGlob($0) }
    }

    public init(include: [String] = [], exclude: [String] = [], defaultSkips: Bool = true) {
        self.include = PathFilter.compile(include)
        self.exclude = PathFilter.compile(exclude)
        self.defaultSkips = defaultSkips
    }

    public func decision(for file: DiffFile) -> FileDecision {
        if file.status == .deleted { return .skip(.deleted) }
        if file.isBinary { return .skip(.binary) }
        if let reason = file.unreviewable { return .skip(reason) }
        let path = PathGlob.Path(file.path)
        if exclude.contains(where: { $0.matches(path) }) { return .skip(.excluded) }
        if !include.isEmpty && !include.contains(where: { $0.matches(path) }) { return .skip(.notIncluded) }
        guard defaultSkips else { return .review }
        if let reason = PathFilter.defaultSkipReason(file) { return .skip(reason) }
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

    static func defaultSkipReason(_ file: DiffFile) -> SkipReason? {
        let path = PathGlob.Path(file.path)
        if lockGlobs.contains(where: { $0.matches(path) }) { return .lockFile }
        if vendoredGlobs.contains(where: { $0.matches(path) }) { return .vendored }
        if generatedGlobs.contains(where: { $0.matches(path) }) || hasGeneratedMarker(file) {
            return .generated
        }
        if minifiedGlobs.contains(where: { $0.matches(path) }) || hasMinifiedLines(file) {
            return .minified
        }
        return nil
    }

    /// Looks at the top of the new file (first 10 lines, added or context) for a generator's marker.
    private static func hasGeneratedMarker(_ file: DiffFile) -> Bool {
        for hunk in file.hunks where hunk.newStart <= 10 {
            for line in hunk.lines where line.kind != .removed {
                guard let n = line.newLine, n <= 10 else { break }
                if generatedMarkers.contains(where: { line.text.containsBytes($0) }) { return true }
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
