//! `migval backfill` on the seed-002 world (fixtures/subscriber_fk): dry-run changes nothing,
//! --commit fills every resolvable row exactly once (a trigger counts updates per row), kill -9
//! and resume, a terminated backend, a row lock held elsewhere, a poison row, a changed spec on
//! resume, a concurrent run, Ctrl-C, composite and sparse keys.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Run, TestDb, migval, p, rt};

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

#[test]
fn dry_run_changes_nothing_and_reports_what_would_happen() {
    let db = rt().block_on(world("backfill_dry_run", 2000));
    let before = rt().block_on(text(&db, STATE));
    // No replica here: the lag ceiling reads 0 and never holds a batch back.
    let spec = spec_with(&db, "bf.toml", "size = 300\nmax_replication_lag = \"1s\"");
    let r = run(&db, &spec, &[]);
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stderr.contains("DRY-RUN"), "{r}");
    assert!(r.stdout.contains("DRY-RUN: nothing was changed"), "{r}");
    let ambiguous = rt().block_on(int(&db, AMBIGUOUS));
    assert_eq!(summary(&r, "Ambiguous"), ambiguous.to_string(), "{r}");
    assert_eq!(summary(&r, "Total rows checked"), "2,000", "{r}");
    assert!(
        r.stdout.contains("Estimated duration with --commit:"),
        "{r}"
    );
    // The dry-run's own log lists the rows that would be left alone.
    let csv = std::fs::read_to_string(db.path("rows.csv")).expect("dry-run log");
    assert_eq!(
        i64::try_from(csv.lines().count() - 1).unwrap(),
        ambiguous,
        "{csv}"
    );
    assert_eq!(before, rt().block_on(text(&db, STATE)), "data unchanged");
    assert_eq!(
        rt().block_on(int(&db, "SELECT count(*) FROM update_counts")),
        0
    );
    let schema = rt().block_on(int(
        &db,
        "SELECT count(*) FROM pg_namespace WHERE nspname = 'migval'",
    ));
    assert_eq!(schema, 0, "a dry-run creates no progress table");
}

#[test]
fn commit_fills_every_resolvable_row_once_and_logs_ambiguous_rows() {
    let db = rt().block_on(world("backfill_commit", 3000));
    let spec = spec_with(&db, "bf.toml", "size = 400");
    let r = run(&db, &spec, &["--commit"]);
    assert_eq!(r.code, 2, "no terminal and no --yes: refused{r}");
    assert!(r.stderr.contains("add --yes"), "{r}");
    assert_eq!(
        rt().block_on(int(&db, "SELECT count(*) FROM update_counts")),
        0
    );

    let r = run(&db, &spec, &["--commit", "--yes"]);
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("VALIDATION PASSED"), "{r}");
    rt().block_on(assert_filled_exactly_once(&db));

    // The CSV names each ambiguous row with its reason and candidate count.
    let csv = std::fs::read_to_string(db.path("rows.csv")).expect("row log");
    let ambiguous = rt().block_on(int(&db, AMBIGUOUS));
    let lines: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(i64::try_from(lines.len()).unwrap(), ambiguous, "{csv}");
    assert!(
        csv.starts_with("run,batch,kind,id,reason,candidates\n"),
        "{csv}"
    );
    // Customer 1 has two active subscribers created together; customer 50 none active.
    assert!(
        csv.contains(",ambiguous,1,several active subscribers share the oldest created_at,2\n"),
        "{csv}"
    );
    assert!(
        csv.contains(",ambiguous,100,no active subscriber,0\n"),
        "{csv}"
    );

    // A re-run only does what is left: nothing. With --format json, stdout is the report alone
    // (the summary moves to stderr).
    let again = run(&db, &spec, &["--commit", "--yes", "--format", "json"]);
    assert_eq!(again.code, 0, "{again}");
    let report: serde_json::Value = serde_json::from_str(&again.stdout)
        .unwrap_or_else(|e| panic!("stdout is not the JSON report ({e}){again}"));
    assert_eq!(report["command"], "verify", "{again}");
    let updated = again
        .stderr
        .lines()
        .find(|l| l.starts_with("Updated successfully"))
        .and_then(|l| l.split_whitespace().last());
    assert_eq!(updated, Some("0"), "{again}");
    rt().block_on(assert_filled_exactly_once(&db));
}

#[test]
fn kill_9_mid_run_then_resume_gives_the_uninterrupted_result_exactly_once() {
    let reference = rt().block_on(world("backfill_kill_ref", 3000));
    let db = rt().block_on(world("backfill_kill", 3000));
    let batch = "size = 50\npause = \"40ms\"";
    let r = run(
        &reference,
        &spec_with(&reference, "bf.toml", batch),
        &["--commit", "--yes"],
    );
    assert_eq!(r.code, 0, "{r}");

    let spec = spec_with(&db, "bf.toml", batch);
    let mut child = spawn(&db, &spec, &["--commit", "--yes"]);
    wait_for_batches(&db, 8);
    child.kill().expect("kill -9");
    let killed = finish(child);
    assert_ne!(killed.code, 0, "{killed}");
    let done_at_kill = rt().block_on(batches_committed(&db));
    assert!(
        done_at_kill < 60,
        "killed before the end ({done_at_kill} batches)"
    );

    let resumed = run(&db, &spec, &["--commit", "--yes"]);
    assert_eq!(resumed.code, 0, "{resumed}");
    assert!(
        resumed.stderr.contains("resuming run 1 after key"),
        "{resumed}"
    );
    assert!(resumed.stdout.contains("VALIDATION PASSED"), "{resumed}");
    assert_eq!(
        rt().block_on(text(&db, STATE)),
        rt().block_on(text(&reference, STATE)),
        "same final state as the uninterrupted run"
    );
    rt().block_on(assert_filled_exactly_once(&db));
    // The run's counters cover every row once, across both invocations.
    let checked = rt().block_on(int(
        &db,
        "SELECT rows_checked FROM migval.backfill_runs WHERE run_id = 1",
    ));
    assert_eq!(checked, 3000);
}

#[test]
fn kill_9_inside_a_batch_rolls_that_batch_back_and_the_resume_applies_it_once() {
    let db = rt().block_on(world("backfill_kill_inside", 2000));
    // Freeze the batch that updates row 1203 (once: sequences ignore rollbacks), so that the
    // kill lands inside it.
    rt().block_on(db.exec(
        "CREATE SEQUENCE freeze_once; \
         CREATE FUNCTION freeze_batch() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF NEW.id = 1203 AND nextval('freeze_once') = 1 THEN PERFORM pg_sleep(30); END IF; \
         RETURN NEW; END $$; \
         CREATE TRIGGER freeze_batch BEFORE UPDATE ON plan_subscriptions FOR EACH ROW EXECUTE FUNCTION freeze_batch();",
    ));
    let spec = spec_with(&db, "bf.toml", "size = 100\nstatement_timeout = \"60s\"");
    let mut child = spawn(&db, &spec, &["--commit", "--yes"]);
    wait_until_frozen(&db);
    let committed = rt().block_on(batches_committed(&db));
    child.kill().expect("kill -9");
    let _ = finish(child);
    // Nothing of the frozen batch is visible: 12 batches (ids 1..1200) committed, not 13.
    assert_eq!(committed, 12);
    assert_eq!(
        rt().block_on(int(
            &db,
            "SELECT count(*) FROM update_counts WHERE id > 1200"
        )),
        0,
        "the killed batch left nothing behind"
    );
    // The resume waits for (or finds gone) the killed run's backend, then finishes.
    let resumed = run(&db, &spec, &["--commit", "--yes", "--wait", "60s"]);
    assert_eq!(resumed.code, 0, "{resumed}");
    assert!(
        resumed.stderr.contains("resuming run 1 after key (1200)"),
        "{resumed}"
    );
    rt().block_on(assert_filled_exactly_once(&db));
}

/// Killed after a batch wrote its log lines but before it committed: the resumed run meets those
/// rows again and does not log them a second time.
#[test]
fn kill_9_between_the_log_and_the_commit_logs_each_row_once() {
    let db = rt().block_on(world("backfill_kill_log", 3000));
    let spec = spec_with(&db, "bf.toml", "size = 50\npause = \"100ms\"");
    let mut child = spawn(&db, &spec, &["--commit", "--yes"]);
    wait_for_batches(&db, 1);
    // Freeze the progress update (written after the log lines, before COMMIT) of a batch a few
    // ahead, once.
    let target = rt().block_on(batches_committed(&db)) + 5;
    rt().block_on(db.exec(&format!(
        "CREATE SEQUENCE freeze_log_once; \
         CREATE FUNCTION freeze_progress() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF NEW.batches = {target} AND nextval('freeze_log_once') = 1 THEN PERFORM pg_sleep(30); END IF; \
         RETURN NEW; END $$; \
         CREATE TRIGGER freeze_progress BEFORE UPDATE ON migval.backfill_runs FOR EACH ROW EXECUTE FUNCTION freeze_progress();"
    )));
    wait_until_frozen(&db);
    child.kill().expect("kill -9");
    let _ = finish(child);
    let log_path = db.path("rows.csv");
    let logged_lines = |text: &str| -> Vec<(String, String, String)> {
        text.lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f[1].to_string(), f[2].to_string(), f[3].to_string())
            })
            .collect()
    };
    let before = std::fs::read_to_string(&log_path).expect("row log");
    let uncommitted = logged_lines(&before)
        .iter()
        .filter(|(batch, _, _)| batch == &target.to_string())
        .count();
    assert!(
        uncommitted > 0,
        "batch {target} logged its rows before the kill (else this test proves nothing):\n{before}"
    );
    let resumed = run(&db, &spec, &["--commit", "--yes", "--wait", "60s"]);
    assert_eq!(resumed.code, 0, "{resumed}");
    rt().block_on(assert_filled_exactly_once(&db));
    let after = std::fs::read_to_string(&log_path).expect("row log");
    let lines = logged_lines(&after);
    let mut keys: Vec<(String, String)> = lines
        .iter()
        .map(|(_, k, key)| (k.clone(), key.clone()))
        .collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "a row logged twice:\n{after}");
    let ambiguous = rt().block_on(int(&db, AMBIGUOUS));
    assert_eq!(
        lines.iter().filter(|(_, k, _)| k == "ambiguous").count(),
        usize::try_from(ambiguous).unwrap(),
        "every ambiguous row logged once:\n{after}"
    );
}

#[test]
fn a_terminated_backend_mid_run_reconnects_and_finishes() {
    let db = rt().block_on(world("backfill_terminate", 3000));
    let spec = spec_with(&db, "bf.toml", "size = 50\npause = \"40ms\"");
    let child = spawn(&db, &spec, &["--commit", "--yes"]);
    wait_for_batches(&db, 5);
    let ended = rt().block_on(int(
        &db,
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'migval-backfill:subscriber_fk' AND datname = current_database()) t",
    ));
    assert_eq!(ended, 1, "one tagged backend");
    let r = finish(child);
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stderr.contains("reconnected"), "{r}");
    rt().block_on(assert_filled_exactly_once(&db));
}

#[test]
fn a_row_lock_held_elsewhere_times_out_retries_and_succeeds_when_released() {
    let db = rt().block_on(world("backfill_row_lock", 1000));
    let spec = spec_with(
        &db,
        "bf.toml",
        "size = 100\nlock_timeout = \"200ms\"\nretries = 8",
    );
    rt().block_on(async {
        let holder = db.client().await;
        holder
            .batch_execute("BEGIN; SELECT * FROM plan_subscriptions WHERE id = 503 FOR UPDATE")
            .await
            .expect("lock row 503");
        let child = spawn(&db, &spec, &["--commit", "--yes"]);
        // Hold the lock until the backfill has hit it at least once.
        let t0 = Instant::now();
        loop {
            if batches_committed(&db).await >= 5 || t0.elapsed() > Duration::from_secs(30) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(1200)).await;
        holder.batch_execute("COMMIT").await.expect("release");
        let r = finish(child);
        assert_eq!(r.code, 0, "{r}");
        assert!(
            r.stderr.contains("SQLSTATE 55P03") && r.stderr.contains("retrying"),
            "{r}"
        );
        assert_filled_exactly_once(&db).await;
    });
}

#[test]
fn a_poison_row_is_isolated_logged_and_the_rest_applied() {
    let db = rt().block_on(world("backfill_poison", 1000));
    rt().block_on(db.exec(
        // 953 sits in the batch 801..1000, whose keys sort differently as text ("1000" < "801"):
        // the bisection must split by key order, not text order.
        "ALTER TABLE plan_subscriptions ADD CONSTRAINT no_777 CHECK (id NOT IN (777, 953) OR subscriber_id IS NULL)",
    ));
    let spec = spec_with(&db, "bf.toml", "size = 200");
    let r = run(&db, &spec, &["--commit", "--yes"]);
    // Row 777 stays NULL although resolvable: the NULL check fails, as it should.
    assert_eq!(r.code, 1, "{r}");
    assert_eq!(summary(&r, "Errors"), "2", "{r}");
    assert!(r.stderr.contains("row (777) fails on its own"), "{r}");
    let csv = std::fs::read_to_string(db.path("rows.csv")).expect("row log");
    let line = csv
        .lines()
        .find(|l| l.contains(",error,777,"))
        .unwrap_or_else(|| panic!("777 logged as error: {csv}"));
    assert!(line.contains("23514"), "{line}");
    let filled = rt().block_on(int(
        &db,
        "SELECT count(*) FROM plan_subscriptions WHERE customer_id % 50 > 1 AND subscriber_id IS NULL",
    ));
    assert_eq!(filled, 2, "only the poison rows are left");
    assert!(csv.contains(",error,953,"), "{csv}");
    let twice = rt().block_on(int(&db, "SELECT count(*) FROM update_counts WHERE n <> 1"));
    assert_eq!(twice, 0);
}

#[test]
fn resuming_with_a_changed_spec_is_refused_unless_a_new_run_is_asked_for() {
    let db = rt().block_on(world("backfill_changed_spec", 1000));
    // A failure that is not retryable stops the run half-way (status failed).
    rt().block_on(db.exec(
        "CREATE FUNCTION stop_at_603() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF NEW.id = 603 THEN RAISE EXCEPTION 'maintenance stop'; END IF; RETURN NEW; END $$; \
         CREATE TRIGGER stop_at_603 BEFORE UPDATE ON plan_subscriptions FOR EACH ROW EXECUTE FUNCTION stop_at_603();",
    ));
    let spec = spec_with(&db, "bf.toml", "size = 100");
    let r = run(&db, &spec, &["--commit", "--yes"]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("maintenance stop"), "{r}");
    assert!(r.stderr.contains("rerun the same command"), "{r}");
    rt().block_on(db.exec("DROP TRIGGER stop_at_603 ON plan_subscriptions"));

    let text = std::fs::read_to_string(&spec).unwrap();
    let changed = db.file(
        "bf_changed.toml",
        &text.replace(
            "ORDER BY s.created_at, s.id",
            "ORDER BY s.created_at DESC, s.id",
        ),
    );
    let refused = run(&db, &changed, &["--commit", "--yes"]);
    assert_eq!(refused.code, 2, "{refused}");
    assert!(
        refused.stderr.contains("made with a different spec"),
        "{refused}"
    );
    assert!(refused.stderr.contains("--new-run"), "{refused}");

    // The original spec resumes and finishes.
    let resumed = run(&db, &spec, &["--commit", "--yes"]);
    assert_eq!(resumed.code, 0, "{resumed}");
    assert!(resumed.stderr.contains("resuming run 1"), "{resumed}");
    rt().block_on(assert_filled_exactly_once(&db));

    // --new-run is accepted (nothing open any more, so it simply starts run 2).
    let fresh = run(&db, &changed, &["--commit", "--yes", "--new-run"]);
    assert_eq!(fresh.code, 0, "{fresh}");
    assert!(fresh.stderr.contains("run 2 started"), "{fresh}");
}

#[test]
fn a_second_concurrent_run_is_refused() {
    let db = rt().block_on(world("backfill_concurrent", 3000));
    let spec = spec_with(&db, "bf.toml", "size = 50\npause = \"50ms\"");
    let mut first = spawn(&db, &spec, &["--commit", "--yes"]);
    wait_for_batches(&db, 2);
    let second = run(&db, &spec, &["--commit", "--yes", "--wait", "500ms"]);
    assert_eq!(second.code, 2, "{second}");
    assert!(
        second
            .stderr
            .contains("another run of backfill `subscriber_fk` is in progress"),
        "{second}"
    );
    // It names the holder: the first run's client (host:pid) and when its lease expires.
    let first_pid = first.id();
    assert!(
        second
            .stderr
            .contains(&format!(":{first_pid} holds its lease")),
        "{second}"
    );
    assert!(second.stderr.contains("expires in"), "{second}");
    // --cancel-orphans does not end the backend of a run that is alive.
    let third = run(
        &db,
        &spec,
        &["--commit", "--yes", "--wait", "500ms", "--cancel-orphans"],
    );
    assert_eq!(third.code, 2, "{third}");
    assert!(
        third.stderr.contains("is still alive on this host"),
        "{third}"
    );
    // The first run goes on untroubled.
    first.kill().expect("kill");
    let _ = finish(first);
    let r = run(&db, &spec, &["--commit", "--yes"]);
    assert_eq!(r.code, 0, "{r}");
    rt().block_on(assert_filled_exactly_once(&db));
}

/// A run killed where this host cannot see its process (HOSTNAME differs: another machine, a
/// container): its lease holds until it expires, by the server's clock, then the next run takes
/// over and finishes; nothing is applied twice.
#[test]
fn a_killed_runs_lease_is_taken_over_once_it_expires() {
    let db = rt().block_on(world("backfill_lease_expiry", 3000));
    let spec = spec_with(&db, "bf.toml", "size = 50\npause = \"50ms\"");
    let lease = ["--commit", "--yes", "--lease", "3s"];
    let mut first = spawn_at(&db.url, &db, &spec, &lease, &[("HOSTNAME", "elsewhere")]);
    wait_for_batches(&db, 2);
    first.kill().expect("kill -9 the first run");
    let _ = finish(first);
    let at_kill = rt().block_on(batches_committed(&db));
    let early = run(&db, &spec, &[&lease[..], &["--wait", "200ms"]].concat());
    assert_eq!(early.code, 2, "the lease has not expired yet{early}");
    assert!(
        early.stderr.contains("the run of client elsewhere:")
            && early.stderr.contains("holds its lease"),
        "{early}"
    );
    let later = run(&db, &spec, &[&lease[..], &["--wait", "10s"]].concat());
    assert_eq!(later.code, 0, "{later}");
    assert!(
        later.stderr.contains("took over the lease") && later.stderr.contains("expired"),
        "{later}"
    );
    assert!(
        later.stderr.contains("resuming run 1"),
        "the same run goes on after the last committed batch{later}"
    );
    assert!(rt().block_on(batches_committed(&db)) > at_kill);
    rt().block_on(assert_filled_exactly_once(&db));
}

/// A run whose lease lapsed (a pause longer than the lease) and was taken over stops at its
/// next batch, before changing anything: the two runs never both apply batches.
#[test]
fn a_run_whose_lease_was_taken_over_stops_before_its_next_batch() {
    let db = rt().block_on(world("backfill_lease_lost", 3000));
    let slow = spec_with(&db, "slow.toml", "size = 50\npause = \"4s\"");
    let fast = spec_with(&db, "fast.toml", "size = 50");
    let first = spawn_at(
        &db.url,
        &db,
        &slow,
        &["--commit", "--yes", "--lease", "1s"],
        &[("HOSTNAME", "elsewhere")],
    );
    wait_for_batches(&db, 1);
    let second = run(
        &db,
        &fast,
        &["--commit", "--yes", "--lease", "1s", "--wait", "10s"],
    );
    assert_eq!(second.code, 0, "{second}");
    assert!(second.stderr.contains("took over the lease"), "{second}");
    let first = finish(first);
    assert_eq!(first.code, 2, "{first}");
    assert!(
        first.stderr.contains("was taken over by another run"),
        "{first}"
    );
    rt().block_on(assert_filled_exactly_once(&db));
}

#[test]
fn ctrl_c_rolls_back_the_batch_keeps_progress_and_exits_130() {
    stopped_mid_run("backfill_ctrl_c", "-INT", 130);
}

/// SIGTERM (a service manager, `timeout`, a container stopping) stops the run like Ctrl-C.
#[test]
fn sigterm_rolls_back_the_batch_keeps_progress_and_exits_143() {
    stopped_mid_run("backfill_sigterm", "-TERM", 143);
}

fn stopped_mid_run(name: &str, signal: &str, code: i32) {
    let db = rt().block_on(world(name, 3000));
    let spec = spec_with(&db, "bf.toml", "size = 50\npause = \"50ms\"");
    let child = spawn(&db, &spec, &["--commit", "--yes"]);
    wait_for_batches(&db, 3);
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let r = finish(child);
    assert_eq!(r.code, code, "{r}");
    assert!(r.stdout.contains("resume with: migval backfill"), "{r}");
    assert!(r.stdout.contains("--commit"), "{r}");
    let state = rt().block_on(text(
        &db,
        "SELECT status || ':' || (batches > 0)::text FROM migval.backfill_runs WHERE run_id = 1",
    ));
    assert_eq!(state, "interrupted:true");
    // The client is gone; its backend ends once it reads the closed socket.
    let t0 = Instant::now();
    loop {
        let left = rt().block_on(int(
            &db,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'migval-backfill:subscriber_fk' AND datname = current_database() AND state <> 'idle'",
        ));
        if left == 0 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "a backend stayed busy after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let resumed = run(&db, &spec, &["--commit", "--yes"]);
    assert_eq!(resumed.code, 0, "{resumed}");
    rt().block_on(assert_filled_exactly_once(&db));
}

const KEYS: &str = r#"
CREATE TABLE events (
    tenant int NOT NULL,
    id bigint NOT NULL,
    label text,
    PRIMARY KEY (tenant, id)
);
INSERT INTO events SELECT t, i, NULL FROM generate_series(1, 3) t, generate_series(1, 250) i;
CREATE TABLE sparse (id bigint PRIMARY KEY, doubled bigint);
INSERT INTO sparse VALUES (1, NULL), (2, NULL), (1000000, NULL), (1000000000000, NULL);
"#;

#[test]
fn composite_and_sparse_keys_terminate_and_cover_every_row() {
    let db = rt().block_on(async {
        let db = TestDb::new("backfill_keys").await;
        db.exec(KEYS).await;
        db
    });
    let composite = db.file(
        "events.toml",
        "name = \"events_label\"\ntable = \"events\"\nkey = [\"tenant\", \"id\"]\n\
         pending = \"label IS NULL\"\nset = \"label = tenant || '/' || id\"\n[batch]\nsize = 7\n",
    );
    let r = run(&db, &composite, &["--commit", "--yes"]);
    assert_eq!(r.code, 0, "{r}");
    // 750 rows in batches of 7: 108 batches, then one that finds no key.
    assert!(r.stdout.contains("Batches: 108 "), "{r}");
    let left = rt().block_on(int(
        &db,
        "SELECT count(*) FROM events WHERE label IS DISTINCT FROM tenant || '/' || id",
    ));
    assert_eq!(left, 0);

    // Sparse keys with a whole UPDATE statement and its two placeholders.
    let sparse = db.file(
        "sparse.toml",
        "name = \"sparse\"\ntable = \"sparse\"\nkey = [\"id\"]\npending = \"doubled IS NULL\"\n\
         update = \"UPDATE sparse SET doubled = id * 2 WHERE id BETWEEN $1 AND $2 AND doubled IS NULL\"\n\
         [batch]\nsize = 1\n",
    );
    let r = run(&db, &sparse, &["--commit", "--yes"]);
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("Batches: 4 "), "{r}");
    let left = rt().block_on(int(
        &db,
        "SELECT count(*) FROM sparse WHERE doubled IS DISTINCT FROM id * 2",
    ));
    assert_eq!(left, 0);
}

#[test]
fn spec_mistakes_are_reported_before_any_batch() {
    let db = rt().block_on(world("backfill_bad_spec", 100));
    let spec = spec_with(&db, "bf.toml", "size = 10");
    let text = std::fs::read_to_string(&spec).unwrap();
    let typo = db.file(
        "typo.toml",
        &text.replace(
            "pending = \"subscriber_id IS NULL\"",
            "pending = \"subscriber IS NULL\"",
        ),
    );
    let r = run(&db, &typo, &["--commit", "--yes"]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("key `pending` does not run"), "{r}");
    assert!(r.stderr.contains("42703"), "{r}");
    let not_unique = db.file(
        "nu.toml",
        &text.replace("key = [\"id\"]", "key = [\"customer_id\"]"),
    );
    let r = run(&db, &not_unique, &[]);
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr
            .contains("is not the primary key or a unique constraint"),
        "{r}"
    );
    let schema = rt().block_on(int(
        &db,
        "SELECT count(*) FROM pg_namespace WHERE nspname = 'migval'",
    ));
    assert_eq!(schema, 0, "nothing written");
}

#[test]
fn an_update_statement_that_decides_an_ambiguous_row_is_stopped_and_rolled_back() {
    let db = rt().block_on(world("backfill_update_guess", 500));
    let spec = spec_with(&db, "bf.toml", "size = 100");
    let text = std::fs::read_to_string(&spec).unwrap();
    let set_start = text.find("set = \"\"\"").expect("set");
    let set_end = set_start + text[set_start..].find("\"\"\"\n\n").expect("end of set") + 5;
    let guessing = format!(
        "{}update = \"\"\"\nUPDATE plan_subscriptions SET subscriber_id = (SELECT s.id FROM subscribers s \
         WHERE s.customer_id = plan_subscriptions.customer_id AND s.status = 'active' \
         ORDER BY s.created_at, s.id LIMIT 1)\nWHERE id BETWEEN $1 AND $2 AND subscriber_id IS NULL\n\"\"\"\n\n{}",
        &text[..set_start],
        &text[set_end..]
    );
    let spec = db.file("guess.toml", &guessing);
    let r = run(&db, &spec, &["--commit", "--yes"]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("which the ambiguity rule flags"), "{r}");
    assert_eq!(
        rt().block_on(int(&db, "SELECT count(*) FROM update_counts")),
        0,
        "the batch that guessed was rolled back"
    );
}

#[test]
fn a_statement_timeout_halves_the_batch_until_it_fits() {
    let db = rt().block_on(world("backfill_shrink", 600));
    // 3 ms per row: 400 rows take 1.2 s, over the 500 ms statement_timeout; 100 rows fit.
    rt().block_on(db.exec(
        "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN PERFORM pg_sleep(0.003); RETURN NEW; END $$; \
         CREATE TRIGGER slow BEFORE UPDATE ON plan_subscriptions FOR EACH ROW EXECUTE FUNCTION slow();",
    ));
    let spec = spec_with(&db, "bf.toml", "size = 400\nstatement_timeout = \"500ms\"");
    let r = run(&db, &spec, &["--commit", "--yes"]);
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stderr.contains("batch size 400 -> 200"), "{r}");
    assert!(r.stderr.contains("SQLSTATE 57014"), "{r}");
    rt().block_on(assert_filled_exactly_once(&db));
}

#[test]
fn seed_002_step_1_then_step_2_on_the_subscriber_schema_world() {
    let schema_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/subscriber_schema");
    let db = rt().block_on(async {
        let db = TestDb::new("backfill_seed_002_steps").await;
        db.exec(&std::fs::read_to_string(format!("{schema_dir}/schema.sql")).expect("schema"))
            .await;
        db.exec("SELECT subscriber_schema_generate(3000)").await;
        // Step 1: the migration adds the nullable subscriber_id.
        db.exec(
            &std::fs::read_to_string(format!("{schema_dir}/migration.sql")).expect("migration"),
        )
        .await;
        db
    });
    let spec = format!("{DIR}/after_subscriber_schema.toml");
    let spec = std::path::Path::new(&spec);
    let dry = run(&db, spec, &[]);
    assert_eq!(dry.code, 0, "{dry}");
    let r = run(&db, spec, &["--commit", "--yes"]);
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("VALIDATION PASSED"), "{r}");
    // The NULLs left are exactly the logged rows, and both kinds of ambiguity occur.
    let nulls = rt().block_on(int(
        &db,
        "SELECT count(*) FROM plan_subscriptions WHERE subscriber_id IS NULL",
    ));
    let csv = std::fs::read_to_string(db.path("rows.csv")).expect("row log");
    // The dry-run wrote its own lines first (run `dry-run`); the commit appended run 1's.
    let committed = csv.lines().filter(|l| l.starts_with("1,")).count();
    assert_eq!(i64::try_from(committed).unwrap(), nulls, "{csv}");
    assert!(csv.contains(",no active subscriber,0\n"), "{csv}");
    assert!(
        csv.contains(",several active subscribers share the oldest created_at,2\n"),
        "{csv}"
    );
    assert_eq!(
        summary(&dry, "Updated successfully"),
        summary(&r, "Updated successfully")
    );
}

#[test]
fn a_server_restart_mid_run_is_survived_and_nothing_is_applied_twice() {
    // A private cluster: restarting the shared one would disturb the other tests.
    let mut cluster = migval::cluster::Cluster::start(&migval::cluster::ClusterOptions::default())
        .expect("start a private PostgreSQL");
    let url = cluster.url("postgres");
    rt().block_on(async {
        let c = crate::common::connect(&url).await;
        let schema = std::fs::read_to_string(format!("{DIR}/schema.sql")).expect("schema.sql");
        c.batch_execute(&format!(
            "{schema}; SELECT subscriber_fk_generate(3000); ANALYZE; {COUNT_UPDATES}"
        ))
        .await
        .expect("load the world");
    });
    let scratch = std::env::temp_dir().join(format!("migval-test-restart-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let text = std::fs::read_to_string(format!("{DIR}/backfill.toml")).expect("backfill.toml");
    let head = text.split("[batch]").next().expect("[batch]").replace(
        "checks = \"checks.toml\"",
        &format!("checks = \"{DIR}/checks.toml\""),
    );
    let spec = scratch.join("bf.toml");
    std::fs::write(
        &spec,
        format!("{head}[batch]\nsize = 50\npause = \"40ms\"\n"),
    )
    .unwrap();
    let log = scratch.join("rows.csv");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_migval"));
    cmd.args([
        "backfill",
        p(&spec),
        "--db",
        &url,
        "--commit",
        "--yes",
        "--log",
        p(&log),
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k == "DATABASE_URL" || k.starts_with("PG") {
            cmd.env_remove(&k);
        }
    }
    let child = cmd.spawn().expect("spawn migval");
    let t0 = Instant::now();
    loop {
        let done = rt().block_on(async {
            let c = crate::common::connect(&url).await;
            c.query_one(
                "SELECT coalesce(max(batches), 0)::int8 FROM migval.backfill_runs",
                &[],
            )
            .await
            .map(|r| r.get::<_, i64>(0))
            .unwrap_or(0)
        });
        if done >= 5 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "no progress");
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster
        .restart(Duration::from_secs(2))
        .expect("restart PostgreSQL");
    let r = finish(child);
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.stderr.contains("reconnect failed"),
        "the server was down for a while{r}"
    );
    assert!(r.stderr.contains("reconnected"), "{r}");
    assert!(r.stdout.contains("VALIDATION PASSED"), "{r}");
    rt().block_on(async {
        let c = crate::common::connect(&url).await;
        let twice: i64 = c
            .query_one("SELECT count(*) FROM update_counts WHERE n <> 1", &[])
            .await
            .expect("count")
            .get(0);
        assert_eq!(twice, 0, "no row updated twice");
        let left: i64 = c
            .query_one(
                "SELECT count(*) FROM plan_subscriptions WHERE customer_id % 50 > 1 AND subscriber_id IS NULL",
                &[],
            )
            .await
            .expect("count")
            .get(0);
        assert_eq!(left, 0, "every resolvable row filled");
    });
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn rows_the_change_cannot_fill_are_counted_and_logged_as_no_match() {
    let db = rt().block_on(world("backfill_no_match", 1000));
    let spec = spec_with(&db, "bf.toml", "size = 250");
    let text = std::fs::read_to_string(&spec).unwrap();
    // Without the [ambiguity] rule, customers with no active subscriber get no value.
    let cut = text.find("[ambiguity]").expect("[ambiguity]");
    let batch = text.find("[batch]").expect("[batch]");
    let spec = db.file(
        "no_rule.toml",
        &format!("{}{}", &text[..cut], &text[batch..]).replace("checks = ", "# checks = "),
    );
    let r = run(&db, &spec, &["--commit", "--yes"]);
    assert_eq!(r.code, 0, "{r}");
    let expected = rt().block_on(int(
        &db,
        "SELECT count(*) FROM plan_subscriptions WHERE customer_id % 50 = 0 AND subscriber_id IS NULL",
    ));
    assert!(expected > 0);
    assert_eq!(
        summary(&r, "Skipped (no match)"),
        expected.to_string(),
        "{r}"
    );
    let csv = std::fs::read_to_string(db.path("rows.csv")).expect("row log");
    let logged = csv.lines().filter(|l| l.contains(",no_match,")).count();
    assert_eq!(i64::try_from(logged).unwrap(), expected, "{csv}");
}

#[test]
fn cancel_orphans_ends_a_leftover_backend_that_holds_the_lock() {
    let db = rt().block_on(world("backfill_orphan", 500));
    let spec = spec_with(&db, "bf.toml", "size = 100");
    rt().block_on(async {
        // A session that looks like the backend of a killed run: our tag, holding the lock.
        let orphan_url = format!(
            "{}{}application_name=migval-backfill%3Asubscriber_fk",
            db.url,
            if db.url.contains('?') { "&" } else { "?" }
        );
        let orphan = crate::common::connect(&orphan_url).await;
        orphan
            .batch_execute("SELECT pg_advisory_lock(28022, hashtext('subscriber_fk'))")
            .await
            .expect("take the lock");
        let pid: i32 = orphan
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .expect("pid")
            .get(0);

        let refused = run(&db, &spec, &["--commit", "--yes", "--wait", "300ms"]);
        assert_eq!(refused.code, 2, "{refused}");
        assert!(
            refused.stderr.contains(&format!("backend pid {pid}")),
            "the refusal names the holder{refused}"
        );
        assert!(refused.stderr.contains("--cancel-orphans"), "{refused}");

        let r = run(&db, &spec, &["--commit", "--yes", "--cancel-orphans"]);
        assert_eq!(r.code, 0, "{r}");
        assert!(
            r.stderr
                .contains(&format!("--cancel-orphans: ended backend pid {pid}")),
            "{r}"
        );
        assert!(orphan.is_closed() || orphan.simple_query("SELECT 1").await.is_err());
        assert_filled_exactly_once(&db).await;
    });
}

/// One row of pg_stat_replication on `url`: (streaming standbys, worst replay_lag in ms or -1).
async fn replication(url: &str) -> (i64, i64) {
    let c = crate::common::connect(url).await;
    let r = c
        .query_one(
            "SELECT count(*) FILTER (WHERE state = 'streaming'), \
             coalesce(max(round(extract(epoch FROM replay_lag) * 1000)), -1)::int8 \
             FROM pg_stat_replication",
            &[],
        )
        .await
        .expect("read pg_stat_replication");
    (r.get(0), r.get(1))
}

/// A spawned backfill whose stderr is read line by line as it comes (to act on a message).
struct Watched {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    reader: std::thread::JoinHandle<Vec<String>>,
}

impl Watched {
    fn start(db: &TestDb, spec: &std::path::Path, extra: &[&str]) -> Watched {
        use std::io::BufRead;
        let mut child = spawn(db, spec, extra);
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line.clone());
                all.push(line);
            }
            all
        });
        Watched {
            child,
            lines,
            reader,
        }
    }

    /// Wait (at most `limit`) for a stderr line containing `text`.
    fn wait_for_line(&self, text: &str, limit: Duration) -> Option<String> {
        let t0 = Instant::now();
        while let Some(left) = limit.checked_sub(t0.elapsed()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    }

    fn finish(mut self) -> Run {
        use std::io::Read;
        let status = self.child.wait().expect("wait for migval");
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            let _ = out.read_to_string(&mut stdout);
        }
        let stderr = self.reader.join().expect("stderr reader").join("\n");
        Run {
            cmd: "migval backfill (spawned)".into(),
            code: status.code().unwrap_or(-1),
            stdout,
            stderr,
        }
    }
}

/// The replication-lag ceiling against a real streaming standby that replays everything 2 s
/// late (recovery_min_apply_delay), while another session keeps committing on the primary as
/// on any production server. pg_stat_replication measures a lag when the standby replays, and
/// keeps the last value until the standby has replayed everything twice in a row; with commits
/// arriving every 200 ms that never happens, so replay_lag always reads 1-2 s (the lag tracker
/// interpolates between commits), above the 500 ms ceiling. The backfill must wait before every batch, yet finish: each wait ends once
/// the standby has replayed what was written before it began (the batches so far), so the
/// standby is never more than one batch behind. Ctrl-C during a wait exits at once.
#[test]
fn max_replication_lag_waits_for_a_lagging_standby_before_each_batch() {
    use migval::cluster::{Cluster, ClusterOptions};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    if migval::cluster::find_bin_dir().is_none()
        && std::env::var_os("MIGVAL_TEST_DATABASE_URL").is_some()
    {
        eprintln!(
            "skipped: a streaming standby needs the local PostgreSQL server binaries \
             (initdb, pg_ctl, pg_basebackup); MIGVAL_TEST_DATABASE_URL's server cannot be given one"
        );
        return;
    }
    let t_start = Instant::now();
    // A private primary: other tests use max_replication_lag on the shared server and must not
    // see this standby. synchronous_commit on (the throwaway default is off), as in
    // production: a batch's COMMIT has reached the WAL sent to the standby when it returns.
    let primary = Cluster::start(&ClusterOptions {
        settings: vec![("synchronous_commit".into(), "on".into())],
        ..ClusterOptions::default()
    })
    .expect("start a private primary");
    // Declared after the primary: dropped (stopped) first.
    let standby = primary
        .start_standby(&ClusterOptions {
            settings: vec![
                ("recovery_min_apply_delay".into(), "2s".into()),
                ("wal_receiver_status_interval".into(), "1s".into()),
            ],
            ..ClusterOptions::default()
        })
        .expect("start a streaming standby");
    let name = "t_backfill_replica";
    let dir = std::env::temp_dir().join(format!("migval-test-replica-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let db = TestDb {
        name: name.into(),
        url: primary.url(name),
        dir: dir.clone(),
    };
    let replica = TestDb {
        name: name.into(),
        url: standby.url(name),
        dir: dir.clone(),
    };
    rt().block_on(async {
        let admin = crate::common::connect(&primary.url("postgres")).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        load_world(&db, 1500).await;
    });

    // Another session commits every 200 ms (into the `postgres` database, out of the checks'
    // way) until the end of the test.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let stop = Arc::clone(&stop);
        let url = primary.url("postgres");
        std::thread::spawn(move || {
            rt().block_on(async move {
                let c = crate::common::connect(&url).await;
                c.batch_execute("CREATE TABLE traffic (at timestamptz)")
                    .await
                    .expect("create traffic table");
                while !stop.load(Ordering::Relaxed) {
                    // Quietly: a failing test stops the primary under this thread.
                    if c.batch_execute("INSERT INTO traffic VALUES (now())")
                        .await
                        .is_err()
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
        })
    };

    // The standby is attached and streaming, and its lag is measured above the ceiling before
    // the backfill starts: the waits below cannot come from anything else.
    let t0 = Instant::now();
    let lag_before = loop {
        let (streaming, lag_ms) = rt().block_on(replication(&primary.url("postgres")));
        if streaming == 1 && lag_ms > 1000 {
            break lag_ms;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "pg_stat_replication never showed the standby streaming with a replay_lag above 1 s \
             (streaming: {streaming}, replay_lag: {lag_ms} ms)"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("before the backfill: replay_lag {lag_before} ms");

    let spec = spec_with(
        &db,
        "bf.toml",
        "size = 500\nmax_replication_lag = \"500ms\"",
    );
    let waiting = "is above max_replication_lag 500 ms: waiting";

    // A role that may not read the replicas' lag (not superuser, not in pg_read_all_stats) sees
    // only their pids: the ceiling cannot be honoured, so the backfill refuses before any batch.
    rt().block_on(async {
        let c = crate::common::connect(&db.url).await;
        c.batch_execute(&format!(
            "CREATE ROLE lag_blind LOGIN; \
             GRANT CREATE ON DATABASE {name} TO lag_blind; \
             GRANT USAGE, CREATE ON SCHEMA public TO lag_blind; \
             GRANT ALL ON ALL TABLES IN SCHEMA public TO lag_blind"
        ))
        .await
        .expect("create a role without pg_read_all_stats");
    });
    let blind = TestDb {
        name: name.into(),
        url: db.url.replacen("postgres@", "lag_blind@", 1),
        dir: dir.clone(),
    };
    for extra in [&[][..], &["--commit", "--yes"][..]] {
        let r = run(&blind, &spec, extra);
        assert_eq!(r.code, 2, "{r}");
        assert!(
            r.stderr
                .contains("role `lag_blind` cannot read the lag of 1 attached replica")
                && r.stderr
                    .contains("GRANT pg_read_all_stats TO \"lag_blind\""),
            "{r}"
        );
    }
    assert_eq!(
        rt().block_on(int(&db, "SELECT count(*) FROM update_counts")),
        0,
        "a refused backfill changed rows"
    );

    // Ctrl-C while waiting (before the first batch) exits at once, nothing applied.
    let first = Watched::start(&db, &spec, &["--commit", "--yes"]);
    let line = first.wait_for_line(waiting, Duration::from_secs(60));
    let pid = first.child.id().to_string();
    let sent = Instant::now();
    let status = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let r = first.finish();
    let exit_after = sent.elapsed();
    println!("Ctrl-C while waiting: exit {} after {exit_after:?}", r.code);
    assert!(
        line.is_some(),
        "the backfill never waited for the standby{r}"
    );
    assert_eq!(r.code, 130, "{r}");
    assert!(
        exit_after < Duration::from_secs(1),
        "Ctrl-C while waiting took {exit_after:?} to exit{r}"
    );
    assert_eq!(
        rt().block_on(int(&db, "SELECT count(*) FROM update_counts")),
        0,
        "no batch ran while the standby lagged{r}"
    );

    // The same run resumed, to the end. Progress is watched on both servers: the primary never
    // commits a batch before the standby has replayed the one before it.
    let mut second = Watched::start(&db, &spec, &["--commit", "--yes"]);
    let rt = rt();
    // Its connection is cut while it waits before the first batch: it reconnects and waits on.
    assert!(
        second
            .wait_for_line(waiting, Duration::from_secs(60))
            .is_some(),
        "the resumed run never waited"
    );
    let cut: i64 = rt.block_on(int(
        &db,
        &format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = '{name}' AND application_name LIKE 'migval-backfill:%'"
        ),
    ));
    assert_eq!(cut, 1, "the waiting backfill's backend was not found");
    let t0 = Instant::now();
    let mut widest = 0;
    let mut timeline = Vec::new();
    let (mut lag_min, mut lag_max) = (i64::MAX, i64::MIN);
    loop {
        let (_, lag_ms) = rt.block_on(replication(&primary.url("postgres")));
        lag_min = lag_min.min(lag_ms);
        lag_max = lag_max.max(lag_ms);
        // Primary first: the standby's count can only have grown by the time it is read.
        let on_primary = rt.block_on(batches_committed(&db));
        let on_standby = rt.block_on(batches_replayed(&replica));
        if timeline.last() != Some(&(on_primary, on_standby)) {
            timeline.push((on_primary, on_standby));
        }
        widest = widest.max(on_primary - on_standby);
        if second.child.try_wait().expect("try_wait").is_some() {
            break;
        }
        if t0.elapsed() > Duration::from_secs(120) {
            let _ = second.child.kill();
            panic!(
                "the backfill did not finish within 120 s behind the standby \
                 (batches primary/standby: {timeline:?}){}",
                second.finish()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = second.finish();
    let took = t0.elapsed();
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stderr.contains("resuming run 1"), "{r}");
    let waits: Vec<&str> = r.stderr.lines().filter(|l| l.contains(waiting)).collect();
    for l in r
        .stderr
        .lines()
        .filter(|l| l.contains(waiting) || l.contains("caught up"))
    {
        println!("{l}");
    }
    println!(
        "batches (primary, standby) over time: {timeline:?}; replay_lag seen {lag_min}..{lag_max} ms; \
         resumed run took {took:?}"
    );
    // Three batches, then the check that finds no key left: each waited, and went on; the
    // wait whose connection was cut started over after the reconnect.
    assert!(waits.len() >= 4, "waited before every batch{r}");
    assert!(
        r.stderr
            .contains("connection lost while waiting for the replicas")
            && r.stderr.contains("reconnected"),
        "{r}"
    );
    let resumed = r.stderr.matches("replicas caught up after").count();
    assert_eq!(
        resumed + 1,
        waits.len(),
        "every wait but the cut one ended{r}"
    );
    assert!(r.stdout.contains("VALIDATION PASSED"), "{r}");
    rt.block_on(assert_filled_exactly_once(&db));
    assert!(
        widest <= 1,
        "a batch committed before the standby had replayed the one before it \
         (batches primary/standby: {timeline:?})"
    );

    // In the end the standby holds exactly the primary's rows.
    stop.store(true, Ordering::Relaxed);
    traffic.join().expect("traffic thread");
    let state = rt.block_on(text(&db, STATE));
    let t0 = Instant::now();
    rt.block_on(async {
        let p = crate::common::connect(&primary.url("postgres")).await;
        let flushed: String = p
            .query_one("SELECT pg_current_wal_flush_lsn()::text", &[])
            .await
            .expect("flush lsn")
            .get(0);
        let s = crate::common::connect(&standby.url("postgres")).await;
        loop {
            let replayed: bool = s
                .query_one(
                    "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                    &[&flushed],
                )
                .await
                .expect("replay lsn")
                .get(0);
            if replayed {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "the standby never replayed up to {flushed}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert_eq!(
        rt.block_on(text(&replica, STATE)),
        state,
        "standby == primary"
    );
    println!("whole test: {:?}", t_start.elapsed());
    drop(standby);
    drop(primary);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 11, defect 8: a failed `CREATE UNIQUE INDEX CONCURRENTLY` on duplicate data leaves an
/// INVALID unique index that enforces nothing; batching on it would skip or miscount rows.
#[test]
fn an_invalid_unique_index_is_refused_as_a_backfill_key() {
    let db = rt().block_on(async {
        let db = TestDb::new("backfill_invalid_index").await;
        db.exec(
            "CREATE TABLE items (id int PRIMARY KEY, code int NOT NULL, label text);
             INSERT INTO items SELECT g, g % 75, NULL FROM generate_series(1, 100) g;",
        )
        .await;
        let c = db.client().await;
        let failed = c
            .batch_execute("CREATE UNIQUE INDEX CONCURRENTLY items_code_key ON items (code)")
            .await;
        assert!(failed.is_err(), "duplicate codes make the build fail");
        db
    });
    let valid = rt().block_on(int(
        &db,
        "SELECT count(*) FROM pg_index WHERE indexrelid = 'items_code_key'::regclass AND indisvalid",
    ));
    assert_eq!(valid, 0, "the index is left INVALID");
    let spec = db.file(
        "items.toml",
        "name = \"items_label\"\ntable = \"items\"\nkey = [\"code\"]\n\
         pending = \"label IS NULL\"\nset = \"label = 'x' || id\"\n[batch]\nsize = 10\n",
    );
    let r = run(&db, &spec, &["--commit", "--yes"]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("items_code_key"), "{r}");
    assert!(r.stderr.contains("INVALID"), "{r}");
    assert!(r.stderr.contains("DROP INDEX"), "{r}");
    let touched = rt().block_on(int(
        &db,
        "SELECT count(*) FROM items WHERE label IS NOT NULL",
    ));
    assert_eq!(touched, 0, "nothing was changed");
    // Once rebuilt on unique data, the same key is accepted and every row is done once.
    rt().block_on(db.exec(
        "DROP INDEX items_code_key; UPDATE items SET code = id; \
         CREATE UNIQUE INDEX items_code_key ON items (code)",
    ));
    let r = run(&db, &spec, &["--commit", "--yes"]);
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(summary(&r, "Updated successfully:"), "100", "{r}");
}

/// Issue 11, defect 11: a `pending` guard ending in a `-- comment` swallowed the rest of the
/// generated statement and the spec was refused.
#[test]
fn a_pending_guard_ending_in_a_comment_runs() {
    let db = rt().block_on(async {
        let db = TestDb::new("backfill_pending_comment").await;
        db.exec(
            "CREATE TABLE items (id int PRIMARY KEY, label text);
             INSERT INTO items SELECT g, NULL FROM generate_series(1, 100) g;",
        )
        .await;
        db
    });
    let spec = db.file(
        "items.toml",
        "name = \"items_label\"\ntable = \"items\"\nkey = [\"id\"]\n\
         pending = \"label IS NULL -- still to do\"\nset = \"label = 'x' || id -- the new label\"\n\
         [batch]\nsize = 30\n",
    );
    let r = run(&db, &spec, &["--commit", "--yes"]);
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(summary(&r, "Updated successfully:"), "100", "{r}");
    let wrong = rt().block_on(int(
        &db,
        "SELECT count(*) FROM items WHERE label IS DISTINCT FROM 'x' || id",
    ));
    assert_eq!(wrong, 0);
}

/// An unterminated `/*` in `pending` would swallow the rest of every generated statement: the
/// spec is refused naming the key and the position, before connecting; a nested comment runs.
#[test]
fn a_pending_guard_with_an_unterminated_block_comment_is_refused() {
    let db = rt().block_on(async {
        let db = TestDb::new("backfill_pending_block_comment").await;
        db.exec(
            "CREATE TABLE items (id int PRIMARY KEY, label text);
             INSERT INTO items SELECT g, NULL FROM generate_series(1, 100) g;",
        )
        .await;
        db
    });
    let spec_for = |pending: &str| {
        db.file(
            "items.toml",
            &format!(
                "name = \"items_label\"\ntable = \"items\"\nkey = [\"id\"]\n\
                 pending = \"{pending}\"\nset = \"label = 'x' || id\"\n[batch]\nsize = 30\n"
            ),
        )
    };
    let bad = run(
        &db,
        &spec_for("label IS NULL /* to do"),
        &["--commit", "--yes"],
    );
    assert_eq!(bad.code, 2, "{bad}");
    assert!(
        bad.stderr.contains("pending")
            && bad
                .stderr
                .contains("opened at character 15 is never closed"),
        "{bad}"
    );
    assert_eq!(
        rt().block_on(int(
            &db,
            "SELECT count(*) FROM items WHERE label IS NOT NULL"
        )),
        0,
        "nothing changed"
    );
    let good = run(
        &db,
        &spec_for("label IS NULL /* to /* still */ do */"),
        &["--commit", "--yes"],
    );
    assert_eq!(good.code, 0, "{good}");
    assert_eq!(summary(&good, "Updated successfully:"), "100", "{good}");
}

/// Issue 11, defect 4: an application inserting pending rows above the cursor faster than the
/// batches go kept the run going (batch 241, `100% 12,050 / 2,380 rows`). The run is bounded by
/// the largest key when it started; later rows are reported, not chased.
#[test]
fn steady_inserts_do_not_keep_a_backfill_running_and_progress_stays_within_100_percent() {
    let db = rt().block_on(async {
        let db = TestDb::new("backfill_steady_inserts").await;
        db.exec(
            "CREATE TABLE items (id bigserial PRIMARY KEY, label text);
             INSERT INTO items (label) SELECT NULL FROM generate_series(1, 1500);",
        )
        .await;
        db
    });
    let spec = db.file(
        "items.toml",
        "name = \"items_label\"\ntable = \"items\"\nkey = [\"id\"]\n\
         pending = \"label IS NULL\"\nset = \"label = 'x' || id\"\n\
         [batch]\nsize = 50\npause = \"30ms\"\n",
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let inserter = {
        let (url, stop) = (db.url.clone(), stop.clone());
        std::thread::spawn(move || {
            rt().block_on(async {
                let c = crate::common::connect(&url).await;
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // 200 pending rows every 10 ms: far faster than batches of 50 every 30 ms.
                    c.batch_execute(
                        "INSERT INTO items (label) SELECT NULL FROM generate_series(1, 200)",
                    )
                    .await
                    .expect("insert");
                    n += 200;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                n
            })
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let before_start = rt().block_on(int(&db, "SELECT max(id) FROM items"));
    let mut child = spawn(&db, &spec, &["--commit", "--yes"]);
    let t0 = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if t0.elapsed() > Duration::from_secs(40) {
            let _ = child.kill();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = inserter.join();
            panic!("the backfill chased the inserts for 40 s{}", finish(child));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let inserted = inserter.join().expect("inserter");
    let r = finish(child);
    assert!(
        inserted > 2000,
        "the application really inserted ({inserted} rows)"
    );
    assert_eq!(r.code, 0, "{r}");
    // Every row there when the run began is done; only rows inserted since are left.
    let left_old = rt().block_on(int(
        &db,
        &format!("SELECT count(*) FROM items WHERE id <= {before_start} AND label IS NULL"),
    ));
    assert_eq!(left_old, 0, "{r}");
    let updated: i64 = summary(&r, "Updated successfully:")
        .replace(',', "")
        .parse()
        .unwrap();
    let labelled = rt().block_on(int(
        &db,
        "SELECT count(*) FROM items WHERE label IS NOT NULL",
    ));
    assert_eq!(updated, labelled, "{r}");
    let new_since: i64 = summary(&r, "New since the run began (not chased):")
        .replace(',', "")
        .parse()
        .unwrap();
    assert!(new_since > 0, "{r}");
    for line in r.stderr.lines().filter(|l| l.starts_with("progress:")) {
        let pct: u64 = line["progress:".len()..]
            .trim_start()
            .split('%')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no percentage in `{line}`"));
        assert!(pct <= 100, "{line}");
        let counts: Vec<u64> = line
            .split("  ")
            .nth(1)
            .unwrap_or("")
            .split(" / ")
            .map(|n| {
                n.trim_end_matches(" rows")
                    .replace(',', "")
                    .parse()
                    .unwrap_or_else(|_| panic!("`{line}`"))
            })
            .collect();
        assert!(
            counts[0] <= counts[1],
            "done never exceeds the total: {line}"
        );
    }
}

/// Fault catalogue: a row lock held past the retries. The run stops (exit 2) naming the
/// session that holds the lock, as migrate does; batches before it stay committed, nothing is
/// applied twice, and the rerun after the lock is released finishes the job.
#[test]
fn a_row_lock_held_past_the_retries_stops_the_run_naming_the_blocker() {
    let db = rt().block_on(world("backfill_row_lock_stuck", 1000));
    let spec = spec_with(
        &db,
        "bf.toml",
        "size = 100\nlock_timeout = \"200ms\"\nretries = 2",
    );
    rt().block_on(async {
        let holder = crate::common::connect(&format!(
            "{}{}application_name=nightly-report",
            db.url,
            if db.url.contains('?') { "&" } else { "?" }
        ))
        .await;
        let holder_pid: i32 = holder
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        holder
            .batch_execute("BEGIN; SELECT * FROM plan_subscriptions WHERE id = 503 FOR UPDATE")
            .await
            .expect("lock row 503");
        let r = tokio::task::spawn_blocking({
            let (db_url, spec) = (db.url.clone(), spec.clone());
            let log = db.path("rows.csv");
            move || {
                crate::common::migval(&[
                    "backfill",
                    p(&spec),
                    "--db",
                    &db_url,
                    "--log",
                    p(&log),
                    "--commit",
                    "--yes",
                ])
            }
        })
        .await
        .unwrap();
        assert_eq!(r.code, 2, "{r}");
        assert!(r.stderr.contains("failed after 3 attempts"), "{r}");
        assert!(r.stderr.contains("55P03"), "{r}");
        assert!(
            r.stderr.contains(&format!("blocked by pid {holder_pid}")),
            "the blocker is named{r}"
        );
        assert!(r.stderr.contains("nightly-report"), "{r}");
        assert!(r.stderr.contains("FOR UPDATE"), "its query is shown{r}");
        assert!(r.stderr.contains("rerun the same command"), "{r}");
        let status = text(
            &db,
            "SELECT status FROM migval.backfill_runs WHERE run_id = 1",
        )
        .await;
        assert_eq!(status, "failed");
        let done = batches_committed(&db).await;
        assert_eq!(done, 5, "batches 1-5 (ids up to 500) stay committed");
        let twice = int(&db, "SELECT count(*) FROM update_counts WHERE n <> 1").await;
        assert_eq!(twice, 0);
        let beyond = int(&db, "SELECT count(*) FROM update_counts WHERE id > 500").await;
        assert_eq!(beyond, 0, "the blocked batch was rolled back");
        holder.batch_execute("COMMIT").await.expect("release");
    });
    let resumed = run(&db, &spec, &["--commit", "--yes"]);
    assert_eq!(resumed.code, 0, "{resumed}");
    assert!(resumed.stderr.contains("resuming run 1"), "{resumed}");
    rt().block_on(assert_filled_exactly_once(&db));
}

/// Fault catalogue: a deadlock during a batch. PostgreSQL aborts the batch (40P01); the batch
/// is retried and the run finishes with every row updated exactly once, while the other
/// session's transaction goes through.
#[test]
fn a_deadlock_during_a_batch_is_retried_and_nothing_is_applied_twice() {
    let db = rt().block_on(world("backfill_deadlock", 1000));
    let spec = spec_with(&db, "bf.toml", "size = 200\nlock_timeout = \"10s\"");
    rt().block_on(async {
        let other = db.client().await;
        // The other session waits long before checking for deadlocks, so that the backfill's
        // backend (deadlock_timeout 1 s) is the one that finds the cycle and is aborted.
        // A row the first batch (ids 1-200) will change: resolvable and pending.
        const CHANGED: &str = "customer_id % 50 > 1 AND id % 10 <> 0";
        let wanted = int(
            &db,
            &format!("SELECT min(id) FROM plan_subscriptions WHERE id > 100 AND {CHANGED}"),
        )
        .await;
        let held = int(
            &db,
            &format!("SELECT min(id) FROM plan_subscriptions WHERE {CHANGED}"),
        )
        .await;
        other
            .batch_execute(&format!(
                "SET deadlock_timeout = '20s'; BEGIN; \
                 SELECT * FROM plan_subscriptions WHERE id = {wanted} FOR UPDATE"
            ))
            .await
            .expect("lock a row of batch 1");
        let child = spawn(&db, &spec, &["--commit", "--yes"]);
        // The first batch has locked the rows below `wanted` and waits for it.
        let t0 = Instant::now();
        while int(
            &db,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name = 'migval-backfill:subscriber_fk' AND wait_event_type = 'Lock'",
        )
        .await
            == 0
        {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "the batch never waited"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Now ask for a row the batch holds: a cycle.
        other
            .batch_execute(&format!(
                "SELECT * FROM plan_subscriptions WHERE id = {held} FOR UPDATE"
            ))
            .await
            .expect("the other session gets its row once the batch is aborted");
        other.batch_execute("COMMIT").await.expect("commit");
        let r = tokio::task::spawn_blocking(move || finish(child))
            .await
            .unwrap();
        assert_eq!(r.code, 0, "{r}");
        assert!(
            r.stderr.contains("SQLSTATE 40P01"),
            "a deadlock happened{r}"
        );
        assert!(r.stderr.contains("retrying"), "{r}");
        assert_filled_exactly_once(&db).await;
    });
}
