//! `migval backfill`: a batched data change declared in a file. Dry-run by default; `--commit`
//! applies it (after typing `yes`, or `--yes`), resumes exactly where a killed run stopped,
//! logs the rows it leaves alone, then runs the spec's checks and prints the usual verdict.

use std::fmt::Write as _;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

use super::{ConnArgs, OutputArgs, load_spec};
use crate::backfill::{Backfill, BackfillError, BackfillSpec, Counters, Event, Options, Outcome};
use crate::engine::{self, Limits};
use crate::report::Format;
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
            eprintln!(
                "committed before the failure (run {}): {} batches, {} rows checked, {} updated; \
                 fix the cause and rerun the same command: it resumes after the last committed batch",
                run_id.map_or_else(|| "-".into(), |r| r.to_string()),
                counters.batches,
                group(counters.checked),
                group(counters.updated)
            );
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
    say(summary_text(&outcome).trim_end());
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
        return Ok(exit_code.load(Ordering::Relaxed));
    }
    let row_errors = u8::from(outcome.counters.errors > 0);
    if !a.commit {
        say(&format!(
            "DRY-RUN: nothing was changed. Apply with: {}",
            resume_command(&a.spec, true)
        ));
        return Ok(0);
    }
    match (&checks, &baseline) {
        (Some(spec), Some(base)) => {
            let (mut report, _) = engine::verify(&info, spec, base, Limits::from_spec(spec))
                .await
                .context("running the checks after the last batch")?;
            report.backup = backup;
            say("");
            let code = a.output.emit(&report)?;
            Ok(code.max(row_errors))
        }
        _ => Ok(row_errors),
    }
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

/// 1234567 -> "1,234,567".
fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn seconds(ms: u64) -> String {
    if ms < 10_000 {
        format!("{ms} ms")
    } else {
        format!("{}.{:01} s", ms / 1000, (ms % 1000) / 100)
    }
}

fn summary_text(o: &Outcome) -> String {
    let mut out = String::new();
    let c: &Counters = &o.counters;
    let title = match (o.committed, o.run_id) {
        (true, Some(r)) => format!(
            "Backfill summary: `{}` on {} (run {r})",
            o.backfill, o.table
        ),
        _ => format!(
            "Backfill summary (DRY-RUN, rolled back): `{}` on {}",
            o.backfill, o.table
        ),
    };
    let _ = writeln!(out, "{title}");
    let _ = writeln!(out, "{}", "=".repeat(title.chars().count()));
    let rows = [
        ("Total rows checked:", c.checked),
        ("Updated successfully:", c.updated),
        ("Skipped (already done):", c.already_done),
        ("Skipped (no match):", c.no_match),
        ("Ambiguous (logged, left untouched):", c.ambiguous),
        ("Errors (logged, left untouched):", c.errors),
    ];
    for (label, n) in rows {
        let _ = writeln!(out, "{label:<37}{:>12}", group(n));
    }
    let attempted = c.updated + c.no_match + c.ambiguous + c.errors;
    let rate = if attempted == 0 {
        "n/a".to_string()
    } else {
        let tenths =
            (u128::from(c.updated) * 1000 + u128::from(attempted) / 2) / u128::from(attempted);
        format!("{}.{}%", tenths / 10, tenths % 10)
    };
    let _ = writeln!(out, "{:<37}{rate:>12}", "Success rate:");
    let _ = writeln!(
        out,
        "{:<37}{:>12}",
        "Duration (this invocation):",
        seconds(o.elapsed_ms)
    );
    if let Some(est) = o.estimated_total_ms {
        let _ = writeln!(
            out,
            "{:<37}{:>12}",
            "Estimated duration with --commit:",
            seconds(est)
        );
    }
    let _ = writeln!(
        out,
        "Batches: {} (this invocation {}), duration p50 {} ms, p95 {} ms, max {} ms",
        c.batches,
        o.batch_ms.len(),
        o.batch_percentile(50),
        o.batch_percentile(95),
        o.batch_ms.iter().max().copied().unwrap_or(0)
    );
    if o.new_since_start > 0 {
        let _ = writeln!(
            out,
            "{:<37}{:>12}",
            "New since the run began (not chased):",
            group(o.new_since_start)
        );
        let _ = writeln!(
            out,
            "  pending rows above key ({}), the largest when the run started; run the backfill \
             again to include them",
            o.ceiling.as_ref().map(|k| k.join(", ")).unwrap_or_default()
        );
    }
    if let Some(plan) = &o.first_batch_plan {
        let _ = writeln!(
            out,
            "Plan of batch 1's change (EXPLAIN ANALYZE, rolled back):"
        );
        for line in plan {
            let _ = writeln!(out, "  {line}");
        }
    }
    if c.no_match + c.ambiguous + c.errors > 0 {
        let _ = writeln!(out, "Rows left alone are listed in {}", o.log_path);
    }
    if !o.finished && !o.interrupted && !o.committed {
        let _ = writeln!(
            out,
            "(sampled: the dry-run stopped after the batches asked for with --sample)"
        );
    }
    out
}

/// Progress on stderr: an indicatif bar on a terminal (fitted to its width), a plain line
/// every few seconds otherwise; nothing under `--quiet` (the events worth a line still are).
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
                let done = b.run_checked.max(b.counters.checked);
                // Rows inserted below the ceiling after the count (a non-increasing key) are
                // visited too: the total grows with them, it is never left behind.
                let total = b.total_rows.max(done);
                let secs = b.elapsed.as_millis().max(1);
                let rate = u128::from(b.counters.checked) * 1000 / secs;
                let left = total.saturating_sub(done);
                let eta = u128::from(left)
                    .checked_div(rate)
                    .map_or_else(|| "?".to_string(), |s| format!("{s} s"));
                let pct = if total > 0 {
                    (u128::from(done) * 100 / u128::from(total)).min(100)
                } else {
                    100
                };
                let text = format!(
                    "{} / {} rows  {rate} rows/s  ETA {eta}  batch {} ({} rows, {} ms)",
                    group(done),
                    group(total),
                    b.number,
                    b.rows,
                    b.duration_ms
                );
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
            Event::Retry {
                batch,
                attempt,
                wait_ms,
                failure,
            } => self.line(&format!(
                "batch {batch}: attempt {attempt} failed ({}{}); retrying in {wait_ms} ms",
                failure.message,
                failure
                    .sqlstate
                    .as_ref()
                    .map(|s| format!(", SQLSTATE {s}"))
                    .unwrap_or_default()
            )),
            Event::Shrunk { from, to } => {
                self.line(&format!("statement timeout: batch size {from} -> {to}"))
            }
            Event::Reconnected { attempt } => self.line(&format!(
                "reconnected (attempt {attempt}); resuming after the last committed batch"
            )),
            Event::Waiting(what) => self.line(what),
            Event::Isolated { key, failure } => self.line(&format!(
                "row ({}) fails on its own and is left untouched (logged): {}",
                key.join(", "),
                failure.to_string().replace('\n', " ")
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::group;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1234567), "1,234,567");
    }
}
