//! A batch whose change failed on a bad row (a data or constraint error): list its keys, then
//! bisect them (`policy::Bisect`), committing each part that succeeds and logging, as an
//! `error` row, each key that fails alone, so one bad row costs the run one row, not a batch.
//!
//! ```text
//!   [k1 .. k8] fails -> [k1 .. k4] ok, commit | [k5 .. k8] fails
//!                    -> [k5 k6] ok | [k7] ok | [k8] fails alone: logged, skipped
//! ```

use super::batch::Done;
use super::log::{LoggedRow, RowLog};
use super::policy::{Bisect, Fail};
use super::runner::{Backfill, BackfillError, Counters, Event, Progress, fail, i64_of};
use crate::db::unnamed::{self, Bind};

impl Backfill {
    /// A batch failed on a data or constraint error: bisect its keys, commit what succeeds,
    /// log (and skip) each row that fails alone.
    pub(super) async fn isolate(
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
