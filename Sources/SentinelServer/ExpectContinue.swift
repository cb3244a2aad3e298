import HTTPTypes
import NIOCore
import NIOHTTPTypes
import SentinelCore

/// Answers a request head carrying `Expect: 100-continue` with `100 Continue` at once, as RFC 9110
/// §10.1.1 asks: a client that sends it (curl for large bodies, .NET's HttpClient by default) holds
/// the body back until then, or for about a second when no interim answer comes.
final class ExpectContinueHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundOut = HTTPResponsePart

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Not for a body larger than the route takes: its answer is a 413 without reading it, and
        // a 100 first had the client send it all the same.
        if case .head(let head) = unwrapInboundIn(data),
           let expect = head.headerFields[.expect], expect.lowercased() == "100-continue",
           !(head.headerFields[.contentLength].flatMap { Int($0) }.map { $0 > Self.bodyLimit(path: head.path ?? "") } ?? false) {
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponse(status: .continue))), promise: nil)
        }
        context.fireChannelRead(data)
    }

    /// The largest body the routes under `path` take: webhooks 25 MiB, the API 1 MiB, console forms 512 KiB.
    static func bodyLimit(path: String) -> Int {
        if path.hasPrefix("/webhooks/") { return DeliveryIntake.maxBodyBytes }
        if path.hasPrefix("/api/") { return RequestValidationMiddleware.maxBodyBytes }
        return Console.maxFormBytes
    }
}
