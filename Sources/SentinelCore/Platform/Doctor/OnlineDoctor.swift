import Foundation

/// `sentinel doctor --online`: checks that need the network, each naming its fix. For a GitHub
/// integration: the API answers, the App's credentials are accepted (an App JWT for `GET /app`),
/// the App has installations (`GET /app/installations`), and this machine's clock agrees with
/// the API's `Date` header (GitHub refuses App JWTs from a clock that is off by a minute or more).
public struct OnlineDoctor: Sendable {
    /// A clock off by more than this (either way) is a warning.
    public var clockSkewWarningSeconds = 30.0
    /// Off by more than this: App JWTs (valid from 60 s before to 9 min after the local time) fail.
    public var clockSkewErrorSeconds = 60.0

    public init() {}

    public func checkGitHub(_ integration: GitHubIntegration, workspaceName: String, http: any OutboundHTTPClient,
                            now: @Sendable () -> Date = { Date() }) async -> [DoctorFinding] {
        let check = "github"
        let what = "integration \(integration.id) (workspace \(workspaceName), \(integration.apiURL.absoluteString))"
        func finding(_ severity: DoctorFinding.Severity, _ message: String, _ fix: String? = nil) -> DoctorFinding {
            DoctorFinding(severity: severity, check: check, message: "\(what): \(message)", fix: fix)
        }
        let tokens = GitHubTokenCache(credentials: GitHubAppCredentials(appID: integration.appID, privateKeyPEM: integration.privateKeyPEM,
                                                                        apiBaseURL: integration.apiURL), http: http)
        let jwt: String
        do { jwt = try await tokens.appJWT(now: now()) } catch {
            return [finding(.error, "\(error)", "put the App's private key (PEM) downloaded from GitHub in place: "
                            + "sentinel integration rotate --workspace \(workspaceName) \(integration.id) --private-key-file KEY.pem (the webhook URL stays)")]
        }
        let headers = GitHubClient.baseHeaders + [("Authorization", "Bearer \(jwt)")]
        var findings: [DoctorFinding] = []
        let app: OutboundResponse
        let sent = now()
        do {
            app = try await http.send(OutboundRequest(url: integration.apiURL.appendingPathComponent("app"), headers: headers, timeout: .seconds(15)))
        } catch {
            return [finding(.error, "the API cannot be reached (\(error))",
                            "check the API URL, DNS, proxies and firewalls from this host; a GitHub Enterprise Server behind an internal CA needs its CA bundle on the integration")]
        }
        if let date = app.header("Date").flatMap(Self.httpDate) {
            let skew = date.timeIntervalSince(sent)
            let text = "this machine's clock is \(Int(abs(skew).rounded())) s \(skew > 0 ? "behind" : "ahead of") the API's clock"
            if abs(skew) > clockSkewErrorSeconds {
                findings.append(finding(.error, text + "; GitHub refuses App tokens from a clock this far off", "synchronise the clock (NTP: systemd-timesyncd or chrony)"))
            } else if abs(skew) > clockSkewWarningSeconds {
                findings.append(finding(.warning, text, "synchronise the clock (NTP: systemd-timesyncd or chrony)"))
            } else {
                findings.append(finding(.ok, "clock within \(Int(clockSkewWarningSeconds)) s of the API's clock"))
            }
        }
        switch app.status {
        case 200:
            findings.append(finding(.ok, "the API answers and accepts the App's credentials (app id \(integration.appID))"))
        case 401, 403, 404:
            let message = GitHubClient.error(app, operation: "get app").description
            findings.append(finding(.error, "the App's credentials are refused (\(message))",
                                    "check the App id; put a current private key of that App in place: sentinel integration rotate --workspace \(workspaceName) "
                                    + "\(integration.id) --private-key-file KEY.pem (the webhook URL stays; adding the integration again would change it)"))
            return findings
        default:
            findings.append(finding(.error, GitHubClient.error(app, operation: "get app").description, "retry later; if it persists, check the API's status"))
            return findings
        }
        do {
            let list = try await http.send(OutboundRequest(url: integration.apiURL.appendingPathComponent("app/installations"), headers: headers,
                                                           timeout: .seconds(15)))
            guard list.status == 200, let installations = try? JSONSerialization.jsonObject(with: list.body) as? [Any] else {
                findings.append(finding(.error, GitHubClient.error(list, operation: "list installations").description, "retry later; if it persists, check the App's permissions"))
                return findings
            }
            if installations.isEmpty {
                findings.append(finding(.warning, "the App is not installed anywhere", "install the GitHub App on the organisations or repositories to review"))
            } else {
                findings.append(finding(.ok, "the App has \(installations.count) installation(s)"))
            }
        } catch {
            findings.append(finding(.error, "listing installations failed (\(error))", "retry; check the network path to the API"))
        }
        return findings
    }

    /// A GitLab integration: the instance answers, the token is accepted (`GET /api/v4/user`) and,
    /// where the instance says (15.5+), still has the `api` scope; the clock against the `Date` header.
    /// A GitLab token expiring sooner than this is a warning.
    public static let tokenExpiryWarningDays = 30.0

    public func checkGitLab(_ integration: GitLabIntegration, workspaceName: String, http: any OutboundHTTPClient,
                            now: @Sendable () -> Date = { Date() }) async -> [DoctorFinding] {
        let what = "integration \(integration.id) (workspace \(workspaceName), \(integration.baseURL.absoluteString))"
        func finding(_ severity: DoctorFinding.Severity, _ message: String, _ fix: String? = nil) -> DoctorFinding {
            DoctorFinding(severity: severity, check: "gitlab", message: "\(what): \(message)", fix: fix)
        }
        let client = GitLabClient(baseURL: integration.baseURL, token: integration.token, http: http, timeout: .seconds(15))
        var findings: [DoctorFinding] = []
        let sent = now()
        let response: OutboundResponse
        do {
            response = try await client.request("GET", "user", operation: "get current user", expect: [200, 401, 403])
        } catch {
            return [finding(.error, "the instance cannot be reached (\(error))",
                            "check the base URL, DNS, proxies and firewalls from this host; an instance behind an internal CA needs its CA bundle on the integration")]
        }
        if let date = response.header("Date").flatMap(Self.httpDate) {
            let skew = date.timeIntervalSince(sent)
            if abs(skew) > clockSkewWarningSeconds {
                findings.append(finding(.warning, "this machine's clock is \(Int(abs(skew).rounded())) s \(skew > 0 ? "behind" : "ahead of") GitLab's",
                                        "synchronise the clock (NTP: systemd-timesyncd or chrony)"))
            }
        }
        let rotate = "create a new access token with the api scope and give it to the integration: "
            + "sentinel integration rotate \(integration.id) --workspace \(workspaceName) --token-file FILE"
        guard response.status == 200 else {
            findings.append(finding(.error, "the token is refused (\(GitLabClient.error(response, operation: "get current user").description))", rotate))
            return findings
        }
        let user = (try? JSONDecoder().decode(GitLabUser.self, from: response.body))?.username ?? "?"
        do {
            let info = try await client.tokenInfo()
            if let scopes = info?.scopes, !scopes.contains("api") {
                findings.append(finding(.error, "the token (user \(user)) lacks the api scope (it has \(scopes.sorted().joined(separator: ", ")))", rotate))
                return findings
            }
            if let expiresAt = info?.expiresAt {
                let days = expiresAt.timeIntervalSince(now()) / 86_400
                if days < Self.tokenExpiryWarningDays {
                    findings.append(finding(.warning, "the token (user \(user)) expires on \(ISO8601.string(expiresAt).prefix(10)), "
                                            + "in \(max(0, Int(days.rounded(.down)))) day(s): reviews and the catch-up sweep stop then", rotate))
                    return findings
                }
            }
        } catch {
            findings.append(finding(.warning, "the token's scopes and expiry cannot be read (\(error))", nil))
        }
        findings.append(finding(.ok, "the instance answers and accepts the token (user \(user))"))
        return findings
    }

    /// One AI provider: its models endpoint answers and accepts the key (no tokens are spent).
    public func checkProvider(_ config: ProviderConfig, workspaceName: String, http: any OutboundHTTPClient) async -> DoctorFinding {
        let what = "provider \(config.id) (\(config.kind.rawValue), workspace \(workspaceName))"
        func finding(_ severity: DoctorFinding.Severity, _ message: String, _ fix: String? = nil) -> DoctorFinding {
            DoctorFinding(severity: severity, check: "ai-provider", message: "\(what): \(message)", fix: fix)
        }
        do {
            try await ProviderHealth.check(config, http: http)
            return finding(.ok, "answers and accepts its key")
        } catch let error as ProviderError {
            switch error {
            case .unauthorized:
                return finding(.error, "the key is refused (\(error))",
                               "rotate the key: sentinel provider rotate --workspace \(workspaceName) \(config.id) --api-key-file FILE")
            case .forbidden:
                return finding(.error, "\(error)", "the provider knows the key but refuses this access: check the key's permissions, whether the "
                               + "account may use the model, and the provider's network or region rules (its message says which)")
            case .rateLimited:
                return finding(.warning, "rate-limited right now (\(error))", "nothing to do if it passes; otherwise raise the account's limits")
            case .quotaExhausted:
                return finding(.error, "the account's quota is used up (\(error))", "check the provider account's billing and quota")
            case .timeout, .connection:
                return finding(.error, "cannot be reached (\(error))", "check the provider's base URL, DNS, proxies and firewalls from this host")
            default:
                return finding(.error, "\(error)", "check the provider's base URL, API version and deployment")
            }
        } catch {
            return finding(.error, "\(error)", "check the provider's configuration")
        }
    }

    /// An HTTP `Date` header (IMF-fixdate, RFC 9110 §5.6.7).
    static func httpDate(_ text: String) -> Date? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return formatter.date(from: text)
    }
}
