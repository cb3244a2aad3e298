import GRDB

/// Columns are snake_case (`head_sha`, `repository_id`); Swift names are camelCase with the
/// product's acronyms in capitals (`headSHA`, `repositoryID`). GRDB's `convertToSnakeCase` already
/// writes `headSHA` as `head_sha`; reading needs this mapping back, since `convertFromSnakeCase`
/// would look for `headSha`.
public enum RecordColumns {
    static let acronyms: [Substring: String] = ["id": "ID", "sha": "SHA", "sha256": "SHA256", "url": "URL", "usd": "USD"]

    /// `head_sha` → `headSHA`, `policy_sha256` → `policySHA256`, `pr_number` → `prNumber`.
    public static func propertyName(forColumn column: String) -> String {
        var name = ""
        for (index, word) in column.split(separator: "_", omittingEmptySubsequences: true).enumerated() {
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

    struct Key: CodingKey {
        let stringValue: String
        init(stringValue: String) { self.stringValue = stringValue }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
    }
}

extension DatabaseColumnDecodingStrategy {
    /// snake_case columns to camelCase properties with `ID`/`SHA`/`URL` in capitals.
    public static let sentinel = DatabaseColumnDecodingStrategy.custom { RecordColumns.Key(stringValue: RecordColumns.propertyName(forColumn: $0)) }
}
