import ArgumentParser
import Foundation
import SentinelCore

struct PlanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "plan", abstract: "Plans and their limits; assign one to a workspace.",
                                                    subcommands: [List.self, Set.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The built-in plans.")
        @Flag(help: "Print JSON.") var json = false
        func run() async throws {
            let plans = Plan.builtIn.values.sorted { $0.name < $1.name }
            if json { try printJSON(plans) } else {
                func show(_ v: Int?) -> String { v.map(String.init) ?? "unlimited" }
                for p in plans {
                    print("\(p.name): reviews/month \(show(p.reviewsPerMonth)), tokens/month \(show(p.tokensPerMonth)), repositories \(show(p.repositories)), seats \(show(p.seats))")
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
                try BuiltinBillingProvider(control: control).assign(plan, to: id)
                print("workspace \(id) is on the \(plan) plan")
            }
        }
    }
}
