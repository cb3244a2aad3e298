import AsyncHTTPClient
import Foundation
import GRDB
@testable import SentinelServer
import SentinelTestSupport
import Testing

/// What a database error means to HTTP (`DatabaseError: ProblemConvertible`).
@Suite("storage errors as HTTP problems")
struct StorageProblemTests {
    @Test("a volume that cannot be written (read-only, I/O errors, a file that cannot be opened) is 503 with Retry-After, as a full one is; it was 500")
    func unwritableVolume() {
        for code in [ResultCode.SQLITE_READONLY, .SQLITE_IOERR, .SQLITE_CANTOPEN] {
            let problem = DatabaseError(resultCode: code).problem
            #expect(problem.status == 503, "\(code)")
            #expect(problem.retryAfter == 30, "\(code)")
            #expect(problem.type == "urn:sentinel:problem:storage-unavailable", "\(code)")
        }
        #expect(DatabaseError(resultCode: .SQLITE_FULL).problem.type == "urn:sentinel:problem:storage-full")
        #expect(DatabaseError(resultCode: .SQLITE_CONSTRAINT).problem.status == 500)
        for code in [ResultCode.SQLITE_BUSY, .SQLITE_LOCKED] {
            let problem = DatabaseError(resultCode: code).problem
            #expect(problem.status == 503 && problem.retryAfter == 5 && problem.type == "urn:sentinel:problem:storage-busy", "\(code)")
        }
    }

    @Test("a request that waits past storage.busy_timeout_ms on a lock another process holds gets 503 storage-busy (it was 500), and works once the lock is gone")
    func lockHeldByAnotherProcess() async throws {
        let dir = TemporaryDirectory("sentinel-busy")
        defer { dir.cleanup() }
        let data = dir.url.appendingPathComponent("data").path
        let passwordFile = dir.url.appendingPathComponent("pw").path
        try "a long enough password\n".write(toFile: passwordFile, atomically: true, encoding: .utf8)
        #expect(try await SentinelProcess.run(["user", "create", "--data-dir", data, "--email", "ops@example.com", "--password-file", passwordFile]).status == 0)
        let token = try await SentinelProcess.run(["token", "create", "--data-dir", data, "--email", "ops@example.com", "--scopes", "read", "write"])
        let bearer = token.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let server = try SentinelProcess.start(["serve", "--data-dir", data, "--host", "127.0.0.1", "--port", "0", "--no-tls"],
                                               environment: ["SENTINEL_STORAGE_BUSY_TIMEOUT_MS": "200"])
        defer { server.kill() }
        let port = try #require(await server.waitForListeningPort())
        func createToken() async throws -> (Int, String, String?) {
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/api/v1/tokens")
            request.method = .POST
            request.headers.add(name: "Authorization", value: "Bearer \(bearer)")
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(.init(string: #"{"name":"busy","scopes":["read"]}"#))
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(20))
            return (Int(response.status.code), String(buffer: try await response.body.collect(upTo: 1 << 16)), response.headers.first(name: "Retry-After"))
        }
        // Another process's write transaction on control.sqlite (a `sqlite3` shell left in BEGIN IMMEDIATE).
        let lock = try await SQLiteWriteLock(URL(fileURLWithPath: data).appendingPathComponent("control.sqlite").path)
        let (status, body, retryAfter) = try await createToken()
        #expect(status == 503, "\(body)")
        #expect(body.contains("urn:sentinel:problem:storage-busy"), "\(body)")
        #expect(retryAfter == "5")
        await lock.release()
        #expect(try await createToken().0 == 201)
        server.terminate()
        #expect(await server.waitForExit(timeout: .seconds(30)) == 0)
    }
}
