import Foundation

/// An error answer from the GitLab REST API, classified for the job queue: rate limits, server
/// faults and timeouts are retried (honouring `Retry-After` / `RateLimit-Reset`), and so is a 403
/// that carries `Retry-After` (a throttle, e.g. a proxy in front of GitLab, not a refused
/// permission); 400, 401, other 403s and 404 fail visibly.
public struct GitLabAPIError: Error, CustomStringConvertible, Sendable {
    public let status: Int
    public let message: String
    public let operation: String
    public let retryAfter: TimeInterval?

    /// A 409 to a commit status is GitLab's "Another update to this commit status is in progress"
    /// (its per-commit lock, held while CI posts statuses on the same commit): gone in seconds.
    public var isRetryable: Bool {
        status >= 500 || status == 429 || status == 408 || (status == 409 && operation == "set commit status") || (status == 403 && retryAfter != nil)
    }

    public var description: String {
        "GitLab \(operation) failed: HTTP \(status)\(message.isEmpty ? "" : " — \(message)")"
    }
}

/// The GitLab REST (`/api/v4`) operations Sentinel uses, over the project's one HTTP client,
/// authenticated with the integration's access token (personal, project or group token with the
/// `api` scope). Projects are addressed by their numeric id.
public struct GitLabClient: Sendable {
    /// The instance root, e.g. `https://gitlab.example.com` (the API is at `/api/v4`).
    public let baseURL: URL
    let token: String
    let http: any OutboundHTTPClient
    let timeout: Duration
    /// Sees every answer (the catch-up sweep reads the `RateLimit-*` headers from it).
    let observe: (@Sendable (OutboundResponse) async -> Void)?

    public init(baseURL: URL, token: String, http: any OutboundHTTPClient, timeout: Duration = .seconds(30),
                observe: (@Sendable (OutboundResponse) async -> Void)? = nil) {
        self.baseURL = baseURL
        self.token = token
        self.http = http
        self.timeout = timeout
        self.observe = observe
    }

    public static func error(_ response: OutboundResponse, operation: String) -> GitLabAPIError {
        // GitLab answers `{"message": …}` (a string, or an object of field errors) or `{"error": …}`.
        var message = ""
        if let object = try? JSONSerialization.jsonObject(with: response.body) as? [String: Any] {
            if let text = object["message"] as? String {
                message = text
            } else if let fields = object["message"], JSONSerialization.isValidJSONObject(fields),
                      let data = try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys]) {
                message = String(decoding: data, as: UTF8.self)
            } else if let text = object["error_description"] as? String ?? object["error"] as? String {
                message = text
            }
        }
        var retryAfter = response.retryAfter
        if retryAfter == nil, response.status == 429 {
            retryAfter = response.resetTime("RateLimit-Reset").map { max(1, $0.timeIntervalSinceNow) } ?? 60
        }
        return GitLabAPIError(status: response.status, message: RemoteText.clean(message), operation: operation, retryAfter: retryAfter)
    }

    /// `GET|POST /api/v4/<path>`; `path` components are already escaped where they need to be.
    func request(_ method: String, _ path: String, query: [(String, String)] = [], body: (any Encodable)? = nil, operation: String,
                 expect: Set<Int> = [200]) async throws -> OutboundResponse {
        guard var components = URLComponents(url: baseURL, resolvingAgainstBaseURL: false) else {
            throw GitLabAPIError(status: 0, message: "invalid base URL \(baseURL)", operation: operation, retryAfter: nil)
        }
        let root = components.percentEncodedPath.hasSuffix("/") ? String(components.percentEncodedPath.dropLast()) : components.percentEncodedPath
        components.percentEncodedPath = root + "/api/v4/" + path
        if !query.isEmpty { components.queryItems = query.map { URLQueryItem(name: $0.0, value: $0.1) } }
        guard let url = components.url else {
            throw GitLabAPIError(status: 0, message: "invalid request path \(path)", operation: operation, retryAfter: nil)
        }
        var headers = [("Accept", "application/json"), ("PRIVATE-TOKEN", token)]
        var data: Data?
        if let body {
            data = try JSONEncoder().encode(body)
            headers.append(("Content-Type", "application/json"))
        }
        let response = try await http.send(OutboundRequest(method: method, url: url, headers: headers, body: data, timeout: timeout))
        await observe?(response)
        guard expect.contains(response.status) else { throw Self.error(response, operation: operation) }
        return response
    }

    func decode<T: Decodable>(_ type: T.Type, _ response: OutboundResponse, operation: String) throws -> T {
        do { return try JSONDecoder().decode(type, from: response.body) } catch {
            throw GitLabAPIError(status: response.status, message: "unexpected response shape", operation: operation, retryAfter: nil)
        }
    }

    /// Every page of a list, following `X-Next-Page` (at most `maxPages` pages of 100).
    /// Pages shrink as in `listing`: a list of what anyone can write (notes, discussions: up to a
    /// million characters a note) must not grow past the response limit, or 34 long comments on a
    /// merge request made every review of it fail.
    func list<T: Decodable>(_ path: String, query: [(String, String)] = [], operation: String, maxPages: Int = 50) async throws -> [T] {
        try await listing(path, query: query, operation: operation, maxItems: maxPages * 100, shrinkingPages: true).items
    }

    /// A list as read: its items, how many GitLab had that were left out (`tooLarge`), and whether
    /// it had more than `maxItems`.
    struct Listing<T> {
        var items: [T] = []
        var tooLarge = 0
        var more = false
    }

    /// Every page of a list, 100 items a page, following `X-Next-Page` or, where a proxy dropped
    /// that header, the `Link` header's `rel="next"` page. Pages only go forward: a next page that
    /// is not after this one (a server or proxy repeating `X-Next-Page: 1`) ends the listing rather
    /// than reading a page again, and one further on is read as the page after this one. With `shrinkingPages` (merge request diffs: up to 500 KB of patch
    /// a file, escaped in JSON), a page past the response limit is asked for again in fewer items
    /// (20, 4, 1) and an item too large alone is left out and counted; pages grow back once aligned.
    func listing<T: Decodable>(_ path: String, query: [(String, String)] = [], operation: String, maxItems: Int,
                               shrinkingPages: Bool = false) async throws -> Listing<T> {
        var listing = Listing<T>()
        var perPage = 100
        // Items GitLab listed before the next page (those left out included).
        var offset = 0
        while true {
            guard offset < maxItems, listing.tooLarge < 10 else {
                listing.more = true
                return listing
            }
            let page = offset / perPage + 1
            let r: OutboundResponse
            do {
                r = try await request("GET", path, query: query + [("per_page", String(perPage)), ("page", String(page))], operation: operation)
            } catch OutboundHTTPError.responseTooLarge where shrinkingPages {
                if perPage > 1 {
                    perPage = perPage == 100 ? 20 : perPage == 20 ? 4 : 1
                } else {
                    listing.tooLarge += 1
                    offset += 1
                }
                continue
            }
            let batch = try decode([T].self, r, operation: operation)
            listing.items += batch
            guard !batch.isEmpty, let next = Self.nextPage(r), next > page else { return listing }
            // The page after this one, whatever later page was named: a jump would leave items
            // unread, and a page number near `Int.max` overflowed the offset (a crash at every sweep).
            offset = page * perPage
            if let larger = [100, 20, 4].first(where: { $0 > perPage && offset % $0 == 0 }) { perPage = larger }
        }
    }

    /// The next page a list's answer names: `X-Next-Page`, else the `page` of `Link`'s `rel="next"`.
    static func nextPage(_ response: OutboundResponse) -> Int? {
        if let next = response.header("X-Next-Page")?.trimmingCharacters(in: .whitespaces), !next.isEmpty { return Int(next) }
        guard let link = response.header("Link") else { return nil }
        for part in link.split(separator: ",") where part.contains(#"rel="next""#) {
            guard let open = part.firstIndex(of: "<"), let close = part.firstIndex(of: ">"), open < close,
                  let components = URLComponents(string: String(part[part.index(after: open)..<close])) else { continue }
            return components.queryItems?.first { $0.name == "page" }?.value.flatMap { Int($0) }
        }
        return nil
    }

    /// A path segment as GitLab wants it inside a URL (`a/b.c` → `a%2Fb%2Ec` is not needed; `/` must be).
    static func segment(_ text: String) -> String {
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove("/")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }

    // MARK: Operations

    public func currentUser() async throws -> GitLabUser {
        try decode(GitLabUser.self, try await request("GET", "user", operation: "get current user"), operation: "get current user")
    }

    /// What the instance says of the token itself (`personal_access_tokens/self`, GitLab 15.5+).
    public struct TokenInfo: Sendable {
        public var scopes: [String]?
        /// The day it expires (GitLab ends it at 00:00 UTC that day); nil when it does not.
        public var expiresAt: Date?
    }

    /// The token's own description, where the instance has it (GitLab 15.5+): nil on older ones.
    public func tokenInfo() async throws -> TokenInfo? {
        let r = try await request("GET", "personal_access_tokens/self", operation: "get token", expect: [200, 404])
        guard r.status == 200 else { return nil }
        struct Token: Decodable {
            let scopes: [String]?
            let expires_at: String?
        }
        let token = try decode(Token.self, r, operation: "get token")
        return TokenInfo(scopes: token.scopes, expiresAt: token.expires_at.flatMap(Self.day))
    }

    public func tokenScopes() async throws -> [String]? { try await tokenInfo()?.scopes }

    /// `YYYY-MM-DD` as 00:00 UTC of that day.
    static func day(_ text: String) -> Date? {
        let parts = text.prefix(10).split(separator: "-").compactMap { Int($0) }
        guard parts.count == 3 else { return nil }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar.date(from: DateComponents(year: parts[0], month: parts[1], day: parts[2]))
    }

    /// The project's open merge requests (`state=opened`), every page.
    /// The open merge requests, up to `maxPages` pages of 100 (`more` says some were left unread).
    func openMergeRequests(project: Int64, maxPages: Int = 30) async throws -> Listing<GitLabMergeRequest> {
        // Smaller pages when a page is too large: each item holds its description (up to 1 MB), and
        // 35 such merge requests kept every catch-up sweep of the project from listing it.
        var listed: Listing<GitLabMergeRequest> = try await listing("projects/\(project)/merge_requests", query: [("state", "opened")],
                                                                    operation: "list merge requests", maxItems: maxPages * 100, shrinkingPages: true)
        listed.items = listed.items.filter { ($0.state ?? "opened") == "opened" }
        return listed
    }

    public func mergeRequest(project: Int64, iid: Int) async throws -> GitLabMergeRequest {
        let r = try await request("GET", "projects/\(project)/merge_requests/\(iid)", operation: "get merge request")
        return try decode(GitLabMergeRequest.self, r, operation: "get merge request")
    }

    /// The merge request's diff, file by file: `/diffs` (paginated), or `/changes` on instances
    /// older than GitLab 15.7 that answer 404 to `/diffs`.
    /// The merge request's diffs, and how many changed files GitLab did not list: the `/changes`
    /// of GitLab before 15.7 stops at its limit with `overflow: true` and a `changes_count` such
    /// as `"1000+"` (at least one, when it does not say how many).
    ///
    /// Since 15.7 `/diffs` lists what GitLab stored, at most the instance's `diff_max_files`: the
    /// merge request's `changes_count` (`"1000+"` past it) is read beside the first page and says
    /// how many were left out. A diff too large to be answered at all counts as not listed, as do
    /// files past the 5,000 this reads.
    public func mergeRequestDiffs(project: Int64, iid: Int) async throws -> (diffs: [GitLabDiff], unlisted: Int) {
        let listed = try await mergeRequestDiffList(project: project, iid: iid)
        return (listed.diffs, listed.unlisted)
    }

    /// `mergeRequestDiffs`, and whether `unlisted` is only the least there can be (`"1000+"`).
    public func mergeRequestDiffList(project: Int64, iid: Int) async throws -> (diffs: [GitLabDiff], unlisted: Int, atLeast: Bool) {
        do {
            async let counted = changesCount(project: project, iid: iid)
            let listing: Listing<GitLabDiff> = try await listing("projects/\(project)/merge_requests/\(iid)/diffs",
                                                                 operation: "list merge request diffs", maxItems: 5_000, shrinkingPages: true)
            let listed = listing.items.count
            var unlisted = listing.tooLarge + (listing.more ? 1 : 0)
            var lowerBound = listing.more
            if let (count, atLeast) = await counted {
                unlisted = max(unlisted, count - listed, atLeast && listed >= count ? 1 : 0)
                lowerBound = lowerBound || atLeast
            }
            return (listing.items, unlisted, lowerBound && unlisted > 0)
        } catch let error as GitLabAPIError where error.status == 404 {
            let r = try await request("GET", "projects/\(project)/merge_requests/\(iid)/changes", operation: "get merge request changes")
            struct Changes: Decodable {
                let changes: [GitLabDiff]
                let overflow: Bool?
                let changes_count: String?
            }
            let changes = try decode(Changes.self, r, operation: "get merge request changes")
            guard changes.overflow == true else { return (changes.changes, 0, false) }
            let counted = Int(changes.changes_count?.filter(\.isNumber) ?? "") ?? 0
            return (changes.changes, max(1, counted - changes.changes.count), changes.changes_count?.hasSuffix("+") ?? true)
        }
    }

    /// The merge request's `changes_count` (`"12"`, or `"1000+"` past the instance's limit): the
    /// number, and whether there are more than it. Nil when GitLab does not say (a diff not yet
    /// ready) or the merge request cannot be read: the listing alone then counts.
    func changesCount(project: Int64, iid: Int) async -> (Int, Bool)? {
        struct Counted: Decodable { let changes_count: String? }
        guard let r = try? await request("GET", "projects/\(project)/merge_requests/\(iid)", operation: "get merge request"),
              let text = (try? JSONDecoder().decode(Counted.self, from: r.body))?.changes_count,
              let count = Int(text.filter(\.isNumber)) else { return nil }
        return (count, text.hasSuffix("+"))
    }

    /// The common ancestor of two commits; nil when either is unknown.
    public func mergeBase(project: Int64, _ a: String, _ b: String) async throws -> String? {
        let r = try await request("GET", "projects/\(project)/repository/merge_base", query: [("refs[]", a), ("refs[]", b)],
                                  operation: "get merge base", expect: [200, 400, 404])
        guard r.status == 200 else { return nil }
        struct Commit: Decodable { let id: String }
        return try decode(Commit.self, r, operation: "get merge base").id
    }

    /// The diff from one commit straight to another (no merge base).
    public func compare(project: Int64, from: String, to: String) async throws -> GitLabComparison? {
        let r = try await request("GET", "projects/\(project)/repository/compare", query: [("from", from), ("to", to), ("straight", "true")],
                                  operation: "compare commits", expect: [200, 404])
        guard r.status == 200 else { return nil }
        return try decode(GitLabComparison.self, r, operation: "compare commits")
    }

    public func fileContent(project: Int64, path: String, ref: String) async throws -> Data? {
        let r = try await request("GET", "projects/\(project)/repository/files/\(Self.segment(path))/raw", query: [("ref", ref)],
                                  operation: "get file", expect: [200, 404])
        guard r.status == 200 else { return nil }
        return r.body
    }

    /// Without a `ref`, GitLab takes the commit's pipeline's or a branch holding it; a merge request
    /// from a fork has neither in the target project (404 "References for commit Not Found", and
    /// every such review failed): then the status goes on the merge request's own ref,
    /// `refs/merge-requests/N/head`.
    public func setStatus(project: Int64, sha: String, _ status: GitLabCommitStatusRequest) async throws -> GitLabCommitStatus {
        do {
            let r = try await request("POST", "projects/\(project)/statuses/\(Self.segment(sha))", body: status, operation: "set commit status",
                                      expect: [200, 201])
            return try decode(GitLabCommitStatus.self, r, operation: "set commit status")
        } catch let error as GitLabAPIError where error.status == 404 && error.message.contains("References for commit") && status.ref == nil {
            struct MergeRequestRef: Decodable { let iid: Int }
            let r = try await request("GET", "projects/\(project)/repository/commits/\(Self.segment(sha))/merge_requests",
                                      operation: "list the commit's merge requests")
            guard let iid = try decode([MergeRequestRef].self, r, operation: "list the commit's merge requests").first?.iid else { throw error }
            var withRef = status
            withRef.ref = "refs/merge-requests/\(iid)/head"
            return try await setStatus(project: project, sha: sha, withRef)
        }
    }

    public func notes(project: Int64, iid: Int) async throws -> [GitLabNote] {
        try await list("projects/\(project)/merge_requests/\(iid)/notes", query: [("sort", "asc")], operation: "list merge request notes")
    }

    public func createNote(project: Int64, iid: Int, body: String) async throws -> GitLabNote {
        struct Body: Encodable { let body: String }
        let r = try await request("POST", "projects/\(project)/merge_requests/\(iid)/notes", body: Body(body: body),
                                  operation: "create merge request note", expect: [200, 201])
        return try decode(GitLabNote.self, r, operation: "create merge request note")
    }

    public func discussions(project: Int64, iid: Int) async throws -> [GitLabDiscussion] {
        try await list("projects/\(project)/merge_requests/\(iid)/discussions", operation: "list merge request discussions")
    }

    public func createDiscussion(project: Int64, iid: Int, _ discussion: GitLabDiscussionRequest) async throws -> GitLabDiscussion {
        let r = try await request("POST", "projects/\(project)/merge_requests/\(iid)/discussions", body: discussion,
                                  operation: "create merge request discussion", expect: [200, 201])
        return try decode(GitLabDiscussion.self, r, operation: "create merge request discussion")
    }

    /// A user's effective access level in a project (inherited memberships included); nil when
    /// they are not a member.
    public func accessLevel(project: Int64, userID: Int64) async throws -> Int? {
        let r = try await request("GET", "projects/\(project)/members/all/\(userID)", operation: "get project member", expect: [200, 404])
        guard r.status == 200 else { return nil }
        struct Member: Decodable { let access_level: Int }
        return try decode(Member.self, r, operation: "get project member").access_level
    }
}

public struct GitLabUser: Codable, Sendable {
    public let id: Int64
    public let username: String
}

public struct GitLabMergeRequest: Decodable, Sendable {
    public struct DiffRefs: Codable, Sendable, Equatable {
        public let base_sha: String?
        public let head_sha: String?
        public let start_sha: String?
    }
    public let iid: Int
    public let title: String?
    public let state: String?
    public let draft: Bool?
    public let work_in_progress: Bool?
    public let sha: String?
    public let source_branch: String?
    public let target_branch: String?
    public let source_project_id: Int64?
    public let target_project_id: Int64?
    public let diff_refs: DiffRefs?
    public let web_url: String?
}

public struct GitLabDiff: Decodable, Sendable {
    public let old_path: String
    public let new_path: String
    public let diff: String?
    public let new_file: Bool?
    public let renamed_file: Bool?
    public let deleted_file: Bool?
    /// The file's mode before and after (`100644`, `100755`): a change of mode alone has no diff.
    public let a_mode: String?
    public let b_mode: String?
    /// Set by GitLab when it left the diff out (too large, or collapsed).
    public let too_large: Bool?
    public let collapsed: Bool?
}

public struct GitLabComparison: Decodable, Sendable {
    public let diffs: [GitLabDiff]?
    public let compare_timeout: Bool?
}

public struct GitLabCommitStatusRequest: Encodable, Sendable {
    public let state: String
    public let name: String
    public let description: String?
    public let target_url: String?
    /// Given only when GitLab finds no ref of its own for the commit (a fork's head).
    public var ref: String? = nil
}

public struct GitLabCommitStatus: Decodable, Sendable {
    public let id: Int64
    public let status: String?
}

public struct GitLabNote: Decodable, Sendable {
    public let id: Int64
    public let body: String?
    public let author: GitLabUser?
    public let system: Bool?
}

public struct GitLabDiscussion: Decodable, Sendable {
    public let id: String
    public let notes: [GitLabNote]?
}

/// A new thread on a merge request, on a diff line when `position` is set.
public struct GitLabDiscussionRequest: Encodable, Sendable {
    public struct Position: Encodable, Sendable {
        public let position_type: String
        public let base_sha: String
        public let start_sha: String
        public let head_sha: String
        public let old_path: String
        public let new_path: String
        public let old_line: Int?
        public let new_line: Int?
    }
    public let body: String
    public let position: Position?

    public init(body: String, position: Position?) {
        self.body = body
        self.position = position
    }
}
