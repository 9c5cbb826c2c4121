-- Purpose: resolve the table of a backfill and the types of its batching key columns, and
--          whether those columns are exactly the columns of a valid, non-partial unique index
--          (the primary key, a UNIQUE constraint or a unique index): keyset batching needs a
--          unique key. An INVALID index (left by a failed CREATE UNIQUE INDEX CONCURRENTLY, e.g.
--          on duplicate data) enforces nothing and does not count; it is named, so the error can
--          say why the key was refused.
-- Binds: $1 text the table name, quoted (to_regclass resolves it with the search_path);
--        $2 text[] the key column names, in batching order.
-- Identifier slots: none.
-- Returns: one row per key column, in order (no row when the table does not exist):
--          schema text, table text, column text, type text (NULL when the column does not
--          exist), not_null bool, unique_key bool (same on every row), invalid_index text
--          (an invalid or not yet ready unique index on exactly those columns, else NULL).
SELECT n.nspname::text AS schema,
       c.relname::text AS "table",
       k.name AS "column",
       format_type(a.atttypid, a.atttypmod) AS type,
       coalesce(a.attnotnull, false) AS not_null,
       EXISTS (
           SELECT 1
           FROM pg_index i
           WHERE i.indrelid = c.oid
             AND i.indisunique
             AND i.indisvalid
             AND i.indisready
             AND i.indpred IS NULL
             AND i.indexprs IS NULL
             AND (SELECT array_agg(x ORDER BY x) FROM unnest(i.indkey::int2[]) AS x)
               = (SELECT array_agg(a2.attnum ORDER BY a2.attnum)
                  FROM pg_attribute a2
                  WHERE a2.attrelid = c.oid AND a2.attname = ANY ($2::text[]) AND NOT a2.attisdropped)
       ) AS unique_key,
       (
           SELECT min(i.indexrelid::regclass::text)
           FROM pg_index i
           WHERE i.indrelid = c.oid
             AND i.indisunique
             AND NOT (i.indisvalid AND i.indisready)
             AND i.indpred IS NULL
             AND (SELECT array_agg(x ORDER BY x) FROM unnest(i.indkey::int2[]) AS x)
               = (SELECT array_agg(a2.attnum ORDER BY a2.attnum)
                  FROM pg_attribute a2
                  WHERE a2.attrelid = c.oid AND a2.attname = ANY ($2::text[]) AND NOT a2.attisdropped)
       ) AS invalid_index
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN unnest($2::text[]) WITH ORDINALITY AS k(name, ord)
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = k.name AND NOT a.attisdropped
WHERE c.oid = to_regclass($1::text)
ORDER BY k.ord
