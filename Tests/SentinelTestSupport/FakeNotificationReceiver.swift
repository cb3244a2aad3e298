import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import SentinelCore

/// One request a `FakeNotificationReceiver` answered.
public struct ReceivedNotification: Sendable {
    public var path: String
    public var headers: [String: String]
    public var body: Data
    public var status: Int

    public var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
}

public actor FakeNotificationState {
    public private(set) var received: [ReceivedNotification] = []
    /// Answer every request with this status instead (a destination that is down).
    public var forcedStatus: Int?

    /// How long each answer takes (a destination that answers slowly); nil: at once.
    public var answerDelay: Duration?

    public func force(_ status: Int?) { forcedStatus = status }
    public func slow(_ delay: Duration?) { answerDelay = delay }
    func record(_ request: ReceivedNotification) { received.append(request) }
    public func accepted(_ path: String? = nil) -> [ReceivedNotification] {
        received.filter { (200..<300).contains($0.status) && (path == nil || $0.path.hasPrefix(path!)) }
    }
}

/// Loopback receivers refusing what the real services refuse: Slack (`/slack/…`: a JSON object
/// with a non-empty `text`, else 400 `invalid_payload`/`no_text`), Teams workflows (`/teams/…`: a
/// `message` with an Adaptive Card attachment, else 400), and a generic receiver (`/hook`)
/// that verifies `X-Sentinel-Signature` with `secret` and refuses a stale timestamp (401).
public final class FakeNotificationReceiver: Sendable {
    public let state: FakeNotificationState
    public let port: Int
    public let secret: String
    private let task: Task<Void, any Error>

    public var baseURL: String { "http://127.0.0.1:\(port)" }

    public static func start(secret: String = "receiver-secret-0123456789") async throws -> FakeNotificationReceiver {
        let state = FakeNotificationState()
        let router = Router()
        router.post("/**") { incoming, _ -> Response in
            var request = incoming
            let body = Data(buffer: try await request.collectBody(upTo: 1 << 20))
            var headers: [String: String] = [:]
            for field in request.headers { headers[field.name.canonicalName.lowercased()] = field.value }
            let path = request.uri.path
            if let delay = await state.answerDelay { try await Task.sleep(for: delay) }
            let (status, answer) = await Self.answer(path: path, headers: headers, body: body, secret: secret, forced: state.forcedStatus)
            await state.record(ReceivedNotification(path: path, headers: headers, body: body, status: status))
            return Response(status: .init(code: status), headers: [.contentType: "text/plain"],
                            body: .init(byteBuffer: ByteBuffer(string: answer)))
        }
        let portBox = Rendezvous<Int>()
        var logger = Logger(label: "sentinel.fake-notifications")
        logger.logLevel = .critical
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { channel in await portBox.set(channel.localAddress?.port ?? 0) }, logger: logger)
        let task = Task { try await app.runService() }
        return FakeNotificationReceiver(state: state, port: await portBox.wait(), secret: secret, task: task)
    }

    private init(state: FakeNotificationState, port: Int, secret: String, task: Task<Void, any Error>) {
        self.state = state
        self.port = port
        self.secret = secret
        self.task = task
    }

    static func answer(path: String, headers: [String: String], body: Data, secret: String, forced: Int?) -> (Int, String) {
        if let forced { return (forced, "unavailable") }
        guard headers["content-type"]?.hasPrefix("application/json") == true,
              let json = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] else { return (400, "invalid_payload") }
        if path.hasPrefix("/slack") {
            guard let text = json["text"] as? String, !text.isEmpty else { return (400, "no_text") }
            return (200, "ok")
        }
        if path.hasPrefix("/teams") {
            guard json["type"] as? String == "message", let attachments = json["attachments"] as? [[String: Any]], !attachments.isEmpty,
                  attachments.allSatisfy({ $0["contentType"] as? String == "application/vnd.microsoft.card.adaptive" }),
                  let card = attachments[0]["content"] as? [String: Any], card["type"] as? String == "AdaptiveCard",
                  card["version"] is String, let blocks = card["body"] as? [[String: Any]], !blocks.isEmpty,
                  blocks.allSatisfy(isValidElement) else {
                return (400, "Invalid adaptive card message")
            }
            return (202, "")
        }
        if path.hasPrefix("/hook") {
            guard let signature = headers[NotificationSignature.header.lowercased()],
                  NotificationSignature.verify(header: signature, body: body, secret: secret, now: Date()) else {
                return (401, "bad or stale signature")
            }
            return (204, "")
        }
        return (404, "not found")
    }

    /// The card elements Sentinel sends, with what the Adaptive Card schema requires of each: a
    /// TextBlock its `text`; a RichTextBlock its `inlines`, each a string or a TextRun with `text`.
    static func isValidElement(_ element: [String: Any]) -> Bool {
        switch element["type"] as? String {
        case "TextBlock":
            return element["text"] is String
        case "RichTextBlock":
            guard let inlines = element["inlines"] as? [Any] else { return false }
            return inlines.allSatisfy { inline in
                if inline is String { return true }
                guard let run = inline as? [String: Any] else { return false }
                return run["type"] as? String == "TextRun" && run["text"] is String
            }
        default:
            return false
        }
    }

    public func stop() async {
        task.cancel()
        _ = await task.result
    }
}
