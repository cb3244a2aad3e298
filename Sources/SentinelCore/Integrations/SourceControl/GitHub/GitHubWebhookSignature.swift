import Crypto
import Foundation

/// `X-Hub-Signature-256` verification: HMAC-SHA256 of the raw body with the integration's webhook
/// secret, compared in constant time. GitHub sends `sha256=<hex>`.
public enum GitHubWebhookSignature {
    public static func sign(body: Data, secret: Data) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: secret))
        return "sha256=" + mac.map { String(format: "%02x", $0) }.joined()
    }

    public static func isValid(header: String?, body: Data, secret: Data) -> Bool {
        guard let header, header.hasPrefix("sha256="), header.count == 71,
              let provided = Data(hexString: String(header.dropFirst(7))) else { return false }
        return HMAC<SHA256>.isValidAuthenticationCode(provided, authenticating: body, using: SymmetricKey(data: secret))
    }
}

extension Data {
    /// Parses lowercase or uppercase hex; nil on any other character or odd length.
    init?(hexString: String) {
        guard hexString.utf8.count % 2 == 0 else { return nil }
        var bytes = [UInt8]()
        bytes.reserveCapacity(hexString.utf8.count / 2)
        var high: UInt8?
        for c in hexString.utf8 {
            let v: UInt8
            switch c {
            case 48...57: v = c - 48
            case 97...102: v = c - 87
            case 65...70: v = c - 55
            default: return nil
            }
            if let h = high { bytes.append(h << 4 | v); high = nil } else { high = v }
        }
        self.init(bytes)
    }
}
