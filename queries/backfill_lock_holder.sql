-- Purpose: who holds a backfill's advisory lock in this database (another run, or the backend of a killed run
--          still finishing its batch), to name it in the refusal.
-- Binds: $1 text the backfill name.
-- Identifier slots: none.
-- Returns: pid int4, application_name text, state text, seconds text (age of its current
--          state), query text (first 200 chars).
SELECT a.pid,
       coalesce(a.application_name, '') AS application_name,
       coalesce(a.state, '') AS state,
       coalesce(round(extract(epoch FROM clock_timestamp() - a.state_change)::numeric, 1)::text, '') AS seconds,
       left(coalesce(a.query, ''), 200) AS query
FROM pg_locks l
JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory'
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = 28022::oid
  AND l.objid = hashtext($1::text)::oid
  AND l.objsubid = 2
  AND l.granted
