import Foundation
import SentinelCore
import Testing

@Suite("delivery envelope")
struct DeliveryEnvelopeTests {
    /// What intake read with `JSONSerialization` before: nil when not an object; else the two actions.
    static func reference(_ data: Data) -> DeliveryEnvelope? {
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return nil }
        return DeliveryEnvelope(action: object["action"] as? String,
                                objectAttributesAction: (object["object_attributes"] as? [String: Any])?["action"] as? String)
    }

    @Test("intake reads the same object and actions as JSONSerialization did, and refuses what it refused")
    func sameAsJSONSerialization() throws {
        let bodies = [
            #"{"action":"opened","number":1,"pull_request":{"head":{"sha":"abc"}},"repository":{"id":1}}"#,
            #"{"zen":"Keep it logically awesome.","hook_id":1}"#,
            #"{"action":7}"#,
            #"{"action":null}"#,
            #"{"action":{"nested":"opened"}}"#,
            #"{"object_kind":"merge_request","object_attributes":{"iid":1,"action":"open"}}"#,
            #"{"object_attributes":{"action":["open"]}}"#,
            #"{"object_attributes":"open"}"#,
            #"{"object_attributes":null,"action":"closed"}"#,
            #"{"action":"r\u00e9opened","body":"caf\u00e9 \ud83d\ude00"}"#,
            #"[{"action":"opened"}]"#,
            #""opened""#,
            "42",
            "null",
            "",
            "not json",
            #"{"action":"opened""#,
            #"{"action":"opened"} trailing"#,
            #"{"action":"opened",}"#,
        ]
        for body in bodies {
            let data = Data(body.utf8)
            #expect(DeliveryEnvelope.parse(data) == Self.reference(data), "\(body)")
        }
        #expect(DeliveryEnvelope.parse(Data(#"{"action":"labeled"}"#.utf8))?.action == "labeled")
        #expect(DeliveryEnvelope.parse(Data("[]".utf8)) == nil)
    }
}
