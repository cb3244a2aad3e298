import Foundation
import GRDB

/// One immutable version of workspace defaults or of one repository's settings.
public struct PolicyVersion: Sendable, Codable, Equatable {
    public var id: Int64
    public var scope: String
    public var values: [String: PolicyValue]
    public var locks: [String]
    public var createdBy: String
    public var createdAt: String
}

/// The layers of SPEC §6 as stored in a workspace file. Every settings change appends a new
/// version (the table refuses UPDATE); a run resolves the newest versions plus the repository's
/// `.sentinel.yml` and keeps the snapshot, its sha256 and the version ids.
public enum PolicyService {
    public static let fileName = ".sentinel.yml"
    public static let workspaceScope = "workspace"
    public static func repositoryScope(_ id: Int64) -> String { "repository:\(id)" }

    public struct Resolved: Sendable {
        public let policy: ReviewPolicy
        /// The policy of the settings alone (built-in, workspace, repository), without the file:
        /// what the built-in checks' scope comes from, as a PR's own file must not narrow it.
        public let settingsPolicy: ReviewPolicy
        public let effective: EffectivePolicy
        /// Problems in the repository's file (empty when it is absent or clean).
        public let diagnostics: [ConfigDiagnostic]
        /// `{"workspace": "12", "repository": "15"}`, stored on the run.
        public let versionsJSON: String
    }

    public static func latest(scope: String, in db: Database) throws -> PolicyVersion? {
        guard let row = try Row.fetchOne(db, sql: "SELECT * FROM policy_versions WHERE scope = ? ORDER BY id DESC LIMIT 1", arguments: [scope]) else {
            return nil
        }
        return try version(row)
    }

    public static func history(scope: String, limit: Int = 50, in db: Database) throws -> [PolicyVersion] {
        try Row.fetchAll(db, sql: "SELECT * FROM policy_versions WHERE scope = ? ORDER BY id DESC LIMIT ?", arguments: [scope, limit]).map(version)
    }

    static func version(_ row: Row) throws -> PolicyVersion {
        let decoder = JSONDecoder()
        return PolicyVersion(id: row["id"], scope: row["scope"],
                             values: try decoder.decode([String: PolicyValue].self, from: Data((row["values"] as String).utf8)),
                             locks: try decoder.decode([String].self, from: Data((row["locks"] as String).utf8)),
                             createdBy: row["created_by"], createdAt: ISO8601.string(Date(timeIntervalSince1970: row["created_at"])))
    }

    /// Validates and appends a new version of a scope's settings, with an audit event.
    @discardableResult
    public static func saveVersion(scope: String, values: [String: PolicyValue], locks: Set<String>, by actor: String,
                                   in tx: inout WorkspaceTransaction) throws -> Int64 {
        try WorkspaceSettingsValidator.validate(values: values, locks: locks)
        let encoder = JSONEncoder.sentinel
        try tx.db.execute(sql: """
            INSERT INTO policy_versions (scope, "values", locks, created_by, created_at) VALUES (?, ?, ?, ?, ?)
            """, arguments: [scope, String(decoding: try encoder.encode(values), as: UTF8.self),
                             String(decoding: try encoder.encode(locks.sorted()), as: UTF8.self), actor, tx.now.epoch])
        let id = tx.db.lastInsertedRowID
        try tx.append(DomainEvent(type: "PolicyVersionCreated", subject: "policy:\(scope)", payload: [
            "version_id": String(id), "scope": scope, "by": actor, "keys": values.keys.sorted().joined(separator: ","),
            "locks": locks.sorted().joined(separator: ",")]))
        return id
    }

    /// What a repository's saved settings set that a workspace lock keeps from applying: told when
    /// they are saved (a save with a locked key was "saved" without a word; only `config explain`
    /// showed it).
    public static func repositorySettingsNotApplied(_ repositoryID: Int64, in db: Database) throws -> [LockViolation] {
        try resolve(in: db, repositoryID: repositoryID, fileText: nil).effective.violations.filter { $0.attemptedBy == .repository }
    }

    /// The effective policy for a repository (or for the workspace when `repositoryID` is nil).
    /// An invalid file never stops a run: with errors, the file layer is left out and the
    /// diagnostics are returned for the PR.
    public static func resolve(in db: Database, repositoryID: Int64?, fileText: String?) throws -> Resolved {
        try resolve(in: db, repositoryID: repositoryID, parsed: fileText.map { RepositoryConfigParser.parse($0, file: fileName) })
    }

    /// The same with the repository's file already parsed (from its bytes, as a run reads it), read
    /// at `fileRevision` (the commit a run read it at: recorded as the file layer's version when the
    /// file applies; runs recorded the workspace's and repository's versions alone).
    public static func resolve(in db: Database, repositoryID: Int64?, parsed: ParsedConfig?, fileRevision: String? = nil) throws -> Resolved {
        var layers = [LayerInput(layer: .builtin, values: PolicySchema.defaults)]
        var versions: [String: String] = [:]
        if let workspace = try latest(scope: workspaceScope, in: db) {
            layers.append(LayerInput(layer: .workspace, values: workspace.values, locks: Set(workspace.locks), versionID: String(workspace.id)))
            versions["workspace"] = String(workspace.id)
        }
        if let repositoryID, let repo = try latest(scope: repositoryScope(repositoryID), in: db) {
            layers.append(LayerInput(layer: .repository, values: repo.values, locks: Set(repo.locks), versionID: String(repo.id)))
            versions["repository"] = String(repo.id)
        }
        if let fileRevision, let parsed, !parsed.hasErrors { versions["file"] = fileRevision }
        return try resolve(layers: layers, versions: versions, parsed: parsed, fileRevision: fileRevision)
    }

    /// Built-in defaults plus a repository file, without a workspace (`sentinel review` on a laptop).
    public static func resolve(fileText: String?) throws -> Resolved {
        try resolve(layers: [LayerInput(layer: .builtin, values: PolicySchema.defaults)], versions: [:], fileText: fileText)
    }

    static func resolve(layers base: [LayerInput], versions: [String: String], fileText: String?) throws -> Resolved {
        try resolve(layers: base, versions: versions, parsed: fileText.map { RepositoryConfigParser.parse($0, file: fileName) })
    }

    static func resolve(layers base: [LayerInput], versions: [String: String], parsed: ParsedConfig?, fileRevision: String? = nil) throws -> Resolved {
        var layers = base
        var diagnostics: [ConfigDiagnostic] = []
        if let parsed {
            diagnostics = parsed.diagnostics
            if !parsed.hasErrors { layers.append(parsed.layerInput(versionID: fileRevision)) }
        }
        let effective = PolicyResolver.resolve(layers)
        let policy = ReviewPolicy(effective)
        let settingsPolicy = layers.count == base.count ? policy : ReviewPolicy(PolicyResolver.resolve(base))
        let versionsJSON = String(decoding: try JSONEncoder.sentinel.encode(versions), as: UTF8.self)
        return Resolved(policy: policy, settingsPolicy: settingsPolicy, effective: effective, diagnostics: diagnostics, versionsJSON: versionsJSON)
    }
}
