import Foundation

/// Google Gemini `generateContent`: `POST {base=https://generativelanguage.googleapis.com}/v1beta/models/{model}:generateContent`,
/// key in `x-goog-api-key` (never in the URL, where proxies log it), `systemInstruction`,
/// `contents`, and `generationConfig.responseMimeType/responseSchema`. Gemini's schema is an
/// OpenAPI subset, so the engine's JSON Schema is converted (`GeminiSchema.convert`).
public struct GeminiProvider: WireFormatProvider {
    public static let defaultBaseURL = URL(string: "https://generativelanguage.googleapis.com")!

    public let kind: ProviderKind = .gemini
    public let name: String
    public let model: String
    let config: ProviderConfig
    let http: any OutboundHTTPClient

    public init(config: ProviderConfig, http: any OutboundHTTPClient) {
        self.name = config.id
        self.model = config.model
        self.config = config
        self.http = http
    }

    public func endpoint() throws -> URL {
        let base = config.baseURL ?? Self.defaultBaseURL
        var id = model
        if id.hasPrefix("models/") { id.removeFirst("models/".count) }
        let encoded = id.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/:?#"))) ?? id
        let basePath = ProviderHTTP.basePath(base)
        let version = basePath.hasSuffix("/v1beta") || basePath.hasSuffix("/v1") ? "" : "/v1beta"
        return try ProviderHTTP.url(base, path: "\(version)/models/\(encoded):generateContent")
    }

    func headers() -> [(String, String)] {
        [("Content-Type", "application/json"), ("Accept", "application/json"),
         ("x-goog-api-key", config.apiKey.trimmingCharacters(in: .whitespacesAndNewlines))]
    }

    public func requestBody(_ prompt: ReviewPrompt) throws -> Data {
        let schema = GeminiSchema.convert(try parseSchema(prompt.responseSchema))
        let body: [String: JSONValue] = [
            "systemInstruction": .object(["parts": .array([.object(["text": .string(prompt.system)])])]),
            "contents": .array([.object(["role": .string("user"), "parts": .array([.object(["text": .string(prompt.user)])])])]),
            "generationConfig": .object([
                "responseMimeType": .string("application/json"),
                "responseSchema": schema,
            ]),
        ]
        return try JSONValue.object(body).encoded()
    }

    static let blockedFinishReasons: Set<String> = ["SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII",
                                                     "IMAGE_SAFETY", "LANGUAGE"]

    /// Reads a response: `candidates[0].content.parts[].text` (thought parts skipped); a blocked
    /// prompt (`promptFeedback.blockReason`, no candidates) or a safety `finishReason` as
    /// `.refused`; usage from `usageMetadata.promptTokenCount` and `candidatesTokenCount` (plus
    /// `thoughtsTokenCount`, billed as output).
    /// `finishReason: MAX_TOKENS` on the first candidate.
    public static func hitOutputLimit(_ data: Data) -> Bool {
        let json = try? ProviderHTTP.jsonBody(OutboundResponse(status: 200, body: data))
        return json?["candidates"]?.array?.first?["finishReason"]?.string == "MAX_TOKENS"
    }

    public static func parseResponse(_ data: Data) throws -> (text: String, usage: TokenUsage, model: String?) {
        let json = try ProviderHTTP.jsonBody(OutboundResponse(status: 200, body: data))
        guard json.object != nil else { throw ProviderError.malformed("the response is not a JSON object") }
        let meta = json["usageMetadata"]
        let usage = TokenUsage(inputTokens: ProviderHTTP.tokens(meta?["promptTokenCount"]),
                               outputTokens: ProviderHTTP.tokens(meta?["candidatesTokenCount"], meta?["thoughtsTokenCount"]))
        let model = json["modelVersion"]?.string
        let feedback = json["promptFeedback"]
        if let reason = feedback?["blockReason"]?.string {
            throw ProviderError.refused("the prompt was blocked (\(RemoteText.clean(reason, limit: 100)))")
        }
        guard let candidate = json["candidates"]?.array?.first else {
            if let message = feedback?["blockReasonMessage"]?.string {
                throw ProviderError.refused("the prompt was blocked: \(RemoteText.clean(message, limit: 200))")
            }
            if feedback != nil { throw ProviderError.refused("the prompt was blocked") }
            throw ProviderError.malformed("the response has no candidates")
        }
        if let reason = candidate["finishReason"]?.string, blockedFinishReasons.contains(reason) {
            throw ProviderError.refused("the answer was blocked (finishReason \(reason))")
        }
        let parts = candidate["content"]?["parts"]?.array ?? []
        let text = parts.filter { $0["thought"]?.bool != true }.compactMap { $0["text"]?.string }.joined()
        if parts.isEmpty, candidate["content"] == nil, candidate["finishReason"] == nil {
            throw ProviderError.malformed("the candidate has no content")
        }
        return (text, usage, model)
    }
}

/// Converts JSON Schema to the OpenAPI-3 subset Gemini's `responseSchema` accepts: upper-case
/// `type`, `["T", "null"]` as `type: T, nullable: true`, and keys Gemini rejects
/// (`additionalProperties`, `$schema`, `$defs`, `const`, …) dropped.
public enum GeminiSchema {
    static let keptKeys: Set<String> = ["type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
                                        "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength",
                                        "pattern", "example", "anyOf", "propertyOrdering", "default", "items", "minimum",
                                        "maximum"]

    /// Converts schema text; returns JSON text.
    public static func convert(_ schemaText: String) throws -> String {
        try convert(parseSchema(schemaText)).encodedString()
    }

    static func convert(_ schema: JSONValue) -> JSONValue {
        guard case .object(let o) = schema else { return schema }
        var out: [String: JSONValue] = [:]
        for (key, value) in o where keptKeys.contains(key) {
            switch key {
            case "type":
                switch value {
                case .string(let t):
                    if t.lowercased() == "null" { out["nullable"] = .bool(true) } else { out["type"] = .string(t.uppercased()) }
                case .array(let types):
                    let names = types.compactMap(\.string)
                    if names.contains(where: { $0.lowercased() == "null" }) { out["nullable"] = .bool(true) }
                    if let first = names.first(where: { $0.lowercased() != "null" }) { out["type"] = .string(first.uppercased()) }
                default: break
                }
            case "properties":
                if case .object(let props) = value {
                    out["properties"] = .object(props.mapValues(convert))
                    if o["propertyOrdering"] == nil {
                        // Keep the schema's declared order stable for the model (Gemini 2.0 needs it).
                        let required = o["required"]?.array?.compactMap(\.string) ?? []
                        let ordered = required.filter { props[$0] != nil } + props.keys.sorted().filter { !required.contains($0) }
                        out["propertyOrdering"] = .array(ordered.map(JSONValue.string))
                    }
                }
            case "items":
                out["items"] = convert(value)
            case "anyOf":
                if case .array(let options) = value {
                    // {"anyOf": [X, {"type": "null"}]} is X with nullable.
                    let nonNull = options.filter { $0["type"]?.string?.lowercased() != "null" }
                    if nonNull.count == 1, nonNull.count < options.count {
                        for (k, v) in convert(nonNull[0]).object ?? [:] where out[k] == nil { out[k] = v }
                        out["nullable"] = .bool(true)
                    } else {
                        out["anyOf"] = .array(options.map(convert))
                    }
                }
            case "required":
                if case .array(let names) = value, case .object(let props)? = o["properties"] {
                    out["required"] = .array(names.filter { $0.string.map { props[$0] != nil } ?? false })
                }
            default:
                out[key] = value
            }
        }
        if out["type"]?.string == "STRING", case .array(let values)? = out["enum"] {
            out["enum"] = .array(values.filter { $0.string != nil })
        }
        return .object(out)
    }
}
