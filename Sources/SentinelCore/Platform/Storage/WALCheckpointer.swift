import Foundation
import GRDB
import GRDBSQLite
import NIOPosix
import Synchronization

/// Keeps a workspace file's write-ahead log short without making its writer wait.
///
/// SQLite's automatic checkpoint runs inside the commit that crosses 1,000 WAL pages: that commit
/// copies the pages into the database file and fsyncs it before the writer can take the next group
/// of writes, so every write queued behind it waits (the p99 of webhook intake). This replaces it
/// (`sqlite3_wal_hook` on the writer connection): once the WAL holds `threshold` pages, a second,
/// short-lived connection on NIO's blocking-work threads copies them (`PASSIVE`, never waiting for
/// readers or the writer), and then what the writer appended meanwhile while that rest is at most
/// `tail` pages (2 MiB). Once it has copied all but such a rest, the writer's next durable commit
/// copies that rest itself, so the log is complete in the database file and SQLite starts it again
/// from the beginning at the next write; a writer of relaxed commits only gets there through the
/// background's copies of the rest, whenever it pauses. Should the background copies fall behind
/// by `limit` pages, the writer checkpoints as SQLite would have (durable commits only). The log
/// thus stays a few megabytes long and its file pages are written over again; a log that never
/// started again would grow into new pages of the file system's cache with every commit
/// (`State.commit`). Durability is unchanged: every commit is already in the fsynced WAL.
final class WALCheckpointer: Sendable {
    enum Action: Equatable { case none, background, inWriter }

    struct State {
        /// WAL pages after the last commit the hook saw (a drop means the log started again).
        var pages: Int32 = 0
        /// Pages of the current log already copied into the database file by a checkpoint.
        var backfilled: Int32 = 0
        /// The log's size when the last background checkpoint started: the next one waits for a
        /// quarter of `threshold` more (a reader such as Litestream can hold checkpoints back).
        var startedAt: Int32 = 0
        var running = false
        var closed = false
        var background = 0
        var inWriter = 0
        var restarts = 0
        /// The commit under way is a relaxed one (`relaxedCommit`).
        var relaxed = false

        /// What follows a commit that left the log `pages` long. A log that has reached `limit`
        /// (writes arriving faster than background copies keep up with) is copied by the writer
        /// at once, as SQLite's own checkpoint would; while a background checkpoint runs SQLite
        /// refuses that with `SQLITE_BUSY` before copying anything, so trying costs a lock probe.
        /// Below the limit the writer waits for the background copy to end, then copies the rest
        /// itself when that is at most `tail` pages; otherwise another background copy starts.
        /// A relaxed commit never copies: it runs on a cooperative thread, which the copy's fsync
        /// must not hold (100 workspaces' queue commits lost a quarter of their throughput so).
        /// Either way the log ends up complete in the database file, and SQLite starts it again
        /// from its beginning at the next write, over the same file pages.
        mutating func commit(pages: Int32, threshold: Int32, tail: Int32, limit: Int32) -> Action {
            if pages < self.pages { (backfilled, startedAt, restarts) = (0, 0, restarts + 1) }  // the log started again
            self.pages = pages
            guard !closed, pages >= threshold else { return .none }
            if !relaxed {
                if pages >= limit { return .inWriter }
                guard !running else { return .none }
                if backfilled > 0 && pages - backfilled <= tail { return .inWriter }
            }
            guard !running, pages - startedAt >= threshold / 4 else { return .none }
            (running, startedAt) = (true, pages)
            return .background
        }

        /// The writer's own checkpoint ended, having copied the first `copied` pages of the log;
        /// nil when SQLite refused it (another checkpoint was running): nothing changed then.
        mutating func checkpointedInWriter(copied: Int32?) {
            inWriter += 1
            if let copied { backfilled = copied }
        }

        /// A background checkpoint ended, having copied the first `copied` pages of the log.
        mutating func checkpointedInBackground(copied: Int32) {
            running = false
            background += 1
            // Only frames of the log the writer still appends to count; a restart since resets it.
            if copied > 0 && copied <= pages { backfilled = copied }
        }
    }

    let path: String
    let threshold: Int32
    let tail: Int32
    let limit: Int32
    private let state = Mutex(State())
    /// Held while a background checkpoint has its connection open; `close` takes it to wait for one.
    private let connection = Mutex(())

    init(path: String, threshold: Int32 = 1_000, tail: Int32 = 512, limit: Int32 = 8_000) {
        self.path = path
        self.threshold = threshold
        self.tail = tail
        self.limit = limit
    }

    /// How many checkpoints ran in the background and in the writer (for tests and benchmarks).
    var counts: (background: Int, inWriter: Int) { state.withLock { ($0.background, $0.inWriter) } }

    /// Runs a relaxed commit (`PRAGMA synchronous = NORMAL`, run by its batch's leader on a
    /// cooperative thread): after it the writer copies nothing itself, leaving the log's rest to
    /// the next durable commit, which waits for an fsync on the file's writer thread anyway.
    /// Called with the file's writer held, so no other commit of the file runs meanwhile.
    func relaxedCommit<T>(_ body: () throws -> T) rethrows -> T {
        state.withLock { $0.relaxed = true }
        defer { state.withLock { $0.relaxed = false } }
        return try body()
    }

    /// How many times the writer's commits found the log started again from its beginning.
    var restarts: Int { state.withLock { $0.restarts } }

    /// The WAL's size in pages after the writer's last commit (0 before its first one).
    var logPages: Int32 { state.withLock { $0.pages } }

    /// The longest log an evicted file keeps when it closes (`WorkspaceActor.close(.checkpointUnlessShort)`):
    /// 64 pages, 256 KiB with SQLite's default page size, which the next open reads back in well
    /// under a millisecond.
    static let keptOnEviction: Int32 = 64

    /// Installs the hook on the writer's connection; SQLite's own automatic checkpoint is off from then on.
    ///
    /// The writer also keeps the `-wal` and `-shm` files when it closes (`SQLITE_FCNTL_PERSIST_WAL`;
    /// `close` still checkpoints and truncates the log to nothing): under LRU churn a workspace file
    /// is opened and closed again and again, and creating and deleting its two companion files
    /// each time cost the file system more than the open itself (ext4 inode allocation).
    func install(on writer: any DatabaseWriter) throws {
        // Retained by the hook until `close` takes it off.
        let context = Unmanaged.passRetained(self).toOpaque()
        try writer.writeWithoutTransaction { db in
            var persist: Int32 = 1
            _ = sqlite3_file_control(db.sqliteConnection, "main", SQLITE_FCNTL_PERSIST_WAL, &persist)
            _ = sqlite3_wal_hook(db.sqliteConnection, { context, connection, _, pages in
                guard let context else { return SQLITE_OK }
                Unmanaged<WALCheckpointer>.fromOpaque(context).takeUnretainedValue().committed(pages: pages, writer: connection)
                return SQLITE_OK
            }, context)
        }
    }

    /// Waits for a background checkpoint and takes the hook off the writer (before it closes).
    func close(writer: any DatabaseWriter) {
        let first = state.withLock { s in
            defer { s.closed = true }
            return !s.closed
        }
        guard first else { return }
        connection.withLock { _ in }
        try? writer.writeWithoutTransaction { db in _ = sqlite3_wal_hook(db.sqliteConnection, nil, nil) }
        Unmanaged.passUnretained(self).release()
    }

    /// Copies the whole log into the database file and truncates it to nothing, on the writer's
    /// connection `db`, once no background checkpoint is running: SQLite lets one checkpoint run at
    /// a time, and a second one returns `SQLITE_BUSY` at once with nothing copied (a `VACUUM` whose
    /// commit started a background checkpoint would leave its new file in the log, the old one in
    /// place). Returns whether the log was copied completely.
    @discardableResult
    func truncate(_ db: Database) throws -> Bool {
        try connection.withLock { _ in
            let busy = try Int.fetchOne(db, sql: "PRAGMA wal_checkpoint(TRUNCATE)")
            return busy == 0
        }
    }

    /// Called by SQLite on the writer's thread after each commit, with the WAL's size in pages.
    private func committed(pages: Int32, writer: OpaquePointer?) {
        let (threshold, tail, limit) = (self.threshold, self.tail, self.limit)
        switch state.withLock({ $0.commit(pages: pages, threshold: threshold, tail: tail, limit: limit) }) {
        case .none: break
        case .inWriter:
            var log: Int32 = 0
            var done: Int32 = 0
            let copied: Int32? = sqlite3_wal_checkpoint_v2(writer, nil, SQLITE_CHECKPOINT_PASSIVE, &log, &done) == SQLITE_OK ? done : nil
            state.withLock { $0.checkpointedInWriter(copied: copied) }
        case .background:
            NIOThreadPool.singleton.submit { [self] _ in checkpointInBackground() }
        }
    }

    /// The most copies one background checkpoint makes, its first and those of the rests after it.
    static let backgroundRounds = 4

    private func checkpointInBackground() {
        var copied: Int32 = 0
        connection.withLock { _ in
            guard !state.withLock({ $0.closed }) else { return }
            var configuration = Configuration()
            configuration.busyMode = .immediateError
            configuration.label = "checkpoint"
            guard let queue = try? DatabaseQueue(path: path, configuration: configuration) else { return }
            try? queue.writeWithoutTransaction { db in
                // What the writer appended while a copy ran is copied too while it is a short
                // rest, so the log is complete in the file whenever the writer pauses, and
                // starts again at its next write. Without this a writer of relaxed commits only
                // (the queue's claims and outcomes, which never copy) grew its log into new file
                // pages for as long as it ran.
                for _ in 0..<Self.backgroundRounds {
                    var log: Int32 = 0
                    var done: Int32 = 0
                    guard sqlite3_wal_checkpoint_v2(db.sqliteConnection, nil, SQLITE_CHECKPOINT_PASSIVE, &log, &done) == SQLITE_OK,
                          done > copied else { break }
                    copied = done
                    let latest = state.withLock { $0.closed ? 0 : $0.pages }
                    guard latest > done, latest - done <= tail else { break }
                }
            }
            try? queue.close()
        }
        state.withLock { $0.checkpointedInBackground(copied: copied) }
    }
}
