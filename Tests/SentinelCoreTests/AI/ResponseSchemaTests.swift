import Foundation
@testable import SentinelCore
import Testing

@Suite("The engine's response schema")
struct ResponseSchemaTests {
    @Test("parsed once per process: the providers get the same value as parsing the text, and other schemas are still parsed")
    func parsedOnce() throws {
        let parsed = try #require(PromptBuilder.parsedResponseSchema)
        #expect(parsed == (try JSONValue.decode(PromptBuilder.responseSchema)))
        #expect(try parseSchema(PromptBuilder.responseSchema) == parsed)
        #expect(try parseSchema(#"{"type":"object","properties":{"a":{"type":"string"}}}"#)
            == .object(["type": .string("object"), "properties": .object(["a": .object(["type": .string("string")])])]))
        #expect(throws: ProviderError.self) { try parseSchema("[1]") }
    }
}
