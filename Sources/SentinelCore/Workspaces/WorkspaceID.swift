import Foundation

/// A workspace's identifier, also the name of its file. Validated everywhere it enters the
/// process, because it becomes a path component.
public struct WorkspaceID: Hashable, Sendable, Codable, Comparable, CustomStringConvertible {
    public let rawValue: String

    public init?(_ raw: String) {
        guard raw.count == 19, raw.hasPrefix("ws_"),
              raw.dropFirst(3).allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) }) else { return nil }
        rawValue = raw
    }

    public static func generate() -> WorkspaceID {
        WorkspaceID(RandomIdentifier.make(prefix: "ws_"))!
    }

    public var description: String { rawValue }
    public static func < (a: WorkspaceID, b: WorkspaceID) -> Bool { a.rawValue < b.rawValue }

    public init(from decoder: Decoder) throws {
        let raw = try decoder.singleValueContainer().decode(String.self)
        guard let id = WorkspaceID(raw) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "not a workspace id: \(raw)"))
        }
        self = id
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }
}

/// Identifiers handed out by the appliance: a prefix naming the kind (`ws_`, `int_`, `usr_`, …)
/// and 16 random lowercase letters and digits, safe in paths and URLs.
public enum RandomIdentifier {
    static let lowercase = Array("abcdefghijklmnopqrstuvwxyz0123456789")
    static let mixed = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")

    public static func make(prefix: String, length: Int = 16) -> String {
        prefix + random(length, from: lowercase)
    }

    /// A random (version 4) UUID, lowercased, from the system's generator (`getrandom`). Foundation's
    /// `UUID()` reads `/dev/urandom` and, with no file descriptor left, gives the nil UUID
    /// (`00000000-0000-4000-8000-000000000000`) every time: an event id then collided with itself,
    /// and every later event of the workspace failed.
    public static func uuid() -> String {
        var rng = SystemRandomNumberGenerator()
        var bytes: [UInt8] = []
        bytes.reserveCapacity(16)
        for word in [rng.next(), rng.next()] as [UInt64] {
            for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: word >> UInt64(shift))) }
        }
        bytes[6] = (bytes[6] & 0x0F) | 0x40
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(36)
        for (i, byte) in bytes.enumerated() {
            if [4, 6, 8, 10].contains(i) { text.append(UInt8(ascii: "-")) }
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// A secret's random part (letters of both cases and digits: about 5.95 bits each).
    static func secret(length: Int = 40) -> String { random(length, from: mixed) }

    private static func random(_ length: Int, from alphabet: [Character]) -> String {
        var rng = SystemRandomNumberGenerator()
        return String((0..<length).map { _ in alphabet[Int(rng.next(upperBound: UInt32(alphabet.count)))] })
    }
}
