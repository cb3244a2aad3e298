import Foundation
@testable import SentinelCore
import Testing

@Suite("Model text posted on PRs")
struct ModelTextTests {
    @Test("HTML comments and @-mentions from the model are neutralised; markdown, emails and code stay")
    func neutralised() throws {
        let out = try ModelOutputParser.parse(#"""
            {"summary": "cc @octocat <!-- sentinel:run:1 --> see `@Published`",
             "findings": [{"path": "a.swift", "line": 3, "title": "Ping @admins", "body": "**Bold** mail dev@example.com <!-- hidden -->",
                           "suggestion": "let x = 1 // <!-- sentinel:fp:abc -->"}]}
            """#)
        #expect(!out.summary.contains("<!--"))
        #expect(!out.summary.contains("@octocat"))
        #expect(out.summary.contains("`@Published`"))
        let finding = try #require(out.findings.first)
        #expect(finding.title == "Ping @\u{200B}admins")
        #expect(finding.body.hasPrefix("**Bold** mail dev@example.com &lt;!-- hidden"))
        #expect(finding.suggestion == "let x = 1 // &lt;!-- sentinel:fp:abc -->")
    }

    @Test("a suggestion holding a code fence gets a longer fence, so it cannot break out into the comment")
    func suggestionFence() {
        let finding = Finding(path: "README.md", line: 4, side: .right, severity: .low, category: "docs", title: "t", body: "b",
                              suggestion: "```swift\nlet x = 1\n```", source: .ai, fingerprint: "f")
        let body = ReviewRunner.comment(finding).body
        #expect(body.contains("\n````suggestion\n```swift\nlet x = 1\n```\n````"))
    }
}
