import Foundation
import GRDB
import JWTKit
import NIOSSL

/// A source-control integration's identifier; also the last path component of its webhook URL.
public struct IntegrationID: Hashable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: String

    public init?(_ raw: String) {
        guard raw.count == 20, raw.hasPrefix("int_"),
              raw.dropFirst(4).allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) }) else { return nil }
        rawValue = raw
    }

    public static func generate() -> IntegrationID {
        IntegrationID(RandomIdentifier.make(prefix: "int_"))!
    }

    public var description: String { rawValue }
}

/// What an admin sees of an integration: never a secret.
public struct IntegrationSummary: Codable, Sendable, Equatable {
    public var id: String
    public var workspaceID: String
    public var kind: String
    public var appID: Int64?
    public var apiURL: String
    public var hasCABundle: Bool
    public var webhookPath: String
    public var createdAt: String
}

/// Everything needed to verify a webhook and call the platform, decrypted in memory only.
public struct GitHubIntegration: Sendable {
    public let id: IntegrationID
    public let workspaceID: WorkspaceID
    public let appID: Int64
    public let apiURL: URL
    public let caBundlePEM: String?
    public let privateKeyPEM: String
    public let webhookSecret: Data
    public let botLogin: String?
}

/// A refused integration or AI provider change: the input is invalid, or the integration or
/// provider does not exist (the text names which).
public enum IntegrationError: Error, CustomStringConvertible, Equatable {
    case invalid(String)
    case notFound(String)
    /// A workspace already has as many of these as it may (integrations, AI providers,
    /// notification channels): one must go before another is added.
    case limitReached(String)

    public var description: String {
        switch self {
        case .invalid(let m), .notFound(let m), .limitReached(let m): return m
        }
    }
}

/// An integration's sealed credentials, each sealed for its integration and field
/// (`integration:<id>:<field>`, the AES-GCM associated data): one copied into another row or
/// column does not open. A GitLab token lives in the column a GitHub App's private key uses.
enum IntegrationSecret: String {
    case privateKey = "private_key"
    case webhookSecret = "webhook_secret"
    case token

    func context(_ id: IntegrationID) -> String { context(id.rawValue) }
    func context(_ id: String) -> String { "integration:\(id):\(rawValue)" }
}

/// Creating integrations and reading them back. Secrets are sealed with the master key, bound to
/// the integration id and field, and never leave this type except to verify or authenticate.
public struct IntegrationService: Sendable {
    public let control: ControlStore
    public let masterKey: MasterKey

    public init(control: ControlStore, masterKey: MasterKey) {
        self.control = control
        self.masterKey = masterKey
    }

    public static let defaultGitHubAPI = URL(string: "https://api.github.com")!

    /// The API URL of a GitHub App as a form or request gives it: github.com's when absent.
    public static func gitHubAPIURL(_ raw: String?) throws -> URL {
        guard let raw else { return defaultGitHubAPI }
        guard let url = WebAddress.parse(raw) else { throw IntegrationError.invalid("api_url is not a URL") }
        return url
    }

    /// Validates and stores a GitHub App integration in the workspace file, then makes it routable
    /// in control.sqlite. Works beside a running server (both files are shared safely). `id` is
    /// given when the webhook URL had to be known before (the App manifest flow); else a new one.
    /// The text fields of an integration under the API's rules for them (length, control
    /// characters): (field, text, longest, may span lines), and the webhook secret and CA bundle
    /// every kind takes.
    static func checkTexts(webhookSecret: Data?, caBundlePEM: String?, _ fields: [(String, String?, Int, Bool)]) throws {
        let all = fields + [("webhook_secret", webhookSecret.map { String(decoding: $0, as: UTF8.self) }, 1_000, false), ("ca_bundle", caBundlePEM, 200_000, true)]
        for (field, text, longest, multiline) in all {
            if let text, let problem = TextRules.problem(text, maxLength: longest, multiline: multiline) {
                throw IntegrationError.invalid("\(field): \(problem)")
            }
        }
        // GitLab sends the secret as a header value, which loses its outer spaces and tabs in
        // transit (RFC 9110 §5.5): such a secret was stored and then refused every delivery.
        if let secret = webhookSecret, let first = secret.first, let last = secret.last,
           [0x20, 0x09].contains(first) || [0x20, 0x09].contains(last) {
            throw IntegrationError.invalid("webhook_secret: starts or ends with a space or tab, which a delivery's header cannot carry; "
                                           + "give the secret without them")
        }
    }

    /// Integrations in use a workspace may have (removed ones do not count): each one is polled
    /// for catch-up and has its own webhook; an organisation needs one per platform instance.
    public static let maxPerWorkspace = 20

    /// Refuses a new integration when the workspace has `maxPerWorkspace` in use.
    public static func checkRoom(_ db: Database) throws {
        let inUse = try Int.fetchOne(db, sql: "SELECT count(*) FROM integrations WHERE kind NOT LIKE 'removed:%'") ?? 0
        guard inUse < maxPerWorkspace else {
            throw IntegrationError.limitReached("a workspace has at most \(maxPerWorkspace) integrations; remove one it no longer uses first")
        }
    }

    public func addGitHub(workspace: WorkspaceActor, appID: Int64, privateKeyPEM: String, webhookSecret: Data,
                          apiURL: URL = defaultGitHubAPI, caBundlePEM: String? = nil, botLogin: String? = nil,
                          id chosen: IntegrationID? = nil, by actor: String? = nil) async throws -> IntegrationSummary {
        guard appID > 0 else { throw IntegrationError.invalid("the GitHub App id must be a positive number") }
        try Self.checkTexts(webhookSecret: webhookSecret, caBundlePEM: caBundlePEM, [
            ("private_key", privateKeyPEM, 20_000, true), ("api_url", apiURL.absoluteString, 500, false), ("bot_login", botLogin, 100, false)])
        guard webhookSecret.count >= 8 else { throw IntegrationError.invalid("the webhook secret must be at least 8 bytes (there is no unsigned mode)") }
        guard (try? Insecure.RSA.PrivateKey(pem: privateKeyPEM)) != nil else {
            throw IntegrationError.invalid("the private key is not an RSA private key in PEM form (as GitHub issues for Apps)")
        }
        try Self.validateAPIURL(apiURL)
        try Self.checkCABundle(caBundlePEM)
        let id = chosen ?? IntegrationID.generate()
        let key = masterKey
        let now = Date()
        try await workspace.write { tx in
            try Self.checkRoom(tx.db)
            try tx.db.execute(sql: """
                INSERT INTO integrations (id, kind, app_id, api_url, ca_bundle, private_key, webhook_secret, bot_login, created_at)
                VALUES (?, 'github', ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [id.rawValue, appID, apiURL.absoluteString, caBundlePEM,
                                 try key.seal(Data(privateKeyPEM.utf8), context: IntegrationSecret.privateKey.context(id)),
                                 try key.seal(webhookSecret, context: IntegrationSecret.webhookSecret.context(id)),
                                 botLogin, now.epoch])
            try tx.append(DomainEvent(type: "IntegrationAdded", subject: "integration:\(id)",
                                      payload: ["kind": "github", "api_url": apiURL.absoluteString, "app_id": String(appID)]
                                          .merging(actor.map { ["by": $0] } ?? [:]) { a, _ in a }))
        }
        try control.write { db in
            try db.execute(sql: "INSERT INTO integrations (id, workspace_id, kind, created_at) VALUES (?, ?, 'github', ?)",
                           arguments: [id.rawValue, workspace.id.rawValue, now.epoch])
        }
        return IntegrationSummary(id: id.rawValue, workspaceID: workspace.id.rawValue, kind: "github", appID: appID,
                                  apiURL: apiURL.absoluteString, hasCABundle: caBundlePEM != nil,
                                  webhookPath: "/webhooks/github/\(id)", createdAt: ISO8601.string(now))
    }

    /// A CA bundle every certificate of which parses (a client made with it trusts them all);
    /// refused when an integration is added or rotated, not at its first review.
    static func checkCABundle(_ pem: String?) throws {
        guard let pem else { return }
        guard pem.contains("-----BEGIN CERTIFICATE-----") else { throw IntegrationError.invalid("the CA file holds no PEM certificate") }
        do {
            guard !(try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8))).isEmpty else {
                throw IntegrationError.invalid("the CA file holds no PEM certificate")
            }
        } catch let error as IntegrationError {
            throw error
        } catch {
            throw IntegrationError.invalid("the CA file holds a certificate that cannot be read (damaged PEM: \(error))")
        }
    }

    public static func validateAPIURL(_ url: URL, field: String = "api_url",
                               example: String = "https://api.github.com or https://github.example.com/api/v3") throws {
        do { try DestinationPolicy.requireSecure(url, field: field) } catch let error as DestinationError {
            if case .invalidURL = error { throw IntegrationError.invalid("\(field) must be absolute, like \(example)") }
            throw IntegrationError.invalid(error.description)
        }
        // Paths are appended to it: a query went out on every call (a token in it too) and was
        // shown to every viewer of the integration.
        if url.query != nil || url.fragment != nil {
            throw IntegrationError.invalid("\(field) must not hold a query or fragment (?… or #…): give the address alone, like \(example)")
        }
    }

    /// The workspace an integration routes to, from control.sqlite.
    public func workspaceOf(_ id: IntegrationID) async throws -> WorkspaceID? {
        try control.read { db in
            try String.fetchOne(db, sql: "SELECT workspace_id FROM integrations WHERE id = ?", arguments: [id.rawValue])
        }.flatMap(WorkspaceID.init)
    }

    /// Whether the integration belonged to a workspace that was deleted (its webhooks answer 410).
    public func isRetired(_ id: IntegrationID) throws -> Bool {
        try control.read { db in
            try Int.fetchOne(db, sql: "SELECT 1 FROM retired_integrations WHERE id = ?", arguments: [id.rawValue]) != nil
        }
    }

    /// Loads and decrypts an integration from its workspace file.
    public func loadGitHub(_ id: IntegrationID, from workspace: WorkspaceActor) async throws -> GitHubIntegration? {
        struct Stored: Sendable { let appID: Int64; let api: String; let ca: String?; let key: Data; let secret: Data; let bot: String? }
        let stored = try await workspace.read { db -> Stored? in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM integrations WHERE id = ? AND kind = 'github'", arguments: [id.rawValue]) else {
                return nil
            }
            return Stored(appID: row["app_id"], api: row["api_url"], ca: row["ca_bundle"], key: row["private_key"],
                          secret: row["webhook_secret"], bot: row["bot_login"])
        }
        guard let stored else { return nil }
        let privateKey = try masterKey.open(stored.key, context: IntegrationSecret.privateKey.context(id))
        let secret = try masterKey.open(stored.secret, context: IntegrationSecret.webhookSecret.context(id))
        guard let api = URL(string: stored.api) else { throw IntegrationError.invalid("stored API URL is invalid") }
        return GitHubIntegration(id: id, workspaceID: workspace.id, appID: stored.appID, apiURL: api, caBundlePEM: stored.ca,
                                 privateKeyPEM: String(decoding: privateKey, as: UTF8.self), webhookSecret: secret, botLogin: stored.bot)
    }

    public func list(in workspace: WorkspaceActor) async throws -> [IntegrationSummary] {
        let wsID = workspace.id.rawValue
        return try await workspace.read { db in
            try Row.fetchAll(db, sql: """
                SELECT id, kind, app_id, api_url, ca_bundle IS NOT NULL AS has_ca, created_at FROM integrations
                WHERE kind NOT LIKE 'removed:%' ORDER BY created_at
                """).map { row in
                let id: String = row["id"]
                let kind: String = row["kind"]
                return IntegrationSummary(id: id, workspaceID: wsID, kind: kind, appID: row["app_id"], apiURL: row["api_url"],
                                          hasCABundle: row["has_ca"], webhookPath: "/webhooks/\(kind)/\(id)",
                                          createdAt: ISO8601.string(Date(timeIntervalSince1970: row["created_at"])))
            }
        }
    }

    /// Whether integration `id` is gone from this workspace file: removed (`removed:<kind>`), or
    /// never stored here. A delivery of such an integration changes nothing when it is processed
    /// (one accepted just before the removal, or by a server whose cache has not seen a removal
    /// made from the command line).
    public static func isRemoved(_ id: IntegrationID, in db: Database) throws -> Bool {
        // Every processed delivery asks: compiled once per connection.
        let statement = try db.cachedStatement(sql: "SELECT kind FROM integrations WHERE id = ?")
        guard let kind = try String.fetchOne(statement, arguments: [id.rawValue]) else { return true }
        return kind.hasPrefix("removed:")
    }

    /// Removes an integration: its webhooks answer 410 from now on, its repositories are marked
    /// removed (their runs and history stay), and its secrets are erased. The row itself stays,
    /// marked `removed:<kind>`, because the repositories' history refers to it.
    public func remove(_ id: IntegrationID, from workspace: WorkspaceActor, by actor: String) async throws {
        let removed = try await workspace.write { tx -> Bool in
            guard let kind = try String.fetchOne(tx.db, sql: "SELECT kind FROM integrations WHERE id = ?", arguments: [id.rawValue]),
                  !kind.hasPrefix("removed:") else { return false }
            try tx.db.execute(sql: "UPDATE repositories SET removed = 1 WHERE integration_id = ?", arguments: [id.rawValue])
            try tx.db.execute(sql: """
                UPDATE integrations SET kind = 'removed:' || kind, private_key = NULL, webhook_secret = x'', ca_bundle = NULL WHERE id = ?
                """, arguments: [id.rawValue])
            try tx.append(DomainEvent(type: "IntegrationRemoved", subject: "integration:\(id)", payload: ["kind": kind, "by": actor]))
            return true
        }
        guard removed else { throw IntegrationError.notFound("no such integration") }
        let now = Date().epoch
        try control.write { db in
            try db.execute(sql: "INSERT OR IGNORE INTO retired_integrations (id, workspace_id, retired_at) VALUES (?, ?, ?)",
                           arguments: [id.rawValue, workspace.id.rawValue, now])
            try db.execute(sql: "DELETE FROM integrations WHERE id = ?", arguments: [id.rawValue])
            // Its refused deliveries no longer ask for attention (doctor warned about them for a week).
            try db.execute(sql: "DELETE FROM integration_auth_failures WHERE integration_id = ?", arguments: [id.rawValue])
            try control.noteIntegrationChanged(in: db)
        }
    }
}
