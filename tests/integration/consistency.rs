//! One exported snapshot shared by every connection; timestamps normalised to UTC.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use migval::engine::{self, Limits};
use migval::model::{Outcome, Value};
use migval::spec::Spec;

use crate::common::{TestDb, connect, rt, snapshot_then, status};

#[test]
fn a_parallel_snapshot_is_consistent_while_money_moves_between_tables() {
    rt().block_on(async {
        let db = TestDb::new("consistency_money").await;
        db.exec(
            "CREATE TABLE checking (id int PRIMARY KEY, balance numeric(14,2) NOT NULL);
             CREATE TABLE savings  (id int PRIMARY KEY, balance numeric(14,2) NOT NULL);
             INSERT INTO checking SELECT g, 1000 FROM generate_series(1, 2000) g;
             INSERT INTO savings  SELECT g, 1000 FROM generate_series(1, 2000) g;",
        )
        .await;
        // Each check reads one table: they land on different connections.
        let spec = Spec::parse(
            "t.toml",
            r#"
[settings]
parallel = 4
[[check]]
name = "checking"
table = "checking"
metrics = ["sum(balance)"]
[[check]]
name = "savings"
table = "savings"
metrics = ["sum(balance)"]
[[check]]
name = "checking per id"
table = "checking"
group_by = ["id"]
metrics = ["sum(balance)"]
[[check]]
name = "savings per id"
table = "savings"
group_by = ["id"]
metrics = ["sum(balance)"]
"#,
        )
        .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let url = db.url.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let c = connect(&url).await;
                let mut i: i64 = 0;
                let mut moves = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let id = i32::try_from(i % 2000).unwrap() + 1;
                    let amount = format!("{}.{:02}", i % 97, i % 100);
                    let sql = format!(
                        "BEGIN; UPDATE checking SET balance = balance - {amount} WHERE id = {id};
                         UPDATE savings SET balance = balance + {amount} WHERE id = {id}; COMMIT;"
                    );
                    c.batch_execute(&sql).await.expect("writer");
                    moves += 1;
                }
                moves
            })
        };
        let mut sums_seen = Vec::new();
        for _ in 0..15 {
            let snap = engine::snapshot(&db.info(), &spec, Limits::from_spec(&spec))
                .await
                .expect("snapshot");
            assert!(
                snap.origin.connections >= 2,
                "the checks ran on several connections"
            );
            let total = |name: &str| match &snap.check(name).unwrap().outcome {
                Outcome::Captured(t) => t.row(0)[0].as_decimal().unwrap(),
                Outcome::Failed(f) => panic!("{f}"),
                Outcome::Absent(a) => panic!("absent: {a:?}"),
            };
            sums_seen.push(total("checking"));
            assert_eq!(
                total("checking") + total("savings"),
                "4000000.00".parse().unwrap(),
                "sum(checking) + sum(savings) must be constant in one snapshot"
            );
            let per_id = |name: &str| match &snap.check(name).unwrap().outcome {
                Outcome::Captured(t) => (0..t.len())
                    .map(|i| t.row(i)[1].as_decimal().unwrap())
                    .sum::<rust_decimal::Decimal>(),
                Outcome::Failed(f) => panic!("{f}"),
                Outcome::Absent(a) => panic!("absent: {a:?}"),
            };
            assert_eq!(
                per_id("checking per id") + per_id("savings per id"),
                "4000000.00".parse().unwrap()
            );
        }
        stop.store(true, Ordering::Relaxed);
        let moves = writer.await.unwrap();
        assert!(moves > 10, "the writer really ran ({moves} transfers)");
        sums_seen.dedup();
        assert!(
            sums_seen.len() > 1,
            "money moved between snapshots: {sums_seen:?}"
        );
    });
}

#[test]
fn timestamps_are_captured_in_utc_whatever_the_session_time_zone() {
    let db = rt().block_on(async {
        let db = TestDb::new("consistency_tz").await;
        db.exec(
            "CREATE TABLE events (id int PRIMARY KEY, at timestamptz NOT NULL, day date);
             INSERT INTO events VALUES (1, '2025-03-30 01:30:00+00', '2025-03-30'), (2, '2025-10-26 00:59:59.123456+00', '2025-10-26');",
        )
        .await;
        db.exec(&format!("ALTER DATABASE \"{}\" SET timezone = 'Asia/Tokyo'", db.name)).await;
        db
    });
    let spec = r#"
[[check]]
name = "event times"
sql = "SELECT id, at, day FROM events"
key = ["id"]

[[check]]
name = "latest event"
table = "events"
metrics = ["max(at)", "min(at)"]
"#;
    let (run, report) = snapshot_then(&db, spec, || {
        rt().block_on(db.exec(&format!(
            "ALTER DATABASE \"{}\" SET timezone = 'America/New_York'",
            db.name
        )))
    });
    assert_eq!(
        run.code, 0,
        "the same instants in another zone are unchanged{run}"
    );
    assert_eq!(status(&report, "event times"), "PASS");
    let latest = &report["checks"][1]["values"][0];
    assert_eq!(latest["after"], "2025-10-26 00:59:59.123456+00");
    assert_eq!(latest["baseline"], "2025-10-26 00:59:59.123456+00");

    // And directly through the engine: the value is text in UTC.
    rt().block_on(async {
        let spec = Spec::parse("t.toml", spec).unwrap();
        let snap = engine::snapshot(&db.info(), &spec, Limits::from_spec(&spec))
            .await
            .unwrap();
        let Outcome::Captured(t) = &snap.check("event times").unwrap().outcome else {
            panic!()
        };
        assert_eq!(t.row(0)[1], Value::Text("2025-03-30 01:30:00+00".into()));
    });
}

/// migval's own connections already run probes side by side: PostgreSQL's parallel workers
/// are off for them then (the load stays at `parallel` backends), unless
/// `settings.query_workers` asks for some; with a single connection the server decides.
#[test]
fn server_parallel_workers_are_off_while_several_connections_probe_unless_asked_for() {
    rt().block_on(async {
        let db = TestDb::new("consistency_query_workers").await;
        let server_default: String = db
            .client()
            .await
            .query_one(
                "SELECT current_setting('max_parallel_workers_per_gather')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let workers_seen = |settings: &'static str| {
            let db = &db;
            async move {
                let spec = Spec::parse(
                    "t.toml",
                    &format!(
                        r#"
[settings]
{settings}
[[check]]
name = "workers"
sql = "SELECT 1 AS k, current_setting('max_parallel_workers_per_gather') AS w"
key = ["k"]
[[check]]
name = "another probe"
sql = "SELECT 1 AS k"
key = ["k"]
"#
                    ),
                )
                .unwrap();
                let snap = engine::snapshot(&db.info(), &spec, Limits::from_spec(&spec))
                    .await
                    .unwrap();
                let Outcome::Captured(t) = &snap.check("workers").unwrap().outcome else {
                    panic!("not captured: {:?}", snap.check("workers"))
                };
                t.row(0)[1].clone()
            }
        };
        assert_eq!(workers_seen("parallel = 4").await, Value::Text("0".into()));
        assert_eq!(
            workers_seen("parallel = 1").await,
            Value::Text(server_default.into()),
            "one connection: the server's own setting"
        );
        assert_eq!(
            workers_seen("parallel = 4\nquery_workers = 3").await,
            Value::Text("3".into())
        );
    });
    let err = Spec::parse("t.toml", "[settings]\nquery_workers = 5000\n").unwrap_err();
    assert!(err.to_string().contains("settings.query_workers"), "{err}");
}
