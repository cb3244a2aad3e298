import Foundation
import GRDB
import SentinelCore
import SentinelTestSupport
import Testing

/// Proves Sentinel against the platforms' own published payloads and API shapes in
/// `../shared/fixtures` (present in CI). Every test is skipped when the folder is absent; a named
/// fixture missing from it fails its test.
enum Fixtures {
    static let root: URL = {
        let package = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return package.deletingLastPathComponent().appendingPathComponent("shared/fixtures")
    }()
    static var available: Bool { FileManager.default.fileExists(atPath: root.path) }
    static func url(_ path: String) -> URL { root.appendingPathComponent(path) }
    static func json(_ path: String) throws -> [String: Any] {
        try cast(JSONSerialization.jsonObject(with: Data(contentsOf: url(path))), path)
    }
    /// The JSON files of a fixture folder; a missing or empty folder is a failure, not a skip.
    static func files(in folder: String) throws -> [URL] {
        let found = try FileManager.default.contentsOfDirectory(at: url(folder), includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "json" }.sorted { $0.lastPathComponent < $1.lastPathComponent }
        guard !found.isEmpty else { throw FixtureShapeError(description: "fixture folder \(folder) holds no JSON files") }
        return found
    }

    /// Fails, naming the file, when a fixture the test relies on is not there.
    static func require(_ path: String) throws {
        guard FileManager.default.fileExists(atPath: url(path).path) else {
            throw FixtureShapeError(description: "fixture \(url(path).path) is missing")
        }
    }
}

struct FixtureShapeError: Error, CustomStringConvertible {
    let description: String
}

/// A typed view of a fixture value, or a test failure naming what was not there.
func cast<T>(_ value: Any?, _ what: String) throws -> T {
    guard let typed = value as? T else { throw FixtureShapeError(description: "fixture value '\(what)' is missing or not \(T.self)") }
    return typed
}

/// A small JSON Schema checker for the keywords GitHub's request schemas use.
enum SchemaCheck {
    static func problems(_ value: Any, _ schema: [String: Any], path: String = "$") -> [String] {
        var out: [String] = []
        if let type = schema["type"] as? String {
            let ok: Bool
            switch type {
            case "object": ok = value is [String: Any]
            case "array": ok = value is [Any]
            case "string": ok = value is String
            case "integer": ok = value is Int && !(value is Bool)
            case "number": ok = value is NSNumber && !(value is Bool)
            case "boolean": ok = value is Bool
            default: ok = true
            }
            if !ok { return ["\(path): expected \(type), got \(Swift.type(of: value))"] }
        }
        if let allowed = schema["enum"] as? [Any], let s = value as? String, !allowed.contains(where: { ($0 as? String) == s }) {
            out.append("\(path): '\(s)' not in enum")
        }
        if let object = value as? [String: Any] {
            let properties = schema["properties"] as? [String: Any] ?? [:]
            for key in schema["required"] as? [String] ?? [] where object[key] == nil { out.append("\(path): missing required '\(key)'") }
            for (key, v) in object {
                if let sub = properties[key] as? [String: Any] {
                    out += problems(v, sub, path: "\(path).\(key)")
                } else if !properties.isEmpty, (schema["additionalProperties"] as? Bool) != true {
                    out.append("\(path): '\(key)' is not a documented property")
                }
            }
        }
        if let array = value as? [Any], let items = schema["items"] as? [String: Any] {
            for (i, v) in array.enumerated() { out += problems(v, items, path: "\(path)[\(i)]") }
        }
        return out
    }

    static func requestSchema(_ file: String) throws -> [String: Any] {
        let op = try Fixtures.json("github/api/\(file)")
        let body: [String: Any] = try cast(op["requestBody"], "requestBody")
        let content: [String: Any] = try cast(body["content"], "content")
        let json: [String: Any] = try cast(content["application/json"], "application/json")
        return try cast(json["schema"], "schema")
    }

    static func example(_ file: String, status: String) throws -> Data {
        let op = try Fixtures.json("github/api/\(file)")
        let responses: [String: Any] = try cast(op["responses"], "responses")
        let response: [String: Any] = try cast(responses[status], status)
        let content: [String: Any] = try cast(response["content"], "content")
        let json: [String: Any] = try cast(content["application/json"], "application/json")
        let examples = try #require(json["examples"] as? [String: Any])
        let first = try #require(examples["default"] ?? examples.values.first)
        // Examples are stored either bare or OpenAPI-style as {"value": …}.
        if let wrapped = first as? [String: Any], wrapped.count == 1, let value = wrapped["value"] {
            return try JSONSerialization.data(withJSONObject: value)
        }
        return try JSONSerialization.data(withJSONObject: first)
    }
}

@Suite("GitHub conformance (shared fixtures)", .enabled(if: Fixtures.available))
struct GitHubConformanceTests {
    @Test("the published X-Hub-Signature-256 test vector verifies; a changed body does not")
    func signatureVector() throws {
        let vectors = try Fixtures.json("signatures.json")
        let github: [String: Any] = try cast(vectors["github_webhook_hmac_sha256"], "vector")
        let secret = Data((try cast(github["secret"], "secret") as String).utf8)
        let payload = Data((try cast(github["payload"], "payload") as String).utf8)
        let header: String = try cast(github["header_value"], "header_value")
        #expect(GitHubWebhookSignature.sign(body: payload, secret: secret) == header)
        #expect(GitHubWebhookSignature.isValid(header: header, body: payload, secret: secret))
        #expect(!GitHubWebhookSignature.isValid(header: header, body: payload + Data(" ".utf8), secret: secret))
        #expect(!GitHubWebhookSignature.isValid(header: header.uppercased(), body: payload, secret: Data("other".utf8)))
    }

    @Test("every published webhook payload is accepted and routed")
    func webhookPayloadsRoute() async throws {
        let h = try TestHarness()
        let ws = try h.createWorkspace()
        let integration = IntegrationID("int_conformance00000")!
        try await h.supervisor.withWorkspace(ws) { actor in
            try await actor.write { tx in
                try tx.db.execute(sql: """
                    INSERT INTO integrations (id, kind, api_url, webhook_secret, created_at) VALUES (?, 'github', 'https://api.github.com', x'00', 0)
                    """, arguments: [integration.rawValue])
            }
        }
        for name in ["pull_request.opened", "pull_request.synchronize", "pull_request.reopened", "pull_request.closed", "issue_comment.created",
                     "issue_comment.created.on_pull_request", "installation.created", "installation_repositories.added"] {
            try Fixtures.require("github/webhooks/\(name).json")
        }
        var outcomes: [String: String] = [:]
        for file in try Fixtures.files(in: "github/webhooks") {
            let name = file.deletingPathExtension().lastPathComponent
            let event = String(name.split(separator: ".")[0])
            let body = try Data(contentsOf: file)
            let outcome = try await h.supervisor.withWorkspace(ws) { actor in
                try await actor.write { tx in
                    try GitHubDeliveryProcessor.route(event: event, payload: body, integrationID: integration, correlationID: name, tx: &tx)
                }
            }
            outcomes[name] = outcome
            #expect(!outcome.hasPrefix("ignored: payload not understood"), "\(name): \(outcome)")
        }
        #expect(outcomes.count >= 10)
        #expect(outcomes["pull_request.opened"]?.contains("requested") == true)
        #expect(outcomes["pull_request.synchronize"]?.contains("requested") == true)
        #expect(outcomes["pull_request.reopened"]?.contains("requested") == true)
        #expect(outcomes["pull_request.closed"]?.contains("closed") == true)
        #expect(outcomes["issue_comment.created"]?.contains("not a pull request") == true)
        #expect(outcomes["issue_comment.created.on_pull_request"] == "ignored: no command")
        #expect(outcomes["installation.created"]?.hasPrefix("registered") == true)
        #expect(outcomes["installation_repositories.added"]?.hasPrefix("added") == true)
        let runs = try await h.supervisor.withWorkspace(ws) { try await $0.read { db in try ReviewRunStore.list(in: db) } }
        #expect(!runs.isEmpty)
        await h.stop()
    }

    @Test("review, check run and comment bodies Sentinel sends match GitHub's published request schemas")
    func requestBodiesMatchSchemas() throws {
        let review = GitHubReviewRequest(commitID: "6dcb09b5b57875f334f61aebed695e2e4193db5e", body: "<!-- sentinel:run:1 -->\nSummary", event: "COMMENT",
                                         comments: [.init(path: "a.swift", line: 3, side: "RIGHT", startLine: nil, startSide: nil, body: "x"),
                                                    .init(path: "a.swift", line: 9, side: "RIGHT", startLine: 7, startSide: "RIGHT", body: "y")])
        let checkCreate = GitHubCheckRunRequest(name: "Sentinel", headSHA: "6dcb09b5", status: "in_progress", conclusion: nil, externalID: "sentinel-run-1",
                                                startedAt: "2026-11-29T10:00:00Z", completedAt: nil, output: .init(title: "t", summary: "s", text: nil))
        let checkUpdate = GitHubCheckRunRequest(name: nil, headSHA: nil, status: "completed", conclusion: "neutral", externalID: nil,
                                                startedAt: nil, completedAt: "2026-11-29T10:00:01Z", output: .init(title: "t", summary: "s", text: nil))
        for (file, body) in [("pulls.create-review.json", try JSONEncoder.sentinel.encode(review)),
                             ("checks.create.json", try JSONEncoder.sentinel.encode(checkCreate)),
                             ("checks.update.json", try JSONEncoder.sentinel.encode(checkUpdate)),
                             ("issues.create-comment.json", try JSONEncoder.sentinel.encode(["body": "hello"]))] {
            let value = try JSONSerialization.jsonObject(with: body)
            let problems = SchemaCheck.problems(value, try SchemaCheck.requestSchema(file))
            #expect(problems.isEmpty, "\(file): \(problems)")
        }
    }

    @Test("GitHub's published response examples decode into Sentinel's models")
    func responsesDecode() throws {
        let pr = try JSONDecoder.sentinel.decode(GitHubPullRequest.self, from: try SchemaCheck.example("pulls.get.json", status: "200"))
        #expect(pr.number > 0)
        #expect(!pr.head.sha.isEmpty)
        // snake_case fields arrive under their Swift names through JSONDecoder.sentinel.
        #expect(pr.base.repo?.fullName.isEmpty == false)
        #expect(pr.changedFiles != nil)
        let files = try JSONDecoder.sentinel.decode([GitHubChangedFile].self, from: try SchemaCheck.example("pulls.list-files.json", status: "200"))
        #expect(!files.isEmpty)
        let diffFiles = GitHubSession.diffFiles(files)
        #expect(diffFiles.map(\.path) == files.map(\.filename))
        struct Token: Decodable { let token: String; let expiresAt: String }
        _ = try JSONDecoder.sentinel.decode(Token.self, from: try SchemaCheck.example("apps.create-installation-access-token.json", status: "201"))
        let comparison = try JSONDecoder.sentinel.decode(GitHubComparison.self, from: try SchemaCheck.example("repos.compare-commits.json", status: "200"))
        #expect(comparison.status != nil, "the comparison's status tells a force-push from a fast-forward")
        let review = try JSONDecoder.sentinel.decode(GitHubReview.self, from: try SchemaCheck.example("pulls.create-review.json", status: "200"))
        #expect(review.user?.login.isEmpty == false, "a review names its author, so only the App's own reviews are trusted")
        #expect(review.commitID?.isEmpty == false)
    }

    @Test("recorded GitHub errors are classified: 422 and 401 fail, not retried")
    func recordedErrors() throws {
        for (file, status) in [("error.422-validation-failed.hub4j.json", 422), ("error.401-bad-credentials.hub4j.json", 401)] {
            let exchange = try Fixtures.json("github/api/recorded/\(file)")
            let response: [String: Any] = try cast(exchange["response"], "response")
            let bodyObject = try #require(response["body"])
            let body = try (bodyObject as? String).map { Data($0.utf8) } ?? JSONSerialization.data(withJSONObject: bodyObject)
            let error = GitHubClient.error(OutboundResponse(status: status, body: body), operation: "test")
            #expect(error.status == status)
            #expect(!error.isRetryable)
            #expect(!error.message.isEmpty)
        }
    }
}
