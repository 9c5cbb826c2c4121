//! `migval verify`: re-capture the checks, compare with a baseline, report, exit code; with
//! `--every`, keep doing so (the watch of `cli/watch.rs`).

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
    /// Watch after go-live: re-run, every DURATION (30s, 10m, 2h), the checks that must keep
    /// holding while the application writes (expect = "zero", equals, between, schema facts;
    /// unchanged totals, rows and sizes checks are left out). One line per run on stderr;
    /// exits 1 at the first failing run with its full report, 0 with the last report when
    /// --until is reached, 2 when it cannot do its job.
    #[arg(long, value_name = "DURATION")]
    pub every: Option<String>,
    /// How long to watch, from the first run (e.g. 48h); no run starts after it. Without it
    /// the watch runs until a check fails or Ctrl-C.
    #[arg(long, value_name = "DURATION", requires = "every")]
    pub until: Option<String>,
    /// Watch every check, also those the application's writes move (unchanged totals, rows,
    /// sizes, the schema diff): for a database nothing else writes to.
    #[arg(long, requires = "every")]
    pub watch_all: bool,
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
    let schedule = super::watch::Schedule::from_args(&a)?;
    super::snapshot::stop_captures_on_signal(&info);
    if let Some(schedule) = schedule {
        let baseline = parsing
            .await
            .context("reading the baseline")?
            .context("reading the baseline")?;
        return super::watch::run(&a, &schedule, &info, &spec, &baseline, limits).await;
    }
    let (captured, baseline) = if engine::has_rows_checks(&spec) {
        // Rows checks are merged against the baseline's sections as the post-state arrives
        // (and fingerprint the columns the baseline had): read it first. Their post-state is
        // written nowhere unless it is to be saved.
        let baseline = parsing
            .await
            .context("reading the baseline")?
            .context("reading the baseline")?;
        let keep = a.save_after.is_some();
        let captured = engine::capture_after_against(&info, &spec, limits, &baseline, keep).await;
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
    let report = engine::judge("verify", &info, &spec, &baseline, &after).await;
    crate::trace!("captured and compared");
    if let Some(path) = &a.save_after {
        store::write_signed(path, &after, opts.key.as_ref())
            .context("saving the post-migration snapshot")?;
    }
    let code = a.output.emit(&report);
    crate::trace!("report written");
    code
}
