-- Purpose: record one committed batch, inside the batch's own transaction: the last key done
--          and the counters (as increments), plus the heartbeat.
-- Binds: $1 int8 run id, $2 text[] last key done, then increments int8: $3 batches,
--        $4 rows checked, $5 updated, $6 already done, $7 no match, $8 ambiguous, $9 errors.
-- Identifier slots: none.
-- Returns: nothing.
UPDATE migval.backfill_runs
SET last_key = $2::text[],
    batches = batches + $3::int8,
    rows_checked = rows_checked + $4::int8,
    rows_updated = rows_updated + $5::int8,
    rows_already_done = rows_already_done + $6::int8,
    rows_no_match = rows_no_match + $7::int8,
    rows_ambiguous = rows_ambiguous + $8::int8,
    rows_errors = rows_errors + $9::int8,
    status = 'running',
    heartbeat_at = now()
WHERE run_id = $1::int8
