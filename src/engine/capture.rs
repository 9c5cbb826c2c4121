//! Capturing every check in one consistent database snapshot, in parallel.
//!
//! ```text
//!   exporter conn:  BEGIN REPEATABLE READ READ ONLY; SET LOCAL timeouts, TimeZone=UTC
//!                   LOCK TABLE <relations read> IN ACCESS SHARE MODE   (waits <= lock_timeout)
//!                   SELECT pg_export_snapshot(), lsn, ...              -> snapshot id S
//!                   a big rows check -> one probe per key range (`rowstream::split`)
//!   worker 1..n:    BEGIN REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT 'S'
//!   all (exporter included) pull probes from one queue, biggest first:
//!                   SAVEPOINT p; <probe>; RELEASE p   (on error: ROLLBACK TO p, check = ERROR)
//!   end:            ROLLBACK everywhere (nothing was written; nothing could be)
//! ```
//!
//! Every connection sees the same state, so `sum(a) + sum(b)` stays consistent while a writer
//! moves money between `a` and `b`. If a worker cannot import the snapshot (the exporter died),
//! the whole capture starts over rather than mixing two states.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use tokio_postgres::types::ToSql;
use tokio_postgres::{CancelToken, Client};

use crate::db::conninfo::ConnInfo;
use crate::db::decode::{self, Decoder};
use crate::db::txn::{Savepoint, SetLocal};
use crate::db::{self, ConnectError};
use crate::model::{
    Absence, CheckCapture, Column, DbFailure, Kind, Origin, Outcome, SchemaCapture, SchemaCatalog,
    SchemaObject, Section, Snapshot, SpecCopy, Table, Value,
};
use crate::spec::{SizePart, Spec};
use crate::sql::{self, ident};

use super::plan::{self, FactParam, Naming, Output, Probe, ProbeKind};
use super::preflight::{self, Catalog, Preflight, PreflightError};
use super::progress::{self, Event};
use super::rowstream::{self, Baselines};

/// Why a capture produced no snapshot at all (a failing check is not one of these: it is
/// recorded in the snapshot and the other checks still run).
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    #[error("could not take a consistent snapshot: {0}")]
    Snapshot(DbFailure),
}

/// Limits for one capture.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub statement_timeout_ms: u64,
    pub lock_timeout_ms: u64,
    pub parallel: usize,
    /// `max_parallel_workers_per_gather` for the probes (see `Settings::query_workers`).
    pub query_workers: Option<u32>,
}

impl Limits {
    pub fn from_spec(spec: &Spec) -> Limits {
        Limits {
            statement_timeout_ms: spec.settings.statement_timeout_ms,
            lock_timeout_ms: spec.settings.lock_timeout_ms,
            parallel: spec.settings.parallel,
            query_workers: spec.settings.query_workers,
        }
    }

    /// Session settings for a capture transaction. The numbers come from parsed settings,
    /// never from raw user text.
    ///
    /// `connections`: how many connections run probes at once. With several, PostgreSQL's own
    /// parallel workers are off unless `query_workers` says otherwise: the connections already
    /// keep the server's cores busy, workers on top only add processes competing for them (and
    /// pass every row of a big result through shared-memory queues), and migval's load on the
    /// server stays at `parallel` backends.
    ///
    /// `idle_ms`: the transaction's idle-in-transaction bound ([`db::idle_bound_ms`]): long
    /// enough for a connection waiting while another runs its probe, short enough that the
    /// server ends a capture abandoned by a network cut.
    fn set_local(&self, connections: usize, idle_ms: u128) -> String {
        let set = SetLocal::new()
            .statement_timeout_ms(self.statement_timeout_ms)
            .lock_timeout_ms(self.lock_timeout_ms)
            .idle_in_transaction_ms(idle_ms)
            .decoding_formats();
        let set = match self.query_workers {
            Some(n) => set.max_parallel_workers_per_gather(n),
            None if connections > 1 => set.max_parallel_workers_per_gather(0),
            None => set,
        };
        set.sql()
    }
}

const BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/// The savepoints a capture opens: each a step that must leave the transaction as it was.
const CAPTURE: Savepoint = Savepoint::new("migval_capture");
const SCHEMA: Savepoint = Savepoint::new("migval_schema");
const ESTIMATE: Savepoint = Savepoint::new("migval_estimate");
const PROBE: Savepoint = Savepoint::new("migval_probe");
const PLAN: Savepoint = Savepoint::new("migval_plan");
const VIEW: Savepoint = Savepoint::new("migval_view");

/// The cancel keys of every open capture connection (exporter and workers), so that Ctrl-C or
/// SIGTERM can stop the probes on the server before migval exits: a client that just exits
/// leaves its backend running the probe (PostgreSQL notices a closed socket only when it next
/// writes to it) and the exporter's ACCESS SHARE locks held, so the DBA's next ALTER TABLE
/// would wait for a capture nobody is waiting for.
static RUNNING: Mutex<Vec<(u64, CancelToken)>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A connection's entry in [`RUNNING`], removed when the connection is done with.
struct Registered(u64);

impl Registered {
    fn new(client: &Client) -> Registered {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut r) = RUNNING.lock() {
            r.push((id, client.cancel_token()));
        }
        Registered(id)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut r) = RUNNING.lock() {
            r.retain(|(id, _)| *id != self.0);
        }
    }
}

/// Ask the server to cancel whatever every open capture connection is running (a probe, a
/// LOCK TABLE waiting for its lock, the catalog read). Returns how many cancel requests were
/// delivered. Bounded by `limit` in all (an unreachable server must not hold up an exit).
///
/// A cancelled probe fails, its backend then finds the client gone and ends, and with it the
/// exporter's transaction and its locks: call this, then exit.
pub async fn cancel_running(info: &ConnInfo, limit: Duration) -> usize {
    let tokens: Vec<CancelToken> = match RUNNING.lock() {
        Ok(r) => r.iter().map(|(_, t)| t.clone()).collect(),
        Err(_) => Vec::new(),
    };
    if tokens.is_empty() {
        return 0;
    }
    let sent = tokens.iter().map(|t| async move {
        // The same TLS settings as the connection itself (a server that requires TLS refuses
        // a plain cancel request).
        let Ok(tls) = db::tls::make_connector(info) else {
            return false;
        };
        t.cancel_query(tls).await.is_ok()
    });
    match tokio::time::timeout(limit, futures_util::future::join_all(sent)).await {
        Ok(done) => done.into_iter().filter(|ok| *ok).count(),
        Err(_) => 0,
    }
}

/// Capture `spec` on one side of the migration.
pub async fn capture(
    info: &ConnInfo,
    spec: &Spec,
    naming: &Naming,
    limits: Limits,
) -> Result<Snapshot, CaptureError> {
    capture_against(info, spec, naming, limits, &Baselines::default()).await
}

/// [`capture`], with the rows checks of `baselines` merged against their baseline sections
/// as the post-state arrives (see `rowstream`).
pub async fn capture_against(
    info: &ConnInfo,
    spec: &Spec,
    naming: &Naming,
    limits: Limits,
    baselines: &Baselines,
) -> Result<Snapshot, CaptureError> {
    let started = Instant::now();
    let mut attempt = 0;
    let mut lost: Option<DbFailure> = None;
    loop {
        attempt += 1;
        let epoch = db::cut_epoch();
        progress::emit(Event::Phase("connect"));
        let exporter = match (db::connect(info).await, &lost) {
            (Ok(c), _) => c,
            (Err(e), None) => return Err(e.into()),
            // Starting over after a lost connection, and the server cannot be reached again.
            (Err(e), Some(f)) => {
                return Err(CaptureError::Snapshot(DbFailure::message_only(format!(
                    "the capture lost a connection ({}) and could not connect again to start over: {e}",
                    f.message
                ))));
            }
        };
        let _cancel = Registered::new(&exporter);
        crate::trace!("connected (attempt {attempt})");
        let Preflight { catalog, absent } = preflight::run(&exporter, spec, naming).await?;
        let probes = plan::plan(spec, naming, &catalog, &absent);
        crate::trace!("preflight and plan done: {} probes", probes.len());
        let run = attempt_capture(
            info, exporter, spec, &catalog, probes, &absent, limits, baselines,
        );
        match run.await {
            Ok((origin, captures, connections, schema)) => {
                let mut snap = snapshot_of(
                    info,
                    spec,
                    naming,
                    &catalog,
                    origin,
                    captures,
                    connections,
                    started,
                );
                snap.schema = schema;
                return Ok(snap);
            }
            // Closed by the client-side bound: the server went silent, nothing was lost that a
            // new snapshot would find.
            Err(Attempt::Retry(_)) if db::silence_since(epoch).is_some() => {
                let silence = db::silence_since(epoch).map(|s| s.failure(None));
                return Err(CaptureError::Snapshot(silence.unwrap_or_else(|| {
                    DbFailure::message_only("no answer from the server")
                })));
            }
            Err(Attempt::Retry(f)) if attempt < MAX_ATTEMPTS => {
                crate::trace!("capture attempt {attempt} started over: {f}");
                lost = Some(f);
                continue;
            }
            Err(Attempt::Retry(f)) | Err(Attempt::Fatal(f)) => {
                return Err(CaptureError::Snapshot(f));
            }
            Err(Attempt::Connect(e)) => return Err(CaptureError::Connect(e)),
        }
    }
}

enum Attempt {
    /// The snapshot could not be shared (exporter gone): start over.
    Retry(DbFailure),
    Fatal(DbFailure),
    Connect(ConnectError),
}

type OriginParts = (String, String, bool, String, String, String);

/// Read a row of `snapshot_export.sql` or `transaction_origin.sql` (same columns), by name.
fn origin_from_row(row: &tokio_postgres::Row) -> Result<OriginParts, tokio_postgres::Error> {
    Ok((
        row.try_get("snapshot_id")?,
        row.try_get("lsn")?,
        row.try_get("in_recovery")?,
        row.try_get("server_version")?,
        row.try_get("database")?,
        row.try_get("captured_at")?,
    ))
}
/// A probe's index, its tables or failure, and the planner setting it ran under (if any).
type ProbeResult = (
    usize,
    Result<Vec<(usize, Got)>, DbFailure>,
    Option<&'static str>,
);

/// What a probe captured for one check: a table in memory, or a section streamed to disk
/// (a rows check, a large keyed result: see `keystream`).
pub(super) enum Got {
    Table(Table),
    /// A rows check, or one key range of it.
    Rows(Option<rowstream::Range>, Box<rowstream::Streamed>),
    /// A large grouped or keyed custom result (`keystream`).
    Section(Section),
}

/// The schemas whose catalog the schema diff compares: those in scope, never migval's own.
fn schema_scope(spec: &Spec, catalog: &Catalog) -> Option<Vec<String>> {
    spec.schema.enabled.then(|| {
        catalog
            .schemas
            .iter()
            .filter(|s| s.as_str() != "migval")
            .cloned()
            .collect()
    })
}

/// Read the catalog of `schemas` inside the transaction open on `client`, under a savepoint
/// that is always rolled back: a failure leaves the transaction usable (and is reported, not
/// fatal), and the `search_path = pg_catalog` set for the read (so that definitions name every
/// object with its schema, whatever the session's path) ends with it.
async fn read_schema(client: &Client, schemas: Vec<String>) -> SchemaCapture {
    let context = || Some(format!("reading the catalog of {}", schemas.join(", ")));
    if let Err(e) = client
        .batch_execute(&format!(
            "{}; {}",
            SCHEMA.open(),
            SetLocal::new().search_path(&["pg_catalog"]).sql()
        ))
        .await
    {
        return SchemaCapture::Failed(db::failure(&e, context()));
    }
    let read = async {
        let rows = client.query(sql::SCHEMA_CATALOG.sql, &[&schemas]).await?;
        let mut objects = Vec::with_capacity(rows.len());
        for row in rows {
            let attrs: String = row.try_get("attrs")?;
            objects.push((row.try_get("kind")?, row.try_get("name")?, attrs));
        }
        Ok::<_, tokio_postgres::Error>(objects)
    };
    let result = read.await;
    let ended = client.batch_execute(&SCHEMA.discard()).await;
    let rows = match (result, ended) {
        (Ok(rows), Ok(())) => rows,
        (Err(e), _) | (Ok(_), Err(e)) => return SchemaCapture::Failed(db::failure(&e, context())),
    };
    let mut objects = Vec::with_capacity(rows.len());
    for (kind, name, attrs) in rows {
        let attrs = match parse_attrs(&attrs) {
            Ok(a) => a,
            Err(message) => {
                return SchemaCapture::Failed(DbFailure {
                    message: format!("attributes of {kind} {name}: {message}"),
                    sqlstate: None,
                    detail: None,
                    hint: None,
                    server_context: None,
                    context: context(),
                });
            }
        };
        objects.push(SchemaObject { kind, name, attrs });
    }
    objects.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
    SchemaCapture::Captured(SchemaCatalog { schemas, objects })
}

/// A JSON object of text values, as `schema_catalog.sql` builds it.
fn parse_attrs(json: &str) -> Result<BTreeMap<String, String>, String> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let serde_json::Value::Object(map) = value else {
        return Err(format!("expected a JSON object, got {json}"));
    };
    Ok(map
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect())
}

/// One attempt at a capture: the snapshot opened and exported, the probes run on the
/// exporter and on workers that import its snapshot, the results assembled. A connection lost
/// on the way is an [`Attempt::Retry`]: the caller starts over with a new snapshot.
///
/// ```text
///   open_snapshot   BEGIN ... SET LOCAL; LOCK TABLE ... IN ACCESS SHARE MODE; export
///   rowstream::split   big rows checks into key ranges (more probes, maybe more workers)
///   spawn_worker x (workers - 1)   SET TRANSACTION SNAPSHOT; take probes from the queue
///   work on the exporter too; then the schema catalog; join_workers; ROLLBACK everywhere
/// ```
#[allow(clippy::too_many_arguments)]
async fn attempt_capture(
    info: &ConnInfo,
    exporter: Client,
    spec: &Spec,
    catalog: &Catalog,
    probes: Vec<Probe>,
    absent: &BTreeMap<usize, Absence>,
    limits: Limits,
    baselines: &Baselines,
) -> Result<(OriginParts, Vec<CheckCapture>, usize, Option<SchemaCapture>), Attempt> {
    let fatal =
        |e: tokio_postgres::Error, what: &str| Attempt::Fatal(db::failure(&e, Some(what.into())));
    let workers = limits.parallel.min(probes.len()).max(1);
    let origin = open_snapshot(info, &exporter, catalog, limits, workers).await?;
    let snapshot_id = origin.0.clone();

    // Big rows checks in key ranges, one probe each: more probes may use more connections.
    let probes = rowstream::split(&exporter, probes, baselines, limits.parallel).await;
    let more = limits.parallel.min(probes.len()).max(1);
    if more != workers {
        exporter
            .batch_execute(
                &limits.set_local(more, db::idle_bound_ms(info, limits.statement_timeout_ms)),
            )
            .await
            .map_err(|e| fatal(e, "setting up the snapshot transaction"))?;
    }
    let workers = more;
    let shared = Shared {
        queue: Arc::new(Mutex::new(VecDeque::new())),
        probes: Arc::new(probes),
        spec: Arc::new(spec.clone()),
        baselines: Arc::new(baselines.clone()),
    };
    let order = order_by_estimate(&exporter, &shared.probes, &shared.spec).await;
    crate::trace!("probe order by estimated cost: {order:?}");
    if let Ok(mut q) = shared.queue.lock() {
        q.extend(order);
    }
    progress::emit(Event::Phase("probes"));

    // Extra connections import the exporter's snapshot.
    let pool = if workers > 1 {
        Some(db::pool(info, workers - 1).map_err(Attempt::Connect)?)
    } else {
        None
    };
    let handles: Vec<_> = match &pool {
        Some(pool) => (1..workers)
            .map(|w| spawn_worker(w, workers, pool, info, &snapshot_id, limits, &shared))
            .collect(),
        None => Vec::new(),
    };
    let mut results: Vec<ProbeResult> = work(
        (info, limits),
        &exporter,
        &shared.probes,
        &shared.spec,
        &shared.queue,
        0,
        &shared.baselines,
    )
    .await;
    // The catalog read is small: done last, so that the big probes start at once.
    let schema = match schema_scope(&shared.spec, catalog) {
        Some(scope) => Some(read_schema(&exporter, scope).await),
        None => None,
    };
    crate::trace!("schema catalog read");
    let mut first_err = join_workers(handles, &mut results).await;
    // A connection lost mid-capture (the exporter or a worker terminated, a restart) lost
    // the probes it was running: start over with a new snapshot rather than record them as
    // errors. What the other connections read stays theirs: nothing of it is kept, so no
    // snapshot ever mixes two states.
    if exporter.is_closed() {
        first_err = Some(Attempt::Retry(lost_mid_capture("the exporting connection")));
    }
    let _ = exporter.batch_execute("ROLLBACK").await;
    if let Some(e) = first_err {
        return Err(e);
    }

    let captures = assemble(
        &shared.spec,
        &shared.probes,
        results,
        absent,
        &shared.baselines,
    );
    Ok((origin, captures, workers, schema))
}

/// What the capture's connections share: the probes, the queue of those not yet taken (in
/// the order of their estimated cost), the spec and the baselines they compare against.
#[derive(Clone)]
struct Shared {
    probes: Arc<Vec<Probe>>,
    queue: Arc<Mutex<VecDeque<usize>>>,
    spec: Arc<Spec>,
    baselines: Arc<Baselines>,
}

/// On the exporter: the snapshot transaction (timeouts for `workers` connections), ACCESS
/// SHARE locks on every relation read (so no DDL changes them mid-capture), and the exported
/// snapshot's id and origin.
async fn open_snapshot(
    info: &ConnInfo,
    exporter: &Client,
    catalog: &Catalog,
    limits: Limits,
    workers: usize,
) -> Result<OriginParts, Attempt> {
    let fatal =
        |e: tokio_postgres::Error, what: &str| Attempt::Fatal(db::failure(&e, Some(what.into())));
    exporter
        .batch_execute(&format!(
            "{BEGIN}; {}",
            limits.set_local(
                workers,
                db::idle_bound_ms(info, limits.statement_timeout_ms)
            )
        ))
        .await
        .map_err(|e| fatal(e, "starting the snapshot transaction"))?;
    let lockable: Vec<String> = catalog
        .relations
        .iter()
        .filter(|r| matches!(r.kind.as_str(), "r" | "p" | "m" | "v"))
        .map(|r| ident::quote_qualified(&r.schema, &r.name))
        .collect();
    if !lockable.is_empty() {
        progress::emit(Event::Phase("lock"));
        exporter
            .batch_execute(&format!(
                "LOCK TABLE {} IN ACCESS SHARE MODE",
                lockable.join(", ")
            ))
            .await
            .map_err(|e| {
                fatal(
                    e,
                    "taking ACCESS SHARE locks on the relations read (another session holds a \
                     conflicting lock; retry, or raise settings.lock_timeout)",
                )
            })?;
    }
    progress::emit(Event::Phase("export snapshot"));
    let row = exporter
        .query_one(sql::SNAPSHOT_EXPORT.sql, &[])
        .await
        .map_err(|e| fatal(e, "exporting the snapshot"))?;
    let origin = origin_from_row(&row).map_err(|e| fatal(e, "reading the snapshot id"))?;
    let snapshot_id = &origin.0;
    if !snapshot_id
        .chars()
        .all(|c| c.is_ascii_hexdigit() || c == '-')
    {
        return Err(Attempt::Fatal(DbFailure::message_only(format!(
            "unexpected snapshot id `{snapshot_id}`"
        ))));
    }
    crate::trace!("snapshot {snapshot_id} exported");
    Ok(origin)
}

/// Worker `w` of `workers`: a pooled connection that imports the exported snapshot and runs
/// probes from the shared queue until it is empty. A lost connection (or a snapshot that is
/// gone, 22023) is a retry of the whole capture.
fn spawn_worker(
    w: usize,
    workers: usize,
    pool: &deadpool_postgres::Pool,
    info: &ConnInfo,
    snapshot_id: &str,
    limits: Limits,
    shared: &Shared,
) -> tokio::task::JoinHandle<Result<Vec<ProbeResult>, Attempt>> {
    let (pool, info, shared) = (pool.clone(), info.clone(), shared.clone());
    let snapshot_id = snapshot_id.to_string();
    tokio::spawn(async move {
        let client = db::pooled(&pool, &info).await.map_err(Attempt::Connect)?;
        let _cancel = Registered::new(&client);
        let import = format!(
            "{BEGIN}; SET TRANSACTION SNAPSHOT {}; {}",
            ident::quote_literal(&snapshot_id),
            limits.set_local(
                workers,
                db::idle_bound_ms(&info, limits.statement_timeout_ms)
            )
        );
        if let Err(e) = client.batch_execute(&import).await {
            let f = db::failure(
                &e,
                Some(format!("connection {w} importing snapshot {snapshot_id}")),
            );
            let lost = db::is_connection_lost(&e) || f.sqlstate.as_deref() == Some("22023");
            return Err(if lost {
                Attempt::Retry(f)
            } else {
                Attempt::Fatal(f)
            });
        }
        let out = work(
            (&info, limits),
            &client,
            &shared.probes,
            &shared.spec,
            &shared.queue,
            w,
            &shared.baselines,
        )
        .await;
        if client.is_closed() {
            return Err(Attempt::Retry(lost_mid_capture(&format!("connection {w}"))));
        }
        let _ = client.batch_execute("ROLLBACK").await;
        Ok(out)
    })
}

/// Wait for every worker, adding their results to `results`; the first failure, if any.
async fn join_workers(
    handles: Vec<tokio::task::JoinHandle<Result<Vec<ProbeResult>, Attempt>>>,
    results: &mut Vec<ProbeResult>,
) -> Option<Attempt> {
    let mut first_err = None;
    for h in handles {
        match h.await {
            Ok(Ok(mut r)) => results.append(&mut r),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(join) => {
                first_err.get_or_insert(Attempt::Fatal(DbFailure::message_only(format!(
                    "a capture worker stopped unexpectedly: {join}"
                ))));
            }
        }
    }
    first_err
}

fn lost_mid_capture(which: &str) -> DbFailure {
    DbFailure::message_only(format!(
        "{which} was lost in the middle of the capture (terminated by an administrator, or the \
         server restarted); the capture was started over {} times with a new snapshot and lost \
         a connection each time: check the server's log, then retry",
        MAX_ATTEMPTS - 1
    ))
}

/// Attempts of a whole capture when its snapshot cannot be shared or a connection is lost.
const MAX_ATTEMPTS: u32 = 3;

/// The order to run the probes in: longest first, so that the last probe to finish is a short
/// one (on N connections the capture then takes about total work / N instead of ending on one
/// long query started late).
///
/// A query's weight is the planner's estimate from `EXPLAIN` (all sent at once, so this costs
/// a couple of round trips; see [`plan_weight`]) plus a share for each row the client must
/// decode. Catalog facts weigh nothing. A query the planner rejects weighs the most: it runs
/// first and fails fast, and the plan's own estimate (relation sizes) orders what could not be
/// explained.
async fn order_by_estimate(client: &Client, probes: &[Probe], spec: &Spec) -> Vec<usize> {
    // Planner cost units per result row the client decodes and keeps (measured: about 3 µs a
    // row against about 70 cost units per ms of execution on the same machine).
    const COST_PER_ROW: f64 = 0.2;
    let explains = probes.iter().map(|p| async move {
        match &p.kind {
            ProbeKind::Query { sql, .. } | ProbeKind::Rows { sql, .. } => Some(
                explain(client, sql)
                    .await
                    .and_then(|json| plan_weight(&json)),
            ),
            _ => None,
        }
    });
    let ok = client.batch_execute(&ESTIMATE.open()).await.is_ok();
    let estimates = if ok {
        futures_util::future::join_all(explains).await
    } else {
        vec![None; probes.len()]
    };
    if ok {
        // An EXPLAIN that failed aborted the savepoint; either way it leaves nothing behind.
        let _ = client.batch_execute(&ESTIMATE.discard()).await;
    }
    let weight = |i: usize| -> (u8, f64) {
        match (&probes[i].kind, &estimates[i]) {
            (ProbeKind::Query { .. } | ProbeKind::Rows { .. }, Some(Some((cost, rows)))) => {
                (1, cost + rows * COST_PER_ROW)
            }
            (ProbeKind::Query { .. } | ProbeKind::Rows { .. }, Some(None)) => (2, 0.0),
            (ProbeKind::ViewsQueryable { .. }, _) => (0, 1.0),
            _ => (0, probes[i].cost),
        }
    };
    // The progress bar's weights: the planner's estimate, 1 for a probe without one.
    progress::emit(Event::Planned {
        probes: (0..probes.len())
            .map(|i| {
                let w = match (&probes[i].kind, &estimates[i]) {
                    (ProbeKind::Query { .. }, Some(Some((cost, rows)))) => {
                        cost + rows * COST_PER_ROW
                    }
                    _ => 1.0,
                };
                (check_names(spec, &probes[i]), w.max(1.0))
            })
            .collect(),
    });
    let mut order: Vec<usize> = (0..probes.len()).collect();
    order.sort_by(|&a, &b| {
        let (wa, wb) = (weight(a), weight(b));
        wb.0.cmp(&wa.0)
            .then(wb.1.total_cmp(&wa.1))
            .then(probes[b].cost.total_cmp(&probes[a].cost))
            .then(a.cmp(&b))
    });
    order
}

/// `EXPLAIN (FORMAT JSON) sql`, as text; `None` when the planner rejects it. Extended
/// protocol, like the probe itself: one statement, never a script.
async fn explain(client: &Client, sql: &str) -> Option<String> {
    let rows = client
        .query(&format!("EXPLAIN (FORMAT JSON) {sql}"), &[])
        .await
        .ok()?;
    let PlanJson(json) = rows.first()?.try_get(0).ok()?;
    Some(json)
}

/// The top node of an `EXPLAIN (FORMAT JSON)` plan.
fn plan_root(json: &str) -> Option<serde_json::Value> {
    let mut value: serde_json::Value = serde_json::from_str(json).ok()?;
    Some(value.get_mut(0)?.get_mut("Plan")?.take())
}

/// A plan node's children.
fn plan_children(node: &serde_json::Value) -> &[serde_json::Value] {
    node.get("Plans")
        .and_then(serde_json::Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Every node of a plan, outermost first.
fn plan_nodes(root: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut nodes = Vec::new();
    let mut stack = vec![root];
    while let Some(node) = stack.pop() {
        nodes.push(node);
        stack.extend(plan_children(node).iter().rev());
    }
    nodes
}

/// A node's name as text `EXPLAIN` prints it: "Aggregate", "Hash Anti Join", "Index Only Scan".
fn node_name(node: &serde_json::Value) -> String {
    let kind = node.get("Node Type").and_then(|t| t.as_str()).unwrap_or("");
    match node.get("Join Type").and_then(|t| t.as_str()) {
        Some(join) if join != "Inner" => {
            format!("{} {join} Join", kind.strip_suffix(" Join").unwrap_or(kind))
        }
        _ => kind.to_string(),
    }
}

/// `EXPLAIN (FORMAT JSON)` output as text (tokio-postgres reads `json` into no std type).
struct PlanJson(String);

impl<'a> tokio_postgres::types::FromSql<'a> for PlanJson {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(PlanJson(std::str::from_utf8(raw)?.to_string()))
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        *ty == tokio_postgres::types::Type::JSON
    }
}

/// Hash tables with at least this many entries outgrow the CPU caches.
const BIG_HASH: f64 = 100_000.0;
/// Extra cost units per row hashed into a big aggregate (measured at 10M rows into 1M groups:
/// about 1.1 µs a row, against about 70 cost units per ms).
const BIG_AGG_PER_ROW: f64 = 0.08;
/// Extra cost units per row probing a big hash join (measured at 10M rows against 1M: about
/// 0.7 µs a row more than against 1,000).
const BIG_JOIN_PER_ROW: f64 = 0.05;

/// `(weight, rows)` of a plan from `EXPLAIN (FORMAT JSON)`: the planner's total cost, plus what
/// its cost model leaves out, plus the result rows.
///
/// PostgreSQL costs every hash probe the same whatever the size of the table: in a hash table
/// of a million entries nearly every probe misses the CPU caches and takes several times as
/// long. Measured at 10M rows, a view that aggregates into 1M groups ran 4x longer than the
/// planner's cost says relative to a scan with many aggregates, and so was started last and
/// ran alone at the end. Big hash aggregates and big hash joins weigh extra per input row.
fn plan_weight(json: &str) -> Option<(f64, f64)> {
    let plan = plan_root(json)?;
    let rows_of = |n: &serde_json::Value| n.get("Plan Rows").and_then(serde_json::Value::as_f64);
    let mut extra = 0.0;
    for node in plan_nodes(&plan) {
        let child = |relationship: &str| {
            plan_children(node)
                .iter()
                .find(|c| {
                    c.get("Parent Relationship").and_then(|r| r.as_str()) == Some(relationship)
                })
                .and_then(rows_of)
        };
        let node_type = node.get("Node Type").and_then(|t| t.as_str());
        let strategy = node.get("Strategy").and_then(|t| t.as_str());
        match (node_type, strategy) {
            (Some("Aggregate"), Some("Hashed" | "Mixed"))
                if rows_of(node).unwrap_or(0.0) >= BIG_HASH =>
            {
                extra += child("Outer").unwrap_or(0.0) * BIG_AGG_PER_ROW;
            }
            (Some("Hash Join"), _) if child("Inner").unwrap_or(0.0) >= BIG_HASH => {
                extra += child("Outer").unwrap_or(0.0) * BIG_JOIN_PER_ROW;
            }
            _ => {}
        }
    }
    let cost = plan.get("Total Cost").and_then(serde_json::Value::as_f64)?;
    Some((cost + extra, rows_of(&plan)?))
}

/// Build the snapshot record from a finished capture.
#[allow(clippy::too_many_arguments)]
fn snapshot_of(
    info: &ConnInfo,
    spec: &Spec,
    naming: &Naming,
    catalog: &Catalog,
    origin: OriginParts,
    checks: Vec<CheckCapture>,
    connections: usize,
    started: Instant,
) -> Snapshot {
    let (snapshot_id, lsn, in_recovery, server_version, database, captured_at) = origin;
    let sectioned = checks
        .iter()
        .any(|c| matches!(c.outcome, Outcome::Streamed(_)));
    Snapshot {
        format: if sectioned {
            Snapshot::FORMAT_SECTIONS
        } else {
            Snapshot::FORMAT
        },
        tool: format!("migval {}", env!("CARGO_PKG_VERSION")),
        origin: Origin {
            target: info.redacted(),
            database,
            server_version,
            snapshot_id,
            lsn,
            in_recovery,
            captured_at,
            connections,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        },
        spec: SpecCopy {
            path: spec.path.clone(),
            sha256: spec.sha256.clone(),
            text: spec.text.clone(),
        },
        renames: if naming.after {
            naming.renames().pairs()
        } else {
            Vec::new()
        },
        catalog: catalog.to_map(),
        checks,
        schema: None,
    }
}

/// Capture on `client` inside the transaction it has open (a rehearsal: the migration's
/// uncommitted changes are visible only there, so the probes run one after another on this
/// connection). Settings and probes sit in a savepoint that is rolled back afterwards, so the
/// transaction continues exactly as it was.
///
/// The probes run read-only, like every other capture: `SET LOCAL transaction_read_only = on`
/// inside the savepoint makes PostgreSQL refuse a write of a custom query (a data-modifying
/// CTE, `nextval()`, a volatile function that writes) with SQLSTATE 25006, instead of running
/// it where only the savepoint would undo it (and a sequence never rolls back). PostgreSQL lets
/// a subtransaction turn read-only on but not off again; rolling back to the savepoint restores
/// the migration transaction's read-write mode, so it can still COMMIT.
///
/// ```text
///   BEGIN (read write) ... migration ...
///     SAVEPOINT migval_capture; SET LOCAL transaction_read_only = on; SET LOCAL timeouts
///       probes (each under its own savepoint)
///     ROLLBACK TO SAVEPOINT migval_capture; RELEASE       -> read write again
///   COMMIT | ROLLBACK
/// ```
pub async fn capture_in_transaction(
    client: &Client,
    info: &ConnInfo,
    spec: &Spec,
    naming: &Naming,
    limits: Limits,
) -> Result<Snapshot, CaptureError> {
    let started = Instant::now();
    let fatal = |e: tokio_postgres::Error, what: &str| {
        CaptureError::Snapshot(db::failure(&e, Some(what.into())))
    };
    let Preflight { catalog, absent } = preflight::run(client, spec, naming).await?;
    let probes = plan::plan(spec, naming, &catalog, &absent);
    let row = client
        .query_one(sql::TRANSACTION_ORIGIN.sql, &[])
        .await
        .map_err(|e| fatal(e, "identifying the transaction"))?;
    let origin = origin_from_row(&row).map_err(|e| fatal(e, "identifying the transaction"))?;
    client
        .batch_execute(&format!(
            "{}; {}; {}",
            CAPTURE.open(),
            SetLocal::new().read_only().sql(),
            limits.set_local(1, db::idle_bound_ms(info, limits.statement_timeout_ms))
        ))
        .await
        .map_err(|e| fatal(e, "starting the capture savepoint"))?;
    let schema = match schema_scope(spec, &catalog) {
        Some(scope) => Some(read_schema(client, scope).await),
        None => None,
    };
    // One connection, plan order: no EXPLAIN round trips inside the migration's transaction.
    progress::emit(Event::Planned {
        probes: probes.iter().map(|p| (check_names(spec, p), 1.0)).collect(),
    });
    progress::emit(Event::Phase("probes"));
    let queue = Mutex::new((0..probes.len()).collect::<VecDeque<usize>>());
    let none = Baselines::default();
    let results = work((info, limits), client, &probes, spec, &queue, 0, &none).await;
    client
        .batch_execute(&CAPTURE.discard())
        .await
        .map_err(|e| fatal(e, "ending the capture savepoint"))?;
    // The migration's transaction must be read-write again (it may be committed next).
    let mode: String = client
        .query_one("SHOW transaction_read_only", &[])
        .await
        .and_then(|r| r.try_get(0))
        .map_err(|e| fatal(e, "checking the transaction's mode after the capture"))?;
    if mode != "off" {
        return Err(CaptureError::Snapshot(DbFailure::message_only(format!(
            "the migration's transaction stayed read-only after the capture \
             (transaction_read_only = {mode}); nothing is committed"
        ))));
    }
    let captures = assemble(spec, &probes, results, &absent, &none);
    let mut snap = snapshot_of(info, spec, naming, &catalog, origin, captures, 1, started);
    snap.schema = schema;
    Ok(snap)
}

/// Per check, in spec order: its table (sorted by key in `work`) or its failure, and its SQL.
fn assemble(
    spec: &Spec,
    probes: &[Probe],
    results: Vec<ProbeResult>,
    absent: &BTreeMap<usize, Absence>,
    baselines: &Baselines,
) -> Vec<CheckCapture> {
    // Per check: its parts (a check split over several fused scans has one per scan, see
    // `plan::MAX_SELECT`), or the first failure of a probe it reads from.
    let mut parts: Vec<Vec<(usize, Table)>> = vec![Vec::new(); spec.checks.len()];
    let mut ranges: Vec<Vec<(Option<rowstream::Range>, rowstream::Streamed)>> =
        (0..spec.checks.len()).map(|_| Vec::new()).collect();
    // Large grouped and keyed custom results, streamed to a section (`keystream`).
    let mut keyed: Vec<Option<Section>> = vec![None; spec.checks.len()];
    let mut failed: Vec<Option<DbFailure>> = vec![None; spec.checks.len()];
    let mut sql_of: Vec<Vec<String>> = vec![Vec::new(); spec.checks.len()];
    for p in probes.iter() {
        for &c in &p.checks {
            sql_of[c].extend(p.sql_text());
        }
    }
    for (pi, r, setting) in results {
        if let Some(setting) = setting {
            // The audit trail shows the statements as they ran.
            for &c in &probes[pi].checks {
                sql_of[c].insert(0, format!("{setting};"));
            }
        }
        match r {
            Ok(list) => {
                for (j, (c, got)) in list.into_iter().enumerate() {
                    let t = match got {
                        Got::Table(t) => t,
                        Got::Rows(range, got) => {
                            ranges[c].push((range, *got));
                            continue;
                        }
                        // A check split over several scans is joined in memory.
                        Got::Section(sec) if outputs_of(probes, c) > 1 => {
                            match crate::section::to_table(&sec, &spec.checks[c].name) {
                                Ok(t) => t,
                                Err(e) => {
                                    failed[c].get_or_insert_with(|| {
                                        DbFailure::message_only(e.to_string())
                                    });
                                    continue;
                                }
                            }
                        }
                        Got::Section(sec) => {
                            keyed[c] = Some(sec);
                            continue;
                        }
                    };
                    let part = match &probes[pi].kind {
                        ProbeKind::Query { outputs, .. } => match outputs.get(j) {
                            Some(Output::Columns { part, .. }) => *part,
                            _ => 0,
                        },
                        _ => 0,
                    };
                    parts[c].push((part, t));
                }
            }
            Err(f) => {
                for &c in &probes[pi].checks {
                    failed[c].get_or_insert_with(|| f.clone());
                }
            }
        }
    }
    let tables: Vec<Option<Result<Table, DbFailure>>> = parts
        .into_iter()
        .zip(failed)
        .map(|(p, f)| match f {
            Some(f) => Some(Err(f)),
            None => join_parts(p),
        })
        .collect();
    let mut sections = ranges
        .into_iter()
        .zip(keyed)
        .enumerate()
        .map(|(c, (parts, keyed))| {
            let name = spec.checks.get(c).map_or("", |c| c.name.as_str());
            match keyed {
                Some(sec) => Some(Ok(sec)),
                None => {
                    (!parts.is_empty()).then(|| rowstream::assemble(parts, name, baselines.get(c)))
                }
            }
        })
        .collect::<Vec<_>>()
        .into_iter();
    spec
        .checks
        .iter()
        .zip(tables)
        .zip(sql_of)
        .enumerate()
        .map(|(i, ((check, t), sql))| {
            let section = sections.next().flatten();
            let outcome = match t {
                _ if absent.contains_key(&i) => {
                    Outcome::Absent(absent[&i].clone())
                }
                // Checked for duplicate keys (and a rows key for NULLs) while it streamed
                // (`rowstream`, `keystream`).
                None if section.is_some() => match section {
                    Some(Ok(sec)) => Outcome::Streamed(sec),
                    Some(Err(f)) => Outcome::Failed(f),
                    None => unreachable!("matched on is_some"),
                },
                Some(Ok(table))
                    if matches!(check.kind, crate::spec::CheckKind::Rows(_))
                        && (0..table.len()).any(|r| table.key(r).iter().any(Value::is_null)) =>
                {
                    Outcome::Failed(DbFailure::message_only(
                        "a key column has NULLs: a rows key must identify every row (use the primary key or a unique NOT NULL column)",
                    ))
                }
                // Sorted by key already (in `work`).
                Some(Ok(table)) => {
                    match duplicate_key(&table) {
                        Some(k) if table.key_len == 0 => Outcome::Failed(DbFailure::message_only(format!(
                            "the query returned {} rows ({k}): without `key` a custom query must return one row; declare the key columns (key = [\"...\"])",
                            table.len()
                        ))),
                        Some(k) => Outcome::Failed(DbFailure::message_only(format!(
                            "the key columns do not identify rows uniquely: key ({k}) appears more than once; declare more key columns"
                        ))),
                        None => Outcome::Captured(table),
                    }
                }
                Some(Err(f)) => Outcome::Failed(f),
                None => Outcome::Failed(DbFailure::message_only("the check was not run (its connection was lost)")),
            };
            CheckCapture {
                name: check.name.clone(),
                fingerprint: check.fingerprint.clone(),
                sql,
                outcome,
            }
        })
        .collect()
}

/// How many outputs of all probes feed check `c` (more than one: a check split over scans).
fn outputs_of(probes: &[Probe], c: usize) -> usize {
    probes
        .iter()
        .filter_map(|p| match &p.kind {
            ProbeKind::Query { outputs, .. } => Some(outputs),
            _ => None,
        })
        .flatten()
        .filter(|o| match o {
            Output::Columns { check, .. } | Output::Custom { check, .. } => *check == c,
        })
        .count()
}

/// A check's table from its parts, in part order: one part is the table; several (a check
/// with more metrics than one scan selects) are put side by side: one-row tables as they are,
/// grouped ones row by row on the group key (each part sorted by key already, in `work`; read
/// in one snapshot, every part has the same groups).
///
/// ```text
///   part 0: key | m1 .. m997      part 1: key | m998 .. m1700     ->  key | m1 .. m1700
///           a   | ...                     a   | ...                     a   | ...
/// ```
fn join_parts(mut parts: Vec<(usize, Table)>) -> Option<Result<Table, DbFailure>> {
    if parts.len() <= 1 {
        return parts.pop().map(|(_, t)| Ok(t));
    }
    parts.sort_by_key(|(part, _)| *part);
    let key_len = parts[0].1.key_len;
    let rows = parts[0].1.len();
    let first = &parts[0].1;
    for (_, t) in &parts[1..] {
        let same_keys = t.key_len == key_len
            && t.len() == rows
            && (0..rows).all(|r| t.key(r).iter().zip(first.key(r)).all(|(a, b)| a.same(b)));
        if !same_keys || (key_len == 0 && rows != 1) {
            return Some(Err(DbFailure::message_only(format!(
                "a check split over several scans (more metrics than one query may select) got \
                 parts that do not line up: {} and {} rows, {} and {} key columns. The group key \
                 must read the same in every scan of one snapshot (a volatile expression such \
                 as random() does not); split the check's metrics over several checks",
                rows,
                t.len(),
                key_len,
                t.key_len
            ))));
        }
    }
    let mut columns = first.columns[..key_len].to_vec();
    for (_, t) in &parts {
        columns.extend_from_slice(&t.columns[key_len..]);
    }
    let mut whole = Table::new(columns, key_len);
    whole.cells.reserve(rows * whole.width());
    for r in 0..rows {
        whole.cells.extend_from_slice(first.key(r));
        for (_, t) in &parts {
            whole.cells.extend_from_slice(&t.row(r)[key_len..]);
        }
    }
    Some(Ok(whole))
}

fn duplicate_key(t: &Table) -> Option<String> {
    if t.key_len == 0 {
        return (t.len() > 1).then(|| "<no key>".to_string());
    }
    (1..t.len()).find_map(|i| {
        let (a, b) = (t.key(i - 1), t.key(i));
        a.iter().zip(b).all(|(x, y)| x.same(y)).then(|| {
            b.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        })
    })
}

/// Pull probes from the queue until it is empty.
async fn work(
    (info, limits): (&ConnInfo, Limits),
    client: &Client,
    probes: &[Probe],
    spec: &Spec,
    queue: &Mutex<VecDeque<usize>>,
    worker: usize,
    baselines: &Baselines,
) -> Vec<ProbeResult> {
    let mut out = Vec::new();
    let mut sorting = Vec::new();
    loop {
        let next = match queue.lock() {
            Ok(mut q) => q.pop_front(),
            Err(_) => None,
        };
        let Some(i) = next else { break };
        let probe = &probes[i];
        let context = Some(format!(
            "check `{}` on connection {worker}",
            check_names(spec, probe)
        ));
        if let Err(e) = client.batch_execute(&PROBE.open()).await {
            out.push((i, Err(db::failure(&e, context)), None));
            if db::is_connection_lost(&e) {
                break;
            }
            continue;
        }
        progress::emit(Event::ProbeStarted {
            probe: i,
            connection: worker,
        });
        let started = Instant::now();
        let setting = match &probe.kind {
            ProbeKind::Query {
                sql,
                orphans: Some(rels),
                ..
            } => orphan_plan(client, sql, rels).await,
            _ => None,
        };
        if let Some(setting) = setting {
            crate::trace!("connection {worker}: probe {i} runs under `{setting}`");
        }
        // Bounded client-side: see db::within.
        let bound = db::answer_bound(limits.statement_timeout_ms);
        let idle = db::idle_bound(info, limits.statement_timeout_ms);
        let r = db::within(bound, idle, run_probe(client, probe, spec, baselines))
            .await
            .unwrap_or_else(|no_answer| Err(no_answer.failure(None)));
        crate::trace!(
            "connection {worker}: probe {i} ({}) took {} ms",
            probe
                .checks
                .first()
                .map_or("", |&c| spec.checks[c].name.as_str()),
            started.elapsed().as_millis()
        );
        progress::emit(Event::ProbeFinished {
            probe: i,
            connection: worker,
            elapsed: started.elapsed(),
            ok: r.is_ok(),
        });
        // A probe only reads: rolling back to its savepoint loses nothing and ends any
        // planner setting it ran under (SET LOCAL would otherwise last to the end of the
        // transaction, through the probes after it).
        let end = if r.is_ok() {
            PROBE.discard()
        } else {
            PROBE.rollback()
        };
        let ended = client.batch_execute(&end).await;
        match r {
            // Sort off the async threads while this connection runs its next probe.
            Ok(tables) => sorting.push((
                i,
                setting,
                tokio::task::spawn_blocking(move || {
                    let mut tables = tables;
                    for (_, got) in &mut tables {
                        if let Got::Table(t) = got {
                            t.sort_by_key();
                        }
                    }
                    tables
                }),
            )),
            Err(mut f) => {
                f.context = context;
                out.push((i, Err(f), setting));
            }
        }
        if ended.is_err() {
            break;
        }
    }
    for (i, setting, h) in sorting {
        out.push((
            i,
            h.await
                .map_err(|e| DbFailure::message_only(format!("sorting the result failed: {e}"))),
            setting,
        ));
    }
    out
}

/// The names of the checks a probe feeds, joined by "`, `".
fn check_names(spec: &Spec, probe: &Probe) -> String {
    probe
        .checks
        .iter()
        .filter_map(|&c| spec.checks.get(c).map(|c| c.name.as_str()))
        .collect::<Vec<_>>()
        .join("`, `")
}

/// The planner setting an orphan count runs under.
const ORDERED_MERGE: &str = "SET LOCAL enable_hashjoin = off";

/// Choose how an orphan count reads its tables; returns the setting applied, if any, which
/// lasts until the probe's savepoint is rolled back.
///
/// PostgreSQL counts orphans with a hash anti join by default: it builds a hash table of the
/// whole parent key and probes it once per child row. With a million parents that table
/// outgrows the CPU caches and each probe is a cache miss (measured at 10M children and 1M
/// parents: 7.5 s on one backend). When both sides have a btree index on the join columns,
/// the same count can be a merge anti join over two index-only scans, both read in key order
/// (1.6 s there). It is taken only when
///
/// ```text
///   default plan has a Hash Anti Join                 (else the planner chose well already)
///   child and parent >= 90% all-visible, <= 10% of    (else index-only scans visit the heap)
///   rows changed since the last VACUUM
///   plan without hash joins = Merge Anti Join over Index Only Scans, with no Sort
/// ```
///
/// Anything unexpected (an EXPLAIN error, a missing relation) leaves the default plan. The
/// result is the same either way: only the plan differs, and the audit trail shows the setting.
async fn orphan_plan(client: &Client, sql: &str, rels: &(String, String)) -> Option<&'static str> {
    client.batch_execute(&PLAN.open()).await.ok()?;
    let chosen = async {
        let default = plan_node_names(&explain(client, sql).await?)?;
        if !default.iter().any(|n| n == "Hash Anti Join") {
            return None;
        }
        for rel in [&rels.0, &rels.1] {
            let row = client
                .query_opt(sql::RELATION_ALL_VISIBLE.sql, &[rel])
                .await
                .ok()??;
            let pages: i32 = row.try_get("pages").ok()?;
            let visible: i32 = row.try_get("all_visible").ok()?;
            let rows: f64 = row.try_get("rows").ok()?;
            let changed: i64 = row.try_get("changed").ok()?;
            if !mostly_all_visible(pages, visible, rows, changed) {
                return None;
            }
        }
        client.batch_execute(ORDERED_MERGE).await.ok()?;
        let forced = plan_node_names(&explain(client, sql).await?)?;
        ordered_merge_only(&forced).then_some(ORDERED_MERGE)
    }
    .await;
    let end = match chosen {
        Some(_) => PLAN.release(),
        None => PLAN.discard(),
    };
    client.batch_execute(&end).await.ok()?;
    chosen
}

/// Whether an index-only scan of a table would rarely visit its heap: at least 90% of its
/// pages all-visible at the last VACUUM, and at most 10% of its rows changed since (pg_class
/// is only updated by VACUUM and ANALYZE, so a big backfill since then must count against it).
fn mostly_all_visible(pages: i32, visible: i32, rows: f64, changed: i64) -> bool {
    #[allow(clippy::cast_precision_loss)] // a row count far beyond 2^53 is still "many"
    let changed = changed as f64;
    pages > 0 && f64::from(visible) >= 0.9 * f64::from(pages) && rows > 0.0 && changed <= 0.1 * rows
}

/// The node names of a JSON plan, outermost first ("Aggregate", "Hash Anti Join", ...).
fn plan_node_names(json: &str) -> Option<Vec<String>> {
    let plan = plan_root(json)?;
    Some(plan_nodes(&plan).into_iter().map(node_name).collect())
}

/// A plan that is one merge anti join over index-only scans, with nothing sorted or hashed.
fn ordered_merge_only(nodes: &[String]) -> bool {
    let allowed = |n: &str| {
        n.contains("Index Only Scan")
            || n == "Merge Anti Join"
            || n == "Materialize"
            || n.ends_with("Aggregate")
            || n.starts_with("Gather")
    };
    nodes.iter().filter(|n| *n == "Merge Anti Join").count() == 1
        && nodes
            .iter()
            .filter(|n| n.contains("Index Only Scan"))
            .count()
            >= 2
        && nodes.iter().all(|n| allowed(n))
}

async fn run_probe(
    client: &Client,
    probe: &Probe,
    spec: &Spec,
    baselines: &Baselines,
) -> Result<Vec<(usize, Got)>, DbFailure> {
    let tables = |list: Vec<(usize, Table)>| {
        list.into_iter()
            .map(|(c, t)| (c, Got::Table(t)))
            .collect::<Vec<_>>()
    };
    match &probe.kind {
        ProbeKind::Query {
            sql,
            outputs,
            orphans: None,
        } if super::keystream::streams(outputs) => {
            super::keystream::capture(client, sql, outputs).await
        }
        ProbeKind::Query { sql, outputs, .. } => run_query(client, sql, outputs).await.map(tables),
        ProbeKind::Rows {
            check,
            sql,
            keys,
            range,
            ..
        } => {
            let name = spec.checks.get(*check).map_or("", |c| c.name.as_str());
            let against = baselines.get(*check);
            let got = rowstream::capture(client, sql, keys, name, range.as_ref(), against).await?;
            Ok(vec![(*check, Got::Rows(range.clone(), Box::new(got)))])
        }
        other => run_small_probe(client, other).await.map(tables),
    }
}

/// Catalog facts and view checks: a few rows, in memory.
async fn run_small_probe(
    client: &Client,
    kind: &ProbeKind,
) -> Result<Vec<(usize, Table)>, DbFailure> {
    let fail = |e: tokio_postgres::Error| db::failure(&e, None);
    match kind {
        ProbeKind::Query { .. } | ProbeKind::Rows { .. } => Ok(Vec::new()),
        ProbeKind::Fact {
            check,
            query,
            params,
            attributes,
        } => {
            let boxed: Vec<Box<dyn ToSql + Sync + Send>> = params
                .iter()
                .map(|p| -> Box<dyn ToSql + Sync + Send> {
                    match p {
                        FactParam::Schemas(s) => Box::new(s.clone()),
                        FactParam::Text(t) => Box::new(t.clone()),
                        FactParam::List(l) => Box::new(l.clone()),
                    }
                })
                .collect();
            let refs: Vec<&(dyn ToSql + Sync)> = boxed
                .iter()
                .map(|b| b.as_ref() as &(dyn ToSql + Sync))
                .collect();
            let rows = client.query(query.sql, &refs).await.map_err(fail)?;
            let mut t = Table::new(
                attributes
                    .iter()
                    .map(|(n, k)| Column {
                        name: (*n).to_string(),
                        kind: *k,
                    })
                    .collect(),
                0,
            );
            // Each attribute read by its name in the query's `-- Returns:` header.
            for (i, (name, kind)) in attributes.iter().enumerate() {
                let v = match rows.first() {
                    None if i == 0 => Value::Bool(false),
                    None => Value::Null,
                    Some(row) => match kind {
                        Kind::Bool => row
                            .try_get::<_, Option<bool>>(*name)
                            .map_err(fail)?
                            .map_or(Value::Null, Value::Bool),
                        _ => row
                            .try_get::<_, Option<String>>(*name)
                            .map_err(fail)?
                            .map_or(Value::Null, |t| Value::Text(t.into())),
                    },
                };
                t.cells.push(v);
            }
            Ok(vec![(*check, t)])
        }
        ProbeKind::Sizes {
            check,
            labels,
            schemas,
            names,
        } => {
            let rows = client
                .query(sql::RELATION_SIZES.sql, &[labels, schemas, names])
                .await
                .map_err(fail)?;
            let mut columns = vec![Column {
                name: "table".into(),
                kind: Kind::Text,
            }];
            columns.extend(SizePart::ALL.iter().map(|p| Column {
                name: p.label().into(),
                kind: Kind::Int,
            }));
            let mut t = Table::new(columns, 1);
            for row in &rows {
                let label: String = row.try_get("table").map_err(fail)?;
                t.cells.push(Value::Text(label.into()));
                for part in SizePart::ALL {
                    let column = match part {
                        SizePart::Table => "table_bytes",
                        SizePart::Indexes => "index_bytes",
                        SizePart::Toast => "toast_bytes",
                        SizePart::Total => "total_bytes",
                    };
                    let bytes: Option<i64> = row.try_get(column).map_err(fail)?;
                    t.cells.push(bytes.map_or(Value::Null, Value::Int));
                }
            }
            Ok(vec![(*check, t)])
        }
        ProbeKind::ViewsQueryable { check, views } => {
            let mut t = Table::new(
                vec![
                    Column {
                        name: "view".into(),
                        kind: Kind::Text,
                    },
                    Column {
                        name: "queryable".into(),
                        kind: Kind::Bool,
                    },
                    Column {
                        name: "error".into(),
                        kind: Kind::Text,
                    },
                ],
                1,
            );
            for (label, target) in views {
                let (ok, err) = match target {
                    None => (false, Value::Text("does not exist".into())),
                    Some(q) => {
                        client.batch_execute(&VIEW.open()).await.map_err(fail)?;
                        match client
                            .query(&format!("SELECT 1 FROM {q} LIMIT 1"), &[])
                            .await
                        {
                            Ok(_) => {
                                client.batch_execute(&VIEW.release()).await.map_err(fail)?;
                                (true, Value::Null)
                            }
                            Err(e) => {
                                client.batch_execute(&VIEW.rollback()).await.map_err(fail)?;
                                (false, Value::Text(db::failure(&e, None).to_string().into()))
                            }
                        }
                    }
                };
                t.cells
                    .extend([Value::Text(label.as_str().into()), Value::Bool(ok), err]);
            }
            Ok(vec![(*check, t)])
        }
    }
}

/// For a query wrapped as `SELECT ... FROM (query) AS q(c1, c2, ...)`: the aliases, and the
/// select list that reads each column natively where a decoder exists and as `::text` where
/// none does.
pub(super) fn text_wrapped(native: &[Option<Decoder>]) -> (Vec<String>, Vec<String>) {
    let aliases: Vec<String> = (1..=native.len()).map(|i| format!("c{i}")).collect();
    let select = native
        .iter()
        .zip(&aliases)
        .map(|(d, a)| match d {
            Some(_) => format!("q.{a}"),
            None => format!("q.{a}::text"),
        })
        .collect();
    (aliases, select)
}

/// A prepared query's column names, and the exact native decoder of each (`None`: read it
/// as text).
pub(super) fn columns_of(stmt: &tokio_postgres::Statement) -> (Vec<String>, Vec<Option<Decoder>>) {
    stmt.columns()
        .iter()
        .map(|c| (c.name().to_string(), Decoder::for_type(c.type_())))
        .unzip()
}

/// Prepare, pick a decoder per column (casting to text where there is no exact native one),
/// stream the rows and split them into the outputs' tables.
async fn run_query(
    client: &Client,
    sql: &str,
    outputs: &[Output],
) -> Result<Vec<(usize, Table)>, DbFailure> {
    let fail = |e: tokio_postgres::Error| db::failure(&e, None);
    let inner = client.prepare(sql).await.map_err(fail)?;
    let (names, native) = columns_of(&inner);
    let (stmt, decoders) = if native.iter().all(Option::is_some) {
        (inner, native.into_iter().flatten().collect::<Vec<_>>())
    } else {
        let (aliases, select) = text_wrapped(&native);
        let wrapped = format!(
            "SELECT {} FROM ({sql}\n) AS q({})",
            select.join(", "),
            aliases.join(", ")
        );
        let stmt = client.prepare(&wrapped).await.map_err(fail)?;
        let decoders = native.iter().map(|d| d.unwrap_or(Decoder::Text)).collect();
        (stmt, decoders)
    };

    let mut plans = resolve_outputs(&names, &decoders, outputs)?;

    let params: Vec<&(dyn ToSql + Sync)> = Vec::new();
    let stream = client.query_raw(&stmt, params).await.map_err(fail)?;
    let mut stream = std::pin::pin!(stream);
    while let Some(row) = stream.try_next().await.map_err(fail)? {
        if let [(_, k, v, t)] = plans.as_mut_slice() {
            // One output (the usual case): decode straight into its table.
            for &p in k.iter().chain(v.iter()) {
                t.cells
                    .push(decode::decode(&row, p, decoders[p]).map_err(fail)?);
            }
        } else {
            let mut cells = Vec::with_capacity(decoders.len());
            for (i, d) in decoders.iter().enumerate() {
                cells.push(decode::decode(&row, i, *d).map_err(fail)?);
            }
            for (_, k, v, t) in plans.iter_mut() {
                for &p in k.iter().chain(v.iter()) {
                    t.cells.push(cells[p].clone());
                }
            }
        }
    }
    Ok(plans.into_iter().map(|(c, _, _, t)| (c, t)).collect())
}

/// Where each output of a query goes: (check, key positions, value positions, its empty table
/// with the labels), the key columns first.
pub(super) type OutputPlan = (usize, Vec<usize>, Vec<usize>, Table);

/// Resolve a query's outputs against its result columns (`names`, as prepared, and their
/// decoders): a custom query's key columns by name, renamed columns relabelled.
pub(super) fn resolve_outputs(
    names: &[String],
    decoders: &[Decoder],
    outputs: &[Output],
) -> Result<Vec<OutputPlan>, DbFailure> {
    // Positions, not names: the select list is generated (fused probes), and its positions
    // are what `Output` records.
    let mut plans: Vec<OutputPlan> = Vec::new();
    for o in outputs {
        match o {
            Output::Columns {
                check, key, values, ..
            } => {
                let mut cols = Vec::new();
                for (pos, label) in key.iter().chain(values) {
                    cols.push(decoders[*pos].column(label));
                }
                plans.push((
                    *check,
                    key.iter().map(|(p, _)| *p).collect(),
                    values.iter().map(|(p, _)| *p).collect(),
                    Table::new(cols, key.len()),
                ));
            }
            Output::Custom {
                check,
                key,
                relabel,
            } => {
                let names: Vec<String> = names
                    .iter()
                    .map(|n| {
                        relabel
                            .iter()
                            .find(|(new, _)| new == n)
                            .map_or_else(|| n.clone(), |(_, old)| old.clone())
                    })
                    .collect();
                let mut seen = std::collections::HashSet::new();
                if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_str())) {
                    return Err(DbFailure::message_only(format!(
                        "the query returns two columns named `{dup}`; give each column its own name (AS ...)"
                    )));
                }
                let mut kpos = Vec::new();
                for k in key {
                    let pos = names.iter().position(|n| n == k).ok_or_else(|| {
                        DbFailure::message_only(format!(
                            "key column `{k}` is not in the query's result (it returns: {})",
                            names.join(", ")
                        ))
                    })?;
                    kpos.push(pos);
                }
                let vpos: Vec<usize> = (0..names.len()).filter(|p| !kpos.contains(p)).collect();
                let cols = kpos
                    .iter()
                    .chain(&vpos)
                    .map(|&p| decoders[p].column(&names[p]))
                    .collect();
                plans.push((*check, kpos, vpos, Table::new(cols, key.len())));
            }
        }
    }

    Ok(plans)
}

#[cfg(test)]
mod tests {
    use super::{mostly_all_visible, ordered_merge_only, plan_weight};

    /// `EXPLAIN (FORMAT JSON)` of an aggregate over a hash join, with the group count and the
    /// hashed side's rows given.
    fn plan(groups: f64, inner: f64) -> String {
        format!(
            r#"[{{"Plan": {{"Node Type": "Aggregate", "Strategy": "Hashed", "Total Cost": 1000.0,
                "Plan Rows": {groups}, "Plans": [
                {{"Node Type": "Hash Join", "Parent Relationship": "Outer", "Plan Rows": 1000000,
                  "Plans": [
                    {{"Node Type": "Seq Scan", "Parent Relationship": "Outer", "Plan Rows": 1000000}},
                    {{"Node Type": "Hash", "Parent Relationship": "Inner", "Plan Rows": {inner}}}
                ]}}]}}}}]"#
        )
    }

    #[test]
    fn big_hash_tables_weigh_more_than_the_planner_says() {
        let (small, rows) = plan_weight(&plan(1000.0, 1000.0)).unwrap();
        assert_eq!((small, rows), (1000.0, 1000.0));
        // A million groups: every input row of the aggregate weighs extra.
        let (agg, _) = plan_weight(&plan(1_000_000.0, 1000.0)).unwrap();
        assert_eq!(agg, 1000.0 + 1_000_000.0 * 0.08);
        // A million-row hash side: every probing row weighs extra.
        let (join, _) = plan_weight(&plan(1000.0, 1_000_000.0)).unwrap();
        assert_eq!(join, 1000.0 + 1_000_000.0 * 0.05);
        assert!(plan_weight("not json").is_none());
    }

    #[test]
    fn index_only_needs_a_vacuumed_table_with_few_changes_since() {
        assert!(mostly_all_visible(1000, 1000, 100_000.0, 0));
        assert!(mostly_all_visible(1000, 900, 100_000.0, 10_000));
        // Never vacuumed or analyzed, or mostly not all-visible.
        assert!(!mostly_all_visible(0, 0, -1.0, 0));
        assert!(!mostly_all_visible(1000, 899, 100_000.0, 0));
        // A backfill since the last VACUUM: pg_class still says all-visible.
        assert!(!mostly_all_visible(1000, 1000, 100_000.0, 10_001));
    }

    fn nodes(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn ordered_merge_is_index_only_with_nothing_sorted_or_hashed() {
        assert!(ordered_merge_only(&nodes(&[
            "Aggregate",
            "Merge Anti Join",
            "Index Only Scan using orders_customer_idx on orders c",
            "Index Only Scan using customers_pkey on customers p",
        ])));
        // Without hash joins PostgreSQL may sort a side instead: no better than the hash.
        assert!(!ordered_merge_only(&nodes(&[
            "Aggregate",
            "Merge Anti Join",
            "Sort",
            "Seq Scan on orders c",
            "Index Only Scan using customers_pkey on customers p",
        ])));
        // Or look up every child row in the parent's index.
        assert!(!ordered_merge_only(&nodes(&[
            "Aggregate",
            "Nested Loop Anti Join",
            "Seq Scan on orders c",
            "Index Only Scan using customers_pkey on customers p",
        ])));
        assert!(!ordered_merge_only(&nodes(&[
            "Aggregate",
            "Hash Anti Join",
            "Seq Scan on orders c",
            "Hash",
            "Seq Scan on customers p",
        ])));
    }
}
