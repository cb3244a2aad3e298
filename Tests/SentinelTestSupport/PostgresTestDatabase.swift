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

    /// `encoding`: the database's, when not the server's default (UTF8 here).
    public static func create(encoding: String? = nil) throws -> PostgresTestDatabase {
        guard let server else { throw PostgresTestError("SENTINEL_TEST_POSTGRES is not set: run the tests through .ci/run") }
        let name = "sentinel_test_\(UUID().uuidString.prefix(8).lowercased())"
        let options = encoding.map { " ENCODING '\($0)' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0" } ?? ""
        _ = try psql(server, ["-c", "CREATE DATABASE \(name)\(options)"])
        return PostgresTestDatabase(name: name, server: server)
    }

    /// `appliance/analytics/load-exports.sh` on the files in `exports`, against this database.
    public func runLoader(_ script: URL, exports: URL) throws -> (status: Int32, stdout: String, stderr: String) {
        var environment = ProcessInfo.processInfo.environment
        environment["EXPORTS"] = exports.path
        // The loader takes libpq's variables, as on an analytics host.
        let names = ["host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD", "dbname": "PGDATABASE"]
        for pair in connection.split(separator: " ") {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            if parts.count == 2, let name = names[parts[0]] { environment[name] = parts[1] }
        }
        let child = try ChildProcess(executable: "/bin/sh", arguments: [script.path], environment: environment)
        let status = child.waitUntilExitBlocking()
        return (status, child.stdout, child.stderr)
    }

    /// Loads `file` as `user` (a role of this server).
    public func load(_ file: URL, as user: String) throws {
        _ = try Self.psql(connection + " user=\(user)", ["-v", "ON_ERROR_STOP=1", "-q", "-f", file.path])
    }

    /// A statement run on the server as its superuser (roles are the cluster's, not a database's).
    public func serverCommand(_ sql: String) throws {
        _ = try Self.psql(server, ["-c", sql])
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
