import Foundation
import GRDB
import Logging
import SentinelCore
import SentinelServer
import SentinelTestSupport
import Testing

/// Catch-up after downtime: the sweep against the loopback GitHub, through Sentinel's real stack.
@Suite("Catch-up after downtime (reconcile)", .serialized)
struct ReconcileEndToEndTests {
    /// The repository of PR 7 registered as an installation event would (while Sentinel was up).
    static func registerRepository(_ world: GitHubWorld, externalID: Int64 = 1001, name: String = GitHubWorld.repo) async throws {
        let integration = try #require(IntegrationID(world.integration.id))
        try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await actor.write { tx in
                _ = try RepositoryStore.register(integrationID: integration, externalID: externalID, fullName: name, installationID: 55, in: &tx)
            }
        }
    }

    static func installationPayload() -> Data {
        try! JSONSerialization.data(withJSONObject: [
            "action": "created", "installation": ["id": 55],
            "repositories": [["id": 1001, "full_name": GitHubWorld.repo]]] as [String: Any])
    }

    /// A sweep with other options than the appliance's own, over the world's workspace.
    static func sweep(_ world: GitHubWorld, _ options: ReconcileOptions) async throws -> [IntegrationSweep] {
        let reconciler = Reconciler(connectors: ["github": world.appliance.connector], options: options)
        return try await world.appliance.supervisor.withWorkspace(world.workspace) { try await reconciler.sweep($0, logger: Logger(label: "test")) }
    }

    func processed(_ world: GitHubWorld, _ delivery: String) async -> Bool {
        await eventually {
            try await world.count("SELECT count(*) FROM deliveries WHERE id = '\(delivery)' AND processed_at IS NOT NULL") == 1
        }
    }

    @Test("a PR opened while Sentinel was down gets exactly one review from the sweep; the late webhook for that head creates nothing")
    func sweepThenLateWebhook() async throws {
        let world = try await GitHubWorld()
        try await Self.registerRepository(world)
        // The run's first call waits, so that its job is seen before its review is prepared.
        await world.github.state.inject("GET pull", [.delay(3)])
        let report = await world.appliance.reconcile.sweepAll()
        let sweep = try #require(report.integrations.first)
        #expect(sweep.outcome == "complete", "\(sweep)")
        #expect(sweep.pullRequestsFound == 1)
        #expect(sweep.reviewsRequested.map(\.prNumber) == [7])
        // The sweep's own calls carry its correlation id (they carried none), the one its run keeps.
        let listing = try #require(await world.github.state.received.first { $0.path.hasSuffix("/pulls") })
        let sweepID = try #require(listing.headers["x-request-id"], "the sweep's listing has no X-Request-ID")
        #expect(sweepID.hasPrefix("reconcile-"))
        #expect(try await world.runs().first?.correlationID == sweepID)
        // Through the normal queue at normal priority, like any review (never ahead of deliveries)
        // until its review is prepared: posting it is critical work.
        func runJobPriorities() async throws -> [Int] {
            try await world.appliance.supervisor.withWorkspace(world.workspace) { try await $0.jobs(limit: 100) }
                .filter { $0.kind == ReviewRunStore.jobKind }.map(\.priority)
        }
        #expect(try await runJobPriorities() == [JobPriority.normal.rawValue])
        #expect(await world.waitForRun(state: .completed))
        #expect(try await world.runs().map(\.trigger) == ["reconcile"])
        #expect(await world.github.state.reviews(on: GitHubWorld.repo, 7).count == 1)
        #expect(try await runJobPriorities() == [JobPriority.critical.rawValue])

        // GitHub's late (or redelivered) webhook for the same head.
        let delivery = UUID().uuidString
        let (status, _) = try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"),
                                                  delivery: delivery)
        #expect(status == 202)
        #expect(await processed(world, delivery))
        #expect(try await world.count("SELECT count(*) FROM review_runs") == 1)
        #expect(try await world.count("SELECT count(*) FROM deliveries WHERE outcome LIKE '%already exists'") == 1)
        // And a second sweep finds nothing to do.
        #expect(await world.appliance.reconcile.sweepAll().integrations.first?.reviewsRequested.isEmpty == true)
        #expect(await world.github.state.reviews(on: GitHubWorld.repo, 7).count == 1)
        await world.stop()
    }

    /// A `pull_request` delivery body with the PR's `updated_at` as GitHub sends it.
    static func pullRequestPayload(action: String, head: String, updatedAt: Date) -> Data {
        var object = try! JSONSerialization.jsonObject(with: GitHubWorld.pullRequestPayload(action: action, head: head)) as! [String: Any]
        var pull = object["pull_request"] as! [String: Any]
        pull["updated_at"] = updatedAt.formatted(.iso8601)
        object["pull_request"] = pull
        return try! JSONSerialization.data(withJSONObject: object)
    }

    @Test("a removed integration is not swept (it was, every interval: a warning and an \"unsupported\" sweep labelled removed:github)")
    func removedIntegrationNotSwept() async throws {
        let world = try await GitHubWorld()
        try await Self.registerRepository(world)
        let service = world.appliance.integrations
        let integrationID = try #require(IntegrationID(world.integration.id))
        try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await service.remove(integrationID, from: actor, by: "cli")
        }
        let sweeps = try await Self.sweep(world, ReconcileOptions(dryRun: false))
        #expect(sweeps.isEmpty, "\(sweeps)")
        #expect(await !world.github.state.requests.contains { $0.hasPrefix("GET pulls") }, "no call to GitHub for it")
        #expect(try await world.runs().isEmpty)
        await world.stop()
    }

    @Test("a resent webhook for an older head does not supersede the catch-up run of the newer head; a push after the sweep does")
    func staleWebhookAfterSweep() async throws {
        let world = try await GitHubWorld()
        try await Self.registerRepository(world)
        // While down: the PR was opened at aaa111, then pushed to ccc222.
        await world.github.state.push(repo: GitHubWorld.repo, 7, head: "ccc222")
        let report = await world.appliance.reconcile.sweepAll()
        #expect(report.integrations.first?.reviewsRequested.map(\.headSHA) == ["ccc222"])
        #expect(await world.waitForRun(state: .completed))

        // GitHub resends the `opened` of ten minutes ago.
        let resent = UUID().uuidString
        _ = try await world.deliver(event: "pull_request", body: Self.pullRequestPayload(action: "opened", head: "aaa111",
                                                                                         updatedAt: Date().addingTimeInterval(-600)), delivery: resent)
        #expect(await processed(world, resent))
        #expect(try await world.runs().map(\.state) == [.completed])
        #expect(await world.github.state.reviews(on: GitHubWorld.repo, 7).map(\.commitID) == ["ccc222"])

        // A push after the sweep is reviewed as always.
        await world.github.state.push(repo: GitHubWorld.repo, 7, head: "ddd444")
        _ = try await world.deliver(event: "pull_request", body: Self.pullRequestPayload(action: "synchronize", head: "ddd444",
                                                                                         updatedAt: Date().addingTimeInterval(2)))
        #expect(await world.waitForRun(state: .completed, count: 2))
        #expect(try await world.runs().map(\.trigger) == ["push", "reconcile"])
        #expect(await world.github.state.reviews(on: GitHubWorld.repo, 7).map(\.commitID) == ["ccc222", "ddd444"])
        await world.stop()
    }

    @Test("a head the webhook already started a run for gets nothing from the sweep; a later push does")
    func webhookThenSweep() async throws {
        let world = try await GitHubWorld()
        let (status, _) = try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(status == 202)
        #expect(await world.waitForRun(state: .completed))
        let first = await world.appliance.reconcile.sweepAll()
        #expect(first.integrations.first?.pullRequestsFound == 1)
        #expect(first.integrations.first?.reviewsRequested.isEmpty == true)
        #expect(try await world.runs().map(\.trigger) == ["opened"])

        // A push while down: the sweep reviews the new head, as the missed `synchronize` would have.
        await world.github.state.push(repo: GitHubWorld.repo, 7, head: "ccc222")
        let second = await world.appliance.reconcile.sweepAll()
        #expect(second.integrations.first?.reviewsRequested.map(\.headSHA) == ["ccc222"])
        #expect(await world.waitForRun(state: .completed, count: 2))
        #expect(try await world.runs().map(\.trigger) == ["reconcile", "opened"])
        await world.stop()
    }

    @Test("a draft's catch-up run is skipped, and ready_for_review for that head still starts its own run")
    func draftThenReady() async throws {
        let world = try await GitHubWorld()
        try await Self.registerRepository(world)
        await world.github.state.addPull(FakePullRequest(repo: GitHubWorld.repo, number: 7, headSHA: "aaa111", baseSHA: "bbb000", draft: true,
                                                         files: GitHubWorld.files))
        #expect(await world.appliance.reconcile.sweepAll().integrations.first?.reviewsRequested.count == 1)
        #expect(await world.waitForRun(state: .skipped))
        await world.github.state.addPull(FakePullRequest(repo: GitHubWorld.repo, number: 7, headSHA: "aaa111", baseSHA: "bbb000", files: GitHubWorld.files))
        _ = try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "ready_for_review", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        #expect(Set(try await world.runs().map(\.trigger)) == ["reconcile", "ready_for_review"])
        #expect(await world.github.state.reviews(on: GitHubWorld.repo, 7).count == 1)
        await world.stop()
    }

    @Test("a draft marked ready while Sentinel was down is reviewed by the next sweep (its skipped catch-up run covered the head for good); a draft still is not")
    func draftMarkedReadyWhileDown() async throws {
        let world = try await GitHubWorld()
        try await Self.registerRepository(world)
        await world.github.state.addPull(FakePullRequest(repo: GitHubWorld.repo, number: 7, headSHA: "aaa111", baseSHA: "bbb000", draft: true,
                                                         files: GitHubWorld.files))
        #expect(await world.appliance.reconcile.sweepAll().integrations.first?.reviewsRequested.count == 1)
        #expect(await world.waitForRun(state: .skipped))
        // Still a draft: nothing new, sweep after sweep.
        #expect(await world.appliance.reconcile.sweepAll().integrations.first?.reviewsRequested.isEmpty == true)
        // Marked ready while the webhook was missed.
        await world.github.state.addPull(FakePullRequest(repo: GitHubWorld.repo, number: 7, headSHA: "aaa111", baseSHA: "bbb000", files: GitHubWorld.files))
        let sweep = try #require(await world.appliance.reconcile.sweepAll().integrations.first)
        #expect(sweep.reviewsRequested.map(\.prNumber) == [7], "\(sweep)")
        #expect(await world.waitForRun(state: .completed))
        #expect(Set(try await world.runs().map(\.trigger)) == ["reconcile", "ready_for_review"])
        #expect(await world.github.state.reviews(on: GitHubWorld.repo, 7).count == 1)
        // The late webhook for it, and further sweeps, add nothing.
        _ = try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "ready_for_review", head: "aaa111"))
        #expect(await world.appliance.reconcile.sweepAll().integrations.first?.reviewsRequested.isEmpty == true)
        #expect(await eventually { try await world.count("SELECT count(*) FROM deliveries WHERE processed_at IS NOT NULL") >= 1 })
        #expect(try await world.count("SELECT count(*) FROM review_runs") == 2)
        await world.stop()
    }

    @Test("a delivery GitHub failed to hand over is redelivered once; stored or old ones are not; the cursor is kept")
    func failedDeliveryIsRedeliveredOnce() async throws {
        let world = try await GitHubWorld()
        let state = world.github.state
        // Older than GitHub's 3-day redelivery window.
        await state.addHookDelivery(guid: UUID().uuidString, event: "pull_request", action: "opened", statusCode: 0,
                                    deliveredAt: Date().addingTimeInterval(-4 * 86_400))
        // Delivered while up: stored by Sentinel.
        let stored = UUID().uuidString
        _ = try await world.deliver(event: "installation", body: Self.installationPayload(), delivery: stored)
        await state.addHookDelivery(guid: stored, event: "installation", action: "created", statusCode: 202, payload: Self.installationPayload())
        // Failed but stored all the same (Sentinel's answer was lost): nothing to resend.
        await state.addHookDelivery(guid: stored, event: "installation", action: "created", statusCode: 502)
        // While down: the PR was opened and GitHub could not connect.
        let missed = UUID().uuidString
        let payload = GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111")
        let missedID = await state.addHookDelivery(guid: missed, event: "pull_request", action: "opened", statusCode: 0, payload: payload)
        // The first redelivery fails too (Sentinel still unreachable); it must not be asked for again.
        await state.setRedeliver { _ in 503 }

        let first = try #require(await world.appliance.reconcile.sweepAll().integrations.first)
        #expect(first.redeliveries.map(\.guid) == [missed], "\(first)")
        #expect(first.redeliveries.first?.outcome == "requested")
        #expect(await state.redeliveryRequests == [missedID])
        let cursor = try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await actor.read { db in try String.fetchOne(db, sql: "SELECT delivery_cursor FROM reconcile_state") }
        }
        #expect(cursor == String(missedID))

        // The failed redelivery is a new log entry with the same guid: not asked for again.
        let second = try #require(await world.appliance.reconcile.sweepAll().integrations.first)
        #expect(second.redeliveries.isEmpty, "\(second)")
        #expect(await state.redeliveryRequests == [missedID])
        await world.stop()
    }

    @Test("a delivery another sweep is asking for (sentinel reconcile beside serve) is not asked for twice; a claim left ten minutes ago is")
    func redeliveryClaimed() async throws {
        let world = try await GitHubWorld()
        let state = world.github.state
        let (claimed, stale) = (UUID().uuidString, UUID().uuidString)
        await state.addHookDelivery(guid: claimed, event: "pull_request", action: "opened", statusCode: 0)
        let staleID = await state.addHookDelivery(guid: stale, event: "pull_request", action: "opened", statusCode: 0)
        try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await actor.write { tx in
                for (guid, age) in [(claimed, 60.0), (stale, 700.0)] {
                    try tx.db.execute(sql: """
                        INSERT INTO redelivery_requests (guid, integration_id, delivery_id, event, requested_at, outcome) VALUES (?, ?, '1', 'pull_request', ?, 'requesting')
                        """, arguments: [guid, world.integration.id, tx.now.timeIntervalSince1970 - age])
                }
            }
        }
        let report = try #require(await world.appliance.reconcile.sweepAll().integrations.first)
        #expect(report.redeliveries.map(\.guid) == [stale], "\(report)")
        #expect(await state.redeliveryRequests == [staleID])
        let outcomes = try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await actor.read { db in try String.fetchAll(db, sql: "SELECT outcome FROM redelivery_requests ORDER BY guid = ?", arguments: [stale]) }
        }
        #expect(outcomes == ["requesting", "requested"])
        // The cursor stayed below the delivery held elsewhere: when that sweep gives it up (it
        // failed, or stopped before asking), the next sweep lists it again and asks for it.
        let cursor = try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await actor.read { db in try String.fetchOne(db, sql: "SELECT delivery_cursor FROM reconcile_state") }
        }
        #expect(cursor == nil)
        try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await actor.write { tx in try tx.db.execute(sql: "DELETE FROM redelivery_requests WHERE guid = ?", arguments: [claimed]) }
        }
        let next = try #require(await world.appliance.reconcile.sweepAll().integrations.first)
        #expect(next.redeliveries.map(\.guid) == [claimed], "\(next)")
        #expect(await state.redeliveryRequests.count == 2)
        await world.stop()
    }

    @Test("a failed delivery whose resend GitHub refuses for now does not keep the others from being asked for; it is asked again by the next sweep")
    func redeliveryFailureIsThatDeliverys() async throws {
        let world = try await GitHubWorld()
        let state = world.github.state
        let ids = [await state.addHookDelivery(event: "pull_request", action: "opened", statusCode: 0),
                   await state.addHookDelivery(event: "pull_request", action: "opened", statusCode: 0)]
        await state.inject("POST hook attempts", [.status(502)])
        let report = try #require(await world.appliance.reconcile.sweepAll().integrations.first)
        let asked = await state.redeliveryRequests
        #expect(asked.count == 1, "the other was still asked for")
        let refused = try #require(ids.first { !asked.contains($0) })
        #expect(report.outcome == "error" && report.stopped?.contains("resending delivery \(refused) failed") == true, "\(report)")
        let again = try #require(await world.appliance.reconcile.sweepAll().integrations.first)
        #expect(again.outcome == "complete", "\(again)")
        #expect(await state.redeliveryRequests == asked + [refused])

        // Resending failing for every delivery (the endpoint down): three tries, then the rest
        // waits for the next sweep; the outcome says so once, not once per delivery.
        for _ in 0..<6 { await state.addHookDelivery(event: "pull_request", action: "opened", statusCode: 0) }
        await state.inject("POST hook attempts", Array(repeating: .status(502), count: 20))
        let down = try #require(await world.appliance.reconcile.sweepAll().integrations.first)
        #expect(await state.times("POST hook attempts").count == 3 + 3, "\(down)")
        #expect(down.stopped?.contains("resending 3 deliveries failed (asked again by the next sweep), and the rest waits for it; the first") == true, "\(down)")
        await world.stop()
    }

    @Test("a delivery log longer than one sweep reads: the newest are looked at and the sweep says the older ones were not (it said complete)")
    func deliveryLogBoundReported() async throws {
        let world = try await GitHubWorld()
        for _ in 0..<(GitHubReconcileSession.maxPages * 100 + 5) {
            await world.github.state.addHookDelivery(event: "ping", action: nil, statusCode: 200)
        }
        let report = try #require(try await Self.sweep(world, ReconcileOptions(dryRun: true)).first)
        #expect(report.outcome == "error", "\(report)")
        #expect(report.stopped?.contains("the webhook delivery log holds more deliveries since the last sweep than one sweep reads; the newest 3000 were looked at") == true,
                "\(report.stopped ?? "")")
        await world.stop()

        // Exactly one sweep's pages, with older deliveries read before behind them: not cut.
        let exact = try await GitHubWorld()
        for _ in 0..<5 { await exact.github.state.addHookDelivery(event: "ping", action: nil, statusCode: 200) }
        _ = try await Self.sweep(exact, ReconcileOptions())  // reads those five and keeps the cursor
        for _ in 0..<(GitHubReconcileSession.maxPages * 100) { await exact.github.state.addHookDelivery(event: "ping", action: nil, statusCode: 200) }
        let whole = try #require(try await Self.sweep(exact, ReconcileOptions(dryRun: true)).first)
        #expect(whole.outcome == "complete", "\(whole)")
        await exact.stop()
    }

    @Test("a redelivered webhook reaches Sentinel and reviews the PR; the stored cursor spares a fresh sweeper the pages already read")
    func redeliveryReviewsAndCursorIsKept() async throws {
        let world = try await GitHubWorld()
        let state = world.github.state
        _ = try await world.deliver(event: "installation", body: Self.installationPayload())
        // 150 old successful deliveries: two pages of the log.
        for _ in 0..<150 { await state.addHookDelivery(event: "check_suite", action: "requested", statusCode: 202) }
        let missed = UUID().uuidString
        await state.addHookDelivery(guid: missed, event: "pull_request", action: "opened", statusCode: 503,
                                    payload: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        await state.setRedeliver { delivery in
            (try? await world.deliver(event: delivery.event, body: delivery.payload, delivery: delivery.guid).0) ?? 0
        }
        // Catch-up of open PRs off, to see the redelivered webhook do the work.
        let options = ReconcileOptions(maxReviewsPerSweep: 0)
        let first = try #require(try await Self.sweep(world, options).first)
        #expect(first.redeliveries.map(\.outcome) == ["requested"])
        #expect(await world.waitForRun(state: .completed))
        #expect(try await world.runs().map(\.trigger) == ["opened"])
        #expect(try await world.count("SELECT count(*) FROM deliveries WHERE id = '\(missed)'") == 1)
        let pagesFirst = await state.requests.filter { $0 == "GET hook deliveries" }.count
        #expect(pagesFirst == 2)

        // A new Reconciler (as after a restart) reads from the stored cursor: one page, nothing to do.
        let second = try #require(try await Self.sweep(world, options).first)
        #expect(second.redeliveries.isEmpty)
        #expect(await state.requests.filter { $0 == "GET hook deliveries" }.count == pagesFirst + 1)
        #expect(await state.redeliveryRequests.count == 1)
        #expect(await world.github.state.reviews(on: GitHubWorld.repo, 7).count == 1)
        await world.stop()
    }

    @Test("the fake GitHub refuses the delivery log without an App JWT and an unknown delivery id, as GitHub does")
    func fakeRefusesWhatGitHubRefuses() async throws {
        let world = try await GitHubWorld()
        let http = try AsyncOutboundHTTPClient()
        let base = world.github.baseURL
        let anonymous = try await http.send(OutboundRequest(url: base.appendingPathComponent("app/hook/deliveries")))
        #expect(anonymous.status == 401)
        let tokens = GitHubTokenCache(credentials: GitHubAppCredentials(appID: world.github.appID, privateKeyPEM: world.github.privateKeyPEM,
                                                                        apiBaseURL: base), http: http)
        let installationToken = try await tokens.token(installationID: 55)
        let withToken = try await http.send(OutboundRequest(url: base.appendingPathComponent("app/hook/deliveries"),
                                                            headers: [("Authorization", "Bearer \(installationToken)")]))
        #expect(withToken.status == 401)
        let jwt = try await tokens.appJWT()
        let unknown = try await http.send(OutboundRequest(method: "POST", url: base.appendingPathComponent("app/hook/deliveries/42/attempts"),
                                                          headers: [("Authorization", "Bearer \(jwt)")]))
        #expect(unknown.status == 404)
        await http.shutdown()
        await world.stop()
    }

    @Test("the sweep stops an integration when too little of its rate limit is left, and waits for the reset")
    func rateLimitStopsTheSweep() async throws {
        let world = try await GitHubWorld()
        try await Self.registerRepository(world)
        try await Self.registerRepository(world, externalID: 1002, name: "octo-org/second")
        await world.github.state.addPull(FakePullRequest(repo: "octo-org/second", number: 3, headSHA: "ddd333", baseSHA: "bbb000", files: GitHubWorld.files))
        // 21 of 100 left: the delivery log (20 left, 0.20) and the first repository's token and
        // listing (18 left) go through; the second repository is not listed.
        await world.github.state.setRateLimit(limit: 100, remaining: 21)
        let report = try #require(await world.appliance.reconcile.sweepAll().integrations.first)
        #expect(report.outcome == "rate_limited", "\(report)")
        #expect(report.reviewsRequested.map(\.repository) == [GitHubWorld.repo])
        #expect(report.resumeAt != nil)
        #expect(await world.github.state.requests.filter { $0 == "GET pulls" }.count == 1)

        // The next sweep does not call GitHub before the reset.
        let before = await world.github.state.requests.filter { $0 == "GET pulls" || $0 == "GET hook deliveries" }.count
        let paused = try #require(await world.appliance.reconcile.sweepAll().integrations.first)
        #expect(paused.outcome == "paused")
        #expect(await world.github.state.requests.filter { $0 == "GET pulls" || $0 == "GET hook deliveries" }.count == before)
        await world.stop()
    }

    @Test("a 403 rate-limit answer stops the sweep until GitHub's x-ratelimit-reset")
    func exhaustedRateLimitHonoursReset() async throws {
        let world = try await GitHubWorld()
        try await Self.registerRepository(world)
        let reset = Int(Date().timeIntervalSince1970) + 1800
        await world.github.state.setRateLimit(limit: 100, remaining: 0, reset: reset)
        let report = try #require(try await Self.sweep(world, ReconcileOptions(minRateRemaining: 0)).first)
        #expect(report.outcome == "rate_limited", "\(report)")
        let resume = try #require(report.resumeAt)
        #expect(abs(resume.timeIntervalSince1970 - Double(reset)) < 5)
        #expect(try await world.count("SELECT count(*) FROM review_runs") == 0)
        await world.stop()
    }

    @Test("a push whose webhook arrives while the sweep reads the listing keeps its run: the sweep's stale head neither supersedes it nor gets a run")
    func webhookDuringTheListing() async throws {
        let world = try await GitHubWorld()
        try await Self.registerRepository(world)
        // The listing says aaa111 (PR 7 as opened while down); as it is read, a push to ccc222 is
        // delivered and its run made.
        let connector = ListingHook(inner: world.appliance.connector) {
            await world.github.state.push(repo: GitHubWorld.repo, 7, head: "ccc222")
            _ = try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "synchronize", head: "ccc222"))
            #expect(await eventually { try await world.count("SELECT count(*) FROM review_runs WHERE head_sha = 'ccc222'") == 1 })
        }
        let reconciler = Reconciler(connectors: ["github": connector], options: ReconcileOptions())
        let report = try #require(try await world.appliance.supervisor.withWorkspace(world.workspace) {
            try await reconciler.sweep($0, logger: Logger(label: "test"))
        }.first)
        #expect(report.outcome == "complete" && report.reviewsRequested.isEmpty, "\(report)")
        #expect(await world.waitForRun(state: .completed))
        #expect(try await world.runs().map(\.headSHA) == ["ccc222"])
        #expect(await world.github.state.reviews(on: GitHubWorld.repo, 7).map(\.commitID) == ["ccc222"])
        // The next sweep sees the head reviewed.
        #expect(await world.appliance.reconcile.sweepAll().integrations.first?.reviewsRequested.isEmpty == true)
        await world.stop()
    }

    @Test("an entry of the listing GitHub serves broken (a null head) is passed over; the repository's other pull requests are swept")
    func brokenEntryPassedOver() async throws {
        let world = try await GitHubWorld()
        try await Self.registerRepository(world)
        var broken = FakePullRequest(repo: GitHubWorld.repo, number: 9, headSHA: "eee999", baseSHA: "bbb000", files: GitHubWorld.files)
        broken.nullHeadSHA = true
        await world.github.state.addPull(broken)
        let report = try #require(try await Self.sweep(world, ReconcileOptions(dryRun: true)).first)
        #expect(report.outcome == "complete", "\(report)")
        #expect(report.reviewsRequested.map(\.prNumber) == [7], "\(report)")
        await world.stop()
    }

    @Test("more open pull requests than one sweep lists: the newest are swept and the sweep says the older ones were not (it said complete)")
    func listingBoundReported() async throws {
        let world = try await GitHubWorld()
        try await Self.registerRepository(world)
        let count = GitHubReconcileSession.maxPages * 100 + 1
        for number in 100..<(100 + count) {
            await world.github.state.addPull(FakePullRequest(repo: GitHubWorld.repo, number: number, headSHA: "h\(number)", baseSHA: "bbb000",
                                                             files: GitHubWorld.files))
        }
        let report = try #require(try await Self.sweep(world, ReconcileOptions(maxReviewsPerSweep: 10_000, dryRun: true)).first)
        #expect(report.pullRequestsFound == GitHubReconcileSession.maxPages * 100)
        #expect(report.outcome == "error", "\(report)")
        #expect(report.stopped?.contains("\(GitHubWorld.repo): more open pull requests than one sweep lists; the newest 3000 were swept") == true,
                "\(report.stopped ?? "")")
        await world.stop()
    }

    @Test("a delivery log whose next link names a page already read is read once (one sweep sent the same request 30 times)")
    func loopingDeliveryLogReadOnce() async throws {
        let world = try await GitHubWorld()
        try await Self.registerRepository(world)
        await world.github.state.setLoopingDeliveriesLink(true)
        let report = try #require(try await Self.sweep(world, ReconcileOptions(dryRun: true)).first)
        #expect(report.outcome == "complete", "\(report)")
        #expect(await world.github.state.requests.filter { $0 == "GET hook deliveries" }.count == 1)
        await world.stop()
    }

    @Test("a repository renamed while Sentinel was down (GitHub answers 301 for the old name) is listed by its id and swept")
    func renamedRepositoryListedByID() async throws {
        let world = try await GitHubWorld()
        try await Self.registerRepository(world)
        await world.github.state.setRepositoryID(1001, for: GitHubWorld.repo)
        await world.github.state.inject("GET pulls", [.status(301)])
        let report = try #require(try await Self.sweep(world, ReconcileOptions(dryRun: true)).first)
        #expect(report.outcome == "complete", "\(report)")
        #expect(report.reviewsRequested.map(\.prNumber) == [7], "\(report)")
        #expect(await world.github.state.requests.filter { $0 == "GET pulls by id" }.count == 1)
        await world.stop()
    }

    @Test("a repository renamed while Sentinel was down takes its new name from the sweep, and the review it requests is posted there")
    func renamedRepositoryReviewedUnderItsNewName() async throws {
        let world = try await GitHubWorld()
        try await Self.registerRepository(world)
        let renamed = "octo-org/hello-world-2"
        await world.github.state.setRepositoryID(1001, for: renamed)
        await world.github.state.addPull(FakePullRequest(repo: renamed, number: 8, headSHA: "ddd444", baseSHA: "bbb000", files: GitHubWorld.files))
        await world.github.state.inject("GET pulls", [.status(301)])
        let report = try #require(try await Self.sweep(world, ReconcileOptions(redeliver: false)).first)
        #expect(report.reviewsRequested.map(\.repository) == [renamed], "\(report)")
        #expect(await world.waitForRun(state: .completed))
        #expect(await world.github.state.reviews(on: renamed, 8).count == 1)
        let name = try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await actor.read { db in try String.fetchOne(db, sql: "SELECT full_name FROM repositories WHERE external_id = 1001") }
        }
        #expect(name == renamed)
        await world.stop()
    }

    @Test("a sweep stopped by a rate limit still reports the repositories that failed before it")
    func problemsKeptWhenRateLimited() async throws {
        let world = try await GitHubWorld()
        try await Self.registerRepository(world, externalID: 1000, name: "acme/gone")
        try await Self.registerRepository(world)
        await world.github.state.inject("GET pulls", [.status(404), .rateLimited(retryAfter: 90)])
        let report = try #require(try await Self.sweep(world, ReconcileOptions(redeliver: false)).first)
        #expect(report.outcome == "rate_limited", "\(report)")
        #expect(report.stopped?.contains("acme/gone: ") == true, "\(report.stopped ?? "")")
        // And it counts as failed (`sentinel reconcile` exits 1): it exited 0 under the rate limit.
        #expect(report.problems.count == 1 && report.problems[0].hasPrefix("acme/gone: ") && report.failed, "\(report.problems)")
        // `reconcile --json` prints them under `problems`, as the README says (the key was left out).
        let json = try #require(try JSONSerialization.jsonObject(with: JSONEncoder().encode(report)) as? [String: Any])
        #expect((json["problems"] as? [String])?.first?.hasPrefix("acme/gone: ") == true, "\(json)")
        await world.stop()
    }

    @Test("the open pull requests are read page by page, following GitHub's Link header")
    func pagesOfPullRequests() async throws {
        let world = try await GitHubWorld()
        try await Self.registerRepository(world)
        for number in 100..<(100 + 150) {
            await world.github.state.addPull(FakePullRequest(repo: GitHubWorld.repo, number: number, headSHA: "h\(number)", baseSHA: "bbb000",
                                                             files: GitHubWorld.files))
        }
        await world.github.state.closePull(repo: GitHubWorld.repo, 100)
        let report = try #require(try await Self.sweep(world, ReconcileOptions(maxReviewsPerSweep: 0, dryRun: true)).first)
        #expect(report.pullRequestsFound == 150)  // 149 still open + PR 7
        #expect(await world.github.state.requests.filter { $0 == "GET pulls" }.count == 2)
        await world.stop()
    }

    @Test("a next link back to a page already read ends the listing: each open pull request counts once (it was read 30 times and counted 30 times)")
    func loopingLinkReadOnce() async throws {
        let world = try await GitHubWorld()
        try await Self.registerRepository(world)
        await world.github.state.setLoopingPullsLink(true)
        let report = try #require(try await Self.sweep(world, ReconcileOptions(dryRun: true)).first)
        #expect(report.pullRequestsFound == 1 && report.reviewsRequested.map(\.prNumber) == [7], "\(report)")
        #expect(await world.github.state.requests.filter { $0 == "GET pulls" }.count == 1)
        await world.stop()
    }

    @Test("a repository GitHub refuses, or a delivery log it will not show, is reported by name and the other repositories are still swept")
    func oneRefusalDoesNotStopTheSweep() async throws {
        let world = try await GitHubWorld()
        try await Self.registerRepository(world, externalID: 1000, name: "acme/gone")
        try await Self.registerRepository(world)
        // acme/gone (listed first) was removed while Sentinel was down; the App lacks the delivery log's permission.
        await world.github.state.inject("GET pulls", [.status(404)])
        await world.github.state.inject("GET hook deliveries", [.status(403)])
        let report = try #require(try await Self.sweep(world, ReconcileOptions()).first)
        #expect(report.outcome == "error", "\(report)")
        let stopped = report.stopped ?? ""
        #expect(stopped.contains("acme/gone: ") && stopped.contains("reconcile.redeliver: false"), "\(stopped)")
        #expect(report.reviewsRequested.map(\.repository) == [GitHubWorld.repo] && report.reviewsRequested.map(\.prNumber) == [7], "\(report)")
        #expect(await world.waitForRun(state: .completed))
        await world.stop()
    }

    @Test("the cap bounds the reviews one sweep requests; the next sweep requests the rest")
    func capPerSweep() async throws {
        let world = try await GitHubWorld()
        try await Self.registerRepository(world)
        await world.github.state.addPull(FakePullRequest(repo: GitHubWorld.repo, number: 8, headSHA: "eee444", baseSHA: "bbb000", files: GitHubWorld.files))
        let first = try #require(try await Self.sweep(world, ReconcileOptions(maxReviewsPerSweep: 1)).first)
        #expect(first.outcome == "cap_reached")
        #expect(first.reviewsRequested.map(\.prNumber) == [7])
        let second = try #require(try await Self.sweep(world, ReconcileOptions(maxReviewsPerSweep: 1)).first)
        #expect(second.outcome == "complete")
        #expect(second.reviewsRequested.map(\.prNumber) == [8])
        #expect(try await world.count("SELECT count(*) FROM review_runs WHERE trigger = 'reconcile'") == 2)
        await world.stop()
    }

    @Test("a head whose runs newer pushes all superseded, pushed back to (a force-push back), is reviewed by the sweep: its check said Superseded, passing, and nothing reviewed it")
    func headPushedBackToIsSwept() async throws {
        let world = try await GitHubWorld()
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        // A push to bbb222: its run starts its check, then waits out GitHub's Retry-After.
        await world.github.state.inject("GET pull", [.rateLimited(retryAfter: 600)])
        await world.github.state.push(repo: GitHubWorld.repo, 7, head: "bbb222")
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "synchronize", head: "bbb222", before: "aaa111"))
        #expect(await eventually {
            try await world.count("SELECT count(*) FROM jobs WHERE idempotency_key = 'run:2' AND state = 'queued' AND attempts >= 1") == 1
        })
        // A push to ccc333 supersedes it; then the branch is forced back to bbb222, whose push webhook names a run that exists.
        await world.github.state.push(repo: GitHubWorld.repo, 7, head: "ccc333")
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "synchronize", head: "ccc333", before: "bbb222"))
        #expect(await eventually { try await world.runs().contains { $0.headSHA == "ccc333" && $0.state.isFinal } })
        await world.github.state.push(repo: GitHubWorld.repo, 7, head: "bbb222", force: true)
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "synchronize", head: "bbb222", before: "ccc333"))
        #expect(await eventually { try await world.count("SELECT count(*) FROM deliveries WHERE processed_at IS NOT NULL") == 4 })
        #expect(try await world.runs().filter { $0.headSHA == "bbb222" }.map(\.state) == [.superseded])
        let report = try #require(try await Self.sweep(world, ReconcileOptions()).first)
        #expect(report.reviewsRequested.map(\.headSHA) == ["bbb222"], "\(report)")
        #expect(await eventually { try await world.runs().contains { $0.headSHA == "bbb222" && $0.trigger == "reconcile" && $0.state.isFinal } })
        // Swept once: the next sweep requests nothing more for it.
        #expect(try await Self.sweep(world, ReconcileOptions()).first?.reviewsRequested.isEmpty == true)
        await world.stop()
    }

    @Test("a dry run reports what it would request and requests and stores nothing")
    func dryRun() async throws {
        let world = try await GitHubWorld()
        try await Self.registerRepository(world)
        await world.github.state.addHookDelivery(event: "pull_request", action: "synchronize", statusCode: 500)
        let report = try #require(try await Self.sweep(world, ReconcileOptions(dryRun: true)).first)
        #expect(report.reviewsRequested.map(\.prNumber) == [7])
        #expect(report.reviewsRequested.first?.runID == nil)
        #expect(report.redeliveries.map(\.outcome) == ["would request"])
        #expect(await world.github.state.redeliveryRequests.isEmpty)
        #expect(try await world.count("SELECT count(*) FROM review_runs") == 0)
        #expect(try await world.count("SELECT count(*) FROM reconcile_state") == 0)
        #expect(try await world.count("SELECT count(*) FROM redelivery_requests") == 0)
        await world.stop()
    }

    @Test("sentinel reconcile --dry-run --json beside the running server prints the sweep; without --dry-run the server reviews; a sweep that fails exits 1")
    func command() async throws {
        let world = try await GitHubWorld()
        try await Self.registerRepository(world)
        let data = world.directory.path
        let dry = try await SentinelProcess.run(["reconcile", "--data-dir", data, "--workspace", "acme", "--dry-run", "--json"])
        #expect(dry.status == 0, "\(dry.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(dry.stdout.utf8)) as? [String: Any])
        #expect(object["dry_run"] as? Bool == true)
        let sweeps = try #require(object["integrations"] as? [[String: Any]])
        #expect((sweeps.first?["reviews_requested"] as? [[String: Any]])?.first?["pr_number"] as? Int == 7)
        #expect(try await world.count("SELECT count(*) FROM review_runs") == 0)

        let real = try await SentinelProcess.run(["reconcile", "--data-dir", data])
        #expect(real.status == 0, "\(real.stderr)")
        #expect(real.stdout.contains("1 reviews requested"), "\(real.stdout)")
        #expect(real.stdout.contains("review \(GitHubWorld.repo)#7 at aaa111"))
        #expect(await world.waitForRun(state: .completed))
        #expect(await world.github.state.reviews(on: GitHubWorld.repo, 7).count == 1)

        // A sweep that fails is reported, and the command exits 1 for cron and scripts (it exited 0).
        await world.github.state.inject("GET pulls", Array(repeating: .status(404), count: 10))
        let failed = try await SentinelProcess.run(["reconcile", "--data-dir", data])
        #expect(failed.status == 1, "\(failed.stdout) \(failed.stderr)")
        #expect(failed.stdout.contains("(GitHub): error — "), "\(failed.stdout)")
        await world.stop()
    }

    @Test("serve sweeps by itself at start when reconcile.enabled is on")
    func serviceSweepsAtStart() async throws {
        let world = try await GitHubWorld(config: { $0.reconcile.enabled = true; $0.reconcile.intervalSeconds = 5 })
        try await Self.registerRepository(world)
        #expect(await world.waitForRun(state: .completed))
        #expect(try await world.runs().map(\.trigger) == ["reconcile"])
        let buffer = String(decoding: world.appliance.prometheus.emitToBuffer(), as: UTF8.self)
        #expect(buffer.contains(#"sentinel_reconcile_sweeps_total{platform="github",outcome="complete"}"#), "\(buffer)")
        #expect(buffer.contains(#"sentinel_reconcile_pull_requests_found_total{platform="github"} 1"#))
        #expect(buffer.contains(#"sentinel_reconcile_reviews_requested_total{platform="github"} 1"#))
        // One series per platform, named as every other metric names it (the sweep's own label was "GitHub").
        #expect(!buffer.contains(#"platform="GitHub""#), "\(buffer)")
        await world.stop()
    }
}

/// A connector whose sessions run `hook` after reading a repository's listing and before the
/// sweep acts on it: what arrives meanwhile (a webhook) is newer than the listing.
struct ListingHook: ReconcileConnector {
    let inner: any ReconcileConnector
    let hook: @Sendable () async throws -> Void

    func reconcileSession(for integration: IntegrationID, in workspace: WorkspaceActor) async throws -> (any ReconcileSession)? {
        guard let session = try await inner.reconcileSession(for: integration, in: workspace) else { return nil }
        return Session(inner: session, hook: hook)
    }

    struct Session: ReconcileSession {
        let inner: any ReconcileSession
        let hook: @Sendable () async throws -> Void
        var platformName: String { inner.platformName }
        var canRedeliver: Bool { inner.canRedeliver }
        func openPullRequests(_ repository: RepositoryRecord) async throws -> OpenPullRequestList {
            let listed = try await inner.openPullRequests(repository)
            try await hook()
            return listed
        }
        func failedDeliveries(after cursor: String?, since: Date) async throws -> DeliveryLog { try await inner.failedDeliveries(after: cursor, since: since) }
        func redeliver(_ delivery: FailedDelivery) async throws { try await inner.redeliver(delivery) }
        func budget() async -> RateBudget? { await inner.budget() }
    }
}
