//! Judging a sizes check: per table and part (table, indexes, toast, total) the bytes before
//! and after, the growth against `grows_at_most` for the judged parts, reported for the others.
//!
//! ```text
//!   grows_at_most = "20%"    after - before <= before * 0.20    (exact integer arithmetic)
//!   grows_at_most = "50 MB"  after - before <= 52,428,800
//!   may_change               reported, never fails
//! ```
//!
//! Shrinking always passes. A table found on one side only is reported, not judged: whether it
//! should exist is for a schema fact to say.

use rust_decimal::Decimal;

use crate::model::{
    CheckResult, Comparison, Status, Table, Value, ValueScope, growth_text, pretty_bytes,
};
use crate::spec::{Growth, SizePart, SizesCheck};

/// Compare the sizes captured on both sides (`bt` is empty for a check on new tables).
pub(super) fn compare(s: &SizesCheck, bt: &Table, at: &Table) -> CheckResult {
    let bytes_of = |t: &Table, label: &str| -> Option<Vec<Option<i64>>> {
        (0..t.len()).map(|r| t.row(r)).find_map(|row| {
            (row.first().map(|v| v.to_string()).as_deref() == Some(label)).then(|| {
                row[1..]
                    .iter()
                    .map(|v| match v {
                        Value::Int(b) => Some(*b),
                        _ => None,
                    })
                    .collect()
            })
        })
    };
    let rule = match s.grows_at_most {
        Some(g) => format!("grows at most {g}"),
        None => "may change".to_string(),
    };
    let mut values = Vec::new();
    let mut failing: Vec<String> = Vec::new();
    let (mut sum_before, mut sum_after) = (0i64, 0i64);
    for t in &s.tables {
        let label = t.to_string();
        let before = bytes_of(bt, &label);
        let after = bytes_of(at, &label);
        for (i, part) in SizePart::ALL.iter().enumerate() {
            let b = before.as_ref().and_then(|v| v.get(i).copied().flatten());
            let a = after.as_ref().and_then(|v| v.get(i).copied().flatten());
            if *part == SizePart::Total {
                sum_before = sum_before.saturating_add(b.unwrap_or(0));
                sum_after = sum_after.saturating_add(a.unwrap_or(0));
            }
            let judged = s.judge.contains(part);
            let (ok, note) = match (b, a, s.grows_at_most.filter(|_| judged)) {
                (Some(b), Some(a), Some(limit)) => judge(b, a, limit),
                (None, Some(_), _) => (true, Some("new: no baseline size".to_string())),
                (Some(_), None, _) => (true, Some("not found after the migration".to_string())),
                (None, None, _) => (
                    true,
                    Some("no storage of its own (a view or a foreign table?)".to_string()),
                ),
                _ => (true, None),
            };
            if !ok {
                failing.push(format!(
                    "`{label}` {} grew {} -> {} ({})",
                    part.label(),
                    pretty_bytes(b.unwrap_or(0)),
                    pretty_bytes(a.unwrap_or(0)),
                    growth_text(b.unwrap_or(0), a.unwrap_or(0))
                ));
            }
            values.push(Comparison {
                key: vec![label.clone()],
                metric: part.label().to_string(),
                scope: match (b, a) {
                    (None, Some(_)) => ValueScope::Appeared,
                    (Some(_), None) => ValueScope::Disappeared,
                    _ => ValueScope::Value,
                },
                baseline: b.map(Value::Int),
                after: a.map(Value::Int),
                difference: b
                    .zip(a)
                    .map(|(b, a)| (i128::from(a) - i128::from(b)).to_string()),
                rule: if judged {
                    rule.clone()
                } else {
                    "may change".into()
                },
                ok,
                note,
            });
        }
    }
    let n = s.tables.len();
    let mut summary = format!(
        "{n} table{}: {} -> {} in total ({})",
        if n == 1 { "" } else { "s" },
        pretty_bytes(sum_before),
        pretty_bytes(sum_after),
        growth_text(sum_before, sum_after)
    );
    let status = if failing.is_empty() {
        Status::Pass
    } else {
        let limit = s.grows_at_most.map(|g| g.to_string()).unwrap_or_default();
        summary = format!("{}: more than {limit}", failing.join("; "));
        Status::Fail
    };
    let judged: Vec<&str> = s.judge.iter().map(|p| p.label()).collect();
    let expect = match s.grows_at_most {
        Some(_) => format!("{rule} ({})", judged.join(", ")),
        None => rule,
    };
    CheckResult {
        tolerance: expect.clone(),
        expect,
        values,
        ..CheckResult::bare(status, summary)
    }
}

/// Whether growing from `before` to `after` bytes keeps within `limit`, and a note if not.
fn judge(before: i64, after: i64, limit: Growth) -> (bool, Option<String>) {
    let grew = i128::from(after) - i128::from(before);
    let ok = match limit {
        Growth::Bytes(max) => grew <= i128::from(max),
        Growth::Fraction(f) => {
            // before * f, exactly; a limit too large for Decimal cannot be exceeded.
            Decimal::from(before)
                .checked_mul(f)
                .is_none_or(|allowed| Decimal::from_i128_with_scale(grew, 0) <= allowed)
        }
    };
    let note = (!ok).then(|| {
        format!(
            "grew by {} ({}), more than {limit}",
            pretty_bytes(i64::try_from(grew).unwrap_or(i64::MAX)),
            growth_text(before, after)
        )
    });
    (ok, note)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_doubling_breaks_twenty_percent_and_a_small_growth_does_not() {
        let pct = Growth::Fraction("0.2".parse().unwrap());
        assert!(!judge(8192, 16384, pct).0);
        assert!(judge(81920, 90112, pct).0, "10% growth");
        assert!(judge(100, 120, pct).0, "exactly 20% is allowed");
        assert!(!judge(100, 121, pct).0);
        assert!(judge(16384, 8192, pct).0, "shrinking passes");
        let abs = Growth::Bytes(50 << 20);
        assert!(judge(0, 50 << 20, abs).0);
        assert!(!judge(0, (50 << 20) + 1, abs).0);
        assert!(judge(8192, 16384, pct).1.unwrap().contains("more than 20%"));
    }
}
