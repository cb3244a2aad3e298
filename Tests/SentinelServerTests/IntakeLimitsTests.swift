import AsyncHTTPClient
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import SentinelCore
import SentinelServer
import SentinelTestSupport
import Testing

/// A plain TCP connection to the appliance on loopback: it writes exactly the bytes given (a request
/// head without its body, half a head, or nothing) and reads whatever the server sends back.
struct RawConnection {
    enum Outcome: Equatable {
        /// The server's answer up to the end of its response head.
        case answered(String)
        /// The server closed the connection; what it had sent before, if anything.
        case closed(String)
        /// Neither within the guard time (the test fails on this; it only keeps a broken server from hanging the run).
        case silent
    }

    let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>

    static func open(port: Int) async throws -> RawConnection {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return RawConnection(channel: channel)
    }

    /// Writes `bytes` (if any), then reads until a full response head arrives or the server closes.
    func exchange(_ bytes: String? = nil, guardTime: Duration = .seconds(15)) async throws -> Outcome {
        try await channel.executeThenClose { inbound, outbound in
            if let bytes { try await outbound.write(ByteBuffer(string: bytes)) }
            return try await withThrowingTaskGroup(of: Outcome.self) { group in
                group.addTask {
                    var text = ""
                    for try await chunk in inbound {
                        text += String(buffer: chunk)
                        if text.contains("\r\n\r\n") { return .answered(text) }
                    }
                    return .closed(text)
                }
                group.addTask {
                    try await Task.sleep(for: guardTime)
                    return .silent
                }
                let first = try await group.next() ?? .silent
                group.cancelAll()
                return first
            }
        }
    }
}

extension RawConnection {
    /// Sends `requests` on a new connection and reads until the server closes it or `within`
    /// passes (far less than the idle timeout): what came back, and whether the server closed.
    static func converse(port: Int, _ requests: String, within: Duration = .seconds(5)) async throws -> (text: String, closed: Bool) {
        try await open(port: port).channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: requests))
            let text = TextBox()
            return try await withThrowingTaskGroup(of: (String, Bool)?.self) { group in
                group.addTask {
                    for try await chunk in inbound { await text.append(String(buffer: chunk)) }
                    return (await text.value, true)
                }
                group.addTask {
                    try await Task.sleep(for: within)
                    return nil
                }
                let first = try await group.next() ?? nil
                group.cancelAll()
                if let first { return first }
                return (await text.value, false)
            }
        }
    }
}

extension RawConnection.Outcome {
    var status: Int? {
        guard case .answered(let text) = self, let line = text.split(separator: "\r\n").first else { return nil }
        let parts = line.split(separator: " ")
        return parts.count > 1 ? Int(parts[1]) : nil
    }
}

@Suite("Intake limits", .serialized)
struct IntakeLimitsTests {
    func head(_ path: String, contentLength: Int, extra: String = "") -> String {
        "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-GitHub-Event: pull_request\r\n"
            + "X-GitHub-Delivery: d-1\r\nX-Hub-Signature-256: sha256=00\r\nContent-Length: \(contentLength)\r\n\(extra)\r\n"
    }

    @Test("an unknown integration answers 404 and a Content-Length over 25 MB answers 413, both without waiting for the body")
    func refusedBeforeTheBody() async throws {
        let world = try await GitHubWorld()
        // Headers announce a body that is never sent: only an answer given before reading it arrives.
        let unknown = try await RawConnection.open(port: world.port)
            .exchange(head("/webhooks/github/int_0000000000000000", contentLength: 1_000_000))
        #expect(unknown.status == 404, "\(unknown)")
        let tooLarge = try await RawConnection.open(port: world.port)
            .exchange(head(world.integration.webhookPath, contentLength: 25 * 1024 * 1024 + 1))
        #expect(tooLarge.status == 413, "\(tooLarge)")
        // A body within the limit is still read and judged (here: a wrong signature).
        let body = "{}"
        let small = try await RawConnection.open(port: world.port).exchange(head(world.integration.webhookPath, contentLength: body.utf8.count) + body)
        #expect(small.status == 401, "\(small)")
        #expect(try await world.count("SELECT count(*) FROM deliveries") == 0)
        #expect(world.appliance.prometheus.emitToString().contains(#"sentinel_webhook_deliveries_total{platform="github",outcome="unknown_integration"} 1"#))
        await world.stop()
    }

    @Test("a body whose chunked framing is broken is answered 400, not 500: a webhook, the API and the console; nothing is stored")
    func brokenChunkedBodyRefused() async throws {
        let world = try await GitHubWorld()
        // A chunk size that is not hexadecimal: NIO's parser stops reading the body mid-request.
        let broken = "Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
        let requests = [
            ("webhook", "POST \(world.integration.webhookPath) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                + "X-GitHub-Event: pull_request\r\nX-GitHub-Delivery: d-broken\r\nX-Hub-Signature-256: sha256=00\r\n"),
            ("API", "POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"),
            ("console", "POST /sign-in HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"),
        ]
        for (name, head) in requests {
            let outcome = try await RawConnection.open(port: world.port).exchange(head + broken)
            #expect(outcome.status == 400, "\(name): \(outcome)")
        }
        #expect(try await world.count("SELECT count(*) FROM deliveries") == 0)
        #expect(!world.appliance.prometheus.emitToString().contains(#"status="500""#))
        // The answer says what is wrong in words, not in the parser's names.
        func answer(_ request: String) async throws -> String { try await RawConnection.converse(port: world.port, request).text }
        let login = "POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        let chunk = try await answer(login + broken)
        #expect(chunk.hasPrefix("HTTP/1.1 400") && chunk.contains("the request is not valid HTTP/1.1: a chunk size of its chunked body is not a hexadecimal number"),
                "\(chunk)")
        // Content-Length beside chunked is named as such (it was "not a number").
        for head in ["Content-Length: 2\r\nTransfer-Encoding: chunked\r\n", "Transfer-Encoding: chunked\r\nContent-Length: 2\r\n"] {
            let both = try await answer(login + head + "\r\n2\r\n{}\r\n0\r\n\r\n")
            #expect(both.hasPrefix("HTTP/1.1 400") && !both.contains("Content-Length is not a number,\"") && !both.contains("is not a number\""), "\(both)")
        }
        // With the headers every answer carries (the README says so; these lacked them).
        #expect(chunk.lowercased().contains("cache-control: no-store\r\n") && chunk.lowercased().contains("x-content-type-options: nosniff\r\n"), "\(chunk)")
        let gzip = try await answer(login + "Transfer-Encoding: gzip\r\n\r\n{}")
        #expect(gzip.hasPrefix("HTTP/1.1 400") && gzip.contains("its body's framing cannot be read (a Transfer-Encoding other than chunked"), "\(gzip)")
        // gzip before chunked: the chunks were taken off and the gzip read as the body.
        let gzipChunked = try await answer(login + "Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
        #expect(gzipChunked.hasPrefix("HTTP/1.1 400") && gzipChunked.contains("a Transfer-Encoding other than chunked: gzip"), "\(gzipChunked)")
        await world.stop()
    }

    @Test("a body sent with a Content-Encoding other than identity is answered 415 with Accept-Encoding: identity before it is read: a webhook (nothing stored), the API and the console; identity is read")
    func compressedBodiesRefused() async throws {
        let world = try await GitHubWorld()
        func answer(_ request: String) async throws -> String { try await RawConnection.converse(port: world.port, request).text }
        // A signed delivery whose header says gzip: its signature matches the bytes sent, but they are not what the sender meant.
        let body = String(decoding: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"), as: UTF8.self)
        let signature = GitHubWebhookSignature.sign(body: Data(body.utf8), secret: world.secret)
        func webhook(_ coding: String, delivery: String) -> String {
            "POST \(world.integration.webhookPath) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-GitHub-Event: pull_request\r\n"
                + "X-GitHub-Delivery: \(delivery)\r\nX-Hub-Signature-256: \(signature)\r\nContent-Encoding: \(coding)\r\n"
                + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        }
        let gzipped = try await answer(webhook("gzip", delivery: "d-gzip"))
        #expect(gzipped.hasPrefix("HTTP/1.1 415"), "\(gzipped)")
        #expect(gzipped.contains("Accept-Encoding: identity"), "\(gzipped)")
        #expect(gzipped.contains("Content-Encoding gzip; Sentinel reads bodies only as sent (identity)"), "\(gzipped)")
        #expect(try await answer(webhook("identity, br", delivery: "d-br")).hasPrefix("HTTP/1.1 415"))
        #expect(try await world.count("SELECT count(*) FROM deliveries") == 0)
        // identity is the body as sent.
        let plain = try await answer(webhook("identity", delivery: "d-identity"))
        #expect(plain.hasPrefix("HTTP/1.1 202"), "\(plain)")
        #expect(try await world.count("SELECT count(*) FROM deliveries") == 1)
        // The API and a console form, the same.
        let login = #"{"email":"nobody@example.com","password":"not the password at all"}"#
        let api = try await answer("POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + "Content-Encoding: deflate\r\nContent-Length: \(login.utf8.count)\r\nConnection: close\r\n\r\n\(login)")
        #expect(api.hasPrefix("HTTP/1.1 415") && api.contains("unsupported-content-encoding"), "\(api)")
        let form = "email=nobody%40example.com&password=x"
        let console = try await answer("POST /sign-in HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            + "Content-Encoding: br\r\nContent-Length: \(form.utf8.count)\r\nConnection: close\r\n\r\n\(form)")
        #expect(console.hasPrefix("HTTP/1.1 415"), "\(console)")
        #expect(!world.appliance.prometheus.emitToString().contains(#"status="500""#))
        await world.stop()
    }

    @Test("a path that exists asked with a method it does not take is answered 405 with Allow, not 404; unknown paths and unknown ids stay 404")
    func methodNotAllowed() async throws {
        let world = try await GitHubWorld()
        func answer(_ method: String, _ path: String) async throws -> String {
            try await RawConnection.converse(port: world.port, "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").text
        }
        let health = try await answer("DELETE", "/healthz")
        #expect(health.hasPrefix("HTTP/1.1 405"), "\(health)")
        #expect(health.contains("Allow: GET, HEAD\r\n"), "\(health)")
        #expect(health.contains("DELETE is not allowed here; /healthz takes GET, HEAD"), "\(health)")
        let hook = try await answer("GET", world.integration.webhookPath)
        #expect(hook.hasPrefix("HTTP/1.1 405") && hook.contains("Allow: POST\r\n"), "\(hook)")
        let api = try await answer("PUT", "/api/v1/workspaces")
        #expect(api.hasPrefix("HTTP/1.1 405") && api.contains("Allow: GET, HEAD, POST\r\n"), "\(api)")
        let console = try await answer("DELETE", "/sign-in")
        #expect(console.hasPrefix("HTTP/1.1 405") && console.contains("Allow: GET, HEAD, POST\r\n"), "\(console)")
        // What does not exist stays 404: an unknown path, and an unknown id on a route that matched.
        #expect(try await answer("GET", "/no/such/page").hasPrefix("HTTP/1.1 404"))
        #expect(try await answer("DELETE", "/no/such/page").hasPrefix("HTTP/1.1 404"))
        #expect(try await answer("POST", "/webhooks/github/int_0000000000000000").hasPrefix("HTTP/1.1 404"))
        #expect(!world.appliance.prometheus.emitToString().contains(#"status="500""#))
        await world.stop()
    }

    @Test("webhook bodies past server.max_webhook_bytes_in_flight get 503 with Retry-After before they are read; small ones always pass; the budget comes back")
    func bodiesInFlightBounded() async throws {
        let world = try await GitHubWorld(config: { $0.server.maxWebhookBytesInFlight = 1_048_576 })
        func delivery(_ size: Int) -> String { "{\"a\":\"" + String(repeating: "x", count: size - 8) + "\"}" }
        let (size, large, small) = (1_500_000, delivery(1_500_000), delivery(20_000))
        let path = world.integration.webhookPath
        // The first delivery's body arrives slowly: its size is held while it is read.
        let slow = try await RawConnection.open(port: world.port)
        let (busy, smallAnswer, later) = try await slow.channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: head(path, contentLength: size) + large.prefix(1_000)))
            #expect(await eventually { world.appliance.prometheus.emitToString().contains("sentinel_webhook_body_bytes_held \(size)") })
            // A second large one that does not fit beside it is refused without reading its body.
            let busy = try await RawConnection.open(port: world.port).exchange(head(path, contentLength: size) + large)
            // A small one is read all the same (here: judged on its signature).
            let smallAnswer = try await RawConnection.open(port: world.port).exchange(head(path, contentLength: small.utf8.count) + small)
            try await outbound.write(ByteBuffer(string: String(large.dropFirst(1_000))))
            var text = ""
            for try await chunk in inbound {
                text += String(buffer: chunk)
                if text.contains("\r\n\r\n") { break }
            }
            return (busy, smallAnswer, RawConnection.Outcome.answered(text))
        }
        #expect(busy.status == 503, "\(busy)")
        if case .answered(let text) = busy { #expect(text.contains("Retry-After: 5"), "\(text)") }
        #expect(smallAnswer.status == 401, "\(smallAnswer)")
        #expect(later.status == 401, "\(later)")
        // Once the first is answered its size is given back: the same delivery is read again.
        let after = try await RawConnection.open(port: world.port).exchange(head(path, contentLength: size) + large)
        #expect(after.status == 401, "\(after)")
        let metrics = world.appliance.prometheus.emitToString()
        #expect(metrics.contains(#"sentinel_webhook_deliveries_total{platform="github",outcome="busy"} 1"#), "\(metrics)")
        #expect(metrics.contains("sentinel_webhook_body_bytes_held 0"))
        await world.stop()
    }

    @Test("a connection that sends nothing, or half a request head, is closed after server.idle_timeout_seconds")
    func idleConnectionsAreClosed() async throws {
        let world = try await GitHubWorld(config: { $0.server.idleTimeoutSeconds = 0.5 })
        let silent = try await RawConnection.open(port: world.port).exchange()
        #expect(silent == .closed(""), "\(silent)")
        let halfHead = try await RawConnection.open(port: world.port).exchange("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        #expect(halfHead == .closed(""), "\(halfHead)")
        // A complete request on a fresh connection is still answered.
        let healthy = try await RawConnection.open(port: world.port).exchange("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        #expect(healthy.status == 200, "\(healthy)")
        await world.stop()
    }

    @Test("a request that trickles in (a byte at a time, never idle) is cut off at server.request_timeout_seconds with a 408, answered early or not; a whole one is answered")
    func tricklingRequestCutOff() async throws {
        let world = try await GitHubWorld(config: { $0.server.requestTimeoutSeconds = 1 })
        // 1,000 body bytes a tenth of a second apart would take 100 s, and the idle timeout (60 s) never trips.
        enum Event: Sendable { case closed(String), sentAll, writeFailed }
        func trickle(to path: String) async throws -> String {
            let connection = try await RawConnection.open(port: world.port)
            return try await connection.channel.executeThenClose { inbound, outbound in
                await withTaskGroup(of: Event.self) { group in
                    group.addTask {
                        var text = ""
                        do { for try await chunk in inbound { text += String(buffer: chunk) } } catch {}   // a reset ends it too
                        return .closed(text)
                    }
                    group.addTask {
                        do {
                            try await outbound.write(ByteBuffer(string: "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                                                + "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"))
                            for _ in 0..<1_000 {
                                try await outbound.write(ByteBuffer(string: " "))
                                try await Task.sleep(for: .milliseconds(100))
                            }
                            return .sentAll
                        } catch {
                            return .writeFailed                    // the server closed first; the reader reports what it got
                        }
                    }
                    defer { group.cancelAll() }
                    while let event = await group.next() {
                        switch event {
                        case .closed(let text): return "closed after: \(text)"
                        case .sentAll: return "the whole body was sent"
                        case .writeFailed: continue
                        }
                    }
                    return "nothing"
                }
            }
        }
        // The integration's own path: its route reads the body (before the signature can be checked).
        let read = try await trickle(to: world.integration.webhookPath)
        #expect(read.hasPrefix("closed after: HTTP/1.1 408"), "\(read)")
        #expect(read.lowercased().contains("connection: close") && read.contains("urn:sentinel:problem:request-timeout")
                && read.contains("server.request_timeout_seconds"), "\(read)")
        // No such integration: answered 404 at once; the rest of the body, read and dropped, is held to the same time.
        let answered = try await trickle(to: "/webhooks/github/int_0000000000000000")
        #expect(answered.hasPrefix("closed after: HTTP/1.1 404"), "\(answered)")
        let whole = try await RawConnection.open(port: world.port).exchange("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        #expect(whole.status == 200, "\(whole)")
        await world.stop()
    }

    @Test("on a kept-alive connection the request deadline counts from the last response: requests that come in time over longer than it are answered, a trickle after them is cut off with a 408")
    func requestDeadlineFromLastResponse() async throws {
        let world = try await GitHubWorld(config: { $0.server.requestTimeoutSeconds = 1 })
        let connection = try await RawConnection.open(port: world.port)
        let (answered, cutOff) = try await connection.channel.executeThenClose { inbound, outbound in
            var iterator = inbound.makeAsyncIterator()
            var answered = 0
            // Eight requests 0.4 s apart: 2.8 s on one connection, each within the 1 s of the previous answer.
            for _ in 0..<8 {
                try await outbound.write(ByteBuffer(string: "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
                var text = ""
                while !(text.contains("\r\n\r\n") && text.hasSuffix("}")), let chunk = try await iterator.next() { text += String(buffer: chunk) }
                if text.hasPrefix("HTTP/1.1 200") { answered += 1 }
                try await Task.sleep(for: .milliseconds(400))
            }
            // Then a request that never arrives whole (a byte every 0.1 s of 1,000).
            try await outbound.write(ByteBuffer(string: "POST \(world.integration.webhookPath) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                                + "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"))
            for _ in 0..<150 {                             // at most 150 of the 1,000 bytes, over 15 s
                do { try await outbound.write(ByteBuffer(string: " ")) } catch { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            var text = ""
            while let chunk = try? await iterator.next() { text += String(buffer: chunk) }
            return (answered, text)
        }
        #expect(answered == 8)
        #expect(cutOff.hasPrefix("HTTP/1.1 408") && cutOff.contains("urn:sentinel:problem:request-timeout"), "\(cutOff)")
        await world.stop()
    }

    @Test("a request with Expect: 100-continue gets 100 Continue before it sends its body, then its answer")
    func expectContinueAnswered() async throws {
        let world = try await GitHubWorld()
        let body = #"{"zen":"Keep it logically awesome.","hook_id":1}"#
        let connection = try await RawConnection.open(port: world.port)
        let (interim, final) = try await connection.channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: "POST \(world.integration.webhookPath) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                                + "Content-Type: application/json\r\nX-GitHub-Event: ping\r\nX-GitHub-Delivery: expect-1\r\n"
                                                + "X-Hub-Signature-256: sha256=\(String(repeating: "0", count: 64))\r\n"
                                                + "Expect: 100-continue\r\nContent-Length: \(body.utf8.count)\r\n\r\n"))
            // Nothing of the body is sent until the server says to go on (a client would wait about a second).
            var text = ""
            var iterator = inbound.makeAsyncIterator()
            while !text.contains("\r\n\r\n"), let chunk = try await iterator.next() { text += String(buffer: chunk) }
            let interim = text
            try await outbound.write(ByteBuffer(string: body))
            text = String(interim[interim.range(of: "\r\n\r\n")!.upperBound...])
            while !text.contains("\r\n\r\n"), let chunk = try await iterator.next() { text += String(buffer: chunk) }
            return (interim, text)
        }
        #expect(interim.hasPrefix("HTTP/1.1 100 Continue\r\n"), "\(interim)")
        #expect(final.hasPrefix("HTTP/1.1 401"), "the signature is checked once the body is in: \(final)")
        // Without the header there is no interim answer.
        let plain = try await RawConnection.open(port: world.port).exchange("POST \(world.integration.webhookPath) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + "Content-Type: application/json\r\nX-GitHub-Event: ping\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body)
        guard case .answered(let answer) = plain else { Issue.record("\(plain)"); return }
        #expect(answer.hasPrefix("HTTP/1.1 401"), "\(answer)")
        // A body larger than any route takes gets its 413 at once, with no 100 that would have the client send it.
        let tooLarge = try await RawConnection.open(port: world.port).exchange("POST \(world.integration.webhookPath) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + "Content-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: \(26 * 1024 * 1024)\r\n\r\n")
        guard case .answered(let refused) = tooLarge else { Issue.record("\(tooLarge)"); return }
        #expect(refused.hasPrefix("HTTP/1.1 413"), "\(refused)")
        // Each route's own limit: 2 MiB to the API (1 MiB) gets no 100 either.
        let api = try await RawConnection.open(port: world.port).exchange("PUT /api/v1/workspaces/\(world.workspace.rawValue)/ai-budget HTTP/1.1\r\n"
            + "Host: 127.0.0.1\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: \(2 << 20)\r\n\r\n")
        guard case .answered(let apiAnswer) = api else { Issue.record("\(api)"); return }
        #expect(!apiAnswer.hasPrefix("HTTP/1.1 100"), "\(apiAnswer)")
        await world.stop()
    }

    @Test("a connection is closed after the answer to a request that did not ask to keep it (HTTP/1.0, Connection: Close); kept for one that did, and says so to HTTP/1.0")
    func connectionPersistence() async throws {
        let world = try await GitHubWorld(config: { $0.server.idleTimeoutSeconds = 60 })
        func converse(_ requests: String) async throws -> (text: String, closed: Bool) {
            try await RawConnection.converse(port: world.port, requests)
        }
        func responses(_ text: String) -> Int { text.components(separatedBy: "HTTP/1.1 200 OK").count - 1 }

        // HTTP/1.0 without keep-alive: one answer, marked, then the server closes.
        let plain10 = try await converse("GET /healthz HTTP/1.0\r\n\r\n")
        #expect(plain10.closed && responses(plain10.text) == 1 && plain10.text.lowercased().contains("connection: close"), "\(plain10)")
        // `close` in any case, among other options, on HTTP/1.1; the request pipelined after it is not answered.
        let close11 = try await converse("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: TE, Close\r\nTE: trailers\r\n\r\n"
                                         + "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        #expect(close11.closed && responses(close11.text) == 1 && close11.text.lowercased().contains("connection: close"), "\(close11)")
        // HTTP/1.0 asking for keep-alive: both pipelined requests answered, each saying keep-alive; the connection stays open.
        let kept10 = try await converse("GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /readyz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        #expect(!kept10.closed && responses(kept10.text) == 2
                && kept10.text.lowercased().components(separatedBy: "connection: keep-alive").count == 3, "\(kept10)")
        // HTTP/1.1 by default: kept open, no Connection header added.
        let kept11 = try await converse("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        #expect(!kept11.closed && responses(kept11.text) == 1 && !kept11.text.lowercased().contains("connection:"), "\(kept11)")
        // A webhook delivery over HTTP/1.0 (no signature here: 401) is answered and closed the same way.
        let hook10 = try await converse("POST \(world.integration.webhookPath) HTTP/1.0\r\nContent-Type: application/json\r\n"
                                        + "X-GitHub-Event: ping\r\nContent-Length: 2\r\n\r\n{}")
        #expect(hook10.closed && hook10.text.hasPrefix("HTTP/1.1 401") && hook10.text.lowercased().contains("connection: close"), "\(hook10)")
        await world.stop()
    }

    @Test("an HTTP/1.0 request that asked for keep-alive but is cut off (408) is told the connection closes, not that it stays")
    func keepAliveAskedButCutOff() async throws {
        let world = try await GitHubWorld(config: { $0.server.requestTimeoutSeconds = 1 })
        let cutOff = try await RawConnection.converse(port: world.port, "POST /api/v1/auth/login HTTP/1.0\r\nConnection: keep-alive\r\n"
                                                      + "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        #expect(cutOff.closed && cutOff.text.hasPrefix("HTTP/1.1 408") && cutOff.text.lowercased().contains("connection: close")
                && !cutOff.text.lowercased().contains("keep-alive"), "\(cutOff)")
        await world.stop()
    }

    @Test("a request head over server.max_header_bytes is answered 431")
    func oversizedHeadRefused() async throws {
        let world = try await GitHubWorld(config: { $0.server.maxHeaderBytes = 4_096 })
        let padding = String(repeating: "a", count: 8_000)
        let big = try await RawConnection.open(port: world.port).exchange("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: \(padding)\r\n\r\n")
        #expect(big.status == 431, "\(big)")
        let normal = try await RawConnection.open(port: world.port).exchange("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: short\r\n\r\n")
        #expect(normal.status == 200, "\(normal)")
        await world.stop()
    }

    @Test("a request whose head breaks HTTP/1.1 (its Host missing, given twice or not a host among them) gets a problem document saying what is wrong and the connection closes; it got an empty 400, or was served")
    func malformedHeadsExplained() async throws {
        let world = try await GitHubWorld(config: { $0.server.maxHeaderBytes = 4_096 })
        func answer(_ request: String) async throws -> (text: String, closed: Bool) { try await RawConnection.converse(port: world.port, request) }
        let cases = [
            ("POST /api/v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", "it gives Content-Length twice with different values"),
            ("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header: x\r\n\r\n", "a header holds a character HTTP does not allow"),
            // RFC 9112 §3.2: no Host in HTTP/1.1, Host twice (in any version), a Host that is not one.
            ("GET /healthz HTTP/1.1\r\n\r\n", "it has no Host header, which every HTTP/1.1 request must send"),
            ("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nhost: evil.example\r\n\r\n", "it gives Host 2 times"),
            ("GET /healthz HTTP/1.0\r\nHost: a.example\r\nHost: b.example\r\n\r\n", "it gives Host 2 times"),
            ("POST /api/v1/auth/login HTTP/1.1\r\nHost: evil.example/x\r\nContent-Length: 2\r\n\r\n{}", "its Host is not a host name or address with an optional port"),
            ("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:80:80\r\n\r\n", "its Host is not a host name or address with an optional port"),
            ("GET /healthz HTTP/1.1\r\nHost: [::1\r\n\r\n", "its Host is not a host name or address with an optional port"),
        ]
        for (request, reason) in cases {
            let (text, closed) = try await answer(request)
            #expect(text.hasPrefix("HTTP/1.1 400"), "\(text)")
            #expect(text.contains("Content-Type: application/problem+json") || text.contains("content-type: application/problem+json"), "\(text)")
            #expect(text.contains("the request is not valid HTTP/1.1: ") && text.contains(reason), "\(reason): \(text)")
            #expect(text.lowercased().contains("x-request-id: "), "\(text)")
            #expect(closed, "the connection closes after the answer")
        }
        // A head over server.max_header_bytes is 431 (RFC 6585), saying so.
        let (big, bigClosed) = try await answer("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + String(repeating: "a", count: 8_000) + "\r\n\r\n")
        #expect(big.hasPrefix("HTTP/1.1 431 Request Header Fields Too Large"), "\(big)")
        #expect(big.contains("the request's head is larger than this server reads (server.max_header_bytes)") && bigClosed, "\(big)")
        // A well-formed request on a new connection is answered as ever, whatever form its Host takes.
        #expect(try await answer("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").text.hasPrefix("HTTP/1.1 200"))
        for host in ["sentinel.example.com", "[::1]:8443", "127.0.0.1:443", "xn--bcher-kva.example", "", "my%2Dhost"] {
            let (text, _) = try await answer("GET /healthz HTTP/1.1\r\nHost: \(host)\r\nConnection: close\r\n\r\n")
            #expect(text.hasPrefix("HTTP/1.1 200"), "Host: \(host): \(text)")
        }
        // An HTTP/1.0 request may leave Host out.
        #expect(try await answer("GET /healthz HTTP/1.0\r\n\r\n").text.hasPrefix("HTTP/1.1 200"))
        // A request pipelined before a refused one is answered first; nothing after the refused one is.
        let (pipelined, pipelinedClosed) = try await answer("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            + "GET /healthz HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        #expect(pipelined.hasPrefix("HTTP/1.1 200"), "\(pipelined)")
        #expect(pipelined.components(separatedBy: "HTTP/1.1 200 OK").count == 2 && pipelined.components(separatedBy: "HTTP/1.1 400 Bad Request").count == 2, "\(pipelined)")
        #expect(pipelined.contains("it has no Host header") && pipelinedClosed, "\(pipelined)")
        await world.stop()
    }

    @Test("past server.max_connections a new connection is served only once an open one closes")
    func connectionLimit() async throws {
        let world = try await GitHubWorld(config: { $0.server.maxConnections = 1 })
        let holder = try await RawConnection.open(port: world.port)
        let served = Rendezvous<Bool>()
        let release = Rendezvous<Bool>()
        let released = Recorder<Bool>()
        // The first connection is served once, then stays open (keep-alive) until released.
        async let holding: Void = holder.channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
            var text = ""
            for try await chunk in inbound {
                text += String(buffer: chunk)
                if text.contains("\r\n\r\n") { break }
            }
            await served.set(true)
            _ = await release.wait()
        }
        _ = await served.wait()
        // The second connection notes whether the first had been released when its answer came.
        @Sendable func secondRequest() async throws -> (RawConnection.Outcome, afterRelease: Bool) {
            let outcome = try await RawConnection.open(port: world.port)
                .exchange("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", guardTime: .seconds(20))
            return (outcome, !released.all.isEmpty)
        }
        async let second = secondRequest()
        // Ample time for an unlimited server to answer the second connection while the first is open.
        try await Task.sleep(for: .seconds(1))
        released.append(true)
        await release.set(true)
        try await holding
        let (outcome, afterRelease) = try await second
        #expect(outcome.status == 200, "\(outcome)")
        #expect(afterRelease, "the second connection is answered only after the first closed")
        await world.stop()
    }

    @Test("HTTPS refuses a TLS 1.1 client and serves TLS 1.2 with forward-secret AEAD suites only (not CBC with SHA-1)")
    func tlsVersions() async throws {
        let world = try await GitHubWorld(config: { $0.server.tlsEnabled = true })
        func get(min: TLSVersion, max: TLSVersion, ciphers: String? = nil) async throws -> Int {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.certificateVerification = .none
            tls.minimumTLSVersion = min
            tls.maximumTLSVersion = max
            if let ciphers { tls.cipherSuites = ciphers }
            let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: tls))
            do {
                let response = try await client.execute(HTTPClientRequest(url: "https://127.0.0.1:\(world.port)/healthz"), timeout: .seconds(10))
                _ = try await response.body.collect(upTo: 1 << 16)
                try await client.shutdown()
                return Int(response.status.code)
            } catch {
                try await client.shutdown()
                throw error
            }
        }
        await #expect(throws: (any Error).self) { _ = try await get(min: .tlsv1, max: .tlsv11) }
        #expect(try await get(min: .tlsv12, max: .tlsv12) == 200)
        await #expect(throws: (any Error).self) { _ = try await get(min: .tlsv12, max: .tlsv12, ciphers: "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA") }
        #expect(try await get(min: .tlsv12, max: .tlsv12, ciphers: "ECDHE-ECDSA-AES128-GCM-SHA256") == 200)
        #expect(try await get(min: .tlsv13, max: .tlsv13) == 200)
        await world.stop()
    }

    @Test("plain HTTP sent to the HTTPS port gets a 400 in plain HTTP saying to use https://, not an empty reply; TLS clients are served as before")
    func plainHTTPOnTLSPort() async throws {
        let world = try await GitHubWorld(config: { $0.server.tlsEnabled = true })
        let (text, closed) = try await RawConnection.converse(port: world.port, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        #expect(text.hasPrefix("HTTP/1.1 400 Bad Request\r\n") && text.contains("Content-Type: application/problem+json\r\n"), "\(text)")
        #expect(text.contains("this port speaks HTTPS, and the request came in plain HTTP: send it to https://") && closed, "\(text)")
        // A TLS client on the same listener.
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .none
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: tls))
        let response = try await client.execute(HTTPClientRequest(url: "https://127.0.0.1:\(world.port)/healthz"), timeout: .seconds(10))
        _ = try await response.body.collect(upTo: 1 << 16)
        try await client.shutdown()
        #expect(response.status == .ok)
        // Bytes that are neither TLS nor an HTTP method still meet TLS, which closes the connection.
        let garbage = try await RawConnection.converse(port: world.port, "\u{1}\u{2}garbage\r\n\r\n")
        #expect(!garbage.text.contains("HTTP/1.1") && garbage.closed)
        await world.stop()
    }
}

/// Text read by one task and returned by another.
private actor TextBox {
    private(set) var value = ""
    func append(_ text: String) { value += text }
}
