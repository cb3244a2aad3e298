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

    /// Where `text`'s code spans are, backticks included, in order: a run of backticks that is not
    /// escaped opens one that the next run of the same length closes; a run no later run matches is
    /// literal. A backslash before a backtick outside code escapes it (a backslash inside code is
    /// itself). Fenced code blocks read as spans of their fences, which is where their text is too.
    static func spans(in text: String) -> [Range<String.Index>] {
        guard text.utf8.contains(UInt8(ascii: "`")) else { return [] }
        var runs: [(start: String.Index, end: String.Index, length: Int, escaped: Bool)] = []
        var backslashes = 0
        var i = text.startIndex
        while i < text.endIndex {
            let ch = text[i]
            guard ch == "`" else {
                backslashes = ch == "\\" ? backslashes + 1 : 0
                i = text.index(after: i)
                continue
            }
            let start = i
            var length = 0
            while i < text.endIndex, text[i] == "`" {
                length += 1
                i = text.index(after: i)
            }
            runs.append((start, i, length, backslashes % 2 == 1))
            backslashes = 0
        }
        var found: [Range<String.Index>] = []
        var r = 0
        while r < runs.count {
            var opener = runs[r]
            if opener.escaped {
                // The first backtick is a literal one; the rest of the run may open a span.
                opener.length -= 1
                opener.start = text.index(after: opener.start)
                opener.escaped = false
                guard opener.length > 0 else { r += 1; continue }
            }
            // A closing run is read without escapes: inside code a backslash is itself.
            if let close = runs[(r + 1)...].firstIndex(where: { $0.length == opener.length }) {
                found.append(opener.start..<runs[close].end)
                r = close + 1
            } else {
                r += 1
            }
        }
        return found
    }
}
