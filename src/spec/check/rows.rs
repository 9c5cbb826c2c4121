//! `rows = { table = "t", key = ["id"] }`: row proof. The snapshot keeps every row's key and a
//! fingerprint of its values; verify recomputes them and compares key by key: exact counts of
//! rows changed, appeared and disappeared, and the keys. `columns` or `exclude` choose what is
//! fingerprinted; `allow_changes` is a predicate on the post-migration row for rows that may
//! change (reported as WARN).

use super::super::raw::RawCheck;
use super::super::validate::Validator;
use super::super::{CheckKind, Expect, RowsCheck, Rule, Tolerance};
use super::At;
use crate::sql::ident;

pub(super) fn validate(v: &mut Validator, at: &At, rc: RawCheck, rule: Rule) -> Option<CheckKind> {
    let r = rc.rows?;
    v.not_here(at, rc.tolerance.is_some(), "tolerance", "rows");
    v.not_here(
        at,
        rc.key.is_some(),
        "key",
        "rows (write it inside: rows = { key = [...] })",
    );
    if rule.expect != Expect::Unchanged || rule.tolerance != Tolerance::Exact {
        v.at(
            at,
            "expect",
            "a rows check proves that rows are unchanged; declare rows that may change with rows.allow_changes, columns that change with rows.exclude",
        );
    }
    let table = v.relation(at.line, at.name, "rows.table", &r.table)?;
    let names = |v: &mut Validator, key: &str, list: Option<Vec<String>>| -> Vec<String> {
        let mut out = Vec::new();
        for c in list.unwrap_or_default() {
            match ident::parse_name(&c) {
                Ok(p) if p.len() == 1 => {
                    if out.contains(&p[0]) {
                        v.at(at, key, format!("`{c}` is listed twice"));
                    }
                    out.push(p[0].clone());
                }
                _ => v.at(at, key, format!("`{c}` is not a column name")),
            }
        }
        out
    };
    let key = names(v, "rows.key", r.key);
    if key.is_empty() {
        v.at(
            at,
            "rows.key",
            "name the columns that identify a row, e.g. key = [\"id\"] (the primary key, or a unique NOT NULL column)",
        );
    }
    let columns = r.columns.map(|c| names(v, "rows.columns", Some(c)));
    let exclude = names(v, "rows.exclude", r.exclude);
    if columns.is_some() && !exclude.is_empty() {
        v.at(at, "rows.exclude", "give `columns` or `exclude`, not both");
    }
    if let Some(cols) = &columns {
        if cols.is_empty() {
            v.at(at, "rows.columns", "list at least one column");
        }
        if let Some(k) = cols.iter().find(|c| key.contains(c)) {
            v.at(
                at,
                "rows.columns",
                format!("`{k}` is a key column: keys are compared as keys"),
            );
        }
    }
    let allow_changes = r
        .allow_changes
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty());
    let keep_values = match r.keep.as_deref() {
        None => false,
        Some("values") => true,
        Some(other) => {
            v.at(
                at,
                "rows.keep",
                format!(
                    "`{other}` is not something a rows check can keep; write keep = \"values\" \
                     (the baseline stores every row's values, so changes show before -> after)"
                ),
            );
            false
        }
    };
    Some(CheckKind::Rows(RowsCheck {
        table,
        key,
        columns,
        exclude,
        allow_changes,
        keep_values,
    }))
}
