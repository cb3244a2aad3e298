import Foundation
import GRDB

/// A row of `control.sqlite`'s `audit_events`: an appliance-wide change (a user disabled, a
/// workspace deleted, …), who made it and to what. Append-only; entries outlive their subject
/// (a deleted user's entries keep the user's id).
public struct AuditEvent: Sendable, Codable, Equatable, FetchableRecord {
    public var seq: Int64
    public var id: String
    public var type: String
    public var occurredAt: String
    /// `cli`, `setup` (the first admin), or the email of the admin who used the API or the console.
    public var actor: String
    /// `user:<id>`, `workspace:<id>`.
    public var subject: String
    /// A JSON object of strings.
    public var data: String

    enum CodingKeys: String, CodingKey {
        case seq, id, type, actor, subject, data
        case occurredAt = "occurred_at"
    }
}

/// The appliance's audit log in `control.sqlite`. Every change appends its event in the
/// transaction that makes it: a change is never without its entry, nor an entry without its change.
public enum AuditLog {
    public static func append(_ type: String, actor: String, subject: String, data: [String: String] = [:],
                              in db: Database, now: Date = Date()) throws {
        let json = String(decoding: try JSONEncoder.sentinel.encode(data), as: UTF8.self)
        try db.execute(sql: """
            INSERT INTO audit_events (id, type, occurred_at, actor, subject, data) VALUES (?, ?, ?, ?, ?, ?)
            """, arguments: [RandomIdentifier.make(prefix: "aud_"), StoredText.singleLine(type), ISO8601.string(now),
                             StoredText.singleLine(actor), StoredText.singleLine(subject), json])
    }

    /// Entries, oldest first, optionally of one subject.
    public static func events(subject: String? = nil, after seq: Int64 = 0, limit: Int = 500, in db: Database) throws -> [AuditEvent] {
        if let subject {
            return try AuditEvent.fetchAll(db, sql: "SELECT * FROM audit_events WHERE subject = ? AND seq > ? ORDER BY seq LIMIT ?",
                                           arguments: [subject, seq, limit])
        }
        return try AuditEvent.fetchAll(db, sql: "SELECT * FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?", arguments: [seq, limit])
    }
}
