-- Purpose: resolve the relations the checks read and list their columns, so that a missing
--          table or column is reported by name before anything runs.
-- Binds: $1 text[] schemas to search, $2 text[] relation names (unqualified).
-- Identifier slots: none.
-- Returns: one row per matching relation: schema text, name text, kind text (r table,
--          p partitioned, v view, m materialized view, f foreign), est_rows float8,
--          columns text[] (in attnum order, dropped columns excluded).
SELECT n.nspname::text AS schema,
       c.relname::text AS name,
       c.relkind::text AS kind,
       c.reltuples::float8 AS est_rows,
       coalesce(array_agg(a.attname::text ORDER BY a.attnum)
                FILTER (WHERE a.attnum > 0 AND NOT a.attisdropped), '{}') AS columns
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = c.oid
WHERE n.nspname = ANY ($1::text[])
  AND c.relname = ANY ($2::text[])
  AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
GROUP BY n.nspname, c.relname, c.relkind, c.reltuples
