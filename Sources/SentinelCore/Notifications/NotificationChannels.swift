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
}

/// The kinds of channel Sentinel delivers to.
public enum NotificationChannelKind: String, Sendable, Codable, CaseIterable {
    /// A Slack incoming webhook URL; body `{"text": …}`.
    case slack
    /// A Microsoft Teams workflow webhook URL; body an Adaptive Card message.
    case teams
    /// A generic webhook: JSON body signed with HMAC-SHA256 (`NotificationSignature`).
    case webhook
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
    public var url: String
    /// The generic webhook's signing secret.
    public var secret: String?

    public init(url: String, secret: String? = nil) {
        self.url = url
        self.secret = secret
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

    public init(masterKey: MasterKey) { self.masterKey = masterKey }

    static func context(_ id: String) -> String { "notification:\(id):destination" }

    /// `https://host/…`: enough to recognise a destination, nothing that grants access.
    static func redact(_ url: URL) -> String {
        "\(url.scheme ?? "https")://\(url.host ?? "?")\(url.port.map { ":\($0)" } ?? "")/…"
    }

    public func add(kind: String, name: String, url: String, secret: String?, topics: [String], minSeverity: String?,
                    by actor: String, in workspace: WorkspaceActor) async throws -> NotificationChannelSummary {
        guard let kind = NotificationChannelKind(rawValue: kind) else {
            throw IntegrationError.invalid("unknown channel kind '\(kind)' (one of \(NotificationChannelKind.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        let name = name.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !name.isEmpty, name.count <= 100, StoredText.singleLine(name) == name else {
            throw IntegrationError.invalid("the channel name must be 1-100 characters on one line")
        }
        guard let parsed = URL(string: url.trimmingCharacters(in: .whitespaces)), parsed.host != nil else {
            throw IntegrationError.invalid("the channel URL is not an absolute URL")
        }
        // The message never repeats the URL: webhook URLs carry their token.
        do { try DestinationPolicy.requireSecure(parsed, field: "url") } catch {
            throw IntegrationError.invalid("the channel URL must be https (http only to a loopback address)")
        }
        let secret = secret?.trimmingCharacters(in: .whitespacesAndNewlines)
        if kind == .webhook, (secret ?? "").count < 16 {
            throw IntegrationError.invalid("a webhook channel needs a signing secret of at least 16 characters")
        }
        if kind != .webhook, secret != nil { throw IntegrationError.invalid("only webhook channels take a signing secret") }
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
        let id = "ntf_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(16).lowercased()
        let sealed = try masterKey.seal(try JSONEncoder.sentinel.encode(NotificationDestination(url: parsed.absoluteString, secret: secret)),
                                        context: Self.context(id))
        let topicsJSON = String(decoding: try JSONEncoder.sentinel.encode(Array(Set(topics)).sorted()), as: UTF8.self)
        try await workspace.write { tx in
            try tx.db.execute(sql: """
                INSERT INTO notification_channels (id, kind, name, destination, destination_hint, topics, min_severity, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [id, kind.rawValue, name, sealed, Self.redact(parsed), topicsJSON, minSeverity, tx.now.epoch])
            try tx.append(DomainEvent(type: "NotificationChannelAdded", subject: "notification_channel:\(id)",
                                      payload: ["kind": kind.rawValue, "name": name, "topics": topicsJSON, "by": actor]))
        }
        return try await get(id, in: workspace)
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
