/// The schema of Sentinel's review configuration: every key a policy layer may set, its type,
/// default, allowed values and documentation. The `.sentinel.yml` file (`version: 1`), the
/// workspace defaults and repository settings (dashboard / CLI) all use these keys; they are
/// addressed by dotted path (`review.auto_review.on_push`), nested in YAML.

/// A policy value. Encoded as plain JSON (`true`, `25`, `"text"`, `["a"]`, `{"k": "v"}`).
public enum PolicyValue: Sendable, Equatable, Hashable, Codable, CustomStringConvertible {
    case bool(Bool)
    case int(Int)
    case string(String)
    case list([String])
    case map([String: String])

    public var type: PolicyValueType {
        switch self {
        case .bool: return .bool
        case .int: return .int
        case .string: return .string
        case .list: return .list
        case .map: return .map
        }
    }

    public var boolValue: Bool? { if case .bool(let v) = self { return v }; return nil }
    public var intValue: Int? { if case .int(let v) = self { return v }; return nil }
    public var stringValue: String? { if case .string(let v) = self { return v }; return nil }
    public var listValue: [String]? { if case .list(let v) = self { return v }; return nil }
    public var mapValue: [String: String]? { if case .map(let v) = self { return v }; return nil }

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let v = try? c.decode(Bool.self) { self = .bool(v); return }
        if let v = try? c.decode(Int.self) { self = .int(v); return }
        if let v = try? c.decode(String.self) { self = .string(v); return }
        if let v = try? c.decode([String].self) { self = .list(v); return }
        if let v = try? c.decode([String: String].self) { self = .map(v); return }
        throw DecodingError.dataCorruptedError(
            in: c, debugDescription: "expected a boolean, integer, string, list of strings or map of strings")
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .bool(let v): try c.encode(v)
        case .int(let v): try c.encode(v)
        case .string(let v): try c.encode(v)
        case .list(let v): try c.encode(v)
        case .map(let v): try c.encode(v)
        }
    }

    /// Canonical JSON text of this value (see `CanonicalJSON`).
    public var description: String { CanonicalJSON.string(CanonicalJSON.value(self)) }
}

/// The type of a policy key's value.
public enum PolicyValueType: String, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case bool, int, string, list, map

    /// Human wording used in diagnostics ("expected a boolean").
    public var description: String {
        switch self {
        case .bool: return "a boolean (true or false)"
        case .int: return "an integer"
        case .string: return "a string"
        case .list: return "a list of strings"
        case .map: return "a map of glob to string"
        }
    }
}

/// One key of the schema.
public struct PolicyKeySpec: Sendable, Equatable {
    /// Dotted path, e.g. `review.max_comments`.
    public let path: String
    public let type: PolicyValueType
    public let defaultValue: PolicyValue
    /// For enumerations (type `.string`): the accepted values, in documentation order.
    public let allowedValues: [String]?
    /// For integers: the accepted inclusive range.
    public let range: ClosedRange<Int>?
    /// Whether string entries (list items or map keys) are path globs that must be well formed.
    public let isGlob: Bool
    /// One-line documentation.
    public let doc: String

    public init(path: String, type: PolicyValueType, defaultValue: PolicyValue,
                allowedValues: [String]? = nil, range: ClosedRange<Int>? = nil,
                isGlob: Bool = false, doc: String) {
        self.path = path
        self.type = type
        self.defaultValue = defaultValue
        self.allowedValues = allowedValues
        self.range = range
        self.isGlob = isGlob
        self.doc = doc
    }

    /// Short alias for `defaultValue`.
    public var `default`: PolicyValue { defaultValue }

    /// The path's segments (`["review", "auto_review", "on_push"]`).
    public var segments: [String] { path.split(separator: ".").map(String.init) }

    /// Checks a value against this key's type and constraints. Returns a problem description
    /// (suitable for a diagnostic after "KEY: ") or nil when the value is acceptable.
    public func problem(with value: PolicyValue) -> String? {
        guard value.type == type else {
            return "expected \(type), found \(value.type.article)"
        }
        switch value {
        case .int(let n):
            if let range, !range.contains(n) {
                return "\(n) is out of range (\(range.lowerBound)...\(range.upperBound))"
            }
        case .string(let s):
            if let allowed = allowedValues, !allowed.contains(s) {
                return "'\(s)' is not one of \(allowed.joined(separator: ", "))"
            }
        case .list(let items):
            if isGlob {
                for item in items {
                    if let p = PathGlob.problem(item) { return "invalid glob '\(item)': \(p)" }
                }
            }
        case .map(let entries):
            if isGlob {
                for key in entries.keys.sorted() {
                    if let p = PathGlob.problem(key) { return "invalid glob '\(key)': \(p)" }
                }
            }
        case .bool:
            break
        }
        return nil
    }
}

extension PolicyValueType {
    /// "a boolean", "an integer", … (without the parenthesised hint).
    var article: String {
        switch self {
        case .bool: return "a boolean"
        case .int: return "an integer"
        case .string: return "a string"
        case .list: return "a list"
        case .map: return "a map"
        }
    }
}

/// The `.sentinel.yml` schema, version 1.
public enum PolicySchema {
    /// The only supported value of the file's `version` key.
    public static let version = 1

    public static let severityNames: [String] = Severity.allCases.map(\.rawValue)

    /// Every key, sorted by path.
    public static let keys: [PolicyKeySpec] = [
        PolicyKeySpec(path: "review.enabled", type: .bool, defaultValue: .bool(true),
                      doc: "Review this repository at all. false turns Sentinel off (built-in checks included)."),
        PolicyKeySpec(path: "review.auto_review.on_open", type: .bool, defaultValue: .bool(true),
                      doc: "Review automatically when a pull request is opened, reopened or marked ready for review."),
        PolicyKeySpec(path: "review.auto_review.on_push", type: .bool, defaultValue: .bool(true),
                      doc: "Review automatically (incrementally) when new commits are pushed to an open pull request."),
        PolicyKeySpec(path: "review.auto_review.drafts", type: .bool, defaultValue: .bool(false),
                      doc: "Also review draft pull requests automatically."),
        PolicyKeySpec(path: "review.paths.include", type: .list, defaultValue: .list([]), isGlob: true,
                      doc: "Only files matching one of these globs are reviewed ([] = every file)."),
        PolicyKeySpec(path: "review.paths.exclude", type: .list, defaultValue: .list([]), isGlob: true,
                      doc: "Files matching one of these globs are never reviewed (applied after include)."),
        PolicyKeySpec(path: "review.instructions", type: .string, defaultValue: .string(""),
                      doc: "Free-text instructions given to the reviewer for every file."),
        PolicyKeySpec(path: "review.path_instructions", type: .map, defaultValue: .map([:]), isGlob: true,
                      doc: "Extra instructions for files matching a glob (glob → text)."),
        PolicyKeySpec(path: "review.min_severity", type: .string, defaultValue: .string("low"),
                      allowedValues: severityNames,
                      doc: "Findings below this severity are not posted as comments."),
        PolicyKeySpec(path: "review.max_comments", type: .int, defaultValue: .int(25), range: 0...200,
                      doc: "Maximum inline comments per review; the rest go to the summary."),
        PolicyKeySpec(path: "review.fail_on", type: .string, defaultValue: .string("critical"),
                      allowedValues: ["none"] + severityNames,
                      doc: "A finding at or above this severity fails the check run (none = never fail)."),
        PolicyKeySpec(path: "review.event", type: .string, defaultValue: .string("comment"),
                      allowedValues: ["comment", "request_changes"],
                      doc: "How the review is posted: a plain comment review, or request changes when the check fails."),
        PolicyKeySpec(path: "review.language", type: .string, defaultValue: .string("en"),
                      doc: "Language of review comments (BCP 47 tag, e.g. en, de, pt-BR)."),
        PolicyKeySpec(path: "review.builtin_checks", type: .bool, defaultValue: .bool(true),
                      doc: "Run the deterministic built-in checks (leaked secrets, merge-conflict markers, bidirectional control characters)."),
        PolicyKeySpec(path: "ai.providers", type: .list, defaultValue: .list([]),
                      doc: "Provider preference order, by provider name ([] = the workspace's order)."),
        PolicyKeySpec(path: "ai.allowed_models", type: .list, defaultValue: .list([]),
                      doc: "Models the review may use ([] = any model the workspace has configured)."),
    ].sorted { $0.path < $1.path }

    /// Key path → spec.
    public static let specsByPath: [String: PolicyKeySpec] =
        Dictionary(uniqueKeysWithValues: keys.map { ($0.path, $0) })

    /// Built-in defaults, key path → value.
    public static let defaults: [String: PolicyValue] =
        Dictionary(uniqueKeysWithValues: keys.map { ($0.path, $0.defaultValue) })

    public static func spec(for path: String) -> PolicyKeySpec? { specsByPath[path] }

    /// Keys only the workspace and repository settings set: a repository's `.sentinel.yml` is
    /// written by whoever opens the pull request, and the built-in checks for leaked secrets and
    /// conflict markers run on every pull request (SPEC §7) unless an admin turns them off. That
    /// goes for the keys that skip the review as a whole, checks included (`review.enabled`, and
    /// `review.auto_review.on_open`/`on_push`): a file that switched them off turned its own pull
    /// request's failing check into a passing "Review skipped".
    public static let settingsOnlyKeys: Set<String> = [
        "review.builtin_checks", "review.enabled", "review.auto_review.on_open", "review.auto_review.on_push",
    ]

    /// Dotted paths of the mappings that contain keys (`review`, `review.auto_review`, `review.paths`, `ai`).
    public static let sections: Set<String> = {
        var out = Set<String>()
        for key in keys {
            let segs = key.segments
            for i in 1..<segs.count { out.insert(segs[0..<i].joined(separator: ".")) }
        }
        return out
    }()

    /// The closest known key (or section) to a misspelled dotted path, if one is close enough.
    public static func suggestion(for path: String) -> String? {
        let candidates = keys.map(\.path) + sections.sorted() + ["version"]
        let normalizedPath = normalize(path)
        var best: (String, Int)?
        func consider(_ candidate: String, _ distance: Int, limit: Int) {
            guard distance <= limit else { return }
            if best == nil || distance < best!.1 || (distance == best!.1 && candidate < best!.0) {
                best = (candidate, distance)
            }
        }
        // Same path, spelled a bit differently (typo, camelCase, hyphens).
        for c in candidates {
            let d = editDistance(normalizedPath, normalize(c))
            consider(c, d, limit: min(3, c.count / 4))
        }
        if let best { return best.0 }
        // Right key at the wrong level (`min_severity:` at the top instead of under `review:`).
        let last = normalize(String(path.split(separator: ".").last ?? ""))
        for c in candidates {
            let cl = normalize(String(c.split(separator: ".").last ?? ""))
            let d = editDistance(last, cl)
            consider(c, d, limit: max(0, min(2, cl.count / 5)))
        }
        return best?.0
    }

    private static func normalize(_ s: String) -> String {
        String(s.lowercased().filter { $0 != "_" && $0 != "-" })
    }

    /// Levenshtein distance on unicode scalars (inputs are short key names).
    static func editDistance(_ a: String, _ b: String) -> Int {
        let x = Array(a.unicodeScalars), y = Array(b.unicodeScalars)
        if x.isEmpty { return y.count }
        if y.isEmpty { return x.count }
        var prev = Array(0...y.count)
        var cur = [Int](repeating: 0, count: y.count + 1)
        for i in 1...x.count {
            cur[0] = i
            for j in 1...y.count {
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1))
            }
            swap(&prev, &cur)
        }
        return prev[y.count]
    }
}
