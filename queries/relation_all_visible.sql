-- Purpose: whether an index-only scan of a table can skip its heap: how much of the table the
--          visibility map marks all-visible as of its last VACUUM or ANALYZE (pg_class), and
--          how many rows changed since then (cumulative statistics, plus the changes of the
--          current transaction, which a migrate rehearsal has made and not yet committed).
-- Binds: $1 text, a relation name as migval quotes it ("schema"."table").
-- Returns: zero rows when the relation does not exist, else one row:
--          pages int4 (0 when never vacuumed or analyzed, or empty), all_visible int4,
--          rows float8 (pg_class estimate, -1 when unknown), changed int8 (rows inserted,
--          updated or deleted since the last vacuum, as far as the statistics know).
SELECT c.relpages AS pages,
       c.relallvisible AS all_visible,
       c.reltuples::float8 AS rows,
       coalesce(s.n_dead_tup + s.n_ins_since_vacuum, 0)
         + coalesce(x.n_tup_ins + x.n_tup_upd + x.n_tup_del, 0) AS changed
FROM pg_class c
LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid
LEFT JOIN pg_stat_xact_all_tables x ON x.relid = c.oid
WHERE c.oid = to_regclass($1)
