-- Purpose: schema fact "index exists and is valid" (a failed CREATE INDEX CONCURRENTLY
--          leaves an invalid index behind).
-- Binds: $1 text[] schemas searched in order, $2 text index name.
-- Returns: zero rows when absent, else one row: exists bool, valid bool.
SELECT true AS exists, (i.indisvalid AND i.indisready) AS valid
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY ($1::text[]) AND c.relname = $2
ORDER BY array_position($1::text[], n.nspname::text)
LIMIT 1
