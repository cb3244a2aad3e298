import ArgumentParser
import Foundation
import SentinelCore

struct IntegrationCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "integration", abstract: "Connect source-control platforms to a workspace.",
                                                    subcommands: [Add.self, List.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add an integration.", subcommands: [GitHub.self])
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
                func read(_ path: String, _ what: String) throws -> Data {
                    guard let data = FileManager.default.contents(atPath: path) else { throw CLIError("cannot read \(what) file \(path)") }
                    return data
                }
                let pem = String(decoding: try read(privateKeyFile, "private key"), as: UTF8.self)
                var secret = try read(webhookSecretFile, "webhook secret")
                while let last = secret.last, last == 0x0A || last == 0x0D { secret.removeLast() }
                let ca = try caFile.map { String(decoding: try read($0, "CA"), as: UTF8.self) }
                guard let api = URL(string: apiURL ?? IntegrationService.defaultGitHubAPI.absoluteString) else { throw CLIError("invalid --api-url") }
                let summary = try await global.withWorkspace(workspace) { actor, control, _ in
                    let service = IntegrationService(control: control, masterKey: try MasterKey.load(at: global.dataDirectory.masterKeyFile))
                    return try await service.addGitHub(workspace: actor, appID: appID, privateKeyPEM: pem, webhookSecret: secret,
                                                       apiURL: api, caBundlePEM: ca, botLogin: botLogin)
                }
                if json { try printJSON(summary) } else {
                    print("added GitHub integration \(summary.id); point the App's webhook URL at https://YOUR-HOST\(summary.webhookPath)")
                }
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
