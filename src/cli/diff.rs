//! `migval diff`: compare two snapshot files, no database needed.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::{OutputArgs, load_spec};
use crate::spec::Spec;
use crate::{engine, store};

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
    pub output: OutputArgs,
}

pub fn run(a: DiffArgs) -> anyhow::Result<u8> {
    let baseline = store::read(&a.baseline).context("reading the baseline")?;
    let after = store::read(&a.after).context("reading the post-migration snapshot")?;
    let spec = match &a.spec {
        Some(p) => load_spec(p)?,
        None => Spec::parse(&baseline.spec.path, &baseline.spec.text)
            .map_err(|e| anyhow::anyhow!("the spec recorded in {}: {e}", a.baseline.display()))?,
    };
    let report = engine::diff(&spec, &baseline, &after);
    a.output.emit(&report)
}
