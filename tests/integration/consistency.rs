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
                Outcome::Streamed(_) => panic!("an aggregate is not streamed"),
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
                Outcome::Streamed(_) => panic!("an aggregate is not streamed"),
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

/// Money moving between `checking` and `savings` (2000 accounts of 1000 each), until `stop`.
fn mover(url: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u32> {
    tokio::spawn(async move {
        // Not tagged `migval`: the tests find migval's own backends by that name.
        let sep = if url.contains('?') { '&' } else { '?' };
        let c = connect(&format!("{url}{sep}application_name=mover")).await;
        let mut i: i64 = 0;
        let mut moves = 0u32;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            let id = i32::try_from(i % 2000).unwrap() + 1;
            let amount = format!("{}.{:02}", i % 97, i % 100);
            c.batch_execute(&format!(
                "BEGIN; UPDATE checking SET balance = balance - {amount} WHERE id = {id};
                 UPDATE savings SET balance = balance + {amount} WHERE id = {id}; COMMIT;"
            ))
            .await
            .expect("writer");
            moves += 1;
        }
        moves
    })
}

async fn bank(name: &str) -> TestDb {
    let db = TestDb::new(name).await;
    db.exec(
        "CREATE TABLE checking (id int PRIMARY KEY, balance numeric(14,2) NOT NULL);
         CREATE TABLE savings  (id int PRIMARY KEY, balance numeric(14,2) NOT NULL);
         INSERT INTO checking SELECT g, 1000 FROM generate_series(1, 2000) g;
         INSERT INTO savings  SELECT g, 1000 FROM generate_series(1, 2000) g;",
    )
    .await;
    db
}

fn sum_of(snap: &migval::model::Snapshot, name: &str) -> rust_decimal::Decimal {
    match &snap.check(name).unwrap().outcome {
        Outcome::Captured(t) => t.row(0)[0].as_decimal().unwrap(),
        Outcome::Failed(f) => panic!("{name}: {f}"),
        Outcome::Absent(a) => panic!("absent: {a:?}"),
        Outcome::Streamed(_) => panic!("an aggregate is not streamed"),
    }
}

/// Negative control for `a_parallel_snapshot_is_consistent_while_money_moves_between_tables`:
/// the same two sums read in independent transactions (two captures, one table each) DO break
/// the invariant while money moves, so the invariant the consistency test asserts can fail.
#[test]
fn independent_transactions_break_the_invariant_the_consistency_test_asserts() {
    rt().block_on(async {
        let db = bank("consistency_negative_control").await;
        let one = |table: &str| {
            Spec::parse(
                "t.toml",
                &format!(
                    "[[check]]\nname = \"{table}\"\ntable = \"{table}\"\nmetrics = [\"sum(balance)\"]\n"
                ),
            )
            .unwrap()
        };
        let (checking, savings) = (one("checking"), one("savings"));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = mover(db.url.clone(), stop.clone());
        let constant: rust_decimal::Decimal = "4000000.00".parse().unwrap();
        let mut broken = 0;
        for _ in 0..40 {
            let a = engine::snapshot(&db.info(), &checking, Limits::from_spec(&checking))
                .await
                .expect("snapshot");
            let b = engine::snapshot(&db.info(), &savings, Limits::from_spec(&savings))
                .await
                .expect("snapshot");
            if sum_of(&a, "checking") + sum_of(&b, "savings") != constant {
                broken += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        let moves = writer.await.unwrap();
        assert!(moves > 10, "the writer really ran ({moves} transfers)");
        assert!(
            broken > 0,
            "two independent transactions never saw money in flight: the consistency test's \
             invariant could not catch a capture that does not share its snapshot"
        );
    });
}

/// Fault catalogue: the exporting session is terminated mid-capture (after the workers
/// imported its snapshot, while both connections run probes). The capture starts over with a
/// new snapshot: every check is captured, all in one snapshot (each probe reports
/// `pg_current_snapshot()`), and the invariant holds.
#[test]
fn the_exporter_terminated_mid_capture_restarts_the_capture_and_never_mixes_snapshots() {
    rt().block_on(async {
        let db = bank("consistency_exporter_killed").await;
        let spec = Spec::parse(
            "t.toml",
            r#"
[settings]
parallel = 2
[[check]]
name = "slow a"
sql = "SELECT 1 AS k, pg_current_snapshot()::text AS snap, (SELECT sum(balance) FROM checking) + (SELECT sum(balance) FROM savings) AS total, (SELECT 1 FROM pg_sleep(1.5)) AS slept"
key = ["k"]
[[check]]
name = "slow b"
sql = "SELECT 1 AS k, pg_current_snapshot()::text AS snap, (SELECT 1 FROM pg_sleep(1.5)) AS slept, (SELECT sum(balance) FROM savings) AS savings"
key = ["k"]
[[check]]
name = "checking"
table = "checking"
metrics = ["sum(balance)"]
"#,
        )
        .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let writer = mover(db.url.clone(), stop.clone());
        let capture = {
            let (info, spec) = (db.info(), spec.clone());
            tokio::spawn(async move {
                engine::snapshot(&info, &spec, Limits::from_spec(&spec)).await
            })
        };
        let admin = db.client().await;
        let t0 = std::time::Instant::now();
        loop {
            let sleeping: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND application_name = 'migval' AND wait_event = 'PgSleep'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if sleeping == 2 {
                break;
            }
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(20),
                "both probes never ran at once"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // The exporter connected first; the pooled worker after it.
        let ended: bool = admin
            .query_one(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND application_name = 'migval' \
                 AND pid <> pg_backend_pid() ORDER BY backend_start LIMIT 1",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(ended);
        let snap = capture.await.unwrap().expect("the capture started over and finished");
        stop.store(true, Ordering::Relaxed);
        writer.await.unwrap();
        assert!(
            t0.elapsed() >= std::time::Duration::from_millis(2500),
            "the capture ran its slow probes twice"
        );
        let row = |name: &str| match &snap.check(name).unwrap().outcome {
            Outcome::Captured(t) => t.row(0).to_vec(),
            other => panic!("{name} was not captured: {other:?}"),
        };
        let (a, b) = (row("slow a"), row("slow b"));
        // Columns: the key k, then snap, ... in the query's order.
        assert_eq!(a[1], b[1], "both probes ran in the same snapshot");
        assert_eq!(
            a[2].as_decimal().unwrap(),
            "4000000.00".parse().unwrap(),
            "the invariant holds inside the restarted capture"
        );
        assert_eq!(
            b[3].as_decimal().unwrap() + sum_of(&snap, "checking"),
            "4000000.00".parse().unwrap(),
            "sums read on different connections are of one snapshot"
        );
    });
}
