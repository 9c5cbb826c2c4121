-- Purpose: set a run's status (running, interrupted, failed, done, abandoned) with a message;
--          finished_at is set for done and abandoned.
-- Binds: $1 int8 run id, $2 text status, $3 text message (may be NULL), $4 text client.
-- Identifier slots: none.
-- Returns: nothing.
UPDATE migval.backfill_runs
SET status = $2::text,
    message = $3::text,
    client = $4::text,
    heartbeat_at = now(),
    finished_at = CASE WHEN $2::text IN ('done', 'abandoned') THEN now() END
WHERE run_id = $1::int8
