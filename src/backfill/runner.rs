//! The batch loop: one transaction per batch (`batch`), the progress row updated inside it,
//! retries, bisection of poison rows (`isolate`), reconnects (`session`), the lag ceiling
//! (`lag`), pacing, cancellation; what to do after a failure is `policy`'s decision.
//!
//! ```text
//!   prepare   connect (application_name migval-backfill:<name>), resolve table + unique key,
//!             prepare every generated statement (a typo fails here, not at batch 40),
//!             count rows; --commit: lease + batch lock (wait for / end a killed run's backend),
//!             progress table, resume the open run (same fingerprint) or start one
//!   batch     BEGIN; SET LOCAL lock_timeout, statement_timeout
//!             bound (keyset, LIMIT size) -> [first, last]; ambiguous rows; change; rows left
//!             log ambiguous / no-match rows; progress row += counters, last_key = last
//!             COMMIT (dry-run: ROLLBACK)
//!   failure   (the decision is `policy::decide`, the bisection's slices `policy::Bisect`)
//!             deadlock, serialization, lock timeout -> back off, same batch again
//!             statement timeout                     -> halve the batch, again
//!             connection lost                       -> reconnect, re-lock, re-read last_key
//!             data/constraint error in the change   -> bisect the batch's keys:
//!                 [k1 .. k8] fails -> [k1 .. k4] ok, commit | [k5 .. k8] fails
//!                                  -> [k5 k6] ok | [k7] ok | [k8] fails alone: logged, skipped
//!   sizing    adaptive: size' = clamp((size + rows * target / duration) / 2, min, max, 2 * size)
//! ```
//! Exactly once: a batch's change and its progress row commit together, and the change only
//! touches pending rows, so whatever the moment of a kill the next run starts after the last
//! committed batch and finds those rows done.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_postgres::Client;
use tokio_postgres::types::Type;

use super::batch::Done;
use super::guard::{RunStart, run_row};
use super::lag::Wait;
use super::log::RowLog;
use super::policy::{self, Action, Fail, next_size};
use super::session::{Session, query_alone};
use super::spec::BackfillSpec;
use super::statements::{Statements, Target};
use crate::db::conninfo::ConnInfo;
use crate::db::unnamed::Bind;
use crate::db::{self, ConnectError};
use crate::model::DbFailure;
pub use crate::model::backfill::{BackfillOutcome as Outcome, BatchStat, Counters, Event};
use crate::sql;

/// Why a backfill could not start or had to stop. Carries the counters of what was committed.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Refused before any batch: what, and what to do.
    #[error("{0}")]
    Refused(String),
    #[error("{what}: {failure}{}", failure.context.as_ref().map(|c| format!("\n  (while {c})")).unwrap_or_default())]
    Db { what: String, failure: DbFailure },
    #[error("{message}")]
    Stopped {
        message: String,
        counters: Counters,
        run_id: Option<i64>,
    },
}

/// How to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub commit: bool,
    /// Abandon an open run whose spec changed and start a new one.
    pub new_run: bool,
    /// Dry-run only: stop after this many batches and extrapolate.
    pub sample: Option<u64>,
    /// How long to wait for the holder of the backfill's lock (a killed run's backend) to go.
    pub lock_wait: Duration,
    /// End the backend of a killed run (tagged with our application_name) instead of refusing.
    pub cancel_orphans: bool,
    /// How long the run's lease lasts without renewal (each batch renews it): after a crash,
    /// the time before another run may take over.
    pub lease: Duration,
    pub log_path: PathBuf,
}

/// A prepared backfill: connected, target resolved, statements checked, lock held (--commit).
pub struct Backfill {
    pub(super) spec: BackfillSpec,
    pub(super) info: ConnInfo,
    pub(super) tag: String,
    pub(super) opts: Options,
    pub(super) session: Session,
    pub(super) target: Target,
    pub(super) stmts: Statements,
    pub(super) update_types: Vec<Type>,
    pub total_rows: u64,
    pub pending_rows: u64,
    /// The table was too big to count within the statement timeout: `total_rows` is
    /// pg_class.reltuples and `pending_rows` is not known (set to the same estimate).
    pub counts_estimated: bool,
    pub start: Option<RunStart>,
    /// This invocation's lease token (host:pid:nanoseconds): whose lease row is ours.
    pub(super) token: String,
    /// The largest key when this invocation started (`None`: the table was empty). No batch
    /// goes above it: an application inserting pending rows faster than the batches go would
    /// otherwise keep the run going forever.
    pub ceiling: Option<Vec<String>>,
}

pub(super) fn fail(e: &tokio_postgres::Error, context: &str) -> DbFailure {
    db::failure(e, Some(context.to_string()))
}

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(super) fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(super) fn u64_of(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Backfill {
    pub fn target_name(&self) -> String {
        self.target.display()
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Run the batches until the table is done, the sample is taken, or `stop` turns true.
    pub async fn run(
        &mut self,
        observer: &mut dyn FnMut(Event),
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Outcome, BackfillError> {
        let b = self.spec.batching.clone();
        let run_id = self.start.as_ref().map(|s| s.run_id);
        let run_label = run_id.map_or_else(|| "dry-run".to_string(), |r| r.to_string());
        let mut log = RowLog::open(&self.opts.log_path, &self.spec.key, !self.opts.commit)
            .map_err(|m| {
                BackfillError::Refused(format!("{m} (choose another file with --log FILE)"))
            })?;
        if self.opts.commit && self.start.is_none() {
            return Err(BackfillError::Refused(
                "internal: --commit run without a claimed run".into(),
            ));
        }
        let mut prog = Progress {
            last: self.start.as_ref().and_then(|s| s.last_key.clone()),
            plan: None,
            run: self.start.as_ref().map(|s| s.counters).unwrap_or_default(),
            this: Counters::default(),
        };
        let started = Instant::now();
        let mut size = b.size;
        let mut durations = Vec::new();
        let mut finished = false;
        let mut interrupted = false;
        let mut batch_no = prog.run.batches;
        // Opened at the first lock timeout: who blocks the batch (see the select below).
        let mut monitor: Option<Client> = None;
        let mut blockers: Vec<crate::model::Blocker> = Vec::new();
        'batches: loop {
            if *stop.borrow() {
                interrupted = true;
                break;
            }
            if let Some(n) = self.opts.sample
                && !self.opts.commit
                && prog.this.batches >= n
            {
                break;
            }
            if let Some(max) = b.max_replication_lag_ms {
                let mut attempt = 0u32;
                loop {
                    match self.wait_for_replicas(max, observer, stop).await? {
                        Wait::Go => break,
                        Wait::Stopped => {
                            interrupted = true;
                            break 'batches;
                        }
                        // Lost while waiting: reconnect as a batch would, then wait again.
                        Wait::Lost(failure) if attempt < policy::reconnects(b.retries) => {
                            attempt += 1;
                            let wait_ms = db::backoff_ms(attempt);
                            observer(Event::Waiting(format!(
                                "connection lost while waiting for the replicas ({failure}); \
                                 reconnecting in {wait_ms} ms"
                            )));
                            self.pause_and_reconnect(&mut prog, attempt, wait_ms, observer)
                                .await?;
                        }
                        Wait::Lost(failure) => {
                            return Err(BackfillError::Db {
                                what: "reading pg_stat_replication".into(),
                                failure,
                            });
                        }
                    }
                }
            }
            batch_no += 1;
            let mut attempt = 0u32;
            loop {
                attempt += 1;
                let t0 = Instant::now();
                let result = {
                    // Bounded client-side (db::within): a batch is a few statements, each
                    // under statement_timeout.
                    let fut = db::within(
                        db::answer_bound(b.statement_timeout_ms.saturating_mul(3)),
                        self.info.idle_in_transaction,
                        self.batch(prog.last.as_deref(), size, batch_no, &run_label, &mut log),
                    );
                    tokio::pin!(fut);
                    // After a lock timeout, the next attempts ask (from a second connection,
                    // while the batch waits) who holds the lock, as migrate does: if the
                    // retries run out, the error names the blocker.
                    let delay = tokio::time::sleep(Duration::from_millis(
                        (b.lock_timeout_ms / 2).clamp(50, 2_000),
                    ));
                    tokio::pin!(delay);
                    let mut asked = monitor.is_none();
                    loop {
                        tokio::select! {
                            r = &mut fut => break r.unwrap_or_else(|no_answer| Err(Fail::Fatal(no_answer.failure(None)))),
                            _ = stop.changed() => {
                                // Ctrl-C: stop the statement on the server, roll the batch back.
                                let tls = db::tls::make_connector(&self.info).ok();
                                if let Some(tls) = tls {
                                    let _ = self.session.cancel.cancel_query(tls).await;
                                }
                                let _ = self.session.client.batch_execute("ROLLBACK").await;
                                interrupted = true;
                                break 'batches;
                            }
                            _ = &mut delay, if !asked => {
                                asked = true;
                                if let Some(m) = &monitor {
                                    let seen = crate::engine::migrate::who_blocks(m, self.session.pid).await;
                                    if !seen.is_empty() {
                                        blockers = seen;
                                    }
                                }
                            }
                        }
                    }
                };
                let elapsed = t0.elapsed();
                match result {
                    Ok(None) => {
                        finished = true;
                        break 'batches;
                    }
                    Ok(Some(done)) => {
                        prog.apply(&done);
                        let ms = millis(elapsed);
                        durations.push(ms);
                        observer(Event::Batch(BatchStat {
                            number: batch_no,
                            rows: done.counters.checked,
                            duration_ms: ms,
                            size,
                            counters: prog.this,
                            run_checked: prog.run.checked,
                            total_rows: self.total_rows,
                            elapsed: started.elapsed(),
                        }));
                        if let Some(target) = b.target_ms {
                            size = next_size(size, done.counters.checked, ms, target, b.min, b.max);
                        }
                        break;
                    }
                    Err(f) => {
                        let _ = self.session.client.batch_execute("ROLLBACK").await;
                        match policy::decide(&f, attempt, size, b.retries) {
                            Action::Isolate => {
                                self.isolate(
                                    &mut prog, size, batch_no, &run_label, &mut log, observer,
                                )
                                .await?;
                                durations.push(millis(t0.elapsed()));
                                break;
                            }
                            Action::Retry {
                                wait_ms,
                                watch_blockers,
                            } => {
                                if watch_blockers && monitor.is_none() {
                                    monitor = db::connect(&self.info).await.ok();
                                }
                                observer(retry_event(batch_no, attempt, wait_ms, f));
                                tokio::time::sleep(Duration::from_millis(wait_ms)).await;
                            }
                            Action::Shrink { to } => {
                                observer(Event::Shrunk { from: size, to });
                                observer(retry_event(batch_no, attempt, 0, f));
                                size = to;
                            }
                            Action::Reconnect { wait_ms } => {
                                observer(retry_event(batch_no, attempt, wait_ms, f));
                                self.pause_and_reconnect(&mut prog, attempt, wait_ms, observer)
                                    .await?;
                            }
                            Action::Stop => {
                                let message = policy::stop_message(
                                    &self.spec.name,
                                    batch_no,
                                    attempt,
                                    &f,
                                    &blockers,
                                    b.lock_timeout_ms,
                                );
                                self.mark(run_id, "failed", Some(&message)).await;
                                return Err(BackfillError::Stopped {
                                    message,
                                    counters: prog.run,
                                    run_id,
                                });
                            }
                        }
                    }
                }
            }
            if b.pause_ms > 0 && self.pause(Duration::from_millis(b.pause_ms), stop).await {
                interrupted = true;
                break;
            }
        }
        let elapsed = started.elapsed();
        if self.opts.commit {
            let (status, msg) = if finished {
                ("done", None)
            } else {
                ("interrupted", Some("interrupted (Ctrl-C)"))
            };
            self.mark(run_id, status, msg).await;
            // The committed state is the truth (a batch may have committed as we cancelled).
            if let Some(id) = run_id
                && let Ok(Some(row)) = query_alone(
                    &self.session.client,
                    &self.set_local(),
                    sql::BACKFILL_RUN_GET.sql,
                    &[&id],
                )
                .await
                && let Ok((_, _, _, c)) = run_row(&row)
            {
                prog.run = c;
            }
        }
        let new_since_start = if finished {
            self.new_since_start().await
        } else {
            0
        };
        let estimated_total_ms = match (self.opts.commit, finished) {
            // A whole dry-run did the same work as --commit will, minus the commits.
            (false, true) => Some(millis(elapsed)),
            (false, false) if prog.this.checked > 0 => Some(
                u64::try_from(
                    u128::from(millis(elapsed)) * u128::from(self.total_rows)
                        / u128::from(prog.this.checked),
                )
                .unwrap_or(u64::MAX),
            ),
            _ => None,
        };
        Ok(Outcome {
            backfill: self.spec.name.clone(),
            table: self.target.display(),
            committed: self.opts.commit,
            run_id,
            counters: if self.opts.commit {
                prog.run
            } else {
                prog.this
            },
            this_invocation: prog.this,
            finished,
            interrupted,
            elapsed_ms: millis(elapsed),
            estimated_total_ms,
            total_rows: self.total_rows,
            pending_rows: self.pending_rows,
            batch_ms: durations,
            log_path: log.path().display().to_string(),
            ceiling: self.ceiling.clone(),
            new_since_start,
            first_batch_plan: prog.plan.take(),
        })
    }

    /// `[batch] pause` between batches; true when Ctrl-C came meanwhile. A pause longer than a
    /// third of `--lease` is slept in slices, the lease renewed after each, so that a long pause
    /// does not let another run take the lease over.
    async fn pause(&self, pause: Duration, stop: &mut watch::Receiver<bool>) -> bool {
        let slice = (self.opts.lease / 3).max(Duration::from_millis(100));
        let end = Instant::now() + pause;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            tokio::select! {
                _ = tokio::time::sleep(left.min(slice)) => {}
                _ = stop.changed() => return true,
            }
            if left > slice {
                self.renew_lease().await;
            }
        }
    }

    /// Pending rows above the ceiling (inserted since the run began). 0 if it cannot be read:
    /// it is information for the summary, not a reason to fail a finished run.
    async fn new_since_start(&self) -> u64 {
        let c = &self.session.client;
        let row = match &self.ceiling {
            Some(ceiling) => {
                let p: Vec<&dyn Bind> = ceiling.iter().map(|v| v as &dyn Bind).collect();
                query_alone(c, &self.set_local(), &self.stmts.new_since, &p).await
            }
            None => {
                query_alone(
                    c,
                    &self.set_local(),
                    &format!(
                        "SELECT count(*) FILTER (WHERE coalesce(({}\n), false))::int8 FROM {}",
                        self.spec.pending,
                        self.target.qualified()
                    ),
                    &[],
                )
                .await
            }
        };
        row.ok()
            .flatten()
            .and_then(|r| r.try_get::<_, i64>(0).ok())
            .map_or(0, u64_of)
    }
}

/// Where the run is: the last committed key, the counters (the run's, this invocation's).
pub(super) struct Progress {
    pub(super) last: Option<Vec<String>>,
    pub(super) plan: Option<Vec<String>>,
    /// The run's counters (including earlier invocations).
    pub(super) run: Counters,
    pub(super) this: Counters,
}

impl Progress {
    pub(super) fn apply(&mut self, d: &Done) {
        self.last = Some(d.last.clone());
        if self.plan.is_none() {
            self.plan.clone_from(&d.plan);
        }
        self.run.add(&d.counters);
        self.this.add(&d.counters);
    }
}

/// The event of a failed attempt that is tried again (after `wait_ms`).
fn retry_event(batch: u64, attempt: u32, wait_ms: u64, f: Fail) -> Event {
    Event::Retry {
        batch,
        attempt,
        wait_ms,
        failure: f.into_failure(),
    }
}
