import Foundation

/// Text that is stored and leaves the appliance (event payloads and the analytics dump built from
/// them, finding categories and titles, names) carries no C0 control characters, U+0000–U+001F,
/// except tab, newline and carriage return in text where line breaks make sense. One tenant's
/// NUL can then never break the PostgreSQL load of every tenant. Control characters are single
/// bytes in UTF-8 and never part of a longer sequence, so the work is byte-wise.
public enum StoredText {
    /// Whether `text` holds a character U+0000–U+001F; with `multiline`, tab, newline and carriage
    /// return are allowed.
    public static func hasControlCharacters(_ text: String, multiline: Bool) -> Bool {
        text.utf8.contains { $0 < 0x20 && !(multiline && isLineBreakOrTab($0)) }
    }

    /// One line of text: tab, newline and carriage return become a space, other control
    /// characters are removed.
    public static func singleLine(_ text: String) -> String {
        guard hasControlCharacters(text, multiline: false) else { return text }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        for b in text.utf8 {
            if b >= 0x20 { bytes.append(b) } else if isLineBreakOrTab(b) { bytes.append(0x20) }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Text that may span lines: tab, newline and carriage return are kept, other control
    /// characters removed.
    public static func multiline(_ text: String) -> String {
        guard hasControlCharacters(text, multiline: true) else { return text }
        return String(decoding: text.utf8.filter { $0 >= 0x20 || isLineBreakOrTab($0) }, as: UTF8.self)
    }

    /// A JSON document whose strings (keys included) are `multiline`-clean: escaped control
    /// characters other than `\t`, `\n` and `\r` are removed (`\u0000`…`\u001f`, `\b`, `\f`), raw
    /// ones are removed too, and a raw tab, newline or carriage return inside a string becomes its
    /// escape. Everything else is kept byte for byte, so a clean document comes back unchanged.
    public static func cleanJSON(_ data: Data) -> Data {
        let bytes = [UInt8](data)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var inString = false
        var changed = false
        var i = 0
        let n = bytes.count
        while i < n {
            let b = bytes[i]
            guard inString else {
                if b == UInt8(ascii: "\"") { inString = true }
                out.append(b)
                i += 1
                continue
            }
            switch b {
            case UInt8(ascii: "\""):
                inString = false
                out.append(b)
                i += 1
            case UInt8(ascii: "\\"):
                guard i + 1 < n else { out.append(b); i += 1; continue }
                let e = bytes[i + 1]
                if e == UInt8(ascii: "u"), i + 5 < n, let v = hexValue(bytes[(i + 2)...(i + 5)]) {
                    if v < 0x20, !isLineBreakOrTab(UInt8(v)) {
                        changed = true
                    } else {
                        out.append(contentsOf: bytes[i...(i + 5)])
                    }
                    i += 6
                } else if e == UInt8(ascii: "b") || e == UInt8(ascii: "f") {
                    changed = true
                    i += 2
                } else {
                    out.append(b)
                    out.append(e)
                    i += 2
                }
            case 0x09: out.append(contentsOf: Array("\\t".utf8)); changed = true; i += 1
            case 0x0A: out.append(contentsOf: Array("\\n".utf8)); changed = true; i += 1
            case 0x0D: out.append(contentsOf: Array("\\r".utf8)); changed = true; i += 1
            case 0..<0x20: changed = true; i += 1
            default: out.append(b); i += 1
            }
        }
        return changed ? Data(out) : data
    }

    static func isLineBreakOrTab(_ b: UInt8) -> Bool { b == 0x09 || b == 0x0A || b == 0x0D }

    static func hexValue(_ digits: ArraySlice<UInt8>) -> UInt32? {
        var v: UInt32 = 0
        for d in digits {
            switch d {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = v << 4 | UInt32(d - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): v = v << 4 | UInt32(d - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): v = v << 4 | UInt32(d - UInt8(ascii: "A") + 10)
            default: return nil
            }
        }
        return v
    }
}

/// Word-at-a-time byte tests (the classic SWAR bit tricks), for scanners that skip long plain runs.
/// Each answers exactly whether any of the eight bytes of `word` qualifies; byte order does not matter.
enum ByteScan {
    static let ones: UInt64 = 0x0101_0101_0101_0101
    static let highBits: UInt64 = 0x8080_8080_8080_8080

    /// Whether any byte of `word` is below `limit` (`limit` at most 0x80).
    @inline(__always)
    static func hasByte(below limit: UInt8, in word: UInt64) -> Bool {
        (word &- ones &* UInt64(limit)) & ~word & highBits != 0
    }

    /// Whether any byte of `word` equals `byte`.
    @inline(__always)
    static func has(_ byte: UInt8, in word: UInt64) -> Bool {
        hasByte(below: 1, in: word ^ (ones &* UInt64(byte)))
    }
}

/// What PostgreSQL's `jsonb` input accepts: strict RFC 8259 JSON (no raw control characters in
/// strings, no trailing commas, no NaN), without `\u0000` (text cannot hold NUL) and with every
/// `\u` surrogate paired. Nesting is bounded so a deep document cannot exhaust the server's stack.
public enum PostgresJSON {
    static let maxDepth = 256
    static let maxNumberDigits = 1_000

    /// Why `text` would not load into a `jsonb` column, or nil when it loads.
    public static func problem(in text: String) -> String? {
        var copy = text
        return copy.withUTF8 { problem(in: $0) }
    }

    /// Why the UTF-8 text in `buffer` would not load into a `jsonb` column, or nil when it loads.
    public static func problem(in buffer: UnsafeBufferPointer<UInt8>) -> String? {
        var parser = Parser(bytes: buffer)
        do throws(Parser.Failure) {
            parser.skipSpace()
            try parser.value(depth: 0)
            parser.skipSpace()
            if parser.i < buffer.count { throw Parser.Failure("unexpected text after the JSON value at byte \(parser.i)") }
            return nil
        } catch {
            return error.message
        }
    }

    struct Parser {
        struct Failure: Error {
            let message: String
            init(_ message: String) { self.message = message }
        }

        let bytes: UnsafeBufferPointer<UInt8>
        var i = 0

        init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

        var current: UInt8? { i < bytes.count ? bytes[i] : nil }

        mutating func skipSpace() {
            while let c = current, c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D { i += 1 }
        }

        mutating func expect(_ c: UInt8) throws(Failure) {
            guard current == c else { throw Failure("expected '\(Character(Unicode.Scalar(c)))' at byte \(i)") }
            i += 1
        }

        mutating func value(depth: Int) throws(Failure) {
            guard let c = current else { throw Failure("unexpected end of the JSON text") }
            switch c {
            case UInt8(ascii: "{"):
                guard depth < PostgresJSON.maxDepth else { throw Failure("nested deeper than \(PostgresJSON.maxDepth) levels") }
                i += 1
                skipSpace()
                if current == UInt8(ascii: "}") { i += 1; return }
                while true {
                    skipSpace()
                    guard current == UInt8(ascii: "\"") else { throw Failure("expected a string key at byte \(i)") }
                    try string()
                    skipSpace()
                    try expect(UInt8(ascii: ":"))
                    skipSpace()
                    try value(depth: depth + 1)
                    skipSpace()
                    if current == UInt8(ascii: ",") { i += 1; continue }
                    try expect(UInt8(ascii: "}"))
                    return
                }
            case UInt8(ascii: "["):
                guard depth < PostgresJSON.maxDepth else { throw Failure("nested deeper than \(PostgresJSON.maxDepth) levels") }
                i += 1
                skipSpace()
                if current == UInt8(ascii: "]") { i += 1; return }
                while true {
                    skipSpace()
                    try value(depth: depth + 1)
                    skipSpace()
                    if current == UInt8(ascii: ",") { i += 1; continue }
                    try expect(UInt8(ascii: "]"))
                    return
                }
            case UInt8(ascii: "\""):
                try string()
            case UInt8(ascii: "t"): try literal("true")
            case UInt8(ascii: "f"): try literal("false")
            case UInt8(ascii: "n"): try literal("null")
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                try number()
            default:
                throw Failure("unexpected character at byte \(i)")
            }
        }

        mutating func literal(_ word: StaticString) throws(Failure) {
            let w = UnsafeBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount)
            for c in w {
                guard current == c else { throw Failure("invalid literal at byte \(i)") }
                i += 1
            }
        }

        mutating func digits() -> Int {
            let start = i
            while let c = current, c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") { i += 1 }
            return i - start
        }

        mutating func number() throws(Failure) {
            let start = i
            if current == UInt8(ascii: "-") { i += 1 }
            if current == UInt8(ascii: "0") {
                i += 1
            } else {
                guard digits() > 0 else { throw Failure("invalid number at byte \(start)") }
            }
            if current == UInt8(ascii: ".") {
                i += 1
                guard digits() > 0 else { throw Failure("invalid number at byte \(start)") }
            }
            if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
                i += 1
                if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { i += 1 }
                let expStart = i
                guard digits() > 0 else { throw Failure("invalid number at byte \(start)") }
                // PostgreSQL's numeric refuses exponents beyond its range.
                if i - expStart > 4 { throw Failure("number at byte \(start) is out of PostgreSQL's numeric range") }
            }
            if i - start > PostgresJSON.maxNumberDigits { throw Failure("number at byte \(start) is too long") }
        }

        mutating func string() throws(Failure) {
            let start = i
            i += 1  // opening quote
            while true {
                // Eight bytes at a time over the plain run: no quote, backslash or control character.
                while i + 8 <= bytes.count {
                    let word = UnsafeRawPointer(bytes.baseAddress! + i).loadUnaligned(as: UInt64.self)
                    if ByteScan.hasByte(below: 0x20, in: word) || ByteScan.has(UInt8(ascii: "\""), in: word)
                        || ByteScan.has(UInt8(ascii: "\\"), in: word) { break }
                    i += 8
                }
                guard let c = current else { throw Failure("unterminated string starting at byte \(start)") }
                if c == UInt8(ascii: "\"") { i += 1; return }
                if c < 0x20 { throw Failure(String(format: "raw control character 0x%02x in a string at byte %d", c, i)) }
                guard c == UInt8(ascii: "\\") else { i += 1; continue }
                guard i + 1 < bytes.count else { throw Failure("unterminated string starting at byte \(start)") }
                let e = bytes[i + 1]
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                     UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    i += 2
                case UInt8(ascii: "u"):
                    let v = try unicodeEscape()
                    if v == 0 { throw Failure("\\u0000 at byte \(i - 6): PostgreSQL text cannot hold NUL") }
                    if (0xDC00...0xDFFF).contains(v) { throw Failure("unpaired low surrogate at byte \(i - 6)") }
                    if (0xD800...0xDBFF).contains(v) {
                        guard current == UInt8(ascii: "\\"), i + 1 < bytes.count, bytes[i + 1] == UInt8(ascii: "u") else {
                            throw Failure("unpaired high surrogate in the string starting at byte \(start)")
                        }
                        let low = try unicodeEscape()
                        guard (0xDC00...0xDFFF).contains(low) else {
                            throw Failure("unpaired high surrogate in the string starting at byte \(start)")
                        }
                    }
                default:
                    throw Failure("invalid escape at byte \(i)")
                }
            }
        }

        /// Reads `\uXXXX` at `i`.
        mutating func unicodeEscape() throws(Failure) -> UInt32 {
            guard i + 5 < bytes.count else { throw Failure("truncated \\u escape at byte \(i)") }
            var v: UInt32 = 0
            for k in 2...5 {
                let d = bytes[i + k]
                switch d {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): v = v << 4 | UInt32(d - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f"): v = v << 4 | UInt32(d - UInt8(ascii: "a") + 10)
                case UInt8(ascii: "A")...UInt8(ascii: "F"): v = v << 4 | UInt32(d - UInt8(ascii: "A") + 10)
                default: throw Failure("invalid \\u escape at byte \(i)")
                }
            }
            i += 6
            return v
        }
    }
}
