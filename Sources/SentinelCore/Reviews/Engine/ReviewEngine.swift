import Foundation

/// Tokens a provider reported for one call. Kept per call so usage can be metered and costed by
/// provider and model.
public struct TokenUsage: Sendable, Hashable, Codable {
    public var inputTokens: Int
    public var outputTokens: Int

    public init(inputTokens: Int = 0, outputTokens: Int = 0) {
        self.inputTokens = inputTokens
        self.outputTokens = outputTokens
    }

    public static let zero = TokenUsage()
    public var totalTokens: Int { inputTokens + outputTokens }

    public static func + (a: TokenUsage, b: TokenUsage) -> TokenUsage {
        TokenUsage(inputTokens: a.inputTokens + b.inputTokens, outputTokens: a.outputTokens + b.outputTokens)
    }
}

/// What a model call returned: the raw text (parsed by the engine, not the provider, so every
/// provider gets the same tolerance) plus who answered and what it cost.
public struct ModelReply: Sendable, Hashable {
    public var text: String
    public var usage: TokenUsage
    public var provider: String
    public var model: String
    /// The provider stopped the answer at its output-token limit (OpenAI `finish_reason: length`,
    /// Anthropic `stop_reason: max_tokens`, Gemini `finishReason: MAX_TOKENS`).
    public var hitOutputLimit: Bool

    public init(text: String, usage: TokenUsage, provider: String, model: String, hitOutputLimit: Bool = false) {
        self.text = text
        self.usage = usage
        self.provider = provider
        self.model = model
        self.hitOutputLimit = hitOutputLimit
    }
}

/// The engine's only view of AI. The router (provider choice, retries on 429/5xx, fallback,
/// circuit breaking) implements it; the engine stays provider-agnostic and testable with fakes.
public protocol ReviewModel: Sendable {
    func complete(_ prompt: ReviewPrompt) async throws -> ModelReply
}

/// Settings of one review. A plain value resolved by the caller from the effective configuration
/// (policy layers, `.sentinel.yml`), so the engine never reads configuration itself and a run can
/// be replayed from its captured snapshot.
public struct ReviewOptions: Sendable {
    public var include: [String]
    public var exclude: [String]
    public var defaultSkips: Bool
    public var instructions: String?
    public var pathInstructions: [(glob: String, text: String)]
    public var language: String?
    public var minSeverity: Severity
    public var maxComments: Int
    public var builtinChecks: Bool
    /// The paths the built-in checks look at, when not the review's own (`include`/`exclude`): a
    /// run's come from the settings alone, so that a pull request's `.sentinel.yml` cannot take a
    /// file out of the secret and conflict-marker checks.
    public var builtinScope: (include: [String], exclude: [String])?
    /// Token budget of one prompt (fixed prompt text is reserved from it before chunking).
    public var chunkTokenBudget: Int
    /// Cap on the estimated diff tokens of the whole review; files past it are reported over budget.
    public var maxTotalTokens: Int?
    public var maxParallelChunks: Int
    /// Fingerprints already posted on this pull request (incremental re-review).
    public var alreadyPosted: Set<String>
    /// Why there is no model, shown when `model` is nil (e.g. "no provider key", "budget spent").
    public var aiSkippedReason: String?
    /// Tokens (input + output, as the provider reports them) the run's model calls may spend in
    /// total; a call whose estimate would exceed what is left is not made. nil = no run budget.
    public var maxTokensPerRun: Int?

    public init(include: [String] = [], exclude: [String] = [], defaultSkips: Bool = true, instructions: String? = nil,
                pathInstructions: [(glob: String, text: String)] = [], language: String? = nil,
                minSeverity: Severity = .low, maxComments: Int = 30, builtinChecks: Bool = true,
                chunkTokenBudget: Int = 12_000, maxTotalTokens: Int? = nil, maxParallelChunks: Int = 8,
                alreadyPosted: Set<String> = [], aiSkippedReason: String? = nil) {
        self.include = include
        self.exclude = exclude
        self.defaultSkips = defaultSkips
        self.instructions = instructions
        self.pathInstructions = pathInstructions
        self.language = language
        self.minSeverity = minSeverity
        self.maxComments = maxComments
        self.builtinChecks = builtinChecks
        self.chunkTokenBudget = chunkTokenBudget
        self.maxTotalTokens = maxTotalTokens
        self.maxParallelChunks = maxParallelChunks
        self.alreadyPosted = alreadyPosted
        self.aiSkippedReason = aiSkippedReason
        self.maxTokensPerRun = nil
    }
}

/// How the AI part of a review went. Distinct from the run's state: a run completes (with
/// built-in findings) even when the AI review was skipped or failed, and says so.
public enum AIReviewStatus: Sendable, Hashable, CustomStringConvertible {
    case completed
    case partial(failedChunks: Int, of: Int, reason: String)
    case skipped(reason: String)
    /// Every model call was refused by a shared limit (a plan's tokens, the AI budget) that other
    /// runs reached meanwhile: as a run skipped for a plan limit before it started, neither a
    /// failure nor a pass (the check concludes neutral).
    case refused(reason: String)
    case failed(reason: String)

    public var description: String {
        // A reason may end with its own period (a model's refusal is quoted as it came): one is enough.
        func sentence(_ text: String) -> String { text.hasSuffix(".") ? text : text + "." }
        switch self {
        case .completed: return "AI review completed."
        case .partial(let failed, let total, let reason):
            return "AI review incomplete: \(failed) of \(total) parts failed (\(reason))."
        case .skipped(let reason), .refused(let reason): return sentence("AI review skipped: \(reason)")
        case .failed(let reason): return sentence("AI review failed: \(reason)")
        }
    }
}

/// Which files were looked at, and why the others were not: a review that silently ignores half a
/// pull request is worse than one that says so.
public struct ReviewCoverage: Sendable, Hashable {
    public var reviewedFiles: Int
    public var totalFiles: Int
    public var skipped: [SkipReason: Int]
    /// Files the AI review did not cover because a spend limit refused their model call.
    public var notReviewed: [String]
    /// Why they were not reviewed (the refusal).
    public var notReviewedReason: String?

    /// Names listed in the sentence; more are counted.
    public static let maxListedNotReviewed = 20

    public init(reviewedFiles: Int, totalFiles: Int, skipped: [SkipReason: Int], notReviewed: [String] = [],
                notReviewedReason: String? = nil) {
        self.reviewedFiles = reviewedFiles
        self.totalFiles = totalFiles
        self.skipped = skipped
        self.notReviewed = notReviewed
        self.notReviewedReason = notReviewedReason
    }

    /// e.g. "Reviewed 3 of 5 files; skipped 2: lock files (1), binary (1)."
    public var sentence: String {
        var s = "Reviewed \(reviewedFiles) of \(totalFiles) \(totalFiles == 1 ? "file" : "files")"
        let skippedCount = skipped.values.reduce(0, +)
        if skippedCount > 0 {
            let parts = skipped.filter { $0.value > 0 }.sorted { $0.key < $1.key }.map { "\($0.key.label) (\($0.value))" }
            s += "; skipped \(skippedCount): " + parts.joined(separator: ", ")
        }
        s += "."
        if !notReviewed.isEmpty {
            var names = notReviewed.prefix(Self.maxListedNotReviewed).map(MarkdownCode.span).joined(separator: ", ")
            if notReviewed.count > Self.maxListedNotReviewed { names += " and \(notReviewed.count - Self.maxListedNotReviewed) more" }
            s += " Not reviewed by AI" + (notReviewedReason.map { " (\($0))" } ?? "") + ": " + names + "."
        }
        return s
    }
}

/// One model call as metered: which provider/model answered, for which chunk and attempt, and
/// whether its output was usable.
public struct ModelCallRecord: Sendable, Hashable {
    public var chunk: Int
    public var attempt: Int
    public var provider: String
    public var model: String
    public var usage: TokenUsage
    public var parsed: Bool
    /// Wall time of the call as the engine saw it (router retries and fallbacks included).
    public var durationMs: Int

    public init(chunk: Int, attempt: Int, provider: String, model: String, usage: TokenUsage, parsed: Bool, durationMs: Int = 0) {
        self.chunk = chunk
        self.attempt = attempt
        self.provider = provider
        self.model = model
        self.usage = usage
        self.parsed = parsed
        self.durationMs = durationMs
    }
}

/// A file of the change and what the engine decided about it (for the walkthrough and the API).
public struct FileReport: Sendable, Hashable {
    public var path: String
    public var previousPath: String?
    public var status: DiffFile.Status
    public var additions: Int
    public var deletions: Int
    public var decision: FileDecision

    public init(path: String, previousPath: String?, status: DiffFile.Status, additions: Int, deletions: Int,
                decision: FileDecision) {
        self.path = path
        self.previousPath = previousPath
        self.status = status
        self.additions = additions
        self.deletions = deletions
        self.decision = decision
    }
}

/// Everything a review produced, as one value so the worker can store findings, post the review,
/// meter usage and emit analytics from the same result.
public struct ReviewResult: Sendable {
    /// Findings to post inline (deduped, above the floor, capped, most severe first).
    public var findings: [Finding]
    /// AI findings that could not be placed on a diff line (above the floor); the summary lists them.
    public var unanchored: [RawFinding]
    public var aiStatus: AIReviewStatus
    public var coverage: ReviewCoverage
    /// One entry per model call that returned.
    public var usage: [ModelCallRecord]
    /// The PR summary in markdown (see `ReviewSummary`).
    public var summary: String
    public var modelSummaries: [String]
    public var files: [FileReport]
    public var chunkCount: Int
    public var droppedBelowFloor: Int
    public var droppedOverLimit: Int
    public var duplicates: Int
    /// Findings above the floor past `review.max_comments`: listed in the summary, not inline.
    public var overLimit: [Finding]
    /// Findings already posted on the pull request by an earlier run, found again: not posted
    /// again, still open.
    public var repeated: [Finding]

    public init(findings: [Finding] = [], unanchored: [RawFinding] = [], aiStatus: AIReviewStatus,
                coverage: ReviewCoverage, usage: [ModelCallRecord] = [], summary: String = "",
                modelSummaries: [String] = [], files: [FileReport] = [], chunkCount: Int = 0,
                droppedBelowFloor: Int = 0, droppedOverLimit: Int = 0, duplicates: Int = 0, overLimit: [Finding] = [], repeated: [Finding] = []) {
        self.findings = findings
        self.overLimit = overLimit
        self.repeated = repeated
        self.unanchored = unanchored
        self.aiStatus = aiStatus
        self.coverage = coverage
        self.usage = usage
        self.summary = summary
        self.modelSummaries = modelSummaries
        self.files = files
        self.chunkCount = chunkCount
        self.droppedBelowFloor = droppedBelowFloor
        self.droppedOverLimit = droppedOverLimit
        self.duplicates = duplicates
    }

    /// The severity of every finding this review reports, wherever it is shown: inline, in the
    /// summary (past the comment cap, or not on a changed line), or posted by an earlier run and
    /// found again. What the check's verdict and title go by: a finding moved out of the inline
    /// comments, or already on the pull request, is no less open.
    public var reportedSeverities: [Severity] {
        findings.map(\.severity) + overLimit.map(\.severity) + unanchored.map(\.severity) + repeated.map(\.severity)
    }
}

/// The provider-agnostic review pipeline: filter → built-in checks → chunk → model (bounded
/// parallel, one retry on unusable output) → anchor → rank → summary. It never throws: every
/// failure ends up in `aiStatus`, because a run must still complete and report what happened.
public enum ReviewEngine {
    /// Smallest diff budget per chunk, whatever the instructions take.
    public static let minimumChunkBudget = 1_000

    /// Expected reply tokens reserved for each call on top of its prompt (see `ModelCallGate`).
    public static var expectedOutputTokens: Int { CallAdmission.expectedOutputTokens }

    /// - Parameter gate: asked before every model call (shared spend limits) and told after it.
    public static func review(files: [DiffFile], options: ReviewOptions, model: (any ReviewModel)?,
                              gate: (any ModelCallGate)? = nil) async -> ReviewResult {
        // 1. Filter.
        let filter = PathFilter(include: options.include, exclude: options.exclude, defaultSkips: options.defaultSkips)
        var decisions = files.map { filter.decision(for: $0) }
        var reviewable = zip(files, decisions).filter { $0.1 == .review }.map(\.0)

        // 2. Built-in checks: everything in their scope (`builtinScope`, else the review's),
        //    including lock/vendored/generated files (a secret there is just as leaked). They need no model, so they run beside the
        //    model calls instead of before them (about 1 ms per thousand changed lines).
        let builtinFilter = options.builtinScope.map { PathFilter(include: $0.include, exclude: $0.exclude, defaultSkips: options.defaultSkips) } ?? filter
        let inScope = options.builtinChecks ? files.filter { builtinFilter.isInScope($0) } : []
        async let builtinFindings = inScope.isEmpty ? [] : BuiltinChecks.run(on: inScope)

        // 3. Chunk within the prompt budget.
        let overhead = PromptBuilder.overheadTokens(instructions: options.instructions,
                                                    pathInstructions: options.pathInstructions, language: options.language)
        let budget = max(options.chunkTokenBudget - overhead, minimumChunkBudget)
        let (chunks, overBudget) = Chunker.chunks(files: reviewable, budget: budget, maxTotalTokens: options.maxTotalTokens)
        if !overBudget.isEmpty {
            let over = Set(overBudget.map(\.path))
            for (i, file) in files.enumerated() where decisions[i] == .review && over.contains(file.path) {
                decisions[i] = .skip(.overBudget)
            }
            reviewable.removeAll { over.contains($0.path) }
        }

        // 4. Model.
        var aiStatus: AIReviewStatus
        var calls: [ModelCallRecord] = []
        var rawFindings: [RawFinding] = []
        var summaries: [String] = []
        var refusedPaths: [String] = []
        // Files of parts whose model call failed (not refused by a limit).
        var unreadPaths: [String] = []
        var refusal: String?
        if let model {
            if chunks.isEmpty {
                aiStatus = .skipped(reason: !reviewable.isEmpty ? "no reviewable lines in the change"
                                    : overBudget.isEmpty ? "no files left to review after filters"
                                    : "every file left to review is over the token budget")
            } else {
                let admission = CallAdmission(run: options.maxTokensPerRun.map { RunTokenBudget(limit: $0) }, gate: gate)
                let outcomes = await runChunks(chunks, options: options, model: model, admission: admission)
                var failures: [String] = []
                // Files of parts that failed (not refused by a limit, whose files are listed apart):
                // the status names them and the coverage counts them as not reviewed.
                var unread: [String] = []
                for outcome in outcomes {
                    calls += outcome.calls
                    if outcome.refused {
                        for file in chunks[outcome.index].files where !refusedPaths.contains(file.path) { refusedPaths.append(file.path) }
                        if refusal == nil { refusal = outcome.failure }
                    }
                    if let output = outcome.output {
                        rawFindings += output.findings
                        if !output.summary.isEmpty { summaries.append(output.summary) }
                    } else if let reason = outcome.failure {
                        failures.append(reason)
                        if !outcome.refused {
                            for file in chunks[outcome.index].files where !unread.contains(file.path) { unread.append(file.path) }
                        }
                    }
                }
                var reasons: [String] = []
                for r in failures where !reasons.contains(r) { reasons.append(r) }
                let reason = reasons.prefix(3).joined(separator: "; ")
                if failures.isEmpty {
                    aiStatus = .completed
                } else if outcomes.allSatisfy({ $0.limitReached }) {
                    // Every call refused by a limit other runs reached meanwhile: as a plan limit
                    // reached before the run, a neutral check (it was "failed", a red one).
                    aiStatus = .refused(reason: reason)
                } else if failures.count == chunks.count {
                    aiStatus = .failed(reason: reason)
                } else {
                    let named = unread.prefix(5).map(MarkdownCode.span).joined(separator: ", ") + (unread.count > 5 ? " and \(unread.count - 5) more" : "")
                    aiStatus = .partial(failedChunks: failures.count, of: chunks.count,
                                        reason: unread.isEmpty ? reason : reason + "; not read by the model: " + named)
                }
                unreadPaths = unread
            }
        } else if options.aiSkippedReason == ProviderRouter.SkipReason.budgetSpent, !chunks.isEmpty {
            // The AI budget was spent before the run: as when it runs out during one, the files
            // the model would have read are named as not reviewed and the check is neutral (it
            // was a green "No findings" saying every file was reviewed).
            aiStatus = .refused(reason: ProviderRouter.SkipReason.budgetSpent)
            for file in chunks.flatMap(\.files) where !refusedPaths.contains(file.path) { refusedPaths.append(file.path) }
            refusal = ProviderRouter.SkipReason.budgetSpent
        } else {
            aiStatus = .skipped(reason: options.aiSkippedReason ?? "no AI provider is configured")
        }

        // 5. Anchor and rank.
        let (anchored, offTheLines) = FindingAnchor.anchor(rawFindings, source: .ai, files: reviewable)
        // Findings about files the model was not shown, or paths the repository keeps out of
        // review, are not reported (they could fail the check on a file "never reviewed").
        let reviewed = Set(reviewable.map(\.path))
        let reviewedIndex = FindingAnchor.pathIndex(reviewable)
        let notReviewed = FindingAnchor.pathIndex(files.filter { !reviewed.contains($0.path) })
        let unanchored = offTheLines.filter { !FindingAnchor.outOfScope($0, reviewed: reviewedIndex, notReviewed: notReviewed, filter: filter) }
        let builtin = await builtinFindings
        let ranked = FindingRanker.select(builtin + anchored, minSeverity: options.minSeverity,
                                          maxComments: options.maxComments, alreadyPosted: options.alreadyPosted)

        // 6. Coverage and summary. Files whose model call a spend limit refused, or failed, were
        //    not reviewed: "Reviewed N of M" is the model's reading, not the engine's intent.
        if !unreadPaths.isEmpty {
            let unread = Set(unreadPaths)
            for (i, file) in files.enumerated() where decisions[i] == .review && unread.contains(file.path) {
                decisions[i] = .skip(.aiFailed)
            }
        }
        if !refusedPaths.isEmpty {
            let refused = Set(refusedPaths)
            for (i, file) in files.enumerated() where decisions[i] == .review && refused.contains(file.path) {
                decisions[i] = .skip(.aiLimitReached)
            }
        }
        var skipped: [SkipReason: Int] = [:]
        for decision in decisions { if let r = decision.skipReason { skipped[r, default: 0] += 1 } }
        let coverage = ReviewCoverage(reviewedFiles: decisions.filter { $0 == .review }.count, totalFiles: files.count,
                                      skipped: skipped, notReviewed: refusedPaths, notReviewedReason: refusal)
        let reports = zip(files, decisions).map { file, decision in
            FileReport(path: file.path, previousPath: file.status == .renamed ? file.oldPath : nil, status: file.status,
                       additions: file.additions, deletions: file.deletions, decision: decision)
        }
        // The same finding off the changed lines, reported twice (two chunks, two models), is one.
        var unanchoredSeen = Set<String>()
        let unanchoredKept = unanchored.filter {
            $0.severity >= options.minSeverity
                && unanchoredSeen.insert([$0.path, String($0.line), Fingerprint.normalize($0.title).lowercased()].joined(separator: "\u{1F}")).inserted
        }
        var result = ReviewResult(findings: ranked.selected,
                                  unanchored: unanchoredKept,
                                  aiStatus: aiStatus, coverage: coverage, usage: calls, modelSummaries: summaries,
                                  files: reports, chunkCount: chunks.count, droppedBelowFloor: ranked.droppedBelowFloor,
                                  droppedOverLimit: ranked.droppedOverLimit, duplicates: ranked.duplicates,
                                  overLimit: ranked.overLimit, repeated: ranked.repeated)
        result.summary = ReviewSummary.markdown(result: result, modelSummaries: summaries)
        return result
    }

    private struct ChunkOutcome: Sendable {
        var index: Int
        var output: ModelReviewOutput?
        var failure: String?
        var calls: [ModelCallRecord]
        /// A spend limit refused the call: the chunk's files were not reviewed.
        var refused = false
        /// The refusal was a limit reached, not a failure to meter.
        var limitReached = false
    }

    /// Runs chunks with at most `maxParallelChunks` model calls in flight, results in chunk order.
    private static func runChunks(_ chunks: [ReviewChunk], options: ReviewOptions, model: any ReviewModel,
                                  admission: CallAdmission) async -> [ChunkOutcome] {
        let limit = max(1, options.maxParallelChunks)
        let instructions = options.instructions
        let pathInstructions = options.pathInstructions
        let language = options.language
        return await withTaskGroup(of: ChunkOutcome.self) { group in
            var next = 0
            func launch(_ index: Int) {
                let chunk = chunks[index]
                group.addTask {
                    let prompt = PromptBuilder.build(chunk: chunk, instructions: instructions,
                                                     pathInstructions: pathInstructions, language: language)
                    return await review(chunk: chunk, index: index, prompt: prompt, model: model, admission: admission)
                }
            }
            while next < min(limit, chunks.count) { launch(next); next += 1 }
            var outcomes: [ChunkOutcome?] = Array(repeating: nil, count: chunks.count)
            while let outcome = await group.next() {
                outcomes[outcome.index] = outcome
                if next < chunks.count && !Task.isCancelled { launch(next); next += 1 }
            }
            return outcomes.enumerated().map { i, o in
                o ?? ChunkOutcome(index: i, output: nil, failure: "the review was cancelled", calls: [])
            }
        }
    }

    /// The usage a call is metered at (the run's token budget, the AI budget, the plan's tokens,
    /// the usage records): what the provider reported, unless it reported no usage or an
    /// implausibly small one (input under a quarter of the prompt's estimate: no tokenizer packs
    /// text four times tighter than `TokenEstimator` assumes), as some OpenAI-compatible gateways
    /// do; then the estimate of the prompt and of the answer's text. Otherwise a server that leaves
    /// `usage` out would make every limit count its calls as free.
    static func meteredUsage(_ reply: ModelReply, prompt: ReviewPrompt) -> TokenUsage {
        var usage = reply.usage
        // Far past the prompt (a broken proxy's `1e15`, or 1,999,999 for a three-line diff): one
        // such number ended the workspace's month at its plan's token limit and recorded a cost of
        // $800,000. No tokenizer reads a text as 16 times the estimate's tokens (one token a
        // character at most, against the estimate's four characters a token); the floor leaves
        // room for what a provider adds around a small prompt. Metered at the estimate instead.
        if usage.inputTokens > min(max(prompt.estimatedTokens * 16, Self.promptOverheadTokens), Self.implausibleTokens) {
            usage.inputTokens = prompt.estimatedTokens
        }
        // An answer's own tokens: more than any model writes in one call, or a quarter of its text's
        // estimate (missing, `"60"` as a string, negative: read as 0), is metered at the estimate.
        // Taken as given, a missing count made every answer free and 1,999,999 for a short answer
        // spent a plan's month.
        let answered = TokenEstimator.estimate(reply.text)
        if usage.outputTokens > Self.implausibleOutputTokens || usage.outputTokens * 4 < answered { usage.outputTokens = answered }
        guard usage.inputTokens * 4 < prompt.estimatedTokens else { return usage }
        return TokenUsage(inputTokens: prompt.estimatedTokens, outputTokens: max(usage.outputTokens, TokenEstimator.estimate(reply.text)))
    }

    /// Tokens past every model's context window (today's largest hold 2 million).
    static let implausibleTokens = 2_000_000
    /// What a provider may count around a small prompt (its own framing, tool definitions).
    static let promptOverheadTokens = 16_384
    /// More output than any model writes in one call (the largest output limits are 128k tokens).
    static let implausibleOutputTokens = 262_144

    /// One chunk: call, parse; unusable output is retried once (a new sample often fixes it);
    /// any other error is final here because the router already retried and fell back.
    /// Every call is admitted first (run budget, shared spend limits) and settled after.
    private static func review(chunk: ReviewChunk, index: Int, prompt: ReviewPrompt, model: any ReviewModel,
                               admission: CallAdmission) async -> ChunkOutcome {
        var calls: [ModelCallRecord] = []
        var lastProblem = ""
        let estimate = CallAdmission.estimate(prompt)
        for attempt in 1...2 {
            do { try await admission.admit(estimate) } catch {
                let refusal = error as? ModelCallRefused
                return ChunkOutcome(index: index, output: nil, failure: refusal?.reason ?? describe(error), calls: calls, refused: true,
                                    limitReached: refusal?.limitReached ?? false)
            }
            let reply: ModelReply
            let started = ContinuousClock.now
            do {
                reply = try await model.complete(prompt)
            } catch let error as ModelOutputError {
                await admission.settle(estimate, call: nil)
                lastProblem = error.description
                continue
            } catch {
                await admission.settle(estimate, call: nil)
                return ChunkOutcome(index: index, output: nil, failure: describe(error), calls: calls)
            }
            let elapsed = ContinuousClock.now - started
            let durationMs = Int(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000)
            let output: ModelReviewOutput?
            do { output = try ModelOutputParser.parse(reply.text) } catch {
                output = nil
                lastProblem = (error as? ModelOutputError)?.description ?? describe(error)
            }
            let call = ModelCallRecord(chunk: index, attempt: attempt, provider: reply.provider, model: reply.model,
                                       usage: meteredUsage(reply, prompt: prompt), parsed: output != nil, durationMs: durationMs)
            calls.append(call)
            await admission.settle(estimate, call: call)
            // An answer stopped at the output-token limit is not the whole review even when it reads
            // as one: a structured answer (Anthropic's tool input) arrives re-serialised whole from
            // arguments the limit cut off, so it parses.
            if let output, !reply.hitOutputLimit { return ChunkOutcome(index: index, output: output, failure: nil, calls: calls) }
            if reply.hitOutputLimit {
                // The same limit cuts the same answer off again: asking twice only doubles the cost.
                return ChunkOutcome(index: index, output: nil, failure:
                    "the model's answer stopped at its output-token limit (\(reply.usage.outputTokens) tokens) before the review was complete",
                                    calls: calls)
            }
        }
        return ChunkOutcome(index: index, output: nil, failure: lastProblem, calls: calls)
    }

    private static func describe(_ error: any Error) -> String {
        if error is CancellationError { return "the review was cancelled" }
        let text = String(describing: error)
        return text.count > 300 ? String(text.prefix(299)) + "…" : text
    }
}

/// The PR summary comment. A walkthrough of the change, the model's own summaries, findings that
/// could not be placed inline, what happened to the AI review, and the coverage sentence, so the
/// reader knows exactly what was and was not reviewed.
public enum ReviewSummary {
    /// Cap on walkthrough lines and summary-only findings, to stay well under platform comment limits.
    public static let maxListedFiles = 100
    public static let maxListedUnanchored = 25
    /// Cap on the merged model summaries (platform comments are limited to ~64k characters).
    public static let maxSummaryCharacters = 20_000

    /// `text` with a fenced code block it leaves open (a line of three or more backticks or
    /// tildes, indented at most three spaces, not closed by a line of as many or more) closed.
    public static func closingOpenFence(_ text: String) -> String {
        var open: (mark: Character, count: Int)?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let indent = line.prefix { $0 == " " }.count
            guard indent <= 3, let mark = line.dropFirst(indent).first, mark == "`" || mark == "~" else { continue }
            let run = line.dropFirst(indent).prefix { $0 == mark }.count
            guard run >= 3 else { continue }
            if let fence = open {
                if mark == fence.mark, run >= fence.count, line.dropFirst(indent + run).allSatisfy(\.isWhitespace) { open = nil }
            } else if mark == "~" || !line.dropFirst(indent + run).contains("`") {
                open = (mark, run)
            }
        }
        guard let open else { return text }
        return text + "\n" + String(repeating: open.mark, count: open.count)
    }

    /// The summary body. It has no top-level heading: the caller adds its own (with its run marker).
    public static func markdown(result: ReviewResult, modelSummaries: [String]) -> String {
        var out = ""

        let summaries = modelSummaries.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
        if !summaries.isEmpty {
            var joined = summaries.joined(separator: "\n\n")
            // Cut within a code block, it is closed: left open it ran to the end of the body and
            // showed the walkthrough and findings after it as code.
            if joined.count > maxSummaryCharacters { joined = closingOpenFence(String(joined.prefix(maxSummaryCharacters)) + "…") }
            out += joined + "\n\n"
        }

        let reviewed = result.files.filter { $0.decision == .review }
        if !reviewed.isEmpty {
            out += "### Walkthrough\n"
            for file in reviewed.prefix(maxListedFiles) {
                var name = MarkdownCode.span(file.path)
                if let previous = file.previousPath, previous != file.path { name = MarkdownCode.span(previous) + " → " + MarkdownCode.span(file.path) }
                out += "- \(name) (\(file.status.rawValue), +\(file.additions) −\(file.deletions))\n"
            }
            if reviewed.count > maxListedFiles { out += "- … and \(reviewed.count - maxListedFiles) more files\n" }
            out += "\n"
        }

        let severities = result.reportedSeverities
        if !severities.isEmpty {
            var counts: [Severity: Int] = [:]
            for severity in severities { counts[severity, default: 0] += 1 }
            let parts = Severity.allCases.reversed().compactMap { s in counts[s].map { "\($0) \(s.rawValue)" } }
            out += "**Findings:** " + parts.joined(separator: ", ") + ".\n\n"
        }

        func list(_ heading: String, _ items: [(severity: Severity, path: String, startLine: Int?, line: Int, title: String, body: String)]) {
            guard !items.isEmpty else { return }
            out += "### \(heading)\n"
            // The most severe first, in the model's order within a severity: past the first 25 the
            // list is cut, and a blocking finding after 25 lesser ones was shown nowhere.
            let ordered = items.enumerated().sorted { a, b in
                a.element.severity != b.element.severity ? a.element.severity > b.element.severity : a.offset < b.offset
            }.map(\.element)
            for f in ordered.prefix(maxListedUnanchored) {
                // Line 0 is the whole file.
                let location = f.line == 0 ? f.path : f.startLine.map { "\(f.path):\($0)-\(f.line)" } ?? "\(f.path):\(f.line)"
                var body = f.body == f.title ? "" : " — " + Fingerprint.normalize(f.body)
                if body.count > 300 { body = String(body.prefix(299)) + "…" }
                out += "- **\(f.severity.rawValue)** \(MarkdownCode.span(location)) \(f.title)\(body)\n"
            }
            if items.count > maxListedUnanchored { out += "- … and \(items.count - maxListedUnanchored) more\n" }
            out += "\n"
        }
        list("Further findings (over review.max_comments)", result.overLimit.map { ($0.severity, $0.path, $0.startLine, $0.line, $0.title, $0.body) })
        list("Findings not on changed lines", result.unanchored.map { ($0.severity, $0.path, $0.startLine, $0.line, $0.title, $0.body) })
        list("Still open from earlier reviews (not commented again)", result.repeated.map { ($0.severity, $0.path, $0.startLine, $0.line, $0.title, $0.body) })

        if result.aiStatus != .completed {
            out += "> \(result.aiStatus.description)\n\n"
        }
        out += result.coverage.sentence + "\n"
        return out
    }
}
