import Foundation

/// GitLab behind `SourceControlSession`: a merge request is the pull request (`number` is its
/// IID), inline comments are discussions with a text position, the gate is a commit status named
/// `Sentinel`, and the review is one summary note carrying the run marker.
public struct GitLabSession: SourceControlSession {
    let client: GitLabClient
    /// The project's numeric id (the repository's external id): stable across renames and moves.
    let project: Int64
    /// The integration's own user: only its notes can carry a run marker Sentinel trusts.
    let bot: GitLabUser
    /// Where a run can be seen (`server.public_url` + the API's run path), for the status's link.
    let runURL: (@Sendable (Int64) -> String)?
    public static let statusName = "Sentinel"
    public var platformName: String { "GitLab" }
    /// GitLab takes notes of up to 1,000,000 characters.
    public var maxTextLength: Int { 1_000_000 }
    public var checkIsPerCommit: Bool { true }

    public init(client: GitLabClient, project: Int64, bot: GitLabUser, runURL: (@Sendable (Int64) -> String)? = nil) {
        self.client = client
        self.project = project
        self.bot = bot
        self.runURL = runURL
    }

    /// GitLab's errors as the seam's; with `timeouts: false` a timeout is rethrown as it is (the caller decides).
    func mapped<T>(timeouts: Bool = true, _ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch let error as GitLabAPIError {
            if error.isRetryable { throw SourceControlError.retryable(error.description, retryAfter: error.retryAfter) }
            throw SourceControlError.permanent(error.description)
        } catch let error as OutboundHTTPError {
            if case .destinationRefused = error { throw SourceControlError.permanent("GitLab \(error)") }
            if case .timeout = error, !timeouts { throw error }
            // An answer past the size limit came from GitLab: it is reachable, and reading it again will not help.
            if case .responseTooLarge = error { throw SourceControlError.permanent("GitLab \(error)") }
            throw SourceControlError.retryable("GitLab unreachable: \(error)", retryAfter: nil)
        }
    }

    public func pullRequest(_ repo: String, _ number: Int) async throws -> PullRequestInfo {
        try await mapped {
            let mr = try await client.mergeRequest(project: project, iid: number)
            let draft = Self.isDraft(flag: mr.draft, workInProgress: mr.work_in_progress, title: mr.title)
            let fork = mr.source_project_id.map { $0 != (mr.target_project_id ?? project) } ?? false
            // Right after a merge request is created GitLab serves it without `diff_refs` and with no
            // diff until it has prepared them: reviewed then, it was "Reviewed 0 of 0 files", green,
            // and its head had a run, so nothing reviewed it again.
            if (mr.state ?? "opened") == "opened", mr.diff_refs?.head_sha == nil {
                throw SourceControlError.notReady("GitLab has not prepared the merge request's diff yet", retryAfter: Self.diffPreparationWait)
            }
            return PullRequestInfo(headSHA: mr.diff_refs?.head_sha ?? mr.sha ?? "", baseSHA: mr.diff_refs?.base_sha ?? "", isDraft: draft,
                                   isOpen: (mr.state ?? "opened") == "opened", fromFork: fork, title: mr.title ?? "")
        }
    }

    /// How long a run waits for GitLab to prepare a new merge request's diff before looking again.
    static let diffPreparationWait: Double = 5

    /// Whether GitLab holds a merge request as a draft: its own `draft` flag (`work_in_progress`
    /// before GitLab 13.x), and only where neither is sent, its title read by GitLab's rule
    /// (`Draft:`, `[Draft]`, `(Draft)` at the very start, any case). A title GitLab does not read
    /// as a draft (`Draft notes`, `WIP:` since GitLab 14.0) is not one here either: such a merge
    /// request would never be "ready", and never reviewed.
    public static func isDraft(flag: Bool?, workInProgress: Bool?, title: String?) -> Bool {
        if let flag = flag ?? workInProgress { return flag }
        return (title ?? "").range(of: #"^(\[draft\]|\(draft\)|draft:)"#, options: [.regularExpression, .caseInsensitive]) != nil
    }

    /// GitLab's per-file diffs as diff files. A file GitLab left out (too large, collapsed) or whose
    /// diff cannot be parsed keeps its place as "diff not available", so it counts in the coverage
    /// sentence as not reviewed.
    public static func diffFiles(_ diffs: [GitLabDiff], maxPatchBytes: Int = DiffFile.maxPatchBytes) -> [DiffFile] {
        var parsedBytes = 0
        return diffs.map { d in
            let status: DiffFile.Status = (d.new_file ?? false) ? .added : (d.deleted_file ?? false) ? .deleted
                : (d.renamed_file ?? false) ? .renamed : .modified
            let previous = d.old_path == d.new_path ? nil : d.old_path
            let path = status == .deleted ? d.old_path : d.new_path
            let leftOut = (d.too_large ?? false) || (d.collapsed ?? false)
            let (oldPath, newPath) = (status == .added ? nil : d.old_path, status == .deleted ? nil : d.new_path)
            let bytes = d.diff?.utf8.count ?? 0
            if !leftOut, bytes > 0, parsedBytes + bytes > maxPatchBytes {
                return DiffFile(oldPath: oldPath, newPath: newPath, status: status, unreviewable: .overBudget)
            }
            parsedBytes += leftOut ? 0 : bytes
            if !leftOut, let diff = d.diff, !diff.isEmpty,
               let parsed = try? DiffFile.fromPatch(path: path, previousPath: previous, status: status, patch: diff, isBinary: false) {
                return parsed
            }
            // Left out by GitLab, or a diff that does not parse: not available (not reviewed); an
            // empty diff of a file GitLab did not leave out is binary, as is one that is GitLab's
            // binary notice alone (`Binary files a/x and b/x differ`, its `has_binary_notice?`).
            let binaryNotice = (d.diff ?? "").hasPrefix("Binary files ") && (d.diff ?? "").trimmingCharacters(in: .newlines).hasSuffix(" differ")
            let unavailable = leftOut || (!(d.diff ?? "").isEmpty && !binaryNotice)
            // An empty diff without GitLab's binary notice is a file without changed lines, not a
            // binary one: a rename without changes, a change of mode alone (`chmod +x`), an empty
            // file added or deleted (`__init__.py`, `.gitkeep`). Those were counted binary. (An
            // empty diff of a file modified in place stays binary: older GitLab sent no notice.)
            let modeOnly = d.a_mode != nil && d.b_mode != nil && d.a_mode != d.b_mode
            if !unavailable, !binaryNotice, status != .modified || modeOnly {
                return DiffFile(oldPath: oldPath, newPath: newPath, status: status, hunks: [], unreviewable: .noChangedLines)
            }
            return DiffFile(oldPath: oldPath, newPath: newPath, status: status, isBinary: !unavailable, hunks: [],
                            unreviewable: unavailable ? .diffUnavailable : nil)
        }
    }

    public func changedFiles(_ repo: String, _ number: Int) async throws -> PullRequestFiles {
        try await mapped {
            let listed = try await client.mergeRequestDiffList(project: project, iid: number)
            return PullRequestFiles(files: Self.diffFiles(listed.diffs), unlisted: listed.unlisted, unlistedIsLowerBound: listed.atLeast)
        }
    }

    public func changedFiles(_ repo: String, from base: String, to head: String) async throws -> CommitComparison? {
        try await mapped {
            // A rewritten history (force-push) leaves the old head off the new one's ancestry.
            guard try await client.mergeBase(project: project, base, head) == base,
                  let comparison = try await client.compare(project: project, from: base, to: head) else { return nil }
            return CommitComparison(files: Self.diffFiles(comparison.diffs ?? []), truncated: comparison.compare_timeout ?? false)
        }
    }

    public func fileContent(_ repo: String, path: String, ref: String) async throws -> Data? {
        try await mapped { try await client.fileContent(project: project, path: path, ref: ref) }
    }

    /// Sets the `Sentinel` status; a transition GitLab refuses (400: the status already moved on, e.g.
    /// a newer run concluded it) leaves the gate as it is rather than failing the review.
    private func setStatus(_ sha: String, _ state: String, _ description: String, runID: Int64?) async throws {
        do {
            _ = try await client.setStatus(project: project, sha: sha, GitLabCommitStatusRequest(
                state: state, name: Self.statusName, description: String(description.prefix(255)),
                target_url: runID.flatMap { id in runURL.map { $0(id) } }))
        } catch let error as GitLabAPIError where error.status == 400 {
            return
        }
    }

    /// None is looked for: the status is keyed by commit and name, and setting it again is harmless
    /// where a run is still going; concluding one that was never set could replace a newer run's.
    public func earlierCheck(_ repo: String, headSHA: String, runID: Int64) async throws -> String? { nil }

    /// The status is keyed by commit and name; the check id is `<sha>@<run id>`.
    public func startCheck(_ repo: String, headSHA: String, runID: Int64) async throws -> String {
        try await mapped {
            try await setStatus(headSHA, "pending", "Review queued", runID: runID)
            try await setStatus(headSHA, "running", "Sentinel is reviewing this merge request", runID: runID)
            return "\(headSHA)@\(runID)"
        }
    }

    public func completeCheck(_ repo: String, checkID: String, conclusion: CheckConclusion, title: String, summary: String) async throws {
        // GitLab has no neutral state: a neutral conclusion (skipped, superseded) does not block the merge.
        let state = conclusion == .failure ? "failed" : "success"
        let parts = checkID.split(separator: "@", maxSplits: 1)
        guard let sha = parts.first.map(String.init), !sha.isEmpty else { throw SourceControlError.permanent("invalid status id \(checkID)") }
        try await mapped { try await setStatus(sha, state, Self.statusDescription(title: title, summary: summary),
                                               runID: parts.count == 2 ? Int64(parts[1]) : nil) }
    }

    /// What the status says: the title and the summary's first line (the coverage sentence, or why
    /// the review failed or was skipped); `setStatus` keeps GitLab's 255 characters.
    public static func statusDescription(title: String, summary: String) -> String {
        let first = summary.split(separator: "\n", omittingEmptySubsequences: true).first.map(String.init) ?? ""
        return first.isEmpty ? title : "\(title): \(first)"
    }

    public func findReview(_ repo: String, _ number: Int, marker: String) async throws -> String? {
        try await mapped {
            try await client.notes(project: project, iid: number).first { note in
                note.author?.id == bot.id && note.system != true && (note.body?.hasPrefix(marker) ?? false)
            }.map { String($0.id) }
        }
    }

    /// Posts each inline comment as a discussion on its diff line, then the summary note. A comment
    /// GitLab refuses (400, 422) moves into the summary instead of failing the run; a retry skips the
    /// discussions this run already posted (they carry the run marker). A post that timed out may
    /// still land: the retry waits twice the request timeout, so it finds the marker instead of
    /// posting twice.
    public func postReview(_ repo: String, _ number: Int, headSHA: String, body: String, comments: [ReviewComment], requestChanges: Bool) async throws -> String {
        do {
            return try await post(repo, number, headSHA: headSHA, body: body, comments: comments)
        } catch OutboundHTTPError.timeout(let host) {
            throw SourceControlError.retryable("posting the review to \(host) timed out; its outcome is unknown",
                                               retryAfter: client.timeout.seconds * 2)
        }
    }

    private func post(_ repo: String, _ number: Int, headSHA: String, body: String, comments: [ReviewComment]) async throws -> String {
        try await mapped(timeouts: false) {
            let marker = body.prefix { $0 != "\n" }.hasPrefix("<!-- sentinel:run:") ? String(body.prefix { $0 != "\n" }) : nil
            var refused: [ReviewComment] = []
            if !comments.isEmpty {
                let mr = try await client.mergeRequest(project: project, iid: number)
                // Positions are taken against the merge request's current diff: on a moved head they
                // would point at lines of another version than the one reviewed.
                if let current = mr.diff_refs?.head_sha ?? mr.sha, current != headSHA {
                    throw ReviewedCommitOutdated(message: "the merge request's head moved from \(headSHA.prefix(12)) to \(current.prefix(12)) before the review was posted")
                }
                let files = Self.diffFiles(try await client.mergeRequestDiffs(project: project, iid: number).diffs)
                // The findings already on the merge request, by the fingerprint marker ending each of
                // the bot's discussions: this run's own before a retry, and an earlier run's that
                // failed after posting them (its findings were never recorded as posted, and the next
                // run posted them all again). Compared by whole text, a retry missed what GitLab
                // stores changed (carriage returns dropped, trailing spaces trimmed) and posted twice.
                var posted = Set<String>()
                for discussion in try await client.discussions(project: project, iid: number) {
                    for note in discussion.notes ?? [] where note.author?.id == bot.id {
                        if let body = note.body, let fingerprint = Self.fingerprintMarker(in: body) { posted.insert(fingerprint) }
                    }
                }
                for comment in comments {
                    let text = GitLabQuickActions.neutralize(Self.gitLabBody(comment)) + (marker.map { "\n\n" + $0 } ?? "")
                    if let fingerprint = Self.fingerprintMarker(in: comment.body), posted.contains(fingerprint) { continue }
                    guard let refs = mr.diff_refs, let base = refs.base_sha, let start = refs.start_sha, let head = refs.head_sha,
                          let position = Self.position(of: comment, in: files, base: base, start: start, head: head) else {
                        refused.append(comment)
                        continue
                    }
                    do {
                        _ = try await client.createDiscussion(project: project, iid: number, GitLabDiscussionRequest(body: text, position: position))
                    } catch let error as GitLabAPIError where error.status == 400 || error.status == 422 {
                        refused.append(comment)
                    }
                }
            }
            var summary = body
            if !refused.isEmpty {
                // Each comment was made safe on its own; one after another they are one text, in
                // which a fence one leaves open would take in the next: read again as a whole
                // (without the comments' markers, which are no use in the summary).
                var listed = ""
                for c in refused {
                    let location = c.startLine.map { "\(c.path):\($0)-\(c.line)" } ?? "\(c.path):\(c.line)"
                    listed += "\n**\(MarkdownCode.span(location))**\n\n\(Self.withoutMarker(c.body))\n"
                }
                summary += "\n\n### Findings GitLab could not place inline\n" + ModelText.neutralize(listed)
            }
            return String(try await client.createNote(project: project, iid: number, body: GitLabQuickActions.neutralize(summary)).id)
        }
    }

    /// The fingerprint marker a comment carries (`<!-- sentinel:fp:… -->`), if any.
    static func fingerprintMarker(in body: String) -> String? {
        guard let start = body.range(of: "<!-- sentinel:fp:", options: .backwards),
              let end = body.range(of: " -->", range: start.upperBound..<body.endIndex) else { return nil }
        return String(body[start.lowerBound..<end.upperBound])
    }

    /// A comment's text without the fingerprint marker that ends it.
    static func withoutMarker(_ body: String) -> String {
        guard let range = body.range(of: "\n\n<!-- sentinel:fp:", options: .backwards), body.hasSuffix(" -->") else { return body }
        return String(body[..<range.lowerBound])
    }

    /// GitHub-style suggestion fences (replacing lines start…line) as GitLab's `suggestion:-N+0`.
    public static func gitLabBody(_ comment: ReviewComment) -> String {
        let above = comment.startLine.map { max(0, comment.line - $0) } ?? 0
        return comment.body.replacingOccurrences(of: #"(`{3,})suggestion\n"#, with: "$1suggestion:-\(above)+0\n", options: .regularExpression)
    }

    /// Where a comment goes in GitLab's terms: an added line has only `new_line`, a removed line
    /// only `old_line`, an unchanged line both. Nil when the line is not in the diff.
    public static func position(of comment: ReviewComment, in files: [DiffFile], base: String, start: String,
                         head: String) -> GitLabDiscussionRequest.Position? {
        // The file the comment's side names first: a new `config.py` beside `config.py` renamed away.
        let named: (DiffFile) -> String? = comment.side == .right ? { $0.newPath ?? $0.oldPath } : { $0.oldPath ?? $0.newPath }
        guard let file = files.first(where: { named($0) == comment.path })
                ?? files.first(where: { ($0.newPath ?? $0.oldPath) == comment.path || $0.oldPath == comment.path }) else { return nil }
        let lines = file.hunks.flatMap(\.lines)
        let found: DiffLine?
        switch comment.side {
        case .right: found = lines.first { $0.newLine == comment.line && $0.kind != .removed }
        case .left: found = lines.first { $0.oldLine == comment.line && $0.kind != .added }
        }
        guard let line = found else { return nil }
        let oldPath = file.oldPath ?? file.newPath ?? comment.path
        let newPath = file.newPath ?? file.oldPath ?? comment.path
        return .init(position_type: "text", base_sha: base, start_sha: start, head_sha: head, old_path: oldPath, new_path: newPath,
                     old_line: line.kind == .added ? nil : line.oldLine, new_line: line.kind == .removed ? nil : line.newLine)
    }
}
