import Foundation

/// Anthropic Messages: `POST {base=https://api.anthropic.com}/v1/messages` with `x-api-key` and
/// `anthropic-version`. Structured output is forced through a single tool whose `input_schema` is
/// the review schema (`tool_choice: {type: tool}`); the `tool_use` block's `input` is the answer.
/// Text blocks are the fallback for models or proxies that answer in prose.
public struct AnthropicProvider: WireFormatProvider {
    public static let defaultBaseURL = URL(string: "https://api.anthropic.com")!
    public static let apiVersion = "2023-06-01"
    public static let toolName = "report_review"

    public let kind: ProviderKind = .anthropic
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
        let path = ProviderHTTP.basePath(base).hasSuffix("/v1") ? "/messages" : "/v1/messages"
        return try ProviderHTTP.url(base, path: path)
    }

    func headers() -> [(String, String)] {
        [("Content-Type", "application/json"), ("Accept", "application/json"),
         ("x-api-key", config.apiKey.trimmingCharacters(in: .whitespacesAndNewlines)),
         ("anthropic-version", Self.apiVersion)]
    }

    public func requestBody(_ prompt: ReviewPrompt) throws -> Data {
        let schema = try parseSchema(prompt.responseSchema)
        let body: [String: JSONValue] = [
            "model": .string(model),
            "max_tokens": .int(max(1, config.maxOutputTokens)),
            "system": .string(prompt.system),
            "messages": .array([.object(["role": .string("user"), "content": .string(prompt.user)])]),
            "tools": .array([.object([
                "name": .string(Self.toolName),
                "description": .string("Report the review of the diff: a summary and the list of findings."),
                "input_schema": schema,
            ])]),
            "tool_choice": .object(["type": .string("tool"), "name": .string(Self.toolName)]),
        ]
        return try JSONValue.object(body).encoded()
    }

    /// Reads a message: the `tool_use` block's `input` re-serialized as JSON text, else the text
    /// blocks joined; `stop_reason: refusal` as `.refused`; usage from `input_tokens` (plus cache
    /// reads and writes, which are billed input) and `output_tokens`.
    /// `stop_reason: max_tokens`.
    public static func hitOutputLimit(_ data: Data) -> Bool {
        let json = try? ProviderHTTP.jsonBody(OutboundResponse(status: 200, body: data))
        return json?["stop_reason"]?.string == "max_tokens"
    }

    public static func parseResponse(_ data: Data) throws -> (text: String, usage: TokenUsage, model: String?) {
        let json = try ProviderHTTP.jsonBody(OutboundResponse(status: 200, body: data))
        if json["type"]?.string == "error" {
            throw ProviderError.badRequest(RemoteText.clean(json["error"]?["message"]?.string ?? "error", limit: 300))
        }
        guard let blocks = json["content"]?.array else { throw ProviderError.malformed("the response has no content blocks") }
        let usageJSON = json["usage"]
        let usage = TokenUsage(
            inputTokens: ProviderHTTP.tokens(usageJSON?["input_tokens"], usageJSON?["cache_creation_input_tokens"], usageJSON?["cache_read_input_tokens"]),
            outputTokens: ProviderHTTP.tokens(usageJSON?["output_tokens"]))
        let toolUse = blocks.first { $0["type"]?.string == "tool_use" && $0["name"]?.string == toolName }
            ?? blocks.first { $0["type"]?.string == "tool_use" }
        if let input = toolUse?["input"] {
            let text: String
            if let s = input.string { text = s } else {
                do { text = try input.encodedString() } catch { throw ProviderError.malformed("the tool input is not JSON") }
            }
            return (text, usage, json["model"]?.string)
        }
        let text = blocks.filter { $0["type"]?.string == "text" }.compactMap { $0["text"]?.string }.joined()
        if json["stop_reason"]?.string == "refusal" {
            throw ProviderError.refused(text.isEmpty ? "the model declined to answer" : RemoteText.clean(text, limit: 300))
        }
        return (text, usage, json["model"]?.string)
    }
}
