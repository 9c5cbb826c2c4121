//! The single-run guard and the progress row: a session advisory lock per backfill name (and
//! what to do about its holder: wait, refuse, or end a killed run's backend), the progress table
//! `migval.backfill_runs`, and opening, resuming or abandoning a run.

use std::time::{Duration, Instant};

use super::runner::{Backfill, BackfillError, Counters, Event, fail, u64_of};
use crate::sql;

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
    /// Take the single-run guard; wait for (or, with --cancel-orphans, end) its holder.
    pub(super) async fn lock(
        &mut self,
        observer: &mut dyn FnMut(Event),
    ) -> Result<(), BackfillError> {
        let deadline = Instant::now() + self.opts.lock_wait;
        let mut announced = false;
        let mut terminated = false;
        loop {
            let c = &self.session.client;
            let locked: bool = c
                .query_one(sql::BACKFILL_LOCK.sql, &[&self.spec.name])
                .await
                .and_then(|r| r.try_get(0))
                .map_err(|e| BackfillError::Db {
                    what: "taking the backfill's advisory lock".into(),
                    failure: fail(&e, "pg_try_advisory_lock"),
                })?;
            if locked {
                return Ok(());
            }
            let holder = c
                .query_opt(sql::BACKFILL_LOCK_HOLDER.sql, &[&self.spec.name])
                .await
                .ok()
                .flatten();
            let (pid, app, state, secs, query) = match &holder {
                Some(r) => (
                    r.try_get::<_, i32>(0).unwrap_or(0),
                    r.try_get::<_, String>(1).unwrap_or_default(),
                    r.try_get::<_, String>(2).unwrap_or_default(),
                    r.try_get::<_, String>(3).unwrap_or_default(),
                    r.try_get::<_, String>(4).unwrap_or_default(),
                ),
                None => (
                    0,
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                ),
            };
            let alive = if self.opts.cancel_orphans {
                self.holder_alive_here().await
            } else {
                None
            };
            if let Some(process) = &alive
                && self.opts.cancel_orphans
            {
                return Err(BackfillError::Refused(format!(
                    "--cancel-orphans: backend pid {pid} belongs to a run whose client ({process}) \
                     is still alive on this host; it is not an orphan. Stop that run (Ctrl-C) \
                     instead of ending its backend."
                )));
            }
            if self.opts.cancel_orphans && pid != 0 && app == self.tag && !terminated {
                let done: bool = c
                    .query_one(sql::BACKFILL_TERMINATE.sql, &[&pid, &self.tag])
                    .await
                    .and_then(|r| r.try_get(0))
                    .unwrap_or(false);
                terminated = done;
                observer(Event::Waiting(format!(
                    "--cancel-orphans: ended backend pid {pid} ({state}) left by an earlier run of `{}`",
                    self.spec.name
                )));
            } else if !announced {
                announced = true;
                observer(Event::Waiting(format!(
                    "backend pid {pid} ({app}, {state} for {secs} s) holds the lock of backfill `{}`; \
                     waiting up to {} s for it to finish",
                    self.spec.name,
                    self.opts.lock_wait.as_secs()
                )));
            }
            if Instant::now() >= deadline {
                return Err(BackfillError::Refused(format!(
                    "another run of backfill `{name}` is in progress: backend pid {pid} \
                     (application_name `{app}`, {state} for {secs} s{q}) holds its advisory lock.\n  \
                     Two runs of one backfill never run at once. If that run is alive, let it finish. \
                     If it was killed (kill -9, lost connection), its backend may still be finishing a \
                     batch: wait a little and rerun, or rerun with --cancel-orphans to end it (its \
                     uncommitted batch rolls back; nothing committed is lost).",
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

    /// The client (host:pid) recorded by the open run, when that process still runs on this
    /// host: then the lock holder is a live run, not a backend left behind by a killed one.
    pub(super) async fn holder_alive_here(&self) -> Option<String> {
        let row = self
            .session
            .client
            .query_opt(sql::BACKFILL_RUN_OPEN.sql, &[&self.spec.name])
            .await
            .ok()??;
        let client: String = row.try_get(11).ok()?;
        let me = client_id();
        let (host, pid) = client.rsplit_once(':')?;
        let (my_host, _) = me.rsplit_once(':')?;
        let pid: u32 = pid.parse().ok()?;
        (host == my_host && pid != std::process::id() && is_running(pid)).then_some(client)
    }

    /// Create the progress table if needed and resume the open run or start a new one.
    pub(super) async fn open_run(&mut self) -> Result<RunStart, BackfillError> {
        let c = &self.session.client;
        let state_err = |what: &str| {
            let what = what.to_string();
            move |e: tokio_postgres::Error| BackfillError::Db {
                what: what.clone(),
                failure: fail(&e, sql::BACKFILL_STATE_DDL.name),
            }
        };
        c.batch_execute(&format!(
            "{}; {} COMMIT",
            self.set_local(),
            sql::BACKFILL_STATE_DDL.sql
        ))
        .await
        .map_err(state_err(
            "creating the progress table migval.backfill_runs (needs CREATE on the database)",
        ))?;
        let open = c
            .query_opt(sql::BACKFILL_RUN_OPEN.sql, &[&self.spec.name])
            .await
            .map_err(state_err("reading migval.backfill_runs"))?;
        let me = client_id();
        let mut abandoned = None;
        if let Some(row) = open {
            let (run_id, fingerprint, last_key, counters) =
                run_row(&row).map_err(state_err("reading migval.backfill_runs"))?;
            if self.spec.same_definition(&fingerprint) {
                c.execute(
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
            c.execute(
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
        let run_id: i64 = c
            .query_one(
                sql::BACKFILL_RUN_START.sql,
                &[
                    &self.spec.name,
                    &self.target.display(),
                    &self.spec.fingerprint,
                    &me,
                ],
            )
            .await
            .and_then(|r| r.try_get(0))
            .map_err(state_err("starting a run in migval.backfill_runs"))?;
        Ok(RunStart {
            run_id,
            resumed: false,
            last_key: None,
            counters: Counters::default(),
            abandoned,
        })
    }

    pub(super) async fn mark(&self, run_id: Option<i64>, status: &str, message: Option<&str>) {
        let Some(id) = run_id else { return };
        for _ in 0..3 {
            let marked = self
                .session
                .client
                .execute(
                    sql::BACKFILL_RUN_STATUS.sql,
                    &[&id, &status, &message.map(str::to_string), &client_id()],
                )
                .await;
            match marked {
                // The cancel sent for an interrupted batch is delivered by the server when it
                // gets to it, and can land on this statement instead: write the status again.
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED) => {}
                _ => return,
            }
        }
    }
}

/// A run as stored: id, fingerprint, last key, counters.
pub(super) type RunRow = (i64, String, Option<Vec<String>>, Counters);

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
    let g = |i: usize| row.try_get::<_, i64>(i).map(u64_of);
    Ok((
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(3)?,
        Counters {
            batches: g(4)?,
            checked: g(5)?,
            updated: g(6)?,
            already_done: g(7)?,
            no_match: g(8)?,
            ambiguous: g(9)?,
            errors: g(10)?,
        },
    ))
}
