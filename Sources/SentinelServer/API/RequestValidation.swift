import Foundation
import HTTPTypes
import OpenAPIRuntime
import SentinelCore

/// Checks each request against its operation's schemas in the document before the generated code
/// decodes it: bodies are limited to 1 MiB (413), must be JSON without a name given twice in one
/// object, and every field must match its schema (type, length, range, enum, pattern, no unknown
/// fields, no control characters except in fields marked `x-sentinel-multiline`); query
/// parameters likewise. Failures are 400s naming the field. The generated decoder then sees only
/// documented, well-typed input.
struct RequestValidationMiddleware: ServerMiddleware {
    static let maxBodyBytes = 1 << 20
    let document: APIDocument

    /// A request body read whole, up to `maxBodyBytes` (413 past it).
    static func collect(_ body: HTTPBody) async throws -> Data {
        do {
            return try await Data(collecting: body, upTo: maxBodyBytes)
        } catch let error as any ProblemConvertible {
            // A body the HTTP parser could not read (`HTTPParserError`): not a size problem.
            throw error.problem
        } catch {
            throw Problem(status: .contentTooLarge, detail: "request bodies are limited to 1 MiB")
        }
    }

    /// Whether an `Accept` header takes one of `types`: a range of it (`*/*`, `application/*`, or
    /// the type itself) with a weight above 0. An empty header, or an operation with no body to
    /// answer, takes anything.
    static func accepts(_ header: String, any types: Set<String>) -> Bool {
        guard !types.isEmpty, !header.trimmingCharacters(in: .whitespaces).isEmpty else { return true }
        for element in header.split(separator: ",") {
            let parts = element.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            guard let range = parts.first, !range.isEmpty else { continue }
            let weight = parts.dropFirst().first { $0.hasPrefix("q=") }.flatMap { Double($0.dropFirst(2)) } ?? 1
            guard weight > 0 else { continue }
            if range == "*/*" { return true }
            for type in types {
                let major = type.split(separator: "/").first.map(String.init) ?? type
                if range == type || range == major + "/*" { return true }
            }
        }
        return false
    }

    /// The `charset` parameter of a Content-Type value (quotes taken off), nil without one.
    static func charset(of contentType: String) -> String? {
        // Parameters split at `;` outside quoted strings (`foo="a;charset=x"` is one parameter).
        var parameters: [String] = [], current = "", quoted = false, escaped = false
        for character in contentType {
            if escaped { current.append(character); escaped = false; continue }
            if quoted && character == "\\" { escaped = true; continue }
            if character == "\"" { quoted.toggle() }
            if character == ";" && !quoted { parameters.append(current); current = ""; continue }
            current.append(character)
        }
        parameters.append(current)
        for parameter in parameters.dropFirst() {
            let pair = parameter.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard pair.count == 2, pair[0].lowercased() == "charset" else { continue }
            var value = pair[1]
            if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 { value = String(value.dropFirst().dropLast()) }
            return value.trimmingCharacters(in: .whitespaces)
        }
        return nil
    }

    func intercept(_ request: HTTPRequest, body: HTTPBody?, metadata: ServerRequestMetadata, operationID: String,
                   next: @Sendable (HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPResponse, HTTPBody?))
        async throws -> (HTTPResponse, HTTPBody?) {
        guard let operation = document.operations[operationID] else { return try await next(request, body, metadata) }
        // The generated layer checks `Accept` only when it writes the answer, after the handler
        // ran: a setup, a token or a run was made and its one-time secret lost behind a 406.
        if let accept = request.headerFields[.accept], !Self.accepts(accept, any: operation.produces) {
            throw Problem(status: .notAcceptable,
                          detail: "this operation answers \(operation.produces.sorted().joined(separator: " or ")), which the Accept header "
                                + "does not take; nothing was done", title: "Not Acceptable")
        }
        let validator = SchemaValidator(root: document.root)
        let components = URLComponents(string: request.path ?? "")
        // Decoded and as sent, item for item: a value whose percent-encoding is not UTF-8 decodes
        // to nil and would otherwise pass unchecked to the generated decoder.
        let query = Array(zip(components?.queryItems ?? [], components?.percentEncodedQueryItems ?? []))
        // `?limit` and `?a&&b` are no `name=value` pairs: the generated decoder failed on them (a 500).
        if let (bare, _) = query.first(where: { $0.1.value == nil }) {
            throw Problem(status: .badRequest, detail: bare.name.isEmpty ? "the query has an empty part (`&&`, or a trailing `&`); give name=value pairs"
                                                                         : "\(bare.name): has no value; give \(bare.name)=VALUE, or leave it out",
                          type: SchemaValidator.problemType, title: "Invalid query parameter")
        }
        for (name, schema) in operation.query {
            // Given twice, this check would see one value and the generated decoder the other
            // (`limit=1000&limit=1` listed 1,000): no parameter of the document is a list.
            let given = query.filter { $0.0.name == name }
            guard given.count <= 1 else {
                throw Problem(status: .badRequest, detail: "\(name): is given \(given.count) times; give it once", type: SchemaValidator.problemType,
                              title: "Invalid query parameter")
            }
            guard let (item, sent) = given.first, sent.value != nil else { continue }
            guard let raw = item.value else {
                throw Problem(status: .badRequest, detail: "\(name): is not valid percent-encoded UTF-8", type: SchemaValidator.problemType,
                              title: "Invalid query parameter")
            }
            let value: JSONValue
            if validator.resolve(schema)["type"]?.string == "integer" {
                guard let n = Int(raw) else {
                    throw Problem(status: .badRequest, detail: "\(name): must be an integer", type: SchemaValidator.problemType,
                                  title: "Invalid query parameter")
                }
                value = .int(n)
            } else {
                value = .string(raw)
            }
            try validator.validate(value, against: schema, at: name, title: "Invalid query parameter")
        }
        guard let schema = operation.body else { return try await next(request, body, metadata) }
        if let type = request.headerFields[.contentType], let charset = Self.charset(of: type),
           !["utf-8", "utf8", "us-ascii", "ascii", ""].contains(charset.lowercased()) {
            throw Problem(status: .unsupportedMediaType,
                          detail: "the body is declared charset=\(charset.prefix(40)); JSON is sent as UTF-8 (RFC 8259 §8.1): send it as UTF-8, "
                                + "with charset=utf-8 or no charset", title: "Unsupported Media Type")
        }
        let data = try await Self.collect(body ?? HTTPBody())
        func invalid(_ detail: String) -> Problem {
            Problem(status: .badRequest, detail: detail, type: "urn:sentinel:problem:invalid-json", title: "Invalid JSON")
        }
        // RFC 8259 §8.1: JSON between systems is UTF-8. Foundation reads UTF-16 and UTF-32 too, and
        // the structure checks below read bytes as UTF-8 (a UTF-16 body got past the name check).
        if !data.isEmpty, data.contains(0) || String(data: data, encoding: .utf8) == nil {
            throw invalid("the body is not UTF-8; JSON is sent as UTF-8 (RFC 8259 §8.1)")
        }
        let value: JSONValue
        do { value = try JSONDecoder().decode(JSONValue.self, from: data) } catch {
            if data.isEmpty { throw invalid("a JSON body is required") }
            if JSONStructure.firstProblem(in: data) == .tooDeep {
                throw invalid("the body nests arrays and objects deeper than \(JSONStructure.maxDepth) levels")
            }
            throw invalid("the body is not valid JSON")
        }
        // Strict decoding: a name given twice in one object is refused, not settled by keeping one.
        switch JSONStructure.firstProblem(in: data) {
        case .repeatedName(let name, let path)?:
            throw invalid("\(path.isEmpty ? "the body" : path): names \"\(StoredText.singleLine(String(name.prefix(100))))\" twice; "
                          + "each name of a JSON object must be unique")
        case .trailingComma(let path)?:
            throw invalid("\(path.isEmpty ? "the body" : path): has a comma before its closing bracket; JSON allows none there")
        default:
            break
        }
        try validator.validate(value, against: schema, at: "")
        var request = request
        if request.headerFields[.contentType] == nil { request.headerFields[.contentType] = "application/json" }
        return try await next(request, HTTPBody(data), metadata)
    }
}

/// The subset of JSON Schema the document uses, checked against a request value.
struct SchemaValidator: Sendable {
    static let problemType = "urn:sentinel:problem:invalid-field"
    let root: JSONValue

    func resolve(_ schema: JSONValue) -> JSONValue {
        let resolved = APIDocument.resolve(schema, in: root)
        // `allOf` with one member is how the document attaches a description to a `$ref`.
        if case .array(let parts)? = resolved["allOf"], parts.count == 1, let only = parts.first { return resolve(only) }
        return resolved
    }

    /// Checks `value` at `path`; a failure is a 400 titled `title` (a query parameter's is not the body's).
    func validate(_ value: JSONValue, against schema: JSONValue, at path: String, title: String = "Invalid request body") throws {
        func fail(_ message: String) -> Problem {
            Problem(status: .badRequest, detail: "\(path.isEmpty ? "the body" : path): \(message)", type: Self.problemType, title: title)
        }
        let schema = resolve(schema)
        if case .array(let options)? = schema["anyOf"] {
            if value == .null, options.contains(where: { resolve($0)["type"]?.string == "null" }) { return }
            guard let first = options.first(where: { resolve($0)["type"]?.string != "null" }) else { return }
            return try validate(value, against: first, at: path, title: title)
        }
        var type = schema["type"]?.string
        if case .array(let types)? = schema["type"] {
            if value == .null, types.contains(.string("null")) { return }
            type = types.compactMap(\.string).first { $0 != "null" }
        }
        switch type {
        case nil:
            if let bad = Self.controlCharacterPath(in: value, at: path) {
                throw Problem(status: .badRequest, detail: "\(bad.isEmpty ? "the body" : bad): must not contain control characters",
                              type: Self.problemType, title: "Invalid request body")
            }
        case "string":
            guard case .string(let s) = value else { throw fail("must be a string") }
            if let problem = TextRules.controlCharacterProblem(s, multiline: schema["x-sentinel-multiline"] == .bool(true)) { throw fail(problem) }
            if case .int(let min)? = schema["minLength"], s.count < min { throw fail("must have at least \(min) characters") }
            if case .int(let max)? = schema["maxLength"], let problem = TextRules.lengthProblem(s, maxLength: max) { throw fail(problem) }
            if case .array(let values)? = schema["enum"], !values.contains(value) {
                throw fail("must be one of \(values.compactMap(\.string).joined(separator: ", "))")
            }
            if let pattern = schema["pattern"]?.string, s.range(of: pattern, options: .regularExpression) == nil { throw fail("must match \(pattern)") }
        case "integer":
            guard case .int(let n) = value else { throw fail("must be an integer") }
            if case .int(let min)? = schema["minimum"], n < min { throw fail("must be at least \(min)") }
            if case .int(let max)? = schema["maximum"], n > max { throw fail("must be at most \(max)") }
        case "number":
            switch value {
            case .int, .double: return
            default: throw fail("must be a number")
            }
        case "boolean":
            guard case .bool = value else { throw fail("must be true or false") }
        case "array":
            guard case .array(let array) = value else { throw fail("must be an array") }
            if case .int(let max)? = schema["maxItems"], array.count > max { throw fail("must have at most \(max) items") }
            let items = schema["items"] ?? .object([:])
            for (i, item) in array.enumerated() { try validate(item, against: items, at: "\(path)[\(i)]", title: title) }
            if schema["uniqueItems"] == .bool(true), Set(array.map(\.description)).count != array.count { throw fail("must not repeat items") }
        case "object":
            guard case .object(let object) = value else { throw fail("must be an object") }
            if case .object(let properties)? = schema["properties"] {
                if schema["additionalProperties"] == .bool(false), let unknown = object.keys.sorted().first(where: { properties[$0] == nil }) {
                    throw Problem(status: .badRequest, detail: "\(path.isEmpty ? "" : path + ".")\(unknown): unknown field",
                                  type: Self.problemType, title: "Invalid request body")
                }
                var required: [String] = []
                if case .array(let names)? = schema["required"] { required = names.compactMap(\.string) }
                let order = { (name: String) in (required.firstIndex(of: name) ?? required.count, name) }
                for name in properties.keys.sorted(by: { order($0) < order($1) }) {
                    let child = path.isEmpty ? name : "\(path).\(name)"
                    guard let v = object[name] else {
                        if required.contains(name) {
                            throw Problem(status: .badRequest, detail: "\(child): required", type: Self.problemType, title: "Invalid request body")
                        }
                        continue
                    }
                    try validate(v, against: properties[name] ?? .object([:]), at: child, title: title)
                }
            } else if let inner = schema["additionalProperties"] {
                if let key = object.keys.sorted().first(where: { StoredText.hasControlCharacters($0, multiline: false) }) {
                    throw fail("key \"\(StoredText.singleLine(key))\" must not contain control characters")
                }
                for (k, v) in object.sorted(by: { $0.key < $1.key }) { try validate(v, against: inner, at: path.isEmpty ? k : "\(path).\(k)", title: title) }
            }
        default:
            return
        }
    }

    /// The first string or key holding control characters (free-form values may span lines).
    static func controlCharacterPath(in value: JSONValue, at path: String) -> String? {
        switch value {
        case .string(let s):
            return StoredText.hasControlCharacters(s, multiline: true) ? path : nil
        case .array(let items):
            for (i, item) in items.enumerated() {
                if let found = controlCharacterPath(in: item, at: "\(path)[\(i)]") { return found }
            }
            return nil
        case .object(let object):
            for (k, v) in object.sorted(by: { $0.key < $1.key }) {
                let child = path.isEmpty ? k : "\(path).\(k)"
                if StoredText.hasControlCharacters(k, multiline: false) { return path.isEmpty ? "a key" : "a key in \(path)" }
                if let found = controlCharacterPath(in: v, at: child) { return found }
            }
            return nil
        default:
            return nil
        }
    }
}
