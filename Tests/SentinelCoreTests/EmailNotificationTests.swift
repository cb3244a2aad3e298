import Crypto
import Foundation
import Logging
import NIOCore
import NIOPosix
import GRDB
@testable import SentinelCore
import SentinelTestSupport
import Testing

/// Email channels against a real SMTP server on loopback (aiosmtpd, see `SMTPTestServer`).
@Suite("Email notifications", .enabled(if: SMTPTestServer.available, "SENTINEL_TEST_PYTHON (a python3 with aiosmtpd) is not set"))
struct EmailNotificationTests {
    struct Setup {
        let h: TestHarness
        let ws: WorkspaceID
        let store: NotificationStore
        let http: AsyncOutboundHTTPClient
        let smtp: SMTPTestServer
        let notifications: Notifications

        func stop() async {
            smtp.stop()
            await http.shutdown()
            await h.stop()
        }

        func email(password: String? = nil, ca: String?? = .none, security: SMTPSecurity = .starttls) -> EmailDestination {
            EmailDestination(host: "127.0.0.1", port: smtp.port, security: security, username: smtp.username,
                             password: password ?? smtp.password, from: "sentinel@example.com",
                             to: ["dev@example.com", "ops@example.org"], caBundle: ca ?? smtp.caPEM)
        }

        func add(_ email: EmailDestination, topics: [String] = ["run.failed"]) async throws -> NotificationChannelSummary {
            try await h.supervisor.withWorkspace(ws) { actor in
                try await store.add(kind: "email", name: "mail", url: nil, secret: nil, email: email, topics: topics, minSeverity: nil,
                                    by: "test", in: actor)
            }
        }

        /// Run 1 of acme/api#7 ends failed ("GitHub answered 502"): the event a `run.failed` channel mails.
        func failRun() async throws {
            _ = try await h.supervisor.withWorkspace(ws) { actor in
                try await actor.write { tx in
                    try tx.append(DomainEvent(type: "RunCompleted", subject: "run:1", payload: RunEventPayload(
                        runID: 1, repository: "acme/api", prNumber: 7, headSHA: "abc", trigger: "opened", state: "failed",
                        reason: "GitHub answered 502")))
                }
            }
        }

        func test(_ id: String) async throws -> NotificationTestResult {
            try await h.supervisor.withWorkspace(ws) { try await notifications.test(id, by: "test", in: $0) }
        }
    }

    static func setup(security: SMTPSecurity = .starttls, maxAttempts: Int = 5) async throws -> Setup {
        let smtp = try await SMTPTestServer.start(security: security)
        let http = try AsyncOutboundHTTPClient()
        var registry = JobRegistry()
        let store = NotificationStore(masterKey: MasterKey(key: SymmetricKey(size: .bits256)))
        let notifications = Notifications(store: store, http: http, mail: NIOSMTPClient(), window: 0.05)
        notifications.register(in: &registry)
        let h = try TestHarness(config: testConfig { $0.jobs.maxAttempts = maxAttempts }, registry: registry)
        return Setup(h: h, ws: try h.createWorkspace(), store: store, http: http, smtp: smtp, notifications: notifications)
    }

    @Test("a failed run is mailed over STARTTLS with AUTH: a well-formed message to every recipient")
    func deliveredOverSTARTTLS() async throws {
        let s = try await Self.setup()
        _ = try await s.add(s.email())
        try await s.failRun()
        s.h.startScheduler()
        #expect(await eventually { try s.smtp.received().count == 1 })
        let mail = try #require(try s.smtp.received().first)
        #expect(mail.tls && mail.login == "sentinel")
        #expect(mail.mailFrom == "sentinel@example.com")
        #expect(mail.recipients == ["dev@example.com", "ops@example.org"])
        #expect(mail.defects.isEmpty, "\(mail.defects)")
        #expect(mail.headers["from"] == "sentinel@example.com")
        #expect(mail.headers["to"] == "dev@example.com, ops@example.org")
        // Named by workspace: several workspaces may mail one inbox.
        #expect(mail.headers["subject"]?.hasPrefix("Sentinel (ws-") == true)
        #expect(mail.headers["subject"]?.hasSuffix("): Review failed: acme/api#7 (run 1): GitHub answered 502") == true, "\(mail.headers["subject"] ?? "")")
        #expect(mail.headers["date"] != nil)
        #expect(mail.headers["message-id"]?.hasSuffix("@example.com>") == true)
        #expect(mail.contentType == "text/plain" && mail.charset == "utf-8" && mail.transferEncoding == "quoted-printable")
        #expect(mail.body.contains("Review failed: acme/api#7 (run 1): GitHub answered 502"))
        #expect(await eventually { try await s.h.jobs(in: s.ws, state: .succeeded).contains { $0.kind == Notifications.flushKind } })
        await s.stop()
    }

    @Test("a connection dropped mid-session (after STARTTLS) is retried, and the notice is mailed; it was dead at once and the notices deleted")
    func droppedConnectionRetried() async throws {
        let s = try await Self.setup(maxAttempts: 3)
        _ = try await s.add(s.email())
        try s.smtp.dropNextMessage()
        try await s.failRun()
        s.h.startScheduler()
        #expect(await eventually { try await s.h.jobs(in: s.ws, state: .succeeded).contains { $0.kind == Notifications.flushKind } })
        let mails = try s.smtp.received()
        #expect(mails.count == 1 && mails.first?.body.contains("Review failed: acme/api#7 (run 1)") == true, "\(mails)")
        let flush = try #require(try await s.h.jobs(in: s.ws, state: .succeeded).first { $0.kind == Notifications.flushKind })
        #expect(flush.attempts == 2, "the dropped connection was retried once")
        #expect(try await s.h.jobs(in: s.ws, state: .dead).isEmpty)
        await s.stop()
    }

    @Test("a message taken whose answer was lost is sent again with the same Message-ID, so mail clients drop the copy (each attempt had a new one)")
    func resentMessageKeepsItsID() async throws {
        let s = try await Self.setup(maxAttempts: 3)
        _ = try await s.add(s.email())
        try s.smtp.loseNextAnswer()
        try await s.failRun()
        s.h.startScheduler()
        #expect(await eventually { try await s.h.jobs(in: s.ws, state: .succeeded).contains { $0.kind == Notifications.flushKind } })
        let mails = try s.smtp.received()
        #expect(mails.count == 2, "\(mails)")
        let ids = Set(mails.compactMap { $0.headers["message-id"] })
        #expect(ids.count == 1 && ids.first?.hasPrefix("<sentinel.ws_") == true, "\(ids)")
        await s.stop()
    }

    @Test("a 354 to the end of the message delivered nothing: the notice is not counted delivered (the job succeeded and the notice was lost)")
    func intermediateReplyToMessageNotDelivered() async throws {
        let s = try await Self.setup(maxAttempts: 1)
        _ = try await s.add(s.email())
        try s.smtp.answerNextMessage("354 hmm")
        try await s.failRun()
        s.h.startScheduler()
        #expect(await eventually { try await s.h.jobs(in: s.ws, state: .dead).contains { $0.kind == Notifications.flushKind } })
        #expect(try await s.h.jobs(in: s.ws, state: .succeeded).filter { $0.kind == Notifications.flushKind }.isEmpty)
        let dead = try #require(try await s.h.jobs(in: s.ws, state: .dead).first { $0.kind == Notifications.flushKind })
        #expect(dead.lastError?.contains("354 hmm") == true, "\(dead.lastError ?? "")")
        // It names its channel: several failing channels each said only what their server answered.
        #expect(dead.lastError?.hasPrefix("channel ") == true && dead.lastError?.contains("(ntf_") == true, "\(dead.lastError ?? "")")
        #expect(try s.smtp.received().isEmpty)
        await s.stop()
    }

    @Test("a burst of failed runs is one mail; the subject and body survive UTF-8, long lines and lines starting with a dot")
    func coalescedAndEncoded() async throws {
        let s = try await Self.setup()
        _ = try await s.add(s.email())
        try await s.h.supervisor.withWorkspace(s.ws) { actor in
            try await actor.write { tx in
                for i in 1...12 {
                    try tx.append(DomainEvent(type: "RunCompleted", subject: "run:\(i)", payload: RunEventPayload(
                        runID: Int64(i), repository: "acme/api", prNumber: i, headSHA: "abc", trigger: "opened", state: "failed")))
                }
            }
        }
        s.h.startScheduler()
        #expect(await eventually { try s.smtp.received().count == 1 })
        let burst = try #require(try s.smtp.received().first)
        #expect(burst.headers["subject"]?.hasSuffix("): 12 notifications (12 × review failed)") == true, "\(burst.headers["subject"] ?? "")")
        #expect(burst.body.contains("… and 7 more"))

        // Straight through the client: dot-stuffing, quoted-printable soft breaks and non-ASCII.
        let long = String(repeating: "wörd ", count: 40) + "end"
        let body = ".\n..two dots\n. dot space\nnaïve × ünïcode\n\(long)\ntrailing space \n="
        let log = CapturedLog()
        let reply = try await Telemetry.$logger.withValue(Logger.sentinel(label: "test", level: "info", sink: log.sink)) {
            try await NIOSMTPClient().send(MailMessage(from: "sentinel@example.com", to: ["dev@example.com"], subject: "Ünïcode subject " + String(repeating: "é", count: 60),
                                                       body: body), via: s.email().server)
        }
        #expect(reply.code == 250)
        // One outbound line, like an HTTP call's: no password, no address, no message.
        let lines = log.all.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(lines.count == 1, "\(log.all)")
        let line = try #require(lines.first)
        #expect(line["message"] as? String == "outbound call" && line["method"] as? String == "SMTP" && line["status"] as? String == "250", "\(line)")
        for key in ["host", "port", "security", "duration_ms", "attempt"] { #expect(line[key] != nil, "\(key) missing in \(line)") }
        #expect(!log.text.contains(s.smtp.password) && !log.text.contains("dev@example.com") && !log.text.contains("wörd"))
        let direct = try #require(try s.smtp.received().last)
        #expect(direct.defects.isEmpty, "\(direct.defects)")
        #expect(direct.headers["subject"] == "Ünïcode subject " + String(repeating: "é", count: 60))
        // Text lines travel as CRLF (the canonical form); the decoded text is the body as given.
        #expect(direct.body.replacingOccurrences(of: "\r\n", with: "\n").trimmingCharacters(in: .newlines) == body)
        await s.stop()
    }

    @Test("implicit TLS (smtps) delivers too")
    func implicitTLS() async throws {
        let s = try await Self.setup(security: .tls)
        let channel = try await s.add(s.email(security: .tls))
        let result = try await s.test(channel.id)
        #expect(result.delivered && result.status == 250 && result.transport == "smtp", "\(result)")
        #expect(result.answer.contains("250 2.0.0 Message accepted for delivery"))
        let mail = try #require(try s.smtp.received().first)
        #expect(mail.tls && mail.login == "sentinel")
        #expect(mail.headers["subject"] == "Sentinel: test message for channel mail")
        await s.stop()
    }

    @Test("a wrong password: notify test reports the server's reply verbatim, and the flush job goes dead with it")
    func wrongPassword() async throws {
        let s = try await Self.setup(maxAttempts: 2)
        let channel = try await s.add(s.email(password: "not-the-password"))
        let result = try await s.test(channel.id)
        #expect(!result.delivered)
        #expect(result.status == 535)
        #expect(result.answer == "AUTH PLAIN: 535 5.7.8 Authentication credentials invalid", "\(result.answer)")

        _ = try await s.h.supervisor.withWorkspace(s.ws) { actor in
            try await actor.write { tx in
                try tx.append(DomainEvent(type: "RunCompleted", subject: "run:1", payload: RunEventPayload(
                    runID: 1, repository: "acme/api", prNumber: 1, headSHA: "abc", trigger: "opened", state: "failed")))
            }
        }
        s.h.startScheduler()
        #expect(await eventually { try await s.h.jobs(in: s.ws, state: .dead).contains { $0.kind == Notifications.flushKind } })
        let dead = try #require(try await s.h.jobs(in: s.ws, state: .dead).first { $0.kind == Notifications.flushKind })
        #expect(dead.attempts == 1, "a refused login is permanent, not retried")
        #expect(dead.lastError?.contains("535 5.7.8 Authentication credentials invalid") == true, "\(dead.lastError ?? "")")
        #expect(try s.smtp.received().isEmpty)
        await s.stop()
    }

    @Test("a server whose certificate is not trusted is refused before anything is sent")
    func untrustedCertificate() async throws {
        let s = try await Self.setup()
        // The system roots (no CA given) and another CA both refuse the test server's certificate.
        let (otherCA, _) = try SelfSignedCertificate.make(hostname: "localhost")
        for ca in [String?.none, otherCA] {
            let channel = try await s.add(s.email(ca: .some(ca)))
            let result = try await s.test(channel.id)
            #expect(!result.delivered && result.status == nil)
            #expect(result.answer.contains("the mail server's certificate is not trusted"), "\(result.answer)")
        }
        #expect(try s.smtp.received().isEmpty)
        await s.stop()
    }
}

@Suite("Email channels")
struct EmailChannelTests {
    @Test("the password is sealed and never shown; bad addresses and half credentials are refused with a clear error")
    func redactionAndValidation() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        let store = NotificationStore(masterKey: MasterKey(key: SymmetricKey(size: .bits256)))
        func add(_ email: EmailDestination) async throws -> NotificationChannelSummary {
            try await h.supervisor.withWorkspace(ws) { actor in
                try await store.add(kind: "email", name: "mail", url: nil, secret: nil, email: email, topics: ["job.dead"], minSeverity: nil,
                                    by: "test", in: actor)
            }
        }
        let good = EmailDestination(host: "Mail.Example.com", port: 587, security: .starttls, username: "bot", password: "PASSWORDSECRET",
                                    from: "sentinel@example.com", to: ["a@example.com", "b@example.com"],
                                    caBundle: try SelfSignedCertificate.make(hostname: "mail.example.com").0)
        let added = try await add(good)
        #expect(added.kind == "email")
        #expect(added.destination == "smtp://mail.example.com:587 (starttls, 2 recipients)")
        let stored = try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.read { db in try String.fetchAll(db, sql: "SELECT CAST(destination AS TEXT) || destination_hint FROM notification_channels") }
        }
        #expect(!stored.joined().contains("PASSWORDSECRET"))
        let channel = try #require(try await h.supervisor.withWorkspace(ws) { try await store.channel(added.id, in: $0) })
        #expect(channel.destination.email?.password == "PASSWORDSECRET")
        #expect(channel.destination.email == (try good.validated()), "everything stored comes back (the CA bundle too)")

        var bad = good
        bad.to = ["not an address"]
        await #expect(throws: IntegrationError.invalid("the recipient 'not an address' is not an email address")) { _ = try await add(bad) }
        // Not RFC 5322 dot-atoms or host names: refused (they were written into `To:` as they were).
        for address in [".a..b.@example.com", "a.@example.com", "a@-x-.com", "a@example..com", "a@example", "ops@bücher.de", "u@1.2.3.4"] {
            bad = good
            bad.to = [address]
            await #expect(throws: IntegrationError.self, "\(address)") { _ = try await add(bad) }
        }
        #expect(EmailDestination.isAddress("first.last+tag@xn--bcher-kva.de"))
        // A host with its port in it never resolves (it was accepted, and every delivery retried to death).
        for host in ["127.0.0.1:25", "mail.example.com:587", "::1::2"] {
            bad = good
            bad.host = host
            await #expect(throws: IntegrationError.self, "\(host)") { _ = try await add(bad) }
        }
        var v6 = good
        v6.host = "::1"
        v6.caBundle = nil
        #expect(try await add(v6).destination == "smtp://[::1]:587 (starttls, 2 recipients)")
        // Written as URLs write it: the same address (it was refused as a host with a port).
        v6.host = "[::1]"
        #expect(try v6.validated().host == "::1")
        v6.host = "[::1]:25"
        #expect(throws: IntegrationError.self) { _ = try v6.validated() }
        // A minimum severity without run.findings did nothing: refused, as the command line refuses it.
        await #expect(throws: IntegrationError.self) {
            try await h.supervisor.withWorkspace(ws) { actor in
                try await store.add(kind: "email", name: "sev", url: nil, secret: nil, email: good, topics: ["run.failed"], minSeverity: "high",
                                    by: "test", in: actor)
            }
        }
        // A recipient given twice (in any case) is mailed once.
        var twice = good
        twice.to = ["ops@example.com", "OPS@example.com", "dev@example.com"]
        #expect(try twice.validated().to == ["ops@example.com", "dev@example.com"])
        bad = good
        bad.from = "x@y.com\r\nBcc: victim@example.com"
        await #expect(throws: IntegrationError.self) { _ = try await add(bad) }
        // A CA file without a certificate, or a damaged one: every mail of the channel would fail for good.
        for pem in ["not a pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"] {
            bad = good
            bad.caBundle = pem
            await #expect(throws: IntegrationError.self, "\(pem)") { _ = try await add(bad) }
        }
        bad = good
        bad.password = nil
        await #expect(throws: IntegrationError.invalid("give both a username and a password for the mail server, or neither")) { _ = try await add(bad) }
        bad = good
        bad.to = []
        await #expect(throws: IntegrationError.self) { _ = try await add(bad) }
        await #expect(throws: IntegrationError.invalid("an email channel needs a mail server, a sender and recipients")) {
            try await h.supervisor.withWorkspace(ws) { actor in
                try await store.add(kind: "email", name: "mail", url: nil, secret: nil, topics: ["job.dead"], minSeverity: nil, by: "t", in: actor)
            }
        }
        await h.stop()
    }

    @Test("a subject of one character with hundreds of combining marks stays within the 998-byte line limit (one encoded word was 1,617)")
    func subjectOfOneLongCharacter() {
        let subject = "Sentinel: a" + String(repeating: "\u{0301}", count: 600)
        let message = MailMessage(from: "s@example.com", to: ["a@example.com"], subject: subject, body: "b",
                                  date: Date(timeIntervalSince1970: 0), messageID: "<1@example.com>")
        let lines = message.rendered().components(separatedBy: "\r\n")
        #expect(lines.allSatisfy { $0.utf8.count <= 998 }, "\(lines.map(\.utf8.count).max() ?? 0)")
        #expect(lines.filter { $0.hasPrefix("Subject:") || $0.hasPrefix(" =?UTF-8?B?") }.allSatisfy { $0.utf8.count <= 78 })
    }

    @Test("twenty long recipients are folded one a line in To: (one line of 5,123 bytes passed the 998 limit); a subject that reads as an encoded word is encoded")
    func foldedRecipientsAndLiteralEncodedWords() {
        let to = (0..<20).map { "u\($0)" + String(repeating: "x", count: 60) + "@" + String(repeating: "d", count: 60) + ".example.com" }
        let subject = "Sentinel: test message for channel =?UTF-8?B?QWxsIGlzIHdlbGw=?="
        let message = MailMessage(from: "s@example.com", to: to, subject: subject, body: "b", date: Date(timeIntervalSince1970: 0), messageID: "<1@example.com>")
        let lines = message.rendered().components(separatedBy: "\r\n")
        #expect(lines.allSatisfy { $0.utf8.count <= 998 }, "\(lines.map(\.utf8.count).max() ?? 0)")
        #expect(lines.contains("To: \(to[0]),") && lines.contains(" \(to[19])"))
        let subjectLine = try? #require(lines.first { $0.hasPrefix("Subject: ") })
        #expect(subjectLine?.hasPrefix("Subject: =?UTF-8?B?") == true, "\(subjectLine ?? "")")
        #expect(!(subjectLine ?? "").contains("QWxsIGlzIHdlbGw="), "the literal text is not passed through as an encoded word")
        #expect(MailMessage.encodedHeader("Sentinel: plain") == "Sentinel: plain")
    }

    @Test("the rendered message: CRLF lines, quoted-printable at most 76 characters, dot-stuffed DATA")
    func rendering() {
        let message = MailMessage(from: "s@example.com", to: ["a@example.com"], subject: "Hi", body: ".start\n" + String(repeating: "x", count: 200),
                                  date: Date(timeIntervalSince1970: 0), messageID: "<1@example.com>")
        let rendered = message.rendered()
        #expect(rendered.hasPrefix("Date: Thu, 01 Jan 1970 00:00:00 +0000\r\nMessage-ID: <1@example.com>\r\nFrom: s@example.com\r\nTo: a@example.com\r\nSubject: Hi\r\n"))
        #expect(rendered.components(separatedBy: "\r\n").allSatisfy { $0.utf8.count <= 76 })
        #expect(!rendered.replacingOccurrences(of: "\r\n", with: "").contains("\n"))
        let data = message.dataPayload()
        #expect(data.contains("\r\n..start\r\n"))
        #expect(data.hasSuffix("\r\n.\r\n"))
    }
}

/// The SMTP client against a server that does not keep to the protocol (no aiosmtpd needed).
@Suite("SMTP client against a misbehaving server")
struct SMTPMisbehavingServerTests {
    /// A server that sends `script` at once when a client connects, and then nothing.
    final class Scripted: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let script: String
        init(_ script: String) { self.script = script }
        func channelActive(context: ChannelHandlerContext) {
            context.writeAndFlush(NIOAny(context.channel.allocator.buffer(string: script)), promise: nil)
        }
    }

    /// What the client says when sending a mail to a server that sends `script`.
    static func refusal(_ script: String) async throws -> String {
        try await refusal { Scripted(script) }
    }

    /// What the client says when sending a mail to a server whose connections `makeHandler` serves.
    static func refusal(from makeHandler: @escaping @Sendable () -> any ChannelHandler & Sendable) async throws -> String {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(makeHandler()) } }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(server.localAddress?.port)
        let mail = MailMessage(from: "sentinel@example.com", to: ["dev@example.com"], subject: "s", body: "b")
        let error = await #expect(throws: SMTPError.self) {
            try await NIOSMTPClient().send(mail, via: SMTPServer(host: "127.0.0.1", port: port, security: .starttls, timeout: .seconds(10)))
        }
        try await server.close()
        return error.map { "\($0)" } ?? ""
    }

    /// A server that greets, then answers each command line by its first word from `answers`.
    final class Answering: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let answers: [String: String]
        init(_ answers: [String: String]) { self.answers = answers }
        func channelActive(context: ChannelHandlerContext) {
            context.writeAndFlush(NIOAny(context.channel.allocator.buffer(string: "220 scripted ESMTP\r\n")), promise: nil)
        }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let text = String(buffer: unwrapInboundIn(data))
            for line in text.split(separator: "\r\n") {
                let verb = line.split(separator: " ").first.map { $0.uppercased() } ?? ""
                context.writeAndFlush(NIOAny(context.channel.allocator.buffer(string: answers[verb] ?? "500 unknown\r\n")), promise: nil)
            }
        }
    }

    @Test("replies sent in the clear along with STARTTLS's go-ahead are refused, not read as the answers after the handshake (a STARTTLS injection)")
    func startTLSInjectionRefused() async throws {
        let said = try await Self.refusal {
            Answering([
                "EHLO": "250-scripted\r\n250 STARTTLS\r\n",
                "STARTTLS": "220 go ahead\r\n250 INJ-EHLO\r\n250 INJ-MAIL\r\n250 INJ-RCPT\r\n354 INJ-DATA\r\n",
            ])
        }
        #expect(said.contains("sent more after its STARTTLS reply, before TLS began"), "\(said)")
    }

    @Test("a reply line over 4,096 bytes is cut off also when it arrives whole in one read (it was taken up to about 15 KB)")
    func longLineInOneReadRefused() async throws {
        let said = try await Self.refusal("220 " + String(repeating: "x", count: 4_996) + "\r\n")
        #expect(said.contains("a line longer than 4096 bytes"), "\(said)")
    }

    @Test("a server that floods the client with replies nothing asked for is cut off saying so; the client keeps at most a few")
    func unaskedRepliesRefused() async throws {
        let said = try await Self.refusal("220 flood.example ESMTP\r\n" + String(repeating: "250 ok\r\n", count: 5_000))
        #expect(said.contains("more than 8 replies nothing asked for"), "\(said)")
    }
}
