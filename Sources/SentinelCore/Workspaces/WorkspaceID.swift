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

    /// A secret's random part (letters of both cases and digits: about 5.95 bits each).
    static func secret(length: Int = 40) -> String { random(length, from: mixed) }

    private static func random(_ length: Int, from alphabet: [Character]) -> String {
        var rng = SystemRandomNumberGenerator()
        return String((0..<length).map { _ in alphabet[Int(rng.next(upperBound: UInt32(alphabet.count)))] })
    }
}
