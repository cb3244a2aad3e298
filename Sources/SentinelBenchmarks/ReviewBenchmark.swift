import ArgumentParser
import AsyncHTTPClient
import Foundation
import GRDB
import Logging
import NIOCore
import SentinelCore
import SentinelTestSupport
import Synchronization

/// Webhook in → review posted, end to end: `sentinel serve` (a child process, its real HTTP stack,
/// scheduler and workspace file) reviews pull requests of a loopback fake GitHub with a loopback
/// OpenAI-compatible fake model. Both fakes are Hummingbird servers on NIO, whose listening
/// sockets set `TCP_NODELAY` (inherited by accepted connections on Linux), and AsyncHTTPClient
/// sets it on the appliance's side: no delayed-ACK stalls that real GitHub does not have.
struct ReviewBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "review", abstract: "Webhook in → review posted through sentinel serve, with loopback fakes.")
    @Option(help: "Pull requests measured per concurrency level.") var prs = 200
    @Option(help: "Pull requests reviewed first, not measured.") var warmup = 20
    @Option(help: "Changed files per pull request.") var files = 20
    @Option(help: "Changed lines per file (60% added, 40% removed).") var linesPerFile = 100
    @Option(help: "Pull requests in flight at once, one measurement each.") var concurrency: [Int] = [1, 16]
    @Option(help: "The sentinel executable (default: beside this program).") var sentinel: String?
    @Option(help: "Reviews the workspace already did this month before the run, each with five model calls and five findings (a busy tenant by the month's end).")
    var historyReviews = 0
    @Option(help: "Milliseconds the fake GitHub takes to answer each call of the review path (real GitHub takes tens to hundreds).")
    var githubLatencyMs = 0

    static let repo = "octo-org/services"
    static let repoID = 1001

    func run() async throws {
        let executable = try ServeProcess.executable(sentinel)
        let github = try await FakeGitHub.start()
        await github.state.setLatency(.milliseconds(githubLatencyMs))
        let llm = try await FakeLLMServer.start()
        let dir = TemporaryBenchDirectory()
        defer { dir.remove() }
        let dataURL = dir.url.appendingPathComponent("data")
        let secret = Data("bench-webhook-secret".utf8)
        let webhookPath = try await prepare(dataURL, github: github, llm: llm, secret: secret)

        // The pull requests (one head commit each), and what the model answers for every chunk:
        // one finding on an added line of the first file.
        let diff = Self.files(count: files, linesPerFile: linesPerFile)
        let total = warmup + prs * concurrency.count
        for number in 1...total {
            await github.state.addPull(FakePullRequest(repo: Self.repo, number: number, headSHA: Self.sha(number), baseSHA: Self.sha(0), files: diff))
        }
        await llm.state.setReview(summary: "Moves request parsing into one pipeline stage.", findings: [
            FakeLLMFinding(path: diff[0].filename, line: 13, severity: "medium", category: "correctness", title: "Unchecked conversion",
                           body: "`Int(value)` returns nil for malformed input; the caller force-unwraps it."),
        ])
        // Each delivery's body, built before anything is measured (the sorted-key serialisation of
        // a 23 KB payload costs milliseconds of the two cores the appliance runs on).
        let bodies = (1...total).map { number in
            GitHubPayload.pullRequest(action: "opened", number: number, head: Self.sha(number), base: Self.sha(0), repoID: Self.repoID, repoName: Self.repo)
        }
        let changedLines = diff.reduce(0) { total, file in
            total + (file.patch ?? "").split(separator: "\n").filter { $0.hasPrefix("+") || $0.hasPrefix("-") }.count
        }

        let posted = PostedReviews()
        let (signals, signal) = AsyncStream.makeStream(of: Void.self)
        await github.state.setOnReviewPosted { posted.record(); signal.yield() }

        let serve = try ServeProcess(executable: executable, dataDirectory: dataURL)
        let port = try await serve.port()
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        var rows: [String] = []
        var stageRows: [String] = []
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                defer { signal.finish() }
                // Matches each posted review (the fake calls the hook in the order it stores them) to its pull request.
                group.addTask {
                    var index = 0
                    for await _ in signals {
                        let reviews = await github.state.reviews
                        while index < reviews.count {
                            posted.resolve(number: reviews[index].number, index: index)
                            index += 1
                        }
                    }
                }
                let driver = ReviewDriver(client: client, url: "http://127.0.0.1:\(port)\(webhookPath)", secret: secret, posted: posted, bodies: bodies)
                var next = 1
                _ = try await driver.phase(first: next, count: warmup, width: 1)
                next += warmup
                for width in concurrency {
                    let githubBefore = await github.state.requests.count
                    let llmBefore = await llm.state.requests(.openAI).count
                    let linesBefore = serve.logLines().count
                    serve.resetPeak()
                    let started = ContinuousClock.now
                    let latencies = try await driver.phase(first: next, count: prs, width: width)
                    next += prs
                    let elapsed = (ContinuousClock.now - started).seconds
                    // The run's last steps (findings recorded, check completed) follow the review's POST.
                    try await Task.sleep(for: .milliseconds(500))
                    let peak = serve.memoryMiB("VmHWM")
                    let githubCalls = await github.state.requests.count - githubBefore
                    let calls = await llm.state.requests(.openAI).dropFirst(llmBefore)
                    let promptChars = calls.reduce(0) { $0 + Self.promptCharacters($1) }
                    let p = Percentiles(latencies)
                    rows.append("| \(width) | \(prs) | \(files) | \(changedLines) | \(ms(p.p50)) | \(ms(p.p99)) | \(String(format: "%.1f", Double(prs) / elapsed))/s | "
                        + "\(String(format: "%.2f", Double(githubCalls) / Double(prs))) | \(String(format: "%.2f", Double(calls.count) / Double(prs))) | "
                        + "\(calls.isEmpty ? 0 : promptChars / calls.count) | \(promptChars / prs) | \(String(format: "%.0f", peak)) MiB |")
                    let runs = serve.logLines().dropFirst(linesBefore).filter { $0["message"] as? String == "run completed" }
                    stageRows.append(contentsOf: Self.stageTable(runs, width: width))
                }
            }
        } catch {
            try? await client.shutdown()
            await serve.stop()
            throw error
        }
        try await client.shutdown()
        await serve.stop()
        await github.stop()
        await llm.stop()
        print("| PRs in flight | PRs | files | changed lines | 202 → review POST p50 | p99 | reviews/s | GitHub calls per review | model calls per review | prompt characters per call | per review | peak RSS of serve |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        rows.forEach { print($0) }
        print("")
        print("Stages of the run (the `run completed` log line's `stages_ms`; ms):")
        print("")
        print("| PRs in flight | stage | p50 | p99 |")
        print("|---|---|---|---|")
        stageRows.forEach { print($0) }
    }

    /// The data directory `serve` will run on: one workspace on the enterprise plan (no monthly
    /// review limit), the fake GitHub's App as its integration, the fake model as its OpenAI provider.
    func prepare(_ dataURL: URL, github: FakeGitHub, llm: FakeLLMServer, secret: Data) async throws -> String {
        let data = DataDirectory(path: dataURL.path)
        try data.prepare()
        let config = SentinelConfig()
        let opener = DatabaseOpener(config: config)
        let control = try ControlStore(dataDirectory: data, opener: opener)
        let workspace = try WorkspaceService(dataDirectory: data, control: control, opener: opener).create(name: "bench").workspaceID!
        try BuiltinBillingProvider(control: control).assign("enterprise", to: workspace)
        let supervisor = Supervisor(dataDirectory: data, control: control, config: config, registry: JobRegistry(), logger: Logger.sentinel(level: "error"))
        let integrations = IntegrationService(control: control, masterKey: try MasterKey.load(at: data.masterKeyFile))
        let (appID, pem, api, model) = (github.appID, github.privateKeyPEM, github.baseURL, llm.openAIBaseURL)
        let key = FakeLLMServer.defaultKeys[.openAI]!
        let history = historyReviews
        let summary = try await supervisor.withWorkspace(workspace) { actor in
            let summary = try await integrations.addGitHub(workspace: actor, appID: appID, privateKeyPEM: pem, webhookSecret: secret, apiURL: api)
            _ = try await ProviderStore(masterKey: integrations.masterKey).add(kind: "openai", apiKey: key, model: "gpt-4o-mini", baseURL: model,
                                                                               by: "bench", in: actor)
            try await Self.recordHistory(reviews: history, integration: IntegrationID(summary.id)!, in: actor)
            return summary
        }
        await supervisor.shutdown()
        return summary.webhookPath
    }

    /// `reviews` completed review runs between the start of this month (UTC) and now, of another
    /// repository of the same installation, each with the rows the review runner leaves: five
    /// `usage_records` (one per model call) and five `findings`.
    static func recordHistory(reviews: Int, integration: IntegrationID, in actor: WorkspaceActor) async throws {
        guard reviews > 0 else { return }
        try await actor.write { tx in
            let repository = try RepositoryStore.register(integrationID: integration, externalID: 999_999, fullName: "octo-org/history",
                                                          installationID: nil, in: &tx).id
            var calendar = Calendar(identifier: .gregorian)
            calendar.timeZone = TimeZone(identifier: "UTC")!
            let monthStart = calendar.date(from: calendar.dateComponents([.year, .month], from: tx.now))!.timeIntervalSince1970
            let span = tx.now.timeIntervalSince1970 - monthStart
            let run = try tx.db.makeStatement(sql: """
                INSERT INTO review_runs (repository_id, pr_number, head_sha, trigger, state, created_at, started_at, finished_at, conclusion)
                VALUES (?, ?, ?, 'opened', 'completed', ?, ?, ?, 'success')
                """)
            let call = try tx.db.makeStatement(sql: """
                INSERT INTO usage_records (run_id, call_key, provider, model, input_tokens, output_tokens, cost_usd, duration_ms, recorded_at)
                VALUES (?, ?, 'openai', 'gpt-4o-mini', 9000, 400, 0.0016, 900, ?)
                """)
            let finding = try tx.db.makeStatement(sql: """
                INSERT INTO findings (run_id, repository_id, pr_number, path, line, side, severity, category, title, body, source, fingerprint, posted)
                VALUES (?, ?, ?, ?, ?, 'RIGHT', 'medium', 'correctness', 'Unchecked conversion',
                        '`Int(value)` returns nil for malformed input; the caller force-unwraps it.', 'ai', ?, 1)
                """)
            for i in 0..<reviews {
                let at = monthStart + span * Double(i) / Double(reviews)
                try run.execute(arguments: [repository, i + 1, sha(i), at, at, at + 30])
                let runID = tx.db.lastInsertedRowID
                for c in 0..<5 {
                    try call.execute(arguments: [runID, "history:\(runID):call\(c)", at + 10])
                    try finding.execute(arguments: [runID, repository, i + 1, "Sources/Service\(c)/Pipeline\(c).swift", 13, "history-\(i)-\(c)"])
                }
            }
        }
    }

    static func sha(_ n: Int) -> String { String(format: "%040x", 0xabc000 + n) }

    /// `count` files of Swift-like code, each `lines` changed lines in hunks of 15 added and 10
    /// removed lines between 3 lines of context; the first added line of the first hunk is line 13.
    static func files(count: Int, linesPerFile lines: Int) -> [(filename: String, status: String, patch: String?)] {
        (0..<count).map { f in
            var patch = ""
            var changed = 0
            var hunk = 0
            while changed < lines {
                let removed = min(10, max(0, (lines - changed) * 2 / 5))
                let added = min(15, lines - changed - removed)
                let oldStart = 10 + hunk * 40, newStart = 10 + hunk * 45
                patch += "@@ -\(oldStart),\(6 + removed) +\(newStart),\(6 + added) @@ struct Module\(f)Pipeline {\n"
                for c in 0..<3 { patch += "     let context\(hunk)_\(c) = configuration.value(for: \"key.\(hunk).\(c)\")\n" }
                for r in 0..<removed { patch += "-    let legacy\(hunk)_\(r) = parse(request.field(\(r)), strict: false) ?? fallback\(r)\n" }
                for a in 0..<added { patch += "+    let value\(hunk)_\(a) = try pipeline.stage(\(a)).validate(request.field(\(a)), limit: \(a * 64))\n" }
                for c in 0..<3 { patch += "     log.debug(\"stage \(hunk).\(c) done\", metadata: [\"file\": \"\(f)\"])\n" }
                changed += removed + added
                hunk += 1
            }
            return (filename: "Sources/Service\(f % 4)/Pipeline\(f).swift", status: "modified", patch: Optional(String(patch.dropLast())))
        }
    }

    /// Characters of every message's text in an OpenAI chat request.
    static func promptCharacters(_ request: RecordedLLMRequest) -> Int {
        let messages = request.json()?["messages"] as? [[String: Any]] ?? []
        return messages.reduce(0) { $0 + ((($1["content"] as? String)?.count) ?? 0) }
    }

    /// p50 and p99 of each stage over the runs' `stages_ms`, in the order the stages ran, and of
    /// their sum (`run_total`: the laps add up to the run's wall time, job start to run completed).
    static func stageTable(_ runs: [[String: Any]], width: Int) -> [String] {
        var order: [String] = []
        var values: [String: [Double]] = [:]
        for run in runs {
            var total = 0.0
            for pair in (run["stages_ms"] as? String ?? "").split(separator: " ") {
                let parts = pair.split(separator: "=")
                guard parts.count == 2, let value = Double(parts[1]) else { continue }
                let stage = String(parts[0])
                if values[stage] == nil { order.append(stage) }
                values[stage, default: []].append(value / 1000)
                total += value / 1000
            }
            if values["run_total"] == nil { order.append("run_total") }
            values["run_total", default: []].append(total)
            let calls = (run["model_call_ms"] as? String ?? "").split(separator: " ").compactMap { Double($0) }
            if let slowest = calls.max() {
                if values["model_call_slowest"] == nil { order.append("model_call_slowest") }
                values["model_call_slowest", default: []].append(slowest / 1000)
            }
        }
        return order.map { stage in
            let p = Percentiles(values[stage] ?? [])
            return "| \(width) | \(stage) | \(ms(p.p50)) | \(ms(p.p99)) |"
        }
    }
}

/// Delivers `pull_request.opened` for pull requests and waits for their reviews.
struct ReviewDriver: Sendable {
    let client: HTTPClient
    let url: String
    let secret: Data
    let posted: PostedReviews
    /// The `opened` payload of pull request `n` at `n - 1`.
    let bodies: [Data]

    /// Delivers the PR's `opened` event (a 23 KB signed payload); returns when the 202 arrived.
    func deliver(_ number: Int) async throws -> ContinuousClock.Instant {
        let body = bodies[number - 1]
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "X-GitHub-Event", value: "pull_request")
        request.headers.add(name: "X-GitHub-Delivery", value: UUID().uuidString)
        request.headers.add(name: "X-Hub-Signature-256", value: GitHubWebhookSignature.sign(body: body, secret: secret))
        request.body = .bytes(ByteBuffer(bytes: body))
        let response = try await client.execute(request, timeout: .seconds(30))
        _ = try await response.body.collect(upTo: 1 << 16)
        let accepted = ContinuousClock.now
        guard response.status.code == 202 else { throw BenchError("delivery answered \(response.status.code)") }
        return accepted
    }

    /// Pull requests `first ..< first + count`, `width` in flight at once; the latency of each
    /// from its delivery's 202 to its review's POST at the fake GitHub.
    func phase(first: Int, count: Int, width: Int) async throws -> [Double] {
        let cursor = Counter()
        let latencies = LatencyRecorder()
        try await withThrowingTaskGroup(of: Void.self) { workers in
            for _ in 0..<width {
                workers.addTask {
                    while true {
                        let i = cursor.take()
                        if i >= count { return }
                        let number = first + i
                        let accepted = try await deliver(number)
                        let reviewed = try await posted.wait(for: number, timeout: .seconds(120))
                        latencies.record((reviewed - accepted).seconds)
                    }
                }
            }
            try await workers.waitForAll()
        }
        return latencies.values()
    }
}

/// When each review reached the fake GitHub, by pull request, and who is waiting for which.
final class PostedReviews: Sendable {
    private struct State {
        var times: [ContinuousClock.Instant] = []
        var arrived: [Int: ContinuousClock.Instant] = [:]
        var waiting: [Int: CheckedContinuation<ContinuousClock.Instant?, Never>] = [:]
    }
    private let state = Mutex(State())

    /// Called by the fake as it stores a review (in order).
    func record() {
        let now = ContinuousClock.now
        state.withLock { $0.times.append(now) }
    }

    /// The `index`-th stored review is for pull request `number`.
    func resolve(number: Int, index: Int) {
        let waiter = state.withLock { state -> (CheckedContinuation<ContinuousClock.Instant?, Never>, ContinuousClock.Instant)? in
            let time = state.times[index]
            if let waiter = state.waiting.removeValue(forKey: number) { return (waiter, time) }
            state.arrived[number] = time
            return nil
        }
        if let (continuation, time) = waiter { continuation.resume(returning: time) }
    }

    /// When the review of `number` was posted (waits for it, at most `timeout`).
    func wait(for number: Int, timeout: Duration) async throws -> ContinuousClock.Instant {
        try await withThrowingTaskGroup(of: ContinuousClock.Instant?.self) { group in
            group.addTask {
                await withCheckedContinuation { (continuation: CheckedContinuation<ContinuousClock.Instant?, Never>) in
                    let ready = self.state.withLock { state -> ContinuousClock.Instant?? in
                        if let time = state.arrived.removeValue(forKey: number) { return .some(time) }
                        state.waiting[number] = continuation
                        return .none
                    }
                    if let ready { continuation.resume(returning: ready) }
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                // Gives up: the waiter (if still waiting) is resumed with nil.
                self.giveUp(number)
                return nil
            }
            let first = try await group.next() ?? nil
            group.cancelAll()
            guard let time = first else { throw BenchError("no review of pull request \(number) was posted within \(timeout)") }
            return time
        }
    }

    private func giveUp(_ number: Int) {
        if let waiter = state.withLock({ $0.waiting.removeValue(forKey: number) }) { waiter.resume(returning: nil) }
    }
}
