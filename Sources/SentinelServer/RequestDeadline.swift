import HTTPTypes
import NIOCore
import NIOHTTPTypes

/// Closes a connection whose request does not arrive whole (head and body) within `limit` of the
/// connection opening or of the previous response. The idle timeout alone cannot: a client that
/// sends one byte of a body every few seconds is never idle, and 1,024 of them would hold every
/// connection the server allows. The clock stops while the server works on a request (from its
/// end to the end of its response), so a slow handler is not cut off. A request whose head came
/// and whose answer has not begun is answered 408 (a problem document) before the connection
/// closes, so the client learns why; between requests the connection just closes.
final class RequestDeadlineHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let limit: TimeAmount
    private var deadline: Scheduled<Void>?
    /// Between a request's head and its end.
    private var requestOpen = false
    /// The open request was answered before it ended (413, 401 before the body was read).
    private var answeredEarly = false
    /// The server began answering the current request (its response head went out).
    private var responseStarted = false
    /// The deadline passed: the 408 (if any) is out and the connection closing; the server's own
    /// answer to the cut-off request is dropped.
    private var timedOut = false

    init(limit: TimeAmount) { self.limit = limit }

    func handlerAdded(context: ChannelHandlerContext) { arm(context) }

    func handlerRemoved(context: ChannelHandlerContext) { disarm() }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            requestOpen = true
            answeredEarly = false
            responseStarted = false
        case .end:
            requestOpen = false
            // Answered already: the next request's time starts now; else the server works on it.
            if answeredEarly { arm(context) } else { disarm() }
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if timedOut {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        if case .head(let head) = unwrapOutboundIn(data), head.status.kind != .informational { responseStarted = true }
        if case .end = unwrapOutboundIn(data) {
            // The rest of a request answered early is read and dropped: that too must arrive in time.
            if requestOpen { answeredEarly = true }
            arm(context)
        }
        context.write(data, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        disarm()
        context.fireChannelInactive()
    }

    private func arm(_ context: ChannelHandlerContext) {
        disarm()
        let bound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        deadline = context.eventLoop.scheduleTask(in: limit) { bound.value.handler.expire(bound.value.context) }
    }

    private func expire(_ context: ChannelHandlerContext) {
        guard requestOpen, !responseStarted else { return context.close(promise: nil) }
        timedOut = true
        let body = ByteBuffer(string: #"{"type":"urn:sentinel:problem:request-timeout","title":"Request Timeout","status":408,"#
            + #""detail":"the request did not arrive whole within server.request_timeout_seconds; send it again"}"#)
        var headers = HTTPFields()
        headers[.contentType] = "application/problem+json"
        headers[.contentLength] = String(body.readableBytes)
        headers[.connection] = "close"
        context.write(wrapOutboundOut(.head(HTTPResponse(status: .requestTimeout, headerFields: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(body)), promise: nil)
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in bound.value.close(promise: nil) }
    }

    private func disarm() {
        deadline?.cancel()
        deadline = nil
    }
}
