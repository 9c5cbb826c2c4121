//! The run's connection: open it (application_name `migval-backfill:<name>`, the backend's
//! pid, whether the server knows `client_connection_check_interval`), the `BEGIN; SET LOCAL
//! ...` every transaction of a backfill starts with, one query in a transaction of its own,
//! and the reconnect after a lost connection (re-lock, re-read what the server committed).
//!
//! No session-level settings: through a pooler in transaction mode (PgBouncer) a session SET
//! would stay behind on a pooled server connection; everything is SET LOCAL, per transaction.

use std::time::Duration;

use tokio_postgres::{CancelToken, Client};

use super::guard::run_row;
use super::runner::{Backfill, BackfillError, Event, Progress, fail, millis};
use crate::db::conninfo::ConnInfo;
use crate::db::txn::SetLocal;
use crate::db::unnamed::{self, Bind};
use crate::db::{self, ConnectError};
use crate::sql;

pub(super) struct Session {
    pub(super) client: Client,
    pub(super) cancel: CancelToken,
    /// The backend's pid (0 if it could not be read): whom to ask pg_blocking_pids() about.
    pub(super) pid: i32,
    /// PostgreSQL 14+: `client_connection_check_interval` exists (set in every transaction).
    pub(super) check_interval: bool,
}

/// Open the run's connection. No session-level timeouts: every statement of a backfill runs in
/// a transaction that sets them with SET LOCAL (see `Backfill::set_local`), because a session
/// SET through a pooler in transaction mode would stay behind on a pooled server connection and
/// bound the application's statements there too.
pub(super) async fn open(info: &ConnInfo) -> Result<Session, ConnectError> {
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

impl Backfill {
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

    /// Wait `wait_ms`, then reconnect. A server still down is not an error here: the next
    /// attempt fails as lost again and comes back.
    pub(super) async fn pause_and_reconnect(
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

    pub(super) async fn reconnect(
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
}
