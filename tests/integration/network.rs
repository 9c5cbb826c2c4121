//! Network faults through a real TCP proxy on 127.0.0.1 (common::proxy), and the connection
//! options that choose a server: a frozen network mid-snapshot and mid-backfill-batch ends with
//! a clear error in bounded time and leaves no lock behind; a multi-host URL with
//! target_session_attrs=read-write reaches the primary past a standby; channel_binding=require
//! refuses a server that does not bind; a standby target is named as such in every report.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::proxy::{Mode, Proxy};
use crate::common::{Run, TestDb, info, migval, p, rt, server};

/// Settings a user would put in the URL to notice a dead network quickly, and a short
/// server-side idle-in-transaction bound so that the test sees the locks go.
const FAST_FAULTS: &str = "keepalives_idle=1&keepalives_interval=1&keepalives_count=2\
    &tcp_user_timeout=3000&connect_timeout=3\
    &options=-c%20idle_in_transaction_session_timeout%3D2s";

fn server_port() -> u16 {
    info(&server().admin_url).port[0]
}

/// `db.url` through `proxy`, with [`FAST_FAULTS`].
fn proxied_url(db: &TestDb, proxy: &Proxy) -> String {
    let url = proxy.url(&db.url, server_port());
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{FAST_FAULTS}")
}

fn spawn(args: &[&str]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_migval"));
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k == "DATABASE_URL" || k.starts_with("PG") {
            cmd.env_remove(&k);
        }
    }
    cmd.env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().expect("spawn migval")
}

/// Waits for `child` at most `limit`; kills it (and fails) if it is still running then.
fn finish_within(mut child: Child, limit: Duration, what: &str) -> (Run, Duration) {
    let t0 = Instant::now();
    loop {
        if child.try_wait().expect("poll migval").is_some() {
            break;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait for migval");
            panic!(
                "{what}: migval still waiting after {} s (it hangs on the frozen network)\n\
                 --- stdout ---\n{}\n--- stderr ---\n{}",
                limit.as_secs(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("wait for migval");
    (
        Run {
            cmd: what.to_string(),
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        },
        t0.elapsed(),
    )
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    let c = db.client().await;
    match c.query_one(sql, &[]).await {
        Ok(r) => r.get::<_, i64>(0),
        Err(e) => panic!("{sql}: {}", migval::db::failure(&e, None)),
    }
}

/// Polls `sql` (a count) until it is positive; panics after 60 s.
fn wait_for(db: &TestDb, sql: &str, what: &str) {
    let t0 = Instant::now();
    while rt().block_on(count(db, sql)) == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{what} never happened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// migval backends of this test's database still connected (whatever their state).
fn migval_backends(db: &TestDb) -> String {
    format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' \
         AND application_name LIKE 'migval%' AND pid <> pg_backend_pid()",
        db.name
    )
}

/// ALTER TABLE (ACCESS EXCLUSIVE) within `wait`: Ok(elapsed) or the server's error.
async fn alter_table(db: &TestDb, wait: Duration) -> Result<Duration, String> {
    let c = db.client().await;
    let t0 = Instant::now();
    c.batch_execute(&format!(
        "SET lock_timeout = {}; ALTER TABLE t ADD COLUMN added_after_the_cut int",
        wait.as_millis()
    ))
    .await
    .map(|()| t0.elapsed())
    .map_err(|e| migval::db::failure(&e, None).to_string())
}

#[test]
fn a_network_frozen_mid_snapshot_ends_with_a_clear_error_and_leaves_no_lock() {
    let db = rt().block_on(TestDb::new("net_freeze_snapshot"));
    rt().block_on(db.exec(
        "CREATE TABLE t (id int PRIMARY KEY, v int); \
         INSERT INTO t SELECT g, g FROM generate_series(1, 100) g",
    ));
    let spec = db.file(
        "checks.toml",
        r#"
[settings]
statement_timeout = "3s"
parallel = 1

[[check]]
name = "slow total"
sql = "SELECT count(*) AS n, sum(v) AS total FROM t, pg_sleep(2)"
"#,
    );
    let out = db.path("base.json");
    let proxy = Proxy::start(server_port());
    let url = proxied_url(&db, &proxy);
    let child = spawn(&[
        "snapshot",
        "--spec",
        p(&spec),
        "--out",
        p(&out),
        "--db",
        &url,
    ]);
    // Freeze while the probe runs: its backend holds ACCESS SHARE on t.
    wait_for(
        &db,
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' \
             AND application_name = 'migval' AND wait_event = 'PgSleep'",
            db.name
        ),
        "the slow probe",
    );
    proxy.set(Mode::Freeze);
    let (run, took) = finish_within(child, Duration::from_secs(40), "snapshot (frozen network)");
    assert_eq!(run.code, 2, "the snapshot cannot be taken: exit 2{run}");
    assert!(
        run.stderr.contains("no answer from the server for 8 s"),
        "says what happened and after how long{run}"
    );
    assert!(
        run.stderr.contains("idle_in_transaction_session_timeout"),
        "says when the server lets go{run}"
    );
    assert!(took < Duration::from_secs(20), "bounded: {took:?}{run}");
    assert!(
        run.stderr
            .contains("idle_in_transaction_session_timeout (8 s here)"),
        "the capture's bound, raised to statement_timeout + 5 s{run}"
    );
    // The server ends the abandoned transaction (idle_in_transaction_session_timeout, raised
    // for a capture to statement_timeout + 5 s): the DBA's ALTER TABLE gets its lock.
    let altered = rt().block_on(alter_table(&db, Duration::from_secs(20)));
    assert!(
        altered.is_ok(),
        "ALTER TABLE after the cut: {altered:?} (the capture's lock was never released)"
    );
    assert_eq!(
        rt().block_on(count(&db, &migval_backends(&db))),
        0,
        "no migval backend is left"
    );
}

#[test]
fn a_connection_reset_mid_snapshot_fails_at_once_naming_the_target() {
    let db = rt().block_on(TestDb::new("net_reset_snapshot"));
    rt().block_on(
        db.exec("CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 1)"),
    );
    let spec = db.file(
        "checks.toml",
        r#"
[settings]
statement_timeout = "30s"
parallel = 1

[[check]]
name = "slow total"
sql = "SELECT count(*) AS n FROM t, pg_sleep(5)"
"#,
    );
    let out = db.path("base.json");
    let proxy = Proxy::start(server_port());
    let url = proxied_url(&db, &proxy);
    let child = spawn(&[
        "snapshot",
        "--spec",
        p(&spec),
        "--out",
        p(&out),
        "--db",
        &url,
    ]);
    wait_for(
        &db,
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' \
             AND application_name = 'migval' AND wait_event = 'PgSleep'",
            db.name
        ),
        "the slow probe",
    );
    proxy.set(Mode::Reset);
    let (run, took) = finish_within(child, Duration::from_secs(20), "snapshot (reset)");
    assert_eq!(run.code, 2, "{run}");
    // Not the 35 s probe bound: an RST is an error at once.
    assert!(
        took < Duration::from_secs(4),
        "fails at once: {took:?}{run}"
    );
    assert!(
        run.stderr.contains("connection") && !run.stderr.contains("no answer"),
        "a reset is reported as a lost connection, not as silence{run}"
    );
}

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/subscriber_fk");

#[test]
fn a_network_frozen_mid_backfill_batch_stops_the_run_and_the_rerun_applies_it_once() {
    let db = rt().block_on(TestDb::new("net_freeze_backfill"));
    rt().block_on(async {
        db.exec(&std::fs::read_to_string(format!("{FIXTURE}/schema.sql")).expect("schema.sql"))
            .await;
        db.exec("SELECT subscriber_fk_generate(2000); ANALYZE")
            .await;
        // Counts every UPDATE of each row; the batch updating row 1203 sleeps once (sequences
        // ignore rollbacks), and the network freezes during that sleep.
        db.exec(
            "CREATE TABLE update_counts (id bigint PRIMARY KEY, n int NOT NULL); \
             CREATE SEQUENCE slow_once; \
             CREATE FUNCTION count_update() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN \
               IF NEW.id = 1203 AND nextval('slow_once') = 1 THEN PERFORM pg_sleep(1.5); END IF; \
               INSERT INTO update_counts VALUES (NEW.id, 1) \
               ON CONFLICT (id) DO UPDATE SET n = update_counts.n + 1; \
               RETURN NEW; \
             END $$; \
             CREATE TRIGGER count_update AFTER UPDATE ON plan_subscriptions \
               FOR EACH ROW EXECUTE FUNCTION count_update();",
        )
        .await;
    });
    let text = std::fs::read_to_string(format!("{FIXTURE}/backfill.toml")).expect("backfill.toml");
    let head = text.split("[batch]").next().expect("has [batch]");
    let head = head.replace(
        "checks = \"checks.toml\"",
        &format!("checks = \"{FIXTURE}/checks.toml\""),
    );
    let spec = db.file(
        "bf.toml",
        &format!("{head}[batch]\nsize = 100\nstatement_timeout = \"3s\"\nretries = 1\n"),
    );
    let log = db.path("rows.csv");
    let proxy = Proxy::start(server_port());
    let url = proxied_url(&db, &proxy);
    let child = spawn(&[
        "backfill",
        p(&spec),
        "--db",
        &url,
        "--log",
        p(&log),
        "--commit",
        "--yes",
    ]);
    wait_for(
        &db,
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' \
             AND application_name = 'migval-backfill:subscriber_fk' AND wait_event = 'PgSleep'",
            db.name
        ),
        "the slow batch",
    );
    proxy.set(Mode::Freeze);
    let (run, took) = finish_within(child, Duration::from_secs(60), "backfill (frozen network)");
    assert_eq!(run.code, 2, "the run stops with an error{run}");
    assert!(
        run.stderr.contains("rerun the same command: it resumes"),
        "says how to go on{run}"
    );
    assert!(
        run.all().contains("no answer from the server"),
        "says what happened{run}"
    );
    assert!(took < Duration::from_secs(40), "bounded: {took:?}{run}");
    // The server rolled the frozen batch back (idle_in_transaction_session_timeout = 2 s):
    // none of its rows is changed and no migval backend holds their row locks.
    wait_until_gone(&db);
    assert_eq!(
        rt().block_on(count(
            &db,
            "SELECT count(*) FROM update_counts WHERE id > 1200"
        )),
        0,
        "the frozen batch left nothing behind"
    );
    let committed = rt().block_on(count(
        &db,
        "SELECT count(*) FROM plan_subscriptions WHERE id <= 1200 AND subscriber_id IS NOT NULL",
    ));
    assert!(
        committed > 0,
        "the batches before the freeze stay committed"
    );
    // The rerun, straight to the server, resumes after the last committed batch and finishes;
    // no row is updated twice.
    let resumed = migval(&[
        "backfill",
        p(&spec),
        "--db",
        &db.url,
        "--log",
        p(&log),
        "--commit",
        "--yes",
        "--wait",
        "30s",
    ]);
    assert_eq!(resumed.code, 0, "{resumed}");
    assert!(
        resumed.stderr.contains("resuming run 1 after key (1200)"),
        "{resumed}"
    );
    assert_eq!(
        rt().block_on(count(
            &db,
            "SELECT count(*) FROM update_counts WHERE n <> 1"
        )),
        0,
        "no row was updated twice"
    );
    let expected = rt().block_on(count(
        &db,
        "SELECT count(*) FROM plan_subscriptions WHERE customer_id % 50 > 1 AND id % 10 <> 0",
    ));
    assert_eq!(
        rt().block_on(count(&db, "SELECT count(*) FROM update_counts")),
        expected,
        "every resolvable pending row updated exactly once"
    );
}

/// Waits (at most 30 s) until no migval backend of `db` is left.
fn wait_until_gone(db: &TestDb) {
    let t0 = Instant::now();
    while rt().block_on(count(db, &migval_backends(db))) > 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "a migval backend is still connected 30 s after the cut"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------------
// Connection options that choose the server

/// A primary and its streaming standby of their own, with database `d` holding table `t`
/// (100 rows, replayed on the standby).
struct Pair {
    // Field order: the standby is dropped (stopped) before the primary.
    standby: migval::cluster::Cluster,
    primary: migval::cluster::Cluster,
}

fn start_pair() -> Pair {
    use migval::cluster::{Cluster, ClusterOptions};
    let primary = Cluster::start(&ClusterOptions::default()).expect("start a primary");
    rt().block_on(async {
        let admin = crate::common::connect(&primary.url("postgres")).await;
        admin
            .batch_execute("CREATE DATABASE d")
            .await
            .expect("create d");
        let c = crate::common::connect(&primary.url("d")).await;
        c.batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL); \
             INSERT INTO t SELECT g, g FROM generate_series(1, 100) g",
        )
        .await
        .expect("fill t");
    });
    let standby = primary
        .start_standby(&ClusterOptions::default())
        .expect("start a standby");
    // Wait until the standby has replayed t.
    let t0 = Instant::now();
    loop {
        let replayed = rt().block_on(async {
            let c = migval::db::connect(&info(&standby.url("d"))).await.ok()?;
            let row = c.query_one("SELECT count(*) FROM t", &[]).await.ok()?;
            Some(row.get::<_, i64>(0))
        });
        if replayed == Some(100) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the standby never replayed t"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Pair { standby, primary }
}

#[test]
fn target_session_attrs_read_write_skips_a_standby_listed_first_and_reports_name_a_standby() {
    let pair = start_pair();
    let dir = std::env::temp_dir().join(format!("migval-net-pair-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let spec = dir.join("checks.toml");
    std::fs::write(
        &spec,
        "[[check]]\nname = \"totals\"\ntable = \"t\"\nmetrics = [\"count(*)\", \"sum(v)\"]\n",
    )
    .expect("write spec");
    let base = dir.join("base.json");
    let primary_url = pair.primary.url("d");
    let r = migval(&[
        "snapshot",
        "--spec",
        p(&spec),
        "--out",
        p(&base),
        "--db",
        &primary_url,
    ]);
    assert_eq!(r.code, 0, "{r}");
    assert!(
        !r.stdout.contains("standby"),
        "the primary is not called a standby{r}"
    );

    // The standby stops replaying; the primary changes: the two now differ.
    rt().block_on(async {
        let s = crate::common::connect(&pair.standby.url("d")).await;
        s.batch_execute("SELECT pg_wal_replay_pause()")
            .await
            .expect("pause replay");
        let c = crate::common::connect(&primary_url).await;
        c.batch_execute("UPDATE t SET v = v + 1")
            .await
            .expect("change the primary");
    });
    let both = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/d?sslmode=disable",
        pair.standby.port(),
        pair.primary.port()
    );
    let verify = |url: &str, format: &str| {
        migval(&[
            "verify",
            "--spec",
            p(&spec),
            "--baseline",
            p(&base),
            "--db",
            url,
            "--format",
            format,
        ])
    };

    // read-write: the standby (first in the list) is skipped, the primary's change is caught.
    let rw = verify(&format!("{both}&target_session_attrs=read-write"), "json");
    assert_eq!(
        rw.code, 1,
        "verify reads the primary and sees sum(v) changed{rw}"
    );
    let json: serde_json::Value = serde_json::from_str(&rw.stdout).expect("JSON report");
    assert_eq!(json["after"]["in_recovery"], false, "{rw}");
    assert_eq!(
        json["after"]["server_role"], "primary (not in recovery)",
        "{rw}"
    );

    // any (the default): the first host, the paused standby, answers; every report says so.
    let any = verify(&both, "json");
    assert_eq!(
        any.code, 0,
        "the stale standby still matches the baseline{any}"
    );
    let json: serde_json::Value = serde_json::from_str(&any.stdout).expect("JSON report");
    assert_eq!(json["after"]["in_recovery"], true, "{any}");
    assert_eq!(
        json["after"]["server_role"], "standby (in recovery)",
        "{any}"
    );
    let text = verify(&both, "text");
    assert!(
        text.stdout.contains("after:    ") && text.stdout.contains("standby (in recovery)"),
        "the text report names the standby{text}"
    );
    let md = verify(&both, "markdown");
    assert!(md.stdout.contains("standby (in recovery)"), "{md}");

    // target_session_attrs values tokio-postgres cannot check are refused by name.
    let refused = verify(&format!("{both}&target_session_attrs=primary"), "text");
    assert_eq!(refused.code, 2, "{refused}");
    assert!(
        refused.stderr.contains("target_session_attrs=primary"),
        "names the option{refused}"
    );
    // Only standbys in the list: read-write finds no host, and says so.
    let none = verify(
        &format!(
            "postgres://postgres@127.0.0.1:{}/d?sslmode=disable&target_session_attrs=read-write",
            pair.standby.port()
        ),
        "text",
    );
    assert_eq!(none.code, 2, "{none}");
    assert!(
        none.stderr
            .contains("no host in the list (127.0.0.1) accepts sessions"),
        "{none}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn channel_binding_require_refuses_a_server_that_does_not_bind() {
    use migval::cluster::{Cluster, ClusterOptions};
    let cluster = Cluster::start(&ClusterOptions::default()).expect("start a cluster");
    // An md5 user, first in pg_hba.conf; everything else stays trust.
    let hba = cluster.data_dir().join("pg_hba.conf");
    let text = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
    std::fs::write(&hba, format!("host all md5user 127.0.0.1/32 md5\n{text}")).expect("hba");
    rt().block_on(async {
        let c = crate::common::connect(&cluster.url("postgres")).await;
        c.batch_execute(
            "SET password_encryption = 'md5'; CREATE ROLE md5user LOGIN PASSWORD 'pw-Zq9'; \
             SELECT pg_reload_conf()",
        )
        .await
        .expect("md5 user");
    });
    std::thread::sleep(Duration::from_millis(300));
    let dir = std::env::temp_dir().join(format!("migval-net-cb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let spec = dir.join("checks.toml");
    std::fs::write(
        &spec,
        "[[check]]\nname = \"roles\"\nsql = \"SELECT count(*) AS n FROM pg_roles WHERE rolname = 'md5user'\"\n",
    )
    .expect("write spec");
    let out = dir.join("base.json");
    let snapshot = |url: &str| {
        migval(&[
            "snapshot",
            "--spec",
            p(&spec),
            "--out",
            p(&out),
            "--db",
            url,
        ])
    };
    let port = cluster.port();
    let md5 = format!("postgres://md5user:pw-Zq9@127.0.0.1:{port}/postgres?sslmode=disable");
    let trust = format!("postgres://postgres@127.0.0.1:{port}/postgres?sslmode=disable");

    // The password works (positive control) ...
    let ok = snapshot(&md5);
    assert_eq!(ok.code, 0, "{ok}");
    // ... but neither md5 nor trust binds the channel: refused, as psql does.
    for url in [&md5, &trust] {
        let r = snapshot(&format!("{url}&channel_binding=require"));
        assert_eq!(r.code, 2, "{r}");
        assert!(
            r.stderr.contains("channel_binding=require")
                && r.stderr.contains("without SCRAM channel binding"),
            "says why, naming the option{r}"
        );
        assert!(!r.all().contains("pw-Zq9"), "no password in the output{r}");
    }
    // disable and prefer connect.
    for mode in ["disable", "prefer"] {
        let r = snapshot(&format!("{md5}&channel_binding={mode}"));
        assert_eq!(r.code, 0, "{r}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_connection_lost_while_commit_is_in_flight_resumes_from_the_committed_position_exactly_once() {
    let db = rt().block_on(TestDb::new("net_commit_unknown"));
    rt().block_on(async {
        db.exec(&std::fs::read_to_string(format!("{FIXTURE}/schema.sql")).expect("schema.sql"))
            .await;
        db.exec("SELECT subscriber_fk_generate(2000); ANALYZE")
            .await;
        // Every UPDATE of a row is counted; the COMMIT of the batch that updates row 1203 takes
        // 1.5 s (a deferred constraint trigger sleeps once at commit time), and the connection
        // is reset while that COMMIT is in flight: the client cannot know whether it committed.
        db.exec(
            "CREATE TABLE update_counts (id bigint PRIMARY KEY, n int NOT NULL); \
             CREATE SEQUENCE slow_once; \
             CREATE FUNCTION count_update() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN \
               INSERT INTO update_counts VALUES (NEW.id, 1) \
               ON CONFLICT (id) DO UPDATE SET n = update_counts.n + 1; \
               RETURN NEW; \
             END $$; \
             CREATE TRIGGER count_update AFTER UPDATE ON plan_subscriptions \
               FOR EACH ROW EXECUTE FUNCTION count_update(); \
             CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN \
               IF nextval('slow_once') = 1 THEN PERFORM pg_sleep(1.5); END IF; \
               RETURN NULL; \
             END $$; \
             CREATE CONSTRAINT TRIGGER slow_commit AFTER UPDATE ON plan_subscriptions \
               DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.id = 1203) \
               EXECUTE FUNCTION slow_commit();",
        )
        .await;
    });
    let text = std::fs::read_to_string(format!("{FIXTURE}/backfill.toml")).expect("backfill.toml");
    let head = text.split("[batch]").next().expect("has [batch]");
    let head = head.replace(
        "checks = \"checks.toml\"",
        &format!("checks = \"{FIXTURE}/checks.toml\""),
    );
    let spec = db.file("bf.toml", &format!("{head}[batch]\nsize = 100\n"));
    let log = db.path("rows.csv");
    let proxy = Proxy::start(server_port());
    let url = proxied_url(&db, &proxy);
    let child = spawn(&[
        "backfill",
        p(&spec),
        "--db",
        &url,
        "--log",
        p(&log),
        "--commit",
        "--yes",
    ]);
    wait_for(
        &db,
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' \
             AND application_name = 'migval-backfill:subscriber_fk' AND wait_event = 'PgSleep' \
             AND query ILIKE 'COMMIT%'",
            db.name
        ),
        "the COMMIT in flight",
    );
    proxy.set(Mode::Reset);
    std::thread::sleep(Duration::from_millis(300));
    proxy.set(Mode::Forward);
    let (run, _) = finish_within(
        child,
        Duration::from_secs(90),
        "backfill (reset during COMMIT)",
    );
    // The server finished that COMMIT: the batch is committed with its progress row. The
    // run reconnects, re-reads the committed position and goes on after it.
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(
        rt().block_on(count(
            &db,
            "SELECT count(*) FROM update_counts WHERE n <> 1"
        )),
        0,
        "no row was updated twice{run}"
    );
    let expected = rt().block_on(count(
        &db,
        "SELECT count(*) FROM plan_subscriptions WHERE customer_id % 50 > 1 AND id % 10 <> 0",
    ));
    assert_eq!(
        rt().block_on(count(&db, "SELECT count(*) FROM update_counts")),
        expected,
        "every resolvable pending row updated exactly once{run}"
    );
}
