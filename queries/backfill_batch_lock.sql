-- Purpose: the per-batch half of a backfill's single-run guard, inside every batch transaction:
--          wait (up to the batch's lock_timeout) for the transaction-level advisory lock on the
--          backfill's name, held until the batch commits or rolls back (see backfill_lock.sql).
-- Binds: $1 text the backfill name.
-- Identifier slots: none.
-- Returns: one row, one void column pg_advisory_xact_lock (nothing to read).
SELECT pg_advisory_xact_lock(28022, hashtext($1::text))
