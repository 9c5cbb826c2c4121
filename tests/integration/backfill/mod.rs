//! `migval backfill` on the seed-002 world (fixtures/subscriber_fk): dry-run changes nothing,
//! --commit fills every resolvable row exactly once (a trigger counts updates per row), kill -9
//! and resume, a terminated backend, a row lock held elsewhere, a poison row, a changed spec on
//! resume, a concurrent run, Ctrl-C, composite and sparse keys.
//!
//! This file holds the world and the helpers the parts share (spec files, run/spawn/finish,
//! the wait_* helpers, the exactly-once assertion; pgbouncer.rs uses some of them); the tests
//! are in `dry_run` (checks before any write), `commit`, `resume` (kill, signals, leases),
//! `failures` (a misbehaving database), `lag` (the replication-lag ceiling) and
//! `report_formats` (the outcome in --format json/markdown/junit).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Run, TestDb, migval, p, rt};

mod commit;
mod dry_run;
mod failures;
mod lag;
mod report_formats;
mod resume;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/subscriber_fk");

/// Counts every UPDATE of each plan_subscriptions row.
const COUNT_UPDATES: &str = r#"
CREATE TABLE update_counts (id bigint PRIMARY KEY, n int NOT NULL);
CREATE FUNCTION count_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO update_counts VALUES (NEW.id, 1)
    ON CONFLICT (id) DO UPDATE SET n = update_counts.n + 1;
    RETURN NEW;
END $$;
CREATE TRIGGER count_update AFTER UPDATE ON plan_subscriptions
    FOR EACH ROW EXECUTE FUNCTION count_update();
"#;

/// Every (id, subscriber_id), hashed.
const STATE: &str = "SELECT md5(string_agg(id || ':' || coalesce(subscriber_id::text, '-'), ',' ORDER BY id)) FROM plan_subscriptions";

pub(crate) async fn world(name: &str, n: i64) -> TestDb {
    let db = TestDb::new(name).await;
    load_world(&db, n).await;
    db
}

/// The subscriber_fk schema, `n` plan_subscriptions rows and the update counter.
async fn load_world(db: &TestDb, n: i64) {
    db.exec(&std::fs::read_to_string(format!("{DIR}/schema.sql")).expect("schema.sql"))
        .await;
    db.exec(&format!("SELECT subscriber_fk_generate({n}); ANALYZE"))
        .await;
    db.exec(COUNT_UPDATES).await;
}

async fn text(db: &TestDb, sql: &str) -> String {
    let c = db.client().await;
    match c.query_one(sql, &[]).await {
        Ok(r) => r.get::<_, String>(0),
        Err(e) => panic!("{sql}: {}", migval::db::failure(&e, None)),
    }
}

async fn int(db: &TestDb, sql: &str) -> i64 {
    let c = db.client().await;
    match c.query_one(sql, &[]).await {
        Ok(r) => r.get::<_, i64>(0),
        Err(e) => panic!("{sql}: {}", migval::db::failure(&e, None)),
    }
}

/// The fixture's backfill.toml with its [batch] section replaced, written in the test dir.
pub(crate) fn spec_with(db: &TestDb, file: &str, batch: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(format!("{DIR}/backfill.toml")).expect("backfill.toml");
    let head = text.split("[batch]").next().expect("has [batch]");
    let head = head.replace(
        "checks = \"checks.toml\"",
        &format!("checks = \"{DIR}/checks.toml\""),
    );
    db.file(file, &format!("{head}[batch]\n{batch}\n"))
}

fn run(db: &TestDb, spec: &std::path::Path, extra: &[&str]) -> Run {
    let log = db.path("rows.csv");
    let mut args = vec!["backfill", p(spec), "--db", &db.url, "--log", p(&log)];
    args.extend_from_slice(extra);
    migval(&args)
}

fn spawn(db: &TestDb, spec: &std::path::Path, extra: &[&str]) -> Child {
    spawn_at(&db.url, db, spec, extra, &[])
}

/// `migval backfill` started in the background against `url`, with `env` added.
pub(crate) fn spawn_at(
    url: &str,
    db: &TestDb,
    spec: &std::path::Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Child {
    let log = db.path("rows.csv");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_migval"));
    cmd.args(["backfill", p(spec), "--db", url, "--log", p(&log)]);
    cmd.args(extra);
    for (k, _) in std::env::vars() {
        if k == "DATABASE_URL" || k.starts_with("PG") {
            cmd.env_remove(&k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().expect("spawn migval")
}

pub(crate) fn finish(child: Child) -> Run {
    let out = child.wait_with_output().expect("wait for migval");
    Run {
        cmd: "migval backfill (spawned)".into(),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

/// The value of a line of the final summary, e.g. "Updated successfully:   1,234" -> "1,234".
fn summary(r: &Run, label: &str) -> String {
    r.stdout
        .lines()
        .find(|l| l.starts_with(label))
        .and_then(|l| l.split_whitespace().last())
        .unwrap_or_else(|| panic!("no summary line `{label}`{r}"))
        .to_string()
}

/// Committed batches of the latest run (0 before the progress table exists).
async fn batches_committed(db: &TestDb) -> i64 {
    let c = db.client().await;
    c.query_one(
        "SELECT coalesce(max(batches), 0)::int8 FROM migval.backfill_runs",
        &[],
    )
    .await
    .map(|r| r.get::<_, i64>(0))
    .unwrap_or(0)
}

/// Committed batches as a standby sees them (0 while it has not replayed the database yet).
async fn batches_replayed(standby: &TestDb) -> i64 {
    match migval::db::connect(&standby.info()).await {
        Ok(c) => c
            .query_one(
                "SELECT coalesce(max(batches), 0)::int8 FROM migval.backfill_runs",
                &[],
            )
            .await
            .map(|r| r.get::<_, i64>(0))
            .unwrap_or(0),
        Err(_) => 0,
    }
}

/// Wait until at least `n` batches are committed (panics after 60 s).
pub(crate) fn wait_for_batches(db: &TestDb, n: i64) {
    let t0 = Instant::now();
    while rt().block_on(batches_committed(db)) < n {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the backfill never committed {n} batches"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait until the backfill's backend sleeps in a test trigger (pg_sleep; panics after 60 s).
fn wait_until_frozen(db: &TestDb) {
    let t0 = Instant::now();
    loop {
        let frozen = rt().block_on(int(
            db,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name = 'migval-backfill:subscriber_fk' AND wait_event = 'PgSleep'",
        ));
        if frozen > 0 {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the batch never froze"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Rows the ambiguity rule flags (left NULL by design).
const AMBIGUOUS: &str =
    "SELECT count(*) FROM plan_subscriptions WHERE (customer_id % 50) IN (0, 1)";

/// Asserts the end state every successful run must reach: resolvable rows filled with the
/// oldest active subscriber, ambiguous rows NULL, every row updated at most once.
pub(crate) async fn assert_filled_exactly_once(db: &TestDb) {
    let wrong = int(
        db,
        "SELECT count(*) FROM plan_subscriptions WHERE customer_id % 50 > 1 \
         AND subscriber_id IS DISTINCT FROM customer_id * 10 + 1",
    )
    .await;
    assert_eq!(
        wrong, 0,
        "resolvable rows hold the oldest active subscriber"
    );
    let ambiguous_set = int(
        db,
        "SELECT count(*) FROM plan_subscriptions WHERE customer_id % 50 <= 1 AND subscriber_id IS NOT NULL",
    )
    .await;
    assert_eq!(ambiguous_set, 0, "ambiguous rows stay NULL");
    let twice = int(db, "SELECT count(*) FROM update_counts WHERE n <> 1").await;
    assert_eq!(twice, 0, "no row was updated twice");
    let updated = int(db, "SELECT count(*) FROM update_counts").await;
    let expected = int(
        db,
        "SELECT count(*) FROM plan_subscriptions WHERE customer_id % 50 > 1 AND id % 10 <> 0",
    )
    .await;
    assert_eq!(
        updated, expected,
        "every resolvable pending row updated once"
    );
}

#[test]
fn every_backfill_state_query_prepares() {
    rt().block_on(async {
        let db = TestDb::new("backfill_state_queries").await;
        db.exec(migval::sql::BACKFILL_STATE_DDL.sql).await;
        // Twice: the DDL is idempotent.
        db.exec(migval::sql::BACKFILL_STATE_DDL.sql).await;
        let c = db.client().await;
        for q in migval::sql::BACKFILL_STATE {
            if let Err(e) = c.prepare(q.sql).await {
                panic!(
                    "queries/{} does not prepare: {}",
                    q.name,
                    migval::db::failure(&e, None)
                );
            }
            assert!(q.sql.trim_start().starts_with("--"), "{} header", q.name);
        }
    });
}
