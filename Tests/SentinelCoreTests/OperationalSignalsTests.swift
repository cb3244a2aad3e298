import Foundation
import GRDB
@testable import SentinelCore
import SentinelTestSupport
import Synchronization
import Testing

@Suite("Operational signals for sentinel doctor")
struct OperationalSignalsTests {
    final class Journal: CircuitJournal {
        let events = Mutex<[String]>([])
        func opened(workspaceID: String, providerID: String, at: Date, retryAt: Date) { events.withLock { $0.append("opened \(providerID)") } }
        func closed(workspaceID: String, providerID: String) { events.withLock { $0.append("closed \(providerID)") } }
    }

    @Test("a circuit that opens is written down once, and again when it closes; failures below the threshold write nothing")
    func circuitJournal() async {
        let journal = Journal()
        let registry = CircuitBreakerRegistry(failureThreshold: 3, coolDown: .seconds(60), journal: journal)
        for _ in 0..<2 { await registry.recordFailure(workspaceID: "ws", providerID: "p") }
        #expect(journal.events.withLock { $0 } == [])
        await registry.recordFailure(workspaceID: "ws", providerID: "p")
        await registry.recordFailure(workspaceID: "ws", providerID: "p")  // already open: no second entry... until re-opened
        await registry.recordSuccess(workspaceID: "ws", providerID: "p")
        await registry.recordSuccess(workspaceID: "ws", providerID: "p")
        let events = journal.events.withLock { $0 }
        #expect(events.first == "opened p" && events.last == "closed p" && events.filter { $0 == "closed p" }.count == 1, "\(events)")
    }

    @Test("doctor warns about webhooks refused with none accepted since, and about open circuits; both clear")
    func doctorReadsSignals() async throws {
        let h = try TestHarness()
        defer { h.directory.cleanup() }
        let ws = try h.createWorkspace("acme")
        let integration = IntegrationID("int_signals000000000")!
        let signals = OperationalSignals(control: h.control)
        try signals.recordAuthFailures(3, integrationID: integration, workspaceID: ws, at: Date())
        try signals.circuitOpened(workspaceID: ws.rawValue, providerID: "prv_x", at: Date(), retryAt: Date().addingTimeInterval(60))
        await h.supervisor.shutdown()
        var report = DoctorTests.doctor(h)
        let refused = try #require(report.findings.first { $0.check == "webhook-auth" })
        #expect(refused.severity == .warning && refused.message.contains("3 webhook deliveries refused") && refused.fix?.contains("secret") == true,
                "\(refused)")
        let circuit = try #require(report.findings.first { $0.check == "ai-circuit" })
        #expect(circuit.severity == .warning && circuit.message.contains("prv_x"), "\(circuit)")
        #expect(report.exitCode == 1)
        // A delivery accepted after the refusals, and the circuit closed: all ok.
        let database = try DatabaseOpener().open(h.dataDirectory.workspaceFile(ws), kind: .workspace)
        try await database.write { db in
            try db.execute(sql: """
                INSERT INTO integrations (id, kind, api_url, webhook_secret, created_at) VALUES (?, 'github', 'https://api.github.com', x'00', 0);
                INSERT INTO deliveries (id, integration_id, event, action, payload, correlation_id, received_at) VALUES ('d1', ?, 'ping', NULL, x'7b7d', 'c', ?)
                """, arguments: [integration.rawValue, integration.rawValue, Date().timeIntervalSince1970 + 1])
        }
        try database.close()
        try signals.circuitClosed(workspaceID: ws.rawValue, providerID: "prv_x")
        report = DoctorTests.doctor(h)
        #expect(report.findings.filter { $0.check == "webhook-auth" || $0.check == "ai-circuit" }.allSatisfy { $0.severity == .ok }, "\(report.findings)")
    }
}
