import CSentinelSQLite
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
        m.registerMigration("0002_integrations") { db in
            // Routing only: which workspace an integration (and so a webhook URL) belongs to.
            try db.execute(sql: """
                CREATE TABLE integrations (
                    id TEXT PRIMARY KEY NOT NULL,
                    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
                    kind TEXT NOT NULL,
                    created_at REAL NOT NULL
                ) STRICT;
                CREATE INDEX integrations_workspace ON integrations(workspace_id);
                """)
        }
        m.registerMigration("0003_export_watermarks") { db in
            // The last event of each workspace that a finished analytics export carries.
            try db.execute(sql: """
                CREATE TABLE export_watermarks (
                    workspace_id TEXT PRIMARY KEY NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
                    last_seq INTEGER NOT NULL,
                    export_id TEXT NOT NULL,
                    updated_at REAL NOT NULL
                ) STRICT;
                """)
        }
        m.registerMigration("0004_identity") { db in
            // Users and credentials are appliance-wide; memberships say who may enter which workspace.
            try db.execute(sql: """
                CREATE TABLE users (
                    id TEXT PRIMARY KEY NOT NULL,
                    email TEXT NOT NULL UNIQUE,
                    password_hash TEXT NOT NULL,
                    is_admin INTEGER NOT NULL DEFAULT 0,
                    created_at REAL NOT NULL
                ) STRICT;
                CREATE TABLE sessions (
                    id TEXT PRIMARY KEY NOT NULL,
                    token_hash TEXT NOT NULL UNIQUE,
                    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                    created_at REAL NOT NULL,
                    expires_at REAL NOT NULL
                ) STRICT;
                CREATE TABLE api_tokens (
                    id TEXT PRIMARY KEY NOT NULL,
                    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                    name TEXT NOT NULL,
                    token_hash TEXT NOT NULL UNIQUE,
                    prefix TEXT NOT NULL,
                    scopes TEXT NOT NULL,
                    created_at REAL NOT NULL,
                    expires_at REAL,
                    last_used_at REAL,
                    revoked_at REAL
                ) STRICT;
                CREATE INDEX api_tokens_user ON api_tokens(user_id);
                CREATE TABLE memberships (
                    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
                    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                    role TEXT NOT NULL CHECK (role IN ('viewer','member','admin','owner')),
                    created_at REAL NOT NULL,
                    PRIMARY KEY (workspace_id, user_id)
                ) STRICT;
                CREATE INDEX memberships_user ON memberships(user_id);
                """)
        }
        m.registerMigration("0005_lifecycle_audit") { db in
            // Users can be disabled; appliance-wide changes (users, workspaces) are audited here,
            // append-only like a workspace's events; a deleted workspace's integrations are
            // remembered so their webhooks answer 410 Gone rather than 404.
            try db.execute(sql: """
                ALTER TABLE users ADD COLUMN disabled_at REAL;
                CREATE TABLE audit_events (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    id TEXT NOT NULL UNIQUE,
                    type TEXT NOT NULL,
                    occurred_at TEXT NOT NULL,
                    actor TEXT NOT NULL,
                    subject TEXT NOT NULL,
                    data TEXT NOT NULL
                ) STRICT;
                CREATE INDEX audit_events_subject ON audit_events(subject, seq);
                CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
                BEGIN SELECT RAISE(ABORT, 'audit events are append-only: UPDATE refused'); END;
                CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
                BEGIN SELECT RAISE(ABORT, 'audit events are append-only: DELETE refused'); END;
                CREATE TABLE retired_integrations (
                    id TEXT PRIMARY KEY NOT NULL,
                    workspace_id TEXT NOT NULL,
                    retired_at REAL NOT NULL
                ) STRICT;
                """)
        }
        m.registerMigration("0006_operational_signals") { db in
            // What `sentinel doctor` (offline, another process) needs from a running server:
            // webhook deliveries refused for their signature or token, per integration, and AI
            // providers whose circuit is open. Written on those events only (rare), never per request.
            try db.execute(sql: """
                CREATE TABLE integration_auth_failures (
                    integration_id TEXT PRIMARY KEY NOT NULL,
                    workspace_id TEXT NOT NULL,
                    failures INTEGER NOT NULL,
                    last_failed_at REAL NOT NULL
                ) STRICT;
                CREATE TABLE provider_circuits (
                    workspace_id TEXT NOT NULL,
                    provider_id TEXT NOT NULL,
                    opened_at REAL NOT NULL,
                    retry_at REAL NOT NULL,
                    PRIMARY KEY (workspace_id, provider_id)
                ) STRICT;
                """)
        }
        m.registerMigration("0007_wall_clock") { db in
            // The latest wall-clock time the job scheduler saw, so that a clock set back while
            // the appliance was stopped is noticed at its next start (`WallClockWatch`).
            try db.execute(sql: """
                CREATE TABLE wall_clock (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    latest_seen_at REAL NOT NULL
                ) STRICT;
                """)
        }
        m.registerMigration("0008_integration_revision") { db in
            // Counts rotations and removals of integrations, from the server or the command line:
            // a running server reads it about once a second and drops the decrypted integrations it
            // holds when it moved (`IntegrationCache`).
            try db.execute(sql: """
                CREATE TABLE integration_revision (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    revision INTEGER NOT NULL
                ) STRICT;
                INSERT INTO integration_revision (id, revision) VALUES (1, 0);
                """)
        }
        m.registerMigration("0009_emails_composed") { db in
            // Emails are compared in Unicode's composed form (NFC) from now on: `jos\u{E9}` and
            // `jose\u{301}` are one address, not two accounts that look alike. An address stored
            // decomposed is rewritten unless another account already holds its composed form.
            let users = try Row.fetchAll(db, sql: "SELECT id, email FROM users")
            for user in users {
                let email: String = user["email"]
                let composed = IdentityService.normalizedEmail(email)
                guard composed.utf8.elementsEqual(email.utf8) == false,
                      try Int.fetchOne(db, sql: "SELECT 1 FROM users WHERE email = ?", arguments: [composed]) == nil else { continue }
                try db.execute(sql: "UPDATE users SET email = ? WHERE id = ?", arguments: [composed, user["id"] as DatabaseValue])
            }
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
        m.registerMigration("0002_source_control_and_reviews") { db in
            try db.execute(sql: """
                CREATE TABLE workspace_settings (
                    key TEXT PRIMARY KEY NOT NULL,
                    value TEXT NOT NULL
                ) STRICT;

                CREATE TABLE integrations (
                    id TEXT PRIMARY KEY NOT NULL,
                    kind TEXT NOT NULL,
                    app_id INTEGER,
                    api_url TEXT NOT NULL,
                    ca_bundle TEXT,
                    private_key BLOB,
                    webhook_secret BLOB NOT NULL,
                    bot_login TEXT,
                    created_at REAL NOT NULL
                ) STRICT;

                CREATE TABLE repositories (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    integration_id TEXT NOT NULL REFERENCES integrations(id),
                    external_id INTEGER NOT NULL,
                    full_name TEXT NOT NULL,
                    installation_id INTEGER,
                    enabled INTEGER NOT NULL DEFAULT 1,
                    removed INTEGER NOT NULL DEFAULT 0,
                    registered_at REAL NOT NULL,
                    UNIQUE (integration_id, external_id)
                ) STRICT;

                CREATE TABLE deliveries (
                    id TEXT PRIMARY KEY NOT NULL,
                    integration_id TEXT NOT NULL,
                    event TEXT NOT NULL,
                    action TEXT,
                    payload BLOB NOT NULL,
                    correlation_id TEXT,
                    received_at REAL NOT NULL,
                    processed_at REAL,
                    outcome TEXT
                ) STRICT;

                CREATE TABLE review_runs (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    repository_id INTEGER NOT NULL REFERENCES repositories(id),
                    pr_number INTEGER NOT NULL,
                    head_sha TEXT NOT NULL,
                    base_sha TEXT,
                    trigger TEXT NOT NULL,
                    full_review INTEGER NOT NULL DEFAULT 0,
                    state TEXT NOT NULL CHECK (state IN ('queued','running','completed','failed','skipped','superseded')),
                    reason TEXT,
                    correlation_id TEXT,
                    created_at REAL NOT NULL,
                    started_at REAL,
                    finished_at REAL,
                    check_run_id TEXT,
                    review_id TEXT,
                    conclusion TEXT,
                    files_reviewed INTEGER,
                    files_total INTEGER,
                    policy_snapshot TEXT,
                    policy_sha256 TEXT,
                    policy_versions TEXT,
                    summary TEXT,
                    UNIQUE (repository_id, pr_number, head_sha, trigger)
                ) STRICT;
                CREATE INDEX review_runs_pr ON review_runs(repository_id, pr_number, state);

                CREATE TABLE findings (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    run_id INTEGER NOT NULL REFERENCES review_runs(id),
                    repository_id INTEGER NOT NULL,
                    pr_number INTEGER NOT NULL,
                    path TEXT NOT NULL,
                    start_line INTEGER,
                    line INTEGER,
                    side TEXT,
                    severity TEXT NOT NULL,
                    category TEXT NOT NULL,
                    title TEXT NOT NULL,
                    body TEXT NOT NULL,
                    suggestion TEXT,
                    source TEXT NOT NULL,
                    fingerprint TEXT NOT NULL,
                    posted INTEGER NOT NULL DEFAULT 0
                ) STRICT;
                CREATE INDEX findings_pr ON findings(repository_id, pr_number, fingerprint);

                CREATE TABLE pull_requests (
                    repository_id INTEGER NOT NULL REFERENCES repositories(id),
                    pr_number INTEGER NOT NULL,
                    last_reviewed_sha TEXT,
                    closed INTEGER NOT NULL DEFAULT 0,
                    PRIMARY KEY (repository_id, pr_number)
                ) STRICT;

                CREATE TABLE policy_versions (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    scope TEXT NOT NULL,
                    "values" TEXT NOT NULL,
                    locks TEXT NOT NULL,
                    created_by TEXT NOT NULL,
                    created_at REAL NOT NULL
                ) STRICT;
                CREATE INDEX policy_versions_scope ON policy_versions(scope, id);
                CREATE TRIGGER policy_versions_no_update BEFORE UPDATE ON policy_versions
                BEGIN SELECT RAISE(ABORT, 'policy versions are immutable'); END;

                CREATE TABLE usage_records (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    run_id INTEGER REFERENCES review_runs(id),
                    call_key TEXT NOT NULL UNIQUE,
                    provider TEXT NOT NULL,
                    model TEXT NOT NULL,
                    input_tokens INTEGER NOT NULL,
                    output_tokens INTEGER NOT NULL,
                    cost_usd REAL NOT NULL DEFAULT 0,
                    duration_ms INTEGER NOT NULL DEFAULT 0,
                    recorded_at REAL NOT NULL
                ) STRICT;
                """)
        }
        m.registerMigration("0003_ai_providers") { db in
            try db.execute(sql: """
                CREATE TABLE ai_providers (
                    id TEXT PRIMARY KEY NOT NULL,
                    kind TEXT NOT NULL,
                    model TEXT NOT NULL,
                    base_url TEXT,
                    api_version TEXT,
                    deployment TEXT,
                    api_key BLOB,
                    key_suffix TEXT,
                    enabled INTEGER NOT NULL DEFAULT 1,
                    priority INTEGER NOT NULL DEFAULT 100,
                    created_at REAL NOT NULL,
                    updated_at REAL NOT NULL
                ) STRICT;
                """)
        }
        m.registerMigration("0004_analytics_rollups") { db in
            // Daily per-repository rollups folded from the events log; `rollup_watermark` is the last
            // event folded, advanced in the same transaction as the rollup rows (exactly once).
            try db.execute(sql: """
                CREATE TABLE rollup_watermark (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    last_seq INTEGER NOT NULL
                ) STRICT;
                INSERT INTO rollup_watermark (id, last_seq) VALUES (1, 0);
                CREATE TABLE rollup_daily (
                    day TEXT NOT NULL,
                    repository TEXT NOT NULL,
                    runs INTEGER NOT NULL DEFAULT 0,
                    runs_completed INTEGER NOT NULL DEFAULT 0,
                    runs_failed INTEGER NOT NULL DEFAULT 0,
                    runs_skipped INTEGER NOT NULL DEFAULT 0,
                    runs_superseded INTEGER NOT NULL DEFAULT 0,
                    findings INTEGER NOT NULL DEFAULT 0,
                    ai_calls INTEGER NOT NULL DEFAULT 0,
                    input_tokens INTEGER NOT NULL DEFAULT 0,
                    output_tokens INTEGER NOT NULL DEFAULT 0,
                    cost_micro_usd INTEGER NOT NULL DEFAULT 0,
                    PRIMARY KEY (day, repository)
                ) STRICT;
                CREATE TABLE rollup_daily_findings (
                    day TEXT NOT NULL,
                    repository TEXT NOT NULL,
                    severity TEXT NOT NULL,
                    category TEXT NOT NULL,
                    findings INTEGER NOT NULL,
                    PRIMARY KEY (day, repository, severity, category)
                ) STRICT;
                CREATE TABLE rollup_run_durations (
                    event_seq INTEGER PRIMARY KEY,
                    day TEXT NOT NULL,
                    repository TEXT NOT NULL,
                    duration_ms INTEGER NOT NULL
                ) STRICT;
                CREATE INDEX rollup_run_durations_key ON rollup_run_durations(day, repository, duration_ms);
                """)
        }
        m.registerMigration("0005_teams") { db in
            // Teams group a workspace's members (user ids from control.sqlite).
            try db.execute(sql: """
                CREATE TABLE teams (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    name TEXT NOT NULL UNIQUE,
                    created_at REAL NOT NULL
                ) STRICT;
                CREATE TABLE team_members (
                    team_id INTEGER NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
                    user_id TEXT NOT NULL,
                    PRIMARY KEY (team_id, user_id)
                ) STRICT;
                """)
        }
        m.registerMigration("0006_review_run_prepared") { db in
            // The review a run will post (JSON), stored before anything is posted: a retried job
            // posts it as is instead of calling the model again.
            try db.execute(sql: "ALTER TABLE review_runs ADD COLUMN prepared_review TEXT")
        }
        m.registerMigration("0007_reconcile") { db in
            // The catch-up sweep's state per integration: the newest webhook delivery it has read
            // (`delivery_cursor`) and when the platform's rate limit lets it sweep again; and each
            // redelivery it asked for, once per delivery guid.
            try db.execute(sql: """
                CREATE TABLE reconcile_state (
                    integration_id TEXT PRIMARY KEY NOT NULL,
                    delivery_cursor TEXT,
                    resume_at REAL,
                    last_sweep_at REAL,
                    last_outcome TEXT
                ) STRICT;
                CREATE TABLE redelivery_requests (
                    guid TEXT PRIMARY KEY NOT NULL,
                    integration_id TEXT NOT NULL,
                    delivery_id TEXT NOT NULL,
                    event TEXT NOT NULL,
                    requested_at REAL NOT NULL,
                    outcome TEXT NOT NULL
                ) STRICT;
                """)
        }
        m.registerMigration("0008_notification_channels") { db in
            // Notification channels (destination sealed with the master key, a redacted hint for
            // display) and the notices waiting for their channel's next coalesced message.
            try db.execute(sql: """
                CREATE TABLE notification_channels (
                    id TEXT PRIMARY KEY NOT NULL,
                    kind TEXT NOT NULL,
                    name TEXT NOT NULL,
                    destination BLOB NOT NULL,
                    destination_hint TEXT NOT NULL,
                    topics TEXT NOT NULL,
                    min_severity TEXT,
                    created_at REAL NOT NULL
                ) STRICT;
                CREATE TABLE notification_pending (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    channel_id TEXT NOT NULL REFERENCES notification_channels(id) ON DELETE CASCADE,
                    topic TEXT NOT NULL,
                    text TEXT NOT NULL,
                    event_seq INTEGER NOT NULL,
                    created_at REAL NOT NULL,
                    UNIQUE (channel_id, event_seq)
                ) STRICT;
                """)
        }
        m.registerMigration("0010_job_trace_context") { db in
            // The W3C traceparent of the span that enqueued a job: the job's span continues it.
            try db.execute(sql: "ALTER TABLE jobs ADD COLUMN trace_context TEXT")
        }
        m.registerMigration("0011_events_subject") { db in
            // The events about one subject (a run's state history on its console page).
            try db.execute(sql: "CREATE INDEX events_subject ON events(subject, seq) WHERE subject IS NOT NULL")
        }
        m.registerMigration("0012_usage_months") { db in
            // The spend and plan checks before every model call read this month's AI usage: a
            // running total per calendar month (UTC), kept by a trigger in the transaction that
            // records a call, instead of a sum over every call of the month (a scan of
            // `usage_records`, which grows all month). And the plan's reviews-per-month count
            // reads this month's runs from an index instead of every run there ever was.
            // `usage_records` is an append-only ledger (nothing updates or deletes its rows; a
            // workspace's usage goes with its file), so one trigger on insert keeps the totals:
            // every trigger is parsed again by each cold open of the file, and update and delete
            // triggers cost a cold open about a tenth more (measured with Python's `sqlite3`).
            try db.execute(sql: """
                CREATE TABLE usage_months (
                    month TEXT PRIMARY KEY NOT NULL,
                    tokens INTEGER NOT NULL,
                    cost_usd REAL NOT NULL,
                    calls INTEGER NOT NULL
                ) STRICT, WITHOUT ROWID;
                INSERT INTO usage_months (month, tokens, cost_usd, calls)
                    SELECT strftime('%Y-%m', recorded_at, 'unixepoch'), sum(input_tokens + output_tokens), sum(cost_usd), count(*)
                    FROM usage_records GROUP BY 1;
                CREATE TRIGGER usage_months_insert AFTER INSERT ON usage_records BEGIN
                    INSERT INTO usage_months (month, tokens, cost_usd, calls)
                    VALUES (strftime('%Y-%m', NEW.recorded_at, 'unixepoch'), NEW.input_tokens + NEW.output_tokens, NEW.cost_usd, 1)
                    ON CONFLICT (month) DO UPDATE SET tokens = tokens + excluded.tokens, cost_usd = cost_usd + excluded.cost_usd,
                                                      calls = calls + 1;
                END;
                CREATE INDEX review_runs_started ON review_runs(started_at, state);
                """)
        }
        m.registerMigration("0013_run_children") { db in
            // A run's findings and AI calls by run: completing a run counts its findings, posting
            // its review replaces them, and the run's page lists both. Without these each was a
            // scan of every finding (or call) the workspace ever recorded.
            try db.execute(sql: """
                CREATE INDEX findings_run ON findings(run_id);
                CREATE INDEX usage_records_run ON usage_records(run_id);
                """)
        }
        m.registerMigration("0014_delivery_payload_encoding") { db in
            // Webhook bodies are stored compressed (`DeliveryPayload`); rows stored before are as received.
            try db.execute(sql: """
                ALTER TABLE deliveries ADD COLUMN payload_encoding TEXT NOT NULL DEFAULT 'identity'
                    CHECK (payload_encoding IN ('identity', 'zlib'));
                ALTER TABLE deliveries ADD COLUMN payload_bytes INTEGER;
                """)
        }
        m.registerMigration("0015_jobs_finished_index") { db in
            // Every job's outcome inserted a row into this index, one more page written into the
            // log per job (about a fifth of a finished job's pages), for retention's daily prune
            // alone, which now walks the table by id (`JobQueue.prune`).
            try db.execute(sql: "DROP INDEX jobs_finished")
        }
        m.registerMigration("0016_delivery_payload_zstd") { db in
            // Webhook bodies are stored zstd-compressed (`DeliveryPayload`); `zlib` rows stay. The
            // values as equalities: SQLite codes a constant `IN` list of three or more values as a
            // temporary b-tree, built for every row the statement writes.
            try SchemaEdit.replaceCheck(in: db, table: "deliveries",
                                        from: "CHECK (payload_encoding IN ('identity', 'zlib'))",
                                        to: "CHECK (payload_encoding = 'identity' OR payload_encoding = 'zlib' OR payload_encoding = 'zstd')")
        }
        m.registerMigration("0017_state_checks") { db in
            // The same values as equalities (see 0016): the queue's claim and outcome, and a
            // review run's every change of state, built a temporary b-tree of the values per row.
            try SchemaEdit.replaceCheck(in: db, table: "jobs",
                                        from: "CHECK (state IN ('queued','running','succeeded','dead','cancelled'))",
                                        to: "CHECK (state = 'queued' OR state = 'running' OR state = 'succeeded' OR state = 'dead' OR state = 'cancelled')")
            try SchemaEdit.replaceCheck(in: db, table: "review_runs",
                                        from: "CHECK (state IN ('queued','running','completed','failed','skipped','superseded'))",
                                        to: "CHECK (state = 'queued' OR state = 'running' OR state = 'completed' OR state = 'failed' OR state = 'skipped' OR state = 'superseded')")
        }
        return m
    }
}

/// Schema changes SQLite's `ALTER TABLE` cannot make, made the way SQLite documents for changes
/// that leave every stored row as it is ("Making Other Kinds Of Table Schema Changes" in
/// https://sqlite.org/lang_altertable.html: edit the table's definition in `sqlite_schema` and
/// bump `schema_version`, in one transaction). Rebuilding the table instead would copy every row
/// (every stored webhook body) when a workspace file is upgraded.
enum SchemaEdit {
    /// Replaces a `CHECK` clause of `table` by one that admits every value it admitted (the same
    /// values written another way, or more), so no stored row can violate it. Throws
    /// `StorageError.migrationFailed` (and changes nothing) unless the table's definition holds
    /// `old` exactly once.
    static func replaceCheck(in db: Database, table: String, from old: String, to new: String) throws {
        guard let definition = try String.fetchOne(db, sql: "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?", arguments: [table]),
              definition.components(separatedBy: old).count == 2 else {
            throw StorageError.migrationFailed("the \(table) table's definition does not hold \(old) once; it was changed outside Sentinel")
        }
        let version = try Int.fetchOne(db, sql: "PRAGMA schema_version") ?? 0
        // A SQLite built to start connections in defensive mode refuses `writable_schema`: off
        // for the edit, as it was after.
        var defensive: Int32 = 0
        _ = sentinel_sqlite3_defensive(db.sqliteConnection, -1, &defensive)
        if defensive != 0 { _ = sentinel_sqlite3_defensive(db.sqliteConnection, 0, nil) }
        defer { if defensive != 0 { _ = sentinel_sqlite3_defensive(db.sqliteConnection, 1, nil) } }
        try db.execute(sql: "PRAGMA writable_schema = ON")
        do {
            try db.execute(sql: "UPDATE sqlite_schema SET sql = ? WHERE type = 'table' AND name = ?",
                           arguments: [definition.replacingOccurrences(of: old, with: new), table])
            try db.execute(sql: "PRAGMA schema_version = \(version + 1)")
        } catch {
            try? db.execute(sql: "PRAGMA writable_schema = OFF")
            throw error
        }
        try db.execute(sql: "PRAGMA writable_schema = OFF")
        db.clearSchemaCache()
        // The new definition must parse: reading the table through it reloads the schema.
        _ = try Row.fetchOne(db, sql: "SELECT * FROM \(table) LIMIT 0")
    }
}
