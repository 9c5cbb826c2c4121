//! `null_count = "table.column"`: how many rows have NULL there (optionally under `where`).

use super::super::raw::RawCheck;
use super::super::validate::Validator;
use super::super::{CheckKind, NullCheck, Rule, Scope};
use super::At;

pub(super) fn validate(v: &mut Validator, at: &At, rc: RawCheck, rule: Rule) -> Option<CheckKind> {
    let col = rc.null_count.as_deref().unwrap_or_default();
    let (table, column) = v.column_ref(at.line, at.name, "null_count", col)?;
    if rule.scope != Scope::Group {
        v.at(
            at,
            "tolerance.scope",
            "scope applies to grouped checks only",
        );
    }
    let filter = v.sided(at, "where", rc.filter);
    Some(CheckKind::NullCount(NullCheck {
        table,
        column,
        filter,
        rule,
    }))
}
