import Crypto
import Foundation
import GRDB
import SentinelCore
import SentinelTestSupport
import Synchronization
import Testing

@Suite("Plans and licenses")
struct PlanTests {
    func write(_ text: String) throws -> (URL, TemporaryDirectory) {
        let dir = TemporaryDirectory("sentinel-plans")
        let url = dir.url.appendingPathComponent("file")
        try text.write(to: url, atomically: true, encoding: .utf8)
        return (url, dir)
    }

    @Test("a plans file adds plans and redefines built-in ones; mistakes name the plan and the limit")
    func plansFile() throws {
        let (url, dir) = try write("""
            plans:
              growth: {reviews_per_month: 5000, tokens_per_month: 100000000, repositories: 250, seats: unlimited}
              free: {reviews_per_month: 10}
              small: {seats: 3}
            """)
        defer { dir.cleanup() }
        let catalog = try PlanCatalog.load(plansFile: url.path, licenseFile: nil)
        #expect(catalog.plan(named: "growth") == Plan(name: "growth", reviewsPerMonth: 5000, tokensPerMonth: 100_000_000, repositories: 250, seats: nil))
        #expect(catalog.plan(named: "free")?.reviewsPerMonth == 10)
        // A redefined built-in plan keeps the limits the file leaves out (they became unlimited); a new plan's are unlimited.
        #expect(catalog.plan(named: "free")?.tokensPerMonth == Plan.builtIn["free"]?.tokensPerMonth)
        #expect(catalog.plan(named: "free")?.seats == Plan.builtIn["free"]?.seats)
        #expect(catalog.plan(named: "small") == Plan(name: "small", reviewsPerMonth: nil, tokensPerMonth: nil, repositories: nil, seats: 3))
        #expect(catalog.plan(named: "team") == Plan.builtIn["team"])

        for (text, message) in [
            ("plans:\n  x: {reviews_per_month: -1}", "plans.x.reviews_per_month must be a non-negative integer or 'unlimited'"),
            ("plans:\n  x: {reviews: 5}", "plans.x: unknown limit 'reviews'"),
            ("plans:\n  Big Plan: {seats: 1}", "plan name 'Big Plan'"),
            ("growth: {seats: 1}", "expected a single top-level key 'plans'"),
        ] {
            let (bad, badDir) = try write(text)
            defer { badDir.cleanup() }
            #expect { try PlanCatalog.load(plansFile: bad.path, licenseFile: nil) } throws: { error in
                "\(error)".contains(message)
            }
        }
    }

    @Test("a license signed by a trusted key raises limits; altered, expired or foreign licenses are refused")
    func licenses() throws {
        let vendor = Curve25519.Signing.PrivateKey()
        let verifier = LicenseVerifier(trustedKeys: [vendor.publicKey])
        let terms = License(licensee: "Acme Corp", expiresAt: "2030-01-01", plans: [
            "team": Plan(name: "team", reviewsPerMonth: 10_000, tokensPerMonth: 1_000, repositories: nil, seats: 60),
            "platinum": Plan(name: "platinum", reviewsPerMonth: nil, tokensPerMonth: nil, repositories: nil, seats: nil),
        ])
        let now = Date(timeIntervalSince1970: 1_795_000_000)
        let (url, dir) = try write(String(decoding: try terms.signed(with: vendor), as: UTF8.self))
        defer { dir.cleanup() }
        let catalog = try PlanCatalog.load(plansFile: nil, licenseFile: url.path, verifier: verifier, now: now)
        let team = try #require(catalog.plan(named: "team"))
        #expect(team.reviewsPerMonth == 10_000)
        #expect(team.tokensPerMonth == Plan.builtIn["team"]!.tokensPerMonth, "a license never lowers a limit")
        #expect(team.repositories == nil)
        #expect(team.seats == 60)
        #expect(catalog.plan(named: "platinum") != nil)
        #expect(catalog.licenseStatus.contains("Acme Corp"))

        // Altered terms: the signature no longer matches.
        var envelope = try JSONSerialization.jsonObject(with: try terms.signed(with: vendor)) as! [String: String]
        var altered = terms
        altered.plans["free"] = Plan(name: "free", reviewsPerMonth: nil, tokensPerMonth: nil, repositories: nil, seats: nil)
        envelope["payload"] = try JSONEncoder().encode(altered).base64EncodedString()
        #expect { try verifier.verify(try JSONSerialization.data(withJSONObject: envelope), now: now) } throws: {
            "\($0)".contains("signature is not valid")
        }
        // Signed by someone else (an admin's own key is not trusted).
        #expect { try verifier.verify(try terms.signed(with: Curve25519.Signing.PrivateKey()), now: now) } throws: {
            "\($0)".contains("signature is not valid")
        }
        // The compiled-in vendor key does not accept a test key's license.
        #expect(throws: ConfigError.self) { try LicenseVerifier().verify(try terms.signed(with: vendor), now: now) }
        // Expired.
        let expired = License(licensee: "Acme Corp", expiresAt: "2026-01-01", plans: [:])
        #expect { try verifier.verify(try expired.signed(with: vendor), now: now) } throws: { "\($0)".contains("expired on 2026-01-01") }
        #expect { try verifier.verify(Data("not json".utf8), now: now) } throws: { "\($0)".contains("not a Sentinel license file") }
    }

    @Test("a removed repository added back counts against the plan's repository limit like a new one")
    func reAddedRepositoryCountsAgainstLimit() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        let integration = IntegrationID("int_00000000000000aa")!
        @Sendable func delivery(added: [(Int64, String)] = [], removed: [(Int64, String)] = []) -> Data {
            func list(_ repos: [(Int64, String)]) -> String { repos.map { #"{"id":\#($0.0),"full_name":"\#($0.1)"}"# }.joined(separator: ",") }
            return Data(#"{"action":"x","installation":{"id":7},"repositories_added":[\#(list(added))],"repositories_removed":[\#(list(removed))]}"#.utf8)
        }
        let (api, web, docs, count, notEnabled) = try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in
                try tx.db.execute(sql: "INSERT INTO integrations (id, kind, api_url, webhook_secret, created_at) VALUES (?, 'github', 'x', x'00', 0)",
                                  arguments: [integration.rawValue])
                for payload in [delivery(added: [(1, "acme/api")]),      // enabled: 1 of 1
                                delivery(removed: [(1, "acme/api")]),    // uninstalled: 0 of 1
                                delivery(added: [(2, "acme/web")]),      // enabled: 1 of 1
                                delivery(added: [(1, "acme/api")]),      // back, but the plan is full
                                delivery(added: [(3, "acme/docs")])] {   // new and over the limit
                    _ = try GitHubDeliveryProcessor.route(event: "installation_repositories", payload: payload, integrationID: integration,
                                                          correlationID: nil, repositoryLimit: 1, tx: &tx)
                }
                return (try RepositoryStore.find(integrationID: integration, externalID: 1, in: tx.db)!,
                        try RepositoryStore.find(integrationID: integration, externalID: 2, in: tx.db)!,
                        try RepositoryStore.find(integrationID: integration, externalID: 3, in: tx.db)!,
                        try RepositoryStore.enabledCount(in: tx.db),
                        try EventLog.read(after: 0, limit: 20, types: ["RepositoryNotEnabled"], in: tx.db))
            }
        }
        #expect(web.enabled)
        #expect(!api.removed)
        #expect(!api.enabled, "a repository coming back over the limit comes back disabled")
        #expect(!docs.enabled)
        #expect(count == 1)
        #expect(notEnabled.map(\.subject) == ["repository:\(api.id)", "repository:\(docs.id)"])
        #expect(notEnabled.first?.data.contains("plan_limit: 1 enabled repositories allowed") == true)
        // With room under the limit, a repository comes back as it was.
        let back = try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in
                for payload in [delivery(removed: [(2, "acme/web")]), delivery(added: [(2, "acme/web")])] {
                    _ = try GitHubDeliveryProcessor.route(event: "installation_repositories", payload: payload, integrationID: integration,
                                                          correlationID: nil, repositoryLimit: 1, tx: &tx)
                }
                return try RepositoryStore.find(integrationID: integration, externalID: 2, in: tx.db)!
            }
        }
        #expect(back.enabled && !back.removed)
        await h.stop()
    }

    @Test("an installation's repositories are registered counting the enabled ones once per delivery (once per repository, 50,000 held the writer for minutes); the limit still holds")
    func manyRepositoriesCountedOnce() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        let integration = IntegrationID("int_00000000000000ac")!
        let list = (1...200).map { #"{"id":\#($0),"full_name":"bigorg/r\#($0)"}"# }.joined(separator: ",")
        let payload = Data(#"{"action":"added","installation":{"id":9},"repositories_added":[\#(list)],"repositories_removed":[]}"#.utf8)
        let counts = Mutex(0)
        let (enabled, refused) = try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in
                try tx.db.execute(sql: "INSERT INTO integrations (id, kind, api_url, webhook_secret, created_at) VALUES (?, 'github', 'x', x'00', 0)",
                                  arguments: [integration.rawValue])
                tx.db.trace(options: .statement) { event in
                    if "\(event)".contains("SELECT count(*) FROM repositories") { counts.withLock { $0 += 1 } }
                }
                _ = try GitHubDeliveryProcessor.route(event: "installation_repositories", payload: payload, integrationID: integration,
                                                      correlationID: nil, repositoryLimit: 3, tx: &tx)
                tx.db.trace(options: .statement, nil)
                return (try RepositoryStore.enabledCount(in: tx.db),
                        try EventLog.read(after: 0, limit: 500, types: ["RepositoryNotEnabled"], in: tx.db).count)
            }
        }
        #expect(counts.withLock { $0 } == 1)
        #expect(enabled == 3 && refused == 197)
        await h.stop()
    }

    @Test("an installation suspended and unsuspended without a repositories list gets its repositories back as they were; one removed before stays removed")
    func unsuspendBringsRepositoriesBack() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        let integration = IntegrationID("int_00000000000000ab")!
        let (outcome, repos) = try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in
                try tx.db.execute(sql: "INSERT INTO integrations (id, kind, api_url, webhook_secret, created_at) VALUES (?, 'github', 'x', x'00', 0)",
                                  arguments: [integration.rawValue])
                func route(_ event: String, _ json: String) throws -> String {
                    try GitHubDeliveryProcessor.route(event: event, payload: Data(json.utf8), integrationID: integration, correlationID: nil, tx: &tx)
                }
                _ = try route("installation", #"{"action":"created","installation":{"id":7},"repositories":[{"id":1,"full_name":"acme/api"},{"id":2,"full_name":"acme/web"},{"id":3,"full_name":"acme/docs"}]}"#)
                _ = try route("installation_repositories", #"{"action":"removed","installation":{"id":7},"repositories_added":[],"repositories_removed":[{"id":3,"full_name":"acme/docs"}]}"#)
                let web = try #require(try RepositoryStore.find(integrationID: integration, externalID: 2, in: tx.db))
                _ = try RepositoryStore.setEnabled(false, id: web.id, plan: nil, in: &tx)
                // A repository listed twice is one repository (the outcome counted entries).
                #expect(try route("installation_repositories", #"{"action":"added","installation":{"id":7},"repositories_added":[{"id":1,"full_name":"acme/api"},{"id":1,"full_name":"acme/api"}],"repositories_removed":[]}"#) == "added 1, removed 0 repositories")
                #expect(try route("installation", #"{"action":"suspend","installation":{"id":7}}"#) == "removed 2 repositories of installation 7")
                #expect(try RepositoryStore.all(in: tx.db).allSatisfy(\.removed))
                let outcome = try route("installation", #"{"action":"unsuspend","installation":{"id":7}}"#)
                return (outcome, try RepositoryStore.all(in: tx.db))
            }
        }
        #expect(outcome == "registered 2 repositories")
        let byName = Dictionary(uniqueKeysWithValues: repos.map { ($0.fullName, $0) })
        #expect(byName["acme/api"]?.removed == false && byName["acme/api"]?.enabled == true)
        #expect(byName["acme/web"]?.removed == false && byName["acme/web"]?.enabled == false, "it comes back disabled, as it was")
        #expect(byName["acme/docs"]?.removed == true, "removed from the installation before the suspension: not brought back")
        await h.stop()
    }

    @Test("the soft limit is reported once per limit and month")
    func softLimitOncePerMonth() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        let plan = Plan(name: "small", reviewsPerMonth: 10, tokensPerMonth: 1_000, repositories: nil, seats: nil)
        let events = try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in
                try tx.db.execute(sql: """
                    INSERT INTO usage_records (call_key, provider, model, input_tokens, output_tokens, recorded_at) VALUES ('k', 'openai', 'm', 700, 150, ?)
                    """, arguments: [tx.now.timeIntervalSince1970])
                try PlanLimits.recordSoftLimits(plan: plan, startingRun: nil, in: &tx)
                try PlanLimits.recordSoftLimits(plan: plan, startingRun: nil, in: &tx)
            }
            return try await actor.read { db in try EventLog.read(after: 0, limit: 10, types: ["PlanSoftLimitReached"], in: db) }
        }
        #expect(events.count == 1)
        #expect(events.first?.data.contains("\"limit\":\"tokens_per_month\"") == true)
        #expect(events.first?.data.contains("\"used\":\"850\"") == true)
        // Moved to a plan with another limit in the same month: told again as it nears that one
        // (the key held the limit's name and month only, so it never was).
        let larger = Plan(name: "larger", reviewsPerMonth: 10, tokensPerMonth: 1_050, repositories: nil, seats: nil)
        let again = try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in
                try PlanLimits.recordSoftLimits(plan: larger, startingRun: nil, in: &tx)
                try PlanLimits.recordSoftLimits(plan: larger, startingRun: nil, in: &tx)
            }
            return try await actor.read { db in try EventLog.read(after: 0, limit: 10, types: ["PlanSoftLimitReached"], in: db) }
        }
        #expect(again.count == 2)
        // A notice given under the earlier versions' key (no allowed number) counts: not told again after an upgrade.
        let third = Plan(name: "third", reviewsPerMonth: 10, tokensPerMonth: 1_060, repositories: nil, seats: nil)
        let upgraded = try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in
                try tx.db.execute(sql: "INSERT INTO workspace_meta (key, value) VALUES (?, '850')",
                                  arguments: ["soft_limit:tokens_per_month:" + UsageReport.currentPeriod(now: tx.now)])
                try PlanLimits.recordSoftLimits(plan: third, startingRun: nil, in: &tx)
            }
            return try await actor.read { db in try EventLog.read(after: 0, limit: 10, types: ["PlanSoftLimitReached"], in: db) }
        }
        #expect(upgraded.count == 2, "\(upgraded.map(\.data))")
        #expect(again.last?.data.contains("\"allowed\":\"1050\"") == true && again.last?.data.contains("\"plan\":\"larger\"") == true)
        await h.stop()
    }

    @Test("a review superseded or cancelled after it called a model counts toward reviews_per_month (pushing on made reviews past the limit for good); one superseded before it called one does not")
    func startedRunsThatCalledAModelCount() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        let used = try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx -> Int in
                try tx.db.execute(sql: "INSERT INTO integrations (id, kind, api_url, webhook_secret, created_at) VALUES ('int_0000000000000001', 'github', 'x', x'00', 0)")
                let repo = try RepositoryStore.register(integrationID: IntegrationID("int_0000000000000001")!, externalID: 1, fullName: "acme/api",
                                                        installationID: 1, in: &tx)
                for (i, state) in [RunState.completed, .superseded, .skipped, .superseded, .failed].enumerated() {
                    let (run, _) = try ReviewRunStore.request(repository: repo, prNumber: i + 1, headSHA: "abc\(i)", baseSHA: nil, trigger: "opened",
                                                              fullReview: false, correlationID: nil, in: &tx)
                    try tx.db.execute(sql: "UPDATE review_runs SET started_at = ?, state = ? WHERE id = ?", arguments: [tx.now.timeIntervalSince1970, state.rawValue, run])
                    // Runs 2 (superseded) and 3 (cancelled: skipped) called a model before they ended; run 4 did not.
                    if i == 1 || i == 2 {
                        try tx.db.execute(sql: """
                            INSERT INTO usage_records (run_id, call_key, provider, model, input_tokens, output_tokens, recorded_at)
                            VALUES (?, ?, 'openai', 'm', 10, 1, ?)
                            """, arguments: [run, "k\(i)", tx.now.timeIntervalSince1970])
                    }
                }
                return try PlanLimits.reviewsUsed(excluding: nil, in: tx.db, now: tx.now)
            }
        }
        #expect(used == 4)
        await h.stop()
    }

    @Test("a run defers the commit's status to a newer run of the commit only once that run has set it (one cancelled while queued never does, and the status stayed running for good)")
    func newerRunOwnsStatusOnlyOnceSet() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        let (before, after) = try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx -> (Bool, Bool) in
                try tx.db.execute(sql: "INSERT INTO integrations (id, kind, api_url, webhook_secret, created_at) VALUES ('int_0000000000000002', 'gitlab', 'x', x'00', 0)")
                let repo = try RepositoryStore.register(integrationID: IntegrationID("int_0000000000000002")!, externalID: 1, fullName: "acme/api",
                                                        installationID: nil, in: &tx)
                let (older, _) = try ReviewRunStore.request(repository: repo, prNumber: 1, headSHA: "abc", baseSHA: nil, trigger: "opened",
                                                            fullReview: false, correlationID: nil, in: &tx)
                let (newer, _) = try ReviewRunStore.request(repository: repo, prNumber: 1, headSHA: "abc", baseSHA: nil, trigger: "command:9",
                                                            fullReview: false, correlationID: nil, in: &tx)
                let run = try #require(try ReviewRunStore.find(older, in: tx.db))
                let before = try ReviewRunStore.hasNewerRun(than: run, in: tx.db)
                try tx.db.execute(sql: "UPDATE review_runs SET check_run_id = 'abc@\(newer)' WHERE id = ?", arguments: [newer])
                return (before, try ReviewRunStore.hasNewerRun(than: run, in: tx.db))
            }
        }
        #expect(!before && after)
        await h.stop()
    }
}
