import Foundation
import GRDB
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import SentinelCore
@testable import SentinelServer
import SentinelTestSupport
import Testing

extension APIWorld {
    /// Registers a repository under a new integration of `kind` whose stored API URL is `apiURL`.
    func addRepository(_ name: String, kind: String, apiURL: String) async throws -> Int64 {
        try await appliance.supervisor.withWorkspace(workspaceA) { actor in
            try await actor.write { tx in
                let integration = IntegrationID("int_" + String(UUID().uuidString.lowercased().filter { $0.isLetter || $0.isNumber }.prefix(16)))!
                try tx.db.execute(sql: "INSERT INTO integrations (id, kind, api_url, webhook_secret, created_at) VALUES (?, ?, ?, x'00', 0)",
                                  arguments: [integration.rawValue, kind, apiURL])
                return try RepositoryStore.register(integrationID: integration, externalID: Int64.random(in: 1...1_000_000), fullName: name,
                                                    installationID: 1, in: &tx).id
            }
        }
    }

    /// A queued run of `repository`'s pull request `pr`.
    func addQueuedRun(repository: Int64, pr: Int) async throws -> Int64 {
        try await appliance.supervisor.withWorkspace(workspaceA) { actor in
            try await actor.write { tx in
                guard let repo = try RepositoryStore.find(id: repository, in: tx.db) else { throw StorageError.notFound("repo") }
                return try ReviewRunStore.request(repository: repo, prNumber: pr, headSHA: "", baseSHA: nil, trigger: "opened", fullReview: false,
                                                  correlationID: nil, in: &tx).0
            }
        }
    }

    func providers() async throws -> [ProviderSummary] {
        try await appliance.supervisor.withWorkspace(workspaceA) { try await appliance.api.providers.list(in: $0) }
    }

    func teams() async throws -> [Team] {
        try await appliance.supervisor.withWorkspace(workspaceA) { actor in try await actor.read { db in try TeamStore.list(in: db) } }
    }
}

/// `n` characters of text.
func long(_ n: Int) -> String { String(repeating: "x", count: n) }

/// The rows of the run page's history table, as "state|what|by|reason".
func historyRows(_ body: String) -> [String] {
    guard let start = body.range(of: #"<table class="history">"#), let end = body[start.upperBound...].range(of: "</table>") else { return [] }
    let table = String(body[start.upperBound..<end.lowerBound])
    return table.components(separatedBy: "<tr><td>").dropFirst().map { row in
        let cells = row.components(separatedBy: "</td><td>").map {
            $0.replacingOccurrences(of: "</td></tr>", with: "").replacingOccurrences(of: "</tbody>", with: "")
        }
        let state = cells[1].replacingOccurrences(of: #"<span class="state [a-z]+">"#, with: "", options: .regularExpression)
            .replacingOccurrences(of: "</span>", with: "")
        return ([state] + cells[2...]).joined(separator: "|")
    }
}
