//! Guarded migrations: run a migration script statement by statement inside one transaction,
//! capture the post-state inside that same transaction, compare, and only then decide.
//!
//! ```text
//!   baseline (its own consistent snapshot, or --baseline FILE)
//!   BEGIN
//!     per statement: SAVEPOINT; SET LOCAL lock_timeout, statement_timeout; run
//!                    lock timeout -> ROLLBACK TO SAVEPOINT, back off, retry (bounded);
//!                    a second connection asks pg_blocking_pids() who blocks while it waits
//!                    after it: the relation locks now held (for "ACCESS EXCLUSIVE held 1.2 s")
//!     capture the checks in this transaction (renames from [rename] + inferred from the file)
//!     [--rollback FILE: run it, capture again, compare with the baseline exactly]
//!   COMMIT only with --commit and a passing verdict; otherwise ROLLBACK
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, SimpleQueryMessage};

use super::capture::{self, CaptureError, Limits};
use super::compare;
use super::plan::Naming;
use super::script::{self, Statement, StatementKind, Wrapper};
use crate::db::conninfo::ConnInfo;
use crate::db::txn::{Savepoint, SetLocal};
use crate::db::{self, ConnectError};
use crate::model::{
    Blocker, CheckResult, DbFailure, LockHeld, MigrationSummary, Report, Snapshot, StatementRun,
    Status, Verdict,
};
use crate::spec::{CheckKind, Expect, Renames, Rule, Spec, Tolerance};
use crate::sql;

/// Each statement runs under this savepoint, so that a lock timeout undoes only that statement
/// before the retry.
const STATEMENT: Savepoint = Savepoint::new("migval_stmt");

/// Why the migration could not be attempted at all.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{0}")]
    Script(String),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Capture(#[from] Box<CaptureError>),
    #[error("{0}")]
    Db(DbFailure),
}

impl From<CaptureError> for MigrateError {
    fn from(e: CaptureError) -> Self {
        MigrateError::Capture(Box::new(e))
    }
}

/// A migration file, checked: the statements to run and the file's own BEGIN/COMMIT around
/// them, if it had one (not run: migval's transaction takes its place).
#[derive(Debug, Clone)]
pub struct Script {
    pub name: String,
    pub statements: Vec<Statement>,
    pub wrapper: Option<Wrapper>,
}

impl Script {
    /// Say in the report's migration summary what became of the file's own BEGIN/COMMIT (the
    /// banner keeps the short verdict line).
    fn annotate(&self, report: &mut Report) {
        if let (Some(w), Some(m)) = (&self.wrapper, report.migration.as_mut()) {
            m.mode = format!("{}; {}", m.mode, w.describe());
        }
    }
}

/// What to run and how.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The migration's files, run in this order in one transaction (at least one).
    pub scripts: Vec<Script>,
    /// The rollback's files, rehearsed in this order after the migration (none: no rehearsal).
    pub rollback: Vec<Script>,
    pub commit: bool,
    pub limits: Limits,
    /// Attempts after a lock timeout, per statement.
    pub lock_retries: u32,
}

/// The name of several files as one migration: `01_schema.sql + 02_data.sql`.
pub fn names(scripts: &[Script]) -> String {
    scripts
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(" + ")
}

/// Every statement of several files, in order.
fn all_statements(scripts: &[Script]) -> Vec<Statement> {
    scripts
        .iter()
        .flat_map(|s| s.statements.iter().cloned())
        .collect()
}

/// Run the files in order in the open transaction of `client`; stops at the first failing
/// statement, whose error names its file and its index there (the caller rolls back). With
/// several files every statement of the report carries its file's name.
async fn run_scripts(
    client: &Client,
    monitor: &Client,
    scripts: &[Script],
    plan: &Plan,
    summary: &mut MigrationSummary,
) -> Result<(), (DbFailure, String)> {
    let several = scripts.len() > 1;
    let mut clock = LockClock::new();
    for script in scripts {
        let file = several.then_some(script.name.as_str());
        let ran = run_statements_of(
            client,
            monitor,
            file,
            &script.statements,
            plan.limits,
            plan.lock_retries,
            summary,
            &mut clock,
        )
        .await;
        if let Err(f) = ran {
            return Err((f, script.name.clone()));
        }
    }
    clock.finish(summary);
    Ok(())
}

/// When each relation lock was first seen, from the first statement of the first file on: a
/// lock taken in `01_schema.sql` is held through `02_data.sql` too.
struct LockClock {
    started: Instant,
    first_seen: BTreeMap<(String, String), Duration>,
}

impl LockClock {
    fn new() -> LockClock {
        LockClock {
            started: Instant::now(),
            first_seen: BTreeMap::new(),
        }
    }

    /// The locks held now, strongest first, each with how long it has been held.
    fn finish(self, summary: &mut MigrationSummary) {
        let end = self.started.elapsed();
        let mut locks: Vec<LockHeld> = self
            .first_seen
            .into_iter()
            .map(|((relation, mode), since)| LockHeld {
                relation,
                mode: lock_mode_name(&mode),
                held_ms: millis(end.saturating_sub(since)),
            })
            .collect();
        locks.sort_by_key(|l| (lock_rank(&l.mode), l.relation.clone()));
        summary.locks.extend(locks);
    }
}

/// [`Script::annotate`] for every file; with several, each note names its file.
fn annotate_all(scripts: &[Script], report: &mut Report) {
    if scripts.len() < 2 {
        scripts.iter().for_each(|s| s.annotate(report));
        return;
    }
    for s in scripts {
        if let (Some(w), Some(m)) = (&s.wrapper, report.migration.as_mut()) {
            m.mode = format!("{}; {}: {}", m.mode, s.name, w.describe());
        }
    }
}

/// Split a script and refuse what cannot be rehearsed, before anything runs. `in_transaction`
/// is false for `--no-transaction`.
pub fn prepare_script(
    name: &str,
    text: &str,
    in_transaction: bool,
) -> Result<Script, MigrateError> {
    let statements =
        script::split(text).map_err(|e| MigrateError::Script(format!("{name}: {e}")))?;
    if statements.is_empty() {
        return Err(MigrateError::Script(format!(
            "{name}: the file holds no SQL statement"
        )));
    }
    let (statements, wrapper) = script::unwrap_transaction(statements)
        .map_err(|e| MigrateError::Script(format!("{name}:{}: {}", e.line, e.reason)))?;
    if let Some(w) = &wrapper {
        if statements.is_empty() {
            return Err(MigrateError::Script(format!(
                "{name}: the file holds no SQL statement between its {} (line {}) and {} (line {})",
                w.begin, w.begin_line, w.commit, w.commit_line
            )));
        }
        if !in_transaction {
            // --no-transaction is for files that cannot run in one transaction; this one
            // asks to be exactly one. Running it statement by statement would silently drop
            // the atomicity its author wrote, so say what to do instead.
            return Err(MigrateError::Script(format!(
                "{name}:{}: the file wraps itself in {} ... {} (line {}), so it is meant to run as \
                 one transaction, but --no-transaction would commit every statement on its own. \
                 Run it without --no-transaction: migval rehearses it as its transaction (and \
                 applies it with --commit)",
                w.begin_line, w.begin, w.commit, w.commit_line
            )));
        }
    }
    for s in &statements {
        if let StatementKind::NonTransactional(what) = &s.kind
            && in_transaction
        {
            let why = match &wrapper {
                Some(w) => format!(
                    "and the file's own {} (line {}) puts it in one, so it fails under psql too. \
                     Move it out of the BEGIN/COMMIT into a separate file, applied with \
                     --no-transaction --commit",
                    w.begin, w.begin_line
                ),
                None => "so this file cannot be rehearsed. Move it to a separate file, or apply \
                         the file with --no-transaction --commit (baseline -> run -> verify, not \
                         reversible)"
                    .to_string(),
            };
            return Err(MigrateError::Script(format!(
                "{name}:{}: {what} cannot run inside a transaction block, {why}",
                s.line
            )));
        }
    }
    Ok(Script {
        name: name.to_string(),
        statements,
        wrapper,
    })
}

/// The [rename] map extended with the renames the script writes (the spec wins on conflict).
pub fn merged_renames(spec: &Spec, statements: &[Statement]) -> (Renames, Vec<(String, String)>) {
    let mut r = spec.renames.clone();
    let mut inferred = Vec::new();
    for ren in script::inferred_renames(statements) {
        match &ren.column {
            Some(col) => {
                if r.column(&ren.table, col).is_none() {
                    r.columns
                        .push((ren.table.clone(), col.clone(), ren.new_name.clone()));
                    inferred.push((
                        format!("{}.{col}", ren.table),
                        format!("{}.{}", ren.table, ren.new_name),
                    ));
                }
            }
            None => {
                if r.table(&ren.table).is_none() {
                    r.tables.push((ren.table.clone(), ren.new_name.clone()));
                    inferred.push((ren.table.clone(), ren.new_name.clone()));
                }
            }
        }
    }
    (r, inferred)
}

fn abbreviate(sql: &str) -> String {
    let one: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 120 {
        format!("{}…", one.chars().take(119).collect::<String>())
    } else {
        one
    }
}

/// Run statements in the open transaction of `client`. Stops at the first failing statement
/// (the caller rolls back).
pub async fn run_statements(
    client: &Client,
    monitor: &Client,
    statements: &[Statement],
    limits: Limits,
    lock_retries: u32,
    summary: &mut MigrationSummary,
) -> Result<(), DbFailure> {
    let mut clock = LockClock::new();
    run_statements_of(
        client,
        monitor,
        None,
        statements,
        limits,
        lock_retries,
        summary,
        &mut clock,
    )
    .await?;
    clock.finish(summary);
    Ok(())
}

/// [`run_statements`] of one file among several: `file` names it in every statement run
/// and in the failure.
#[allow(clippy::too_many_arguments)]
async fn run_statements_of(
    client: &Client,
    monitor: &Client,
    file: Option<&str>,
    statements: &[Statement],
    limits: Limits,
    lock_retries: u32,
    summary: &mut MigrationSummary,
    clock: &mut LockClock,
) -> Result<(), DbFailure> {
    super::progress::emit(super::progress::Event::Phase("migration"));
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .and_then(|r| r.try_get(0))
        .map_err(|e| db::failure(&e, None))?;
    let total = statements.len();
    for (i, s) in statements.iter().enumerate() {
        // "statement at line 12" of one file; "02_data.sql: statement 3 of 5, line 12" of several.
        let place = match file {
            Some(f) => format!("{f}: statement {} of {total}, line {}", i + 1, s.line),
            None => format!("statement at line {}", s.line),
        };
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            client
                .batch_execute(&format!(
                    "{}; {}",
                    STATEMENT.open(),
                    SetLocal::new()
                        .lock_timeout_ms(limits.lock_timeout_ms)
                        .statement_timeout_ms(limits.statement_timeout_ms)
                        .sql()
                ))
                .await
                .map_err(|e| db::failure(&e, Some(format!("before the {place}"))))?;
            let t0 = Instant::now();
            super::progress::emit(super::progress::Event::StatementStarted {
                place: match file {
                    Some(f) => format!("{f}: statement {} of {total}, line {}", i + 1, s.line),
                    None => format!("statement {} of {total}, line {}", i + 1, s.line),
                },
                sql: abbreviate(&s.sql),
            });
            let (result, blockers) =
                run_watched(client, monitor, &s.sql, pid, limits.lock_timeout_ms).await;
            let elapsed = t0.elapsed();
            super::progress::emit(super::progress::Event::StatementFinished {
                elapsed,
                ok: result.is_ok(),
            });
            match result {
                Ok(messages) => {
                    client
                        .batch_execute(&STATEMENT.release())
                        .await
                        .map_err(|e| db::failure(&e, None))?;
                    let rows = messages.iter().rev().find_map(|m| match m {
                        SimpleQueryMessage::CommandComplete(n) => Some(*n),
                        _ => None,
                    });
                    summary.statements.push(StatementRun {
                        file: file.map(str::to_string),
                        line: s.line,
                        sql: abbreviate(&s.sql),
                        duration_ms: millis(elapsed),
                        rows,
                        attempts,
                        ok: true,
                    });
                    for (relation, mode) in locks_held(client).await? {
                        let at = clock.started.elapsed();
                        clock.first_seen.entry((relation, mode)).or_insert(at);
                    }
                    break;
                }
                Err(e) => {
                    let mut f = db::failure(&e, Some(format!("{place}: {}", abbreviate(&s.sql))));
                    let _ = client.batch_execute(&STATEMENT.rollback()).await;
                    let lock_timeout = f.sqlstate.as_deref() == Some("55P03");
                    if lock_timeout {
                        for b in blockers {
                            if !summary.blockers.iter().any(|x| x.pid == b.pid) {
                                summary.blockers.push(b);
                            }
                        }
                    }
                    if lock_timeout && attempts <= lock_retries {
                        let wait = db::backoff_ms(attempts);
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                        continue;
                    }
                    if lock_timeout {
                        f.hint = Some(format!(
                            "gave up after {attempts} attempts with lock_timeout {} ms; the sessions \
                             blocking it are listed under `blockers`: wait for them, or end them \
                             (pg_terminate_backend) if they are safe to end",
                            limits.lock_timeout_ms
                        ));
                    }
                    summary.statements.push(StatementRun {
                        file: file.map(str::to_string),
                        line: s.line,
                        sql: abbreviate(&s.sql),
                        duration_ms: millis(elapsed),
                        rows: None,
                        attempts,
                        ok: false,
                    });
                    return Err(f);
                }
            }
        }
    }
    Ok(())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Run `sql`; if it is still running after half the lock timeout, ask (from `monitor`) who
/// blocks it, while it waits.
async fn run_watched(
    client: &Client,
    monitor: &Client,
    sql: &str,
    pid: i32,
    lock_timeout_ms: u64,
) -> (
    Result<Vec<SimpleQueryMessage>, tokio_postgres::Error>,
    Vec<Blocker>,
) {
    let fut = client.simple_query(sql);
    tokio::pin!(fut);
    let delay = tokio::time::sleep(Duration::from_millis(
        (lock_timeout_ms / 2).clamp(50, 2_000),
    ));
    tokio::pin!(delay);
    let mut blockers = Vec::new();
    let mut asked = false;
    loop {
        tokio::select! {
            r = &mut fut => return (r, blockers),
            _ = &mut delay, if !asked => {
                asked = true;
                blockers = who_blocks(monitor, pid).await;
            }
        }
    }
}

/// The sessions blocking backend `pid` now (asked from another connection; empty when none
/// or when it cannot be read). The backfill asks it too while a batch waits for a row lock.
pub async fn who_blocks(monitor: &Client, pid: i32) -> Vec<Blocker> {
    let Ok(rows) = monitor.query(sql::BLOCKERS.sql, &[&pid]).await else {
        return Vec::new();
    };
    rows.iter()
        .filter_map(|r| {
            Some(Blocker {
                pid: r.try_get("pid").ok()?,
                user: r.try_get("usename").ok()?,
                application_name: r.try_get("application_name").ok()?,
                state: r.try_get("state").ok()?,
                transaction_seconds: r.try_get("xact_seconds").ok()?,
                query: r.try_get("query").ok()?,
            })
        })
        .collect()
}

async fn locks_held(client: &Client) -> Result<Vec<(String, String)>, DbFailure> {
    let rows = client
        .query(sql::LOCKS_HELD.sql, &[])
        .await
        .map_err(|e| db::failure(&e, Some("reading the locks held".into())))?;
    rows.iter()
        .map(|r| Ok((r.try_get("relation")?, r.try_get("mode")?)))
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(|e| db::failure(&e, None))
}

/// "AccessExclusiveLock" -> "ACCESS EXCLUSIVE".
fn lock_mode_name(mode: &str) -> String {
    let base = mode.strip_suffix("Lock").unwrap_or(mode);
    let mut out = String::new();
    for (i, c) in base.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push(' ');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn lock_rank(mode: &str) -> u8 {
    match mode {
        "ACCESS EXCLUSIVE" => 0,
        "EXCLUSIVE" => 1,
        "SHARE ROW EXCLUSIVE" => 2,
        "SHARE" => 3,
        "SHARE UPDATE EXCLUSIVE" => 4,
        "ROW EXCLUSIVE" => 5,
        "ROW SHARE" => 6,
        _ => 7,
    }
}

/// The spec with every rule made "unchanged, exact" and schema facts compared with the
/// baseline only: what "the rollback restores the state" means. Sizes are only reported.
pub fn exact_spec(spec: &Spec) -> Spec {
    let mut s = spec.clone();
    s.renames = Renames::default();
    // The catalog must come back exactly too: no change is expected, every change fails.
    s.schema.expect.clear();
    s.schema.undeclared_fails = true;
    let exact = |r: &mut Rule| {
        r.tolerance = Tolerance::Exact;
        r.expect = Expect::Unchanged;
        r.scope = crate::spec::Scope::Group;
    };
    for c in &mut s.checks {
        match &mut c.kind {
            CheckKind::Metrics(m) => m.metrics.iter_mut().for_each(|x| exact(&mut x.rule)),
            CheckKind::NullCount(n) => exact(&mut n.rule),
            CheckKind::Orphans(o) => exact(&mut o.rule),
            CheckKind::Custom(c) => exact(&mut c.rule),
            CheckKind::Rows(_) => {}
            // Reported only: a rollback frees no pages before VACUUM (a rolled-back backfill
            // leaves its row versions in the file), so sizes cannot come back exactly.
            CheckKind::Sizes(z) => z.grows_at_most = None,
            CheckKind::Schema(f) => {
                f.expect = Default::default();
                f.may_change = false;
                f.compare_only = true;
            }
        }
    }
    s
}

/// A report whose only result is the failure of the script: nothing was compared.
fn failed_report(
    command: &str,
    spec: &Spec,
    baseline: &Snapshot,
    after: &Snapshot,
    name: &str,
    f: DbFailure,
    summary: MigrationSummary,
) -> Report {
    let checks = vec![script_failure(
        name,
        format!("the script failed: {}", f.message),
        f,
    )];
    Report {
        command: command.into(),
        banner: Some(summary.mode.clone()),
        spec_path: spec.path.clone(),
        baseline: baseline.origin.clone(),
        after: after.origin.clone(),
        renames: Vec::new(),
        spec_changes: Vec::new(),
        verdict: Verdict::from_results(&checks),
        checks,
        migration: Some(summary),
        backup: None,
        backfill: None,
    }
}

/// A pseudo-check that carries a failure of the migration script or command into the report.
fn script_failure(name: &str, summary: String, f: DbFailure) -> CheckResult {
    CheckResult {
        name: name.to_string(),
        kind: crate::model::ResultKind::Migration,
        error: Some(f),
        ..CheckResult::bare(Status::Error, summary)
    }
}

/// Result of a guarded migration.
pub struct Outcome {
    pub report: Report,
    pub rollback_report: Option<Report>,
    pub after: Option<Snapshot>,
    pub committed: bool,
}

/// Run a migration script inside a transaction, verify inside it, commit only on `plan.commit`
/// and a passing verdict.
pub async fn run_in_transaction(
    info: &ConnInfo,
    spec: &Spec,
    baseline: &Snapshot,
    plan: &Plan,
) -> Result<Outcome, MigrateError> {
    let name = names(&plan.scripts);
    let (renames, inferred) = merged_renames(spec, &all_statements(&plan.scripts));
    let spec_after = Spec {
        renames: renames.clone(),
        ..spec.clone()
    };
    let client = db::connect(info).await?;
    let monitor = db::connect(info).await?;
    client
        .batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED")
        .await
        .map_err(|e| MigrateError::Db(db::failure(&e, Some("BEGIN".into()))))?;
    let mut summary = MigrationSummary {
        renames_inferred: inferred,
        ..MigrationSummary::new(&name, "")
    };
    let started = Instant::now();
    let ran = run_scripts(&client, &monitor, &plan.scripts, plan, &mut summary).await;
    if let Err((f, file)) = ran {
        let _ = client.batch_execute("ROLLBACK").await;
        summary.mode = if plan.scripts.len() > 1 {
            format!("rolled back: {file} failed, nothing of any file was committed")
        } else {
            "rolled back: the script failed, nothing was committed".into()
        };
        let mut report = failed_report("migrate", spec, baseline, baseline, &file, f, summary);
        annotate_all(&plan.scripts, &mut report);
        return Ok(Outcome {
            report,
            rollback_report: None,
            after: None,
            committed: false,
        });
    }
    let migration_ms = millis(started.elapsed());
    let after = capture_or_roll_back(
        &client,
        info,
        &spec_after,
        &Naming::after(&renames).with_baseline(&baseline.catalog),
        plan,
        baseline,
    )
    .await?;
    let mut report = compare::compare(&spec_after, baseline, &after, "migrate");

    let mut rollback_report = None;
    if !plan.rollback.is_empty() {
        let name = names(&plan.rollback);
        let mut rb =
            MigrationSummary::new(&name, "rehearsal of the rollback: nothing was committed");
        let exact = exact_spec(spec);
        let mut r = match run_scripts(&client, &monitor, &plan.rollback, plan, &mut rb).await {
            Err((f, file)) => {
                failed_report("migrate --rollback", spec, baseline, &after, &file, f, rb)
            }
            Ok(()) => {
                let restored = capture_or_roll_back(
                    &client,
                    info,
                    &exact,
                    &Naming::baseline(),
                    plan,
                    baseline,
                )
                .await?;
                let mut r = compare::compare(&exact, baseline, &restored, "migrate --rollback");
                r.banner = Some(format!(
                    "{}; compared with the baseline for exact equality",
                    rb.mode
                ));
                r.migration = Some(rb);
                r
            }
        };
        annotate_all(&plan.rollback, &mut r);
        rollback_report = Some(r);
    }

    let commit = plan.commit && report.verdict.passed() && plan.rollback.is_empty();
    let end = if commit { "COMMIT" } else { "ROLLBACK" };
    client
        .batch_execute(end)
        .await
        .map_err(|e| MigrateError::Db(db::failure(&e, Some(end.into()))))?;
    summary.mode = if commit {
        format!("committed: the verdict passed (migration {migration_ms} ms)")
    } else if plan.commit {
        "rolled back: the verdict failed, nothing was committed".into()
    } else {
        "rehearsal: nothing was committed".into()
    };
    report.banner = Some(summary.mode.clone());
    report.migration = Some(summary);
    annotate_all(&plan.scripts, &mut report);
    Ok(Outcome {
        report,
        rollback_report,
        after: Some(after),
        committed: commit,
    })
}

/// Capture inside the open transaction; if that fails, roll the transaction back before
/// returning the error, so nothing of the migration can be left behind.
async fn capture_or_roll_back(
    client: &Client,
    info: &ConnInfo,
    spec: &Spec,
    naming: &Naming,
    plan: &Plan,
    _baseline: &Snapshot,
) -> Result<Snapshot, MigrateError> {
    match capture::capture_in_transaction(client, info, spec, naming, plan.limits).await {
        Ok(s) => Ok(s),
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(e.into())
        }
    }
}

/// `--no-transaction`: statements run one by one in autocommit, then the post-state is
/// captured like `verify` does. Not reversible: the caller requires --commit.
pub async fn run_without_transaction(
    info: &ConnInfo,
    spec: &Spec,
    baseline: &Snapshot,
    plan: &Plan,
) -> Result<Outcome, MigrateError> {
    let name = names(&plan.scripts);
    let (renames, inferred) = merged_renames(spec, &all_statements(&plan.scripts));
    let spec_after = Spec {
        renames,
        ..spec.clone()
    };
    let client = db::connect(info).await?;
    let monitor = db::connect(info).await?;
    let mut summary = MigrationSummary {
        renames_inferred: inferred,
        ..MigrationSummary::new(
            &name,
            "applied WITHOUT a transaction: every statement committed as it ran",
        )
    };
    let several = plan.scripts.len() > 1;
    let steps = plan.scripts.iter().flat_map(|script| {
        let total = script.statements.len();
        script
            .statements
            .iter()
            .enumerate()
            .map(move |(i, s)| (script.name.as_str(), i + 1, total, s))
    });
    for (file, index, total, s) in steps {
        // Each statement in its own transaction (unless it cannot be in one at all).
        let wrap = !matches!(s.kind, StatementKind::NonTransactional(_));
        let one = std::slice::from_ref(s);
        let result = if wrap {
            client
                .batch_execute("BEGIN")
                .await
                .map_err(|e| db::failure(&e, None))
                .map(|_| ())
        } else {
            Ok(())
        };
        let result = match result {
            Ok(()) if wrap => {
                let r = run_statements(
                    &client,
                    &monitor,
                    one,
                    plan.limits,
                    plan.lock_retries,
                    &mut summary,
                )
                .await;
                let end = if r.is_ok() { "COMMIT" } else { "ROLLBACK" };
                let _ = client.batch_execute(end).await;
                r
            }
            Ok(()) => {
                let t0 = Instant::now();
                let r = client.simple_query(&s.sql).await;
                summary.statements.push(StatementRun {
                    file: None,
                    line: s.line,
                    sql: abbreviate(&s.sql),
                    duration_ms: millis(t0.elapsed()),
                    rows: None,
                    attempts: 1,
                    ok: r.is_ok(),
                });
                r.map(|_| ())
                    .map_err(|e| db::failure(&e, Some(format!("statement at line {}", s.line))))
            }
            Err(f) => Err(f),
        };
        // With several files, name the file (as the transactional run does).
        let place = if several {
            if let Some(last) = summary.statements.last_mut() {
                last.file = Some(file.to_string());
            }
            format!("{file}: statement {index} of {total}, line {}", s.line)
        } else {
            format!("line {}", s.line)
        };
        if let Err(mut f) = result {
            if several {
                f.context = Some(format!("{place}: {}", abbreviate(&s.sql)));
            }
            summary.mode = format!(
                "applied WITHOUT a transaction and stopped at {place}: the statements before it are committed"
            );
            let report = failed_report(
                "migrate --no-transaction",
                spec,
                baseline,
                baseline,
                &name,
                f,
                summary,
            );
            return Ok(Outcome {
                report,
                rollback_report: None,
                after: None,
                committed: true,
            });
        }
    }
    let (mut report, after) = super::verify_as(
        "migrate --no-transaction",
        info,
        &spec_after,
        baseline,
        plan.limits,
    )
    .await?;
    report.banner = Some(summary.mode.clone());
    report.migration = Some(summary);
    Ok(Outcome {
        report,
        rollback_report: None,
        after: Some(after),
        committed: true,
    })
}

/// `migval migrate --spec checks.toml -- alembic upgrade head`: baseline (taken by the caller),
/// run the command with its output streamed through `on_line` and kept, then capture and
/// compare as `verify` does. Not transactional: the report says so. The command's environment
/// carries PGHOST, PGPORT, PGUSER, PGDATABASE, PGSSLMODE, ... (and PGPASSWORD) of the target.
pub async fn run_external(
    info: &ConnInfo,
    spec: &Spec,
    baseline: &Snapshot,
    argv: &[String],
    limits: Limits,
    on_line: &(dyn Fn(&str) + Sync),
) -> Result<Outcome, MigrateError> {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let Some((program, args)) = argv.split_first() else {
        return Err(MigrateError::Script("no command given after `--`".into()));
    };
    if info.sslpassword.is_some() {
        return Err(MigrateError::Script(format!(
            "cannot run `{}`: {}",
            crate::redact::command_line(argv),
            super::backup::SSLPASSWORD_FOR_CHILDREN
        )));
    }
    // Shown, reported and saved: a password in the command line is masked.
    let name = crate::redact::command_line(argv);
    let started = Instant::now();
    let mut child = tokio::process::Command::new(program)
        .args(args)
        // libpq's variables of migval's own target (the password in PGPASSWORD, never on a
        // command line): `psql -f 01.sql` migrates the database migval verifies.
        .envs(super::backup::child_env(info))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| MigrateError::Script(format!("cannot start `{name}`: {e}")))?;
    // Both streams feed one channel, so lines are shown in the order they arrive.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    if let Some(stdout) = child.stdout.take() {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                let _ = tx.send(l);
            }
        });
    }
    if let Some(stderr) = child.stderr.take() {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                let _ = tx.send(l);
            }
        });
    }
    drop(tx);
    let mut kept = String::new();
    const KEEP: usize = 1 << 20;
    while let Some(line) = rx.recv().await {
        // The command has the password in its environment: a tool that prints it (`env`, a
        // debug dump) must not put it on screen or in the report.
        let line = super::backup::redact(&line, info.password.as_deref());
        on_line(&line);
        if kept.len() < KEEP {
            kept.push_str(&line);
            kept.push('\n');
        }
    }
    let status = child
        .wait()
        .await
        .map_err(|e| MigrateError::Script(format!("waiting for `{name}`: {e}")))?;
    let mode = format!(
        "external command, NOT transactional: its changes were applied as it ran ({} ms, {status})",
        millis(started.elapsed())
    );
    let summary = MigrationSummary {
        command_output: Some(kept.clone()),
        ..MigrationSummary::new(&name, &mode)
    };
    let (mut report, after) = super::verify_as("migrate --", info, spec, baseline, limits).await?;
    if !status.success() {
        let tail: String = kept
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        let failure = DbFailure {
            message: format!("`{name}` exited with {status}"),
            sqlstate: None,
            detail: Some(tail),
            hint: Some("its whole output is in the report (migration.command_output)".into()),
            server_context: None,
            context: None,
        };
        report.checks.insert(
            0,
            script_failure(
                &format!("command `{name}`"),
                format!("the command failed ({status}); the checks below show the state it left"),
                failure,
            ),
        );
        report.verdict = Verdict::from_results(&report.checks);
    }
    report.banner = Some(summary.mode.clone());
    report.migration = Some(summary);
    Ok(Outcome {
        report,
        rollback_report: None,
        after: Some(after),
        committed: true,
    })
}
