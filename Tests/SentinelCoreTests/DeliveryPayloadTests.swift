import CompressNIO
import Foundation
import GRDB
import NIOCore
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
        #expect(stored.encoding == .zstd && stored.bytes == body.count)
        #expect(stored.payload.count * 4 < body.count, "\(body.count) bytes stored in \(stored.payload.count)")
        #expect(try DeliveryPayload.decode(stored.payload, encoding: "zstd", bytes: stored.bytes) == body)

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
        #expect(stored.encoding == .zstd)
        let cut = stored.payload.prefix(stored.payload.count / 2)
        #expect(throws: StorageError.self) { try DeliveryPayload.decode(cut, encoding: "zstd", bytes: stored.bytes) }
        // A flipped byte in the compressed data: the frame's checksum (or the format) tells.
        for position in [stored.payload.count / 2, stored.payload.count - 6] {
            var flipped = stored.payload
            flipped[flipped.startIndex + position] ^= 0xFF
            #expect(throws: StorageError.self) { try DeliveryPayload.decode(flipped, encoding: "zstd", bytes: stored.bytes) }
        }
        #expect(throws: StorageError.self) { try DeliveryPayload.decode(Data("{}".utf8), encoding: "zstd", bytes: 2) }
        #expect(throws: StorageError.self) { try DeliveryPayload.decode(stored.payload, encoding: "zstd", bytes: nil) }
        #expect(throws: StorageError.self) { try DeliveryPayload.decode(stored.payload, encoding: "zstd", bytes: stored.bytes! - 1) }
        // zstd bytes labelled zlib, and the other way round.
        #expect(throws: StorageError.self) { try DeliveryPayload.decode(stored.payload, encoding: "zlib", bytes: stored.bytes) }
        let zlib = Self.zlibCompressed(Self.pullRequestBody())
        #expect(throws: StorageError.self) { try DeliveryPayload.decode(zlib, encoding: "zstd", bytes: Self.pullRequestBody().count) }
        #expect(throws: StorageError.invalid("a stored webhook delivery has an unknown payload encoding 'brotli'")) {
            try DeliveryPayload.decode(stored.payload, encoding: "brotli", bytes: nil)
        }
        // After failures the kept contexts still decompress.
        #expect((try? DeliveryPayload.decode(stored.payload, encoding: "zstd", bytes: stored.bytes)) == Self.pullRequestBody())
    }

    /// A body as versions between migrations 0014 and 0016 stored it.
    static func zlibCompressed(_ body: Data) -> Data {
        var input = ByteBuffer(data: body)
        return Data(try! input.compress(with: .zlib(configuration: .init(compressionLevel: 1))).readableBytesView)
    }

    @Test("a body stored zlib-compressed before 0016 reads back; cut or flipped it is a clear storage error")
    func zlibRowsRead() {
        let body = Self.pullRequestBody()
        let zlib = Self.zlibCompressed(body)
        #expect((try? DeliveryPayload.decode(zlib, encoding: "zlib", bytes: body.count)) == body)
        // Cut short: zlib gives back what it could without an error; the recorded length tells.
        #expect(throws: StorageError.self) { try DeliveryPayload.decode(zlib.prefix(zlib.count / 2), encoding: "zlib", bytes: body.count) }
        var flipped = zlib
        flipped[flipped.count / 2] ^= 0xFF
        #expect(throws: StorageError.self) { try DeliveryPayload.decode(flipped, encoding: "zlib", bytes: body.count) }
        #expect(throws: StorageError.self) { try DeliveryPayload.decode(zlib, encoding: "zlib", bytes: body.count - 1) }
    }

    @Test("bodies compressed and read back on many tasks at once, more than the kept contexts, each come back whole")
    func concurrentUse() async throws {
        let bodies = (0..<48).map { Self.pullRequestBody(number: $0) }
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for body in bodies {
                group.addTask {
                    for _ in 0..<20 {
                        let stored = DeliveryPayload.encode(body)
                        guard stored.encoding == .zstd,
                              try DeliveryPayload.decode(stored.payload, encoding: "zstd", bytes: stored.bytes) == body else { return false }
                    }
                    return true
                }
            }
            for try await whole in group { #expect(whole) }
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
        #expect(compressed.encoding == "zstd")
        #expect(compressed.payload.count * 4 < body.count, "\(body.count) bytes stored in \(compressed.payload.count)")
        #expect(compressed.body == body)
        let old = try #require(rows.first { $0.id == "d-old" })
        #expect(old.encoding == "identity")
        #expect(old.payload == body && old.body == body)
        await h.stop()
    }

    @Test("upgrading a workspace file to 0016 admits zstd bodies, keeps its zlib and as-received rows readable and still refuses an unknown encoding")
    func upgradeAdmitsZstd() throws {
        let directory = TemporaryDirectory()
        defer { directory.cleanup() }
        let file = URL(fileURLWithPath: directory.path).appendingPathComponent("old.sqlite")
        let queue = try DatabaseQueue(path: file.path)
        try WorkspaceSchema.migrator.migrate(queue, upTo: "0015_jobs_finished_index")
        let body = Self.pullRequestBody()
        let integration = IntegrationID.generate().rawValue
        let zstd = DeliveryPayload.encode(body)
        try queue.write { db in
            try db.execute(sql: """
                INSERT INTO deliveries (id, integration_id, event, payload, payload_encoding, payload_bytes, received_at)
                VALUES ('d-zlib', ?, 'pull_request', ?, 'zlib', ?, 0), ('d-identity', ?, 'pull_request', ?, 'identity', NULL, 0)
                """, arguments: [integration, Self.zlibCompressed(body), body.count, integration, body])
        }
        // Before 0016 the file's CHECK refuses a zstd body.
        #expect(throws: DatabaseError.self) {
            try queue.write { db in
                try db.execute(sql: "INSERT INTO deliveries (id, integration_id, event, payload, payload_encoding, payload_bytes, received_at) VALUES ('d-early', ?, 'pull_request', ?, 'zstd', ?, 0)",
                               arguments: [integration, zstd.payload, body.count])
            }
        }
        try WorkspaceSchema.migrator.migrate(queue)
        try queue.write { db in
            try db.execute(sql: "INSERT INTO deliveries (id, integration_id, event, payload, payload_encoding, payload_bytes, received_at) VALUES ('d-zstd', ?, 'pull_request', ?, 'zstd', ?, 0)",
                           arguments: [integration, zstd.payload, body.count])
        }
        #expect(throws: DatabaseError.self) {
            try queue.write { db in
                try db.execute(sql: "INSERT INTO deliveries (id, integration_id, event, payload, payload_encoding, received_at) VALUES ('d-brotli', ?, 'pull_request', x'00', 'brotli', 0)",
                               arguments: [integration])
            }
        }
        let rows = try queue.read { db in try Row.fetchAll(db, sql: "SELECT * FROM deliveries ORDER BY id") }
        #expect(rows.map { $0["id"] as String } == ["d-identity", "d-zlib", "d-zstd"])
        for row in rows { #expect(try DeliveryPayload.body(of: row) == body) }
        let check = try queue.read { db in try String.fetchAll(db, sql: "PRAGMA integrity_check") }
        #expect(check == ["ok"])
        try queue.close()
        // The edited definition reads back from the file in a new connection.
        let reopened = try DatabaseQueue(path: file.path)
        let definition = try reopened.read { db in try String.fetchOne(db, sql: "SELECT sql FROM sqlite_schema WHERE name = 'deliveries'") }
        #expect(definition?.contains("CHECK (payload_encoding = 'identity' OR payload_encoding = 'zlib' OR payload_encoding = 'zstd')") == true)
        #expect(try reopened.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM deliveries WHERE payload_encoding = 'zstd'") } == 1)
        try reopened.close()
    }

    @Test("widening a CHECK that a table does not hold changes nothing and says why")
    func replaceCheckRefusesUnknownText() throws {
        let queue = try DatabaseQueue()
        try queue.write { db in try db.execute(sql: "CREATE TABLE t (v TEXT CHECK (v IN ('a', 'b')))") }
        #expect(throws: StorageError.self) {
            try queue.write { db in try SchemaEdit.replaceCheck(in: db, table: "t", from: "CHECK (v IN ('a', 'c'))", to: "CHECK (v IN ('a', 'c', 'd'))") }
        }
        let definition = try queue.read { db in try String.fetchOne(db, sql: "SELECT sql FROM sqlite_schema WHERE name = 't'") }
        #expect(definition == "CREATE TABLE t (v TEXT CHECK (v IN ('a', 'b')))")
        try queue.write { db in try SchemaEdit.replaceCheck(in: db, table: "t", from: "CHECK (v IN ('a', 'b'))", to: "CHECK (v IN ('a', 'b', 'c'))") }
        try queue.write { db in try db.execute(sql: "INSERT INTO t VALUES ('c')") }
        #expect(throws: DatabaseError.self) { try queue.write { db in try db.execute(sql: "INSERT INTO t VALUES ('d')") } }
    }
}

@Suite("Comment commands")
struct CommentCommandTests {
    @Test("a command counts where it is written as one: not quoted, in code, in an HTML comment, or as the end of an address (as Markdown shows the comment)")
    func writtenAsACommand() {
        for body in ["@sentinel review", "Please @sentinel review", "@Sentinel Review\nthanks", "done.\n\n@sentinel review", "(@sentinel review)"] {
            #expect(GitHubDeliveryProcessor.command(in: body) == (true, false), "\(body)")
        }
        #expect(GitHubDeliveryProcessor.command(in: "@sentinel full review please") == (true, true))
        for body in ["> @sentinel review\n\nI already asked above", "```\n@sentinel review\n```", "~~~md\n@sentinel full review\n~~~",
                     "You can type `@sentinel full review`", "<!-- @sentinel review -->", "<!-- @sentinel review", "bob@sentinel review",
                     "    @sentinel review", "x `` a ` @sentinel review `` y", "> quoted\n> @sentinel review"] {
            #expect(GitHubDeliveryProcessor.command(in: body) == (false, false), "\(body)")
        }
        // As Markdown shows them: a longer fence holding a shorter one, a fence line with an info
        // string inside a fence, HTML code, lazy continuation lines of a quote, a quote in a list
        // item, GitLab's `>>>` quote. Each of these started a run.
        for body in ["````\n```\n@sentinel review\n```\n````", "```\n```python\n@sentinel review\n```", "Type <code>@sentinel review</code> to ask",
                     "<pre>\n@sentinel review\n</pre>", "<CODE class=\"x\">@sentinel review</CODE>", "> earlier text\n@sentinel review was what you wrote",
                     "- > @sentinel review", "1. > @sentinel full review", ">>>\n@sentinel review\n>>>", "````\n@sentinel review\n```"] {
            #expect(GitHubDeliveryProcessor.command(in: body) == (false, false), "\(body)")
        }
        for body in ["````\n```\n````\n@sentinel review", "> quoted\n\n@sentinel review", "- @sentinel review", ">>>\nquoted\n>>>\n@sentinel review",
                     "<code>x</code> @sentinel review", "~~~\ncode\n~~~~\n@sentinel review",
                     // HTML written as text (in a code span or fence), or left unclosed inline, hides nothing after it.
                     "Use `<pre>` for the output block.\n\n@sentinel review", "The `<code>` tag here is wrong.\n@sentinel review",
                     "```js\nconst a = '<pre>'\n```\n@sentinel review", "a `<code>` and a `</code>` @sentinel review", "Wrap it in <code> please\n@sentinel review"] {
            #expect(GitHubDeliveryProcessor.command(in: body) == (true, false), "\(body)")
        }
        // Text after a closed fence or comment still counts.
        #expect(GitHubDeliveryProcessor.command(in: "```\ncode\n```\n@sentinel review") == (true, false))
        #expect(GitHubDeliveryProcessor.command(in: "<!-- hidden -->@sentinel review") == (true, false))
    }
}
