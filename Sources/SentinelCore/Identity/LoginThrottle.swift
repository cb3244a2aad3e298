import Foundation

/// Failed sign-ins per account and per source address in a sliding window: past the limit,
/// login answers 429 with `Retry-After` until the oldest failure leaves the window.
///
/// Every attempt reserves its failure slot before the password is checked (`reserve`), so parallel
/// attempts cannot together run more password checks than the limit allows; a right password
/// gives the slot back (`succeeded`), a wrong one keeps it.
public actor LoginThrottle {
    let window: TimeInterval
    let perAccount: Int
    let perAddress: Int
    private var failures: [String: [Date]] = [:]

    /// A reserved slot: counts as a failure unless given back.
    public struct Attempt: Sendable {
        let accountKey: String
        let addressKey: String
        let at: Date
    }

    public enum Admission: Sendable {
        case admitted(Attempt)
        case limited(retryAfterSeconds: Int)
    }

    public init(window: TimeInterval = 900, perAccount: Int = 5, perAddress: Int = 20) {
        self.window = window
        self.perAccount = perAccount
        self.perAddress = perAddress
    }

    /// Takes a failure slot for the account and the address, or says how long to wait when either
    /// is at its limit (counting attempts still being checked).
    public func reserve(account: String, address: String, now: Date = Date()) -> Admission {
        let checks = [("account:" + account.lowercased(), perAccount), ("address:" + address, perAddress)]
        var wait: TimeInterval = 0
        for (key, limit) in checks {
            // A failure stamped after `now` was recorded before the wall clock was set back: it
            // counts as happening now, so a lockout lasts at most `window`, not the window plus the step.
            let recent = (failures[key] ?? []).map { min($0, now) }.filter { now.timeIntervalSince($0) < window }
            failures[key] = recent
            if recent.count >= limit, let oldest = recent.first { wait = max(wait, window - now.timeIntervalSince(oldest)) }
        }
        if wait > 0 { return .limited(retryAfterSeconds: max(1, Int(wait.rounded(.up)))) }
        let attempt = Attempt(accountKey: checks[0].0, addressKey: checks[1].0, at: now)
        failures[attempt.accountKey, default: []].append(now)
        failures[attempt.addressKey, default: []].append(now)
        if failures.count > 100_000 { failures = failures.filter { !$0.value.isEmpty && now.timeIntervalSince($0.value.last!) < window } }
        return .admitted(attempt)
    }

    /// The password was right: the account's failures are forgotten and the address slot given back.
    public func succeeded(_ attempt: Attempt) {
        failures[attempt.accountKey] = nil
        release(attempt.addressKey, attempt.at)
    }

    /// The check could not be made (an error, not a wrong password): both slots are given back.
    public func abandoned(_ attempt: Attempt) {
        release(attempt.accountKey, attempt.at)
        release(attempt.addressKey, attempt.at)
    }

    private func release(_ key: String, _ at: Date) {
        guard var list = failures[key], let index = list.lastIndex(of: at) else { return }
        list.remove(at: index)
        failures[key] = list.isEmpty ? nil : list
    }
}

extension LoginThrottle {
    /// A sign-in with email and password under this throttle (the API's `login` and the console's
    /// sign-in form): the failure slot is taken before the password is checked, so parallel
    /// attempts cannot run more checks than the limit allows. Returns the user, or nil for a wrong
    /// email or password; throws `IdentityError` `.rateLimited` when the account or address is over
    /// its limit. bcrypt runs on the identity service's password pool.
    public func signIn(email: String, password: String, address: String, identity: IdentityService) async throws -> IdentityService.PasswordCheck? {
        let email = IdentityService.normalizedEmail(email)
        let attempt: Attempt
        switch reserve(account: email, address: address) {
        case .limited(let wait):
            throw IdentityError(.rateLimited(retryAfterSeconds: wait), "too many failed sign-ins; try again in \(wait) s")
        case .admitted(let reserved):
            attempt = reserved
        }
        let checked: IdentityService.PasswordCheck?
        do {
            checked = try await identity.passwords.run { try identity.checkPassword(email: email, password: password) }
        } catch {
            abandoned(attempt)
            throw error
        }
        if checked != nil { succeeded(attempt) }
        return checked
    }
}
