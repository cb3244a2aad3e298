import Foundation
import GRDB
import Logging
import Tracing
import ServiceLifecycle

// Catch-up after downtime (SPEC: nothing missed). A webhook the appliance never received — it was
// down, restarting, or unreachable — would otherwise leave a PR unreviewed. The sweep finds that
// work from the platform's side, through the `ReconcileConnector` seam: open pull requests whose
// head has no run get one (trigger `reconcile`), and failed webhook deliveries Sentinel never stored
// are sent again by the platform. Runs are requested through `ReviewRunStore.request`, the webhook
// path's own call, so both paths make the same decisions and neither creates a second run for a head.

/// How a sweep behaves (`reconcile.*`), plus `dryRun` for `sentinel reconcile --dry-run`.
public struct ReconcileOptions: Sendable {
    public var maxReviewsPerSweep: Int
    public var minRateRemaining: Double
    public var redeliver: Bool
    /// Find and report, but request nothing and store nothing.
    public var dryRun: Bool
    /// GitHub redelivers deliveries of the last 3 days only.
    public var redeliveryWindow: TimeInterval = 3 * 86_400

    public init(maxReviewsPerSweep: Int = 50, minRateRemaining: Double = 0.2, redeliver: Bool = true, dryRun: Bool = false) {
        self.maxReviewsPerSweep = maxReviewsPerSweep
        self.minRateRemaining = minRateRemaining
        self.redeliver = redeliver
        self.dryRun = dryRun
    }

    public init(_ config: SentinelConfig.Reconcile, dryRun: Bool = false) {
        self.init(maxReviewsPerSweep: config.maxReviewsPerSweep, minRateRemaining: config.minRateRemaining, redeliver: config.redeliver,
                  dryRun: dryRun)
    }
}

/// A review the sweep requested (or, in a dry run, would request).
public struct ReconciledReview: Codable, Sendable, Equatable {
    public var repository: String
    public var prNumber: Int
    public var headSHA: String
    /// Nil in a dry run.
    public var runID: Int64?

    enum CodingKeys: String, CodingKey {
        case repository, prNumber = "pr_number", headSHA = "head_sha", runID = "run_id"
    }
}

/// A failed delivery the sweep asked the platform to send again (or, in a dry run, would ask).
public struct ReconciledDelivery: Codable, Sendable, Equatable {
    public var deliveryID: String
    public var guid: String
    public var event: String
    public var action: String?
    public var statusCode: Int
    public var deliveredAt: Date
    /// `requested`, `would request` (dry run) or `refused: …` (the platform would not).
    public var outcome: String

    enum CodingKeys: String, CodingKey {
        case deliveryID = "delivery_id", guid, event, action, statusCode = "status_code", deliveredAt = "delivered_at", outcome
    }
}

/// What one sweep of one integration found and did.
public struct IntegrationSweep: Codable, Sendable, Equatable {
    public var workspaceID: String
    public var integrationID: String
    public var platform: String
    /// `complete`, or why the sweep ended early: `rate_limited`, `paused` (still rate limited from an
    /// earlier sweep), `cap_reached`, `error`, `unsupported`.
    public var outcome = "complete"
    /// The reason in words when the sweep ended early.
    public var stopped: String?
    /// When a rate-limited integration is swept again.
    public var resumeAt: Date?
    public var repositories = 0
    public var pullRequestsFound = 0
    public var reviewsRequested: [ReconciledReview] = []
    public var redeliveries: [ReconciledDelivery] = []
    /// What went wrong with single repositories or the delivery log before the sweep stopped for
    /// another reason (a rate limit): also in `stopped`.
    public var problems: [String] = []

    /// Whether the sweep failed, for an exit status: it ended in error, or repositories failed
    /// before it stopped (a sweep stopped by a rate limit after a 404 exited 0).
    public var failed: Bool { outcome == "error" || !problems.isEmpty }

    /// The platform as metrics name it (`github`, `gitlab`: the integration's kind), whether the
    /// report says `GitHub` (once the sweep reached it) or the kind (stopped before).
    var metricsLabel: String { platform.lowercased() }

    public init(workspaceID: String, integrationID: String, platform: String) {
        self.workspaceID = workspaceID
        self.integrationID = integrationID
        self.platform = platform
    }

    enum CodingKeys: String, CodingKey {
        case workspaceID = "workspace_id", integrationID = "integration_id", platform, outcome, stopped, resumeAt = "resume_at", repositories
        case pullRequestsFound = "pull_requests_found", reviewsRequested = "reviews_requested", redeliveries, problems
    }
}

/// One sweep over one or more workspaces.
public struct ReconcileReport: Codable, Sendable, Equatable {
    public var dryRun: Bool
    public var integrations: [IntegrationSweep]
    /// Workspaces that could not be swept (offline, unreadable), with the reason.
    public var failures: [String: String]

    public init(dryRun: Bool, integrations: [IntegrationSweep] = [], failures: [String: String] = [:]) {
        self.dryRun = dryRun
        self.integrations = integrations
        self.failures = failures
    }

    enum CodingKeys: String, CodingKey {
        case dryRun = "dry_run", integrations, failures
    }
}

/// The stored state of an integration's sweeps (`reconcile_state`).
public struct ReconcileState: Sendable, Equatable {
    /// The newest webhook delivery read (the platform's id): the next read stops there.
    public var deliveryCursor: String?
    /// A rate-limited integration is not swept before this.
    public var resumeAt: Date?

    public static func load(_ integration: IntegrationID, in db: Database) throws -> ReconcileState {
        guard let row = try Row.fetchOne(db, sql: "SELECT delivery_cursor, resume_at FROM reconcile_state WHERE integration_id = ?",
                                         arguments: [integration.rawValue]) else { return ReconcileState() }
        let resume: Double? = row["resume_at"]
        return ReconcileState(deliveryCursor: row["delivery_cursor"], resumeAt: resume.map { Date(timeIntervalSince1970: $0) })
    }
}

/// A sweep of one integration ended early, for the reason given.
struct SweepStopped: Error {
    let outcome: String
    let reason: String
    var resumeAt: Date?
}

/// Sweeps the integrations of a workspace (`sweep(_:logger:)`); `ReconcileService` runs it
/// periodically while serving, `sentinel reconcile` once.
public struct Reconciler: Sendable {
    /// By integration kind (`integrations.kind`: `github`, `gitlab`).
    let connectors: [String: any ReconcileConnector]
    let options: ReconcileOptions
    let metrics: SentinelMetrics

    public init(connectors: [String: any ReconcileConnector], options: ReconcileOptions, metrics: SentinelMetrics = SentinelMetrics()) {
        self.connectors = connectors
        self.options = options
        self.metrics = metrics
    }

    /// Credentials that stop working sooner than this are announced (`IntegrationCredentialsExpiring`).
    public static let credentialsExpiryNoticeDays = 14.0

    /// Appends `IntegrationCredentialsExpiring` (at most once in 20 hours per integration) and logs
    /// a warning when the platform says the integration's credentials expire within
    /// `credentialsExpiryNoticeDays`: reviews and sweeps would stop on that day.
    func noteExpiringCredentials(session: any ReconcileSession, integration id: IntegrationID, in workspace: WorkspaceActor,
                                 now: Date, logger: Logger) async {
        let expiresAt: Date
        do {
            guard let date = try await session.credentialsExpireAt() else { return }
            expiresAt = date
        } catch {
            logger.debug("catch-up sweep: the credentials' expiry cannot be read", metadata: ["error": "\(error)"])
            return
        }
        let left = expiresAt.timeIntervalSince(now)
        guard left < Self.credentialsExpiryNoticeDays * 86_400 else { return }
        let days = max(0, Int((left / 86_400).rounded(.down)))
        let subject = "integration:\(id.rawValue)"
        let since = ISO8601.string(now.addingTimeInterval(-20 * 3_600))
        let platform = session.platformName
        do {
            let appended = try await workspace.write { tx -> Bool in
                let recent = try Bool.fetchOne(tx.db, sql: """
                    SELECT EXISTS (SELECT 1 FROM events WHERE type = 'IntegrationCredentialsExpiring' AND subject = ? AND occurred_at > ?)
                    """, arguments: [subject, since]) ?? false
                guard !recent else { return false }
                try tx.append(DomainEvent(type: "IntegrationCredentialsExpiring", subject: subject, payload: [
                    "integration": id.rawValue, "platform": platform, "expires_at": ISO8601.string(expiresAt), "days": String(days)]))
                return true
            }
            if appended {
                logger.warning("the integration's access token expires soon: create a new one and rotate it (sentinel integration rotate)",
                               metadata: ["platform": "\(platform)", "expires_at": "\(ISO8601.string(expiresAt))", "days": "\(days)"])
            }
        } catch {
            logger.error("catch-up sweep: cannot record the credentials' expiry", metadata: ["error": "\(error)"])
        }
    }

    /// Sweeps every integration of the workspace, one after the other (not the removed ones,
    /// whose rows stay for their repositories' history).
    public func sweep(_ workspace: WorkspaceActor, logger: Logger) async throws -> [IntegrationSweep] {
        let integrations = try await workspace.read { db in
            try Row.fetchAll(db, sql: """
                SELECT id, kind FROM integrations WHERE kind NOT LIKE 'removed:%' ORDER BY created_at, id
                """).compactMap { row -> (IntegrationID, String)? in
                IntegrationID(row["id"]).map { ($0, row["kind"]) }
            }
        }
        var reports: [IntegrationSweep] = []
        for (id, kind) in integrations {
            // One correlation id per integration's sweep: on its log lines, its outbound calls'
            // `X-Request-ID` and the runs it requests.
            var context = ServiceContext.current ?? .topLevel
            context.correlationID = "reconcile-" + RandomIdentifier.uuid()
            reports.append(await ServiceContext.withValue(context) {
                await sweep(id, kind: kind, in: workspace, logger: logger.with(["integration_id": id.rawValue]))
            })
        }
        return reports
    }

    func sweep(_ id: IntegrationID, kind: String, in workspace: WorkspaceActor, logger: Logger) async -> IntegrationSweep {
        // The platform as the report names it, also when the sweep stops before it is reached.
        let platform = ["github": "GitHub", "gitlab": "GitLab"][kind] ?? kind
        var report = IntegrationSweep(workspaceID: workspace.id.rawValue, integrationID: id.rawValue, platform: platform)
        let now = Date()
        // What went wrong with single repositories or the delivery log: kept when the sweep then
        // stops early (a rate limit dropped them from the report and the exit status).
        var problems: [String] = []
        /// The reason a sweep stopped, with the earlier problems after it.
        func stopped(_ reason: String) -> String { ([reason] + problems).joined(separator: "; ") }
        do {
            guard let connector = connectors[kind] else {
                throw SweepStopped(outcome: "unsupported", reason: "no catch-up for \(kind) integrations")
            }
            let state = try await workspace.read { db in try ReconcileState.load(id, in: db) }
            if let resume = state.resumeAt, resume > now {
                throw SweepStopped(outcome: "paused", reason: "rate limited by the platform until \(ISO8601.string(resume))", resumeAt: resume)
            }
            guard let session = try await connector.reconcileSession(for: id, in: workspace) else {
                throw SweepStopped(outcome: "unsupported", reason: "the integration no longer exists")
            }
            report.platform = session.platformName
            if options.redeliver && session.canRedeliver {
                // Resending failed deliveries is the optional half: its failure (a platform without
                // the delivery log, a missing permission) must not keep open pull requests unswept.
                do {
                    try await redeliverFailed(session: session, integration: id, cursor: state.deliveryCursor, in: workspace, now: now,
                                              report: &report, problems: &problems, logger: logger)
                } catch let error where !Self.stopsTheSweep(error) {
                    problems.append("\(error) (the sweep of open pull requests went on without it; reconcile.redeliver: false turns the delivery log's sweep off)")
                }
            }
            try await requestMissingReviews(session: session, integration: id, in: workspace, report: &report, problems: &problems, logger: logger)
            if !problems.isEmpty {
                let reason = problems.joined(separator: "; ")
                problems = []
                throw SweepStopped(outcome: "error", reason: reason)
            }
            // Last, with what is left of the rate budget (a sweep stopped early asks next time).
            if !options.dryRun { await noteExpiringCredentials(session: session, integration: id, in: workspace, now: now, logger: logger) }
        } catch let stop as SweepStopped {
            (report.outcome, report.stopped, report.resumeAt) = (stop.outcome, stopped(stop.reason), stop.resumeAt)
        } catch SourceControlError.retryable(let message, let retryAfter) {
            if let retryAfter {
                (report.outcome, report.stopped, report.resumeAt) = ("rate_limited", stopped(message), Date().addingTimeInterval(retryAfter))
            } else {
                (report.outcome, report.stopped) = ("error", stopped(message))
            }
        } catch {
            (report.outcome, report.stopped) = ("error", stopped("\(error)"))
        }
        report.problems = problems
        if !options.dryRun && report.outcome != "unsupported" {
            let (outcome, resume) = (report.outcome, report.outcome == "rate_limited" ? report.resumeAt : nil)
            do {
                try await workspace.write { tx in
                    try tx.db.execute(sql: """
                        INSERT INTO reconcile_state (integration_id, resume_at, last_sweep_at, last_outcome) VALUES (?, ?, ?, ?)
                        ON CONFLICT(integration_id) DO UPDATE SET resume_at = CASE WHEN excluded.last_outcome = 'paused' THEN resume_at ELSE excluded.resume_at END,
                            last_sweep_at = excluded.last_sweep_at, last_outcome = excluded.last_outcome
                        """, arguments: [id.rawValue, resume?.timeIntervalSince1970, tx.now.epoch, outcome])
                }
            } catch {
                logger.error("could not store the catch-up sweep's state", metadata: ["error": "\(error)"])
            }
        }
        metrics.reconcileSweep(platform: report.metricsLabel, outcome: report.outcome)
        let level: Logger.Level = ["complete", "cap_reached", "paused"].contains(report.outcome) ? .info : .warning
        logger.log(level: level, "catch-up sweep", metadata: [
            "outcome": "\(report.outcome)", "stopped": "\(report.stopped ?? "")", "pull_requests_found": "\(report.pullRequestsFound)",
            "reviews_requested": "\(report.reviewsRequested.count)", "redeliveries": "\(report.redeliveries.count)", "dry_run": "\(options.dryRun)"])
        return report
    }

    /// A delivery a sweep is asking for, in `redelivery_requests.outcome`, and how long (seconds)
    /// such a claim keeps other sweeps from asking.
    static let claimedOutcome = "requesting"
    static let claimPatience: Double = 600

    /// Errors that end the whole sweep: the platform's rate limit (every further call would be
    /// refused too) and the sweep's own stops; any other failure is the one call's.
    static func stopsTheSweep(_ error: any Error) -> Bool {
        if error is SweepStopped || error is CancellationError { return true }
        if case SourceControlError.retryable(_, let retryAfter) = error, retryAfter != nil { return true }
        return false
    }

    /// Whether a run of the pull request was made after run `lastID` (after the sweep's listing began).
    static func runMade(repositoryID: Int64, prNumber: Int, after lastID: Int64, in db: Database) throws -> Bool {
        try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM review_runs WHERE repository_id = ? AND pr_number = ? AND id > ?)",
                          arguments: [repositoryID, prNumber, lastID]) ?? false
    }

    /// Stops the integration's sweep when the platform says too little of its rate limit is left.
    func checkBudget(_ session: any ReconcileSession) async throws {
        guard let budget = await session.budget() else { return }
        if let reset = budget.resetAt, reset <= Date() { return }  // refilled since it was stated
        if budget.fraction < options.minRateRemaining {
            throw SweepStopped(outcome: "rate_limited",
                               reason: "\(budget.remaining) of \(budget.limit) API requests left, below reconcile.min_rate_remaining \(options.minRateRemaining)",
                               resumeAt: budget.resetAt)
        }
    }

    /// Asks the platform to resend each failed delivery newer than the cursor that Sentinel never
    /// stored, once per delivery; moves the cursor only when every one of them was handled.
    /// Two sweeps at once (`sentinel reconcile` beside `serve`'s) each claim a delivery before
    /// asking for it: only the one whose claim is written asks (both asked, the same delivery
    /// twice). A claim left by a sweep that stopped before asking counts after ten minutes no more.
    func redeliverFailed(session: any ReconcileSession, integration: IntegrationID, cursor: String?, in workspace: WorkspaceActor, now: Date,
                         report: inout IntegrationSweep, problems: inout [String], logger: Logger) async throws {
        try await checkBudget(session)
        let log = try await session.failedDeliveries(after: cursor, since: now.addingTimeInterval(-options.redeliveryWindow))
        var seen = Set<String>()
        // A delivery another sweep is asking for: the cursor stays, so that a sweep after it
        // looks again (the other may fail, or stop before asking, and it was never listed again).
        var heldElsewhere = false
        var failedResends: [(id: String, error: String)] = []
        defer {
            if let first = failedResends.first {
                problems.append(failedResends.count == 1
                    ? "resending delivery \(first.id) failed (asked again by the next sweep): \(first.error)"
                    : "resending \(failedResends.count) deliveries failed (asked again by the next sweep)"
                        + (failedResends.count >= 3 ? ", and the rest waits for it" : "") + "; the first, \(first.id): \(first.error)")
            }
        }
        for delivery in log.failed.sorted(by: { $0.deliveredAt < $1.deliveredAt }) where seen.insert(delivery.guid).inserted {
            let guid = delivery.guid
            let (known, heldByAnother) = try await workspace.read { db -> (Bool, Bool) in
                let known = try Bool.fetchOne(db, sql: """
                    SELECT EXISTS (SELECT 1 FROM deliveries WHERE id = ?) OR EXISTS (SELECT 1 FROM redelivery_requests WHERE guid = ? AND outcome != ?)
                    """, arguments: [guid, guid, Self.claimedOutcome]) ?? false
                let claimed = try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM redelivery_requests WHERE guid = ? AND outcome = ? AND requested_at >= ?)",
                                                arguments: [guid, Self.claimedOutcome, now.epoch - Self.claimPatience]) ?? false
                return (known, claimed)
            }
            if known { continue }
            if heldByAnother {
                heldElsewhere = true
                continue
            }
            var entry = ReconciledDelivery(deliveryID: delivery.id, guid: guid, event: delivery.event, action: delivery.action,
                                           statusCode: delivery.statusCode, deliveredAt: delivery.deliveredAt, outcome: "would request")
            if options.dryRun {
                report.redeliveries.append(entry)
                continue
            }
            try await checkBudget(session)
            let claim = entry
            let claimed = try await workspace.write { tx -> Bool in
                try tx.db.execute(sql: "DELETE FROM redelivery_requests WHERE guid = ? AND outcome = ? AND requested_at < ?",
                                  arguments: [claim.guid, Self.claimedOutcome, tx.now.epoch - Self.claimPatience])
                try tx.db.execute(sql: """
                    INSERT OR IGNORE INTO redelivery_requests (guid, integration_id, delivery_id, event, requested_at, outcome) VALUES (?, ?, ?, ?, ?, ?)
                    """, arguments: [claim.guid, integration.rawValue, claim.deliveryID, claim.event, tx.now.epoch, Self.claimedOutcome])
                return tx.db.changesCount > 0
            }
            guard claimed else {  // another sweep asks for it
                heldElsewhere = true
                continue
            }
            do {
                try await session.redeliver(delivery)
                entry.outcome = "requested"
                metrics.reconcileRedeliveryRequested(platform: report.metricsLabel)
            } catch SourceControlError.permanent(let message) {
                entry.outcome = "refused: \(message)"  // e.g. gone from the platform's log: asking again changes nothing
            } catch {
                // Not asked: the next sweep asks. A rate limit ends the sweep; any other failure
                // is this delivery's (it was thrown, and every sweep stopped at the same one).
                try? await workspace.write { tx in
                    try tx.db.execute(sql: "DELETE FROM redelivery_requests WHERE guid = ? AND outcome = ?", arguments: [claim.guid, Self.claimedOutcome])
                }
                if Self.stopsTheSweep(error) { throw error }
                heldElsewhere = true  // the cursor stays below it
                failedResends.append((delivery.id, "\(error)"))
                // Three in a row: the platform's resend is failing, not one delivery's; the rest
                // waits for the next sweep (each call could take the whole request timeout).
                if failedResends.count >= 3 { break }
                continue
            }
            let record = entry
            try await workspace.write { tx in
                try tx.db.execute(sql: "UPDATE redelivery_requests SET outcome = ?, requested_at = ? WHERE guid = ?",
                                  arguments: [record.outcome, tx.now.epoch, record.guid])
            }
            logger.info("redelivery requested", metadata: ["delivery_id": "\(record.deliveryID)", "guid": "\(guid)", "event": "\(record.event)",
                                                          "status_code": "\(record.statusCode)", "outcome": "\(record.outcome)"])
            report.redeliveries.append(entry)
        }
        if let read = log.truncatedAfter {
            problems.append("the webhook delivery log holds more deliveries since the last sweep than one sweep reads; the newest \(read) were looked at, failed ones among the older were not resent")
        }
        // Cut short, the log is read again from the top by the next sweep (and said again).
        guard !options.dryRun, !heldElsewhere, log.truncatedAfter == nil, let next = log.cursor, next != cursor else { return }
        let window = options.redeliveryWindow
        try await workspace.write { tx in
            try tx.db.execute(sql: """
                INSERT INTO reconcile_state (integration_id, delivery_cursor) VALUES (?, ?)
                ON CONFLICT(integration_id) DO UPDATE SET delivery_cursor = excluded.delivery_cursor
                """, arguments: [integration.rawValue, next])
            // Past twice the window a delivery can neither be listed as new nor be resent: forget it.
            try tx.db.execute(sql: "DELETE FROM redelivery_requests WHERE integration_id = ? AND requested_at < ?",
                              arguments: [integration.rawValue, tx.now.epoch - 2 * window])
        }
    }

    /// Requests a run (trigger `reconcile`) for each open pull request of each enabled repository
    /// whose head has no run yet, up to `maxReviewsPerSweep`.
    /// Adds to `problems` what went wrong with single repositories (each swept on its own).
    func requestMissingReviews(session: any ReconcileSession, integration: IntegrationID, in workspace: WorkspaceActor,
                               report: inout IntegrationSweep, problems: inout [String], logger: Logger) async throws {
        let repositories = try await workspace.read { db in
            try RepositoryRecord.fetchAll(db, sql: "SELECT * FROM repositories WHERE integration_id = ? AND enabled = 1 AND removed = 0 ORDER BY id",
                                          arguments: [integration.rawValue])
        }
        report.repositories = repositories.count
        let correlationID = ServiceContext.current?.correlationID ?? "reconcile-" + RandomIdentifier.uuid()
        let dryRun = options.dryRun
        for repository in repositories {
            try await checkBudget(session)
            // Runs made after this point (a webhook for a newer head while the listing was read)
            // know more than the listing: the sweep leaves their pull requests alone. Requested
            // from the stale listing, its run of the older head superseded the newer one for good.
            let lastRunBefore = try await workspace.read { db in try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(id), 0) FROM review_runs") ?? 0 }
            let listed: OpenPullRequestList
            do {
                listed = try await session.openPullRequests(repository)
            } catch let error where !Self.stopsTheSweep(error) {
                // One repository the platform refuses (removed while Sentinel was down, its
                // installation suspended) is reported; the others are still swept.
                problems.append("\(repository.fullName): \(error)")
                logger.warning("catch-up could not list a repository's open pull requests",
                               metadata: ["repository": "\(repository.fullName)", "error": "\(error)"])
                continue
            }
            if let read = listed.truncatedAfter {
                problems.append("\(repository.fullName): more open pull requests than one sweep lists; the newest \(read) were swept, the older ones not")
            }
            let pulls = listed.pulls.filter(\.isReviewable).sorted { $0.number < $1.number }
            report.pullRequestsFound += pulls.count
            metrics.reconcilePullRequestsFound(platform: report.metricsLabel, count: pulls.count)
            let room = options.maxReviewsPerSweep - report.reviewsRequested.count
            let requested: [ReconciledReview]
            let capped: Bool
            if dryRun {
                (requested, capped) = try await workspace.read { db -> ([ReconciledReview], Bool) in
                    var out: [ReconciledReview] = []
                    for pr in pulls where !pr.headSHA.isEmpty {
                        guard try ReviewRunStore.sweepTrigger(repositoryID: repository.id, prNumber: pr.number, headSHA: pr.headSHA,
                                                              isDraft: pr.isDraft, in: db) != nil, try !Self.runMade(repositoryID: repository.id, prNumber: pr.number, after: lastRunBefore, in: db) else { continue }
                        if out.count >= room { return (out, true) }
                        out.append(ReconciledReview(repository: repository.fullName, prNumber: pr.number, headSHA: pr.headSHA, runID: nil))
                    }
                    return (out, false)
                }
            } else {
                (requested, capped) = try await workspace.write { tx -> ([ReconciledReview], Bool) in
                    // Decided in one transaction with the webhook path's own call: the repository is
                    // still enabled, the head has no run, and `request` makes the run as a webhook would.
                    guard var current = try RepositoryStore.find(id: repository.id, in: tx.db), current.enabled, !current.removed else { return ([], false) }
                    // Renamed or moved while Sentinel was down: the row takes the name the platform
                    // answers to, as the `repository` webhook would have made it.
                    if let name = listed.currentName, name != current.fullName {
                        try tx.db.execute(sql: "UPDATE repositories SET full_name = ? WHERE id = ?", arguments: [name, current.id])
                        current.fullName = name
                    }
                    var out: [ReconciledReview] = []
                    for pr in pulls where !pr.headSHA.isEmpty {
                        guard let trigger = try ReviewRunStore.sweepTrigger(repositoryID: current.id, prNumber: pr.number, headSHA: pr.headSHA,
                                                                            isDraft: pr.isDraft, in: tx.db), try !Self.runMade(repositoryID: current.id, prNumber: pr.number, after: lastRunBefore, in: tx.db) else { continue }
                        if out.count >= room { return (out, true) }
                        let (runID, created) = try ReviewRunStore.request(
                            repository: current, prNumber: pr.number, headSHA: pr.headSHA, baseSHA: pr.baseSHA.isEmpty ? nil : pr.baseSHA, trigger: trigger,
                            fullReview: false, correlationID: correlationID, in: &tx)
                        if created { out.append(ReconciledReview(repository: current.fullName, prNumber: pr.number, headSHA: pr.headSHA, runID: runID)) }
                    }
                    return (out, false)
                }
            }
            report.reviewsRequested += requested
            for review in requested where !dryRun {
                metrics.reconcileReviewRequested(platform: report.metricsLabel)
                logger.info("review requested by the catch-up sweep", metadata: [
                    "repository": "\(review.repository)", "pr": "\(review.prNumber)", "head_sha": "\(review.headSHA)", "run_id": "\(review.runID ?? 0)"])
            }
            if capped {
                throw SweepStopped(outcome: "cap_reached",
                                   reason: "reconcile.max_reviews_per_sweep (\(options.maxReviewsPerSweep)) reached; the rest is requested by the next sweeps")
            }
        }
    }
}

/// The catch-up sweep inside `serve`'s `ServiceGroup`: soon after start (a random delay of up to
/// 10% of the interval, at most 30 s, so several appliances do not sweep in step) and then every
/// `reconcile.interval_seconds` ±10%. Workspaces are swept one after the other; the reviews it
/// requests go through the normal job queue at normal priority, so a sweep after a long outage is
/// throttled like any burst of webhooks. On graceful shutdown a sweep in progress is cancelled
/// (each request of a run is its own transaction, so nothing is half done).
public struct ReconcileService: Service {
    let reconciler: Reconciler
    let supervisor: Supervisor
    let control: ControlStore
    let interval: TimeInterval
    let logger: Logger

    public init(reconciler: Reconciler, supervisor: Supervisor, control: ControlStore, interval: TimeInterval, logger: Logger) {
        self.reconciler = reconciler
        self.supervisor = supervisor
        self.control = control
        self.interval = interval
        self.logger = logger
    }

    /// Seconds to wait before the first sweep (`first`) or between two sweeps.
    public static func delay(interval: TimeInterval, first: Bool) -> TimeInterval {
        first ? Double.random(in: 0...min(30, interval * 0.1)) : interval * Double.random(in: 0.9...1.1)
    }

    public func run() async throws {
        var first = true
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            let wait = Self.delay(interval: interval, first: first)
            first = false
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(wait)) }
            } catch {
                return  // shutting down
            }
            let sweep = self
            _ = await cancelWhenGracefulShutdown { await sweep.sweepAll() }
        }
    }

    /// One sweep of every registered workspace (an offline one is reported and skipped).
    public func sweepAll() async -> ReconcileReport {
        var report = ReconcileReport(dryRun: reconciler.options.dryRun)
        let ids: [WorkspaceID]
        do { ids = try control.workspaceIDs() } catch {
            logger.error("catch-up sweep: cannot list workspaces", metadata: ["error": "\(error)"])
            return report
        }
        for id in ids {
            if Task.isCancelled { break }
            do {
                let logger = self.logger.with(["workspace_id": id.rawValue])
                let reconciler = self.reconciler
                report.integrations += try await supervisor.withWorkspace(id) { try await reconciler.sweep($0, logger: logger) }
            } catch {
                report.failures[id.rawValue] = "\(error)"
                logger.warning("catch-up sweep skipped a workspace", metadata: ["workspace_id": "\(id)", "error": "\(error)"])
            }
        }
        return report
    }
}
