import Foundation

/// The AI providers Sentinel speaks to. Raw values are the names used in configuration, on the
/// command line (`--kind`) and in policy (`ai.providers`).
public enum ProviderKind: String, Sendable, Hashable, Codable, CaseIterable {
    case openai
    case azureOpenAI = "azure-openai"
    case anthropic
    case gemini
    case openAICompatible = "openai-compatible"

    /// Whether a provider of this kind can work without an API key (self-hosted endpoints such as
    /// Ollama or vLLM often have none).
    public var keyOptional: Bool { self == .openAICompatible }
}

/// One configured provider of a workspace (BYOK). `apiKey` is the decrypted key, held only in
/// memory for the run; it is never part of a description, a log line or an error.
public struct ProviderConfig: Sendable, Hashable {
    public var kind: ProviderKind
    /// Instance id, unique in the workspace ("openai-main"); the router reports it as the provider.
    public var id: String
    public var apiKey: String
    /// nil = the provider's public endpoint. Required for `openai-compatible` and Azure.
    public var baseURL: URL?
    public var model: String
    /// Azure only: `api-version` (default `AzureOpenAIDefaults.apiVersion`).
    public var apiVersion: String?
    /// Azure only: the deployment name (default: `model`).
    public var deployment: String?
    public var enabled: Bool
    /// Lower numbers are tried first (after the policy's preference order).
    public var priority: Int
    /// Upper bound on output tokens where the API requires one (Anthropic `max_tokens`); other
    /// providers use the model's own limit.
    public var maxOutputTokens: Int

    public init(kind: ProviderKind, id: String, apiKey: String, baseURL: URL? = nil, model: String,
                apiVersion: String? = nil, deployment: String? = nil, enabled: Bool = true, priority: Int = 0,
                maxOutputTokens: Int = 8_192) {
        self.kind = kind
        self.id = id
        self.apiKey = apiKey
        self.baseURL = baseURL
        self.model = model
        self.apiVersion = apiVersion
        self.deployment = deployment
        self.enabled = enabled
        self.priority = priority
        self.maxOutputTokens = maxOutputTokens
    }

    /// Whether a usable key is present (or not needed for this kind).
    public var hasKey: Bool {
        !apiKey.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty || (kind.keyOptional && baseURL != nil)
    }
}

extension ProviderConfig: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// `dump()` and reflection show no key either.
    public var customMirror: Mirror {
        Mirror(self, children: ["kind": kind, "id": id, "apiKey": apiKey.isEmpty ? "none" : "[redacted]",
                                "baseURL": baseURL as Any, "model": model, "apiVersion": apiVersion as Any,
                                "deployment": deployment as Any, "enabled": enabled, "priority": priority,
                                "maxOutputTokens": maxOutputTokens])
    }

    /// Never includes the key; only whether one is set.
    public var description: String {
        "ProviderConfig(\(kind.rawValue) \(id), model: \(model), key: \(apiKey.isEmpty ? "none" : "set"), enabled: \(enabled), priority: \(priority))"
    }
    public var debugDescription: String { description }
}

/// One AI provider behind Sentinel's provider-neutral prompt. Implementations map a
/// `ReviewPrompt` onto their wire format, send it over the project's `OutboundHTTPClient`, and
/// return the structured-output text with the token usage the provider reported.
public protocol LLMProvider: Sendable {
    var kind: ProviderKind { get }
    /// The provider instance id (`ProviderConfig.id`).
    var name: String { get }
    var model: String { get }
    func complete(_ prompt: ReviewPrompt, timeout: Duration) async throws -> ModelReply
}

/// A provider that is one HTTP call in its own wire format: it says where and what to send and
/// how to read the answer; sending, error classification and key redaction are shared.
protocol WireFormatProvider: LLMProvider {
    var config: ProviderConfig { get }
    var http: any OutboundHTTPClient { get }
    func endpoint() throws -> URL
    func headers() -> [(String, String)]
    func requestBody(_ prompt: ReviewPrompt) throws -> Data
    static func parseResponse(_ data: Data) throws -> (text: String, usage: TokenUsage, model: String?)
    /// Whether the answer's stop reason says the output-token limit cut it off.
    static func hitOutputLimit(_ data: Data) -> Bool
}

extension WireFormatProvider {
    public func complete(_ prompt: ReviewPrompt, timeout: Duration) async throws -> ModelReply {
        let request = OutboundRequest(method: "POST", url: try endpoint(), headers: headers(), body: try requestBody(prompt), timeout: timeout)
        let response = try await ProviderHTTP.send(request, http: http, secret: config.apiKey)
        try ProviderHTTP.checkStatus(response, kind: kind, secret: config.apiKey)
        let parsed = try Self.parseResponse(response.body)
        return ModelReply(text: parsed.text, usage: parsed.usage, provider: name, model: model, hitOutputLimit: Self.hitOutputLimit(response.body))
    }
}

/// Builds the provider for a configuration.
public func makeProvider(_ config: ProviderConfig, http: any OutboundHTTPClient) -> any LLMProvider {
    switch config.kind {
    case .openai, .azureOpenAI, .openAICompatible: return OpenAIChatProvider(config: config, http: http)
    case .anthropic: return AnthropicProvider(config: config, http: http)
    case .gemini: return GeminiProvider(config: config, http: http)
    }
}

/// Why a provider call failed, classified for the router: retryable failures (rate limits,
/// server errors, timeouts, broken connections or bodies) back off, retry and fall back; the rest
/// fall back without retrying. Messages come from the provider's error body with any key redacted.
public enum ProviderError: Error, Sendable, Hashable, CustomStringConvertible {
    /// 429. `retryAfter` from `Retry-After` (or the provider's own hint), in seconds.
    case rateLimited(retryAfter: TimeInterval?)
    /// 5xx, including Anthropic's 529 overloaded; `retryAfter` from its `Retry-After`, if any.
    case server(status: Int, retryAfter: TimeInterval? = nil)
    /// No answer within the per-call timeout.
    case timeout
    /// The connection failed before an HTTP answer arrived.
    case connection(String)
    /// 401 (and Gemini's API_KEY_INVALID): the key is wrong or revoked.
    case unauthorized
    /// 403: the key is known but not allowed this (a model the account may not use, a region, a
    /// network rule): the provider's message says which. Rotating the key is not the fix.
    case forbidden(String)
    /// 400/404/413/422 and other 4xx: the request itself is wrong (unknown model, bad schema, …).
    case badRequest(String)
    /// Billing or quota exhausted (OpenAI 429 `insufficient_quota`, Anthropic 402): retrying won't help.
    case quotaExhausted(String)
    /// The body could not be read as the provider's response (truncated JSON, an HTML page from a proxy).
    case malformed(String)
    /// The model or its safety system declined to answer.
    case refused(String)

    /// The error's kind as a metric label (no message: bounded).
    public var metricLabel: String {
        switch self {
        case .rateLimited: return "rate_limited"
        case .server: return "server"
        case .timeout: return "timeout"
        case .connection: return "connection"
        case .unauthorized: return "unauthorized"
        case .forbidden: return "forbidden"
        case .badRequest: return "bad_request"
        case .quotaExhausted: return "quota_exhausted"
        case .malformed: return "malformed"
        case .refused: return "refused"
        }
    }

    public var isRetryable: Bool {
        switch self {
        case .rateLimited, .server, .timeout, .connection, .malformed: return true
        case .unauthorized, .forbidden, .badRequest, .quotaExhausted, .refused: return false
        }
    }

    /// The provider's wait hint, if any (a 429's, or a 503's or 529's `Retry-After`).
    public var retryAfter: TimeInterval? {
        switch self {
        case .rateLimited(let seconds), .server(_, let seconds): return seconds
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .rateLimited(let seconds):
            return "rate limited (HTTP 429)" + (seconds.map { ", retry after \(Int($0.rounded(.up))) s" } ?? "")
        case .server(let status, _): return status == 529 ? "the provider is overloaded (HTTP 529)" : "server error (HTTP \(status))"
        case .timeout: return "timed out"
        case .connection(let message): return "connection failed: \(message)"
        case .unauthorized: return "the API key was rejected (unauthorized)"
        case .forbidden(let message): return "access refused (HTTP 403): \(message)"
        case .badRequest(let message): return "request rejected: \(message)"
        case .quotaExhausted(let message): return "quota or billing limit reached: \(message)"
        case .malformed(let message): return "unreadable response: \(message)"
        case .refused(let message): return "the model declined: \(message)"
        }
    }
}

/// Shared plumbing for the providers: sending, transport-error mapping, HTTP error classification
/// and secret redaction.
public enum ProviderHTTP {
    /// Sends `request`, mapping transport failures to `ProviderError`. Cancellation passes through.
    static func send(_ request: OutboundRequest, http: any OutboundHTTPClient, secret: String) async throws -> OutboundResponse {
        do {
            return try await http.send(request)
        } catch let error as OutboundHTTPError {
            switch error {
            case .timeout: throw ProviderError.timeout
            case .connection(let message): throw ProviderError.connection(redact(message, secret: secret))
            case .responseTooLarge: throw ProviderError.malformed("the response exceeded the size limit")
            case .destinationRefused: throw ProviderError.badRequest(error.description)
            }
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw ProviderError.connection(redact(String(describing: error), secret: secret))
        }
    }

    /// Classifies a non-2xx response. `message` is the provider's own error message, if its body
    /// had one; `code` its machine-readable error code/type.
    public static func classify(status: Int, headers: [(String, String)] = [], body: Data, kind: ProviderKind,
                                secret: String = "") -> ProviderError {
        let info = errorInfo(body, kind: kind)
        // The provider's text may be posted in a run summary: cleaned like any remote text.
        let message = RemoteText.clean(redact(info.message ?? fallbackMessage(status: status, body: body), secret: secret))
        let response = OutboundResponse(status: status, headers: headers, body: body)
        switch status {
        case 401:
            return .unauthorized
        case 403:
            return .forbidden(message)
        case 400 where kind == .gemini && info.reason == "API_KEY_INVALID":
            // Gemini answers a wrong key with 400 INVALID_ARGUMENT / reason API_KEY_INVALID.
            return .unauthorized
        case 402:
            return .quotaExhausted(message)
        case 408:
            return .timeout
        case 429:
            if let code = info.code, ["insufficient_quota", "billing_hard_limit_reached"].contains(code) {
                return .quotaExhausted(message)
            }
            if message.lowercased().contains("request too large") {
                return .badRequest(message)
            }
            return .rateLimited(retryAfter: retryAfter(response) ?? info.retryDelay)
        case 500...599:
            return .server(status: status, retryAfter: retryAfter(response))
        default:
            return .badRequest(message)
        }
    }

    /// `retry-after-ms` (OpenAI, Azure) or `Retry-After` (seconds or HTTP date).
    static func retryAfter(_ response: OutboundResponse) -> TimeInterval? {
        if let ms = response.header("retry-after-ms").flatMap({ Double($0.trimmingCharacters(in: .whitespaces)) }),
           let seconds = RemoteDelay.seconds(ms / 1000) {
            return seconds
        }
        return response.retryAfter
    }

    struct ErrorInfo {
        var message: String?
        var code: String?
        var retryDelay: TimeInterval?
        var reason: String?
    }

    /// Reads the provider's error body: OpenAI/Azure `{"error": {"message", "type", "code"}}`,
    /// Anthropic `{"type": "error", "error": {"type", "message"}}`, Gemini google.rpc
    /// `{"error": {"code", "message", "status", "details"}}` (with a `RetryInfo.retryDelay`).
    static func errorInfo(_ body: Data, kind: ProviderKind) -> ErrorInfo {
        guard let json = try? JSONValue.decode(body) else { return ErrorInfo() }
        var info = ErrorInfo()
        let error = json["error"]
        if let message = error?["message"]?.string {
            info.message = message
        } else if let message = error?.string {
            info.message = message  // some OpenAI-compatible servers send {"error": "text"}
        } else if let message = json["message"]?.string ?? json["detail"]?.string {
            info.message = message
        }
        info.code = error?["code"]?.string ?? error?["type"]?.string ?? error?["status"]?.string
        if kind == .gemini, let details = error?["details"]?.array {
            for detail in details where detail["@type"]?.string?.hasSuffix("google.rpc.ErrorInfo") == true {
                info.reason = info.reason ?? detail["reason"]?.string
            }
            for detail in details where detail["@type"]?.string?.hasSuffix("google.rpc.RetryInfo") == true {
                if let delay = detail["retryDelay"]?.string, delay.hasSuffix("s"), let seconds = Double(delay.dropLast()) {
                    info.retryDelay = RemoteDelay.seconds(seconds)
                }
            }
        }
        if let message = info.message, message.count > 500 { info.message = String(message.prefix(499)) + "…" }
        return info
    }

    static func fallbackMessage(status: Int, body: Data) -> String {
        let text = String(decoding: body.prefix(2_000), as: UTF8.self)
        if text.range(of: "<html", options: .caseInsensitive) != nil || text.range(of: "<!doctype", options: .caseInsensitive) != nil {
            return "HTTP \(status) with an HTML page instead of the API's error body"
        }
        return "HTTP \(status)"
    }

    /// Removes the key (and anything that looks like a provider key) from text that may end up in
    /// an error, a log line or a run summary.
    public static func redact(_ text: String, secret: String) -> String {
        var out = text
        let trimmed = secret.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.count >= 4 {
            out = out.replacingOccurrences(of: trimmed, with: "[redacted]")
        }
        // Partial echoes such as OpenAI's "sk-abc***wxyz" and other well-known key shapes.
        out = RemoteText.redactCredentials(out)
        if trimmed.count >= 12 {
            // A long fragment of the key (any 8 characters of it in a row, from its start, its end
            // or its middle) is still a leak: `SECRETKEY-abcdef12` of a 34-character key was kept.
            // A window that could be a word (letters of one case only: `required` of the
            // placeholder key `sk-no-key-required`) is left: it erased words of the provider's text.
            // One with a separator is not a word: counting hyphens as word letters left every
            // window of a passphrase key (`correct-horse-battery-staple`) unredacted.
            let key = Array(trimmed)
            for start in 0...(key.count - 8) {
                let fragment = String(key[start..<(start + 8)])
                let wordLike = fragment.allSatisfy { $0.isLetter && $0.isLowercase } || fragment.allSatisfy { $0.isLetter && $0.isUppercase }
                if !wordLike, out.contains(fragment) { out = out.replacingOccurrences(of: fragment, with: "[redacted]") }
            }
        }
        return out
    }

    /// Joins a base URL and a path without doubling slashes; keeps the base's own path prefix.
    static func url(_ base: URL, path: String, query: String? = nil) throws -> URL {
        var text = base.absoluteString
        // Schemes are case-insensitive (`HTTPS://…` was accepted when added, then every call was refused).
        if let scheme = base.scheme, scheme != scheme.lowercased() { text = scheme.lowercased() + text.dropFirst(scheme.count) }
        while text.hasSuffix("/") { text.removeLast() }
        text += path.hasPrefix("/") ? path : "/" + path
        if let query { text += "?" + query }
        guard let url = URL(string: text), url.scheme == "http" || url.scheme == "https" else {
            throw ProviderError.badRequest("invalid base URL")
        }
        return url
    }

    /// The base URL's path without a trailing slash ("" for a bare host).
    static func basePath(_ base: URL) -> String {
        var path = base.path
        while path.hasSuffix("/") { path.removeLast() }
        return path
    }

    static func checkStatus(_ response: OutboundResponse, kind: ProviderKind, secret: String) throws {
        guard (200..<300).contains(response.status) else {
            throw classify(status: response.status, headers: response.headers, body: response.body, kind: kind, secret: secret)
        }
    }

    /// The token count a provider reports, the sum of its parts (`input_tokens` and the cache counts):
    /// a part that is absent, negative or not an integer counts 0, and each is at most
    /// `maxReportedTokens`, so a provider answering `9223372036854775807` cannot overflow the sums
    /// that meter and limit spending (the overflow trapped) or lower them with a negative count.
    static func tokens(_ parts: JSONValue?...) -> Int {
        parts.reduce(0) { sum, part in sum + min(max(0, part?.int ?? 0), maxReportedTokens) }
    }

    /// More than any model call can use (2^40, about 1.1 × 10^12).
    static let maxReportedTokens = 1 << 40

    static func jsonBody(_ response: OutboundResponse) throws -> JSONValue {
        do {
            return try JSONValue.decode(response.body)
        } catch {
            let text = String(decoding: response.body.prefix(512), as: UTF8.self)
            if text.range(of: "<html", options: .caseInsensitive) != nil || text.range(of: "<!doctype", options: .caseInsensitive) != nil {
                throw ProviderError.malformed("an HTML page instead of JSON")
            }
            if response.body.isEmpty { throw ProviderError.malformed("an empty body") }
            // Sentinel never asks for a stream; a server or proxy that streams anyway is named as such.
            if response.header("Content-Type")?.lowercased().hasPrefix("text/event-stream") == true || text.hasPrefix("data:") || text.hasPrefix("event:") {
                throw ProviderError.malformed("an event stream (text/event-stream) instead of one JSON answer; Sentinel does not ask for streaming, so a proxy or the server streams regardless")
            }
            throw ProviderError.malformed("invalid or truncated JSON (\(response.body.count) bytes)")
        }
    }
}

/// Parses a response schema's text; the engine's own schema (every review's) is parsed once per
/// process, not once per model call.
func parseSchema(_ text: String) throws -> JSONValue {
    if text == PromptBuilder.responseSchema, let parsed = PromptBuilder.parsedResponseSchema { return parsed }
    do {
        let schema = try JSONValue.decode(text)
        guard schema.object != nil else { throw ProviderError.badRequest("the response schema is not a JSON object") }
        return schema
    } catch let error as ProviderError {
        throw error
    } catch {
        throw ProviderError.badRequest("the response schema is not valid JSON")
    }
}
