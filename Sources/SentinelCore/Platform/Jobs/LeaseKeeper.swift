import Synchronization

/// The leases of the jobs one scheduler runs. One loop (`run`) renews every running job's lease
/// each third of `jobs.lease_seconds` and interrupts a job whose renewal finds its lease gone (it
/// expired and another worker took the job, or the job went dead); once graceful shutdown has
/// begun, it interrupts every job still running `shutdown.drain_seconds` later.
///
/// A running job costs one child task (its handler) and one continuation (the job waiting for its
/// handler's end or its interruption, whichever comes first): no heartbeat timer and no deadline
/// timer of its own, which it had when each job carried them.
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
        /// The handler returned or threw: there is nothing left to interrupt.
        var ended = false
        /// The job waiting for whichever comes first.
        var waiter: CheckedContinuation<Interruption?, Never>?
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

    /// The jobs of a workspace running in this process now. A claim never takes one of them over
    /// when its lease looks expired: only the wall clock moved (a VM resumed from suspension, the
    /// clock stepped forward), and the next renewal extends it; taken over, the job would run twice.
    func runningJobIDs(in workspace: WorkspaceID) -> Set<Int64> {
        state.withLock { s in Set(s.leases.values.filter { $0.actor.id == workspace && !$0.ended }.map(\.jobID)) }
    }

    /// Runs `body` while its lease is kept. When a renewal finds the lease gone, `body` is cancelled
    /// and `LeaseLost` is thrown once it has ended: the job's side effects stop, because another
    /// attempt now owns them. When the drain deadline passes, `body` is cancelled and
    /// `DrainDeadlineReached` is thrown. Otherwise `body`'s own result is returned or thrown.
    func runHoldingLease(_ job: JobRecord, on actor: WorkspaceActor, _ body: @escaping @Sendable () async throws -> Void) async throws {
        let key = state.withLock { s -> Int in
            defer { s.nextKey &+= 1 }
            s.leases[s.nextKey] = Lease(jobID: job.id, actor: actor)
            return s.nextKey
        }
        defer { state.withLock { _ = $0.leases.removeValue(forKey: key) } }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                defer { self.end(key) }
                try await body()
            }
            if let interruption = await firstOf(key) {
                // Cancel the handler and wait for it: its side effects must have stopped before
                // the outcome is recorded. Its own error no longer matters.
                group.cancelAll()
                while true {
                    do { guard try await group.next() != nil else { break } } catch { continue }
                }
                switch interruption {
                case .leaseLost: throw LeaseLost()
                case .drainDeadline: throw DrainDeadlineReached()
                }
            }
            try await group.next()
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
            s.leases.compactMap { key, lease in lease.interruption == nil && !lease.ended ? (key, lease.jobID, lease.actor) : nil }
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
                guard var lease = s.leases[key], lease.interruption == nil, !lease.ended else { return nil }
                lease.interruption = interruption
                let waiter = lease.waiter
                lease.waiter = nil
                s.leases[key] = lease
                return waiter
            }
        }
        for waiter in waiters { waiter.resume(returning: interruption) }
    }

    /// The handler ended (returned, threw or was cancelled).
    private func end(_ key: Int) {
        let waiter = state.withLock { s -> CheckedContinuation<Interruption?, Never>? in
            guard var lease = s.leases[key] else { return nil }
            lease.ended = true
            let waiter = lease.interruption == nil ? lease.waiter : nil
            lease.waiter = nil
            s.leases[key] = lease
            return waiter
        }
        waiter?.resume(returning: nil)
    }

    /// Waits for the handler's end (nil) or the job's interruption, whichever comes first. Not
    /// cancellable itself: cancelling the job cancels its handler, whose end resumes this.
    private func firstOf(_ key: Int) async -> Interruption? {
        await withCheckedContinuation { (continuation: CheckedContinuation<Interruption?, Never>) in
            let now = state.withLock { s -> Interruption?? in
                guard var lease = s.leases[key] else { return .some(nil) }
                if let interruption = lease.interruption { return .some(interruption) }
                if lease.ended { return .some(nil) }
                lease.waiter = continuation
                s.leases[key] = lease
                return .none
            }
            if case .some(let value) = now { continuation.resume(returning: value) }
        }
    }
}
