import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import SentinelCore

/// The appliance admin's pages: health, users, plans per workspace, dead jobs. Each needs what its
/// API operation needs (`appliance-admin`); there is no API operation for dead jobs or health,
/// which are the `sentinel workspace jobs` and `/readyz` equivalents, so they take an appliance
/// admin as well.
extension Console {
    func addAdminPages(to router: Router<SentinelRequestContext>) {
        router.get("/admin") { request, context in
            try await page(request, context) { visit in try await health(visit, try admin(visit, "listUsers")) }
        }
        router.get("/admin/users") { request, context in
            try await page(request, context) { visit in try usersPage(visit, try admin(visit, "listUsers")) }
        }
        router.post("/admin/users") { request, context in
            try await page(request, context) { visit in
                let form = try await self.form(visit)
                _ = try admin(visit, "createUser")
                let (email, password, isAdmin) = (try form.required("email", "The email"), form["password"] ?? "", form["is_admin"] == "1")
                let identity = d.identity
                _ = try await identity.passwords.run { try identity.createUser(email: email, password: password, isAdmin: isAdmin) }
                return Self.redirect("/admin/users")
            }
        }
        router.get("/admin/workspaces") { request, context in
            try await page(request, context) { visit in try workspacePlansPage(visit, try admin(visit, "setWorkspacePlan")) }
        }
        router.post("/admin/workspaces/:workspaceId/plan") { request, context in
            try await page(request, context) { visit in
                let form = try await self.form(visit)
                _ = try admin(visit, "setWorkspacePlan")
                guard let id = context.parameters.get("workspaceId").flatMap(WorkspaceID.init), try d.control.workspace(id) != nil else {
                    throw ConsoleError(status: .notFound, heading: "Page not found", message: "There is no such workspace.")
                }
                try BuiltinBillingProvider(control: d.control, catalog: d.catalog).assign(try form.required("plan", "The plan"), to: id)
                return Self.redirect("/admin/workspaces")
            }
        }
        router.get("/admin/jobs") { request, context in
            try await page(request, context) { visit in try await deadJobsPage(visit, try admin(visit, "listUsers")) }
        }
        router.post("/admin/jobs/:workspaceId/:jobId/:action") { request, context in
            try await page(request, context) { visit in
                _ = try await self.form(visit)
                _ = try admin(visit, "listUsers")
                guard let id = context.parameters.get("workspaceId").flatMap(WorkspaceID.init), try d.control.workspace(id) != nil,
                      let job = context.parameters.get("jobId").flatMap({ Int64($0) }) else {
                    throw ConsoleError(status: .notFound, heading: "Page not found", message: "There is no such job.")
                }
                let action = context.parameters.get("action")
                guard action == "retry" || action == "discard" else {
                    throw ConsoleError(status: .notFound, heading: "Page not found", message: "There is no such action.")
                }
                let done = try await supervisor.withWorkspace(id) { actor in
                    action == "retry" ? try await actor.retryDeadJob(job) : try await actor.discardDeadJob(job)
                }
                guard done else { throw StorageError.conflict("job \(job) is not dead (it was retried or discarded already)") }
                return Self.redirect("/admin/jobs")
            }
        }
    }

    /// A signed-in appliance admin, for an operation the API document reserves to them.
    func admin(_ visit: Visit, _ operationID: String) throws -> Principal {
        let principal = try signedIn(visit)
        try requireAdmin(operationID, principal)
        return principal
    }

    func health(_ visit: Visit, _ principal: Principal) async throws -> Response {
        let storage = (try? d.control.read { db in try Int.fetchOne(db, sql: "SELECT 1") }) == 1
        let workers = await scheduler.isRunning
        let records = try d.workspaces.list()
        let names = Dictionary(records.map { ($0.id, $0.name) }) { a, _ in a }
        let open = await supervisor.openWorkspaceIDs.count
        var offline: [[String: Any]] = []
        for id in await supervisor.offlineWorkspaceIDs {
            offline.append(["name": names[id.rawValue] ?? id.rawValue, "reason": await supervisor.offlineReason(id) ?? "unknown"])
        }
        let free = (try? FileManager.default.attributesOfFileSystem(forPath: d.dataDirectory.root.path)[.systemFreeSize] as? NSNumber)?
            .map { ByteCountFormatter.string(fromByteCount: $0.int64Value, countStyle: .file) } ?? "unknown"
        let data: [String: Any] = [
            "readiness": storage && workers ? "ready" : "not ready",
            "storage": storage ? "ok" : "unavailable", "workers": workers ? "running" : "stopped",
            "workspaces": records.count, "open": open, "offline": offline, "disk": free,
            "license": d.catalog.licenseStatus, "version": SentinelVersion.current,
        ]
        return try render("admin", title: "Appliance health", data, visit: visit)
    }

    func usersPage(_ visit: Visit, _ principal: Principal) throws -> Response {
        let limit = 100
        let after = visit.request.uri.queryParameters["after"].map(String.init)
        let users = try d.identity.users(after: after, limit: limit + 1)
        var data: [String: Any] = [
            "items": users.prefix(limit).map { ["email": $0.email, "isAdmin": $0.isAdmin, "created": Self.date($0.createdAt) ?? ""] as [String: Any] },
        ]
        if users.count > limit, let last = users.prefix(limit).last {
            data["next"] = "/admin/users?after=\(last.id.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")"
        }
        return try render("adminUsers", title: "Users", data, visit: visit)
    }

    func workspacePlansPage(_ visit: Visit, _ principal: Principal) throws -> Response {
        let plans = d.catalog.plans.keys.sorted()
        let data: [String: Any] = [
            "license": d.catalog.licenseStatus,
            "items": try d.workspaces.list().map { record -> [String: Any] in
                ["id": record.id, "name": record.name,
                 "plans": plans.map { ["name": $0, "selected": $0 == record.plan] as [String: Any] }]
            },
        ]
        return try render("adminWorkspaces", title: "Workspaces and plans", data, visit: visit)
    }

    func deadJobsPage(_ visit: Visit, _ principal: Principal) async throws -> Response {
        var items: [[String: Any]] = []
        for record in try d.workspaces.list() {
            guard let id = record.workspaceID else { continue }
            let dead: [JobRecord]
            do {
                dead = try await supervisor.withWorkspace(id) { actor in try await actor.jobs(state: .dead, limit: 100) }
            } catch is WorkspaceError {
                continue  // offline: shown on the health page
            }
            for job in dead {
                items.append(["workspace": record.name, "workspaceID": record.id, "id": job.id, "kind": job.kind, "attempts": job.attempts,
                              "error": job.lastError ?? ""])
            }
        }
        return try render("adminJobs", title: "Dead jobs", ["items": items], visit: visit)
    }
}
