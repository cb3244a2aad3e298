import Foundation
import GRDB
import HTTPTypes
import SentinelCore

extension APIOperations {
    struct RunBody: Decodable { let repository_id: Int64; let pr_number: Int; let full_review: Bool? }

    static func reviews() -> [APIOperation] {
        [
            APIOperation(method: .get, path: "/workspaces/{workspaceId}/runs", id: "listRuns", tag: "runs",
                         summary: "Review runs, newest first, filtered by repository, pull request and state.", access: .workspace(.viewer, .read),
                         query: [QueryParameter(name: "repository_id", schema: .integer(minimum: 1), description: "only this repository"),
                                 QueryParameter(name: "pr", schema: .integer(minimum: 1), description: "only this pull request (with repository_id)"),
                                 QueryParameter(name: "state", schema: .string(values: RunState.allCases.map(\.rawValue)), description: "only runs in this state"),
                                 limitParameter, QueryParameter(name: "cursor", schema: .string(maxLength: 20, pattern: "^[0-9]+$"),
                                                                description: "next_cursor of the previous page")],
                         status: .ok, response: .ref("RunPage")) { d, call, actor in
                let limit = page(call)
                let (repo, pr, state, before) = (call.queryInt("repository_id"), call.queryInt("pr"), call.query["state"],
                                                 Int64(call.query["cursor"] ?? "") ?? Int64.max)
                let runs = try await actor!.read { db -> [APIModels.RunOut] in
                    var sql = "SELECT r.*, p.full_name AS repository_name FROM review_runs r JOIN repositories p ON p.id = r.repository_id WHERE r.id < ?"
                    var args: [any DatabaseValueConvertible] = [before]
                    if let repo { sql += " AND r.repository_id = ?"; args.append(repo) }
                    if let pr { sql += " AND r.pr_number = ?"; args.append(pr) }
                    if let state { sql += " AND r.state = ?"; args.append(state) }
                    sql += " ORDER BY r.id DESC LIMIT ?"
                    args.append(limit + 1)
                    return try Row.fetchAll(db, sql: sql, arguments: StatementArguments(args)).map { row in
                        APIModels.RunOut(try ReviewRun(row: row), repository: row["repository_name"])
                    }
                }
                return .json(.ok, Page(items: Array(runs.prefix(limit)), nextCursor: runs.count > limit ? String(runs[limit - 1].id) : nil))
            },
            APIOperation(method: .post, path: "/workspaces/{workspaceId}/runs", id: "requestRun", tag: "runs",
                         summary: "Request a review of a pull request now (members). Answers 202 at once with the run id; the review is a job.",
                         access: .workspace(.member, .write),
                         body: .object([Property("repository_id", .integer(minimum: 1)), Property("pr_number", .integer(minimum: 1, maximum: 1_000_000_000)),
                                        Property("full_review", .boolean, required: false, "review every file, not only what changed since the last review")]),
                         status: .accepted, response: .ref("RunAccepted")) { d, call, actor in
                let body = try call.decode(RunBody.self)
                let (by, correlation) = (call.actor, call.correlationID)
                let (runID, created) = try await actor!.write { tx -> (Int64, Bool) in
                    guard let repo = try RepositoryStore.find(id: body.repository_id, in: tx.db), !repo.removed else {
                        throw StorageError.notFound("no such repository")
                    }
                    guard repo.enabled else { throw StorageError.conflict("repository \(repo.fullName) is disabled; enable it first") }
                    let result = try ReviewRunStore.request(repository: repo, prNumber: body.pr_number, headSHA: "", baseSHA: nil,
                                                            trigger: "manual:\(UUID().uuidString.lowercased())", fullReview: body.full_review ?? false,
                                                            correlationID: correlation, in: &tx)
                    try tx.append(DomainEvent(type: "RunRequested", subject: "run:\(result.0)", payload: [
                        "repository": repo.fullName, "pr_number": String(body.pr_number), "by": by]))
                    return result
                }
                return .json(.accepted, APIModels.RunAccepted(runID: runID, created: created))
            },
            APIOperation(method: .get, path: "/workspaces/{workspaceId}/runs/{runId}", id: "getRun", tag: "runs",
                         summary: "A run with its findings and the policy snapshot it used.", access: .workspace(.viewer, .read),
                         status: .ok, response: .ref("RunDetail")) { d, call, actor in
                let id = try call.pathInt("runId", what: "run")
                return .json(.ok, try await actor!.read { db -> APIModels.RunDetailOut in
                    guard let run = try ReviewRunStore.find(id, in: db) else { throw StorageError.notFound("no such run") }
                    let repo = try RepositoryStore.find(id: run.repositoryID, in: db)
                    let findings = try Row.fetchAll(db, sql: "SELECT * FROM findings WHERE run_id = ? ORDER BY id", arguments: [id]).map {
                        APIModels.FindingOut(id: $0["id"], path: $0["path"], line: $0["line"], startLine: $0["start_line"], side: $0["side"],
                                             severity: $0["severity"], category: $0["category"], title: $0["title"], body: $0["body"],
                                             suggestion: $0["suggestion"], source: $0["source"])
                    }
                    let versions = run.policyVersions.flatMap { try? JSONDecoder().decode([String: String].self, from: Data($0.utf8)) }
                    return APIModels.RunDetailOut(run: .init(run, repository: repo?.fullName ?? ""), summary: run.summary, findings: findings,
                                                  policySHA256: run.policySHA256, policyVersions: versions,
                                                  policySnapshot: JSONValueOut(text: run.policySnapshot))
                })
            },
            APIOperation(method: .post, path: "/workspaces/{workspaceId}/runs/{runId}/cancel", id: "cancelRun", tag: "runs",
                         summary: "Cancel a queued or running run (members); it ends skipped. A finished run answers 409.",
                         access: .workspace(.member, .write), status: .ok, response: .ref("Run")) { d, call, actor in
                let id = try call.pathInt("runId", what: "run")
                let by = call.actor
                return .json(.ok, try await actor!.write { tx -> APIModels.RunOut in
                    guard let run = try ReviewRunStore.find(id, in: tx.db) else { throw StorageError.notFound("no such run") }
                    guard try ReviewRunStore.finish(runID: id, state: .skipped, reason: "cancelled by \(by)", in: &tx) else {
                        throw StorageError.conflict("run \(id) already ended (\(run.state.rawValue))")
                    }
                    try tx.append(DomainEvent(type: "RunCancelled", subject: "run:\(id)", payload: ["by": by]))
                    let repo = try RepositoryStore.find(id: run.repositoryID, in: tx.db)
                    return APIModels.RunOut(try ReviewRunStore.find(id, in: tx.db)!, repository: repo?.fullName ?? "")
                })
            },
            APIOperation(method: .get, path: "/workspaces/{workspaceId}/usage", id: "getUsage", tag: "usage",
                         summary: "Runs by state and AI usage of a billing period (calendar month, UTC), with the plan's limits for the current one.",
                         access: .workspace(.viewer, .read),
                         query: [QueryParameter(name: "period", schema: .string(pattern: "^[0-9]{4}-[0-9]{2}$"), description: "YYYY-MM (default: this month)")],
                         status: .ok, response: .ref("Usage")) { d, call, actor in
                let period = call.query["period"] ?? UsageReport.currentPeriod()
                guard UsageReport.bounds(ofPeriod: period) != nil else { throw Problem(status: .badRequest, detail: "period: not a month (YYYY-MM)") }
                let plan = try await d.billing.plan(for: call.workspaceID!)
                let id = call.workspaceID!
                return .json(.ok, try await actor!.read { db -> UsageReport in
                    var report = try UsageReport.make(workspace: id, period: period, in: db)
                    report.plan = plan.name
                    if period == UsageReport.currentPeriod() { report.limits = try PlanLimits.status(plan: plan, in: db, now: Date()) }
                    return report
                })
            },
            APIOperation(method: .get, path: "/workspaces/{workspaceId}/analytics", id: "getAnalytics", tag: "analytics",
                         summary: "Daily rollups per repository: runs by outcome, findings by severity and category, tokens, cost, duration p50/p95.",
                         access: .workspace(.viewer, .read),
                         query: [QueryParameter(name: "from", schema: .string(pattern: "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"), description: "first day (default: 30 days ago)"),
                                 QueryParameter(name: "to", schema: .string(pattern: "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"), description: "last day (default: today)"),
                                 QueryParameter(name: "repository", schema: .string(minLength: 1, maxLength: 300), description: "only this repository (owner/name)")],
                         status: .ok, response: .ref("RollupPage")) { d, call, actor in
                let now = Date()
                let from = call.query["from"] ?? String(ISO8601.string(now.addingTimeInterval(-30 * 86_400)).prefix(10))
                let to = call.query["to"] ?? String(ISO8601.string(now).prefix(10))
                let repository = call.query["repository"]
                // Fold what the listener has not folded yet, so the numbers are current.
                try await actor!.write { tx in try Rollups.catchUp(in: tx.db) }
                let rollups = try await actor!.read { db in try Rollups.query(from: from, to: to, repository: repository, in: db) }
                return .json(.ok, Page(items: rollups, nextCursor: nil))
            },
        ]
    }
}
