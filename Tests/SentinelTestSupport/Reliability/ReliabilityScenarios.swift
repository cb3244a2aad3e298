import Foundation
import GRDB
import SentinelCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One scenario's result: what was measured against what it must be, as a markdown table.
public struct ReliabilityReport: Sendable {
    public struct Row: Sendable {
        public var check: String
        public var measured: String
        public var bound: String
        public var ok: Bool
    }

    /// `kill9`, `lru`, `disk-full`, `soak`, `noisy-neighbour`: the section's key in docs/reliability.md.
    public var key: String
    public var title: String
    public var setup: String
    public var rows: [Row] = []
    /// Extra lines after the table (samples, notes).
    public var notes: [String] = []

    public init(key: String, title: String, setup: String) {
        self.key = key
        self.title = title
        self.setup = setup
    }

    public mutating func check(_ check: String, _ measured: Int, atMost bound: Int) {
        rows.append(Row(check: check, measured: String(measured), bound: "≤ \(bound)", ok: measured <= bound))
    }

    public mutating func report(_ check: String, _ measured: String) {
        rows.append(Row(check: check, measured: measured, bound: "(reported)", ok: true))
    }

    public var passed: Bool { rows.allSatisfy(\.ok) }
    public var failures: [String] { rows.filter { !$0.ok }.map { "\($0.check): \($0.measured), must be \($0.bound)" } }

    public var markdown: String {
        var lines = ["| check | measured | bound | |", "|---|---|---|---|"]
        for row in rows { lines.append("| \(row.check) | \(row.measured) | \(row.bound) | \(row.ok ? "ok" : "**FAILED**") |") }
        return ([setup, ""] + lines + (notes.isEmpty ? [] : [""] + notes)).joined(separator: "\n")
    }
}

/// The reliability suite's scenarios (issue 15: 1 kill -9 under load, 3 noisy neighbour, 4 LRU
/// churn, 5 soak, 6 disk full), each against the real binary in a `ReliabilityRig`. The long
/// versions run from `sentinel-bench chaos`; `ReliabilityTests` runs short versions in `swift test`.
public enum ReliabilityScenarios {

    /// Workers that push to random pull requests of random workspaces until `stop` is set.
    static func pushLoad(_ rig: ReliabilityRig, pulls: [(RigTenant, Int)], workers: Int, seed: UInt64, pause: ClosedRange<Int>,
                         stop: RigCounter) async -> Int {
        await withTaskGroup(of: Int.self) { group in
            for worker in 0..<workers {
                group.addTask {
                    var rng = SeededRNG(seed: seed &+ UInt64(worker))
                    var pushes = 0
                    while stop.value == 0 {
                        let (tenant, number) = pulls[rng.int(0...(pulls.count - 1))]
                        await rig.push(tenant, number: number)
                        pushes += 1
                        try? await Task.sleep(for: .milliseconds(rng.int(pause)))
                    }
                    return pushes
                }
            }
            return await group.reduce(0, +)
        }
    }

    static func openPulls(_ rig: ReliabilityRig, perWorkspace: Int, concurrency: Int = 8) async -> [(RigTenant, Int)] {
        let wanted = rig.tenants.flatMap { tenant in (1...max(1, perWorkspace)).map { (tenant, $0) } }
        await withTaskGroup(of: Void.self) { group in
            for (index, (tenant, number)) in wanted.enumerated() {
                if index >= concurrency { await group.next() }
                group.addTask { await rig.openPull(tenant, number: number) }
            }
        }
        return wanted
    }

    // MARK: 1. kill -9 under load

    /// `kills` SIGKILLs at random moments (between `interval` milliseconds after the server is
    /// ready) while pushes to `pullsPerWorkspace` pull requests in every workspace arrive and
    /// reviews run; then a clean restart, a drain, a clean stop and the invariants.
    public static func killUnderLoad(_ rig: ReliabilityRig, kills: Int, pullsPerWorkspace: Int = 5, workers: Int = 4,
                                     interval: ClosedRange<Int> = 200...1500, seed: UInt64 = 15,
                                     drainTimeout: Duration = .seconds(180)) async throws -> ReliabilityReport {
        var report = ReliabilityReport(key: "kill9", title: "kill -9 under load",
                                       setup: "\(kills) SIGKILLs at random moments (\(interval.lowerBound)–\(interval.upperBound) ms after each restart is ready), "
                                           + "\(rig.tenants.count) workspaces × \(pullsPerWorkspace) pull requests, \(workers) senders pushing new heads "
                                           + "(each delivery retried with the same id until acknowledged), one AI call per review.")
        let started = ContinuousClock.now
        try await rig.startServer()
        let stop = RigCounter()
        let pulls = await openPulls(rig, perWorkspace: pullsPerWorkspace)
        async let pushes = pushLoad(rig, pulls: pulls, workers: workers, seed: seed, pause: 20...200, stop: stop)
        var rng = SeededRNG(seed: seed &* 31)
        var inFlightAtKills = 0
        var restartTimes: [Double] = []
        do {
            for _ in 0..<kills {
                try await Task.sleep(for: .milliseconds(rng.int(interval)))
                await rig.killServer()
                try await Task.sleep(for: .milliseconds(100))
                // Answered by the fake LLM to the dead process and not recorded in its files: in flight at this kill.
                let answered = await rig.llm.state.requests().filter { $0.status == 200 }.count
                let recorded = try await rig.total("SELECT count(*) FROM usage_records")
                inFlightAtKills = max(inFlightAtKills, answered - recorded)
                let restart = ContinuousClock.now
                try await rig.startServer()
                restartTimes.append((ContinuousClock.now - restart).seconds)
            }
        } catch {
            stop.increment()
            _ = await pushes
            throw error
        }
        stop.increment()
        let pushed = await pushes
        // A clean restart, then the drain.
        _ = await rig.stopServer()
        try await rig.startServer()
        let drained = try await rig.drain(timeout: drainTimeout)
        let exit = await rig.stopServer()
        let result = try await rig.invariants()

        report.report("SIGKILLs", String(kills))
        report.report("deliveries acknowledged (pushes + opens)", "\(result.acknowledged) (\(pushed) pushes)")
        report.report("delivery attempts refused (status: count)", rig.refusedDeliveries.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ").ifEmpty("none"))
        report.check("acknowledged deliveries lost", result.lost, atMost: 0)
        report.check("acknowledged deliveries never processed", result.unprocessed, atMost: 0)
        report.check("PR heads with more than one review", result.duplicateReviews, atMost: 0)
        report.report("reviews posted", String(result.reviewsPosted))
        report.check("usage rows counted twice", result.countedTwice, atMost: 0)
        report.check("AI calls uncounted (bound: calls in flight at the kills)", result.uncounted, atMost: inFlightAtKills)
        report.report("AI calls answered / usage rows", "\(result.aiCalls) / \(result.usageRows)")
        report.check("runs left queued or running", result.runsLeftOpen, atMost: 0)
        report.check("jobs left queued or running", result.jobsLeftOpen, atMost: 0)
        report.report("runs by state", result.runsByState.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        report.report("dead jobs", String(result.deadJobs))
        if !result.failureReasons.isEmpty {
            report.report("failed runs by reason", result.failureReasons.sorted { $0.value > $1.value }.map { "\($0.value)× \($0.key)" }
                .joined(separator: "; ").replacingOccurrences(of: "|", with: "/"))
        }
        report.check("SQLite files failing integrity_check", result.integrityFailures.count, atMost: 0)
        report.check("drain after the clean restart timed out", drained ? 0 : 1, atMost: 0)
        report.check("clean stop exit status", Int(exit ?? -1), atMost: 0)
        if !restartTimes.isEmpty {
            let sorted = restartTimes.sorted()
            report.report("restart until ready (p50 / max)", String(format: "%.2f s / %.2f s", sorted[sorted.count / 2], sorted.last!))
        }
        report.report("wall time", String(format: "%.0f s", (ContinuousClock.now - started).seconds))
        return report
    }

    // MARK: 4. LRU churn

    /// `rounds` rounds of a new pull request in each of the rig's workspaces (10× `workspaces.max_open`),
    /// sampling the server's descriptors and RSS every 200 ms.
    public static func lruChurn(_ rig: ReliabilityRig, rounds: Int, concurrency: Int = 8, seed: UInt64 = 4) async throws -> ReliabilityReport {
        let lru = rig.options.maxOpen
        var report = ReliabilityReport(key: "lru", title: "LRU churn",
                                       setup: "\(rig.tenants.count) workspaces (10 × workspaces.max_open = \(lru)), \(rounds) rounds of a new pull request "
                                           + "in every workspace in random order (\(concurrency) at a time), each reviewed with one AI call; "
                                           + "/proc sampled every 200 ms.")
        let process = try await rig.startServer()
        let pid = process.pid
        let stop = RigCounter()
        let samples = Recorder<(fds: Int, workspaceFDs: Int, rssKiB: Int, round: Int)>()
        let round = RigCounter()
        let workspaces = DataDirectory(path: rig.dataPath).workspacesDirectory.resolvingSymlinksInPath().path
        async let sampler: Void = {
            while stop.value == 0 {
                if let fds = ProcessSample.descriptors(pid, workspaces: workspaces), let rss = ProcessSample.residentKiB(pid) {
                    samples.append((fds.all, fds.workspaceFiles, rss, round.value))
                }
                try? await Task.sleep(for: .milliseconds(200))
            }
        }()
        var rng = SeededRNG(seed: seed)
        for r in 0..<rounds {
            round.set(r)
            let order = rig.tenants.shuffled(using: &rng)
            await withTaskGroup(of: Void.self) { group in
                for (index, tenant) in order.enumerated() {
                    if index >= concurrency { await group.next() }
                    group.addTask { await rig.openPull(tenant, number: r + 1) }
                }
            }
        }
        round.set(rounds)
        let drained = try await rig.drain(timeout: .seconds(180))
        stop.increment()
        await sampler
        let exit = await rig.stopServer()
        let result = try await rig.invariants()
        let all = samples.all
        let maxWorkspaceFDs = all.map(\.workspaceFDs).max() ?? 0
        let maxOtherFDs = all.map { $0.fds - $0.workspaceFDs }.max() ?? 0
        let firstRoundRSS = all.filter { $0.round == 0 }.map(\.rssKiB).max() ?? 0
        let lastRoundRSS = all.filter { $0.round >= max(0, rounds - 1) }.map(\.rssKiB).max() ?? 0
        report.report("deliveries acknowledged", String(result.acknowledged))
        report.check("acknowledged deliveries lost", result.lost, atMost: 0)
        report.check("acknowledged deliveries never processed", result.unprocessed, atMost: 0)
        report.check("PR heads with more than one review", result.duplicateReviews, atMost: 0)
        // A file in use is never closed, so open files exceed the LRU by the work running at once:
        // jobs (the scenario keeps jobs.global_concurrency ≤ the LRU), the senders' requests and the
        // intake journal's applier (a quarter of the LRU, at least one); evicted files are closed at
        // most max(1, LRU / 16) at a time beside them. Three descriptors each (database, -wal, -shm).
        let files = lru + concurrency + max(1, lru / 4) + max(1, lru / 16)
        report.check("workspace file descriptors, peak (/proc/PID/fd)", maxWorkspaceFDs, atMost: 3 * files)
        // Sockets (inbound and to the fakes), control.sqlite's connections, the intake journal, the
        // event loops: a fixed set that must not grow with the number of workspaces touched.
        report.check("other descriptors, peak (/proc/PID/fd)", maxOtherFDs, atMost: 64)
        report.report("RSS peak, first round → last round", "\(firstRoundRSS / 1024) MiB → \(lastRoundRSS / 1024) MiB")
        report.check("RSS peak of the last round above 1.5 × the first round's (MiB)", max(0, lastRoundRSS - firstRoundRSS * 3 / 2) / 1024, atMost: 0)
        report.check("runs left queued or running", result.runsLeftOpen, atMost: 0)
        report.check("SQLite files failing integrity_check", result.integrityFailures.count, atMost: 0)
        report.check("drain timed out", drained ? 0 : 1, atMost: 0)
        report.check("clean stop exit status", Int(exit ?? -1), atMost: 0)
        return report
    }

    // MARK: 5. Soak

    /// Mixed load (pushes to pull requests in every workspace) for `duration`, sampling RSS,
    /// descriptors, WAL bytes and queue depth every `every`.
    public static func soak(_ rig: ReliabilityRig, duration: Duration, every: Duration = .seconds(10), workers: Int = 4,
                            seed: UInt64 = 5) async throws -> ReliabilityReport {
        var report = ReliabilityReport(key: "soak", title: "Soak",
                                       setup: "\(Int(duration.seconds)) s of pushes to \(rig.tenants.count) workspaces × 5 pull requests by \(workers) senders "
                                           + "(20–200 ms apart each), one AI call per review; sampled every \(Int(every.seconds)) s.")
        let process = try await rig.startServer()
        let pid = process.pid
        let stop = RigCounter()
        let pulls = await openPulls(rig, perWorkspace: 5)
        async let pushes = pushLoad(rig, pulls: pulls, workers: workers, seed: seed, pause: 20...200, stop: stop)
        struct Sample { var t: Double; var rss: Double; var fds: Double; var wal: Double; var queue: Double }
        var samples: [Sample] = []
        let start = ContinuousClock.now
        while ContinuousClock.now - start < duration {
            try await Task.sleep(for: every)
            let queue = (try? await rig.total("SELECT count(*) FROM jobs WHERE state IN ('queued','running')")) ?? -1
            samples.append(Sample(t: (ContinuousClock.now - start).seconds, rss: Double(ProcessSample.residentKiB(pid) ?? 0) / 1024,
                                  fds: Double(ProcessSample.descriptors(pid) ?? 0), wal: Double(rig.walBytes()) / 1024, queue: Double(queue)))
        }
        stop.increment()
        let pushed = await pushes
        let drained = try await rig.drain(timeout: .seconds(180))
        let exit = await rig.stopServer()
        let result = try await rig.invariants()
        func slope(_ value: (Sample) -> Double) -> Double {
            // Least squares, per minute.
            let n = Double(samples.count)
            guard n >= 2 else { return 0 }
            let mt = samples.map(\.t).reduce(0, +) / n, mv = samples.map(value).reduce(0, +) / n
            let num = samples.reduce(0) { $0 + ($1.t - mt) * (value($1) - mv) }
            let den = samples.reduce(0) { $0 + ($1.t - mt) * ($1.t - mt) }
            return den == 0 ? 0 : num / den * 60
        }
        func range(_ value: (Sample) -> Double) -> String {
            let values = samples.map(value)
            return String(format: "%.0f … %.0f", values.min() ?? 0, values.max() ?? 0)
        }
        report.report("deliveries acknowledged", "\(result.acknowledged) (\(pushed) pushes)")
        report.report("RSS MiB (min … max; slope per minute)", "\(range(\.rss)); \(String(format: "%+.2f", slope(\.rss)))")
        report.report("open descriptors (min … max; slope per minute)", "\(range(\.fds)); \(String(format: "%+.2f", slope(\.fds)))")
        report.report("WAL KiB, all files (min … max; slope per minute)", "\(range(\.wal)); \(String(format: "%+.1f", slope(\.wal)))")
        report.report("queue depth, queued + running jobs (min … max; slope per minute)", "\(range(\.queue)); \(String(format: "%+.2f", slope(\.queue)))")
        report.check("acknowledged deliveries lost", result.lost, atMost: 0)
        report.check("acknowledged deliveries never processed", result.unprocessed, atMost: 0)
        report.check("PR heads with more than one review", result.duplicateReviews, atMost: 0)
        report.check("usage rows counted twice", result.countedTwice, atMost: 0)
        report.check("AI calls uncounted", result.uncounted, atMost: 0)
        report.check("runs left queued or running", result.runsLeftOpen, atMost: 0)
        report.check("SQLite files failing integrity_check", result.integrityFailures.count, atMost: 0)
        report.check("drain timed out", drained ? 0 : 1, atMost: 0)
        report.check("clean stop exit status", Int(exit ?? -1), atMost: 0)
        report.notes = ["| t (s) | RSS MiB | descriptors | WAL KiB | queue depth |", "|---|---|---|---|---|"]
            + samples.map { String(format: "| %.0f | %.1f | %.0f | %.0f | %.0f |", $0.t, $0.rss, $0.fds, $0.wal, $0.queue) }
        return report
    }

    // MARK: 3. Noisy neighbour

    /// Workspace 0 receives `jobs` deliveries (each a `github.delivery` job) as fast as the
    /// senders go; meanwhile `probes` pull requests are opened in workspace 1, one every 500 ms:
    /// the time from a probe's delivery being stored to its review run starting.
    public static func noisyNeighbour(_ rig: ReliabilityRig, jobs: Int, probes: Int, senders: Int = 16) async throws -> ReliabilityReport {
        precondition(rig.tenants.count >= 2)
        var report = ReliabilityReport(key: "noisy-neighbour", title: "Noisy neighbour",
                                       setup: "workspace A receives \(jobs) deliveries (\(jobs) `github.delivery` jobs, \(senders) senders); meanwhile "
                                           + "\(probes) pull requests are opened in workspace B, one every 500 ms. Latency: B's delivery stored → its review run started.")
        try await rig.startServer()
        let (noisy, quiet) = (rig.tenants[0], rig.tenants[1])
        let next = RigCounter()
        // A comment on a pull request that holds no command: a `github.delivery` job each (intake
        // settles events Sentinel does not act on, such as `star`, without one), no review.
        let body = Data(#"""
            {"action":"created","issue":{"number":1,"pull_request":{"url":"https://api.github.com/repos/\#(noisy.repo)/pulls/1"}},
             "comment":{"id":7,"body":"Thanks, looks good.","user":{"login":"dev","type":"User"},"author_association":"MEMBER"},
             "repository":{"id":\#(noisy.repoID),"full_name":"\#(noisy.repo)"},"installation":{"id":55}}
            """#.utf8)
        async let flood: Void = withTaskGroup(of: Void.self) { group in
            for _ in 0..<senders {
                group.addTask {
                    while next.increment() <= jobs {
                        _ = await rig.deliverUntilAcknowledged(noisy, event: "issue_comment", body: body)
                    }
                }
            }
        }
        var probeDeliveries: [(number: Int, backlog: Int)] = []
        // Let the backlog build first.
        while (try? await rig.read(noisy, { try Int.fetchOne($0, sql: "SELECT count(*) FROM jobs WHERE state = 'queued'") ?? 0 })) ?? 0 < min(1000, jobs / 4) {
            if next.value > jobs { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        for probe in 0..<probes {
            let backlog = (try? await rig.read(noisy) { try Int.fetchOne($0, sql: "SELECT count(*) FROM jobs WHERE state IN ('queued','running')") ?? 0 }) ?? 0
            let number = 1000 + probe
            await rig.openPull(quiet, number: number)
            probeDeliveries.append((number, backlog))
            try await Task.sleep(for: .milliseconds(500))
        }
        await flood
        _ = try await rig.drain(timeout: .seconds(600))
        let exit = await rig.stopServer()
        var latencies: [Double] = []
        var missing = 0
        // When each probe's delivery was stored: the pull request's number is in its (compressed) body.
        let probeNumbers = Set(probeDeliveries.map(\.number))
        let storedAt: [Int: Double] = try await rig.read(quiet) { db in
            var first: [Int: Double] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT * FROM deliveries WHERE event = 'pull_request'") {
                let body = try DeliveryPayload.body(of: row)
                guard let number = (try? JSONSerialization.jsonObject(with: body) as? [String: Any])?["number"] as? Int,
                      probeNumbers.contains(number) else { continue }
                let receivedAt: Double = row["received_at"]
                first[number] = min(first[number] ?? receivedAt, receivedAt)
            }
            return first
        }
        for probe in probeDeliveries {
            let number = probe.number
            let times: (Double?, Double?) = try await rig.read(quiet) { db in
                let started = try Double.fetchOne(db, sql: "SELECT min(started_at) FROM review_runs WHERE pr_number = ?", arguments: [number])
                return (storedAt[number], started)
            }
            if let stored = times.0, let started = times.1 { latencies.append(started - stored) } else { missing += 1 }
        }
        latencies.sort()
        func pct(_ p: Double) -> Double { latencies.isEmpty ? .infinity : latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))] }
        let backlogs = probeDeliveries.map(\.backlog)
        report.report("A's backlog when probes were sent (min … max jobs)", "\(backlogs.min() ?? 0) … \(backlogs.max() ?? 0)")
        // Without a backlog in A when B's first pull request arrives, nothing was measured.
        let wanted = min(1000, jobs / 4)
        report.rows.append(.init(check: "A's backlog when B's first pull request was opened", measured: "\(backlogs.first ?? 0) jobs",
                                 bound: "≥ \(wanted)", ok: (backlogs.first ?? 0) >= wanted))
        report.report("B: delivery stored → review started, p50", String(format: "%.3f s", pct(0.5)))
        report.rows.append(.init(check: "B: delivery stored → review started, p95", measured: String(format: "%.3f s", pct(0.95)), bound: "≤ 1 s",
                                 ok: pct(0.95) <= 1))
        report.report("B: max", String(format: "%.3f s", latencies.last ?? .infinity))
        report.check("probes without a started run", missing, atMost: 0)
        report.check("clean stop exit status", Int(exit ?? -1), atMost: 0)
        return report
    }

    // MARK: 6. Disk full (a real filesystem filling up)

    /// The rig's data directory is on a small filesystem (a tmpfs): `ballast` fills it until
    /// writes fail, deliveries must then be refused with 503 + `Retry-After` (nothing
    /// acknowledged lost), and once the ballast is removed the same deliveries are accepted
    /// without a restart.
    public static func diskFull(_ rig: ReliabilityRig, ballast: URL, deliveries: Int = 20) async throws -> ReliabilityReport {
        var report = ReliabilityReport(key: "disk-full", title: "Disk full",
                                       setup: "data directory on a tmpfs; a ballast file fills it; \(deliveries) pull requests opened while full "
                                           + "(each delivery retried with the same id), then the ballast is removed.")
        try await rig.startServer()
        let before = await openPulls(rig, perWorkspace: 2)
        _ = try await rig.drain(timeout: .seconds(60))
        try fill(ballast)
        // While full: deliveries refused, with Retry-After.
        var statuses: [Int: Int] = [:]
        var withRetryAfter = 0
        var pending: [(RigTenant, Int, String, Data)] = []
        for index in 0..<deliveries {
            let tenant = rig.tenants[index % rig.tenants.count]
            let number = 100 + index
            let head = ReliabilityRig.sha("full", tenant.repoID, number)
            await rig.github.state.addPull(FakePullRequest(repo: tenant.repo, number: number, headSHA: head, baseSHA: "base000", files: ReliabilityRig.files))
            let body = ReliabilityRig.pullRequestPayload(tenant, action: "opened", number: number, head: head)
            let id = UUID().uuidString
            if let answer = await rig.deliver(tenant, event: "pull_request", body: body, id: id) {
                statuses[answer.status, default: 0] += 1
                if answer.status == 503, answer.retryAfter != nil { withRetryAfter += 1 }
            } else {
                statuses[0, default: 0] += 1
            }
            pending.append((tenant, number, id, body))
        }
        let aliveWhileFull = rig.server.map { !$0.hasExited } ?? false
        try FileManager.default.removeItem(at: ballast)
        let resumed = ContinuousClock.now
        var accepted = 0
        for (tenant, _, id, body) in pending {
            if await rig.deliverUntilAcknowledged(tenant, event: "pull_request", body: body, id: id, giveUpAfter: .seconds(60)) { accepted += 1 }
        }
        let resumeSeconds = (ContinuousClock.now - resumed).seconds
        let drained = try await rig.drain(timeout: .seconds(120))
        let exit = await rig.stopServer()
        let result = try await rig.invariants()
        report.report("answers while full (status: count)", statuses.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", "))
        report.check("deliveries acknowledged while full", statuses.filter { (200..<300).contains($0.key) }.map(\.value).reduce(0, +), atMost: 0)
        report.check("refusals while full without 503 + Retry-After", deliveries - withRetryAfter, atMost: 0)
        report.check("server process died while full", aliveWhileFull ? 0 : 1, atMost: 0)
        report.check("refused deliveries not accepted after space returned (no restart)", deliveries - accepted, atMost: 0)
        report.report("space returned → all accepted", String(format: "%.2f s", resumeSeconds))
        report.report("pull requests acknowledged before filling", String(before.count))
        report.check("acknowledged deliveries lost", result.lost, atMost: 0)
        report.check("acknowledged deliveries never processed", result.unprocessed, atMost: 0)
        report.check("runs left queued or running", result.runsLeftOpen, atMost: 0)
        report.check("SQLite files failing integrity_check", result.integrityFailures.count, atMost: 0)
        report.check("drain timed out", drained ? 0 : 1, atMost: 0)
        report.check("clean stop exit status", Int(exit ?? -1), atMost: 0)
        return report
    }

    /// Writes `url` until the filesystem refuses (ENOSPC).
    static func fill(_ url: URL) throws {
        let fd = open(url.path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw RigError("cannot create \(url.path)") }
        defer { close(fd) }
        let chunk = [UInt8](repeating: 0xAB, count: 64 * 1024)
        var size = chunk.count
        while true {
            let written = chunk.withUnsafeBytes { write(fd, $0.baseAddress, size) }
            if written < 0 {
                if errno == ENOSPC {
                    if size > 512 { size /= 2; continue }
                    break
                }
                throw RigError("writing the ballast failed: errno \(errno)")
            }
        }
        fsync(fd)
    }
}

extension String {
    func ifEmpty(_ other: String) -> String { isEmpty ? other : self }
}

/// A counter shared by the scenario's tasks (also used as a stop flag: non-zero = stop).
public final class RigCounter: Sendable {
    private let count = Mutex(0)
    public init() {}
    public var value: Int { count.withLock { $0 } }
    public func set(_ value: Int) { count.withLock { $0 = value } }
    @discardableResult
    public func increment() -> Int { count.withLock { $0 += 1; return $0 } }
}
