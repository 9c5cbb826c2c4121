-- Purpose: the per-batch half of a backfill's single-run guard: a transaction-level advisory
--          lock on the backfill's name (class 28022, "mv"), taken at the start of every batch
--          transaction and held until its COMMIT or ROLLBACK. Transaction-scoped, so a pooler in
--          transaction mode keeps it; a batch still running on the server for a killed client
--          holds it, so no new run's batch can overlap it. The try form is asked before the
--          first batch (in a transaction of its own) to find such a leftover batch.
-- Binds: $1 text the backfill name.
-- Identifier slots: none.
-- Returns: locked bool (true: this transaction now holds it).
SELECT pg_try_advisory_xact_lock(28022, hashtext($1::text)) AS locked
