//! One batch in one transaction: the single-run guard, the bound query (keyset after the last
//! committed key, LIMIT size, never above the ceiling), the ambiguous rows, the change, the
//! rows still pending, the row log and the progress row, then COMMIT (dry-run: ROLLBACK).
//!
//! ```text
//!   BEGIN; SET LOCAL ...; batch lock + lease renewal
//!   bound(limit, last, ceiling) -> [first, upper], rows in range, pending
//!   ambiguity query -> keys left alone | change (set: skips them; update: $1/$2 range)
//!   rows still pending -> no_match; log; progress row += counters, last_key = upper
//!   COMMIT
//! ```
//! Every failure comes back as a classified [`Fail`] for `policy::decide`.

use std::collections::HashSet;

use tokio_postgres::Client;
use tokio_postgres::types::{ToSql, Type};

use super::guard::GuardFail;
use super::log::{LoggedRow, RowLog};
use super::policy::Fail;
use super::runner::{Backfill, Counters, i64_of, u64_of};
use crate::db::unnamed::{self, Bind, Typed};
use crate::model::DbFailure;
use crate::sql;

/// Committed (or, in a dry-run, rolled back) batch.
pub(super) struct Done {
    pub(super) last: Vec<String>,
    pub(super) counters: Counters,
    /// EXPLAIN ANALYZE of the change (dry-run, first batch).
    pub(super) plan: Option<Vec<String>>,
}

impl Backfill {
    /// One batch in one transaction. `None` when no key is left after `last`.
    pub(super) async fn batch(
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
    pub(super) fn bound<'a>(
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

    /// The single-run guard inside a batch transaction (see `guard::guard_batch`).
    pub(super) async fn guarded(&self, c: &Client) -> Result<(), Fail> {
        self.guard_batch(c).await.map_err(|g| match g {
            GuardFail::Db(e) => Fail::of(
                &e,
                "taking the batch lock and renewing the lease (single-run guard)",
                false,
            ),
            GuardFail::LeaseLost(message) => Fail::fatal(message),
        })
    }

    pub(super) async fn finish(&self, c: &Client) -> Result<(), Fail> {
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
    pub(super) async fn apply(
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
    pub(super) async fn change(
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
    pub(super) async fn record(&self, last: &[String], k: &Counters) -> Result<(), Fail> {
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
