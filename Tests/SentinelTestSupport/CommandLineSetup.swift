import AsyncHTTPClient
import Foundation
import NIOCore
import SentinelCore

/// A data directory set up the way an admin does it from the shell: workspace `acme` with a
/// GitHub App integration (`sentinel workspace create`, `sentinel integration add github`), for
/// tests that then run `sentinel serve` on it.
public struct CommandLineGitHubSetup: Sendable {
    public let data: String
    public let workspaceID: WorkspaceID
    public let integrationID: String
    public let webhookPath: String
    /// The file holding the webhook secret (a test may write a new one there to rotate it).
    public let secretFile: URL

    public static func make(in directory: TemporaryDirectory, webhookSecret: String) async throws -> CommandLineGitHubSetup {
        let data = directory.url.appendingPathComponent("data").path
        let created = try await SentinelProcess.run(["workspace", "create", "acme", "--data-dir", data, "--json"])
        guard created.status == 0, let workspace = ((try? JSONSerialization.jsonObject(with: Data(created.stdout.utf8))) as? [String: Any])
            .flatMap({ $0["id"] as? String }).flatMap(WorkspaceID.init) else { throw SetupError("workspace create: \(created.stderr)") }
        let pem = directory.url.appendingPathComponent("app.pem")
        try TestRSAKeys.other().pemRepresentation.write(to: pem, atomically: true, encoding: .utf8)
        let secretFile = directory.url.appendingPathComponent("secret.txt")
        try (webhookSecret + "\n").write(to: secretFile, atomically: true, encoding: .utf8)
        let added = try await SentinelProcess.run(["integration", "add", "github", "--data-dir", data, "--workspace", "acme", "--app-id", "77",
                                                   "--private-key-file", pem.path, "--webhook-secret-file", secretFile.path, "--json"])
        guard let object = try? JSONSerialization.jsonObject(with: Data(added.stdout.utf8)) as? [String: Any],
              let id = object["id"] as? String, let path = object["webhook_path"] as? String else {
            throw SetupError("integration add github: \(added.stderr)")
        }
        return CommandLineGitHubSetup(data: data, workspaceID: workspace, integrationID: id, webhookPath: path, secretFile: secretFile)
    }

    /// Posts a `star` delivery signed with `secret` to a server on `port`; its status and body.
    public func deliverStar(port: Int, secret: String, deliveryID: String = UUID().uuidString) async throws -> (status: Int, body: String) {
        let body = Data(#"{"action":"created"}"#.utf8)
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(webhookPath)")
        request.method = .POST
        request.headers.add(name: "X-GitHub-Event", value: "star")
        request.headers.add(name: "X-GitHub-Delivery", value: deliveryID)
        request.headers.add(name: "X-Hub-Signature-256", value: GitHubWebhookSignature.sign(body: body, secret: Data(secret.utf8)))
        request.body = .bytes(ByteBuffer(bytes: body))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        return (Int(response.status.code), String(buffer: try await response.body.collect(upTo: 1 << 16)))
    }

    public struct SetupError: Error, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }
}

/// Another process's write transaction on an SQLite file, as a `sqlite3` shell left in
/// `BEGIN IMMEDIATE` holds it (Python's `sqlite3`, the system library): reads go on, writes wait
/// for it. Held until `release()` (or the child is killed).
public final class SQLiteWriteLock: Sendable {
    let child: ChildProcess

    /// Returns once the lock is held.
    public init(_ file: String) async throws {
        child = try ChildProcess(executable: "/usr/bin/env", arguments: ["python3", "-c", """
            import sqlite3, sys, time
            db = sqlite3.connect(sys.argv[1], isolation_level=None)
            db.execute("BEGIN IMMEDIATE")
            print("locked", flush=True)
            time.sleep(600)
            """, file], environment: ProcessInfo.processInfo.environment)
        let child = self.child
        guard await eventually(timeout: .seconds(30), { child.stdout.contains("locked") }) else {
            child.signal(SIGKILL)
            throw CommandLineGitHubSetup.SetupError("could not lock \(file): \(child.stderr)")
        }
    }

    public func release() async {
        child.signal(SIGKILL)
        _ = await child.waitForExit(timeout: .seconds(10))
    }

    deinit { child.signal(SIGKILL) }
}
