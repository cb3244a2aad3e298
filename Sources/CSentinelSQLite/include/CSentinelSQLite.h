#ifndef CSENTINEL_SQLITE_H
#define CSENTINEL_SQLITE_H

#include <sqlite3.h>

/// `sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, 0)`: the connection's close leaves
/// the write-ahead log as it is instead of copying it into the database file. Swift cannot call
/// the variadic `sqlite3_db_config` itself. Returns SQLite's result code.
static inline int sentinel_sqlite3_skip_checkpoint_on_close(sqlite3 *db) {
    return sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)0);
}

/// `sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, on, &was)`: defensive mode refuses
/// `PRAGMA writable_schema`, which a schema edit that copies no row needs (`SchemaEdit`). `on` -1
/// only reads the setting into `was`. Returns SQLite's result code.
static inline int sentinel_sqlite3_defensive(sqlite3 *db, int on, int *was) {
    return sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, on, was);
}

#endif
