import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// One span as an OTLP/HTTP export carried it (ids in lowercase hex; no parent = "").
public struct CollectedSpan: Sendable, Equatable {
    public var traceID: String
    public var spanID: String
    public var parentSpanID: String
    public var name: String
}

/// An OpenTelemetry collector on loopback that accepts `POST /v1/traces` with a protobuf
/// `ExportTraceServiceRequest` (what OTLP over HTTP sends) and keeps the spans. It refuses other
/// content types (415) and bodies it cannot read (400), as a collector does.
public final class FakeOTLPCollector: Sendable {
    public let port: Int
    private let task: Task<Void, any Error>

    public var baseURL: String { "http://127.0.0.1:\(port)" }
    /// Every span received so far.
    public var spans: [CollectedSpan] { box.all }

    public static func start() async throws -> FakeOTLPCollector {
        let box = StoreBox()
        let router = Router()
        router.post("/v1/traces") { request, _ -> Response in
            guard request.headers[.contentType]?.hasPrefix("application/x-protobuf") == true else { return Response(status: .unsupportedMediaType) }
            let buffer = try await request.body.collect(upTo: 16 << 20)
            guard let spans = try? OTLPTraceReader.spans(in: Array(buffer.readableBytesView)) else { return Response(status: .badRequest) }
            box.append(spans)
            return Response(status: .ok, headers: [.contentType: "application/x-protobuf"])
        }
        let portBox = Rendezvous<Int>()
        var logger = Logger(label: "sentinel.fake-otlp")
        logger.logLevel = .critical
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { channel in await portBox.set(channel.localAddress?.port ?? 0) }, logger: logger)
        let task = Task { try await app.runService() }
        let port = await portBox.wait()
        return FakeOTLPCollector(box: box, port: port, task: task)
    }

    private let box: StoreBox

    private init(box: StoreBox, port: Int, task: Task<Void, any Error>) {
        self.box = box
        self.port = port
        self.task = task
    }

    public func stop() async {
        task.cancel()
        _ = await task.result
    }
}

final class StoreBox: Sendable {
    private let store = Mutex<[CollectedSpan]>([])
    func append(_ spans: [CollectedSpan]) { store.withLock { $0 += spans } }
    var all: [CollectedSpan] { store.withLock { $0 } }
}

/// Just enough protobuf to read spans out of an `ExportTraceServiceRequest`:
/// request.resource_spans(1) → scope_spans(2) → spans(2) → trace_id(1), span_id(2),
/// parent_span_id(4), name(5).
public enum OTLPTraceReader {
    struct Malformed: Error {}

    public static func spans(in bytes: [UInt8]) throws -> [CollectedSpan] {
        var out: [CollectedSpan] = []
        for resourceSpans in try fields(bytes, number: 1) {
            for scopeSpans in try fields(resourceSpans, number: 2) {
                for span in try fields(scopeSpans, number: 2) {
                    let hex: ([UInt8]) -> String = { $0.map { String(format: "%02x", $0) }.joined() }
                    out.append(CollectedSpan(traceID: hex(try fields(span, number: 1).first ?? []),
                                             spanID: hex(try fields(span, number: 2).first ?? []),
                                             parentSpanID: hex(try fields(span, number: 4).first ?? []),
                                             name: String(decoding: try fields(span, number: 5).first ?? [], as: UTF8.self)))
                }
            }
        }
        return out
    }

    /// The length-delimited fields numbered `number` of one message, in order.
    static func fields(_ message: [UInt8], number: Int) throws -> [[UInt8]] {
        var index = 0
        var found: [[UInt8]] = []
        func varint() throws -> UInt64 {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while true {
                guard index < message.count, shift < 64 else { throw Malformed() }
                let byte = message[index]
                index += 1
                value |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return value }
                shift += 7
            }
        }
        while index < message.count {
            let key = try varint()
            let (field, wire) = (Int(key >> 3), key & 7)
            switch wire {
            case 0: _ = try varint()
            case 1: index += 8
            case 5: index += 4
            case 2:
                let length = Int(try varint())
                guard length >= 0, index + length <= message.count else { throw Malformed() }
                if field == number { found.append(Array(message[index..<index + length])) }
                index += length
            default: throw Malformed()
            }
            guard index <= message.count else { throw Malformed() }
        }
        return found
    }
}
