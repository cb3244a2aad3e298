import Foundation
import HTTPTypes
import SentinelCore
import Yams

/// Who may call an operation, as its `x-sentinel-access` in the document says. Workspace
/// operations also need a membership with at least the given role; anything about a workspace the
/// caller is not a member of answers 404.
enum Access: Sendable, Equatable {
    case anyone
    case user(TokenScope)
    case applianceAdmin
    case workspace(WorkspaceRole, TokenScope)
}

/// One operation of the document: where it is, who may call it and what its request must look like.
struct DocumentedOperation: Sendable {
    let id: String
    let method: HTTPRequest.Method
    /// The path template under `/api/v1`, e.g. `/workspaces/{workspaceId}/runs/{runId}`.
    let path: String
    let access: Access
    /// The JSON schema of the request body, when the operation takes one.
    let body: JSONValue?
    /// Query parameters and their schemas.
    let query: [(name: String, schema: JSONValue)]
    /// The media types of its successful answers (none for a 204 alone).
    let produces: Set<String>
}

/// The committed OpenAPI document (`openapi.yaml` beside this module's sources, compiled into the
/// binary): the source of the generated types and handler protocol, served at
/// `/api/v1/openapi.yaml` and, as JSON, at `/api/v1/openapi.json`, and read at start for each
/// operation's access rule and request schema.
public struct APIDocument: Sendable {
    struct Invalid: Error, CustomStringConvertible {
        let description: String
    }

    public let yaml: Data
    /// The same document as canonical JSON (sorted keys, pretty), as `sentinel openapi` prints it.
    public let json: Data
    let root: JSONValue
    let operations: [String: DocumentedOperation]

    /// The document compiled into this binary, parsed once per process (every appliance of the
    /// process serves the same document).
    public static func load() throws -> APIDocument {
        try compiled.get()
    }

    private static let compiled = Result { try APIDocument(yaml: Data(PackageResources.openapi_yaml)) }

    init(yaml: Data) throws {
        guard let text = String(data: yaml, encoding: .utf8) else { throw Invalid(description: "openapi.yaml is not UTF-8") }
        let root = JSONValue(yaml: try Yams.load(yaml: text))
        self.yaml = yaml
        self.json = CanonicalJSON.data(try Self.canonical(root), pretty: true)
        self.root = root
        guard case .object(let paths)? = root["paths"] else { throw Invalid(description: "openapi.yaml has no paths") }
        var operations: [String: DocumentedOperation] = [:]
        for (path, item) in paths {
            guard case .object(let methods) = item else { continue }
            for (method, operation) in methods {
                guard let id = operation["operationId"]?.string else { throw Invalid(description: "\(method) \(path) has no operationId") }
                let access = try Self.access(operation["x-sentinel-access"], of: id)
                let body = operation["requestBody"]?["content"]?["application/json"]?["schema"]
                var query: [(name: String, schema: JSONValue)] = []
                if case .array(let parameters)? = operation["parameters"] {
                    for parameter in parameters.map({ Self.resolve($0, in: root) }) where parameter["in"]?.string == "query" {
                        if let name = parameter["name"]?.string, let schema = parameter["schema"] { query.append((name, schema)) }
                    }
                }
                var produces: Set<String> = []
                if case .object(let responses)? = operation["responses"] {
                    for (status, response) in responses where status.hasPrefix("2") {
                        if case .object(let content)? = Self.resolve(response, in: root)["content"] { produces.formUnion(content.keys) }
                    }
                }
                operations[id] = DocumentedOperation(id: id, method: HTTPRequest.Method(method.uppercased()) ?? .get, path: path,
                                                     access: access, body: body, query: query, produces: produces)
            }
        }
        self.operations = operations
    }

    static func canonical(_ value: JSONValue) throws -> CanonicalJSON {
        switch value {
        case .null: return .null
        case .bool(let b): return .bool(b)
        case .int(let i): return .int(i)
        case .double(let d): throw Invalid(description: "openapi.yaml holds the fraction \(d); the document uses integers only")
        case .string(let s): return .string(s)
        case .array(let a): return .array(try a.map(canonical))
        case .object(let o): return .object(try o.mapValues(canonical))
        }
    }

    /// A `$ref` (`#/components/…`) replaced by what it points at; anything else as it is.
    static func resolve(_ value: JSONValue, in root: JSONValue) -> JSONValue {
        guard let ref = value["$ref"]?.string, ref.hasPrefix("#/") else { return value }
        var node: JSONValue? = root
        for part in ref.dropFirst(2).split(separator: "/") { node = node?[String(part)] }
        return node.map { resolve($0, in: root) } ?? value
    }

    static func access(_ value: JSONValue?, of id: String) throws -> Access {
        let caller = value?["caller"]?.string
        let scope = value?["scope"]?.string.flatMap(TokenScope.init(rawValue:))
        let role = value?["role"]?.string.flatMap(WorkspaceRole.init(rawValue:))
        switch (caller, scope, role) {
        case ("anyone", _, _): return .anyone
        case ("user", let scope?, _): return .user(scope)
        case ("appliance-admin", _, _): return .applianceAdmin
        case ("workspace-member", let scope?, let role?): return .workspace(role, scope)
        default: throw Invalid(description: "\(id): x-sentinel-access must name the caller (anyone, user, appliance-admin, workspace-member) and its scope and role")
        }
    }
}
