import Foundation

/// GitLab's quick actions, as its `Gitlab::QuickActions::Extractor` finds them in a note's body:
/// a line that is `/` + a known command name (any case), optionally a space and an argument, is
/// taken out of the note and run with the permissions of the note's author. Lines inside a code
/// region (a line starting with three backticks up to the next line that is exactly three
/// backticks), an HTML block or a `>>>` quote block are left alone. Carriage returns are deleted
/// before matching.
public enum FakeGitLabQuickActions {
    /// The commands a merge request note can carry (GitLab's documentation, "Quick actions").
    public static let commandNames: Set<String> = [
        "approve", "unapprove", "merge", "close", "reopen", "assign", "unassign", "assign_reviewer", "reviewer",
        "request_review", "unassign_reviewer", "remove_reviewer", "label", "labels", "unlabel", "remove_label", "relabel",
        "milestone", "remove_milestone", "title", "draft", "ready", "wip", "lock", "unlock", "due", "remove_due_date",
        "estimate", "remove_estimate", "spend", "spent", "remove_time_spent", "target_branch", "rebase", "submit_review",
        "todo", "done", "subscribe", "unsubscribe", "award", "react", "copy_metadata", "cc", "shrug", "tableflip",
        "create_merge_request", "board_move", "assign_me", "unassign_me",
    ]

    /// The note's remaining text (trailing whitespace trimmed, as GitLab's `rstrip`) and the commands,
    /// each `[name]` or `[name, argument]`.
    public static func extract(_ body: String) -> (text: String, commands: [[String]]) {
        let lines = body.replacingOccurrences(of: "\r", with: "").split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var kept: [String] = []
        var commands: [[String]] = []
        var i = 0
        while i < lines.count {
            if let end = excludedRegionEnd(lines, from: i) {
                kept.append(contentsOf: lines[i...end])
                i = end + 1
                continue
            }
            if let command = command(in: lines[i]) {
                commands.append(command)
            } else {
                kept.append(lines[i])
            }
            i += 1
        }
        var text = kept.joined(separator: "\n")
        while let last = text.last, last.isWhitespace { text.removeLast() }
        return (text, commands)
    }

    /// The last line of a code, HTML or `>>>` region starting at `start`, if one does.
    static func excludedRegionEnd(_ lines: [String], from start: Int) -> Int? {
        let line = lines[start]
        guard start + 1 < lines.count else { return nil }
        if line.hasPrefix("```") {
            // `^```.+?\n```$`: at least one character after the opening backticks (the newline counts).
            return lines[(start + 1)...].firstIndex { $0.hasPrefix("```") && $0.count == 3 }
        }
        if line == ">>>" {
            return lines[(start + 1)...].firstIndex { $0 == ">>>" }
        }
        if line.hasPrefix("<"), line.hasSuffix(">"), line.count > 2, !line.dropFirst().dropLast().contains(">") {
            return lines[(start + 1)...].firstIndex { $0.hasPrefix("</") && $0.hasSuffix(">") && $0.count > 3 }
        }
        return nil
    }

    static func command(in line: String) -> [String]? {
        guard line.hasPrefix("/") else { return nil }
        let rest = line.dropFirst()
        let name = rest.prefix { $0 != " " }
        guard commandNames.contains(name.lowercased()) else { return nil }
        let argument = rest.dropFirst(name.count).drop { $0 == " " }.trimmingCharacters(in: .whitespaces)
        return argument.isEmpty ? [name.lowercased()] : [name.lowercased(), argument]
    }
}
