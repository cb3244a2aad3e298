/// One pass over a webhook body that checks it is one well-formed JSON object (RFC 8259, UTF-8,
/// an optional byte-order mark, nesting at most 512 deep as `JSONDecoder` allows) and picks out
/// the string values of top-level `action` and of `object_attributes.action`, without building
/// the document. Intake needs no more of a delivery; decoding a 23 KB body with `JSONDecoder`
/// just to read `action` built a map of every value in it, a tenth of intake's CPU (`perf`).
/// Text inside strings, most of a body, is skipped eight bytes at a time.
///
/// Stricter than `JSONDecoder`, which skips what it does not decode without checking it: trailing
/// commas, malformed numbers, control characters or invalid UTF-8 in strings are refused here.
/// For the keys it reads it agrees with `JSONDecoder`: the first occurrence of a key decides,
/// escapes in keys and values are decoded, and a value of another type (or with an unpaired
/// surrogate escape) reads as absent.
struct JSONObjectScan {
    /// Top-level `action`, when it is a string.
    var action: String?
    /// `object_attributes.action`, when `object_attributes` is an object and `action` in it a string.
    var objectAttributesAction: String?

    static let maximumDepth = 512

    /// nil when `bytes` is not exactly one JSON object (surrounding whitespace aside).
    static func scan(_ bytes: UnsafeRawBufferPointer) -> JSONObjectScan? {
        var scanner = Scanner(bytes: bytes)
        return try? scanner.document()
    }

    private struct Malformed: Error {}

    /// Which keys of the object being read are wanted.
    private enum Wanted {
        case none
        /// The top level: `action` and `object_attributes`.
        case topLevel
        /// Inside `object_attributes`: `action`.
        case objectAttributes
    }

    private struct Scanner {
        let bytes: UnsafeRawBufferPointer
        var index = 0
        var depth = 0
        var result = JSONObjectScan()
        var sawAction = false
        var sawObjectAttributes = false
        var sawObjectAttributesAction = false

        init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

        mutating func document() throws -> JSONObjectScan {
            if bytes.count >= 3, bytes[0] == 0xEF, bytes[1] == 0xBB, bytes[2] == 0xBF { index = 3 }
            skipWhitespace()
            guard peek() == UInt8(ascii: "{") else { throw Malformed() }
            try object(.topLevel)
            skipWhitespace()
            guard index == bytes.count else { throw Malformed() }
            return result
        }

        private func peek() -> UInt8? { index < bytes.count ? bytes[index] : nil }

        private mutating func next() throws -> UInt8 {
            guard index < bytes.count else { throw Malformed() }
            defer { index += 1 }
            return bytes[index]
        }

        private mutating func skipWhitespace() {
            while index < bytes.count {
                switch bytes[index] {
                case 0x20, 0x09, 0x0A, 0x0D: index += 1
                default: return
                }
            }
        }

        private mutating func expect(_ literal: StaticString) throws {
            let count = literal.utf8CodeUnitCount
            guard bytes.count - index >= count else { throw Malformed() }
            for offset in 0..<count where bytes[index + offset] != literal.utf8Start[offset] { throw Malformed() }
            index += count
        }

        private mutating func enter() throws {
            depth += 1
            guard depth <= JSONObjectScan.maximumDepth else { throw Malformed() }
        }

        /// `index` is at `{`.
        private mutating func object(_ wanted: Wanted) throws {
            try enter()
            index += 1
            skipWhitespace()
            if peek() == UInt8(ascii: "}") {
                index += 1
                depth -= 1
                return
            }
            while true {
                skipWhitespace()
                guard peek() == UInt8(ascii: "\"") else { throw Malformed() }
                let key = try string(decode: wanted != .none)
                skipWhitespace()
                guard try next() == UInt8(ascii: ":") else { throw Malformed() }
                skipWhitespace()
                try member(key, in: wanted)
                skipWhitespace()
                switch try next() {
                case UInt8(ascii: ","): continue
                case UInt8(ascii: "}"):
                    depth -= 1
                    return
                default: throw Malformed()
                }
            }
        }

        /// A member's value; the wanted ones are kept (their first occurrence only).
        private mutating func member(_ key: DecodedString?, in wanted: Wanted) throws {
            switch (wanted, key) {
            case (.topLevel, .some(.text("action"))) where !sawAction:
                sawAction = true
                result.action = try stringValue()
            case (.topLevel, .some(.text("object_attributes"))) where !sawObjectAttributes:
                sawObjectAttributes = true
                if peek() == UInt8(ascii: "{") { try object(.objectAttributes) } else { try value() }
            case (.objectAttributes, .some(.text("action"))) where !sawObjectAttributesAction:
                sawObjectAttributesAction = true
                result.objectAttributesAction = try stringValue()
            default:
                try value()
            }
        }

        /// A value that is kept when it is a string (nil for any other value).
        private mutating func stringValue() throws -> String? {
            guard peek() == UInt8(ascii: "\"") else {
                try value()
                return nil
            }
            if case .text(let text) = try string(decode: true) { return text }
            return nil
        }

        private mutating func value() throws {
            guard let byte = peek() else { throw Malformed() }
            switch byte {
            case UInt8(ascii: "{"): try object(.none)
            case UInt8(ascii: "["): try array()
            case UInt8(ascii: "\""): _ = try string(decode: false)
            case UInt8(ascii: "t"): try expect("true")
            case UInt8(ascii: "f"): try expect("false")
            case UInt8(ascii: "n"): try expect("null")
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try number()
            default: throw Malformed()
            }
        }

        /// `index` is at `[`.
        private mutating func array() throws {
            try enter()
            index += 1
            skipWhitespace()
            if peek() == UInt8(ascii: "]") {
                index += 1
                depth -= 1
                return
            }
            while true {
                skipWhitespace()
                try value()
                skipWhitespace()
                switch try next() {
                case UInt8(ascii: ","): continue
                case UInt8(ascii: "]"):
                    depth -= 1
                    return
                default: throw Malformed()
                }
            }
        }

        /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
        private mutating func number() throws {
            if peek() == UInt8(ascii: "-") { index += 1 }
            guard let first = peek(), isDigit(first) else { throw Malformed() }
            index += 1
            if first != UInt8(ascii: "0") { skipDigits() }
            if peek() == UInt8(ascii: ".") {
                index += 1
                try digits()
            }
            if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
                index += 1
                if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { index += 1 }
                try digits()
            }
        }

        private func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

        private mutating func skipDigits() {
            while let byte = peek(), isDigit(byte) { index += 1 }
        }

        private mutating func digits() throws {
            guard let byte = peek(), isDigit(byte) else { throw Malformed() }
            skipDigits()
        }

        enum DecodedString: Equatable {
            case text(String)
            /// Well-formed JSON, but an escape names an unpaired surrogate: no Swift string.
            case unpairedSurrogate
        }

        /// `index` is at the opening quote. Checks the string (escapes, no control characters,
        /// valid UTF-8) and, with `decode`, returns its text (nil otherwise).
        private mutating func string(decode: Bool) throws -> DecodedString? {
            index += 1
            let start = index
            var escaped = false
            while true {
                skipPlainText()
                guard index < bytes.count else { throw Malformed() }
                let byte = bytes[index]
                if byte == UInt8(ascii: "\"") { break }
                if byte == UInt8(ascii: "\\") {
                    escaped = true
                    index += 1
                    switch try next() {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                         UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                        break
                    case UInt8(ascii: "u"):
                        for _ in 0..<4 {
                            guard Self.hexDigit(try next()) != nil else { throw Malformed() }
                        }
                    default:
                        throw Malformed()
                    }
                } else if byte < 0x20 {
                    throw Malformed()
                } else if byte < 0x80 {
                    index += 1
                } else {
                    try utf8Scalar()
                }
            }
            let end = index
            index += 1  // the closing quote
            guard decode else { return nil }
            let raw = UnsafeRawBufferPointer(rebasing: bytes[start..<end])
            if !escaped { return .text(String(decoding: raw, as: UTF8.self)) }
            return Self.unescape(raw)
        }

        /// Skips printable ASCII other than `"` and `\` inside a string, eight bytes at a time: most
        /// of a webhook body is such text.
        private mutating func skipPlainText() {
            let count = bytes.count
            var i = index
            while count - i >= 8 {
                let word = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self))
                let ones: UInt64 = 0x0101_0101_0101_0101
                let highs: UInt64 = 0x8080_8080_8080_8080
                // A byte is special when below 0x20, at or above 0x80, a quote or a backslash.
                let control = (word &- ones &* 0x20) & ~word
                let quote = word ^ (ones &* 0x22)
                let backslash = word ^ (ones &* 0x5C)
                let special = (control | word | ((quote &- ones) & ~quote) | ((backslash &- ones) & ~backslash)) & highs
                if special != 0 {
                    i += special.trailingZeroBitCount / 8
                    index = i
                    return
                }
                i += 8
            }
            while i < count {
                let byte = bytes[i]
                if byte < 0x20 || byte >= 0x80 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { break }
                i += 1
            }
            index = i
        }

        /// The value of one hex digit; nil for any other byte.
        private static func hexDigit(_ byte: UInt8) -> UInt8? {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
            default: nil
            }
        }

        /// One multi-byte UTF-8 scalar at `index` (no overlong forms, no surrogates, ≤ U+10FFFF).
        private mutating func utf8Scalar() throws {
            let lead = bytes[index]
            let count: Int
            var lower: UInt8 = 0x80, upper: UInt8 = 0xBF
            switch lead {
            case 0xC2...0xDF: count = 2
            case 0xE0: count = 3; lower = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: count = 3
            case 0xED: count = 3; upper = 0x9F
            case 0xF0: count = 4; lower = 0x90
            case 0xF1...0xF3: count = 4
            case 0xF4: count = 4; upper = 0x8F
            default: throw Malformed()
            }
            guard bytes.count - index >= count else { throw Malformed() }
            let second = bytes[index + 1]
            guard second >= lower && second <= upper else { throw Malformed() }
            for offset in 2..<max(2, count) where bytes[index + offset] & 0xC0 != 0x80 { throw Malformed() }
            index += count
        }

        /// The text of a checked string body holding escapes.
        private static func unescape(_ raw: UnsafeRawBufferPointer) -> DecodedString {
            var scalars = String.UnicodeScalarView()
            var index = 0
            func hex(_ at: Int) -> UInt16 {
                var value: UInt16 = 0
                for offset in 0..<4 {
                    // The checker let only hex digits through.
                    value = value << 4 | UInt16(hexDigit(raw[at + offset]) ?? 0)
                }
                return value
            }
            var literalStart = 0
            func flushLiteral(upTo end: Int) {
                if end > literalStart {
                    scalars.append(contentsOf: String(decoding: UnsafeRawBufferPointer(rebasing: raw[literalStart..<end]), as: UTF8.self).unicodeScalars)
                }
            }
            while index < raw.count {
                guard raw[index] == UInt8(ascii: "\\") else {
                    index += 1
                    continue
                }
                flushLiteral(upTo: index)
                let kind = raw[index + 1]
                index += 2
                switch kind {
                case UInt8(ascii: "b"): scalars.append("\u{08}")
                case UInt8(ascii: "f"): scalars.append("\u{0C}")
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "u"):
                    let unit = hex(index)
                    index += 4
                    if unit >= 0xD800 && unit <= 0xDBFF {
                        // A high surrogate must be followed by `\u` and a low one.
                        guard index + 6 <= raw.count, raw[index] == UInt8(ascii: "\\"), raw[index + 1] == UInt8(ascii: "u") else {
                            return .unpairedSurrogate
                        }
                        let low = hex(index + 2)
                        guard low >= 0xDC00 && low <= 0xDFFF else { return .unpairedSurrogate }
                        index += 6
                        let value = 0x10000 + (UInt32(unit - 0xD800) << 10) + UInt32(low - 0xDC00)
                        scalars.append(Unicode.Scalar(value)!)
                    } else if unit >= 0xDC00 && unit <= 0xDFFF {
                        return .unpairedSurrogate
                    } else {
                        scalars.append(Unicode.Scalar(unit)!)
                    }
                default:
                    scalars.append(Unicode.Scalar(kind))  // " \ /
                }
                literalStart = index
            }
            flushLiteral(upTo: raw.count)
            return .text(String(scalars))
        }
    }
}
