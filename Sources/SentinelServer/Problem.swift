import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
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

    enum CodingKeys: String, CodingKey { case type, title, status, detail, instance }

    public init(status: HTTPResponse.Status, detail: String? = nil, type: String = "about:blank", title: String? = nil) {
        self.type = type
        self.title = title ?? status.reasonPhrase
        self.status = Int(status.code)
        self.detail = detail
    }

    public func response(requestID: String?) -> Response {
        var headers: HTTPFields = [.contentType: "application/problem+json"]
        if let requestID { headers[.requestID] = requestID }
        if let retryAfter { headers[.retryAfter] = String(retryAfter) }
        var copy = self
        copy.instance = requestID.map { "urn:sentinel:request:\($0)" }
        let body = (try? JSONEncoder.sentinel.encode(copy)) ?? Data("{\"status\":\(status)}".utf8)
        return Response(status: .init(code: status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// The problem an error stands for: errors that know what they mean to HTTP
    /// (`ProblemConvertible`, Hummingbird's `HTTPError`) say so; any other error is a 500 whose text
    /// never reaches the client (the caller logs it).
    static func from(_ error: Error) -> Problem {
        switch error {
        case let error as any ProblemConvertible: return error.problem
        case let error as HTTPError: return Problem(status: error.status, detail: error.body)
        default: return .internalError
        }
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

extension HTTPField.Name {
    static let requestID = Self("X-Request-ID")!
}
