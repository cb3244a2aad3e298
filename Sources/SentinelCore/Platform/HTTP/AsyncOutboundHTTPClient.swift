import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOSSL
import Synchronization

/// The production `OutboundHTTPClient`: AsyncHTTPClient with real timeouts and pooling. One is made
/// per trust configuration, so a GitHub Enterprise Server behind an internal CA gets its own roots
/// while everything else uses the system's. Call `shutdown()` before the process exits.
public final class AsyncOutboundHTTPClient: OutboundHTTPClient {
    private let client: HTTPClient
    private let shutDown = Mutex(false)
    public let maxResponseBytes: Int

    /// - Parameter caBundlePEM: extra trust roots (PEM, one or more certificates); nil = system roots.
    public init(caBundlePEM: String? = nil, maxResponseBytes: Int = 32 * 1024 * 1024) throws {
        var tls = TLSConfiguration.makeClientConfiguration()
        if let pem = caBundlePEM {
            let certificates = try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8))
            guard !certificates.isEmpty else { throw OutboundHTTPError.connection("the CA bundle holds no certificate") }
            tls.trustRoots = .certificates(certificates)
        }
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(120))
        configuration.decompression = .enabled(limit: .ratio(50))
        configuration.redirectConfiguration = .disallow
        self.client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        self.maxResponseBytes = maxResponseBytes
    }

    public func send(_ request: OutboundRequest) async throws -> OutboundResponse {
        var outbound = HTTPClientRequest(url: request.url.absoluteString)
        outbound.method = HTTPMethod(rawValue: request.method)
        for (name, value) in request.headers { outbound.headers.add(name: name, value: value) }
        if outbound.headers["User-Agent"].isEmpty { outbound.headers.add(name: "User-Agent", value: "Sentinel/\(SentinelVersion.current)") }
        if let body = request.body { outbound.body = .bytes(ByteBuffer(bytes: body)) }
        let host = request.url.host ?? request.url.absoluteString
        do {
            let response = try await client.execute(outbound, timeout: .nanoseconds(request.timeout.nanoseconds))
            let body = try await response.body.collect(upTo: maxResponseBytes)
            return OutboundResponse(status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) },
                                    body: Data(buffer: body))
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout {
            throw OutboundHTTPError.timeout(host)
        } catch let error as NIOTooManyBytesError {
            _ = error
            throw OutboundHTTPError.responseTooLarge(host)
        } catch let error as OutboundHTTPError {
            throw error
        } catch {
            throw OutboundHTTPError.connection("\(host): \(error)")
        }
    }

    public func shutdown() async {
        guard shutDown.withLock({ let was = $0; $0 = true; return !was }) else { return }
        try? await client.shutdown()
    }

    /// A client dropped without `shutdown()` (an error path) still releases its connections,
    /// without blocking the releasing thread.
    deinit {
        if !shutDown.withLock({ $0 }) { client.shutdown { _ in } }
    }
}
