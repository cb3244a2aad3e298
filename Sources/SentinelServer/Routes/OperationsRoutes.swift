import Foundation
import GRDB
import Hummingbird
import Prometheus
import SentinelCore

/// `/healthz`, `/readyz`, `/metrics`: what a load balancer and Prometheus scrape (`/metrics` only
/// from `observability.metrics_allowed_cidrs`).
struct OperationsRoutes {
    let control: ControlStore
    let scheduler: JobScheduler
    let registry: PrometheusCollectorRegistry
    /// Sampled at each scrape: the job queue depth of the open workspace files.
    let supervisor: Supervisor
    let metrics: SentinelMetrics
    let dataDirectory: DataDirectory
    /// Where `/metrics` is answered from (`observability.metrics_allowed_cidrs`).
    let metricsAllowed: [IPRange]

    /// Free and total bytes of the file system holding `directory`.
    static func diskSpace(_ directory: URL) -> (free: Int64, total: Int64)? {
        guard let fs = try? FileManager.default.attributesOfFileSystem(forPath: directory.path),
              let free = (fs[.systemFreeSize] as? NSNumber)?.int64Value, let total = (fs[.systemSize] as? NSNumber)?.int64Value else { return nil }
        return (free, total)
    }

    static func isDatabaseFile(_ url: URL) -> Bool {
        var info = stat()
        guard stat(url.path, &info) == 0 else { return false }
        return (info.st_mode & S_IFMT) == S_IFREG && info.st_size >= 512
    }

    func add(to router: Router<SentinelRequestContext>) {
        router.get("/healthz") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: .init(string: #"{"status":"ok"}"#)))
        }
        router.get("/readyz") { _, _ in
            var checks: [String: String] = [:]
            // A query of its schema and a look at the file on disk: `SELECT 1` read nothing, and
            // the connections' cache answers for a `control.sqlite` emptied under the server
            // (every other query of it then failed with 500).
            let answers = (try? control.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM sqlite_schema WHERE name = 'workspaces'") }) == 1
            checks["storage"] = answers && Self.isDatabaseFile(dataDirectory.controlFile) ? "ok" : "unavailable"
            checks["workers"] = await scheduler.isRunning ? "ok" : "stopped"
            // A full disk refuses every write (each delivery a 503) while the file still reads: not
            // ready a little before that (writes still succeed until it is full).
            if let free = Self.diskSpace(dataDirectory.root)?.free, free < DataDirectory.fullDiskBytes {
                checks["disk"] = "nearly full (\(free) bytes free)"
            } else {
                checks["disk"] = "ok"
            }
            let ready = checks.values.allSatisfy { $0 == "ok" }
            let body = try JSONEncoder.sentinel.encode(["status": ready ? "ready" : "not ready"].merging(checks) { a, _ in a })
            return Response(status: ready ? .ok : .serviceUnavailable, headers: [.contentType: "application/json"],
                            body: .init(byteBuffer: .init(bytes: body)))
        }
        router.get("/metrics") { _, context in
            let peer = context.remoteAddress?.ipAddress
            guard let address = peer.flatMap(IPAddress.init), metricsAllowed.contains(where: { $0.contains(address) }) else {
                throw Problem(status: .forbidden, detail: "metrics are answered only to the addresses in observability.metrics_allowed_cidrs; "
                                  + "this request came from \(peer ?? "an unknown address")")
            }
            await supervisor.sampleQueueDepth()
            if let (free, total) = Self.diskSpace(dataDirectory.root) {
                metrics.disk(freeBytes: free, totalBytes: total)
            }
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: .init(bytes: registry.emitToBuffer())))
        }
    }
}
