import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import SentinelCore
@testable import SentinelServer
import SentinelTestSupport
import ServiceLifecycle
import Testing

@Suite("Requests after shutdown began")
struct ShutdownGateTests {
    @Test("a request that arrives once shutdown began is refused (503, Connection: close) and not carried out: over TLS it was carried out and never answered")
    func refusedNotCarriedOut() async throws {
        let world = try APIWorld()
        let gate = world.appliance.shutdownGate
        try await world.test { api in
            let before = try await api.call(.post, "/tokens", token: world.adminToken, body: #"{"name":"before","scopes":["read"]}"#)
            #expect(before.status == .created, "\(before.body)")
            gate.close()
            let after = try await api.call(.post, "/tokens", token: world.adminToken, body: #"{"name":"after-shutdown","scopes":["read"]}"#)
            #expect(after.status == .serviceUnavailable && after.headers[.connection] == "close" && after.headers[.retryAfter] == "5", "\(after.body)")
            #expect(after.body.contains("urn:sentinel:problem:shutting-down"), "\(after.body)")
        }
        let names = try world.appliance.identity.tokens(of: world.admin).map(\.name)
        #expect(names.contains("before") && !names.contains("after-shutdown"), "\(names)")
    }

    @Test("the gate closes the moment the service group begins its graceful shutdown")
    func closedByGracefulShutdown() async throws {
        struct Idle: Service {
            func run() async throws { try await gracefulShutdown() }
        }
        let gate = ShutdownGate()
        let group = ServiceGroup(configuration: .init(services: [.init(service: GatedService(inner: Idle(), gate: gate))],
                                                      logger: Logger(label: "test")))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await Task.sleep(for: .milliseconds(100))
            #expect(!gate.isClosing)
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        #expect(gate.isClosing)
    }
}
