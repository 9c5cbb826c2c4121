-- Purpose: the on-disk size of each table a sizes check names (heap, indexes, TOAST, total),
--          as the DBA's "monitor table sizes" query reads it with pg_total_relation_size.
--          Sizes are read from the files when the query runs: they are NOT part of the MVCC
--          snapshot the other checks share, and inside a `migrate` rehearsal they include the
--          pages the rehearsal itself wrote (what a commit would leave, before any VACUUM). A
--          partitioned table is the sum of its partitions.
-- Binds: $1 text[] labels (each table as the spec names it), $2 text[] schemas, $3 text[]
--        table names (one entry per table, resolved by the preflight).
-- Identifier slots: none.
-- Returns: one row per table found, ordered by label: table text, table_bytes int8 (the heap
--          with its free-space and visibility maps: pg_table_size minus TOAST), index_bytes int8
--          (pg_indexes_size), toast_bytes int8 (the TOAST table and its index), total_bytes int8
--          (pg_total_relation_size: the three together).
WITH wanted AS (
    SELECT w.label, c.oid
    FROM unnest($1::text[], $2::text[], $3::text[]) AS w(label, schema, name)
    JOIN pg_namespace n ON n.nspname = w.schema
    JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.name
                   AND c.relkind IN ('r', 'p', 'm')
), members AS (
    -- The table itself, or every partition of a partitioned one (at any depth).
    SELECT w.label, coalesce(t.relid, w.oid) AS oid
    FROM wanted w
    LEFT JOIN LATERAL pg_partition_tree(w.oid) t ON true
), sized AS (
    SELECT m.label,
           coalesce(pg_table_size(m.oid), 0) AS heap_and_toast,
           coalesce(pg_indexes_size(m.oid), 0) AS index_bytes,
           coalesce(CASE WHEN c.reltoastrelid = 0 THEN 0
                         ELSE pg_total_relation_size(c.reltoastrelid) END, 0) AS toast_bytes
    FROM members m
    JOIN pg_class c ON c.oid = m.oid
)
SELECT label AS "table",
       (sum(heap_and_toast) - sum(toast_bytes))::int8 AS table_bytes,
       sum(index_bytes)::int8 AS index_bytes,
       sum(toast_bytes)::int8 AS toast_bytes,
       (sum(heap_and_toast) + sum(index_bytes))::int8 AS total_bytes
FROM sized
GROUP BY label
ORDER BY label
