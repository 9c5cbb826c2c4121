//! Stopping and resuming `migval backfill`: kill -9 at each point of a batch, Ctrl-C and
//! SIGTERM, a changed spec on resume, a concurrent run, and the run lease taken over once it
//! expires.

use super::*;

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

/// A run whose lease lapsed (its process stalled longer than the lease: SIGSTOP between
/// batches) and was taken over stops at its next batch, before changing anything: the two runs
/// never both apply batches.
#[test]
fn a_run_whose_lease_was_taken_over_stops_before_its_next_batch() {
    let db = rt().block_on(world("backfill_lease_lost", 3000));
    let slow = spec_with(&db, "slow.toml", "size = 50\npause = \"2s\"");
    let fast = spec_with(&db, "fast.toml", "size = 50");
    let first = spawn_at(
        &db.url,
        &db,
        &slow,
        &["--commit", "--yes", "--lease", "1s"],
        &[("HOSTNAME", "elsewhere")],
    );
    wait_for_batches(&db, 1);
    signal(&first, "-STOP");
    let second = run(
        &db,
        &fast,
        &["--commit", "--yes", "--lease", "1s", "--wait", "10s"],
    );
    signal(&first, "-CONT");
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

/// A `[batch] pause` longer than the lease does not let the lease lapse: the run renews it
/// while it pauses, so another run keeps being refused.
#[test]
fn a_pause_longer_than_the_lease_keeps_the_lease() {
    let db = rt().block_on(world("backfill_lease_pause", 3000));
    let slow = spec_with(&db, "slow.toml", "size = 50\npause = \"3s\"");
    let first = spawn_at(
        &db.url,
        &db,
        &slow,
        &["--commit", "--yes", "--lease", "1s"],
        &[("HOSTNAME", "elsewhere")],
    );
    wait_for_batches(&db, 1);
    let pid = first.id();
    let second = run(
        &db,
        &slow,
        &["--commit", "--yes", "--lease", "1s", "--wait", "2500ms"],
    );
    signal(&first, "-INT");
    let first = finish(first);
    assert_eq!(
        second.code, 2,
        "the paused run's lease lapsed and was taken over{second}"
    );
    assert!(
        second
            .stderr
            .contains(&format!("elsewhere:{pid} holds its lease")),
        "{second}"
    );
    assert_eq!(first.code, 130, "{first}");
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {sig}");
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
