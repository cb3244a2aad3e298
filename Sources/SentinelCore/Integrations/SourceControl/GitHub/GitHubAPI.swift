import Foundation
import JWTKit

/// An error answer from the GitHub REST API, classified for the job queue: rate limits and server
/// faults are retried (honouring `Retry-After` / `x-ratelimit-reset`), 404 and 422 fail visibly.
public struct GitHubAPIError: Error, CustomStringConvertible, Sendable {
    public let status: Int
    public let message: String
    public let operation: String
    public let retryAfter: TimeInterval?

    public var isRetryable: Bool {
        status >= 500 || status == 429 || (status == 403 && retryAfter != nil) || status == 408
    }

    public var description: String {
        "GitHub \(operation) failed: HTTP \(status)\(message.isEmpty ? "" : " — \(message)")"
    }
}

/// Where a GitHub (or GitHub Enterprise Server) API lives and how to authenticate as the App.
public struct GitHubAppCredentials: Sendable {
    public var appID: Int64
    public var privateKeyPEM: String
    public var apiBaseURL: URL

    public init(appID: Int64, privateKeyPEM: String, apiBaseURL: URL) {
        self.appID = appID
        self.privateKeyPEM = privateKeyPEM
        self.apiBaseURL = apiBaseURL
    }
}

struct GitHubAppClaims: JWTPayload {
    var iat: IssuedAtClaim
    var exp: ExpirationClaim
    var iss: IssuerClaim
    func verify(using algorithm: some JWTAlgorithm) async throws { try exp.verifyNotExpired() }
}

/// Installation access tokens, minted from an RS256 App JWT and cached until shortly before they
/// expire, so a review run costs one token request per hour at most. Calls made side by side while
/// no token is cached wait for the one being minted instead of minting one each.
public actor GitHubTokenCache {
    private struct Entry { let token: String; let expiresAt: Date }
    private var tokens: [Int64: Entry] = [:]
    /// Installations whose token is being minted, with the callers waiting for it.
    private var minting: [Int64: [CheckedContinuation<String, any Error>]] = [:]
    private let http: any OutboundHTTPClient
    private let credentials: GitHubAppCredentials

    public init(credentials: GitHubAppCredentials, http: any OutboundHTTPClient) {
        self.credentials = credentials
        self.http = http
    }

    /// The App whose tokens these are.
    public nonisolated var appID: Int64 { credentials.appID }

    public func appJWT(now: Date = Date()) async throws -> String {
        let key: Insecure.RSA.PrivateKey
        do { key = try Insecure.RSA.PrivateKey(pem: credentials.privateKeyPEM) } catch {
            throw GitHubAPIError(status: 0, message: "the App private key is not a valid RSA PEM key", operation: "app authentication", retryAfter: nil)
        }
        let keys = JWTKeyCollection()
        await keys.add(rsa: key, digestAlgorithm: .sha256)
        let claims = GitHubAppClaims(iat: .init(value: now.addingTimeInterval(-60)), exp: .init(value: now.addingTimeInterval(540)),
                                     iss: .init(value: String(credentials.appID)))
        return try await keys.sign(claims)
    }

    public func token(installationID: Int64, now: Date = Date()) async throws -> String {
        if let cached = tokens[installationID], cached.expiresAt.timeIntervalSince(now) > 300 { return cached.token }
        if minting[installationID] != nil {
            return try await withCheckedThrowingContinuation { minting[installationID, default: []].append($0) }
        }
        minting[installationID] = []
        let result = await Result { try await mint(installationID: installationID, now: now) }
        for waiter in minting.removeValue(forKey: installationID) ?? [] { waiter.resume(with: result) }
        return try result.get()
    }

    private func mint(installationID: Int64, now: Date) async throws -> String {
        let jwt = try await appJWT(now: now)
        let url = credentials.apiBaseURL.appendingPathComponent("app/installations/\(installationID)/access_tokens")
        let response = try await http.send(OutboundRequest(method: "POST", url: url, headers: GitHubClient.baseHeaders + [("Authorization", "Bearer \(jwt)")]))
        guard response.status == 201 || response.status == 200 else {
            throw GitHubClient.error(response, operation: "create installation token")
        }
        struct Body: Decodable { let token: String; let expiresAt: String? }
        guard let body = try? JSONDecoder.sentinel.decode(Body.self, from: response.body) else {
            throw GitHubAPIError(status: response.status, message: "unreadable installation token response", operation: "create installation token", retryAfter: nil)
        }
        // A token goes into an Authorization header: anything but a token's characters (a line
        // break, a space) is refused here, never sent, and never echoed in an error.
        guard (1...1_024).contains(body.token.utf8.count), body.token.utf8.allSatisfy(Self.isTokenByte) else {
            throw GitHubAPIError(status: response.status, message: "the installation token GitHub returned is not a token (characters a token does not have)",
                                 operation: "create installation token", retryAfter: nil)
        }
        var expires = body.expiresAt.flatMap { try? Date($0, strategy: .iso8601) } ?? now.addingTimeInterval(3600)
        // An expiry already (nearly) past by this clock (a GitHub Enterprise Server whose clock is
        // behind): kept ten minutes rather than minting a new token for every call; a 401 drops it.
        if expires.timeIntervalSince(now) <= 300 { expires = now.addingTimeInterval(600) }
        tokens[installationID] = Entry(token: body.token, expiresAt: expires)
        return body.token
    }

    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "~"), UInt8(ascii: "+"), UInt8(ascii: "/"), UInt8(ascii: "="):
            true
        default:
            false
        }
    }

    /// Drops `token`, which GitHub refused, unless a newer one has replaced it already: calls made
    /// side by side with a revoked token each get a 401, and the later ones must not throw away
    /// (and mint again) the token the first one minted.
    public func invalidate(installationID: Int64, refused token: String) {
        if tokens[installationID]?.token == token { tokens[installationID] = nil }
    }

    /// The App's bot account, `<slug>[bot]`, as GitHub shows it on the App's reviews and comments.
    public func botLogin() async throws -> String {
        let jwt = try await appJWT()
        let url = credentials.apiBaseURL.appendingPathComponent("app")
        let response = try await http.send(OutboundRequest(url: url, headers: GitHubClient.baseHeaders + [("Authorization", "Bearer \(jwt)")]))
        guard response.status == 200 else { throw GitHubClient.error(response, operation: "get app") }
        struct Body: Decodable { let slug: String }
        guard let body = try? JSONDecoder.sentinel.decode(Body.self, from: response.body), !body.slug.isEmpty else {
            throw GitHubAPIError(status: response.status, message: "unreadable app response", operation: "get app", retryAfter: nil)
        }
        return "\(body.slug)[bot]"
    }

    /// The App's installation on a repository (for repositories first seen without one).
    public func installationID(forRepository fullName: String) async throws -> Int64 {
        let jwt = try await appJWT()
        let url = credentials.apiBaseURL.appendingPathComponent("repos/\(fullName)/installation")
        let response = try await http.send(OutboundRequest(url: url, headers: GitHubClient.baseHeaders + [("Authorization", "Bearer \(jwt)")]))
        guard response.status == 200 else { throw GitHubClient.error(response, operation: "find installation") }
        struct Body: Decodable { let id: Int64 }
        guard let body = try? JSONDecoder.sentinel.decode(Body.self, from: response.body) else {
            throw GitHubAPIError(status: response.status, message: "unreadable installation response", operation: "find installation", retryAfter: nil)
        }
        return body.id
    }
}

/// The GitHub REST operations a review run uses, over the project's one HTTP client.
public struct GitHubClient: Sendable {
    public let baseURL: URL
    public let installationID: Int64
    let tokens: GitHubTokenCache
    let http: any OutboundHTTPClient
    let timeout: Duration
    /// Sees every answer (the catch-up sweep reads the rate-limit headers from it).
    let observe: (@Sendable (OutboundResponse) async -> Void)?

    public init(baseURL: URL, installationID: Int64, tokens: GitHubTokenCache, http: any OutboundHTTPClient, timeout: Duration = .seconds(30),
                observe: (@Sendable (OutboundResponse) async -> Void)? = nil) {
        self.baseURL = baseURL
        self.installationID = installationID
        self.tokens = tokens
        self.http = http
        self.timeout = timeout
        self.observe = observe
    }

    /// The query of the `rel="next"` page of a `Link` header (GitHub pages by `page` or by
    /// `cursor`), or nil on the last page. Only the query is taken: the next page is always read
    /// from the configured API URL, whatever host the header names.
    public static func nextPageQuery(_ link: String?) -> [(String, String)]? {
        guard let link else { return nil }
        for part in link.split(separator: ",") {
            let fields = part.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            guard fields.count >= 2, fields.dropFirst().contains(where: { $0.replacingOccurrences(of: " ", with: "") == "rel=\"next\"" }),
                  fields[0].hasPrefix("<"), fields[0].hasSuffix(">"),
                  let components = URLComponents(string: String(fields[0].dropFirst().dropLast())) else { continue }
            return (components.queryItems ?? []).compactMap { item in item.value.map { (item.name, $0) } }
        }
        return nil
    }

    static let baseHeaders: [(String, String)] = [
        ("Accept", "application/vnd.github+json"),
        ("X-GitHub-Api-Version", "2022-11-28"),
    ]

    public static func error(_ response: OutboundResponse, operation: String) -> GitHubAPIError {
        // `{"message": "Validation Failed", "errors": [...]}`: the items are strings ("The commitOID
        // is not part of the pull request") or objects with a `message` or a `code` and `field`.
        struct Item: Decodable {
            let text: String?
            init(from decoder: any Decoder) throws {
                if let text = try? decoder.singleValueContainer().decode(String.self) { self.text = text; return }
                struct Object: Decodable { let message: String?; let code: String?; let field: String? }
                let object = try? Object(from: decoder)
                text = object?.message ?? object.flatMap { o in o.code.map { code in o.field.map { "\($0) \(code)" } ?? code } }
            }
        }
        struct Message: Decodable { let message: String?; let errors: [Item]? }
        let decoded = try? JSONDecoder.sentinel.decode(Message.self, from: response.body)
        let details = (decoded?.errors ?? []).compactMap(\.text).filter { !$0.isEmpty }
        let message = ([decoded?.message ?? ""].filter { !$0.isEmpty } + (details.isEmpty ? [] : [details.joined(separator: "; ")]))
            .joined(separator: ": ")
        var retryAfter = response.retryAfter
        if retryAfter == nil, response.status == 403 || response.status == 429,
           response.header("x-ratelimit-remaining") == "0", let reset = response.resetTime("x-ratelimit-reset") {
            retryAfter = max(1, reset.timeIntervalSinceNow)
        }
        if retryAfter == nil, response.status == 429 { retryAfter = 60 }
        if retryAfter == nil, response.status == 403, message.lowercased().contains("secondary rate limit") { retryAfter = 60 }
        return GitHubAPIError(status: response.status, message: RemoteText.clean(message), operation: operation, retryAfter: retryAfter)
    }

    func request(_ method: String, _ path: String, query: [(String, String)] = [], body: Data? = nil,
                 accept: String? = nil, operation: String, expect: Set<Int> = [200]) async throws -> OutboundResponse {
        var components = URLComponents(url: baseURL.appendingPathComponent(path), resolvingAgainstBaseURL: false)!
        if !query.isEmpty { components.queryItems = query.map { URLQueryItem(name: $0.0, value: $0.1) } }
        var (response, token) = try await send(method, components.url!, body: body, accept: accept)
        if response.status == 401 {
            // The installation token expired early or was revoked: drop it, mint a new one (or
            // take the one a call beside this one minted), and try once more. A second 401 is a
            // real authorisation failure.
            await tokens.invalidate(installationID: installationID, refused: token)
            (response, token) = try await send(method, components.url!, body: body, accept: accept)
            if response.status == 401 { await tokens.invalidate(installationID: installationID, refused: token) }
        }
        await observe?(response)
        guard expect.contains(response.status) else { throw Self.error(response, operation: operation) }
        return response
    }

    /// The response, and the token the request carried.
    private func send(_ method: String, _ url: URL, body: Data?, accept: String?) async throws -> (OutboundResponse, String) {
        let token = try await tokens.token(installationID: installationID)
        var headers = Self.baseHeaders + [("Authorization", "Bearer \(token)")]
        if let accept { headers[0] = ("Accept", accept) }
        if body != nil { headers.append(("Content-Type", "application/json")) }
        return (try await http.send(OutboundRequest(method: method, url: url, headers: headers, body: body, timeout: timeout)), token)
    }

    func decode<T: Decodable>(_ type: T.Type, _ response: OutboundResponse, operation: String) throws -> T {
        do { return try JSONDecoder.sentinel.decode(type, from: response.body) } catch {
            throw GitHubAPIError(status: response.status, message: "unexpected response shape", operation: operation, retryAfter: nil)
        }
    }

    // MARK: Operations

    public func pullRequest(_ repo: String, _ number: Int) async throws -> GitHubPullRequest {
        let r = try await request("GET", "repos/\(repo)/pulls/\(number)", operation: "get pull request")
        return try decode(GitHubPullRequest.self, r, operation: "get pull request")
    }

    /// Every changed file of a PR, following pagination (100 per page, GitHub caps at 3000 files).
    public func pullRequestFiles(_ repo: String, _ number: Int) async throws -> [GitHubChangedFile] {
        var files: [GitHubChangedFile] = []
        for page in 1...30 {
            let r = try await request("GET", "repos/\(repo)/pulls/\(number)/files", query: [("per_page", "100"), ("page", String(page))],
                                      operation: "list pull request files")
            let batch = try decode([GitHubChangedFile].self, r, operation: "list pull request files")
            files += batch
            if batch.count < 100 || !(r.header("Link")?.contains("rel=\"next\"") ?? false) { break }
        }
        return files
    }

    /// GitHub lists at most this many files in a comparison.
    public static let compareFileLimit = 300
    /// GitHub lists at most this many files of a pull request.
    public static let pullRequestFileLimit = 3000

    /// Files changed between two commits (incremental re-review after a push), with GitHub's
    /// `status` of head relative to base (`ahead`, `behind`, `diverged`, `identical`). Nil when
    /// GitHub does not know the base commit any more (404 after a force-push).
    public func compare(_ repo: String, base: String, head: String) async throws -> GitHubComparison? {
        let r = try await request("GET", "repos/\(repo)/compare/\(base)...\(head)", operation: "compare commits", expect: [200, 404])
        if r.status == 404 { return nil }
        return try decode(GitHubComparison.self, r, operation: "compare commits")
    }

    /// A file's raw content at a ref, or nil when it does not exist.
    public func fileContent(_ repo: String, path: String, ref: String) async throws -> Data? {
        let r = try await request("GET", "repos/\(repo)/contents/\(path)", query: [("ref", ref)],
                                  accept: "application/vnd.github.raw+json", operation: "get file content", expect: [200, 404])
        if r.status == 404 { return nil }
        if let object = try? JSONDecoder.sentinel.decode(GitHubContent.self, from: r.body), let encoded = object.content {
            let cleaned = encoded.replacingOccurrences(of: "\n", with: "")
            return Data(base64Encoded: cleaned)
        }
        return r.body
    }

    public func reviews(_ repo: String, _ number: Int) async throws -> [GitHubReview] {
        var all: [GitHubReview] = []
        for page in 1...20 {
            let r = try await request("GET", "repos/\(repo)/pulls/\(number)/reviews", query: [("per_page", "100"), ("page", String(page))],
                                      operation: "list reviews")
            let batch = try decode([GitHubReview].self, r, operation: "list reviews")
            all += batch
            if batch.count < 100 { break }
        }
        return all
    }

    public func createReview(_ repo: String, _ number: Int, _ review: GitHubReviewRequest) async throws -> GitHubReview {
        let r = try await request("POST", "repos/\(repo)/pulls/\(number)/reviews", body: try JSONEncoder.sentinel.encode(review),
                                  operation: "create review")
        return try decode(GitHubReview.self, r, operation: "create review")
    }

    public func createCheckRun(_ repo: String, _ check: GitHubCheckRunRequest) async throws -> Int64 {
        struct Created: Decodable { let id: Int64 }
        let r = try await request("POST", "repos/\(repo)/check-runs", body: try JSONEncoder.sentinel.encode(check),
                                  operation: "create check run", expect: [200, 201])
        return try decode(Created.self, r, operation: "create check run").id
    }

    /// The id of this App's check run named `name` on commit `sha` whose `external_id` is
    /// `externalID`, if there is one (the first 100 of that name are looked at). Another App's check
    /// of the same name and id (a second appliance on the repository) is not this one's.
    public func checkRun(_ repo: String, sha: String, name: String, externalID: String) async throws -> Int64? {
        struct App: Decodable { let id: Int64 }
        struct Listed: Decodable { let id: Int64; let externalID: String?; let app: App? }
        struct Page: Decodable { let checkRuns: [Listed] }
        let app = tokens.appID
        let r = try await request("GET", "repos/\(repo)/commits/\(sha)/check-runs",
                                  query: [("check_name", name), ("filter", "all"), ("app_id", String(app)), ("per_page", "100")],
                                  operation: "list check runs")
        return try decode(Page.self, r, operation: "list check runs").checkRuns.first { $0.externalID == externalID && $0.app?.id == app }?.id
    }

    public func updateCheckRun(_ repo: String, id: Int64, _ check: GitHubCheckRunRequest) async throws {
        _ = try await request("PATCH", "repos/\(repo)/check-runs/\(id)", body: try JSONEncoder.sentinel.encode(check), operation: "update check run")
    }
}

// MARK: - REST shapes (only the fields Sentinel reads or sends; snake_case on the wire through
// `JSONEncoder.sentinel` / `JSONDecoder.sentinel`: `headSHA` is `head_sha`)

public struct GitHubPullRequest: Decodable, Sendable {
    public struct Ref: Decodable, Sendable {
        public let sha: String
        public let ref: String?
        public let repo: Repo?
    }
    public struct Repo: Decodable, Sendable {
        public let id: Int64
        public let fullName: String
    }
    public let number: Int
    public let state: String?
    public let draft: Bool?
    public let title: String?
    public let head: Ref
    public let base: Ref
    public let changedFiles: Int?
}

public struct GitHubChangedFile: Decodable, Sendable {
    public let filename: String
    public let status: String
    public let additions: Int?
    public let deletions: Int?
    public let patch: String?
    public let previousFilename: String?
}

public struct GitHubComparison: Decodable, Sendable {
    public let status: String?
    public let files: [GitHubChangedFile]?
}

struct GitHubContent: Decodable { let content: String?; let encoding: String? }

public struct GitHubReview: Decodable, Sendable {
    public struct User: Decodable, Sendable {
        public let login: String
        public let type: String?
    }
    public let id: Int64
    public let body: String?
    public let state: String?
    public let commitID: String?
    public let user: User?
}

public struct GitHubReviewComment: Encodable, Sendable, Equatable {
    public var path: String
    public var line: Int
    public var side: String
    public var startLine: Int?
    public var startSide: String?
    public var body: String

    public init(path: String, line: Int, side: String, startLine: Int?, startSide: String?, body: String) {
        self.path = path
        self.line = line
        self.side = side
        self.startLine = startLine
        self.startSide = startSide
        self.body = body
    }
}

public struct GitHubReviewRequest: Encodable, Sendable {
    public var commitID: String
    public var body: String
    public var event: String
    public var comments: [GitHubReviewComment]

    public init(commitID: String, body: String, event: String, comments: [GitHubReviewComment]) {
        self.commitID = commitID
        self.body = body
        self.event = event
        self.comments = comments
    }
}

public struct GitHubCheckRunRequest: Encodable, Sendable {
    public struct Output: Encodable, Sendable {
        public var title: String
        public var summary: String
        public var text: String?

        public init(title: String, summary: String, text: String?) {
            self.title = title
            self.summary = summary
            self.text = text
        }
    }
    public var name: String?
    public var headSHA: String?
    public var status: String
    public var conclusion: String?
    public var externalID: String?
    public var startedAt: String?
    public var completedAt: String?
    public var output: Output?

    public init(name: String?, headSHA: String?, status: String, conclusion: String?, externalID: String?,
                startedAt: String?, completedAt: String?, output: Output?) {
        self.name = name
        self.headSHA = headSHA
        self.status = status
        self.conclusion = conclusion
        self.externalID = externalID
        self.startedAt = startedAt
        self.completedAt = completedAt
        self.output = output
    }
}
