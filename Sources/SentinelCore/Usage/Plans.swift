import Crypto
import Foundation
import GRDB
import Yams

/// What a workspace may use per calendar month (UTC). `nil` means unlimited.
public struct Plan: Sendable, Codable, Equatable {
    public var name: String
    public var reviewsPerMonth: Int?
    public var tokensPerMonth: Int?
    public var repositories: Int?
    public var seats: Int?

    public init(name: String, reviewsPerMonth: Int?, tokensPerMonth: Int?, repositories: Int?, seats: Int?) {
        self.name = name
        self.reviewsPerMonth = reviewsPerMonth
        self.tokensPerMonth = tokensPerMonth
        self.repositories = repositories
        self.seats = seats
    }

    enum CodingKeys: String, CodingKey {
        case name, repositories, seats
        case reviewsPerMonth = "reviews_per_month"
        case tokensPerMonth = "tokens_per_month"
    }

    /// The plans an appliance knows without any configuration.
    public static let builtIn: [String: Plan] = [
        "free": Plan(name: "free", reviewsPerMonth: 100, tokensPerMonth: 2_000_000, repositories: 5, seats: 5),
        "team": Plan(name: "team", reviewsPerMonth: 2_000, tokensPerMonth: 50_000_000, repositories: 100, seats: 50),
        "enterprise": Plan(name: "enterprise", reviewsPerMonth: nil, tokensPerMonth: nil, repositories: nil, seats: nil),
    ]

    /// Each limit the larger of the two (unlimited beats any number): how a license raises a plan.
    func raised(to other: Plan) -> Plan {
        func larger(_ a: Int?, _ b: Int?) -> Int? { (a == nil || b == nil) ? nil : max(a!, b!) }
        return Plan(name: name, reviewsPerMonth: larger(reviewsPerMonth, other.reviewsPerMonth),
                    tokensPerMonth: larger(tokensPerMonth, other.tokensPerMonth),
                    repositories: larger(repositories, other.repositories), seats: larger(seats, other.seats))
    }
}

/// The appliance's plans: the built-in ones, those defined in `billing.plans_file` (which may
/// redefine a built-in one), raised by a valid license. Workspaces are on `free` unless an admin
/// assigns another plan.
public struct PlanCatalog: Sendable, Equatable {
    public private(set) var plans: [String: Plan]
    /// What the license did, for `sentinel plan list` and the log.
    public private(set) var licenseStatus: String

    public static let defaultPlan = "free"

    public init(plans: [String: Plan] = Plan.builtIn, licenseStatus: String = "no license") {
        self.plans = plans
        self.licenseStatus = licenseStatus
    }

    /// Built-in plans, then the plans file, then the license.
    public static func load(plansFile: String?, licenseFile: String?, verifier: LicenseVerifier = LicenseVerifier(),
                            now: Date = Date()) throws -> PlanCatalog {
        var catalog = PlanCatalog()
        if let plansFile { try catalog.define(fromFile: plansFile) }
        if let licenseFile {
            let license = try verifier.verify(fileAt: licenseFile, now: now)
            catalog.apply(license)
        }
        return catalog
    }

    public func plan(named name: String) -> Plan? { plans[name] }

    /// `plans_file` format: `plans: {NAME: {reviews_per_month: N|unlimited, tokens_per_month: …, repositories: …, seats: …}}`.
    mutating func define(fromFile path: String) throws {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw ConfigError("cannot read plans file \(path)") }
        let root: Any?
        do { root = try Yams.load(yaml: text) } catch { throw ConfigError("\(path): invalid YAML: \(error)") }
        guard let top = root as? [String: Any], let defined = top["plans"] as? [String: Any], top.count == 1 else {
            throw ConfigError("\(path): expected a single top-level key 'plans' mapping plan names to limits")
        }
        for (name, value) in defined {
            guard name.wholeMatch(of: /[a-z0-9][a-z0-9_-]{0,39}/) != nil else {
                throw ConfigError("\(path): plan name '\(name)' must be lowercase letters, digits, - or _")
            }
            guard let limits = value as? [String: Any] else { throw ConfigError("\(path): plans.\(name) must be a mapping of limits") }
            let known: Set = ["reviews_per_month", "tokens_per_month", "repositories", "seats"]
            if let unknown = limits.keys.first(where: { !known.contains($0) }) {
                throw ConfigError("\(path): plans.\(name): unknown limit '\(unknown)' (one of \(known.sorted().joined(separator: ", ")))")
            }
            func limit(_ key: String) throws -> Int? {
                switch limits[key] {
                case nil: return nil
                case let n as Int where n >= 0: return n
                case let s as String where s == "unlimited": return nil
                default: throw ConfigError("\(path): plans.\(name).\(key) must be a non-negative integer or 'unlimited'")
                }
            }
            plans[name] = Plan(name: name, reviewsPerMonth: try limit("reviews_per_month"), tokensPerMonth: try limit("tokens_per_month"),
                               repositories: try limit("repositories"), seats: try limit("seats"))
        }
    }

    mutating func apply(_ license: License) {
        for (name, limits) in license.plans {
            var granted = limits
            granted.name = name
            plans[name] = plans[name].map { $0.raised(to: granted) } ?? granted
        }
        licenseStatus = "licensed to \(license.licensee) until \(license.expiresAt)"
    }
}

/// A license's terms. The file is `{"payload": BASE64(JSON of these terms), "signature":
/// BASE64(Ed25519 signature of the payload bytes)}`, so verification needs no canonical JSON.
public struct License: Codable, Sendable, Equatable {
    public var licensee: String
    /// `YYYY-MM-DD`, UTC; the license is ignored after this day.
    public var expiresAt: String
    /// Plans the license grants or raises (limits only ever go up).
    public var plans: [String: Plan]

    public init(licensee: String, expiresAt: String, plans: [String: Plan]) {
        self.licensee = licensee
        self.expiresAt = expiresAt
        self.plans = plans
    }

    enum CodingKeys: String, CodingKey {
        case licensee, plans
        case expiresAt = "expires_at"
    }

    struct Envelope: Codable {
        var payload: String
        var signature: String
    }

    /// Signs terms into the file format (the vendor's side; tests use it with their own key).
    public func signed(with key: Curve25519.Signing.PrivateKey) throws -> Data {
        let payload = try JSONEncoder.sentinel.encode(self)
        return try JSONEncoder.sentinelPretty.encode(Envelope(payload: payload.base64EncodedString(),
                                                              signature: try key.signature(for: payload).base64EncodedString()))
    }
}

/// Checks a license file against the public keys Sentinel trusts. The vendor's key is compiled
/// in; configuration cannot add keys, or an admin could sign their own entitlements.
public struct LicenseVerifier: Sendable {
    /// The license-signing key of Sentinel's vendor (Ed25519, raw 32 bytes, base64).
    public static let vendorKey = "Poy9HQxIfhnd7nqv+caeGToGB3py2BGKNmfWfu4i33o="

    let trustedKeys: [Curve25519.Signing.PublicKey]

    public init(trustedKeys: [Curve25519.Signing.PublicKey]? = nil) {
        self.trustedKeys = trustedKeys ?? [Data(base64Encoded: Self.vendorKey).flatMap { try? Curve25519.Signing.PublicKey(rawRepresentation: $0) }]
            .compactMap { $0 }
    }

    public func verify(fileAt path: String, now: Date = Date()) throws -> License {
        guard let data = FileManager.default.contents(atPath: path) else { throw ConfigError("cannot read license file \(path)") }
        return try verify(data, source: path, now: now)
    }

    public func verify(_ data: Data, source: String = "license", now: Date = Date()) throws -> License {
        guard let envelope = try? JSONDecoder().decode(License.Envelope.self, from: data),
              let payload = Data(base64Encoded: envelope.payload), let signature = Data(base64Encoded: envelope.signature) else {
            throw ConfigError("\(source): not a Sentinel license file (expected JSON with base64 'payload' and 'signature')")
        }
        guard trustedKeys.contains(where: { $0.isValidSignature(signature, for: payload) }) else {
            throw ConfigError("\(source): the license signature is not valid (altered, or not issued for Sentinel)")
        }
        let license: License
        do { license = try JSONDecoder().decode(License.self, from: payload) } catch {
            throw ConfigError("\(source): the license terms cannot be read: \(error)")
        }
        let today = String(ISO8601.string(now).prefix(10))
        guard license.expiresAt.wholeMatch(of: /\d{4}-\d{2}-\d{2}/) != nil, license.expiresAt >= today else {
            throw ConfigError("\(source): the license expired on \(license.expiresAt)")
        }
        return license
    }
}

/// Where plans come from: the integration point for a billing system. The built-in provider reads
/// the workspace's plan name from control.sqlite and the plan catalog (config + license).
public protocol BillingProvider: Sendable {
    func plan(for workspace: WorkspaceID) async throws -> Plan
}

public struct BuiltinBillingProvider: BillingProvider {
    let control: ControlStore
    public let catalog: PlanCatalog

    public init(control: ControlStore, catalog: PlanCatalog = PlanCatalog()) {
        self.control = control
        self.catalog = catalog
    }

    public func plan(for workspace: WorkspaceID) async throws -> Plan {
        try currentPlan(of: workspace)
    }

    /// A workspace whose plan was removed from the configuration falls back to `free`.
    public func currentPlan(of workspace: WorkspaceID) throws -> Plan {
        let name = try control.workspace(workspace)?.plan ?? PlanCatalog.defaultPlan
        return catalog.plan(named: name) ?? catalog.plan(named: PlanCatalog.defaultPlan) ?? Plan.builtIn[PlanCatalog.defaultPlan]!
    }

    /// Assigns a plan (appliance admins).
    public func assign(_ name: String, to workspace: WorkspaceID) throws {
        guard catalog.plan(named: name) != nil else {
            throw StorageError.invalid("unknown plan '\(name)' (one of \(catalog.plans.keys.sorted().joined(separator: ", ")))")
        }
        guard try control.workspace(workspace) != nil else { throw WorkspaceError.notFound(workspace.rawValue) }
        try control.pool.write { db in
            try db.execute(sql: "UPDATE workspaces SET plan = ? WHERE id = ?", arguments: [name, workspace.rawValue])
        }
    }
}

/// A limit near or at its end, reported by `sentinel usage` and as a `PlanSoftLimitReached`
/// event (once per limit and month) when a run takes it past 80%.
public struct PlanLimitStatus: Codable, Sendable, Equatable {
    public var limit: String
    public var used: Int
    public var allowed: Int
    public var softLimitReached: Bool

    enum CodingKeys: String, CodingKey {
        case limit, used, allowed
        case softLimitReached = "soft_limit_reached"
    }
}

/// The plan checks. The run check happens inside the transaction that marks the run running, so
/// concurrent runs of one workspace cannot together exceed a limit.
public enum PlanLimits {
    public static let softLimitShare = 0.8

    static func monthStart(_ now: Date) -> Double {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar.date(from: calendar.dateComponents([.year, .month], from: now))!.timeIntervalSince1970
    }

    static func reviewsUsed(excluding runID: Int64?, in db: Database, now: Date) throws -> Int {
        try Int.fetchOne(db, sql: """
            SELECT count(*) FROM review_runs WHERE id != ? AND started_at >= ? AND state IN ('running','completed','failed')
            """, arguments: [runID ?? -1, monthStart(now)]) ?? 0
    }

    static func tokensUsed(in db: Database, now: Date) throws -> Int {
        try Int.fetchOne(db, sql: "SELECT coalesce(sum(input_tokens + output_tokens), 0) FROM usage_records WHERE recorded_at >= ?",
                         arguments: [monthStart(now)]) ?? 0
    }

    /// A reason when starting one more review would exceed the plan, else nil.
    public static func reasonToSkip(runID: Int64, plan: Plan, in db: Database, now: Date) throws -> String? {
        if let limit = plan.reviewsPerMonth {
            let used = try reviewsUsed(excluding: runID, in: db, now: now)
            if used >= limit {
                return "plan_limit: the workspace's \(plan.name) plan allows \(limit) reviews per month and \(used) have run this month"
            }
        }
        if let limit = plan.tokensPerMonth {
            let used = try tokensUsed(in: db, now: now)
            if used >= limit {
                return "plan_limit: the workspace's \(plan.name) plan allows \(limit) AI tokens per month and \(used) are used"
            }
        }
        return nil
    }

    /// Where the workspace stands against its monthly limits (`runID`: a run about to start, counted).
    public static func status(plan: Plan, startingRun runID: Int64? = nil, in db: Database, now: Date) throws -> [PlanLimitStatus] {
        var out: [PlanLimitStatus] = []
        if let limit = plan.reviewsPerMonth {
            let used = try reviewsUsed(excluding: runID, in: db, now: now) + (runID == nil ? 0 : 1)
            out.append(PlanLimitStatus(limit: "reviews_per_month", used: used, allowed: limit, softLimitReached: reached(used, limit)))
        }
        if let limit = plan.tokensPerMonth {
            let used = try tokensUsed(in: db, now: now)
            out.append(PlanLimitStatus(limit: "tokens_per_month", used: used, allowed: limit, softLimitReached: reached(used, limit)))
        }
        if let limit = plan.repositories {
            let used = try RepositoryStore.enabledCount(in: db)
            out.append(PlanLimitStatus(limit: "repositories", used: used, allowed: limit, softLimitReached: reached(used, limit)))
        }
        return out
    }

    static func reached(_ used: Int, _ limit: Int) -> Bool { Double(used) >= softLimitShare * Double(limit) }

    /// Appends `PlanSoftLimitReached` for each limit past 80%, once per limit and month.
    public static func recordSoftLimits(plan: Plan, startingRun runID: Int64?, in tx: inout WorkspaceTransaction) throws {
        let period = UsageReport.currentPeriod(now: tx.now)
        for status in try status(plan: plan, startingRun: runID, in: tx.db, now: tx.now) where status.softLimitReached {
            let key = "soft_limit:\(status.limit):\(status.limit == "repositories" ? "any" : period)"
            try tx.db.execute(sql: "INSERT OR IGNORE INTO workspace_meta (key, value) VALUES (?, ?)", arguments: [key, String(status.used)])
            if tx.db.changesCount == 1 {
                try tx.append(DomainEvent(type: "PlanSoftLimitReached", subject: "plan:\(plan.name)", payload: [
                    "plan": plan.name, "limit": status.limit, "used": String(status.used), "allowed": String(status.allowed), "period": period,
                ]))
            }
        }
    }
}

/// An action refused because it would exceed the workspace's plan.
public struct PlanLimitError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public var description: String { message }
}
