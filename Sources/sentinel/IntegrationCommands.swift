import ArgumentParser
import Foundation
import SentinelCore

struct IntegrationCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "integration", abstract: "Connect source-control platforms to a workspace.",
                                                    subcommands: [Add.self, List.self, Rotate.self, Test.self, Remove.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add an integration.", subcommands: [GitHub.self, GitLab.self])
    }

    struct GitHub: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "github", abstract: "Add a GitHub App (github.com or GitHub Enterprise Server).")
        @OptionGroup var global: GlobalOptions
        @Option(help: "Workspace id or name.") var workspace: String
        @Option(help: "The GitHub App's id.") var appID: Int64
        @Option(help: "The App's private key (PEM file downloaded from GitHub).") var privateKeyFile: String
        @Option(help: "File holding the App's webhook secret.") var webhookSecretFile: String
        @Option(help: "API base URL (default https://api.github.com; GHES: https://HOST/api/v3).") var apiURL: String?
        @Option(help: "PEM CA bundle to trust for a GHES behind an internal certificate authority.") var caFile: String?
        @Option(help: "The App's bot login (e.g. my-app[bot]); its own comments are never commands.") var botLogin: String?
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await oneLine {
                func read(_ path: String, _ what: String) throws -> Data { try readInput(path, what: "\(what) file") }
                // Text files read as they are: bytes that are not UTF-8 are refused, not replaced (a key
                // or token changed on the way was stored and refused by the platform later).
                let pem = try readInputText(privateKeyFile, what: "private key file")
                var secret = try read(webhookSecretFile, "webhook secret")
                while let last = secret.last, last == 0x0A || last == 0x0D { secret.removeLast() }
                let ca = try caFile.map { try readInputText($0, what: "CA file") }
                // Read as typed: a space or a character outside ASCII is refused, not stored percent-encoded (`/api/v3%20`).
                guard let api = WebAddress.parse(apiURL ?? IntegrationService.defaultGitHubAPI.absoluteString), api.scheme != nil else {
                    throw CLIError("--api-url is not an absolute URL (no spaces or characters outside ASCII), like https://github.example.com/api/v3")
                }
                let summary = try await global.withWorkspace(workspace) { actor, control, _ in
                    let service = IntegrationService(control: control, masterKey: try MasterKey.load(at: global.dataDirectory.masterKeyFile))
                    return try await service.addGitHub(workspace: actor, appID: appID, privateKeyPEM: pem, webhookSecret: secret,
                                                       apiURL: api, caBundlePEM: ca, botLogin: botLogin, by: "cli")
                }
                if json { try printJSON(summary) } else {
                    print("added GitHub integration \(summary.id); point the App's webhook URL at https://YOUR-HOST\(summary.webhookPath)")
                }
            }
        }
    }

    struct GitLab: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gitlab",
            abstract: "Add a GitLab instance (gitlab.com or self-managed) with an access token that has the api scope.")
        @OptionGroup var global: GlobalOptions
        @Option(help: "Workspace id or name.") var workspace: String
        @Option(help: "The instance root, e.g. https://gitlab.example.com (the API is at /api/v4).") var baseUrl: String
        @Option(help: "File holding a personal, project or group access token with the api scope.") var tokenFile: String
        @Option(help: "File holding the secret token to set on the GitLab webhook.") var webhookSecretFile: String
        @Option(help: "PEM CA bundle to trust for an instance behind an internal certificate authority.") var caFile: String?
        @Option(help: "The token's user name (default: asked from GitLab); its own notes are never commands.") var botUsername: String?
        @Flag(help: "Print JSON.") var json = false

        struct Added: Encodable {
            let id: String
            let kind: String
            let apiURL: String
            let webhookPath: String
            let webhookURL: String
            let user: String
            enum CodingKeys: String, CodingKey {
                case id, kind, user
                case apiURL = "api_url", webhookPath = "webhook_path", webhookURL = "webhook_url"
            }
        }

        func run() async throws {
            try await oneLine {
                func read(_ path: String, _ what: String) throws -> Data { try readInput(path, what: "\(what) file") }
                let token = try readInputText(tokenFile, what: "token file").trimmingCharacters(in: .whitespacesAndNewlines)
                var secret = try read(webhookSecretFile, "webhook secret")
                while let last = secret.last, last == 0x0A || last == 0x0D { secret.removeLast() }
                let ca = try caFile.map { try readInputText($0, what: "CA file") }
                guard let base = WebAddress.parse(baseUrl), base.scheme != nil else {
                    throw CLIError("--base-url must be an absolute URL (no spaces or characters outside ASCII), like https://gitlab.example.com")
                }
                let config = try global.loadConfig()
                let destinations = try DestinationPolicy(config.security)
                // One call to GitLab before anything is stored: the token works and can post.
                let user = try await GitLabTokenCheck.user(baseURL: base, token: token, caBundlePEM: ca, destinations: destinations)
                let summary = try await global.withWorkspace(workspace) { actor, control, _ in
                    let service = IntegrationService(control: control, masterKey: try MasterKey.load(at: global.dataDirectory.masterKeyFile))
                    return try await service.addGitLab(workspace: actor, baseURL: base, token: token, webhookSecret: secret, caBundlePEM: ca,
                                                       botUsername: botUsername ?? user.username, by: "cli")
                }
                let root = config.server.publicURL ?? "\(config.server.tlsEnabled ? "https" : "http")://\(ProcessInfo.processInfo.hostName):\(config.server.port)"
                let url = root + summary.webhookPath
                if json {
                    try printJSON(Added(id: summary.id, kind: summary.kind, apiURL: summary.apiURL, webhookPath: summary.webhookPath, webhookURL: url,
                                        user: botUsername ?? user.username))
                } else {
                    print("""
                        added GitLab integration \(summary.id) (token user \(user.username)).
                        In GitLab, project or group Settings → Webhooks → Add new webhook:
                          URL:                \(url)
                          Secret token:       the contents of \(webhookSecretFile)
                          Trigger:            Merge request events, Comments
                          SSL verification:   on
                        """)
                }
            }
        }
    }

    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Replace an integration's webhook secret, GitHub App private key, GitLab token or CA bundle in place.",
            discussion: """
                The webhook URL, repositories, settings and history stay. A GitLab token (or a GitLab integration's new CA \
                bundle) is checked against the instance first. Works beside a running server: its webhooks take the new \
                secret from the next delivery on; its calls to the platform use the new credentials within about a second.
                """)
        @OptionGroup var global: GlobalOptions
        @Option(help: "Workspace id or name.") var workspace: String
        @Argument(help: "The integration's id (int_…; `sentinel integration list`).") var integration: String
        @Option(help: "File holding the new webhook secret (then set the same on the GitHub App or GitLab webhook).") var webhookSecretFile: String?
        @Option(help: "A GitHub App's new private key (PEM file downloaded from GitHub).") var privateKeyFile: String?
        @Option(help: "File holding a GitLab integration's new access token (api scope).") var tokenFile: String?
        @Option(help: "PEM CA bundle to trust for the instance from now on.") var caFile: String?
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await oneLine {
                guard let id = IntegrationID(integration) else { throw CLIError("\(integration) is not an integration id (int_ and 16 letters or digits)") }
                guard [webhookSecretFile, privateKeyFile, tokenFile, caFile].contains(where: { $0 != nil }) else {
                    throw CLIError("nothing to change: give --webhook-secret-file, --private-key-file (GitHub), --token-file (GitLab) or --ca-file")
                }
                func read(_ path: String?, _ what: String) throws -> Data? { try path.map { try readInput($0, what: "\(what) file") } }
                var secret = try read(webhookSecretFile, "webhook secret")
                while let last = secret?.last, last == 0x0A || last == 0x0D { secret?.removeLast() }
                let credentials = IntegrationCredentials(
                    webhookSecret: secret, privateKeyPEM: try privateKeyFile.map { try readInputText($0, what: "private key file") },
                    // As `integration add` reads it: a file's last line break is no part of the token.
                    token: try tokenFile.map { try readInputText($0, what: "token file").trimmingCharacters(in: .whitespacesAndNewlines) },
                    caBundlePEM: try caFile.map { try readInputText($0, what: "CA file") })
                let destinations = try DestinationPolicy(try global.loadConfig().security)
                let summary = try await global.withWorkspace(workspace) { actor, control, _ in
                    let service = IntegrationService(control: control, masterKey: try MasterKey.load(at: global.dataDirectory.masterKeyFile))
                    return try await service.rotate(id, in: actor, credentials: credentials, by: "cli", destinations: destinations)
                }
                if json { try printJSON(summary) } else {
                    print("rotated \(credentials.fieldNames.joined(separator: ", ")) of \(summary.kind) integration \(summary.id)"
                          + (credentials.webhookSecret != nil ? "; set the same webhook secret on the \(summary.kind == "github" ? "GitHub App" : "GitLab webhook")" : ""))
                }
            }
        }
    }

    struct Test: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Test an integration's connection now: its API answers, accepts the credentials, agrees with this clock (exit 1: it does not).",
            discussion: "The checks of `sentinel doctor --online` for this integration alone, as the console's Test connection and the API's POST …/integrations/{id}/test make them.")
        @OptionGroup var global: GlobalOptions
        @Option(help: "Workspace id or name.") var workspace: String
        @Argument(help: "The integration's id (int_…; `sentinel integration list`).") var integration: String
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            guard let id = IntegrationID(integration) else { throw CLIError("\(integration) is not an integration id (int_ and 16 letters or digits)") }
            try await ConnectionTestCommand(global: global, workspace: workspace).run(json: json) { tester, actor, name in
                try await tester.integration(id, in: actor, workspaceName: name)
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove an integration: its webhooks answer 410, its repositories are marked removed, its secrets erased.",
            discussion: """
                The repositories' runs and history stay. Works beside a running server: its webhooks answer 410 within \
                about a second (a delivery accepted before then changes nothing). Uninstall the GitHub App or delete the GitLab \
                webhook on the platform too.
                """)
        @OptionGroup var global: GlobalOptions
        @Option(help: "Workspace id or name.") var workspace: String
        @Argument(help: "The integration's id (int_…; `sentinel integration list`).") var integration: String

        func run() async throws {
            try await oneLine {
                guard let id = IntegrationID(integration) else { throw CLIError("\(integration) is not an integration id (int_ and 16 letters or digits)") }
                try await global.withWorkspace(workspace) { actor, control, _ in
                    let service = IntegrationService(control: control, masterKey: try MasterKey.load(at: global.dataDirectory.masterKeyFile))
                    try await service.remove(id, from: actor, by: "cli")
                }
                print("removed integration \(id): its webhooks answer 410; its repositories are marked removed")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List a workspace's integrations (no secrets).")
        @OptionGroup var global: GlobalOptions
        @Option(help: "Workspace id or name.") var workspace: String
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await oneLine {
                let list = try await global.withWorkspace(workspace) { actor, control, _ in
                    try await IntegrationService(control: control, masterKey: try MasterKey.load(at: global.dataDirectory.masterKeyFile))
                        .list(in: actor)
                }
                if json { try printJSON(list) } else { for i in list { print("\(i.id)  \(i.kind)  \(i.apiURL)  \(i.webhookPath)") } }
            }
        }
    }
}
