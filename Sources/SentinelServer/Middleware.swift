import Foundation
import HTTPTypes
import Hummingbird
import Logging
import OpenAPIRuntime
import SentinelCore
import Tracing

/// Correlation ids, metrics and problem+json for every request: the first and last thing a request
/// passes through. The correlation id is a webhook's delivery id (the one its jobs carry, see
/// `WebhookRoutes.correlationID(of:)`), else the caller's `X-Request-ID` when it sends a sane one,
/// else a new UUID.
struct ObservabilityMiddleware: RouterMiddleware {
    typealias Context = SentinelRequestContext
    let metrics: SentinelMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        let incoming = (WebhookRoutes.correlationID(of: request) ?? request.headers[.requestID]).flatMap { id in
            Self.isSaneCorrelationID(id) ? id : nil
        }
        let correlationID = incoming ?? RandomIdentifier.uuid()
        context.correlationID = correlationID
        // The request's span continues the caller's trace (a `traceparent` it sent) and carries
        // the correlation id to everything the request does (jobs it enqueues included), and so
        // to every line it logs (`Telemetry.metadataProvider`): not copied into the logger's own
        // metadata as well, which copied that dictionary for every request.
        var trace = ServiceContext.topLevel
        if let carrier = TraceHeaders.carrier(of: request.headers) {
            InstrumentationSystem.instrument.extract(carrier, into: &trace, using: HTTPFieldsExtractor())
        }
        trace.correlationID = correlationID
        let start = ContinuousClock.now
        return await Telemetry.withSpan("\(request.method.rawValue)", context: trace, kind: .server) { span in
            var response: Response
            do {
                if let coding = request.headers[.contentEncoding] { try Self.checkContentCoding(coding) }
                if let coding = request.headers[.transferEncoding] { try Self.checkTransferCoding(coding) }
                response = try await next(request, context)
            } catch {
                let problem = Problem.from(error)
                if problem.isServerFault {
                    // The generated API wraps what a handler threw: log the type of the error itself.
                    // A fault with a meaning of its own (storage full, a workspace offline, …) logs
                    // that meaning too, as its client was told it.
                    let cause = (error as? ServerError)?.underlyingError ?? error
                    var metadata: Logger.Metadata = ["error": "\(String(describing: type(of: cause)))", "path": "\(request.uri.path)",
                                                     "status": "\(problem.status)", "reason": "\(RemoteText.redactCredentials(String(String(describing: cause).prefix(RemoteText.maxCharacters))))"]
                    if problem.status != 500, let detail = problem.detail { metadata["detail"] = "\(detail)" }
                    context.logger.error("request failed", metadata: metadata)
                }
                response = problem.response(requestID: correlationID)
            }
            response.headers[.requestID] = correlationID
            if response.status == .unsupportedMediaType, request.headers[.contentEncoding] != nil { response.headers[.acceptEncoding] = "identity" }
            // Hummingbird names a request no route matched `NotFound`; the metrics and spans say `unmatched`.
            let route = context.endpointPath.flatMap { $0 == "NotFound" ? nil : $0 } ?? "unmatched"
            let status = Int(response.status.code)
            span.operationName = "\(request.method.rawValue) \(route)"
            span.attributes["http.request.method"] = request.method.rawValue
            span.attributes["http.route"] = route
            span.attributes["http.response.status_code"] = status
            if status >= 500 { span.setStatus(SpanStatus(code: .error)) }
            metrics.httpRequest(method: request.method.rawValue, route: route, status: status, duration: ContinuousClock.now - start)
            return response
        }
    }
}

/// Tells browsers to reach this host only over HTTPS from now on (RFC 6797): on every answer
/// while Sentinel serves TLS itself, outside every other middleware so that problem documents
/// carry it too. A browser ignores it over a certificate it does not trust (the self-signed
/// default), so it never stands in the way of a first visit.
struct StrictTransportSecurityMiddleware: RouterMiddleware {
    typealias Context = SentinelRequestContext
    let value: String

    init(maxAgeSeconds: Int) {
        value = "max-age=\(maxAgeSeconds)"
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        response.headers[.strictTransportSecurity] = value
        return response
    }
}

extension ObservabilityMiddleware {
    /// A request body compressed (`Content-Encoding: gzip`, `br`, …) is refused with 415 before
    /// anything reads it (RFC 9110 §15.5.16), the answer saying `Accept-Encoding: identity`: no
    /// webhook sender, API client or browser form compresses what it sends here, and reading such a
    /// body as it stands would check a signature over bytes nobody meant and answer "not valid JSON".
    /// `identity` (or an empty value) is the body as sent.
    static func checkContentCoding(_ value: String) throws {
        let codings = value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard let other = codings.first(where: { $0.lowercased() != "identity" }) else { return }
        throw Problem(status: .unsupportedMediaType,
                      detail: "the body is sent with Content-Encoding \(other.prefix(40)); Sentinel reads bodies only as sent (identity): send it uncompressed",
                      type: "urn:sentinel:problem:unsupported-content-encoding", title: "Unsupported content encoding")
    }

    /// `Transfer-Encoding: gzip, chunked`: the HTTP parser takes the chunks off and leaves the
    /// gzip on, and the body was read as if sent plain ("not valid UTF-8 text"). Only `chunked`
    /// alone is read; any other coding is refused saying which, as one without chunked already is.
    static func checkTransferCoding(_ value: String) throws {
        let codings = value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }.filter { !$0.isEmpty }
        // Only where the body is chunked last, so that its framing can be read and the connection
        // goes on: without chunked last the HTTP parser refuses the body itself, and an answer here
        // as well made two answers to one request.
        guard codings.last == "chunked", let other = codings.first(where: { $0 != "chunked" }) else { return }
        throw Problem(status: .badRequest,
                      detail: "the request is not valid HTTP/1.1: its body's framing cannot be read (a Transfer-Encoding other than chunked: \(other.prefix(40)))",
                      type: "urn:sentinel:problem:malformed-http", title: "Malformed HTTP request")
    }

    /// A caller's id worth keeping: 1–128 characters, letters, digits and `-_.:`. Checked on the
    /// UTF-8 bytes (ASCII only; a multi-byte character is refused): `Character.isLetter` looked up
    /// Unicode properties for every character of every request's id.
    static func isSaneCorrelationID(_ id: String) -> Bool {
        var id = id
        return id.withUTF8 { bytes in
            !bytes.isEmpty && bytes.count <= 128 && bytes.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                     UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: ":"):
                    true
                default:
                    false
                }
            }
        }
    }
}

/// Reads a `traceparent` (and `tracestate`) from request headers.
/// The trace context a request carries (W3C Trace Context), and nothing else of its headers: the
/// tracer logs the carrier it could not read, which held every header (credentials included).
/// A `traceparent` that is not well formed starts a new trace without a word; one of a later
/// version is read, as the recommendation asks, by its first four fields.
enum TraceHeaders {
    static let traceparent = HTTPField.Name("traceparent")!
    static let tracestate = HTTPField.Name("tracestate")!

    static func carrier(of headers: HTTPFields) -> HTTPFields? {
        guard let value = headers[traceparent], let parent = wellFormed(value) else { return nil }
        var carrier = HTTPFields()
        carrier[traceparent] = parent
        if let state = headers[tracestate], state.utf8.count <= 512 { carrier[tracestate] = state }
        return carrier
    }

    /// `00-<32 hex>-<16 hex>-<2 hex>` (lowercase), or nil; a later version's first four fields as version 00.
    static func wellFormed(_ value: String) -> String? {
        let bytes = Array(value.utf8.prefix(56))
        guard bytes.count >= 55, bytes.count == 55 || bytes[55] == UInt8(ascii: "-") else { return nil }
        func hex(_ range: Range<Int>) -> Bool {
            bytes[range].allSatisfy { ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9")) || ($0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "f")) }
        }
        guard hex(0..<2), bytes[2] == UInt8(ascii: "-"), hex(3..<35), bytes[35] == UInt8(ascii: "-"), hex(36..<52), bytes[52] == UInt8(ascii: "-"),
              hex(53..<55), !(bytes[0] == UInt8(ascii: "f") && bytes[1] == UInt8(ascii: "f")) else { return nil }
        if bytes[0] == UInt8(ascii: "0"), bytes[1] == UInt8(ascii: "0") {
            return bytes.count == 55 ? value : nil
        }
        return "00" + String(decoding: bytes[2..<55], as: UTF8.self)
    }
}

struct HTTPFieldsExtractor: Extractor {
    func extract(key: String, from carrier: HTTPFields) -> String? {
        HTTPField.Name(key).flatMap { carrier[$0] }
    }
}
