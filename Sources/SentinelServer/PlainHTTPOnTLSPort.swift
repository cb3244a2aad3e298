import Foundation
import NIOCore
import NIOSSL

/// A plain-HTTP request sent to the HTTPS listener (`http://host:8443/…`) is answered with a 400
/// problem document in plain HTTP that says to use `https://`, and the connection closed. The TLS
/// handler took such bytes for a broken handshake and closed the connection without a word:
/// curl said "Empty reply from server".
///
/// Sits in front of the TLS handler and looks at the first bytes of a connection only: a TLS
/// record (a handshake starts with 0x16) or anything that does not open with an HTTP method's
/// capital letters goes on to TLS, as it came, and the handler leaves the pipeline.
final class PlainHTTPOnTLSPortHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var answered = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered else { return }  // what follows the plain request is dropped
        let buffer = unwrapInboundIn(data)
        guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
              first >= UInt8(ascii: "A"), first <= UInt8(ascii: "Z") else {
            context.fireChannelRead(data)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            return
        }
        answered = true
        let body = Problem(status: .badRequest,
                           detail: "this port speaks HTTPS, and the request came in plain HTTP: send it to https:// at the same host and port")
            .document(requestID: nil)
        var response = context.channel.allocator.buffer(capacity: body.count + 160)
        response.writeString("HTTP/1.1 400 Bad Request\r\nContent-Type: application/problem+json\r\nContent-Length: \(body.count)\r\n"
                             + "Cache-Control: no-store\r\nConnection: close\r\n\r\n")
        response.writeBytes(body)
        // Written from in front of the TLS handler: the bytes go to the socket as they are.
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(response)).whenComplete { _ in bound.value.close(promise: nil) }
    }
}

extension ChannelPipeline.SynchronousOperations {
    /// Puts `PlainHTTPOnTLSPortHandler` in front of the connection's TLS handler, when it has one.
    func addPlainHTTPAnswerBeforeTLS() throws {
        guard (try? handler(type: NIOSSLServerHandler.self)) != nil else { return }
        try addHandler(PlainHTTPOnTLSPortHandler(), position: .first)
    }
}
