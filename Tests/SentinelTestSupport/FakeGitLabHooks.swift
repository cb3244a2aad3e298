import Foundation
import SentinelCore

/// What an `update` Merge Request Hook reports as changed (`changes`); `updated_at` is always there.
public struct GitLabHookChanges: Sendable {
    public var draft: (previous: Bool, current: Bool)?
    public var title: (previous: String, current: String)?
    public var description: (previous: String, current: String)?
    /// Labels were edited (previous: none, current: one label).
    public var labels: Bool
    /// The merge request was moved to another target branch.
    public var targetBranch: (previous: String, current: String)?

    public init(draft: (previous: Bool, current: Bool)? = nil, title: (previous: String, current: String)? = nil,
                description: (previous: String, current: String)? = nil, labels: Bool = false,
                targetBranch: (previous: String, current: String)? = nil) {
        self.draft = draft
        self.title = title
        self.description = description
        self.labels = labels
        self.targetBranch = targetBranch
    }
}

public struct GitLabHookError: Error, CustomStringConvertible {
    public let description: String

    public init(description: String) { self.description = description }
}

/// Webhook payloads as GitLab delivers them (the shapes of the `Merge Request Hook` and `Note Hook`
/// examples in GitLab's webhook docs and of real gitlab.com deliveries; see ../shared/fixtures/gitlab).
public enum GitLabWebhook {
    /// A `Merge Request Hook` body. `action` is GitLab's: `open`, `reopen`, `update`, `close`,
    /// `merge`, `approved`, `unapproved`, `approval`, `unapproval`. `oldrev` (the previous head) is
    /// present only on an `update` caused by a push of new commits.
    public static func mergeRequest(action: String, mr: FakeGitLabMergeRequest, project: FakeGitLabProject,
                                    instanceURL: String = "https://gitlab.example.com", user: FakeGitLabUser = FakeGitLabState.defaultAuthor,
                                    oldrev: String? = nil, changes: GitLabHookChanges = GitLabHookChanges(),
                                    sourceProject: FakeGitLabProject? = nil) -> Data {
        let state = action == "close" ? "closed" : action == "merge" ? "merged" : mr.state == "opened" || mr.state.isEmpty ? "opened" : mr.state
        var attributes = mergeRequestAttributes(mr, project: project, sourceProject: sourceProject, instanceURL: instanceURL, state: state)
        attributes["action"] = action
        if let oldrev { attributes["oldrev"] = oldrev }
        var changed: [String: Any] = [:]
        if action == "update" || changes.draft != nil || changes.title != nil || changes.labels {
            changed["updated_at"] = ["previous": "2024-05-01 09:00:00 UTC", "current": hookTime(Date())]
            changed["updated_by_id"] = ["previous": NSNull(), "current": user.id]
        }
        if let draft = changes.draft { changed["draft"] = ["previous": draft.previous, "current": draft.current] }
        if let title = changes.title { changed["title"] = ["previous": title.previous, "current": title.current] }
        if let description = changes.description { changed["description"] = ["previous": description.previous, "current": description.current] }
        if changes.labels { changed["labels"] = ["previous": [Any](), "current": [label(project.id)]] }
        if let target = changes.targetBranch { changed["target_branch"] = ["previous": target.previous, "current": target.current] }
        let object: [String: Any] = [
            "object_kind": "merge_request", "event_type": "merge_request",
            "user": hookUser(user, instanceURL: instanceURL),
            "project": hookProject(project, instanceURL: instanceURL),
            "repository": repository(project, instanceURL: instanceURL),
            "object_attributes": attributes,
            "labels": [Any](), "changes": changed,
            "assignees": [Any](), "reviewers": [Any](),
        ]
        return data(object)
    }

    /// A `Note Hook` body for a comment. `noteableType` is `MergeRequest` (with the `merge_request`
    /// object), `Issue` (with `issue`) or `Commit` (with `commit`); `system` marks GitLab's own
    /// notes; `action` is `create` or `update` (an edit); a `position` makes it a `DiffNote`.
    public static func note(_ body: String, on mr: FakeGitLabMergeRequest, project: FakeGitLabProject, author: FakeGitLabUser,
                            instanceURL: String = "https://gitlab.example.com", noteID: Int64 = 1, system: Bool = false,
                            action: String = "create", noteableType: String = "MergeRequest", position: FakeGitLabPosition? = nil) -> Data {
        let web = "\(instanceURL)/\(project.path)"
        let noteableID = orNull(noteableType == "Commit" ? nil : (noteableType == "Issue" ? 700 + Int64(mr.iid) : mr.id))
        let url = noteableType == "Issue" ? "\(web)/-/issues/\(mr.iid)#note_\(noteID)"
            : noteableType == "Commit" ? "\(web)/-/commit/\(mr.headSHA)#note_\(noteID)" : "\(web)/-/merge_requests/\(mr.iid)#note_\(noteID)"
        var positionObject: Any = NSNull()
        if let position {
            positionObject = ["base_sha": position.baseSHA, "start_sha": position.startSHA, "head_sha": position.headSHA,
                              "old_path": orNull(position.oldPath), "new_path": orNull(position.newPath), "position_type": position.positionType,
                              "old_line": orNull(position.oldLine), "new_line": orNull(position.newLine)]
        }
        let attributes: [String: Any] = [
            "id": noteID, "note": body, "noteable_type": noteableType, "author_id": author.id,
            "created_at": hookTime(Date()), "updated_at": hookTime(Date()), "project_id": project.id, "attachment": NSNull(),
            "line_code": orNull(position?.lineCode), "commit_id": noteableType == "Commit" ? mr.headSHA : "",
            "noteable_id": noteableID, "system": system, "st_diff": NSNull(), "action": action, "url": url,
            "updated_by_id": NSNull(), "type": orNull(position == nil ? nil : "DiffNote"),
            "position": positionObject, "original_position": positionObject, "change_position": NSNull(),
            "resolved_at": NSNull(), "resolved_by_id": NSNull(), "resolved_by_push": NSNull(),
            "discussion_id": FakeGitLabState.discussionID(),
        ]
        var object: [String: Any] = [
            "object_kind": "note", "event_type": "note",
            "user": hookUser(author, instanceURL: instanceURL),
            "project_id": project.id,
            "project": hookProject(project, instanceURL: instanceURL),
            "repository": repository(project, instanceURL: instanceURL),
            "object_attributes": attributes,
        ]
        switch noteableType {
        case "MergeRequest":
            object["merge_request"] = mergeRequestAttributes(mr, project: project, sourceProject: nil, instanceURL: instanceURL, state: mr.state)
        case "Issue":
            object["issue"] = ["id": 700 + Int64(mr.iid), "iid": mr.iid, "title": "An issue", "description": "", "state": "opened",
                               "project_id": project.id, "author_id": author.id, "url": "\(web)/-/issues/\(mr.iid)",
                               "created_at": hookTime(Date()), "updated_at": hookTime(Date()), "labels": [Any]()]
        case "Commit":
            object["commit"] = ["id": mr.headSHA, "message": "A commit\n", "title": "A commit", "timestamp": "2024-05-01T09:00:00+00:00",
                                "url": "\(web)/-/commit/\(mr.headSHA)", "author": ["name": "Alice Example", "email": "alice@example.com"]]
        default:
            break
        }
        return data(object)
    }

    // MARK: shapes

    static func mergeRequestAttributes(_ mr: FakeGitLabMergeRequest, project: FakeGitLabProject, sourceProject: FakeGitLabProject?,
                                       instanceURL: String, state: String) -> [String: Any] {
        let source = sourceProject ?? (mr.sourceProjectID == project.id ? project : FakeGitLabProject(id: mr.sourceProjectID, path: "outsider/\(project.path.split(separator: "/").last ?? "fork")"))
        let web = "\(instanceURL)/\(project.path)"
        let stateID = ["opened": 1, "closed": 2, "merged": 3, "locked": 4][state] ?? 1
        return [
            "id": mr.id, "iid": mr.iid, "target_branch": mr.targetBranch, "source_branch": mr.sourceBranch,
            "source_project_id": mr.sourceProjectID, "target_project_id": mr.project, "author_id": mr.author.id,
            "assignee_ids": [Any](), "assignee_id": NSNull(), "reviewer_ids": [Any](), "title": mr.title, "description": mr.description,
            "created_at": "2024-05-01 09:00:00 UTC", "updated_at": hookTime(Date()), "last_edited_at": NSNull(), "last_edited_by_id": NSNull(),
            "milestone_id": NSNull(), "state_id": stateID, "state": state, "blocking_discussions_resolved": true,
            "work_in_progress": mr.isDraft, "draft": mr.isDraft, "first_contribution": false, "merge_status": "unchecked",
            "detailed_merge_status": mr.draft ? "draft_status" : "mergeable", "head_pipeline_id": NSNull(),
            "merge_commit_sha": NSNull(), "merge_error": NSNull(), "merge_params": ["force_remove_source_branch": "1"],
            "merge_user_id": NSNull(), "merge_when_pipeline_succeeds": false, "time_estimate": 0, "total_time_spent": 0,
            "time_change": 0, "human_total_time_spent": NSNull(), "human_time_change": NSNull(), "human_time_estimate": NSNull(),
            "updated_by_id": NSNull(), "prepared_at": "2024-05-01 09:00:01 UTC",
            "url": "\(web)/-/merge_requests/\(mr.iid)",
            "source": hookProject(source, instanceURL: instanceURL), "target": hookProject(project, instanceURL: instanceURL),
            "last_commit": ["id": mr.headSHA, "message": "Change things\n", "title": "Change things",
                            "timestamp": "2024-05-01T09:00:00+00:00", "url": "\(web)/-/commit/\(mr.headSHA)",
                            "author": ["name": mr.author.name, "email": "\(mr.author.username)@example.com"]],
            "labels": [Any](),
        ]
    }

    static func hookUser(_ user: FakeGitLabUser, instanceURL: String) -> [String: Any] {
        ["id": user.id, "name": user.name, "username": user.username,
         "avatar_url": "\(instanceURL)/uploads/-/system/user/avatar/\(user.id)/avatar.png", "email": "[REDACTED]"]
    }

    static func hookProject(_ project: FakeGitLabProject, instanceURL: String) -> [String: Any] {
        let host = URL(string: instanceURL)?.host ?? "gitlab.example.com"
        let parts = project.path.split(separator: "/")
        let web = "\(instanceURL)/\(project.path)"
        return ["id": project.id, "name": String(parts.last ?? ""), "description": "", "web_url": web, "avatar_url": NSNull(),
                "git_ssh_url": "git@\(host):\(project.path).git", "git_http_url": "\(web).git",
                "namespace": String(parts.dropLast().last ?? ""), "visibility_level": 0, "path_with_namespace": project.path,
                "default_branch": project.defaultBranch, "ci_config_path": NSNull(), "homepage": web,
                "url": "git@\(host):\(project.path).git", "ssh_url": "git@\(host):\(project.path).git", "http_url": "\(web).git"]
    }

    static func repository(_ project: FakeGitLabProject, instanceURL: String) -> [String: Any] {
        let host = URL(string: instanceURL)?.host ?? "gitlab.example.com"
        return ["name": String(project.path.split(separator: "/").last ?? ""), "url": "git@\(host):\(project.path).git",
                "description": "", "homepage": "\(instanceURL)/\(project.path)"]
    }

    static func label(_ projectID: Int64) -> [String: Any] {
        ["id": 206, "title": "API", "color": "#ffffff", "project_id": projectID, "created_at": "2024-05-01 09:00:00 UTC",
         "updated_at": "2024-05-01 09:00:00 UTC", "template": false, "description": NSNull(), "type": "ProjectLabel", "group_id": NSNull()]
    }

    /// GitLab's webhook time format (`2024-05-01 09:00:00 UTC`).
    static func hookTime(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss 'UTC'"
        return formatter.string(from: date)
    }

    static func orNull(_ value: Any?) -> Any { value ?? NSNull() }

    static func data(_ object: [String: Any]) -> Data {
        (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
    }
}

extension FakeGitLabState {
    /// A `Merge Request Hook` for a stored merge request, as this fake instance would deliver it.
    public func mergeRequestHook(action: String, project: Int64, iid: Int, user: FakeGitLabUser = FakeGitLabState.defaultAuthor,
                                 oldrev: String? = nil, changes: GitLabHookChanges = GitLabHookChanges()) throws -> Data {
        guard let p = projects[project], let mr = mergeRequests[Self.key(project, iid)] else {
            throw GitLabHookError(description: "no merge request !\(iid) in project \(project)")
        }
        return GitLabWebhook.mergeRequest(action: action, mr: mr, project: p, instanceURL: instanceURL, user: user, oldrev: oldrev, changes: changes)
    }

    /// A `Note Hook` for a comment on a stored merge request, as this fake instance would deliver it.
    public func noteHook(_ body: String, project: Int64, iid: Int, author: FakeGitLabUser, system: Bool = false, action: String = "create",
                         noteableType: String = "MergeRequest", noteID: Int64? = nil) throws -> Data {
        guard let p = projects[project], let mr = mergeRequests[Self.key(project, iid)] else {
            throw GitLabHookError(description: "no merge request !\(iid) in project \(project)")
        }
        return GitLabWebhook.note(body, on: mr, project: p, author: author, instanceURL: instanceURL, noteID: noteID ?? newID(),
                                  system: system, action: action, noteableType: noteableType)
    }
}

extension FakeGitLab {
    /// POSTs a webhook delivery the way GitLab does: JSON body, `X-Gitlab-Event`, `X-Gitlab-Token`
    /// (omitted when nil), `X-Gitlab-Event-UUID`, `X-Gitlab-Webhook-UUID`, `X-Gitlab-Instance`, and
    /// `Idempotency-Key` when given (GitLab 17.4+ sends one; it stays the same on a retry).
    /// - Returns: the receiver's status code and body.
    @discardableResult
    public static func deliver(to url: URL, token: String?, event: String, payload: Data, uuid: String = UUID().uuidString,
                               idempotencyKey: String? = nil, instance: String = "https://gitlab.example.com",
                               caBundlePEM: String? = nil) async throws -> (status: Int, body: String) {
        var headers: [(String, String)] = [("Content-Type", "application/json"), ("User-Agent", "GitLab/17.6.0"),
                                           ("X-Gitlab-Event", event), ("X-Gitlab-Event-UUID", uuid),
                                           ("X-Gitlab-Webhook-UUID", "6c4e6a8b-1f7d-4a55-9d0e-5b1c3f0a2e77"), ("X-Gitlab-Instance", instance)]
        if let token { headers.append(("X-Gitlab-Token", token)) }
        if let idempotencyKey { headers.append(("Idempotency-Key", idempotencyKey)) }
        let client = try AsyncOutboundHTTPClient(caBundlePEM: caBundlePEM)
        do {
            let response = try await client.send(OutboundRequest(method: "POST", url: url, headers: headers, body: payload, timeout: .seconds(10)))
            await client.shutdown()
            return (response.status, String(decoding: response.body, as: UTF8.self))
        } catch {
            await client.shutdown()
            throw error
        }
    }
}
