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

    public static let jobKind = "github.delivery"
    public static let gitLabJobKind = "gitlab.delivery"

    /// - Parameter jobKind: the platform's processing job (`jobKind` for GitHub, `gitLabJobKind`).
    public static func store(deliveryID: String, integrationID: IntegrationID, event: String, action: String?, body: Data,
                             correlationID: String, jobKind: String = DeliveryIntake.jobKind, in workspace: WorkspaceActor) async throws -> Outcome {
        try await workspace.write { tx in
            try tx.db.execute(sql: """
                INSERT OR IGNORE INTO deliveries (id, integration_id, event, action, payload, correlation_id, received_at)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """, arguments: [deliveryID, integrationID.rawValue, event, action, body, correlationID, tx.now.epoch])
            guard tx.db.changesCount == 1 else { return .duplicate }
            try tx.enqueue(JobRequest(kind: jobKind, payload: DeliveryJob(deliveryID: deliveryID), priority: .critical,
                                      idempotencyKey: "delivery:\(deliveryID)", correlationID: correlationID))
            return .accepted
        }
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
