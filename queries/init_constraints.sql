-- Purpose: `migval init`: the keys, foreign keys, checks and indexes of the tables a spec is
--          generated for (the facts that must survive a migration).
-- Binds: $1 text[] schemas, $2 text[] table names (as in init_columns.sql).
-- Returns: one row per constraint or index: schema text, table text, what text ('p' primary
--          key, 'u' unique, 'f' foreign key, 'c' check, 'i' an index that backs no
--          constraint), name text, valid bool (convalidated / indisvalid), columns text[] (in
--          key order), parent_schema text, parent text, parent_columns text[] (foreign keys
--          only, else NULL).
WITH wanted AS (
    SELECT DISTINCT ON (c.relname) c.oid, n.nspname, c.relname
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = ANY ($1::text[]) AND c.relname = ANY ($2::text[])
      AND c.relkind IN ('r', 'p')
    ORDER BY c.relname, array_position($1::text[], n.nspname::text)
)
SELECT w.nspname::text AS schema, w.relname::text AS "table", con.contype::text AS what,
       con.conname::text AS name, con.convalidated AS valid,
       ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.i)
           AS columns,
       pn.nspname::text AS parent_schema, p.relname::text AS parent,
       CASE WHEN con.contype = 'f' THEN
           ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, i)
                 JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.i)
       END AS parent_columns
FROM wanted w
JOIN pg_constraint con ON con.conrelid = w.oid AND con.contype IN ('p', 'u', 'f', 'c')
                      AND con.conparentid = 0
LEFT JOIN pg_class p ON p.oid = con.confrelid
LEFT JOIN pg_namespace pn ON pn.oid = p.relnamespace
UNION ALL
SELECT w.nspname::text, w.relname::text, 'i', ic.relname::text, i.indisvalid,
       ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.o),
       NULL, NULL, NULL
FROM wanted w
JOIN pg_index i ON i.indrelid = w.oid
JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE NOT EXISTS (SELECT 1 FROM pg_constraint c2 WHERE c2.conindid = i.indexrelid)
ORDER BY 2, 3, 4
