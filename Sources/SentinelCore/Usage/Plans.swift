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
    /// The license's last day (`YYYY-MM-DD`), when one is applied.
    public private(set) var licenseExpiry: String?

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
        try AliasScanner.check(text, file: path)
        do { root = try Yams.load(yaml: text) } catch { throw ConfigError.invalidYAML(path, error) }
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
            // A built-in plan redefined keeps the limits left out (`free: {seats: 10}` made free's
            // reviews, tokens and repositories unlimited); a new plan's are unlimited.
            let base = Plan.builtIn[name]
            func limit(_ key: String, _ inherited: Int?) throws -> Int? {
                switch limits[key] {
                case nil: return inherited
                case let n as Int where n >= 0: return n
                case let s as String where s == "unlimited": return nil
                default: throw ConfigError("\(path): plans.\(name).\(key) must be a non-negative integer or 'unlimited'")
                }
            }
            plans[name] = Plan(name: name, reviewsPerMonth: try limit("reviews_per_month", base?.reviewsPerMonth),
                               tokensPerMonth: try limit("tokens_per_month", base?.tokensPerMonth),
                               repositories: try limit("repositories", base?.repositories), seats: try limit("seats", base?.seats))
        }
    }

    mutating func apply(_ license: License) {
        for (name, limits) in license.plans {
            var granted = limits
            granted.name = name
            plans[name] = plans[name].map { $0.raised(to: granted) } ?? granted
        }
        licenseStatus = "licensed to \(license.licensee) until \(license.expiresAt)"
        licenseExpiry = license.expiresAt
    }
}
