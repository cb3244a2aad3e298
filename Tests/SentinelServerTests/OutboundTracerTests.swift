import Foundation
@testable import SentinelCore
import Testing
import Tracing

/// A tracer that is only ever in a task's scope, like the appliance's OTel tracer in `serve`.
private struct ScopedTracer: Tracer {
    typealias Span = NoOpTracer.NoOpSpan
    func startSpan<Instant: TracerInstant>(_ operationName: String, context: @autoclosure () -> ServiceContext, ofKind kind: SpanKind,
                                           at instant: @autoclosure () -> Instant, function: String, file fileID: String, line: UInt) -> Span {
        NoOpTracer.NoOpSpan(context: context())
    }
    func forceFlush() {}
    func extract<Carrier, Extract: Extractor>(_ carrier: Carrier, into context: inout ServiceContext, using extractor: Extract) where Extract.Carrier == Carrier {}
    func inject<Carrier, Inject: Injector>(_ context: ServiceContext, into carrier: inout Carrier, using injector: Inject) where Inject.Carrier == Carrier {}
}

@Suite("Outbound tracer")
struct OutboundTracerTests {
    @Test("a client made with a tracer in scope does not keep it: its last release could land on an event loop")
    func clientKeepsNoTracer() async throws {
        let http = try withTracer(ScopedTracer()) { try AsyncOutboundHTTPClient() }
        #expect(!http.tracesInternally)
        await http.shutdown()
    }
}
