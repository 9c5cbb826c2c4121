-- Purpose: take (or renew) a backfill's lease: one row per backfill in migval.backfill_leases,
--          taken when there is none, when it is ours (same token), or when it has expired (its
--          run died without releasing it), or when its holder is known dead ($5: the token of
--          a holder whose process is gone from this host). Run in a short transaction of its own. Expiry is
--          the server's clock_timestamp() plus the lease length: no client clock is involved.
--          A row locked by the holder's batch in flight makes this wait for lock_timeout.
-- Binds: $1 text backfill name, $2 text token (this run), $3 text client (host:pid),
--        $4 int8 lease length in milliseconds, $5 text the token of a holder known dead ('' if
--        none).
-- Identifier slots: none.
-- Returns: one row (taken bool) when the lease is now ours; no row when another run holds it.
INSERT INTO migval.backfill_leases AS l
    (backfill, token, client, taken_at, renewed_at, expires_at)
VALUES ($1::text, $2::text, $3::text, clock_timestamp(), clock_timestamp(),
        clock_timestamp() + $4::int8 * interval '1 millisecond')
ON CONFLICT (backfill) DO UPDATE
SET token = EXCLUDED.token,
    client = EXCLUDED.client,
    taken_at = CASE WHEN l.token = EXCLUDED.token THEN l.taken_at ELSE EXCLUDED.taken_at END,
    renewed_at = EXCLUDED.renewed_at,
    expires_at = EXCLUDED.expires_at
WHERE l.token = EXCLUDED.token OR l.expires_at <= clock_timestamp() OR l.token = $5::text
RETURNING true AS taken
