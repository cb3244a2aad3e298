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
                let by = try admin(visit, "createUser").user.email
                let (email, password, isAdmin) = (try form.required("email", "The email"), form["password"] ?? "", form["is_admin"] == "1")
                let identity = d.identity
                _ = try await identity.passwords.run { try identity.createUser(email: email, password: password, isAdmin: isAdmin, by: by) }
                return Self.redirect("/admin/users")
            }
        }
        router.post("/admin/users/:userId/:action") { request, context in
            try await page(request, context) { visit in
                let form = try await self.form(visit)
                let principal = try admin(visit, "updateUser")
                try await updateUser(context.parameters.get("userId") ?? "", action: context.parameters.get("action") ?? "", form, by: principal)
                return Self.redirect("/admin/users")
            }
        }
        router.get("/admin/workspaces") { request, context in
            try await page(request, context) { visit in try workspacePlansPage(visit, try admin(visit, "setWorkspacePlan")) }
        }
        router.post("/admin/workspaces/:workspaceId/plan") { request, context in
            try await page(request, context) { visit in
                let form = try await self.form(visit)
                let by = try admin(visit, "setWorkspacePlan").user.email
                guard let id = context.parameters.get("workspaceId").flatMap(WorkspaceID.init), try d.control.workspace(id) != nil else {
                    throw ConsoleError(status: .notFound, heading: "Page not found", message: "There is no such workspace.")
                }
                try BuiltinBillingProvider(control: d.control, catalog: d.catalog).assign(try form.required("plan", "The plan"), to: id, by: by)
                return Self.redirect("/admin/workspaces")
            }
        }
        router.get("/admin/audit") { request, context in
            try await page(request, context) { visit in try auditPage(visit, try admin(visit, "listApplianceAuditEvents")) }
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
                let by = visit.principal?.user.email ?? "console"
                let (done, state) = try await supervisor.withWorkspace(id) { actor -> (Bool, String?) in
                    let done = action == "retry" ? try await actor.retryDeadJob(job, by: by) : try await actor.discardDeadJob(job, by: by)
                    if done { return (true, "dead") }
                    return (false, try await actor.read { db in try String.fetchOne(db, sql: "SELECT state FROM jobs WHERE id = ?", arguments: [job]) })
                }
                // A job that is gone (discarded, or never there) is not found; one that is not dead is a conflict, saying what it is.
                guard let state else { throw ConsoleError(status: .notFound, heading: "Page not found", message: "There is no job \(job) in this workspace.") }
                guard done else { throw StorageError.conflict("job \(job) is not dead but \(state): only a dead job can be retried or discarded") }
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
        // Jobs waiting per priority class. Only files that may hold queued jobs are read: those with
        // an entry in the pending-work index (written before any job commits) and those open now.
        // A thousand idle workspaces are not opened (nor the open ones evicted) for one page view.
        var queued = Dictionary(uniqueKeysWithValues: JobPriority.allCases.map { ($0, 0) })
        let mayHoldJobs = try d.control.workspacesWithPendingWork().union(await supervisor.openWorkspaceIDs)
        for record in records {
            guard let id = record.workspaceID, mayHoldJobs.contains(id) else { continue }
            do {
                let counts = try await supervisor.withWorkspace(id) { actor in try await actor.read { db in try JobQueue.queuedCounts(in: db) } }
                for (priority, n) in counts { queued[priority, default: 0] += n }
            } catch is WorkspaceError {
                continue  // offline: listed below
            }
        }
        let free = (try? FileManager.default.attributesOfFileSystem(forPath: d.dataDirectory.root.path)[.systemFreeSize] as? NSNumber)?
            .map { ByteCountFormatter.string(fromByteCount: $0.int64Value, countStyle: .file) } ?? "unknown"
        var data: [String: Any] = [
            "readiness": storage && workers ? "ready" : "not ready",
            "storage": storage ? "ok" : "unavailable", "workers": workers ? "running" : "stopped",
            "workspaces": records.count, "open": open, "offline": offline, "disk": free,
            "queues": JobPriority.allCases.map { ["priority": $0.description, "queued": queued[$0] ?? 0] as [String: Any] },
            "tls": tlsExpiry(),
            "export": lastExport(),
            "license": d.catalog.licenseStatus, "version": SentinelVersion.current,
        ]
        if !(storage && workers) { data["notReady"] = true }
        return try render("admin", title: "Appliance health", data, visit: visit)
    }

    /// When the serving certificate stops being valid, with the days left.
    func tlsExpiry() -> String {
        guard let file = healthSources.certificateFile else { return "TLS is off (plain HTTP)" }
        guard let expiry = try? SelfSignedCertificate.expiry(ofPEMFile: file) else { return "cannot read \(file.path)" }
        let days = Int(expiry.timeIntervalSinceNow / 86_400)
        let when = Self.date(expiry.timeIntervalSince1970) ?? ""
        return days < 0 ? "expired at \(when)" : "\(when) (in \(days) days)"
    }

    /// The newest analytics export's time and status, from its manifest in `data/exports`.
    func lastExport() -> String {
        guard let manifest = AnalyticsExporter.latestManifest(in: d.dataDirectory.exportsDirectory) else {
            return healthSources.exportEnabled ? "none yet (the nightly export runs at \(healthSources.exportTime) UTC)" : "none (the nightly export is off)"
        }
        let waiting = manifest.workspaces.filter { $0.error != nil }.count
        let status = waiting == 0 ? "complete" : "partial: \(waiting) workspace(s) wait for the next export"
        return "\(manifest.createdAt): \(status), \(manifest.events) events (\(manifest.file))"
    }

    /// Disables or enables a user, or sets a new password, as `PATCH /users/{id}` does.
    func updateUser(_ id: String, action: String, _ form: Form, by principal: Principal) async throws {
        let (identity, by) = (d.identity, principal.user.email)
        guard try identity.user(id: id) != nil else { throw IdentityError(.notFound, "no such user") }
        switch action {
        case "disable": _ = try identity.disableUser(id: id, by: by)
        case "enable": _ = try identity.enableUser(id: id, by: by)
        case "password":
            try IdentityService.requirePasswordResetAllowed(of: id, by: principal)
            let password = form["password"] ?? ""
            try await identity.passwords.run { try identity.setPassword(userID: id, password: password, by: by) }
        default: throw ConsoleError(status: .notFound, heading: "Page not found", message: "There is no such action.")
        }
    }

    /// The appliance's audit log (`control.sqlite`), 100 entries a page.
    func auditPage(_ visit: Visit, _ principal: Principal) throws -> Response {
        let limit = 100
        let after = try ConsoleQuery(visit.request).value("after", "an event id", { Int64($0) }) ?? 0
        let events = try d.control.read { db in try AuditLog.events(after: after, limit: limit + 1, in: db) }
        var data: [String: Any] = [
            "items": events.prefix(limit).map { e -> [String: Any] in
                ["seq": e.seq, "at": e.occurredAt, "type": e.type, "subject": e.subject, "actor": e.actor, "data": e.data]
            },
        ]
        if events.count > limit, let last = events.prefix(limit).last { data["next"] = "/admin/audit?after=\(last.seq)" }
        return try render("adminAudit", title: "Audit log", data, visit: visit)
    }

    func usersPage(_ visit: Visit, _ principal: Principal) throws -> Response {
        let limit = 100
        let after = try ConsoleQuery(visit.request).value("after", "a user id", { $0.hasPrefix("usr_") ? $0 : nil })
        let users = try d.identity.users(after: after, limit: limit + 1)
        var data: [String: Any] = [
            "items": users.prefix(limit).map { user -> [String: Any] in
                ["id": user.id, "email": user.email, "isAdmin": user.isAdmin, "disabled": user.isDisabled, "created": Self.date(user.createdAt) ?? "",
                 "isSelf": user.id == principal.user.id]
            },
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
                // A plan not in force (removed from the plans file) is shown as the workspace's, and
                // said to be held to `free`: the list selected nothing, so the browser showed the first
                // plan, and "Set plan" would have moved the workspace to it.
                let inForce = d.catalog.plan(named: record.plan) != nil
                var item: [String: Any] = ["id": record.id, "name": record.name,
                                           "plans": plans.map { ["name": $0, "selected": $0 == record.plan] as [String: Any] }]
                if !inForce {
                    item["unknownPlan"] = record.plan
                    item["fallback"] = PlanCatalog.defaultPlan
                }
                return item
            },
        ]
        return try render("adminWorkspaces", title: "Workspaces and plans", data, visit: visit)
    }

    func deadJobsPage(_ visit: Visit, _ principal: Principal) async throws -> Response {
        var items: [[String: Any]] = []
        var unread: [String] = []
        for record in try d.workspaces.list() {
            guard let id = record.workspaceID else { continue }
            let dead: [JobRecord]
            do {
                dead = try await supervisor.withWorkspace(id) { actor in try await actor.jobs(state: .dead, limit: 100) }
            } catch is WorkspaceError {
                // Offline (the health page says why): named, or "No dead jobs." passed it over.
                unread.append("\(record.name) (\(record.id))")
                continue
            }
            for job in dead {
                items.append(["workspace": record.name, "workspaceID": record.id, "id": job.id, "kind": job.kind, "attempts": job.attempts,
                              "error": job.lastError ?? ""])
            }
        }
        var data: [String: Any] = ["items": items]
        if !unread.isEmpty { data["unread"] = unread.joined(separator: ", ") }
        return try render("adminJobs", title: "Dead jobs", data, visit: visit)
    }
}
