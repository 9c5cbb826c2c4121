-- Purpose: schema fact "a unique key on exactly these columns": a PRIMARY KEY or UNIQUE
--          constraint, or a unique index without a predicate or expressions, in any column
--          order.
-- Binds: $1 text[] schemas searched in order, $2 text table, $3 text[] columns.
-- Returns: zero rows when there is none, else one row: exists bool, validated bool (the
--          index is valid: a failed CREATE UNIQUE INDEX CONCURRENTLY leaves it INVALID),
--          name text (the index names).
SELECT true AS exists,
       bool_or(i.indisvalid) AS validated,
       string_agg(ic.relname::text, ', ' ORDER BY ic.relname) AS name
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
  AND n.nspname = ANY ($1::text[]) AND c.relname = $2
  AND ARRAY(SELECT a.attname::text
            FROM unnest(i.indkey::int2[]) AS k(attnum)
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
            ORDER BY 1)
      = ARRAY(SELECT x FROM unnest($3::text[]) AS x ORDER BY 1)
  AND cardinality(i.indkey::int2[]) = cardinality($3::text[])
HAVING count(*) > 0
