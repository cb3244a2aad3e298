import Foundation
import GRDB
import Hummingbird
import Logging
import Metrics
import NIOCore
import SentinelCore
import Synchronization

/// `POST /webhooks/github/{integrationID}` and `POST /webhooks/gitlab/{integrationID}`. Order:
/// integration lookup (404) and the declared size (413), both before a byte of the body is read;
/// then the body, read once up to the limit; the platform's authentication (401 before anything is
/// stored), headers and JSON, then one durable insert (into the workspace file, or the intake
/// journal when that file is not open) and a 202. No network call happens here. An
/// integration whose workspace was deleted answers 410, so the platform's admins see why.
struct WebhookRoutes {
    let gitHub: GitHubIntegrationCache
    let gitLab: GitLabIntegrationCache
    let supervisor: Supervisor
    let journal: IntakeJournal
    let metrics: SentinelMetrics
    let authFailures: DeliveryAuthFailures
    let bodies: WebhookBodyBudget

    func add(to router: Router<SentinelRequestContext>) {
        router.post("/webhooks/github/:integrationID") { request, context in
            try await receiveGitHub(request, context)
        }
        router.post("/webhooks/gitlab/:integrationID") { request, context in
            try await receiveGitLab(request, context)
        }
    }

    /// `body`'s value; its error counted as `outcome` in `sentinel_webhook_deliveries_total`.
    func counted<T>(platform: String, outcome: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch {
            metrics.webhook(platform: platform, outcome: outcome)
            throw error
        }
    }

    func tooLarge(_ platform: String) -> Problem {
        metrics.webhook(platform: platform, outcome: "too_large")
        return Problem(status: .contentTooLarge, detail: "deliveries larger than \(DeliveryIntake.maxBodyBytes / (1024 * 1024)) MB are refused")
    }

    /// The integration was removed or its workspace deleted: 410, so the platform's admins see why deliveries fail.
    func gone(_ id: IntegrationID, platform: String) -> Problem {
        metrics.webhook(platform: platform, outcome: "integration_deleted")
        return Problem(status: .gone, detail: "integration \(id) was removed (or its workspace deleted); remove this webhook (or the GitHub App installation)",
                       type: "urn:sentinel:problem:integration-deleted", title: "Integration deleted")
    }

    /// The integration a delivery is for (404 when unknown, 410 when its workspace was deleted), from the platform's cache.
    func integration<I: SourceControlIntegration>(_ cache: IntegrationCache<I>, _ context: SentinelRequestContext, platform: String) async throws -> I {
        guard let id = context.parameters.get("integrationID").flatMap(IntegrationID.init) else {
            metrics.webhook(platform: platform, outcome: "unknown_integration")
            throw Problem(status: .notFound, detail: "no such integration")
        }
        let found: I?
        do {
            found = try await cache.integration(id, using: supervisor)
        } catch WorkspaceError.notFound {
            // Routed to a workspace deleted meanwhile.
            found = nil
        } catch {
            // Its workspace offline (a damaged file), or unreadable: not stored, and counted, as
            // the alert on refused deliveries reads this counter.
            metrics.webhook(platform: platform, outcome: "unavailable")
            throw error
        }
        guard let integration = found else {
            if try await cache.isRetired(id) { throw gone(id, platform: platform) }
            metrics.webhook(platform: platform, outcome: "unknown_integration")
            throw Problem(status: .notFound, detail: "no such integration")
        }
        return integration
    }

    /// The delivery's body, read once up to the limit (413 beyond, by the declared size before any
    /// byte is read), while its size is held in the in-flight budget (503 when other deliveries
    /// hold it: a body is read whole before its signature can be checked, so many large ones at
    /// once would otherwise take all the memory there is). `handle` runs with the body; the size is
    /// given back when it returns.
    func withBody<T>(_ request: Request, platform: String, _ handle: (Data) async throws -> T) async throws -> T {
        let declared = request.headers[.contentLength].flatMap { Int($0) }
        if let declared, declared > DeliveryIntake.maxBodyBytes { throw tooLarge(platform) }
        // Chunked bodies declare no size: they hold the most a delivery may have.
        let bytes = max(0, declared ?? DeliveryIntake.maxBodyBytes)
        guard bodies.take(bytes) else {
            metrics.webhook(platform: platform, outcome: "busy")
            var problem = Problem(status: .serviceUnavailable,
                                  detail: "too many large webhook deliveries are being received at once (server.max_webhook_bytes_in_flight); retry shortly",
                                  type: "urn:sentinel:problem:busy", title: "Busy")
            problem.retryAfter = 5
            throw problem
        }
        defer { bodies.give(bytes) }
        return try await handle(try await body(request, platform: platform))
    }

    private func body(_ request: Request, platform: String) async throws -> Data {
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: DeliveryIntake.maxBodyBytes)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw tooLarge(platform)
        } catch is NIOTooManyBytesError {
            throw tooLarge(platform)
        }
        // One view of the collected bytes as Data (no copy where the storage allows it).
        return body.getData(at: body.readerIndex, length: body.readableBytes, byteTransferStrategy: .noCopy) ?? Data()
    }

    /// The delivery id a webhook request's jobs carry as their correlation id (see `store`), so the
    /// request's own log lines and response `X-Request-ID` carry it too; nil for other requests.
    static func correlationID(of request: Request) -> String? {
        let path = request.uri.path
        if path.hasPrefix("/webhooks/github/") { return gitHubDeliveryID(request) }
        if path.hasPrefix("/webhooks/gitlab/") { return gitLabDeliveryKey(request).map(gitLabDeliveryID) }
        return nil
    }

    /// GitHub names a delivery in `X-GitHub-Delivery`.
    static func gitHubDeliveryID(_ request: Request) -> String? { request.headers[.init("X-GitHub-Delivery")!] }

    /// GitLab names a delivery with `Idempotency-Key` (the same across its retries), else `X-Gitlab-Event-UUID`.
    static func gitLabDeliveryKey(_ request: Request) -> String? {
        request.headers[.init("Idempotency-Key")!] ?? request.headers[.init("X-Gitlab-Event-UUID")!]
    }

    /// The longest event name and delivery id a delivery may carry (GitHub's and GitLab's are
    /// far shorter: `pull_request_review_comment`, a UUID).
    static let eventNameLimit = 100
    static let deliveryIDLimit = 200

    /// What a delivery's naming headers may hold. GitHub names events in lower case with
    /// underscores (`pull_request`), GitLab in words (`Merge Request Hook`); both name deliveries
    /// with UUIDs.
    enum HeaderRule {
        /// ASCII letters, digits, spaces and `_ - .`.
        case eventName
        /// Printable ASCII without spaces.
        case deliveryID

        func allows(_ byte: UInt8) -> Bool {
            switch self {
            case .eventName:
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                     UInt8(ascii: " "), UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: "."): true
                default: false
                }
            case .deliveryID: byte > 0x20 && byte < 0x7F
            }
        }

        var description: String {
            switch self {
            case .eventName: "ASCII letters, digits, spaces and _ - ."
            case .deliveryID: "printable ASCII without spaces, like the platform's UUIDs"
            }
        }
    }

    /// A header a delivery cannot be stored without: given once, not empty, at most `limit`
    /// characters, each allowed by `rule`; else a 400 that says which of these it is not.
    static func required(_ request: Request, _ name: String, limit: Int, rule: HeaderRule) throws -> String {
        try required(optional(request, name), name, limit: limit, rule: rule)
    }

    /// A header given at most once (nil when absent): two copies of a naming header would be read
    /// as one value joined with a comma.
    static func optional(_ request: Request, _ name: String) throws -> String? {
        let values = request.headers[values: .init(name)!]
        guard values.count <= 1 else {
            throw Problem(status: .badRequest, detail: "\(name) header is given \(values.count) times; a delivery carries it once")
        }
        return values.first
    }

    static func required(_ value: String?, _ name: String, limit: Int, rule: HeaderRule) throws -> String {
        guard let value, !value.isEmpty else { throw Problem(status: .badRequest, detail: "\(name) header is required") }
        guard value.utf8.allSatisfy(rule.allows) else {
            throw Problem(status: .badRequest, detail: "\(name) header must be \(rule.description)")
        }
        guard value.utf8.count <= limit else {
            throw Problem(status: .badRequest, detail: "\(name) header is longer than \(limit) characters (\(value.utf8.count))")
        }
        return value
    }

    /// A GitLab delivery's id in Sentinel: its key, prefixed so it cannot collide with GitHub's.
    static func gitLabDeliveryID(_ key: String) -> String { "gitlab:\(key)" }

    func receiveGitHub(_ request: Request, _ context: SentinelRequestContext) async throws -> Response {
        let integration = try await integration(gitHub, context, platform: "github")
        return try await withBody(request, platform: "github") { data in try await receiveGitHub(request, context, integration: integration, data: data) }
    }

    /// Why a signed delivery that is not a JSON object is refused: a repository or organisation
    /// webhook left at GitHub's form content type sends `payload=…` as
    /// `application/x-www-form-urlencoded`, and is told (415) to send JSON; anything else is a 400.
    static func unreadable(_ request: Request, _ data: Data) -> Problem {
        if let type = request.headers[.contentType]?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased(),
           !type.isEmpty, type != "application/json", !type.hasSuffix("+json") {
            return Problem(status: .unsupportedMediaType,
                           detail: "the delivery is sent as \(StoredText.singleLine(String(type.prefix(60)))); Sentinel reads webhook deliveries as JSON: "
                               + "set the webhook's content type to application/json")
        }
        return Problem(status: .badRequest, detail: DeliveryEnvelope.refusal(for: data))
    }

    /// The integration whose webhook secret `accepts` the delivery: the cached one, or the one
    /// stored now when the cached copy refuses it (a secret rotated from the command line; read
    /// again at most once a second per integration). Nil: refused by both.
    func verified<I: SourceControlIntegration>(_ cache: IntegrationCache<I>, _ integration: I, _ accepts: (I) -> Bool) async -> I? {
        if accepts(integration) { return integration }
        guard let stored = try? await cache.reloaded(integration.id, using: supervisor, atMostEvery: .seconds(1)), accepts(stored) else { return nil }
        return stored
    }

    private func receiveGitHub(_ request: Request, _ context: SentinelRequestContext, integration cached: GitHubIntegration, data: Data) async throws -> Response {
        let id = cached.id
        let signature = request.headers[.init("X-Hub-Signature-256")!]
        guard let integration = await verified(gitHub, cached, { GitHubWebhookSignature.isValid(header: signature, body: data, secret: $0.webhookSecret) }) else {
            let integration = cached
            metrics.webhook(platform: "github", outcome: "bad_signature")
            await authFailures.record(id, workspaceID: integration.workspaceID)
            context.logger.warning("webhook signature rejected", metadata: ["integration_id": "\(id)"])
            throw Problem.unauthenticatedDelivery("X-Hub-Signature-256 is missing or does not match the integration's webhook secret",
                                                  scheme: "HMAC-SHA256", header: "X-Hub-Signature-256")
        }
        let (event, deliveryID) = try counted(platform: "github", outcome: "bad_request") {
            (try Self.required(request, "X-GitHub-Event", limit: Self.eventNameLimit, rule: .eventName),
             try Self.required(request, "X-GitHub-Delivery", limit: Self.deliveryIDLimit, rule: .deliveryID))
        }
        // GitLab's deliveries are stored as `gitlab:KEY` beside GitHub's: a GitHub id of that shape
        // would take a GitLab delivery's place (answered `duplicate`, never processed).
        guard !deliveryID.hasPrefix(Self.gitLabDeliveryID("")) else {
            throw Problem(status: .badRequest, detail: "X-GitHub-Delivery must not start with '\(Self.gitLabDeliveryID(""))' (GitHub names deliveries with UUIDs)")
        }
        guard let envelope = DeliveryEnvelope.parse(data) else {
            metrics.webhook(platform: "github", outcome: "invalid_json")
            throw Self.unreadable(request, data)
        }
        if event == "ping" {
            metrics.webhook(platform: "github", outcome: "ping")
            await authFailures.passed(id)
            return jsonResponse(.ok, ["status": "pong", "integration_id": id.rawValue])
        }
        let action = envelope.action
        return try await store(deliveryID: deliveryID, event: event, action: action, data: data, integrationID: id,
                               workspaceID: integration.workspaceID, platform: "github", jobKind: DeliveryIntake.jobKind,
                               settled: GitHubDeliveryProcessor.settledOutcome(event: event, action: action), context)
    }

    /// GitLab authenticates a delivery with the webhook's secret token in `X-Gitlab-Token`, and
    /// names it with `Idempotency-Key` (the same across GitLab's retries) and `X-Gitlab-Event-UUID`.
    func receiveGitLab(_ request: Request, _ context: SentinelRequestContext) async throws -> Response {
        let integration = try await integration(gitLab, context, platform: "gitlab")
        return try await withBody(request, platform: "gitlab") { data in try await receiveGitLab(request, context, integration: integration, data: data) }
    }

    private func receiveGitLab(_ request: Request, _ context: SentinelRequestContext, integration cached: GitLabIntegration, data: Data) async throws -> Response {
        let token = request.headers[.init("X-Gitlab-Token")!]
        guard let integration = await verified(gitLab, cached, { GitLabWebhookToken.isValid(header: token, secret: $0.webhookSecret) }) else {
            let integration = cached
            metrics.webhook(platform: "gitlab", outcome: "bad_signature")
            await authFailures.record(integration.id, workspaceID: integration.workspaceID)
            context.logger.warning("webhook token rejected", metadata: ["integration_id": "\(integration.id)"])
            throw Problem.unauthenticatedDelivery("X-Gitlab-Token is missing or does not match the integration's webhook secret",
                                                  scheme: "Token", header: "X-Gitlab-Token")
        }
        let event = try counted(platform: "gitlab", outcome: "bad_request") {
            try Self.required(request, "X-Gitlab-Event", limit: Self.eventNameLimit, rule: .eventName)
        }
        // Both naming headers are checked as GitLab sends them, whichever names the delivery: an
        // empty `Idempotency-Key` is none (the event UUID names it then), and an event UUID given
        // twice or with odd characters is refused beside a key too (it was not read at all).
        let key = try counted(platform: "gitlab", outcome: "bad_request") {
            let idempotencyKey = try Self.optional(request, "Idempotency-Key").flatMap { $0.isEmpty ? nil : $0 }
            let eventUUID = try Self.optional(request, "X-Gitlab-Event-UUID").flatMap { $0.isEmpty ? nil : $0 }
            if let idempotencyKey, let eventUUID {
                _ = try Self.required(idempotencyKey, "Idempotency-Key", limit: Self.deliveryIDLimit, rule: .deliveryID)
                _ = try Self.required(eventUUID, "X-Gitlab-Event-UUID", limit: Self.deliveryIDLimit, rule: .deliveryID)
            }
            return try Self.required(idempotencyKey ?? eventUUID,
                                     idempotencyKey == nil ? "X-Gitlab-Event-UUID (or Idempotency-Key)" : "Idempotency-Key",
                                     limit: Self.deliveryIDLimit, rule: .deliveryID)
        }
        guard let envelope = DeliveryEnvelope.parse(data) else {
            metrics.webhook(platform: "gitlab", outcome: "invalid_json")
            throw Self.unreadable(request, data)
        }
        let action = envelope.objectAttributesAction
        return try await store(deliveryID: Self.gitLabDeliveryID(key), event: event, action: action, data: data, integrationID: integration.id,
                               workspaceID: integration.workspaceID, platform: "gitlab", jobKind: DeliveryIntake.gitLabJobKind,
                               settled: GitLabDeliveryProcessor.settledOutcome(event: event, action: action), context)
    }

    /// Stores the delivery in its workspace file when that file is open (and the intake journal
    /// holds nothing for the workspace); otherwise, or when another process holds the file's write
    /// lock, appends it to the journal, which applies it to the file shortly after (or once the
    /// lock is gone). Either way the 202 follows a durable commit.
    func store(deliveryID: String, event: String, action: String?, data: Data, integrationID: IntegrationID, workspaceID: WorkspaceID,
               platform: String, jobKind: String, settled: String? = nil, _ context: SentinelRequestContext) async throws -> Response {
        let delivery = IncomingDelivery(deliveryID: deliveryID, integrationID: integrationID, event: event, action: action, body: data,
                                        correlationID: context.correlationID.isEmpty ? deliveryID : context.correlationID, jobKind: jobKind, settled: settled)
        if supervisor.isRetired(workspaceID) { throw gone(integrationID, platform: platform) }
        var journalled = journal.holdsDeliveries(for: workspaceID) || !supervisor.isOpen(workspaceID)
        let outcome: DeliveryIntake.Outcome
        do {
            if journalled {
                outcome = try await journal.append(delivery, for: workspaceID)
            } else {
                do {
                    outcome = try await supervisor.withWorkspace(workspaceID) { try await DeliveryIntake.store(delivery, in: $0) }
                } catch let error as DatabaseError where error.resultCode == .SQLITE_BUSY || error.resultCode == .SQLITE_LOCKED {
                    // Another process holds the workspace file's write lock past `storage.busy_timeout_ms`
                    // (a `sqlite3` shell left in a transaction): nothing was stored there, so the journal
                    // takes the delivery and its applier writes it once the lock is gone.
                    context.logger.warning("workspace file locked by another writer; delivery goes to the intake journal",
                                           metadata: ["delivery_id": "\(deliveryID)", "workspace_id": "\(workspaceID)"])
                    journalled = true
                    outcome = try await journal.append(delivery, for: workspaceID)
                }
            }
        } catch WorkspaceError.notFound(let workspace) {
            // The workspace was deleted after the integration was looked up (it may still be cached).
            if try await gitHub.isRetired(integrationID) { throw gone(integrationID, platform: platform) }
            metrics.webhook(platform: platform, outcome: "unavailable")
            throw WorkspaceError.notFound(workspace)
        } catch {
            // Not stored (a full disk, a file offline): counted, as the alert on refused deliveries
            // reads this counter (4,507 deliveries refused 503 for a full disk counted nowhere).
            metrics.webhook(platform: platform, outcome: "unavailable")
            throw error
        }
        metrics.webhook(platform: platform, outcome: outcome == .accepted ? "accepted" : "duplicate")
        context.logger.info("delivery stored", metadata: ["delivery_id": "\(deliveryID)", "event": "\(event)", "action": "\(action ?? "-")",
                                                          "settled": "\(settled ?? "-")", "duplicate": "\(outcome == .duplicate)",
                                                          "journal": "\(journalled)", "workspace_id": "\(workspaceID)"])
        return jsonResponse(.accepted, ["status": outcome == .accepted ? "accepted" : "duplicate", "delivery_id": deliveryID])
    }
}

func jsonResponse(_ status: HTTPResponse.Status, _ object: [String: String]) -> Response {
    Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: FlatJSON.encode(object))))
}

/// Bytes of webhook bodies being read or held at once (`server.max_webhook_bytes_in_flight`).
final class WebhookBodyBudget: Sendable {
    /// A delivery this small is always read (and counted): nearly all of a platform's deliveries
    /// are, so a few large ones, or a client sending large bodies slowly, never crowd them out.
    static let alwaysRead = 1_048_576

    let limit: Int
    private let held = Mutex(0)
    private let gauge: Gauge

    init(limit: Int, metrics: SentinelMetrics) {
        self.limit = limit
        gauge = metrics.webhookBodyBytesHeld()
        gauge.record(0)
    }

    /// Takes `bytes` when they fit beside what is held, when nothing is held (one delivery is
    /// always read, whatever its size) or when they are at most `alwaysRead`.
    func take(_ bytes: Int) -> Bool {
        held.withLock { held in
            guard bytes <= Self.alwaysRead || held == 0 || held + bytes <= limit else { return false }
            held += bytes
            gauge.record(held)
            return true
        }
    }

    func give(_ bytes: Int) {
        held.withLock { held in
            held -= bytes
            gauge.record(held)
        }
    }
}
