//! `migval verify`: re-capture the checks, compare with a baseline, report, exit code.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::{ConnArgs, LimitArgs, OutputArgs, load_spec};
use crate::{engine, store};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The checks file (TOML). Its [rename] map is applied to the post-migration capture.
    #[arg(long, value_name = "FILE")]
    pub spec: PathBuf,
    /// The baseline written by `migval snapshot`.
    #[arg(long, value_name = "FILE")]
    pub baseline: PathBuf,
    /// Also save the post-migration snapshot (for `migval diff` or the audit trail).
    #[arg(long, value_name = "FILE")]
    pub save_after: Option<PathBuf>,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub async fn run(a: VerifyArgs) -> anyhow::Result<u8> {
    let spec = load_spec(&a.spec)?;
    let baseline = store::read(&a.baseline).context("reading the baseline")?;
    let limits = a.limits.apply(&spec)?;
    let info = a.conn.resolve()?;
    let (report, after) = engine::verify(&info, &spec, &baseline, limits).await?;
    if let Some(path) = &a.save_after {
        store::write(path, &after).context("saving the post-migration snapshot")?;
    }
    a.output.emit(&report)
}
