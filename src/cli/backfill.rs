//! `migval backfill`: a batched data change declared in a file. Dry-run by default; `--commit`
//! applies it (after typing `yes`, or `--yes`), resumes exactly where a killed run stopped,
//! logs the rows it leaves alone, then runs the spec's checks and prints the usual verdict.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

use super::{ConnArgs, OutputArgs, load_spec};
use crate::backfill::{Backfill, BackfillError, BackfillSpec, Event, Options, Outcome};
use crate::engine::{self, Limits};
use crate::report::backfill::group;
use crate::report::{self, Format};
use crate::spec::parse_duration_ms;

/// Exit code after Ctrl-C (128 + SIGINT), as shells report it.
pub(super) const INTERRUPTED: u8 = 130;
/// Exit code after SIGTERM (128 + 15, as shells report it).
pub(super) const TERMINATED: u8 = 143;

/// Wait for Ctrl-C (SIGINT) or SIGTERM; records the exit code to use. False when no handler
/// could be installed (then the run is never stopped by a signal of ours).
pub(super) async fn stop_signal(exit_code: &AtomicU8) -> bool {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return tokio::signal::ctrl_c().await.is_ok();
    };
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.is_ok(),
        _ = term.recv() => {
            exit_code.store(TERMINATED, Ordering::Relaxed);
            true
        }
    }
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// The backfill file (TOML): table, key, pending guard, set or update, ambiguity rule,
    /// [batch] sizing and timeouts, and the checks file run after the last batch.
    #[arg(value_name = "FILE")]
    pub spec: PathBuf,
    /// Apply the change. Without it, a dry-run: every batch runs in a transaction that is rolled
    /// back, and the report says what would happen.
    #[arg(long)]
    pub commit: bool,
    /// Do not ask for confirmation before --commit (needed without a terminal).
    #[arg(long, requires = "commit")]
    pub yes: bool,
    /// The open run of this backfill was made with a different spec: abandon it and start a new
    /// run (rows already done stay done).
    #[arg(long, requires = "commit")]
    pub new_run: bool,
    /// Dry-run only: run this many batches (rolled back) and extrapolate to the whole table.
    #[arg(long, value_name = "N", conflicts_with = "commit")]
    pub sample: Option<u64>,
    /// The CSV log of rows left alone (ambiguous, no match, errors). Default:
    /// <name>-rows.csv (dry-run: <name>-dry-run.csv) in the current directory.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// How long to wait for another run's backend (e.g. one left by a killed run) to release the
    /// backfill's lock before refusing.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub wait: String,
    /// End the backend of a killed run that still holds the backfill's lock (only backends
    /// tagged application_name=migval-backfill:<name>). Its uncommitted batch rolls back.
    #[arg(long, requires = "commit")]
    pub cancel_orphans: bool,
    /// Before the first write (the progress table included), dump the database with
    /// `pg_dump --format=custom` to this new file (same connection settings; the password only
    /// in pg_dump's environment). If the dump fails, nothing runs (exit 2). Only with --commit:
    /// a dry-run writes nothing. A resumed run dumps the database as it is now.
    #[arg(long, value_name = "FILE", requires = "commit")]
    pub backup: Option<PathBuf>,
    /// How long this run's lease (its claim on the backfill, a row in migval.backfill_leases)
    /// lasts without renewal. Each batch renews it; if the run is killed, another run may take
    /// over once it expires. Longer than the slowest batch plus `pause`.
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub lease: String,
    /// Write the summary (counters, batch durations) as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub async fn run(a: BackfillArgs) -> anyhow::Result<u8> {
    let spec = BackfillSpec::load(&a.spec).map_err(|e| anyhow::anyhow!("{e}"))?;
    let checks = match &spec.checks {
        Some(p) => Some(load_spec(p).with_context(|| {
            format!(
                "loading the checks named in {} (key `checks`)",
                a.spec.display()
            )
        })?),
        None => None,
    };
    let lock_wait = Duration::from_millis(
        parse_duration_ms(&a.wait)
            .map_err(anyhow::Error::msg)
            .context("--wait")?,
    );
    let lease = Duration::from_millis(
        parse_duration_ms(&a.lease)
            .map_err(anyhow::Error::msg)
            .context("--lease")?
            .max(1),
    );
    let interactive = std::io::stdin().is_terminal();
    if a.commit && !a.yes && !interactive {
        bail!(
            "--commit asks for confirmation and there is no terminal to ask on: add --yes to apply \
             the backfill non-interactively (nothing was changed)"
        );
    }
    let info = a.conn.resolve()?;
    let log_path = a.log.clone().unwrap_or_else(|| {
        PathBuf::from(if a.commit {
            format!("{}-rows.csv", spec.name)
        } else {
            format!("{}-dry-run.csv", spec.name)
        })
    });
    let opts = Options {
        commit: a.commit,
        new_run: a.new_run,
        sample: a.sample,
        lock_wait,
        cancel_orphans: a.cancel_orphans,
        lease,
        log_path,
    };
    let name = spec.name.clone();
    let batching = spec.batching.clone();
    let mut printer = Printer::new();
    let mut bf = Backfill::prepare(spec, &info, opts)
        .await
        .map_err(explain)?;
    eprintln!(
        "backfill `{name}` on {} ({}): {}; batches of {}{}, lock_timeout {} ms, \
         statement_timeout {} ms",
        bf.target_name(),
        info.redacted(),
        if bf.counts_estimated {
            format!(
                "about {} rows (estimate: counting took longer than statement_timeout)",
                group(bf.total_rows)
            )
        } else {
            format!(
                "{} rows, {} pending{}",
                group(bf.total_rows),
                group(bf.pending_rows),
                bf.ceiling
                    .as_ref()
                    .map(|k| format!(" up to key ({}), the largest now", k.join(", ")))
                    .unwrap_or_default()
            )
        },
        batching.size,
        batching
            .target_ms
            .map(|t| format!(
                " adapting toward {t} ms (between {} and {})",
                batching.min, batching.max
            ))
            .unwrap_or_default(),
        batching.lock_timeout_ms,
        batching.statement_timeout_ms,
    );
    let mut backup = None;
    if a.commit {
        if !a.yes {
            eprint!(
                "COMMIT MODE: this changes up to {} rows of {}. Type `yes` to proceed: ",
                group(bf.pending_rows),
                bf.target_name()
            );
            let _ = std::io::stderr().flush();
            let mut answer = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut answer)
                .context("reading the confirmation")?;
            if answer.trim() != "yes" {
                eprintln!("not confirmed: nothing was changed");
                return Ok(2);
            }
        }
        if let Some(file) = &a.backup {
            let b = engine::backup::dump(&info, file, batching.lock_timeout_ms).await?;
            eprintln!("backup: {}", b.describe());
            backup = Some(b);
        }
        let start = bf
            .claim(&mut |e| printer.event(&e))
            .await
            .map_err(explain)?
            .clone();
        if let Some(old) = start.abandoned {
            eprintln!("run {old} abandoned (--new-run): its spec differs from this one");
        }
        if start.resumed {
            eprintln!(
                "resuming run {} after key ({}): {} batches, {} rows already committed",
                start.run_id,
                start
                    .last_key
                    .as_ref()
                    .map(|k| k.join(", "))
                    .unwrap_or_default(),
                start.counters.batches,
                group(start.counters.checked)
            );
        } else {
            eprintln!("run {} started", start.run_id);
        }
    } else {
        eprintln!("DRY-RUN: every batch is rolled back; add --commit to apply");
    }

    let baseline = match (&checks, a.commit) {
        (Some(c), true) => Some(
            engine::snapshot(&info, c, Limits::from_spec(c))
                .await
                .context("capturing the baseline of the checks before the first batch")?,
        ),
        _ => None,
    };

    let (tx, mut rx) = tokio::sync::watch::channel(false);
    // Kept here so that `rx` never sees a closed channel (which would read as a stop) if the
    // signal handler cannot be installed.
    let _sender = tx.clone();
    // SIGTERM (a service manager, `timeout`, a container stopping) stops the run like Ctrl-C:
    // the statement is cancelled on the server and the batch rolled back, where an unhandled
    // SIGTERM would leave the server-side UPDATE running to commit on its own.
    // Once installed, a handler stays for the life of the process: after the batches (the
    // checks only read), a signal exits at once instead of being swallowed.
    let exit_code = Arc::new(AtomicU8::new(INTERRUPTED));
    let in_batches = Arc::new(AtomicBool::new(true));
    {
        let (exit_code, in_batches) = (exit_code.clone(), in_batches.clone());
        let info = info.clone();
        tokio::spawn(async move {
            if stop_signal(&exit_code).await {
                if in_batches.load(Ordering::Relaxed) {
                    let _ = tx.send(true);
                    // A second signal does not wait for the rollback.
                    if !stop_signal(&exit_code).await {
                        return;
                    }
                }
                // The baseline or the checks may be capturing: stop their probes on the
                // server too (see `snapshot::stop_captures_on_signal`).
                engine::capture::cancel_running(&info, Duration::from_secs(3)).await;
                std::process::exit(i32::from(exit_code.load(Ordering::Relaxed)));
            }
        });
    }
    let result = bf.run(&mut |e| printer.event(&e), &mut rx).await;
    in_batches.store(false, Ordering::Relaxed);
    printer.clear();
    let outcome = match result {
        Ok(o) => o,
        Err(BackfillError::Stopped {
            message,
            counters,
            run_id,
        }) => {
            eprintln!("error: {message}");
            eprintln!("{}", report::backfill::stopped_text(&counters, run_id));
            return Ok(2);
        }
        Err(e) => return Err(explain(e)),
    };
    // The summary goes to stdout with the text report; with --format json/markdown/junit, stdout
    // is the report alone and the summary goes to stderr.
    let text_report = matches!(a.output.format, Format::Text);
    let say = |text: &str| {
        if text_report {
            println!("{text}");
        } else {
            eprintln!("{text}");
        }
    };
    say(report::backfill::summary_text(&outcome).trim_end());
    if let Some(b) = &backup {
        say(&format!("Backup: {}", b.describe()));
    }
    if let Some(p) = &a.summary_json {
        let json = serde_json::to_string_pretty(&outcome).context("serialising the summary")?;
        std::fs::write(p, json).with_context(|| format!("writing {}", p.display()))?;
    }
    if outcome.interrupted {
        say(&format!(
            "interrupted: the batch in flight was rolled back; committed batches are kept.\n\
             resume with: {}",
            resume_command(&a.spec, a.commit)
        ));
        emit_outcome(&a.output, &outcome, say)?;
        return Ok(exit_code.load(Ordering::Relaxed));
    }
    let row_errors = u8::from(outcome.counters.errors > 0);
    if !a.commit {
        say(&format!(
            "DRY-RUN: nothing was changed. Apply with: {}",
            resume_command(&a.spec, true)
        ));
        emit_outcome(&a.output, &outcome, say)?;
        return Ok(0);
    }
    match (&checks, &baseline) {
        (Some(spec), Some(base)) => {
            let (mut report, _) = engine::verify(&info, spec, base, Limits::from_spec(spec))
                .await
                .context("running the checks after the last batch")?;
            report.backup = backup;
            report.backfill = Some(outcome);
            say("");
            let code = a.output.emit(&report)?;
            Ok(code.max(row_errors))
        }
        _ => {
            emit_outcome(&a.output, &outcome, say)?;
            Ok(row_errors)
        }
    }
}

/// With `--format json|markdown|junit` and no report of checks to carry the outcome (a
/// dry-run, no `checks`, an interrupted run), the outcome alone, where the report would go.
fn emit_outcome(output: &OutputArgs, outcome: &Outcome, say: impl Fn(&str)) -> anyhow::Result<()> {
    let Some(text) = report::backfill::render(outcome, output.format) else {
        return Ok(());
    };
    match &output.output {
        Some(path) => {
            std::fs::write(path, &text)
                .with_context(|| format!("writing the backfill outcome to {}", path.display()))?;
            say(&format!("backfill outcome written to {}", path.display()));
        }
        None => {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                Err(e) => return Err(e).context("writing the backfill outcome to standard output"),
                Ok(()) => {}
            }
        }
    }
    Ok(())
}

fn explain(e: BackfillError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

fn resume_command(spec: &Path, commit: bool) -> String {
    format!(
        "migval backfill {}{}",
        spec.display(),
        if commit { " --commit" } else { "" }
    )
}

/// Progress on stderr: an indicatif bar on a terminal (fitted to its width), a plain line
/// every few seconds otherwise; nothing under `--quiet` (the events worth a line still are).
/// The words are `report::backfill`'s; this decides where and how often they go.
struct Printer {
    terminal: bool,
    quiet: bool,
    last_line: Option<Instant>,
    bar: Option<indicatif::ProgressBar>,
}

impl Printer {
    fn new() -> Printer {
        Printer {
            terminal: std::io::stderr().is_terminal(),
            quiet: super::progress::quiet(),
            last_line: None,
            bar: None,
        }
    }

    fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn line(&mut self, text: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }

    fn event(&mut self, e: &Event) {
        match e {
            Event::Batch(b) => {
                let report::backfill::Progress {
                    done,
                    total,
                    percent: pct,
                    text,
                } = report::backfill::progress(b);
                if self.quiet {
                } else if self.terminal {
                    let bar = self.bar.get_or_insert_with(|| {
                        let bar = indicatif::ProgressBar::new(total);
                        bar.set_style(
                            indicatif::ProgressStyle::with_template(
                                "{bar:25} {percent:>3}% {wide_msg}",
                            )
                            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                        );
                        bar
                    });
                    bar.set_length(total);
                    bar.set_position(done);
                    bar.set_message(text);
                } else if self
                    .last_line
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(2))
                {
                    self.last_line = Some(Instant::now());
                    eprintln!("progress: {pct}%  {text}");
                }
            }
            other => {
                if let Some(line) = report::backfill::event_line(other) {
                    self.line(&line);
                }
            }
        }
    }
}
