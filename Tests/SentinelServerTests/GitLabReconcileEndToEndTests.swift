import Foundation
import GRDB
import Logging
import SentinelCore
import SentinelServer
import SentinelTestSupport
import Testing

/// Catch-up after downtime on GitLab: the open-merge-request sweep against the loopback GitLab,
/// through Sentinel's real stack.
@Suite("GitLab catch-up after downtime (reconcile)", .serialized)
struct GitLabReconcileEndToEndTests {
    /// The world's project registered as a webhook would have registered it while Sentinel was up.
    static func registerProject(_ world: GitLabWorld, id: Int64? = nil, path: String? = nil) async throws {
        let integration = try #require(IntegrationID(world.integration.id))
        let (externalID, name) = (id ?? world.project.id, path ?? world.project.path)
        try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await actor.write { tx in
                _ = try RepositoryStore.register(integrationID: integration, externalID: externalID, fullName: name, installationID: nil, in: &tx)
            }
        }
    }

    static func sweep(_ world: GitLabWorld, _ options: ReconcileOptions) async throws -> [IntegrationSweep] {
        let reconciler = Reconciler(connectors: ["gitlab": world.appliance.gitLabConnector], options: options)
        return try await world.appliance.supervisor.withWorkspace(world.workspace) { try await reconciler.sweep($0, logger: Logger(label: "test")) }
    }

    func count(_ world: GitLabWorld, _ sql: String) async throws -> Int {
        try await world.appliance.supervisor.withWorkspace(world.workspace) { try await $0.read { db in try Int.fetchOne(db, sql: sql) ?? 0 } }
    }

    @Test("a merge request opened while Sentinel was down gets exactly one review from the sweep; the late webhook for that head creates nothing")
    func sweepThenLateWebhook() async throws {
        let world = try await GitLabWorld()
        try await Self.registerProject(world)
        let report = await world.appliance.reconcile.sweepAll()
        let sweep = try #require(report.integrations.first)
        #expect(sweep.platform == "GitLab")
        #expect(sweep.outcome == "complete", "\(sweep)")
        #expect(sweep.pullRequestsFound == 1)
        #expect(sweep.reviewsRequested.map(\.prNumber) == [3])
        #expect(sweep.reviewsRequested.map(\.headSHA) == ["aaa111"])
        #expect(sweep.redeliveries.isEmpty)
        #expect(await world.waitForFinished(1))
        let run = try #require(try await world.runs().first)
        #expect(run.trigger == "reconcile")
        #expect(run.state == .completed, "\(run.reason ?? "")")
        #expect(await world.summaryNotes().count == 1)
        #expect(await world.gitlab.state.statusStates(project: world.project.id, sha: "aaa111", name: "Sentinel") == ["pending", "running", "failed"])
        #expect(await world.gitlab.state.requests.contains { $0.route == "GET merge_requests" && $0.target.contains("state=opened") })

        // GitLab's late webhook for the same head (it retries a hook that failed while Sentinel was down).
        let mr = try await world.mergeRequest()
        let uuid = UUID().uuidString
        #expect(try await world.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(action: "open", mr: mr, project: world.project), uuid: uuid).0 == 202)
        #expect(await eventually {
            try await count(world, "SELECT count(*) FROM deliveries WHERE processed_at IS NOT NULL") == 1
        })
        #expect(try await world.runs().count == 1)
        #expect(await world.summaryNotes().count == 1)
        // And a second sweep finds nothing to do.
        #expect(await world.appliance.reconcile.sweepAll().integrations.first?.reviewsRequested.isEmpty == true)
        #expect(try await world.runs().count == 1)
        let buffer = String(decoding: world.appliance.prometheus.emitToBuffer(), as: UTF8.self)
        #expect(buffer.contains(#"sentinel_reconcile_sweeps_total{platform="gitlab",outcome="complete"} 2"#), "\(buffer)")
        #expect(buffer.contains(#"sentinel_reconcile_pull_requests_found_total{platform="gitlab"} 2"#))
        #expect(buffer.contains(#"sentinel_reconcile_reviews_requested_total{platform="gitlab"} 1"#))
        await world.stop()
    }

    @Test("a token GitLab says expires within 14 days is recorded once a day (IntegrationCredentialsExpiring); a dry run or a later expiry records nothing")
    func expiringTokenNoticed() async throws {
        let world = try await GitLabWorld()
        func day(_ days: Double) -> String { String(ISO8601.string(Date().addingTimeInterval(days * 86_400)).prefix(10)) }
        func expiring() async throws -> [[String: String]] {
            try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
                try await actor.read { db in
                    try String.fetchAll(db, sql: "SELECT data FROM events WHERE type = 'IntegrationCredentialsExpiring' ORDER BY seq").map {
                        try JSONDecoder().decode([String: String].self, from: Data($0.utf8))
                    }
                }
            }
        }
        await world.gitlab.state.setTokenExpiry(FakeGitLab.token, day(100))
        _ = try await Self.sweep(world, ReconcileOptions(dryRun: false))
        #expect(try await expiring().isEmpty, "100 days ahead: nothing to say yet")

        await world.gitlab.state.setTokenExpiry(FakeGitLab.token, day(10))
        _ = try await Self.sweep(world, ReconcileOptions(dryRun: true))
        #expect(try await expiring().isEmpty, "a dry run writes nothing")
        _ = try await Self.sweep(world, ReconcileOptions(dryRun: false))
        _ = try await Self.sweep(world, ReconcileOptions(dryRun: false))
        let events = try await expiring()
        #expect(events.count == 1, "once a day, however often the sweep runs: \(events)")
        #expect(events.first?["integration"] == world.integration.id && events.first?["platform"] == "GitLab", "\(events)")
        #expect(events.first?["expires_at"]?.hasPrefix(day(10)) == true && events.first?["days"] == "9", "\(events)")
        await world.stop()
    }

    @Test("a push while down is reviewed by the sweep; a head the webhook already reviewed gets nothing")
    func webhookThenPushWhileDown() async throws {
        let world = try await GitLabWorld()
        let mr = try await world.mergeRequest()
        #expect(try await world.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(action: "open", mr: mr, project: world.project)).0 == 202)
        #expect(await world.waitForFinished(1))
        let first = try #require(await world.appliance.reconcile.sweepAll().integrations.first)
        #expect(first.pullRequestsFound == 1)
        #expect(first.reviewsRequested.isEmpty)

        await world.gitlab.state.pushMergeRequest(project: world.project.id, iid: 3, headSHA: "ccc222", files: GitLabWorld.files)
        await world.gitlab.state.setComparison(project: world.project.id, from: "aaa111", to: "ccc222", files: [])
        let second = try #require(await world.appliance.reconcile.sweepAll().integrations.first)
        #expect(second.reviewsRequested.map(\.headSHA) == ["ccc222"])
        #expect(await world.waitForFinished(2))
        #expect(try await world.runs().map(\.trigger).sorted() == ["opened", "reconcile"])
        #expect(try await world.runs().allSatisfy { $0.state == .completed })
        await world.stop()
    }

    @Test("closed and merged merge requests are not listed; a draft's catch-up run is skipped by the policy, and marking it ready reviews it")
    func closedAndDrafts() async throws {
        let world = try await GitLabWorld()
        try await Self.registerProject(world)
        let state = world.gitlab.state
        await state.addMergeRequest(FakeGitLabMergeRequest(project: world.project.id, iid: 4, headSHA: "ddd444", baseSHA: "bbb000", state: "closed",
                                                           files: GitLabWorld.files))
        await state.addMergeRequest(FakeGitLabMergeRequest(project: world.project.id, iid: 5, headSHA: "eee555", baseSHA: "bbb000", state: "merged",
                                                           files: GitLabWorld.files))
        // A `Draft:` title is a draft to GitLab (it sets the flag from the title).
        await state.addMergeRequest(FakeGitLabMergeRequest(project: world.project.id, iid: 6, headSHA: "fff666", baseSHA: "bbb000",
                                                           title: "Draft: rework", files: GitLabWorld.files))
        let report = try #require(try await Self.sweep(world, ReconcileOptions()).first)
        #expect(report.pullRequestsFound == 2)
        #expect(report.reviewsRequested.map(\.prNumber) == [3, 6])
        #expect(await world.waitForFinished(2))
        #expect(try await world.runs().first { $0.prNumber == 6 }?.state == .skipped)
        #expect(try await world.runs().first { $0.prNumber == 3 }?.state == .completed)
        #expect(await state.notes(project: world.project.id, iid: 6).filter { $0.body.hasPrefix("<!-- sentinel:run:") }.isEmpty)

        await state.updateMergeRequest(project: world.project.id, iid: 6, title: "Rework", draft: false)
        let ready = try #require(await state.mergeRequest(project: world.project.id, iid: 6))
        #expect(try await world.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(
            action: "update", mr: ready, project: world.project, changes: GitLabHookChanges(draft: (previous: true, current: false)))).0 == 202)
        #expect(await world.waitForFinished(3))
        #expect(try await world.runs().first { $0.prNumber == 6 && $0.trigger == "ready_for_review" }?.state == .completed)
        await world.stop()
    }

    @Test("the open merge requests are read page by page, following GitLab's X-Next-Page; a disabled project is not listed")
    func pages() async throws {
        let world = try await GitLabWorld()
        try await Self.registerProject(world)
        for iid in 100..<250 {
            await world.gitlab.state.addMergeRequest(FakeGitLabMergeRequest(project: world.project.id, iid: iid, headSHA: "h\(iid)", baseSHA: "bbb000",
                                                                            files: GitLabWorld.files))
        }
        await world.gitlab.state.updateMergeRequest(project: world.project.id, iid: 100, state: "closed")
        let report = try #require(try await Self.sweep(world, ReconcileOptions(maxReviewsPerSweep: 0, dryRun: true)).first)
        #expect(report.pullRequestsFound == 150)  // 149 still open + !3
        #expect(report.outcome == "cap_reached")
        #expect(await world.gitlab.state.count("GET merge_requests") == 2)

        // A second project whose repository was disabled: never listed.
        await world.gitlab.state.addProject(id: 88, path: "acme/api")
        try await Self.registerProject(world, id: 88, path: "acme/api")
        try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await actor.write { tx in try tx.db.execute(sql: "UPDATE repositories SET enabled = 0 WHERE external_id = 88") }
        }
        _ = try await Self.sweep(world, ReconcileOptions(maxReviewsPerSweep: 0, dryRun: true))
        #expect(await world.gitlab.state.requests.filter { $0.route == "GET merge_requests" && $0.target.contains("/projects/88/") }.isEmpty)
        await world.stop()
    }

    @Test("the cap bounds the reviews one sweep requests; the next sweep requests the rest; a dry run requests and stores nothing")
    func capAndDryRun() async throws {
        let world = try await GitLabWorld()
        try await Self.registerProject(world)
        await world.gitlab.state.addMergeRequest(FakeGitLabMergeRequest(project: world.project.id, iid: 8, headSHA: "eee444", baseSHA: "bbb000",
                                                                        files: GitLabWorld.files))
        let dry = try #require(try await Self.sweep(world, ReconcileOptions(dryRun: true)).first)
        #expect(dry.reviewsRequested.map(\.prNumber) == [3, 8])
        #expect(dry.reviewsRequested.allSatisfy { $0.runID == nil })
        #expect(try await count(world, "SELECT count(*) FROM review_runs") == 0)
        #expect(try await count(world, "SELECT count(*) FROM reconcile_state") == 0)

        let first = try #require(try await Self.sweep(world, ReconcileOptions(maxReviewsPerSweep: 1)).first)
        #expect(first.outcome == "cap_reached")
        #expect(first.reviewsRequested.map(\.prNumber) == [3])
        let second = try #require(try await Self.sweep(world, ReconcileOptions(maxReviewsPerSweep: 1)).first)
        #expect(second.outcome == "complete")
        #expect(second.reviewsRequested.map(\.prNumber) == [8])
        #expect(try await count(world, "SELECT count(*) FROM review_runs WHERE trigger = 'reconcile'") == 2)
        await world.stop()
    }

    @Test("the sweep stops when too little of GitLab's rate limit is left (RateLimit-Remaining) and does not call GitLab before RateLimit-Reset")
    func rateBudgetStopsTheSweep() async throws {
        let world = try await GitLabWorld()
        try await Self.registerProject(world)
        await world.gitlab.state.addProject(id: 88, path: "acme/api")
        try await Self.registerProject(world, id: 88, path: "acme/api")
        let reset = Int(Date().timeIntervalSince1970) + 1800
        // 20 of 100 left: the first project's listing answers with 19 left (below 0.2), the second is not listed.
        await world.gitlab.state.setRateLimit(limit: 100, remaining: 20, reset: reset)
        let report = try #require(try await Self.sweep(world, ReconcileOptions(minRateRemaining: 0.2)).first)
        #expect(report.outcome == "rate_limited", "\(report)")
        #expect(report.reviewsRequested.map(\.repository) == [world.project.path])
        #expect(abs((report.resumeAt?.timeIntervalSince1970 ?? 0) - Double(reset)) < 2)
        #expect(await world.gitlab.state.count("GET merge_requests") == 1)

        let paused = try #require(try await Self.sweep(world, ReconcileOptions(minRateRemaining: 0.2)).first)
        #expect(paused.outcome == "paused")
        #expect(await world.gitlab.state.count("GET merge_requests") == 1)
        await world.stop()
    }

    @Test("GitLab's 429 stops the sweep until its Retry-After; nothing is requested")
    func throttledHonoursRetryAfter() async throws {
        let world = try await GitLabWorld()
        try await Self.registerProject(world)
        let reset = Int(Date().timeIntervalSince1970) + 900
        await world.gitlab.state.setRateLimit(limit: 100, remaining: 0, reset: reset)
        let report = try #require(try await Self.sweep(world, ReconcileOptions(minRateRemaining: 0)).first)
        #expect(report.outcome == "rate_limited", "\(report)")
        let resume = try #require(report.resumeAt)
        #expect(abs(resume.timeIntervalSince1970 - Double(reset)) < 5)
        #expect(try await count(world, "SELECT count(*) FROM review_runs") == 0)
        let stored = try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await actor.read { db in try Double.fetchOne(db, sql: "SELECT resume_at FROM reconcile_state") }
        }
        #expect(abs((stored ?? 0) - Double(reset)) < 5)
        await world.stop()
    }

    @Test("a revoked token ends the sweep with GitLab's 401 as the reason and requests nothing; the fake refuses the listing without a valid token")
    func revokedToken() async throws {
        let world = try await GitLabWorld()
        try await Self.registerProject(world)
        let http = try AsyncOutboundHTTPClient()
        let url = world.gitlab.apiURL.appendingPathComponent("projects/\(world.project.id)/merge_requests")
        do {
            let anonymous = try await http.send(OutboundRequest(url: url))
            #expect(anonymous.status == 401)
            let wrong = try await http.send(OutboundRequest(url: url, headers: [("PRIVATE-TOKEN", "glpat-not-a-token")]))
            #expect(wrong.status == 401)
            var bogus = try #require(URLComponents(url: url, resolvingAgainstBaseURL: false))
            bogus.queryItems = [URLQueryItem(name: "state", value: "bogus")]
            let valid = try await http.send(OutboundRequest(url: try #require(bogus.url), headers: [("PRIVATE-TOKEN", FakeGitLab.token)]))
            #expect(valid.status == 400)
        } catch {
            Issue.record(error)  // the client is shut down all the same
        }
        await http.shutdown()

        await world.gitlab.state.revokeToken(FakeGitLab.token)
        let report = try #require(try await Self.sweep(world, ReconcileOptions()).first)
        #expect(report.outcome == "error")
        #expect(report.stopped?.contains("HTTP 401") == true, "\(report)")
        #expect(try await count(world, "SELECT count(*) FROM review_runs") == 0)
        await world.stop()
    }

    @Test("sentinel reconcile --dry-run --json beside the running server lists the GitLab merge request; without --dry-run the server reviews it")
    func command() async throws {
        let world = try await GitLabWorld()
        try await Self.registerProject(world)
        let data = world.directory.path
        let dry = try await SentinelProcess.run(["reconcile", "--data-dir", data, "--workspace", "acme", "--dry-run", "--json"])
        #expect(dry.status == 0, "\(dry.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(dry.stdout.utf8)) as? [String: Any])
        let sweeps = try #require(object["integrations"] as? [[String: Any]])
        #expect(sweeps.first?["platform"] as? String == "GitLab")
        #expect((sweeps.first?["reviews_requested"] as? [[String: Any]])?.first?["pr_number"] as? Int == 3)
        #expect(try await world.runs().isEmpty)

        let real = try await SentinelProcess.run(["reconcile", "--data-dir", data])
        #expect(real.status == 0, "\(real.stderr)")
        #expect(real.stdout.contains("(GitLab): complete"), "\(real.stdout)")
        #expect(real.stdout.contains("review \(world.project.path)#3 at aaa111"), "\(real.stdout)")
        #expect(await world.waitForFinished(1))
        #expect(await world.summaryNotes().count == 1)
        await world.stop()
    }
}
