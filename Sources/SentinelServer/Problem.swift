import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOHTTP1
import OpenAPIRuntime
import SentinelCore

/// RFC 9457 problem details: every error the API returns has this shape and content type.
public struct Problem: Error, Codable, Sendable, Equatable {
    public var type: String
    public var title: String
    public var status: Int
    public var detail: String?
    public var instance: String?
    /// Sent as `Retry-After` (seconds) with 429 and 503.
    public var retryAfter: Int?
    /// Sent as `WWW-Authenticate` with a 401 (RFC 9110 §11.6.1): how to authenticate, and why the
    /// credentials sent were refused. The API's 401s carry `Bearer realm="Sentinel"` (the default
    /// for a 401 of the API); a webhook's 401 names the signature header it wants in its detail.
    public var challenge: String?

    enum CodingKeys: String, CodingKey { case type, title, status, detail, instance }

    public init(status: HTTPResponse.Status, detail: String? = nil, type: String = "about:blank", title: String? = nil) {
        self.type = type
        self.title = title ?? status.reasonPhrase
        self.status = Int(status.code)
        self.detail = detail
    }

    public func response(requestID: String?) -> Response {
        var headers: HTTPFields = [.contentType: "application/problem+json", .cacheControl: "no-store",
                                   APIResponseHeadersMiddleware.contentTypeOptions: "nosniff"]
        if let requestID { headers[.requestID] = requestID }
        if let retryAfter { headers[.retryAfter] = String(retryAfter) }
        if let challenge { headers[.wwwAuthenticate] = challenge }
        return Response(status: .init(code: status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: document(requestID: requestID))))
    }

    /// The problem as its JSON document, its `instance` naming the request.
    func document(requestID: String?) -> Data {
        var copy = self
        copy.instance = requestID.map { "urn:sentinel:request:\($0)" }
        return (try? JSONEncoder.sentinel.encode(copy)) ?? Data("{\"status\":\(status)}".utf8)
    }

    /// The problem an error stands for: errors that know what they mean to HTTP
    /// (`ProblemConvertible`, Hummingbird's `HTTPError`) say so; any other error is a 500 whose text
    /// never reaches the client (the caller logs it).
    static func from(_ error: Error) -> Problem {
        switch error {
        case let error as any ProblemConvertible: return error.problem
        case let error as HTTPError: return Problem(status: error.status, detail: error.body)
        case let error as ServerError: return from(generated: error)
        default: return .internalError
        }
    }

    /// An error from the generated API code: what a handler or middleware threw, or a request the
    /// generated decoding refused (a 4xx the runtime names), or a fault (500).
    static func from(generated error: ServerError) -> Problem {
        switch error.underlyingError {
        case is any ProblemConvertible, is HTTPError:
            return from(error.underlyingError)
        case let decoding as DecodingError:
            return Problem(status: .badRequest, detail: Self.describe(decoding), type: "urn:sentinel:problem:invalid-field",
                           title: "Invalid request body")
        default:
            guard error.httpStatus.code < 500 else { return .internalError }
            return Problem(status: error.httpStatus, detail: error.causeDescription)
        }
    }

    /// A decoding failure as `field: what is wrong`.
    static func describe(_ error: DecodingError) -> String {
        func field(_ path: [any CodingKey], _ key: (any CodingKey)? = nil) -> String {
            let names = (path + (key.map { [$0] } ?? [])).map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
            let joined = names.reduce("") { $0.isEmpty || $1.hasPrefix("[") ? $0 + $1 : $0 + "." + $1 }
            return joined.isEmpty ? "the body" : joined
        }
        switch error {
        case .keyNotFound(let key, let context): return "\(field(context.codingPath, key)): required"
        case .typeMismatch(_, let context), .valueNotFound(_, let context): return "\(field(context.codingPath)): has the wrong type"
        case .dataCorrupted(let context): return "\(field(context.codingPath)): \(context.debugDescription)"
        @unknown default: return "the body does not match the schema"
        }
    }

    /// The API's way in (RFC 6750 §3): a bearer token, a session's or an API token.
    static let bearerChallenge = #"Bearer realm="Sentinel""#

    /// A 401 of the API: its detail, with the bearer challenge (`invalidToken`: the one sent was
    /// unknown, expired or revoked, RFC 6750 §3.1).
    static func unauthenticated(_ detail: String, invalidToken: Bool = false) -> Problem {
        var problem = Problem(status: .unauthorized, detail: detail)
        problem.challenge = bearerChallenge + (invalidToken ? #", error="invalid_token""# : "")
        return problem
    }

    /// A 401 of a webhook: its detail, with a challenge naming what authenticates a delivery
    /// (RFC 9110 §15.5.2 asks every 401 for one): GitHub's HMAC-SHA256 of the body in
    /// `X-Hub-Signature-256`, or GitLab's secret token in `X-Gitlab-Token`.
    static func unauthenticatedDelivery(_ detail: String, scheme: String, header: String) -> Problem {
        var problem = Problem(status: .unauthorized, detail: detail)
        problem.challenge = #"\#(scheme) realm="Sentinel webhooks", header="\#(header)""#
        return problem
    }

    static let internalError = Problem(status: .internalServerError, detail: "an internal error occurred; see the server log for this request id")

    var isServerFault: Bool { status >= 500 }
}

/// An error that knows what it means to an API client. Domain errors of SentinelCore conform by
/// extension in this module (`DomainProblems.swift`), each with its own mapping.
protocol ProblemConvertible: Error {
    var problem: Problem { get }
}

extension Problem: ProblemConvertible {
    var problem: Problem { self }
}

/// A request that breaks HTTP/1.1's framing after its head was read (a chunk size that is not
/// hexadecimal, a body cut short by a bad chunk): NIO's parser stops reading it, and whatever was
/// reading the body (a webhook, an API operation, a console form) gets this error. The client's
/// fault, so a 400; the connection is closed after the answer.
extension HTTPParserError: ProblemConvertible {
    var problem: Problem {
        // A head over `server.max_header_bytes` is 431 (RFC 6585 §5); every other break a 400.
        if self == .headerOverflow {
            return Problem(status: .init(code: 431, reasonPhrase: "Request Header Fields Too Large"),
                           detail: "the request's head is larger than this server reads (server.max_header_bytes)",
                           type: "urn:sentinel:problem:head-too-large", title: "Request Header Fields Too Large")
        }
        return Problem(status: .badRequest, detail: "the request is not valid HTTP/1.1: \(reason)", type: "urn:sentinel:problem:malformed-http",
                       title: "Malformed HTTP request")
    }

    /// What the parser found, in words (NIO's own names, such as `unknown (http_parser error)`
    /// for a `Transfer-Encoding` other than chunked, tell a client nothing).
    var reason: String {
        switch self {
        case .invalidChunkSize: "a chunk size of its chunked body is not a hexadecimal number this server reads (or is too large)"
        // llhttp reports Content-Length beside `Transfer-Encoding: chunked` as this too.
        case .invalidContentLength: "its Content-Length is not a number, or is given beside Transfer-Encoding"
        case .unexpectedContentLength: "it gives Content-Length twice with different values, or beside Transfer-Encoding"
        case .invalidEOFState, .closedConnection: "its body ended before the length it declared"
        case .invalidCharactersUsed, .invalidHeaderToken: "a header holds a character HTTP does not allow"
        case .lfExpected, .invalidConstant: "a line does not end where HTTP expects it to"
        case .headerOverflow: "its head is too large"
        case .unknown: "its body's framing cannot be read (a Transfer-Encoding other than chunked, for example)"
        default: "\(self)"
        }
    }
}

/// A body read with a limit (`collect(upTo:)`) that went past it: the client sent more than the
/// endpoint reads, a 413, wherever the body is read. (It was a 500 where no reader mapped it: a
/// console form of 2 MB.) Readers that know their limit say it in their own problem.
extension NIOTooManyBytesError: ProblemConvertible {
    var problem: Problem {
        Problem(status: .contentTooLarge, detail: "the request's body is larger than this address reads")
    }
}

extension HTTPField.Name {
    static let requestID = Self("X-Request-ID")!
}
