import Foundation
import GRDB

public enum RunState: String, Codable, Sendable, CaseIterable {
    case queued, running, completed, failed, skipped, superseded
    public var isFinal: Bool { self != .queued && self != .running }
}

/// A review of one pull request at one head commit for one trigger (SPEC §3).
public struct ReviewRun: Codable, Sendable, Equatable, FetchableRecord {
    public static let databaseColumnDecodingStrategy = DatabaseColumnDecodingStrategy.sentinel
    public var id: Int64
    public var repositoryID: Int64
    public var prNumber: Int
    public var headSHA: String
    public var baseSHA: String?
    public var trigger: String
    public var fullReview: Bool
    public var state: RunState
    public var reason: String?
    public var correlationID: String?
    public var createdAt: Double
    public var startedAt: Double?
    public var finishedAt: Double?
    public var checkRunID: String?
    public var reviewID: String?
    public var conclusion: String?
    public var filesReviewed: Int?
    public var filesTotal: Int?
    public var policySnapshot: String?
    public var policySHA256: String?
    public var policyVersions: String?
    public var summary: String?
}

extension RunState: DatabaseValueConvertible {}

/// The payload of a `review.run` job.
public struct ReviewRunJob: Codable, Sendable {
    public var runID: Int64
}

public struct RunEventPayload: Codable, Sendable {
    public var runID: Int64
    public var repository: String
    /// `github` or `gitlab` (absent in events stored before it was recorded).
    public var platform: String?
    public var prNumber: Int
    public var headSHA: String
    public var trigger: String
    public var state: String?
    public var reason: String?
    public var findings: Int?
    public var durationMs: Int?
    /// Findings by severity and category, so analytics can roll them up from the events alone.
    public var findingCounts: [FindingCount]?

    public init(runID: Int64, repository: String, platform: String? = nil, prNumber: Int, headSHA: String, trigger: String, state: String? = nil,
                reason: String? = nil, findings: Int? = nil, durationMs: Int? = nil, findingCounts: [FindingCount]? = nil) {
        self.runID = runID
        self.repository = repository
        self.platform = platform
        self.prNumber = prNumber
        self.headSHA = headSHA
        self.trigger = trigger
        self.state = state
        self.reason = reason
        self.findings = findings
        self.durationMs = durationMs
        self.findingCounts = findingCounts
    }
}

public struct FindingCount: Codable, Sendable, Equatable {
    public var severity: String
    public var category: String
    public var count: Int

    public init(severity: String, category: String, count: Int) {
        self.severity = severity
        self.category = category
        self.count = count
    }
}

/// Run records and their state changes, each with its event in the same transaction.
public enum ReviewRunStore {
    public static let jobKind = "review.run"

    /// The trigger of runs the catch-up sweep creates for an open pull request whose head has no run.
    public static let reconcileTrigger = "reconcile"
    /// Webhook triggers a catch-up run stands in for: one of these for a head that a catch-up run
    /// already covers (a webhook delivered late, or redelivered) creates nothing.
    public static let automaticTriggers: Set<String> = ["opened", "reopened", "ready_for_review", "push"]

    /// Webhook triggers that do not change the head: one of these for a head a completed run
    /// reviewed creates nothing.
    static let reviewedAgainTriggers: Set<String> = ["reopened", "ready_for_review"]

    /// `text` as a LIKE pattern (ESCAPE '\\') matching only itself: a branch name may hold `_` or `%`.
    static func likePattern(literal text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "%", with: "\\%").replacingOccurrences(of: "_", with: "\\_")
    }

    /// The event a trigger names: `reopened` for the second reopening's `reopened:2`.
    static func event(ofTrigger trigger: String) -> String {
        guard let colon = trigger.firstIndex(of: ":"), reviewedAgainTriggers.contains(String(trigger[..<colon])) else { return trigger }
        return String(trigger[..<colon])
    }

    /// Reviews a person asked for (the API's or console's re-run, an `@sentinel review` comment)
    /// go before any other work: someone is waiting for them. The rest run at `normal`.
    static func priority(ofTrigger trigger: String) -> JobPriority {
        trigger.hasPrefix("manual:") || trigger.hasPrefix("command:") ? .critical : .normal
    }

    /// Creates the run unless one exists for (repository, PR, head SHA, trigger) — or, for an
    /// automatic webhook trigger, unless a catch-up run of that head exists that was not skipped
    /// (a skipped one, e.g. a draft, leaves `ready_for_review` its own run), or unless the event is
    /// older (`occurredAt`, the pull request's `updated_at` in the payload) than a catch-up run that
    /// found another head: the sweep saw a newer head after the event, so a late or resent webhook
    /// must not supersede it. Supersedes older queued or running runs of the same PR; enqueues the
    /// run's job. Returns the run id and whether it was created by this call.
    public static func request(repository: RepositoryRecord, prNumber: Int, headSHA: String, baseSHA: String?, trigger: String,
                               fullReview: Bool, correlationID: String?, occurredAt: Date? = nil,
                               in tx: inout WorkspaceTransaction) throws -> (Int64, Bool) {
        let db = tx.db
        if automaticTriggers.contains(trigger), !headSHA.isEmpty {
            if let covered = try Int64.fetchOne(db, sql: """
                SELECT id FROM review_runs WHERE repository_id = ? AND pr_number = ? AND head_sha = ? AND trigger = ? AND state != 'skipped'
                ORDER BY id LIMIT 1
                """, arguments: [repository.id, prNumber, headSHA, reconcileTrigger]) {
                return (covered, false)
            }
            if let occurredAt, let newer = try Int64.fetchOne(db, sql: """
                SELECT id FROM review_runs WHERE repository_id = ? AND pr_number = ? AND head_sha != ? AND trigger = ? AND created_at > ?
                ORDER BY id DESC LIMIT 1
                """, arguments: [repository.id, prNumber, headSHA, reconcileTrigger, occurredAt.timeIntervalSince1970]) {
                return (newer, false)
            }
        }
        // A pull request reopened, or marked ready again, at a head a review already completed for
        // (closed and reopened, or made a draft and ready again, with no push between) has that
        // review on the platform: a second one would repeat it and cost one more model call. A
        // head whose runs were skipped (a draft, closed), failed or superseded is reviewed, and so
        // is one reviewed against another base commit (its base branch changed meanwhile).
        if reviewedAgainTriggers.contains(trigger), !headSHA.isEmpty, let reviewed = try Int64.fetchOne(db, sql: """
            SELECT id FROM review_runs WHERE repository_id = ? AND pr_number = ? AND head_sha = ? AND state = 'completed'
              AND (? IS NULL OR base_sha IS NULL OR base_sha = ?)
            ORDER BY id DESC LIMIT 1
            """, arguments: [repository.id, prNumber, headSHA, baseSHA, baseSHA]) {
            try db.execute(sql: "UPDATE pull_requests SET closed = 0 WHERE repository_id = ? AND pr_number = ?", arguments: [repository.id, prNumber])
            return (reviewed, false)
        }
        // A command names one request (its comment's id): delivered again (a group hook beside a
        // project hook, a resend under a new delivery id) it is the same run, whatever head either
        // delivery carried. A run asked for without a head learns it when it starts, so the second
        // delivery's empty head no longer matched the first run's row: a second run superseded the
        // first and failed when it learnt the same head (a unique-key error on the merge request).
        if trigger.hasPrefix("command:"), let existing = try Int64.fetchOne(db, sql: """
            SELECT id FROM review_runs WHERE repository_id = ? AND pr_number = ? AND trigger = ? ORDER BY id LIMIT 1
            """, arguments: [repository.id, prNumber, trigger]) {
            return (existing, false)
        }
        try db.execute(sql: """
            INSERT OR IGNORE INTO review_runs (repository_id, pr_number, head_sha, base_sha, trigger, full_review, state, correlation_id, created_at)
            VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?)
            """, arguments: [repository.id, prNumber, headSHA, baseSHA, trigger, fullReview, correlationID, tx.now.epoch])
        if db.changesCount == 0 {
            // The event's run exists. A new one, numbered (`reopened:2`), is made for:
            // - a pull request reopened, or marked ready, once more at the same head, the run the
            //   first such event made skipped (closed, or a draft, again before it started),
            //   superseded or failed: this event says the reason is gone (or asks again, as closing
            //   and reopening re-runs CI). It had found the first run and reviewed nothing, for good.
            // - a pull request moved back to a target branch it had before, at the same head, once
            //   it had moved away from it (an event sent again is no move): that branch has moved on
            //   since, and the diff against it is new.
            // Not while that run waits or works (it stands for the event), and not when the pull
            // request has had runs of another head since (a resent event of an older head: its run
            // superseded the current head's, and was superseded in turn).
            let runs = try Row.fetchAll(db, sql: """
                SELECT id, state FROM review_runs WHERE repository_id = ? AND pr_number = ? AND head_sha = ? AND (trigger = ? OR trigger LIKE ? ESCAPE '\\')
                ORDER BY id DESC
                """, arguments: [repository.id, prNumber, headSHA, trigger, Self.likePattern(literal: trigger) + ":%"])
            let latest = runs[0], state: RunState = latest["state"], latestID: Int64 = latest["id"]
            let movedAwaySince = try Bool.fetchOne(db, sql: """
                SELECT EXISTS (SELECT 1 FROM review_runs WHERE repository_id = ? AND pr_number = ? AND head_sha = ? AND id > ?
                                 AND trigger LIKE 'retargeted:%' AND trigger != ? AND trigger NOT LIKE ? ESCAPE '\\')
                """, arguments: [repository.id, prNumber, headSHA, latestID, trigger, Self.likePattern(literal: trigger) + ":%"]) ?? false
            let again = reviewedAgainTriggers.contains(trigger) ? [RunState.skipped, .superseded, .failed].contains(state)
                : trigger.hasPrefix("retargeted:") && state.isFinal && movedAwaySince
            guard again, !headSHA.isEmpty, try !(Bool.fetchOne(db, sql: """
                SELECT EXISTS (SELECT 1 FROM review_runs WHERE repository_id = ? AND pr_number = ? AND head_sha != ? AND id > ?)
                """, arguments: [repository.id, prNumber, headSHA, latestID]) ?? false) else { return (latestID, false) }
            return try request(repository: repository, prNumber: prNumber, headSHA: headSHA, baseSHA: baseSHA, trigger: "\(trigger):\(runs.count + 1)",
                               fullReview: fullReview, correlationID: correlationID, occurredAt: occurredAt, in: &tx)
        }
        let runID = db.lastInsertedRowID
        try supersedeOlder(than: runID, repositoryID: repository.id, prNumber: prNumber, reason: "superseded by run \(runID)", in: &tx)
        try tx.db.execute(sql: "INSERT OR IGNORE INTO pull_requests (repository_id, pr_number) VALUES (?, ?)", arguments: [repository.id, prNumber])
        try tx.db.execute(sql: "UPDATE pull_requests SET closed = 0 WHERE repository_id = ? AND pr_number = ?", arguments: [repository.id, prNumber])
        try tx.append(DomainEvent(type: "RunCreated", subject: "run:\(runID)", payload: RunEventPayload(
            runID: runID, repository: repository.fullName, platform: try RepositoryStore.platform(of: repository, in: db), prNumber: prNumber,
            headSHA: headSHA, trigger: trigger), correlationID: correlationID))
        try tx.enqueue(JobRequest(kind: jobKind, payload: ReviewRunJob(runID: runID), priority: priority(ofTrigger: trigger),
                                  idempotencyKey: "run:\(runID)", correlationID: correlationID))
        return (runID, true)
    }

    /// A run someone asked for (the API's `POST …/runs`, the console's re-run): a new run of the
    /// pull request's current head, audited as `RunRequested`. A removed repository is not found; a
    /// disabled one is a conflict. Returns the run id and whether it was created by this call.
    public static func requestManual(repositoryID: Int64, prNumber: Int, fullReview: Bool, by actor: String, correlationID: String?,
                                     in tx: inout WorkspaceTransaction) throws -> (Int64, Bool) {
        guard let repo = try RepositoryStore.find(id: repositoryID, in: tx.db), !repo.removed else {
            throw StorageError.notFound("no such repository")
        }
        guard repo.enabled else { throw StorageError.conflict("repository \(repo.fullName) is disabled; enable it first") }
        let result = try request(repository: repo, prNumber: prNumber, headSHA: "", baseSHA: nil, trigger: "manual:\(RandomIdentifier.uuid())",
                                 fullReview: fullReview, correlationID: correlationID, in: &tx)
        try tx.append(DomainEvent(type: "RunRequested", subject: "run:\(result.0)", payload: [
            "repository": repo.fullName, "pr_number": String(prNumber), "by": actor]))
        return result
    }

    /// Cancels a run that has not ended (it ends `skipped`, "cancelled by …"), audited as
    /// `RunCancelled`; an unknown run is not found, an ended one a conflict. Returns the run as it is now.
    @discardableResult
    /// Cancels a queued or running run. A running run whose review is prepared (stored before it
    /// is posted) is refused: its job may be posting it at this moment, and a review on the pull
    /// request under a run that says "cancelled" would contradict it (the job reads the run's state
    /// after storing the review, so a cancel committed before that posts nothing).
    public static func cancel(runID: Int64, by actor: String, in tx: inout WorkspaceTransaction) throws -> ReviewRun {
        guard let run = try find(runID, in: tx.db) else { throw StorageError.notFound("no such run") }
        if run.state == .running, try Bool.fetchOne(tx.db, sql: "SELECT prepared_review IS NOT NULL FROM review_runs WHERE id = ?", arguments: [runID]) == true {
            throw StorageError.conflict("run \(runID) has its review ready and is posting it; it can no longer be cancelled")
        }
        guard try finish(runID: runID, state: .skipped, reason: "cancelled by \(actor)", label: "cancelled", in: &tx) else {
            throw StorageError.conflict("run \(runID) already ended (\(run.state.rawValue))")
        }
        try tx.append(DomainEvent(type: "RunCancelled", subject: "run:\(runID)", payload: ["by": actor]))
        guard let cancelled = try find(runID, in: tx.db) else { throw StorageError.notFound("no such run") }
        return cancelled
    }

    /// Why a run's engine should make no further model call: the run ended meanwhile (cancelled,
    /// superseded by a newer push, its pull request closed); nil while it runs.
    public static func stopReason(_ runID: Int64, in db: Database) throws -> String? {
        guard let run = try find(runID, in: db), run.state.isFinal else { return nil }
        return "the run ended (\(run.state.rawValue)\(run.reason.map { ": \($0)" } ?? "")); no further AI call is made"
    }

    /// The open runs of a pull request that a newer run or its closing may end: not one posting its
    /// review (running, review prepared, its job running). That job may be posting at this moment:
    /// ended, it posted all the same under a run that said "superseded" or "closed", and the next
    /// run posted the same comments again. It completes; the next run waits for it (`postingRun`).
    /// A prepared run whose job waits to try the post again (a platform outage's backoff) is ended
    /// like any other: its job, when it runs, only concludes the check (it reads the run's state
    /// first, in the transaction a claim of the job would conflict with). Kept open, it posted its
    /// older head's review after the newer run's, with the same comments.
    static let endableRuns = """
        state = 'queued' OR (state = 'running' AND (prepared_review IS NULL OR NOT EXISTS (
            SELECT 1 FROM jobs WHERE jobs.idempotency_key = 'run:' || review_runs.id AND jobs.state = 'running')))
        """

    /// A run of the pull request other than `runID` that is posting its review now (its job
    /// holds a live lease), if any. One whose job waits to try again (a platform outage's backoff)
    /// is not waited for: a wait of minutes would use up the waiting run's attempts.
    static func postingRun(repositoryID: Int64, prNumber: Int, excluding runID: Int64, in db: Database, now: Date) throws -> Int64? {
        try Int64.fetchOne(db, sql: """
            SELECT r.id FROM review_runs r JOIN jobs j ON j.idempotency_key = 'run:' || r.id
            WHERE r.repository_id = ? AND r.pr_number = ? AND r.state = 'running' AND r.prepared_review IS NOT NULL AND r.id != ?
              AND j.state = 'running' AND j.lease_expires_at > ?
            """, arguments: [repositoryID, prNumber, runID, now.epoch])
    }

    static func supersedeOlder(than runID: Int64, repositoryID: Int64, prNumber: Int, reason: String, in tx: inout WorkspaceTransaction) throws {
        let older = try Int64.fetchAll(tx.db, sql: """
            SELECT id FROM review_runs WHERE repository_id = ? AND pr_number = ? AND (\(endableRuns)) AND id != ?
            """, arguments: [repositoryID, prNumber, runID])
        for id in older {
            try finish(runID: id, state: .superseded, reason: reason, label: "newer_head", in: &tx)
        }
    }

    /// Ends a run whose pull request moved to another head (a push or a force push) as superseded.
    /// The new head of an open pull request gets a run of its own, requested as the catch-up sweep
    /// would, unless a run of it that was not superseded exists (its webhook came first). One that
    /// was superseded is no review: a late webhook of an older push, its run requested after the
    /// new head's, had superseded the new head's run, and nothing reviewed the pull request's head
    /// until the next sweep (its check said "Superseded", passing).
    static func supersede(_ run: ReviewRun, movedTo pr: PullRequestInfo, repository: RepositoryRecord, reason: String,
                          in tx: inout WorkspaceTransaction) throws {
        // (Ended otherwise meanwhile, closed or cancelled: that end stands, and asks for nothing.)
        guard try finish(runID: run.id, state: .superseded, reason: reason, label: "head_moved", in: &tx), pr.isOpen, !pr.headSHA.isEmpty else { return }
        // (A catch-up run of it superseded in turn is left to the sweep, which asks no more either.)
        let runs = try Row.fetchAll(tx.db, sql: """
            SELECT state, trigger FROM review_runs WHERE repository_id = ? AND pr_number = ? AND head_sha = ?
            """, arguments: [run.repositoryID, run.prNumber, pr.headSHA])
        guard runs.allSatisfy({ ($0["state"] as RunState) == .superseded && ($0["trigger"] as String) != reconcileTrigger }) else { return }
        _ = try request(repository: repository, prNumber: run.prNumber, headSHA: pr.headSHA, baseSHA: pr.baseSHA.isEmpty ? nil : pr.baseSHA,
                        trigger: reconcileTrigger, fullReview: run.fullReview, correlationID: run.correlationID, in: &tx)
    }

    /// The newest run of `run`'s pull request after the run `after` that completed (posted its review).
    static func completedRun(of run: ReviewRun, after: Int64, in db: Database) throws -> Int64? {
        try Int64.fetchOne(db, sql: """
            SELECT id FROM review_runs WHERE repository_id = ? AND pr_number = ? AND id > ? AND state = 'completed' ORDER BY id DESC LIMIT 1
            """, arguments: [run.repositoryID, run.prNumber, after])
    }

    /// Ends every open run of a PR (closed PR): queued work is cancelled.
    public static func closePullRequest(repositoryID: Int64, prNumber: Int, in tx: inout WorkspaceTransaction) throws -> Int {
        let open = try Int64.fetchAll(tx.db, sql: """
            SELECT id FROM review_runs WHERE repository_id = ? AND pr_number = ? AND (\(endableRuns))
            """, arguments: [repositoryID, prNumber])
        for id in open { try finish(runID: id, state: .skipped, reason: closedReason, label: "closed", in: &tx) }
        try tx.db.execute(sql: "INSERT OR IGNORE INTO pull_requests (repository_id, pr_number) VALUES (?, ?)", arguments: [repositoryID, prNumber])
        try tx.db.execute(sql: "UPDATE pull_requests SET closed = 1 WHERE repository_id = ? AND pr_number = ?", arguments: [repositoryID, prNumber])
        return open.count
    }

    /// Moves a run to a final state (once), cancels its queued job, appends `RunCompleted` and,
    /// once committed, counts it in `sentinel_review_runs_total` by `state` and `label` (a fixed
    /// word of `SentinelMetrics.runOutcomes`; `reason` is the sentence people read).
    @discardableResult
    public static func finish(runID: Int64, state: RunState, reason: String?, label: String, conclusion: String? = nil,
                              in tx: inout WorkspaceTransaction) throws -> Bool {
        precondition(state.isFinal)
        try tx.db.execute(sql: """
            UPDATE review_runs SET state = ?, reason = ?, conclusion = coalesce(?, conclusion), finished_at = ?
            WHERE id = ? AND state IN ('queued','running')
            """, arguments: [state, reason, conclusion, tx.now.epoch, runID])
        guard tx.db.changesCount == 1, let run = try find(runID, in: tx.db) else { return false }
        let metrics = tx.metrics
        tx.afterCommit { metrics.runFinished(outcome: state.rawValue, reason: label) }
        // A waiting job is cancelled, unless the run started its check run, or had started (an
        // attempt that crashed or timed out may have started the check without recording it): the
        // job then runs to conclude it (`ReviewRunner.concludeEndedCheck`), or it stayed "in
        // progress" for good.
        if run.checkRunID == nil && run.startedAt == nil {
            try tx.db.execute(sql: "UPDATE jobs SET state = 'cancelled', finished_at = ? WHERE idempotency_key = ? AND state = 'queued'",
                              arguments: [tx.now.epoch, "run:\(runID)"])
        }
        let repo = try RepositoryStore.find(id: run.repositoryID, in: tx.db)
        let counts = try Row.fetchAll(tx.db, sql: """
            SELECT severity, category, count(*) AS n FROM findings WHERE run_id = ? GROUP BY severity, category ORDER BY severity, category
            """, arguments: [runID]).map { FindingCount(severity: $0["severity"], category: $0["category"], count: $0["n"]) }
        let findings = counts.reduce(0) { $0 + $1.count }
        let duration = run.startedAt.map { Int((tx.now.epoch - $0) * 1000) }
        try tx.append(DomainEvent(type: "RunCompleted", subject: "run:\(runID)", payload: RunEventPayload(
            runID: runID, repository: repo?.fullName ?? "", platform: try repo.flatMap { try RepositoryStore.platform(of: $0, in: tx.db) },
            prNumber: run.prNumber, headSHA: run.headSHA, trigger: run.trigger,
            state: state.rawValue, reason: reason, findings: findings, durationMs: duration, findingCounts: counts), correlationID: run.correlationID))
        return true
    }

    // MARK: The run's progress, as the review job records it

    /// Marks a run running (the first time it starts).
    static func markRunning(_ runID: Int64, in tx: inout WorkspaceTransaction) throws {
        try tx.db.execute(sql: "UPDATE review_runs SET state = 'running', started_at = coalesce(started_at, ?) WHERE id = ?",
                          arguments: [tx.now.epoch, runID])
    }

    /// The head and base a comment-triggered run learnt when it started.
    static func setCommits(_ runID: Int64, headSHA: String, baseSHA: String, in db: Database) throws {
        try db.execute(sql: "UPDATE review_runs SET head_sha = ?, base_sha = ? WHERE id = ?", arguments: [headSHA, baseSHA, runID])
    }

    /// The effective configuration the run uses: snapshot, its hash and the source versions.
    static func recordPolicy(_ runID: Int64, snapshot: String, sha256: String, versions: String, in db: Database) throws {
        try db.execute(sql: "UPDATE review_runs SET policy_snapshot = ?, policy_sha256 = ?, policy_versions = ? WHERE id = ?",
                       arguments: [snapshot, sha256, versions, runID])
    }

    static func setCheckRun(_ runID: Int64, _ checkRunID: String?, in db: Database) throws {
        try db.execute(sql: "UPDATE review_runs SET check_run_id = ? WHERE id = ?", arguments: [checkRunID, runID])
    }

    /// The review computed for the run, stored before anything is posted.
    static func prepared(_ runID: Int64, in db: Database) throws -> PreparedReview? {
        let json = try String.fetchOne(db, sql: "SELECT prepared_review FROM review_runs WHERE id = ?", arguments: [runID])
        return json.flatMap { try? JSONDecoder.sentinel.decode(PreparedReview.self, from: Data($0.utf8)) }
    }

    static func storePrepared(_ prepared: PreparedReview, runID: Int64, in db: Database) throws {
        let json = String(decoding: try JSONEncoder.sentinel.encode(prepared), as: UTF8.self)
        try db.execute(sql: "UPDATE review_runs SET prepared_review = ? WHERE id = ?", arguments: [json, runID])
    }

    /// Fingerprints of findings already posted on the pull request by other runs.
    static func postedFingerprints(repositoryID: Int64, prNumber: Int, excluding runID: Int64, in db: Database) throws -> Set<String> {
        Set(try String.fetchAll(db, sql: """
            SELECT fingerprint FROM findings WHERE repository_id = ? AND pr_number = ? AND posted = 1 AND run_id != ?
            """, arguments: [repositoryID, prNumber, runID]))
    }

    /// The findings the pull request's last completed review reported as open (inline, in its
    /// summary, or still open from before), for the next incremental review to carry what it does
    /// not look at again. Empty when no completed run has a stored review.
    static func lastOpenFindings(repositoryID: Int64, prNumber: Int, before runID: Int64, in db: Database) throws -> [Finding] {
        guard let json = try String.fetchOne(db, sql: """
            SELECT prepared_review FROM review_runs WHERE repository_id = ? AND pr_number = ? AND id < ? AND state = 'completed'
              AND prepared_review IS NOT NULL ORDER BY id DESC LIMIT 1
            """, arguments: [repositoryID, prNumber, runID]),
              let prepared = try? JSONDecoder.sentinel.decode(PreparedReview.self, from: Data(json.utf8)) else { return [] }
        // Findings not on changed lines failed the check as well: a push that fixes nothing keeps them.
        return prepared.findings + (prepared.overLimit ?? []) + (prepared.unanchored ?? []) + (prepared.stillOpen ?? [])
    }

    static func lastReviewedSHA(repositoryID: Int64, prNumber: Int, in db: Database) throws -> String? {
        try String.fetchOne(db, sql: "SELECT last_reviewed_sha FROM pull_requests WHERE repository_id = ? AND pr_number = ?",
                            arguments: [repositoryID, prNumber])
    }

    /// The posted review's id and exactly its findings; `posted` is false for findings that went
    /// into the review body instead of inline comments, and for `inSummary` (past the comment cap).
    static func recordPosted(_ run: ReviewRun, reviewID: String, findings: [Finding], posted: Bool, inSummary: [Finding] = [], in db: Database) throws {
        try db.execute(sql: "UPDATE review_runs SET review_id = ? WHERE id = ?", arguments: [reviewID, run.id])
        try db.execute(sql: "DELETE FROM findings WHERE run_id = ?", arguments: [run.id])
        for finding in findings {
            try FindingRecord(finding, run: run, posted: posted).insert(db)
        }
        for finding in inSummary {
            try FindingRecord(finding, run: run, posted: false).insert(db)
        }
    }

    /// Completes a posted run: coverage and summary, the PR's last reviewed commit (when the whole
    /// change was listed), then the final state and `RunCompleted`.
    static func complete(_ run: ReviewRun, prepared: PreparedReview, in tx: inout WorkspaceTransaction) throws {
        if let sha = prepared.reviewedSHA {
            try tx.db.execute(sql: "UPDATE pull_requests SET last_reviewed_sha = ? WHERE repository_id = ? AND pr_number = ?",
                              arguments: [sha, run.repositoryID, run.prNumber])
        }
        try tx.db.execute(sql: "UPDATE review_runs SET files_reviewed = ?, files_total = ?, summary = ? WHERE id = ?",
                          arguments: [prepared.filesReviewed, prepared.filesTotal, prepared.summary, run.id])
        try finish(runID: run.id, state: .completed, reason: nil, label: "completed", conclusion: prepared.conclusion, in: &tx)
    }

    /// Why runs of a closed pull request, and of a draft, are skipped (the catch-up sweep reads them back).
    public static let closedReason = "the pull request is closed"
    public static let draftReason = "draft pull requests are not reviewed automatically (review.auto_review.drafts)"

    /// The trigger the catch-up sweep requests a run of an open pull request's head with, or nil
    /// when the head is covered: `reconcile` when it has no run; when every run of it was skipped
    /// for a reason the listing shows is gone, the webhook the sweep stands in for, `ready_for_review`
    /// (skipped as a draft, a draft no more) or `reopened` (skipped as closed, open again). Any
    /// other skip (a plan limit, a setting) stays as it is: requested again it would only be
    /// skipped again, sweep after sweep.
    public static func sweepTrigger(repositoryID: Int64, prNumber: Int, headSHA: String, isDraft: Bool, in db: Database) throws -> String? {
        let runs = try Row.fetchAll(db, sql: """
            SELECT state, reason, trigger FROM review_runs WHERE repository_id = ? AND pr_number = ? AND head_sha = ? ORDER BY id
            """, arguments: [repositoryID, prNumber, headSHA])
        guard let last = runs.last else { return reconcileTrigger }
        // The pull request came back to a head whose runs newer pushes all superseded (a force-push
        // back to it): that head was never reviewed, and its check said "Superseded", passing. A
        // webhook cannot tell such a return from a late redelivery of the old push; the sweep sees
        // the head the pull request has now.
        let states = runs.map { $0["state"] as String }
        if states.contains(RunState.superseded.rawValue), !runs.contains(where: { ($0["trigger"] as String) == reconcileTrigger }),
           states.allSatisfy({ $0 == RunState.superseded.rawValue || $0 == RunState.skipped.rawValue }),
           !runs.contains(where: { ($0["state"] as String) == RunState.skipped.rawValue && ($0["reason"] as String?) == draftReason && isDraft }) {
            return reconcileTrigger
        }
        guard runs.allSatisfy({ ($0["state"] as String) == RunState.skipped.rawValue }) else { return nil }
        switch last["reason"] as String? {
        case draftReason? where !isDraft: return "ready_for_review"
        case closedReason?: return "reopened"
        default: return nil
        }
    }

    /// Unfinished runs (queued, or running and waiting to be tried again) whose check run was
    /// started, with their repository (still registered), oldest first.
    static func unfinishedChecks(in db: Database, limit: Int = 100) throws -> [(run: ReviewRun, repository: RepositoryRecord, checkID: String)] {
        try ReviewRun.fetchAll(db, sql: """
            SELECT * FROM review_runs WHERE state IN ('queued', 'running') AND check_run_id IS NOT NULL ORDER BY id LIMIT ?
            """, arguments: [limit]).compactMap { run in
            guard let check = run.checkRunID, let repo = try RepositoryStore.find(id: run.repositoryID, in: db), !repo.removed else { return nil }
            return (run, repo, check)
        }
    }

    /// The conclusion given later to the check of a failed run (`ReviewRunner.concludeCheckKind`,
    /// or its review job retried once its review was posted).
    static func recordFailedConclusion(_ runID: Int64, _ conclusion: String, in db: Database) throws {
        try db.execute(sql: "UPDATE review_runs SET conclusion = ? WHERE id = ? AND state = 'failed' AND conclusion IS NULL", arguments: [conclusion, runID])
    }

    /// The conclusion a failed run's check was given as its posted review says, replacing the
    /// "Review failed" it may have had (a `jobs retry` turned the check green, the run said failure).
    static func recordPostedConclusion(_ runID: Int64, _ conclusion: String, in db: Database) throws {
        try db.execute(sql: "UPDATE review_runs SET conclusion = ? WHERE id = ? AND state = 'failed'", arguments: [conclusion, runID])
    }

    /// The conclusion the check of a run that already ended (superseded, skipped) was given.

    static func recordEndedConclusion(_ runID: Int64, _ conclusion: String, in db: Database) throws {
        try db.execute(sql: "UPDATE review_runs SET conclusion = ? WHERE id = ? AND state IN ('superseded', 'skipped')", arguments: [conclusion, runID])
    }

    /// The latest other run of the same commit that ended with a result (completed, or failed with
    /// its check concluded), when that result is a failed check: what the commit's gate says until
    /// a newer review replaces it. A newer green review stands instead (nil).
    static func standingFailure(besides run: ReviewRun, in db: Database) throws -> Int64? {
        guard !run.headSHA.isEmpty else { return nil }
        let latest = try Row.fetchOne(db, sql: """
            SELECT id, conclusion FROM review_runs WHERE repository_id = ? AND pr_number = ? AND head_sha = ? AND id != ?
              AND state IN ('completed', 'failed') AND conclusion IS NOT NULL ORDER BY id DESC LIMIT 1
            """, arguments: [run.repositoryID, run.prNumber, run.headSHA, run.id])
        guard let latest, (latest["conclusion"] as String?) == CheckConclusion.failure.rawValue else { return nil }
        return latest["id"]
    }

    /// Whether a newer run of the same pull request reviews the same commit and has set its check.
    /// One that has not yet sets it after this run does (its result is the one shown then); one
    /// that never will (cancelled while queued) left the status "running" for good when counted.
    public static func hasNewerRun(than run: ReviewRun, in db: Database) throws -> Bool {
        try Bool.fetchOne(db, sql: """
            SELECT EXISTS (SELECT 1 FROM review_runs WHERE repository_id = ? AND pr_number = ? AND head_sha = ? AND id > ?
                             AND check_run_id IS NOT NULL)
            """, arguments: [run.repositoryID, run.prNumber, run.headSHA, run.id]) ?? false
    }

    public static func find(_ id: Int64, in db: Database) throws -> ReviewRun? {
        try ReviewRun.fetchOne(db, sql: "SELECT * FROM review_runs WHERE id = ?", arguments: [id])
    }

    /// Runs newest first, below the id `before`, filtered by repository, pull request and state.
    public static func list(in db: Database, before: Int64 = .max, repositoryID: Int64? = nil, prNumber: Int? = nil, state: RunState? = nil,
                            limit: Int = 100) throws -> [ReviewRun] {
        var sql = "SELECT * FROM review_runs WHERE id < ?"
        var args: [any DatabaseValueConvertible] = [before]
        if let repositoryID { sql += " AND repository_id = ?"; args.append(repositoryID) }
        if let prNumber { sql += " AND pr_number = ?"; args.append(prNumber) }
        if let state { sql += " AND state = ?"; args.append(state.rawValue) }
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        return try ReviewRun.fetchAll(db, sql: sql, arguments: StatementArguments(args))
    }

    /// A run's findings in the order they were recorded.
    public static func findings(ofRun runID: Int64, in db: Database) throws -> [StoredFinding] {
        try StoredFinding.fetchAll(db, sql: "SELECT * FROM findings WHERE run_id = ? ORDER BY id", arguments: [runID])
    }
}

/// A finding of a run as stored, for reading back.
public struct StoredFinding: Decodable, FetchableRecord, Sendable {
    public static let databaseColumnDecodingStrategy = DatabaseColumnDecodingStrategy.sentinel
    public var id: Int64
    public var path: String
    public var line: Int?
    public var startLine: Int?
    public var side: String?
    public var severity: String
    public var category: String
    public var title: String
    public var body: String
    public var suggestion: String?
    public var source: String
    /// Whether it was posted on the pull request (as a review comment).
    public var posted: Bool
}

/// A row of `findings`: one finding of a run, as posted on the pull request.
struct FindingRecord: Encodable, PersistableRecord {
    static let databaseTableName = "findings"
    static let databaseColumnEncodingStrategy = DatabaseColumnEncodingStrategy.sentinel
    var runID: Int64
    var repositoryID: Int64
    var prNumber: Int
    var path: String
    var startLine: Int?
    var line: Int
    var side: String
    var severity: String
    var category: String
    var title: String
    var body: String
    var suggestion: String?
    var source: String
    var fingerprint: String
    var posted: Bool

    init(_ finding: Finding, run: ReviewRun, posted: Bool) {
        runID = run.id
        repositoryID = run.repositoryID
        prNumber = run.prNumber
        path = finding.path
        startLine = finding.startLine
        line = finding.line
        side = finding.side.rawValue
        severity = finding.severity.rawValue
        category = finding.category
        title = finding.title
        body = finding.body
        suggestion = finding.suggestion
        source = finding.source.rawValue
        fingerprint = finding.fingerprint
        self.posted = posted
    }
}
