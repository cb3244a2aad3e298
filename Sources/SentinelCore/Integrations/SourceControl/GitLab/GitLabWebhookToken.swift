import Crypto
import Foundation

/// `X-Gitlab-Token` verification: GitLab sends the webhook's secret token as it is; it is compared
/// with the integration's secret in constant time (both MACed under one key, then the MACs compared
/// with `isValidAuthenticationCode`, so neither length nor content leaks through timing).
public enum GitLabWebhookToken {
    public static func isValid(header: String?, secret: Data) -> Bool {
        // The longest secret an integration takes is 1,000 characters, up to 4 bytes each: a bound
        // of 1,024 bytes refused every delivery of a long secret in accented letters.
        guard let header, !header.isEmpty, header.utf8.count <= 4_000 else { return false }
        let key = SymmetricKey(data: SHA256.hash(data: secret))
        let expected = HMAC<SHA256>.authenticationCode(for: secret, using: key)
        return HMAC<SHA256>.isValidAuthenticationCode(expected, authenticating: Data(header.utf8), using: key)
    }
}
