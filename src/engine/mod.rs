//! The engine: plan -> capture (one consistent snapshot) -> compare -> verdict. It returns
//! data ([`Snapshot`], [`Report`]); it never prints.

pub mod after_only;
pub mod backup;
pub mod capture;
pub mod compare;
pub mod ddl;
mod facts;
pub mod init;
mod keyed;
pub mod keystream;
pub mod migrate;
pub mod plan;
pub mod preflight;
pub mod progress;
pub mod rows;
pub mod rowstream;
mod rules;
pub mod schema_diff;
pub mod script;
pub mod sizes;
mod summary;
pub mod watch;

use crate::db::conninfo::ConnInfo;
use crate::model::{Report, Snapshot};
use crate::spec::Spec;

pub use capture::{CaptureError, Limits};
use plan::Naming;

/// Capture the baseline: every check as the database is now, names as written in the spec.
pub async fn snapshot(
    info: &ConnInfo,
    spec: &Spec,
    limits: Limits,
) -> Result<Snapshot, CaptureError> {
    capture::capture(info, spec, &Naming::baseline(), limits).await
}

/// The verify flow, the one every command runs after its change (verify and its watch,
/// backfill, demo, migrate outside a transaction): capture the post-state (with the [rename]
/// map applied), compare it with `baseline` ([`judge`]). Returns the report and the
/// post-state snapshot. An object missing after the migration is data in the snapshot, worded
/// by compare against the baseline's catalog ([`preflight::explain_after`]).
pub async fn verify(
    info: &ConnInfo,
    spec: &Spec,
    baseline: &Snapshot,
    limits: Limits,
) -> Result<(Report, Snapshot), CaptureError> {
    verify_as("verify", info, spec, baseline, limits).await
}

/// [`verify`] with the command the report names (`migrate --no-transaction`, ...).
pub async fn verify_as(
    command: &str,
    info: &ConnInfo,
    spec: &Spec,
    baseline: &Snapshot,
    limits: Limits,
) -> Result<(Report, Snapshot), CaptureError> {
    // The caller may save the post-state: its rows checks are kept, and merged as they arrive.
    let after = capture_after_against(info, spec, limits, baseline, true).await?;
    let report = judge(command, info, spec, baseline, &after).await;
    Ok((report, after))
}

/// The second half of [`verify`]: compare, then read the post-state values of the keys a rows
/// check lists. `migval verify` calls the halves itself, to parse a big baseline while the
/// capture runs.
pub async fn judge(
    command: &str,
    info: &ConnInfo,
    spec: &Spec,
    baseline: &Snapshot,
    after: &Snapshot,
) -> Report {
    let mut report = compare::compare(spec, baseline, after, command);
    rows::describe(info, spec, &mut report).await;
    report
}

/// The post-state capture of [`verify`] on its own (names through the [rename] map). A
/// relation or column missing after the migration is recorded in the snapshot; compare fails
/// the checks that read it and words why with both catalogs.
/// `baseline` (the baseline's catalog) is needed only by rows checks without `columns`: they
/// fingerprint the columns the baseline had ([`needs_baseline_catalog`]).
pub async fn capture_after(
    info: &ConnInfo,
    spec: &Spec,
    limits: Limits,
    baseline: Option<&std::collections::BTreeMap<String, Vec<String>>>,
) -> Result<Snapshot, CaptureError> {
    let mut naming = Naming::after(&spec.renames);
    if let Some(b) = baseline {
        naming = naming.with_baseline(b);
    }
    capture::capture(info, spec, &naming, limits).await
}

/// [`capture_after`], with every rows check that the baseline holds as a section merged
/// against it while the post-state arrives from the server, range by range where the baseline
/// was captured in key ranges (`rowstream`). `keep`: the post-state of the rows checks is
/// also written to temporary sections (it will be saved: `--save-after`, `migrate`
/// artifacts); without it nothing of it is written anywhere, and the returned snapshot holds
/// the comparison instead of the rows (it cannot be saved).
pub async fn capture_after_against(
    info: &ConnInfo,
    spec: &Spec,
    limits: Limits,
    baseline: &Snapshot,
    keep: bool,
) -> Result<Snapshot, CaptureError> {
    let naming = Naming::after(&spec.renames).with_baseline(&baseline.catalog);
    let baselines = rowstream::Baselines::of(spec, baseline, keep);
    capture::capture_against(info, spec, &naming, limits, &baselines).await
}

/// Whether a spec has rows checks (the post-state capture then merges them against the
/// baseline as they arrive: the baseline is read first).
pub fn has_rows_checks(spec: &Spec) -> bool {
    spec.checks
        .iter()
        .any(|c| matches!(c.kind, crate::spec::CheckKind::Rows(_)))
}

/// Whether the post-state capture needs the baseline's catalog first (a rows check that
/// fingerprints "every column").
pub fn needs_baseline_catalog(spec: &Spec) -> bool {
    spec.checks
        .iter()
        .any(|c| matches!(&c.kind, crate::spec::CheckKind::Rows(r) if r.columns.is_none()))
}

/// Compare two saved snapshots under `spec`'s rules.
pub fn diff(spec: &Spec, baseline: &Snapshot, after: &Snapshot) -> Report {
    compare::compare(spec, baseline, after, "diff")
}
