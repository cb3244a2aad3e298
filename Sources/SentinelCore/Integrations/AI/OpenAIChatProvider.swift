import Foundation

public enum AzureOpenAIDefaults {
    /// The GA `api-version` with structured outputs (`response_format: json_schema`).
    public static let apiVersion = "2024-10-21"
}

/// OpenAI Chat Completions and the two services that speak it:
/// - OpenAI: `POST {base=https://api.openai.com/v1}/chat/completions`, `Authorization: Bearer`,
///   strict `response_format: json_schema`.
/// - Azure OpenAI: `POST {base}/openai/deployments/{deployment}/chat/completions?api-version=…`,
///   `api-key` header, same body without `model`.
/// - OpenAI-compatible (Ollama, vLLM, OpenRouter, LM Studio): `POST {base}/chat/completions`, an
///   optional Bearer key, `response_format: json_object` (widely supported) with the schema in the
///   system prompt.
public struct OpenAIChatProvider: WireFormatProvider {
    public static let defaultBaseURL = URL(string: "https://api.openai.com/v1")!
    /// `json_schema.name` (must match `^[a-zA-Z0-9_-]{1,64}$`).
    public static let schemaName = "code_review"

    public let kind: ProviderKind
    public let name: String
    public let model: String
    let config: ProviderConfig
    let http: any OutboundHTTPClient

    public init(config: ProviderConfig, http: any OutboundHTTPClient) {
        self.kind = config.kind
        self.name = config.id
        self.model = config.model
        self.config = config
        self.http = http
    }

    /// The endpoint this provider posts to.
    public func endpoint() throws -> URL {
        switch kind {
        case .azureOpenAI:
            guard let base = config.baseURL else { throw ProviderError.badRequest("Azure OpenAI needs the resource's base URL") }
            let deployment = (config.deployment?.isEmpty == false ? config.deployment! : config.model)
            let encoded = deployment.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? deployment
            let version = (config.apiVersion?.isEmpty == false ? config.apiVersion! : AzureOpenAIDefaults.apiVersion)
            let query = "api-version=" + (version.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed) ?? version)
            let prefix = ProviderHTTP.basePath(base).hasSuffix("/openai") ? "" : "/openai"
            return try ProviderHTTP.url(base, path: "\(prefix)/deployments/\(encoded)/chat/completions", query: query)
        case .openAICompatible:
            guard let base = config.baseURL else { throw ProviderError.badRequest("an OpenAI-compatible provider needs a base URL") }
            return try ProviderHTTP.url(base, path: "/chat/completions")
        default:
            return try ProviderHTTP.url(config.baseURL ?? Self.defaultBaseURL, path: "/chat/completions")
        }
    }

    /// Request headers (the key goes only here).
    func headers() -> [(String, String)] {
        var headers = [("Content-Type", "application/json"), ("Accept", "application/json")]
        let key = config.apiKey.trimmingCharacters(in: .whitespacesAndNewlines)
        switch kind {
        case .azureOpenAI: headers.append(("api-key", key))
        default: if !key.isEmpty { headers.append(("Authorization", "Bearer \(key)")) }
        }
        return headers
    }

    /// The JSON request body for `prompt`.
    public func requestBody(_ prompt: ReviewPrompt) throws -> Data {
        let schema = try parseSchema(prompt.responseSchema)
        var body: [String: JSONValue] = [:]
        var system = prompt.system
        switch kind {
        case .openAICompatible:
            system += "\n\nReply with a single JSON object that conforms to this JSON Schema (no prose, no code fences):\n"
                + prompt.responseSchema
            body["response_format"] = .object(["type": .string("json_object")])
        default:
            body["response_format"] = .object([
                "type": .string("json_schema"),
                "json_schema": .object([
                    "name": .string(Self.schemaName),
                    "strict": .bool(true),
                    "schema": schema,
                ]),
            ])
        }
        if kind != .azureOpenAI { body["model"] = .string(model) }
        body["messages"] = .array([
            .object(["role": .string("system"), "content": .string(system)]),
            .object(["role": .string("user"), "content": .string(prompt.user)]),
        ])
        return try JSONValue.object(body).encoded()
    }

    /// Reads a chat completion: `choices[0].message.content` (a string, or text parts), a
    /// `refusal` or `finish_reason: content_filter` as `.refused`, usage from
    /// `usage.prompt_tokens/completion_tokens`.
    /// `finish_reason: length`.
    public static func hitOutputLimit(_ data: Data) -> Bool {
        let json = try? ProviderHTTP.jsonBody(OutboundResponse(status: 200, body: data))
        return json?["choices"]?.array?.first?["finish_reason"]?.string == "length"
    }

    public static func parseResponse(_ data: Data) throws -> (text: String, usage: TokenUsage, model: String?) {
        let json = try ProviderHTTP.jsonBody(OutboundResponse(status: 200, body: data))
        guard json.object != nil else { throw ProviderError.malformed("the response is not a JSON object") }
        if let message = json["error"]?["message"]?.string {
            // Some compatible servers answer 200 with an error object.
            throw ProviderError.badRequest(RemoteText.clean(String(message.prefix(300))))
        }
        guard let choice = json["choices"]?.array?.first else { throw ProviderError.malformed("the response has no choices") }
        let message = choice["message"]
        if let refusal = message?["refusal"]?.string, !refusal.isEmpty {
            throw ProviderError.refused(RemoteText.clean(refusal, limit: 300))
        }
        var text: String?
        if let content = message?["content"]?.string {
            text = content
        } else if let parts = message?["content"]?.array {
            text = parts.compactMap { $0["text"]?.string }.joined()
        }
        // With part of an answer too: the filter cut it off, and what came is not the review (it was
        // read as truncated JSON, retried on the same provider and never passed to the next).
        if choice["finish_reason"]?.string == "content_filter" {
            throw ProviderError.refused((text ?? "").isEmpty ? "the provider's content filter blocked the answer"
                                                              : "the provider's content filter cut the answer off")
        }
        // No content at the output limit (a reasoning model whose thinking used it all up): an
        // empty answer that hit the limit, metered at its usage. As an error it went unmetered and
        // was asked for again, which only doubles the cost.
        if text == nil, choice["finish_reason"]?.string == "length" { text = "" }
        guard let text else { throw ProviderError.malformed("the response has no message content") }
        let usage = TokenUsage(inputTokens: ProviderHTTP.tokens(json["usage"]?["prompt_tokens"]),
                               outputTokens: ProviderHTTP.tokens(json["usage"]?["completion_tokens"]))
        return (text, usage, json["model"]?.string)
    }
}
