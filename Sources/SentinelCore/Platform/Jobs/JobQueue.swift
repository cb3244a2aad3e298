import Foundation
import GRDB

/// The durable per-workspace queue of SPEC §4, as SQL on one workspace file. Everything here runs
/// inside a transaction the caller owns, so a job can be enqueued atomically with the state change
/// that needs it, and the database (not a query-then-insert) enforces idempotency.
public enum JobQueue {
    public static func enqueue(_ request: JobRequest, in db: Database, now: Date, defaultMaxAttempts: Int) throws -> EnqueueResult {
        let runAt = (request.runAt ?? now).epoch
        try db.cachedStatement(sql: """
            INSERT OR IGNORE INTO jobs (kind, payload, priority, state, attempts, max_attempts, run_at,
                                        idempotency_key, correlation_id, trace_context, created_at)
            VALUES (?, ?, ?, 'queued', 0, ?, ?, ?, ?, ?, ?)
            """).execute(arguments: [request.kind, request.payload, request.priority.rawValue,
                             request.maxAttempts ?? defaultMaxAttempts, runAt,
                             request.idempotencyKey, request.correlationID ?? Telemetry.correlationID,
                             Telemetry.currentTraceparent(), now.epoch])
        if db.changesCount == 1 { return .created(db.lastInsertedRowID) }
        guard let key = request.idempotencyKey,
              let existing = try Int64.fetchOne(db, sql: "SELECT id FROM jobs WHERE idempotency_key = ?", arguments: [key]) else {
            throw StorageError.conflict("job could not be enqueued")
        }
        return .duplicate(existing)
    }

    /// Takes up to `limit` due jobs for `owner`: first jobs whose lease expired (their worker
    /// crashed), then queued jobs by priority and due time, only of priority `through` or higher.
    /// Each claim counts as an attempt, so a job that keeps crashing its worker ends `dead` instead
    /// of looping. `died` is told about each job this call makes dead.
    public static func claim(in db: Database, owner: String, now: Date, limit: Int, backgroundLimit: Int? = nil, lease: TimeInterval,
                             through lowest: JobPriority = .bulk, running: Set<Int64> = [],
                             died: (JobRecord, String) throws -> Void = { _, _ in }) throws -> [JobRecord] {
        guard limit > 0 else { return [] }
        let t = now.epoch
        let expires = t + lease
        var picked: [JobRecord] = []
        // At most `backgroundLimit` of them `low` or `bulk` (the rest stay as they are): the
        // scheduler keeps slots for webhook processing and reviews.
        var backgroundLeft = backgroundLimit ?? Int.max
        func admitted(_ job: JobRecord) -> Bool {
            guard job.jobPriority.isBackground else { return true }
            backgroundLeft -= 1
            return backgroundLeft >= 0
        }
        // Expired leases are rare: one cheap probe of the partial index before fetching rows.
        if try Bool.fetchOne(db.cachedStatement(sql: """
            SELECT EXISTS (SELECT 1 FROM jobs WHERE state = 'running' AND lease_expires_at <= ?)
            """), arguments: [t]) == true {
            // Jobs this process is running are not lost, whatever the clock says (`running`).
            let expired = try JobRecord.fetchAll(db.cachedStatement(sql: """
                SELECT * FROM jobs WHERE state = 'running' AND lease_expires_at <= ? AND priority <= ? ORDER BY priority, lease_expires_at LIMIT ?
                """), arguments: [t, lowest.rawValue, limit + running.count]).filter { !running.contains($0.id) }.prefix(limit)
            for job in expired where job.attempts >= job.maxAttempts {
                try db.execute(sql: """
                    UPDATE jobs SET state = 'dead', lease_owner = NULL, lease_expires_at = NULL, finished_at = ?,
                           last_error = coalesce(last_error || '; ', '') || 'lease expired on the last attempt (worker lost)'
                    WHERE id = ?
                    """, arguments: [t, job.id])
                try died(job, "lease expired on the last attempt (worker lost)" + (job.lastError.map { "; last error: \($0)" } ?? ""))
            }
            picked = expired.filter { $0.attempts < $0.maxAttempts }.filter(admitted)
        }
        if picked.count < limit {
            // Read through the due index, then lease each row by its id. One `UPDATE … WHERE id IN
            // (SELECT …) RETURNING *` does the same in a statement, but SQLite builds three
            // temporary b-trees for it (the id list, the updated rows, the returned rows), which
            // made it the costliest statement of a busy queue.
            picked += try JobRecord.fetchAll(db.cachedStatement(sql: """
                SELECT * FROM jobs WHERE state = 'queued' AND run_at <= ? AND priority <= ?
                ORDER BY priority, run_at, id LIMIT ?
                """), arguments: [t, lowest.rawValue, limit - picked.count]).filter(admitted)
        }
        guard !picked.isEmpty else { return [] }
        let take = try db.cachedStatement(sql: """
            UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = ?, lease_expires_at = ?, started_at = ?
            WHERE id = ?
            """)
        for i in picked.indices {
            try take.execute(arguments: [owner, expires, t, picked[i].id])
            picked[i].state = .running
            picked[i].attempts += 1
            picked[i].leaseOwner = owner
            picked[i].leaseExpiresAt = expires
            picked[i].startedAt = t
        }
        return picked
    }

    /// The earliest moment each priority class in this file needs a worker (a queued job falling
    /// due, a lease expiring): what the scheduler's `PendingIndex` holds for the workspace.
    static func dueByPriority(in db: Database) throws -> PriorityDue {
        var due = PriorityDue.none
        if let row = try Row.fetchOne(db.cachedStatement(sql: """
            SELECT (SELECT min(run_at) FROM jobs WHERE state = 'queued' AND priority = 0),
                   (SELECT min(run_at) FROM jobs WHERE state = 'queued' AND priority = 1),
                   (SELECT min(run_at) FROM jobs WHERE state = 'queued' AND priority = 2),
                   (SELECT min(run_at) FROM jobs WHERE state = 'queued' AND priority = 3)
            """)) {
            for priority in JobPriority.allCases {
                if let t: Double = row[priority.rawValue] { due.lower(priority, to: t) }
            }
        }
        let leases = try Row.fetchCursor(db.cachedStatement(sql: """
            SELECT priority, min(lease_expires_at) FROM jobs WHERE state = 'running' GROUP BY priority
            """))
        while let row = try leases.next() {
            if let t: Double = row[1] { due.lower(JobPriority(rawValue: row[0]) ?? .normal, to: t) }
        }
        return due
    }

    /// Records the end of an attempt. Returns false (and changes nothing) when `owner` no longer
    /// holds the lease: another worker retook the job and its outcome is the one that counts.
    /// `died` is told when this outcome makes the job dead.
    @discardableResult
    public static func finish(_ job: JobRecord, owner: String, outcome: JobOutcome, in db: Database, now: Date,
                              backoff: BackoffPolicy, died: (JobRecord, String) throws -> Void = { _, _ in }) throws -> Bool {
        let t = now.epoch
        switch outcome {
        case .succeeded:
            try db.cachedStatement(sql: """
                UPDATE jobs SET state = 'succeeded', lease_owner = NULL, lease_expires_at = NULL, finished_at = ?, last_error = NULL
                WHERE id = ? AND state = 'running' AND lease_owner = ?
                """).execute(arguments: [t, job.id, owner])
        case .released:
            try db.execute(sql: """
                UPDATE jobs SET state = 'queued', attempts = max(0, attempts - 1), lease_owner = NULL, lease_expires_at = NULL, run_at = ?
                WHERE id = ? AND state = 'running' AND lease_owner = ?
                """, arguments: [t, job.id, owner])
        case .postponed(let message, let after):
            try db.execute(sql: """
                UPDATE jobs SET state = 'queued', attempts = max(0, attempts - 1), lease_owner = NULL, lease_expires_at = NULL, run_at = ?,
                last_error = ? WHERE id = ? AND state = 'running' AND lease_owner = ?
                """, arguments: [t + max(0, after), message, job.id, owner])
        case .failed(let message, let retryAfter, let permanent):
            let attempts = try Int.fetchOne(db, sql: "SELECT attempts FROM jobs WHERE id = ? AND state = 'running' AND lease_owner = ?",
                                            arguments: [job.id, owner])
            guard let attempts else { return false }
            if permanent || attempts >= job.maxAttempts {
                try db.execute(sql: """
                    UPDATE jobs SET state = 'dead', lease_owner = NULL, lease_expires_at = NULL, finished_at = ?, last_error = ?
                    WHERE id = ?
                    """, arguments: [t, message, job.id])
                let dead = db.changesCount == 1
                var record = job
                record.attempts = attempts
                if dead { try died(record, message) }
                return dead
            } else {
                let delay = backoff.delay(afterAttempt: attempts, retryAfter: retryAfter)
                try db.execute(sql: """
                    UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL, run_at = ?, last_error = ?
                    WHERE id = ?
                    """, arguments: [t + delay, message, job.id])
            }
        }
        return db.changesCount == 1
    }

    /// Extends the lease of a running job; false when the lease was lost.
    public static func heartbeat(jobID: Int64, owner: String, in db: Database, until: Date) throws -> Bool {
        try db.cachedStatement(sql: "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND state = 'running' AND lease_owner = ?")
            .execute(arguments: [until.epoch, jobID, owner])
        return db.changesCount == 1
    }

    /// Gives back every job `owner` still holds (graceful shutdown), without counting the attempt.
    public static func releaseAll(owner: String, in db: Database, now: Date) throws -> Int {
        try db.execute(sql: """
            UPDATE jobs SET state = 'queued', attempts = max(0, attempts - 1), lease_owner = NULL, lease_expires_at = NULL, run_at = ?
            WHERE state = 'running' AND lease_owner = ?
            """, arguments: [now.epoch, owner])
        return db.changesCount
    }

    /// After the wall clock was set back by `seconds`: every due time and lease expiry written
    /// before, and so still after `now`, moves back by as much (never before `now`), so that a
    /// job due at once is not held back until the clock catches up again and a delay keeps its
    /// length. The leases of `owner` (the process doing this) are left alone: it renews them.
    /// Returns the number of jobs moved.
    public static func moveSchedule(back seconds: Double, now: Double, sparing owner: String, in db: Database) throws -> Int {
        try db.execute(sql: "UPDATE jobs SET run_at = max(?, run_at - ?) WHERE state = 'queued' AND run_at > ?",
                       arguments: [now, seconds, now])
        var moved = db.changesCount
        try db.execute(sql: """
            UPDATE jobs SET lease_expires_at = max(?, lease_expires_at - ?)
            WHERE state = 'running' AND lease_expires_at > ? AND lease_owner IS NOT ?
            """, arguments: [now, seconds, now, owner])
        moved += db.changesCount
        return moved
    }

    /// The earliest moment something in this file needs a worker: a queued job falling due or a
    /// lease expiring. Nil when the queue is idle.
    public static func nextDue(in db: Database) throws -> Double? {
        let row = try Row.fetchOne(db, sql: """
            SELECT (SELECT min(run_at) FROM jobs WHERE state = 'queued'),
                   (SELECT min(lease_expires_at) FROM jobs WHERE state = 'running')
            """)
        guard let row else { return nil }
        let queued: Double? = row[0]
        let leased: Double? = row[1]
        switch (queued, leased) {
        case let (q?, l?): return min(q, l)
        case let (q?, nil): return q
        case let (nil, l?): return l
        default: return nil
        }
    }

    /// Deletes, among the next `window` jobs by id after `afterID`, the succeeded and cancelled ones
    /// finished before `cutoff`. Dead jobs stay until an admin acts. Returns how many went and the
    /// last id looked at (nil past the table's end): the caller walks the table window by window.
    ///
    /// No index orders finished jobs by time (`0015`): every job's outcome would write one more
    /// index page into the log, for a query that runs once a day. A window reads `window` rows of
    /// the table's own b-tree, so each transaction stays short whatever the table holds.
    public static func prune(finishedBefore cutoff: Date, after afterID: Int64, window: Int, in db: Database) throws -> (pruned: Int, last: Int64?) {
        guard let last = try Int64.fetchOne(db, sql: "SELECT max(id) FROM (SELECT id FROM jobs WHERE id > ? ORDER BY id LIMIT ?)",
                                            arguments: [afterID, window]) else {
            return (0, nil)
        }
        try db.execute(sql: """
            DELETE FROM jobs WHERE id > ? AND id <= ? AND state IN ('succeeded','cancelled') AND finished_at < ?
            """, arguments: [afterID, last, cutoff.epoch])
        return (db.changesCount, last)
    }

    /// Puts a dead job back in the queue with a fresh attempt budget.
    public static func retryDead(jobID: Int64, in db: Database, now: Date) throws -> Bool {
        try db.execute(sql: """
            UPDATE jobs SET state = 'queued', attempts = 0, run_at = ?, finished_at = NULL WHERE id = ? AND state = 'dead'
            """, arguments: [now.epoch, jobID])
        return db.changesCount == 1
    }

    /// Gives up on a dead job for good; it is pruned like a finished one.
    public static func discardDead(jobID: Int64, in db: Database, now: Date) throws -> Bool {
        try db.execute(sql: "UPDATE jobs SET state = 'cancelled', finished_at = ? WHERE id = ? AND state = 'dead'",
                       arguments: [now.epoch, jobID])
        return db.changesCount == 1
    }

    /// Cancels queued jobs matching an idempotency-key prefix (e.g. work for a closed PR).
    public static func cancelQueued(idempotencyKeyPrefix prefix: String, in db: Database, now: Date) throws -> Int {
        try db.execute(sql: """
            UPDATE jobs SET state = 'cancelled', finished_at = ? WHERE state = 'queued' AND idempotency_key LIKE ? ESCAPE '\\'
            """, arguments: [now.epoch, escapeLike(prefix) + "%"])
        return db.changesCount
    }

    /// The newest `limit` jobs (in `state`), oldest first: past the limit, the oldest are left
    /// out (they were the ones shown, and the newest, what an admin looks for, were not).
    public static func list(state: JobState?, limit: Int = 100, in db: Database) throws -> [JobRecord] {
        if let state {
            return try JobRecord.fetchAll(db, sql: "SELECT * FROM jobs WHERE state = ? ORDER BY id DESC LIMIT ?", arguments: [state, limit]).reversed()
        }
        return try JobRecord.fetchAll(db, sql: "SELECT * FROM jobs ORDER BY id DESC LIMIT ?", arguments: [limit]).reversed()
    }

    /// Jobs waiting to run (queued, due or not) per priority class; classes with none are 0.
    public static func queuedCounts(in db: Database) throws -> [JobPriority: Int] {
        var counts = Dictionary(uniqueKeysWithValues: JobPriority.allCases.map { ($0, 0) })
        for row in try Row.fetchAll(db, sql: "SELECT priority, count(*) AS n FROM jobs WHERE state = 'queued' GROUP BY priority") {
            let priority = JobPriority(rawValue: row["priority"]) ?? .normal
            counts[priority, default: 0] += row["n"] as Int
        }
        return counts
    }

    /// Raises a job's priority (never lowers it): a review run whose review is prepared is from then
    /// on the posting of results, which SPEC §4 puts with the critical work, so a retry or a
    /// takeover after a crash goes ahead of other runs.
    static func raisePriority(jobID: Int64, to priority: JobPriority, in db: Database) throws {
        try db.execute(sql: "UPDATE jobs SET priority = ? WHERE id = ? AND priority > ?", arguments: [priority.rawValue, jobID, priority.rawValue])
    }

    public static func job(id: Int64, in db: Database) throws -> JobRecord? {
        try JobRecord.fetchOne(db, sql: "SELECT * FROM jobs WHERE id = ?", arguments: [id])
    }

    static func escapeLike(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "%", with: "\\%").replacingOccurrences(of: "_", with: "\\_")
    }
}

extension JobQueue {
    /// The `JobDead` event appended in the transaction that makes a job dead: kind, attempts and the
    /// first 300 characters of the reason (what `sentinel jobs list` shows), never the payload.
    static func deadEvent(_ job: JobRecord, reason: String) throws -> DomainEvent {
        try DomainEvent(type: "JobDead", subject: "job:\(job.id)", payload: [
            "kind": job.kind, "attempts": String(job.attempts), "reason": String(reason.prefix(300)),
        ], correlationID: job.correlationID)
    }
}
