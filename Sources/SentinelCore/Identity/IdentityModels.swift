import Foundation
import GRDB

/// A person who can sign in. Appliance admins create workspaces and users; what anyone may do
/// inside a workspace comes only from their membership role there.
public struct User: Codable, Sendable, Equatable, FetchableRecord {
    public static let databaseColumnDecodingStrategy = DatabaseColumnDecodingStrategy.sentinel
    public var id: String
    public var email: String
    public var isAdmin: Bool
    public var createdAt: Double
    /// When an appliance admin disabled the account (nil: active). A disabled user cannot sign in
    /// and none of their sessions or API tokens authenticates.
    public var disabledAt: Double? = nil

    public var isDisabled: Bool { disabledAt != nil }
}

/// Roles inside one workspace, ordered by what they may do: viewers read; members also trigger
/// and cancel reviews; admins manage integrations, providers, repositories, settings, teams and
/// members; owners also manage owners.
public enum WorkspaceRole: String, Codable, Sendable, CaseIterable, Comparable {
    case viewer, member, admin, owner

    var rank: Int { Self.allCases.firstIndex(of: self)! }
    public static func < (a: WorkspaceRole, b: WorkspaceRole) -> Bool { a.rank < b.rank }
}

/// What a credential allows, independent of roles: `read` (GET), `write` (changes), `admin`
/// (appliance administration, for appliance admins only). Sessions carry all three.
public enum TokenScope: String, Codable, Sendable, CaseIterable {
    case read, write, admin
}

/// The authenticated caller of one request.
public struct Principal: Sendable, Equatable {
    public enum Credential: Sendable, Equatable {
        case session(id: String)
        case token(id: String)
    }

    public var user: User
    public var scopes: Set<TokenScope>
    public var credential: Credential
    /// When the credential stops working (nil: an API token without expiry).
    public var expiresAt: Date?

    public func allows(_ scope: TokenScope) -> Bool {
        scopes.contains(scope) && (scope != .admin || user.isAdmin)
    }
}

/// A personal API token as listed: the secret itself is shown once, at creation, and stored only
/// as its SHA-256.
public struct APITokenSummary: Codable, Sendable, Equatable {
    public var id: String
    public var name: String
    public var prefix: String
    public var scopes: [TokenScope]
    public var createdAt: String
    public var expiresAt: String?
    public var lastUsedAt: String?
    public var revokedAt: String?
}

public struct Membership: Codable, Sendable, Equatable {
    public var workspaceID: String
    public var userID: String
    public var email: String
    public var role: WorkspaceRole

    public init(workspaceID: String, userID: String, email: String, role: WorkspaceRole) {
        (self.workspaceID, self.userID, self.email, self.role) = (workspaceID, userID, email, role)
    }
}

/// Errors of the identity domain; the HTTP layer maps each kind to one status.
public struct IdentityError: Error, CustomStringConvertible, Equatable {
    public enum Kind: Sendable, Equatable {
        case invalid, notFound, conflict, unauthenticated, forbidden
        case rateLimited(retryAfterSeconds: Int)
    }

    public let kind: Kind
    public let description: String

    public init(_ kind: Kind, _ description: String) {
        self.kind = kind
        self.description = description
    }
}
