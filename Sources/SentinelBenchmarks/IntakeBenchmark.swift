import _CryptoExtras
import ArgumentParser
import AsyncHTTPClient
import Foundation
import SentinelTestSupport
import GRDB
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOSSL
import SentinelCore
import SentinelServer
import ServiceLifecycle

/// Signed GitHub `pull_request` deliveries (or GitLab `Merge Request Hook` deliveries with their
/// secret token) over loopback against `serve`'s real HTTP stack (each 202 is a durable commit),
/// next to a bare Hummingbird route driven by the same client in the same run.
struct IntakeBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "intake", abstract: "Webhook intake: signed deliveries/s and latency.")
    @Option(help: "Deliveries per measurement.") var requests = 20_000
    @Option(help: "Concurrent connections.") var concurrency = 64
    @Option(help: "Workspace counts.") var workspaces: [Int] = [1, 1_000]
    @Option(help: "workspaces.max_open (LRU size).") var maxOpen = 256
    @Option(help: "Transports to measure: http, https.") var transports: [String] = ["http", "https"]
    @Option(help: "Platforms whose deliveries are measured: github, gitlab.") var platforms: [String] = ["github", "gitlab"]
    @Option(help: "Concurrent wrong-password sign-ins (POST /api/v1/auth/login, unknown emails, throttling off) kept running while deliveries are measured; 0 = none.")
    var loginFlood = 0
    @Option(help: "auth.bcrypt_cost of the measured appliance.") var bcryptCost = 12
    @ArgumentParser.Flag(help: "As in production: the whole `serve` service group (the job scheduler processes every delivery as it arrives) and a 23 KB `pull_request.labeled` payload (GitHub only).")
    var production = false
    @Option(help: "logging.level of the measured appliance, its JSON lines written to a file (default: info with --production, as `serve` logs by default; error otherwise).")
    var logLevel: String?
    @Option(help: "Also drive each appliance and its bare route with this wrk executable (an external load generator; GitHub only), with --wrk-script.")
    var wrk: String?
    @Option(help: "The wrk Lua script.") var wrkScript = "Benchmarks/intake.lua"
    @Option(help: "Seconds of each wrk run.") var wrkSeconds = 10
    @Option(help: "wrk threads.") var wrkThreads = 2
    @Option(help: "server.event_loop_threads of this process (the appliance's listener, the bare route's and the in-process client's); 0 = as `serve` sizes it: for HTTPS, or for plain HTTP when only http is measured.")
    var eventLoopThreads = 0

    func run() async throws {
        var loops = SentinelConfig()
        loops.server.eventLoopThreads = eventLoopThreads
        loops.server.tlsEnabled = transports != ["http"]
        EventLoopThreads.install(loops)
        let key = try _RSA.Signing.PrivateKey(keySize: .bits2048).pemRepresentation
        if production || wrk != nil, platforms != ["github"] { throw ValidationError("--production and --wrk measure GitHub deliveries: add --platforms github") }
        print("| platform | transport | workspaces | mode | deliveries | login flood | sign-ins/s | accepted/s | p50 | p99 | via the journal | journal empty after | in workspace files/s | workspace opens per delivery | processed by the end of the load | bare Hummingbird route/s | ratio |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        var wrkRows: [String] = []
        for platform in platforms {
            for tls in transports.map({ $0 == "https" }) {
                for count in workspaces {
                    let m = try await measure(platform: platform, tls: tls, workspaceCount: count, privateKey: key)
                    print("| \(platform == "gitlab" ? "GitLab" : "GitHub") | \(tls ? "HTTPS" : "HTTP") | \(count) | \(production ? "production" : "intake only") | \(requests) | \(loginFlood) | \(fmt(m.logins)) | \(fmt(m.rate)) | \(ms(m.p50)) | \(ms(m.p99)) | \(m.journalled) | \(ms(m.drain)) | \(fmt(Double(requests) / (Double(requests) / m.rate + m.drain))) | \(String(format: "%.2f", Double(m.opens) / Double(requests))) | \(production ? "\(m.processed)" : "–") | \(fmt(m.bare)) | \(String(format: "%.2f", m.rate / m.bare)) |")
                    if let sentinel = m.wrk, let bare = m.wrkBare {
                        wrkRows.append("| \(tls ? "HTTPS" : "HTTP") | \(count) | \(production ? "production" : "intake only") | \(wrkThreads) | \(concurrency) | \(sentinel.accepted) | \(sentinel.refused) | \(fmt(sentinel.rate)) | \(sentinel.p50) | \(sentinel.p99) | \(µs(sentinel.cpuPerRequest)) | \(ms(sentinel.drain)) | \(fmt(Double(sentinel.accepted) / (Double(wrkSeconds) + sentinel.drain))) | \(µs(sentinel.cpuPerAcceptedWithDrain)) | \(fmt(bare.rate)) | \(bare.p99) | \(µs(bare.cpuPerRequest)) | \(String(format: "%.2f", sentinel.rate / bare.rate)) |")
                    }
                }
            }
        }
        if !wrkRows.isEmpty {
            print("")
            print("wrk (\(wrkSeconds) s per run, \(wrkScript)):")
            print("")
            print("| transport | workspaces | mode | threads | connections | 202 | other | deliveries/s | p50 | p99 | server CPU per delivery | journal empty after | in workspace files/s | server CPU per delivery, the journal's drain included | bare route/s | bare p99 | server CPU per bare request | ratio |")
            print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
            wrkRows.forEach { print($0) }
        }
    }

    struct Measured {
        var rate: Double
        var p50: Double
        var p99: Double
        var bare: Double
        var logins: Double
        /// Deliveries whose job had run when the in-process load ended (production mode).
        var processed: Int
        /// Deliveries acknowledged through the intake journal (their workspace file was not open).
        var journalled = 0
        /// Seconds from the last 202 until the journal held nothing (every delivery in its workspace file).
        var drain = 0.0
        /// Workspace files opened from the first delivery until the journal was empty
        /// (`sentinel_workspace_opens_total`): each is SQLite parsing the file's schema, and each
        /// beyond `workspaces.max_open` closes another file.
        var opens = 0
        var wrk: WrkResult?
        var wrkBare: WrkResult?
    }

    struct WrkResult {
        var accepted: Int
        var refused: Int
        var rate: Double
        var p50: String
        var p99: String
        /// This process's CPU (the server and whatever else runs in it; `wrk` is another process)
        /// during the run, per request answered.
        var cpuPerRequest: Double
        /// Seconds from the end of the run until the intake journal held nothing: the journal's
        /// applier works on what the run left (rounds of settled deliveries are
        /// `workspaces.journal_round_pause_ms` apart, so a short run leaves up to that much).
        var drain = 0.0
        /// This process's CPU during the run and the drain, per delivery accepted: what a delivery
        /// costs once it is in its workspace file, where `cpuPerRequest` leaves out what the
        /// applier does after the run.
        var cpuPerAcceptedWithDrain = 0.0
    }

    /// Runs wrk with the Lua script against `url`, the payload in a file and its signature.
    /// Its output goes to a file and the process is polled: a blocking read would hold one of
    /// the cooperative pool's threads (of 2 here) while the in-process server needs them.
    /// With more than one of `targets` (URL path, signature), requests go round them in turn.
    func runWrk(url: String, payload: Data, signature: String, prefix: String, directory: URL,
                targets: [(path: String, signature: String)] = []) async throws -> WrkResult {
        guard let wrk else { throw BenchError("no wrk") }
        let bodyFile = directory.appendingPathComponent("wrk-body.json")
        let outputFile = directory.appendingPathComponent("wrk-\(prefix).txt")
        try payload.write(to: bodyFile)
        try? FileManager.default.removeItem(at: outputFile)
        var scriptArguments = [bodyFile.path, signature, prefix]
        if targets.count > 1 {
            let targetsFile = directory.appendingPathComponent("wrk-targets.txt")
            try Data(targets.map { "\($0.path) \($0.signature)\n" }.joined().utf8).write(to: targetsFile)
            scriptArguments += ["pull_request", targetsFile.path]
        }
        let cpuAtStart = processCPUSeconds()
        let process = try ChildProcess(executable: wrk,
                                       arguments: ["-t\(wrkThreads)", "-c\(concurrency)", "-d\(wrkSeconds)s", "--timeout", "30s", "-s", wrkScript, url, "--"]
                                                  + scriptArguments,
                                       environment: ProcessInfo.processInfo.environment,
                                       stdout: .file(outputFile.path), stderr: .file(outputFile.path))
        let status = await process.waitForExit(timeout: .seconds(Int64(wrkSeconds) + 120))
        let cpu = processCPUSeconds() - cpuAtStart
        let text = (try? String(contentsOf: outputFile, encoding: .utf8)) ?? ""
        func value(_ label: String) -> String? {
            text.split(separator: "\n").first { $0.trimmingCharacters(in: .whitespaces).hasPrefix(label) }
                .map { $0.trimmingCharacters(in: .whitespaces).dropFirst(label.count).trimmingCharacters(in: .whitespaces) }
        }
        guard status == 0, let rate = value("Requests/sec:").flatMap(Double.init),
              let accepted = value("202:").flatMap(Int.init), let refused = value("non-202:").flatMap(Int.init) else {
            throw BenchError("wrk failed:\n\(text)")
        }
        return WrkResult(accepted: accepted, refused: refused, rate: rate, p50: value("latency p50:") ?? "?", p99: value("latency p99:") ?? "?",
                         cpuPerRequest: cpu / Double(max(1, accepted + refused)))
    }

    /// Sign-in attempts that each cost one bcrypt verification (unknown emails, throttling out of
    /// the way), `loginFlood` at a time, until `stop` is set; returns the attempts made.
    func flood(client: HTTPClient, url: String, stop: Flag) async throws -> Int {
        let attempts = Counter()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<loginFlood {
                group.addTask {
                    while !stop.isSet {
                        var request = HTTPClientRequest(url: url)
                        request.method = .POST
                        request.headers.add(name: "Content-Type", value: "application/json")
                        let n = attempts.take()
                        request.body = .bytes(ByteBuffer(string: #"{"email":"flood-\#(worker)-\#(n)@example.com","password":"not the password"}"#))
                        let response = try await client.execute(request, timeout: .seconds(120))
                        _ = try await response.body.collect(upTo: 1 << 16)
                        guard response.status.code == 401 else { throw BenchError("sign-in flood: unexpected status \(response.status.code)") }
                    }
                }
            }
            try await group.waitForAll()
        }
        return attempts.value
    }

    /// The appliance's `sentinel_workspace_opens_total`, read from its own registry.
    func workspaceOpens(_ appliance: Appliance) -> Int {
        var buffer: [UInt8] = []
        appliance.prometheus.emit(into: &buffer)
        let line = String(decoding: buffer, as: UTF8.self).split(separator: "\n").first { $0.hasPrefix("sentinel_workspace_opens_total ") }
        return line.flatMap { Double($0.split(separator: " ").last ?? "") }.map { Int($0) } ?? 0
    }

    func measure(platform: String, tls: Bool, workspaceCount: Int, privateKey: String) async throws -> Measured {
        let dir = TemporaryBenchDirectory()
        defer { dir.remove() }
        var config = SentinelConfig()
        config.server.host = "127.0.0.1"
        config.server.port = 0
        config.server.tlsEnabled = tls
        config.workspaces.maxOpen = maxOpen
        config.auth.bcryptCost = bcryptCost
        config.auth.loginFailuresPerAccount = Int.max / 2
        config.auth.loginFailuresPerAddress = Int.max / 2
        // The catch-up sweep would call the (absent) GitHub API.
        config.reconcile.enabled = false
        // The appliance's log lines go to a file with `write(2)`, as `serve`'s go to the journal
        // through standard error.
        let logURL = dir.url.appendingPathComponent("appliance.log")
        let logFile = open(logURL.path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard logFile >= 0 else { throw BenchError("cannot create \(logURL.path): \(String(cString: strerror(errno)))") }
        defer { close(logFile) }
        let appliance = try Appliance(dataDirectory: DataDirectory(path: dir.url.appendingPathComponent("data").path), config: config,
                                      logger: Logger.sentinel(level: logLevel ?? (production ? "info" : "error"), sink: LogSink(fileDescriptor: logFile)))
        var targets: [(path: String, secret: Data)] = []
        for i in 0..<workspaceCount {
            let id = try appliance.workspaces.create(name: "ws-\(i)").workspaceID!
            let secret = Data("secret-\(i)-\(UUID().uuidString)".utf8)
            let service = appliance.integrations
            let summary = try await appliance.supervisor.withWorkspace(id) { actor in
                platform == "gitlab"
                    ? try await service.addGitLab(workspace: actor, baseURL: URL(string: "http://127.0.0.1:9")!, token: "glpat-bench", webhookSecret: secret,
                                                  botUsername: "sentinel-bot")
                    : try await service.addGitHub(workspace: actor, appID: 1, privateKeyPEM: privateKey, webhookSecret: secret,
                                                  apiURL: URL(string: "http://127.0.0.1:9")!)
            }
            targets.append((summary.webhookPath, secret))
        }
        let (ports, portSink) = AsyncStream.makeStream(of: Int.self)
        // Intake only: the HTTP application alone. Production: everything `serve` runs, scheduler included.
        let services: ServiceGroup? = production ? try appliance.makeServiceGroup(stopOnSignals: false) { portSink.yield($0) } : nil
        let app = production ? nil : try appliance.makeApplication(certificate: try appliance.makeServerCertificate()) { portSink.yield($0) }
        var tlsConfig = TLSConfiguration.makeClientConfiguration()
        if tls {
            tlsConfig.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(dir.url.appendingPathComponent("data/tls/sentinel.crt").path))
        }
        var clientConfig = HTTPClient.Configuration(tlsConfiguration: tlsConfig)
        clientConfig.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: concurrency)
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfig)
        let scheme = tls ? "https" : "http"
        let payload = platform == "gitlab"
            ? Data(#"{"object_kind":"merge_request","event_type":"merge_request","user":{"id":1,"username":"dev"},"project":{"id":1,"path_with_namespace":"group/sub/r"},"object_attributes":{"iid":1,"action":"open","last_commit":{"id":"abc"},"draft":false,"title":"Change"}}"#.utf8)
            : production
                ? GitHubPayload.pullRequest(action: "labeled", number: 1, head: String(repeating: "a", count: 40), base: String(repeating: "b", count: 40),
                                            repoID: 1, repoName: "o/r")
                : Data(#"{"action":"opened","number":1,"pull_request":{"number":1,"head":{"sha":"abc"},"base":{"sha":"def"}},"repository":{"id":1,"full_name":"o/r"},"installation":{"id":1}}"#.utf8)
        let signatures = targets.map {
            platform == "gitlab" ? String(decoding: $0.secret, as: UTF8.self) : GitHubWebhookSignature.sign(body: payload, secret: $0.secret)
        }
        let targetList = targets
        // The flood has its own client (own connections), started before the measurement.
        var floodConfig = HTTPClient.Configuration(tlsConfiguration: tlsConfig)
        floodConfig.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: max(1, loginFlood))
        let floodClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: floodConfig)
        let requests = self.requests
        var result = Measured(rate: 0, p50: 0, p99: 0, bare: 0, logins: 0, processed: 0)
        var stored = 0
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                if let services { try await services.run() } else if let app { try await app.runService() }
            }
            let port = await firstPort(ports)
            let stop = Flag()
            let floodStart = ContinuousClock.now
            async let flooded = flood(client: floodClient, url: "\(scheme)://127.0.0.1:\(port)/api/v1/auth/login", stop: stop)
            if loginFlood > 0 { try await Task.sleep(for: .seconds(1)) }
            let opensBefore = workspaceOpens(appliance)
            let (rate, latencies) = try await load(client: client, total: requests, concurrency: concurrency) { i in
                let t = i % targetList.count
                var request = HTTPClientRequest(url: "\(scheme)://127.0.0.1:\(port)\(targetList[t].path)")
                request.method = .POST
                if platform == "gitlab" {
                    request.headers.add(name: "X-Gitlab-Event", value: "Merge Request Hook")
                    request.headers.add(name: "X-Gitlab-Event-UUID", value: "bench-\(i)")
                    request.headers.add(name: "X-Gitlab-Token", value: signatures[t])
                } else {
                    request.headers.add(name: "X-GitHub-Event", value: "pull_request")
                    request.headers.add(name: "X-GitHub-Delivery", value: "bench-\(i)")
                    request.headers.add(name: "X-Hub-Signature-256", value: signatures[t])
                }
                request.headers.add(name: "Content-Type", value: "application/json")
                request.body = .bytes(ByteBuffer(bytes: payload))
                return (request, 202)
            }
            stop.set()
            result.logins = Double(try await flooded) / (ContinuousClock.now - floodStart).seconds
            result.rate = rate
            let p = Percentiles(latencies)
            (result.p50, result.p99) = (p.p50, p.p99)
            // Until every acknowledged delivery is in its workspace file: `serve`'s journal service
            // applies in the background; the intake-only mode has none, so it is applied here.
            let production = self.production
            @Sendable func emptyJournal() async throws {
                if production {
                    while try await appliance.journal.count() > 0 { try await Task.sleep(for: .milliseconds(2)) }
                } else {
                    await appliance.journal.applyPending()
                }
            }
            let loadEnded = ContinuousClock.now
            result.journalled = appliance.journal.accepted
            try await emptyJournal()
            result.drain = (ContinuousClock.now - loadEnded).seconds
            result.opens = workspaceOpens(appliance) - opensBefore
            if production { result.processed = try await countDeliveries(appliance, processedOnly: true) }
            // wrk against the same appliance, spread over every workspace as the in-process load was.
            if wrk != nil {
                let cpuAtStart = processCPUSeconds()
                var run = try await runWrk(url: "\(scheme)://127.0.0.1:\(port)\(targetList[0].path)", payload: payload, signature: signatures[0],
                                           prefix: "wrk-\(UUID().uuidString.prefix(8))", directory: dir.url,
                                           targets: zip(targetList, signatures).map { ($0.path, $1) })
                // Until what it acknowledged is in the workspace files, for the count below and the
                // rate into them.
                let drainStart = ContinuousClock.now
                try await emptyJournal()
                run.drain = (ContinuousClock.now - drainStart).seconds
                run.cpuPerAcceptedWithDrain = (processCPUSeconds() - cpuAtStart) / Double(max(1, run.accepted))
                result.wrk = run
            }
            // Counted while the supervisor runs (in production mode it stops with the group).
            stored = try await countDeliveries(appliance, processedOnly: false)
            if let services { await services.triggerGracefulShutdown() } else { group.cancelAll() }
            try? await group.waitForAll()
        }
        try await floodClient.shutdown()
        // The bare route, same client, same transport.
        let bareRouter = Router()
        bareRouter.post("/bare") { _, _ in Response(status: .accepted) }
        let (barePorts, barePortSink) = AsyncStream.makeStream(of: Int.self)
        let bareServer: HTTPServerBuilder
        if tls {
            let chain = try NIOSSLCertificate.fromPEMFile(dir.url.appendingPathComponent("data/tls/sentinel.crt").path).map { NIOSSLCertificateSource.certificate($0) }
            let key = try NIOSSLPrivateKey(file: dir.url.appendingPathComponent("data/tls/sentinel.key").path, format: .pem)
            bareServer = try .tls(.http1(), tlsConfiguration: .makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key)))
        } else {
            bareServer = .http1()
        }
        let bareApp = Application(router: bareRouter, server: bareServer, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                                  onServerRunning: { barePortSink.yield($0.localAddress?.port ?? 0) }, logger: Logger(label: "bare"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await bareApp.runService() }
            let barePort = await firstPort(barePorts)
            let (bareRate, _) = try await load(client: client, total: requests, concurrency: concurrency) { _ in
                var request = HTTPClientRequest(url: "\(scheme)://127.0.0.1:\(barePort)/bare")
                request.method = .POST
                request.body = .bytes(ByteBuffer(bytes: payload))
                return (request, 202)
            }
            result.bare = bareRate
            if wrk != nil {
                result.wrkBare = try await runWrk(url: "\(scheme)://127.0.0.1:\(barePort)/bare", payload: payload, signature: signatures[0],
                                                  prefix: "bare", directory: dir.url)
            }
            group.cancelAll()
            try? await group.waitForAll()
        }
        try await client.shutdown()
        // Every 202 must be a stored delivery. (wrk stops at its deadline without reading the
        // answers still in flight: those deliveries may be stored without being counted.)
        let expected = requests + (result.wrk?.accepted ?? 0)
        precondition(wrk == nil ? stored == expected : stored >= expected, "stored \(stored) of \(expected) accepted deliveries")
        await appliance.connector.shutdown()
        await appliance.gitLabConnector.shutdown()
        await appliance.supervisor.shutdown()
        return result
    }

    /// Deliveries stored in every workspace (or only those whose job has processed them).
    func countDeliveries(_ appliance: Appliance, processedOnly: Bool) async throws -> Int {
        var count = 0
        let sql = "SELECT count(*) FROM deliveries" + (processedOnly ? " WHERE processed_at IS NOT NULL" : "")
        for id in try appliance.control.workspaceIDs() {
            count += try await appliance.supervisor.withWorkspace(id) { try await $0.read { db in try Int.fetchOne(db, sql: sql) ?? 0 } }
        }
        return count
    }

    /// The port a server reports once it listens (0 if it stopped before).
    func firstPort(_ ports: AsyncStream<Int>) async -> Int {
        for await port in ports { return port }
        return 0
    }

    func load(client: HTTPClient, total: Int, concurrency: Int,
              make: @escaping @Sendable (Int) -> (HTTPClientRequest, Int)) async throws -> (Double, [Double]) {
        let next = Counter()
        let recorder = LatencyRecorder()
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<concurrency {
                group.addTask {
                    while true {
                        let i = next.take()
                        if i >= total { return }
                        let (request, expected) = make(i)
                        let began = ContinuousClock.now
                        let response = try await client.execute(request, timeout: .seconds(30))
                        _ = try await response.body.collect(upTo: 1 << 16)
                        guard Int(response.status.code) == expected else { throw BenchError("unexpected status \(response.status.code)") }
                        recorder.record((ContinuousClock.now - began).seconds)
                    }
                }
            }
            try await group.waitForAll()
        }
        let elapsed = (ContinuousClock.now - start).seconds
        return (Double(total) / elapsed, recorder.values())
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
