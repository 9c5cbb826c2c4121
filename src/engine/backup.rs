//! `--backup FILE` on `migrate --commit` and `backfill --commit`: a `pg_dump --format=custom`
//! of the database, taken with the installed client before anything is written, and the
//! refusal to go on when it fails.
//!
//! ```text
//!   pg_dump --format=custom --no-password --lock-wait-timeout=<lock_timeout>
//!           --file FILE.partial            connection from the environment only:
//!                                          PGHOST PGPORT PGUSER PGDATABASE PGSSLMODE ...
//!                                          PGPASSWORD (never on the command line, where
//!                                          `ps` shows it to every user of the machine)
//!   exit 0  -> rename FILE.partial -> FILE, report its size
//!   else    -> remove FILE.partial, error with pg_dump's stderr (passwords masked)
//! ```
//!
//! The dump runs in its own snapshot, like any pg_dump; migval's baseline is a separate one.
//! Both are taken before the first write, so both describe the database as it was.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::db::conninfo::ConnInfo;
use crate::model::Backup;

/// Why no backup was made (and so nothing may be written).
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("--backup {0}: {SSLPASSWORD_FOR_CHILDREN}")]
    SslPassword(String),
    #[error(
        "--backup {0}: the file exists; give a new file name (an existing backup is never overwritten)"
    )]
    Exists(String),
    #[error(
        "--backup {file}: cannot start `{program}` ({source}); install the PostgreSQL client \
         (e.g. apt-get install postgresql-client) or put pg_dump on PATH. Nothing was written"
    )]
    Start {
        file: String,
        program: String,
        source: std::io::Error,
    },
    #[error(
        "--backup {file}: pg_dump failed ({status}), so nothing was written to the database:\n{stderr}\n\
         fix the cause (a writable directory, disk space, pg_dump at least as new as the server) and run again"
    )]
    Failed {
        file: String,
        status: String,
        stderr: String,
    },
    #[error("--backup {file}: {what}: {source}. Nothing was written to the database")]
    Io {
        file: String,
        what: &'static str,
        source: std::io::Error,
    },
}

/// The program run: `pg_dump` from PATH, or `$MIGVAL_PG_DUMP`.
fn program() -> String {
    std::env::var("MIGVAL_PG_DUMP").unwrap_or_else(|_| "pg_dump".into())
}

/// Why pg_dump or an external command cannot connect as migval does with an encrypted client
/// key: libpq reads `sslpassword` from the connection string only.
pub const SSLPASSWORD_FOR_CHILDREN: &str = "the client key is encrypted (sslpassword), and libpq \
    takes sslpassword only from a connection string, which would put the passphrase on the \
    child's command line (visible in ps); give this run a client key without a passphrase, or \
    run pg_dump / the command yourself";

/// The libpq environment that makes pg_dump (or an external migration command run by
/// `migrate -- ...`) connect where migval connects. The password is only ever here
/// (PGPASSWORD), never in the arguments.
pub fn child_env(info: &ConnInfo) -> Vec<(&'static str, String)> {
    let join = |v: &[String]| v.join(",");
    let mut env = vec![
        ("PGHOST", join(&info.host)),
        (
            "PGPORT",
            info.port
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(","),
        ),
        ("PGUSER", info.user.clone()),
        ("PGDATABASE", info.dbname.clone()),
        ("PGSSLMODE", info.sslmode.as_str().to_string()),
        ("PGAPPNAME", "migval-backup".to_string()),
        (
            "PGTARGETSESSIONATTRS",
            info.target_session_attrs.as_str().to_string(),
        ),
        (
            "PGCHANNELBINDING",
            info.channel_binding.as_str().to_string(),
        ),
    ];
    if !info.hostaddr.is_empty() {
        let addrs: Vec<String> = info.hostaddr.iter().map(ToString::to_string).collect();
        env.push(("PGHOSTADDR", join(&addrs)));
    }
    if let Some(p) = &info.sslrootcert {
        env.push(("PGSSLROOTCERT", p.display().to_string()));
    }
    if let Some(t) = info.connect_timeout {
        env.push(("PGCONNECT_TIMEOUT", t.as_secs().max(2).to_string()));
    }
    if let Some(o) = &info.options {
        env.push(("PGOPTIONS", o.clone()));
    }
    if info.load_balance_random {
        env.push(("PGLOADBALANCEHOSTS", "random".into()));
    }
    if let Some(c) = &info.sslcert {
        env.push(("PGSSLCERT", c.display().to_string()));
    }
    if let Some(k) = &info.sslkey {
        env.push(("PGSSLKEY", k.display().to_string()));
    }
    if let Some(pw) = &info.password {
        env.push(("PGPASSWORD", pw.clone()));
    }
    env
}

/// pg_dump's arguments: no connection setting and no password among them.
fn args(partial: &Path, lock_timeout_ms: u64) -> Vec<String> {
    vec![
        "--format=custom".into(),
        "--no-password".into(),
        format!("--lock-wait-timeout={lock_timeout_ms}"),
        "--file".into(),
        partial.display().to_string(),
    ]
}

/// Text shown from pg_dump's stderr (or an external command's output): URL passwords and
/// `password=` masked, and the password itself wherever it appears.
pub fn redact(text: &str, password: Option<&str>) -> String {
    let mut out = crate::redact::text(text);
    if let Some(pw) = password.filter(|p| !p.is_empty()) {
        out = out.replace(pw, "***");
    }
    out
}

/// Dump the database of `info` to `file` (custom format), refusing an existing file. The
/// file appears only when pg_dump succeeded.
pub async fn dump(
    info: &ConnInfo,
    file: &Path,
    lock_timeout_ms: u64,
) -> Result<Backup, BackupError> {
    let shown = file.display().to_string();
    if info.sslpassword.is_some() {
        return Err(BackupError::SslPassword(shown));
    }
    if file.exists() {
        return Err(BackupError::Exists(shown));
    }
    let mut partial = file.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let program = program();
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(args(&partial, lock_timeout_ms))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    // Only migval's settings reach pg_dump: an inherited PGSERVICE, PGPASSFILE or
    // DATABASE_URL pointing elsewhere must not change which database is backed up.
    for (k, _) in std::env::vars_os() {
        if let Some(k) = k.to_str()
            && k.starts_with("PG")
        {
            cmd.env_remove(k);
        }
    }
    cmd.envs(child_env(info));
    let out = cmd.output().await.map_err(|source| BackupError::Start {
        file: shown.clone(),
        program: program.clone(),
        source,
    })?;
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    if !out.status.success() {
        let _ = std::fs::remove_file(&partial);
        let stderr = redact(
            String::from_utf8_lossy(&out.stderr).trim_end(),
            info.password.as_deref(),
        );
        return Err(BackupError::Failed {
            file: shown,
            status: out.status.to_string(),
            stderr,
        });
    }
    std::fs::rename(&partial, file).map_err(|source| BackupError::Io {
        file: shown.clone(),
        what: "moving the finished dump into place",
        source,
    })?;
    let bytes = std::fs::metadata(file)
        .map_err(|source| BackupError::Io {
            file: shown.clone(),
            what: "reading the dump's size",
            source,
        })?
        .len();
    Ok(Backup {
        file: shown,
        bytes,
        format: "custom".into(),
        database: info.dbname.clone(),
        duration_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(url: &str) -> ConnInfo {
        ConnInfo::resolve(Some(url), &|_| None).unwrap()
    }

    #[test]
    fn the_password_goes_to_the_environment_never_to_the_arguments() {
        let i = info("postgres://dba:s3cr%40t@db.example:6543/app?sslmode=require");
        let env = child_env(&i);
        let get = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PGPASSWORD"), Some("s3cr@t"));
        assert_eq!(get("PGHOST"), Some("db.example"));
        assert_eq!(get("PGPORT"), Some("6543"));
        assert_eq!(get("PGUSER"), Some("dba"));
        assert_eq!(get("PGDATABASE"), Some("app"));
        assert_eq!(get("PGSSLMODE"), Some("require"));
        let argv = args(Path::new("/backups/pre.dump.partial"), 5000).join(" ");
        assert!(!argv.contains("s3cr"), "{argv}");
        assert!(!argv.contains("db.example"), "{argv}");
        assert!(argv.contains("--format=custom") && argv.contains("--no-password"));
    }

    #[test]
    fn a_client_certificate_reaches_the_child_and_an_encrypted_key_is_refused() {
        let i = info("host=db sslmode=verify-full sslcert=/c/client.crt sslkey=/c/client.key");
        let env = child_env(&i);
        let get = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PGSSLCERT"), Some("/c/client.crt"));
        assert_eq!(get("PGSSLKEY"), Some("/c/client.key"));
        let i = info("host=db sslcert=/c/client.crt sslkey=/c/client.key sslpassword=pp-9x");
        let err = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(dump(&i, Path::new("/nonexistent/x.dump"), 1000))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("the client key is encrypted (sslpassword)"),
            "{err}"
        );
        assert!(!err.contains("pp-9x"), "{err}");
    }

    #[test]
    fn pg_dump_errors_are_shown_without_the_password() {
        let shown = redact(
            "pg_dump: error: connection to postgres://dba:hunter2@h/db failed; hunter2 rejected",
            Some("hunter2"),
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
