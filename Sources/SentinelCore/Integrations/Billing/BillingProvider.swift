import Foundation
import GRDB

/// Where plans come from: the integration point for a billing system. The built-in provider reads
/// the workspace's plan name from control.sqlite and the plan catalog (config + license).
public protocol BillingProvider: Sendable {
    func plan(for workspace: WorkspaceID) async throws -> Plan
}

public struct BuiltinBillingProvider: BillingProvider {
    let control: ControlStore
    public let catalog: PlanCatalog

    public init(control: ControlStore, catalog: PlanCatalog = PlanCatalog()) {
        self.control = control
        self.catalog = catalog
    }

    public func plan(for workspace: WorkspaceID) async throws -> Plan {
        try currentPlan(of: workspace)
    }

    /// A workspace whose plan was removed from the configuration falls back to `free`.
    public func currentPlan(of workspace: WorkspaceID) throws -> Plan {
        let name = try control.workspace(workspace)?.plan ?? PlanCatalog.defaultPlan
        return catalog.plan(named: name) ?? catalog.plan(named: PlanCatalog.defaultPlan) ?? Plan.builtIn[PlanCatalog.defaultPlan]!
    }

    /// Assigns a plan (appliance admins).
    /// Puts a workspace on a plan (audited `WorkspacePlanChanged`, from and to, by `actor`, when it changes).
    public func assign(_ name: String, to workspace: WorkspaceID, by actor: String = "cli") throws {
        guard catalog.plan(named: name) != nil else {
            throw StorageError.invalid("unknown plan '\(name)' (one of \(catalog.plans.keys.sorted().joined(separator: ", ")))")
        }
        guard try control.workspace(workspace) != nil else { throw WorkspaceError.notFound(workspace.rawValue) }
        try control.write { db in
            let before = try String.fetchOne(db, sql: "SELECT plan FROM workspaces WHERE id = ?", arguments: [workspace.rawValue])
            guard before != name else { return }
            try db.execute(sql: "UPDATE workspaces SET plan = ? WHERE id = ?", arguments: [name, workspace.rawValue])
            try AuditLog.append("WorkspacePlanChanged", actor: actor, subject: "workspace:\(workspace)",
                                data: ["from": before ?? "", "to": name], in: db)
        }
    }
}
