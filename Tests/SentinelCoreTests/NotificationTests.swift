import Crypto
import Foundation
import GRDB
import Logging
@testable import SentinelCore
import SentinelTestSupport
import Testing

@Suite("Notifications")
struct NotificationTests {
    struct Setup {
        let h: TestHarness
        let ws: WorkspaceID
        let store: NotificationStore
        let http: AsyncOutboundHTTPClient
        let receiver: FakeNotificationReceiver

        func stop() async {
            await receiver.stop()
            await http.shutdown()
            await h.stop()
        }

        func add(_ kind: String, path: String, secret: String? = nil, topics: [String] = ["run.failed"], minSeverity: String? = nil) async throws -> NotificationChannelSummary {
            try await h.supervisor.withWorkspace(ws) { actor in
                try await store.add(kind: kind, name: "\(kind) channel", url: receiver.baseURL + path, secret: secret, topics: topics,
                                    minSeverity: minSeverity, by: "test", in: actor)
            }
        }

        /// Appends `count` failed-run events in one transaction (their listener jobs are enqueued with them).
        func failRuns(_ count: Int, state: String = "failed", findings: [FindingCount]? = nil, reason: String = "GitHub answered 502") async throws {
            try await h.supervisor.withWorkspace(ws) { actor in
                try await actor.write { tx in
                    for i in 1...count {
                        try tx.append(DomainEvent(type: "RunCompleted", subject: "run:\(i)", payload: RunEventPayload(
                            runID: Int64(i), repository: "acme/api", prNumber: i, headSHA: "abc", trigger: "opened", state: state,
                            reason: state == "failed" ? reason : nil, findingCounts: findings)))
                    }
                }
            }
        }

        func pending() async throws -> Int {
            try await h.supervisor.withWorkspace(ws) { actor in
                try await actor.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM notification_pending") ?? -1 }
            }
        }
    }

    static func setup(window: TimeInterval = 0.05, maxAttempts: Int = 5, extra: (inout JobRegistry) -> Void = { _ in }) async throws -> Setup {
        let receiver = try await FakeNotificationReceiver.start()
        let http = try AsyncOutboundHTTPClient()
        var registry = JobRegistry()
        let store = NotificationStore(masterKey: MasterKey(key: SymmetricKey(size: .bits256)))
        Notifications(store: store, http: http, window: window).register(in: &registry)
        extra(&registry)
        let h = try TestHarness(config: testConfig { $0.jobs.maxAttempts = maxAttempts }, registry: registry)
        let ws = try h.createWorkspace()
        return Setup(h: h, ws: ws, store: store, http: http, receiver: receiver)
    }

    @Test("Slack, Teams and generic webhook channels each get the message in the shape their receiver accepts")
    func shapes() async throws {
        let s = try await Self.setup()
        _ = try await s.add("slack", path: "/slack/T000/B000/XXXXSECRET")
        _ = try await s.add("teams", path: "/teams/workflows/abc?sig=SECRET")
        _ = try await s.add("webhook", path: "/hook", secret: s.receiver.secret)
        try await s.failRuns(1)
        s.h.startScheduler()
        #expect(await eventually { await s.receiver.state.accepted().count == 3 })
        let slack = try #require(await s.receiver.state.accepted("/slack").first)
        #expect((slack.json["text"] as? String)?.contains("Review failed: acme/api#1 (run 1): GitHub answered 502") == true)
        #expect(await s.receiver.state.accepted("/teams").count == 1)
        let hook = try #require(await s.receiver.state.accepted("/hook").first)
        #expect(hook.json["type"] as? String == "sentinel.notification")
        #expect(hook.json["total"] as? Int == 1)
        let all = await s.receiver.state.received
        #expect(all.count == 3, "nothing was refused or sent twice")
        #expect(await eventually { try await s.pending() == 0 })

        // A channel's URL is its credential: its call's log line names the host and `/…` only
        // (the Slack token in the path was logged in full at the default level).
        let slackChannel = try await s.add("slack", path: "/slack/services/T0ABCDEF1/B0GHIJKL2/AbCdEfGhIjKlMnOpQrStUvWx")
        let log = CapturedLog()
        let tested = try await Telemetry.$logger.withValue(Logger.sentinel(label: "test", level: "info", sink: log.sink)) {
            try await s.h.supervisor.withWorkspace(s.ws) { actor in
                try await Notifications(store: s.store, http: s.http).test(slackChannel.id, by: "test", in: actor)
            }
        }
        #expect(tested.status == 200)
        let line = try #require(log.all.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .first { $0["message"] as? String == "outbound call" })
        #expect(line["path"] as? String == "/…" && line["host"] as? String == "127.0.0.1", "\(line)")
        #expect(!log.text.contains("AbCdEfGhIjKlMnOpQrStUvWx") && !log.text.contains("T0ABCDEF1"), "\(log.text)")
        await s.stop()
    }

    @Test("text from outside cannot notify a whole Slack channel or disguise a link: & < > are escaped for Slack; the generic webhook gets the text as it is")
    func slackControlSequences() async throws {
        let s = try await Self.setup()
        _ = try await s.add("slack", path: "/slack/T000/B000/XXXXSECRET")
        _ = try await s.add("webhook", path: "/hook", secret: s.receiver.secret)
        // A combining mark after < or > made one Character with it, which was not escaped.
        try await s.failRuns(1, reason: "<!channel> <@U024BE7LH> see <https://evil.example|the docs> & more <\u{301}!here>\u{301}")
        s.h.startScheduler()
        #expect(await eventually { await s.receiver.state.accepted().count == 2 })
        let slack = try #require(await s.receiver.state.accepted("/slack").first?.json["text"] as? String)
        #expect(slack.hasSuffix("(run 1): &lt;!channel&gt; &lt;@U024BE7LH&gt; see &lt;https://evil.example|the docs&gt; &amp; more &lt;\u{301}!here&gt;\u{301}"),
                "\(slack)")
        #expect(!slack.unicodeScalars.contains("<") && !slack.unicodeScalars.contains(">"))
        let hook = try #require(await s.receiver.state.accepted("/hook").first?.json["text"] as? String)
        #expect(hook.hasSuffix("(run 1): <!channel> <@U024BE7LH> see <https://evil.example|the docs> & more <\u{301}!here>\u{301}"), "\(hook)")
        await s.stop()
    }

    @Test("text from outside cannot show a disguised link or formatting in Teams: the card's text is in TextRuns, which show markdown as it is")
    func teamsMarkdownInert() async throws {
        let s = try await Self.setup()
        _ = try await s.add("teams", path: "/teams/workflow")
        let reason = "see [the fix](https://evil.example/reset) and **urgent**"
        try await s.failRuns(1, reason: reason)
        s.h.startScheduler()
        #expect(await eventually { await s.receiver.state.accepted("/teams").count == 1 })
        let teams = try #require(await s.receiver.state.accepted("/teams").first?.json)
        let card = try #require((teams["attachments"] as? [[String: Any]])?.first?["content"] as? [String: Any])
        let blocks = try #require(card["body"] as? [[String: Any]])
        #expect(blocks.allSatisfy { $0["type"] as? String == "RichTextBlock" }, "no TextBlock reads markdown: \(blocks)")
        let runs = blocks.flatMap { $0["inlines"] as? [[String: Any]] ?? [] }
        #expect(runs.allSatisfy { $0["type"] as? String == "TextRun" })
        #expect(runs.contains { ($0["text"] as? String)?.hasSuffix("(run 1): " + reason) == true }, "\(runs)")
        #expect(runs.first?["weight"] as? String == "Bolder", "the title stays bold")
        await s.stop()
    }

    @Test("the generic receiver refuses a stale timestamp and a wrong secret; a fresh signature passes")
    func signature() async throws {
        let body = Data(#"{"a":1}"#.utf8)
        let now = Date()
        let fresh = NotificationSignature.sign(body: body, secret: "s3cret-s3cret-s3cret", timestamp: Int(now.timeIntervalSince1970))
        #expect(NotificationSignature.verify(header: fresh, body: body, secret: "s3cret-s3cret-s3cret", now: now))
        #expect(!NotificationSignature.verify(header: fresh, body: body, secret: "other-secret-000000", now: now))
        #expect(!NotificationSignature.verify(header: fresh, body: Data(#"{"a":2}"#.utf8), secret: "s3cret-s3cret-s3cret", now: now))
        #expect(!NotificationSignature.verify(header: fresh, body: body, secret: "s3cret-s3cret-s3cret", now: now.addingTimeInterval(301)))

        // Through the real sender and the loopback receiver: a message signed 10 minutes ago is refused.
        let s = try await Self.setup()
        let added = try await s.add("webhook", path: "/hook", secret: s.receiver.secret)
        let channel = try #require(try await s.h.supervisor.withWorkspace(s.ws) { try await s.store.channel(added.id, in: $0) })
        let sender = Notifications(store: s.store, http: s.http)
        let message = Notifications.message([Notice(topic: .runFailed, text: "x")])
        #expect(try await sender.send(message, to: channel, now: Date().addingTimeInterval(-600)).status == 401)
        #expect(try await sender.send(message, to: channel, now: Date()).status == 204)
        await s.stop()
    }

    @Test("a burst of 50 failed runs is one message with the count")
    func coalescing() async throws {
        // The window must outlast the 50 listener jobs: under the full suite on two busy cores
        // they once took more than 3 s, and the 50th notice went into a second message.
        let s = try await Self.setup(window: 10)
        _ = try await s.add("slack", path: "/slack/T000/B000/XXXX")
        try await s.failRuns(50)
        s.h.startScheduler()
        #expect(await eventually {
            let received = await s.receiver.state.received
            return try await s.pending() == 0 && !received.isEmpty
        })
        let messages = await s.receiver.state.received
        #expect(messages.count == 1)
        let text = try #require(messages.first?.json["text"] as? String)
        #expect(text.hasPrefix("Sentinel (ws-") && text.contains("): 50 notifications (50 × review failed)"), "\(text)")
        #expect(text.contains("… and 45 more"))
        let flushes = try await s.h.jobs(in: s.ws).filter { $0.kind == Notifications.flushKind }
        #expect(flushes.count == 1)
        await s.stop()
    }

    @Test("only runs with findings at or above the channel's severity notify run.findings")
    func severityFilter() async throws {
        let s = try await Self.setup()
        _ = try await s.add("slack", path: "/slack/x", topics: ["run.findings"], minSeverity: "high")
        try await s.failRuns(1, state: "completed", findings: [FindingCount(severity: "low", category: "style", count: 4)])
        s.h.startScheduler()
        #expect(await eventually { try await s.h.jobs(in: s.ws, state: .succeeded).contains { $0.kind.hasPrefix("listener.") } })
        #expect(try await s.pending() == 0)
        try await s.failRuns(1, state: "completed", findings: [FindingCount(severity: "critical", category: "security", count: 2)])
        #expect(await eventually { await s.receiver.state.accepted().count == 1 })
        #expect((await s.receiver.state.accepted().first?.json["text"] as? String)?.contains("2 finding(s) at high or above") == true)
        await s.stop()
    }

    @Test("a destination that keeps failing is retried with backoff, then the flush job is dead and its notices dropped")
    func retriesThenDead() async throws {
        let s = try await Self.setup(maxAttempts: 3)
        await s.receiver.state.force(503)
        _ = try await s.add("slack", path: "/slack/x")
        try await s.failRuns(2)
        s.h.startScheduler()
        #expect(await eventually { try await s.h.jobs(in: s.ws, state: .dead).contains { $0.kind == Notifications.flushKind } })
        let dead = try #require(try await s.h.jobs(in: s.ws, state: .dead).first { $0.kind == Notifications.flushKind })
        #expect(dead.attempts == 3)
        #expect(dead.lastError?.contains("503") == true)
        #expect(await s.receiver.state.received.count == 3)
        #expect(await eventually { try await s.pending() == 0 })
        // The channel recovers: the next failure is delivered in a new batch.
        await s.receiver.state.force(nil)
        _ = try await s.h.supervisor.withWorkspace(s.ws) { actor in
            try await actor.write { tx in
                try tx.append(DomainEvent(type: "RunCompleted", subject: "run:9", payload: RunEventPayload(
                    runID: 9, repository: "acme/api", prNumber: 9, headSHA: "abc", trigger: "opened", state: "failed")))
            }
        }
        #expect(await eventually { await s.receiver.state.accepted().count == 1 })
        await s.stop()
    }

    @Test("a notice queued while the last attempt of a flush hangs is sent in the next batch once the channel answers, not dropped with the dead job's notices")
    func noticeDuringLastAttempt() async throws {
        let s = try await Self.setup(maxAttempts: 1)
        await s.receiver.state.force(503)
        await s.receiver.state.slow(.milliseconds(1_500))
        _ = try await s.add("slack", path: "/slack/x")
        try await s.failRuns(1)
        s.h.startScheduler()
        #expect(await eventually { try await s.h.jobs(in: s.ws, state: .running).contains { $0.kind == Notifications.flushKind } })
        // Run 2 fails while the only attempt waits for its answer.
        _ = try await s.h.supervisor.withWorkspace(s.ws) { actor in
            try await actor.write { tx in
                try tx.append(DomainEvent(type: "RunCompleted", subject: "run:2", payload: RunEventPayload(
                    runID: 2, repository: "acme/api", prNumber: 2, headSHA: "abc", trigger: "opened", state: "failed")))
            }
        }
        #expect(await eventually { try await s.pending() == 2 })
        #expect(await eventually { try await s.h.jobs(in: s.ws, state: .dead).contains { $0.kind == Notifications.flushKind } })
        await s.receiver.state.slow(nil)
        await s.receiver.state.force(nil)
        // Before: the dead job's hook dropped run 2's notice too, and nothing ever sent it.
        #expect(await eventually { await s.receiver.state.accepted().count == 1 })
        let text = try #require(await s.receiver.state.accepted().first?.json["text"] as? String)
        #expect(text.contains("acme/api#2") && !text.contains("acme/api#1"), "\(text)")
        #expect(await eventually { try await s.pending() == 0 })
        await s.stop()
    }

    @Test("a job that goes dead notifies job.dead with its kind and reason; notifications' own dead flush does not loop")
    func jobDead() async throws {
        let s = try await Self.setup(maxAttempts: 2) { $0.register("fragile") { _ in throw JobFailure.permanent("disk on fire") } }
        _ = try await s.add("slack", path: "/slack/x", topics: ["job.dead"])
        _ = try await s.h.enqueue(JobRequest(kind: "fragile"), in: s.ws)
        s.h.startScheduler()
        #expect(await eventually { await s.receiver.state.accepted().count == 1 })
        let text = try #require(await s.receiver.state.accepted().first?.json["text"] as? String)
        #expect(text.contains("Job fragile") && text.contains("disk on fire"))

        // The channel breaks; its flush goes dead; that JobDead is not turned into another notice.
        await s.receiver.state.force(500)
        _ = try await s.h.enqueue(JobRequest(kind: "fragile"), in: s.ws)
        #expect(await eventually { try await s.h.jobs(in: s.ws, state: .dead).contains { $0.kind == Notifications.flushKind } })
        #expect(await eventually { try await s.h.jobs(in: s.ws, state: .succeeded).filter { $0.kind == EventListenerRegistry.jobKind(Notifications.listener) }.count == 3 })
        #expect(await eventually { try await s.pending() == 0 })
        let flushes = try await s.h.jobs(in: s.ws).filter { $0.kind == Notifications.flushKind }
        #expect(flushes.count == 2)
        await s.stop()
    }

    @Test("list shows the destination redacted (no path, query or secret); bad input is refused with a clear error")
    func redactionAndValidation() async throws {
        let s = try await Self.setup()
        _ = try await s.add("slack", path: "/slack/T000/B000/XXXXSECRET")
        _ = try await s.add("webhook", path: "/hook?token=QUERYSECRET", secret: "a-signing-secret-value")
        let listed = try await s.h.supervisor.withWorkspace(s.ws) { try await s.store.list(in: $0) }
        #expect(listed.count == 2)
        #expect(listed.allSatisfy { $0.destination == "http://127.0.0.1:\(s.receiver.port)/…" })
        let json = String(decoding: try JSONEncoder.sentinel.encode(listed), as: UTF8.self)
        for secret in ["XXXXSECRET", "QUERYSECRET", "a-signing-secret-value"] { #expect(!json.contains(secret)) }
        let stored = try await s.h.supervisor.withWorkspace(s.ws) { actor in
            try await actor.read { db in try String.fetchAll(db, sql: "SELECT CAST(destination AS TEXT) || destination_hint FROM notification_channels") }
        }
        #expect(!stored.joined().contains("XXXXSECRET"))
        let events = try await s.h.supervisor.withWorkspace(s.ws) { actor in
            try await actor.read { db in try EventLog.read(after: 0, limit: 10, types: ["NotificationChannelAdded"], in: db) }
        }
        #expect(events.count == 2)
        #expect(!events.map(\.data).joined().contains("SECRET"))

        await #expect(throws: IntegrationError.invalid("the channel URL must be https (http only to a loopback address)")) {
            try await s.h.supervisor.withWorkspace(s.ws) { actor in
                try await s.store.add(kind: "slack", name: "x", url: "http://hooks.example.com/T/SECRET", secret: nil, topics: ["run.failed"],
                                      minSeverity: nil, by: "t", in: actor)
            }
        }
        // An IPv6 host is shown in brackets, as in a URL.
        let ipv6 = try await s.h.supervisor.withWorkspace(s.ws) { actor in
            try await s.store.add(kind: "slack", name: "v6", url: "http://[::1]:9/T/SECRET", secret: nil, topics: ["run.failed"],
                                  minSeverity: nil, by: "t", in: actor)
        }
        #expect(ipv6.destination == "http://[::1]:9/…")
        try await s.h.supervisor.withWorkspace(s.ws) { try await s.store.remove(ipv6.id, by: "t", in: $0) }
        // A port no connection can use is refused when the channel is added, without repeating the URL.
        await #expect(throws: IntegrationError.invalid("url has port 99999; a port is between 1 and 65535")) {
            try await s.h.supervisor.withWorkspace(s.ws) { actor in
                try await s.store.add(kind: "slack", name: "x", url: "https://hooks.example.com:99999/T/SECRET", secret: nil, topics: ["run.failed"],
                                      minSeverity: nil, by: "t", in: actor)
            }
        }
        await #expect(throws: IntegrationError.self) { _ = try await s.add("webhook", path: "/hook", secret: "short") }
        await #expect(throws: IntegrationError.self) { _ = try await s.add("slack", path: "/s", topics: ["run.exploded"]) }
        await #expect(throws: IntegrationError.self) { _ = try await s.add("slack", path: "/s", topics: ["run.findings"]) }

        try await s.h.supervisor.withWorkspace(s.ws) { try await s.store.remove(listed[0].id, by: "t", in: $0) }
        #expect(try await s.h.supervisor.withWorkspace(s.ws) { try await s.store.list(in: $0) }.map(\.id) == [listed[1].id])
        await #expect(throws: IntegrationError.self) { try await s.h.supervisor.withWorkspace(s.ws) { try await s.store.remove(listed[0].id, by: "t", in: $0) } }
        await s.stop()
    }
}

@Suite("Notification texts")
struct NotificationTextTests {
    @Test("a GitLab run is named by its merge request, !N (#N is an issue there)")
    func gitLabMergeRequestNumber() throws {
        let payload = RunEventPayload(runID: 4, repository: "acme/app", prNumber: 12, headSHA: "abc", trigger: "opened", state: "failed",
                                      reason: "GitLab answered 502")
        var gitlab = payload
        gitlab.platform = "gitlab"
        func text(_ run: RunEventPayload) throws -> String? {
            let data = String(decoding: try JSONEncoder.sentinel.encode(run), as: UTF8.self)
            let event = StoredEvent(seq: 1, id: "e", type: "RunCompleted", occurredAt: "2026-12-06T00:00:00Z", correlationID: nil, subject: "run:4", data: data)
            return Notifications.notice(for: event, topics: ["run.failed"], minSeverity: nil)?.text
        }
        #expect(try text(gitlab)?.hasPrefix("Review failed: acme/app!12 (run 4)") == true)
        #expect(try text(payload)?.hasPrefix("Review failed: acme/app#12 (run 4)") == true)
    }
}
