import ArgumentParser
import Foundation
import SentinelCore

extension CLIContext {
    /// The plans `serve` would use: built-in, `billing.plans_file`, raised by `billing.license_file`.
    func loadCatalog(_ config: SentinelConfig) throws -> PlanCatalog {
        do {
            return try PlanCatalog.load(plansFile: config.billing.plansFile, licenseFile: config.billing.licenseFile)
        } catch let error as ConfigError {
            throw CLIError(error.description)
        }
    }

    func billing(_ config: SentinelConfig, _ control: ControlStore) throws -> BuiltinBillingProvider {
        BuiltinBillingProvider(control: control, catalog: try loadCatalog(config))
    }
}

extension GlobalOptions {
    func loadCatalog(_ config: SentinelConfig) throws -> PlanCatalog { try context.loadCatalog(config) }
    func billing(_ config: SentinelConfig, _ control: ControlStore) throws -> BuiltinBillingProvider { try context.billing(config, control) }
}

struct PlanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "plan", abstract: "Plans and their limits; assign one to a workspace.",
                                                    subcommands: [List.self, Set.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The appliance's plans (built-in, billing.plans_file, license).")
        @OptionGroup var global: GlobalOptions
        @Flag(help: "Print JSON.") var json = false
        func run() async throws {
            try await oneLine {
                let catalog = try global.loadCatalog(try global.loadConfig())
                let plans = catalog.plans.values.sorted { $0.name < $1.name }
                if json { try printJSON(plans) } else {
                    func show(_ v: Int?) -> String { v.map(String.init) ?? "unlimited" }
                    for p in plans {
                        print("\(p.name): reviews/month \(show(p.reviewsPerMonth)), tokens/month \(show(p.tokensPerMonth)), repositories \(show(p.repositories)), seats \(show(p.seats))")
                    }
                    print("license: \(catalog.licenseStatus)")
                }
            }
        }
    }

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Assign a plan to a workspace (appliance admins).")
        @OptionGroup var global: GlobalOptions
        @Option(help: "Workspace id or name.") var workspace: String
        @Argument(help: "Plan name (see `sentinel plan list`).") var plan: String

        func run() async throws {
            try await oneLine {
                let config = try global.loadConfig()
                let (control, opener) = try global.openControl(config)
                let record = try WorkspaceService(dataDirectory: global.dataDirectory, control: control, opener: opener).find(workspace)
                guard let id = record.workspaceID else { throw CLIError("invalid workspace id in control.sqlite") }
                try global.billing(config, control).assign(plan, to: id)
                print("workspace \(id) is on the \(plan) plan")
            }
        }
    }
}

struct RepoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "repo", abstract: "A workspace's repositories: list, enable, disable.",
                                                    subcommands: [List.self, Enable.self, Disable.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Repositories the workspace's integrations have registered.")
        @OptionGroup var global: GlobalOptions
        @Option(help: "Workspace id or name.") var workspace: String
        @Flag(help: "Print JSON.") var json = false
        func run() async throws {
            try await oneLine {
                let repos = try await global.withWorkspace(workspace) { actor, _, _ in try await actor.read { db in try RepositoryStore.all(in: db) } }
                if json { try printJSONWithSwiftNames(repos) } else {
                    for r in repos {
                        print("\(r.fullName)  \(r.removed ? "removed" : r.enabled ? "enabled" : "disabled")  id \(r.id)")
                    }
                }
            }
        }
    }

    struct Enable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Enable reviews of a repository (refused over the plan's repository limit).")
        @OptionGroup var global: GlobalOptions
        @Option(help: "Workspace id or name.") var workspace: String
        @Argument(help: "OWNER/NAME, or the id `repo list` shows (two repositories of one name are told apart by id)") var repository: String
        func run() async throws { try await setEnabled(true, global: global, workspace: workspace, repository: repository) }
    }

    struct Disable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop reviewing a repository (its webhooks are still accepted and recorded).")
        @OptionGroup var global: GlobalOptions
        @Option(help: "Workspace id or name.") var workspace: String
        @Argument(help: "OWNER/NAME, or the id `repo list` shows (two repositories of one name are told apart by id)") var repository: String
        func run() async throws { try await setEnabled(false, global: global, workspace: workspace, repository: repository) }
    }

    static func setEnabled(_ enabled: Bool, global: GlobalOptions, workspace: String, repository: String) async throws {
        try await oneLine {
            let changed = try await global.withWorkspace(workspace) { actor, control, config in
                let plan = try global.billing(config, control).currentPlan(of: actor.id)
                return try await actor.write { tx in try RepositoryStore.setEnabled(enabled, fullName: repository, plan: plan, by: "cli", in: &tx) }
            }
            print("\(changed.fullName) (id \(changed.id)) \(enabled ? "enabled" : "disabled")")
        }
    }
}
