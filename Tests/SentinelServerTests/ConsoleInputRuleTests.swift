import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import SentinelCore
@testable import SentinelServer
import SentinelTestSupport
import Testing

@Suite("Console: forms are held to the API's rules for text")
struct ConsoleInputRuleTests {
    @Test("the domain's limits are the API document's: team and workspace names, provider fields, emails")
    func limitsMatchTheDocument() throws {
        let document = try APIDocument.load()
        let validator = SchemaValidator(root: document.root)
        func property(_ operation: String, _ name: String) throws -> JSONValue {
            let body = try #require(document.operations[operation]?.body)
            return try #require(validator.resolve(body)["properties"]?[name])
        }
        #expect(try property("createTeam", "name")["maxLength"] == .int(TeamStore.maxNameLength))
        #expect(try property("createWorkspace", "name")["maxLength"] == .int(WorkspaceService.maxNameLength))
        #expect(try property("renameWorkspace", "name")["maxLength"] == .int(WorkspaceService.maxNameLength))
        #expect(try property("createUser", "email")["maxLength"] == .int(IdentityService.maxEmailLength))
        for (field, longest) in ProviderStore.maxLengths {
            #expect(try property("createProvider", field)["maxLength"] == .int(longest), "\(field)")
        }
        #expect(try property("updateProvider", "api_key")["maxLength"] == .int(ProviderStore.maxLengths["api_key"]!))
    }

    @Test("a form posted as multipart/form-data is a 415, one with broken percent-encoding a 400 and one over 512 KiB a 413, each saying so, not 'form expired', a missing field or a 500")
    func unreadableFormsExplained() async throws {
        let world = try APIWorld()
        let base = "/workspaces/\(world.workspaceA)"
        try await world.console { first in
            let admin = ConsoleSession(client: first.client)
            try await admin.signIn("admin@example.com", APIWorld.password(.admin))
            _ = try await admin.get(base + "/members")
            let csrf = try #require(await admin.csrf)
            let boundary = "sentinel-test-boundary"
            let multipart = "--\(boundary)\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n\(csrf)\r\n"
                + "--\(boundary)\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\ncore\r\n--\(boundary)--\r\n"
            let refused = try await admin.send(.post, base + "/teams", body: multipart, contentType: "multipart/form-data; boundary=\(boundary)")
            #expect(refused.status == .unsupportedMediaType)
            #expect(refused.body.contains("reads forms sent as application/x-www-form-urlencoded"), "\(refused.body)")
            let broken = try await admin.send(.post, base + "/teams", body: "csrf=\(csrf)&name=core%ff%fe")
            #expect(broken.status == .badRequest)
            #expect(broken.body.contains("not valid percent-encoded UTF-8"), "\(broken.body)")
            // A form over the console's 512 KiB: a page saying so (it was a 500).
            let huge = try await admin.send(.post, base + "/teams", body: "csrf=\(csrf)&name=" + String(repeating: "a", count: 600 * 1024))
            #expect(huge.status == .contentTooLarge)
            #expect(huge.body.contains("A console form is at most 512 KiB"), "\(huge.body.prefix(2000))")
            #expect(try await world.teams().isEmpty)
            // The same form, urlencoded as a browser sends it, is taken.
            #expect(try await admin.send(.post, base + "/teams", body: "csrf=\(csrf)&name=core").status == .seeOther)
            #expect(try await world.teams().map(\.name) == ["core"])
        }
    }

    @Test("a form whose bytes are not UTF-8, a settings post without its values or locks, and a parameter given twice on the manifest callback are 400s that store nothing")
    func incompleteOrUnreadableForms() async throws {
        let world = try APIWorld()
        let base = "/workspaces/\(world.workspaceA)"
        try await world.console { first in
            let admin = ConsoleSession(client: first.client)
            try await admin.signIn("admin@example.com", APIWorld.password(.admin))
            _ = try await admin.get(base + "/members")
            let csrf = try #require(await admin.csrf)
            // Raw bytes that are not UTF-8 were read as U+FFFD and saved (a team named `raw��team`).
            let raw = try await admin.send(.post, base + "/teams", bytes: Array("csrf=\(csrf)&name=raw".utf8) + [0xFF, 0xFE] + Array("team".utf8))
            #expect(raw.status == .badRequest && raw.body.contains("not valid percent-encoded UTF-8"), "\(raw.body)")
            #expect(try await world.teams().isEmpty)

            // A settings post without `values` saved an empty version over every setting.
            _ = try await admin.get(base + "/settings")
            #expect(try await admin.post(base + "/settings", ["values": #"{"review.max_comments": 7}"#, "locks": ""]).status == .seeOther)
            let noValues = try await admin.post(base + "/settings", ["locks": ""])
            #expect(noValues.status == .badRequest && noValues.body.contains("Values is required"), "\(noValues.body)")
            let noLocks = try await admin.post(base + "/settings", ["values": "{}"])
            #expect(noLocks.status == .badRequest && noLocks.body.contains("Locked keys is required"), "\(noLocks.body)")
            #expect(try await admin.get(base + "/settings").body.contains("<td><code>review.max_comments</code></td><td>7</td>"))
            // A value of the wrong kind is named by its key, as the API names it (it said "not a JSON object").
            let fraction = try await admin.post(base + "/settings", ["values": #"{"review.max_comments": 10.5}"#, "locks": ""])
            #expect(fraction.status == .badRequest && fraction.body.contains("values.review.max_comments: expected a boolean, integer"), "\(fraction.body)")
            let array = try await admin.post(base + "/settings", ["values": "[1]", "locks": ""])
            #expect(array.status == .badRequest && array.body.contains("not a JSON object of settings"), "\(array.body)")
            // An emptied text area is still an empty object.
            #expect(try await admin.post(base + "/settings", ["values": "  ", "locks": ""]).status == .seeOther)
            #expect(!(try await admin.get(base + "/settings").body.contains("<td><code>review.max_comments</code></td><td>7</td>")))

            // The manifest callback reads its address as every page does (one code was picked silently).
            let twice = try await admin.get(base + "/integrations/manifest/callback?state=a.b.c&code=one&code=two")
            #expect(twice.status == .badRequest && twice.body.contains("code is given 2 times"), "\(twice.body)")

            let css = try await admin.get("/console.css")
            #expect(css.headers[HTTPField.Name("X-Content-Type-Options")!] == "nosniff")
        }
    }

    @Test("signing in over a session ends that session: its token opens no page afterwards")
    func signInOverSession() async throws {
        let world = try APIWorld()
        try await world.console { first in
            let browser = ConsoleSession(client: first.client)
            try await browser.signIn("member@example.com", APIWorld.password(.member))
            let old = try #require(await browser.cookies[Console.sessionCookie])
            #expect(try await browser.get("/workspaces").status == .ok)
            _ = try await browser.get("/sign-in")
            #expect(try await browser.post("/sign-in", ["email": "admin@example.com", "password": APIWorld.password(.admin)]).status == .seeOther)
            let new = try #require(await browser.cookies[Console.sessionCookie])
            #expect(new != old)
            #expect(try await browser.get("/workspaces").status == .ok)
            let stale = ConsoleSession(client: first.client)
            await stale.set(Console.sessionCookie, old)
            #expect(try await stale.get("/workspaces").location == "/sign-in", "the replaced session was ended")
        }
    }

    @Test("forged posts with long or control-character text get a clear error page and store nothing")
    func forgedText() async throws {
        let world = try APIWorld()
        let repo = try await world.addRepository()
        let base = "/workspaces/\(world.workspaceA)"
        try await world.console { first in
            let admin = ConsoleSession(client: first.client)
            try await admin.signIn("admin@example.com", APIWorld.password(.admin))
            _ = try await admin.get(base + "/members")
            let longTeam = try await admin.post(base + "/teams", ["name": long(101)])
            #expect(longTeam.status == .badRequest)
            #expect(longTeam.body.contains("name: must have at most 100 characters"))
            #expect(longTeam.body.contains("<h1>Could not do that</h1>"))
            let controlTeam = try await admin.post(base + "/teams", ["name": "core\u{1B}[31m"])
            #expect(controlTeam.status == .badRequest)
            #expect(controlTeam.body.contains("name: must not contain control characters"))
            let bidiTeam = try await admin.post(base + "/teams", ["name": "core\u{202E}"])
            #expect(bidiTeam.status == .badRequest)
            #expect(bidiTeam.body.contains("name: must not contain bidirectional control characters (U+202E at character 5)"))
            #expect(try await world.teams().isEmpty)
            #expect(try await admin.post(base + "/teams", ["name": long(100)]).status == .seeOther)
            #expect(try await world.teams().map(\.name) == [long(100)])

            let model = try await admin.post(base + "/providers", ["kind": "openai", "api_key": "sk-1", "model": long(201)])
            #expect(model.status == .badRequest)
            #expect(model.body.contains("model: must have at most 200 characters"))
            let key = try await admin.post(base + "/providers", ["kind": "openai", "api_key": "sk-\u{07}bell"])
            #expect(key.status == .badRequest)
            #expect(key.body.contains("api_key: must not contain control characters"))
            let deployment = try await admin.post(base + "/providers", ["kind": "azure-openai", "api_key": "k", "base_url": "https://x.openai.azure.com",
                                                                        "deployment": "d\u{00}"])
            #expect(deployment.status == .badRequest)
            #expect(try await world.providers().isEmpty)

            let settings = try await admin.post(base + "/repositories/\(repo)", ["values": #"{"review.instructions": "ok\u0001"}"#, "locks": ""])
            #expect(settings.status == .badRequest)
            #expect(settings.body.contains("review.instructions: must not contain control characters other than tab and line breaks"))
            let lines = try await admin.post(base + "/repositories/\(repo)", ["values": #"{"review.instructions": "one\ntwo\tthree"}"#, "locks": ""])
            #expect(lines.status == .seeOther)
            let versions = try await world.appliance.supervisor.withWorkspace(world.workspaceA) { actor in
                try await actor.read { db in try PolicyService.history(scope: PolicyService.repositoryScope(repo), limit: 10, in: db) }
            }
            #expect(versions.count == 1)

            let botLogin = try await admin.post(base + "/integrations", ["app_id": "12", "private_key": "not checked first", "webhook_secret": "s3cret-webhook",
                                                                         "bot_login": long(101)])
            #expect(botLogin.status == .badRequest)
            #expect(botLogin.body.contains("bot_login: must have at most 100 characters"))
            let gitlab = try await admin.post(base + "/integrations/gitlab", ["base_url": "https://gitlab.example.com", "token": "glpat-\u{02}x",
                                                                              "webhook_secret": "s3cret-webhook"])
            #expect(gitlab.status == .badRequest)
            #expect(gitlab.body.contains("token: must not contain control characters"))
            // A short webhook secret is said before the instance is called (an unreachable one was reported instead).
            let shortSecret = try await admin.post(base + "/integrations/gitlab", ["base_url": "http://127.0.0.1:1", "token": "glpat-x",
                                                                                   "webhook_secret": "short"])
            #expect(shortSecret.status == .badRequest && shortSecret.body.contains("the webhook secret must be at least 8 bytes"), "\(shortSecret.body)")
            #expect(try await world.appliance.supervisor.withWorkspace(world.workspaceA) { try await world.appliance.integrations.list(in: $0) }
                .allSatisfy { $0.apiURL == "x" })

            let root = ConsoleSession(client: first.client)
            try await root.signIn("root@example.com", "admin password 1")
            _ = try await root.get("/workspaces")
            let workspace = try await root.post("/workspaces", ["name": long(101)])
            #expect(workspace.status == .badRequest)
            #expect(workspace.body.contains("workspace name must be 1 to 100 printable characters"))
            #expect(try await root.post("/workspaces", ["name": "ga\u{7}mma"]).status == .badRequest)
            #expect(try world.appliance.workspaces.list().count == 2)
            let email = try await root.post("/admin/users", ["email": "new\u{01}@example.com", "password": "a long password 1"])
            #expect(email.status == .badRequest)
            #expect(email.body.contains("email: must not contain control characters"))
            let password = try await root.post("/admin/users", ["email": "new@example.com", "password": "a long\u{01}password 1"])
            #expect(password.status == .badRequest)
            #expect(password.body.contains("password: must not contain control characters"))
            #expect(try world.appliance.identity.user(email: "new@example.com") == nil)
        }
    }
}
