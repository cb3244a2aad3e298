import Foundation
import HTTPTypes
import Hummingbird
import OpenAPIRuntime
import SentinelCore

/// What every API handler may know about its request, from the Hummingbird context.
struct RequestInfo: Sendable {
    let correlationID: String
    let clientAddress: String
    /// `scheme://host[:port]` as the caller reached this server (or `server.public_url`).
    let baseURL: String
}

/// Any caller, signed in or not (the operations open to anyone: setup, sign-in, the document).
struct AnonymousContext: Sendable {
    let request: RequestInfo
}

/// A signed-in caller whose credential has the operation's scope.
struct UserContext: Sendable {
    let principal: Principal
    let request: RequestInfo

    var user: User { principal.user }
    /// Who did it, as recorded on versions and audit events.
    var actorName: String { principal.user.email }
}

/// A member of the workspace in the path, with at least the operation's role, and the workspace
/// pinned open for the length of the request.
struct WorkspaceContext: Sendable {
    let principal: Principal
    let workspaceID: WorkspaceID
    let role: WorkspaceRole
    let workspace: WorkspaceActor
    let request: RequestInfo

    var user: User { principal.user }
    var actorName: String { principal.user.email }
}

/// The context the access middleware established for the operation being handled. Generated
/// handlers take only their input, so the middleware hands the context over in a task-local value
/// (the pattern swift-openapi-generator documents for request-scoped values); `SentinelAPI` reads
/// it once and passes each domain handler its typed, non-optional context.
enum APIContext: Sendable {
    case anonymous(AnonymousContext)
    case user(UserContext)
    case workspace(WorkspaceContext)

    @TaskLocal static var current: APIContext?
    @TaskLocal static var request: RequestInfo?

    /// The handler asked for a context the operation's documented access does not give: the
    /// document and the handler disagree, which is a server fault.
    struct Mismatch: Error, CustomStringConvertible {
        let description: String
    }

    static func anonymous() throws -> AnonymousContext {
        switch current {
        case .anonymous(let context): return context
        case .user(let context): return AnonymousContext(request: context.request)
        case .workspace(let context): return AnonymousContext(request: context.request)
        case nil: throw Mismatch(description: "no request context: the operation ran outside the access middleware")
        }
    }

    static func user() throws -> UserContext {
        switch current {
        case .user(let context): return context
        case .workspace(let context): return UserContext(principal: context.principal, request: context.request)
        default: throw Mismatch(description: "the operation's documented access does not establish a signed-in caller")
        }
    }

    static func workspace() throws -> WorkspaceContext {
        guard case .workspace(let context) = current else {
            throw Mismatch(description: "the operation's documented access does not establish a workspace")
        }
        return context
    }
}

/// Puts what the API handlers need from the Hummingbird context (correlation id, peer address,
/// base URL) where the generated handlers can reach it.
struct RequestInfoMiddleware: RouterMiddleware {
    typealias Context = SentinelRequestContext
    let publicScheme: String
    let publicURL: String?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let info = RequestInfo(correlationID: context.correlationID, clientAddress: context.remoteAddress?.ipAddress ?? "unknown",
                               baseURL: publicURL ?? "\(publicScheme)://\(request.head.authority ?? "localhost")")
        return try await APIContext.$request.withValue(info) { try await next(request, context) }
    }
}

/// Every answer of the API is for one caller and may hold a secret shown once (a new API token):
/// `Cache-Control: no-store` keeps it out of browser and proxy caches, and
/// `X-Content-Type-Options: nosniff` keeps a browser from reading JSON as anything else. (A thrown
/// problem passes by here; `Problem.response` gives its document the same headers.)
struct APIResponseHeadersMiddleware: RouterMiddleware {
    typealias Context = SentinelRequestContext
    static let contentTypeOptions = HTTPField.Name("X-Content-Type-Options")!

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        if response.headers[.cacheControl] == nil { response.headers[.cacheControl] = "no-store" }
        response.headers[Self.contentTypeOptions] = "nosniff"
        return response
    }
}

/// Authentication and authorization of every operation, by the `x-sentinel-access` the document
/// gives it: a bearer token, when sent, must be valid (401); the caller must be signed in, have the
/// scope and, for workspace operations, a membership with at least the role (a workspace they are
/// not a member of answers 404). Workspace operations run with the workspace pinned open.
struct AccessMiddleware: ServerMiddleware {
    let document: APIDocument
    let identity: IdentityService
    let supervisor: Supervisor

    /// What the caller was granted: the context each kind of operation runs with, short of the
    /// request information and the pinned workspace.
    enum Grant {
        case anonymous
        case user(Principal)
        case workspace(Principal, WorkspaceID, WorkspaceRole)
    }

    func intercept(_ request: HTTPRequest, body: HTTPBody?, metadata: ServerRequestMetadata, operationID: String,
                   next: @Sendable (HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPResponse, HTTPBody?))
        async throws -> (HTTPResponse, HTTPBody?) {
        guard let operation = document.operations[operationID] else {
            throw APIContext.Mismatch(description: "operation \(operationID) is not in the document")
        }
        guard let info = APIContext.request else { throw APIContext.Mismatch(description: "no request information for \(operationID)") }
        // Checked before the body is read (a caller without access sends no body for nothing), and
        // again once it is in: the body may take up to the request timeout to arrive, and a user
        // disabled, a token revoked or a member removed or demoted meanwhile must not see the
        // operation carried out with the access it had when the headers came.
        var grant = try self.grant(request, metadata: metadata, operation: operation)
        var body = body
        if operation.body != nil, let streamed = body {
            body = HTTPBody(try await RequestValidationMiddleware.collect(streamed))
            grant = try self.grant(request, metadata: metadata, operation: operation)
        }
        let checkedBody = body
        @Sendable func proceed(_ context: APIContext) async throws -> (HTTPResponse, HTTPBody?) {
            try await APIContext.$current.withValue(context) { try await next(request, checkedBody, metadata) }
        }
        switch grant {
        case .anonymous:
            return try await proceed(.anonymous(AnonymousContext(request: info)))
        case .user(let caller):
            return try await proceed(.user(UserContext(principal: caller, request: info)))
        case .workspace(let caller, let id, let role):
            return try await supervisor.withWorkspace(id) { workspace in
                try await proceed(.workspace(WorkspaceContext(principal: caller, workspaceID: id, role: role, workspace: workspace, request: info)))
            }
        }
    }

    /// Who the caller is and whether the operation's access admits them, read afresh.
    func grant(_ request: HTTPRequest, metadata: ServerRequestMetadata, operation: DocumentedOperation) throws -> Grant {
        var principal: Principal?
        if let header = request.headerFields[.authorization] {
            // The scheme, then spaces or tabs, then the token. Another scheme is named in the
            // answer only when it looks like one (letters): never the start of a token sent alone.
            let scheme = header.prefix { $0 != " " && $0 != "\t" }
            guard scheme.lowercased() == "bearer", scheme.count < header.count else {
                let named = scheme.count <= 20 && !scheme.isEmpty && scheme.allSatisfy { $0.isASCII && $0.isLetter } && scheme.lowercased() != "bearer"
                throw Problem.unauthenticated("the API takes a bearer token (Authorization: Bearer <session or API token>)"
                    + (named ? ", not \(scheme)" : ""))
            }
            guard let found = try identity.authenticate(bearer: String(header.dropFirst(scheme.count)).trimmingCharacters(in: .whitespaces)) else {
                throw Problem.unauthenticated("the bearer token is unknown, expired or revoked", invalidToken: true)
            }
            principal = found
        }
        switch operation.access {
        case .anyone:
            return .anonymous
        case .user(let scope):
            let caller = try Self.signedIn(principal)
            guard caller.allows(scope) else { throw Self.missingScope(scope) }
            return .user(caller)
        case .applianceAdmin:
            let caller = try Self.signedIn(principal)
            guard caller.user.isAdmin else { throw Problem(status: .forbidden, detail: "only appliance admins may do this") }
            guard caller.allows(.admin) else { throw Self.missingScope(.admin) }
            return .user(caller)
        case .workspace(let needed, let scope):
            let caller = try Self.signedIn(principal)
            // Percent-decoded, as the generated handlers read it (`ws%5F…` was every member's 404 and an admin's workspace).
            guard let id = metadata.pathParameters["workspaceId"].flatMap({ String($0).removingPercentEncoding }).flatMap(WorkspaceID.init),
                  let role = try identity.role(of: caller.user.id, in: id) else {
                throw Problem(status: .notFound, detail: "no such workspace")
            }
            guard caller.allows(scope) else { throw Self.missingScope(scope) }
            guard role >= needed else {
                throw Problem(status: .forbidden, detail: "this needs the \(needed.rawValue) role in the workspace; you are \(role.rawValue)")
            }
            return .workspace(caller, id, role)
        }
    }

    static func signedIn(_ principal: Principal?) throws -> Principal {
        guard let principal else { throw Problem.unauthenticated("sign in: send Authorization: Bearer <session or API token>") }
        return principal
    }

    static func missingScope(_ scope: TokenScope) -> Problem {
        Problem(status: .forbidden, detail: "this token lacks the '\(scope.rawValue)' scope")
    }
}
