import Foundation
@testable import SentinelCore
import Testing

@Suite("GitLab adapter")
struct GitLabAdapterTests {
    @Test("X-Gitlab-Token must equal the webhook secret exactly")
    func webhookToken() {
        let secret = Data("s3cret-token".utf8)
        #expect(GitLabWebhookToken.isValid(header: "s3cret-token", secret: secret))
        #expect(!GitLabWebhookToken.isValid(header: "s3cret-token ", secret: secret))
        #expect(!GitLabWebhookToken.isValid(header: "s3cret", secret: secret))
        #expect(!GitLabWebhookToken.isValid(header: nil, secret: secret))
        #expect(!GitLabWebhookToken.isValid(header: "", secret: secret))
        // The longest secret an integration takes (1,000 characters) in two-byte letters: 2,000
        // bytes, refused by a 1,024-byte bound on every delivery.
        let long = String(repeating: "é", count: 1_000)
        #expect(GitLabWebhookToken.isValid(header: long, secret: Data(long.utf8)))
    }

    /// Merge request diffs, one file a page, each page naming the next as `next(page)` says.
    struct DiffPages: OutboundHTTPClient {
        let log: PageLog
        let next: @Sendable (String) -> String
        func send(_ request: OutboundRequest) async throws -> OutboundResponse {
            let page = URLComponents(url: request.url, resolvingAgainstBaseURL: false)?.queryItems?.first { $0.name == "page" }?.value ?? "?"
            await log.add(page)
            let body = #"[{"old_path":"app.py","new_path":"app.py","diff":"@@ -1,1 +1,2 @@\n a\n+b\n"}]"#
            return OutboundResponse(status: 200, headers: [("X-Next-Page", next(page))], body: Data(body.utf8))
        }
    }

    actor PageLog {
        var pages: [String] = []
        func add(_ page: String) { pages.append(page) }
    }

    /// The diffs listed through `DiffPages`, and the pages asked for (the merge request itself,
    /// read for its `changes_count`, left out).
    /// A listing of 10 items whose pages of more than 4 are past the response limit (long comments,
    /// 1 MB descriptions): `item` writes item N's JSON.
    struct LargeItems: OutboundHTTPClient {
        let log: PageLog
        let item: @Sendable (Int) -> String
        func send(_ request: OutboundRequest) async throws -> OutboundResponse {
            let items = URLComponents(url: request.url, resolvingAgainstBaseURL: false)?.queryItems ?? []
            let perPage = Int(items.first { $0.name == "per_page" }?.value ?? "") ?? 20
            let page = Int(items.first { $0.name == "page" }?.value ?? "") ?? 1
            await log.add("\(perPage)x\(page)")
            if perPage > 4 { throw OutboundHTTPError.responseTooLarge("response from 127.0.0.1 exceeded the size limit") }
            let ids = ((page - 1) * perPage + 1)...min(page * perPage, 10)
            let body = "[" + ids.map(item).joined(separator: ",") + "]"
            return OutboundResponse(status: 200, headers: [("X-Next-Page", page * perPage < 10 ? String(page + 1) : "")], body: Data(body.utf8))
        }
    }

    static func listDiffs(_ next: @escaping @Sendable (String) -> String) async throws -> (files: Int, pages: [String]) {
        let log = PageLog()
        let client = GitLabClient(baseURL: URL(string: "http://127.0.0.1:9")!, token: "glpat-test", http: DiffPages(log: log, next: next))
        let listed = try await client.mergeRequestDiffs(project: 1, iid: 1)
        #expect(listed.unlisted == 0)
        return (listed.diffs.count, await log.pages.filter { $0 != "?" })
    }

    @Test("discussions whose page would pass the response limit (long comments anyone can write) are read in smaller pages; it failed every review of the merge request")
    func discussionsInShrinkingPages() async throws {
        // 10 discussions; a page of more than 4 is past the limit.
        let log = PageLog()
        let client = GitLabClient(baseURL: URL(string: "http://127.0.0.1:9")!, token: "glpat-test", http: LargeItems(log: log) { id in
            #"{"id":"d\#(id)","notes":[{"id":\#(id),"body":"long","author":{"id":1,"username":"u"}}]}"#
        })
        let discussions = try await client.discussions(project: 1, iid: 1)
        #expect(discussions.map(\.id) == (1...10).map { "d\($0)" }, "\(discussions.map(\.id))")
        #expect(await log.pages.first == "100x1")
    }

    @Test("open merge requests whose page would pass the response limit (1 MB descriptions) are listed in smaller pages; the catch-up sweep could not list the project")
    func openMergeRequestsInShrinkingPages() async throws {
        let log = PageLog()
        let client = GitLabClient(baseURL: URL(string: "http://127.0.0.1:9")!, token: "glpat-test", http: LargeItems(log: log) { iid in
            #"{"iid":\#(iid),"state":"opened","description":"long"}"#
        })
        let listed = try await client.openMergeRequests(project: 1)
        #expect(listed.items.map(\.iid) == Array(1...10))
        #expect(await log.pages.first == "100x1")
    }

    @Test("a listing whose X-Next-Page does not move forward (a repeated page 1) stops: each page read once, nothing listed twice")
    func paginationOnlyForward() async throws {
        // Page 1 names page 2; page 2 names page 1 again, then page "x".
        let listed = try await Self.listDiffs { $0 == "1" ? "2" : $0 == "2" ? "1" : "x" }
        #expect(listed.files == 2 && listed.pages == ["1", "2"])
    }

    @Test("a next page far ahead (X-Next-Page near Int.max) is read as the page after this one: no overflow, nothing skipped")
    func paginationFarAhead() async throws {
        let listed = try await Self.listDiffs { $0 == "1" ? "9223372036854775807" : $0 == "2" ? "99999999999999999" : "" }
        #expect(listed.files == 3 && listed.pages == ["1", "2", "3"])
    }

    @Test("the open merge requests are listed once each though an instance answers the same page again and again")
    func openMergeRequestsOnce() async throws {
        struct SamePage: OutboundHTTPClient {
            func send(_ request: OutboundRequest) async throws -> OutboundResponse {
                let page = Int(URLComponents(url: request.url, resolvingAgainstBaseURL: false)?.queryItems?.first { $0.name == "page" }?.value ?? "1") ?? 1
                let body = "[" + (1...3).map { #"{"iid":\#($0),"sha":"abc\#($0)","state":"opened"}"# }.joined(separator: ",") + "]"
                return OutboundResponse(status: 200, headers: [("X-Next-Page", String(page + 1))], body: Data(body.utf8))
            }
        }
        let client = GitLabClient(baseURL: URL(string: "http://127.0.0.1:9")!, token: "glpat-test", http: SamePage())
        let session = GitLabReconcileSession(client: client, rateBudget: GitLabRateBudget())
        let repository = try JSONDecoder().decode(RepositoryRecord.self, from: Data("""
            {"id": 1, "integrationId": "int_0000000000000001", "externalId": 7, "fullName": "acme/app", "enabled": true, "removed": false, "registeredAt": 0}
            """.utf8))
        let listed = try await session.openPullRequests(repository)
        #expect(listed.pulls.map(\.number) == [1, 2, 3])
        #expect(listed.truncatedAfter == 3)
    }

    @Test("the catch-up sweep takes only what the webhook path would: a positive number and a head of letters and digits")
    func reconcileTakesPlausiblePullRequests() {
        let pulls = [(5, "0123abcdef"), (-5, "0123abcdef"), (0, "0123abcdef"), (6, "../x"), (7, ""), (8, "abc?d#e"), (9, String(repeating: "a", count: 65))]
            .map { OpenPullRequest(number: $0.0, headSHA: $0.1, baseSHA: "b", isDraft: false) }
        #expect(pulls.filter(\.isReviewable).map(\.number) == [5])
    }

    @Test("a merge request is a draft when GitLab says so; its title counts only where GitLab sends no flag, read by GitLab's rule")
    func draftTitles() {
        for title in ["Draft: fix", "draft: fix", "[Draft] fix", "(Draft) fix"] {
            #expect(GitLabSession.isDraft(flag: nil, workInProgress: nil, title: title), "\(title)")
        }
        // GitLab itself does not hold these as drafts (WIP was dropped in 14.0): no "ready" event would ever come.
        for title in ["Fix drafts", "Redraft: the parser", "fix", "Draft release notes for v2", "WIP: refactor parser", "[WIP] fix", " Draft: x"] {
            #expect(!GitLabSession.isDraft(flag: nil, workInProgress: nil, title: title), "\(title)")
        }
        #expect(!GitLabSession.isDraft(flag: false, workInProgress: false, title: "Draft release notes"))
        #expect(!GitLabSession.isDraft(flag: false, workInProgress: nil, title: "Draft: x"))
        #expect(GitLabSession.isDraft(flag: true, workInProgress: nil, title: "release notes"))
        #expect(GitLabSession.isDraft(flag: nil, workInProgress: true, title: "WIP: x"))
    }

    @Test("a path that is both a new file and a renamed file's old path: a comment on the new side lands on the new file")
    func positionPrefersTheSidesPath() throws {
        let diffs = try JSONDecoder().decode([GitLabDiff].self, from: Data(#"""
            [{"old_path":"config.py","new_path":"config_old.py","renamed_file":true,"new_file":false,"deleted_file":false,"diff":"@@ -1 +1 @@\n-DEBUG = True\n+DEBUG = False\n"},
             {"old_path":"config.py","new_path":"config.py","new_file":true,"renamed_file":false,"deleted_file":false,"diff":"@@ -0,0 +1 @@\n+SETTING = 1\n"}]
            """#.utf8))
        let files = GitLabSession.diffFiles(diffs)
        let right = ReviewComment(path: "config.py", line: 1, side: .right, startLine: nil, body: "b")
        let onNew = try #require(GitLabSession.position(of: right, in: files, base: "b", start: "s", head: "h"))
        #expect(onNew.new_path == "config.py" && onNew.old_path == "config.py" && onNew.new_line == 1)
        // The old side of the renamed file is still reached by its old path.
        let left = ReviewComment(path: "config.py", line: 1, side: .left, startLine: nil, body: "b")
        let onOld = try #require(GitLabSession.position(of: left, in: files, base: "b", start: "s", head: "h"))
        #expect(onOld.old_path == "config.py" && onOld.new_path == "config_old.py" && onOld.old_line == 1)
    }

    @Test("GitLab's binary notice (`Binary files a/x and b/x differ`) is a binary file, not a diff the platform left out")
    func binaryNotice() throws {
        let diffs = try JSONDecoder().decode([GitLabDiff].self, from: Data(#"""
            [{"old_path":"logo.png","new_path":"logo.png","new_file":false,"renamed_file":false,"deleted_file":false,"diff":"Binary files a/logo.png and b/logo.png differ\n"},
             {"old_path":"x.bin","new_path":"x.bin","new_file":false,"renamed_file":false,"deleted_file":false,"diff":"not a diff at all"}]
            """#.utf8))
        let files = GitLabSession.diffFiles(diffs)
        #expect(files[0].isBinary && files[0].unreviewable == nil)
        #expect(!files[1].isBinary && files[1].unreviewable == .diffUnavailable)
    }

    @Test("an empty file added or deleted and a change of mode alone have no changed lines; they are not binary (they were counted so)")
    func emptyFilesAndModeChangesAreNotBinary() throws {
        let diffs = try JSONDecoder().decode([GitLabDiff].self, from: Data(#"""
            [{"old_path":"pkg/__init__.py","new_path":"pkg/__init__.py","a_mode":"0","b_mode":"100644","new_file":true,"renamed_file":false,"deleted_file":false,"diff":""},
             {"old_path":"run.sh","new_path":"run.sh","a_mode":"100644","b_mode":"100755","new_file":false,"renamed_file":false,"deleted_file":false,"diff":""},
             {"old_path":"old/.gitkeep","new_path":"old/.gitkeep","a_mode":"100644","b_mode":"0","new_file":false,"renamed_file":false,"deleted_file":true,"diff":""},
             {"old_path":"logo.png","new_path":"logo.png","a_mode":"100644","b_mode":"100644","new_file":true,"renamed_file":false,"deleted_file":false,"diff":"Binary files /dev/null and b/logo.png differ\n"},
             {"old_path":"img.png","new_path":"img.png","a_mode":"100644","b_mode":"100644","new_file":false,"renamed_file":false,"deleted_file":false,"diff":""}]
            """#.utf8))
        let files = GitLabSession.diffFiles(diffs)
        #expect(files[0...2].allSatisfy { !$0.isBinary && $0.unreviewable == .noChangedLines }, "\(files)")
        #expect(files[3].isBinary && files[4].isBinary)
        let filter = PathFilter(defaultSkips: false)
        #expect(files.map { filter.decision(for: $0) }.filter { $0 == .skip(.binary) }.count == 2)
    }

    @Test("suggestion fences become GitLab's suggestion:-N+0 for the lines the finding spans")
    func suggestions() {
        let one = ReviewComment(path: "a", line: 5, side: .right, startLine: nil, body: "Use x.\n\n```suggestion\nlet x = 1\n```")
        #expect(GitLabSession.gitLabBody(one).contains("```suggestion:-0+0\nlet x = 1\n```"))
        let three = ReviewComment(path: "a", line: 7, side: .right, startLine: 5, body: "````suggestion\na\nb\nc\n````")
        #expect(GitLabSession.gitLabBody(three).hasPrefix("````suggestion:-2+0\n"))
    }
}
