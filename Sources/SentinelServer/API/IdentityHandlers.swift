import Foundation
import SentinelCore

/// Setup, sign-in, sessions, personal API tokens and the appliance's users.
struct IdentityHandlers: Sendable {
    let d: APIDependencies

    /// bcrypt is deliberately slow: it runs on the identity service's own bounded password pool, not
    /// on a cooperative thread nor on NIO's blocking pool (where workspace files are opened).
    func offload<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await d.identity.passwords.run(work)
    }

    static func user(_ user: User) -> Components.Schemas.User {
        .init(createdAt: Date(epoch: user.createdAt), disabled: user.isDisabled, email: user.email, id: user.id, isAdmin: user.isAdmin)
    }

    func completeSetup(_ input: Operations.CompleteSetup.Input, _ context: AnonymousContext) async throws -> Operations.CompleteSetup.Output {
        guard case .json(let body) = input.body else { throw Problem(status: .badRequest, detail: "a JSON body is required") }
        let (identity, directory) = (d.identity, d.dataDirectory)
        let user = try await offload { try identity.completeSetup(token: body.setupToken, email: body.email, password: body.password, in: directory) }
        return .created(.init(body: .json(Self.user(user))))
    }

    func login(_ input: Operations.Login.Input, _ context: AnonymousContext) async throws -> Operations.Login.Output {
        guard case .json(let body) = input.body else { throw Problem(status: .badRequest, detail: "a JSON body is required") }
        guard let check = try await d.loginThrottle.signIn(email: body.email, password: body.password, address: context.request.clientAddress,
                                                           identity: d.identity) else {
            throw IdentityError(.unauthenticated, "wrong email or password")
        }
        let (token, expires) = try d.identity.createSession(for: check)
        return .ok(.init(body: .json(.init(expiresAt: expires, token: token, user: Self.user(check.user)))))
    }

    func logout(_ input: Operations.Logout.Input, _ context: UserContext) async throws -> Operations.Logout.Output {
        guard case .session(let id) = context.principal.credential else {
            throw Problem(status: .badRequest, detail: "this is an API token, not a session: revoke it with DELETE /api/v1/tokens/{tokenId}")
        }
        try d.identity.endSession(id: id)
        return .noContent(.init())
    }

    func changePassword(_ input: Operations.ChangePassword.Input, _ context: UserContext) async throws -> Operations.ChangePassword.Output {
        guard case .json(let body) = input.body else { throw Problem(status: .badRequest, detail: "a JSON body is required") }
        let session: String? = if case .session(let id) = context.principal.credential { id } else { nil }
        try await d.identity.changeOwnPassword(context.user, current: body.currentPassword, new: body.newPassword, keepingSession: session,
                                               address: context.request.clientAddress, throttle: d.loginThrottle)
        return .noContent(.init())
    }

    func me(_ input: Operations.Me.Input, _ context: UserContext) async throws -> Operations.Me.Output {
        let memberships = try d.identity.memberships(of: context.user.id)
        return .ok(.init(body: .json(.init(
            scopes: TokenScope.allCases.filter { context.principal.allows($0) }.map(Components.Schemas.TokenScope.init),
            user: Self.user(context.user),
            workspaces: memberships.map { .init(id: $0.0.id, name: $0.0.name, plan: $0.0.plan, role: .init($0.1)) }))))
    }

    func listTokens(_ input: Operations.ListTokens.Input, _ context: UserContext) async throws -> Operations.ListTokens.Output {
        let tokens = try d.identity.tokens(of: context.user)
        return .ok(.init(body: .json(.init(items: try tokens.map { try .converted(from: $0) }))))
    }

    func createToken(_ input: Operations.CreateToken.Input, _ context: UserContext) async throws -> Operations.CreateToken.Output {
        guard case .json(let body) = input.body else { throw Problem(status: .badRequest, detail: "a JSON body is required") }
        let (token, summary) = try d.identity.createToken(for: context.user, name: body.name, scopes: Set(body.scopes.map(TokenScope.init)),
                                                          expiresInDays: body.expiresInDays, creator: context.principal)
        return .created(.init(body: .json(.init(details: try .converted(from: summary), token: token))))
    }

    func revokeToken(_ input: Operations.RevokeToken.Input, _ context: UserContext) async throws -> Operations.RevokeToken.Output {
        try d.identity.revokeToken(id: input.path.tokenId, of: context.user)
        return .noContent(.init())
    }

    func listUsers(_ input: Operations.ListUsers.Input, _ context: UserContext) async throws -> Operations.ListUsers.Output {
        let window = PageWindow(input.query.limit)
        // A user's id is the cursor: one of another shape was not given by this API (read as a
        // place in the list, `abc` sent a client back to the first page, round and round).
        if let cursor = input.query.cursor, cursor.wholeMatch(of: /usr_[a-z0-9]{1,64}/) == nil {
            throw Problem(status: .badRequest, detail: "cursor: not a cursor this API gave")
        }
        let users = try d.identity.users(after: input.query.cursor, limit: window.limit + 1)
        return .ok(.init(body: .json(.init(items: window.items(users).map(Self.user), nextCursor: window.nextCursor(users, \.id)))))
    }

    /// The appliance's audit log (`control.sqlite`), oldest first; `subject` narrows it to one user or workspace.
    func listApplianceAuditEvents(_ input: Operations.ListApplianceAuditEvents.Input, _ context: UserContext) async throws
        -> Operations.ListApplianceAuditEvents.Output {
        let window = PageWindow(input.query.limit)
        let after = try PageWindow.position(input.query.cursor, start: 0)
        if let subject = input.query.subject, subject.wholeMatch(of: /(user|workspace):[A-Za-z0-9_]{1,64}/) == nil {
            throw Problem(status: .badRequest, detail: "subject: must be user:ID or workspace:ID")
        }
        let events = try d.control.read { db in try AuditLog.events(subject: input.query.subject, after: after, limit: window.limit + 1, in: db) }
        let items = try window.items(events).map { event in
            Components.Schemas.ApplianceAuditEvent(actor: event.actor, data: try .converted(from: JSONValue(text: event.data) ?? .object([:])),
                                                   id: event.id, occurredAt: event.occurredAt, seq: Int(event.seq), subject: event.subject,
                                                   _type: event.type)
        }
        return .ok(.init(body: .json(.init(items: items, nextCursor: window.nextCursor(events) { String($0.seq) }))))
    }

    func createUser(_ input: Operations.CreateUser.Input, _ context: UserContext) async throws -> Operations.CreateUser.Output {
        guard case .json(let body) = input.body else { throw Problem(status: .badRequest, detail: "a JSON body is required") }
        // A user made with an API token would hold a password that outlives the token: a leaked
        // short-lived admin token made an admin of its own and, signed in, an everlasting token.
        try IdentityService.requireSignedIn(context.principal, to: "create a user")
        let identity = d.identity
        let by = context.actorName
        let user = try await offload { try identity.createUser(email: body.email, password: body.password, isAdmin: body.isAdmin ?? false, by: by) }
        return .created(.init(body: .json(Self.user(user))))
    }
}

extension IdentityHandlers {
    func updateUser(_ input: Operations.UpdateUser.Input, _ context: UserContext) async throws -> Operations.UpdateUser.Output {
        guard case .json(let body) = input.body else { throw Problem(status: .badRequest, detail: "a JSON body is required") }
        let (id, by, identity) = (input.path.userId, context.actorName, d.identity)
        guard try identity.user(id: id) != nil else { throw IdentityError(.notFound, "no such user") }
        // All or nothing: a password the rules refuse is refused before the account changes.
        if let password = body.password {
            try IdentityService.requirePasswordResetAllowed(of: id, by: context.principal)
            try IdentityService.checkPasswordRules(password)
        }
        if let disabled = body.disabled { _ = disabled ? try identity.disableUser(id: id, by: by) : try identity.enableUser(id: id, by: by) }
        if let password = body.password {
            // bcrypt, on the password pool; the user's sessions end (the caller's own, if it is theirs, too).
            try await offload { try identity.setPassword(userID: id, password: password, by: by) }
        }
        guard let user = try identity.user(id: id) else { throw IdentityError(.notFound, "no such user") }
        return .ok(.init(body: .json(Self.user(user))))
    }

    func deleteUser(_ input: Operations.DeleteUser.Input, _ context: UserContext) async throws -> Operations.DeleteUser.Output {
        let supervisor = d.supervisor
        // Control first (memberships, sessions, tokens; audited), then each workspace forgets them in its teams.
        let deletion = try await d.identity.deleteUser(id: input.path.userId, by: context.actorName) { id, body in
            try await supervisor.withWorkspace(id, body)
        }
        // The user is gone; a workspace file that could not be updated answers for itself (503 offline, …).
        if let first = deletion.unreachable.first { throw first.error }
        return .noContent(.init())
    }
}

extension Components.Schemas.TokenScope {
    init(_ scope: TokenScope) {
        switch scope {
        case .read: self = .read
        case .write: self = .write
        case .admin: self = .admin
        }
    }
}

extension TokenScope {
    init(_ scope: Components.Schemas.TokenScope) {
        switch scope {
        case .read: self = .read
        case .write: self = .write
        case .admin: self = .admin
        }
    }
}

extension Components.Schemas.WorkspaceRole {
    init(_ role: WorkspaceRole) {
        switch role {
        case .viewer: self = .viewer
        case .member: self = .member
        case .admin: self = .admin
        case .owner: self = .owner
        }
    }
}

extension WorkspaceRole {
    init(_ role: Components.Schemas.WorkspaceRole) {
        switch role {
        case .viewer: self = .viewer
        case .member: self = .member
        case .admin: self = .admin
        case .owner: self = .owner
        }
    }
}
