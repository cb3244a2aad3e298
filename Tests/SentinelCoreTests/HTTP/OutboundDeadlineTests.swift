import Foundation
import SentinelCore
import SentinelTestSupport
import Testing

@Suite("Outbound deadline")
struct OutboundDeadlineTests {
    @Test("a server that sends its head and then drips the body is cut off by the total deadline")
    func slowDripTimesOut() async throws {
        let server = try await SlowDripServer.start(bodyBytes: 600, interval: .milliseconds(100))
        let http = try AsyncOutboundHTTPClient()
        // The head arrives at once; the whole body would take a minute. (5 s: connecting and
        // sending may take over a second on a loaded machine, and the head must come first.)
        await #expect {
            _ = try await http.send(OutboundRequest(url: URL(string: "http://127.0.0.1:\(server.port)/drip")!, timeout: .seconds(5)))
        } throws: { error in
            guard case OutboundHTTPError.timeout = error else { return false }
            return true
        }
        #expect(await server.headsSent() == 1, "the head was sent: the deadline held after it")
        await http.shutdown()
        await server.stop()
    }

    @Test("a notification's 2xx head is its answer: a body that drips past the deadline, or is over the size limit, leaves the call succeeded (it failed, and the message was sent again on every retry)")
    func acceptedHeadIsTheAnswer() async throws {
        let server = try await SlowDripServer.start(bodyBytes: 600, interval: .milliseconds(100))
        let http = try AsyncOutboundHTTPClient(maxResponseBytes: 10)
        let url = URL(string: "http://127.0.0.1:\(server.port)/drip")!
        let started = ContinuousClock.now
        let response = try await http.send(OutboundRequest(method: "GET", url: url, timeout: .seconds(5), acceptedOnSuccessHead: true))
        #expect(response.status == 200)
        #expect(ContinuousClock.now - started < .seconds(30))
        // Without the flag the same answer is a timeout, as for any other call.
        await #expect(throws: OutboundHTTPError.self) {
            _ = try await http.send(OutboundRequest(method: "GET", url: url, timeout: .seconds(2)))
        }
        await http.shutdown()
        await server.stop()
    }
}
