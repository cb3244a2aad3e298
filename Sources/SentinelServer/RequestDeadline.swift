import NIOCore
import NIOHTTPTypes

/// Closes a connection whose request does not arrive whole (head and body) within `limit` of the
/// connection opening or of the previous response. The idle timeout alone cannot: a client that
/// sends one byte of a body every few seconds is never idle, and 1,024 of them would hold every
/// connection the server allows. The clock stops while the server works on a request (from its
/// end to the end of its response), so a slow handler is not cut off.
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

    init(limit: TimeAmount) { self.limit = limit }

    func handlerAdded(context: ChannelHandlerContext) { arm(context) }

    func handlerRemoved(context: ChannelHandlerContext) { disarm() }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            requestOpen = true
            answeredEarly = false
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
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        deadline = context.eventLoop.scheduleTask(in: limit) { bound.value.close(promise: nil) }
    }

    private func disarm() {
        deadline?.cancel()
        deadline = nil
    }
}
