//! Command line: clap types (their doc comments are the `--help` text), one module per
//! subcommand, all with the same shape: `run(args) -> Result<exit code>`.

// The command line is where migval talks to the user: printing belongs here, not in the engine.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod backfill;
mod demo;
mod diff;
mod init;
mod migrate;
mod progress;
mod snapshot;
mod verify;
mod watch;

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::db::conninfo::ConnInfo;
use crate::engine::Limits;
use crate::input::parse_size;
use crate::integrity::{SigningKey, parse_sha256};
use crate::model::Report;
use crate::report::{self, Format};
use crate::spec::{Spec, parse_duration_ms};
use crate::store;

/// Validate PostgreSQL migrations: capture a baseline in one consistent snapshot, re-capture
/// after the change, compare exactly, and decide go or roll back.
///
/// Exit codes: 0 every check passed (allowed changes included), 1 a check failed,
/// 2 migval could not do its job (bad spec, connection or SQL error, unreadable baseline),
/// 130 interrupted by Ctrl-C (backfill: the batch in flight rolled back, progress kept).
/// `migval --version`: the version, the commit it was built from, the optional features.
#[cfg(not(feature = "parquet"))]
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("MIGVAL_GIT_COMMIT"),
    "; parquet export: not built in)"
);
/// `migval --version` of a build with the `parquet` feature.
#[cfg(feature = "parquet")]
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("MIGVAL_GIT_COMMIT"),
    "; parquet export: built in)"
);

#[derive(Debug, Parser)]
#[command(
    name = "migval",
    version = VERSION,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// No progress on stderr (the phases, the running probes, the bar). Errors and the report
    /// are still written.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Capture the baseline: every check of the spec, read-only, in one consistent snapshot,
    /// into a checksummed file.
    Snapshot(snapshot::SnapshotArgs),
    /// Re-capture the checks now (after the migration), compare them with a baseline file and
    /// print the verdict.
    Verify(verify::VerifyArgs),
    /// Compare two snapshot files (baseline and after) without touching a database.
    Diff(diff::DiffArgs),
    /// Rehearse a migration inside a transaction: baseline, run it, verify inside the same
    /// transaction, roll back. With --commit, commit only when the verdict passes.
    Migrate(migrate::MigrateArgs),
    /// Run a batched backfill declared in a file: dry-run by default, --commit to apply;
    /// resumable after a kill, ambiguous rows logged, then the checks and the verdict.
    Backfill(backfill::BackfillArgs),
    /// Show the whole flow on a throwaway PostgreSQL: snapshot, a good migration that
    /// passes, its rollback, a broken migration that fails.
    Demo(demo::DemoArgs),
    /// Write a commented spec for the tables a migration touches, from the catalog and the
    /// migration scripts (read-only): a starting point to edit, in seconds.
    Init(init::InitArgs),
}

/// Where to connect.
#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    /// Connection string: postgres://user:pass@host:5432/db?sslmode=verify-full&sslrootcert=ca.pem
    /// or libpq key=value form. Without it, DATABASE_URL, then the PG* variables
    /// (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE, PGSSLROOTCERT) and ~/.pgpass.
    #[arg(long, value_name = "URL", env = "DATABASE_URL", hide_env_values = true)]
    pub db: Option<String>,
}

impl ConnArgs {
    pub fn resolve(&self) -> anyhow::Result<ConnInfo> {
        ConnInfo::resolve(self.db.as_deref(), &|k| std::env::var(k).ok())
            .context("resolving the connection settings")
    }
}

/// Production-safety limits (override the spec's [settings]).
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Longest a single probe may run (e.g. 30s, 10min). Default: the spec's
    /// settings.statement_timeout, else 10min.
    #[arg(long, value_name = "DURATION")]
    pub statement_timeout: Option<String>,
    /// Longest a probe waits for a lock (e.g. 2s). Default: the spec's settings.lock_timeout,
    /// else 5s.
    #[arg(long, value_name = "DURATION")]
    pub lock_timeout: Option<String>,
    /// Connections used in parallel, all sharing one snapshot. Default: settings.parallel, else 4.
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
}

impl LimitArgs {
    pub fn apply(&self, spec: &Spec) -> anyhow::Result<Limits> {
        let mut l = Limits::from_spec(spec);
        if let Some(s) = &self.statement_timeout {
            l.statement_timeout_ms = parse_duration_ms(s)
                .map_err(anyhow::Error::msg)
                .context("--statement-timeout")?;
        }
        if let Some(s) = &self.lock_timeout {
            l.lock_timeout_ms = parse_duration_ms(s)
                .map_err(anyhow::Error::msg)
                .context("--lock-timeout")?;
        }
        if let Some(p) = self.parallel {
            anyhow::ensure!((1..=64).contains(&p), "--parallel must be between 1 and 64");
            l.parallel = p;
        }
        Ok(l)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// How the report is written.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write the report to this file instead of standard output (the verdict line is still
    /// printed).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Colour in the text report.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// Write every differing value of every check (not only the worst ones the report lists)
    /// to this file, one line each: check, scope, key, metric, baseline, after, difference,
    /// rule, ok, note. CSV; Parquet for a `.parquet` name (in a build with the `parquet`
    /// feature). Values are exact text, never floats.
    #[arg(long, value_name = "FILE", value_parser = changes_path)]
    pub changes_out: Option<PathBuf>,
    /// Fit the text report to N columns: long columns wrap, and a table that still does not
    /// fit becomes one block per check (as psql's expanded mode); check names are never cut.
    /// Default: the terminal's width when printing to a terminal, else no limit. 0: no limit.
    #[arg(long, value_name = "N")]
    pub width: Option<usize>,
}

impl OutputArgs {
    /// `--width`, else the terminal's width when the report goes to one, else no limit.
    fn text_width(&self, to_terminal: bool) -> Option<usize> {
        match self.width {
            Some(0) => None,
            Some(n) => Some(n),
            None if to_terminal => console::Term::stdout()
                .size_checked()
                .map(|(_, cols)| usize::from(cols)),
            None => None,
        }
    }

    /// Print or write the report; returns the exit code of its verdict.
    pub fn emit(&self, report: &Report) -> anyhow::Result<u8> {
        crate::engine::progress::emit(crate::engine::progress::Event::Finished);
        let to_terminal = self.output.is_none() && std::io::stdout().is_terminal();
        let color = match self.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => to_terminal && std::env::var_os("NO_COLOR").is_none(),
        };
        if let Some(path) = &self.changes_out {
            let n = report::changes::write(report, path)
                .with_context(|| format!("writing the changes to {}", path.display()))?;
            eprintln!(
                "{n} differing value{} written to {}",
                if n == 1 { "" } else { "s" },
                path.display()
            );
        }
        let text = match self.format {
            Format::Text => report::render_text(report, color, self.text_width(to_terminal)),
            other => report::render(report, other, color),
        };
        match &self.output {
            Some(path) => {
                std::fs::write(path, &text)
                    .with_context(|| format!("writing the report to {}", path.display()))?;
                println!("{}", report::verdict_line(report));
                println!("report written to {}", path.display());
            }
            None => {
                use std::io::Write as _;
                let mut out = std::io::stdout().lock();
                match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                    // The reader went away (`migval verify ... | head`): the verdict's exit
                    // code stands, quietly.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                    Err(e) => return Err(e).context("writing the report to standard output"),
                    Ok(()) => {}
                }
            }
        }
        Ok(report.verdict.exit_code())
    }
}

/// `--changes-out`: refused before any work when it names a Parquet file that this build
/// cannot write.
fn changes_path(s: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s);
    if report::changes::is_parquet(&path) && !cfg!(feature = "parquet") {
        return Err(report::changes::ChangesError::ParquetNotBuilt(s.to_string()).to_string());
    }
    Ok(path)
}

/// The signing key for baselines (HMAC-SHA256).
#[derive(Debug, Clone, Args)]
pub struct SigningArgs {
    /// File holding the key baselines are signed with (`snapshot`) and checked against
    /// (`verify`, `diff`, `migrate --baseline`); else the MIGVAL_SIGNING_KEY variable. With a
    /// key, an unsigned or wrongly signed baseline is refused. At least 16 bytes, e.g.
    /// `openssl rand -hex 32 > key`.
    #[arg(long, value_name = "FILE")]
    pub signing_key_file: Option<PathBuf>,
}

impl SigningArgs {
    pub fn key(&self) -> anyhow::Result<Option<SigningKey>> {
        SigningKey::load(self.signing_key_file.as_deref(), &|k| std::env::var(k).ok())
            .map_err(anyhow::Error::msg)
    }
}

/// How a baseline file is checked when it is read, before anything runs.
#[derive(Debug, Clone, Args)]
pub struct BaselineArgs {
    /// The SHA-256 that `migval snapshot` printed for the baseline (paste it into the change
    /// ticket): any other file is refused, even one whose checksum was recomputed after an
    /// edit. `sha256sum FILE` output is accepted too.
    #[arg(long, value_name = "HEX", value_parser = parse_sha256)]
    pub baseline_sha256: Option<String>,
    /// Largest baseline file read (e.g. 500MB, 16GiB): verify holds it in memory while it
    /// parses it.
    #[arg(long, value_name = "SIZE", default_value = "8GiB", value_parser = parse_size)]
    pub max_baseline_size: u64,
    #[command(flatten)]
    pub signing: SigningArgs,
}

impl BaselineArgs {
    /// Read options for the baseline (`expected`: whether --baseline-sha256 applies to it).
    pub fn options(&self, expected: bool) -> anyhow::Result<store::ReadOptions> {
        Ok(store::ReadOptions {
            max_bytes: self.max_baseline_size,
            expected_sha256: if expected {
                self.baseline_sha256.clone()
            } else {
                None
            },
            key: self.signing.key()?,
        })
    }
}

/// Open a snapshot file with `opts`; a signature that could not be checked is said on stderr.
pub fn open_snapshot(
    path: &std::path::Path,
    opts: &store::ReadOptions,
) -> anyhow::Result<store::Verified> {
    let verified = store::open(path, opts)?;
    if verified.signature_unchecked {
        eprintln!(
            "WARN {}: the file is signed but no signing key was given, so its signature was not \
             checked (give --signing-key-file or MIGVAL_SIGNING_KEY to check it)",
            path.display()
        );
    }
    Ok(verified)
}

/// Load and validate a spec file (errors list file, line, check and key).
pub fn load_spec(path: &std::path::Path) -> anyhow::Result<Spec> {
    Spec::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Run the parsed command line; the result is the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    progress::set_quiet(cli.quiet);
    // Every differing group is kept only when it is to be written.
    crate::engine::compare::keep_all_changes(match &cli.command {
        Command::Verify(a) => a.output.changes_out.is_some(),
        Command::Diff(a) => a.output.changes_out.is_some(),
        Command::Migrate(a) => a.output.changes_out.is_some(),
        Command::Backfill(a) => a.output.changes_out.is_some(),
        _ => false,
    });
    let _progress = (!cli.quiet).then(progress::start);
    match cli.command {
        Command::Snapshot(a) => snapshot::run(a).await,
        Command::Verify(a) => verify::run(a).await,
        Command::Diff(a) => diff::run(a),
        Command::Migrate(a) => migrate::run(a).await,
        Command::Backfill(a) => backfill::run(a).await,
        Command::Demo(a) => demo::run(a).await,
        Command::Init(a) => init::run(a).await,
    }
}
