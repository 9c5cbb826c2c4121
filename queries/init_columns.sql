-- Purpose: `migval init`: the columns of the tables a spec is generated for.
-- Binds: $1 text[] schemas (search order), $2 text[] table names (unqualified; the first
--        schema of $1 that has the name wins).
-- Returns: one row per column, in table then column order: schema text, table text, kind text
--          (relkind), est_rows float8, column text, type text (format_type), category text
--          (pg_type.typcategory of the base type: N numeric, D date/time, S string, B bool,
--          U user, ...), not_null bool.
WITH wanted AS (
    SELECT DISTINCT ON (c.relname) c.oid, n.nspname, c.relname, c.relkind, c.reltuples
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = ANY ($1::text[]) AND c.relname = ANY ($2::text[])
      AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
    ORDER BY c.relname, array_position($1::text[], n.nspname::text)
)
SELECT w.nspname::text AS schema, w.relname::text AS "table", w.relkind::text AS kind,
       w.reltuples::float8 AS est_rows, a.attname::text AS "column",
       format_type(a.atttypid, a.atttypmod) AS type,
       coalesce(b.typcategory, t.typcategory)::text AS category, a.attnotnull AS not_null
FROM wanted w
JOIN pg_attribute a ON a.attrelid = w.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type b ON b.oid = t.typbasetype AND t.typtype = 'd'
ORDER BY w.relname, a.attnum
