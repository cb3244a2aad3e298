import Foundation
import GRDB
import Logging

/// The parts of GitLab's webhook payloads Sentinel reads (`Merge Request Hook`, `Note Hook`).
enum GitLabPayload {
    struct User: Decodable { let id: Int64?; let username: String? }
    /// A project as GitLab names it: a positive id and `group/…/project` (`RepositoryName`, up to
    /// 20 levels of subgroups); otherwise the payload is not understood and registers nothing.
    struct Project: Decodable {
        let id: Int64
        let path_with_namespace: String

        enum CodingKeys: String, CodingKey { case id, path_with_namespace }

        init(from decoder: any Decoder) throws {
            (id, path_with_namespace) = try RepositoryName.decode(decoder.container(keyedBy: CodingKeys.self), id: .id, name: .path_with_namespace,
                                                                  parts: 2...22, noun: "project", form: "path of the form group/project")
        }
    }
    struct Commit: Decodable { let id: String? }
    struct Change<T: Decodable>: Decodable { let previous: T?; let current: T? }
    /// What an `update` changed: the draft flag (`work_in_progress` on older GitLab), the title.
    struct Changes: Decodable {
        let draft: Change<Bool>?
        let work_in_progress: Change<Bool>?
        let title: Change<String>?
        let target_branch: Change<String>?

        /// The branch the merge request now targets, when an update moved it to another: the
        /// change is then what the new branch lacks, which no run reviewed.
        var retargetedTo: String? {
            guard let target = target_branch, let current = target.current, !current.isEmpty, target.previous != current else { return nil }
            return current
        }

        /// Marked ready: the flag went from draft to not, or (where only the title is reported) the
        /// title lost its draft prefix and the merge request is no draft now.
        func markedReady(_ mergeRequest: MergeRequestEvent.Attributes) -> Bool {
            if let flag = draft ?? work_in_progress { return flag.previous == true && flag.current == false }
            guard let title, GitLabSession.isDraft(flag: nil, workInProgress: nil, title: title.previous),
                  !GitLabSession.isDraft(flag: nil, workInProgress: nil, title: title.current) else { return false }
            return !GitLabSession.isDraft(flag: mergeRequest.draft, workInProgress: mergeRequest.work_in_progress, title: mergeRequest.title)
        }
    }

    struct MergeRequestEvent: Decodable {
        /// The merge request: `iid` positive (`PayloadValue`).
        struct Attributes: Decodable {
            let iid: Int
            let action: String?
            let oldrev: String?
            let last_commit: Commit?
            let draft: Bool?
            let work_in_progress: Bool?
            let title: String?

            enum CodingKeys: String, CodingKey { case iid, action, oldrev, last_commit, draft, work_in_progress, title }

            init(from decoder: any Decoder) throws {
                let container = try decoder.container(keyedBy: CodingKeys.self)
                iid = try PayloadValue.number(container, .iid, noun: "merge request")
                action = try container.decodeIfPresent(String.self, forKey: .action)
                oldrev = try container.decodeIfPresent(String.self, forKey: .oldrev)
                last_commit = try container.decodeIfPresent(Commit.self, forKey: .last_commit)
                draft = try container.decodeIfPresent(Bool.self, forKey: .draft)
                work_in_progress = try container.decodeIfPresent(Bool.self, forKey: .work_in_progress)
                title = try container.decodeIfPresent(String.self, forKey: .title)
            }
        }
        let user: User?
        let project: Project
        let object_attributes: Attributes
        let changes: Changes?
    }

    struct NoteEvent: Decodable {
        struct Attributes: Decodable {
            let id: Int64
            let note: String?
            let noteable_type: String?
            let system: Bool?
            let action: String?
            /// The note's author: what names the commenter where `user.id` is left out (older GitLab).
            let author_id: Int64?
        }
        struct MergeRequest: Decodable {
            let iid: Int
            let last_commit: Commit?

            enum CodingKeys: String, CodingKey { case iid, last_commit }

            init(from decoder: any Decoder) throws {
                let container = try decoder.container(keyedBy: CodingKeys.self)
                iid = try PayloadValue.number(container, .iid, noun: "merge request")
                last_commit = try container.decodeIfPresent(Commit.self, forKey: .last_commit)
            }
        }
        let user: User?
        let project: Project
        let object_attributes: Attributes
        let merge_request: MergeRequest?
    }
}

/// Turns a stored GitLab delivery into domain changes: projects registered on first sight, review
/// runs requested, open runs ended when a merge request closes or merges. Runs as the
/// `gitlab.delivery` job; every step is idempotent (upserts, unique run keys). The one network call
/// (a note command's author's access level) happens before the transaction, never at intake.
public struct GitLabDeliveryProcessor: Sendable {
    /// The least access level whose `@sentinel review` notes start a run: Developer.
    public static let commandAccessLevel = 30
    let billing: (any BillingProvider)?
    let connector: GitLabConnector
    let metrics: SentinelMetrics

    public init(connector: GitLabConnector, billing: (any BillingProvider)? = nil, metrics: SentinelMetrics = SentinelMetrics()) {
        self.connector = connector
        self.billing = billing
        self.metrics = metrics
    }

    public func register(in registry: inout JobRegistry) {
        registry.register(DeliveryIntake.gitLabJobKind) { try await process($0) }
    }

    /// The merge request actions that start, or end, review runs.
    static let mergeRequestActions: Set<String> = ["open", "reopen", "update", "close", "merge"]

    /// What processing would conclude from the event and action alone, when that is "nothing to
    /// do" (the same words `route` uses); nil when the payload decides. Intake stores such a
    /// delivery already processed, without a job (`DeliveryIntake.store(settled:)`).
    public static func settledOutcome(event: String, action: String?) -> String? {
        switch event {
        case "Merge Request Hook":
            guard let action, !action.isEmpty, !mergeRequestActions.contains(action) else { return nil }
            return "ignored: merge_request.\(action)"
        case "Note Hook":
            return nil
        default:
            return GitHubDeliveryProcessor.notActedOn(event)
        }
    }

    /// Why a note does nothing, read from the payload alone (nil for a review command on a merge
    /// request): decided before GitLab is asked for the commenter's access level, so a note that
    /// does nothing never waits on (or retries toward a dead job over) that call.
    static func ignoredNote(_ e: GitLabPayload.NoteEvent, botLogin: String?) -> String? {
        let a = e.object_attributes
        guard a.noteable_type == "MergeRequest" else {
            return "ignored: " + (a.noteable_type.map { "note on noteable_type \($0)" } ?? "note without a noteable_type") + ", not on a merge request"
        }
        guard e.merge_request != nil else { return "ignored: payload not understood (missing merge_request)" }
        // Only new notes are commands: editing an old note must not start (or restart) a run.
        if let action = a.action, action != "create" { return "ignored: note \(action)" }
        if a.system == true { return "ignored: system note" }
        if let botLogin, let author = e.user?.username, author.lowercased() == botLogin.lowercased() { return "ignored: note by the integration's user" }
        guard GitHubDeliveryProcessor.command(in: a.note ?? "").review else { return "ignored: no command" }
        return nil
    }

    public func process(_ context: JobContext) async throws {
        let job = try context.job.decodePayload(DeliveryJob.self)
        struct Stored: Sendable {
            let event: String; let payload: Data; let integration: String; let processed: Bool; let integrationRemoved: Bool; let botLogin: String?
        }
        let stored = try await context.workspace.read { db -> Stored? in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM deliveries WHERE id = ?", arguments: [job.deliveryID]) else { return nil }
            let processed: Double? = row["processed_at"]
            let integration: String = row["integration_id"]
            return Stored(event: row["event"], payload: try DeliveryPayload.body(of: row), integration: integration,
                          processed: (processed ?? 0) > 0,
                          integrationRemoved: try IntegrationID(integration).map { try IntegrationService.isRemoved($0, in: db) } ?? true,
                          botLogin: try String.fetchOne(db, sql: "SELECT bot_login FROM integrations WHERE id = ?", arguments: [integration]))
        }
        guard let stored, !stored.processed, let integrationID = IntegrationID(stored.integration) else { return }
        // A note command counts only from a project member with at least Developer access: ask GitLab now
        // (not for a removed integration, whose deliveries change nothing, and not for a note
        // ignored anyway: on an issue, edited, a system note, the bot's own, no command).
        var commandAccess: Int?
        var accessUnknown: String?
        if stored.event == "Note Hook", !stored.integrationRemoved, let note = try? JSONDecoder().decode(GitLabPayload.NoteEvent.self, from: stored.payload),
           Self.ignoredNote(note, botLogin: stored.botLogin) == nil,
           let userID = note.user?.id ?? note.object_attributes.author_id {
            let client = try await connector.client(for: integrationID, in: context.workspace)
            do {
                commandAccess = try await GitLabSession(client: client, project: note.project.id, bot: GitLabUser(id: 0, username: ""))
                    .mapped { try await client.accessLevel(project: note.project.id, userID: userID) } ?? 0
            } catch SourceControlError.permanent(let reason) {
                // GitLab will not say (a 403 for the token's role, say): asking again changes
                // nothing, so the command is refused now, saying why, instead of a job retried dead.
                accessUnknown = reason
            }
        }
        let limit = try await billing?.plan(for: context.workspaceID).repositories
        let (access, unknown) = (commandAccess, accessUnknown)
        let outcome: String = try await context.workspace.write { tx in
            guard let row = try Row.fetchOne(tx.db, sql: "SELECT processed_at, correlation_id FROM deliveries WHERE id = ?", arguments: [job.deliveryID]) else {
                return "missing"
            }
            if let processed: Double = row["processed_at"], processed > 0 { return "processed" }
            let outcome: String
            if try IntegrationService.isRemoved(integrationID, in: tx.db) {
                outcome = GitHubDeliveryProcessor.integrationRemoved(integrationID)
            } else {
                do {
                    outcome = try Self.route(event: stored.event, payload: stored.payload, integrationID: integrationID, correlationID: row["correlation_id"],
                                             repositoryLimit: limit, commandAccess: access, commandAccessUnknown: unknown, tx: &tx)
                } catch let error as DecodingError {
                    outcome = "ignored: payload not understood (\(GitHubDeliveryProcessor.describe(error)))"
                }
            }
            try tx.db.execute(sql: "UPDATE deliveries SET processed_at = ?, outcome = ? WHERE id = ?", arguments: [tx.now.epoch, outcome, job.deliveryID])
            return outcome
        }
        if outcome.hasPrefix(GitHubDeliveryProcessor.refusedCommandPrefix) {
            metrics.reviewCommandRefused(reason: "access_level")
            context.logger.notice("review command refused", metadata: ["delivery_id": "\(job.deliveryID)", "outcome": "\(outcome)"])
        }
        context.logger.info("delivery processed", metadata: ["delivery_id": "\(job.deliveryID)", "outcome": "\(outcome)"])
    }

    /// Whether a merge request is a draft: the flag, the older `work_in_progress`, or a draft title.
    static func isDraft(_ a: GitLabPayload.MergeRequestEvent.Attributes) -> Bool {
        GitLabSession.isDraft(flag: a.draft, workInProgress: a.work_in_progress, title: a.title)
    }

    /// Applies one delivery inside the caller's transaction; returns what was done, in words.
    /// `commandAccess` is the note author's access level in the project, when the note is a command.
    public static func route(event: String, payload: Data, integrationID: IntegrationID, correlationID: String?, repositoryLimit: Int? = nil,
                             commandAccess: Int? = nil, commandAccessUnknown: String? = nil, tx: inout WorkspaceTransaction) throws -> String {
        let decoder = JSONDecoder()
        switch event {
        case "Merge Request Hook":
            let e = try decoder.decode(GitLabPayload.MergeRequestEvent.self, from: payload)
            let a = e.object_attributes
            // The same decision intake makes (one list of the actions acted on, so the two cannot differ).
            if let settled = settledOutcome(event: event, action: a.action) { return settled }
            let action = a.action ?? ""
            let trigger: String
            switch action {
            case "open": trigger = "opened"
            case "reopen": trigger = "reopened"
            case "update":
                if a.oldrev != nil {
                    trigger = "push"
                } else if e.changes?.markedReady(a) == true {
                    trigger = "ready_for_review"
                } else if let branch = e.changes?.retargetedTo {
                    // Named by the branch: moved back and forth at one head, each target is its own review.
                    trigger = "retargeted:" + String(branch.prefix(200))
                } else {
                    return "ignored: merge request updated without new commits"
                }
            case "close", "merge":
                guard let repo = try RepositoryStore.find(integrationID: integrationID, externalID: e.project.id, in: tx.db) else {
                    return "ignored: \(action) of a merge request of an unknown project"
                }
                let n = try ReviewRunStore.closePullRequest(repositoryID: repo.id, prNumber: a.iid, in: &tx)
                return "merge request \(action == "merge" ? "merged" : "closed"); \(n) open runs ended"
            default:
                return "ignored: merge_request.\(action.isEmpty ? "unknown" : action)"
            }
            if let head = a.last_commit?.id, !head.isEmpty, !CommitName.isValid(head) {
                return "ignored: payload not understood (object_attributes.last_commit.id is not a commit name)"
            }
            let repo = try RepositoryStore.register(integrationID: integrationID, externalID: e.project.id, fullName: e.project.path_with_namespace,
                                                    installationID: nil, limit: repositoryLimit, in: &tx)
            guard repo.enabled else { return "ignored: repository \(repo.fullName) is disabled" }
            guard let head = a.last_commit?.id, !head.isEmpty else { return "ignored: no head commit in the merge request event" }
            let (runID, created) = try ReviewRunStore.request(repository: repo, prNumber: a.iid, headSHA: head, baseSHA: nil, trigger: trigger,
                                                              fullReview: false, correlationID: correlationID, in: &tx)
            return created ? "run \(runID) requested" : "run \(runID) already exists"
        case "Note Hook":
            let e = try decoder.decode(GitLabPayload.NoteEvent.self, from: payload)
            let a = e.object_attributes
            let bot = try String.fetchOne(tx.db, sql: "SELECT bot_login FROM integrations WHERE id = ?", arguments: [integrationID.rawValue])
            if let ignored = ignoredNote(e, botLogin: bot) { return ignored }
            guard let mr = e.merge_request else { return "ignored: payload not understood (missing merge_request)" }
            let command = GitHubDeliveryProcessor.command(in: a.note ?? "")
            if let commandAccessUnknown {
                return GitHubDeliveryProcessor.refusedCommandPrefix
                    + "@sentinel command by \(e.user?.username ?? "unknown"): GitLab did not tell the commenter's access level (\(commandAccessUnknown))"
            }
            let access = commandAccess ?? 0
            guard access >= commandAccessLevel else {
                return GitHubDeliveryProcessor.refusedCommandPrefix
                    + "@sentinel command by \(e.user?.username ?? "unknown") (access level \(access)); needs Developer (30) or more"
            }
            let repo = try RepositoryStore.register(integrationID: integrationID, externalID: e.project.id, fullName: e.project.path_with_namespace,
                                                    installationID: nil, limit: repositoryLimit, in: &tx)
            guard repo.enabled else { return "ignored: repository \(repo.fullName) is disabled" }
            let (runID, created) = try ReviewRunStore.request(repository: repo, prNumber: mr.iid, headSHA: mr.last_commit?.id.flatMap { CommitName.isValid($0) ? $0 : nil } ?? "",
                                                              baseSHA: nil,
                                                              trigger: "command:\(a.id)", fullReview: command.full, correlationID: correlationID,
                                                              in: &tx)
            return created ? "run \(runID) requested by note" : "run \(runID) already exists"
        default:
            return GitHubDeliveryProcessor.notActedOn(event)
        }
    }
}
