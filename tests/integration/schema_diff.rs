//! The catalog-wide schema diff: migrations that break the schema in ways no data check sees.

use crate::common::{TestDb, check, migval, p, rt, snapshot_then, status};

/// Accounts with row level security, a policy, a grant, an index, a foreign key and a serial id.
const WORLD: &str = r#"
DO $$ BEGIN CREATE ROLE sd_reader; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
CREATE TABLE owners (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE accounts (
    id serial PRIMARY KEY,
    owner_id int NOT NULL REFERENCES owners(id),
    balance numeric(12,2) NOT NULL DEFAULT 0
);
CREATE INDEX ix_accounts_owner ON accounts (owner_id);
ALTER TABLE accounts ENABLE ROW LEVEL SECURITY;
CREATE POLICY accounts_owner ON accounts FOR SELECT TO sd_reader USING (owner_id > 0);
GRANT SELECT ON accounts TO sd_reader;
INSERT INTO owners SELECT g, 'owner ' || g FROM generate_series(1, 10) g;
INSERT INTO accounts (owner_id, balance) SELECT 1 + g % 10, g * 1.25 FROM generate_series(1, 200) g;
"#;

const DATA_CHECKS: &str = r#"
[settings]
schemas = ["public"]

[[check]]
name = "balances"
table = "accounts"
metrics = ["count(*)", "sum(balance)"]

[[check]]
name = "no orphan accounts"
orphans = { child = "accounts.owner_id", parent = "owners.id" }
"#;

fn world(name: &str) -> TestDb {
    rt().block_on(async {
        let db = TestDb::new(name).await;
        db.exec(WORLD).await;
        db
    })
}

fn migrate_json(db: &TestDb, spec: &str, script: &str) -> (crate::common::Run, serde_json::Value) {
    let spec = db.file("checks.toml", spec);
    let script = db.file("up.sql", script);
    let r = migval(&[
        "migrate",
        p(&script),
        "--spec",
        p(&spec),
        "--db",
        &db.url,
        "--format",
        "json",
    ]);
    let json = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("migrate did not print JSON ({e}){r}"));
    (r, json)
}

/// Rows of the schema diff for `kind name`, as (change, what, before, after, ok).
fn changes_of(report: &serde_json::Value, kind: &str, name: &str) -> Vec<String> {
    check(report, "schema diff")["values"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["key"][0] == kind && v["key"][1] == name)
        .map(|v| {
            format!(
                "{} {}: {} -> {} ok={}",
                v["scope"].as_str().unwrap_or(""),
                v["metric"].as_str().unwrap_or(""),
                v["baseline"],
                v["after"],
                v["ok"]
            )
        })
        .collect()
}

#[test]
fn a_dropped_index_disabled_rls_lost_policy_and_grant_fail_though_every_data_check_passes() {
    let db = world("sd_silent_breaks");
    let (r, report) = migrate_json(
        &db,
        DATA_CHECKS,
        "DROP INDEX ix_accounts_owner;\n\
         ALTER TABLE accounts DISABLE ROW LEVEL SECURITY;\n\
         DROP POLICY accounts_owner ON accounts;\n\
         REVOKE SELECT ON accounts FROM sd_reader;\n",
    );
    assert_eq!(r.code, 1, "{r}");
    assert_eq!(status(&report, "balances"), "PASS");
    assert_eq!(status(&report, "no orphan accounts"), "PASS");
    assert_eq!(status(&report, "schema diff"), "FAIL");
    let summary = check(&report, "schema diff")["summary"].as_str().unwrap();
    for expected in [
        "drop index public.ix_accounts_owner",
        "alter table public.accounts (row_security enabled -> disabled)",
        "drop policy public.accounts.accounts_owner",
        "drop grant public.accounts:sd_reader",
    ] {
        assert!(summary.contains(expected), "`{expected}` in: {summary}");
    }
    assert!(
        summary.starts_with("4 changes in public, 4 undeclared"),
        "{summary}"
    );
    // The rehearsal left everything in place.
    let still = rt().block_on(async {
        db.client()
            .await
            .query_one(
                "SELECT (SELECT relrowsecurity FROM pg_class WHERE relname = 'accounts') \
                 AND EXISTS (SELECT 1 FROM pg_indexes WHERE indexname = 'ix_accounts_owner') \
                 AND EXISTS (SELECT 1 FROM pg_policies WHERE policyname = 'accounts_owner') \
                 AND has_table_privilege('sd_reader', 'accounts', 'SELECT')",
                &[],
            )
            .await
            .unwrap()
            .get::<_, bool>(0)
    });
    assert!(still, "the rehearsal rolled everything back");

    // The text report lists each change with what it was and what it became.
    let spec = db.path("checks.toml");
    let script = db.path("up.sql");
    let text = migval(&["migrate", p(&script), "--spec", p(&spec), "--db", &db.url]);
    assert_eq!(text.code, 1, "{text}");
    assert!(
        text.stdout
            .contains("schema changes (4 changes in public, 4 undeclared"),
        "{text}"
    );
    assert!(
        text.stdout.lines().any(|l| l.contains("NO")
            && l.contains("table public.accounts")
            && l.contains("row_security")
            && l.contains("enabled")
            && l.contains("disabled")),
        "{text}"
    );
}

#[test]
fn declared_changes_pass_and_everything_is_listed() {
    let db = world("sd_declared");
    let spec = format!(
        "{DATA_CHECKS}\n[schema]\nexpect = [\n  \"add column accounts.note\",\n  \
         \"add index ix_accounts_note\",\n  \"alter column public.accounts.balance\",\n  \
         \"add table audit_log\",\n]\n"
    );
    let (r, report) = migrate_json(
        &db,
        &spec,
        "ALTER TABLE accounts ADD COLUMN note text;\n\
         CREATE INDEX ix_accounts_note ON accounts (note);\n\
         ALTER TABLE accounts ALTER COLUMN balance TYPE numeric(14,2);\n\
         CREATE TABLE audit_log (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());\n\
         GRANT SELECT ON audit_log TO sd_reader;\n",
    );
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(
        changes_of(&report, "column", "public.accounts.balance"),
        vec!["alter type: \"numeric(12,2)\" -> \"numeric(14,2)\" ok=true"]
    );
    // The new table's columns, key, sequence and grants come with it.
    let grant = changes_of(&report, "grant", "public.audit_log:sd_reader");
    assert_eq!(grant.len(), 1, "{report:#}");
    assert!(grant[0].starts_with("add added"), "{grant:?}");
    let rows = check(&report, "schema diff")["values"].as_array().unwrap();
    let seq = rows
        .iter()
        .find(|v| v["key"][1] == "public.audit_log_id_seq")
        .expect("the bigserial's sequence is listed");
    assert_eq!(seq["rule"], "follows add column public.audit_log.id");

    // Not declared: the same script fails, naming the table; as a warning it passes.
    let (r, report) = migrate_json(&db, DATA_CHECKS, "CREATE TABLE audit_log (id int);\n");
    assert_eq!(r.code, 1, "{r}");
    assert!(
        check(&report, "schema diff")["summary"]
            .as_str()
            .unwrap()
            .contains("add table public.audit_log"),
        "{report:#}"
    );
    let warn = format!("{DATA_CHECKS}\n[schema]\nundeclared = \"warn\"\n");
    let (r, report) = migrate_json(&db, &warn, "CREATE TABLE audit_log (id int);\n");
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(status(&report, "schema diff"), "WARN");
    let off = format!("{DATA_CHECKS}\n[schema]\ndiff = false\n");
    let (r, report) = migrate_json(&db, &off, "CREATE TABLE audit_log (id int);\n");
    assert_eq!(r.code, 0, "{r}");
    assert!(
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["name"] != "schema diff"),
        "{report:#}"
    );
}

#[test]
fn an_expected_change_the_migration_did_not_make_fails() {
    let db = world("sd_missing");
    let spec = format!(
        "{DATA_CHECKS}\n[schema]\nexpect = [\"add column accounts.note\", \"add index ix_accounts_note\"]\n"
    );
    let (r, report) = migrate_json(&db, &spec, "ALTER TABLE accounts ADD COLUMN note text;\n");
    assert_eq!(r.code, 1, "{r}");
    let summary = check(&report, "schema diff")["summary"].as_str().unwrap();
    assert!(
        summary.contains("expected but not made: \"add index ix_accounts_note\""),
        "{summary}"
    );
}

#[test]
fn a_declared_constraint_left_not_valid_is_a_hazard() {
    let db = world("sd_not_valid");
    let spec = format!("{DATA_CHECKS}\n[schema]\nexpect = [\"add constraint accounts.*\"]\n");
    let (r, report) = migrate_json(
        &db,
        &spec,
        "ALTER TABLE accounts ADD CONSTRAINT balance_positive CHECK (balance >= 0) NOT VALID;\n",
    );
    assert_eq!(r.code, 1, "{r}");
    let summary = check(&report, "schema diff")["summary"].as_str().unwrap();
    assert!(
        summary.contains("0 undeclared"),
        "it was declared: {summary}"
    );
    assert!(
        summary.contains("hazard: constraint public.accounts.balance_positive: it is NOT VALID"),
        "{summary}"
    );
    // Validated in the same migration, it passes.
    let (r, _) = migrate_json(
        &db,
        &spec,
        "ALTER TABLE accounts ADD CONSTRAINT balance_positive CHECK (balance >= 0) NOT VALID;\n\
         ALTER TABLE accounts VALIDATE CONSTRAINT balance_positive;\n",
    );
    assert_eq!(r.code, 0, "{r}");
}

#[test]
fn a_sequence_left_behind_its_column_is_caught_by_verify() {
    let db = world("sd_sequence");
    let (r, report) = snapshot_then(&db, DATA_CHECKS, || {
        // Rows copied in with explicit ids, as a data move does, and no setval afterwards.
        rt().block_on(db.exec(
            "INSERT INTO accounts (id, owner_id, balance) SELECT 1000 + g, 1, 0 FROM generate_series(1, 5) g",
        ));
    });
    assert_eq!(r.code, 1, "{r}");
    assert_eq!(status(&report, "balances"), "FAIL", "five rows more");
    let seq = changes_of(&report, "sequence", "public.accounts_id_seq");
    assert_eq!(seq.len(), 1, "{report:#}");
    assert!(
        seq[0].starts_with("alter behind_max: \"no\" -> \"BEHIND"),
        "{seq:?}"
    );
    assert!(
        check(&report, "schema diff")["summary"]
            .as_str()
            .unwrap()
            .contains("the next insert fails with a duplicate key"),
        "{report:#}"
    );
}

/// max() of a column without an index would read the whole table on every snapshot: such a
/// sequence is reported as not checked, and an indexed one is still checked.
#[test]
fn a_sequence_on_an_unindexed_column_is_not_scanned() {
    let db = world("sd_sequence_unindexed");
    rt().block_on(db.exec(
        "CREATE TABLE audit_log (n serial, note text); \
         INSERT INTO audit_log (n, note) VALUES (500, 'copied with its id');",
    ));
    let spec = migval::spec::Spec::parse("t.toml", &format!("{DATA_CHECKS}\n[schema]\n")).unwrap();
    let snap = rt()
        .block_on(migval::engine::snapshot(
            &db.info(),
            &spec,
            migval::engine::Limits::from_spec(&spec),
        ))
        .unwrap();
    let Some(migval::model::SchemaCapture::Captured(catalog)) = &snap.schema else {
        panic!("schema not captured: {:?}", snap.schema)
    };
    let behind = |name: &str| {
        catalog
            .objects
            .iter()
            .find(|o| o.kind == "sequence" && o.name == name)
            .and_then(|o| o.attrs.get("behind_max").cloned())
            .unwrap_or_else(|| panic!("no sequence {name}"))
    };
    assert!(
        behind("public.audit_log_n_seq").starts_with("not checked (no btree index"),
        "{}",
        behind("public.audit_log_n_seq")
    );
    assert_eq!(
        behind("public.accounts_id_seq"),
        "no",
        "the primary key is checked"
    );
}

#[test]
fn the_sessions_search_path_does_not_show_as_changes() {
    let db = world("sd_search_path");
    let spec = format!("{DATA_CHECKS}\n[schema]\nexpect = [\"add column accounts.note\"]\n");
    // pg_dump-style scripts empty the search_path: definitions must not look different.
    let (r, report) = migrate_json(
        &db,
        &spec,
        "SELECT pg_catalog.set_config('search_path', '', false);\n\
         ALTER TABLE public.accounts ADD COLUMN note text;\n",
    );
    assert_eq!(r.code, 0, "{r}");
    assert!(
        check(&report, "schema diff")["summary"]
            .as_str()
            .unwrap()
            .starts_with("1 change in public, 0 undeclared"),
        "{report:#}"
    );
}

#[test]
fn foreign_key_triggers_switched_off_are_a_hazard_and_a_correct_setval_is_not() {
    let db = world("sd_fk_triggers");
    let (r, report) = migrate_json(
        &db,
        DATA_CHECKS,
        "ALTER TABLE accounts DISABLE TRIGGER ALL;\n",
    );
    assert_eq!(r.code, 1, "{r}");
    let summary = check(&report, "schema diff")["summary"].as_str().unwrap();
    assert!(
        summary.contains(
            "constraint public.accounts.accounts_owner_id_fkey: its enforcement triggers are DISABLED"
        ),
        "{summary}"
    );
    // setval(next, false): the next value is free, nothing is behind, nothing changed.
    let (r, report) = migrate_json(
        &db,
        DATA_CHECKS,
        "SELECT setval('accounts_id_seq', (SELECT max(id) + 1 FROM accounts), false);\n",
    );
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(status(&report, "schema diff"), "PASS");
}

/// `events` partitioned by month in three partitions and a default one, with a key, a check
/// and an index on the column the migrations rename (PostgreSQL copies all three onto every
/// partition).
const EVENTS: &str = r#"
CREATE TABLE events (
    id bigint NOT NULL,
    ts timestamptz NOT NULL CHECK (ts > '2000-01-01'),
    note text,
    PRIMARY KEY (id, ts)
) PARTITION BY RANGE (ts);
CREATE TABLE events_2024_01 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE events_2024_02 PARTITION OF events FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
CREATE TABLE events_2024_03 PARTITION OF events FOR VALUES FROM ('2024-03-01') TO ('2024-04-01');
CREATE TABLE events_default PARTITION OF events DEFAULT;
CREATE INDEX ix_events_ts ON events (ts);
INSERT INTO events
SELECT g, timestamptz '2023-12-20' + g * interval '1 hour', 'event ' || g FROM generate_series(1, 3000) g;
"#;

const EVENT_CHECKS: &str = r#"
[settings]
schemas = ["public"]

[[check]]
name = "events"
table = "events"
metrics = ["count(*)", "min(ts)", "max(ts)"]
"#;

const PARTITIONS: [&str; 4] = [
    "events_2024_01",
    "events_2024_02",
    "events_2024_03",
    "events_default",
];

fn events_world(name: &str) -> TestDb {
    rt().block_on(async {
        let db = TestDb::new(name).await;
        db.exec(EVENTS).await;
        db
    })
}

/// The schema diff's rows for the partitions' `ts` / `occurred_at`: each one a declared rename.
fn partition_renames(report: &serde_json::Value) -> Vec<String> {
    PARTITIONS
        .iter()
        .flat_map(|t| changes_of(report, "column", &format!("public.{t}.occurred_at")))
        .collect()
}

#[test]
fn a_column_renamed_on_a_partitioned_table_is_declared_on_every_partition_by_rename() {
    let db = events_world("sd_partition_rename");
    let spec = format!("{EVENT_CHECKS}\n[rename]\n\"events.ts\" = \"events.occurred_at\"\n");
    let (r, report) = snapshot_then(&db, &spec, || {
        rt().block_on(db.exec("ALTER TABLE events RENAME COLUMN ts TO occurred_at"));
    });
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(status(&report, "events"), "PASS", "{r}");
    let summary = check(&report, "schema diff")["summary"].as_str().unwrap();
    assert!(summary.contains(", 0 undeclared"), "{summary}");
    let expected: Vec<String> = PARTITIONS
        .iter()
        .map(|t| format!("rename renamed: \"public.{t}.ts\" -> \"public.{t}.occurred_at\" ok=true"))
        .collect();
    assert_eq!(partition_renames(&report), expected, "{report:#}");
    // The key, the check and the index on each partition follow the rename.
    for (kind, name) in [
        ("constraint", "public.events_2024_02.events_2024_02_pkey"),
        ("constraint", "public.events_default.events_ts_check"),
        ("index", "public.events_2024_03_ts_idx"),
    ] {
        let rows = changes_of(&report, kind, name);
        assert!(!rows.is_empty(), "{kind} {name} changed: {report:#}");
        let rules: Vec<&str> = check(&report, "schema diff")["values"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["key"][0] == kind && v["key"][1] == name)
            .map(|v| v["rule"].as_str().unwrap_or(""))
            .collect();
        assert!(
            rules.iter().all(|r| *r == "follows the rename map"),
            "{kind} {name}: {rules:?}"
        );
    }
}

#[test]
fn a_column_renamed_on_a_partitioned_table_by_migrate_is_inferred_for_every_partition() {
    let db = events_world("sd_partition_migrate");
    let (r, report) = migrate_json(
        &db,
        EVENT_CHECKS,
        "ALTER TABLE events RENAME COLUMN ts TO occurred_at;\n",
    );
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(
        report["migration"]["renames_inferred"][0],
        serde_json::json!(["events.ts", "events.occurred_at"])
    );
    assert_eq!(partition_renames(&report).len(), 4, "{report:#}");
    assert!(
        partition_renames(&report)
            .iter()
            .all(|r| r.starts_with("rename renamed") && r.ends_with("ok=true")),
        "{report:#}"
    );
    assert_eq!(status(&report, "schema diff"), "PASS", "{r}");

    // The failing side: a partition detached and stripped of a column is not covered by
    // the rename (PostgreSQL refuses to drop a column from an attached partition).
    let (r, report) = migrate_json(
        &db,
        EVENT_CHECKS,
        "ALTER TABLE events RENAME COLUMN ts TO occurred_at;\n\
         ALTER TABLE events DETACH PARTITION events_2024_03;\n\
         ALTER TABLE events_2024_03 DROP COLUMN note;\n",
    );
    assert_eq!(r.code, 1, "{r}");
    let summary = check(&report, "schema diff")["summary"].as_str().unwrap();
    assert!(
        summary.contains("drop column public.events_2024_03.note"),
        "{summary}"
    );
    assert!(
        !summary.contains("occurred_at") && !summary.contains(".ts"),
        "the rename itself stays declared: {summary}"
    );
}

#[test]
fn a_new_domain_is_an_add_type_that_must_be_declared() {
    let db = world("sd_domain_add");
    let script = "CREATE DOMAIN positive_amount AS numeric(12,2) NOT NULL DEFAULT 0 CHECK (VALUE >= 0);\n\
                  ALTER TABLE accounts ADD COLUMN fee positive_amount;\n";
    let declared = format!(
        "{DATA_CHECKS}\n[schema]\nexpect = [\"add type public.positive_amount\", \"add column accounts.fee\"]\n"
    );
    let (r, report) = migrate_json(&db, &declared, script);
    assert_eq!(r.code, 0, "{r}");
    let rows = changes_of(&report, "type", "public.positive_amount");
    assert_eq!(rows.len(), 1, "{report:#}");
    for attr in [
        "base_type: numeric(12,2)",
        "checks: CHECK (VALUE >= 0::numeric)",
        "default: 0",
        "not_null: NOT NULL",
    ] {
        assert!(rows[0].contains(attr), "`{attr}` in {rows:?}");
    }
    // Qualified whatever the search_path (the catalog is read under search_path = pg_catalog).
    let column = changes_of(&report, "column", "public.accounts.fee");
    assert!(
        column[0].contains("type: public.positive_amount"),
        "{column:?}"
    );

    let column_only = format!("{DATA_CHECKS}\n[schema]\nexpect = [\"add column accounts.fee\"]\n");
    let (r, report) = migrate_json(&db, &column_only, script);
    assert_eq!(r.code, 1, "{r}");
    assert_eq!(status(&report, "balances"), "PASS");
    let summary = check(&report, "schema diff")["summary"].as_str().unwrap();
    assert!(
        summary.contains("1 undeclared: add type public.positive_amount"),
        "{summary}"
    );
}

#[test]
fn a_new_check_on_a_domain_is_an_alter_type_that_must_be_declared() {
    let db = world("sd_domain_alter");
    db_exec(
        &db,
        "CREATE DOMAIN positive_amount AS numeric(12,2) CHECK (VALUE >= 0);\n\
         ALTER TABLE accounts ADD COLUMN fee positive_amount;\n",
    );
    let script = "ALTER DOMAIN positive_amount ADD CONSTRAINT fee_cap CHECK (VALUE < 1000);\n";
    let declared = format!("{DATA_CHECKS}\n[schema]\nexpect = [\"alter type positive_amount\"]\n");
    let (r, report) = migrate_json(&db, &declared, script);
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(
        changes_of(&report, "type", "public.positive_amount"),
        vec![
            "alter checks: \"CHECK (VALUE >= 0::numeric)\" -> \"CHECK (VALUE < 1000::numeric); CHECK (VALUE >= 0::numeric)\" ok=true"
        ],
        "{report:#}"
    );

    let (r, report) = migrate_json(&db, DATA_CHECKS, script);
    assert_eq!(r.code, 1, "{r}");
    let summary = check(&report, "schema diff")["summary"].as_str().unwrap();
    assert!(
        summary.contains("1 undeclared: alter type public.positive_amount (checks"),
        "{summary}"
    );
    // Nothing else about the domain or its column is reported as changed.
    assert!(summary.starts_with("1 change in public"), "{summary}");
}

fn db_exec(db: &TestDb, sql: &str) {
    rt().block_on(db.exec(sql));
}
