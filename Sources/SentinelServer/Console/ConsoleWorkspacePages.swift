import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import SentinelCore

/// The workspace overview and the runs pages.
extension Console {
    func addWorkspacePages(to router: Router<SentinelRequestContext>) {
        router.get("/workspaces/:workspaceId") { request, context in
            try await page(request, context) { visit in try await member(visit, context, operation: "getUsage") { m in try await overview(m) } }
        }
        router.get("/workspaces/:workspaceId/runs") { request, context in
            try await page(request, context) { visit in try await member(visit, context, operation: "listRuns") { m in try await runsPage(m) } }
        }
        router.get("/workspaces/:workspaceId/runs/:runId") { request, context in
            let run = context.parameters.get("runId") ?? ""
            return try await page(request, context) { visit in
                try await member(visit, context, operation: "getRun") { m in try await runPage(m, try PathID.parse(run, what: "run")) }
            }
        }
        router.post("/workspaces/:workspaceId/runs/:runId/rerun") { request, context in
            let run = context.parameters.get("runId") ?? ""
            return try await page(request, context) { visit in
                let form = try await self.form(visit)
                return try await member(visit, context, operation: "requestRun") { m in
                    try await rerun(m, try PathID.parse(run, what: "run"), correlationID: context.correlationID, fullReview: form["full_review"] == "1")
                }
            }
        }
        router.post("/workspaces/:workspaceId/runs/:runId/cancel") { request, context in
            let run = context.parameters.get("runId") ?? ""
            return try await page(request, context) { visit in
                _ = try await self.form(visit)
                return try await member(visit, context, operation: "cancelRun") { m in try await cancel(m, try PathID.parse(run, what: "run")) }
            }
        }
    }

    // MARK: Overview

    struct OverviewData: Sendable {
        let report: UsageReport
        let limits: [PlanLimitStatus]
        let rollups: [DailyRollup]
        let monthFindings: Int
        /// Reviews started this month, as the plan's limit counts them (runs skipped or superseded
        /// before they started are not reviews).
        let reviewsStarted: Int
        let latest: [ReviewRun]
        let failed: [ReviewRun]
        let dead: [JobRecord]
        let names: [Int64: String]
        /// Repositories of GitLab integrations: their merge requests are `MR !N`.
        let onGitLab: Set<Int64>
    }

    /// The last `count` days (UTC) ending today, as `YYYY-MM-DD`.
    static func days(_ count: Int, endingAt now: Date) -> [String] {
        (0..<count).reversed().map { String(ISO8601.string(now.addingTimeInterval(-Double($0) * 86_400)).prefix(10)) }
    }

    func overview(_ m: Member) async throws -> Response {
        let plan = try await d.billing.plan(for: m.id)
        let now = Date()
        let period = UsageReport.currentPeriod(now: now)
        let days = Self.days(30, endingAt: now)
        let id = m.id
        // Fold what the listener has not folded yet, so the numbers are current (as the API does).
        try await m.workspace.write { tx in try Rollups.catchUp(in: tx.db) }
        let data = try await m.workspace.read { db -> OverviewData in
            let month = try Rollups.query(from: period + "-01", to: days[days.count - 1], in: db)
            return OverviewData(
                report: try UsageReport.make(workspace: id, period: period, in: db),
                limits: try PlanLimits.status(plan: plan, in: db, now: now),
                rollups: try Rollups.query(from: days[0], to: days[days.count - 1], in: db),
                monthFindings: month.reduce(0) { $0 + $1.findings },
                reviewsStarted: try PlanLimits.reviewsUsed(excluding: nil, in: db, now: now),
                latest: try ReviewRunStore.list(in: db, limit: 10),
                failed: try ReviewRunStore.list(in: db, state: .failed, limit: 5),
                dead: try JobQueue.list(state: .dead, limit: 20, in: db),
                names: Dictionary(try RepositoryStore.all(in: db).map { ($0.id, $0.fullName) }) { a, _ in a },
                onGitLab: Set(try Int64.fetchAll(db, sql: """
                    SELECT r.id FROM repositories r JOIN integrations i ON i.id = r.integration_id WHERE i.kind IN ('gitlab', 'removed:gitlab')
                    """)))
        }
        var attention: [[String: Any]] = []
        for run in data.failed {
            let change = data.onGitLab.contains(run.repositoryID) ? "MR !\(run.prNumber)" : "PR #\(run.prNumber)"
            attention.append(["text": "Run #\(run.id) of \(data.names[run.repositoryID] ?? "?") \(change) failed: \(run.reason ?? "no reason recorded")",
                              "href": "\(m.base)/runs/\(run.id)"])
        }
        for job in data.dead {
            attention.append(["text": "Job #\(job.id) (\(job.kind)) is dead after \(job.attempts) attempts: \(job.lastError ?? "no error recorded")"])
        }
        for limit in data.limits where limit.softLimitReached {
            // Reached or past it, said so (it read "nearly reached: 12 of 3").
            let how = limit.used > limit.allowed ? "is exceeded" : limit.used == limit.allowed ? "is reached" : "is nearly reached"
            attention.append(["text": "The plan's \(limit.limit) limit \(how): \(limit.used) of \(limit.allowed)"])
        }
        for signal in try await operationalAttention(m) { attention.append(signal) }
        func perDay(_ value: (DailyRollup) -> Double) -> [Double] {
            days.map { day in data.rollups.filter { $0.day == day }.reduce(0) { $0 + value($1) } }
        }
        let severities = Severity.allCases.reversed().map(\.rawValue)
        let runsChart = ConsoleCharts.bars(id: "runs-chart", title: "Review runs per day", days: days,
                                           series: [.init(name: "runs", style: "s-runs", values: perDay { Double($0.runs) })],
                                           format: { String(Int($0)) })
        let findingsChart = ConsoleCharts.bars(
            id: "findings-chart", title: "Findings per day by severity", days: days,
            series: severities.map { severity in
                .init(name: severity, style: "s-\(severity)", values: perDay { Double($0.findingsBySeverity[severity] ?? 0) })
            }, format: { String(Int($0)) })
        let costChart = ConsoleCharts.bars(id: "cost-chart", title: "Estimated AI cost per day (USD)", days: days,
                                           series: [.init(name: "cost", style: "s-cost", values: perDay { NSDecimalNumber(decimal: $0.costUSD).doubleValue })],
                                           format: { String(format: "$%.2f", $0) })
        let values: [String: Any] = [
            "period": period, "plan": plan.name,
            "reviews": data.reviewsStarted,
            "findings": data.monthFindings,
            "tokens": data.report.inputTokens + data.report.outputTokens,
            "cost": "$" + data.report.costUSD.dollarText,
            "limits": data.limits.map {
                ["limit": $0.limit, "used": $0.used, "allowed": $0.allowed, "soft": $0.softLimitReached, "full": $0.used >= $0.allowed] as [String: Any]
            },
            "attention": attention,
            "runsChart": runsChart, "findingsChart": findingsChart, "costChart": costChart,
            "runs": data.latest.map { runRow($0, data.names) },
        ]
        return try render("overview", title: "\(m.record.name): overview", values, visit: m.visit, member: m)
    }

    func runRow(_ run: ReviewRun, _ names: [Int64: String]) -> [String: Any] {
        ["id": run.id, "repository": names[run.repositoryID] ?? "", "pr": run.prNumber, "state": run.state.rawValue,
         "created": Self.date(run.createdAt) ?? ""]
    }

    // MARK: Runs

    static let runsPerPage = 25

    func runsPage(_ m: Member) async throws -> Response {
        let query = ConsoleQuery(m.visit.request)
        let repositoryID = try query.value("repository", "a repository id", { Int64($0) })
        let state = try query.value("state", "one of " + RunState.allCases.map(\.rawValue).joined(separator: ", "), { RunState(rawValue: $0) })
        let pr = try query.value("pr", "a pull request number", { Int($0).flatMap { $0 > 0 ? $0 : nil } })
        let before = try query.value("before", "a run id", { Int64($0) }) ?? .max
        let limit = Self.runsPerPage
        let (runs, repositories) = try await m.workspace.read { db in
            (try ReviewRunStore.list(in: db, before: before, repositoryID: repositoryID, prNumber: pr, state: state, limit: limit + 1),
             try RepositoryStore.all(in: db))
        }
        let names = Dictionary(repositories.map { ($0.id, $0.fullName) }) { a, _ in a }
        var data: [String: Any] = [
            "runs": runs.prefix(limit).map { runRow($0, names) },
            "repositories": repositories.map { ["id": $0.id, "name": $0.fullName, "selected": $0.id == repositoryID] as [String: Any] },
            "states": RunState.allCases.map { ["name": $0.rawValue, "selected": $0 == state] as [String: Any] },
        ]
        if let pr { data["pr"] = pr }
        // An empty page of a filter (or of a later page) is not a workspace without runs.
        data["filtered"] = repositoryID != nil || state != nil || pr != nil || before != .max
        if runs.count > limit, let last = runs.prefix(limit).last {
            var items = [URLQueryItem(name: "before", value: String(last.id))]
            if let repositoryID { items.append(.init(name: "repository", value: String(repositoryID))) }
            if let state { items.append(.init(name: "state", value: state.rawValue)) }
            if let pr { items.append(.init(name: "pr", value: String(pr))) }
            var components = URLComponents()
            components.queryItems = items
            data["next"] = "\(m.base)/runs?\(components.percentEncodedQuery ?? "")"
        }
        return try render("runs", title: "Runs", data, visit: m.visit, member: m)
    }

    struct RunData: Sendable {
        let run: ReviewRun
        let repository: RepositoryRecord?
        let findings: [StoredFinding]
        let calls: [UsageCall]
        let history: [RunHistoryEntry]
    }

    func runPage(_ m: Member, _ id: Int64) async throws -> Response {
        let found = try await m.workspace.read { db -> RunData in
            guard let run = try ReviewRunStore.find(id, in: db) else { throw StorageError.notFound("no such run") }
            return RunData(run: run, repository: try RepositoryStore.find(id: run.repositoryID, in: db), findings: try ReviewRunStore.findings(ofRun: id, in: db),
                           calls: try UsageCall.list(ofRun: id, in: db), history: try ReviewRunStore.history(ofRun: id, in: db) ?? [])
        }
        let run = found.run
        let fullName = found.repository?.fullName ?? ""
        var runData: [String: Any] = ["id": run.id, "repository": fullName, "pr": run.prNumber, "state": run.state.rawValue,
                                      "trigger": run.trigger, "head": run.headSHA.isEmpty ? "(not yet known)" : run.headSHA,
                                      "created": Self.date(run.createdAt) ?? ""]
        if let reason = run.reason { runData["reason"] = reason }
        if let conclusion = run.conclusion { runData["conclusion"] = conclusion }
        if let started = Self.date(run.startedAt) { runData["started"] = started }
        if let finished = Self.date(run.finishedAt) { runData["finished"] = finished }
        var data: [String: Any] = [
            "run": runData,
            "canRequest": allowed("requestRun", m.role),
            "cancellable": !run.state.isFinal && allowed("cancelRun", m.role),
            "findings": found.findings.map { f -> [String: Any] in
                var item: [String: Any] = ["severity": f.severity, "title": f.title, "body": f.body, "category": f.category, "source": f.source,
                                           "posted": f.posted,
                                           "location": f.line.map { "\(f.path):\(f.startLine.map { "\($0)-" } ?? "")\($0)" } ?? f.path]
                if let suggestion = f.suggestion { item["suggestion"] = suggestion }
                return item
            },
        ]
        data["history"] = found.history.map { h -> [String: Any] in
            var item: [String: Any] = ["at": Self.date(h.at.timeIntervalSince1970) ?? "", "state": h.state, "what": h.what]
            if let by = h.by { item["by"] = by }
            if let reason = h.reason { item["reason"] = reason }
            return item
        }
        data["calls"] = found.calls.map { c -> [String: Any] in
            ["provider": c.provider, "model": c.model, "input": c.inputTokens, "output": c.outputTokens,
             "cost": String(format: "$%.4f", c.costUSD), "duration": "\(c.durationMs) ms"]
        }
        if let reviewed = run.filesReviewed, let total = run.filesTotal {
            data["coverage"] = reviewed == total ? "Reviewed all \(total) changed files." : "Reviewed \(reviewed) of \(total) changed files."
        }
        if let summary = run.summary, !summary.isEmpty { data["summary"] = summary }
        if let sha = run.policySHA256 { data["policySHA"] = sha }
        if let snapshot = run.policySnapshot {
            let pretty = (try? JSONSerialization.jsonObject(with: Data(snapshot.utf8)))
                .flatMap { try? JSONSerialization.data(withJSONObject: $0, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]) }
            data["policy"] = pretty.map { String(decoding: $0, as: UTF8.self) } ?? snapshot
        }
        // A GitLab merge request is named as GitLab names it (`!N`), not as a pull request.
        var integration: IntegrationSummary?
        if let repository = found.repository {
            integration = try await d.integrations.list(in: m.workspace).first { $0.id == repository.integrationID }
        }
        // (A removed integration is not listed: its repository's platform is still GitLab.)
        let platform = try await m.workspace.read { db in try RepositoryStore.platforms(in: db)[run.repositoryID] }
        let isGitLab = (integration?.kind ?? platform) == "gitlab"
        runData["change"] = isGitLab ? "MR !\(run.prNumber)" : "PR #\(run.prNumber)"
        data["run"] = runData
        data["changeKind"] = isGitLab ? "Merge request" : "Pull request"
        if let repository = found.repository, let url = integration?.pullRequestURL(repository: repository.fullName, number: run.prNumber) {
            data["prURL"] = url.absoluteString
        }
        return try render("run", title: "Run #\(run.id)", data, visit: m.visit, member: m)
    }

    /// A new run of the same pull request (`ReviewRunStore.requestManual`, as `POST …/runs`).
    func rerun(_ m: Member, _ id: Int64, correlationID: String, fullReview: Bool) async throws -> Response {
        let by = m.actorName
        let (runID, _) = try await m.workspace.write { tx -> (Int64, Bool) in
            guard let old = try ReviewRunStore.find(id, in: tx.db) else { throw StorageError.notFound("no such run") }
            return try ReviewRunStore.requestManual(repositoryID: old.repositoryID, prNumber: old.prNumber, fullReview: fullReview, by: by,
                                                    correlationID: correlationID, in: &tx)
        }
        return Self.redirect("\(m.base)/runs/\(runID)")
    }

    /// Cancels a run that has not ended (`ReviewRunStore.cancel`, as `POST …/runs/{id}/cancel`).
    func cancel(_ m: Member, _ id: Int64) async throws -> Response {
        let by = m.actorName
        try await m.workspace.write { tx in _ = try ReviewRunStore.cancel(runID: id, by: by, in: &tx) }
        return Self.redirect("\(m.base)/runs/\(id)")
    }
}

extension Console {
    /// What the server wrote down about this workspace (`OperationalSignals`): integrations whose
    /// webhooks keep failing authentication (refused within a week, none accepted since) and AI
    /// providers whose circuit is open.
    func operationalAttention(_ m: Member) async throws -> [[String: Any]] {
        let signals = OperationalSignals(control: d.control)
        let refused = try signals.refusedDeliveries(workspaceID: m.id)
        let circuits = try signals.openCircuits(workspaceID: m.id)
        let ids = refused.map(\.integrationID)
        let accepted = try await m.workspace.read { db in
            try ids.compactMap { id in try DeliverySummary.latest(integrationID: id, in: db).map { (id, $0.receivedAt) } }
        }
        let lastAccepted = Dictionary(accepted) { a, _ in a }
        var items: [[String: Any]] = []
        for r in refused where (lastAccepted[r.integrationID] ?? 0) < r.lastFailedAt.timeIntervalSince1970 {
            items.append(["text": "Integration \(r.integrationID): \(r.failures) webhook deliveries refused for their signature or token, "
                          + "the last at \(Self.date(r.lastFailedAt.timeIntervalSince1970) ?? ""), none accepted since: the webhook's secret "
                          + "does not match the integration's.",
                          "href": "\(m.base)/integrations/\(r.integrationID)"])
        }
        for c in circuits {
            items.append(["text": "AI provider \(c.providerID)'s circuit is open until \(Self.date(c.retryAt.timeIntervalSince1970) ?? "") "
                          + "(its last calls failed; reviews use the next provider meanwhile).",
                          "href": "\(m.base)/providers"])
        }
        return items
    }
}
