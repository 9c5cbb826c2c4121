//! PgBouncer in transaction pooling mode in front of the test cluster (Debian's `pgbouncer`,
//! started here like the throwaway cluster: its own config in a temporary directory, a free
//! 127.0.0.1 port, run as the `postgres` user when we are root, stopped on drop).

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{TestDb, migval, p, rt, server};

/// A running pgbouncer; killed and its directory removed on drop.
pub struct Bouncer {
    pub port: u16,
    dir: PathBuf,
    child: Child,
}

fn pgbouncer_bin() -> PathBuf {
    ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| {
            let out = Command::new("sh")
                .args(["-c", "command -v pgbouncer"])
                .output()
                .ok()?;
            let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (!path.is_empty()).then(|| PathBuf::from(path))
        })
        .expect("pgbouncer is installed (apt-get install pgbouncer; .ci/run does it)")
}

/// (major, minor) of the installed pgbouncer.
fn pgbouncer_version() -> (u32, u32) {
    let out = Command::new(pgbouncer_bin())
        .arg("--version")
        .output()
        .expect("pgbouncer --version");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let v = text
        .split_whitespace()
        .nth(1)
        .unwrap_or("0.0")
        .split('.')
        .filter_map(|n| n.parse().ok())
        .collect::<Vec<u32>>();
    (
        v.first().copied().unwrap_or(0),
        v.get(1).copied().unwrap_or(0),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// uid and gid of `postgres` (pgbouncer, like the server, is not run as root).
fn postgres_user() -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Host and port of the test server, from its admin URL.
fn server_host_port() -> (String, u16) {
    let url = &server().admin_url;
    let after = url.split_once('@').map_or(url.as_str(), |(_, a)| a);
    let hostport = after.split('/').next().unwrap_or("");
    let (host, port) = hostport.rsplit_once(':').expect("the test URL has a port");
    (host.to_string(), port.parse().expect("port"))
}

impl Bouncer {
    pub fn start(name: &str, pool_mode: &str) -> Bouncer {
        Bouncer::start_with(name, pool_mode, "")
    }

    /// `start`, with more `[pgbouncer]` settings (lines ending in a newline).
    pub fn start_with(name: &str, pool_mode: &str, more: &str) -> Bouncer {
        let (host, pg_port) = server_host_port();
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("migval-pgbouncer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("pgbouncer dir");
        let ini = format!(
            "[databases]\n\
             * = host={host} port={pg_port}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {dir}/users.txt\n\
             pool_mode = {pool_mode}\n\
             default_pool_size = 4\n\
             max_client_conn = 200\n\
             logfile = {dir}/pgbouncer.log\n\
             pidfile = {dir}/pgbouncer.pid\n\
             {more}",
            dir = dir.display()
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini).unwrap();
        std::fs::write(dir.join("users.txt"), "\"postgres\" \"\"\n").unwrap();
        let mut cmd = Command::new(pgbouncer_bin());
        cmd.arg(dir.join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if is_root() {
            let (uid, gid) = postgres_user().expect("a postgres user to run pgbouncer as");
            for f in ["", "pgbouncer.ini", "users.txt"] {
                std::os::unix::fs::chown(dir.join(f), Some(uid), Some(gid)).unwrap();
            }
            cmd.uid(uid).gid(gid);
        }
        let child = cmd.spawn().expect("start pgbouncer");
        let b = Bouncer { port, dir, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "pgbouncer did not start listening:\n{}",
                b.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        b
    }

    /// `url` (of the test server) with pgbouncer's port instead.
    pub fn url(&self, url: &str) -> String {
        let (_, pg_port) = server_host_port();
        url.replacen(&format!(":{pg_port}/"), &format!(":{}/", self.port), 1)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const SPEC: &str = r#"
[settings]
parallel = 3

[[check]]
name = "rows"
table = "t"
metrics = ["count(*)", "sum(v)"]

[[check]]
name = "per group"
table = "t"
group_by = ["g"]
metrics = ["count(*)"]

[[check]]
name = "orphans"
orphans = { child = "t.g", parent = "groups.id" }
expect = "zero"
"#;

fn pooled_db(name: &str) -> TestDb {
    rt().block_on(async {
        let db = TestDb::new(name).await;
        db.exec(
            "CREATE TABLE groups (id int PRIMARY KEY);
             INSERT INTO groups SELECT generate_series(1, 5);
             CREATE TABLE t (id int PRIMARY KEY, g int, v numeric);
             INSERT INTO t SELECT i, i % 5 + 1, i * 1.5 FROM generate_series(1, 1000) i;",
        )
        .await;
        db
    })
}

/// Snapshot, verify (pass), change a value, verify (fail) through `url`; each run's code and
/// output.
fn round_trip(db: &TestDb, url: &str) -> [crate::common::Run; 3] {
    let spec = db.file("checks.toml", SPEC);
    let base = db.path("base.json");
    let snap = migval(&[
        "snapshot",
        "--spec",
        p(&spec),
        "--out",
        p(&base),
        "--db",
        url,
    ]);
    let verify = || {
        migval(&[
            "verify",
            "--spec",
            p(&spec),
            "--baseline",
            p(&base),
            "--db",
            url,
            "--format",
            "json",
        ])
    };
    let ok = verify();
    rt().block_on(db.exec("UPDATE t SET v = v + 1 WHERE id = 7"));
    let failed = verify();
    [snap, ok, failed]
}

fn assert_failed_on_rows(run: &crate::common::Run) {
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(crate::common::status(&report, "rows"), "FAIL", "{run}");
    assert_eq!(crate::common::status(&report, "per group"), "PASS", "{run}");
}

#[test]
fn snapshot_and_verify_work_through_pgbouncer_in_session_mode() {
    let db = pooled_db("pgbouncer_session");
    let bouncer = Bouncer::start("session", "session");
    let [snap, ok, failed] = round_trip(&db, &bouncer.url(&db.url));
    assert_eq!(snap.code, 0, "{snap}\npgbouncer log:\n{}", bouncer.log());
    assert_eq!(ok.code, 0, "{ok}");
    assert_eq!(
        failed.code, 1,
        "the change is seen through the pooler{failed}"
    );
    assert_failed_on_rows(&failed);
}

/// Transaction pooling hands each statement outside a transaction to any server connection,
/// where another process's prepared statements live: migval must never give a verdict from
/// that. Each run either gives the right result or stops (exit 2) naming the pooler.
#[test]
fn through_pgbouncer_in_transaction_mode_a_run_is_right_or_refused_naming_the_pooler() {
    let db = pooled_db("pgbouncer_transaction");
    let bouncer = Bouncer::start("transaction", "transaction");
    let url = bouncer.url(&db.url);
    let mut refused = 0;
    for round in 0..2 {
        let [snap, ok, failed] = round_trip(&db, &url);
        rt().block_on(db.exec("UPDATE t SET v = v - 1 WHERE id = 7"));
        for (run, expected) in [(&snap, 0), (&ok, 0), (&failed, 1)] {
            if run.code == 2 {
                assert!(
                    run.stderr.contains("pooler in transaction mode")
                        && run.stderr.contains("pool_mode = session"),
                    "round {round}: an error, but not the pooler's reason{run}"
                );
                refused += 1;
            } else if snap.code == 0 {
                assert_eq!(run.code, expected, "round {round}: a wrong verdict{run}");
                if expected == 1 {
                    assert_failed_on_rows(run);
                }
            }
        }
    }
    // PgBouncer before 1.21 (Debian 12 ships 1.18) reuses server connections across
    // processes: a statement another client left there (named as the driver names its own,
    // s0, s1, ...) clashes with migval's. Planted on every server connection of the pool, it
    // makes the refusal path certain: every run stops naming the pooler, none gives a verdict.
    // Later versions track prepared statements themselves.
    if pgbouncer_version() < (1, 21) {
        plant_prepared_statements(&url, 4, 400);
        let [snap, ok, failed] = round_trip(&db, &url);
        for run in [&snap, &ok, &failed] {
            assert_eq!(run.code, 2, "a clash, and still a verdict{run}");
            assert!(
                run.stderr.contains("pooler in transaction mode")
                    && run.stderr.contains("pool_mode = session"),
                "an error, but not the pooler's reason{run}"
            );
            refused += 1;
        }
    }
    assert!(refused > 0 || pgbouncer_version() >= (1, 21));
}

/// `PREPARE s0 ... s{n-1}` left on each of the `pool_size` server connections of the pool, as
/// another client of the pooler might leave them (the transactions end, the statements stay).
fn plant_prepared_statements(url: &str, pool_size: usize, n: usize) {
    rt().block_on(async {
        let mut clients = Vec::new();
        for _ in 0..pool_size {
            let c = crate::common::connect(url).await;
            c.batch_execute("BEGIN")
                .await
                .expect("BEGIN through the pooler");
            clients.push(c);
        }
        let prepare: String = (0..n)
            .map(|i| format!("PREPARE s{i} AS SELECT {i};"))
            .collect();
        for c in &clients {
            c.batch_execute(&prepare)
                .await
                .expect("PREPARE through the pooler");
        }
        for c in &clients {
            c.batch_execute("COMMIT")
                .await
                .expect("COMMIT through the pooler");
        }
    });
}

/// The backfill's single-run guard through transaction pooling: a lease row and a
/// transaction-level advisory lock per batch, both of which the pooler keeps (a session
/// advisory lock would stay behind on whichever server connection took it). A second run
/// through the pooler refuses, naming the first; once the first is killed (SIGKILL, on a host
/// this one cannot see: HOSTNAME differs) and its lease has expired, a later run takes over and
/// finishes; no row is applied twice.
#[test]
fn through_pgbouncer_in_transaction_mode_the_backfill_runs_once_at_a_time() {
    use crate::backfill::{assert_filled_exactly_once, finish, spawn_at, wait_for_batches, world};
    let db = rt().block_on(world("pgbouncer_backfill", 3000));
    let bouncer = Bouncer::start("backfill", "transaction");
    let url = bouncer.url(&db.url);
    let spec = spec_without_checks(&db, "size = 50\npause = \"50ms\"");
    let args = ["--commit", "--yes", "--lease", "3s"];
    let backfill = |extra: &[&str]| {
        let log = db.path("rows-2.csv");
        let mut a = vec!["backfill", p(&spec), "--db", &url, "--log", p(&log)];
        a.extend_from_slice(&args);
        a.extend_from_slice(extra);
        migval(&a)
    };
    let mut first = spawn_at(&url, &db, &spec, &args, &[("HOSTNAME", "elsewhere")]);
    wait_for_batches(&db, 2);
    let second = backfill(&["--wait", "500ms"]);
    assert_eq!(
        second.code,
        2,
        "{second}\npgbouncer log:\n{}",
        bouncer.log()
    );
    assert!(
        second
            .stderr
            .contains("another run of backfill `subscriber_fk` is in progress")
            && second
                .stderr
                .contains(&format!("elsewhere:{} holds its lease", first.id())),
        "the second run names the first{second}"
    );
    first.kill().expect("kill -9 the first run");
    let killed = finish(first);
    assert_ne!(killed.code, 0, "{killed}");
    let later = backfill(&["--wait", "15s"]);
    assert_eq!(later.code, 0, "{later}\npgbouncer log:\n{}", bouncer.log());
    assert!(later.stderr.contains("took over the lease"), "{later}");
    assert!(later.stderr.contains("resuming run 1"), "{later}");
    rt().block_on(assert_filled_exactly_once(&db));
    // No session setting of migval's stays behind on the pooled server connections (the
    // application would inherit the backfill's timeouts and its connection check): four
    // transactions held open at once use four server connections, every one of the pool.
    rt().block_on(async {
        let mut clients = Vec::new();
        for _ in 0..4 {
            let c = crate::common::connect(&url).await;
            c.batch_execute("BEGIN")
                .await
                .expect("BEGIN through the pooler");
            clients.push(c);
        }
        for c in &clients {
            for (setting, default) in [
                ("lock_timeout", "0"),
                ("statement_timeout", "0"),
                ("client_connection_check_interval", "0"),
            ] {
                let shown = c
                    .simple_query(&format!("SHOW {setting}"))
                    .await
                    .expect("SHOW")
                    .into_iter()
                    .find_map(|m| match m {
                        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                        _ => None,
                    });
                assert_eq!(
                    shown.as_deref(),
                    Some(default),
                    "{setting} left on a pooled connection"
                );
            }
        }
    });
}

/// The fixture's backfill spec with `batch` as its [batch] section and no `checks`: the
/// statements and the guard are under test through the pooler, not the capture.
fn spec_without_checks(db: &TestDb, batch: &str) -> std::path::PathBuf {
    let spec = crate::backfill::spec_with(db, "bf.toml", batch);
    let text = std::fs::read_to_string(&spec).unwrap();
    db.file(
        "bf.toml",
        &text
            .lines()
            .filter(|l| !l.starts_with("checks ="))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// The names and texts of the prepared statements on every server connection of the pool:
/// `pool_size` transactions held open at once through the pooler occupy all of them.
fn prepared_statements_in_the_pool(url: &str, pool_size: usize) -> Vec<String> {
    rt().block_on(async {
        let mut clients = Vec::new();
        for _ in 0..pool_size {
            let c = crate::common::connect(url).await;
            c.batch_execute("BEGIN")
                .await
                .expect("BEGIN through the pooler");
            clients.push(c);
        }
        let mut found = Vec::new();
        for c in &clients {
            // The simple protocol: the probe itself prepares nothing.
            let rows = c
                .simple_query("SELECT name || ': ' || statement FROM pg_prepared_statements")
                .await
                .expect("pg_prepared_statements");
            found.extend(rows.into_iter().filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            }));
        }
        // Ended, so the server connections go back to the pool (a client leaving in the middle
        // of a transaction makes the pooler close its server connection).
        for c in &clients {
            c.batch_execute("ROLLBACK")
                .await
                .expect("ROLLBACK through the pooler");
        }
        found
    })
}

/// Transaction pooling hands each transaction whichever server connection is next. A named
/// prepared statement whose Close is sent after its transaction ends stays behind on that
/// server connection, and the next client to use the same statement name there fails with
/// 42P05 "prepared statement \"s57\" already exists" (a later run of the same backfill did,
/// at its 13th batch). With `server_round_robin` every transaction moves on to the next
/// server connection of the four in the pool, so a statement left behind cannot hide: after a
/// dry run, a --commit run killed mid-way and the run that resumes it, no server connection of
/// the pool holds one.
#[test]
fn through_pgbouncer_the_backfill_leaves_no_prepared_statement_behind() {
    use crate::backfill::{assert_filled_exactly_once, finish, spawn_at, wait_for_batches, world};
    let db = rt().block_on(world("pgbouncer_unnamed", 1500));
    let bouncer = Bouncer::start_with("unnamed", "transaction", "server_round_robin = 1\n");
    let url = bouncer.url(&db.url);
    let spec = spec_without_checks(&db, "size = 50\npause = \"50ms\"");
    let in_pool = || prepared_statements_in_the_pool(&url, 4);
    // Four server connections in the pool first (one client alone would only ever use one),
    // none holding a statement.
    assert_eq!(in_pool(), Vec::<String>::new());
    let dry = migval(&["backfill", p(&spec), "--db", &url]);
    assert_eq!(dry.code, 0, "{dry}\npgbouncer log:\n{}", bouncer.log());
    assert_eq!(in_pool(), Vec::<String>::new(), "after the dry run");
    let mut first = spawn_at(&url, &db, &spec, &["--commit", "--yes"], &[]);
    wait_for_batches(&db, 3);
    // SIGKILL, not Ctrl-C: the cancel request Ctrl-C sends for the batch in flight can crash
    // PgBouncer 1.18 ("FATAL ... disconnect_client(): bad client state: 0"), which is not what
    // this test is about. A killed run on this host leaves its lease to be taken at once.
    first.kill().expect("kill -9 the first run");
    let first = finish(first);
    assert_ne!(first.code, 0, "{first}");
    let resumed = migval(&["backfill", p(&spec), "--db", &url, "--commit", "--yes"]);
    assert_eq!(
        resumed.code,
        0,
        "{resumed}\npgbouncer log:\n{}",
        bouncer.log()
    );
    assert!(resumed.stderr.contains("resuming run 1"), "{resumed}");
    rt().block_on(assert_filled_exactly_once(&db));
    let left = in_pool();
    assert!(
        left.is_empty(),
        "prepared statements left on pooled server connections:\n{}",
        left.join("\n")
    );
}
