import Foundation
@testable import SentinelCore
import SentinelTestSupport
import Testing

@Suite("Snake-case keys")
struct SnakeCaseKeysTests {
    @Test("snake_case columns and keys map to camelCase properties with ID, SHA, URL, USD and CA in capitals")
    func propertyNames() {
        #expect(SnakeCaseKeys.propertyName(forKey: "head_sha") == "headSHA")
        #expect(SnakeCaseKeys.propertyName(forKey: "repository_id") == "repositoryID")
        #expect(SnakeCaseKeys.propertyName(forKey: "policy_sha256") == "policySHA256")
        #expect(SnakeCaseKeys.propertyName(forKey: "pr_number") == "prNumber")
        #expect(SnakeCaseKeys.propertyName(forKey: "id") == "id")
        #expect(SnakeCaseKeys.propertyName(forKey: "api_url") == "apiURL")
        #expect(SnakeCaseKeys.propertyName(forKey: "has_ca_bundle") == "hasCABundle")
        #expect(SnakeCaseKeys.propertyName(forKey: "runID") == "runID")
    }

    @Test("the byte-by-byte mapping of ASCII names gives what the general mapping gives")
    func asciiPathsAgree() {
        var rng = SeededRNG(seed: 18)
        let pieces = ["_", "__", "id", "sha", "sha256", "url", "usd", "ca", "a", "x", "head", "Id", "SHA", "Url", "B", "9", "p50", "z_"]
        for _ in 0..<20_000 {
            let text = (0..<rng.int(0...6)).map { _ in pieces[rng.int(0...(pieces.count - 1))] }.joined()
            #expect(SnakeCaseKeys.propertyName(forKey: text) == SnakeCaseKeys.unicodePropertyName(forKey: text), "\(text)")
            #expect(SnakeCaseKeys.key(forProperty: text) == SnakeCaseKeys.unicodeKey(forProperty: text), "\(text)")
        }
        // Non-ASCII names take the general path.
        #expect(SnakeCaseKeys.propertyName(forKey: "größe_ändern") == "größeÄndern")
        #expect(SnakeCaseKeys.key(forProperty: "größeÄndern") == "größe_ändern")
    }

    @Test("camelCase properties map to snake_case keys, and back to the same property")
    func keysRoundTrip() {
        let expected = [
            "headSHA": "head_sha", "repositoryID": "repository_id", "policySHA256": "policy_sha256", "costUSD": "cost_usd",
            "hasCABundle": "has_ca_bundle", "apiURL": "api_url", "durationP50Ms": "duration_p50_ms", "isAdmin": "is_admin",
            "lastEventSeq": "last_event_seq", "id": "id", "sha256": "sha256", "start_line": "start_line", "aiCalls": "ai_calls",
        ]
        for (property, key) in expected {
            #expect(SnakeCaseKeys.key(forProperty: property) == key, "\(property)")
            if property != "start_line" { #expect(SnakeCaseKeys.propertyName(forKey: key) == property, "\(key)") }
        }
    }

    /// The JSON users see (`--json`, API bodies, backup and export manifests, license payloads,
    /// event data) in the exact keys it has always had: each document decodes with
    /// `JSONDecoder.sentinel` and encodes back to the same document with `JSONEncoder.sentinel`.
    /// Dictionary keys (policy keys, outcomes, plan names) are data and stay as they are.
    @Test("every shown or stored document keeps its snake_case keys through the shared coders")
    func documentsKeepTheirKeys() throws {
        try roundTrip(PolicyVersion.self, #"""
            {"id":3,"scope":"workspace","values":{"review.max_files":5,"a_b":true,"cD":"x"},"locks":["review.max_files"],
             "created_by":"cli","created_at":"2026-11-30T00:00:00Z"}
            """#)
        try roundTrip(RunEventPayload.self, #"""
            {"run_id":1,"repository":"o/r","pr_number":2,"head_sha":"abc","trigger":"push","state":"completed","reason":"ok",
             "findings":3,"duration_ms":10,"finding_counts":[{"severity":"high","category":"security","count":1}]}
            """#)
        try roundTrip(User.self, #"{"id":"u1","email":"a@b.c","is_admin":true,"created_at":1.5}"#)
        try roundTrip(APITokenSummary.self, #"""
            {"id":"t1","name":"ci","prefix":"snt_ab","scopes":["read","write"],"created_at":"c","expires_at":"e","last_used_at":"l","revoked_at":"r"}
            """#)
        try roundTrip(Membership.self, #"{"workspace_id":"ws_1","user_id":"u1","email":"a@b.c","role":"admin"}"#)
        try roundTrip(UsageReport.self, #"""
            {"workspace_id":"ws_1","period":"2026-11","runs":{"completed":1,"needs_input":2,"camelCase":3},
             "models":[{"provider":"openai","model":"m","calls":1,"input_tokens":2,"output_tokens":3,"cost_usd":0.5}],
             "input_tokens":2,"output_tokens":3,"cost_usd":0.5,"plan":"team",
             "limits":[{"limit":"reviews_per_month","used":1,"allowed":2,"soft_limit_reached":false}]}
            """#)
        try roundTrip(Plan.self, #"{"name":"team","reviews_per_month":1,"tokens_per_month":2,"repositories":3,"seats":4}"#)
        try roundTrip(License.self, #"""
            {"licensee":"Acme","expires_at":"2027-01-01",
             "plans":{"big_team":{"name":"big_team","reviews_per_month":1,"tokens_per_month":2,"repositories":3,"seats":4}}}
            """#)
        try roundTrip(SchemaFileStatus.self, #"{"file":"w.sqlite","kind":"workspace","workspace_id":"ws_1","bytes":10,"problem":"p"}"#)
        try roundTrip(BackupManifest.self, #"""
            {"format":1,"created_at":"c","sentinel_version":"1.0",
             "files":[{"file":"f","kind":"workspace","workspace_id":"ws_1","size":1,"sha256":"ab","schema_version":"7"}]}
            """#)
        try roundTrip(VerifyReport.self, #"""
            {"source":"/d","backup":false,"ok":false,
             "files":[{"file":"f","kind":"control","workspace_id":"ws_1","events":2,"last_event_seq":3,"ok":true}],
             "problems":[{"file":"f","check":"integrity_check","detail":"d"}]}
            """#)
        try roundTrip(DeadJob.self, #"{"job_id":4,"kind":"review.run","payload":"e30=","attempts":5,"reason":"r"}"#)
        try roundTrip(DoctorReport.self, #"{"data_directory":"/d","findings":[{"severity":"warning","check":"c","message":"m","fix":"f"}]}"#)
        try roundTrip(DailyRollup.self, #"""
            {"day":"2026-11-30","repository":"o/r","runs":1,"runs_by_outcome":{"completed":1},"findings":2,
             "findings_by_severity":{"high":2},"findings_by_category":{"secret_leak":2},"ai_calls":3,"input_tokens":4,
             "output_tokens":5,"cost_usd":0.25,"duration_p50_ms":6,"duration_p95_ms":7}
            """#)
        try roundTrip(ExportManifest.self, #"""
            {"export_id":"x","created_at":"c","file":"f","sha256":"ab","bytes":1,"events":2,
             "workspaces":[{"workspace_id":"ws_1","from_seq":0,"to_seq":2,"events":2,"error":"e"}]}
            """#)
        try roundTrip(ProviderSummary.self, #"""
            {"id":"p","kind":"azure","model":"m","base_url":"https://x","api_version":"v","deployment":"d","key_suffix":"abcd",
             "enabled":true,"priority":1,"created_at":"c","updated_at":"u"}
            """#)
        try roundTrip(IntegrationSummary.self, #"""
            {"id":"i","workspace_id":"ws_1","kind":"github","app_id":1,"api_url":"https://api.github.com","has_ca_bundle":false,
             "webhook_path":"/webhooks/github/i","created_at":"c"}
            """#)
        try roundTrip(WorkspaceSummary.self, #"""
            {"id":"ws_1","name":"acme","plan":"free","created_at":"c","file":"f","file_bytes":1,"status":"ok","schema_version":"7",
             "jobs":{"queued":1},"events":2}
            """#)
    }

    @Test("job payloads written before keys were snake_case still read")
    func oldJobPayloadsRead() throws {
        #expect(try JSONDecoder.sentinel.decode(ReviewRunJob.self, from: Data(#"{"runID":7}"#.utf8)).runID == 7)
        #expect(try JSONDecoder.sentinel.decode(ReviewRunJob.self, from: Data(#"{"run_id":7}"#.utf8)).runID == 7)
        #expect(try JSONDecoder.sentinel.decode(DeliveryJob.self, from: Data(#"{"deliveryID":"d"}"#.utf8)).deliveryID == "d")
        let listener = try JSONDecoder.sentinel.decode(EventListenerPayload.self, from: Data(#"{"seq":1,"eventID":"e","type":"T"}"#.utf8))
        #expect(listener == EventListenerPayload(seq: 1, eventID: "e", type: "T"))
        let written = String(decoding: try JSONEncoder.sentinel.encode(listener), as: UTF8.self)
        #expect(written == #"{"event_id":"e","seq":1,"type":"T"}"#)
    }

    @Test("a prepared review stored with the old Swift-named keys still reads, and a new one round-trips")
    func preparedReviewReads() throws {
        let old = #"""
            {"body":"b","findings":[{"path":"a.py","startLine":1,"line":2,"side":"RIGHT","severity":"high","category":"security",
             "title":"t","body":"b","source":"builtin","fingerprint":"f"}],"requestChanges":true,"conclusion":"failure","title":"t",
             "checkSummary":"s","filesReviewed":1,"filesTotal":2,"summary":"s","reviewedSHA":"abc","inlineMovedToSummary":false}
            """#
        let prepared = try JSONDecoder.sentinel.decode(PreparedReview.self, from: Data(old.utf8))
        #expect(prepared.findings.first?.startLine == 1)
        #expect(prepared.reviewedSHA == "abc")
        #expect(prepared.requestChanges)
        let written = try JSONEncoder.sentinel.encode(prepared)
        #expect(String(decoding: written, as: UTF8.self).contains(#""reviewed_sha":"abc""#))
        #expect(try JSONDecoder.sentinel.decode(PreparedReview.self, from: written) == prepared)
    }

    @Test("repo list --json keeps the field names it has always printed")
    func repositoryListNames() throws {
        let record = RepositoryRecord(id: 1, integrationID: "int_1", externalID: 2, fullName: "o/r", installationID: 3, enabled: true,
                                      removed: false, registeredAt: 4.5)
        let encoder = JSONEncoder.sentinel
        encoder.keyEncodingStrategy = .useDefaultKeys  // as `printJSONWithSwiftNames` prints it
        #expect(String(decoding: try encoder.encode(record), as: UTF8.self) == #"""
            {"enabled":true,"externalId":2,"fullName":"o/r","id":1,"installationId":3,"integrationId":"int_1","registeredAt":4.5,"removed":false}
            """#)
    }

    private func roundTrip<T: Codable>(_ type: T.Type, _ document: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let value = try JSONDecoder.sentinel.decode(type, from: Data(document.utf8))
        let written = try JSONEncoder.sentinel.encode(value)
        let expected = try JSONSerialization.jsonObject(with: Data(document.utf8)) as? NSDictionary
        let actual = try JSONSerialization.jsonObject(with: written) as? NSDictionary
        #expect(expected != nil && actual == expected, "\(T.self): \(String(decoding: written, as: UTF8.self))", sourceLocation: sourceLocation)
    }
}
