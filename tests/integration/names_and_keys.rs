//! Odd and hostile names end to end through the binary (quotes, dots, spaces, mixed case,
//! search_path shadowing), key shapes (uuid, text under a non-C collation, an empty table, no
//! primary key), and read-only targets for every command.

use crate::common::{check, migval, p, rt, snapshot_then, status, world};

const HOSTILE: &str = r#"
CREATE SCHEMA "My Schema";
CREATE TABLE "My Schema"."Order Lines" (
    "Id" int PRIMARY KEY,
    "Customer.Id" int,
    "Unit Price" numeric(12,2),
    "we""ird" text,
    "select" text
);
CREATE TABLE "My Schema"."Customers" ("Id" int PRIMARY KEY);
INSERT INTO "My Schema"."Customers" SELECT generate_series(1, 5);
INSERT INTO "My Schema"."Order Lines"
SELECT g, 1 + g % 5, g * 1.5, CASE WHEN g % 4 = 0 THEN NULL ELSE 'x' || g END, 's' || g % 2
FROM generate_series(1, 40) g;
-- Shadowing: an `events` table in `app` (searched first) and one in `public`.
CREATE SCHEMA app;
CREATE TABLE app.events (id int PRIMARY KEY, amount numeric);
CREATE TABLE public.events (id int PRIMARY KEY, amount numeric);
INSERT INTO app.events SELECT g, g FROM generate_series(1, 10) g;
INSERT INTO public.events SELECT g, g * 100 FROM generate_series(1, 10) g;
"#;

const HOSTILE_CHECKS: &str = r#"
[settings]
schemas = ["app", "public", '"My Schema"']

[rename]
'"My Schema"."Order Lines"."Unit Price"' = '"My Schema"."Order Lines"."Price (net)"'

[schema]
undeclared = "warn"

[[check]]
name = "lines per select value"
table = '"My Schema"."Order Lines"'
group_by = ['"select"']
metrics = ['count(*)', 'sum("Unit Price")', 'count("we""ird")']

[[check]]
name = "weird NULLs"
null_count = '"My Schema"."Order Lines"."we""ird"'

[[check]]
name = "no orphan lines"
orphans = { child = '"My Schema"."Order Lines"("Customer.Id")', parent = '"My Schema"."Customers"("Id")' }
expect = "zero"

[[check]]
name = "events, the first in search order"
table = "events"
metrics = ["sum(amount)"]

[[check]]
name = "price column renamed"
schema = { column = '"My Schema"."Order Lines"."Unit Price"', type = "numeric(12,2)" }
"#;

#[test]
fn hostile_names_and_search_path_shadowing_end_to_end() {
    let db = world("names_hostile", HOSTILE);
    // The rename on a quoted column; a change to the shadowed public.events changes nothing.
    let migration = r#"
ALTER TABLE "My Schema"."Order Lines" RENAME COLUMN "Unit Price" TO "Price (net)";
UPDATE public.events SET amount = amount + 1;
"#;
    let (run, report) = snapshot_then(&db, HOSTILE_CHECKS, || rt().block_on(db.exec(migration)));
    assert_eq!(run.code, 0, "{run}");
    for c in report["checks"].as_array().unwrap() {
        assert_ne!(c["status"], "FAIL", "{c:#}{run}");
        assert_ne!(c["status"], "ERROR", "{c:#}{run}");
    }
    assert_eq!(
        check(&report, "lines per select value")["groups"]["after_groups"],
        2
    );

    // The failing side: data under the quoted names changed, the first table in search order
    // changed.
    let db = world("names_hostile_broken", HOSTILE);
    let broken = r#"
ALTER TABLE "My Schema"."Order Lines" RENAME COLUMN "Unit Price" TO "Price (net)";
UPDATE "My Schema"."Order Lines" SET "we""ird" = NULL WHERE "Id" = 1;
UPDATE "My Schema"."Order Lines" SET "Customer.Id" = 99 WHERE "Id" = 2;
UPDATE app.events SET amount = amount + 1 WHERE id = 1;
"#;
    let (run, report) = snapshot_then(&db, HOSTILE_CHECKS, || rt().block_on(db.exec(broken)));
    assert_eq!(run.code, 1, "{run}");
    assert_eq!(status(&report, "weird NULLs"), "FAIL", "{run}");
    assert_eq!(status(&report, "no orphan lines"), "FAIL", "{run}");
    assert_eq!(status(&report, "lines per select value"), "FAIL", "{run}");
    assert_eq!(
        status(&report, "events, the first in search order"),
        "FAIL",
        "{run}"
    );
    // The generated SQL quotes every name (the audit trail shows it).
    let sql = check(&report, "lines per select value")["after_sql"].to_string();
    assert!(sql.contains(r#"\"My Schema\".\"Order Lines\""#), "{sql}");
    assert!(sql.contains(r#"\"Price (net)\""#), "{sql}");
}

#[test]
fn key_shapes_uuid_collated_text_empty_table_and_no_primary_key() {
    let db = world(
        "names_key_shapes",
        r#"
CREATE TABLE tokens (id uuid PRIMARY KEY, owner text NOT NULL COLLATE "und-x-icu", amount numeric);
INSERT INTO tokens
SELECT md5(g::text)::uuid, CASE g % 3 WHEN 0 THEN 'Émile' WHEN 1 THEN 'emile' ELSE 'Zoë' END, g
FROM generate_series(1, 30) g;
CREATE TABLE empty (id int PRIMARY KEY, amount numeric);
CREATE TABLE nokey (label text NOT NULL, amount numeric);
INSERT INTO nokey SELECT 'l' || g % 4, g FROM generate_series(1, 20) g;
"#,
    );
    let spec = r#"
[[check]]
name = "per token"
sql = "SELECT id, amount FROM tokens"
key = ["id"]

[[check]]
name = "per owner (ICU collation)"
table = "tokens"
group_by = ["owner"]
metrics = ["count(*)", "sum(amount)"]

[[check]]
name = "empty stays empty"
table = "empty"
metrics = ["count(*)", "sum(amount)"]

[[check]]
name = "no primary key, grouped"
table = "nokey"
group_by = ["label"]
metrics = ["sum(amount)"]
"#;
    let change = r#"
UPDATE tokens SET amount = amount + 1 WHERE owner = 'Zoë' AND amount = (SELECT min(amount) FROM tokens WHERE owner = 'Zoë');
INSERT INTO empty VALUES (1, 1);
"#;
    let (run, report) = snapshot_then(&db, spec, || rt().block_on(db.exec(change)));
    assert_eq!(run.code, 1, "{run}");
    let token = check(&report, "per token");
    assert_eq!(token["status"], "FAIL", "{run}");
    assert_eq!(
        token["groups"]["changed"], 1,
        "exactly one uuid key changed{run}"
    );
    let owner = check(&report, "per owner (ICU collation)");
    assert_eq!(owner["groups"]["changed"], 1, "{run}");
    assert_eq!(
        owner["groups"]["appeared"], 0,
        "keys match across sides{run}"
    );
    assert_eq!(status(&report, "empty stays empty"), "FAIL", "{run}");
    assert_eq!(status(&report, "no primary key, grouped"), "PASS", "{run}");

    // A custom query whose key is not unique (no primary key) is refused, naming the key.
    let path = db.file(
        "dup.toml",
        "[[check]]\nname = \"dup\"\nsql = \"SELECT label, amount FROM nokey\"\nkey = [\"label\"]\n",
    );
    let r = migval(&[
        "snapshot",
        "--spec",
        p(&path),
        "--out",
        p(&db.path("dup.json")),
        "--db",
        &db.url,
    ]);
    assert!(
        r.all().contains("do not identify rows uniquely"),
        "a duplicate key is named{r}"
    );
    // A backfill on a table without a usable key is refused with a hint.
    let bf = db.file(
        "nokey.toml",
        "table = \"nokey\"\nkey = [\"label\"]\npending = \"amount IS NULL\"\nset = \"amount = 0\"\n",
    );
    let r = migval(&["backfill", p(&bf), "--db", &db.url]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.all().contains("unique"), "{r}");
}

#[test]
fn a_read_only_database_serves_snapshot_and_verify_and_stops_writes_at_once() {
    let db = world(
        "names_read_only",
        "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t SELECT g, NULL FROM generate_series(1, 500) g;",
    );
    rt().block_on(db.exec(&format!(
        "ALTER DATABASE \"{}\" SET default_transaction_read_only = on",
        db.name
    )));
    let spec =
        "[[check]]\nname = \"rows\"\ntable = \"t\"\nmetrics = [\"count(*)\", \"count(v)\"]\n";
    let (run, report) = snapshot_then(&db, spec, || {});
    assert_eq!(run.code, 0, "snapshot and verify only read{run}");
    assert_eq!(status(&report, "rows"), "PASS");

    let script = db.file("m.sql", "ALTER TABLE t ADD COLUMN w int;\n");
    let r = migval(&[
        "migrate",
        p(&script),
        "--spec",
        p(&db.path("checks.toml")),
        "--db",
        &db.url,
    ]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.all().contains("read-only transaction"), "{r}");
    let bf = db.file(
        "bf.toml",
        "table = \"t\"\nkey = [\"id\"]\npending = \"v IS NULL\"\nset = \"v = id\"\n",
    );
    let r = migval(&["backfill", p(&bf), "--commit", "--yes", "--db", &db.url]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.all().contains("read-only transaction"), "{r}");
    assert!(r.all().contains("SQLSTATE 25006"), "{r}");
    // Stopped at once: no batch was attempted, nothing retried.
    assert!(!r.all().contains("retry"), "{r}");
    // Nothing was written.
    let left: i64 = rt().block_on(async {
        let c = db.client().await;
        c.query_one("SELECT count(*) FROM t WHERE v IS NULL", &[])
            .await
            .unwrap()
            .get(0)
    });
    assert_eq!(left, 500);
}

#[test]
fn a_hot_standby_serves_snapshot_and_verify_and_refuses_migrate_and_backfill() {
    use migval::cluster::{Cluster, ClusterOptions};
    let primary = Cluster::start(&ClusterOptions::default()).expect("start a private primary");
    let admin = primary.url("postgres");
    let dir = std::env::temp_dir().join(format!("migval-test-standby-rw-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    rt().block_on(async {
        let c = crate::common::connect(&admin).await;
        c.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t SELECT g, NULL FROM generate_series(1, 300) g;")
            .await
            .unwrap();
    });
    let standby = primary
        .start_standby(&ClusterOptions::default())
        .expect("start a streaming standby");
    let url = standby.url("postgres");
    // Wait until the standby has replayed the table.
    let mut seen = false;
    for _ in 0..100 {
        let n: Option<i64> = rt().block_on(async {
            let c = crate::common::connect(&url).await;
            c.query_one("SELECT count(*) FROM t", &[])
                .await
                .ok()
                .map(|r| r.get(0))
        });
        if n == Some(300) {
            seen = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(seen, "the standby replays the table");
    let spec = dir.join("checks.toml");
    std::fs::write(
        &spec,
        "[[check]]\nname = \"rows\"\ntable = \"t\"\nmetrics = [\"count(*)\"]\n",
    )
    .unwrap();
    let base = dir.join("base.json");
    let r = migval(&[
        "snapshot",
        "--spec",
        p(&spec),
        "--out",
        p(&base),
        "--db",
        &url,
    ]);
    assert_eq!(r.code, 0, "{r}");
    let r = migval(&[
        "verify",
        "--spec",
        p(&spec),
        "--baseline",
        p(&base),
        "--db",
        &url,
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 0, "{r}");
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        report["after"]["in_recovery"], true,
        "the report says it read a standby{r}"
    );
    let script = dir.join("m.sql");
    std::fs::write(&script, "ALTER TABLE t ADD COLUMN w int;\n").unwrap();
    let r = migval(&["migrate", p(&script), "--spec", p(&spec), "--db", &url]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.all().contains("read-only transaction"), "{r}");
    let bf = dir.join("bf.toml");
    std::fs::write(
        &bf,
        "table = \"t\"\nkey = [\"id\"]\npending = \"v IS NULL\"\nset = \"v = id\"\n",
    )
    .unwrap();
    let r = migval(&["backfill", p(&bf), "--commit", "--yes", "--db", &url]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.all().contains("read-only transaction"), "{r}");
    assert!(!r.all().contains("retry"), "{r}");
    let _ = std::fs::remove_dir_all(&dir);
}
