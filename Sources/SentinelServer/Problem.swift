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

    /// The one mapping from errors of the lower layers to HTTP. Unknown errors are 500 and logged;
    /// their text never reaches the client.
    static func from(_ error: Error) -> (Problem, isServerFault: Bool) {
        switch error {
        case let problem as Problem:
            return (problem, problem.status >= 500)
        case let error as HTTPError:
            let status = error.status
            return (Problem(status: status, detail: error.body), status.code >= 500)
        case let error as WorkspaceError:
            switch error {
            case .notFound: return (Problem(status: .notFound, detail: "no such workspace"), false)
            case .offline(_, let reason):
                return (Problem(status: .serviceUnavailable, detail: "this workspace is offline: \(reason); other workspaces are unaffected",
                                type: "urn:sentinel:problem:workspace-offline", title: "Workspace offline"), false)
            case .closed, .shuttingDown:
                return (Problem(status: .serviceUnavailable, detail: error.description), false)
            }
        case let error as IdentityError:
            switch error.kind {
            case .invalid: return (Problem(status: .badRequest, detail: error.description), false)
            case .notFound: return (Problem(status: .notFound, detail: error.description), false)
            case .conflict: return (Problem(status: .conflict, detail: error.description), false)
            case .unauthenticated: return (Problem(status: .unauthorized, detail: error.description), false)
            case .forbidden: return (Problem(status: .forbidden, detail: error.description), false)
            case .rateLimited(let seconds):
                var problem = Problem(status: .tooManyRequests, detail: error.description)
                problem.retryAfter = seconds
                return (problem, false)
            }
        case let error as PlanLimitError:
            return (Problem(status: .forbidden, detail: error.message, type: "urn:sentinel:problem:plan-limit", title: "Plan limit reached"), false)
        case let error as StorageError:
            switch error {
            case .notFound(let m): return (Problem(status: .notFound, detail: m), false)
            case .conflict(let m): return (Problem(status: .conflict, detail: m), false)
            case .invalid(let m): return (Problem(status: .badRequest, detail: m), false)
            default: return (Problem(status: .internalServerError, detail: "an internal error occurred; see the server log for this request id"), true)
            }
        case let error as ProviderStoreError:
            switch error {
            case .invalid(let m): return (Problem(status: .badRequest, detail: m), false)
            case .notFound: return (Problem(status: .notFound, detail: error.description), false)
            }
        case let error as IntegrationError:
            switch error {
            case .invalid(let m): return (Problem(status: .badRequest, detail: m), false)
            case .notFound: return (Problem(status: .notFound, detail: error.description), false)
            }
        case let error as PolicySettingsError:
            return (Problem(status: .badRequest, detail: error.description, type: "urn:sentinel:problem:invalid-setting", title: "Invalid setting"), false)
        default:
            return (Problem(status: .internalServerError, detail: "an internal error occurred; see the server log for this request id"), true)
        }
    }
}

extension HTTPField.Name {
    static let requestID = Self("X-Request-ID")!
}
