import Foundation
import HTTPTypes
import SentinelCore

/// The OpenAPI 3.1 description of `/api/v1`, built from the same operation list the router
/// registers. `docs/openapi.json` is this document, committed; a test keeps the two identical and
/// `sentinel openapi` rewrites it.
public enum OpenAPIDocument {
    /// The document as served and committed (canonical JSON, pretty).
    public static let data: Data = CanonicalJSON.data(build(APIOperations.all, registry: APISchemas.registry), pretty: true)

    static func build(_ operations: [APIOperation], registry: SchemaRegistry) -> CanonicalJSON {
        var paths: [String: [String: CanonicalJSON]] = [:]
        for op in operations {
            var parameters: [CanonicalJSON] = op.pathParameters.map { name in
                .object(["name": .string(name), "in": .string("path"), "required": .bool(true),
                         "schema": .object(["type": .string("string"), "minLength": .int(1), "maxLength": .int(64)])])
            }
            for q in op.query {
                parameters.append(.object(["name": .string(q.name), "in": .string("query"), "required": .bool(false),
                                           "description": .string(q.description), "schema": registry.json(q.schema)]))
            }
            var responses: [String: CanonicalJSON] = [
                "default": .object(["description": .string("an error (RFC 9457 problem details)"),
                                    "content": .object(["application/problem+json": .object(["schema": registry.json(.ref("Problem"))])])]),
            ]
            var success: [String: CanonicalJSON] = ["description": .string(op.status.reasonPhrase)]
            if let response = op.response {
                success["content"] = .object(["application/json": .object(["schema": registry.json(response)])])
            }
            responses[String(op.status.code)] = .object(success)
            var operation: [String: CanonicalJSON] = [
                "operationId": .string(op.id), "summary": .string(op.summary), "tags": .array([.string(op.tag)]),
                "responses": .object(responses),
            ]
            if !parameters.isEmpty { operation["parameters"] = .array(parameters) }
            if let body = op.body {
                operation["requestBody"] = .object(["required": .bool(true),
                                                    "content": .object(["application/json": .object(["schema": registry.json(body)])])])
            }
            switch op.access {
            case .anyone: operation["security"] = .array([])
            case .user(let scope): operation["x-sentinel-access"] = .string("any signed-in user; token scope \(scope.rawValue)")
            case .applianceAdmin: operation["x-sentinel-access"] = .string("appliance admins; token scope admin")
            case .workspace(let role, let scope):
                operation["x-sentinel-access"] = .string("workspace role \(role.rawValue) or higher; token scope \(scope.rawValue)")
            }
            paths[op.path, default: [:]][op.method.rawValue.lowercased()] = .object(operation)
        }
        return .object([
            "openapi": .string("3.1.0"),
            "info": .object([
                "title": .string("Sentinel API"),
                "version": .string("1"),
                "description": .string("""
                    The dashboard and automation API of a Sentinel appliance. Authenticate with `Authorization: Bearer <token>`: a \
                    session token from POST /auth/login or a personal API token (snt_…). Errors are RFC 9457 problem details. Lists \
                    are pages: pass `next_cursor` back as `?cursor=`. A workspace the caller is not a member of answers 404. \
                    Request strings may not contain control characters (U+0000–U+001F; PEM fields and free-form setting values \
                    may hold tab, newline and carriage return): such a request answers 400 naming the field.
                    """),
            ]),
            "servers": .array([.object(["url": .string("/api/v1")])]),
            "security": .array([.object(["bearer": .array([])])]),
            "paths": .object(paths.mapValues { .object($0) }),
            "components": .object([
                "schemas": .object(registry.components.mapValues { registry.json($0) }),
                "securitySchemes": .object(["bearer": .object(["type": .string("http"), "scheme": .string("bearer")])]),
            ]),
        ])
    }
}
