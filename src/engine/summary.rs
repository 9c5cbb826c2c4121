//! How a check's result reads in one line: the summary of an ungrouped check (its first
//! failing value, or that all is identical) and of a grouped one (groups changed, appeared,
//! disappeared, breaking the rule; totals that break it).

use crate::model::{
    Comparison, GroupStats, Status, Value, ValueScope, grouped_count, grouped_digits,
    readable_value,
};

pub(super) fn ungrouped_summary(values: &[Comparison], status: Status) -> String {
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

pub(super) fn grouped_summary(
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
