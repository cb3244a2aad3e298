import Foundation
import GRDB

/// Changes to who belongs to a workspace, made by one of its members: the rules the API and the web
/// console share. Owners grant, change and remove every role; others may not touch the owner role.
/// Each change appends its audit event (`MemberAdded`, `MemberRoleChanged`, `MemberRemoved`,
/// `TeamMemberAdded`, with `by`) to the workspace's log. A change applies only to the membership as
/// the rules saw it (`IdentityService.MembershipExpectation`): one made meanwhile is a 409.
public struct WorkspaceMembers: Sendable {
    public let identity: IdentityService
    public let workspaceID: WorkspaceID
    public let workspace: WorkspaceActor
    /// The acting member's role in the workspace and the name audit events carry.
    public let actorRole: WorkspaceRole
    public let actorName: String

    public init(identity: IdentityService, workspaceID: WorkspaceID, workspace: WorkspaceActor, actorRole: WorkspaceRole, actorName: String) {
        (self.identity, self.workspaceID, self.workspace, self.actorRole, self.actorName) = (identity, workspaceID, workspace, actorRole, actorName)
    }

    /// Granting, changing or removing the owner role takes an owner.
    public static func requireOwner(for role: WorkspaceRole, actorRole: WorkspaceRole) throws {
        if role == .owner, actorRole != .owner { throw IdentityError(.forbidden, "only owners can grant, change or remove the owner role") }
    }

    /// Adds an existing user (by email) with `role`, within the plan's seats.
    public func add(email: String, role: WorkspaceRole, seatLimit plan: Plan?) async throws -> Membership {
        try Self.requireOwner(for: role, actorRole: actorRole)
        guard let user = try identity.user(email: email) else { throw IdentityError(.notFound, "no user with email \(email)") }
        if try identity.role(of: user.id, in: workspaceID) != nil {
            throw IdentityError(.conflict, "\(user.email) is already a member; change their role instead")
        }
        try identity.setRole(role, userID: user.id, in: workspaceID, seatLimit: plan, expecting: .absent)
        try await audit("MemberAdded", "user:\(user.id)", ["email": user.email, "role": role.rawValue, "by": actorName])
        return Membership(workspaceID: workspaceID.rawValue, userID: user.id, email: user.email, role: role)
    }

    /// Gives a member another role (the workspace keeps an owner).
    public func changeRole(userID: String, to role: WorkspaceRole) async throws -> Membership {
        guard let current = try identity.role(of: userID, in: workspaceID), let user = try identity.user(id: userID) else {
            throw IdentityError(.notFound, "no such member")
        }
        try Self.requireOwner(for: max(current, role), actorRole: actorRole)
        // The role they have already: nothing changes, and the audit log says nothing.
        if current == role { return Membership(workspaceID: workspaceID.rawValue, userID: userID, email: user.email, role: role) }
        try identity.setRole(role, userID: userID, in: workspaceID, expecting: .role(current))
        try await audit("MemberRoleChanged", "user:\(userID)", ["email": user.email, "from": current.rawValue, "role": role.rawValue, "by": actorName])
        return Membership(workspaceID: workspaceID.rawValue, userID: userID, email: user.email, role: role)
    }

    /// Removes a member from the workspace and from all its teams.
    public func remove(userID: String) async throws {
        guard let current = try identity.role(of: userID, in: workspaceID) else { throw IdentityError(.notFound, "no such member") }
        try Self.requireOwner(for: current, actorRole: actorRole)
        try identity.removeMember(userID: userID, from: workspaceID, expecting: current)
        try await workspace.write { tx in try TeamStore.removeFromAllTeams(userID, in: tx.db) }
        try await audit("MemberRemoved", "user:\(userID)", ["role": current.rawValue, "by": actorName])
    }

    /// Puts a member of the workspace in one of its teams.
    public func addToTeam(userID: String, team: Int64) async throws -> Team {
        let (by, identity, workspaceID) = (actorName, identity, workspaceID)
        return try await workspace.write { tx in
            // Checked in the team's own transaction: a member removed from the workspace meanwhile
            // is not put back in a team (removal takes them out of every team after it commits).
            guard try identity.role(of: userID, in: workspaceID) != nil else { throw IdentityError(.notFound, "no such member") }
            return try TeamStore.addMember(userID, to: team, by: by, in: &tx)
        }
    }

    /// Takes a user out of a team.
    public func removeFromTeam(userID: String, team: Int64) async throws {
        let by = actorName
        try await workspace.write { tx in try TeamStore.removeMember(userID, from: team, by: by, in: &tx) }
    }

    func audit(_ type: String, _ subject: String, _ payload: [String: String]) async throws {
        _ = try await workspace.write { tx in try tx.append(DomainEvent(type: type, subject: subject, payload: payload)) }
    }
}
