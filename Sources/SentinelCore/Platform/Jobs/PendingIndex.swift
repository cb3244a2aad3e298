import Foundation
import Synchronization

/// The earliest moment each priority class of one workspace needs a worker: a queued job of that
/// priority falling due, or the lease of a running one expiring. Nil: nothing of that class.
public struct PriorityDue: Sendable, Equatable {
    /// Indexed by `JobPriority.rawValue`.
    public private(set) var times: [Double?]

    public static let none = PriorityDue(times: Array(repeating: nil, count: JobPriority.allCases.count))

    init(times: [Double?]) { self.times = times }

    public subscript(priority: JobPriority) -> Double? { times[priority.rawValue] }

    /// Moves the time of `priority` earlier to `due` (never later).
    mutating func lower(_ priority: JobPriority, to due: Double) {
        times[priority.rawValue] = min(times[priority.rawValue] ?? due, due)
    }

    mutating func lower(to other: PriorityDue) {
        for (i, due) in other.times.enumerated() { if let due { times[i] = min(times[i] ?? due, due) } }
    }

    public var earliest: Double? { times.compactMap { $0 }.min() }
    public var isEmpty: Bool { times.allSatisfy { $0 == nil } }
}

/// A workspace the scheduler should claim from now: `rank` orders workspaces across the
/// appliance (0 first: a due `critical` job, or a lower one aged up to it), `through` is the lowest
/// priority the claim may take (higher ones come first inside the file anyway).
struct DueWorkspace: Sendable, Hashable {
    let id: WorkspaceID
    let rank: Int
    let through: JobPriority
}

/// The scheduler's in-memory view of what is due where, by priority, so that it can start a
/// `critical` job in one workspace before a `bulk` job in another without opening every file.
///
/// It is maintained by the workspace actors on every commit that enqueues, claims, finishes or
/// releases jobs (a claim replaces the workspace's entry with the file's exact per-priority due
/// times, read in the claim's transaction), and it outlives open files: an evicted workspace keeps
/// its entry. `control.sqlite`'s `pending_work` stays the durable, cross-process record (one due
/// time per workspace, no priority): at start, and for work another process (the CLI) enqueued,
/// the scheduler learns of a workspace from there as `unknown` — served first, with a claim of
/// its `critical` jobs only — until that claim makes the entry exact.
final class PendingIndex: Sendable {
    struct Entry: Sendable {
        var due = PriorityDue.none
        /// Due work of unknown priority (learnt from `pending_work`).
        var unknown: Double?
        /// The `pending_work` value this process last wrote or saw for the workspace.
        var controlDue: Double?
    }

    private let entries = Mutex<[WorkspaceID: Entry]>([:])

    /// Moves due times earlier (jobs enqueued, retried or released). Returns whether any moved.
    @discardableResult
    func lower(_ id: WorkspaceID, to due: PriorityDue) -> Bool {
        guard !due.isEmpty else { return false }
        return entries.withLock { all in
            var entry = all[id] ?? Entry()
            let before = entry.due
            entry.due.lower(to: due)
            all[id] = entry
            return entry.due != before
        }
    }

    /// Replaces the workspace's entry with the file's exact due times (`then` are enqueued after
    /// they were read, in the same commit).
    func replace(_ id: WorkspaceID, with due: PriorityDue, then later: PriorityDue = .none) {
        var exact = due
        exact.lower(to: later)
        entries.withLock { all in
            var entry = all[id] ?? Entry()
            entry.due = exact
            entry.unknown = nil
            if exact.isEmpty && entry.controlDue == nil { all[id] = nil } else { all[id] = entry }
        }
    }

    /// What this process knows `pending_work` says for the workspace (it wrote or read it).
    func noteControl(_ id: WorkspaceID, due: Double?) {
        entries.withLock { all in
            if due == nil, all[id].map({ $0.due.isEmpty && $0.unknown == nil }) ?? true { all[id] = nil; return }
            all[id, default: Entry()].controlDue = due
        }
    }

    /// Merges `pending_work` rows read from `control.sqlite`: a row this process did not write
    /// (another process enqueued, or this process just started) becomes due work of unknown priority.
    /// Returns whether anything new was learnt.
    @discardableResult
    func merge(control rows: [(WorkspaceID, Double)]) -> Bool {
        entries.withLock { all in
            var learnt = false
            for (id, due) in rows {
                var entry = all[id] ?? Entry()
                if entry.controlDue == due { continue }
                entry.controlDue = due
                entry.unknown = min(entry.unknown ?? due, due)
                all[id] = entry
                learnt = true
            }
            return learnt
        }
    }

    /// Holds a workspace back until `until` (its file is offline), or forgets it (deleted: nil).
    func holdBack(_ id: WorkspaceID, until: Double?) {
        entries.withLock { all in
            guard let until else { all[id] = nil; return }
            var entry = Entry()
            entry.unknown = until
            entry.controlDue = until
            all[id] = entry
        }
    }

    func remove(_ id: WorkspaceID) { entries.withLock { $0[id] = nil } }

    /// Whether the workspace has `critical` or `normal` work due by `now` (or work of unknown
    /// priority): what the slot a workspace keeps from background jobs is for.
    func hasForegroundDue(_ id: WorkspaceID, now: Double) -> Bool {
        entries.withLock { all in
            guard let entry = all[id] else { return false }
            if let unknown = entry.unknown, unknown <= now { return true }
            return [JobPriority.critical, .normal].contains { entry.due[$0].map { $0 <= now } ?? false }
        }
    }

    /// Workspaces with work due by `now`, ranked. A class that has waited `aging` seconds past its
    /// due time counts one class higher, per `aging` seconds, so `bulk` behind a steady stream of
    /// `critical` work still starts after at most three agings.
    func due(now: Double, aging: Double) -> [DueWorkspace] {
        entries.withLock { all in
            var result: [DueWorkspace] = []
            result.reserveCapacity(all.count)
            for (id, entry) in all {
                if let unknown = entry.unknown, unknown <= now {
                    // First a claim of its critical work only; that claim reads what else is due.
                    result.append(DueWorkspace(id: id, rank: 0, through: .critical))
                    continue
                }
                var rank = Int.max
                var through = JobPriority.critical
                for priority in JobPriority.allCases {
                    guard let due = entry.due[priority], due <= now else { continue }
                    let waited = aging > 0 ? Int(min(Double(priority.rawValue), (now - due) / aging)) : 0
                    let effective = max(0, priority.rawValue - waited)
                    if effective < rank { (rank, through) = (effective, priority) } else if effective == rank { through = priority }
                }
                if rank != Int.max { result.append(DueWorkspace(id: id, rank: rank, through: through)) }
            }
            return result
        }
    }

    /// The earliest due time of anything indexed, to know how long the scheduler may sleep.
    func earliest() -> Double? {
        entries.withLock { all in
            all.values.compactMap { entry in [entry.due.earliest, entry.unknown].compactMap { $0 }.min() }.min()
        }
    }

    func entry(_ id: WorkspaceID) -> Entry? { entries.withLock { $0[id] } }
}
