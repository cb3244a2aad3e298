-- Example queries over the central tables a Sentinel export creates (see README.md).

-- Reviews and cost per workspace, last calendar month.
SELECT workspace_id, sum(runs) AS runs, sum(runs_completed) AS completed, sum(findings) AS findings,
       sum(input_tokens + output_tokens) AS tokens, sum(cost_usd) AS cost_usd
FROM sentinel.daily_repository_rollups
WHERE day >= date_trunc('month', now() - interval '1 month') AND day < date_trunc('month', now())
GROUP BY workspace_id ORDER BY cost_usd DESC;

-- Daily trend of one workspace: runs, failure share, median and p95 run time (of the busiest repository each day).
SELECT day, sum(runs) AS runs, round(100.0 * sum(runs_failed) / nullif(sum(runs), 0), 1) AS failed_pct,
       max(duration_p50_ms) AS worst_repo_p50_ms, max(duration_p95_ms) AS worst_repo_p95_ms
FROM sentinel.daily_repository_rollups
WHERE workspace_id = 'ws_…' AND day > current_date - 30
GROUP BY day ORDER BY day;

-- Exact run-time percentiles over any range, straight from the events.
SELECT workspace_id,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY (data ->> 'duration_ms')::bigint) AS p50_ms,
       percentile_disc(0.95) WITHIN GROUP (ORDER BY (data ->> 'duration_ms')::bigint) AS p95_ms
FROM sentinel.events
WHERE type = 'RunCompleted' AND data ? 'duration_ms' AND occurred_at > now() - interval '7 days'
GROUP BY workspace_id;

-- Findings by severity and category, last 30 days.
SELECT severity, category, sum(findings) AS findings
FROM sentinel.daily_findings_rollups
WHERE day > current_date - 30
GROUP BY 1, 2 ORDER BY 3 DESC;

-- The ten noisiest repositories by security findings, last 30 days.
SELECT workspace_id, repository, sum(findings) AS security_findings
FROM sentinel.daily_findings_rollups
WHERE category = 'security' AND day > current_date - 30
GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 10;

-- AI spend by provider and model, this month.
SELECT data ->> 'provider' AS provider, data ->> 'model' AS model, count(*) AS calls,
       sum((data ->> 'input_tokens')::bigint) AS input_tokens, sum((data ->> 'output_tokens')::bigint) AS output_tokens,
       sum((data ->> 'cost_usd')::numeric) AS cost_usd
FROM sentinel.events
WHERE type = 'UsageRecorded' AND occurred_at >= date_trunc('month', now())
GROUP BY 1, 2 ORDER BY cost_usd DESC;

-- Runs skipped because of plan limits (the reason starts with plan_limit:).
SELECT workspace_id, day, count(*) AS skipped_for_plan
FROM sentinel.events
WHERE type = 'RunCompleted' AND data ->> 'state' = 'skipped' AND data ->> 'reason' LIKE 'plan_limit:%'
GROUP BY 1, 2 ORDER BY 2 DESC;

-- Which exports have been loaded, and when.
SELECT export_id, created_at, events_in_file, first_loaded_at FROM sentinel.exports ORDER BY created_at;
