import Foundation
import SentinelCore
import Testing

@Suite("delivery envelope")
struct DeliveryEnvelopeTests {
    /// What Foundation reads: nil when not an object; else the two actions.
    static func reference(_ data: Data) -> DeliveryEnvelope? {
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return nil }
        return DeliveryEnvelope(action: object["action"] as? String,
                                objectAttributesAction: (object["object_attributes"] as? [String: Any])?["action"] as? String)
    }

    /// What intake read before: `JSONDecoder` with the envelope's `Decodable` conformance.
    static func decoderReference(_ data: Data) -> DeliveryEnvelope? {
        try? JSONDecoder().decode(DeliveryEnvelope.self, from: data)
    }

    @Test("intake reads the same object and actions as JSONSerialization, and refuses what it refuses")
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
            #"{"act\u0069on":"escaped key","object_attributes":{"\u0061ction":"x\/y\"z\\\b\f\n\r\t"}}"#,
            #"{"a":{"action":"nested, not top level"},"b":[{"object_attributes":{"action":"deeper"}}]}"#,
            " \r\n\t{ \"action\" : \"spaced\" , \"n\" : -0.5e+10 } \n",
            #"{"n":[0,-0,1.25,1E5,2e-3,-12.5E+3,true,false,null,"",{},[]]}"#,
            "{\"text\":\"caf\u{E9} \u{1F600} \u{7F} \u{800} \u{FFFD} \u{10FFFF}\"}",
            #"[{"action":"opened"}]"#,
            #""opened""#,
            "42",
            "null",
            "",
            "not json",
            #"{"action":"opened""#,
            #"{"action":"opened"} trailing"#,
            #"{"action":"opened"}{}"#,
            #"{action:"opened"}"#,
            #"{'action':'opened'}"#,
            #"{"n":NaN}"#,
            #"{"n":.5}"#,
            #"{"n":+1}"#,
            #"{"t":tru}"#,
        ]
        for body in bodies {
            let data = Data(body.utf8)
            #expect(DeliveryEnvelope.parse(data) == Self.reference(data), "\(body)")
        }
        #expect(DeliveryEnvelope.parse(Data(#"{"action":"labeled"}"#.utf8))?.action == "labeled")
        #expect(DeliveryEnvelope.parse(Data("[]".utf8)) == nil)
        #expect(DeliveryEnvelope.parse(Data(#"{"action":"r\u00e9opened"}"#.utf8))?.action == "réopened")
        #expect(DeliveryEnvelope.parse(Data(#"{"object_attributes":{"action":"a\ud83d\ude00"}}"#.utf8))?.objectAttributesAction == "a😀")
    }

    @Test("malformed JSON that Foundation's lenient scanner lets through is refused: intake wants one well-formed object")
    func strictWhereFoundationIsLenient() {
        let refusedText: [String] = [
            #"{"action":"opened",}"#,
            #"{"a":[1,2,]}"#,
            #"{"n":01}"#,
            #"{"n":-01}"#,
            #"{"n":1.}"#,
            #"{"n":-}"#,
            #"{"n":1e}"#,
            #"{"n":1.5e-}"#,
            #"{"s":"\q"}"#,
            #"{"s":"\u12G4"}"#,
            #"{"s":"\u12"}"#,
            "{\"s\":\"a\u{01}b\"}",
            "{\"s\":\"a\tb\"}",
            "{\"s\":\"a\nb\"}",
            "{\"a\":1}\u{0}",
            "{\"a\":" + String(repeating: "[", count: 512) + String(repeating: "]", count: 512) + "}",
            String(repeating: "[", count: 100_000),
        ]
        // Bytes inside a string that are not UTF-8.
        let badUTF8: [[UInt8]] = [
            [0xFF],                    // never in UTF-8
            [0x80],                    // a lone continuation byte
            [0xC0, 0x80],              // overlong NUL
            [0xE0, 0x80, 0xAF],        // overlong
            [0xED, 0xA0, 0x80],        // a surrogate, UTF-8 encoded
            [0xF4, 0x90, 0x80, 0x80],  // past U+10FFFF
            [0xE2, 0x82],              // a truncated sequence
        ]
        let prefix: [UInt8] = Array(#"{"s":"x"#.utf8)
        let suffix: [UInt8] = Array(#"y"}"#.utf8)
        var refused: [[UInt8]] = refusedText.map { Array($0.utf8) }
        for bytes in badUTF8 { refused.append(prefix + bytes + suffix) }
        for body in refused {
            #expect(DeliveryEnvelope.parse(Data(body)) == nil, "\(String(decoding: body.prefix(60), as: UTF8.self))")
        }
        // Nesting up to 512 deep (as JSONDecoder allows), a byte-order mark and unpaired surrogate
        // escapes are well-formed; an unpaired surrogate reads as no action.
        let accepted: [(String, DeliveryEnvelope)] = [
            ("{\"a\":" + String(repeating: "[", count: 511) + String(repeating: "]", count: 511) + ",\"action\":\"deep\"}",
             DeliveryEnvelope(action: "deep", objectAttributesAction: nil)),
            ("\u{FEFF}{\"action\":\"bom\"}", DeliveryEnvelope(action: "bom", objectAttributesAction: nil)),
            (#"{"action":"\ud800","x":"\udc00"}"#, DeliveryEnvelope(action: nil, objectAttributesAction: nil)),
            (#"{"object_attributes":{"action":"\ud83dx"}}"#, DeliveryEnvelope(action: nil, objectAttributesAction: nil)),
        ]
        for (body, expected) in accepted {
            #expect(DeliveryEnvelope.parse(Data(body.utf8)) == expected, "\(body.prefix(60))")
        }
    }

    @Test("text in strings is skipped eight bytes at a time: a quote, escape, control byte or non-ASCII byte at every offset is seen")
    func specialBytesAtEveryOffset() {
        for offset in 0..<20 {
            let before = String(repeating: "a", count: offset)
            let after = String(repeating: "b", count: 11)
            func parse(_ middle: [UInt8]) -> DeliveryEnvelope? {
                DeliveryEnvelope.parse(Data(Array(#"{"action":""#.utf8) + Array(before.utf8) + middle + Array(after.utf8) + Array(#""}"#.utf8)))
            }
            #expect(parse(Array(#"\""#.utf8))?.action == before + "\"" + after, "offset \(offset)")
            #expect(parse(Array(#"\\"#.utf8))?.action == before + "\\" + after, "offset \(offset)")
            #expect(parse(Array("é€😀\u{7F}".utf8))?.action == before + "é€😀\u{7F}" + after, "offset \(offset)")
            #expect(parse([0x1F]) == nil, "offset \(offset)")
            #expect(parse([0xFF]) == nil, "offset \(offset)")
            #expect(parse([UInt8(ascii: "\"")]) == nil, "offset \(offset): a bare quote ends the string early")
        }
    }

    @Test("the first occurrence of a key decides, as JSONDecoder reads the payload later")
    func firstOccurrenceDecides() {
        #expect(DeliveryEnvelope.parse(Data(#"{"action":"opened","action":"closed"}"#.utf8))?.action == "opened")
        #expect(DeliveryEnvelope.parse(Data(#"{"action":1,"action":"closed"}"#.utf8)) == DeliveryEnvelope(action: nil, objectAttributesAction: nil))
        #expect(DeliveryEnvelope.parse(Data(#"{"object_attributes":{"action":"open"},"object_attributes":{"action":"close"}}"#.utf8))?
            .objectAttributesAction == "open")
        #expect(DeliveryEnvelope.parse(Data(#"{"object_attributes":{"action":"open","action":"close"}}"#.utf8))?
            .objectAttributesAction == "open")
    }

    @Test("random well-formed documents read as JSONSerialization and JSONDecoder read them; a mutated one is never read differently")
    func randomDocuments() throws {
        var generator = SeededGenerator(seed: 0x5EED_D311_7E47)
        var mutationsAccepted = 0
        for _ in 0..<400 {
            let text = RandomJSON.object(depth: 0, topLevel: true, using: &generator)
            let data = Data(text.utf8)
            let expected = try #require(Self.reference(data), "the generator made invalid JSON: \(text)")
            #expect(DeliveryEnvelope.parse(data) == expected, "\(text)")
            #expect(Self.decoderReference(data) == expected, "\(text)")
            // One byte changed, dropped or the text cut short: whatever the scanner still accepts,
            // the JSONDecoder reading it replaced accepts too and reads the same way (the scanner
            // is never more lenient; JSONSerialization refuses a whole document over an unpaired
            // surrogate escape that JSONDecoder skips, so it is not the reference here).
            var bytes = Array(text.utf8)
            let position = Int.random(in: 0..<bytes.count, using: &generator)
            switch Int.random(in: 0..<3, using: &generator) {
            case 0: bytes[position] = UInt8.random(in: 0...255, using: &generator)
            case 1: bytes.remove(at: position)
            default: bytes.removeSubrange(position...)
            }
            let mutated = Data(bytes)
            if let read = DeliveryEnvelope.parse(mutated) {
                mutationsAccepted += 1
                #expect(read == Self.decoderReference(mutated), "\(String(decoding: bytes, as: UTF8.self))")
            }
        }
        #expect(mutationsAccepted > 0, "no mutation stayed well-formed: the comparison above checked nothing")
    }
}

/// Well-formed JSON text with the shapes webhook bodies have, and the edge cases of the grammar.
enum RandomJSON {
    static func object(depth: Int, topLevel: Bool = false, using generator: inout SeededGenerator) -> String {
        var keys = ["id", "number", "title", "body", "labels", "user", "head", "sha", "draft", "state", "caf\\u00e9", "emoji\u{1F600}"]
        if topLevel || depth == 1 { keys += ["action", "object_attributes"] }
        keys.shuffle(using: &generator)
        let count = Int.random(in: 0...min(keys.count, depth > 3 ? 2 : 6), using: &generator)
        let members = keys.prefix(count).map { key -> String in
            let value: String
            if key == "object_attributes" && Bool.random(using: &generator) {
                value = object(depth: 1, using: &generator)
            } else if key == "action" && Bool.random(using: &generator) {
                value = string(using: &generator)
            } else {
                value = self.value(depth: depth + 1, using: &generator)
            }
            return "\(whitespace(using: &generator))\"\(key)\"\(whitespace(using: &generator)):\(whitespace(using: &generator))\(value)"
        }
        return "{" + members.joined(separator: ",") + whitespace(using: &generator) + "}"
    }

    static func value(depth: Int, using generator: inout SeededGenerator) -> String {
        switch Int.random(in: 0..<(depth > 4 ? 5 : 7), using: &generator) {
        case 0: return string(using: &generator)
        case 1: return number(using: &generator)
        case 2: return ["true", "false", "null"].randomElement(using: &generator)!
        case 3: return string(using: &generator)
        case 4: return number(using: &generator)
        case 5: return object(depth: depth, using: &generator)
        default:
            let count = Int.random(in: 0...4, using: &generator)
            return "[" + (0..<count).map { _ in whitespace(using: &generator) + value(depth: depth + 1, using: &generator) }.joined(separator: ",") + "]"
        }
    }

    static func string(using generator: inout SeededGenerator) -> String {
        let pieces = ["opened", "labeled", " ", "\\\"", "\\\\", "\\/", "\\n", "\\t", "\\u00e9", "\\ud83d\\ude00", "\\u0000",
                      "é", "€", "😀", "\u{7F}", "\u{FFFD}", "a,b", "}", "]", ":", "\\b\\f\\r"]
        return "\"" + (0..<Int.random(in: 0...6, using: &generator)).map { _ in pieces.randomElement(using: &generator)! }.joined() + "\""
    }

    static func number(using generator: inout SeededGenerator) -> String {
        ["0", "-0", "7", "-12", "3.25", "1e9", "2E-3", "-0.5e+2", "123456789012345678901234567890", "1.0E+300"].randomElement(using: &generator)!
    }

    static func whitespace(using generator: inout SeededGenerator) -> String {
        ["", "", "", " ", "\n  ", "\t", "\r\n"].randomElement(using: &generator)!
    }
}

/// A deterministic generator (SplitMix64), so a failure reproduces.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
