import Foundation
import SentinelCore
import SentinelServer
import SentinelTestSupport
import Testing

/// What one workspace may hold of the things every event, review or catch-up pass goes through.
@Suite("Per-workspace limits")
struct WorkspaceLimitsTests {
    /// Adds through `path` until the limit, checks the next one is refused with a 409 saying so,
    /// then that removing one makes room again.
    func fill(_ api: APIClient, _ path: String, token: String, limit: Int, body: (Int) throws -> String,
              refusal: String, nested: String? = nil, deletePath: (String) -> String) async throws {
        var last = ""
        for i in 0..<limit {
            let added = try await api.call(.post, path, token: token, body: try body(i))
            try #require(added.status == .created, "\(i): \(added.body)")
            let object = nested.map { added.json[$0] as? [String: Any] ?? [:] } ?? added.json
            last = "\(object["id"] ?? "")"
        }
        let refused = try await api.call(.post, path, token: token, body: try body(limit))
        #expect(refused.status == .conflict, "\(refused.body)")
        #expect(refused.json["detail"] as? String == refusal, "\(refused.body)")
        let removed = try await api.call(.delete, deletePath(last), token: token)
        #expect(removed.status == .noContent, "\(removed.body)")
        let again = try await api.call(.post, path, token: token, body: try body(limit + 1))
        #expect(again.status == .created, "\(again.body)")
    }

    @Test("a workspace holds at most 20 integrations, 20 AI providers, 50 notification channels and 1,000 teams; one more is a 409")
    func limits() async throws {
        let world = try APIWorld()
        let key = try TestRSAKeys.other().pemRepresentation
        try await world.test { api in
            let owner = world.token(.owner)
            let base = "/workspaces/\(world.workspaceA)"
            try await fill(api, base + "/integrations", token: owner, limit: IntegrationService.maxPerWorkspace, body: { i in
                String(decoding: try JSONSerialization.data(withJSONObject: [
                    "kind": "github", "app_id": 1000 + i, "private_key": key, "webhook_secret": "whsec-12345678",
                    "api_url": "https://ghes\(i).example.com/api/v3",
                ]), as: UTF8.self)
            }, refusal: "a workspace has at most 20 integrations; remove one it no longer uses first", nested: "integration",
               deletePath: { base + "/integrations/\($0)" })
            // The console's GitHub App manifest flow says so before GitHub makes an App that could not be added.
            let browser = ConsoleSession(client: api.client)
            try await browser.signIn("admin@example.com", APIWorld.password(.admin))
            _ = try await browser.get(base + "/integrations")
            let manifest = try await browser.post(base + "/integrations/manifest", ["api_url": "https://ghes.example.com/api/v3"])
            #expect(manifest.status == .conflict, "\(manifest.status)")
            #expect(manifest.body.contains("a workspace has at most 20 integrations"), "\(manifest.body)")
            try await fill(api, base + "/providers", token: owner, limit: ProviderStore.maxPerWorkspace, body: { i in
                #"{"kind":"openai","api_key":"sk-test-\#(i)-abcdefgh"}"#
            }, refusal: "a workspace has at most 20 AI providers; remove one it no longer uses first",
               deletePath: { base + "/providers/\($0)" })
            try await fill(api, base + "/notifications", token: owner, limit: NotificationStore.maxPerWorkspace, body: { i in
                #"{"kind":"webhook","name":"hook \#(i)","url":"https://hooks.example.com/\#(i)","secret":"0123456789abcdef-\#(i)","events":["run.failed"]}"#
            }, refusal: "a workspace has at most 50 notification channels; remove one it no longer uses first",
               deletePath: { base + "/notifications/\($0)" })
            try await fill(api, base + "/teams", token: owner, limit: TeamStore.maxPerWorkspace, body: { i in
                #"{"name":"team \#(i)"}"#
            }, refusal: "a workspace has at most 1000 teams; delete one it no longer uses first",
               deletePath: { base + "/teams/\($0)" })
            // The other workspace is not limited by this one's.
            let other = try await api.call(.post, "/workspaces/\(world.workspaceB)/providers", token: world.adminToken,
                                           body: #"{"kind":"openai","api_key":"sk-test-other-abcdefgh"}"#)
            #expect(other.status == .created, "\(other.body)")
        }
    }
}
