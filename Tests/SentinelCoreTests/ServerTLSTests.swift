import Foundation
import SentinelCore
import SentinelTestSupport
import Testing

/// `server.tls.cert_file` and `server.tls.key_file` as admins get them wrong: the error names the
/// file and what is wrong with it (NIOSSL said only `failedToLoadCertificate` or `failedToLoadPrivateKey`).
@Suite("the HTTPS listener's certificate and key")
struct ServerTLSTests {
    @Test("a missing or unreadable file, DER, an encrypted key and another certificate's key each get their own error")
    func filesExplained() throws {
        let dir = TemporaryDirectory("sentinel-tls")
        defer { dir.cleanup() }
        func file(_ name: String, _ text: String) throws -> String {
            let path = dir.url.appendingPathComponent(name).path
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            return path
        }
        let (certificatePEM, keyPEM) = try SelfSignedCertificate.make(hostname: "sentinel.example.com")
        let (_, otherKeyPEM) = try SelfSignedCertificate.make(hostname: "other.example.com")
        let certificate = try file("sentinel.crt", certificatePEM)
        let key = try file("sentinel.key", keyPEM)
        #expect(try ServerTLS.configuration(certificateFile: certificate, keyFile: key).minimumTLSVersion == .tlsv12)

        func failure(_ certificate: String, _ key: String) -> String {
            do { _ = try ServerTLS.configuration(certificateFile: certificate, keyFile: key); return "accepted" } catch { return "\(error)" }
        }
        let otherKey = try file("other.key", otherKeyPEM)
        #expect(failure(certificate, otherKey) == "the private key in \(otherKey) does not belong to the certificate in \(certificate) (the first one in the file)")
        let missing = dir.url.appendingPathComponent("absent.crt").path
        #expect(failure(missing, key) == "the TLS certificate \(missing) does not exist")
        #expect(failure(certificate, dir.path) == "the TLS private key \(dir.path) is a directory, not a file")
        let base64 = certificatePEM.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
        let der = dir.url.appendingPathComponent("sentinel.der")
        try #require(Data(base64Encoded: base64)).write(to: der)
        #expect(failure(der.path, key).hasSuffix("holds no PEM certificate (-----BEGIN CERTIFICATE-----); it looks like DER: convert it with openssl x509 -inform DER -in \(der.path) -out sentinel.crt"))
        let encrypted = try file("encrypted.key", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n")
        #expect(failure(certificate, encrypted).hasPrefix("\(encrypted) is encrypted with a passphrase; Sentinel needs the key unencrypted"))
        #expect(failure(certificate, try file("empty.key", "")) == "\(dir.path)/empty.key holds no PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC)")
        #expect(failure(key, key) == "\(key) holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    }
}
