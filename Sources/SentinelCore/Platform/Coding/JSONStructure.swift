import Foundation

/// What a JSON decoder does not say about a document: a name given twice in one object (decoders
/// keep one of the values without a word, so what a client meant is unknown; RFC 8259 §4 leaves
/// such a document's meaning to the reader), a comma before `}` or `]` (Foundation's decoder takes
/// one; RFC 8259 does not) and nesting too deep to read. One pass over the
/// bytes; any input is safe to scan, and for text that is not JSON the answer means nothing.
public enum JSONStructure {
    /// The deepest nesting of arrays and objects Foundation's `JSONDecoder` reads.
    public static let maxDepth = 512

    public enum Problem: Equatable, Sendable {
        /// `name` appears twice in the object at `path` (`""` for the top level, else like
        /// `rules[2]` or `settings.review`).
        case repeatedName(String, path: String)
        /// Arrays and objects nested deeper than `maxDepth`.
        case tooDeep
        /// A comma right before the end of the object or array at `path`.
        case trailingComma(path: String)
    }

    /// An open array or object: its path, and for an object the names seen so far, whether a
    /// name comes next and the name of the value being read.
    private struct Frame {
        let isObject: Bool
        let path: String
        var names: Set<String> = []
        var expectingName = true
        var current = ""
        var index = 0

        /// The path of the value that starts next in this frame.
        var valuePath: String {
            isObject ? (path.isEmpty ? current : "\(path).\(current)") : "\(path)[\(index)]"
        }
    }

    /// The first problem in `data`, or nil.
    public static func firstProblem(in data: Data) -> Problem? {
        data.withUnsafeBytes { raw in firstProblem(in: raw.bindMemory(to: UInt8.self)) }
    }

    static func firstProblem(in bytes: UnsafeBufferPointer<UInt8>) -> Problem? {
        var stack: [Frame] = []
        var i = 0
        // The last byte outside strings that is not white space.
        var last: UInt8 = 0
        while i < bytes.count {
            let byte = bytes[i]
            defer { if byte != 0x20, byte != 0x09, byte != 0x0A, byte != 0x0D { last = byte } }
            switch byte {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                guard stack.count < maxDepth else { return .tooDeep }
                stack.append(Frame(isObject: byte == UInt8(ascii: "{"), path: stack.last?.valuePath ?? ""))
                i += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                if last == UInt8(ascii: ","), let top = stack.last { return .trailingComma(path: top.path) }
                _ = stack.popLast()
                i += 1
            case UInt8(ascii: ","):
                if !stack.isEmpty {
                    stack[stack.count - 1].expectingName = true
                    stack[stack.count - 1].index += 1
                }
                i += 1
            case UInt8(ascii: "\""):
                var end = i + 1
                var escaped = false
                while end < bytes.count, bytes[end] != UInt8(ascii: "\"") {
                    if bytes[end] == UInt8(ascii: "\\") { escaped = true; end += 1 }
                    end += 1
                }
                if let top = stack.last, top.isObject, top.expectingName {
                    let name = decodedString(bytes, from: i, to: min(end, bytes.count - 1), escaped: escaped)
                    guard stack[stack.count - 1].names.insert(name).inserted else { return .repeatedName(name, path: top.path) }
                    stack[stack.count - 1].expectingName = false
                    stack[stack.count - 1].current = name
                }
                i = end + 1
            default:
                i += 1
            }
        }
        return nil
    }

    /// The string token `bytes[start...end]` (quotes included) as text.
    private static func decodedString(_ bytes: UnsafeBufferPointer<UInt8>, from start: Int, to end: Int, escaped: Bool) -> String {
        guard end > start else { return "" }
        if !escaped { return String(decoding: UnsafeBufferPointer(rebasing: bytes[(start + 1)..<end]), as: UTF8.self) }
        let token = Data(UnsafeBufferPointer(rebasing: bytes[start...end]))
        return (try? JSONDecoder().decode(String.self, from: token)) ?? String(decoding: token, as: UTF8.self)
    }
}
