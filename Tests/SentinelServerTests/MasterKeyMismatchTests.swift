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
        let setup = try await CommandLineGitHubSetup.make(in: dir, webhookSecret: "master-key-webhook-secret")
        let data = setup.data
        let healthy = try await SentinelProcess.run(["doctor", "--data-dir", data])
        #expect(healthy.stdout.contains("1 stored credential(s) open with the master key"), "\(healthy.stdout)")

        let keyFile = URL(fileURLWithPath: data).appendingPathComponent("secrets/master.key")
        let original = try Data(contentsOf: keyFile)
        try Data((0..<32).map { UInt8($0) }).write(to: keyFile)
        let doctor = try await SentinelProcess.run(["doctor", "--data-dir", data])
        #expect(doctor.status == 2, "\(doctor.stdout)")
        #expect(doctor.stdout.contains("stored credential(s) (in workspace(s) ws_") && doctor.stdout.contains("cannot be decrypted"), "\(doctor.stdout)")
        #expect(doctor.stdout.contains("put back the master.key"), "\(doctor.stdout)")

        for key in [nil, original] {
            if let key { try key.write(to: keyFile) }
            let server = try SentinelProcess.start(["serve", "--data-dir", data, "--host", "127.0.0.1", "--port", "0", "--no-tls"])
            defer { server.kill() }
            let port = try #require(await server.waitForListeningPort())
            let (status, body) = try await setup.deliverStar(port: port, secret: "master-key-webhook-secret")
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
