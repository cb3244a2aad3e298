import AsyncHTTPClient
import Foundation
import NIOCore
import NIOSSL
#if canImport(Glibc)
import Glibc
#endif

/// The reason a connection to another server failed, for outbound HTTP calls and mail alike.
public enum ConnectionFailure {
    /// Why a connection failed, in words an admin can act on: NIO and BoringSSL describe it as
    /// `handshakeFailed(NIOSSL.BoringSSLError.sslError([Error: 268435581 error:1000007d:…
    /// CERTIFICATE_VERIFY_FAILED at …/handshake.cc:320]))` or `connection reset (error set):
    /// Connection refused) (errno: 111)`, and those reached run reasons, `notify test` and doctor.
    public static func reason(_ error: any Error) -> String {
        switch error {
        case let error as IOError:
            switch error.errnoCode {
            case ECONNREFUSED: return "connection refused (nothing listens on that port)"
            case ECONNRESET: return "the server reset the connection (does it speak the scheme of the URL, http or https?)"
            case EHOSTUNREACH, ENETUNREACH: return "no route to the host"
            case ETIMEDOUT: return "timed out connecting"
            default: return String(cString: strerror(error.errnoCode))
            }
        case let error as NIOSSLError:
            if case .handshakeFailed(let inner) = error {
                let text = "\(inner)"
                if text.contains("CERTIFICATE_VERIFY_FAILED") {
                    return "the server's TLS certificate is not trusted (not issued by a CA this appliance trusts, or expired)"
                }
                if text.contains("WRONG_VERSION_NUMBER") || text.contains("PACKET_LENGTH_TOO_LONG") {
                    return "the TLS handshake failed: the server does not speak TLS on that port"
                }
                return "the TLS handshake failed"
            }
            if case .uncleanShutdown = error { return "the server closed the TLS connection without finishing it" }
            return "TLS error: \(error)"
        case let error as NIOSSLExtraError where error == .failedToValidateHostname:
            return "the server's TLS certificate is for another host name"
        case let error as SocketAddressError.UnknownHost:
            return "no address is known for the host name '\(error.host)'"
        case let error as HTTPClientError where error == .remoteConnectionClosed:
            return "the server closed the connection before answering"
        default:
            return RemoteText.clean("\(error)", limit: 200)
        }
    }
}
