-- Purpose: schema fact "column exists, with this type and nullability"; on a partitioned
--          table, also whether every partition agrees.
-- Binds: $1 text[] schemas searched in order, $2 text table name, $3 text column name.
-- Returns: zero rows when absent, else one row: exists bool, type text (format_type's text,
--          schema-qualified for every type outside pg_catalog whatever the search_path, e.g.
--          numeric(12,2), public.cents), nullable bool, partitions text (the partitions
--          whose column is missing or has another type or nullability, e.g.
--          "events_2024 (missing), events_2025 (text)"; NULL when all agree or the table is
--          not partitioned).
WITH target AS (
    SELECT c.oid, a.atttypid, a.atttypmod, a.attnotnull
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = ANY ($1::text[]) AND c.relname = $2 AND a.attname = $3
      AND a.attnum > 0 AND NOT a.attisdropped
    ORDER BY array_position($1::text[], n.nspname::text)
    LIMIT 1
)
SELECT true AS exists,
       CASE WHEN tn.nspname = 'pg_catalog' THEN format_type(t.atttypid, t.atttypmod)
            ELSE quote_ident(tn.nspname) || '.'
                 || regexp_replace(format_type(t.atttypid, t.atttypmod), '^("[^"]+"|[^."]+)\.', '')
       END AS type,
       NOT t.attnotnull AS nullable,
       (SELECT string_agg(
                   format('%s (%s)', p.relid::regclass::text,
                          CASE WHEN pa.attname IS NULL THEN 'missing'
                               WHEN pa.atttypid <> t.atttypid OR pa.atttypmod <> t.atttypmod
                                   THEN format_type(pa.atttypid, pa.atttypmod)
                               ELSE CASE WHEN pa.attnotnull THEN 'NOT NULL' ELSE 'nullable' END
                          END),
                   ', ' ORDER BY p.relid::regclass::text)
        FROM pg_partition_tree(t.oid) p
        LEFT JOIN pg_attribute pa
               ON pa.attrelid = p.relid AND pa.attname = $3 AND pa.attnum > 0 AND NOT pa.attisdropped
        WHERE p.relid <> t.oid
          AND (pa.attname IS NULL OR pa.atttypid <> t.atttypid OR pa.atttypmod <> t.atttypmod
               OR pa.attnotnull <> t.attnotnull)) AS partitions
FROM target t
JOIN pg_type ty ON ty.oid = t.atttypid
JOIN pg_namespace tn ON tn.oid = ty.typnamespace
