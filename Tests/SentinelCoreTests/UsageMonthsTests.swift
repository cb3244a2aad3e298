import Foundation
import GRDB
@testable import SentinelCore
import SentinelTestSupport
import Testing

/// The month's AI usage that the spend and plan checks read before every model call.
@Suite("Usage months")
struct UsageMonthsTests {
    /// 2026-11-15 and 2026-12-03 (UTC), and a moment in December.
    static let november = 1_794_700_800.0
    static let december = 1_796_256_000.0
    static let now = Date(timeIntervalSince1970: december + 3_600)

    static func record(_ db: Database, key: String, tokens: (Int, Int), cost: Double, at time: Double) throws {
        try db.execute(sql: """
            INSERT INTO usage_records (call_key, provider, model, input_tokens, output_tokens, cost_usd, recorded_at)
            VALUES (?, 'openai', 'gpt-4o-mini', ?, ?, ?, ?)
            """, arguments: [key, tokens.0, tokens.1, cost, time])
    }

    /// What the checks read, recomputed from every recorded call.
    static func summed(_ db: Database, since: Double) throws -> (tokens: Int, costUSD: Double, calls: Int) {
        let row = try Row.fetchOne(db, sql: """
            SELECT coalesce(sum(input_tokens + output_tokens), 0) AS t, coalesce(sum(cost_usd), 0) AS c, count(*) AS n
            FROM usage_records WHERE recorded_at >= ?
            """, arguments: [since])!
        return (row["t"], row["c"], row["n"])
    }

    @Test("the month's totals follow the recorded calls, in this month and earlier ones")
    func totalsFollowRecords() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in
                try Self.record(tx.db, key: "n1", tokens: (1_000, 200), cost: 0.5, at: Self.november)
                try Self.record(tx.db, key: "d1", tokens: (700, 150), cost: 0.25, at: Self.december)
            }
            var spent = try await actor.read { db in try UsageLedger.monthToDate(in: db, now: Self.now) }
            #expect(spent.tokens == 850 && spent.calls == 1 && spent.costUSD == 0.25)
            try await actor.write { tx in
                try Self.record(tx.db, key: "d2", tokens: (300, 50), cost: 0.125, at: Self.december + 60.5)
                try Self.record(tx.db, key: "n2", tokens: (1, 1), cost: 1, at: Self.november + 60)
            }
            spent = try await actor.read { db in try UsageLedger.monthToDate(in: db, now: Self.now) }
            let expected = try await actor.read { db in try Self.summed(db, since: PlanLimits.monthStart(Self.now)) }
            #expect(spent.tokens == expected.tokens && spent.calls == expected.calls && spent.costUSD == expected.costUSD)
            #expect(spent.tokens == 1_200 && spent.calls == 2 && spent.costUSD == 0.375)
            let months = try await actor.read { db in
                try Row.fetchAll(db, sql: "SELECT month, calls FROM usage_months ORDER BY month").map { "\($0["month"] as String) \($0["calls"] as Int)" }
            }
            #expect(months == ["2026-11 2", "2026-12 2"])
            // Next month starts from nothing.
            let january = try await actor.read { db in
                try UsageLedger.monthToDate(in: db, now: Date(timeIntervalSince1970: Self.december + 40 * 86_400))
            }
            #expect(january.tokens == 0 && january.calls == 0)
        }
        await h.stop()
    }

    @Test("a file recorded before the monthly totals existed gets them from its calls when it is migrated")
    func migrationBackfills() throws {
        let dir = TemporaryDirectory("sentinel-usage-months")
        defer { dir.cleanup() }
        let queue = try DatabaseQueue(path: dir.url.appendingPathComponent("ws.sqlite").path)
        try WorkspaceSchema.migrator.migrate(queue, upTo: "0011_events_subject")
        try queue.write { db in
            try Self.record(db, key: "a", tokens: (10, 1), cost: 0.01, at: Self.november)
            try Self.record(db, key: "b", tokens: (20, 2), cost: 0.02, at: Self.november + 86_400)
            try Self.record(db, key: "c", tokens: (40, 4), cost: 0.04, at: Self.december)
        }
        try WorkspaceSchema.migrator.migrate(queue)
        try queue.read { db in
            let rows = try Row.fetchAll(db, sql: "SELECT month, tokens, calls FROM usage_months ORDER BY month")
            #expect(rows.map { "\($0["month"] as String) \($0["tokens"] as Int) \($0["calls"] as Int)" } == ["2026-11 33 2", "2026-12 44 1"])
            let spent = try UsageLedger.monthToDate(in: db, now: Self.now)
            #expect(spent.tokens == 44 && spent.calls == 1)
            #expect(abs(spent.costUSD - 0.04) < 1e-12)
        }
        try queue.close()
    }

    @Test("the checks before a model call and a run's start cost the same however long the workspace's history is")
    func checksIndependentOfHistory() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        let plan = Plan(name: "metered", reviewsPerMonth: 1_000_000, tokensPerMonth: 1_000_000_000, repositories: nil, seats: nil)
        try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in
                try History.registerRepository(integration: "int_usage00000000001", in: &tx)
            }
            /// Adds `calls` model calls this month and `runs` review runs last month.
            func grow(calls: Int, runs: Int, from first: Int) async throws {
                try await actor.write { tx in
                    for i in first..<(first + calls) {
                        try Self.record(tx.db, key: "call-\(i)", tokens: (900, 100), cost: 0.001, at: Self.december + Double(i % 3_000))
                    }
                    for i in first..<(first + runs) {
                        try tx.db.execute(sql: """
                            INSERT INTO review_runs (repository_id, pr_number, head_sha, trigger, state, created_at, started_at)
                            VALUES (1, ?, 'sha', 'opened', 'completed', ?, ?)
                            """, arguments: [i, Self.november, Self.november])
                    }
                }
            }
            func cost() async throws -> (spend: Int, plan: Int) {
                try await actor.read { db in
                    (try History.instructions(db) { _ = try UsageLedger.monthToDate(in: db, now: Self.now) },
                     try History.instructions(db) { _ = try PlanLimits.status(plan: plan, in: db, now: Self.now) })
                }
            }
            try await grow(calls: 10, runs: 10, from: 0)
            let small = try await cost()
            try await grow(calls: 20_000, runs: 5_000, from: 10)
            let large = try await cost()
            let spent = try await actor.read { db in try UsageLedger.monthToDate(in: db, now: Self.now) }
            #expect(spent.calls == 20_010 && spent.tokens == 20_010_000)
            // A scan of the 20,010 calls or the 5,010 runs would run at least one instruction per row.
            #expect(large.spend <= small.spend + 50, "spend check: \(small.spend) → \(large.spend) instructions")
            #expect(large.plan <= small.plan + 50, "plan status: \(small.plan) → \(large.plan) instructions")
        }
        await h.stop()
    }

    @Test("a call's cost is recorded in whole micro-dollars, as its event carries it: the usage report and the analytics disagreed (0.0026265 against 0.002627), and calls under half a micro-dollar")
    func costRecordedAsTheEventCarriesIt() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        try await h.supervisor.withWorkspace(ws) { actor in
            let (recorded, events) = try await actor.write { tx in
                let calls = [0.0026265, 0.000000587, 0.0010506].enumerated().map { i, cost in
                    (call: ModelCallRecord(chunk: i, attempt: 1, provider: "prv_x", model: "m", usage: TokenUsage(inputTokens: 9), parsed: true), costUSD: cost)
                }
                try UsageLedger.record(calls, for: .localReview(id: "l1"), in: &tx)
                let recorded = try Double.fetchAll(tx.db, sql: "SELECT cost_usd FROM usage_records ORDER BY id")
                let events = try EventLog.read(after: 0, limit: 100, types: ["UsageRecorded"], in: tx.db).map { event in
                    Double((try? JSONDecoder.sentinel.decode([String: String].self, from: Data(event.data.utf8)))?["cost_usd"] ?? "") ?? -1
                }
                return (recorded, events)
            }
            #expect(recorded == [0.002627, 0.000001, 0.001051], "\(recorded)")
            #expect(events == recorded, "\(events)")
            let month = try await actor.read { db in try UsageLedger.monthToDate(in: db, now: Date()) }
            #expect(abs(month.costUSD - 0.003679) < 1e-12, "\(month.costUSD)")
        }
        await h.stop()
    }

    @Test("the month's spend is read in whole micro-dollars: ten calls of 1.28 USD are 12.8, which a budget of 12.8 counts as reached (summed as floating point they were 12.799999999999999, and the next call went out)")
    func spendSummedInMicroDollars() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in
                for i in 0..<10 { try Self.record(tx.db, key: "c\(i)", tokens: (1, 1), cost: 1.28, at: Self.december) }
            }
            let raw = try await actor.read { db in try Double.fetchOne(db, sql: "SELECT sum(cost_usd) FROM usage_records") ?? 0 }
            let spent = try await actor.read { db in try UsageLedger.monthToDate(in: db, now: Self.now) }
            #expect(raw != 12.8, "the premise: a floating-point sum")
            #expect(spent.costUSD == 12.8 && spent.costUSD >= 12.8)
            let report = try await actor.read { db in try UsageReport.make(workspace: ws, period: "2026-12", in: db) }
            #expect(report.costUSD == 12.8)
        }
        await h.stop()
    }
}
