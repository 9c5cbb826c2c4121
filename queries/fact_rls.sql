-- Purpose: schema fact "row level security is enabled on a table".
-- Binds: $1 text[] schemas searched in order, $2 text table name.
-- Returns: zero rows when the table is absent, else one row: exists bool, enabled bool.
SELECT true AS exists, c.relrowsecurity AS enabled
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY ($1::text[]) AND c.relname = $2 AND c.relkind IN ('r', 'p')
ORDER BY array_position($1::text[], n.nspname::text)
LIMIT 1
