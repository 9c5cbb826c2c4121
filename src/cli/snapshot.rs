//! `migval snapshot`: capture the baseline into a checksummed file.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::backfill::{INTERRUPTED, stop_signal};
use super::{ConnArgs, LimitArgs, SigningArgs, load_spec};
use crate::db::conninfo::ConnInfo;
use crate::model::Outcome;
use crate::report::escape;
use crate::{engine, store};

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// The checks file (TOML).
    #[arg(long, value_name = "FILE")]
    pub spec: PathBuf,
    /// Where to write the snapshot (written atomically; an existing file is replaced).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    #[command(flatten)]
    pub signing: SigningArgs,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Set once a stop signal arrived: a capture that ends meanwhile (its probes cancelled) must
/// not be written or reported as if it were complete; the signal's task exits the process.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Wait for the exit of a stop signal in progress, if there is one.
pub(super) async fn unless_stopping() {
    if STOPPING.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
}

/// Ctrl-C / SIGTERM while a capture runs: cancel every probe on the server (the exporter's
/// transaction and its ACCESS SHARE locks end with its connection), then exit 130 / 143. A
/// second signal exits at once. Shared by `snapshot` and `verify`.
pub(super) fn stop_captures_on_signal(info: &ConnInfo) {
    STOPPING.store(false, Ordering::SeqCst);
    let info = info.clone();
    tokio::spawn(async move {
        let code = AtomicU8::new(INTERRUPTED);
        if !stop_signal(&code).await {
            return; // no handler could be installed: the default disposition stays
        }
        STOPPING.store(true, Ordering::SeqCst);
        let second = AtomicU8::new(code.load(Ordering::Relaxed));
        let cancelled = tokio::select! {
            n = engine::capture::cancel_running(&info, Duration::from_secs(3)) => Some(n),
            _ = stop_signal(&second) => None,
        };
        match cancelled {
            Some(n) => eprintln!(
                "interrupted: {n} running quer{} cancelled on the server; nothing was written",
                if n == 1 { "y" } else { "ies" }
            ),
            None => eprintln!("interrupted again: exiting without waiting for the cancel requests"),
        }
        std::process::exit(i32::from(code.load(Ordering::Relaxed)));
    });
}

pub async fn run(a: SnapshotArgs) -> anyhow::Result<u8> {
    let spec = load_spec(&a.spec)?;
    let key = a.signing.key()?;
    let limits = a.limits.apply(&spec)?;
    let info = a.conn.resolve()?;
    stop_captures_on_signal(&info);
    let snap = engine::snapshot(&info, &spec, limits).await;
    unless_stopping().await;
    let snap = snap?;
    crate::trace!("captured");
    crate::engine::progress::emit(crate::engine::progress::Event::Phase("write file"));
    let written =
        store::write_signed(&a.out, &snap, key.as_ref()).with_context(|| "saving the baseline")?;
    crate::trace!("baseline written");
    crate::engine::progress::emit(crate::engine::progress::Event::Finished);
    let failed: Vec<_> = snap
        .checks
        .iter()
        .filter_map(|c| match &c.outcome {
            Outcome::Failed(f) => Some((c.name.as_str(), f)),
            Outcome::Captured(_) | Outcome::Streamed(_) | Outcome::Absent(_) => None,
        })
        .collect();
    println!(
        "snapshot {} of {}{} at {} (lsn {}): {} checks on {} connections in {} ms -> {}",
        snap.origin.snapshot_id,
        snap.origin.target,
        crate::report::standby_note(&snap.origin),
        snap.origin.captured_at,
        snap.origin.lsn,
        snap.checks.len(),
        snap.origin.connections,
        snap.origin.duration_ms,
        a.out.display()
    );
    // For the change ticket: `verify --baseline-sha256` refuses any other file.
    println!(
        "baseline sha256 {}{} (record it with the change; verify --baseline-sha256 {} refuses any other file)",
        written.sha256,
        if written.signed {
            ", signed (HMAC-SHA256)"
        } else {
            ""
        },
        written.sha256
    );
    for (name, f) in &failed {
        eprintln!(
            "ERROR check `{}`: {}",
            escape::line(name),
            escape::block(&f.to_string())
        );
    }
    if failed.is_empty() {
        Ok(0)
    } else {
        eprintln!(
            "{} of {} checks could not be captured; they will show as ERROR when verified",
            failed.len(),
            snap.checks.len()
        );
        Ok(2)
    }
}
