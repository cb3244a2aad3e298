/// Notices the wall clock being set back (NTP stepping a clock that ran ahead, an administrator
/// correcting it, a virtual machine restored from a snapshot). Due times and lease expiries are
/// wall-clock times, so after such a step a job queued "due now" would wait until the clock has
/// caught up again: an hour set back, an hour without reviews. The job scheduler reports every
/// reading of the clock here and, when one lies more than `tolerance` before the latest reading
/// so far, moves what is scheduled back by the difference (`JobQueue.moveSchedule`).
///
/// The latest reading is kept in `control.sqlite` as well (`wall_clock`), so a clock set back
/// while the appliance was stopped is noticed at its next start; the step then measures from the
/// last recorded reading, so a job that was due at once is due at once again.
struct WallClockWatch: Sendable {
    /// Smaller steps are left alone (they delay nothing by more than this).
    static let tolerance = 2.0

    /// The latest reading so far (nil before the first).
    private(set) var latest: Double?

    init(latest: Double?) { self.latest = latest }

    /// Takes a reading; returns how far the clock was set back when it was, else nil.
    mutating func observe(_ now: Double) -> Double? {
        guard let latest else {
            self.latest = now
            return nil
        }
        if now < latest - Self.tolerance {
            self.latest = now
            return latest - now
        }
        self.latest = max(latest, now)
        return nil
    }
}
