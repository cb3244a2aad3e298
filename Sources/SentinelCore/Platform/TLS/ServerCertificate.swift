import Foundation
import NIOSSL
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The HTTPS listener's certificate and key, replaced while serving when their files change (a
/// renewal by certbot or an internal CA): new connections get the new pair, open ones keep the
/// one they began with. A changed pair that does not load (a key that belongs to another
/// certificate, as between the two writes of a renewal) is refused and the previous pair served on.
public final class ServerCertificate: Sendable {
    public let certificateFile: String
    public let keyFile: String
    /// The configuration the listener is made with (the pair loaded at start, and the hook that
    /// serves a replacement).
    public let configuration: TLSConfiguration

    /// What a check of the files found.
    public enum Reload: Sendable, Equatable {
        /// The files are as they were when last loaded (or last refused).
        case unchanged
        /// The new pair is served from the next connection on; the certificate's expiry.
        case reloaded(expiresAt: Date?)
        /// The files changed but cannot be served; the previous pair stays.
        case refused(String)
    }

    /// Identity of both files (device, inode, size, modification time): a renewal that replaces
    /// a file, writes it in place or points a symbolic link elsewhere changes it.
    struct Stamp: Equatable {
        var certificate: [Int64]
        var key: [Int64]
    }

    private struct State: Sendable {
        /// The pair served to new connections when it is not the one loaded at start.
        var replacement: Pair?
        /// The files as last loaded or refused.
        var stamp: Stamp
        /// When the certificate served to new connections expires (nil: unreadable).
        var expiresAt: Date?
        /// When it starts being valid (nil: unreadable).
        var validFrom: Date?
        /// When files refused only because their certificate was not valid yet become valid:
        /// loaded again then, unchanged as they are.
        var refusedUntil: Date?
    }

    struct Pair: Sendable {
        var chain: [NIOSSLCertificate]
        var key: NIOSSLPrivateKey
    }

    /// Shared with the handshake hook in `configuration` (which must not hold `self`).
    private final class Shared: Sendable {
        let state: Mutex<State>
        init(_ state: State) { self.state = Mutex(state) }
    }

    private let shared: Shared

    /// Loads the pair, with `ServerTLS`'s errors an admin can act on.
    public init(certificateFile: String, keyFile: String) throws {
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        let stamp = Self.stamp(certificateFile, keyFile)
        var configuration = try ServerTLS.load(certificateFile: certificateFile, keyFile: keyFile).configuration
        let validity = Self.validity(certificateFile)
        let shared = Shared(State(replacement: nil, stamp: stamp, expiresAt: validity?.until, validFrom: validity?.from))
        // Asked once per handshake: no change until a replacement has been loaded.
        configuration.sslContextCallback = { _, promise in
            guard let replacement = shared.state.withLock({ $0.replacement }) else { return promise.succeed(.noChanges) }
            var override = NIOSSLContextConfigurationOverride()
            override.certificateChain = replacement.chain.map { .certificate($0) }
            override.privateKey = .privateKey(replacement.key)
            promise.succeed(override)
        }
        self.shared = shared
        self.configuration = configuration
    }

    /// Loads the files again when they changed since they were last loaded or refused, or when
    /// files refused only for a certificate not valid yet have become valid (an internal CA's
    /// certificate issued "now" by a clock ahead of this one was never served).
    public func reloadIfChanged(now: Date = Date()) -> Reload {
        let stamp = Self.stamp(certificateFile, keyFile)
        guard shared.state.withLock({ $0.stamp != stamp || $0.refusedUntil.map { $0 <= now } == true }) else { return .unchanged }
        var refusedUntil: Date?
        do {
            let loaded = try ServerTLS.load(certificateFile: certificateFile, keyFile: keyFile)
            // Every client refuses a certificate outside its validity: swapped in, it took the
            // listener down for all new connections while the log said "reloaded".
            if let problem = Self.validityProblem(loaded.chain.first, now: now) {
                if let first = loaded.chain.first, !Self.hasExpired(first, now: now) {
                    refusedUntil = Date(timeIntervalSince1970: TimeInterval(first.notValidBefore))
                }
                throw StorageError.invalid(problem)
            }
            let validity = Self.validity(certificateFile)
            shared.state.withLock {
                $0 = State(replacement: Pair(chain: loaded.chain, key: loaded.key), stamp: stamp, expiresAt: validity?.until, validFrom: validity?.from)
            }
            return .reloaded(expiresAt: validity?.until)
        } catch {
            shared.state.withLock {
                $0.stamp = stamp
                $0.refusedUntil = refusedUntil
            }
            return .refused("\(error)")
        }
    }

    private static func hasExpired(_ certificate: NIOSSLCertificate, now: Date) -> Bool {
        Date(timeIntervalSince1970: TimeInterval(certificate.notValidAfter)) < now
    }

    /// Why a certificate cannot be served now: expired, or not valid yet; nil when it can.
    static func validityProblem(_ certificate: NIOSSLCertificate?, now: Date = Date()) -> String? {
        guard let certificate else { return nil }
        let notAfter = Date(timeIntervalSince1970: TimeInterval(certificate.notValidAfter))
        let notBefore = Date(timeIntervalSince1970: TimeInterval(certificate.notValidBefore))
        if notAfter < now { return "the certificate expired on \(ISO8601.string(notAfter))" }
        if notBefore > now { return "the certificate is not valid before \(ISO8601.string(notBefore))" }
        return nil
    }

    /// Why the certificate served now cannot be used by clients (expired, not valid yet); nil when it can.
    public var servedProblem: String? {
        let (until, from) = shared.state.withLock { ($0.expiresAt, $0.validFrom) }
        if let until, until < Date() { return "the certificate expired on \(ISO8601.string(until))" }
        if let from, from > Date() { return "the certificate is not valid before \(ISO8601.string(from))" }
        return nil
    }

    /// When the certificate served to new connections expires (nil when it could not be read).
    public var expiresAt: Date? { shared.state.withLock { $0.expiresAt } }

    private static func validity(_ file: String) -> (from: Date, until: Date)? {
        try? SelfSignedCertificate.validity(ofPEMFile: URL(fileURLWithPath: file))
    }

    static func stamp(_ certificateFile: String, _ keyFile: String) -> Stamp {
        func identity(_ path: String) -> [Int64] {
            var info = stat()
            guard stat(path, &info) == 0 else { return [] }
            return [Int64(info.st_dev), Int64(info.st_ino), Int64(info.st_size),
                    Int64(info.st_mtim.tv_sec), Int64(info.st_mtim.tv_nsec)]
        }
        return Stamp(certificate: identity(certificateFile), key: identity(keyFile))
    }
}
