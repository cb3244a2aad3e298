import Foundation
import Synchronization

/// A circuit breaker for one provider: closed while calls work; open after `failureThreshold`
/// consecutive retryable failures (the provider is skipped); half-open once `coolDown` has passed,
/// letting one probe call through: success closes it, failure opens it again.
public struct CircuitBreaker: Sendable, Hashable {
    public enum State: String, Sendable, Hashable { case closed, open, halfOpen = "half-open" }

    public var failureThreshold: Int
    public var coolDown: Duration
    public private(set) var consecutiveFailures = 0
    public private(set) var openedAt: Date?
    private var probeInFlight = false
    private var halfOpen = false

    public init(failureThreshold: Int = 5, coolDown: Duration = .seconds(60)) {
        self.failureThreshold = max(1, failureThreshold)
        self.coolDown = coolDown
    }

    var coolDownSeconds: TimeInterval {
        let (s, atto) = coolDown.components
        return TimeInterval(s) + TimeInterval(atto) / 1e18
    }

    /// The state at `now` (an open breaker whose cool-down has passed reads as half-open).
    public func state(at now: Date) -> State {
        if halfOpen { return .halfOpen }
        guard let openedAt else { return .closed }
        // Before it opened: the wall clock was set back since; a probe finds out whether the
        // provider answers again rather than waiting until the clock catches up.
        let elapsed = now.timeIntervalSince(openedAt)
        return elapsed >= coolDownSeconds || elapsed < 0 ? .halfOpen : .open
    }

    /// Whether a call may go out now; in half-open only one probe at a time.
    public mutating func allowRequest(at now: Date) -> Bool {
        switch state(at: now) {
        case .closed: return true
        case .open: return false
        case .halfOpen:
            halfOpen = true
            if probeInFlight { return false }
            probeInFlight = true
            return true
        }
    }

    public mutating func recordSuccess() {
        consecutiveFailures = 0
        openedAt = nil
        halfOpen = false
        probeInFlight = false
    }

    /// A retryable failure (429, 5xx, timeout, broken connection or body).
    public mutating func recordFailure(at now: Date) {
        consecutiveFailures += 1
        if halfOpen || consecutiveFailures >= failureThreshold {
            openedAt = now
            halfOpen = false
        }
        probeInFlight = false
    }

    /// A call that ended without telling anything about availability (a 400 or 401): frees a
    /// half-open probe slot, changes nothing else.
    public mutating func recordNeutral() {
        probeInFlight = false
    }
}

/// Where circuits that open and close are written down, for readers in other processes
/// (`sentinel doctor`).
public protocol CircuitJournal: Sendable {
    func opened(workspaceID: String, providerID: String, at: Date, retryAt: Date)
    func closed(workspaceID: String, providerID: String)
}

/// Every provider's breaker, shared across runs (one registry per process), keyed by workspace
/// and provider id so one tenant's broken key never opens another tenant's circuit.
public actor CircuitBreakerRegistry {
    public let failureThreshold: Int
    public let coolDown: Duration
    private let now: @Sendable () -> Date
    private let journal: (any CircuitJournal)?
    private var breakers: [String: CircuitBreaker] = [:]

    /// - Parameters:
    ///   - now: the clock (injectable for tests).
    ///   - journal: told when a circuit opens and when it closes again.
    public init(failureThreshold: Int = 5, coolDown: Duration = .seconds(60), now: @escaping @Sendable () -> Date = { Date() },
                journal: (any CircuitJournal)? = nil) {
        self.failureThreshold = failureThreshold
        self.coolDown = coolDown
        self.now = now
        self.journal = journal
    }

    public static func key(workspaceID: String, providerID: String) -> String { "\(workspaceID)\u{1F}\(providerID)" }

    private func withBreaker<T>(_ workspaceID: String, _ providerID: String, _ body: (inout CircuitBreaker) -> T) -> T {
        let key = Self.key(workspaceID: workspaceID, providerID: providerID)
        var breaker = breakers[key] ?? CircuitBreaker(failureThreshold: failureThreshold, coolDown: coolDown)
        let result = body(&breaker)
        breakers[key] = breaker
        return result
    }

    public func state(workspaceID: String, providerID: String) -> CircuitBreaker.State {
        breakers[Self.key(workspaceID: workspaceID, providerID: providerID)]?.state(at: now()) ?? .closed
    }

    /// Whether the provider can be tried (closed or half-open); does not take the probe slot.
    public func isAvailable(workspaceID: String, providerID: String) -> Bool {
        state(workspaceID: workspaceID, providerID: providerID) != .open
    }

    public func allowRequest(workspaceID: String, providerID: String) -> Bool {
        let t = now()
        return withBreaker(workspaceID, providerID) { $0.allowRequest(at: t) }
    }

    public func recordSuccess(workspaceID: String, providerID: String) {
        let wasOpen = withBreaker(workspaceID, providerID) { breaker -> Bool in
            let open = breaker.openedAt != nil
            breaker.recordSuccess()
            return open
        }
        if wasOpen { journal?.closed(workspaceID: workspaceID, providerID: providerID) }
    }

    /// Returns whether this failure opened the circuit.
    @discardableResult
    public func recordFailure(workspaceID: String, providerID: String) -> Bool {
        let t = now()
        let opened = withBreaker(workspaceID, providerID) { breaker -> Bool in
            let before = breaker.openedAt
            breaker.recordFailure(at: t)
            return breaker.openedAt != nil && breaker.openedAt != before
        }
        if opened {
            journal?.opened(workspaceID: workspaceID, providerID: providerID, at: t,
                            retryAt: t.addingTimeInterval(CircuitBreaker(coolDown: coolDown).coolDownSeconds))
        }
        return opened
    }

    /// When an open circuit is tried again.
    public func retryAt(workspaceID: String, providerID: String) -> Date? {
        breakers[Self.key(workspaceID: workspaceID, providerID: providerID)]?.openedAt
            .map { $0.addingTimeInterval(CircuitBreaker(coolDown: coolDown).coolDownSeconds) }
    }

    public func recordNeutral(workspaceID: String, providerID: String) {
        withBreaker(workspaceID, providerID) { $0.recordNeutral() }
    }

    /// Forgets a provider's breaker (e.g. after its key was rotated).
    public func reset(workspaceID: String, providerID: String) {
        breakers[Self.key(workspaceID: workspaceID, providerID: providerID)] = nil
    }
}

/// Counts AI provider circuits as they open and close (a gauge of those open now), and passes
/// each transition on to the journal `sentinel doctor` reads.
public final class CircuitMetricsJournal: CircuitJournal {
    private let open = Mutex<Set<String>>([])
    let forward: (any CircuitJournal)?
    let metrics: SentinelMetrics

    public init(forwardingTo forward: (any CircuitJournal)?, metrics: SentinelMetrics) {
        self.forward = forward
        self.metrics = metrics
    }

    public func opened(workspaceID: String, providerID: String, at: Date, retryAt: Date) {
        let count = open.withLock { $0.insert(CircuitBreakerRegistry.key(workspaceID: workspaceID, providerID: providerID)); return $0.count }
        metrics.circuitsOpen(count, opened: true)
        forward?.opened(workspaceID: workspaceID, providerID: providerID, at: at, retryAt: retryAt)
    }

    public func closed(workspaceID: String, providerID: String) {
        let count = open.withLock { $0.remove(CircuitBreakerRegistry.key(workspaceID: workspaceID, providerID: providerID)); return $0.count }
        metrics.circuitsOpen(count, opened: false)
        forward?.closed(workspaceID: workspaceID, providerID: providerID)
    }
}
