import GRDB
import Hummingbird
import SentinelCore

// What each domain's errors mean to an API client. One extension per error type; an error type
// without one is an internal error (500, logged, its text not sent).

extension WorkspaceError: ProblemConvertible {
    var problem: Problem {
        switch self {
        case .notFound: return Problem(status: .notFound, detail: "no such workspace")
        case .offline(_, let reason, let retryAfter):
            var problem = Problem(status: .serviceUnavailable, detail: "this workspace is offline: \(reason); other workspaces are unaffected",
                                  type: "urn:sentinel:problem:workspace-offline", title: "Workspace offline")
            // As the other 503s of storage: when to come back (when the file is tried again:
            // `workspaces.offline_retry_seconds` after it failed, 30 by default).
            problem.retryAfter = retryAfter
            return problem
        case .closed, .shuttingDown:
            return Problem(status: .serviceUnavailable, detail: description)
        case .outOfFileDescriptors:
            return .outOfFileDescriptors
        case .busy:
            return Problem(status: .conflict, detail: description)
        }
    }
}

extension Problem {
    /// The process ran out of file descriptors (an open of a database file failed for it): nothing
    /// was stored; descriptors come free as connections and idle files close.
    static var outOfFileDescriptors: Problem {
        var problem = Problem(status: .serviceUnavailable, detail: "the appliance is at its limit of open files; nothing was stored, retry later",
                              type: "urn:sentinel:problem:too-many-open-files", title: "Too many open files")
        problem.retryAfter = 5
        return problem
    }
}

/// A stored credential that the master key does not open (`secrets/master.key` replaced, or the
/// data restored without its own key): the appliance is misconfigured, not the request, so the
/// client is asked to come back (503) while the log and `sentinel doctor` say what to fix.
extension SecretError: ProblemConvertible {
    var problem: Problem {
        switch self {
        case .openFailed:
            var problem = Problem(status: .serviceUnavailable,
                                  detail: "this appliance cannot decrypt a credential it stored (its master key does not match; see `sentinel doctor`); nothing was stored, retry later",
                                  type: "urn:sentinel:problem:credentials-unreadable", title: "Stored credentials unreadable")
            problem.retryAfter = 60
            return problem
        case .sealFailed:
            return .internalError
        }
    }
}

extension AnalyticsError: ProblemConvertible {
    var problem: Problem { Problem(status: .badRequest, detail: description) }
}

extension IdentityError: ProblemConvertible {
    var problem: Problem {
        switch kind {
        case .invalid: return Problem(status: .badRequest, detail: description)
        case .notFound: return Problem(status: .notFound, detail: description)
        case .conflict: return Problem(status: .conflict, detail: description)
        case .unauthenticated: return Problem.unauthenticated(description)
        case .forbidden: return Problem(status: .forbidden, detail: description)
        case .rateLimited(let seconds):
            var problem = Problem(status: .tooManyRequests, detail: description)
            problem.retryAfter = seconds
            return problem
        }
    }
}

extension PlanLimitError: ProblemConvertible {
    var problem: Problem {
        Problem(status: .forbidden, detail: message, type: "urn:sentinel:problem:plan-limit", title: "Plan limit reached")
    }
}

extension StorageError: ProblemConvertible {
    var problem: Problem {
        switch self {
        case .notFound(let m): return Problem(status: .notFound, detail: m)
        case .conflict(let m): return Problem(status: .conflict, detail: m)
        case .invalid(let m): return Problem(status: .badRequest, detail: m)
        default: return .internalError
        }
    }
}

extension IntegrationError: ProblemConvertible {
    var problem: Problem {
        switch self {
        case .invalid(let m): return Problem(status: .badRequest, detail: m)
        case .notFound: return Problem(status: .notFound, detail: description)
        case .limitReached(let m): return Problem(status: .conflict, detail: m)
        }
    }
}

extension PolicySettingsError: ProblemConvertible {
    var problem: Problem {
        Problem(status: .badRequest, detail: description, type: "urn:sentinel:problem:invalid-setting", title: "Invalid setting")
    }
}

/// The data volume is full (`SQLITE_FULL`: the disk, or the file's size limit), locked by another
/// writer (`SQLITE_BUSY`, `SQLITE_LOCKED`), or cannot be
/// written (`SQLITE_READONLY`, `SQLITE_IOERR`, `SQLITE_CANTOPEN`: a file system remounted read-only
/// after disk errors, a failing disk): nothing was stored, so the client is asked to come back
/// (503 + `Retry-After`; GitHub and GitLab retry or the catch-up sweep asks for the delivery
/// again). Writes succeed again by themselves once space returns or the volume is writable again.
/// Any other database error is an internal error.
extension DatabaseError: ProblemConvertible {
    static let storageFullRetryAfter = 30

    var problem: Problem {
        var problem: Problem
        switch resultCode {
        case .SQLITE_FULL:
            problem = Problem(status: .serviceUnavailable, detail: "the data volume is full; nothing was stored, retry later",
                              type: "urn:sentinel:problem:storage-full", title: "Storage full")
        case .SQLITE_CANTOPEN where FileDescriptorLimit.isExhausted():
            return .outOfFileDescriptors
        case .SQLITE_READONLY, .SQLITE_IOERR, .SQLITE_CANTOPEN:
            problem = Problem(status: .serviceUnavailable,
                              detail: "the data volume cannot be written (read-only or failing); nothing was stored, retry later",
                              type: "urn:sentinel:problem:storage-unavailable", title: "Storage unavailable")
        case .SQLITE_BUSY, .SQLITE_LOCKED:
            // Another process (a `sqlite3` shell, a stalled disk) held the file's lock for longer
            // than `storage.busy_timeout_ms`: it passes, so come back shortly.
            var busy = Problem(status: .serviceUnavailable,
                               detail: "the data is locked by another writer for longer than the appliance waits; nothing was stored, retry shortly",
                               type: "urn:sentinel:problem:storage-busy", title: "Storage busy")
            busy.retryAfter = 5
            return busy
        default:
            return .internalError
        }
        problem.retryAfter = Self.storageFullRetryAfter
        return problem
    }
}
