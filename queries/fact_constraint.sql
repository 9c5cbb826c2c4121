-- Purpose: schema fact "constraint exists and is validated" (a NOT VALID foreign key or
--          check shows validated = false).
-- Binds: $1 text[] schemas searched in order, $2 text table name, $3 text constraint name.
-- Returns: zero rows when absent, else one row: exists bool, validated bool.
SELECT true AS exists, con.convalidated AS validated
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY ($1::text[]) AND c.relname = $2 AND con.conname = $3
ORDER BY array_position($1::text[], n.nspname::text)
LIMIT 1
