import AsyncHTTPClient
import Foundation
import GRDB
import Logging
import SentinelCore
import SentinelServer
import SentinelTestSupport
import Testing

@Suite("Serve's service group")
struct ServiceGroupLifecycleTests {
    @Test("graceful shutdown of serve's group stops the listener, drains jobs, releases the rest and closes every file")
    func gracefulShutdownInReverseOrder() async throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanup() }
        let done = Recorder<Int64>()
        // The slow job runs until the test has seen both jobs running and is about to shut down
        // (a fixed 300 ms could end before a loaded machine let the test look), then a little more.
        let shuttingDown = Rendezvous<Void>()
        var registry = JobRegistry()
        registry.register("slow") { ctx in
            await shuttingDown.wait()
            try await Task.sleep(for: .milliseconds(200))
            done.append(ctx.job.id)
        }
        registry.register("stuck") { _ in try await Task.sleep(for: .seconds(60)) }
        var config = testConfig { $0.shutdown.drainSeconds = 1 }
        config.server.tlsEnabled = false
        config.server.host = "127.0.0.1"
        config.server.port = 0
        let appliance = try Appliance(dataDirectory: DataDirectory(path: dir.path), config: config, registry: registry,
                                      logger: Logger.sentinel(level: "error", sink: CapturedLog().sink))
        let ws = try appliance.workspaces.create(name: "w").workspaceID!
        let (slow, stuck) = try await appliance.supervisor.withWorkspace(ws) { actor in
            (try await actor.enqueue(JobRequest(kind: "slow")).jobID, try await actor.enqueue(JobRequest(kind: "stuck")).jobID)
        }
        let ports = Rendezvous<Int>()
        let services = RunningGroup(try appliance.makeServiceGroup(stopOnSignals: false) { await ports.set($0) })
        let port = await ports.wait()
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        let health = try await client.execute(HTTPClientRequest(url: "http://127.0.0.1:\(port)/healthz"), timeout: .seconds(10))
        #expect(health.status == .ok)
        #expect(await eventually { await appliance.scheduler.runningJobs == 2 })
        // The listener is known by its socket, not its port: once it is closed, a server another
        // test starts meanwhile may be given the same port.
        let listener = Self.listeningSocketInode(port: port)
        #expect(listener.map { Self.openSocketInodes().contains($0) } == true, "the listener is in /proc/net/tcp: \(String(describing: listener))")

        try await client.shutdown()
        await shuttingDown.set(())
        try await services.shutdown()

        // The job that could finish within the drain deadline finished; the stuck one was released.
        #expect(done.all == [slow])
        #expect(await appliance.scheduler.isRunning == false)
        #expect(await appliance.scheduler.runningJobs == 0)
        // The supervisor stopped last: every file checkpointed and closed, no new work accepted.
        #expect(await appliance.supervisor.isShuttingDown)
        #expect(await appliance.supervisor.openWorkspaceIDs.isEmpty)
        await #expect(throws: WorkspaceError.self) { try await appliance.supervisor.withWorkspace(ws) { _ in } }
        // The listener is gone: its socket is closed.
        #expect(listener.map { !Self.openSocketInodes().contains($0) } == true)

        let database = try DatabaseOpener().open(appliance.dataDirectory.workspaceFile(ws), kind: .workspace)
        let rows = try await database.read { db in try JobQueue.list(state: nil, in: db) }
        #expect(rows.first { $0.id == slow }?.state == .succeeded)
        let released = try #require(rows.first { $0.id == stuck })
        #expect(released.state == .queued)
        #expect(released.attempts == 0, "a released job's attempt is not counted")
        #expect(released.leaseOwner == nil)
        try database.close()
    }

    /// The inode of the socket listening on 127.0.0.1:`port`, from /proc/net/tcp.
    static func listeningSocketInode(port: Int) -> String? {
        // Read to its end: Foundation's `String(contentsOfFile:)` stopped at the first page of
        // this file (its size reads as 0), so a table of many sockets lost the listener.
        guard let handle = FileHandle(forReadingAtPath: "/proc/net/tcp"),
              let data = try? handle.readToEnd() else { return nil }
        try? handle.close()
        let table = String(decoding: data, as: UTF8.self)
        let local = String(format: "0100007F:%04X", port)
        for line in table.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ")
            // sl, local_address, rem_address, st (0A is LISTEN), tx:rx, tr:when, retrnsmt, uid, timeout, inode
            if fields.count > 9, fields[1] == local, fields[3] == "0A" { return String(fields[9]) }
        }
        return nil
    }

    /// The inodes of every socket this process has open.
    static func openSocketInodes() -> Set<String> {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return Set(fds.compactMap { fd -> String? in
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)"),
                  target.hasPrefix("socket:[") else { return nil }
            return String(target.dropFirst("socket:[".count).dropLast())
        })
    }
}
