//! One `[[check]]`: which kind it is, whether it reads what the migration creates (an
//! after-only check), and the rules that hold for every kind. Each kind is validated in a file
//! of its own: `metrics.rs` (`table` + `metrics`), `null_count.rs`, `orphans.rs`, `custom.rs`
//! (`sql` / `sql_after`), `schema_fact.rs` (`schema = { ... }`), `rows.rs` and `sizes.rs`
//! (`sizes = { tables = [...] }`).

mod custom;
pub mod metrics;
mod null_count;
mod orphans;
mod rows;
mod schema_fact;
pub(super) mod sizes;

use super::raw::{RawCheck, RawSided};
use super::validate::Validator;
use super::{CheckKind, Expect, MetricArg, Rule, SchemaDiff, Scope, Sided};
use crate::sql::ident::Name;

/// Where a check stands in the file, for messages, and what `[schema]` declares.
pub(in crate::spec) struct At<'a> {
    pub line: usize,
    pub name: &'a str,
    pub schema: &'a SchemaDiff,
}

impl Validator<'_> {
    /// An error on check `at` at `key`.
    pub(in crate::spec) fn at(&mut self, at: &At, key: &str, message: impl Into<String>) {
        self.err(at.line, at.name, key, message);
    }

    /// A key that does not apply to this kind of check.
    fn not_here(&mut self, at: &At, present: bool, key: &str, kind: &str) {
        if present {
            self.at(at, key, format!("`{key}` does not apply to a {kind} check"));
        }
    }

    /// A fragment that would not stay inside its slot in the fused query (an unclosed `/*`,
    /// literal or quoted identifier, a stray `*/`): refused, so the other checks still run.
    pub(in crate::spec) fn lexical(&mut self, at: &At, key: &str, fragment: &str) {
        if let Some(why) = crate::sql::lex::escapes(fragment) {
            self.at(
                at,
                key,
                format!(
                    "`{fragment}`: {why}; embedded in the fused query it would swallow what \
                     follows (the other checks on the table)"
                ),
            );
        }
    }

    /// A fragment with an optional post-migration form.
    fn sided(&mut self, at: &At, key: &str, raw: Option<RawSided>) -> Option<Sided> {
        let sided = match raw? {
            RawSided::Plain(t) => Sided::plain(t.trim()),
            RawSided::Forms(f) => Sided {
                before: f.before.trim().to_string(),
                after: Some(f.after.trim().to_string()),
            },
        };
        for (part, text) in [
            ("before", Some(&sided.before)),
            ("after", sided.after.as_ref()),
        ] {
            if let Some(t) = text {
                if t.is_empty() {
                    self.at(at, key, format!("the {part} form is empty"));
                }
                if t.contains(';') && !t.contains('\'') {
                    self.at(at, key, "a fragment, not a statement: remove the `;`");
                }
                self.lexical(at, key, t);
            }
        }
        (!sided.before.is_empty() || sided.after.is_some()).then_some(sided)
    }
}

/// Validate one check: its kind, and whether it is after-only.
pub(in crate::spec) fn validate(
    v: &mut Validator,
    at: &At,
    rc: RawCheck,
) -> Option<(CheckKind, bool)> {
    let custom = rc.sql.is_some() || rc.sql_after.is_some();
    let kinds = [
        rc.table.is_some(),
        rc.null_count.is_some(),
        rc.orphans.is_some(),
        custom,
        rc.schema.is_some(),
        rc.rows.is_some(),
        rc.sizes.is_some(),
    ];
    let count = kinds.iter().filter(|b| **b).count();
    if count != 1 {
        v.at(
            at,
            "",
            if count == 0 {
                "say what to check: one of `table` (with `metrics`), `null_count`, `orphans`, `sql` (or `sql_after`), `schema`, `rows` or `sizes`"
            } else {
                "a check has exactly one of `table`, `null_count`, `orphans`, `sql`, `schema`, `rows`, `sizes`: split it in two"
            },
        );
        return None;
    }
    let new = rc.new.unwrap_or(false);
    if rc.sizes.is_some() {
        v.not_here(at, rc.filter.is_some(), "where", "sizes");
        v.not_here(at, rc.group_by.is_some(), "group_by", "sizes");
        v.not_here(at, rc.metrics.is_some(), "metrics", "sizes");
        let kind = sizes::validate(v, at, rc)?;
        if let CheckKind::Sizes(s) = &kind
            && s.grows_at_most.is_some()
            && (new || declared_new(&kind, at.schema))
        {
            v.at(
                at,
                "expect",
                "a table the migration creates has no baseline size to grow from: write expect = \"may_change\"",
            );
        }
        let after_only = new || declared_new(&kind, at.schema);
        return Some((kind, after_only));
    }
    let mut base = Rule::default();
    if let Some(s) = rc.scope.as_deref()
        && let Some(scope) = v.scope(at.line, at.name, "scope", s)
    {
        base.scope = scope;
    }
    let rule = v.rule(
        at.line,
        at.name,
        rc.tolerance.as_ref(),
        rc.expect.as_ref(),
        base,
    );
    let kind = if rc.table.is_some() {
        metrics::validate(v, at, rc, rule)?
    } else {
        v.not_here(at, rc.group_by.is_some(), "group_by", "non-table");
        v.not_here(at, rc.metrics.is_some(), "metrics", "non-table");
        if rc.null_count.is_some() {
            null_count::validate(v, at, rc, rule)?
        } else {
            v.not_here(at, rc.filter.is_some(), "where", "this kind of");
            if rc.rows.is_some() {
                rows::validate(v, at, rc, rule)?
            } else if rc.orphans.is_some() {
                orphans::validate(v, at, rc, rule)?
            } else if custom {
                custom::validate(v, at, rc, rule)?
            } else {
                schema_fact::validate(v, at, rc, rule)?
            }
        }
    };
    let after_only_query = matches!(&kind, CheckKind::Custom(c) if c.sql.is_none());
    let after_only = new || after_only_query || declared_new(&kind, at.schema);
    if after_only {
        intents_need_no_baseline(v, at, &kind, after_only_query);
    }
    Some((kind, after_only))
}

/// An after-only check has nothing to be unchanged against: its intent must judge the
/// post-state alone.
fn intents_need_no_baseline(v: &mut Validator, at: &At, kind: &CheckKind, query: bool) {
    let why = if query {
        "`sql_after` alone is an after-only query"
    } else {
        "the check reads what the migration creates (`new = true` or an `add` line in [schema] expect)"
    };
    let rules: Vec<(&str, Rule)> = match kind {
        CheckKind::Metrics(m) => m
            .metrics
            .iter()
            .map(|x| (x.label.as_str(), x.rule))
            .collect(),
        CheckKind::NullCount(n) => vec![("null_count", n.rule)],
        CheckKind::Orphans(o) => vec![("orphans", o.rule)],
        CheckKind::Custom(c) => vec![("values", c.rule)],
        CheckKind::Rows(_) => vec![("rows", Rule::default())],
        // Judged before this is called (`grows_at_most` needs a baseline).
        CheckKind::Sizes(_) => Vec::new(),
        // A fact is asserted on the post-state anyway.
        CheckKind::Schema(_) => Vec::new(),
    };
    for (what, rule) in rules {
        let problem = match rule.expect {
            Expect::Unchanged => "there is nothing to be unchanged against",
            Expect::ChangesBy(_) => "`changes_by` needs a baseline value",
            _ => continue,
        };
        let fix = if query {
            "; or add `sql` for the pre-migration side"
        } else {
            ""
        };
        v.at(
            at,
            "expect",
            format!(
                "{why}: {problem} ({what}); write expect = \"zero\", {{ equals = \"N\" }}, {{ between = [\"A\", \"B\"] }} or \"may_change\"{fix}"
            ),
        );
        return;
    }
    if let CheckKind::Metrics(m) = kind
        && m.metrics.iter().any(|x| x.rule.scope != Scope::Group)
    {
        v.at(
            at,
            "tolerance.scope",
            "an after-only check has no baseline total to compare with: leave scope at \"group\"",
        );
    }
}

/// Whether the check names a relation or column declared `add ...` in `[schema] expect` (one
/// object, no wildcard): then it reads what the migration creates.
fn declared_new(kind: &CheckKind, schema: &SchemaDiff) -> bool {
    let column = |t: &Name, c: &str| schema.declares_added("column", t, Some(c));
    let relation = |t: &Name| {
        schema.declares_added("table", t, None) || schema.declares_added("view", t, None)
    };
    match kind {
        CheckKind::Metrics(m) => {
            relation(&m.table)
                || m.group_by
                    .iter()
                    .filter_map(|g| g.plain_column())
                    .any(|c| column(&m.table, c))
                || m.metrics.iter().any(|x| match &x.arg {
                    MetricArg::Column(c) => column(&m.table, c),
                    _ => false,
                })
        }
        CheckKind::NullCount(n) => relation(&n.table) || column(&n.table, &n.column),
        CheckKind::Orphans(o) => {
            relation(&o.child)
                || relation(&o.parent)
                || o.child_columns.iter().any(|c| column(&o.child, c))
                || o.parent_columns.iter().any(|c| column(&o.parent, c))
        }
        CheckKind::Rows(r) => relation(&r.table),
        CheckKind::Sizes(s) => !s.tables.is_empty() && s.tables.iter().all(relation),
        CheckKind::Custom(_) | CheckKind::Schema(_) => false,
    }
}
