import Foundation
import GRDB
import SentinelCore
import SentinelTestSupport
import Testing

@Suite("GitLab conformance (shared fixtures)", .enabled(if: Fixtures.available))
struct GitLabConformanceTests {
    static let integration = IntegrationID("int_gitlabconform000")!

    static func route(_ file: String, commandAccess: Int? = nil, in ws: WorkspaceID, _ h: TestHarness) async throws -> String {
        let url = Fixtures.url("gitlab/webhooks/\(file).json")
        let body = try Data(contentsOf: url)
        let event = file.hasPrefix("merge_request_hook") ? "Merge Request Hook" : "Note Hook"
        return try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in
                try GitLabDeliveryProcessor.route(event: event, payload: body, integrationID: integration, correlationID: file,
                                                  commandAccess: commandAccess, tx: &tx)
            }
        }
    }

    @Test("GitLab's published and recorded webhook payloads route as the issue says")
    func webhookPayloadsRoute() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in
                try tx.db.execute(sql: """
                    INSERT INTO integrations (id, kind, api_url, webhook_secret, bot_login, created_at)
                    VALUES (?, 'gitlab', 'https://gitlab.com', x'00', 'sentinel-bot', 0)
                    """, arguments: [Self.integration.rawValue])
            }
        }
        var outcomes: [String: String] = [:]
        for file in try Fixtures.files(in: "gitlab/webhooks") {
            let name = file.deletingPathExtension().lastPathComponent
            let outcome = try await Self.route(name, in: ws, h)
            outcomes[name] = outcome
            #expect(!outcome.hasPrefix("ignored: payload not understood"), "\(name): \(outcome)")
        }
        #expect(outcomes.count >= 6)
        // A real "open" starts a run; a push (update with oldrev) starts one for the new head.
        #expect(outcomes["merge_request_hook.open.gitlab_com"]?.contains("requested") == true)
        #expect(outcomes["merge_request_hook.update.new_commit.gitlab_com"]?.contains("requested") == true)
        // The docs example is an "open" whose changes mark it ready: a run too.
        #expect(outcomes["merge_request_hook.docs"]?.contains("requested") == true)
        // Plain comments are no commands; a command needs Developer access, asked from GitLab first.
        #expect(outcomes["note_hook.merge_request.gitlab_com"] == "ignored: no command")
        #expect(outcomes["note_hook.merge_request.docs"] == "ignored: no command")
        let runs = try await h.supervisor.withWorkspace(ws) { try await $0.read { db in try ReviewRunStore.list(in: db) } }
        #expect(runs.contains { $0.headSHA == "c4c79227ed610f1151f05bbc5be33b4f340d39c8" && $0.trigger == "opened" })
        #expect(runs.contains { $0.trigger == "push" })
        let repos = try await h.supervisor.withWorkspace(ws) { try await $0.read { db in try RepositoryStore.all(in: db) } }
        #expect(repos.contains { $0.fullName == "quan.hoang/atlantis-example" })
        // Redelivering the same open changes nothing.
        #expect(try await Self.route("merge_request_hook.open.gitlab_com", in: ws, h).contains("already exists"))
        await h.stop()
    }

    @Test("a note command counts from a Developer, not from a Guest; edits and system notes never")
    func noteCommands() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in
                try tx.db.execute(sql: """
                    INSERT INTO integrations (id, kind, api_url, webhook_secret, bot_login, created_at)
                    VALUES (?, 'gitlab', 'https://gitlab.com', x'00', 'sentinel-bot', 0)
                    """, arguments: [Self.integration.rawValue])
            }
        }
        var note = try Fixtures.json("gitlab/webhooks/note_hook.merge_request.gitlab_com.json")
        func route(_ change: (inout [String: Any]) -> Void, access: Int?) async throws -> String {
            var copy = note
            change(&copy)
            let body = try JSONSerialization.data(withJSONObject: copy)
            return try await h.supervisor.withWorkspace(ws) { actor in
                try await actor.write { tx in
                    try GitLabDeliveryProcessor.route(event: "Note Hook", payload: body, integrationID: Self.integration, correlationID: nil,
                                                      commandAccess: access, tx: &tx)
                }
            }
        }
        func attributes(_ edit: @escaping ([String: Any]) -> [String: Any]) -> (inout [String: Any]) -> Void {
            { payload in payload["object_attributes"] = edit(payload["object_attributes"] as? [String: Any] ?? [:]) }
        }
        let command = attributes { var a = $0; a["note"] = "@sentinel review please"; return a }
        #expect(try await route(command, access: 10).hasPrefix(GitHubDeliveryProcessor.refusedCommandPrefix))
        #expect(try await route(command, access: 30).contains("requested by note"))
        #expect(try await route({ command(&$0); var a = $0["object_attributes"] as? [String: Any] ?? [:]; a["system"] = true
                                  $0["object_attributes"] = a }, access: 50) == "ignored: system note")
        #expect(try await route({ command(&$0); var a = $0["object_attributes"] as? [String: Any] ?? [:]; a["action"] = "update"
                                  $0["object_attributes"] = a }, access: 50) == "ignored: note update")
        #expect(try await route({ command(&$0); $0["user"] = ["id": 1, "username": "Sentinel-Bot"] }, access: 50)
                == "ignored: note by the integration's user")
        // A note on a merge request that lacks the merge request: a payload not understood, not "not a merge request".
        #expect(try await route({ command(&$0); $0.removeValue(forKey: "merge_request") }, access: 50)
                == "ignored: payload not understood (missing merge_request)")
        note["object_attributes"] = ["id": 7, "note": "@sentinel review", "noteable_type": "Issue"]
        #expect(try await route({ _ in }, access: 50) == "ignored: note on noteable_type Issue, not on a merge request")
        // Without a noteable_type: not "a unknown".
        note["object_attributes"] = ["id": 7, "note": "@sentinel review"]
        #expect(try await route({ _ in }, access: 50) == "ignored: note without a noteable_type, not on a merge request")
        await h.stop()
    }

    @Test("GitLab's published API responses decode into Sentinel's models; diffs parse")
    func apiShapes() throws {
        let mr = try JSONDecoder().decode(GitLabMergeRequest.self, from: Data(contentsOf: Fixtures.url("gitlab/api/merge_request.get.recorded_atlantis.json")))
        #expect(mr.diff_refs?.head_sha == "901d9770ef1a6862e2a73ec1bacc73590abb9aff")
        #expect(mr.state == "opened")
        let diffs = try JSONDecoder().decode([GitLabDiff].self, from: Data(contentsOf: Fixtures.url("gitlab/api/merge_request_diffs.docs.json")))
        let files = GitLabSession.diffFiles(diffs)
        #expect(files.count == 2)
        #expect(files[0].newPath == "README" && files[0].hunks.first?.lines.count == 2)
        // The docs' second diff has a hunk header without ranges: kept, with nothing reviewable.
        #expect(files[1].newPath == "VERSION" && files[1].hunks.isEmpty)
        struct Changes: Decodable { let changes: [GitLabDiff] }
        let changes = try JSONDecoder().decode(Changes.self, from: Data(contentsOf: Fixtures.url("gitlab/api/merge_request_changes.docs.json")))
        #expect(!changes.changes.isEmpty)
        _ = try JSONDecoder().decode([GitLabDiscussion].self, from: Data(contentsOf: Fixtures.url("gitlab/api/merge_request_discussions.list.docs.json")))
        _ = try JSONDecoder().decode([GitLabDiscussion].self, from: Data(contentsOf: Fixtures.url("gitlab/api/merge_request_discussions.diff_note.docs.json")))
    }

    @Test("the discussion Sentinel posts for an added line has the keys of GitLab's documented request")
    func discussionRequestShape() throws {
        let documented = try Fixtures.json("gitlab/api/merge_request_discussion.create.request.derived.json")
        let documentedPosition: [String: Any] = try cast(documented["position"], "position")
        let file = try DiffFile.fromPatch(path: "file.js", status: .modified, patch: "@@ -16,2 +16,3 @@\n a\n b\n+c")
        let comment = ReviewComment(path: "file.js", line: 18, side: .right, startLine: nil, body: "test comment body")
        let position = try #require(GitLabSession.position(of: comment, in: [file], base: "5e6dffa282c5129aa67cd227a0429be21bfdaf80",
                                                           start: "5e6dffa282c5129aa67cd227a0429be21bfdaf80",
                                                           head: "f9ce7e16e56c162edbc9e480108041cf6b0291fe"))
        let ours = try #require(try JSONSerialization.jsonObject(with: JSONEncoder().encode(GitLabDiscussionRequest(body: "test comment body",
                                                                                                                    position: position))) as? [String: Any])
        let ourPosition: [String: Any] = try cast(ours["position"], "position")
        #expect(Set(ourPosition.keys) == Set(documentedPosition.keys))
        #expect(ourPosition["new_line"] as? Int == 18 && ourPosition["old_line"] == nil)
        // An unchanged line carries both numbers; a removed line only the old one; a line off the diff is nowhere.
        let context = try #require(GitLabSession.position(of: ReviewComment(path: "file.js", line: 17, side: .right, startLine: nil, body: ""),
                                                          in: [file], base: "b", start: "s", head: "h"))
        #expect(context.old_line == 17 && context.new_line == 17)
        #expect(GitLabSession.position(of: ReviewComment(path: "file.js", line: 40, side: .right, startLine: nil, body: ""), in: [file],
                                       base: "b", start: "s", head: "h") == nil)
    }
}
