import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import SentinelCore
@testable import SentinelServer
import SentinelTestSupport
import Testing

@Suite("Observability under hostile input")
struct ObservabilityHardeningTests {
    func makeAppliance(_ dir: TemporaryDirectory, log: CapturedLog = CapturedLog()) throws -> Appliance {
        var config = testConfig()
        config.server.tlsEnabled = false
        return try Appliance(dataDirectory: DataDirectory(path: dir.path), config: config, registry: JobRegistry(),
                             logger: Logger.sentinel(level: "info", sink: log.sink))
    }

    @Test("the tracer is given a request's trace context and nothing else of its headers (it logs the carrier it cannot read)")
    func traceCarrierHoldsOnlyTraceContext() throws {
        let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        var headers: HTTPFields = [.authorization: "Bearer snt_VICTIMapitoken0123456789", .cookie: "sentinel_session=sns_VICTIM"]
        headers[TraceHeaders.traceparent] = parent
        headers[TraceHeaders.tracestate] = "vendor=1"
        let carrier = try #require(TraceHeaders.carrier(of: headers))
        #expect(carrier.count == 2 && carrier[TraceHeaders.traceparent] == parent && carrier[TraceHeaders.tracestate] == "vendor=1")
        // Malformed: no carrier at all (a new trace, nothing logged).
        for bad in ["01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
                    "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
                    "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                    String(repeating: "0", count: 30_000)] {
            headers[TraceHeaders.traceparent] = bad
            #expect(TraceHeaders.carrier(of: headers) == nil, "\(bad.prefix(60))")
        }
        // A later version is read by its first four fields, as version 00.
        #expect(TraceHeaders.wellFormed("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra") == parent)
        #expect(TraceHeaders.wellFormed(parent) == parent)
    }

    @Test("no header value reaches the log when a request's traceparent is malformed")
    func malformedTraceparentLogsNoHeaders() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let log = CapturedLog()
        let appliance = try makeAppliance(dir, log: log)
        let app = Application(router: try appliance.makeRouter())
        try await app.test(.router) { client in
            for parent in ["01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra", "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01"] {
                _ = try await client.execute(uri: "/api/v1/auth/me", method: .get,
                                             headers: [.authorization: "Bearer snt_VICTIMapitoken0123456789", .init("traceparent")!: parent])
            }
        }
        #expect(!log.all.joined().contains("VICTIM"), "\(log.all)")
    }

    @Test("a request no route matches is labelled `unmatched` in the metrics, as documented (Hummingbird names it NotFound)")
    func unmatchedRoute() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let appliance = try makeAppliance(dir)
        let app = Application(router: try appliance.makeRouter(), configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        // Live: /metrics answers loopback only, and the router's own test client has no address.
        try await app.test(.live) { client in
            #expect(try await client.execute(uri: "/no-such-page", method: .get).status == .notFound)
            let metrics = try await client.execute(uri: "/metrics", method: .get)
            let text = String(buffer: metrics.body)
            #expect(text.contains(#"route="unmatched""#) && !text.contains(#"route="NotFound""#), "\(text.prefix(2000))")
        }
    }

    @Test("/readyz's look at control.sqlite leaves this process's locks on the file in place (closing a descriptor of the file dropped them, and a CLI beside the server then deleted its log)",
          .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/python3"), "/usr/bin/python3 looks at the lock from another process"))
    func readinessKeepsTheLocks() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        // A file no connection of this process has open, so nothing else here closes a descriptor of it.
        let file = dir.url.appendingPathComponent("control.sqlite")
        try (Data("SQLite format 3\u{0}".utf8) + Data(count: 4096 - 16)).write(to: file)
        // A lock of the test's own: POSIX drops every lock a process holds on a file when any
        // descriptor of that file is closed in the process (SQLite's locks among them).
        let fd = open(file.path, O_RDWR)
        #expect(fd >= 0)
        defer { close(fd) }
        var lock = flock()
        lock.l_type = Int16(F_WRLCK)
        lock.l_whence = Int16(SEEK_SET)
        lock.l_start = 100
        lock.l_len = 1
        #expect(fcntl(fd, F_SETLK, &lock) == 0)
        // Seen from another process, as a CLI beside the server sees it: a non-blocking lock on the
        // same byte is refused while this process's lock is held.
        func held() throws -> Bool {
            let probe = Process()
            probe.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
            probe.arguments = ["-c", """
                import fcntl, os, sys
                fd = os.open(sys.argv[1], os.O_RDWR)
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 100, 0)
                except OSError:
                    sys.exit(3)
                """, file.path]
            try probe.run()
            probe.waitUntilExit()
            return probe.terminationStatus == 3
        }
        #expect(try held())
        for _ in 0..<3 { #expect(OperationsRoutes.isDatabaseFile(file)) }
        #expect(try held(), "the process's locks on the file are still held")
        #expect(!OperationsRoutes.isDatabaseFile(dir.url.appendingPathComponent("missing.sqlite")))
        try Data().write(to: file)
        #expect(!OperationsRoutes.isDatabaseFile(file), "an emptied file is not a database")
    }

    @Test("/readyz reads control.sqlite itself: a file emptied under the server is storage unavailable, not ok")
    func readinessReadsTheFile() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let appliance = try makeAppliance(dir)
        let app = Application(router: try appliance.makeRouter())
        try await app.test(.router) { client in
            let before = try await client.execute(uri: "/readyz", method: .get)
            #expect(String(buffer: before.body).contains(#""storage":"ok""#), "\(String(buffer: before.body))")
            let control = appliance.dataDirectory.controlFile
            let handle = try FileHandle(forWritingTo: control)
            try handle.truncate(atOffset: 0)
            try handle.close()
            try? FileManager.default.removeItem(atPath: control.path + "-wal")
            let after = try await client.execute(uri: "/readyz", method: .get)
            #expect(after.status == .serviceUnavailable)
            #expect(String(buffer: after.body).contains(#""storage":"unavailable""#), "\(String(buffer: after.body))")
        }
    }
}

@Suite("API input: strict")
struct APIStrictInputTests {
    @Test("a query parameter without a value, or an empty part, is a 400 naming it (the generated decoder failed: 500)")
    func bareQueryParameters() async throws {
        let world = try APIWorld()
        try await world.test { api in
            for path in ["/workspaces/\(world.workspaceA)/runs?limit", "/workspaces/\(world.workspaceA)/runs?&&", "/workspaces/\(world.workspaceA)/runs?limit=5&&&"] {
                let reply = try await api.call(.get, path, token: world.token(.owner))
                #expect(reply.status == .badRequest, "\(path): \(reply.body)")
            }
            let bare = try await api.call(.get, "/workspaces/\(world.workspaceA)/runs?state", token: world.token(.owner))
            #expect(bare.body.contains("state: has no value"), "\(bare.body)")
            #expect(try await api.call(.get, "/users?cursor=abc", token: world.adminToken).status == .badRequest)
        }
    }

    @Test("JSON bodies: a trailing comma, a body that is not UTF-8 and a name of marks piled on one letter are refused")
    func strictBodies() async throws {
        let world = try APIWorld()
        try await world.test { api in
            let comma = try await api.call(.post, "/workspaces/\(world.workspaceA)/teams", token: world.token(.owner), body: #"{"name":"trailing",}"#)
            #expect(comma.status == .badRequest && comma.body.contains("comma"), "\(comma.body)")
            let nested = try await api.call(.put, "/workspaces/\(world.workspaceA)/settings", token: world.token(.owner),
                                            body: #"{"values":{"review.min_severity":"medium"},"locks":["review.min_severity",]}"#)
            #expect(nested.status == .badRequest && nested.body.contains("locks"), "\(nested.body)")
            let utf16 = String(decoding: Array(#"{"name":"u16"}"#.utf16).flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }, as: UTF8.self)
            let wide = try await api.call(.post, "/workspaces/\(world.workspaceA)/teams", token: world.token(.owner), body: utf16)
            #expect(wide.status == .badRequest, "\(wide.body)")
            for name in ["del\u{7F}", "csi\u{9B}", "line\u{2028}x"] {
                let reply = try await api.call(.post, "/workspaces/\(world.workspaceA)/teams", token: world.token(.owner),
                                               body: #"{"name":"\#(name)"}"#)
                #expect(reply.status == .badRequest && reply.body.contains("control characters"), "\(reply.body)")
            }
            let spaced = try await api.call(.post, "/workspaces/\(world.workspaceA)/providers", token: world.token(.owner),
                                            body: #"{"kind":"openai","api_key":"k","model":"m","base_url":"http://127.0.0.1:9/v1 x"}"#)
            #expect(spaced.status == .badRequest && spaced.body.contains("base_url"), "\(spaced.body)")
            // Names are composed (NFC): `café` typed two ways is one name.
            #expect(try await api.call(.post, "/workspaces/\(world.workspaceA)/teams", token: world.token(.owner), body: #"{"name":"caf\u00e9"}"#).status == .created)
            #expect(try await api.call(.post, "/workspaces/\(world.workspaceA)/teams", token: world.token(.owner), body: #"{"name":"cafe\u0301"}"#).status == .conflict)
            #expect(try await api.call(.post, "/workspaces", token: world.adminToken, body: #"{"name":"caf\u00e9"}"#).status == .created)
            #expect(try await api.call(.post, "/workspaces", token: world.adminToken, body: #"{"name":"cafe\u0301"}"#).status == .conflict)
            let marks = "z" + String(repeating: "\u{301}", count: 3_000)
            let piled = try await api.call(.post, "/workspaces/\(world.workspaceA)/teams", token: world.token(.owner), body: #"{"name":"\#(marks)"}"#)
            #expect(piled.status == .badRequest && piled.body.contains("at most"), "\(piled.body.prefix(300))")
        }
    }
}
