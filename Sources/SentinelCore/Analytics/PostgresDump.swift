import Foundation

/// The SQL around the `COPY` data of an analytics dump. Loading it with
/// `psql -v ON_ERROR_STOP=1 -f FILE` is one transaction: schema and tables are created if
/// missing, events are inserted with `ON CONFLICT DO NOTHING` on (workspace, event id) (a file
/// loaded twice, or two dumps carrying the same events after a crash, change nothing; an event
/// that reuses the sequence number of one lost to a workspace restore is still a new event), and
/// the central rollups of every
/// (workspace, day, repository) that gained events are recomputed from `sentinel.events`, with the
/// same definitions as the workspace files' own rollups (`Rollups`).
enum PostgresDump {
    static let columns = "workspace_id, seq, event_id, type, occurred_at, subject, correlation_id, data"

    static func header(exportID: String, createdAt: String) -> String {
        """
        -- Sentinel analytics export \(exportID), created \(createdAt).
        -- Load with: psql -v ON_ERROR_STOP=1 -f \(exportID).sql   (idempotent; see appliance/analytics/README.md)
        \\set ON_ERROR_STOP on
        SET client_encoding = 'UTF8';
        SET standard_conforming_strings = on;
        SET client_min_messages = warning;
        BEGIN;
        -- Every object is created only when it is missing: after the first load, a loading role
        -- with INSERT, DELETE and SELECT on the tables (and USAGE on the schema) loads a dump.
        DO $$
        BEGIN
            IF current_setting('server_encoding') <> 'UTF8' THEN
                RAISE EXCEPTION 'this database''s encoding is %, which cannot hold all of Sentinel''s UTF-8 text: load into a database created with ENCODING ''UTF8''',
                    current_setting('server_encoding');
            END IF;
            IF to_regnamespace('sentinel') IS NULL THEN
                CREATE SCHEMA sentinel;
            END IF;
            IF to_regclass('sentinel.events') IS NULL THEN
                CREATE TABLE sentinel.events (
                    workspace_id text NOT NULL,
                    seq bigint NOT NULL,
                    event_id text NOT NULL,
                    type text NOT NULL,
                    occurred_at timestamptz NOT NULL,
                    day date NOT NULL,
                    repository text NOT NULL,
                    subject text,
                    correlation_id text,
                    data jsonb NOT NULL,
                    export_id text NOT NULL,
                    platform text NOT NULL DEFAULT '',
                    PRIMARY KEY (workspace_id, event_id)
                );
            END IF;
            -- Tables created by earlier dumps have no platform column ('' for their events).
            IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'sentinel.events'::regclass AND attname = 'platform' AND NOT attisdropped) THEN
                ALTER TABLE sentinel.events ADD COLUMN platform text NOT NULL DEFAULT '';
            END IF;
            -- Tables created by earlier dumps were keyed by (workspace_id, seq); a restored workspace
            -- reuses sequence numbers, so the event id is the identity.
            IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'sentinel.events'::regclass AND contype = 'p'
                       AND pg_get_constraintdef(oid) = 'PRIMARY KEY (workspace_id, seq)') THEN
                EXECUTE 'ALTER TABLE sentinel.events DROP CONSTRAINT ' || quote_ident((SELECT conname FROM pg_constraint
                    WHERE conrelid = 'sentinel.events'::regclass AND contype = 'p'));
                ALTER TABLE sentinel.events ADD PRIMARY KEY (workspace_id, event_id);
            END IF;
            IF to_regclass('sentinel.events_workspace_seq') IS NULL THEN
                CREATE INDEX events_workspace_seq ON sentinel.events (workspace_id, seq);
            END IF;
            IF to_regclass('sentinel.events_rollup_key') IS NULL THEN
                CREATE INDEX events_rollup_key ON sentinel.events (workspace_id, day, repository)
                    WHERE type IN ('RunCompleted', 'UsageRecorded');
            END IF;
            IF to_regclass('sentinel.events_type_time') IS NULL THEN
                CREATE INDEX events_type_time ON sentinel.events (type, occurred_at);
            END IF;
            IF to_regclass('sentinel.daily_repository_rollups') IS NULL THEN
                CREATE TABLE sentinel.daily_repository_rollups (
                    workspace_id text NOT NULL,
                    day date NOT NULL,
                    repository text NOT NULL,
                    runs bigint NOT NULL,
                    runs_completed bigint NOT NULL,
                    runs_failed bigint NOT NULL,
                    runs_skipped bigint NOT NULL,
                    runs_superseded bigint NOT NULL,
                    findings bigint NOT NULL,
                    ai_calls bigint NOT NULL,
                    input_tokens bigint NOT NULL,
                    output_tokens bigint NOT NULL,
                    cost_usd numeric(20, 6) NOT NULL,
                    duration_p50_ms bigint,
                    duration_p95_ms bigint,
                    PRIMARY KEY (workspace_id, day, repository)
                );
            END IF;
            IF to_regclass('sentinel.daily_findings_rollups') IS NULL THEN
                CREATE TABLE sentinel.daily_findings_rollups (
                    workspace_id text NOT NULL,
                    day date NOT NULL,
                    repository text NOT NULL,
                    severity text NOT NULL,
                    category text NOT NULL,
                    findings bigint NOT NULL,
                    PRIMARY KEY (workspace_id, day, repository, severity, category)
                );
            END IF;
            IF to_regclass('sentinel.exports') IS NULL THEN
                CREATE TABLE sentinel.exports (
                    export_id text PRIMARY KEY,
                    created_at timestamptz NOT NULL,
                    events_in_file bigint NOT NULL,
                    first_loaded_at timestamptz NOT NULL DEFAULT now()
                );
            END IF;
        END $$;
        CREATE TEMP TABLE sentinel_incoming (
            workspace_id text, seq bigint, event_id text, type text, occurred_at text, subject text, correlation_id text, data text
        ) ON COMMIT DROP;
        COPY sentinel_incoming (\(columns)) FROM stdin;

        """
    }

    static func footer(exportID: String, createdAt: String, events: Int) -> String {
        let id = literal(exportID)
        return """
        \\.
        CREATE TEMP TABLE sentinel_touched (workspace_id text, day date, repository text) ON COMMIT DROP;
        WITH inserted AS (
            INSERT INTO sentinel.events (workspace_id, seq, event_id, type, occurred_at, day, repository, subject, correlation_id, data, export_id,
                                         platform)
            SELECT workspace_id, seq, event_id, type, occurred_at::timestamptz, (occurred_at::timestamptz AT TIME ZONE 'UTC')::date,
                   coalesce(data::jsonb ->> 'repository', ''), subject, correlation_id, data::jsonb, \(id),
                   coalesce(data::jsonb ->> 'platform', '')
            FROM sentinel_incoming
            ON CONFLICT (workspace_id, event_id) DO NOTHING
            RETURNING workspace_id, type, day, repository
        )
        INSERT INTO sentinel_touched
        SELECT DISTINCT workspace_id, day, repository FROM inserted WHERE type IN ('RunCompleted', 'UsageRecorded');
        DELETE FROM sentinel.daily_repository_rollups r USING sentinel_touched t
            WHERE r.workspace_id = t.workspace_id AND r.day = t.day AND r.repository = t.repository;
        DELETE FROM sentinel.daily_findings_rollups r USING sentinel_touched t
            WHERE r.workspace_id = t.workspace_id AND r.day = t.day AND r.repository = t.repository;
        INSERT INTO sentinel.daily_repository_rollups
        SELECT t.workspace_id, t.day, t.repository,
            count(*) FILTER (WHERE e.type = 'RunCompleted'),
            count(*) FILTER (WHERE e.type = 'RunCompleted' AND e.data ->> 'state' = 'completed'),
            count(*) FILTER (WHERE e.type = 'RunCompleted' AND e.data ->> 'state' = 'failed'),
            count(*) FILTER (WHERE e.type = 'RunCompleted' AND e.data ->> 'state' = 'skipped'),
            count(*) FILTER (WHERE e.type = 'RunCompleted' AND e.data ->> 'state' = 'superseded'),
            coalesce(sum((e.data ->> 'findings')::bigint) FILTER (WHERE e.type = 'RunCompleted'), 0),
            count(*) FILTER (WHERE e.type = 'UsageRecorded'),
            coalesce(sum((e.data ->> 'input_tokens')::bigint) FILTER (WHERE e.type = 'UsageRecorded'), 0),
            coalesce(sum((e.data ->> 'output_tokens')::bigint) FILTER (WHERE e.type = 'UsageRecorded'), 0),
            coalesce(sum(round((e.data ->> 'cost_usd')::numeric, 6)) FILTER (WHERE e.type = 'UsageRecorded'), 0),
            percentile_disc(0.5) WITHIN GROUP (ORDER BY (e.data ->> 'duration_ms')::bigint) FILTER (WHERE e.type = 'RunCompleted'),
            percentile_disc(0.95) WITHIN GROUP (ORDER BY (e.data ->> 'duration_ms')::bigint) FILTER (WHERE e.type = 'RunCompleted')
        FROM sentinel_touched t
        JOIN sentinel.events e ON e.workspace_id = t.workspace_id AND e.day = t.day AND e.repository = t.repository
            AND e.type IN ('RunCompleted', 'UsageRecorded')
        GROUP BY t.workspace_id, t.day, t.repository;
        INSERT INTO sentinel.daily_findings_rollups
        SELECT t.workspace_id, t.day, t.repository, coalesce(fc ->> 'severity', ''), coalesce(fc ->> 'category', ''), sum((fc ->> 'count')::bigint)
        FROM sentinel_touched t
        JOIN sentinel.events e ON e.workspace_id = t.workspace_id AND e.day = t.day AND e.repository = t.repository
            AND e.type = 'RunCompleted'
        CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(e.data -> 'finding_counts') = 'array'
                                                     THEN e.data -> 'finding_counts' ELSE '[]'::jsonb END) AS fc
        GROUP BY 1, 2, 3, 4, 5;
        INSERT INTO sentinel.exports (export_id, created_at, events_in_file) VALUES (\(id), \(literal(createdAt))::timestamptz, \(events))
            ON CONFLICT (export_id) DO NOTHING;
        COMMIT;

        """
    }

    /// A standard SQL string literal.
    static func literal(_ value: String) -> String {
        "'" + value.replacingOccurrences(of: "'", with: "''") + "'"
    }
}
