import AsyncHTTPClient
import Foundation
import GRDB
import Logging
import NIOCore
import SentinelCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One workspace of the rig: its GitHub App integration (on the fake GitHub), its repository and
/// the secret its deliveries are signed with.
public struct RigTenant: Sendable {
    public let workspace: WorkspaceID
    public let webhookPath: String
    public let repo: String
    public let repoID: Int
    public let secret: Data
}

/// What the rig asks of the appliance it runs.
public struct RigOptions: Sendable {
    public var workspaces = 4
    /// `workspaces.max_open` of the served binary.
    public var maxOpen = 256
    /// Each workspace gets an OpenAI provider on the fake LLM (one AI call per run).
    public var withAI = true
    /// Extra `SENTINEL_*` variables for `serve`.
    public var environment: [String: String] = [:]
    /// Where the data directory lives (a tmpfs mount for the disk-full scenario); nil: a temporary directory.
    public var dataPath: String?

    public init() {}
}

/// The reliability suite's world: the REAL `sentinel serve` binary as a child process, against
/// the loopback fake GitHub and fake LLM served by this process (so they outlive every kill of
/// the appliance and count what it did). The data directory is prepared in-process with
/// SentinelCore (workspaces, integrations, providers, plan) before the first start, which is
/// what `sentinel workspace create`/`integration add`/`provider add`/`plan set` do, in bulk.
public final class ReliabilityRig: Sendable {
    public let github: FakeGitHub
    public let llm: FakeLLMServer
    public let dataPath: String
    public let port: Int
    public let tenants: [RigTenant]
    public let options: RigOptions
    let http: HTTPClient
    private let temporary: TemporaryDirectory?
    private let child = Mutex<SentinelProcess?>(nil)
    /// Every delivery the appliance answered 2xx, with the workspace it is for.
    private let acknowledged = Mutex<[String: WorkspaceID]>([:])
    private let refusals = Mutex<[Int: Int]>([:])
    private let sequence = Mutex(0)

    /// The patch every pull request of the rig carries (one AI chunk).
    public static let files: [(filename: String, status: String, patch: String?)] = [
        ("src/app.py", "modified", "@@ -1,3 +1,4 @@\n import os\n-KEY = os.environ['KEY']\n+KEY = os.environ.get('KEY')\n+print('hello')\n print(KEY)"),
    ]

    public static func start(_ options: RigOptions = RigOptions()) async throws -> ReliabilityRig {
        let github = try await FakeGitHub.start()
        let llm = try await FakeLLMServer.start()
        let temporary = options.dataPath == nil ? TemporaryDirectory("sentinel-reliability") : nil
        let dataPath = options.dataPath ?? temporary!.url.appendingPathComponent("data").path
        do {
            let tenants = try await prepare(dataPath: dataPath, options: options, github: github, llm: llm)
            return ReliabilityRig(github: github, llm: llm, dataPath: dataPath, port: try freePort(), tenants: tenants, options: options,
                                  temporary: temporary)
        } catch {
            await github.stop()
            await llm.stop()
            temporary?.cleanup()
            throw error
        }
    }

    private init(github: FakeGitHub, llm: FakeLLMServer, dataPath: String, port: Int, tenants: [RigTenant], options: RigOptions,
                 temporary: TemporaryDirectory?) {
        self.github = github
        self.llm = llm
        self.dataPath = dataPath
        self.port = port
        self.tenants = tenants
        self.options = options
        self.temporary = temporary
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(2), read: .seconds(20))
        self.http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    static func prepare(dataPath: String, options: RigOptions, github: FakeGitHub, llm: FakeLLMServer) async throws -> [RigTenant] {
        let directory = DataDirectory(path: dataPath)
        try directory.prepare()
        let config = SentinelConfig()
        let opener = DatabaseOpener(config: config)
        let control = try ControlStore(dataDirectory: directory, opener: opener)
        let workspaces = WorkspaceService(dataDirectory: directory, control: control, opener: opener)
        let masterKey = try MasterKey.loadOrCreate(at: directory.masterKeyFile)
        let integrations = IntegrationService(control: control, masterKey: masterKey)
        let providers = ProviderStore(masterKey: masterKey)
        let billing = BuiltinBillingProvider(control: control)
        let supervisor = Supervisor(dataDirectory: directory, control: control, config: config, registry: JobRegistry(),
                                    logger: Logger.sentinel(label: "reliability.prepare", level: "error", sink: CapturedLog().sink))
        var tenants: [RigTenant] = []
        let (pem, appID, base, openAI) = (github.privateKeyPEM, github.appID, github.baseURL, llm.openAIBaseURL)
        for index in 0..<options.workspaces {
            // Blocking file work off the cooperative pool (other tests of the process share it).
            let workspace = try await offPool { try workspaces.create(name: "tenant-\(index)").workspaceID! }
            let secret = Data("reliability-secret-\(index)".utf8)
            let withAI = options.withAI
            let integration = try await supervisor.withWorkspace(workspace) { actor in
                let added = try await integrations.addGitHub(workspace: actor, appID: appID, privateKeyPEM: pem, webhookSecret: secret, apiURL: base)
                if withAI {
                    _ = try await providers.add(kind: "openai", apiKey: FakeLLMServer.defaultKeys[.openAI]!, model: "gpt-4o-mini", baseURL: openAI,
                                                by: "reliability", in: actor)
                }
                return added
            }
            try await offPool { try billing.assign("enterprise", to: workspace) }
            tenants.append(RigTenant(workspace: workspace, webhookPath: integration.webhookPath, repo: "tenant\(index)/service",
                                     repoID: 50_000 + index, secret: secret))
        }
        await supervisor.shutdown()
        return tenants
    }

    // MARK: The appliance process

    /// The environment `serve` runs with: short leases and backoff so a killed process's work is
    /// taken over quickly, warnings only on stderr (the rig keeps it in memory).
    var serveEnvironment: [String: String] {
        var env = [
            "SENTINEL_LOG_LEVEL": "warning",
            "SENTINEL_JOBS_LEASE_SECONDS": "3",
            "SENTINEL_JOBS_BACKOFF_BASE_SECONDS": "0.1",
            "SENTINEL_JOBS_BACKOFF_MAX_SECONDS": "1",
            "SENTINEL_JOBS_POLL_INTERVAL_MS": "100",
            "SENTINEL_GITHUB_REQUEST_TIMEOUT_SECONDS": "5",
            "SENTINEL_SHUTDOWN_DRAIN_SECONDS": "5",
            "SENTINEL_WORKSPACES_MAX_OPEN": String(options.maxOpen),
        ]
        for (key, value) in options.environment { env[key] = value }
        return env
    }

    /// Starts `sentinel serve` and waits until `/readyz` answers 200.
    @discardableResult
    public func startServer(timeout: Duration = .seconds(60)) async throws -> SentinelProcess {
        let process = try SentinelProcess.start(["serve", "--data-dir", dataPath, "--host", "127.0.0.1", "--port", String(port), "--no-tls"],
                                                environment: serveEnvironment)
        child.withLock { $0 = process }
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if process.hasExited { throw RigError("sentinel serve exited at start: \(process.stderr.suffix(2000))") }
            if (try? await get("/readyz").status) == 200 { return process }
            try await Task.sleep(for: .milliseconds(25))
        }
        process.kill()
        throw RigError("sentinel serve was not ready within \(timeout): \(process.stderr.suffix(2000))")
    }

    public var server: SentinelProcess? { child.withLock { $0 } }

    /// SIGKILL, and waits until the process is gone.
    public func killServer() async {
        guard let process = child.withLock({ $0 }) else { return }
        process.kill()
        _ = await process.waitForExit(timeout: .seconds(30))
    }

    /// SIGTERM (a clean stop); returns the exit status.
    public func stopServer() async -> Int32? {
        guard let process = child.withLock({ $0 }) else { return nil }
        process.terminate()
        let status = await process.waitForExit(timeout: .seconds(60))
        if status == nil { process.kill(); _ = await process.waitForExit(timeout: .seconds(10)) }
        return status
    }

    /// Kills whatever still runs and removes the temporary data. Call it whatever happened.
    public func shutdown() async {
        if let process = child.withLock({ $0 }) {
            process.kill()
            _ = await process.waitForExit(timeout: .seconds(10))
        }
        try? await http.shutdown()
        await github.stop()
        await llm.stop()
        temporary?.cleanup()
    }

    // MARK: HTTP

    public func get(_ path: String) async throws -> (status: Int, body: String) {
        let response = try await http.execute(HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)"), timeout: .seconds(10))
        return (Int(response.status.code), String(buffer: try await response.body.collect(upTo: 4 << 20)))
    }

    /// One delivery attempt: the status and `Retry-After`, or nil when the appliance could not be reached.
    public func deliver(_ tenant: RigTenant, event: String, body: Data, id: String) async -> (status: Int, retryAfter: String?)? {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(tenant.webhookPath)")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "X-GitHub-Event", value: event)
        request.headers.add(name: "X-GitHub-Delivery", value: id)
        request.headers.add(name: "X-Hub-Signature-256", value: GitHubWebhookSignature.sign(body: body, secret: tenant.secret))
        request.body = .bytes(ByteBuffer(bytes: body))
        do {
            let response = try await http.execute(request, timeout: .seconds(20))
            _ = try? await response.body.collect(upTo: 1 << 20)
            let status = Int(response.status.code)
            if (200..<300).contains(status) {
                acknowledged.withLock { $0[id] = tenant.workspace }
            } else {
                refusals.withLock { $0[status, default: 0] += 1 }
            }
            return (status, response.headers.first(name: "Retry-After"))
        } catch {
            return nil
        }
    }

    /// Sends a delivery as GitHub (or the catch-up sweep) would until it is acknowledged: the same
    /// delivery id again after a refused connection, a 5xx or a 503's `Retry-After` (capped at `maxWait`).
    public func deliverUntilAcknowledged(_ tenant: RigTenant, event: String, body: Data, id: String = UUID().uuidString,
                                         maxWait: Duration = .seconds(1), giveUpAfter: Duration = .seconds(300)) async -> Bool {
        let deadline = ContinuousClock.now + giveUpAfter
        while ContinuousClock.now < deadline {
            if let answer = await deliver(tenant, event: event, body: body, id: id) {
                if (200..<300).contains(answer.status) { return true }
                if (400..<500).contains(answer.status) { return false }
                let wait = answer.retryAfter.flatMap(Double.init).map { Duration.milliseconds(Int($0 * 1000)) } ?? .milliseconds(100)
                try? await Task.sleep(for: min(wait, maxWait))
            } else {
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
        return false
    }

    public var acknowledgedDeliveries: [String: WorkspaceID] { acknowledged.withLock { $0 } }
    /// Non-2xx answers by status.
    public var refusedDeliveries: [Int: Int] { refusals.withLock { $0 } }

    // MARK: Load

    /// Opens a pull request on the fake GitHub and delivers `opened`; returns the PR number.
    @discardableResult
    public func openPull(_ tenant: RigTenant, number: Int? = nil) async -> Int {
        let n = number ?? sequence.withLock { $0 += 1; return $0 }
        let head = Self.sha("open", tenant.repoID, n)
        await github.state.addPull(FakePullRequest(repo: tenant.repo, number: n, headSHA: head, baseSHA: "base000", files: Self.files))
        _ = await deliverUntilAcknowledged(tenant, event: "pull_request", body: Self.pullRequestPayload(tenant, action: "opened", number: n, head: head))
        return n
    }

    /// A push to a pull request: a new head on the fake GitHub, then the `synchronize` delivery.
    public func push(_ tenant: RigTenant, number: Int) async {
        let before = await github.state.pulls["\(tenant.repo)#\(number)"]?.headSHA ?? "base000"
        let head = Self.sha("push", tenant.repoID, number, sequence.withLock { $0 += 1; return $0 })
        await github.state.push(repo: tenant.repo, number, head: head)
        _ = await deliverUntilAcknowledged(tenant, event: "pull_request",
                                           body: Self.pullRequestPayload(tenant, action: "synchronize", number: number, head: head, before: before))
    }

    static func sha(_ parts: Any...) -> String {
        SHA256Hex.of(Data(parts.map { "\($0)" }.joined(separator: ":").utf8)).prefix(40).description
    }

    public static func pullRequestPayload(_ tenant: RigTenant, action: String, number: Int, head: String, before: String? = nil) -> Data {
        var object: [String: Any] = [
            "action": action, "number": number,
            "pull_request": ["number": number, "draft": false, "state": "open",
                             "head": ["sha": head, "ref": "feature", "repo": ["id": tenant.repoID, "full_name": tenant.repo]],
                             "base": ["sha": "base000", "ref": "main", "repo": ["id": tenant.repoID, "full_name": tenant.repo]],
                             "user": ["login": "octocat", "type": "User"]],
            "repository": ["id": tenant.repoID, "full_name": tenant.repo, "private": false],
            "installation": ["id": 55],
            "sender": ["login": "octocat", "type": "User"],
        ]
        if let before { object["before"] = before; object["after"] = head }
        return try! JSONSerialization.data(withJSONObject: object)
    }

    // MARK: Reading the files

    public var dataDirectory: DataDirectory { DataDirectory(path: dataPath) }

    /// Runs blocking file work on a dispatch thread, never on the cooperative pool (a read
    /// waiting for the server's lock must not stall other tasks of this process).
    static func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
        }
    }

    /// Reads one workspace file (read-only; works beside a running server and after a kill).
    public func read<T: Sendable>(_ tenant: RigTenant, _ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        let path = dataDirectory.workspaceFile(tenant.workspace).path
        return try await Self.offPool {
            var configuration = Configuration()
            configuration.readonly = true
            configuration.busyMode = .timeout(10)
            let queue = try DatabaseQueue(path: path, configuration: configuration)
            defer { try? queue.close() }
            return try queue.read(body)
        }
    }

    /// Sums `sql` (one integer) over every workspace file.
    public func total(_ sql: String) async throws -> Int {
        var sum = 0
        for tenant in tenants { sum += try await read(tenant) { try Int.fetchOne($0, sql: sql) ?? 0 } }
        return sum
    }

    /// Jobs queued or running and runs not final, over all workspaces.
    public func outstandingWork() async throws -> (jobs: Int, runs: Int) {
        (try await total("SELECT count(*) FROM jobs WHERE state IN ('queued','running')"),
         try await total("SELECT count(*) FROM review_runs WHERE state IN ('queued','running')"))
    }

    /// Waits until no job is queued or running and no run is open in any workspace.
    public func drain(timeout: Duration = .seconds(120)) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let work = try? await outstandingWork(), work.jobs == 0, work.runs == 0 { return true }
            try await Task.sleep(for: .milliseconds(200))
        }
        return false
    }

    /// `PRAGMA integrity_check` of control.sqlite and every workspace file: the files that did not answer `ok`.
    public func integrityFailures() async -> [String] {
        let files = [dataDirectory.controlFile.path] + tenants.map { dataDirectory.workspaceFile($0.workspace).path }
        return (try? await Self.offPool { Self.failingIntegrity(files) }) ?? files
    }

    static func failingIntegrity(_ files: [String]) -> [String] {
        files.filter { path in
            do {
                let queue = try DatabaseQueue(path: path)
                defer { try? queue.close() }
                return try queue.read { try String.fetchOne($0, sql: "PRAGMA integrity_check") } != "ok"
            } catch {
                return true
            }
        }
    }

    /// Bytes of every `-wal` file under the data directory.
    public func walBytes() -> Int {
        var files = [dataDirectory.controlFile.path + "-wal"]
        files += tenants.map { dataDirectory.workspaceFile($0.workspace).path + "-wal" }
        return files.reduce(0) { $0 + ((try? FileManager.default.attributesOfItem(atPath: $1)[.size] as? Int) ?? 0) }
    }

    // MARK: The invariants

    /// What a scenario checks after a clean restart and drain.
    public struct Invariants: Sendable {
        public var acknowledged = 0
        /// Acknowledged deliveries absent from their workspace file.
        public var lost = 0
        /// Acknowledged deliveries stored but never processed.
        public var unprocessed = 0
        /// (repository, PR, head) with more than one review posted at the fake GitHub.
        public var duplicateReviews = 0
        public var reviewsPosted = 0
        /// AI calls the fake LLM answered 200.
        public var aiCalls = 0
        public var usageRows = 0
        /// Usage rows beyond the AI calls answered (a call counted twice), and rows sharing a call.
        public var countedTwice = 0
        /// AI calls answered and never recorded.
        public var uncounted = 0
        public var runsLeftOpen = 0
        public var jobsLeftOpen = 0
        public var deadJobs = 0
        public var runsByState: [String: Int] = [:]
        /// Reasons of failed runs, with their counts.
        public var failureReasons: [String: Int] = [:]
        public var integrityFailures: [String] = []
    }

    public func invariants() async throws -> Invariants {
        var result = Invariants()
        let acked = acknowledgedDeliveries
        result.acknowledged = acked.count
        for tenant in tenants {
            let ids = acked.filter { $0.value == tenant.workspace }.map(\.key)
            let stored: [String: Bool] = try await read(tenant) { db in
                var map: [String: Bool] = [:]
                for row in try Row.fetchAll(db, sql: "SELECT id, processed_at IS NOT NULL AS done FROM deliveries") {
                    let id: String = row["id"]
                    let done: Bool = row["done"]
                    map[id] = done
                }
                return map
            }
            for id in ids {
                switch stored[id] {
                case nil: result.lost += 1
                case false?: result.unprocessed += 1
                case true?: break
                }
            }
            let states: [(String, Int)] = try await read(tenant) { db in
                try Row.fetchAll(db, sql: "SELECT state, count(*) AS n FROM review_runs GROUP BY state").map { row -> (String, Int) in
                    let state: String = row["state"]
                    let n: Int = row["n"]
                    return (state, n)
                }
            }
            for (state, n) in states { result.runsByState[state, default: 0] += n }
            let reasons: [(String, Int)] = try await read(tenant) { db in
                try Row.fetchAll(db, sql: "SELECT coalesce(substr(reason, 1, 80), '-') AS reason, count(*) AS n FROM review_runs WHERE state = 'failed' GROUP BY 1")
                    .map { row -> (String, Int) in
                        let reason: String = row["reason"]
                        let n: Int = row["n"]
                        return (reason, n)
                    }
            }
            for (reason, n) in reasons { result.failureReasons[reason, default: 0] += n }
        }
        let reviews = await github.state.reviews.filter { $0.userLogin == FakeGitHubState.botLogin }
        result.reviewsPosted = reviews.count
        result.duplicateReviews = Dictionary(grouping: reviews) { "\($0.repo)#\($0.number)@\($0.commitID)" }.values.filter { $0.count > 1 }.count
        result.aiCalls = await llm.state.requests().filter { $0.status == 200 }.count
        result.usageRows = try await total("SELECT count(*) FROM usage_records")
        let sharedKeys = try await total("SELECT count(*) - count(DISTINCT call_key) FROM usage_records")
        result.countedTwice = max(0, result.usageRows - result.aiCalls) + sharedKeys
        result.uncounted = max(0, result.aiCalls - result.usageRows)
        result.runsLeftOpen = try await total("SELECT count(*) FROM review_runs WHERE state IN ('queued','running')")
        result.jobsLeftOpen = try await total("SELECT count(*) FROM jobs WHERE state IN ('queued','running')")
        result.deadJobs = try await total("SELECT count(*) FROM jobs WHERE state = 'dead'")
        result.integrityFailures = await integrityFailures()
        return result
    }
}

public struct RigError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A TCP port free on 127.0.0.1 right now, for a server started later: below the kernel's ephemeral
/// range, which port 0 and outbound connections take from (tests in parallel open many, and one
/// could take a port picked there before the server binds it).
public func freePort() throws -> Int {
    let range = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)) ?? ""
    let ephemeralLow = range.split(whereSeparator: \.isWhitespace).first.flatMap { Int($0) } ?? 32768
    for _ in 0..<100 {
        if let held = try? HeldPort(Int.random(in: 10000..<max(ephemeralLow - 200, 10001))) { return held.port }
    }
    return try HeldPort(0).port
}

/// A port of 127.0.0.1 kept bound, not listening, while this lives: a connection to it is refused,
/// and no other server (a fake of a test running in parallel) can take it meanwhile, as one can
/// take the port of a fake that merely stopped. No `SO_REUSEADDR`: with it, a server binding
/// port 0 could be given this one.
public final class HeldPort: Sendable {
    public let port: Int
    private let descriptor: Int32

    /// Binds `port` (a fake's, right after it stopped; 0 for one the kernel picks); throws when
    /// something else holds it.
    public init(_ port: Int) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw RigError("socket() failed") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard bound == 0 else {
            close(fd)
            throw RigError("port \(port) of 127.0.0.1 is taken (errno \(errno))")
        }
        let named = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        guard named == 0 else {
            close(fd)
            throw RigError("getsockname() failed")
        }
        (self.port, descriptor) = (Int(UInt16(bigEndian: address.sin_port)), fd)
    }

    deinit { close(descriptor) }
}

/// What /proc says about a process: resident memory and open descriptors.
public enum ProcessSample {
    public static func residentKiB(_ pid: Int32) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "")
        }
        return nil
    }

    public static func descriptors(_ pid: Int32) -> Int? {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd"))?.count
    }

    /// Open descriptors, and how many of them are workspace files (a database, its `-wal` or
    /// `-shm`) in `workspaces`: what `workspaces.max_open` bounds, apart from sockets, control.sqlite,
    /// the intake journal and the event loops' descriptors.
    public static func descriptors(_ pid: Int32, workspaces: String) -> (all: Int, workspaceFiles: Int)? {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd") else { return nil }
        let prefix = workspaces.hasSuffix("/") ? workspaces : workspaces + "/"
        let files = names.count { name in
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(name)"))?.hasPrefix(prefix) ?? false
        }
        return (names.count, files)
    }
}
