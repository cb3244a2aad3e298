import Foundation
import GRDB
import GRDBSQLite
import SentinelCore

/// Helpers of the tests that check a read costs the same however much history a workspace holds.
enum History {
    /// SQLite virtual-machine instructions run by `body` (counted by a progress handler called on every one).
    static func instructions(_ db: Database, _ body: () throws -> Void) rethrows -> Int {
        var count = 0
        try withUnsafeMutablePointer(to: &count) { counter in
            sqlite3_progress_handler(db.sqliteConnection, 1, { context in
                context!.assumingMemoryBound(to: Int.self).pointee += 1
                return 0
            }, counter)
            defer { sqlite3_progress_handler(db.sqliteConnection, 0, nil, nil) }
            try body()
        }
        return count
    }

    /// A GitHub integration `integration` and its repository `acme/api` (id 1), for review runs to belong to.
    static func registerRepository(integration: String, in tx: inout WorkspaceTransaction) throws {
        try tx.db.execute(sql: "INSERT INTO integrations (id, kind, api_url, webhook_secret, created_at) VALUES (?, 'github', 'x', x'00', 0)",
                          arguments: [integration])
        _ = try RepositoryStore.register(integrationID: IntegrationID(integration)!, externalID: 1, fullName: "acme/api", installationID: 1, in: &tx)
    }
}
