import Foundation
import NIOSSL

/// The HTTPS listener's certificate chain and private key, loaded with errors an admin can act on:
/// which file, and what is wrong with it. (NIOSSL says only `failedToLoadCertificate` or
/// `failedToLoadPrivateKey`, for a missing file, a DER file, an encrypted key and a key that
/// belongs to another certificate alike.)
public enum ServerTLS {
    /// TLS 1.2 and 1.3, the chain of `certificateFile` (server certificate first) and its key.
    public static func configuration(certificateFile: String, keyFile: String) throws -> TLSConfiguration {
        try load(certificateFile: certificateFile, keyFile: keyFile).configuration
    }

    /// The chain and key of a pair of files, checked to belong together, and the configuration serving them.
    static func load(certificateFile: String, keyFile: String) throws
        -> (chain: [NIOSSLCertificate], key: NIOSSLPrivateKey, configuration: TLSConfiguration) {
        let certificateBytes = try read(certificateFile, what: "certificate")
        guard let chain = try? NIOSSLCertificate.fromPEMBytes(certificateBytes), !chain.isEmpty else {
            var message = "\(certificateFile) holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
            if certificateBytes.first == 0x30 {
                message += "; it looks like DER: convert it with openssl x509 -inform DER -in \(certificateFile) -out sentinel.crt"
            }
            throw TLSFileError(message)
        }
        let keyBytes = try read(keyFile, what: "private key")
        let keyText = String(decoding: keyBytes, as: UTF8.self)
        if keyText.contains("ENCRYPTED") {
            throw TLSFileError("\(keyFile) is encrypted with a passphrase; Sentinel needs the key unencrypted "
                               + "(openssl pkey -in \(keyFile) -out sentinel.key, then readable only by the sentinel user)")
        }
        guard let key = try? NIOSSLPrivateKey(bytes: keyBytes, format: .pem) else {
            throw TLSFileError("\(keyFile) holds no PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC)")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        configuration.cipherSuites = tls12CipherSuites
        do {
            _ = try NIOSSLContext(configuration: configuration)
        } catch {
            throw TLSFileError("the private key in \(keyFile) does not belong to the certificate in \(certificateFile) (the first one in the file)")
        }
        return (chain, key, configuration)
    }

    /// TLS 1.2's suites: forward-secret key exchange with an AEAD cipher only, as Mozilla's
    /// "intermediate" profile has them (NIOSSL's default also offered CBC with SHA-1). TLS 1.3's
    /// suites are all of that kind and are not set here.
    public static let tls12CipherSuites = [
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    ].joined(separator: ":")

    private static func read(_ path: String, what: String) throws -> [UInt8] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw TLSFileError("the TLS \(what) \(path) does not exist")
        }
        guard !isDirectory.boolValue else { throw TLSFileError("the TLS \(what) \(path) is a directory, not a file") }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TLSFileError("cannot read the TLS \(what) \(path) (it must be readable by the user sentinel runs as)")
        }
        return Array(data)
    }
}

public struct TLSFileError: Error, CustomStringConvertible, Equatable {
    public let description: String
    init(_ description: String) { self.description = description }
}
