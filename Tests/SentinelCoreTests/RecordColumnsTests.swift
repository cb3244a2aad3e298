import SentinelCore
import Testing

@Suite("Record columns")
struct RecordColumnsTests {
    @Test("snake_case columns map to camelCase properties with ID, SHA and URL in capitals")
    func propertyNames() {
        #expect(RecordColumns.propertyName(forColumn: "head_sha") == "headSHA")
        #expect(RecordColumns.propertyName(forColumn: "repository_id") == "repositoryID")
        #expect(RecordColumns.propertyName(forColumn: "policy_sha256") == "policySHA256")
        #expect(RecordColumns.propertyName(forColumn: "pr_number") == "prNumber")
        #expect(RecordColumns.propertyName(forColumn: "id") == "id")
        #expect(RecordColumns.propertyName(forColumn: "api_url") == "apiURL")
    }
}
