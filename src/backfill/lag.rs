//! The replication-lag ceiling (`[batch] max_replication_lag`): refuse to start when the role
//! cannot read the replicas' lag, and before each batch wait while they lag more than the
//! ceiling (renewing the lease, stopping on Ctrl-C, reporting a lost connection to the loop).
//!
//! ```text
//!   read lag ──> <= max ──────────────────────────────────> Go (next batch)
//!      │ > max: fix target = primary's WAL flush position (every batch committed so far)
//!      └─> every 1 s: read again; a replica replayed up to target no longer counts
//! ```

use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::runner::{Backfill, BackfillError, Event, fail, millis, u64_of};
use super::session::query_alone;
use crate::db;
use crate::model::DbFailure;
use crate::sql;

/// How a wait for the replicas ended.
pub(super) enum Wait {
    /// Below the ceiling: run the next batch.
    Go,
    /// Ctrl-C.
    Stopped,
    /// The connection was lost while waiting.
    Lost(DbFailure),
}

impl Backfill {
    /// With a lag ceiling, refuse to start when the role cannot see the replicas' lag:
    /// pg_stat_replication shows only their pid to roles that are neither superuser nor in
    /// pg_read_all_stats, and a ceiling read as 0 would never hold a batch back.
    pub(super) async fn check_lag_visible(&self) -> Result<(), BackfillError> {
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
        let hidden: i64 = row.try_get("hidden").map_err(db_err)?;
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
    pub(super) async fn wait_for_replicas(
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
            let lag: i64 = row.try_get("lag_ms").map_err(db_err)?;
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
                target = Some(row.try_get("target").map_err(db_err)?);
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
}
