//! Row proof (`rows = { table, key }`): a fingerprint per row at baseline, compared key by key
//! at verify. Catches what aggregates cannot see (a +250 / -250 pair in one company), NULL ->
//! value, appeared and disappeared rows; a rename alone changes nothing.

use crate::common::{check, migval, p, rt, snapshot_then, status, verify_again, world};

const PRODUCTS: &str = r#"
CREATE TABLE client_products (
    id bigint PRIMARY KEY,
    company_id int NOT NULL,
    fixed_cost numeric(12,2),
    status text NOT NULL,
    note json,
    updated_at timestamptz NOT NULL DEFAULT '2025-01-01 00:00+00'
);
INSERT INTO client_products (id, company_id, fixed_cost, status, note)
SELECT g, 1 + g % 10, CASE WHEN g % 50 = 0 THEN NULL ELSE g * 2.50 END,
       CASE WHEN g % 7 = 0 THEN 'archived' ELSE 'active' END,
       json_build_object('g', g)
FROM generate_series(1, 2000) g;
CREATE TABLE control AS SELECT * FROM client_products;
ALTER TABLE control ADD PRIMARY KEY (id);
"#;

fn keys(report: &serde_json::Value, name: &str, scope: &str) -> Vec<String> {
    check(report, name)["worst"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["scope"] == scope)
        .map(|w| w["key"][0].as_str().unwrap_or("").to_string())
        .collect()
}

const SPEC: &str = r#"
[[check]]
name = "every product row"
rows = { table = "client_products", key = ["id"] }

[[check]]
name = "revenue per company"
table = "client_products"
group_by = ["company_id"]
metrics = ["count(*)", "sum(fixed_cost)", "count(fixed_cost)"]

[[check]]
name = "control rows"
rows = { table = "control", key = ["id"] }
"#;

#[test]
fn a_compensating_pair_invisible_to_aggregates_is_caught_with_both_keys() {
    let db = world("rows_compensating", PRODUCTS);
    // +250 on product 11, -250 on product 21: both company 2, totals unchanged. Product 50's
    // NULL cost gets a value and product 60's value becomes NULL (counts unchanged too, as
    // 60 and 50 are both in company 1), product 7 changes status.
    let change = r#"
UPDATE client_products SET fixed_cost = fixed_cost + 250 WHERE id = 11;
UPDATE client_products SET fixed_cost = fixed_cost - 250 WHERE id = 21;
UPDATE client_products SET fixed_cost = 125.00 WHERE id = 50;
UPDATE client_products SET fixed_cost = NULL WHERE id = 60;
UPDATE client_products SET status = 'active' WHERE id = 7;
"#;
    let (run, report) = snapshot_then(&db, SPEC, || rt().block_on(db.exec(change)));
    assert_eq!(run.code, 1, "{run}");
    let rows = check(&report, "every product row");
    assert_eq!(rows["status"], "FAIL", "{run}");
    assert_eq!(rows["groups"]["changed"], 5, "{run}");
    assert_eq!(rows["groups"]["appeared"], 0, "{run}");
    assert_eq!(rows["groups"]["disappeared"], 0, "{run}");
    let mut changed = keys(&report, "every product row", "changed");
    changed.sort();
    assert_eq!(changed, ["11", "21", "50", "60", "7"], "{run}");
    // The aggregates alone would have passed the +250/-250 pair: company 2 is unchanged.
    let revenue = check(&report, "revenue per company");
    let worst = revenue["worst"].to_string();
    assert!(
        !worst.contains("\"2\""),
        "company 2's totals are unchanged: {worst}"
    );
    // The control copy reports no change.
    assert_eq!(status(&report, "control rows"), "PASS", "{run}");
}

#[test]
fn a_rename_alone_changes_nothing_and_an_excluded_column_may_change() {
    let db = world("rows_rename", PRODUCTS);
    let spec = r#"
[rename]
"client_products.fixed_cost" = "client_products.fixed_fee"

[schema]
undeclared = "warn"

[[check]]
name = "rows, every column"
rows = { table = "client_products", key = ["id"], exclude = ["updated_at"] }

[[check]]
name = "rows, two columns"
rows = { table = "client_products", key = ["id"], columns = ["fixed_cost", "status"] }

[[check]]
name = "archived rows may change"
rows = { table = "client_products", key = ["id"], allow_changes = "status = 'archived'" }
"#;
    // The rename, a rewrite of updated_at everywhere, a new column (not fingerprinted: it
    // was not there at baseline), and product 14 (archived) edited.
    let change = r#"
ALTER TABLE client_products RENAME COLUMN fixed_cost TO fixed_fee;
ALTER TABLE client_products ADD COLUMN created_by text DEFAULT 'migration';
UPDATE client_products SET updated_at = now();
UPDATE client_products SET note = '{"g": "edited"}' WHERE id = 14;
"#;
    let (run, report) = snapshot_then(&db, spec, || rt().block_on(db.exec(change)));
    let every = check(&report, "rows, every column");
    assert_eq!(every["groups"]["changed"], 1, "only product 14's note{run}");
    assert_eq!(
        keys(&report, "rows, every column", "changed"),
        ["14"],
        "{run}"
    );
    assert_eq!(status(&report, "rows, two columns"), "PASS", "{run}");
    // updated_at changed on every row: allowed only for archived rows, so the others fail.
    let allowed = check(&report, "archived rows may change");
    assert_eq!(allowed["status"], "FAIL", "{run}");
    assert!(
        allowed["summary"]
            .as_str()
            .unwrap()
            .contains("allowed by allow_changes"),
        "{run}"
    );
    // The post-state values of a listed row are shown.
    let note = every["worst"][0]["note"].as_str().unwrap_or("");
    assert!(note.contains("edited"), "{note}{run}");
    assert_eq!(run.code, 1, "{run}");
}

#[test]
fn appeared_and_disappeared_rows_and_changes_out_lists_every_key() {
    let db = world("rows_appeared", PRODUCTS);
    let change = r#"
DELETE FROM client_products WHERE id IN (3, 4);
INSERT INTO client_products (id, company_id, fixed_cost, status) VALUES (5001, 1, 1, 'active');
UPDATE client_products SET status = 'x' WHERE id BETWEEN 100 AND 129;
"#;
    let spec = "[settings]\nworst_groups = 5\n\n[[check]]\nname = \"rows\"\nrows = { table = \"client_products\", key = [\"id\"] }\n";
    let (run, report) = snapshot_then(&db, spec, || rt().block_on(db.exec(change)));
    assert_eq!(run.code, 1, "{run}");
    let r = check(&report, "rows");
    assert_eq!(r["groups"]["disappeared"], 2, "{run}");
    assert_eq!(r["groups"]["appeared"], 1, "{run}");
    assert_eq!(r["groups"]["changed"], 30, "{run}");
    assert_eq!(
        r["worst"].as_array().unwrap().len(),
        5,
        "the report lists the first 5"
    );
    // --changes-out has all 33.
    let out = db.path("changes.csv");
    let run = verify_again(&db, &["--changes-out", p(&out)]);
    assert_eq!(run.code, 1, "{run}");
    let csv = std::fs::read_to_string(&out).unwrap();
    assert_eq!(csv.lines().count(), 1 + 33, "{csv}");
    assert!(csv.contains("rows,disappeared,3,"), "{csv}");
    assert!(csv.contains("rows,appeared,5001,"), "{csv}");
}

#[test]
fn composite_and_text_keys_and_refused_keys() {
    let db = world(
        "rows_keys",
        r#"
CREATE TABLE lines (tenant text NOT NULL, number int NOT NULL, amount numeric, PRIMARY KEY (tenant, number));
INSERT INTO lines SELECT 't' || g % 3, g, g FROM generate_series(1, 60) g;
CREATE TABLE dup (k int NOT NULL, v int);
INSERT INTO dup VALUES (1, 1), (1, 2), (2, 3);
CREATE TABLE nullkey (k int, v int);
INSERT INTO nullkey VALUES (1, 1), (NULL, 2);
"#,
    );
    let spec = r#"
[[check]]
name = "lines"
rows = { table = "lines", key = ["tenant", "number"] }
"#;
    let (run, report) = snapshot_then(&db, spec, || {
        rt().block_on(db.exec("UPDATE lines SET amount = 0 WHERE tenant = 't1' AND number = 4"))
    });
    assert_eq!(run.code, 1, "{run}");
    let worst = &check(&report, "lines")["worst"][0];
    assert_eq!(worst["key"], serde_json::json!(["t1", "4"]), "{run}");

    for (table, want) in [
        ("dup", "do not identify rows uniquely"),
        ("nullkey", "a key column has NULLs"),
    ] {
        let spec = db.file(
            "bad.toml",
            &format!(
                "[[check]]\nname = \"bad\"\nrows = {{ table = \"{table}\", key = [\"k\"] }}\n"
            ),
        );
        let r = migval(&[
            "snapshot",
            "--spec",
            p(&spec),
            "--out",
            p(&db.path("bad.json")),
            "--db",
            &db.url,
        ]);
        assert!(r.all().contains(want), "{table}: {want}{r}");
    }
    // No key at all: a spec error with a hint.
    let spec = db.file(
        "nokey.toml",
        "[[check]]\nname = \"nokey\"\nrows = { table = \"lines\" }\n",
    );
    let r = migval(&[
        "snapshot",
        "--spec",
        p(&spec),
        "--out",
        p(&db.path("n.json")),
        "--db",
        &db.url,
    ]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.all().contains("unique NOT NULL column"), "{r}");
}

#[test]
fn a_baseline_cut_short_or_tampered_is_refused() {
    let db = world("rows_tampered", PRODUCTS);
    let spec = "[[check]]\nname = \"rows\"\nrows = { table = \"control\", key = [\"id\"] }\n";
    let (run, _) = snapshot_then(&db, spec, || {});
    assert_eq!(run.code, 0, "{run}");
    let base = db.path("base.json");
    let text = std::fs::read_to_string(&base).unwrap();
    let verify = || {
        migval(&[
            "verify",
            "--spec",
            p(&db.path("checks.toml")),
            "--baseline",
            p(&base),
            "--db",
            &db.url,
        ])
    };
    std::fs::write(&base, &text[..text.len() / 2]).unwrap();
    let r = verify();
    assert_eq!(r.code, 2, "{r}");
    // One fingerprint edited (a digit changed), the checksum left as it was.
    let i = text.rfind("\"fingerprint\"").unwrap_or(0);
    let at = text[i..]
        .find(|c: char| c.is_ascii_digit())
        .map(|j| i + j)
        .unwrap();
    let mut edited = text.clone().into_bytes();
    edited[at] = if edited[at] == b'1' { b'2' } else { b'1' };
    std::fs::write(&base, edited).unwrap();
    let r = verify();
    assert_eq!(r.code, 2, "{r}");
    assert!(r.all().contains("checksum"), "{r}");
}

#[test]
fn a_rows_check_inside_a_migrate_rehearsal() {
    let db = world("rows_migrate", PRODUCTS);
    let spec = db.file(
        "checks.toml",
        "[schema]\nundeclared = \"warn\"\n\n[[check]]\nname = \"rows\"\nrows = { table = \"client_products\", key = [\"id\"] }\n",
    );
    let good = db.file(
        "good.sql",
        "ALTER TABLE client_products ADD COLUMN x int;\n",
    );
    let r = migval(&["migrate", p(&good), "--spec", p(&spec), "--db", &db.url]);
    assert_eq!(r.code, 0, "a new column is not fingerprinted{r}");
    let bad = db.file(
        "bad.sql",
        "UPDATE client_products SET fixed_cost = fixed_cost * 100 WHERE id = 9;\n",
    );
    let r = migval(&[
        "migrate",
        p(&bad),
        "--spec",
        p(&spec),
        "--db",
        &db.url,
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stdout.contains("\"changed\": 1"), "{r}");
}
