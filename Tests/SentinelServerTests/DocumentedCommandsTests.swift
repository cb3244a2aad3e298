import Foundation
import SentinelTestSupport
import Testing

/// Every `sentinel …` command shown in a code block of appliance/INSTALL.md and README.md names
/// subcommands and options the built binary has. Checked against the binary's own `--help`
/// (the ArgumentParser command tree), so a renamed or removed command or option fails here.
@Suite("documented commands exist")
struct DocumentedCommandsTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// One `sentinel` invocation in a document: the words after the executable, up to the end of
    /// the command (a pipe, `&&`, `;`, a redirection or a comment).
    struct Invocation: CustomStringConvertible {
        var file: String
        var words: [String]
        var description: String { "\(file): `sentinel \(words.joined(separator: " "))`" }
    }

    /// Shell-like words: whitespace-separated, quotes group and are removed.
    static func shellWords(_ line: String) -> [String] {
        var words: [String] = []
        var current = ""
        var inWord = false
        var quote: Character?
        for c in line {
            if let q = quote {
                if c == q { quote = nil } else { current.append(c) }
            } else if c == "'" || c == "\"" {
                quote = c
                inWord = true
            } else if c == " " || c == "\t" {
                if inWord { words.append(current); current = ""; inWord = false }
            } else {
                current.append(c)
                inWord = true
            }
        }
        if inWord { words.append(current) }
        return words
    }

    static func invocations(in markdown: String, file: String) -> [Invocation] {
        var out: [Invocation] = []
        var inShellBlock = false
        var inBlock = false
        var pending = ""
        for raw in markdown.components(separatedBy: "\n") {
            let trimmed = raw.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("```") {
                if inBlock { inBlock = false; inShellBlock = false } else {
                    inBlock = true
                    inShellBlock = ["", "sh", "bash", "shell", "console"].contains(trimmed.dropFirst(3).trimmingCharacters(in: .whitespaces))
                }
                pending = ""
                continue
            }
            guard inShellBlock else { continue }
            if trimmed.hasSuffix("\\") { pending += String(trimmed.dropLast()) + " "; continue }
            let line = pending + trimmed
            pending = ""
            let tokens = shellWords(line)
            for (i, token) in tokens.enumerated() where token == "sentinel" || token.hasSuffix("/sentinel") {
                let previous = i > 0 ? tokens[i - 1] : nil
                let atCommand = i == 0
                    || ["--", "|", "&&", ";", "exec", "then", "do"].contains(previous ?? "")
                    || (previous == "run" && i >= 2 && tokens[i - 2] == "swift")
                    || (i >= 3 && tokens[i - 2] == "-u" && ["sudo", "runuser"].contains(tokens[i - 3]))
                guard atCommand, !token.hasPrefix("#") else { continue }
                var words: [String] = []
                for word in tokens[(i + 1)...] {
                    if ["|", "||", "&&", ";"].contains(word) || word.hasPrefix("#") || word.hasPrefix(">") || word.hasPrefix("2>") { break }
                    words.append(word)
                }
                // `rotate|enable|disable` shows alternatives: one invocation each.
                if let at = words.firstIndex(where: { !$0.hasPrefix("-") && $0.contains("|") }) {
                    for alternative in words[at].split(separator: "|") {
                        var variant = words
                        variant[at] = String(alternative)
                        out.append(Invocation(file: file, words: variant))
                    }
                } else {
                    out.append(Invocation(file: file, words: words))
                }
            }
        }
        return out
    }

    /// Subcommand names listed under SUBCOMMANDS: in a help text.
    static func subcommands(_ help: String) -> Set<String> {
        var names = Set<String>()
        var inSection = false
        for line in help.components(separatedBy: "\n") {
            if line.hasPrefix("SUBCOMMANDS:") { inSection = true; continue }
            guard inSection else { continue }
            if !line.hasPrefix(" ") && !line.isEmpty { break }
            let words = line.split(separator: " ")
            if line.hasPrefix("  "), let first = words.first, !line.contains("See '") { names.insert(String(first)) }
        }
        return names
    }

    /// The problems in `invocations`, checked against the built binary's help texts.
    static func problems(_ invocations: [Invocation]) async throws -> [String] {
        var helps: [[String]: String] = [:]
        func help(_ path: [String]) async throws -> String {
            if let cached = helps[path] { return cached }
            let result = try await SentinelProcess.run(path + ["--help"])
            #expect(result.status == 0, "sentinel \(path.joined(separator: " ")) --help exited \(result.status): \(result.stderr)")
            helps[path] = result.stdout
            return result.stdout
        }
        var problems: [String] = []
        next: for invocation in invocations {
            var path: [String] = []
            var rest = invocation.words[...]
            while true {
                let subs = subcommands(try await help(path))
                if subs.isEmpty { break }
                guard let word = rest.first, !word.hasPrefix("-") else {
                    if !rest.contains(where: { $0 == "--help" || $0 == "--version" }) {
                        problems.append("\(invocation): `sentinel \(path.joined(separator: " "))` needs a subcommand (\(subs.sorted().joined(separator: ", ")))")
                    }
                    continue next
                }
                guard subs.contains(word) else {
                    problems.append("\(invocation): `sentinel \(path.joined(separator: " "))` has no subcommand '\(word)'")
                    continue next
                }
                path.append(word)
                rest = rest.dropFirst()
            }
            let leaf = try await help(path)
            for word in rest where word.hasPrefix("--") && word.count > 2 {
                let option = String(word.split(separator: "=", maxSplits: 1)[0])
                if !leaf.contains(option + " ") && !leaf.contains(option + "\n") && !leaf.contains(option + ",") {
                    problems.append("\(invocation): `sentinel \(path.joined(separator: " "))` has no option \(option)")
                }
            }
        }
        return problems
    }

    @Test("every sentinel command in INSTALL.md and README.md code blocks exists, with the options shown")
    func documentedCommandsExist() async throws {
        var all: [Invocation] = []
        for file in ["appliance/INSTALL.md", "README.md"] {
            let text = try String(contentsOf: Self.root.appendingPathComponent(file), encoding: .utf8)
            let found = Self.invocations(in: text, file: file)
            #expect(!found.isEmpty, "no sentinel command found in \(file)")
            all += found
        }
        // The documents show these; if extraction misses them, the check below proves nothing.
        let shown = Set(all.map { $0.words.prefix(2).joined(separator: " ") })
        for expected in ["litestream config", "backup --data-dir", "restore --data-dir", "verify --data-dir", "user create", "workspace create"] {
            #expect(shown.contains(expected), "`sentinel \(expected)` was not found in the documents")
        }
        let problems = try await Self.problems(all)
        #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
    }

    @Test("a missing subcommand, an unknown option and a bare command group are reported")
    func reportsWhatDoesNotExist() async throws {
        let markdown = """
            Text mentioning sentinel frobnicate is not a command.

            ```sh
            sudo -u sentinel sentinel workspace frobnicate --data-dir /var/lib/sentinel
            sentinel backup --data-dir /x --out /y --compress   # an option backup does not have
            sentinel jobs retry|frob --workspace W JOB
            runuser -u sentinel -- sentinel workspace
            systemctl restart sentinel
            sentinel verify \\
                 --data-dir /var/lib/sentinel
            ```

            ```yaml
            sentinel nothing: here
            ```
            """
        let found = Self.invocations(in: markdown, file: "doc")
        #expect(found.map(\.words) == [["workspace", "frobnicate", "--data-dir", "/var/lib/sentinel"],
                                       ["backup", "--data-dir", "/x", "--out", "/y", "--compress"],
                                       ["jobs", "retry", "--workspace", "W", "JOB"], ["jobs", "frob", "--workspace", "W", "JOB"],
                                       ["workspace"], ["verify", "--data-dir", "/var/lib/sentinel"]])
        let problems = try await Self.problems(found)
        #expect(problems.count == 4, "\(problems)")
        #expect(problems.contains { $0.contains("no subcommand 'frob'") })
        #expect(problems.contains { $0.contains("no subcommand 'frobnicate'") })
        #expect(problems.contains { $0.contains("has no option --compress") })
        #expect(problems.contains { $0.contains("`sentinel workspace` needs a subcommand") })
    }
}
