-- Purpose: `migval init`: the views (plain and materialized) that read the tables a spec is
--          generated for, with their columns, so that their totals are checked too.
-- Binds: $1 text[] schemas, $2 text[] table names (as in init_columns.sql).
-- Returns: one row per view column, in view then column order: schema text, view text,
--          column text, category text (typcategory, as in init_columns.sql).
WITH wanted AS (
    SELECT DISTINCT ON (c.relname) c.oid
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = ANY ($1::text[]) AND c.relname = ANY ($2::text[])
    ORDER BY c.relname, array_position($1::text[], n.nspname::text)
),
views AS (
    SELECT DISTINCT v.oid, vn.nspname, v.relname
    FROM wanted w
    JOIN pg_depend d ON d.refobjid = w.oid AND d.classid = 'pg_rewrite'::regclass
    JOIN pg_rewrite r ON r.oid = d.objid
    JOIN pg_class v ON v.oid = r.ev_class AND v.relkind IN ('v', 'm') AND v.oid <> w.oid
    JOIN pg_namespace vn ON vn.oid = v.relnamespace
)
SELECT v.nspname::text AS schema, v.relname::text AS view, a.attname::text AS "column",
       coalesce(b.typcategory, t.typcategory)::text AS category
FROM views v
JOIN pg_attribute a ON a.attrelid = v.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type b ON b.oid = t.typbasetype AND t.typtype = 'd'
ORDER BY v.relname, a.attnum
