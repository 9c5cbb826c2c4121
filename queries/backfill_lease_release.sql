-- Purpose: release this run's lease when it ends (done, interrupted, failed), so the next run
--          does not wait for it to expire. Someone else's lease is never touched.
-- Binds: $1 text backfill name, $2 text token (this run).
-- Identifier slots: none.
-- Returns: nothing.
DELETE FROM migval.backfill_leases
WHERE backfill = $1::text AND token = $2::text
