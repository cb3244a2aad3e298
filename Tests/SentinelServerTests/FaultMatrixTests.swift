import Foundation
import GRDB
import SentinelCore
import SentinelServer
import SentinelTestSupport
import Testing

/// Reliability scenario 2, the fault matrix: each AI provider wire format and each source-control
/// platform against the faults they are known to produce, through Sentinel's real stack on
/// loopback fakes. Every run must end `completed` or `failed` with its reason where the author
/// sees it (the GitHub check run's conclusion and summary, the GitLab commit status's
/// description), never stay `running`, and every retry must wait at least what the server asked
/// (checked from the fakes' recorded arrival times, never from a wall-clock budget).
@Suite("Fault matrix", .serialized)
struct FaultMatrixTests {
    // MARK: AI providers

    enum AIFault: String, CaseIterable, Sendable {
        case rateLimited = "429 with Retry-After"
        case serverError = "500"
        case timeout = "timeout"
        case slowDrip = "slow drip"
        case garbageJSON = "garbage JSON"
        case truncatedOutput = "truncated output"
        case refusal = "refusal"

        var fake: FakeLLMFault {
            switch self {
            case .rateLimited: return .rateLimited(retryAfter: 1)
            case .serverError: return .status(500)
            case .timeout: return .slow(.seconds(3))
            case .slowDrip: return .drip(interval: .milliseconds(50))
            case .garbageJSON: return .garbageJSON
            case .truncatedOutput: return .truncatedOutput
            case .refusal: return .refusal
            }
        }

        /// What the check's "AI review:" line says, and how many calls the provider saw (nil: not
        /// counted, a timed-out request is recorded only once the fake answers). Retryable faults are
        /// tried twice; a refusal and an answer cut off at the output-token limit are final at once.
        var expected: (reason: String, calls: Int?) {
            switch self {
            case .rateLimited: return ("rate limited (HTTP 429), retry after 1 s after 2 attempts", 2)
            case .serverError: return ("server error (HTTP 500) after 2 attempts", 2)
            case .timeout: return ("timed out after 2 attempts", nil)
            case .slowDrip: return ("timed out after 2 attempts", 2)
            case .garbageJSON: return ("unreadable response: the response has no", 2)
            case .truncatedOutput: return ("the model's answer stopped at its output-token limit (80 tokens) before the review was complete", 1)
            case .refusal: return ("the model declined", 1)
            }
        }
    }

    struct AICell: Sendable, CustomTestStringConvertible {
        var kind: ProviderKind
        var fault: AIFault
        var testDescription: String { "\(kind.rawValue) × \(fault.rawValue)" }
    }

    static let aiCells: [AICell] = ProviderKind.allCases.flatMap { kind in AIFault.allCases.map { AICell(kind: kind, fault: $0) } }

    static func api(_ kind: ProviderKind) -> FakeLLMAPI {
        switch kind {
        case .openai: return .openAI
        case .azureOpenAI: return .azure
        case .anthropic: return .anthropic
        case .gemini: return .gemini
        case .openAICompatible: return .openAICompatible
        }
    }

    /// Short per-call deadline (body included) and backoff, so timeouts and drips end fast; a
    /// provider's `Retry-After` is still honoured up to `maxBackoff`.
    /// A short call timeout, so the timeout cells end soon; the 429 cell's calls get longer, as
    /// its first call timing out on a loaded machine was retried at once (0.34 s after it, where
    /// the test expects the 429's `Retry-After: 1` between them).
    static func routerSettings(_ fault: AIFault) -> RouterSettings {
        RouterSettings(maxAttempts: 2, callTimeout: fault == .rateLimited ? .seconds(10) : .milliseconds(700), initialBackoff: .milliseconds(20),
                       maxBackoff: .seconds(5))
    }

    @Test("an AI provider fault never fails or strands the run: it completes on the built-in checks and the check says why the AI review failed",
          arguments: aiCells)
    func aiProviderFault(_ cell: AICell) async throws {
        let llm = try await FakeLLMServer.start()
        let http = try AsyncOutboundHTTPClient()
        let world: GitHubWorld
        do {
            world = try await GitHubWorld(models: { key in
                WorkspaceModelResolver(store: ProviderStore(masterKey: key), http: http, settings: Self.routerSettings(cell.fault))
            })
        } catch {
            await http.shutdown()
            await llm.stop()
            throw error
        }
        // Whatever the checks find, the world and the clients are shut down (a client left open crashes the test process).
        do { try await checkAIFault(cell, world: world, llm: llm) } catch { Issue.record(error) }
        await world.stop()
        await http.shutdown()
        await llm.stop()
    }

    private func checkAIFault(_ cell: AICell, world: GitHubWorld, llm: FakeLLMServer) async throws {
        let provider = llm.config(cell.kind)
        let store = ProviderStore(masterKey: world.appliance.integrations.masterKey)
        _ = try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await store.add(kind: cell.kind.rawValue, apiKey: provider.apiKey, model: provider.model, baseURL: provider.baseURL,
                                apiVersion: provider.apiVersion, deployment: provider.deployment, by: "test", in: actor)
        }
        let api = Self.api(cell.kind)
        await llm.state.inject(cell.fault.fake, api: api, times: nil)

        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await eventually { try await world.runs().first?.state.isFinal == true })
        let run = try #require(try await world.runs().first)
        #expect(run.state == .completed, "\(cell.testDescription): \(run.state) \(run.reason ?? "")")
        let check = try #require(await world.github.state.checkRuns.values.first)
        #expect(check.status == "completed")
        #expect(check.conclusion == "failure", "the built-in findings (a leaked key) still decide the check")
        let summary = check.summary ?? ""
        let aiLine = summary.split(separator: "\n").first { $0.hasPrefix("AI review:") }.map(String.init) ?? ""
        #expect(aiLine.hasPrefix("AI review: AI review failed"), "\(cell.testDescription): \(summary)")
        #expect(aiLine.contains(cell.fault.expected.reason), "\(cell.testDescription): \(aiLine)")
        #expect(!summary.contains(provider.apiKey) && !world.log.text.contains(provider.apiKey), "the key is never shown or logged")
        let calls = await llm.state.requests(api)
        if let expected = cell.fault.expected.calls { #expect(calls.count == expected, "\(cell.testDescription)") }
        if cell.fault == .rateLimited, calls.count == 2 {
            #expect(calls[1].receivedAt.timeIntervalSince(calls[0].receivedAt) >= 1, "Retry-After: 1 honoured")
        }
    }

    // MARK: Source-control platforms

    enum PlatformFault: String, CaseIterable, Sendable {
        case badGateway = "502 once"
        case badGatewayPersistent = "502 on every post"
        case secondaryRateLimit = "secondary rate limit 403 with Retry-After"
        case commentRejected = "422 on a comment"
        case postTimeout = "timeout on posting"
        case tokenExpired = "401 token expiry"
    }

    static func finished(_ world: GitHubWorld) async -> ReviewRun? {
        _ = await eventually { try await world.runs().first?.state.isFinal == true }
        return try? await world.runs().first
    }

    @Test("GitHub faults: the run completes after retries that honour GitHub's waits, or fails with the reason on the check run",
          arguments: PlatformFault.allCases)
    func gitHubFault(_ fault: PlatformFault) async throws {
        let world = try await GitHubWorld(config: { config in
            config.github.requestTimeoutSeconds = 1
            config.jobs.maxAttempts = 3
        })
        do { try await checkGitHubFault(fault, world: world) } catch { Issue.record(error) }
        await world.stop()
    }

    @Test("GitHub failing past every retry and then refusing the check's conclusion once: the check is still concluded failed (it stayed in progress)")
    func checkConcludedAfterRetriesRunOut() async throws {
        let world = try await GitHubWorld(config: { $0.jobs.maxAttempts = 3 })
        await world.github.state.inject("POST reviews", Array(repeating: .status(502), count: 10))
        await world.github.state.inject("PATCH check-runs", [.status(502)])
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        let run = try #require(await Self.finished(world))
        #expect(run.state == .failed, "\(run.reason ?? "")")
        #expect(await eventually { await world.github.state.checkRuns.values.first?.status == "completed" })
        let check = try #require(await world.github.state.checkRuns.values.first)
        #expect(check.conclusion == "failure" && check.title == "Review failed", "\(check)")
        await world.stop()
    }

    @Test("a review posted whose check GitHub would not conclude past every retry: the dead job, retried, posts no second review (it was reviewed again, a second model call)")
    func postedReviewNotRetried() async throws {
        let world = try await GitHubWorld(config: { $0.jobs.maxAttempts = 2 })
        await world.github.state.inject("PATCH check-runs", Array(repeating: .status(502), count: 20))
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        let failed = try #require(await Self.finished(world))
        #expect(failed.state == .failed && failed.reviewID != nil, "\(failed)")
        await world.github.state.clearFaults()
        let job = try #require(try await world.appliance.supervisor.withWorkspace(world.workspace) { try await $0.jobs() }
            .first { $0.kind == ReviewRunStore.jobKind && $0.state == .dead }?.id)
        #expect(try await world.appliance.supervisor.withWorkspace(world.workspace) { try await $0.retryDeadJob(job, by: "test") })
        #expect(await eventually { try await world.count("SELECT count(*) FROM jobs WHERE id = \(job) AND state = 'succeeded'") == 1 })
        #expect(try await world.runs().count == 1)
        #expect(await world.github.state.reviews(on: GitHubWorld.repo, 7).count == 1)
        // The retry concludes the check as the posted review says (it stayed in progress for good).
        let check = try #require(await world.github.state.checkRuns.values.first)
        #expect(check.status == "completed" && check.conclusion == "failure" && check.title == "2 findings", "\(check)")
        await world.stop()
    }

    @Test("a dead review job of a pull request another run has reviewed since (a push) asks for no new run when retried (it reviewed the same head again)")
    func deadJobReviewedSince() async throws {
        let world = try await GitHubWorld(config: { $0.jobs.maxAttempts = 2 })
        let (failed, job) = try await Self.deadReviewJob(world)
        await world.github.state.addPull(FakePullRequest(repo: GitHubWorld.repo, number: 7, headSHA: "bbb222", baseSHA: "bbb000", files: GitHubWorld.files))
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "synchronize", head: "bbb222", before: "aaa111"))
        #expect(await world.waitForRun(state: .completed))
        #expect(try await world.appliance.supervisor.withWorkspace(world.workspace) { try await $0.retryDeadJob(job, by: "test") })
        #expect(await eventually { try await world.count("SELECT count(*) FROM jobs WHERE id = \(job) AND state = 'succeeded'") == 1 })
        #expect(try await world.runs().count == 2)
        #expect(await world.github.state.reviews(on: GitHubWorld.repo, 7).count == 1)
        let old = try #require(try await world.runs().first { $0.id == failed.id })
        #expect(old.reason?.contains("its job retried, nothing reviewed again: run") == true && old.reason?.contains("reviewed the pull request since") == true,
                "\(old.reason ?? "")")
        await world.stop()
    }

    @Test("a dead review job retried (sentinel jobs retry, the console) reviews the pull request again with a new run, once (it found its run failed and did nothing)")
    func deadReviewJobRetried() async throws {
        let world = try await GitHubWorld(config: { $0.jobs.maxAttempts = 2 })
        let (failed, job) = try await Self.deadReviewJob(world)
        #expect(try await world.appliance.supervisor.withWorkspace(world.workspace) { try await $0.retryDeadJob(job, by: "test") })
        #expect(await eventually { try await world.runs().contains { $0.id != failed.id && $0.state == .completed } })
        #expect(await world.github.state.reviews(on: GitHubWorld.repo, 7).count == 1, "the new run posted the review")
        let old = try #require(try await world.runs().first { $0.id == failed.id })
        #expect(old.state == .failed && old.reason?.contains("retried as run") == true, "\(old.reason ?? "")")
        // Done once: the retried job itself succeeded, and nothing asks again.
        #expect(await eventually { try await world.count("SELECT count(*) FROM jobs WHERE id = \(job) AND state = 'succeeded'") == 1 })
        #expect(try await world.runs().count == 2)

        // Once more, with the repository disabled meanwhile: the retried job goes dead again
        // saying why, and can be retried once the repository is enabled.
        await world.github.state.inject("GET files", Array(repeating: .status(500), count: 20))
        await world.github.state.inject("PATCH check-runs", Array(repeating: .status(500), count: 20))
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "synchronize", head: "ccc333"))
        #expect(await eventually {
            let runs = try await world.runs()
            return runs.count == 3 && runs.allSatisfy { $0.state.isFinal }
        })
        await world.github.state.clearFaults()
        let second = try #require(try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await actor.jobs(state: .dead).first { $0.kind == ReviewRunStore.jobKind }?.id
        })
        let repositoryID = failed.repositoryID
        try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await actor.write { tx in _ = try RepositoryStore.setEnabled(false, id: repositoryID, plan: nil, in: &tx) }
        }
        #expect(try await world.appliance.supervisor.withWorkspace(world.workspace) { try await $0.retryDeadJob(second, by: "test") })
        #expect(await eventually {
            try await world.appliance.supervisor.withWorkspace(world.workspace) { try await $0.jobs(state: .dead) }
                .first { $0.id == second }?.lastError?.contains("cannot be requested again: repository \(GitHubWorld.repo) is disabled; enable it first; then retry this job") == true
        })
        try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await actor.write { tx in _ = try RepositoryStore.setEnabled(true, id: repositoryID, plan: nil, in: &tx) }
        }
        #expect(try await world.appliance.supervisor.withWorkspace(world.workspace) { try await $0.retryDeadJob(second, by: "test") })
        #expect(await eventually { try await world.runs().count == 4 })
        await world.stop()
    }

    /// PR 7 opened while GitHub refuses its files and the check's conclusion: the review job goes
    /// dead and its run failed; the faults are then cleared. Returns the run and the dead job's id.
    static func deadReviewJob(_ world: GitHubWorld) async throws -> (ReviewRun, Int64) {
        await world.github.state.inject("GET files", Array(repeating: .status(500), count: 20))
        await world.github.state.inject("PATCH check-runs", Array(repeating: .status(500), count: 20))
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        let failed = try #require(await Self.finished(world))
        #expect(failed.state == .failed, "\(failed.reason ?? "")")
        await world.github.state.clearFaults()
        let jobs = try await world.appliance.supervisor.withWorkspace(world.workspace) { try await $0.jobs() }
        let job = try #require(jobs.first { $0.kind == ReviewRunStore.jobKind && $0.state == .dead }?.id,
                               "\(failed.reason ?? "") \(jobs.map { "\($0.kind) \($0.state)" })")
        return (failed, job)
    }

    private func checkGitHubFault(_ fault: PlatformFault, world: GitHubWorld) async throws {
        let state = world.github.state
        switch fault {
        case .badGateway: await state.inject("POST reviews", [.status(502)])
        case .badGatewayPersistent: await state.inject("POST reviews", Array(repeating: .status(502), count: 10))
        case .secondaryRateLimit: await state.inject("POST reviews", [.secondaryRateLimited(retryAfter: 1)])
        case .commentRejected: await state.inject("POST reviews", [.status(422)])
        case .postTimeout: await state.inject("POST reviews", [.delay(1.5)])
        case .tokenExpired: await state.inject("GET pull", [.status(401)])
        }
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        let run = try #require(await Self.finished(world))
        let check = try #require(await state.checkRuns.values.first)
        let reviews = await state.reviews(on: GitHubWorld.repo, 7)
        #expect(check.status == "completed", "never left in progress")
        let posts = await state.times("POST reviews")
        // Once the review is prepared, what is left is posting it (SPEC §4: critical): the retry
        // after a failed post goes ahead of runs still waiting for a model.
        #expect(try await world.count("SELECT priority FROM jobs WHERE kind = '\(ReviewRunStore.jobKind)'") == JobPriority.critical.rawValue)
        switch fault {
        case .badGatewayPersistent:
            #expect(run.state == .failed)
            #expect(check.conclusion == "failure" && check.title == "Review failed")
            #expect(check.summary?.contains("gave up after 3 attempts") == true && check.summary?.contains("502") == true, "\(check.summary ?? "")")
            #expect(reviews.isEmpty)
            // The job is dead (it had "succeeded"): listed with the dead jobs, notified, and a retry reviews the pull request again.
            #expect(await eventually { try await world.count("SELECT count(*) FROM jobs WHERE kind = '\(ReviewRunStore.jobKind)' AND state = 'dead'") == 1 })
            #expect(run.reason?.hasPrefix(ReviewRunner.deadJobReason) == true, "\(run.reason ?? "")")
        default:
            #expect(run.state == .completed, "\(run.reason ?? "")")
            #expect(check.conclusion == "failure", "the leaked key in the diff fails the check")
            #expect(check.summary?.contains("Reviewed 2 of 3 files") == true)
            #expect(reviews.count == 1, "posted exactly once")
        }
        switch fault {
        case .secondaryRateLimit:
            #expect(posts.count == 2)
            if posts.count == 2 { #expect(posts[1].timeIntervalSince(posts[0]) >= 1, "Retry-After: 1 honoured") }
        case .postTimeout:
            // The timed-out post landed late; the retry waits twice the request timeout, finds its marker, posts nothing.
            #expect(posts.count == 1)
            let lookups = await state.times("GET reviews")
            if let post = posts.first, let last = lookups.last { #expect(last.timeIntervalSince(post) >= 2, "looked again only after 2 × the timeout") }
        case .commentRejected:
            #expect(reviews.first?.comments.isEmpty == true)
            #expect(reviews.first?.body.contains("could not place inline") == true)
            #expect(reviews.first?.body.contains("AKIAQWERTYUIOPASDFGH") == false, "the secret itself is never echoed")
            #expect(posts.count == 2)
        case .tokenExpired:
            #expect(await state.requests.filter { $0 == "POST access_tokens" }.count == 2, "the refused token is dropped and a new one minted")
        case .badGateway:
            #expect(posts.count == 2)
        case .badGatewayPersistent:
            #expect(posts.count == 3)
        }
    }

    @Test("GitLab faults: the run completes after retries that honour GitLab's waits, or fails with the reason on the commit status",
          arguments: PlatformFault.allCases)
    func gitLabFault(_ fault: PlatformFault) async throws {
        let world = try await GitLabWorld(config: { config in
            config.gitlab.requestTimeoutSeconds = 1
            config.jobs.maxAttempts = 3
        })
        do { try await checkGitLabFault(fault, world: world) } catch { Issue.record(error) }
        await world.stop()
    }

    private func checkGitLabFault(_ fault: PlatformFault, world: GitLabWorld) async throws {
        let state = world.gitlab.state
        switch fault {
        case .badGateway: await state.inject("POST notes", [.status(502)])
        case .badGatewayPersistent: await state.inject("POST notes", Array(repeating: .status(502), count: 10))
        case .secondaryRateLimit: await state.inject("POST notes", [.secondaryRateLimited(retryAfter: 1)])
        case .commentRejected: await state.inject("POST discussions", [.status(422)])
        case .postTimeout: await state.inject("POST notes", [.delay(1.5)])
        case .tokenExpired: await state.expireToken(FakeGitLab.token)
        }
        let mr = try await world.mergeRequest()
        #expect(try await world.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(action: "open", mr: mr, project: world.project)).0 == 202)
        #expect(await world.waitForFinished(1))
        let run = try #require(try await world.runs().first)
        let statuses = await state.statuses(project: world.project.id, sha: "aaa111")
        let gate = statuses.first { $0.name == "Sentinel" }
        let notes = await world.summaryNotes()
        let posts = await state.times("POST notes")
        // Posting results is critical work once the review is prepared, on GitLab as on GitHub; a
        // run refused before anything was prepared (an expired token) stays at normal priority.
        let priority = try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await actor.read { db in try Int.fetchOne(db, sql: "SELECT priority FROM jobs WHERE kind = ?", arguments: [ReviewRunStore.jobKind]) }
        }
        #expect(priority == (fault == .tokenExpired ? JobPriority.normal : .critical).rawValue)
        switch fault {
        case .badGatewayPersistent:
            #expect(run.state == .failed)
            #expect(gate?.status == "failed")
            #expect(gate?.description?.contains("Review failed") == true && gate?.description?.contains("502") == true, "\(gate?.description ?? "")")
            #expect(notes.isEmpty)
            #expect(posts.count == 3)
        case .tokenExpired:
            // Every call is refused: the run fails with GitLab's word for it; no status can be set, so none is left pending or running.
            #expect(run.state == .failed)
            #expect(run.reason?.contains("401") == true && run.reason?.contains("Token is expired") == true, "\(run.reason ?? "")")
            #expect(statuses.isEmpty)
        default:
            #expect(run.state == .completed, "\(run.reason ?? "")")
            #expect(gate?.status == "failed", "the leaked key in the diff fails the status")
            #expect(gate?.description?.contains("Reviewed 2 of 3 files") == true, "\(gate?.description ?? "")")
            #expect(notes.count == 1, "posted exactly once")
        }
        switch fault {
        case .secondaryRateLimit:
            #expect(posts.count == 2)
            if posts.count == 2 { #expect(posts[1].timeIntervalSince(posts[0]) >= 1, "Retry-After: 1 honoured") }
        case .postTimeout:
            #expect(posts.count == 1, "the retry finds the note that landed late")
            let lookups = await state.times("GET notes")
            if let post = posts.first, let last = lookups.last { #expect(last.timeIntervalSince(post) >= 2, "looked again only after 2 × the timeout") }
            #expect(await state.diffNotes(project: world.project.id, iid: 3).count == 2, "no discussion posted twice")
        case .commentRejected:
            #expect(notes.first?.body.contains("could not place inline") == true)
            #expect(await state.diffNotes(project: world.project.id, iid: 3).count == 1)
        case .badGateway:
            #expect(posts.count == 2)
            #expect(await state.diffNotes(project: world.project.id, iid: 3).count == 2, "the retry skips the discussions already posted")
        case .badGatewayPersistent, .tokenExpired:
            break
        }
    }
}
