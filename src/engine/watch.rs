//! Which checks a watch (`migval verify --every 10m --until 48h`) re-runs while the
//! application writes: the ones whose intent judges the post-state alone, so that they must
//! keep holding whatever the application adds.
//!
//! ```text
//!   kept                                         left out (the application moves them)
//!   expect = "zero"        (NULLs, orphans, ...) expect = "unchanged"   totals, counts
//!   expect = { equals = N }                      expect = { changes_by = N }
//!   expect = { between = [A, B] }                expect = "may_change"  (judges nothing)
//!   schema facts (index valid, column NOT NULL)  rows checks, sizes checks, the schema diff
//! ```
//!
//! A metrics check keeps only its metrics with such an intent. The checks keep their
//! fingerprints, so they still match the baseline's.

use crate::spec::{CheckKind, Expect, Rule, Spec};

/// The spec a watch runs, and the names of the checks left out with the reason.
pub fn watch_spec(spec: &Spec) -> (Spec, Vec<(String, &'static str)>) {
    let mut out = spec.clone();
    let mut left_out = Vec::new();
    // The catalog-wide diff compares every object with the baseline; schema facts cover the
    // objects that must survive.
    out.schema.enabled = false;
    out.checks = Vec::new();
    for check in &spec.checks {
        let mut c = check.clone();
        let keep: Result<(), &'static str> = match &mut c.kind {
            CheckKind::Metrics(m) => {
                m.metrics.retain(|x| holds_alone(&x.rule));
                if m.metrics.is_empty() {
                    Err(MOVED)
                } else {
                    Ok(())
                }
            }
            CheckKind::NullCount(n) => judged(&n.rule),
            CheckKind::Orphans(o) => judged(&o.rule),
            CheckKind::Custom(q) => judged(&q.rule),
            CheckKind::Schema(_) => Ok(()),
            CheckKind::Rows(_) => Err("a rows check compares every row with the baseline"),
            CheckKind::Sizes(_) => Err("sizes grow with the application's writes"),
        };
        match keep {
            Ok(()) => out.checks.push(c),
            Err(why) => left_out.push((check.name.clone(), why)),
        }
    }
    (out, left_out)
}

const MOVED: &str =
    "its intent compares with the baseline (unchanged, changes_by) or judges nothing (may_change)";

/// An intent that judges the post-state alone.
fn holds_alone(rule: &Rule) -> bool {
    matches!(
        rule.expect,
        Expect::Zero | Expect::Equals(_) | Expect::Between(_, _)
    )
}

fn judged(rule: &Rule) -> Result<(), &'static str> {
    if holds_alone(rule) {
        Ok(())
    } else {
        Err(MOVED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_intents_that_judge_the_post_state_alone() {
        let spec = Spec::parse(
            "checks.toml",
            r#"
[[check]]
name = "totals"
table = "t"
metrics = ["count(*)", { metric = "min(x)", expect = { between = ["0", "100"] } }]

[[check]]
name = "sum only"
table = "t"
metrics = ["sum(x)"]

[[check]]
name = "no nulls"
null_count = "t.x"
expect = "zero"

[[check]]
name = "nulls may change"
null_count = "t.y"
expect = "may_change"

[[check]]
name = "x index"
schema = { index = "t_x_idx" }

[[check]]
name = "rows"
rows = { table = "t", key = ["id"] }

[[check]]
name = "sizes"
sizes = { tables = ["t"] }
"#,
        )
        .expect("spec");
        let (w, left) = watch_spec(&spec);
        let kept: Vec<&str> = w.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(kept, ["totals", "no nulls", "x index"]);
        let CheckKind::Metrics(m) = &w.checks[0].kind else {
            panic!("metrics")
        };
        assert_eq!(m.metrics.len(), 1, "only the zero metric is watched");
        assert_eq!(
            w.checks[0].fingerprint, spec.checks[0].fingerprint,
            "the baseline still matches"
        );
        let names: Vec<&str> = left.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["sum only", "nulls may change", "rows", "sizes"]);
        assert!(!w.schema.enabled);
    }
}
