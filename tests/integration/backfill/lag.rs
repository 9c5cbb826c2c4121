//! The replication-lag ceiling (`max_replication_lag`) of `migval backfill` against a real
//! streaming standby that replays late.

use super::*;

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
