import Foundation
import GRDB
import SentinelCore
import SentinelServer
import SentinelTestSupport
import Synchronization
import Testing

@Suite("AI review end to end", .serialized)
struct AIReviewEndToEndTests {
    @Test("a review whose AI part failed does not mark its head reviewed: the next push is reviewed whole, not only what it touched")
    func failedAIReviewKeepsTheHeadUnreviewed() async throws {
        let llm = try await FakeLLMServer.start()
        let world = try await GitHubWorld()
        let store = ProviderStore(masterKey: world.appliance.integrations.masterKey)
        _ = try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await store.add(kind: "openai", apiKey: FakeLLMServer.defaultKeys[.openAI]!, model: "gpt-4o-mini", baseURL: llm.openAIBaseURL,
                                by: "test", in: actor)
        }
        await llm.state.inject(.status(400), api: .openAI, times: nil)
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        let review = try #require(await world.github.state.reviews(on: GitHubWorld.repo, 7).first)
        #expect(review.body.contains("AI review failed"), "\(review.body.prefix(600))")
        #expect(try await world.count("SELECT count(*) FROM pull_requests WHERE last_reviewed_sha IS NOT NULL") == 0)
        await world.stop()
        await llm.stop()
    }

    @Test("a finding not on a changed line is carried by the next incremental review like the others: it failed the check, and a push that fixes nothing kept it")
    func unanchoredFindingCarried() async throws {
        let llm = try await FakeLLMServer.start()
        let world = try await GitHubWorld()
        try await world.addOpenAIProvider(llm)
        await llm.state.setReview(summary: "Config.", findings: [FakeLLMFinding(path: "app.py", line: 400, severity: "high", title: "Far away")])
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        let first = try #require(await world.github.state.reviews(on: GitHubWorld.repo, 7).first)
        #expect(first.body.contains("Far away"), "\(first.body)")
        // A push that touches only the README; the model finds nothing in it.
        await llm.state.setReview(summary: "Docs.", findings: [])
        await world.github.state.addPull(FakePullRequest(repo: GitHubWorld.repo, number: 7, headSHA: "ccc222", baseSHA: "bbb000", files: GitHubWorld.files))
        await world.github.state.setComparison(repo: GitHubWorld.repo, base: "aaa111", head: "ccc222", files: [GitHubWorld.files[1]])
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "synchronize", head: "ccc222", before: "aaa111"))
        #expect(await world.waitForRun(state: .completed, count: 2))
        let second = try #require(await world.github.state.reviews(on: GitHubWorld.repo, 7).last)
        #expect(second.commitID == "ccc222")
        #expect(second.body.contains("Still open from earlier reviews") && second.body.contains("Far away"), "\(second.body)")
        await world.stop()
        await llm.stop()
    }

    @Test("a workspace with an OpenAI key gets AI findings on valid lines, usage recorded once, and the key never logged")
    func aiFindingsPosted() async throws {
        let llm = try await FakeLLMServer.start()
        let world = try await GitHubWorld()
        let store = ProviderStore(masterKey: world.appliance.integrations.masterKey)
        let key = FakeLLMServer.defaultKeys[.openAI]!
        _ = try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await store.add(kind: "openai", apiKey: key, model: "gpt-4o-mini", baseURL: llm.openAIBaseURL, by: "test", in: actor)
        }
        await llm.state.setReview(summary: "Adds configuration loading.", findings: [
            FakeLLMFinding(path: "app.py", line: 2, severity: "medium", category: "correctness", title: "Missing default",
                           body: "`os.environ.get` returns None when KEY is unset.", suggestion: "KEY = os.environ.get('KEY', '')"),
            // Not in the diff at all: must go to the summary, never onto a wrong line; reported twice, it is one.
            FakeLLMFinding(path: "app.py", line: 400, severity: "high", title: "Far away"),
            FakeLLMFinding(path: "app.py", line: 400, severity: "high", title: "Far  away"),
        ])
        await llm.state.inject(.slow(.milliseconds(300)), api: .openAI, times: 1)
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        // The call's wall time is metered with it.
        #expect(try await world.count("SELECT count(*) FROM usage_records WHERE duration_ms >= 300") == 1)
        let review = try #require(await world.github.state.reviews(on: GitHubWorld.repo, 7).first)
        let ai = try #require(review.comments.first { $0["body"]?.contains("Missing default") == true })
        #expect(ai["line"] == "2")
        #expect(ai["body"]?.contains("```suggestion") == true)
        #expect(!review.comments.contains { $0["line"] == "400" })
        #expect(review.body.contains("Far away"), "the unanchored finding is listed in the summary")
        // It counts toward the check, so the run records it (unposted) with the others: the run shows
        // every finding its check counted (it was counted, never stored).
        #expect(try await world.count("SELECT count(*) FROM findings WHERE title = 'Far away' AND severity = 'high' AND posted = 0 AND line = 400") == 1)
        #expect(review.body.components(separatedBy: "Far away").count == 2, "listed once: \(review.body)")
        #expect(review.body.contains("Adds configuration loading."))
        let rejected = await world.github.state.rejected
        #expect(rejected.isEmpty, "\(rejected)")
        let requests = await llm.state.requests(.openAI)
        #expect(requests.count == 1)
        #expect(try await world.count("SELECT count(*) FROM usage_records") == 1)
        #expect(try await world.count("SELECT count(*) FROM events WHERE type = 'UsageRecorded'") == 1)
        #expect(try await world.count("SELECT count(*) FROM usage_records WHERE cost_usd > 0 AND input_tokens > 0") == 1)
        #expect(!world.log.text.contains(key), "the provider key must never be logged")
        let report = try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await actor.read { db in try UsageReport.make(workspace: actor.id, period: UsageReport.currentPeriod(), in: db) }
        }
        #expect(report.runs["completed"] == 1)
        #expect(report.models.count == 1)
        #expect(report.models.first?.calls == 1)
        #expect(report.costUSD > 0)
        let fileBytes = try Data(contentsOf: world.appliance.dataDirectory.workspaceFile(world.workspace))
        #expect(fileBytes.range(of: Data(key.utf8)) == nil, "the key is encrypted at rest")
        await world.stop()
        await llm.stop()
    }

    @Test("one run whose tokens cross 80% and 100% of the monthly tokens at once records the soft limit (it was looked at only when a run started)")
    func tokenSoftLimitCrossedByOneRun() async throws {
        let llm = try await FakeLLMServer.start()
        let world = try await GitHubWorld(billing: GitHubEndToEndTests.FixedPlan(plan: Plan(name: "tok", reviewsPerMonth: nil, tokensPerMonth: 2_500,
                                                                                          repositories: nil, seats: nil)))
        try await world.addOpenAIProvider(llm)
        await llm.state.setUsage(input: 2_000, output: 600)
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        #expect(try await world.count("SELECT count(*) FROM events WHERE type = 'PlanSoftLimitReached' AND data LIKE '%tokens_per_month%'") == 1)
        await world.stop()
        await llm.stop()
    }

    @Test("a usage number past any model's context (a broken proxy's 1e12) is metered at the estimate, not recorded as a month's tokens and a fortune")
    func implausibleUsageMeteredAtEstimate() async throws {
        let llm = try await FakeLLMServer.start()
        let world = try await GitHubWorld()
        try await world.addOpenAIProvider(llm)
        await llm.state.setUsage(input: 1_000_000_000_000, output: 2_500_000_000_000)
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        #expect(try await world.count("SELECT count(*) FROM usage_records") == 1)
        #expect(try await world.count("SELECT count(*) FROM usage_records WHERE input_tokens BETWEEN 1 AND 2000000 AND output_tokens < 2000000 AND cost_usd < 1") == 1)
        // Under every model's window but far past this small prompt: metered at the estimate too
        // (1,999,999 input tokens for a three-file diff spent the free plan's month).
        await llm.state.setUsage(input: 1_999_999, output: 20)
        await world.github.state.push(repo: GitHubWorld.repo, 7, head: "ccc222")
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "synchronize", head: "ccc222"))
        #expect(await world.waitForRun(state: .completed, count: 2))
        let inputs = try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await actor.read { db in try Int.fetchAll(db, sql: "SELECT input_tokens FROM usage_records ORDER BY id") }
        }
        #expect(inputs.count == 2 && inputs[1] < 16_384, "\(inputs)")
        await world.stop()
        await llm.stop()
    }

    @Test("an answer's output count that is missing (0) or far past its text (1,999,999 for a short answer) is metered at the estimate of the text")
    func implausibleOutputMeteredAtEstimate() async throws {
        let llm = try await FakeLLMServer.start()
        let world = try await GitHubWorld()
        try await world.addOpenAIProvider(llm)
        await llm.state.setUsage(input: 1_200, output: 0)
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        await llm.state.setUsage(input: 1_200, output: 1_999_999)
        await world.github.state.push(repo: GitHubWorld.repo, 7, head: "ccc222")
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "synchronize", head: "ccc222"))
        #expect(await world.waitForRun(state: .completed, count: 2))
        let outputs = try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await actor.read { db in try Int.fetchAll(db, sql: "SELECT output_tokens FROM usage_records ORDER BY id") }
        }
        #expect(outputs.count == 2 && outputs.allSatisfy { (1..<5_000).contains($0) }, "\(outputs)")
        await world.stop()
        await llm.stop()
    }

    @Test("an Azure endpoint pasted with its query, or an API version that would add a query parameter, is refused when added (requests went to a mangled URL)")
    func azureEndpointChecked() async throws {
        let world = try await GitHubWorld()
        let store = ProviderStore(masterKey: world.appliance.integrations.masterKey)
        func add(_ base: String, version: String? = nil) async throws {
            _ = try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
                try await store.add(kind: "azure-openai", apiKey: "k-0123456789", model: "gpt-4o", baseURL: URL(string: base)!, apiVersion: version,
                                    deployment: "prod", by: "test", in: actor)
            }
        }
        await #expect(throws: IntegrationError.self) {
            try await add("https://acme.openai.azure.com/openai/deployments/foo/chat/completions?api-version=2024-02-01")
        }
        await #expect(throws: IntegrationError.self) { try await add("https://acme.openai.azure.com", version: "2024-10-21&api-key=LEAK") }
        try await add("https://acme.openai.azure.com", version: "2024-10-01-preview")
        // Without the deployment's model its calls were priced as gpt-4o-mini, whatever it runs.
        await #expect(throws: IntegrationError.self) {
            _ = try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
                try await store.add(kind: "azure-openai", apiKey: "k-0123456789", model: nil, baseURL: URL(string: "https://acme.openai.azure.com")!,
                                    deployment: "prod", by: "test", in: actor)
            }
        }
        await world.stop()
    }

    @Test("a retried review job records each AI call once and does not call the model again")
    func usageExactlyOnceAcrossRetries() async throws {
        let llm = try await FakeLLMServer.start()
        let world = try await GitHubWorld()
        try await world.addOpenAIProvider(llm)
        await llm.state.setReview(summary: "Fine.", findings: [])
        // The first attempt calls the model, posts the review, then fails to complete the check.
        await world.github.state.inject("PATCH check-runs", [.status(500)])
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        let calls = await llm.state.requests(.openAI).count
        #expect(calls == 1, "the retry posts the stored result: one model call per run")
        #expect(try await world.count("SELECT count(*) FROM usage_records") == calls)
        #expect(try await world.count("SELECT count(*) FROM events WHERE type = 'UsageRecorded'") == calls)
        #expect(try await world.count("SELECT count(*) FROM events WHERE type = 'RunCompleted'") == 1)
        #expect(await world.github.state.reviews(on: GitHubWorld.repo, 7).count == 1)
        // The rollups count the same calls, once.
        #expect(await eventually {
            try await world.count("SELECT coalesce(sum(ai_calls), 0) FROM rollup_daily") == calls
        })
        await world.stop()
        await llm.stop()
    }

    @Test("when every provider fails the run still completes on the built-in checks and says the AI review failed")
    func providerDownStillCompletes() async throws {
        let llm = try await FakeLLMServer.start()
        let world = try await GitHubWorld()
        let store = ProviderStore(masterKey: world.appliance.integrations.masterKey)
        _ = try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await store.add(kind: "openai", apiKey: "sk-wrong-key-9999", model: "gpt-4o-mini", baseURL: llm.openAIBaseURL, by: "test", in: actor)
        }
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        let review = try #require(await world.github.state.reviews(on: GitHubWorld.repo, 7).first)
        #expect(review.comments.contains { $0["path"] == "app.py" && $0["line"] == "3" }, "built-in findings are still posted")
        let check = try #require(await world.github.state.checkRuns.values.first)
        #expect(check.summary?.contains("AI review") == true)
        #expect(!world.log.text.contains("sk-wrong-key-9999"))
        await world.stop()
        await llm.stop()
    }

    @Test("a clean change whose AI review failed (the key refused) is not a green \"No findings\": the check concludes as a failed run, neutral when so configured, and its title says the AI review failed")
    func failedAIReviewIsNotGreen() async throws {
        let llm = try await FakeLLMServer.start()
        for (setting, expected) in [(SentinelConfig.FailedRunConclusion.failure, "failure"), (.neutral, "neutral")] {
            let world = try await GitHubWorld { $0.review.failedRunConclusion = setting }
            // Nothing for the built-in checks to find: only the model could have reviewed this change.
            await world.github.state.addPull(FakePullRequest(repo: GitHubWorld.repo, number: 7, headSHA: "aaa111", baseSHA: "bbb000", files: [
                ("app.py", "modified", "@@ -1,3 +1,3 @@\n import os\n-KEY = os.environ['KEY']\n+KEY = os.environ.get('KEY')\n print(KEY)"),
            ]))
            let store = ProviderStore(masterKey: world.appliance.integrations.masterKey)
            _ = try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
                try await store.add(kind: "openai", apiKey: "sk-revoked-key-0000", model: "gpt-4o-mini", baseURL: llm.openAIBaseURL, by: "test", in: actor)
            }
            try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
            #expect(await world.waitForRun(state: .completed), "the run completes: the built-in checks ran and the review is posted")
            let check = try #require(await world.github.state.checkRuns.values.first)
            #expect(check.conclusion == expected, "\(setting)")
            #expect(check.title == "No findings; AI review failed", "\(check.title ?? "-")")
            #expect(check.summary?.contains("AI review failed") == true, "\(check.summary ?? "")")
            #expect(await world.github.state.reviews(on: GitHubWorld.repo, 7).count == 1)
            await world.stop()
        }
        // With the key accepted, the same change passes.
        let world = try await GitHubWorld()
        await world.github.state.addPull(FakePullRequest(repo: GitHubWorld.repo, number: 7, headSHA: "aaa111", baseSHA: "bbb000", files: [
            ("app.py", "modified", "@@ -1,3 +1,3 @@\n import os\n-KEY = os.environ['KEY']\n+KEY = os.environ.get('KEY')\n print(KEY)"),
        ]))
        try await world.addOpenAIProvider(llm)
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        let check = try #require(await world.github.state.checkRuns.values.first)
        #expect(check.conclusion == "success")
        #expect(check.title == "No findings", "\(check.title ?? "-")")
        await world.stop()
        await llm.stop()
    }
}

@Suite("provider and review commands")
struct ProviderCommandTests {
    @Test("provider add prints an id and never the key; list shows only its last 4 characters; review --diff prints findings")
    func providerAndReviewCLI() async throws {
        let dir = TemporaryDirectory("sentinel-cli")
        defer { dir.cleanup() }
        let data = dir.url.appendingPathComponent("data").path
        _ = try await SentinelProcess.run(["workspace", "create", "acme", "--data-dir", data])
        let keyFile = dir.url.appendingPathComponent("key.txt")
        try "sk-live-secret-value-abcd\n".write(to: keyFile, atomically: true, encoding: .utf8)
        let added = try await SentinelProcess.run(["provider", "add", "--data-dir", data, "--workspace", "acme", "--kind", "anthropic",
                                                   "--api-key-file", keyFile.path, "--json"])
        #expect(added.status == 0, "\(added.stderr)")
        #expect(!added.stdout.contains("sk-live-secret-value"))
        let object = try JSONSerialization.jsonObject(with: Data(added.stdout.utf8)) as? [String: Any]
        #expect((object?["id"] as? String)?.hasPrefix("prv_") == true)
        #expect(object?["key_suffix"] as? String == "abcd")
        let providerID = object?["id"] as? String ?? ""
        let reordered = try await SentinelProcess.run(["provider", "priority", "--data-dir", data, "--workspace", "acme", providerID, "7", "--json"])
        #expect(reordered.status == 0, "\(reordered.stderr)")
        #expect((try JSONSerialization.jsonObject(with: Data(reordered.stdout.utf8)) as? [String: Any])?["priority"] as? Int == 7)
        let outOfRange = try await SentinelProcess.run(["provider", "priority", "--data-dir", data, "--workspace", "acme", providerID, "10001"])
        #expect(outOfRange.status != 0)
        #expect(outOfRange.stderr.contains("priority: must be a whole number from 0 to 10000"), "\(outOfRange.stderr)")
        let listed = try await SentinelProcess.run(["provider", "list", "--data-dir", data, "--workspace", "acme", "--json"])
        #expect(!listed.stdout.contains("sk-live-secret-value"))
        #expect(listed.stdout.contains("\"anthropic\""))
        #expect((try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]])?.first?["priority"] as? Int == 7)
        // A key piped in (`vault read … | sentinel provider add --api-key-file -`, or /dev/stdin) is never written to disk.
        for source in ["-", "/dev/stdin"] {
            let piped = try await SentinelProcess.run(["provider", "add", "--data-dir", data, "--workspace", "acme", "--kind", "openai",
                                                       "--model", "gpt-4o", "--api-key-file", source, "--json"], stdin: "sk-piped-key-\(source.count)wxyz\n")
            #expect(piped.status == 0, "\(source): \(piped.stderr)")
            #expect(!piped.stdout.contains("sk-piped-key"))
        }
        let keys = try await SentinelProcess.run(["provider", "list", "--data-dir", data, "--workspace", "acme", "--json"])
        #expect(keys.stdout.components(separatedBy: "wxyz").count - 1 == 2, "\(keys.stdout)")
        #expect(!keys.stdout.contains("codex-next"))
        #expect(try await !SentinelProcess.run(["doctor", "--data-dir", data]).stdout.contains("no price names"))
        // A model no price names (typed with spaces around it, which are dropped) is said to be counted at its kind's dearest.
        let unpriced = try await SentinelProcess.run(["provider", "add", "--data-dir", data, "--workspace", "acme", "--kind", "openai",
                                                      "--model", " codex-next ", "--api-key-file", "-"], stdin: "sk-unpriced-key-0000\n")
        #expect(unpriced.status == 0 && unpriced.stdout.contains("model=codex-next "), "\(unpriced.stdout)")
        #expect(unpriced.stderr.contains("note: no price names openai model codex-next: its calls are counted at the dearest openai model's prices (openai/o1-pro*: $150 in, $600 out per million tokens)"),
                "\(unpriced.stderr)")
        // Doctor names it too (a provider added before the table priced its model said nothing).
        let doctor = try await SentinelProcess.run(["doctor", "--data-dir", data])
        #expect(doctor.stdout.contains("no price names the model of provider prv_") && doctor.stdout.contains("(openai codex-next): its calls are counted at openai/o1-pro*'s prices"),
                "\(doctor.stdout)")
        let noKey = try await SentinelProcess.run(["provider", "add", "--data-dir", data, "--workspace", "acme", "--kind", "openai",
                                                   "--api-key-file", dir.url.appendingPathComponent("absent.txt").path])
        #expect(noKey.stderr.contains("cannot read API key file \(dir.url.appendingPathComponent("absent.txt").path): no such file"), "\(noKey.stderr)")
        // A key file that is not UTF-8 is refused, not stored with its bytes replaced (the platform refused the changed key later).
        let latin1Key = dir.url.appendingPathComponent("latin1-key.txt")
        try (Data("sk-abc".utf8) + Data([0xFF, 0xFE]) + Data("defghijklmn".utf8)).write(to: latin1Key)
        let notUTF8 = try await SentinelProcess.run(["provider", "add", "--data-dir", data, "--workspace", "acme", "--kind", "openai",
                                                     "--model", "gpt-4o", "--api-key-file", latin1Key.path])
        #expect(notUTF8.status != 0 && notUTF8.stderr.contains("is not UTF-8 text"), "\(notUTF8.stderr)")
        // An address with a space or a character outside ASCII is refused, not stored percent-encoded (`/v%201`).
        for address in ["http://127.0.0.1:9/v 1", "http://127.0.0.1:9/v\u{00E9}", "http://127.0.0.1:9/v1 "] {
            let typed = try await SentinelProcess.run(["provider", "add", "--data-dir", data, "--workspace", "acme", "--kind", "openai-compatible",
                                                       "--model", "m", "--base-url", address, "--api-key-file", "-"], stdin: "sk-typed-key-0000\n")
            #expect(typed.status != 0 && typed.stderr.contains("not an absolute URL"), "\(address): \(typed.stderr)")
        }
        let bad = try await SentinelProcess.run(["provider", "add", "--data-dir", data, "--workspace", "acme", "--kind", "gpt9"])
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("unknown provider kind"))

        let diff = dir.url.appendingPathComponent("change.diff")
        try "diff --git a/README.md b/README.md\n--- a/README.md\n+++ b/README.md\n@@ -1,1 +1,3 @@\n # Title\n+<<<<<<< HEAD\n+>>>>>>> branch\n".write(to: diff, atomically: true, encoding: .utf8)
        let review = try await SentinelProcess.run(["review", "--diff", diff.path, "--json"])
        #expect(review.status == 0, "\(review.stderr)")
        let result = try JSONSerialization.jsonObject(with: Data(review.stdout.utf8)) as? [String: Any]
        let findings = result?["findings"] as? [[String: Any]] ?? []
        #expect(findings.contains { $0["path"] as? String == "README.md" && $0["source"] as? String == "builtin" })
        // `review --json` has always named the fields as Swift does (`startLine`), unlike the other `--json` outputs.
        let names: Set = ["path", "startLine", "line", "side", "severity", "category", "title", "body", "suggestion", "source", "fingerprint"]
        #expect(findings.allSatisfy { Set($0.keys).isSubset(of: names) }, "\(findings.map(\.keys))")
        // A --config file's paths narrow the AI review, not the built-in checks (its exclude turned them
        // off); findings past max_comments are printed and counted (they were left out: "0 finding(s)").
        let scoped = dir.url.appendingPathComponent("scoped.yml")
        try "version: 1\nreview:\n  max_comments: 0\n  paths:\n    exclude: [\"README.md\"]\n".write(to: scoped, atomically: true, encoding: .utf8)
        let text = try await SentinelProcess.run(["review", "--diff", diff.path, "--config", scoped.path])
        #expect(text.status == 0, "\(text.stderr)")
        #expect(text.stdout.contains("README.md:") && text.stdout.contains("over review.max_comments"), "\(text.stdout)")
        #expect(!text.stdout.contains("\n0 finding(s)"), "\(text.stdout)")
        let scopedJSON = try JSONSerialization.jsonObject(with: Data(try await SentinelProcess.run(["review", "--diff", diff.path, "--config", scoped.path,
                                                                                                   "--json"]).stdout.utf8)) as? [String: Any]
        #expect((scopedJSON?["overLimit"] as? [[String: Any]])?.contains { $0["path"] as? String == "README.md" } == true, "\(scopedJSON ?? [:])")
        // `git diff | sentinel review --diff -` (or /dev/stdin): the diff read from standard input.
        let diffText = try String(contentsOf: diff, encoding: .utf8)
        for source in ["-", "/dev/stdin"] {
            let piped = try await SentinelProcess.run(["review", "--diff", source, "--json"], stdin: diffText)
            #expect(piped.status == 0, "\(source): \(piped.stderr)")
            #expect(piped.stdout.contains("README.md"), "\(source): \(piped.stdout)")
        }
        // Bytes that are not UTF-8 (a file in Latin-1) do not stop the review; what cannot be read says why.
        let latin1 = dir.url.appendingPathComponent("latin1.diff")
        try (Data("diff --git a/n.txt b/n.txt\n--- a/n.txt\n+++ b/n.txt\n@@ -1,1 +1,2 @@\n caf".utf8) + Data([0xE9]) + Data("\n+<<<<<<< HEAD\n".utf8))
            .write(to: latin1)
        let mixed = try await SentinelProcess.run(["review", "--diff", latin1.path, "--json"])
        #expect(mixed.status == 0, "\(mixed.stderr)")
        #expect(mixed.stdout.contains("n.txt"), "\(mixed.stdout)")
        let missing = try await SentinelProcess.run(["review", "--diff", dir.url.appendingPathComponent("nope.diff").path])
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("cannot read diff \(dir.url.appendingPathComponent("nope.diff").path): no such file"), "\(missing.stderr)")
        let directory = try await SentinelProcess.run(["review", "--diff", dir.url.path])
        #expect(directory.stderr.contains("is a directory"), "\(directory.stderr)")
        let policy = dir.url.appendingPathComponent(".sentinel.yml")
        try "version: 1\nreview:\n  max_comments: lots\n".write(to: policy, atomically: true, encoding: .utf8)
        let validate = try await SentinelProcess.run(["config", "validate", policy.path])
        #expect(validate.status == 1)
        #expect(validate.stdout.contains("\(policy.path):3:"), "\(validate.stdout)")
        #expect(validate.stdout.contains("error:"))
        // Standard input (`-` or /dev/stdin) is read like a file; it said "cannot read the file".
        for path in ["-", "/dev/stdin"] {
            let piped = try await SentinelProcess.run(["config", "validate", path], stdin: "version: 1\nreview:\n  max_comments: lots\n")
            #expect(piped.status == 1 && piped.stdout.contains("\(path):3:17: error: review.max_comments: expected an integer"), "\(path): \(piped.stdout)")
        }
        let missingPolicy = try await SentinelProcess.run(["config", "validate", dir.url.appendingPathComponent("nope.yml").path])
        #expect(missingPolicy.status == 1 && missingPolicy.stdout.contains("nope.yml:1:1: error: cannot read file \(dir.url.appendingPathComponent("nope.yml").path): no such file"),
                "\(missingPolicy.stdout)")
        // A file that never ends is refused at the limit instead of read until memory runs out.
        let endless = try await SentinelProcess.run(["config", "validate", "/dev/zero"])
        #expect(endless.status == 1 && endless.stdout.contains("/dev/zero:1:1: error: cannot read file /dev/zero: it holds more than 256 KiB, the most read from one"), "\(endless.stdout)")
        // The check the pull request would get: printed, in the JSON, and as the exit status (2 when
        // it fails: a leaked key is critical, past the default review.fail_on). The diff uses git's
        // mnemonic prefixes.
        let leaked = dir.url.appendingPathComponent("leak.diff")
        try "diff --git i/app.py w/app.py\n--- i/app.py\n+++ w/app.py\n@@ -1,1 +1,2 @@\n import os\n+AWS_SECRET_ACCESS_KEY = \"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\"\n"
            .write(to: leaked, atomically: true, encoding: .utf8)
        let failing = try await SentinelProcess.run(["review", "--diff", leaked.path])
        #expect(failing.status == 2 && failing.stdout.contains("app.py:2 [critical]") && failing.stdout.hasSuffix("Check: failure\n"), "\(failing.stdout)")
        let failingJSON = try await SentinelProcess.run(["review", "--diff", leaked.path, "--json"])
        #expect(failingJSON.status == 2, "\(failingJSON.stderr)")
        #expect((try JSONSerialization.jsonObject(with: Data(failingJSON.stdout.utf8)) as? [String: Any])?["conclusion"] as? String == "failure")
        #expect(result?["conclusion"] as? String == "success", "a conflict marker is high, under the default fail_on: \(review.stdout)")
        let lenient = dir.url.appendingPathComponent("lenient.yml")
        try "version: 1\nreview:\n  fail_on: none\n".write(to: lenient, atomically: true, encoding: .utf8)
        let passing = try await SentinelProcess.run(["review", "--diff", leaked.path, "--config", lenient.path])
        #expect(passing.status == 0 && passing.stdout.hasSuffix("Check: success\n"), "\(passing.stdout)")
        let alone = try await SentinelProcess.run(["review", "--diff", leaked.path, "--appliance-config", lenient.path])
        #expect(alone.status == 1 && alone.stderr.contains("--appliance-config needs --workspace"), "\(alone.stderr)")
        let endlessDiff = try await SentinelProcess.run(["review", "--diff", "/dev/zero"])
        #expect(endlessDiff.status != 0 && endlessDiff.stderr.contains("cannot read diff /dev/zero: it holds more than 64 MiB, the most read from one"),
                "\(endlessDiff.stderr)")
    }

    @Test("review --diff --workspace records its model calls as the workspace's usage and stops at its AI budget")
    func localReviewUsageRecorded() async throws {
        let llm = try await FakeLLMServer.start()
        let dir = TemporaryDirectory("sentinel-cli-usage")
        defer { dir.cleanup() }
        let data = dir.url.appendingPathComponent("data").path
        _ = try await SentinelProcess.run(["workspace", "create", "acme", "--data-dir", data])
        let keyFile = dir.url.appendingPathComponent("key.txt")
        try FakeLLMServer.defaultKeys[.openAI]!.write(to: keyFile, atomically: true, encoding: .utf8)
        let added = try await SentinelProcess.run(["provider", "add", "--data-dir", data, "--workspace", "acme", "--kind", "openai",
                                                   "--model", "gpt-4o-mini", "--base-url", llm.openAIBaseURL.absoluteString,
                                                   "--api-key-file", keyFile.path])
        #expect(added.status == 0, "\(added.stderr)")
        let diff = dir.url.appendingPathComponent("change.diff")
        try "diff --git a/app.py b/app.py\n--- a/app.py\n+++ b/app.py\n@@ -1,1 +1,3 @@\n import os\n+x = os.environ['HOME']\n+print(x)\n"
            .write(to: diff, atomically: true, encoding: .utf8)
        func usage() async throws -> [String: Any] {
            let shown = try await SentinelProcess.run(["usage", "--data-dir", data, "--workspace", "acme", "--json"])
            #expect(shown.status == 0, "\(shown.stderr)")
            return try JSONSerialization.jsonObject(with: Data(shown.stdout.utf8)) as? [String: Any] ?? [:]
        }

        for round in 1...2 {
            let review = try await SentinelProcess.run(["review", "--data-dir", data, "--diff", diff.path, "--workspace", "acme", "--json"])
            #expect(review.status == 0, "\(review.stderr)")
            let calls = await llm.state.requests(.openAI).count
            #expect(calls == round, "one model call per review of this small diff")
            let report = try await usage()
            let models = report["models"] as? [[String: Any]] ?? []
            #expect(models.count == 1, "\(report)")
            #expect(models.first?["model"] as? String == "gpt-4o-mini")
            #expect(models.first?["calls"] as? Int == calls, "every call the CLI made is the workspace's usage: \(report)")
            #expect(report["input_tokens"] as? Int == 1_200 * calls)
            #expect(report["output_tokens"] as? Int == 80 * calls)
            #expect((report["cost_usd"] as? Double ?? 0) > 0, "priced from the provider's model: \(report)")
            #expect((report["runs"] as? [String: Any] ?? [:]).isEmpty, "a local review is no review run")
            // The text shows the cost as the JSON and the analytics do (four places showed 0.000228 as 0.0002).
            let text = try await SentinelProcess.run(["usage", "--data-dir", data, "--workspace", "acme"])
            let cost = try #require(report["cost_usd"] as? Double)
            #expect(text.stdout.contains("total: \(1_200 * calls) in / \(80 * calls) out tokens, \(cost.plainDecimalText) USD"), "\(text.stdout)")
            #expect(cost.plainDecimalText.count > 6, "\(cost)")
        }

        // Priced as `serve` prices it: `ai.price_table_file` of the data directory's configuration
        // (the built-in table was used, and a model priced only in the file cost nothing).
        let prices = dir.url.appendingPathComponent("prices.yaml")
        try "\"openai/gpt-4o-mini\": {input_per_million: 1000, output_per_million: 1000}\n".write(to: prices, atomically: true, encoding: .utf8)
        try "ai:\n  price_table_file: \(prices.path)\n".write(toFile: data + "/sentinel.yaml", atomically: true, encoding: .utf8)
        let before = try await usage()["cost_usd"] as? Double ?? 0
        let priced = try await SentinelProcess.run(["review", "--data-dir", data, "--diff", diff.path, "--workspace", "acme", "--json"])
        #expect(priced.status == 0, "\(priced.stderr)")
        let after = try await usage()["cost_usd"] as? Double ?? 0
        #expect(abs((after - before) - 1.28) < 0.0001, "1,200 in and 80 out at 1,000 USD a million each: \(after - before)")
        // Its tokens count toward the plan: past 80 % of the plan's tokens, PlanSoftLimitReached is
        // appended (only review runs told it).
        let plans = dir.url.appendingPathComponent("plans.yaml")
        try "plans:\n  tiny: {reviews_per_month: 10, tokens_per_month: 4000, repositories: 5, seats: 5}\n".write(to: plans, atomically: true, encoding: .utf8)
        try "billing:\n  plans_file: \(plans.path)\n".write(toFile: data + "/sentinel.yaml", atomically: true, encoding: .utf8)
        let set = try await SentinelProcess.run(["plan", "set", "--data-dir", data, "--workspace", "acme", "tiny"])
        #expect(set.status == 0, "\(set.stderr)")
        _ = try await SentinelProcess.run(["review", "--data-dir", data, "--diff", diff.path, "--workspace", "acme", "--json"])
        let told = try await SentinelProcess.run(["audit", "--data-dir", data, "--workspace", "acme", "--json"])
        #expect(told.stdout.contains("PlanSoftLimitReached"), "\(told.stdout.suffix(2000))")

        // The appliance's config named as `serve` is given it (`/etc/sentinel/sentinel.yaml`, outside
        // the data directory): its limits hold (it could not be named, and they were skipped).
        let etc = dir.url.appendingPathComponent("etc-sentinel.yaml")
        try "review:\n  max_tokens_per_run: 10\n".write(to: etc, atomically: true, encoding: .utf8)
        let limited = try await SentinelProcess.run(["review", "--data-dir", data, "--diff", diff.path, "--workspace", "acme", "--json",
                                                     "--appliance-config", etc.path])
        #expect(limited.status == 2, "an AI review that could not be made fails the check (review.failed_run_conclusion): \(limited.stderr)")
        #expect(await llm.state.requests(.openAI).count == 4, "no model call past the run's token budget")
        let limitedResult = try JSONSerialization.jsonObject(with: Data(limited.stdout.utf8)) as? [String: Any]
        #expect((limitedResult?["ai"] as? String)?.contains("10 tokens") == true, "\(limited.stdout)")
        // A setting the workspace locks, which a --config file changes, is told as a pull request's review tells it.
        let strict = dir.url.appendingPathComponent("strict.yml"), lenient = dir.url.appendingPathComponent("lenient.yml")
        try "version: 1\nreview:\n  fail_on: high\n".write(to: strict, atomically: true, encoding: .utf8)
        try "version: 1\nreview:\n  fail_on: none\n".write(to: lenient, atomically: true, encoding: .utf8)
        let locked = try await SentinelProcess.run(["config", "set", "--data-dir", data, "--workspace", "acme", "--file", strict.path, "--lock", "review.fail_on"])
        #expect(locked.status == 0, "\(locked.stderr)")
        let overridden = try await SentinelProcess.run(["review", "--data-dir", data, "--diff", diff.path, "--workspace", "acme", "--json",
                                                        "--appliance-config", etc.path, "--config", lenient.path])
        #expect(overridden.stderr.contains("review.fail_on is locked by the workspace settings; the file value was not applied"), "\(overridden.stderr)")

        // Spent beyond a budget set now: the next local review makes no model call and says why.
        let budget = try await SentinelProcess.run(["provider", "budget", "--data-dir", data, "--workspace", "acme", "--usd", "0.0000001"])
        #expect(budget.status == 0, "\(budget.stderr)")
        let refused = try await SentinelProcess.run(["review", "--data-dir", data, "--diff", diff.path, "--workspace", "acme", "--json"])
        #expect(refused.status == 0, "\(refused.stderr)")
        #expect(await llm.state.requests(.openAI).count == 4)
        let result = try JSONSerialization.jsonObject(with: Data(refused.stdout.utf8)) as? [String: Any]
        #expect((result?["ai"] as? String)?.contains("budget") == true, "\(refused.stdout)")
        await llm.stop()
    }
}

@Suite("AI eligibility")
struct AIEligibilityTests {
    @Test("a spent monthly budget makes no provider eligible, with the reason; no key at all says so too")
    func budgetSpent() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        let key = try MasterKey.load(at: h.dataDirectory.masterKeyFile)
        let store = ProviderStore(masterKey: key)
        let http = try AsyncOutboundHTTPClient()
        let resolver = WorkspaceModelResolver(store: store, http: http)
        let policy = ReviewPolicy(values: PolicySchema.defaults)
        try await h.supervisor.withWorkspace(ws) { actor in
            let none = await resolver.model(for: actor, policy: policy)
            #expect(none.model == nil)
            #expect(none.skippedReason == ProviderRouter.SkipReason.noKey)
            let added = try await store.add(kind: "openai", apiKey: "sk-test-budget-0001", model: "gpt-4o-mini", baseURL: nil, by: "test", in: actor)
            #expect(await resolver.model(for: actor, policy: policy).model != nil)
            // Keys there, all switched off: not "no key is configured" (admins added one again).
            _ = try await store.setEnabled(added.id, false, by: "test", in: actor)
            #expect(await resolver.model(for: actor, policy: policy).skippedReason == ProviderRouter.SkipReason.allDisabled)
            _ = try await store.setEnabled(added.id, true, by: "test", in: actor)
            try await store.setMonthlyBudget(1.0, by: "test", in: actor)
            try await actor.write { tx in
                try tx.db.execute(sql: """
                    INSERT INTO usage_records (call_key, provider, model, input_tokens, output_tokens, cost_usd, recorded_at)
                    VALUES ('k1', 'prv', 'gpt-4o-mini', 1000, 100, 1.5, ?)
                    """, arguments: [Date().timeIntervalSince1970])
            }
            #expect(try await store.spentThisMonth(in: actor) == 1.5)
            let spent = await resolver.model(for: actor, policy: policy)
            #expect(spent.model == nil)
            #expect(spent.skippedReason == ProviderRouter.SkipReason.budgetSpent)
            try await store.setMonthlyBudget(nil, by: "test", in: actor)
            #expect(await resolver.model(for: actor, policy: policy).model != nil)
        }
        await http.shutdown()
        await h.stop()
    }
}

@Suite("AI pricing")
struct AIPricingTests {
    @Test("a call is priced from the provider its run resolved, also when the provider is deleted while the run is under way")
    func pricedFromResolvedProvider() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        let store = ProviderStore(masterKey: try MasterKey.load(at: h.dataDirectory.masterKeyFile))
        let http = try AsyncOutboundHTTPClient()
        let resolver = WorkspaceModelResolver(store: store, http: http)
        let policy = ReviewPolicy(values: PolicySchema.defaults)
        try await h.supervisor.withWorkspace(ws) { actor in
            let provider = try await store.add(kind: "openai", apiKey: "sk-test-pricing-0001", model: "gpt-4o-mini", baseURL: nil, by: "test", in: actor)
            #expect(await resolver.model(for: actor, policy: policy).model != nil)
            try await store.delete(provider.id, by: "test", in: actor)
            let call = ModelCallRecord(chunk: 0, attempt: 1, provider: provider.id, model: "gpt-4o-mini",
                                       usage: TokenUsage(inputTokens: 1_000_000, outputTokens: 1_000_000), parsed: true)
            // gpt-4o-mini: $0.15 per million input tokens, $0.60 per million output tokens.
            #expect(abs(await resolver.cost(of: call, in: actor) - 0.75) < 1e-9)
            // A provider no run resolved is read from the file; one that does not exist costs nothing.
            let other = try await store.add(kind: "openai", apiKey: "sk-test-pricing-0002", model: "gpt-4o-mini", baseURL: nil, by: "test", in: actor)
            let otherCall = ModelCallRecord(chunk: 0, attempt: 1, provider: other.id, model: "gpt-4o-mini",
                                            usage: TokenUsage(inputTokens: 1_000_000), parsed: true)
            #expect(abs(await WorkspaceModelResolver(store: store, http: http).cost(of: otherCall, in: actor) - 0.15) < 1e-9)
            let unknown = ModelCallRecord(chunk: 0, attempt: 1, provider: "prv_none", model: "gpt-4o-mini",
                                          usage: TokenUsage(inputTokens: 1_000_000), parsed: true)
            #expect(await resolver.cost(of: unknown, in: actor) == 0)
        }
        await http.shutdown()
        await h.stop()
    }
}

/// Counts how often a run asks the resolver for the cost of a model call.
final class CostLookups: ReviewModelResolver, Sendable {
    let inner: WorkspaceModelResolver
    let count = Mutex(0)
    init(_ inner: WorkspaceModelResolver) { self.inner = inner }
    func model(for workspace: WorkspaceActor, policy: ReviewPolicy) async -> (model: (any ReviewModel)?, skippedReason: String?) {
        await inner.model(for: workspace, policy: policy)
    }
    func cost(of call: ModelCallRecord, in workspace: WorkspaceActor) async -> Double {
        count.withLock { $0 += 1 }
        return await inner.cost(of: call, in: workspace)
    }
}

@Suite("AI review: cost lookups")
struct AIReviewCostLookupTests {
    @Test("each model call's cost is looked up once, when the spend gate records it, not again with the prepared review")
    func costLookedUpOncePerCall() async throws {
        let llm = try await FakeLLMServer.start()
        let http = try AsyncOutboundHTTPClient()
        let lookups = Mutex<CostLookups?>(nil)
        let world = try await GitHubWorld(models: { key in
            let resolver = CostLookups(WorkspaceModelResolver(store: ProviderStore(masterKey: key), http: http))
            lookups.withLock { $0 = resolver }
            return resolver
        })
        try await world.addOpenAIProvider(llm)
        await llm.state.setReview(summary: "Fine.", findings: [])
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        let calls = try await world.count("SELECT count(*) FROM usage_records WHERE cost_usd > 0")
        #expect(calls >= 1)
        #expect(lookups.withLock { $0?.count.withLock { $0 } } == calls)
        await world.stop()
        await llm.stop()
        await http.shutdown()
    }
}
