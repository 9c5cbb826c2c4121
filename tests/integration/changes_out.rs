//! `--changes-out FILE`: every differing value of every check (not only the worst N the report
//! lists), exact, as CSV, and as Parquet in a build with the `parquet` feature.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use crate::common::{TestDb, check, p, rt, snapshot_then, verify_again};

/// 40 accounts of two entries each, amounts near 1e14 with 4 decimals (beyond f64's digits).
const LEDGER: &str = r#"
CREATE TABLE ledger (id int PRIMARY KEY, account text NOT NULL, amount numeric(20,4));
INSERT INTO ledger
SELECT g, 'acct-' || lpad((g % 40)::text, 2, '0'), 123456789012345.6789 + g * 0.0001
FROM generate_series(1, 80) g;
CREATE TABLE accounts (name text PRIMARY KEY);
INSERT INTO accounts SELECT DISTINCT account FROM ledger;
"#;

/// 25 accounts move by a different tiny amount each, two entries lose their amount.
const CHANGE: &str = r#"
UPDATE ledger SET amount = amount + (g.n * 0.0001)
FROM (SELECT 'acct-' || lpad(n::text, 2, '0') AS account, n FROM generate_series(1, 25) n) g
WHERE ledger.account = g.account;
UPDATE ledger SET amount = NULL WHERE id IN (39, 79);
DELETE FROM accounts WHERE name IN ('acct-30', 'acct-31');
ALTER TABLE ledger ALTER COLUMN amount TYPE numeric(22,4);
"#;

const SPEC: &str = r#"
[settings]
worst_groups = 5

[[check]]
name = "per account"
table = "ledger"
group_by = ["account"]
metrics = ["sum(amount)"]

[[check]]
name = "ledger total"
table = "ledger"
metrics = ["count(*)", "sum(amount)"]

[[check]]
name = "amount nulls"
null_count = "ledger.amount"

[[check]]
name = "ledger without account"
orphans = { child = "ledger.account", parent = "accounts.name" }

[[check]]
name = "amount type"
schema = { column = "ledger.amount", type = "numeric(20,4)" }
"#;

/// Per-account sums as PostgreSQL prints them.
fn sums(db: &TestDb) -> BTreeMap<String, String> {
    rt().block_on(async {
        let c = db.client().await;
        let rows = c
            .query(
                "SELECT account, sum(amount)::text FROM ledger GROUP BY account",
                &[],
            )
            .await
            .expect("sums");
        rows.iter()
            .map(|r| {
                let sum: Option<String> = r.get(1);
                (r.get(0), sum.unwrap_or_else(|| "NULL".into()))
            })
            .collect()
    })
}

/// The CSV's lines as maps from column name to cell.
pub(crate) fn read_csv(path: &std::path::Path) -> Vec<BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(path).expect("read the CSV");
    let header: Vec<String> = r
        .headers()
        .expect("header")
        .iter()
        .map(String::from)
        .collect();
    r.records()
        .map(|rec| {
            let rec = rec.expect("record");
            header
                .iter()
                .cloned()
                .zip(rec.iter().map(String::from))
                .collect()
        })
        .collect()
}

/// Snapshot, change, and `verify --changes-out` into `out`; returns the CSV's lines and the
/// per-account sums before and after.
fn world_with_changes(
    name: &str,
) -> (
    TestDb,
    BTreeMap<String, String>,
    BTreeMap<String, String>,
    serde_json::Value,
) {
    let db = rt().block_on(async {
        let db = TestDb::new(name).await;
        db.exec(LEDGER).await;
        db
    });
    let before = sums(&db);
    let (run, report) = snapshot_then(&db, SPEC, || rt().block_on(db.exec(CHANGE)));
    assert_eq!(run.code, 1, "{run}");
    let after = sums(&db);
    (db, before, after, report)
}

#[test]
fn every_differing_group_and_value_is_written_exactly_not_only_the_worst() {
    let (db, before, after, report) = world_with_changes("changes_all");
    let worst = check(&report, "per account")["worst"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(worst, 5, "the report lists the worst 5 only");

    let out = db.path("changes.csv");
    let run = verify_again(&db, &["--changes-out", p(&out)]);
    assert_eq!(run.code, 1, "{run}");
    let lines = read_csv(&out);

    // Every account whose sum moved, with PostgreSQL's exact digits and the exact difference.
    let moved: Vec<&String> = before.keys().filter(|k| before[*k] != after[*k]).collect();
    assert_eq!(
        moved.len(),
        26,
        "25 moved, 1 lost an amount (acct-39): {before:?} {after:?}"
    );
    let groups: Vec<_> = lines
        .iter()
        .filter(|l| l["check"] == "per account")
        .collect();
    assert_eq!(groups.len(), moved.len(), "{lines:#?}\n{run}");
    for account in moved {
        let l = groups
            .iter()
            .find(|l| &l["key"] == account)
            .unwrap_or_else(|| panic!("{account} missing from the CSV: {groups:#?}"));
        assert_eq!(l["metric"], "sum(amount)");
        assert_eq!(l["scope"], "group");
        assert_eq!(l["baseline"], before[account], "{account}");
        assert_eq!(l["after"], after[account], "{account}");
        match (
            before[account].parse::<Decimal>(),
            after[account].parse::<Decimal>(),
        ) {
            (Ok(b), Ok(a)) => {
                assert_eq!(
                    l["difference"].parse::<Decimal>().unwrap(),
                    a - b,
                    "{account}"
                )
            }
            // NULL is not zero: no difference to compute.
            _ => assert_eq!(
                (account.as_str(), l["difference"].as_str()),
                ("acct-39", "")
            ),
        }
        assert_eq!(l["ok"], "false", "{account}");
    }

    // The ungrouped total and the NULL count, where they differ; the unchanged count is not
    // listed.
    let total = lines
        .iter()
        .find(|l| l["check"] == "ledger total" && l["metric"] == "sum(amount)")
        .unwrap_or_else(|| panic!("no total line: {lines:#?}"));
    let sum = |m: &BTreeMap<String, String>| -> Decimal {
        m.values().filter_map(|v| v.parse::<Decimal>().ok()).sum()
    };
    assert_eq!(total["baseline"].parse::<Decimal>().unwrap(), sum(&before));
    assert_eq!(total["after"].parse::<Decimal>().unwrap(), sum(&after));
    assert!(
        !lines
            .iter()
            .any(|l| l["check"] == "ledger total" && l["metric"] == "count(*)"),
        "{lines:#?}"
    );
    let nulls = lines
        .iter()
        .find(|l| l["check"] == "amount nulls")
        .unwrap_or_else(|| panic!("no null-count line: {lines:#?}"));
    assert_eq!(
        (nulls["baseline"].as_str(), nulls["after"].as_str()),
        ("0", "2")
    );
    // Orphans: 4 ledger rows lost their account; the column's type moved.
    let orphans = lines
        .iter()
        .find(|l| l["check"] == "ledger without account")
        .unwrap_or_else(|| panic!("no orphans line: {lines:#?}"));
    assert_eq!(
        (
            orphans["baseline"].as_str(),
            orphans["after"].as_str(),
            orphans["ok"].as_str()
        ),
        ("0", "4", "false")
    );
    let fact = lines
        .iter()
        .find(|l| l["check"] == "amount type" && l["after"].contains("numeric(22,4)"))
        .unwrap_or_else(|| panic!("no schema fact line: {lines:#?}"));
    assert_eq!(fact["ok"], "false", "{fact:?}");
    assert!(
        run.stderr
            .contains(&format!("{} differing values written", lines.len())),
        "{run}"
    );
}

/// A composite key goes in one cell as a JSON array of its values, so keys whose values hold
/// ", " stay apart: ("North, East", "x") and ("North", "East, x") would both read
/// "North, East, x" joined.
#[test]
fn a_composite_key_is_one_unambiguous_cell() {
    let db = rt().block_on(async {
        let db = TestDb::new("changes_composite").await;
        db.exec(
            "CREATE TABLE sales (region text, account text, amount numeric(12,2));
             INSERT INTO sales VALUES ('North, East', 'x', 10.00), ('North', 'East, x', 20.00),
                                      ('South', 'y', 30.00);",
        )
        .await;
        db
    });
    let spec = r#"
[[check]]
name = "per region and account"
table = "sales"
group_by = ["region", "account"]
metrics = ["sum(amount)"]
"#;
    let (run, _) = snapshot_then(&db, spec, || {
        rt().block_on(db.exec("UPDATE sales SET amount = amount + 1 WHERE region LIKE 'North%'"))
    });
    assert_eq!(run.code, 1, "{run}");
    let out = db.path("changes.csv");
    let run = verify_again(&db, &["--changes-out", p(&out)]);
    assert_eq!(run.code, 1, "{run}");
    let mut keys: Vec<Vec<String>> = read_csv(&out)
        .iter()
        .filter(|l| l["check"] == "per region and account" && l["scope"] == "group")
        .map(|l| serde_json::from_str(&l["key"]).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [["North", "East, x"], ["North, East", "x"]],
        "{}",
        std::fs::read_to_string(&out).unwrap()
    );
}

#[cfg(not(feature = "parquet"))]
#[test]
fn a_parquet_file_is_refused_before_any_work_without_the_feature() {
    let run = crate::common::migval(&[
        "verify",
        "--spec",
        "/nonexistent/checks.toml",
        "--baseline",
        "/nonexistent/base.json",
        "--changes-out",
        "/tmp/changes.parquet",
    ]);
    assert_eq!(run.code, 2, "{run}");
    assert!(
        run.stderr.contains("--features parquet") && run.stderr.contains("changes.parquet"),
        "{run}"
    );
    assert!(!std::path::Path::new("/tmp/changes.parquet").exists());
    let version = crate::common::migval(&["--version"]);
    assert!(
        version.stdout.contains("parquet export: not built in"),
        "{version}"
    );
}

/// The Parquet file read back with polars holds every line of the CSV, value for value.
#[cfg(feature = "parquet")]
#[test]
fn the_parquet_file_holds_every_csv_value_exactly() {
    use polars::prelude::*;

    let (db, _, _, _) = world_with_changes("changes_parquet");
    let csv_path = db.path("changes.csv");
    let pq_path = db.path("changes.parquet");
    let run = verify_again(&db, &["--changes-out", p(&csv_path)]);
    assert_eq!(run.code, 1, "{run}");
    let run = verify_again(&db, &["--changes-out", p(&pq_path)]);
    assert_eq!(run.code, 1, "{run}");
    let lines = read_csv(&csv_path);
    assert!(lines.len() > 26, "{lines:#?}");

    let file = std::fs::File::open(&pq_path).expect("open the Parquet file");
    let df = ParquetReader::new(file)
        .finish()
        .expect("read the Parquet file");
    assert_eq!(df.height(), lines.len(), "{df}");
    for name in migval::report::changes::COLUMNS {
        let col = df.column(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let dtype = col.dtype().clone();
        for (i, line) in lines.iter().enumerate() {
            let cell = col.get(i).unwrap();
            let text = match cell {
                AnyValue::Null => String::new(),
                AnyValue::Boolean(b) => b.to_string(),
                AnyValue::String(s) => s.to_string(),
                AnyValue::StringOwned(s) => s.to_string(),
                other => panic!("{name}: unexpected {other:?} ({dtype})"),
            };
            assert_eq!(text, line[name], "line {i}, column {name}");
        }
    }
    // Decimals are text, never floats.
    assert_eq!(df.column("baseline").unwrap().dtype(), &DataType::String);
    let version = crate::common::migval(&["--version"]);
    assert!(
        version.stdout.contains("parquet export: built in"),
        "{version}"
    );
}
