import Foundation

// What a review run needs from a source-control platform. Reviews know these types and no
// platform's: GitHub (Integrations/SourceControl/GitHub) implements them today, and another
// platform is one more adapter: its pull or merge request behind `PullRequestInfo`, its diff
// positions behind `ReviewComment` (path, line, side), its check run or commit status behind
// `startCheck`/`completeCheck`, its errors mapped to `SourceControlError`.

/// Produces a source-control session for a repository of a workspace.
public protocol SourceControlConnector: Sendable {
    func session(for repository: RepositoryRecord, in workspace: WorkspaceActor) async throws -> any SourceControlSession
}

/// What the review run needs to know about a pull request.
public struct PullRequestInfo: Sendable, Equatable {
    public var headSHA: String
    public var baseSHA: String
    public var isDraft: Bool
    public var isOpen: Bool
    /// The head lives in another repository (a fork): its config file is not trusted.
    public var fromFork: Bool
    public var title: String

    public init(headSHA: String, baseSHA: String, isDraft: Bool, isOpen: Bool, fromFork: Bool, title: String) {
        self.headSHA = headSHA
        self.baseSHA = baseSHA
        self.isDraft = isDraft
        self.isOpen = isOpen
        self.fromFork = fromFork
        self.title = title
    }
}

/// One inline comment of a review, on a line that is in the diff.
public struct ReviewComment: Sendable, Equatable {
    public var path: String
    public var line: Int
    public var side: DiffSide
    public var startLine: Int?
    public var body: String

    public init(path: String, line: Int, side: DiffSide, startLine: Int?, body: String) {
        (self.path, self.line, self.side, self.startLine, self.body) = (path, line, side, startLine, body)
    }
}

public enum CheckConclusion: String, Sendable {
    case success, failure, neutral
}

/// Platform failures as the run sees them: retry later, or fail the run with this reason.
public enum SourceControlError: Error, CustomStringConvertible {
    case retryable(String, retryAfter: TimeInterval?)
    case permanent(String)
    /// The platform is still preparing what was asked for (GitLab computing a new merge request's
    /// diff): asked again after `retryAfter`, a wait that is not a failed attempt.
    case notReady(String, retryAfter: TimeInterval)

    public var description: String {
        switch self {
        case .retryable(let m, _), .permanent(let m), .notReady(let m, _): return m
        }
    }
}

/// The platform refused a review because one or more of its inline comments cannot be placed
/// (GitHub's 422, for one, does not say which). The caller may post again without inline comments.
public struct ReviewCommentsRejected: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// The platform refused a review of the commit the run reviewed because that commit is no longer
/// what the pull request holds: GitHub's 422 "The commitOID is not part of the pull request" after
/// a force push, or a GitLab merge request whose head moved (its diff positions would point at
/// other lines). The run is superseded by the newer head, not failed.
public struct ReviewedCommitOutdated: Error, CustomStringConvertible {
    public let message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}

/// A pull request's own diff (base…head) as the platform lists it.
public struct PullRequestFiles: Sendable {
    public var files: [DiffFile]
    /// Changed files the platform did not list (GitHub, for one, lists at most 3,000); 0 when complete.
    public var unlisted: Int
    /// The platform says only that there are more (GitLab's `changes_count` `"1000+"`): `unlisted`
    /// is then the least there can be, not a count.
    public var unlistedIsLowerBound: Bool

    public init(files: [DiffFile], unlisted: Int = 0, unlistedIsLowerBound: Bool = false) {
        self.files = files
        self.unlisted = unlisted
        self.unlistedIsLowerBound = unlistedIsLowerBound
    }
}

/// What changed between the last reviewed commit and the new head.
public struct CommitComparison: Sendable {
    public var files: [DiffFile]
    /// The platform stopped listing files (GitHub, for one, lists at most 300 in a comparison).
    public var truncated: Bool

    public init(files: [DiffFile], truncated: Bool) {
        self.files = files
        self.truncated = truncated
    }
}

/// Text cut to what a platform takes (`SourceControlSession.maxTextLength`), counted in Unicode
/// code points as GitHub counts them (an emoji once), cut between characters and ending with a
/// sentence that says so.
public enum PlatformText {
    public static func length(_ text: String) -> Int { text.unicodeScalars.count }

    /// `text` as it is when it fits in `limit`; otherwise its start and `notice` (after a blank
    /// line), `limit` code points in all. A start cut from its end may read otherwise than it did
    /// in the whole (a code span that lost its closing backtick is prose): `reread` makes it what
    /// it must be as it now stands, and the start is cut shorter while that outgrows the room.
    public static func fitted(_ text: String, limit: Int, notice: String, reread: (String) -> String = { $0 }) -> String {
        guard length(text) > limit else { return text }
        var room = max(0, limit - length(notice) - 2)
        var start = prefix(text, room)
        for round in 1... {
            let read = reread(start)
            let over = length(read) - room
            if over <= 0 || room == 0 { return read + "\n\n" + notice }
            // What the reading added is cut from its own end (read again, it reads the same);
            // should it not settle, the room shrinks until it does.
            if round > 3 { room = max(0, room - over) }
            start = prefix(read, room)
        }
        return ""
    }

    /// The longest start of `text` of at most `room` code points, cut between characters.
    static func prefix(_ text: String, _ room: Int) -> String {
        var kept = 0
        var end = text.startIndex
        for character in text {
            let size = character.unicodeScalars.count
            guard kept + size <= room else { break }
            kept += size
            end = text.index(after: end)
        }
        return String(text[..<end])
    }
}

/// A source-control platform as seen by a review run. `number` is the pull request's number (a
/// merge request's IID on platforms that call it so); `repo` the platform's full repository name.
/// Implementations map their API errors to `SourceControlError`.
public protocol SourceControlSession: Sendable {
    /// The platform's name as users know it ("GitHub"), for sentences in reviews and checks.
    var platformName: String { get }
    /// The most characters (Unicode code points) the platform takes in a review body or an inline
    /// comment; a longer one is refused whole. The review is cut to fit (`PlatformText`).
    var maxTextLength: Int { get }
    func pullRequest(_ repo: String, _ number: Int) async throws -> PullRequestInfo
    func changedFiles(_ repo: String, _ number: Int) async throws -> PullRequestFiles
    /// Nil when `base` is not an ancestor of `head` (a force-push rewrote history) or is unknown.
    func changedFiles(_ repo: String, from base: String, to head: String) async throws -> CommitComparison?
    /// A file's bytes at a ref as stored (not decoded: a policy file that is not UTF-8 is an error
    /// the parser names), nil when there is none.
    func fileContent(_ repo: String, path: String, ref: String) async throws -> Data?
    func startCheck(_ repo: String, headSHA: String, runID: Int64) async throws -> String
    /// The run's check on `headSHA` that an earlier attempt of its job started without recording
    /// its id (a crash, a timeout the platform still carried out), if there is one.
    func earlierCheck(_ repo: String, headSHA: String, runID: Int64) async throws -> String?
    func completeCheck(_ repo: String, checkID: String, conclusion: CheckConclusion, title: String, summary: String) async throws
    /// The id of a review already posted by this App's own bot account whose body starts with
    /// `marker`, if any. Reviews by anyone else are ignored, whatever they contain.
    func findReview(_ repo: String, _ number: Int, marker: String) async throws -> String?
    /// Posts a review of `headSHA`. Throws `ReviewCommentsRejected` when the platform refuses an
    /// inline comment, `ReviewedCommitOutdated` when it refuses a review of that commit.
    func postReview(_ repo: String, _ number: Int, headSHA: String, body: String, comments: [ReviewComment], requestChanges: Bool) async throws -> String
    /// True where a commit has one check of Sentinel's, whichever run set it (GitLab's commit
    /// status, keyed by commit and name; GitHub gives each run a check run of its own).
    var checkIsPerCommit: Bool { get }
}

extension SourceControlSession {
    public var checkIsPerCommit: Bool { false }
}


// MARK: Catch-up after downtime (the reconciliation sweep)
//
// What `Reconciler` needs from a platform to find work a missed webhook would have started. GitHub
// implements it (`GitHubReconcileSession`); another platform is one more adapter: its open merge
// requests behind `openPullRequests`, its rate-limit headers behind `budget`, and — when it keeps a
// log of failed webhook deliveries that can be resent — `failedDeliveries`/`redeliver`.

/// Produces a catch-up session for one integration of a workspace.
public protocol ReconcileConnector: Sendable {
    /// Nil when the integration no longer exists (or is not this connector's platform).
    func reconcileSession(for integration: IntegrationID, in workspace: WorkspaceActor) async throws -> (any ReconcileSession)?
}

/// A repository's open pull requests as listed, and whether the listing stopped at its bound
/// with more left (those are not swept: the sweep says so rather than reporting "complete").
public struct OpenPullRequestList: Sendable, Equatable {
    public var pulls: [OpenPullRequest]
    /// Set when more were left unread: how many were read.
    public var truncatedAfter: Int?
    /// The repository's name now, when the platform answered for it under another one (GitHub's
    /// `301` for a repository renamed or moved while Sentinel was down).
    public var currentName: String?

    public init(pulls: [OpenPullRequest], truncatedAfter: Int? = nil, currentName: String? = nil) {
        self.pulls = pulls
        self.truncatedAfter = truncatedAfter
        self.currentName = currentName
    }
}

/// An open pull (or merge) request as the platform lists it.
public struct OpenPullRequest: Sendable, Equatable, Codable {
    public var number: Int
    public var headSHA: String
    public var baseSHA: String
    public var isDraft: Bool

    public init(number: Int, headSHA: String, baseSHA: String, isDraft: Bool) {
        self.number = number
        self.headSHA = headSHA
        self.baseSHA = baseSHA
        self.isDraft = isDraft
    }

    /// What the webhook path would take too: a positive number and a head that is a commit name
    /// (letters and digits only; a listing with `-5` or `../x` is the platform's, or a proxy's, fault).
    public var isReviewable: Bool { number > 0 && CommitName.isValid(headSHA) }
}

/// The name of a commit as the platforms give one (SHA-1's 40 hex digits, SHA-256's 64): 1 to 64
/// ASCII letters and digits. A delivery or listing naming a head otherwise (`../x`, `abc def`) is
/// not acted on: the name goes into API paths and queries.
public enum CommitName {
    public static func isValid(_ sha: String) -> Bool {
        !sha.isEmpty && sha.utf8.count <= 64 && sha.utf8.allSatisfy { byte in
            (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
        }
    }
}

/// What the platform's last answer said about the integration's API budget.
public struct RateBudget: Sendable, Equatable {
    public var remaining: Int
    public var limit: Int
    /// When the budget is refilled.
    public var resetAt: Date?

    public init(remaining: Int, limit: Int, resetAt: Date?) {
        self.remaining = remaining
        self.limit = limit
        self.resetAt = resetAt
    }

    /// The share of the budget left, 0...1 (1 when the platform states no limit).
    public var fraction: Double { limit > 0 ? Double(remaining) / Double(limit) : 1 }
}

/// One webhook delivery the platform failed to hand over (answered other than 2xx, or not at all).
public struct FailedDelivery: Sendable, Equatable, Codable {
    /// The platform's id of this delivery attempt (what a redelivery request names).
    public var id: String
    /// The delivery's own id, the same on every attempt: what intake stores (`deliveries.id`).
    public var guid: String
    public var deliveredAt: Date
    public var statusCode: Int
    public var event: String
    public var action: String?

    public init(id: String, guid: String, deliveredAt: Date, statusCode: Int, event: String, action: String?) {
        self.id = id
        self.guid = guid
        self.deliveredAt = deliveredAt
        self.statusCode = statusCode
        self.event = event
        self.action = action
    }
}

/// The failed deliveries newer than a cursor, and the cursor to keep once they are handled.
public struct DeliveryLog: Sendable, Equatable {
    public var failed: [FailedDelivery]
    /// The newest delivery seen (nil when there was none): the next read stops there.
    public var cursor: String?
    /// Deliveries read when the log held more, within the window and newer than the last read,
    /// than one sweep reads: the older ones were not looked at. nil when it was read to its end.
    public var truncatedAfter: Int?

    public init(failed: [FailedDelivery], cursor: String?, truncatedAfter: Int? = nil) {
        self.failed = failed
        self.cursor = cursor
        self.truncatedAfter = truncatedAfter
    }
}

/// A platform as the catch-up sweep of one integration sees it. Implementations map their API
/// errors to `SourceControlError` (a `retryAfter` on a rate limit) and record the budget every
/// answer states.
public protocol ReconcileSession: Sendable {
    var platformName: String { get }
    /// Every open pull request of the repository (`repository.fullName` on the platform), up to
    /// the listing's bound.
    func openPullRequests(_ repository: RepositoryRecord) async throws -> OpenPullRequestList
    /// Whether the platform keeps a log of failed webhook deliveries that can be resent.
    var canRedeliver: Bool { get }
    /// Failed deliveries newer than `cursor` (all of them when nil) and delivered after `since`,
    /// reading newest first; `cursor` of the result is the newest delivery seen.
    func failedDeliveries(after cursor: String?, since: Date) async throws -> DeliveryLog
    /// Asks the platform to send a delivery again.
    func redeliver(_ delivery: FailedDelivery) async throws
    /// The integration's API budget as the last answer stated it (nil before any answer said).
    func budget() async -> RateBudget?
    /// When the credentials the integration calls the platform with stop working, where the
    /// platform says (a GitLab access token's expiry); nil when they do not expire or it cannot tell.
    func credentialsExpireAt() async throws -> Date?
}

extension ReconcileSession {
    public func credentialsExpireAt() async throws -> Date? { nil }
}
