//! Diffing two captures of the same checks: per check, which comparison applies (the keyed
//! merge, a rows proof, sizes, schema facts, an after-only intent) and what a capture that
//! failed or went missing means. Where things are judged, by file:
//!
//! ```text
//!   compare.rs   per check: both captures present? failed? which comparison?
//!   keyed.rs     grouped and keyed results merged on their sorted keys, worst groups kept
//!   rules.rs     tolerance, intent, scope: how one value (or a total) is judged
//!   facts.rs     schema facts: declared attributes asserted, the rest unchanged
//!   summary.rs   the one-line summary of a result
//!   rows.rs      the row proof (fingerprints per key)
//! ```

use crate::model::{
    CheckCapture, CheckResult, DbFailure, Outcome, Report, Snapshot, Status, Verdict,
};
use crate::spec::{Check, CheckKind, Spec};

use super::facts::compare_fact;
use super::keyed::compare_keyed;
pub use super::keyed::keep_all_changes;
use super::rules::column_rules;

/// Compare every check of `spec` between two snapshots.
pub fn compare(spec: &Spec, baseline: &Snapshot, after: &Snapshot, command: &str) -> Report {
    let mut spec_changes = Vec::new();
    if baseline.spec.sha256 != spec.sha256 {
        spec_changes.push(format!(
            "the spec changed since the baseline was taken (baseline spec sha256 {}…, now {}…)",
            &baseline.spec.sha256.get(..12).unwrap_or(""),
            &spec.sha256.get(..12).unwrap_or("")
        ));
    }
    for b in &baseline.checks {
        if !spec.checks.iter().any(|c| c.name == b.name) {
            spec_changes.push(format!(
                "check `{}` is in the baseline but no longer in the spec: not verified",
                b.name
            ));
        }
    }
    let mut checks: Vec<CheckResult> = spec
        .checks
        .iter()
        .map(|check| {
            let b = baseline.check(&check.name);
            let a = after.check(&check.name);
            let drift = match b {
                None => Some("not in the baseline (added to the spec after the baseline was taken): take a new baseline".to_string()),
                Some(b) if !check.same_definition(&b.fingerprint) => Some(
                    "its definition changed since the baseline was taken: take a new baseline, or restore the check as it was".to_string(),
                ),
                _ => None,
            };
            if let Some(d) = &drift {
                spec_changes.push(format!("check `{}`: {d}", check.name));
            }
            let sides = Sides {
                spec,
                before: &baseline.catalog,
                after: &after.catalog,
            };
            compare_check(check, b, a, drift, &sides)
        })
        .collect();
    if spec.schema.enabled {
        checks.push(super::schema_diff::diff(
            &spec.schema,
            &spec.renames,
            baseline.schema.as_ref(),
            after.schema.as_ref(),
        ));
    }
    let verdict = Verdict::from_results(&checks);
    Report {
        command: command.to_string(),
        banner: None,
        spec_path: spec.path.clone(),
        baseline: baseline.origin.clone(),
        after: after.origin.clone(),
        renames: after.renames.clone(),
        spec_changes,
        checks,
        verdict,
        migration: None,
        backup: None,
        backfill: None,
    }
}

fn error_result(
    check: &Check,
    message: String,
    error: Option<DbFailure>,
    b: Option<&CheckCapture>,
    a: Option<&CheckCapture>,
) -> CheckResult {
    CheckResult {
        name: check.name.clone(),
        kind: check.kind.label(),
        baseline_sql: b.map(|c| c.sql.clone()).unwrap_or_default(),
        after_sql: a.map(|c| c.sql.clone()).unwrap_or_default(),
        error,
        ..CheckResult::bare(Status::Error, message)
    }
}

/// What a comparison needs besides the two captures: the spec (rules, renames) and both
/// catalogs (to word why an object is missing).
pub(super) struct Sides<'a> {
    pub spec: &'a Spec,
    pub before: &'a std::collections::BTreeMap<String, Vec<String>>,
    pub after: &'a std::collections::BTreeMap<String, Vec<String>>,
}

/// SQLSTATEs of a query that no longer finds its table or column.
const GONE: &[&str] = &["42P01", "42703"];

fn compare_check(
    check: &Check,
    b: Option<&CheckCapture>,
    a: Option<&CheckCapture>,
    drift: Option<String>,
    sides: &Sides,
) -> CheckResult {
    let worst_n = sides.spec.settings.worst_groups;
    if let Some(d) = drift {
        return error_result(check, d, None, b, a);
    }
    let (Some(bc), Some(ac)) = (b, a) else {
        return error_result(
            check,
            "missing from the post-state capture".into(),
            None,
            b,
            a,
        );
    };
    let (bt, at) = match (&bc.outcome, &ac.outcome) {
        (Outcome::Failed(f), _) => {
            return error_result(
                check,
                format!("the baseline could not capture it: {}", f.message),
                Some(f.clone()),
                b,
                a,
            );
        }
        (Outcome::Captured(_) | Outcome::Streamed(_), Outcome::Failed(f))
            if f.sqlstate.as_deref().is_some_and(|c| GONE.contains(&c)) =>
        {
            // The migration removed what the query reads: the check fails, the tool did its job.
            let mut r = error_result(
                check,
                format!(
                    "the query no longer runs after the migration: {}",
                    f.message
                ),
                Some(f.clone()),
                b,
                a,
            );
            r.status = Status::Fail;
            return r;
        }
        (_, Outcome::Failed(f)) => {
            return error_result(
                check,
                format!("the post-state capture failed: {}", f.message),
                Some(f.clone()),
                b,
                a,
            );
        }
        (Outcome::Captured(bt), Outcome::Captured(at)) => (bt, at),
        (Outcome::Absent(_), _) | (_, Outcome::Absent(_)) => {
            // An after-only rows check: its post-state judged in memory.
            let streamed_after = match &ac.outcome {
                Outcome::Streamed(sec) => match crate::section::to_table(sec, &check.name) {
                    Ok(t) => Some(Outcome::Captured(t)),
                    Err(e) => return error_result(check, e.to_string(), None, b, a),
                },
                _ => None,
            };
            let after = streamed_after.as_ref().unwrap_or(&ac.outcome);
            let mut r = super::after_only::compare(check, &bc.outcome, after, sides);
            r.name = check.name.clone();
            r.kind = check.kind.label();
            r.baseline_sql = bc.sql.clone();
            r.after_sql = ac.sql.clone();
            return r;
        }
        (Outcome::Streamed(_), _) | (_, Outcome::Streamed(_)) => {
            let mut result = match &check.kind {
                CheckKind::Rows(_) => {
                    super::rows::compare_streamed(&check.name, &bc.outcome, &ac.outcome, worst_n)
                }
                // A large grouped or keyed custom result, merged as its section is read.
                kind => super::keyed::compare_outcomes(
                    &check.name,
                    &bc.outcome,
                    &ac.outcome,
                    |columns, key_len| column_rules(kind, columns, key_len),
                    worst_n,
                ),
            };
            result.name = check.name.clone();
            result.kind = check.kind.label();
            result.baseline_sql = bc.sql.clone();
            result.after_sql = ac.sql.clone();
            return result;
        }
    };
    let mut result = match &check.kind {
        CheckKind::Rows(_) => super::rows::compare(bt, at, worst_n),
        CheckKind::Sizes(s) => super::sizes::compare(s, bt, at),
        CheckKind::Schema(s) => {
            compare_fact(&s.object, &s.expect, s.may_change, s.compare_only, bt, at)
        }
        kind => {
            let rules = column_rules(kind, &bt.columns, bt.key_len);
            compare_keyed(bt, at, &rules, worst_n)
        }
    };
    result.name = check.name.clone();
    result.kind = check.kind.label();
    result.baseline_sql = bc.sql.clone();
    result.after_sql = ac.sql.clone();
    result
}
