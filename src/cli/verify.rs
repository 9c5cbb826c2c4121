//! `migval verify`: re-capture the checks, compare with a baseline, report, exit code.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::{BaselineArgs, ConnArgs, LimitArgs, OutputArgs, load_spec, open_snapshot};
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
    pub checks: BaselineArgs,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub async fn run(a: VerifyArgs) -> anyhow::Result<u8> {
    let spec = load_spec(&a.spec)?;
    // The checksum, expected hash and signature are checked now (a bad baseline stops us before
    // any query); parsing a big baseline overlaps with the capture.
    let opts = a.checks.options(true)?;
    let verified = open_snapshot(&a.baseline, &opts).context("reading the baseline")?;
    let parsing = tokio::task::spawn_blocking(move || verified.parse());
    let limits = a.limits.apply(&spec)?;
    let info = a.conn.resolve()?;
    super::snapshot::stop_captures_on_signal(&info);
    let (captured, baseline) = if engine::needs_baseline_catalog(&spec) {
        // A rows check fingerprints the columns the baseline had: read it first.
        let baseline = parsing
            .await
            .context("reading the baseline")?
            .context("reading the baseline")?;
        let captured = engine::capture_after(&info, &spec, limits, Some(&baseline.catalog)).await;
        (captured, baseline)
    } else {
        let captured = engine::capture_after(&info, &spec, limits, None).await;
        let baseline = parsing
            .await
            .context("reading the baseline")?
            .context("reading the baseline")?;
        (captured, baseline)
    };
    super::snapshot::unless_stopping().await;
    let after = captured?;
    crate::trace!("baseline parsed");
    engine::progress::emit(engine::progress::Event::Phase("compare"));
    let mut report = engine::compare_after(&spec, &baseline, &after);
    engine::rows::describe(&info, &spec, &mut report).await;
    crate::trace!("captured and compared");
    if let Some(path) = &a.save_after {
        store::write_signed(path, &after, opts.key.as_ref())
            .context("saving the post-migration snapshot")?;
    }
    let code = a.output.emit(&report);
    crate::trace!("report written");
    code
}
