import Foundation
import GRDB
import SentinelCore

/// Workspaces, their plan, members, teams and audit trail.
struct WorkspaceHandlers: Sendable {
    let d: APIDependencies

    /// A workspace as the API shows it, with the caller's role in it (nil: not a member).
    static func workspace(_ record: WorkspaceRecord, role: WorkspaceRole?) -> Components.Schemas.Workspace {
        .init(createdAt: Date(epoch: record.createdAt), id: record.id, name: record.name, plan: record.plan, role: role.map { .init($0) })
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
        let (record, id, _) = try d.workspaces.create(name: body.name, ownerEmail: body.ownerEmail, creator: context.user, identity: d.identity)
        return .created(.init(body: .json(Self.workspace(record, role: try d.identity.role(of: context.user.id, in: id)))))
    }

    func setWorkspacePlan(_ input: Operations.SetWorkspacePlan.Input, _ context: UserContext) async throws -> Operations.SetWorkspacePlan.Output {
        guard case .json(let body) = input.body else { throw Problem(status: .badRequest, detail: "a JSON body is required") }
        guard let id = WorkspaceID(input.path.workspaceId), try d.control.workspace(id) != nil else {
            throw Problem(status: .notFound, detail: "no such workspace")
        }
        try BuiltinBillingProvider(control: d.control, catalog: d.catalog).assign(body.plan, to: id, by: context.actorName)
        guard let record = try d.control.workspace(id) else { throw Problem(status: .notFound, detail: "no such workspace") }
        return .ok(.init(body: .json(Self.workspace(record, role: try d.identity.role(of: context.user.id, in: id)))))
    }

    func renameWorkspace(_ input: Operations.RenameWorkspace.Input, _ context: UserContext) async throws -> Operations.RenameWorkspace.Output {
        guard case .json(let body) = input.body else { throw Problem(status: .badRequest, detail: "a JSON body is required") }
        guard let id = WorkspaceID(input.path.workspaceId), try d.control.workspace(id) != nil else {
            throw Problem(status: .notFound, detail: "no such workspace")
        }
        let record = try d.workspaces.rename(id, to: body.name, by: context.actorName)
        return .ok(.init(body: .json(Self.workspace(record, role: try d.identity.role(of: context.user.id, in: id)))))
    }

    /// Deleting needs the workspace named twice: in the path and in `confirm` (its id or its name).
    func deleteWorkspace(_ input: Operations.DeleteWorkspace.Input, _ context: UserContext) async throws -> Operations.DeleteWorkspace.Output {
        guard let id = WorkspaceID(input.path.workspaceId), let record = try d.control.workspace(id) else {
            throw Problem(status: .notFound, detail: "no such workspace")
        }
        guard input.query.confirm == record.id || input.query.confirm == record.name else {
            throw Problem(status: .badRequest, detail: "confirm: must repeat the workspace's id or name (\(record.name))")
        }
        try? await d.supervisor.withWorkspace(id) { workspace in await d.reviews.concludeChecksBeforeDeletion(of: workspace, logger: d.logger) }
        _ = try await d.supervisor.deleteWorkspace(id, using: d.workspaces, by: context.actorName)
        // Its final backup took what the intake journal held for it; nothing of it stays there.
        try await d.journal.discard(id)
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

    func members(_ context: WorkspaceContext) -> WorkspaceMembers {
        WorkspaceMembers(identity: d.identity, workspaceID: context.workspaceID, workspace: context.workspace, actorRole: context.role,
                         actorName: context.actorName)
    }

    func addMember(_ input: Operations.AddMember.Input, _ context: WorkspaceContext) async throws -> Operations.AddMember.Output {
        guard case .json(let body) = input.body else { throw Problem(status: .badRequest, detail: "a JSON body is required") }
        let plan = try await d.billing.plan(for: context.workspaceID)
        let added = try await members(context).add(email: body.email, role: WorkspaceRole(body.role), seatLimit: plan)
        return .created(.init(body: .json(Self.membership(added))))
    }

    func updateMember(_ input: Operations.UpdateMember.Input, _ context: WorkspaceContext) async throws -> Operations.UpdateMember.Output {
        guard case .json(let body) = input.body else { throw Problem(status: .badRequest, detail: "a JSON body is required") }
        let changed = try await members(context).changeRole(userID: input.path.userId, to: WorkspaceRole(body.role))
        return .ok(.init(body: .json(Self.membership(changed))))
    }

    func removeMember(_ input: Operations.RemoveMember.Input, _ context: WorkspaceContext) async throws -> Operations.RemoveMember.Output {
        try await members(context).remove(userID: input.path.userId)
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
        let team = try PathID.parse(input.path.teamId, what: "team")
        return .ok(.init(body: .json(Self.team(try await members(context).addToTeam(userID: input.path.userId, team: team)))))
    }

    func removeTeamMember(_ input: Operations.RemoveTeamMember.Input, _ context: WorkspaceContext) async throws
        -> Operations.RemoveTeamMember.Output {
        let team = try PathID.parse(input.path.teamId, what: "team")
        try await members(context).removeFromTeam(userID: input.path.userId, team: team)
        return .noContent(.init())
    }

    // MARK: Audit

    func listAuditEvents(_ input: Operations.ListAuditEvents.Input, _ context: WorkspaceContext) async throws
        -> Operations.ListAuditEvents.Output {
        let window = PageWindow(input.query.limit)
        let after = try PageWindow.position(input.query.cursor, start: 0)
        let events = try await context.workspace.read { db in
            try EventLog.read(after: after, limit: window.limit + 1, types: EventLog.auditTypes, in: db)
        }
        let items = try window.items(events).map { event in
            let data = JSONValue(text: event.data) ?? .object([:])
            let by: String? = if case .object(let fields) = data, case .string(let name)? = fields["by"] { name } else { nil }
            return Components.Schemas.AuditEvent(by: by, data: try .converted(from: data), id: event.id,
                                                 occurredAt: event.occurredAt, seq: Int(event.seq), subject: event.subject, _type: event.type)
        }
        return .ok(.init(body: .json(.init(items: items, nextCursor: window.nextCursor(events) { String($0.seq) }))))
    }
}

/// Integer ids in paths: anything else names a resource that cannot exist (404).
enum PathID {
    static func parse(_ raw: String, what: String) throws -> Int64 {
        guard let value = Int64(raw), value > 0 else { throw Problem(status: .notFound, detail: "no such \(what)") }
        return value
    }
}
