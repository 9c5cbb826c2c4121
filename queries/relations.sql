-- Purpose: resolve the relations the checks read and list their columns, so that a missing
--          table or column is reported by name before anything runs.
-- Binds: $1 text[] schemas to search, $2 text[] relation names (unqualified).
-- Identifier slots: none.
-- Returns: one row per matching relation: schema text, name text, kind text (r table,
--          p partitioned, v view, m materialized view, f foreign), est_rows float8,
--          columns text[] (in attnum order, dropped columns excluded), hashable bool[] (per
--          column: whether hash_record_extended can hash its type directly, by value; a
--          row fingerprint casts the others to text): enums, the built-in scalar types with
--          an extended hash function, arrays of those, and domains over them.
SELECT n.nspname::text AS schema,
       c.relname::text AS name,
       c.relkind::text AS kind,
       c.reltuples::float8 AS est_rows,
       coalesce(array_agg(a.attname::text ORDER BY a.attnum)
                FILTER (WHERE a.attnum > 0 AND NOT a.attisdropped), '{}') AS columns,
       coalesce(array_agg(
                    coalesce(b.typtype = 'e'
                             OR (b.typnamespace = 'pg_catalog'::regnamespace
                                 AND b.typname IN ('bool', 'int2', 'int4', 'int8', 'numeric',
                                                   'float4', 'float8', 'text', 'varchar',
                                                   'bpchar', 'name', 'char', 'bytea', 'date',
                                                   'time', 'timetz', 'timestamp',
                                                   'timestamptz', 'interval', 'uuid', 'oid',
                                                   'inet', 'cidr', 'macaddr', 'macaddr8',
                                                   'jsonb', 'pg_lsn'))
                             OR (e.oid IS NOT NULL
                                 AND (e.typtype = 'e'
                                      OR (e.typnamespace = 'pg_catalog'::regnamespace
                                          AND e.typname IN ('bool', 'int2', 'int4', 'int8',
                                                            'numeric', 'text', 'varchar',
                                                            'bpchar', 'date', 'timestamp',
                                                            'timestamptz', 'uuid', 'bytea')))),
                             false)
                    ORDER BY a.attnum)
                FILTER (WHERE a.attnum > 0 AND NOT a.attisdropped), '{}') AS hashable
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = c.oid
LEFT JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
LEFT JOIN pg_type e ON e.oid = b.typelem AND b.typcategory = 'A'
WHERE n.nspname = ANY ($1::text[])
  AND c.relname = ANY ($2::text[])
  AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
GROUP BY n.nspname, c.relname, c.relkind, c.reltuples
