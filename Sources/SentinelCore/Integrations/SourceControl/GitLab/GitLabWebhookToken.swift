import Crypto
import Foundation

/// `X-Gitlab-Token` verification: GitLab sends the webhook's secret token as it is; it is compared
/// with the integration's secret in constant time (both MACed under one key, then the MACs compared
/// with `isValidAuthenticationCode`, so neither length nor content leaks through timing).
public enum GitLabWebhookToken {
    public static func isValid(header: String?, secret: Data) -> Bool {
        guard let header, !header.isEmpty, header.utf8.count <= 1_024 else { return false }
        let key = SymmetricKey(data: SHA256.hash(data: secret))
        let expected = HMAC<SHA256>.authenticationCode(for: secret, using: key)
        return HMAC<SHA256>.isValidAuthenticationCode(expected, authenticating: Data(header.utf8), using: key)
    }
}
