import CYaml
import Foundation
import Yams

/// Severity of a configuration diagnostic.
public enum DiagnosticSeverity: String, Sendable, Codable, Hashable {
    case error, warning
}

/// A problem found in a configuration file, with a 1-based position.
public struct ConfigDiagnostic: Sendable, Equatable, Hashable, Codable, CustomStringConvertible {
    public let file: String
    public let line: Int
    public let column: Int
    public let severity: DiagnosticSeverity
    public let message: String
    /// Dotted key path the diagnostic is about, when there is one.
    public let key: String?

    public init(file: String, line: Int, column: Int, severity: DiagnosticSeverity, message: String, key: String? = nil) {
        self.file = file
        self.line = line
        self.column = column
        self.severity = severity
        self.message = message
        self.key = key
    }

    /// `FILE:LINE:COLUMN: error|warning: message` (compiler style, as `sentinel config validate` prints).
    public var formatted: String { "\(file):\(line):\(column): \(severity.rawValue): \(message)" }
    public var description: String { formatted }
}

/// The result of parsing a `.sentinel.yml`.
public struct ParsedConfig: Sendable, Equatable {
    /// Values of the keys that were present and valid (key path → value).
    public let values: [String: PolicyValue]
    /// Sorted by position.
    public let diagnostics: [ConfigDiagnostic]
    /// The file's `version`, when present and an integer.
    public let version: Int?

    public init(values: [String: PolicyValue], diagnostics: [ConfigDiagnostic], version: Int?) {
        self.values = values
        self.diagnostics = diagnostics
        self.version = version
    }

    public var errors: [ConfigDiagnostic] { diagnostics.filter { $0.severity == .error } }
    public var warnings: [ConfigDiagnostic] { diagnostics.filter { $0.severity == .warning } }
    public var hasErrors: Bool { diagnostics.contains { $0.severity == .error } }

    /// The file as a policy layer. A file with any error is not applied at all (the review runs on
    /// the other layers and the diagnostics are posted on the pull request); warnings do not
    /// prevent it. Files cannot lock keys.
    public func layerInput(versionID: String?) -> LayerInput {
        LayerInput(layer: .repositoryFile, values: hasErrors ? [:] : values, locks: [], versionID: versionID)
    }
}

/// Parses and validates `.sentinel.yml`. Never throws; every problem becomes a diagnostic.
public enum RepositoryConfigParser {
    /// The conventional file name, at the repository root.
    public static let fileName = ".sentinel.yml"
    /// Larger files are refused with one error (a configuration file is a few hundred bytes).
    public static let maxBytes = 256 * 1024
    /// At most this many alias references (`*name`) are accepted: nested aliases expand
    /// exponentially ("billion laughs"), and a configuration file needs few, if any.
    public static let maxAliases = 20

    /// The commit whose `.sentinel.yml` configures a pull request's review: the head SHA, except
    /// for a pull request from a fork, where it is the base SHA, so that an outside contributor
    /// cannot change the policy that reviews their own pull request.
    public static func revisionToRead(headSHA: String, baseSHA: String, isFromFork: Bool) -> String {
        isFromFork ? baseSHA : headSHA
    }

    /// `sentinel config validate FILE`: the diagnostics of `data`, read from `path`, as
    /// `FILE:LINE:COLUMN: error|warning: message` lines (in position order) and the exit status, 1
    /// when there is any error, else 0.
    public static func validate(data: Data, path: String) -> (lines: [String], exitCode: Int32) {
        let parsed = parse(data: data, file: path)
        return (parsed.diagnostics.map(\.formatted), parsed.hasErrors ? 1 : 0)
    }

    /// `settings`: the text is the workspace's or a repository's settings (`sentinel config set`),
    /// where the keys a pull request's own file may not change (`review.enabled`, …) are taken.
    public static func parse(_ yaml: String, file: String = ".sentinel.yml", settings: Bool = false) -> ParsedConfig {
        var parser = Walker(file: file, settings: settings)
        // A byte-order mark (Windows editors save UTF-8 with one) is not part of the YAML; editors
        // do not show it, so positions count from after it.
        parser.run(yaml.hasPrefix("\u{FEFF}") ? String(yaml.dropFirst()) : yaml)
        let sorted = parser.diagnostics.enumerated().sorted {
            ($0.element.line, $0.element.column, $0.offset) < ($1.element.line, $1.element.column, $1.offset)
        }.map(\.element)
        return ParsedConfig(values: parser.values, diagnostics: sorted, version: parser.version)
    }

    /// Parses raw bytes (invalid UTF-8 is an error at the first bad byte).
    public static func parse(data: Data, file: String = ".sentinel.yml") -> ParsedConfig {
        if data.count > maxBytes {
            return ParsedConfig(values: [:], diagnostics: [
                ConfigDiagnostic(file: file, line: 1, column: 1, severity: .error,
                                 message: "file is too large (\(data.count) bytes; the limit is \(maxBytes))"),
            ], version: nil)
        }
        if let text = String(validatingUTF8Bytes: data) {
            return parse(text, file: file)
        }
        let (line, column) = position(ofInvalidUTF8In: data)
        return ParsedConfig(values: [:], diagnostics: [
            ConfigDiagnostic(file: file, line: line, column: column, severity: .error,
                             message: "the file is not valid UTF-8"),
        ], version: nil)
    }

    private static func position(ofInvalidUTF8In data: Data) -> (Int, Int) {
        let bytes = [UInt8](data)
        var line = 1, column = 1, i = 0
        while i < bytes.count {
            let b = bytes[i]
            let len: Int
            switch b {
            case 0x00...0x7F: len = 1
            case 0xC2...0xDF: len = 2
            case 0xE0...0xEF: len = 3
            case 0xF0...0xF4: len = 4
            default: return (line, column)
            }
            if i + len > bytes.count { return (line, column) }
            let chunk = Array(bytes[i..<(i + len)])
            if String(validatingUTF8Bytes: Data(chunk)) == nil { return (line, column) }
            if b == 0x0A { line += 1; column = 1 } else { column += 1 }
            i += len
        }
        return (line, column)
    }
}

extension String {
    fileprivate init?(validatingUTF8Bytes data: Data) {
        var iterator = data.makeIterator()
        var decoder = UTF8()
        var scalars = String.UnicodeScalarView()
        loop: while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let s): scalars.append(s)
            case .emptyInput: break loop
            case .error: return nil
            }
        }
        self = String(scalars)
    }
}

// MARK: - Walker

private struct Walker {
    let file: String
    /// Settings, not a pull request's file: the settings-only keys are taken.
    let settings: Bool
    var values: [String: PolicyValue] = [:]
    var diagnostics: [ConfigDiagnostic] = []
    var version: Int?

    init(file: String, settings: Bool = false) {
        self.file = file
        self.settings = settings
    }

    mutating func run(_ yaml: String) {
        if yaml.utf8.count > RepositoryConfigParser.maxBytes {
            error(nil as Pos?, "file is too large (\(yaml.utf8.count) bytes; the limit is \(RepositoryConfigParser.maxBytes))")
            return
        }
        if let (message, pos) = AliasScanner.problem(in: yaml) {
            error(pos, message)
            return
        }
        let root: Yams.Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch {
            report(error, in: yaml)
            return
        }
        guard let root else { return }                     // empty file, or only comments
        switch root {
        case .mapping(let mapping):
            var sawVersion = false
            for (keyNode, valueNode) in mapping {
                if keyNode.scalar?.string == "version" { sawVersion = true }
                walk(keyNode, valueNode, prefix: "")
            }
            if !sawVersion {
                warning(root.mark, "missing 'version: \(PolicySchema.version)'; assuming version \(PolicySchema.version)", key: "version")
            }
        case .scalar(let s) where isNull(s):
            return                                          // "---" or "~" alone: an empty document
        default:
            error(root.mark, "expected a mapping at the top level (version: \(PolicySchema.version), review: …), found \(describe(root))")
        }
    }

    // MARK: Structure

    mutating func walk(_ keyNode: Yams.Node, _ valueNode: Yams.Node, prefix: String) {
        guard case .scalar(let keyScalar) = keyNode else {
            warning(keyNode.mark, "ignoring a non-string key (\(describe(keyNode))) in \(prefix.isEmpty ? "the top level" : "'\(prefix)'")")
            return
        }
        let name = keyScalar.string
        let path = prefix.isEmpty ? name : prefix + "." + name
        if name.contains(".") {
            // Keys are nested in the file; a dotted key would be a second way to write one.
            var message = "unknown key '\(path)'"
            if PolicySchema.spec(for: path) != nil || PolicySchema.sections.contains(path) {
                message += " (write it nested: '\(name.split(separator: ".").joined(separator: ":' then '"))')"
            }
            warning(keyNode.mark, message, key: path)
            return
        }

        if path == "version" {
            checkVersion(valueNode)
            return
        }
        if !settings, PolicySchema.settingsOnlyKeys.contains(path) {
            warning(keyNode.mark, "\(path) is ignored here: only the workspace or repository settings change it, "
                    + "not a pull request's own file", key: path)
            return
        }
        if let spec = PolicySchema.spec(for: path) {
            if let value = convert(valueNode, spec: spec) { values[path] = value }
            return
        }
        if PolicySchema.sections.contains(path) {
            switch valueNode {
            case .mapping(let mapping):
                for (k, v) in mapping { walk(k, v, prefix: path) }
            case .scalar(let s) where isNull(s):
                break                                       // "review:" with nothing under it
            default:
                error(valueNode.mark, "\(path): expected a mapping, found \(describe(valueNode))", key: path)
            }
            return
        }
        var message = "unknown key '\(path)'"
        if let suggestion = PolicySchema.suggestion(for: path), suggestion != path {
            message += " (did you mean '\(suggestion)'?)"
        }
        warning(keyNode.mark, message, key: path)
    }

    mutating func checkVersion(_ node: Yams.Node) {
        guard case .scalar(let s) = node, isPlain(s), let n = Int(s.string) else {
            error(node.mark, "version: expected an integer, found \(describe(node))", key: "version")
            return
        }
        version = n
        if n != PolicySchema.version {
            error(node.mark, "unsupported version \(n) (this Sentinel reads version \(PolicySchema.version))", key: "version")
        }
    }

    // MARK: Values

    /// Converts a node for a known key, reporting type and constraint errors at the value's position.
    mutating func convert(_ node: Yams.Node, spec: PolicyKeySpec) -> PolicyValue? {
        let path = spec.path
        switch spec.type {
        case .bool:
            guard case .scalar(let s) = node, isPlain(s), let b = boolWords[s.string] else {
                return typeError(node, spec)
            }
            return .bool(b)
        case .int:
            guard case .scalar(let s) = node, isPlain(s), let n = Int(s.string) else {
                return typeError(node, spec)
            }
            if let range = spec.range, !range.contains(n) {
                error(node.mark, "\(path): \(n) is out of range (\(range.lowerBound)...\(range.upperBound))", key: path)
                return nil
            }
            return .int(n)
        case .string:
            guard case .scalar(let s) = node, !isNull(s) else { return typeError(node, spec) }
            if let allowed = spec.allowedValues, !allowed.contains(s.string) {
                var m = "\(path): '\(s.string)' is not one of \(allowed.joined(separator: ", "))"
                if let close = allowed.first(where: { $0.lowercased() == s.string.lowercased().trimmingCharacters(in: .whitespaces) }) {
                    m += " (did you mean '\(close)'?)"
                }
                error(node.mark, m, key: path)
                return nil
            }
            return .string(s.string)
        case .list:
            guard case .sequence(let seq) = node else { return typeError(node, spec, hint: "write [] for an empty list") }
            var items: [String] = []
            var ok = true
            for (index, item) in seq.enumerated() {
                guard case .scalar(let s) = item, !isNull(s) else {
                    error(item.mark, "\(path)[\(index)]: expected a string, found \(describe(item))", key: path)
                    ok = false
                    continue
                }
                if spec.isGlob, let p = PathGlob.problem(s.string) {
                    error(item.mark, "\(path)[\(index)]: invalid glob '\(s.string)': \(p)", key: path)
                    ok = false
                    continue
                }
                // A provider is named by its kind or its id; anything else (`claude`, a typo) matched
                // no provider and changed the order without a word.
                if path == "ai.providers", let problem = RouterPolicy.nameProblem(s.string) {
                    warning(item.mark, "\(path)[\(index)]: " + problem, key: path)
                }
                items.append(s.string)
            }
            return ok ? .list(items) : nil
        case .map:
            guard case .mapping(let mapping) = node else { return typeError(node, spec, hint: "write {} for an empty map") }
            var entries: [String: String] = [:]
            var ok = true
            for (k, v) in mapping {
                guard case .scalar(let ks) = k, !isNull(ks) else {
                    error(k.mark, "\(path): expected a glob as the key, found \(describe(k))", key: path)
                    ok = false
                    continue
                }
                if spec.isGlob, let p = PathGlob.problem(ks.string) {
                    error(k.mark, "\(path): invalid glob '\(ks.string)': \(p)", key: path)
                    ok = false
                    continue
                }
                guard case .scalar(let vs) = v, !isNull(vs) else {
                    error(v.mark, "\(path).\(ks.string): expected a string, found \(describe(v))", key: path)
                    ok = false
                    continue
                }
                entries[ks.string] = vs.string
            }
            return ok ? .map(entries) : nil
        }
    }

    mutating func typeError(_ node: Yams.Node, _ spec: PolicyKeySpec, hint: String? = nil) -> PolicyValue? {
        var m = "\(spec.path): expected \(spec.type), found \(describe(node))"
        if let allowed = spec.allowedValues { m = "\(spec.path): expected one of \(allowed.joined(separator: ", ")), found \(describe(node))" }
        if let hint, case .scalar(let s) = node, isNull(s) { m += "; \(hint)" }
        error(node.mark, m, key: spec.path)
        return nil
    }

    // MARK: Scalars

    /// YAML 1.1 booleans, as Yams resolves them.
    let boolWords: [String: Bool] = [
        "true": true, "True": true, "TRUE": true, "yes": true, "Yes": true, "YES": true,
        "on": true, "On": true, "ON": true,
        "false": false, "False": false, "FALSE": false, "no": false, "No": false, "NO": false,
        "off": false, "Off": false, "OFF": false,
    ]

    /// An unquoted scalar without an explicit `!!str` tag: may be read as a boolean or a number.
    func isPlain(_ s: Yams.Node.Scalar) -> Bool {
        (s.style == .plain || s.style == .any) && s.tag.rawValue != Yams.Tag.Name.str.rawValue
    }

    func isNull(_ s: Yams.Node.Scalar) -> Bool {
        guard isPlain(s) else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(s.string)
    }

    func describe(_ node: Yams.Node) -> String {
        switch node {
        case .mapping: return "a map"
        case .sequence: return "a list"
        case .alias: return "an alias"
        case .scalar(let s):
            if isNull(s) { return "null" }
            let quoted = "'\(s.string.count > 40 ? String(s.string.prefix(40)) + "…" : s.string)'"
            guard isPlain(s) else { return "the string \(quoted)" }
            if boolWords[s.string] != nil { return "the boolean \(s.string)" }
            if Int(s.string) != nil { return "the integer \(s.string)" }
            if Double(s.string) != nil { return "the number \(s.string)" }
            return "the string \(quoted)"
        }
    }

    // MARK: Reporting

    mutating func error(_ mark: Yams.Mark?, _ message: String, key: String? = nil) {
        error(Pos(mark), message, key: key)
    }

    /// A warning in a pull request's file (the review goes on with what it understood); in settings
    /// an error, as the API's `PUT …/settings` answers 400: a version saved without a misspelled key
    /// replaced the settings it meant to change. A missing `version` stays a warning.
    mutating func warning(_ mark: Yams.Mark?, _ message: String, key: String? = nil) {
        diagnostics.append(ConfigDiagnostic(file: file, line: Pos(mark)?.line ?? 1, column: Pos(mark)?.column ?? 1,
                                            severity: settings && key != "version" ? .error : .warning, message: message, key: key))
    }

    mutating func error(_ pos: Pos?, _ message: String, key: String? = nil) {
        diagnostics.append(ConfigDiagnostic(file: file, line: pos?.line ?? 1, column: pos?.column ?? 1,
                                            severity: .error, message: message, key: key))
    }

    mutating func report(_ thrown: Swift.Error, in yaml: String) {
        guard let yamlError = thrown as? YamlError else {
            error(nil as Pos?, "invalid YAML: \(thrown)")
            return
        }
        switch yamlError {
        case .scanner(let context, let problem, let mark, _),
             .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            var m = "invalid YAML: \(problem)"
            if problem.hasPrefix("Maximum nesting level reached") {
                // libyaml's own wording names its C function; it refuses more than 1,000 levels.
                m = "invalid YAML: nested too deeply (more than 1,000 levels of lists and mappings)"
            } else if let context, context.text == "expected a single document in the stream" {
                m = "invalid YAML: expected a single document, but found another one ('---')"
            } else if let context {
                m += " (\(context.text) at line \(context.mark.line), column \(context.mark.column))"
            }
            if problem.contains("undefined alias") || (problem.contains("did not find expected alphabetic or numeric character") && context?.text.contains("alias") == true) {
                m += "; a value starting with '*' must be quoted, e.g. \"*.md\""
            }
            error(mark, m)
        case .reader(let problem, let offset, let value, _):
            let mark = offset.map { position(ofCharacterOffset: $0, in: yaml) }
            var m = "invalid YAML: \(problem)"
            if value >= 0 { m += " (#x\(String(value, radix: 16, uppercase: true)))" }
            error(mark, m)
        case .duplicatedKeysInMapping(let duplicates, let context):
            let names = duplicates.map { "'\($0)'" }.joined(separator: ", ")
            guard context.mark.line > 0, let first = Pos(context.mark) else {
                error(nil as Pos?, "invalid YAML: duplicate key \(names)")
                return
            }
            // Yams reports the first occurrence; point at the repeated one when it can be found.
            if let name = duplicates.first, let second = repeatedKey(name, after: first, in: yaml) {
                error(second, "invalid YAML: duplicate key \(names) (first defined at line \(first.line))")
            } else {
                error(first, "invalid YAML: duplicate key \(names)")
            }
        default:
            error(nil as Pos?, "invalid YAML: \(yamlError)")
        }
    }

    /// The next line after `first` that has `name:` at the same column (block mappings).
    func repeatedKey(_ name: String, after first: Pos, in yaml: String) -> Pos? {
        let lines = yaml.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
        guard first.line < lines.count else { return nil }
        for n in first.line..<lines.count {
            let scalars = Array(lines[n].unicodeScalars)
            let col = first.column - 1
            guard col < scalars.count, scalars[..<col].allSatisfy({ $0 == " " || $0 == "-" }) else { continue }
            let rest = String(String.UnicodeScalarView(scalars[col...]))
            for candidate in [name, "\"\(name)\"", "'\(name)'"] where rest.hasPrefix(candidate) {
                if rest.dropFirst(candidate.count).drop(while: { $0 == " " }).first == ":" {
                    return Pos(line: n + 1, column: first.column)
                }
            }
        }
        return nil
    }

    func position(ofCharacterOffset offset: Int, in yaml: String) -> Pos {
        var line = 1, column = 1, n = 0
        for c in yaml {
            if n >= offset { break }
            if c == "\n" || c == "\r\n" { line += 1; column = 1 } else { column += c.unicodeScalars.count }
            n += 1
        }
        return Pos(line: line, column: column)
    }
}

/// A 1-based position.
struct Pos {
    let line: Int
    let column: Int
    init(line: Int, column: Int) { self.line = line; self.column = column }
    init?(_ mark: Yams.Mark?) {
        guard let mark else { return nil }
        self.init(line: max(1, mark.line), column: max(1, mark.column))
    }
}

/// The YAML alias references (`*name`) of a document, counted before it is composed, so that one
/// built to expand exponentially ("billion laughs": nested aliases, collection-valued mapping keys
/// that the YAML library hashes whole) is refused cheaply. Counted from libyaml's own parse events,
/// which never expand an alias: a scan of the text by hand guessed where tokens and quoted strings
/// start, and each wrong guess skipped live YAML (an anchor or `?` before a quote, a plain scalar
/// ending in `- |`, a BOM inside a flow collection) or counted emphasis as aliases.
enum AliasScanner {
    /// Refuses an admin's YAML file (the configuration, a plans or price file) holding more alias
    /// references than `.sentinel.yml` may: nested aliases expand exponentially while the file is
    /// read, before any key is checked (a 650-byte file held every command for minutes and GBs).
    static func check(_ yaml: String, file: String) throws {
        if let (message, pos) = problem(in: yaml) { throw ConfigError("\(file):\(pos.line): \(message)") }
    }

    /// At most this many nodes may come from aliases, counted as expanded (an alias of a list of
    /// 10,000 items is 10,001): 19 aliases of a long anchored list, stacked, made 7 million nodes
    /// for the YAML library to copy and hash.
    static let maxExpandedNodes = 100_000

    /// Why the document may not be read, and where: more than `RepositoryConfigParser.maxAliases`
    /// alias references, or aliases that expand to more than `maxExpandedNodes` nodes. Nil
    /// otherwise, and when it stops parsing first (composing it then reports the error, with what
    /// was read before it within both limits).
    static func problem(in yaml: String) -> (message: String, pos: Pos)? {
        let limit = RepositoryConfigParser.maxAliases
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else { return nil }
        defer { yaml_parser_delete(&parser) }
        let bytes = Array(yaml.utf8)
        return bytes.withUnsafeBufferPointer { buffer -> (String, Pos)? in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            var count = 0
            var expanded = 0
            // Nodes of each anchor as expanded, and of the collections still open (with their anchors).
            var sizes: [String: Int] = [:]
            var open: [(anchor: String?, nodes: Int)] = []
            func name(_ anchor: UnsafeMutablePointer<yaml_char_t>?) -> String? { anchor.map { String(cString: $0) } }
            func add(_ nodes: Int) { if !open.isEmpty { open[open.count - 1].nodes += nodes } }
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser, &event) == 1 else { return nil }
                defer { yaml_event_delete(&event) }
                let pos = Pos(line: Int(event.start_mark.line) + 1, column: Int(event.start_mark.column) + 1)
                switch event.type {
                case YAML_ALIAS_EVENT:
                    count += 1
                    if count > limit {
                        return ("too many aliases (\(count) or more '*name' references; at most \(limit) are accepted)", pos)
                    }
                    let nodes = name(event.data.alias.anchor).flatMap { sizes[$0] } ?? 1
                    expanded += nodes
                    if expanded > maxExpandedNodes {
                        return ("its aliases expand to more than \(maxExpandedNodes) nodes; write the values out, or alias smaller ones", pos)
                    }
                    add(nodes)
                case YAML_SCALAR_EVENT:
                    if let anchor = name(event.data.scalar.anchor) { sizes[anchor] = 1 }
                    add(1)
                case YAML_SEQUENCE_START_EVENT:
                    open.append((name(event.data.sequence_start.anchor), 1))
                case YAML_MAPPING_START_EVENT:
                    open.append((name(event.data.mapping_start.anchor), 1))
                case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                    guard let closed = open.popLast() else { break }
                    if let anchor = closed.anchor { sizes[anchor] = closed.nodes }
                    add(closed.nodes)
                case YAML_STREAM_END_EVENT:
                    return nil
                default:
                    break
                }
            }
        }
    }
}
