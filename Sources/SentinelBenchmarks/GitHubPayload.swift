import Foundation

/// A `pull_request` delivery shaped like GitHub's (user, repository and `_links` objects with
/// their URL fields, head and base with their repositories, installation, sender), about
/// `targetBytes` long: a real one of a public repository is about 23 KB, mostly the repository
/// objects, and the PR's description pads it to the size asked for.
enum GitHubPayload {
    static func user(_ login: String, id: Int, type: String = "User") -> [String: Any] {
        let api = "https://api.github.com/users/\(login)"
        return [
            "login": login, "id": id, "node_id": "MDQ6VXNlcj\(id)", "avatar_url": "https://avatars.githubusercontent.com/u/\(id)?v=4",
            "gravatar_id": "", "url": api, "html_url": "https://github.com/\(login)", "followers_url": "\(api)/followers",
            "following_url": "\(api)/following{/other_user}", "gists_url": "\(api)/gists{/gist_id}",
            "starred_url": "\(api)/starred{/owner}{/repo}", "subscriptions_url": "\(api)/subscriptions",
            "organizations_url": "\(api)/orgs", "repos_url": "\(api)/repos", "events_url": "\(api)/events{/privacy}",
            "received_events_url": "\(api)/received_events", "type": type, "user_view_type": "public", "site_admin": false,
        ]
    }

    static func repository(id: Int, fullName: String) -> [String: Any] {
        let owner = String(fullName.split(separator: "/").first ?? "o")
        let api = "https://api.github.com/repos/\(fullName)"
        var object: [String: Any] = [
            "id": id, "node_id": "R_kgDO\(id)", "name": String(fullName.split(separator: "/").last ?? "r"), "full_name": fullName,
            "private": true, "owner": user(owner, id: 9000 + id, type: "Organization"), "html_url": "https://github.com/\(fullName)",
            "description": "Services, tools and libraries of \(fullName)", "fork": false, "url": api,
            "created_at": "2021-03-04T10:11:12Z", "updated_at": "2026-11-30T08:00:00Z", "pushed_at": "2026-11-30T08:00:00Z",
            "git_url": "git://github.com/\(fullName).git", "ssh_url": "git@github.com:\(fullName).git",
            "clone_url": "https://github.com/\(fullName).git", "svn_url": "https://github.com/\(fullName)", "homepage": NSNull(),
            "size": 48213, "stargazers_count": 12, "watchers_count": 12, "language": "Swift", "has_issues": true, "has_projects": true,
            "has_downloads": true, "has_wiki": false, "has_pages": false, "has_discussions": false, "forks_count": 3, "mirror_url": NSNull(),
            "archived": false, "disabled": false, "open_issues_count": 17, "license": NSNull(), "allow_forking": false,
            "is_template": false, "web_commit_signoff_required": false, "topics": ["backend", "swift"], "visibility": "private",
            "forks": 3, "open_issues": 17, "watchers": 12, "default_branch": "main", "allow_squash_merge": true,
            "allow_merge_commit": false, "allow_rebase_merge": true, "allow_auto_merge": false, "delete_branch_on_merge": true,
            "allow_update_branch": true, "use_squash_pr_title_as_default": true, "squash_merge_commit_message": "PR_BODY",
            "squash_merge_commit_title": "PR_TITLE", "merge_commit_message": "PR_TITLE", "merge_commit_title": "MERGE_MESSAGE",
        ]
        for (name, suffix) in [("forks_url", "/forks"), ("keys_url", "/keys{/key_id}"), ("collaborators_url", "/collaborators{/collaborator}"),
                               ("teams_url", "/teams"), ("hooks_url", "/hooks"), ("issue_events_url", "/issues/events{/number}"),
                               ("events_url", "/events"), ("assignees_url", "/assignees{/user}"), ("branches_url", "/branches{/branch}"),
                               ("tags_url", "/tags"), ("blobs_url", "/git/blobs{/sha}"), ("git_tags_url", "/git/tags{/sha}"),
                               ("git_refs_url", "/git/refs{/sha}"), ("trees_url", "/git/trees{/sha}"), ("statuses_url", "/statuses/{sha}"),
                               ("languages_url", "/languages"), ("stargazers_url", "/stargazers"), ("contributors_url", "/contributors"),
                               ("subscribers_url", "/subscribers"), ("subscription_url", "/subscription"), ("commits_url", "/commits{/sha}"),
                               ("git_commits_url", "/git/commits{/sha}"), ("comments_url", "/comments{/number}"),
                               ("issue_comment_url", "/issues/comments{/number}"), ("contents_url", "/contents/{+path}"),
                               ("compare_url", "/compare/{base}...{head}"), ("merges_url", "/merges"), ("archive_url", "/{archive_format}{/ref}"),
                               ("downloads_url", "/downloads"), ("issues_url", "/issues{/number}"), ("pulls_url", "/pulls{/number}"),
                               ("milestones_url", "/milestones{/number}"), ("notifications_url", "/notifications{?since,all,participating}"),
                               ("labels_url", "/labels{/name}"), ("releases_url", "/releases{/id}"), ("deployments_url", "/deployments")] {
            object[name] = api + suffix
        }
        return object
    }

    /// The delivery body; `action` `opened` starts a review, `labeled` is stored and ignored.
    static func pullRequest(action: String, number: Int, head: String, base: String, repoID: Int, repoName: String,
                            targetBytes: Int = 23_000) -> Data {
        let repo = repository(id: repoID, fullName: repoName)
        let author = user("octocat", id: 583231)
        let api = "https://api.github.com/repos/\(repoName)"
        func make(description: String) -> Data {
            var pull: [String: Any] = [
                "url": "\(api)/pulls/\(number)", "id": 2_000_000_000 + number, "node_id": "PR_kwDO\(number)",
                "html_url": "https://github.com/\(repoName)/pull/\(number)", "diff_url": "https://github.com/\(repoName)/pull/\(number).diff",
                "patch_url": "https://github.com/\(repoName)/pull/\(number).patch", "issue_url": "\(api)/issues/\(number)",
                "number": number, "state": "open", "locked": false, "title": "Refactor the request pipeline (#\(number))",
                "user": author, "body": description, "created_at": "2026-11-30T09:00:00Z", "updated_at": "2026-11-30T09:05:00Z",
                "closed_at": NSNull(), "merged_at": NSNull(), "merge_commit_sha": NSNull(), "assignee": NSNull(), "assignees": [],
                "requested_reviewers": [user("hubot", id: 1_000_001)], "requested_teams": [],
                "labels": [["id": 1, "node_id": "LA_1", "url": "\(api)/labels/review", "name": "review", "color": "0e8a16", "default": false,
                            "description": "Ready for review"]],
                "milestone": NSNull(), "draft": false, "commits_url": "\(api)/pulls/\(number)/commits",
                "review_comments_url": "\(api)/pulls/\(number)/comments", "review_comment_url": "\(api)/pulls/comments{/number}",
                "comments_url": "\(api)/issues/\(number)/comments", "statuses_url": "\(api)/statuses/\(head)",
                "head": ["label": "octocat:feature-\(number)", "ref": "feature-\(number)", "sha": head, "user": author, "repo": repo],
                "base": ["label": "octo-org:main", "ref": "main", "sha": base, "user": repo["owner"]!, "repo": repo],
                "_links": ["self": ["href": "\(api)/pulls/\(number)"], "html": ["href": "https://github.com/\(repoName)/pull/\(number)"],
                           "issue": ["href": "\(api)/issues/\(number)"], "comments": ["href": "\(api)/issues/\(number)/comments"],
                           "review_comments": ["href": "\(api)/pulls/\(number)/comments"],
                           "review_comment": ["href": "\(api)/pulls/comments{/number}"], "commits": ["href": "\(api)/pulls/\(number)/commits"],
                           "statuses": ["href": "\(api)/statuses/\(head)"]],
                "author_association": "MEMBER", "auto_merge": NSNull(), "active_lock_reason": NSNull(), "merged": false,
                "mergeable": NSNull(), "rebaseable": NSNull(), "mergeable_state": "unknown", "merged_by": NSNull(), "comments": 0,
                "review_comments": 0, "maintainer_can_modify": false, "commits": 3, "additions": 1200, "deletions": 800, "changed_files": 20,
            ]
            pull["head"] = ["label": "octocat:feature-\(number)", "ref": "feature-\(number)", "sha": head, "user": author, "repo": repo]
            var object: [String: Any] = [
                "action": action, "number": number, "pull_request": pull, "repository": repo,
                "organization": ["login": "octo-org", "id": 9001, "node_id": "O_kgDO", "url": "https://api.github.com/orgs/octo-org",
                                 "description": "The Octo organisation"],
                "installation": ["id": 55, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNTU="],
                "sender": author,
            ]
            if action == "labeled" { object["label"] = (pull["labels"] as? [[String: Any]])?.first }
            return try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        }
        let bare = make(description: "")
        let paragraph = "This change moves request parsing out of the handlers and into one pipeline stage, so every route sees the same validated input. "
        var text = ""
        while bare.count + text.utf8.count < targetBytes { text += paragraph }
        return make(description: String(text.utf8.prefix(max(0, targetBytes - bare.count)))!)
    }
}
