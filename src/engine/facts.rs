//! Schema facts compared: the attributes a check declares (exists, type, nullable, validated,
//! ...) are asserted on the post-state; the undeclared ones must be unchanged when the object
//! exists on both sides. Also the `views_queryable` check.

use crate::model::{CheckResult, Comparison, ResultKind, Status, Table, Value, ValueScope};
use crate::spec::{FactExpect, FactObject};

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
