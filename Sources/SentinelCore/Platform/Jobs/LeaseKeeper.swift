import Synchronization

/// The leases of the jobs one scheduler runs. One loop (`run`) renews every running job's lease each
/// third of `jobs.lease_seconds` and interrupts a job whose renewal finds its lease gone (it expired
/// and another worker took the job, or the job went dead); once graceful shutdown has begun, it
/// interrupts every job still running `shutdown.drain_seconds` later. A running job waits for its
/// interruption in one child task beside its handler (`runHoldingLease`), with no timer of its own:
/// a no-op job costs no heartbeat or deadline timers, which it did when each job carried its own.
final class LeaseKeeper: Sendable {
    enum Interruption: Sendable, Equatable {
        /// A renewal found the lease gone: another attempt owns the job's side effects now.
        case leaseLost
        /// Graceful shutdown began and the job ran past `shutdown.drain_seconds`.
        case drainDeadline
    }

    private struct Lease {
        let jobID: Int64
        let actor: WorkspaceActor
        var interruption: Interruption?
        var waiter: CheckedContinuation<Interruption?, Never>?
        /// The job's watcher was cancelled (its handler returned): nothing waits any more.
        var watcherCancelled = false
    }

    private struct State {
        var leases: [Int: Lease] = [:]
        var nextKey = 0
    }

    private let state = Mutex(State())
    let owner: String
    let leaseSeconds: Double
    let drainSeconds: Double

    init(owner: String, leaseSeconds: Double, drainSeconds: Double) {
        self.owner = owner
        self.leaseSeconds = leaseSeconds
        self.drainSeconds = drainSeconds
    }

    /// Jobs holding a lease right now.
    var count: Int { state.withLock { $0.leases.count } }

    /// Runs `body` while its lease is kept. When a renewal finds the lease gone, `body` is cancelled
    /// and `LeaseLost` is thrown: the job's side effects stop. When the drain deadline passes, `body`
    /// is cancelled and `DrainDeadlineReached` is thrown.
    func runHoldingLease(_ job: JobRecord, on actor: WorkspaceActor, _ body: @escaping @Sendable () async throws -> Void) async throws {
        let key = state.withLock { s -> Int in
            defer { s.nextKey &+= 1 }
            s.leases[s.nextKey] = Lease(jobID: job.id, actor: actor)
            return s.nextKey
        }
        defer { state.withLock { _ = $0.leases.removeValue(forKey: key) } }
        enum Ended: Sendable { case finished, interrupted(Interruption), watcherCancelled }
        try await withThrowingTaskGroup(of: Ended.self) { group in
            group.addTask { try await body(); return .finished }
            group.addTask { await self.interruption(of: key).map(Ended.interrupted) ?? .watcherCancelled }
            while let ended = try await group.next() {
                switch ended {
                case .finished:
                    group.cancelAll()
                    return
                case .interrupted(let interruption):
                    // Leaving the group by throwing cancels the handler and waits for it.
                    switch interruption {
                    case .leaseLost: throw LeaseLost()
                    case .drainDeadline: throw DrainDeadlineReached()
                    }
                case .watcherCancelled:
                    continue  // the whole job is being cancelled: the handler's own end decides
                }
            }
        }
    }

    /// Renews leases until cancelled; starts the drain deadline once `stop` is stopped.
    func run(stop: WakeSignal) async {
        let interval = Duration.seconds(max(0.05, leaseSeconds / 3))
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                guard (try? await stop.untilStopped()) != nil,
                      (try? await Task.sleep(for: .seconds(self.drainSeconds))) != nil else { return }
                self.interrupt(self.state.withLock { Array($0.leases.keys) }, with: .drainDeadline)
            }
            while (try? await Task.sleep(for: interval)) != nil {
                await renew()
            }
            group.cancelAll()
        }
    }

    /// One renewal of every running job's lease; a definite "not yours" interrupts the job, a failed
    /// renewal (storage busy) does not.
    private func renew() async {
        let leases = state.withLock { s in
            s.leases.compactMap { key, lease in lease.interruption == nil ? (key, lease.jobID, lease.actor) : nil }
        }
        guard !leases.isEmpty else { return }
        let owner = self.owner
        let lost = await withTaskGroup(of: (Int, Bool?).self) { group in
            for (key, jobID, actor) in leases {
                group.addTask { (key, try? await actor.heartbeat(jobID: jobID, owner: owner)) }
            }
            var lost: [Int] = []
            for await (key, held) in group where held == false { lost.append(key) }
            return lost
        }
        interrupt(lost, with: .leaseLost)
    }

    private func interrupt(_ keys: [Int], with interruption: Interruption) {
        let waiters = state.withLock { s in
            keys.compactMap { key -> CheckedContinuation<Interruption?, Never>? in
                guard var lease = s.leases[key], lease.interruption == nil else { return nil }
                lease.interruption = interruption
                let waiter = lease.waiter
                lease.waiter = nil
                s.leases[key] = lease
                return waiter
            }
        }
        for waiter in waiters { waiter.resume(returning: interruption) }
    }

    /// Waits for the job's interruption; nil when the waiting task is cancelled first.
    private func interruption(of key: Int) async -> Interruption? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Interruption?, Never>) in
                let now = state.withLock { s -> Interruption?? in
                    guard var lease = s.leases[key], !lease.watcherCancelled, !Task.isCancelled else { return .some(nil) }
                    if let interruption = lease.interruption { return .some(interruption) }
                    lease.waiter = continuation
                    s.leases[key] = lease
                    return .none
                }
                if case .some(let value) = now { continuation.resume(returning: value) }
            }
        } onCancel: {
            let waiter = state.withLock { s -> CheckedContinuation<Interruption?, Never>? in
                guard var lease = s.leases[key] else { return nil }
                lease.watcherCancelled = true
                let waiter = lease.waiter
                lease.waiter = nil
                s.leases[key] = lease
                return waiter
            }
            waiter?.resume(returning: nil)
        }
    }
}
