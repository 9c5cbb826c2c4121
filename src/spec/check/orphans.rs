//! `orphans = { child = "t.col", parent = "p.id" }`: child rows whose key finds no parent
//! (composite: `t(a, b)` / `p(x, y)`); a NULL in the child key is not an orphan.

use super::super::raw::RawCheck;
use super::super::validate::Validator;
use super::super::{CheckKind, OrphanCheck, Rule};
use super::At;

pub(super) fn validate(v: &mut Validator, at: &At, rc: RawCheck, rule: Rule) -> Option<CheckKind> {
    let o = rc.orphans?;
    let (child, child_columns) = v.column_list(at.line, at.name, "orphans.child", &o.child)?;
    let (parent, parent_columns) = v.column_list(at.line, at.name, "orphans.parent", &o.parent)?;
    if child_columns.len() != parent_columns.len() {
        v.at(
            at,
            "orphans",
            "child and parent need the same number of columns",
        );
    }
    Some(CheckKind::Orphans(OrphanCheck {
        child,
        child_columns,
        parent,
        parent_columns,
        rule,
    }))
}
