import Foundation
import NIOCore
import NIOPosix
import SentinelCore
import SentinelTestSupport
import Testing

/// `serve` under its limit on open files: systemd and login shells start it at a soft limit of
/// 1,024, and a busy appliance (three descriptors per open workspace file, one per connection) can
/// reach whatever limit it has.
@Suite("Open-file limit", .serialized)
struct FileDescriptorLimitTests {
    /// The `Max open files` soft and hard limits of a running process.
    static func openFileLimits(_ pid: Int32) throws -> (soft: String, hard: String) {
        let limits = try String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8)
        let line = try #require(limits.split(separator: "\n").first { $0.hasPrefix("Max open files") })
        let fields = line.dropFirst("Max open files".count).split(separator: " ")
        return (String(fields[0]), String(fields[1]))
    }

    static func openDescriptors(_ pid: Int32) -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? 0
    }

    @Test("serve raises its soft limit on open files to the hard limit, and says so")
    func softLimitRaised() async throws {
        let own = try Self.openFileLimits(getpid())
        guard let hard = Int(own.hard), hard > 512 else { return }  // nothing to raise to here
        let dir = TemporaryDirectory("sentinel-nofile")
        defer { dir.cleanup() }
        let server = try SentinelProcess.start(["serve", "--data-dir", dir.url.appendingPathComponent("data").path,
                                                "--host", "127.0.0.1", "--port", "0", "--no-tls"], openFiles: (soft: 512, hard: nil))
        defer { server.kill() }
        #expect(await server.waitForListeningPort() != nil, "\(server.stderr)")
        let limits = try Self.openFileLimits(server.pid)
        #expect(limits.soft == own.hard)
        #expect(limits.hard == own.hard)
        #expect(server.stderr.contains(#""message":"open-file limit raised""#))
        #expect(server.stderr.contains(#""from":"512""#))
        server.terminate()
        #expect(await server.waitForExit(timeout: .seconds(30)) == 0)
    }

    @Test("with every descriptor in use a delivery gets 503 too-many-open-files, and the same workspace takes deliveries again as soon as descriptors are free (it is not taken offline)")
    func exhaustedDescriptorsPass() async throws {
        let dir = TemporaryDirectory("sentinel-nofile")
        defer { dir.cleanup() }
        let setup = try await CommandLineGitHubSetup.make(in: dir, webhookSecret: "nofile-webhook-secret-1")
        let (data, path) = (setup.data, setup.webhookPath)

        let limit = 128
        let server = try SentinelProcess.start(["serve", "--data-dir", data, "--host", "127.0.0.1", "--port", "0", "--no-tls"],
                                               environment: ["SENTINEL_SERVER_IDLE_TIMEOUT_SECONDS": "600"],
                                               openFiles: (soft: limit, hard: limit))
        defer { server.kill() }
        let port = try #require(await server.waitForListeningPort(), "\(server.stderr)")
        #expect(server.stderr.contains(#""message":"open-file limit is below what this configuration can keep open"#))
        #expect(server.stderr.contains(#""limit":"\#(limit)""#))

        let body = #"{"action":"created","starred_at":null}"#
        func delivery(_ id: String) -> String {
            "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-GitHub-Event: star\r\nX-GitHub-Delivery: \(id)\r\n"
                + "X-Hub-Signature-256: \(GitHubWebhookSignature.sign(body: Data(body.utf8), secret: Data("nofile-webhook-secret-1".utf8)))\r\n"
                + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
        }
        // One connection the server has accepted before its descriptors run out.
        let connection = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
            }
        let (first, second) = try await connection.executeThenClose { inbound, outbound in
            var responses = inbound.makeAsyncIterator()
            var pending = ""
            func response() async throws -> String {
                while true {
                    if let end = pending.range(of: "\r\n\r\n") {
                        let head = String(pending[..<end.upperBound])
                        let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                            .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
                        if pending.utf8.count - head.utf8.count >= length {
                            let whole = String(pending.utf8.prefix(head.utf8.count + length))!
                            pending = String(pending.utf8.dropFirst(whole.utf8.count))!
                            return whole
                        }
                    }
                    guard let chunk = try await responses.next() else { throw CancellationError() }
                    pending += String(buffer: chunk)
                }
            }
            var crowd: [Channel] = []
            // Idle connections until the server holds every descriptor its limit allows.
            let deadline = ContinuousClock.now + .seconds(30)
            while Self.openDescriptors(server.pid) < limit, ContinuousClock.now < deadline {
                for _ in 0..<8 {
                    crowd.append(try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: port).get())
                }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(Self.openDescriptors(server.pid) >= limit)
            try await outbound.write(ByteBuffer(string: delivery(UUID().uuidString)))
            let first = try await response()
            // Descriptors come free: the same workspace takes the next delivery at once.
            for channel in crowd { try? await channel.close() }
            crowd = []
            while Self.openDescriptors(server.pid) > limit - 32, ContinuousClock.now < deadline + .seconds(30) {
                try await Task.sleep(for: .milliseconds(50))
            }
            try await outbound.write(ByteBuffer(string: delivery(UUID().uuidString)))
            return (first, try await response())
        }
        #expect(first.hasPrefix("HTTP/1.1 503"), "\(first)")
        #expect(first.contains("urn:sentinel:problem:too-many-open-files"), "\(first)")
        #expect(first.lowercased().contains("retry-after: 5"), "\(first)")
        #expect(second.hasPrefix("HTTP/1.1 202"), "\(second)")
        #expect(server.stderr.contains("no file descriptor left"))
        // The request's own log line says what its client was told.
        #expect(server.stderr.contains(#""detail":"the appliance is at its limit of open files; nothing was stored, retry later""#))
        #expect(!server.stderr.contains(#""message":"workspace offline""#))
        server.terminate()
        #expect(await server.waitForExit(timeout: .seconds(30)) == 0)
    }
}
