import Dispatch
import Foundation
import HummingbirdBcrypt
import Synchronization

/// bcrypt hashing and verification on a small pool of its own: `threads` serial queues, so at most
/// that many hashes run at once, never on NIO's shared blocking pool (where workspace files are
/// opened) nor on a cooperative thread (where webhook intake runs). A sign-in flood queues here
/// and delays nothing else.
///
/// A sign-in for an unknown email verifies against a fixed dummy hash of the same cost, so it costs
/// the same work as a known one.
public final class PasswordHasher: Sendable {
    public let cost: UInt8
    private let queues: [DispatchQueue]
    private let state = Mutex(State())

    struct State {
        var next = 0
        var verifications = 0
        var dummyHash: String?
    }

    public init(cost: Int, threads: Int = 2) {
        self.cost = UInt8(clamping: max(4, min(cost, 31)))
        self.queues = (0..<max(1, threads)).map { DispatchQueue(label: "sentinel.bcrypt.\($0)") }
    }

    /// Runs blocking password work (anything that calls `hash` or `verify`) on this pool.
    public func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        let queue = state.withLock { state in
            defer { state.next = (state.next + 1) % queues.count }
            return queues[state.next]
        }
        return try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try work() }) }
        }
    }

    /// A new salted hash of `password` at the configured cost (blocking: call inside `run`).
    public func hash(_ password: String) -> String {
        Bcrypt.hash(password, cost: cost)
    }

    /// Whether `password` matches `storedHash`; with no stored hash (unknown account) the same work
    /// is done against the dummy hash and the answer is false. Blocking: call inside `run`.
    public func verify(_ password: String, against storedHash: String?) -> Bool {
        let dummy = dummyHash
        state.withLock { $0.verifications += 1 }
        guard let storedHash else {
            _ = Bcrypt.verify(password, hash: dummy)
            return false
        }
        return Bcrypt.verify(password, hash: storedHash)
    }

    /// Verifications performed so far (each is one full bcrypt computation).
    public var verifications: Int { state.withLock { $0.verifications } }

    /// A hash of no one's password at the configured cost, made once on first use.
    public var dummyHash: String {
        if let made = state.withLock({ $0.dummyHash }) { return made }
        let made = Bcrypt.hash("not the password of anyone \(RandomIdentifier.uuid())", cost: cost)
        return state.withLock { state in
            if let existing = state.dummyHash { return existing }
            state.dummyHash = made
            return made
        }
    }
}
