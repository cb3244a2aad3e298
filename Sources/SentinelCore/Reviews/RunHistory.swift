import Foundation
import GRDB

/// One change of a run's state, as its events (and its start) recorded it.
public struct RunHistoryEntry: Sendable, Equatable {
    public var at: Date
    /// The run's state after the change: queued, running, completed, failed, skipped, superseded.
    public var state: String
    /// What happened, e.g. "Created by the opened trigger", "Cancelled".
    public var what: String
    /// Who asked for it, where known (a user's email for re-runs and cancels).
    public var by: String?
    /// Why it ended, where recorded ("superseded by run 12", "cancelled by …", an error).
    public var reason: String?

    public init(at: Date, state: String, what: String, by: String? = nil, reason: String? = nil) {
        self.at = at
        self.state = state
        self.what = what
        self.by = by
        self.reason = reason
    }
}

extension ReviewRunStore {
    /// The events that change a run's state, appended with the subject `run:ID`.
    public static let historyEventTypes = ["RunCreated", "RunRequested", "RunCancelled", "RunCompleted"]

    /// The run's state changes, oldest first: its creation (with who requested it, for a re-run
    /// or a run asked for through the API), its start (the run's `started_at`: starting appends
    /// no event) and how it ended (with the reason, and who cancelled it). Nil for an unknown run.
    public static func history(ofRun runID: Int64, in db: Database) throws -> [RunHistoryEntry]? {
        guard let run = try find(runID, in: db) else { return nil }
        let events = try EventLog.events(subject: "run:\(runID)", types: historyEventTypes, in: db)
        var entries: [RunHistoryEntry] = []
        for event in events {
            let at = ISO8601.date(event.occurredAt) ?? Date(timeIntervalSince1970: run.createdAt)
            let payload = (try? JSONSerialization.jsonObject(with: Data(event.data.utf8))) as? [String: Any] ?? [:]
            let by = payload["by"] as? String
            switch event.type {
            case "RunCreated":
                let trigger = payload["trigger"] as? String ?? run.trigger
                let what = trigger.hasPrefix("manual:") ? "Created on request" : "Created by the \(trigger) trigger"
                entries.append(RunHistoryEntry(at: at, state: RunState.queued.rawValue, what: what))
            case "RunRequested":
                // Appended with the run's creation: who asked for it.
                if let last = entries.indices.last, entries[last].what == "Created on request", entries[last].by == nil {
                    entries[last].by = by
                } else {
                    entries.append(RunHistoryEntry(at: at, state: RunState.queued.rawValue, what: "Requested", by: by))
                }
            case "RunCancelled":
                // Appended after the `RunCompleted` (skipped) of the same transaction: who cancelled it.
                if let last = entries.indices.last, entries[last].state == RunState.skipped.rawValue, entries[last].by == nil {
                    entries[last].what = "Cancelled"
                    entries[last].by = by
                } else {
                    entries.append(RunHistoryEntry(at: at, state: RunState.skipped.rawValue, what: "Cancelled", by: by))
                }
            default:  // RunCompleted
                let state = payload["state"] as? String ?? run.state.rawValue
                var what = "Ended \(state)"
                if state == RunState.completed.rawValue, let findings = payload["findings"] as? Int {
                    what = "Completed with \(findings) finding\(findings == 1 ? "" : "s")"
                }
                entries.append(RunHistoryEntry(at: at, state: state, what: what, reason: payload["reason"] as? String))
            }
        }
        if let started = run.startedAt {
            // A run starts after it is created and before it ends (it starts only while not ended).
            let index = entries.firstIndex { RunState(rawValue: $0.state)?.isFinal ?? true } ?? entries.endIndex
            entries.insert(RunHistoryEntry(at: Date(timeIntervalSince1970: started), state: RunState.running.rawValue, what: "Started"), at: index)
        }
        return entries
    }
}
