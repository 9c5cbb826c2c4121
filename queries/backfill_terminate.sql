-- Purpose: --cancel-orphans: end the backend that holds a backfill's lock, only when it carries
--          the backfill's application_name tag (a backend left behind by a killed run).
-- Binds: $1 int4 the pid; $2 text the tag (migval-backfill:<name>).
-- Identifier slots: none.
-- Returns: terminated bool (false when the pid is gone or is not ours).
SELECT coalesce((SELECT pg_terminate_backend(a.pid)
                 FROM pg_stat_activity a
                 WHERE a.pid = $1::int4 AND a.application_name = $2::text
                   AND a.datname = current_database()), false) AS terminated
