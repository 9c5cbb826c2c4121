//! `sql` (and `sql_after`): a validation query of the DBA's own. `key` names the columns that
//! identify a row; without `key` the query returns one row, whose values are compared by name.
//! `sql_after` alone is an after-only query, judged by its intent (e.g. `expect = "zero"`).

use super::super::raw::RawCheck;
use super::super::validate::Validator;
use super::super::{CheckKind, CustomCheck, Rule};
use super::At;

pub(super) fn validate(v: &mut Validator, at: &At, rc: RawCheck, rule: Rule) -> Option<CheckKind> {
    let key: Vec<String> = rc.key.unwrap_or_default();
    let one = |v: &mut Validator, what: &str, sql: Option<String>| -> Option<String> {
        let sql = sql?;
        let q = sql.trim().trim_end_matches(';').trim().to_string();
        if q.is_empty() {
            v.at(at, what, "the query is empty");
        }
        if q.contains(';') {
            v.at(at, what, "one read-only query only (found `;` inside)");
        }
        Some(q)
    };
    let sql = one(v, "sql", rc.sql);
    let sql_after = one(v, "sql_after", rc.sql_after);
    if key.iter().any(|k| k.trim().is_empty()) {
        v.at(at, "key", "a key column name is empty");
    }
    Some(CheckKind::Custom(CustomCheck {
        sql,
        sql_after,
        key,
        rule,
    }))
}
