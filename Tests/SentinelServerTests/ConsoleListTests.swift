import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import SentinelCore
@testable import SentinelServer
import SentinelTestSupport
import Testing

@Suite("Console: providers enabled and deleted, teams deleted, paging and what needs attention")
struct ConsoleListTests {
    @Test("a disabled provider is enabled again; admins delete a provider, which leaves the list and the audit log records it")
    func enableAndDelete() async throws {
        let world = try APIWorld()
        let base = "/workspaces/\(world.workspaceA)"
        try await world.console { first in
            let admin = ConsoleSession(client: first.client)
            try await admin.signIn("admin@example.com", APIWorld.password(.admin))
            _ = try await admin.get(base + "/providers")
            #expect(try await admin.post(base + "/providers", ["kind": "anthropic", "api_key": "sk-ant-1111"]).status == .seeOther)
            let id = try #require(try await world.providers().first?.id)
            #expect(try await admin.post(base + "/providers/\(id)/disable").status == .seeOther)
            #expect(try await world.providers().first?.enabled == false)
            #expect(try await admin.get(base + "/providers").body.contains(#"action="\#(base)/providers/\#(id)/enable""#))
            #expect(try await admin.post(base + "/providers/\(id)/enable").status == .seeOther)
            #expect(try await world.providers().first?.enabled == true)
            let enabled = try await admin.get(base + "/providers")
            #expect(enabled.body.contains("<td>enabled</td>"))
            #expect(enabled.body.contains(#"action="\#(base)/providers/\#(id)/disable""#))

            let member = ConsoleSession(client: first.client)
            try await member.signIn("member@example.com", APIWorld.password(.member))
            #expect(try await member.post(base + "/providers/\(id)/delete").status == .forbidden)
            #expect(try await admin.post(base + "/providers/\(id)/delete", csrf: "forged").status == .forbidden)
            #expect(try await world.providers().count == 1)

            let deleted = try await admin.post(base + "/providers/\(id)/delete")
            #expect(deleted.status == .seeOther)
            #expect(deleted.location == base + "/providers")
            #expect(try await world.providers().isEmpty)
            let page = try await admin.get(base + "/providers")
            #expect(page.body.contains("No AI provider yet"))
            #expect(!page.body.contains(id))
            #expect(try await admin.post(base + "/providers/\(id)/delete").status == .notFound)
            let audit = try await admin.get(base + "/audit")
            #expect(audit.body.contains("ProviderEnabled") && audit.body.contains("ProviderDeleted"))
            #expect(audit.body.contains("<td>ProviderDeleted</td><td>provider:\(id)</td><td>admin@example.com</td>"), "\(audit.body)")
        }
    }

    @Test("admins delete a team; a viewer's forged delete is refused; an unknown team is not found")
    func deleteTeam() async throws {
        let world = try APIWorld()
        let team = try await world.appliance.supervisor.withWorkspace(world.workspaceA) { actor in
            try await actor.write { tx in try TeamStore.create(name: "platform", by: "test", in: &tx).id }
        }
        let base = "/workspaces/\(world.workspaceA)"
        try await world.console { first in
            let viewer = ConsoleSession(client: first.client)
            try await viewer.signIn("viewer@example.com", APIWorld.password(.viewer))
            #expect(!(try await viewer.get(base + "/members").body.contains("Delete team platform")))
            #expect(try await viewer.post(base + "/teams/\(team)/delete").status == .forbidden)
            #expect(try await world.teams().map(\.id) == [team])

            let admin = ConsoleSession(client: first.client)
            try await admin.signIn("admin@example.com", APIWorld.password(.admin))
            #expect(try await admin.get(base + "/members").body.contains("Delete team platform"))
            #expect(try await admin.post(base + "/teams/\(team)/delete", csrf: "forged").status == .forbidden)
            let deleted = try await admin.post(base + "/teams/\(team)/delete")
            #expect(deleted.status == .seeOther)
            #expect(deleted.location == base + "/members")
            #expect(try await world.teams().isEmpty)
            #expect(!(try await admin.get(base + "/members").body.contains("platform")))
            #expect(try await admin.post(base + "/teams/\(team)/delete").status == .notFound)
            #expect(try await admin.post(base + "/teams/abc/delete").status == .notFound)
            #expect(try await admin.get(base + "/audit").body.contains("TeamDeleted"))
        }
    }

    @Test("runs page by 25 and keep the filters on the next page; repositories and the audit log by 50; users by 100")
    func paging() async throws {
        let world = try APIWorld()
        let repo = try await world.addRepository()
        let other = try await world.addRepository("acme/other")
        var added: [Int64] = []
        for pr in 1...26 { added.append(try await world.addQueuedRun(repository: repo, pr: pr)) }
        let runs = added
        _ = try await world.addQueuedRun(repository: other, pr: 1)
        for i in 0..<49 { _ = try await world.addRepository("acme/more-\(i)") }  // 51 repositories
        try await world.appliance.supervisor.withWorkspace(world.workspaceA) { actor in
            try await actor.write { tx in for i in 0..<51 { _ = try TeamStore.create(name: "team \(i)", by: "test", in: &tx) } }
        }
        for i in 0..<96 { _ = try world.appliance.identity.createUser(email: "user\(i)@example.com", password: "a long password 1", isAdmin: false) }
        let base = "/workspaces/\(world.workspaceA)"
        @Sendable func next(_ body: String, _ label: String) -> String? {
            guard let range = body.range(of: #"rel="next">\#(label)</a>"#) else { return nil }
            let before = body[..<range.lowerBound]
            guard let href = before.range(of: #"<a href=""#, options: .backwards) else { return nil }
            return String(before[href.upperBound...].prefix { $0 != "\"" }).replacingOccurrences(of: "&amp;", with: "&")
        }
        try await world.console { first in
            let admin = ConsoleSession(client: first.client)
            try await admin.signIn("admin@example.com", APIWorld.password(.admin))
            let page1 = try await admin.get(base + "/runs?repository=\(repo)&state=queued")
            #expect(page1.body.components(separatedBy: "<tr><td><a href=").count - 1 == 25)
            let more = try #require(next(page1.body, "Older runs"))
            #expect(more == base + "/runs?before=\(runs[1])&repository=\(repo)&state=queued")
            let page2 = try await admin.get(more)
            #expect(page2.status == .ok)
            #expect(page2.body.contains(">#\(runs[0])<"))
            #expect(page2.body.components(separatedBy: "<tr><td><a href=").count - 1 == 1)
            #expect(next(page2.body, "Older runs") == nil)
            #expect(try await admin.get(base + "/runs?pr=1").body.components(separatedBy: "<tr><td><a href=").count - 1 == 2)
            // The filter form's "All" sends empty values: no filter. A value that is not one is a
            // 400 page naming it, never the whole list as if no filter were asked for.
            let all = try await admin.get(base + "/runs?repository=&state=&pr=")
            #expect(all.status == .ok && all.body.components(separatedBy: "<tr><td><a href=").count - 1 == 25)
            for (query, text) in [("state=bogus", "state must be one of queued, "), ("pr=seven", "pr must be a pull request number"),
                                  ("pr=-1", "pr must be a pull request number"), ("repository=acme", "repository must be a repository id"),
                                  ("state=%ff", "state must be one of"), ("before=%E2%80", "before must be a run id"),
                                  ("state=failed&state=queued", "state is given 2 times; give it once.")] {
                let refused = try await admin.get(base + "/runs?" + query)
                #expect(refused.status == .badRequest, "\(query)")
                #expect(refused.body.contains("In this address, \(text)"), "\(query): \(refused.body)")
                #expect(!refused.body.contains("<tr><td><a href="), "\(query): no run is listed")
            }
            #expect(try await admin.get(base + "/repositories?after=first").status == .badRequest)
            #expect(try await admin.get(base + "/audit?after=1e3").status == .badRequest)
            #expect(try await admin.get(base + "/settings?repository=x").status == .badRequest)

            let repos = try await admin.get(base + "/repositories")
            let moreRepos = try #require(next(repos.body, "More repositories"))
            #expect(moreRepos.hasPrefix(base + "/repositories?after="))
            let repos2 = try await admin.get(moreRepos)
            #expect(repos2.body.contains("acme/more-48"))
            #expect(!repos2.body.contains("acme/more-0<") && !repos2.body.contains(">acme/api<"))
            #expect(next(repos2.body, "More repositories") == nil)

            // 51 RepositoryEnabled and 51 TeamCreated events: three pages of 50, oldest first, none twice.
            var auditPages = [try await admin.get(base + "/audit").body]
            while let later = next(auditPages.last!, "Later events"), auditPages.count < 5 {
                #expect(later.hasPrefix(base + "/audit?after="))
                auditPages.append(try await admin.get(later).body)
            }
            let rows = auditPages.map { $0.components(separatedBy: "<tr><td>").count - 1 }
            #expect(auditPages.count == 3)
            #expect(rows.dropLast().allSatisfy { $0 == 50 } && (1...50).contains(rows.last ?? 0), "\(rows)")
            #expect(auditPages.map { $0.components(separatedBy: "TeamCreated").count - 1 }.reduce(0, +) == 51)
            #expect(!auditPages[0].contains("team 50") && auditPages[2].contains("team 50"))

            let root = ConsoleSession(client: first.client)
            try await root.signIn("root@example.com", "admin password 1")
            let users = try await root.get("/admin/users")
            let moreUsers = try #require(next(users.body, "More users"))
            #expect(moreUsers.hasPrefix("/admin/users?after=usr"))
            #expect(try await root.get("/admin/users?after=admin%40example.com").status == .badRequest)
            #expect(try await root.get("/admin/audit?after=last").status == .badRequest)
            let users2 = try await root.get(moreUsers)
            #expect(users2.status == .ok)
            #expect(users2.body.components(separatedBy: "@example.com").count - 1 >= 1)
            #expect(next(users2.body, "More users") == nil)
            let firstEmails = Set(users.body.matches(of: /[a-z0-9]+@example\.com/).map { String($0.output) })
            let secondEmails = Set(users2.body.matches(of: /[a-z0-9]+@example\.com/).map { String($0.output) }).subtracting(["root@example.com"])
            #expect(firstEmails.isDisjoint(with: secondEmails))
            #expect(firstEmails.union(secondEmails).count == 101)
        }
    }

    @Test("the overview's 'needs attention' names failed runs (with their reason), dead jobs and soft limits reached")
    func attention() async throws {
        let world = try APIWorld()
        let repo = try await world.addRepository()
        for i in 1...3 { _ = try await world.addRepository("acme/r\(i)") }  // 4 of the free plan's 5 repositories: past 80%
        let failed = try await world.addQueuedRun(repository: repo, pr: 4)
        try await world.appliance.supervisor.withWorkspace(world.workspaceA) { actor in
            try await actor.write { tx in
                _ = try ReviewRunStore.finish(runID: failed, state: .failed, reason: "GitHub said <no>", label: "platform_refused", in: &tx)
                try tx.db.execute(sql: """
                    INSERT INTO jobs (kind, payload, priority, state, attempts, max_attempts, run_at, last_error, created_at, finished_at)
                    VALUES ('notify.slack', x'7b7d', 1, 'dead', 5, 5, 0, 'refused <403>', 0, 0)
                    """)
            }
        }
        let base = "/workspaces/\(world.workspaceA)"
        try await world.console { browser in
            try await browser.signIn("viewer@example.com", APIWorld.password(.viewer))
            let page = try await browser.get(base)
            #expect(!page.body.contains("Nothing needs attention."))
            #expect(page.body.contains(#"<li><a href="\#(base)/runs/\#(failed)">Run #\#(failed) of acme/api PR #4 failed: GitHub said &lt;no&gt;</a></li>"#))
            #expect(page.body.contains("(notify.slack) is dead after 5 attempts: refused &lt;403&gt;</li>"))
            #expect(page.body.contains("<li>The plan&#39;s repositories limit is nearly reached: 4 of 5</li>")
                || page.body.contains("<li>The plan's repositories limit is nearly reached: 4 of 5</li>"))
            // Past the limit it says so (it read "nearly reached: 6 of 5").
            _ = try await world.addRepository("acme/r4")
            _ = try await world.addRepository("acme/r5")
            try await world.appliance.supervisor.withWorkspace(world.workspaceA) { actor in
                try await actor.write { tx in try tx.db.execute(sql: "UPDATE repositories SET enabled = 1") }
            }
            let past = try await browser.get(base).body
            #expect(past.contains("repositories limit is exceeded: 6 of 5</li>"), "\(past)")
            // A GitLab merge request's failed run is named as GitLab names it (it read "PR #9").
            let project = try await world.addRepository("group/project", kind: "gitlab", apiURL: "https://gitlab.example.com")
            let onGitLab = try await world.addQueuedRun(repository: project, pr: 9)
            try await world.appliance.supervisor.withWorkspace(world.workspaceA) { actor in
                try await actor.write { tx in _ = try ReviewRunStore.finish(runID: onGitLab, state: .failed, reason: "down", label: "job_dead", in: &tx) }
            }
            #expect(try await browser.get(base).body.contains("Run #\(onGitLab) of group/project MR !9 failed: down"))
        }
    }
}
