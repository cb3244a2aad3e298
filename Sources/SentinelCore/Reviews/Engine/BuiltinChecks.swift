import Foundation

/// Deterministic checks that run on every pull request, with or without an AI provider, because
/// what they catch (a committed credential, an unresolved merge conflict, text whose display
/// order hides what the code does) is costly and certain to recognise without a model. Only
/// added lines are inspected: the author is answerable for what the change introduces.
public enum BuiltinChecks {
    /// The secret detectors. Named rules (rather than one big regex) so each finding can say what
    /// kind of credential leaked and how to rotate it, and so each fires at most once per line.
    public enum SecretRule: String, Sendable, Hashable, CaseIterable {
        case awsAccessKeyID, awsSecretAccessKey, githubToken, gitlabToken, slackToken, googleAPIKey, stripeLiveKey,
             privateKey, genericSecret

        var title: String {
            switch self {
            case .awsAccessKeyID: return "AWS access key ID committed"
            case .awsSecretAccessKey: return "AWS secret access key committed"
            case .githubToken: return "GitHub token committed"
            case .gitlabToken: return "GitLab access token committed"
            case .slackToken: return "Slack token committed"
            case .googleAPIKey: return "Google API key committed"
            case .stripeLiveKey: return "Stripe live key committed"
            case .privateKey: return "Private key committed"
            case .genericSecret: return "Hard-coded secret committed"
            }
        }

        var what: String {
            switch self {
            case .awsAccessKeyID: return "an AWS access key ID"
            case .awsSecretAccessKey: return "an AWS secret access key"
            case .githubToken: return "a GitHub token"
            case .gitlabToken: return "a GitLab personal access token"
            case .slackToken: return "a Slack token"
            case .googleAPIKey: return "a Google API key"
            case .stripeLiveKey: return "a Stripe live-mode key"
            case .privateKey: return "the start of a private key block"
            case .genericSecret: return "a hard-coded secret"
            }
        }
    }

    /// One detected secret on a line. `value` is the secret itself and must never leave the engine.
    struct SecretMatch: Sendable, Hashable {
        var rule: SecretRule
        var value: String
        /// The variable or key the value is assigned to, when known.
        var name: String?
    }

    public static let secretCategory = "security"
    public static let conflictCategory = "correctness"
    public static let bidiCategory = "security"
    /// Minimum length and Shannon entropy (bits per character) of a quoted literal assigned to a
    /// secret-looking name before it is reported.
    public static let genericMinimumLength = 16
    public static let genericMinimumEntropy = 3.5

    public static func run(on files: [DiffFile]) -> [Finding] {
        var findings: [Finding] = []
        for file in files where file.status != .deleted && !file.isBinary {
            findings += distinct(secretFindings(file) + conflictFindings(file) + bidiFindings(file))
        }
        return findings
    }

    /// The same problem twice in one file (a second conflict block ending `>>>>>>> feature`, one
    /// secret on two lines) had one fingerprint, and the ranker kept one of them as a duplicate:
    /// the second and later get fingerprints of their own, in the order they appear (the first
    /// keeps its fingerprint, so earlier reviews still recognise it).
    static func distinct(_ findings: [Finding]) -> [Finding] {
        var seen: [String: Int] = [:]
        return findings.map { finding in
            let count = seen[finding.fingerprint, default: 0]
            seen[finding.fingerprint] = count + 1
            guard count > 0 else { return finding }
            var again = finding
            again.fingerprint = Fingerprint.of(path: finding.path, category: finding.category, title: finding.title,
                                               anchorText: finding.fingerprint + "#\(count + 1)")
            return again
        }
    }

    // MARK: Secrets

    private static func secretFindings(_ file: DiffFile) -> [Finding] {
        var findings: [Finding] = []
        for hunk in file.hunks {
            for line in hunk.lines where line.kind == .added {
                guard let number = line.newLine else { continue }
                for match in secretMatches(in: line.text) {
                    let title = match.rule == .genericSecret && match.name != nil
                        ? "Hard-coded secret assigned to \(MarkdownCode.span(match.name!))" : match.rule.title
                    var body = "This line adds \(match.rule.what)"
                    if match.rule != .privateKey { body += " (\(MarkdownCode.span(redact(match.value))))" }
                    body += ". Anyone who can read the repository or its history can use it. "
                    body += "Revoke or rotate it now, remove it from the change, and load it at run time from a secret "
                    body += "store or an environment variable. Deleting it in a later commit is not enough: it stays in the git history."
                    findings.append(Finding(path: file.path, line: number, side: .right, severity: .critical,
                                            category: secretCategory, title: title, body: body, source: .builtin,
                                            fingerprint: Fingerprint.of(path: file.path, category: secretCategory,
                                                                        title: title, anchorText: line.text)))
                }
            }
        }
        return findings
    }

    /// Masks a secret for display: at most the first 4 and last 4 characters, fewer for short values.
    public static func redact(_ secret: String) -> String {
        let chars = Array(secret)
        if chars.count >= 20 { return String(chars.prefix(4)) + "…" + String(chars.suffix(4)) }
        if chars.count >= 12 { return String(chars.prefix(2)) + "…" + String(chars.suffix(2)) }
        return "…"
    }

    /// All secrets on one line, at most one per rule. The generic rule is suppressed when a
    /// specific rule already matched (it would be the same credential twice).
    static func secretMatches(in text: String) -> [SecretMatch] {
        let b = Array(text.utf8)
        guard b.count >= 16 else { return [] }
        var found: [SecretRule: SecretMatch] = [:]
        func record(_ rule: SecretRule, _ range: Range<Int>, name: String? = nil) {
            if found[rule] == nil {
                found[rule] = SecretMatch(rule: rule, value: String(decoding: b[range], as: UTF8.self), name: name)
            }
        }

        var i = 0
        while i < b.count {
            let c = b[i]
            let boundary = i == 0 || !isWordByte(b[i - 1])
            switch c {
            case UInt8(ascii: "A") where boundary:
                if has(b, i, "AKIA") || has(b, i, "ASIA") {
                    let n = run(b, from: i + 4, max: 17, isUpperOrDigit)
                    if n == 16, i + 20 == b.count || !isWordByte(b[i + 20]) { record(.awsAccessKeyID, i..<(i + 20)) }
                } else if has(b, i, "AIza") {
                    let n = run(b, from: i + 4, max: 36, isKeyByte)
                    if n == 35, i + 39 == b.count || !isAlnum(b[i + 39]) { record(.googleAPIKey, i..<(i + 39)) }
                }
            case UInt8(ascii: "g") where boundary:
                if has(b, i, "ghp_") || has(b, i, "gho_") || has(b, i, "ghu_") || has(b, i, "ghs_") || has(b, i, "ghr_") {
                    let n = run(b, from: i + 4, max: 255, isAlnum)
                    if n >= 36 { record(.githubToken, i..<(i + 4 + n)) }
                } else if has(b, i, "github_pat_") {
                    let n = run(b, from: i + 11, max: 255) { isAlnum($0) || $0 == UInt8(ascii: "_") }
                    if n >= 82 { record(.githubToken, i..<(i + 11 + n)) }
                } else if has(b, i, "glpat-") {
                    let n = run(b, from: i + 6, max: 255, isKeyByte)
                    if n >= 20 { record(.gitlabToken, i..<(i + 6 + n)) }
                }
            case UInt8(ascii: "x") where boundary:
                if has(b, i, "xox"), i + 4 < b.count, "abprs".utf8.contains(b[i + 3]), b[i + 4] == UInt8(ascii: "-") {
                    let n = run(b, from: i + 5, max: 255) { isAlnum($0) || $0 == UInt8(ascii: "-") }
                    if n >= 10 { record(.slackToken, i..<(i + 5 + n)) }
                }
            case UInt8(ascii: "s"), UInt8(ascii: "r"):
                if boundary, has(b, i + 1, "k_live_") {
                    let n = run(b, from: i + 8, max: 255, isAlnum)
                    if n >= 16 { record(.stripeLiveKey, i..<(i + 8 + n)) }
                }
            case UInt8(ascii: "-"):
                if has(b, i, "-----BEGIN "), let end = privateKeyHeaderEnd(b, from: i + 11) {
                    record(.privateKey, i..<end)
                }
            default:
                break
            }
            i += 1
        }

        for assignment in assignments(b) {
            let name = normalizedName(assignment.name)
            let value = b[assignment.value]
            if (name.containsBytes("awssecret") || name.containsBytes("secretaccesskey")), value.count == 40,
               value.allSatisfy({ isAlnum($0) || $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "=") }),
               entropy(value) >= 3.0 {
                record(.awsSecretAccessKey, assignment.value, name: assignment.name)
            }
            if found.isEmpty, assignment.quoted, isSecretName(name), looksLikeSecretValue(value) {
                record(.genericSecret, assignment.value, name: assignment.name)
            }
        }
        if found.count > 1 { found[.genericSecret] = nil }
        return SecretRule.allCases.compactMap { found[$0] }
    }

    private static let privateKeyKinds = ["", "RSA ", "EC ", "OPENSSH ", "DSA ", "PGP ", "ENCRYPTED "]

    private static func privateKeyHeaderEnd(_ b: [UInt8], from start: Int) -> Int? {
        for kind in privateKeyKinds {
            for tail in ["PRIVATE KEY-----", "PRIVATE KEY BLOCK-----"] {
                let marker = kind + tail
                if has(b, start, marker) { return start + marker.utf8.count }
            }
        }
        return nil
    }

    private struct Assignment {
        var name: String
        var value: Range<Int>
        var quoted: Bool
    }

    /// `name = value`, `name: value`, `name := value`, `name => value`, including quoted keys
    /// (`"password": "…"`) and subscripts (`env["TOKEN"] = "…"`). Comparisons are not assignments.
    private static func assignments(_ b: [UInt8]) -> [Assignment] {
        var result: [Assignment] = []
        var i = 0
        var inQuote: UInt8? = nil
        while i < b.count {
            let c = b[i]
            if let q = inQuote {
                if c == UInt8(ascii: "\\") { i += 2; continue }
                if c == q { inQuote = nil }
                i += 1
                continue
            }
            var opLength = 0
            if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") || c == UInt8(ascii: "`") {
                // Skip literals that are not values (keys are read backwards from the operator).
                inQuote = c
                i += 1
                continue
            }
            if c == UInt8(ascii: ":") {
                let next = i + 1 < b.count ? b[i + 1] : 0
                if next == UInt8(ascii: "=") { opLength = 2 }
                else if next == UInt8(ascii: ":") || next == UInt8(ascii: "/") || (i > 0 && b[i - 1] == UInt8(ascii: ":")) { opLength = 0 }
                else { opLength = 1 }
            } else if c == UInt8(ascii: "=") {
                let next = i + 1 < b.count ? b[i + 1] : 0
                let prev = i > 0 ? b[i - 1] : 0
                if next == UInt8(ascii: "=") || "=!<>:+-*/%&|^~".utf8.contains(prev) { opLength = 0 }
                else if next == UInt8(ascii: ">") { opLength = 2 }
                else { opLength = 1 }
            }
            guard opLength > 0 else { i += 1; continue }

            // Name: skip spaces, closing quotes and brackets, then identifier characters.
            var j = i - 1
            while j >= 0, b[j] == 32 || b[j] == 9 { j -= 1 }
            var skipped = 0
            while j >= 0, skipped < 3, "\"'`]".utf8.contains(b[j]) { j -= 1; skipped += 1 }
            let nameEnd = j + 1
            while j >= 0, isAlnum(b[j]) || "_.-$@".utf8.contains(b[j]) { j -= 1 }
            let nameStart = j + 1

            // Value.
            var k = i + opLength
            while k < b.count, b[k] == 32 || b[k] == 9 { k += 1 }
            if k + 1 < b.count, "bruf@".utf8.contains(b[k]), isQuote(b[k + 1]) { k += 1 }
            if nameStart < nameEnd, k < b.count {
                let name = String(decoding: b[nameStart..<nameEnd], as: UTF8.self)
                if isQuote(b[k]) {
                    let q = b[k]
                    var m = k + 1
                    while m < b.count, b[m] != q { m += b[m] == UInt8(ascii: "\\") ? 2 : 1 }
                    if m < b.count {
                        result.append(Assignment(name: name, value: (k + 1)..<m, quoted: true))
                        i = m + 1
                        continue
                    }
                } else {
                    // At most `maxUnquotedValue` bytes are read: `=` and `:` do not end a value, so on a
                    // line of `a=a=a=…` each operator read the rest of the line (minutes for 40 KB).
                    // A value that long is no secret of the kinds looked for.
                    var m = k
                    while m < b.count, m - k <= Self.maxUnquotedValue, !(b[m] == 32 || b[m] == 9 || ",;)}]".utf8.contains(b[m]) || isQuote(b[m])) { m += 1 }
                    if m > k, m - k <= Self.maxUnquotedValue { result.append(Assignment(name: name, value: k..<m, quoted: false)) }
                }
            }
            i += opLength
        }
        return result
    }

    /// The longest unquoted value read as a possible secret.
    static let maxUnquotedValue = 512

    private static let secretNameWords = ["password", "passwd", "secret", "token", "apikey", "accesskey", "privatekey",
                                          "authkey", "credential"]
    /// Names that merely describe a secret (`token_url`, `password_field`) rather than hold one.
    private static let descriptiveSuffixes = ["url", "uri", "path", "file", "filename", "name", "type", "field", "label",
                                              "header", "prefix", "env", "var", "length", "hint", "regex", "pattern",
                                              "policy", "endpoint", "id", "count", "limit", "ttl", "expiry", "expires"]

    private static func normalizedName(_ name: String) -> String {
        String(name.lowercased().unicodeScalars.filter { !"_-.$@".unicodeScalars.contains($0) })
    }

    private static func isSecretName(_ normalized: String) -> Bool {
        guard secretNameWords.contains(where: { normalized.containsBytes($0) }) else { return false }
        return !descriptiveSuffixes.contains(where: { normalized.hasSuffix($0) })
    }

    private static let placeholderWords = ["changeme", "change_me", "change-me", "placeholder", "example", "your_", "your-",
                                           "yourtoken", "yoursecret", "yourpassword", "dummy", "redacted", "xxxx", "****",
                                           "todo", "replace", "${", "{{", "%s", "%(", "<", ">", "process.env", "os.environ",
                                           "getenv"]

    private static func looksLikeSecretValue(_ value: ArraySlice<UInt8>) -> Bool {
        guard value.count >= genericMinimumLength else { return false }
        if value.contains(where: { $0 == 32 || $0 == 9 }) { return false }
        let text = String(decoding: value, as: UTF8.self)
        let lower = text.lowercased()
        if placeholderWords.contains(where: { lower.containsBytes($0) }) { return false }
        if text.hasPrefix("$") || lower.hasPrefix("env:") { return false }
        // ENVIRONMENT_VARIABLE_NAMES and dotted.config.keys are references, not secrets.
        if value.allSatisfy({ isUpperOrDigit($0) || $0 == UInt8(ascii: "_") }) { return false }
        if value.allSatisfy({ ($0 >= 97 && $0 <= 122) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") }) { return false }
        return entropy(value) >= genericMinimumEntropy
    }

    /// Shannon entropy in bits per byte.
    static func entropy<C: Collection>(_ bytes: C) -> Double where C.Element == UInt8 {
        guard !bytes.isEmpty else { return 0 }
        var counts = [Int](repeating: 0, count: 256)
        for byte in bytes { counts[Int(byte)] += 1 }
        let total = Double(bytes.count)
        var h = 0.0
        for count in counts where count > 0 {
            let p = Double(count) / total
            h -= p * log2(p)
        }
        return h
    }

    // MARK: Bidirectional control characters

    /// One finding per added line holding bidirectional control characters, naming each (as a
    /// code point: the character itself would reorder the comment too) and where it is.
    private static func bidiFindings(_ file: DiffFile) -> [Finding] {
        var findings: [Finding] = []
        let title = "Bidirectional control character in the code"
        for hunk in file.hunks {
            for line in hunk.lines where line.kind == .added {
                guard let number = line.newLine else { continue }
                let controls = BidiControls.find(in: line.text)
                guard !controls.isEmpty else { continue }
                let named = controls.prefix(5).map { control in
                    "\(BidiControls.codePoint(control.scalar)) \(BidiControls.names[control.scalar.value]!) (column \(control.column))"
                }
                let list = controls.count > named.count ? named.joined(separator: ", ") + " and \(controls.count - named.count) more"
                    : named.dropLast().joined(separator: ", ") + (named.count > 1 ? " and " : "") + named.last!
                let body = "This line contains \(list). Bidirectional control characters change the order in which the text "
                    + "around them is displayed but not the order in which a compiler or interpreter reads it (\"Trojan Source\", "
                    + "CVE-2021-42574): the code a reviewer sees here may not be the code that runs. Remove them; where "
                    + "right-to-left text is meant (a string shown to users), write the character as an escape such as `\\u202E`."
                findings.append(Finding(path: file.path, line: number, side: .right, severity: .high,
                                        category: bidiCategory, title: title, body: body, source: .builtin,
                                        fingerprint: Fingerprint.of(path: file.path, category: bidiCategory, title: title,
                                                                    anchorText: line.text)))
            }
        }
        return findings
    }

    // MARK: Merge-conflict markers

    private enum Marker { case start, base, separator, end }

    private static func marker(_ text: String) -> Marker? {
        guard let first = text.utf8.first, first == UInt8(ascii: "<") || first == UInt8(ascii: "=")
            || first == UInt8(ascii: ">") || first == UInt8(ascii: "|") else { return nil }
        var t = Substring(text)
        while let last = t.last, last.isWhitespace { t = t.dropLast() }
        func isMarker(_ m: String) -> Bool { t == m || t.hasPrefix(m + " ") }
        if isMarker("<<<<<<<") { return .start }
        if isMarker(">>>>>>>") { return .end }
        if isMarker("|||||||") { return .base }
        if t == "=======" { return .separator }
        return nil
    }

    /// One finding per conflict block (a range from `<<<<<<<` to `>>>>>>>` when both are in the
    /// same hunk), plus one per stray marker. A lone `=======` is reported only when the file also
    /// has `<<<<<<<`/`>>>>>>>` markers, since it is also a Markdown/RST heading underline.
    private static func conflictFindings(_ file: DiffFile) -> [Finding] {
        var marked: [(line: DiffLine, marker: Marker)] = []
        for hunk in file.hunks {
            for line in hunk.lines where line.kind == .added {
                if let m = marker(line.text) { marked.append((line, m)) }
            }
        }
        guard !marked.isEmpty else { return [] }
        let hasStrongMarkers = marked.contains { $0.marker == .start || $0.marker == .end }
        guard hasStrongMarkers else { return [] }

        var findings: [Finding] = []
        let title = "Unresolved merge conflict marker"
        func add(_ start: DiffLine?, _ end: DiffLine) {
            guard let line = end.newLine else { return }
            let startLine = start?.newLine.flatMap { $0 < line ? $0 : nil }
            let body = startLine != nil
                ? "Lines \(startLine!)–\(line) contain an unresolved merge conflict (`<<<<<<<` … `>>>>>>>`). The file will not compile or behave as intended; resolve the conflict and remove the markers."
                : "This line is a merge-conflict marker left in the file. Resolve the conflict and remove the marker."
            findings.append(Finding(path: file.path, startLine: startLine, line: line, side: .right, severity: .high,
                                    category: conflictCategory, title: title, body: body, source: .builtin,
                                    fingerprint: Fingerprint.of(path: file.path, category: conflictCategory, title: title,
                                                                anchorText: end.text)))
        }

        for hunk in file.hunks {
            var open: DiffLine?
            for line in hunk.lines where line.kind == .added {
                guard let m = marker(line.text) else { continue }
                switch m {
                case .start:
                    if let previous = open { add(nil, previous) }
                    open = line
                case .end:
                    if let start = open { add(start, line); open = nil } else { add(nil, line) }
                case .base, .separator:
                    if open == nil { add(nil, line) }
                }
            }
            if let start = open { add(nil, start) }
        }
        return findings
    }

    // MARK: Byte helpers

    private static func has(_ b: [UInt8], _ at: Int, _ literal: String) -> Bool {
        let l = literal.utf8
        guard at >= 0, at + l.count <= b.count else { return false }
        var k = at
        for byte in l {
            if b[k] != byte { return false }
            k += 1
        }
        return true
    }

    /// Length of the run of bytes satisfying `pred` starting at `from`, capped at `max`.
    private static func run(_ b: [UInt8], from: Int, max: Int, _ pred: (UInt8) -> Bool) -> Int {
        var n = 0
        var k = from
        while k < b.count, n < max, pred(b[k]) { n += 1; k += 1 }
        return n
    }

    private static func isAlnum(_ c: UInt8) -> Bool {
        (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122)
    }
    private static func isUpperOrDigit(_ c: UInt8) -> Bool { (c >= 48 && c <= 57) || (c >= 65 && c <= 90) }
    private static func isKeyByte(_ c: UInt8) -> Bool { isAlnum(c) || c == UInt8(ascii: "_") || c == UInt8(ascii: "-") }
    private static func isWordByte(_ c: UInt8) -> Bool { isAlnum(c) || c == UInt8(ascii: "_") }
    private static func isQuote(_ c: UInt8) -> Bool { c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") || c == UInt8(ascii: "`") }
}
