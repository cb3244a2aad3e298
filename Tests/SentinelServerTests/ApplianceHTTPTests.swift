import Foundation
import Hummingbird
import HummingbirdTesting
import HTTPTypes
import Logging
import SentinelCore
import SentinelServer
import SentinelTestSupport
import ServiceLifecycle
import Testing

@Suite("Appliance HTTP layer")
struct ApplianceHTTPTests {
    /// An appliance on a temp dir with a test route that reaches a workspace through the supervisor,
    /// as every workspace route does.
    func makeAppliance(_ dir: TemporaryDirectory, registry: JobRegistry = JobRegistry(), offlineRetrySeconds: Double = 30) throws -> Appliance {
        var config = testConfig()
        config.server.tlsEnabled = false
        config.workspaces.offlineRetrySeconds = offlineRetrySeconds
        return try Appliance(dataDirectory: DataDirectory(path: dir.path), config: config, registry: registry,
                             logger: Logger.sentinel(level: "error", sink: CapturedLog().sink))
    }

    @Test("an offline workspace's 503 says when the file is tried again: workspaces.offline_retry_seconds after it failed, not always 30")
    func offlineRetryAfterFollowsTheSetting() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let appliance = try makeAppliance(dir, offlineRetrySeconds: 300)
        let bad = try appliance.workspaces.create(name: "bad").workspaceID!
        try Data(repeating: 0x42, count: 4096).write(to: appliance.dataDirectory.workspaceFile(bad))
        var waits: [Int] = []
        for _ in 0..<2 {
            do {
                _ = try await appliance.supervisor.withWorkspace(bad) { try await $0.jobs().count }
            } catch let error as WorkspaceError {
                if case .offline(_, _, let retryAfter) = error { waits.append(retryAfter) }
            }
        }
        // The first open failed now (300 s); the second is refused without trying (what is left of them).
        #expect(waits.count == 2 && waits[0] == 300 && (290...300).contains(waits[1]), "\(waits)")
        await appliance.supervisor.shutdown()
    }

    @Test("a corrupt workspace answers 503 problem+json; another workspace keeps answering")
    func offlineWorkspaceIs503() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let appliance = try makeAppliance(dir)
        let good = try appliance.workspaces.create(name: "good").workspaceID!
        let bad = try appliance.workspaces.create(name: "bad").workspaceID!
        try Data(repeating: 0x42, count: 4096).write(to: appliance.dataDirectory.workspaceFile(bad))
        let router = try appliance.makeRouter()
        let supervisor = appliance.supervisor
        router.get("/test/workspaces/:id/jobs") { _, context in
            guard let id = context.parameters.get("id").flatMap(WorkspaceID.init) else { throw HTTPError(.notFound) }
            let count = try await supervisor.withWorkspace(id) { try await $0.jobs().count }
            return "\(count)"
        }
        let app = Application(router: router)
        try await app.test(.router) { client in
            try await client.execute(uri: "/test/workspaces/\(bad)/jobs", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                #expect(response.headers[.contentType] == "application/problem+json")
                let problem = try JSONDecoder().decode(Problem.self, from: Data(buffer: response.body))
                #expect(problem.status == 503)
                #expect(problem.detail?.contains("corrupt") == true)
                #expect(response.headers[HTTPField.Name("X-Request-ID")!] != nil)
                #expect(response.headers[.retryAfter] == "30", "when to come back, as the other storage 503s say")
            }
            try await client.execute(uri: "/test/workspaces/\(good)/jobs", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body) == "0")
            }
            try await client.execute(uri: "/test/workspaces/ws_0000000000000000/jobs", method: .get) { response in
                #expect(response.status == .notFound)
                #expect(response.headers[.contentType] == "application/problem+json")
            }
        }
        let text = appliance.prometheus.emitToString()
        #expect(text.contains(#"sentinel_workspace_offline_total{reason="corrupt"} 1"#))
        await appliance.supervisor.shutdown()
    }

    @Test("a webhook for an integration whose workspace file is damaged answers 503 and is counted unavailable, as the refused-deliveries alert reads it")
    func offlineWorkspaceWebhookCounted() async throws {
        let github = try await FakeGitHub.start()
        // Set up as the command line does, then the file damaged while no server runs.
        var config = testConfig()
        config.server.tlsEnabled = false
        let h = try TestHarness(config: config)
        defer { h.directory.cleanup() }
        let ws = try h.createWorkspace("w")
        let service = IntegrationService(control: h.control, masterKey: try MasterKey.load(at: h.dataDirectory.masterKeyFile))
        let integration = try await h.supervisor.withWorkspace(ws) {
            try await service.addGitHub(workspace: $0, appID: github.appID, privateKeyPEM: github.privateKeyPEM,
                                        webhookSecret: Data("webhook-secret".utf8), apiURL: github.baseURL)
        }
        await h.supervisor.shutdown()
        await github.stop()
        try Data(repeating: 0x42, count: 4096).write(to: h.dataDirectory.workspaceFile(ws))

        let appliance = try makeAppliance(h.directory)
        let app = Application(router: try appliance.makeRouter())
        try await app.test(.router) { client in
            let headers: HTTPFields = [.contentType: "application/json", HTTPField.Name("X-GitHub-Event")!: "ping",
                                       HTTPField.Name("X-GitHub-Delivery")!: "d-1", HTTPField.Name("X-Hub-Signature-256")!: "sha256=00"]
            try await client.execute(uri: integration.webhookPath, method: .post, headers: headers, body: ByteBuffer(string: "{}")) { response in
                #expect(response.status == .serviceUnavailable)
            }
        }
        let text = appliance.prometheus.emitToString()
        #expect(text.contains(#"sentinel_webhook_deliveries_total{platform="github",outcome="unavailable"} 1"#),
                "\(text.split(separator: "\n").filter { $0.contains("webhook_deliveries") })")
        await appliance.supervisor.shutdown()
    }

    @Test("HEAD is answered wherever GET is (a load balancer's `HEAD /healthz` check): the same status and headers, no body")
    func headAnsweredLikeGet() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let appliance = try makeAppliance(dir)
        let app = Application(router: try appliance.makeRouter())
        try await app.test(.router) { client in
            // Operations, the API document, an API operation without credentials, a console page.
            for path in ["/healthz", "/readyz", "/metrics", "/api/v1/openapi.json", "/api/v1/workspaces", "/sign-in"] {
                let get = try await client.execute(uri: path, method: .get)
                let head = try await client.execute(uri: path, method: .head)
                #expect(get.status != .notFound, "\(path)")
                #expect(head.status == get.status, "\(path)")
                #expect(head.headers[.contentType] == get.headers[.contentType], "\(path)")
                #expect(head.body.readableBytes == 0, "\(path)")
            }
            // A path no GET serves stays 404 for HEAD too.
            #expect(try await client.execute(uri: "/no-such-page", method: .head).status == .notFound)
        }
        await appliance.supervisor.shutdown()
    }

    @Test("Strict-Transport-Security is on every answer while Sentinel serves HTTPS (problems and redirects too), with server.tls.hsts_max_age_seconds; never over plain HTTP or at 0")
    func strictTransportSecurity() async throws {
        for (tls, maxAge, expected) in [(true, 31_536_000, "max-age=31536000"), (true, 600, "max-age=600"), (true, 0, nil), (false, 31_536_000, nil)] as [(Bool, Int, String?)] {
            let dir = TemporaryDirectory()
            defer { dir.cleanup() }
            var config = testConfig()
            config.server.tlsEnabled = tls
            config.server.hstsMaxAgeSeconds = maxAge
            let appliance = try Appliance(dataDirectory: DataDirectory(path: dir.path), config: config, registry: JobRegistry(),
                                          logger: Logger.sentinel(level: "error", sink: CapturedLog().sink))
            let app = Application(router: try appliance.makeRouter())
            try await app.test(.router) { client in
                for (path, status) in [("/healthz", HTTPResponse.Status.ok), ("/api/v1/workspaces", .unauthorized), ("/", .seeOther),
                                       ("/no-such-page", .notFound)] {
                    let response = try await client.execute(uri: path, method: .get)
                    #expect(response.status == status, "\(path)")
                    #expect(response.headers[.strictTransportSecurity] == expected, "tls \(tls), \(maxAge): \(path)")
                }
            }
            await appliance.supervisor.shutdown()
        }
    }

    @Test("the correlation id of a request follows into the jobs it enqueues and onto their log lines; an id that is not 1–128 ASCII letters, digits and -_.: is replaced")
    func correlationFollowsWork() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let log = CapturedLog()
        var registry = JobRegistry()
        registry.register("traced") { ctx in ctx.logger.info("handling traced job") }
        var config = testConfig()
        config.server.tlsEnabled = false
        let appliance = try Appliance(dataDirectory: DataDirectory(path: dir.path), config: config, registry: registry,
                                      logger: Logger.sentinel(level: "info", sink: log.sink))
        let ws = try appliance.workspaces.create(name: "w").workspaceID!
        let router = try appliance.makeRouter()
        let supervisor = appliance.supervisor
        router.post("/test/enqueue") { _, context in
            let id = try await supervisor.withWorkspace(ws) {
                try await $0.enqueue(JobRequest(kind: "traced", correlationID: context.correlationID)).jobID
            }
            return "\(id)"
        }
        let services = RunningGroup(ServiceGroup(configuration: .init(
            services: [.init(service: appliance.supervisor), .init(service: appliance.scheduler)], logger: appliance.logger)))
        let app = Application(router: router)
        try await app.test(.router) { client in
            try await client.execute(uri: "/test/enqueue", method: .post, headers: [HTTPField.Name("X-Request-ID")!: "req-abc-123"]) { response in
                #expect(response.status == .ok)
                #expect(response.headers[HTTPField.Name("X-Request-ID")!] == "req-abc-123")
            }
            // A caller's id is kept when it is 1–128 ASCII letters, digits and `-_.:`; any other
            // gets a new UUID (an empty one was kept, and so were letters outside ASCII).
            for (sent, kept) in [("A.b_c:1-2", true), ("", false), ("日本-1", false), ("é", false), ("a b", false), ("x/y", false),
                                 (String(repeating: "a", count: 128), true), (String(repeating: "a", count: 129), false)] {
                try await client.execute(uri: "/healthz", method: .get, headers: [HTTPField.Name("X-Request-ID")!: sent]) { response in
                    let answered = try #require(response.headers[HTTPField.Name("X-Request-ID")!], "\(sent)")
                    if kept { #expect(answered == sent) } else { #expect(UUID(uuidString: answered) != nil, "\(sent) → \(answered)") }
                }
            }
        }
        #expect(await eventually { log.text.contains("handling traced job") })
        let line = try #require(log.all.first { $0.contains("handling traced job") })
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["correlation_id"] as? String == "req-abc-123")
        #expect(object["workspace_id"] as? String == ws.rawValue)
        #expect(object["job_id"] as? String != nil)
        #expect(object["level"] as? String == "info")
        #expect(object["time"] as? String != nil)
        let jobs = try await supervisor.withWorkspace(ws) { try await $0.jobs() }
        #expect(jobs.first?.correlationID == "req-abc-123")
        #expect(await eventually { appliance.prometheus.emitToString().contains(#"sentinel_jobs_executed_total{kind="traced",outcome="succeeded"} 1"#) })
        #expect(appliance.prometheus.emitToString().contains("sentinel_job_queue_latency_seconds"))
        try await services.shutdown()
    }
}
