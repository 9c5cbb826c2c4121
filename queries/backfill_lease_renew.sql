-- Purpose: renew this run's lease inside every batch transaction (after the batch's advisory
--          lock). Zero rows updated means another run took the lease over (ours expired): the
--          batch is rolled back and the run stops. The row stays locked until the batch ends.
-- Binds: $1 text backfill name, $2 text token (this run), $3 int8 lease length in milliseconds.
-- Identifier slots: none.
-- Returns: nothing (the row count says whether the lease is still ours).
UPDATE migval.backfill_leases
SET renewed_at = clock_timestamp(),
    expires_at = clock_timestamp() + $3::int8 * interval '1 millisecond'
WHERE backfill = $1::text AND token = $2::text
