-- Purpose: who holds a backfill's lease (the run-level half of its single-run guard), with
--          ages measured by the server's clock, never the client's.
-- Binds: $1 text the backfill name.
-- Identifier slots: none.
-- Returns: token text, client text (host:pid of the run), taken_ago text, renewed_ago text
--          (seconds, one decimal), expires_in text (seconds; negative once expired),
--          expired bool.
SELECT token,
       client,
       round(extract(epoch FROM clock_timestamp() - taken_at)::numeric, 1)::text AS taken_ago,
       round(extract(epoch FROM clock_timestamp() - renewed_at)::numeric, 1)::text AS renewed_ago,
       round(extract(epoch FROM expires_at - clock_timestamp())::numeric, 1)::text AS expires_in,
       expires_at <= clock_timestamp() AS expired
FROM migval.backfill_leases
WHERE backfill = $1::text
