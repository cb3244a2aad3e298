// The target's other functions are static inline in include/CSentinelSQLite.h.
#include "CSentinelSQLite.h"

/// Runs when the program loads, before anything can open a database: SQLite's memory statistics
/// go off (`SQLITE_CONFIG_MEMSTATUS`). With them on, every allocation SQLite makes takes one
/// process-wide mutex to count bytes, and the writers of a hundred workspace files on as many
/// threads queued on it (`perf`: 8 % of the queue benchmark's samples in `futex` lock waits and
/// wakes). Sentinel reads no SQLite memory statistic and sets no soft heap limit, which needs them.
/// `sqlite3_config` may only be called before SQLite initialises; here it always is.
__attribute__((constructor)) static void sentinel_sqlite3_configure(void) {
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}
