import Foundation
import GRDB

/// A workspace's AI provider as admins see it: the key is never returned, only its last four characters.
public struct ProviderSummary: Codable, Sendable, Equatable {
    public var id: String
    public var kind: String
    public var model: String
    public var baseURL: String?
    public var apiVersion: String?
    public var deployment: String?
    public var keySuffix: String?
    public var enabled: Bool
    public var priority: Int
    public var createdAt: String
    public var updatedAt: String
}

/// A provider with its decrypted key, in memory only, for building the router of one run.
public struct StoredProvider: Sendable {
    public let summary: ProviderSummary
    public let apiKey: String?
}

/// BYOK keys per workspace (SPEC §7): added, rotated, disabled, deleted; sealed with the master key
/// and bound to the provider id; every change is an audit event without the key.
public struct ProviderStore: Sendable {
    public static let kinds = ["openai", "azure-openai", "anthropic", "gemini", "openai-compatible"]
    public static let defaultModels = ["openai": "gpt-4o-mini", "azure-openai": "gpt-4o-mini", "anthropic": "claude-3-5-sonnet-latest",
                                       "gemini": "gemini-1.5-flash", "openai-compatible": "llama3.1"]
    let masterKey: MasterKey
    /// Which base URLs may use plain http (`security.plain_http_hosts`).
    let destinations: DestinationPolicy
    /// What a provider's API key is sealed for (the AES-GCM associated data).
    static func context(_ id: String) -> String { "provider:\(id):api_key" }

    /// AI providers a workspace may have: a failing call falls back through them all in turn.
    public static let maxPerWorkspace = 20

    public init(masterKey: MasterKey, destinations: DestinationPolicy = DestinationPolicy()) {
        self.masterKey = masterKey
        self.destinations = destinations
    }

    static func suffix(_ key: String) -> String { String(key.suffix(4)) }

    /// Where a provider stands in the order providers are tried (lower first); 100 unless set.
    public static let priorities = 0...10_000
    /// The longest text each field takes (the API document's `maxLength` of the same fields).
    public static let maxLengths = ["api_key": 1000, "model": 200, "base_url": 500, "api_version": 50, "deployment": 200]

    static func checkPriority(_ priority: Int) throws {
        guard priorities.contains(priority) else {
            throw IntegrationError.invalid("priority: must be a whole number from \(priorities.lowerBound) to \(priorities.upperBound)")
        }
    }

    /// A field's text under the API's rules for it: its length, and no control characters.
    static func checkText(_ text: String?, field: String) throws {
        guard let text, let max = maxLengths[field] else { return }
        if let problem = TextRules.problem(text, maxLength: max) { throw IntegrationError.invalid("\(field): \(problem)") }
    }

    public func add(kind: String, apiKey: String?, model: String?, baseURL: URL?, apiVersion: String? = nil, deployment: String? = nil,
                    priority: Int = 100, by actor: String, in workspace: WorkspaceActor) async throws -> ProviderSummary {
        guard Self.kinds.contains(kind) else { throw IntegrationError.invalid("unknown provider kind '\(kind)' (one of \(Self.kinds.joined(separator: ", ")))") }
        let key = apiKey?.trimmingCharacters(in: .whitespacesAndNewlines)
        // A model name is matched against prices and ai.allowed_models as it is: ` gpt-4o ` matched neither.
        let model = model?.trimmingCharacters(in: .whitespacesAndNewlines)
        try Self.checkText(key, field: "api_key")
        try Self.checkText(model, field: "model")
        try Self.checkText(baseURL?.absoluteString, field: "base_url")
        try Self.checkText(apiVersion, field: "api_version")
        try Self.checkText(deployment, field: "deployment")
        try Self.checkPriority(priority)
        if kind != "openai-compatible", key?.isEmpty ?? true { throw IntegrationError.invalid("an API key is required for \(kind)") }
        if kind == "openai-compatible", baseURL == nil { throw IntegrationError.invalid("openai-compatible providers need --base-url") }
        if kind == "azure-openai", baseURL == nil || (deployment ?? "").isEmpty {
            throw IntegrationError.invalid("azure-openai needs --base-url (https://RESOURCE.openai.azure.com) and a deployment name")
        }
        // A deployment runs whatever model it was made with: its calls are priced, and checked
        // against ai.allowed_models, by the model named here (a default of gpt-4o-mini priced a
        // gpt-4o deployment at a sixteenth of its cost).
        if kind == "azure-openai", (model ?? "").isEmpty {
            throw IntegrationError.invalid("azure-openai needs the model its deployment runs (--model gpt-4o, …): its calls are priced by it")
        }
        if let baseURL { try validate(baseURL) }
        // The API version goes into the query as it is: it is a date, `2024-10-21` or `2024-10-01-preview`.
        if let apiVersion, !apiVersion.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == ".") }) {
            throw IntegrationError.invalid("api_version must be letters, digits, '-' and '.' (like 2024-10-21)")
        }
        let chosenModel = (model?.isEmpty == false ? model : Self.defaultModels[kind]) ?? ""
        let id = "prv_" + RandomIdentifier.uuid().replacingOccurrences(of: "-", with: "").prefix(16).lowercased()
        let sealed = try key.flatMap { $0.isEmpty ? nil : try masterKey.seal(Data($0.utf8), context: Self.context(id)) }
        let suffix = key.flatMap { $0.isEmpty ? nil : Self.suffix($0) }
        try await workspace.write { tx in
            guard try Int.fetchOne(tx.db, sql: "SELECT count(*) FROM ai_providers") ?? 0 < Self.maxPerWorkspace else {
                throw IntegrationError.limitReached("a workspace has at most \(Self.maxPerWorkspace) AI providers; remove one it no longer uses first")
            }
            try tx.db.execute(sql: """
                INSERT INTO ai_providers (id, kind, model, base_url, api_version, deployment, api_key, key_suffix, enabled, priority, created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)
                """, arguments: [id, kind, chosenModel, baseURL?.absoluteString, apiVersion, deployment, sealed, suffix, priority, tx.now.epoch, tx.now.epoch])
            try tx.append(DomainEvent(type: "ProviderAdded", subject: "provider:\(id)", payload: ["kind": kind, "model": chosenModel, "by": actor]))
        }
        return try await get(id, in: workspace)
    }

    public func rotate(_ id: String, apiKey: String, by actor: String, in workspace: WorkspaceActor) async throws -> ProviderSummary {
        let key = apiKey.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !key.isEmpty else { throw IntegrationError.invalid("the new API key is empty") }
        try Self.checkText(key, field: "api_key")
        let sealed = try masterKey.seal(Data(key.utf8), context: Self.context(id))
        try await update(id, in: workspace, event: "ProviderKeyRotated", by: actor,
                         sql: "UPDATE ai_providers SET api_key = ?, key_suffix = ?, updated_at = ? WHERE id = ?",
                         arguments: { [sealed, Self.suffix(key), $0, id] })
        return try await get(id, in: workspace)
    }

    public func setEnabled(_ id: String, _ enabled: Bool, by actor: String, in workspace: WorkspaceActor) async throws -> ProviderSummary {
        try await update(id, in: workspace, event: enabled ? "ProviderEnabled" : "ProviderDisabled", by: actor,
                         sql: "UPDATE ai_providers SET enabled = ?, updated_at = ? WHERE id = ?", arguments: { [enabled, $0, id] })
        return try await get(id, in: workspace)
    }

    /// Moves a provider in the order providers are tried (lower first), audited as
    /// `ProviderPriorityChanged` with the new priority.
    public func setPriority(_ id: String, _ priority: Int, by actor: String, in workspace: WorkspaceActor) async throws -> ProviderSummary {
        try Self.checkPriority(priority)
        try await update(id, in: workspace, event: "ProviderPriorityChanged", by: actor, details: ["priority": String(priority)],
                         sql: "UPDATE ai_providers SET priority = ?, updated_at = ? WHERE id = ?", arguments: { [priority, $0, id] })
        return try await get(id, in: workspace)
    }

    public func delete(_ id: String, by actor: String, in workspace: WorkspaceActor) async throws {
        try await update(id, in: workspace, event: "ProviderDeleted", by: actor, sql: "DELETE FROM ai_providers WHERE id = ? AND ? > 0",
                         arguments: { [id, $0] })
    }

    private func update(_ id: String, in workspace: WorkspaceActor, event: String, by actor: String, details: [String: String] = [:], sql: String,
                        arguments: @escaping @Sendable (Double) -> [any DatabaseValueConvertible & Sendable]) async throws {
        try await workspace.write { tx in
            try tx.db.execute(sql: sql, arguments: StatementArguments(arguments(tx.now.epoch)))
            guard tx.db.changesCount == 1 else { throw IntegrationError.notFound("AI provider \(id) does not exist in this workspace") }
            try tx.append(DomainEvent(type: event, subject: "provider:\(id)", payload: details.merging(["by": actor]) { _, by in by }))
        }
    }

    public func get(_ id: String, in workspace: WorkspaceActor) async throws -> ProviderSummary {
        guard let found = try await list(in: workspace).first(where: { $0.id == id }) else { throw IntegrationError.notFound("AI provider \(id) does not exist in this workspace") }
        return found
    }

    public func list(in workspace: WorkspaceActor) async throws -> [ProviderSummary] {
        try await workspace.read { db in try Row.fetchAll(db, sql: "SELECT * FROM ai_providers ORDER BY priority, created_at").map(Self.summary) }
    }

    /// Enabled providers with their keys decrypted, for one run's router.
    public func active(in workspace: WorkspaceActor) async throws -> [StoredProvider] {
        try await stored(in: workspace, where: "enabled = 1")
    }

    /// One provider with its key decrypted, enabled or not (a connection test).
    public func stored(_ id: String, in workspace: WorkspaceActor) async throws -> StoredProvider {
        guard let found = try await stored(in: workspace, where: "id = ?", [id]).first else {
            throw IntegrationError.notFound("AI provider \(id) does not exist in this workspace")
        }
        return found
    }

    private func stored(in workspace: WorkspaceActor, where condition: String, _ arguments: StatementArguments = []) async throws -> [StoredProvider] {
        struct Raw: Sendable { let summary: ProviderSummary; let sealed: Data? }
        let rows = try await workspace.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM ai_providers WHERE \(condition) ORDER BY priority, created_at", arguments: arguments).map {
                Raw(summary: Self.summary($0), sealed: $0["api_key"])
            }
        }
        return try rows.map { raw in
            let key = try raw.sealed.map { String(decoding: try masterKey.open($0, context: Self.context(raw.summary.id)), as: UTF8.self) }
            return StoredProvider(summary: raw.summary, apiKey: key)
        }
    }

    // MARK: Budget

    /// The workspace's AI spending limit per calendar month (UTC), in USD; nil = no limit.
    public func monthlyBudget(in workspace: WorkspaceActor) async throws -> Double? {
        try await workspace.read { db in try Self.monthlyBudget(in: db) }
    }

    public static func monthlyBudget(in db: Database) throws -> Double? {
        try String.fetchOne(db, sql: "SELECT value FROM workspace_settings WHERE key = 'ai.monthly_budget_usd'").flatMap(Double.init)
    }

    /// The largest monthly AI budget taken (a billion USD: 1e308 was taken and shown with 309 digits).
    public static let maxMonthlyBudgetUSD = 1_000_000_000.0

    public func setMonthlyBudget(_ usd: Double?, by actor: String, in workspace: WorkspaceActor) async throws {
        if let usd, !(0...Self.maxMonthlyBudgetUSD).contains(usd) {
            throw IntegrationError.invalid("the budget must be a number of USD from 0 to 1000000000")
        }
        try await workspace.write { tx in
            if let usd {
                try tx.db.execute(sql: """
                    INSERT INTO workspace_settings (key, value) VALUES ('ai.monthly_budget_usd', ?)
                    ON CONFLICT(key) DO UPDATE SET value = excluded.value
                    """, arguments: [String(usd)])
            } else {
                try tx.db.execute(sql: "DELETE FROM workspace_settings WHERE key = 'ai.monthly_budget_usd'")
            }
            try tx.append(DomainEvent(type: "AIBudgetChanged", subject: "workspace", payload: ["usd": usd.map { String($0) } ?? "none", "by": actor]))
        }
    }

    /// Estimated AI cost recorded since the start of the current calendar month (UTC).
    public func spentThisMonth(in workspace: WorkspaceActor, now: Date = Date()) async throws -> Double {
        try await workspace.read { db in try UsageLedger.monthToDate(in: db, now: now).costUSD }
    }

    /// Whether another AI call fits in this month's budget. A budget or spend that cannot be read
    /// answers no: an unmetered call is not made.
    public func budgetLeft(in workspace: WorkspaceActor) async -> Bool {
        let budget: Double?
        do { budget = try await monthlyBudget(in: workspace) } catch { return false }
        guard let budget else { return true }
        guard let spent = try? await spentThisMonth(in: workspace) else { return false }
        return spent < budget
    }

    static func summary(_ row: Row) -> ProviderSummary {
        ProviderSummary(id: row["id"], kind: row["kind"], model: row["model"], baseURL: row["base_url"], apiVersion: row["api_version"],
                        deployment: row["deployment"], keySuffix: row["key_suffix"], enabled: row["enabled"], priority: row["priority"],
                        createdAt: ISO8601.string(Date(timeIntervalSince1970: row["created_at"])),
                        updatedAt: ISO8601.string(Date(timeIntervalSince1970: row["updated_at"])))
    }

    func validate(_ url: URL) throws {
        // https, unless the host is loopback (a local model server) or listed in
        // `security.plain_http_hosts`; private addresses are checked when a call connects.
        do { try destinations.requireSecure(url, field: "base_url") } catch let error as DestinationError {
            throw IntegrationError.invalid(error.description)
        }
        // Paths are appended to the base URL: a query or fragment in it (Azure's "Target URI",
        // `…/chat/completions?api-version=…`, pasted whole) ended up in the middle of every request's path.
        if url.query != nil || url.fragment != nil {
            throw IntegrationError.invalid("base_url must not hold a query or fragment (?… or #…): give the endpoint alone, "
                                           + "e.g. https://NAME.openai.azure.com, and the API version with --api-version")
        }
    }
}
