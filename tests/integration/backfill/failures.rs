//! `migval backfill` against a misbehaving database: a terminated backend, a server restart,
//! row locks held elsewhere (until released, past the retries, orphaned), a poison row, an
//! update that decides an ambiguous row, and a deadlock.

use super::*;

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
