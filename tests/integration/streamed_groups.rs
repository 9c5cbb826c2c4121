//! Large grouped checks and keyed custom queries captured in key order into sections and
//! merged as they are read: the changed groups found exactly (exact decimals, NULL not zero),
//! tolerance per group, appeared and disappeared groups, `--changes-out` complete; the same
//! report as the in-memory path; a key type the server orders differently falls back to the
//! in-memory sort; a dropped table after a streamed baseline fails the check.

use std::collections::BTreeMap;
use std::path::Path;

use migval::model::{Outcome, Snapshot};

use crate::common::{TestDb, check, migval_env, p, rt, status, world};

/// 250,000 accounts of two entries each (more groups than `MIGVAL_SECTION_ROWS`' default
/// 100,000); the entries with an id divisible by 1000 have no amount.
const ENTRIES: &str = r#"
CREATE TABLE entries (id int PRIMARY KEY, account int NOT NULL, amount numeric(14,2));
INSERT INTO entries
SELECT g, g % 250000, CASE WHEN g % 1000 = 0 THEN NULL ELSE (g % 9973) * 1.25 END
FROM generate_series(1, 500000) g;
ANALYZE entries;
"#;

const GROUPED: &str = r#"
[settings]
worst_groups = 20

[[check]]
name = "per account, exact"
table = "entries"
group_by = ["account"]
metrics = ["count(*)", "sum(amount)"]

[[check]]
name = "per account, within 0.01"
table = "entries"
group_by = ["account"]
metrics = ["sum(amount)"]
tolerance = { abs = "0.01" }
"#;

/// +0.01 on account 7 (within 0.01); +250 / -250 on accounts 11 and 13; account 1000's NULL
/// sum becomes 42.50; account 200000 disappears; account 300000 appears.
const CHANGES: &str = r#"
UPDATE entries SET amount = amount + 0.01 WHERE id = 7;
UPDATE entries SET amount = amount + 250 WHERE id = 11;
UPDATE entries SET amount = amount - 250 WHERE id = 13;
UPDATE entries SET amount = 42.50 WHERE id = 1000;
DELETE FROM entries WHERE account = 200000;
INSERT INTO entries VALUES (500001, 300000, 5.00);
"#;

/// `migval ARGS` with `MIGVAL_SECTION_ROWS` set (`None`: the default threshold).
fn run(args: &[&str], section_rows: Option<&str>) -> crate::common::Run {
    match section_rows {
        Some(n) => migval_env(args, &[("MIGVAL_SECTION_ROWS", n)]),
        None => migval_env(args, &[]),
    }
}

fn snapshot(db: &TestDb, spec: &Path, out: &Path, section_rows: Option<&str>) {
    let r = run(
        &[
            "snapshot",
            "--spec",
            p(spec),
            "--out",
            p(out),
            "--db",
            &db.url,
        ],
        section_rows,
    );
    assert_eq!(r.code, 0, "snapshot failed{r}");
}

fn verify(
    db: &TestDb,
    spec: &Path,
    base: &Path,
    extra: &[&str],
    section_rows: Option<&str>,
) -> (crate::common::Run, serde_json::Value) {
    let mut args = vec![
        "verify",
        "--spec",
        p(spec),
        "--baseline",
        p(base),
        "--db",
        &db.url,
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    let r = run(&args, section_rows);
    let json = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("verify did not print JSON ({e}){r}"));
    (r, json)
}

/// Whether check `name` of the snapshot file went to a section.
fn streamed(path: &Path, name: &str) -> bool {
    let snap = migval::store::read(path).expect("read the snapshot");
    let c = snap.check(name).expect("the check is in the snapshot");
    matches!(c.outcome, Outcome::Streamed(_))
}

/// `SELECT account, sum(amount)::text` of the given accounts, as PostgreSQL prints them.
fn sums(db: &TestDb, accounts: &[i32]) -> BTreeMap<String, String> {
    rt().block_on(async {
        let c = db.client().await;
        c.query(
            "SELECT account::text, sum(amount)::text FROM entries WHERE account = ANY($1) GROUP BY account",
            &[&accounts],
        )
        .await
        .expect("sums")
        .iter()
        .map(|r| {
            let sum: Option<String> = r.get(1);
            (r.get(0), sum.unwrap_or_else(|| "NULL".into()))
        })
        .collect()
    })
}

#[test]
fn many_groups_stream_and_exactly_the_changed_groups_are_found() {
    let db = world("stream_many_groups", ENTRIES);
    let spec = db.file("checks.toml", GROUPED);
    let base = db.path("base.json");
    let touched = [7, 11, 13, 1000, 200000, 300000];
    snapshot(&db, &spec, &base, None);
    assert!(
        streamed(&base, "per account, exact"),
        "250,000 groups go to a section at the default threshold"
    );
    let before = sums(&db, &touched);
    rt().block_on(db.exec(CHANGES));
    let after = sums(&db, &touched);
    let after_file = db.path("after.json");
    let changes = db.path("changes.csv");
    let (r, report) = verify(
        &db,
        &spec,
        &base,
        &["--save-after", p(&after_file), "--changes-out", p(&changes)],
        None,
    );
    assert_eq!(r.code, 1, "{r}");
    assert!(
        streamed(&after_file, "per account, exact"),
        "the post-state streams too"
    );

    let exact = check(&report, "per account, exact");
    assert_eq!(status(&report, "per account, exact"), "FAIL");
    let g = &exact["groups"];
    assert_eq!(
        (
            &g["baseline_groups"],
            &g["after_groups"],
            &g["changed"],
            &g["appeared"],
            &g["disappeared"],
            &g["failing"]
        ),
        (
            &250_000.into(),
            &250_000.into(),
            &6.into(),
            &1.into(),
            &1.into(),
            &6.into()
        ),
        "{exact:#}"
    );
    // Tolerance per group: +0.01 on account 7 is within 0.01, the other five are not.
    let tol = check(&report, "per account, within 0.01");
    assert_eq!(tol["groups"]["changed"], 6, "{tol:#}");
    assert_eq!(tol["groups"]["failing"], 5, "{tol:#}");
    let within: Vec<_> = tol["worst"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["ok"] == true)
        .map(|w| w["key"][0].as_str().unwrap())
        .collect();
    assert_eq!(within, ["7"], "{tol:#}");

    // The worst list: every changed sum, with PostgreSQL's exact digits on both sides.
    let worst: BTreeMap<&str, &serde_json::Value> = exact["worst"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["metric"] == "sum(amount)")
        .map(|w| (w["key"][0].as_str().unwrap(), w))
        .collect();
    let keys: Vec<&str> = worst.keys().copied().collect();
    assert_eq!(
        keys,
        ["1000", "11", "13", "200000", "300000", "7"],
        "{exact:#}"
    );
    for (k, want) in [("11", "group"), ("13", "group"), ("7", "group")] {
        assert_eq!(worst[k]["scope"], want);
        assert_eq!(
            worst[k]["baseline"].to_string().trim_matches('"'),
            before[k],
            "{k}"
        );
        assert_eq!(
            worst[k]["after"].to_string().trim_matches('"'),
            after[k],
            "{k}"
        );
    }
    assert_eq!(worst["11"]["difference"], "250.00");
    assert_eq!(worst["13"]["difference"], "-250.00");
    assert_eq!(worst["7"]["difference"], "0.01");
    // NULL is not zero: account 1000's NULL sum that became 42.50 has no difference.
    assert_eq!(before["1000"], "NULL");
    assert!(worst["1000"]["baseline"].is_null(), "{:#}", worst["1000"]);
    assert!(worst["1000"]["difference"].is_null(), "{:#}", worst["1000"]);
    assert_eq!(worst["200000"]["scope"], "disappeared");
    assert_eq!(worst["300000"]["scope"], "appeared");

    // --changes-out: every differing group and metric, nothing else.
    let lines = crate::changes_out::read_csv(&changes);
    let mut listed: Vec<(String, String)> = lines
        .iter()
        .filter(|l| l["check"] == "per account, exact")
        .map(|l| (l["key"].clone(), l["metric"].clone()))
        .collect();
    listed.sort();
    let mut want: Vec<(String, String)> = ["11", "13", "7", "1000"]
        .iter()
        .map(|k| (k.to_string(), "sum(amount)".to_string()))
        .chain(
            ["200000", "300000"]
                .iter()
                .flat_map(|k| ["count(*)", "sum(amount)"].map(|m| (k.to_string(), m.to_string()))),
        )
        .collect();
    want.sort();
    assert_eq!(listed, want, "{lines:#?}");
    let eleven = lines
        .iter()
        .find(|l| l["check"] == "per account, exact" && l["key"] == "11")
        .unwrap();
    assert_eq!(
        (eleven["baseline"].as_str(), eleven["after"].as_str()),
        (before["11"].as_str(), after["11"].as_str())
    );
}

/// Small enough for the in-memory path; `MIGVAL_SECTION_ROWS=0` sends every keyed result to a
/// section instead. Text keys in a non-C collation and a NULL group key, a custom keyed query,
/// totals.
const SMALL: &str = r#"
CREATE TABLE ledger (id int PRIMARY KEY, account text COLLATE "en_US", amount numeric(20,4));
INSERT INTO ledger
SELECT g, CASE WHEN g % 9 = 0 THEN NULL ELSE (ARRAY['a', 'B', 'é', 'Z', 'b'])[1 + g % 5] || (g % 7) END,
       123456789012345.6789 + g * 0.0001
FROM generate_series(1, 300) g;
"#;

const SMALL_SPEC: &str = r#"
[settings]
worst_groups = 4

[[check]]
name = "per account"
table = "ledger"
group_by = ["account"]
metrics = ["count(*)", "sum(amount)", "min(amount)"]
tolerance = { abs = "0.0002", scope = "both" }

[[check]]
name = "per entry"
sql = "SELECT id, amount, account FROM ledger"
key = ["id"]

[[check]]
name = "rows without account"
null_count = "ledger.account"
"#;

const SMALL_CHANGES: &str = r#"
UPDATE ledger SET amount = amount + 0.0001 WHERE id = 5;
UPDATE ledger SET amount = amount + 7 WHERE id = 6;
UPDATE ledger SET amount = NULL WHERE id = 8;
UPDATE ledger SET account = 'new' WHERE id = 10;
DELETE FROM ledger WHERE account = 'B3';
"#;

/// The report's checks and verdict (the origin and timings differ from run to run).
fn judged(report: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({ "checks": report["checks"], "verdict": report["verdict"] })
}

#[test]
fn the_streamed_and_in_memory_paths_give_the_same_report() {
    let collation_ok = rt().block_on(async {
        let db = TestDb::new("stream_same_probe").await;
        let c = db.client().await;
        c.simple_query("SELECT 'a' COLLATE \"en_US\"").await.is_ok()
    });
    let sql = if collation_ok {
        SMALL.to_string()
    } else {
        SMALL.replace(" COLLATE \"en_US\"", "")
    };
    // Three databases with the same data: in memory, streamed, and a format-1 baseline
    // verified with a streamed post-state.
    let mut reports = Vec::new();
    for (name, snap_rows, verify_rows) in [
        ("stream_same_memory", None, None),
        ("stream_same_sections", Some("0"), Some("0")),
        ("stream_same_mixed", None, Some("0")),
    ] {
        let db = world(name, &sql);
        let spec = db.file("checks.toml", SMALL_SPEC);
        let base = db.path("base.json");
        snapshot(&db, &spec, &base, snap_rows);
        let format = migval::store::read(&base).unwrap().format;
        assert_eq!(
            format,
            if snap_rows.is_some() {
                Snapshot::FORMAT_SECTIONS
            } else {
                Snapshot::FORMAT
            },
            "{name}"
        );
        assert_eq!(
            streamed(&base, "per account"),
            snap_rows.is_some(),
            "{name}"
        );
        assert_eq!(streamed(&base, "per entry"), snap_rows.is_some(), "{name}");
        rt().block_on(db.exec(SMALL_CHANGES));
        let (r, report) = verify(&db, &spec, &base, &[], verify_rows);
        assert_eq!(r.code, 1, "{name}{r}");
        reports.push((name, judged(&report)));
    }
    let (_, memory) = &reports[0];
    // What the in-memory path found, so "the same" is not "the same nothing".
    let account = &memory["checks"][0];
    assert_eq!(account["status"], "FAIL", "{account:#}");
    assert!(
        account["groups"]["changed"].as_u64().unwrap() >= 4,
        "{account:#}"
    );
    assert_eq!(account["groups"]["disappeared"], 1, "{account:#}");
    assert_eq!(account["groups"]["appeared"], 1, "{account:#}");
    let entry = &memory["checks"][1];
    let gone = entry["groups"]["disappeared"].as_u64().unwrap();
    assert!(gone >= 1, "{entry:#}");
    assert_eq!(
        entry["groups"]["changed"].as_u64().unwrap(),
        4 + gone,
        "{entry:#}"
    );
    for (name, r) in &reports[1..] {
        assert_eq!(r, memory, "{name} differs from the in-memory report");
    }
}

/// Numerics wider than 28 digits are compared as text by migval but ordered by value by the
/// server: the stream sees a key out of order, goes back to memory and sorts, and the result
/// is right.
#[test]
fn a_key_the_server_orders_differently_falls_back_to_memory() {
    let db = world(
        "stream_fallback",
        r#"
CREATE TABLE wide (id int PRIMARY KEY, k numeric, amount numeric(12,2));
INSERT INTO wide VALUES
  (1, 9, 1.00), (2, 1e30, 2.00), (3, 1e30 + 1, 3.00), (4, 9, 4.00);
"#,
    );
    let spec = db.file(
        "checks.toml",
        "[[check]]\nname = \"per k\"\ntable = \"wide\"\ngroup_by = [\"k\"]\nmetrics = [\"sum(amount)\"]\n",
    );
    let base = db.path("base.json");
    snapshot(&db, &spec, &base, Some("0"));
    assert!(
        !streamed(&base, "per k"),
        "out of migval's order: kept in memory"
    );
    rt().block_on(db.exec("UPDATE wide SET amount = 2.50 WHERE id = 2"));
    let (r, report) = verify(&db, &spec, &base, &[], Some("0"));
    assert_eq!(r.code, 1, "{r}");
    let c = check(&report, "per k");
    assert_eq!(c["groups"]["changed"], 1, "{c:#}");
    assert_eq!(c["groups"]["baseline_groups"], 3, "{c:#}");
    assert_eq!(
        c["worst"][0]["key"][0], "1000000000000000000000000000000",
        "{c:#}"
    );
    assert_eq!(c["worst"][0]["difference"], "0.50", "{c:#}");
}

#[test]
fn a_streamed_custom_query_refuses_a_duplicate_key_and_a_dropped_table_fails() {
    let db = world(
        "stream_custom",
        r#"
CREATE TABLE items (id int PRIMARY KEY, label text NOT NULL, price numeric(10,2));
INSERT INTO items SELECT g, 'l' || (g % 50), g * 0.5 FROM generate_series(1, 2000) g;
"#,
    );
    let dup = db.file(
        "dup.toml",
        "[[check]]\nname = \"dup\"\nsql = \"SELECT label, price FROM items\"\nkey = [\"label\"]\n",
    );
    let r = run(
        &[
            "snapshot",
            "--spec",
            p(&dup),
            "--out",
            p(&db.path("dup.json")),
            "--db",
            &db.url,
        ],
        Some("0"),
    );
    assert!(
        r.all()
            .contains("do not identify rows uniquely: key (l0) appears more than once"),
        "the duplicate key is named{r}"
    );

    let spec = db.file(
        "checks.toml",
        "[[check]]\nname = \"prices\"\nsql = \"SELECT id, price FROM items\"\nkey = [\"id\"]\n\n\
         [[check]]\nname = \"per label\"\ntable = \"items\"\ngroup_by = [\"label\"]\nmetrics = [\"sum(price)\"]\n",
    );
    let base = db.path("base.json");
    snapshot(&db, &spec, &base, Some("0"));
    assert!(streamed(&base, "prices") && streamed(&base, "per label"));
    rt().block_on(db.exec("UPDATE items SET price = price + 1 WHERE id IN (3, 1999)"));
    let (r, report) = verify(&db, &spec, &base, &[], Some("0"));
    assert_eq!(r.code, 1, "{r}");
    let prices = check(&report, "prices");
    let keys: Vec<&str> = prices["worst"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["key"][0].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["3", "1999"], "{prices:#}");
    assert_eq!(prices["groups"]["changed"], 2);

    // The migration drops the table: both checks fail (the tool did its job), not ERROR.
    rt().block_on(db.exec("DROP TABLE items"));
    let (r, report) = verify(&db, &spec, &base, &[], Some("0"));
    assert_eq!(r.code, 1, "{r}");
    assert_eq!(status(&report, "prices"), "FAIL", "{r}");
    assert_eq!(status(&report, "per label"), "FAIL", "{r}");
}
