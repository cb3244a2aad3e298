import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Mustache
import NIOCore
import SentinelCore

/// The web console at `/`: server-rendered pages on the same domain services as the API
/// (`/api/v1` is unchanged). Who may do what is read from the API document's `x-sentinel-access`
/// of the matching operation, so a page offers only what the API would allow, and a forged post is
/// refused by the same check. Signed-in visitors carry an API session in an `HttpOnly`,
/// `SameSite=Lax` cookie (`Secure` with TLS); every form carries a token derived from that session
/// (before sign-in: from a random form cookie), checked on every post.
struct Console: Sendable {
    let d: APIDependencies
    /// The API's: the console opens workspaces through the same supervisor.
    var supervisor: Supervisor { d.supervisor }
    let scheduler: JobScheduler
    /// Outbound calls the console makes itself (GitHub's manifest conversion), under the
    /// appliance's destination policy.
    let outbound: any OutboundHTTPClient
    let document: APIDocument
    let views: MustacheLibrary
    let secureCookies: Bool
    /// What the admin's health page reads besides the services.
    let healthSources: HealthSources

    struct HealthSources: Sendable {
        /// The serving certificate (nil: TLS is off).
        var certificateFile: URL?
        var exportEnabled = true
        /// `export.time`, HH:MM UTC.
        var exportTime = "02:00"
    }

    static let sessionCookie = "sentinel_session"
    static let formCookie = "sentinel_form"
    static let maxFormBytes = 512 * 1024

    init(dependencies: APIDependencies, scheduler: JobScheduler, outbound: any OutboundHTTPClient,
         document: APIDocument, secureCookies: Bool, health: HealthSources = HealthSources()) throws {
        self.d = dependencies
        self.outbound = outbound
        self.scheduler = scheduler
        self.document = document
        self.views = try ConsoleTemplates.library()
        self.secureCookies = secureCookies
        self.healthSources = health
    }

    // MARK: Visits

    /// One request as the console sees it: who is signed in (if anyone) and the form secret.
    struct Visit: Sendable {
        let request: Request
        let principal: Principal?
        /// The session token, or the pre-sign-in form cookie; nil when neither was sent.
        let formSecret: String?
        /// A new form cookie to set (first visit to a sign-in or setup form).
        var newFormSecret: String?
        let clientAddress: String

        var csrf: String { Console.formToken(secret: newFormSecret ?? formSecret ?? "") }
        var sessionID: String? {
            if case .session(let id)? = principal?.credential { return id }
            return nil
        }
    }

    func visit(_ request: Request, _ context: SentinelRequestContext) throws -> Visit {
        var principal: Principal?
        var secret = request.cookies[Self.formCookie]?.value
        if let token = request.cookies[Self.sessionCookie]?.value, token.hasPrefix("sns_"),
           let found = try d.identity.authenticate(bearer: token) {
            principal = found
            secret = token
        }
        return Visit(request: request, principal: principal, formSecret: secret, newFormSecret: nil,
                     clientAddress: context.remoteAddress?.ipAddress ?? "unknown")
    }

    /// The form token for a secret: HMAC-SHA256 keyed with the session token (or form cookie), so
    /// only a page served to the cookie's holder can carry it, and it survives restarts.
    static func formToken(secret: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Data("sentinel-console-form".utf8), using: SymmetricKey(data: Data(secret.utf8)))
        return Data(mac).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// The posted form, after its token is checked against the visit's cookie (403 otherwise). A
    /// body of another type (a script posting `multipart/form-data`) is a 415 and one whose
    /// encoding breaks is a 400, each saying so, rather than a form with its fields missing.
    func form(_ visit: Visit) async throws -> Form {
        if let type = visit.request.headers[.contentType],
           type.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased() != "application/x-www-form-urlencoded" {
            throw ConsoleError(status: .unsupportedMediaType, heading: "Form not readable",
                               message: "The console reads forms sent as application/x-www-form-urlencoded, as a browser sends its pages' forms, "
                                   + "not as \(StoredText.singleLine(String(type.prefix(60)))).")
        }
        let body: ByteBuffer
        do {
            body = try await visit.request.body.collect(upTo: Self.maxFormBytes)
        } catch is NIOTooManyBytesError {
            throw ConsoleError(status: .contentTooLarge, heading: "Form too large",
                               message: "A console form is at most \(Self.maxFormBytes / 1024) KiB; this one is larger.")
        }
        // Bytes that are not UTF-8 would be read as U+FFFD and saved so (a team named `raw��team`).
        guard let text = String(validating: body.readableBytesView, as: UTF8.self), let form = Form(text) else {
            throw ConsoleError(status: .badRequest, heading: "Form not readable",
                               message: "A field of this form is not valid percent-encoded UTF-8.")
        }
        guard let secret = visit.formSecret, let sent = form["csrf"],
              constantTimeEqual(sent, Self.formToken(secret: secret)) else {
            throw ConsoleError(status: .forbidden, heading: "Form expired",
                               message: "This form was not sent from a page of this console, or it expired (for example after signing out). Go back, reload the page and try again.")
        }
        if let problem = form.problem {
            throw ConsoleError(status: .badRequest, heading: "Could not do that", message: problem)
        }
        // The visitor was known when the headers came; the body may take up to the request timeout.
        // A session ended or a user disabled meanwhile does not get the form's action, and an
        // appliance admin no longer one does not act as one.
        if let signedIn = visit.principal {
            guard let token = visit.request.cookies[Self.sessionCookie]?.value, let now = try d.identity.authenticate(bearer: token),
                  now.user.id == signedIn.user.id else {
                throw ConsoleRedirect(location: "/sign-in")
            }
            guard now.user.isAdmin == signedIn.user.isAdmin else {
                throw ConsoleError(status: .forbidden, heading: "Could not do that",
                                   message: "Your account changed while this form was being sent. Reload the page and try again.")
            }
        }
        return form
    }

    /// 256 random bits, base64url.
    static func randomSecret() -> String {
        SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }.base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let (x, y) = (Array(a.utf8), Array(b.utf8))
        guard x.count == y.count else { return false }
        return zip(x, y).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }

    // MARK: Access, as the API document says

    /// The role an operation of the API needs in its workspace; unknown operations need more than
    /// anyone has (fail closed).
    func role(for operationID: String) -> WorkspaceRole? {
        guard case .workspace(let role, _)? = document.operations[operationID]?.access else { return nil }
        return role
    }

    func allowed(_ operationID: String, _ role: WorkspaceRole) -> Bool {
        guard let needed = self.role(for: operationID) else { return false }
        return role >= needed
    }

    func requireAdmin(_ operationID: String, _ principal: Principal) throws {
        guard document.operations[operationID]?.access == .applianceAdmin, principal.user.isAdmin else {
            throw ConsoleError(status: .forbidden, heading: "Not allowed", message: "Only appliance admins may do this.")
        }
    }

    /// A signed-in visitor, or a redirect to the sign-in page.
    func signedIn(_ visit: Visit) throws -> Principal {
        guard let principal = visit.principal else { throw ConsoleRedirect(location: "/sign-in") }
        return principal
    }

    /// A workspace page: the visitor is a member with at least the role of `operationID`; the
    /// workspace is pinned open while `body` runs. Unknown workspaces and workspaces the visitor is
    /// not a member of look the same (404), as in the API.
    func member(_ visit: Visit, _ context: SentinelRequestContext, operation operationID: String,
                _ body: @escaping @Sendable (Member) async throws -> Response) async throws -> Response {
        let principal = try signedIn(visit)
        guard let id = context.parameters.get("workspaceId").flatMap(WorkspaceID.init),
              let role = try d.identity.role(of: principal.user.id, in: id), let record = try d.control.workspace(id) else {
            throw ConsoleError(status: .notFound, heading: "Not a member",
                               message: "There is no such workspace, or you are not a member of it. Ask one of its owners or an appliance admin to add you.")
        }
        guard let needed = self.role(for: operationID), role >= needed else {
            throw ConsoleError(status: .forbidden, heading: "Not allowed",
                               message: "This needs the \(self.role(for: operationID)?.rawValue ?? "owner") role in the workspace; you are \(role.rawValue).")
        }
        return try await supervisor.withWorkspace(id) { actor in
            try await body(Member(visit: visit, principal: principal, id: id, record: record, role: role, workspace: actor))
        }
    }

    struct Member: Sendable {
        let visit: Visit
        let principal: Principal
        let id: WorkspaceID
        let record: WorkspaceRecord
        let role: WorkspaceRole
        let workspace: WorkspaceActor
        var actorName: String { principal.user.email }
        var base: String { "/workspaces/\(id.rawValue)" }
    }

    // MARK: Rendering

    func render(_ template: String, title: String, _ data: [String: Any], visit: Visit, member: Member? = nil,
                status: HTTPResponse.Status = .ok) throws -> Response {
        var data = data
        data["csrf"] = visit.csrf
        if let member { data["workspace"] = workspaceData(member) }
        guard let body = views.render(data, withTemplate: template) else {
            throw ConsoleError(status: .internalServerError, heading: "Error", message: "the page \(template) has no template")
        }
        var page: [String: Any] = ["title": title, "body": body, "csrf": visit.csrf]
        if let principal = visit.principal { page["user"] = ["email": principal.user.email, "isAdmin": principal.user.isAdmin] as [String: Any] }
        if let member { page["workspace"] = workspaceData(member) }
        let html = views.render(page, withTemplate: "layout") ?? body
        var response = Response(status: status, headers: Self.htmlHeaders, body: .init(byteBuffer: ByteBuffer(string: html)))
        if let secret = visit.newFormSecret {
            response.headers.append(HTTPField(name: .setCookie, value: cookie(Self.formCookie, secret, maxAge: nil)))
        }
        return response
    }

    func workspaceData(_ member: Member) -> [String: Any] {
        ["id": member.id.rawValue, "name": member.record.name, "role": member.role.rawValue, "canAudit": allowed("listAuditEvents", member.role)]
    }

    static let htmlHeaders: HTTPFields = [
        .contentType: "text/html; charset=utf-8",
        .cacheControl: "no-store",
        .contentSecurityPolicy: "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        HTTPField.Name("X-Content-Type-Options")!: "nosniff",
        HTTPField.Name("Referrer-Policy")!: "same-origin",
    ]

    func cookie(_ name: String, _ value: String, maxAge: Int?) -> String {
        var text = "\(name)=\(value); Path=/; HttpOnly; SameSite=Lax"
        if let maxAge { text += "; Max-Age=\(maxAge)" }
        if secureCookies { text += "; Secure" }
        return text
    }

    static func redirect(_ location: String) -> Response {
        Response(status: .seeOther, headers: [.location: location, .cacheControl: "no-store"])
    }

    /// Runs a console handler: redirects and refusals become pages, domain errors become a page
    /// with the same status and message the API would give.
    func page(_ request: Request, _ context: SentinelRequestContext,
              _ body: @escaping @Sendable (Visit) async throws -> Response) async throws -> Response {
        let visit = try self.visit(request, context)
        do {
            return try await body(visit)
        } catch let redirect as ConsoleRedirect {
            return Self.redirect(redirect.location)
        } catch let error as ConsoleError {
            return try message(visit, status: error.status, heading: error.heading, text: error.message,
                               back: error.back ?? backPath(request))
        } catch {
            let problem = Problem.from(error)
            if problem.isServerFault {
                context.logger.error("console request failed", metadata: ["error": "\(String(describing: type(of: error)))", "path": "\(request.uri.path)"])
            }
            let heading = problem.status == 403 && problem.type.hasSuffix("plan-limit") ? "Plan limit reached" : "Could not do that"
            return try message(visit, status: .init(code: problem.status), heading: heading, text: problem.detail ?? problem.title,
                               back: backPath(request))
        }
    }

    func message(_ visit: Visit, status: HTTPResponse.Status, heading: String, text: String, back: String?) throws -> Response {
        var data: [String: Any] = ["heading": heading, "text": text, "kind": status.code >= 400 ? "error" : "info",
                                   "aria": status.code >= 400 ? "alert" : "status"]
        if let back { data["back"] = back }
        return try render("message", title: heading, data, visit: visit, status: status)
    }

    /// The path of a Referer on this site, as sent (still percent-encoded), to link back to: nil
    /// for one from another host (`authorities`: this console's), or whose path a browser would
    /// read as another site's (`//host/…`, `/\host/…`). A cross-site page that posted a form with
    /// its own Referer made the refusal's "Back" link lead off-site.
    static func sameSitePath(_ referer: String, authorities: [String]) -> String? {
        guard let url = URLComponents(string: referer), let host = url.host?.lowercased(),
              authorities.contains(where: { Self.host(of: $0) == host }) else { return nil }
        let path = url.percentEncodedPath
        guard path.hasPrefix("/"), !path.dropFirst().hasPrefix("/"), !path.dropFirst().hasPrefix("\\") else { return nil }
        return path + (url.percentEncodedQuery.map { "?" + $0 } ?? "")
    }

    /// Where a refused form's "Back" link leads: its page, from the Referer a browser sent with it
    /// (`Referrer-Policy: same-origin`), when that page is this console's, as the request reached
    /// it or at `server.public_url`.
    func backPath(_ request: Request) -> String? {
        guard request.method == .post, let referer = request.headers[.referer] else { return nil }
        let authorities = [request.head.authority, d.publicURL.flatMap { URLComponents(string: $0)?.host }].compactMap { $0 }
        return Self.sameSitePath(referer, authorities: authorities)
    }

    /// The host of a `Host` value, without its port, lowercased (`[::1]:8443` → `::1`).
    static func host(of authority: String) -> String {
        var text = Substring(authority.lowercased())
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") { return String(text[text.index(after: text.startIndex)..<close]) }
        if let colon = text.lastIndex(of: ":") { text = text[..<colon] }
        return String(text)
    }

    static func date(_ epoch: Double?) -> String? {
        guard let epoch else { return nil }
        return ISO8601.string(Date(timeIntervalSince1970: epoch)).prefix(19).replacingOccurrences(of: "T", with: " ") + " UTC"
    }

    /// The base of webhook URLs: `server.public_url`, else how this request reached the server.
    func baseURL(_ request: Request) -> String {
        d.publicURL ?? "\(d.publicScheme)://\(request.head.authority ?? "localhost")"
    }
}

/// A console refusal or failure shown as a page with this status.
struct ConsoleError: Error {
    let status: HTTPResponse.Status
    let heading: String
    let message: String
    var back: String?
}

struct ConsoleRedirect: Error {
    let location: String
}

/// A console page's query string (its filters and where a list goes on). An empty value is no
/// filter (the forms' "All"); a value that is not valid percent-encoded UTF-8, or not of its kind
/// (`state=bogus`, `pr=seven`), is a 400 page naming it: it was ignored, and the page showed every
/// entry as if no filter were asked for.
struct ConsoleQuery {
    /// Each item as decoded (nil: its percent-encoding is not UTF-8) beside its text as sent.
    private let items: [(name: String, value: String?, sent: String?)]

    init(_ request: Request) {
        let components = URLComponents(string: "?" + (request.uri.query ?? ""))
        items = zip(components?.queryItems ?? [], components?.percentEncodedQueryItems ?? []).map { ($0.0.name, $0.0.value, $0.1.value) }
    }

    /// The value given for `name`, read by `parse`; nil when absent or empty. `kind` says what it
    /// must be ("a pull request number"). Given twice, it is refused, as the API refuses it (the
    /// last one was read, so `?state=failed&state=queued` listed queued runs).
    func value<T>(_ name: String, _ kind: String, _ parse: (String) -> T?) throws -> T? {
        let given = items.filter { $0.name == name }
        if given.count > 1 {
            throw ConsoleError(status: .badRequest, heading: "Not a page", message: "In this address, \(name) is given \(given.count) times; give it once.")
        }
        guard let item = given.first, let sent = item.sent, !sent.isEmpty else { return nil }
        guard let text = item.value, let value = parse(text) else {
            throw ConsoleError(status: .badRequest, heading: "Not a page",
                               message: "In this address, \(name) must be \(kind); it is “\(StoredText.singleLine(String((item.value ?? sent).prefix(60))))”.")
        }
        return value
    }
}

/// An `application/x-www-form-urlencoded` body; nil when a name or value is not valid
/// percent-encoded UTF-8 (it would otherwise read as empty). `problem` says why its fields may not
/// be used: the API's rules for text (`TextRules`), so a form cannot store what the API refuses.
/// A NUL in the sign-in email took each spelling its own place in the per-account limit, and a
/// token named `a\0b` was listed as `a`.
struct Form: Sendable {
    let fields: [String: String]
    /// Why the form is refused (a field given twice, control characters where a browser sends
    /// none), as the API words it (`field: what is wrong`); nil when it is not.
    let problem: String?

    /// Fields whose text may span lines (a PEM bundle or key, the settings' JSON, a `.sentinel.yml`
    /// pasted in): tab, newline and carriage return, and bidirectional controls in prose, are theirs.
    static let multilineFields: Set<String> = ["ca_bundle", "private_key", "values", "file"]

    init?(_ body: String) {
        var fields: [String: String] = [:]
        var problem: String?
        for pair in body.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = Self.decode(parts[0]), let value = parts.count > 1 ? Self.decode(parts[1]) : "" else { return nil }
            guard !name.isEmpty else { continue }
            let shown = StoredText.singleLine(String(name.prefix(40)))
            if fields[name] != nil {
                // A browser sends each field of the console's forms once; two values leave unclear which was meant.
                problem = problem ?? "\(shown): given twice; a form sends each field once"
                continue
            }
            if problem == nil, let bad = TextRules.controlCharacterProblem(name, multiline: false)
                ?? TextRules.controlCharacterProblem(value, multiline: Self.multilineFields.contains(name)) {
                problem = "\(shown): \(bad)"
            }
            fields[name] = value
        }
        self.fields = fields
        self.problem = problem
    }

    static func decode(_ text: Substring) -> String? {
        text.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
    }

    subscript(_ name: String) -> String? { fields[name] }

    /// A field with surrounding whitespace removed; nil when absent or blank.
    func text(_ name: String) -> String? {
        guard let value = fields[name]?.trimmingCharacters(in: .whitespacesAndNewlines), !value.isEmpty else { return nil }
        return value
    }

    /// A secret as typed, untrimmed (nil when absent or empty): trimmed, a secret with a space at
    /// either end was saved as another one, where the API refuses it and says why.
    func secret(_ name: String) -> String? {
        guard let value = fields[name], !value.isEmpty else { return nil }
        return value
    }

    func requiredSecret(_ name: String, _ label: String) throws -> String {
        guard let value = secret(name) else { throw ConsoleError(status: .badRequest, heading: "Missing field", message: "\(label) is required.") }
        return value
    }

    /// A field the form always sends (it may be blank); a post without it is not the console's form.
    func present(_ name: String, _ label: String) throws -> String {
        guard let value = fields[name] else { throw ConsoleError(status: .badRequest, heading: "Missing field", message: "\(label) is required.") }
        return value
    }

    func required(_ name: String, _ label: String) throws -> String {
        guard let value = text(name) else { throw ConsoleError(status: .badRequest, heading: "Missing field", message: "\(label) is required.") }
        return value
    }
}

/// Addresses that match no route answer the console's "page not found" page, except under the
/// API, webhook and operations paths, which keep their problem+json answers.
struct ConsoleNotFoundMiddleware: RouterMiddleware {
    typealias Context = SentinelRequestContext
    let console: Console

    static func isConsolePath(_ path: String) -> Bool {
        !(path.hasPrefix("/api/") || path == "/api" || path.hasPrefix("/webhooks/") || ["/healthz", "/readyz", "/metrics"].contains(path))
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let response: Response
        do {
            response = try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound && Self.isConsolePath(request.uri.path) {
            return try await console.page(request, context) { _ in
                throw ConsoleError(status: .notFound, heading: "Page not found", message: "There is no page at this address.")
            }
        }
        // A console address asked with a method it does not take (a form's address opened again
        // from the address bar, `GET /account/password`) is a page too, not the API's problem JSON.
        guard response.status == .methodNotAllowed, Self.isConsolePath(request.uri.path),
              response.headers[.contentType] == "application/problem+json" else { return response }
        let method = request.method.rawValue
        var page = try await console.page(request, context) { _ in
            throw ConsoleError(status: .methodNotAllowed, heading: "Not opened this way",
                               message: request.method == .get
                                   ? "This address does not answer GET; it is where one of the console's forms is sent. Use the links and buttons of its pages."
                                   : "This address does not answer \(method); use the links and buttons of the console's pages.")
        }
        page.headers[.allow] = response.headers[.allow]
        return page
    }
}
