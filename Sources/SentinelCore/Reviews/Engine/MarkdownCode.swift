/// Inline code in the markdown Sentinel posts (CommonMark §6.1, as GitHub and GitLab read it). A
/// name from a pull request (a file path, a setting's key) is shown as a code span that nothing in
/// it can close, and text is read for where its code spans are, so `ModelText` leaves code alone
/// and treats everything else as prose.
enum MarkdownCode {
    /// `text` as one code span: fenced with one backtick more than its longest run of backticks,
    /// padded with a space where it starts or ends with one, its line breaks and other control
    /// characters made spaces (a blank line would end the paragraph, and the span with it), its
    /// bidirectional controls spelled out (they reorder code spans too) and, as everywhere in what
    /// Sentinel posts, no `<!--` that could pass for one of its markers.
    static func span(_ text: String) -> String {
        let clean = ModelText.neutralizeMarkers(BidiControls.spelledOut(StoredText.singleLine(text)))
        var longest = 0
        var run = 0
        for ch in clean {
            run = ch == "`" ? run + 1 : 0
            longest = max(longest, run)
        }
        let fence = String(repeating: "`", count: longest + 1)
        let pad = clean.first == "`" || clean.last == "`" ? " " : ""
        return fence + pad + clean + pad + fence
    }

    /// Where `text` is code for certain, as GitHub and GitLab read it: fenced code blocks (fences
    /// included) and code spans. Anything not listed is read as prose, where `ModelText` defuses
    /// mentions and references, so every doubt counts as prose: a text whose structure this reading
    /// cannot be sure of (raw HTML, an autolink or tag holding a backtick, a fence inside a list or
    /// quote, a code span over more than one line or holding a table's `|`, GitLab's `>>>` quotes,
    /// a fence that does not close where it must) has no code at all. Reading more code than the
    /// platform does would leave a live `@all` in what it renders as text; reading less only puts
    /// an invisible space into a mention-like word of code.
    ///
    /// A `<!--` is read as text: `ModelText` writes every one outside code as `&lt;!--`.
    static func spans(in text: String) -> [Range<String.Index>] {
        var bytes = Array(text.utf8)
        guard bytes.contains(UInt8(ascii: "`")) || bytes.contains(UInt8(ascii: "~")) else { return [] }
        var at = 0
        while let comment = Reading.find(Array("<!--".utf8), in: bytes, from: at) {
            bytes[comment] = UInt8(ascii: "&")
            at = comment + 1
        }
        guard let offsets = Reading(bytes).codeRanges() else { return [] }
        let utf8 = text.utf8
        return offsets.map { utf8.index(utf8.startIndex, offsetBy: $0.lowerBound)..<utf8.index(utf8.startIndex, offsetBy: $0.upperBound) }
    }

    /// One reading of a text's block structure and code spans, in byte offsets; nil where the text
    /// is not certain to read one way.
    private struct Reading {
        let b: [UInt8]
        /// Each line's bytes, without its line feed (and the carriage return before it).
        var lines: [Range<Int>] = []

        init(_ bytes: [UInt8]) {
            b = bytes
            var start = 0
            for i in 0...bytes.count where i == bytes.count || bytes[i] == UInt8(ascii: "\n") {
                var end = i
                if end > start, bytes[end - 1] == UInt8(ascii: "\r") { end -= 1 }
                lines.append(start..<end)
                start = i + 1
            }
        }

        static let backtick = UInt8(ascii: "`")
        static let tilde = UInt8(ascii: "~")

        func isBlank(_ line: Range<Int>) -> Bool { b[line].allSatisfy { $0 == 0x20 || $0 == 0x09 } }

        /// Leading spaces of a line, nil when its indentation holds a tab (columns depend on tab stops).
        func indentation(_ line: Range<Int>) -> Int? {
            var n = 0
            for i in line {
                if b[i] == 0x20 { n += 1; continue }
                if b[i] == 0x09 { return nil }
                break
            }
            return n
        }

        /// The fence a line's text (from `at`) starts with: its character and length (3 or more).
        func fence(in line: Range<Int>, at: Int) -> (char: UInt8, length: Int)? {
            guard at < line.upperBound, b[at] == Self.backtick || b[at] == Self.tilde else { return nil }
            var n = 0
            while at + n < line.upperBound, b[at + n] == b[at] { n += 1 }
            return n >= 3 ? (b[at], n) : nil
        }

        func codeRanges() -> [Range<Int>]? {
            // A carriage return that does not end a line ends one for the platform, not here.
            for (i, byte) in b.enumerated() where byte == UInt8(ascii: "\r") && (i + 1 == b.count || b[i + 1] != UInt8(ascii: "\n")) {
                return nil
            }
            // Lines this reading cannot place: one outside a fenced block that starts (after quote
            // and list markers) with `<` (an HTML block, whose text is not markdown; see
            // `startsHTML`), GitLab's multi-line quote `>>>`, and a
            // fence after a marker or deeper than three spaces (inside a list item or a quote,
            // whose end decides the fence's).
            let markers: Set<UInt8> = Set(" \t>*+-.)0123456789".utf8)
            for line in lines {
                var at = line.lowerBound
                while at < line.upperBound, markers.contains(b[at]) { at += 1 }
                if b[line].starts(with: Array(">>>".utf8)) || b[line].drop(while: { $0 == 0x20 }).starts(with: Array(">>>".utf8)) { return nil }
                if fence(in: line, at: at) != nil {
                    let prefix = b[line.lowerBound..<at]
                    guard prefix.allSatisfy({ $0 == 0x20 }), prefix.count <= 3 else { return nil }
                }
            }
            // Raw HTML and autolinks outrank code spans where they start first: one holding a
            // backtick (`<https://a/`>`, `<b title=">`">`, `<? ` ?>`) changes which backticks pair.
            // A tag ends at the first `>` outside quotes, a processing instruction at `?>`, a CDATA
            // section at `]]>`; one that does not end reaches the end of the text.
            var i = 0
            while i < b.count {
                guard b[i] == UInt8(ascii: "<"), i + 1 < b.count, Self.opensTag(b[i + 1]) else { i += 1; continue }
                var end = b.count
                if b[i + 1] == UInt8(ascii: "?") {
                    end = Self.find(Array("?>".utf8), in: b, from: i + 2).map { $0 + 2 } ?? b.count
                } else if b[(i + 1)...].starts(with: Array("![CDATA[".utf8)) {
                    end = Self.find(Array("]]>".utf8), in: b, from: i + 9).map { $0 + 3 } ?? b.count
                } else {
                    var j = i + 1
                    var quote: UInt8? = nil
                    while j < b.count {
                        if let open = quote {
                            if b[j] == open { quote = nil }
                        } else if b[j] == UInt8(ascii: "\"") || b[j] == UInt8(ascii: "'") {
                            quote = b[j]
                        } else if b[j] == UInt8(ascii: ">") {
                            end = j + 1
                            break
                        }
                        j += 1
                    }
                }
                if b[i..<end].contains(Self.backtick) { return nil }
                i = end
            }

            // A link's destination and title (`[x](/`) …`, `[x](/u "a) `")`, a title over two
            // lines, a reference definition `[r]: /u "`"`) and a bare URL (`https://e.com/` …`) are
            // read before code spans: a backtick in one pairs with none.
            for opener in [Array("](".utf8), Array("]:".utf8), Array("://".utf8), Array("www.".utf8)] {
                var at = 0
                while let found = Self.find(opener, in: b, from: at) {
                    at = found + 1
                    guard opener[0] == UInt8(ascii: "]") else {
                        var j = found + opener.count
                        while j < b.count, b[j] != UInt8(ascii: " "), b[j] != UInt8(ascii: "\n"), b[j] != UInt8(ascii: "\t") {
                            if b[j] == Self.backtick { return nil }
                            j += 1
                        }
                        continue
                    }
                    if opener[1] == UInt8(ascii: ":"), !startsDefinition(at: found) { continue }
                    if linkTailHoldsBacktick(from: found + 2) { return nil }
                }
            }

            var found: [Range<Int>] = []
            var paragraph: Range<Int>? = nil
            func closeParagraph() -> Bool {
                defer { paragraph = nil }
                guard let p = paragraph else { return true }
                guard let spans = inlineSpans(in: p) else { return false }
                found += spans
                return true
            }
            var l = 0
            while l < lines.count {
                let line = lines[l]
                guard let indent = indentation(line) else {
                    if startsHTML(line) { return nil }
                    if isBlank(line) { guard closeParagraph() else { return nil } } else { paragraph = (paragraph?.lowerBound ?? line.lowerBound)..<line.upperBound }
                    l += 1
                    continue
                }
                if let open = fence(in: line, at: line.lowerBound + indent) {
                    if open.char == Self.backtick, b[(line.lowerBound + indent + open.length)..<line.upperBound].contains(Self.backtick) { return nil }
                    guard closeParagraph() else { return nil }
                    // The closing fence: the same character, at least as long, nothing after it but spaces.
                    var closer: Int? = nil
                    var k = l + 1
                    while k < lines.count {
                        let candidate = lines[k]
                        if isBlank(candidate) { k += 1; continue }
                        guard let depth = indentation(candidate) else { return nil }
                        let closes = fence(in: candidate, at: candidate.lowerBound + depth).map {
                            $0.char == open.char && $0.length >= open.length
                                && b[(candidate.lowerBound + depth + $0.length)..<candidate.upperBound].allSatisfy { $0 == 0x20 || $0 == 0x09 }
                        } ?? false
                        if closes {
                            // Closes here for certain only at the opener's depth up to three spaces;
                            // a little deeper or shallower it may close (or end a list item) or not.
                            if depth <= 3, depth >= indent { closer = k; break }
                            if depth <= indent + 3 { return nil }
                        }
                        if depth < indent { return nil }
                        k += 1
                    }
                    guard let end = closer else { return nil }
                    found.append(line.lowerBound..<lines[end].upperBound)
                    l = end + 1
                    continue
                }
                if startsHTML(line) { return nil }
                if isBlank(line) {
                    guard closeParagraph() else { return nil }
                } else {
                    paragraph = (paragraph?.lowerBound ?? line.lowerBound)..<line.upperBound
                }
                l += 1
            }
            guard closeParagraph() else { return nil }
            return found.sorted { $0.lowerBound < $1.lowerBound }
        }

        /// Whether a line starts (after quote and list markers) with `<`: an HTML block, as the
        /// platforms may read it. Lines inside a fenced block that certainly closes are code.
        func startsHTML(_ line: Range<Int>) -> Bool {
            let markers: Set<UInt8> = Set(" \t>*+-.)0123456789".utf8)
            var at = line.lowerBound
            while at < line.upperBound, markers.contains(b[at]) { at += 1 }
            return at < line.upperBound && b[at] == UInt8(ascii: "<")
        }

        /// Whether the `]:` at `at` ends a link reference definition's label: its line starts
        /// (after quote and list markers) with `[`.
        func startsDefinition(at: Int) -> Bool {
            var start = at
            while start > 0, b[start - 1] != UInt8(ascii: "\n") { start -= 1 }
            let markers: Set<UInt8> = Set(" \t>*+-.)0123456789".utf8)
            while start < at, markers.contains(b[start]) { start += 1 }
            return start < at && b[start] == UInt8(ascii: "[")
        }

        /// Whether a link's destination and title, from `from` (after `](` or `]:`), hold a
        /// backtick: the destination up to a space or an unbalanced `)` (`<…>` up to `>`), then after spaces and
        /// at most one line break a title in `"…"`, `'…'` or `(…)` up to its unescaped closing
        /// character or a blank line.
        func linkTailHoldsBacktick(from: Int) -> Bool {
            var j = from
            func skipSpace() {
                var breaks = 0
                while j < b.count, b[j] == 0x20 || b[j] == 0x09 || (b[j] == UInt8(ascii: "\n") && breaks == 0) || b[j] == UInt8(ascii: "\r") {
                    if b[j] == UInt8(ascii: "\n") { breaks += 1 }
                    j += 1
                }
            }
            skipSpace()
            // A backslash escapes the next character (`\)`, `\>`); parentheses nest (`/u(x)`).
            if j < b.count, b[j] == UInt8(ascii: "<") {
                j += 1
                while j < b.count, b[j] != UInt8(ascii: ">"), b[j] != UInt8(ascii: "\n") {
                    if b[j] == Self.backtick { return true }
                    if b[j] == UInt8(ascii: "\\") {
                        if j + 1 < b.count, b[j + 1] == Self.backtick { return true }
                        j += 2
                        continue
                    }
                    j += 1
                }
                j += 1
            } else {
                var depth = 0
                while j < b.count, b[j] != 0x20, b[j] != 0x09, b[j] != UInt8(ascii: "\n") {
                    if b[j] == Self.backtick { return true }
                    if b[j] == UInt8(ascii: "\\") {
                        if j + 1 < b.count, b[j + 1] == Self.backtick { return true }
                        j += 2
                        continue
                    }
                    if b[j] == UInt8(ascii: "(") { depth += 1 }
                    if b[j] == UInt8(ascii: ")") {
                        if depth == 0 { break }
                        depth -= 1
                    }
                    j += 1
                }
            }
            skipSpace()
            guard j < b.count, b[j] == UInt8(ascii: "\"") || b[j] == UInt8(ascii: "'") || b[j] == UInt8(ascii: "(") else { return false }
            let closing = b[j] == UInt8(ascii: "(") ? UInt8(ascii: ")") : b[j]
            j += 1
            var lineIsBlank = false
            while j < b.count, b[j] != closing {
                if b[j] == Self.backtick { return true }
                if b[j] == UInt8(ascii: "\n") {
                    if lineIsBlank { return false }
                    lineIsBlank = true
                } else if b[j] != 0x20, b[j] != 0x09, b[j] != UInt8(ascii: "\r") {
                    lineIsBlank = false
                }
                j += b[j] == UInt8(ascii: "\\") ? 2 : 1
            }
            return false
        }

        static func find(_ needle: [UInt8], in haystack: [UInt8], from start: Int) -> Int? {
            guard needle.count <= haystack.count, start <= haystack.count - needle.count else { return nil }
            var i = start
            while i <= haystack.count - needle.count {
                if haystack[i] == needle[0], haystack[i..<(i + needle.count)].elementsEqual(needle) { return i }
                i += 1
            }
            return nil
        }

        /// `<` followed by this starts an autolink, a tag, a comment, a declaration or a processing instruction.
        static func opensTag(_ byte: UInt8) -> Bool {
            (byte | 0x20) >= UInt8(ascii: "a") && (byte | 0x20) <= UInt8(ascii: "z") || byte == UInt8(ascii: "/") || byte == UInt8(ascii: "!")
                || byte == UInt8(ascii: "?")
        }

        /// A paragraph's code spans: a run of backticks that is not escaped opens one that the next
        /// run of the same length closes; a run no later run matches is literal. A backslash before a
        /// backtick escapes it (inside code a backslash is itself). Nil when a span would reach over
        /// a line (the paragraph may be several blocks, a heading or a list item's lines, for the
        /// platform) or hold a `|` (a table cell ends there).
        func inlineSpans(in paragraph: Range<Int>) -> [Range<Int>]? {
            var runs: [(start: Int, end: Int, escaped: Bool)] = []
            var backslashes = 0
            var i = paragraph.lowerBound
            while i < paragraph.upperBound {
                guard b[i] == Self.backtick else {
                    backslashes = b[i] == UInt8(ascii: "\\") ? backslashes + 1 : 0
                    i += 1
                    continue
                }
                let start = i
                while i < paragraph.upperBound, b[i] == Self.backtick { i += 1 }
                runs.append((start, i, backslashes % 2 == 1))
                backslashes = 0
            }
            var found: [Range<Int>] = []
            var r = 0
            while r < runs.count {
                var opener = runs[r]
                if opener.escaped {
                    // The first backtick is a literal one; the rest of the run may open a span.
                    opener.start += 1
                    guard opener.start < opener.end else { r += 1; continue }
                }
                let length = opener.end - opener.start
                if let close = runs[(r + 1)...].firstIndex(where: { $0.end - $0.start == length }) {
                    let span = opener.start..<runs[close].end
                    if b[span].contains(UInt8(ascii: "\n")) || b[span].contains(UInt8(ascii: "|")) { return nil }
                    found.append(span)
                    r = close + 1
                } else {
                    r += 1
                }
            }
            return found
        }
    }
}
