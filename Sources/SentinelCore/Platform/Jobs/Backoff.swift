import Foundation

/// Exponential backoff with jitter: attempt n waits base·2^(n−1), capped, scaled by a random
/// factor in [0.5, 1] so that many jobs failing together do not retry together. A `Retry-After`
/// from the failing system wins over the computed delay.
public struct BackoffPolicy: Sendable, Equatable {
    public var base: TimeInterval
    public var cap: TimeInterval

    public init(base: TimeInterval, cap: TimeInterval) {
        self.base = base
        self.cap = cap
    }

    /// The un-jittered delay after the given (1-based) attempt.
    public func ceiling(afterAttempt attempt: Int) -> TimeInterval {
        let exponent = Double(max(0, min(attempt - 1, 60)))
        return min(cap, base * pow(2, exponent))
    }

    public func delay(afterAttempt attempt: Int, retryAfter: TimeInterval? = nil,
                      random: Double = Double.random(in: 0...1)) -> TimeInterval {
        // `Retry-After: 0` (or a date already past) says nothing of how long to wait: retried at
        // once, a channel answering so used up every attempt in under a second.
        if let retryAfter, retryAfter > 0 { return retryAfter }
        return ceiling(afterAttempt: attempt) * (0.5 + 0.5 * random)
    }
}

/// A per-workspace token bucket: at most `burst` job starts at once, refilled at `rate` per second,
/// so one tenant flooding its queue cannot take every worker.
public struct TokenBucket: Sendable {
    public let rate: Double
    public let burst: Double
    private(set) var tokens: Double
    private var updatedAt: ContinuousClock.Instant

    public init(rate: Double, burst: Double, now: ContinuousClock.Instant = .now) {
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updatedAt = now
    }

    mutating func refill(_ now: ContinuousClock.Instant) {
        let elapsed = (now - updatedAt).seconds
        if elapsed > 0 {
            tokens = min(burst, tokens + elapsed * rate)
            updatedAt = now
        }
    }

    /// Whole tokens available now.
    public mutating func available(now: ContinuousClock.Instant = .now) -> Int {
        refill(now)
        return Int(tokens.rounded(.down))
    }

    public mutating func take(_ count: Int, now: ContinuousClock.Instant = .now) {
        refill(now)
        tokens = max(0, tokens - Double(count))
    }

    /// Time until one token is available.
    public mutating func waitTime(now: ContinuousClock.Instant = .now) -> Duration {
        refill(now)
        if tokens >= 1 { return .zero }
        return .nanoseconds(Int64(((1 - tokens) / rate) * 1e9) + 1)
    }
}
