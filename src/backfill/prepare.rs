//! Before the first batch: resolve the table and its unique key on the server, prepare every
//! generated statement (a typo in a fragment fails here, naming the spec key, not at batch 40),
//! and count the rows.

use tokio_postgres::Client;
use tokio_postgres::types::Type;

use super::runner::{Backfill, BackfillError, Options, fail, u64_of};
use super::session::{open, query_alone};
use super::spec::BackfillSpec;
use super::statements::{Statements, Target};
use crate::db::conninfo::ConnInfo;
use crate::db::txn::{Savepoint, SetLocal};
use crate::db::unnamed;
use crate::sql;

/// Where the first form of the bound statements is tried (see [`check_statements`]).
const BOUND_FORM: Savepoint = Savepoint::new("bound_form");

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

    /// The run's ceiling (its largest key now), then the rows at or below it and those pending,
    /// for the plan line and the progress bar. On a table too big to count within the batch
    /// statement_timeout, PostgreSQL's estimate instead.
    pub(super) async fn count(&mut self) -> Result<(), BackfillError> {
        let c = &self.session.client;
        let db_err = |e: tokio_postgres::Error| BackfillError::Db {
            what: format!("counting the rows of {}", self.target.display()),
            failure: fail(&e, "counting rows"),
        };
        // The run's ceiling first: the counts are of the rows at or below it, which are all
        // the batches will visit.
        let n = self.target.key.len();
        let top = query_alone(c, &self.set_local(), &self.stmts.ceiling, &[])
            .await
            .map_err(db_err)?;
        self.ceiling = match top {
            Some(row) => Some(
                (0..n)
                    .map(|i| row.try_get::<_, String>(i))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(db_err)?,
            ),
            None => None,
        };
        let Some(ceiling) = &self.ceiling else {
            self.total_rows = 0;
            self.pending_rows = 0;
            return Ok(());
        };
        let params: Vec<&dyn unnamed::Bind> =
            ceiling.iter().map(|v| v as &dyn unnamed::Bind).collect();
        c.batch_execute(&self.set_local()).await.map_err(db_err)?;
        let row = unnamed::query_one(c, &self.stmts.count, &params).await;
        let _ = c.batch_execute("ROLLBACK").await;
        match row {
            Ok(row) => {
                // Generated in statements.rs (total, pending): read by position, as every
                // generated statement is; the queries/*.sql rows are read by name.
                self.total_rows = u64_of(row.try_get(0).map_err(db_err)?);
                self.pending_rows = u64_of(row.try_get(1).map_err(db_err)?);
            }
            Err(e) if e.code().map(|c| c.code()) == Some("57014") => {
                let est: f32 = query_alone(
                    c,
                    &self.set_local(),
                    sql::BACKFILL_ESTIMATE.sql,
                    &[&self.target.qualified()],
                )
                .await
                .map_err(db_err)?
                .map(|r| r.try_get("reltuples"))
                .transpose()
                .map_err(db_err)?
                .unwrap_or(0.0);
                let est = format!("{:.0}", est.max(0.0)).parse::<u64>().unwrap_or(0);
                self.total_rows = est;
                self.pending_rows = est;
                self.counts_estimated = true;
            }
            Err(e) => return Err(db_err(e)),
        }
        Ok(())
    }
}

/// Resolve the table and its key on the server.
pub(super) async fn resolve(c: &Client, spec: &BackfillSpec) -> Result<Target, BackfillError> {
    let quoted = match &spec.table.schema {
        Some(s) => crate::sql::ident::quote_qualified(s, &spec.table.name),
        None => crate::sql::ident::quote(&spec.table.name),
    };
    let rows = unnamed::query(c, sql::BACKFILL_TARGET.sql, &[&quoted, &spec.key])
        .await
        .map_err(|e| BackfillError::Db {
            what: format!("{}: resolving table `{}`", spec.path.display(), spec.table),
            failure: fail(&e, sql::BACKFILL_TARGET.name),
        })?;
    if rows.is_empty() {
        return Err(BackfillError::Refused(format!(
            "{}: key `table`: table `{}` does not exist (unqualified names are looked up with the \
             connection's search_path; write schema.table)",
            spec.path.display(),
            spec.table
        )));
    }
    let mut key = Vec::new();
    let mut schema = String::new();
    let mut table = String::new();
    let mut unique = false;
    let mut invalid: Option<String> = None;
    for r in &rows {
        let get = |e: tokio_postgres::Error| BackfillError::Db {
            what: "reading the key columns".into(),
            failure: fail(&e, sql::BACKFILL_TARGET.name),
        };
        schema = r.try_get("schema").map_err(get)?;
        table = r.try_get("table").map_err(get)?;
        let col: String = r.try_get("column").map_err(get)?;
        let ty: Option<String> = r.try_get("type").map_err(get)?;
        let not_null: bool = r.try_get("not_null").map_err(get)?;
        unique = r.try_get("unique_key").map_err(get)?;
        invalid = r.try_get("invalid_index").map_err(get)?;
        let Some(ty) = ty else {
            return Err(BackfillError::Refused(format!(
                "{}: key `key`: column `{col}` does not exist in {schema}.{table}",
                spec.path.display()
            )));
        };
        if !not_null {
            return Err(BackfillError::Refused(format!(
                "{}: key `key`: column `{col}` of {schema}.{table} is nullable; a batching key must \
                 be NOT NULL (rows with a NULL key would never be visited)",
                spec.path.display()
            )));
        }
        key.push((col, ty));
    }
    if let (false, Some(index)) = (unique, &invalid) {
        return Err(BackfillError::Refused(format!(
            "{}: key `key`: the only unique index on ({}) of {schema}.{table} is {index}, and it is \
             INVALID (left by a failed CREATE UNIQUE INDEX CONCURRENTLY, e.g. on duplicate values): \
             it enforces nothing, so the key may not be unique and keyset batching could skip or \
             miscount rows. Find the duplicates, then DROP INDEX {index} and build it again, or \
             key the backfill on the primary key",
            spec.path.display(),
            spec.key.join(", ")
        )));
    }
    if !unique {
        return Err(BackfillError::Refused(format!(
            "{}: key `key`: ({}) is not the primary key or a unique constraint of {schema}.{table}; \
             keyset batching needs a unique key, or rows sharing a key value across a batch \
             boundary would be skipped",
            spec.path.display(),
            spec.key.join(", ")
        )));
    }
    Ok(Target { schema, table, key })
}

/// Prepare every generated statement, so a typo in a fragment is reported before any batch,
/// naming the spec key it came from. Returns the parameter types of a user UPDATE.
pub(super) async fn check_statements(
    c: &Client,
    spec: &BackfillSpec,
    t: &Target,
    s: &mut Statements,
) -> Result<Vec<Type>, BackfillError> {
    let file = spec.path.display().to_string();
    let bad = |key: &str, e: &tokio_postgres::Error| BackfillError::Db {
        what: format!("{file}: key `{key}` does not run on {}", t.display()),
        failure: fail(e, &format!("preparing the statement built from `{key}`")),
    };
    // Called inside a transaction: the savepoint keeps it usable after the first form fails.
    let savepoint = c.batch_execute(&BOUND_FORM.open()).await.is_ok();
    if let Err(e) = c.prepare(&s.bound_next).await {
        if savepoint {
            let _ = c.batch_execute(&BOUND_FORM.rollback()).await;
        }
        // 42883: no min()/max() for the key type (uuid): the general form, checked below.
        match s.bound_general.take() {
            Some((first, next)) if e.code().map(|c| c.code()) == Some("42883") => {
                s.bound_first = first;
                s.bound_next = next;
                c.prepare(&s.bound_next)
                    .await
                    .map_err(|e| bad("pending", &e))?;
            }
            _ => return Err(bad("pending", &e)),
        }
    }
    c.prepare(&s.left).await.map_err(|e| bad("pending", &e))?;
    if let Some(probe) = &s.ambiguity_probe {
        let st = c
            .prepare(probe)
            .await
            .map_err(|e| bad("ambiguity.sql", &e))?;
        let cols: Vec<&str> = st.columns().iter().map(|c| c.name()).collect();
        let mut missing: Vec<String> = t
            .key
            .iter()
            .map(|(k, _)| k.clone())
            .filter(|k| !cols.contains(&k.as_str()))
            .collect();
        for need in ["reason", "candidates"] {
            if !cols.contains(&need) {
                missing.push(need.into());
            }
        }
        if !missing.is_empty() {
            return Err(BackfillError::Refused(format!(
                "{file}: key `ambiguity.sql`: the query must return the key column(s) and `reason` \
                 and `candidates`; missing: {} (it returns: {})",
                missing.join(", "),
                cols.join(", ")
            )));
        }
        if let Some(a) = &s.ambiguous {
            c.prepare(a).await.map_err(|e| bad("ambiguity.sql", &e))?;
        }
    }
    let key = if s.set_mode { "set" } else { "update" };
    let st = c.prepare(&s.change).await.map_err(|e| bad(key, &e))?;
    if s.set_mode {
        return Ok(Vec::new());
    }
    let types = st.params().to_vec();
    if types.len() != 2 {
        return Err(BackfillError::Refused(format!(
            "{file}: key `update`: the statement must use exactly $1 and $2 (the batch's first and \
             last key); it has {} parameter(s)",
            types.len()
        )));
    }
    for ty in &types {
        if !matches!(
            *ty,
            Type::INT2 | Type::INT4 | Type::INT8 | Type::TEXT | Type::VARCHAR | Type::BPCHAR
        ) {
            return Err(BackfillError::Refused(format!(
                "{file}: key `update`: $1/$2 are typed {ty} by the server; write them as \
                 `$1::text::{ty}` so that migval binds them as text"
            )));
        }
    }
    Ok(types)
}
