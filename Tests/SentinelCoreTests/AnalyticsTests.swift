import Crypto
import Foundation
import GRDB
import SentinelCore
import SentinelTestSupport
import Testing

/// Synthetic activity written straight into workspace files with chosen timestamps: runs of every
/// outcome over several days and repositories, AI usage with costs, and events whose payloads
/// carry the characters a COPY dump must escape.
struct ActivityGenerator {
    static let base = Date(timeIntervalSince1970: 1_795_000_000)  // 2026-11-17

    static func write(into workspace: WorkspaceActor, seed: Int, days: Int = 3, runsPerDay: Int = 5, offsetDays: Int = 0) async throws {
        try await workspace.write { tx in
            for d in 0..<days {
                for r in 0..<runsPerDay {
                    let i = seed * 1_000 + d * 100 + r
                    let at = base.addingTimeInterval(Double(d + offsetDays) * 86_400 + Double(r) * 3_601 + Double(seed * 7))
                    let repository = ["acme/api", "acme/web", "acme/docs"][i % 3]
                    let state = Rollups.outcomes[i % 4]
                    let counts = [FindingCount(severity: "high", category: "security", count: i % 3),
                                  FindingCount(severity: "low", category: "style", count: (i % 5) + 1)].filter { $0.count > 0 }
                    var payload: [String: Any] = [
                        "run_id": i, "repository": repository, "platform": i % 2 == 0 ? "github" : "gitlab", "pr_number": i % 17,
                        "head_sha": "sha\(i)", "trigger": "opened",
                        "state": state, "findings": counts.reduce(0) { $0 + $1.count },
                        "finding_counts": counts.map { ["severity": $0.severity, "category": $0.category, "count": $0.count] },
                    ]
                    if state != "superseded" { payload["duration_ms"] = 500 + (i * 37) % 4_000 }
                    try EventLog.append(DomainEvent(type: "RunCompleted", subject: "run:\(i)",
                                                    data: try JSONSerialization.data(withJSONObject: payload)),
                                        in: tx.db, now: at, listeners: [])
                    try EventLog.append(try DomainEvent(type: "UsageRecorded", subject: "run:\(i)", payload: [
                        "repository": repository, "platform": i % 2 == 0 ? "github" : "gitlab", "provider": "openai", "model": "gpt-4o",
                        "input_tokens": String(1_000 + i), "output_tokens": String(100 + i % 50),
                        "cost_usd": String(format: "%.6f", Double(i % 97) * 0.000137 + 0.000001)]), in: tx.db, now: at.addingTimeInterval(1), listeners: [])
                }
                try EventLog.append(try DomainEvent(type: "PolicyVersionCreated", subject: "policy:workspace", payload: [
                    "note": "tab\there, newline\nthere, backslash \\ and \\N, quote ' \" , unicode é ✓ 🚀, cr\r",
                ]), in: tx.db, now: base.addingTimeInterval(Double(d + offsetDays) * 86_400 + 50), listeners: [])
            }
        }
    }
}

@Suite("Analytics rollups")
struct RollupTests {
    @Test("a query's days: defaults to the last 30 days; a day off the calendar or a backwards range is refused")
    func queryDays() throws {
        let now = try #require(ISO8601DateFormatter().date(from: "2026-03-31T12:00:00Z"))
        #expect(try Rollups.days(from: nil, to: nil, now: now) == ("2026-03-01", "2026-03-31"))
        #expect(try Rollups.days(from: "2028-02-29", to: "2028-03-01", now: now) == ("2028-02-29", "2028-03-01"))
        for bad in ["2026-02-29", "2026-02-30", "2026-13-01", "2026-00-10", "2026-04-31", "yesterday", "2026-1-01"] {
            #expect(throws: AnalyticsError.self, "\(bad)") { try Rollups.days(from: bad, to: nil, now: now) }
        }
        #expect(throws: AnalyticsError("from (2026-03-02) is after to (2026-03-01)")) { try Rollups.days(from: "2026-03-02", to: "2026-03-01", now: now) }
    }

    @Test("rollups fold each event once, however often they are advanced")
    func exactlyOnce() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        try await h.supervisor.withWorkspace(ws) { try await ActivityGenerator.write(into: $0, seed: 1, days: 2, runsPerDay: 4) }
        let (first, second) = try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in try Rollups.catchUp(in: tx.db) }
            let first = try await actor.read { db in try Rollups.query(from: "2000-01-01", to: "2999-12-31", in: db) }
            try await actor.write { tx in try Rollups.catchUp(in: tx.db); try Rollups.advance(in: tx.db) }
            return (first, try await actor.read { db in try Rollups.query(from: "2000-01-01", to: "2999-12-31", in: db) })
        }
        #expect(first == second)
        #expect(first.reduce(0) { $0 + $1.runs } == 8)
        #expect(first.reduce(0) { $0 + $1.aiCalls } == 8)
        // Every run's outcome is counted under exactly one outcome.
        for day in first { #expect(day.runsByOutcome.values.reduce(0, +) == day.runs) }
        let bySeverity = first.reduce(into: [String: Int]()) { acc, r in r.findingsBySeverity.forEach { acc[$0.key, default: 0] += $0.value } }
        #expect(bySeverity.values.reduce(0, +) == first.reduce(0) { $0 + $1.findings })
        await h.stop()
    }

    @Test("p50 and p95 use nearest rank, as PostgreSQL's percentile_disc does")
    func percentiles() {
        #expect(Rollups.percentile(0.5, of: []) == nil)
        #expect(Rollups.percentile(0.5, of: [7]) == 7)
        #expect(Rollups.percentile(0.5, of: [1, 2, 3, 4]) == 2)
        #expect(Rollups.percentile(0.95, of: Array(1...20)) == 19)
        #expect(Rollups.percentile(0.95, of: Array(1...21)) == 20)
    }

    @Test("a finished review run's event carries its findings by severity and category; run and usage events name the platform")
    func runCompletedCarriesBreakdown() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        let data = try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx -> [String] in
                let integration = IntegrationID("int_0123456789abcdef")!
                try tx.db.execute(sql: "INSERT INTO integrations (id, kind, api_url, webhook_secret, created_at) VALUES (?, 'github', 'x', x'00', 0)",
                                  arguments: [integration.rawValue])
                let repo = try RepositoryStore.register(integrationID: integration, externalID: 1, fullName: "acme/api", installationID: nil, in: &tx)
                let (run, _) = try ReviewRunStore.request(repository: repo, prNumber: 3, headSHA: "abc", baseSHA: nil, trigger: "opened",
                                                          fullReview: false, correlationID: nil, in: &tx)
                for (sev, cat) in [("high", "security"), ("high", "security"), ("low", "style")] {
                    try tx.db.execute(sql: """
                        INSERT INTO findings (run_id, repository_id, pr_number, path, line, side, severity, category, title, body, source, fingerprint, posted)
                        VALUES (?, ?, 3, 'a.swift', 1, 'RIGHT', ?, ?, 't', 'b', 'ai', ?, 1)
                        """, arguments: [run, repo.id, sev, cat, UUID().uuidString])
                }
                try UsageLedger.record([(call: ModelCallRecord(chunk: 0, attempt: 1, provider: "prv_x", model: "m", usage: TokenUsage(inputTokens: 9),
                                                               parsed: true), costUSD: 0.01)], runID: run, repository: repo.fullName, jobAttempt: 1, in: &tx)
                try ReviewRunStore.finish(runID: run, state: .completed, reason: nil, label: "completed", in: &tx)
                return try EventLog.read(after: 0, limit: 100, types: ["RunCreated", "UsageRecorded", "RunCompleted"], in: tx.db).map(\.data)
            }
        }
        #expect(data.count == 3)
        let created = try JSONDecoder.sentinel.decode(RunEventPayload.self, from: Data(data[0].utf8))
        #expect(created.platform == "github")
        let usage = try JSONDecoder.sentinel.decode([String: String].self, from: Data(data[1].utf8))
        #expect(usage["platform"] == "github" && usage["repository"] == "acme/api")
        let payload = try JSONDecoder.sentinel.decode(RunEventPayload.self, from: Data(data[2].utf8))
        #expect(payload.platform == "github")
        #expect(payload.findings == 3)
        #expect(payload.findingCounts == [FindingCount(severity: "high", category: "security", count: 2),
                                          FindingCount(severity: "low", category: "style", count: 1)])
        await h.stop()
    }

    @Test("a local review's calls are recorded once, without run or repository, count toward the month and roll up under no repository")
    func localReviewUsage() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        let call = ModelCallRecord(chunk: 0, attempt: 1, provider: "prv_x", model: "m", usage: TokenUsage(inputTokens: 90, outputTokens: 10), parsed: true)
        struct Seen: Sendable {
            var rows: [(runID: Int64?, callKey: String)] = []
            var events: [StoredEvent] = []
            var month: (tokens: Int, costUSD: Double, calls: Int) = (0, 0, 0)
            var rollup: (repository: String, runs: Int, aiCalls: Int, inputTokens: Int)?
        }
        let seen = try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in
                // Recorded twice (a settled call recorded again): one row, one event.
                for _ in 0..<2 { try UsageLedger.record([(call: call, costUSD: 0.25)], for: .localReview(id: "lr1"), in: &tx) }
                var seen = Seen()
                seen.rows = try Row.fetchAll(tx.db, sql: "SELECT run_id, call_key FROM usage_records").map { ($0["run_id"], $0["call_key"]) }
                seen.events = try EventLog.read(after: 0, limit: 10, types: ["UsageRecorded"], in: tx.db)
                seen.month = try UsageLedger.monthToDate(in: tx.db, now: tx.now)
                try Rollups.catchUp(in: tx.db)
                seen.rollup = try Row.fetchOne(tx.db, sql: "SELECT repository, runs, ai_calls, input_tokens FROM rollup_daily").map {
                    ($0["repository"], $0["runs"], $0["ai_calls"], $0["input_tokens"])
                }
                return seen
            }
        }
        let (rows, events, month) = (seen.rows, seen.events, seen.month)
        #expect(rows.count == 1)
        #expect(rows.first?.runID == nil)
        #expect(rows.first?.callKey == "local:lr1:chunk:0:attempt:1")
        #expect(events.map(\.subject) == ["local_review:lr1"])
        let payload = try JSONDecoder.sentinel.decode([String: String].self, from: Data((events.first?.data ?? "{}").utf8))
        #expect(payload["repository"] == nil && payload["platform"] == nil)
        #expect(payload["input_tokens"] == "90" && payload["cost_usd"] == "0.250000")
        #expect(month.calls == 1 && month.tokens == 100 && month.costUSD == 0.25)
        let rollup = try #require(seen.rollup)
        #expect(rollup.repository == "" && rollup.runs == 0 && rollup.aiCalls == 1 && rollup.inputTokens == 90)
        await h.stop()
    }
}

@Suite("Analytics export to PostgreSQL", .enabled(if: PostgresTestDatabase.required))
struct AnalyticsExportTests {
    struct World {
        let harness: TestHarness
        let workspaces: [WorkspaceID]
        let exporter: AnalyticsExporter

        init(workspaces count: Int) async throws {
            harness = try TestHarness()
            var ids: [WorkspaceID] = []
            for i in 0..<count {
                let ws = try harness.createWorkspace("export-\(i)")
                try await harness.supervisor.withWorkspace(ws) { try await ActivityGenerator.write(into: $0, seed: i + 1) }
                ids.append(ws)
            }
            workspaces = ids
            exporter = AnalyticsExporter(dataDirectory: harness.dataDirectory, control: harness.control, opener: DatabaseOpener(config: harness.config))
        }

        func dump(_ manifest: ExportManifest) -> URL { harness.dataDirectory.exportsDirectory.appendingPathComponent(manifest.file) }

        func eventCount(_ ws: WorkspaceID) async throws -> Int {
            try await harness.supervisor.withWorkspace(ws) { try await $0.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM events")! } }
        }

        /// The workspace file's own rollups, caught up.
        func rollups(_ ws: WorkspaceID) async throws -> [DailyRollup] {
            try await harness.supervisor.withWorkspace(ws) { actor in
                try await actor.write { tx in try Rollups.catchUp(in: tx.db) }
                return try await actor.read { db in try Rollups.query(from: "2000-01-01", to: "2999-12-31", in: db) }
            }
        }
    }

    /// PostgreSQL's central rollups for one workspace, in the workspace files' shape.
    static func centralRollups(_ pg: PostgresTestDatabase, _ ws: WorkspaceID) throws -> [DailyRollup] {
        let findings = try pg.query("""
            SELECT day, repository, severity, category, findings FROM sentinel.daily_findings_rollups WHERE workspace_id = '\(ws.rawValue)'
            """)
        return try pg.query("""
            SELECT day, repository, runs, runs_completed, runs_failed, runs_skipped, runs_superseded, findings, ai_calls, input_tokens,
                   output_tokens, cost_usd, duration_p50_ms, duration_p95_ms
            FROM sentinel.daily_repository_rollups WHERE workspace_id = '\(ws.rawValue)' ORDER BY day, repository
            """).map { c in
            var bySeverity: [String: Int] = [:]
            var byCategory: [String: Int] = [:]
            for f in findings where f[0] == c[0] && f[1] == c[1] {
                bySeverity[f[2], default: 0] += Int(f[4])!
                byCategory[f[3], default: 0] += Int(f[4])!
            }
            return DailyRollup(day: c[0], repository: c[1], runs: Int(c[2])!,
                               runsByOutcome: ["completed": Int(c[3])!, "failed": Int(c[4])!, "skipped": Int(c[5])!, "superseded": Int(c[6])!],
                               findings: Int(c[7])!, findingsBySeverity: bySeverity, findingsByCategory: byCategory, aiCalls: Int(c[8])!,
                               inputTokens: Int(c[9])!, outputTokens: Int(c[10])!, costUSD: Decimal(string: c[11])!,
                               durationP50Ms: Int(c[12]), durationP95Ms: Int(c[13]))
        }
    }

    static func snapshot(_ pg: PostgresTestDatabase) throws -> [[String]] {
        try pg.query("SELECT 'events', count(*), coalesce(sum(seq), 0) FROM sentinel.events")
            + pg.query("SELECT * FROM sentinel.daily_repository_rollups ORDER BY 1, 2, 3")
            + pg.query("SELECT * FROM sentinel.daily_findings_rollups ORDER BY 1, 2, 3, 4, 5")
    }

    @Test("an export of several workspaces loads into PostgreSQL with the same events and rollups; loading it twice changes nothing")
    func exportAndLoad() async throws {
        let world = try await World(workspaces: 3)
        let pg = try PostgresTestDatabase.create()
        defer { pg.drop() }
        let manifest = try world.exporter.export()
        let file = world.dump(manifest)
        #expect(FileManager.default.fileExists(atPath: AnalyticsExporter.manifestURL(for: file).path))
        try pg.load(file)
        var total = 0
        for ws in world.workspaces {
            let count = try await world.eventCount(ws)
            total += count
            #expect(try pg.scalar("SELECT count(*) FROM sentinel.events WHERE workspace_id = '\(ws.rawValue)'") == String(count))
            let local = try await world.rollups(ws)
            #expect(!local.isEmpty)
            #expect(try Self.centralRollups(pg, ws) == local)
        }
        #expect(manifest.events == total)
        // Payloads survive COPY escaping byte for byte.
        let exact = try pg.scalar("SELECT (data ->> 'note') = E'tab\\there, newline\\nthere, backslash \\\\ and \\\\N, quote '' \" , unicode é ✓ 🚀, cr\\r' FROM sentinel.events WHERE type = 'PolicyVersionCreated' LIMIT 1")
        #expect(exact == "t")
        // Run and usage events name their platform in a column of their own; other events have ''.
        #expect(try pg.scalar("SELECT count(*) FROM sentinel.events WHERE type IN ('RunCompleted', 'UsageRecorded') AND platform NOT IN ('github', 'gitlab')") == "0")
        #expect(try pg.scalar("SELECT count(DISTINCT platform) FROM sentinel.events WHERE type = 'RunCompleted'") == "2")
        #expect(try pg.scalar("SELECT count(*) FROM sentinel.events WHERE type = 'PolicyVersionCreated' AND platform <> ''") == "0")

        let before = try Self.snapshot(pg)
        try pg.load(file)
        #expect(try Self.snapshot(pg) == before)
        #expect(try pg.scalar("SELECT count(*) FROM sentinel.exports") == "1")
        // The example queries shipped for admins run against what a dump creates.
        let queries = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("appliance/analytics/queries.sql")
        try pg.load(queries)
        await world.harness.stop()
        world.harness.directory.cleanup()
    }

    static let loader = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("appliance/analytics/load-exports.sh")

    @Test("load-exports.sh loads whole files and refuses one cut off on the way: psql ends a script without its COMMIT with exit 0, having loaded nothing")
    func loaderRefusesCutOffFiles() async throws {
        let world = try await World(workspaces: 1)
        let pg = try PostgresTestDatabase.create()
        defer { pg.drop() }
        let manifest = try world.exporter.export()
        let file = world.dump(manifest)
        let ship = world.harness.directory.url.appendingPathComponent("ship")
        try FileManager.default.createDirectory(at: ship, withIntermediateDirectories: true)
        let shipped = ship.appendingPathComponent(file.lastPathComponent)
        let text = try String(contentsOf: file, encoding: .utf8)
        let commit = try #require(text.range(of: "COMMIT;", options: .backwards))
        try String(text[..<commit.lowerBound]).write(to: shipped, atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(at: AnalyticsExporter.manifestURL(for: file), to: AnalyticsExporter.manifestURL(for: shipped))

        var run = try pg.runLoader(Self.loader, exports: ship)
        #expect(run.status != 0 && run.stderr.contains("SHA-256 is not the one in its manifest"), "\(run)")
        #expect(FileManager.default.fileExists(atPath: shipped.path))
        // Cut with a manifest that matches the cut file: psql itself exits 0, so the loader asks
        // PostgreSQL whether the export arrived.
        var cutManifest = manifest
        cutManifest.sha256 = SHA256.hash(data: try Data(contentsOf: shipped)).map { String(format: "%02x", $0) }.joined()
        try JSONEncoder.sentinel.encode(cutManifest).write(to: AnalyticsExporter.manifestURL(for: shipped))
        run = try pg.runLoader(Self.loader, exports: ship)
        #expect(run.status != 0 && run.stderr.contains("before its COMMIT"), "\(run)")
        #expect(try pg.scalar("SELECT to_regclass('sentinel.events') IS NULL") == "t")
        #expect(FileManager.default.fileExists(atPath: shipped.path))
        // Without its manifest: refused, naming it.
        try FileManager.default.removeItem(at: AnalyticsExporter.manifestURL(for: shipped))
        run = try pg.runLoader(Self.loader, exports: ship)
        #expect(run.status != 0 && run.stderr.contains("no manifest beside it"), "\(run)")

        // Whole: loaded, and moved aside with its manifest.
        try FileManager.default.removeItem(at: shipped)
        try FileManager.default.copyItem(at: file, to: shipped)
        try FileManager.default.copyItem(at: AnalyticsExporter.manifestURL(for: file), to: AnalyticsExporter.manifestURL(for: shipped))
        run = try pg.runLoader(Self.loader, exports: ship)
        #expect(run.status == 0 && run.stdout.contains("loaded \(file.lastPathComponent)"), "\(run)")
        #expect(try pg.scalar("SELECT count(*) FROM sentinel.events") == String(manifest.events))
        #expect(FileManager.default.fileExists(atPath: ship.appendingPathComponent("loaded/\(file.lastPathComponent)").path))
        #expect(FileManager.default.fileExists(atPath: ship.appendingPathComponent("loaded/\(file.lastPathComponent).manifest.json").path))
        await world.harness.stop()
        world.harness.directory.cleanup()
    }

    @Test("after the first load a role with USAGE on the schema and INSERT, DELETE, SELECT on its tables loads dumps; a database not in UTF8 is refused by name")
    func leastPrivilegeLoadAndEncoding() async throws {
        let world = try await World(workspaces: 1)
        let pg = try PostgresTestDatabase.create()
        defer { pg.drop() }
        try pg.load(world.dump(try world.exporter.export()))
        let role = "sentinel_loader_\(UUID().uuidString.prefix(8).lowercased())"
        try pg.serverCommand("CREATE ROLE \(role) LOGIN")
        defer { try? pg.serverCommand("DROP OWNED BY \(role) CASCADE; DROP ROLE IF EXISTS \(role)") }
        _ = try pg.query("GRANT USAGE ON SCHEMA sentinel TO \(role); GRANT INSERT, DELETE, SELECT ON ALL TABLES IN SCHEMA sentinel TO \(role)")
        try await world.harness.supervisor.withWorkspace(world.workspaces[0]) { try await ActivityGenerator.write(into: $0, seed: 9, days: 1, runsPerDay: 2) }
        let second = try world.exporter.export()
        #expect(second.events > 0)
        // It needed CREATE on the database and the schema, and ownership of sentinel.events.
        try pg.load(world.dump(second), as: role)
        #expect(try pg.scalar("SELECT count(*) FROM sentinel.exports") == "2")

        let latin1 = try PostgresTestDatabase.create(encoding: "LATIN1")
        defer { latin1.drop() }
        #expect {
            try latin1.load(world.dump(second))
        } throws: { error in
            "\(error)".contains("encoding is LATIN1") && "\(error)".contains("ENCODING 'UTF8'")
        }
        await world.harness.stop()
        world.harness.directory.cleanup()
    }

    @Test("a second export carries only the events added since the first")
    func incremental() async throws {
        let world = try await World(workspaces: 2)
        let pg = try PostgresTestDatabase.create()
        defer { pg.drop() }
        let first = try world.exporter.export()
        try pg.load(world.dump(first))
        try await world.harness.supervisor.withWorkspace(world.workspaces[1]) {
            try await ActivityGenerator.write(into: $0, seed: 9, days: 2, runsPerDay: 3, offsetDays: 2)
        }
        let second = try world.exporter.export()
        #expect(second.events == 2 * 3 * 2 + 2)
        #expect(second.workspaces.first { $0.workspaceID == world.workspaces[0].rawValue }?.events == 0)
        try pg.load(world.dump(second))
        for ws in world.workspaces {
            #expect(try pg.scalar("SELECT count(*) FROM sentinel.events WHERE workspace_id = '\(ws.rawValue)'") == String(try await world.eventCount(ws)))
            #expect(try Self.centralRollups(pg, ws) == (try await world.rollups(ws)))
        }
        let third = try world.exporter.export()
        #expect(third.events == 0)
        await world.harness.stop()
        world.harness.directory.cleanup()
    }

    @Test("deleting a workspace exports the events the nightly export had not carried yet, in a dump of its own (they went with the file: a day's runs and spend missing centrally)")
    func deleteExportsPendingEvents() async throws {
        let world = try await World(workspaces: 2)
        let (doomed, kept) = (world.workspaces[0], world.workspaces[1])
        let first = try world.exporter.export()
        let carried = try #require(first.workspaces.first { $0.workspaceID == doomed.rawValue }).toSeq
        let before = try await world.eventCount(doomed)
        try await world.harness.supervisor.withWorkspace(doomed) { try await ActivityGenerator.write(into: $0, seed: 9) }
        let added = try await world.eventCount(doomed) - before
        #expect(added > 0)
        let deletion = try await world.harness.supervisor.deleteWorkspace(doomed, using: world.harness.workspaces, by: "cli")
        #expect(deletion.exportedEvents == added)
        let dump = try #require(deletion.export.map { URL(fileURLWithPath: $0) })
        let manifest = try JSONDecoder.sentinel.decode(ExportManifest.self, from: Data(contentsOf: AnalyticsExporter.manifestURL(for: dump)))
        #expect(manifest.workspaces.map(\.workspaceID) == [doomed.rawValue] && manifest.workspaces.first?.fromSeq == carried, "\(manifest.workspaces)")
        #expect(try String(contentsOf: dump, encoding: .utf8).contains(doomed.rawValue))
        // It stands in for no nightly export: a missed slot is still caught up.
        #expect(manifest.only == [doomed.rawValue])
        #expect(AnalyticsExporter.latestManifest(in: world.harness.dataDirectory.exportsDirectory)?.exportID == first.exportID)
        // Nothing is carried twice.
        #expect(try world.exporter.export().workspaces.allSatisfy { $0.events == 0 })
        // With another export running, nothing is deleted and nothing is left behind (a full backup
        // of the workspace was, every time).
        try await world.harness.supervisor.withWorkspace(kept) { try await ActivityGenerator.write(into: $0, seed: 11) }
        do {
            let busy = try #require(try FileLock.tryAcquire(world.harness.dataDirectory.exportLockFile))
            await #expect(throws: StorageError.self) { try await world.harness.supervisor.deleteWorkspace(kept, using: world.harness.workspaces, by: "cli") }
            withExtendedLifetime(busy) {}
        }
        let backups = (try? FileManager.default.contentsOfDirectory(atPath: world.harness.dataDirectory.deletedBackupsDirectory.path)) ?? []
        #expect(!backups.contains { $0.hasPrefix(kept.rawValue) }, "\(backups)")
        #expect(try world.harness.control.workspace(kept) != nil)
        // A workspace with nothing pending writes no dump.
        _ = try world.exporter.export()
        let quiet = try await world.harness.supervisor.deleteWorkspace(kept, using: world.harness.workspaces, by: "cli")
        #expect(quiet.export == nil && quiet.exportedEvents == 0 && quiet.exportError == nil)
        await world.harness.stop()
        world.harness.directory.cleanup()
    }

    @Test("a workspace deleted while the dump is written: the other workspaces' watermarks still move (a foreign-key error failed the export)")
    func workspaceDeletedDuringExport() async throws {
        let world = try await World(workspaces: 2)
        let (gone, kept) = (world.workspaces[0], world.workspaces[1])
        let control = world.harness.control
        let manifest = try world.exporter.export(beforeWatermarks: {
            // As the API's delete does it: the row goes, and its watermark with it (ON DELETE CASCADE).
            try control.write { db in try db.execute(sql: "DELETE FROM workspaces WHERE id = ?", arguments: [gone.rawValue]) }
        })
        let watermarks = try control.read { db in
            try Dictionary(uniqueKeysWithValues: Row.fetchAll(db, sql: "SELECT workspace_id, last_seq FROM export_watermarks").map {
                ($0["workspace_id"] as String, $0["last_seq"] as Int64)
            })
        }
        let keptPart = try #require(manifest.workspaces.first { $0.workspaceID == kept.rawValue })
        #expect(watermarks == [kept.rawValue: keptPart.toSeq], "\(watermarks)")
        #expect(try world.exporter.export().workspaces.allSatisfy { $0.events == 0 }, "nothing of the kept workspace is carried again")
        await world.harness.stop()
        world.harness.directory.cleanup()
    }

    @Test("an exporter killed between the rename and the watermark update loses and duplicates nothing")
    func crashBeforeWatermarks() async throws {
        struct Killed: Error {}
        let world = try await World(workspaces: 2)
        let pg = try PostgresTestDatabase.create()
        defer { pg.drop() }
        #expect(throws: Killed.self) { try world.exporter.export(beforeWatermarks: { throw Killed() }) }
        let orphan = try #require(try FileManager.default.contentsOfDirectory(atPath: world.harness.dataDirectory.exportsDirectory.path)
            .first { $0.hasSuffix(".sql") })
        try await world.harness.supervisor.withWorkspace(world.workspaces[0]) {
            try await ActivityGenerator.write(into: $0, seed: 5, days: 1, runsPerDay: 2, offsetDays: 1)
        }
        let retry = try world.exporter.export()
        #expect(retry.file != orphan)
        // Both dumps reach PostgreSQL, in either order: the overlap is inserted once.
        try pg.load(world.harness.dataDirectory.exportsDirectory.appendingPathComponent(orphan))
        try pg.load(world.dump(retry))
        try pg.load(world.harness.dataDirectory.exportsDirectory.appendingPathComponent(orphan))
        for ws in world.workspaces {
            #expect(try pg.scalar("SELECT count(*) FROM sentinel.events WHERE workspace_id = '\(ws.rawValue)'") == String(try await world.eventCount(ws)))
            #expect(try Self.centralRollups(pg, ws) == (try await world.rollups(ws)))
        }
        await world.harness.stop()
        world.harness.directory.cleanup()
    }
}

@Suite("Analytics export files")
struct AnalyticsExportFileTests {
    @Test("what an export killed half-way left behind (its temp dump and manifest) is removed by the next export; other files stay")
    func abandonedTempFilesRemoved() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace("a")
        try await h.supervisor.withWorkspace(ws) { try await ActivityGenerator.write(into: $0, seed: 1, days: 1, runsPerDay: 2) }
        let exporter = AnalyticsExporter(dataDirectory: h.dataDirectory, control: h.control, opener: DatabaseOpener(config: h.config))
        let exports = h.dataDirectory.exportsDirectory
        try FileManager.default.createDirectory(at: exports, withIntermediateDirectories: true)
        let abandoned = [".sentinel-export-20261201T030000Z-1a2b3c4d.sql.tmp-4242", ".sentinel-export-20261201T030000Z-1a2b3c4d.sql.manifest.json.tmp-4242"]
        let kept = ["notes.txt", ".other.tmp-4242"]
        for name in abandoned + kept { try Data(repeating: 0x41, count: 4_096).write(to: exports.appendingPathComponent(name)) }
        let manifest = try exporter.export()
        let left = Set(try FileManager.default.contentsOfDirectory(atPath: exports.path))
        #expect(left.isDisjoint(with: abandoned), "\(left)")
        #expect(left.isSuperset(of: kept), "\(left)")
        #expect(left.contains(manifest.file))
        await h.stop()
        h.directory.cleanup()
    }

    @Test("an export killed between its manifest and its dump leaves no dump without a manifest (the loader stopped at one every night); the next export removes the orphan manifest, and a dump without a manifest from an earlier version, and carries their events")
    func killedBeforeRenameLeavesNoOrphanDump() async throws {
        struct Killed: Error {}
        let h = try TestHarness()
        let ws = try h.createWorkspace("a")
        try await h.supervisor.withWorkspace(ws) { try await ActivityGenerator.write(into: $0, seed: 1, days: 1, runsPerDay: 2) }
        let exporter = AnalyticsExporter(dataDirectory: h.dataDirectory, control: h.control, opener: DatabaseOpener(config: h.config))
        let exports = h.dataDirectory.exportsDirectory
        #expect(throws: Killed.self) { try exporter.export(beforeRename: { throw Killed() }) }
        let afterKill = try FileManager.default.contentsOfDirectory(atPath: exports.path).filter { !$0.hasPrefix(".") }
        #expect(afterKill.count == 1 && afterKill.allSatisfy { $0.hasSuffix(".sql.manifest.json") }, "\(afterKill)")
        let legacy = "sentinel-export-20261201T030000-1a2b3c4d.sql"
        try Data("-- Sentinel analytics export".utf8).write(to: exports.appendingPathComponent(legacy))
        let manifest = try exporter.export()
        #expect(manifest.events > 0, "the killed export's events are carried")
        let left = try FileManager.default.contentsOfDirectory(atPath: exports.path).filter { !$0.hasPrefix(".") }.sorted()
        #expect(left == [manifest.file, manifest.file + ".manifest.json"], "\(left)")
        await h.stop()
        h.directory.cleanup()
    }

    @Test("an export to a pipe (as to a device), a symbolic link, a missing directory or the data directory's own files is refused before anything is written, the path left as it was and no event counted exported; a directory takes the dump under its export id")
    func destinationChecked() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace("a")
        try await h.supervisor.withWorkspace(ws) { try await ActivityGenerator.write(into: $0, seed: 1, days: 1, runsPerDay: 2) }
        let exporter = AnalyticsExporter(dataDirectory: h.dataDirectory, control: h.control, opener: DatabaseOpener(config: h.config))
        // The data directory, its workspaces/ and secrets/ (however named) take no dump: it would replace their files.
        let control = h.dataDirectory.controlFile
        let before = try Data(contentsOf: control)
        let ownPlaces = [control, h.dataDirectory.root.appendingPathComponent("workspaces/../dump.sql"),
                         h.dataDirectory.secretsDirectory.appendingPathComponent("master.key")]
        for destination in ownPlaces {
            #expect { try exporter.export(to: destination) } throws: { "\($0)".contains("that directory holds Sentinel's own files") }
        }
        #expect(try Data(contentsOf: control) == before)
        let dir = h.directory.url.appendingPathComponent("elsewhere")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let fifo = dir.appendingPathComponent("dump.fifo")
        #expect(mkfifo(fifo.path, 0o600) == 0)
        let real = dir.appendingPathComponent("real.sql")
        try Data("kept".utf8).write(to: real)
        let link = dir.appendingPathComponent("link.sql")
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: real)
        let refusals: [(URL, String)] = [
            (fifo, "it is not a regular file (a device, pipe or socket)"),
            (link, "it is a symbolic link"),
            (dir.appendingPathComponent("missing/dump.sql"), "the directory \(dir.appendingPathComponent("missing").path) does not exist"),
        ]
        for (destination, reason) in refusals {
            #expect { try exporter.export(to: destination) } throws: { "\($0)".contains("cannot write the dump to \(destination.path): \(reason)") }
        }
        var info = stat()
        #expect(lstat(fifo.path, &info) == 0 && info.st_mode & S_IFMT == S_IFIFO)
        #expect(lstat(link.path, &info) == 0 && info.st_mode & S_IFMT == S_IFLNK)
        #expect(try String(contentsOf: real, encoding: .utf8) == "kept")
        // Nothing was counted exported: the events are all still there for a dump into a directory.
        let outDirectory = dir.appendingPathComponent("dumps")
        try FileManager.default.createDirectory(at: outDirectory, withIntermediateDirectories: true)
        let manifest = try exporter.export(to: outDirectory)
        #expect(manifest.events > 0 && manifest.file.hasSuffix(".sql"))
        #expect(FileManager.default.fileExists(atPath: outDirectory.appendingPathComponent(manifest.file).path))
        // An existing file is never replaced (an earlier dump not loaded yet held events counted
        // exported), nor is an existing manifest beside a new path; a new path takes the dump.
        let earlier = outDirectory.appendingPathComponent(manifest.file)
        let earlierText = try String(contentsOf: earlier, encoding: .utf8)
        let earlierManifest = try Data(contentsOf: AnalyticsExporter.manifestURL(for: earlier))
        let fresh = dir.appendingPathComponent("fresh.sql")
        try Data("{}".utf8).write(to: AnalyticsExporter.manifestURL(for: fresh))
        for (destination, existing) in [(real, real), (earlier, earlier), (AnalyticsExporter.manifestURL(for: earlier), AnalyticsExporter.manifestURL(for: earlier)),
                                        (fresh, AnalyticsExporter.manifestURL(for: fresh))] {
            #expect { try exporter.export(to: destination) } throws: {
                "\($0)".contains("cannot write the dump to \(destination.path): \(existing.path) exists, and a dump never replaces a file")
            }
        }
        #expect(try String(contentsOf: real, encoding: .utf8) == "kept")
        #expect(try String(contentsOf: earlier, encoding: .utf8) == earlierText)
        #expect(try Data(contentsOf: AnalyticsExporter.manifestURL(for: earlier)) == earlierManifest)
        #expect(!FileManager.default.fileExists(atPath: fresh.path))
        let next = try exporter.export(to: dir.appendingPathComponent("next.sql"))
        #expect(try next.events == 0 && (String(contentsOf: dir.appendingPathComponent("next.sql"), encoding: .utf8)).contains(next.exportID))
        await h.stop()
        h.directory.cleanup()
    }

    @Test("a missing workspace file is reported in the manifest and keeps its watermark; the others export")
    func missingWorkspace() async throws {
        let h = try TestHarness()
        let good = try h.createWorkspace("good")
        let gone = try h.createWorkspace("gone")
        try await h.supervisor.withWorkspace(good) { try await ActivityGenerator.write(into: $0, seed: 1, days: 1, runsPerDay: 2) }
        await h.supervisor.shutdown()
        try FileManager.default.removeItem(at: h.dataDirectory.workspaceFile(gone))
        let exporter = AnalyticsExporter(dataDirectory: h.dataDirectory, control: h.control, opener: DatabaseOpener(config: h.config))
        let manifest = try exporter.export()
        #expect(manifest.workspaces.first { $0.workspaceID == good.rawValue }?.events == 5)
        let missing = try #require(manifest.workspaces.first { $0.workspaceID == gone.rawValue })
        #expect(missing.error != nil)
        let text = try String(contentsOf: h.dataDirectory.exportsDirectory.appendingPathComponent(manifest.file), encoding: .utf8)
        #expect(text.contains("COPY sentinel_incoming"))
        #expect(text.hasSuffix("COMMIT;\n"))
        #expect(try exporter.export().events == 0)
        h.directory.cleanup()
    }

    static func watermark(_ h: TestHarness, _ ws: WorkspaceID) throws -> Int64? {
        try h.control.read { db in
            try Int64.fetchOne(db, sql: "SELECT last_seq FROM export_watermarks WHERE workspace_id = ?", arguments: [ws.rawValue])
        }
    }

    @Test("an event PostgreSQL would refuse stops its workspace's export just before it, reported; the others export")
    func unencodableEvent() async throws {
        let h = try TestHarness()
        let good = try h.createWorkspace("good")
        let poisoned = try h.createWorkspace("poisoned")
        try await h.supervisor.withWorkspace(good) { try await ActivityGenerator.write(into: $0, seed: 1, days: 1, runsPerDay: 2) }
        try await h.supervisor.withWorkspace(poisoned) { actor in
            try await ActivityGenerator.write(into: actor, seed: 2, days: 1, runsPerDay: 2)
            // Written past the append path, as an older version or a hand edit could have: jsonb refuses \u0000.
            try await actor.write { tx in
                try tx.db.execute(sql: """
                    INSERT INTO events (id, type, occurred_at, data) VALUES ('poison', 'PolicyVersionCreated', '2026-11-17T10:00:00.000Z', ?)
                    """, arguments: [#"{"note":"a\u0000b"}"#])
            }
            try await ActivityGenerator.write(into: actor, seed: 3, days: 1, runsPerDay: 1)
        }
        await h.supervisor.shutdown()
        let exporter = AnalyticsExporter(dataDirectory: h.dataDirectory, control: h.control, opener: DatabaseOpener(config: h.config))
        let manifest = try exporter.export()
        #expect(manifest.only == nil)
        let goodPart = try #require(manifest.workspaces.first { $0.workspaceID == good.rawValue })
        #expect(goodPart.events == 5 && goodPart.toSeq == 5 && goodPart.error == nil)
        let part = try #require(manifest.workspaces.first { $0.workspaceID == poisoned.rawValue })
        #expect(part.events == 5)
        #expect(part.toSeq == 5)
        #expect(part.error?.contains("event seq 6 (id poison) cannot be exported") == true, "\(part.error ?? "no error")")
        #expect(manifest.events == 10)
        let manifestText = try String(contentsOf: AnalyticsExporter.manifestURL(for: h.dataDirectory.exportsDirectory.appendingPathComponent(manifest.file)),
                                      encoding: .utf8)
        #expect(manifestText.contains("event seq 6 (id poison)"))
        let dump = h.dataDirectory.exportsDirectory.appendingPathComponent(manifest.file)
        let text = try String(contentsOf: dump, encoding: .utf8)
        #expect(!text.contains("poison"))
        #expect(try Self.watermark(h, poisoned) == 5)
        #expect(try Self.watermark(h, good) == 5)
        if PostgresTestDatabase.server != nil {
            let pg = try PostgresTestDatabase.create()
            defer { pg.drop() }
            try pg.load(dump)
            #expect(try pg.scalar("SELECT count(*) FROM sentinel.events") == "10")
        }
        // The next export stops at the same row again, and says so again.
        let again = try exporter.export()
        let second = try #require(again.workspaces.first { $0.workspaceID == poisoned.rawValue })
        #expect(second.events == 0 && second.fromSeq == 5 && second.toSeq == 5)
        #expect(second.error?.contains("event seq 6") == true)
        #expect(try Self.watermark(h, poisoned) == 5)
        // Deleted, the workspace's export stops at the same row, and the deletion says so (it said nothing).
        let deletion = try h.workspaces.delete(poisoned, by: "cli")
        #expect(deletion.export != nil && deletion.exportError?.contains("event seq 6 (id poison) cannot be exported") == true, "\(deletion)")
        h.directory.cleanup()
    }

    @Test("timestamps in every shape the export reads load as the same instants; an impossible date stops the export before it")
    func timestampShapes() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace("times")
        let accepted = ["2026-11-17T10:00:00Z", "2026-11-17T10:00:00.123Z", "2026-11-17T10:00:00.123456Z",
                        "2024-02-29T23:59:59Z", "2026-11-17T12:00:00+0200"]
        // Every character COPY escapes, at every offset within an eight-byte word (the escaper skips plain words whole).
        let long = (0..<17).map { String(repeating: "x", count: $0) + #"\t\\\n\r"# }.joined()  // JSON escapes
        let raw = (0..<17).map { String(repeating: "y", count: $0) + "\t\\\n\r" }.joined()  // the bytes themselves
        try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in
                for (i, at) in accepted.enumerated() {
                    try tx.db.execute(sql: "INSERT INTO events (id, type, occurred_at, subject, data) VALUES (?, 'Probe', ?, ?, ?)",
                                      arguments: ["t\(i)", at, raw, #"{"tab":"a\tb","slash":"c\\d","line":"e\nf","n":-12.5e3,"long":"\#(long)"}"#])
                }
                try tx.db.execute(sql: "INSERT INTO events (id, type, occurred_at, data) VALUES ('bad', 'Probe', '2026-13-01T00:00:00Z', '{}')")
            }
        }
        await h.supervisor.shutdown()
        let manifest = try AnalyticsExporter(dataDirectory: h.dataDirectory, control: h.control, opener: DatabaseOpener(config: h.config)).export()
        let part = try #require(manifest.workspaces.first { $0.workspaceID == ws.rawValue })
        #expect(part.events == accepted.count)
        #expect(part.error?.contains("occurred_at '2026-13-01T00:00:00Z' is not a timestamp") == true, "\(part.error ?? "no error")")
        let dump = h.dataDirectory.exportsDirectory.appendingPathComponent(manifest.file)
        let text = try String(contentsOf: dump, encoding: .utf8)
        #expect(text.contains("\t1\tt0\tProbe\t2026-11-17T10:00:00Z\t\\t\\\\\\n\\ry\\t"))
        #expect(text.contains("\t\\N\t{"))  // correlation_id NULL
        #expect(text.contains(#"{"tab":"a\\tb","slash":"c\\\\d","line":"e\\nf","n":-12.5e3,"long":"\\t"#))
        if PostgresTestDatabase.server != nil {
            let pg = try PostgresTestDatabase.create()
            defer { pg.drop() }
            try pg.load(dump)
            let rows = try pg.query("SELECT event_id, extract(epoch FROM occurred_at)::numeric(16,6), "
                                + "replace(data->>'tab', E'\\t', '<tab>') || (data->>'slash') FROM sentinel.events ORDER BY seq")
            #expect(rows.map { $0[0] } == ["t0", "t1", "t2", "t3", "t4"])
            #expect(rows.map { $0[1] } == ["1794909600.000000", "1794909600.123000", "1794909600.123456", "1709251199.000000", "1794909600.000000"])
            #expect(rows.allSatisfy { $0[2] == #"a<tab>bc\d"# })
            let decoded = try pg.scalar("SELECT replace(replace(replace(data->>'long', E'\\t', '<t>'), E'\\n', '<n>'), E'\\r', '<r>') "
                                        + "FROM sentinel.events WHERE event_id = 't0'")
            let subject = try pg.scalar("SELECT replace(replace(replace(subject, E'\\t', '<t>'), E'\\n', '<n>'), E'\\r', '<r>') "
                                        + "FROM sentinel.events WHERE event_id = 't0'")
            #expect(subject == (0..<17).map { String(repeating: "y", count: $0) + #"<t>\<n><r>"# }.joined())
            #expect(decoded == (0..<17).map { String(repeating: "x", count: $0) + #"<t>\<n><r>"# }.joined())
        }
        h.directory.cleanup()
    }

    @Test("after a workspace is restored from an older backup, its new events are exported, not skipped")
    func restoreKeepsExportConsistent() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace("restored")
        try await h.supervisor.withWorkspace(ws) { try await ActivityGenerator.write(into: $0, seed: 1, days: 1, runsPerDay: 2) }  // seq 1...5
        let backup = h.directory.url.appendingPathComponent("backup")
        _ = try BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener()).backup(to: backup, workspace: ws, control: h.control)
        try await h.supervisor.withWorkspace(ws) { try await ActivityGenerator.write(into: $0, seed: 2, days: 1, runsPerDay: 2) }  // seq 6...10
        let exporter = AnalyticsExporter(dataDirectory: h.dataDirectory, control: h.control, opener: DatabaseOpener(config: h.config))
        let first = try exporter.export()
        #expect(first.events == 10)
        #expect(try Self.watermark(h, ws) == 10)
        await h.supervisor.shutdown()

        var messages: [String] = []
        _ = try BackupService(dataDirectory: h.dataDirectory, opener: DatabaseOpener()).restore(from: backup, workspace: ws, log: { messages.append($0) })
        #expect(try Self.watermark(h, ws) == 5, "the watermark follows the restored file back")
        #expect(messages.count == 1)
        #expect(messages.first?.contains("moved back to 5") == true)

        // New events take the sequence numbers of the lost ones.
        let database = try DatabaseOpener().open(h.dataDirectory.workspaceFile(ws), kind: .workspace)
        let ids = try await database.write { db in
            try (1...3).map { i in
                let seq = try EventLog.append(DomainEvent(type: "PolicyVersionCreated", subject: "after-restore-\(i)",
                                                          data: Data(#"{"repository":"acme/api"}"#.utf8)),
                                              in: db, now: ActivityGenerator.base, listeners: []).seq
                return try EventLog.event(seq: seq, in: db)!.id
            }
        }
        try database.close()
        let second = try exporter.export()
        let part = try #require(second.workspaces.first { $0.workspaceID == ws.rawValue })
        #expect(part.fromSeq == 5 && part.toSeq == 8 && part.events == 3)
        let text = try String(contentsOf: h.dataDirectory.exportsDirectory.appendingPathComponent(second.file), encoding: .utf8)
        for id in ids { #expect(text.contains(id)) }
        if PostgresTestDatabase.server != nil {
            let pg = try PostgresTestDatabase.create()
            defer { pg.drop() }
            try pg.load(h.dataDirectory.exportsDirectory.appendingPathComponent(first.file))
            try pg.load(h.dataDirectory.exportsDirectory.appendingPathComponent(second.file))
            // The ten events exported before the restore (five of them lost with it) and the three new ones.
            #expect(try pg.scalar("SELECT count(*) FROM sentinel.events WHERE workspace_id = '\(ws.rawValue)'") == "13")
            #expect(try pg.scalar("SELECT count(*) FROM sentinel.events WHERE subject LIKE 'after-restore-%'") == "3")
        }
        h.directory.cleanup()
    }
}

@Suite("Analytics export to PostgreSQL: upgrades", .enabled(if: PostgresTestDatabase.required))
struct AnalyticsExportUpgradeTests {
    @Test("a database loaded by dumps keyed on (workspace, seq) is re-keyed on event id by the next dump")
    func rekeysOlderTables() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace("old")
        try await h.supervisor.withWorkspace(ws) { try await ActivityGenerator.write(into: $0, seed: 1, days: 1, runsPerDay: 2) }
        let pg = try PostgresTestDatabase.create()
        defer { pg.drop() }
        _ = try pg.query("""
            CREATE SCHEMA sentinel;
            CREATE TABLE sentinel.events (
                workspace_id text NOT NULL, seq bigint NOT NULL, event_id text NOT NULL, type text NOT NULL,
                occurred_at timestamptz NOT NULL, day date NOT NULL, repository text NOT NULL, subject text, correlation_id text,
                data jsonb NOT NULL, export_id text NOT NULL, PRIMARY KEY (workspace_id, seq));
            INSERT INTO sentinel.events VALUES ('\(ws.rawValue)', 6, 'lost-event', 'X', now(), current_date, '', NULL, NULL, '{}', 'old');
            """)
        try await h.supervisor.withWorkspace(ws) { try await ActivityGenerator.write(into: $0, seed: 2, days: 1, runsPerDay: 1) }  // seq 6...8
        let exporter = AnalyticsExporter(dataDirectory: h.dataDirectory, control: h.control, opener: DatabaseOpener(config: h.config))
        try pg.load(h.dataDirectory.exportsDirectory.appendingPathComponent(try exporter.export().file))
        #expect(try pg.scalar("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'sentinel.events'::regclass AND contype = 'p'")
                == "PRIMARY KEY (workspace_id, event_id)")
        #expect(try pg.scalar("SELECT count(*) FROM sentinel.events") == "9")
        // The table of the older dumps gained the platform column; its rows have ''.
        #expect(try pg.scalar("SELECT platform = '' FROM sentinel.events WHERE event_id = 'lost-event'") == "t")
        await h.stop()
        h.directory.cleanup()
    }
}
