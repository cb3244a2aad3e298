import Foundation
import SentinelCore

/// A workspace's notification channels: the same `NotificationStore` and `Notifications` service
/// `sentinel notify` uses (audit events, redaction and validation are theirs).
struct NotificationHandlers: Sendable {
    let d: APIDependencies

    func listNotificationChannels(_ input: Operations.ListNotificationChannels.Input, _ context: WorkspaceContext) async throws
        -> Operations.ListNotificationChannels.Output {
        let items = try await d.notifications.store.list(in: context.workspace)
        return .ok(.init(body: .json(.init(items: try items.map { try .converted(from: $0) }))))
    }

    func createNotificationChannel(_ input: Operations.CreateNotificationChannel.Input, _ context: WorkspaceContext) async throws
        -> Operations.CreateNotificationChannel.Output {
        guard case .json(let body) = input.body else { throw Problem(status: .badRequest, detail: "a JSON body is required") }
        let email = body.email.map { mail -> EmailDestination in
            let security = SMTPSecurity(rawValue: mail.security?.rawValue ?? SMTPSecurity.starttls.rawValue) ?? .starttls
            return EmailDestination(host: mail.host, port: mail.port ?? (security == .tls ? 465 : 587), security: security,
                                    username: mail.username, password: mail.password, from: mail.from, to: mail.to, caBundle: mail.caBundle)
        }
        let summary = try await d.notifications.store.add(kind: body.kind.rawValue, name: body.name, url: body.url, secret: body.secret, email: email,
                                                          topics: body.events.map(\.rawValue), minSeverity: body.minSeverity?.rawValue,
                                                          by: context.actorName, in: context.workspace)
        return .created(.init(body: .json(try .converted(from: summary))))
    }

    func deleteNotificationChannel(_ input: Operations.DeleteNotificationChannel.Input, _ context: WorkspaceContext) async throws
        -> Operations.DeleteNotificationChannel.Output {
        try await d.notifications.store.remove(input.path.channelId, by: context.actorName, in: context.workspace)
        return .noContent(.init())
    }

    func testNotificationChannel(_ input: Operations.TestNotificationChannel.Input, _ context: WorkspaceContext) async throws
        -> Operations.TestNotificationChannel.Output {
        let result = try await d.notifications.test(input.path.channelId, by: context.actorName, in: context.workspace)
        return .ok(.init(body: .json(.init(answer: result.answer, delivered: result.delivered, status: result.status,
                                           transport: result.transport == "smtp" ? .smtp : .http))))
    }
}
