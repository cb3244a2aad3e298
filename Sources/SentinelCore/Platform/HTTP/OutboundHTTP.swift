import Foundation

/// An outbound HTTP request as integrations build it. Integrations never see the transport, so
/// each can be pointed at a loopback fake or given its own trust roots.
public struct OutboundRequest: Sendable {
    public var method: String
    public var url: URL
    public var headers: [(String, String)]
    public var body: Data?
    public var timeout: Duration
    /// The URL's path is a credential (a notification channel's URL: Slack's
    /// `/services/T…/B…/<token>`, a Teams workflow's, any webhook's): its `outbound call` line and
    /// span name the host and `/…` only.
    public var pathIsSecret: Bool
    /// A 2xx head is the whole answer (a notification delivered): of its body at most the first
    /// `acceptedBodyBytes` are read, and a body that is slow, too large or cut off still leaves
    /// the call succeeded. Read in full, such a body failed the call and the message was sent
    /// again on every retry.
    public var acceptedOnSuccessHead: Bool

    /// How much of a body `acceptedOnSuccessHead` reads.
    public static let acceptedBodyBytes = 4096

    public init(method: String = "GET", url: URL, headers: [(String, String)] = [], body: Data? = nil, timeout: Duration = .seconds(30),
                pathIsSecret: Bool = false, acceptedOnSuccessHead: Bool = false) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
        self.pathIsSecret = pathIsSecret
        self.acceptedOnSuccessHead = acceptedOnSuccessHead
    }

    public func header(_ name: String) -> String? {
        headers.first { $0.0.caseInsensitiveCompare(name) == .orderedSame }?.1
    }
}

public struct OutboundResponse: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: Data

    public init(status: Int, headers: [(String, String)] = [], body: Data = Data()) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public func header(_ name: String) -> String? {
        headers.first { $0.0.caseInsensitiveCompare(name) == .orderedSame }?.1
    }

    /// `Retry-After` in seconds (delta form or HTTP date), if present.
    public var retryAfter: TimeInterval? {
        guard let value = header("Retry-After")?.trimmingCharacters(in: .whitespaces) else { return nil }
        if let seconds = TimeInterval(value) { return RemoteDelay.seconds(seconds) }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return formatter.date(from: value).flatMap { RemoteDelay.seconds($0.timeIntervalSinceNow) }
    }

    /// A rate-limit reset stated as a Unix time (`x-ratelimit-reset`, `RateLimit-Reset`), if it is a
    /// number: no earlier than 1970 and no later than `RemoteDelay.maximum` from now.
    public func resetTime(_ name: String) -> Date? {
        guard let value = header(name).flatMap({ Double($0.trimmingCharacters(in: .whitespaces)) }), value.isFinite else { return nil }
        return Date(timeIntervalSince1970: min(max(0, value), Date().timeIntervalSince1970 + RemoteDelay.maximum))
    }
}

/// A wait a remote server asked for (`Retry-After`, a rate limit's reset, a provider's retry hint),
/// in seconds: a number, at least 0, at most a day. A server answering `Retry-After: 1e300` or
/// `inf` is misbehaving; taken as is, the value trapped where it became a duration or an integer.
public enum RemoteDelay {
    public static let maximum: TimeInterval = 86_400

    /// nil for a value that is not a finite number (the caller's own backoff applies).
    public static func seconds(_ value: Double) -> TimeInterval? {
        guard value.isFinite else { return nil }
        return min(max(0, value), maximum)
    }
}

/// Transport failures, distinct from HTTP error statuses (which come back as responses).
public enum OutboundHTTPError: Error, CustomStringConvertible, Equatable {
    case timeout(String)
    case connection(String)
    case responseTooLarge(String)
    /// The destination is not allowed (`DestinationPolicy`); nothing was sent.
    case destinationRefused(String)

    public var description: String {
        switch self {
        case .timeout(let host): return "request to \(host) timed out"
        case .connection(let message): return "connection failed: \(message)"
        case .responseTooLarge(let host): return "response from \(host) exceeded the size limit"
        case .destinationRefused(let message): return "destination refused: \(message)"
        }
    }
}

/// The project's one outbound HTTP client. The production implementation wraps AsyncHTTPClient.
public protocol OutboundHTTPClient: Sendable {
    func send(_ request: OutboundRequest) async throws -> OutboundResponse
}
