import Crypto
import Foundation

/// A license's terms. The file is `{"payload": BASE64(JSON of these terms), "signature":
/// BASE64(Ed25519 signature of the payload bytes)}`, so verification needs no canonical JSON.
public struct License: Codable, Sendable, Equatable {
    public var licensee: String
    /// `YYYY-MM-DD`, UTC; the license is ignored after this day.
    public var expiresAt: String
    /// Plans the license grants or raises (limits only ever go up).
    public var plans: [String: Plan]

    public init(licensee: String, expiresAt: String, plans: [String: Plan]) {
        self.licensee = licensee
        self.expiresAt = expiresAt
        self.plans = plans
    }

    struct Envelope: Codable {
        var payload: String
        var signature: String
    }

    /// Signs terms into the file format (the vendor's side; tests use it with their own key).
    public func signed(with key: Curve25519.Signing.PrivateKey) throws -> Data {
        let payload = try JSONEncoder.sentinel.encode(self)
        return try JSONEncoder.sentinelPretty.encode(Envelope(payload: payload.base64EncodedString(),
                                                              signature: try key.signature(for: payload).base64EncodedString()))
    }
}

/// Checks a license file against the public keys Sentinel trusts. The vendor's key is compiled
/// in; configuration cannot add keys, or an admin could sign their own entitlements.
public struct LicenseVerifier: Sendable {
    /// The license-signing key of Sentinel's vendor (Ed25519, raw 32 bytes, base64).
    public static let vendorKey = "Poy9HQxIfhnd7nqv+caeGToGB3py2BGKNmfWfu4i33o="

    let trustedKeys: [Curve25519.Signing.PublicKey]

    public init(trustedKeys: [Curve25519.Signing.PublicKey]? = nil) {
        self.trustedKeys = trustedKeys ?? [Data(base64Encoded: Self.vendorKey).flatMap { try? Curve25519.Signing.PublicKey(rawRepresentation: $0) }]
            .compactMap { $0 }
    }

    public func verify(fileAt path: String, now: Date = Date()) throws -> License {
        guard let data = FileManager.default.contents(atPath: path) else { throw ConfigError("cannot read license file \(path)") }
        return try verify(data, source: path, now: now)
    }

    public func verify(_ data: Data, source: String = "license", now: Date = Date()) throws -> License {
        guard let envelope = try? JSONDecoder.sentinel.decode(License.Envelope.self, from: data),
              let payload = Data(base64Encoded: envelope.payload), let signature = Data(base64Encoded: envelope.signature) else {
            throw ConfigError("\(source): not a Sentinel license file (expected JSON with base64 'payload' and 'signature')")
        }
        guard trustedKeys.contains(where: { $0.isValidSignature(signature, for: payload) }) else {
            throw ConfigError("\(source): the license signature is not valid (altered, or not issued for Sentinel)")
        }
        let license: License
        do { license = try JSONDecoder.sentinel.decode(License.self, from: payload) } catch {
            throw ConfigError("\(source): the license terms cannot be read: \(error)")
        }
        let today = String(ISO8601.string(now).prefix(10))
        guard license.expiresAt.wholeMatch(of: /\d{4}-\d{2}-\d{2}/) != nil, license.expiresAt >= today else {
            throw ConfigError("\(source): the license expired on \(license.expiresAt)")
        }
        return license
    }
}
