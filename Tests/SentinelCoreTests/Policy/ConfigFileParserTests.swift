import Testing
import Foundation
import SentinelCore
import SentinelTestSupport

/// The full example from docs/configuration.md.
let sentinelYmlFullExample = """
version: 1
review:
  auto_review:
    drafts: false
  paths:
    include: []
    exclude:
      - "**/*.generated.swift"
      - "vendor/**"
      - "*.lock"
  instructions: |
    Focus on correctness, security and concurrency.
    Do not comment on formatting.
  path_instructions:
    "Sources/**/*.swift": "Check Swift 6 strict concurrency: Sendable and actor isolation."
    "migrations/**": Every migration must be reversible.
  min_severity: medium
  max_comments: 30
  fail_on: high
  event: request_changes
  language: en
ai:
  providers: [anthropic, openai]
  allowed_models: ["claude-sonnet-4*", gpt-4o]

"""

@Suite(".sentinel.yml parser")
struct ConfigFileParserTests {
    /// The text at a diagnostic's position starts with `prefix` (checks line/column point at the value).
    func text(at d: ConfigDiagnostic, in yaml: String) -> String {
        let lines = yaml.split(separator: "\n", omittingEmptySubsequences: false)
        guard d.line - 1 < lines.count else { return "" }
        let scalars = Array(lines[d.line - 1].unicodeScalars)
        guard d.column - 1 <= scalars.count else { return "" }
        return String(String.UnicodeScalarView(scalars[(d.column - 1)...]))
    }

    @Test func fullExampleParsesEveryKey() {
        let parsed = RepositoryConfigParser.parse(sentinelYmlFullExample)
        #expect(parsed.diagnostics == [])
        #expect(parsed.version == 1)
        #expect(Set(parsed.values.keys) == Set(PolicySchema.keys.map(\.path)).subtracting(PolicySchema.settingsOnlyKeys))
        #expect(parsed.values == [
            "review.auto_review.drafts": .bool(false),
            "review.paths.include": .list([]),
            "review.paths.exclude": .list(["**/*.generated.swift", "vendor/**", "*.lock"]),
            "review.instructions": .string("Focus on correctness, security and concurrency.\nDo not comment on formatting.\n"),
            "review.path_instructions": .map([
                "Sources/**/*.swift": "Check Swift 6 strict concurrency: Sendable and actor isolation.",
                "migrations/**": "Every migration must be reversible.",
            ]),
            "review.min_severity": .string("medium"),
            "review.max_comments": .int(30),
            "review.fail_on": .string("high"),
            "review.event": .string("request_changes"),
            "review.language": .string("en"),
            "ai.providers": .list(["anthropic", "openai"]),
            "ai.allowed_models": .list(["claude-sonnet-4*", "gpt-4o"]),
        ])
        let layer = parsed.layerInput(versionID: "abc")
        #expect(layer.layer == .repositoryFile && layer.values == parsed.values && layer.versionID == "abc")
    }

    @Test("an ai.providers entry that is neither a provider kind nor a provider id is a warning (it matched no provider, without a word); the value is kept")
    func providerNamesNoProvider() {
        let parsed = RepositoryConfigParser.parse("version: 1\nai:\n  providers: [claude, Anthropic, prv_0123456789abcdef, openai-compatible]\n")
        #expect(parsed.errors == [])
        #expect(parsed.warnings.map(\.message) == ["ai.providers[0]: 'claude' names no provider: give a kind (openai, azure-openai, anthropic, gemini, openai-compatible) or a provider id (prv_…, `sentinel provider list`)"])
        #expect(parsed.values["ai.providers"] == .list(["claude", "Anthropic", "prv_0123456789abcdef", "openai-compatible"]))
    }

    @Test(arguments: ["", "\n\n  \n", "# only a comment\n", "---\n", "~\n", "---\n...\n"])
    func emptyFileHasNoValuesAndNoDiagnostics(_ yaml: String) {
        let parsed = RepositoryConfigParser.parse(yaml)
        #expect(parsed.values.isEmpty)
        #expect(parsed.diagnostics.isEmpty)
    }

    @Test("the settings (sentinel config set) take the keys a pull request's own file may not change")
    func settingsTakeSettingsOnlyKeys() {
        let yaml = "version: 1\nreview:\n  enabled: false\n  builtin_checks: false\n  auto_review:\n    on_open: false\n    on_push: false\n"
        let settings = RepositoryConfigParser.parse(yaml, file: "ws.yml", settings: true)
        #expect(settings.diagnostics.isEmpty, "\(settings.diagnostics)")
        #expect(settings.values["review.enabled"] == .bool(false) && settings.values["review.builtin_checks"] == .bool(false))
        #expect(settings.values["review.auto_review.on_open"] == .bool(false) && settings.values["review.auto_review.on_push"] == .bool(false))
        let file = RepositoryConfigParser.parse(yaml)
        #expect(file.values["review.enabled"] == nil && file.warnings.count == 4)
        // In settings a misspelled key is an error (as the API's 400): saved without it, the version
        // replaced the settings it meant to change. A missing version stays a warning.
        let typo = RepositoryConfigParser.parse("review:\n  max_coments: 10\n", file: "ws.yml", settings: true)
        #expect(typo.hasErrors && typo.errors.first?.message.contains("unknown key 'review.max_coments'") == true, "\(typo.diagnostics)")
        #expect(typo.warnings.count == 1 && typo.warnings.first?.key == "version")
        #expect(!RepositoryConfigParser.parse("review:\n  max_coments: 10\n").hasErrors, "a pull request's file only warns")
    }

    @Test("review.builtin_checks in a .sentinel.yml is a warning at the key and is not applied: only the settings turn the built-in checks off")
    func settingsOnlyKeyIgnored() {
        let yaml = "version: 1\nreview:\n  builtin_checks: false\n  max_comments: 3\n"
        let parsed = RepositoryConfigParser.parse(yaml)
        #expect(parsed.values == ["review.max_comments": .int(3)])
        #expect(!parsed.hasErrors)
        let warning = try? #require(parsed.diagnostics.first)
        #expect(parsed.diagnostics.count == 1)
        #expect(warning?.severity == .warning && warning?.line == 3 && warning?.key == "review.builtin_checks", "\(parsed.diagnostics)")
        #expect(warning?.message.contains("only the workspace or repository settings change it") == true)
        let resolved = try? PolicyService.resolve(fileText: yaml)
        #expect(resolved?.effective.values["review.builtin_checks"] == .bool(true))
        #expect(resolved?.effective.values["review.max_comments"] == .int(3))
    }

    @Test func missingVersionWarns() {
        let parsed = RepositoryConfigParser.parse("review:\n  max_comments: 3\n")
        #expect(parsed.diagnostics.map(\.formatted) == [".sentinel.yml:1:1: warning: missing 'version: 1'; assuming version 1"])
        #expect(!parsed.hasErrors)
        #expect(parsed.values == ["review.max_comments": .int(3)])
        #expect(parsed.layerInput(versionID: nil).values == ["review.max_comments": .int(3)])
    }

    @Test func otherVersionIsAnError() {
        let yaml = "version: 2\nreview:\n  max_comments: 3\n"
        let parsed = RepositoryConfigParser.parse(yaml)
        #expect(parsed.diagnostics.map(\.formatted) == [".sentinel.yml:1:10: error: unsupported version 2 (this Sentinel reads version 1)"])
        #expect(parsed.version == 2)
        #expect(parsed.layerInput(versionID: nil).values.isEmpty)   // a file with errors is not applied

        let quoted = RepositoryConfigParser.parse("version: \"1\"\n")
        #expect(quoted.errors.map(\.message) == ["version: expected an integer, found the string '1'"])
    }

    @Test("a file nested past libyaml's 1,000 levels is one error in the file's words, not libyaml's C function")
    func nestedTooDeeply() {
        let parsed = RepositoryConfigParser.parse("version: 1\nreview:\n  paths:\n    exclude: " + String(repeating: "[", count: 5_000))
        #expect(parsed.diagnostics.map(\.formatted) == [
            ".sentinel.yml:4:15: error: invalid YAML: nested too deeply (more than 1,000 levels of lists and mappings)",
        ])
    }

    @Test func unknownKeysWarnWithTheDottedPath() {
        let yaml = """
        version: 1
        review:
          max_coments: 5
          auto_review:
            on_close: true
          paths:
            exclude: ["a/**"]
            ignore: ["b/**"]
          maxComments: 3
        min_severity: high
        telemetry: off
        ai:
          model: gpt-4o

        """
        let parsed = RepositoryConfigParser.parse(yaml)
        #expect(parsed.diagnostics.map(\.formatted) == [
            ".sentinel.yml:3:3: warning: unknown key 'review.max_coments' (did you mean 'review.max_comments'?)",
            ".sentinel.yml:5:5: warning: unknown key 'review.auto_review.on_close'",
            ".sentinel.yml:8:5: warning: unknown key 'review.paths.ignore'",
            ".sentinel.yml:9:3: warning: unknown key 'review.maxComments' (did you mean 'review.max_comments'?)",
            ".sentinel.yml:10:1: warning: unknown key 'min_severity' (did you mean 'review.min_severity'?)",
            ".sentinel.yml:11:1: warning: unknown key 'telemetry'",
            ".sentinel.yml:13:3: warning: unknown key 'ai.model'",
        ])
        #expect(parsed.diagnostics.map(\.key) == [
            "review.max_coments", "review.auto_review.on_close", "review.paths.ignore", "review.maxComments",
            "min_severity", "telemetry", "ai.model",
        ])
        #expect(!parsed.hasErrors)
        #expect(parsed.values == ["review.paths.exclude": .list(["a/**"])])
    }

    @Test func dottedKeysInTheFileAreNotAccepted() {
        let parsed = RepositoryConfigParser.parse("version: 1\nreview.max_comments: 5\nreview:\n  paths.exclude: [x]\n")
        #expect(parsed.diagnostics.map(\.formatted) == [
            ".sentinel.yml:2:1: warning: unknown key 'review.max_comments' (write it nested: 'review:' then 'max_comments')",
            ".sentinel.yml:4:3: warning: unknown key 'review.paths.exclude' (write it nested: 'paths:' then 'exclude')",
        ])
        #expect(parsed.values.isEmpty)
    }

    @Test func wrongTypesAreErrorsAtTheValuePosition() {
        let yaml = """
        version: 1
        review:
          event: "yes"
          max_comments: many
          auto_review:
            drafts: 1
          paths:
            exclude: "*.md"
          path_instructions: [a]
          instructions: [x]
          language: en
        ai:
          providers:
            - openai
            - {name: x}

        """
        let parsed = RepositoryConfigParser.parse(yaml)
        let expected: [(Int, Int, String, String)] = [
            (3, 10, "review.event: 'yes' is not one of comment, request_changes", "\"yes\""),
            (4, 17, "review.max_comments: expected an integer, found the string 'many'", "many"),
            (6, 13, "review.auto_review.drafts: expected a boolean (true or false), found the integer 1", "1"),
            (8, 14, "review.paths.exclude: expected a list of strings, found the string '*.md'", "\"*.md\""),
            (9, 22, "review.path_instructions: expected a map of glob to string, found a list", "[a]"),
            (10, 17, "review.instructions: expected a string, found a list", "[x]"),
            (15, 7, "ai.providers[1]: expected a string, found a map", "{name: x}"),
        ]
        #expect(parsed.diagnostics.count == expected.count)
        for (d, want) in zip(parsed.diagnostics, expected) {
            #expect(d.severity == .error)
            #expect(d.line == want.0, "\(d.formatted)")
            #expect(d.column == want.1, "\(d.formatted)")
            #expect(d.message == want.2)
            #expect(text(at: d, in: yaml).hasPrefix(want.3), "\(d.formatted)")
        }
        #expect(parsed.values == ["review.language": .string("en")])
        #expect(parsed.layerInput(versionID: nil).values.isEmpty)
    }

    @Test func nullValuesAreTypeErrors() {
        let yaml = "version: 1\nreview:\n  fail_on:\n  paths:\n    exclude:\n"
        let parsed = RepositoryConfigParser.parse(yaml)
        #expect(parsed.diagnostics.map(\.formatted) == [
            ".sentinel.yml:3:11: error: review.fail_on: expected one of none, info, low, medium, high, critical, found null",
            ".sentinel.yml:5:13: error: review.paths.exclude: expected a list of strings, found null; write [] for an empty list",
        ])
    }

    @Test func sectionsMustBeMappings() {
        let parsed = RepositoryConfigParser.parse("version: 1\nreview: true\nai:\n")
        #expect(parsed.diagnostics.map(\.formatted) == [".sentinel.yml:2:9: error: review: expected a mapping, found the boolean true"])
    }

    @Test func enumAndRangeViolations() {
        let yaml = """
        version: 1
        review:
          min_severity: severe
          fail_on: High
          event: approve
          max_comments: 201

        """
        let parsed = RepositoryConfigParser.parse(yaml)
        #expect(parsed.diagnostics.map(\.formatted) == [
            ".sentinel.yml:3:17: error: review.min_severity: 'severe' is not one of info, low, medium, high, critical",
            ".sentinel.yml:4:12: error: review.fail_on: 'High' is not one of none, info, low, medium, high, critical (did you mean 'high'?)",
            ".sentinel.yml:5:10: error: review.event: 'approve' is not one of comment, request_changes",
            ".sentinel.yml:6:17: error: review.max_comments: 201 is out of range (0...200)",
        ])
        for n in [0, 200] {
            #expect(RepositoryConfigParser.parse("version: 1\nreview:\n  max_comments: \(n)\n").values["review.max_comments"] == .int(n))
        }
        #expect(RepositoryConfigParser.parse("version: 1\nreview:\n  max_comments: -1\n").hasErrors)
        #expect(RepositoryConfigParser.parse("version: 1\nreview:\n  fail_on: none\n").values["review.fail_on"] == .string("none"))
    }

    @Test func yamlBooleansAndStrings() {
        let parsed = RepositoryConfigParser.parse("version: 1\nreview:\n  auto_review:\n    drafts: yes\n  language: no\n  instructions: 42\n")
        #expect(parsed.diagnostics.isEmpty)
        #expect(RepositoryConfigParser.parse("version: 1\nreview:\n  auto_review:\n    drafts: off\n").values["review.auto_review.drafts"] == .bool(false))
        #expect(parsed.values["review.auto_review.drafts"] == .bool(true))
        #expect(parsed.values["review.language"] == .string("no"))        // a string key keeps the text
        #expect(parsed.values["review.instructions"] == .string("42"))
    }

    @Test func invalidGlobsAreErrorsAtTheItem() {
        let yaml = "version: 1\nreview:\n  paths:\n    include:\n      - \"src/**\"\n      - \"src/[abc\"\n  path_instructions:\n    \"{a,b\": x\n"
        let parsed = RepositoryConfigParser.parse(yaml)
        #expect(parsed.diagnostics.map(\.formatted) == [
            ".sentinel.yml:6:9: error: review.paths.include[1]: invalid glob 'src/[abc': unclosed '['",
            ".sentinel.yml:8:5: error: review.path_instructions: invalid glob '{a,b': unclosed '{'",
        ])
    }

    // MARK: Invalid YAML

    @Test func invalidYAMLGivesOneLineNumberedError() {
        let cases: [(String, Int, Int, String)] = [
            ("version: 1\nreview:\n  enabled: true\n   max_comments: 3\n", 4, 16,
             "invalid YAML: mapping values are not allowed in this context"),
            ("version: 1\nreview:\n  paths:\n    exclude: [\"a\", \"b\"\n  language: en\n", 5, 3,
             "invalid YAML: did not find expected ',' or ']' (while parsing a flow sequence at line 4, column 14)"),
            ("version: 1\nreview:\n\tenabled: true\n", 3, 1,
             "invalid YAML: found character that cannot start any token (while scanning for the next token at line 3, column 1)"),
            ("version: 1\nreview:\n  instructions: \"unterminated\n", 4, 1,
             "invalid YAML: found unexpected end of stream (while scanning a quoted scalar at line 3, column 17)"),
        ]
        for (yaml, line, column, message) in cases {
            let parsed = RepositoryConfigParser.parse(yaml, file: "repo/.sentinel.yml")
            #expect(parsed.diagnostics.count == 1, "\(yaml)")
            let d = parsed.diagnostics.first
            #expect(d?.severity == .error)
            #expect(d?.line == line, "\(yaml)")
            #expect(d?.column == column, "\(yaml)")
            #expect(d?.message == message)
            #expect(d?.formatted == "repo/.sentinel.yml:\(line):\(column): error: \(message)")
            #expect(parsed.values.isEmpty)
        }
    }

    @Test func unquotedStarGlobGetsAHint() throws {
        let parsed = RepositoryConfigParser.parse("version: 1\nreview:\n  paths:\n    exclude:\n      - *.md\n")
        let d = try #require(parsed.diagnostics.first)
        #expect(parsed.diagnostics.count == 1)
        #expect(d.line == 5)
        #expect(d.message.hasSuffix("a value starting with '*' must be quoted, e.g. \"*.md\""))
    }

    @Test func duplicateKeyPointsAtTheRepeat() {
        let parsed = RepositoryConfigParser.parse("version: 1\nreview:\n  max_comments: 3\n  language: en\n  max_comments: 4\n")
        #expect(parsed.diagnostics.map(\.formatted) == [
            ".sentinel.yml:5:3: error: invalid YAML: duplicate key 'max_comments' (first defined at line 3)",
        ])
    }

    @Test func nonMappingDocumentIsAnError() {
        #expect(RepositoryConfigParser.parse("- a\n- b\n").diagnostics.map(\.formatted) == [
            ".sentinel.yml:1:1: error: expected a mapping at the top level (version: 1, review: …), found a list",
        ])
        #expect(RepositoryConfigParser.parse("hello").diagnostics.map(\.formatted) == [
            ".sentinel.yml:1:1: error: expected a mapping at the top level (version: 1, review: …), found the string 'hello'",
        ])
    }

    @Test func multipleDocumentsAreAnError() {
        let parsed = RepositoryConfigParser.parse("version: 1\n---\nversion: 1\n")
        #expect(parsed.diagnostics.map(\.formatted) == [
            ".sentinel.yml:2:1: error: invalid YAML: expected a single document, but found another one ('---')",
        ])
    }

    @Test func controlCharactersAndInvalidUTF8() {
        let nul = RepositoryConfigParser.parse("version: 1\nrev\u{0}iew: {}\n")
        #expect(nul.diagnostics.map(\.formatted) == [".sentinel.yml:2:4: error: invalid YAML: control characters are not allowed (#x0)"])

        var bytes = Array("version: 1\nreview:\n  language: ".utf8)
        bytes += [0xC3, 0x28, 0x0A]
        let bad = RepositoryConfigParser.parse(data: Data(bytes))
        #expect(bad.diagnostics.map(\.formatted) == [".sentinel.yml:3:13: error: the file is not valid UTF-8"])

        let good = RepositoryConfigParser.parse(data: Data("version: 1\nreview:\n  language: pt-BR\n".utf8))
        #expect(good.values == ["review.language": .string("pt-BR")])

        // A byte-order mark, as Windows editors save UTF-8: it was "2:1: error: invalid YAML: did not find expected <document start>".
        let marked = RepositoryConfigParser.parse(data: Data([0xEF, 0xBB, 0xBF] + Array("version: 1\nreview:\n  language: pt-BR\n".utf8)))
        #expect(marked.diagnostics.isEmpty, "\(marked.diagnostics.map(\.formatted))")
        #expect(marked.values == ["review.language": .string("pt-BR")])
        #expect(RepositoryConfigParser.parse("\u{FEFF}version: 1\nreview:\n  bogus: 1\n").diagnostics.map(\.formatted)
            == [".sentinel.yml:3:3: warning: unknown key 'review.bogus'"])
    }

    @Test func tooLargeFileIsRefused() {
        let big = "version: 1\n" + String(repeating: "# padding\n", count: 30_000)
        let parsed = RepositoryConfigParser.parse(big)
        #expect(parsed.diagnostics.count == 1)
        #expect(parsed.diagnostics.first?.message.hasPrefix("file is too large") == true)
    }

    @Test func aliasesWorkButAliasBombsAreRefusedQuickly() throws {
        let ok = RepositoryConfigParser.parse("version: 1\nreview:\n  paths:\n    include: &globs [\"src/**\"]\n    exclude: *globs\n")
        #expect(ok.diagnostics.isEmpty)
        #expect(ok.values["review.paths.exclude"] == .list(["src/**"]))

        // Nested aliases used as mapping keys would make the YAML library hash ~10^7 nodes.
        var yaml = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        var previous = "a"
        for i in 0..<7 {
            yaml += "l\(i): &l\(i) [" + Array(repeating: "*\(previous)", count: 10).joined(separator: ", ") + "]\n"
            previous = "l\(i)"
        }
        yaml += "review:\n  ? [*\(previous)]\n  : 1\n"
        let start = ContinuousClock.now
        let parsed = RepositoryConfigParser.parse(yaml)
        #expect(ContinuousClock.now - start < .seconds(2))
        let d = try #require(parsed.diagnostics.first)
        #expect(parsed.diagnostics.count == 1)
        #expect(d.line == 4)   // l0 and l1 hold 20 aliases; l2's first one is the 21st
        #expect(d.message.hasPrefix("too many aliases"))

        // Lines broken by a lone CR, NEL, LS or PS (YAML's other line breaks) are counted line by
        // line: one "line" starting with `#` hid every alias from the count.
        for separator in ["\r", "\u{85}", "\u{2028}", "\u{2029}"] {
            let bomb = "# cfg" + separator + yaml.replacingOccurrences(of: "\n", with: separator)
            let begun = ContinuousClock.now
            let refused = RepositoryConfigParser.parse(bomb)
            #expect(ContinuousClock.now - begun < .seconds(2))
            #expect(refused.diagnostics.first?.message.hasPrefix("too many aliases") == true, "\(refused.diagnostics)")
        }

        // An alias right after a JSON-like key's colon (`{"p":*a0}`) is one: 24 levels of them,
        // 48 aliases in 723 bytes, held the parser for minutes.
        let adjacent = (["version: 1", "l0: &a0 lol"] + (1...24).map { #"x\#($0): &a\#($0) {"p":*a\#($0 - 1),"q":*a\#($0 - 1)}"# }
                        + ["review: {*a24: 1}"]).joined(separator: "\n") + "\n"
        let begun = ContinuousClock.now
        let refused = RepositoryConfigParser.parse(adjacent)
        #expect(ContinuousClock.now - begun < .seconds(2))
        #expect(refused.diagnostics.first?.message.hasPrefix("too many aliases") == true, "\(refused.diagnostics)")
        #expect(refused.diagnostics.first?.line == 13, "x11 holds the 21st and 22nd")

        // A `key: |` inside a quoted string that goes on over lines is no block scalar: the YAML
        // after the string's end was skipped as its content (70 aliases, 64 s to read).
        var quoted = "version: 1\nx: [ \"q\n  d: |\n   \", &a [x, x, x, x, x, x, x, x, x, x],\n"
        var level = "a"
        for i in 0..<7 {
            quoted += "   &l\(i) [" + Array(repeating: "*\(level)", count: 10).joined(separator: ", ") + "],\n"
            level = "l\(i)"
        }
        quoted += "   end]\nreview:\n  ? [*l6]\n  : 1\n"
        let spanning = ContinuousClock.now
        let stopped = RepositoryConfigParser.parse(quoted)
        #expect(ContinuousClock.now - spanning < .seconds(2))
        #expect(stopped.diagnostics.first?.message.hasPrefix("too many aliases") == true, "\(stopped.diagnostics)")
        // A string over lines holding `*` is read as the string it is, when there are few.
        let prose = RepositoryConfigParser.parse("version: 1\nreview:\n  instructions: \"Be brief\n    and *really* *kind*\"\n")
        #expect(prose.diagnostics.isEmpty, "\(prose.diagnostics)")

        // Aliases counted as libyaml reads them: each of these hid its aliases from a count of
        // the text by hand (an anchor, tag or `?` before a quote holding ` #`, a JSON-like key, `?*a`,
        // a plain scalar ending in `- |`, a plain scalar going on with a quote, a BOM in a flow list).
        let hiders: [(String) -> String] = [
            { "[&q \" #\", \($0)]" }, { "[!!str \" #\", \($0)]" }, { "[{\"k\":\" #\"}, \($0)]" }, { "[?\" #\", \($0)]" },
            { "[\($0.replacingOccurrences(of: "*", with: "?*"))]" }, { "[lol - | # c\n  , \($0)]" }, { "[&q \"x\n y: |\n  \", \($0)]" },
            { "[lol\n \"lol, \"  #\", \($0)]" }, { "[\n" + $0.split(separator: ",").map { "\u{FEFF}" + $0.trimmingCharacters(in: .whitespaces) }.joined(separator: ",\n") + "\n]" },
        ]
        for (n, hide) in hiders.enumerated() {
            var text = "version: 1\nx0: &a0 [\"lol\", \"lol\"]\n"
            for level in 1...3 {
                text += "x\(level): &a\(level) " + hide(Array(repeating: "*a\(level - 1)", count: 10).joined(separator: ", ")) + "\n"
            }
            text += "? *a3\n: v\n"
            let refused = RepositoryConfigParser.parse(text)
            #expect(refused.diagnostics.first?.message.hasPrefix("too many aliases") == true, "form \(n): \(refused.diagnostics)\n\(text)")
        }
        // Few aliases of a long anchored list, stacked: 19 aliases, 7 million nodes to copy and hash.
        var stacked = "version: 1\nx:\n  a: &a [" + Array(repeating: "x", count: 10_000).joined(separator: ",") + "]\n"
        var below = "a"
        for name in ["b", "c", "d", "e", "f", "g"] {
            stacked += "  \(name): &\(name) [*\(below),*\(below),*\(below)]\n"
            below = name
        }
        stacked += "y: {? *g : 1}\n"
        let heavy = ContinuousClock.now
        let expanded = RepositoryConfigParser.parse(stacked)
        #expect(ContinuousClock.now - heavy < .seconds(2))
        #expect(expanded.diagnostics.first?.message.hasPrefix("its aliases expand to more than 100000 nodes") == true, "\(expanded.diagnostics)")
        // A list written out, without aliases, is read whatever its length.
        let long = RepositoryConfigParser.parse("version: 1\nx: [" + Array(repeating: "x", count: 20_000).joined(separator: ",") + "]\n")
        #expect(!long.diagnostics.contains { $0.message.contains("aliases") }, "\(long.diagnostics)")

        // And only those: emphasis in plain, quoted and tagged block text is text.
        let emphasis = (0..<30).map { "*word\($0)*" }.joined(separator: " ")
        for text in ["version: 1\nreview:\n  instructions: Please check \(emphasis)\n",
                     "version: 1\nreview:\n  instructions: \"Please\n    check \(emphasis)\"\n",
                     "version: 1\nreview:\n  instructions: 'Please\n    check \(emphasis)'\n",
                     "version: 1\nreview:\n  instructions: !!str |\n    Please check \(emphasis)\n"] {
            let read = RepositoryConfigParser.parse(text)
            #expect(!read.diagnostics.contains { $0.message.hasPrefix("too many aliases") }, "\(read.diagnostics)\n\(text)")
        }

        // '*' inside quotes, comments and block scalars is not an alias.
        var text = "version: 1\nreview:\n  instructions: |\n"
        for _ in 0..<40 { text += "    Prefer *small* functions and avoid *magic*.\n" }
        text += "  paths:\n    exclude: [" + Array(repeating: "\"**/*.md\"", count: 30).joined(separator: ", ") + "] # *x *y\n"
        text += "  language: '*en*'\n"
        let fine = RepositoryConfigParser.parse(text)
        #expect(fine.diagnostics.isEmpty)
        #expect(fine.values["review.language"] == .string("*en*"))
    }

    @Test func diagnosticsAreSortedByPosition() {
        let yaml = "review:\n  bogus: 1\n  max_comments: 999\nzzz: 1\n"
        let parsed = RepositoryConfigParser.parse(yaml, file: "x.yml")
        #expect(parsed.diagnostics.map { "\($0.line):\($0.column) \($0.severity.rawValue)" } == [
            "1:1 warning", "2:3 warning", "3:17 error", "4:1 warning",
        ])
        #expect(parsed.errors.count == 1 && parsed.warnings.count == 3)
    }

    @Test func validateCommandContract() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("policy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }

        let good = dir.appendingPathComponent("good.yml")
        try Data(sentinelYmlFullExample.utf8).write(to: good)
        let ok = RepositoryConfigParser.validate(data: try Data(contentsOf: good), path: good.path)
        #expect(ok.lines.isEmpty && ok.exitCode == 0)

        let warn = dir.appendingPathComponent("warn.yml")
        try Data("review:\n  colour: red\n".utf8).write(to: warn)
        let warned = RepositoryConfigParser.validate(data: try Data(contentsOf: warn), path: warn.path)
        #expect(warned.exitCode == 0)
        #expect(warned.lines == [
            "\(warn.path):1:1: warning: missing 'version: 1'; assuming version 1",
            "\(warn.path):2:3: warning: unknown key 'review.colour'",
        ])

        let bad = dir.appendingPathComponent("bad.yml")
        try Data("version: 1\nreview:\n  max_comments: lots\n".utf8).write(to: bad)
        let failed = RepositoryConfigParser.validate(data: try Data(contentsOf: bad), path: bad.path)
        #expect(failed.exitCode == 1)
        #expect(failed.lines == ["\(bad.path):3:17: error: review.max_comments: expected an integer, found the string 'lots'"])

    }

    @Test func forkPullRequestsReadTheBaseRevision() {
        #expect(RepositoryConfigParser.revisionToRead(headSHA: "h", baseSHA: "b", isFromFork: false) == "h")
        #expect(RepositoryConfigParser.revisionToRead(headSHA: "h", baseSHA: "b", isFromFork: true) == "b")
    }

    // MARK: Fuzz

    /// Deterministic random bytes: the parser never crashes or throws, every diagnostic has a
    /// 1-based position, and every value it returns is valid for its key.
    @Test func fuzzRandomBytes() {
        var rng = SeededRNG(seed: 0x5E17_1E1)
        let alphabet = Array("version: 1\nreview:\n  - [ ] { } , : & * ! | > ' \" # % @ ` ? \t\r\n-_.aeiouxyz0123456789".utf8)
        for round in 0..<3000 {
            let length = Int.random(in: 0...160, using: &rng)
            var bytes: [UInt8] = []
            for _ in 0..<length {
                if round % 3 == 0 {
                    bytes.append(UInt8.random(in: 0...255, using: &rng))
                } else {
                    bytes.append(alphabet.randomElement(using: &rng)!)
                }
            }
            check(RepositoryConfigParser.parse(data: Data(bytes)))
            check(RepositoryConfigParser.parse(String(decoding: bytes, as: UTF8.self)))
        }
    }

    /// Random mutations of the full example (insert / delete / replace characters, swap lines).
    @Test func fuzzMutatedExample() {
        var rng = SeededRNG(seed: 42)
        let base = Array(sentinelYmlFullExample.utf8)
        let inserts = Array(" \n\t:-[]{},&*!|>'\"#?%@`~0129xyz".utf8)
        for _ in 0..<3000 {
            var bytes = base
            for _ in 0..<Int.random(in: 1...6, using: &rng) {
                guard !bytes.isEmpty else { break }
                let at = Int.random(in: 0..<bytes.count, using: &rng)
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: bytes.insert(inserts.randomElement(using: &rng)!, at: at)
                case 1: bytes.remove(at: at)
                case 2: bytes[at] = inserts.randomElement(using: &rng)!
                default: bytes[at] = UInt8.random(in: 0...255, using: &rng)
                }
            }
            check(RepositoryConfigParser.parse(data: Data(bytes)))
        }
    }

    func check(_ parsed: ParsedConfig) {
        for d in parsed.diagnostics {
            #expect(d.line >= 1 && d.column >= 1)
            #expect(!d.message.isEmpty)
        }
        for (key, value) in parsed.values {
            let spec = PolicySchema.spec(for: key)
            #expect(spec != nil)
            #expect(spec?.problem(with: value) == nil)
        }
        // Whatever survived resolves without trouble.
        let policy = PolicyResolver.resolve([parsed.layerInput(versionID: nil)])
        #expect(policy.rejected.isEmpty)
    }
}
