-- Purpose: the relation locks this session holds, read after every migration statement so
--          the report can say "ACCESS EXCLUSIVE on client_products held 1.2 s".
-- Binds: none.
-- Returns: relation text (schema.name, or the oid of a relation dropped in this
--          transaction), mode text (e.g. AccessExclusiveLock).
SELECT coalesce(n.nspname || '.' || c.relname,
                'oid ' || l.relation::text || ' (dropped in this transaction)') AS relation,
       l.mode
FROM pg_locks l
LEFT JOIN pg_class c ON c.oid = l.relation
LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE l.pid = pg_backend_pid()
  AND l.granted
  AND l.locktype = 'relation'
  AND coalesce(n.nspname, '') NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
