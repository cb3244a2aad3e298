import Foundation
import GRDB
import HTTPTypes
import NIOPosix
import SentinelCore

/// What the API's handlers work with, passed in by `Appliance` (no globals).
struct APIDependencies: Sendable {
    let dataDirectory: DataDirectory
    let identity: IdentityService
    let workspaces: WorkspaceService
    let integrations: IntegrationService
    let providers: ProviderStore
    let billing: any BillingProvider
    let catalog: PlanCatalog
    let control: ControlStore
    let loginThrottle: LoginThrottle
    /// `https` or `http`: how callers reach the server, for webhook URLs.
    let publicScheme: String
    /// `server.public_url`, when set: the base of webhook URLs instead of the request's Host.
    let publicURL: String?
}

/// The `/api/v1` operations. Handlers are thin: they translate between JSON and the domains.
enum APIOperations {
    static let auditTypes = [
        "MemberAdded", "MemberRoleChanged", "MemberRemoved", "TeamCreated", "TeamDeleted", "TeamMemberAdded", "TeamMemberRemoved",
        "IntegrationAdded", "ProviderAdded", "ProviderKeyRotated", "ProviderEnabled", "ProviderDisabled", "ProviderDeleted",
        "RepositoryEnabled", "RepositoryDisabled", "RepositoryNotEnabled", "PolicyVersionCreated", "AIBudgetChanged",
        "PlanSoftLimitReached", "RunCancelled", "RunRequested",
    ]

    static let limitParameter = QueryParameter(name: "limit", schema: .integer(minimum: 1, maximum: 200), description: "page size (default 50)")
    static let cursorParameter = QueryParameter(name: "cursor", schema: .string(maxLength: 64), description: "next_cursor of the previous page")

    /// Every operation, in document order.
    static let all: [APIOperation] = auth() + admin() + workspaces() + configuration() + reviews() + [openAPI]

    static let openAPI = APIOperation(method: .get, path: "/openapi.json", id: "getOpenAPI", tag: "meta",
                                      summary: "This API's OpenAPI 3.1 description.", access: .anyone, status: .ok, response: .any) { _, _, _ in
        .document(.ok, OpenAPIDocument.data)
    }

    static func page(_ call: APICall) -> Int { call.queryInt("limit") ?? 50 }

    /// bcrypt is deliberately slow: it runs on the identity service's own bounded password pool, not
    /// on a cooperative thread nor on NIO's blocking pool (where workspace files are opened).
    static func offload<T: Sendable>(_ d: APIDependencies, _ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await d.identity.passwords.run(work)
    }

    // MARK: Authentication and tokens

    struct SetupBody: Decodable { let setup_token: String; let email: String; let password: String }
    struct LoginBody: Decodable { let email: String; let password: String }
    struct TokenBody: Decodable { let name: String; let scopes: [TokenScope]; let expires_in_days: Int? }

    static func auth() -> [APIOperation] {
        [
            APIOperation(method: .post, path: "/setup", id: "completeSetup", tag: "auth",
                         summary: "Create the first appliance admin with the one-time setup token from data/secrets/setup-token.",
                         access: .anyone,
                         body: .object([Property("setup_token", .string(minLength: 1, maxLength: 200)), Property("email", APISchemas.email),
                                        Property("password", .string(minLength: 12, maxLength: 72))]),
                         status: .created, response: .ref("User")) { d, call, _ in
                let body = try call.decode(SetupBody.self)
                let user = try await offload(d) { try d.identity.completeSetup(token: body.setup_token, email: body.email, password: body.password,
                                                                            in: d.dataDirectory) }
                return .json(.created, APIModels.UserOut(user))
            },
            APIOperation(method: .post, path: "/auth/login", id: "login", tag: "auth",
                         summary: "Sign in with email and password; returns a session token. Failures are rate-limited per account and address (429).",
                         access: .anyone,
                         body: .object([Property("email", .string(minLength: 1, maxLength: 254)), Property("password", .string(minLength: 1, maxLength: 200))]),
                         status: .ok, response: .ref("Session")) { d, call, _ in
                let body = try call.decode(LoginBody.self)
                // The failure slot is taken before the password is checked: parallel attempts
                // cannot run more checks than the limit allows.
                let attempt: LoginThrottle.Attempt
                switch await d.loginThrottle.reserve(account: body.email, address: call.clientAddress) {
                case .limited(let wait):
                    throw IdentityError(.rateLimited(retryAfterSeconds: wait), "too many failed sign-ins; try again in \(wait) s")
                case .admitted(let reserved):
                    attempt = reserved
                }
                let checked: User?
                do {
                    checked = try await offload(d) { try d.identity.checkPassword(email: body.email, password: body.password) }
                } catch {
                    await d.loginThrottle.abandoned(attempt)
                    throw error
                }
                guard let user = checked else { throw IdentityError(.unauthenticated, "wrong email or password") }
                await d.loginThrottle.succeeded(attempt)
                let (token, expires) = try d.identity.createSession(for: user)
                return .json(.ok, APIModels.SessionOut(token: token, expiresAt: ISO8601.string(expires), user: .init(user)))
            },
            APIOperation(method: .post, path: "/auth/logout", id: "logout", tag: "auth",
                         summary: "End the calling session (API tokens are revoked with DELETE /tokens/{tokenId}).",
                         access: .user(.read), status: .noContent, response: nil) { d, call, _ in
                guard case .session(let id) = call.principal!.credential else {
                    throw Problem(status: .badRequest, detail: "this is an API token, not a session: revoke it with DELETE /api/v1/tokens/{tokenId}")
                }
                try d.identity.endSession(id: id)
                return .noContent
            },
            APIOperation(method: .get, path: "/auth/me", id: "me", tag: "auth", summary: "The caller, their workspaces and roles, and the credential's scopes.",
                         access: .user(.read), status: .ok, response: .ref("Me")) { d, call, _ in
                let memberships = try d.identity.memberships(of: call.user.id)
                return .json(.ok, APIModels.MeOut(
                    user: .init(call.user),
                    workspaces: memberships.map { APIModels.MyWorkspace(id: $0.0.id, name: $0.0.name, plan: $0.0.plan, role: $0.1) },
                    scopes: TokenScope.allCases.filter { call.principal!.allows($0) }))
            },
            APIOperation(method: .get, path: "/tokens", id: "listTokens", tag: "tokens", summary: "The caller's API tokens (never their secrets).",
                         access: .user(.read), status: .ok, response: .ref("TokenPage")) { d, call, _ in
                .json(.ok, Page(items: try d.identity.tokens(of: call.user), nextCursor: nil))
            },
            APIOperation(method: .post, path: "/tokens", id: "createToken", tag: "tokens",
                         summary: "Create a personal API token; the secret is in this response only.",
                         access: .user(.write),
                         body: .object([Property("name", .string(minLength: 1, maxLength: 100)),
                                        Property("scopes", .array(APISchemas.scope, maxItems: 3, unique: true)),
                                        Property("expires_in_days", .integer(minimum: 1, maximum: 3650), required: false)]),
                         status: .created, response: .ref("TokenCreated")) { d, call, _ in
                let body = try call.decode(TokenBody.self)
                let (token, summary) = try d.identity.createToken(for: call.user, name: body.name, scopes: Set(body.scopes),
                                                                  expiresInDays: body.expires_in_days)
                return .json(.created, APIModels.TokenCreatedOut(token: token, details: summary))
            },
            APIOperation(method: .delete, path: "/tokens/{tokenId}", id: "revokeToken", tag: "tokens", summary: "Revoke one of the caller's tokens.",
                         access: .user(.write), status: .noContent, response: nil) { d, call, _ in
                try d.identity.revokeToken(id: call.pathValue("tokenId"), of: call.user)
                return .noContent
            },
        ]
    }

    // MARK: Appliance administration

    struct UserBody: Decodable { let email: String; let password: String; let is_admin: Bool? }
    struct WorkspaceBody: Decodable { let name: String; let owner_email: String? }
    struct PlanBody: Decodable { let plan: String }

    static func admin() -> [APIOperation] {
        [
            APIOperation(method: .get, path: "/users", id: "listUsers", tag: "admin", summary: "Every user of the appliance (appliance admins).",
                         access: .applianceAdmin, query: [limitParameter, cursorParameter], status: .ok, response: .ref("UserPage")) { d, call, _ in
                let limit = page(call)
                let users = try d.identity.users(after: call.query["cursor"], limit: limit + 1)
                return .json(.ok, Page(items: users.prefix(limit).map(APIModels.UserOut.init), nextCursor: users.count > limit ? users[limit - 1].id : nil))
            },
            APIOperation(method: .post, path: "/users", id: "createUser", tag: "admin", summary: "Create a user (appliance admins).",
                         access: .applianceAdmin,
                         body: .object([Property("email", APISchemas.email), Property("password", .string(minLength: 12, maxLength: 72)),
                                        Property("is_admin", .boolean, required: false)]),
                         status: .created, response: .ref("User")) { d, call, _ in
                let body = try call.decode(UserBody.self)
                let user = try await offload(d) { try d.identity.createUser(email: body.email, password: body.password, isAdmin: body.is_admin ?? false) }
                return .json(.created, APIModels.UserOut(user))
            },
            APIOperation(method: .post, path: "/workspaces", id: "createWorkspace", tag: "workspaces",
                         summary: "Create a workspace and its file (appliance admins); the caller, or owner_email, becomes its owner.",
                         access: .applianceAdmin,
                         body: .object([Property("name", .string(minLength: 1, maxLength: 100)), Property("owner_email", APISchemas.email, required: false)]),
                         status: .created, response: .ref("Workspace")) { d, call, _ in
                let body = try call.decode(WorkspaceBody.self)
                var owner = call.user
                if let email = body.owner_email {
                    guard let found = try d.identity.user(email: email) else { throw IdentityError(.notFound, "no user with email \(email)") }
                    owner = found
                }
                let record = try d.workspaces.create(name: body.name)
                try d.identity.setRole(.owner, userID: owner.id, in: record.workspaceID!)
                return .json(.created, APIModels.WorkspaceOut(id: record.id, name: record.name, plan: record.plan,
                                                              createdAt: APIModels.time(record.createdAt), role: .owner))
            },
            APIOperation(method: .put, path: "/workspaces/{workspaceId}/plan", id: "setWorkspacePlan", tag: "admin",
                         summary: "Assign a plan to a workspace (appliance admins).", access: .applianceAdmin,
                         body: .object([Property("plan", .string(minLength: 1, maxLength: 40))]), status: .ok, response: .ref("Workspace")) { d, call, _ in
                let body = try call.decode(PlanBody.self)
                guard let id = WorkspaceID(call.pathValue("workspaceId")), try d.control.workspace(id) != nil else {
                    throw Problem(status: .notFound, detail: "no such workspace")
                }
                try BuiltinBillingProvider(control: d.control, catalog: d.catalog).assign(body.plan, to: id)
                let record = try d.control.workspace(id)!
                let role = try d.identity.role(of: call.user.id, in: id) ?? .viewer
                return .json(.ok, APIModels.WorkspaceOut(id: record.id, name: record.name, plan: record.plan,
                                                         createdAt: APIModels.time(record.createdAt), role: role))
            },
        ]
    }

    // MARK: Workspaces, members, teams

    struct MemberBody: Decodable { let email: String; let role: WorkspaceRole }
    struct RoleBody: Decodable { let role: WorkspaceRole }
    struct TeamBody: Decodable { let name: String }

    static func workspaces() -> [APIOperation] {
        [
            APIOperation(method: .get, path: "/workspaces", id: "listWorkspaces", tag: "workspaces", summary: "Workspaces the caller is a member of.",
                         access: .user(.read), status: .ok, response: .ref("WorkspacePage")) { d, call, _ in
                let items = try d.identity.memberships(of: call.user.id).map {
                    APIModels.WorkspaceOut(id: $0.0.id, name: $0.0.name, plan: $0.0.plan, createdAt: APIModels.time($0.0.createdAt), role: $0.1)
                }
                return .json(.ok, Page(items: items, nextCursor: nil))
            },
            APIOperation(method: .get, path: "/workspaces/{workspaceId}", id: "getWorkspace", tag: "workspaces", summary: "One workspace.",
                         access: .workspace(.viewer, .read), status: .ok, response: .ref("Workspace")) { d, call, _ in
                guard let record = try d.control.workspace(call.workspaceID!) else { throw Problem(status: .notFound, detail: "no such workspace") }
                return .json(.ok, APIModels.WorkspaceOut(id: record.id, name: record.name, plan: record.plan,
                                                         createdAt: APIModels.time(record.createdAt), role: call.role!))
            },
            APIOperation(method: .get, path: "/workspaces/{workspaceId}/members", id: "listMembers", tag: "members", summary: "Members and their roles.",
                         access: .workspace(.viewer, .read), status: .ok, response: .ref("MembershipPage")) { d, call, _ in
                .json(.ok, Page(items: try d.identity.members(of: call.workspaceID!), nextCursor: nil))
            },
            APIOperation(method: .post, path: "/workspaces/{workspaceId}/members", id: "addMember", tag: "members",
                         summary: "Add an existing user with a role (admins; owners for the owner role). Refused over the plan's seats.",
                         access: .workspace(.admin, .write),
                         body: .object([Property("email", APISchemas.email), Property("role", APISchemas.role)]),
                         status: .created, response: .ref("Membership")) { d, call, actor in
                let body = try call.decode(MemberBody.self)
                try requireOwner(for: body.role, call)
                guard let user = try d.identity.user(email: body.email) else { throw IdentityError(.notFound, "no user with email \(body.email)") }
                if try d.identity.role(of: user.id, in: call.workspaceID!) != nil {
                    throw IdentityError(.conflict, "\(user.email) is already a member; change the role with PATCH")
                }
                let plan = try await d.billing.plan(for: call.workspaceID!)
                try d.identity.setRole(body.role, userID: user.id, in: call.workspaceID!, seatLimit: plan)
                try await audit(actor!, "MemberAdded", "user:\(user.id)", ["email": user.email, "role": body.role.rawValue, "by": call.actor])
                return .json(.created, Membership(workspaceID: call.workspaceID!.rawValue, userID: user.id, email: user.email, role: body.role))
            },
            APIOperation(method: .patch, path: "/workspaces/{workspaceId}/members/{userId}", id: "updateMember", tag: "members",
                         summary: "Change a member's role (admins; owners for anything involving the owner role).",
                         access: .workspace(.admin, .write), body: .object([Property("role", APISchemas.role)]),
                         status: .ok, response: .ref("Membership")) { d, call, actor in
                let body = try call.decode(RoleBody.self)
                let userID = call.pathValue("userId")
                guard let current = try d.identity.role(of: userID, in: call.workspaceID!), let user = try d.identity.user(id: userID) else {
                    throw IdentityError(.notFound, "no such member")
                }
                try requireOwner(for: max(current, body.role), call)
                try d.identity.setRole(body.role, userID: userID, in: call.workspaceID!)
                try await audit(actor!, "MemberRoleChanged", "user:\(userID)", ["email": user.email, "from": current.rawValue, "role": body.role.rawValue, "by": call.actor])
                return .json(.ok, Membership(workspaceID: call.workspaceID!.rawValue, userID: userID, email: user.email, role: body.role))
            },
            APIOperation(method: .delete, path: "/workspaces/{workspaceId}/members/{userId}", id: "removeMember", tag: "members",
                         summary: "Remove a member (admins; owners to remove an owner). The last owner cannot be removed.",
                         access: .workspace(.admin, .write), status: .noContent, response: nil) { d, call, actor in
                let userID = call.pathValue("userId")
                guard let current = try d.identity.role(of: userID, in: call.workspaceID!) else { throw IdentityError(.notFound, "no such member") }
                try requireOwner(for: current, call)
                try d.identity.removeMember(userID: userID, from: call.workspaceID!)
                try await actor!.write { tx in try TeamStore.removeFromAllTeams(userID, in: tx.db) }
                try await audit(actor!, "MemberRemoved", "user:\(userID)", ["role": current.rawValue, "by": call.actor])
                return .noContent
            },
            APIOperation(method: .get, path: "/workspaces/{workspaceId}/teams", id: "listTeams", tag: "teams", summary: "Teams and their members.",
                         access: .workspace(.viewer, .read), status: .ok, response: .ref("TeamPage")) { d, call, actor in
                .json(.ok, Page(items: try await actor!.read { db in try TeamStore.list(in: db) }.map(APIModels.TeamOut.init), nextCursor: nil))
            },
            APIOperation(method: .post, path: "/workspaces/{workspaceId}/teams", id: "createTeam", tag: "teams", summary: "Create a team (admins).",
                         access: .workspace(.admin, .write), body: .object([Property("name", .string(minLength: 1, maxLength: 100))]),
                         status: .created, response: .ref("Team")) { d, call, actor in
                let (name, by) = (try call.decode(TeamBody.self).name, call.actor)
                let team = try await actor!.write { tx in try TeamStore.create(name: name, by: by, in: &tx) }
                return .json(.created, APIModels.TeamOut(team))
            },
            APIOperation(method: .delete, path: "/workspaces/{workspaceId}/teams/{teamId}", id: "deleteTeam", tag: "teams", summary: "Delete a team (admins).",
                         access: .workspace(.admin, .write), status: .noContent, response: nil) { d, call, actor in
                let (team, by) = (try call.pathInt("teamId", what: "team"), call.actor)
                try await actor!.write { tx in try TeamStore.delete(team, by: by, in: &tx) }
                return .noContent
            },
            APIOperation(method: .put, path: "/workspaces/{workspaceId}/teams/{teamId}/members/{userId}", id: "addTeamMember", tag: "teams",
                         summary: "Put a workspace member in a team (admins).", access: .workspace(.admin, .write),
                         status: .ok, response: .ref("Team")) { d, call, actor in
                let (team, userID, by) = (try call.pathInt("teamId", what: "team"), call.pathValue("userId"), call.actor)
                guard try d.identity.role(of: userID, in: call.workspaceID!) != nil else { throw IdentityError(.notFound, "no such member") }
                let updated = try await actor!.write { tx in try TeamStore.addMember(userID, to: team, by: by, in: &tx) }
                return .json(.ok, APIModels.TeamOut(updated))
            },
            APIOperation(method: .delete, path: "/workspaces/{workspaceId}/teams/{teamId}/members/{userId}", id: "removeTeamMember", tag: "teams",
                         summary: "Take a member out of a team (admins).", access: .workspace(.admin, .write),
                         status: .noContent, response: nil) { d, call, actor in
                let (team, userID, by) = (try call.pathInt("teamId", what: "team"), call.pathValue("userId"), call.actor)
                try await actor!.write { tx in try TeamStore.removeMember(userID, from: team, by: by, in: &tx) }
                return .noContent
            },
            APIOperation(method: .get, path: "/workspaces/{workspaceId}/audit", id: "listAuditEvents", tag: "audit",
                         summary: "Who changed what in the workspace (settings, members, teams, integrations, keys, repositories), oldest first.",
                         access: .workspace(.admin, .read), query: [limitParameter, cursorParameter], status: .ok, response: .ref("AuditPage")) { d, call, actor in
                let limit = page(call)
                let after = Int64(call.query["cursor"] ?? "") ?? 0
                let events = try await actor!.read { db in try EventLog.read(after: after, limit: limit + 1, types: auditTypes, in: db) }
                let items = events.prefix(limit).map {
                    APIModels.AuditEventOut(seq: $0.seq, id: $0.id, type: $0.type, occurredAt: $0.occurredAt, subject: $0.subject,
                                            data: JSONValueOut(text: $0.data) ?? JSONValueOut(raw: .object([:])))
                }
                return .json(.ok, Page(items: Array(items), nextCursor: events.count > limit ? String(events[limit - 1].seq) : nil))
            },
        ]
    }

    /// Granting, changing or removing the owner role takes an owner.
    static func requireOwner(for role: WorkspaceRole, _ call: APICall) throws {
        if role == .owner, call.role != .owner { throw Problem(status: .forbidden, detail: "only owners can grant, change or remove the owner role") }
    }

    static func audit(_ actor: WorkspaceActor, _ type: String, _ subject: String, _ payload: [String: String]) async throws {
        try await actor.write { tx in try tx.append(DomainEvent(type: type, subject: subject, payload: payload)) }
    }
}
