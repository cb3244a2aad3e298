import Crypto
import Foundation

/// The appliance's one symmetric key. Every stored secret (webhook secrets, app private keys, LLM
/// API keys) is sealed with it, so a stolen workspace file alone reveals no credential.
public struct MasterKey: Sendable {
    let key: SymmetricKey

    public init(key: SymmetricKey) { self.key = key }

    /// Reads `secrets/master.key`, creating it (32 random bytes, mode 0600) exactly once.
    public static func loadOrCreate(at url: URL) throws -> MasterKey {
        let fresh = SymmetricKey(size: .bits256)
        let bytes = fresh.withUnsafeBytes { Data($0) }
        _ = try FileSystem.createExclusive(url, contents: bytes, mode: 0o600)
        return try load(at: url)
    }

    public static func load(at url: URL) throws -> MasterKey {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw StorageError.io("cannot read master key at \(url.path)")
        }
        guard data.count == 32 else { throw StorageError.io("master key at \(url.path) is not 32 bytes") }
        return MasterKey(key: SymmetricKey(data: data))
    }

    /// AES-GCM; the result is nonce ‖ ciphertext ‖ tag. `context` binds a secret to where it is stored
    /// (e.g. "integration:42:webhook_secret") so a sealed value cannot be swapped between rows.
    public func seal(_ plaintext: Data, context: String) throws -> Data {
        let box = try AES.GCM.seal(plaintext, using: key, authenticating: Data(context.utf8))
        guard let combined = box.combined else { throw SecretError.sealFailed }
        return combined
    }

    public func open(_ sealed: Data, context: String) throws -> Data {
        do {
            let box = try AES.GCM.SealedBox(combined: sealed)
            return try AES.GCM.open(box, using: key, authenticating: Data(context.utf8))
        } catch {
            throw SecretError.openFailed
        }
    }
}

public enum SecretError: Error, CustomStringConvertible {
    case sealFailed, openFailed
    public var description: String {
        switch self {
        case .sealFailed: return "could not encrypt a secret"
        case .openFailed: return "a stored secret could not be decrypted (wrong master key or damaged value)"
        }
    }
}
