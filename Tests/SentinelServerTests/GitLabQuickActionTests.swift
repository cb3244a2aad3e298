import Foundation
import SentinelCore
import SentinelTestSupport
import Testing

/// A note line such as `/approve` is a GitLab quick action, run as the note's author. Sentinel's
/// notes carry model text under the integration's user: none of it may run as a command.
@Suite("GitLab quick actions")
struct GitLabQuickActionTests {
    /// A session of the integration's bot user on the fake's project 77.
    static func session(_ world: FakeGitLabTests.World) throws -> GitLabSession {
        let client = GitLabClient(baseURL: world.gitlab.baseURL, token: FakeGitLab.token, http: world.client)
        let bot = try JSONDecoder().decode(GitLabUser.self, from: Data(#"{"id": \#(FakeGitLabState.botUser.id), "username": "\#(FakeGitLabState.botUser.username)"}"#.utf8))
        return GitLabSession(client: client, project: FakeGitLabTests.project, bot: bot)
    }

    @Test("the fake runs a note's command lines as GitLab does and keeps the rest; code regions are left alone; commands only is 202")
    func fakeRunsQuickActions() async throws {
        let world = try await FakeGitLabTests.World.make()
        let posted = try await world.call(method: "POST", "/projects/77/merge_requests/7/notes",
                                          json: ["body": "Looks good.\n/approve\n/LABEL ~bug ~\"needs review\"\n```\n/merge\n```\n\\/close\n  /close"])
        #expect(posted.status == 201)
        let stored = try #require(await world.gitlab.state.notes(project: 77, iid: 7).last)
        #expect(stored.body == "Looks good.\n```\n/merge\n```\n\\/close\n  /close")
        #expect(await world.gitlab.state.quickActions(project: 77, iid: 7) == [["approve"], ["label", "~bug ~\"needs review\""]])
        let only = try await world.call(method: "POST", "/projects/77/merge_requests/7/notes", json: ["body": "/merge\r\n"])
        #expect(only.status == 202)
        let thread = try await world.call(method: "POST", "/projects/77/merge_requests/7/discussions",
                                          json: ["body": "finding\n/assign @mallory", "position": world.position(newLine: 2)])
        #expect(thread.status == 201)
        #expect(await world.gitlab.state.quickActions(project: 77, iid: 7).suffix(2) == [["merge"], ["assign", "@mallory"]])
        await world.stop()
    }

    @Test("a review whose model text carries command lines posts them as text: GitLab runs nothing; a suggestion with such a line is left out, one without stays as proposed")
    func reviewRunsNoQuickAction() async throws {
        let world = try await FakeGitLabTests.World.make()
        let session = try Self.session(world)
        let comments = [
            ReviewComment(path: "src/app.js", line: 2, side: .right, startLine: nil,
                          body: "Rename this.\n/approve\n\n```suggestion\nlet renamed = 2\n// /merge stays\n```"),
            // An HTML block that swallows the fence's first line: GitLab would read /merge as a command.
            ReviewComment(path: "src/app.js", line: 3, side: .right, startLine: nil,
                          body: "Quote it.\n<div>\n\n```suggestion\n</div>\n/merge\n```"),
            // Not on the diff: GitLab refuses the position, the finding goes into the summary.
            ReviewComment(path: "src/app.js", line: 40, side: .right, startLine: nil, body: "Off the diff.\n/unapprove"),
        ]
        _ = try await session.postReview("group/sub/sub-sub/project", 7, headSHA: FakeGitLabTests.head,
                                         body: "<!-- sentinel:run:1 -->\n## Walkthrough\n/label ~security\r\n/close",
                                         comments: comments, requestChanges: false)
        #expect(await world.gitlab.state.quickActions(project: 77, iid: 7).isEmpty)
        let diffNotes = await world.gitlab.state.diffNotes(project: 77, iid: 7)
        #expect(diffNotes.map(\.body) == [
            "Rename this.\n\\/approve\n\n```suggestion:-0+0\nlet renamed = 2\n// /merge stays\n```\n\n<!-- sentinel:run:1 -->",
            "Quote it.\n<div>\n\n\(GitLabQuickActions.omittedSuggestion)\n\n<!-- sentinel:run:1 -->",
        ])
        let summary = try #require(await world.gitlab.state.notes(project: 77, iid: 7).last)
        // GitLab deletes carriage returns from a note it looks for commands in.
        #expect(summary.body.hasPrefix("<!-- sentinel:run:1 -->\n## Walkthrough\n\\/label ~security\n\\/close"), "\(summary.body)")
        #expect(summary.body.contains("Off the diff.\n\\/unapprove"), "\(summary.body)")
        await world.stop()
    }

    @Test("comments GitLab refuses are read again as one text in the summary: a fence one leaves open cannot make another's mention live; their markers are left out")
    func refusedCommentsReadTogether() async throws {
        let world = try await FakeGitLabTests.World.make()
        let session = try Self.session(world)
        // Each made safe on its own (B's mention is in code there); both off the diff.
        let comments = [
            ReviewComment(path: "src/app.js", line: 40, side: .right, startLine: nil, body: "Example:\n```\nprint(1)\n\n<!-- sentinel:fp:aaa -->"),
            ReviewComment(path: "src/app.js", line: 41, side: .right, startLine: nil, body: "```\n@victim\n```\n\n<!-- sentinel:fp:bbb -->"),
        ]
        _ = try await session.postReview("group/sub/sub-sub/project", 7, headSHA: FakeGitLabTests.head, body: "<!-- sentinel:run:1 -->\n## Review",
                                         comments: comments, requestChanges: false)
        let summary = try #require(await world.gitlab.state.notes(project: 77, iid: 7).last)
        #expect(summary.body.contains("@\u{200B}victim"), "\(summary.body)")
        #expect(!summary.body.contains("sentinel:fp:"), "\(summary.body)")
        #expect(summary.body.hasPrefix("<!-- sentinel:run:1 -->\n"))
        await world.stop()
    }

    @Test("what is escaped: every command-like line, in code blocks too, carriage returns ignored as GitLab does; not indented lines, comments or text after a word")
    func neutralizeRules() {
        #expect(GitLabQuickActions.neutralize("a\n/approve\n  /approve\n/* c */\n// c\npath /merge\n/_x\n/9") ==
            "a\n\\/approve\n  /approve\n/* c */\n// c\npath /merge\n\\/_x\n\\/9")
        #expect(GitLabQuickActions.neutralize("\r/approve") == "\\\r/approve")
        #expect(GitLabQuickActions.neutralize("```swift\n/merge\n```\n/merge") == "```swift\n\\/merge\n```\n\\/merge")
        #expect(GitLabQuickActions.neutralize("x\n````suggestion:-0+0\n```\n/close\n````\ny") == "x\n\(GitLabQuickActions.omittedSuggestion)\ny")
        #expect(GitLabQuickActions.neutralize("no slash at all") == "no slash at all")
    }
}
