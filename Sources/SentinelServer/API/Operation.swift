import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import SentinelCore

/// Who may call an operation. Workspace operations also need a membership with at least the
/// given role; anything about a workspace the caller is not a member of answers 404.
enum Access: Sendable {
    case anyone
    case user(TokenScope)
    case applianceAdmin
    case workspace(WorkspaceRole, TokenScope)
}

struct QueryParameter: Sendable {
    let name: String
    let schema: Schema
    let description: String
}

/// What a handler returns.
enum APIResult: Sendable {
    case json(HTTPResponse.Status, any Encodable & Sendable)
    case document(HTTPResponse.Status, Data)
    case noContent
}

/// One request as a handler sees it: the authenticated caller, path and query parameters, and the
/// body already validated against the operation's schema.
struct APICall: Sendable {
    let principal: Principal?
    let role: WorkspaceRole?
    let workspaceID: WorkspaceID?
    let path: [String: String]
    let query: [String: String]
    let body: Data?
    let clientAddress: String
    let correlationID: String
    /// `scheme://host[:port]` as the caller reached this server (or `server.public_url`).
    let baseURL: String

    var user: User { principal!.user }

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        guard let body else { throw Problem(status: .badRequest, detail: "a JSON body is required") }
        do { return try JSONDecoder().decode(T.self, from: body) } catch {
            throw Problem(status: .badRequest, detail: "the body does not match the schema: \(error)", type: "urn:sentinel:problem:invalid-field",
                          title: "Invalid request body")
        }
    }

    func pathValue(_ name: String) -> String { path[name] ?? "" }

    /// An integer path parameter; anything else is a resource that cannot exist (404).
    func pathInt(_ name: String, what: String) throws -> Int64 {
        guard let v = path[name].flatMap({ Int64($0) }), v > 0 else { throw Problem(status: .notFound, detail: "no such \(what)") }
        return v
    }

    func queryInt(_ name: String) -> Int? { query[name].flatMap { Int($0) } }

    /// Who did it, as recorded on versions and audit events.
    var actor: String { principal.map { $0.user.email } ?? "anonymous" }
}

/// An API operation: its place in the OpenAPI document and its handler. The router and the
/// document are both built from the same list, so every route is documented and vice versa.
struct APIOperation: Sendable {
    let method: HTTPRequest.Method
    /// OpenAPI path template under `/api/v1`, e.g. `/workspaces/{workspaceId}/runs/{runId}`.
    let path: String
    let id: String
    let tag: String
    let summary: String
    let access: Access
    var query: [QueryParameter] = []
    var body: Schema? = nil
    let status: HTTPResponse.Status
    let response: Schema?
    let handler: @Sendable (APIDependencies, APICall, WorkspaceActor?) async throws -> APIResult

    var pathParameters: [String] {
        path.split(separator: "/").compactMap { part in
            part.hasPrefix("{") && part.hasSuffix("}") ? String(part.dropFirst().dropLast()) : nil
        }
    }

    /// Hummingbird's form of the path: `{name}` → `:name`.
    var routerPath: String {
        "/api/v1" + path.split(separator: "/").map { part in
            part.hasPrefix("{") && part.hasSuffix("}") ? ":" + part.dropFirst().dropLast() : String(part)
        }.map { "/" + $0 }.joined()
    }
}

/// Registers operations with authentication, authorization, body validation and JSON encoding.
struct APIRouter: Sendable {
    static let maxBodyBytes = 1 << 20
    let operations: [APIOperation]
    let registry: SchemaRegistry
    let dependencies: APIDependencies
    let supervisor: Supervisor

    var identity: IdentityService { dependencies.identity }

    func add(to router: Router<SentinelRequestContext>) {
        for operation in operations {
            router.on(RouterPath(operation.routerPath), method: operation.method) { request, context in
                try await handle(operation, request, context)
            }
        }
    }

    func handle(_ operation: APIOperation, _ request: Request, _ context: SentinelRequestContext) async throws -> Response {
        var request = request
        // 1. Who is calling.
        var principal: Principal?
        if let header = request.headers[.authorization] {
            guard header.lowercased().hasPrefix("bearer "),
                  let found = try identity.authenticate(bearer: String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces)) else {
                throw Problem(status: .unauthorized, detail: "the bearer token is unknown, expired or revoked")
            }
            principal = found
        }
        // 2. May they.
        var role: WorkspaceRole?
        var workspaceID: WorkspaceID?
        switch operation.access {
        case .anyone:
            break
        case .user(let scope):
            let p = try requireCaller(principal)
            guard p.allows(scope) else { throw Self.missingScope(scope) }
        case .applianceAdmin:
            let p = try requireCaller(principal)
            guard p.user.isAdmin else { throw Problem(status: .forbidden, detail: "only appliance admins may do this") }
            guard p.allows(.admin) else { throw Self.missingScope(.admin) }
        case .workspace(let needed, let scope):
            let p = try requireCaller(principal)
            let raw = context.parameters.get("workspaceId") ?? ""
            guard let id = WorkspaceID(raw), let found = try identity.role(of: p.user.id, in: id) else {
                throw Problem(status: .notFound, detail: "no such workspace")
            }
            guard p.allows(scope) else { throw Self.missingScope(scope) }
            guard found >= needed else {
                throw Problem(status: .forbidden, detail: "this needs the \(needed.rawValue) role in the workspace; you are \(found.rawValue)")
            }
            (role, workspaceID) = (found, id)
        }
        // 3. The body, checked against the schema before any decoding.
        var body: Data?
        if let schema = operation.body {
            let buffer: ByteBuffer
            do { buffer = try await request.collectBody(upTo: Self.maxBodyBytes) } catch is NIOTooManyBytesError {
                throw Problem(status: .contentTooLarge, detail: "request bodies are limited to 1 MiB")
            } catch let error as HTTPError where error.status == .contentTooLarge {
                throw Problem(status: .contentTooLarge, detail: "request bodies are limited to 1 MiB")
            }
            let data = Data(buffer: buffer)
            let value: JSONValue
            do { value = try JSONDecoder().decode(JSONValue.self, from: data) } catch {
                throw Problem(status: .badRequest, detail: "the body is not valid JSON", type: "urn:sentinel:problem:invalid-json", title: "Invalid JSON")
            }
            try registry.validate(value, against: schema, at: "")
            body = data
        }
        // 4. Query parameters, checked like body fields.
        var query: [String: String] = [:]
        for parameter in operation.query {
            guard let raw = request.uri.queryParameters.get(parameter.name) else { continue }
            let value: JSONValue
            if case .integer = registry.resolve(parameter.schema) {
                guard let n = Int(raw) else {
                    throw Problem(status: .badRequest, detail: "\(parameter.name): must be an integer", type: "urn:sentinel:problem:invalid-field",
                                  title: "Invalid query parameter")
                }
                value = .int(n)
            } else {
                value = .string(raw)
            }
            try registry.validate(value, against: parameter.schema, at: parameter.name)
            query[parameter.name] = raw
        }
        var path: [String: String] = [:]
        for name in operation.pathParameters { path[name] = context.parameters.get(name) ?? "" }
        let call = APICall(principal: principal, role: role, workspaceID: workspaceID, path: path, query: query, body: body,
                           clientAddress: context.remoteAddress?.ipAddress ?? "unknown", correlationID: context.correlationID,
                           baseURL: dependencies.publicURL ?? "\(dependencies.publicScheme)://\(request.head.authority ?? "localhost")")
        // 5. The handler, inside the workspace when the operation is workspace-scoped.
        let result: APIResult
        if let workspaceID {
            result = try await supervisor.withWorkspace(workspaceID) { [dependencies] actor in try await operation.handler(dependencies, call, actor) }
        } else {
            result = try await operation.handler(dependencies, call, nil)
        }
        return try Self.response(result)
    }

    func requireCaller(_ principal: Principal?) throws -> Principal {
        guard let principal else { throw Problem(status: .unauthorized, detail: "sign in: send Authorization: Bearer <session or API token>") }
        return principal
    }

    static func missingScope(_ scope: TokenScope) -> Problem {
        Problem(status: .forbidden, detail: "this token lacks the '\(scope.rawValue)' scope")
    }

    static func response(_ result: APIResult) throws -> Response {
        switch result {
        case .noContent:
            return Response(status: .noContent)
        case .document(let status, let data):
            return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
        case .json(let status, let value):
            let data = try JSONEncoder.sentinel.encode(value)
            return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
    }
}

/// A page of a list: `next_cursor` is null on the last page.
struct Page<Item: Encodable & Sendable>: Encodable, Sendable {
    let items: [Item]
    let nextCursor: String?

    enum CodingKeys: String, CodingKey {
        case items
        case nextCursor = "next_cursor"
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(items, forKey: .items)
        try c.encode(nextCursor, forKey: .nextCursor)  // explicit null, as the schema says
    }
}
