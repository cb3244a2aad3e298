import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import NIOCore
import NIOSSL
import SentinelCore

/// A loopback GitLab (REST API v4 under `/api/v4`): the endpoints a merge request review uses,
/// speaking GitLab's JSON and headers, refusing what GitLab refuses (401 for an unknown token, 403
/// for a token without the `api` scope, 400 for a discussion position off the diff, 400 for a commit
/// status transition GitLab's state machine does not allow), recording what was posted, and
/// injecting faults on demand. Projects are addressed by numeric id or URL-encoded full path.
public final class FakeGitLab: Sendable {
    public let state: FakeGitLabState
    public let port: Int
    private let task: Task<Void, Error>

    /// The certificate (PEM) of an HTTPS fake, as a self-managed GitLab behind an internal CA would present.
    public let certificatePEM: String?

    /// The instance root (what `--base-url` takes); the API is at `apiURL`.
    public var baseURL: URL { URL(string: "\(certificatePEM == nil ? "http" : "https")://127.0.0.1:\(port)")! }
    public var apiURL: URL { baseURL.appendingPathComponent("api/v4") }

    /// The token of the integration's user (`FakeGitLabState.botUser`, scope `api`), valid from the start.
    public static let token = "glpat-sentinel-fake-token-0001"

    /// - Parameter tls: serve HTTPS with a freshly made self-signed certificate (see `certificatePEM`).
    public static func start(tls: Bool = false) async throws -> FakeGitLab {
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
        let state = FakeGitLabState()
        let router = Router()
        FakeGitLabRoutes(state: state).add(to: router)
        let app = Application(router: router, server: server, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { channel in await portBox.set(channel.localAddress?.port ?? 0) })
        let task = Task { try await app.runService() }
        let port = await portBox.wait()
        await state.setInstanceURL("\(tls ? "https" : "http")://127.0.0.1:\(port)")
        return FakeGitLab(state: state, port: port, task: task, certificatePEM: certificatePEM)
    }

    private init(state: FakeGitLabState, port: Int, task: Task<Void, Error>, certificatePEM: String?) {
        self.state = state
        self.port = port
        self.task = task
        self.certificatePEM = certificatePEM
    }

    public func stop() async {
        task.cancel()
        _ = await task.result
    }
}

/// A GitLab user (a person, or the bot user of a project/group access token).
public struct FakeGitLabUser: Sendable, Equatable {
    public var id: Int64
    public var username: String
    public var name: String
    public var bot: Bool

    public init(id: Int64, username: String, name: String? = nil, bot: Bool = false) {
        self.id = id
        self.username = username
        self.name = name ?? username
        self.bot = bot
    }
}

/// GitLab's member roles (`access_level`).
public enum GitLabAccessLevel: Int, Sendable {
    case guest = 10, reporter = 20, developer = 30, maintainer = 40, owner = 50
}

public struct FakeGitLabProject: Sendable {
    public var id: Int64
    /// `path_with_namespace`, e.g. `group/sub/sub-sub/project`.
    public var path: String
    public var defaultBranch: String

    public init(id: Int64, path: String, defaultBranch: String = "main") {
        self.id = id
        self.path = path
        self.defaultBranch = defaultBranch
    }
}

/// One file of a merge request diff, as GitLab's `diffs`/`changes`/`compare` list it. `diff` is
/// GitLab's `diff` text: hunks starting at `@@`, without `---`/`+++` headers.
public struct FakeGitLabDiffFile: Sendable, Equatable {
    public var oldPath: String
    public var newPath: String
    public var diff: String
    public var newFile: Bool
    public var renamedFile: Bool
    public var deletedFile: Bool
    public var aMode: String
    public var bMode: String

    public init(oldPath: String, newPath: String, diff: String, newFile: Bool = false, renamedFile: Bool = false, deletedFile: Bool = false) {
        self.oldPath = oldPath
        self.newPath = newPath
        self.diff = diff
        self.newFile = newFile
        self.renamedFile = renamedFile
        self.deletedFile = deletedFile
        self.aMode = newFile ? "0" : "100644"
        self.bMode = deletedFile ? "0" : "100644"
    }

    /// A changed file (same path before and after).
    public static func modified(_ path: String, diff: String) -> FakeGitLabDiffFile { .init(oldPath: path, newPath: path, diff: diff) }
    public static func added(_ path: String, diff: String) -> FakeGitLabDiffFile { .init(oldPath: path, newPath: path, diff: diff, newFile: true) }
    public static func deleted(_ path: String, diff: String) -> FakeGitLabDiffFile { .init(oldPath: path, newPath: path, diff: diff, deletedFile: true) }
    public static func renamed(from old: String, to new: String, diff: String = "") -> FakeGitLabDiffFile {
        .init(oldPath: old, newPath: new, diff: diff, renamedFile: true)
    }
}

/// One version of a merge request's diff (`/versions`): its refs and its files.
public struct FakeGitLabMergeRequestVersion: Sendable {
    public let id: Int64
    public let headSHA: String
    public let baseSHA: String
    public let startSHA: String
    public let files: [FakeGitLabDiffFile]
    public let createdAt: Date
}

public struct FakeGitLabMergeRequest: Sendable {
    public var project: Int64
    public var iid: Int
    public var id: Int64
    public var title: String
    public var description: String
    /// `opened`, `closed`, `merged` or `locked`.
    public var state: String
    public var draft: Bool
    /// What GitLab says of it: a draft when marked so or when its title starts as GitLab's rule
    /// reads a draft (`Draft:`, `[Draft]`, `(Draft)`), which GitLab sets from the title itself.
    public var isDraft: Bool {
        draft || title.range(of: #"^(\[draft\]|\(draft\)|draft:)"#, options: [.regularExpression, .caseInsensitive]) != nil
    }
    public var sourceBranch: String
    public var targetBranch: String
    /// Differs from `project` for a merge request from a fork.
    public var sourceProjectID: Int64
    public var author: FakeGitLabUser
    /// False right after creation: GitLab then serves `diff_refs: null` and no diff yet (it fills
    /// them in asynchronously, gitlab-org/gitlab#386562).
    public var diffReady: Bool
    /// Newest last.
    public internal(set) var versions: [FakeGitLabMergeRequestVersion]

    public var headSHA: String { versions.last?.headSHA ?? "" }
    public var baseSHA: String { versions.last?.baseSHA ?? "" }
    public var startSHA: String { versions.last?.startSHA ?? "" }
    public var files: [FakeGitLabDiffFile] { versions.last?.files ?? [] }

    /// - Parameters:
    ///   - startSHA: the target branch head the diff starts from (defaults to `baseSHA`).
    ///   - files: the first version's diff.
    public init(project: Int64, iid: Int, id: Int64? = nil, headSHA: String, baseSHA: String, startSHA: String? = nil,
                title: String = "Add a feature", description: String = "", state: String = "opened", draft: Bool = false,
                sourceBranch: String = "feature", targetBranch: String = "main", sourceProjectID: Int64? = nil,
                author: FakeGitLabUser = FakeGitLabState.defaultAuthor, diffReady: Bool = true, files: [FakeGitLabDiffFile]) {
        self.project = project
        self.iid = iid
        self.id = id ?? (project * 1000 + Int64(iid))
        self.title = title
        self.description = description
        self.state = state
        self.draft = draft
        self.sourceBranch = sourceBranch
        self.targetBranch = targetBranch
        self.sourceProjectID = sourceProjectID ?? project
        self.author = author
        self.diffReady = diffReady
        self.versions = [FakeGitLabMergeRequestVersion(id: self.id * 100 + 1, headSHA: headSHA, baseSHA: baseSHA,
                                                       startSHA: startSHA ?? baseSHA, files: files, createdAt: Date())]
    }
}

/// A text position as GitLab stored it with an accepted diff note.
public struct FakeGitLabPosition: Sendable, Equatable {
    public var baseSHA: String
    public var startSHA: String
    public var headSHA: String
    public var oldPath: String?
    public var newPath: String?
    public var positionType: String
    public var oldLine: Int?
    public var newLine: Int?
    /// `<sha1 of the path>_<old line>_<new line>`, as GitLab computes it.
    public var lineCode: String?

    public init(baseSHA: String, startSHA: String, headSHA: String, oldPath: String?, newPath: String?, positionType: String = "text",
                oldLine: Int?, newLine: Int?, lineCode: String? = nil) {
        self.baseSHA = baseSHA
        self.startSHA = startSHA
        self.headSHA = headSHA
        self.oldPath = oldPath
        self.newPath = newPath
        self.positionType = positionType
        self.oldLine = oldLine
        self.newLine = newLine
        self.lineCode = lineCode
    }
}

public struct FakeGitLabNote: Sendable {
    public let id: Int64
    public let discussionID: String
    public let body: String
    public let author: FakeGitLabUser
    public let system: Bool
    /// nil (a plain note), `DiscussionNote` or `DiffNote`.
    public let type: String?
    public let position: FakeGitLabPosition?
    public let createdAt: Date
}

public struct FakeGitLabDiscussion: Sendable {
    public let id: String
    public let individualNote: Bool
    public internal(set) var notes: [FakeGitLabNote]
}

/// A commit status (GitLab keeps every one; a status posted after a finished one of the same name
/// is a new status and the old one is `retried`).
public struct FakeGitLabCommitStatus: Sendable {
    public let id: Int64
    public let project: Int64
    public let sha: String
    public let ref: String
    public let name: String
    public internal(set) var status: String
    public internal(set) var description: String?
    public internal(set) var targetURL: String?
    public let author: FakeGitLabUser
    public internal(set) var retried: Bool
    public let createdAt: Date
}

public struct FakeGitLabMember: Sendable {
    public let user: FakeGitLabUser
    public let accessLevel: Int
}

struct FakeGitLabToken: Sendable {
    var user: FakeGitLabUser
    var scopes: Set<String>
    var revoked = false
    var expired = false
    /// `personal_access_tokens/self`'s `expires_at` (`YYYY-MM-DD`), nil for a token without one.
    var expiresAt: String? = nil
}

/// One request as the fake received it.
public struct FakeGitLabRequest: Sendable {
    public let method: String
    /// The route key faults are injected by (e.g. `POST discussions`).
    public let route: String
    /// Path and query as sent (percent-encoding kept).
    public let target: String
    /// When it arrived (before any injected delay).
    public var at = Date()
    /// The W3C trace and the correlation id the caller sent, if any.
    public var traceparent: String? = nil
    public var requestID: String? = nil
}

public actor FakeGitLabState {
    /// The integration's user: a project access token's bot user.
    public static let botUser = FakeGitLabUser(id: 9001, username: "project_1_bot_5e1f4c", name: "Sentinel", bot: true)
    /// Who authors merge requests unless a test says otherwise.
    public static let defaultAuthor = FakeGitLabUser(id: 42, username: "alice", name: "Alice Example")

    public private(set) var instanceURL = "http://127.0.0.1"
    public private(set) var projects: [Int64: FakeGitLabProject] = [:]
    public private(set) var mergeRequests: [String: FakeGitLabMergeRequest] = [:]
    /// `project@ref:path` → text.
    public private(set) var fileContents: [String: String] = [:]
    var comparisons: [String: (files: [FakeGitLabDiffFile], commits: [String])] = [:]
    var commitRefs: [String: String] = [:]
    var members: [Int64: [Int64: FakeGitLabMember]] = [:]
    var tokens: [String: FakeGitLabToken] = [:]
    var discussionsByMR: [String: [FakeGitLabDiscussion]] = [:]
    private var pendingPushes: [(route: String, occurrence: Int, project: Int64, iid: Int, headSHA: String, files: [FakeGitLabDiffFile])] = []
    public internal(set) var commitStatuses: [FakeGitLabCommitStatus] = []
    /// Why the fake refused a request (one line per refusal), for test diagnostics.
    public private(set) var rejected: [String] = []
    public private(set) var requests: [FakeGitLabRequest] = []
    /// False: `/merge_requests/:iid/diffs` answers 404 like an instance older than GitLab 15.7.
    public private(set) var diffsEndpointAvailable = true
    /// How many files `/changes` lists before it stops with `overflow: true` (GitLab's own limit,
    /// lower in a test).
    public private(set) var changesFileLimit = 1_000
    /// True: list answers carry `Link` alone, as behind a proxy that drops `X-*` headers.
    public private(set) var dropsPageHeaders = false
    private var faults: [String: [FakeFault]] = [:]
    private var nextID: Int64 = 5000
    /// The authenticated-API rate limit, when a test sets one: every answer carries `RateLimit-*`
    /// headers and each request spends one; at 0 GitLab answers 429 with `Retry-After` until the reset.
    private var rateLimit: (limit: Int, remaining: Int, reset: Int)?

    init() {
        tokens[FakeGitLab.token] = FakeGitLabToken(user: Self.botUser, scopes: ["api"])
    }

    func setInstanceURL(_ url: String) { instanceURL = url }

    // MARK: setup

    public func addProject(id: Int64, path: String, defaultBranch: String = "main") {
        projects[id] = FakeGitLabProject(id: id, path: path, defaultBranch: defaultBranch)
    }

    /// Adds a merge request (its project must exist) as its first diff version.
    public func addMergeRequest(_ mr: FakeGitLabMergeRequest) {
        mergeRequests[Self.key(mr.project, mr.iid)] = mr
        // A fork's commits are in the target project under refs/merge-requests/N/head only ("": no branch).
        commitRefs["\(mr.project)@\(mr.headSHA)"] = mr.sourceProjectID == mr.project ? mr.sourceBranch : ""
        knowCommit(mr.project, mr.baseSHA, ref: mr.targetBranch)
        knowCommit(mr.project, mr.startSHA, ref: mr.targetBranch)
    }

    /// New commits pushed to the merge request: a new diff version becomes the current one (its
    /// `diff_refs`); positions on earlier versions stay valid, as on GitLab.
    public func pushMergeRequest(project: Int64, iid: Int, headSHA: String, baseSHA: String? = nil, startSHA: String? = nil,
                                 files: [FakeGitLabDiffFile]) {
        guard var mr = mergeRequests[Self.key(project, iid)] else { return }
        let base = baseSHA ?? mr.baseSHA
        mr.versions.append(FakeGitLabMergeRequestVersion(id: mr.id * 100 + Int64(mr.versions.count + 1), headSHA: headSHA, baseSHA: base,
                                                         startSHA: startSHA ?? baseSHA ?? mr.startSHA, files: files, createdAt: Date()))
        mergeRequests[Self.key(project, iid)] = mr
        commitRefs["\(project)@\(headSHA)"] = mr.sourceProjectID == mr.project ? mr.sourceBranch : ""
        knowCommit(project, base, ref: mr.targetBranch)
    }

    /// Makes `pushMergeRequest(…)` happen just before the `occurrence`-th request (counted from now)
    /// on `route` is handled: the merge request moves while a review run is working on it.
    public func pushMergeRequest(before route: String, occurrence: Int, project: Int64, iid: Int, headSHA: String, files: [FakeGitLabDiffFile]) {
        pendingPushes.append((route, occurrence, project, iid, headSHA, files))
    }

    func applyPendingPushes(_ route: String) {
        var remaining: [(route: String, occurrence: Int, project: Int64, iid: Int, headSHA: String, files: [FakeGitLabDiffFile])] = []
        for var push in pendingPushes {
            if push.route == route { push.occurrence -= 1 }
            if push.occurrence == 0 {
                pushMergeRequest(project: push.project, iid: push.iid, headSHA: push.headSHA, files: push.files)
            } else {
                remaining.append(push)
            }
        }
        pendingPushes = remaining
    }

    /// Changes a merge request's title, draft flag, state (`opened`/`closed`/`merged`) or diff readiness.
    public func updateMergeRequest(project: Int64, iid: Int, title: String? = nil, draft: Bool? = nil, state: String? = nil,
                                   diffReady: Bool? = nil) {
        guard var mr = mergeRequests[Self.key(project, iid)] else { return }
        if let title { mr.title = title }
        if let draft { mr.draft = draft }
        if let state { mr.state = state }
        if let diffReady { mr.diffReady = diffReady }
        mergeRequests[Self.key(project, iid)] = mr
    }

    public func mergeRequest(project: Int64, iid: Int) -> FakeGitLabMergeRequest? { mergeRequests[Self.key(project, iid)] }

    /// A file at a ref (branch name or commit sha), served by `repository/files/:path/raw`.
    public func setFile(project: Int64, ref: String, path: String, _ text: String) { fileContents["\(project)@\(ref):\(path)"] = text }

    /// What `repository/compare?from=&to=` answers (both `straight` modes alike). `commits` are shas, oldest first.
    public func setComparison(project: Int64, from: String, to: String, files: [FakeGitLabDiffFile], commits: [String] = []) {
        comparisons["\(project)@\(from)...\(to)"] = (files, commits.isEmpty ? [to] : commits)
        knowCommit(project, to, ref: projects[project]?.defaultBranch ?? "main")
    }

    /// A commit the project knows (statuses can be posted on it); `ref` is the branch containing it.
    public func addCommit(project: Int64, sha: String, ref: String) { commitRefs["\(project)@\(sha)"] = ref }

    public func addMember(project: Int64, userID: Int64, username: String, accessLevel: GitLabAccessLevel) {
        addMember(project: project, user: FakeGitLabUser(id: userID, username: username), accessLevel: accessLevel.rawValue)
    }

    public func addMember(project: Int64, user: FakeGitLabUser, accessLevel: Int) {
        members[project, default: [:]][user.id] = FakeGitLabMember(user: user, accessLevel: accessLevel)
    }

    /// A token for `user` with these scopes (`api`, `read_api`, `read_user`, `read_repository`, ...).
    public func addToken(_ token: String, user: FakeGitLabUser, scopes: Set<String> = ["api"]) {
        tokens[token] = FakeGitLabToken(user: user, scopes: scopes)
    }

    /// The next use of a revoked token answers 401 `invalid_token` "Token was revoked...".
    public func revokeToken(_ token: String) { tokens[token]?.revoked = true }
    /// The next use of an expired token answers 401 `invalid_token` "Token is expired...".
    public func expireToken(_ token: String) { tokens[token]?.expired = true }
    /// The date (`YYYY-MM-DD`) GitLab says the token expires on (`personal_access_tokens/self`).
    public func setTokenExpiry(_ token: String, _ date: String?) { tokens[token]?.expiresAt = date }

    /// A note by someone else (e.g. a user quoting Sentinel's marker) or a system note.
    @discardableResult
    public func addNote(project: Int64, iid: Int, body: String, author: FakeGitLabUser, system: Bool = false) -> FakeGitLabNote {
        let note = FakeGitLabNote(id: newID(), discussionID: Self.discussionID(), body: body, author: author, system: system,
                                  type: nil, position: nil, createdAt: Date())
        discussionsByMR[Self.key(project, iid), default: []].append(FakeGitLabDiscussion(id: note.discussionID, individualNote: true, notes: [note]))
        return note
    }

    /// False: `/diffs` answers 404 as on GitLab before 15.7 (use `/changes`).
    public func setDiffsEndpointAvailable(_ available: Bool) { diffsEndpointAvailable = available }
    public func setChangesFileLimit(_ limit: Int) { changesFileLimit = limit }
    public func setDropsPageHeaders(_ drops: Bool) { dropsPageHeaders = drops }

    /// Faults for a route key: `GET user`, `GET project`, `GET merge_request`, `GET diffs`, `GET changes`,
    /// `GET versions`, `GET compare`, `GET file`, `GET notes`, `POST notes`, `GET discussions`,
    /// `POST discussions`, `POST statuses`, `GET statuses`, `GET member`.
    public func inject(_ route: String, _ faults: [FakeFault]) { self.faults[route, default: []] += faults }

    /// Sets the rate limit (`reset` in Unix seconds; default one hour from now).
    public func setRateLimit(limit: Int, remaining: Int, reset: Int? = nil) {
        rateLimit = (limit, remaining, reset ?? Int(Date().timeIntervalSince1970) + 3600)
    }

    /// Spends one request: the `RateLimit-*` headers of the answer, and the seconds to wait when
    /// the limit is exhausted (the request is then refused with 429).
    func spendRateLimit() -> (headers: [(String, String)], refusedFor: Int?) {
        guard var limit = rateLimit else { return ([], nil) }
        let now = Int(Date().timeIntervalSince1970)
        if now >= limit.reset { limit.remaining = limit.limit; limit.reset = now + 60 }
        let refused = limit.remaining <= 0
        if !refused { limit.remaining -= 1 }
        rateLimit = limit
        let headers = [("RateLimit-Name", "throttle_authenticated_api"), ("RateLimit-Limit", String(limit.limit)),
                       ("RateLimit-Observed", String(limit.limit - limit.remaining)), ("RateLimit-Remaining", String(limit.remaining)),
                       ("RateLimit-Reset", String(limit.reset))]
        return (headers, refused ? max(1, limit.reset - now) : nil)
    }

    // MARK: readers

    /// Every note on the merge request (plain, discussion and diff notes, system notes), oldest first.
    public func notes(project: Int64, iid: Int) -> [FakeGitLabNote] {
        (discussionsByMR[Self.key(project, iid)] ?? []).flatMap(\.notes).sorted { $0.id < $1.id }
    }

    /// Threads started through `POST .../discussions` and plain notes (individual notes), oldest first.
    public func discussions(project: Int64, iid: Int) -> [FakeGitLabDiscussion] { discussionsByMR[Self.key(project, iid)] ?? [] }

    /// Diff notes (inline comments) accepted on the merge request, oldest first.
    public func diffNotes(project: Int64, iid: Int) -> [FakeGitLabNote] { notes(project: project, iid: iid).filter { $0.type == "DiffNote" } }

    /// The latest status of each name on the commit (what GitLab shows), oldest first.
    public func statuses(project: Int64, sha: String) -> [FakeGitLabCommitStatus] {
        commitStatuses.filter { $0.project == project && $0.sha == sha && !$0.retried }
    }

    /// Every status ever posted on the commit, retried ones included, oldest first.
    public func allStatuses(project: Int64, sha: String) -> [FakeGitLabCommitStatus] {
        commitStatuses.filter { $0.project == project && $0.sha == sha }
    }

    /// The states accepted for one status name on the commit, in order (e.g. pending, running, success).
    public func statusStates(project: Int64, sha: String, name: String) -> [String] {
        acceptedStates.filter { $0.project == project && $0.sha == sha && $0.name == name }.map(\.state)
    }
    var acceptedStates: [(project: Int64, sha: String, name: String, state: String)] = []

    /// Quick actions run on the merge request from notes (`[name]` or `[name, argument]`), with who ran them.
    public func quickActions(project: Int64, iid: Int) -> [[String]] {
        ranQuickActions.filter { $0.mr == Self.key(project, iid) }.map(\.command)
    }
    var ranQuickActions: [(mr: String, command: [String], user: FakeGitLabUser)] = []

    func runQuickActions(_ commands: [[String]], project: Int64, iid: Int, user: FakeGitLabUser) {
        for command in commands { ranQuickActions.append((Self.key(project, iid), command, user)) }
    }

    /// How many requests hit a route key (e.g. `POST discussions`).
    public func count(_ route: String) -> Int { requests.filter { $0.route == route }.count }

    /// When each request of a route key arrived, oldest first.
    public func times(_ route: String) -> [Date] { requests.filter { $0.route == route }.map(\.at) }

    // MARK: internals

    func takeFault(_ route: String) -> FakeFault? {
        guard var list = faults[route], !list.isEmpty else { return nil }
        let fault = list.removeFirst()
        faults[route] = list
        return fault
    }

    func log(_ request: FakeGitLabRequest) { requests.append(request) }
    /// Routes whose `holdUntilRequest` fault waited its whole ten seconds for the other request in vain.
    public private(set) var expiredHolds: [String] = []
    func noteExpiredHold(_ route: String) { expiredHolds.append(route) }
    func reject(_ reason: String) { rejected.append(reason) }
    func newID() -> Int64 { nextID += 1; return nextID }
    func recordState(project: Int64, sha: String, name: String, state: String) { acceptedStates.append((project, sha, name, state)) }

    func knowCommit(_ project: Int64, _ sha: String, ref: String) {
        if commitRefs["\(project)@\(sha)"] == nil { commitRefs["\(project)@\(sha)"] = ref }
    }

    static func key(_ project: Int64, _ iid: Int) -> String { "\(project)!\(iid)" }

    static func discussionID() -> String {
        Insecure.SHA1.hash(data: Data(UUID().uuidString.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    static func lineCode(path: String, old: Int, new: Int) -> String {
        let digest = Insecure.SHA1.hash(data: Data(path.utf8)).map { String(format: "%02x", $0) }.joined()
        return "\(digest)_\(old)_\(new)"
    }
}
