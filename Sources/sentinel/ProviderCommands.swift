import ArgumentParser
import Foundation
import SentinelCore

struct ProviderCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "provider", abstract: "A workspace's AI providers (bring your own keys).",
                                                    subcommands: [Add.self, List.self, Rotate.self, Test.self, Enable.self, Disable.self, Priority.self, Delete.self, Budget.self])

    struct Target: ParsableArguments {
        @OptionGroup var global: GlobalOptions
        @Option(help: "Workspace id or name.") var workspace: String

        /// Runs `body` with the workspace open (closed afterwards) and its provider store.
        func withProviders<T>(_ body: (WorkspaceActor, ProviderStore) async throws -> T) async throws -> T {
            let masterKey = try MasterKey.load(at: global.dataDirectory.masterKeyFile)
            return try await global.withWorkspace(workspace) { actor, _, config in
                try await body(actor, ProviderStore(masterKey: masterKey, destinations: try DestinationPolicy(config.security)))
            }
        }
    }

    static func readKey(_ path: String?) throws -> String? {
        guard let path else { return nil }
        return try readInputText(path, what: "API key file").trimmingCharacters(in: .whitespacesAndNewlines)
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
        @Option(help: "Base URL (required for azure-openai and openai-compatible).") var baseURL: String?
        @Option(help: "Model name (a sensible default per kind).") var model: String?
        @Option(help: "Azure OpenAI deployment name.") var deployment: String?
        @Option(help: "Azure OpenAI api-version.") var apiVersion: String?
        @Option(help: "Lower runs first when policy sets no preference.") var priority = 100
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await oneLine {
                var base: URL?
                if let baseURL {
                    guard let url = WebAddress.parse(baseURL), url.scheme != nil else {
                        throw CLIError("--base-url is not an absolute URL (no spaces or characters outside ASCII)")
                    }
                    base = url
                }
                let key = try ProviderCommand.readKey(apiKeyFile)
                // Before the add: a price table that cannot be read fails the command with nothing added.
                let config = try target.global.loadConfig()
                let prices = try PriceTable.load(overridesFile: config.ai.priceTableFile)
                let summary = try await target.withProviders { actor, store in
                    try await store.add(kind: kind, apiKey: key, model: model, baseURL: base,
                                        apiVersion: apiVersion, deployment: deployment, priority: priority, by: "cli", in: actor)
                }
                try ProviderCommand.show(summary, json: json)
                // A model no price names is priced as its kind's dearest: said, with the fix.
                if !prices.names(kind: summary.kind, model: summary.model), let stand = prices.dearest(kind: summary.kind) {
                    FileHandle.standardError.write(Data(("note: no price names \(summary.kind) model \(summary.model): its calls are counted at the dearest "
                        + "\(summary.kind) model's prices (\(stand.pattern): $\(stand.price.inputPerMillion.plainDecimalText) in, $\(stand.price.outputPerMillion.plainDecimalText) out "
                        + "per million tokens) toward the AI budget and usage; add its prices to ai.price_table_file\n").utf8))
                }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List providers (keys shown only by their last 4 characters).")
        @OptionGroup var target: Target
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await oneLine {
                let list = try await target.withProviders { actor, store in try await store.list(in: actor) }
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
                let key = try ProviderCommand.readKey(apiKeyFile) ?? ""
                let summary = try await target.withProviders { actor, store in try await store.rotate(provider, apiKey: key, by: "cli", in: actor) }
                try ProviderCommand.show(summary, json: json)
            }
        }
    }

    struct Test: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Test a provider now, enabled or not: its models endpoint answers and accepts the key; no tokens are spent (exit 1: it does not).")
        @OptionGroup var target: Target
        @Argument(help: "Provider id.") var provider: String
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await ConnectionTestCommand(global: target.global, workspace: target.workspace).run(json: json) { tester, actor, name in
                try await tester.provider(provider, in: actor, workspaceName: name)
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

    struct Priority: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change the priority that orders a provider (0…10000, lower first).")
        @OptionGroup var target: Target
        @Argument(help: "Provider id.") var provider: String
        @Argument(help: "The new priority.") var priority: Int
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            try await oneLine {
                let summary = try await target.withProviders { actor, store in try await store.setPriority(provider, priority, by: "cli", in: actor) }
                try ProviderCommand.show(summary, json: json)
            }
        }
    }

    static func setEnabled(_ enabled: Bool, _ provider: String, _ target: Target) async throws {
        try await oneLine {
            let summary = try await target.withProviders { actor, store in try await store.setEnabled(provider, enabled, by: "cli", in: actor) }
            try show(summary, json: false)
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a provider and its key.")
        @OptionGroup var target: Target
        @Argument(help: "Provider id.") var provider: String
        func run() async throws {
            try await oneLine {
                try await target.withProviders { actor, store in try await store.delete(provider, by: "cli", in: actor) }
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

        func validate() throws {
            // Both at once removed the budget without a word about the amount given.
            if none && usd != nil { throw ValidationError("give --usd AMOUNT or --none, not both") }
        }

        func run() async throws {
            try await oneLine {
                let (budget, spent) = try await target.withProviders { actor, store in
                    if none { try await store.setMonthlyBudget(nil, by: "cli", in: actor) } else if let usd { try await store.setMonthlyBudget(usd, by: "cli", in: actor) }
                    return (try await store.monthlyBudget(in: actor), try await store.spentThisMonth(in: actor))
                }
                // As the API's `ai-budget` answers: numbers, `usd` left out when there is no budget.
                struct BudgetOutput: Encodable { let usd: Double?; let spentUsd: Double }
                if json { try printJSON(BudgetOutput(usd: budget, spentUsd: spent)) } else {
                    print("budget: \(budget.map { "\($0.plainDecimalText) USD/month" } ?? "none"); spent this month: \(spent.plainDecimalText) USD")
                }
            }
        }
    }
}

struct ReviewCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "review",
                                                    abstract: "Review a local diff with the workspace's providers (or the built-in checks only) and print the findings.")
    @Option(help: "Data directory (default: $SENTINEL_DATA_DIR or ./data).") var dataDir: String?
    @Option(help: "A unified diff (git diff output); - reads it from standard input.") var diff: String
    @Option(name: .customLong("config"), help: "A .sentinel.yml to apply on top of the workspace's settings.") var policyFile: String?
    @Option(help: "Workspace id or name whose AI providers and settings to use.") var workspace: String?
    @Option(help: "The appliance's YAML config, as given to serve's --config (default: DATA_DIR/sentinel.yaml if present): its spend limits, prices and outbound rules apply.")
    var applianceConfig: String?
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let conclusion = try await oneLine { () async throws -> CheckConclusion in
            // Bytes that are not UTF-8 (a file kept in another encoding) become U+FFFD rather than stopping the review.
            let files = try UnifiedDiff.parse(String(decoding: try readInput(diff, what: "diff"), as: UTF8.self))
            let fileText = try policyFile.map { path -> String in
                try readInputText(path, what: "config file")
            }
            /// The engine on the local diff with a policy and, optionally, a model and the workspace's
            /// spend limits.
            func review(_ resolved: PolicyService.Resolved, model: (any ReviewModel)?, skipped: String?, maxTokensPerRun: Int? = nil,
                        gate: (any ModelCallGate)? = nil) async -> ReviewResult {
                for d in resolved.diagnostics { FileHandle.standardError.write(Data((d.formatted + "\n").utf8)) }
                // As a pull request's review says under "Locked settings".
                for v in resolved.effective.violations {
                    FileHandle.standardError.write(Data("\(v.key) is locked by the \(v.lockedBy.rawValue) settings; the \(v.attemptedBy.rawValue) value was not applied\n".utf8))
                }
                var options = ReviewOptions(policy: resolved.policy)
                // As `serve` scopes them: a `--config` file's paths narrow the AI review, not the built-in checks.
                options.builtinScope = (resolved.settingsPolicy.include, resolved.settingsPolicy.exclude)
                options.aiSkippedReason = skipped
                options.maxTokensPerRun = maxTokensPerRun
                return await ReviewEngine.review(files: files, options: options, model: model, gate: gate)
            }
            let result: ReviewResult, conclusion: CheckConclusion
            if let workspace {
                let global = CLIContext(dataDir: dataDir, configFile: applianceConfig)
                (result, conclusion) = try await global.withWorkspace(workspace) { actor, control, config in
                    let resolved = try await actor.read { db in try PolicyService.resolve(in: db, repositoryID: nil, fileText: fileText) }
                    let plan = try global.billing(config, control).currentPlan(of: actor.id)
                    // Everything that can fail comes before the client, which must be shut down once made.
                    let destinations = try DestinationPolicy(config.security)
                    let store = ProviderStore(masterKey: try MasterKey.load(at: global.dataDirectory.masterKeyFile), destinations: destinations)
                    // Priced as `serve` prices them (`ai.price_table_file`): with the built-in table
                    // a model priced only in the file cost nothing, and the budget never held.
                    let prices = try PriceTable.load(overridesFile: config.ai.priceTableFile)
                    let client = try AsyncOutboundHTTPClient(destinations: destinations)
                    let resolver = WorkspaceModelResolver(store: store, http: client, prices: prices)
                    let (model, skipped) = await resolver.model(for: actor, policy: resolved.policy)
                    // The workspace pays for these calls: they are checked against its AI budget and
                    // plan and recorded as its usage, as a review run's are (without a run or repository).
                    let gate = RunSpendGuard(workspace: actor, owner: .localReview(id: RandomIdentifier.uuid()), plan: plan,
                                             cost: { call in await resolver.cost(of: call, in: actor) },
                                             estimate: { tokens in await resolver.estimatedCost(ofCallWith: tokens, in: actor) })
                    let result = await review(resolved, model: model, skipped: skipped, maxTokensPerRun: config.review.maxTokensPerRun, gate: gate)
                    await client.shutdown()
                    // Its tokens count toward the plan like a run's: past 80 % of a limit, told once.
                    _ = try await actor.write { tx in try PlanLimits.recordSoftLimits(plan: plan, startingRun: nil, in: &tx) }
                    return (result, ReviewRunner.conclusion(of: result, policy: resolved.policy, failedRunConclusion: config.review.failedRunConclusion))
                }
            } else {
                if applianceConfig != nil { throw CLIError("--appliance-config needs --workspace: without one, only the built-in checks run") }
                let resolved = try PolicyService.resolve(fileText: fileText)
                result = await review(resolved, model: nil, skipped: "no --workspace given: built-in checks only")
                conclusion = ReviewRunner.conclusion(of: result, policy: resolved.policy, failedRunConclusion: .failure)
            }
            if json {
                struct Output: Encodable {
                    let findings: [Finding]; let overLimit: [Finding]; let notOnChangedLines: [RawFinding]
                    let ai: String; let coverage: String; let summary: String; let conclusion: String
                }
                try printJSONWithSwiftNames(Output(findings: result.findings, overLimit: result.overLimit, notOnChangedLines: result.unanchored,
                                                   ai: result.aiStatus.description, coverage: result.coverage.sentence, summary: result.summary,
                                                   conclusion: conclusion.rawValue))
            } else {
                // Every finding the review reports, as a pull request's summary lists them: past
                // review.max_comments and not on a changed line too (they were left out, "0 finding(s)").
                func show(_ path: String, _ startLine: Int?, _ line: Int, _ severity: Severity, _ category: String, _ title: String, _ body: String,
                          _ note: String) {
                    let range = line == 0 ? "" : ":" + (startLine.map { "\($0)-\(line)" } ?? String(line))
                    print("\(path)\(range) [\(severity.rawValue)] \(category): \(title) (\(note))")
                    print("    " + body.replacingOccurrences(of: "\n", with: "\n    "))
                }
                for f in result.findings { show(f.path, f.startLine, f.line, f.severity, f.category, f.title, f.body, f.source.rawValue) }
                for f in result.overLimit {
                    show(f.path, f.startLine, f.line, f.severity, f.category, f.title, f.body, "\(f.source.rawValue), over review.max_comments")
                }
                for f in result.unanchored { show(f.path, f.startLine, f.line, f.severity, f.category, f.title, f.body, "ai, not on a changed line") }
                let total = result.findings.count + result.overLimit.count + result.unanchored.count
                print("\n\(result.coverage.sentence)\nAI review: \(result.aiStatus.description)\n\(total) finding(s)")
                print("Check: \(conclusion.rawValue)")
            }
            return conclusion
        }
        // As the pull request's check would conclude: a pre-push hook or a CI step stops on it.
        if conclusion == .failure { throw ExitCode(2) }
    }
}
