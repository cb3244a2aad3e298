import Foundation

/// A cheap authenticated call that says whether a provider answers and accepts its key: each
/// API's "list models" endpoint (no tokens spent). Used by `sentinel doctor --online`.
public enum ProviderHealth {
    /// `GET …/models` in the provider's own form, with its own authentication headers.
    public static func modelsRequest(_ config: ProviderConfig) throws -> OutboundRequest {
        let key = config.apiKey.trimmingCharacters(in: .whitespacesAndNewlines)
        var headers = [("Accept", "application/json")]
        let url: URL
        switch config.kind {
        case .openai:
            url = try ProviderHTTP.url(config.baseURL ?? OpenAIChatProvider.defaultBaseURL, path: "/models")
            headers.append(("Authorization", "Bearer \(key)"))
        case .openAICompatible:
            guard let base = config.baseURL else { throw ProviderError.badRequest("an OpenAI-compatible provider needs a base URL") }
            url = try ProviderHTTP.url(base, path: "/models")
            if !key.isEmpty { headers.append(("Authorization", "Bearer \(key)")) }
        case .azureOpenAI:
            guard let base = config.baseURL else { throw ProviderError.badRequest("Azure OpenAI needs the resource's base URL") }
            let version = (config.apiVersion?.isEmpty == false ? config.apiVersion! : AzureOpenAIDefaults.apiVersion)
            let prefix = ProviderHTTP.basePath(base).hasSuffix("/openai") ? "" : "/openai"
            url = try ProviderHTTP.url(base, path: "\(prefix)/models",
                                       query: "api-version=" + (version.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed) ?? version))
            headers.append(("api-key", key))
        case .anthropic:
            let base = config.baseURL ?? AnthropicProvider.defaultBaseURL
            url = try ProviderHTTP.url(base, path: ProviderHTTP.basePath(base).hasSuffix("/v1") ? "/models" : "/v1/models")
            headers += [("x-api-key", key), ("anthropic-version", AnthropicProvider.apiVersion)]
        case .gemini:
            let base = config.baseURL ?? GeminiProvider.defaultBaseURL
            let basePath = ProviderHTTP.basePath(base)
            url = try ProviderHTTP.url(base, path: (basePath.hasSuffix("/v1beta") || basePath.hasSuffix("/v1") ? "" : "/v1beta") + "/models")
            headers.append(("x-goog-api-key", key))
        }
        return OutboundRequest(url: url, headers: headers, timeout: .seconds(15))
    }

    /// Calls the models endpoint; throws the provider's classified error (the key redacted). A 200
    /// whose body is not a JSON object listing models (`data`, or Gemini's `models`) is not the API:
    /// a web server's page or a proxy's answer at that URL was called "ok", and every review failed.
    public static func check(_ config: ProviderConfig, http: any OutboundHTTPClient) async throws {
        let response = try await ProviderHTTP.send(try modelsRequest(config), http: http, secret: config.apiKey)
        try ProviderHTTP.checkStatus(response, kind: config.kind, secret: config.apiKey)
        guard let object = try? JSONSerialization.jsonObject(with: response.body) as? [String: Any],
              object["data"] is [Any] || object["models"] is [Any] else {
            let type = response.header("Content-Type").map { " (\(StoredText.singleLine(String($0.prefix(60)))))" } ?? ""
            throw ProviderError.malformed("the models endpoint answered \(response.status) with something other than the provider's JSON list\(type); "
                                          + "is the base URL the API's?")
        }
    }
}
