import Foundation
import Tracing
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// How a mail server is reached: STARTTLS on a plain connection (usually port 587) or implicit TLS
/// (usually 465). There is no unencrypted mode: credentials and notices never travel in clear text.
public enum SMTPSecurity: String, Codable, Sendable, CaseIterable {
    case starttls
    case tls
}

/// A mail server and how to sign in to it.
public struct SMTPServer: Sendable {
    public var host: String
    public var port: Int
    public var security: SMTPSecurity
    public var username: String?
    public var password: String?
    /// Extra trust roots (PEM), e.g. an internal CA; nil = the system's.
    public var caBundlePEM: String?
    /// Connecting, and waiting for each reply of the server.
    public var timeout: Duration

    public init(host: String, port: Int, security: SMTPSecurity, username: String? = nil, password: String? = nil,
                caBundlePEM: String? = nil, timeout: Duration = .seconds(30)) {
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self.password = password
        self.caBundlePEM = caBundlePEM
        self.timeout = timeout
    }
}

/// One reply of an SMTP server: its code and its text lines (as sent, without the code).
public struct SMTPReply: Sendable, Equatable {
    public var code: Int
    public var lines: [String]

    public init(code: Int, lines: [String]) {
        self.code = code
        self.lines = lines
    }

    /// The reply as the server wrote it, on one line: `535 5.7.8 Authentication credentials invalid`.
    public var text: String {
        StoredText.singleLine(([String(code)] + lines.filter { !$0.isEmpty }).joined(separator: " ")).trimmingCharacters(in: .whitespaces)
    }

}

public enum SMTPError: Error, CustomStringConvertible, Equatable {
    /// The server answered a step with an error reply (4xx transient, 5xx permanent).
    case rejected(step: String, reply: SMTPReply)
    /// The server's certificate chain or name did not verify (or the TLS handshake failed).
    case untrustedServer(String)
    /// The server lacks something Sentinel needs (STARTTLS, a supported AUTH mechanism).
    case unsupported(String)
    case timeout(String)
    case connection(String)
    /// The destination is not allowed (`DestinationPolicy`); nothing was sent.
    case destinationRefused(String)

    public var description: String {
        switch self {
        case .rejected(let step, let reply): return "the mail server answered \(step) with \(reply.text)"
        case .untrustedServer(let message): return "the mail server's certificate is not trusted: \(message)"
        case .unsupported(let message): return "the mail server \(message)"
        case .timeout(let step): return "the mail server did not answer in time (\(step))"
        case .connection(let message): return "mail server connection failed: \(message)"
        case .destinationRefused(let message): return "destination refused: \(message)"
        }
    }

    /// Worth trying again later (a 4xx reply, a timeout, a dropped connection).
    public var isTransient: Bool {
        switch self {
        case .rejected(_, let reply): return (400..<500).contains(reply.code)
        case .timeout, .connection: return true
        case .untrustedServer, .unsupported, .destinationRefused: return false
        }
    }
}

/// A plain-text mail, rendered as an RFC 5322 message (MIME text/plain, UTF-8, quoted-printable).
public struct MailMessage: Sendable, Equatable {
    public var from: String
    public var to: [String]
    public var subject: String
    public var body: String
    public var date: Date
    public var messageID: String

    /// `messageID`: the whole header value; else `idPart@` the sender's domain (`idPart`: a random
    /// one when nil).
    public init(from: String, to: [String], subject: String, body: String, date: Date = Date(), messageID: String? = nil, idPart: String? = nil) {
        self.from = from
        self.to = to
        self.subject = subject
        self.body = body
        self.date = date
        let domain = from.split(separator: "@").last.map(String.init) ?? "sentinel.invalid"
        self.messageID = messageID ?? "<\(idPart ?? RandomIdentifier.uuid())@\(domain)>"
    }

    /// Header and body with CRLF line ends, before dot-stuffing.
    public func rendered() -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss '+0000'"
        let headers = [
            "Date: \(formatter.string(from: date))",
            "Message-ID: \(messageID)",
            "From: \(from)",
            // Folded after each address: on one line, twenty addresses passed RFC 5322's 998 bytes.
            "To: \(to.joined(separator: ",\r\n "))",
            "Subject: \(Self.encodedHeader(StoredText.singleLine(subject)))",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: quoted-printable",
            "Auto-Submitted: auto-generated",
        ]
        return headers.joined(separator: "\r\n") + "\r\n\r\n" + Self.quotedPrintable(body)
    }

    /// A header value as is when it is ASCII, else as RFC 2047 encoded words (base64, 39 bytes,
    /// each at most 75 characters) folded onto continuation lines.
    static func encodedHeader(_ value: String) -> String {
        // Text that reads as an encoded word (`=?UTF-8?B?…?=`) is encoded too: as it was, a mail
        // client decoded it into other text than Sentinel wrote.
        if value.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }), value.utf8.count <= 900, !value.contains("=?") { return value }
        var words: [String] = []
        var chunk: [UInt8] = []
        // By Unicode scalar, not by Character: one character can be any number of scalars (a letter
        // and 600 combining marks), which made one encoded word past the 998-byte line limit.
        // Adjacent encoded words are read as one text, so a character may span two.
        for scalar in value.unicodeScalars {
            let bytes = Array(String(scalar).utf8)
            if chunk.count + bytes.count > 39 {
                words.append("=?UTF-8?B?\(Data(chunk).base64EncodedString())?=")
                chunk = []
            }
            chunk += bytes
        }
        if !chunk.isEmpty { words.append("=?UTF-8?B?\(Data(chunk).base64EncodedString())?=") }
        return words.joined(separator: "\r\n ")
    }

    /// RFC 2045 quoted-printable: lines of at most 76 characters (soft breaks `=`), CRLF hard breaks.
    static func quotedPrintable(_ text: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [String] = []
        let normalized = text.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
        for line in normalized.split(separator: "\n", omittingEmptySubsequences: false) {
            let bytes = Array(line.utf8)
            var current = ""
            for (index, byte) in bytes.enumerated() {
                let last = index == bytes.count - 1
                let token: String
                if (byte >= 33 && byte <= 126 && byte != UInt8(ascii: "=")) || ((byte == 0x20 || byte == 0x09) && !last) {
                    token = String(UnicodeScalar(byte))
                } else {
                    token = "=" + String(decoding: [hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]], as: UTF8.self)
                }
                if current.utf8.count + token.utf8.count > 75 {
                    out.append(current + "=")
                    current = ""
                }
                current += token
            }
            out.append(current)
        }
        return out.joined(separator: "\r\n")
    }

    /// The DATA payload: every line starting with `.` gets another (RFC 5321 4.5.2), then `CRLF.CRLF`.
    func dataPayload() -> String {
        let stuffed = rendered().components(separatedBy: "\r\n").map { $0.hasPrefix(".") ? "." + $0 : $0 }
        return stuffed.joined(separator: "\r\n") + "\r\n.\r\n"
    }
}

/// Sends mail. The production implementation is `NIOSMTPClient`.
public protocol MailTransport: Sendable {
    /// Delivers `mail` through `server`; returns the server's reply accepting the message, or throws `SMTPError`.
    func send(_ mail: MailMessage, via server: SMTPServer) async throws -> SMTPReply
}

/// An SMTP client on SwiftNIO: one connection per message, STARTTLS or implicit TLS, AUTH PLAIN or
/// LOGIN (only after TLS is up), the destination checked like outbound HTTP (`DestinationPolicy`:
/// the host is resolved here, every address checked, the connection made to a checked one; the
/// certificate is checked against the host name).
public struct NIOSMTPClient: MailTransport {
    public let destinations: DestinationPolicy
    let resolver: any HostResolver
    /// The name Sentinel introduces itself with (`EHLO`).
    let clientName: String

    public init(destinations: DestinationPolicy = DestinationPolicy(), resolver: any HostResolver = SystemHostResolver(),
                clientName: String = "sentinel.localdomain") {
        self.destinations = destinations
        self.resolver = resolver
        self.clientName = clientName
    }

    /// Like an outbound HTTP call, a client span and one log line: `SMTP`, host, port, the
    /// security mode, the reply code, duration and attempt (never an address, a password or the message).
    public func send(_ mail: MailMessage, via server: SMTPServer) async throws -> SMTPReply {
        let metadata: Logger.Metadata = ["method": "SMTP", "host": "\(server.host)", "port": "\(server.port)", "security": "\(server.security.rawValue)"]
        return try await Telemetry.outboundCall("SMTP \(server.security.rawValue)", metadata: metadata, status: \.code) { span in
            span.attributes["server.address"] = server.host
            span.attributes["server.port"] = server.port
            let reply = try await deliver(mail, via: server)
            span.attributes["smtp.reply_code"] = reply.code
            return reply
        }
    }

    private func deliver(_ mail: MailMessage, via server: SMTPServer) async throws -> SMTPReply {
        let context = try Self.tlsContext(server.caBundlePEM)
        let address = try await checkedAddress(server)
        let serverName: String? = IPAddress(server.host) == nil ? server.host : nil
        let failure = SMTPFailure()
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.nanoseconds(server.timeout.nanoseconds))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if server.security == .tls {
                            try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: serverName))
                        }
                        try channel.pipeline.syncOperations.addHandler(SMTPClientHandler(failure: failure))
                    }
                }
                .connect(to: address).get()
        } catch let error as ChannelError {
            if case .connectTimeout = error { throw SMTPError.timeout("connecting to \(server.host):\(server.port)") }
            throw SMTPError.connection("\(server.host):\(server.port): \(ConnectionFailure.reason(error))")
        } catch {
            throw SMTPError.connection("\(server.host):\(server.port): \(ConnectionFailure.reason(error))")
        }
        let session = SMTPSession(channel: channel, timeout: server.timeout, failure: failure)
        do {
            let reply = try await session.deliver(mail, server: server, tls: context, serverName: serverName, clientName: clientName)
            try? await channel.close()
            return reply
        } catch {
            try? await channel.close()
            throw error
        }
    }

    static func tlsContext(_ caBundlePEM: String?) throws -> NIOSSLContext {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        if let pem = caBundlePEM {
            let certificates = (try? NIOSSLCertificate.fromPEMBytes(Array(pem.utf8))) ?? []
            guard !certificates.isEmpty else { throw SMTPError.untrustedServer("the CA bundle holds no certificate") }
            tls.trustRoots = .certificates(certificates)
        }
        do { return try NIOSSLContext(configuration: tls) } catch { throw SMTPError.connection("TLS setup: \(error)") }
    }

    func checkedAddress(_ server: SMTPServer) async throws -> SocketAddress {
        var host = server.host
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        let addresses: [IPAddress]
        if let literal = IPAddress(host) { addresses = [literal] } else {
            do { addresses = try await resolver.resolve(host: host, port: server.port) } catch let error as DestinationError {
                throw SMTPError.destinationRefused(error.description)
            } catch {
                throw SMTPError.connection("\(host): \(ConnectionFailure.reason(error))")
            }
        }
        guard let first = addresses.first else { throw SMTPError.connection("\(host) resolves to no address") }
        do { for address in addresses { try destinations.check(address, host: host) } } catch let error as DestinationError {
            throw SMTPError.destinationRefused(error.description)
        }
        do { return try SocketAddress(ipAddress: first.description, port: server.port) } catch {
            throw SMTPError.connection("\(host): \(error)")
        }
    }
}

/// The conversation on one connection: each step sends a line (or nothing, for the greeting) and
/// awaits the server's reply, with `timeout` per reply.
struct SMTPSession {
    let channel: any Channel
    let timeout: Duration
    let failure: SMTPFailure

    func deliver(_ mail: MailMessage, server: SMTPServer, tls: NIOSSLContext, serverName: String?, clientName: String) async throws -> SMTPReply {
        try await expect("the greeting", nil)
        var features = try await ehlo(clientName)
        if server.security == .starttls {
            guard features.contains(where: { $0.uppercased() == "STARTTLS" }) else {
                throw SMTPError.unsupported("does not offer STARTTLS")
            }
            try await expect("STARTTLS", "STARTTLS")
            try await channel.eventLoop.submit { [channel] in
                // RFC 3207 §4.2: nothing the server sent in the clear after its go-ahead may be read
                // as a reply once TLS is up. Replies sent along with it (a STARTTLS injection) were
                // taken as the answers to the next commands: a refused recipient read as accepted.
                let handler = try channel.pipeline.syncOperations.handler(type: SMTPClientHandler.self)
                guard handler.isDrained else {
                    throw SMTPError.connection("the server sent more after its STARTTLS reply, before TLS began; refused (RFC 3207 §4.2)")
                }
                try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls, serverHostname: serverName), position: .first)
            }.get()
            // The handshake runs before the next reply arrives; its failure fails this step.
            features = try await ehlo(clientName)
        }
        if let username = server.username, let password = server.password {
            let mechanisms = features.first { $0.uppercased().hasPrefix("AUTH ") || $0.uppercased().hasPrefix("AUTH=") }
                .map { $0.dropFirst(5).uppercased().split(separator: " ").map(String.init) } ?? []
            if mechanisms.contains("PLAIN") {
                let token = Data(([0] + Array(username.utf8) + [0] + Array(password.utf8))).base64EncodedString()
                try await expect("AUTH PLAIN", "AUTH PLAIN \(token)")
            } else if mechanisms.contains("LOGIN") {
                try await expect("AUTH LOGIN", "AUTH LOGIN", codes: 334...334)
                try await expect("AUTH LOGIN", Data(username.utf8).base64EncodedString(), codes: 334...334)
                try await expect("AUTH LOGIN", Data(password.utf8).base64EncodedString())
            } else {
                throw SMTPError.unsupported("offers no AUTH PLAIN or LOGIN (it offers: \(mechanisms.isEmpty ? "none" : mechanisms.joined(separator: " ")))")
            }
        }
        try await expect("MAIL FROM", "MAIL FROM:<\(mail.from)>")
        for recipient in mail.to { try await expect("RCPT TO <\(recipient)>", "RCPT TO:<\(recipient)>") }
        try await expect("DATA", "DATA", codes: 354...354)
        let accepted = try await expect("the message", mail.dataPayload(), raw: true)
        _ = try? await command("QUIT", "QUIT")
        return accepted
    }

    func ehlo(_ name: String) async throws -> [String] {
        let reply = try await expect("EHLO", "EHLO \(name)")
        return Array(reply.lines.dropFirst())
    }

    /// A step that must get a reply in `codes`: a completion (2xx), or the intermediate reply the
    /// step asks for (354 to DATA, 334 to an AUTH LOGIN prompt). Any 3xx counted as positive: a 354
    /// to the end of the message was taken as delivered, and a 334 to AUTH PLAIN as signed in.
    @discardableResult
    func expect(_ step: String, _ line: String?, raw: Bool = false, codes: ClosedRange<Int> = 200...299) async throws -> SMTPReply {
        let reply = try await command(step, line, raw: raw)
        guard codes.contains(reply.code) else { throw SMTPError.rejected(step: step, reply: reply) }
        return reply
    }

    func command(_ step: String, _ line: String?, raw: Bool = false) async throws -> SMTPReply {
        let promise = channel.eventLoop.makePromise(of: SMTPReply.self)
        let deadline = channel.eventLoop.scheduleTask(in: .nanoseconds(timeout.nanoseconds)) { [channel] in
            promise.fail(SMTPError.timeout(step))
            channel.close(promise: nil)
        }
        defer { deadline.cancel() }
        let payload = line.map { raw ? $0 : $0 + "\r\n" }
        // A write that never reaches the handler (the connection is closed already, e.g. after a
        // failed TLS handshake) fails the step with what closed it.
        let written = channel.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenFailure { [failure] error in promise.fail(failure.first ?? error) }
        channel.writeAndFlush(SMTPRequest(line: payload, reply: promise), promise: written)
        do {
            return try await promise.futureResult.get()
        } catch let error as SMTPError {
            throw error
        } catch let error as NIOSSLError {
            // Only a certificate the trust roots refuse is the admin's to fix (no retry helps); a
            // connection dropped mid-session (TLS's unclean shutdown: every drop after STARTTLS) or
            // a handshake that failed otherwise is a connection failure, retried with backoff.
            if case .handshakeFailed(let inner) = error, "\(inner)".contains("CERTIFICATE_VERIFY_FAILED") {
                throw SMTPError.untrustedServer("not issued by a CA this appliance trusts (smtp_ca_file), or expired")
            }
            throw SMTPError.connection("\(step): \(ConnectionFailure.reason(error))")
        } catch {
            throw SMTPError.connection("\(step): \(ConnectionFailure.reason(error))")
        }
    }

}

/// What the session hands the handler: bytes to write (nil: only await a reply) and where the reply goes.
struct SMTPRequest: Sendable {
    var line: String?
    var reply: EventLoopPromise<SMTPReply>
}

/// Splits the server's bytes into replies (`250-…` continues, `250 …` ends) and answers waiting
/// requests in order. Errors (a failed TLS handshake, a closed connection) fail every waiting request.
/// The first error of a connection, kept for steps that start after the handler is gone.
final class SMTPFailure: Sendable {
    private let error = Mutex<(any Error)?>(nil)
    var first: (any Error)? { error.withLock { $0 } }
    func record(_ new: any Error) { error.withLock { if $0 == nil { $0 = new } } }
}

final class SMTPClientHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = SMTPRequest
    typealias OutboundOut = ByteBuffer

    static let maxLine = 4096
    static let maxLines = 200
    /// Replies kept for requests not yet sent: the greeting, or a `421` before the server closes.
    /// A server that sends more, unasked, is out of step with the client (and would otherwise grow
    /// this queue for as long as it kept sending).
    static let maxUnaskedReplies = 8

    private var buffer = ByteBuffer()
    private var lines: [String] = []
    private var waiting = CircularBuffer<EventLoopPromise<SMTPReply>>()
    private var early = CircularBuffer<SMTPReply>()
    private var failure: (any Error)?
    private let shared: SMTPFailure

    init(failure: SMTPFailure) { shared = failure }

    /// Nothing received that no request has taken yet: no reply, no part of one, no bytes.
    var isDrained: Bool { early.isEmpty && lines.isEmpty && buffer.readableBytes == 0 }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        if let failure {
            request.reply.fail(failure)
            promise?.fail(failure)
            return
        }
        if let reply = early.popFirst() { request.reply.succeed(reply) } else { waiting.append(request.reply) }
        if let line = request.line {
            context.write(wrapOutboundOut(ByteBuffer(string: line)), promise: promise)
        } else {
            promise?.succeed(())
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        buffer.writeBuffer(&incoming)
        while let offset = buffer.withUnsafeReadableBytes({ $0.firstIndex(of: UInt8(ascii: "\n")) }) {
            // A whole line in one read is held to the limit too (only the rest after the last line was).
            guard offset <= Self.maxLine + 1 else {
                fail(SMTPError.connection("the server sent a line longer than \(Self.maxLine) bytes"), context: context)
                return
            }
            guard var line = buffer.readString(length: offset + 1) else { break }
            line = String(line.dropLast())
            if line.hasSuffix("\r") { line = String(line.dropLast()) }
            receive(line: line, context: context)
        }
        if buffer.readableBytes > Self.maxLine {
            fail(SMTPError.connection("the server sent a line longer than \(Self.maxLine) bytes"), context: context)
        }
        buffer.discardReadBytes()
    }

    private func receive(line: String, context: ChannelHandlerContext) {
        let bytes = Array(line.utf8)
        guard bytes.count >= 3, let code = Int(String(decoding: bytes[0..<3], as: UTF8.self)), (200..<600).contains(code) else {
            fail(SMTPError.connection("the server sent a line that is not an SMTP reply: \(StoredText.singleLine(String(line.prefix(100))))"), context: context)
            return
        }
        let continues = bytes.count > 3 && bytes[3] == UInt8(ascii: "-")
        lines.append(bytes.count > 4 ? String(decoding: bytes[4...], as: UTF8.self) : "")
        guard lines.count <= Self.maxLines else {
            fail(SMTPError.connection("the server sent a reply of more than \(Self.maxLines) lines"), context: context)
            return
        }
        if continues { return }
        let reply = SMTPReply(code: code, lines: lines)
        lines = []
        if let promise = waiting.popFirst() {
            promise.succeed(reply)
        } else if early.count < Self.maxUnaskedReplies {
            early.append(reply)
        } else {
            fail(SMTPError.connection("the server sent more than \(Self.maxUnaskedReplies) replies nothing asked for"), context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(error, context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if failure == nil { failure = SMTPError.connection("the server closed the connection") }
        while let promise = waiting.popFirst() { promise.fail(failure!) }
        context.fireChannelInactive()
    }

    private func fail(_ error: any Error, context: ChannelHandlerContext) {
        if failure == nil { failure = error }
        shared.record(error)
        while let promise = waiting.popFirst() { promise.fail(error) }
        context.close(promise: nil)
    }
}
