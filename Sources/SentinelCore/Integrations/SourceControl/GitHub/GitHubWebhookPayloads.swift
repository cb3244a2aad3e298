import Foundation

/// The parts of GitHub webhook payloads Sentinel acts on. Every field is optional where GitHub may
/// leave it out, so an unusual payload is recorded and skipped, never a crash. GitHub's keys are
/// snake_case, so these read with `JSONDecoder.sentinel` (`full_name` → `fullName`).
enum GitHubPayload {
    struct Account: Decodable { let login: String?; let type: String? }
    /// A repository as GitHub names it: a positive id and `owner/name` (`RepositoryName`). A
    /// payload that breaks the rule is not understood (`ignored: payload not understood
    /// (repository.full_name: …)`): no repository is registered for it.
    struct Repository: Decodable {
        let id: Int64
        let fullName: String
        let `private`: Bool?
        let fork: Bool?

        enum CodingKeys: String, CodingKey { case id, fullName, `private`, fork }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            (id, fullName) = try RepositoryName.decode(container, id: .id, name: .fullName, parts: 2...2, noun: "repository",
                                                       form: "name of the form owner/name")
            `private` = try container.decodeIfPresent(Bool.self, forKey: .private)
            fork = try container.decodeIfPresent(Bool.self, forKey: .fork)
        }
    }
    /// An installation: `id` positive (a repository re-pointed at installation -5 failed every run).
    struct Installation: Decodable {
        let id: Int64
        let account: Account?

        enum CodingKeys: String, CodingKey { case id, account }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            id = try container.decode(Int64.self, forKey: .id)
            guard id > 0 else { throw DecodingError.dataCorruptedError(forKey: .id, in: container, debugDescription: "not a positive number") }
            account = try container.decodeIfPresent(Account.self, forKey: .account)
        }
    }
    struct Ref: Decodable { let sha: String; let ref: String?; let repo: Repository? }
    /// A pull request: `number` positive (`PayloadValue`).
    struct PullRequest: Decodable {
        let number: Int
        let draft: Bool?
        let state: String?
        let head: Ref
        let base: Ref
        let user: Account?
        /// When the pull request last changed, as of the event (ISO 8601).
        let updatedAt: String?

        enum CodingKeys: String, CodingKey { case number, draft, state, head, base, user, updatedAt }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            number = try PayloadValue.number(container, .number, noun: "pull request")
            draft = try container.decodeIfPresent(Bool.self, forKey: .draft)
            state = try container.decodeIfPresent(String.self, forKey: .state)
            head = try container.decode(Ref.self, forKey: .head)
            base = try container.decode(Ref.self, forKey: .base)
            user = try container.decodeIfPresent(Account.self, forKey: .user)
            updatedAt = try container.decodeIfPresent(String.self, forKey: .updatedAt)
        }
    }
    struct PullRequestEvent: Decodable {
        struct From: Decodable { let from: String? }
        /// What an `edited` changed; `base.ref` when the pull request was moved to another base branch.
        struct Changes: Decodable {
            struct Base: Decodable { let ref: From? }
            let base: Base?
        }
        let action: String
        let number: Int?
        let pullRequest: PullRequest
        let repository: Repository
        let installation: Installation?
        let before: String?
        let after: String?
        let changes: Changes?
    }
    /// `repository`: renamed, transferred (to another owner), deleted, and others not acted on.
    struct RepositoryEvent: Decodable {
        let action: String
        let repository: Repository
        let installation: Installation?
    }
    struct IssueRef: Decodable { let url: String? }
    struct Issue: Decodable {
        let number: Int
        let pullRequest: IssueRef?

        enum CodingKeys: String, CodingKey { case number, pullRequest }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            number = try PayloadValue.number(container, .number, noun: "issue or pull request")
            pullRequest = try container.decodeIfPresent(IssueRef.self, forKey: .pullRequest)
        }
    }
    struct Comment: Decodable {
        let id: Int64
        let body: String?
        let user: Account?
        /// The commenter's relation to the repository (OWNER, MEMBER, COLLABORATOR, CONTRIBUTOR, NONE, …).
        let authorAssociation: String?
    }
    struct IssueCommentEvent: Decodable {
        let action: String
        let issue: Issue
        let comment: Comment
        let repository: Repository
        let installation: Installation?
    }
    /// The App a check run or check suite belongs to.
    struct App: Decodable { let id: Int64? }
    /// A pull request as a check run or suite lists it: its number and the repository it merges
    /// into (these repository objects carry no `full_name`). GitHub lists none for a pull request
    /// from a fork.
    struct CheckPullRequest: Decodable {
        struct Base: Decodable { struct Repo: Decodable { let id: Int64? }; let repo: Repo? }
        let number: Int
        let base: Base?

        enum CodingKeys: String, CodingKey { case number, base }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            number = try PayloadValue.number(container, .number, noun: "pull request")
            base = try container.decodeIfPresent(Base.self, forKey: .base)
        }
    }
    /// A check run (`check_run` events) or a check suite (`check_suite` events): what a re-run of
    /// Sentinel's check from the pull request's page names.
    struct Check: Decodable {
        let id: Int64
        let headSHA: String
        /// Sentinel's own check runs carry `sentinel-run-<run id>`; suites have none.
        let externalID: String?
        let app: App?
        let pullRequests: [CheckPullRequest]?
    }
    struct CheckRunEvent: Decodable {
        let action: String
        let checkRun: Check
        let repository: Repository
        let sender: Account?
        var parts: (String, Check, Repository, Account?) { (action, checkRun, repository, sender) }
    }
    struct CheckSuiteEvent: Decodable {
        let action: String
        let checkSuite: Check
        let repository: Repository
        let sender: Account?
        var parts: (String, Check, Repository, Account?) { (action, checkSuite, repository, sender) }
    }
    struct InstallationEvent: Decodable {
        let action: String
        let installation: Installation
        let repositories: [Repository]?
    }
    struct InstallationRepositoriesEvent: Decodable {
        let action: String
        let installation: Installation
        let repositoriesAdded: [Repository]?
        let repositoriesRemoved: [Repository]?
    }
}
