import AsyncHTTPClient
import _CryptoExtras
import Foundation
import NIOCore
import NIOHTTP1
import SentinelCore
import SentinelServer
import SentinelTestSupport
import Testing

/// Rotating an integration's credentials in place: a GitHub App's new private key, a GitLab token
/// before the old one expires, a new webhook secret. The webhook URL, repositories and history stay.
@Suite("Integration credentials rotated", .serialized)
struct IntegrationRotationTests {
    /// A workspace owner's API call.
    static func api(_ method: HTTPMethod, port: Int, workspace: WorkspaceID, _ path: String, token: String,
                    json: [String: Any]? = nil) async throws -> (Int, String) {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/api/v1/workspaces/\(workspace.rawValue)\(path)")
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        if let json {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: json)))
        }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(20))
        return (Int(response.status.code), String(buffer: try await response.body.collect(upTo: 1 << 20)))
    }

    static func ownerToken(_ appliance: Appliance, _ workspace: WorkspaceID) throws -> String {
        let user = try appliance.identity.createUser(email: "owner-\(UUID().uuidString.prefix(8))@example.com", password: "a long enough password",
                                                     isAdmin: false)
        try appliance.identity.setRole(.owner, userID: user.id, in: workspace)
        return try appliance.identity.createToken(for: user, name: "test", scopes: [.read, .write], expiresInDays: nil).0
    }

    @Test("GitHub: a new private key and webhook secret through the API; the running appliance signs with the new key and verifies with the new secret at once")
    func gitHubKeyAndSecret() async throws {
        let world = try await GitHubWorld()
        let token = try Self.ownerToken(world.appliance, world.workspace)
        func patch(_ body: [String: Any]) async throws -> (Int, String) {
            try await Self.api(.PATCH, port: world.port, workspace: world.workspace, "/integrations/\(world.integration.id)", token: token, json: body)
        }
        // A first review: the appliance holds a client and an installation token for the old key.
        try await world.deliver(event: "pull_request", body: GitHubWorld.pullRequestPayload(action: "opened", head: "aaa111"))
        #expect(await world.waitForRun(state: .completed))

        // The App's admin generates a new key on GitHub and deletes the old one.
        let newKey = try TestRSAKeys.other()
        let newKeyPEM = newKey.pemRepresentation
        await world.github.state.replaceAppKey(publicKeyPEM: newKey.publicKey.pemRepresentation)
        await world.github.state.revokeTokens()

        let damagedCA = "-----BEGIN CERTIFICATE-----\nMIIBnot*base64*at*all\n-----END CERTIFICATE-----\n"
        // Adding an integration refuses a damaged CA bundle too, rather than its first review failing on it.
        let (addStatus, added) = try await Self.api(.POST, port: world.port, workspace: world.workspace, "/integrations", token: token,
                                                    json: ["kind": "github", "app_id": 5, "private_key": newKeyPEM, "webhook_secret": "another-secret-1",
                                                           "ca_bundle": damagedCA])
        #expect(addStatus == 400 && added.contains("holds a certificate that cannot be read"), "\(added)")
        let refusals: [([String: Any], String)] = [
            ([:], "nothing to change"),
            (["token": "glpat-not-for-github"], "a GitHub App integration has no token"),
            (["private_key": "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----"], "not an RSA private key"),
            (["webhook_secret": "short"], "webhook_secret"),
            (["ca_bundle": "no certificate here"], "no PEM certificate"),
            (["ca_bundle": damagedCA], "holds a certificate that cannot be read"),
        ]
        for (body, reason) in refusals {
            let (status, text) = try await patch(body)
            #expect(status == 400 && text.contains(reason), "\(body): \(status) \(text)")
        }
        let rotatedSecret = "rotated-webhook-secret-2"
        let (status, text) = try await patch(["private_key": newKey.pemRepresentation, "webhook_secret": rotatedSecret])
        #expect(status == 200, "\(text)")
        #expect(text.contains(world.integration.id) && text.contains(world.integration.webhookPath), "\(text)")
        #expect(!text.contains("PRIVATE KEY") && !text.contains(rotatedSecret), "credentials are write-only")

        // The old secret is refused, the new one accepted on the same webhook URL.
        await world.github.state.addPull(FakePullRequest(repo: GitHubWorld.repo, number: 8, headSHA: "ccc333", baseSHA: "bbb000", files: GitHubWorld.files))
        let second = GitHubWorld.pullRequestPayload(action: "opened", head: "ccc333", number: 8)
        #expect(try await world.deliver(event: "pull_request", body: second).0 == 401)
        let signed = GitHubWebhookSignature.sign(body: second, secret: Data(rotatedSecret.utf8))
        #expect(try await world.deliver(event: "pull_request", body: second, signature: signed).0 == 202)
        // The second review authenticates with the new key (GitHub refuses the old one now).
        #expect(await world.waitForRun(state: .completed, count: 2))
        #expect(await world.github.state.reviews(on: GitHubWorld.repo, 8).count == 1)

        let (_, audit) = try await Self.api(.GET, port: world.port, workspace: world.workspace, "/audit", token: token)
        #expect(audit.contains("IntegrationCredentialsRotated") && audit.contains("webhook_secret,private_key"), "\(audit)")
        #expect(!audit.contains(rotatedSecret))
        let (_, listed) = try await Self.api(.GET, port: world.port, workspace: world.workspace, "/integrations", token: token)
        #expect(listed.contains(world.integration.id))
        await world.stop()
    }

    @Test("GitLab: a token the instance refuses stores nothing; a new token replaces an expired one and the next review uses it")
    func gitLabToken() async throws {
        let world = try await GitLabWorld()
        let token = try Self.ownerToken(world.appliance, world.workspace)
        func patch(_ body: [String: Any]) async throws -> (Int, String) {
            try await Self.api(.PATCH, port: world.port, workspace: world.workspace, "/integrations/\(world.integration.id)", token: token, json: body)
        }
        let mr = try await world.mergeRequest()
        #expect(try await world.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(action: "open", mr: mr, project: world.project)).0 == 202)
        #expect(await world.waitForFinished(1))
        #expect(await world.summaryNotes().count == 1)

        // The token expires; its successor is made on GitLab.
        await world.gitlab.state.expireToken(FakeGitLab.token)
        let successor = "glpat-sentinel-fake-token-0002"
        await world.gitlab.state.addToken(successor, user: FakeGitLabState.botUser)

        let (refusedStatus, refused) = try await patch(["token": "glpat-unknown-token"])
        #expect(refusedStatus == 400 && refused.contains("401"), "\(refused)")
        #expect(try await patch(["private_key": "-----BEGIN RSA PRIVATE KEY-----"]).1.contains("a GitLab integration has no private key"))
        #expect(try await world.appliance.supervisor.withWorkspace(world.workspace) {
            try await $0.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM events WHERE type = 'IntegrationCredentialsRotated'") ?? 0 }
        } == 0)
        let (status, text) = try await patch(["token": successor])
        #expect(status == 200, "\(text)")
        #expect(!text.contains(successor))

        // New commits: the review runs with the new token (GitLab refuses the expired one).
        await world.gitlab.state.pushMergeRequest(project: world.project.id, iid: 3, headSHA: "ccc222", files: GitLabWorld.files)
        let pushed = try await world.mergeRequest()
        #expect(try await world.deliver("Merge Request Hook", GitLabWebhook.mergeRequest(action: "update", mr: pushed, project: world.project,
                                                                                         oldrev: "aaa111")).0 == 202)
        #expect(await world.waitForFinished(2))
        let runs = try await world.runs()
        #expect(runs.count == 2 && runs.allSatisfy { $0.state == .completed }, "\(runs.map(\.state))")
        await world.stop()
    }

    @Test("GitLab: a CA-bundle change checked with the old token does not undo a token rotated meanwhile (its bot user stays); it is a 409")
    func gitLabRotationsAtOnce() async throws {
        let world = try await GitLabWorld()
        let token = try Self.ownerToken(world.appliance, world.workspace)
        func patch(_ body: [String: Any]) async throws -> (Int, String) {
            try await Self.api(.PATCH, port: world.port, workspace: world.workspace, "/integrations/\(world.integration.id)", token: token, json: body)
        }
        let successor = "glpat-sentinel-fake-token-0003"
        await world.gitlab.state.addToken(successor, user: FakeGitLabUser(id: 777, username: "new-sentinel-bot"))
        // The CA change's check of the stored token is slow; the token change lands meanwhile.
        await world.gitlab.state.inject("GET user", [.delay(1.5)])
        let (certificate, _) = try SelfSignedCertificate.make(hostname: "gitlab.internal")
        async let caChange = patch(["ca_bundle": certificate])
        try await Task.sleep(for: .milliseconds(400))
        let (tokenStatus, tokenText) = try await patch(["token": successor])
        #expect(tokenStatus == 200, "\(tokenText)")
        let (caStatus, caText) = try await caChange
        #expect(caStatus == 409 && caText.contains("changed meanwhile"), "\(caStatus) \(caText)")
        let bot = try await world.appliance.supervisor.withWorkspace(world.workspace) {
            try await $0.read { db in try String.fetchOne(db, sql: "SELECT bot_login FROM integrations WHERE id = ?", arguments: [world.integration.id]) }
        }
        #expect(bot == "new-sentinel-bot")
        await world.stop()
    }

    @Test("from the command line beside a running server: the new webhook secret works on the next delivery, also right after a refused one; the old one is refused")
    func commandLineBesideServe() async throws {
        let dir = TemporaryDirectory("sentinel-rotate")
        defer { dir.cleanup() }
        let setup = try await CommandLineGitHubSetup.make(in: dir, webhookSecret: "first-webhook-secret-1")
        let (data, id, secretFile) = (setup.data, setup.integrationID, setup.secretFile)
        let server = try SentinelProcess.start(["serve", "--data-dir", data, "--host", "127.0.0.1", "--port", "0", "--no-tls"])
        defer { server.kill() }
        let port = try #require(await server.waitForListeningPort())
        func send(_ secret: String) async throws -> Int { try await setup.deliverStar(port: port, secret: secret).status }
        #expect(try await send("first-webhook-secret-1") == 202)  // the server now holds the first secret in its cache

        let nothing = try await SentinelProcess.run(["integration", "rotate", id, "--data-dir", data, "--workspace", "acme"])
        #expect(nothing.status != 0 && nothing.stderr.contains("nothing to change"), "\(nothing.stderr)")
        let notAnID = try await SentinelProcess.run(["integration", "rotate", "github", "--data-dir", data, "--workspace", "acme"])
        #expect(notAnID.status != 0 && notAnID.stderr.contains("is not an integration id"), "\(notAnID.stderr)")
        try "second-webhook-secret-2\n".write(to: secretFile, atomically: true, encoding: .utf8)
        // A refused delivery just before the rotation (the platform still signing with the old
        // secret, say): it spent the once-a-second re-read on the old secret, and the first
        // deliveries signed with the new one were refused for up to a second after.
        #expect(try await send("not-the-webhook-secret") == 401)
        let rotated = try await SentinelProcess.run(["integration", "rotate", id, "--data-dir", data, "--workspace", "acme",
                                                     "--webhook-secret-file", secretFile.path])
        #expect(rotated.status == 0, "\(rotated.stderr)")
        #expect(rotated.stdout.contains("rotated webhook_secret of github integration \(id)"), "\(rotated.stdout)")
        #expect(!rotated.stdout.contains("second-webhook-secret"))

        #expect(try await send("second-webhook-secret-2") == 202)
        #expect(try await send("first-webhook-secret-1") == 401)
        server.terminate()
        #expect(await server.waitForExit(timeout: .seconds(30)) == 0)
    }

    @Test("`integration remove` from the command line: listed no more, its webhooks answer 410, a second remove says there is none")
    func commandLineRemove() async throws {
        let dir = TemporaryDirectory("sentinel-remove")
        defer { dir.cleanup() }
        let setup = try await CommandLineGitHubSetup.make(in: dir, webhookSecret: "first-webhook-secret-1")
        let (data, id) = (setup.data, setup.integrationID)
        let removed = try await SentinelProcess.run(["integration", "remove", id, "--data-dir", data, "--workspace", "acme"])
        #expect(removed.status == 0, "\(removed.stderr)")
        #expect(removed.stdout.contains("removed integration \(id)"), "\(removed.stdout)")
        let list = try await SentinelProcess.run(["integration", "list", "--data-dir", data, "--workspace", "acme"])
        #expect(list.status == 0 && !list.stdout.contains(id), "\(list.stdout)")
        let again = try await SentinelProcess.run(["integration", "remove", id, "--data-dir", data, "--workspace", "acme"])
        #expect(again.status != 0 && again.stderr.contains("no such integration"), "\(again.stderr)")

        let server = try SentinelProcess.start(["serve", "--data-dir", data, "--host", "127.0.0.1", "--port", "0", "--no-tls"])
        defer { server.kill() }
        let port = try #require(await server.waitForListeningPort())
        #expect(try await setup.deliverStar(port: port, secret: "first-webhook-secret-1").status == 410)
        server.terminate()
        #expect(await server.waitForExit(timeout: .seconds(30)) == 0)
    }

    @Test("`integration remove` beside a running server that holds the integration: its webhooks answer 410 within seconds, not after the cache's minute")
    func commandLineRemoveBesideServe() async throws {
        let dir = TemporaryDirectory("sentinel-remove-live")
        defer { dir.cleanup() }
        let setup = try await CommandLineGitHubSetup.make(in: dir, webhookSecret: "first-webhook-secret-1")
        let (data, id) = (setup.data, setup.integrationID)
        let server = try SentinelProcess.start(["serve", "--data-dir", data, "--host", "127.0.0.1", "--port", "0", "--no-tls"])
        defer { server.kill() }
        let port = try #require(await server.waitForListeningPort())
        func send() async throws -> Int { try await setup.deliverStar(port: port, secret: "first-webhook-secret-1").status }
        #expect(try await send() == 202)  // the server now holds the integration in its cache
        #expect(try await send() == 202)

        let removed = try await SentinelProcess.run(["integration", "remove", id, "--data-dir", data, "--workspace", "acme"])
        #expect(removed.status == 0, "\(removed.stderr)")
        // The cache reads control.sqlite's integration revision about once a second; ten seconds
        // leave room for a slow machine and are far from the one minute the cache keeps an entry.
        var statuses: [Int] = []
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            statuses.append(try await send())
            if statuses.last == 410 { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(statuses.last == 410, "\(statuses)")
        server.terminate()
        #expect(await server.waitForExit(timeout: .seconds(30)) == 0)
    }
}
