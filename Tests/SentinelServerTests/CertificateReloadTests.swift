import Foundation
import SentinelCore
import SentinelTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A renewed TLS certificate is served without a restart.
@Suite("TLS certificate reload")
struct CertificateReloadTests {
    struct Pair {
        let certificate: String
        let key: String
        static func make(now: Date = Date()) throws -> Pair {
            let (certificate, key) = try SelfSignedCertificate.make(hostname: "localhost", now: now)
            return Pair(certificate: certificate, key: key)
        }
    }

    /// Whether `/healthz` answers over a connection that trusts only `trusted`'s certificate.
    static func serves(_ trusted: Pair, port: Int) async throws -> Bool {
        let client = try AsyncOutboundHTTPClient(caBundlePEM: trusted.certificate)
        let status = try? await client.send(OutboundRequest(url: URL(string: "https://127.0.0.1:\(port)/healthz")!, timeout: .seconds(10))).status
        await client.shutdown()
        return status == 200
    }

    /// `serves`, tried again until it holds (a loaded machine can keep the first handshake past a
    /// request's timeout); only what must not be served is asked once.
    static func eventuallyServes(_ trusted: Pair, port: Int) async -> Bool {
        await eventually(timeout: .seconds(90)) { try await serves(trusted, port: port) }
    }

    /// `sentinel_tls_certificate_expiry_timestamp_seconds` from `/metrics`.
    static func expiryMetric(_ trusted: Pair, port: Int) async throws -> Double? {
        let client = try AsyncOutboundHTTPClient(caBundlePEM: trusted.certificate)
        let body = try? await client.send(OutboundRequest(url: URL(string: "https://127.0.0.1:\(port)/metrics")!, timeout: .seconds(10))).body
        await client.shutdown()
        let line = String(decoding: body ?? Data(), as: UTF8.self).split(separator: "\n")
            .first { $0.hasPrefix("sentinel_tls_certificate_expiry_timestamp_seconds ") }
        return line.flatMap { Double($0.split(separator: " ")[1]) }
    }

    static func write(_ text: String, to path: String) throws {
        // As certbot does: a new file put in place by rename.
        try Data(text.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
    }

    /// `serve` with HTTPS from `pair`'s files in `dir`, looking at them every `checkEverySeconds`.
    static func serve(_ pair: Pair, in dir: TemporaryDirectory, checkEverySeconds: Int) async throws
        -> (server: SentinelProcess, port: Int, certificateFile: String, keyFile: String) {
        let cert = dir.url.appendingPathComponent("sentinel.crt").path
        let key = dir.url.appendingPathComponent("sentinel.key").path
        try write(pair.certificate, to: cert)
        try write(pair.key, to: key)
        let server = try SentinelProcess.start(["serve", "--data-dir", dir.url.appendingPathComponent("data").path, "--host", "127.0.0.1", "--port", "0"],
                                               environment: ["SENTINEL_SERVER_TLS_CERT_FILE": cert, "SENTINEL_SERVER_TLS_KEY_FILE": key,
                                                             "SENTINEL_SERVER_TLS_RELOAD_CHECK_SECONDS": String(checkEverySeconds)])
        let port = await server.waitForListeningPort()
        if port == nil { server.kill() }
        return (server, try #require(port, "serve did not start: \(server.stderr)"), cert, key)
    }

    @Test("SIGHUP serves renewed certificate files to new connections; a key of another certificate is refused and the old pair served on")
    func reloadOnHangUp() async throws {
        let dir = TemporaryDirectory("sentinel-tls-reload")
        defer { dir.cleanup() }
        // The first expires 300 days before the renewal.
        let now = Date()
        let (first, second) = (try Pair.make(now: now.addingTimeInterval(-300 * 86_400)), try Pair.make(now: now))
        let (server, port, cert, key) = try await Self.serve(first, in: dir, checkEverySeconds: 86_400)
        defer { server.kill() }
        #expect(await Self.eventuallyServes(first, port: port))
        let tenYears = 10 * 365 * 86_400.0
        let before = try #require(try await Self.expiryMetric(first, port: port))
        #expect(abs(before - (now.timeIntervalSince1970 - 300 * 86_400 + tenYears)) < 5)
        #expect(!(try await Self.serves(second, port: port)))

        // Nothing changed: a SIGHUP says so, and no longer ends the process.
        server.signal(SIGHUP)
        #expect(await server.waitForLog("SIGHUP: the TLS certificate files are unchanged"), "\(server.stderr)")
        #expect(!server.hasExited)

        // Half-way through a renewal: the new certificate, the old key. Refused; the old pair stays.
        try Self.write(second.certificate, to: cert)
        server.signal(SIGHUP)
        #expect(await server.waitForLog("the TLS certificate files changed but cannot be served"), "\(server.stderr)")
        #expect(server.stderr.contains("does not belong to the certificate"), "\(server.stderr)")
        #expect(await Self.eventuallyServes(first, port: port))

        try Self.write(second.key, to: key)
        server.signal(SIGHUP)
        #expect(await server.waitForLog("TLS certificate reloaded"), "\(server.stderr)")
        #expect(await Self.eventuallyServes(second, port: port))
        #expect(!(try await Self.serves(first, port: port)))
        let after = try #require(try await Self.expiryMetric(second, port: port))
        #expect(abs(after - (now.timeIntervalSince1970 + tenYears)) < 5, "the gauge follows the served certificate")

        server.terminate()
        #expect(await server.waitForExit(timeout: .seconds(60)) == 0, "\(server.stderr)")
    }

    @Test("a replacement that has expired, or is not valid yet, is refused and the previous pair served on (it was swapped in and logged 'reloaded')")
    func outOfDateReplacementRefused() throws {
        let dir = TemporaryDirectory("sentinel-tls-dates")
        defer { dir.cleanup() }
        let cert = dir.url.appendingPathComponent("sentinel.crt").path
        let key = dir.url.appendingPathComponent("sentinel.key").path
        let current = try Pair.make()
        try Self.write(current.certificate, to: cert)
        try Self.write(current.key, to: key)
        let served = try ServerCertificate(certificateFile: cert, keyFile: key)
        #expect(served.servedProblem == nil)
        let expiresAt = served.expiresAt
        // Ten-year certificates: one made eleven years ago has expired; one made tomorrow is not valid yet.
        for (made, problem) in [(Date().addingTimeInterval(-11 * 365 * 86_400), "expired on"), (Date().addingTimeInterval(86_400), "not valid before")] {
            let pair = try Pair.make(now: made)
            try Self.write(pair.key, to: key)
            try Self.write(pair.certificate, to: cert)
            guard case .refused(let reason) = served.reloadIfChanged() else { Issue.record("not refused: \(problem)"); continue }
            #expect(reason.contains(problem), "\(reason)")
            #expect(served.expiresAt == expiresAt, "the previous certificate is still the one served")
        }
        let renewed = try Pair.make()
        try Self.write(renewed.key, to: key)
        try Self.write(renewed.certificate, to: cert)
        guard case .reloaded = served.reloadIfChanged() else { Issue.record("a valid renewal was not served"); return }
        // Refused only because it is not valid yet, a pair is loaded once it is valid, with no
        // change to its files (it was never looked at again: the old certificate served on until
        // it expired); until then it is not refused again at every check.
        let now = Date()
        let soon = try Pair.make(now: now.addingTimeInterval(86_400))
        try Self.write(soon.key, to: key)
        try Self.write(soon.certificate, to: cert)
        guard case .refused = served.reloadIfChanged(now: now) else { Issue.record("not refused while not valid yet"); return }
        guard case .unchanged = served.reloadIfChanged(now: now.addingTimeInterval(60)) else { Issue.record("refused again before it is valid"); return }
        guard case .reloaded = served.reloadIfChanged(now: now.addingTimeInterval(2 * 86_400)) else { Issue.record("not loaded once valid"); return }
        #expect(served.reloadIfChanged(now: now.addingTimeInterval(3 * 86_400)) == .unchanged)
        // A pair not valid yet at start is served (there is no other) and named as a problem, as an expired one is.
        let early = try Pair.make(now: Date().addingTimeInterval(86_400))
        try Self.write(early.key, to: key)
        try Self.write(early.certificate, to: cert)
        #expect(try ServerCertificate(certificateFile: cert, keyFile: key).servedProblem?.contains("not valid before") == true)
    }

    @Test("the files are looked at every server.tls.reload_check_seconds: a renewal is served without a signal")
    func reloadOnSchedule() async throws {
        let dir = TemporaryDirectory("sentinel-tls-poll")
        defer { dir.cleanup() }
        let (first, second) = (try Pair.make(), try Pair.make())
        let (server, port, cert, key) = try await Self.serve(first, in: dir, checkEverySeconds: 1)
        defer { server.kill() }
        #expect(await Self.eventuallyServes(first, port: port))
        try Self.write(second.key, to: key)
        try Self.write(second.certificate, to: cert)
        #expect(await server.waitForLog("TLS certificate reloaded"), "\(server.stderr)")
        #expect(await Self.eventuallyServes(second, port: port))
        server.terminate()
        #expect(await server.waitForExit(timeout: .seconds(60)) == 0, "\(server.stderr)")
    }

    @Test("without TLS a SIGHUP is logged and the server keeps serving")
    func hangUpWithoutTLS() async throws {
        let dir = TemporaryDirectory("sentinel-hup")
        defer { dir.cleanup() }
        let server = try SentinelProcess.start(["serve", "--data-dir", dir.url.appendingPathComponent("data").path, "--host", "127.0.0.1", "--port", "0", "--no-tls"])
        defer { server.kill() }
        _ = try #require(await server.waitForListeningPort(), "\(server.stderr)")
        server.signal(SIGHUP)
        #expect(await server.waitForLog("SIGHUP: nothing to reload (server.tls.enabled is false)"), "\(server.stderr)")
        #expect(!server.hasExited)
        server.terminate()
        #expect(await server.waitForExit(timeout: .seconds(60)) == 0, "\(server.stderr)")
    }

    @Test("a SIGHUP while serve drains after SIGTERM does not end it early: it still checkpoints, says it stopped cleanly and exits 0")
    func hangUpDuringShutdown() async throws {
        let dir = TemporaryDirectory("sentinel-hup-drain")
        defer { dir.cleanup() }
        let server = try SentinelProcess.start(["serve", "--data-dir", dir.url.appendingPathComponent("data").path, "--host", "127.0.0.1", "--port", "0", "--no-tls"])
        defer { server.kill() }
        _ = try #require(await server.waitForListeningPort(), "\(server.stderr)")
        server.terminate()
        // Hang-ups all through the shutdown (a `systemctl reload`, a closed terminal): the default
        // action of SIGHUP would end the process wherever it is.
        for _ in 0..<20 where !server.hasExited {
            server.signal(SIGHUP)
            try await Task.sleep(for: .milliseconds(25))
        }
        #expect(await server.waitForExit(timeout: .seconds(60)) == 0, "\(server.stderr)")
        #expect(server.stderr.contains("stopped cleanly"), "\(server.stderr)")
    }
}
