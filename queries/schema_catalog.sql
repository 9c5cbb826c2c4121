-- Purpose: the catalog of the schemas in scope, for the schema diff (engine/schema_diff.rs):
--   one row per object a migration can add, drop or alter, with the attributes a DBA must
--   see change: tables (row security, owner), columns (type, nullability, default),
--   constraints (definition, validated), indexes (definition, valid), views (definition),
--   functions (signature, body digest), triggers, enum types, domains (base type, NOT NULL,
--   default, CHECK constraints), policies, grants, sequences (and whether they are behind
--   max() of the column they feed).
-- Binds: $1 text[] the schemas in scope.
-- Returns: kind text, name text (schema-qualified, each part quoted like quote_ident: plain
--   names stay bare), attrs text (a JSON object of text values; absent keys mean "not set").
--   One more row, kind 'catalog', name 'format', attrs {"version": "2"}, is not an object: it
--   says which kinds this capture holds (version 2: domains; a baseline without the row was
--   taken before domains were captured), so the diff never reports what an older baseline
--   simply did not record (schema_diff.rs takes it out).
-- Run with search_path = pg_catalog (capture.rs), so that definitions name every object with
--   its schema whatever the session's search_path is (a domain's base type included).
-- Notes: read-only. Objects that belong to an extension are left out (they change with the
--   extension, not with the migration). Indexes that implement a primary key, unique or
--   exclusion constraint are reported as the constraint. A sequence's max() reads the column
--   it is owned by only where a valid btree index leads with that column (an index lookup);
--   without one it would read the whole table, and `behind_max` says "not checked".
WITH ns AS (
    SELECT oid, nspname AS name, quote_ident(nspname) AS nspname
    FROM pg_namespace WHERE nspname = ANY ($1::text[])
),
ext AS (
    SELECT classid, objid FROM pg_depend WHERE deptype = 'e'
),
rel AS (
    SELECT c.oid, quote_ident(c.relname) AS relname, c.relkind, c.relowner, c.relacl,
           c.relrowsecurity, c.relforcerowsecurity, c.relpersistence, c.relispartition,
           c.reloptions, quote_ident(n.nspname) AS nspname
    FROM pg_class c
    JOIN ns n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S')
      AND NOT EXISTS (SELECT 1 FROM ext
                      WHERE ext.classid = 'pg_class'::regclass AND ext.objid = c.oid)
),
fn AS (
    SELECT p.*, n.nspname,
           format('%s.%s(%s)', n.nspname, quote_ident(p.proname),
                  oidvectortypes(p.proargtypes)) AS signature
    FROM pg_proc p
    JOIN ns n ON n.oid = p.pronamespace
    WHERE NOT EXISTS (SELECT 1 FROM ext
                      WHERE ext.classid = 'pg_proc'::regclass AND ext.objid = p.oid)
),
objects AS (
    SELECT 'table' AS kind, format('%s.%s', r.nspname, r.relname) AS name,
           jsonb_build_object(
               'kind', CASE r.relkind WHEN 'p' THEN 'partitioned table'
                                      WHEN 'f' THEN 'foreign table' ELSE 'table' END,
               'owner', pg_get_userbyid(r.relowner),
               'persistence', CASE r.relpersistence WHEN 'u' THEN 'unlogged'
                                                    WHEN 't' THEN 'temporary' ELSE 'logged' END,
               'row_security', CASE WHEN r.relrowsecurity THEN 'enabled' ELSE 'disabled' END,
               'force_row_security', CASE WHEN r.relforcerowsecurity THEN 'on' ELSE 'off' END,
               'partition_of', (SELECT format('%s.%s', quote_ident(pn.nspname), quote_ident(pc.relname))
                                FROM pg_inherits i
                                JOIN pg_class pc ON pc.oid = i.inhparent
                                JOIN pg_namespace pn ON pn.oid = pc.relnamespace
                                WHERE i.inhrelid = r.oid AND r.relispartition),
               'partition_bound', CASE WHEN r.relispartition
                                       THEN pg_get_expr(pc_self.relpartbound, r.oid) END,
               'options', array_to_string(r.reloptions, ', ')
           ) AS attrs
    FROM rel r
    JOIN pg_class pc_self ON pc_self.oid = r.oid
    WHERE r.relkind IN ('r', 'p', 'f')

    UNION ALL
    SELECT 'column', format('%s.%s.%s', r.nspname, r.relname, quote_ident(a.attname)),
           jsonb_build_object(
               'type', format_type(a.atttypid, a.atttypmod),
               'not_null', CASE WHEN a.attnotnull THEN 'NOT NULL' ELSE 'nullable' END,
               'default', pg_get_expr(d.adbin, d.adrelid),
               'identity', CASE a.attidentity WHEN 'a' THEN 'ALWAYS' WHEN 'd' THEN 'BY DEFAULT' END,
               'generated', CASE a.attgenerated WHEN 's' THEN 'STORED' END,
               'collation', CASE WHEN a.attcollation <> t.typcollation THEN co.collname::text END
           )
    FROM rel r
    JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
    JOIN pg_type t ON t.oid = a.atttypid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    LEFT JOIN pg_collation co ON co.oid = a.attcollation
    WHERE r.relkind IN ('r', 'p', 'f')

    UNION ALL
    SELECT 'constraint', format('%s.%s.%s', r.nspname, r.relname, quote_ident(k.conname)),
           jsonb_build_object(
               'definition', pg_get_constraintdef(k.oid, true),
               'validated', CASE WHEN k.convalidated THEN 'valid' ELSE 'NOT VALID' END,
               -- A foreign key is enforced by internal triggers: DISABLE TRIGGER ALL turns
               -- them off without touching the constraint.
               'triggers', (SELECT CASE WHEN bool_or(tg.tgenabled = 'D') THEN 'DISABLED'
                                        ELSE 'enabled' END
                            FROM pg_trigger tg WHERE tg.tgconstraint = k.oid
                            HAVING count(*) > 0),
               'deferrable', CASE WHEN k.condeferrable AND k.condeferred THEN 'initially deferred'
                                  WHEN k.condeferrable THEN 'deferrable' END
           )
    FROM pg_constraint k
    JOIN rel r ON r.oid = k.conrelid

    UNION ALL
    SELECT 'index', format('%s.%s', r.nspname, quote_ident(ic.relname)),
           jsonb_build_object(
               'table', format('%s.%s', r.nspname, r.relname),
               'definition', pg_get_indexdef(i.indexrelid),
               'valid', CASE WHEN i.indisvalid THEN 'valid' ELSE 'INVALID' END
           )
    FROM pg_index i
    JOIN pg_class ic ON ic.oid = i.indexrelid
    JOIN rel r ON r.oid = i.indrelid
    WHERE NOT EXISTS (SELECT 1 FROM pg_constraint k
                      WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid
                        AND k.contype IN ('p', 'u', 'x'))

    UNION ALL
    SELECT 'view', format('%s.%s', r.nspname, r.relname),
           jsonb_build_object(
               'kind', CASE r.relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END,
               'owner', pg_get_userbyid(r.relowner),
               'options', array_to_string(r.reloptions, ', '),
               'definition', pg_get_viewdef(r.oid, true)
           )
    FROM rel r
    WHERE r.relkind IN ('v', 'm')

    UNION ALL
    SELECT 'function', f.signature,
           jsonb_build_object(
               'kind', CASE f.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate'
                                      WHEN 'w' THEN 'window function' ELSE 'function' END,
               'returns', pg_get_function_result(f.oid),
               'language', l.lanname,
               'volatility', CASE f.provolatile WHEN 'i' THEN 'IMMUTABLE' WHEN 's' THEN 'STABLE'
                                                ELSE 'VOLATILE' END,
               'security', CASE WHEN f.prosecdef THEN 'DEFINER' ELSE 'INVOKER' END,
               'strict', CASE WHEN f.proisstrict THEN 'STRICT' ELSE 'CALLED ON NULL INPUT' END,
               'parallel', CASE f.proparallel WHEN 's' THEN 'SAFE' WHEN 'r' THEN 'RESTRICTED'
                                              ELSE 'UNSAFE' END,
               'leakproof', CASE WHEN f.proleakproof THEN 'LEAKPROOF' END,
               'argument_defaults', pg_get_expr(f.proargdefaults, 0),
               'config', array_to_string(f.proconfig, ', '),
               'owner', pg_get_userbyid(f.proowner),
               -- SQL-standard bodies (BEGIN ATOMIC) live in prosqlbody, not prosrc.
               'body', 'md5 ' || md5(body.text) || ', ' || length(body.text) || ' chars'
           )
    FROM fn f
    JOIN pg_language l ON l.oid = f.prolang
    CROSS JOIN LATERAL (
        SELECT coalesce(pg_get_function_sqlbody(f.oid), f.prosrc, '') AS text
    ) AS body

    UNION ALL
    SELECT 'trigger', format('%s.%s.%s', r.nspname, r.relname, quote_ident(tg.tgname)),
           jsonb_build_object(
               'definition', pg_get_triggerdef(tg.oid, true),
               'enabled', CASE tg.tgenabled WHEN 'O' THEN 'enabled' WHEN 'D' THEN 'DISABLED'
                                            WHEN 'R' THEN 'replica only' WHEN 'A' THEN 'always' END
           )
    FROM pg_trigger tg
    JOIN rel r ON r.oid = tg.tgrelid
    WHERE NOT tg.tgisinternal

    UNION ALL
    SELECT 'type', format('%s.%s', n.nspname, quote_ident(t.typname)),
           jsonb_build_object(
               'kind', 'enum',
               'labels', (SELECT string_agg(e.enumlabel, ', ' ORDER BY e.enumsortorder)
                          FROM pg_enum e WHERE e.enumtypid = t.oid)
           )
    FROM pg_type t
    JOIN ns n ON n.oid = t.typnamespace
    WHERE t.typtype = 'e'
      AND NOT EXISTS (SELECT 1 FROM ext
                      WHERE ext.classid = 'pg_type'::regclass AND ext.objid = t.oid)

    UNION ALL
    SELECT 'type', format('%s.%s', n.nspname, quote_ident(t.typname)),
           jsonb_build_object(
               'kind', 'domain',
               'base_type', format_type(t.typbasetype, t.typtypmod),
               'not_null', CASE WHEN t.typnotnull THEN 'NOT NULL' ELSE 'nullable' END,
               -- Deparsed now (typdefault is the text of when it was set).
               'default', pg_get_expr(t.typdefaultbin, 0),
               'checks', (SELECT string_agg(c.def, '; ' ORDER BY c.def)
                          FROM (SELECT pg_get_constraintdef(k.oid, true) AS def
                                FROM pg_constraint k
                                WHERE k.contypid = t.oid AND k.contype = 'c') AS c)
           )
    FROM pg_type t
    JOIN ns n ON n.oid = t.typnamespace
    WHERE t.typtype = 'd'
      AND NOT EXISTS (SELECT 1 FROM ext
                      WHERE ext.classid = 'pg_type'::regclass AND ext.objid = t.oid)

    UNION ALL
    SELECT 'policy', format('%s.%s.%s', r.nspname, r.relname, quote_ident(p.polname)),
           jsonb_build_object(
               'command', CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT'
                                        WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
               'mode', CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
               'roles', (SELECT string_agg(y.name, ', ' ORDER BY y.name)
                         FROM unnest(p.polroles) AS x(role)
                         CROSS JOIN LATERAL (
                             SELECT CASE WHEN x.role = 0 THEN 'public'
                                         ELSE pg_get_userbyid(x.role)::text END AS name
                         ) AS y),
               'using', pg_get_expr(p.polqual, p.polrelid),
               'with_check', pg_get_expr(p.polwithcheck, p.polrelid)
           )
    FROM pg_policy p
    JOIN rel r ON r.oid = p.polrelid

    UNION ALL
    SELECT 'grant', format('%s.%s:%s', r.nspname, r.relname,
                           CASE WHEN a.grantee = 0 THEN 'public' ELSE pg_get_userbyid(a.grantee) END),
           jsonb_build_object('privileges',
               string_agg(DISTINCT a.privilege_type
                          || CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END,
                          ', '))
    FROM rel r,
         LATERAL aclexplode(coalesce(r.relacl,
             acldefault(CASE WHEN r.relkind = 'S' THEN 's'::"char" ELSE 'r'::"char" END,
                        r.relowner))) AS a
    GROUP BY r.nspname, r.relname, a.grantee

    UNION ALL
    SELECT 'grant', format('%s:%s', f.signature,
                           CASE WHEN a.grantee = 0 THEN 'public' ELSE pg_get_userbyid(a.grantee) END),
           jsonb_build_object('privileges',
               string_agg(DISTINCT a.privilege_type
                          || CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END,
                          ', '))
    FROM fn f,
         LATERAL aclexplode(coalesce(f.proacl, acldefault('f'::"char", f.proowner))) AS a
    GROUP BY f.signature, a.grantee

    UNION ALL
    SELECT 'grant', format('%s:%s', quote_ident(n.nspname),
                           CASE WHEN a.grantee = 0 THEN 'public' ELSE pg_get_userbyid(a.grantee) END),
           jsonb_build_object('privileges',
               string_agg(DISTINCT a.privilege_type
                          || CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END,
                          ', '))
    FROM pg_namespace n,
         LATERAL aclexplode(coalesce(n.nspacl, acldefault('n'::"char", n.nspowner))) AS a
    WHERE n.nspname = ANY ($1::text[])
    GROUP BY n.nspname, a.grantee

    UNION ALL
    SELECT 'sequence', format('%s.%s', r.nspname, r.relname),
           jsonb_build_object(
               'type', format_type(s.seqtypid, NULL),
               'increment', s.seqincrement::text,
               'owned_by', owner.col,
               'behind_max', CASE
                   WHEN owner.col IS NULL OR s.seqincrement < 0 THEN NULL
                   WHEN NOT owner.readable THEN 'unknown (no SELECT privilege on the sequence or its table)'
                   WHEN NOT owner.indexed THEN 'not checked (no btree index leads with the column, so no unique key to collide with; max() would read the whole table)'
                   WHEN owner.max_value IS NULL OR owner.next_value IS NULL THEN 'no'
                   WHEN owner.max_value::numeric >= owner.next_value::numeric
                   THEN 'BEHIND: the next value is already used'
                   ELSE 'no' END
           )
    FROM rel r
    JOIN pg_sequence s ON s.seqrelid = r.oid
    LEFT JOIN LATERAL (
        SELECT o.col, o.readable, o.indexed,
               -- The next value nextval() returns, in numeric (no bigint overflow at the end).
               CASE WHEN o.readable THEN
                   (xpath('/row/v/text()',
                          query_to_xml(format('SELECT CASE WHEN is_called THEN last_value::numeric + %s '
                                              'ELSE last_value::numeric END AS v FROM %s',
                                              s.seqincrement, r.oid::regclass),
                                       false, true, '')))[1]::text END AS next_value,
               CASE WHEN o.readable AND o.indexed THEN
                   (xpath('/row/m/text()',
                          query_to_xml(format('SELECT max(%I)::text AS m FROM %s',
                                              o.attname, o.tableoid::regclass),
                                       false, true, '')))[1]::text END AS max_value
        FROM (
            SELECT format('%s.%s.%s', quote_ident(tn.nspname), quote_ident(t.relname),
                          quote_ident(a.attname)) AS col,
                   a.attname, t.oid AS tableoid,
                   has_sequence_privilege(r.oid, 'SELECT')
                       AND has_table_privilege(t.oid, 'SELECT') AS readable,
                   EXISTS (SELECT 1
                           FROM pg_index i
                           JOIN pg_class ic ON ic.oid = i.indexrelid
                           JOIN pg_am am ON am.oid = ic.relam
                           WHERE i.indrelid = t.oid AND i.indkey[0] = a.attnum
                             AND i.indisvalid AND i.indpred IS NULL
                             AND am.amname = 'btree') AS indexed
            FROM pg_depend d
            JOIN pg_class t ON t.oid = d.refobjid
            JOIN pg_namespace tn ON tn.oid = t.relnamespace
            JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
            WHERE d.classid = 'pg_class'::regclass AND d.objid = r.oid
              AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
              AND d.refobjsubid > 0
              AND format_type(a.atttypid, NULL) IN ('smallint', 'integer', 'bigint', 'numeric')
            LIMIT 1
        ) AS o
    ) AS owner ON true
    WHERE r.relkind = 'S'
)
SELECT kind, name, jsonb_strip_nulls(attrs)::text AS attrs
FROM (
    SELECT * FROM objects
    UNION ALL
    SELECT 'catalog', 'format', jsonb_build_object('version', '2')
) AS rows
ORDER BY kind, name
