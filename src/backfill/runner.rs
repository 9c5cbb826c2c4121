//! The batch loop: one transaction per batch, the progress row updated inside it, retries,
//! bisection of poison rows, reconnects, pacing, cancellation.
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

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{CancelToken, Client};

use super::guard::{GuardFail, RunStart, run_row};
use super::log::{LoggedRow, RowLog};
use super::policy::{self, Action, Bisect, Fail, next_size};
use super::prepare::{check_statements, resolve};
use super::spec::BackfillSpec;
use super::statements::{Statements, Target};
use crate::db::conninfo::ConnInfo;
use crate::db::txn::SetLocal;
use crate::db::unnamed::{self, Bind, Typed};
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

pub(super) struct Session {
    pub(super) client: Client,
    pub(super) cancel: CancelToken,
    /// The backend's pid (0 if it could not be read): whom to ask pg_blocking_pids() about.
    pub(super) pid: i32,
    /// PostgreSQL 14+: `client_connection_check_interval` exists (set in every transaction).
    pub(super) check_interval: bool,
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

/// Open the run's connection. No session-level timeouts: every statement of a backfill runs in
/// a transaction that sets them with SET LOCAL (see `Backfill::set_local`), because a session
/// SET through a pooler in transaction mode would stay behind on a pooled server connection and
/// bound the application's statements there too.
async fn open(info: &ConnInfo) -> Result<Session, ConnectError> {
    let client = db::connect(info).await?;
    let cancel = client.cancel_token();
    // The simple protocol: no prepared statement to leave behind on a pooled server connection.
    let (pid, check_interval) = client
        .simple_query(
            "SELECT pg_backend_pid(), current_setting('server_version_num')::int >= 140000",
        )
        .await
        .ok()
        .and_then(|m| {
            m.into_iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some((
                    r.get(0).and_then(|v| v.parse().ok()).unwrap_or(0),
                    r.get(1) == Some("t"),
                )),
                _ => None,
            })
        })
        .unwrap_or((0, false));
    Ok(Session {
        client,
        cancel,
        pid,
        check_interval,
    })
}

/// One query in a transaction of its own (`begin` .. COMMIT), sent unnamed
/// ([`crate::db::unnamed`]): every statement of a backfill is, so that nothing of it stays on
/// a server connection a pooler in transaction mode hands to the next client.
pub(super) async fn query_alone(
    c: &Client,
    begin: &str,
    sql: &str,
    params: &[&dyn Bind],
) -> Result<Option<tokio_postgres::Row>, tokio_postgres::Error> {
    c.batch_execute(begin).await?;
    match unnamed::query_opt(c, sql, params).await {
        Ok(r) => {
            c.batch_execute("COMMIT").await?;
            Ok(r)
        }
        Err(e) => {
            let _ = c.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

pub(super) fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// How a wait for the replicas ended.
enum Wait {
    /// Below the ceiling: run the next batch.
    Go,
    /// Ctrl-C.
    Stopped,
    /// The connection was lost while waiting.
    Lost(DbFailure),
}

pub(super) fn u64_of(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Backfill {
    /// Connect, resolve the table and key, check every statement, count the rows. Writes nothing.
    pub async fn prepare(
        spec: BackfillSpec,
        info: &ConnInfo,
        opts: Options,
    ) -> Result<Backfill, BackfillError> {
        let tag = format!("migval-backfill:{}", spec.name);
        let mut info = info.clone();
        info.application_name = tag.clone();
        let session = open(&info).await?;
        // In one read-only transaction, rolled back (see `query_alone` for why a transaction).
        session
            .client
            .batch_execute(&format!(
                "BEGIN READ ONLY; {}",
                SetLocal::new()
                    .lock_timeout_ms(spec.batching.lock_timeout_ms)
                    .statement_timeout_ms(spec.batching.statement_timeout_ms)
                    .sql()
            ))
            .await
            .map_err(|e| BackfillError::Db {
                what: "starting the checks of the backfill's statements".into(),
                failure: fail(&e, "BEGIN READ ONLY"),
            })?;
        let checked = async {
            let target = resolve(&session.client, &spec).await?;
            let mut stmts = Statements::new(&spec, &target);
            let update_types =
                check_statements(&session.client, &spec, &target, &mut stmts).await?;
            Ok::<_, BackfillError>((target, stmts, update_types))
        }
        .await;
        let _ = session.client.batch_execute("ROLLBACK").await;
        let (target, stmts, update_types) = checked?;
        let mut b = Backfill {
            spec,
            info,
            tag,
            opts,
            session,
            target,
            stmts,
            update_types,
            total_rows: 0,
            pending_rows: 0,
            counts_estimated: false,
            start: None,
            token: super::guard::new_token(),
            ceiling: None,
        };
        b.count().await?;
        b.check_lag_visible().await?;
        Ok(b)
    }

    /// With a lag ceiling, refuse to start when the role cannot see the replicas' lag:
    /// pg_stat_replication shows only their pid to roles that are neither superuser nor in
    /// pg_read_all_stats, and a ceiling read as 0 would never hold a batch back.
    async fn check_lag_visible(&self) -> Result<(), BackfillError> {
        if self.spec.batching.max_replication_lag_ms.is_none() {
            return Ok(());
        }
        let db_err = |e: tokio_postgres::Error| BackfillError::Db {
            what: "reading pg_stat_replication".into(),
            failure: fail(&e, "checking that the replication lag can be read"),
        };
        let none: Option<String> = None;
        let row = query_alone(
            &self.session.client,
            &self.set_local(),
            sql::BACKFILL_REPLICATION_LAG.sql,
            &[&none],
        )
        .await
        .map_err(db_err)?;
        let Some(row) = row else { return Ok(()) };
        let hidden: i64 = row.try_get(3).map_err(db_err)?;
        if hidden > 0 {
            let role = self.info.user.clone();
            return Err(BackfillError::Refused(format!(
                "max_replication_lag is set, but role `{role}` cannot read the lag of {hidden} \
                 attached replica{}: pg_stat_replication shows only the pid to roles that are \
                 not superuser or members of pg_read_all_stats, so the ceiling would never hold \
                 a batch back. Run `GRANT pg_read_all_stats TO {}` (as a superuser), or remove \
                 max_replication_lag from the spec",
                if hidden == 1 { "" } else { "s" },
                crate::sql::ident::quote(&role)
            )));
        }
        Ok(())
    }

    /// --commit, once confirmed: take the single-run guard and open (or resume) the run. The
    /// only writes before the first batch: the progress table and the run's row.
    pub async fn claim(
        &mut self,
        observer: &mut dyn FnMut(Event),
    ) -> Result<&RunStart, BackfillError> {
        self.ensure_state().await?;
        self.lock(observer).await?;
        let start = match self.open_run().await {
            Ok(start) => start,
            Err(e) => {
                self.release().await;
                return Err(e);
            }
        };
        Ok(self.start.insert(start))
    }

    pub fn target_name(&self) -> String {
        self.target.display()
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// BEGIN with the batch's timeouts, and the idle-in-transaction bound of migval's sessions
    /// (a pooler that refuses the startup `options` never got it; a frozen client must not
    /// keep a batch's row locks on the server).
    pub(super) fn set_local(&self) -> String {
        let mut set = SetLocal::new()
            .lock_timeout_ms(self.spec.batching.lock_timeout_ms)
            .statement_timeout_ms(self.spec.batching.statement_timeout_ms)
            .idle_in_transaction_ms(millis(self.info.idle_in_transaction).into());
        // A killed run's backend notices within a second, even mid-statement, and ends the
        // batch, so its row locks do not outlive it.
        if self.session.check_interval {
            set = set.client_connection_check_interval_ms(1000);
        }
        format!("BEGIN; {}", set.sql())
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

    /// Wait while the replicas lag more than `max_ms`.
    ///
    /// pg_stat_replication's lag columns are measured when a replica replays WAL, and keep the
    /// last value until the replica reports having replayed everything twice in a row. On a
    /// primary that other sessions (or autovacuum) keep writing to, that never happens: a
    /// replica that has caught up with our batches still shows the lag of the last commit it
    /// replayed, and a replica delayed on purpose (recovery_min_apply_delay) shows about its
    /// delay forever. Re-reading the columns alone could then wait forever (it did, in
    /// `max_replication_lag_waits_for_a_lagging_standby_before_each_batch`). So the first read
    /// also fixes a target, the primary's WAL flush position (every batch committed so far), and
    /// a replica that has replayed up to it no longer counts, whatever its columns still say:
    /// the wait ends once the replicas have caught up with the backfill, at the latest. WAL
    /// written while we wait does not move the target.
    async fn wait_for_replicas(
        &self,
        max_ms: u64,
        observer: &mut dyn FnMut(Event),
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Wait, BackfillError> {
        let mut target: Option<String> = None;
        let started = Instant::now();
        let db_err = |e: tokio_postgres::Error| BackfillError::Db {
            what: "reading pg_stat_replication".into(),
            failure: fail(&e, "checking the replication lag"),
        };
        loop {
            let row = match query_alone(
                &self.session.client,
                &self.set_local(),
                sql::BACKFILL_REPLICATION_LAG.sql,
                &[&target],
            )
            .await
            {
                Ok(Some(row)) => row,
                Ok(None) => return Ok(Wait::Go),
                Err(e) if db::is_connection_lost(&e) => {
                    return Ok(Wait::Lost(fail(&e, "checking the replication lag")));
                }
                Err(e) => return Err(db_err(e)),
            };
            let lag: i64 = row.try_get(1).map_err(db_err)?;
            if u64_of(lag) <= max_ms {
                if target.is_some() {
                    observer(Event::Waiting(format!(
                        "replicas caught up after {} ms: resuming",
                        millis(started.elapsed())
                    )));
                }
                return Ok(Wait::Go);
            }
            if target.is_none() {
                target = Some(row.try_get(2).map_err(db_err)?);
                observer(Event::Waiting(format!(
                    "replication lag {lag} ms is above max_replication_lag {max_ms} ms: waiting"
                )));
            }
            // A long wait must not let the lease lapse.
            self.renew_lease().await;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => return Ok(Wait::Stopped),
            }
        }
    }

    /// Wait `wait_ms`, then reconnect. A server still down is not an error here: the next
    /// attempt fails as lost again and comes back.
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

    async fn pause_and_reconnect(
        &mut self,
        prog: &mut Progress,
        attempt: u32,
        wait_ms: u64,
        observer: &mut dyn FnMut(Event),
    ) -> Result<(), BackfillError> {
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        match self.reconnect(prog, attempt, observer).await {
            Ok(()) => Ok(()),
            Err(BackfillError::Connect(e)) => {
                observer(Event::Waiting(format!("reconnect failed: {e}")));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn reconnect(
        &mut self,
        prog: &mut Progress,
        attempt: u32,
        observer: &mut dyn FnMut(Event),
    ) -> Result<(), BackfillError> {
        self.session = open(&self.info).await?;
        observer(Event::Reconnected { attempt });
        if self.opts.commit {
            self.lock(observer).await?;
            if let Some(start) = &self.start {
                let row = query_alone(
                    &self.session.client,
                    &self.set_local(),
                    sql::BACKFILL_RUN_GET.sql,
                    &[&start.run_id],
                )
                .await
                .map_err(|e| BackfillError::Db {
                    what: "re-reading the run after a reconnect".into(),
                    failure: fail(&e, "reading migval.backfill_runs"),
                })?
                .ok_or_else(|| {
                    BackfillError::Refused(format!(
                        "run {} is gone from migval.backfill_runs (deleted while the run \
                         reconnected?): stopping",
                        start.run_id
                    ))
                })?;
                let (_, _, last, counters) = run_row(&row).map_err(|e| BackfillError::Db {
                    what: "re-reading the run after a reconnect".into(),
                    failure: fail(&e, "reading migval.backfill_runs"),
                })?;
                // What the server committed decides: the batch in flight may or may not have.
                prog.this.add(&counters.since(&prog.run));
                prog.run = counters;
                prog.last = last;
            }
        }
        Ok(())
    }

    /// One batch in one transaction. `None` when no key is left after `last`.
    async fn batch(
        &self,
        last: Option<&[String]>,
        size: u64,
        number: u64,
        run_label: &str,
        log: &mut RowLog,
    ) -> Result<Option<Done>, Fail> {
        let c = &self.session.client;
        let Some(ceiling) = &self.ceiling else {
            return Ok(None); // the table was empty when the run started
        };
        c.batch_execute(&self.set_local())
            .await
            .map_err(|e| Fail::of(&e, "starting the batch", false))?;
        self.guarded(c).await?;
        let limit = i64_of(size);
        let (sql, params) = self.bound(&limit, last, ceiling);
        let row = unnamed::query_opt(c, sql, &params)
            .await
            .map_err(|e| Fail::of(&e, "finding the batch's key range (key + pending)", false))?;
        let Some(row) = row else {
            let _ = c.batch_execute("ROLLBACK").await;
            return Ok(None);
        };
        let n = self.target.key.len();
        let mut first = Vec::with_capacity(n);
        let mut upper = Vec::with_capacity(n);
        for i in 0..n {
            first.push(
                row.try_get::<_, String>(i)
                    .map_err(|e| Fail::of(&e, "reading keys", false))?,
            );
            upper.push(
                row.try_get::<_, String>(n + i)
                    .map_err(|e| Fail::of(&e, "reading keys", false))?,
            );
        }
        let in_range: i64 = row
            .try_get(2 * n)
            .map_err(|e| Fail::of(&e, "reading keys", false))?;
        let pending: i64 = row
            .try_get(2 * n + 1)
            .map_err(|e| Fail::of(&e, "reading keys", false))?;
        let done = self
            .apply(
                &first,
                &upper,
                u64_of(in_range),
                Some(u64_of(pending)),
                number,
                run_label,
                log,
            )
            .await?;
        self.finish(c).await?;
        Ok(Some(done))
    }

    /// The bound statement of the next batch and its parameters: limit, last key (after the
    /// first batch), ceiling.
    fn bound<'a>(
        &'a self,
        limit: &'a i64,
        last: Option<&'a [String]>,
        ceiling: &'a [String],
    ) -> (&'a str, Vec<&'a dyn Bind>) {
        let mut params: Vec<&dyn Bind> = vec![limit];
        let sql = match last {
            None => &self.stmts.bound_first,
            Some(k) => {
                params.extend(k.iter().map(|v| v as &dyn Bind));
                &self.stmts.bound_next
            }
        };
        params.extend(ceiling.iter().map(|v| v as &dyn Bind));
        (sql, params)
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

    /// The single-run guard inside a batch transaction (see `guard::guard_batch`).
    async fn guarded(&self, c: &Client) -> Result<(), Fail> {
        self.guard_batch(c).await.map_err(|g| match g {
            GuardFail::Db(e) => Fail::of(
                &e,
                "taking the batch lock and renewing the lease (single-run guard)",
                false,
            ),
            GuardFail::LeaseLost(message) => Fail::fatal(message),
        })
    }

    async fn finish(&self, c: &Client) -> Result<(), Fail> {
        let end = if self.opts.commit {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        c.batch_execute(end)
            .await
            .map_err(|e| Fail::of(&e, "committing the batch", false))
    }

    /// Inside the open transaction: ambiguous rows, the change, rows left, log, progress row.
    #[allow(clippy::too_many_arguments)]
    async fn apply(
        &self,
        first: &[String],
        last: &[String],
        in_range: u64,
        pending: Option<u64>,
        number: u64,
        run_label: &str,
        log: &mut RowLog,
    ) -> Result<Done, Fail> {
        let c = &self.session.client;
        let n = self.target.key.len();
        let mut range: Vec<&dyn Bind> = Vec::with_capacity(2 * n);
        range.extend(first.iter().map(|v| v as &dyn Bind));
        range.extend(last.iter().map(|v| v as &dyn Bind));

        let pending = match pending {
            Some(p) => p,
            None => {
                let rows = unnamed::query(c, &self.stmts.left, &range)
                    .await
                    .map_err(|e| Fail::of(&e, "counting pending rows", false))?;
                u64::try_from(rows.len()).unwrap_or(u64::MAX)
            }
        };

        let mut logged = Vec::new();
        let mut ambiguous_keys: HashSet<Vec<String>> = HashSet::new();
        if let Some(sql) = &self.stmts.ambiguous {
            let rows = unnamed::query(c, sql, &range).await.map_err(|e| {
                Fail::of(&e, "running the ambiguity query ([ambiguity] sql)", false)
            })?;
            for r in rows {
                let mut key = Vec::with_capacity(n);
                for i in 0..n {
                    key.push(
                        r.try_get::<_, String>(i)
                            .map_err(|e| Fail::of(&e, "reading ambiguous rows", false))?,
                    );
                }
                let reason: String = r
                    .try_get(n)
                    .map_err(|e| Fail::of(&e, "reading ambiguous rows", false))?;
                let candidates: i64 = r
                    .try_get(n + 1)
                    .map_err(|e| Fail::of(&e, "reading ambiguous rows", false))?;
                if ambiguous_keys.insert(key.clone()) {
                    logged.push(LoggedRow {
                        key,
                        kind: "ambiguous",
                        reason,
                        candidates: Some(candidates),
                    });
                }
            }
        }

        // The dry-run shows how the first batch's change ran (EXPLAIN ANALYZE executes it, in
        // the transaction that is rolled back).
        let explain = !self.opts.commit && number == 1;
        let plan = if self.stmts.set_mode {
            let mut skip: Vec<Vec<String>> = vec![Vec::new(); n];
            for k in &ambiguous_keys {
                for (i, v) in k.iter().enumerate() {
                    skip[i].push(v.clone());
                }
            }
            let mut params = range.clone();
            params.extend(skip.iter().map(|v| v as &dyn Bind));
            self.change(c, &params, explain)
                .await
                .map_err(|e| Fail::of(&e, "running the change (set)", true))?
        } else {
            let a = typed(&self.update_types[0], &first[0]).map_err(Fail::Fatal)?;
            let b = typed(&self.update_types[1], &last[0]).map_err(Fail::Fatal)?;
            let (a, b) = (
                Typed(a.as_ref(), self.update_types[0].clone()),
                Typed(b.as_ref(), self.update_types[1].clone()),
            );
            self.change(c, &[&a, &b], explain)
                .await
                .map_err(|e| Fail::of(&e, "running the change (update)", true))?
        };

        let left_rows = unnamed::query(c, &self.stmts.left, &range)
            .await
            .map_err(|e| Fail::of(&e, "reading the rows still pending", false))?;
        let mut left = HashSet::new();
        for r in &left_rows {
            let mut key = Vec::with_capacity(n);
            for i in 0..n {
                key.push(
                    r.try_get::<_, String>(i)
                        .map_err(|e| Fail::of(&e, "reading pending rows", false))?,
                );
            }
            left.insert(key);
        }
        if let Some(k) = ambiguous_keys.iter().find(|k| !left.contains(*k)) {
            return Err(Fail::Fatal(DbFailure {
                message: format!(
                    "the update statement changed row ({}), which the ambiguity rule flags: migval \
                     never lets an ambiguous row be decided silently",
                    k.join(", ")
                ),
                sqlstate: None,
                detail: None,
                hint: Some(
                    "make the UPDATE skip rows the [ambiguity] query returns, or use `set`, whose \
                     WHERE clause migval writes"
                        .into(),
                ),
                server_context: None,
                context: Some(format!("batch {number}")),
            }));
        }
        let mut no_match: Vec<&Vec<String>> = left
            .iter()
            .filter(|k| !ambiguous_keys.contains(*k))
            .collect();
        no_match.sort();
        for k in &no_match {
            logged.push(LoggedRow {
                key: (*k).clone(),
                kind: "no_match",
                reason: "the change left the row pending (no value found)".into(),
                candidates: None,
            });
        }
        let left_n = u64::try_from(left.len()).unwrap_or(u64::MAX);
        let counters = Counters {
            batches: 1,
            checked: in_range,
            updated: pending.saturating_sub(left_n),
            already_done: in_range.saturating_sub(pending),
            no_match: u64::try_from(no_match.len()).unwrap_or(u64::MAX),
            ambiguous: u64::try_from(ambiguous_keys.len()).unwrap_or(u64::MAX),
            errors: 0,
        };
        log.write(run_label, number, &logged).map_err(Fail::Log)?;
        self.record(last, &counters).await?;
        Ok(Done {
            last: last.to_vec(),
            counters,
            plan,
        })
    }

    /// Run the change; with `explain`, under EXPLAIN ANALYZE, returning the plan's lines.
    async fn change(
        &self,
        c: &Client,
        params: &[&dyn Bind],
        explain: bool,
    ) -> Result<Option<Vec<String>>, tokio_postgres::Error> {
        if !explain {
            unnamed::execute(c, &self.stmts.change, params).await?;
            return Ok(None);
        }
        let rows = unnamed::query(
            c,
            &format!("EXPLAIN (ANALYZE, COSTS OFF) {}", self.stmts.change),
            params,
        )
        .await?;
        rows.iter()
            .map(|r| r.try_get::<_, String>(0))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// The progress row, in the batch's transaction (--commit only).
    async fn record(&self, last: &[String], k: &Counters) -> Result<(), Fail> {
        let Some(start) = &self.start else {
            return Ok(());
        };
        let last: Vec<String> = last.to_vec();
        let v = [
            i64_of(k.batches),
            i64_of(k.checked),
            i64_of(k.updated),
            i64_of(k.already_done),
            i64_of(k.no_match),
            i64_of(k.ambiguous),
            i64_of(k.errors),
        ];
        unnamed::execute(
            &self.session.client,
            sql::BACKFILL_RUN_PROGRESS.sql,
            &[
                &start.run_id,
                &last,
                &v[0],
                &v[1],
                &v[2],
                &v[3],
                &v[4],
                &v[5],
                &v[6],
            ],
        )
        .await
        .map_err(|e| Fail::of(&e, "recording progress in migval.backfill_runs", false))?;
        Ok(())
    }

    /// A batch failed on a data or constraint error: bisect its keys, commit what succeeds,
    /// log (and skip) each row that fails alone.
    async fn isolate(
        &self,
        prog: &mut Progress,
        size: u64,
        number: u64,
        run_label: &str,
        log: &mut RowLog,
        observer: &mut dyn FnMut(Event),
    ) -> Result<(), BackfillError> {
        let run_id = self.start.as_ref().map(|s| s.run_id);
        let stopped = |message: String, prog: &Progress| BackfillError::Stopped {
            message,
            counters: prog.run,
            run_id,
        };
        // The batch's keys, as the bound query would pick them now.
        let c = &self.session.client;
        let ceiling = self.ceiling.clone().unwrap_or_default();
        let keys = async {
            c.batch_execute(&self.set_local()).await?;
            let limit = i64_of(size);
            let (sql, params) = self.bound(&limit, prog.last.as_deref(), &ceiling);
            let bound = unnamed::query_opt(c, sql, &params).await?;
            let Some(bound) = bound else {
                return Ok(Vec::new());
            };
            let n = self.target.key.len();
            let mut range: Vec<String> = Vec::with_capacity(2 * n);
            for i in 0..2 * n {
                range.push(bound.try_get(i)?);
            }
            let p: Vec<&dyn Bind> = range.iter().map(|v| v as &dyn Bind).collect();
            let rows = unnamed::query(c, &self.stmts.keys_in_range, &p).await?;
            let _ = c.batch_execute("ROLLBACK").await;
            rows.iter()
                .map(|r| (0..n).map(|i| r.try_get::<_, String>(i)).collect())
                .collect::<Result<Vec<Vec<String>>, _>>()
        }
        .await;
        let keys = match keys {
            Ok(k) => k,
            Err(e) => {
                let _ = c.batch_execute("ROLLBACK").await;
                return Err(stopped(
                    format!(
                        "batch {number}: listing its keys to isolate a failing row: {}",
                        fail(&e, "bisecting")
                    ),
                    prog,
                ));
            }
        };
        let mut bisect = Bisect::new(keys.len());
        while let Some(slice) = bisect.next() {
            let first = &keys[slice.start];
            let last = &keys[slice.end - 1];
            let in_range = u64::try_from(slice.len()).unwrap_or(u64::MAX);
            let c = &self.session.client;
            let attempt = async {
                c.batch_execute(&self.set_local())
                    .await
                    .map_err(|e| Fail::of(&e, "starting a sub-batch", false))?;
                self.guarded(c).await?;
                let done = self
                    .apply(first, last, in_range, None, number, run_label, log)
                    .await?;
                self.finish(c).await?;
                Ok::<Done, Fail>(done)
            }
            .await;
            match attempt {
                Ok(done) => prog.apply(&done),
                Err(Fail::Poison(failure)) => {
                    let _ = c.batch_execute("ROLLBACK").await;
                    if bisect.failed(slice).is_some() {
                        observer(Event::Isolated {
                            key: first.clone(),
                            failure: failure.clone(),
                        });
                        let row = LoggedRow {
                            key: first.clone(),
                            kind: "error",
                            reason: failure.to_string().replace('\n', " "),
                            candidates: None,
                        };
                        let counters = Counters {
                            batches: 1,
                            checked: 1,
                            errors: 1,
                            ..Counters::default()
                        };
                        let r = async {
                            c.batch_execute(&self.set_local())
                                .await
                                .map_err(|e| Fail::of(&e, "recording a failing row", false))?;
                            self.guarded(c).await?;
                            log.write(run_label, number, std::slice::from_ref(&row))
                                .map_err(Fail::Log)?;
                            self.record(first, &counters).await?;
                            self.finish(c).await
                        }
                        .await;
                        if let Err(f) = r {
                            let _ = c.batch_execute("ROLLBACK").await;
                            return Err(stopped(
                                format!(
                                    "batch {number}: recording failing row ({}): {}",
                                    first.join(", "),
                                    f.failure()
                                ),
                                prog,
                            ));
                        }
                        prog.apply(&Done {
                            last: first.clone(),
                            counters,
                            plan: None,
                        });
                    }
                }
                Err(f) => {
                    let _ = c.batch_execute("ROLLBACK").await;
                    return Err(stopped(
                        format!(
                            "batch {number}: while isolating a failing row: {}",
                            f.failure()
                        ),
                        prog,
                    ));
                }
            }
        }
        // `batches` counts committed transactions: each part of a bisected batch is one.
        Ok(())
    }
}

/// Committed (or, in a dry-run, rolled back) batch.
struct Done {
    last: Vec<String>,
    counters: Counters,
    /// EXPLAIN ANALYZE of the change (dry-run, first batch).
    plan: Option<Vec<String>>,
}

struct Progress {
    last: Option<Vec<String>>,
    plan: Option<Vec<String>>,
    /// The run's counters (including earlier invocations).
    run: Counters,
    this: Counters,
}

impl Progress {
    fn apply(&mut self, d: &Done) {
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

/// A bind value of the type the user's UPDATE statement expects for $1/$2.
fn typed(ty: &Type, text: &str) -> Result<Box<dyn ToSql + Sync + Send>, DbFailure> {
    let bad = |what: &str| DbFailure {
        message: format!("key value `{text}` is not a valid {what}"),
        sqlstate: None,
        detail: None,
        hint: None,
        server_context: None,
        context: Some("binding the update statement's key range".into()),
    };
    Ok(match *ty {
        Type::INT2 => Box::new(text.parse::<i16>().map_err(|_| bad("smallint"))?),
        Type::INT4 => Box::new(text.parse::<i32>().map_err(|_| bad("integer"))?),
        Type::INT8 => Box::new(text.parse::<i64>().map_err(|_| bad("bigint"))?),
        _ => Box::new(text.to_string()),
    })
}
