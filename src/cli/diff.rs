//! `migval diff`: compare two snapshot files, no database needed.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::{BaselineArgs, OutputArgs, load_spec, open_snapshot};
use crate::engine;
use crate::spec::Spec;

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The baseline snapshot.
    pub baseline: PathBuf,
    /// The post-migration snapshot.
    pub after: PathBuf,
    /// Rules to compare with. Default: the spec recorded in the baseline file.
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    #[command(flatten)]
    pub checks: BaselineArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub fn run(a: DiffArgs) -> anyhow::Result<u8> {
    // --baseline-sha256 names the baseline; the size limit and the key apply to both files.
    let baseline = open_snapshot(&a.baseline, &a.checks.options(true)?)
        .and_then(|v| Ok(v.parse()?))
        .context("reading the baseline")?;
    let after = open_snapshot(&a.after, &a.checks.options(false)?)
        .and_then(|v| Ok(v.parse()?))
        .context("reading the post-migration snapshot")?;
    let spec = match &a.spec {
        Some(p) => load_spec(p)?,
        None => Spec::parse(&baseline.spec.path, &baseline.spec.text)
            .map_err(|e| anyhow::anyhow!("the spec recorded in {}: {e}", a.baseline.display()))?,
    };
    let report = engine::diff(&spec, &baseline, &after);
    a.output.emit(&report)
}
