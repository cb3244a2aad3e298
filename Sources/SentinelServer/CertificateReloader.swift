import Foundation
import Logging
import SentinelCore
import ServiceLifecycle
import UnixSignals

/// Serves a renewed TLS certificate without a restart: looks at the certificate and key files
/// every `server.tls.reload_check_seconds`, and at once on SIGHUP (`systemctl reload sentinel`).
/// Without TLS a SIGHUP is logged and ignored (it would otherwise end the process unannounced).
struct CertificateReloader: Service {
    let certificate: ServerCertificate?
    let interval: Double
    /// Whether SIGHUP is trapped (signal handlers are process-wide: `serve` only).
    let trapHangUp: Bool
    let logger: Logger
    let metrics: SentinelMetrics

    func run() async throws {
        if let expiresAt = certificate?.expiresAt { metrics.tlsCertificateExpiry(expiresAt) }
        if let certificate, let problem = certificate.servedProblem {
            // Served all the same (there is no other), but not silently: clients will refuse it.
            logger.error("the TLS certificate cannot be used by clients: \(problem); renew it (the files are read again when they change)",
                         metadata: ["cert_file": "\(certificate.certificateFile)"])
        }
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                if trapHangUp {
                    group.addTask {
                        for await _ in await UnixSignalsSequence(trapping: .sighup) { check(because: "SIGHUP") }
                    }
                }
                if certificate != nil {
                    group.addTask {
                        while !Task.isCancelled {
                            do { try await Task.sleep(for: .seconds(interval)) } catch { return }
                            check(because: nil)
                        }
                    }
                }
                await group.waitForAll()
            }
        }
    }

    func check(because signal: String?) {
        guard let certificate else {
            logger.info("SIGHUP: nothing to reload (server.tls.enabled is false)")
            return
        }
        switch certificate.reloadIfChanged() {
        case .unchanged:
            if let signal {
                // Also after a refused pair: say which certificate is served, so "unchanged" is not read as "renewed".
                logger.info("\(signal): the TLS certificate files are unchanged since they were last read", metadata: [
                    "cert_file": "\(certificate.certificateFile)",
                    "serving_expires_at": "\(certificate.expiresAt.map(ISO8601.string) ?? "unknown")"])
            }
        case .reloaded(let expiresAt):
            if let expiresAt { metrics.tlsCertificateExpiry(expiresAt) }
            logger.notice("TLS certificate reloaded: new connections get it", metadata: [
                "cert_file": "\(certificate.certificateFile)", "expires_at": "\(expiresAt.map(ISO8601.string) ?? "unknown")"])
        case .refused(let reason):
            logger.error("the TLS certificate files changed but cannot be served; new connections still get the previous certificate",
                         metadata: ["cert_file": "\(certificate.certificateFile)", "error": "\(reason)"])
        }
    }
}
