import Hummingbird
import ServiceLifecycle
import Synchronization

/// Whether the appliance has begun to shut down: from then on a request that arrives (on a
/// connection kept alive from before) is refused with 503 and `Connection: close`, never carried
/// out. Over TLS the listener's connections wait for the peer's close_notify while closing, and a
/// request read meanwhile was carried out (a token created, a delivery stored) while its answer
/// was never written: the client saw a failure for something that took effect, and repeated it.
final class ShutdownGate: Sendable {
    private let closing = Mutex(false)

    var isClosing: Bool { closing.withLock { $0 } }

    func close() { closing.withLock { $0 = true } }
}

/// Runs the HTTP service and closes `gate` the moment graceful shutdown begins (SIGTERM, SIGINT).
struct GatedService: Service {
    let inner: any Service
    let gate: ShutdownGate

    func run() async throws {
        let gate = self.gate
        try await withGracefulShutdownHandler {
            try await inner.run()
        } onGracefulShutdown: {
            gate.close()
        }
    }
}

/// Refuses what arrives after shutdown began (see `ShutdownGate`).
struct ShutdownGateMiddleware: RouterMiddleware {
    typealias Context = SentinelRequestContext
    let gate: ShutdownGate

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard gate.isClosing else { return try await next(request, context) }
        var problem = Problem(status: .serviceUnavailable, detail: "the appliance is shutting down; nothing was done: send the request again",
                              type: "urn:sentinel:problem:shutting-down", title: "Shutting down")
        problem.retryAfter = 5
        var response = problem.response(requestID: context.correlationID)
        response.headers[.connection] = "close"
        return response
    }
}
