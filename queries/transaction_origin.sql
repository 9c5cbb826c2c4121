-- Purpose: identify a capture taken inside the migration's own, uncommitted transaction
--          (rehearsal): other sessions cannot see this state, so there is no snapshot to
--          export; the transaction id stands in for it.
-- Binds: none.
-- Returns: snapshot_id text ("xact <id>, uncommitted"), lsn text, in_recovery bool,
--          server_version text, database text, captured_at text (UTC, ISO 8601).
SELECT 'xact ' || pg_current_xact_id()::text || ', uncommitted' AS snapshot_id,
       pg_current_wal_insert_lsn()::text AS lsn,
       pg_is_in_recovery() AS in_recovery,
       current_setting('server_version') AS server_version,
       current_database()::text AS database,
       to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS captured_at
