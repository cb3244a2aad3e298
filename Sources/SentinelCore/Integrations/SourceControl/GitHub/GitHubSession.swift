import Foundation

/// GitHub behind `SourceControlSession`.
public struct GitHubSession: SourceControlSession {
    let client: GitHubClient
    /// The App's bot login (e.g. `my-app[bot]`) when the integration knows it.
    let botLogin: String?
    public static let checkName = "Sentinel"
    /// The start of the `external_id` of Sentinel's check runs; the run's id follows.
    static let checkExternalIDPrefix = "sentinel-run-"
    public var platformName: String { "GitHub" }
    /// GitHub refuses a review or comment body over 65,536 characters and a check summary over 65,535.
    public var maxTextLength: Int { 65_535 }

    public init(client: GitHubClient, botLogin: String? = nil) {
        self.client = client
        self.botLogin = botLogin
    }

    func mapped<T>(_ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch let error as GitHubAPIError {
            if error.isRetryable { throw SourceControlError.retryable(error.description, retryAfter: error.retryAfter) }
            throw SourceControlError.permanent(error.description)
        } catch let error as OutboundHTTPError {
            if case .destinationRefused = error { throw SourceControlError.permanent("GitHub \(error)") }
            throw SourceControlError.retryable("GitHub unreachable: \(error)", retryAfter: nil)
        }
    }

    public func pullRequest(_ repo: String, _ number: Int) async throws -> PullRequestInfo {
        try await mapped {
            let pr = try await client.pullRequest(repo, number)
            // A head repository of null means the fork was deleted: still a fork, never trusted.
            let fork = pr.head.repo.map { $0.id != pr.base.repo?.id } ?? true
            return PullRequestInfo(headSHA: pr.head.sha, baseSHA: pr.base.sha, isDraft: pr.draft ?? false,
                                   isOpen: (pr.state ?? "open") == "open", fromFork: fork, title: pr.title ?? "")
        }
    }

    /// GitHub's per-file patches as diff files. A patch that cannot be parsed keeps its file (with
    /// no reviewable lines) so it still counts in the coverage line instead of vanishing.
    /// GitHub's changed files as diff files. GitHub leaves the patch out of a binary file (no line
    /// counted) and of a text diff too large for it (lines counted): the second is "diff not
    /// available", as is a patch that does not parse; neither counts as reviewed.
    public static func diffFiles(_ files: [GitHubChangedFile], maxPatchBytes: Int = DiffFile.maxPatchBytes) -> [DiffFile] {
        var parsedBytes = 0
        return files.map { f in
            let status = DiffFile.Status(gitHubFileStatus: f.status)
            let changedLines = (f.additions ?? 0) + (f.deletions ?? 0)
            let oldPath = status == .added ? nil : (f.previousFilename ?? f.filename)
            let newPath = status == .deleted ? nil : f.filename
            func unreviewable(_ reason: SkipReason) -> DiffFile {
                DiffFile(oldPath: oldPath, newPath: newPath, status: status, additions: f.additions, deletions: f.deletions, unreviewable: reason)
            }
            if (f.patch ?? "").isEmpty, changedLines > 0 { return unreviewable(.diffUnavailable) }
            // A rename without changes has no patch either: it is not a binary file; nor is a change of
            // mode alone, which GitHub lists as `changed` (an empty file added is listed as a binary one is).
            if (f.patch ?? "").isEmpty, status == .renamed || f.status == "changed" { return unreviewable(.noChangedLines) }
            let bytes = f.patch?.utf8.count ?? 0
            guard parsedBytes + bytes <= maxPatchBytes else { return unreviewable(.overBudget) }
            parsedBytes += bytes
            if let parsed = try? DiffFile.fromPatch(path: f.filename, previousPath: f.previousFilename, status: status, patch: f.patch) {
                return parsed
            }
            return unreviewable(.diffUnavailable)
        }
    }

    public func changedFiles(_ repo: String, _ number: Int) async throws -> PullRequestFiles {
        try await mapped {
            let listed = try await client.pullRequestFiles(repo, number)
            var unlisted = 0
            if listed.count >= GitHubClient.pullRequestFileLimit {
                // GitHub stops listing at 3,000 files; the pull request says how many there are.
                let total = try await client.pullRequest(repo, number).changedFiles ?? listed.count
                unlisted = max(0, total - listed.count)
            }
            return PullRequestFiles(files: Self.diffFiles(listed), unlisted: unlisted)
        }
    }

    public func changedFiles(_ repo: String, from base: String, to head: String) async throws -> CommitComparison? {
        try await mapped {
            guard let comparison = try await client.compare(repo, base: base, head: head) else { return nil }
            // `diverged` or `behind`: the old head is not an ancestor of the new one (force-push).
            guard let status = comparison.status, status == "ahead" || status == "identical" else { return nil }
            let files = comparison.files ?? []
            return CommitComparison(files: Self.diffFiles(files), truncated: files.count >= GitHubClient.compareFileLimit)
        }
    }

    public func fileContent(_ repo: String, path: String, ref: String) async throws -> Data? {
        try await mapped { try await client.fileContent(repo, path: path, ref: ref) }
    }

    /// Found by its `external_id`, `sentinel-run-N`, among this App's checks of the commit.
    public func earlierCheck(_ repo: String, headSHA: String, runID: Int64) async throws -> String? {
        try await mapped {
            try await client.checkRun(repo, sha: headSHA, name: Self.checkName, externalID: "\(Self.checkExternalIDPrefix)\(runID)").map(String.init)
        }
    }

    public func startCheck(_ repo: String, headSHA: String, runID: Int64) async throws -> String {
        try await mapped {
            String(try await client.createCheckRun(repo, GitHubCheckRunRequest(
                name: Self.checkName, headSHA: headSHA, status: "in_progress", conclusion: nil, externalID: "\(Self.checkExternalIDPrefix)\(runID)",
                startedAt: Date().formatted(.iso8601), completedAt: nil,
                output: .init(title: "Review in progress", summary: "Sentinel is reviewing this pull request.", text: nil))))
        }
    }

    public func completeCheck(_ repo: String, checkID: String, conclusion: CheckConclusion, title: String, summary: String) async throws {
        guard let id = Int64(checkID) else { throw SourceControlError.permanent("invalid check run id \(checkID)") }
        try await mapped {
            try await client.updateCheckRun(repo, id: id, GitHubCheckRunRequest(
                name: nil, headSHA: nil, status: "completed", conclusion: conclusion.rawValue, externalID: nil, startedAt: nil,
                completedAt: Date().formatted(.iso8601), output: .init(title: String(title.prefix(200)),
                                                                      summary: PlatformText.fitted(summary, limit: maxTextLength, notice: "_(Cut here: longer than GitHub takes.)_"),
                                                                      text: nil)))
        }
    }

    public func findReview(_ repo: String, _ number: Int, marker: String) async throws -> String? {
        try await mapped {
            try await client.reviews(repo, number).first { review in
                guard let user = review.user, user.type == "Bot" else { return false }
                if let botLogin, user.login.lowercased() != botLogin.lowercased() { return false }
                return review.body?.hasPrefix(marker) == true
            }.map { String($0.id) }
        }
    }

    public func postReview(_ repo: String, _ number: Int, headSHA: String, body: String, comments: [ReviewComment], requestChanges: Bool) async throws -> String {
        do {
            return try await post(repo, number, headSHA: headSHA, body: body, comments: comments, requestChanges: requestChanges)
        } catch OutboundHTTPError.timeout(let host) {
            // The review may still land on GitHub. Look for its marker only once a request sent
            // now would surely have finished, so the retry sees it instead of posting twice.
            throw SourceControlError.retryable("posting the review to \(host) timed out; its outcome is unknown",
                                               retryAfter: client.timeout.seconds * 2)
        }
    }

    private func post(_ repo: String, _ number: Int, headSHA: String, body: String, comments: [ReviewComment], requestChanges: Bool) async throws -> String {
        do {
            let request = GitHubReviewRequest(commitID: headSHA, body: body, event: requestChanges ? "REQUEST_CHANGES" : "COMMENT",
                                              comments: comments.map {
                                                  GitHubReviewComment(path: $0.path, line: $0.line, side: $0.side.rawValue, startLine: $0.startLine,
                                                                      startSide: $0.startLine == nil ? nil : $0.side.rawValue, body: $0.body)
                                              })
            return String(try await client.createReview(repo, number, request).id)
        } catch let error as GitHubAPIError {
            if error.isRetryable { throw SourceControlError.retryable(error.description, retryAfter: error.retryAfter) }
            if error.status == 422, error.description.contains("not part of the pull request") {
                throw ReviewedCommitOutdated(message: error.description)
            }
            if error.status == 422, !comments.isEmpty { throw ReviewCommentsRejected(message: error.description) }
            throw SourceControlError.permanent(error.description)
        }
    }
}

extension DiffFile.Status {
    /// GitHub's `status` of a pull-request or comparison file ("removed", "copied", "changed" …).
    init(gitHubFileStatus status: String) {
        switch status.lowercased() {
        case "added", "copied": self = .added
        case "removed", "deleted": self = .deleted
        case "renamed": self = .renamed
        default: self = .modified
        }
    }
}
