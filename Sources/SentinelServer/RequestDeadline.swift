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
    /// When the current wait for a request ends; nil while the server works on one.
    private var expiresAt: NIODeadline?
    /// The connection's one timer, due at or before `expiresAt`. Arming and disarming per request
    /// only move `expiresAt`: the timer, when it fires early, is scheduled again for what is left
    /// (a timer scheduled and cancelled for every request was about 1 % of intake's CPU).
    private var timer: Scheduled<Void>?
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

    func handlerRemoved(context: ChannelHandlerContext) { stop() }

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
        stop()
        context.fireChannelInactive()
    }

    private func arm(_ context: ChannelHandlerContext) {
        let due = NIODeadline.now() + limit
        expiresAt = due
        if timer == nil { schedule(at: due, context) }
    }

    private func schedule(at due: NIODeadline, _ context: ChannelHandlerContext) {
        let bound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(deadline: due) { bound.value.handler.timerFired(bound.value.context) }
    }

    private func timerFired(_ context: ChannelHandlerContext) {
        timer = nil
        guard let due = expiresAt else { return }          // the server works on a request; the next wait arms again
        if NIODeadline.now() < due { return schedule(at: due, context) }
        expiresAt = nil
        expire(context)
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
        expiresAt = nil
    }

    private func stop() {
        expiresAt = nil
        timer?.cancel()
        timer = nil
    }
}
