import Crypto
import Foundation
import SwiftASN1
import X509

/// HTTPS from the first start with no configuration: when no certificate is configured, Sentinel
/// makes a self-signed one (P-256, 10 years, SANs for localhost, 127.0.0.1 and this host) in
/// `data/tls/` once, and reuses it. Admins replace it with their own via `server.tls.*`.
public enum SelfSignedCertificate {
    public struct Files: Sendable {
        public let certificate: URL
        public let privateKey: URL
    }

    public static func ensure(in directory: URL, hostname: String = ProcessInfo.processInfo.hostName) throws -> Files {
        let files = Files(certificate: directory.appendingPathComponent("sentinel.crt"),
                          privateKey: directory.appendingPathComponent("sentinel.key"))
        let fm = FileManager.default
        if fm.fileExists(atPath: files.certificate.path), fm.fileExists(atPath: files.privateKey.path) { return files }
        try fm.createDirectory(at: directory, withIntermediateDirectories: true)
        let (certificatePEM, keyPEM) = try make(hostname: hostname)
        try FileSystem.removeIfPresent(files.privateKey)
        guard try FileSystem.createExclusive(files.privateKey, contents: Data(keyPEM.utf8), mode: 0o600) else {
            throw StorageError.io("cannot write \(files.privateKey.path)")
        }
        try Data(certificatePEM.utf8).write(to: files.certificate, options: .atomic)
        return files
    }

    /// PEM certificate and PEM private key, valid for ten years from `now`.
    public static func make(hostname: String, now: Date = Date()) throws -> (String, String) {
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName {
            OrganizationName("Sentinel appliance")
            CommonName(hostname.isEmpty ? "localhost" : hostname)
        }
        var names: [GeneralName] = [.dnsName("localhost"), .ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1]))]
        if !hostname.isEmpty, hostname != "localhost" { names.append(.dnsName(hostname)) }
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: .init(key.publicKey),
            notValidBefore: now.addingTimeInterval(-3600),
            notValidAfter: now.addingTimeInterval(10 * 365 * 86400),
            issuer: name,
            subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                // Its own trust anchor (clients pin it), as `openssl req -x509` makes them.
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                KeyUsage(digitalSignature: true, keyCertSign: true)
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames(names)
            },
            issuerPrivateKey: .init(key))
        return (try certificate.serializeAsPEM().pemString, key.pemRepresentation)
    }
}

extension SelfSignedCertificate {
    /// When the first certificate of a PEM file stops being valid.
    public static func expiry(ofPEMFile url: URL) throws -> Date {
        try validity(ofPEMFile: url).until
    }

    /// When the first certificate of a PEM file starts and stops being valid.
    public static func validity(ofPEMFile url: URL) throws -> (from: Date, until: Date) {
        guard let text = try? String(contentsOf: url, encoding: .utf8) else { throw StorageError.io("cannot read \(url.path)") }
        do {
            let pems = try PEMDocument.parseMultiple(pemString: text).filter { $0.discriminator == "CERTIFICATE" }
            guard let first = pems.first else { throw StorageError.invalid("\(url.path) holds no PEM certificate") }
            let certificate = try Certificate(pemDocument: first)
            return (certificate.notValidBefore, certificate.notValidAfter)
        } catch let error as StorageError {
            throw error
        } catch {
            throw StorageError.invalid("\(url.path) is not a readable PEM certificate (\(error))")
        }
    }
}
