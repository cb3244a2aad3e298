/// GitLab runs a note's line that starts with `/` and a command name (`/approve`, `/merge`,
/// `/assign @x`, `/label ~y`) as a quick action, with the permissions of the note's author, and
/// takes it out of the note. Sentinel's notes carry model text, which the merge request's own
/// content can steer, under the integration's user: such a line could approve or merge the merge
/// request. So before a note goes out, every line GitLab would read as a command gets a backslash
/// in front (`\/approve`: Markdown shows `/approve`, GitLab runs nothing).
///
/// GitLab leaves lines alone inside a code region: from a line starting with three backticks to
/// the next line that is exactly three backticks (`^```.+?\n```$`); such lines are kept as they
/// are (code shows backslashes). Any other line starting with `/` and a letter, digit or
/// underscore is escaped, whatever the name: the command set grows with GitLab's versions, and
/// GitLab's other exclusions (HTML and `>>>` blocks, inline code) are not relied on. A suggested
/// change that GitLab would not shield (a four-backtick fence around code with a three-backtick
/// line, then such a line) cannot be escaped without changing the code it proposes: it is left out
/// of the note with a sentence saying so.
public enum GitLabQuickActions {
    public static let omittedSuggestion = "_(A suggested change was left out here: a line of it would have run as a GitLab quick action.)_"

    public static func neutralize(_ text: String) -> String {
        guard text.utf8.contains(UInt8(ascii: "/")) else { return text }
        // Split on the byte, as GitLab does: a Character "\r\n" is one grapheme to `String.split`.
        var lines = text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map { String(Substring($0)) }
        // Leaving a suggestion out can change which lines GitLab shields, so look again after each.
        for _ in 0..<8 {
            let live = liveLines(lines)
            guard !live.isEmpty, let block = suggestionBlocks(lines).first(where: { block in live.contains { block.contains($0) } }) else { break }
            lines.replaceSubrange(block, with: [omittedSuggestion])
        }
        let live = liveLines(lines)
        guard !live.isEmpty else { return lines.joined(separator: "\n") }
        for i in live { lines[i] = "\\" + lines[i] }
        return lines.joined(separator: "\n")
    }

    /// The lines GitLab would read as a command (outside its code regions), by index.
    static func liveLines(_ lines: [String]) -> Set<Int> {
        var live: Set<Int> = []
        var i = 0
        while i < lines.count {
            let line = withoutCarriageReturns(lines[i])
            if line.hasPrefix("```"), i + 1 < lines.count,
               let end = lines[(i + 1)...].firstIndex(where: { withoutCarriageReturns($0) == "```" }) {
                i = end + 1
                continue
            }
            if looksLikeCommand(line) { live.insert(i) }
            i += 1
        }
        return live
    }

    /// `/` then an ASCII letter, digit or underscore at the very start of the line.
    static func looksLikeCommand(_ line: Substring) -> Bool {
        var bytes = line.utf8.makeIterator()
        guard bytes.next() == UInt8(ascii: "/"), let c = bytes.next() else { return false }
        return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == UInt8(ascii: "_")
    }

    /// GitLab deletes carriage returns before it looks for commands.
    static func withoutCarriageReturns(_ line: String) -> Substring {
        line.utf8.contains(UInt8(ascii: "\r")) ? Substring(String(String.UnicodeScalarView(line.unicodeScalars.filter { $0 != "\r" }))) : Substring(line)
    }

    /// The line ranges of suggestion fences (`` ```suggestion:-N+0 `` … the same backticks).
    static func suggestionBlocks(_ lines: [String]) -> [ClosedRange<Int>] {
        var blocks: [ClosedRange<Int>] = []
        var i = 0
        while i < lines.count {
            let fence = lines[i].prefix { $0 == "`" }
            if fence.count >= 3, lines[i].dropFirst(fence.count).hasPrefix("suggestion"),
               let end = lines[(i + 1)...].firstIndex(where: { $0 == fence }) {
                blocks.append(i...end)
                i = end + 1
            } else {
                i += 1
            }
        }
        return blocks
    }
}
