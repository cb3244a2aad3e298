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
/// readers or the writer). Once it has copied all but the last `tail` pages, the writer's next
/// commit copies that tail itself (a few pages), so the log is complete in the database file and
/// SQLite starts it again from the beginning at the next write. Should the background copy fall
/// behind by `limit` pages, the writer checkpoints as SQLite would have. Durability is unchanged:
/// every commit is already in the fsynced WAL.
final class WALCheckpointer: Sendable {
    struct State {
        /// WAL pages after the last commit the hook saw (a drop means the log started again).
        var pages: Int32 = 0
        /// Pages of the current log already copied by the background checkpoint.
        var backfilled: Int32 = 0
        /// The log's size when the last background checkpoint started: the next one waits for a
        /// quarter of `threshold` more (a reader such as Litestream can hold checkpoints back).
        var startedAt: Int32 = 0
        var running = false
        var closed = false
        var background = 0
        var inWriter = 0
    }

    let path: String
    let threshold: Int32
    let tail: Int32
    let limit: Int32
    private let state = Mutex(State())
    /// Held while a background checkpoint has its connection open; `close` takes it to wait for one.
    private let connection = Mutex(())

    init(path: String, threshold: Int32 = 1_000, tail: Int32 = 128, limit: Int32 = 8_000) {
        self.path = path
        self.threshold = threshold
        self.tail = tail
        self.limit = limit
    }

    /// How many checkpoints ran in the background and in the writer (for tests and benchmarks).
    var counts: (background: Int, inWriter: Int) { state.withLock { ($0.background, $0.inWriter) } }

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
        enum Action { case none, background, inWriter }
        let action: Action = state.withLock { s in
            if pages < s.pages { (s.backfilled, s.startedAt) = (0, 0) }  // the log started again
            s.pages = pages
            guard !s.closed, pages >= threshold else { return .none }
            if !s.running && s.backfilled > 0 && pages - s.backfilled <= tail { return .inWriter }
            if !s.running && pages - s.startedAt >= threshold / 4 {
                (s.running, s.startedAt) = (true, pages)
                return .background
            }
            return pages >= limit ? .inWriter : .none
        }
        switch action {
        case .none: break
        case .inWriter:
            _ = sqlite3_wal_checkpoint_v2(writer, nil, SQLITE_CHECKPOINT_PASSIVE, nil, nil)
            state.withLock { $0.backfilled = 0; $0.inWriter += 1 }
        case .background:
            NIOThreadPool.singleton.submit { [self] _ in checkpointInBackground() }
        }
    }

    private func checkpointInBackground() {
        var copied: Int32 = 0
        connection.withLock { _ in
            guard !state.withLock({ $0.closed }) else { return }
            var configuration = Configuration()
            configuration.busyMode = .immediateError
            configuration.label = "checkpoint"
            guard let queue = try? DatabaseQueue(path: path, configuration: configuration) else { return }
            try? queue.writeWithoutTransaction { db in
                var log: Int32 = 0
                var done: Int32 = 0
                if sqlite3_wal_checkpoint_v2(db.sqliteConnection, nil, SQLITE_CHECKPOINT_PASSIVE, &log, &done) == SQLITE_OK { copied = done }
            }
            try? queue.close()
        }
        state.withLock { s in
            s.running = false
            s.background += 1
            // Only frames of the log the writer still appends to count; a restart since resets it.
            if copied > 0 && copied <= s.pages { s.backfilled = copied }
        }
    }
}
