//! Test harness: one throwaway PostgreSQL cluster per test binary (started from the local
//! server binaries, as root too), or the server in `MIGVAL_TEST_DATABASE_URL`; a fresh database
//! per test, named after the test and dropped first if a crashed run left it behind; and a
//! runner for the real `migval` binary that prints the command, stdout and stderr on failure.

#![allow(dead_code)]

pub mod proxy;

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use migval::cluster::{Cluster, ClusterOptions};
use migval::db::conninfo::ConnInfo;
use tokio_postgres::Client;

pub struct Server {
    /// URL of the maintenance database (`postgres`).
    pub admin_url: String,
    _cluster: Option<Cluster>,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();

pub fn server() -> &'static Server {
    let s = SERVER.get_or_init(|| {
        if let Ok(url) = std::env::var("MIGVAL_TEST_DATABASE_URL") {
            return Ok(Server {
                admin_url: url,
                _cluster: None,
            });
        }
        let cluster = Cluster::start(&ClusterOptions::default()).map_err(|e| e.to_string())?;
        Ok(Server {
            admin_url: cluster.url("postgres"),
            _cluster: Some(cluster),
        })
    });
    match s {
        Ok(s) => s,
        Err(e) => panic!("cannot start a throwaway PostgreSQL for the tests: {e}"),
    }
}

pub fn info(url: &str) -> ConnInfo {
    ConnInfo::resolve(Some(url), &|_| None).expect("test URL parses")
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub async fn connect(url: &str) -> Client {
    migval::db::connect(&info(url)).await.expect("connect")
}

/// A database of its own for one test.
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub dir: PathBuf,
}

/// A passing test's scratch directory is removed (a suite run would otherwise leave one per
/// test in the temp directory); a failing test's is kept for inspection, and so is every one
/// when `MIGVAL_KEEP_TEST_DIRS` is set. The database is left for the next run to drop.
impl Drop for TestDb {
    fn drop(&mut self) {
        if !std::thread::panicking() && std::env::var_os("MIGVAL_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl TestDb {
    /// Create (after dropping any leftover) database `t_<name>` and a scratch directory.
    pub async fn new(name: &str) -> TestDb {
        let srv = server();
        let db = format!("t_{name}");
        let admin = connect(&srv.admin_url).await;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))
            .await
            .expect("drop leftover database");
        admin
            .batch_execute(&format!("CREATE DATABASE \"{db}\""))
            .await
            .expect("create test database");
        let url = info(&srv.admin_url).with_dbname(&db);
        let url = url_of(&srv.admin_url, &db, &url);
        let dir = std::env::temp_dir().join(format!("migval-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        TestDb { name: db, url, dir }
    }

    pub async fn client(&self) -> Client {
        connect(&self.url).await
    }

    pub async fn exec(&self, sql: &str) {
        let c = self.client().await;
        if let Err(e) = c.batch_execute(sql).await {
            panic!("test SQL failed: {}\n{sql}", migval::db::failure(&e, None));
        }
    }

    pub fn info(&self) -> ConnInfo {
        info(&self.url)
    }

    /// Write a file in the scratch directory.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, text).expect("write scratch file");
        p
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Replace the database of a URL of the form scheme://...host:port/db?query.
fn url_of(admin_url: &str, db: &str, _info: &ConnInfo) -> String {
    let (head, query) = match admin_url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (admin_url, None),
    };
    let base = match head.rfind('/') {
        Some(i) if i > head.find("//").map_or(0, |j| j + 1) => &head[..i],
        _ => head,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// Output of one run of the binary.
pub struct Run {
    pub cmd: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "\n$ {}\nexit code: {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n",
            self.cmd, self.code, self.stdout, self.stderr
        )
    }
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Run `migval args...` with a clean environment (no DATABASE_URL / PG* leaking in).
pub fn migval(args: &[&str]) -> Run {
    migval_env(args, &[])
}

pub fn migval_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let bin = env!("CARGO_BIN_EXE_migval");
    let mut cmd = Command::new(bin);
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k == "DATABASE_URL" || k.starts_with("PG") {
            cmd.env_remove(&k);
        }
    }
    cmd.env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run migval");
    Run {
        cmd: format!("migval {}", args.join(" ")),
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

pub fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// A fresh database `t_<name>` with `sql` run in it.
pub fn world(name: &str, sql: &str) -> TestDb {
    rt().block_on(async {
        let db = TestDb::new(name).await;
        db.exec(sql).await;
        db
    })
}

/// `migval verify` of the scratch directory's checks.toml against its base.json, with `extra`
/// arguments (what `snapshot_then` leaves behind).
pub fn verify_again(db: &TestDb, extra: &[&str]) -> Run {
    let spec = db.path("checks.toml");
    let base = db.path("base.json");
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
}

/// `migval snapshot --spec SPEC --out OUT --db` the test database's URL.
pub fn snapshot_to(db: &TestDb, spec: &Path, out: &Path) -> Run {
    migval(&[
        "snapshot",
        "--spec",
        p(spec),
        "--out",
        p(out),
        "--db",
        &db.url,
    ])
}

/// Spec + baseline + verify through the CLI, returning the verify run (JSON report on stdout).
pub fn snapshot_then<F: FnOnce()>(db: &TestDb, spec: &str, change: F) -> (Run, serde_json::Value) {
    let spec_path = db.file("checks.toml", spec);
    let base = db.path("base.json");
    let r = snapshot_to(db, &spec_path, &base);
    assert_eq!(r.code, 0, "snapshot failed{r}");
    change();
    let r = migval(&[
        "verify",
        "--spec",
        p(&spec_path),
        "--baseline",
        p(&base),
        "--db",
        &db.url,
        "--format",
        "json",
    ]);
    let json: serde_json::Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("verify did not print JSON ({e}){r}"));
    (r, json)
}

/// Status of check `name` in a JSON report.
pub fn status<'a>(report: &'a serde_json::Value, name: &str) -> &'a str {
    check(report, name)["status"].as_str().unwrap_or("?")
}

pub fn check<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no check `{name}` in report: {report:#}"))
}
