-- Purpose: export the snapshot of the capture's first transaction so that every other
--          connection can import it (pg_dump -j does the same), and record where it was taken.
-- Binds: none.
-- Identifier slots: none.
-- Returns: snapshot_id text, lsn text (replay LSN on a standby), in_recovery bool,
--          server_version text, database text, captured_at text (UTC, ISO 8601).
SELECT pg_export_snapshot() AS snapshot_id,
       (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
             ELSE pg_current_wal_lsn() END)::text AS lsn,
       pg_is_in_recovery() AS in_recovery,
       current_setting('server_version') AS server_version,
       current_database()::text AS database,
       to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS captured_at
