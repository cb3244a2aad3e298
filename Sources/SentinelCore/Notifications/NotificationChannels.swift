import Crypto
import Foundation
import GRDB

/// What a channel can subscribe to. Each topic comes from a domain event (see `NotificationTopic.notice`).
public enum NotificationTopic: String, Sendable, Codable, CaseIterable {
    /// A review run ended `failed` (`RunCompleted` with state `failed`).
    case runFailed = "run.failed"
    /// A review run completed with at least one finding at or above the channel's `min_severity`.
    case runFindings = "run.findings"
    /// A plan limit passed its soft threshold (`PlanSoftLimitReached`).
    case planSoftLimit = "plan.soft_limit"
    /// A job went dead: retries exhausted or a permanent failure (`JobDead`).
    case jobDead = "job.dead"
    /// The workspace's monthly AI budget is spent (`AIBudgetReached`, once per month).
    case aiBudget = "ai.budget"
    /// An AI provider's circuit opened after repeated failures (`ProviderCircuitOpened`).
    case providerCircuitOpen = "provider.circuit_open"
    /// An AI provider refused its API key (401/403: revoked, expired, mistyped), which no retry or
    /// circuit fixes (`ProviderKeyRefused`, at most hourly per provider).
    case providerKeyRefused = "provider.key_refused"
    /// Webhook deliveries of an integration are failing authentication (`IntegrationAuthFailing`).
    case integrationAuthFailing = "integration.auth_failing"
    /// An integration's access token expires within 14 days (`IntegrationCredentialsExpiring`,
    /// found by the catch-up sweep; at most daily per integration).
    case integrationCredentialsExpiring = "integration.credentials_expiring"
    /// The appliance's nightly analytics export failed (`ExportFailed`): appended only to the
    /// workspace appliance admins name in `export.notify_workspace`.
    case exportFailed = "export.failed"
}

/// The kinds of channel Sentinel delivers to.
public enum NotificationChannelKind: String, Sendable, Codable, CaseIterable {
    /// A Slack incoming webhook URL; body `{"text": …}`.
    case slack
    /// A Microsoft Teams workflow webhook URL; body an Adaptive Card message.
    case teams
    /// A generic webhook: JSON body signed with HMAC-SHA256 (`NotificationSignature`).
    case webhook
    /// Email over SMTP (`EmailDestination`, sent by a `MailTransport`).
    case email
}

/// A channel as admins see it: the URL is shown by its scheme and host only, the secret never.
public struct NotificationChannelSummary: Codable, Sendable, Equatable {
    public var id: String
    public var kind: String
    public var name: String
    /// E.g. `https://hooks.slack.com/…` — path and query (where webhook URLs keep their token) redacted.
    public var destination: String
    public var topics: [String]
    public var minSeverity: String?
    public var createdAt: String
}

/// The sealed part of a channel, decrypted in memory for one delivery only.
public struct NotificationDestination: Codable, Sendable, Equatable {
    /// The webhook URL (Slack, Teams, generic webhook); nil for email.
    public var url: String?
    /// The generic webhook's signing secret.
    public var secret: String?
    /// The mail server and addresses of an email channel.
    public var email: EmailDestination?

    public init(url: String?, secret: String? = nil, email: EmailDestination? = nil) {
        self.url = url
        self.secret = secret
        self.email = email
    }
}

/// Where an email channel sends: the mail server (STARTTLS or implicit TLS), optional credentials
/// (the password is sealed with the rest of the destination and never shown), sender and recipients.
public struct EmailDestination: Codable, Sendable, Equatable {
    public var host: String
    public var port: Int
    public var security: SMTPSecurity
    public var username: String?
    public var password: String?
    public var from: String
    public var to: [String]
    /// Extra trust roots for the server's certificate (PEM), e.g. an internal CA.
    public var caBundle: String?

    public static let maxRecipients = 20

    public init(host: String, port: Int, security: SMTPSecurity, username: String? = nil, password: String? = nil,
                from: String, to: [String], caBundle: String? = nil) {
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self.password = password
        self.from = from
        self.to = to
        self.caBundle = caBundle
    }

    public var server: SMTPServer {
        SMTPServer(host: host, port: port, security: security, username: username, password: password, caBundlePEM: caBundle)
    }

    /// `smtp://host:port (starttls, 2 recipients)`: the server, never the credentials.
    var hint: String {
        "smtp://\(host.contains(":") ? "[\(host)]" : host):\(port) (\(security.rawValue), \(to.count) recipient\(to.count == 1 ? "" : "s"))"
    }

    /// The destination as given, trimmed and checked; a clear error for anything a server would refuse or misread.
    func validated() throws -> EmailDestination {
        var clean = self
        clean.host = host.trimmingCharacters(in: .whitespaces).lowercased()
        guard !clean.host.isEmpty, clean.host.count <= 253, !clean.host.contains("/"), !clean.host.contains("@"),
              clean.host.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F }) else {
            throw IntegrationError.invalid("the mail server host must be a host name or IP address")
        }
        // An IPv6 address as URLs write it: `[::1]` is the address ::1 (it was refused as a host with a port).
        if clean.host.hasPrefix("["), clean.host.hasSuffix("]"), clean.host.count > 2 {
            clean.host = String(clean.host.dropFirst().dropLast())
        }
        // `127.0.0.1:25` was taken as a host name that never resolves (and shown as smtp://127.0.0.1:25:587).
        if clean.host.contains(":") {
            var address = in6_addr()
            guard inet_pton(AF_INET6, clean.host, &address) == 1 else {
                throw IntegrationError.invalid("the mail server host must be a host name or IP address, without a port (the port is a setting of its own)")
            }
        }
        guard (1...65535).contains(port) else { throw IntegrationError.invalid("the mail server port must be 1-65535") }
        clean.username = username?.trimmingCharacters(in: .whitespaces)
        if clean.username?.isEmpty == true { clean.username = nil }
        if password?.isEmpty == true { clean.password = nil }
        guard (clean.username == nil) == (clean.password == nil) else {
            throw IntegrationError.invalid("give both a username and a password for the mail server, or neither")
        }
        for credential in [clean.username, clean.password].compactMap({ $0 }) {
            guard credential.count <= 256, !StoredText.hasControlCharacters(credential, multiline: false) else {
                throw IntegrationError.invalid("the mail server username and password must be at most 256 characters on one line")
            }
        }
        clean.from = from.trimmingCharacters(in: .whitespaces)
        guard Self.isAddress(clean.from) else { throw IntegrationError.invalid("the sender '\(StoredText.singleLine(String(from.prefix(100))))' is not an email address") }
        // Each recipient once (compared without case): a repeated one got the mail twice.
        var seen = Set<String>()
        clean.to = to.map { $0.trimmingCharacters(in: .whitespaces) }.filter { seen.insert($0.lowercased()).inserted }
        guard (1...Self.maxRecipients).contains(clean.to.count) else {
            throw IntegrationError.invalid("an email channel needs 1-\(Self.maxRecipients) recipients")
        }
        if let bad = clean.to.first(where: { !Self.isAddress($0) }) {
            throw IntegrationError.invalid("the recipient '\(StoredText.singleLine(String(bad.prefix(100))))' is not an email address")
        }
        // Read now, as an integration's is: a CA file without a certificate was stored, and every
        // mail of the channel then failed for good ("the CA bundle holds no certificate").
        try IntegrationService.checkCABundle(clean.caBundle)
        return clean
    }

    /// `local@domain` as RFC 5322 writes it unquoted: a dot-atom of printable ASCII (no spaces,
    /// brackets, quotes or separators; no dot at either end of the local part nor two in a row)
    /// at a host name of letters, digits and hyphens (IDNs in their `xn--` form), at most 254
    /// characters. `.a..b.@example.com` and `a@-x-.c` were taken and written into `To:` as they were.
    static func isAddress(_ text: String) -> Bool {
        let parts = text.split(separator: "@", omittingEmptySubsequences: false)
        guard text.count <= 254, parts.count == 2, !parts[0].isEmpty, parts[0].count <= 64 else { return false }
        let (local, domain) = (parts[0], parts[1])
        guard !local.hasPrefix("."), !local.hasSuffix("."), !local.contains("..") else { return false }
        let labels = domain.split(separator: ".", omittingEmptySubsequences: false)
        // The last label names a top-level domain, never all digits: `u@1.2.3.4` is an address
        // literal, which RFC 5321 writes `[1.2.3.4]`.
        guard labels.count >= 2, labels.last.map({ !$0.allSatisfy(\.isNumber) }) ?? false, labels.allSatisfy({ label in
            (1...63).contains(label.count) && !label.hasPrefix("-") && !label.hasSuffix("-")
                && label.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "-") }
        }) else { return false }
        let forbidden = Set("<>()[],;:\\\" ")
        return text.unicodeScalars.allSatisfy { $0.value > 0x20 && $0.value < 0x7F } && !text.contains(where: forbidden.contains)
    }
}

/// A channel with its destination decrypted.
public struct NotificationChannel: Sendable {
    public let summary: NotificationChannelSummary
    public let destination: NotificationDestination

    public var kind: NotificationChannelKind { NotificationChannelKind(rawValue: summary.kind) ?? .webhook }
}

/// Notification channels of a workspace (in its file), destinations sealed with the master key and
/// bound to the channel id (`notification:<id>:destination`); every change is an audit event
/// (`NotificationChannelAdded`, `NotificationChannelRemoved`) without the URL or secret.
public struct NotificationStore: Sendable {
    let masterKey: MasterKey
    /// Channels a workspace may have: every notified event is sent to each subscribed one.
    public static let maxPerWorkspace = 50

    public init(masterKey: MasterKey) { self.masterKey = masterKey }

    static func context(_ id: String) -> String { "notification:\(id):destination" }

    /// `https://host/…`: enough to recognise a destination, nothing that grants access.
    static func redact(_ url: URL) -> String {
        let shown = DestinationError.shown(url)
        return shown.hasSuffix("/…") ? shown : shown + "/…"
    }

    /// Adds a channel. Slack, Teams and webhook channels take `url` (and the webhook its `secret`);
    /// an email channel takes `email` instead.
    public func add(kind: String, name: String, url: String?, secret: String?, email: EmailDestination? = nil, topics: [String], minSeverity: String?,
                    by actor: String, in workspace: WorkspaceActor) async throws -> NotificationChannelSummary {
        guard let kind = NotificationChannelKind(rawValue: kind) else {
            throw IntegrationError.invalid("unknown channel kind '\(kind)' (one of \(NotificationChannelKind.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        let name = name.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !name.isEmpty, name.count <= 100, StoredText.singleLine(name) == name else {
            throw IntegrationError.invalid("the channel name must be 1-100 characters on one line")
        }
        let destination: NotificationDestination
        let hint: String
        if kind == .email {
            guard let email else { throw IntegrationError.invalid("an email channel needs a mail server, a sender and recipients") }
            guard url == nil, secret == nil else { throw IntegrationError.invalid("an email channel takes no URL or signing secret") }
            let checked = try email.validated()
            destination = NotificationDestination(url: nil, email: checked)
            hint = checked.hint
        } else {
            guard email == nil else { throw IntegrationError.invalid("only email channels take a mail server") }
            guard let url, let parsed = WebAddress.parse(url.trimmingCharacters(in: .whitespaces)), parsed.host != nil else {
                throw IntegrationError.invalid("the channel URL is not an absolute URL")
            }
            // The message never repeats the URL: webhook URLs carry their token.
            do { try DestinationPolicy.requireSecure(parsed, field: "url") } catch let error as DestinationError {
                switch error {
                case .invalidPort, .credentialsInURL: throw IntegrationError.invalid(error.description)
                default: break
                }
                throw IntegrationError.invalid("the channel URL must be https (http only to a loopback address)")
            }
            destination = NotificationDestination(url: parsed.absoluteString, secret: try Self.checkedSecret(secret, kind: kind))
            hint = Self.redact(parsed)
        }
        guard !topics.isEmpty else { throw IntegrationError.invalid("subscribe the channel to at least one event") }
        let unknown = topics.filter { NotificationTopic(rawValue: $0) == nil }
        guard unknown.isEmpty else {
            throw IntegrationError.invalid("unknown event '\(unknown[0])' (one of \(NotificationTopic.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        if let minSeverity, Severity(rawValue: minSeverity) == nil {
            throw IntegrationError.invalid("unknown severity '\(minSeverity)' (one of \(Severity.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        if topics.contains(NotificationTopic.runFindings.rawValue), minSeverity == nil {
            throw IntegrationError.invalid("\(NotificationTopic.runFindings.rawValue) needs a minimum severity")
        }
        // As the command line refuses it: a minimum severity on other events was stored and listed, and did nothing.
        if minSeverity != nil, !topics.contains(NotificationTopic.runFindings.rawValue) {
            throw IntegrationError.invalid("min_severity applies to the \(NotificationTopic.runFindings.rawValue) event only; subscribe to it, or leave min_severity out")
        }
        let id = "ntf_" + RandomIdentifier.uuid().replacingOccurrences(of: "-", with: "").prefix(16).lowercased()
        let sealed = try masterKey.seal(try JSONEncoder.sentinel.encode(destination), context: Self.context(id))
        let topicsJSON = String(decoding: try JSONEncoder.sentinel.encode(Array(Set(topics)).sorted()), as: UTF8.self)
        try await workspace.write { tx in
            guard try Int.fetchOne(tx.db, sql: "SELECT count(*) FROM notification_channels") ?? 0 < Self.maxPerWorkspace else {
                throw IntegrationError.limitReached("a workspace has at most \(Self.maxPerWorkspace) notification channels; remove one it no longer uses first")
            }
            try tx.db.execute(sql: """
                INSERT INTO notification_channels (id, kind, name, destination, destination_hint, topics, min_severity, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [id, kind.rawValue, name, sealed, hint, topicsJSON, minSeverity, tx.now.epoch])
            try tx.append(DomainEvent(type: "NotificationChannelAdded", subject: "notification_channel:\(id)",
                                      payload: ["kind": kind.rawValue, "name": name, "topics": topicsJSON, "by": actor]))
        }
        return try await get(id, in: workspace)
    }

    static func checkedSecret(_ secret: String?, kind: NotificationChannelKind) throws -> String? {
        let secret = secret?.trimmingCharacters(in: .whitespacesAndNewlines)
        if kind == .webhook, (secret ?? "").count < 16 {
            throw IntegrationError.invalid("a webhook channel needs a signing secret of at least 16 characters")
        }
        if kind != .webhook, secret != nil { throw IntegrationError.invalid("only webhook channels take a signing secret") }
        return secret
    }

    public func remove(_ id: String, by actor: String, in workspace: WorkspaceActor) async throws {
        try await workspace.write { tx in
            try tx.db.execute(sql: "DELETE FROM notification_pending WHERE channel_id = ?", arguments: [id])
            try tx.db.execute(sql: "DELETE FROM notification_channels WHERE id = ?", arguments: [id])
            guard tx.db.changesCount == 1 else { throw IntegrationError.notFound("notification channel \(id) does not exist in this workspace") }
            try tx.append(DomainEvent(type: "NotificationChannelRemoved", subject: "notification_channel:\(id)", payload: ["by": actor]))
        }
    }

    public func get(_ id: String, in workspace: WorkspaceActor) async throws -> NotificationChannelSummary {
        guard let found = try await list(in: workspace).first(where: { $0.id == id }) else {
            throw IntegrationError.notFound("notification channel \(id) does not exist in this workspace")
        }
        return found
    }

    public func list(in workspace: WorkspaceActor) async throws -> [NotificationChannelSummary] {
        try await workspace.read { db in try Self.summaries(in: db) }
    }

    static func summaries(in db: Database) throws -> [NotificationChannelSummary] {
        try Row.fetchAll(db, sql: "SELECT * FROM notification_channels ORDER BY created_at, id").map(summary)
    }

    static func summary(_ row: Row) -> NotificationChannelSummary {
        let topics = (try? JSONDecoder.sentinel.decode([String].self, from: Data((row["topics"] as String).utf8))) ?? []
        return NotificationChannelSummary(id: row["id"], kind: row["kind"], name: row["name"], destination: row["destination_hint"],
                                          topics: topics, minSeverity: row["min_severity"],
                                          createdAt: ISO8601.string(Date(timeIntervalSince1970: row["created_at"])))
    }

    /// One channel with its destination decrypted, for a delivery.
    public func channel(_ id: String, in workspace: WorkspaceActor) async throws -> NotificationChannel? {
        struct Raw: Sendable { let summary: NotificationChannelSummary; let sealed: Data }
        let raw = try await workspace.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM notification_channels WHERE id = ?", arguments: [id]).map {
                Raw(summary: Self.summary($0), sealed: $0["destination"])
            }
        }
        guard let raw else { return nil }
        let destination = try JSONDecoder.sentinel.decode(NotificationDestination.self,
                                                          from: try masterKey.open(raw.sealed, context: Self.context(raw.summary.id)))
        return NotificationChannel(summary: raw.summary, destination: destination)
    }
}

/// The generic webhook's signature, GitHub-like with a timestamp against replay:
/// `X-Sentinel-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
/// A receiver recomputes the HMAC over the timestamp, a dot and the raw body, compares in constant
/// time, and refuses a timestamp more than a few minutes from its clock (`verify`'s tolerance).
public enum NotificationSignature {
    public static let header = "X-Sentinel-Signature"

    public static func sign(body: Data, secret: String, timestamp: Int) -> String {
        "t=\(timestamp),v1=\(hex(body: body, secret: secret, timestamp: timestamp))"
    }

    static func hex(body: Data, secret: String, timestamp: Int) -> String {
        var signed = Data("\(timestamp).".utf8)
        signed.append(body)
        let mac = HMAC<SHA256>.authenticationCode(for: signed, using: SymmetricKey(data: Data(secret.utf8)))
        return Data(mac).map { String(format: "%02x", $0) }.joined()
    }

    /// Whether `header` signs `body` with `secret` at a timestamp within `tolerance` seconds of `now`.
    public static func verify(header: String, body: Data, secret: String, now: Date, tolerance: TimeInterval = 300) -> Bool {
        var timestamp: Int?
        var signature: String?
        for part in header.split(separator: ",") {
            let pair = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard pair.count == 2 else { continue }
            if pair[0] == "t" { timestamp = Int(pair[1]) } else if pair[0] == "v1" { signature = pair[1] }
        }
        guard let timestamp, let signature, abs(now.timeIntervalSince1970 - Double(timestamp)) <= tolerance else { return false }
        let expected = Array(hex(body: body, secret: secret, timestamp: timestamp).utf8)
        let given = Array(signature.lowercased().utf8)
        guard expected.count == given.count else { return false }
        return zip(expected, given).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
