import Foundation
import GRDB

/// The payload of a delivery job (`github.delivery`, `gitlab.delivery`).
public struct DeliveryJob: Codable, Sendable {
    public var deliveryID: String
}

/// An authenticated webhook delivery as intake stores it: what the platform sent, its body encoded
/// for storage, the job that processes it (none when `settled`), and when it arrived.
public struct IncomingDelivery: Sendable, Equatable {
    public var deliveryID: String
    public var integrationID: IntegrationID
    public var event: String
    public var action: String?
    public var body: DeliveryPayload.Stored
    public var correlationID: String
    /// The platform's processing job (`DeliveryIntake.jobKind` for GitHub, `gitLabJobKind`).
    public var jobKind: String
    /// The outcome when the event and action alone say there is nothing to do (a
    /// `pull_request.labeled`, an event Sentinel does not act on): the delivery is stored
    /// already processed, with that outcome, and no job. Most of a busy organisation's webhook
    /// traffic is such deliveries.
    public var settled: String?
    /// Seconds since 1970, when intake took it.
    public var receivedAt: Double

    public init(deliveryID: String, integrationID: IntegrationID, event: String, action: String?, body: Data, correlationID: String,
                jobKind: String = DeliveryIntake.jobKind, settled: String? = nil, receivedAt: Date = Date()) {
        self.init(deliveryID: deliveryID, integrationID: integrationID, event: event, action: action, stored: DeliveryPayload.encode(body),
                  correlationID: correlationID, jobKind: jobKind, settled: settled, receivedAt: receivedAt.epoch)
    }

    init(deliveryID: String, integrationID: IntegrationID, event: String, action: String?, stored: DeliveryPayload.Stored,
         correlationID: String, jobKind: String, settled: String?, receivedAt: Double) {
        self.deliveryID = deliveryID
        self.integrationID = integrationID
        self.event = event
        self.action = action
        self.body = stored
        self.correlationID = correlationID
        self.jobKind = jobKind
        self.settled = settled
        self.receivedAt = receivedAt
    }
}

/// Webhook intake after authentication: one durable insert of the delivery (deduplicated by the
/// platform's delivery id) and its processing job, in one group-committed transaction. No network
/// call and no review work happen here, so the platform gets its 202 in milliseconds. A delivery
/// for a workspace whose file is not open goes through the `IntakeJournal` instead, which applies
/// it here (`insert`) shortly after.
public enum DeliveryIntake {
    public enum Outcome: Sendable, Equatable { case accepted, duplicate }

    /// The one definition of the largest delivery accepted (GitHub and GitLab send at most 25 MB).
    public static let maxBodyBytes = 25 * 1024 * 1024

    public static let jobKind = "github.delivery"
    public static let gitLabJobKind = "gitlab.delivery"

    /// Stores `delivery` in `workspace` with one durable commit.
    public static func store(_ delivery: IncomingDelivery, in workspace: WorkspaceActor) async throws -> Outcome {
        try await workspace.write { tx in
            try insert(delivery, in: tx.db, now: tx.now) { try tx.enqueue($0) }
        }
    }

    /// The delivery's row and, unless it is settled, its processing job; `.duplicate` (and nothing
    /// written) when the file holds the delivery id already. Shared by intake, the journal's
    /// applier and backups of a workspace with deliveries still in the journal.
    static func insert(_ delivery: IncomingDelivery, in db: Database, now: Date, enqueue: (JobRequest) throws -> Void) throws -> Outcome {
        // Compiled once per connection, not once per delivery.
        try db.cachedStatement(sql: """
            INSERT OR IGNORE INTO deliveries (id, integration_id, event, action, payload, payload_encoding, payload_bytes,
                                              correlation_id, received_at, processed_at, outcome)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """).execute(arguments: [delivery.deliveryID, delivery.integrationID.rawValue, delivery.event, delivery.action,
                                     delivery.body.payload, delivery.body.encoding.rawValue, delivery.body.bytes, delivery.correlationID,
                                     delivery.receivedAt, delivery.settled == nil ? nil : now.epoch, delivery.settled])
        guard db.changesCount == 1 else { return .duplicate }
        if delivery.settled != nil { return .accepted }
        try enqueue(JobRequest(kind: delivery.jobKind, payload: DeliveryJob(deliveryID: delivery.deliveryID), priority: .critical,
                               idempotencyKey: "delivery:\(delivery.deliveryID)", correlationID: delivery.correlationID))
        return .accepted
    }
}

/// What intake reads of a delivery's body before storing it: that it is one JSON object, and the
/// action it names (GitHub's top-level `action`, GitLab's `object_attributes.action`; nil when
/// absent or not a string). Read in one pass by `JSONObjectScan`, which checks the whole body and
/// builds nothing of it but the two strings (`JSONSerialization` cost about five times as much CPU
/// on a 23 KB `pull_request` delivery; `JSONDecoder` with this type's `Decodable` 70 µs against the
/// scan's 18 µs on a compact 25 KB GitHub example).
public struct DeliveryEnvelope: Decodable, Sendable, Equatable {
    public var action: String?
    public var objectAttributesAction: String?

    /// What a delivery whose body `parse` refuses is told.
    public static let refusal = "the delivery body is not a JSON object, or nests arrays and objects deeper than \(JSONObjectScan.maximumDepth) levels"

    /// What a delivery whose body `parse` refuses is told, said more exactly when the body is not
    /// UTF-8 text or holds a raw control character (an object otherwise well formed was told it
    /// was not a JSON object).
    public static func refusal(for data: Data) -> String {
        if String(validating: data, as: UTF8.self) == nil { return "the delivery body is not valid UTF-8 text (JSON is UTF-8)" }
        if let control = data.first(where: { $0 < 0x20 && $0 != 0x09 && $0 != 0x0A && $0 != 0x0D }) {
            return "the delivery body holds a raw control character (U+\(String(format: "%04X", control))); JSON writes it as a \\u escape"
        }
        return refusal
    }

    /// nil when `data` is not one well-formed JSON object (see `JSONObjectScan`).
    public static func parse(_ data: Data) -> DeliveryEnvelope? {
        data.withUnsafeBytes { JSONObjectScan.scan($0) }.map {
            DeliveryEnvelope(action: $0.action, objectAttributesAction: $0.objectAttributesAction)
        }
    }

    public init(action: String?, objectAttributesAction: String?) {
        self.action = action
        self.objectAttributesAction = objectAttributesAction
    }

    private enum Keys: String, CodingKey {
        case action
        case objectAttributes = "object_attributes"
    }

    private struct Attributes: Decodable {
        var action: String?
        init(from decoder: any Decoder) throws {
            action = try? decoder.container(keyedBy: Keys.self).decodeIfPresent(String.self, forKey: .action)
        }
    }

    public init(from decoder: any Decoder) throws {
        // Anything but an object fails here (a type mismatch): the delivery is refused.
        let container = try decoder.container(keyedBy: Keys.self)
        action = try? container.decodeIfPresent(String.self, forKey: .action)
        objectAttributesAction = (try? container.decodeIfPresent(Attributes.self, forKey: .objectAttributes))?.action
    }
}

/// The latest webhook delivery of an integration, as received and processed.
public struct DeliverySummary: Sendable, Equatable {
    public var id: String
    public var event: String
    public var action: String?
    public var receivedAt: Double
    public var processedAt: Double?
    /// Nil while it waits to be processed.
    public var outcome: String?

    public static func latest(integrationID: String, in db: Database) throws -> DeliverySummary? {
        try Row.fetchOne(db, sql: """
            SELECT id, event, action, received_at, processed_at, outcome FROM deliveries WHERE integration_id = ?
            ORDER BY received_at DESC LIMIT 1
            """, arguments: [integrationID]).map {
            DeliverySummary(id: $0["id"], event: $0["event"], action: $0["action"], receivedAt: $0["received_at"],
                            processedAt: $0["processed_at"], outcome: $0["outcome"])
        }
    }
}
