import Foundation
import GRDB
@testable import SentinelCore
import SentinelTestSupport
import Testing

/// What a review run reads of its own rows stays the same size however many runs came before.
@Suite("Run history")
struct RunHistoryTests {
    @Test("a run's findings and AI calls are read without visiting those of the workspace's other runs")
    func runChildrenIndependentOfHistory() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in
                try History.registerRepository(integration: "int_hist000000000001", in: &tx)
            }
            /// Adds `runs` completed runs, each with four findings and four AI calls.
            func grow(runs: Int, from first: Int) async throws {
                try await actor.write { tx in
                    for i in first..<(first + runs) {
                        try tx.db.execute(sql: """
                            INSERT INTO review_runs (id, repository_id, pr_number, head_sha, trigger, state, created_at, started_at)
                            VALUES (?, 1, ?, 'sha', 'opened', 'completed', 0, 0)
                            """, arguments: [i, i])
                        for f in 0..<4 {
                            try tx.db.execute(sql: """
                                INSERT INTO findings (run_id, repository_id, pr_number, path, line, severity, category, title, body, source, fingerprint)
                                VALUES (?, 1, ?, 'src/a.swift', ?, 'medium', 'correctness', 'Title', 'Body', 'ai', ?)
                                """, arguments: [i, i, f + 1, "fp-\(i)-\(f)"])
                            try tx.db.execute(sql: """
                                INSERT INTO usage_records (run_id, call_key, provider, model, input_tokens, output_tokens, recorded_at)
                                VALUES (?, ?, 'openai', 'gpt-4o-mini', 100, 10, 0)
                                """, arguments: [i, "run\(i):call\(f)"])
                        }
                    }
                }
            }
            func cost() async throws -> (findings: Int, calls: Int) {
                try await actor.read { db in
                    var (findings, calls) = (0, 0)
                    let f = try History.instructions(db) { findings = try ReviewRunStore.findings(ofRun: 1, in: db).count }
                    let c = try History.instructions(db) { calls = try UsageCall.list(ofRun: 1, in: db).count }
                    #expect(findings == 4 && calls == 4)
                    return (f, c)
                }
            }
            try await grow(runs: 10, from: 1)
            let small = try await cost()
            try await grow(runs: 5_000, from: 11)
            let large = try await cost()
            // A scan of the 20,040 findings or calls would run at least one instruction per row.
            #expect(large.findings <= small.findings + 50, "findings of a run: \(small.findings) → \(large.findings) instructions")
            #expect(large.calls <= small.calls + 50, "AI calls of a run: \(small.calls) → \(large.calls) instructions")
        }
        await h.stop()
    }
}
