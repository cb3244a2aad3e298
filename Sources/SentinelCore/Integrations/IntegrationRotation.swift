import Foundation
import GRDB
import JWTKit

/// New credentials for an integration; a nil field keeps what is stored.
public struct IntegrationCredentials: Sendable {
    public var webhookSecret: Data?
    /// A GitHub App's private key (PEM), e.g. after generating a new one and revoking the old.
    public var privateKeyPEM: String?
    /// A GitLab access token, e.g. before the stored one expires.
    public var token: String?
    /// The CA bundle (PEM) to trust for the instance from now on, e.g. after the internal CA was renewed.
    public var caBundlePEM: String?

    public init(webhookSecret: Data? = nil, privateKeyPEM: String? = nil, token: String? = nil, caBundlePEM: String? = nil) {
        self.webhookSecret = webhookSecret
        self.privateKeyPEM = privateKeyPEM
        self.token = token
        self.caBundlePEM = caBundlePEM
    }

    /// The API's names of the fields given, in a fixed order (for the audit event).
    public var fieldNames: [String] {
        [("webhook_secret", webhookSecret != nil), ("private_key", privateKeyPEM != nil), ("token", token != nil), ("ca_bundle", caBundlePEM != nil)]
            .filter(\.1).map(\.0)
    }
}

extension IntegrationService {
    /// Replaces an integration's credentials in place: its webhook URL, repositories, settings and
    /// history stay, which removing it and adding it again would not keep. A GitLab token (or a new
    /// CA bundle of a GitLab integration) is checked against the instance before anything is
    /// stored, as when it was added; the integration's bot user follows the new token's user. Works
    /// beside a running server: webhooks are verified with the new secret from the next delivery
    /// on, and calls to the platform use the new credentials within about a second (at once when
    /// changed through the server's API).
    public func rotate(_ id: IntegrationID, in workspace: WorkspaceActor, credentials: IntegrationCredentials, by actor: String,
                       destinations: DestinationPolicy) async throws -> IntegrationSummary {
        let fields = credentials.fieldNames
        guard !fields.isEmpty else {
            throw IntegrationError.invalid("nothing to change: give a new webhook_secret, private_key (GitHub), token (GitLab) or ca_bundle")
        }
        struct Stored: Sendable { let kind: String; let appID: Int64?; let api: String; let ca: String?; let credential: Data?; let bot: String?; let createdAt: Double }
        let stored = try await workspace.read { db -> Stored? in
            try Row.fetchOne(db, sql: "SELECT * FROM integrations WHERE id = ?", arguments: [id.rawValue]).map {
                Stored(kind: $0["kind"], appID: $0["app_id"], api: $0["api_url"], ca: $0["ca_bundle"], credential: $0["private_key"],
                       bot: $0["bot_login"], createdAt: $0["created_at"])
            }
        }
        guard let stored, stored.kind == "github" || stored.kind == "gitlab" else { throw IntegrationError.notFound("no such integration") }
        if let secret = credentials.webhookSecret, secret.count < 8 {
            throw IntegrationError.invalid("the webhook secret must be at least 8 bytes (there is no unsigned mode)")
        }
        try Self.checkTexts(webhookSecret: credentials.webhookSecret, caBundlePEM: credentials.caBundlePEM, [
            ("private_key", credentials.privateKeyPEM, 20_000, true), ("token", credentials.token, 1_000, false)])
        try Self.checkCABundle(credentials.caBundlePEM)
        var bot = stored.bot
        let token = credentials.token?.trimmingCharacters(in: .whitespacesAndNewlines)
        switch stored.kind {
        case "github":
            guard credentials.token == nil else { throw IntegrationError.invalid("a GitHub App integration has no token; give a new private_key") }
            if let pem = credentials.privateKeyPEM, (try? Insecure.RSA.PrivateKey(pem: pem)) == nil {
                throw IntegrationError.invalid("the private key is not an RSA private key in PEM form (as GitHub issues for Apps)")
            }
        default:
            guard credentials.privateKeyPEM == nil else { throw IntegrationError.invalid("a GitLab integration has no private key; give a new token") }
            if let given = token, given.isEmpty { throw IntegrationError.invalid("the GitLab access token is empty or malformed") }
            if token != nil || credentials.caBundlePEM != nil {
                // The instance must accept the token (the new one, or the stored one through the new CA bundle).
                guard let base = URL(string: stored.api), let sealed = stored.credential else { throw IntegrationError.invalid("stored GitLab URL is invalid") }
                let current = try token ?? String(decoding: masterKey.open(sealed, context: IntegrationSecret.token.context(id)), as: UTF8.self)
                let user = try await GitLabTokenCheck.user(baseURL: base, token: current, caBundlePEM: credentials.caBundlePEM ?? stored.ca,
                                                           destinations: destinations)
                if token != nil { bot = user.username }
            }
        }
        let key = masterKey
        let sealedSecret = try credentials.webhookSecret.map { try key.seal($0, context: IntegrationSecret.webhookSecret.context(id)) }
        let sealedCredential = try (stored.kind == "github" ? credentials.privateKeyPEM.map { ($0, IntegrationSecret.privateKey) }
                                                            : token.map { ($0, IntegrationSecret.token) })
            .map { try key.seal(Data($0.0.utf8), context: $0.1.context(id)) }
        // The bot user changes only with the token; and the change applies only to the credential
        // it was checked with: a token rotated meanwhile (its new user as the bot) is not undone by
        // a CA-bundle or secret change that read the old one, nor is a CA bundle stored that was
        // checked against a token no longer in use (409).
        let (kind, newBot, checkedCredential) = (stored.kind, token != nil ? bot : nil, stored.credential)
        try await workspace.write { tx in
            try tx.db.execute(sql: """
                UPDATE integrations SET webhook_secret = coalesce(?, webhook_secret), private_key = coalesce(?, private_key),
                    ca_bundle = coalesce(?, ca_bundle), bot_login = coalesce(?, bot_login) WHERE id = ? AND kind = ? AND private_key IS ?
                """, arguments: [sealedSecret, sealedCredential, credentials.caBundlePEM, newBot, id.rawValue, kind, checkedCredential])
            guard tx.db.changesCount == 1 else {
                guard try Int.fetchOne(tx.db, sql: "SELECT 1 FROM integrations WHERE id = ? AND kind = ?", arguments: [id.rawValue, kind]) != nil else {
                    throw IntegrationError.notFound("no such integration")
                }
                throw StorageError.conflict("the integration's credentials were changed meanwhile; look at it again and retry")
            }
            try tx.append(DomainEvent(type: "IntegrationCredentialsRotated", subject: "integration:\(id)",
                                      payload: ["kind": kind, "fields": fields.joined(separator: ","), "by": actor]))
        }
        try control.noteIntegrationChanged()
        return IntegrationSummary(id: id.rawValue, workspaceID: workspace.id.rawValue, kind: kind, appID: stored.appID, apiURL: stored.api,
                                  hasCABundle: credentials.caBundlePEM != nil || stored.ca != nil, webhookPath: "/webhooks/\(kind)/\(id)",
                                  createdAt: ISO8601.string(Date(timeIntervalSince1970: stored.createdAt)))
    }
}
