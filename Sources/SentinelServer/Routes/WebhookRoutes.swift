import Foundation
import Hummingbird
import Logging
import NIOCore
import SentinelCore

/// `POST /webhooks/github/{integrationId}`. Order: integration lookup (404; 410 when its workspace was deleted) and the declared size
/// (413), both before a byte of the body is read; then the body, read once up to the limit;
/// signature (401 before anything is stored), headers and JSON, then one durable insert and a 202.
struct WebhookRoutes {
    /// The one definition of the largest delivery accepted (GitHub sends at most 25 MB).
    static let maxDeliveryBytes = 25 * 1024 * 1024
    let integrations: GitHubIntegrationCache
    let supervisor: Supervisor
    let metrics: SentinelMetrics

    func add(to router: Router<SentinelRequestContext>) {
        router.post("/webhooks/github/:integrationId") { request, context in
            try await receiveGitHub(request, context)
        }
    }

    func tooLarge() -> Problem {
        metrics.webhook(platform: "github", outcome: "too_large")
        return Problem(status: .contentTooLarge, detail: "deliveries larger than \(Self.maxDeliveryBytes / (1024 * 1024)) MB are refused")
    }

    /// The integration's workspace was deleted: 410, so the platform's admins see why deliveries fail.
    func gone(_ id: IntegrationID) -> Problem {
        metrics.webhook(platform: "github", outcome: "integration_deleted")
        return Problem(status: .gone, detail: "integration \(id) belonged to a workspace that was deleted; remove this webhook (or the GitHub App installation)",
                       type: "urn:sentinel:problem:integration-deleted", title: "Integration deleted")
    }

    func receiveGitHub(_ request: Request, _ context: SentinelRequestContext) async throws -> Response {
        guard let id = context.parameters.get("integrationId").flatMap(IntegrationID.init) else {
            metrics.webhook(platform: "github", outcome: "unknown_integration")
            throw Problem(status: .notFound, detail: "no such integration")
        }
        let found: GitHubIntegration?
        do {
            found = try await integrations.integration(id, using: supervisor)
        } catch WorkspaceError.notFound {
            // Routed to a workspace deleted meanwhile.
            found = nil
        }
        guard let integration = found else {
            if try await integrations.isRetired(id) { throw gone(id) }
            metrics.webhook(platform: "github", outcome: "unknown_integration")
            throw Problem(status: .notFound, detail: "no such integration")
        }
        if let declared = request.headers[.contentLength], let length = Int(declared), length > Self.maxDeliveryBytes {
            throw tooLarge()
        }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: Self.maxDeliveryBytes)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw tooLarge()
        } catch is NIOTooManyBytesError {
            throw tooLarge()
        }
        // One view of the collected bytes as Data (no copy where the storage allows it).
        let data = body.getData(at: body.readerIndex, length: body.readableBytes, byteTransferStrategy: .noCopy) ?? Data()
        guard GitHubWebhookSignature.isValid(header: request.headers[.init("X-Hub-Signature-256")!], body: data, secret: integration.webhookSecret) else {
            metrics.webhook(platform: "github", outcome: "bad_signature")
            context.logger.warning("webhook signature rejected", metadata: ["integration_id": "\(id)"])
            throw Problem(status: .unauthorized, detail: "X-Hub-Signature-256 is missing or does not match the integration's webhook secret")
        }
        guard let event = request.headers[.init("X-GitHub-Event")!], !event.isEmpty, event.count <= 100 else {
            throw Problem(status: .badRequest, detail: "X-GitHub-Event header is required")
        }
        guard let deliveryID = request.headers[.init("X-GitHub-Delivery")!], !deliveryID.isEmpty, deliveryID.count <= 200 else {
            throw Problem(status: .badRequest, detail: "X-GitHub-Delivery header is required")
        }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            metrics.webhook(platform: "github", outcome: "invalid_json")
            throw Problem(status: .badRequest, detail: "the delivery body is not a JSON object")
        }
        if event == "ping" {
            metrics.webhook(platform: "github", outcome: "ping")
            return jsonResponse(.ok, ["status": "pong", "integration_id": id.rawValue])
        }
        let action = object["action"] as? String
        let correlationID = deliveryID
        let outcome: DeliveryIntake.Outcome
        do {
            outcome = try await supervisor.withWorkspace(integration.workspaceID) { workspace in
                try await DeliveryIntake.store(deliveryID: deliveryID, integrationID: id, event: event, action: action, body: data,
                                               correlationID: correlationID, in: workspace)
            }
        } catch WorkspaceError.notFound(let workspace) {
            if try await integrations.isRetired(id) { throw gone(id) }
            throw WorkspaceError.notFound(workspace)
        }
        metrics.webhook(platform: "github", outcome: outcome == .accepted ? "accepted" : "duplicate")
        context.logger.info("delivery stored", metadata: ["delivery_id": "\(deliveryID)", "event": "\(event)", "action": "\(action ?? "-")",
                                                          "duplicate": "\(outcome == .duplicate)", "workspace_id": "\(integration.workspaceID)"])
        return jsonResponse(.accepted, ["status": outcome == .accepted ? "accepted" : "duplicate", "delivery_id": deliveryID])
    }
}

func jsonResponse(_ status: HTTPResponse.Status, _ object: [String: String]) -> Response {
    let body = (try? JSONEncoder.sentinel.encode(object)) ?? Data("{}".utf8)
    return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
}
