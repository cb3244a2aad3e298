import AsyncHTTPClient
import Foundation
import GRDB
import NIOCore
import SentinelCore
import SentinelServer
import SentinelTestSupport
import Testing

/// Short versions of the reliability suite (issue 15; the long ones run with `sentinel-bench
/// chaos`, see docs/reliability.md): the real binary killed under load, LRU churn, and a full
/// data volume simulated with SQLite's `max_page_count`.
@Suite("reliability suite (short)", .serialized)
struct ReliabilityTests {
    @Test("kill -9 under load: three SIGKILLs while deliveries arrive and reviews run lose nothing acknowledged, post one review per head, count usage once")
    func killUnderLoad() async throws {
        var options = RigOptions()
        options.workspaces = 2
        let rig = try await ReliabilityRig.start(options)
        do {
            let report = try await ReliabilityScenarios.killUnderLoad(rig, kills: 3, pullsPerWorkspace: 3, workers: 2, interval: 300...900,
                                                                      drainTimeout: .seconds(60))
            await rig.shutdown()
            #expect(report.passed, "\(report.failures)\n\(report.markdown)")
            // The run did real work across the kills.
            #expect(report.rows.contains { $0.check == "reviews posted" && (Int($0.measured) ?? 0) > 0 }, "\(report.markdown)")
        } catch {
            await rig.shutdown()
            throw error
        }
    }

    @Test("LRU churn: 10× more active workspaces than workspaces.max_open all get reviewed; workspace file descriptors stay within the LRU and the work in flight, the others ≤ 64")
    func lruChurn() async throws {
        var options = RigOptions()
        options.maxOpen = 4
        options.workspaces = 40
        // Files in use (a request, a running job) are never closed, so the bound holds when no more
        // jobs run at once than files may be open.
        options.environment = ["SENTINEL_JOBS_GLOBAL_CONCURRENCY": "4"]
        let rig = try await ReliabilityRig.start(options)
        do {
            let report = try await ReliabilityScenarios.lruChurn(rig, rounds: 1, concurrency: 4)
            await rig.shutdown()
            #expect(report.passed, "\(report.failures)\n\(report.markdown)")
            #expect(report.rows.contains { $0.check == "deliveries acknowledged" && $0.measured == "40" }, "\(report.markdown)")
            // The sampler recognised the workspace files (at least one open file's three descriptors).
            #expect(report.rows.contains { $0.check.hasPrefix("workspace file descriptors") && (Int($0.measured) ?? 0) >= 3 }, "\(report.markdown)")
        } catch {
            await rig.shutdown()
            throw error
        }
    }

    @Test("disk full (max_page_count): intake answers 503 with Retry-After, keeps what it acknowledged, and accepts again by itself once space returns")
    func diskFull() async throws {
        let world = try await GitHubWorld(config: { $0.jobs.leaseSeconds = 2 })
        do {
            let repo = GitHubWorld.repo
            func send(_ id: String, number: Int, padding: Int = 0) async throws -> (Int, String?, String) {
                var object = try JSONSerialization.jsonObject(with: GitHubWorld.pullRequestPayload(action: "opened", head: "h\(number)", number: number)) as! [String: Any]
                // Random bytes: a padding that compresses (a run of one letter) would be stored in a few pages.
                var generator = SystemRandomNumberGenerator()
                object["padding"] = Data((0..<(padding * 3 / 4)).map { _ in UInt8.random(in: 0...255, using: &generator) }).base64EncodedString()
                let body = try JSONSerialization.data(withJSONObject: object)
                var request = HTTPClientRequest(url: "http://127.0.0.1:\(world.port)\(world.integration.webhookPath)")
                request.method = .POST
                request.headers.add(name: "Content-Type", value: "application/json")
                request.headers.add(name: "X-GitHub-Event", value: "pull_request")
                request.headers.add(name: "X-GitHub-Delivery", value: id)
                request.headers.add(name: "X-Hub-Signature-256", value: GitHubWebhookSignature.sign(body: body, secret: world.secret))
                request.body = .bytes(ByteBuffer(bytes: body))
                let response = try await world.http.execute(request, timeout: .seconds(10))
                let text = String(buffer: try await response.body.collect(upTo: 1 << 20))
                return (Int(response.status.code), response.headers.first(name: "Retry-After"), text)
            }
            for number in 1...2 {
                await world.github.state.addPull(FakePullRequest(repo: repo, number: number, headSHA: "h\(number)", baseSHA: "bbb000", files: GitHubWorld.files))
            }
            #expect(try await send("before-full", number: 1).0 == 202)

            // The volume fills: the workspace file may not grow by a page.
            func limitPages(_ sql: String) async throws {
                try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
                    try await actor.maintenance { db in try db.execute(sql: sql) }
                }
            }
            try await limitPages("PRAGMA max_page_count = 1")  // SQLite keeps it at the current page count
            // A 4 MB delivery cannot fit in the file's free pages.
            let (status, retryAfter, body) = try await send("while-full", number: 2, padding: 4 << 20)
            #expect(status == 503, "\(body)\n\(world.log.all.filter { $0.contains("error") }.joined(separator: "\n"))")
            #expect(retryAfter.flatMap(Int.init).map { $0 > 0 } == true)
            #expect(body.contains("urn:sentinel:problem:storage-full"))
            let storedWhileFull = try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
                try await actor.read { try String.fetchAll($0, sql: "SELECT id FROM deliveries ORDER BY id") }
            }
            #expect(storedWhileFull == ["before-full"])

            // Space returns: the same delivery is accepted, with no restart.
            try await limitPages("PRAGMA max_page_count = 1073741823")
            #expect(try await send("while-full", number: 2, padding: 4 << 20).0 == 202)
            let processed = await eventually {
                try await world.appliance.supervisor.withWorkspace(world.workspace) { actor in
                    try await actor.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM deliveries WHERE processed_at IS NOT NULL") }
                } == 2
            }
            #expect(processed)
            #expect(await eventually { await world.github.state.reviews.count == 2 })
        } catch {
            await world.stop()
            throw error
        }
        await world.stop()
    }
}
