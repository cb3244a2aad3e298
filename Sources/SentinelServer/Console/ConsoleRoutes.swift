import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import NIOCore
import SentinelCore

extension Console {
    /// Registers the console's pages beside the webhook and API routes.
    func add(to router: Router<SentinelRequestContext>) {
        router.get("/console.css") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/css; charset=utf-8", .cacheControl: "public, max-age=3600",
                                                APIResponseHeadersMiddleware.contentTypeOptions: "nosniff"],
                     body: .init(byteBuffer: ByteBuffer(string: ConsoleStyle.css)))
        }
        router.get("/") { request, context in try await page(request, context) { visit in try home(visit) } }
        router.get("/setup") { request, context in try await page(request, context) { visit in try setupPage(visit) } }
        router.post("/setup") { request, context in try await page(request, context) { visit in try await completeSetup(visit) } }
        router.get("/sign-in") { request, context in try await page(request, context) { visit in try signInPage(visit) } }
        router.post("/sign-in") { request, context in try await page(request, context) { visit in try await signIn(visit) } }
        router.post("/sign-out") { request, context in try await page(request, context) { visit in try await signOut(visit) } }
        router.get("/account") { request, context in try await page(request, context) { visit in try accountPage(visit) } }
        router.post("/account/password") { request, context in try await page(request, context) { visit in try await changePassword(visit) } }
        router.post("/account/tokens") { request, context in try await page(request, context) { visit in try await createToken(visit) } }
        router.post("/account/tokens/:tokenId/revoke") { request, context in
            try await page(request, context) { visit in try await revokeToken(visit, id: context.parameters.get("tokenId") ?? "") }
        }
        router.get("/workspaces") { request, context in try await page(request, context) { visit in try workspacesPage(visit) } }
        router.post("/workspaces") { request, context in try await page(request, context) { visit in try await createWorkspace(visit) } }
        addWorkspacePages(to: router)
        addConfigurationPages(to: router)
        addAdminPages(to: router)
    }

    // MARK: Start, setup, sign-in

    func home(_ visit: Visit) throws -> Response {
        if try !d.identity.hasUsers() { return Self.redirect("/setup") }
        return Self.redirect(visit.principal == nil ? "/sign-in" : "/workspaces")
    }

    /// A visit that will render a pre-sign-in form: gets a form cookie when it has none.
    func withFormCookie(_ visit: Visit) -> Visit {
        var visit = visit
        if visit.formSecret == nil { visit.newFormSecret = "frm_" + Console.randomSecret() }
        return visit
    }

    func setupPage(_ visit: Visit, error: String? = nil, email: String? = nil, status: HTTPResponse.Status = .ok) throws -> Response {
        guard try !d.identity.hasAdmins() else { return Self.redirect(visit.principal == nil ? "/sign-in" : "/workspaces") }
        var data: [String: Any] = ["tokenPath": d.dataDirectory.setupTokenFile.path]
        if let error { data["error"] = error }
        if let email { data["email"] = email }
        return try render("setup", title: "Set up Sentinel", data, visit: withFormCookie(visit), status: status)
    }

    func completeSetup(_ visit: Visit) async throws -> Response {
        let form = try await self.form(visit)
        let (token, email, password) = (form["setup_token"]?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "", form["email"] ?? "",
                                        form["password"] ?? "")
        let (identity, directory) = (d.identity, d.dataDirectory)
        let user: User
        do {
            user = try await identity.passwords.run { try identity.completeSetup(token: token, email: email, password: password, in: directory) }
        } catch let error as IdentityError {
            let problem = error.problem
            return try setupPage(visit, error: problem.detail, email: email, status: .init(code: problem.status))
        }
        return try startSession(for: user)
    }

    func signInPage(_ visit: Visit, error: String? = nil, email: String? = nil, status: HTTPResponse.Status = .ok) throws -> Response {
        if try !d.identity.hasUsers() { return Self.redirect("/setup") }
        if visit.principal != nil, error == nil { return Self.redirect("/workspaces") }
        var data: [String: Any] = ["noAdmin": try !d.identity.hasAdmins()]
        if let error { data["error"] = error }
        if let email { data["email"] = email }
        return try render("signin", title: "Sign in", data, visit: withFormCookie(visit), status: status)
    }

    /// Sign-in with the API's throttle (`LoginThrottle.signIn`).
    func signIn(_ visit: Visit) async throws -> Response {
        let form = try await self.form(visit)
        let (email, password) = (form["email"] ?? "", form["password"] ?? "")
        do {
            guard let check = try await d.loginThrottle.signIn(email: email, password: password, address: visit.clientAddress, identity: d.identity) else {
                return try signInPage(visit, error: "Wrong email or password.", email: email, status: .unauthorized)
            }
            // Signing in over a session ends it: its token would otherwise stay valid for hours
            // though the browser no longer holds it.
            if let old = visit.sessionID { try d.identity.endSession(id: old) }
            return sessionStarted(try d.identity.createSession(for: check))
        } catch let error as IdentityError {
            switch error.kind {
            case .rateLimited(let wait):
                var response = try signInPage(visit, error: "Too many failed sign-ins; try again in \(wait) s.", email: email, status: .tooManyRequests)
                response.headers[.retryAfter] = String(wait)
                return response
            case .unauthenticated:
                // The password was changed, or the user disabled or deleted, while bcrypt ran.
                return try signInPage(visit, error: "Wrong email or password.", email: email, status: .unauthorized)
            default:
                throw error
            }
        }
    }

    func startSession(for user: User) throws -> Response {
        sessionStarted(try d.identity.createSession(for: user))
    }

    private func sessionStarted(_ session: (token: String, expiresAt: Date)) -> Response {
        let (token, expires) = session
        var response = Self.redirect("/workspaces")
        response.headers.append(HTTPField(name: .setCookie, value: cookie(Self.sessionCookie, token,
                                                                          maxAge: max(Int(expires.timeIntervalSinceNow), 0))))
        response.headers.append(HTTPField(name: .setCookie, value: cookie(Self.formCookie, "", maxAge: 0)))
        return response
    }

    // MARK: Account

    /// `tokenForm`: the create-token form's fields as sent, shown again with `tokenError`.
    func accountPage(_ visit: Visit, done: Bool = false, error: String? = nil, created: (name: String, token: String)? = nil,
                     tokenError: String? = nil, tokenForm: Form? = nil, status: HTTPResponse.Status = .ok) throws -> Response {
        let principal = try signedIn(visit)
        let now = ISO8601.string(Date())
        var data: [String: Any] = [
            "email": principal.user.email, "done": done, "isAdmin": principal.user.isAdmin,
            "tokens": try d.identity.tokens(of: principal.user).reversed().map { token -> [String: Any] in
                let expired = token.expiresAt.map { $0 <= now } ?? false
                return ["id": token.id, "name": token.name, "prefix": token.prefix, "scopes": token.scopes.map(\.rawValue).joined(separator: " "),
                        "created": token.createdAt.prefix(10), "expires": token.expiresAt?.prefix(10) ?? "never",
                        "lastUsed": token.lastUsedAt?.prefix(16).replacingOccurrences(of: "T", with: " ") ?? "never",
                        "state": token.revokedAt != nil ? "revoked" : expired ? "expired" : "active",
                        "active": token.revokedAt == nil && !expired]
            },
        ]
        if let error { data["error"] = error }
        if let created { data["created"] = ["name": created.name, "token": created.token] }
        if let tokenError { data["tokenError"] = tokenError }
        // A refused form keeps what was typed and ticked (it came back empty, read ticked).
        data["scopeRead"] = tokenForm.map { $0["scope_read"] == "1" } ?? true
        if let tokenForm {
            data["tokenName"] = tokenForm["name"] ?? ""
            data["tokenDays"] = tokenForm["expires_in_days"] ?? ""
            data["scopeWrite"] = tokenForm["scope_write"] == "1"
            data["scopeAdmin"] = tokenForm["scope_admin"] == "1"
        }
        return try render("account", title: "Your account", data, visit: visit, status: status)
    }

    /// The API's `createToken` for the visitor, from the account page; the secret is shown on the page once.
    func createToken(_ visit: Visit) async throws -> Response {
        let form = try await self.form(visit)
        let principal = try signedIn(visit)
        let scopes = Set(TokenScope.allCases.filter { form["scope_\($0.rawValue)"] == "1" })
        do {
            var days: Int?
            if let text = form.text("expires_in_days") {
                // In the form's words, also out of range (the API's message named its field expires_in_days).
                guard let value = Int(text), (1...3650).contains(value) else { throw IdentityError(.invalid, "expires after: a whole number of days, 1 to 3650") }
                days = value
            }
            let name = form["name"] ?? ""
            let (token, summary) = try d.identity.createToken(for: principal.user, name: name, scopes: scopes, expiresInDays: days, creator: principal)
            return try accountPage(visit, created: (summary.name, token))
        } catch let error as IdentityError {
            let status: HTTPResponse.Status = switch error.kind {
            case .conflict: .conflict
            case .forbidden: .forbidden
            default: .badRequest
            }
            return try accountPage(visit, tokenError: error.description.prefix(1).uppercased() + error.description.dropFirst() + ".", tokenForm: form,
                                   status: status)
        }
    }

    func revokeToken(_ visit: Visit, id: String) async throws -> Response {
        _ = try await form(visit)
        try d.identity.revokeToken(id: id, of: try signedIn(visit).user)
        return Self.redirect("/account")
    }

    /// The API's `changePassword`, from the account page's form.
    func changePassword(_ visit: Visit) async throws -> Response {
        let form = try await self.form(visit)
        let principal = try signedIn(visit)
        do {
            try await d.identity.changeOwnPassword(principal.user, current: form["current_password"] ?? "", new: form["new_password"] ?? "",
                                                   keepingSession: visit.sessionID, address: visit.clientAddress, throttle: d.loginThrottle)
        } catch let error as IdentityError {
            switch error.kind {
            case .rateLimited(let wait):
                var response = try accountPage(visit, error: "Too many failed attempts; try again in \(wait) s.", status: .tooManyRequests)
                response.headers[.retryAfter] = String(wait)
                return response
            case .forbidden: return try accountPage(visit, error: "The current password is wrong.", status: .forbidden)
            case .invalid: return try accountPage(visit, error: error.description.prefix(1).uppercased() + error.description.dropFirst() + ".", status: .badRequest)
            default: throw error
            }
        }
        return try accountPage(visit, done: true)
    }

    func signOut(_ visit: Visit) async throws -> Response {
        // A session that has already ended (expired, the password changed elsewhere) has nothing
        // to end and no form token to check against: the cookie is cleared all the same (it was a
        // 403 "Form expired" that left it in place).
        if let id = visit.sessionID {
            _ = try await form(visit)
            try d.identity.endSession(id: id)
        }
        var response = Self.redirect("/sign-in")
        response.headers.append(HTTPField(name: .setCookie, value: cookie(Self.sessionCookie, "", maxAge: 0)))
        return response
    }

    // MARK: Workspaces

    func workspacesPage(_ visit: Visit) throws -> Response {
        let principal = try signedIn(visit)
        let memberships = try d.identity.memberships(of: principal.user.id)
        let mine = Set(memberships.map { $0.0.id })
        var data: [String: Any] = [
            "items": memberships.map { ["id": $0.0.id, "name": $0.0.name, "plan": $0.0.plan, "role": $0.1.rawValue] as [String: Any] },
            "canCreate": principal.user.isAdmin && document.operations["createWorkspace"]?.access == .applianceAdmin,
        ]
        data["others"] = principal.user.isAdmin
            ? try d.workspaces.list().filter { !mine.contains($0.id) }.map { ["name": $0.name, "plan": $0.plan] as [String: Any] } : []
        return try render("workspaces", title: "Workspaces", data, visit: visit)
    }

    /// Creates a workspace with an owner (the admin, or the user named), as the API does.
    func createWorkspace(_ visit: Visit) async throws -> Response {
        let principal = try signedIn(visit)
        let form = try await self.form(visit)
        try requireAdmin("createWorkspace", principal)
        let (_, id, owner) = try d.workspaces.create(name: try form.required("name", "The workspace's name"), ownerEmail: form.text("owner_email"),
                                                     creator: principal.user, identity: d.identity)
        return Self.redirect(owner.id == principal.user.id ? "/workspaces/\(id.rawValue)" : "/workspaces")
    }
}
