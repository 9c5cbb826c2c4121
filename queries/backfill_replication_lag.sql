-- Purpose: the replication-lag ceiling: the worst lag of the streaming replicas attached to this
--          primary (pg_stat_replication), checked before each batch.
-- Binds: none.
-- Identifier slots: none.
-- Returns: replicas int8, lag_ms int8 (0 without replicas; the largest of write/flush/replay lag).
SELECT count(*) AS replicas,
       coalesce(max(round(extract(epoch FROM greatest(write_lag, flush_lag, replay_lag)) * 1000)), 0)::int8 AS lag_ms
FROM pg_stat_replication
