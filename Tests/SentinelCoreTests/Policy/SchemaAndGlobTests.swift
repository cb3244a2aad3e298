import Testing
import Foundation
import SentinelCore

@Suite("Schema, values, globs")
struct SchemaAndGlobTests {
    @Test func schemaKeysAndDefaults() {
        #expect(PolicySchema.version == 1)
        #expect(PolicySchema.keys.map(\.path) == PolicySchema.keys.map(\.path).sorted())
        #expect(PolicySchema.defaults == [
            "review.enabled": .bool(true),
            "review.auto_review.on_open": .bool(true),
            "review.auto_review.on_push": .bool(true),
            "review.auto_review.drafts": .bool(false),
            "review.paths.include": .list([]),
            "review.paths.exclude": .list([]),
            "review.instructions": .string(""),
            "review.path_instructions": .map([:]),
            "review.min_severity": .string("low"),
            "review.max_comments": .int(25),
            "review.fail_on": .string("critical"),
            "review.event": .string("comment"),
            "review.language": .string("en"),
            "review.builtin_checks": .bool(true),
            "ai.providers": .list([]),
            "ai.allowed_models": .list([]),
        ])
        for spec in PolicySchema.keys {
            #expect(spec.problem(with: spec.defaultValue) == nil, "\(spec.path)")
            #expect(spec.default == spec.defaultValue)
            #expect(!spec.doc.isEmpty)
        }
        #expect(PolicySchema.spec(for: "review.max_comments")?.range == 0...200)
        #expect(PolicySchema.spec(for: "review.fail_on")?.allowedValues == ["none", "info", "low", "medium", "high", "critical"])
        #expect(PolicySchema.spec(for: "review.min_severity")?.allowedValues == ["info", "low", "medium", "high", "critical"])
        #expect(PolicySchema.spec(for: "review.event")?.allowedValues == ["comment", "request_changes"])
        #expect(PolicySchema.sections == ["review", "review.auto_review", "review.paths", "ai"])
        #expect(PolicyLayer.allCases.map(\.rawValue) == ["builtin", "workspace", "repository", "file"])
        #expect(PolicyLayer.allCases == PolicyLayer.allCases.sorted())
    }

    @Test func policyValueJSONRoundTrip() throws {
        let values: [PolicyValue] = [.bool(true), .bool(false), .int(0), .int(25), .int(-3), .string(""), .string("1"),
                                     .list([]), .list(["a", "b"]), .map([:]), .map(["a/**": "x"])]
        for v in values {
            let data = try JSONEncoder().encode([v])
            #expect(try JSONDecoder().decode([PolicyValue].self, from: data) == [v], "\(v)")
        }
        let decoded = try JSONDecoder().decode([String: PolicyValue].self, from: Data(#"{"a":1,"b":true,"c":"x","d":["y"],"e":{"f":"g"}}"#.utf8))
        #expect(decoded == ["a": .int(1), "b": .bool(true), "c": .string("x"), "d": .list(["y"]), "e": .map(["f": "g"])])
        #expect(throws: DecodingError.self) { try JSONDecoder().decode([PolicyValue].self, from: Data("[1.5]".utf8)) }
        #expect(PolicyValue.map(["b": "2", "a": "1"]).description == #"{"a":"1","b":"2"}"#)
    }

    @Test func suggestions() {
        #expect(PolicySchema.suggestion(for: "review.max_coments") == "review.max_comments")
        #expect(PolicySchema.suggestion(for: "review.autoReview") == "review.auto_review")
        #expect(PolicySchema.suggestion(for: "fail_on") == "review.fail_on")
        #expect(PolicySchema.suggestion(for: "ai.allowed-models") == "ai.allowed_models")
        #expect(PolicySchema.suggestion(for: "colour") == nil)
        #expect(PolicySchema.suggestion(for: "a") == nil)
    }

    @Test(arguments: [
        // pattern, path, matches
        ("*.md", "README.md", true),
        ("*.md", "docs/guide/intro.md", true),          // no '/': file name in any directory
        ("*.md", "docs/guide/intro.mdx", false),
        ("docs/*.md", "docs/a.md", true),
        ("docs/*.md", "docs/sub/a.md", false),
        ("docs/**", "docs/a.md", true),
        ("docs/**", "docs/x/y/z.txt", true),
        ("docs/**", "docs", false),
        ("docs/", "docs/x/y.md", true),
        ("/docs/**", "docs/x.md", true),
        ("**/*.swift", "main.swift", true),
        ("**/*.swift", "Sources/App/main.swift", true),
        ("Sources/**/*.swift", "Sources/main.swift", true),
        ("Sources/**/*.swift", "Sources/A/B/main.swift", true),
        ("Sources/**/*.swift", "Tests/A/main.swift", false),
        ("**/Generated/**", "Sources/Generated/Models.swift", true),
        ("**/Generated/**", "Generated/x", true),
        ("src/?.c", "src/a.c", true),
        ("src/?.c", "src/ab.c", false),
        ("src/[abc].c", "src/b.c", true),
        ("src/[!abc].c", "src/b.c", false),
        ("src/[a-f]*.c", "src/door.c", true),
        ("src/[a-f]*.c", "src/zoo.c", false),
        ("*.{yml,yaml}", "ci/config.yaml", true),
        ("{docs,examples}/**", "examples/a/b.swift", true),
        ("{docs/**,*.lock}", "Package.lock", true),          // each alternative keeps its own rule
        ("{docs/**,*.lock}", "deps/x.lock", true),
        ("a\\*b", "a*b", true),
        ("a\\*b", "axb", false),
        ("Package.resolved", "Package.resolved", true),
        ("Package.resolved", "sub/Package.resolved", true),
        ("**", "anything/at/all", true),
    ])
    func globMatching(_ pattern: String, _ path: String, _ matches: Bool) throws {
        let glob = try PathGlob(pattern)
        #expect(glob.matches(path) == matches, "\(pattern) vs \(path)")
    }

    @Test func globProblems() {
        #expect(PathGlob.problem("") == "empty pattern")
        #expect(PathGlob.problem("src/[abc") == "unclosed '['")
        #expect(PathGlob.problem("{a,b") == "unclosed '{'")
        #expect(PathGlob.problem("a}") == "unmatched '}'")
        #expect(PathGlob.problem("a\\") == "trailing backslash")
        #expect(PathGlob.problem("/") == "pattern matches nothing")
        #expect(PathGlob.problem(String(repeating: "{a,b,c}", count: 6))?.hasPrefix("too many") == true)
        #expect(PathGlob.problem("src/**/*.{swift,h}") == nil)
        #expect(throws: PathGlobError.self) { try PathGlob("[") }
    }

    @Test func globMatchingIsNotExponential() throws {
        let glob = try PathGlob("**/a/**/a/**/a/**/a/**/b")
        let path = Array(repeating: "a", count: 60).joined(separator: "/")
        let start = ContinuousClock.now
        #expect(!glob.matches(path))
        let star = try PathGlob("*a*a*a*a*a*a*b")
        #expect(!star.matches(String(repeating: "a", count: 200)))
        #expect(ContinuousClock.now - start < .seconds(1))
    }
}
