//! Capture under hostile input and interruptions (issue 11): thousands of metrics on one
//! table (PostgreSQL's 1664-entry target-list limit), `-- comments` ending user fragments,
//! nested and unterminated `/* */` comments in them,
//! Ctrl-C / SIGTERM of `snapshot` and `verify` with a probe still running on the server.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Run, TestDb, p, rt, snapshot_then, snapshot_to, status};
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

/// A grouped check with more metrics than one query may select (1,700 metrics plus the group
/// key: past PostgreSQL's 1664-entry target list) is split over several scans joined back on
/// the group key: every value captured under its own group and name, no SQLSTATE 54011.
#[test]
fn a_grouped_check_with_1700_metrics_is_split_and_joined_back_on_the_group_key() {
    let db = rt().block_on(async {
        let db = TestDb::new("capture_grouped_1700_metrics").await;
        db.exec(
            "CREATE TABLE wide (id int PRIMARY KEY, g text NOT NULL, a int NOT NULL, b int NOT NULL);
             INSERT INTO wide SELECT i, 'g' || (i % 4), i, i FROM generate_series(1, 40) i;",
        )
        .await;
        db
    });
    // Metric 1500 is the only one reading `b`; the others read `a`.
    let metrics: Vec<String> = (0..1700)
        .map(|i| {
            if i == 1500 {
                "\"max(b)\"".to_string()
            } else {
                format!("\"sum(a + {i})\"")
            }
        })
        .collect();
    let spec = format!(
        "[[check]]\nname = \"per group\"\ntable = \"wide\"\ngroup_by = [\"g\"]\nmetrics = [{}]\n\n\
         [[check]]\nname = \"total\"\ntable = \"wide\"\nmetrics = [\"count(*)\"]\n",
        metrics.join(", ")
    );
    // id 7 is in group g3 (7 % 4 = 3); the largest b there is 39.
    let (r, report) = snapshot_then(&db, &spec, || {
        rt().block_on(db.exec("UPDATE wide SET b = 1000 WHERE id = 7"))
    });
    assert!(!r.all().contains("54011"), "{r}");
    assert_eq!(r.code, 1, "only `max(b)` of group g3 changed{r}");
    assert_eq!(status(&report, "per group"), "FAIL", "{r}");
    assert_eq!(status(&report, "total"), "PASS", "{r}");
    let check = crate::common::check(&report, "per group");
    let text = check.to_string();
    assert!(!text.contains("\"error\""), "no value is an error{r}");
    assert_eq!(check["groups"]["baseline_groups"], 4, "{r}");
    assert_eq!(check["groups"]["after_groups"], 4, "{r}");
    assert_eq!(check["groups"]["failing"], 1, "one group fails{r}");
    let failing: Vec<String> = check["worst"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["ok"] == false)
        .map(|v| {
            format!(
                "{} {} {} -> {}",
                v["key"], v["metric"], v["baseline"], v["after"]
            )
        })
        .collect();
    assert_eq!(
        failing,
        vec!["[\"g3\"] \"max(b)\" 39 -> 1000".to_string()],
        "the one changed value, under its own group and name (parts joined on the key){r}"
    );
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

/// Block comments in fragments: nested ones (legal in PostgreSQL) run, and the other checks on
/// the same table with them; an unterminated `/*`, a stray `*/` or an unclosed literal would
/// swallow the rest of the fused query, so the spec is refused before anything runs, naming the
/// check, the key and the position.
#[test]
fn block_comments_in_fragments_nest_and_an_unterminated_one_is_refused_naming_the_check() {
    let db = rt().block_on(async {
        let db = TestDb::new("capture_fragment_block_comment").await;
        db.exec(
            "CREATE TABLE orders (id int PRIMARY KEY, status text, amount numeric(10,2));
             INSERT INTO orders SELECT g, CASE WHEN g % 3 = 0 THEN 'paid' ELSE 'open' END, g * 1.5
             FROM generate_series(1, 60) g;",
        )
        .await;
        db
    });
    let good = r#"
[[check]]
name = "paid orders"
table = "orders"
where = "status = 'paid' /* outer /* inner */ still a comment */"
metrics = ["count(*)", "sum(amount /* cents? no */)"]

[[check]]
name = "all orders"
table = "orders"
group_by = [{ as = "s", expr = "upper(status) /* a /* b */ */" }]
metrics = ["count(*)", "sum(amount)"]
"#;
    let (r, report) = snapshot_then(&db, good, || {});
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(status(&report, "paid orders"), "PASS", "{r}");
    assert_eq!(status(&report, "all orders"), "PASS", "{r}");
    let paid = &crate::common::check(&report, "paid orders")["values"][0];
    assert_eq!(
        paid["after"], 20,
        "the filter applied, the comment ignored{r}"
    );

    for (fragment, says) in [
        (
            "status = 'paid' /* outer /* inner */",
            "`/*` opened at character 17 is never closed",
        ),
        (
            "status = 'paid' */",
            "`*/` at character 17 closes a block comment that was never opened",
        ),
        (
            "status = 'paid",
            "string literal opened at character 10 is never closed",
        ),
    ] {
        let spec = db.file(
            "bad.toml",
            &format!(
                "[[check]]\nname = \"paid orders\"\ntable = \"orders\"\nwhere = \"{fragment}\"\n\
                 metrics = [\"count(*)\"]\n\n[[check]]\nname = \"all orders\"\ntable = \"orders\"\n\
                 metrics = [\"count(*)\"]\n"
            ),
        );
        let out = db.path("refused.json");
        let r = snapshot_to(&db, &spec, &out);
        assert_eq!(r.code, 2, "{fragment}{r}");
        assert!(
            r.stderr.contains("paid orders")
                && r.stderr.contains("where")
                && r.stderr.contains(says),
            "{fragment}: names the check, the key and the position{r}"
        );
        assert!(!r.all().contains("42601"), "refused before any SQL ran{r}");
        assert!(!out.exists(), "no baseline written{r}");
    }
}

/// A probe that sleeps 30 s while the table `slow_flag` has a row.
const SLOW_SPEC: &str = r#"
[settings]
parallel = 2

[[check]]
name = "slow probe"
sql = "SELECT 1 AS k, (SELECT 1 FROM pg_sleep(CASE WHEN EXISTS (SELECT 1 FROM slow_flag) THEN 30 ELSE 0 END)) AS v"
key = ["k"]

[[check]]
name = "rows"
table = "items"
metrics = ["count(*)"]
"#;

async fn slow_world(name: &str) -> TestDb {
    let db = TestDb::new(name).await;
    db.exec(
        "CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items SELECT generate_series(1, 10);
         CREATE TABLE slow_flag (on_ bool);",
    )
    .await;
    db
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    let c = db.client().await;
    c.query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", migval::db::failure(&e, None)))
        .get(0)
}

/// migval's own backends in the test's database, other than the asking one.
const MIGVAL_BACKENDS: &str = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
     AND application_name = 'migval' AND pid <> pg_backend_pid()";

/// Start `migval args`, wait until its slow probe sleeps on the server, send `signal`, and
/// check the promise: exit `code` quickly, no backend left, no lock left.
fn interrupt_mid_probe(db: &TestDb, args: &[&str], signal: &str, code: i32) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_migval"));
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k == "DATABASE_URL" || k.starts_with("PG") {
            cmd.env_remove(&k);
        }
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn migval");
    let t0 = Instant::now();
    while rt().block_on(count(
        db,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND application_name = 'migval' AND wait_event = 'PgSleep'",
    )) == 0
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the probe never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = Instant::now();
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait");
    let r = Run {
        cmd: format!("migval {}", args.join(" ")),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    };
    let exited_after = sent.elapsed();
    // No backend keeps running the probe or holding the exporter's locks.
    let t0 = Instant::now();
    loop {
        let left = rt().block_on(count(db, MIGVAL_BACKENDS));
        if left == 0 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "{left} migval backend(s) still there 3 s after it exited{r}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    rt().block_on(async {
        let c = db.client().await;
        c.batch_execute("SET lock_timeout = '500ms'; ALTER TABLE items ADD COLUMN x int; ALTER TABLE items DROP COLUMN x")
            .await
            .unwrap_or_else(|e| {
                panic!("the DBA's ALTER TABLE waited for a lock: {}{r}", migval::db::failure(&e, None))
            });
    });
    assert_eq!(r.code, code, "{r}");
    assert!(
        exited_after < Duration::from_secs(5),
        "exited {exited_after:?} after the signal{r}"
    );
    assert!(r.stderr.contains("cancelled on the server"), "{r}");
}

/// Issue 11, defect 3: Ctrl-C of `snapshot` exited at once but left its backends running the
/// probe (for 30 s here) with the exporter's ACCESS SHARE locks held.
#[test]
fn ctrl_c_of_snapshot_cancels_the_running_probe_and_leaves_no_backend() {
    let db = rt().block_on(slow_world("capture_ctrl_c_snapshot"));
    rt().block_on(db.exec("INSERT INTO slow_flag VALUES (true)"));
    let spec = db.file("checks.toml", SLOW_SPEC);
    let out = db.path("base.json");
    interrupt_mid_probe(
        &db,
        &[
            "snapshot",
            "--spec",
            p(&spec),
            "--out",
            p(&out),
            "--db",
            &db.url,
        ],
        "-INT",
        130,
    );
    assert!(
        !out.exists(),
        "no baseline written from an interrupted capture"
    );
}

/// The same for SIGTERM of `verify` (a CI job cancelled, `timeout`): exit 143.
#[test]
fn sigterm_of_verify_cancels_the_running_probe_and_leaves_no_backend() {
    let db = rt().block_on(slow_world("capture_sigterm_verify"));
    let spec = db.file("checks.toml", SLOW_SPEC);
    let base = db.path("base.json");
    let r = snapshot_to(&db, &spec, &base);
    assert_eq!(r.code, 0, "{r}");
    rt().block_on(db.exec("INSERT INTO slow_flag VALUES (true)"));
    interrupt_mid_probe(
        &db,
        &[
            "verify",
            "--spec",
            p(&spec),
            "--baseline",
            p(&base),
            "--db",
            &db.url,
        ],
        "-TERM",
        143,
    );
}
