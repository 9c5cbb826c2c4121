//! Diffing two captures of the same checks, and applying the tolerance and intent rules.
//!
//! Grouped results are merged on their sorted keys (both sides were sorted at capture time
//! with the same total order), so 1M groups diff in one linear pass:
//!
//! ```text
//!   baseline  k1 k2    k4 k5        k1: compared   k3: appeared
//!   after     k1    k3 k4 k5        k2: disappeared
//! ```
//!
//! Per metric the rule says where it applies: each group, the total over all groups, or both.
//! Counts are always exact. NULL is never zero. A value wider than rust_decimal (28 digits) is
//! compared exactly as text and never rounded.

use std::cmp::Ordering;
use std::sync::atomic::{AtomicBool, Ordering as Atomic};

use rust_decimal::Decimal;

use crate::model::{
    CheckCapture, CheckResult, Comparison, DbFailure, GroupStats, Outcome, Report, ResultKind,
    Snapshot, Status, Table, Value, ValueScope, Verdict, cmp_keys, grouped_count, grouped_digits,
    readable_value,
};
use crate::spec::{Check, CheckKind, Expect, FactExpect, FactObject, Rule, Scope, Spec, Tolerance};

/// How one value column is judged.
#[derive(Debug, Clone)]
pub(super) struct ColumnRule {
    label: String,
    rule: Rule,
    /// Counts: exact whatever the tolerance.
    exact: bool,
    /// How per-group values combine into a total (None: they cannot).
    total: Option<Combine>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Combine {
    Sum,
    Min,
    Max,
}

/// Whether grouped checks keep every differing group and metric in `all_changes`: on for
/// `--changes-out` only, since a migration that moves every one of a million groups would
/// otherwise hold a record for each in memory for nothing. Rows checks always keep theirs.
static KEEP_ALL_CHANGES: AtomicBool = AtomicBool::new(false);

/// Keep every differing group of grouped checks (for `--changes-out`), or only the worst.
pub fn keep_all_changes(on: bool) {
    KEEP_ALL_CHANGES.store(on, Atomic::Relaxed);
}

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
        (Outcome::Captured(_), Outcome::Failed(f))
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
            let mut result =
                super::rows::compare_streamed(&check.name, &bc.outcome, &ac.outcome, worst_n);
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
            let rules = column_rules(kind, bt);
            compare_keyed(bt, at, &rules, worst_n)
        }
    };
    result.name = check.name.clone();
    result.kind = check.kind.label();
    result.baseline_sql = bc.sql.clone();
    result.after_sql = ac.sql.clone();
    result
}

pub(super) fn column_rules(kind: &CheckKind, base: &Table) -> Vec<ColumnRule> {
    match kind {
        CheckKind::Metrics(m) => m
            .metrics
            .iter()
            .map(|metric| ColumnRule {
                label: metric.label.clone(),
                rule: metric.rule,
                exact: metric.func.is_count(),
                total: match metric.func {
                    crate::spec::Func::Min => Some(Combine::Min),
                    crate::spec::Func::Max => Some(Combine::Max),
                    f if f.totals() => Some(Combine::Sum),
                    _ => None,
                },
            })
            .collect(),
        CheckKind::NullCount(n) => vec![ColumnRule {
            label: "null_count".into(),
            rule: n.rule,
            exact: true,
            total: None,
        }],
        CheckKind::Orphans(o) => vec![ColumnRule {
            label: "orphans".into(),
            rule: o.rule,
            exact: true,
            total: None,
        }],
        // Integer columns (counts) are exact whatever the tolerance, as for native checks.
        CheckKind::Custom(c) => base.columns[base.key_len..]
            .iter()
            .map(|col| ColumnRule {
                label: col.name.clone(),
                rule: c.rule,
                exact: col.kind == crate::model::Kind::Int,
                total: Some(Combine::Sum),
            })
            .collect(),
        CheckKind::Schema(_) | CheckKind::Rows(_) | CheckKind::Sizes(_) => Vec::new(),
    }
}

/// The judgement of one value.
struct Judged {
    ok: bool,
    changed: bool,
    difference: Option<Decimal>,
    note: Option<String>,
}

fn within(diff: Decimal, reference: Decimal, tol: Tolerance) -> bool {
    match tol {
        Tolerance::Exact => diff.is_zero(),
        Tolerance::Abs(t) => diff.abs() <= t,
        Tolerance::Rel(r) => reference
            .abs()
            .checked_mul(r)
            .is_some_and(|limit| diff.abs() <= limit),
    }
}

fn within_f(diff: f64, reference: f64, tol: Tolerance) -> bool {
    let t = |d: Decimal| d.to_string().parse::<f64>().unwrap_or(0.0);
    match tol {
        Tolerance::Exact => diff == 0.0,
        Tolerance::Abs(x) => diff.abs() <= t(x),
        Tolerance::Rel(r) => diff.abs() <= reference.abs() * t(r),
    }
}

const WIDE: &str = "the value is wider than 28 digits (or NaN/Infinity): compared exactly as text, a tolerance cannot apply; round it in the check (e.g. sum(round(x, 2))) if a tolerance is meant";

fn judge(b: Option<&Value>, a: Option<&Value>, rule: &Rule, exact: bool) -> Judged {
    let tol = if exact {
        Tolerance::Exact
    } else {
        rule.tolerance
    };
    let changed = match (b, a) {
        (Some(x), Some(y)) => !x.same(y),
        (None, None) => false,
        _ => true,
    };
    let difference = match (b.and_then(Value::as_decimal), a.and_then(Value::as_decimal)) {
        (Some(x), Some(y)) => y.checked_sub(x),
        _ => None,
    };
    let res = |ok: bool, note: Option<String>| Judged {
        ok,
        changed,
        difference,
        note,
    };
    let target = |v: Decimal, a: &Value, reference: Decimal| -> (bool, Option<String>) {
        match a {
            Value::Null => (
                false,
                Some("NULL is not a number (NULL is not zero)".into()),
            ),
            Value::BigNum(_) => (false, Some(WIDE.into())),
            Value::Float(f) => {
                let vf = v.to_string().parse::<f64>().unwrap_or(f64::NAN);
                (
                    within_f(f - vf, reference.to_string().parse().unwrap_or(0.0), tol),
                    None,
                )
            }
            other => match other.as_decimal().and_then(|x| x.checked_sub(v)) {
                Some(d) => (within(d, reference, tol), None),
                None => (
                    false,
                    Some("not a number, or the difference overflows 28 digits".into()),
                ),
            },
        }
    };
    match rule.expect {
        Expect::MayChange => res(true, None),
        Expect::Unchanged => match (b, a) {
            (Some(x), Some(y)) if x.same(y) => res(true, None),
            (Some(_), None) => res(false, Some("disappeared".into())),
            (None, Some(_)) => res(false, Some("appeared".into())),
            (None, None) => res(true, None),
            (Some(x), Some(y)) => match (x, y) {
                (Value::Null, _) | (_, Value::Null) => res(
                    false,
                    Some("NULL on one side only (NULL is not zero)".into()),
                ),
                (Value::BigNum(_), _) | (_, Value::BigNum(_)) => res(false, Some(WIDE.into())),
                (Value::Float(p), Value::Float(q)) => res(within_f(q - p, *p, tol), None),
                _ => match (difference, x.as_decimal()) {
                    (Some(d), Some(reference)) => res(within(d, reference, tol), None),
                    _ => res(false, None),
                },
            },
        },
        Expect::Zero => match a {
            None => res(true, None),
            Some(v) => {
                let (ok, note) = target(Decimal::ZERO, v, Decimal::ZERO);
                res(ok, note)
            }
        },
        Expect::Equals(want) => match a {
            None => res(false, Some("missing after".into())),
            Some(v) => {
                let (ok, note) = target(want, v, want);
                res(ok, note)
            }
        },
        Expect::ChangesBy(n) => match (b.and_then(Value::as_decimal), a) {
            (Some(x), Some(v)) => match x.checked_add(n) {
                Some(want) => {
                    let (ok, note) = target(want, v, n);
                    res(ok, note)
                }
                None => res(false, Some("overflow".into())),
            },
            _ => res(false, Some("needs a number on both sides".into())),
        },
        Expect::Between(lo, hi) => match a.map(|v| (v, v.as_decimal())) {
            Some((_, Some(v))) => res(v >= lo && v <= hi, None),
            Some((Value::Null, _)) => res(false, Some("NULL is not in any range".into())),
            Some(_) => res(false, Some(WIDE.into())),
            None => res(false, Some("missing after".into())),
        },
    }
}

fn rule_text(rule: &Rule, exact: bool) -> String {
    let tol = if exact {
        Tolerance::Exact
    } else {
        rule.tolerance
    };
    match rule.expect {
        Expect::Unchanged => match tol {
            Tolerance::Exact => "unchanged".into(),
            t => format!("unchanged ({t})"),
        },
        Expect::MayChange => "may change".into(),
        e => match tol {
            Tolerance::Exact => e.to_string(),
            t => format!("{e} ({t})"),
        },
    }
}

/// A light candidate for the worst-groups list (materialized only for the top N).
struct Candidate {
    failing: bool,
    magnitude: Decimal,
    bi: Option<usize>,
    ai: Option<usize>,
    col: usize,
    note: Option<String>,
    difference: Option<Decimal>,
}

pub(super) fn compare_keyed(
    bt: &Table,
    at: &Table,
    rules: &[ColumnRule],
    worst_n: usize,
) -> CheckResult {
    let mut values = Vec::new();
    // One row on each side under the same key (a custom query keyed by a constant): its values
    // are shown like an ungrouped check's, not as "1 group changed".
    let one_row = bt.len() == 1
        && at.len() == 1
        && bt.key_len == at.key_len
        && cmp_keys(bt.key(0), at.key(0)) == Ordering::Equal;
    let grouped = (bt.key_len > 0 || at.key_len > 0) && !one_row;
    // Value columns of `after` by name (custom SQL columns are compared by name).
    let col_in = |t: &Table, label: &str| {
        t.columns[t.key_len..]
            .iter()
            .position(|c| c.name == label)
            .map(|p| p + t.key_len)
    };
    let mut any_fail = false;
    let mut any_change = false;
    let mut missing_cols = Vec::new();
    let cols: Vec<(usize, Option<usize>, Option<usize>)> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| (i, col_in(bt, &r.label), col_in(at, &r.label)))
        .collect();
    for (i, bcol, acol) in &cols {
        if bcol.is_none() || acol.is_none() {
            any_fail = true;
            missing_cols.push(rules[*i].label.clone());
            values.push(Comparison {
                key: Vec::new(),
                metric: rules[*i].label.clone(),
                scope: ValueScope::Value,
                baseline: None,
                after: None,
                difference: None,
                rule: "column present on both sides".into(),
                ok: false,
                note: Some(
                    if bcol.is_none() {
                        "column missing in the baseline"
                    } else {
                        "column missing after the migration"
                    }
                    .into(),
                ),
            });
        }
    }
    if let Some(extra) = at.columns[at.key_len..]
        .iter()
        .find(|c| !rules.iter().any(|r| r.label == c.name))
    {
        any_fail = true;
        values.push(Comparison {
            key: Vec::new(),
            metric: extra.name.clone(),
            scope: ValueScope::Value,
            baseline: None,
            after: None,
            difference: None,
            rule: "column present on both sides".into(),
            ok: false,
            note: Some("column new after the migration (not in the baseline)".into()),
        });
    }
    let usable: Vec<(usize, usize, usize)> = cols
        .iter()
        .filter_map(|(i, b, a)| Some((*i, (*b)?, (*a)?)))
        .collect();

    if !grouped {
        for &(i, bc, ac) in &usable {
            let r = &rules[i];
            let bv = (!bt.is_empty()).then(|| &bt.row(0)[bc]);
            let av = (!at.is_empty()).then(|| &at.row(0)[ac]);
            let j = judge(bv, av, &r.rule, r.exact);
            any_fail |= !j.ok;
            any_change |= j.changed;
            values.push(Comparison {
                key: Vec::new(),
                metric: r.label.clone(),
                scope: ValueScope::Value,
                baseline: bv.cloned(),
                after: av.cloned(),
                difference: j.difference.map(|d| d.to_string()),
                rule: rule_text(&r.rule, r.exact),
                ok: j.ok,
                note: j.note,
            });
        }
        let status = status_of(any_fail, any_change, rules);
        let summary = ungrouped_summary(&values, status);
        return CheckResult {
            name: String::new(),
            kind: ResultKind::Metrics,
            status,
            after_only: false,
            summary,
            tolerance: tolerance_text(rules, false),
            expect: expect_text(rules),
            values,
            groups: None,
            worst: Vec::new(),
            all_changes: Vec::new(),
            baseline_sql: Vec::new(),
            after_sql: Vec::new(),
            error: None,
        };
    }

    // Merge on sorted keys.
    let mut stats = GroupStats {
        baseline_groups: bt.len(),
        after_groups: at.len(),
        ..GroupStats::default()
    };
    let mut totals: Vec<(Option<Value>, Option<Value>, Option<String>)> =
        vec![(None, None, None); rules.len()];
    let mut candidates: Vec<Candidate> = Vec::new();
    // Every differing group and metric, for `--changes-out` (the report keeps the worst only).
    let keep_all = KEEP_ALL_CHANGES.load(Atomic::Relaxed);
    let mut all_changes: Vec<Comparison> = Vec::new();
    let key_text =
        |t: &Table, i: usize| t.key(i).iter().map(ToString::to_string).collect::<Vec<_>>();
    let scope_of = |b: Option<usize>, a: Option<usize>| match (b, a) {
        (Some(_), None) => ValueScope::Disappeared,
        (None, Some(_)) => ValueScope::Appeared,
        _ => ValueScope::Group,
    };
    let (mut bi, mut ai) = (0usize, 0usize);
    while bi < bt.len() || ai < at.len() {
        let ord = match (bi < bt.len(), ai < at.len()) {
            (true, true) => cmp_keys(bt.key(bi), at.key(ai)),
            (true, false) => Ordering::Less,
            _ => Ordering::Greater,
        };
        let (bidx, aidx) = match ord {
            Ordering::Less => (Some(bi), None),
            Ordering::Greater => (None, Some(ai)),
            Ordering::Equal => (Some(bi), Some(ai)),
        };
        match (bidx, aidx) {
            (Some(_), None) => stats.disappeared += 1,
            (None, Some(_)) => stats.appeared += 1,
            _ => {}
        }
        let mut group_changed = bidx.is_none() || aidx.is_none();
        let mut group_failing = false;
        for &(i, bc, ac) in &usable {
            let r = &rules[i];
            let bv = bidx.map(|x| &bt.row(x)[bc]);
            let av = aidx.map(|x| &at.row(x)[ac]);
            if r.rule.scope.total() {
                accumulate(&mut totals[i], bv, av, r.total);
            }
            let one_sided = bv.is_none() || av.is_none();
            let key = || match (bidx, aidx) {
                (Some(b), _) => key_text(bt, b),
                (None, Some(a)) => key_text(at, a),
                _ => Vec::new(),
            };
            let fails_one_sided = one_sided && r.rule.expect == Expect::Unchanged;
            if !r.rule.scope.per_group() && fails_one_sided {
                // Appeared/disappeared groups still count as differences under a total-only rule.
                group_failing = true;
                group_changed = true;
            }
            if !r.rule.scope.per_group() {
                let differs = one_sided || bv.zip(av).is_some_and(|(x, y)| !x.same(y));
                if differs {
                    group_changed = true;
                }
                if differs && keep_all {
                    all_changes.push(Comparison {
                        key: key(),
                        metric: r.label.clone(),
                        scope: scope_of(bidx, aidx),
                        baseline: bv.cloned(),
                        after: av.cloned(),
                        difference: bv
                            .and_then(Value::as_decimal)
                            .zip(av.and_then(Value::as_decimal))
                            .map(|(x, y)| (y - x).to_string()),
                        rule: format!("{} (judged on the total)", rule_text(&r.rule, r.exact)),
                        ok: !fails_one_sided,
                        note: None,
                    });
                }
                continue;
            }
            let j = judge(bv, av, &r.rule, r.exact);
            group_changed |= j.changed;
            group_failing |= !j.ok;
            if j.changed || !j.ok {
                if keep_all {
                    all_changes.push(Comparison {
                        key: key(),
                        metric: r.label.clone(),
                        scope: scope_of(bidx, aidx),
                        baseline: bv.cloned(),
                        after: av.cloned(),
                        difference: j.difference.map(|d| d.to_string()),
                        rule: rule_text(&r.rule, r.exact),
                        ok: j.ok,
                        note: j.note.clone(),
                    });
                }
                let magnitude = j
                    .difference
                    .or_else(|| av.or(bv).and_then(Value::as_decimal))
                    .map(|d| d.abs())
                    .unwrap_or(Decimal::MAX);
                candidates.push(Candidate {
                    failing: !j.ok,
                    magnitude,
                    bi: bidx,
                    ai: aidx,
                    col: i,
                    note: j.note,
                    difference: j.difference,
                });
                if candidates.len() > worst_n.max(1) * 8 {
                    prune(&mut candidates, worst_n);
                }
            }
        }
        if group_changed {
            stats.changed += 1;
            any_change = true;
        }
        if group_failing {
            stats.failing += 1;
            any_fail = true;
        }
        match ord {
            Ordering::Less => bi += 1,
            Ordering::Greater => ai += 1,
            Ordering::Equal => {
                bi += 1;
                ai += 1;
            }
        }
    }
    prune(&mut candidates, worst_n);
    let worst: Vec<Comparison> = candidates
        .into_iter()
        .map(|c| {
            let r = &rules[c.col];
            let (_, bc, ac) = usable
                .iter()
                .find(|(i, _, _)| *i == c.col)
                .copied()
                .unwrap_or((0, 0, 0));
            let scope = scope_of(c.bi, c.ai);
            Comparison {
                key: match (c.bi, c.ai) {
                    (Some(b), _) => key_text(bt, b),
                    (None, Some(a)) => key_text(at, a),
                    _ => Vec::new(),
                },
                metric: r.label.clone(),
                scope,
                baseline: c.bi.map(|b| bt.row(b)[bc].clone()),
                after: c.ai.map(|a| at.row(a)[ac].clone()),
                difference: c.difference.map(|d| d.to_string()),
                rule: rule_text(&r.rule, r.exact),
                ok: !c.failing,
                note: c.note,
            }
        })
        .collect();

    for &(i, _, _) in &usable {
        let r = &rules[i];
        if !r.rule.scope.total() {
            continue;
        }
        let (tb, ta, note) = &totals[i];
        let mut j = judge(tb.as_ref(), ta.as_ref(), &r.rule, r.exact);
        if let Some(n) = note {
            j.ok = false;
            j.note = Some(n.clone());
        }
        any_fail |= !j.ok;
        values.push(Comparison {
            key: Vec::new(),
            metric: r.label.clone(),
            scope: ValueScope::Total,
            baseline: tb.clone(),
            after: ta.clone(),
            difference: j.difference.map(|d| d.to_string()),
            rule: rule_text(&r.rule, r.exact),
            ok: j.ok,
            note: j.note,
        });
    }
    let status = status_of(any_fail, any_change, rules);
    let summary = grouped_summary(&stats, &values, status, !missing_cols.is_empty());
    CheckResult {
        name: String::new(),
        kind: ResultKind::Metrics,
        status,
        after_only: false,
        summary,
        tolerance: tolerance_text(rules, true),
        expect: expect_text(rules),
        values,
        groups: Some(stats),
        worst,
        all_changes,
        baseline_sql: Vec::new(),
        after_sql: Vec::new(),
        error: None,
    }
}

/// Keep the `n` worst candidates: failing first, then by absolute difference.
fn prune(c: &mut Vec<Candidate>, n: usize) {
    c.sort_by(|x, y| {
        y.failing
            .cmp(&x.failing)
            .then(y.magnitude.cmp(&x.magnitude))
    });
    c.truncate(n);
}

fn accumulate(
    acc: &mut (Option<Value>, Option<Value>, Option<String>),
    b: Option<&Value>,
    a: Option<&Value>,
    how: Option<Combine>,
) {
    let Some(how) = how else { return };
    for (slot, v) in [(&mut acc.0, b), (&mut acc.1, a)] {
        let Some(v) = v else { continue };
        if v.is_null() {
            continue;
        }
        // min/max of timestamps, dates and text: the smallest or largest value, in the order
        // group keys sort by (ISO UTC timestamps sort chronologically).
        let ordered = matches!(how, Combine::Min | Combine::Max)
            && v.as_decimal().is_none()
            && !matches!(v, Value::BigNum(_));
        if ordered {
            let replace = slot.as_ref().is_none_or(|cur| {
                let o = v.key_cmp(cur);
                if how == Combine::Min {
                    o.is_lt()
                } else {
                    o.is_gt()
                }
            });
            if replace {
                *slot = Some(v.clone());
            }
            continue;
        }
        let Some(d) = v.as_decimal() else {
            acc.2 = Some(WIDE.into());
            continue;
        };
        let cur = slot.as_ref().and_then(Value::as_decimal);
        let next = match (cur, how) {
            (None, _) => Some(d),
            (Some(c), Combine::Sum) => c.checked_add(d),
            (Some(c), Combine::Min) => Some(c.min(d)),
            (Some(c), Combine::Max) => Some(c.max(d)),
        };
        match next {
            Some(n) => *slot = Some(Value::Dec(n)),
            None => acc.2 = Some("the total overflows 28 digits".into()),
        }
    }
}

fn status_of(fail: bool, change: bool, rules: &[ColumnRule]) -> Status {
    if fail {
        Status::Fail
    } else if change && rules.iter().any(|r| r.rule.expect == Expect::MayChange) {
        Status::Warn
    } else {
        Status::Pass
    }
}

/// The tolerance as applied; a grouped check always says where (per group, on the total or
/// both), in every format.
pub(super) fn tolerance_text(rules: &[ColumnRule], grouped: bool) -> String {
    let mut parts: Vec<String> = Vec::new();
    for r in rules {
        let t = if r.exact {
            Tolerance::Exact
        } else {
            r.rule.tolerance
        };
        let scope = match (grouped, r.rule.scope) {
            (false, _) => "",
            (true, Scope::Group) => " per group",
            (true, Scope::Total) => " on the total",
            (true, Scope::Both) => " per group and total",
        };
        let s = format!("{t}{scope}");
        if !parts.contains(&s) {
            parts.push(s);
        }
    }
    parts.join("; ")
}

pub(super) fn expect_text(rules: &[ColumnRule]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for r in rules {
        let s = r.rule.expect.to_string();
        if !parts.contains(&s) {
            parts.push(s);
        }
    }
    parts.join("; ")
}

fn ungrouped_summary(values: &[Comparison], status: Status) -> String {
    let failing: Vec<&Comparison> = values.iter().filter(|v| !v.ok).collect();
    if let Some(f) = failing.first() {
        let show = |v: &Option<Value>| readable_value(v.as_ref());
        let mut s = format!("{}: {} -> {}", f.metric, show(&f.baseline), show(&f.after));
        if let Some(d) = &f.difference {
            s.push_str(&format!(" (diff {})", grouped_digits(d)));
        }
        if let Some(n) = &f.note {
            s.push_str(&format!("; {n}"));
        }
        if failing.len() > 1 {
            s.push_str(&format!(
                "; {} more value(s) fail",
                grouped_count(failing.len() - 1)
            ));
        }
        s
    } else if status == Status::Warn {
        "changed, as allowed".into()
    } else if values.iter().any(|v| {
        v.baseline
            .as_ref()
            .zip(v.after.as_ref())
            .is_some_and(|(b, a)| !b.same(a))
    }) {
        "within tolerance".into()
    } else {
        match values {
            [one] => format!(
                "{} = {}",
                one.metric,
                one.after
                    .as_ref()
                    .map_or("-".into(), |v| readable_value(Some(v)))
            ),
            _ => format!("{} values identical", grouped_count(values.len())),
        }
    }
}

fn grouped_summary(
    stats: &GroupStats,
    totals: &[Comparison],
    status: Status,
    missing: bool,
) -> String {
    let n = stats.after_groups.max(stats.baseline_groups);
    let mut s = format!(
        "{} group{}: {} changed, {} appeared, {} disappeared",
        grouped_count(n),
        if n == 1 { "" } else { "s" },
        grouped_count(stats.changed),
        grouped_count(stats.appeared),
        grouped_count(stats.disappeared)
    );
    if stats.failing > 0 {
        s.push_str(&format!(
            "; {} break the rule",
            grouped_count(stats.failing)
        ));
    }
    let bad_totals: Vec<&str> = totals
        .iter()
        .filter(|t| !t.ok && t.scope == ValueScope::Total)
        .map(|t| t.metric.as_str())
        .collect();
    if !bad_totals.is_empty() {
        s.push_str(&format!(
            "; total of {} breaks the rule",
            bad_totals.join(", ")
        ));
    }
    if missing {
        s.push_str("; a column is missing on one side");
    }
    if status == Status::Warn {
        s.push_str(" (changes allowed)");
    }
    s
}

/// Schema facts: declared attributes are asserted on the post-state; undeclared ones must be
/// unchanged when the object exists on both sides.
pub(super) fn compare_fact(
    object: &FactObject,
    expect: &FactExpect,
    may_change: bool,
    compare_only: bool,
    bt: &Table,
    at: &Table,
) -> CheckResult {
    let mut values = Vec::new();
    if let FactObject::ViewsQueryable(_) = object {
        for i in 0..at.len() {
            let row = at.row(i);
            let before = (0..bt.len())
                .find(|&j| bt.row(j)[0].same(&row[0]))
                .map(|j| bt.row(j)[1].clone());
            let ok = if compare_only {
                before.as_ref() == Some(&row[1])
            } else {
                row[1] == Value::Bool(true)
            };
            values.push(Comparison {
                key: vec![row[0].to_string()],
                metric: format!("{} queryable", row[0]),
                scope: ValueScope::Value,
                baseline: before,
                after: Some(row[1].clone()),
                difference: None,
                rule: "must be queryable".into(),
                ok,
                note: match &row[2] {
                    Value::Text(t) => Some(t.to_string()),
                    _ => None,
                },
            });
        }
    } else {
        let get = |t: &Table, name: &str| -> Option<Value> {
            let pos = t.columns.iter().position(|c| c.name == name)?;
            (!t.is_empty()).then(|| t.row(0)[pos].clone())
        };
        let both_exist = compare_only
            || get(bt, "exists") == Some(Value::Bool(true))
                && get(at, "exists") == Some(Value::Bool(true));
        let declared: Vec<(&str, Option<Value>)> = if compare_only {
            Vec::new()
        } else {
            vec![
                (
                    "exists",
                    Some(Value::Bool(expect.exists.unwrap_or(
                        !matches!(object, FactObject::Rls(_)) || expect.enabled.is_some(),
                    ))),
                ),
                (
                    "type",
                    expect.data_type.clone().map(|t| Value::Text(t.into())),
                ),
                ("nullable", expect.nullable.map(Value::Bool)),
                ("validated", expect.validated.map(Value::Bool)),
                ("valid", expect.valid.map(Value::Bool)),
                ("enabled", expect.enabled.map(Value::Bool)),
                (
                    "kind",
                    expect.view_kind.clone().map(|k| Value::Text(k.into())),
                ),
                ("populated", expect.populated.map(Value::Bool)),
            ]
        };
        // A column fact that declares anything covers every partition of a partitioned
        // table; `columns_absent` holds only when nothing is left.
        let declares_column =
            expect.exists.is_some() || expect.data_type.is_some() || expect.nullable.is_some();
        for col in &at.columns {
            let name = col.name.as_str();
            let after = get(at, name);
            let before = get(bt, name);
            let in_baseline = bt.columns.iter().any(|c| c.name == name);
            let want = declared
                .iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, v)| v.clone());
            // An attribute an older baseline did not capture, not declared: left out, so that
            // an old baseline shows no change it cannot know about.
            if !in_baseline && want.is_none() && !matches!(name, "present" | "partitions") {
                continue;
            }
            // No partition disagrees (or the table is not partitioned): nothing to show.
            if name == "partitions" && matches!(after, None | Some(Value::Null)) {
                continue;
            }
            let after = match (name, after) {
                ("present", None | Some(Value::Null)) => Some(Value::Text("(none)".into())),
                (_, a) => a,
            };
            let must_be_null = !compare_only
                && (name == "present"
                    || (name == "partitions"
                        && matches!(object, FactObject::Column(..))
                        && declares_column));
            let (ok, rule, note) = match &want {
                _ if must_be_null => {
                    let ok = matches!(&after, None | Some(Value::Null))
                        || (name == "present" && after == Some(Value::Text("(none)".into())));
                    let rule = if name == "present" {
                        "every listed column gone (partitions included)"
                    } else {
                        "every partition agrees"
                    };
                    (ok, rule.to_string(), None)
                }
                Some(w) => {
                    let ok = match (after.as_ref(), w) {
                        (Some(Value::Text(a)), Value::Text(w)) if name == "type" => {
                            type_matches(a, w)
                        }
                        (Some(a), w) => a.same(w),
                        (None, _) => false,
                    };
                    (ok, format!("must be {w}"), None)
                }
                // Names of objects found by what they are, attributes a baseline of an
                // older migval did not capture: reported, not judged.
                None if INFO.contains(&name) || !in_baseline => (true, "reported".into(), None),
                None if !both_exist || may_change => (
                    true,
                    if may_change {
                        "may change".into()
                    } else {
                        "reported".into()
                    },
                    None,
                ),
                None => {
                    let same = match (&before, &after) {
                        (Some(Value::Text(b)), Some(Value::Text(a))) if name == "type" => {
                            type_matches(a, b) || type_matches(b, a)
                        }
                        (Some(b), Some(a)) => b.same(a),
                        (None, None) => true,
                        _ => false,
                    };
                    (same, "unchanged".into(), (!same).then(|| "changed although not declared; declare it in the check or use expect = \"may_change\"".to_string()))
                }
            };
            values.push(Comparison {
                key: Vec::new(),
                metric: name.to_string(),
                scope: ValueScope::Value,
                baseline: before,
                after,
                difference: None,
                rule,
                ok,
                note,
            });
        }
    }
    let fail = values.iter().any(|v| !v.ok);
    let change = values.iter().any(|v| {
        v.baseline
            .as_ref()
            .zip(v.after.as_ref())
            .is_some_and(|(b, a)| !b.same(a))
    });
    let status = if fail {
        Status::Fail
    } else if change && may_change {
        Status::Warn
    } else {
        Status::Pass
    };
    let summary = if let Some(f) = values.iter().find(|v| !v.ok) {
        format!(
            "{}: {} ({}){}",
            f.metric,
            f.after
                .as_ref()
                .map_or("absent".into(), ToString::to_string),
            f.rule,
            f.note
                .as_ref()
                .map(|n| format!("; {n}"))
                .unwrap_or_default()
        )
    } else {
        values
            .iter()
            .map(|v| {
                format!(
                    "{} = {}",
                    v.metric,
                    v.after.as_ref().map_or("-".into(), ToString::to_string)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    CheckResult {
        name: String::new(),
        kind: ResultKind::Schema,
        status,
        after_only: false,
        summary,
        tolerance: "exact".into(),
        expect: if may_change {
            "may change".into()
        } else {
            "as declared, otherwise unchanged".into()
        },
        values,
        groups: None,
        worst: Vec::new(),
        all_changes: Vec::new(),
        baseline_sql: Vec::new(),
        after_sql: Vec::new(),
        error: None,
    }
}

/// Fact attributes that are reported, never judged (the names of keys found by what they are).
const INFO: &[&str] = &["name"];

/// Whether a captured type (schema-qualified outside pg_catalog: `public.cents`) is the one
/// declared: the same text up to case and spaces, or the declared name without its schema.
fn type_matches(captured: &str, declared: &str) -> bool {
    let (c, d) = (normalize_type(captured), normalize_type(declared));
    if c == d {
        return true;
    }
    !d.contains('.') && c.split_once('.').is_some_and(|(_, rest)| rest == d)
}

/// `numeric(12, 2)` and `NUMERIC(12,2)` name the same type.
fn normalize_type(t: &str) -> String {
    t.chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Column, Kind};

    fn d(s: &str) -> Value {
        Value::Dec(s.parse().unwrap())
    }

    fn rule(tolerance: Tolerance, expect: Expect, scope: Scope) -> Rule {
        Rule {
            tolerance,
            expect,
            scope,
        }
    }

    fn grouped(rows: &[(i64, Value)]) -> Table {
        let mut t = Table::new(
            vec![
                Column {
                    name: "g".into(),
                    kind: Kind::Int,
                },
                Column {
                    name: "sum(x)".into(),
                    kind: Kind::Decimal,
                },
            ],
            1,
        );
        for (k, v) in rows {
            t.cells.push(Value::Int(*k));
            t.cells.push(v.clone());
        }
        t
    }

    fn sum_rule(r: Rule) -> Vec<ColumnRule> {
        vec![ColumnRule {
            label: "sum(x)".into(),
            rule: r,
            exact: false,
            total: Some(Combine::Sum),
        }]
    }

    #[test]
    fn null_is_not_zero() {
        let r = Rule::default();
        assert!(!judge(Some(&Value::Null), Some(&Value::Int(0)), &r, false).ok);
        assert!(judge(Some(&Value::Null), Some(&Value::Null), &r, false).ok);
        let zero = rule(Tolerance::Exact, Expect::Zero, Scope::Group);
        assert!(!judge(None, Some(&Value::Null), &zero, true).ok);
    }

    #[test]
    fn counts_ignore_tolerance() {
        let r = rule(
            Tolerance::Abs("5".parse().unwrap()),
            Expect::Unchanged,
            Scope::Group,
        );
        assert!(!judge(Some(&Value::Int(10)), Some(&Value::Int(11)), &r, true).ok);
        assert!(judge(Some(&d("10")), Some(&d("11")), &r, false).ok);
    }

    #[test]
    fn tolerance_per_group_versus_total() {
        // +0.01 in one group, -0.01 in another: per group within 0.01, total exactly equal.
        let b = grouped(&[(1, d("100.00")), (2, d("200.00"))]);
        let a = grouped(&[(1, d("100.01")), (2, d("199.99"))]);
        let exact_total = sum_rule(rule(Tolerance::Exact, Expect::Unchanged, Scope::Total));
        assert_eq!(compare_keyed(&b, &a, &exact_total, 10).status, Status::Pass);
        let exact_group = sum_rule(rule(Tolerance::Exact, Expect::Unchanged, Scope::Group));
        let r = compare_keyed(&b, &a, &exact_group, 10);
        assert_eq!(r.status, Status::Fail);
        assert_eq!(r.groups.as_ref().unwrap().failing, 2);
        let abs_group = sum_rule(rule(
            Tolerance::Abs("0.01".parse().unwrap()),
            Expect::Unchanged,
            Scope::Both,
        ));
        assert_eq!(compare_keyed(&b, &a, &abs_group, 10).status, Status::Pass);
    }

    #[test]
    fn appeared_and_disappeared_groups_are_differences() {
        let b = grouped(&[(1, d("1")), (2, d("2"))]);
        let a = grouped(&[(1, d("1")), (3, d("2"))]);
        let r = compare_keyed(&b, &a, &sum_rule(Rule::default()), 10);
        assert_eq!(r.status, Status::Fail);
        let g = r.groups.unwrap();
        assert_eq!((g.appeared, g.disappeared, g.changed), (1, 1, 2));
        assert!(
            r.worst
                .iter()
                .any(|w| w.scope == ValueScope::Appeared && w.key == vec!["3"])
        );
    }

    #[test]
    fn worst_groups_sorted_by_absolute_difference() {
        let b = grouped(&[(1, d("10")), (2, d("10")), (3, d("10"))]);
        let a = grouped(&[(1, d("11")), (2, d("-40")), (3, d("13"))]);
        let r = compare_keyed(&b, &a, &sum_rule(Rule::default()), 2);
        let keys: Vec<&str> = r.worst.iter().map(|w| w.key[0].as_str()).collect();
        assert_eq!(keys, vec!["2", "3"]);
        assert_eq!(r.worst[0].difference.as_deref(), Some("-50"));
    }

    #[test]
    fn intents() {
        let by = |e| rule(Tolerance::Exact, e, Scope::Group);
        let ten = d("10");
        assert!(
            judge(
                Some(&ten),
                Some(&d("15")),
                &by(Expect::ChangesBy("5".parse().unwrap())),
                false
            )
            .ok
        );
        assert!(
            !judge(
                Some(&ten),
                Some(&d("16")),
                &by(Expect::ChangesBy("5".parse().unwrap())),
                false
            )
            .ok
        );
        assert!(
            judge(
                Some(&ten),
                Some(&d("3")),
                &by(Expect::Equals("3".parse().unwrap())),
                false
            )
            .ok
        );
        assert!(
            judge(
                Some(&ten),
                Some(&d("7")),
                &by(Expect::Between("5".parse().unwrap(), "8".parse().unwrap())),
                false
            )
            .ok
        );
        assert!(
            !judge(
                Some(&ten),
                Some(&d("9")),
                &by(Expect::Between("5".parse().unwrap(), "8".parse().unwrap())),
                false
            )
            .ok
        );
        assert!(judge(Some(&ten), Some(&d("99")), &by(Expect::MayChange), false).ok);
        assert!(judge(Some(&ten), Some(&Value::Int(0)), &by(Expect::Zero), false).ok);
    }

    #[test]
    fn wide_numerics_compare_exactly_without_rounding() {
        let r = rule(
            Tolerance::Abs("1".parse().unwrap()),
            Expect::Unchanged,
            Scope::Group,
        );
        let a = Value::BigNum("0.00000000000000000000000000001".into());
        let b = Value::BigNum("0.00000000000000000000000000002".into());
        assert!(judge(Some(&a), Some(&a.clone()), &r, false).ok);
        let j = judge(Some(&a), Some(&b), &r, false);
        assert!(!j.ok && j.note.unwrap().contains("28 digits"));
    }
}
