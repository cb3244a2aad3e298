import Foundation

/// GitHub's App manifest flow: Sentinel posts a manifest (name, permissions, events, webhook URL,
/// redirect URL) to GitHub's "new App" page; GitHub creates the App and redirects back with a
/// one-time code, which `convert` exchanges (`POST /app-manifests/{code}/conversions`) for the App's
/// id, private key and webhook secret. Nobody copies a key by hand.
public enum GitHubAppManifest {
    /// What the review needs and no more: pull requests and checks to post, contents to read files
    /// (`.sentinel.yml`), issues read for the commands in PR comments (Sentinel answers them with a
    /// run, never with a comment); the events that start and steer reviews.
    public static let permissions = ["pull_requests": "write", "checks": "write", "contents": "read", "issues": "read", "metadata": "read"]
    /// `check_run`/`check_suite`: "Re-run" on Sentinel's check asks for a review.
    public static let events = ["pull_request", "issue_comment", "installation_repositories", "repository", "check_run", "check_suite"]

    /// The manifest as GitHub expects it in the `manifest` form field.
    public static func manifest(name: String, homepage: String, webhookURL: String, redirectURL: String) -> String {
        let object: [String: Any] = [
            "name": name, "url": homepage, "public": false, "redirect_url": redirectURL,
            "hook_attributes": ["url": webhookURL, "active": true],
            "default_permissions": permissions, "default_events": events,
        ]
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// The page the manifest is posted to: github.com's for `https://api.github.com`, else the
    /// Enterprise Server's own (its API is `https://HOST/api/v3`); an organization's when named.
    public static func creationURL(apiURL: URL, organization: String?, state: String) throws -> URL {
        guard var components = URLComponents(url: apiURL, resolvingAgainstBaseURL: false), let host = components.host else {
            throw IntegrationError.invalid("api_url is not a URL")
        }
        if let organization, !organization.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) || organization.isEmpty {
            throw IntegrationError.invalid("the organization name may hold only letters, digits and hyphens")
        }
        components.host = host == "api.github.com" ? "github.com" : host
        components.path = organization.map { "/organizations/\($0)/settings/apps/new" } ?? "/settings/apps/new"
        components.queryItems = [URLQueryItem(name: "state", value: state)]
        guard let url = components.url else { throw IntegrationError.invalid("api_url is not a URL") }
        return url
    }

    /// What GitHub returns for a converted manifest code.
    public struct Conversion: Sendable, Equatable {
        public var appID: Int64
        public var slug: String?
        public var htmlURL: String?
        public var privateKeyPEM: String
        public var webhookSecret: String
    }

    /// Exchanges the one-time code GitHub redirected back with for the new App's credentials.
    public static func convert(code: String, apiURL: URL, http: any OutboundHTTPClient) async throws -> Conversion {
        guard !code.isEmpty, code.count <= 200, code.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else {
            throw IntegrationError.invalid("GitHub's code is malformed")
        }
        let url = apiURL.appendingPathComponent("app-manifests").appendingPathComponent(code).appendingPathComponent("conversions")
        let response = try await http.send(OutboundRequest(method: "POST", url: url, headers: [("Accept", "application/vnd.github+json")]))
        struct Body: Decodable {
            let id: Int64
            let slug: String?
            let html_url: String?
            let pem: String
            let webhook_secret: String?
        }
        guard response.status == 201 || response.status == 200 else {
            throw IntegrationError.invalid("GitHub refused the App manifest code (HTTP \(response.status)); codes work once and expire after an hour: start again")
        }
        guard let body = try? JSONDecoder().decode(Body.self, from: response.body), let secret = body.webhook_secret, !secret.isEmpty else {
            throw IntegrationError.invalid("GitHub's answer to the manifest conversion lacks the App's id, key or webhook secret")
        }
        return Conversion(appID: body.id, slug: body.slug, htmlURL: body.html_url, privateKeyPEM: body.pem, webhookSecret: secret)
    }
}
