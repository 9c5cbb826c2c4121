-- Purpose: the replication-lag ceiling, checked before each batch: the worst lag of the
--          streaming replicas attached to this primary (pg_stat_replication) that have not yet
--          replayed the WAL flushed when the wait began. The lag columns are measured when a
--          replica replays and keep their last value until it has replayed everything twice in
--          a row, which never happens while other sessions keep writing; a replica that has
--          replayed past the target has applied every batch committed so far, so its lag
--          columns no longer hold the next batch back (see `wait_for_replicas`).
-- Binds: $1 text the target WAL position, from an earlier call of the same wait (NULL: take
--          pg_current_wal_flush_lsn() now).
-- Identifier slots: none.
-- Returns: replicas int8, lag_ms int8 (0 without replicas, or once every replica has replayed
--          the target; else the largest write/flush/replay lag of those that have not), target
--          text, hidden int8 (replicas whose details this role may not see: PostgreSQL shows
--          only their pid to roles without pg_read_all_stats, so their lag cannot be read).
WITH t AS (SELECT coalesce($1::text::pg_lsn, pg_current_wal_flush_lsn()) AS target)
SELECT count(r.pid) AS replicas,
       coalesce(max(round(extract(epoch FROM greatest(r.write_lag, r.flush_lag, r.replay_lag)) * 1000))
                    FILTER (WHERE coalesce(r.replay_lsn, r.flush_lsn) IS NULL
                               OR coalesce(r.replay_lsn, r.flush_lsn) < t.target), 0)::int8 AS lag_ms,
       t.target::text AS target,
       count(r.pid) FILTER (WHERE r.state IS NULL) AS hidden
FROM t
LEFT JOIN pg_stat_replication r ON true
GROUP BY t.target
