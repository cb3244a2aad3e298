import Foundation
import NIOCore
import NIOHTTP1

/// A request whose head breaks HTTP/1.1 — a character HTTP does not allow in a header, two
/// different `Content-Length` values, a head over `server.max_header_bytes` — is answered with a
/// problem document that says what is wrong (`HTTPParserError.reason`), as one whose body breaks
/// is, and the connection closed for writing. Hummingbird answers NIO's parse error before any request exists
/// with an empty 400 of its own.
///
/// Sits right after the HTTP/1 decoder, which reports the error and reads nothing more from the
/// connection. An error while a request is being answered (its body broke) goes on to whoever
/// reads that body, which answers it.
final class MalformedRequestHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// Requests whose head has come and whose response has not ended (pipelined ones too).
    private var unanswered = 0
    private var answered = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = unwrapInboundIn(data) { unanswered += 1 }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data), unanswered > 0 { unanswered -= 1 }
        context.write(data, promise: promise)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parseError = error as? HTTPParserError, unanswered == 0, !answered else {
            return context.fireErrorCaught(error)
        }
        answered = true
        let requestID = UUID().uuidString.lowercased()
        let problem = parseError.problem
        let body = context.channel.allocator.buffer(bytes: problem.document(requestID: requestID))
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "application/problem+json")
        headers.add(name: "content-length", value: String(body.readableBytes))
        headers.add(name: "x-request-id", value: requestID)
        headers.add(name: "connection", value: "close")
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
