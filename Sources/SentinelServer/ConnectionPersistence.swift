import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1

/// Closes a connection after the response to a request that did not ask to keep it open, as
/// RFC 9112 §9.3 has it: an HTTP/1.0 request without `Connection: keep-alive`, or any request
/// with a `close` option in `Connection` (in any case, among other options). Hummingbird keeps a
/// connection open unless the request's `Connection` header is exactly `close`, so an HTTP/1.0
/// client (monitoring probes, `ab`, old proxies) that reads its answer up to the end of the
/// connection waited for `server.idle_timeout_seconds`, and held a connection that long.
///
/// Sits between the HTTP/1 decoder and the conversion to HTTP types, where the request's version
/// is still known. The response to such a request says `Connection: close`; the one to an HTTP/1.0
/// request that asked to be kept alive says `Connection: keep-alive`, which such a client needs to
/// see before it sends another request on the connection. Pipelined requests are answered in
/// order, so the requests' wishes wait in order for their responses.
final class ConnectionPersistenceHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private enum Persistence {
        case keepAlive
        /// An HTTP/1.0 request with `Connection: keep-alive`: its response must say so.
        case keepAliveAsked
        case close
    }

    /// What each request not yet answered asked for, oldest first.
    private var pending: CircularBuffer<Persistence> = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = unwrapInboundIn(data) {
            let persistence: Persistence
            if !head.isKeepAlive {
                persistence = .close
            } else if head.version.major == 1 && head.version.minor == 0 {
                persistence = .keepAliveAsked
            } else {
                persistence = .keepAlive
            }
            pending.append(persistence)
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head) where head.status.code >= 200:
            switch pending.first {
            case .close?:
                head.headers.replaceOrAdd(name: "connection", value: "close")
            case .keepAliveAsked? where !head.headers.contains(name: "connection"):
                // Unless the server closes the connection anyway (a 408, shutting down), when its
                // own `Connection: close` stands.
                head.headers.add(name: "connection", value: "keep-alive")
            default:
                return context.write(data, promise: promise)
            }
            context.write(wrapOutboundOut(.head(head)), promise: promise)
        case .end:
            // A response with no request waiting (the 400 for a request that could not be parsed)
            // closes the connection by itself.
            guard pending.popFirst() == .close else { return context.write(data, promise: promise) }
            let written = context.eventLoop.makePromise(of: Void.self)
            written.futureResult.cascade(to: promise)
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            written.futureResult.whenComplete { _ in bound.value.close(promise: nil) }
            context.write(data, promise: written)
        default:
            context.write(data, promise: promise)
        }
    }
}

/// Hummingbird's HTTP/1 child channel with `ConnectionPersistenceHandler` and
/// `MalformedRequestHandler` placed right after the HTTP/1 decoder (HTTPS wraps it like the plain
/// one: `HTTPServerBuilder.tls(_:tlsConfiguration:)`, and gets `PlainHTTPOnTLSPortHandler` in
/// front of its TLS handler).
struct SentinelHTTP1Channel: ServerChildChannel {
    typealias Value = HTTP1Channel.Value
    let base: HTTP1Channel

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        base.setup(channel: channel, logger: logger).flatMapThrowing { value in
            let pipeline = channel.pipeline.syncOperations
            let decoder = try pipeline.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self)
            try pipeline.addHandler(ConnectionPersistenceHandler(), position: .after(decoder))
            try pipeline.addHandler(MalformedRequestHandler(), position: .after(decoder))
            try pipeline.addPlainHTTPAnswerBeforeTLS()
            return value
        }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}

extension HTTPServerBuilder {
    /// HTTP/1 as `http1(configuration:)`, closing connections that did not ask to be kept open and
    /// answering a request whose head is malformed with a problem document.
    static func sentinelHTTP1(configuration: HTTP1Channel.Configuration) -> HTTPServerBuilder {
        .init { responder in SentinelHTTP1Channel(base: HTTP1Channel(responder: responder, configuration: configuration)) }
    }
}
