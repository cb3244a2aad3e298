import Crypto
import Foundation

/// Where a configuration value comes from, lowest to highest precedence.
public enum PolicyLayer: String, Sendable, Codable, CaseIterable, Comparable, Hashable, CustomStringConvertible {
    /// Sentinel's built-in defaults (`PolicySchema.defaults`).
    case builtin
    /// Workspace defaults, set by a workspace admin (dashboard / CLI).
    case workspace
    /// Repository settings (dashboard / CLI).
    case repository
    /// The repository's `.sentinel.yml` (head SHA; base SHA for pull requests from forks).
    case repositoryFile = "file"

    /// Precedence: higher wins.
    public var rank: Int {
        switch self {
        case .builtin: return 0
        case .workspace: return 1
        case .repository: return 2
        case .repositoryFile: return 3
        }
    }

    /// Only workspace defaults and repository settings can lock keys.
    public var canLock: Bool { self == .workspace || self == .repository }

    public static func < (a: PolicyLayer, b: PolicyLayer) -> Bool { a.rank < b.rank }

    /// Human name used in messages ("workspace defaults", ".sentinel.yml").
    public var displayName: String {
        switch self {
        case .builtin: return "built-in defaults"
        case .workspace: return "workspace defaults"
        case .repository: return "repository settings"
        case .repositoryFile: return ".sentinel.yml"
        }
    }

    public var description: String { rawValue }
}

/// The values one layer sets, and the keys it locks.
public struct LayerInput: Sendable, Equatable {
    public var layer: PolicyLayer
    /// Key path → value. Only keys the layer sets; absent keys fall through to lower layers.
    public var values: [String: PolicyValue]
    /// Keys this layer locks: no higher layer may change them. Honoured for `.workspace` and
    /// `.repository` only; locks supplied with any other layer are ignored (and reported in
    /// `EffectivePolicy.rejected`).
    public var locks: Set<String>
    /// The immutable policy version this input was read from (settings version id, or the
    /// config file's commit SHA / blob id).
    public var versionID: String?

    public init(layer: PolicyLayer, values: [String: PolicyValue] = [:], locks: Set<String> = [],
                versionID: String? = nil) {
        self.layer = layer
        self.values = values
        self.locks = locks
        self.versionID = versionID
    }
}

/// A higher layer tried to change a key that a lower layer locked. The locked value was kept.
public struct LockViolation: Sendable, Equatable, Hashable, Codable {
    public let key: String
    public let attemptedBy: PolicyLayer
    public let lockedBy: PolicyLayer
    /// The value the higher layer supplied (for maps: the layer's own entries).
    public let attemptedValue: PolicyValue
    /// The value that stays in effect.
    public let lockedValue: PolicyValue

    public init(key: String, attemptedBy: PolicyLayer, lockedBy: PolicyLayer,
                attemptedValue: PolicyValue, lockedValue: PolicyValue) {
        self.key = key
        self.attemptedBy = attemptedBy
        self.lockedBy = lockedBy
        self.attemptedValue = attemptedValue
        self.lockedValue = lockedValue
    }

    /// One line for the run summary / PR comment.
    public var message: String {
        "\(key) is locked by \(lockedBy.displayName); the value \(attemptedValue) from "
            + "\(attemptedBy.displayName) was ignored and \(lockedValue) stays in effect"
    }
}

/// A layer value or lock that the resolver could not use (unknown key, wrong type, lock from a
/// layer that cannot lock). Layers are validated before they are stored, so this is rare; it is
/// reported rather than silently dropped.
public struct RejectedValue: Sendable, Equatable, Hashable, Codable {
    public let key: String
    public let layer: PolicyLayer
    public let value: PolicyValue?
    public let reason: String

    public init(key: String, layer: PolicyLayer, value: PolicyValue?, reason: String) {
        self.key = key
        self.layer = layer
        self.value = value
        self.reason = reason
    }
}

/// One effective key, with where its value came from.
public struct ExplainedEntry: Sendable, Equatable, Codable {
    public let key: String
    public let value: PolicyValue
    /// The highest layer that set the value (for maps: the highest layer that contributed an entry).
    public let source: PolicyLayer
    public let locked: Bool
    public let lockedBy: PolicyLayer?

    public init(key: String, value: PolicyValue, source: PolicyLayer, locked: Bool, lockedBy: PolicyLayer?) {
        self.key = key
        self.value = value
        self.source = source
        self.locked = locked
        self.lockedBy = lockedBy
    }
}

/// The effective configuration of one review, with its provenance.
public struct EffectivePolicy: Sendable, Equatable {
    /// Every schema key → effective value.
    public let values: [String: PolicyValue]
    /// Every schema key, sorted by key.
    public let entries: [ExplainedEntry]
    /// Sorted by key, then attempting layer.
    public let violations: [LockViolation]
    /// Sorted by layer, then key.
    public let rejected: [RejectedValue]
    /// Layer → the policy version id it was read from.
    public let versionIDs: [PolicyLayer: String]

    /// Format tag inside the snapshot.
    public static let snapshotFormat = 1

    public init(values: [String: PolicyValue], entries: [ExplainedEntry], violations: [LockViolation],
                rejected: [RejectedValue] = [], versionIDs: [PolicyLayer: String]) {
        self.values = values
        self.entries = entries
        self.violations = violations
        self.rejected = rejected
        self.versionIDs = versionIDs
    }

    public func entry(for key: String) -> ExplainedEntry? { entries.first { $0.key == key } }

    /// Canonical JSON of the effective values, `{"format":1,"values":{…}}`: keys sorted, no
    /// whitespace. Stored on each run; its SHA-256 is `sha256`. Provenance (layers, versions) is
    /// not part of it: two runs with the same effective configuration have the same hash.
    public func snapshotJSON() -> Data {
        CanonicalJSON.data(.object([
            "format": .int(Self.snapshotFormat),
            "values": .object(values.mapValues(CanonicalJSON.value)),
        ]))
    }

    /// Lowercase hex SHA-256 of `snapshotJSON()`.
    public var sha256: String {
        SHA256.hash(data: snapshotJSON()).map { String(format: "%02x", $0) }.joined()
    }

    /// Reads the values back from a stored snapshot.
    public static func values(fromSnapshot data: Data) throws -> [String: PolicyValue] {
        struct Snapshot: Decodable { let format: Int; let values: [String: PolicyValue] }
        let snapshot = try JSONDecoder().decode(Snapshot.self, from: data)
        guard snapshot.format == snapshotFormat else {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "unknown snapshot format \(snapshot.format)"))
        }
        return snapshot.values
    }

    /// The explain document (`sentinel config explain --json`, the explain API):
    /// `{"entries":[{"key","value","source","locked","locked_by"}…],"rejected":[…],
    ///   "sha256":…,"versions":{layer: id},"violations":[…]}`, canonical key order.
    public func explainJSON(pretty: Bool = true) -> Data {
        CanonicalJSON.data(explainDocument(), pretty: pretty)
    }

    public func explainDocument() -> CanonicalJSON {
        .object([
            "entries": .array(entries.map { e in
                .object([
                    "key": .string(e.key),
                    "value": CanonicalJSON.value(e.value),
                    "source": .string(e.source.rawValue),
                    "locked": .bool(e.locked),
                    "locked_by": e.lockedBy.map { .string($0.rawValue) } ?? .null,
                ])
            }),
            "violations": .array(violations.map { v in
                .object([
                    "key": .string(v.key),
                    "attempted_by": .string(v.attemptedBy.rawValue),
                    "locked_by": .string(v.lockedBy.rawValue),
                    "attempted_value": CanonicalJSON.value(v.attemptedValue),
                    "locked_value": CanonicalJSON.value(v.lockedValue),
                    "message": .string(v.message),
                ])
            }),
            "rejected": .array(rejected.map { r in
                .object([
                    "key": .string(r.key),
                    "layer": .string(r.layer.rawValue),
                    "value": r.value.map(CanonicalJSON.value) ?? .null,
                    "reason": .string(r.reason),
                ])
            }),
            "versions": .object(Dictionary(uniqueKeysWithValues: versionIDs.map { ($0.key.rawValue, CanonicalJSON.string($0.value)) })),
            "sha256": .string(sha256),
        ])
    }

    /// Plain-text explain output: one line per key, `KEY = VALUE  (source[, locked by L])`.
    public func explainText() -> String {
        var lines: [String] = []
        let width = entries.map(\.key.count).max() ?? 0
        for e in entries {
            var line = e.key.padding(toLength: width, withPad: " ", startingAt: 0) + " = \(e.value)  (\(e.source.rawValue)"
            if let l = e.lockedBy { line += ", locked by \(l.rawValue)" }
            line += ")"
            lines.append(line)
        }
        for v in violations { lines.append("lock violation: \(v.message)") }
        for r in rejected { lines.append("ignored \(r.layer.rawValue) value for \(r.key): \(r.reason)") }
        lines.append("sha256 \(sha256)")
        return lines.joined(separator: "\n") + "\n"
    }
}

/// Merges layers into the effective configuration.
///
/// Precedence, lowest to highest: builtin < workspace < repository < repositoryFile. The built-in
/// defaults are always the base (a `.builtin` input, if given, is applied on top of them).
/// Scalars and lists: a higher layer replaces the value. Maps (`review.path_instructions`): merged
/// by key, a higher layer wins per key; an entry whose text is empty removes that glob.
/// A key locked by a layer cannot be changed by any higher layer: the attempt is recorded as a
/// `LockViolation` and the locked value stays. Setting a locked key to the value it already has is
/// not a change and is not reported. Inputs of the same layer are applied in the given order.
public enum PolicyResolver {
    public static func resolve(_ layers: [LayerInput]) -> EffectivePolicy {
        var values = PolicySchema.defaults
        var source: [String: PolicyLayer] = values.mapValues { _ in .builtin }
        var lockedBy: [String: PolicyLayer] = [:]
        var violations: [LockViolation] = []
        var rejected: [RejectedValue] = []
        var versionIDs: [PolicyLayer: String] = [:]

        let ordered = layers.enumerated()
            .sorted { ($0.element.layer.rank, $0.offset) < ($1.element.layer.rank, $1.offset) }
            .map(\.element)

        for input in ordered {
            let layer = input.layer
            if let id = input.versionID { versionIDs[layer] = id }

            for key in input.values.keys.sorted() {
                let value = input.values[key]!
                guard let spec = PolicySchema.spec(for: key) else {
                    rejected.append(RejectedValue(key: key, layer: layer, value: value, reason: "unknown key"))
                    continue
                }
                if let problem = spec.problem(with: value) {
                    rejected.append(RejectedValue(key: key, layer: layer, value: value, reason: problem))
                    continue
                }
                let current = values[key] ?? spec.defaultValue
                let merged = merge(current, value)
                if let locker = lockedBy[key], locker < layer {
                    if merged != current {
                        violations.append(LockViolation(key: key, attemptedBy: layer, lockedBy: locker,
                                                        attemptedValue: value, lockedValue: current))
                    }
                    continue
                }
                values[key] = merged
                if case .map(let entries) = value, entries.isEmpty {
                    // An empty map contributes nothing; the source stays with the lower layer.
                } else {
                    source[key] = layer
                }
            }

            for key in input.locks.sorted() {
                guard layer.canLock else {
                    rejected.append(RejectedValue(key: key, layer: layer, value: nil,
                                                  reason: "locks can only be set in workspace defaults or repository settings"))
                    continue
                }
                guard PolicySchema.spec(for: key) != nil else {
                    rejected.append(RejectedValue(key: key, layer: layer, value: nil, reason: "cannot lock unknown key"))
                    continue
                }
                if lockedBy[key] == nil { lockedBy[key] = layer }
            }
        }

        let entries = PolicySchema.keys.map { spec in
            ExplainedEntry(key: spec.path, value: values[spec.path] ?? spec.defaultValue,
                           source: source[spec.path] ?? .builtin,
                           locked: lockedBy[spec.path] != nil, lockedBy: lockedBy[spec.path])
        }
        violations.sort { ($0.key, $0.attemptedBy.rank) < ($1.key, $1.attemptedBy.rank) }
        rejected.sort { ($0.layer.rank, $0.key) < ($1.layer.rank, $1.key) }
        return EffectivePolicy(values: values, entries: entries, violations: violations,
                               rejected: rejected, versionIDs: versionIDs)
    }

    /// Scalars and lists: replace. Maps: merge by key, higher wins; an empty text removes the entry.
    static func merge(_ lower: PolicyValue, _ higher: PolicyValue) -> PolicyValue {
        guard case .map(var merged) = lower, case .map(let upper) = higher else { return higher }
        for (k, v) in upper {
            if v.isEmpty { merged.removeValue(forKey: k) } else { merged[k] = v }
        }
        return .map(merged)
    }
}

/// An invalid workspace-default or repository-setting value (dashboard / CLI input).
public struct PolicySettingsError: Error, Sendable, Equatable, CustomStringConvertible {
    public let key: String
    public let message: String

    public init(key: String, message: String) {
        self.key = key
        self.message = message
    }

    public var description: String { "\(key): \(message)" }
}

/// Validates workspace defaults and repository settings before a new policy version is stored.
public enum WorkspaceSettingsValidator {
    /// Throws the first problem (in key order) as a `PolicySettingsError` naming the key.
    public static func validate(values: [String: PolicyValue], locks: Set<String>) throws {
        if let first = problems(values: values, locks: locks).first { throw first }
    }

    /// Every problem, sorted by key.
    public static func problems(values: [String: PolicyValue], locks: Set<String>) -> [PolicySettingsError] {
        var out: [PolicySettingsError] = []
        for key in values.keys.sorted() {
            guard let spec = PolicySchema.spec(for: key) else {
                out.append(PolicySettingsError(key: key, message: unknownKeyMessage(key)))
                continue
            }
            if let p = controlCharacterProblem(values[key]!) ?? spec.problem(with: values[key]!) {
                out.append(PolicySettingsError(key: key, message: p))
            } else if key == "ai.providers", case .list(let names)? = values[key],
                      let (index, problem) = names.enumerated().lazy.compactMap({ i, name in RouterPolicy.nameProblem(name).map { (i, $0) } }).first {
                // As `config set` refuses it (the API and the console saved it without a word).
                out.append(PolicySettingsError(key: key, message: names.count > 1 ? "entry \(index + 1): " + problem : problem))
            }
        }
        for key in locks.sorted() where PolicySchema.spec(for: key) == nil {
            out.append(PolicySettingsError(key: key, message: "cannot lock " + unknownKeyMessage(key)))
        }
        return out.sorted { $0.key < $1.key }
    }

    /// The API's rule for free-form values: texts may span lines (tab and line breaks) but hold no
    /// other control characters; a map's keys hold none at all.
    public static func controlCharacterProblem(_ value: PolicyValue) -> String? {
        switch value {
        case .string(let text): return TextRules.controlCharacterProblem(text, multiline: true)
        case .list(let items): return items.lazy.compactMap { TextRules.controlCharacterProblem($0, multiline: true) }.first
        case .map(let map):
            if let key = map.keys.sorted().first(where: { TextRules.controlCharacterProblem($0, multiline: false) != nil }) {
                return "the key \"\(StoredText.singleLine(key))\" must not contain control characters"
            }
            return map.values.lazy.compactMap { TextRules.controlCharacterProblem($0, multiline: true) }.first
        case .bool, .int: return nil
        }
    }

    static func unknownKeyMessage(_ key: String) -> String {
        var m = "unknown key '\(key)'"
        if let s = PolicySchema.suggestion(for: key), s != key { m += " (did you mean '\(s)'?)" }
        return m
    }
}

/// The effective configuration as typed values, for the review engine and the GitHub layer.
public struct ReviewPolicy: Sendable {
    public var reviewEnabled: Bool
    public var autoReviewOnOpen: Bool
    public var autoReviewOnPush: Bool
    public var autoReviewDrafts: Bool
    public var include: [String]
    public var exclude: [String]
    public var instructions: String
    /// Sorted by glob.
    public var pathInstructions: [(glob: String, text: String)]
    public var minSeverity: Severity
    public var maxComments: Int
    /// nil = `fail_on: none` (the check never fails on findings).
    public var failOn: Severity?
    /// `event: request_changes`.
    public var requestChanges: Bool
    public var language: String
    public var builtinChecks: Bool
    /// Provider names in preference order ([] = the workspace's order).
    public var providerPreference: [String]
    /// [] = any model.
    public var allowedModels: [String]

    public init(_ policy: EffectivePolicy) { self.init(values: policy.values) }

    /// Builds the typed view from effective values (e.g. read back from a run's snapshot).
    /// Missing or ill-typed keys take their built-in default.
    public init(values: [String: PolicyValue]) {
        func v(_ key: String) -> PolicyValue {
            let spec = PolicySchema.spec(for: key)!
            if let value = values[key], spec.problem(with: value) == nil { return value }
            return spec.defaultValue
        }
        reviewEnabled = v("review.enabled").boolValue ?? true
        autoReviewOnOpen = v("review.auto_review.on_open").boolValue ?? true
        autoReviewOnPush = v("review.auto_review.on_push").boolValue ?? true
        autoReviewDrafts = v("review.auto_review.drafts").boolValue ?? false
        include = v("review.paths.include").listValue ?? []
        exclude = v("review.paths.exclude").listValue ?? []
        instructions = v("review.instructions").stringValue ?? ""
        pathInstructions = (v("review.path_instructions").mapValue ?? [:])
            .sorted { $0.key < $1.key }
            .map { (glob: $0.key, text: $0.value) }
        minSeverity = Severity(rawValue: v("review.min_severity").stringValue ?? "low") ?? .low
        maxComments = v("review.max_comments").intValue ?? 25
        failOn = Severity(rawValue: v("review.fail_on").stringValue ?? "critical")
        requestChanges = v("review.event").stringValue == "request_changes"
        language = v("review.language").stringValue ?? "en"
        builtinChecks = v("review.builtin_checks").boolValue ?? true
        providerPreference = v("ai.providers").listValue ?? []
        allowedModels = v("ai.allowed_models").listValue ?? []
    }

    /// The built-in defaults.
    public static var defaults: ReviewPolicy { ReviewPolicy(values: PolicySchema.defaults) }

    /// Whether a finding of this severity fails the check run.
    public func fails(_ severity: Severity) -> Bool {
        guard let failOn else { return false }
        return severity >= failOn
    }
}
