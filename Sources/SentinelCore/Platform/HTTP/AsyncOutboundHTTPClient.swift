import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOSSL
import Synchronization
import Logging
import Tracing

/// The production `OutboundHTTPClient`: AsyncHTTPClient with real timeouts and pooling. One is made
/// per trust configuration, so a GitHub Enterprise Server behind an internal CA gets its own roots
/// while everything else uses the system's. Call `shutdown()` before the process exits.
///
/// Destinations are checked at connect time (`DestinationPolicy`): the host is resolved here, every
/// address it resolves to is checked, and the connection goes to the checked address (an
/// AsyncHTTPClient DNS override, which keeps the Host header, SNI and certificate checks on the
/// name), so DNS cannot hand the connection a different address after the check. Each host gets
/// its own pinned pool; when the host moves to addresses that no longer include the pinned one, a
/// new pool is pinned and the old one closes once its requests are done.
public final class AsyncOutboundHTTPClient: OutboundHTTPClient {
    private struct Pinned {
        var address: IPAddress
        var client: HTTPClient
        var inFlight: Int
    }

    private struct Pins {
        var current: [String: Pinned] = [:]
        var retired: [ObjectIdentifier: Pinned] = [:]
        var shutDown = false
    }

    private let client: HTTPClient
    /// Whether the underlying client would trace on its own (never: see `init`).
    var tracesInternally: Bool { client.tracer != nil }
    private let configuration: HTTPClient.Configuration
    private let pins = Mutex(Pins())
    private let shutDown = Mutex(false)
    public let maxResponseBytes: Int
    public let destinations: DestinationPolicy
    let resolver: any HostResolver

    /// - Parameters:
    ///   - caBundlePEM: extra trust roots (PEM, one or more certificates); nil = system roots.
    ///   - destinations: which addresses calls may reach (default: public and loopback only).
    ///   - resolver: host name resolution (injectable for tests).
    public init(caBundlePEM: String? = nil, maxResponseBytes: Int = 32 * 1024 * 1024,
                destinations: DestinationPolicy = DestinationPolicy(), resolver: any HostResolver = SystemHostResolver()) throws {
        var tls = TLSConfiguration.makeClientConfiguration()
        if let pem = caBundlePEM {
            let certificates = (try? NIOSSLCertificate.fromPEMBytes(Array(pem.utf8))) ?? []
            guard !certificates.isEmpty else { throw CABundleError() }
            tls.trustRoots = .certificates(certificates)
        }
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(120))
        configuration.decompression = .enabled(limit: .ratio(50))
        configuration.redirectConfiguration = .disallow
        // A connection that cannot be made fails the call at once, saying why (refused, TLS not
        // trusted, …). Left on, AsyncHTTPClient tries again until the 10 s connect timeout: a provider
        // whose host is down cost 10 s per call before the router fell back to the next one, and a
        // call with a shorter timeout reported "timed out" instead of the reason. Sentinel retries
        // at its own level (the job's backoff, the next provider).
        configuration.connectionPool.retryConnectionEstablishment = false
        // Sentinel makes the outbound span itself (`send`). Left alone, AsyncHTTPClient would keep
        // the tracer in scope at creation (the appliance's OTel tracer, for clients made inside the
        // serve group) and could drop the last reference to it on an event loop, whose exporter then
        // shuts its own client down synchronously there: a crash.
        configuration.tracing.tracer = nil
        self.configuration = configuration
        self.client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        self.maxResponseBytes = maxResponseBytes
        self.destinations = destinations
        self.resolver = resolver
    }

    /// Every call is a client span carrying `traceparent` and `X-Request-ID` (`Telemetry`), and
    /// logs one line: method, host, path template, status, duration, attempt (never a header value,
    /// a query or a body: those may hold credentials).
    public func send(_ request: OutboundRequest) async throws -> OutboundResponse {
        let template = request.pathIsSecret ? "/…" : Telemetry.pathTemplate(request.url)
        let host = request.url.host ?? "-"
        let metadata: Logger.Metadata = ["method": "\(request.method)", "host": "\(host)", "path": "\(template)"]
        return try await Telemetry.outboundCall("\(request.method) \(template)", metadata: metadata, status: \.status) { span in
            span.attributes["http.request.method"] = request.method
            span.attributes["server.address"] = host
            span.attributes["url.template"] = template
            var traced = request
            for (name, value) in Telemetry.outboundHeaders() where request.header(name) == nil { traced.headers.append((name, value)) }
            let response = try await sendUntraced(traced)
            span.attributes["http.response.status_code"] = response.status
            if response.status >= 500 { span.setStatus(SpanStatus(code: .error)) }
            return response
        }
    }

    private func sendUntraced(_ request: OutboundRequest) async throws -> OutboundResponse {
        var outbound = HTTPClientRequest(url: request.url.absoluteString)
        outbound.method = HTTPMethod(rawValue: request.method)
        for (name, value) in request.headers { outbound.headers.add(name: name, value: value) }
        if outbound.headers["User-Agent"].isEmpty { outbound.headers.add(name: "User-Agent", value: "Sentinel/\(SentinelVersion.current)") }
        if let body = request.body { outbound.body = .bytes(ByteBuffer(bytes: body)) }
        let prepared = outbound
        let host = request.url.host ?? request.url.absoluteString
        // The 2xx head of an `acceptedOnSuccessHead` request, once it arrived: the answer whatever
        // becomes of its body.
        let accepted = Mutex<OutboundResponse?>(nil)
        do {
            return try await Self.withDeadline(request.timeout, host: host) { [self] in
                let (client, pinnedHost) = try await self.connection(for: request.url)
                defer { if let pinnedHost { self.release(client, host: pinnedHost) } }
                let response = try await client.execute(prepared, timeout: .nanoseconds(request.timeout.nanoseconds))
                let (status, headers) = (Int(response.status.code), response.headers.map { ($0.name, $0.value) })
                if request.acceptedOnSuccessHead, (200..<300).contains(status) {
                    accepted.withLock { $0 = OutboundResponse(status: status, headers: headers, body: Data()) }
                    var start = ByteBuffer()
                    for try await var chunk in response.body {
                        start.writeBuffer(&chunk)
                        if start.readableBytes >= OutboundRequest.acceptedBodyBytes { break }
                    }
                    return OutboundResponse(status: status, headers: headers, body: Data(start.readableBytesView.prefix(OutboundRequest.acceptedBodyBytes)))
                }
                let body = try await response.body.collect(upTo: self.maxResponseBytes)
                return OutboundResponse(status: status, headers: headers, body: Data(buffer: body))
            }
        } catch where accepted.withLock({ $0 }) != nil {
            return accepted.withLock { $0 }!
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout {
            throw OutboundHTTPError.timeout(host)
        } catch let error as NIOTooManyBytesError {
            _ = error
            throw OutboundHTTPError.responseTooLarge(host)
        } catch let error as OutboundHTTPError {
            throw error
        } catch let error as DestinationError {
            throw OutboundHTTPError.destinationRefused(error.description)
        } catch {
            let port = request.url.port ?? (request.url.scheme?.lowercased() == "https" ? 443 : 80)
            throw OutboundHTTPError.connection("\(host):\(port): \(ConnectionFailure.reason(error))")
        }
    }

    /// The client to send `url` with, after checking where it goes: the shared one for an address
    /// literal (checked as is), else the pool pinned to a checked address of the host (returned
    /// with the host, to be released after the request).
    private func connection(for url: URL) async throws -> (HTTPClient, pinnedHost: String?) {
        guard var host = url.host, !host.isEmpty else { throw OutboundHTTPError.connection("\(url.absoluteString): no host") }
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if let literal = IPAddress(host) {
            try destinations.check(literal, host: host)
            return (client, nil)
        }
        let port = url.port ?? (url.scheme?.lowercased() == "https" ? 443 : 80)
        let addresses = try await resolver.resolve(host: host, port: port)
        // Every address is checked: a name with one private address among public ones is refused,
        // whichever of them the connection would have used.
        for address in addresses { try destinations.check(address, host: host) }
        return (try pin(host: host, addresses: addresses), host)
    }

    private func pin(host: String, addresses: [IPAddress]) throws -> HTTPClient {
        let configuration = configuration
        let (chosen, toClose) = try pins.withLock { (pins: inout Pins) throws -> (HTTPClient, HTTPClient?) in
            guard !pins.shutDown else { throw OutboundHTTPError.connection("the HTTP client is shut down") }
            if var entry = pins.current[host], addresses.contains(entry.address) {
                entry.inFlight += 1
                pins.current[host] = entry
                return (entry.client, nil)
            }
            var pinned = configuration
            pinned.dnsOverride = [host: addresses[0].description]
            let fresh = HTTPClient(eventLoopGroupProvider: .singleton, configuration: pinned)
            var close: HTTPClient?
            if let old = pins.current[host] {
                if old.inFlight == 0 { close = old.client } else { pins.retired[ObjectIdentifier(old.client)] = old }
            }
            pins.current[host] = Pinned(address: addresses[0], client: fresh, inFlight: 1)
            return (fresh, close)
        }
        toClose?.shutdown { _ in }
        return chosen
    }

    private func release(_ client: HTTPClient, host: String) {
        let toClose = pins.withLock { (pins: inout Pins) -> HTTPClient? in
            if var entry = pins.current[host], entry.client === client {
                entry.inFlight -= 1
                pins.current[host] = entry
                return nil
            }
            let id = ObjectIdentifier(client)
            guard var entry = pins.retired[id] else { return nil }
            entry.inFlight -= 1
            if entry.inFlight > 0 { pins.retired[id] = entry; return nil }
            pins.retired[id] = nil
            return entry.client
        }
        toClose?.shutdown { _ in }
    }

    /// Runs `operation` (the request and the whole body read) under one total deadline. The
    /// client's own deadline ends when the response head arrives, so a server that sends its head
    /// and then drips the body would otherwise hold the caller for as long as it likes; here the
    /// deadline cancels the read (which closes the connection) and the call fails with `.timeout`.
    static func withDeadline(_ timeout: Duration, host: String,
                             _ operation: @escaping @Sendable () async throws -> OutboundResponse) async throws -> OutboundResponse {
        let deadline = ContinuousClock.now + timeout
        return try await withThrowingTaskGroup(of: OutboundResponse?.self) { group in
            group.addTask { try await operation() }
            group.addTask {
                try await Task.sleep(until: deadline, clock: .continuous)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let response = first else {
                throw OutboundHTTPError.timeout(host)
            }
            return response
        }
    }

    public func shutdown() async {
        guard shutDown.withLock({ let was = $0; $0 = true; return !was }) else { return }
        let pinned = pins.withLock { (pins: inout Pins) -> [HTTPClient] in
            pins.shutDown = true
            defer { pins.current = [:]; pins.retired = [:] }
            return pins.current.values.map(\.client) + pins.retired.values.map(\.client)
        }
        for client in pinned { try? await client.shutdown() }
        try? await client.shutdown()
    }

    /// A client dropped without `shutdown()` (an error path) still releases its connections,
    /// without blocking the releasing thread.
    deinit {
        if !shutDown.withLock({ $0 }) {
            client.shutdown { _ in }
            for entry in pins.withLock({ Array($0.current.values) + Array($0.retired.values) }) { entry.client.shutdown { _ in } }
        }
    }
}

/// A CA bundle given for an integration or a mail server holds no usable certificate.
public struct CABundleError: Error, CustomStringConvertible, Equatable {
    public var description: String { "it holds no PEM certificate (-----BEGIN CERTIFICATE-----)" }
}
