import Crypto
import _CryptoExtras
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import NIOSSL
import JWTKit
import NIOCore
import SentinelCore

/// RSA keys for the fakes and tests, made once per process: a debug build spends about a second
/// of CPU on each 2048-bit key, and tests running in parallel would otherwise make dozens of them.
public enum TestRSAKeys {
    /// The key of every `FakeGitHub` App.
    public static func app() throws -> _RSA.Signing.PrivateKey { try appKey.get() }
    /// A valid key that no fake knows: credentials GitHub refuses.
    public static func other() throws -> _RSA.Signing.PrivateKey { try otherKey.get() }

    private static let appKey = Result { try _RSA.Signing.PrivateKey(keySize: .bits2048) }
    private static let otherKey = Result { try _RSA.Signing.PrivateKey(keySize: .bits2048) }
}

/// A loopback GitHub: the REST endpoints a review run uses, speaking GitHub's JSON, checking every
/// request body it receives the way GitHub would (422 for comments off the diff), recording what
/// was posted, and injecting faults on demand.
public final class FakeGitHub: Sendable {
    public let state: FakeGitHubState
    public let port: Int
    private let task: Task<Void, Error>
    public let appID: Int64
    public let privateKeyPEM: String

    /// The certificate (PEM) of an HTTPS fake, as a GHES behind an internal CA would present.
    public let certificatePEM: String?

    public var baseURL: URL { URL(string: "\(certificatePEM == nil ? "http" : "https")://127.0.0.1:\(port)")! }

    /// - Parameter tls: serve HTTPS with a freshly made self-signed certificate (see `certificatePEM`).
    public static func start(appID: Int64 = 4242, tls: Bool = false) async throws -> FakeGitHub {
        let key = try TestRSAKeys.app()
        let state = FakeGitHubState(appID: appID, publicKeyPEM: key.publicKey.pemRepresentation)
        let router = Router()
        FakeGitHubRoutes(state: state, privateKeyPEM: key.pemRepresentation).add(to: router)
        let portBox = Rendezvous<Int>()
        var server: HTTPServerBuilder = .http1()
        var certificatePEM: String?
        if tls {
            let (cert, certKey) = try SelfSignedCertificate.make(hostname: "localhost")
            certificatePEM = cert
            server = try .tls(.http1(), tlsConfiguration: .makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMBytes(Array(cert.utf8)).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(certKey.utf8), format: .pem))))
        }
        let app = Application(router: router, server: server, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { channel in await portBox.set(channel.localAddress?.port ?? 0) })
        let task = Task { try await app.runService() }
        let port = await portBox.wait()
        return FakeGitHub(state: state, port: port, task: task, appID: appID, privateKeyPEM: key.pemRepresentation, certificatePEM: certificatePEM)
    }

    private init(state: FakeGitHubState, port: Int, task: Task<Void, Error>, appID: Int64, privateKeyPEM: String, certificatePEM: String?) {
        self.state = state
        self.port = port
        self.task = task
        self.appID = appID
        self.privateKeyPEM = privateKeyPEM
        self.certificatePEM = certificatePEM
    }

    /// A one-time code as GitHub hands back after creating an App from a manifest; converting it
    /// yields this fake's App id, private key and `webhookSecret`.
    public func manifestCode(webhookSecret: String = "fake-manifest-webhook-secret") async -> String {
        await state.issueManifestCode(pem: privateKeyPEM, webhookSecret: webhookSecret)
    }

    public func stop() async {
        task.cancel()
        _ = await task.result
    }
}

public enum FakeFault: Sendable, Equatable {
    case status(Int)
    /// 429 with `Retry-After: seconds`.
    case rateLimited(retryAfter: Int)
    /// 403 secondary rate limit with `x-ratelimit-remaining: 0` and a reset time.
    case secondaryRateLimit
    /// 403 secondary rate limit with `Retry-After: seconds`, as GitHub answers content-creation bursts
    /// (a GitLab fake answers the same 403 + `Retry-After`, as a throttling proxy in front of it does).
    case secondaryRateLimited(retryAfter: Int)
    /// Answer only after this many seconds (past a client's timeout).
    case delay(Double)
    /// Answer only once a request of another route (a `requests` line such as "GET files") has
    /// arrived, or after ten seconds, when the hold is written down in `expiredHolds`: a client that
    /// makes the two requests one after the other always lets the hold expire (and a loaded machine
    /// that sends the side-by-side requests a second apart does not).
    case holdUntilRequest(String)
    /// Carry the request out at once, and answer it only after this many seconds (past a client's
    /// timeout): the client never learns what was made. Taken only by routes that create something.
    case answerLate(Double)
}

extension FakeFault {
    /// `holdUntilRequest`'s wait, shared by the fakes: polls `arrived` until it is true (true) or
    /// ten seconds have passed (false).
    static func hold(until arrived: () async -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + .seconds(10)
        while await !arrived() {
            guard ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return true
    }
}

public struct FakePullRequest: Sendable {
    public var repo: String
    public var number: Int
    public var headSHA: String
    public var baseSHA: String
    public var draft: Bool
    public var fromFork: Bool
    /// The head repository was deleted (a removed fork): GitHub then serves `head.repo: null`.
    public var headRepoDeleted = false
    /// Listed with `head.sha: null` (a broken entry, as a proxy or a GHES bug may serve one).
    public var nullHeadSHA = false
    /// `open` or `closed` (closed pull requests are not listed with `state=open`).
    public var state = "open"
    /// GitHub's `pulls/{n}/files` items: filename, status, patch.
    public var files: [(filename: String, status: String, patch: String?)] {
        didSet { fileItems = Self.items(files) }
    }
    /// Each of `files` as its JSON item, encoded when the files are set: serialising a 20-file
    /// diff's patches on every `GET …/files` took the fake milliseconds (review benchmark), where
    /// GitHub's answer is what the benchmark assumes to take under one.
    private(set) var fileItems: [Data] = []
    /// The commits of the pull request, oldest first: GitHub takes a review of any of them (one on
    /// an older commit shows as outdated where lines changed) and refuses one of any other commit,
    /// such as a head that a force push removed.
    public var commits: [String]

    public init(repo: String, number: Int, headSHA: String, baseSHA: String, draft: Bool = false, fromFork: Bool = false,
                files: [(filename: String, status: String, patch: String?)]) {
        self.repo = repo
        self.number = number
        self.headSHA = headSHA
        self.baseSHA = baseSHA
        self.draft = draft
        self.fromFork = fromFork
        self.files = files
        self.commits = [headSHA]
        self.fileItems = Self.items(files)
    }

    /// GitHub's file items (of a pull request or a comparison) as JSON objects.
    static func itemObjects(_ files: [(filename: String, status: String, patch: String?)]) -> [[String: Any]] {
        files.map { f in
            var o: [String: Any] = ["filename": f.filename, "status": f.status, "additions": 1, "deletions": 0, "changes": 1]
            if let p = f.patch { o["patch"] = p }
            return o
        }
    }

    static func items(_ files: [(filename: String, status: String, patch: String?)]) -> [Data] {
        itemObjects(files).map { (try? JSONSerialization.data(withJSONObject: $0)) ?? Data("{}".utf8) }
    }
}

/// One entry of the App webhook's delivery log.
public struct FakeHookDelivery: Sendable {
    public let id: Int64
    public let guid: String
    public let deliveredAt: Date
    public let redelivery: Bool
    /// What the appliance answered; 0 when it could not be reached.
    public let statusCode: Int
    public let event: String
    public let action: String?
    public let payload: Data

    var json: [String: Any] {
        ["id": id, "guid": guid, "delivered_at": deliveredAt.formatted(.iso8601), "redelivery": redelivery, "duration": 0.05,
         "status": statusCode == 0 ? "failed to connect" : (200..<300).contains(statusCode) ? "OK" : "Invalid HTTP Response: \(statusCode)",
         "status_code": statusCode, "event": event, "action": action.map { $0 as Any } ?? NSNull(), "installation_id": 55, "repository_id": 1001,
         "throttled_at": NSNull()]
    }
}

public struct PostedReview: Sendable {
    public let id: Int64
    public let repo: String
    public let number: Int
    public let commitID: String
    public let event: String
    public let body: String
    public let comments: [[String: String]]
    /// Who posted it: the App's bot (`FakeGitHubState.botLogin`, type `Bot`) unless a test added it for someone else.
    public let userLogin: String
    public let userType: String
}

public struct CheckRun: Sendable {
    public let id: Int64
    public var name: String
    public var headSHA: String
    public var status: String
    public var conclusion: String?
    public var title: String?
    public var summary: String?
    /// The check's `external_id` as created (Sentinel's: `sentinel-run-<run id>`).
    public var externalID: String? = nil
    /// The App that created it: nil for the fake's own App (Sentinel's), else another one.
    public var appID: Int64? = nil
}

/// One request as the fake received it (header names lowercased).
public struct FakeGitHubRequest: Sendable {
    public var method: String
    public var path: String
    public var headers: [String: String]
}

public actor FakeGitHubState {
    /// Every request received, in order.
    public private(set) var received: [FakeGitHubRequest] = []
    func record(_ request: FakeGitHubRequest) { received.append(request) }
    let appID: Int64
    /// The public half of the App's one private key: App JWTs signed with any other are refused.
    private(set) var publicKeyPEM: String
    public private(set) var pulls: [String: FakePullRequest] = [:]
    public private(set) var contents: [String: Data] = [:]
    /// The login GitHub shows for reviews the App posts.
    public static let botLogin = "\(appSlug)[bot]"
    /// GitHub lists at most 300 files of a comparison and 3,000 of a pull request.
    public static let compareFileLimit = 300
    public static let pullFileLimit = 3000
    public private(set) var comparisons: [String: (status: String, files: [(filename: String, status: String, patch: String?)])] = [:]
    public private(set) var reviews: [PostedReview] = []
    public private(set) var checkRuns: [Int64: CheckRun] = [:]
    public private(set) var issueComments: [(repo: String, number: Int, body: String)] = []
    public private(set) var rejected: [String] = []
    public private(set) var requests: [String] = []
    private var requestTimes: [(route: String, at: Date)] = []
    private var faults: [String: [FakeFault]] = [:]
    /// Installation tokens and when they expire (GitHub answers 401 to an expired or revoked one).
    private var issuedTokens: [String: Date] = [:]
    private var nextID: Int64 = 1000
    /// The App's installations (`GET /app/installations`), as account logins by installation id.
    public private(set) var installations: [Int64: String] = [:]
    /// Called after a review is stored (tests use it to kill a worker right after posting).
    private var onReviewPosted: (@Sendable () -> Void)?
    /// Pushes that land just before the next review request is handled: the pull request moved
    /// while the run was reviewing it.
    private var pushesBeforeNextReview: [(repo: String, number: Int, head: String, force: Bool)] = []
    /// The App webhook's delivery log (`GET /app/hook/deliveries`), in the order GitHub made them.
    public private(set) var hookDeliveries: [FakeHookDelivery] = []
    /// Delivery ids `POST /app/hook/deliveries/{id}/attempts` was called with (accepted ones only).
    public private(set) var redeliveryRequests: [Int64] = []
    private var nextDeliveryID: Int64 = 12_000_000_000
    /// Sends a redelivered delivery to the appliance and returns the HTTP status it answered.
    private var redeliverySender: (@Sendable (FakeHookDelivery) async -> Int)?
    /// GitHub's primary rate limit, when a test sets one: every answer carries `x-ratelimit-*`
    /// headers and each request spends one; at 0 GitHub answers 403 until the reset.
    private var rateLimit: (limit: Int, remaining: Int, reset: Int)?
    /// Every page of open pull requests links back to the first as `next` (a broken proxy's or
    /// cache's answer), when a test sets it.
    public private(set) var loopingPullsLink = false
    public func setLoopingPullsLink(_ on: Bool) { loopingPullsLink = on }
    /// Repository ids the fake answers `/repositories/{id}/…` for.
    public private(set) var repositoryNames: [Int64: String] = [:]
    public func setRepositoryID(_ id: Int64, for name: String) { repositoryNames[id] = name }
    /// The delivery log's `next` link names its first page again (a proxy's or GHES's bug).
    public private(set) var loopingDeliveriesLink = false
    public func setLoopingDeliveriesLink(_ on: Bool) { loopingDeliveriesLink = on }

    init(appID: Int64, publicKeyPEM: String) {
        self.appID = appID
        self.publicKeyPEM = publicKeyPEM
    }

    /// Adds a pull request; for one already there (a new head), its earlier commits stay in it.
    public func addPull(_ pull: FakePullRequest) {
        var pull = pull
        if let earlier = pulls["\(pull.repo)#\(pull.number)"] {
            pull.commits = earlier.commits.filter { !pull.commits.contains($0) } + pull.commits
        }
        pulls["\(pull.repo)#\(pull.number)"] = pull
    }
    public func closePull(repo: String, _ number: Int) { pulls["\(repo)#\(number)"]?.state = "closed" }
    /// A new head commit on a pull request: a push, or with `force` a force push that replaces the
    /// pull request's commits.
    public func push(repo: String, _ number: Int, head: String, force: Bool = false) {
        guard var pull = pulls["\(repo)#\(number)"] else { return }
        pull.headSHA = head
        pull.commits = force ? [head] : pull.commits + [head]
        pulls["\(repo)#\(number)"] = pull
    }

    /// Records a delivery of the App's webhook as GitHub would log it; returns its id.
    @discardableResult
    public func addHookDelivery(guid: String = UUID().uuidString, event: String, action: String?, statusCode: Int,
                                deliveredAt: Date = Date(), payload: Data = Data("{}".utf8), redelivery: Bool = false) -> Int64 {
        nextDeliveryID += 1
        hookDeliveries.append(FakeHookDelivery(id: nextDeliveryID, guid: guid, deliveredAt: deliveredAt, redelivery: redelivery,
                                               statusCode: statusCode, event: event, action: action, payload: payload))
        return nextDeliveryID
    }

    /// How a redelivery reaches the appliance (tests post the payload to its webhook route).
    public func setRedeliver(_ send: (@Sendable (FakeHookDelivery) async -> Int)?) { redeliverySender = send }

    /// Sets GitHub's rate limit: `remaining` of `limit` requests left until `reset` (epoch seconds).
    public func setRateLimit(limit: Int, remaining: Int, reset: Int = Int(Date().timeIntervalSince1970) + 3600) {
        rateLimit = (limit, remaining, reset)
    }

    /// Spends one request of the rate limit: the headers to send, and whether the request is refused.
    func spendRate() -> (headers: [(String, String)], refused: Bool) {
        guard var limit = rateLimit else { return ([], false) }
        let refused = limit.remaining == 0
        if !refused { limit.remaining -= 1 }
        rateLimit = limit
        return ([("x-ratelimit-limit", String(limit.limit)), ("x-ratelimit-remaining", String(limit.remaining)),
                 ("x-ratelimit-used", String(limit.limit - limit.remaining)), ("x-ratelimit-reset", String(limit.reset)),
                 ("x-ratelimit-resource", "core")], refused)
    }

    /// A page of the delivery log, newest first, after `cursor` (GitHub's opaque `v1_…` form).
    func deliveryPage(perPage: Int, cursor: String?) -> (page: [FakeHookDelivery], next: String?)? {
        var list = hookDeliveries.sorted { $0.id > $1.id }
        if let cursor {
            guard cursor.hasPrefix("v1_"), let before = Int64(cursor.dropFirst(3)) else { return nil }
            list = list.filter { $0.id < before }
        }
        let page = Array(list.prefix(perPage))
        return (page, list.count > perPage ? page.last.map { "v1_\($0.id)" } : nil)
    }

    /// `POST …/attempts`: a known delivery is sent again (a new log entry, same guid); nil when unknown.
    func redeliver(id: Int64) async -> Bool {
        guard let original = hookDeliveries.first(where: { $0.id == id }) else { return false }
        redeliveryRequests.append(id)
        let status = await redeliverySender?(original) ?? 0
        addHookDelivery(guid: original.guid, event: original.event, action: original.action, statusCode: status, payload: original.payload,
                        redelivery: true)
        return true
    }

    public func setContent(repo: String, ref: String, path: String, _ text: String) { contents["\(repo)@\(ref):\(path)"] = Data(text.utf8) }
    /// A file's bytes as stored (not UTF-8, say).
    public func setContent(repo: String, ref: String, path: String, bytes: Data) { contents["\(repo)@\(ref):\(path)"] = bytes }
    /// `status` is GitHub's: `ahead` (base is an ancestor of head), `behind`, `diverged` (a
    /// force-push rewrote history) or `identical`. More than 300 files are cut to 300, as GitHub does.
    public func setComparison(repo: String, base: String, head: String, files: [(filename: String, status: String, patch: String?)],
                              status: String = "ahead") {
        comparisons["\(repo)@\(base)...\(head)"] = (status, files)
    }
    /// Revokes every installation token issued so far (the next use answers 401 Bad credentials).
    public func revokeTokens() { issuedTokens.removeAll() }
    /// The App's admin generated a new private key and deleted the old one: JWTs signed with the
    /// old key are refused from now on (tokens issued before stay valid until they expire, as on GitHub).
    public func replaceAppKey(publicKeyPEM: String) { self.publicKeyPEM = publicKeyPEM }
    public func addInstallation(_ id: Int64, account: String) { installations[id] = account }

    private var manifestCodes: [String: (pem: String, webhookSecret: String)] = [:]
    func issueManifestCode(pem: String, webhookSecret: String) -> String {
        let code = "mc" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        manifestCodes[code] = (pem, webhookSecret)
        return code
    }
    /// GitHub's codes work once.
    func redeemManifestCode(_ code: String) -> (pem: String, webhookSecret: String)? { manifestCodes.removeValue(forKey: code) }
    /// A review by someone other than the App (e.g. a user quoting Sentinel's marker).
    public func addReview(repo: String, number: Int, body: String, login: String, type: String = "User") {
        reviews.append(PostedReview(id: newID(), repo: repo, number: number, commitID: pulls["\(repo)#\(number)"]?.headSHA ?? "",
                                    event: "COMMENT", body: body, comments: [], userLogin: login, userType: type))
    }
    /// Faults for a route key like "POST reviews", "GET files", "POST check-runs", "POST access_tokens".
    public func inject(_ route: String, _ faults: [FakeFault]) { self.faults[route, default: []] += faults }
    /// Drops the faults still waiting on every route (GitHub is well again).
    public func clearFaults() { faults = [:] }
    public func setOnReviewPosted(_ hook: (@Sendable () -> Void)?) { onReviewPosted = hook }
    /// Makes a push (`force`: a force push) land on the pull request just before the next review
    /// request arrives, as when the author pushes while the review is being written.
    public func pushBeforeNextReview(repo: String, _ number: Int, head: String, force: Bool = false) {
        pushesBeforeNextReview.append((repo, number, head, force))
    }
    public func reviews(on repo: String, _ number: Int) -> [PostedReview] { reviews.filter { $0.repo == repo && $0.number == number } }

    /// A check run another App made on a commit (a second appliance on the repository).
    public func addForeignCheck(sha: String, name: String, externalID: String, appID: Int64) {
        let run = CheckRun(id: newID(), name: name, headSHA: sha, status: "in_progress", conclusion: nil, title: nil, summary: nil,
                           externalID: externalID, appID: appID)
        checkRuns[run.id] = run
    }

    /// The seconds of an `answerLate` fault next in line for `route`, taken; nil (and nothing taken) otherwise.
    func takeLateAnswer(_ route: String) -> Double? {
        guard case .answerLate(let seconds)? = faults[route]?.first else { return nil }
        faults[route]?.removeFirst()
        return seconds
    }

    /// Check runs on a commit, as GitHub lists them (`check_name` given: of that name only), as the
    /// list's JSON body.
    func checkRunsPage(repo: String, sha: String, name: String?, app: Int64?) -> Data {
        let runs = checkRunList(sha: sha, name: name, app: app)
        return (try? JSONSerialization.data(withJSONObject: ["total_count": runs.count, "check_runs": runs] as [String: Any])) ?? Data("{}".utf8)
    }

    private func checkRunList(sha: String, name: String?, app: Int64?) -> [[String: Any]] {
        checkRuns.values.filter { $0.headSHA == sha && (name == nil || $0.name == name) && (app == nil || ($0.appID ?? appID) == app) }
            .sorted { $0.id > $1.id }.map { run in
            var object: [String: Any] = ["id": run.id, "name": run.name, "head_sha": run.headSHA, "status": run.status,
                                         "conclusion": run.conclusion as Any? ?? NSNull(), "external_id": run.externalID ?? "",
                                         "app": ["id": run.appID ?? appID, "slug": run.appID == nil ? "sentinel" : "other-app"]]
            object["output"] = ["title": run.title as Any? ?? NSNull(), "summary": run.summary as Any? ?? NSNull()]
            return object
        }
    }

    func takeFault(_ route: String) -> FakeFault? {
        guard var list = faults[route], !list.isEmpty else { return nil }
        let f = list.removeFirst()
        faults[route] = list
        return f
    }

    /// How long every answer of a route that takes faults (the review path's, the token's) takes
    /// (zero: at once), as real GitHub takes tens to hundreds of milliseconds per call.
    public private(set) var latency: Duration = .zero
    public func setLatency(_ latency: Duration) { self.latency = latency }

    /// Routes whose `holdUntilRequest` fault waited its whole ten seconds for the other request in vain.
    public private(set) var expiredHolds: [String] = []
    func noteExpiredHold(_ route: String) { expiredHolds.append(route) }

    func log(_ line: String) {
        requests.append(line)
        requestTimes.append((line, Date()))
    }

    /// When each request of a route (a `requests` line such as "POST reviews") arrived, oldest first.
    public func times(_ route: String) -> [Date] { requestTimes.filter { $0.route == route }.map(\.at) }
    func reject(_ reason: String) { rejected.append(reason) }
    func newID() -> Int64 { nextID += 1; return nextID }

    func issueToken(jwt: String) async -> String? {
        guard await isAppJWT(jwt) else { return nil }
        let token = "ghs_" + UUID().uuidString.replacingOccurrences(of: "-", with: "")
        issuedTokens[token] = Date().addingTimeInterval(3600)
        return token
    }

    /// The App's slug: its bot account is `<slug>[bot]` (`botLogin`).
    public static let appSlug = "sentinel-fake"

    func isAppJWT(_ jwt: String) async -> Bool {
        let keys = JWTKeyCollection()
        guard let key = try? Insecure.RSA.PublicKey(pem: publicKeyPEM) else { return false }
        await keys.add(rsa: key, digestAlgorithm: .sha256)
        struct Claims: JWTPayload {
            let iss: IssuerClaim
            let exp: ExpirationClaim
            let iat: IssuedAtClaim
            func verify(using algorithm: some JWTAlgorithm) async throws { try exp.verifyNotExpired() }
        }
        guard let claims = try? await keys.verify(jwt, as: Claims.self), claims.iss.value == String(appID) else { return false }
        return true
    }

    func isAuthorized(_ header: String?) -> Bool {
        guard let header, header.hasPrefix("Bearer ") else { return false }
        guard let expires = issuedTokens[String(header.dropFirst(7))] else { return false }
        return expires > Date()
    }

    func storeReview(repo: String, number: Int, bodyData: Data) -> (Int, Data) {
        let (status, object) = storeReviewObject(repo: repo, number: number, body: Self.parse(bodyData))
        return (status, (try? JSONSerialization.data(withJSONObject: object)) ?? Data("{}".utf8))
    }

    private func storeReviewObject(repo: String, number: Int, body: [String: Any]) -> (Int, Any) {
        for push in pushesBeforeNextReview { self.push(repo: push.repo, push.number, head: push.head, force: push.force) }
        pushesBeforeNextReview = []
        guard let pull = pulls["\(repo)#\(number)"] else { return (404, ["message": "Not Found"]) }
        let event = body["event"] as? String ?? ""
        guard ["COMMENT", "REQUEST_CHANGES", "APPROVE"].contains(event) else {
            reject("review event '\(event)' invalid"); return (422, ["message": "Validation Failed"])
        }
        // Without commit_id GitHub reviews the head.
        let commitID = body["commit_id"] as? String ?? pull.headSHA
        guard pull.commits.contains(commitID) else {
            reject("review commit_id \(commitID) is not part of the pull request")
            return (422, ["message": "Unprocessable Entity", "errors": ["The commitOID is not part of the pull request"],
                          "documentation_url": "https://docs.github.com/rest/pulls/reviews#create-a-review-for-a-pull-request"])
        }
        let reviewBody = body["body"] as? String ?? ""
        if let tooLong = Self.tooLong(reviewBody, resource: "PullRequestReview") { reject("review body too long"); return (422, tooLong) }
        var comments: [[String: String]] = []
        for comment in body["comments"] as? [[String: Any]] ?? [] {
            guard let path = comment["path"] as? String, let line = comment["line"] as? Int,
                  let text = comment["body"] as? String, !text.isEmpty else {
                reject("review comment missing path, line or body"); return (422, ["message": "Validation Failed"])
            }
            if let tooLong = Self.tooLong(text, resource: "PullRequestReviewComment") { reject("review comment body too long"); return (422, tooLong) }
            let side = comment["side"] as? String ?? "RIGHT"
            guard side == "RIGHT" || side == "LEFT" else { reject("bad side \(side)"); return (422, ["message": "Validation Failed"]) }
            guard let file = pull.files.first(where: { $0.filename == path }), let patch = file.patch else {
                reject("comment on \(path), which is not in the diff"); return (422, ["message": "Validation Failed", "errors": ["Path could not be resolved"]])
            }
            let lines = PatchLines.commentable(patch, side: side)
            guard lines.contains(line) else {
                reject("comment on \(path):\(line) \(side), which is not a diff line"); return (422, ["message": "Validation Failed", "errors": ["Line could not be resolved"]])
            }
            if let start = comment["start_line"] as? Int {
                let startSide = comment["start_side"] as? String ?? side
                guard start < line, startSide == side, lines.contains(start) else {
                    reject("multi-line comment \(path):\(start)-\(line) invalid"); return (422, ["message": "Validation Failed"])
                }
            }
            comments.append(["path": path, "line": String(line), "side": side, "body": text,
                             "start_line": (comment["start_line"] as? Int).map(String.init) ?? ""])
        }
        let review = PostedReview(id: newID(), repo: repo, number: number, commitID: commitID, event: event, body: reviewBody, comments: comments,
                                  userLogin: Self.botLogin, userType: "Bot")
        reviews.append(review)
        onReviewPosted?()
        return (200, ["id": review.id, "body": reviewBody, "state": event == "COMMENT" ? "COMMENTED" : "CHANGES_REQUESTED", "commit_id": commitID])
    }

    func createCheck(repo: String, bodyData: Data) -> (Int, Data) {
        let (status, object) = createCheckObject(repo: repo, body: Self.parse(bodyData))
        return (status, (try? JSONSerialization.data(withJSONObject: object)) ?? Data("{}".utf8))
    }

    private func createCheckObject(repo: String, body: [String: Any]) -> (Int, Any) {
        guard let name = body["name"] as? String, let sha = body["head_sha"] as? String else {
            reject("check run without name or head_sha"); return (422, ["message": "Validation Failed"])
        }
        let status = body["status"] as? String ?? "queued"
        guard ["queued", "in_progress", "completed"].contains(status) else { reject("check status \(status)"); return (422, ["message": "Validation Failed"]) }
        if status == "completed" && body["conclusion"] == nil { reject("completed check without conclusion"); return (422, ["message": "Validation Failed"]) }
        let output = body["output"] as? [String: Any]
        let run = CheckRun(id: newID(), name: name, headSHA: sha, status: status, conclusion: body["conclusion"] as? String,
                           title: output?["title"] as? String, summary: output?["summary"] as? String, externalID: body["external_id"] as? String)
        checkRuns[run.id] = run
        return (201, ["id": run.id, "status": status, "name": name, "head_sha": sha])
    }

    func updateCheck(id: Int64, bodyData: Data) -> (Int, Data) {
        let (status, object) = updateCheckObject(id: id, body: Self.parse(bodyData))
        return (status, (try? JSONSerialization.data(withJSONObject: object)) ?? Data("{}".utf8))
    }

    private func updateCheckObject(id: Int64, body: [String: Any]) -> (Int, Any) {
        guard var run = checkRuns[id] else { return (404, ["message": "Not Found"]) }
        // Another App's check run is not this App's to change.
        guard run.appID == nil else { return (403, ["message": "Resource not accessible by integration"]) }
        if let status = body["status"] as? String { run.status = status }
        if let conclusion = body["conclusion"] as? String {
            guard ["success", "failure", "neutral", "cancelled", "skipped", "timed_out", "action_required"].contains(conclusion) else {
                reject("conclusion \(conclusion)"); return (422, ["message": "Validation Failed"])
            }
            run.conclusion = conclusion
        }
        if run.status == "completed" && run.conclusion == nil { reject("completed check without conclusion"); return (422, ["message": "Validation Failed"]) }
        if let output = body["output"] as? [String: Any] {
            guard output["title"] is String, let summary = output["summary"] as? String else { reject("check output needs title and summary"); return (422, ["message": "Validation Failed"]) }
            // GitHub's check run output takes at most 65,535 characters of summary.
            let characters = summary.unicodeScalars.count
            guard characters <= 65_535 else {
                reject("check summary too long")
                return (422, ["message": "Invalid request.\n\nOnly 65535 characters are allowed; \(characters) were supplied.",
                              "documentation_url": "https://docs.github.com/rest/checks/runs#update-a-check-run"])
            }
            run.title = output["title"] as? String
            run.summary = output["summary"] as? String
        }
        checkRuns[id] = run
        return (200, ["id": id, "status": run.status])
    }

    func addComment(repo: String, number: Int, body: String) { issueComments.append((repo, number, body)) }

    /// GitHub's answer to a review or comment body over 65,536 characters (Unicode code points:
    /// an emoji counts once), nil for one within it.
    static func tooLong(_ body: String, resource: String) -> [String: Any]? {
        guard body.unicodeScalars.count > 65_536 else { return nil }
        return ["message": "Validation Failed",
                "errors": [["resource": resource, "code": "custom", "field": "body", "message": "body is too long (maximum is 65536 characters)"]],
                "documentation_url": "https://docs.github.com/rest/pulls/reviews#create-a-review-for-a-pull-request"]
    }

    static func parse(_ data: Data) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:]
    }
}

/// Commentable line numbers of a GitHub patch, computed independently of Sentinel's diff parser.
enum PatchLines {
    static func commentable(_ patch: String, side: String) -> Set<Int> {
        var result = Set<Int>()
        var old = 0, new = 0
        for line in patch.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("@@") {
                let parts = line.split(separator: " ")
                if parts.count >= 3 {
                    old = Int(parts[1].dropFirst().split(separator: ",")[0]) ?? 0
                    new = Int(parts[2].dropFirst().split(separator: ",")[0]) ?? 0
                }
                continue
            }
            if line.hasPrefix("+") { if side == "RIGHT" { result.insert(new) }; new += 1 }
            else if line.hasPrefix("-") { if side == "LEFT" { result.insert(old) }; old += 1 }
            else if line.hasPrefix("\\") { continue }
            else { if side == "RIGHT" { result.insert(new) } else { result.insert(old) }; old += 1; new += 1 }
        }
        return result
    }
}

struct FakeGitHubRoutes {
    let state: FakeGitHubState
    /// The App's key, handed out by manifest conversions.
    let privateKeyPEM: String

    func json(_ status: Int, _ object: Any, headers: HTTPFields = [:]) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object)) ?? Data("{}".utf8)
        var h = headers
        h[.contentType] = "application/json"
        return Response(status: .init(code: status), headers: h, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// Applies an injected fault for `route`, or nil to proceed.
    func fault(_ route: String) async -> Response? {
        let latency = await state.latency
        if latency > .zero { try? await Task.sleep(for: latency) }
        guard let fault = await state.takeFault(route) else { return nil }
        switch fault {
        case .status(let code):
            if code == 422 { return json(422, ["message": "Validation Failed", "errors": ["Line could not be resolved"]]) }
            return json(code, ["message": code == 404 ? "Not Found" : "Server Error"])
        case .rateLimited(let s): return json(429, ["message": "API rate limit exceeded"], headers: [.retryAfter: String(s)])
        case .secondaryRateLimit:
            return json(403, ["message": "You have exceeded a secondary rate limit."],
                        headers: [HTTPField.Name("x-ratelimit-remaining")!: "0",
                                  HTTPField.Name("x-ratelimit-reset")!: String(Int(Date().timeIntervalSince1970) + 1)])
        case .secondaryRateLimited(let seconds):
            return json(403, ["message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                              "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"],
                        headers: [.retryAfter: String(seconds)])
        case .delay(let seconds):
            try? await Task.sleep(for: .seconds(seconds))
            return nil
        case .holdUntilRequest(let other):
            if await !FakeFault.hold(until: { await state.requests.contains(other) }) { await state.noteExpiredHold(route) }
            return nil
        case .answerLate:
            return nil
        }
    }

    func bodyData(_ request: Request) async throws -> Data {
        var request = request
        return Data(buffer: try await request.collectBody(upTo: 10 << 20))
    }

    func body(_ request: Request) async throws -> [String: Any] { FakeGitHubState.parse(try await bodyData(request)) }

    func raw(_ status: Int, _ data: Data) -> Response {
        Response(status: .init(code: status), headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    func authorized(_ request: Request) async -> Bool { await state.isAuthorized(request.headers[.authorization]) }

    func repo(_ context: BasicRequestContext) -> String {
        "\(context.parameters.get("owner") ?? "")/\(context.parameters.get("repo") ?? "")"
    }

    /// The App JWT of an `/app/…` request, verified (GitHub answers 401 to anything else).
    func isApp(_ request: Request) async -> Bool {
        guard let auth = request.headers[.authorization], auth.hasPrefix("Bearer ") else { return false }
        return await state.isAppJWT(String(auth.dropFirst(7)))
    }

    func add(to router: Router<BasicRequestContext>) {
        router.add(middleware: FakeRateLimit(state: state))
        router.get("/app/hook/deliveries") { request, _ in
            await state.log("GET hook deliveries")
            if let f = await fault("GET hook deliveries") { return f }
            guard await isApp(request) else { return json(401, ["message": "A JSON web token could not be decoded"]) }
            let perPage = Int(request.uri.queryParameters.get("per_page") ?? "30") ?? 30
            guard (1...100).contains(perPage) else { return json(422, ["message": "Validation Failed"]) }
            guard let found = await state.deliveryPage(perPage: perPage, cursor: request.uri.queryParameters.get("cursor").map { String($0) }) else {
                return json(400, ["message": "Bad Request"])
            }
            let (page, next) = found
            var headers: HTTPFields = [:]
            if await state.loopingDeliveriesLink {
                headers[HTTPField.Name("Link")!] = "<https://api.github.com/app/hook/deliveries?per_page=\(perPage)>; rel=\"next\""
            } else if let next {
                headers[HTTPField.Name("Link")!] = "<https://api.github.com/app/hook/deliveries?per_page=\(perPage)&cursor=\(next)>; rel=\"next\""
            }
            return json(200, page.map(\.json), headers: headers)
        }
        router.post("/app/hook/deliveries/:id/attempts") { request, context in
            await state.log("POST hook attempts")
            if let f = await fault("POST hook attempts") { return f }
            guard await isApp(request) else { return json(401, ["message": "A JSON web token could not be decoded"]) }
            guard let id = Int64(context.parameters.get("id") ?? ""), await state.redeliver(id: id) else {
                return json(404, ["message": "Not Found"])
            }
            return json(202, [String: Any]())
        }
        @Sendable func listPulls(_ request: Request, repo name: String) async -> Response {
            let wanted = request.uri.queryParameters.get("state").map { String($0) } ?? "open"
            guard ["open", "closed", "all"].contains(wanted) else { return json(422, ["message": "Validation Failed"]) }
            let perPage = Int(request.uri.queryParameters.get("per_page") ?? "30") ?? 30
            let page = Int(request.uri.queryParameters.get("page") ?? "1") ?? 1
            guard (1...100).contains(perPage), page >= 1 else { return json(422, ["message": "Validation Failed"]) }
            let all = await state.pulls.values.filter { $0.repo == name && (wanted == "all" || $0.state == wanted) }.sorted { $0.number > $1.number }
            let slice = all.dropFirst((page - 1) * perPage).prefix(perPage).map { pull -> [String: Any] in
                let headRepo: [String: Any] = pull.fromFork ? ["id": 999, "full_name": "outsider/fork"] : ["id": 1, "full_name": pull.repo]
                return ["number": pull.number, "state": pull.state, "draft": pull.draft, "title": "PR \(pull.number)",
                        "head": ["sha": pull.nullHeadSHA ? NSNull() as Any : pull.headSHA as Any, "ref": "feature", "repo": pull.headRepoDeleted ? NSNull() as Any : headRepo as Any],
                        "base": ["sha": pull.baseSHA, "ref": "main", "repo": ["id": 1, "full_name": pull.repo]]]
            }
            var headers: HTTPFields = [:]
            if await state.loopingPullsLink {
                headers[HTTPField.Name("Link")!] = "<https://api.github.com/repositories/1/pulls?state=\(wanted)&per_page=\(perPage)&page=1>; rel=\"next\""
            } else if page * perPage < all.count {
                headers[HTTPField.Name("Link")!] = "<https://api.github.com/repositories/1/pulls?state=\(wanted)&per_page=\(perPage)&page=\(page + 1)>; rel=\"next\""
            }
            return json(200, Array(slice), headers: headers)
        }
        // A repository's pulls by its id (where GitHub's 301 for a renamed repository points).
        router.get("/repositories/:id/pulls") { request, context in
            await state.log("GET pulls by id")
            guard await authorized(request) else { return json(401, ["message": "Bad credentials"]) }
            guard let id = Int64(context.parameters.get("id") ?? ""), let name = await state.repositoryNames[id] else {
                return json(404, ["message": "Not Found"])
            }
            return await listPulls(request, repo: name)
        }
        // A repository by its id: its name now.
        router.get("/repositories/:id") { request, context in
            await state.log("GET repository by id")
            guard await authorized(request) else { return json(401, ["message": "Bad credentials"]) }
            guard let id = Int64(context.parameters.get("id") ?? ""), let name = await state.repositoryNames[id] else {
                return json(404, ["message": "Not Found"])
            }
            return json(200, ["id": id, "full_name": name, "name": String(name.split(separator: "/").last ?? ""), "private": false])
        }
        router.get("/repos/:owner/:repo/pulls") { request, context in
            await state.log("GET pulls")
            if let f = await fault("GET pulls") { return f }
            guard await authorized(request) else { return json(401, ["message": "Bad credentials"]) }
            return await listPulls(request, repo: repo(context))
        }
        router.post("/app/installations/:id/access_tokens") { request, _ in
            await state.log("POST access_tokens")
            if let f = await fault("POST access_tokens") { return f }
            guard let auth = request.headers[.authorization], auth.hasPrefix("Bearer "),
                  let token = await state.issueToken(jwt: String(auth.dropFirst(7))) else {
                return json(401, ["message": "A JSON web token could not be decoded"])
            }
            return json(201, ["token": token, "expires_at": Date().addingTimeInterval(3600).formatted(.iso8601)])
        }
        // GitHub's page that creates an App from a posted manifest (an account's, or an organization's):
        // the real one asks the user to confirm; the fake checks the manifest as GitHub would, creates
        // the App at once and redirects to the manifest's redirect_url with a one-time code and the state.
        for path in ["/settings/apps/new", "/organizations/:org/settings/apps/new"] {
            router.post(RouterPath(path)) { request, _ in
                await state.log("POST settings/apps/new")
                let body = String(buffer: try await request.body.collect(upTo: 1 << 20))
                let fields = Dictionary(body.split(separator: "&").map { pair -> (String, String) in
                    let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                    func decode(_ s: Substring) -> String { s.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "" }
                    return (decode(parts[0]), parts.count > 1 ? decode(parts[1]) : "")
                }) { a, _ in a }
                guard let text = fields["manifest"], let manifest = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
                      let redirect = manifest["redirect_url"] as? String, var target = URLComponents(string: redirect),
                      let hook = manifest["hook_attributes"] as? [String: Any], hook["url"] is String,
                      manifest["default_permissions"] is [String: Any], manifest["default_events"] is [Any], manifest["url"] is String else {
                    return Response(status: .unprocessableContent, headers: [.contentType: "text/plain"],
                                    body: .init(byteBuffer: ByteBuffer(string: "Invalid GitHub App configuration")))
                }
                let code = await state.issueManifestCode(pem: privateKeyPEM, webhookSecret: "fake-manifest-webhook-secret")
                target.queryItems = [URLQueryItem(name: "code", value: code)]
                    + (request.uri.queryParameters.get("state").map { [URLQueryItem(name: "state", value: String($0))] } ?? [])
                return Response(status: .found, headers: [.location: target.string ?? redirect])
            }
        }
        router.post("/app-manifests/:code/conversions") { _, context in
            await state.log("POST app-manifests conversions")
            guard let code = context.parameters.get("code"), let app = await state.redeemManifestCode(code) else {
                return json(404, ["message": "Not Found", "documentation_url": "https://docs.github.com/rest/apps/apps#create-a-github-app-from-a-manifest"])
            }
            return json(201, ["id": state.appID, "slug": FakeGitHubState.appSlug, "name": "Sentinel (fake)", "pem": app.pem,
                              "webhook_secret": app.webhookSecret, "html_url": "https://github.example/apps/\(FakeGitHubState.appSlug)"])
        }
        router.get("/app") { request, _ in
            await state.log("GET app")
            if let f = await fault("GET app") { return f }
            guard let auth = request.headers[.authorization], auth.hasPrefix("Bearer "), await state.isAppJWT(String(auth.dropFirst(7))) else {
                return json(401, ["message": "A JSON web token could not be decoded"])
            }
            return json(200, ["id": state.appID, "slug": FakeGitHubState.appSlug, "name": "Sentinel (fake)"])
        }
        router.get("/app/installations") { request, _ in
            await state.log("GET installations")
            if let f = await fault("GET installations") { return f }
            guard let auth = request.headers[.authorization], auth.hasPrefix("Bearer "), await state.isAppJWT(String(auth.dropFirst(7))) else {
                return json(401, ["message": "A JSON web token could not be decoded"])
            }
            let list = await state.installations.sorted { $0.key < $1.key }.map { (id, login) -> [String: Any] in
                ["id": id, "app_id": state.appID, "account": ["login": login, "type": "Organization"], "target_type": "Organization"]
            }
            return json(200, list)
        }
        router.get("/repos/:owner/:repo/pulls/:number") { request, context in
            await state.log("GET pull")
            if let f = await fault("GET pull") { return f }
            guard await authorized(request) else { return json(401, ["message": "Bad credentials"]) }
            let key = "\(repo(context))#\(context.parameters.get("number") ?? "")"
            guard let pull = await state.pulls[key] else { return json(404, ["message": "Not Found"]) }
            let headRepo: [String: Any] = pull.fromFork ? ["id": 999, "full_name": "outsider/fork"] : ["id": 1, "full_name": pull.repo]
            return json(200, ["number": pull.number, "state": pull.state, "draft": pull.draft, "title": "PR \(pull.number)",
                              "head": ["sha": pull.headSHA, "ref": "feature", "repo": pull.headRepoDeleted ? NSNull() as Any : headRepo as Any],
                              "base": ["sha": pull.baseSHA, "ref": "main", "repo": ["id": 1, "full_name": pull.repo]],
                              "changed_files": pull.files.count])
        }
        router.get("/repos/:owner/:repo/pulls/:number/files") { request, context in
            await state.log("GET files")
            if let f = await fault("GET files") { return f }
            guard await authorized(request) else { return json(401, ["message": "Bad credentials"]) }
            let key = "\(repo(context))#\(context.parameters.get("number") ?? "")"
            guard let pull = await state.pulls[key] else { return json(404, ["message": "Not Found"]) }
            let perPage = Int(request.uri.queryParameters.get("per_page") ?? "30") ?? 30
            let page = Int(request.uri.queryParameters.get("page") ?? "1") ?? 1
            let all = pull.fileItems.prefix(FakeGitHubState.pullFileLimit)
            var headers: HTTPFields = [.contentType: "application/json"]
            if page * perPage < all.count {
                headers[HTTPField.Name("Link")!] = "<http://127.0.0.1/repos/\(pull.repo)/pulls/\(pull.number)/files?page=\(page + 1)>; rel=\"next\""
            }
            var body = ByteBuffer(string: "[")
            for (i, item) in all.dropFirst(max(0, page - 1) * perPage).prefix(perPage).enumerated() {
                if i > 0 { body.writeString(",") }
                body.writeBytes(item)
            }
            body.writeString("]")
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: body))
        }
        router.get("/repos/:owner/:repo/compare/:spec") { request, context in
            await state.log("GET compare")
            if let f = await fault("GET compare") { return f }
            guard await authorized(request) else { return json(401, ["message": "Bad credentials"]) }
            let spec = context.parameters.get("spec") ?? ""
            guard let comparison = await state.comparisons["\(repo(context))@\(spec)"] else { return json(404, ["message": "Not Found"]) }
            return json(200, ["status": comparison.status, "total_commits": 1,
                              "files": FakePullRequest.itemObjects(Array(comparison.files.prefix(FakeGitHubState.compareFileLimit)))])
        }
        router.get("/repos/:owner/:repo/contents/**") { request, context in
            await state.log("GET contents")
            if let f = await fault("GET contents") { return f }
            guard await authorized(request) else { return json(401, ["message": "Bad credentials"]) }
            let path = context.parameters.getCatchAll().joined(separator: "/")
            let ref = request.uri.queryParameters.get("ref") ?? ""
            guard let bytes = await state.contents["\(repo(context))@\(ref):\(path)"] else { return json(404, ["message": "Not Found"]) }
            return json(200, ["type": "file", "encoding": "base64", "path": path, "content": bytes.base64EncodedString()])
        }
        router.get("/repos/:owner/:repo/pulls/:number/reviews") { request, context in
            await state.log("GET reviews")
            if let f = await fault("GET reviews") { return f }
            guard await authorized(request) else { return json(401, ["message": "Bad credentials"]) }
            let r = repo(context)
            let n = Int(context.parameters.get("number") ?? "") ?? 0
            let list = await state.reviews(on: r, n).map {
                ["id": $0.id, "body": $0.body, "state": "COMMENTED", "commit_id": $0.commitID,
                 "user": ["login": $0.userLogin, "type": $0.userType]] as [String: Any]
            }
            return json(200, list)
        }
        router.post("/repos/:owner/:repo/pulls/:number/reviews") { request, context in
            await state.log("POST reviews")
            if let f = await fault("POST reviews") { return f }
            guard await authorized(request) else { return json(401, ["message": "Bad credentials"]) }
            let (status, data) = await state.storeReview(repo: repo(context), number: Int(context.parameters.get("number") ?? "") ?? 0,
                                                         bodyData: try await bodyData(request))
            return raw(status, data)
        }
        router.post("/repos/:owner/:repo/check-runs") { request, context in
            await state.log("POST check-runs")
            let late = await state.takeLateAnswer("POST check-runs")
            if late == nil, let f = await fault("POST check-runs") { return f }
            guard await authorized(request) else { return json(401, ["message": "Bad credentials"]) }
            let (status, data) = await state.createCheck(repo: repo(context), bodyData: try await bodyData(request))
            if let late { try? await Task.sleep(for: .seconds(late)) }
            return raw(status, data)
        }
        router.get("/repos/:owner/:repo/commits/:sha/check-runs") { request, context in
            await state.log("GET check-runs")
            if let f = await fault("GET check-runs") { return f }
            guard await authorized(request) else { return json(401, ["message": "Bad credentials"]) }
            return raw(200, await state.checkRunsPage(repo: repo(context), sha: context.parameters.get("sha") ?? "",
                                                      name: request.uri.queryParameters.get("check_name").map { String($0) },
                                                      app: request.uri.queryParameters.get("app_id").flatMap { Int64(String($0)) }))
        }
        router.patch("/repos/:owner/:repo/check-runs/:id") { request, context in
            await state.log("PATCH check-runs")
            if let f = await fault("PATCH check-runs") { return f }
            guard await authorized(request) else { return json(401, ["message": "Bad credentials"]) }
            let (status, data) = await state.updateCheck(id: Int64(context.parameters.get("id") ?? "") ?? 0, bodyData: try await bodyData(request))
            return raw(status, data)
        }
        router.post("/repos/:owner/:repo/issues/:number/comments") { request, context in
            await state.log("POST comments")
            guard await authorized(request) else { return json(401, ["message": "Bad credentials"]) }
            let b = try await body(request)
            guard let text = b["body"] as? String, !text.isEmpty else { return json(422, ["message": "Validation Failed"]) }
            if let tooLong = FakeGitHubState.tooLong(text, resource: "IssueComment") { return json(422, tooLong) }
            await state.addComment(repo: repo(context), number: Int(context.parameters.get("number") ?? "") ?? 0, body: text)
            return json(201, ["id": await state.newID(), "body": text])
        }
    }
}

/// GitHub's primary rate limit on every route: the `x-ratelimit-*` headers on each answer, and 403
/// `API rate limit exceeded` once none is left (only when a test set a limit).
struct FakeRateLimit: RouterMiddleware {
    typealias Context = BasicRequestContext
    let state: FakeGitHubState

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        await state.record(FakeGitHubRequest(method: request.method.rawValue, path: request.uri.path,
                                             headers: Dictionary(request.headers.map { ($0.name.canonicalName, $0.value) }, uniquingKeysWith: { a, _ in a })))
        let (headers, refused) = await state.spendRate()
        var response: Response
        if refused {
            let data = Data(#"{"message":"API rate limit exceeded for installation."}"#.utf8)
            response = Response(status: .forbidden, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
        } else {
            response = try await next(request, context)
        }
        for (name, value) in headers { response.headers[HTTPField.Name(name)!] = value }
        return response
    }
}
