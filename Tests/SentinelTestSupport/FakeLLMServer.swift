import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import SentinelCore

/// The API families the fake speaks, each on its real path.
public enum FakeLLMAPI: String, Sendable, Hashable, CaseIterable {
    /// `POST /v1/chat/completions` (Bearer key required).
    case openAI
    /// `POST /chat/completions` (base URL without `/v1`, as an Ollama/vLLM-style endpoint; key optional).
    case openAICompatible
    /// `POST /openai/deployments/:deployment/chat/completions?api-version=…` (`api-key`).
    case azure
    /// `POST /v1/messages` (`x-api-key`, `anthropic-version`).
    case anthropic
    /// `POST /v1beta/models/{model}:generateContent` (`x-goog-api-key`).
    case gemini
}

/// A fault the fake injects instead of (or before) a normal answer.
public enum FakeLLMFault: Sendable, Equatable {
    /// 429 with `Retry-After: seconds` and the provider's rate-limit error body.
    case rateLimited(retryAfter: Int)
    /// This status (500, 503, 529 …) with the provider's error body.
    case status(Int)
    /// A normal answer after this delay (use a delay past the client's timeout).
    case slow(Duration)
    /// 200 with the provider's JSON cut off in the middle.
    case truncatedJSON
    /// 200 with an HTML page (a proxy's error page) instead of JSON.
    case html
    /// 200 with a server-sent event stream (a proxy or server that streams whatever was asked).
    case eventStream
    /// A refusal in the provider's shape (OpenAI `refusal`, Anthropic `stop_reason: refusal`,
    /// Gemini `promptFeedback.blockReason`).
    case refusal
    /// The normal answer's head at once, then its body one byte every `interval` (a slow drip that
    /// only a total deadline, body included, cuts off).
    case drip(interval: Duration)
    /// 200 `application/json` that is JSON but in no provider's shape (a misrouted gateway's answer).
    case garbageJSON
    /// The provider's normal envelope whose text stops half way, with the provider's "out of
    /// tokens" stop reason (OpenAI `finish_reason: length`, Anthropic `stop_reason: max_tokens`,
    /// Gemini `finishReason: MAX_TOKENS`).
    case truncatedOutput
}

/// One request as the fake received it. Secret header values are replaced by `<redacted>`.
public struct RecordedLLMRequest: Sendable {
    public var api: FakeLLMAPI
    public var method: String
    public var path: String
    public var query: String?
    /// Lower-cased names.
    public var headers: [String: String]
    public var body: Data
    /// The status the fake answered with.
    public var status: Int
    /// When the request arrived (before any injected delay): how tests check that a client waited.
    public var receivedAt = Date()

    /// The body as a JSON object (nil if it is not one).
    public func json() -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: body)) as? [String: Any]
    }
}

/// Builds scripted review JSON in the engine's output schema.
public struct FakeLLMFinding: Sendable {
    public var path: String
    public var startLine: Int?
    public var line: Int
    public var side: String
    public var severity: String
    public var category: String
    public var title: String
    public var body: String
    public var suggestion: String?

    public init(path: String, startLine: Int? = nil, line: Int, side: String = "RIGHT", severity: String = "high",
                category: String = "correctness", title: String, body: String = "Explanation.", suggestion: String? = nil) {
        self.path = path
        self.startLine = startLine
        self.line = line
        self.side = side
        self.severity = severity
        self.category = category
        self.title = title
        self.body = body
        self.suggestion = suggestion
    }

    var object: [String: Any] {
        ["path": path, "start_line": startLine.map { $0 as Any } ?? NSNull(), "line": line, "side": side, "severity": severity,
         "category": category, "title": title, "body": body, "suggestion": suggestion.map { $0 as Any } ?? NSNull()]
    }

    public static func reviewJSON(summary: String, findings: [FakeLLMFinding]) -> String {
        let object: [String: Any] = ["summary": summary, "findings": findings.map(\.object)]
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }
}

/// Scripted state of the fake: the review text, usage numbers, keys, faults and the request log.
public actor FakeLLMState {
    struct FaultRule {
        var api: FakeLLMAPI?
        var model: String?
        var fault: FakeLLMFault
        var remaining: Int?
    }

    /// The review JSON text every successful answer carries (wrapped in each provider's shape).
    public private(set) var reviewText: String = FakeLLMFinding.reviewJSON(summary: "Looks fine.", findings: [])
    public private(set) var inputTokens = 1_200
    public private(set) var outputTokens = 80
    public private(set) var keys: [FakeLLMAPI: String]
    private var faults: [FaultRule] = []
    private var log: [RecordedLLMRequest] = []

    init(keys: [FakeLLMAPI: String]) { self.keys = keys }

    public func setReview(_ json: String) { reviewText = json }
    public func setReview(summary: String, findings: [FakeLLMFinding]) {
        reviewText = FakeLLMFinding.reviewJSON(summary: summary, findings: findings)
    }
    public func setUsage(input: Int, output: Int) { inputTokens = input; outputTokens = output }
    /// nil key for `.openAICompatible` = no key required.
    public func setKey(_ key: String?, for api: FakeLLMAPI) { keys[api] = key }

    /// Injects `fault` for requests to `api` (nil = every API), optionally only for one model
    /// (Azure: the deployment), for the next `times` matching requests (nil = until cleared).
    public func inject(_ fault: FakeLLMFault, api: FakeLLMAPI? = nil, model: String? = nil, times: Int? = 1) {
        faults.append(FaultRule(api: api, model: model, fault: fault, remaining: times))
    }

    public func clearFaults() { faults = [] }

    public func requests(_ api: FakeLLMAPI? = nil) -> [RecordedLLMRequest] {
        guard let api else { return log }
        return log.filter { $0.api == api }
    }

    public func clearRequests() { log = [] }

    func record(_ request: RecordedLLMRequest) { log.append(request) }

    func takeFault(api: FakeLLMAPI, model: String?) -> FakeLLMFault? {
        guard let index = faults.firstIndex(where: { ($0.api == nil || $0.api == api) && ($0.model == nil || $0.model == model) }) else {
            return nil
        }
        let fault = faults[index].fault
        if let remaining = faults[index].remaining {
            if remaining <= 1 { faults.remove(at: index) } else { faults[index].remaining = remaining - 1 }
        }
        return fault
    }

    func snapshot() -> (review: String, input: Int, output: Int) { (reviewText, inputTokens, outputTokens) }
}

/// One loopback server (127.0.0.1, random port) speaking OpenAI Chat Completions, Azure OpenAI,
/// Anthropic Messages and Gemini generateContent on their real paths. It checks each request's
/// auth header and body shape the way the real API does (400 with the provider's error body for
/// missing fields, Gemini's rejection of JSON-Schema-only keywords, OpenAI's strict-schema rules),
/// answers with the scripted review wrapped in the provider's response shape, injects faults, and
/// records every request.
public final class FakeLLMServer: Sendable {
    public static let defaultKeys: [FakeLLMAPI: String] = [
        .openAI: "sk-fake-openai-key-0001", .azure: "fake-azure-key-0002", .anthropic: "sk-ant-fake-key-0003",
        .gemini: "AIzaFakeGeminiKey0004", .openAICompatible: "fake-compatible-key-0005",
    ]

    public let state: FakeLLMState
    public let port: Int
    private let task: Task<Void, any Error>

    public var baseURL: URL { URL(string: "http://127.0.0.1:\(port)")! }
    /// Base URL for OpenAI (`…/v1`, like `https://api.openai.com/v1`).
    public var openAIBaseURL: URL { URL(string: "http://127.0.0.1:\(port)/v1")! }

    /// - Parameter keys: the key each API accepts (defaults: `defaultKeys`). Remove
    ///   `.openAICompatible` to accept requests without a key there.
    public static func start(keys: [FakeLLMAPI: String] = FakeLLMServer.defaultKeys) async throws -> FakeLLMServer {
        let state = FakeLLMState(keys: keys)
        let router = Router()
        FakeLLMRoutes(state: state).add(to: router)
        let portBox = Rendezvous<Int>()
        var logger = Logger(label: "sentinel.fake-llm")
        logger.logLevel = .critical  // shutdown noise ("Waiting on child channel: CancellationError") is expected
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { channel in await portBox.set(channel.localAddress?.port ?? 0) },
                              logger: logger)
        let task = Task { try await app.runService() }
        let port = await portBox.wait()
        return FakeLLMServer(state: state, port: port, task: task)
    }

    private init(state: FakeLLMState, port: Int, task: Task<Void, any Error>) {
        self.state = state
        self.port = port
        self.task = task
    }

    public func stop() async {
        task.cancel()
        _ = await task.result
    }

    /// A provider configuration pointing at this fake.
    public func config(_ kind: ProviderKind, id: String? = nil, model: String? = nil, key: String? = nil,
                       priority: Int = 0, enabled: Bool = true) -> ProviderConfig {
        let api: FakeLLMAPI
        let base: URL
        var deployment: String?
        switch kind {
        case .openai: api = .openAI; base = openAIBaseURL
        case .openAICompatible: api = .openAICompatible; base = baseURL
        case .azureOpenAI: api = .azure; base = baseURL; deployment = model ?? "gpt-4o-review"
        case .anthropic: api = .anthropic; base = baseURL
        case .gemini: api = .gemini; base = baseURL
        }
        let defaultModel: String
        switch kind {
        case .openai, .azureOpenAI: defaultModel = "gpt-4o-2024-08-06"
        case .openAICompatible: defaultModel = "llama3.1:8b"
        case .anthropic: defaultModel = "claude-sonnet-4-20250514"
        case .gemini: defaultModel = "gemini-2.0-flash"
        }
        return ProviderConfig(kind: kind, id: id ?? kind.rawValue, apiKey: key ?? Self.defaultKeys[api] ?? "", baseURL: base,
                              model: model ?? defaultModel, deployment: deployment, enabled: enabled, priority: priority)
    }
}

/// A rejected request: status and the provider-shaped error message.
struct FakeLLMRejection: Error {
    var status: Int
    var message: String
    var type: String
}

struct FakeLLMRoutes: Sendable {
    let state: FakeLLMState

    static let secretHeaders: Set<String> = ["authorization", "api-key", "x-api-key", "x-goog-api-key"]

    func add(to router: Router<BasicRequestContext>) {
        router.post("/v1/chat/completions") { request, _ in try await handle(.openAI, request, deployment: nil, action: nil) }
        router.post("/chat/completions") { request, _ in try await handle(.openAICompatible, request, deployment: nil, action: nil) }
        router.post("/openai/deployments/:deployment/chat/completions") { request, context in
            try await handle(.azure, request, deployment: context.parameters.get("deployment"), action: nil)
        }
        router.post("/v1/messages") { request, _ in try await handle(.anthropic, request, deployment: nil, action: nil) }
        router.post("/v1beta/models/:modelAction") { request, context in
            try await handle(.gemini, request, deployment: nil, action: context.parameters.get("modelAction"))
        }
        // Model lists (what `sentinel doctor --online` calls). OpenAI and Anthropic share the path
        // on this one host: a request with Anthropic's headers is Anthropic's.
        router.get("/v1/models") { request, _ in
            let anthropic = request.headers[HTTPField.Name("x-api-key")!] != nil || request.headers[HTTPField.Name("anthropic-version")!] != nil
            return await models(anthropic ? .anthropic : .openAI, request)
        }
        router.get("/models") { request, _ in await models(.openAICompatible, request) }
        router.get("/openai/models") { request, _ in await models(.azure, request) }
        router.get("/v1beta/models") { request, _ in await models(.gemini, request) }
    }

    /// A model list in the API's own shape, after the same authentication checks as its completions.
    func models(_ api: FakeLLMAPI, _ request: Request) async -> Response {
        let response: Response
        do {
            try checkAuth(api, request: request, expected: await state.keys[api])
            if api == .azure, request.uri.queryParameters.get("api-version")?.isEmpty != false {
                throw FakeLLMRejection(status: 404, message: "Resource not found", type: "404")
            }
            if api == .anthropic, request.headers[HTTPField.Name("anthropic-version")!] == nil {
                throw FakeLLMRejection(status: 400, message: "anthropic-version: header is required", type: "invalid_request_error")
            }
            let body: [String: Any]
            switch api {
            case .openAI, .openAICompatible, .azure:
                body = ["object": "list", "data": [["id": "gpt-4o-2024-08-06", "object": "model", "owned_by": "system"]]]
            case .anthropic:
                body = ["data": [["id": "claude-sonnet-4-20250514", "type": "model", "display_name": "Claude Sonnet 4"]], "has_more": false]
            case .gemini:
                body = ["models": [["name": "models/gemini-2.0-flash", "displayName": "Gemini 2.0 Flash"]]]
            }
            response = raw(200, "application/json", (try? JSONSerialization.data(withJSONObject: body)) ?? Data("{}".utf8))
        } catch let rejection as FakeLLMRejection {
            response = errorResponse(api, rejection)
        } catch {
            response = errorResponse(api, FakeLLMRejection(status: 500, message: "internal error", type: "server_error"))
        }
        await state.record(RecordedLLMRequest(api: api, method: "GET", path: request.uri.path, query: request.uri.query,
                                              headers: [:], body: Data(), status: Int(response.status.code)))
        return response
    }

    // MARK: - Dispatch

    func handle(_ api: FakeLLMAPI, _ incoming: Request, deployment: String?, action: String?) async throws -> Response {
        var request = incoming
        let body = Data(buffer: try await request.collectBody(upTo: 16 << 20))
        var headers: [String: String] = [:]
        for field in request.headers {
            let name = field.name.canonicalName.lowercased()
            if Self.secretHeaders.contains(name) {
                headers[name] = field.value.hasPrefix("Bearer ") ? "Bearer <redacted>" : "<redacted>"
            } else {
                headers[name] = field.value
            }
        }
        let path = request.uri.path
        let query = request.uri.query
        let receivedAt = Date()
        let response = await respond(api, request: request, body: body, deployment: deployment, action: action)
        await state.record(RecordedLLMRequest(api: api, method: request.method.rawValue, path: path, query: query,
                                              headers: headers, body: body, status: Int(response.status.code), receivedAt: receivedAt))
        return response
    }

    func respond(_ api: FakeLLMAPI, request: Request, body: Data, deployment: String?, action: String?) async -> Response {
        let keys = await state.keys
        do {
            try checkAuth(api, request: request, expected: keys[api])
            let json = try parseBody(body)
            var model: String?
            switch api {
            case .openAI, .openAICompatible:
                try validateChat(json, needsModel: true)
                model = json["model"] as? String
            case .azure:
                guard let version = request.uri.queryParameters.get("api-version"), !version.isEmpty else {
                    throw FakeLLMRejection(status: 404, message: "Resource not found", type: "404")
                }
                try validateChat(json, needsModel: false)
                model = deployment
            case .anthropic:
                try validateAnthropic(json, request: request)
                model = json["model"] as? String
            case .gemini:
                guard let action, action.hasSuffix(":generateContent") else {
                    throw FakeLLMRejection(status: 404, message: "Method not found.", type: "NOT_FOUND")
                }
                model = String(action.dropLast(":generateContent".count))
                try validateGemini(json)
            }
            let fault = await state.takeFault(api: api, model: model)
            let (review, input, output) = await state.snapshot()
            switch fault {
            case .rateLimited(let seconds)?:
                var response = errorResponse(api, FakeLLMRejection(status: 429, message: "Rate limit reached. Please try again in \(seconds)s.",
                                                                   type: api == .anthropic ? "rate_limit_error" : "rate_limit_exceeded"))
                response.headers[.retryAfter] = String(seconds)
                return response
            case .status(let status)?:
                let type: String
                switch status {
                case 529: type = "overloaded_error"
                case 503: type = api == .gemini ? "UNAVAILABLE" : "server_error"
                default: type = api == .anthropic ? "api_error" : "server_error"
                }
                return errorResponse(api, FakeLLMRejection(status: status, message: status == 529 ? "Overloaded" : "The server had an error while processing your request.", type: type))
            case .slow(let delay)?:
                try? await Task.sleep(for: delay)
            case .truncatedJSON?:
                let full = success(api, json: json, model: model ?? "", review: review, input: input, output: output)
                return raw(200, "application/json", Data(full.prefix(max(1, full.count / 2))))
            case .html?:
                return raw(200, "text/html", Data("<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>".utf8))
            case .eventStream?:
                return raw(200, "text/event-stream", Data("data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"{\"}}]}\n\ndata: [DONE]\n\n".utf8))
            case .refusal?:
                return raw(200, "application/json", refusal(api, model: model ?? ""))
            case .drip(let interval)?:
                let full = success(api, json: json, model: model ?? "", review: review, input: input, output: output)
                return Response(status: .ok, headers: [.contentType: "application/json"],
                                body: ResponseBody(contentLength: full.count) { writer in
                                    for byte in full {
                                        try await Task.sleep(for: interval)
                                        try await writer.write(ByteBuffer(bytes: [byte]))
                                    }
                                    try await writer.finish(nil)
                                })
            case .garbageJSON?:
                return raw(200, "application/json", Data(#"{"status":"ok","data":[1,2,3],"note":"not a model answer"}"#.utf8))
            case .truncatedOutput?:
                return raw(200, "application/json", truncatedOutput(api, model: model ?? "", review: review, input: input, output: output))
            case nil:
                break
            }
            return raw(200, "application/json", success(api, json: json, model: model ?? "", review: review, input: input, output: output))
        } catch let rejection as FakeLLMRejection {
            return errorResponse(api, rejection)
        } catch {
            return errorResponse(api, FakeLLMRejection(status: 500, message: "internal error", type: "server_error"))
        }
    }

    // MARK: - Auth

    func checkAuth(_ api: FakeLLMAPI, request: Request, expected: String?) throws {
        func header(_ name: String) -> String? { request.headers[HTTPField.Name(name)!] }
        switch api {
        case .openAI, .openAICompatible:
            guard let expected else { return }
            guard let auth = header("authorization"), auth.hasPrefix("Bearer ") else {
                throw FakeLLMRejection(status: 401, message: "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).", type: "invalid_request_error")
            }
            let given = String(auth.dropFirst("Bearer ".count))
            guard given == expected else {
                // Like OpenAI: echoes a masked key.
                throw FakeLLMRejection(status: 401, message: "Incorrect API key provided: \(given.prefix(3))***\(given.suffix(4)). You can find your API key at https://platform.openai.com/account/api-keys.", type: "invalid_api_key")
            }
        case .azure:
            guard header("api-key") == expected else {
                throw FakeLLMRejection(status: 401, message: "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.", type: "401")
            }
        case .anthropic:
            guard let given = header("x-api-key") else {
                throw FakeLLMRejection(status: 401, message: "x-api-key header is required", type: "authentication_error")
            }
            guard given == expected else { throw FakeLLMRejection(status: 401, message: "invalid x-api-key", type: "authentication_error") }
        case .gemini:
            guard let given = header("x-goog-api-key") ?? request.uri.queryParameters.get("key") else {
                throw FakeLLMRejection(status: 403, message: "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.", type: "PERMISSION_DENIED")
            }
            guard given == expected else {
                throw FakeLLMRejection(status: 400, message: "API key not valid. Please pass a valid API key.", type: "API_KEY_INVALID")
            }
        }
    }

    // MARK: - Validation

    func parseBody(_ body: Data) throws -> [String: Any] {
        guard let object = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] else {
            throw FakeLLMRejection(status: 400, message: "We could not parse the JSON body of your request.", type: "invalid_request_error")
        }
        return object
    }

    func bad(_ message: String, _ type: String = "invalid_request_error") -> FakeLLMRejection {
        FakeLLMRejection(status: 400, message: message, type: type)
    }

    func validateChat(_ json: [String: Any], needsModel: Bool) throws {
        if needsModel, (json["model"] as? String)?.isEmpty ?? true {
            throw bad("you must provide a model parameter")
        }
        guard let messages = json["messages"] as? [[String: Any]], !messages.isEmpty else {
            throw bad("Missing required parameter: 'messages'.")
        }
        var allText = ""
        for (i, message) in messages.enumerated() {
            guard let role = message["role"] as? String, ["system", "developer", "user", "assistant", "tool"].contains(role) else {
                throw bad("Invalid value for 'messages[\(i)].role'.")
            }
            if let text = message["content"] as? String { allText += text } else if message["content"] is [Any] {
            } else { throw bad("Missing required parameter: 'messages[\(i)].content'.") }
        }
        guard let format = json["response_format"] else { return }
        guard let format = format as? [String: Any], let type = format["type"] as? String else {
            throw bad("Invalid type for 'response_format': expected an object.")
        }
        switch type {
        case "text": break
        case "json_object":
            guard allText.lowercased().contains("json") else {
                throw bad("'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.")
            }
        case "json_schema":
            guard let spec = format["json_schema"] as? [String: Any] else {
                throw bad("Missing required parameter: 'response_format.json_schema'.")
            }
            guard let name = spec["name"] as? String, name.range(of: "^[a-zA-Z0-9_-]{1,64}$", options: .regularExpression) != nil else {
                throw bad("Missing required parameter: 'response_format.json_schema.name'.")
            }
            guard let schema = spec["schema"] as? [String: Any] else {
                throw bad("Missing required parameter: 'response_format.json_schema.schema'.")
            }
            if (spec["strict"] as? Bool) == true {
                try checkStrict(schema, name: name, context: "()")
            }
        default:
            throw bad("Invalid value: '\(type)'. Supported values are: 'json_object', 'json_schema', and 'text'.")
        }
    }

    /// OpenAI strict structured outputs: every object has `additionalProperties: false` and lists
    /// every property in `required`.
    func checkStrict(_ schema: [String: Any], name: String, context: String) throws {
        let types: [String] = (schema["type"] as? String).map { [$0] } ?? (schema["type"] as? [String]) ?? []
        if types.contains("object") {
            guard (schema["additionalProperties"] as? Bool) == false else {
                throw bad("Invalid schema for response_format '\(name)': In context=\(context), 'additionalProperties' is required to be supplied and to be false.")
            }
            let properties = schema["properties"] as? [String: Any] ?? [:]
            let required = Set(schema["required"] as? [String] ?? [])
            for key in properties.keys where !required.contains(key) {
                throw bad("Invalid schema for response_format '\(name)': In context=\(context), 'required' is required to be supplied and to be an array including every key in properties. Missing '\(key)'.")
            }
            for (key, value) in properties {
                if let sub = value as? [String: Any] { try checkStrict(sub, name: name, context: "('properties', '\(key)')") }
            }
        }
        if let items = schema["items"] as? [String: Any] { try checkStrict(items, name: name, context: "\(context), 'items'") }
    }

    func validateAnthropic(_ json: [String: Any], request: Request) throws {
        guard request.headers[HTTPField.Name("anthropic-version")!] != nil else {
            throw bad("anthropic-version: header is required")
        }
        guard (json["model"] as? String)?.isEmpty == false else { throw bad("model: Field required") }
        guard let maxTokens = json["max_tokens"] as? Int, maxTokens > 0 else { throw bad("max_tokens: Field required") }
        guard let messages = json["messages"] as? [[String: Any]], !messages.isEmpty else { throw bad("messages: Field required") }
        for (i, message) in messages.enumerated() {
            guard let role = message["role"] as? String, ["user", "assistant"].contains(role) else {
                throw bad("messages.\(i).role: Input should be 'user' or 'assistant'")
            }
            guard message["content"] is String || message["content"] is [Any] else { throw bad("messages.\(i).content: Field required") }
        }
        if messages.first?["role"] as? String != "user" { throw bad("messages: first message must use the \"user\" role") }
        if let system = json["system"], !(system is String || system is [Any]) { throw bad("system: Input should be a valid string") }
        var toolNames: [String] = []
        if let tools = json["tools"] {
            guard let tools = tools as? [[String: Any]] else { throw bad("tools: Input should be a valid list") }
            for (i, tool) in tools.enumerated() {
                guard let name = tool["name"] as? String, name.range(of: "^[a-zA-Z0-9_-]{1,64}$", options: .regularExpression) != nil else {
                    throw bad("tools.\(i).custom.name: Field required")
                }
                guard let schema = tool["input_schema"] as? [String: Any], schema["type"] as? String == "object" else {
                    throw bad("tools.\(i).custom.input_schema: Input tag 'object' expected")
                }
                toolNames.append(name)
            }
        }
        if let choice = json["tool_choice"] {
            guard let choice = choice as? [String: Any], let type = choice["type"] as? String,
                  ["auto", "any", "tool", "none"].contains(type) else { throw bad("tool_choice: Input tag does not match any of the expected tags") }
            if type == "tool" {
                guard let name = choice["name"] as? String else { throw bad("tool_choice.tool.name: Field required") }
                guard toolNames.contains(name) else { throw bad("Tool '\(name)' not found in provided tools") }
            }
        }
    }

    static let geminiSchemaKeys: Set<String> = ["type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
                                                "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength",
                                                "pattern", "example", "anyOf", "propertyOrdering", "default", "items", "minimum",
                                                "maximum"]
    static let geminiTypes: Set<String> = ["STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL", "TYPE_UNSPECIFIED"]

    func validateGemini(_ json: [String: Any]) throws {
        for key in json.keys where !["contents", "systemInstruction", "system_instruction", "generationConfig", "generation_config",
                                     "safetySettings", "safety_settings", "tools", "toolConfig", "cachedContent"].contains(key) {
            throw bad("Invalid JSON payload received. Unknown name \"\(key)\": Cannot find field.", "INVALID_ARGUMENT")
        }
        guard let contents = json["contents"] as? [[String: Any]], !contents.isEmpty else {
            throw bad("* GenerateContentRequest.contents: contents is not specified\n", "INVALID_ARGUMENT")
        }
        for (i, content) in contents.enumerated() {
            guard let parts = content["parts"] as? [[String: Any]], !parts.isEmpty else {
                throw bad("* GenerateContentRequest.contents[\(i)].parts: contents.parts must not be empty.\n", "INVALID_ARGUMENT")
            }
            if let role = content["role"] as? String, !["user", "model"].contains(role) {
                throw bad("Please use a valid role: user, model.", "INVALID_ARGUMENT")
            }
        }
        if let system = json["systemInstruction"] ?? json["system_instruction"] {
            guard let system = system as? [String: Any], system["parts"] != nil else {
                throw bad("Invalid JSON payload received. Unknown name \"systemInstruction\"", "INVALID_ARGUMENT")
            }
        }
        guard let config = (json["generationConfig"] ?? json["generation_config"]) as? [String: Any] else { return }
        let schema = config["responseSchema"] ?? config["response_schema"]
        let mime = (config["responseMimeType"] ?? config["response_mime_type"]) as? String
        if let schema {
            guard mime == "application/json" || mime == "text/x.enum" else {
                throw bad("* GenerateContentRequest.generation_config.response_schema: response_mime_type must be application/json when response_schema is set.\n", "INVALID_ARGUMENT")
            }
            guard let schema = schema as? [String: Any] else { throw bad("Invalid JSON payload received. 'response_schema' must be an object", "INVALID_ARGUMENT") }
            try checkGeminiSchema(schema, at: "generation_config.response_schema")
        }
    }

    func checkGeminiSchema(_ schema: [String: Any], at path: String) throws {
        for key in schema.keys.sorted() where !Self.geminiSchemaKeys.contains(key) {
            throw bad("Invalid JSON payload received. Unknown name \"\(key)\" at '\(path)': Cannot find field.", "INVALID_ARGUMENT")
        }
        if let type = schema["type"] {
            guard let t = type as? String, Self.geminiTypes.contains(t.uppercased()) else {
                throw bad("Invalid JSON payload received. Invalid value at '\(path).type' (type.googleapis.com/google.ai.generativelanguage.v1beta.Type)", "INVALID_ARGUMENT")
            }
        }
        if let properties = schema["properties"] as? [String: Any] {
            for (key, value) in properties.sorted(by: { $0.key < $1.key }) {
                guard let sub = value as? [String: Any] else { throw bad("Invalid value at '\(path).properties[\(key)]'", "INVALID_ARGUMENT") }
                try checkGeminiSchema(sub, at: "\(path).properties[\(key)].value")
            }
        }
        if let items = schema["items"] as? [String: Any] { try checkGeminiSchema(items, at: "\(path).items") }
        if let anyOf = schema["anyOf"] as? [[String: Any]] {
            for (i, sub) in anyOf.enumerated() { try checkGeminiSchema(sub, at: "\(path).any_of[\(i)]") }
        }
    }

    // MARK: - Responses

    func serialize(_ object: Any) -> Data {
        (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
    }

    func raw(_ status: Int, _ contentType: String, _ data: Data) -> Response {
        Response(status: .init(code: status), headers: [.contentType: contentType], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    func errorResponse(_ api: FakeLLMAPI, _ rejection: FakeLLMRejection) -> Response {
        let body: [String: Any]
        switch api {
        case .openAI, .openAICompatible, .azure:
            body = ["error": ["message": rejection.message, "type": rejection.type, "param": NSNull(),
                              "code": rejection.status == 429 ? "rate_limit_exceeded" as Any : (rejection.status == 401 ? "invalid_api_key" as Any : NSNull() as Any)] as [String: Any]]
        case .anthropic:
            let type: String
            switch rejection.status {
            case 400: type = "invalid_request_error"
            case 401: type = "authentication_error"
            case 403: type = "permission_error"
            case 404: type = "not_found_error"
            case 429: type = "rate_limit_error"
            case 529: type = "overloaded_error"
            default: type = rejection.type.hasSuffix("_error") ? rejection.type : "api_error"
            }
            body = ["type": "error", "error": ["type": type, "message": rejection.message], "request_id": "req_fake\(UInt32.random(in: 0...UInt32.max))"]
        case .gemini:
            let status: String
            switch rejection.status {
            case 400: status = "INVALID_ARGUMENT"
            case 403: status = "PERMISSION_DENIED"
            case 404: status = "NOT_FOUND"
            case 429: status = "RESOURCE_EXHAUSTED"
            case 503: status = "UNAVAILABLE"
            default: status = "INTERNAL"
            }
            var error: [String: Any] = ["code": rejection.status, "message": rejection.message, "status": status]
            if rejection.type == "API_KEY_INVALID" {
                error["details"] = [["@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                                     "domain": "googleapis.com", "metadata": ["service": "generativelanguage.googleapis.com"]]]
            }
            body = ["error": error]
        }
        return raw(rejection.status, "application/json", serialize(body))
    }

    func success(_ api: FakeLLMAPI, json: [String: Any], model: String, review: String, input: Int, output: Int) -> Data {
        switch api {
        case .openAI, .openAICompatible, .azure:
            return serialize([
                "id": "chatcmpl-fake\(Int.random(in: 1000...9999))", "object": "chat.completion",
                "created": Int(Date().timeIntervalSince1970), "model": model, "system_fingerprint": "fp_fake",
                "choices": [["index": 0, "message": ["role": "assistant", "content": review, "refusal": NSNull()],
                             "logprobs": NSNull(), "finish_reason": "stop"]],
                "usage": ["prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output,
                          "completion_tokens_details": ["reasoning_tokens": 0]],
            ] as [String: Any])
        case .anthropic:
            var content: [[String: Any]] = [["type": "text", "text": review]]
            var stop = "end_turn"
            if let choice = json["tool_choice"] as? [String: Any], choice["type"] as? String == "tool",
               let name = choice["name"] as? String,
               let input = try? JSONSerialization.jsonObject(with: Data(review.utf8)), input is [String: Any] {
                content = [["type": "tool_use", "id": "toolu_fake01", "name": name, "input": input]]
                stop = "tool_use"
            }
            return serialize([
                "id": "msg_fake01", "type": "message", "role": "assistant", "model": model, "content": content,
                "stop_reason": stop, "stop_sequence": NSNull(),
                "usage": ["input_tokens": input, "output_tokens": output, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0],
            ] as [String: Any])
        case .gemini:
            return serialize([
                "candidates": [["content": ["parts": [["text": review]], "role": "model"], "finishReason": "STOP", "index": 0]],
                "usageMetadata": ["promptTokenCount": input, "candidatesTokenCount": output, "totalTokenCount": input + output,
                                  "promptTokensDetails": [["modality": "TEXT", "tokenCount": input]]],
                "modelVersion": model, "responseId": "fakeResponse01",
            ] as [String: Any])
        }
    }

    /// The normal envelope with the review text cut in half and the provider's out-of-tokens stop reason.
    func truncatedOutput(_ api: FakeLLMAPI, model: String, review: String, input: Int, output: Int) -> Data {
        let half = String(review.prefix(max(1, review.count / 2)))
        switch api {
        case .openAI, .openAICompatible, .azure:
            return serialize([
                "id": "chatcmpl-fake", "object": "chat.completion", "created": Int(Date().timeIntervalSince1970), "model": model,
                "choices": [["index": 0, "message": ["role": "assistant", "content": half, "refusal": NSNull()],
                             "logprobs": NSNull(), "finish_reason": "length"]],
                "usage": ["prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output],
            ] as [String: Any])
        case .anthropic:
            return serialize([
                "id": "msg_fake01", "type": "message", "role": "assistant", "model": model, "content": [["type": "text", "text": half]],
                "stop_reason": "max_tokens", "stop_sequence": NSNull(), "usage": ["input_tokens": input, "output_tokens": output],
            ] as [String: Any])
        case .gemini:
            return serialize([
                "candidates": [["content": ["parts": [["text": half]], "role": "model"], "finishReason": "MAX_TOKENS", "index": 0]],
                "usageMetadata": ["promptTokenCount": input, "candidatesTokenCount": output, "totalTokenCount": input + output],
                "modelVersion": model,
            ] as [String: Any])
        }
    }

    func refusal(_ api: FakeLLMAPI, model: String) -> Data {
        switch api {
        case .openAI, .openAICompatible, .azure:
            return serialize([
                "id": "chatcmpl-fake", "object": "chat.completion", "created": Int(Date().timeIntervalSince1970), "model": model,
                "choices": [["index": 0, "message": ["role": "assistant", "content": NSNull(), "refusal": "I'm very sorry, but I can't assist with that."],
                             "logprobs": NSNull(), "finish_reason": "stop"]],
                "usage": ["prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15],
            ] as [String: Any])
        case .anthropic:
            return serialize(["id": "msg_fake", "type": "message", "role": "assistant", "model": model, "content": [] as [Any],
                              "stop_reason": "refusal", "stop_sequence": NSNull(),
                              "usage": ["input_tokens": 10, "output_tokens": 0]] as [String: Any])
        case .gemini:
            return serialize(["promptFeedback": ["blockReason": "SAFETY"], "usageMetadata": ["promptTokenCount": 10, "totalTokenCount": 10],
                              "modelVersion": model] as [String: Any])
        }
    }
}
