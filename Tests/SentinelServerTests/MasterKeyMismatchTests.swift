import AsyncHTTPClient
import _CryptoExtras
import Foundation
import NIOCore
import SentinelCore
import SentinelTestSupport
import Testing

/// A data directory whose `secrets/master.key` is not the key its credentials were sealed with
/// (replaced, or the data restored onto a machine without its own key).
@Suite("Master key that does not match")
struct MasterKeyMismatchTests {
    @Test("webhooks answer 503 credentials-unreadable (not 500) and doctor names the fault; with the right key back, deliveries are accepted")
    func mismatchedMasterKey() async throws {
        let dir = TemporaryDirectory("sentinel-masterkey")
        defer { dir.cleanup() }
        let data = dir.url.appendingPathComponent("data").path
        #expect(try await SentinelProcess.run(["workspace", "create", "acme", "--data-dir", data]).status == 0)
        let pem = dir.url.appendingPathComponent("app.pem")
        try TestRSAKeys.other().pemRepresentation.write(to: pem, atomically: true, encoding: .utf8)
        let secretFile = dir.url.appendingPathComponent("secret.txt")
        try "master-key-webhook-secret\n".write(to: secretFile, atomically: true, encoding: .utf8)
        let added = try await SentinelProcess.run(["integration", "add", "github", "--data-dir", data, "--workspace", "acme", "--app-id", "77",
                                                   "--private-key-file", pem.path, "--webhook-secret-file", secretFile.path, "--json"])
        let object = try JSONSerialization.jsonObject(with: Data(added.stdout.utf8)) as? [String: Any]
        let path = try #require(object?["webhook_path"] as? String, "\(added.stderr)")
        let healthy = try await SentinelProcess.run(["doctor", "--data-dir", data])
        #expect(healthy.stdout.contains("1 stored credential(s) open with the master key"), "\(healthy.stdout)")

        let keyFile = URL(fileURLWithPath: data).appendingPathComponent("secrets/master.key")
        let original = try Data(contentsOf: keyFile)
        try Data((0..<32).map { UInt8($0) }).write(to: keyFile)
        let doctor = try await SentinelProcess.run(["doctor", "--data-dir", data])
        #expect(doctor.status == 2, "\(doctor.stdout)")
        #expect(doctor.stdout.contains("stored credential(s) (in workspace(s) ws_") && doctor.stdout.contains("cannot be decrypted"), "\(doctor.stdout)")
        #expect(doctor.stdout.contains("put back the master.key"), "\(doctor.stdout)")

        func send(_ port: Int) async throws -> (Int, String) {
            let body = Data(#"{"action":"created"}"#.utf8)
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
            request.method = .POST
            request.headers.add(name: "X-GitHub-Event", value: "star")
            request.headers.add(name: "X-GitHub-Delivery", value: UUID().uuidString)
            request.headers.add(name: "X-Hub-Signature-256", value: GitHubWebhookSignature.sign(body: body, secret: Data("master-key-webhook-secret".utf8)))
            request.body = .bytes(ByteBuffer(bytes: body))
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
            return (Int(response.status.code), String(buffer: try await response.body.collect(upTo: 1 << 16)))
        }
        for key in [nil, original] {
            if let key { try key.write(to: keyFile) }
            let server = try SentinelProcess.start(["serve", "--data-dir", data, "--host", "127.0.0.1", "--port", "0", "--no-tls"])
            defer { server.kill() }
            let port = try #require(await server.waitForListeningPort())
            let (status, body) = try await send(port)
            if key == nil {
                #expect(status == 503, "\(body)")
                #expect(body.contains("urn:sentinel:problem:credentials-unreadable"), "\(body)")
                #expect(server.stderr.contains(#""error":"SecretError""#) && server.stderr.contains(#""status":"503""#))
            } else {
                #expect(status == 202, "\(body)")
            }
            server.terminate()
            #expect(await server.waitForExit(timeout: .seconds(30)) == 0)
        }
    }
}
