//! The sizes check kind: heap, indexes, TOAST and total bytes per table before and after,
//! judged by `grows_at_most` or reported (`may_change`), shown in pg_size_pretty units and
//! kept as exact bytes in JSON. Every expected number is read from the server itself.

use crate::common::{TestDb, check, migval, p, rt, snapshot_then, status, verify_again, world};

/// A table with a TOASTed column (incompressible text) and an index.
pub(crate) const WORLD: &str = r#"
CREATE TABLE products (id int PRIMARY KEY, sku text NOT NULL, payload text);
CREATE INDEX products_sku_idx ON products (sku);
INSERT INTO products
SELECT g, 'sku-' || g,
       CASE WHEN g % 50 = 0
            THEN (SELECT string_agg(md5(g::text || i::text), '') FROM generate_series(1, 200) i)
       END
FROM generate_series(1, 2000) g;
CREATE TABLE customers (id int PRIMARY KEY, name text);
INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 100) g;
-- No autovacuum: its free-space and visibility maps would add a page between the test's
-- own reading of a size and migval's (1192 kB read, 1200 kB captured, on a loaded machine).
ALTER TABLE products SET (autovacuum_enabled = off, toast.autovacuum_enabled = off);
ALTER TABLE customers SET (autovacuum_enabled = off, toast.autovacuum_enabled = off);
"#;

/// (table, indexes, toast, total) bytes of `table` as the server reports them.
pub(crate) fn server_sizes(db: &TestDb, table: &str) -> (i64, i64, i64, i64) {
    rt().block_on(async {
        let c = db.client().await;
        let row = c
            .query_one(
                "SELECT pg_table_size(c.oid) - coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0),
                        pg_indexes_size(c.oid),
                        coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0),
                        pg_total_relation_size(c.oid)
                 FROM pg_class c WHERE c.oid = $1::text::regclass",
                &[&table],
            )
            .await
            .expect("sizes");
        (row.get(0), row.get(1), row.get(2), row.get(3))
    })
}

pub(crate) fn pretty(db: &TestDb, bytes: i64) -> String {
    rt().block_on(async {
        db.client()
            .await
            .query_one("SELECT pg_size_pretty($1::int8)", &[&bytes])
            .await
            .expect("pg_size_pretty")
            .get(0)
    })
}

/// The bytes of `part` of `table` on `side` ("baseline" / "after") in a JSON report.
fn bytes(report: &serde_json::Value, name: &str, table: &str, part: &str, side: &str) -> i64 {
    check(report, name)["values"]
        .as_array()
        .and_then(|vs| {
            vs.iter()
                .find(|v| v["key"][0] == table && v["metric"] == part)
        })
        .and_then(|v| v[side].as_i64())
        .unwrap_or_else(|| panic!("no {side} {part} bytes of {table} in {report:#}"))
}

pub(crate) const DOUBLING: &str =
    "INSERT INTO products SELECT id + 2000, sku || '-2', payload FROM products";

#[test]
fn a_table_that_doubles_fails_twenty_percent_with_the_numbers_shown() {
    let db = world("sizes_doubles", WORLD);
    let spec = r#"
[[check]]
name = "products size"
sizes = { tables = ["products"] }
expect = { grows_at_most = "20%" }
"#;
    let before = server_sizes(&db, "products");
    let (r, json) = snapshot_then(&db, spec, || rt().block_on(db.exec(DOUBLING)));
    let after = server_sizes(&db, "products");
    assert_eq!(r.code, 1, "a doubled table breaks 20%{r}");
    assert_eq!(status(&json, "products size"), "FAIL", "{r}");
    // Exact bytes in JSON, each part as the server has it.
    for (i, part) in ["table", "indexes", "toast", "total"].iter().enumerate() {
        let want = |s: (i64, i64, i64, i64)| [s.0, s.1, s.2, s.3][i];
        assert_eq!(
            bytes(&json, "products size", "products", part, "baseline"),
            want(before),
            "{part} before{r}"
        );
        assert_eq!(
            bytes(&json, "products size", "products", part, "after"),
            want(after),
            "{part} after{r}"
        );
    }
    assert!(before.2 > 0, "the world has TOAST: {before:?}");
    assert_eq!(before.0 + before.1 + before.2, before.3, "parts add up");
    // The text report shows the numbers as pg_size_pretty prints them.
    let text = verify_again(&db, &[]);
    assert_eq!(text.code, 1, "{text}");
    let shown = format!("{} → {}", pretty(&db, before.3), pretty(&db, after.3));
    assert!(text.stdout.contains("table sizes"), "{text}");
    assert!(text.stdout.contains(&shown), "wants `{shown}`{text}");
    assert!(
        text.stdout.contains("more than 20%"),
        "the failure says the limit{text}"
    );
}

#[test]
fn a_small_growth_passes_and_an_index_build_is_caught_in_the_indexes() {
    let db = world("sizes_small", WORLD);
    let spec = r#"
[[check]]
name = "products total"
sizes = { tables = ["products"] }
expect = { grows_at_most = "50%" }

[[check]]
name = "products indexes"
sizes = { tables = ["products"], judge = ["indexes"] }
expect = { grows_at_most = "10 kB" }
"#;
    let (r, json) = snapshot_then(&db, spec, || {
        rt().block_on(db.exec(
            "INSERT INTO products SELECT g, 'sku-' || g, NULL FROM generate_series(2001, 2100) g;
             CREATE INDEX products_id_sku_idx ON products (id, sku);",
        ))
    });
    assert_eq!(status(&json, "products total"), "PASS", "{r}");
    assert_eq!(status(&json, "products indexes"), "FAIL", "{r}");
    let (_, indexes, _, _) = server_sizes(&db, "products");
    assert_eq!(
        bytes(&json, "products indexes", "products", "indexes", "after"),
        indexes,
        "every index counted{r}"
    );
    assert_eq!(r.code, 1, "{r}");
}

#[test]
fn may_change_reports_without_failing_in_every_format() {
    let db = world("sizes_may_change", WORLD);
    // No tables listed: the tables the other checks read.
    let spec = r#"
[[check]]
name = "product count"
table = "products"
metrics = ["count(*)"]
expect = "may_change"

[[check]]
name = "customers without name"
null_count = "customers.name"

[[check]]
name = "sizes"
sizes = {}
expect = "may_change"
"#;
    let before = server_sizes(&db, "products");
    let (r, json) = snapshot_then(&db, spec, || rt().block_on(db.exec(DOUBLING)));
    let after = server_sizes(&db, "products");
    assert_eq!(r.code, 0, "may_change never fails{r}");
    assert_eq!(status(&json, "sizes"), "PASS", "{r}");
    assert!(
        bytes(&json, "sizes", "customers", "total", "after") > 0,
        "customers sized too{r}"
    );
    let shown = format!("{} → {}", pretty(&db, before.3), pretty(&db, after.3));
    for (format, title) in [
        ("text", "table sizes"),
        ("markdown", "### Table sizes"),
        ("html", "<h2>Table sizes"),
    ] {
        let out = verify_again(&db, &["--format", format]);
        assert_eq!(out.code, 0, "{out}");
        assert!(out.stdout.contains(title), "{format}: {title}{out}");
        assert!(out.stdout.contains(&shown), "{format}: {shown}{out}");
    }
}

#[test]
fn spec_errors_name_the_check_and_key_and_unknown_tables_stop_the_snapshot() {
    let db = world("sizes_errors", WORLD);
    for (body, key, words) in [
        (
            "sizes = { tables = [\"products\"] }\nexpect = { grows_at_most = \"twenty%\" }",
            "expect.grows_at_most",
            "not a percentage",
        ),
        (
            "sizes = { tables = [\"products\"] }\nexpect = { grows_at_most = \"5 parsecs\" }",
            "expect.grows_at_most",
            "\"50 MB\"",
        ),
        (
            "sizes = { tables = [\"products\"], judge = [\"heap\"] }",
            "sizes.judge",
            "\"indexes\"",
        ),
        (
            "sizes = { tables = [\"products\"] }\nexpect = \"unchanged\"",
            "expect",
            "never exactly unchanged",
        ),
        ("sizes = {}", "sizes.tables", "no other check reads a table"),
    ] {
        let spec = db.file(
            "bad.toml",
            &format!("[[check]]\nname = \"size check\"\n{body}\n"),
        );
        let r = migval(&[
            "snapshot",
            "--spec",
            p(&spec),
            "--out",
            p(&db.path("x.json")),
            "--db",
            &db.url,
        ]);
        assert_eq!(r.code, 2, "{r}");
        let want = format!("check `size check`, key `{key}`");
        assert!(r.stderr.contains(&want), "wants `{want}`{r}");
        assert!(r.stderr.contains(words), "wants `{words}`{r}");
    }
    let spec = db.file(
        "unknown.toml",
        "[[check]]\nname = \"size check\"\nsizes = { tables = [\"prodcuts\"] }\n",
    );
    let r = migval(&[
        "snapshot",
        "--spec",
        p(&spec),
        "--out",
        p(&db.path("x.json")),
        "--db",
        &db.url,
    ]);
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr.contains("check `size check`") && r.stderr.contains("prodcuts"),
        "{r}"
    );
}

/// Inside a rehearsal the post-state capture sees the transaction's own new pages: an UPDATE
/// of every row doubles the heap (the old versions stay until VACUUM), and the check says so
/// before anything is committed. (The rolled-back row versions stay in the file as dead rows
/// until VACUUM too: PostgreSQL does not shrink a file on ROLLBACK.)
#[test]
fn a_rehearsed_full_table_update_is_seen_growing_before_commit() {
    let db = world("sizes_rehearsal", WORLD);
    let spec = db.file(
        "checks.toml",
        r#"
[[check]]
name = "products heap"
sizes = { tables = ["products"], judge = ["table"] }
expect = { grows_at_most = "20%" }
"#,
    );
    let script = db.file("m.sql", "UPDATE products SET sku = sku || '!';\n");
    let before = server_sizes(&db, "products");
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
    assert_eq!(r.code, 1, "{r}");
    let json: serde_json::Value = serde_json::from_str(&r.stdout).expect("json report");
    assert_eq!(status(&json, "products heap"), "FAIL", "{r}");
    let rehearsed = bytes(&json, "products heap", "products", "table", "after");
    assert!(rehearsed > before.0 * 3 / 2, "{rehearsed} vs {before:?}{r}");
    assert!(r.stdout.contains("grew by"), "{r}");
}

/// The report's units are PostgreSQL's own.
#[test]
fn human_units_are_the_ones_pg_size_pretty_prints() {
    let db = rt().block_on(TestDb::new("sizes_units"));
    let values: Vec<i64> = vec![
        0,
        1,
        1536,
        10_239,
        10_240,
        10_752,
        1_048_576,
        20_970_496,
        20_971_520,
        1_073_741_824,
        987_654_321_098,
        -10_240,
        -1536,
        i64::MAX,
        i64::MIN + 1,
    ];
    for v in values {
        assert_eq!(migval::model::pretty_bytes(v), pretty(&db, v), "{v}");
    }
}

/// A renamed table is sized under its new name and reported under the spec's; a partitioned
/// table is the sum of its partitions; a table the migration creates is reported as new.
#[test]
fn renamed_partitioned_and_new_tables() {
    let db = world(
        "sizes_shapes",
        r#"
CREATE TABLE events (id int, at date NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE INDEX ON events (id);
INSERT INTO events SELECT g, date '2025-06-01' + (g % 400) FROM generate_series(1, 3000) g;
CREATE TABLE clients (id int PRIMARY KEY, name text);
INSERT INTO clients SELECT g, 'c' || g FROM generate_series(1, 500) g;
-- No autovacuum: it would add free-space and visibility-map pages between readings.
ALTER TABLE events_2025 SET (autovacuum_enabled = off);
ALTER TABLE events_2026 SET (autovacuum_enabled = off);
ALTER TABLE clients SET (autovacuum_enabled = off);
"#,
    );
    let spec = r#"
[rename]
"clients" = "customers"

[schema]
expect = ["add table contact_points"]

[[check]]
name = "sizes"
sizes = { tables = ["events", "clients"] }
expect = { grows_at_most = "20%" }

[[check]]
name = "new table size"
sizes = { tables = ["contact_points"] }

[[check]]
name = "old and new"
sizes = { tables = ["clients", "contact_points"] }
expect = { grows_at_most = "20%" }
"#;
    let partitions = |db: &TestDb| -> i64 {
        server_sizes(db, "events_2025").3 + server_sizes(db, "events_2026").3
    };
    let events_before = partitions(&db);
    let clients_before = server_sizes(&db, "clients").3;
    let (r, json) = snapshot_then(&db, spec, || {
        rt().block_on(db.exec(
            "ALTER TABLE clients RENAME TO customers;
             CREATE TABLE contact_points (id int PRIMARY KEY, note text);
             INSERT INTO contact_points SELECT g, 'n' FROM generate_series(1, 100) g;",
        ))
    });
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(status(&json, "sizes"), "PASS", "{r}");
    assert_eq!(
        bytes(&json, "sizes", "events", "total", "baseline"),
        events_before,
        "the partitions summed{r}"
    );
    assert!(events_before > 0);
    assert_eq!(
        bytes(&json, "sizes", "clients", "total", "after"),
        clients_before,
        "read under the new name, reported under the old{r}"
    );
    assert_eq!(status(&json, "new table size"), "PASS", "{r}");
    assert_eq!(
        bytes(&json, "new table size", "contact_points", "total", "after"),
        server_sizes(&db, "contact_points").3,
        "{r}"
    );
    assert_eq!(check(&json, "new table size")["after_only"], true, "{r}");
    // Next to an existing table, a declared new one is reported as new, not judged.
    assert_eq!(status(&json, "old and new"), "PASS", "{r}");
    assert_eq!(
        bytes(&json, "old and new", "contact_points", "total", "after"),
        server_sizes(&db, "contact_points").3,
        "{r}"
    );

    // A growth limit on a table that has no baseline size is a spec error.
    let bad = db.file(
        "bad.toml",
        "[schema]\nexpect = [\"add table contact_points\"]\n\n[[check]]\nname = \"new table size\"\nsizes = { tables = [\"contact_points\"] }\nexpect = { grows_at_most = \"20%\" }\n",
    );
    let r = migval(&[
        "snapshot",
        "--spec",
        p(&bad),
        "--out",
        p(&db.path("x.json")),
        "--db",
        &db.url,
    ]);
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr.contains("key `expect`") && r.stderr.contains("no baseline size"),
        "{r}"
    );
}

/// A rollback cannot give the pages back before VACUUM: in the rehearsal of the rollback,
/// which checks that the state comes back exactly, sizes are reported and never fail, while
/// the migration itself is still held to its limit.
#[test]
fn a_rollback_rehearsal_reports_sizes_without_failing_on_the_bloat_it_leaves() {
    let db = world("sizes_rollback", WORLD);
    let spec = db.file(
        "checks.toml",
        r#"
[[check]]
name = "product count"
table = "products"
metrics = ["count(*)"]
expect = "may_change"

[[check]]
name = "products heap"
sizes = { tables = ["products"], judge = ["table"] }
expect = { grows_at_most = "20%" }
"#,
    );
    let up = db.file(
        "up.sql",
        "INSERT INTO products SELECT g, 'sku-' || g, NULL FROM generate_series(2001, 2100) g;\n",
    );
    // Clears every row's payload before deleting the new rows: a new version of every row.
    let down = db.file(
        "down.sql",
        "UPDATE products SET payload = payload;\nDELETE FROM products WHERE id > 2000;\n",
    );
    let r = migval(&[
        "migrate",
        p(&up),
        "--spec",
        p(&spec),
        "--db",
        &db.url,
        "--rollback",
        p(&down),
    ]);
    assert_eq!(r.code, 0, "{r}");
    let rollback_part = r
        .stdout
        .split_once("rehearsal of the rollback")
        .map_or("", |x| x.1);
    assert!(
        rollback_part.contains("table sizes") && rollback_part.contains("may change"),
        "the rollback's sizes are reported{r}"
    );
    assert!(rollback_part.contains("VALIDATION PASSED"), "{r}");
}
