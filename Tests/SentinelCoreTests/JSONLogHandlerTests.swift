import Foundation
import Logging
@testable import SentinelCore
import SentinelTestSupport
import Testing

@Suite("JSON log lines")
struct JSONLogHandlerTests {
    /// What a line says, read back by Foundation's JSON parser.
    func parse(_ line: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }

    @Test("a line is one JSON object with sorted keys; quotes, backslashes, control characters and non-ASCII text survive")
    func escaping() throws {
        let log = CapturedLog()
        var logger = Logger.sentinel(level: "info", sink: log.sink)
        logger[metadataKey: "workspace_id"] = "ws_1"
        let awkward = "say \"hi\"\\ now\n\ttab\r\u{01}\u{1F} bell\u{07} é ✓ 𝄞 a/b"
        logger.info("delivery \"stored\"", metadata: [
            "note": .string(awkward),
            "count": .stringConvertible(42),
            "list": .array(["a", .dictionary(["z": "1", "b": "2"])]),
            "nested": .dictionary(["inner\"key": .array([])]),
        ])
        let lines = log.all
        #expect(lines.count == 1)
        let line = try #require(lines.first)
        let object = try parse(line)
        #expect(object["message"] as? String == "delivery \"stored\"")
        #expect(object["note"] as? String == awkward)
        #expect(object["count"] as? String == "42")
        #expect(object["workspace_id"] as? String == "ws_1")
        #expect(object["level"] as? String == "info")
        #expect(object["logger"] as? String == "sentinel")
        let list = try #require(object["list"] as? [Any])
        #expect(list.first as? String == "a")
        #expect((list.last as? [String: String]) == ["z": "1", "b": "2"])
        #expect(((object["nested"] as? [String: Any])?["inner\"key"] as? [Any])?.isEmpty == true)
        #expect(object["source"] == nil, "only warnings and above carry their source line")
        // No raw control character on the line (one line per entry), `/` unescaped, keys sorted.
        #expect(!line.utf8.contains { $0 < 0x20 })
        #expect(line.contains("a/b"))
        #expect(line.contains(#"\u0001"#) && line.contains(#"\u001f"#) && line.contains(#"\u0007"#))
        let keys = ["count", "level", "list", "logger", "message", "nested", "note", "time", "workspace_id"]
        let positions = keys.compactMap { line.range(of: "\"\($0)\":")?.lowerBound }
        #expect(positions.count == keys.count && positions == positions.sorted())
        #expect(line.range(of: #""b":"2","z":"1""#) != nil, "nested keys are sorted too")
    }

    @Test("the error a library passes with an event is written (why a trace export failed), its token shapes redacted")
    func eventError() throws {
        struct ExportFailed: Error, CustomStringConvertible { var description: String { "HTTP 500 from collector (token ghp_0123456789abcdefABCDEF0123456789abcd)" } }
        let log = CapturedLog()
        let logger = Logger.sentinel(level: "info", sink: log.sink)
        logger.handler.log(event: LogEvent(level: .warning, message: "Failed to export batch.", error: ExportFailed(), metadata: ["batch_id": "53"],
                                           source: nil, file: #fileID, function: #function, line: #line))
        let object = try parse(try #require(log.all.first))
        let error = try #require(object["error"] as? String)
        #expect(error.hasPrefix("HTTP 500 from collector") && !error.contains("ghp_0123"), "\(error)")
        #expect(object["batch_id"] as? String == "53")
    }

    @Test("metadata of the line wins over the logger's, warnings carry their source, the time is ISO 8601 UTC")
    func fields() throws {
        let log = CapturedLog()
        var logger = Logger.sentinel(level: "info", sink: log.sink)
        logger[metadataKey: "job_id"] = "1"
        logger.warning("lease lost", metadata: ["job_id": "2"])
        logger.debug("not written below the level")
        let lines = log.all
        #expect(lines.count == 1)
        let object = try parse(try #require(lines.first))
        #expect(object["job_id"] as? String == "2")
        #expect((object["source"] as? String)?.hasPrefix("JSONLogHandlerTests.swift:") == true)
        let time = try #require(object["time"] as? String)
        #expect(time.count == 24 && time.hasSuffix("Z"), "e.g. 2026-12-02T13:05:01.123Z: \(time)")
    }

    @Test("each key once: the line's metadata over the context's, over the logger's, over the fixed fields")
    func precedence() throws {
        let log = CapturedLog()
        var handler = JSONLogHandler(label: "sentinel", level: .info, sink: log.sink)
        handler.metadataProvider = Logger.MetadataProvider { ["correlation_id": "from-context", "job_id": "from-context", "level": "context"] }
        var logger = Logger(label: "sentinel") { _ in handler }
        logger[metadataKey: "job_id"] = "from-logger"
        logger[metadataKey: "workspace_id"] = "ws_1"
        logger[metadataKey: "message"] = "from-logger"
        logger.info("hello", metadata: ["correlation_id": "from-line", "z": "last"])
        let line = try #require(log.all.first)
        let object = try parse(line)
        #expect(object["correlation_id"] as? String == "from-line")
        #expect(object["job_id"] as? String == "from-context")
        #expect(object["workspace_id"] as? String == "ws_1")
        #expect(object["message"] as? String == "from-logger", "the logger's metadata wins over the fixed fields, as with merged dictionaries")
        #expect(object["level"] as? String == "context")
        // Each key written once (JSONSerialization would keep any one of duplicates), sorted.
        for key in ["correlation_id", "job_id", "level", "logger", "message", "time", "workspace_id", "z"] {
            #expect(line.components(separatedBy: "\"\(key)\":").count == 2, "\(key) once in \(line)")
        }
        let keys = object.keys.sorted()
        let positions = keys.compactMap { line.range(of: "\"\($0)\":")?.lowerBound }
        #expect(positions == positions.sorted())
    }

    @Test("the time is written digit by digit as ISO 8601 UTC with milliseconds")
    func timestamp() {
        #expect(JSONLogHandler.timestamp(timespec(tv_sec: 1_764_680_701, tv_nsec: 123_999_999)) == "2025-12-02T13:05:01.123Z")
        #expect(JSONLogHandler.timestamp(timespec(tv_sec: 947_387_045, tv_nsec: 7_000_000)) == "2000-01-09T03:04:05.007Z")
        #expect(JSONLogHandler.timestamp(timespec(tv_sec: 0, tv_nsec: 0)) == "1970-01-01T00:00:00.000Z")
        let now = JSONLogHandler.timestamp()
        let parsed = try? Date(now, strategy: .iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
        #expect(parsed.map { abs($0.timeIntervalSinceNow) < 60 } == true, "\(now)")
    }

    @Test("a flat object of strings is written byte for byte as JSONEncoder.sentinel writes it")
    func flatObjectMatchesEncoder() throws {
        let awkward = "say \"hi\"\\ now\n\ttab\r\u{01}\u{1F}\u{08}\u{0C} bell\u{07} é ✓ 𝄞 a/b"
        for fields: [String: String] in [[:], ["status": "accepted", "delivery_id": "72d3162e-cc78-11e3-81ab-4c9367dc0958"],
                                          ["status": "pong", "integration_id": "int_1", "z": awkward, "a\"b": "", "/": "/"]] {
            let expected = String(decoding: try JSONEncoder.sentinel.encode(fields), as: UTF8.self)
            #expect(String(decoding: FlatJSON.encode(fields), as: UTF8.self) == expected)
        }
    }
}
