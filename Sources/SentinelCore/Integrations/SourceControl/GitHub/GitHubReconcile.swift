import Foundation

/// The rate-limit budget GitHub states on its answers (`x-ratelimit-remaining`, `x-ratelimit-limit`,
/// `x-ratelimit-reset`), the last one seen, per integration.
public actor GitHubRateBudget {
    private var last: RateBudget?

    public init() {}

    public func observe(_ response: OutboundResponse) {
        guard let remaining = response.header("x-ratelimit-remaining").flatMap({ Int($0.trimmingCharacters(in: .whitespaces)) }),
              let limit = response.header("x-ratelimit-limit").flatMap({ Int($0.trimmingCharacters(in: .whitespaces)) }) else { return }
        last = RateBudget(remaining: remaining, limit: limit, resetAt: response.resetTime("x-ratelimit-reset"))
    }

    public var current: RateBudget? { last }
}

/// An entry of a list read on its own: nil when it does not decode as `Value`.
struct Lenient<Value: Decodable>: Decodable {
    let value: Value?
    init(from decoder: any Decoder) throws { value = try? Value(from: decoder) }
}

/// One entry of GitHub's `GET /app/hook/deliveries` (only the fields Sentinel reads).
public struct GitHubHookDelivery: Decodable, Sendable {
    public let id: Int64
    public let guid: String
    public let delivered_at: String
    public let redelivery: Bool?
    public let status: String?
    public let status_code: Int?
    public let event: String
    public let action: String?
}

/// GitHub behind `ReconcileSession`: open pull requests with the installation token of each
/// repository, the App's webhook deliveries with the App JWT.
public struct GitHubReconcileSession: ReconcileSession {
    let apiURL: URL
    let tokens: GitHubTokenCache
    let http: any OutboundHTTPClient
    let timeout: Duration
    let rateBudget: GitHubRateBudget

    /// Pages read at most per listing (100 items a page).
    public static let maxPages = 30

    public init(apiURL: URL, tokens: GitHubTokenCache, http: any OutboundHTTPClient, timeout: Duration = .seconds(30),
                rateBudget: GitHubRateBudget = GitHubRateBudget()) {
        self.apiURL = apiURL
        self.tokens = tokens
        self.http = http
        self.timeout = timeout
        self.rateBudget = rateBudget
    }

    public var platformName: String { "GitHub" }
    public var canRedeliver: Bool { true }

    public func budget() async -> RateBudget? { await rateBudget.current }

    private func client(installationID: Int64) -> GitHubClient {
        let budget = rateBudget
        return GitHubClient(baseURL: apiURL, installationID: installationID, tokens: tokens, http: http, timeout: timeout,
                            observe: { await budget.observe($0) })
    }

    private var session: GitHubSession { GitHubSession(client: client(installationID: 0)) }

    public func openPullRequests(_ repository: RepositoryRecord) async throws -> OpenPullRequestList {
        try await session.mapped {
            var installation = repository.installationID
            if installation == nil { installation = try await tokens.installationID(forRepository: repository.fullName) }
            let api = client(installationID: installation!)
            var found: [OpenPullRequest] = []
            var numbers = Set<Int>()
            var query: [(String, String)] = [("state", "open"), ("per_page", "100")]
            // A `next` link back to a page already read (or after an empty page) ends the listing:
            // followed, it read the same page 30 times and counted its pull requests 30 times.
            var asked: Set<String> = []
            /// A page's query as one text, the first page's without `page` as `page=1`.
            func key(_ query: [(String, String)]) -> String {
                (query.contains { $0.0 == "page" } ? query : query + [("page", "1")]).map { "\($0.0)=\($0.1)" }.sorted().joined(separator: "&")
            }
            // By name; a repository renamed or moved while Sentinel was down answers 301 there (and
            // was never swept again): then by its id, which GitHub's redirect names too.
            var path = "repos/\(repository.fullName)/pulls"
            for page in 1...Self.maxPages {
                asked.insert(key(query))
                let r: OutboundResponse
                do {
                    r = try await api.request("GET", path, query: query, operation: "list pull requests")
                } catch let error as GitHubAPIError where error.status == 301 && path.hasPrefix("repos/") {
                    path = "repositories/\(repository.externalID)/pulls"
                    r = try await api.request("GET", path, query: query, operation: "list pull requests")
                }
                // Entry by entry: one the page holds in a shape Sentinel cannot read (a null head)
                // is passed over, not the whole repository's listing.
                let batch = try api.decode([Lenient<GitHubPullRequest>].self, r, operation: "list pull requests")
                for pull in batch.compactMap(\.value) where (pull.state ?? "open") == "open" && numbers.insert(pull.number).inserted {
                    found.append(OpenPullRequest(number: pull.number, headSHA: pull.head.sha, baseSHA: pull.base.sha, isDraft: pull.draft ?? false))
                }
                guard !batch.isEmpty, let next = GitHubClient.nextPageQuery(r.header("Link")),
                      !asked.contains(key(next)) else { break }
                // GitHub lists the newest first: what is past the last page read is the oldest.
                if page == Self.maxPages { return OpenPullRequestList(pulls: found, truncatedAfter: found.count, currentName: try await renamed()) }
                query = next
            }
            return OpenPullRequestList(pulls: found, currentName: try await renamed())
            /// Listed by id: the name it has now, which the runs the sweep requests address it by
            /// (under the old name GitHub answers their POSTs with a 307 Sentinel does not follow).
            func renamed() async throws -> String? {
                guard path.hasPrefix("repositories/") else { return nil }
                let r = try await api.request("GET", "repositories/\(repository.externalID)", operation: "get repository")
                let name = try api.decode(GitHubPullRequest.Repo.self, r, operation: "get repository").fullName
                return RepositoryName.isValid(name, parts: 2...2) ? name : nil
            }
        }
    }

    /// An `/app/…` request authenticated as the App (JWT), as GitHub requires for its webhook log.
    private func appRequest(_ method: String, _ path: String, query: [(String, String)] = [], operation: String,
                            expect: Set<Int>) async throws -> OutboundResponse {
        let jwt = try await tokens.appJWT()
        var components = URLComponents(url: apiURL.appendingPathComponent(path), resolvingAgainstBaseURL: false)!
        if !query.isEmpty { components.queryItems = query.map { URLQueryItem(name: $0.0, value: $0.1) } }
        let response = try await http.send(OutboundRequest(method: method, url: components.url!,
                                                           headers: GitHubClient.baseHeaders + [("Authorization", "Bearer \(jwt)")],
                                                           timeout: timeout))
        await rateBudget.observe(response)
        guard expect.contains(response.status) else { throw GitHubClient.error(response, operation: operation) }
        return response
    }

    public func failedDeliveries(after cursor: String?, since: Date) async throws -> DeliveryLog {
        try await session.mapped {
            let seen = cursor.flatMap { Int64($0) }
            var newest: Int64?
            var failed: [FailedDelivery] = []
            var query: [(String, String)] = [("per_page", "100")]
            // As for pull requests: a `next` link back to a page already read ends the log.
            var asked: Set<String> = []
            var read = 0
            pages: for page in 1...(Self.maxPages + 1) {
                guard asked.insert(query.map { "\($0.0)=\($0.1)" }.sorted().joined(separator: "&")).inserted else { break }
                let r = try await appRequest("GET", "app/hook/deliveries", query: query, operation: "list webhook deliveries", expect: [200])
                let batch: [GitHubHookDelivery]
                do { batch = try JSONDecoder().decode([GitHubHookDelivery].self, from: r.body) } catch {
                    throw GitHubAPIError(status: r.status, message: "unexpected response shape", operation: "list webhook deliveries", retryAfter: nil)
                }
                if page > Self.maxPages {
                    // One page past what a sweep reads, only looked at: does the log go on with
                    // deliveries this sweep should have read? (A log of exactly one sweep's pages is not cut.)
                    let more = batch.contains { delivery in
                        guard seen.map({ delivery.id > $0 }) ?? true, let at = try? Date(delivery.delivered_at, strategy: .iso8601) else { return false }
                        return at >= since
                    }
                    if more { return DeliveryLog(failed: failed, cursor: newest.map(String.init) ?? cursor, truncatedAfter: read) }
                    break
                }
                for delivery in batch {
                    if let seen, delivery.id <= seen { break pages }  // newest first: the rest was read by an earlier sweep
                    newest = max(newest ?? delivery.id, delivery.id)
                    read += 1
                    guard let at = try? Date(delivery.delivered_at, strategy: .iso8601) else { continue }
                    if at < since { break pages }  // older than GitHub's redelivery window
                    let code = delivery.status_code ?? 0
                    if !(200..<300).contains(code) {
                        failed.append(FailedDelivery(id: String(delivery.id), guid: delivery.guid, deliveredAt: at, statusCode: code,
                                                     event: delivery.event, action: delivery.action))
                    }
                }
                guard let next = GitHubClient.nextPageQuery(r.header("Link")) else { break }
                query = next
            }
            return DeliveryLog(failed: failed, cursor: newest.map(String.init) ?? cursor)
        }
    }

    public func redeliver(_ delivery: FailedDelivery) async throws {
        guard let id = Int64(delivery.id) else { throw SourceControlError.permanent("invalid GitHub delivery id \(delivery.id)") }
        _ = try await session.mapped {
            try await appRequest("POST", "app/hook/deliveries/\(id)/attempts", operation: "redeliver webhook", expect: [200, 202])
        }
    }
}
