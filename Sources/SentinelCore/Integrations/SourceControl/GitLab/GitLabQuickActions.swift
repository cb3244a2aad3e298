/// GitLab runs a note's line that starts with `/` and a command name (`/approve`, `/merge`,
/// `/assign @x`, `/label ~y`) as a quick action, with the permissions of the note's author, and
/// takes it out of the note. Sentinel's notes carry model text, which the merge request's own
/// content can steer, under the integration's user: such a line could approve or merge the merge
/// request. So before a note goes out, every line GitLab could read as a command gets a backslash
/// in front (`\/approve`: Markdown shows `/approve`, GitLab runs nothing).
///
/// Every line that starts with `/` and an ASCII letter, digit or underscore counts, whatever the
/// name (the command set grows with GitLab's versions) and wherever it stands: GitLab skips code
/// blocks, HTML blocks and `>>>` quotes when it looks for commands, but which lines those cover is
/// decided by patterns that model text can play against each other (an HTML block that swallows a
/// fence's first line leaves the fence's content open), so no such block is relied on. In a code
/// block the backslash shows. A suggested change with such a line cannot be escaped without
/// changing the code it proposes: it is left out of the note with a sentence saying so.
public enum GitLabQuickActions {
    public static let omittedSuggestion = "_(A suggested change was left out here: a line of it would have run as a GitLab quick action.)_"

    public static func neutralize(_ text: String) -> String {
        guard text.utf8.contains(UInt8(ascii: "/")) else { return text }
        // Split on the byte, as GitLab does: a Character "\r\n" is one grapheme to `String.split`.
        var lines = text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map { String(Substring($0)) }
        guard lines.contains(where: looksLikeCommand) else { return text }
        for block in suggestionBlocks(lines).reversed() where block.contains(where: { looksLikeCommand(lines[$0]) }) {
            lines.replaceSubrange(block, with: [omittedSuggestion])
        }
        for i in lines.indices where looksLikeCommand(lines[i]) { lines[i] = "\\" + lines[i] }
        return lines.joined(separator: "\n")
    }

    /// `/` then an ASCII letter, digit or underscore at the very start of the line, once carriage
    /// returns are deleted (GitLab deletes them before it looks for commands).
    static func looksLikeCommand(_ line: String) -> Bool {
        var bytes = line.utf8.lazy.filter { $0 != UInt8(ascii: "\r") }.makeIterator()
        guard bytes.next() == UInt8(ascii: "/"), let c = bytes.next() else { return false }
        return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == UInt8(ascii: "_")
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
