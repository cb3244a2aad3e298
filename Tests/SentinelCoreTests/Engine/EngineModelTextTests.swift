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
        // A suggestion is code in Sentinel's own fence: what the one-click commit writes is kept.
        #expect(finding.suggestion == "let x = 1 // <!-- sentinel:fp:abc -->")
    }

    @Test("a fence the model leaves open is closed where its text ends, and <details> is escaped: neither takes in what Sentinel adds after the text (a suggestion shown as code, findings folded away)")
    func unclosedFencesAndDetails() {
        #expect(ModelText.neutralize("Currently:\n```python\ncursor.execute(q % x)") == "Currently:\n```python\ncursor.execute(q % x)\n```")
        #expect(ModelText.neutralize("Looks fine.\n~~~~\nunclosed\n") == "Looks fine.\n~~~~\nunclosed\n~~~~")
        // Closed fences, a fence closed by a longer one, an inline code span, a fence in a quote: as written.
        // An unclosed fence in a list item ends with the item: nothing is added (a fence added at the
        // first column would open one of its own, taking in the suggestion).
        for text in ["a\n```swift\nx\n```\nb", "```\nx\n`````", "use ```x``` here", "> ```\n> x",
                     "1. Do this:\n\n   ```swift\n   let x = 1", "- item\n  ```\n  code", "- ```swift\n  x"] {
            #expect(ModelText.neutralize(text) == text, "\(text)")
        }
        // A suggestion after the body is a suggestion again.
        let body = ModelText.neutralize("Currently:\n```python\nx") + "\n\n```suggestion\ny\n```"
        #expect(ModelText.unclosedFence(body) == nil)
        #expect(ModelText.neutralize("<details><summary>Nothing to see</summary>\n\nstuff") == "&lt;details><summary>Nothing to see</summary>\n\nstuff")
        #expect(ModelText.neutralize("`<details>` in code") == "`<details>` in code")
    }

    @Test("references to other repositories' issues and merge requests in model text are defused; references within the repository, URLs and code stay")
    func crossReferencesDefused() throws {
        let out = try ModelOutputParser.parse(#"""
            {"summary": "Same as torvalds/linux#1 and gitlab-org/sub.group/gitlab!42; see #12 and `other/repo#3`.",
             "findings": [{"path": "a.py", "line": 3, "title": "Fixes acme/api#7", "body": "Docs: https://example.com/a/b#intro, C# 12, a/b#x."}]}
            """#)
        #expect(out.summary == "Same as torvalds/linux#\u{200B}1 and gitlab-org/sub.group/gitlab!\u{200B}42; see #12 and `other/repo#3`.")
        let finding = try #require(out.findings.first)
        #expect(finding.title == "Fixes acme/api#\u{200B}7")
        #expect(finding.body == "Docs: https://example.com/a/b#intro, C# 12, a/b#x.")
    }

    @Test("mentions right after a code span, or after escaped or unmatched backticks, are defused; mentions inside code spans are kept")
    func mentionsByCodeSpans() {
        #expect(ModelText.neutralize("see `foo`@security-team") == "see `foo`@\u{200B}security-team")
        #expect(ModelText.neutralize("use `@Published` and ``a`@b``") == "use `@Published` and ``a`@b``")
        #expect(ModelText.neutralize("\\`@team\\` and `@x") == "\\`@\u{200B}team\\` and `@\u{200B}x", "escaped and unmatched backticks are literal")
        #expect(ModelText.neutralize("```swift\n@MainActor\n```\n@admins") == "```swift\n@MainActor\n```\n@\u{200B}admins")
    }

    @Test("text only looks like code where the platform's markdown does not read it so: its mentions are defused")
    func mentionsOutsideWhatRendersAsCode() {
        let zw = "\u{200B}"
        // A code span cannot reach over a blank line; a longer fence closes a shorter one.
        #expect(ModelText.neutralize("S `\n\n@all ping\n\n` ") == "S `\n\n@\(zw)all ping\n\n` ")
        // (The last fence opens one that the text never closes: it is closed where the text ends.)
        #expect(ModelText.neutralize("```\nx\n````\n@all pinged\n```") == "```\nx\n````\n@\(zw)all pinged\n```\n```")
        // An autolink holding a backtick outranks the code span it would open.
        #expect(ModelText.neutralize("<https://a/`>@all<https://b/`>") == "<https://a/`>@\(zw)all<https://b/`>")
        // A span over two lines may be two blocks (a heading, a list item) for the platform.
        #expect(ModelText.neutralize("`a\n# `b` @all `c") == "`a\n# `b` @\(zw)all `c")
        // A table cell ends at `|`, inside a code span too.
        #expect(ModelText.neutralize("| `a | @all | b` |") == "| `a | @\(zw)all | b` |")
        // GitLab's multi-line quote ends a fence opened inside it.
        #expect(ModelText.neutralize(">>>\n```\n>>>\n@all\n```") == ">>>\n```\n>>>\n@\(zw)all\n```")
        // A fence inside a list item ends with the item.
        // (Its last line opens a fence of its own, closed where the text ends.)
        #expect(ModelText.neutralize("- ```\n@all\n```") == "- ```\n@\(zw)all\n```\n```")
        // A mention after a letter outside ASCII, or spelled as an entity, is still one.
        #expect(ModelText.neutralize("café@octocat and привет@all") == "café@\(zw)octocat and привет@\(zw)all")
        #expect(ModelText.neutralize("&#64;all, &#x40;all, &commat;all and acme/api&#35;3")
                == "@\(zw)all, @\(zw)all, @\(zw)all and acme/api#\(zw)3")
        // Code that is code for certain stays as it is.
        #expect(ModelText.neutralize("```swift\n@MainActor\nfunc f() {}\n```\n\nuse `@Published` aside")
                == "```swift\n@MainActor\nfunc f() {}\n```\n\nuse `@Published` aside")
        #expect(ModelText.neutralize("1. Fix:\n\n   ```python\n   @property\n   ```\n") == "1. Fix:\n\n   ```python\n   @property\n   ```\n")
        #expect(ModelText.neutralize("~~~\n@dataclass `x\n~~~\nthen `y` @team") == "~~~\n@dataclass `x\n~~~\nthen `y` @\(zw)team")
    }

    @Test("mentions, references and images the platform renders live through emphasis, escapes, entities, slashes, links and joining characters are defused")
    func moreWaysToRenderLive() {
        let zw = "\u{200B}"
        // `_` closing emphasis before `@` starts a text node of its own.
        #expect(ModelText.neutralize("_x_@all and __init__@octocat") == "_x_@\(zw)all and __init__@\(zw)octocat")
        // A backslash escape or an entity inside the name renders as the character.
        #expect(ModelText.neutralize("see octo/repo\\#12 and octo/rep&#111;#12") == "see octo/repo\\#\(zw)12 and octo/repo#\(zw)12")
        // A leading or doubled slash (GitLab's absolute project path).
        #expect(ModelText.neutralize("see /octo/repo#12 and a//project#5") == "see /octo/repo#\(zw)12 and a//project#\(zw)5")
        // A backtick in a link's destination or title, or in a bare URL, pairs with none.
        for text in ["[x](/`) @all `", "[x](<`>) @all `", "[x](/u \"`\") @all `", "https://e.com/` @all `", "www.example.com/` @all `"] {
            #expect(ModelText.neutralize(text).contains("@\(zw)all"), "\(text)")
        }
        // A character that joins the next (U+0600 before `@`, `!`, `<`) or a mark after `[`.
        #expect(ModelText.neutralize("\u{0600}@all") == "\u{0600}@\(zw)all")
        #expect(ModelText.neutralize("\u{0600}![x](https://evil.example/p.png)") == "\u{0600}!\(zw)[x](https://evil.example/p.png)")
        #expect(ModelText.neutralize("\u{0600}<img src=x>") == "\u{0600}&lt;img src=x>")
        #expect(ModelText.neutralize("![\u{0301}x](https://evil.example/p.png)") == "!\(zw)[\u{0301}x](https://evil.example/p.png)")
        // A suggestion fence whose info string is spelled with an entity.
        #expect(!ModelText.neutralize("```sugg&#101;stion\nx = 1\n```").contains("```sugg"))
    }

    @Test("images in model text become links (every reader's browser fetched them where images are not proxied); a project of the same group is a reference too")
    func imagesAndSameGroupReferences() {
        let zw = "\u{200B}"
        #expect(ModelText.neutralize("see ![x](https://evil.example/t.png?reader=1), <img src=x> and <IMG/src=y>, not <image-name> nor `![k](v)`")
                == "see !\(zw)[x](https://evil.example/t.png?reader=1), &lt;img src=x> and &lt;IMG/src=y>, not <image-name> nor `![k](v)`")
        #expect(ModelText.neutralize("like other-project#5 and other-project!7; see #12") == "like other-project#\(zw)5 and other-project!\(zw)7; see #12")
    }

    @Test("a suggestion fence written in the model's text is shown as code, never as a one-click change; the finding's own suggestion still is one")
    func suggestionFencesInText() {
        let finding = Finding(path: "a.py", line: 31, side: .right, severity: .medium, category: "bug", title: "Fix",
                              body: "Fix:\n```suggestion\n```\nand\n~~~ Suggestion:-35+0\n~~~", suggestion: nil, source: .ai, fingerprint: "f")
        let comment = ReviewRunner.comment(Finding(path: finding.path, line: finding.line, side: .right, severity: finding.severity,
                                                   category: finding.category, title: finding.title, body: ModelText.neutralize(finding.body),
                                                   suggestion: nil, source: .ai, fingerprint: "f"))
        #expect(!comment.body.lowercased().contains("```suggestion") && !comment.body.lowercased().contains("~~~ suggestion"), "\(comment.body)")
        #expect(comment.body.contains("```text suggestion\n```") && comment.body.contains("~~~ text Suggestion:-35+0"), "\(comment.body)")
        #expect(!GitLabSession.gitLabBody(comment).contains("suggestion:-"), "GitLab turned the model's fence into a suggestion")
        let own = ReviewRunner.comment(Finding(path: "a.py", line: 31, side: .right, severity: .medium, category: "bug", title: "Fix",
                                               body: ModelText.neutralize("see below"), suggestion: "x = 1", source: .ai, fingerprint: "f"))
        #expect(GitLabSession.gitLabBody(own).contains("```suggestion:-0+0\nx = 1\n```"))
    }

    @Test("a name from a pull request is shown as a code span nothing in it can close: its @, # and backticks stay code")
    func namesAsCodeSpans() {
        let path = "docs/x`@acme/security`#1.md"
        let span = MarkdownCode.span(path)
        #expect(span == "``docs/x`@acme/security`#1.md``")
        #expect(MarkdownCode.spans(in: "- " + span + " added").count == 1)
        let line = "- " + span + " (added) by @acme/security, see acme/api#3"
        #expect(ModelText.neutralize(line) == "- " + span + " (added) by @\u{200B}acme/security, see acme/api#\u{200B}3")
        #expect(MarkdownCode.span("`tick") == "`` `tick ``")
        #expect(MarkdownCode.span("two\n\nlines") == "`two  lines`", "a blank line would end the span")
    }

    @Test("bidirectional control characters in model text are spelled out; a suggestion holding one is left out saying so")
    func bidiControlsNeutralised() throws {
        let out = try ModelOutputParser.parse(#"""
            {"summary": "Looks fine \u202E txet desrever",
             "findings": [{"path": "a.py", "line": 3, "title": "Check \u2066this\u2069", "body": "The comparison is wrong — fix it.",
                           "suggestion": "if role != \"user\u202E \u2066# admin\u2069 \u2066\":"},
                          {"path": "a.py", "line": 5, "title": "Style", "body": "Use “quotes” consistently…",
                           "suggestion": "name = \"\u05e9\u05dc\u05d5\u05dd\u200f\" — kept"}]}
            """#)
        func controls(_ text: String?) -> Bool {
            text?.unicodeScalars.contains { (0x202A...0x202E).contains($0.value) || (0x2066...0x2069).contains($0.value) } ?? false
        }
        #expect(out.summary == "Looks fine [U+202E] txet desrever")
        let first = try #require(out.findings.first)
        #expect(first.title == "Check [U+2066]this[U+2069]")
        #expect(first.suggestion == nil)
        #expect(first.body == "The comparison is wrong — fix it.\n\n" + ModelText.omittedBidiSuggestion)
        // Dashes, curly quotes and right-to-left text with its marks are not controls: kept as they are.
        let second = try #require(out.findings.last)
        #expect(second.body == "Use “quotes” consistently…")
        #expect(second.suggestion == "name = \"\u{05E9}\u{05DC}\u{05D5}\u{05DD}\u{200F}\" — kept")
        #expect(!controls(out.summary) && out.findings.allSatisfy { !controls($0.title) && !controls($0.body) && !controls($0.suggestion) })
        // What is posted: no suggestion block for the first, the sentence in its place.
        let posted = ReviewRunner.comment(Finding(path: "a.py", line: 3, side: .right, severity: first.severity, category: first.category,
                                                  title: first.title, body: first.body, suggestion: first.suggestion, source: .ai,
                                                  fingerprint: "f")).body
        #expect(!posted.contains("```suggestion") && posted.contains("A suggested change was left out here"), "\(posted)")
    }

    @Test("a suggestion holding a code fence gets a longer fence, so it cannot break out into the comment")
    func suggestionFence() {
        let finding = Finding(path: "README.md", line: 4, side: .right, severity: .low, category: "docs", title: "t", body: "b",
                              suggestion: "```swift\nlet x = 1\n```", source: .ai, fingerprint: "f")
        let body = ReviewRunner.comment(finding).body
        #expect(body.contains("\n````suggestion\n```swift\nlet x = 1\n```\n````"))
    }

    @Test("a backtick inside a link title, a tag's quoted attribute, a processing instruction or a CDATA section pairs with none: what follows stays prose")
    func backticksInsideLinkTitlesAndTags() {
        let texts = [
            "See [docs](/u \"a) `\") @victim please `",
            "See [docs](/u \"a\n` b\") @victim please `",
            "See [docs](/u (a\\) ` b)) @victim `",
            "Note <b title=\">`\"> @victim and `x`",
            "Odd <? > ` ?> @victim `",
            "[r]: /u \"a `\"\n@victim `",
        ]
        for text in texts {
            #expect(ModelText.neutralize(text).contains("@\u{200B}victim"), "\(text)")
        }
        // Ordinary code beside a link, a tag or generics still reads as code.
        #expect(ModelText.neutralize("[a](https://e.com/x \"t\") and `@Published`") == "[a](https://e.com/x \"t\") and `@Published`")
        #expect(ModelText.neutralize("Use <b title=\"x > y\">bold</b> then `@Inject`") == "Use <b title=\"x > y\">bold</b> then `@Inject`")
        #expect(ModelText.neutralize("`Map<String, Int>` and `@MainActor`") == "`Map<String, Int>` and `@MainActor`")
    }

    @Test("web addresses keep their @ and # (npm scopes, profiles, numbered anchors); a mention right after one is still defused")
    func webAddressesKept() {
        let text = "See https://www.npmjs.com/package/@types/node and [Medium](https://medium.com/@someone/post-1) and https://stackoverflow.com/questions/1/x/2#2"
        #expect(ModelText.neutralize(text) == text)
        #expect(ModelText.neutralize("www.example.com/@team/x") == "www.example.com/@team/x")
        // Not an address the platforms link whole: the mention is defused.
        #expect(ModelText.neutralize("https://@victim") == "https://@\u{200B}victim")
        #expect(ModelText.neutralize("https://e.com/a_@victim_") == "https://e.com/a_@\u{200B}victim_", "`_` may close emphasis: the address ends there")
        #expect(ModelText.neutralize("https://e.com/x*@victim*") == "https://e.com/x*@\u{200B}victim*")
        #expect(ModelText.neutralize("[a](https://e.com/y)@victim") == "[a](https://e.com/y)@\u{200B}victim")
        #expect(ModelText.neutralize("xhttps://e.com/@victim") == "xhttps://e.com/@\u{200B}victim")
        #expect(ModelText.neutralize("https://e.com/![x](https://evil/i.png)").contains("!\u{200B}["), "an image after an address is still a link")
    }

    @Test("an HTML comment opener is kept as code in fences and code spans, escaped in prose")
    func commentOpenersInCode() {
        #expect(ModelText.neutralize("```html\n<!-- header -->\n```") == "```html\n<!-- header -->\n```")
        // A one-line code span escapes it like prose: should a reading of where the span starts
        // differ from the platform's, no comment may come alive.
        #expect(ModelText.neutralize("inline `a <!-- b` here") == "inline `a &lt;!-- b` here")
        #expect(ModelText.neutralize("prose <!-- hidden --> text") == "prose &lt;!-- hidden --> text")
        #expect(ModelText.neutralize("entity <&#33;-- hidden -->") == "entity &lt;!-- hidden -->")
    }

    @Test("only a line that opens a fence gets `text` before a suggestion or entity info string, once")
    func fenceRewriteOnlyOnFenceLines() {
        #expect(ModelText.neutralize("My suggestion: run ```make && make test``` first.") == "My suggestion: run ```make && make test``` first.")
        // (A tilde fence's info string may hold tildes: this one is never closed, and is closed where the text ends.)
        #expect(ModelText.neutralize("~~~ & ~~~") == "~~~ text & ~~~\n~~~")
        #expect(ModelText.neutralize(ModelText.neutralize("~~~ & ~~~")) == "~~~ text & ~~~\n~~~")
        #expect(ModelText.neutralize("```suggestion\nx\n```") == "```text suggestion\nx\n```")
        #expect(ModelText.neutralize("- ```suggestion\n  x\n  ```") == "- ```text suggestion\n  x\n  ```")
        #expect(ModelText.neutralize(ModelText.neutralize("```suggestion\nx\n```")) == "```text suggestion\nx\n```")
    }

    @Test("a suggestion's last line break is dropped (it would add an empty line); a `<!--` in it is kept")
    func suggestionLastLineBreak() throws {
        let out = try ModelOutputParser.parse(#"""
            {"summary": "s", "findings": [
              {"path": "a.py", "line": 3, "title": "t", "suggestion": "line3 = 33\n"},
              {"path": "a.py", "line": 4, "title": "t", "suggestion": "a\r\n"},
              {"path": "a.html", "line": 5, "title": "t", "suggestion": "<!-- keep -->\n<div>hi</div>"}]}
            """#)
        #expect(out.findings.map(\.suggestion) == ["line3 = 33", "a", "<!-- keep -->\n<div>hi</div>"])
        let finding = Finding(path: "a.html", line: 5, side: .right, severity: .low, category: "c", title: "t", body: "b",
                              suggestion: out.findings[2].suggestion, source: .ai, fingerprint: "f")
        #expect(ReviewRunner.comment(finding).body.contains("```suggestion\n<!-- keep -->\n<div>hi</div>\n```"))
    }

    @Test("a comment cut at the platform's limit is read again: a code span that lost its closing backtick is prose, its mention defused")
    func cutCommentReadAgain() {
        let limit = 2_000
        let marker = "\n\n" + ReviewRunner.fingerprintMarker("f")
        let header = "**Low · c**: t\n\n"
        // Cut right after `@victim`, inside the span that `` ` `` would close further on.
        let room = limit - PlatformText.length(marker) - PlatformText.length(ReviewRunner.cutComment) - 2
        let pad = String(repeating: "a", count: room - PlatformText.length(header) - "`@victim".count)
        let finding = Finding(path: "a", line: 1, side: .right, severity: .low, category: "c", title: "t",
                              body: pad + "`@victim` is the owner " + String(repeating: "b", count: 5_000), source: .ai, fingerprint: "f")
        let body = ReviewRunner.comment(finding, limit: limit).body
        #expect(PlatformText.length(body) <= limit)
        #expect(body.contains("`@\u{200B}victi"), "\(body.suffix(200))")
        #expect(!body.contains("`@victim"))
        #expect(body.hasSuffix(ReviewRunner.fingerprintMarker("f")))
        // A review body cut the same way keeps its run marker as it is.
        let head = ReviewRunner.marker(runID: 7) + "\n"
        let bodyPad = String(repeating: "a", count: limit - 5 - PlatformText.length(head) - "`@victim".count)
        let cut = PlatformText.fitted(head + bodyPad + "`@victim` x" + String(repeating: "b", count: 5_000),
                                      limit: limit, notice: "cut", reread: ReviewRunner.rereadCutBody)
        #expect(cut.hasPrefix(ReviewRunner.marker(runID: 7) + "\n") && cut.contains("`@\u{200B}vict") && !cut.contains("`@v"))
    }

    @Test("a web address keeps its @ only where the platforms certainly link it: not with a `[` open before it, not after `[` or `<`, not in an HTML block")
    func addressesOnlyWhereLinked() {
        for text in ["See [the docs for https://example.com/@octocat and more",
                     "[https://example.com/@octocat",
                     "Per [RFC 1234 see www.example.com/@octocat",
                     "<www.example.com/@octocat",
                     "<div>\nSee https://example.com/@octocat\n</div>"] {
            #expect(ModelText.neutralize(text).contains("@\u{200B}octocat"), "\(text)")
        }
        #expect(ModelText.neutralize("Fix [x] then see https://example.com/@octocat") == "Fix [x] then see https://example.com/@octocat")
        #expect(ModelText.neutralize("[Medium](https://medium.com/@someone/post-1)") == "[Medium](https://medium.com/@someone/post-1)")
        #expect(ModelText.neutralize("see https://x.com/a/b,octo/repo#12 [y").contains("octo/repo#12"), "an address closed before the `[` is linked")
    }

    @Test("a link destination with balanced or escaped parentheses is read whole: a backtick in it pairs with none")
    func destinationsWithParentheses() {
        for text in ["see [a](/u(x)`y) now @octocat and ` ok",
                     "[a](/u(x) \"`\") now @octocat `",
                     "[a](/u\\)`y) now @octocat `",
                     "[a](<u\\>`y>) now @octocat `",
                     "![a](/u(x)`y) now @octocat `"] {
            #expect(ModelText.neutralize(text).contains("@\u{200B}octocat"), "\(text)")
        }
        #expect(ModelText.neutralize("see [a](/u(x)`y) now <!-- sentinel:run:1 --> hidden ` ok").contains("&lt;!-- sentinel:run:1"))
    }

    @Test("HTML that a blank line does not end (`<textarea>`, `<script>`, `<pre>`, `<style>`, `<?`, `<!`) is escaped in prose: it took in the suggested change after it")
    func unendingHTMLEscaped() {
        #expect(ModelText.neutralize("Use a clearer name.\n\n<textarea>") == "Use a clearer name.\n\n&lt;textarea>")
        #expect(ModelText.neutralize("<script src=x>") == "&lt;script src=x>")
        #expect(ModelText.neutralize("a <?php b") == "a &lt;?php b")
        #expect(ModelText.neutralize("<!DOCTYPE html>") == "&lt;!DOCTYPE html>")
        #expect(ModelText.neutralize("keep <presentation> and <b>bold</b>") == "keep <presentation> and <b>bold</b>")
        #expect(ModelText.neutralize("```html\n<script>x</script>\n<!-- c -->\n```") == "```html\n<script>x</script>\n<!-- c -->\n```", "a fenced block keeps it")
        #expect(ModelText.neutralize("<div>\n```\n@x\n```\n</div>").contains("@\u{200B}x"), "an HTML block before the fence: no code")
        let finding = Finding(path: "a.py", line: 2, side: .right, severity: .high, category: "bug", title: "Rename y",
                              body: ModelText.neutralize("Use a clearer name.\n\n<textarea>"), suggestion: "why = 2  # @octocat",
                              source: .ai, fingerprint: "f")
        #expect(!ReviewRunner.comment(finding).body.contains("<textarea>"))
    }

    @Test("a line range written as a string (`\"line\": \"11-13\"`) is lines 11 to 13, so a three-line suggestion replaces three lines")
    func lineRangeAsText() throws {
        let out = try ModelOutputParser.parse(#"""
            {"summary": "s", "findings": [
              {"path": "g.py", "line": "11-13", "title": "t", "suggestion": "B1\nB2\nB3"},
              {"path": "g.py", "line": "L20..L21", "title": "u"},
              {"path": "g.py", "line": "30", "title": "v"}]}
            """#)
        #expect(out.findings.map(\.startLine) == [11, 20, nil] && out.findings.map(\.line) == [13, 21, 30])
    }
}
