//! `migval verify --every/--until`: the watch after go-live. The checks that judge the
//! post-state alone are re-run on a schedule while something writes; a run line per run on
//! stderr, exit 1 at the first failing run, 0 at --until, 130 on Ctrl-C, a lost connection
//! retried at the next tick.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::proxy::{Mode, Proxy};
use crate::common::{Run, TestDb, info, migval, p, rt, server, snapshot_to, world};

const WORLD: &str = r#"
CREATE TABLE accounts (id int PRIMARY KEY, email text, plan text NOT NULL);
CREATE TABLE sessions (id int PRIMARY KEY, account_id int);
INSERT INTO accounts SELECT g, 'a' || g || '@example.com', 'free' FROM generate_series(1, 200) g;
INSERT INTO sessions SELECT g, g % 200 + 1 FROM generate_series(1, 400) g;
"#;

const CHECKS: &str = r#"
[[check]]
name = "account count"
table = "accounts"
metrics = ["count(*)"]

[[check]]
name = "no account without email"
null_count = "accounts.email"
expect = "zero"

[[check]]
name = "no session without account"
orphans = { child = "sessions.account_id", parent = "accounts.id" }
expect = "zero"

[[check]]
name = "plans allowed"
sql = "SELECT count(*) FILTER (WHERE plan NOT IN ('free', 'pro')) AS bad_plans FROM accounts"
expect = "zero"
"#;

/// The world with its baseline taken; returns the spec and baseline paths.
fn baselined(name: &str) -> (TestDb, String, String) {
    let db = world(name, WORLD);
    let spec = db.file("checks.toml", CHECKS);
    let base = db.path("base.json");
    let r = snapshot_to(&db, &spec, &base);
    assert_eq!(r.code, 0, "{r}");
    (db, p(&spec).to_string(), p(&base).to_string())
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

/// A running watch whose stderr lines arrive on a channel as they are written.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    cmd: String,
}

impl Watch {
    fn start(args: &[&str]) -> Watch {
        let mut child = spawn(args);
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watch {
            child,
            lines,
            seen: Vec::new(),
            cmd: format!("migval {}", args.join(" ")),
        }
    }

    /// Wait (at most 30 s) for a stderr line containing `text`.
    fn wait_for(&mut self, text: &str) {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(30) {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                let hit = line.contains(text);
                self.seen.push(line);
                if hit {
                    return;
                }
            }
        }
        panic!("no `{text}` on stderr within 30 s: {:#?}", self.seen);
    }

    fn finish(mut self) -> Run {
        let out = self.child.wait_with_output().expect("wait");
        // The reader thread ends with the pipe.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(line);
        }
        Run {
            cmd: self.cmd,
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).to_string(),
            stderr: self.seen.join("\n"),
        }
    }
}

fn run_lines(r: &Run) -> usize {
    r.stderr.lines().filter(|l| l.contains(" run ")).count()
}

#[test]
fn a_watch_that_keeps_holding_prints_a_line_per_run_and_passes_at_until() {
    let (db, spec, base) = baselined("watch_passes");
    // The application wrote since the baseline: the count moved, the intents still hold.
    rt().block_on(
        db.exec("INSERT INTO accounts SELECT g, 'n' || g, 'pro' FROM generate_series(201, 260) g"),
    );
    let r = migval(&[
        "verify",
        "--spec",
        &spec,
        "--baseline",
        &base,
        "--db",
        &db.url,
        "--every",
        "1s",
        "--until",
        "3s",
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 0, "{r}");
    assert!(run_lines(&r) >= 3, "one line per run on stderr{r}");
    assert!(
        r.stderr
            .contains("run 1: 3 passed, 0 failed, 0 errors of 3 checks"),
        "{r}"
    );
    assert!(
        r.stderr.contains("check `account count` left out"),
        "the unchanged count is not watched, and it says so{r}"
    );
    // stdout is one JSON report: the last run's.
    let json: serde_json::Value = serde_json::from_str(&r.stdout).expect("one JSON report");
    assert_eq!(json["verdict"]["failed"], 0, "{r}");
    assert_eq!(json["verdict"]["total"], 3, "{r}");
    assert!(
        json["banner"]
            .as_str()
            .is_some_and(|b| b.contains("runs passed")),
        "{r}"
    );
}

#[test]
fn a_null_written_after_the_second_run_ends_the_watch_with_exit_1_naming_the_check() {
    let (db, spec, base) = baselined("watch_null");
    let mut w = Watch::start(&[
        "verify",
        "--spec",
        &spec,
        "--baseline",
        &base,
        "--db",
        &db.url,
        "--every",
        "1s",
        "--until",
        "60s",
    ]);
    w.wait_for("run 2:");
    // The old application instance still writes NULLs.
    rt().block_on(db.exec("INSERT INTO accounts VALUES (9001, NULL, 'free')"));
    let r = w.finish();
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.stderr.contains("1 failed"),
        "the failing run has its line{r}"
    );
    assert!(
        r.stdout.contains("FAIL") && r.stdout.contains("no account without email"),
        "the full report names the check{r}"
    );
    assert!(r.stdout.contains("VALIDATION FAILED"), "{r}");
}

#[test]
fn ctrl_c_ends_the_watch_with_130_and_no_backend_left() {
    let (db, spec, base) = baselined("watch_ctrl_c");
    let mut w = Watch::start(&[
        "verify",
        "--spec",
        &spec,
        "--baseline",
        &base,
        "--db",
        &db.url,
        "--every",
        "1s",
    ]);
    w.wait_for("run 1:");
    let pid = w.child.id().to_string();
    let status = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let r = w.finish();
    assert_eq!(r.code, 130, "{r}");
    let left: i64 = rt().block_on(async {
        db.client()
            .await
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND application_name = 'migval' AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .expect("count")
            .get(0)
    });
    assert_eq!(left, 0, "{r}");
}

#[test]
fn a_lost_connection_is_retried_at_the_next_tick() {
    let (db, spec, base) = baselined("watch_lost");
    let port = info(&server().admin_url).port[0];
    let proxy = Proxy::start(port);
    let url = proxy.url(&db.url, port);
    let url = format!(
        "{url}{}connect_timeout=2",
        if url.contains('?') { '&' } else { '?' }
    );
    let mut w = Watch::start(&[
        "verify",
        "--spec",
        &spec,
        "--baseline",
        &base,
        "--db",
        &url,
        "--every",
        "1s",
        "--until",
        "8s",
    ]);
    w.wait_for("run 1:");
    proxy.set(Mode::Reset);
    w.wait_for("could not capture");
    proxy.set(Mode::Forward);
    let r = w.finish();
    assert_eq!(
        r.code, 0,
        "a run lost to the network does not fail the watch{r}"
    );
    assert!(r.stderr.contains("retrying at the next tick"), "{r}");
    assert!(
        r.stderr
            .lines()
            .filter(|l| l.contains("3 passed, 0 failed"))
            .count()
            >= 2,
        "runs before and after the outage passed{r}"
    );
}

#[test]
fn a_watch_with_nothing_to_watch_or_a_bad_interval_is_refused() {
    let db = world("watch_refused", WORLD);
    let spec = db.file(
        "checks.toml",
        "[[check]]\nname = \"account count\"\ntable = \"accounts\"\nmetrics = [\"count(*)\"]\n",
    );
    let base = db.path("base.json");
    let r = snapshot_to(&db, &spec, &base);
    assert_eq!(r.code, 0, "{r}");
    let watch = |extra: &[&str]| {
        let mut args = vec![
            "verify",
            "--spec",
            p(&spec),
            "--baseline",
            p(&base),
            "--db",
            &db.url,
        ];
        args.extend_from_slice(extra);
        migval(&args)
    };
    let r = watch(&["--every", "1s", "--until", "2s"]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("nothing to watch"), "{r}");
    let r = watch(&["--every", "soon"]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("--every"), "{r}");
    let r = watch(&["--until", "2s"]);
    assert_eq!(r.code, 2, "--until needs --every{r}");
    // --watch-all watches the count too (nothing else writes here).
    let r = watch(&["--every", "1s", "--until", "1s", "--watch-all"]);
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.stderr.contains("of 2 checks"),
        "the count and the schema diff{r}"
    );
}

/// A check whose SQL starts failing is not a lost connection: the watch ends with exit 2 and
/// the server's error in the report.
#[test]
fn a_check_whose_sql_fails_ends_the_watch_with_exit_2_and_the_server_error() {
    let db = world("watch_sql_error", WORLD);
    rt().block_on(db.exec(
        "CREATE FUNCTION bad_plans() RETURNS bigint LANGUAGE sql AS
         $$ SELECT count(*) FROM accounts WHERE plan NOT IN ('free', 'pro') $$;",
    ));
    let spec = db.file(
        "checks.toml",
        "[[check]]\nname = \"plans allowed\"\nsql = \"SELECT bad_plans() AS bad_plans\"\nexpect = \"zero\"\n",
    );
    let base = db.path("base.json");
    let r = snapshot_to(&db, &spec, &base);
    assert_eq!(r.code, 0, "{r}");
    let mut w = Watch::start(&[
        "verify",
        "--spec",
        p(&spec),
        "--baseline",
        p(&base),
        "--db",
        &db.url,
        "--every",
        "1s",
        "--until",
        "60s",
    ]);
    w.wait_for("run 1:");
    rt().block_on(db.exec(
        "CREATE OR REPLACE FUNCTION bad_plans() RETURNS bigint LANGUAGE plpgsql AS
         $$ BEGIN RAISE EXCEPTION 'plans table is being rebuilt' USING HINT = 'wait for it'; END $$;",
    ));
    let r = w.finish();
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("1 errors"), "{r}");
    assert!(
        r.stdout.contains("plans table is being rebuilt") && r.stdout.contains("P0001"),
        "the server's error and SQLSTATE in the report{r}"
    );
}
