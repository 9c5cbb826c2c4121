-- Purpose: schema fact "column exists, with this type and nullability".
-- Binds: $1 text[] schemas searched in order, $2 text table name, $3 text column name.
-- Returns: zero rows when absent, else one row: exists bool, type text (as format_type
--          prints it, e.g. numeric(12,2)), nullable bool.
SELECT true AS exists,
       format_type(a.atttypid, a.atttypmod) AS type,
       NOT a.attnotnull AS nullable
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY ($1::text[]) AND c.relname = $2 AND a.attname = $3
  AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY array_position($1::text[], n.nspname::text)
LIMIT 1
