//! `migval snapshot`: capture the baseline into a checksummed file.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::{ConnArgs, LimitArgs, load_spec};
use crate::model::Outcome;
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
    pub conn: ConnArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
}

pub async fn run(a: SnapshotArgs) -> anyhow::Result<u8> {
    let spec = load_spec(&a.spec)?;
    let limits = a.limits.apply(&spec)?;
    let info = a.conn.resolve()?;
    let snap = engine::snapshot(&info, &spec, limits).await?;
    crate::trace!("captured");
    store::write(&a.out, &snap).with_context(|| "saving the baseline")?;
    crate::trace!("baseline written");
    let failed: Vec<_> = snap
        .checks
        .iter()
        .filter_map(|c| match &c.outcome {
            Outcome::Failed(f) => Some((c.name.as_str(), f)),
            Outcome::Captured(_) | Outcome::Absent(_) => None,
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
    for (name, f) in &failed {
        eprintln!("ERROR check `{name}`: {f}");
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
