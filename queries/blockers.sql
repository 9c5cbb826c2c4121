-- Purpose: who blocks a migration statement that waits for a lock (asked from a second
--          connection while the statement waits), so a DBA sees the session to deal with.
-- Binds: $1 int4 the waiting backend's pid.
-- Returns: pid int4, usename text, application_name text, state text,
--          xact_seconds text (age of the blocker's transaction), query text (first 300 chars).
SELECT a.pid,
       coalesce(a.usename::text, '') AS usename,
       coalesce(a.application_name, '') AS application_name,
       coalesce(a.state, '') AS state,
       coalesce(round(extract(epoch FROM clock_timestamp() - a.xact_start)::numeric, 1)::text, '') AS xact_seconds,
       left(coalesce(a.query, ''), 300) AS query
FROM pg_stat_activity a
WHERE a.pid = ANY (pg_blocking_pids($1::int4))
ORDER BY a.xact_start
