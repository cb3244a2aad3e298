import Foundation
import GRDB

/// The payload of a delivery job (`github.delivery`, `gitlab.delivery`).
public struct DeliveryJob: Codable, Sendable {
    public var deliveryID: String
}

/// Webhook intake after authentication: one durable insert of the delivery (deduplicated by the
/// platform's delivery id) and its processing job, in one group-committed transaction. No network
/// call and no review work happen here, so the platform gets its 202 in milliseconds.
public enum DeliveryIntake {
    public enum Outcome: Sendable, Equatable { case accepted, duplicate }

    /// The one definition of the largest delivery accepted (GitHub and GitLab send at most 25 MB).
    public static let maxBodyBytes = 25 * 1024 * 1024

    public static let jobKind = "github.delivery"
    public static let gitLabJobKind = "gitlab.delivery"

    /// - Parameters:
    ///   - jobKind: the platform's processing job (`jobKind` for GitHub, `gitLabJobKind`).
    ///   - settled: the outcome when the event and action alone say there is nothing to do (a
    ///     `pull_request.labeled`, an event Sentinel does not act on): the delivery is stored
    ///     already processed, with that outcome, and no job. Most of a busy organisation's
    ///     webhook traffic is such deliveries.
    public static func store(deliveryID: String, integrationID: IntegrationID, event: String, action: String?, body: Data,
                             correlationID: String, jobKind: String = DeliveryIntake.jobKind, settled: String? = nil,
                             in workspace: WorkspaceActor) async throws -> Outcome {
        let stored = DeliveryPayload.encode(body)
        return try await workspace.write { tx in
            // Compiled once per connection, not once per delivery.
            try tx.db.cachedStatement(sql: """
                INSERT OR IGNORE INTO deliveries (id, integration_id, event, action, payload, payload_encoding, payload_bytes,
                                                  correlation_id, received_at, processed_at, outcome)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """).execute(arguments: [deliveryID, integrationID.rawValue, event, action, stored.payload, stored.encoding.rawValue,
                                         stored.bytes, correlationID, tx.now.epoch, settled == nil ? nil : tx.now.epoch, settled])
            guard tx.db.changesCount == 1 else { return .duplicate }
            if settled != nil { return .accepted }
            try tx.enqueue(JobRequest(kind: jobKind, payload: DeliveryJob(deliveryID: deliveryID), priority: .critical,
                                      idempotencyKey: "delivery:\(deliveryID)", correlationID: correlationID))
            return .accepted
        }
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
