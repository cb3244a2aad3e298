import Foundation
import GRDB
@testable import SentinelCore
import SentinelTestSupport
import Testing

/// Webhook bodies are stored compressed (`DeliveryPayload`): a fraction of the bytes in the
/// workspace file, the same body read back, rows stored as received before still readable.
@Suite("Stored webhook bodies")
struct DeliveryPayloadTests {
    /// A pull_request delivery as GitHub sends it: mostly API URLs of the same repository and users.
    static func pullRequestBody(number: Int = 7) -> Data {
        let api = "https://api.github.com/repos/octo-org/octo-repo"
        func user(_ login: String, _ id: Int) -> [String: Any] {
            ["login": login, "id": id, "node_id": "MDQ6VXNlcj\(id)", "avatar_url": "https://avatars.githubusercontent.com/u/\(id)?v=4",
             "url": "https://api.github.com/users/\(login)", "html_url": "https://github.com/\(login)",
             "followers_url": "https://api.github.com/users/\(login)/followers", "repos_url": "https://api.github.com/users/\(login)/repos",
             "type": "User", "site_admin": false]
        }
        var links: [String: Any] = [:]
        for name in ["issues", "pulls", "commits", "branches", "tags", "labels", "milestones", "events", "hooks", "teams", "forks",
                     "assignees", "collaborators", "comments", "contents", "compare", "merges", "archive", "downloads", "releases",
                     "deployments", "notifications", "subscribers", "subscription", "stargazers", "statuses", "trees", "blobs"] {
            links["\(name)_url"] = "\(api)/\(name){/number}"
        }
        var repository = links
        repository["id"] = 1_296_269
        repository["full_name"] = "octo-org/octo-repo"
        repository["owner"] = user("octo-org", 9_919)
        var pullRequest = links
        pullRequest["number"] = number
        pullRequest["title"] = "Update the README with new information"
        pullRequest["body"] = String(repeating: "This is a pretty simple change that we need to pull into main. ", count: 20)
        pullRequest["user"] = user("octocat", 583_231)
        pullRequest["head"] = ["sha": String(repeating: "a", count: 40), "ref": "feature", "repo": repository, "user": user("octocat", 583_231)]
        pullRequest["base"] = ["sha": String(repeating: "b", count: 40), "ref": "main", "repo": repository, "user": user("octo-org", 9_919)]
        let body: [String: Any] = ["action": "opened", "number": number, "pull_request": pullRequest, "repository": repository,
                                   "sender": user("octocat", 583_231), "installation": ["id": 2]]
        return try! JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])
    }

    @Test("a webhook body is stored in a fraction of its bytes and read back byte for byte; a short one as received")
    func roundTrip() throws {
        let body = Self.pullRequestBody()
        #expect(body.count > 10_000)
        let stored = DeliveryPayload.encode(body)
        #expect(stored.encoding == .zlib && stored.bytes == body.count)
        #expect(stored.payload.count * 4 < body.count, "\(body.count) bytes stored in \(stored.payload.count)")
        #expect(try DeliveryPayload.decode(stored.payload, encoding: "zlib", bytes: stored.bytes) == body)

        let ping = Data(#"{"zen":"Keep it logically awesome.","hook_id":1}"#.utf8)
        #expect(DeliveryPayload.encode(ping) == DeliveryPayload.Stored(payload: ping, encoding: .identity, bytes: nil))
        #expect(try DeliveryPayload.decode(ping, encoding: "identity", bytes: nil) == ping)
        // Random bytes do not shrink: kept as received.
        var generator = SystemRandomNumberGenerator()
        let noise = Data((0..<4_096).map { _ in UInt8.random(in: 0...255, using: &generator) })
        #expect(DeliveryPayload.encode(noise).encoding == .identity)
    }

    @Test("a stored body that does not decompress, or has an unknown encoding, is a clear storage error")
    func unreadable() {
        let stored = DeliveryPayload.encode(Self.pullRequestBody())
        // Cut short: zlib gives back what it could without an error; the recorded length tells.
        #expect(throws: StorageError.self) { try DeliveryPayload.decode(stored.payload.prefix(stored.payload.count / 2), encoding: "zlib", bytes: stored.bytes) }
        var flipped = stored.payload
        flipped[flipped.count / 2] ^= 0xFF
        #expect(throws: StorageError.self) { try DeliveryPayload.decode(flipped, encoding: "zlib", bytes: stored.bytes) }
        #expect(throws: StorageError.self) { try DeliveryPayload.decode(Data("{}".utf8), encoding: "zlib", bytes: 2) }
        #expect(throws: StorageError.self) { try DeliveryPayload.decode(stored.payload, encoding: "zlib", bytes: nil) }
        #expect(throws: StorageError.self) { try DeliveryPayload.decode(stored.payload, encoding: "zlib", bytes: stored.bytes! - 1) }
        #expect(throws: StorageError.invalid("a stored webhook delivery has an unknown payload encoding 'brotli'")) {
            try DeliveryPayload.decode(stored.payload, encoding: "brotli", bytes: nil)
        }
    }

    @Test("intake stores the body compressed and the delivery job reads it whole; a row stored as received before 0014 reads too")
    func intakeStoresCompressed() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        let integration = IntegrationID.generate()
        let body = Self.pullRequestBody(number: 42)
        let rows = try await h.supervisor.withWorkspace(ws) { actor in
            let outcome = try await DeliveryIntake.store(IncomingDelivery(deliveryID: "d-compressed", integrationID: integration, event: "pull_request",
                                                                          action: "opened", body: body, correlationID: "c"), in: actor)
            #expect(outcome == .accepted)
            // A row written by an earlier version: no encoding given, the column's default.
            _ = try await actor.write { tx in
                try tx.db.execute(sql: """
                    INSERT INTO deliveries (id, integration_id, event, action, payload, received_at) VALUES ('d-old', ?, 'pull_request', 'opened', ?, 0)
                    """, arguments: [integration.rawValue, body])
            }
            return try await actor.read { db in
                try Row.fetchAll(db, sql: "SELECT * FROM deliveries ORDER BY id")
                    .map { (id: $0["id"] as String, payload: $0["payload"] as Data, encoding: $0["payload_encoding"] as String,
                            body: try DeliveryPayload.body(of: $0)) }
            }
        }
        let compressed = try #require(rows.first { $0.id == "d-compressed" })
        #expect(compressed.encoding == "zlib")
        #expect(compressed.payload.count * 4 < body.count, "\(body.count) bytes stored in \(compressed.payload.count)")
        #expect(compressed.body == body)
        let old = try #require(rows.first { $0.id == "d-old" })
        #expect(old.encoding == "identity")
        #expect(old.payload == body && old.body == body)
        await h.stop()
    }
}
