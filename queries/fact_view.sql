-- Purpose: schema fact "view exists" (plain or materialized), its kind, and whether a
--          materialized view is populated (a view created WITH NO DATA answers no query
--          until REFRESHed; it still exists).
-- Binds: $1 text[] schemas searched in order, $2 text view name.
-- Returns: zero rows when absent, else one row: exists bool, kind text ('view' or
--          'materialized'), populated bool.
SELECT true AS exists,
       CASE c.relkind WHEN 'm' THEN 'materialized' ELSE 'view' END AS kind,
       c.relispopulated AS populated
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY ($1::text[]) AND c.relname = $2 AND c.relkind IN ('v', 'm')
ORDER BY array_position($1::text[], n.nspname::text)
LIMIT 1
