//! Capture under hostile input and interruptions (issue 11): thousands of metrics on one
//! table (PostgreSQL's 1664-entry target-list limit), `-- comments` ending user fragments,
//! Ctrl-C / SIGTERM of `snapshot` and `verify` with a probe still running on the server.

use crate::common::{TestDb, rt, snapshot_then, status};
use std::fmt::Write as _;

/// Issue 11, defect 9: 2000 metrics on one table were fused into one SELECT, and all of them
/// failed with SQLSTATE 54011 (target lists can have at most 1664 entries).
#[test]
fn two_thousand_metrics_on_one_table_are_captured_and_compared_value_by_value() {
    let db = rt().block_on(async {
        let db = TestDb::new("capture_2000_metrics").await;
        db.exec(
            "CREATE TABLE wide (id int PRIMARY KEY, a int NOT NULL, b int NOT NULL);
             INSERT INTO wide SELECT g, g, g FROM generate_series(1, 50) g;",
        )
        .await;
        db
    });
    // 5 checks of 100 metrics, then one check of 1500 alone (more than one scan may select),
    // whose metric number 1300 is the only one reading `b`.
    let mut spec = String::new();
    for c in 0..5 {
        let _ = writeln!(spec, "[[check]]\nname = \"batch {c}\"\ntable = \"wide\"");
        let metrics: Vec<String> = (0..100)
            .map(|i| format!("\"sum(a + {})\"", c * 100 + i))
            .collect();
        let _ = writeln!(spec, "metrics = [{}]\n", metrics.join(", "));
    }
    let metrics: Vec<String> = (0..1500)
        .map(|i| {
            if i == 1300 {
                "\"max(b)\"".to_string()
            } else {
                format!("\"min(a - {i})\"")
            }
        })
        .collect();
    let _ = writeln!(
        spec,
        "[[check]]\nname = \"wide one\"\ntable = \"wide\"\nmetrics = [{}]\n",
        metrics.join(", ")
    );
    let (r, report) = snapshot_then(&db, &spec, || {
        rt().block_on(db.exec("UPDATE wide SET b = 1000 WHERE id = 7"))
    });
    assert_eq!(r.code, 1, "only `max(b)` changed{r}");
    for c in 0..5 {
        assert_eq!(status(&report, &format!("batch {c}")), "PASS", "{r}");
    }
    assert_eq!(status(&report, "wide one"), "FAIL", "{r}");
    let failing: Vec<String> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["values"].as_array().cloned().unwrap_or_default())
        .filter(|v| v["ok"] == false)
        .map(|v| format!("{} {} -> {}", v["metric"], v["baseline"], v["after"]))
        .collect();
    assert_eq!(
        failing,
        vec!["\"max(b)\" 50 -> 1000".to_string()],
        "the one changed value, under its own name (parts kept in order){r}"
    );
    // Every value was captured: 2000 in all, none an error.
    let values: usize = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["values"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(values, 2000, "{r}");
    assert!(!r.all().contains("54011"), "{r}");
}

/// Issue 11, defect 11: a `where` ending in `-- note` swallowed the closing parenthesis of the
/// fused query, so every check on the same table failed with a syntax error. Before/after forms,
/// group keys and metric expressions embed user SQL the same way.
#[test]
fn a_trailing_comment_in_a_fragment_breaks_no_check() {
    let db = rt().block_on(async {
        let db = TestDb::new("capture_fragment_comment").await;
        db.exec(
            "CREATE TABLE orders (id int PRIMARY KEY, status text, amount numeric(10,2), note text);
             INSERT INTO orders SELECT g, CASE WHEN g % 3 = 0 THEN 'paid' ELSE 'open' END, g * 1.5,
                 CASE WHEN g % 5 = 0 THEN NULL ELSE 'n' END
             FROM generate_series(1, 60) g;",
        )
        .await;
        db
    });
    let spec = r#"
[[check]]
name = "paid orders"
table = "orders"
where = "status = 'paid' -- note: paid only"
metrics = ["count(*)", "sum(amount)"]

[[check]]
name = "all orders"
table = "orders"
metrics = ["count(*)", "sum(amount)"]

[[check]]
name = "notes missing"
null_count = "orders.note"
where = "amount > 3 -- big enough"

[[check]]
name = "sided"
table = "orders"
where = { before = "status = 'open' -- before", after = "status <> 'paid' -- after" }
metrics = ["count(*)", { metric = "sum(amount)", after = "sum(amount * 1) -- same" }]

[[check]]
name = "per status"
table = "orders"
group_by = [{ as = "s", expr = "upper(status) -- shout" }]
metrics = ["count(*)", "sum(amount + 0 -- plus nothing\n)"]
"#;
    let (r, report) = snapshot_then(&db, spec, || {});
    assert_eq!(r.code, 0, "{r}");
    for name in [
        "paid orders",
        "all orders",
        "notes missing",
        "sided",
        "per status",
    ] {
        assert_eq!(status(&report, name), "PASS", "{name}{r}");
    }
    let paid = &crate::common::check(&report, "paid orders")["values"][0];
    assert_eq!(paid["after"], 20, "the filter applied{r}");
}
