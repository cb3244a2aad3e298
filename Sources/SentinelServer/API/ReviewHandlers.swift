import Foundation
import GRDB
import SentinelCore

/// Review runs (list, request, show, cancel), usage and analytics.
struct ReviewHandlers: Sendable {
    let d: APIDependencies

    static func run(_ r: ReviewRun, repository: String, platform: String?) throws -> Components.Schemas.Run {
        guard let state = Components.Schemas.Run.StatePayload(rawValue: r.state.rawValue) else {
            throw StorageError.invalid("run \(r.id) has the unknown state \(r.state.rawValue)")
        }
        return .init(conclusion: r.conclusion, createdAt: Date(epoch: r.createdAt), filesReviewed: r.filesReviewed, filesTotal: r.filesTotal,
                     finishedAt: r.finishedAt.map(Date.init(epoch:)), headSha: r.headSHA, id: Int(r.id),
                     platform: Components.Schemas.Run.PlatformPayload(rawValue: platform ?? "github") ?? .github, prNumber: r.prNumber,
                     reason: r.reason, repository: repository, repositoryId: Int(r.repositoryID), startedAt: r.startedAt.map(Date.init(epoch:)),
                     state: state, trigger: r.trigger)
    }

    /// A run as the API shows it, its repository's name and platform read in `db`.
    static func run(_ r: ReviewRun, in db: Database) throws -> Components.Schemas.Run {
        try run(r, repository: try RepositoryStore.find(id: r.repositoryID, in: db)?.fullName ?? "",
                platform: try RepositoryStore.platforms(in: db)[r.repositoryID])
    }

    func listRuns(_ input: Operations.ListRuns.Input, _ context: WorkspaceContext) async throws -> Operations.ListRuns.Output {
        let window = PageWindow(input.query.limit)
        let query = input.query
        let before = try PageWindow.position(query.cursor, start: .max)
        let state = query.state.flatMap { RunState(rawValue: $0.rawValue) }
        let (runs, names, platforms) = try await context.workspace.read { db in
            let runs = try ReviewRunStore.list(in: db, before: before, repositoryID: query.repositoryId.map(Int64.init), prNumber: query.pr,
                                               state: state, limit: window.limit + 1)
            let names = Dictionary(try RepositoryStore.all(in: db).map { ($0.id, $0.fullName) }) { a, _ in a }
            return (runs, names, try RepositoryStore.platforms(in: db))
        }
        let items = try window.items(runs).map { try Self.run($0, repository: names[$0.repositoryID] ?? "", platform: platforms[$0.repositoryID]) }
        return .ok(.init(body: .json(.init(items: items, nextCursor: window.nextCursor(runs) { String($0.id) }))))
    }

    func requestRun(_ input: Operations.RequestRun.Input, _ context: WorkspaceContext) async throws -> Operations.RequestRun.Output {
        guard case .json(let body) = input.body else { throw Problem(status: .badRequest, detail: "a JSON body is required") }
        let (by, correlation) = (context.actorName, context.request.correlationID)
        let (runID, created) = try await context.workspace.write { tx -> (Int64, Bool) in
            try ReviewRunStore.requestManual(repositoryID: Int64(body.repositoryId), prNumber: body.prNumber, fullReview: body.fullReview ?? false,
                                             by: by, correlationID: correlation, in: &tx)
        }
        return .accepted(.init(body: .json(.init(created: created, runId: Int(runID)))))
    }

    func getRun(_ input: Operations.GetRun.Input, _ context: WorkspaceContext) async throws -> Operations.GetRun.Output {
        let id = try PathID.parse(input.path.runId, what: "run")
        let (run, shown, findings) = try await context.workspace.read { db in
            guard let run = try ReviewRunStore.find(id, in: db) else { throw StorageError.notFound("no such run") }
            return (run, try Self.run(run, in: db), try ReviewRunStore.findings(ofRun: id, in: db))
        }
        let versions = run.policyVersions.flatMap { try? JSONDecoder().decode([String: String].self, from: Data($0.utf8)) }
        let detail = Components.Schemas.RunDetail(
            findings: findings.map {
                .init(body: $0.body, category: $0.category, id: Int($0.id), line: $0.line, path: $0.path, severity: $0.severity, side: $0.side,
                      source: $0.source, startLine: $0.startLine, suggestion: $0.suggestion, title: $0.title)
            },
            policySha256: run.policySHA256, policySnapshot: try JSONValue(text: run.policySnapshot).map { try .converted(from: $0) },
            policyVersions: versions.map { .init(additionalProperties: $0) }, run: shown,
            summary: run.summary)
        return .ok(.init(body: .json(detail)))
    }

    func cancelRun(_ input: Operations.CancelRun.Input, _ context: WorkspaceContext) async throws -> Operations.CancelRun.Output {
        let id = try PathID.parse(input.path.runId, what: "run")
        let by = context.actorName
        let shown = try await context.workspace.write { tx -> Components.Schemas.Run in
            try Self.run(try ReviewRunStore.cancel(runID: id, by: by, in: &tx), in: tx.db)
        }
        return .ok(.init(body: .json(shown)))
    }

    func getUsage(_ input: Operations.GetUsage.Input, _ context: WorkspaceContext) async throws -> Operations.GetUsage.Output {
        let period = input.query.period ?? UsageReport.currentPeriod()
        guard UsageReport.bounds(ofPeriod: period) != nil else {
            // `1969-12` is a month, just none Sentinel records: said so, not "not a month".
            throw Problem(status: .badRequest, detail: "period: not a month from 1970-01 to 9999-12 in the form YYYY-MM")
        }
        let plan = try await d.billing.plan(for: context.workspaceID)
        let id = context.workspaceID
        let report = try await context.workspace.read { db -> UsageReport in
            var report = try UsageReport.make(workspace: id, period: period, in: db)
            report.plan = plan.name
            if period == UsageReport.currentPeriod() { report.limits = try PlanLimits.status(plan: plan, in: db, now: Date()) }
            return report
        }
        return .ok(.init(body: .json(try .converted(from: report))))
    }

    func getAnalytics(_ input: Operations.GetAnalytics.Input, _ context: WorkspaceContext) async throws -> Operations.GetAnalytics.Output {
        let (from, to) = try Rollups.days(from: input.query.from, to: input.query.to)
        let repository = input.query.repository
        // Fold what the listener has not folded yet, so the numbers are current.
        try await context.workspace.write { tx in try Rollups.catchUp(in: tx.db) }
        let (rollups, platforms) = try await context.workspace.read { db in
            let platforms = try RepositoryStore.platforms(in: db)
            let byName = Dictionary(try RepositoryStore.all(in: db).compactMap { repo in platforms[repo.id].map { (repo.fullName, $0) } }) { a, _ in a }
            return (try Rollups.query(from: from, to: to, repository: repository, in: db), byName)
        }
        let items = try rollups.map { rollup -> Components.Schemas.DailyRollup in
            var item = try Components.Schemas.DailyRollup.converted(from: rollup)
            item.platform = platforms[rollup.repository].flatMap(Components.Schemas.DailyRollup.PlatformPayload.init(rawValue:))
            return item
        }
        return .ok(.init(body: .json(.init(items: items))))
    }
}
