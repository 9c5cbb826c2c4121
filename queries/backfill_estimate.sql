-- Purpose: the planner's row estimate of a table, shown when counting its rows took longer than
--          the backfill's statement_timeout.
-- Binds: $1 text the table name, quoted.
-- Identifier slots: none.
-- Returns: reltuples float4 (-1 when the table was never analyzed).
SELECT reltuples FROM pg_class WHERE oid = to_regclass($1::text)
