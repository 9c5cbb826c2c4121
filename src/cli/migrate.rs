//! `migval migrate`: rehearse a migration inside a transaction and show the verdict before
//! anything is committed; apply it only with --commit and a passing verdict.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

use super::{BaselineArgs, ConnArgs, LimitArgs, OutputArgs, load_spec, open_snapshot};
use crate::engine::{self, migrate};
use crate::model::Report;
use crate::store;

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The migration script(s) (plain SQL, no psql meta-commands). Several files run in the
    /// order given, in ONE transaction: `migrate 01_schema.sql 02_data.sql` commits both or
    /// neither. A BEGIN first and a COMMIT last in a file are allowed: they become migval's own
    /// transaction.
    #[arg(value_name = "FILE", required_unless_present = "command")]
    pub file: Vec<PathBuf>,
    /// The checks file (TOML).
    #[arg(long, value_name = "FILE")]
    pub spec: PathBuf,
    /// Use this baseline instead of capturing one first.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Commit when (and only when) the verdict passes. Without it, everything is rolled back.
    #[arg(long)]
    pub commit: bool,
    /// Rehearse this rollback script after the migration, in the same transaction, and check
    /// that it restores the baseline exactly. Everything is rolled back. Repeat it for a
    /// rollback in several files (run in the order given).
    #[arg(long, value_name = "FILE", conflicts_with = "commit")]
    pub rollback: Vec<PathBuf>,
    /// Apply a script that cannot run in a transaction (CREATE INDEX CONCURRENTLY, VACUUM...):
    /// baseline, run statement by statement, verify. Not reversible; needs --commit.
    #[arg(long)]
    pub no_transaction: bool,
    /// Before anything is written, dump the database with `pg_dump --format=custom` to this new
    /// file (same connection settings; the password only in pg_dump's environment). If the
    /// dump fails, nothing runs (exit 2). Only with --commit: a rehearsal writes nothing.
    #[arg(long, value_name = "FILE", requires = "commit")]
    pub backup: Option<PathBuf>,
    /// Retries of a statement that hits lock_timeout, with backoff.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub lock_retries: u32,
    /// Where --commit writes the baseline, post-snapshot and report it used.
    #[arg(long, value_name = "DIR", default_value = "migval-runs")]
    pub artifacts: PathBuf,
    #[command(flatten)]
    pub checks: BaselineArgs,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// An external migration tool to run instead of a file, after `--`
    /// (e.g. `-- alembic upgrade head`). Not transactional; needs --commit.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

pub async fn run(a: MigrateArgs) -> anyhow::Result<u8> {
    let spec = load_spec(&a.spec)?;
    let opts = a.checks.options(true)?;
    if a.baseline.is_none() && a.checks.baseline_sha256.is_some() {
        bail!("--baseline-sha256 checks a --baseline file: give the file too");
    }
    let limits = a.limits.apply(&spec)?;
    let info = a.conn.resolve()?;
    let external = !a.command.is_empty();
    if external && !a.file.is_empty() {
        bail!("give either a migration FILE or a command after `--`, not both");
    }
    if (external || a.no_transaction) && !a.commit {
        bail!(
            "{} applies its changes as it runs (it cannot be rehearsed in a transaction): add --commit to run it for real",
            if external {
                "an external command"
            } else {
                "--no-transaction"
            }
        );
    }
    if let Some(file) = a.backup.as_deref().filter(|f| f.exists()) {
        // Said before the baseline is taken: the dump would refuse it anyway.
        return Err(engine::backup::BackupError::Exists(file.display().to_string()).into());
    }
    if info.sslpassword.is_some() && (a.backup.is_some() || external) {
        // Said before the baseline is taken too: neither child could connect.
        anyhow::bail!(
            "{}: {}",
            if external {
                "the external command"
            } else {
                "--backup"
            },
            engine::backup::SSLPASSWORD_FOR_CHILDREN
        );
    }
    // Read and check the scripts before touching the database.
    let plan = if a.file.is_empty() {
        None
    } else {
        let scripts = prepare_all(&a.file, !a.no_transaction)?;
        let rollback = prepare_all(&a.rollback, true)?;
        Some(migrate::Plan {
            scripts,
            rollback,
            commit: a.commit,
            limits,
            lock_retries: a.lock_retries,
        })
    };
    let baseline = match &a.baseline {
        Some(p) => open_snapshot(p, &opts)
            .and_then(|v| Ok(v.parse()?))
            .context("reading the baseline")?,
        None => engine::snapshot(&info, &spec, limits).await?,
    };
    // After the baseline (read-only), before the first write.
    let backup = match &a.backup {
        Some(file) => {
            let b = engine::backup::dump(&info, file, limits.lock_timeout_ms).await?;
            eprintln!("backup: {}", b.describe());
            Some(b)
        }
        None => None,
    };
    let mut outcome = match &plan {
        Some(plan) if a.no_transaction => {
            migrate::run_without_transaction(&info, &spec, &baseline, plan).await?
        }
        Some(plan) => migrate::run_in_transaction(&info, &spec, &baseline, plan).await?,
        None => {
            eprintln!(
                "running `{}` (not transactional) ...",
                crate::redact::command_line(&a.command)
            );
            let print = |line: &str| eprintln!("  | {}", crate::report::escape::block(line));
            migrate::run_external(&info, &spec, &baseline, &a.command, limits, &print).await?
        }
    };
    outcome.report.backup = backup;
    if a.commit {
        save_artifacts(
            &a.artifacts,
            opts.key.as_ref(),
            &baseline,
            outcome.after.as_ref(),
            &outcome.report,
        )?;
    }
    let mut code = a.output.emit(&outcome.report)?;
    if let Some(rb) = &outcome.rollback_report {
        println!();
        code = code.max(a.output.emit(rb)?);
    }
    Ok(code)
}

/// Read and check every file before anything runs: a refusal in the last file stops the first
/// from running too.
fn prepare_all(paths: &[PathBuf], in_transaction: bool) -> anyhow::Result<Vec<migrate::Script>> {
    paths
        .iter()
        .map(|path| {
            let text = read_script(path)?;
            Ok(migrate::prepare_script(
                &path.display().to_string(),
                &text,
                in_transaction,
            )?)
        })
        .collect()
}

/// A migration script, at most as large as a spec.
fn read_script(path: &std::path::Path) -> anyhow::Result<String> {
    crate::input::read_text_bounded(
        path,
        crate::input::MAX_SPEC_BYTES,
        "split the migration into several files",
    )
    .with_context(|| format!("reading {}", path.display()))
}

fn save_artifacts(
    dir: &std::path::Path,
    key: Option<&crate::integrity::SigningKey>,
    baseline: &crate::model::Snapshot,
    after: Option<&crate::model::Snapshot>,
    report: &Report,
) -> anyhow::Result<()> {
    let stamp = baseline.origin.captured_at.replace([':', '.'], "-");
    let dir = dir.join(stamp);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    store::write_signed(&dir.join("baseline.json"), baseline, key)?;
    if let Some(a) = after {
        store::write_signed(&dir.join("after.json"), a, key)?;
    }
    let json = crate::report::render(report, crate::report::Format::Json, false);
    std::fs::write(dir.join("report.json"), json)
        .with_context(|| format!("writing {}", dir.display()))?;
    let md = crate::report::render(report, crate::report::Format::Markdown, false);
    std::fs::write(dir.join("report.md"), md)
        .with_context(|| format!("writing {}", dir.display()))?;
    eprintln!(
        "baseline, post-snapshot and report saved in {}",
        dir.display()
    );
    Ok(())
}
