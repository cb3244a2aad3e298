import Foundation
import SentinelCore
import Testing

@Suite("JSON structure: names given twice, nesting depth")
struct JSONStructureTests {
    func problem(_ text: String) -> JSONStructure.Problem? { JSONStructure.firstProblem(in: Data(text.utf8)) }

    @Test("a name given twice is found with the path of its object, also when escaped differently; the same name in sibling objects is not")
    func repeatedNames() {
        #expect(problem(#"{"a":1,"b":2,"a":3}"#) == .repeatedName("a", path: ""))
        #expect(problem(#"{"a":{"x":[1,{"k":1,"k":2}]}}"#) == .repeatedName("k", path: "a.x[1]"))
        #expect(problem(#"[{"k":1},{"k":2},{"j":1,"j":2}]"#) == .repeatedName("j", path: "[2]"))
        #expect(problem(#"{"caf\u00e9":1,"café":2}"#) == .repeatedName("café", path: ""))
        #expect(problem(#"{"a\"b":1,"a\u0022b":2}"#) == .repeatedName(#"a"b"#, path: ""))
        // Names as values, and the same name in other objects, are fine.
        #expect(problem(#"{"a":"a","b":{"a":1},"c":[{"a":1},{"a":2}],"d":"{\"a\":1,\"a\":2}"}"#) == nil)
        #expect(problem(#"{}"#) == nil)
        #expect(problem(#"["x","x"]"#) == nil)
    }

    @Test("a comma before a closing bracket is found with its path (Foundation's decoder takes one); commas in strings are text")
    func trailingCommas() {
        #expect(problem(#"{"name":"x",}"#) == .trailingComma(path: ""))
        #expect(problem(#"{"a":{"l":[1,2, ]}}"#) == .trailingComma(path: "a.l"))
        #expect(problem("{\"a\":1,\n}") == .trailingComma(path: ""))
        #expect(problem(#"{"a":"x,","b":[",]"]}"#) == nil)
        #expect(problem(#"[1,{},[]]"#) == nil)
    }

    @Test("nesting deeper than 512 arrays and objects is told apart; 512 is fine")
    func depth() {
        func nested(_ n: Int) -> String { String(repeating: "[", count: n) + String(repeating: "]", count: n) }
        #expect(problem(nested(512)) == nil)
        #expect(problem(nested(513)) == .tooDeep)
        #expect(problem(#"{"a":"# + nested(600) + "}") == .tooDeep)
        #expect((try? JSONDecoder().decode(JSONValue.self, from: Data(nested(512).utf8))) != nil, "Foundation reads 512 levels")
    }

    @Test("text that is not JSON is scanned to its end without reading past it")
    func garbage() {
        for text in [#"{"a"#, #"{"a\"#, "\"", "}}]]", #"{"a":1,"#, String(decoding: [0xFF, 0x22, 0x5C], as: UTF8.self)] {
            #expect(problem(text) == nil, "\(text)")
        }
        #expect(problem("]]]" + String(repeating: "[", count: 513)) == .tooDeep)
    }
}
