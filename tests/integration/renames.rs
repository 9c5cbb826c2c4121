//! [rename]: pre-migration names in the checks, post-migration names in the database.

use crate::common::{TestDb, check, migval, p, rt, snapshot_then, snapshot_to, status};

const FEES: &str = r#"
CREATE TABLE fees (id int PRIMARY KEY, kind text, fixed_cost numeric(12,2));
INSERT INTO fees SELECT g, CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END, CASE WHEN g % 7 = 0 THEN NULL ELSE g * 10.5 END
FROM generate_series(1, 50) g;
"#;

const CHECKS: &str = r#"
[rename]
"fees.fixed_cost" = "fees.fixed_fee"

[[check]]
name = "fixed fees per kind"
table = "fees"
where = "fixed_cost > 100"
group_by = ["kind"]
metrics = ["count(*)", "sum(fixed_cost)", "max(fixed_cost + 1)"]

[[check]]
name = "no fixed fee"
null_count = "fees.fixed_cost"

[[check]]
name = "custom"
sql = "SELECT kind, sum(fixed_cost) AS total FROM fees GROUP BY kind"
key = ["kind"]

[[check]]
name = "the fee column"
schema = { column = "fees.fixed_cost", type = "numeric(12,2)" }
"#;

#[test]
fn column_rename_applies_to_metrics_filters_custom_sql_and_facts() {
    let db = rt().block_on(async {
        let db = TestDb::new("rename_column").await;
        db.exec(FEES).await;
        db
    });
    let (run, report) = snapshot_then(&db, CHECKS, || {
        rt().block_on(db.exec("ALTER TABLE fees RENAME COLUMN fixed_cost TO fixed_fee"))
    });
    assert_eq!(run.code, 0, "{run}");
    for name in [
        "fixed fees per kind",
        "no fixed fee",
        "custom",
        "the fee column",
    ] {
        assert_eq!(status(&report, name), "PASS", "{name}");
    }
    assert_eq!(report["renames"][0][0], "fees.fixed_cost");
    assert_eq!(report["renames"][0][1], "fees.fixed_fee");
    let sql = report["checks"][0]["after_sql"][0].as_str().unwrap();
    assert!(
        sql.contains("\"fixed_fee\" > 100") && sql.contains("sum(\"fixed_fee\")"),
        "{sql}"
    );
}

/// The rename once ended `E'it\'s fixed_cost'` at the `\'` and renamed the text after it, so
/// the post-migration filter compared against a different string and named a column that no
/// longer exists.
#[test]
fn a_rename_leaves_escape_strings_dollar_quotes_and_comments_alone() {
    let db = rt().block_on(async {
        let db = TestDb::new("rename_escape_string").await;
        db.exec(FEES).await;
        db.exec("ALTER TABLE fees ADD COLUMN note text; UPDATE fees SET note = 'it''s fixed_cost' WHERE id % 3 = 0")
            .await;
        db
    });
    let spec = r#"
[rename]
"fees.fixed_cost" = "fees.fixed_fee"

[[check]]
name = "noted fees"
table = "fees"
where = "note = E'it\\'s fixed_cost' /* fixed_cost */ AND fixed_cost > 0 AND note <> $q$fixed_cost$q$"
metrics = ["count(*)", "sum(fixed_cost)"]
"#;
    let (run, report) = snapshot_then(&db, spec, || {
        rt().block_on(db.exec("ALTER TABLE fees RENAME COLUMN fixed_cost TO fixed_fee"))
    });
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(status(&report, "noted fees"), "PASS");
    let sql = report["checks"][0]["after_sql"][0].as_str().unwrap();
    assert!(
        sql.contains(r#"note = E'it\'s fixed_cost' /* fixed_cost */ AND "fixed_fee" > 0 AND note <> $q$fixed_cost$q$"#),
        "{sql}"
    );
    // The filter matched the noted rows: ids divisible by 3 (16), less 21 and 42 (no fee).
    assert_eq!(report["checks"][0]["values"][0]["after"], 14, "{report}");
}

#[test]
fn table_rename_is_followed() {
    let db = rt().block_on(async {
        let db = TestDb::new("rename_table").await;
        db.exec(FEES).await;
        db
    });
    let spec = "[rename]\n\"fees\" = \"charges\"\n\n[[check]]\nname = \"fee count\"\ntable = \"fees\"\nmetrics = [\"count(*)\", \"sum(fixed_cost)\"]\n";
    let (run, report) = snapshot_then(&db, spec, || {
        rt().block_on(db.exec("ALTER TABLE fees RENAME TO charges"))
    });
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(status(&report, "fee count"), "PASS");
}

#[test]
fn a_renamed_column_without_rename_entry_fails_its_checks_with_a_hint() {
    let db = rt().block_on(async {
        let db = TestDb::new("rename_missing").await;
        db.exec(FEES).await;
        db
    });
    let without_rename = CHECKS.replace("\"fees.fixed_cost\" = \"fees.fixed_fee\"", "");
    let spec = db.file("checks.toml", &without_rename);
    let base = db.path("base.json");
    let r = snapshot_to(&db, &spec, &base);
    assert_eq!(r.code, 0, "{r}");
    rt().block_on(db.exec("ALTER TABLE fees RENAME COLUMN fixed_cost TO fixed_fee"));
    let r = migval(&[
        "verify",
        "--spec",
        p(&spec),
        "--baseline",
        p(&base),
        "--db",
        &db.url,
        "--format",
        "json",
    ]);
    // The migration's result, not the tool's problem: the checks on the column fail, with the
    // reason and the [rename] entry that would explain it.
    assert_eq!(r.code, 1, "{r}");
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(status(&report, "fixed fees per kind"), "FAIL", "{r}");
    let summary = check(&report, "fixed fees per kind")["summary"].to_string();
    assert!(
        summary.contains("column `fixed_cost` no longer exists in `public.fees`"),
        "{r}"
    );
    assert!(
        summary.contains("add to [rename]: \\\"fees.fixed_cost\\\" = \\\"fees.fixed_fee\\\""),
        "the hint names the new column: {summary}"
    );
}

#[test]
fn a_baseline_after_the_migration_or_a_verify_before_it_is_named_as_such() {
    let db = rt().block_on(async {
        let db = TestDb::new("rename_wrong_side").await;
        db.exec(FEES).await;
        db
    });
    let spec = db.file("checks.toml", CHECKS);
    let base = db.path("base.json");
    let snapshot = || {
        migval(&[
            "snapshot",
            "--spec",
            p(&spec),
            "--out",
            p(&base),
            "--db",
            &db.url,
        ])
    };
    // verify before the migration ran: the old column is still there.
    let r = snapshot();
    assert_eq!(r.code, 0, "{r}");
    let r = migval(&[
        "verify",
        "--spec",
        p(&spec),
        "--baseline",
        p(&base),
        "--db",
        &db.url,
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.stdout.contains(
            "`fees` still has `fixed_cost`, which [rename] maps to `fixed_fee`: has the migration been applied yet?"
        ),
        "{r}"
    );
    // A baseline taken after the migration: the column is already renamed.
    rt().block_on(db.exec("ALTER TABLE fees RENAME COLUMN fixed_cost TO fixed_fee"));
    std::fs::remove_file(&base).unwrap();
    let r = snapshot();
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr.contains(
            "hint: `fees` has `fixed_fee`, which [rename] maps `fixed_cost` to: was the migration already applied?"
        ),
        "{r}"
    );
    // One line per check and column, however many metrics use it; the list is not repeated.
    assert_eq!(
        r.stderr
            .matches("check `fixed fees per kind`: column `fixed_cost` does not exist")
            .count(),
        1,
        "{r}"
    );
    assert!(!base.exists(), "no baseline written: {r}");
}

#[test]
fn an_unknown_table_is_named_before_anything_runs() {
    let db = rt().block_on(TestDb::new("rename_unknown_table"));
    let spec = db.file(
        "checks.toml",
        "[[check]]\nname = \"ghost rows\"\ntable = \"ghost\"\n",
    );
    let r = migval(&[
        "snapshot",
        "--spec",
        p(&spec),
        "--out",
        p(&db.path("b.json")),
        "--db",
        &db.url,
    ]);
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr.contains(
            "check `ghost rows`: table or view `ghost` does not exist (searched schemas: public)"
        ),
        "{r}"
    );
    assert!(!db.path("b.json").exists(), "no baseline written");
}
