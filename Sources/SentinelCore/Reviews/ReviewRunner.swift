import Foundation
import GRDB
import Logging

/// Picks the AI model for a run: nil with a plain reason when none is eligible (no key, budget
/// spent, every circuit open). The review then completes on the built-in checks alone.
public protocol ReviewModelResolver: Sendable {
    func model(for workspace: WorkspaceActor, policy: ReviewPolicy) async -> (model: (any ReviewModel)?, skippedReason: String?)
    /// Estimated cost in USD of one model call, from the configured price table.
    func cost(of call: ModelCallRecord, in workspace: WorkspaceActor) async -> Double
    /// Estimated cost in USD of a call of about `tokens` (prompt and answer), before it is made: at
    /// the price of the dearest model the workspace's last resolved providers may route it to.
    func estimatedCost(ofCallWith tokens: Int, in workspace: WorkspaceActor) async -> Double
}

extension ReviewModelResolver {
    public func cost(of call: ModelCallRecord, in workspace: WorkspaceActor) async -> Double { 0 }
    public func estimatedCost(ofCallWith tokens: Int, in workspace: WorkspaceActor) async -> Double { 0 }
}

/// No provider configured: the AI review is skipped, built-in checks still run.
public struct NoReviewModel: ReviewModelResolver {
    public init() {}
    public func model(for workspace: WorkspaceActor, policy: ReviewPolicy) async -> (model: (any ReviewModel)?, skippedReason: String?) {
        (nil, "no AI provider is configured for this workspace")
    }
}

extension ReviewOptions {
    /// The engine's options from a resolved review policy: what a review run and the CLI's review
    /// of a local diff both start from. The severity floor is never above `review.fail_on`: a
    /// finding that fails the check is reported, so a `min_severity` (which a pull request's own
    /// file may set) cannot hide what a locked `fail_on` would fail on.
    public init(policy: ReviewPolicy) {
        let floor = policy.failOn.map { min(policy.minSeverity, $0) } ?? policy.minSeverity
        self.init(include: policy.include, exclude: policy.exclude, instructions: policy.instructions.isEmpty ? nil : policy.instructions,
                  pathInstructions: policy.pathInstructions, language: policy.language, minSeverity: floor,
                  maxComments: policy.maxComments, builtinChecks: policy.builtinChecks)
    }
}

/// What a run posts, computed once (engine included) and stored on the run before anything is
/// posted: a retried job posts exactly this, without calling the model again.
struct PreparedReview: Codable, Sendable, Equatable {
    var body: String
    var findings: [Finding]
    var requestChanges: Bool
    var conclusion: String
    var title: String
    var checkSummary: String
    var filesReviewed: Int
    var filesTotal: Int
    var summary: String
    /// Findings past `review.max_comments`, listed in the summary: recorded with the run, not posted
    /// inline (nil in a review prepared before they were kept).
    var overLimit: [Finding]?
    /// Findings reported open but not this run's own: posted by an earlier run and found again, or
    /// carried from the last review into code an incremental review did not look at again.
    var stillOpen: [Finding]?
    /// Findings not on a changed line (listed in the summary): recorded with the run, so the run
    /// shows every finding its check counted (nil in a review prepared before they were kept).
    var unanchored: [Finding]?
    /// What `last_reviewed_sha` becomes; nil when part of the change could not be listed.
    var reviewedSHA: String?
    /// The platform refused the inline comments (GitHub's 422): the findings went into the review body instead.
    var inlineMovedToSummary = false
}

/// The `review.run` job (SPEC §3 steps 5–7): resolve policy, fetch the diff, review, post one
/// review and a check run, record findings and usage, append `RunCompleted`. Safe to retry at any
/// point: the engine's result is stored before anything is posted (a retry posts it without
/// calling the model again), external ids are stored as soon as they exist, and the review
/// starts with a run marker that is looked for (on the App's own reviews) before posting, so a
/// retried job never posts twice. A job that goes dead for any reason ends its run `failed`
/// through `runDied`.
public struct ReviewRunner: Sendable {
    let connector: any SourceControlConnector
    let models: any ReviewModelResolver
    let billing: (any BillingProvider)?
    /// Check conclusion of a failed run (`review.failed_run_conclusion`).
    let failedRunConclusion: CheckConclusion
    /// `review.max_tokens_per_run`: the engine's token budget of one run.
    let maxTokensPerRun: Int?
    /// Stage durations and run outcomes.
    let metrics: SentinelMetrics

    public init(connector: any SourceControlConnector, models: any ReviewModelResolver = NoReviewModel(), billing: (any BillingProvider)? = nil,
                failedRunConclusion: SentinelConfig.FailedRunConclusion = .failure, maxTokensPerRun: Int? = 1_000_000,
                metrics: SentinelMetrics = SentinelMetrics()) {
        self.metrics = metrics
        self.connector = connector
        self.models = models
        self.billing = billing
        self.failedRunConclusion = failedRunConclusion == .neutral ? .neutral : .failure
        self.maxTokensPerRun = maxTokensPerRun
    }

    /// How long a run waits for a platform still preparing what it needs (GitLab's diff) before
    /// such waits count as failed attempts.
    static let notReadyPatience: Double = 15 * 60

    /// Registers the `review.run` job and its on-dead hook (a dead job ends its run failed).
    public func register(in registry: inout JobRegistry) {
        registry.register(ReviewRunStore.jobKind, handler: { try await run($0) }, onDead: { try await runDied($0, $1) })
        registry.register(Self.concludeCheckKind, handler: { try await concludeFailedCheck($0) })
    }

    /// Concludes the check of a run that failed while the platform refused the conclusion (it was
    /// down longer than the review job's attempts and its dead hook's: about 17 minutes at the
    /// defaults), or that ended meanwhile (cancelled, superseded). The check, a GitLab commit status
    /// gating a merge among them, had stayed "running" for good while the run said it had ended;
    /// this job keeps trying for most of a day (backoff with jitter: about 12 to 23 hours).
    public static let concludeCheckKind = "review.conclude_check"
    /// 9 attempts back off to `jobs.backoff_max_seconds` (600 s by default); the rest 5 to 10 minutes apart (jitter).
    static let concludeCheckAttempts = 150

    struct ConcludeCheckJob: Codable, Sendable {
        var runID: Int64
    }

    static func concludeCheckRequest(runID: Int64, correlationID: String?) throws -> JobRequest {
        try JobRequest(kind: concludeCheckKind, payload: ConcludeCheckJob(runID: runID), priority: .normal,
                       idempotencyKey: "conclude-check:\(runID)", correlationID: correlationID, maxAttempts: concludeCheckAttempts)
    }

    func concludeFailedCheck(_ context: JobContext) async throws {
        let runID = try JSONDecoder.sentinel.decode(ConcludeCheckJob.self, from: context.job.payload).runID
        let workspace = context.workspace
        // Nothing left to do once the run has a conclusion (its check concluded by another path).
        guard let (run, repository, checkID) = try await workspace.read({ db -> (ReviewRun, RepositoryRecord, String)? in
            guard let run = try ReviewRunStore.find(runID, in: db), [.failed, .skipped, .superseded].contains(run.state), run.conclusion == nil,
                  let check = run.checkRunID, let repo = try RepositoryStore.find(id: run.repositoryID, in: db) else { return nil }
            return (run, repo, check)
        }) else { return }
        let conclusion = failedRunConclusion
        do {
            // A run that ended without a review of its own: its check says so (neutral, "Superseded" or "Review skipped").
            if run.state != .failed {
                let session = try await connector.session(for: repository, in: workspace)
                try await concludeWithoutResult(run, checkID: checkID, session: session, repo: repository.fullName, workspace: workspace,
                                                reason: run.reason ?? "the run ended before its review")
                return
            }
            // A failed run whose review was posted: its check says what the review says (it was
            // failed by this job, and a `jobs retry` that had concluded it green turned red again).
            if try await concludePostedCheck(runID: runID, workspace: workspace, logger: context.logger) { return }
            let session = try await connector.session(for: repository, in: workspace)
            if try await checkOwnedByNewerRun(run, session: session, workspace: workspace) { return }
            try await session.completeCheck(repository.fullName, checkID: checkID, conclusion: conclusion, title: "Review failed",
                                            summary: "Sentinel could not finish this review: \(Self.outside(run.reason ?? "the review job gave up"))")
        } catch SourceControlError.permanent(let why) {
            // Its integration removed, the check gone: no retry can conclude it.
            context.logger.warning("the check of a failed review cannot be concluded", metadata: ["run_id": "\(runID)", "error": "\(why)"])
            return
        }
        try await workspace.write { tx in try ReviewRunStore.recordFailedConclusion(runID, conclusion.rawValue, in: tx.db) }
        context.logger.info("concluded the check of a failed review once the platform answered", metadata: ["run_id": "\(runID)"])
    }

    public static func marker(runID: Int64) -> String { "<!-- sentinel:run:\(runID) -->" }

    /// The check's conclusion: failure when a finding reaches the blocking severity; when the AI
    /// review was asked for and no provider answered (a revoked key, an outage past every
    /// fallback), the conclusion of a failed run (`review.failed_run_conclusion`), so a review the
    /// model never made does not pass as a green "No findings"; otherwise success.
    static func conclusion(blocking: Bool, aiStatus: AIReviewStatus, failedRunConclusion: CheckConclusion) -> CheckConclusion {
        if blocking { return .failure }
        if case .failed = aiStatus { return failedRunConclusion }
        // No review was made and none failed: neither pass nor fail, as a run skipped for a plan limit.
        if case .refused = aiStatus { return .neutral }
        return .success
    }

    /// The conclusion a pull request's check would get for this result under `policy` (what
    /// `sentinel review` reports for a local diff).
    public static func conclusion(of result: ReviewResult, policy: ReviewPolicy, failedRunConclusion: SentinelConfig.FailedRunConclusion) -> CheckConclusion {
        conclusion(blocking: result.reportedSeverities.contains { policy.fails($0) }, aiStatus: result.aiStatus,
                   failedRunConclusion: failedRunConclusion == .neutral ? .neutral : .failure)
    }

    /// The check's title: the number of findings, and whether the AI review failed or covered
    /// only part of the change (the summary says why).
    static func title(findings: Int, aiStatus: AIReviewStatus) -> String {
        let count = findings == 0 ? "No findings" : "\(findings) finding\(findings == 1 ? "" : "s")"
        switch aiStatus {
        case .failed: return count + "; AI review failed"
        case .partial: return count + "; AI review incomplete"
        case .refused: return count + "; AI review skipped"
        case .completed, .skipped: return count
        }
    }

    /// One stage of a run (`fetch_diff`, `policy`, `engine`, `post`): a span and its duration.
    private func stage<T>(_ name: String, isolation: isolated (any Actor)? = #isolation, _ body: () async throws -> T) async rethrows -> T {
        let start = ContinuousClock.now
        defer { metrics.reviewStage(name, duration: ContinuousClock.now - start) }
        return try await Telemetry.withSpan("review.\(name)", attributes: ["sentinel.review.stage": name]) { _ in try await body() }
    }
    public static func fingerprintMarker(_ fingerprint: String) -> String { "<!-- sentinel:fp:\(fingerprint) -->" }

    /// Text from outside Sentinel (model output, file names, configuration keys and values, error
    /// messages of providers and platforms) on its way into a review or check: the same neutralisation
    /// as model text, so it can neither imitate a run marker nor mention anyone.
    static func outside(_ text: String) -> String { ModelText.neutralize(text) }

    struct Loaded: Sendable {
        let run: ReviewRun
        let repository: RepositoryRecord
        let alreadyPosted: Set<String>
        /// What the last completed review reported open (see `carriedFindings`).
        let lastOpen: [Finding]
        let lastReviewedSHA: String?
        let planLimit: String?
        let prepared: PreparedReview?
        var plan: Plan? = nil
    }

    /// The start of a run, in the transaction that marks it running.
    private static func start(run: ReviewRun, repo: RepositoryRecord, prepared: PreparedReview?, plan: Plan?,
                              in tx: inout WorkspaceTransaction) throws -> Loaded {
        let runID = run.id
        // Checked in the transaction that marks the run running: runs of one workspace are
        // serialised here, so concurrent runs cannot together exceed the plan. A run whose
        // review is already prepared was counted when it started.
        let limit = prepared != nil ? nil : try plan.flatMap { try PlanLimits.reasonToSkip(runID: runID, plan: $0, in: tx.db, now: tx.now) }
        if limit == nil { try ReviewRunStore.markRunning(runID, in: &tx) }
        // A run skipped at the limit is past 80% too (one run's tokens can cross both at once).
        if let plan { try PlanLimits.recordSoftLimits(plan: plan, startingRun: limit == nil ? runID : nil, in: &tx) }
        let posted = try ReviewRunStore.postedFingerprints(repositoryID: run.repositoryID, prNumber: run.prNumber, excluding: runID, in: tx.db)
        let last = try ReviewRunStore.lastReviewedSHA(repositoryID: run.repositoryID, prNumber: run.prNumber, in: tx.db)
        let open = prepared != nil ? [] : try ReviewRunStore.lastOpenFindings(repositoryID: run.repositoryID, prNumber: run.prNumber, before: runID, in: tx.db)
        return Loaded(run: run, repository: repo, alreadyPosted: posted, lastOpen: open, lastReviewedSHA: last, planLimit: limit, prepared: prepared,
                      plan: plan)
    }

    public func run(_ context: JobContext) async throws {
        let runID = try context.job.decodePayload(ReviewRunJob.self).runID
        // The run's outbound calls log their lines with its id too.
        try await Telemetry.$logger.withValue(Telemetry.logger.with(["run_id": String(runID)])) {
            try await review(runID: runID, context)
        }
    }

    private func review(runID: Int64, _ context: JobContext) async throws {
        let workspace = context.workspace
        let logger = context.logger.with(["run_id": String(runID)])
        var laps = StageLaps()
        let plan = try await billing?.plan(for: workspace.id)
        /// How the start went: the run ended, another run of the pull request is posting its review, or loaded.
        enum Start: Sendable { case ended, waiting(Int64), loaded(Loaded), retried(Int64), notRetried(String) }
        var start = Start.ended
        // Another run of this pull request posting its review (it is not superseded then): this
        // run waits for it (at most about 30 s), so that what it posted counts as already posted.
        // Started beside it, this run posted the same comments again.
        for _ in 0..<120 {
            start = try await workspace.write { tx -> Start in
                // The job went dead, its run was marked failed, and an admin retried the job
                // (`sentinel jobs retry`, the console): the pull request is reviewed again by a new
                // run, once (the retry ran, found the run ended and did nothing).
                // One whose review was posted (only its check could not be concluded) is not
                // reviewed again: a second review, and a second model call, was posted.
                if let run = try ReviewRunStore.find(runID, in: tx.db), run.state == .failed, run.reviewID == nil,
                   let reason = run.reason, reason.hasPrefix(Self.deadJobReason), !reason.contains(Self.retriedAs) {
                    // Reviewed since by another run (a push, a reopening): a new run would repeat it.
                    if let since = try ReviewRunStore.completedRun(of: run, after: runID, in: tx.db) {
                        let note = "; its job retried, nothing reviewed again: run \(since) reviewed the pull request since"
                        if !reason.contains(note) {
                            try tx.db.execute(sql: "UPDATE review_runs SET reason = reason || ? WHERE id = ?", arguments: [note, runID])
                        }
                        return .ended
                    }
                    do {
                        let (retry, _) = try ReviewRunStore.requestManual(repositoryID: run.repositoryID, prNumber: run.prNumber, fullReview: true,
                                                                           by: "jobs retry of run \(runID)", correlationID: run.correlationID, in: &tx)
                        try tx.db.execute(sql: "UPDATE review_runs SET reason = reason || ? WHERE id = ?",
                                          arguments: ["; \(Self.retriedAs) \(retry)", runID])
                        return .retried(retry)
                    } catch let error as StorageError {
                        // Its repository removed or disabled since: the job goes dead again saying
                        // so, and can be retried once that is put right.
                        return .notRetried("\(error)")
                    }
                }
                guard let run = try ReviewRunStore.find(runID, in: tx.db), !run.state.isFinal,
                      let repo = try RepositoryStore.find(id: run.repositoryID, in: tx.db) else { return .ended }
                let prepared = try ReviewRunStore.prepared(runID, in: tx.db)
                // A repository disabled, or removed from its installation, since the run was asked
                // for: the run is skipped (it kept calling GitHub on every retry, and a run queued
                // before a disable was reviewed all the same, past the plan's repository limit).
                if prepared == nil, !repo.enabled || repo.removed {
                    try ReviewRunStore.finish(runID: runID, state: .skipped,
                                              reason: repo.removed ? "the repository \(repo.fullName) was removed from the installation"
                                                                   : "the repository \(repo.fullName) is disabled",
                                              label: "disabled", in: &tx)
                    return .ended
                }
                if prepared == nil, let posting = try ReviewRunStore.postingRun(repositoryID: run.repositoryID, prNumber: run.prNumber, excluding: runID,
                                                                                in: tx.db, now: tx.now) {
                    return .waiting(posting)
                }
                return .loaded(try Self.start(run: run, repo: repo, prepared: prepared, plan: plan, in: &tx))
            }
            guard case .waiting = start else { break }
            try await Task.sleep(for: .milliseconds(250))
        }
        if case .waiting(let posting) = start {
            throw JobFailure.retryAfter(5, "run \(posting) of this pull request is still posting its review")
        }
        if case .notRetried(let why) = start {
            throw JobFailure.permanent("the review of run \(runID) cannot be requested again: \(why); then retry this job")
        }
        if case .retried(let retry) = start {
            logger.notice("the dead review job was retried: the pull request is reviewed again by a new run", metadata: ["retry_run_id": "\(retry)"])
            return
        }
        guard case .loaded(let loaded) = start else {
            try await concludeEndedCheck(runID: runID, workspace: workspace, logger: logger)
            return
        }
        laps.mark("tx_start")

        let repo = loaded.repository.fullName
        var checkID = loaded.run.checkRunID
        var session: (any SourceControlSession)?
        do {
            let scm = try await connector.session(for: loaded.repository, in: workspace)
            session = scm
            laps.mark("session")
            try await execute(loaded, session: scm, checkID: &checkID, context: context, laps: &laps, logger: logger)
        } catch let error as SourceControlError {
            switch error {
            case .retryable(let message, let retryAfter):
                if context.job.attempts < context.job.maxAttempts {
                    logger.warning("platform call failed; will retry", metadata: ["error": "\(message)"])
                    if let retryAfter { throw JobFailure.retryAfter(retryAfter, message) }
                    throw error
                }
                // The check must be concluded (a required check left "in progress" holds the pull
                // request): should the platform still refuse that, the job goes dead and `runDied`
                // retries the conclusion as a job of its own. Either way the job is dead: listed
                // with the dead jobs, notified, and retried from there (it had "succeeded").
                let reason = "\(Self.deadJobReason) \(context.job.attempts) attempts: \(message)"
                // (A run that ended otherwise meanwhile, superseded by a push, leaves no dead job.)
                if try await fail(run: loaded.run, reason: reason, label: "platform_retries_exhausted", session: session,
                                  repo: repo, checkID: checkID, workspace: workspace, logger: logger, checkRequired: true) {
                    throw JobFailure.permanent(reason)
                }
            case .permanent(let message):
                try await fail(run: loaded.run, reason: message, label: "platform_refused", session: session, repo: repo, checkID: checkID, workspace: workspace, logger: logger)
            case .notReady(let message, let retryAfter):
                // Looked at again without counting attempts for a while (GitLab may take minutes to
                // prepare a large merge request's diff: counted, the run failed red after eight
                // looks, about 40 s), then as any retryable failure.
                if Date().epoch - loaded.run.createdAt < Self.notReadyPatience {
                    logger.info("platform not ready yet; looking again", metadata: ["reason": "\(message)"])
                    throw JobFailure.postpone(retryAfter, message)
                }
                if context.job.attempts < context.job.maxAttempts {
                    throw JobFailure.retryAfter(retryAfter, message)
                }
                let reason = "\(Self.deadJobReason) \(Int(Self.notReadyPatience / 60)) minutes: \(message)"
                if try await fail(run: loaded.run, reason: reason, label: "platform_retries_exhausted",
                                  session: session, repo: repo, checkID: checkID, workspace: workspace, logger: logger, checkRequired: true) {
                    throw JobFailure.permanent(reason)
                }
            }
        }
        // Any other error is retried by the queue; when the job goes dead, `runDied` ends the run.
    }

    /// A run that ended while its job waited (superseded by a newer push, skipped as closed,
    /// cancelled) after its check run was started: the check is concluded here, neutral, with the
    /// run's reason; it stayed "in progress" for good. Concluding a concluded check changes nothing.
    /// A run that had started may have started its check without recording it (its attempt
    /// crashed or timed out): that check is looked for, and concluded if there is one.
    private func concludeEndedCheck(runID: Int64, workspace: WorkspaceActor, logger: Logger) async throws {
        if try await concludePostedCheck(runID: runID, workspace: workspace, logger: logger) { return }
        let ended = try await workspace.read { db -> (ReviewRun, RepositoryRecord)? in
            guard let run = try ReviewRunStore.find(runID, in: db), run.state == .superseded || run.state == .skipped, run.reviewID == nil,
                  run.checkRunID != nil || (run.startedAt != nil && !run.headSHA.isEmpty),
                  let repo = try RepositoryStore.find(id: run.repositoryID, in: db), !repo.removed else { return nil }
            return (run, repo)
        }
        guard let (run, repository) = ended else {
            logger.info("run already finished; nothing to do")
            return
        }
        let session = try await connector.session(for: repository, in: workspace)
        var found = run.checkRunID
        if found == nil { found = try await session.earlierCheck(repository.fullName, headSHA: run.headSHA, runID: run.id) }
        guard let checkID = found else {
            logger.info("run already finished; it had started no check")
            return
        }
        try await concludeWithoutResult(run, checkID: checkID, session: session, repo: repository.fullName, workspace: workspace,
                                        reason: run.reason ?? "a newer run replaced this one")
        logger.info("run ended while its job waited; its check concluded", metadata: ["state": "\(run.state.rawValue)"])
    }

    /// A run whose review was posted and whose job then gave up because the platform would not
    /// conclude its check (it says failed): its job retried concludes the check as the posted
    /// review says. The check stayed "in progress" for good, the retry doing nothing. Returns
    /// whether the run was such a one.
    private func concludePostedCheck(runID: Int64, workspace: WorkspaceActor, logger: Logger) async throws -> Bool {
        let posted = try await workspace.read { db -> (ReviewRun, RepositoryRecord, String, PreparedReview)? in
            guard let run = try ReviewRunStore.find(runID, in: db), run.state == .failed, run.reviewID != nil, let check = run.checkRunID,
                  let prepared = try ReviewRunStore.prepared(runID, in: db),
                  let repo = try RepositoryStore.find(id: run.repositoryID, in: db), !repo.removed else { return nil }
            return (run, repo, check, prepared)
        }
        guard let (run, repository, checkID, prepared) = posted else { return false }
        let session = try await connector.session(for: repository, in: workspace)
        if try await checkOwnedByNewerRun(run, session: session, workspace: workspace) { return true }
        let conclusion = CheckConclusion(rawValue: prepared.conclusion) ?? .neutral
        try await session.completeCheck(repository.fullName, checkID: checkID, conclusion: conclusion, title: prepared.title, summary: prepared.checkSummary)
        // The run says what its check says; a `review.conclude_check` job waiting for it then stops.
        try await workspace.write { tx in try ReviewRunStore.recordPostedConclusion(runID, conclusion.rawValue, in: tx.db) }
        logger.info("the posted review's check concluded")
        return true
    }

    /// Concludes the check of a run that ended without a review of its own (superseded, skipped,
    /// cancelled): neutral, or, when an earlier run of the same commit completed failed, failed
    /// with that run named (the newest check of the name is what the platform shows: a cancelled
    /// re-run turned a failed gate green). On a platform whose check is the commit's, a newer run
    /// that has set it owns it, and nothing is done.
    /// Returns the conclusion posted, nil when the check was left to a newer run.
    @discardableResult
    private func concludeWithoutResult(_ run: ReviewRun, checkID: String, session: any SourceControlSession, repo: String,
                                       workspace: WorkspaceActor, reason: String) async throws -> CheckConclusion? {
        if try await checkOwnedByNewerRun(run, session: session, workspace: workspace) { return nil }
        let standing = try await workspace.read { db in try ReviewRunStore.standingFailure(besides: run, in: db) }
        let conclusion: CheckConclusion
        if let standing {
            try await session.completeCheck(repo, checkID: checkID, conclusion: .failure, title: "\(Self.endedTitle(run.state)); run \(standing) stands",
                                            summary: "Not posted: \(Self.outside(reason)). The review of this commit by run \(standing) failed, and stands.")
            conclusion = .failure
        } else {
            try await session.completeCheck(repo, checkID: checkID, conclusion: .neutral, title: Self.endedTitle(run.state),
                                            summary: "Not posted: \(Self.outside(reason)).")
            conclusion = .neutral
        }
        // The run says what its check says (a run still ending records it when it finishes).
        let id = run.id
        try await workspace.write { tx in try ReviewRunStore.recordEndedConclusion(id, conclusion.rawValue, in: tx.db) }
        return conclusion
    }

    /// Before a workspace is deleted, the checks of its unfinished reviews (queued, or waiting to
    /// be tried again) are concluded neutral: after it no credentials are left to do it, and a
    /// required check left "in progress" held its pull request for good. A run that is working
    /// concludes its check itself when it ends. Best effort: what a platform refuses is logged and
    /// the deletion goes on.
    public func concludeChecksBeforeDeletion(of workspace: WorkspaceActor, logger: Logger) async {
        let open: [(run: ReviewRun, repository: RepositoryRecord, checkID: String)]
        do {
            open = try await workspace.read { db in try ReviewRunStore.unfinishedChecks(in: db) }
        } catch {
            logger.warning("could not read the unfinished reviews of a workspace being deleted", metadata: ["error": "\(error)"])
            return
        }
        for (run, repository, checkID) in open {
            do {
                let session = try await connector.session(for: repository, in: workspace)
                try await session.completeCheck(repository.fullName, checkID: checkID, conclusion: .neutral, title: Self.endedTitle(.skipped),
                                                summary: "Not posted: the workspace was deleted from Sentinel.")
            } catch {
                logger.warning("could not conclude the check of a review in a workspace being deleted",
                               metadata: ["run_id": "\(run.id)", "error": "\(error)"])
            }
        }
    }

    /// On a platform where a commit has one check of Sentinel's (GitLab's status), a newer run of
    /// the same commit owns it: an older run concluding it afterwards set "success" over the newer
    /// run's result (a second `@sentinel review` turned a failed gate green).
    private func checkOwnedByNewerRun(_ run: ReviewRun, session: any SourceControlSession, workspace: WorkspaceActor) async throws -> Bool {
        guard session.checkIsPerCommit else { return false }
        return try await workspace.read { db in try ReviewRunStore.hasNewerRun(than: run, in: db) }
    }

    /// The check's title for a run that ended without posting: a newer push replaced it, or it was
    /// skipped (its pull request closed or merged, the run cancelled).
    static func endedTitle(_ state: RunState) -> String {
        state == .superseded ? "Superseded" : "Review skipped"
    }

    /// How the reason of a run whose job went dead starts, and what a retry of that job adds to it.
    public static let deadJobReason = "the review job gave up after"
    static let retriedAs = "retried as run"

    /// The `onDead` hook of `review.run`: the job went dead (retries exhausted, its lease expired
    /// on the last attempt, any error), so its run is marked failed with the reason and its check
    /// run concluded, created first if it never was. Retried as a job of its own while the platform is
    /// unreachable; on its own last attempt the run is marked failed even without the check.
    public func runDied(_ context: JobContext, _ dead: DeadJob) async throws {
        let runID = try JSONDecoder.sentinel.decode(ReviewRunJob.self, from: dead.payload).runID
        let workspace = context.workspace
        let logger = context.logger.with(["run_id": String(runID)])
        let found = try await workspace.read { db -> (ReviewRun, RepositoryRecord)? in
            guard let run = try ReviewRunStore.find(runID, in: db),
                  let repo = try RepositoryStore.find(id: run.repositoryID, in: db) else { return nil }
            return (run, repo)
        }
        guard let (run, repository) = found else { return }
        if run.state.isFinal {
            // Ended meanwhile (cancelled, superseded) while the platform refused to conclude its
            // check: concluded later, as a failed run's is (a GitLab status stayed "running").
            if run.state == .skipped || run.state == .superseded, run.conclusion == nil, run.checkRunID != nil {
                _ = try await workspace.write { tx in try tx.enqueue(Self.concludeCheckRequest(runID: runID, correlationID: run.correlationID)) }
            }
            return
        }
        let reason = "\(Self.deadJobReason) \(dead.attempts) attempt\(dead.attempts == 1 ? "" : "s"): \(dead.reason)"
        var session: (any SourceControlSession)?
        do {
            session = try await connector.session(for: repository, in: workspace)
        } catch {
            if context.job.attempts < context.job.maxAttempts { throw error }
        }
        try await fail(run: run, reason: reason, label: "job_dead", session: session, repo: repository.fullName, checkID: run.checkRunID,
                       workspace: workspace, logger: logger, checkRequired: context.job.attempts < context.job.maxAttempts)
    }

    private func execute(_ loaded: Loaded, session: any SourceControlSession, checkID: inout String?, context: JobContext,
                         laps: inout StageLaps, logger: Logger) async throws {
        let workspace = context.workspace
        var run = loaded.run
        let repo = loaded.repository.fullName
        // An earlier attempt started the run (it was running already; a released attempt counts no
        // attempt): what it created on the platform before recording it is looked for, not made twice.
        let retried = loaded.run.startedAt != nil || context.job.attempts > 1
        if let prepared = loaded.prepared {
            logger.info("posting the review prepared by an earlier attempt; the model is not called again")
            var check = checkID
            try await stage("post") {
                try await post(prepared, run: run, session: session, repo: repo, checkID: &check, workspace: workspace, lookForEarlierPost: true,
                               retried: retried, laps: &laps, logger: logger)
            }
            checkID = check
            return
        }
        // When the run knows its head commit, three calls go out side by side, one round trip
        // instead of three: the pull request, the policy file at the head commit (a fork's pull
        // request reads it again at the base, below) and the check run's start (every run ends
        // with its check concluded, skipped runs too). The check is awaited first and recorded at
        // once, so a failed fetch never leaves a created check unrecorded.
        let headConfigRef = loaded.planLimit == nil && !run.headSHA.isEmpty ? run.headSHA : nil
        async let headConfig: Result<Data?, any Error>? = {
            guard let ref = headConfigRef else { return nil }
            return await Result { try await session.fileContent(repo, path: PolicyService.fileName, ref: ref) }
        }()
        let number = run.prNumber
        async let fetchedPull = session.pullRequest(repo, number)
        if checkID == nil, !run.headSHA.isEmpty {
            checkID = try await startCheck(run, session: session, repo: repo, workspace: workspace, findEarlier: retried, laps: &laps)
        }
        let pr = try await fetchedPull
        laps.mark("fetch_pull")
        if !run.headSHA.isEmpty, !pr.headSHA.isEmpty, pr.headSHA != run.headSHA, pr.isOpen {
            // The pull request moved on before its files were read: they would be the new head's,
            // posted on this run's commit at lines of the other diff. The new head gets a run of
            // its own, as the catch-up sweep would request it (its webhook, come late, finds it).
            try await supersede(run, movedTo: pr, before: "began", repository: loaded.repository, session: session, checkID: checkID, workspace: workspace)
            logger.info("pull request moved before the run read it; the new head gets its own run", metadata: ["head": "\(pr.headSHA)"])
            return
        }
        if run.headSHA.isEmpty {
            let (id, sha) = (run.id, pr.headSHA)
            try await workspace.write { tx in
                try ReviewRunStore.setCommits(id, headSHA: sha, baseSHA: pr.baseSHA, in: tx.db)
            }
            run.headSHA = pr.headSHA
            run.baseSHA = pr.baseSHA
        }
        if let limit = loaded.planLimit {
            try await skip(run: run, reason: limit, label: "plan_limit", session: session, repo: repo, checkID: checkID, workspace: workspace, retried: retried)
            logger.info("run skipped", metadata: ["reason": "\(limit)"])
            return
        }
        let configRef = RepositoryConfigParser.revisionToRead(headSHA: run.headSHA, baseSHA: pr.baseSHA, isFromFork: pr.fromFork)
        let early = await headConfig
        let resolved = try await stage("policy") {
            let fileData: Data?
            if let early, headConfigRef == configRef {
                fileData = try early.get()
            } else {
                fileData = try await session.fileContent(repo, path: PolicyService.fileName, ref: configRef)
            }
            laps.mark("fetch_config")
            // Parsed before the workspace is read: the file is the pull request's, not the workspace's.
            let parsed = fileData.map { RepositoryConfigParser.parse(data: $0, file: PolicyService.fileName) }
            return try await workspace.read { db in
                try PolicyService.resolve(in: db, repositoryID: loaded.repository.id, parsed: parsed, fileRevision: configRef)
            }
        }
        let policy = resolved.policy
        laps.mark("policy")
        let (id, snapshot, sha, versions) = (run.id, String(decoding: resolved.effective.snapshotJSON(), as: UTF8.self),
                                             resolved.effective.sha256, resolved.versionsJSON)
        try await workspace.write { tx in
            try ReviewRunStore.recordPolicy(id, snapshot: snapshot, sha256: sha, versions: versions, in: tx.db)
        }
        laps.mark("tx_policy")
        if let (reason, label) = skipReasonAndLabel(run: run, pr: pr, policy: policy, lastReviewedSHA: loaded.lastReviewedSHA) {
            try await skip(run: run, reason: reason, label: label, session: session, repo: repo, checkID: checkID, workspace: workspace, retried: retried)
            logger.info("run skipped", metadata: ["reason": "\(reason)"])
            return
        }
        // The changed files and the model do not depend on each other: the model is chosen while
        // the files are fetched (and the check started, when the head commit was not known before).
        let reviewed = run
        async let fetchedDiff = stage("fetch_diff") {
            try await filesToReview(run: reviewed, lastReviewedSHA: loaded.lastReviewedSHA, session: session, repo: repo, logger: logger)
        }
        async let resolvedModel = models.model(for: workspace, policy: policy)
        if checkID == nil {
            checkID = try await startCheck(run, session: session, repo: repo, workspace: workspace, findEarlier: retried, laps: &laps)
        }
        let diff = try await fetchedDiff
        laps.mark("fetch_files")
        let (model, skippedReason) = await resolvedModel
        laps.mark("model_resolve")
        var options = ReviewOptions(policy: policy)
        options.builtinScope = (resolved.settingsPolicy.include, resolved.settingsPolicy.exclude)
        options.alreadyPosted = loaded.alreadyPosted
        options.aiSkippedReason = skippedReason
        options.maxTokensPerRun = maxTokensPerRun
        // Shared limits (AI budget, plan tokens) are checked before every call and each call is
        // recorded as it returns, so concurrent runs see each other's spend.
        let runID = run.id
        let gate = RunSpendGuard(workspace: workspace, runID: runID, jobAttempt: context.job.attempts, claimedAt: context.job.startedAt, repository: repo,
                                 plan: loaded.plan, cost: { [models] call in await models.cost(of: call, in: workspace) },
                                 estimate: { [models] tokens in await models.estimatedCost(ofCallWith: tokens, in: workspace) },
                                 stopReason: { db in try ReviewRunStore.stopReason(runID, in: db) })
        var result = await stage("engine") { await ReviewEngine.review(files: diff.files, options: options, model: model, gate: gate) }
        if let whole = diff.wholePullRequest {
            // An incremental review looked only at what the push touched: what the last review
            // reported open elsewhere in the pull request is still open, and still counts.
            // The engine's floor: a `min_severity` above `fail_on` hid what the check fails on.
            let carried = Self.carriedFindings(loaded.lastOpen, reviewed: diff.files, wholePullRequest: whole, pushed: diff.pushed, result: result,
                                               minSeverity: options.minSeverity)
            if !carried.isEmpty {
                result.repeated += carried
                result.summary = ReviewSummary.markdown(result: result, modelSummaries: result.modelSummaries)
            }
        }
        laps.mark("engine")
        // Every finding the review reports counts, not only those commented inline: one past the
        // comment cap, off the changed lines, or posted by an earlier run and found again is still open.
        let blocking = result.reportedSeverities.contains { policy.fails($0) }
        var body = ReviewRunner.marker(runID: run.id) + "\n## Sentinel review\n\n" + Self.outside(result.summary)
        if let notListed = diff.notListedSentence { body += "\n" + notListed + "\n" }
        if !resolved.diagnostics.isEmpty {
            // Warnings alone leave the file applied (its other keys were used): said so, not "left out".
            let errors = resolved.diagnostics.contains { $0.severity == .error }
            body += "\n\n### Configuration problems\n" + resolved.diagnostics.map { "- " + MarkdownCode.span($0.formatted) }.joined(separator: "\n")
                + (errors ? "\n\nThe file was not applied: the review used the other configuration layers."
                          : "\n\nThe file was applied without what the warnings name.")
        }
        if !resolved.effective.violations.isEmpty {
            body += "\n\n### Locked settings\n" + resolved.effective.violations.map {
                "- \(MarkdownCode.span($0.key)) is locked by the \($0.lockedBy.rawValue) settings; the \($0.attemptedBy.rawValue) value was not applied."
            }.joined(separator: "\n")
        }
        var checkSummary = Self.outside(result.coverage.sentence)
        if let notListed = diff.notListedSentence { checkSummary += " " + notListed }
        checkSummary += "\n\nAI review: \(Self.outside(result.aiStatus.description))"
        if let floor = policy.failOn { checkSummary += "\n\nFails on findings of severity \(floor.rawValue) or higher." }
        let prepared = PreparedReview(
            body: body, findings: result.findings, requestChanges: policy.requestChanges && blocking,
            conclusion: Self.conclusion(blocking: blocking, aiStatus: result.aiStatus, failedRunConclusion: failedRunConclusion).rawValue,
            title: Self.title(findings: result.reportedSeverities.count, aiStatus: result.aiStatus),
            checkSummary: checkSummary, filesReviewed: result.coverage.reviewedFiles, filesTotal: result.coverage.totalFiles,
            summary: result.summary, overLimit: result.overLimit, stillOpen: result.repeated,
            // The next push is reviewed from this head only when the AI review of this one read
            // all of it: after a failed, partial or skipped one (an outage, a spent budget) it was
            // reviewed incrementally, and what this head brought was never read by the model.
            unanchored: result.unanchored.map(Self.recorded), reviewedSHA: diff.complete && result.aiStatus == .completed ? run.headSHA : nil)
        // Usage and the prepared review in one transaction: from here on a retry posts this
        // review and never calls the model again.
        let preparedBefore = try await recordUsage(of: result, prepared: prepared, runID: run.id, repository: loaded.repository.fullName,
                                                   job: context.job, plan: loaded.plan, in: workspace)
        laps.mark("tx_usage")
        // Nothing is posted before the prepared review is stored (durably), so when no attempt had
        // stored one before this one, no review of this run can exist yet: no need to look for it.
        var check = checkID
        try await stage("post") {
            try await post(prepared, run: run, session: session, repo: repo, checkID: &check, workspace: workspace,
                           lookForEarlierPost: preparedBefore, retried: retried, laps: &laps, logger: logger)
        }
        checkID = check
        logger.info("run completed", metadata: ["findings": "\(result.findings.count)", "conclusion": "\(prepared.conclusion)",
                                                 "ai": "\(result.aiStatus.description)", "stages_ms": "\(laps)",
                                                 "model_calls": "\(result.usage.count)",
                                                 "model_call_ms": "\(result.usage.map { String($0.durationMs) }.joined(separator: " "))"])
    }

    /// Starts the run's check run on the platform and records its id on the run.
    /// Starts a run's check; with `findEarlier` (an earlier attempt of its job may have started
    /// it without recording it), the one that attempt started, if there is one.
    static func startCheck(_ repo: String, headSHA: String, runID: Int64, session: any SourceControlSession, findEarlier: Bool) async throws -> String {
        if findEarlier, let earlier = try await session.earlierCheck(repo, headSHA: headSHA, runID: runID) { return earlier }
        return try await session.startCheck(repo, headSHA: headSHA, runID: runID)
    }

    /// `findEarlier`: the job's earlier attempt may have started it (then that one is used).
    private func startCheck(_ run: ReviewRun, session: any SourceControlSession, repo: String, workspace: WorkspaceActor, findEarlier: Bool,
                            laps: inout StageLaps) async throws -> String {
        let created = try await Self.startCheck(repo, headSHA: run.headSHA, runID: run.id, session: session, findEarlier: findEarlier)
        laps.mark("check_start")
        let id = run.id
        try await workspace.write { tx in
            try ReviewRunStore.setCheckRun(id, created, in: tx.db)
        }
        laps.mark("tx_check")
        return created
    }

    struct DiffToReview: Sendable {
        var files: [DiffFile]
        /// Every changed file was listed by the platform (else `last_reviewed_sha` does not move).
        var complete: Bool
        /// Names (or counts) the files the platform did not list, for the coverage sentence.
        var notListedSentence: String?
        /// The pull request's whole diff when `files` is restricted to what a push touched; nil for
        /// a review of the whole pull request.
        var wholePullRequest: [DiffFile]? = nil
        /// The push's own diff (last reviewed commit → head) when `files` is restricted to it: it
        /// moves the last review's findings to the lines they are on at the head.
        var pushed: [DiffFile]? = nil
    }

    /// The last review's open findings that an incremental review carries: those whose file is
    /// still changed by the pull request and whose line the review did not look at again (a
    /// finding in re-reviewed lines and not found again was fixed; one whose file left the pull
    /// request is gone), less those the review reported itself (by fingerprint).
    /// A finding on the head side is numbered on the last reviewed commit: `pushed` (that commit →
    /// head) moves it to its line at the head, and a finding in lines the push changed was looked
    /// at again. Compared unmoved, a finding below inserted lines fell into a grown hunk and counted
    /// as looked at again (and dropped), or was shown at its old line.
    static func carriedFindings(_ lastOpen: [Finding], reviewed: [DiffFile], wholePullRequest: [DiffFile], pushed: [DiffFile]? = nil,
                                result: ReviewResult, minSeverity: Severity) -> [Finding] {
        var seen = Set((result.findings + result.overLimit + result.repeated).map(\.fingerprint)
                       + result.unanchored.map { Self.recorded($0).fingerprint })
        let stillChanged = Set(wholePullRequest.filter { $0.status != .deleted }.map(\.path))
        var reviewedByPath: [String: DiffFile] = [:]
        for file in reviewed where reviewedByPath[file.path] == nil { reviewedByPath[file.path] = file }
        var pushedByPath: [String: DiffFile] = [:]
        for file in pushed ?? [] where pushedByPath[file.path] == nil { pushedByPath[file.path] = file }
        return lastOpen.compactMap { finding in
            guard finding.severity >= minSeverity, stillChanged.contains(finding.path), seen.insert(finding.fingerprint).inserted else { return nil }
            guard let file = reviewedByPath[finding.path] else { return finding }
            if file.hunks.isEmpty { return nil }
            if finding.side == .right, let push = pushedByPath[finding.path] {
                guard let moved = Self.moved(finding, by: push) else { return nil }
                return moved
            }
            let lookedAgain = file.hunks.contains { hunk in
                let (start, count) = finding.side == .left ? (hunk.oldStart, hunk.oldCount) : (hunk.newStart, hunk.newCount)
                return (start..<(start + max(count, 1))).contains(finding.line)
            }
            return lookedAgain ? nil : finding
        }
    }

    /// A head-side finding of the last reviewed commit at its line after `push`; nil when the push
    /// changed its lines (the review looked at them again).
    static func moved(_ finding: Finding, by push: DiffFile) -> Finding? {
        let first = finding.startLine ?? finding.line
        var shift = 0
        for hunk in push.hunks.sorted(by: { $0.oldStart < $1.oldStart }) {
            if hunk.oldCount == 0 {
                // Lines inserted after old line `oldStart`: before the finding, it moves; inside
                // its range, its lines changed.
                guard finding.line > hunk.oldStart else { break }
                if hunk.oldStart >= first { return nil }
                shift += hunk.newCount
                continue
            }
            let end = hunk.oldStart + hunk.oldCount
            if end <= first {
                shift += hunk.newCount - hunk.oldCount
            } else if hunk.oldStart > finding.line {
                break
            } else {
                return nil
            }
        }
        var moved = finding
        moved.line += shift
        moved.startLine = finding.startLine.map { $0 + shift }
        return moved
    }

    /// The PR's own diff (base…head), restricted on an incremental review to the hunks the push
    /// touched: upstream changes merged in by "Update branch" or a rebase are not in the PR's diff
    /// and so are never reviewed, and every comment is anchored on the PR diff. A force-push (the
    /// old head is not an ancestor) or a comparison the platform truncated falls back to the full diff.
    func filesToReview(run: ReviewRun, lastReviewedSHA: String?, session: any SourceControlSession, repo: String,
                       logger: Logger) async throws -> DiffToReview {
        let pull = try await session.changedFiles(repo, run.prNumber)
        var files = pull.files
        var restricted = false
        var notListed: [String] = []
        var pushed: [DiffFile]?
        if Self.effectiveTrigger(run, lastReviewedSHA: lastReviewedSHA) == "push", !run.fullReview, let last = lastReviewedSHA, !last.isEmpty, last != run.headSHA {
            if let comparison = try await session.changedFiles(repo, from: last, to: run.headSHA) {
                if comparison.truncated {
                    logger.info("the comparison with the last reviewed commit is truncated; reviewing the whole pull request")
                } else {
                    files = Self.restrict(pull.files, to: comparison.files)
                    pushed = comparison.files
                    restricted = true
                    if pull.unlisted > 0 {
                        let listed = Set(pull.files.map(\.path))
                        notListed = comparison.files.map(\.path).filter { !listed.contains($0) }
                    }
                }
            } else {
                logger.info("the last reviewed commit is not an ancestor of the head (force-push); reviewing the whole pull request")
            }
        }
        let whole = restricted ? pull.files : nil
        guard pull.unlisted > 0 else {
            return DiffToReview(files: files, complete: true, notListedSentence: nil, wholePullRequest: whole, pushed: pushed)
        }
        // A count the platform gives only as "more than" is not made exact ("1000+" read as 1,001).
        var sentence = pull.unlistedIsLowerBound
            ? "\(session.platformName) listed \(pull.files.count) of the pull request's changed files and says there are more "
                + "(at least \(pull.files.count + pull.unlisted), how many more it does not say); the others were not reviewed"
            : "\(session.platformName) listed \(pull.files.count) of the pull request's \(pull.files.count + pull.unlisted) changed files; "
                + "the other \(pull.unlisted) were not reviewed"
        if !notListed.isEmpty {
            let names = notListed.prefix(20).map(MarkdownCode.span).joined(separator: ", ")
            sentence += ", among them \(names)" + (notListed.count > 20 ? " and \(notListed.count - 20) more" : "")
        }
        return DiffToReview(files: files, complete: false, notListedSentence: Self.outside(sentence + "."), wholePullRequest: whole, pushed: pushed)
    }

    /// The hunks of the PR's diff that a push touched: a PR hunk is kept when its span on the
    /// head side overlaps a hunk of the comparison (both are numbered on the head commit).
    static func restrict(_ pull: [DiffFile], to pushed: [DiffFile]) -> [DiffFile] {
        var byPath: [String: DiffFile] = [:]
        for file in pushed where byPath[file.path] == nil { byPath[file.path] = file }
        func span(_ hunk: DiffHunk) -> Range<Int> {
            hunk.newCount > 0 ? hunk.newStart..<(hunk.newStart + hunk.newCount) : hunk.newStart..<(hunk.newStart + 1)
        }
        return pull.compactMap { file in
            guard let change = byPath[file.path] else { return nil }
            if file.hunks.isEmpty || change.hunks.isEmpty || file.status == .deleted || change.status == .deleted { return file }
            let touched = change.hunks.map(span)
            let kept = file.hunks.filter { hunk in touched.contains { $0.overlaps(span(hunk)) } }
            return kept.isEmpty ? nil : file.withHunks(kept)
        }
    }

    /// Posts a prepared review once, records its findings as posted, concludes the check and
    /// completes the run. `lookForEarlierPost`: an earlier attempt (or one running beside this
    /// one) had stored the prepared review, so it may have posted it: look for the run's marker first.
    private func post(_ prepared: PreparedReview, run: ReviewRun, session: any SourceControlSession, repo: String, checkID: inout String?,
                      workspace: WorkspaceActor, lookForEarlierPost: Bool, retried: Bool, laps: inout StageLaps, logger: Logger) async throws {
        var prepared = prepared
        let id = run.id
        // A newer push may have superseded this run while it worked: then it posts nothing.
        let (stored, repository) = try await workspace.read { db in
            (try ReviewRunStore.find(id, in: db), try RepositoryStore.find(id: run.repositoryID, in: db))
        }
        // Its integration removed (or the repository taken out of the installation) while it
        // worked: the credentials it still holds post nothing more than the check's end. It
        // posted its review after an admin had removed the integration.
        if let stored, !stored.state.isFinal, stored.reviewID == nil, let repository, repository.removed {
            let reason = "the repository \(repository.fullName) was removed while the review ran (its integration removed, or taken out of the installation)"
            if let checkID {
                try? await session.completeCheck(repo, checkID: checkID, conclusion: .neutral, title: "Review skipped", summary: "Not posted: \(reason).")
            }
            _ = try await workspace.write { tx in
                try ReviewRunStore.finish(runID: id, state: .skipped, reason: reason, label: "disabled", in: &tx)
            }
            logger.info("repository removed while running; nothing posted")
            return
        }
        if let current = stored, current.state.isFinal, current.reviewID == nil {
            if let checkID {
                // Closed or merged, or cancelled, while it ran: "Review skipped", as for a run that
                // ended while its job waited; it said "Superseded" with the closed reason beneath.
                try await concludeWithoutResult(current, checkID: checkID, session: session, repo: repo, workspace: workspace,
                                                reason: current.reason ?? "a newer run replaced this one")
            }
            logger.info("run ended while running; nothing posted", metadata: ["state": "\(current.state.rawValue)"])
            return
        }
        laps.mark("read_state")
        if checkID == nil {
            checkID = try await startCheck(run, session: session, repo: repo, workspace: workspace, findEarlier: retried, laps: &laps)
        }
        // Post once: a stored id or a review of ours starting with this run's marker means it is already there.
        let reviewID: String
        if let existing = run.reviewID {
            reviewID = existing
        } else if lookForEarlierPost, let found = try await session.findReview(repo, run.prNumber, marker: ReviewRunner.marker(runID: run.id)) {
            reviewID = found
        } else {
            laps.mark("find_review")
            // A job whose lease was lost is cancelled: it must not post what another attempt owns.
            try Task.checkCancellation()
            do {
                do {
                    reviewID = try await session.postReview(repo, run.prNumber, headSHA: run.headSHA, body: Self.reviewBody(prepared, runID: id, session: session),
                                                            comments: prepared.inlineMovedToSummary ? []
                                                                : prepared.findings.map { Self.comment($0, limit: session.maxTextLength) },
                                                            requestChanges: prepared.requestChanges)
                } catch let rejected as ReviewCommentsRejected {
                    // The platform does not say which comment it could not place: post once more with
                    // every finding in the review body, stored first so a retry posts the same thing.
                    logger.warning("\(session.platformName) refused the inline comments; posting them in the review body", metadata: ["error": "\(rejected.message)"])
                    prepared.inlineMovedToSummary = true
                    try await store(prepared, runID: id, in: workspace)
                    try Task.checkCancellation()
                    reviewID = try await session.postReview(repo, run.prNumber, headSHA: run.headSHA, body: Self.reviewBody(prepared, runID: id, session: session),
                                                            comments: [], requestChanges: prepared.requestChanges)
                }
            } catch let outdated as ReviewedCommitOutdated {
                // (The run's repository record is never deleted, only marked removed.)
                guard let repository else { throw SourceControlError.permanent(outdated.message) }
                try await supersedeOutdated(run, outdated, repository: repository, session: session, checkID: checkID, workspace: workspace, logger: logger)
                return
            }
        }
        laps.mark("post_review")
        let (record, posted) = (prepared, run)
        // The check is concluded while the posted review is recorded: neither waits for the other.
        // The run completes only once both are done, so a retry after either failed does both again
        // (the review is then found by its id or marker, and concluding a check twice is harmless).
        // A newer run of the same commit owns a status keyed by commit (GitLab): this run's result,
        // set after it, replaced the newer run's (a red gate turned green).
        let concludedCheck = try await checkOwnedByNewerRun(run, session: session, workspace: workspace) ? nil : checkID
        async let concluded: Void = {
            guard let concludedCheck else { return }
            try await session.completeCheck(repo, checkID: concludedCheck, conclusion: CheckConclusion(rawValue: record.conclusion) ?? .neutral,
                                            title: record.title, summary: record.checkSummary)
        }()
        try await workspace.write { tx in
            // Exactly the findings of the posted review; `posted` only for those on a diff line.
            try ReviewRunStore.recordPosted(posted, reviewID: reviewID, findings: record.findings, posted: !record.inlineMovedToSummary,
                                            inSummary: (record.overLimit ?? []) + (record.unanchored ?? []), in: tx.db)
        }
        laps.mark("tx_posted")
        try await concluded
        if checkID != nil { laps.mark("check_complete") }
        try await workspace.write { tx in try ReviewRunStore.complete(posted, prepared: record, in: &tx) }
        laps.mark("tx_complete")
    }

    /// The platform would not take a review of the run's commit because the pull request moved on
    /// (a force push): the run is superseded by the new head. Should the pull request still be at
    /// the run's commit, the refusal is a failure.
    private func supersedeOutdated(_ run: ReviewRun, _ outdated: ReviewedCommitOutdated, repository: RepositoryRecord, session: any SourceControlSession,
                                   checkID: String?, workspace: WorkspaceActor, logger: Logger) async throws {
        let pr = try await session.pullRequest(repository.fullName, run.prNumber)
        guard pr.headSHA != run.headSHA else { throw SourceControlError.permanent(outdated.message) }
        try await supersede(run, movedTo: pr, before: "was posted", repository: repository, session: session, checkID: checkID, workspace: workspace)
        logger.info("pull request moved while the run worked; nothing posted", metadata: ["head": "\(pr.headSHA)", "error": "\(outdated.message)"])
    }

    /// Ends a run whose pull request moved to another head `before` its review began or was posted:
    /// its check says so, and the new head of an open pull request gets its own run (should its
    /// webhook never come, nothing else would review it until the catch-up sweep).
    private func supersede(_ run: ReviewRun, movedTo pr: PullRequestInfo, before what: String, repository: RepositoryRecord,
                           session: any SourceControlSession, checkID: String?, workspace: WorkspaceActor) async throws {
        let reason = "the pull request moved to \(pr.headSHA.prefix(12)) before the review of \(run.headSHA.prefix(12)) \(what)"
        // The check first: should that call fail, the job's retry finds the run still running and gets here again.
        if let checkID {
            let verb = what == "began" ? "reviewed" : "posted"
            try await session.completeCheck(repository.fullName, checkID: checkID, conclusion: .neutral, title: "Superseded",
                                            summary: "Not \(verb): \(reason)" + (pr.isOpen ? "; that commit gets its own review." : "."))
        }
        let (id, concluded) = (run.id, checkID != nil)
        try await workspace.write { tx in
            try ReviewRunStore.supersede(run, movedTo: pr, repository: repository, reason: reason, in: &tx)
            // The run says what its check says (it said nothing: a neutral "Superseded" check beside no conclusion).
            if concluded { try ReviewRunStore.recordEndedConclusion(id, CheckConclusion.neutral.rawValue, in: tx.db) }
        }
    }

    /// The review body as posted: with the inline comments refused, the findings are listed in it
    /// instead; cut to what the platform takes (the run's marker starts it, so it stays).
    static func reviewBody(_ prepared: PreparedReview, runID: Int64, session: any SourceControlSession) -> String {
        PlatformText.fitted(reviewBody(prepared, platform: session.platformName), limit: session.maxTextLength, notice: cutReview(runID: runID),
                            reread: rereadCutBody)
    }

    /// A review body cut short, read again as the prose and code it now is: its first line, the
    /// run's marker, is kept as it is.
    static func rereadCutBody(_ start: String) -> String {
        guard start.hasPrefix("<!-- sentinel:run:"), let lineEnd = start.firstIndex(of: "\n") else { return outside(start) }
        return String(start[..<lineEnd]) + outside(String(start[lineEnd...]))
    }

    static func reviewBody(_ prepared: PreparedReview, platform: String) -> String {
        guard prepared.inlineMovedToSummary, !prepared.findings.isEmpty else { return prepared.body }
        var body = prepared.body + "\n\n### Findings \(platform) could not place inline\n"
        for f in prepared.findings {
            let location = f.startLine.map { "\(f.path):\($0)-\(f.line)" } ?? "\(f.path):\(f.line)"
            var text = Fingerprint.normalize(f.body)
            if text.count > 300 { text = String(text.prefix(299)) + "…" }
            body += outside("- **\(f.severity.rawValue)** \(MarkdownCode.span(location)) \(f.category): \(f.title)" + (text == f.title ? "" : " — " + text)) + "\n"
        }
        return body
    }

    private func store(_ prepared: PreparedReview, runID: Int64, in workspace: WorkspaceActor) async throws {
        try await workspace.write { tx in try ReviewRunStore.storePrepared(prepared, runID: runID, in: tx.db) }
    }

    /// Records the engine's AI calls with the prepared review, before anything is posted: a call
    /// costs money whether or not this attempt of the job gets to finish. The engine's gate already
    /// recorded each call as it returned; the key (run, job attempt, chunk, attempt) makes this
    /// record nothing twice.
    /// Returns whether a prepared review was stored already (by another attempt of the job).
    private func recordUsage(of result: ReviewResult, prepared: PreparedReview, runID: Int64, repository: String, job: JobRecord,
                             plan: Plan?, in workspace: WorkspaceActor) async throws -> Bool {
        let (jobAttempt, claimedAt) = (job.attempts, job.startedAt)
        // The spend gate records each call as it returns; only the calls it could not record
        // (none, usually) need their cost looked up (a read of the provider) here.
        let recorded = Set(try await workspace.read { db in
            try String.fetchAll(db, sql: "SELECT call_key FROM usage_records WHERE run_id = ?", arguments: [runID])
        })
        var unrecorded: [(call: ModelCallRecord, costUSD: Double)] = []
        for call in result.usage where !recorded.contains(UsageLedger.callKey(runID: runID, jobAttempt: jobAttempt, claimedAt: claimedAt, call: call)) {
            unrecorded.append((call, await models.cost(of: call, in: workspace)))
        }
        let calls = unrecorded
        return try await workspace.write { tx in
            let earlier = try Bool.fetchOne(tx.db, sql: "SELECT prepared_review IS NOT NULL FROM review_runs WHERE id = ?", arguments: [runID]) ?? false
            try UsageLedger.record(calls, runID: runID, repository: repository, jobAttempt: jobAttempt, claimedAt: claimedAt, in: &tx)
            // The run's own tokens, counted now: a run that takes the workspace past 80% of its
            // monthly tokens (or past all of them at once) says so (it was looked at only when a run started).
            if let plan { try PlanLimits.recordSoftLimits(plan: plan, startingRun: nil, in: &tx) }
            try ReviewRunStore.storePrepared(prepared, runID: runID, in: tx.db)
            // What is left is posting the results (SPEC §4: critical): should this attempt fail or
            // its worker die, the retry goes ahead of the runs still waiting for a model.
            try JobQueue.raisePriority(jobID: job.id, to: .critical, in: tx.db)
            return earlier
        }
    }

    /// A finding not on a changed line as the run records it: where the model put it, without a
    /// suggestion (nothing was placed), its fingerprint from its text alone.
    static func recorded(_ raw: RawFinding) -> Finding {
        Finding(path: raw.path, startLine: raw.startLine, line: raw.line, side: raw.side, severity: raw.severity, category: raw.category,
                title: raw.title, body: raw.body, suggestion: nil, source: .ai,
                fingerprint: Fingerprint.of(path: raw.path, category: raw.category, title: raw.title, anchorText: ""))
    }

    /// The webhook trigger a run stands for: a catch-up run (`reconcile`) is the push a missed
    /// `synchronize` would have reviewed when the PR was reviewed before, else the missed `opened`.
    static func effectiveTrigger(_ run: ReviewRun, lastReviewedSHA: String?) -> String {
        guard run.trigger == ReviewRunStore.reconcileTrigger else { return ReviewRunStore.event(ofTrigger: run.trigger) }
        return (lastReviewedSHA ?? "").isEmpty ? "opened" : "push"
    }

    func skipReason(run: ReviewRun, pr: PullRequestInfo, policy: ReviewPolicy, lastReviewedSHA: String? = nil) -> String? {
        skipReasonAndLabel(run: run, pr: pr, policy: policy, lastReviewedSHA: lastReviewedSHA)?.reason
    }

    /// Why a run is skipped, and the same as a bounded metric label.
    func skipReasonAndLabel(run: ReviewRun, pr: PullRequestInfo, policy: ReviewPolicy, lastReviewedSHA: String? = nil) -> (reason: String, label: String)? {
        let manual = run.trigger.hasPrefix("command:") || run.trigger.hasPrefix("manual:")
        if !pr.isOpen { return (ReviewRunStore.closedReason, "closed") }
        if !policy.reviewEnabled { return ("reviews are turned off by configuration (review.enabled)", "disabled") }
        if manual { return nil }
        if pr.isDraft && !policy.autoReviewDrafts { return (ReviewRunStore.draftReason, "draft") }
        let trigger = Self.effectiveTrigger(run, lastReviewedSHA: lastReviewedSHA)
        if trigger == "push" && !policy.autoReviewOnPush { return ("pushes are not reviewed automatically (review.auto_review.on_push)", "push_not_reviewed") }
        // A new target branch changes the diff of a reviewed pull request as a push does (GitLab
        // retargets stacked merge requests by itself): it was reviewed with automatic reviews
        // turned off. One never reviewed (moved right after it was opened, superseding that
        // review) is the opening's review, as the catch-up sweep's run is.
        if trigger.hasPrefix("retargeted:") {
            let reviewed = !(lastReviewedSHA ?? "").isEmpty
            if reviewed && !policy.autoReviewOnPush {
                return ("a change of the target branch is reviewed as a push is, and pushes are not reviewed automatically (review.auto_review.on_push)",
                        "push_not_reviewed")
            }
            if !reviewed && !policy.autoReviewOnOpen {
                return ("opened pull requests are not reviewed automatically (review.auto_review.on_open)", "open_not_reviewed")
            }
        }
        if ["opened", "reopened", "ready_for_review"].contains(trigger) && !policy.autoReviewOnOpen {
            return ("opened pull requests are not reviewed automatically (review.auto_review.on_open)", "open_not_reviewed")
        }
        return nil
    }

    /// A finding as an inline comment of at most `limit` characters (the platform's
    /// `maxTextLength`): a suggested change that would not fit is left out whole (never cut), then
    /// the text is cut; the fingerprint marker always ends it.
    static func comment(_ finding: Finding, limit: Int = .max) -> ReviewComment {
        let text = outside("**\(finding.severity.rawValue.capitalized) · \(finding.category)**: \(finding.title)\n\n\(finding.body)")
        var suggested = ""
        if let suggestion = finding.suggestion, finding.side == .right {
            // A fence longer than any backtick run inside, so the suggestion cannot close it early.
            let longest = suggestion.split(whereSeparator: { $0 != "`" }).map(\.count).max() ?? 0
            let fence = String(repeating: "`", count: max(3, longest + 1))
            suggested = "\n\n\(fence)suggestion\n\(suggestion)\n\(fence)"
        }
        let marker = "\n\n" + fingerprintMarker(finding.fingerprint)
        if PlatformText.length(text) + PlatformText.length(suggested) + PlatformText.length(marker) > limit, !suggested.isEmpty {
            suggested = "\n\n" + omittedLongSuggestion
        }
        let room = limit == .max ? .max : limit - PlatformText.length(suggested) - PlatformText.length(marker)
        let body = PlatformText.fitted(text, limit: room, notice: cutComment, reread: outside) + suggested + marker
        return ReviewComment(path: finding.path, line: finding.line, side: finding.side, startLine: finding.startLine, body: body)
    }

    static let omittedLongSuggestion = "_(A suggested change was left out here: with it this comment would be longer than the platform takes.)_"
    static let cutComment = "_(Cut here: this comment is longer than the platform takes.)_"

    /// The end of a review body cut to the platform's length; the run's page in Sentinel has all of it.
    static func cutReview(runID: Int64) -> String {
        "_(Cut here: this review is longer than the platform takes; run \(runID) in Sentinel has all of it.)_"
    }

    private func skip(run: ReviewRun, reason: String, label: String, session: any SourceControlSession, repo: String, checkID: String?,
                      workspace: WorkspaceActor, retried: Bool) async throws {
        var check = checkID
        let owned = try await checkOwnedByNewerRun(run, session: session, workspace: workspace)
        if check == nil, !run.headSHA.isEmpty, !owned {
            check = try await Self.startCheck(repo, headSHA: run.headSHA, runID: run.id, session: session, findEarlier: retried)
        }
        var posted: CheckConclusion?
        if let check, !owned {
            var skipped = run
            skipped.state = .skipped
            posted = try await concludeWithoutResult(skipped, checkID: check, session: session, repo: repo, workspace: workspace, reason: reason)
        }
        // The conclusion the check says (failed when an earlier review of the commit failed).
        let (id, stored, conclusion) = (run.id, check, (posted ?? .neutral).rawValue)
        try await workspace.write { tx in
            try ReviewRunStore.setCheckRun(id, stored, in: tx.db)
            try ReviewRunStore.finish(runID: id, state: .skipped, reason: reason, label: label, conclusion: conclusion, in: &tx)
        }
    }

    /// Ends a run `failed` with its reason. The check run is concluded with the configured
    /// conclusion of a failed run, created first when it never was, so a required check never
    /// stays pending. With `checkRequired`, a platform error concluding the check is thrown (the
    /// caller retries) instead of being logged.
    /// Returns whether it failed the run (false: the run had ended otherwise meanwhile).
    @discardableResult
    private func fail(run: ReviewRun, reason: String, label: String, session: (any SourceControlSession)?, repo: String, checkID: String?,
                      workspace: WorkspaceActor, logger: Logger, checkRequired: Bool = false) async throws -> Bool {
        // Ended meanwhile (superseded by a newer run, cancelled): its check is concluded as such, not
        // failed on whatever head the pull request has now (a superseded re-run that had not learnt
        // its head turned the newer run's green gate red).
        if let stored = try await workspace.read({ db in try ReviewRunStore.find(run.id, in: db) }), stored.state.isFinal {
            var found = stored.checkRunID ?? checkID
            // Started unrecorded by this attempt or an earlier one (a timeout GitHub carried out).
            if let session, found == nil, stored.startedAt != nil, !stored.headSHA.isEmpty {
                found = try? await session.earlierCheck(repo, headSHA: stored.headSHA, runID: stored.id)
            }
            if let session, let check = found {
                do {
                    try await concludeWithoutResult(stored, checkID: check, session: session, repo: repo, workspace: workspace,
                                                    reason: stored.reason ?? "a newer run replaced this one")
                } catch {
                    // The platform still refuses: retried (the job goes on) where the check must end,
                    // and on the last attempt left to a job of its own.
                    if checkRequired { throw error }
                    if stored.conclusion == nil, stored.state == .skipped || stored.state == .superseded {
                        let correlationID = stored.correlationID
                        try await workspace.write { tx in
                            if try ReviewRunStore.find(stored.id, in: tx.db)?.checkRunID == nil { try ReviewRunStore.setCheckRun(stored.id, check, in: tx.db) }
                            _ = try tx.enqueue(Self.concludeCheckRequest(runID: stored.id, correlationID: correlationID))
                        }
                    }
                }
            }
            logger.info("run ended before it failed; its end stands", metadata: ["state": "\(stored.state.rawValue)", "error": "\(reason)"])
            return false
        }
        logger.error("run failed", metadata: ["reason": "\(reason)"])
        let (runID, conclusion) = (run.id, failedRunConclusion)
        // Stored only when the platform has it: with no session (its integration removed, its
        // credentials gone) the check stayed in progress while the run said it failed.
        var concluded = false
        var knownCheck = run.checkRunID ?? checkID
        if let session, try await !checkOwnedByNewerRun(run, session: session, workspace: workspace) {
            do {
                var check = checkID
                if check == nil {
                    var headSHA = run.headSHA
                    if headSHA.isEmpty { headSHA = try await session.pullRequest(repo, run.prNumber).headSHA }
                    // (Earlier attempts of the job may have started it without recording it.)
                    let created = try await Self.startCheck(repo, headSHA: headSHA, runID: runID, session: session, findEarlier: true)
                    check = created
                    knownCheck = created
                    try await workspace.write { tx in
                        try ReviewRunStore.setCheckRun(runID, created, in: tx.db)
                    }
                }
                if let check {
                    try await session.completeCheck(repo, checkID: check, conclusion: conclusion, title: "Review failed",
                                                    summary: "Sentinel could not finish this review: \(Self.outside(reason))")
                    concluded = true
                }
            } catch {
                if checkRequired { throw error }
                logger.error("could not conclude the check run of a failed review", metadata: ["error": "\(error)"])
            }
        }
        let stored = concluded ? conclusion.rawValue : nil
        // A check the platform has and did not conclude (it was down, or refused) is concluded
        // later by a job of its own: it had stayed in progress for good.
        let later = concluded ? nil : knownCheck
        let correlationID = run.correlationID
        return try await workspace.write { tx in
            let finished = try ReviewRunStore.finish(runID: runID, state: .failed, reason: reason, label: label, conclusion: stored, in: &tx)
            if finished, let later {
                // (A check made by this attempt and not recorded is recorded now, for the job to find.)
                if try ReviewRunStore.find(runID, in: tx.db)?.checkRunID == nil { try ReviewRunStore.setCheckRun(runID, later, in: tx.db) }
                _ = try tx.enqueue(Self.concludeCheckRequest(runID: runID, correlationID: correlationID))
            }
            return finished
        }
    }
}

/// Wall time of a run's stages in the order they ran, written on the "run completed" log line
/// (`stages_ms`, e.g. `tx_start=0.41 session=0.02 fetch_pull=0.63 …`): where a review's time goes,
/// read by `sentinel-bench review` and by an operator looking at one slow run. The laps add up to
/// the run's wall time: a stage that ran beside earlier ones (the pull request and its policy file
/// beside the check's start; the model beside the files; the check's conclusion beside recording
/// the review) shows only the time the run still waited for it once those were done.
struct StageLaps: Sendable, CustomStringConvertible {
    private var last = ContinuousClock.now
    private(set) var laps: [(stage: String, duration: Duration)] = []

    /// Ends the stage `stage`: the time since the previous mark (or since the run started).
    mutating func mark(_ stage: String) {
        let now = ContinuousClock.now
        laps.append((stage, now - last))
        last = now
    }

    var description: String {
        laps.map { lap in
            let ms = Double(lap.duration.components.seconds) * 1000 + Double(lap.duration.components.attoseconds) / 1e15
            return "\(lap.stage)=\(String(format: "%.2f", ms))"
        }.joined(separator: " ")
    }
}
