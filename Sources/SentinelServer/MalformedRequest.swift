import Foundation
import NIOCore
import NIOHTTP1
import SentinelCore

/// A request whose head breaks HTTP/1.1 — a character HTTP does not allow in a header, two
/// different `Content-Length` values, a head over `server.max_header_bytes`, a `Host` that is
/// missing, given twice or not a host — is answered with a problem document that says what is
/// wrong (`HTTPParserError.reason`, `HostHeader.problem`), as one whose body breaks is, and the
/// connection closed for writing. Hummingbird answers NIO's parse error before any request exists
/// with an empty 400 of its own, and took any `Host` (or none) as it came.
///
/// Sits right after the HTTP/1 decoder, which reports a parse error and reads nothing more from
/// the connection. An error while a request is being answered (its body broke) goes on to whoever
/// reads that body, which answers it. A head refused for its `Host` goes no further, nor does
/// anything after it on the connection; it is answered once the requests pipelined before it are.
final class MalformedRequestHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// Requests whose head has come and whose response has not ended (pipelined ones too).
    private var unanswered = 0
    private var answered = false
    /// A head refused here: what the connection reads after it is dropped, and its answer waits
    /// for the requests before it to be answered.
    private var refusal: Problem?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard refusal == nil else { return }
        if case .head(let head) = unwrapInboundIn(data) {
            if let problem = HostHeader.problem(in: head) {
                refusal = problem
                if unanswered == 0 { answer(problem, context: context) }
                return
            }
            unanswered += 1
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .end = unwrapOutboundIn(data), unanswered > 0 else { return context.write(data, promise: promise) }
        unanswered -= 1
        context.write(data, promise: promise)
        if unanswered == 0, let refusal { answer(refusal, context: context) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parseError = error as? HTTPParserError, unanswered == 0 || refusal != nil else {
            return context.fireErrorCaught(error)
        }
        // After a refused head the parser's errors are about bytes nobody reads.
        guard refusal == nil else { return }
        answer(parseError.problem, context: context)
    }

    private func answer(_ problem: Problem, context: ChannelHandlerContext) {
        guard !answered else { return }
        answered = true
        let requestID = RandomIdentifier.uuid()
        let body = context.channel.allocator.buffer(bytes: problem.document(requestID: requestID))
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "application/problem+json")
        headers.add(name: "content-length", value: String(body.readableBytes))
        headers.add(name: "x-request-id", value: requestID)
        headers.add(name: "connection", value: "close")
        // As every other answer (APIResponseHeadersMiddleware is never reached from here).
        headers.add(name: "cache-control", value: "no-store")
        headers.add(name: "x-content-type-options", value: "nosniff")
        let head = HTTPResponseHead(version: .http1_1, status: .init(statusCode: problem.status), headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        // Closed for writing only, as Hummingbird closes after its own answers: what the client
        // still sends is read (and dropped), so the answer is not lost to a reset, and the client's
        // close, or the idle timeout, ends the connection.
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in bound.value.close(mode: .output, promise: nil) }
    }
}

/// What RFC 9112 §3.2 asks of a request's `Host`: a server answers 400 to an HTTP/1.1 request
/// without one, to any request that gives it more than once, and to one whose value is not a host
/// (RFC 3986 §3.2.2: a registered name, an IPv4 address or a bracketed IP literal, then an
/// optional `:port`). Two values could name two hosts to a proxy in front and to Sentinel.
enum HostHeader {
    static func problem(in head: HTTPRequestHead) -> Problem? {
        let values = head.headers["host"]
        let reason: String
        if values.count > 1 {
            reason = "it gives Host \(values.count) times"
        } else if let value = values.first {
            guard !isValid(value) else { return nil }
            reason = "its Host is not a host name or address with an optional port"
        } else if head.version.major == 1 && head.version.minor >= 1 {
            reason = "it has no Host header, which every HTTP/1.1 request must send"
        } else {
            return nil
        }
        return Problem(status: .badRequest, detail: "the request is not valid HTTP/1.1: \(reason)",
                       type: "urn:sentinel:problem:malformed-http", title: "Malformed HTTP request")
    }

    /// `uri-host [ ":" port ]`; empty is allowed (a target with no authority).
    static func isValid(_ value: String) -> Bool {
        var bytes = Substring(value).utf8[...]
        if bytes.first == UInt8(ascii: "[") {
            guard let close = bytes.firstIndex(of: UInt8(ascii: "]")) else { return false }
            let literal = bytes[bytes.index(after: bytes.startIndex)..<close]
            guard !literal.isEmpty, literal.allSatisfy({ isUnreservedOrSubDelim($0) || $0 == UInt8(ascii: ":") }) else { return false }
            bytes = bytes[bytes.index(after: close)...]
        } else {
            let name = bytes.prefix { $0 != UInt8(ascii: ":") }
            var index = name.startIndex
            while index < name.endIndex {
                let byte = name[index]
                if byte == UInt8(ascii: "%") {
                    let digits = name[name.index(after: index)...].prefix(2)
                    guard digits.count == 2, digits.allSatisfy(isHexDigit) else { return false }
                    index = name.index(index, offsetBy: 3)
                    continue
                }
                guard isUnreservedOrSubDelim(byte) else { return false }
                index = name.index(after: index)
            }
            bytes = bytes[name.endIndex...]
        }
        guard let colon = bytes.first else { return true }
        let port = bytes.dropFirst()
        return colon == UInt8(ascii: ":") && port.count <= 5 && port.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
    }

    private static func isHexDigit(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte | 0x20)
    }

    /// RFC 3986's `unreserved` and `sub-delims`.
    private static func isUnreservedOrSubDelim(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "-._~!$&'()*+,;=".utf8.contains(byte)
        }
    }
}
