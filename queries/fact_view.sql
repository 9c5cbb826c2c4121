-- Purpose: schema fact "view exists" (plain or materialized).
-- Binds: $1 text[] schemas searched in order, $2 text view name.
-- Returns: zero rows when absent, else one row: exists bool.
SELECT true AS exists
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY ($1::text[]) AND c.relname = $2 AND c.relkind IN ('v', 'm')
ORDER BY array_position($1::text[], n.nspname::text)
LIMIT 1
