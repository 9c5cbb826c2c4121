-- Purpose: schema fact "a foreign key from these columns to those", found by what it is,
--          whatever its name (constraints a partitioned table's partitions inherit are not
--          counted twice).
-- Binds: $1 text[] schemas searched for the table, $2 text table, $3 text[] its columns in
--        order, $4 text[] schemas searched for the referenced table, $5 text referenced
--        table, $6 text[] its columns in order.
-- Returns: zero rows when there is none, else one row: exists bool, validated bool (false
--          while any such key is NOT VALID), name text (the constraint names).
SELECT true AS exists,
       bool_and(con.convalidated) AS validated,
       string_agg(con.conname::text, ', ' ORDER BY con.conname) AS name
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class p ON p.oid = con.confrelid
JOIN pg_namespace pn ON pn.oid = p.relnamespace
WHERE con.contype = 'f' AND con.conparentid = 0
  AND n.nspname = ANY ($1::text[]) AND c.relname = $2
  AND pn.nspname = ANY ($4::text[]) AND p.relname = $5
  AND ARRAY(SELECT a.attname::text
            FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, i)
            JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
            ORDER BY k.i) = $3::text[]
  AND ARRAY(SELECT a.attname::text
            FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, i)
            JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum
            ORDER BY k.i) = $6::text[]
HAVING count(*) > 0
