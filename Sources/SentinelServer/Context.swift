import Hummingbird
import Logging
import NIOCore
import SentinelCore

/// Per-request state: the correlation id that follows the request into the jobs it creates.
public struct SentinelRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var correlationID: String = ""
    /// Largest body a route may collect: the largest webhook delivery (API routes collect less).
    public var maxUploadSize: Int
    /// The peer address, for per-address limits (sign-in throttling).
    public var remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.maxUploadSize = DeliveryIntake.maxBodyBytes
        self.remoteAddress = source.channel.remoteAddress
    }
}
