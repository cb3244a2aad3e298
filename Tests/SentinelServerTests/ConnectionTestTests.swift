import _CryptoExtras
import Foundation
import NIOHTTP1
import SentinelCore
import SentinelServer
import SentinelTestSupport
import Testing

/// "Test connection" for an integration and an AI provider (`testIntegration`, `testProvider`):
/// the online doctor's checks for that one, through the running appliance, answered as findings.
@Suite("Connection tests of integrations and providers", .serialized)
struct ConnectionTestTests {
    static func result(_ text: String) throws -> (ok: Bool, checks: [[String: String]]) {
        let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        let checks = (object["checks"] as? [[String: Any]] ?? []).map { $0.compactMapValues { $0 as? String } }
        return (try #require(object["ok"] as? Bool), checks)
    }

    static func token(_ appliance: Appliance, _ workspace: WorkspaceID, role: WorkspaceRole) throws -> String {
        let user = try appliance.identity.createUser(email: "\(role.rawValue)-\(UUID().uuidString.prefix(8))@example.com",
                                                     password: "a long enough password", isAdmin: false)
        try appliance.identity.setRole(role, userID: user.id, in: workspace)
        return try appliance.identity.createToken(for: user, name: "test", scopes: [.read, .write], expiresInDays: nil).0
    }

    @Test("a GitHub integration: accepted credentials are ok; a key GitHub no longer knows is an error naming the fix, until the key is rotated")
    func gitHubIntegration() async throws {
        let world = try await GitHubWorld()
        let owner = try Self.token(world.appliance, world.workspace, role: .owner)
        func test(_ id: String = world.integration.id, token: String = owner) async throws -> (Int, String) {
            try await IntegrationRotationTests.api(.POST, port: world.port, workspace: world.workspace, "/integrations/\(id)/test", token: token)
        }
        await world.github.state.addInstallation(55, account: "octo-org")
        let (status, text) = try await test()
        #expect(status == 200, "\(text)")
        let healthy = try Self.result(text)
        #expect(healthy.ok, "\(text)")
        #expect(healthy.checks.contains { $0["severity"] == "ok" && $0["message"]?.contains("accepts the App's credentials") == true }, "\(text)")
        #expect(healthy.checks.allSatisfy { $0["message"]?.contains(world.integration.id) == true })

        // The App's admin generated a new key on GitHub and deleted the one Sentinel holds.
        let newKey = try TestRSAKeys.other()
        await world.github.state.replaceAppKey(publicKeyPEM: newKey.publicKey.pemRepresentation)
        let refused = try Self.result(try await test().1)
        #expect(!refused.ok)
        let error = try #require(refused.checks.first { $0["severity"] == "error" }, "\(refused)")
        #expect(error["message"]?.contains("credentials are refused") == true, "\(error)")
        #expect(error["fix"]?.contains("private key") == true, "\(error)")

        let (rotated, rotatedText) = try await IntegrationRotationTests.api(.PATCH, port: world.port, workspace: world.workspace,
                                                                            "/integrations/\(world.integration.id)", token: owner,
                                                                            json: ["private_key": newKey.pemRepresentation])
        #expect(rotated == 200, "\(rotatedText)")
        #expect(try Self.result(try await test().1).ok)

        // Unknown ids answer 404; a member (not an admin) is refused.
        #expect(try await test("int_nosuchintegration0").0 == 404)
        let member = try Self.token(world.appliance, world.workspace, role: .member)
        #expect(try await test(token: member).0 == 403)
        await world.stop()
    }

    @Test("an AI provider: a key the provider accepts is ok, a refused key is an error naming the rotate command; a disabled provider is tested too")
    func provider() async throws {
        let world = try await GitHubWorld()
        let llm = try await FakeLLMServer.start()
        let owner = try Self.token(world.appliance, world.workspace, role: .owner)
        let store = ProviderStore(masterKey: world.appliance.integrations.masterKey)
        let added = try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
            try await store.add(kind: "openai", apiKey: FakeLLMServer.defaultKeys[.openAI]!, model: "gpt-4o-mini", baseURL: llm.openAIBaseURL,
                                by: "test", in: actor)
        }
        func api(_ method: HTTPMethod, _ path: String, json: [String: Any]? = nil) async throws -> (Int, String) {
            try await IntegrationRotationTests.api(method, port: world.port, workspace: world.workspace, path, token: owner, json: json)
        }
        let (status, text) = try await api(.POST, "/providers/\(added.id)/test")
        #expect(status == 200, "\(text)")
        let healthy = try Self.result(text)
        #expect(healthy.ok && healthy.checks.first?["message"]?.contains("answers and accepts its key") == true, "\(text)")

        #expect(try await api(.PATCH, "/providers/\(added.id)", json: ["api_key": "sk-not-the-right-key-0000", "enabled": false]).0 == 200)
        let refused = try Self.result(try await api(.POST, "/providers/\(added.id)/test").1)
        #expect(!refused.ok)
        #expect(refused.checks.first?["severity"] == "error" && refused.checks.first?["message"]?.contains("the key is refused") == true, "\(refused)")
        #expect(refused.checks.first?["fix"]?.contains("sentinel provider rotate") == true, "\(refused)")
        #expect(refused.checks.first?["message"]?.contains("sk-not-the-right-key-0000") == false, "the key is never echoed")
        #expect(await llm.state.requests().allSatisfy { $0.method == "GET" }, "only the models endpoint: no tokens spent")

        #expect(try await api(.POST, "/providers/prov_nosuchprovider/test").0 == 404)
        await llm.stop()
        await world.stop()
    }
}
