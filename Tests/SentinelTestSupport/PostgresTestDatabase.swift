import Foundation

/// A throwaway database in the PostgreSQL that `.ci/run` starts on loopback
/// (`SENTINEL_TEST_POSTGRES`, a libpq connection string). Talks to it with `psql`, exactly as an
/// admin loads an export.
public struct PostgresTestDatabase: Sendable {
    public let name: String
    let server: String

    /// The server's connection string, when one is provided.
    public static var server: String? {
        ProcessInfo.processInfo.environment["SENTINEL_TEST_POSTGRES"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// True when the tests must run against PostgreSQL: a server is configured, or this is CI
    /// (which always provides one, so a missing server is a failure there, not a skip).
    public static var required: Bool {
        server != nil || ProcessInfo.processInfo.environment["CI"] != nil
    }

    public static func create() throws -> PostgresTestDatabase {
        guard let server else { throw PostgresTestError("SENTINEL_TEST_POSTGRES is not set: run the tests through .ci/run") }
        let name = "sentinel_test_\(UUID().uuidString.prefix(8).lowercased())"
        _ = try psql(server, ["-c", "CREATE DATABASE \(name)"])
        return PostgresTestDatabase(name: name, server: server)
    }

    var connection: String { server + " dbname=\(name)" }

    /// `psql -v ON_ERROR_STOP=1 -f FILE`, as the analytics README tells admins to.
    public func load(_ file: URL) throws {
        _ = try Self.psql(connection, ["-v", "ON_ERROR_STOP=1", "-q", "-f", file.path])
    }

    /// Rows of a query, tab-separated columns, unaligned.
    public func query(_ sql: String) throws -> [[String]] {
        let out = try Self.psql(connection, ["-At", "-F", "\t", "-c", sql])
        return out.split(separator: "\n", omittingEmptySubsequences: true).map { $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init) }
    }

    public func scalar(_ sql: String) throws -> String {
        try query(sql).first?.first ?? ""
    }

    public func drop() {
        _ = try? Self.psql(server, ["-c", "DROP DATABASE IF EXISTS \(name) WITH (FORCE)"])
    }

    static func psql(_ connection: String, _ arguments: [String]) throws -> String {
        let child = try ChildProcess(executable: "/usr/bin/psql", arguments: ["-X", connection] + arguments,
                                     environment: ProcessInfo.processInfo.environment)
        let status = child.waitUntilExitBlocking()
        guard status == 0 else {
            throw PostgresTestError("psql \(arguments.joined(separator: " ")) exited \(status): \(child.stderr)")
        }
        return child.stdout
    }
}

public struct PostgresTestError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
