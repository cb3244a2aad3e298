import Foundation
import GRDB
import Logging

/// Produces a source-control session for a repository of a workspace (GitHub today).
public protocol SourceControlConnector: Sendable {
    func session(for repository: RepositoryRecord, in workspace: WorkspaceActor) async throws -> any SourceControlSession
}

/// Picks the AI model for a run: nil with a plain reason when none is eligible (no key, budget
/// spent, every circuit open). The review then completes on the built-in checks alone.
public protocol ReviewModelResolver: Sendable {
    func model(for workspace: WorkspaceActor, policy: ReviewPolicy) async -> (model: (any ReviewModel)?, skippedReason: String?)
    /// Estimated cost in USD of one model call, from the configured price table.
    func cost(of call: ModelCallRecord, in workspace: WorkspaceActor) async -> Double
}

extension ReviewModelResolver {
    public func cost(of call: ModelCallRecord, in workspace: WorkspaceActor) async -> Double { 0 }
}

/// No provider configured: the AI review is skipped, built-in checks still run.
public struct NoReviewModel: ReviewModelResolver {
    public init() {}
    public func model(for workspace: WorkspaceActor, policy: ReviewPolicy) async -> (model: (any ReviewModel)?, skippedReason: String?) {
        (nil, "no AI provider is configured for this workspace")
    }
}

/// The `review.run` job (SPEC §3 steps 5–7): resolve policy, fetch the diff, review, post one
/// review and a check run, record findings and usage, append `RunCompleted`. Safe to retry at any
/// point: external ids are stored as soon as they exist and the review carries a run marker that
/// is looked for before posting, so a retried job never posts twice.
public struct ReviewRunner: Sendable {
    let connector: any SourceControlConnector
    let models: any ReviewModelResolver
    let billing: (any BillingProvider)?
    /// `review.max_tokens_per_run`: the engine's token budget of one run.
    let maxTokensPerRun: Int?

    public init(connector: any SourceControlConnector, models: any ReviewModelResolver = NoReviewModel(), billing: (any BillingProvider)? = nil,
                maxTokensPerRun: Int? = 1_000_000) {
        self.connector = connector
        self.models = models
        self.billing = billing
        self.maxTokensPerRun = maxTokensPerRun
    }

    public static func marker(runID: Int64) -> String { "<!-- sentinel:run:\(runID) -->" }
    public static func fingerprintMarker(_ fingerprint: String) -> String { "<!-- sentinel:fp:\(fingerprint) -->" }

    struct Loaded: Sendable {
        let run: ReviewRun
        let repository: RepositoryRecord
        let alreadyPosted: Set<String>
        let lastReviewedSHA: String?
        let planLimit: String?
        var plan: Plan? = nil
    }

    public func run(_ context: JobContext) async throws {
        let runID = try context.job.decodePayload(ReviewRunJob.self).runID
        let workspace = context.workspace
        let logger = context.logger.with(["run_id": String(runID)])
        let plan = try await billing?.plan(for: workspace.id)
        guard let loaded = try await workspace.write({ tx -> Loaded? in
            guard let run = try ReviewRunStore.find(runID, in: tx.db), !run.state.isFinal,
                  let repo = try RepositoryStore.find(id: run.repositoryId, in: tx.db) else { return nil }
            // Checked in the transaction that marks the run running: runs of one workspace are
            // serialised here, so concurrent runs cannot together exceed the plan.
            let limit = try plan.flatMap { try PlanLimits.reasonToSkip(runID: runID, plan: $0, in: tx.db, now: tx.now) }
            if limit == nil {
                try tx.db.execute(sql: "UPDATE review_runs SET state = 'running', started_at = coalesce(started_at, ?) WHERE id = ?",
                                  arguments: [tx.now.epoch, runID])
                if let plan { try PlanLimits.recordSoftLimits(plan: plan, startingRun: runID, in: &tx) }
            }
            let posted = try String.fetchAll(tx.db, sql: """
                SELECT fingerprint FROM findings WHERE repository_id = ? AND pr_number = ? AND posted = 1 AND run_id != ?
                """, arguments: [run.repositoryId, run.prNumber, runID])
            let last = try String.fetchOne(tx.db, sql: "SELECT last_reviewed_sha FROM pull_requests WHERE repository_id = ? AND pr_number = ?",
                                           arguments: [run.repositoryId, run.prNumber])
            return Loaded(run: run, repository: repo, alreadyPosted: Set(posted), lastReviewedSHA: last, planLimit: limit, plan: plan)
        }) else {
            logger.info("run already finished; nothing to do")
            return
        }
        let repo = loaded.repository.fullName
        var checkID = loaded.run.checkRunId
        var session: (any SourceControlSession)?
        do {
            let scm = try await connector.session(for: loaded.repository, in: workspace)
            session = scm
            try await execute(loaded, session: scm, checkID: &checkID, context: context, logger: logger)
        } catch let error as SourceControlError {
            switch error {
            case .retryable(let message, let retryAfter):
                if context.job.attempts < context.job.maxAttempts {
                    logger.warning("platform call failed; will retry", metadata: ["error": "\(message)"])
                    if let retryAfter { throw JobFailure.retryAfter(retryAfter, message) }
                    throw error
                }
                try await fail(runID: runID, reason: "gave up after \(context.job.attempts) attempts: \(message)", session: session,
                               repo: repo, checkID: checkID, workspace: workspace, logger: logger)
            case .permanent(let message):
                try await fail(runID: runID, reason: message, session: session, repo: repo, checkID: checkID, workspace: workspace, logger: logger)
            }
        }
    }

    private func execute(_ loaded: Loaded, session: any SourceControlSession, checkID: inout String?, context: JobContext, logger: Logger) async throws {
        let workspace = context.workspace
        var run = loaded.run
        let repo = loaded.repository.fullName
        let pr = try await session.pullRequest(repo, run.prNumber)
        if run.headSha.isEmpty {
            let (id, sha) = (run.id, pr.headSHA)
            try await workspace.write { tx in
                try tx.db.execute(sql: "UPDATE review_runs SET head_sha = ?, base_sha = ? WHERE id = ?", arguments: [sha, pr.baseSHA, id])
            }
            run.headSha = pr.headSHA
            run.baseSha = pr.baseSHA
        }
        if let limit = loaded.planLimit {
            try await skip(run: run, reason: limit, session: session, repo: repo, checkID: checkID, workspace: workspace)
            logger.info("run skipped", metadata: ["reason": "\(limit)"])
            return
        }
        // Policy: the repository's file at the head commit, or at the base for a fork's PR.
        let configRef = pr.fromFork ? pr.baseSHA : run.headSha
        let fileText = try await session.fileContent(repo, path: PolicyService.fileName, ref: configRef)
        let resolved = try await workspace.read { db in
            try PolicyService.resolve(in: db, repositoryID: loaded.repository.id, fileText: fileText)
        }
        let policy = resolved.policy
        let (id, snapshot, sha, versions) = (run.id, String(decoding: resolved.effective.snapshotJSON(), as: UTF8.self),
                                             resolved.effective.sha256, resolved.versionsJSON)
        try await workspace.write { tx in
            try tx.db.execute(sql: "UPDATE review_runs SET policy_snapshot = ?, policy_sha256 = ?, policy_versions = ? WHERE id = ?",
                              arguments: [snapshot, sha, versions, id])
        }
        if let reason = skipReason(run: run, pr: pr, policy: policy) {
            try await skip(run: run, reason: reason, session: session, repo: repo, checkID: checkID, workspace: workspace)
            logger.info("run skipped", metadata: ["reason": "\(reason)"])
            return
        }
        if checkID == nil {
            let created = try await session.startCheck(repo, headSHA: run.headSha, runID: run.id)
            checkID = created
            try await workspace.write { tx in
                try tx.db.execute(sql: "UPDATE review_runs SET check_run_id = ? WHERE id = ?", arguments: [created, id])
            }
        }
        // Incremental on push: only what changed since the last reviewed commit.
        let files: [DiffFile]
        if run.trigger == "push", !run.fullReview, let last = loaded.lastReviewedSHA, !last.isEmpty, last != run.headSha {
            files = try await session.changedFiles(repo, from: last, to: run.headSha)
        } else {
            files = try await session.changedFiles(repo, run.prNumber)
        }
        let (model, skippedReason) = await models.model(for: workspace, policy: policy)
        var options = ReviewOptions(include: policy.include, exclude: policy.exclude, instructions: policy.instructions.isEmpty ? nil : policy.instructions,
                                    pathInstructions: policy.pathInstructions, language: policy.language, minSeverity: policy.minSeverity,
                                    maxComments: policy.maxComments, builtinChecks: policy.builtinChecks)
        options.alreadyPosted = loaded.alreadyPosted
        options.aiSkippedReason = skippedReason
        options.maxTokensPerRun = maxTokensPerRun
        // Shared limits (AI budget, plan tokens) are checked before every call and each call is
        // recorded as it returns, so concurrent runs see each other's spend.
        let gate = RunSpendGuard(workspace: workspace, runID: run.id, jobAttempt: context.job.attempts, repository: repo,
                                 plan: loaded.plan, cost: { [models] call in await models.cost(of: call, in: workspace) })
        let result = await ReviewEngine.review(files: files, options: options, model: model, gate: gate)
        try await recordUsage(of: result, runID: run.id, repository: loaded.repository.fullName, jobAttempt: context.job.attempts, in: workspace)
        let blocking = policy.failOn.map { floor in result.findings.contains { $0.severity >= floor } } ?? false
        var body = ReviewRunner.marker(runID: run.id) + "\n## Sentinel review\n\n" + result.summary
        if !resolved.diagnostics.isEmpty {
            body += "\n\n### Configuration problems\n" + resolved.diagnostics.map { "- `\($0.formatted)`" }.joined(separator: "\n")
                + "\n\nThe review used the other configuration layers."
        }
        if !resolved.effective.violations.isEmpty {
            body += "\n\n### Locked settings\n" + resolved.effective.violations.map {
                "- `\($0.key)` is locked by the \($0.lockedBy.rawValue) settings; the \($0.attemptedBy.rawValue) value was not applied."
            }.joined(separator: "\n")
        }
        // A newer push may have superseded this run while it worked: then it posts nothing.
        if let current = try await workspace.read({ db in try ReviewRunStore.find(id, in: db) }), current.state.isFinal, current.reviewId == nil {
            if let checkID {
                try await session.completeCheck(repo, checkID: checkID, conclusion: .neutral, title: "Superseded",
                                                summary: current.reason.map { "Not posted: \($0)." } ?? "Not posted: a newer run replaced this one.")
            }
            logger.info("run superseded while running; nothing posted", metadata: ["state": "\(current.state.rawValue)"])
            return
        }
        // Post once: a stored id or a review carrying this run's marker means it is already there.
        let reviewID: String
        if let existing = run.reviewId {
            reviewID = existing
        } else if let found = try await session.findReview(repo, run.prNumber, marker: ReviewRunner.marker(runID: run.id)) {
            reviewID = found
        } else {
            let comments = result.findings.map(Self.comment)
            reviewID = try await session.postReview(repo, run.prNumber, headSHA: run.headSha, body: body, comments: comments,
                                                    requestChanges: policy.requestChanges && blocking)
        }
        let conclusion: CheckConclusion = blocking ? .failure : .success
        let title = result.findings.isEmpty ? "No findings" : "\(result.findings.count) finding\(result.findings.count == 1 ? "" : "s")"
        var checkSummary = result.coverage.sentence + "\n\nAI review: \(result.aiStatus.description)"
        if let floor = policy.failOn { checkSummary += "\n\nFails on findings of severity \(floor.rawValue) or higher." }
        try await workspace.write { tx in
            try tx.db.execute(sql: "UPDATE review_runs SET review_id = ? WHERE id = ?", arguments: [reviewID, id])
        }
        if let checkID { try await session.completeCheck(repo, checkID: checkID, conclusion: conclusion, title: title, summary: checkSummary) }
        let record = result
        let (repositoryID, prNumber, headSHA) = (loaded.repository.id, run.prNumber, run.headSha)
        try await workspace.write { tx in
            try tx.db.execute(sql: "DELETE FROM findings WHERE run_id = ?", arguments: [id])
            for f in record.findings {
                try tx.db.execute(sql: """
                    INSERT INTO findings (run_id, repository_id, pr_number, path, start_line, line, side, severity, category, title, body,
                                          suggestion, source, fingerprint, posted)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)
                    """, arguments: [id, repositoryID, prNumber, f.path, f.startLine, f.line, f.side.rawValue, f.severity.rawValue, f.category,
                                     f.title, f.body, f.suggestion, f.source.rawValue, f.fingerprint])
            }
            try tx.db.execute(sql: "UPDATE pull_requests SET last_reviewed_sha = ? WHERE repository_id = ? AND pr_number = ?",
                              arguments: [headSHA, repositoryID, prNumber])
            try tx.db.execute(sql: "UPDATE review_runs SET files_reviewed = ?, files_total = ?, summary = ? WHERE id = ?",
                              arguments: [record.coverage.reviewedFiles, record.coverage.totalFiles, record.summary, id])
            try ReviewRunStore.finish(runID: id, state: .completed, reason: nil, conclusion: conclusion.rawValue, in: &tx)
        }
        logger.info("run completed", metadata: ["findings": "\(result.findings.count)", "conclusion": "\(conclusion.rawValue)",
                                                 "ai": "\(result.aiStatus.description)"])
    }

    /// Records the engine's AI calls before anything is posted: a call costs money whether or not
    /// this attempt of the job gets to finish. The engine's gate already recorded each call as it
    /// returned; the key (run, job attempt, chunk, attempt) makes this record nothing twice, and a
    /// retried job's new calls count as new calls.
    private func recordUsage(of result: ReviewResult, runID: Int64, repository: String, jobAttempt: Int,
                             in workspace: WorkspaceActor) async throws {
        guard !result.usage.isEmpty else { return }
        var costs: [Double] = []
        for call in result.usage { costs.append(await models.cost(of: call, in: workspace)) }
        let calls = zip(result.usage, costs).map { (call: $0.0, costUSD: $0.1) }
        try await workspace.write { tx in
            try UsageLedger.record(calls, runID: runID, repository: repository, jobAttempt: jobAttempt, in: &tx)
        }
    }

    func skipReason(run: ReviewRun, pr: PullRequestInfo, policy: ReviewPolicy) -> String? {
        let manual = run.trigger.hasPrefix("command:") || run.trigger.hasPrefix("manual:")
        if !pr.isOpen { return "the pull request is closed" }
        if !policy.reviewEnabled { return "reviews are turned off by configuration (review.enabled)" }
        if manual { return nil }
        if pr.isDraft && !policy.autoReviewDrafts { return "draft pull requests are not reviewed automatically (review.auto_review.drafts)" }
        if run.trigger == "push" && !policy.autoReviewOnPush { return "pushes are not reviewed automatically (review.auto_review.on_push)" }
        if ["opened", "reopened", "ready_for_review"].contains(run.trigger) && !policy.autoReviewOnOpen {
            return "opened pull requests are not reviewed automatically (review.auto_review.on_open)"
        }
        return nil
    }

    static func comment(_ finding: Finding) -> ReviewComment {
        var body = "**\(finding.severity.rawValue.capitalized) · \(finding.category)**: \(finding.title)\n\n\(finding.body)"
        if let suggestion = finding.suggestion, finding.side == .right {
            // A fence longer than any backtick run inside, so the suggestion cannot close it early.
            let longest = suggestion.split(whereSeparator: { $0 != "`" }).map(\.count).max() ?? 0
            let fence = String(repeating: "`", count: max(3, longest + 1))
            body += "\n\n\(fence)suggestion\n\(suggestion)\n\(fence)"
        }
        body += "\n\n" + fingerprintMarker(finding.fingerprint)
        return ReviewComment(path: finding.path, line: finding.line, side: finding.side, startLine: finding.startLine, body: body)
    }

    private func skip(run: ReviewRun, reason: String, session: any SourceControlSession, repo: String, checkID: String?,
                      workspace: WorkspaceActor) async throws {
        var check = checkID
        if check == nil, !run.headSha.isEmpty { check = try await session.startCheck(repo, headSHA: run.headSha, runID: run.id) }
        if let check { try await session.completeCheck(repo, checkID: check, conclusion: .neutral, title: "Review skipped", summary: "Skipped: \(reason).") }
        let (id, stored) = (run.id, check)
        try await workspace.write { tx in
            try tx.db.execute(sql: "UPDATE review_runs SET check_run_id = ? WHERE id = ?", arguments: [stored, id])
            try ReviewRunStore.finish(runID: id, state: .skipped, reason: reason, conclusion: "neutral", in: &tx)
        }
    }

    private func fail(runID: Int64, reason: String, session: (any SourceControlSession)?, repo: String, checkID: String?,
                      workspace: WorkspaceActor, logger: Logger) async throws {
        logger.error("run failed", metadata: ["reason": "\(reason)"])
        if let session, let checkID {
            try? await session.completeCheck(repo, checkID: checkID, conclusion: .neutral, title: "Review failed", summary: "Sentinel could not finish this review: \(reason)")
        }
        try await workspace.write { tx in
            try ReviewRunStore.finish(runID: runID, state: .failed, reason: reason, conclusion: "neutral", in: &tx)
        }
    }
}
