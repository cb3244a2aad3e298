import ArgumentParser
import Foundation
import SentinelCore

struct ProviderCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "provider", abstract: "A workspace's AI providers (bring your own keys).",
                                                    subcommands: [Add.self, List.self, Rotate.self, Enable.self, Disable.self, Delete.self, Budget.self])

    struct Target: ParsableArguments {
        @OptionGroup var global: GlobalOptions
        @Option(help: "Workspace id or name.") var workspace: String

        func open() throws -> (WorkspaceActor, ProviderStore) {
            let (actor, _, _) = try global.openWorkspace(workspace)
            return (actor, ProviderStore(masterKey: try MasterKey.load(at: global.dataDirectory.masterKeyFile)))
        }
    }

    static func readKey(_ path: String?) throws -> String? {
        guard let path else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else { throw CLIError("cannot read API key file \(path)") }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func show(_ p: ProviderSummary, json: Bool) throws {
        if json { try printJSON(p) } else {
            print("\(p.id)  \(p.kind)  model=\(p.model)  key=…\(p.keySuffix ?? "none")  \(p.enabled ? "enabled" : "disabled")  priority=\(p.priority)\(p.baseURL.map { "  \($0)" } ?? "")")
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add a provider; prints its id (never the key).")
        @OptionGroup var target: Target
        @Option(help: "openai | azure-openai | anthropic | gemini | openai-compatible") var kind: String
        @Option(help: "File holding the API key (optional for openai-compatible).") var apiKeyFile: String?
        @Option(help: "Base URL (required for azure-openai and openai-compatible).") var baseUrl: String?
        @Option(help: "Model name (a sensible default per kind).") var model: String?
        @Option(help: "Azure OpenAI deployment name.") var deployment: String?
        @Option(help: "Azure OpenAI api-version.") var apiVersion: String?
        @Option(help: "Lower runs first when policy sets no preference.") var priority = 100
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await oneLine {
                let (actor, store) = try target.open()
                do {
                    var base: URL?
                    if let baseUrl { guard let url = URL(string: baseUrl) else { throw CLIError("invalid --base-url") }; base = url }
                    let summary = try await store.add(kind: kind, apiKey: try ProviderCommand.readKey(apiKeyFile), model: model, baseURL: base,
                                                      apiVersion: apiVersion, deployment: deployment, priority: priority, by: "cli", in: actor)
                    try ProviderCommand.show(summary, json: json)
                } catch {
                    await actor.close()
                    throw error
                }
                await actor.close()
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List providers (keys shown only by their last 4 characters).")
        @OptionGroup var target: Target
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await oneLine {
                let (actor, store) = try target.open()
                let list = try await store.list(in: actor)
                await actor.close()
                if json { try printJSON(list) } else {
                    for p in list { try ProviderCommand.show(p, json: false) }
                    if list.isEmpty { print("no AI providers: reviews use the built-in checks only") }
                }
            }
        }
    }

    struct Rotate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Replace a provider's API key.")
        @OptionGroup var target: Target
        @Argument(help: "Provider id.") var provider: String
        @Option(help: "File holding the new API key.") var apiKeyFile: String
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await oneLine {
                let (actor, store) = try target.open()
                let summary = try await store.rotate(provider, apiKey: try ProviderCommand.readKey(apiKeyFile) ?? "", by: "cli", in: actor)
                await actor.close()
                try ProviderCommand.show(summary, json: json)
            }
        }
    }

    struct Enable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Enable a provider.")
        @OptionGroup var target: Target
        @Argument(help: "Provider id.") var provider: String
        func run() async throws { try await ProviderCommand.setEnabled(true, provider, target) }
    }

    struct Disable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Disable a provider (kept, never used).")
        @OptionGroup var target: Target
        @Argument(help: "Provider id.") var provider: String
        func run() async throws { try await ProviderCommand.setEnabled(false, provider, target) }
    }

    static func setEnabled(_ enabled: Bool, _ provider: String, _ target: Target) async throws {
        try await oneLine {
            let (actor, store) = try target.open()
            do {
                let summary = try await store.setEnabled(provider, enabled, by: "cli", in: actor)
                await actor.close()
                try show(summary, json: false)
            } catch {
                await actor.close()
                throw error
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a provider and its key.")
        @OptionGroup var target: Target
        @Argument(help: "Provider id.") var provider: String
        func run() async throws {
            try await oneLine {
                let (actor, store) = try target.open()
                try await store.delete(provider, by: "cli", in: actor)
                await actor.close()
                print("deleted \(provider)")
            }
        }
    }
}

extension ProviderCommand {
    struct Budget: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show or set the workspace's monthly AI budget (USD); AI calls stop when it is spent.")
        @OptionGroup var target: Target
        @Option(help: "Set the budget in USD per calendar month (UTC).") var usd: Double?
        @Flag(help: "Remove the budget (no limit).") var none = false
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await oneLine {
                let (actor, store) = try target.open()
                if none { try await store.setMonthlyBudget(nil, by: "cli", in: actor) } else if let usd { try await store.setMonthlyBudget(usd, by: "cli", in: actor) }
                let budget = try await store.monthlyBudget(in: actor)
                let spent = try await store.spentThisMonth(in: actor)
                await actor.close()
                if json { try printJSON(["budget_usd": budget.map { String($0) } ?? "none", "spent_usd": String(format: "%.6f", spent)]) } else {
                    print("budget: \(budget.map { String(format: "%.2f USD/month", $0) } ?? "none"); spent this month: \(String(format: "%.4f", spent)) USD")
                }
            }
        }
    }
}

struct ReviewCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "review",
                                                    abstract: "Review a local diff with the workspace's providers (or the built-in checks only) and print the findings.")
    @Option(help: "Data directory (default: $SENTINEL_DATA_DIR or ./data).") var dataDir: String?
    @Option(help: "A unified diff (git diff output).") var diff: String
    @Option(name: .customLong("config"), help: "A .sentinel.yml to apply on top of the workspace's settings.") var policyFile: String?
    @Option(help: "Workspace id or name whose AI providers and settings to use.") var workspace: String?
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        try await oneLine {
            guard let text = try? String(contentsOfFile: diff, encoding: .utf8) else { throw CLIError("cannot read \(diff)") }
            let files = try UnifiedDiff.parse(text)
            let fileText = try policyFile.map { path -> String in
                guard let t = try? String(contentsOfFile: path, encoding: .utf8) else { throw CLIError("cannot read \(path)") }
                return t
            }
            var model: (any ReviewModel)?
            var skipped: String? = "no --workspace given: built-in checks only"
            let resolved: PolicyService.Resolved
            var http: AsyncOutboundHTTPClient?
            var actor: WorkspaceActor?
            if let workspace {
                let global = CLIContext(dataDir: dataDir, configFile: nil)
                let (opened, _, config) = try global.openWorkspace(workspace)
                actor = opened
                resolved = try await opened.read { db in try PolicyService.resolve(in: db, repositoryID: nil, fileText: fileText) }
                let client = try AsyncOutboundHTTPClient(destinations: DestinationPolicy(config.security))
                http = client
                let resolver = WorkspaceModelResolver(store: ProviderStore(masterKey: try MasterKey.load(at: global.dataDirectory.masterKeyFile)), http: client)
                (model, skipped) = await resolver.model(for: opened, policy: resolved.policy)
            } else {
                resolved = try PolicyService.resolve(fileText: fileText)
            }
            for d in resolved.diagnostics { FileHandle.standardError.write(Data((d.formatted + "\n").utf8)) }
            let policy = resolved.policy
            var options = ReviewOptions(include: policy.include, exclude: policy.exclude, instructions: policy.instructions.isEmpty ? nil : policy.instructions,
                                        pathInstructions: policy.pathInstructions, language: policy.language, minSeverity: policy.minSeverity,
                                        maxComments: policy.maxComments, builtinChecks: policy.builtinChecks)
            options.aiSkippedReason = skipped
            let result = await ReviewEngine.review(files: files, options: options, model: model)
            await http?.shutdown()
            await actor?.close()
            if json {
                struct Output: Encodable { let findings: [Finding]; let ai: String; let coverage: String; let summary: String }
                try printJSON(Output(findings: result.findings, ai: result.aiStatus.description, coverage: result.coverage.sentence, summary: result.summary))
            } else {
                for f in result.findings {
                    let range = f.startLine.map { "\($0)-\(f.line)" } ?? String(f.line)
                    print("\(f.path):\(range) [\(f.severity.rawValue)] \(f.category): \(f.title) (\(f.source.rawValue))")
                    print("    " + f.body.replacingOccurrences(of: "\n", with: "\n    "))
                }
                print("\n\(result.coverage.sentence)\nAI review: \(result.aiStatus.description)\n\(result.findings.count) finding(s)")
            }
        }
    }
}
