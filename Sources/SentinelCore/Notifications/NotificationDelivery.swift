import Foundation
import GRDB

/// One thing to tell a channel, waiting in `notification_pending` for the channel's next message.
public struct Notice: Sendable, Equatable {
    public var topic: NotificationTopic
    public var text: String
}

/// A coalesced message: what the flush job sends for one channel.
public struct NotificationMessage: Sendable, Equatable {
    public var title: String
    public var lines: [String]
    /// Notices by topic.
    public var counts: [String: Int]
    public var total: Int

    public var text: String { ([title] + lines).joined(separator: "\n") }
}

/// Delivery of notifications, by jobs.
///
/// Design: the `notify.events` listener reacts to the domain events that topics come from, turns
/// each into a `Notice` and, for each channel subscribed to its topic, inserts a row into
/// `notification_pending` (unique per channel and event, so a retried listener adds nothing
/// twice) and enqueues one `notify.flush` job for the channel, due `window` after the batch's
/// first notice (idempotency key `notify.flush:<channel>:<first pending id>`, so a burst enqueues
/// one; notices that arrive while a message is being sent start the next batch when it is done).
/// The flush job reads everything pending for the channel, sends one message (a single notice as
/// is; several as a count per topic plus the first few lines), and deletes exactly the rows it
/// sent once the destination accepted them. A failed send throws: the job queue retries with
/// backoff (`Retry-After` honoured, a 4xx other than 408/429 is permanent) and the job goes dead
/// after `jobs.max_attempts`, visible in `sentinel jobs list`; its `onDead` hook drops the
/// batch's notices. So a channel gets at most one message per window, however many events.
public struct Notifications: Sendable {
    public static let listener = "notify.events"
    public static let flushKind = "notify.flush"
    public static let eventTypes = ["RunCompleted", "PlanSoftLimitReached", "JobDead", "AIBudgetReached", "ProviderCircuitOpened", "ProviderKeyRefused",
                                    "IntegrationAuthFailing", "IntegrationCredentialsExpiring", "ExportFailed"]
    /// Lines quoted in a coalesced message; the rest are counted only.
    public static let sampleLines = 5

    public let store: NotificationStore
    public let http: any OutboundHTTPClient
    /// Email channels' transport.
    public let mail: any MailTransport
    /// The coalescing window: at most one message per channel per window.
    public let window: TimeInterval

    public init(store: NotificationStore, http: any OutboundHTTPClient, mail: any MailTransport = NIOSMTPClient(), window: TimeInterval = 60) {
        self.store = store
        self.http = http
        self.mail = mail
        self.window = window
    }

    struct FlushPayload: Codable, Sendable { var channelID: String }

    public func register(in registry: inout JobRegistry) {
        Self.registerListener(in: &registry, window: window)
        registry.register(Self.flushKind, handler: { context in
            let payload = try context.job.decodePayload(FlushPayload.self)
            try await self.flush(channelID: payload.channelID, in: context.workspace)
        }, onDead: { context, dead in
            // The dead job (visible in `sentinel jobs list`, with its last answer) stands for the
            // notices its last attempt read, those queued before it started: they are dropped so
            // the channel's next notice starts a new batch. Notices queued since (an event during
            // a last attempt that hung) found this job's key taken and got no job: they are the
            // next batch now (they were dropped with it, never sent).
            let payload = try JSONDecoder.sentinel.decode(FlushPayload.self, from: dead.payload)
            let window = self.window
            try await context.workspace.write { tx in
                let started = try Double.fetchOne(tx.db, sql: "SELECT started_at FROM jobs WHERE id = ?", arguments: [dead.jobID]) ?? tx.now.epoch
                try tx.db.execute(sql: "DELETE FROM notification_pending WHERE channel_id = ? AND created_at < ?",
                                  arguments: [payload.channelID, started])
                try Self.scheduleFlush(channelID: payload.channelID, correlationID: nil, window: window, in: &tx)
            }
        })
    }

    /// The `notify.events` listener alone (it needs no channel secrets or network): what a process
    /// that appends events but sends nothing (the CLI) registers, so its events are notified too.
    public static func registerListener(in registry: inout JobRegistry, window: TimeInterval = 60) {
        for type in eventTypes {
            // A workspace without a notification channel has nothing to notify: no job per event.
            registry.listen(to: type, as: listener, when: { db in
                try Bool.fetchOne(db.cachedStatement(sql: "SELECT EXISTS (SELECT 1 FROM notification_channels)")) ?? false
            }) { context in
                let payload = try context.job.decodePayload(EventListenerPayload.self)
                try await context.workspace.write { tx in try collect(eventSeq: payload.seq, window: window, in: &tx) }
            }
        }
    }

    /// Appends `IntegrationAuthFailing` when a channel of the workspace subscribes to it (a
    /// workspace without one stores nothing for a refused delivery), at most hourly per integration
    /// by the event log, so a restart does not tell it again. Returns whether it is told: appended
    /// now, or within the hour; false without a subscribed channel (one added next hears the next).
    @discardableResult
    public static func integrationAuthFailing(_ id: IntegrationID, failures: Int, in workspace: WorkspaceActor, now: Date = Date()) async throws -> Bool {
        let subscribed = try await workspace.read { db in
            try NotificationStore.summaries(in: db).contains { $0.topics.contains(NotificationTopic.integrationAuthFailing.rawValue) }
        }
        guard subscribed else { return false }
        let subject = "integration:\(id.rawValue)"
        let since = ISO8601.string(now.addingTimeInterval(-3_600))
        _ = try await workspace.write { tx in
            let recent = try Bool.fetchOne(tx.db, sql: """
                SELECT EXISTS (SELECT 1 FROM events WHERE type = 'IntegrationAuthFailing' AND subject = ? AND occurred_at > ?)
                """, arguments: [subject, since]) ?? false
            guard !recent else { return }
            try tx.append(DomainEvent(type: "IntegrationAuthFailing", subject: subject, payload: [
                "integration": id.rawValue, "failures": String(failures)]))
        }
        return true
    }

    /// What an event means for a channel with these subscriptions, or nil.
    static func notice(for event: StoredEvent, topics: Set<String>, minSeverity: Severity?) -> Notice? {
        let data = Data(event.data.utf8)
        switch event.type {
        case "RunCompleted":
            guard let run = try? JSONDecoder.sentinel.decode(RunEventPayload.self, from: data) else { return nil }
            // GitLab numbers merge requests `!N` (`#N` is an issue there).
            let where_ = "\(run.repository)\(run.platform == "gitlab" ? "!" : "#")\(run.prNumber) (run \(run.runID))"
            if run.state == "failed", topics.contains(NotificationTopic.runFailed.rawValue) {
                return Notice(topic: .runFailed, text: "Review failed: \(where_)\(run.reason.map { ": \($0)" } ?? "")")
            }
            if run.state == "completed", topics.contains(NotificationTopic.runFindings.rawValue), let minSeverity {
                let atLeast = (run.findingCounts ?? []).filter { (Severity(rawValue: $0.severity) ?? .info) >= minSeverity }
                let count = atLeast.reduce(0) { $0 + $1.count }
                guard count > 0 else { return nil }
                return Notice(topic: .runFindings, text: "Review of \(where_): \(count) finding(s) at \(minSeverity.rawValue) or above")
            }
            return nil
        case "PlanSoftLimitReached":
            guard topics.contains(NotificationTopic.planSoftLimit.rawValue),
                  let fields = try? JSONDecoder.sentinel.decode([String: String].self, from: data) else { return nil }
            return Notice(topic: .planSoftLimit, text: "Plan \(fields["plan"] ?? "?"): \(fields["limit"] ?? "?") at \(fields["used"] ?? "?") of \(fields["allowed"] ?? "?")")
        case "JobDead":
            // Notifications' own jobs going dead are not notified: that channel is failing already.
            guard topics.contains(NotificationTopic.jobDead.rawValue),
                  let fields = try? JSONDecoder.sentinel.decode([String: String].self, from: data),
                  let kind = fields["kind"], !isOwn(kind) else { return nil }
            return Notice(topic: .jobDead, text: "Job \(kind) (\(event.subject ?? "?")) is dead after \(fields["attempts"] ?? "?") attempt(s): \(fields["reason"] ?? "")")
        case "AIBudgetReached":
            guard topics.contains(NotificationTopic.aiBudget.rawValue),
                  let fields = try? JSONDecoder.sentinel.decode([String: String].self, from: data) else { return nil }
            return Notice(topic: .aiBudget, text: "AI budget reached for \(fields["period"] ?? "this month"): USD \(fields["spent_usd"] ?? "?") spent of \(fields["budget_usd"] ?? "?"); reviews continue without AI until the budget is raised or the month ends")
        case "ProviderCircuitOpened":
            guard topics.contains(NotificationTopic.providerCircuitOpen.rawValue),
                  let fields = try? JSONDecoder.sentinel.decode([String: String].self, from: data) else { return nil }
            return Notice(topic: .providerCircuitOpen, text: "AI provider \(fields["provider"] ?? "?") failed \(fields["failures"] ?? "repeatedly") times in a row: its circuit is open, other providers are used until it is tried again at \(fields["retry_at"] ?? "?")")
        case "ProviderKeyRefused":
            guard topics.contains(NotificationTopic.providerKeyRefused.rawValue),
                  let fields = try? JSONDecoder.sentinel.decode([String: String].self, from: data) else { return nil }
            let id = fields["provider"] ?? "?"
            return Notice(topic: .providerKeyRefused,
                          text: "AI provider \(id) refused its API key (\(fields["reason"] ?? "unauthorized")): reviews go on without it until the key is replaced: "
                              + "sentinel provider rotate --workspace WORKSPACE \(id) --api-key-file FILE, or PATCH the provider")
        case "IntegrationCredentialsExpiring":
            guard topics.contains(NotificationTopic.integrationCredentialsExpiring.rawValue),
                  let fields = try? JSONDecoder.sentinel.decode([String: String].self, from: data) else { return nil }
            let id = fields["integration"] ?? "?"
            return Notice(topic: .integrationCredentialsExpiring,
                          text: "The \(fields["platform"] ?? "platform") access token of integration \(id) expires on \((fields["expires_at"] ?? "?").prefix(10)) "
                              + "(in \(fields["days"] ?? "?") day(s)); reviews stop then. Create a new token with the api scope and give it to the "
                              + "integration: sentinel integration rotate \(id) --workspace WORKSPACE --token-file FILE, or PATCH the integration")
        case "IntegrationAuthFailing":
            guard topics.contains(NotificationTopic.integrationAuthFailing.rawValue),
                  let fields = try? JSONDecoder.sentinel.decode([String: String].self, from: data) else { return nil }
            return Notice(topic: .integrationAuthFailing, text: "Webhook deliveries to integration \(fields["integration"] ?? "?") are failing authentication (\(fields["failures"] ?? "?") refused when this was noticed; more may have followed): check the webhook secret or token on the platform")
        case "ExportFailed":
            guard topics.contains(NotificationTopic.exportFailed.rawValue),
                  let fields = try? JSONDecoder.sentinel.decode([String: String].self, from: data) else { return nil }
            return Notice(topic: .exportFailed, text: "The nightly analytics export failed: \(fields["reason"] ?? "?")")
        default:
            return nil
        }
    }

    static func isOwn(_ kind: String) -> Bool {
        [flushKind, JobRegistry.deadKind(flushKind), EventListenerRegistry.jobKind(listener)].contains(kind)
    }

    /// The listener's work: pending rows and one flush job per channel and window.
    static func collect(eventSeq: Int64, window: TimeInterval, in tx: inout WorkspaceTransaction) throws {
        guard let event = try EventLog.event(seq: eventSeq, in: tx.db) else { return }
        for channel in try NotificationStore.summaries(in: tx.db) {
            guard let notice = Self.notice(for: event, topics: Set(channel.topics), minSeverity: channel.minSeverity.flatMap(Severity.init)) else { continue }
            try tx.db.execute(sql: """
                INSERT OR IGNORE INTO notification_pending (channel_id, topic, text, event_seq, created_at) VALUES (?, ?, ?, ?, ?)
                """, arguments: [channel.id, notice.topic.rawValue, StoredText.singleLine(notice.text), eventSeq, tx.now.epoch])
            guard tx.db.changesCount == 1 else { continue }
            try scheduleFlush(channelID: channel.id, correlationID: event.correlationID, window: window, in: &tx)
        }
    }

    /// One flush job per batch: keyed by the batch's first pending notice, due a window after it.
    static func scheduleFlush(channelID: String, correlationID: String?, window: TimeInterval, in tx: inout WorkspaceTransaction) throws {
        guard let first = try Int64.fetchOne(tx.db, sql: "SELECT min(id) FROM notification_pending WHERE channel_id = ?", arguments: [channelID]) else { return }
        try tx.enqueue(JobRequest(kind: Self.flushKind, payload: FlushPayload(channelID: channelID), priority: .low,
                                  runAt: tx.now.addingTimeInterval(window), idempotencyKey: "\(Self.flushKind):\(channelID):\(first)",
                                  correlationID: correlationID))
    }

    /// Sends everything pending for the channel as one message; deletes what was sent.
    func flush(channelID: String, in workspace: WorkspaceActor) async throws {
        guard let channel = try await store.channel(channelID, in: workspace) else { return }
        let rows = try await workspace.read { db in
            try Row.fetchAll(db, sql: "SELECT id, topic, text FROM notification_pending WHERE channel_id = ? ORDER BY id",
                             arguments: [channelID]).map { (id: $0["id"] as Int64, topic: $0["topic"] as String, text: $0["text"] as String) }
        }
        guard let last = rows.last?.id else { return }
        // Named by workspace: several workspaces' notices may reach one Slack channel or mailbox.
        let name = (try? workspace.control.workspace(workspace.id))?.name ?? workspace.id.rawValue
        let message = Self.message(rows.map { Notice(topic: NotificationTopic(rawValue: $0.topic) ?? .runFailed, text: $0.text) },
                                   workspace: (name: name, id: workspace.id))
        do {
            if channel.kind == .email {
                // One Message-ID per batch, on every attempt: a message the server took but whose
                // answer was lost is sent again, and mail clients drop the copy by its id.
                // (Its first and last notice: a retry that carries notices queued since is another message.)
                let batch = "sentinel.\(workspace.id.rawValue).\(channelID).\(rows[0].id)-\(last)"
                do { _ = try await sendMail(message, to: channel, now: Date(), idPart: batch) } catch let error as SMTPError {
                    if error.isTransient { throw NotificationError.rejected(error.description) }
                    throw JobFailure.permanent(error.description)
                }
            } else {
                let response = try await send(message, to: channel, now: Date())
                try Self.check(response)
            }
        } catch {
            // The job's error (what `jobs list` and the console show) names its channel: a workspace
            // with several failing channels showed "the channel answered 500" for each.
            throw Self.naming(channel.summary, error)
        }
        try await workspace.write { tx in
            try tx.db.execute(sql: "DELETE FROM notification_pending WHERE channel_id = ? AND id <= ?", arguments: [channelID, last])
            // Notices that arrived while this message was on its way start the next batch.
            try Self.scheduleFlush(channelID: channelID, correlationID: nil, window: self.window, in: &tx)
        }
    }

    /// Sends a sample message to the channel now (outside the queue and its coalescing) and returns
    /// the remote answer: status and the start of the body. The attempt is audited
    /// (`NotificationChannelTested`, with the status).
    public func test(_ id: String, by actor: String, in workspace: WorkspaceActor) async throws -> NotificationTestResult {
        guard let channel = try await store.channel(id, in: workspace) else {
            throw IntegrationError.notFound("notification channel \(id) does not exist in this workspace")
        }
        let message = NotificationMessage(title: "Sentinel: test message for channel \(channel.summary.name)",
                                          lines: ["Notifications for this workspace arrive here."], counts: [:], total: 0)
        let result: NotificationTestResult
        if channel.kind == .email {
            do {
                let reply = try await sendMail(message, to: channel, now: Date())
                result = NotificationTestResult(status: reply.code, answer: String(reply.text.prefix(300)), transport: "smtp")
            } catch SMTPError.rejected(let step, let reply) {
                result = NotificationTestResult(status: reply.code, answer: String("\(step): \(reply.text)".prefix(300)), transport: "smtp",
                                                delivered: false)
            } catch {
                result = NotificationTestResult(status: nil, answer: "\(error)", transport: "smtp")
            }
        } else {
            do {
                let response = try await send(message, to: channel, now: Date())
                result = NotificationTestResult(status: response.status, answer: StoredText.singleLine(String(decoding: response.body.prefix(300), as: UTF8.self)))
            } catch {
                result = NotificationTestResult(status: nil, answer: "\(error)")
            }
        }
        _ = try await workspace.write { tx in
            try tx.append(DomainEvent(type: "NotificationChannelTested", subject: "notification_channel:\(id)",
                                      payload: ["status": result.status.map(String.init) ?? "none", "by": actor]))
        }
        return result
    }

    /// `error` with the channel's name and id in front, of the same kind for the job queue.
    static func naming(_ channel: NotificationChannelSummary, _ error: any Error) -> any Error {
        let prefix = "channel \(StoredText.singleLine(channel.name)) (\(channel.id)): "
        switch error {
        case JobFailure.permanent(let message): return JobFailure.permanent(prefix + message)
        case JobFailure.retryAfter(let after, let message): return JobFailure.retryAfter(after, prefix + message)
        case is CancellationError: return error
        default: return NotificationError.rejected(prefix + "\(error)")
        }
    }

    /// A delivery's answer as the job queue needs it: 2xx is done, 408/429/5xx retry, other 4xx is permanent.
    static func check(_ response: OutboundResponse) throws {
        if (200..<300).contains(response.status) { return }
        let excerpt = String(decoding: response.body.prefix(200), as: UTF8.self)
        let message = "the channel answered \(response.status): \(StoredText.singleLine(excerpt))"
        if response.status == 408 || response.status == 429 || response.status >= 500 {
            if let after = response.retryAfter { throw JobFailure.retryAfter(after, message) }
            throw NotificationError.rejected(message)
        }
        throw JobFailure.permanent(message)
    }

    /// One message for a batch of notices; `workspace` names whose they are (its name in the title,
    /// its id in the commands the notices give: `--workspace WORKSPACE` was left for the reader).
    static func message(_ notices: [Notice], workspace: (name: String, id: WorkspaceID)? = nil) -> NotificationMessage {
        var counts: [String: Int] = [:]
        for notice in notices { counts[notice.topic.rawValue, default: 0] += 1 }
        let notices = notices.map { notice in
            var named = notice
            if let workspace { named.text = notice.text.replacingOccurrences(of: "--workspace WORKSPACE", with: "--workspace \(workspace.id)") }
            return named
        }
        let head = workspace.map { "Sentinel (\(StoredText.singleLine($0.name))): " } ?? "Sentinel: "
        if notices.count == 1 {
            return NotificationMessage(title: head + notices[0].text, lines: [], counts: counts, total: 1)
        }
        let summary = counts.sorted { $0.key < $1.key }.map { "\($0.value) × \(title(of: $0.key))" }.joined(separator: ", ")
        var lines = notices.prefix(sampleLines).map { "• \($0.text)" }
        if notices.count > sampleLines { lines.append("… and \(notices.count - sampleLines) more") }
        return NotificationMessage(title: head + "\(notices.count) notifications (\(summary))", lines: lines, counts: counts, total: notices.count)
    }

    static func title(of topic: String) -> String {
        switch NotificationTopic(rawValue: topic) {
        case .runFailed: return "review failed"
        case .runFindings: return "review with findings"
        case .planSoftLimit: return "plan soft limit"
        case .jobDead: return "dead job"
        case .aiBudget: return "AI budget reached"
        case .providerCircuitOpen: return "AI provider circuit open"
        case .providerKeyRefused: return "AI provider key refused"
        case .integrationAuthFailing: return "webhook authentication failing"
        case .integrationCredentialsExpiring: return "access token expiring"
        case .exportFailed: return "export failed"
        case nil: return topic
        }
    }

    /// An email channel's message: the title as subject, the lines as a plain-text body.
    public func sendMail(_ message: NotificationMessage, to channel: NotificationChannel, now: Date, idPart: String? = nil) async throws -> SMTPReply {
        guard let email = channel.destination.email else { throw JobFailure.permanent("the email channel has no mail server") }
        let body = message.text + "\n\n-- \nSentinel notifications for channel \(channel.summary.name)\n"
        return try await mail.send(MailMessage(from: email.from, to: email.to, subject: message.title, body: body, date: now, idPart: idPart),
                                   via: email.server)
    }

    /// The request for a channel's kind, sent through the one outbound client.
    public func send(_ message: NotificationMessage, to channel: NotificationChannel, now: Date) async throws -> OutboundResponse {
        guard let url = channel.destination.url.flatMap(URL.init(string:)) else { throw JobFailure.permanent("the channel's URL does not parse") }
        let body = try Self.body(message, kind: channel.kind)
        var headers = [("Content-Type", "application/json")]
        if channel.kind == .webhook, let secret = channel.destination.secret {
            headers.append((NotificationSignature.header, NotificationSignature.sign(body: body, secret: secret, timestamp: Int(now.timeIntervalSince1970))))
        }
        do {
            return try await http.send(OutboundRequest(method: "POST", url: url, headers: headers, body: body, timeout: .seconds(30), pathIsSecret: true,
                                                       acceptedOnSuccessHead: true))
        } catch OutboundHTTPError.destinationRefused(let reason) {
            throw JobFailure.permanent("destination refused: \(reason)")
        }
    }

    /// Slack reads `<…>` in a message's text as a control sequence: `<!channel>`, `<!here>` and
    /// `<!everyone>` notify everyone in the channel, `<@U…>` a person, `<https://…|text>` is a link
    /// showing other text. A notice quotes text from outside (a failure's reason, a repository's
    /// name), so `&`, `<` and `>` go as `&amp;`, `&lt;` and `&gt;`, as Slack asks for untrusted text.
    /// Read by Unicode scalar: a `<` followed by a combining mark is one `Character`, not equal
    /// to `<`, and went to Slack as it was.
    static func slackEscaped(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { $0 == "&" || $0 == "<" || $0 == ">" }) else { return text }
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out.append(contentsOf: "&amp;".unicodeScalars)
            case "<": out.append(contentsOf: "&lt;".unicodeScalars)
            case ">": out.append(contentsOf: "&gt;".unicodeScalars)
            default: out.append(scalar)
            }
        }
        return String(out)
    }

    /// Slack: `{"text": …}` (escaped: `slackEscaped`). Teams (workflow webhook): a message with one Adaptive Card attachment,
    /// its text in TextRuns, which show markdown as it is.
    /// Generic webhook: `{"type": "sentinel.notification", "title", "text", "counts", "total"}`.
    static func body(_ message: NotificationMessage, kind: NotificationChannelKind) throws -> Data {
        let object: [String: Any]
        switch kind {
        case .slack:
            object = ["text": slackEscaped(message.text)]
        case .teams:
            // A TextBlock reads its text as markdown (`[text](url)` a link, `**…**` bold): a notice
            // quotes text from outside (a failure's reason), which could show a disguised link in
            // the channel. A RichTextBlock's TextRun shows its text as it is (Adaptive Cards 1.2).
            func block(_ text: String, bold: Bool = false) -> [String: Any] {
                var run: [String: Any] = ["type": "TextRun", "text": text]
                if bold { run["weight"] = "Bolder" }
                var block: [String: Any] = ["type": "RichTextBlock", "inlines": [run]]
                if !bold { block["spacing"] = "None" }
                return block
            }
            let blocks = [block(message.title, bold: true)] + message.lines.map { block($0) }
            object = ["type": "message", "attachments": [[
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": ["$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard", "version": "1.4",
                            "body": blocks] as [String: Any],
            ] as [String: Any]]]
        case .webhook:
            object = ["type": "sentinel.notification", "title": message.title, "text": message.text, "counts": message.counts,
                      "total": message.total]
        case .email:
            throw JobFailure.permanent("email channels are sent by mail, not HTTP")
        }
        return try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    }
}

/// What a channel's destination answered to a test message.
public struct NotificationTestResult: Codable, Sendable, Equatable {
    /// The HTTP status (or, for email, the mail server's reply code), nil when nothing was answered
    /// (connection refused, destination refused, untrusted certificate, timeout).
    public var status: Int?
    /// The start of the body (email: the server's reply, verbatim and trimmed), or why there was no answer.
    public var answer: String
    /// `http` or `smtp`.
    public var transport: String

    /// Whether the message was accepted: a 2xx answer to the message itself. A mail server's 2xx
    /// reply to a step that needed another (`250` where AUTH LOGIN needs `334`, DATA `354`) is not.
    public var delivered: Bool

    public init(status: Int?, answer: String, transport: String = "http", delivered: Bool? = nil) {
        self.status = status
        self.answer = answer
        self.transport = transport
        self.delivered = delivered ?? status.map { (200..<300).contains($0) } ?? false
    }
}

public enum NotificationError: Error, CustomStringConvertible {
    /// The destination answered with a retryable error.
    case rejected(String)

    public var description: String {
        switch self { case .rejected(let message): return message }
    }
}
