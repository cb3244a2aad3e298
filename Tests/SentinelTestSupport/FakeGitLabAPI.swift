import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import SentinelCore

/// One API call as the routes hand it to the state: the path split into percent-decoded segments
/// after `/api/v4` (so `group%2Fsub%2Fproject` is one segment), query, token headers and body.
struct FakeGitLabCall: Sendable {
    var method: String
    var segments: [String]
    var rawPath: String
    var query: [String: String]
    /// Every value of `refs[]` (the merge-base call repeats it).
    var refs: [String] = []
    var privateToken: String?
    var authorization: String?
    var contentType: String?
    var body: Data
}

struct FakeGitLabAnswer: Sendable {
    var status: Int
    var headers: [(String, String)]
    var body: Data

    static func json(_ status: Int, _ object: Any, headers: [(String, String)] = []) -> FakeGitLabAnswer {
        FakeGitLabAnswer(status: status, headers: headers, body: (try? JSONSerialization.data(withJSONObject: object)) ?? Data("{}".utf8))
    }

    /// GitLab's `{"message": ...}` error body.
    static func message(_ status: Int, _ text: String) -> FakeGitLabAnswer { json(status, ["message": text]) }
    /// Grape's `{"error": ...}` body (parameter validation, unknown routes).
    static func error(_ status: Int, _ text: String) -> FakeGitLabAnswer { json(status, ["error": text]) }
}

/// A line of a GitLab diff: added lines have no old number, removed lines no new number. `oldPos`
/// and `newPos` are the counters GitLab builds line codes from.
struct FakeGitLabDiffLine {
    enum Kind { case added, removed, context }
    var kind: Kind
    var oldLine: Int?
    var newLine: Int?
    var oldPos: Int
    var newPos: Int
}

struct FakeGitLabHunk {
    var oldStart: Int, oldCount: Int, newStart: Int, newCount: Int
}

enum FakeGitLabDiff {
    /// Parses GitLab's `diff` text, independently of Sentinel's own diff parser.
    static func parse(_ diff: String) -> (lines: [FakeGitLabDiffLine], hunks: [FakeGitLabHunk]) {
        var lines: [FakeGitLabDiffLine] = []
        var hunks: [FakeGitLabHunk] = []
        var old = 0, new = 0
        let all = diff.split(separator: "\n", omittingEmptySubsequences: false)
        for (index, raw) in all.enumerated() {
            let line = String(raw)
            if line.hasPrefix("@@") {
                let parts = line.split(separator: " ")
                func range(_ part: Substring) -> (Int, Int) {
                    let numbers = part.dropFirst().split(separator: ",")
                    let start = Int(numbers.first ?? "") ?? 1
                    let count = numbers.count > 1 ? (Int(numbers[1]) ?? 1) : 1
                    return (start, count)
                }
                if parts.count >= 3, parts[1].hasPrefix("-"), parts[2].hasPrefix("+") {
                    let (os, oc) = range(parts[1]), (ns, nc) = range(parts[2])
                    old = os; new = ns
                    hunks.append(FakeGitLabHunk(oldStart: os, oldCount: oc, newStart: ns, newCount: nc))
                } else {
                    old = max(old, 1); new = max(new, 1)
                }
                continue
            }
            if line.hasPrefix("\\") { continue }
            if line.hasPrefix("+") {
                lines.append(FakeGitLabDiffLine(kind: .added, oldLine: nil, newLine: new, oldPos: old, newPos: new)); new += 1
            } else if line.hasPrefix("-") {
                lines.append(FakeGitLabDiffLine(kind: .removed, oldLine: old, newLine: nil, oldPos: old, newPos: new)); old += 1
            } else if line.hasPrefix(" ") || (line.isEmpty && index < all.count - 1 && !hunks.isEmpty) {
                lines.append(FakeGitLabDiffLine(kind: .context, oldLine: old, newLine: new, oldPos: old, newPos: new)); old += 1; new += 1
            }
        }
        return (lines, hunks)
    }

    /// The new-minus-old offset of unchanged lines around `oldLine` when it lies outside every hunk
    /// (GitLab unfolds the diff to comment there), or nil when it lies inside one.
    static func unfoldOffset(hunks: [FakeGitLabHunk], oldLine: Int) -> (offset: Int, afterLastHunk: Bool)? {
        var offset = 0
        for hunk in hunks {
            if oldLine < hunk.oldStart { return (hunk.newStart - hunk.oldStart, false) }
            if oldLine < hunk.oldStart + hunk.oldCount { return nil }
            offset = (hunk.newStart + hunk.newCount) - (hunk.oldStart + hunk.oldCount)
        }
        return (offset, true)
    }
}

extension FakeGitLabState {
    static func routeKey(method: String, segments s: [String]) -> String {
        switch (method, s.count) {
        case ("GET", 1) where s[0] == "user": return "GET user"
        case ("GET", 2) where s[0] == "personal_access_tokens" && s[1] == "self": return "GET token"
        case (_, 2) where s[0] == "projects": return "\(method) project"
        case (_, 3) where s[0] == "projects" && s[2] == "merge_requests": return "\(method) merge_requests"
        case (_, 4) where s[0] == "projects" && s[2] == "merge_requests": return "\(method) merge_request"
        case (_, 5) where s[0] == "projects" && s[2] == "merge_requests": return "\(method) \(s[4])"
        case (_, 4) where s[0] == "projects" && s[2] == "repository" && s[3] == "compare": return "\(method) compare"
        case (_, 4) where s[0] == "projects" && s[2] == "repository" && s[3] == "merge_base": return "\(method) merge_base"
        case (_, 6) where s[0] == "projects" && s[2] == "repository" && s[3] == "files" && s[5] == "raw": return "\(method) file"
        case (_, 4) where s[0] == "projects" && s[2] == "statuses": return "\(method) statuses"
        case (_, 6) where s[0] == "projects" && s[2] == "repository" && s[3] == "commits" && s[5] == "statuses": return "\(method) statuses"
        case (_, 6) where s[0] == "projects" && s[2] == "repository" && s[3] == "commits" && s[5] == "merge_requests": return "\(method) commit_merge_requests"
        case (_, 5) where s[0] == "projects" && s[2] == "members" && s[3] == "all": return "\(method) member"
        default: return "\(method) unknown"
        }
    }

    // MARK: dispatch

    func handle(_ call: FakeGitLabCall) -> FakeGitLabAnswer {
        let route = Self.routeKey(method: call.method, segments: call.segments)
        let known: Set<String> = ["GET user", "GET project", "GET merge_requests", "GET merge_request", "GET diffs", "GET changes", "GET versions",
                                  "GET compare", "GET file", "GET notes", "POST notes", "GET discussions", "POST discussions",
                                  "POST statuses", "GET statuses", "GET member", "GET merge_base", "GET token", "GET commit_merge_requests"]
        guard known.contains(route) else { return .error(404, "404 Not Found") }
        applyPendingPushes(route)
        if route == "GET diffs" && !diffsEndpointAvailable { return .error(404, "404 Not Found") }

        // Authentication first (401), then the token's scope (403), as GitLab's API guard does.
        let tokenText = call.privateToken ?? call.authorization.flatMap { $0.hasPrefix("Bearer ") ? String($0.dropFirst(7)) : nil }
        guard let tokenText, let token = tokens[tokenText] else {
            reject("\(route): no valid token"); return .message(401, "401 Unauthorized")
        }
        if token.revoked {
            reject("\(route): revoked token")
            return .json(401, ["error": "invalid_token", "error_description": "Token was revoked. You have to re-authorize from the user."])
        }
        if token.expired {
            reject("\(route): expired token")
            return .json(401, ["error": "invalid_token", "error_description": "Token is expired. You can either do re-authorization or token refresh."])
        }
        var allowed: Set<String> = ["api"]
        if call.method == "GET" { allowed.insert("read_api") }
        if route == "GET user" { allowed.insert("read_user") }
        guard !token.scopes.isDisjoint(with: allowed) else {
            reject("\(route): token scopes \(token.scopes.sorted()) lack \(allowed.sorted())")
            return .json(403, ["error": "insufficient_scope",
                               "error_description": "The request requires higher privileges than provided by the access token.",
                               "scope": allowed.sorted().joined(separator: " ")])
        }
        let user = token.user
        if route == "GET user" { return .json(200, userJSON(user, full: true)) }
        if route == "GET token" {
            // GitLab 15.5+: the token's own description (personal, project and group access tokens).
            return .json(200, ["id": 42, "name": "sentinel", "revoked": false, "created_at": Self.time(Date(timeIntervalSince1970: 1_700_000_000)),
                               "description": "", "scopes": token.scopes.sorted(), "user_id": user.id, "last_used_at": Self.time(Date()),
                               "active": true, "expires_at": token.expiresAt.map { $0 as Any } ?? NSNull()])
        }

        guard let project = findProject(call.segments[1]) else { return .message(404, "404 Project Not Found") }
        let s = call.segments
        switch route {
        case "GET project": return .json(200, projectJSON(project))
        case "GET merge_requests": return listMergeRequests(project, call: call)
        case "GET compare": return compare(project, call.query)
        case "GET merge_base": return mergeBase(project, call.refs)
        case "GET file": return file(project, path: s[4], ref: call.query["ref"])
        case "POST statuses": return postStatus(project, sha: s[3], params: params(call), user: user)
        case "GET statuses": return getStatuses(project, sha: s[4], call: call)
        case "GET commit_merge_requests":
            // The merge requests whose commits hold this one (the head of each, here).
            return .json(200, mergeRequests.values.filter { $0.project == project.id && $0.headSHA == s[4] }.sorted { $0.iid < $1.iid }
                .map { mergeRequestJSON($0, project: project) })
        case "GET member": return member(project, userID: s[4])
        default: break
        }
        // Merge request routes.
        guard let iid = Int(s[3]) else { return .error(400, "merge_request_iid is invalid") }
        guard let mr = mergeRequests[Self.key(project.id, iid)] else {
            return .message(404, route.hasSuffix("notes") || route.hasSuffix("discussions") ? "404 MergeRequest Not Found" : "404 Not found")
        }
        switch route {
        case "GET merge_request": return .json(200, mergeRequestJSON(mr, project: project))
        case "GET diffs":
            // Since 15.7 GitLab lists the diffs it stored: at most the instance's limit.
            return paginate(mr.diffReady ? mr.files.prefix(changesFileLimit).map(diffJSON) : [], call: call)
        case "GET changes":
            var object = mergeRequestJSON(mr, project: project)
            let files = mr.diffReady ? mr.files : []
            object["changes"] = files.prefix(changesFileLimit).map(diffJSON)
            object["overflow"] = files.count > changesFileLimit
            object["changes_count"] = files.count > changesFileLimit ? "\(changesFileLimit)+" : String(files.count)
            return .json(200, object)
        case "GET versions":
            let versions: [[String: Any]] = mr.diffReady ? mr.versions.reversed().map { v in
                ["id": v.id, "head_commit_sha": v.headSHA, "base_commit_sha": v.baseSHA, "start_commit_sha": v.startSHA,
                 "created_at": Self.time(v.createdAt), "merge_request_id": mr.id, "state": "collected", "real_size": String(v.files.count)]
            } : []
            return .json(200, versions)
        case "GET notes":
            var notes = self.notes(project: project.id, iid: iid)
            if call.query["sort"] != "asc" { notes.reverse() }
            return paginate(notes.map { noteJSON($0, mr: mr) }, call: call)
        case "POST notes":
            let p = params(call)
            guard let raw = p["body"] as? String else { return .error(400, "body is missing") }
            guard !raw.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                return .message(400, "400 Bad request - Note {:note=>[\"can't be blank\"]}")
            }
            // Quick actions run as the token's user and leave the note; a note of commands only is
            // not created: 202 with what the commands changed (Notes API).
            let (body, commands) = FakeGitLabQuickActions.extract(raw)
            runQuickActions(commands, project: project.id, iid: iid, user: user)
            if body.isEmpty && !commands.isEmpty {
                return .json(202, ["commands_changes": [String: Any](), "summary": commands.map { "Ran /\($0[0])" }])
            }
            let note = FakeGitLabNote(id: newID(), discussionID: Self.discussionID(), body: body, author: user, system: false,
                                      type: nil, position: nil, createdAt: Date())
            discussionsByMR[Self.key(project.id, iid), default: []].append(FakeGitLabDiscussion(id: note.discussionID, individualNote: true, notes: [note]))
            return .json(201, noteJSON(note, mr: mr))
        case "GET discussions":
            return paginate(discussions(project: project.id, iid: iid).map { discussionJSON($0, mr: mr) }, call: call)
        case "POST discussions":
            return postDiscussion(mr, params: params(call), user: user)
        default:
            return .error(404, "404 Not Found")
        }
    }

    // MARK: projects, files, compare, members

    /// `GET /projects/:id/merge_requests`: filtered by `state` (`opened`, `closed`, `merged`, `locked`,
    /// `all`; default all; anything else 400 as Grape answers), newest first, paginated, each item
    /// without `diff_refs` and `changes_count` (only the single merge request has them).
    func listMergeRequests(_ project: FakeGitLabProject, call: FakeGitLabCall) -> FakeGitLabAnswer {
        let state = call.query["state"] ?? "all"
        guard ["opened", "closed", "merged", "locked", "all"].contains(state) else { return .error(400, "state does not have a valid value") }
        let items = mergeRequests.values.filter { $0.project == project.id && (state == "all" || $0.state == state) }
            .sorted { $0.iid > $1.iid }
            .map { mr -> Any in
                var object = mergeRequestJSON(mr, project: project)
                object["diff_refs"] = nil
                object["changes_count"] = nil
                return object
            }
        return paginate(items, call: call)
    }

    func findProject(_ idOrPath: String) -> FakeGitLabProject? {
        if let id = Int64(idOrPath) { return projects[id] }
        return projects.values.first { $0.path == idOrPath }
    }

    func file(_ project: FakeGitLabProject, path: String, ref: String?) -> FakeGitLabAnswer {
        let ref = ref ?? project.defaultBranch
        guard let text = fileContents["\(project.id)@\(ref):\(path)"] else { return .message(404, "404 File Not Found") }
        return FakeGitLabAnswer(status: 200, headers: [("Content-Type", "text/plain; charset=utf-8"), ("X-Gitlab-File-Path", path),
                                                       ("X-Gitlab-Ref", ref)], body: Data(text.utf8))
    }

    func compare(_ project: FakeGitLabProject, _ query: [String: String]) -> FakeGitLabAnswer {
        guard let from = query["from"] else { return .error(400, "from is missing") }
        guard let to = query["to"] else { return .error(400, "to is missing") }
        let web = "\(instanceURL)/\(project.path)/-/compare/\(from)...\(to)"
        if from == to {
            guard commitRefs["\(project.id)@\(to)"] != nil || comparisons.keys.contains(where: { $0.hasPrefix("\(project.id)@") && $0.hasSuffix("...\(to)") }) else {
                return .message(404, "404 Ref Not Found")
            }
            return .json(200, ["commit": commitJSON(to), "commits": [Any](), "diffs": [Any](), "compare_timeout": false, "compare_same_ref": true, "web_url": web])
        }
        guard let comparison = comparisons["\(project.id)@\(from)...\(to)"] else {
            reject("compare \(from)...\(to) not set"); return .message(404, "404 Ref Not Found")
        }
        return .json(200, ["commit": commitJSON(comparison.commits.last ?? to), "commits": comparison.commits.map(commitJSON),
                           "diffs": comparison.files.map(diffJSON), "compare_timeout": false, "compare_same_ref": false, "web_url": web])
    }

    /// `GET /projects/:id/repository/merge_base?refs[]=a&refs[]=b`: a commit is the merge base of
    /// itself and of any commit a comparison was set up to (an ancestor); two commits with no such
    /// relation (a force-push rewrote history) have no base the fake knows: 404, as for unknown refs.
    func mergeBase(_ project: FakeGitLabProject, _ refs: [String]) -> FakeGitLabAnswer {
        guard refs.count == 2 else { return .message(400, "Provide at least 2 refs") }
        let (a, b) = (refs[0], refs[1])
        if a == b || comparisons["\(project.id)@\(a)...\(b)"] != nil { return .json(200, commitJSON(a)) }
        if comparisons["\(project.id)@\(b)...\(a)"] != nil { return .json(200, commitJSON(b)) }
        return .message(404, "404 Commit Not Found")
    }

    func member(_ project: FakeGitLabProject, userID: String) -> FakeGitLabAnswer {
        guard let id = Int64(userID), let member = members[project.id]?[id] else { return .message(404, "404 Not found") }
        var object = userJSON(member.user, full: false)
        object["access_level"] = member.accessLevel
        object["created_at"] = Self.time(Date())
        object["expires_at"] = NSNull()
        object["membership_state"] = "active"
        return .json(200, object)
    }

    // MARK: discussions

    func postDiscussion(_ mr: FakeGitLabMergeRequest, params p: [String: Any], user: FakeGitLabUser) -> FakeGitLabAnswer {
        guard let raw = p["body"] as? String else { return .error(400, "body is missing") }
        // A thread's first note runs its quick actions like any note (Notes::CreateService).
        let (body, commands) = FakeGitLabQuickActions.extract(raw)
        var position: FakeGitLabPosition?
        if let raw = p["position"] {
            guard let object = raw as? [String: Any] else { return .error(400, "position is invalid") }
            // Grape's parameter checks come first.
            var missing: [String] = []
            for key in ["base_sha", "start_sha", "head_sha", "position_type"] where Self.string(object[key]) == nil {
                missing.append("position[\(key)] is missing")
            }
            guard missing.isEmpty else { reject("discussion position: \(missing)"); return .error(400, missing.joined(separator: ", ")) }
            let type = Self.string(object["position_type"])!
            guard ["text", "image", "file"].contains(type) else {
                reject("position_type \(type)"); return .error(400, "position[position_type] does not have a valid value")
            }
            var lines: [String: Int] = [:]
            for key in ["old_line", "new_line"] {
                guard let value = object[key], !(value is NSNull) else { continue }
                guard let line = Self.int(value) else { reject("\(key) not an integer"); return .error(400, "position[\(key)] is invalid") }
                lines[key] = line
            }
            position = FakeGitLabPosition(baseSHA: Self.string(object["base_sha"])!, startSHA: Self.string(object["start_sha"])!,
                                          headSHA: Self.string(object["head_sha"])!, oldPath: Self.string(object["old_path"]),
                                          newPath: Self.string(object["new_path"]), positionType: type,
                                          oldLine: lines["old_line"], newLine: lines["new_line"], lineCode: nil)
        }
        // Then the note's own validations, reported as GitLab does: "400 Bad request - Note {...}".
        var errors: [(String, [String])] = []
        if body.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { errors.append(("note", ["can't be blank"])) }
        if var pos = position {
            let located = locate(pos, in: mr)
            if pos.positionType == "text" {
                if let code = located.lineCode { pos.lineCode = code } else { errors.append(("line_code", ["can't be blank", "must be a valid line code"])) }
            } else if !located.fileFound {
                errors.append(("line_code", ["can't be blank", "must be a valid line code"]))
            }
            if !mr.diffReady { errors.append(("noteable", ["doesn't support new-style diff notes"])) }
            let complete = (pos.newPath ?? pos.oldPath) != nil && (pos.positionType != "text" || pos.oldLine != nil || pos.newLine != nil)
            if !complete { errors.append(("position", ["is incomplete"])) }
            position = pos
        }
        // The commands run before the note is saved: also for a thread of commands only, which then has no note.
        if errors.isEmpty || (body.isEmpty && !commands.isEmpty) { runQuickActions(commands, project: mr.project, iid: mr.iid, user: user) }
        guard errors.isEmpty else {
            let text = errors.map { key, messages in
                ":\(key)=>[" + messages.map { "\"\($0)\"" }.joined(separator: ", ") + "]"
            }.joined(separator: ", ")
            reject("discussion refused: \(text) position \(String(describing: position))")
            return .message(400, "400 Bad request - Note {\(text)}")
        }
        let note = FakeGitLabNote(id: newID(), discussionID: Self.discussionID(), body: body, author: user, system: false,
                                  type: position == nil ? "DiscussionNote" : "DiffNote", position: position, createdAt: Date())
        let discussion = FakeGitLabDiscussion(id: note.discussionID, individualNote: false, notes: [note])
        discussionsByMR[Self.key(mr.project, mr.iid), default: []].append(discussion)
        return .json(201, discussionJSON(discussion, mr: mr))
    }

    /// Finds the position's line the way GitLab does: the diff between the position's SHAs (here: the
    /// merge request version with those refs), the file by old or new path, then the diff line carrying
    /// exactly this `old_line`/`new_line` pair; an unchanged line outside the hunks (both numbers,
    /// matching offset) is accepted as GitLab unfolds the diff there.
    func locate(_ pos: FakeGitLabPosition, in mr: FakeGitLabMergeRequest) -> (fileFound: Bool, lineCode: String?) {
        guard mr.diffReady, let version = mr.versions.last(where: {
            $0.headSHA == pos.headSHA && $0.baseSHA == pos.baseSHA && $0.startSHA == pos.startSHA
        }) else { return (false, nil) }
        let paths = [pos.oldPath, pos.newPath].compactMap { $0 }
        guard let file = version.files.first(where: { paths.contains($0.newPath) || paths.contains($0.oldPath) }) else { return (false, nil) }
        let path = file.newPath
        let parsed = FakeGitLabDiff.parse(file.diff)
        if let line = parsed.lines.first(where: { $0.oldLine == pos.oldLine && $0.newLine == pos.newLine }) {
            return (true, Self.lineCode(path: path, old: line.oldPos, new: line.newPos))
        }
        guard let old = pos.oldLine, let new = pos.newLine, old >= 1, new >= 1, !file.newFile, !file.deletedFile,
              let gap = FakeGitLabDiff.unfoldOffset(hunks: parsed.hunks, oldLine: old), new - old == gap.offset else { return (true, nil) }
        if gap.afterLastHunk {
            // Past the last hunk the line must exist in the new file, which only a stored file text can tell.
            guard let text = fileContents["\(mr.project)@\(version.headSHA):\(path)"] else { return (true, nil) }
            let count = text.split(separator: "\n", omittingEmptySubsequences: false).count - (text.hasSuffix("\n") ? 1 : 0)
            guard new <= count else { return (true, nil) }
        }
        return (true, Self.lineCode(path: path, old: old, new: new))
    }

    // MARK: commit statuses

    /// GitLab's `Ci::CreateCommitStatusService`: a pending or running status of the same name, ref and
    /// user is moved through the commit-status state machine (refusals are 400 "Cannot transition
    /// status via :event from :state ..."); otherwise a new status is created (a finished one of the
    /// same name becomes `retried`), which accepts every state.
    func postStatus(_ project: FakeGitLabProject, sha: String, params p: [String: Any], user: FakeGitLabUser) -> FakeGitLabAnswer {
        guard let state = Self.string(p["state"]) else { return .error(400, "state is missing") }
        let states = ["pending", "running", "success", "failed", "canceled", "skipped"]
        guard states.contains(state) else { reject("status state \(state)"); return .error(400, "state does not have a valid value") }
        guard let branch = commitRefs["\(project.id)@\(sha)"] else { reject("status on unknown commit \(sha)"); return .message(404, "404 Commit Not Found") }
        // GitLab's `ref = params[:ref] || first pipeline's ref || a branch containing the commit`:
        // a fork's head is in the project only through refs/merge-requests/N/head, no branch.
        guard let ref = Self.string(p["ref"]) ?? (branch.isEmpty ? nil : branch) else {
            return .message(404, "404 References for commit Not Found")
        }
        let name = Self.string(p["name"]) ?? Self.string(p["context"]) ?? "default"
        let description = Self.string(p["description"])
        let targetURL = Self.string(p["target_url"])
        if let targetURL, !(targetURL.hasPrefix("http://") || targetURL.hasPrefix("https://")) {
            reject("status target_url \(targetURL)")
            return .message(400, "400 Bad request - {:target_url=>[\"is blocked: Only allowed schemes are http, https\"]}")
        }
        if let index = commitStatuses.lastIndex(where: {
            $0.project == project.id && $0.sha == sha && $0.ref == ref && $0.name == name && $0.author.id == user.id
                && ($0.status == "pending" || $0.status == "running") && !$0.retried
        }) {
            let from = commitStatuses[index].status
            let refused: String? = switch (from, state) {
            case ("pending", "pending"), ("running", "pending"): "enqueue"
            case ("running", "running"): "run"
            case ("running", "skipped"): "skip"
            default: nil
            }
            if let event = refused {
                let text = "Cannot transition status via :\(event) from :\(from) (Reason(s): Status cannot transition via \"\(event)\")"
                reject("status \(name) on \(sha): \(text)")
                return .message(400, text)
            }
            commitStatuses[index].status = state
            if let description { commitStatuses[index].description = description }
            if let targetURL { commitStatuses[index].targetURL = targetURL }
            recordState(project: project.id, sha: sha, name: name, state: state)
            return .json(201, statusJSON(commitStatuses[index]))
        }
        for i in commitStatuses.indices where commitStatuses[i].project == project.id && commitStatuses[i].sha == sha
            && commitStatuses[i].name == name && commitStatuses[i].ref == ref && !commitStatuses[i].retried {
            commitStatuses[i].retried = true
        }
        let status = FakeGitLabCommitStatus(id: newID(), project: project.id, sha: sha, ref: ref, name: name, status: state,
                                            description: description, targetURL: targetURL, author: user, retried: false, createdAt: Date())
        commitStatuses.append(status)
        recordState(project: project.id, sha: sha, name: name, state: state)
        return .json(201, statusJSON(status))
    }

    func getStatuses(_ project: FakeGitLabProject, sha: String, call: FakeGitLabCall) -> FakeGitLabAnswer {
        guard commitRefs["\(project.id)@\(sha)"] != nil else { return .message(404, "404 Commit Not Found") }
        var list = call.query["all"] == "true" ? allStatuses(project: project.id, sha: sha) : statuses(project: project.id, sha: sha)
        if let ref = call.query["ref"] { list = list.filter { $0.ref == ref } }
        if let name = call.query["name"] { list = list.filter { $0.name == name } }
        return paginate(list.map(statusJSON), call: call)
    }

    // MARK: pagination

    /// GitLab's offset pagination: `page`, `per_page` (default 20, at most 100) and the `X-Page`,
    /// `X-Per-Page`, `X-Next-Page`, `X-Prev-Page`, `X-Total`, `X-Total-Pages` and `Link` headers.
    func paginate(_ items: [Any], call: FakeGitLabCall) -> FakeGitLabAnswer {
        let perPage = min(100, max(1, Int(call.query["per_page"] ?? "") ?? 20))
        let page = max(1, Int(call.query["page"] ?? "") ?? 1)
        let totalPages = max(1, (items.count + perPage - 1) / perPage)
        let slice = Array(items.dropFirst((page - 1) * perPage).prefix(perPage))
        func link(_ p: Int) -> String {
            var query = call.query
            query["page"] = String(p)
            query["per_page"] = String(perPage)
            let text = query.sorted { $0.key < $1.key }
                .map { "\($0.key)=\($0.value.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? $0.value)" }
                .joined(separator: "&")
            return "\(instanceURL)\(call.rawPath)?\(text)"
        }
        var links: [String] = []
        if page > 1 { links.append("<\(link(page - 1))>; rel=\"prev\"") }
        if page < totalPages { links.append("<\(link(page + 1))>; rel=\"next\"") }
        links.append("<\(link(1))>; rel=\"first\"")
        links.append("<\(link(totalPages))>; rel=\"last\"")
        var headers: [(String, String)] = [
            ("X-Page", String(page)), ("X-Per-Page", String(perPage)), ("X-Total", String(items.count)),
            ("X-Total-Pages", String(totalPages)), ("X-Next-Page", page < totalPages ? String(page + 1) : ""),
            ("X-Prev-Page", page > 1 ? String(page - 1) : ""), ("Link", links.joined(separator: ", ")),
        ]
        // A proxy in front that drops `X-*` headers leaves `Link` alone.
        if dropsPageHeaders { headers.removeAll { $0.0.hasPrefix("X-") } }
        return .json(200, slice, headers: headers)
    }

    // MARK: JSON shapes

    func userJSON(_ user: FakeGitLabUser, full: Bool) -> [String: Any] {
        var object: [String: Any] = ["id": user.id, "username": user.username, "name": user.name, "state": "active", "locked": false,
                                     "avatar_url": "\(instanceURL)/uploads/-/system/user/avatar/\(user.id)/avatar.png",
                                     "web_url": "\(instanceURL)/\(user.username)"]
        if full {
            object["bot"] = user.bot
            object["created_at"] = "2024-01-01T00:00:00.000Z"
            object["public_email"] = NSNull()
            object["bio"] = ""
        }
        return object
    }

    func projectJSON(_ project: FakeGitLabProject) -> [String: Any] {
        let parts = project.path.split(separator: "/")
        let namespace = parts.dropLast().joined(separator: "/")
        return ["id": project.id, "name": String(parts.last ?? ""), "path": String(parts.last ?? ""),
                "path_with_namespace": project.path, "name_with_namespace": parts.joined(separator: " / "),
                "namespace": ["id": 1, "name": String(parts.dropLast().last ?? ""), "path": String(parts.dropLast().last ?? ""),
                              "kind": "group", "full_path": namespace],
                "web_url": "\(instanceURL)/\(project.path)", "default_branch": project.defaultBranch,
                "http_url_to_repo": "\(instanceURL)/\(project.path).git", "visibility": "private"]
    }

    func mergeRequestJSON(_ mr: FakeGitLabMergeRequest, project: FakeGitLabProject) -> [String: Any] {
        var diffRefs: Any = NSNull()
        if mr.diffReady { diffRefs = ["base_sha": mr.baseSHA, "head_sha": mr.headSHA, "start_sha": mr.startSHA] }
        return ["id": mr.id, "iid": mr.iid, "project_id": mr.project, "title": mr.title, "description": mr.description,
                "state": mr.state, "created_at": "2024-01-01T00:00:00.000Z", "updated_at": Self.time(Date()),
                "target_branch": mr.targetBranch, "source_branch": mr.sourceBranch, "author": userJSON(mr.author, full: false),
                "source_project_id": mr.sourceProjectID, "target_project_id": mr.project, "labels": [Any](),
                "draft": mr.isDraft, "work_in_progress": mr.isDraft, "merge_status": mr.diffReady ? "can_be_merged" : "checking",
                "detailed_merge_status": mr.draft ? "draft_status" : "mergeable", "sha": mr.headSHA, "merge_commit_sha": NSNull(),
                "user_notes_count": notes(project: mr.project, iid: mr.iid).count,
                "changes_count": Self.orNull(mr.diffReady ? (mr.files.count > changesFileLimit ? "\(changesFileLimit)+" : String(mr.files.count)) : nil),
                "web_url": "\(instanceURL)/\(project.path)/-/merge_requests/\(mr.iid)",
                "references": ["short": "!\(mr.iid)", "relative": "!\(mr.iid)", "full": "\(project.path)!\(mr.iid)"],
                "diff_refs": diffRefs, "has_conflicts": false, "blocking_discussions_resolved": true]
    }

    func diffJSON(_ file: FakeGitLabDiffFile) -> [String: Any] {
        ["old_path": file.oldPath, "new_path": file.newPath, "a_mode": file.aMode, "b_mode": file.bMode, "diff": file.diff,
         "new_file": file.newFile, "renamed_file": file.renamedFile, "deleted_file": file.deletedFile, "generated_file": false]
    }

    func commitJSON(_ sha: String) -> [String: Any] {
        ["id": sha, "short_id": String(sha.prefix(8)), "title": "Commit \(sha.prefix(8))", "message": "Commit \(sha.prefix(8))\n",
         "author_name": "Alice Example", "author_email": "alice@example.com", "created_at": "2024-01-01T00:00:00.000+00:00",
         "parent_ids": [Any]()]
    }

    func noteJSON(_ note: FakeGitLabNote, mr: FakeGitLabMergeRequest) -> [String: Any] {
        var object: [String: Any] = ["id": note.id, "type": Self.orNull(note.type), "body": note.body, "attachment": NSNull(),
                                     "author": userJSON(note.author, full: false), "created_at": Self.time(note.createdAt),
                                     "updated_at": Self.time(note.createdAt), "system": note.system, "noteable_id": mr.id,
                                     "noteable_type": "MergeRequest", "project_id": mr.project, "noteable_iid": mr.iid,
                                     "resolvable": note.type != nil, "confidential": false, "internal": false]
        if note.type != nil {
            object["resolved"] = false
            object["resolved_by"] = NSNull()
        }
        if let position = note.position {
            object["commit_id"] = position.headSHA
            object["position"] = ["base_sha": position.baseSHA, "start_sha": position.startSHA, "head_sha": position.headSHA,
                                  "old_path": Self.orNull(position.oldPath ?? position.newPath), "new_path": Self.orNull(position.newPath ?? position.oldPath),
                                  "position_type": position.positionType, "old_line": Self.orNull(position.oldLine), "new_line": Self.orNull(position.newLine),
                                  "line_code": Self.orNull(position.lineCode)]
        }
        return object
    }

    func discussionJSON(_ discussion: FakeGitLabDiscussion, mr: FakeGitLabMergeRequest) -> [String: Any] {
        ["id": discussion.id, "individual_note": discussion.individualNote, "notes": discussion.notes.map { noteJSON($0, mr: mr) }]
    }

    func statusJSON(_ status: FakeGitLabCommitStatus) -> [String: Any] {
        ["id": status.id, "sha": status.sha, "ref": status.ref, "status": status.status, "name": status.name,
         "target_url": Self.orNull(status.targetURL), "description": Self.orNull(status.description),
         "created_at": Self.time(status.createdAt), "started_at": NSNull(), "finished_at": NSNull(), "allow_failure": false,
         "coverage": NSNull(), "pipeline_id": 7000 + status.project, "author": userJSON(status.author, full: false)]
    }

    // MARK: parameters

    /// Query parameters, a JSON body and a form body merged, as Grape reads them.
    func params(_ call: FakeGitLabCall) -> [String: Any] {
        var result: [String: Any] = call.query
        if call.contentType?.contains("application/x-www-form-urlencoded") == true {
            let text = String(decoding: call.body, as: UTF8.self)
            var position: [String: Any] = [:]
            for pair in text.split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1).map { String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String($0) }
                guard let key = kv.first else { continue }
                let value = kv.count > 1 ? kv[1] : ""
                if key.hasPrefix("position["), key.hasSuffix("]") { position[String(key.dropFirst(9).dropLast())] = value } else { result[key] = value }
            }
            if !position.isEmpty { result["position"] = position }
        } else if !call.body.isEmpty, let object = try? JSONSerialization.jsonObject(with: call.body) as? [String: Any] {
            result.merge(object) { _, body in body }
        }
        return result
    }

    static func string(_ value: Any?) -> String? {
        switch value {
        case let s as String: return s.isEmpty ? nil : s
        case let n as NSNumber: return n.stringValue
        default: return nil
        }
    }

    static func int(_ value: Any) -> Int? {
        if let i = value as? Int { return i }
        if let s = value as? String { return Int(s) }
        if let d = value as? Double, d == d.rounded() { return Int(d) }
        return nil
    }

    static func time(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }

    static func orNull(_ value: Any?) -> Any { value ?? NSNull() }
}

struct FakeGitLabRoutes {
    let state: FakeGitLabState

    func respond(_ answer: FakeGitLabAnswer) -> Response {
        var headers: HTTPFields = [:]
        headers[.contentType] = "application/json"
        for (name, value) in answer.headers {
            if let field = HTTPField.Name(name) { headers[field] = value }
        }
        return Response(status: .init(code: answer.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: answer.body)))
    }

    /// GitLab's rate-limit answer (Rack::Attack): 429, plain "Retry later", `Retry-After` and `RateLimit-*` headers.
    func fault(_ route: String) async -> Response? {
        guard let fault = await state.takeFault(route) else { return nil }
        switch fault {
        case .status(let code):
            let text = code == 404 ? "404 Not found" : code == 400 ? "400 Bad request" : code == 401 ? "401 Unauthorized"
                : code == 403 ? "403 Forbidden" : code == 409 ? "409 Conflict: Resource lock" : code == 502 ? "502 Bad Gateway" : "500 Internal Server Error"
            return respond(.message(code, text))
        case .rateLimited(let seconds):
            return rateLimited(seconds)
        case .secondaryRateLimit:
            return rateLimited(1)
        case .secondaryRateLimited(let seconds):
            // A throttling proxy in front of GitLab: 403 with `Retry-After`.
            var response = respond(.message(403, "403 Forbidden - You are being rate limited, retry later"))
            response.headers[.retryAfter] = String(seconds)
            return response
        case .delay(let seconds):
            try? await Task.sleep(for: .seconds(seconds))
            return nil
        case .holdUntilRequest(let other):
            if await !FakeFault.hold(until: { await state.requests.contains { $0.route == other } }) { await state.noteExpiredHold(route) }
            return nil
        case .answerLate:
            // Taken only by the GitHub fake's routes that create something.
            return nil
        }
    }

    func rateLimited(_ s: Int) -> Response {
            let reset = Int(Date().timeIntervalSince1970) + s
            return Response(status: .tooManyRequests,
                            headers: [.contentType: "text/plain", .retryAfter: String(s),
                                      HTTPField.Name("RateLimit-Name")!: "throttle_authenticated_api",
                                      HTTPField.Name("RateLimit-Limit")!: "60", HTTPField.Name("RateLimit-Observed")!: "61",
                                      HTTPField.Name("RateLimit-Remaining")!: "0", HTTPField.Name("RateLimit-Reset")!: String(reset)],
                            body: .init(byteBuffer: ByteBuffer(string: "Retry later\n")))
    }

    func call(_ request: Request) async throws -> Response {
        let rawPath = request.uri.path
        var request = request
        let body = Data(buffer: try await request.collectBody(upTo: 10 << 20))
        let prefix = "/api/v4/"
        guard rawPath.hasPrefix(prefix) else { return respond(.error(404, "404 Not Found")) }
        let segments = rawPath.dropFirst(prefix.count).split(separator: "/", omittingEmptySubsequences: false)
            .map { String($0).removingPercentEncoding ?? String($0) }
        var query: [String: String] = [:]
        for (key, value) in request.uri.queryParameters { query[String(key)] = String(value) }
        let method = request.method.rawValue
        let route = FakeGitLabState.routeKey(method: method, segments: segments)
        let target = request.uri.query.map { "\(rawPath)?\($0)" } ?? rawPath
        await state.log(FakeGitLabRequest(method: method, route: route, target: target,
                                          traceparent: request.headers[HTTPField.Name("traceparent")!],
                                          requestID: request.headers[HTTPField.Name("X-Request-ID")!]))
        if let response = await fault(route) { return response }
        let (limitHeaders, refusedFor) = await state.spendRateLimit()
        if let seconds = refusedFor {
            return respond(FakeGitLabAnswer(status: 429, headers: [("Content-Type", "text/plain"), ("Retry-After", String(seconds))] + limitHeaders,
                                            body: Data("Retry later\n".utf8)))
        }
        var answer = await state.handle(FakeGitLabCall(
            method: method, segments: segments, rawPath: rawPath, query: query,
            refs: request.uri.queryParameters.getAll("refs[]").map { String($0) },
            privateToken: request.headers[HTTPField.Name("PRIVATE-TOKEN")!], authorization: request.headers[.authorization],
            contentType: request.headers[.contentType], body: body))
        answer.headers += limitHeaders
        return respond(answer)
    }

    func add(to router: Router<BasicRequestContext>) {
        router.get("/api/v4/**") { request, _ in try await call(request) }
        router.post("/api/v4/**") { request, _ in try await call(request) }
        router.put("/api/v4/**") { request, _ in try await call(request) }
        router.delete("/api/v4/**") { request, _ in try await call(request) }
    }
}
