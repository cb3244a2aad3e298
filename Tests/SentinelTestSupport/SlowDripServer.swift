import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// A loopback server whose `GET /drip` answers with its head at once and then a body of
/// `bodyBytes` bytes, one byte every `interval`: the slow-drip server a total deadline must cut off.
public final class SlowDripServer: Sendable {
    public let port: Int
    private let counter: DripCounter
    private let task: Task<Void, any Error>

    actor DripCounter {
        var heads = 0
        func head() { heads += 1 }
    }

    public static func start(bodyBytes: Int, interval: Duration) async throws -> SlowDripServer {
        let counter = DripCounter()
        let router = Router()
        router.get("/drip") { _, _ -> Response in
            await counter.head()
            return Response(status: .ok, headers: [.contentType: "text/plain"],
                            body: ResponseBody(contentLength: bodyBytes) { writer in
                                for _ in 0..<bodyBytes {
                                    try await Task.sleep(for: interval)
                                    try await writer.write(ByteBuffer(string: "x"))
                                }
                                try await writer.finish(nil)
                            })
        }
        let portBox = Rendezvous<Int>()
        var logger = Logger(label: "sentinel.slow-drip")
        logger.logLevel = .critical
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { channel in await portBox.set(channel.localAddress?.port ?? 0) }, logger: logger)
        let task = Task { try await app.runService() }
        let port = await portBox.wait()
        return SlowDripServer(port: port, counter: counter, task: task)
    }

    private init(port: Int, counter: DripCounter, task: Task<Void, any Error>) {
        self.port = port
        self.counter = counter
        self.task = task
    }

    /// Response heads sent so far.
    public func headsSent() async -> Int { await counter.heads }

    public func stop() async {
        task.cancel()
        _ = await task.result
    }
}
