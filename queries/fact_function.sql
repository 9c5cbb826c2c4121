-- Purpose: schema fact "function (or procedure) exists", any argument list.
-- Binds: $1 text[] schemas searched in order, $2 text function name.
-- Returns: zero rows when absent, else one row: exists bool.
SELECT true AS exists
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = ANY ($1::text[]) AND p.proname = $2
ORDER BY array_position($1::text[], n.nspname::text)
LIMIT 1
