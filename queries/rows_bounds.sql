-- Purpose: where to cut a big rows check into key ranges (read on several connections of the
--          capture's snapshot at once): the planner's histogram of the first key column, as
--          ANALYZE last sampled it. Only a hint: the bounds need not be current or exact, every
--          row is read whatever they are (a stale histogram only makes the ranges uneven).
-- Binds: $1 text, the relation's schema; $2 text, its name; $3 text, the column's name.
-- Returns: zero rows when the column has no statistics (never analyzed, no privilege on it),
--          else one row: type_oid int8 (the column's type), bounds text[] (the histogram's
--          bounds as text, in the column's own order, which migval sorts again its own way).
SELECT a.atttypid::int8 AS type_oid,
       s.histogram_bounds::text::text[] AS bounds
FROM pg_stats s
JOIN pg_namespace n ON n.nspname = s.schemaname
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = s.tablename
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = s.attname
WHERE s.schemaname = $1 AND s.tablename = $2 AND s.attname = $3
  AND s.histogram_bounds IS NOT NULL
ORDER BY s.inherited
LIMIT 1
