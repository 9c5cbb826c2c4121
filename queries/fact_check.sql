-- Purpose: schema fact "a CHECK constraint reads this column".
-- Binds: $1 text[] schemas searched in order, $2 text table, $3 text column.
-- Returns: zero rows when there is none, else one row: exists bool, validated bool (false
--          while any such CHECK is NOT VALID), name text (the constraint names).
SELECT true AS exists,
       bool_and(con.convalidated) AS validated,
       string_agg(con.conname::text, ', ' ORDER BY con.conname) AS name
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = $3
WHERE con.contype = 'c' AND con.conparentid = 0
  AND n.nspname = ANY ($1::text[]) AND c.relname = $2
  AND a.attnum = ANY (con.conkey)
HAVING count(*) > 0
