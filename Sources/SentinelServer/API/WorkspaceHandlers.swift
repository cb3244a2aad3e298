import Foundation
import GRDB
import SentinelCore

/// Workspaces, their plan, members, teams and audit trail.
struct WorkspaceHandlers: Sendable {
    let d: APIDependencies

    static let auditTypes = [
        "MemberAdded", "MemberRoleChanged", "MemberRemoved", "TeamCreated", "TeamDeleted", "TeamMemberAdded", "TeamMemberRemoved",
        "IntegrationAdded", "IntegrationRemoved", "ProviderAdded", "ProviderKeyRotated", "ProviderEnabled", "ProviderDisabled", "ProviderDeleted",
        "RepositoryEnabled", "RepositoryDisabled", "RepositoryNotEnabled", "PolicyVersionCreated", "AIBudgetChanged",
        "PlanSoftLimitReached", "RunCancelled", "RunRequested",
        "NotificationChannelAdded", "NotificationChannelRemoved", "NotificationChannelTested",
    ]

    static func workspace(_ record: WorkspaceRecord, role: WorkspaceRole) -> Components.Schemas.Workspace {
        .init(createdAt: Date(epoch: record.createdAt), id: record.id, name: record.name, plan: record.plan, role: .init(role))
    }

    static func team(_ team: Team) -> Components.Schemas.Team {
        .init(createdAt: team.createdAt, id: Int(team.id), members: team.members, name: team.name)
    }

    static func membership(_ membership: Membership) -> Components.Schemas.Membership {
        .init(email: membership.email, role: .init(membership.role), userId: membership.userID, workspaceId: membership.workspaceID)
    }

    func listWorkspaces(_ input: Operations.ListWorkspaces.Input, _ context: UserContext) async throws -> Operations.ListWorkspaces.Output {
        let items = try d.identity.memberships(of: context.user.id).map { Self.workspace($0.0, role: $0.1) }
        return .ok(.init(body: .json(.init(items: items))))
    }

    func createWorkspace(_ input: Operations.CreateWorkspace.Input, _ context: UserContext) async throws -> Operations.CreateWorkspace.Output {
        guard case .json(let body) = input.body else { throw Problem(status: .badRequest, detail: "a JSON body is required") }
        var owner = context.user
        if let email = body.ownerEmail {
            guard let found = try d.identity.user(email: email) else { throw IdentityError(.notFound, "no user with email \(email)") }
            owner = found
        }
        let record = try d.workspaces.create(name: body.name)
        guard let id = record.workspaceID else { throw StorageError.invalid("the new workspace has a malformed id \(record.id)") }
        try d.identity.setRole(.owner, userID: owner.id, in: id)
        return .created(.init(body: .json(Self.workspace(record, role: .owner))))
    }

    func setWorkspacePlan(_ input: Operations.SetWorkspacePlan.Input, _ context: UserContext) async throws -> Operations.SetWorkspacePlan.Output {
        guard case .json(let body) = input.body else { throw Problem(status: .badRequest, detail: "a JSON body is required") }
        guard let id = WorkspaceID(input.path.workspaceId), try d.control.workspace(id) != nil else {
            throw Problem(status: .notFound, detail: "no such workspace")
        }
        try BuiltinBillingProvider(control: d.control, catalog: d.catalog).assign(body.plan, to: id)
        guard let record = try d.control.workspace(id) else { throw Problem(status: .notFound, detail: "no such workspace") }
        let role = try d.identity.role(of: context.user.id, in: id) ?? .viewer
        return .ok(.init(body: .json(Self.workspace(record, role: role))))
    }

    func renameWorkspace(_ input: Operations.RenameWorkspace.Input, _ context: UserContext) async throws -> Operations.RenameWorkspace.Output {
        guard case .json(let body) = input.body else { throw Problem(status: .badRequest, detail: "a JSON body is required") }
        guard let id = WorkspaceID(input.path.workspaceId), try d.control.workspace(id) != nil else {
            throw Problem(status: .notFound, detail: "no such workspace")
        }
        let record = try d.workspaces.rename(id, to: body.name, by: context.actorName)
        let role = try d.identity.role(of: context.user.id, in: id) ?? .viewer
        return .ok(.init(body: .json(Self.workspace(record, role: role))))
    }

    /// Deleting needs the workspace named twice: in the path and in `confirm` (its id or its name).
    func deleteWorkspace(_ input: Operations.DeleteWorkspace.Input, _ context: UserContext) async throws -> Operations.DeleteWorkspace.Output {
        guard let id = WorkspaceID(input.path.workspaceId), let record = try d.control.workspace(id) else {
            throw Problem(status: .notFound, detail: "no such workspace")
        }
        guard input.query.confirm == record.id || input.query.confirm == record.name else {
            throw Problem(status: .badRequest, detail: "confirm: must repeat the workspace's id or name (\(record.name))")
        }
        _ = try await d.supervisor.deleteWorkspace(id, using: d.workspaces, by: context.actorName)
        return .noContent(.init())
    }

    func getWorkspace(_ input: Operations.GetWorkspace.Input, _ context: WorkspaceContext) async throws -> Operations.GetWorkspace.Output {
        guard let record = try d.control.workspace(context.workspaceID) else { throw Problem(status: .notFound, detail: "no such workspace") }
        return .ok(.init(body: .json(Self.workspace(record, role: context.role))))
    }

    // MARK: Members

    func listMembers(_ input: Operations.ListMembers.Input, _ context: WorkspaceContext) async throws -> Operations.ListMembers.Output {
        .ok(.init(body: .json(.init(items: try d.identity.members(of: context.workspaceID).map(Self.membership)))))
    }

    func addMember(_ input: Operations.AddMember.Input, _ context: WorkspaceContext) async throws -> Operations.AddMember.Output {
        guard case .json(let body) = input.body else { throw Problem(status: .badRequest, detail: "a JSON body is required") }
        let role = WorkspaceRole(body.role)
        try Self.requireOwner(for: role, context)
        guard let user = try d.identity.user(email: body.email) else { throw IdentityError(.notFound, "no user with email \(body.email)") }
        if try d.identity.role(of: user.id, in: context.workspaceID) != nil {
            throw IdentityError(.conflict, "\(user.email) is already a member; change the role with PATCH")
        }
        let plan = try await d.billing.plan(for: context.workspaceID)
        try d.identity.setRole(role, userID: user.id, in: context.workspaceID, seatLimit: plan)
        try await Self.audit(context, "MemberAdded", "user:\(user.id)", ["email": user.email, "role": role.rawValue, "by": context.actorName])
        return .created(.init(body: .json(Self.membership(Membership(workspaceID: context.workspaceID.rawValue, userID: user.id,
                                                                        email: user.email, role: role)))))
    }

    func updateMember(_ input: Operations.UpdateMember.Input, _ context: WorkspaceContext) async throws -> Operations.UpdateMember.Output {
        guard case .json(let body) = input.body else { throw Problem(status: .badRequest, detail: "a JSON body is required") }
        let (role, userID) = (WorkspaceRole(body.role), input.path.userId)
        guard let current = try d.identity.role(of: userID, in: context.workspaceID), let user = try d.identity.user(id: userID) else {
            throw IdentityError(.notFound, "no such member")
        }
        try Self.requireOwner(for: max(current, role), context)
        try d.identity.setRole(role, userID: userID, in: context.workspaceID)
        try await Self.audit(context, "MemberRoleChanged", "user:\(userID)",
                             ["email": user.email, "from": current.rawValue, "role": role.rawValue, "by": context.actorName])
        return .ok(.init(body: .json(Self.membership(Membership(workspaceID: context.workspaceID.rawValue, userID: userID, email: user.email,
                                                                   role: role)))))
    }

    func removeMember(_ input: Operations.RemoveMember.Input, _ context: WorkspaceContext) async throws -> Operations.RemoveMember.Output {
        let userID = input.path.userId
        guard let current = try d.identity.role(of: userID, in: context.workspaceID) else { throw IdentityError(.notFound, "no such member") }
        try Self.requireOwner(for: current, context)
        try d.identity.removeMember(userID: userID, from: context.workspaceID)
        try await context.workspace.write { tx in try TeamStore.removeFromAllTeams(userID, in: tx.db) }
        try await Self.audit(context, "MemberRemoved", "user:\(userID)", ["role": current.rawValue, "by": context.actorName])
        return .noContent(.init())
    }

    // MARK: Teams

    func listTeams(_ input: Operations.ListTeams.Input, _ context: WorkspaceContext) async throws -> Operations.ListTeams.Output {
        let teams = try await context.workspace.read { db in try TeamStore.list(in: db) }
        return .ok(.init(body: .json(.init(items: teams.map(Self.team)))))
    }

    func createTeam(_ input: Operations.CreateTeam.Input, _ context: WorkspaceContext) async throws -> Operations.CreateTeam.Output {
        guard case .json(let body) = input.body else { throw Problem(status: .badRequest, detail: "a JSON body is required") }
        let (name, by) = (body.name, context.actorName)
        let team = try await context.workspace.write { tx in try TeamStore.create(name: name, by: by, in: &tx) }
        return .created(.init(body: .json(Self.team(team))))
    }

    func deleteTeam(_ input: Operations.DeleteTeam.Input, _ context: WorkspaceContext) async throws -> Operations.DeleteTeam.Output {
        let (team, by) = (try PathID.parse(input.path.teamId, what: "team"), context.actorName)
        try await context.workspace.write { tx in try TeamStore.delete(team, by: by, in: &tx) }
        return .noContent(.init())
    }

    func addTeamMember(_ input: Operations.AddTeamMember.Input, _ context: WorkspaceContext) async throws -> Operations.AddTeamMember.Output {
        let (team, userID, by) = (try PathID.parse(input.path.teamId, what: "team"), input.path.userId, context.actorName)
        guard try d.identity.role(of: userID, in: context.workspaceID) != nil else { throw IdentityError(.notFound, "no such member") }
        let updated = try await context.workspace.write { tx in try TeamStore.addMember(userID, to: team, by: by, in: &tx) }
        return .ok(.init(body: .json(Self.team(updated))))
    }

    func removeTeamMember(_ input: Operations.RemoveTeamMember.Input, _ context: WorkspaceContext) async throws
        -> Operations.RemoveTeamMember.Output {
        let (team, userID, by) = (try PathID.parse(input.path.teamId, what: "team"), input.path.userId, context.actorName)
        try await context.workspace.write { tx in try TeamStore.removeMember(userID, from: team, by: by, in: &tx) }
        return .noContent(.init())
    }

    // MARK: Audit

    func listAuditEvents(_ input: Operations.ListAuditEvents.Input, _ context: WorkspaceContext) async throws
        -> Operations.ListAuditEvents.Output {
        let window = PageWindow(input.query.limit)
        let after = Int64(input.query.cursor ?? "") ?? 0
        let events = try await context.workspace.read { db in
            try EventLog.read(after: after, limit: window.limit + 1, types: Self.auditTypes, in: db)
        }
        let items = try window.items(events).map { event in
            Components.Schemas.AuditEvent(data: try .converted(from: JSONValue(text: event.data) ?? .object([:])), id: event.id,
                                          occurredAt: event.occurredAt, seq: Int(event.seq), subject: event.subject, _type: event.type)
        }
        return .ok(.init(body: .json(.init(items: items, nextCursor: window.nextCursor(events) { String($0.seq) }))))
    }

    /// Granting, changing or removing the owner role takes an owner.
    static func requireOwner(for role: WorkspaceRole, _ context: WorkspaceContext) throws {
        if role == .owner, context.role != .owner { throw Problem(status: .forbidden, detail: "only owners can grant, change or remove the owner role") }
    }

    static func audit(_ context: WorkspaceContext, _ type: String, _ subject: String, _ payload: [String: String]) async throws {
        try await context.workspace.write { tx in try tx.append(DomainEvent(type: type, subject: subject, payload: payload)) }
    }
}

/// Integer ids in paths: anything else names a resource that cannot exist (404).
enum PathID {
    static func parse(_ raw: String, what: String) throws -> Int64 {
        guard let value = Int64(raw), value > 0 else { throw Problem(status: .notFound, detail: "no such \(what)") }
        return value
    }
}
