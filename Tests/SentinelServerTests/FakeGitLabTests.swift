import Foundation
import Hummingbird
import NIOCore
import SentinelCore
import SentinelTestSupport
import Testing

/// The loopback GitLab must behave like GitLab where Sentinel depends on it: these tests pin the
/// fake's answers (auth, scopes, 404s, pagination headers, discussion positions, commit status
/// transitions) to GitLab's, and its webhook payloads to the shapes in ../shared/fixtures/gitlab.
@Suite("FakeGitLab behaves like GitLab")
struct FakeGitLabTests {
    static let project: Int64 = 77
    static let path = "group/sub/sub-sub/project"
    static let head = "f9ce7e16e56c162edbc9e480108041cf6b0291fe"
    static let base = "5e6dffa282c5129aa67cd227a0429be21bfdaf80"
    /// `app.js`: line 2 removed, lines 2-3 added (new numbering), context around; a second hunk at 20.
    static let appDiff = """
        @@ -1,4 +1,5 @@
         import a
        -let x = 1
        +let x = 2
        +let y = 3
         function f() {
         }
        @@ -20,3 +21,4 @@ function g() {
         one
        +two
         three
         four
        """
    static let files: [FakeGitLabDiffFile] = [.modified("src/app.js", diff: appDiff), .added("README.md", diff: "@@ -0,0 +1,2 @@\n+# Title\n+Text")]

    struct World {
        let gitlab: FakeGitLab
        let client: AsyncOutboundHTTPClient

        static func make(tls: Bool = false) async throws -> World {
            let gitlab = try await FakeGitLab.start(tls: tls)
            await gitlab.state.addProject(id: FakeGitLabTests.project, path: FakeGitLabTests.path)
            await gitlab.state.addMergeRequest(FakeGitLabMergeRequest(project: FakeGitLabTests.project, iid: 7, headSHA: FakeGitLabTests.head,
                                                                      baseSHA: FakeGitLabTests.base, files: FakeGitLabTests.files))
            return World(gitlab: gitlab, client: try AsyncOutboundHTTPClient(caBundlePEM: gitlab.certificatePEM))
        }

        func stop() async {
            await client.shutdown()
            await gitlab.stop()
        }

        /// `path` is relative to `/api/v4` and sent as is (percent-encoding kept).
        func call(method: String = "GET", _ path: String, token: String? = FakeGitLab.token, bearer: Bool = false,
                  json: Any? = nil) async throws -> (status: Int, json: Any?, response: OutboundResponse) {
            var headers: [(String, String)] = []
            if let token { headers.append(bearer ? ("Authorization", "Bearer \(token)") : ("PRIVATE-TOKEN", token)) }
            var body: Data?
            if let json {
                body = try JSONSerialization.data(withJSONObject: json)
                headers.append(("Content-Type", "application/json"))
            }
            let url = URL(string: gitlab.apiURL.absoluteString + path)!
            let response = try await client.send(OutboundRequest(method: method, url: url, headers: headers, body: body))
            return (response.status, try? JSONSerialization.jsonObject(with: response.body), response)
        }

        func position(newLine: Int? = nil, oldLine: Int? = nil, path: String = "src/app.js", head: String = FakeGitLabTests.head) -> [String: Any] {
            var p: [String: Any] = ["position_type": "text", "base_sha": FakeGitLabTests.base, "start_sha": FakeGitLabTests.base,
                                    "head_sha": head, "old_path": path, "new_path": path]
            if let newLine { p["new_line"] = newLine }
            if let oldLine { p["old_line"] = oldLine }
            return p
        }

        func comment(newLine: Int? = nil, oldLine: Int? = nil, path: String = "src/app.js", head: String = FakeGitLabTests.head) async throws -> (Int, Any?) {
            let r = try await call(method: "POST", "/projects/\(FakeGitLabTests.project)/merge_requests/7/discussions",
                                   json: ["body": "finding", "position": position(newLine: newLine, oldLine: oldLine, path: path, head: head)])
            return (r.status, r.json)
        }

        func status(_ state: String, sha: String = FakeGitLabTests.head, name: String = "Sentinel") async throws -> (Int, Any?) {
            let r = try await call(method: "POST", "/projects/\(FakeGitLabTests.project)/statuses/\(sha)",
                                   json: ["state": state, "name": name, "description": "review", "target_url": "https://sentinel.example/runs/1"])
            return (r.status, r.json)
        }
    }

    static func message(_ json: Any?) -> String? { (json as? [String: Any])?["message"] as? String }
    static func error(_ json: Any?) -> String? { (json as? [String: Any])?["error"] as? String }

    static let notOnDiff = "400 Bad request - Note {:line_code=>[\"can't be blank\", \"must be a valid line code\"]}"

    // MARK: authentication and lookup

    @Test("a missing or unknown token gets 401; PRIVATE-TOKEN and Bearer both work; /user is the token's user")
    func tokens() async throws {
        let world = try await World.make()
        let none = try await world.call("/user", token: nil)
        #expect(none.status == 401 && Self.message(none.json) == "401 Unauthorized")
        let wrong = try await world.call("/projects/77", token: "glpat-wrong")
        #expect(wrong.status == 401 && Self.message(wrong.json) == "401 Unauthorized")
        let user = try await world.call("/user")
        #expect(user.status == 200)
        let object = try #require(user.json as? [String: Any])
        #expect(object["username"] as? String == FakeGitLabState.botUser.username)
        #expect(object["id"] as? Int == Int(FakeGitLabState.botUser.id))
        #expect(object["bot"] as? Bool == true)
        let bearer = try await world.call("/projects/77", bearer: true)
        #expect(bearer.status == 200)
        await world.gitlab.state.revokeToken(FakeGitLab.token)
        let revoked = try await world.call("/user")
        #expect(revoked.status == 401 && Self.error(revoked.json) == "invalid_token")
        await world.stop()
    }

    @Test("a token without the api scope gets 403 insufficient_scope; read_api may read but not write")
    func scopes() async throws {
        let world = try await World.make()
        await world.gitlab.state.addToken("glpat-user-only", user: FakeGitLabUser(id: 5, username: "carol"), scopes: ["read_user"])
        await world.gitlab.state.addToken("glpat-read", user: FakeGitLabUser(id: 6, username: "dave"), scopes: ["read_api"])
        let me = try await world.call("/user", token: "glpat-user-only")
        #expect(me.status == 200)
        let denied = try await world.call("/projects/77/merge_requests/7", token: "glpat-user-only")
        #expect(denied.status == 403)
        let body = try #require(denied.json as? [String: Any])
        #expect(body["error"] as? String == "insufficient_scope")
        #expect(body["error_description"] as? String == "The request requires higher privileges than provided by the access token.")
        let read = try await world.call("/projects/77/merge_requests/7", token: "glpat-read")
        #expect(read.status == 200)
        let write = try await world.call(method: "POST", "/projects/77/merge_requests/7/notes", token: "glpat-read", json: ["body": "hi"])
        #expect(write.status == 403 && Self.error(write.json) == "insufficient_scope")
        #expect(await world.gitlab.state.notes(project: Self.project, iid: 7).isEmpty)
        await world.stop()
    }

    @Test("projects by id or URL-encoded nested path; unknown project, merge request or route is 404 in GitLab's words")
    func lookups() async throws {
        let world = try await World.make()
        let byPath = try await world.call("/projects/group%2Fsub%2Fsub-sub%2Fproject")
        #expect(byPath.status == 200)
        let project = try #require(byPath.json as? [String: Any])
        #expect(project["id"] as? Int == 77)
        #expect(project["path_with_namespace"] as? String == Self.path)
        #expect(project["web_url"] as? String == "\(world.gitlab.baseURL.absoluteString)/\(Self.path)")
        #expect(project["default_branch"] as? String == "main")
        let unknown = try await world.call("/projects/group%2Fnope")
        #expect(unknown.status == 404 && Self.message(unknown.json) == "404 Project Not Found")
        let noMR = try await world.call("/projects/77/merge_requests/99")
        #expect(noMR.status == 404 && Self.message(noMR.json) == "404 Not found")
        let noMRNotes = try await world.call("/projects/77/merge_requests/99/notes")
        #expect(noMRNotes.status == 404 && Self.message(noMRNotes.json) == "404 MergeRequest Not Found")
        let route = try await world.call("/projects/77/pipelines")
        #expect(route.status == 404 && Self.error(route.json) == "404 Not Found")
        await world.stop()
    }

    @Test("a merge request carries sha, draft, branches and diff_refs; diff_refs is null until GitLab has computed the diff")
    func mergeRequest() async throws {
        let world = try await World.make()
        let mr = try #require(try await world.call("/projects/77/merge_requests/7").json as? [String: Any])
        #expect(mr["iid"] as? Int == 7 && mr["project_id"] as? Int == 77 && mr["state"] as? String == "opened")
        #expect(mr["sha"] as? String == Self.head && mr["draft"] as? Bool == false && mr["work_in_progress"] as? Bool == false)
        #expect(mr["source_branch"] as? String == "feature" && mr["target_branch"] as? String == "main")
        #expect(mr["source_project_id"] as? Int == 77 && mr["target_project_id"] as? Int == 77)
        let refs = try #require(mr["diff_refs"] as? [String: Any])
        #expect(refs["head_sha"] as? String == Self.head && refs["base_sha"] as? String == Self.base && refs["start_sha"] as? String == Self.base)
        #expect((mr["web_url"] as? String)?.hasSuffix("/\(Self.path)/-/merge_requests/7") == true)
        await world.gitlab.state.updateMergeRequest(project: 77, iid: 7, draft: true, diffReady: false)
        let pending = try #require(try await world.call("/projects/77/merge_requests/7").json as? [String: Any])
        #expect(pending["diff_refs"] is NSNull)
        #expect(pending["draft"] as? Bool == true)
        await world.stop()
    }

    // MARK: pagination

    @Test("diffs are paginated with GitLab's headers (20 per page by default); an old instance answers 404 and serves /changes")
    func diffPagination() async throws {
        let world = try await World.make()
        let many = (1...45).map { FakeGitLabDiffFile.modified("f\($0).txt", diff: "@@ -1 +1 @@\n-a\n+b") }
        await world.gitlab.state.addMergeRequest(FakeGitLabMergeRequest(project: 77, iid: 8, headSHA: "c0ffee", baseSHA: Self.base, files: many))
        let first = try await world.call("/projects/77/merge_requests/8/diffs")
        #expect((first.json as? [Any])?.count == 20)
        #expect(first.response.header("X-Page") == "1" && first.response.header("X-Per-Page") == "20")
        #expect(first.response.header("X-Total") == "45" && first.response.header("X-Total-Pages") == "3")
        #expect(first.response.header("X-Next-Page") == "2" && first.response.header("X-Prev-Page") == "")
        let link = try #require(first.response.header("Link"))
        #expect(link.contains("page=2") && link.contains("rel=\"next\""))
        let last = try await world.call("/projects/77/merge_requests/8/diffs?page=3&per_page=20")
        #expect((last.json as? [Any])?.count == 5)
        #expect(last.response.header("X-Next-Page") == "")
        #expect(last.response.header("Link")?.contains("rel=\"next\"") == false)
        let big = try await world.call("/projects/77/merge_requests/8/diffs?per_page=500")
        #expect((big.json as? [Any])?.count == 45 && big.response.header("X-Per-Page") == "100")
        let item = try #require((first.json as? [[String: Any]])?.first)
        #expect(Set(item.keys) == ["old_path", "new_path", "a_mode", "b_mode", "diff", "new_file", "renamed_file", "deleted_file", "generated_file"])

        await world.gitlab.state.setDiffsEndpointAvailable(false)
        let old = try await world.call("/projects/77/merge_requests/8/diffs")
        #expect(old.status == 404)
        let changes = try #require(try await world.call("/projects/77/merge_requests/8/changes").json as? [String: Any])
        #expect((changes["changes"] as? [Any])?.count == 45 && changes["overflow"] as? Bool == false)
        #expect((changes["diff_refs"] as? [String: Any])?["head_sha"] as? String == "c0ffee")
        await world.stop()
    }

    @Test("notes list newest first, paginated; a posted note is authored by the token's user and recorded")
    func notes() async throws {
        let world = try await World.make()
        await world.gitlab.state.addNote(project: 77, iid: 7, body: "first", author: FakeGitLabUser(id: 42, username: "alice"))
        await world.gitlab.state.addNote(project: 77, iid: 7, body: "changed the description", author: FakeGitLabUser(id: 42, username: "alice"), system: true)
        let posted = try await world.call(method: "POST", "/projects/77/merge_requests/7/notes", json: ["body": "summary <!-- sentinel:run -->"])
        #expect(posted.status == 201)
        let note = try #require(posted.json as? [String: Any])
        #expect((note["author"] as? [String: Any])?["username"] as? String == FakeGitLabState.botUser.username)
        #expect(note["system"] as? Bool == false && note["noteable_type"] as? String == "MergeRequest" && note["noteable_iid"] as? Int == 7)
        let page = try await world.call("/projects/77/merge_requests/7/notes?per_page=2")
        let bodies = (page.json as? [[String: Any]])?.compactMap { $0["body"] as? String }
        #expect(bodies == ["summary <!-- sentinel:run -->", "changed the description"])
        #expect(page.response.header("X-Next-Page") == "2" && page.response.header("X-Total") == "3")
        let asc = try await world.call("/projects/77/merge_requests/7/notes?sort=asc")
        #expect((asc.json as? [[String: Any]])?.first?["body"] as? String == "first")
        let empty = try await world.call(method: "POST", "/projects/77/merge_requests/7/notes", json: ["body": "  "])
        #expect(empty.status == 400)
        let missing = try await world.call(method: "POST", "/projects/77/merge_requests/7/notes", json: ["text": "x"])
        #expect(missing.status == 400 && Self.error(missing.json) == "body is missing")
        let stored = await world.gitlab.state.notes(project: 77, iid: 7)
        #expect(stored.map(\.body) == ["first", "changed the description", "summary <!-- sentinel:run -->"])
        #expect(stored.last?.author == FakeGitLabState.botUser)
        await world.stop()
    }

    // MARK: discussions

    @Test("an added line takes only new_line, a removed line only old_line, a context line both; anything else is GitLab's 400")
    func positions() async throws {
        let world = try await World.make()
        // Accepted: added line 2 (new), removed line 2 (old), context `import a` (1,1), README added line 1.
        #expect(try await world.comment(newLine: 2).0 == 201)
        #expect(try await world.comment(oldLine: 2).0 == 201)
        #expect(try await world.comment(newLine: 1, oldLine: 1).0 == 201)
        #expect(try await world.comment(newLine: 1, path: "README.md").0 == 201)
        // Refused: an added line with old_line too, a context line with only one number, lines off the diff,
        // a file not in the diff, and old/new numbers that do not correspond.
        for (new, old, path) in [(2, 2, "src/app.js"), (1, nil, "src/app.js"), (nil, 1, "src/app.js"), (40, nil, "src/app.js"),
                                 (10, nil, "src/app.js"), (1, nil, "other.js"), (4, 4, "src/app.js")] as [(Int?, Int?, String)] {
            let (status, json) = try await world.comment(newLine: new, oldLine: old, path: path)
            #expect(status == 400, "new \(String(describing: new)) old \(String(describing: old)) \(path)")
            #expect(Self.message(json) == Self.notOnDiff)
        }
        // A head_sha that is no version of the merge request.
        let stale = try await world.comment(newLine: 2, head: "0000000000000000000000000000000000000000")
        #expect(stale.0 == 400 && Self.message(stale.1) == Self.notOnDiff)
        // No line at all: also incomplete.
        let (noLine, noLineJSON) = try await world.comment()
        #expect(noLine == 400)
        #expect(Self.message(noLineJSON) == "400 Bad request - Note {:line_code=>[\"can't be blank\", \"must be a valid line code\"], :position=>[\"is incomplete\"]}")
        let diffNotes = await world.gitlab.state.diffNotes(project: 77, iid: 7)
        #expect(diffNotes.count == 4)
        #expect(diffNotes.map { [$0.position?.oldLine, $0.position?.newLine] } == [[nil, 2], [2, nil], [1, 1], [nil, 1]])
        #expect(diffNotes.allSatisfy { $0.author == FakeGitLabState.botUser && $0.type == "DiffNote" })
        #expect(diffNotes.first?.position?.lineCode?.hasSuffix("_3_2") == true)
        #expect(await world.gitlab.state.rejected.count == 9)
        await world.stop()
    }

    @Test("an unchanged line between hunks is accepted with corresponding numbers (GitLab unfolds the diff)")
    func unfolded() async throws {
        let world = try await World.make()
        // Between the hunks the new file is one line ahead: old 10 is new 11.
        #expect(try await world.comment(newLine: 11, oldLine: 10).0 == 201)
        #expect(try await world.comment(newLine: 10, oldLine: 10).0 == 400)
        // After the last hunk only when the file is known to be that long.
        // After the last hunk (which added a line) the offset is 2, and only when the file is known to be that long.
        #expect(try await world.comment(newLine: 32, oldLine: 30).0 == 400)
        await world.gitlab.state.setFile(project: 77, ref: Self.head, path: "src/app.js",
                                         (1...40).map { "line \($0)" }.joined(separator: "\n") + "\n")
        #expect(try await world.comment(newLine: 32, oldLine: 30).0 == 201)
        #expect(try await world.comment(newLine: 31, oldLine: 30).0 == 400)
        #expect(try await world.comment(newLine: 42, oldLine: 40).0 == 400)
        await world.stop()
    }

    @Test("a position needs the three SHAs and a valid position_type (Grape's errors); positions on an earlier version stay valid")
    func positionParameters() async throws {
        let world = try await World.make()
        var position = world.position(newLine: 2)
        position["base_sha"] = nil
        let missing = try await world.call(method: "POST", "/projects/77/merge_requests/7/discussions", json: ["body": "x", "position": position])
        #expect(missing.status == 400 && Self.error(missing.json) == "position[base_sha] is missing")
        position = world.position(newLine: 2)
        position["position_type"] = "line"
        let type = try await world.call(method: "POST", "/projects/77/merge_requests/7/discussions", json: ["body": "x", "position": position])
        #expect(type.status == 400 && Self.error(type.json) == "position[position_type] does not have a valid value")
        let noBody = try await world.call(method: "POST", "/projects/77/merge_requests/7/discussions", json: ["position": world.position(newLine: 2)])
        #expect(noBody.status == 400 && Self.error(noBody.json) == "body is missing")
        // A general discussion (no position) is a DiscussionNote.
        let general = try await world.call(method: "POST", "/projects/77/merge_requests/7/discussions", json: ["body": "overall"])
        #expect(general.status == 201)
        let discussion = try #require(general.json as? [String: Any])
        #expect(discussion["individual_note"] as? Bool == false)
        #expect(((discussion["notes"] as? [[String: Any]])?.first?["type"]) as? String == "DiscussionNote")
        // New commits: the current diff_refs move; the old version's position is still accepted.
        await world.gitlab.state.pushMergeRequest(project: 77, iid: 7, headSHA: "abcdef1234", files: [.modified("src/app.js", diff: "@@ -1 +1 @@\n-import a\n+import b")])
        #expect(try await world.comment(newLine: 2).0 == 201)
        #expect(try await world.comment(newLine: 1, head: "abcdef1234").0 == 201)
        #expect(try await world.comment(newLine: 2, head: "abcdef1234").0 == 400)
        let versions = try #require(try await world.call("/projects/77/merge_requests/7/versions").json as? [[String: Any]])
        #expect(versions.map { $0["head_commit_sha"] as? String } == ["abcdef1234", Self.head])
        #expect(versions.first?["base_commit_sha"] as? String == Self.base && versions.first?["start_commit_sha"] as? String == Self.base)
        let listed = try #require(try await world.call("/projects/77/merge_requests/7/discussions").json as? [[String: Any]])
        #expect(listed.count == 3)
        let diffNote = try #require((listed[1]["notes"] as? [[String: Any]])?.first)
        #expect(diffNote["type"] as? String == "DiffNote")
        #expect((diffNote["position"] as? [String: Any])?["new_line"] as? Int == 2)
        await world.stop()
    }

    // MARK: commit statuses

    @Test("a status goes pending → running → success; the same running or pending state again is GitLab's 400")
    func statusTransitions() async throws {
        let world = try await World.make()
        #expect(try await world.status("pending").0 == 201)
        let twice = try await world.status("pending")
        #expect(twice.0 == 400)
        #expect(Self.message(twice.1) == "Cannot transition status via :enqueue from :pending (Reason(s): Status cannot transition via \"enqueue\")")
        #expect(try await world.status("running").0 == 201)
        let again = try await world.status("running")
        #expect(again.0 == 400)
        #expect(Self.message(again.1) == "Cannot transition status via :run from :running (Reason(s): Status cannot transition via \"run\")")
        let back = try await world.status("pending")
        #expect(back.0 == 400 && Self.message(back.1)?.hasPrefix("Cannot transition status via :enqueue from :running") == true)
        let skip = try await world.status("skipped")
        #expect(skip.0 == 400 && Self.message(skip.1)?.hasPrefix("Cannot transition status via :skip from :running") == true)
        let (done, doneJSON) = try await world.status("success")
        #expect(done == 201)
        let object = try #require(doneJSON as? [String: Any])
        #expect(object["status"] as? String == "success" && object["name"] as? String == "Sentinel" && object["ref"] as? String == "feature")
        #expect(object["target_url"] as? String == "https://sentinel.example/runs/1")
        #expect(await world.gitlab.state.statusStates(project: 77, sha: Self.head, name: "Sentinel") == ["pending", "running", "success"])
        let latest = await world.gitlab.state.statuses(project: 77, sha: Self.head)
        #expect(latest.count == 1 && latest.first?.status == "success" && latest.first?.author == FakeGitLabState.botUser)
        await world.stop()
    }

    @Test("after a finished status GitLab starts a new one of that name (the old one is retried): success → running is accepted")
    func statusRetry() async throws {
        let world = try await World.make()
        #expect(try await world.status("success").0 == 201)
        #expect(try await world.status("running").0 == 201)
        #expect(try await world.status("failed").0 == 201)
        let latest = await world.gitlab.state.statuses(project: 77, sha: Self.head)
        #expect(latest.map(\.status) == ["failed"])
        #expect(await world.gitlab.state.allStatuses(project: 77, sha: Self.head).map(\.retried) == [true, false])
        let listed = try await world.call("/projects/77/repository/commits/\(Self.head)/statuses")
        #expect((listed.json as? [[String: Any]])?.map { $0["status"] as? String } == ["failed"])
        let all = try await world.call("/projects/77/repository/commits/\(Self.head)/statuses?all=true")
        #expect((all.json as? [Any])?.count == 2)
        let unknown = try await world.status("pending", sha: "1234567890abcdef1234567890abcdef12345678")
        #expect(unknown.0 == 404 && Self.message(unknown.1) == "404 Commit Not Found")
        let bad = try await world.status("error")
        #expect(bad.0 == 400 && Self.error(bad.1) == "state does not have a valid value")
        await world.stop()
    }

    // MARK: repository, members

    @Test("raw files by URL-encoded path and ref; compare; members with access levels; each unknown is a 404")
    func repositoryAndMembers() async throws {
        let world = try await World.make()
        await world.gitlab.state.setFile(project: 77, ref: "feature", path: ".sentinel/config.yml", "review:\n  fail_on: high\n")
        await world.gitlab.state.setFile(project: 77, ref: "main", path: "docs/a.md", "main text")
        let file = try await world.call("/projects/77/repository/files/.sentinel%2Fconfig.yml/raw?ref=feature")
        #expect(file.status == 200 && String(decoding: file.response.body, as: UTF8.self) == "review:\n  fail_on: high\n")
        let defaultRef = try await world.call("/projects/77/repository/files/docs%2Fa.md/raw")
        #expect(String(decoding: defaultRef.response.body, as: UTF8.self) == "main text")
        let missing = try await world.call("/projects/77/repository/files/.sentinel%2Fconfig.yml/raw?ref=main")
        #expect(missing.status == 404 && Self.message(missing.json) == "404 File Not Found")

        await world.gitlab.state.setComparison(project: 77, from: "aaa", to: "bbb", files: [.modified("x.swift", diff: "@@ -1 +1 @@\n-a\n+b")], commits: ["bbb"])
        let compare = try #require(try await world.call("/projects/77/repository/compare?from=aaa&to=bbb&straight=true").json as? [String: Any])
        #expect((compare["diffs"] as? [[String: Any]])?.first?["new_path"] as? String == "x.swift")
        #expect(compare["compare_same_ref"] as? Bool == false && (compare["commits"] as? [Any])?.count == 1)
        let same = try #require(try await world.call("/projects/77/repository/compare?from=bbb&to=bbb").json as? [String: Any])
        #expect(same["compare_same_ref"] as? Bool == true && (same["diffs"] as? [Any])?.isEmpty == true)
        let noRef = try await world.call("/projects/77/repository/compare?from=aaa&to=zzz")
        #expect(noRef.status == 404 && Self.message(noRef.json) == "404 Ref Not Found")

        await world.gitlab.state.addMember(project: 77, userID: 42, username: "alice", accessLevel: .developer)
        await world.gitlab.state.addMember(project: 77, userID: 43, username: "gus", accessLevel: .guest)
        let dev = try #require(try await world.call("/projects/77/members/all/42").json as? [String: Any])
        #expect(dev["access_level"] as? Int == 30 && dev["username"] as? String == "alice" && dev["id"] as? Int == 42)
        let guest = try #require(try await world.call("/projects/77/members/all/43").json as? [String: Any])
        #expect(guest["access_level"] as? Int == 10)
        let stranger = try await world.call("/projects/77/members/all/44")
        #expect(stranger.status == 404 && Self.message(stranger.json) == "404 Not found")
        await world.stop()
    }

    // MARK: faults, log, TLS

    @Test("injected faults answer first (429 with Retry-After, 500), then the route works again; requests are logged")
    func faults() async throws {
        let world = try await World.make()
        await world.gitlab.state.inject("POST discussions", [.rateLimited(retryAfter: 7), .status(500)])
        let limited = try await world.comment(newLine: 2)
        #expect(limited.0 == 429)
        let first = try await world.call("/projects/77/merge_requests/7")
        #expect(first.status == 200)
        #expect(try await world.comment(newLine: 2).0 == 500)
        #expect(try await world.comment(newLine: 2).0 == 201)
        #expect(await world.gitlab.state.count("POST discussions") == 3)
        #expect(await world.gitlab.state.diffNotes(project: 77, iid: 7).count == 1)
        await world.gitlab.state.inject("GET merge_request", [.rateLimited(retryAfter: 3)])
        let retry = try await world.call("/projects/77/merge_requests/7")
        #expect(retry.status == 429 && retry.response.header("Retry-After") == "3")
        let log = await world.gitlab.state.requests
        #expect(log.contains { $0.route == "GET merge_request" && $0.target == "/api/v4/projects/77/merge_requests/7" })
        await world.stop()
    }

    @Test("over HTTPS the fake presents its own certificate; a client trusting it gets through")
    func https() async throws {
        let world = try await World.make(tls: true)
        #expect(world.gitlab.baseURL.scheme == "https" && world.gitlab.certificatePEM != nil)
        let user = try await world.call("/user")
        #expect(user.status == 200)
        let untrusting = try AsyncOutboundHTTPClient()
        let port = try #require(world.gitlab.baseURL.port)
        // The reason in words (it was BoringSSL's `handshakeFailed(…CERTIFICATE_VERIFY_FAILED at …/handshake.cc:320)`).
        await #expect(throws: OutboundHTTPError.connection("127.0.0.1:\(port): the server's TLS certificate is not trusted (not issued by a CA this appliance trusts, or expired)")) {
            _ = try await untrusting.send(OutboundRequest(url: world.gitlab.apiURL.appendingPathComponent("user"), headers: [("PRIVATE-TOKEN", FakeGitLab.token)], timeout: .seconds(5)))
        }
        await untrusting.shutdown()
        await world.stop()
    }

    @Test("a connection that fails says why in words: nothing listening, or https to a port that speaks plain HTTP")
    func connectionFailuresExplained() async throws {
        let world = try await World.make(tls: false)
        let client = try AsyncOutboundHTTPClient()
        let plain = try #require(world.gitlab.baseURL.port)
        // Held bound (not listening) until the call is refused: a port merely found free could be
        // given meanwhile to a fake that a test running in parallel starts.
        let held = try HeldPort(0)
        let closed = held.port
        // A call whose timeout is shorter than AsyncHTTPClient's 10 s connect timeout still says why
        // (while the client tried the connection again until then, it read "timed out").
        func failure(_ url: String) async -> String {
            do { _ = try await client.send(OutboundRequest(url: URL(string: url)!, timeout: .seconds(9))); return "answered" } catch { return "\(error)" }
        }
        async let tls = failure("https://127.0.0.1:\(plain)/api/v4/user")
        async let refused = failure("http://127.0.0.1:\(closed)/api/v4/user")
        #expect(await tls == "connection failed: 127.0.0.1:\(plain): the TLS handshake failed: the server does not speak TLS on that port")
        #expect(await refused == "connection failed: 127.0.0.1:\(closed): connection refused (nothing listens on that port)")
        withExtendedLifetime(held) {}
        await client.shutdown()
        await world.stop()
    }

    // MARK: webhooks

    @Test("deliver posts the payload with GitLab's headers")
    func deliver() async throws {
        let seen = Recorder<[String: String]>()
        let router = Router()
        router.post("/webhooks/gitlab/1") { request, _ -> Response in
            var headers: [String: String] = [:]
            for field in request.headers { headers[field.name.canonicalName.lowercased()] = field.value }
            var request = request
            headers["body"] = String(buffer: try await request.collectBody(upTo: 1 << 20))
            seen.append(headers)
            return Response(status: .accepted)
        }
        let ports = Rendezvous<Int>()
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { channel in await ports.set(channel.localAddress?.port ?? 0) })
        let payload = GitLabWebhook.mergeRequest(action: "open", mr: FakeGitLabMergeRequest(project: 77, iid: 7, headSHA: Self.head, baseSHA: Self.base, files: []),
                                                 project: FakeGitLabProject(id: 77, path: Self.path))
        let status = try await withThrowingTaskGroup(of: Int?.self) { group in
            group.addTask { try await app.runService(); return nil }
            let port = await ports.wait()
            let (status, _) = try await FakeGitLab.deliver(to: URL(string: "http://127.0.0.1:\(port)/webhooks/gitlab/1")!, token: "s3cret",
                                                           event: "Merge Request Hook", payload: payload, uuid: "uuid-1", idempotencyKey: "key-1")
            group.cancelAll()
            return status
        }
        #expect(status == 202)
        let headers = try #require(seen.all.first)
        #expect(headers["x-gitlab-token"] == "s3cret" && headers["x-gitlab-event"] == "Merge Request Hook")
        #expect(headers["x-gitlab-event-uuid"] == "uuid-1" && headers["idempotency-key"] == "key-1")
        #expect(headers["content-type"] == "application/json" && headers["body"] == String(decoding: payload, as: UTF8.self))
    }

    @Test("merge request hooks: action, state, oldrev only for pushes, draft changes, fork source")
    func mergeRequestHooks() async throws {
        let world = try await World.make()
        let state = world.gitlab.state
        func decode(_ data: Data) throws -> [String: Any] { try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any]) }
        let open = try decode(try await state.mergeRequestHook(action: "open", project: 77, iid: 7))
        let attributes = try #require(open["object_attributes"] as? [String: Any])
        #expect(open["object_kind"] as? String == "merge_request" && attributes["action"] as? String == "open" && attributes["state"] as? String == "opened")
        #expect(attributes["oldrev"] == nil && (attributes["last_commit"] as? [String: Any])?["id"] as? String == Self.head)
        #expect((open["project"] as? [String: Any])?["path_with_namespace"] as? String == Self.path)
        #expect((open["project"] as? [String: Any])?["web_url"] as? String == "\(world.gitlab.baseURL.absoluteString)/\(Self.path)")
        let push = try decode(try await state.mergeRequestHook(action: "update", project: 77, iid: 7, oldrev: Self.base))
        #expect((push["object_attributes"] as? [String: Any])?["oldrev"] as? String == Self.base)
        let ready = try decode(try await state.mergeRequestHook(action: "update", project: 77, iid: 7, changes: GitLabHookChanges(draft: (true, false))))
        let draft = try #require((ready["changes"] as? [String: Any])?["draft"] as? [String: Any])
        #expect(draft["previous"] as? Bool == true && draft["current"] as? Bool == false)
        #expect((ready["object_attributes"] as? [String: Any])?["oldrev"] == nil)
        let merged = try decode(try await state.mergeRequestHook(action: "merge", project: 77, iid: 7))
        #expect((merged["object_attributes"] as? [String: Any])?["state"] as? String == "merged")
        let closed = try decode(try await state.mergeRequestHook(action: "close", project: 77, iid: 7))
        #expect((closed["object_attributes"] as? [String: Any])?["state_id"] as? Int == 2)
        let fork = try decode(GitLabWebhook.mergeRequest(action: "open", mr: FakeGitLabMergeRequest(project: 77, iid: 9, headSHA: "c1", baseSHA: "b1", sourceProjectID: 501, files: []),
                                                         project: FakeGitLabProject(id: 77, path: Self.path)))
        let forkAttributes = try #require(fork["object_attributes"] as? [String: Any])
        #expect(forkAttributes["source_project_id"] as? Int == 501 && forkAttributes["target_project_id"] as? Int == 77)
        #expect((forkAttributes["source"] as? [String: Any])?["id"] as? Int == 501)
        let note = try decode(try await state.noteHook("@sentinel review", project: 77, iid: 7, author: FakeGitLabUser(id: 43, username: "gus"), system: false))
        let noteAttributes = try #require(note["object_attributes"] as? [String: Any])
        #expect(note["object_kind"] as? String == "note" && noteAttributes["noteable_type"] as? String == "MergeRequest")
        #expect(noteAttributes["note"] as? String == "@sentinel review" && noteAttributes["author_id"] as? Int == 43 && noteAttributes["system"] as? Bool == false)
        #expect((note["merge_request"] as? [String: Any])?["iid"] as? Int == 7 && (note["user"] as? [String: Any])?["username"] as? String == "gus")
        let onIssue = try decode(try await state.noteHook("@sentinel review", project: 77, iid: 7, author: FakeGitLabUser(id: 43, username: "gus"), noteableType: "Issue"))
        #expect(onIssue["merge_request"] == nil && onIssue["issue"] != nil)
        await world.stop()
    }

    /// The fixtures of one hook kind: every key present in all of them must be in ours, and ours must
    /// use no key that none of them has (for the objects Sentinel reads).
    @Test("payload builders use the key sets of GitLab's own payloads (../shared/fixtures/gitlab)", .enabled(if: GitLabFixtures.available))
    func payloadKeySets() throws {
        let mrFixtures = try GitLabFixtures.webhooks(prefix: "merge_request_hook")
        let noteFixtures = try GitLabFixtures.webhooks(prefix: "note_hook")
        let mr = FakeGitLabMergeRequest(project: 77, iid: 7, headSHA: Self.head, baseSHA: Self.base, files: [])
        let project = FakeGitLabProject(id: 77, path: Self.path)
        let hooks = [GitLabWebhook.mergeRequest(action: "open", mr: mr, project: project),
                     GitLabWebhook.mergeRequest(action: "update", mr: mr, project: project, oldrev: Self.base, changes: GitLabHookChanges(draft: (true, false)))]
        for data in hooks {
            let ours = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            for path in ["", "object_attributes", "project", "user", "object_attributes.last_commit", "object_attributes.source", "repository"] {
                try GitLabFixtures.checkKeys(ours, fixtures: mrFixtures, path: path)
            }
        }
        let note = GitLabWebhook.note("@sentinel review", on: mr, project: project, author: FakeGitLabUser(id: 43, username: "gus"))
        let ours = try #require(try JSONSerialization.jsonObject(with: note) as? [String: Any])
        for path in ["", "object_attributes", "project", "user", "repository"] {
            try GitLabFixtures.checkKeys(ours, fixtures: noteFixtures, path: path)
        }
        // The note's merge_request is the same attribute set GitLab sends in Merge Request Hooks.
        try GitLabFixtures.checkKeys(ours, fixtures: noteFixtures, path: "merge_request",
                                     alsoAllowed: GitLabFixtures.union(mrFixtures, path: "object_attributes").subtracting(["action", "oldrev"]))
    }

    @Test("API answers use the key names of GitLab's documented responses (../shared/fixtures/gitlab/api)", .enabled(if: GitLabFixtures.available))
    func apiKeySets() async throws {
        let world = try await World.make()
        let recorded = try GitLabFixtures.object("api/merge_request.get.recorded_atlantis.json") as? [String: Any] ?? [:]
        let mr = try #require(try await world.call("/projects/77/merge_requests/7").json as? [String: Any])
        let needed: Set<String> = ["id", "iid", "project_id", "title", "state", "sha", "source_branch", "target_branch", "source_project_id",
                                   "target_project_id", "diff_refs", "web_url", "author", "work_in_progress", "merge_status", "changes_count"]
        #expect(needed.isSubset(of: Set(recorded.keys)))
        #expect(needed.isSubset(of: Set(mr.keys)))
        #expect(Set((recorded["diff_refs"] as? [String: Any] ?? [:]).keys) == Set((mr["diff_refs"] as? [String: Any] ?? [:]).keys))
        let docsDiff = try #require((try GitLabFixtures.object("api/merge_request_diffs.docs.json") as? [[String: Any]])?.first)
        let ourDiff = try #require((try await world.call("/projects/77/merge_requests/7/diffs").json as? [[String: Any]])?.first)
        #expect(Set(docsDiff.keys) == Set(ourDiff.keys))
        let docsVersion = try #require((try GitLabFixtures.object("api/merge_request_versions.docs.json") as? [Any])?.first as? [String: Any])
        let ourVersion = try #require((try await world.call("/projects/77/merge_requests/7/versions").json as? [[String: Any]])?.first)
        #expect(Set(docsVersion.keys) == Set(ourVersion.keys))
        let request = try #require(try GitLabFixtures.object("api/merge_request_discussion.create.request.derived.json") as? [String: Any])
        var position = try #require(request["position"] as? [String: Any])
        for key in ["base_sha", "start_sha"] { position[key] = Self.base }
        position["head_sha"] = Self.head
        position["old_path"] = "src/app.js"; position["new_path"] = "src/app.js"; position["new_line"] = 2
        let created = try await world.call(method: "POST", "/projects/77/merge_requests/7/discussions", json: ["body": request["body"] ?? "", "position": position])
        #expect(created.status == 201)
        let docsNote = try #require(((try GitLabFixtures.object("api/merge_request_discussions.diff_note.docs.json") as? [[String: Any]])?.first?["notes"] as? [[String: Any]])?.first)
        let ourNote = try #require(((created.json as? [String: Any])?["notes"] as? [[String: Any]])?.first)
        let noteKeys: Set<String> = ["id", "type", "body", "author", "system", "noteable_id", "noteable_type", "project_id", "position", "resolvable", "resolved"]
        #expect(noteKeys.isSubset(of: Set(docsNote.keys)) && noteKeys.isSubset(of: Set(ourNote.keys)))
        let docsPosition = Set((docsNote["position"] as? [String: Any] ?? [:]).keys).subtracting(["line_range"])
        #expect(docsPosition.isSubset(of: Set((ourNote["position"] as? [String: Any] ?? [:]).keys)))
        await world.stop()
    }
}

/// ../shared/fixtures/gitlab, as the conformance tests find it; tests using it are skipped when absent.
enum GitLabFixtures {
    static let root: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("shared/fixtures/gitlab")
    static var available: Bool { FileManager.default.fileExists(atPath: root.path) }

    static func object(_ path: String) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(contentsOf: root.appendingPathComponent(path)))
    }

    static func webhooks(prefix: String) throws -> [[String: Any]] {
        let urls = try FileManager.default.contentsOfDirectory(at: root.appendingPathComponent("webhooks"), includingPropertiesForKeys: nil)
            .filter { $0.lastPathComponent.hasPrefix(prefix) && $0.pathExtension == "json" }
        let objects = try urls.map { try JSONSerialization.jsonObject(with: Data(contentsOf: $0)) as? [String: Any] ?? [:] }
        guard !objects.isEmpty else { throw GitLabHookError(description: "no \(prefix) fixtures in \(root.path)/webhooks") }
        return objects
    }

    static func keys(_ object: [String: Any], path: String) -> Set<String> {
        var current: Any? = object
        for part in path.split(separator: ".") { current = (current as? [String: Any])?[String(part)] }
        return Set((current as? [String: Any])?.keys.map { $0 } ?? [])
    }

    static func union(_ fixtures: [[String: Any]], path: String) -> Set<String> {
        fixtures.reduce(into: Set<String>()) { $0.formUnion(keys($1, path: path)) }
    }

    static func checkKeys(_ ours: [String: Any], fixtures: [[String: Any]], path: String, alsoAllowed: Set<String> = []) throws {
        let present = fixtures.map { keys($0, path: path) }.filter { !$0.isEmpty }
        guard let first = present.first else { return }
        let common = present.dropFirst().reduce(first) { $0.intersection($1) }
        let all = union(fixtures, path: path).union(alsoAllowed)
        let mine = keys(ours, path: path)
        #expect(common.subtracting(mine).isEmpty, "\(path.isEmpty ? "top level" : path): missing \(common.subtracting(mine).sorted())")
        #expect(mine.subtracting(all).isEmpty, "\(path.isEmpty ? "top level" : path): not in GitLab's payloads \(mine.subtracting(all).sorted())")
    }
}
