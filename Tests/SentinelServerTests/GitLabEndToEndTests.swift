import AsyncHTTPClient
import Foundation
import GRDB
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import SentinelCore
import SentinelServer
import SentinelTestSupport
import Testing

/// A merge request on a (fake) GitLab, delivered to Sentinel's real HTTP stack on loopback,
/// reviewed by the built-in checks, and posted back as discussions, a summary note and a status.
final class GitLabWorld: Sendable {
    let gitlab: FakeGitLab
    let appliance: Appliance
    let directory: TemporaryDirectory
    let workspace: WorkspaceID
    let integration: IntegrationSummary
    let secret = "gitlab-webhook-secret"
    let port: Int
    let services: RunningGroup
    let project: FakeGitLabProject
    let log = CapturedLog()

    /// A leaked AWS key on line 3 of app.py and a conflict marker in README.md: two built-in findings.
    static let files: [FakeGitLabDiffFile] = [
        .modified("app.py", diff: "@@ -1,3 +1,4 @@\n import os\n-KEY = os.environ['KEY']\n+KEY = os.environ.get('KEY')\n+AWS_ACCESS_KEY_ID = \"AKIAQWERTYUIOPASDFGH\"\n print(KEY)\n"),
        .modified("README.md", diff: "@@ -10,2 +10,4 @@\n ## Usage\n+<<<<<<< HEAD\n+Run it.\n Done.\n"),
        .modified("package-lock.json", diff: "@@ -1 +1 @@\n-{}\n+{\"lockfileVersion\": 3}\n"),
    ]

    init(tls: Bool = false, projectPath: String = "acme/web", config adjust: (inout SentinelConfig) -> Void = { _ in }) async throws {
        gitlab = try await FakeGitLab.start(tls: tls)
        directory = TemporaryDirectory("sentinel-gl")
        var config = testConfig()
        config.server.tlsEnabled = false
        config.server.host = "127.0.0.1"
        config.server.port = 0
        config.gitlab.requestTimeoutSeconds = 2
        config.server.publicURL = "https://sentinel.example.com"
        adjust(&config)
        appliance = try Appliance(dataDirectory: DataDirectory(path: directory.path), config: config, logger: Logger.sentinel(level: "info", sink: log.sink))
        workspace = try appliance.workspaces.create(name: "acme").workspaceID!
        project = FakeGitLabProject(id: 77, path: projectPath)
        await gitlab.state.addProject(id: project.id, path: project.path)
        await gitlab.state.addMergeRequest(FakeGitLabMergeRequest(project: project.id, iid: 3, headSHA: "aaa111", baseSHA: "bbb000", files: Self.files))
        // The integration is added the way `sentinel integration add gitlab` does: the token checked first.
        let user = try await GitLabTokenCheck.user(baseURL: gitlab.baseURL, token: FakeGitLab.token, caBundlePEM: gitlab.certificatePEM,
                                                   destinations: DestinationPolicy())
        let (service, secret, base, ca) = (appliance.integrations, Data(secret.utf8), gitlab.baseURL, gitlab.certificatePEM)
        integration = try await appliance.supervisor.withWorkspace(workspace) { actor in
            try await service.addGitLab(workspace: actor, baseURL: base, token: FakeGitLab.token, webhookSecret: secret, caBundlePEM: ca,
                                        botUsername: user.username)
        }
        let box = Rendezvous<Int>()
        services = RunningGroup(try appliance.makeServiceGroup(stopOnSignals: false) { port in await box.set(port) })
        port = await box.wait()
    }

    func stop() async {
        try? await services.shutdown()
        await gitlab.stop()
        directory.cleanup()
    }

    var hookURL: URL { URL(string: "http://127.0.0.1:\(port)\(integration.webhookPath)")! }

    @discardableResult
    func deliver(_ event: String, _ payload: Data, uuid: String = UUID().uuidString, token: String? = nil) async throws -> (Int, String) {
        let reply = try await FakeGitLab.deliver(to: hookURL, token: token ?? secret, event: event, payload: payload, uuid: uuid)
        return (reply.status, reply.body)
    }

    func mergeRequest() async throws -> FakeGitLabMergeRequest {
        try #require(await gitlab.state.mergeRequest(project: project.id, iid: 3))
    }

    func runs() async throws -> [ReviewRun] {
        try await appliance.supervisor.withWorkspace(workspace) { try await $0.read { db in try ReviewRunStore.list(in: db) } }
    }

    func waitForFinished(_ count: Int) async -> Bool {
        await eventually { try await self.runs().filter { $0.state.isFinal }.count >= count }
    }

    /// An owner's API token for this workspace.
    func ownerToken() throws -> String {
        let user = try appliance.identity.createUser(email: "owner-\(UUID().uuidString.prefix(8))@example.com", password: "a long enough password",
                                                     isAdmin: false)
        try appliance.identity.setRole(.owner, userID: user.id, in: workspace)
        return try appliance.identity.createToken(for: user, name: "test", scopes: [.read, .write], expiresInDays: nil).0
    }

    func api(_ method: HTTPMethod, _ path: String, token: String) async throws -> (Int, String) {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/api/v1/workspaces/\(workspace.rawValue)\(path)")
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        return (Int(response.status.code), String(buffer: try await response.body.collect(upTo: 1 << 20)))
    }

    func summaryNotes() async -> [FakeGitLabNote] {
        await gitlab.state.notes(project: project.id, iid: 3).filter { $0.body.hasPrefix("<!-- sentinel:run:") }
    }
}

@Suite("GitLab end to end", .serialized)
struct GitLabEndToEndTests {
    @Test("a merge request hook of an integration removed before it is processed (from the command line: this server's cache still holds it) requests no run and registers no project")
    func removedIntegrationChangesNothing() async throws {
        let world = try await GitLabWorld()
        let mr = try await world.mergeRequest()
        // A hook the server settles at once, so that its cache holds the integration (with its token).
        #expect(try await world.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(action: "approved", mr: mr, project: world.project)).0 == 202)
        let service = world.appliance.integrations
        let integrationID = try #require(IntegrationID(world.integration.id))
        try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await service.remove(integrationID, from: actor, by: "cli")
        }
        // As before this server reads the integration revision again (about once a second): its
        // cache still holds the integration, and its token is accepted.
        try world.appliance.control.write { db in try db.execute(sql: "UPDATE integration_revision SET revision = revision - 1") }
        let (status, body) = try await world.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(action: "open", mr: mr, project: world.project))
        #expect(status == 202, "\(body)")
        @Sendable func read<T: Sendable>(_ sql: String, as type: T.Type) async throws -> T? where T: DatabaseValueConvertible {
            try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in try await actor.read { db in try T.fetchOne(db, sql: sql) } }
        }
        #expect(await eventually { try await read("SELECT count(*) FROM deliveries WHERE processed_at IS NOT NULL", as: Int.self) == 2 })
        #expect(try await read("SELECT outcome FROM deliveries ORDER BY received_at DESC LIMIT 1", as: String.self)
                == "ignored: integration \(integrationID) was removed")
        #expect(try await read("SELECT count(*) FROM review_runs", as: Int.self) == 0)
        #expect(try await read("SELECT count(*) FROM repositories", as: Int.self) == 0)
        await world.stop()
    }

    @Test("a merge request hook naming a project with an id that is not positive or a path not of the form group/project, or a merge request iid that is not positive, is not understood: nothing is registered, no run")
    func malformedProjectsNotRegistered() async throws {
        let world = try await GitLabWorld()
        let mr = FakeGitLabMergeRequest(project: world.project.id, iid: 3, headSHA: "aaa111", baseSHA: "bbb000", files: GitLabWorld.files)
        #expect(try await world.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(action: "open", mr: mr, project: FakeGitLabProject(id: -77, path: "acme/web"))).0 == 202)
        #expect(try await world.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(action: "open", mr: mr, project: FakeGitLabProject(id: 77, path: "acme/../../api"))).0 == 202)
        #expect(try await world.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(action: "open", mr: mr, project: FakeGitLabProject(id: 77, path: "web"))).0 == 202)
        // A merge request iid that is not positive names no merge request (a run for !-5 was requested).
        let negative = FakeGitLabMergeRequest(project: world.project.id, iid: -5, headSHA: "aaa111", baseSHA: "bbb000", files: GitLabWorld.files)
        #expect(try await world.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(action: "open", mr: negative, project: world.project)).0 == 202)
        // A head that is not a commit name (it went into API paths and queries).
        let oddHead = FakeGitLabMergeRequest(project: world.project.id, iid: 3, headSHA: "abc def", baseSHA: "bbb000", files: GitLabWorld.files)
        #expect(try await world.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(action: "open", mr: oddHead, project: world.project)).0 == 202)
        @Sendable func read<T: Sendable>(_ sql: String, as type: [T].Type) async throws -> [T] where T: DatabaseValueConvertible {
            try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in try await actor.read { db in try T.fetchAll(db, sql: sql) } }
        }
        #expect(await eventually { try await read("SELECT outcome FROM deliveries WHERE processed_at IS NOT NULL", as: [String].self).count == 5 })
        let outcomes = try await read("SELECT outcome FROM deliveries ORDER BY received_at", as: [String].self)
        #expect(outcomes == [
            "ignored: payload not understood (project.id: not a positive project id (-77))",
            "ignored: payload not understood (project.path_with_namespace: not a project path of the form group/project)",
            "ignored: payload not understood (project.path_with_namespace: not a project path of the form group/project)",
            "ignored: payload not understood (object_attributes.iid: not a merge request number (-5); they start at 1)",
            "ignored: payload not understood (object_attributes.last_commit.id is not a commit name)",
        ], "\(outcomes)")
        // A secret with outer spaces could never match the header that carries it: refused when added.
        let service = world.appliance.integrations
        let (base, ca) = (world.gitlab.baseURL, world.gitlab.certificatePEM)
        await #expect(throws: IntegrationError.self) {
            _ = try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
                try await service.addGitLab(workspace: actor, baseURL: base, token: FakeGitLab.token, webhookSecret: Data(" padded-secret ".utf8),
                                            caBundlePEM: ca)
            }
        }
        #expect(try await read("SELECT count(*) FROM repositories", as: [Int].self) == [0])
        #expect(try await read("SELECT count(*) FROM review_runs", as: [Int].self) == [0])
        await world.stop()
    }

    @Test("an opened merge request (HTTPS GitLab with its own CA, nested subgroups) gets one summary note, discussions only on diff lines and a concluded Sentinel status; redelivery and an update without new commits change nothing")
    func openedMergeRequestIsReviewed() async throws {
        let world = try await GitLabWorld(tls: true, projectPath: "group/sub/sub-sub/project")
        let mr = try await world.mergeRequest()
        let open = GitLabWebhook.mergeRequest(action: "open", mr: mr, project: world.project)
        let uuid = UUID().uuidString
        let (status, body) = try await world.deliver("Merge Request Hook", open, uuid: uuid)
        #expect(status == 202, "\(body)")
        #expect(await world.waitForFinished(1))
        let run = try #require(try await world.runs().first)
        #expect(run.state == .completed, "\(run.reason ?? "")")
        let summaries = await world.summaryNotes()
        #expect(summaries.count == 1)
        let summary = try #require(summaries.first)
        #expect(summary.author.id == FakeGitLabState.botUser.id)
        #expect(summary.body.contains("Reviewed 2 of 3 files; skipped 1: lock files (1)."), "\(summary.body)")
        #expect(!summary.body.contains("could not place inline"), "every finding is on a diff line")
        let diffNotes = await world.gitlab.state.diffNotes(project: world.project.id, iid: 3)
        #expect(diffNotes.count == 2)
        let secretNote = try #require(diffNotes.first { $0.position?.newPath == "app.py" })
        #expect(secretNote.position?.newLine == 3 && secretNote.position?.oldLine == nil, "an added line carries only new_line")
        #expect(!secretNote.body.contains("AKIAQWERTYUIOPASDFGH"), "the secret itself is never echoed")
        #expect(diffNotes.contains { $0.position?.newPath == "README.md" && $0.position?.newLine == 11 })
        let rejected = await world.gitlab.state.rejected
        #expect(rejected.isEmpty, "\(rejected)")
        // The gate: pending → running → failed (a critical finding reaches the default fail_on), linking to the run.
        #expect(await world.gitlab.state.statusStates(project: world.project.id, sha: "aaa111", name: "Sentinel") == ["pending", "running", "failed"])
        let gate = try #require(await world.gitlab.state.statuses(project: world.project.id, sha: "aaa111").first)
        #expect(gate.targetURL == "https://sentinel.example.com/workspaces/\(world.workspace.rawValue)/runs/\(run.id)")
        let repos = try await world.appliance.supervisor.withWorkspace(world.workspace) { try await $0.read { db in try RepositoryStore.all(in: db) } }
        #expect(repos.map(\.fullName) == ["group/sub/sub-sub/project"])
        // The API shows the run's platform.
        let token = try world.ownerToken()
        let (listed, runsBody) = try await world.api(.GET, "/runs", token: token)
        #expect(listed == 200 && runsBody.contains(#""platform":"gitlab""#), "\(runsBody)")
        let (analytics, rollupsBody) = try await world.api(.GET, "/analytics", token: token)
        #expect(analytics == 200 && rollupsBody.contains(#""platform":"gitlab""#) && rollupsBody.contains("group/sub/sub-sub/project"), "\(rollupsBody)")
        // The run's events, as the analytics export ships them, name the platform too.
        let runEvents = try await world.appliance.supervisor.withWorkspace(world.workspace) {
            try await $0.read { db in try EventLog.read(after: 0, limit: 1_000, types: ["RunCreated", "RunCompleted"], in: db) }
        }
        #expect(runEvents.count == 2 && runEvents.allSatisfy { $0.data.contains(#""platform":"gitlab""#) }, "\(runEvents.map(\.data))")

        // The same delivery again, and an edit of the title: nothing new.
        let (again, _) = try await world.deliver("Merge Request Hook", open, uuid: uuid)
        #expect(again == 202)
        let edit = GitLabWebhook.mergeRequest(action: "update", mr: mr, project: world.project,
                                              changes: GitLabHookChanges(title: (previous: "Add a feature", current: "Add a better feature")))
        #expect(try await world.deliver("Merge Request Hook", edit).0 == 202)
        @Sendable func outcomes() async throws -> [String] {
            try await world.appliance.supervisor.withWorkspace(world.workspace) {
                try await $0.read { db in try String.fetchAll(db, sql: "SELECT outcome FROM deliveries WHERE outcome IS NOT NULL ORDER BY received_at") }
            }
        }
        // Wait for the edit's delivery to be processed (a fixed sleep was too short on a loaded machine).
        let processed = await eventually { try await outcomes().contains("ignored: merge request updated without new commits") }
        let seen = (try? await outcomes()) ?? []
        #expect(processed, "\(seen)")
        #expect(try await world.runs().count == 1)
        #expect(await world.summaryNotes().count == 1)
        await world.stop()
    }

    @Test("a merge request from a fork, whose head no branch of the project holds, gets its status on refs/merge-requests/N/head and its review (GitLab's 404 failed every one)")
    func forkMergeRequestReviewed() async throws {
        let world = try await GitLabWorld()
        let fork = FakeGitLabMergeRequest(project: world.project.id, iid: 4, headSHA: "f0f0f0", baseSHA: "bbb000", sourceProjectID: 501,
                                          files: GitLabWorld.files)
        await world.gitlab.state.addMergeRequest(fork)
        let (status, body) = try await world.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(action: "open", mr: fork, project: world.project))
        #expect(status == 202, "\(body)")
        #expect(await world.waitForFinished(1))
        let run = try #require(try await world.runs().first)
        #expect(run.state == .completed, "\(run.reason ?? "")")
        let statuses = await world.gitlab.state.statuses(project: world.project.id, sha: "f0f0f0")
        #expect(!statuses.isEmpty && statuses.allSatisfy { $0.ref == "refs/merge-requests/4/head" }, "\(statuses)")
        #expect(statuses.last?.status == "failed" || statuses.last?.status == "success", "\(statuses)")
        #expect(await world.gitlab.state.notes(project: world.project.id, iid: 4).contains { $0.body.hasPrefix("<!-- sentinel:run:") })
        await world.stop()
    }

    @Test("a merge request moved to another target branch is reviewed again (what the new branch lacks was never reviewed); moved back, again")
    func retargetedMergeRequestReviewed() async throws {
        let world = try await GitLabWorld()
        let mr = try await world.mergeRequest()
        _ = try await world.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(action: "open", mr: mr, project: world.project))
        #expect(await world.waitForFinished(1))
        let moved = GitLabWebhook.mergeRequest(action: "update", mr: mr, project: world.project,
                                               changes: GitLabHookChanges(targetBranch: (previous: "main", current: "develop")))
        #expect(try await world.deliver("Merge Request Hook", moved).0 == 202)
        #expect(await world.waitForFinished(2))
        let back = GitLabWebhook.mergeRequest(action: "update", mr: mr, project: world.project,
                                              changes: GitLabHookChanges(targetBranch: (previous: "develop", current: "main")))
        #expect(try await world.deliver("Merge Request Hook", back).0 == 202)
        #expect(await world.waitForFinished(3))
        #expect(try await world.runs().map(\.trigger).sorted() == ["opened", "retargeted:develop", "retargeted:main"])
        // A title change alone is still no review.
        let titled = GitLabWebhook.mergeRequest(action: "update", mr: mr, project: world.project,
                                                changes: GitLabHookChanges(title: (previous: "a", current: "b")))
        #expect(try await world.deliver("Merge Request Hook", titled).0 == 202)
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await world.runs().count == 3)
        await world.stop()
    }

    @Test("a 409 from the commit-status API (its per-commit lock, held while CI posts statuses) is tried again, not a failed review")
    func statusConflictRetried() async throws {
        let world = try await GitLabWorld()
        await world.gitlab.state.inject("POST statuses", [.status(409)])
        let mr = try await world.mergeRequest()
        _ = try await world.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(action: "open", mr: mr, project: world.project))
        #expect(await world.waitForFinished(1))
        let run = try #require(try await world.runs().first)
        #expect(run.state == .completed, "\(run.reason ?? "")")
        #expect(await world.summaryNotes().count == 1)
        await world.stop()
    }

    @Test("the merge request, its policy file and the status's start go out side by side")
    func independentCallsOverlap() async throws {
        let world = try await GitLabWorld()
        let mr = try await world.mergeRequest()
        // Each held request is answered only once the next one has arrived (or after ten seconds, which
        // the fake writes down): made one after the other, the first hold expires.
        await world.gitlab.state.inject("GET merge_request", [.holdUntilRequest("GET file")])
        await world.gitlab.state.inject("GET file", [.holdUntilRequest("POST statuses")])
        await world.gitlab.state.inject("POST statuses", [.holdUntilRequest("GET merge_request")])
        let (status, body) = try await world.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(action: "open", mr: mr, project: world.project))
        #expect(status == 202, "\(body)")
        #expect(await world.waitForFinished(1))
        let run = try #require(try await world.runs().first)
        #expect(run.state == .completed, "\(run.reason ?? "")")
        let routes = await world.gitlab.state.requests.map(\.route)
        #expect(await world.gitlab.state.expiredHolds == [], "\(routes)")
        #expect(await world.summaryNotes().count == 1)
        #expect(await world.gitlab.state.statusStates(project: world.project.id, sha: "aaa111", name: "Sentinel") == ["pending", "running", "failed"])
        await world.stop()
    }

    @Test("new commits are reviewed incrementally; a draft is skipped until marked ready (by its flag, or where only the title is reported, by the title), which reviews it")
    func pushesAndDrafts() async throws {
        let world = try await GitLabWorld()
        var mr = try await world.mergeRequest()
        #expect(try await world.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(action: "open", mr: mr, project: world.project)).0 == 202)
        #expect(await world.waitForFinished(1))
        // A push: one new file with a conflict marker; only what the new commit changed is reviewed.
        let pushed = FakeGitLabDiffFile.added("notes.md", diff: "@@ -0,0 +1,2 @@\n+<<<<<<< HEAD\n+draft\n")
        await world.gitlab.state.pushMergeRequest(project: world.project.id, iid: 3, headSHA: "ccc222", files: GitLabWorld.files + [pushed])
        await world.gitlab.state.setComparison(project: world.project.id, from: "aaa111", to: "ccc222", files: [pushed])
        mr = try await world.mergeRequest()
        #expect(try await world.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(action: "update", mr: mr, project: world.project,
                                                                                         oldrev: "aaa111")).0 == 202)
        #expect(await world.waitForFinished(2))
        let push = try #require(try await world.runs().first { $0.trigger == "push" })
        #expect(push.state == .completed && push.headSHA == "ccc222", "\(push.reason ?? "")")
        let notes = await world.summaryNotes()
        #expect(notes.count == 2)
        let latest = try #require(notes.last)
        #expect(latest.body.contains("notes.md"), "\(latest.body)")
        #expect(await world.gitlab.state.diffNotes(project: world.project.id, iid: 3).filter { $0.position?.newPath == "notes.md" }.count == 1)

        // A draft merge request: skipped (no review note), then marked ready: reviewed.
        await world.gitlab.state.addMergeRequest(FakeGitLabMergeRequest(project: world.project.id, iid: 4, headSHA: "ddd333", baseSHA: "bbb000",
                                                                        title: "Draft: wip", draft: true, files: GitLabWorld.files))
        var draft = try #require(await world.gitlab.state.mergeRequest(project: world.project.id, iid: 4))
        #expect(try await world.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(action: "open", mr: draft, project: world.project)).0 == 202)
        #expect(await world.waitForFinished(3))
        #expect(try await world.runs().first { $0.prNumber == 4 }?.state == .skipped)
        #expect(await world.gitlab.state.notes(project: world.project.id, iid: 4).filter { $0.body.hasPrefix("<!-- sentinel:run:") }.isEmpty)
        await world.gitlab.state.updateMergeRequest(project: world.project.id, iid: 4, title: "Ready", draft: false)
        draft = try #require(await world.gitlab.state.mergeRequest(project: world.project.id, iid: 4))
        #expect(try await world.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(action: "update", mr: draft, project: world.project,
                                                                                         changes: GitLabHookChanges(draft: (previous: true, current: false)))).0 == 202)
        #expect(await world.waitForFinished(4))
        #expect(try await world.runs().first { $0.prNumber == 4 && $0.trigger == "ready_for_review" }?.state == .completed)
        #expect(await world.gitlab.state.notes(project: world.project.id, iid: 4).filter { $0.body.hasPrefix("<!-- sentinel:run:") }.count == 1)

        // Marked ready where the hook reports only the title losing its "Draft:" (no `changes.draft`):
        // reviewed too (it was "updated without new commits" until the catch-up sweep).
        await world.gitlab.state.addMergeRequest(FakeGitLabMergeRequest(project: world.project.id, iid: 5, headSHA: "eee444", baseSHA: "bbb000",
                                                                        title: "Draft: more", draft: true, files: GitLabWorld.files))
        var titled = try #require(await world.gitlab.state.mergeRequest(project: world.project.id, iid: 5))
        #expect(try await world.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(action: "open", mr: titled, project: world.project)).0 == 202)
        #expect(await world.waitForFinished(5))
        await world.gitlab.state.updateMergeRequest(project: world.project.id, iid: 5, title: "more", draft: false)
        titled = try #require(await world.gitlab.state.mergeRequest(project: world.project.id, iid: 5))
        #expect(try await world.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(action: "update", mr: titled, project: world.project,
                                                                                         changes: GitLabHookChanges(title: (previous: "Draft: more", current: "more")))).0 == 202)
        #expect(await world.waitForFinished(6))
        #expect(try await world.runs().first { $0.prNumber == 5 && $0.trigger == "ready_for_review" }?.state == .completed)
        // A title edit of a merge request that stays a draft is nothing.
        await world.gitlab.state.addMergeRequest(FakeGitLabMergeRequest(project: world.project.id, iid: 6, headSHA: "fff555", baseSHA: "bbb000",
                                                                        title: "Draft: x", draft: true, files: GitLabWorld.files))
        let still = try #require(await world.gitlab.state.mergeRequest(project: world.project.id, iid: 6))
        #expect(try await world.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(action: "update", mr: still, project: world.project,
                                                                                         changes: GitLabHookChanges(title: (previous: "Draft: x", current: "x")))).0 == 202)
        #expect(await eventually { try await world.appliance.supervisor.withWorkspace(world.workspace) {
            try await $0.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM deliveries WHERE outcome = 'ignored: merge request updated without new commits'") ?? 0 }
        } == 1 })
        await world.stop()
    }

    @Test("a note command whose payload leaves out user.id (older GitLab) is checked against its author_id")
    func noteCommandByAuthorID() async throws {
        let world = try await GitLabWorld()
        let mr = try await world.mergeRequest()
        let developer = FakeGitLabUser(id: 501, username: "dev")
        await world.gitlab.state.addMember(project: world.project.id, userID: developer.id, username: developer.username, accessLevel: .developer)
        let note = GitLabWebhook.note("@sentinel review", on: mr, project: world.project, author: developer, noteID: 21)
        var object = try #require(try JSONSerialization.jsonObject(with: note) as? [String: Any])
        var user = try #require(object["user"] as? [String: Any])
        user["id"] = nil
        object["user"] = user
        #expect(try await world.deliver("Note Hook", try JSONSerialization.data(withJSONObject: object)).0 == 202)
        #expect(await world.waitForFinished(1))
        let run = try #require(try await world.runs().first)
        #expect(run.trigger == "command:21", "\(run.reason ?? "")")
        await world.stop()
    }

    @Test("@sentinel review by a Developer starts a review; by a Guest, by the bot itself or as a system note, nothing")
    func noteCommands() async throws {
        let world = try await GitLabWorld()
        let mr = try await world.mergeRequest()
        let developer = FakeGitLabUser(id: 501, username: "dev")
        let guest = FakeGitLabUser(id: 502, username: "guest")
        await world.gitlab.state.addMember(project: world.project.id, userID: developer.id, username: developer.username, accessLevel: .developer)
        await world.gitlab.state.addMember(project: world.project.id, userID: guest.id, username: guest.username, accessLevel: .guest)
        let fromGuest = GitLabWebhook.note("@sentinel review", on: mr, project: world.project, author: guest, noteID: 11)
        let fromBot = GitLabWebhook.note("@sentinel review", on: mr, project: world.project, author: FakeGitLabState.botUser, noteID: 12)
        let system = GitLabWebhook.note("@sentinel review", on: mr, project: world.project, author: developer, noteID: 13, system: true)
        for payload in [fromGuest, fromBot, system] { #expect(try await world.deliver("Note Hook", payload).0 == 202) }
        #expect(await eventually {
            try await world.appliance.supervisor.withWorkspace(world.workspace) {
                try await $0.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM deliveries WHERE processed_at IS NOT NULL") ?? 0 }
            } == 3
        })
        #expect(try await world.runs().isEmpty)
        let fromDeveloper = GitLabWebhook.note("@sentinel full review please", on: mr, project: world.project, author: developer, noteID: 14)
        #expect(try await world.deliver("Note Hook", fromDeveloper).0 == 202)
        #expect(await world.waitForFinished(1))
        let run = try #require(try await world.runs().first)
        #expect(run.trigger == "command:14" && run.state == .completed, "\(run.reason ?? "")")
        #expect(await world.summaryNotes().count == 1)

        // GitLab refuses to say the commenter's access level (a 403 for the token's role): the
        // command is refused at once, saying why; no job is retried until it dies, no delivery left open.
        await world.gitlab.state.inject("GET member", [.status(403)])
        let refused = GitLabWebhook.note("@sentinel review", on: mr, project: world.project, author: developer, noteID: 15)
        #expect(try await world.deliver("Note Hook", refused).0 == 202)
        #expect(await eventually {
            try await world.appliance.supervisor.withWorkspace(world.workspace) {
                try await $0.read { db in
                    try String.fetchOne(db, sql: "SELECT outcome FROM deliveries WHERE processed_at IS NOT NULL AND outcome LIKE '%access level (%'")
                }
            } != nil
        })
        let jobs = try await world.appliance.supervisor.withWorkspace(world.workspace) {
            try await $0.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM jobs WHERE kind = 'gitlab.delivery' AND (state = 'dead' OR attempts > 1)") ?? -1 }
        }
        #expect(jobs == 0)
        #expect(try await world.runs().count == 1)

        // Notes that do nothing (on an issue, edited, by the bot) are ignored from the payload:
        // GitLab is not asked for the commenter's access level, so its failing does not hold them.
        await world.gitlab.state.inject("GET member", Array(repeating: .status(500), count: 20))
        let membersAsked = await world.gitlab.state.requests.filter { $0.route == "GET member" }.count
        let onIssue = GitLabWebhook.note("@sentinel review", on: mr, project: world.project, author: developer, noteID: 16, noteableType: "Issue")
        let edited = GitLabWebhook.note("@sentinel review", on: mr, project: world.project, author: developer, noteID: 17, action: "update")
        let byBot = GitLabWebhook.note("@sentinel review", on: mr, project: world.project, author: FakeGitLabState.botUser, noteID: 18)
        for payload in [onIssue, edited, byBot] { #expect(try await world.deliver("Note Hook", payload).0 == 202) }
        #expect(await eventually {
            try await world.appliance.supervisor.withWorkspace(world.workspace) {
                try await $0.read { db in
                    try String.fetchAll(db, sql: "SELECT outcome FROM deliveries WHERE processed_at IS NOT NULL AND outcome LIKE 'ignored: note%' ORDER BY outcome")
                }
            } == ["ignored: note by the integration's user", "ignored: note by the integration's user",
                  "ignored: note on noteable_type Issue, not on a merge request", "ignored: note update"]
        })
        #expect(await world.gitlab.state.requests.filter { $0.route == "GET member" }.count == membersAsked)
        await world.stop()
    }

    @Test("a run superseded by a newer run of the same commit (a second @sentinel review) leaves the commit's status as the newer run set it: it set success over the newer run's failure")
    func supersededAtSameCommitLeavesStatus() async throws {
        let world = try await GitLabWorld()
        let mr = try await world.mergeRequest()
        let developer = FakeGitLabUser(id: 501, username: "dev")
        await world.gitlab.state.addMember(project: world.project.id, userID: developer.id, username: developer.username, accessLevel: .developer)
        // Run 1 sets the status running, then GitLab rate-limits its diff: its job waits.
        await world.gitlab.state.inject("GET diffs", [.rateLimited(retryAfter: 3)])
        #expect(try await world.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(action: "open", mr: mr, project: world.project)).0 == 202)
        #expect(await eventually { await world.gitlab.state.requests.contains { $0.route == "GET diffs" } })
        // Run 2 of the same commit supersedes it and concludes the status: failed (two findings).
        let command = GitLabWebhook.note("@sentinel review", on: mr, project: world.project, author: developer, noteID: 21)
        #expect(try await world.deliver("Note Hook", command).0 == 202)
        #expect(await eventually { try await world.runs().contains { $0.id == 2 && $0.state == .completed } })
        let settled = await world.gitlab.state.statusStates(project: world.project.id, sha: "aaa111", name: "Sentinel")
        #expect(settled.last == "failed", "\(settled)")
        // Run 1's job wakes, finds its run superseded and ends without touching the status.
        #expect(await eventually {
            try await world.appliance.supervisor.withWorkspace(world.workspace) {
                try await $0.read { db in
                    try Int.fetchOne(db, sql: "SELECT count(*) FROM jobs WHERE idempotency_key = 'run:1' AND state = 'succeeded'") ?? 0
                }
            } == 1
        })
        #expect(try await world.runs().first { $0.id == 1 }?.state == .superseded)
        #expect(await world.gitlab.state.statusStates(project: world.project.id, sha: "aaa111", name: "Sentinel") == settled)
        #expect(await world.gitlab.state.statuses(project: world.project.id, sha: "aaa111").map(\.status) == ["failed"])
        await world.stop()
    }

    @Test("intake: a wrong or missing X-Gitlab-Token is 401 and stores nothing; an unknown integration is 404; odd naming headers 400; a removed one 410")
    func intakeRefusals() async throws {
        let world = try await GitLabWorld()
        let mr = try await world.mergeRequest()
        let open = GitLabWebhook.mergeRequest(action: "open", mr: mr, project: world.project)
        #expect(try await world.deliver("Merge Request Hook", open, token: "wrong-secret").0 == 401)
        // The 401 names how a hook authenticates (RFC 9110: every 401 carries a challenge).
        var unsigned = HTTPClientRequest(url: world.hookURL.absoluteString)
        unsigned.method = .POST
        unsigned.headers.add(name: "Content-Type", value: "application/json")
        unsigned.headers.add(name: "X-Gitlab-Event", value: "Merge Request Hook")
        unsigned.body = .bytes(ByteBuffer(bytes: open))
        let refused = try await HTTPClient.shared.execute(unsigned, timeout: .seconds(10))
        #expect(refused.status == .unauthorized)
        #expect(refused.headers.first(name: "WWW-Authenticate") == #"Token realm="Sentinel webhooks", header="X-Gitlab-Token""#)
        #expect(try await FakeGitLab.deliver(to: world.hookURL, token: nil, event: "Merge Request Hook", payload: open).status == 401)
        let unknown = URL(string: "http://127.0.0.1:\(world.port)/webhooks/gitlab/int_00000000000000000000")!
        #expect(try await FakeGitLab.deliver(to: unknown, token: world.secret, event: "Merge Request Hook", payload: open).status == 404)
        // Naming headers with characters GitLab never sends there: 400, saying which.
        let oddUUID = try await world.deliver("Merge Request Hook", open, uuid: "not a uuid")
        #expect(oddUUID.0 == 400 && oddUUID.1.contains("X-Gitlab-Event-UUID (or Idempotency-Key) header must be printable ASCII without spaces"),
                "\(oddUUID.1)")
        // Beside an Idempotency-Key the event UUID is checked too (it was not read at all).
        let oddBeside = try await FakeGitLab.deliver(to: world.hookURL, token: world.secret, event: "Merge Request Hook", payload: open,
                                                     uuid: "not a uuid", idempotencyKey: "ik-1")
        #expect(oddBeside.status == 400 && oddBeside.body.contains("X-Gitlab-Event-UUID header must be printable ASCII"), "\(oddBeside.body)")
        let oddEvent = try await world.deliver("Merge Request Hook; Note Hook", open)
        #expect(oddEvent.0 == 400 && oddEvent.1.contains("X-Gitlab-Event header must be ASCII letters, digits, spaces and _ - ."), "\(oddEvent.1)")
        let stored = try await world.appliance.supervisor.withWorkspace(world.workspace) {
            try await $0.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM deliveries") ?? 0 }
        }
        #expect(stored == 0)
        // An empty Idempotency-Key is none: the event UUID names the delivery (it was refused as missing).
        let emptyKey = try await FakeGitLab.deliver(to: world.hookURL, token: world.secret, event: "Merge Request Hook", payload: open,
                                                    uuid: "uu-4", idempotencyKey: "")
        #expect(emptyKey.status == 202, "\(emptyKey.body)")
        // Removing the integration through the API: its webhooks answer 410, it is no longer listed.
        let token = try world.ownerToken()
        #expect(try await world.api(.DELETE, "/integrations/\(world.integration.id)", token: token).0 == 204)
        #expect(try await world.deliver("Merge Request Hook", open).0 == 410)
        let (_, listed) = try await world.api(.GET, "/integrations", token: token)
        #expect(!listed.contains(world.integration.id), "\(listed)")
        #expect(try await world.api(.DELETE, "/integrations/\(world.integration.id)", token: token).0 == 404)
        await world.stop()
    }

    @Test("an instance without /diffs (GitLab before 15.7) is reviewed from /changes")
    func olderInstance() async throws {
        let world = try await GitLabWorld()
        await world.gitlab.state.setDiffsEndpointAvailable(false)
        let mr = try await world.mergeRequest()
        #expect(try await world.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(action: "open", mr: mr, project: world.project)).0 == 202)
        #expect(await world.waitForFinished(1))
        #expect(try await world.runs().first?.state == .completed)
        #expect(await world.gitlab.state.count("GET changes") >= 1)
        let summary = try #require(await world.summaryNotes().first)
        #expect(summary.body.contains("Reviewed 2 of 3 files"), "\(summary.body)")
        #expect(await world.gitlab.state.diffNotes(project: world.project.id, iid: 3).count == 2)
        await world.stop()
    }

    @Test("/diffs past the instance's file limit (changes_count \"N+\") names the files it did not list as not reviewed")
    func diffsPastTheLimit() async throws {
        let world = try await GitLabWorld()
        await world.gitlab.state.setChangesFileLimit(2)
        let mr = try await world.mergeRequest()
        #expect(try await world.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(action: "open", mr: mr, project: world.project)).0 == 202)
        #expect(await world.waitForFinished(1))
        let summary = try #require(await world.summaryNotes().first)
        // GitLab says "2+": more than it listed, not how many (a count of 3 was made up here).
        #expect(summary.body.contains("GitLab listed 2 of the pull request's changed files and says there are more (at least 3, how many more it does not say)"),
                "\(summary.body)")
        await world.stop()
    }

    @Test("pages followed by `Link` where a proxy dropped `X-Next-Page`: every file is listed")
    func linkOnlyPagination() async throws {
        let many = (1...130).map { FakeGitLabDiffFile.modified("f\($0).txt", diff: "@@ -1 +1 @@\n-a\n+b") }
        let listed = try await FakeGitLabTests.World.make()
        await listed.gitlab.state.addMergeRequest(FakeGitLabMergeRequest(project: 77, iid: 8, headSHA: "c0ffee", baseSHA: FakeGitLabTests.base, files: many))
        await listed.gitlab.state.setDropsPageHeaders(true)
        let client = GitLabClient(baseURL: listed.gitlab.baseURL, token: FakeGitLab.token, http: listed.client)
        let (diffs, unlisted) = try await client.mergeRequestDiffs(project: 77, iid: 8)
        #expect(diffs.count == 130 && unlisted == 0)
        await listed.stop()
    }

    @Test("a page of diffs past the response limit is asked for again in fewer files; a file too large alone is counted as not listed")
    func oversizedDiffPages() async throws {
        let line = "+" + String(repeating: "x", count: 100) + "\n"
        var files = (1...30).map { FakeGitLabDiffFile.added("f\($0).txt", diff: "@@ -0,0 +1,40 @@\n" + String(repeating: line, count: 40)) }
        files[11] = FakeGitLabDiffFile.added("huge.txt", diff: "@@ -0,0 +1,400 @@\n" + String(repeating: line, count: 400))
        let world = try await FakeGitLabTests.World.make()
        await world.gitlab.state.addMergeRequest(FakeGitLabMergeRequest(project: 77, iid: 8, headSHA: "c0ffee", baseSHA: FakeGitLabTests.base, files: files))
        // About 4 KB a file and 40 KB for the large one, against a 20 KB limit.
        let small = try AsyncOutboundHTTPClient(maxResponseBytes: 20_000)
        let client = GitLabClient(baseURL: world.gitlab.baseURL, token: FakeGitLab.token, http: small)
        let (diffs, unlisted) = try await client.mergeRequestDiffs(project: 77, iid: 8)
        #expect(diffs.count == 29 && !diffs.contains { $0.new_path == "huge.txt" })
        #expect(unlisted == 1)
        #expect(Set(diffs.map(\.new_path)).count == 29, "no file listed twice")
        await small.shutdown()
        await world.stop()
    }

    @Test("/changes that stops at its limit (overflow) is reviewed as far as it lists, the rest named as not reviewed")
    func olderInstanceOverflow() async throws {
        let world = try await GitLabWorld()
        await world.gitlab.state.setDiffsEndpointAvailable(false)
        await world.gitlab.state.setChangesFileLimit(2)
        let mr = try await world.mergeRequest()
        #expect(try await world.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(action: "open", mr: mr, project: world.project)).0 == 202)
        #expect(await world.waitForFinished(1))
        let summary = try #require(await world.summaryNotes().first)
        #expect(summary.body.contains("GitLab listed 2 of the pull request's changed files and says there are more (at least 3, how many more it does not say); the others were not reviewed"),
                "\(summary.body)")
        await world.stop()
    }

    @Test("a pipeline event and an approval are stored already processed, with no job")
    func settledAtIntake() async throws {
        let world = try await GitLabWorld()
        #expect(try await world.deliver("Pipeline Hook", Data(#"{"object_kind":"pipeline","object_attributes":{"id":1}}"#.utf8)).0 == 202)
        #expect(try await world.deliver("Merge Request Hook", Data(#"{"object_kind":"merge_request","object_attributes":{"action":"approved"}}"#.utf8)).0 == 202)
        let rows = try await world.appliance.supervisor.withWorkspace(world.workspace) {
            try await $0.read { db in
                (try String.fetchAll(db, sql: "SELECT outcome FROM deliveries WHERE processed_at IS NOT NULL ORDER BY received_at"),
                 try Int.fetchOne(db, sql: "SELECT count(*) FROM jobs WHERE kind = 'gitlab.delivery'") ?? -1)
            }
        }
        #expect(rows.0 == ["stored: Pipeline Hook is not acted on", "ignored: merge_request.approved"])
        #expect(rows.1 == 0)
        await world.stop()
    }

    @Test("the merge request moves while the review is written: the run ends superseded and posts nothing on lines of another version; the new head gets a review of its own")
    func headMovesWhileReviewing() async throws {
        let world = try await GitLabWorld()
        let mr = try await world.mergeRequest()
        // The first GET of the merge request is the run reading it; the second is the post placing its comments.
        await world.gitlab.state.pushMergeRequest(before: "GET merge_request", occurrence: 2, project: world.project.id, iid: 3,
                                                  headSHA: "ccc333", files: GitLabWorld.files)
        #expect(try await world.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(action: "open", mr: mr, project: world.project)).0 == 202)
        #expect(await world.waitForFinished(2))
        let run = try #require(try await world.runs().first { $0.headSHA == "aaa111" })
        #expect(run.state == .superseded, "\(run.state) \(run.reason ?? "")")
        #expect(run.reason?.contains("ccc333") == true, "\(run.reason ?? "")")
        let next = try #require(try await world.runs().first { $0.headSHA == "ccc333" })
        #expect(next.state == .completed && next.trigger == ReviewRunStore.reconcileTrigger, "\(next)")
        let summaries = await world.summaryNotes().map(\.body)
        #expect(summaries.map { $0.hasPrefix(ReviewRunner.marker(runID: next.id)) } == [true], "\(summaries)")
        #expect(await world.gitlab.state.diffNotes(project: world.project.id, iid: 3).allSatisfy { $0.position?.headSHA == "ccc333" })
        #expect(await world.gitlab.state.statusStates(project: world.project.id, sha: "aaa111", name: "Sentinel").last == "success",
                "a superseded run's status is neutral, which GitLab spells success")
        await world.stop()
    }

    @Test("a merge request GitLab has not prepared the diff of yet (diff_refs null, no diffs) is reviewed once it has, not concluded green on 0 of 0 files")
    func diffNotPreparedYet() async throws {
        let world = try await GitLabWorld()
        await world.gitlab.state.updateMergeRequest(project: world.project.id, iid: 3, diffReady: false)
        let mr = try await world.mergeRequest()
        #expect(try await world.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(action: "open", mr: mr, project: world.project)).0 == 202)
        try await Task.sleep(for: .seconds(1))
        let waiting = try await world.runs().first
        #expect(waiting.map { !$0.state.isFinal } == true, "\(String(describing: waiting))")
        await world.gitlab.state.updateMergeRequest(project: world.project.id, iid: 3, diffReady: true)
        #expect(await world.waitForFinished(1))
        let run = try #require(try await world.runs().first)
        #expect(run.state == .completed)
        #expect(await world.gitlab.state.diffNotes(project: world.project.id, iid: 3).count == 2)
        #expect(await world.summaryNotes().first?.body.contains("Reviewed 0 of 0") == false)
        await world.stop()
    }

    @Test("waiting for GitLab to prepare a merge request's diff is not a failed attempt: with one attempt allowed, the run waits and is reviewed (it failed red after jobs.max_attempts looks)")
    func diffPreparationNotCountedAsAttempts() async throws {
        // A lease longer than the test waits: the postponed job must be looked at again when due, not when its old lease runs out.
        let world = try await GitLabWorld(config: { $0.jobs.maxAttempts = 1; $0.jobs.leaseSeconds = 300 })
        await world.gitlab.state.updateMergeRequest(project: world.project.id, iid: 3, diffReady: false)
        let mr = try await world.mergeRequest()
        #expect(try await world.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(action: "open", mr: mr, project: world.project)).0 == 202)
        #expect(await eventually { await world.gitlab.state.requests.contains { $0.route == "GET merge_request" } })
        try await Task.sleep(for: .seconds(1))
        let waiting = try await world.appliance.supervisor.withWorkspace(world.workspace) {
            try await $0.read { db in
                try Row.fetchOne(db, sql: "SELECT state, attempts, last_error FROM jobs WHERE idempotency_key = 'run:1'")
                    .map { "\($0["state"] as String? ?? "") \($0["attempts"] as Int? ?? -1) \($0["last_error"] as String? ?? "")" }
            }
        }
        #expect(waiting?.hasPrefix("queued 0 GitLab has not prepared the merge request's diff yet") == true, "\(String(describing: waiting))")
        #expect(try await world.runs().first.map { !$0.state.isFinal } == true)
        await world.gitlab.state.updateMergeRequest(project: world.project.id, iid: 3, diffReady: true)
        #expect(await eventually(timeout: .seconds(30)) { try await world.runs().first?.state == .completed })
        await world.stop()
    }

    @Test("a run that fails after posting its discussions (GitLab refused its summary note): the next run posts none of them again")
    func discussionsOfAFailedRunNotRepeated() async throws {
        let world = try await GitLabWorld()
        let mr = try await world.mergeRequest()
        await world.gitlab.state.inject("POST notes", [.status(409)])
        #expect(try await world.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(action: "open", mr: mr, project: world.project)).0 == 202)
        #expect(await world.waitForFinished(1))
        #expect(try await world.runs().first?.state == .failed)
        #expect(await world.gitlab.state.diffNotes(project: world.project.id, iid: 3).count == 2)
        let developer = FakeGitLabUser(id: 501, username: "dev")
        await world.gitlab.state.addMember(project: world.project.id, userID: developer.id, username: developer.username, accessLevel: .developer)
        let command = GitLabWebhook.note("@sentinel review", on: mr, project: world.project, author: developer, noteID: 21)
        #expect(try await world.deliver("Note Hook", command).0 == 202)
        #expect(await world.waitForFinished(2))
        #expect(try await world.runs().map(\.state).sorted { $0.rawValue < $1.rawValue } == [.completed, .failed])
        // Each finding once on the merge request (the second run posted both again), and one summary.
        #expect(await world.gitlab.state.diffNotes(project: world.project.id, iid: 3).count == 2)
        #expect(await world.summaryNotes().count == 1)
        await world.stop()
    }

    @Test("a position GitLab refuses (400) moves that finding into the summary; a failed summary post is retried without posting a discussion twice")
    func refusedPositionsAndRetries() async throws {
        let world = try await GitLabWorld()
        let mr = try await world.mergeRequest()
        await world.gitlab.state.inject("POST discussions", [.status(400)])
        #expect(try await world.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(action: "open", mr: mr, project: world.project)).0 == 202)
        #expect(await world.waitForFinished(1))
        #expect(try await world.runs().first?.state == .completed)
        let summary = try #require(await world.summaryNotes().first)
        #expect(summary.body.contains("Findings GitLab could not place inline"), "\(summary.body)")
        #expect(await world.gitlab.state.diffNotes(project: world.project.id, iid: 3).count == 1)
        await world.stop()

        let again = try await GitLabWorld()
        let request = try await again.mergeRequest()
        await again.gitlab.state.inject("POST notes", [.status(502)])
        #expect(try await again.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(action: "open", mr: request, project: again.project)).0 == 202)
        #expect(await again.waitForFinished(1))
        #expect(try await again.runs().first?.state == .completed)
        #expect(await again.gitlab.state.count("POST notes") == 2, "the summary was posted on the retry")
        #expect(await again.summaryNotes().count == 1)
        #expect(await again.gitlab.state.diffNotes(project: again.project.id, iid: 3).count == 2, "the retry skipped the discussions already posted")
        await again.stop()
    }
}

@Suite("sentinel integration add gitlab")
struct GitLabIntegrationCommandTests {
    @Test("checks the token against the instance first: a good one prints id, webhook_path and webhook_url; a refused one stores nothing and says why")
    func addFromTheCommandLine() async throws {
        let gitlab = try await FakeGitLab.start()
        let dir = TemporaryDirectory("sentinel-gl-cli")
        let data = dir.url.appendingPathComponent("data").path
        #expect(try await SentinelProcess.run(["workspace", "create", "acme", "--data-dir", data]).status == 0)
        let token = dir.url.appendingPathComponent("token.txt")
        try (FakeGitLab.token + "\n").write(to: token, atomically: true, encoding: .utf8)
        let secret = dir.url.appendingPathComponent("secret.txt")
        try "gitlab-cli-secret\n".write(to: secret, atomically: true, encoding: .utf8)
        let added = try await SentinelProcess.run(["integration", "add", "gitlab", "--data-dir", data, "--workspace", "acme",
                                                   "--base-url", gitlab.baseURL.absoluteString, "--token-file", token.path,
                                                   "--webhook-secret-file", secret.path, "--json"])
        #expect(added.status == 0, "\(added.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(added.stdout.utf8)) as? [String: Any], "\(added.stdout)")
        let path = try #require(json["webhook_path"] as? String)
        #expect(path.hasPrefix("/webhooks/gitlab/int_"))
        #expect((json["webhook_url"] as? String)?.hasSuffix(path) == true)
        #expect(json["user"] as? String == FakeGitLabState.botUser.username)
        #expect(!added.stdout.contains(FakeGitLab.token), "the token is never printed")
        // A token the instance refuses: a plain reason, nothing stored.
        try "glpat-not-a-token\n".write(to: token, atomically: true, encoding: .utf8)
        let refused = try await SentinelProcess.run(["integration", "add", "gitlab", "--data-dir", data, "--workspace", "acme",
                                                     "--base-url", gitlab.baseURL.absoluteString, "--token-file", token.path,
                                                     "--webhook-secret-file", secret.path])
        #expect(refused.status != 0 && refused.stderr.contains("401"), "\(refused.stderr)")
        let list = try await SentinelProcess.run(["integration", "list", "--data-dir", data, "--workspace", "acme", "--json"])
        #expect((try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]])?.count == 1, "\(list.stdout)")
        await gitlab.stop()
        dir.cleanup()
    }
}
