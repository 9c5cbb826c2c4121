-- Purpose: one run's committed state (after a reconnect, and for the final summary).
-- Binds: $1 int8 run id.
-- Identifier slots: none.
-- Returns: same columns as backfill_run_open.sql.
SELECT run_id, fingerprint, status, last_key, batches, rows_checked, rows_updated,
       rows_already_done, rows_no_match, rows_ambiguous, rows_errors, client
FROM migval.backfill_runs
WHERE run_id = $1::int8
