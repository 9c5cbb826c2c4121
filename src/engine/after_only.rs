//! Checks with nothing on one side: where an after-only intent is evaluated, and what a check
//! whose object is gone after the migration reports.
//!
//! ```text
//!   baseline        after              verdict
//!   (new)           captured           the post-state judged by the intent alone
//!   (new)           missing            FAIL: declared new, the migration did not create it
//!   (new)           (new)              PASS: nothing to compare (a rollback removed it)
//!   captured        missing            FAIL: "view `x` no longer exists", other checks run
//! ```

use crate::model::{
    Absence, AbsenceReason, CheckResult, MissingObject, Outcome, Status, Table, Value,
    grouped_count, readable_value,
};
use crate::spec::{Check, CheckKind};

use super::compare::Sides;
use super::facts::compare_fact;
use super::keyed::compare_keyed;
use super::preflight::explain_after;
use super::rules::column_rules;

pub(super) fn compare(check: &Check, b: &Outcome, a: &Outcome, sides: &Sides) -> CheckResult {
    use AbsenceReason::{Missing, New};
    match (b, a) {
        (Outcome::Absent(x), Outcome::Captured(at)) if x.reason == New => judge_new(check, at, sides),
        (Outcome::Absent(x), Outcome::Absent(y)) if x.reason == New && y.reason == Missing => {
            let mut r = plain(
                Status::Fail,
                format!(
                    "declared new, but not there after the migration: {}",
                    describe(y, sides)
                ),
            );
            r.after_only = true;
            r
        }
        (Outcome::Absent(x), Outcome::Absent(y)) if x.reason == New && y.reason == New => {
            let mut r = plain(
                Status::Pass,
                "new object, absent on both sides: nothing to compare".into(),
            );
            r.after_only = true;
            r
        }
        (Outcome::Captured(_) | Outcome::Streamed(_), Outcome::Absent(y)) if y.reason == Missing => {
            plain(Status::Fail, gone(y, sides))
        }
        _ => plain(
            Status::Error,
            "the two captures do not fit together (absent on one side for another reason): take a new baseline".into(),
        ),
    }
}

/// The post-state of an after-only check, judged against an empty baseline.
fn judge_new(check: &Check, at: &Table, sides: &Sides) -> CheckResult {
    let empty = Table::new(at.columns.clone(), at.key_len);
    let mut r = match &check.kind {
        CheckKind::Schema(s) => compare_fact(
            &s.object,
            &s.expect,
            s.may_change,
            s.compare_only,
            &empty,
            at,
        ),
        CheckKind::Sizes(s) => super::sizes::compare(s, &empty, at),
        kind => {
            let rules = column_rules(kind, &at.columns, at.key_len);
            let mut r = compare_keyed(&empty, at, &rules, sides.spec.settings.worst_groups);
            r.summary = new_summary(&r);
            r
        }
    };
    r.after_only = true;
    r
}

fn new_summary(r: &CheckResult) -> String {
    let show = |v: &Option<Value>| readable_value(v.as_ref());
    if let Some(g) = &r.groups {
        let mut s = format!(
            "new: {} group{}",
            grouped_count(g.after_groups),
            if g.after_groups == 1 { "" } else { "s" }
        );
        if g.failing > 0 {
            s.push_str(&format!(
                "; {} break the rule ({})",
                grouped_count(g.failing),
                r.expect
            ));
        }
        return s;
    }
    let failing: Vec<String> = r
        .values
        .iter()
        .filter(|v| !v.ok)
        .map(|v| {
            let mut s = format!("{} = {} ({})", v.metric, show(&v.after), v.rule);
            if let Some(n) = &v.note {
                s.push_str(&format!("; {n}"));
            }
            s
        })
        .collect();
    if !failing.is_empty() {
        return failing.join("; ");
    }
    let shown: Vec<String> = r
        .values
        .iter()
        .map(|v| format!("{} = {}", v.metric, show(&v.after)))
        .collect();
    format!("new: {}", shown.join(", "))
}

/// "table or view `x` no longer exists after the migration ...", with the hint.
fn gone(a: &Absence, sides: &Sides) -> String {
    let parts: Vec<String> = a
        .missing
        .iter()
        .map(|m| {
            let hint = explain_after(m, sides.spec, Some(sides.before), sides.after);
            match m {
                MissingObject::Relation { name, searched } => format!(
                    "table or view `{name}` no longer exists after the migration (searched schemas: {}){hint}",
                    searched.join(", ")
                ),
                MissingObject::Column { relation, column } => format!(
                    "column `{column}` no longer exists in `{relation}` after the migration{hint}"
                ),
            }
        })
        .collect();
    parts.join("; ")
}

fn describe(a: &Absence, sides: &Sides) -> String {
    a.missing
        .iter()
        .map(|m| {
            let hint = explain_after(m, sides.spec, Some(sides.before), sides.after);
            format!("{m}{hint}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn plain(status: Status, summary: String) -> CheckResult {
    CheckResult::bare(status, summary)
}
