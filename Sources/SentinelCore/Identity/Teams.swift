import Foundation
import GRDB

/// A team of a workspace: a named group of the workspace's members (stored in the workspace file).
public struct Team: Sendable, Equatable {
    public let id: Int64
    public let name: String
    public let createdAt: Date
    /// User ids, sorted.
    public let members: [String]
}

/// Teams of one workspace. Every change appends its audit event (`TeamCreated`, `TeamDeleted`,
/// `TeamMemberAdded`, `TeamMemberRemoved`, with `by`) in the transaction that makes it.
public enum TeamStore {
    public static func list(in db: Database) throws -> [Team] {
        let members = Dictionary(grouping: try Row.fetchAll(db, sql: "SELECT team_id, user_id FROM team_members ORDER BY user_id"),
                                 by: { $0["team_id"] as Int64 })
        return try Row.fetchAll(db, sql: "SELECT * FROM teams ORDER BY name").map { row in
            let id: Int64 = row["id"]
            return Team(id: id, name: row["name"], createdAt: Date(timeIntervalSince1970: row["created_at"]),
                        members: (members[id] ?? []).map { $0["user_id"] })
        }
    }

    public static func find(_ id: Int64, in db: Database) throws -> Team? {
        try list(in: db).first { $0.id == id }
    }

    /// The longest team name (the API document's `maxLength` for it).
    public static let maxNameLength = 100
    /// Teams a workspace may have.
    public static let maxPerWorkspace = 1_000

    /// Creates a team; a blank name, one longer than `maxNameLength` or with control characters
    /// is invalid, and a taken one a conflict.
    public static func create(name raw: String, by actor: String, in tx: inout WorkspaceTransaction) throws -> Team {
        // In Unicode's composed form (NFC): `café` typed two ways is one name, not two that look alike.
        let name = raw.trimmingCharacters(in: .whitespaces).precomposedStringWithCanonicalMapping
        guard !name.isEmpty else { throw IdentityError(.invalid, "name: must not be blank") }
        if let problem = TextRules.problem(name, maxLength: maxNameLength) { throw IdentityError(.invalid, "name: \(problem)") }
        if try Int.fetchOne(tx.db, sql: "SELECT 1 FROM teams WHERE name = ?", arguments: [name]) != nil {
            throw IdentityError(.conflict, "a team named \(name) already exists")
        }
        guard try Int.fetchOne(tx.db, sql: "SELECT count(*) FROM teams") ?? 0 < maxPerWorkspace else {
            throw IdentityError(.conflict, "a workspace has at most \(maxPerWorkspace) teams; delete one it no longer uses first")
        }
        try tx.db.execute(sql: "INSERT INTO teams (name, created_at) VALUES (?, ?)", arguments: [name, tx.now.timeIntervalSince1970])
        let id = tx.db.lastInsertedRowID
        try tx.append(DomainEvent(type: "TeamCreated", subject: "team:\(id)", payload: ["name": name, "by": actor]))
        return Team(id: id, name: name, createdAt: tx.now, members: [])
    }

    public static func delete(_ id: Int64, by actor: String, in tx: inout WorkspaceTransaction) throws {
        try tx.db.execute(sql: "DELETE FROM teams WHERE id = ?", arguments: [id])
        if tx.db.changesCount == 0 { throw IdentityError(.notFound, "no such team") }
        try tx.append(DomainEvent(type: "TeamDeleted", subject: "team:\(id)", payload: ["by": actor]))
    }

    /// Puts a user in a team (the caller checks the user is a member of the workspace).
    public static func addMember(_ userID: String, to id: Int64, by actor: String, in tx: inout WorkspaceTransaction) throws -> Team {
        guard try Int.fetchOne(tx.db, sql: "SELECT 1 FROM teams WHERE id = ?", arguments: [id]) != nil else {
            throw IdentityError(.notFound, "no such team")
        }
        try tx.db.execute(sql: "INSERT OR IGNORE INTO team_members (team_id, user_id) VALUES (?, ?)", arguments: [id, userID])
        // Adding someone already in the team changes nothing, and logs nothing.
        if tx.db.changesCount > 0 {
            try tx.append(DomainEvent(type: "TeamMemberAdded", subject: "team:\(id)", payload: ["user_id": userID, "by": actor]))
        }
        guard let team = try find(id, in: tx.db) else { throw IdentityError(.notFound, "no such team") }
        return team
    }

    public static func removeMember(_ userID: String, from id: Int64, by actor: String, in tx: inout WorkspaceTransaction) throws {
        try tx.db.execute(sql: "DELETE FROM team_members WHERE team_id = ? AND user_id = ?", arguments: [id, userID])
        if tx.db.changesCount == 0 { throw IdentityError(.notFound, "no such team member") }
        try tx.append(DomainEvent(type: "TeamMemberRemoved", subject: "team:\(id)", payload: ["user_id": userID, "by": actor]))
    }

    /// A user who leaves the workspace leaves its teams.
    public static func removeFromAllTeams(_ userID: String, in db: Database) throws {
        try db.execute(sql: "DELETE FROM team_members WHERE user_id = ?", arguments: [userID])
    }
}
