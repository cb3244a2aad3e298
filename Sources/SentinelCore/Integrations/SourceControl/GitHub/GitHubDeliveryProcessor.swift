import Foundation
import GRDB
import Logging

/// Turns a stored GitHub delivery into domain changes: repositories registered or removed, review
/// runs requested, queued work cancelled. Runs as the `github.delivery` job; every step is
/// idempotent (upserts, unique run keys), so a retried job changes nothing twice.
public struct GitHubDeliveryProcessor: Sendable {
    /// The plan's enabled-repository limit applies to repositories enabled on first sight.
    let billing: (any BillingProvider)?
    /// `author_association` values whose `@sentinel review` comments start a run (`review.command_associations`).
    let commandAssociations: Set<String>
    let metrics: SentinelMetrics

    public static let defaultCommandAssociations: Set<String> = ["OWNER", "MEMBER", "COLLABORATOR"]

    public init(billing: (any BillingProvider)? = nil, commandAssociations: Set<String> = defaultCommandAssociations,
                metrics: SentinelMetrics = SentinelMetrics()) {
        self.billing = billing
        self.commandAssociations = Set(commandAssociations.map { $0.uppercased() })
        self.metrics = metrics
    }

    /// The `pull_request` actions that start, or end, review runs; every other action is ignored.
    /// `edited` for a changed base branch only; its payload decides (a title or body edit is ignored then).
    static let pullRequestActions: Set<String> = ["opened", "reopened", "ready_for_review", "synchronize", "closed", "edited"]
    /// The events `route` acts on.
    static let routedEvents: Set<String> = ["installation", "installation_repositories", "repository", "pull_request", "issue_comment", "check_run",
                                            "check_suite"]
    /// The `repository` actions that change what Sentinel knows of a repository (its name, whether it exists).
    static let repositoryActions: Set<String> = ["renamed", "transferred", "deleted"]

    /// What processing a delivery would conclude from its event and action alone, when that is
    /// "nothing to do" (the same words `route` uses); nil when the payload decides. Webhook intake
    /// stores such a delivery already processed, without a job.
    static func notActedOn(_ event: String) -> String { "stored: \(event) is not acted on" }

    /// The outcome of a delivery whose integration was removed before it was processed.
    static func integrationRemoved(_ id: IntegrationID) -> String { "ignored: integration \(id) was removed" }

    public static func settledOutcome(event: String, action: String?) -> String? {
        if !routedEvents.contains(event) { return notActedOn(event) }
        guard let action else { return nil }
        switch event {
        case "pull_request" where !pullRequestActions.contains(action): return "ignored: pull_request.\(action)"
        case "issue_comment" where action != "created": return "ignored: issue_comment.\(action)"
        case "repository" where !repositoryActions.contains(action): return "ignored: repository.\(action)"
        // Only "Re-run" on the pull request's page asks for something; a check created or completed (Sentinel's own among them) does not.
        case "check_run", "check_suite": return action == "rerequested" ? nil : "ignored: \(event).\(action)"
        default: return nil
        }
    }

    /// Outcomes of a comment command that was recognised but not obeyed start with this.
    public static let refusedCommandPrefix = "refused: "

    /// `@sentinel review` / `@sentinel full review`, case-insensitive, written as a command: not
    /// inside a quote (`> @sentinel review`, GitHub's "Quote reply" of an earlier command), a code
    /// block or span, or an HTML comment (which the platform does not show), and not as the end of
    /// an address (`bob@sentinel review`). Each of those started a run.
    public static func command(in body: String) -> (review: Bool, full: Bool) {
        let text = commandText(body).lowercased()
        let before = #"(?:^|[^a-z0-9_.+\-@])"#
        if text.range(of: before + #"@sentinel\s+full\s+review\b"#, options: .regularExpression) != nil { return (true, true) }
        if text.range(of: before + #"@sentinel\s+review\b"#, options: .regularExpression) != nil { return (true, false) }
        return (false, false)
    }

    /// The comment's text where a command counts: without HTML comments, `<code>` and `<pre>`,
    /// fenced and indented code blocks, block quotes (with their lazy continuation lines, inside
    /// list items too, and GitLab's `>>>` blocks) and code spans.
    static func commandText(_ body: String) -> String {
        var text = body.replacingOccurrences(of: "\r\n", with: "\n")
        // HTML comments, an unterminated one to the end.
        text = text.replacingOccurrences(of: #"<!--[\s\S]*?(-->|$)"#, with: " ", options: .regularExpression)
        var kept: [Substring] = []
        /// The open fence: its character and length (CommonMark: closed by a run of the same
        /// character at least as long, with nothing after it but spaces).
        var fence: (character: Character, length: Int)?
        var gitLabQuote = false
        var inQuote = false
        /// Inside an HTML `<pre>` block (a line starting with `<pre`, to the line holding `</pre>`).
        var preBlock = false
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            if preBlock {
                if line.range(of: "</pre", options: .caseInsensitive) != nil { preBlock = false }
                continue
            }
            if let open = fence {
                let run = trimmed.prefix { $0 == open.character }
                if run.count >= open.length, trimmed.dropFirst(run.count).allSatisfy({ $0 == " " || $0 == "\t" }) { fence = nil }
                continue
            }
            // GitLab's multi-line quote: `>>>` lines around it.
            if trimmed.hasPrefix(">>>"), trimmed.dropFirst(3).allSatisfy({ $0 == " " || $0 == "\t" }) {
                gitLabQuote.toggle()
                continue
            }
            if gitLabQuote { continue }
            if trimmed.prefix(4).lowercased() == "<pre", trimmed.dropFirst(4).first.map({ $0 == ">" || $0 == " " || $0 == "\t" }) ?? true {
                preBlock = trimmed.range(of: "</pre", options: .caseInsensitive) == nil
                continue
            }
            if trimmed.isEmpty {
                inQuote = false
                kept.append(line)
                continue
            }
            if let first = trimmed.first, first == "`" || first == "~" {
                let run = trimmed.prefix { $0 == first }
                if run.count >= 3, first == "~" || !trimmed.dropFirst(run.count).contains("`") {
                    fence = (first, run.count)
                    inQuote = false
                    continue
                }
            }
            // A quote, also as a list item's content (`- > …`, `1. > …`); the lines after it up to
            // a blank line continue it (Markdown shows them inside the quote).
            if Self.listItemContent(trimmed).hasPrefix(">") {
                inQuote = true
                continue
            }
            if inQuote { continue }
            // Indented four spaces or a tab: a code block.
            if line.hasPrefix("    ") || line.hasPrefix("\t") { continue }
            kept.append(line)
        }
        // Code spans: a run of backticks to the next run of the same length; then inline HTML code
        // and preformatted text, closed (`<code>` written inside a code span or a fence is text,
        // and an unclosed one hid every command after it).
        return kept.joined(separator: "\n").replacingOccurrences(of: #"(`+)[\s\S]*?\1"#, with: " ", options: .regularExpression)
            .replacingOccurrences(of: #"<(code|pre)(\s[^>]*)?>[\s\S]*?</\1\s*>"#, with: " ", options: [.regularExpression, .caseInsensitive])
    }

    /// A line without the list markers it starts with (`- `, `* `, `+ `, `1. `, `2) `, nested).
    static func listItemContent(_ line: Substring) -> Substring {
        var rest = line
        while true {
            let digits = rest.prefix { $0.isASCII && $0.isNumber }
            var marker: Substring?
            if let first = rest.first, "-*+".contains(first) {
                marker = rest.prefix(1)
            } else if !digits.isEmpty, digits.count <= 9, let next = rest.dropFirst(digits.count).first, next == "." || next == ")" {
                marker = rest.prefix(digits.count + 1)
            }
            guard let marker, let after = rest.dropFirst(marker.count).first, after == " " || after == "\t" else { return rest }
            rest = rest.dropFirst(marker.count).drop { $0 == " " || $0 == "\t" }
        }
    }

    /// Registers the `github.delivery` job: each stored delivery is processed once.
    public func register(in registry: inout JobRegistry) {
        registry.register(DeliveryIntake.jobKind) { try await process($0) }
    }

    public func process(_ context: JobContext) async throws {
        let job = try context.job.decodePayload(DeliveryJob.self)
        let logger = context.logger
        let limit = try await billing?.plan(for: context.workspaceID).repositories
        let outcome: String = try await context.workspace.write { tx in
            guard let row = try Row.fetchOne(tx.db, sql: "SELECT * FROM deliveries WHERE id = ?", arguments: [job.deliveryID]) else {
                return "missing"
            }
            if let processed: Double = row["processed_at"], processed > 0 { return row["outcome"] ?? "processed" }
            let event: String = row["event"]
            // Intake settles these itself; a row stored before it did is settled here the same way,
            // without decoding the whole payload.
            if let outcome = Self.settledOutcome(event: event, action: row["action"]) {
                try tx.db.execute(sql: "UPDATE deliveries SET processed_at = ?, outcome = ? WHERE id = ?",
                                  arguments: [tx.now.epoch, outcome, job.deliveryID])
                return outcome
            }
            guard let integrationID = IntegrationID(row["integration_id"]) else { return "invalid integration" }
            let correlationID: String? = row["correlation_id"]
            let outcome: String
            if try IntegrationService.isRemoved(integrationID, in: tx.db) {
                // Nothing of a removed integration comes back: no run, no repository registered again.
                outcome = Self.integrationRemoved(integrationID)
            } else {
                do {
                    outcome = try Self.route(event: event, payload: try DeliveryPayload.body(of: row), integrationID: integrationID,
                                             correlationID: correlationID, repositoryLimit: limit, commandAssociations: commandAssociations, tx: &tx)
                } catch let error as DecodingError {
                    outcome = "ignored: payload not understood (\(Self.describe(error)))"
                }
            }
            try tx.db.execute(sql: "UPDATE deliveries SET processed_at = ?, outcome = ? WHERE id = ?",
                              arguments: [tx.now.epoch, outcome, job.deliveryID])
            return outcome
        }
        if outcome.hasPrefix(Self.refusedCommandPrefix) {
            // No reply on the PR: a refused commenter learns nothing by probing.
            metrics.reviewCommandRefused(reason: "author_association")
            logger.notice("review command refused", metadata: ["delivery_id": "\(job.deliveryID)", "outcome": "\(outcome)"])
        }
        logger.info("delivery processed", metadata: ["delivery_id": "\(job.deliveryID)", "outcome": "\(outcome)"])
    }

    /// Whether a comment author is the integration's own App: GitHub marks App accounts as `Bot`,
    /// and the configured bot login (`my-app[bot]`, or `my-app`) names this App.
    static func isOwnBot(_ user: GitHubPayload.Account?, botLogin: String?) -> Bool {
        if user?.type == "Bot" { return true }
        guard let login = user?.login?.lowercased(), let bot = botLogin?.trimmingCharacters(in: .whitespaces).lowercased(), !bot.isEmpty else {
            return false
        }
        return login == bot || login == bot + "[bot]"
    }

    /// Applies one delivery inside the caller's transaction; returns what was done, in words.
    public static func route(event: String, payload: Data, integrationID: IntegrationID, correlationID: String?,
                             repositoryLimit: Int? = nil, commandAssociations: Set<String> = defaultCommandAssociations,
                             tx: inout WorkspaceTransaction) throws -> String {
        let decoder = JSONDecoder.sentinel
        switch event {
        case "installation":
            let e = try decoder.decode(GitHubPayload.InstallationEvent.self, from: payload)
            switch e.action {
            case "created", "new_permissions_accepted", "unsuspend":
                var repositories = (e.repositories ?? []).map { (id: $0.id, fullName: $0.fullName) }
                if e.action == "unsuspend" {
                    // GitHub's unsuspend may list no repositories (an installation on all of them):
                    // those the suspension took away come back, as they were before it.
                    let listed = Set(repositories.map(\.id))
                    for repo in try RepositoryRecord.fetchAll(tx.db, sql: """
                        SELECT * FROM repositories WHERE integration_id = ? AND installation_id = ? AND removed = ? ORDER BY id
                        """, arguments: [integrationID.rawValue, e.installation.id, RepositoryStore.removedWithSuspension])
                    where !listed.contains(repo.externalID) {
                        repositories.append((id: repo.externalID, fullName: repo.fullName))
                    }
                }
                try RepositoryStore.registerAll(repositories, integrationID: integrationID, installationID: e.installation.id,
                                                limit: repositoryLimit, in: &tx)
                // Repositories, not entries: one listed twice is one row.
                return "registered \(Set(repositories.map(\.id)).count) repositories"
            case "deleted", "suspend":
                // A suspension's removal is marked apart (`removedWithSuspension`): its unsuspend
                // brings those repositories back even when it lists none.
                let mark = e.action == "suspend" ? RepositoryStore.removedWithSuspension : 1
                try tx.db.execute(sql: "UPDATE repositories SET removed = ? WHERE integration_id = ? AND installation_id = ? AND removed IN (0, ?)",
                                  arguments: [mark, integrationID.rawValue, e.installation.id, RepositoryStore.removedWithSuspension])
                // What was removed, not what the payload lists (an unknown installation removed nothing).
                return "removed \(tx.db.changesCount) repositories of installation \(e.installation.id)"
            default:
                return "ignored: installation.\(e.action)"
            }
        case "installation_repositories":
            let e = try decoder.decode(GitHubPayload.InstallationRepositoriesEvent.self, from: payload)
            try RepositoryStore.registerAll((e.repositoriesAdded ?? []).map { (id: $0.id, fullName: $0.fullName) }, integrationID: integrationID,
                                            installationID: e.installation.id, limit: repositoryLimit, in: &tx)
            var removed = 0
            for repo in e.repositoriesRemoved ?? [] {
                if try RepositoryStore.markRemoved(integrationID: integrationID, externalID: repo.id, installationID: e.installation.id, in: tx.db) {
                    removed += 1
                }
            }
            // What was removed, not what the payload lists (an unknown repository, or one moved to another installation, is not).
            return "added \(Set((e.repositoriesAdded ?? []).map(\.id)).count), removed \(removed) repositories"
        case "repository":
            // A rename or transfer left the old name: catch-up listed the repository by it, and a new
            // repository taking that name was reviewed twice. A deleted one kept its plan slot.
            let e = try decoder.decode(GitHubPayload.RepositoryEvent.self, from: payload)
            if let settled = settledOutcome(event: event, action: e.action) { return settled }
            guard let repo = try RepositoryStore.find(integrationID: integrationID, externalID: e.repository.id, in: tx.db) else {
                return "ignored: repository.\(e.action) of an unknown repository"
            }
            if e.action == "deleted" {
                let removed = try RepositoryStore.markRemoved(integrationID: integrationID, externalID: e.repository.id, in: tx.db)
                return removed ? "repository \(repo.fullName) deleted: removed" : "repository \(repo.fullName) was removed already"
            }
            guard repo.fullName != e.repository.fullName else { return "repository \(repo.fullName) kept its name" }
            try tx.db.execute(sql: "UPDATE repositories SET full_name = ? WHERE id = ?", arguments: [e.repository.fullName, repo.id])
            return "repository \(repo.fullName) \(e.action) to \(e.repository.fullName)"
        case "pull_request":
            let e = try decoder.decode(GitHubPayload.PullRequestEvent.self, from: payload)
            // The same decision intake makes (one list of the actions acted on, so the two cannot differ).
            if let settled = settledOutcome(event: event, action: e.action) { return settled }
            let trigger: String
            switch e.action {
            case "opened": trigger = "opened"
            case "reopened": trigger = "reopened"
            case "ready_for_review": trigger = "ready_for_review"
            case "synchronize": trigger = "push"
            case "edited":
                // Moved to another base branch: the change is now what that branch lacks, which no
                // run reviewed. Named by the branch: moved back and forth, each is its own review.
                guard let from = e.changes?.base?.ref?.from, let current = e.pullRequest.base.ref, !current.isEmpty, from != current else {
                    return "ignored: pull_request.edited (title, body or labels)"
                }
                trigger = "retargeted:" + String(current.prefix(200))
            case "closed":
                guard let repo = try RepositoryStore.find(integrationID: integrationID, externalID: e.repository.id, in: tx.db) else {
                    return "ignored: closed PR of an unknown repository"
                }
                let n = try ReviewRunStore.closePullRequest(repositoryID: repo.id, prNumber: e.pullRequest.number, in: &tx)
                return "pull request closed; \(n) open runs ended"
            default:
                return "ignored: pull_request.\(e.action)"
            }
            guard CommitName.isValid(e.pullRequest.head.sha) else { return "ignored: payload not understood (pull_request.head.sha is not a commit name)" }
            guard CommitName.isValid(e.pullRequest.base.sha) else { return "ignored: payload not understood (pull_request.base.sha is not a commit name)" }
            let repo = try RepositoryStore.register(integrationID: integrationID, externalID: e.repository.id, fullName: e.repository.fullName,
                                                    installationID: e.installation?.id, limit: repositoryLimit, in: &tx)
            guard repo.enabled else { return "ignored: repository \(repo.fullName) is disabled" }
            let (runID, created) = try ReviewRunStore.request(repository: repo, prNumber: e.pullRequest.number, headSHA: e.pullRequest.head.sha,
                                                              baseSHA: e.pullRequest.base.sha, trigger: trigger, fullReview: false,
                                                              correlationID: correlationID,
                                                              occurredAt: e.pullRequest.updatedAt.flatMap { try? Date($0, strategy: .iso8601) },
                                                              in: &tx)
            return created ? "run \(runID) requested" : "run \(runID) already exists"
        case "issue_comment":
            let e = try decoder.decode(GitHubPayload.IssueCommentEvent.self, from: payload)
            // Only new comments are commands: editing an old comment must not start (or restart) a run.
            if let settled = settledOutcome(event: event, action: e.action) { return settled }
            guard e.issue.pullRequest != nil else { return "ignored: comment on an issue, not a pull request" }
            let botLogin = try String.fetchOne(tx.db, sql: "SELECT bot_login FROM integrations WHERE id = ?", arguments: [integrationID.rawValue])
            if isOwnBot(e.comment.user, botLogin: botLogin) { return "ignored: comment by a bot" }
            let command = command(in: e.comment.body ?? "")
            guard command.review else { return "ignored: no command" }
            let association = (e.comment.authorAssociation ?? "NONE").uppercased()
            guard commandAssociations.contains(association) else {
                return refusedCommandPrefix + "@sentinel command by \(e.comment.user?.login ?? "unknown") (author_association \(association)); "
                    + "allowed: \(commandAssociations.sorted().joined(separator: ","))"
            }
            let repo = try RepositoryStore.register(integrationID: integrationID, externalID: e.repository.id, fullName: e.repository.fullName,
                                                    installationID: e.installation?.id, limit: repositoryLimit, in: &tx)
            guard repo.enabled else { return "ignored: repository \(repo.fullName) is disabled" }
            // The head commit is not in a comment payload; the run resolves it when it starts.
            let (runID, created) = try ReviewRunStore.request(repository: repo, prNumber: e.issue.number, headSHA: "",
                                                              baseSHA: nil, trigger: "command:\(e.comment.id)", fullReview: command.full,
                                                              correlationID: correlationID, in: &tx)
            return created ? "run \(runID) requested by comment" : "run \(runID) already exists"
        case "check_run", "check_suite":
            let (action, check, repository, sender) = event == "check_run"
                ? try decoder.decode(GitHubPayload.CheckRunEvent.self, from: payload).parts
                : try decoder.decode(GitHubPayload.CheckSuiteEvent.self, from: payload).parts
            if let settled = settledOutcome(event: event, action: action) { return settled }
            return try rerun(check, noun: event == "check_run" ? "check run" : "check suite", repository: repository, sender: sender,
                             integrationID: integrationID, correlationID: correlationID, tx: &tx)
        default:
            return notActedOn(event)
        }
    }

    /// "Re-run" on Sentinel's check (`check_run.rerequested`) or "Re-run all checks" on its suite
    /// (`check_suite.rerequested`): a review someone asked for, of the pull request's current head,
    /// as a re-run from the API would be (GitHub leaves the old check as it was; the run posts a new
    /// one). The pull request is the one Sentinel's check run names (`sentinel-run-<id>`), else those
    /// the payload lists in this repository, else the one Sentinel last reviewed at that commit
    /// (GitHub lists none for a pull request from a fork). Someone who can press the button has
    /// write access to the repository; GitHub sends the re-run only to the check's own App.
    static func rerun(_ check: GitHubPayload.Check, noun: String, repository: GitHubPayload.Repository, sender: GitHubPayload.Account?,
                      integrationID: IntegrationID, correlationID: String?, tx: inout WorkspaceTransaction) throws -> String {
        let db = tx.db
        let appID = try Int64.fetchOne(db, sql: "SELECT app_id FROM integrations WHERE id = ?", arguments: [integrationID.rawValue])
        if let appID, let owner = check.app?.id, owner != appID { return "ignored: \(noun) \(check.id) belongs to another GitHub App (\(owner))" }
        guard let repo = try RepositoryStore.find(integrationID: integrationID, externalID: repository.id, in: db), !repo.removed else {
            return "ignored: \(noun) \(check.id) of a repository Sentinel does not review (\(repository.fullName))"
        }
        guard repo.enabled else { return "ignored: repository \(repo.fullName) is disabled" }
        var numbers: [Int] = []
        if let external = check.externalID, external.hasPrefix(GitHubSession.checkExternalIDPrefix),
           let runID = Int64(external.dropFirst(GitHubSession.checkExternalIDPrefix.count)),
           let number = try Int.fetchOne(db, sql: "SELECT pr_number FROM review_runs WHERE id = ? AND repository_id = ?", arguments: [runID, repo.id]) {
            numbers.append(number)
        }
        if numbers.isEmpty {
            numbers = (check.pullRequests ?? []).filter { ($0.base?.repo?.id).map { $0 == repo.externalID } ?? true }.map(\.number)
        }
        if numbers.isEmpty, CommitName.isValid(check.headSHA), let number = try Int.fetchOne(db, sql: """
            SELECT pr_number FROM review_runs WHERE repository_id = ? AND head_sha = ? ORDER BY id DESC LIMIT 1
            """, arguments: [repo.id, check.headSHA]) {
            numbers.append(number)
        }
        var seen = Set<Int>()
        numbers = numbers.filter { seen.insert($0).inserted }
        guard !numbers.isEmpty else { return "ignored: \(noun) \(check.id) names no pull request Sentinel knows" }
        var requested: [String] = []
        // A suite may list several pull requests with the same head; a handful at most are re-run.
        for number in numbers.prefix(10) {
            // As a re-run from the API or console, audited by who pressed the button on GitHub.
            let (runID, _) = try ReviewRunStore.requestManual(repositoryID: repo.id, prNumber: number, fullReview: false,
                                                             by: "github:\(sender?.login ?? "unknown")", correlationID: correlationID, in: &tx)
            requested.append("run \(runID) (#\(number))")
        }
        return "\(requested.joined(separator: ", ")) requested by a re-run of \(noun) \(check.id)"
    }

    /// What in a payload could not be read, for a delivery's outcome: the field's path and why
    /// (`missing pull_request.head`, `pull_request.title: not a string`, `a field holds a value of
    /// the wrong kind or size (…)`). An empty path, as for a number out of range, once left the
    /// outcome as "payload not understood ()".
    static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context, _ last: (any CodingKey)? = nil) -> String {
            let keys = context.codingPath + (last.map { [$0] } ?? [])
            // The payload's own spelling: the decoder's keys are camel-cased (`pullRequest`).
            func snake(_ name: String) -> String {
                name.reduce(into: "") { out, character in
                    if character.isUppercase { out += "_" + character.lowercased() } else { out.append(character) }
                }
            }
            let text = keys.map { key in key.intValue.map { "[\($0)]" } ?? snake(key.stringValue) }.joined(separator: ".")
            return text.isEmpty ? "the payload" : text.replacingOccurrences(of: ".[", with: "[")
        }
        switch error {
        case .keyNotFound(let key, let context): return "missing \(path(context, key))"
        case .valueNotFound(_, let context): return "\(path(context)) is null"
        case .typeMismatch(let type, let context): return "\(path(context)): not \(type == String.self ? "a string" : type == Bool.self ? "a boolean" : "of the expected type")"
        case .dataCorrupted(let context) where context.codingPath.isEmpty:
            // The body is a JSON object (intake checked); Foundation's decoder reports a number with
            // a fraction, an exponent or past Int64 in a whole-number field this way, without the
            // field and as "The given data was not valid JSON.", which would contradict intake.
            let detail = context.debugDescription == "The given data was not valid JSON."
                ? "a number with a fraction, an exponent or more than 64 bits where a whole number belongs"
                : RemoteText.clean(context.debugDescription, limit: 120)
            return "a field holds a value of the wrong kind or size (\(detail))"
        case .dataCorrupted(let context): return "\(path(context)): \(RemoteText.clean(context.debugDescription, limit: 120))"
        @unknown default: return "decoding error"
        }
    }
}
