/// A value produced once by one task and awaited by others (the port a server bound to, for
/// instance). Waiters that arrive before the value suspend until it is set.
public actor Rendezvous<Value: Sendable> {
    private var value: Value?
    private var waiters: [CheckedContinuation<Value, Never>] = []

    public init() {}

    public func set(_ newValue: Value) {
        value = newValue
        for waiter in waiters { waiter.resume(returning: newValue) }
        waiters.removeAll()
    }

    public func wait() async -> Value {
        if let value { return value }
        return await withCheckedContinuation { waiters.append($0) }
    }
}
