import Foundation
import GRDB

/// The one mapping between Swift names and the names Sentinel stores and shows. Swift names are
/// camelCase with the product's acronyms in capitals (`headSHA`, `repositoryID`, `costUSD`);
/// columns and JSON keys are snake_case (`head_sha`, `repository_id`, `cost_usd`). Foundation's and
/// GRDB's `convertFromSnakeCase` would read `head_sha` as `headSha`, so both directions live here
/// and every coder (GRDB records, `JSONEncoder.sentinel`, `JSONDecoder.sentinel`) uses them.
public enum SnakeCaseKeys {
    static let acronyms: [Substring: String] = ["id": "ID", "sha": "SHA", "sha256": "SHA256", "url": "URL", "usd": "USD", "ca": "CA"]

    /// `head_sha` → `headSHA`, `policy_sha256` → `policySHA256`, `pr_number` → `prNumber`. A key
    /// without underscores is already a Swift name and comes back as it is (`runID` → `runID`).
    /// Every key of every decoded object comes through here (a 23 KB webhook has hundreds), so
    /// ASCII keys, all of them in practice, are mapped byte by byte.
    public static func propertyName(forKey key: String) -> String {
        let utf8 = key.utf8
        guard utf8.contains(UInt8(ascii: "_")) else { return key }
        guard utf8.allSatisfy({ $0 < 0x80 }) else { return unicodePropertyName(forKey: key) }
        var name: [UInt8] = []
        name.reserveCapacity(utf8.count)
        var words = 0
        for word in utf8.split(separator: UInt8(ascii: "_"), omittingEmptySubsequences: true) {
            defer { words += 1 }
            if words == 0 {
                name.append(contentsOf: word)
            } else if let acronym = asciiAcronyms.first(where: { $0.word.elementsEqual(word) }) {
                name.append(contentsOf: acronym.name)
            } else {
                let first = word[word.startIndex]
                name.append((UInt8(ascii: "a")...UInt8(ascii: "z")).contains(first) ? first - 32 : first)
                name.append(contentsOf: word.dropFirst())
            }
        }
        return String(decoding: name, as: UTF8.self)
    }

    private static let asciiAcronyms: [(word: [UInt8], name: [UInt8])] = acronyms.map { (Array($0.key.utf8), Array($0.value.utf8)) }

    static func unicodePropertyName(forKey key: String) -> String {
        var name = ""
        for (index, word) in key.split(separator: "_", omittingEmptySubsequences: true).enumerated() {
            if index == 0 {
                name += word
            } else if let acronym = acronyms[word] {
                name += acronym
            } else {
                name += word.prefix(1).uppercased() + word.dropFirst()
            }
        }
        return name
    }

    /// `headSHA` → `head_sha`, `hasCABundle` → `has_ca_bundle`, `durationP50Ms` → `duration_p50_ms`.
    /// A capital starts a word; a run of capitals is one word, except its last capital when a
    /// lowercase letter follows (it starts the next word). A name already in snake_case comes
    /// back as it is; so does any ASCII name without a capital (`id`, `summary`), without a copy.
    /// ASCII names (all of them in practice) are mapped byte by byte.
    public static func key(forProperty name: String) -> String {
        let utf8 = name.utf8
        guard utf8.allSatisfy({ $0 < 0x80 }) else { return unicodeKey(forProperty: name) }
        let isUpper = { (byte: UInt8) in (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) }
        let isLower = { (byte: UInt8) in (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) }
        guard utf8.contains(where: isUpper) else { return name }
        let bytes = Array(utf8)
        var key: [UInt8] = []
        key.reserveCapacity(bytes.count + 4)
        for (index, byte) in bytes.enumerated() {
            guard isUpper(byte) else { key.append(byte); continue }
            if index > 0 {
                let afterCapital = isUpper(bytes[index - 1])
                let beforeLowercase = index + 1 < bytes.count && isLower(bytes[index + 1])
                if !afterCapital || beforeLowercase { key.append(UInt8(ascii: "_")) }
            }
            key.append(byte + 32)
        }
        return String(decoding: key, as: UTF8.self)
    }

    static func unicodeKey(forProperty name: String) -> String {
        let characters = Array(name)
        var key = ""
        for (index, character) in characters.enumerated() {
            if character.isUppercase, index > 0 {
                let afterCapital = characters[index - 1].isUppercase
                let beforeLowercase = index + 1 < characters.count && characters[index + 1].isLowercase
                if !afterCapital || beforeLowercase { key += "_" }
            }
            key += character.lowercased()
        }
        return key
    }

    struct Key: CodingKey {
        let stringValue: String
        init(stringValue: String) { self.stringValue = stringValue }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
    }
}

extension DatabaseColumnDecodingStrategy {
    /// snake_case columns to camelCase properties with `ID`/`SHA`/`URL` in capitals.
    public static let sentinel = DatabaseColumnDecodingStrategy.custom { SnakeCaseKeys.Key(stringValue: SnakeCaseKeys.propertyName(forKey: $0)) }
}

extension DatabaseColumnEncodingStrategy {
    /// camelCase properties to snake_case columns (`headSHA` → `head_sha`).
    public static let sentinel = DatabaseColumnEncodingStrategy.custom { SnakeCaseKeys.key(forProperty: $0.stringValue) }
}

extension JSONEncoder {
    /// Stable output (sorted keys) for payloads, events, hashes and every JSON a user sees:
    /// snake_case keys (`SnakeCaseKeys`), ISO 8601 dates.
    public static var sentinel: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        e.dateEncodingStrategy = .iso8601
        e.keyEncodingStrategy = .custom { path in SnakeCaseKeys.Key(stringValue: SnakeCaseKeys.key(forProperty: path.last?.stringValue ?? "")) }
        return e
    }

    /// `sentinel` for files and terminals: the same keys, indented.
    public static var sentinelPretty: JSONEncoder {
        let e = JSONEncoder.sentinel
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes, .prettyPrinted]
        return e
    }
}

extension JSONDecoder {
    /// Reads what `JSONEncoder.sentinel` writes: snake_case keys to Swift names (`workspace_id` →
    /// `workspaceID`), ISO 8601 dates. Keys without underscores are taken as they are, so JSON
    /// stored before the keys were snake_case (job payloads such as `{"runID":1}`) still reads.
    public static var sentinel: JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        d.keyDecodingStrategy = .custom { path in SnakeCaseKeys.Key(stringValue: SnakeCaseKeys.propertyName(forKey: path.last?.stringValue ?? "")) }
        return d
    }
}
