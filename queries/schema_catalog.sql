-- Purpose: the catalog of the schemas in scope, for the schema diff (engine/schema_diff.rs):
--   one row per object a migration can add, drop or alter, with the attributes a DBA must
--   see change: tables (row security, owner), columns (type, nullability, default),
--   constraints (definition, validated), indexes (definition, valid), views (definition),
--   functions (signature, body digest), triggers, enum types, policies, grants, sequences
--   (and whether they are behind max() of the column they feed).
-- Binds: $1 text[] the schemas in scope.
-- Returns: kind text, name text (schema-qualified, unquoted), attrs text (a JSON object of
--   text values; absent keys mean "not set").
-- Notes: read-only. Objects that belong to an extension are left out (they change with the
--   extension, not with the migration). Indexes that implement a primary key, unique or
--   exclusion constraint are reported as the constraint. A sequence's max() reads the column
--   it is owned by (a primary key is an index lookup).
WITH ns AS (
    SELECT oid, nspname FROM pg_namespace WHERE nspname = ANY ($1::text[])
),
ext AS (
    SELECT classid, objid FROM pg_depend WHERE deptype = 'e'
),
rel AS (
    SELECT c.oid, c.relname, c.relkind, c.relowner, c.relacl, c.relrowsecurity,
           c.relforcerowsecurity, c.relpersistence, n.nspname
    FROM pg_class c
    JOIN ns n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S')
      AND NOT EXISTS (SELECT 1 FROM ext
                      WHERE ext.classid = 'pg_class'::regclass AND ext.objid = c.oid)
),
fn AS (
    SELECT p.*, n.nspname,
           format('%s.%s(%s)', n.nspname, p.proname, oidvectortypes(p.proargtypes))
               AS signature
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
               'force_row_security', CASE WHEN r.relforcerowsecurity THEN 'on' ELSE 'off' END
           ) AS attrs
    FROM rel r
    WHERE r.relkind IN ('r', 'p', 'f')

    UNION ALL
    SELECT 'column', format('%s.%s.%s', r.nspname, r.relname, a.attname),
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
    SELECT 'constraint', format('%s.%s.%s', r.nspname, r.relname, k.conname),
           jsonb_build_object(
               'definition', pg_get_constraintdef(k.oid, true),
               'validated', CASE WHEN k.convalidated THEN 'valid' ELSE 'NOT VALID' END,
               'deferrable', CASE WHEN k.condeferrable AND k.condeferred THEN 'initially deferred'
                                  WHEN k.condeferrable THEN 'deferrable' END
           )
    FROM pg_constraint k
    JOIN rel r ON r.oid = k.conrelid

    UNION ALL
    SELECT 'index', format('%s.%s', r.nspname, ic.relname),
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
               'config', array_to_string(f.proconfig, ', '),
               'owner', pg_get_userbyid(f.proowner),
               'body', 'md5 ' || md5(coalesce(f.prosrc, '')) || ', '
                       || length(coalesce(f.prosrc, '')) || ' chars'
           )
    FROM fn f
    JOIN pg_language l ON l.oid = f.prolang

    UNION ALL
    SELECT 'trigger', format('%s.%s.%s', r.nspname, r.relname, tg.tgname),
           jsonb_build_object(
               'definition', pg_get_triggerdef(tg.oid, true),
               'enabled', CASE tg.tgenabled WHEN 'O' THEN 'enabled' WHEN 'D' THEN 'DISABLED'
                                            WHEN 'R' THEN 'replica only' WHEN 'A' THEN 'always' END
           )
    FROM pg_trigger tg
    JOIN rel r ON r.oid = tg.tgrelid
    WHERE NOT tg.tgisinternal

    UNION ALL
    SELECT 'type', format('%s.%s', n.nspname, t.typname),
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
    SELECT 'policy', format('%s.%s.%s', r.nspname, r.relname, p.polname),
           jsonb_build_object(
               'command', CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT'
                                        WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
               'mode', CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
               'roles', (SELECT string_agg(CASE WHEN x.role = 0 THEN 'public'
                                                ELSE pg_get_userbyid(x.role) END, ', '
                                           ORDER BY 1)
                         FROM unnest(p.polroles) AS x(role)),
               'using', pg_get_expr(p.polqual, p.polrelid),
               'with_check', pg_get_expr(p.polwithcheck, p.polrelid)
           )
    FROM pg_policy p
    JOIN rel r ON r.oid = p.polrelid

    UNION ALL
    SELECT 'grant', format('%s.%s:%s', r.nspname, r.relname,
                           CASE WHEN a.grantee = 0 THEN 'public' ELSE pg_get_userbyid(a.grantee) END),
           jsonb_build_object('privileges',
               string_agg(a.privilege_type || CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION'
                                                   ELSE '' END, ', ' ORDER BY a.privilege_type))
    FROM rel r,
         LATERAL aclexplode(coalesce(r.relacl,
             acldefault(CASE WHEN r.relkind = 'S' THEN 's'::"char" ELSE 'r'::"char" END,
                        r.relowner))) AS a
    GROUP BY r.nspname, r.relname, a.grantee

    UNION ALL
    SELECT 'grant', format('%s:%s', f.signature,
                           CASE WHEN a.grantee = 0 THEN 'public' ELSE pg_get_userbyid(a.grantee) END),
           jsonb_build_object('privileges',
               string_agg(a.privilege_type || CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION'
                                                   ELSE '' END, ', ' ORDER BY a.privilege_type))
    FROM fn f,
         LATERAL aclexplode(coalesce(f.proacl, acldefault('f'::"char", f.proowner))) AS a
    GROUP BY f.signature, a.grantee

    UNION ALL
    SELECT 'grant', format('%s:%s', n.nspname,
                           CASE WHEN a.grantee = 0 THEN 'public' ELSE pg_get_userbyid(a.grantee) END),
           jsonb_build_object('privileges',
               string_agg(a.privilege_type || CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION'
                                                   ELSE '' END, ', ' ORDER BY a.privilege_type))
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
                   WHEN owner.max_value IS NULL THEN 'no'
                   WHEN owner.max_value::numeric
                        >= coalesce(ps.last_value + s.seqincrement, s.seqstart)::numeric
                   THEN 'BEHIND: the next value is already used'
                   ELSE 'no' END
           )
    FROM rel r
    JOIN pg_sequence s ON s.seqrelid = r.oid
    LEFT JOIN pg_sequences ps ON ps.schemaname = r.nspname AND ps.sequencename = r.relname
    LEFT JOIN LATERAL (
        SELECT format('%s.%s.%s', tn.nspname, t.relname, a.attname) AS col,
               (xpath('/row/m/text()',
                      query_to_xml(format('SELECT max(%I)::text AS m FROM %I.%I',
                                          a.attname, tn.nspname, t.relname),
                                   false, true, '')))[1]::text AS max_value
        FROM pg_depend d
        JOIN pg_class t ON t.oid = d.refobjid
        JOIN pg_namespace tn ON tn.oid = t.relnamespace
        JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
        WHERE d.classid = 'pg_class'::regclass AND d.objid = r.oid
          AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
          AND d.refobjsubid > 0
          AND format_type(a.atttypid, NULL) IN ('smallint', 'integer', 'bigint', 'numeric')
        LIMIT 1
    ) AS owner ON true
    WHERE r.relkind = 'S'
)
SELECT kind, name, jsonb_strip_nulls(attrs)::text AS attrs
FROM objects
ORDER BY kind, name
