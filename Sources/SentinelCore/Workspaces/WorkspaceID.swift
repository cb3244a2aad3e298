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
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        var rng = SystemRandomNumberGenerator()
        let suffix = String((0..<16).map { _ in alphabet[Int(rng.next(upperBound: UInt32(alphabet.count)))] })
        return WorkspaceID("ws_" + suffix)!
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
