-- Purpose: schema fact "row level security policy exists on a table".
-- Binds: $1 text[] schemas searched in order, $2 text table name, $3 text policy name.
-- Returns: zero rows when absent, else one row: exists bool.
SELECT true AS exists
FROM pg_policy p
JOIN pg_class c ON c.oid = p.polrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY ($1::text[]) AND c.relname = $2 AND p.polname = $3
ORDER BY array_position($1::text[], n.nspname::text)
LIMIT 1
