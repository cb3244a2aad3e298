import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import SentinelCore
@testable import SentinelServer
import SentinelTestSupport
import Testing

@Suite("Console: GitLab, repository settings, teams, users, attention and health")
struct ConsoleManagementTests {
    @Test("GitLab: admins connect an instance with a checked token and get the hook settings to paste; a refused token stores nothing")
    func gitLab() async throws {
        let gitlab = try await FakeGitLab.start()
        let world = try APIWorld()
        let base = "/workspaces/\(world.workspaceA)"
        try await world.console { first in
            let viewer = ConsoleSession(client: first.client)
            try await viewer.signIn("viewer@example.com", APIWorld.password(.viewer))
            let seen = try await viewer.get(base + "/integrations")
            #expect(!seen.body.contains("Connect GitLab"))
            #expect(try await viewer.post(base + "/integrations/gitlab", ["base_url": gitlab.baseURL.absoluteString, "token": FakeGitLab.token,
                                                                       "webhook_secret": "gitlab-console-secret"]).status == .forbidden)
            let member = ConsoleSession(client: first.client)
            try await member.signIn("member@example.com", APIWorld.password(.member))
            _ = try await member.get(base + "/integrations")
            #expect(try await member.post(base + "/integrations/gitlab", ["base_url": gitlab.baseURL.absoluteString, "token": FakeGitLab.token,
                                                                       "webhook_secret": "gitlab-console-secret"]).status == .forbidden)

            let browser = ConsoleSession(client: first.client)
            try await browser.signIn("admin@example.com", APIWorld.password(.admin))
            let page = try await browser.get(base + "/integrations")
            #expect(page.body.contains("Connect GitLab"))
            #expect(page.body.contains(#"<label for="g_token">"#))
            let fields = ["base_url": gitlab.baseURL.absoluteString, "token": FakeGitLab.token, "webhook_secret": "gitlab-console-secret"]
            #expect(try await browser.post(base + "/integrations/gitlab", fields, csrf: "forged").status == .forbidden)
            let refused = try await browser.post(base + "/integrations/gitlab", fields.merging(["token": "glpat-not-a-token"]) { $1 })
            #expect(refused.status.code >= 400 && refused.status.code < 500, "\(refused.status)")
            #expect(refused.body.contains("401"), "\(refused.body)")
            let none = try await world.appliance.supervisor.withWorkspace(world.workspaceA) { try await world.appliance.integrations.list(in: $0) }
            #expect(none.isEmpty)
            #expect(try await browser.post(base + "/integrations/gitlab", fields.merging(["base_url": "not a url"]) { $1 }).status == .badRequest)

            let added = try await browser.post(base + "/integrations/gitlab", fields)
            #expect(added.status == .seeOther, "\(added.body)")
            let location = try #require(added.location)
            #expect(location.hasPrefix(base + "/integrations/int_"))
            let id = String(location.split(separator: "/").last ?? "")
            let hook = try await browser.get(location)
            #expect(hook.status == .ok)
            #expect(hook.body.contains("Hook settings for GitLab"))
            #expect(hook.body.contains("<code>http://localhost/webhooks/gitlab/\(id)</code>"))
            #expect(hook.body.contains("Merge request events, Comments"))
            #expect(hook.body.contains("none yet"))
            #expect(!hook.body.contains(FakeGitLab.token) && !hook.body.contains("gitlab-console-secret"))
            let stored = try await world.appliance.supervisor.withWorkspace(world.workspaceA) { actor in
                try await world.appliance.integrations.loadGitLab(IntegrationID(id)!, from: actor)
            }
            #expect(stored?.token == FakeGitLab.token)
            #expect(stored?.botUsername == FakeGitLabState.botUser.username)
            // Its last delivery and outcome, on its page and in the list; a viewer may look.
            try await world.appliance.supervisor.withWorkspace(world.workspaceA) { actor in
                try await actor.write { tx in
                    try tx.db.execute(sql: """
                        INSERT INTO deliveries (id, integration_id, event, action, payload, received_at, processed_at, outcome)
                        VALUES ('g-1', ?, 'Merge Request Hook', 'open', x'7b7d', ?, ?, 'queued review run 4 <x>')
                        """, arguments: [id, tx.now.timeIntervalSince1970, tx.now.timeIntervalSince1970])
                }
            }
            let viewed = try await viewer.get(location)
            #expect(viewed.status == .ok)
            #expect(viewed.body.contains("Merge Request Hook.open at "))
            #expect(viewed.body.contains(": queued review run 4 &lt;x&gt;"))
            #expect(viewed.actionForms == 0)
            #expect(try await viewer.get(base + "/integrations").body.contains(": queued review run 4 &lt;x&gt;"))
            #expect(try await viewer.get(base + "/integrations/int_0000000000000000").status == .notFound)

            // Rotating the token in place: admins only, checked against the instance, the same integration afterwards.
            let own = try await browser.get(location)
            #expect(own.body.contains("Rotate credentials") && own.body.contains(#"<label for="r_token">"#), "\(own.body)")
            #expect(!own.body.contains(#"name="private_key""#), "a GitLab integration has no private key to rotate")
            #expect(try await viewer.post(location, ["token": "glpat-console-rotated"]).status == .forbidden)
            #expect(try await browser.post(location, ["token": "glpat-console-rotated"], csrf: "forged").status == .forbidden)
            let empty = try await browser.post(location, ["token": "", "webhook_secret": ""])
            #expect(empty.status == .badRequest && empty.body.contains("nothing to change"), "\(empty.body)")
            let unknown = try await browser.post(location, ["token": "glpat-console-rotated"])
            #expect(unknown.status == .badRequest && unknown.body.contains("401"), "\(unknown.body)")
            await gitlab.state.addToken("glpat-console-rotated", user: FakeGitLabState.botUser)
            let rotated = try await browser.post(location, ["token": "glpat-console-rotated", "webhook_secret": ""])
            #expect(rotated.status == .seeOther && rotated.location == location, "\(rotated.body)")
            let after = try await world.appliance.supervisor.withWorkspace(world.workspaceA) { actor in
                try await world.appliance.integrations.loadGitLab(IntegrationID(id)!, from: actor)
            }
            #expect(after?.token == "glpat-console-rotated")
            #expect(after?.webhookSecret == Data("gitlab-console-secret".utf8), "an empty field keeps what is stored")
            // A secret with spaces at its ends is refused as the API refuses it (it was trimmed and
            // saved as another secret, and every delivery then failed its signature).
            let spaced = try await browser.post(location, ["webhook_secret": "  spaced-secret  "])
            #expect(spaced.status == .badRequest && spaced.body.contains("starts or ends with a space or tab"), "\(spaced.body)")
            #expect(try await world.appliance.supervisor.withWorkspace(world.workspaceA) { actor in
                try await world.appliance.integrations.loadGitLab(IntegrationID(id)!, from: actor)
            }?.webhookSecret == Data("gitlab-console-secret".utf8))

            // Testing the connection: admins only; the findings on the page, the refused token named with its fix.
            #expect(try await browser.get(location).body.contains("Test connection"))
            #expect(!(try await viewer.get(location).body.contains("Test connection")))
            #expect(try await viewer.post(location + "/test", [:]).status == .forbidden)
            #expect(try await browser.post(location + "/test", [:], csrf: "forged").status == .forbidden)
            let passed = try await browser.post(location + "/test", [:])
            #expect(passed.status == .ok, "\(passed.body)")
            #expect(passed.body.contains("Connection test of integration \(id)") && passed.body.contains("Passed: the connection works."), "\(passed.body)")
            #expect(passed.body.contains("accepts the token"), "\(passed.body)")
            await gitlab.state.revokeToken("glpat-console-rotated")
            let failed = try await browser.post(location + "/test", [:])
            #expect(failed.body.contains("Failed: see what to do below.") && failed.body.contains("the token is refused"), "\(failed.body)")
            #expect(!failed.body.contains("glpat-console-rotated"), "the token is never shown")
        }
        await gitlab.stop()
    }

    @Test("AI providers: admins test a provider's key from the console (enabled or not); the refused key is named with its fix")
    func providerTest() async throws {
        let llm = try await FakeLLMServer.start()
        let world = try APIWorld()
        let base = "/workspaces/\(world.workspaceA)"
        let store = ProviderStore(masterKey: world.appliance.integrations.masterKey)
        let provider = try await world.appliance.supervisor.withWorkspace(world.workspaceA) { actor in
            try await store.add(kind: "openai", apiKey: FakeLLMServer.defaultKeys[.openAI]!, model: "gpt-4o-mini", baseURL: llm.openAIBaseURL,
                                by: "test", in: actor)
        }
        try await world.console { first in
            let viewer = ConsoleSession(client: first.client)
            try await viewer.signIn("viewer@example.com", APIWorld.password(.viewer))
            #expect(!(try await viewer.get(base + "/providers").body.contains("/providers/\(provider.id)/test")))
            #expect(try await viewer.post(base + "/providers/\(provider.id)/test", [:]).status == .forbidden)
            let browser = ConsoleSession(client: first.client)
            try await browser.signIn("admin@example.com", APIWorld.password(.admin))
            #expect(try await browser.get(base + "/providers").body.contains("/providers/\(provider.id)/test"))
            let passed = try await browser.post(base + "/providers/\(provider.id)/test", [:])
            #expect(passed.status == .ok && passed.body.contains("Passed: the connection works."), "\(passed.body)")
            #expect(passed.body.contains("answers and accepts its key"), "\(passed.body)")
            _ = try await world.appliance.supervisor.withWorkspace(world.workspaceA) { actor in
                try await store.setEnabled(provider.id, false, by: "test", in: actor)
            }
            await llm.state.setKey("sk-a-key-issued-later-000", for: .openAI)
            let failed = try await browser.post(base + "/providers/\(provider.id)/test", [:])
            #expect(failed.body.contains("Failed: see what to do below.") && failed.body.contains("the key is refused"), "\(failed.body)")
            #expect(failed.body.contains("sentinel provider rotate"), "\(failed.body)")
            #expect(try await browser.post(base + "/providers/prov_nosuchprovider/test", [:]).status == .notFound)
        }
        await llm.stop()
    }

    @Test("a repository's page shows its effective configuration with each value's source; admins save its settings, others see no form")
    func repositorySettings() async throws {
        let world = try APIWorld()
        let repo = try await world.addRepository("acme/<script>x</script>")
        let removed = try await world.addRepository("acme/gone")
        try await world.appliance.supervisor.withWorkspace(world.workspaceA) { actor in
            try await actor.write { tx in
                try tx.db.execute(sql: "UPDATE repositories SET removed = 1 WHERE id = ?", arguments: [removed])
                try PolicyService.saveVersion(scope: PolicyService.workspaceScope, values: ["review.max_comments": .int(7)], locks: [],
                                              by: "owner@example.com", in: &tx)
            }
        }
        let base = "/workspaces/\(world.workspaceA)"
        try await world.console { first in
            let viewer = ConsoleSession(client: first.client)
            try await viewer.signIn("viewer@example.com", APIWorld.password(.viewer))
            let list = try await viewer.get(base + "/repositories")
            #expect(list.body.contains(#"href="\#(base)/repositories/\#(repo)""#))
            let page = try await viewer.get(base + "/repositories/\(repo)")
            #expect(page.status == .ok)
            #expect(page.body.contains("<h1>acme/&lt;script&gt;x&lt;/script&gt;</h1>"))
            #expect(!page.body.contains("<script"))
            #expect(page.body.contains("<td><code>review.max_comments</code></td><td>7</td><td>workspace</td>"))
            #expect(page.body.contains("No repository settings saved yet"))
            #expect(page.actionForms == 1, "only the form that tries a .sentinel.yml (nothing is saved)")
            #expect(page.body.contains(#"action="\#(base)/repositories/\#(repo)/preview""#))
            #expect(try await viewer.post(base + "/repositories/\(repo)", ["values": "{}"]).status == .forbidden)
            // Trying a .sentinel.yml: its keys in the file layer, its problems listed, the text given back escaped.
            let tried = try await viewer.post(base + "/repositories/\(repo)/preview",
                                              ["file": "version: 1\nreview:\n  min_severity: high\n  instructions: \"<b>x</b>\"\n"])
            #expect(tried.status == .ok, "\(tried.body)")
            #expect(tried.body.contains("Effective configuration with the file below"))
            #expect(tried.body.contains("<td><code>review.min_severity</code></td><td>high</td><td>file</td>"), "\(tried.body)")
            #expect(tried.body.contains("The file has no problems."))
            #expect(!tried.body.contains("<b>x</b>") && tried.body.contains("&lt;b&gt;x&lt;/b&gt;"))
            let broken = try await viewer.post(base + "/repositories/\(repo)/preview", ["file": "version: 1\nreview:\n  min_severity: urgent\n"])
            #expect(broken.status == .ok)
            #expect(broken.body.contains("<li><code>.sentinel.yml:3:"), "\(broken.body)")
            #expect(broken.body.contains("<td><code>review.min_severity</code></td><td>low</td><td>builtin</td>"), "a file with errors is left out")
            #expect(try await viewer.get(base + "/repositories/\(removed)").status == .notFound)
            #expect(try await viewer.get(base + "/repositories/999").status == .notFound)

            let member = ConsoleSession(client: first.client)
            try await member.signIn("member@example.com", APIWorld.password(.member))
            _ = try await member.get(base + "/repositories/\(repo)")
            #expect(try await member.post(base + "/repositories/\(repo)", ["values": #"{"review.max_comments": 3}"#]).status == .forbidden)

            let admin = ConsoleSession(client: first.client)
            try await admin.signIn("admin@example.com", APIWorld.password(.admin))
            let form = try await admin.get(base + "/repositories/\(repo)")
            #expect(form.body.contains(#"<form method="post" action="\#(base)/repositories/\#(repo)""#))
            let values = #"{"review.max_comments": 3, "review.min_severity": "high"}"#
            #expect(try await admin.post(base + "/repositories/\(repo)", ["values": values], csrf: "forged").status == .forbidden)
            let refused = try await admin.post(base + "/repositories/\(repo)", ["values": "[1]", "locks": "review.max_comments"])
            #expect(refused.status == .badRequest)
            // Back on the repository's page with the error and what was typed (a page of its own lost it).
            #expect(refused.body.contains(#"<textarea id="values" name="values" rows="8">[1]</textarea>"#) && refused.body.contains(#"value="review.max_comments""#),
                    "\(refused.body)")
            #expect(refused.body.contains(#"<p class="error" role="alert">"#) && refused.body.contains("Try a .sentinel.yml"))
            let saved = try await admin.post(base + "/repositories/\(repo)", ["values": values, "locks": "review.min_severity"])
            #expect(saved.status == .seeOther)
            #expect(saved.location == base + "/repositories/\(repo)")
            let after = try await admin.get(base + "/repositories/\(repo)")
            #expect(after.body.contains("<td><code>review.max_comments</code></td><td>3</td><td>repository</td>"))
            #expect(after.body.contains("<td><code>review.min_severity</code></td><td>high</td><td>repository</td><td>by repository</td>"))
            #expect(after.body.contains("saved by admin@example.com"))
            let version = try await world.appliance.supervisor.withWorkspace(world.workspaceA) { actor in
                try await actor.read { db in try PolicyService.latest(scope: PolicyService.repositoryScope(repo), in: db) }
            }
            #expect(version?.values["review.max_comments"] == .int(3))
            #expect(version?.locks == ["review.min_severity"])
            // The workspace's own settings are untouched.
            #expect(try await admin.get(base + "/settings").body.contains("<td><code>review.max_comments</code></td><td>7</td><td>workspace</td>"))
            #expect(!after.body.contains("Saved but not applied"))
            // Once the workspace locks a key the repository sets, its page says the saved value does not apply (it said nothing).
            #expect(try await admin.post(base + "/settings", ["values": #"{"review.max_comments": 7}"#, "locks": "review.max_comments"]).status == .seeOther)
            let locked = try await admin.get(base + "/repositories/\(repo)")
            #expect(locked.body.contains("Saved but not applied") && locked.body.contains(
                "<li>review.max_comments is locked by workspace defaults; the value 3 from repository settings was ignored and 7 stays in effect</li>"), "\(locked.body)")
            // A .sentinel.yml tried against the lock: what it cannot set is listed (the API's preview said so; this page did not).
            let against = try await admin.post(base + "/repositories/\(repo)/preview", ["file": "version: 1\nreview:\n  max_comments: 99\n"])
            #expect(against.body.contains("Not applied (a lock keeps the locked value in effect)") && against.body.contains(
                "<li>review.max_comments is locked by workspace defaults; the value 99 from .sentinel.yml was ignored and 7 stays in effect</li>"), "\(against.body)")
        }
    }

    @Test("teams: admins put members in teams and take them out; a viewer sees no such buttons and a forged post is refused")
    func teamMembership() async throws {
        let world = try APIWorld()
        let team = try await world.appliance.supervisor.withWorkspace(world.workspaceA) { actor in
            try await actor.write { tx in try TeamStore.create(name: "<b>core</b>", by: "test", in: &tx).id }
        }
        let memberID = world.members[.member]!.0.id
        let outsider = try world.appliance.identity.createUser(email: "outsider@example.com", password: "outsider password", isAdmin: false)
        let base = "/workspaces/\(world.workspaceA)"
        @Sendable func teamMembers() async throws -> [String] {
            try await world.appliance.supervisor.withWorkspace(world.workspaceA) { actor in
                try await actor.read { db in try TeamStore.find(team, in: db)?.members ?? [] }
            }
        }
        try await world.console { first in
            let viewer = ConsoleSession(client: first.client)
            try await viewer.signIn("viewer@example.com", APIWorld.password(.viewer))
            let seen = try await viewer.get(base + "/members")
            #expect(seen.actionForms == 0)
            #expect(seen.body.contains("&lt;b&gt;core&lt;/b&gt;"))
            #expect(try await viewer.post(base + "/teams/\(team)/members", ["user_id": memberID]).status == .forbidden)
            #expect(try await teamMembers().isEmpty)

            let admin = ConsoleSession(client: first.client)
            try await admin.signIn("admin@example.com", APIWorld.password(.admin))
            let page = try await admin.get(base + "/members")
            #expect(page.body.contains(#"<label for="add-\#(team)">Add to &lt;b&gt;core&lt;/b&gt;</label>"#))
            #expect(page.body.contains(#"<option value="\#(memberID)">member@example.com</option>"#))
            #expect(try await admin.post(base + "/teams/\(team)/members", ["user_id": memberID], csrf: "forged").status == .forbidden)
            #expect(try await admin.post(base + "/teams/\(team)/members", ["user_id": outsider.id]).status == .notFound)
            #expect(try await admin.post(base + "/teams/999/members", ["user_id": memberID]).status == .notFound)
            #expect(try await admin.post(base + "/teams/\(team)/members", ["user_id": memberID]).status == .seeOther)
            #expect(try await teamMembers() == [memberID])
            let after = try await admin.get(base + "/members")
            #expect(after.body.contains("Take member@example.com out of &lt;b&gt;core&lt;/b&gt;"))
            #expect(!after.body.contains(#"<option value="\#(memberID)">"#))
            #expect(try await viewer.get(base + "/members").actionForms == 0)
            #expect(try await admin.post(base + "/teams/\(team)/members/\(memberID)/remove").status == .seeOther)
            #expect(try await teamMembers().isEmpty)
            let audit = try await admin.get(base + "/audit")
            #expect(audit.body.contains("TeamMemberAdded") && audit.body.contains("TeamMemberRemoved"))
        }
    }

    @Test("admin users: disable and enable a user, reset a password (the old one stops working); nobody else may")
    func userAdministration() async throws {
        let world = try APIWorld()
        let member = world.members[.member]!.0
        _ = try world.appliance.identity.createUser(email: "<script>x</script>@example.com", password: "a long password 2", isAdmin: false)
        try await world.console { first in
            let owner = ConsoleSession(client: first.client)
            try await owner.signIn("owner@example.com", APIWorld.password(.owner))
            _ = try await owner.get("/workspaces")
            #expect(try await owner.post("/admin/users/\(member.id)/disable").status == .forbidden)
            #expect(try await owner.post("/admin/users/\(member.id)/password", ["password": "a brand new password"]).status == .forbidden)
            #expect(try world.appliance.identity.user(id: member.id)?.isDisabled == false)

            let admin = ConsoleSession(client: first.client)
            try await admin.signIn("root@example.com", "admin password 1")
            let users = try await admin.get("/admin/users")
            #expect(users.body.contains("Disable member@example.com"))
            #expect(!users.body.contains("<script>") && users.body.contains("Disable &lt;script&gt;x&lt;/script&gt;@example.com"))
            #expect(!users.body.contains("Disable root@example.com"), "no button to disable oneself")
            #expect(!users.body.contains("New password for root@example.com"), "one's own password changes on the account page, with the current one")
            #expect(try await admin.post("/admin/users/\(world.admin.id)/password", ["password": "a brand new password"]).status == .forbidden)
            #expect(users.body.contains(#"<label for="pw-\#(member.id)">New password for member@example.com</label>"#))
            #expect(try await admin.post("/admin/users/\(member.id)/disable", csrf: "forged").status == .forbidden)

            let signedIn = ConsoleSession(client: first.client)
            try await signedIn.signIn("member@example.com", APIWorld.password(.member))
            #expect(try await signedIn.get("/workspaces").status == .ok)
            #expect(try await admin.post("/admin/users/\(member.id)/disable").status == .seeOther)
            #expect(try world.appliance.identity.user(id: member.id)?.isDisabled == true)
            #expect(try await admin.get("/admin/users").body.contains("Enable member@example.com"))
            #expect(try await signedIn.get("/workspaces").location == "/sign-in", "a disabled user's session stops working")
            #expect(try await ConsoleSession(client: first.client).signIn("member@example.com", APIWorld.password(.member)).status == .unauthorized)
            #expect(try await admin.post("/admin/users/\(member.id)/enable").status == .seeOther)
            #expect(try world.appliance.identity.user(id: member.id)?.isDisabled == false)

            let short = try await admin.post("/admin/users/\(member.id)/password", ["password": "short"])
            #expect(short.status == .badRequest)
            #expect(try await admin.post("/admin/users/\(member.id)/password", ["password": "a brand new password"]).status == .seeOther)
            #expect(try await ConsoleSession(client: first.client).signIn("member@example.com", APIWorld.password(.member)).status == .unauthorized)
            #expect(try await ConsoleSession(client: first.client).signIn("member@example.com", "a brand new password").status == .seeOther)
            #expect(try await admin.post("/admin/users/usr_nobody/disable").status == .notFound)
            #expect(try await admin.post("/admin/users/\(member.id)/explode").status == .notFound)
            // The last active admin cannot be disabled, even by a forged-free post of their own.
            #expect(try await admin.post("/admin/users/\(world.admin.id)/disable").status == .conflict)
        }
    }

    @Test("the overview's 'needs attention' names integrations whose webhooks keep failing authentication and providers with an open circuit")
    func attention() async throws {
        let world = try APIWorld()
        let signals = OperationalSignals(control: world.appliance.control)
        let integration = IntegrationID("int_aaaaaaaaaaaaaaaa")!
        let now = Date()
        try signals.recordAuthFailures(3, integrationID: integration, workspaceID: world.workspaceA, at: now.addingTimeInterval(-60))
        try signals.recordAuthFailures(2, integrationID: IntegrationID("int_bbbbbbbbbbbbbbbb")!, workspaceID: world.workspaceB, at: now)
        try signals.circuitOpened(workspaceID: world.workspaceA.rawValue, providerID: "prv_<open>", at: now, retryAt: now.addingTimeInterval(3_600))
        try signals.circuitOpened(workspaceID: world.workspaceA.rawValue, providerID: "prv_closed", at: now.addingTimeInterval(-120),
                                  retryAt: now.addingTimeInterval(-60))
        let base = "/workspaces/\(world.workspaceA)"
        try await world.console { browser in
            try await browser.signIn("viewer@example.com", APIWorld.password(.viewer))
            let page = try await browser.get(base)
            #expect(page.body.contains("Integration int_aaaaaaaaaaaaaaaa: 3 webhook deliveries refused for their signature or token"))
            #expect(!page.body.contains("int_bbbbbbbbbbbbbbbb"), "another workspace's integration")
            #expect(page.body.contains("AI provider prv_&lt;open&gt;&#39;s circuit is open until") || page.body.contains("AI provider prv_&lt;open&gt;"))
            #expect(!page.body.contains("prv_closed"))
            #expect(!page.body.contains("Nothing needs attention."))
            // A delivery accepted after the refusals: the secret matches again.
            try await world.appliance.supervisor.withWorkspace(world.workspaceA) { actor in
                try await actor.write { tx in
                    try tx.db.execute(sql: """
                        INSERT INTO deliveries (id, integration_id, event, payload, received_at) VALUES ('d-ok', ?, 'ping', x'7b7d', ?)
                        """, arguments: [integration.rawValue, now.timeIntervalSince1970])
                }
            }
            let later = try await browser.get(base)
            #expect(!later.body.contains("int_aaaaaaaaaaaaaaaa"))
            #expect(later.body.contains("prv_&lt;open&gt;"))
        }
    }

    @Test("admin health: readiness, queue depth per priority, open workspace files, disk free, TLS certificate expiry, last export")
    func health() async throws {
        let world = try APIWorld { $0.server.tlsEnabled = true }
        _ = try SelfSignedCertificate.ensure(in: world.appliance.dataDirectory.tlsDirectory, hostname: "localhost")
        let supervisor = world.appliance.supervisor
        try await supervisor.withWorkspace(world.workspaceA) { actor in
            try await actor.write { tx in
                for (priority, n) in [(JobPriority.critical, 2), (.bulk, 1)] {
                    for _ in 0..<n { try tx.enqueue(JobRequest(kind: "test.later", priority: priority, runAt: Date(timeIntervalSince1970: 4_102_444_800))) }
                }
            }
        }
        _ = try await supervisor.withWorkspace(world.workspaceB) { _ in true }
        // Both files closed: the page opens the one with queued jobs, not the idle one.
        await supervisor.closeIdle(now: .now + .seconds(86_400))
        #expect(await supervisor.openWorkspaceIDs.isEmpty)
        try await world.console { browser in
            try await browser.signIn("root@example.com", "admin password 1")
            let before = try await browser.get("/admin")
            #expect(before.status == .ok)
            #expect(before.body.contains("<tr><td>critical</td><td>2</td></tr><tr><td>normal</td><td>0</td></tr><tr><td>low</td><td>0</td></tr><tr><td>bulk</td><td>1</td></tr>"))
            #expect(await supervisor.openWorkspaceIDs == [world.workspaceA], "a workspace without queued jobs is not opened for the page")
            #expect(before.body.contains("<dt>Open workspace files</dt><dd>"))
            #expect(before.body.contains("<dt>Disk free</dt><dd>") && !before.body.contains("<dt>Disk free</dt><dd>unknown"))
            #expect(before.body.contains("days)</dd>"), "the certificate's expiry with the days left")
            #expect(before.body.contains("<dt>Last analytics export</dt><dd>none yet (the nightly export runs at 02:00 UTC)</dd>"))
            #expect(before.body.contains("<dt>Readiness</dt><dd"))
            let exporter = AnalyticsExporter(dataDirectory: world.appliance.dataDirectory, control: world.appliance.control,
                                             opener: DatabaseOpener(config: world.appliance.config))
            let manifest = try exporter.export()
            let after = try await browser.get("/admin")
            #expect(after.body.contains("<dt>Last analytics export</dt><dd>\(manifest.createdAt): complete, \(manifest.events) events (\(manifest.file))</dd>"))
        }
    }

    @Test("without TLS the health page says so instead of a certificate date")
    func healthWithoutTLS() async throws {
        let world = try APIWorld { $0.export.enabled = false }
        try await world.console { browser in
            try await browser.signIn("root@example.com", "admin password 1")
            let page = try await browser.get("/admin")
            #expect(page.body.contains("<dt>TLS certificate expires</dt><dd>TLS is off (plain HTTP)</dd>"))
            #expect(page.body.contains("none (the nightly export is off)"))
        }
    }
}
