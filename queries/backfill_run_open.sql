-- Purpose: the latest unfinished run of a backfill (to resume it), if any.
-- Binds: $1 text the backfill name.
-- Identifier slots: none.
-- Returns: run_id int8, fingerprint text, status text, last_key text[], batches int8,
--          rows_checked, rows_updated, rows_already_done, rows_no_match, rows_ambiguous,
--          rows_errors int8, client text (host:pid of the migval process).
SELECT run_id, fingerprint, status, last_key, batches, rows_checked, rows_updated,
       rows_already_done, rows_no_match, rows_ambiguous, rows_errors, client
FROM migval.backfill_runs
WHERE backfill = $1::text AND status IN ('running', 'interrupted', 'failed')
ORDER BY run_id DESC
LIMIT 1
