import Foundation
import SentinelCore

/// The JSON Schema subset the API uses. One description serves two purposes: it is written into
/// the OpenAPI document, and request bodies are validated against it before they are decoded, so
/// the contract and the checks cannot drift apart.
indirect enum Schema: Sendable {
    /// Request strings never hold control characters (U+0000–U+001F); `multiline` ones (PEM
    /// blocks) may hold tab, newline and carriage return.
    case string(minLength: Int? = nil, maxLength: Int? = nil, values: [String]? = nil, format: String? = nil, pattern: String? = nil,
                multiline: Bool = false)
    case integer(minimum: Int? = nil, maximum: Int? = nil)
    case number
    case boolean
    case array(Schema, maxItems: Int? = nil, unique: Bool = false)
    /// Closed objects: properties not listed are an error in requests.
    case object([Property])
    /// A string-keyed map of one value schema.
    case map(Schema)
    case ref(String)
    case nullable(Schema)
    /// Any JSON value (settings values, explain documents).
    case any

    static let text = Schema.string(minLength: 1, maxLength: 200)
}

struct Property: Sendable {
    let name: String
    let schema: Schema
    let required: Bool
    let description: String?

    init(_ name: String, _ schema: Schema, required: Bool = true, _ description: String? = nil) {
        self.name = name
        self.schema = schema
        self.required = required
        self.description = description
    }
}

/// Where `.ref` names resolve; every component is in the OpenAPI document.
struct SchemaRegistry: Sendable {
    let components: [String: Schema]

    func resolve(_ schema: Schema) -> Schema {
        if case .ref(let name) = schema, let found = components[name] { return resolve(found) }
        return schema
    }

    // MARK: OpenAPI rendering

    func json(_ schema: Schema, description: String? = nil) -> CanonicalJSON {
        var out: [String: CanonicalJSON]
        switch schema {
        case .string(let min, let max, let values, let format, let pattern, _):
            out = ["type": .string("string")]
            if let min { out["minLength"] = .int(min) }
            if let max { out["maxLength"] = .int(max) }
            if let values { out["enum"] = .array(values.map { .string($0) }) }
            if let format { out["format"] = .string(format) }
            if let pattern { out["pattern"] = .string(pattern) }
        case .integer(let min, let max):
            out = ["type": .string("integer")]
            if let min { out["minimum"] = .int(min) }
            if let max { out["maximum"] = .int(max) }
        case .number: out = ["type": .string("number")]
        case .boolean: out = ["type": .string("boolean")]
        case .array(let items, let maxItems, let unique):
            out = ["type": .string("array"), "items": json(items)]
            if let maxItems { out["maxItems"] = .int(maxItems) }
            if unique { out["uniqueItems"] = .bool(true) }
        case .object(let properties):
            var props: [String: CanonicalJSON] = [:]
            for p in properties { props[p.name] = json(p.schema, description: p.description) }
            out = ["type": .string("object"), "properties": .object(props), "additionalProperties": .bool(false)]
            let required = properties.filter(\.required).map { CanonicalJSON.string($0.name) }
            if !required.isEmpty { out["required"] = .array(required) }
        case .map(let value):
            out = ["type": .string("object"), "additionalProperties": json(value)]
        case .ref(let name):
            let ref: CanonicalJSON = .object(["$ref": .string("#/components/schemas/\(name)")])
            guard let description else { return ref }
            return .object(["allOf": .array([ref]), "description": .string(description)])
        case .nullable(let inner):
            if case .ref = inner {
                out = ["anyOf": .array([json(inner), .object(["type": .string("null")])])]
            } else {
                guard case .object(var fields) = json(inner), case .string(let type)? = fields["type"] else {
                    return .object(["anyOf": .array([json(inner), .object(["type": .string("null")])])])
                }
                fields["type"] = .array([.string(type), .string("null")])
                if case .array(let values)? = fields["enum"] { fields["enum"] = .array(values + [.null]) }
                out = fields
            }
        case .any:
            out = [:]
        }
        if let description { out["description"] = .string(description) }
        return .object(out)
    }

    // MARK: Request validation

    /// Checks a parsed JSON value against a schema; the error names the offending field.
    func validate(_ value: JSONValue, against schema: Schema, at path: String) throws {
        func fail(_ message: String) -> Problem {
            Problem(status: .badRequest, detail: "\(path.isEmpty ? "the body" : path): \(message)",
                    type: "urn:sentinel:problem:invalid-field", title: "Invalid request body")
        }
        switch resolve(schema) {
        case .any:
            // Free-form values (settings) may span lines, but hold no other control characters.
            if let bad = Self.controlCharacterPath(in: value, at: path) {
                throw Problem(status: .badRequest, detail: "\(bad.isEmpty ? "the body" : bad): must not contain control characters",
                              type: "urn:sentinel:problem:invalid-field", title: "Invalid request body")
            }
        case .nullable(let inner):
            if case .null = value { return }
            try validate(value, against: inner, at: path)
        case .string(let min, let max, let values, _, let pattern, let multiline):
            guard case .string(let s) = value else { throw fail("must be a string") }
            if StoredText.hasControlCharacters(s, multiline: multiline) {
                throw fail(multiline ? "must not contain control characters other than tab and line breaks" : "must not contain control characters")
            }
            if let min, s.count < min { throw fail("must have at least \(min) characters") }
            if let max, s.count > max { throw fail("must have at most \(max) characters") }
            if let values, !values.contains(s) { throw fail("must be one of \(values.joined(separator: ", "))") }
            if let pattern, s.range(of: pattern, options: .regularExpression) == nil { throw fail("must match \(pattern)") }
        case .integer(let min, let max):
            guard case .int(let n) = value else { throw fail("must be an integer") }
            if let min, n < min { throw fail("must be at least \(min)") }
            if let max, n > max { throw fail("must be at most \(max)") }
        case .number:
            switch value {
            case .int, .double: return
            default: throw fail("must be a number")
            }
        case .boolean:
            guard case .bool = value else { throw fail("must be true or false") }
        case .array(let items, let maxItems, let unique):
            guard case .array(let array) = value else { throw fail("must be an array") }
            if let maxItems, array.count > maxItems { throw fail("must have at most \(maxItems) items") }
            for (i, item) in array.enumerated() { try validate(item, against: items, at: "\(path)[\(i)]") }
            if unique, Set(array.map { "\($0)" }).count != array.count { throw fail("must not repeat items") }
        case .object(let properties):
            guard case .object(let object) = value else { throw fail("must be an object") }
            let known = Set(properties.map(\.name))
            if let unknown = object.keys.sorted().first(where: { !known.contains($0) }) {
                throw Problem(status: .badRequest, detail: "\(path.isEmpty ? "" : path + ".")\(unknown): unknown field",
                              type: "urn:sentinel:problem:invalid-field", title: "Invalid request body")
            }
            for p in properties {
                let child = path.isEmpty ? p.name : "\(path).\(p.name)"
                guard let v = object[p.name] else {
                    if p.required {
                        throw Problem(status: .badRequest, detail: "\(child): required", type: "urn:sentinel:problem:invalid-field",
                                      title: "Invalid request body")
                    }
                    continue
                }
                try validate(v, against: p.schema, at: child)
            }
        case .map(let inner):
            guard case .object(let object) = value else { throw fail("must be an object") }
            if let key = object.keys.sorted().first(where: { StoredText.hasControlCharacters($0, multiline: false) }) {
                throw fail("key \"\(StoredText.singleLine(key))\" must not contain control characters")
            }
            for (k, v) in object.sorted(by: { $0.key < $1.key }) { try validate(v, against: inner, at: path.isEmpty ? k : "\(path).\(k)") }
        case .ref:
            throw fail("has an unknown schema")
        }
    }

    /// Where in a free-form value a string (or key) holds a control character other than tab,
    /// newline or carriage return (keys: any control character).
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

/// Any JSON value, decoded strictly (a boolean is never a number and vice versa), so request
/// bodies can be checked against their schema before they are decoded into their Swift type.
enum JSONValue: Decodable, Sendable, Equatable, CustomStringConvertible {
    case null, bool(Bool), int(Int), double(Double), string(String), array([JSONValue]), object([String: JSONValue])

    init(from decoder: Decoder) throws {
        if let c = try? decoder.singleValueContainer() {
            if c.decodeNil() { self = .null; return }
            if let b = try? c.decode(Bool.self) { self = .bool(b); return }
            if let i = try? c.decode(Int.self) { self = .int(i); return }
            if let d = try? c.decode(Double.self) { self = .double(d); return }
            if let s = try? c.decode(String.self) { self = .string(s); return }
            if let a = try? c.decode([JSONValue].self) { self = .array(a); return }
            if let o = try? c.decode([String: JSONValue].self) { self = .object(o); return }
        }
        throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not JSON"))
    }

    var description: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return String(b)
        case .int(let i): return String(i)
        case .double(let d): return String(d)
        case .string(let s): return "\"\(s)\""
        case .array(let a): return "[" + a.map(\.description).joined(separator: ",") + "]"
        case .object(let o): return "{" + o.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",") + "}"
        }
    }
}
