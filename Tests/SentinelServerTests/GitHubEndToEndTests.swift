import AsyncHTTPClient
import Foundation
import GRDB
import Hummingbird
import Logging
import NIOCore
import SentinelCore
import SentinelServer
import SentinelTestSupport
import Testing

/// A PR opened on a (fake) GitHub, delivered to Sentinel's real HTTP stack on loopback, reviewed
/// by the built-in checks, and posted back.
final class GitHubWorld: Sendable {
    let github: FakeGitHub
    let appliance: Appliance
    let directory: TemporaryDirectory
    let workspace: WorkspaceID
    let integration: IntegrationSummary
    let secret = Data("webhook-secret-for-tests".utf8)
    let port: Int
    let http: HTTPClient
    /// The group `sentinel serve` runs: supervisor, outbound clients, scheduler and listener.
    let services: RunningGroup
    let log: CapturedLog

    static let repo = "octo-org/hello-world"

    /// A leaked AWS key on line 3 of app.py and a conflict marker in README.md: two built-in findings.
    static let files: [(filename: String, status: String, patch: String?)] = [
        ("app.py", "modified", "@@ -1,3 +1,4 @@\n import os\n-KEY = os.environ['KEY']\n+KEY = os.environ.get('KEY')\n+AWS_ACCESS_KEY_ID = \"AKIAQWERTYUIOPASDFGH\"\n print(KEY)"),
        ("README.md", "modified", "@@ -10,2 +10,4 @@\n ## Usage\n+<<<<<<< HEAD\n+Run it.\n Done."),
        ("package-lock.json", "modified", "@@ -1 +1 @@\n-{}\n+{\"lockfileVersion\": 3}"),
    ]

    /// - Parameter models: builds the AI model resolver from the data directory's master key (default: the appliance's own).
    init(tls: Bool = false, billing: (any BillingProvider)? = nil, config adjust: (inout SentinelConfig) -> Void = { _ in },
         models: ((MasterKey) -> any ReviewModelResolver)? = nil) async throws {
        github = try await FakeGitHub.start(tls: tls)
        directory = TemporaryDirectory("sentinel-gh")
        var config = testConfig()
        config.server.tlsEnabled = false
        config.server.host = "127.0.0.1"
        config.server.port = 0
        config.github.requestTimeoutSeconds = 2
        adjust(&config)
        log = CapturedLog()
        var resolver: (any ReviewModelResolver)?
        if let models {
            let data = DataDirectory(path: directory.path)
            try data.prepare()
            resolver = models(try MasterKey.load(at: data.masterKeyFile))
        }
        appliance = try Appliance(dataDirectory: DataDirectory(path: directory.path), config: config, models: resolver, billing: billing,
                                  logger: Logger.sentinel(level: "info", sink: log.sink))
        workspace = try appliance.workspaces.create(name: "acme").workspaceID!
        let (service, pem, secret, base) = (appliance.integrations, github.privateKeyPEM, self.secret, github.baseURL)
        let (appID, ca) = (github.appID, github.certificatePEM)
        integration = try await appliance.supervisor.withWorkspace(workspace) { actor in
            try await service.addGitHub(workspace: actor, appID: appID, privateKeyPEM: pem, webhookSecret: secret, apiURL: base, caBundlePEM: ca)
        }
        await github.state.addPull(FakePullRequest(repo: Self.repo, number: 7, headSHA: "aaa111", baseSHA: "bbb000", files: Self.files))
        let box = Rendezvous<Int>()
        services = RunningGroup(try appliance.makeServiceGroup(stopOnSignals: false) { port in await box.set(port) })
        port = await box.wait()
        http = HTTPClient(eventLoopGroupProvider: .singleton)
    }

    func stop() async {
        try? await http.shutdown()
        try? await services.shutdown()
        await github.stop()
        directory.cleanup()
    }

    /// A test that threw before `stop()` still closes its client (AsyncHTTPClient traps on a client
    /// freed while running); a second shutdown after `stop()` is a refused no-op.
    deinit {
        http.shutdown { _ in }
    }

    /// An OpenAI provider in the workspace, pointed at `llm`.
    func addOpenAIProvider(_ llm: FakeLLMServer) async throws {
        let store = ProviderStore(masterKey: appliance.integrations.masterKey)
        _ = try await appliance.supervisor.withWorkspace(workspace) { actor in
            try await store.add(kind: "openai", apiKey: FakeLLMServer.defaultKeys[.openAI]!, model: "gpt-4o-mini", baseURL: llm.openAIBaseURL,
                                by: "test", in: actor)
        }
    }

    static func pullRequestPayload(action: String, head: String, before: String? = nil, draft: Bool = false,
                                   number: Int = 7, repoID: Int = 1001, repoName: String = repo) -> Data {
        var object: [String: Any] = [
            "action": action, "number": number,
            "pull_request": ["number": number, "draft": draft, "state": "open",
                             "head": ["sha": head, "ref": "feature", "repo": ["id": repoID, "full_name": repoName]],
                             "base": ["sha": "bbb000", "ref": "main", "repo": ["id": repoID, "full_name": repoName]],
                             "user": ["login": "octocat", "type": "User"]],
            "repository": ["id": repoID, "full_name": repoName, "private": false],
            "installation": ["id": 55],
            "sender": ["login": "octocat", "type": "User"],
        ]
        if let before { object["before"] = before; object["after"] = head }
        return try! JSONSerialization.data(withJSONObject: object)
    }

    /// A token cache of its own for the fake's App, over `http`.
    func tokenCache(http: any OutboundHTTPClient) -> GitHubTokenCache {
        GitHubTokenCache(credentials: GitHubAppCredentials(appID: github.appID, privateKeyPEM: github.privateKeyPEM, apiBaseURL: github.baseURL),
                         http: http)
    }

    /// Installation tokens the fake has minted so far.
    func tokenMints() async -> Int { await github.state.requests.filter { $0 == "POST access_tokens" }.count }

    @discardableResult
    func deliver(event: String, body: Data, delivery: String = UUID().uuidString, signature: String? = nil) async throws -> (Int, String) {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(integration.webhookPath)")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "X-GitHub-Event", value: event)
        request.headers.add(name: "X-GitHub-Delivery", value: delivery)
        request.headers.add(name: "X-Hub-Signature-256", value: signature ?? GitHubWebhookSignature.sign(body: body, secret: secret))
        request.body = .bytes(ByteBuffer(bytes: body))
        let response = try await http.execute(request, timeout: .seconds(10))
        let text = String(buffer: try await response.body.collect(upTo: 1 << 20))
        return (Int(response.status.code), text)
    }

    /// A `check_run` or `check_suite` delivery body (GitHub's shape: the pull requests' repositories carry no `full_name`).
    static func checkPayload(event: String, action: String = "rerequested", id: Int64, head: String, externalID: String?, appID: Int64,
                             pullRequests: [Int] = [7], repoID: Int = 1001) -> Data {
        var check: [String: Any] = [
            "id": id, "head_sha": head, "status": "completed", "app": ["id": appID, "slug": "sentinel"],
            "pull_requests": pullRequests.map { ["number": $0, "head": ["ref": "feature", "sha": head, "repo": ["id": repoID, "name": "hello-world"]],
                                                 "base": ["ref": "main", "sha": "bbb000", "repo": ["id": repoID, "name": "hello-world"]]] },
        ]
        if event == "check_run" { check["name"] = "Sentinel"; check["external_id"] = externalID ?? "" }
        return try! JSONSerialization.data(withJSONObject: [
            "action": action, event: check, "repository": ["id": repoID, "full_name": repo], "installation": ["id": 55],
            "sender": ["login": "octocat", "type": "User"]] as [String: Any])
    }

    /// An `issue_comment` delivery body on PR 7 (or on plain issue 7 when `onPR` is false).
    static func commentPayload(_ text: String, id: Int, association: String?, action: String = "created", onPR: Bool = true,
                               login: String = "octocat", type: String = "User") -> Data {
        var issue: [String: Any] = ["number": 7]
        if onPR { issue["pull_request"] = ["url": "https://api.github.com/repos/\(repo)/pulls/7"] }
        var comment: [String: Any] = ["id": id, "body": text, "user": ["login": login, "type": type]]
        if let association { comment["author_association"] = association }
        return try! JSONSerialization.data(withJSONObject: [
            "action": action, "issue": issue, "comment": comment,
            "repository": ["id": 1001, "full_name": repo], "installation": ["id": 55]] as [String: Any])
    }

    func runs() async throws -> [ReviewRun] {
        try await appliance.supervisor.withWorkspace(workspace) { try await $0.read { db in try ReviewRunStore.list(in: db) } }
    }

    func count(_ sql: String) async throws -> Int {
        try await appliance.supervisor.withWorkspace(workspace) { try await $0.read { db in try Int.fetchOne(db, sql: sql) ?? 0 } }
    }

    func waitForRun(state: RunState, count: Int = 1) async -> Bool {
        await eventually { try await self.runs().filter { $0.state == state }.count >= count }
    }
}

@Suite("GitHub end to end", .serialized)
struct GitHubEndToEndTests {
    @Test("a run posting its review is not superseded under it: a review asked for meanwhile waits for it and repeats none of its comments")
    func commandWhilePostingWaits() async throws {
        let world = try await GitHubWorld()
        await world.github.state.inject("POST reviews", [.delay(1.5)])
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await eventually { await world.github.state.requests.contains("POST reviews") })
        let (status, _) = try await world.deliver(event: "issue_comment", body: GitHubWorld.commentPayload("@sentinel review", id: 9001, association: "MEMBER"))
        #expect(status == 202)
        #expect(await world.waitForRun(state: .completed, count: 2))
        let runs = try await world.runs()
        #expect(runs.map(\.state) == [.completed, .completed], "\(runs.map { ($0.state, $0.reason ?? "") })")
        let reviews = await world.github.state.reviews(on: GitHubWorld.repo, 7)
        #expect(reviews.count == 2 && !reviews[0].comments.isEmpty, "\(reviews.map(\.comments.count))")
        #expect(reviews.dropFirst().allSatisfy { $0.comments.isEmpty }, "no comment posted twice: \(reviews.map(\.comments.count))")
        await world.stop()
    }

    @Test("'Re-run' on Sentinel's check (check_run.rerequested) or its suite reviews the pull request again at once; another App's check, and a check created or completed, start nothing")
    func checkRerunRequested() async throws {
        let world = try await GitHubWorld()
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        let check = try #require(await world.github.state.checkRuns.values.first)
        #expect(check.externalID == "sentinel-run-1")
        let appID = world.github.appID
        // Created and completed (GitHub sends both for Sentinel's own checks): settled at intake, no job.
        for action in ["created", "completed"] {
            try await world.deliver(event: "check_run", body: GitHubWorld.checkPayload(event: "check_run", action: action, id: check.id, head: "aaa111",
                                                                                     externalID: check.externalID, appID: appID))
        }
        #expect(try await world.count("SELECT count(*) FROM deliveries WHERE outcome IN ('ignored: check_run.created', 'ignored: check_run.completed')") == 2)
        // Another App's check run: nothing.
        try await world.deliver(event: "check_run", body: GitHubWorld.checkPayload(event: "check_run", id: 999, head: "aaa111", externalID: "ci-1",
                                                                                 appID: appID + 1))
        #expect(await eventually { try await world.count("SELECT count(*) FROM deliveries WHERE outcome LIKE '%belongs to another GitHub App%'") == 1 })
        // "Re-run" on Sentinel's check, the payload listing no pull request (a fork's): the run its external id names gives #7.
        let (status, _) = try await world.deliver(event: "check_run", body: GitHubWorld.checkPayload(
            event: "check_run", id: check.id, head: "aaa111", externalID: check.externalID, appID: appID, pullRequests: []))
        #expect(status == 202)
        #expect(await world.waitForRun(state: .completed, count: 2))
        var runs = try await world.runs().sorted { $0.id < $1.id }
        #expect(runs.count == 2 && runs[1].trigger.hasPrefix("manual:") && runs[1].prNumber == 7, "\(runs.map(\.trigger))")
        #expect(await world.github.state.checkRuns.count == 2, "a new check run for the re-run")
        #expect(try await world.count("SELECT count(*) FROM events WHERE type = 'RunRequested' AND data LIKE '%github:octocat%'") == 1,
                "audited as a re-run from the API is, by who pressed the button")
        // "Re-run all checks": the suite, with no pull request listed either, found by the commit Sentinel reviewed.
        try await world.deliver(event: "check_suite", body: GitHubWorld.checkPayload(event: "check_suite", id: 4242, head: "aaa111", externalID: nil,
                                                                                   appID: appID, pullRequests: []))
        #expect(await world.waitForRun(state: .completed, count: 3))
        runs = try await world.runs().sorted { $0.id < $1.id }
        #expect(runs.count == 3 && runs[2].trigger.hasPrefix("manual:") && runs[2].prNumber == 7)
        // A suite of a commit Sentinel never reviewed, listing no pull request: nothing, and the outcome says so.
        try await world.deliver(event: "check_suite", body: GitHubWorld.checkPayload(event: "check_suite", id: 4243, head: "ccc333", externalID: nil,
                                                                                   appID: appID, pullRequests: []))
        #expect(await eventually { try await world.count("SELECT count(*) FROM deliveries WHERE outcome = 'ignored: check suite 4243 names no pull request Sentinel knows'") == 1 })
        #expect(try await world.runs().count == 3)
        await world.stop()
    }

    @Test("a push while a run's prepared review waits to be posted again (GitHub rate-limited the post) supersedes that run: only the new head's review is posted, no comment twice")
    func pushWhilePostWaitsSupersedes() async throws {
        let world = try await GitHubWorld()
        await world.github.state.inject("POST reviews", [.rateLimited(retryAfter: 2)])
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await eventually { await world.github.state.requests.contains("POST reviews") })
        // Run 1's review is prepared and its job waits out GitHub's Retry-After.
        #expect(await eventually {
            try await world.count("SELECT count(*) FROM jobs WHERE idempotency_key = 'run:1' AND state = 'queued' AND attempts >= 1") == 1
        })
        #expect(try await world.count("SELECT count(*) FROM review_runs WHERE id = 1 AND prepared_review IS NOT NULL") == 1)
        await world.github.state.push(repo: GitHubWorld.repo, 7, head: "ccc333")
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "synchronize", head: "ccc333", before: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        #expect(try await world.runs().first { $0.id == 1 }?.state == .superseded)
        // Run 1's job ran again after the wait: it concluded its check and posted nothing.
        #expect(await eventually { try await world.count("SELECT count(*) FROM jobs WHERE idempotency_key = 'run:1' AND state = 'succeeded'") == 1 })
        let reviews = await world.github.state.reviews(on: GitHubWorld.repo, 7)
        #expect(reviews.map(\.commitID) == ["ccc333"], "\(reviews.map(\.commitID))")
        let old = await world.github.state.checkRuns.values.filter { $0.headSHA == "aaa111" }
        #expect(old.count == 1 && old.allSatisfy { $0.status == "completed" && $0.conclusion == "neutral" }, "\(old)")
        await world.stop()
    }

    @Test("a review another process queues (a command beside serve) starts at once, also when serve's pending-work entry for the workspace is an old one")
    func otherProcessEnqueueRunsPromptly() async throws {
        let world = try await GitHubWorld()
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        let control = world.appliance.control
        // The premise: the index still names a time already past for the workspace (serve knows
        // the file holds nothing due and has not rewritten the entry).
        #expect(await eventually(timeout: .seconds(5)) { try control.dueEntry(world.workspace).map { $0 <= Date().timeIntervalSince1970 } == true },
                "\(String(describing: try? control.dueEntry(world.workspace)))")
        // A command's own connection to the workspace file, as `sentinel` opens one.
        let database = try DatabaseOpener(config: testConfig()).open(world.appliance.dataDirectory.workspaceFile(world.workspace), kind: .workspace)
        let command = WorkspaceActor(id: world.workspace, database: database, control: control, registry: JobRegistry(), config: SentinelConfig().jobs)
        let repositoryID = try #require(try await world.runs().first?.repositoryID)
        _ = try await command.write { tx in
            try ReviewRunStore.requestManual(repositoryID: repositoryID, prNumber: 7, fullReview: false, by: "cli", correlationID: nil, in: &tx)
        }
        await command.close()
        // Serve learnt of it from the index within its poll; the index entry did not move (it was
        // already earlier), so serve never looked at the file and the review waited for good.
        #expect(await eventually(timeout: .seconds(10)) { try await world.runs().filter { $0.state == .completed }.count == 2 })
        await world.stop()
    }

    @Test("a run whose repository is disabled before its job starts again is skipped, and its check neutral: it kept calling GitHub and would have posted")
    func disabledRepositoryRunSkipped() async throws {
        let world = try await GitHubWorld()
        await world.github.state.inject("GET pull", [.status(502), .status(502), .status(502)])
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await eventually { await world.github.state.requests.contains("GET pull") })
        try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            _ = try await actor.write { tx in try RepositoryStore.setEnabled(false, fullName: GitHubWorld.repo, plan: nil, in: &tx) }
        }
        #expect(await world.waitForRun(state: .skipped))
        let run = try #require(try await world.runs().first)
        #expect(run.reason == "the repository \(GitHubWorld.repo) is disabled", "\(run.reason ?? "")")
        #expect(await world.github.state.reviews(on: GitHubWorld.repo, 7).isEmpty)
        await world.stop()
    }

    @Test("a pull request closed while its run posts the review: the run completes as posted (it said 'closed' under a posted review)")
    func closedWhilePosting() async throws {
        let world = try await GitHubWorld()
        await world.github.state.inject("POST reviews", [.delay(1.5)])
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await eventually { await world.github.state.requests.contains("POST reviews") })
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "closed", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        #expect(try await world.runs().map(\.state) == [.completed])
        #expect(await world.github.state.reviews(on: GitHubWorld.repo, 7).count == 1)
        await world.stop()
    }

    @Test("a signed pull_request.opened is accepted, reviewed with inline comments on diff lines, and the check completes")
    func openedPullRequestIsReviewed() async throws {
        let world = try await GitHubWorld()
        let (status, body) = try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(status == 202, "\(body)")
        #expect(await world.waitForRun(state: .completed))
        let reviews = await world.github.state.reviews(on: GitHubWorld.repo, 7)
        #expect(reviews.count == 1)
        let review = try #require(reviews.first)
        #expect(review.event == "COMMENT")
        #expect(review.body.contains("<!-- sentinel:run:"))
        #expect(review.body.contains("Reviewed 2 of 3 files; skipped 1: lock files (1)."), "\(review.body)")
        #expect(review.comments.count == 2)
        let secret = try #require(review.comments.first { $0["path"] == "app.py" })
        #expect(secret["line"] == "3")
        #expect(secret["side"] == "RIGHT")
        #expect(secret["body"]?.contains("AKIAQWERTYUIOPASDFGH") == false, "the secret itself is never echoed")
        #expect(secret["body"]?.contains("<!-- sentinel:fp:") == true)
        #expect(review.comments.contains { $0["path"] == "README.md" && $0["line"] == "11" })
        let rejected = await world.github.state.rejected
        #expect(rejected.isEmpty, "\(rejected)")
        let checks = await world.github.state.checkRuns.values
        #expect(checks.count == 1)
        #expect(checks.first?.name == "Sentinel")
        #expect(checks.first?.status == "completed")
        #expect(checks.first?.conclusion == "failure", "a critical finding (leaked key) reaches the default fail_on severity")
        let run = try #require(try await world.runs().first)
        #expect(run.policySHA256?.count == 64)
        #expect(try await world.count("SELECT count(*) FROM events WHERE type = 'RunCreated'") == 1)
        #expect(try await world.count("SELECT count(*) FROM events WHERE type = 'RunCompleted'") == 1)
        #expect(try await world.count("SELECT count(*) FROM findings WHERE posted = 1") == 2)
        // The rollup listener folds the finished run asynchronously: one run, its two findings by severity.
        #expect(await eventually {
            try await world.count("SELECT coalesce(sum(runs_completed), 0) FROM rollup_daily WHERE repository = '\(GitHubWorld.repo)'") == 1
        })
        #expect(try await world.count("SELECT coalesce(sum(findings), 0) FROM rollup_daily_findings") == 2)
        #expect(try await world.count("SELECT count(*) FROM rollup_run_durations") == 1)
        await world.stop()
    }

    @Test("a run that prepares its review posts it without first looking for an earlier post: 6 GitHub calls per review")
    func freshRunSkipsTheMarkerLookup() async throws {
        let world = try await GitHubWorld()
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        let calls = await world.github.state.requests
        // Nothing is posted before the prepared review is stored, so a first preparation has nothing to look for.
        #expect(!calls.contains("GET reviews"), "\(calls)")
        // `GET app` (the App's bot login) and the token are looked up once per integration, not per review.
        #expect(calls.sorted() == ["GET app", "POST access_tokens", "GET pull", "GET contents", "POST check-runs", "GET files", "POST reviews", "PATCH check-runs"].sorted(),
                "\(calls)")
        // The pull request, its policy file and the check's start go out side by side, so they may
        // arrive in any order; the files follow the policy, and the check is concluded after the review is posted.
        if calls.count == 8 {
            #expect(Array(calls[0..<2]) == ["GET app", "POST access_tokens"], "\(calls)")
            #expect(Set(calls[2..<5]) == ["GET pull", "GET contents", "POST check-runs"], "\(calls)")
            #expect(Array(calls[5..<8]) == ["GET files", "POST reviews", "PATCH check-runs"], "\(calls)")
        }
        #expect(await world.github.state.reviews(on: GitHubWorld.repo, 7).count == 1)
        await world.stop()
    }

    @Test("calls that do not depend on each other overlap: the pull request, its policy file and the check's start")
    func independentCallsOverlap() async throws {
        let world = try await GitHubWorld()
        // Each held request is answered only once the next one has arrived (or after ten seconds, which
        // the fake writes down): made one after the other, as before, the first hold expires.
        await world.github.state.inject("GET pull", [.holdUntilRequest("GET contents")])
        await world.github.state.inject("GET contents", [.holdUntilRequest("POST check-runs")])
        await world.github.state.inject("POST check-runs", [.holdUntilRequest("GET pull")])
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        #expect(await world.github.state.expiredHolds == [])
        #expect(await world.github.state.reviews(on: GitHubWorld.repo, 7).count == 1)
        let checks = await world.github.state.checkRuns.values
        #expect(checks.count == 1)
        #expect(checks.first?.status == "completed")
        let run = try #require(try await world.runs().first)
        #expect(run.checkRunID != nil)
        #expect(run.policySHA256?.count == 64)
        await world.stop()
    }

    @Test("calls side by side while no token is cached wait for one token: one mint; after a refused mint the next call mints again")
    func tokenMintedOnceForConcurrentCalls() async throws {
        let world = try await GitHubWorld()
        let http = try AsyncOutboundHTTPClient()
        let tokens = world.tokenCache(http: http)
        let minted = await withTaskGroup(of: String?.self) { group in
            for _ in 0..<8 { group.addTask { try? await tokens.token(installationID: 55) } }
            return await group.reduce(into: [String?]()) { $0.append($1) }
        }
        #expect(Set(minted).count == 1 && minted.first! != nil, "\(minted)")
        #expect(await world.tokenMints() == 1)
        // A refused mint is an error for its callers, and the next call mints again (nothing stays waiting).
        await tokens.invalidate(installationID: 55, refused: try #require(minted.first ?? nil))
        await world.github.state.inject("POST access_tokens", [.status(500)])
        await #expect(throws: GitHubAPIError.self) { try await tokens.token(installationID: 55) }
        #expect(try await tokens.token(installationID: 55).hasPrefix("ghs_"))
        #expect(await world.tokenMints() == 3)
        await http.shutdown()
        await world.stop()
    }

    @Test("calls side by side with a revoked token mint one new token: a 401 that comes back after the new token was minted does not throw it away")
    func revokedTokenRefreshedOnceForConcurrentCalls() async throws {
        let world = try await GitHubWorld()
        let http = try AsyncOutboundHTTPClient()
        let tokens = world.tokenCache(http: http)
        let client = GitHubClient(baseURL: world.github.baseURL, installationID: 55, tokens: tokens, http: http)
        let repo = GitHubWorld.repo
        await world.github.state.addPull(FakePullRequest(repo: repo, number: 9, headSHA: "fff666", baseSHA: "bbb000", files: GitHubWorld.files))
        _ = try await client.pullRequest(repo, 9)
        await world.github.state.revokeTokens()
        let mintsBefore = await world.tokenMints()
        // The slow call carries the revoked token and learns so (401) a second after the quick one
        // got its 401, minted a new token and retried with it.
        await world.github.state.inject("GET pull", [.delay(1.5)])
        async let slow = client.pullRequest(repo, 9)
        try await Task.sleep(for: .milliseconds(300))
        let files = try await client.pullRequestFiles(repo, 9)
        let pull = try await slow
        #expect(pull.number == 9 && !files.isEmpty)
        #expect(await world.tokenMints() == mintsBefore + 1)
        await http.shutdown()
        await world.stop()
    }

    @Test("a delivery whose event and action say there is nothing to do is stored already processed, with no job and no second decode")
    func settledAtIntake() async throws {
        let world = try await GitHubWorld()
        // A body with only the action: decoding it as a pull request event would fail ("payload not understood").
        #expect(try await world.deliver(event: "pull_request", body: Data(#"{"action":"labeled"}"#.utf8)).0 == 202)
        #expect(try await world.deliver(event: "issue_comment", body: Data(#"{"action":"deleted"}"#.utf8)).0 == 202)
        #expect(try await world.deliver(event: "check_suite", body: Data(#"{"action":"completed"}"#.utf8)).0 == 202)
        // Settled by the time the 202 came back: no waiting for a job.
        #expect(try await world.count("SELECT count(*) FROM deliveries WHERE processed_at IS NOT NULL") == 3)
        #expect(try await world.count("SELECT count(*) FROM deliveries WHERE outcome = 'ignored: pull_request.labeled'") == 1)
        #expect(try await world.count("SELECT count(*) FROM deliveries WHERE outcome = 'ignored: issue_comment.deleted'") == 1)
        #expect(try await world.count("SELECT count(*) FROM deliveries WHERE outcome = 'ignored: check_suite.completed'") == 1)
        #expect(try await world.count("SELECT count(*) FROM jobs WHERE kind = 'github.delivery'") == 0)
        // One that needs its payload still gets its job.
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        #expect(try await world.count("SELECT count(*) FROM jobs WHERE kind = 'github.delivery'") == 1)
        await world.stop()
    }

    @Test("a delivery of an integration removed before it is processed (from the command line: this server's cache still holds it) requests no run and brings no repository back")
    func removedIntegrationChangesNothing() async throws {
        let world = try await GitHubWorld()
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        // Removed as `sentinel integration remove` removes it: in the workspace file, the running server not told.
        let service = world.appliance.integrations
        let integrationID = try #require(IntegrationID(world.integration.id))
        try world.appliance.control.write { db in
            try db.execute(sql: "INSERT INTO integration_auth_failures (integration_id, workspace_id, failures, last_failed_at) VALUES (?, ?, 3, 0)",
                           arguments: [integrationID.rawValue, world.workspace.rawValue])
        }
        try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await service.remove(integrationID, from: actor, by: "cli")
        }
        // Its refused deliveries no longer ask for attention (doctor warned about them for a week).
        #expect(try world.appliance.control.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM integration_auth_failures") } == 0)
        // As before this server reads the integration revision again (about once a second): its
        // cache still holds the integration, and its secret verifies the signature.
        try world.appliance.control.write { db in try db.execute(sql: "UPDATE integration_revision SET revision = revision - 1") }
        #expect(try await world.count("SELECT count(*) FROM repositories WHERE removed = 0") == 0)
        let (status, _) = try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "synchronize", head: "bbb222",
                                                                                                             before: "aaa111"))
        #expect(status == 202)
        #expect(await eventually { try await world.count("SELECT count(*) FROM deliveries WHERE processed_at IS NOT NULL") == 2 })
        let outcome = try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await actor.read { db in try String.fetchOne(db, sql: "SELECT outcome FROM deliveries ORDER BY received_at DESC LIMIT 1") }
        }
        #expect(outcome == "ignored: integration \(integrationID) was removed")
        #expect(try await world.count("SELECT count(*) FROM review_runs") == 1)
        #expect(try await world.count("SELECT count(*) FROM repositories WHERE removed = 0") == 0)
        await world.stop()
    }

    @Test("an integration removed while a review runs: the run posts no review and ends its check skipped (it posted with the credentials it still held)")
    func integrationRemovedWhileReviewing() async throws {
        let world = try await GitHubWorld()
        // Within the test's 2 s timeout of GitHub calls.
        await world.github.state.inject("GET files", [.delay(1)])
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await eventually { await world.github.state.requests.contains("GET files") })
        let (service, integrationID) = (world.appliance.integrations, try #require(IntegrationID(world.integration.id)))
        try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await service.remove(integrationID, from: actor, by: "cli")
        }
        #expect(await world.waitForRun(state: .skipped))
        #expect(await world.github.state.reviews(on: GitHubWorld.repo, 7).isEmpty)
        let checks = await world.github.state.checkRuns.values
        let reasons = try await world.runs().map(\.reason)
        let requests = await world.github.state.requests
        #expect(checks.count == 1 && checks.first?.conclusion == "neutral" && checks.first?.title == "Review skipped", "\(checks) \(reasons) \(requests)")
        await world.stop()
    }

    @Test("deleting a workspace through the API concludes the checks of its reviews waiting to be tried again (they stayed in progress for good)")
    func deletedWorkspaceConcludesOpenChecks() async throws {
        let world = try await GitHubWorld()
        // The review starts its check, then GitHub rate-limits it: the job waits ten minutes to be tried again.
        await world.github.state.inject("GET files", [.rateLimited(retryAfter: 600)])
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await eventually {
            try await world.count("SELECT count(*) FROM jobs WHERE idempotency_key = 'run:1' AND state = 'queued' AND attempts >= 1") == 1
        })
        let started = await world.github.state.checkRuns.values
        #expect(started.count == 1 && started.allSatisfy { $0.status != "completed" }, "\(started)")
        let identity = world.appliance.identity
        let admin = try identity.createUser(email: "root@example.com", password: "correct horse battery", isAdmin: true)
        let token = try identity.createToken(for: admin, name: "ops", scopes: [.read, .write, .admin], expiresInDays: nil).token
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(world.port)/api/v1/workspaces/\(world.workspace.rawValue)?confirm=acme")
        request.method = .DELETE
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        let response = try await world.http.execute(request, timeout: .seconds(30))
        #expect(response.status.code == 204)
        let checks = await world.github.state.checkRuns.values
        #expect(checks.count == 1 && checks.first?.conclusion == "neutral" && checks.first?.summary?.contains("the workspace was deleted") == true, "\(checks)")
        await world.stop()
    }

    @Test("sentinel workspace delete concludes the checks of its reviews waiting to be tried again too (they stayed in progress for good)")
    func commandDeleteConcludesOpenChecks() async throws {
        let world = try await GitHubWorld()
        await world.github.state.inject("GET files", [.rateLimited(retryAfter: 600)])
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await eventually {
            try await world.count("SELECT count(*) FROM jobs WHERE idempotency_key = 'run:1' AND state = 'queued' AND attempts >= 1") == 1
        })
        // Serve stops (the command refuses beside it); its data directory, taken as it is, is where the command runs.
        try await world.services.shutdown()
        let copy = TemporaryDirectory("sentinel-delete")
        defer { copy.cleanup() }
        let data = copy.url.appendingPathComponent("data")
        try FileManager.default.copyItem(at: world.directory.url, to: data)
        let deleted = try await SentinelProcess.run(["workspace", "delete", "acme", "--confirm", "acme", "--data-dir", data.path])
        #expect(deleted.status == 0, "\(deleted.stderr)")
        let checks = await world.github.state.checkRuns.values
        #expect(checks.count == 1 && checks.first?.conclusion == "neutral" && checks.first?.summary?.contains("the workspace was deleted") == true, "\(checks)")
        await world.stop()
    }

    @Test("a re-run cancelled after it started its check leaves the commit's failed review standing: its check fails naming that run (neutral, the newest check, turned the failed gate green)")
    func cancelledRerunKeepsFailure() async throws {
        let world = try await GitHubWorld()
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        let first = try #require(try await world.runs().first)
        #expect(first.conclusion == "failure")
        // The re-run starts its check, then waits out GitHub's Retry-After on the files; it is cancelled meanwhile.
        await world.github.state.inject("GET files", [.rateLimited(retryAfter: 2)])
        let rerun = try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await actor.write { tx in
                try ReviewRunStore.requestManual(repositoryID: first.repositoryID, prNumber: 7, fullReview: true, by: "test", correlationID: nil, in: &tx).0
            }
        }
        #expect(await eventually {
            try await world.count("SELECT count(*) FROM jobs WHERE idempotency_key = 'run:\(rerun)' AND state = 'queued' AND attempts >= 1") == 1
        })
        _ = try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await actor.write { tx in try ReviewRunStore.cancel(runID: rerun, by: "test", in: &tx) }
        }
        #expect(await eventually {
            await world.github.state.checkRuns.values.contains { $0.externalID == "sentinel-run-\(rerun)" && $0.status == "completed" }
        })
        let check = try #require(await world.github.state.checkRuns.values.first { $0.externalID == "sentinel-run-\(rerun)" })
        #expect(check.conclusion == "failure" && check.title == "Review skipped; run \(first.id) stands", "\(check)")
        // Recorded once GitHub took the check: read until it is (it was read right after, a race).
        #expect(await eventually { try await world.runs().first { $0.id == rerun }?.conclusion == "failure" }, "the run says what its check says")

        // A later review of the commit that passed stands instead: the next cancelled re-run is neutral, not red again.
        await world.github.state.addPull(FakePullRequest(repo: GitHubWorld.repo, number: 7, headSHA: "aaa111", baseSHA: "bbb000",
                                                         files: [("notes.txt", "modified", "@@ -1 +1,2 @@\n hello\n+world")]))
        func rerunNow() async throws -> Int64 {
            try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
                try await actor.write { tx in
                    try ReviewRunStore.requestManual(repositoryID: first.repositoryID, prNumber: 7, fullReview: true, by: "test", correlationID: nil, in: &tx).0
                }
            }
        }
        let green = try await rerunNow()
        #expect(await eventually { try await world.runs().first { $0.id == green }?.state == .completed })
        #expect(try await world.runs().first { $0.id == green }?.conclusion == "success")
        await world.github.state.inject("GET files", [.rateLimited(retryAfter: 2)])
        let last = try await rerunNow()
        #expect(await eventually {
            try await world.count("SELECT count(*) FROM jobs WHERE idempotency_key = 'run:\(last)' AND state = 'queued' AND attempts >= 1") == 1
        })
        _ = try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await actor.write { tx in try ReviewRunStore.cancel(runID: last, by: "test", in: &tx) }
        }
        #expect(await eventually {
            await world.github.state.checkRuns.values.contains { $0.externalID == "sentinel-run-\(last)" && $0.status == "completed" }
        })
        let neutral = try #require(await world.github.state.checkRuns.values.first { $0.externalID == "sentinel-run-\(last)" })
        #expect(neutral.conclusion == "neutral" && neutral.title == "Review skipped", "\(neutral)")
        await world.stop()
    }

    @Test("a payload Sentinel cannot read is ignored with the field and the reason in its outcome (a number out of range said only \"()\", then \"not valid JSON\")")
    func payloadNotUnderstoodSaysWhere() async throws {
        let world = try await GitHubWorld()
        let text = String(decoding: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111", number: 424242), as: UTF8.self)
        let huge = text.replacingOccurrences(of: "424242", with: "1000000000000000000000000000000")
        #expect(try await world.deliver(event: "pull_request", body: Data(huge.utf8)).0 == 202)
        var object = try #require(try JSONSerialization.jsonObject(with: GitHubWorld.pullRequestPayload(action: "opened", head: "bbb222")) as? [String: Any])
        var pull = try #require(object["pull_request"] as? [String: Any])
        pull["head"] = nil
        object["pull_request"] = pull
        #expect(try await world.deliver(event: "pull_request", body: try JSONSerialization.data(withJSONObject: object)).0 == 202)
        #expect(await eventually { try await world.count("SELECT count(*) FROM deliveries WHERE processed_at IS NOT NULL") == 2 })
        let outcomes = try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await actor.read { db in try String.fetchAll(db, sql: "SELECT outcome FROM deliveries ORDER BY received_at") }
        }
        #expect(outcomes.count == 2)
        #expect(outcomes.first == "ignored: payload not understood (a field holds a value of the wrong kind or size "
                + "(a number with a fraction, an exponent or more than 64 bits where a whole number belongs))", "\(outcomes)")
        #expect(outcomes.last == "ignored: payload not understood (missing pull_request.head)", "\(outcomes)")
        #expect(try await world.count("SELECT count(*) FROM review_runs") == 0)
        // A head that is not a commit name (it went into API paths and queries: `?ref=abc%20def`).
        for head in ["../x", "abc def", String(repeating: "a", count: 65)] {
            #expect(try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: head)).0 == 202)
        }
        #expect(await eventually { try await world.count("SELECT count(*) FROM deliveries WHERE processed_at IS NOT NULL") == 5 })
        let heads = try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await actor.read { db in try String.fetchAll(db, sql: "SELECT outcome FROM deliveries ORDER BY received_at LIMIT -1 OFFSET 2") }
        }
        #expect(heads == Array(repeating: "ignored: payload not understood (pull_request.head.sha is not a commit name)", count: 3), "\(heads)")
        #expect(try await world.count("SELECT count(*) FROM review_runs") == 0)
        await world.stop()
    }

    @Test("a repository with an id that is not positive or a name not of the form owner/name, or a pull request number that is not positive, is not understood: nothing is registered, no run is requested")
    func malformedRepositoriesNotRegistered() async throws {
        let world = try await GitHubWorld()
        func added(_ repositories: [[String: Any]]) throws -> Data {
            try JSONSerialization.data(withJSONObject: ["action": "added", "installation": ["id": 55], "repositories_added": repositories,
                                                        "repositories_removed": [] as [Any]] as [String: Any])
        }
        #expect(try await world.deliver(event: "installation_repositories", body: try added([["id": -1, "full_name": "acme/api", "private": false]])).0 == 202)
        #expect(try await world.deliver(event: "installation_repositories", body: try added([["id": 9, "full_name": "", "private": false]])).0 == 202)
        let traversal = GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111", repoID: 1002, repoName: "acme/../../app")
        #expect(try await world.deliver(event: "pull_request", body: traversal).0 == 202)
        // A pull request number that is not positive names no pull request (a run for #0 was requested).
        #expect(try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111", number: 0)).0 == 202)
        // GitHub's own names pass: dots, dashes and underscores.
        #expect(try await world.deliver(event: "installation_repositories", body: try added([["id": 10, "full_name": "my_org-1/repo.name_2", "private": false]])).0 == 202)
        #expect(await eventually { try await world.count("SELECT count(*) FROM deliveries WHERE processed_at IS NOT NULL") == 5 })
        let outcomes = try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await actor.read { db in try String.fetchAll(db, sql: "SELECT outcome FROM deliveries ORDER BY received_at") }
        }
        #expect(outcomes == [
            "ignored: payload not understood (repositories_added[0].id: not a positive repository id (-1))",
            "ignored: payload not understood (repositories_added[0].full_name: not a repository name of the form owner/name)",
            "ignored: payload not understood (pull_request.head.repo.full_name: not a repository name of the form owner/name)",
            "ignored: payload not understood (pull_request.number: not a pull request number (0); they start at 1)",
            "added 1, removed 0 repositories",
        ], "\(outcomes)")
        let names = try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await actor.read { db in try String.fetchAll(db, sql: "SELECT full_name FROM repositories ORDER BY id") }
        }
        #expect(names == ["my_org-1/repo.name_2"])
        #expect(try await world.count("SELECT count(*) FROM review_runs") == 0)
        await world.stop()
    }

    @Test("an installation id that is not positive is not understood; a repository moved to another installation stays when the old one's removal arrives late")
    func installationsChecked() async throws {
        let world = try await GitHubWorld()
        func event(_ action: String, installation: Int64, _ repositories: [[String: Any]]) throws -> Data {
            try JSONSerialization.data(withJSONObject: ["action": action, "installation": ["id": installation],
                                                        "repositories_added": action == "added" ? repositories : [],
                                                        "repositories_removed": action == "removed" ? repositories : []] as [String: Any])
        }
        let moving: [[String: Any]] = [["id": 301, "full_name": "octo/moving", "private": false]]
        // Each processed before the next is sent: deliveries of one workspace may be processed in
        // another order than they arrived (the removal applied before the move removed the row).
        let deliveries = [try event("added", installation: -5, moving), try event("added", installation: 1, moving),
                          try event("added", installation: 2, [["id": 301, "full_name": "neworg/moving", "private": false]]),
                          try event("removed", installation: 1, moving)]
        for (n, body) in deliveries.enumerated() {
            _ = try await world.deliver(event: "installation_repositories", body: body)
            #expect(await eventually { try await world.count("SELECT count(*) FROM deliveries WHERE processed_at IS NOT NULL") == n + 1 })
        }
        let outcomes = try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await actor.read { db in try String.fetchAll(db, sql: "SELECT outcome FROM deliveries ORDER BY received_at") }
        }
        #expect(outcomes.first?.contains("installation.id") == true, "\(outcomes)")
        // The late removal removed nothing (the repository moved on), and its outcome says so.
        #expect(outcomes.last == "added 0, removed 0 repositories", "\(outcomes)")
        let row = try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await actor.read { db in
                try String.fetchOne(db, sql: "SELECT full_name || ' ' || installation_id || ' ' || removed FROM repositories WHERE external_id = 301")
            }
        }
        #expect(row == "neworg/moving 2 0", "\(row ?? "none")")
        await world.stop()
    }

    @Test("a signed delivery sent as a form (a webhook left at GitHub's form content type) is a 415 saying to send JSON; nothing is stored")
    func formEncodedDeliveryExplained() async throws {
        let world = try await GitHubWorld()
        let json = String(decoding: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"), as: UTF8.self)
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        let body = Data(("payload=" + (json.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")).utf8)
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(world.port)\(world.integration.webhookPath)")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        request.headers.add(name: "X-GitHub-Event", value: "pull_request")
        request.headers.add(name: "X-GitHub-Delivery", value: UUID().uuidString)
        request.headers.add(name: "X-Hub-Signature-256", value: GitHubWebhookSignature.sign(body: body, secret: world.secret))
        request.body = .bytes(ByteBuffer(bytes: body))
        let response = try await world.http.execute(request, timeout: .seconds(10))
        let text = String(buffer: try await response.body.collect(upTo: 1 << 20))
        #expect(response.status.code == 415)
        #expect(text.contains("the delivery is sent as application/x-www-form-urlencoded; Sentinel reads webhook deliveries as JSON"), "\(text)")
        #expect(try await world.count("SELECT count(*) FROM deliveries") == 0)
        // A body that is not JSON, sent as JSON, stays a 400.
        #expect(try await world.deliver(event: "pull_request", body: Data("payload=x".utf8)).0 == 400)
        await world.stop()
    }

    @Test("a signed body nested past 512 levels, not UTF-8 or with a raw control character is refused saying so (it was told it was not a JSON object); 100 levels are stored")
    func deepNestingExplained() async throws {
        let world = try await GitHubWorld()
        func body(depth: Int) -> Data {
            Data((#"{"action":"labeled","deep":"# + String(repeating: "[", count: depth) + String(repeating: "]", count: depth) + "}").utf8)
        }
        let (refused, text) = try await world.deliver(event: "pull_request", body: body(depth: 600))
        #expect(refused == 400)
        #expect(text.contains("nests arrays and objects deeper than 512 levels"), "\(text)")
        #expect(try await world.deliver(event: "pull_request", body: body(depth: 100)).0 == 202)
        // An object refused for its text says so: it was told it was not a JSON object.
        let notUTF8 = try await world.deliver(event: "pull_request", body: Data(#"{"action":"labeled","x":""#.utf8) + Data([0xFF]) + Data(#""}"#.utf8))
        #expect(notUTF8.0 == 400 && notUTF8.1.contains("not valid UTF-8"), "\(notUTF8.1)")
        let control = try await world.deliver(event: "pull_request", body: Data(#"{"action":"labeled","x":""#.utf8) + Data([0x00]) + Data(#""}"#.utf8))
        #expect(control.0 == 400 && control.1.contains("raw control character (U+0000)"), "\(control.1)")
        await world.stop()
    }

    @Test("a delivery refused for a malformed naming header is counted in sentinel_webhook_deliveries_total (bad_request), as the refused-deliveries alert reads it")
    func badRequestCounted() async throws {
        let world = try await GitHubWorld()
        let body = GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111")
        #expect(try await world.deliver(event: "pull_request; push", body: body).0 == 400)
        #expect(try await world.deliver(event: "pull_request", body: body, delivery: "has spaces in it").0 == 400)
        let text = world.appliance.prometheus.emitToString()
        #expect(text.contains(#"sentinel_webhook_deliveries_total{platform="github",outcome="bad_request"} 2"#), "\(text.split(separator: "\n").filter { $0.contains("webhook_deliveries") })")
        await world.stop()
    }

    @Test("a wrong signature answers 401 and stores nothing; ping answers 200, and a signed ping ends the refusals doctor and the console warn about")
    func wrongSignatureRejected() async throws {
        let world = try await GitHubWorld()
        let body = GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111")
        let (status, text) = try await world.deliver(event: "pull_request", body: body, signature: "sha256=" + String(repeating: "0", count: 64))
        #expect(status == 401)
        #expect(text.contains("X-Hub-Signature-256"))
        let (missing, _) = try await world.deliver(event: "pull_request", body: body, signature: "")
        #expect(missing == 401)
        #expect(try await world.count("SELECT count(*) FROM deliveries") == 0)
        #expect(try await world.count("SELECT count(*) FROM jobs") == 0)
        // Written down for `sentinel doctor` (the first refusal at once; later ones at most every 10 s).
        let refused = try world.appliance.control.read { db in
            try Int.fetchOne(db, sql: "SELECT failures FROM integration_auth_failures WHERE integration_id = ?", arguments: [world.integration.id])
        }
        #expect(refused == 1)
        let (ping, _) = try await world.deliver(event: "ping", body: Data(#"{"zen":"Keep it logically awesome.","hook_id":1}"#.utf8))
        #expect(ping == 200)
        // The ping GitHub is asked to redeliver once the secret is fixed is stored nowhere: it
        // clears the refusals itself (doctor kept warning "none accepted since").
        let afterPing = try world.appliance.control.read { db in
            try Int.fetchOne(db, sql: "SELECT failures FROM integration_auth_failures WHERE integration_id = ?", arguments: [world.integration.id])
        }
        #expect(afterPing == nil)
        let (notJSON, _) = try await world.deliver(event: "pull_request", body: Data("not json".utf8))
        #expect(notJSON == 400)
        await world.stop()
    }

    @Test("a delivery whose event name or id is too long is refused saying so, not told the header is missing")
    func overlongHeadersExplained() async throws {
        let world = try await GitHubWorld()
        let body = GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111")
        let (longEvent, eventText) = try await world.deliver(event: String(repeating: "e", count: 101), body: body)
        #expect(longEvent == 400 && eventText.contains("X-GitHub-Event header is longer than 100 characters (101)"), "\(eventText)")
        let (longID, idText) = try await world.deliver(event: "pull_request", body: body, delivery: String(repeating: "d", count: 201))
        #expect(longID == 400 && idText.contains("X-GitHub-Delivery header is longer than 200 characters (201)"), "\(idText)")
        let (noEvent, noEventText) = try await world.deliver(event: "", body: body)
        #expect(noEvent == 400 && noEventText.contains("X-GitHub-Event header is required"), "\(noEventText)")
        #expect(try await world.deliver(event: "pull_request", body: body, delivery: String(repeating: "d", count: 200)).0 == 202)
        #expect(try await world.count("SELECT count(*) FROM deliveries") == 1)
        await world.stop()
    }

    @Test("a delivery naming its event or id twice, or with characters GitHub never sends there, is refused saying so; nothing is stored; a 401 names how deliveries authenticate")
    func namingHeadersChecked() async throws {
        let world = try await GitHubWorld()
        let body = GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111")
        func send(_ headers: [(String, String)], secret: Data? = nil) async throws -> (Int, String, challenge: String?) {
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(world.port)\(world.integration.webhookPath)")
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.headers.add(name: "X-Hub-Signature-256", value: GitHubWebhookSignature.sign(body: body, secret: secret ?? world.secret))
            for (name, value) in headers { request.headers.add(name: name, value: value) }
            request.body = .bytes(ByteBuffer(bytes: body))
            let response = try await world.http.execute(request, timeout: .seconds(10))
            return (Int(response.status.code), String(buffer: try await response.body.collect(upTo: 1 << 20)),
                    response.headers.first(name: "WWW-Authenticate"))
        }
        // A 401 says how a delivery authenticates (RFC 9110: every 401 carries a challenge).
        let unsigned = try await send([("X-GitHub-Event", "pull_request"), ("X-GitHub-Delivery", "zzz")], secret: Data("another secret".utf8))
        #expect(unsigned.0 == 401 && unsigned.challenge == #"HMAC-SHA256 realm="Sentinel webhooks", header="X-Hub-Signature-256""#,
                "\(unsigned.challenge ?? "no challenge")")
        let twoIDs = try await send([("X-GitHub-Event", "pull_request"), ("X-GitHub-Delivery", "aaa"), ("X-GitHub-Delivery", "bbb")])
        #expect(twoIDs.0 == 400 && twoIDs.1.contains("X-GitHub-Delivery header is given 2 times; a delivery carries it once"), "\(twoIDs.1)")
        let twoEvents = try await send([("X-GitHub-Event", "pull_request"), ("X-GitHub-Event", "push"), ("X-GitHub-Delivery", "ccc")])
        #expect(twoEvents.0 == 400 && twoEvents.1.contains("X-GitHub-Event header is given 2 times"), "\(twoEvents.1)")
        let oddEvent = try await send([("X-GitHub-Event", "pull_request\"<b>"), ("X-GitHub-Delivery", "ddd")])
        #expect(oddEvent.0 == 400 && oddEvent.1.contains("X-GitHub-Event header must be ASCII letters, digits, spaces and _ - ."), "\(oddEvent.1)")
        let oddID = try await send([("X-GitHub-Event", "pull_request"), ("X-GitHub-Delivery", "é ü/x")])
        #expect(oddID.0 == 400 && oddID.1.contains("X-GitHub-Delivery header must be printable ASCII without spaces"), "\(oddID.1)")
        // A GitHub id shaped as Sentinel stores GitLab's took a GitLab delivery's place (its retry answered `duplicate`).
        let gitLabShaped = try await send([("X-GitHub-Event", "pull_request"), ("X-GitHub-Delivery", "gitlab:6f3c2e1a")])
        #expect(gitLabShaped.0 == 400 && gitLabShaped.1.contains("X-GitHub-Delivery must not start with 'gitlab:'"), "\(gitLabShaped.1)")
        #expect(try await world.count("SELECT count(*) FROM deliveries") == 0)
        let fine = try await send([("X-GitHub-Event", "pull_request"), ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")])
        #expect(fine.0 == 202, "\(fine.1)")
        #expect(try await world.count("SELECT count(*) FROM deliveries") == 1)
        await world.stop()
    }

    @Test("the same delivery three times makes one run and one review; unknown events are stored and acknowledged")
    func duplicateDeliveries() async throws {
        let world = try await GitHubWorld()
        let body = GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111")
        var statuses: [Int] = []
        for _ in 0..<3 { statuses.append(try await world.deliver(event: "pull_request", body: body, delivery: "delivery-1").0) }
        #expect(statuses == [202, 202, 202])
        let (other, _) = try await world.deliver(event: "star", body: Data(#"{"action":"created"}"#.utf8))
        #expect(other == 202)
        #expect(await world.waitForRun(state: .completed))
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await world.runs().count == 1)
        #expect(await world.github.state.reviews(on: GitHubWorld.repo, 7).count == 1)
        #expect(try await world.count("SELECT count(*) FROM deliveries") == 2)
        await world.stop()
    }

    @Test("the job fails after the review was posted; the retry finds the run's marker and does not post again")
    func noDoublePostAfterCrash() async throws {
        let world = try await GitHubWorld()
        // Completing the check fails once after the review is on the PR: the attempt dies between
        // posting and recording completion, exactly as a killed worker would.
        await world.github.state.inject("PATCH check-runs", [.status(500)])
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        #expect(await world.github.state.reviews(on: GitHubWorld.repo, 7).count == 1)
        let jobs = try await world.appliance.supervisor.withWorkspace(world.workspace) { try await $0.jobs() }
        #expect(jobs.first { $0.kind == "review.run" }?.attempts == 2)
        #expect(await world.github.state.checkRuns.values.first?.status == "completed")
        await world.stop()
    }

    @Test("the review record is lost after posting (worker killed): the retry finds the marker on GitHub")
    func markerFoundOnGitHub() async throws {
        let world = try await GitHubWorld()
        // Posting succeeds on GitHub but the answer never reaches Sentinel (timeout): from
        // Sentinel's side the review may or may not exist, so the retry must look for it.
        await world.github.state.inject("POST reviews", [.delay(3)])
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        try await Task.sleep(for: .seconds(1))
        #expect(await world.github.state.reviews(on: GitHubWorld.repo, 7).count == 1)
        await world.stop()
    }

    @Test("synchronize reviews only the new commits and repeats no finding already posted")
    func incrementalSynchronize() async throws {
        let world = try await GitHubWorld()
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        // New push: app.py gains a GitHub token; the old leaked key is still in the PR.
        let newPatch = "@@ -1,3 +1,5 @@\n import os\n-KEY = os.environ['KEY']\n+KEY = os.environ.get('KEY')\n+AWS_ACCESS_KEY_ID = \"AKIAQWERTYUIOPASDFGH\"\n+GH = \"ghp_abcdefghijklmnopqrstuvwxyz0123456789\"\n print(KEY)"
        var files = GitHubWorld.files
        files[0] = ("app.py", "modified", newPatch)
        await world.github.state.addPull(FakePullRequest(repo: GitHubWorld.repo, number: 7, headSHA: "ccc222", baseSHA: "bbb000", files: files))
        await world.github.state.setComparison(repo: GitHubWorld.repo, base: "aaa111", head: "ccc222", files: [
            ("app.py", "modified", "@@ -3,2 +3,3 @@\n AWS_ACCESS_KEY_ID = \"AKIAQWERTYUIOPASDFGH\"\n+GH = \"ghp_abcdefghijklmnopqrstuvwxyz0123456789\"\n print(KEY)"),
        ])
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "synchronize", head: "ccc222", before: "aaa111"))
        #expect(await world.waitForRun(state: .completed, count: 2))
        let reviews = await world.github.state.reviews(on: GitHubWorld.repo, 7)
        #expect(reviews.count == 2)
        let second = try #require(reviews.last)
        #expect(second.commitID == "ccc222")
        #expect(second.comments.count == 1, "\(second.comments)")
        #expect(second.comments.first?["line"] == "4")
        let rejected = await world.github.state.rejected
        #expect(rejected.isEmpty, "\(rejected)")
        await world.stop()
    }

    @Test("a pull request moved to another base branch is reviewed again; an edit of its title is not")
    func baseBranchChangeReviewed() async throws {
        let world = try await GitHubWorld()
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        func edited(_ changes: [String: Any]) throws -> Data {
            var object = try #require(try JSONSerialization.jsonObject(with: GitHubWorld.pullRequestPayload(action: "edited", head: "aaa111")) as? [String: Any])
            object["changes"] = changes
            return try JSONSerialization.data(withJSONObject: object)
        }
        let (status, _) = try await world.deliver(event: "pull_request", body: try edited(["title": ["from": "Old title"]]))
        #expect(status == 202)
        try await world.deliver(event: "pull_request", body: try edited(["base": ["ref": ["from": "develop"], "sha": ["from": "ddd000"]]]))
        #expect(await world.waitForRun(state: .completed, count: 2))
        let triggers = try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await actor.read { db in try String.fetchAll(db, sql: "SELECT trigger FROM review_runs ORDER BY id") }
        }
        #expect(triggers == ["opened", "retargeted:main"], "\(triggers)")
        await world.stop()
    }

    @Test("a pull request reopened, or made a draft and marked ready again, at a head already reviewed is not reviewed twice; a new head is")
    func reopenedAtReviewedHead() async throws {
        let world = try await GitHubWorld()
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "closed", head: "aaa111"))
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "reopened", head: "aaa111"))
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "ready_for_review", head: "aaa111"))
        #expect(await eventually { try await world.count("SELECT count(*) FROM deliveries WHERE processed_at IS NOT NULL") == 4 })
        #expect(try await world.count("SELECT count(*) FROM review_runs") == 1)
        #expect(try await world.count("SELECT closed FROM pull_requests WHERE pr_number = 7") == 0)
        #expect(await world.github.state.reviews(on: GitHubWorld.repo, 7).count == 1)
        // Reopened at the same head against another base commit (its base branch moved): reviewed.
        var moved = try #require(try JSONSerialization.jsonObject(with: GitHubWorld.pullRequestPayload(action: "reopened", head: "aaa111")) as? [String: Any])
        var pull = try #require(moved["pull_request"] as? [String: Any])
        var base = try #require(pull["base"] as? [String: Any])
        base["sha"] = "eee000"
        pull["base"] = base
        moved["pull_request"] = pull
        try await world.deliver(event: "pull_request", body: try JSONSerialization.data(withJSONObject: moved))
        #expect(await eventually { try await world.count("SELECT count(*) FROM review_runs") == 2 })
        #expect(await world.waitForRun(state: .completed, count: 2))
        // Reopened at a head never reviewed (pushed to while closed): reviewed.
        await world.github.state.push(repo: GitHubWorld.repo, 7, head: "ccc222")
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "reopened", head: "ccc222"))
        #expect(await world.waitForRun(state: .completed, count: 3))
        #expect(await world.github.state.reviews(on: GitHubWorld.repo, 7).count == 3)
        await world.stop()
    }

    @Test("a repository renamed or transferred takes its new name; a deleted one is removed (it kept the old name, and a new repository of that name was reviewed twice)")
    func repositoryEvents() async throws {
        let world = try await GitHubWorld()
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        func event(_ action: String, _ name: String, id: Int = 1001) -> Data {
            try! JSONSerialization.data(withJSONObject: ["action": action, "repository": ["id": id, "full_name": name, "private": false],
                                                         "installation": ["id": 55]])
        }
        @Sendable func names() async throws -> [String] {
            try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
                try await actor.read { db in try String.fetchAll(db, sql: "SELECT full_name || ':' || removed FROM repositories ORDER BY id") }
            }
        }
        let (status, _) = try await world.deliver(event: "repository", body: event("renamed", "acme/renamed"))
        #expect(status == 202)
        #expect(await eventually { try await names() == ["acme/renamed:0"] })
        try await world.deliver(event: "repository", body: event("transferred", "neworg/renamed"))
        #expect(await eventually { try await names() == ["neworg/renamed:0"] })
        // Not acted on, and an unknown repository changes nothing.
        try await world.deliver(event: "repository", body: event("archived", "neworg/renamed"))
        try await world.deliver(event: "repository", body: event("deleted", "other/x", id: 999))
        try await world.deliver(event: "repository", body: event("deleted", "neworg/renamed"))
        #expect(await eventually { try await names() == ["neworg/renamed:1"] })
        await world.stop()
    }

    @Test("a .sentinel.yml with warnings alone is applied and the review says so; one with an error is left out and the review says that")
    func configurationProblemsSayWhetherTheFileApplied() async throws {
        let world = try await GitHubWorld()
        await world.github.state.setContent(repo: GitHubWorld.repo, ref: "aaa111", path: ".sentinel.yml",
                                            "version: 1\nreview:\n  max_comments: 0\n  unknown_key_x: 1\n")
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        let first = try #require(await world.github.state.reviews(on: GitHubWorld.repo, 7).first)
        #expect(first.body.contains("### Configuration problems") && first.body.contains("unknown_key_x"), "\(first.body)")
        #expect(first.body.contains("The file was applied without what the warnings name."), "\(first.body)")
        #expect(first.comments.isEmpty, "max_comments 0 from the file applied: \(first.comments)")
        // The run records the commit the file was read at, beside the other layers' versions (it recorded none).
        let versions = try await world.runs().first?.policyVersions
        #expect(versions?.contains(#""file":"aaa111""#) == true, "\(String(describing: versions))")
        await world.github.state.addPull(FakePullRequest(repo: GitHubWorld.repo, number: 7, headSHA: "ccc222", baseSHA: "bbb000", files: GitHubWorld.files))
        await world.github.state.setContent(repo: GitHubWorld.repo, ref: "ccc222", path: ".sentinel.yml", "version: 1\nreview:\n  max_comments: lots\n")
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "synchronize", head: "ccc222", before: "zzz999"))
        #expect(await world.waitForRun(state: .completed, count: 2))
        let second = try #require(await world.github.state.reviews(on: GitHubWorld.repo, 7).last)
        #expect(second.body.contains("The file was not applied: the review used the other configuration layers."), "\(second.body)")
        // A file left out is no layer of the run's policy.
        #expect(try await world.runs().first { $0.headSHA == "ccc222" }?.policyVersions?.contains("\"file\"") == false)
        await world.stop()
    }

    @Test("a finding fails the check wherever it is shown: past max_comments (listed in the summary, recorded unposted), after a force push when it was posted before, and after a push that does not touch it")
    func everyReportedFindingCounts() async throws {
        let world = try await GitHubWorld()
        // max_comments 0: everything goes in the summary; the leaked key is critical.
        await world.github.state.setContent(repo: GitHubWorld.repo, ref: "aaa111", path: ".sentinel.yml", "version: 1\nreview:\n  max_comments: 0\n")
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        let first = try #require(await world.github.state.reviews(on: GitHubWorld.repo, 7).first)
        #expect(first.comments.isEmpty)
        #expect(first.body.contains("### Further findings (over review.max_comments)"), "\(first.body)")
        #expect(first.body.contains("`app.py:3`"), "\(first.body)")
        let firstCheck = try #require(await world.github.state.checkRuns.values.first)
        #expect(firstCheck.conclusion == "failure" && firstCheck.title == "2 findings", "\(firstCheck)")
        #expect(try await world.count("SELECT count(*) FROM findings WHERE posted = 0") == 2)
        #expect(try await world.count("SELECT count(*) FROM findings WHERE posted = 1") == 0)

        // Without the cap the findings are posted inline; a force push to the same files (no
        // comparison with the last reviewed commit) finds them again: not commented twice, still failing.
        await world.github.state.addPull(FakePullRequest(repo: GitHubWorld.repo, number: 7, headSHA: "ddd333", baseSHA: "bbb000", files: GitHubWorld.files))
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "synchronize", head: "ddd333", before: "aaa111"))
        #expect(await world.waitForRun(state: .completed, count: 2))
        #expect(try await world.count("SELECT count(*) FROM findings WHERE posted = 1") == 2)
        await world.github.state.addPull(FakePullRequest(repo: GitHubWorld.repo, number: 7, headSHA: "eee444", baseSHA: "bbb000", files: GitHubWorld.files))
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "synchronize", head: "eee444", before: "zzz999"))
        #expect(await world.waitForRun(state: .completed, count: 3))
        let third = try #require(await world.github.state.reviews(on: GitHubWorld.repo, 7).last)
        #expect(third.commitID == "eee444" && third.comments.isEmpty, "\(third.comments)")
        #expect(third.body.contains("### Still open from earlier reviews (not commented again)"), "\(third.body)")
        let checks = await world.github.state.checkRuns.values.filter { $0.headSHA == "eee444" }
        #expect(checks.count == 1 && checks.first?.conclusion == "failure" && checks.first?.title == "2 findings", "\(checks)")

        // A push that touches only the README: the incremental review looks at that hunk alone; the
        // leaked key in app.py, which it does not look at again, is carried as still open.
        await world.github.state.addPull(FakePullRequest(repo: GitHubWorld.repo, number: 7, headSHA: "fff555", baseSHA: "bbb000", files: GitHubWorld.files))
        await world.github.state.setComparison(repo: GitHubWorld.repo, base: "eee444", head: "fff555", files: [GitHubWorld.files[1]])
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "synchronize", head: "fff555", before: "eee444"))
        #expect(await world.waitForRun(state: .completed, count: 4))
        let fourth = try #require(await world.github.state.reviews(on: GitHubWorld.repo, 7).last)
        #expect(fourth.commitID == "fff555" && fourth.comments.isEmpty, "\(fourth.comments)")
        #expect(fourth.body.contains("`app.py:3`"), "\(fourth.body)")
        let pushed = await world.github.state.checkRuns.values.filter { $0.headSHA == "fff555" }
        #expect(pushed.count == 1 && pushed.first?.conclusion == "failure" && pushed.first?.title == "2 findings", "\(pushed)")
        // Once app.py's hunk is looked at again and the key is gone, it is no longer carried.
        let fixedApp = ("app.py", "modified", "@@ -1,3 +1,3 @@\n import os\n-KEY = os.environ['KEY']\n+KEY = os.environ.get('KEY')\n print(KEY)")
        await world.github.state.addPull(FakePullRequest(repo: GitHubWorld.repo, number: 7, headSHA: "aab666", baseSHA: "bbb000",
                                                         files: [fixedApp, GitHubWorld.files[2]]))
        await world.github.state.setComparison(repo: GitHubWorld.repo, base: "fff555", head: "aab666", files: [fixedApp])
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "synchronize", head: "aab666", before: "fff555"))
        #expect(await world.waitForRun(state: .completed, count: 5))
        let fixed = await world.github.state.checkRuns.values.filter { $0.headSHA == "aab666" }
        #expect(fixed.count == 1 && fixed.first?.conclusion == "success" && fixed.first?.title == "No findings", "\(fixed)")
        await world.stop()
    }

    @Test("a run superseded while its job waits out a Retry-After concludes the check it had started, neutral (it stayed in progress for good)")
    func supersededWhileWaiting() async throws {
        let world = try await GitHubWorld()
        await world.github.state.inject("GET files", [.rateLimited(retryAfter: 2)])
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await eventually { await world.github.state.requests.contains("GET files") })
        #expect(await world.github.state.checkRuns.values.contains { $0.headSHA == "aaa111" })
        await world.github.state.addPull(FakePullRequest(repo: GitHubWorld.repo, number: 7, headSHA: "bbb222", baseSHA: "bbb000", files: GitHubWorld.files))
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "synchronize", head: "bbb222", before: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        #expect(await eventually {
            await world.github.state.checkRuns.values.filter { $0.headSHA == "aaa111" }.allSatisfy { $0.status == "completed" && $0.conclusion == "neutral" }
        })
        let old = await world.github.state.checkRuns.values.filter { $0.headSHA == "aaa111" }
        #expect(old.count == 1 && old.first?.title == "Superseded", "\(old)")
        #expect(try await world.runs().first { $0.headSHA == "aaa111" }?.state == .superseded)
        await world.stop()
    }

    @Test("5xx, 429 with Retry-After, a secondary rate limit and a timeout still end in exactly one review")
    func faultsAreRetried() async throws {
        let world = try await GitHubWorld()
        await world.github.state.inject("GET files", [.status(502)])
        await world.github.state.inject("POST check-runs", [.secondaryRateLimit])
        await world.github.state.inject("POST reviews", [.rateLimited(retryAfter: 1), .status(500)])
        await world.github.state.inject("GET pull", [.delay(3)])
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        try await Task.sleep(for: .seconds(1))
        #expect(await world.github.state.reviews(on: GitHubWorld.repo, 7).count == 1)
        #expect(await world.github.state.checkRuns.count == 1)
        await world.stop()
    }

    @Test("a 404 from GitHub fails the run visibly with its reason")
    func notFoundFailsRun() async throws {
        let world = try await GitHubWorld()
        let body = try JSONSerialization.data(withJSONObject: [
            "action": "opened", "number": 99,
            "pull_request": ["number": 99, "draft": false, "state": "open", "head": ["sha": "fff999"], "base": ["sha": "bbb000"]],
            "repository": ["id": 1001, "full_name": GitHubWorld.repo], "installation": ["id": 55]] as [String: Any])
        try await world.deliver(event: "pull_request", body: body)
        #expect(await world.waitForRun(state: .failed))
        let run = try #require(try await world.runs().first)
        #expect(run.reason?.contains("404") == true, "\(run.reason ?? "")")
        await world.stop()
    }

    @Test("comment commands: @sentinel review on a PR runs; on a plain issue or by a bot it does not; closed cancels")
    func commentCommands() async throws {
        let world = try await GitHubWorld()
        func comment(_ text: String, onPR: Bool, bot: Bool = false, id: Int = 1) -> Data {
            var issue: [String: Any] = ["number": 7]
            if onPR { issue["pull_request"] = ["url": "https://api.github.com/repos/\(GitHubWorld.repo)/pulls/7"] }
            return try! JSONSerialization.data(withJSONObject: [
                "action": "created", "issue": issue,
                "comment": ["id": id, "body": text, "author_association": "MEMBER",
                            "user": ["login": bot ? "sentinel[bot]" : "octocat", "type": bot ? "Bot" : "User"]],
                "repository": ["id": 1001, "full_name": GitHubWorld.repo], "installation": ["id": 55]] as [String: Any])
        }
        try await world.deliver(event: "issue_comment", body: comment("@sentinel review please", onPR: false, id: 1))
        try await world.deliver(event: "issue_comment", body: comment("@sentinel review", onPR: true, bot: true, id: 2))
        try await world.deliver(event: "issue_comment", body: comment("LGTM", onPR: true, id: 3))
        try await world.deliver(event: "issue_comment", body: comment("@Sentinel full review", onPR: true, id: 4))
        #expect(await world.waitForRun(state: .completed))
        let runs = try await world.runs()
        #expect(runs.count == 1)
        #expect(runs.first?.trigger == "command:4")
        #expect(runs.first?.fullReview == true)
        #expect(runs.first?.headSHA == "aaa111")
        #expect(try await world.count("SELECT count(*) FROM deliveries WHERE outcome LIKE 'ignored%'") == 3)
        await world.stop()
    }

    @Test("comment commands run only for OWNER/MEMBER/COLLABORATOR; edits, plain issues and the App's own login never command")
    func commandAuthorisation() async throws {
        let world = try await GitHubWorld()
        try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await actor.write { tx in try tx.db.execute(sql: "UPDATE integrations SET bot_login = 'sentinel-app[bot]'") }
        }
        let deliveries: [Data] = [
            GitHubWorld.commentPayload("@sentinel review", id: 1, association: "NONE"),
            GitHubWorld.commentPayload("@sentinel full review", id: 2, association: "CONTRIBUTOR"),
            GitHubWorld.commentPayload("@sentinel review", id: 3, association: nil),
            GitHubWorld.commentPayload("@sentinel review", id: 4, association: "MEMBER", action: "edited"),
            GitHubWorld.commentPayload("@sentinel review", id: 5, association: "MEMBER", onPR: false),
            // The App's own account, by its configured login (even when GitHub does not say Bot).
            GitHubWorld.commentPayload("@sentinel review", id: 6, association: "MEMBER", login: "Sentinel-App[bot]"),
        ]
        for body in deliveries {
            let (status, text) = try await world.deliver(event: "issue_comment", body: body)
            #expect(status == 202, "\(text)")
        }
        #expect(await eventually {
            try await world.count("SELECT count(*) FROM deliveries WHERE processed_at IS NOT NULL") == deliveries.count
        })
        #expect(try await world.runs().isEmpty, "no comment above may start a run")
        #expect(try await world.count("SELECT count(*) FROM deliveries WHERE outcome LIKE 'refused:%'") == 3)
        #expect(try await world.count("SELECT count(*) FROM deliveries WHERE outcome = 'ignored: issue_comment.edited'") == 1)
        #expect(try await world.count("SELECT count(*) FROM deliveries WHERE outcome = 'ignored: comment on an issue, not a pull request'") == 1)
        #expect(try await world.count("SELECT count(*) FROM deliveries WHERE outcome = 'ignored: comment by a bot'") == 1)
        #expect(world.appliance.prometheus.emitToString().contains(#"sentinel_review_commands_refused_total{reason="author_association"} 3"#))
        #expect(world.log.text.contains("review command refused"))
        #expect(await world.github.state.reviews(on: GitHubWorld.repo, 7).isEmpty)
        #expect(await world.github.state.checkRuns.isEmpty, "a refused commenter gets no answer on the PR")

        let (status, _) = try await world.deliver(event: "issue_comment", body: GitHubWorld.commentPayload("@sentinel review", id: 7, association: "MEMBER"))
        #expect(status == 202)
        #expect(await world.waitForRun(state: .completed))
        #expect(try await world.runs().map(\.trigger) == ["command:7"])
        // The same comment delivered again under another delivery id, once the run has learnt its
        // head: the same run, not a second one that superseded it and failed on the head it learnt.
        let (again, _) = try await world.deliver(event: "issue_comment", body: GitHubWorld.commentPayload("@sentinel review", id: 7, association: "MEMBER"))
        #expect(again == 202)
        #expect(await eventually { try await world.count("SELECT count(*) FROM deliveries WHERE outcome LIKE 'run % already exists'") == 1 })
        let runs = try await world.runs()
        #expect(runs.map(\.trigger) == ["command:7"] && runs.map(\.state) == [.completed], "\(runs)")
        #expect(await world.github.state.reviews(on: GitHubWorld.repo, 7).count == 1)
        await world.stop()
    }

    @Test("review.command_associations is honoured: only the configured associations command a review")
    func configuredCommandAssociations() async throws {
        let world = try await GitHubWorld(config: { $0.review.commandAssociations = "contributor, OWNER" })
        try await world.deliver(event: "issue_comment", body: GitHubWorld.commentPayload("@sentinel review", id: 1, association: "MEMBER"))
        #expect(await eventually {
            try await world.count("SELECT count(*) FROM deliveries WHERE outcome LIKE 'refused:%'") == 1
        })
        try await world.deliver(event: "issue_comment", body: GitHubWorld.commentPayload("@sentinel review", id: 2, association: "CONTRIBUTOR"))
        #expect(await world.waitForRun(state: .completed))
        #expect(try await world.runs().map(\.trigger) == ["command:2"])
        await world.stop()
    }

    @Test("GitHub Enterprise Server over HTTPS behind an internal CA: the integration's CA bundle is trusted")
    func enterpriseServerWithInternalCA() async throws {
        let world = try await GitHubWorld(tls: true)
        #expect(world.github.baseURL.scheme == "https")
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        #expect(await world.github.state.reviews(on: GitHubWorld.repo, 7).count == 1)
        await world.stop()
    }

    @Test("a push supersedes the running review of the older commit, which posts nothing; drafts are skipped with a neutral check")
    func supersedeAndDrafts() async throws {
        let world = try await GitHubWorld()
        // The first run is slowed down at GitHub, so the push arrives while it is running.
        await world.github.state.inject("GET pull", [.delay(1.0)])
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "old000"))
        #expect(await eventually { try await world.runs().first?.state == .running })
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "synchronize", head: "aaa111", before: "old000"))
        #expect(await world.waitForRun(state: .completed))
        try await Task.sleep(for: .seconds(1.5))
        let runs = try await world.runs()
        #expect(runs.first { $0.headSHA == "old000" }?.state == .superseded)
        #expect(runs.first { $0.headSHA == "aaa111" }?.state == .completed)
        let reviews = await world.github.state.reviews(on: GitHubWorld.repo, 7)
        #expect(reviews.count == 1, "only the newest commit's review is posted")
        #expect(reviews.first?.commitID == "aaa111")
        await world.stop()

        let drafts = try await GitHubWorld()
        await drafts.github.state.addPull(FakePullRequest(repo: GitHubWorld.repo, number: 7, headSHA: "aaa111", baseSHA: "bbb000", draft: true,
                                                          files: GitHubWorld.files))
        try await drafts.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111", draft: true))
        #expect(await drafts.waitForRun(state: .skipped))
        #expect(await drafts.github.state.reviews(on: GitHubWorld.repo, 7).isEmpty)
        let check = try #require(await drafts.github.state.checkRuns.values.first)
        #expect(check.conclusion == "neutral")
        #expect(check.summary?.contains("draft") == true)
        await drafts.stop()
    }

    @Test("deliveries over 25 MB are refused with 413 before anything is stored")
    func oversizedDelivery() async throws {
        let world = try await GitHubWorld()
        let huge = Data(repeating: 0x20, count: 25 * 1024 * 1024 + 10)
        let (status, _) = try await world.deliver(event: "pull_request", body: huge)
        #expect(status == 413)
        #expect(try await world.count("SELECT count(*) FROM deliveries") == 0)
        await world.stop()
    }

    @Test("an invalid .sentinel.yml is reported on the PR with file, line and column, and the run uses the other layers")
    func invalidConfigFileReported() async throws {
        let world = try await GitHubWorld()
        await world.github.state.setContent(repo: GitHubWorld.repo, ref: "aaa111", path: ".sentinel.yml",
                                            "version: 1\nreview:\n  max_comments: lots\n")
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        let review = try #require(await world.github.state.reviews(on: GitHubWorld.repo, 7).first)
        #expect(review.body.contains("Configuration problems"))
        #expect(review.body.contains(".sentinel.yml:3:"), "\(review.body)")
        #expect(review.comments.count == 2, "built-in defaults still apply")
        await world.stop()
    }

    @Test("a delivery id that is no sane correlation id (quotes, slashes, angle brackets) is not carried to the jobs and their outbound calls")
    func oddDeliveryIDNotCarried() async throws {
        let world = try await GitHubWorld()
        let odd = "weird/id+with\"quote<>" + String(repeating: "x", count: 120)
        let (status, body) = try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"), delivery: odd)
        #expect(status == 202, "\(body)")
        #expect(await world.waitForRun(state: .completed))
        let correlations = try await world.appliance.supervisor.withWorkspace(world.workspace) {
            try await $0.read { db in try String.fetchAll(db, sql: "SELECT DISTINCT correlation_id FROM jobs") }
        }
        #expect(!correlations.isEmpty && correlations.allSatisfy { !$0.contains("/") && !$0.contains("<") && $0.count <= 128 }, "\(correlations)")
        await world.stop()
    }

    @Test("a .sentinel.yml that is not UTF-8 is an error on the PR and is not applied (it was read with replacement characters and applied)")
    func configFileNotUTF8() async throws {
        let world = try await GitHubWorld()
        var bytes = Data("# r".utf8)
        bytes.append(0xE9)
        bytes.append(contentsOf: Data("glages\nversion: 1\nreview:\n  max_comments: 0\n".utf8))
        await world.github.state.setContent(repo: GitHubWorld.repo, ref: "aaa111", path: ".sentinel.yml", bytes: bytes)
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        let review = try #require(await world.github.state.reviews(on: GitHubWorld.repo, 7).first)
        #expect(review.body.contains("Configuration problems") && review.body.contains("not valid UTF-8"), "\(review.body)")
        #expect(review.comments.count == 2, "the file's max_comments: 0 is not applied")
        await world.stop()
    }

    @Test("a fork's PR is reviewed with the config file at the base commit; the run keeps its policy snapshot")
    func forkUsesBaseConfig() async throws {
        let world = try await GitHubWorld()
        await world.github.state.addPull(FakePullRequest(repo: GitHubWorld.repo, number: 7, headSHA: "aaa111", baseSHA: "bbb000", fromFork: true,
                                                         files: GitHubWorld.files))
        // The fork tries to switch the checks off; the base branch keeps them on but lowers max_comments.
        await world.github.state.setContent(repo: GitHubWorld.repo, ref: "aaa111", path: ".sentinel.yml", "version: 1\nreview:\n  builtin_checks: false\n")
        await world.github.state.setContent(repo: GitHubWorld.repo, ref: "bbb000", path: ".sentinel.yml", "version: 1\nreview:\n  max_comments: 1\n")
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        let review = try #require(await world.github.state.reviews(on: GitHubWorld.repo, 7).first)
        #expect(review.comments.count == 1, "max_comments from the base commit's file applies; the fork's file does not")
        let run = try #require(try await world.runs().first)
        let snapshot = try #require(run.policySnapshot)
        #expect(snapshot.contains("\"review.max_comments\":1"), "\(snapshot)")
        #expect(snapshot.contains("\"review.builtin_checks\":true"))
        await world.stop()
    }

    @Test("a PR's own .sentinel.yml cannot switch the built-in checks off or take a file out of them: the leaked key is still found, and the review says the key was ignored")
    func fileCannotDisableBuiltinChecks() async throws {
        let world = try await GitHubWorld()
        await world.github.state.setContent(repo: GitHubWorld.repo, ref: "aaa111", path: ".sentinel.yml",
                                            "version: 1\nreview:\n  builtin_checks: false\n  paths:\n    exclude: [\"app.py\"]\n")
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        let review = try #require(await world.github.state.reviews(on: GitHubWorld.repo, 7).first)
        #expect(review.comments.contains { $0["path"] == "app.py" && $0["line"] == "3" }, "the leaked key is still a finding")
        #expect(review.body.contains("review.builtin_checks is ignored here"), "\(review.body)")
        #expect(try #require(try await world.runs().first?.policySnapshot).contains("\"review.builtin_checks\":true"))
        await world.stop()
    }

    @Test("a PR's own .sentinel.yml cannot skip its review (review.enabled, auto_review.on_open/on_push false): the leaked key still fails the check")
    func fileCannotSkipItsReview() async throws {
        for (key, yaml) in [("review.enabled", "review:\n  enabled: false\n"), ("review.auto_review.on_open", "review:\n  auto_review:\n    on_open: false\n")] {
            let world = try await GitHubWorld()
            await world.github.state.setContent(repo: GitHubWorld.repo, ref: "aaa111", path: ".sentinel.yml", "version: 1\n" + yaml)
            try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
            #expect(await world.waitForRun(state: .completed), "\(key)")
            let review = try #require(await world.github.state.reviews(on: GitHubWorld.repo, 7).first)
            #expect(review.body.contains("\(key) is ignored here"), "\(review.body)")
            let check = try #require(await world.github.state.checkRuns.values.first)
            #expect(check.conclusion == "failure", "\(key): \(check)")
            await world.stop()
        }
    }

    @Test("a PR whose head repository was deleted (head.repo null) is treated as a fork: the head's .sentinel.yml is not used")
    func deletedForkUsesBaseConfig() async throws {
        let world = try await GitHubWorld()
        var pull = FakePullRequest(repo: GitHubWorld.repo, number: 7, headSHA: "aaa111", baseSHA: "bbb000", files: GitHubWorld.files)
        pull.headRepoDeleted = true
        await world.github.state.addPull(pull)
        await world.github.state.setContent(repo: GitHubWorld.repo, ref: "aaa111", path: ".sentinel.yml", "version: 1\nreview:\n  builtin_checks: false\n")
        await world.github.state.setContent(repo: GitHubWorld.repo, ref: "bbb000", path: ".sentinel.yml", "version: 1\nreview:\n  max_comments: 1\n")
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        let review = try #require(await world.github.state.reviews(on: GitHubWorld.repo, 7).first)
        #expect(review.comments.count == 1, "the base commit's file applies; the deleted fork's file does not")
        let snapshot = try #require(try await world.runs().first?.policySnapshot)
        #expect(snapshot.contains("\"review.builtin_checks\":true"), "\(snapshot)")
        #expect(snapshot.contains("\"review.max_comments\":1"), "\(snapshot)")
        await world.stop()
    }

    struct OneReviewPlan: BillingProvider {
        func plan(for workspace: WorkspaceID) async throws -> Plan {
            Plan(name: "tiny", reviewsPerMonth: 1, tokensPerMonth: nil, repositories: nil, seats: nil)
        }
    }

    @Test("a review over the plan's monthly limit is skipped(plan_limit) with a neutral check saying why")
    func planLimitSkipsRun() async throws {
        let world = try await GitHubWorld(billing: OneReviewPlan())
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        let comment = try JSONSerialization.data(withJSONObject: [
            "action": "created", "issue": ["number": 7, "pull_request": ["url": "x"]],
            "comment": ["id": 9, "body": "@sentinel review", "author_association": "OWNER", "user": ["login": "octocat", "type": "User"]],
            "repository": ["id": 1001, "full_name": GitHubWorld.repo], "installation": ["id": 55]] as [String: Any])
        try await world.deliver(event: "issue_comment", body: comment)
        #expect(await world.waitForRun(state: .skipped))
        let skipped = try #require(try await world.runs().first { $0.state == .skipped })
        #expect(skipped.reason?.hasPrefix("plan_limit:") == true, "\(skipped.reason ?? "")")
        #expect(await world.github.state.reviews(on: GitHubWorld.repo, 7).count == 1)
        let checks = await world.github.state.checkRuns.values
        // The commit's first review failed (two findings): the skipped run's check says so, not neutral (the newest check is the gate).
        let latest = try #require(checks.max { $0.id < $1.id })
        #expect(latest.conclusion == "failure" && (latest.summary ?? "").contains("plan allows 1 reviews per month")
                && (latest.summary ?? "").contains("by run 1 failed, and stands") && latest.title?.hasSuffix("run 1 stands") == true, "\(latest)")
        await world.stop()
    }

    struct FixedPlan: BillingProvider {
        let plan: Plan
        func plan(for workspace: WorkspaceID) async throws -> Plan { plan }
    }

    @Test("concurrent reviews cannot together exceed the monthly limit; the 80% soft limit is one event")
    func concurrentRunsRespectLimit() async throws {
        let world = try await GitHubWorld(billing: FixedPlan(plan: Plan(name: "small", reviewsPerMonth: 3, tokensPerMonth: nil,
                                                                        repositories: nil, seats: nil)))
        let numbers = Array(21...28)
        for n in numbers {
            await world.github.state.addPull(FakePullRequest(repo: GitHubWorld.repo, number: n, headSHA: "h\(n)", baseSHA: "bbb000",
                                                             files: GitHubWorld.files))
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for n in numbers {
                group.addTask { _ = try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "h\(n)", number: n)) }
            }
            try await group.waitForAll()
        }
        #expect(await eventually { try await world.runs().filter { $0.state.isFinal }.count == numbers.count })
        let runs = try await world.runs()
        #expect(runs.filter { $0.state == .completed }.count == 3)
        let skipped = runs.filter { $0.state == .skipped }
        #expect(skipped.count == numbers.count - 3)
        #expect(skipped.allSatisfy { $0.reason?.hasPrefix("plan_limit:") == true })
        var posted = 0
        for n in numbers { posted += await world.github.state.reviews(on: GitHubWorld.repo, n).count }
        #expect(posted == 3)
        // 3 of 3 is past 80% once: one event for the month, however many runs crossed it.
        #expect(try await world.count("SELECT count(*) FROM events WHERE type = 'PlanSoftLimitReached'") == 1)
        await world.stop()
    }

    @Test("a repository first seen over the plan's repository limit is registered disabled, and its PRs are not reviewed")
    func repositoryLimit() async throws {
        let world = try await GitHubWorld(billing: FixedPlan(plan: Plan(name: "solo", reviewsPerMonth: nil, tokensPerMonth: nil,
                                                                        repositories: 1, seats: nil)))
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        let (status, _) = try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(
            action: "opened", head: "ccc222", number: 3, repoID: 2002, repoName: "octo-org/second"))
        #expect(status == 202)
        #expect(await eventually {
            try await world.count("SELECT count(*) FROM repositories WHERE full_name = 'octo-org/second' AND enabled = 0") == 1
        })
        #expect(try await world.count("SELECT count(*) FROM events WHERE type = 'RepositoryNotEnabled'") == 1)
        #expect(try await world.runs().count == 1)
        let refused = await #expect(throws: PlanLimitError.self) {
            try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
                try await actor.write { tx in
                    try RepositoryStore.setEnabled(true, fullName: "octo-org/second",
                                                   plan: Plan(name: "solo", reviewsPerMonth: nil, tokensPerMonth: nil, repositories: 1, seats: nil), in: &tx)
                }
            }
        }
        #expect(refused?.message.contains("allows 1 enabled repositories and 1 are enabled") == true)
        await world.stop()
    }
}

