//! `table` + `metrics`: aggregates over a table or view, optionally grouped, optionally
//! filtered. A metric, a `where` and a group key may each have a post-migration form for
//! mappings a name-for-name `[rename]` cannot express:
//!
//! ```toml
//! metrics = [{ metric = "sum(price)", after = "sum(price_cents) / 100.0", tolerance = { abs = "0.01" } }]
//! where = { before = "is_enabled", after = "state = 'enabled'" }
//! group_by = ["company_id", { as = "month_utc", expr = "date_trunc('month', ordered_at AT TIME ZONE 'UTC')" },
//!             { as = "status", before = "CASE WHEN is_enabled THEN 'enabled' ELSE 'disabled' END", after = "state" }]
//! ```

use super::super::raw::{RawCheck, RawGroupKey, RawMetric};
use super::super::validate::Validator;
use super::super::{
    CheckKind, Func, GroupKey, KeyExpr, Metric, MetricArg, MetricsCheck, Rule, Scope,
};
use super::At;
use crate::sql::ident;

pub(super) fn validate(v: &mut Validator, at: &At, rc: RawCheck, rule: Rule) -> Option<CheckKind> {
    v.not_here(at, rc.key.is_some(), "key", "table metrics");
    v.not_here(at, rc.sql_after.is_some(), "sql_after", "table metrics");
    let table = v.relation(
        at.line,
        at.name,
        "table",
        rc.table.as_deref().unwrap_or_default(),
    )?;
    let filter = v.sided(at, "where", rc.filter);
    let group_by = group_keys(v, at, rc.group_by.unwrap_or_default());
    let raw_metrics = rc
        .metrics
        .unwrap_or_else(|| vec![RawMetric::Plain("count(*)".into())]);
    if raw_metrics.is_empty() {
        v.at(at, "metrics", "list at least one metric, e.g. \"count(*)\"");
    }
    let mut metrics: Vec<Metric> = Vec::new();
    for m in raw_metrics {
        let (text, mrule, after) = match m {
            RawMetric::Plain(t) => (t, rule, None),
            RawMetric::Detailed(d) => {
                let r = v.rule(
                    at.line,
                    at.name,
                    d.tolerance.as_ref(),
                    d.expect.as_ref(),
                    rule,
                );
                (d.metric, r, d.after)
            }
        };
        let after = after.map(|a| a.trim().to_string());
        if after.as_ref().is_some_and(|a| a.is_empty()) {
            v.at(at, "metrics.after", "the post-migration form is empty");
        }
        v.lexical(at, "metrics", &text);
        if let Some(a) = &after {
            v.lexical(at, "metrics.after", a);
        }
        match parse_metric(&text) {
            Ok((label, func, arg)) => {
                if group_by.is_empty() && mrule.scope != Scope::Group {
                    v.at(
                        at,
                        "tolerance.scope",
                        "scope applies to grouped checks only (add group_by)",
                    );
                }
                if mrule.scope.total() && !func.totals() {
                    v.at(
                        at,
                        "tolerance.scope",
                        format!("`{label}` cannot be totalled across groups; use scope = \"group\" for it"),
                    );
                }
                if metrics.iter().any(|x| x.label == label) {
                    v.at(at, "metrics", format!("`{label}` is listed twice"));
                }
                metrics.push(Metric {
                    label,
                    func,
                    arg,
                    rule: mrule,
                    after,
                });
            }
            Err(e) => v.at(at, "metrics", e),
        }
    }
    Some(CheckKind::Metrics(MetricsCheck {
        table,
        filter,
        group_by,
        metrics,
    }))
}

/// Columns, system columns (`tableoid` groups by partition), and labelled expressions.
fn group_keys(v: &mut Validator, at: &At, raw: Vec<RawGroupKey>) -> Vec<GroupKey> {
    let mut keys: Vec<GroupKey> = Vec::new();
    for g in raw {
        let key = match g {
            RawGroupKey::Column(c) => match ident::parse_name(&c) {
                Ok(p) if p.len() == 1 => GroupKey::column(p[0].clone()),
                _ => {
                    v.at(
                        at,
                        "group_by",
                        format!(
                            "`{c}` is not a column name; to group by an expression give it a label: \
                             {{ as = \"label\", expr = \"{}\" }} (or {{ as = \"label\", before = \"...\", after = \"...\" }} \
                             when it reads differently after the migration)",
                            c.replace('"', "\\\"")
                        ),
                    );
                    continue;
                }
            },
            RawGroupKey::Labelled(e) => {
                let Some(label) = e
                    .label
                    .map(|l| l.trim().to_string())
                    .filter(|l| !l.is_empty())
                else {
                    v.at(
                        at,
                        "group_by",
                        "an expression needs a label for the report: { as = \"month\", expr = \"...\" }",
                    );
                    continue;
                };
                let before = match (e.expr, e.before) {
                    (Some(x), None) | (None, Some(x)) => x.trim().to_string(),
                    (Some(_), Some(_)) => {
                        v.at(
                            at,
                            "group_by",
                            format!("key `{label}`: give `expr` (both sides), or `before` and `after`, not `expr` and `before`"),
                        );
                        continue;
                    }
                    (None, None) => {
                        v.at(
                            at,
                            "group_by",
                            format!("key `{label}`: say what it reads: expr = \"...\" (or before = \"...\", after = \"...\")"),
                        );
                        continue;
                    }
                };
                if before.is_empty() {
                    v.at(
                        at,
                        "group_by",
                        format!("key `{label}`: the expression is empty"),
                    );
                    continue;
                }
                v.lexical(at, "group_by", &before);
                if let Some(a) = &e.after {
                    v.lexical(at, "group_by", a);
                }
                let before = match ident::parse_name(&before) {
                    Ok(p) if p.len() == 1 => KeyExpr::Column(p[0].clone()),
                    _ => KeyExpr::Expr(before),
                };
                GroupKey {
                    label,
                    before,
                    after: e
                        .after
                        .map(|a| a.trim().to_string())
                        .filter(|a| !a.is_empty()),
                }
            }
        };
        if keys.iter().any(|k| k.label == key.label) {
            v.at(at, "group_by", format!("`{}` is listed twice", key.label));
            continue;
        }
        keys.push(key);
    }
    keys
}

/// Parse `count(*)`, `sum(col)`, `count(distinct col)`, `avg(expr)` into (label, func, arg).
pub fn parse_metric(text: &str) -> Result<(String, Func, MetricArg), String> {
    let t = text.trim();
    let open = t.find('(').ok_or_else(|| {
        format!("`{t}` is not an aggregate; write e.g. \"sum(amount)\" or \"count(*)\"")
    })?;
    let inner = t[open + 1..]
        .strip_suffix(')')
        .ok_or_else(|| format!("`{t}`: missing closing `)`"))?
        .trim();
    let func_name = t[..open].trim().to_ascii_lowercase();
    if !balanced(inner) {
        return Err(format!(
            "`{t}` is not one aggregate call; filter rows with `where`, or write an expression over aggregates as the metric's `after` form or in a custom `sql` check"
        ));
    }
    if inner.is_empty() {
        return Err(format!("`{t}`: the aggregate needs an argument"));
    }
    let (func, arg_text) = match func_name.as_str() {
        "count" if inner == "*" => (Func::CountStar, "*"),
        "count" => match strip_keyword(inner, "distinct") {
            Some(rest) => (Func::CountDistinct, rest),
            None => (Func::Count, inner),
        },
        "sum" => (Func::Sum, inner),
        "min" => (Func::Min, inner),
        "max" => (Func::Max, inner),
        "avg" => (Func::Avg, inner),
        other => {
            return Err(format!(
                "unknown aggregate `{other}` in `{t}`; use count, sum, min, max or avg (or a custom `sql` check)"
            ));
        }
    };
    if arg_text == "*" && func != Func::CountStar {
        return Err(format!("`{t}`: only count takes `*`"));
    }
    let arg = if func == Func::CountStar {
        MetricArg::Star
    } else {
        match ident::parse_name(arg_text) {
            Ok(p) if p.len() == 1 => MetricArg::Column(p[0].clone()),
            _ => MetricArg::Expr(arg_text.to_string()),
        }
    };
    let label = match func {
        Func::CountStar => "count(*)".to_string(),
        Func::CountDistinct => format!("count(distinct {arg_text})"),
        _ => format!("{func_name}({arg_text})"),
    };
    Ok((label, func, arg))
}

fn strip_keyword<'a>(s: &'a str, kw: &str) -> Option<&'a str> {
    let head = s.get(..kw.len())?;
    let rest = &s[kw.len()..];
    (head.eq_ignore_ascii_case(kw) && rest.starts_with(char::is_whitespace)).then(|| rest.trim())
}

/// Parentheses that close in order (outside quotes): `a) FILTER (WHERE b` is not.
fn balanced(s: &str) -> bool {
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => {}
        }
    }
    depth == 0 && quote.is_none()
}
