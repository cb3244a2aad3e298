import Foundation
import GRDB

/// The rule a platform's repository name follows, as the platforms themselves enforce it: parts
/// separated by `/` (GitHub `owner/name`; GitLab `group/subgroup/…/project`), each of letters,
/// digits, `-`, `_` and `.`, and none `.` or `..`. The name goes into API paths and onto the
/// console, so a webhook naming a repository otherwise is not understood.
public enum RepositoryName {
    /// A webhook payload's repository id and name from `container`: an id that is not positive or
    /// a name that breaks the rule is data corrupted at its key (`noun` and `form` say what was
    /// expected), so the payload is not understood.
    static func decode<Key: CodingKey>(_ container: KeyedDecodingContainer<Key>, id idKey: Key, name nameKey: Key,
                                       parts: ClosedRange<Int>, noun: String, form: String) throws -> (id: Int64, name: String) {
        let id = try container.decode(Int64.self, forKey: idKey)
        let name = try container.decode(String.self, forKey: nameKey)
        guard id > 0 else {
            throw DecodingError.dataCorruptedError(forKey: idKey, in: container, debugDescription: "not a positive \(noun) id (\(id))")
        }
        guard isValid(name, parts: parts) else {
            throw DecodingError.dataCorruptedError(forKey: nameKey, in: container, debugDescription: "not a \(noun) \(form)")
        }
        return (id, name)
    }

    public static func isValid(_ name: String, parts allowed: ClosedRange<Int>) -> Bool {
        guard name.utf8.count <= 1_000 else { return false }
        let parts = name.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
        guard allowed.contains(parts.count) else { return false }
        return parts.allSatisfy { part in
            !part.isEmpty && !part.allSatisfy { $0 == UInt8(ascii: ".") } && part.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                     UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."):
                    true
                default:
                    false
                }
            }
        }
    }
}

/// The number a webhook payload names a pull (merge) request or issue by. One that is not positive
/// is data corrupted at its key: the payload is not understood and requests no run (a run for pull
/// request -5 was requested, listed and fetched as if it were one).
enum PayloadValue {
    static func number<Key: CodingKey>(_ container: KeyedDecodingContainer<Key>, _ key: Key, noun: String) throws -> Int {
        let number = try container.decode(Int.self, forKey: key)
        guard number > 0 else {
            throw DecodingError.dataCorruptedError(forKey: key, in: container, debugDescription: "not a \(noun) number (\(number)); they start at 1")
        }
        return number
    }
}

/// A repository the workspace knows through one of its integrations.
public struct RepositoryRecord: Codable, Sendable, Equatable, FetchableRecord {
    public static let databaseColumnDecodingStrategy = DatabaseColumnDecodingStrategy.convertFromSnakeCase
    public var id: Int64
    public var integrationID: String
    public var externalID: Int64
    public var fullName: String
    public var installationID: Int64?
    public var enabled: Bool
    public var removed: Bool
    public var registeredAt: Double

    /// The columns as GRDB's `convertFromSnakeCase` names them, which are also the keys
    /// `sentinel repo list --json` has always printed (`integrationId`, `installationId`).
    enum CodingKeys: String, CodingKey {
        case id, fullName, enabled, removed, registeredAt
        case integrationID = "integrationId", externalID = "externalId", installationID = "installationId"
    }
}

/// Registering and removing repositories. Enabling appends `RepositoryEnabled`.
public enum RepositoryStore {
    /// Whether a repository seen for the first time in a PR event (its installation predates the
    /// integration) is enabled. Workspace setting `repositories.auto_enable`, default true.
    public static func autoEnable(in db: Database) throws -> Bool {
        (try String.fetchOne(db, sql: "SELECT value FROM workspace_settings WHERE key = 'repositories.auto_enable'")) != "false"
    }

    /// Registers (or re-registers) a repository; returns its row. New rows are enabled per
    /// `autoEnable`, unless that would exceed `limit` (the plan's enabled repositories): then the
    /// repository is registered disabled and `RepositoryNotEnabled` says why. A removed repository
    /// that comes back enabled counts against `limit` like a new one: over the limit, it comes
    /// back disabled.
    @discardableResult
    public static func register(integrationID: IntegrationID, externalID: Int64, fullName: String, installationID: Int64?,
                                limit: Int? = nil, in tx: inout WorkspaceTransaction) throws -> RepositoryRecord {
        var enabledSoFar: Int?
        return try register(integrationID: integrationID, externalID: externalID, fullName: fullName, installationID: installationID,
                            limit: limit, enabledSoFar: &enabledSoFar, in: &tx)
    }

    /// Registers each of an installation's `repositories` as `register` does one, counting the
    /// enabled repositories once for all of them: counted for each, a delivery listing 50,000
    /// repositories held the workspace's writer for minutes.
    public static func registerAll(_ repositories: [(id: Int64, fullName: String)], integrationID: IntegrationID, installationID: Int64?,
                                   limit: Int?, in tx: inout WorkspaceTransaction) throws {
        var enabledSoFar: Int?
        for repository in repositories {
            _ = try register(integrationID: integrationID, externalID: repository.id, fullName: repository.fullName, installationID: installationID,
                             limit: limit, enabledSoFar: &enabledSoFar, in: &tx)
        }
    }

    /// `register`, with the count of enabled repositories kept in `enabledSoFar` once read.
    private static func register(integrationID: IntegrationID, externalID: Int64, fullName: String, installationID: Int64?,
                                 limit: Int?, enabledSoFar: inout Int?, in tx: inout WorkspaceTransaction) throws -> RepositoryRecord {
        let db = tx.db
        func enabledNow() throws -> Int {
            if let enabledSoFar { return enabledSoFar }
            let counted = try enabledCount(in: db)
            enabledSoFar = counted
            return counted
        }
        if var existing = try find(integrationID: integrationID, externalID: externalID, in: db) {
            if existing.removed || existing.fullName != fullName || (installationID != nil && existing.installationID != installationID) {
                // Decided before the row counts again: `enabledCount` only counts installed repositories.
                var overLimit = false
                if existing.removed, existing.enabled, let limit { overLimit = try enabledNow() >= limit }
                try db.execute(sql: """
                    UPDATE repositories SET removed = 0, enabled = ?, full_name = ?, installation_id = coalesce(?, installation_id) WHERE id = ?
                    """, arguments: [existing.enabled && !overLimit, fullName, installationID, existing.id])
                if existing.removed, existing.enabled, !overLimit, let counted = enabledSoFar { enabledSoFar = counted + 1 }
                existing.removed = false
                existing.fullName = fullName
                if let installationID { existing.installationID = installationID }
                if overLimit {
                    existing.enabled = false
                    try tx.append(DomainEvent(type: "RepositoryNotEnabled", subject: "repository:\(existing.id)", payload: [
                        "repository": fullName, "reason": "plan_limit: \(limit!) enabled repositories allowed"]))
                }
            }
            return existing
        }
        var enabled = try autoEnable(in: db)
        var overLimit = false
        if enabled, let limit, try enabledNow() >= limit {
            enabled = false
            overLimit = true
        }
        try db.execute(sql: """
            INSERT INTO repositories (integration_id, external_id, full_name, installation_id, enabled, removed, registered_at)
            VALUES (?, ?, ?, ?, ?, 0, ?)
            """, arguments: [integrationID.rawValue, externalID, fullName, installationID, enabled, tx.now.epoch])
        let id = db.lastInsertedRowID
        if enabled, let counted = enabledSoFar { enabledSoFar = counted + 1 }
        if enabled {
            try tx.append(DomainEvent(type: "RepositoryEnabled", subject: "repository:\(id)", payload: ["repository": fullName]))
        } else if overLimit {
            try tx.append(DomainEvent(type: "RepositoryNotEnabled", subject: "repository:\(id)", payload: [
                "repository": fullName, "reason": "plan_limit: \(limit!) enabled repositories allowed"]))
        }
        return try find(integrationID: integrationID, externalID: externalID, in: db)!
    }

    /// Repositories that are enabled and still installed: what the plan's repository limit counts.
    public static func enabledCount(in db: Database) throws -> Int {
        try Int.fetchOne(db, sql: "SELECT count(*) FROM repositories WHERE enabled = 1 AND removed = 0") ?? 0
    }

    /// Enables or disables a repository by id (the API's `updateRepository` and the console's
    /// buttons); a removed or unknown repository is not found.
    @discardableResult
    public static func setEnabled(_ enabled: Bool, id: Int64, plan: Plan?, by actor: String? = nil, in tx: inout WorkspaceTransaction) throws -> RepositoryRecord {
        guard let repo = try find(id: id, in: tx.db), !repo.removed else { throw StorageError.notFound("no such repository") }
        return try setEnabled(enabled, repository: repo, plan: plan, by: actor, in: &tx)
    }

    /// Enables or disables a repository by name, or by its id given as digits (`repo list` shows
    /// both). Two repositories of one name (one on GitHub.com, one on GitHub Enterprise; a GitHub
    /// repository and a GitLab project) are told apart by id: by name, the first of them was changed.
    /// Enabling one more than `plan` allows is refused. `actor`: who did it, for the audit log (`cli`, a user's email).
    @discardableResult
    public static func setEnabled(_ enabled: Bool, fullName: String, plan: Plan?, by actor: String? = nil,
                                  in tx: inout WorkspaceTransaction) throws -> RepositoryRecord {
        try setEnabled(enabled, repository: try resolve(fullName, in: tx.db), plan: plan, by: actor, in: &tx)
    }

    /// The repository (not removed) an admin names: by its id given as digits, or by OWNER/NAME
    /// when one repository has it. Two of one name (on two integrations) are told apart by id:
    /// by name, the first of them was taken.
    public static func resolve(_ nameOrID: String, in db: Database) throws -> RepositoryRecord {
        if let id = Int64(nameOrID), nameOrID.allSatisfy(\.isASCII) {
            guard let repo = try find(id: id, in: db), !repo.removed else { throw StorageError.notFound("no repository has the id \(id)") }
            return repo
        }
        let named = try RepositoryRecord.fetchAll(db, sql: "SELECT * FROM repositories WHERE full_name = ? AND removed = 0 ORDER BY id",
                                                  arguments: [nameOrID])
        guard let repo = named.first else {
            throw StorageError.notFound("repository \(nameOrID) is not known to this workspace (install the GitHub App on it first)")
        }
        guard named.count == 1 else {
            throw StorageError.conflict("\(named.count) repositories of this workspace are named \(nameOrID) (ids "
                                        + named.map { String($0.id) }.joined(separator: ", ") + ", on different integrations); give the id")
        }
        return repo
    }

    private static func setEnabled(_ enabled: Bool, repository repo: RepositoryRecord, plan: Plan?, by actor: String?,
                                   in tx: inout WorkspaceTransaction) throws -> RepositoryRecord {
        let fullName = repo.fullName
        guard repo.enabled != enabled else { return repo }
        if enabled, let plan, let limit = plan.repositories {
            let used = try enabledCount(in: tx.db)
            if used >= limit {
                throw PlanLimitError(message: "the workspace's \(plan.name) plan allows \(limit) enabled repositories and \(used) are enabled; "
                                     + "disable one or move the workspace to a larger plan")
            }
        }
        try tx.db.execute(sql: "UPDATE repositories SET enabled = ? WHERE id = ?", arguments: [enabled, repo.id])
        try tx.append(DomainEvent(type: enabled ? "RepositoryEnabled" : "RepositoryDisabled", subject: "repository:\(repo.id)",
                                  payload: ["repository": fullName].merging(actor.map { ["by": $0] } ?? [:]) { a, _ in a }))
        var updated = repo
        updated.enabled = enabled
        return updated
    }

    /// The `removed` value of a repository its installation's suspension took away: removed as
    /// any other (the column is read as a flag), and brought back by the installation's unsuspend.
    static let removedWithSuspension = 2

    /// Marks a repository removed from `installationID` (when given): only if that installation
    /// holds it. A repository moved to another installation, whose old installation's "removed"
    /// arrived after the new one's "added", was dropped.
    /// Returns whether a repository was removed now (not unknown, not already removed, not moved
    /// to another installation).
    @discardableResult
    public static func markRemoved(integrationID: IntegrationID, externalID: Int64, installationID: Int64? = nil, in db: Database) throws -> Bool {
        try db.execute(sql: """
            UPDATE repositories SET removed = 1
            WHERE integration_id = ? AND external_id = ? AND (? IS NULL OR installation_id IS NULL OR installation_id = ?) AND removed IN (0, ?)
            """, arguments: [integrationID.rawValue, externalID, installationID, installationID, removedWithSuspension])
        return db.changesCount > 0
    }

    public static func find(integrationID: IntegrationID, externalID: Int64, in db: Database) throws -> RepositoryRecord? {
        try RepositoryRecord.fetchOne(db, sql: "SELECT * FROM repositories WHERE integration_id = ? AND external_id = ?",
                                      arguments: [integrationID.rawValue, externalID])
    }

    public static func find(id: Int64, in db: Database) throws -> RepositoryRecord? {
        try RepositoryRecord.fetchOne(db, sql: "SELECT * FROM repositories WHERE id = ?", arguments: [id])
    }

    /// The platform a repository lives on (`github` or `gitlab`, from its integration's kind), as
    /// run and usage events carry it for analytics.
    public static func platform(of repository: RepositoryRecord, in db: Database) throws -> String? {
        try String.fetchOne(db.cachedStatement(sql: "SELECT kind FROM integrations WHERE id = ?"), arguments: [repository.integrationID])
            .map(platform(ofKind:))
    }

    /// The platform of a run's repository (see `platform(of:in:)`).
    public static func platform(ofRun runID: Int64, in db: Database) throws -> String? {
        try String.fetchOne(db.cachedStatement(sql: """
            SELECT i.kind FROM review_runs r JOIN repositories p ON p.id = r.repository_id JOIN integrations i ON i.id = p.integration_id
            WHERE r.id = ?
            """), arguments: [runID]).map(platform(ofKind:))
    }

    /// Repositories in registration order, after the given id (a page of the API's list).
    public static func list(after id: Int64, limit: Int, in db: Database) throws -> [RepositoryRecord] {
        try RepositoryRecord.fetchAll(db, sql: "SELECT * FROM repositories WHERE id > ? ORDER BY id LIMIT ?", arguments: [id, limit])
    }

    /// Each repository's source-control platform: its integration's kind (`github`, `gitlab`).
    public static func platforms(in db: Database) throws -> [Int64: String] {
        var platforms: [Int64: String] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT r.id, i.kind FROM repositories r JOIN integrations i ON i.id = r.integration_id") {
            platforms[row["id"]] = platform(ofKind: row["kind"])
        }
        return platforms
    }

    /// An integration's kind names its platform; a removed integration's kind is `removed:<platform>`.
    static func platform(ofKind kind: String) -> String {
        kind.hasPrefix("removed:") ? String(kind.dropFirst(8)) : kind
    }

    public static func all(in db: Database) throws -> [RepositoryRecord] {
        try RepositoryRecord.fetchAll(db, sql: "SELECT * FROM repositories ORDER BY full_name")
    }
}
