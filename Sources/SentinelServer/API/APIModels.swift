import Foundation
import GRDB
import SentinelCore

/// The API's response bodies and their schemas. Each type here is encoded as its schema in
/// `APISchemas.components` says; the OpenAPI conformance run (schemathesis in CI) checks that.
enum APIModels {
    static func time(_ epoch: Double) -> String { ISO8601.string(Date(timeIntervalSince1970: epoch)) }
    static func time(_ epoch: Double?) -> String? { epoch.map { time($0) } }

    struct UserOut: Encodable, Sendable {
        let id: String
        let email: String
        let isAdmin: Bool
        let createdAt: String
        enum CodingKeys: String, CodingKey { case id, email, isAdmin = "is_admin", createdAt = "created_at" }
        init(_ u: User) { (id, email, isAdmin, createdAt) = (u.id, u.email, u.isAdmin, APIModels.time(u.createdAt)) }
    }

    struct SessionOut: Encodable, Sendable {
        let token: String
        let expiresAt: String
        let user: UserOut
        enum CodingKeys: String, CodingKey { case token, user, expiresAt = "expires_at" }
    }

    struct MyWorkspace: Encodable, Sendable {
        let id: String
        let name: String
        let plan: String
        let role: WorkspaceRole
    }

    struct MeOut: Encodable, Sendable {
        let user: UserOut
        let workspaces: [MyWorkspace]
        let scopes: [TokenScope]
    }

    struct TokenCreatedOut: Encodable, Sendable {
        let token: String
        let details: APITokenSummary
    }

    struct WorkspaceOut: Encodable, Sendable {
        let id: String
        let name: String
        let plan: String
        let createdAt: String
        let role: WorkspaceRole
        enum CodingKeys: String, CodingKey { case id, name, plan, role, createdAt = "created_at" }
    }

    struct TeamOut: Encodable, Sendable {
        let id: Int64
        let name: String
        let createdAt: String
        let members: [String]
        enum CodingKeys: String, CodingKey { case id, name, members, createdAt = "created_at" }

        init(_ team: Team) {
            self.init(id: team.id, name: team.name, createdAt: APIModels.time(team.createdAt.timeIntervalSince1970), members: team.members)
        }

        init(id: Int64, name: String, createdAt: String, members: [String]) {
            self.id = id
            self.name = name
            self.createdAt = createdAt
            self.members = members
        }
    }

    struct IntegrationOut: Encodable, Sendable {
        let integration: IntegrationSummary
        let webhookURL: String
        enum CodingKeys: String, CodingKey { case integration, webhookURL = "webhook_url" }
    }

    struct RepositoryOut: Encodable, Sendable {
        let id: Int64
        let fullName: String
        let integrationID: String
        let enabled: Bool
        let removed: Bool
        let registeredAt: String
        enum CodingKeys: String, CodingKey {
            case id, enabled, removed
            case fullName = "full_name", integrationID = "integration_id", registeredAt = "registered_at"
        }
        init(_ r: RepositoryRecord) {
            (id, fullName, integrationID, enabled, removed, registeredAt) = (r.id, r.fullName, r.integrationId, r.enabled, r.removed,
                                                                              APIModels.time(r.registeredAt))
        }
    }

    struct SettingsOut: Encodable, Sendable {
        let scope: String
        let versionID: Int64?
        let values: [String: PolicyValue]
        let locks: [String]
        let createdBy: String?
        let createdAt: String?
        enum CodingKeys: String, CodingKey {
            case scope, values, locks
            case versionID = "version_id", createdBy = "created_by", createdAt = "created_at"
        }
        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(scope, forKey: .scope)
            try c.encode(versionID, forKey: .versionID)
            try c.encode(values, forKey: .values)
            try c.encode(locks, forKey: .locks)
            try c.encode(createdBy, forKey: .createdBy)
            try c.encode(createdAt, forKey: .createdAt)
        }
        init(scope: String, _ v: PolicyVersion?) {
            self.scope = scope
            (versionID, values, locks, createdBy, createdAt) = (v?.id, v?.values ?? [:], v?.locks ?? [], v?.createdBy, v?.createdAt)
        }
    }

    struct RunOut: Encodable, Sendable {
        let id: Int64
        let repositoryID: Int64
        let repository: String
        let prNumber: Int
        let headSHA: String
        let trigger: String
        let state: RunState
        let reason: String?
        let conclusion: String?
        let createdAt: String
        let startedAt: String?
        let finishedAt: String?
        let filesReviewed: Int?
        let filesTotal: Int?
        enum CodingKeys: String, CodingKey {
            case id, repository, trigger, state, reason, conclusion
            case repositoryID = "repository_id", prNumber = "pr_number", headSHA = "head_sha", createdAt = "created_at"
            case startedAt = "started_at", finishedAt = "finished_at", filesReviewed = "files_reviewed", filesTotal = "files_total"
        }
        init(_ r: ReviewRun, repository: String) {
            id = r.id; repositoryID = r.repositoryID; self.repository = repository; prNumber = r.prNumber; headSHA = r.headSHA
            trigger = r.trigger; state = r.state; reason = r.reason; conclusion = r.conclusion; createdAt = APIModels.time(r.createdAt)
            startedAt = APIModels.time(r.startedAt); finishedAt = APIModels.time(r.finishedAt); filesReviewed = r.filesReviewed
            filesTotal = r.filesTotal
        }
    }

    struct FindingOut: Encodable, Sendable {
        let id: Int64
        let path: String
        let line: Int?
        let startLine: Int?
        let side: String?
        let severity: String
        let category: String
        let title: String
        let body: String
        let suggestion: String?
        let source: String
        enum CodingKeys: String, CodingKey {
            case id, path, line, side, severity, category, title, body, suggestion, source
            case startLine = "start_line"
        }
    }

    struct RunDetailOut: Encodable, Sendable {
        let run: RunOut
        let summary: String?
        let findings: [FindingOut]
        let policySHA256: String?
        let policyVersions: [String: String]?
        let policySnapshot: JSONValueOut?
        enum CodingKeys: String, CodingKey {
            case run, summary, findings
            case policySHA256 = "policy_sha256", policyVersions = "policy_versions", policySnapshot = "policy_snapshot"
        }
    }

    struct RunAccepted: Encodable, Sendable {
        let runID: Int64
        let created: Bool
        enum CodingKeys: String, CodingKey { case created, runID = "run_id" }
    }

    struct AuditEventOut: Encodable, Sendable {
        let seq: Int64
        let id: String
        let type: String
        let occurredAt: String
        let subject: String?
        let data: JSONValueOut
        enum CodingKeys: String, CodingKey { case seq, id, type, subject, data, occurredAt = "occurred_at" }
    }
}

/// Stored JSON passed through to a response as it is.
struct JSONValueOut: Encodable, Sendable {
    let value: JSONValue

    init?(text: String?) {
        guard let text, let v = try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) else { return nil }
        value = v
    }

    func encode(to encoder: Encoder) throws {
        try Self.encode(value, to: encoder)
    }

    static func encode(_ value: JSONValue, to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch value {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .int(let i): try c.encode(i)
        case .double(let d): try c.encode(d)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a.map { JSONValueOut(raw: $0) })
        case .object(let o): try c.encode(o.mapValues { JSONValueOut(raw: $0) })
        }
    }

    init(raw: JSONValue) { value = raw }
}
