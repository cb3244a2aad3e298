import Foundation

/// The rate-limit budget GitLab states on its answers (`RateLimit-Remaining`, `RateLimit-Limit`,
/// `RateLimit-Reset` in Unix seconds), the last one seen, per integration. Instances without rate
/// limits send none, and the budget stays unknown.
public actor GitLabRateBudget {
    private var last: RateBudget?

    public init() {}

    public func observe(_ response: OutboundResponse) {
        guard let remaining = response.header("RateLimit-Remaining").flatMap({ Int($0.trimmingCharacters(in: .whitespaces)) }),
              let limit = response.header("RateLimit-Limit").flatMap({ Int($0.trimmingCharacters(in: .whitespaces)) }) else { return }
        last = RateBudget(remaining: remaining, limit: limit, resetAt: response.resetTime("RateLimit-Reset"))
    }

    public var current: RateBudget? { last }
}

/// GitLab behind `ReconcileSession`: the open merge requests of each project with the integration's
/// token. GitLab keeps no log of failed webhook deliveries that an API can resend (it retries, then
/// may disable the hook), so the open-merge-request sweep is all the catch-up there is.
public struct GitLabReconcileSession: ReconcileSession {
    let client: GitLabClient
    let rateBudget: GitLabRateBudget

    /// Pages read at most per project (100 merge requests a page).
    public static let maxPages = 30

    public init(client: GitLabClient, rateBudget: GitLabRateBudget) {
        self.client = client
        self.rateBudget = rateBudget
    }

    public var platformName: String { "GitLab" }
    public var canRedeliver: Bool { false }

    public func budget() async -> RateBudget? { await rateBudget.current }

    /// The token's `expires_at` (GitLab 15.5+; nil on older instances or for a token without one).
    public func credentialsExpireAt() async throws -> Date? { try await client.tokenInfo()?.expiresAt }

    /// `GET /projects/:id/merge_requests?state=opened`, every page (`X-Next-Page`). The list has no
    /// `diff_refs`: the base is learnt when the run starts. Drafts are listed (the run applies the policy).
    public func openPullRequests(_ repository: RepositoryRecord) async throws -> OpenPullRequestList {
        let client = self.client
        let session = GitLabSession(client: client, project: repository.externalID, bot: GitLabUser(id: 0, username: ""))
        return try await session.mapped {
            let listed = try await client.openMergeRequests(project: repository.externalID, maxPages: Self.maxPages)
            // Each merge request once: a page that shifted (one opened between two reads), or an
            // instance answering the same page again, listed some twice and counted them twice.
            var seen = Set<Int>()
            let pulls = listed.items.filter { seen.insert($0.iid).inserted }.map { mr in
                OpenPullRequest(number: mr.iid, headSHA: mr.diff_refs?.head_sha ?? mr.sha ?? "", baseSHA: mr.diff_refs?.base_sha ?? "",
                                isDraft: GitLabSession.isDraft(flag: mr.draft, workInProgress: mr.work_in_progress, title: mr.title))
            }
            return OpenPullRequestList(pulls: pulls, truncatedAfter: listed.more ? pulls.count : nil)
        }
    }

    public func failedDeliveries(after cursor: String?, since: Date) async throws -> DeliveryLog {
        DeliveryLog(failed: [], cursor: cursor)
    }

    public func redeliver(_ delivery: FailedDelivery) async throws {
        throw SourceControlError.permanent("GitLab has no API to resend a webhook delivery")
    }
}
