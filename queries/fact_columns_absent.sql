-- Purpose: schema fact "these columns are gone", over several tables, partitions included
--          (a column dropped from a partitioned table but left on one partition is present).
-- Binds: $1 text[] schemas searched in order (for unqualified tables), $2 text[] explicit
--        schema per entry ('' when unqualified), $3 text[] table per entry, $4 text[] column
--        per entry.
-- Returns: one row: present text, the columns still there as "table.column" (and
--          "partition.column"), NULL when every one is gone.
WITH wanted AS (
    SELECT w.sch, w.tbl, w.col, w.i
    FROM unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS w(sch, tbl, col, i)
),
resolved AS (
    SELECT DISTINCT ON (w.i) w.i, w.col, c.oid
    FROM wanted w
    JOIN pg_class c ON c.relname = w.tbl
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE (w.sch = '' AND n.nspname = ANY ($1::text[])) OR n.nspname = w.sch
    ORDER BY w.i, array_position($1::text[], n.nspname::text)
),
members AS (
    SELECT r.i, r.col, r.oid AS relid FROM resolved r
    UNION
    SELECT r.i, r.col, p.relid FROM resolved r, pg_partition_tree(r.oid) p
)
SELECT string_agg(format('%s.%s', m.relid::regclass::text, quote_ident(m.col)), ', '
                  ORDER BY m.i, m.relid::regclass::text) AS present
FROM members m
JOIN pg_attribute a ON a.attrelid = m.relid AND a.attname = m.col
                   AND a.attnum > 0 AND NOT a.attisdropped
