-- Purpose: the single-run guard of a backfill: a session-level advisory lock on the backfill's
--          name (class 28022, "mv"). Released when the session ends, so a killed client cannot
--          leave a stale lock behind once its backend has gone.
-- Binds: $1 text the backfill name.
-- Identifier slots: none.
-- Returns: locked bool (true: this session now holds it).
SELECT pg_try_advisory_lock(28022, hashtext($1::text)) AS locked
