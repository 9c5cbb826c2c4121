//! Tolerance and intent rules on real captures: per group versus total, every intent,
//! appeared/disappeared and NULL group keys, negative amounts, numeric(20,4) near 1e15, and
//! numerics wider than rust_decimal.

use crate::common::{TestDb, check, rt, snapshot_then, status};

const LEDGER: &str = r#"
CREATE TABLE ledger (id int PRIMARY KEY, account text, amount numeric(20,4));
INSERT INTO ledger VALUES
  (1, 'a', 999999999999999.9999),
  (2, 'a', -125.5000),
  (3, 'b', 100.0000),
  (4, 'b', -0.0001),
  (5, NULL, 50.0000),
  (6, NULL, NULL);
"#;

fn ledger(name: &str) -> TestDb {
    rt().block_on(async {
        let db = TestDb::new(name).await;
        db.exec(LEDGER).await;
        db
    })
}

#[test]
fn tolerance_per_group_versus_total() {
    let db = ledger("rules_scope");
    let spec = r#"
[[check]]
name = "exact per group"
table = "ledger"
group_by = ["account"]
metrics = ["sum(amount)"]

[[check]]
name = "exact on the total only"
table = "ledger"
group_by = ["account"]
metrics = ["sum(amount)"]
tolerance = { scope = "total" }

[[check]]
name = "0.01 per group and total"
table = "ledger"
group_by = ["account"]
metrics = ["sum(amount)"]
tolerance = { abs = "0.01", scope = "both" }

[[check]]
name = "0.001 per group and total"
table = "ledger"
group_by = ["account"]
metrics = ["sum(amount)"]
tolerance = { abs = "0.001", scope = "both" }

[[check]]
name = "0.1% relative per group"
table = "ledger"
group_by = ["account"]
metrics = ["sum(amount)"]
tolerance = { rel = "0.1%" }
"#;
    // 0.005 moves from account a to account b: every group changes, the total does not.
    let (run, report) = snapshot_then(&db, spec, || {
        rt().block_on(db.exec(
            "UPDATE ledger SET amount = amount - 0.005 WHERE id = 2;
             UPDATE ledger SET amount = amount + 0.005 WHERE id = 3;",
        ))
    });
    assert_eq!(run.code, 1, "{run}");
    assert_eq!(status(&report, "exact per group"), "FAIL");
    assert_eq!(status(&report, "exact on the total only"), "PASS");
    assert_eq!(status(&report, "0.01 per group and total"), "PASS");
    assert_eq!(status(&report, "0.001 per group and total"), "FAIL");
    assert_eq!(status(&report, "0.1% relative per group"), "PASS");
    let tight = check(&report, "0.001 per group and total");
    assert_eq!(tight["groups"]["failing"], 2);
    let total = tight["values"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["scope"] == "total")
        .unwrap();
    assert_eq!(total["ok"], true, "the total is unchanged: {total:#}");
    assert_eq!(total["after"], "1000000000000024.4998");
    assert!(
        check(&report, "0.01 per group and total")["tolerance"]
            .as_str()
            .unwrap()
            .contains("per group and total")
    );
}

#[test]
fn negative_amounts_and_numeric_near_1e15_are_exact() {
    let db = ledger("rules_exact");
    let spec = r#"
[[check]]
name = "ledger"
table = "ledger"
metrics = ["sum(amount)", "min(amount)", "max(amount)"]
"#;
    let (run, report) = snapshot_then(&db, spec, || {
        rt().block_on(db.exec("UPDATE ledger SET amount = amount + 0.0001 WHERE id = 1"))
    });
    assert_eq!(
        run.code, 1,
        "a change of 0.0001 on 1e15 must not vanish{run}"
    );
    let values = check(&report, "ledger")["values"]
        .as_array()
        .unwrap()
        .clone();
    let max = values
        .iter()
        .find(|v| v["metric"] == "max(amount)")
        .unwrap();
    assert_eq!(max["baseline"], "999999999999999.9999");
    assert_eq!(max["after"], "1000000000000000.0000");
    assert_eq!(max["difference"], "0.0001");
    let min = values
        .iter()
        .find(|v| v["metric"] == "min(amount)")
        .unwrap();
    assert_eq!(min["after"], "-125.5000");
    assert_eq!(min["ok"], true);
}

#[test]
fn appeared_and_disappeared_groups_are_differences_and_null_keys_match() {
    let db = ledger("rules_groups");
    let spec = r#"
[[check]]
name = "per account"
table = "ledger"
group_by = ["account"]
metrics = ["count(*)", "sum(amount)"]
"#;
    let (run, report) = snapshot_then(&db, spec, || {
        rt().block_on(db.exec(
            "DELETE FROM ledger WHERE account = 'b';
             INSERT INTO ledger VALUES (7, 'c', 10);",
        ))
    });
    assert_eq!(run.code, 1, "{run}");
    let c = check(&report, "per account");
    assert_eq!(c["groups"]["appeared"], 1);
    assert_eq!(c["groups"]["disappeared"], 1);
    assert_eq!(
        c["groups"]["changed"], 2,
        "the NULL group matched itself and did not change: {c:#}"
    );
    let worst = c["worst"].as_array().unwrap();
    assert!(
        worst
            .iter()
            .any(|w| w["scope"] == "appeared" && w["key"][0] == "c"),
        "{c:#}"
    );
    assert!(
        worst
            .iter()
            .any(|w| w["scope"] == "disappeared" && w["key"][0] == "b"),
        "{c:#}"
    );
}

#[test]
fn a_change_inside_the_null_group_is_caught() {
    let db = ledger("rules_null_key");
    let spec = r#"
[[check]]
name = "per account"
table = "ledger"
group_by = ["account"]
metrics = ["sum(amount)", "count(amount)"]
"#;
    let (run, report) = snapshot_then(&db, spec, || {
        // NULL -> 0 is a change: NULL is not zero.
        rt().block_on(db.exec("UPDATE ledger SET amount = 0 WHERE id = 6"))
    });
    assert_eq!(run.code, 1, "{run}");
    let c = check(&report, "per account");
    assert_eq!(c["groups"]["appeared"], 0);
    let w = &c["worst"][0];
    assert_eq!(w["key"][0], "NULL");
    assert_eq!(w["metric"], "count(amount)");
}

#[test]
fn every_intent() {
    let db = rt().block_on(async {
        let db = TestDb::new("rules_intents").await;
        db.exec(
            "CREATE TABLE jobs (id int PRIMARY KEY, worker text, status text, cost numeric(10,2));
             INSERT INTO jobs SELECT g, 'w' || (g % 3), CASE WHEN g <= 3 THEN 'pending' ELSE 'done' END, g * 2.5
             FROM generate_series(1, 10) g;",
        )
        .await;
        db
    });
    let spec = r#"
[[check]]
name = "pending becomes zero"
table = "jobs"
where = "status = 'pending'"
metrics = ["count(*)"]
expect = "zero"

[[check]]
name = "pending per worker becomes zero"
table = "jobs"
where = "status = 'pending'"
group_by = ["worker"]
metrics = ["count(*)"]
expect = "zero"

[[check]]
name = "done grows by exactly 3"
table = "jobs"
where = "status = 'done'"
metrics = ["count(*)"]
expect = { changes_by = 3 }

[[check]]
name = "still 10 jobs"
table = "jobs"
metrics = ["count(*)"]
expect = { equals = "10" }

[[check]]
name = "average cost within range"
table = "jobs"
metrics = ["avg(cost)"]
expect = { between = ["1", "100"] }

[[check]]
name = "costs may change"
table = "jobs"
metrics = ["sum(cost)"]
expect = "may_change"

[[check]]
name = "wrong expectation"
table = "jobs"
metrics = ["count(*)"]
expect = { equals = "11" }
"#;
    let (run, report) = snapshot_then(&db, spec, || {
        rt().block_on(
            db.exec("UPDATE jobs SET status = 'done', cost = cost + 1 WHERE status = 'pending'"),
        )
    });
    assert_eq!(run.code, 1, "{run}");
    for name in [
        "pending becomes zero",
        "pending per worker becomes zero",
        "done grows by exactly 3",
        "still 10 jobs",
        "average cost within range",
    ] {
        assert_eq!(
            status(&report, name),
            "PASS",
            "{name}: {:#}",
            check(&report, name)
        );
    }
    assert_eq!(status(&report, "costs may change"), "WARN");
    assert_eq!(status(&report, "wrong expectation"), "FAIL");
    assert_eq!(report["verdict"]["warned"], 1);
}

#[test]
fn numerics_wider_than_28_digits_are_never_rounded() {
    let db = rt().block_on(async {
        let db = TestDb::new("rules_wide").await;
        db.exec(
            "CREATE TABLE wide (id int PRIMARY KEY, v numeric);
             INSERT INTO wide VALUES
               (1, 0.000000000000000000000000000001),
               (2, 12345678901234567890.123456789012),
               (3, 'NaN'),
               (4, 123456789012345678901234567890123456789);",
        )
        .await;
        db
    });
    let spec = r#"
[[check]]
name = "wide values"
sql = "SELECT id, v FROM wide"
key = ["id"]
"#;
    // rust_decimal would round 1e-30 and 2e-30 both to 0 and see no change.
    let (run, report) = snapshot_then(&db, spec, || {
        rt().block_on(db.exec("UPDATE wide SET v = 0.000000000000000000000000000002 WHERE id = 1"))
    });
    assert_eq!(run.code, 1, "{run}");
    let c = check(&report, "wide values");
    assert_eq!(c["groups"]["changed"], 1, "{c:#}");
    let w = &c["worst"][0];
    assert_eq!(w["key"][0], "1");
    assert_eq!(w["baseline"], "0.000000000000000000000000000001");
    assert_eq!(w["after"], "0.000000000000000000000000000002");
}

#[test]
fn totals_of_min_and_max_timestamps_are_the_earliest_and_latest() {
    let db = rt().block_on(async {
        let db = TestDb::new("rules_min_max_time").await;
        db.exec(
            "CREATE TABLE ev (g int, at timestamptz);
             INSERT INTO ev VALUES (1, '2025-01-01 08:00+00'), (1, '2025-03-01 00:00+00'),
                                   (2, '2025-02-01 12:30+00'), (2, NULL);",
        )
        .await;
        db
    });
    let spec = r#"
[[check]]
name = "event times per group and total"
table = "ev"
group_by = ["g"]
metrics = ["count(*)", "min(at)", "max(at)"]
scope = "both"
"#;
    let (r, report) = snapshot_then(&db, spec, || {
        rt().block_on(
            db.exec("UPDATE ev SET at = '2025-04-01 00:00+00' WHERE at = '2025-02-01 12:30+00'"),
        );
    });
    assert_eq!(r.code, 1, "{r}");
    let c = check(&report, "event times per group and total");
    let total = |metric: &str| {
        c["values"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["metric"] == metric && v["scope"] == "total")
            .unwrap_or_else(|| panic!("no total for {metric}: {c:#}"))
            .clone()
    };
    let min = total("min(at)");
    assert_eq!(min["baseline"], "2025-01-01 08:00:00+00", "{min:#}");
    assert_eq!(min["ok"], true, "the earliest did not move: {min:#}");
    let max = total("max(at)");
    assert_eq!(max["baseline"], "2025-03-01 00:00:00+00", "{max:#}");
    assert_eq!(max["after"], "2025-04-01 00:00:00+00", "{max:#}");
    assert_eq!(max["ok"], false, "{max:#}");
}
