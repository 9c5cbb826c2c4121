//! The rules a value is judged by: tolerance (exact, absolute, relative), intent (unchanged,
//! may change, zero, equals, changes by, between) and scope (per group, on the total, both),
//! and how per-group values combine into a total. Pure functions over values: the keyed merge
//! ([`super::keyed`]) and the after-only checks call them, nothing here reads a capture.
//!
//! Counts are always exact. NULL is never zero. A value wider than rust_decimal (28 digits) is
//! compared exactly as text and never rounded.

use rust_decimal::Decimal;

use crate::model::{Column, Kind, Status, Value};
use crate::spec::{CheckKind, Expect, Rule, Scope, Tolerance};

/// How one value column is judged.
#[derive(Debug, Clone)]
pub(super) struct ColumnRule {
    pub label: String,
    pub rule: Rule,
    /// Counts: exact whatever the tolerance.
    pub exact: bool,
    /// How per-group values combine into a total (None: they cannot).
    pub total: Option<Combine>,
}

/// How per-group values combine into a total.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Combine {
    Sum,
    Min,
    Max,
}

/// The rule of each value column of a check; a custom query's columns come from its result
/// (`columns`, the first `key_len` of them the key).
pub(super) fn column_rules(
    kind: &CheckKind,
    columns: &[Column],
    key_len: usize,
) -> Vec<ColumnRule> {
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
        CheckKind::Custom(c) => columns[key_len..]
            .iter()
            .map(|col| ColumnRule {
                label: col.name.clone(),
                rule: c.rule,
                exact: col.kind == Kind::Int,
                total: Some(Combine::Sum),
            })
            .collect(),
        CheckKind::Schema(_) | CheckKind::Rows(_) | CheckKind::Sizes(_) => Vec::new(),
    }
}

/// The judgement of one value.
pub(super) struct Judged {
    pub ok: bool,
    pub changed: bool,
    pub difference: Option<Decimal>,
    pub note: Option<String>,
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

pub(super) const WIDE: &str = "the value is wider than 28 digits (or NaN/Infinity): compared exactly as text, a tolerance cannot apply; round it in the check (e.g. sum(round(x, 2))) if a tolerance is meant";

/// Judge one value (`b` before, `a` after; `None`: the group is absent on that side) by its
/// rule; `exact` (a count) ignores the tolerance.
pub(super) fn judge(b: Option<&Value>, a: Option<&Value>, rule: &Rule, exact: bool) -> Judged {
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

/// The rule as the report words it.
pub(super) fn rule_text(rule: &Rule, exact: bool) -> String {
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

/// A total being summed (min-ed, max-ed) over the groups: baseline, after, and why it cannot
/// be judged (a value too wide, an overflow).
pub(super) type Total = (Option<Value>, Option<Value>, Option<String>);

/// Add one group's values (either side may be absent) to `acc`.
pub(super) fn accumulate(
    acc: &mut Total,
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

/// FAIL if a value broke its rule; WARN if something changed where a rule allows it.
pub(super) fn status_of(fail: bool, change: bool, rules: &[ColumnRule]) -> Status {
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn totals_skip_null_and_say_why_they_cannot_be_judged() {
        let mut sum: Total = (None, None, None);
        for (b, a) in [
            (d("1.50"), d("1.5")),
            (Value::Null, d("2")),
            (d("3"), Value::Null),
        ] {
            accumulate(&mut sum, Some(&b), Some(&a), Some(Combine::Sum));
        }
        // NULL adds nothing (it is not zero), and the exact decimals add up exactly.
        assert_eq!(sum.0, Some(d("4.50")));
        assert_eq!(sum.1, Some(d("3.5")));
        assert_eq!(sum.2, None);
        let mut min: Total = (None, None, None);
        for t in ["b", "a", "c"] {
            let v = Value::Text(t.into());
            accumulate(&mut min, Some(&v), None, Some(Combine::Min));
        }
        assert_eq!(min.0, Some(Value::Text("a".into())));
        assert_eq!(min.1, None, "a group absent after adds nothing after");
        let mut wide: Total = (None, None, None);
        let big = Value::BigNum("1e400".into());
        accumulate(&mut wide, Some(&big), Some(&big), Some(Combine::Sum));
        assert!(wide.2.as_deref().is_some_and(|n| n.contains("28 digits")));
        let mut over: Total = (None, None, None);
        let max = Value::Dec(Decimal::MAX);
        accumulate(&mut over, Some(&max), None, Some(Combine::Sum));
        accumulate(&mut over, Some(&max), None, Some(Combine::Sum));
        assert_eq!(over.2.as_deref(), Some("the total overflows 28 digits"));
    }

    #[test]
    fn relative_tolerance_scales_with_the_baseline_and_the_text_says_where() {
        let rel = Tolerance::Rel("0.01".parse().unwrap());
        assert!(within("1".parse().unwrap(), "100".parse().unwrap(), rel));
        assert!(!within(
            "1.01".parse().unwrap(),
            "100".parse().unwrap(),
            rel
        ));
        assert!(!within("0.01".parse().unwrap(), Decimal::ZERO, rel));
        let r = |scope| ColumnRule {
            label: "sum(x)".into(),
            rule: rule(
                Tolerance::Abs("0.01".parse().unwrap()),
                Expect::Unchanged,
                scope,
            ),
            exact: false,
            total: Some(Combine::Sum),
        };
        let count = ColumnRule {
            exact: true,
            ..r(Scope::Group)
        };
        assert_eq!(
            tolerance_text(&[r(Scope::Both)], true),
            "abs 0.01 per group and total"
        );
        assert_eq!(
            tolerance_text(&[r(Scope::Total), count.clone()], true),
            "abs 0.01 on the total; exact per group"
        );
        assert_eq!(tolerance_text(&[count], false), "exact");
        assert_eq!(status_of(false, true, &[r(Scope::Group)]), Status::Pass);
    }
}
