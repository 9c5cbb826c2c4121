-- Purpose: start a new run of a backfill.
-- Binds: $1 text backfill name, $2 text table, $3 text spec fingerprint, $4 text client
--        (host:pid of the migval process).
-- Identifier slots: none.
-- Returns: run_id int8.
INSERT INTO migval.backfill_runs (backfill, table_name, fingerprint, status, client)
VALUES ($1::text, $2::text, $3::text, 'running', $4::text)
RETURNING run_id
