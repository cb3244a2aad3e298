import Foundation

/// A finding exactly as a model reported it, before it is checked against the diff. Decoding is
/// lenient on purpose: models drift from the schema in small ways (a line as "12", a severity of
/// "warning", no side) and a review should not be lost to that.
public struct RawFinding: Sendable, Hashable, Codable {
    public var path: String
    public var startLine: Int?
    public var line: Int
    public var side: DiffSide
    public var severity: Severity
    public var category: String
    public var title: String
    public var body: String
    public var suggestion: String?

    public init(path: String, startLine: Int? = nil, line: Int, side: DiffSide = .right, severity: Severity = .medium,
                category: String = "general", title: String, body: String, suggestion: String? = nil) {
        self.path = path
        self.startLine = startLine
        self.line = line
        self.side = side
        self.severity = severity
        self.category = category
        self.title = title
        self.body = body
        self.suggestion = suggestion
    }

    enum CodingKeys: String, CodingKey {
        case path, line, side, severity, category, title, body, suggestion
        case startLine = "start_line"
    }

    public init(from decoder: any Decoder) throws {
        let value = try JSONValue(from: decoder)
        guard let finding = RawFinding(json: value) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                    debugDescription: "not a finding: needs a path, a line and a title or body"))
        }
        self = finding
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(path, forKey: .path)
        try c.encodeIfPresent(startLine, forKey: .startLine)
        try c.encode(line, forKey: .line)
        try c.encode(side, forKey: .side)
        try c.encode(severity, forKey: .severity)
        try c.encode(category, forKey: .category)
        try c.encode(title, forKey: .title)
        try c.encode(body, forKey: .body)
        try c.encodeIfPresent(suggestion, forKey: .suggestion)
    }

    /// Lenient construction from any JSON value; nil when the essentials (path, line, some text)
    /// are missing.
    init?(json: JSONValue) {
        guard case .object(let o) = json else { return nil }
        func string(_ keys: String...) -> String? {
            for k in keys {
                if let s = o[k]?.stringValue?.trimmingCharacters(in: .whitespacesAndNewlines), !s.isEmpty { return s }
            }
            return nil
        }
        func int(_ keys: String...) -> Int? {
            for k in keys { if let n = o[k]?.intValue { return n } }
            return nil
        }
        // The path as the model wrote it: a file named with a leading or trailing space is found
        // by its whole name (trimmed, its findings never found their file); `Findings` trims when
        // the whole name is not a file of the diff.
        guard let path = ["path", "file", "filename", "file_path"].lazy.compactMap({ o[$0]?.stringValue })
            .first(where: { !$0.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty }) else { return nil }
        var start = int("start_line", "startLine", "line_start")
        // No line, 0 or a negative one: a finding about the whole file (line 0), listed in the
        // summary with the others not on a changed line. It was dropped, and counted nowhere.
        var line = int("line", "end_line", "endLine", "line_end", "line_number") ?? start ?? 0
        // `"line": "11-13"` names lines 11 to 13 (read as 11 alone, a three-line suggestion replaced one line).
        if start == nil, let text = o["line"]?.stringValue,
           let range = text.wholeMatch(of: /\s*L?(\d{1,9})\s*(?:-|–|:|\.\.)\s*L?(\d{1,9})\s*/), let a = Int(range.output.1), let b = Int(range.output.2) {
            (start, line) = (a, b)
        }
        let body = string("body", "message", "description", "comment", "explanation")
        let title = string("title", "summary", "issue") ?? body.map(RawFinding.derivedTitle)
        guard let title else { return nil }
        if let s = start {
            if s == line { start = nil } else if s > line { start = line; line = s }
        }
        if line <= 0 { (line, start) = (0, nil) }
        if let s = start, s <= 0 { start = nil }

        self.path = path
        self.startLine = start
        self.line = line
        self.side = RawFinding.side(string("side"))
        self.severity = RawFinding.severity(string("severity", "level", "priority"))
        self.category = string("category", "type", "kind")?.lowercased() ?? "general"
        self.title = ModelText.neutralize(title)
        self.body = ModelText.neutralize(body ?? title)
        // A suggestion is code in a fence of Sentinel's own that nothing in it can close: a `<!--`
        // there is text the one-click commit writes as it is. A last line break ends the last
        // line (as code is usually written); kept, it would add an empty line to the change.
        let suggestion = (o["suggestion"]?.stringValue ?? o["suggested_code"]?.stringValue).map(RawFinding.withoutFinalLineBreak)
        if let suggestion, BidiControls.contains(suggestion) {
            // Code that displays in another order than it runs is not offered for a one-click commit.
            self.suggestion = nil
            self.body += "\n\n" + ModelText.omittedBidiSuggestion
        } else {
            self.suggestion = (suggestion?.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty ?? true) ? nil : suggestion
        }
    }

    static func withoutFinalLineBreak(_ code: String) -> String {
        if code.hasSuffix("\r\n") { return String(code.unicodeScalars.dropLast(2)) }
        if code.hasSuffix("\n") { return String(code.unicodeScalars.dropLast()) }
        return code
    }

    static func derivedTitle(_ body: String) -> String {
        let firstLine = body.split(whereSeparator: \.isNewline).first.map(String.init) ?? body
        if let dot = firstLine.firstIndex(of: "."), firstLine.distance(from: firstLine.startIndex, to: dot) < 100 {
            return String(firstLine[...dot])
        }
        return firstLine.count > 100 ? String(firstLine.prefix(99)) + "…" : firstLine
    }

    static func side(_ s: String?) -> DiffSide {
        switch s?.uppercased() {
        case "LEFT", "OLD", "BASE", "L": return .left
        default: return .right
        }
    }

    static func severity(_ s: String?) -> Severity {
        guard let s = s?.lowercased() else { return .medium }
        if let exact = Severity(rawValue: s) { return exact }
        switch s {
        case "blocker", "severe", "fatal": return .critical
        case "error", "major", "important", "bug": return .high
        case "warning", "warn", "moderate": return .medium
        case "minor", "nit", "nitpick", "trivial": return .low
        case "note", "suggestion", "information", "informational", "style": return .info
        default: return .medium
        }
    }
}

/// The model's answer for one chunk, normalised: the engine merges the summaries of all chunks
/// into the PR walkthrough and anchors the findings, whatever provider produced them.
public struct ModelReviewOutput: Sendable, Hashable, Codable {
    public var summary: String
    public var findings: [RawFinding]
    /// Array entries that were not recognisable findings and were dropped.
    public var invalidFindings: Int

    public init(summary: String, findings: [RawFinding], invalidFindings: Int = 0) {
        self.summary = summary
        self.findings = findings
        self.invalidFindings = invalidFindings
    }
}

/// Why a model's reply could not be used. A distinct type so the engine knows a retry may help
/// (the next sample may be well-formed), unlike transport errors which the router handles.
public enum ModelOutputError: Error, Sendable, Hashable, CustomStringConvertible {
    case malformed(String)

    public var description: String {
        switch self {
        case .malformed(let why): return "malformed model output: \(why)"
        }
    }
}

/// Extracts the review JSON from whatever a model actually said: fenced blocks, prose before or
/// after, a bare array of findings, trailing commas. Anything truncated or otherwise unusable is a
/// `ModelOutputError`, never a crash and never a silently partial result.
public enum ModelOutputParser {
    public static func parse(_ text: String) throws -> ModelReviewOutput {
        var bytes = Array(text.utf8)
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
        guard bytes.contains(where: { !isSpace($0) }) else {
            throw ModelOutputError.malformed("the response is empty")
        }
        switch try reasoning(in: bytes) {
        case .none:
            return try parseAnswer(bytes, wanted: .any)
        case .closed(let after):
            return try parseAnswer(after, wanted: .any)
        case .closedWithoutOpening(let after):
            // The cut is a guess. A response that opens with its answer (thoughts never do) and
            // has no document opening after the tag quotes the tag in its prose or in a body: it
            // is read whole. Otherwise the text after the tag is the answer, or there is none (an
            // answer in prose after the thoughts: their drafts are not it).
            if !opensDocument(after), opensWithDocument(bytes) { return try parseAnswer(bytes, wanted: .any) }
            return try parseAnswer(after, wanted: .any)
        case .unclosed(let after):
            // Thoughts that never ended hold drafts: only an answer that ends the response is it.
            do { return try parseAnswer(after, wanted: .endingTheText) } catch {
                throw ModelOutputError.malformed("the model's reasoning was not closed, and no complete answer ends the response")
            }
        }
    }

    /// What `parseAnswer` takes: any candidate, or only one that ends the text.
    private enum Wanted { case any, endingTheText }

    /// Whether the first thing in `bytes` is a bracket or a fence.
    private static func opensWithDocument(_ bytes: [UInt8]) -> Bool {
        guard let first = bytes.firstIndex(where: { !isSpace($0) }) else { return false }
        return bytes[first] == UInt8(ascii: "{") || bytes[first] == UInt8(ascii: "[") || bytes[first...].starts(with: Array("```".utf8))
    }

    /// Whether `bytes` hold a bracket, and the first one opens (text cut inside a document starts
    /// with the rest of it: `…"},{…}]}`).
    private static func opensDocument(_ bytes: [UInt8]) -> Bool {
        guard let first = bytes.first(where: { [UInt8(ascii: "{"), UInt8(ascii: "["), UInt8(ascii: "}"), UInt8(ascii: "]")].contains($0) }) else {
            return false
        }
        return first == UInt8(ascii: "{") || first == UInt8(ascii: "[")
    }

    private static func parseAnswer(_ bytes: [UInt8], wanted: Wanted) throws -> ModelReviewOutput {
        // A JSON document encoded as one JSON string: what it holds.
        if let first = bytes.firstIndex(where: { !isSpace($0) }), bytes[first] == UInt8(ascii: "\""),
           case .string(let inner)? = try? JSONDecoder().decode(JSONValue.self, from: Data(bytes)), inner.utf8.count < bytes.count {
            return try parse(inner)
        }

        // The whole answer when it is one JSON document (a fence in a finding's body must not
        // cut it up); the fenced blocks that open a line; whatever the whole answer holds. Then,
        // only for an answer-shaped object (a summary or findings: never a lone finding or an
        // array, which a cut-off answer holds), a document that opens a line and runs to the end
        // (after thinking aloud with brackets) and one right after a fence opened within a line.
        var firstProblem: String?
        // A fenced block may be a piece of the answer a fence in a finding's body split off (raw
        // line breaks in its strings put "```" at a line's start), or that body's own code: only
        // an answer-shaped object, or an array of findings, is taken from it, never a lone finding
        // or an empty array; unless the answer is that one fenced block and nothing else.
        var sources: [(ArraySlice<UInt8>, answerShapedOnly: Bool)] = []
        if let document = wholeDocument(bytes[...]) { sources.append((document, false)) }
        let blocks = fencedBlocks(bytes)
        if blocks.count == 1, let block = blocks.first, let document = wholeDocument(block), isOnlyFence(bytes, around: document) {
            sources.append((document, false))
        }
        sources += blocks.map { ($0, true) }
        sources.append((bytes[...], false))
        // Every complete document the sources hold is a candidate; the answer is the first in the
        // text that is answer-shaped, else the first (a fenced example after the answer, or an
        // aside naming a finding the model decided against, was taken instead of it).
        var candidates: [Candidate] = []
        for (source, answerShapedOnly) in sources {
            candidates += scan(source, answerShapedOnly: answerShapedOnly, problem: &firstProblem)
        }
        if wanted == .endingTheText { candidates = candidates.filter { endsTheText(bytes, after: $0.end) } }
        if let best = best(candidates) { return best }
        for source in closingDocuments(bytes) + (wanted == .endingTheText ? [] : fencedDocuments(bytes)) {
            if let best = best(scan(source, answerShapedOnly: true, problem: &firstProblem)) { return best }
        }
        throw ModelOutputError.malformed(firstProblem ?? "no JSON object found in the response")
    }

    /// Whether only white space and fences follow `end`.
    private static func endsTheText(_ bytes: [UInt8], after end: Int) -> Bool {
        !bytes[end...].contains { !isSpace($0) && $0 != UInt8(ascii: "`") }
    }

    /// Reasoning tags (compared without case): opening and closing.
    private static let reasoningTags: [(open: [UInt8], close: [UInt8])] =
        [("<think>", "</think>"), ("<thinking>", "</thinking>"), ("<reasoning>", "</reasoning>"), ("[think]", "[/think]")]
            .map { (Array($0.utf8), Array($1.utf8)) }

    /// A reasoning model's thoughts before its answer, which are not the answer: drafts of
    /// findings it decided against were taken for it.
    private enum Reasoning {
        case none
        /// Blocks that open the text (`<think>…</think>`, R1- and Qwen-style, also `<Think>`,
        /// `[THINK]…[/THINK]`, several in a row), each ending at its first closing tag that starts
        /// or ends a line and has a bracket after it, else at its first: the text after them.
        case closed([UInt8])
        /// No opening tag (a chat template wrote it into the prompt): the text after the first
        /// closing tag that starts or ends a line (one quoted within a sentence, or in a finding's
        /// body, is not the end of the thoughts).
        case closedWithoutOpening([UInt8])
        /// A block opened and never closed: the text after its opening tag.
        case unclosed([UInt8])
    }

    private static func reasoning(in input: [UInt8]) throws -> Reasoning {
        var bytes = input
        var blocks = 0
        // At most 16 blocks in a row: each is a pass over the text.
        while blocks < 16, let start = bytes.firstIndex(where: { !isSpace($0) }),
              let opened = reasoningTags.first(where: { matches(bytes, at: start, $0.open) }) {
            let closers = closingTags(in: bytes, from: start + opened.open.count, [opened])
            // The first closing tag on a line of its own (one quoted in the thoughts is not), unless
            // no answer can follow it (a tag the answer's prose quotes): then the first.
            let lastBracket = bytes.lastIndex { $0 == UInt8(ascii: "{") || $0 == UInt8(ascii: "[") } ?? -1
            let onItsLine = closers.first { closer in
                opensOrEndsLine(bytes, at: closer.at, length: closer.length) && closer.at + closer.length <= lastBracket
            }
            guard let cut = onItsLine ?? closers.first else {
                return .unclosed(Array(bytes[(start + opened.open.count)...]))
            }
            bytes = Array(bytes[(cut.at + cut.length)...])
            guard bytes.contains(where: { !isSpace($0) }) else {
                throw ModelOutputError.malformed("the response holds only the model's reasoning, no answer after it")
            }
            blocks += 1
        }
        if blocks > 0 { return .closed(bytes) }
        // One that starts or ends a line: one within a line may be quoted in a JSON string of
        // the answer ("keeps the text after </think>"), and the answer was cut there.
        guard let cut = closingTags(in: bytes, from: 0, reasoningTags).first(where: { opensOrEndsLine(bytes, at: $0.at, length: $0.length) }) else {
            return .none
        }
        let after = Array(bytes[(cut.at + cut.length)...])
        // Nothing after it: a tag the answer's prose ends with, not thoughts without an answer.
        return after.contains(where: { !isSpace($0) }) ? .closedWithoutOpening(after) : .none
    }

    /// Where the closing tags of `tags` stand in `bytes` from `from` on.
    private static func closingTags(in bytes: [UInt8], from: Int, _ tags: [(open: [UInt8], close: [UInt8])]) -> [(at: Int, length: Int)] {
        var found: [(at: Int, length: Int)] = []
        for i in from..<bytes.count where bytes[i] == UInt8(ascii: "<") || bytes[i] == UInt8(ascii: "[") {
            for tag in tags where matches(bytes, at: i, tag.close) { found.append((i, tag.close.count)) }
        }
        return found
    }

    private static func matches(_ bytes: [UInt8], at i: Int, _ tag: [UInt8]) -> Bool {
        guard i + tag.count <= bytes.count else { return false }
        for k in tag.indices where ((65...90).contains(bytes[i + k]) ? bytes[i + k] + 32 : bytes[i + k]) != tag[k] { return false }
        return true
    }

    /// Whether the `length` bytes at `i` have only spaces before them on their line, or after.
    private static func opensOrEndsLine(_ bytes: [UInt8], at i: Int, length: Int) -> Bool {
        var j = i
        while j > 0, bytes[j - 1] == 32 || bytes[j - 1] == 9 { j -= 1 }
        if j == 0 || bytes[j - 1] == 10 || bytes[j - 1] == 13 { return true }
        var k = i + length
        while k < bytes.count, bytes[k] == 32 || bytes[k] == 9 { k += 1 }
        return k == bytes.count || bytes[k] == 10 || bytes[k] == 13
    }

    /// A complete document that reads as an answer: where it starts in the text, and whether it
    /// is answer-shaped (`isAnswerShaped`: not a lone finding).
    private struct Candidate { let output: ModelReviewOutput; let answerShaped: Bool; let start: Int; let end: Int }

    /// The first answer-shaped candidate in the text, else the first.
    private static func best(_ candidates: [Candidate]) -> ModelReviewOutput? {
        candidates.min { ($0.answerShaped ? 0 : 1, $0.start) < ($1.answerShaped ? 0 : 1, $1.start) }?.output
    }

    /// The bracketed documents of `source` that read as answers, in order. A cut-off document
    /// ends the source (its nested pieces must not pass for a complete answer); a bracket opening
    /// prose (`the try { block`, `[1, 10)`) does not; an empty array that is not the whole source
    /// is prose (`f([])`), not an answer.
    private static func scan(_ source: ArraySlice<UInt8>, answerShapedOnly strict: Bool, problem firstProblem: inout String?) -> [Candidate] {
        var answerShapedOnly = strict
        // Inside prose that a bracket opens and a later one closes: answer-shaped objects only.
        var proseUntil = source.startIndex
        var found: [Candidate] = []
        var position = source.startIndex
        var attempts = 0
        let whole = wholeDocument(source)
        while position < source.endIndex, attempts < 64 {
            guard let start = source[position...].firstIndex(where: { $0 == UInt8(ascii: "{") || $0 == UInt8(ascii: "[") }) else {
                return found
            }
            attempts += 1
            switch balancedEnd(source, from: start) {
            case .complete(let end, let opensProse):
                let candidate = removeTrailingCommas(source[start..<end])
                do {
                    let value = try JSONDecoder().decode(JSONValue.self, from: Data(candidate))
                    let isWhole = whole.map { $0.startIndex == start && $0.endIndex == end } ?? false
                    if case .array(let items) = value, items.isEmpty, !isWhole {
                        // prose, not an answer
                    } else if answerShapedOnly, !isAnswerShaped(value) {
                        firstProblem = firstProblem ?? "the JSON does not contain a summary or findings"
                    } else if start < proseUntil, !(isAnswerShaped(value) && { if case .object = value { true } else { false } }()) {
                        // a piece of prose, or of a broken answer, between a bracket and its close
                    } else if let output = interpret(value) {
                        found.append(Candidate(output: output, answerShaped: isAnswerShaped(value), start: start, end: end))
                    } else {
                        firstProblem = firstProblem ?? "the JSON does not contain a summary or findings"
                    }
                } catch {
                    firstProblem = firstProblem ?? "invalid JSON (\(shortDescription(error)))"
                    if opensProse, source[source.index(after: start)..<end].contains(UInt8(ascii: "{")) {
                        // Prose from a bracket to one closing it later (`the try { block …` … `}`)
                        // may hold the answer between them: read on inside, answer-shaped objects only.
                        position = source.index(after: start)
                        proseUntil = max(proseUntil, end)
                        continue
                    }
                }
                position = end
            case .truncated:
                firstProblem = "the JSON is truncated (unbalanced brackets at the end of the response)"
                return found
            case .prose(let at):
                position = at
                // As after a mismatched bracket: a lone finding further on is not the answer.
                answerShapedOnly = true
            case .mismatched(let at):
                firstProblem = firstProblem ?? "mismatched brackets in the JSON"
                position = max(at, source.index(after: start))
                // What follows may be the inside of the broken answer: a lone finding there is not it.
                answerShapedOnly = true
            }
        }
        return found
    }

    /// Whether `bytes` are ``` (an info string) `document` ``` and nothing else (white space
    /// around). Prose around a lone fenced `[]` may say there is a bug: that is refused.
    private static func isOnlyFence(_ bytes: [UInt8], around document: ArraySlice<UInt8>) -> Bool {
        let before = bytes[..<document.startIndex].drop(while: isSpace)
        var after = bytes[document.endIndex...].drop(while: isSpace)
        while let last = after.last, isSpace(last) { after = after.dropLast() }
        guard before.starts(with: Array("```".utf8)), after.elementsEqual(Array("```".utf8)) else { return false }
        return !before.dropFirst(3).contains { $0 == UInt8(ascii: "`") || $0 == UInt8(ascii: "{") || $0 == UInt8(ascii: "[") }
    }

    /// An object that is a whole answer (a summary or findings, or one wrapped in `review`, …),
    /// or an array of findings; not a lone finding or an empty array.
    private static func isAnswerShaped(_ value: JSONValue) -> Bool {
        if case .array(let items) = value { return items.contains { RawFinding(json: $0) != nil } }
        guard case .object(let o) = value, RawFinding(json: value) == nil else { return false }
        let keys = ["findings", "comments", "issues", "summary", "walkthrough", "overview"]
        if keys.contains(where: { o[$0] != nil }) { return true }
        return ["review", "result", "output", "response", "data"].contains { key in
            switch o[key] {
            case .object(let inner)?: return keys.contains { inner[$0] != nil }
            case .string(let s)?:  // an answer encoded as a JSON string under the key
                guard case .object(let inner)? = try? JSONDecoder().decode(JSONValue.self, from: Data(s.utf8)) else { return false }
                return keys.contains { inner[$0] != nil }
            default: return false
            }
        }
    }

    private static func isSpace(_ b: UInt8) -> Bool { b == 32 || b == 9 || b == 10 || b == 13 }

    /// `bytes` without surrounding white space when they are one bracketed JSON document.
    private static func wholeDocument(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8>? {
        guard let start = bytes.firstIndex(where: { !isSpace($0) }),
              bytes[start] == UInt8(ascii: "{") || bytes[start] == UInt8(ascii: "["),
              case .complete(let end, _) = balancedEnd(bytes, from: start),
              !bytes[end...].contains(where: { !isSpace($0) }) else { return nil }
        return bytes[start..<end]
    }

    /// Documents that open a line at its first column and run to the end of the answer, at most
    /// 16 tried (each is read to the end).
    private static func closingDocuments(_ bytes: [UInt8]) -> [ArraySlice<UInt8>] {
        var out: [ArraySlice<UInt8>] = []
        var tried = 0
        for i in bytes.indices where (bytes[i] == UInt8(ascii: "{") || bytes[i] == UInt8(ascii: "["))
            && i > 0 && bytes[i - 1] == 10 {
            tried += 1
            if tried > 16 { break }
            if let document = wholeDocument(bytes[i...]) { out.append(document) }
        }
        return out
    }

    /// Documents right after a ``` opened within a line ("Here: ```json {…}"): the fence, an
    /// info string, one whole document, then nothing but a closing fence and what follows it.
    /// Backticks inside a finding's body (a JSON string) open such a "fence" too; what follows
    /// them is never a whole document, so it is not taken for one.
    private static func fencedDocuments(_ bytes: [UInt8]) -> [ArraySlice<UInt8>] {
        var out: [ArraySlice<UInt8>] = []
        var j = 0
        var tried = 0
        while j + 3 <= bytes.count {
            defer { j += 1 }
            guard bytes[j] == UInt8(ascii: "`"), bytes[j + 1] == UInt8(ascii: "`"), bytes[j + 2] == UInt8(ascii: "`") else { continue }
            var k = j + 3
            while k < bytes.count, bytes[k] != UInt8(ascii: "`"), !isSpace(bytes[k]), bytes[k] != UInt8(ascii: "{"), bytes[k] != UInt8(ascii: "[") { k += 1 }
            while k < bytes.count, isSpace(bytes[k]) { k += 1 }
            guard k < bytes.count, bytes[k] == UInt8(ascii: "{") || bytes[k] == UInt8(ascii: "[") else { continue }
            tried += 1
            if tried > 16 { break }  // each is read to its end
            guard case .complete(let end, _) = balancedEnd(bytes[...], from: k) else { continue }
            let rest = bytes[end...].drop(while: isSpace)
            if rest.isEmpty || rest.starts(with: [UInt8](repeating: UInt8(ascii: "`"), count: 3)) { out.append(bytes[k..<end]) }
        }
        return out
    }

    /// Contents of ``` fences (any info string) that open a line, as Markdown's do; an unclosed
    /// fence runs to the end. Backticks inside a line (in a JSON string: a finding's body that
    /// quotes code) neither open nor close one.
    private static func fencedBlocks(_ bytes: [UInt8]) -> [ArraySlice<UInt8>] {
        let fence: [UInt8] = Array("```".utf8)
        var blocks: [ArraySlice<UInt8>] = []
        var i = 0
        func opensLine(_ j: Int) -> Bool {
            var k = j
            while k > 0, bytes[k - 1] == 32 || bytes[k - 1] == 9 { k -= 1 }
            return k == 0 || bytes[k - 1] == 10 || bytes[k - 1] == 13
        }
        func find(_ from: Int) -> Int? {
            var j = from
            while j + 3 <= bytes.count {
                if bytes[j] == fence[0] && bytes[j + 1] == fence[1] && bytes[j + 2] == fence[2] && opensLine(j) { return j }
                j += 1
            }
            return nil
        }
        while let open = find(i) {
            // Skip the info string ("json") up to the end of the line.
            var contentStart = open + 3
            while contentStart < bytes.count, bytes[contentStart] != 10 { contentStart += 1 }
            if let close = find(contentStart) {
                blocks.append(bytes[contentStart..<close])
                i = close + 3
            } else {
                blocks.append(bytes[contentStart...])
                break
            }
        }
        return blocks
    }

    /// Where the bracket at `start` closes: `complete` (past its closing bracket), `truncated` (the
    /// text ends first), `mismatched` (at the wrong closing bracket), or `prose` (the text ends
    /// first, and a byte no JSON has outside strings came right after the bracket, before any
    /// string or nested bracket and not a `//` comment: `the try { block …`, `[1, 10)`, where the
    /// rest of the answer would otherwise look cut off).
    /// A `complete` bracket may open prose too (`the try { block … }`): `opensProse` says so.
    private enum Balance { case complete(Int, opensProse: Bool), truncated, mismatched(Int), prose(Int) }

    private static func balancedEnd(_ s: ArraySlice<UInt8>, from start: Int) -> Balance {
        var stack: [UInt8] = []
        var strings = JSONStringScanner()
        var firstProse: Int?
        var opensJSON = false  // a string or a nested bracket came first: not prose
        var i = start
        while i < s.endIndex {
            let c = s[i]
            if strings.consume(c) {
                if i > start { opensJSON = true }
            } else {
                switch c {
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    if i > start { opensJSON = true }
                    stack.append(c == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "]"))
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    guard stack.last == c else { return .mismatched(i) }
                    stack.removeLast()
                    if stack.isEmpty { return .complete(i + 1, opensProse: firstProse != nil) }
                default:
                    if c == UInt8(ascii: "/") { opensJSON = true }  // a comment: JSON with comments, not prose
                    if firstProse == nil, !opensJSON, !isJSONOutsideStrings(c) { firstProse = i }
                }
            }
            i += 1
        }
        return firstProse.map { .prose($0) } ?? .truncated
    }

    /// Bytes JSON text may hold outside its strings: white space, punctuation, numbers and the
    /// letters of `true`, `false` and `null`.
    private static func isJSONOutsideStrings(_ c: UInt8) -> Bool {
        if isSpace(c) { return true }
        switch c {
        case UInt8(ascii: ":"), UInt8(ascii: ","), UInt8(ascii: "-"), UInt8(ascii: "+"), UInt8(ascii: "."),
             UInt8(ascii: "0")...UInt8(ascii: "9"): return true
        default: return Array("truefalsnE".utf8).contains(c)
        }
    }

    /// Drops commas directly before a closing bracket (outside strings).
    private static func removeTrailingCommas(_ s: ArraySlice<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(s.count)
        var strings = JSONStringScanner()
        var i = s.startIndex
        while i < s.endIndex {
            let c = s[i]
            if !strings.consume(c), c == UInt8(ascii: ",") {
                var j = i + 1
                while j < s.endIndex, isSpace(s[j]) { j += 1 }
                if j < s.endIndex, s[j] == UInt8(ascii: "}") || s[j] == UInt8(ascii: "]") {
                    i += 1  // drop it
                    continue
                }
            }
            out.append(c)
            i += 1
        }
        return out
    }

    /// Tells, byte by byte, whether JSON text is inside a string (quotes included), so bracket
    /// matching and trailing-comma removal agree on what a string is.
    private struct JSONStringScanner {
        private var inString = false
        private var escaped = false

        /// Moves past `byte`; true when it belongs to a string.
        mutating func consume(_ byte: UInt8) -> Bool {
            if inString {
                if escaped { escaped = false }
                else if byte == UInt8(ascii: "\\") { escaped = true }
                else if byte == UInt8(ascii: "\"") { inString = false }
                return true
            }
            if byte == UInt8(ascii: "\"") { inString = true; return true }
            return false
        }
    }

    private static func interpret(_ value: JSONValue, depth: Int = 0) -> ModelReviewOutput? {
        switch value {
        case .array(let items):
            guard items.allSatisfy({ if case .object = $0 { return true } else { return false } }) else { return nil }
            if !items.isEmpty, !items.contains(where: { RawFinding(json: $0) != nil }) { return nil }
            return output(summary: "", items: items)
        case .object(let o):
            if let findings = o["findings"] ?? o["comments"] ?? o["issues"] {
                let summary = o["summary"]?.stringValue ?? o["walkthrough"]?.stringValue ?? o["overview"]?.stringValue ?? ""
                switch findings {
                case .array(let items): return output(summary: summary, items: items)
                case .null: return ModelReviewOutput(summary: summary, findings: [])
                // One finding written as an object, not a list of one.
                case .object where RawFinding(json: findings) != nil: return output(summary: summary, items: [findings])
                default: return nil
                }
            }
            if let finding = RawFinding(json: value) {
                return ModelReviewOutput(summary: "", findings: [finding])
            }
            if let summary = o["summary"]?.stringValue {
                return ModelReviewOutput(summary: summary, findings: [])
            }
            if depth == 0 {
                for key in ["review", "result", "output", "response", "data"] {
                    if let inner = o[key], let out = interpret(inner, depth: 1) { return out }
                }
            }
            return nil
        case .string(let s) where depth <= 1:
            // A JSON document encoded as a string, on its own or under a wrapper key
            // (`{"output": "{\"summary\": …}"}`); not wrapped again inside.
            if let data = s.data(using: .utf8), let inner = try? JSONDecoder().decode(JSONValue.self, from: data) {
                return interpret(inner, depth: 2)
            }
            return nil
        default:
            return nil
        }
    }

    private static func output(summary: String, items: [JSONValue]) -> ModelReviewOutput {
        var findings: [RawFinding] = []
        var invalid = 0
        for item in items {
            if let f = RawFinding(json: item) { findings.append(f) } else { invalid += 1 }
        }
        return ModelReviewOutput(summary: ModelText.neutralize(summary.trimmingCharacters(in: .whitespacesAndNewlines)), findings: findings,
                                 invalidFindings: invalid)
    }

    private static func shortDescription(_ error: any Error) -> String {
        if let e = error as? DecodingError {
            switch e {
            case .dataCorrupted(let c): return c.underlyingError.map { "\($0)" }.map { String($0.prefix(160)) } ?? c.debugDescription
            default: return "\(e)".prefix(160).description
            }
        }
        return "\(error)".prefix(160).description
    }
}

/// Lenient readings of model output's JSON values: models write numbers as strings and line
/// numbers as "L12" or "12-14".
extension JSONValue {
    var stringValue: String? {
        switch self {
        case .string(let s): return s
        case .int(let i): return String(i)
        case .double(let n): return n == n.rounded() && abs(n) < 1e15 ? String(Int(n)) : String(n)
        default: return nil
        }
    }

    var intValue: Int? {
        switch self {
        case .int(let i):
            // `magnitude`, not `abs`: `abs(Int.min)` traps, and a model can answer -9223372036854775808.
            return i.magnitude < 1_000_000_000 ? i : nil
        case .double(let n):
            guard n.isFinite, n == n.rounded(), abs(n) < 1e9 else { return nil }
            return Int(n)
        case .string(let s):
            let t = s.trimmingCharacters(in: .whitespaces)
            if let n = Int(t), n.magnitude < 1_000_000_000 { return n }
            // "L12" or "12-14" style: take the first number.
            let digits = t.drop(while: { !$0.isNumber }).prefix(while: { $0.isNumber })
            guard !digits.isEmpty, digits.count < 10 else { return nil }
            return Int(digits)
        default:
            return nil
        }
    }
}

/// Model output is text from outside (and the PR's own content can steer it), posted under the
/// bot's name. Before it reaches GitHub it may not carry HTML comments (which would hide text and
/// could imitate Sentinel's own run and fingerprint markers), @-mentions (which would notify
/// people), references to other repositories' issues (which would mark the mention on them) nor
/// bidirectional control characters (which would display it in another order; they
/// are spelled out, `[U+202E]`). Everything else, markdown included, is kept.
public enum ModelText {
    public static let omittedBidiSuggestion = "_(A suggested change was left out here: it holds bidirectional control characters, "
        + "which display code in another order than it runs.)_"

    public static func neutralize(_ text: String) -> String {
        let out = neutralizedText(text)
        // A fence the text opens and never closes would take in what Sentinel adds after it: the
        // finding's one-click suggestion (shown as code, no button), the walkthrough, the findings
        // not on changed lines. It is closed where the text ends.
        guard let fence = unclosedFence(out) else { return out }
        return out + (out.hasSuffix("\n") ? "" : "\n") + fence
    }

    /// The closing line of a fence (``` or ~~~, CommonMark §4.5) that `text` opens at the top level
    /// and does not close; nil when there is none. (One opened in a quote or a list item ends with
    /// it, at the first line of what follows.)
    static func unclosedFence(_ text: String) -> String? {
        guard text.utf8.contains(UInt8(ascii: "`")) || text.utf8.contains(UInt8(ascii: "~")) else { return nil }
        var open: FenceLine?
        // A fence opened in a list item or a quote: it ends with its closing line or with the
        // item (a line that starts at its first column, not a quote's `>`).
        var nested: FenceLine?
        // Within a list item (its marker line, then indented or blank lines): a fence opened on an
        // indented line belongs to the item and ends with it.
        var inItem = false
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if let inner = nested {
                if FenceLine(line.drop { " \t>".contains($0) })?.closes(inner) == true { nested = nil; continue }
                guard let first = line.first, first != " ", first != "\t", first != ">", first != "\r" else { continue }
                nested = nil
            }
            let indent = line.prefix { $0 == " " }.count
            if open == nil, !line.allSatisfy({ $0 == " " || $0 == "\t" || $0 == "\r" }) {
                if indent == 0 && line.first != "\t" { inItem = false }
                if inItem, indent > 0 || line.first == "\t" {
                    if let found = FenceLine(line.drop { $0 == " " || $0 == "\t" }), found.opens { nested = found }
                    continue
                }
            }
            guard indent <= 3 else { continue }
            let rest = line.dropFirst(indent)
            if let current = open {
                if FenceLine(rest)?.closes(current) == true { open = nil }
                continue
            }
            if let found = FenceLine(rest) {
                if found.opens { open = found }
                continue
            }
            // A list item's marker (`- `, `* `, `+ `, `1. `, `1) `) starts an item.
            if let marker = rest.first, "-*+".contains(marker) && rest.dropFirst().first == " "
                || marker.isNumber && rest.drop(while: { $0.isNumber }).prefix(2).allSatisfy({ $0 == "." || $0 == ")" || $0 == " " })
                    && rest.drop(while: { $0.isNumber }).count >= 2 {
                inItem = true
            }
            // After quote and list markers (`> `, `- `, `1. `).
            let markers = rest.prefix { " \t>*+-.)0123456789".contains($0) }
            if !markers.isEmpty, let found = FenceLine(rest.dropFirst(markers.count)), found.opens { nested = found }
        }
        return open.map { String(repeating: $0.mark, count: $0.count) }
    }

    /// A line that starts with a fence (three or more backticks or tildes): its mark, its length and what follows.
    struct FenceLine {
        let mark: Character
        let count: Int
        let after: Substring

        init?(_ rest: Substring) {
            guard let mark = rest.first, mark == "`" || mark == "~" else { return nil }
            let count = rest.prefix { $0 == mark }.count
            guard count >= 3 else { return nil }
            (self.mark, self.count, self.after) = (mark, count, rest.dropFirst(count))
        }

        /// Whether it closes `open`: the same mark, at least as long, nothing after it.
        func closes(_ open: FenceLine) -> Bool {
            mark == open.mark && count >= open.count && after.allSatisfy { $0 == " " || $0 == "\t" || $0 == "\r" }
        }

        /// Whether it opens a fence (a backtick fence's info string holds no backtick: such a line is a code span).
        var opens: Bool { !(mark == "`" && after.contains("`")) }
    }

    static func neutralizedText(_ text: String) -> String {
        // Every `<!--` outside code is written `&lt;!--` below (in code it is text, as in a
        // suggestion); `MarkdownCode` reads it as text.
        var marked = BidiControls.spelledOut(text)
        if marked.utf8.contains(UInt8(ascii: "&")) {
            // `&#64;all`, `&commat;all` and `octo/rep&#111;#12` render as `@all` and `octo/repo#12`,
            // which the platforms then read as a mention or a reference: the characters of names
            // and references, spelled as entities, are written as themselves and defused below.
            marked = marked.replacingOccurrences(of: "&commat;", with: "@").replacingOccurrences(of: "&num;", with: "#")
                .replacingOccurrences(of: "&excl;", with: "!")
            if marked.utf8.contains(UInt8(ascii: "#")) {
                marked = marked.replacing(/&#([xX][0-9a-fA-F]{1,8}|[0-9]{1,10});/) { match -> String in
                    let body = match.output.1
                    let value = body.first == "x" || body.first == "X" ? UInt32(body.dropFirst(), radix: 16) : UInt32(body)
                    guard let value, let scalar = Unicode.Scalar(value), Self.isNameCharacter(scalar) || "@#!".unicodeScalars.contains(scalar) else {
                        return String(match.output.0)
                    }
                    return String(Character(scalar))
                }
            }
        }
        if marked.range(of: "suggestion", options: .caseInsensitive) != nil || marked.utf8.contains(UInt8(ascii: "&")) {
            // A fence the model opens as `suggestion` would be a one-click change on the comment's
            // lines (GitLab's `suggestion:-35+0` reaching far above them), past every check the
            // finding's own `suggestion` gets: such fences, and fences whose info string holds an
            // entity (`sugg&#101;stion` is read as `suggestion`), show their text as plain code.
            // Only a line that opens a fence (after quote and list markers; a backtick fence's info
            // string holds no backtick) and is not yet made `text`.
            for pattern in [#"(?m)^([ \t>*+\-0-9.)]*)(`{3,})(?![ \t]*text )([ \t]*)(?=(?:suggestion|[^\n`]*&)[^\n`]*$)"#,
                            #"(?m)^([ \t>*+\-0-9.)]*)(~{3,})(?![ \t]*text )([ \t]*)(?=suggestion|[^\n]*&)"#] {
                marked = marked.replacingOccurrences(of: pattern, with: "$1$2$3text ", options: [.regularExpression, .caseInsensitive])
            }
        }
        guard marked.utf8.contains(where: { $0 == UInt8(ascii: "@") || $0 == UInt8(ascii: "#") || $0 == UInt8(ascii: "!") || $0 == UInt8(ascii: "<") }) else {
            return marked
        }
        // Code spans are left as they are: nothing in them links or notifies. Elsewhere:
        // - an @ that starts a word and is followed by a letter or digit would mention someone;
        // - `owner/repo#12` and `group/sub/project!12` name an issue, pull or merge request of
        //   another repository, which GitHub and GitLab link and mark ("mentioned this …"), so
        //   model text steered by a pull request could leave such marks, under the bot's name,
        //   on any project the platform holds (`#12` within the repository is kept);
        // a zero-width space after the @, # or ! keeps the text and drops the link. The text is
        // read by Unicode scalar, as the markdown readers and the platforms' filters read it: a
        // character that joins the next one (U+0600 before `@`) or a mark after `[` hid them.
        let code = MarkdownCode.spans(in: marked)
        // Fenced blocks (several lines) keep an HTML comment opener as written; a one-line code
        // span escapes it like prose, should any reading of where a span starts differ from the
        // platform's.
        let fenced = code.map { marked[$0].contains("\n") }
        // A web address is copied whole (see below) only where the platforms certainly link it:
        // never in text with an HTML block (its text is not markdown, nothing in it is linked).
        let mayLinkAddresses = !Self.holdsHTMLBlockLine(marked)
        var openBrackets = 0
        let scalars = marked.unicodeScalars
        var span = 0
        var out = String.UnicodeScalarView()
        var previous: Unicode.Scalar = " "
        var pendingAt = false
        var pendingReference = false
        var pendingImage = false
        // The run of name characters and slashes just before the current position.
        var token = ""
        // The end of the web address being copied, which the platforms link whole.
        var addressEnd = scalars.startIndex
        var index = scalars.startIndex
        while index < scalars.endIndex {
            let ch = scalars[index]
            defer { index = scalars.index(after: index) }
            while span < code.count, code[span].upperBound <= index { span += 1 }
            let inCode = span < code.count && code[span].contains(index)
            if (pendingAt && (ch.properties.isAlphabetic || ch.properties.numericType != nil || ch == "_" || ch == "."))
                || (pendingReference && ("0"..."9").contains(ch)) || (pendingImage && ch == "[") {
                out.append("\u{200B}")
            }
            // A web address is a link, in which nothing mentions or references: `@types/node` in
            // `https://www.npmjs.com/package/@types/node` or `#2` in `…/questions/1#2` stay as written.
            // Only where the platforms link it for certain: after white space (or as a link's
            // destination, `](`), with no `[` left open before it (no autolink is made inside one).
            if !inCode, mayLinkAddresses, openBrackets == 0, index >= addressEnd, ch == "h" || ch == "w",
               index == scalars.startIndex || " \t\n".unicodeScalars.contains(previous) || (previous == "(" && out.suffix(2).first == "]"),
               let end = Self.linkedAddressEnd(scalars, from: index) {
                addressEnd = end
            }
            if !inCode, index >= addressEnd {
                if ch == "[", previous != "\\" { openBrackets += 1 }
                if ch == "]", previous != "\\" { openBrackets = max(0, openBrackets - 1) }
                if ch == "\n", previous == "\n" { openBrackets = 0 }
            }
            if index < addressEnd {
                out.append(ch)
                (previous, token, pendingAt, pendingReference, pendingImage) = (ch, "", false, false, false)
                continue
            }
            if ch == "<", !inCode ? Self.opensUnendingHTML(Substring(scalars[scalars.index(after: index)...]))
                : !fenced[span] && scalars[scalars.index(after: index)...].starts(with: "!--".unicodeScalars) {
                // An HTML comment would hide text and could pass for one of Sentinel's markers; a
                // `<script>`, `<pre>`, `<style>`, `<textarea>`, `<?` or `<!…` block runs on past blank
                // lines and would take in what Sentinel adds after the text (a suggested change, its marker).
                out.append(contentsOf: "&lt;".unicodeScalars)
                (previous, token, pendingAt, pendingReference, pendingImage) = (ch, "", false, false, false)
                continue
            }
            // An image (`![x](https://…)`, `<img src=…>`) is fetched by every reader's browser where
            // the platform does not proxy images (GitLab without its asset proxy): the model's
            // text can only link one.
            pendingImage = !inCode && ch == "!"
            if !inCode, ch == "<", Self.opensMediaTag(Substring(scalars[scalars.index(after: index)...])) {
                out.append(contentsOf: "&lt;".unicodeScalars)
                (previous, token, pendingAt, pendingReference) = (ch, "", false, false)
                continue
            }
            // The platforms find mentions after any character but an ASCII letter or digit
            // (`café@octocat` mentions octocat; so does `_x_@all`, whose `_` closes emphasis).
            pendingAt = !inCode && ch == "@" && !(previous.isASCII && (previous.properties.isAlphabetic || ("0"..."9").contains(previous)))
            pendingReference = false
            if !inCode, ch == "#" || ch == "!" {
                // GitLab reads `project#12` (same group) and `/group/project#12` as references too.
                pendingReference = token.unicodeScalars.contains { $0.properties.isAlphabetic || ("0"..."9").contains($0) }
            }
            if Self.isNameCharacter(ch) || ch == "/" {
                token.unicodeScalars.append(ch)
            } else if ch != "\\" {
                // A backslash escape (`octo/repo\#12`) renders as the character alone.
                token = ""
            }
            out.append(ch)
            previous = ch
        }
        return String(out)
    }

    /// The end of a web address at `start` (`https://`, `http://` or `www.`) as the platforms'
    /// autolinks take it, read strictly: a host of ASCII letters, digits and hyphens in at least
    /// two dot-separated labels, then `/` and a path of letters, digits and `-./?#@$+,;=%:`. Any
    /// other character ends it (`_`, `*` and `~` may close emphasis, `!` start an image, `&` an
    /// entity for `<`), so what follows is read as prose. Nil when the text is no such address.
    static func linkedAddressEnd(_ scalars: String.UnicodeScalarView, from start: String.UnicodeScalarView.Index) -> String.UnicodeScalarView.Index? {
        var i = start
        let rest = scalars[start...]
        if rest.starts(with: "https://".unicodeScalars) {
            i = scalars.index(i, offsetBy: 8)
        } else if rest.starts(with: "http://".unicodeScalars) {
            i = scalars.index(i, offsetBy: 7)
        } else if !rest.starts(with: "www.".unicodeScalars) {
            return nil
        }
        var labels = 0
        var label = 0
        while i < scalars.endIndex, scalars[i].isASCII, scalars[i].properties.isAlphabetic || ("0"..."9").contains(scalars[i]) || scalars[i] == "-" || scalars[i] == "." {
            if scalars[i] == "." {
                guard label > 0 else { return nil }
                labels += 1
                label = 0
            } else {
                label += 1
            }
            i = scalars.index(after: i)
        }
        guard labels > 0, label > 0, i < scalars.endIndex, scalars[i] == "/" else { return nil }
        while i < scalars.endIndex, scalars[i].isASCII,
              scalars[i].properties.isAlphabetic || ("0"..."9").contains(scalars[i]) || "-./?#@$+,;=%:".unicodeScalars.contains(scalars[i]) {
            i = scalars.index(after: i)
        }
        return i
    }

    /// ASCII letters, digits and `-_.`: what names of users, groups and projects are made of.
    static func isNameCharacter(_ scalar: Unicode.Scalar) -> Bool {
        scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || scalar == "-" || scalar == "_" || scalar == ".")
    }

    /// Whether text after a `<` opens an HTML comment, or an HTML block that a blank line does not
    /// end (CommonMark §4.6, kinds 1 to 5): `<script`, `<pre`, `<style`, `<textarea`, `<?`, `<!`; and
    /// `<details`, which folds what follows until its end tag.
    static func opensUnendingHTML(_ rest: Substring) -> Bool {
        guard let first = rest.unicodeScalars.first else { return false }
        if first == "!" || first == "?" { return true }
        let name = rest.prefix(9).lowercased()
        // `<details>` too: unclosed, it folds everything after it out of sight.
        return ["script", "pre", "style", "textarea", "details"].contains { tag in
            name.hasPrefix(tag) && (name.count == tag.count || " \t\r\n>".contains(name[name.index(name.startIndex, offsetBy: tag.count)]))
        }
    }

    /// Whether a line of `text` starts (after quote and list markers) with `<`: an HTML block, as
    /// the platforms may read it.
    static func holdsHTMLBlockLine(_ text: String) -> Bool {
        guard text.utf8.contains(UInt8(ascii: "<")) else { return false }
        return text.split(separator: "\n", omittingEmptySubsequences: false).contains { line in
            line.drop { " \t>*+-.)0123456789".contains($0) }.first == "<"
        }
    }

    /// Whether text after a `<` opens an HTML element that loads media.
    static func opensMediaTag(_ rest: Substring) -> Bool {
        let name = rest.prefix(8).lowercased()
        return ["img", "picture", "video", "audio", "source", "iframe", "image"].contains { tag in
            name.hasPrefix(tag) && (name.count == tag.count || " \t\r\n/>".contains(name[name.index(name.startIndex, offsetBy: tag.count)]))
        }
    }

    /// Only the comment opener, for text that is not markdown to the platform.
    public static func neutralizeMarkers(_ text: String) -> String {
        text.containsBytes("<!--") ? text.replacingOccurrences(of: "<!--", with: "&lt;!--") : text
    }
}

extension String {
    /// Byte-wise substring test: Foundation's `contains` goes through NSString and dominated the engine's profile.
    func containsBytes(_ needle: String) -> Bool {
        var haystack = self
        var pattern = needle
        return haystack.withUTF8 { h in
            pattern.withUTF8 { n in
                guard let first = n.first else { return true }
                guard h.count >= n.count else { return false }
                var i = 0
                let last = h.count - n.count
                while i <= last {
                    if h[i] == first {
                        var j = 1
                        while j < n.count, h[i + j] == n[j] { j += 1 }
                        if j == n.count { return true }
                    }
                    i += 1
                }
                return false
            }
        }
    }
}
