import GRDB

/// `control.sqlite`: the supervisor's registry. It never holds tenant content, only what is needed
/// to route to a workspace file and to know, without opening it, whether it has due work.
enum ControlSchema {
    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("0001_workspaces") { db in
            try db.execute(sql: """
                CREATE TABLE workspaces (
                    id TEXT PRIMARY KEY NOT NULL,
                    name TEXT NOT NULL UNIQUE,
                    plan TEXT NOT NULL DEFAULT 'free',
                    created_at REAL NOT NULL
                ) STRICT;
                CREATE TABLE pending_work (
                    workspace_id TEXT PRIMARY KEY NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
                    due_at REAL NOT NULL
                ) STRICT;
                CREATE INDEX pending_work_due ON pending_work(due_at);
                """)
        }
        return m
    }
}

/// A workspace file: everything one tenant owns. Later domains add their own migrations here.
enum WorkspaceSchema {
    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("0001_jobs_events") { db in
            try db.execute(sql: """
                CREATE TABLE workspace_meta (
                    key TEXT PRIMARY KEY NOT NULL,
                    value TEXT NOT NULL
                ) STRICT;

                CREATE TABLE jobs (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    kind TEXT NOT NULL,
                    payload BLOB NOT NULL,
                    priority INTEGER NOT NULL CHECK (priority BETWEEN 0 AND 3),
                    state TEXT NOT NULL CHECK (state IN ('queued','running','succeeded','dead','cancelled')),
                    attempts INTEGER NOT NULL DEFAULT 0,
                    max_attempts INTEGER NOT NULL,
                    run_at REAL NOT NULL,
                    lease_owner TEXT,
                    lease_expires_at REAL,
                    idempotency_key TEXT,
                    correlation_id TEXT,
                    last_error TEXT,
                    created_at REAL NOT NULL,
                    started_at REAL,
                    finished_at REAL
                ) STRICT;
                CREATE UNIQUE INDEX jobs_idempotency ON jobs(idempotency_key) WHERE idempotency_key IS NOT NULL;
                CREATE INDEX jobs_due ON jobs(priority, run_at) WHERE state = 'queued';
                CREATE INDEX jobs_leases ON jobs(lease_expires_at) WHERE state = 'running';
                CREATE INDEX jobs_finished ON jobs(finished_at) WHERE state IN ('succeeded','cancelled');

                CREATE TABLE events (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    id TEXT NOT NULL UNIQUE,
                    type TEXT NOT NULL,
                    occurred_at TEXT NOT NULL,
                    correlation_id TEXT,
                    subject TEXT,
                    data TEXT NOT NULL
                ) STRICT;
                CREATE INDEX events_type ON events(type, seq);
                CREATE TRIGGER events_no_update BEFORE UPDATE ON events
                BEGIN SELECT RAISE(ABORT, 'events are append-only: UPDATE refused'); END;
                CREATE TRIGGER events_no_delete BEFORE DELETE ON events
                BEGIN SELECT RAISE(ABORT, 'events are append-only: DELETE refused'); END;
                """)
        }
        return m
    }
}
