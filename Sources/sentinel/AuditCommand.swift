import ArgumentParser
import Foundation
import SentinelCore

/// The appliance's audit log (`control.sqlite`): what `GET /api/v1/audit` serves.
struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "The appliance's audit log, oldest first: users created, disabled, enabled, deleted or given a new password; API tokens created or revoked; workspaces created, renamed, deleted or moved to another plan.",
        discussion: "Each entry names who made the change: cli, setup (the first admin), or the email of the admin who used the API or the console. "
            + "With --workspace, a workspace's own log instead: members, teams, settings, integrations, keys and repositories changed "
            + "(each entry's by names who), as GET /api/v1/workspaces/ID/audit serves it.")
    @OptionGroup var global: GlobalOptions
    @Option(help: "Only the entries about one user or workspace: an email, user:ID, a workspace's name or id, or workspace:ID.") var subject: String?
    @Option(help: "Only the entries after this sequence number (the first column).") var after: Int64 = 0
    @Option(help: "A workspace's own audit log instead (id or name).") var workspace: String?
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        try await oneLine {
            if let workspace {
                guard subject == nil else { throw CLIError("--subject narrows the appliance's log; a workspace's log is listed whole") }
                try await printWorkspaceLog(workspace)
                return
            }
            let config = try global.loadConfig()
            let (control, opener) = try global.openControl(config)
            let subject = try subject.map { try Self.resolve($0, global: global, config: config, control: control, opener: opener) }
            var events: [AuditEvent] = []
            while true {
                let page = try control.read { db in
                    try AuditLog.events(subject: subject, after: events.last?.seq ?? after, limit: 500, in: db)
                }
                events += page
                if page.count < 500 { break }
            }
            if json { try printJSON(events.map(AuditOutput.init)) } else {
                for e in events { print("\(e.seq)  \(e.occurredAt)  \(e.type)  \(e.subject)  by \(e.actor)  \(e.data)") }
                if events.isEmpty { print("no audit entries\(subject.map { " about \($0)" } ?? "")") }
            }
        }
    }

    func printWorkspaceLog(_ idOrName: String) async throws {
        let start = after
        let events = try await global.withWorkspace(idOrName) { actor, _, _ in
            var events: [StoredEvent] = []
            while true {
                let from = events.last?.seq ?? start
                let page = try await actor.read { db in
                    try EventLog.read(after: from, limit: 500, types: EventLog.auditTypes, in: db)
                }
                events += page
                if page.count < 500 { return events }
            }
        }
        if json { try printJSON(events.map(AuditOutput.init)) } else {
            for e in events { print("\(e.seq)  \(e.occurredAt)  \(e.type)  \(e.subject ?? "-")  \(e.data)") }
            if events.isEmpty { print("no audit entries in workspace \(idOrName)") }
        }
    }

    /// `user:ID` or `workspace:ID` for what an admin typed.
    static func resolve(_ text: String, global: GlobalOptions, config: SentinelConfig, control: ControlStore, opener: DatabaseOpener) throws -> String {
        if text.hasPrefix("user:") || text.hasPrefix("workspace:") { return text }
        if text.contains("@") {
            guard let user = try global.identity(config).user(email: text) else {
                throw CLIError("no user with email \(text) (a deleted user's entries are found by user:ID)")
            }
            return "user:\(user.id)"
        }
        do {
            let record = try WorkspaceService(dataDirectory: global.dataDirectory, control: control, opener: opener).find(text)
            return "workspace:\(record.id)"
        } catch {
            // A deleted workspace's id: its entries stay (its name may belong to another workspace now).
            if WorkspaceID(text) != nil { return "workspace:\(text)" }
            throw CLIError("\(error) (a deleted workspace's entries are found by its id, or workspace:ID)")
        }
    }
}

/// An audit entry as the API's audit answers show one: `data` an object (it was printed as a JSON
/// string), and a workspace entry's `by` beside it.
struct AuditOutput: Encodable {
    let seq: Int64
    let id: String
    let type: String
    let occurredAt: String
    let subject: String?
    let actor: String?
    let by: String?
    let data: JSONValue

    init(_ event: AuditEvent) {
        (seq, id, type, occurredAt, subject, actor, by) = (event.seq, event.id, event.type, event.occurredAt, event.subject, event.actor, nil)
        data = JSONValue(text: event.data) ?? .object([:])
    }

    init(_ event: StoredEvent) {
        (seq, id, type, occurredAt, subject, actor) = (event.seq, event.id, event.type, event.occurredAt, event.subject, nil)
        data = JSONValue(text: event.data) ?? .object([:])
        by = if case .object(let fields) = data, case .string(let name)? = fields["by"] { name } else { nil }
    }
}
