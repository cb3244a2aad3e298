import ArgumentParser
import Foundation
import SentinelCore

struct NotifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "notify", abstract: "A workspace's notification channels (Slack, Teams, signed webhook, email).",
                                                    subcommands: [Add.self, List.self, Test.self, Remove.self])

    struct Target: ParsableArguments {
        @OptionGroup var global: GlobalOptions
        @Option(help: "Workspace id or name.") var workspace: String

        /// Runs `body` with the workspace open (closed afterwards), its channel store and the configuration.
        func withChannels<T>(_ body: (WorkspaceActor, NotificationStore, SentinelConfig) async throws -> T) async throws -> T {
            let store = NotificationStore(masterKey: try MasterKey.load(at: global.dataDirectory.masterKeyFile))
            return try await global.withWorkspace(workspace) { actor, _, config in try await body(actor, store, config) }
        }
    }

    static func readFile(_ path: String?, what: String) throws -> String? {
        guard let path else { return nil }
        return try readInputText(path, what: "\(what) file").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func show(_ c: NotificationChannelSummary, json: Bool) throws {
        if json { try printJSON(c) } else {
            print("\(c.id)  \(c.kind)  \(c.name)  \(c.destination)  events=\(c.topics.joined(separator: ","))\(c.minSeverity.map { "  min_severity=\($0)" } ?? "")")
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a channel; prints it with its URL redacted.")
        @OptionGroup var target: Target
        @Option(help: "slack | teams | webhook | email") var kind: String
        @Option(help: "A name for the channel.") var name: String
        @Option(help: "File holding the webhook URL (it carries a token: never on the command line).") var urlFile: String?
        @Option(help: "File holding the webhook channel's signing secret (16+ characters).") var secretFile: String?
        @Option(help: "Email: the mail server's host.") var smtpHost: String?
        @Option(help: "Email: the mail server's port (default 587 for starttls, 465 for tls).") var smtpPort: Int?
        @Option(help: "Email: starttls | tls (implicit TLS).") var smtpSecurity: String = "starttls"
        @Option(help: "Email: the username to sign in with (AUTH PLAIN or LOGIN, over TLS only).") var smtpUsername: String?
        @Option(help: "Email: file holding the password (never on the command line).") var smtpPasswordFile: String?
        @Option(help: "Email: PEM file with the CA certificates to trust for the mail server (default: the system's).") var smtpCaFile: String?
        @Option(help: "Email: the sender address.") var from: String?
        @Option(help: "Email: a recipient address (repeatable).") var to: [String] = []
        @Option(help: "Event to notify (repeatable): \(NotificationTopic.allCases.map(\.rawValue).joined(separator: ", ")).") var event: [String]
        @Option(help: "For run.findings: the lowest severity that notifies.") var minSeverity: String?
        @Flag(help: "Print JSON.") var json = false

        func validate() throws {
            // Options of another kind of channel were accepted and dropped without a word.
            let emailOptions = [smtpHost.map { _ in "--smtp-host" }, smtpPort.map { _ in "--smtp-port" },
                                smtpUsername.map { _ in "--smtp-username" }, smtpPasswordFile.map { _ in "--smtp-password-file" },
                                smtpCaFile.map { _ in "--smtp-ca-file" }, from.map { _ in "--from" }, to.isEmpty ? nil : "--to",
                                smtpSecurity == "starttls" ? nil : "--smtp-security"].compactMap { $0 }
            let webhookOptions = [urlFile.map { _ in "--url-file" }, secretFile.map { _ in "--secret-file" }].compactMap { $0 }
            if kind == NotificationChannelKind.email.rawValue, let first = webhookOptions.first {
                throw ValidationError("\(first) is for slack, teams and webhook channels, not email")
            }
            if kind != NotificationChannelKind.email.rawValue, let first = emailOptions.first {
                throw ValidationError("\(first) is for email channels, not \(kind)")
            }
            if minSeverity != nil, !event.contains(NotificationTopic.runFindings.rawValue) {
                throw ValidationError("--min-severity applies to the \(NotificationTopic.runFindings.rawValue) event only; add --event \(NotificationTopic.runFindings.rawValue)")
            }
        }

        func run() async throws {
            try await oneLine {
                let url = try NotifyCommand.readFile(urlFile, what: "URL")
                let secret = try NotifyCommand.readFile(secretFile, what: "secret")
                var email: EmailDestination?
                if kind == NotificationChannelKind.email.rawValue {
                    guard let smtpHost, let from else { throw CLIError("an email channel needs --smtp-host, --from and --to") }
                    guard let security = SMTPSecurity(rawValue: smtpSecurity) else { throw CLIError("--smtp-security must be starttls or tls") }
                    email = EmailDestination(host: smtpHost, port: smtpPort ?? (security == .tls ? 465 : 587), security: security,
                                             username: smtpUsername, password: try NotifyCommand.readFile(smtpPasswordFile, what: "password"),
                                             from: from, to: to, caBundle: try NotifyCommand.readFile(smtpCaFile, what: "CA"))
                } else if url == nil {
                    throw CLIError("--url-file is required")
                }
                let summary = try await target.withChannels { actor, store, _ in
                    try await store.add(kind: kind, name: name, url: url, secret: secret, email: email, topics: event, minSeverity: minSeverity,
                                        by: "cli", in: actor)
                }
                try NotifyCommand.show(summary, json: json)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List channels (URLs shown by scheme and host only, secrets never).")
        @OptionGroup var target: Target
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await oneLine {
                let list = try await target.withChannels { actor, store, _ in try await store.list(in: actor) }
                if json { try printJSON(list) } else {
                    for c in list { try NotifyCommand.show(c, json: false) }
                    if list.isEmpty { print("no notification channels") }
                }
            }
        }
    }

    struct Test: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Send a sample message now and print what the destination answered.")
        @OptionGroup var target: Target
        @Argument(help: "Channel id.") var channel: String
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let result = try await oneLine {
                try await target.withChannels { actor, store, config in
                    let destinations = try DestinationPolicy(config.security)
                    let client = try AsyncOutboundHTTPClient(destinations: destinations)
                    do {
                        let result = try await Notifications(store: store, http: client, mail: NIOSMTPClient(destinations: destinations))
                            .test(channel, by: "cli", in: actor)
                        await client.shutdown()
                        return result
                    } catch {
                        await client.shutdown()
                        throw error
                    }
                }
            }
            if json { try printJSON(result) } else {
                print("\(result.delivered ? "delivered" : "not delivered"): \(result.status.map { "\(result.transport.uppercased()) \($0)" } ?? "no answer")\(result.answer.isEmpty ? "" : "  \(result.answer)")")
            }
            if !result.delivered { throw ExitCode.failure }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a channel and what was waiting for it.")
        @OptionGroup var target: Target
        @Argument(help: "Channel id.") var channel: String

        func run() async throws {
            try await oneLine {
                try await target.withChannels { actor, store, _ in try await store.remove(channel, by: "cli", in: actor) }
                print("removed \(channel)")
            }
        }
    }
}
