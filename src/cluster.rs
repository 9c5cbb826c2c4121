//! Throwaway PostgreSQL clusters started from the locally installed server binaries.
//!
//! `migval demo` and the integration tests need a real server without asking the user to set
//! one up. This module finds `initdb`/`pg_ctl`, creates a cluster in a temporary directory,
//! starts it on a free loopback port and removes it again. `initdb` and `pg_ctl` refuse to run
//! as root, so when we are root the server runs as the `postgres` system user (or `nobody`),
//! with the data directory handed to that user.
//!
//! ```text
//!   start():  mkdir tmp/migval-pg-*  ->  initdb (as pg user)  ->  append settings
//!             ->  pg_ctl start -w  ->  spawn watchdog(our pid)
//!   start_standby():  mkdir  ->  pg_basebackup -R -X stream from the primary (as pg user)
//!             ->  append settings  ->  pg_ctl start -w  ->  spawn watchdog(our pid)
//!   Drop:     pg_ctl stop -m fast  ->  rm -rf tmp dir
//!   watchdog: waits for our process to disappear (even after kill -9), then does the same
//! ```

use std::fs;
use std::io;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Why a throwaway cluster could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "no PostgreSQL server binaries found (looked for initdb and pg_ctl in $MIGVAL_PG_BIN, \
         on PATH and in /usr/lib/postgresql/*/bin); install the server package \
         (Debian/Ubuntu: apt-get install postgresql) or point --db at an existing server"
    )]
    NoBinaries,
    #[error(
        "running as root, but no unprivileged user to run PostgreSQL as (initdb refuses root); \
         create a `postgres` system user"
    )]
    NoUnprivilegedUser,
    #[error("{step} failed: {detail}")]
    Step { step: &'static str, detail: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

/// Extra settings for a throwaway cluster.
#[derive(Debug, Default, Clone)]
pub struct ClusterOptions {
    /// `name = value` lines appended to postgresql.conf (values are written quoted).
    pub settings: Vec<(String, String)>,
    /// Files written into the data directory before start, owned by the server user with mode
    /// 0600 (TLS keys and certificates for TLS tests).
    pub files: Vec<(String, Vec<u8>)>,
}

/// A running throwaway cluster. Stopped and deleted on drop.
#[derive(Debug)]
pub struct Cluster {
    base: PathBuf,
    bin: PathBuf,
    port: u16,
    run_as: Option<(u32, u32)>,
    stopped: bool,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Cluster {
    /// initdb + start on a free port. Blocking; takes about a second.
    pub fn start(opts: &ClusterOptions) -> Result<Cluster, ClusterError> {
        let bin = find_bin_dir().ok_or(ClusterError::NoBinaries)?;
        let run_as = if effective_uid_is_root() {
            Some(unprivileged_user().ok_or(ClusterError::NoUnprivilegedUser)?)
        } else {
            None
        };
        let mut cluster = Cluster::create(bin, run_as)?;
        cluster.initdb(opts)?;
        cluster.write_files(&opts.files)?;
        cluster.start_on_free_port()?;
        Ok(cluster)
    }

    /// A streaming standby of this cluster, for tests that need a real replica (the backfill's
    /// replication-lag ceiling): `pg_basebackup -R -X stream` over TCP into a new directory
    /// (as the server user, like initdb), `opts.settings` appended to the copied
    /// postgresql.conf, started on a free port. Stopped and deleted on drop like any throwaway
    /// cluster, watchdog included; drop it before the primary, or it logs reconnect attempts
    /// until then. Blocking; takes a second or two.
    ///
    /// The primary needs wal_level `replica` and a free WAL sender, which are PostgreSQL's
    /// defaults (10 senders) and which [`Cluster::start`] leaves alone; pg_hba.conf must let a
    /// `replication` connection in from 127.0.0.1, which initdb's trust configuration does
    /// (the line is added, and the server reloaded, if a cluster's file lacks it).
    pub fn start_standby(&self, opts: &ClusterOptions) -> Result<Cluster, ClusterError> {
        self.allow_replication()?;
        let mut standby = Cluster::create(self.bin.clone(), self.run_as)?;
        let out = standby
            .command("pg_basebackup")
            .arg("-D")
            .arg(standby.data_dir())
            .args(["-R", "-X", "stream", "--checkpoint=fast", "--no-sync", "-w"])
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| io_err("run pg_basebackup".into(), e))?;
        if !out.status.success() {
            return Err(ClusterError::Step {
                step: "pg_basebackup",
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        // The copied postgresql.conf still names the primary's socket directory (deleted with
        // the primary) and port (replaced by write_port); -R wrote primary_conninfo and
        // standby.signal.
        let mut conf = String::from("\n# added by migval's throwaway standby\n");
        let socket_dir = standby.base.display().to_string();
        conf.push_str(&setting_line("unix_socket_directories", &socket_dir));
        for (k, v) in &opts.settings {
            conf.push_str(&setting_line(k, v));
        }
        standby.append_conf(&conf)?;
        standby.write_files(&opts.files)?;
        standby.start_on_free_port()?;
        Ok(standby)
    }

    /// An empty directory for a new cluster, owned by the server user.
    fn create(bin: PathBuf, run_as: Option<(u32, u32)>) -> Result<Cluster, ClusterError> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let base = std::env::temp_dir().join(format!("migval-pg-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&base).map_err(|e| io_err(format!("create {}", base.display()), e))?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&base, Some(uid), Some(gid))
                .map_err(|e| io_err(format!("chown {}", base.display()), e))?;
        }
        Ok(Cluster {
            base,
            bin,
            port: 0,
            run_as,
            stopped: true,
        })
    }

    /// Start the server on a free port, then hand it to the watchdog.
    fn start_on_free_port(&mut self) -> Result<(), ClusterError> {
        // A port picked by binding :0 can be taken before the server binds it: retry.
        let mut last = None;
        for _ in 0..5 {
            self.port = free_port()?;
            self.write_port()?;
            match self.pg_ctl_start() {
                Ok(()) => {
                    self.stopped = false;
                    self.spawn_watchdog();
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(ClusterError::Step {
            step: "pg_ctl start",
            detail: "no attempt made".into(),
        }))
    }

    /// Make sure pg_hba.conf accepts `replication` connections from 127.0.0.1 (initdb's trust
    /// configuration does; a line is put first and the server reloaded otherwise). The
    /// `database` column must say `replication`: `all` does not cover replication connections.
    fn allow_replication(&self) -> Result<(), ClusterError> {
        let path = self.data_dir().join("pg_hba.conf");
        let hba =
            fs::read_to_string(&path).map_err(|e| io_err(format!("read {}", path.display()), e))?;
        let allowed = hba_trusts_local_replication(&hba);
        if allowed {
            return Ok(());
        }
        // First: pg_hba.conf is read top down and the first matching line decides.
        let text = format!(
            "# added by migval for a throwaway standby\nhost replication all 127.0.0.1/32 trust\n{hba}"
        );
        fs::write(&path, text).map_err(|e| io_err(format!("write {}", path.display()), e))?;
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .arg("reload")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| io_err("run pg_ctl reload".into(), e))?;
        if !out.status.success() {
            return Err(ClusterError::Step {
                step: "pg_ctl reload",
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }

    /// TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connection URL for database `dbname` as the superuser `postgres` (trust auth, no TLS).
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{dbname}?sslmode=disable",
            self.port
        )
    }

    /// The data directory (for tests that inspect or tweak it).
    pub fn data_dir(&self) -> PathBuf {
        self.base.join("data")
    }

    /// Restart the server as a production restart would: fast shutdown (every connection is
    /// dropped), `down` of downtime, start again on the same port.
    pub fn restart(&mut self, down: std::time::Duration) -> Result<(), ClusterError> {
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w", "-t", "60", "stop"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| io_err("run pg_ctl stop".into(), e))?;
        if !out.status.success() {
            return Err(ClusterError::Step {
                step: "pg_ctl stop",
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        std::thread::sleep(down);
        self.pg_ctl_start()
    }

    /// Stop the server (fast shutdown) and delete its directory.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let data = self.data_dir();
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-m", "fast", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = fs::remove_dir_all(&self.base);
    }

    fn command(&self, tool: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(tool));
        cmd.current_dir(&self.base);
        cmd.env_remove("PGDATA");
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn initdb(&self, opts: &ClusterOptions) -> Result<(), ClusterError> {
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(self.data_dir())
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| io_err("run initdb".into(), e))?;
        if !out.status.success() {
            return Err(ClusterError::Step {
                step: "initdb",
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let mut conf = String::from("\n# added by migval's throwaway cluster\n");
        let socket_dir = self.base.display().to_string();
        let defaults = [
            ("listen_addresses", "127.0.0.1"),
            ("unix_socket_directories", socket_dir.as_str()),
            ("fsync", "off"),
            ("synchronous_commit", "off"),
            ("full_page_writes", "off"),
            ("max_connections", "200"),
            ("shared_buffers", "256MB"),
            ("work_mem", "64MB"),
        ];
        for (k, v) in defaults {
            conf.push_str(&setting_line(k, v));
        }
        for (k, v) in &opts.settings {
            conf.push_str(&setting_line(k, v));
        }
        self.append_conf(&conf)
    }

    /// Files written into the data directory, owned by the server user, mode 0600.
    fn write_files(&self, files: &[(String, Vec<u8>)]) -> Result<(), ClusterError> {
        for (name, bytes) in files {
            let path = self.data_dir().join(name);
            fs::write(&path, bytes).map_err(|e| io_err(format!("write {}", path.display()), e))?;
            let mut perm = fs::metadata(&path)
                .map_err(|e| io_err(format!("stat {}", path.display()), e))?
                .permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o600);
            fs::set_permissions(&path, perm)
                .map_err(|e| io_err(format!("chmod {}", path.display()), e))?;
            if let Some((uid, gid)) = self.run_as {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                    .map_err(|e| io_err(format!("chown {}", path.display()), e))?;
            }
        }
        Ok(())
    }

    fn append_conf(&self, text: &str) -> Result<(), ClusterError> {
        use std::io::Write;
        let path = self.data_dir().join("postgresql.conf");
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| io_err(format!("open {}", path.display()), e))?;
        f.write_all(text.as_bytes())
            .map_err(|e| io_err(format!("write {}", path.display()), e))
    }

    fn write_port(&self) -> Result<(), ClusterError> {
        // The last `port` line wins in postgresql.conf.
        self.append_conf(&format!("port = {}\n", self.port))
    }

    fn pg_ctl_start(&self) -> Result<(), ClusterError> {
        let log = self.base.join("server.log");
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "start"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| io_err("run pg_ctl start".into(), e))?;
        if out.status.success() {
            return Ok(());
        }
        let server_log = fs::read_to_string(&log).unwrap_or_default();
        Err(ClusterError::Step {
            step: "pg_ctl start",
            detail: format!(
                "{}\n{}",
                String::from_utf8_lossy(&out.stderr).trim(),
                server_log.trim()
            ),
        })
    }

    /// A detached shell that stops the server once this process is gone, so that a test run
    /// killed mid-way (or a test binary whose statics are never dropped) leaves nothing behind.
    fn spawn_watchdog(&self) {
        let script = format!(
            "while [ -d /proc/{pid} ]; do sleep 1; done; \
             '{bin}/pg_ctl' -D '{data}' -m immediate stop >/dev/null 2>&1; rm -rf '{base}'",
            pid = std::process::id(),
            bin = self.bin.display(),
            data = self.data_dir().display(),
            base = self.base.display(),
        );
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        let _ = cmd.spawn();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn io_err(what: String, source: io::Error) -> ClusterError {
    ClusterError::Io { what, source }
}

/// Whether a pg_hba.conf has a `trust` line for replication connections from 127.0.0.1.
fn hba_trusts_local_replication(hba: &str) -> bool {
    hba.lines().any(|line| {
        let f: Vec<&str> = line
            .split('#')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        f.len() >= 5
            && matches!(f[0], "host" | "hostnossl")
            && f[1] == "replication"
            && matches!(f[3], "127.0.0.1/32" | "0.0.0.0/0" | "all" | "samehost")
            && f[4] == "trust"
    })
}

/// A postgresql.conf line, the value quoted.
fn setting_line(name: &str, value: &str) -> String {
    format!("{name} = '{}'\n", value.replace('\'', "''"))
}

fn free_port() -> Result<u16, ClusterError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| io_err("bind a free port".into(), e))?;
    let port = l
        .local_addr()
        .map_err(|e| io_err("read the bound port".into(), e))?
        .port();
    Ok(port)
}

/// `/proc/self` is owned by the effective user of this process.
fn effective_uid_is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// uid/gid of `postgres`, else `nobody`, from /etc/passwd.
fn unprivileged_user() -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    let lookup = |name: &str| {
        passwd.lines().find_map(|line| {
            let mut f = line.split(':');
            if f.next()? != name {
                return None;
            }
            let _pw = f.next()?;
            let uid = f.next()?.parse().ok()?;
            let gid = f.next()?.parse().ok()?;
            Some((uid, gid))
        })
    };
    lookup("postgres").or_else(|| lookup("nobody"))
}

/// Directory holding `initdb` and `pg_ctl`.
pub fn find_bin_dir() -> Option<PathBuf> {
    let has_tools = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(d) = std::env::var_os("MIGVAL_PG_BIN").map(PathBuf::from)
        && has_tools(&d)
    {
        return Some(d);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if has_tools(&d) {
                // Prefer the real directory so that postgres is found next to initdb.
                return Some(
                    fs::canonicalize(d.join("initdb"))
                        .ok()
                        .and_then(|p| p.parent().map(Path::to_path_buf))
                        .unwrap_or(d),
                );
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| has_tools(d))
        .collect();
    versions.sort();
    versions.pop().map(|(_, d)| d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_from_localhost_needs_its_own_hba_line() {
        // initdb -A trust writes this line.
        assert!(hba_trusts_local_replication(
            "local all all trust\nhost    replication     all             127.0.0.1/32            trust\n"
        ));
        // `all` in the database column does not cover replication connections.
        assert!(!hba_trusts_local_replication(
            "host all all 127.0.0.1/32 trust\n"
        ));
        assert!(!hba_trusts_local_replication(
            "# host replication all 127.0.0.1/32 trust\n"
        ));
        assert!(!hba_trusts_local_replication(
            "host replication all 127.0.0.1/32 scram-sha-256\n"
        ));
    }
}
