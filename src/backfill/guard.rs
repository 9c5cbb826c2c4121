//! The single-run guard and the progress row: a lease row per backfill name in
//! `migval.backfill_leases` (whose run this is, until when by the server's clock), a
//! transaction-level advisory lock inside every batch (no batch of a killed run still running on
//! the server can overlap a new run's), what to do about a holder (wait, refuse, or end a killed
//! run's backend), the progress table `migval.backfill_runs`, and opening, resuming or abandoning
//! a run.
//!
//! ```text
//!   claim     DDL (IF NOT EXISTS) | lease: INSERT .. ON CONFLICT DO UPDATE WHERE ours OR expired
//!             | no batch of another run in flight: pg_try_advisory_xact_lock | open / resume run
//!   batch     BEGIN; pg_advisory_xact_lock(name); renew lease (0 rows: taken over -> stop); ..
//!   end       mark the run, release the lease (same transaction)
//! ```
//! Every statement runs inside a transaction of its own: a pooler in transaction mode (PgBouncer
//! `pool_mode = transaction`) keeps a transaction on one server connection, and neither half of
//! the guard outlives its transaction on the server (a session advisory lock would stay behind
//! on a pooled server connection).

use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;

use super::runner::{Backfill, BackfillError, Counters, Event, fail, i64_of, millis, u64_of};
use super::session::query_alone;
use crate::db::unnamed;
use crate::sql;

/// The holder of a backfill's lease, as the server sees it (ages in seconds, server clock).
#[derive(Debug, Clone, Default)]
pub(super) struct Holder {
    token: String,
    client: String,
    taken_ago: String,
    renewed_ago: String,
    expires_in: String,
    expired: bool,
}

impl Holder {
    fn of(r: &tokio_postgres::Row) -> Result<Holder, tokio_postgres::Error> {
        Ok(Holder {
            token: r.try_get("token")?,
            client: r.try_get("client")?,
            taken_ago: r.try_get("taken_ago")?,
            renewed_ago: r.try_get("renewed_ago")?,
            expires_in: r.try_get("expires_in")?,
            expired: r.try_get("expired")?,
        })
    }
}

/// Why a batch could not take its guard.
pub(super) enum GuardFail {
    Db(tokio_postgres::Error),
    /// Another run took the lease over: stop, change nothing.
    LeaseLost(String),
}

/// Where a run starts.
#[derive(Debug, Clone)]
pub struct RunStart {
    pub run_id: i64,
    pub resumed: bool,
    pub last_key: Option<Vec<String>>,
    pub counters: Counters,
    /// An open run with another fingerprint was abandoned (--new-run).
    pub abandoned: Option<i64>,
}

impl Backfill {
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

    /// Take the single-run guard: the lease (waiting for it, or refusing naming its holder),
    /// then make sure no batch of an earlier run is still running on the server (wait for, or
    /// with --cancel-orphans end, its backend).
    pub(super) async fn lock(
        &mut self,
        observer: &mut dyn FnMut(Event),
    ) -> Result<(), BackfillError> {
        let deadline = Instant::now() + self.opts.lock_wait;
        self.take_lease(deadline, observer).await?;
        self.no_batch_in_flight(deadline, observer).await
    }

    /// The lease: ours when there is none, when it is ours already (a reconnect), or when it has
    /// expired (its run died without releasing it).
    async fn take_lease(
        &mut self,
        deadline: Instant,
        observer: &mut dyn FnMut(Event),
    ) -> Result<(), BackfillError> {
        let mut announced = false;
        loop {
            let (holder, taken) = self.try_lease().await?;
            if taken {
                if let Some(h) = holder.filter(|h| h.token != self.token) {
                    let why = if h.expired {
                        format!(
                            "it expired {} s ago without being released",
                            h.expires_in.trim_start_matches('-')
                        )
                    } else {
                        "its process is gone from this host".to_string()
                    };
                    observer(Event::Waiting(format!(
                        "took over the lease of backfill `{}` from the run of client {} ({why}: \
                         that run was killed or lost its connection)",
                        self.spec.name, h.client,
                    )));
                }
                return Ok(());
            }
            let h = holder.unwrap_or_default();
            if self.opts.cancel_orphans
                && let Some(process) = alive_here(&h.client)
            {
                return Err(BackfillError::Refused(format!(
                    "--cancel-orphans: the lease of backfill `{}` belongs to a run whose client \
                     ({process}) is still alive on this host; it is not an orphan. Stop that run \
                     (Ctrl-C) instead.",
                    self.spec.name
                )));
            }
            if Instant::now() >= deadline {
                return Err(BackfillError::Refused(format!(
                    "another run of backfill `{name}` is in progress: the run of client {client} \
                     holds its lease (taken {taken} s ago, renewed {renewed} s ago, expires in \
                     {expires} s unless renewed; server clock).\n  Two runs of one backfill never \
                     run at once. If that run is alive, let it finish. If it was killed (kill -9, \
                     lost connection), its lease expires in {expires} s: rerun then, or with \
                     --wait longer than that (nothing it committed is lost; a batch it left \
                     running on the server is waited for).",
                    name = self.spec.name,
                    client = h.client,
                    taken = h.taken_ago,
                    renewed = h.renewed_ago,
                    expires = h.expires_in,
                )));
            }
            if !announced {
                announced = true;
                observer(Event::Waiting(format!(
                    "the run of client {} holds the lease of backfill `{}` (expires in {} s \
                     unless renewed); waiting up to {} s for it",
                    h.client,
                    self.spec.name,
                    h.expires_in,
                    self.opts.lock_wait.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// One attempt at the lease, in a transaction of its own: the holder before the attempt
    /// (if any) and whether the lease is now ours. A lease row locked by the holder's batch in
    /// flight (lock timeout) counts as held.
    async fn try_lease(&self) -> Result<(Option<Holder>, bool), BackfillError> {
        let c = &self.session.client;
        let db_err = |e: tokio_postgres::Error| BackfillError::Db {
            what: "taking the backfill's lease in migval.backfill_leases".into(),
            failure: fail(&e, sql::BACKFILL_LEASE_TAKE.name),
        };
        c.batch_execute(&self.set_local()).await.map_err(db_err)?;
        let attempt = async {
            let holder = unnamed::query_opt(c, sql::BACKFILL_LEASE_HOLDER.sql, &[&self.spec.name])
                .await?
                .map(|r| Holder::of(&r))
                .transpose()?;
            let lease_ms = i64_of(millis(self.opts.lease));
            // A holder that ran on this host and whose process is gone is dead for certain: no
            // need to wait for its lease to expire (a batch it left running on the server is
            // still waited for, by the batch lock).
            let dead = holder
                .as_ref()
                .filter(|h| h.token != self.token && dead_here(&h.client))
                .map(|h| h.token.clone())
                .unwrap_or_default();
            let taken = unnamed::query_opt(
                c,
                sql::BACKFILL_LEASE_TAKE.sql,
                &[&self.spec.name, &self.token, &client_id(), &lease_ms, &dead],
            )
            .await;
            match taken {
                Ok(row) => Ok((holder, row.is_some())),
                Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => Ok((holder, false)),
                Err(e) => Err(e),
            }
        };
        match attempt.await {
            Ok((holder, true)) => {
                c.batch_execute("COMMIT").await.map_err(db_err)?;
                Ok((holder, true))
            }
            Ok((holder, false)) => {
                let _ = c.batch_execute("ROLLBACK").await;
                Ok((holder, false))
            }
            Err(e) => {
                let _ = c.batch_execute("ROLLBACK").await;
                Err(db_err(e))
            }
        }
    }

    /// With the lease ours, no batch of another run may still run on the server: the backend
    /// of a killed run finishing (or rolling back) its batch holds the batch advisory lock.
    async fn no_batch_in_flight(
        &mut self,
        deadline: Instant,
        observer: &mut dyn FnMut(Event),
    ) -> Result<(), BackfillError> {
        let mut announced = false;
        let mut terminated = false;
        loop {
            let c = &self.session.client;
            let db_err = |e: tokio_postgres::Error| BackfillError::Db {
                what: "checking for a batch of an earlier run still running on the server".into(),
                failure: fail(&e, "pg_try_advisory_xact_lock"),
            };
            // Taken and released at once (ROLLBACK): only asking whether it is free.
            c.batch_execute(&self.set_local()).await.map_err(db_err)?;
            let locked: Result<bool, _> =
                unnamed::query_one(c, sql::BACKFILL_LOCK.sql, &[&self.spec.name])
                    .await
                    .and_then(|r| r.try_get("locked"));
            let holder = match locked {
                Ok(false) => {
                    unnamed::query_opt(c, sql::BACKFILL_LOCK_HOLDER.sql, &[&self.spec.name])
                        .await
                        .ok()
                        .flatten()
                }
                _ => None,
            };
            let _ = c.batch_execute("ROLLBACK").await;
            if locked.map_err(db_err)? {
                return Ok(());
            }
            let (pid, app, state, secs, query) = match &holder {
                Some(r) => (
                    r.try_get::<_, i32>("pid").unwrap_or(0),
                    r.try_get::<_, String>("application_name")
                        .unwrap_or_default(),
                    r.try_get::<_, String>("state").unwrap_or_default(),
                    r.try_get::<_, String>("seconds").unwrap_or_default(),
                    r.try_get::<_, String>("query").unwrap_or_default(),
                ),
                None => (
                    0,
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                ),
            };
            if self.opts.cancel_orphans && pid != 0 && app == self.tag && !terminated {
                let done: bool = query_alone(
                    c,
                    &self.set_local(),
                    sql::BACKFILL_TERMINATE.sql,
                    &[&pid, &self.tag],
                )
                .await
                .ok()
                .flatten()
                .and_then(|r| r.try_get("terminated").ok())
                .unwrap_or(false);
                terminated = done;
                observer(Event::Waiting(format!(
                    "--cancel-orphans: ended backend pid {pid} ({state}) left by an earlier run of `{}`",
                    self.spec.name
                )));
            } else if !announced {
                announced = true;
                observer(Event::Waiting(format!(
                    "backend pid {pid} ({app}, {state} for {secs} s) holds the batch lock of \
                     backfill `{}`; waiting up to {} s for it to finish",
                    self.spec.name,
                    self.opts.lock_wait.as_secs()
                )));
            }
            if Instant::now() >= deadline {
                self.release().await;
                return Err(BackfillError::Refused(format!(
                    "a batch of an earlier run of backfill `{name}` is still running on the \
                     server: backend pid {pid} (application_name `{app}`, {state} for {secs} s{q}) \
                     holds its batch lock.\n  Two runs of one backfill never run at once. If that \
                     run is alive, let it finish. If it was killed (kill -9, lost connection), its \
                     backend may still be finishing a batch: wait a little and rerun, or rerun \
                     with --cancel-orphans to end it (its uncommitted batch rolls back; nothing \
                     committed is lost).",
                    name = self.spec.name,
                    q = if query.is_empty() {
                        String::new()
                    } else {
                        format!(
                            ": {}",
                            query.split_whitespace().collect::<Vec<_>>().join(" ")
                        )
                    }
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Release the lease (ours only), in a transaction of its own. Best effort: an unreleased
    /// lease expires by itself.
    pub(super) async fn release(&self) {
        let c = &self.session.client;
        if c.batch_execute(&self.set_local()).await.is_err() {
            return;
        }
        let released = unnamed::execute(
            c,
            sql::BACKFILL_LEASE_RELEASE.sql,
            &[&self.spec.name, &self.token],
        )
        .await;
        let _ = c
            .batch_execute(if released.is_ok() {
                "COMMIT"
            } else {
                "ROLLBACK"
            })
            .await;
    }

    /// Renew the lease between batches (while waiting for replicas), in a transaction of its
    /// own. Best effort: a lease lost meanwhile is found by the next batch, which stops.
    pub(super) async fn renew_lease(&self) {
        if !self.opts.commit {
            return;
        }
        let c = &self.session.client;
        if c.batch_execute(&self.set_local()).await.is_err() {
            return;
        }
        let lease_ms = i64_of(millis(self.opts.lease));
        let renewed = unnamed::execute(
            c,
            sql::BACKFILL_LEASE_RENEW.sql,
            &[&self.spec.name, &self.token, &lease_ms],
        )
        .await;
        let _ = c
            .batch_execute(if renewed.is_ok() {
                "COMMIT"
            } else {
                "ROLLBACK"
            })
            .await;
    }

    /// Inside a batch transaction (--commit): wait for the batch lock, renew the lease. A lease
    /// taken over by another run (ours had expired) stops the run before this batch changes
    /// anything.
    pub(super) async fn guard_batch(&self, c: &tokio_postgres::Client) -> Result<(), GuardFail> {
        if !self.opts.commit {
            return Ok(());
        }
        unnamed::execute(c, sql::BACKFILL_BATCH_LOCK.sql, &[&self.spec.name])
            .await
            .map_err(GuardFail::Db)?;
        let lease_ms = i64_of(millis(self.opts.lease));
        let renewed = unnamed::execute(
            c,
            sql::BACKFILL_LEASE_RENEW.sql,
            &[&self.spec.name, &self.token, &lease_ms],
        )
        .await
        .map_err(GuardFail::Db)?;
        if renewed == 0 {
            return Err(GuardFail::LeaseLost(format!(
                "the lease of backfill `{}` was taken over by another run: this run's lease had \
                 expired (it lasts --lease {} s; a pause, a wait for replicas or a batch longer \
                 than that lets it lapse). This run stops before its next batch changes anything; \
                 the other run resumes from the last committed batch.",
                self.spec.name,
                self.opts.lease.as_secs()
            )));
        }
        Ok(())
    }

    /// Create the progress and lease tables if needed (--commit only).
    pub(super) async fn ensure_state(&self) -> Result<(), BackfillError> {
        self.session
            .client
            .batch_execute(&format!(
                "{}; {} COMMIT",
                self.set_local(),
                sql::BACKFILL_STATE_DDL.sql
            ))
            .await
            .map_err(|e| BackfillError::Db {
                what: "creating the progress tables migval.backfill_runs and \
                       migval.backfill_leases (needs CREATE on the database)"
                    .into(),
                failure: fail(&e, sql::BACKFILL_STATE_DDL.name),
            })
    }

    /// Resume the open run or start a new one, in one transaction.
    pub(super) async fn open_run(&mut self) -> Result<RunStart, BackfillError> {
        let c = &self.session.client;
        c.batch_execute(&self.set_local())
            .await
            .map_err(|e| BackfillError::Db {
                what: "opening the run in migval.backfill_runs".into(),
                failure: fail(&e, "BEGIN"),
            })?;
        match self.open_run_in_transaction().await {
            Ok(start) => {
                c.batch_execute("COMMIT")
                    .await
                    .map_err(|e| BackfillError::Db {
                        what: "opening the run in migval.backfill_runs".into(),
                        failure: fail(&e, "COMMIT"),
                    })?;
                Ok(start)
            }
            Err(e) => {
                let _ = c.batch_execute("ROLLBACK").await;
                Err(e)
            }
        }
    }

    async fn open_run_in_transaction(&self) -> Result<RunStart, BackfillError> {
        let c = &self.session.client;
        let state_err = |what: &str| {
            let what = what.to_string();
            move |e: tokio_postgres::Error| BackfillError::Db {
                what: what.clone(),
                failure: fail(&e, sql::BACKFILL_STATE_DDL.name),
            }
        };
        let open = unnamed::query_opt(c, sql::BACKFILL_RUN_OPEN.sql, &[&self.spec.name])
            .await
            .map_err(state_err("reading migval.backfill_runs"))?;
        let me = client_id();
        let mut abandoned = None;
        if let Some(row) = open {
            let (run_id, fingerprint, last_key, counters) =
                run_row(&row).map_err(state_err("reading migval.backfill_runs"))?;
            if self.spec.same_definition(&fingerprint) {
                unnamed::execute(
                    c,
                    sql::BACKFILL_RUN_STATUS.sql,
                    &[&run_id, &"running", &None::<String>, &me],
                )
                .await
                .map_err(state_err("updating migval.backfill_runs"))?;
                return Ok(RunStart {
                    run_id,
                    resumed: true,
                    last_key,
                    counters,
                    abandoned: None,
                });
            }
            if !self.opts.new_run {
                return Err(BackfillError::Refused(format!(
                    "backfill `{}` has an unfinished run {run_id} ({} batches committed, last key {}) \
                     made with a different spec (table, key, pending, set/update or ambiguity \
                     changed). Resuming it with another definition could apply two different \
                     changes to one table.\n  Restore the spec to resume, or rerun with --new-run to \
                     abandon run {run_id} and start a new run (rows already done stay done: the \
                     pending guard skips them).",
                    self.spec.name,
                    counters.batches,
                    last_key
                        .as_ref()
                        .map(|k| format!("({})", k.join(", ")))
                        .unwrap_or_else(|| "none".into())
                )));
            }
            unnamed::execute(
                c,
                sql::BACKFILL_RUN_STATUS.sql,
                &[
                    &run_id,
                    &"abandoned",
                    &Some("abandoned by --new-run: the spec changed".to_string()),
                    &me,
                ],
            )
            .await
            .map_err(state_err("updating migval.backfill_runs"))?;
            abandoned = Some(run_id);
        }
        let run_id: i64 = unnamed::query_one(
            c,
            sql::BACKFILL_RUN_START.sql,
            &[
                &self.spec.name,
                &self.target.display(),
                &self.spec.fingerprint,
                &me,
            ],
        )
        .await
        .and_then(|r| r.try_get("run_id"))
        .map_err(state_err("starting a run in migval.backfill_runs"))?;
        Ok(RunStart {
            run_id,
            resumed: false,
            last_key: None,
            counters: Counters::default(),
            abandoned,
        })
    }

    /// Write the run's final status and release the lease, in one transaction.
    pub(super) async fn mark(&self, run_id: Option<i64>, status: &str, message: Option<&str>) {
        let Some(id) = run_id else { return };
        let c = &self.session.client;
        for _ in 0..3 {
            let marked = async {
                c.batch_execute(&self.set_local()).await?;
                unnamed::execute(
                    c,
                    sql::BACKFILL_RUN_STATUS.sql,
                    &[&id, &status, &message.map(str::to_string), &client_id()],
                )
                .await?;
                unnamed::execute(
                    c,
                    sql::BACKFILL_LEASE_RELEASE.sql,
                    &[&self.spec.name, &self.token],
                )
                .await?;
                c.batch_execute("COMMIT").await
            }
            .await;
            match marked {
                Ok(()) => return,
                // The cancel sent for an interrupted batch is delivered by the server when it
                // gets to it, and can land on this statement instead: write the status again.
                Err(e) if e.code() == Some(&SqlState::QUERY_CANCELED) => {
                    let _ = c.batch_execute("ROLLBACK").await;
                }
                Err(_) => {
                    let _ = c.batch_execute("ROLLBACK").await;
                    // The status could not be written; the lease at least should not linger.
                    self.release().await;
                    return;
                }
            }
        }
    }
}

/// A run as stored: id, fingerprint, last key, counters.
pub(super) type RunRow = (i64, String, Option<Vec<String>>, Counters);

/// A token unique to this invocation: host:pid plus the start time, so that a reused pid (or a
/// second run on another host with the same pid) is never taken for this run.
pub(super) fn new_token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}:{nanos}", client_id())
}

/// `client` (host:pid, as recorded by a run), when that process still runs on this host and is
/// not this one.
fn alive_here(client: &str) -> Option<String> {
    let me = client_id();
    let (host, pid) = client.rsplit_once(':')?;
    let (my_host, _) = me.rsplit_once(':')?;
    let pid: u32 = pid.parse().ok()?;
    (host == my_host && pid != std::process::id() && is_running(pid)).then(|| client.to_string())
}

/// `client` (host:pid, as recorded by a run) ran on this host and its process is gone.
fn dead_here(client: &str) -> bool {
    let me = client_id();
    let (Some((host, pid)), Some((my_host, _))) = (client.rsplit_once(':'), me.rsplit_once(':'))
    else {
        return false;
    };
    !host.is_empty() && host == my_host && pid.parse().is_ok_and(|pid: u32| !is_running(pid))
}

pub(super) fn client_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    format!("{host}:{}", std::process::id())
}

/// Whether a process with this pid runs on this host (Linux /proc; elsewhere: unknown, false).
pub(super) fn is_running(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

pub(super) fn run_row(row: &tokio_postgres::Row) -> Result<RunRow, tokio_postgres::Error> {
    let g = |name: &str| row.try_get::<_, i64>(name).map(u64_of);
    Ok((
        row.try_get("run_id")?,
        row.try_get("fingerprint")?,
        row.try_get("last_key")?,
        Counters {
            batches: g("batches")?,
            checked: g("rows_checked")?,
            updated: g("rows_updated")?,
            already_done: g("rows_already_done")?,
            no_match: g("rows_no_match")?,
            ambiguous: g("rows_ambiguous")?,
            errors: g("rows_errors")?,
        },
    ))
}
