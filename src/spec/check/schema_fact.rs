//! `schema = { ... }`: facts about the catalog, asserted on the post-state. Objects by name
//! (`table`, `view`, `column`, `constraint`, `index`, `rls`, `policy`, `function`), by what
//! they are (`foreign_key = "orders(customer_id) -> customers(id)"`, `unique = "t(a, b)"`,
//! `check = "t.col"`), or several at once (`columns_absent`, `views_queryable`).

use super::super::raw::{RawCheck, RawSchemaFact};
use super::super::validate::Validator;
use super::super::{CheckKind, Expect, FactExpect, FactObject, Rule, SchemaCheck};
use super::At;

pub(super) fn validate(v: &mut Validator, at: &At, rc: RawCheck, rule: Rule) -> Option<CheckKind> {
    let fact = rc.schema?;
    v.not_here(at, rc.tolerance.is_some(), "tolerance", "schema");
    let may_change = match rule.expect {
        Expect::MayChange => true,
        Expect::Unchanged => false,
        _ => {
            v.at(
                at,
                "expect",
                "schema checks take expect = \"unchanged\" or \"may_change\"; declare facts with exists/type/nullable/...",
            );
            false
        }
    };
    let follow_rename = fact.follow_rename.unwrap_or(true);
    let (object, expect) = fact_object(v, at, fact)?;
    Some(CheckKind::Schema(SchemaCheck {
        object,
        expect,
        may_change,
        compare_only: false,
        follow_rename,
    }))
}

fn fact_object(v: &mut Validator, at: &At, f: RawSchemaFact) -> Option<(FactObject, FactExpect)> {
    let (line, name) = (at.line, at.name);
    let objects = [
        f.table.is_some(),
        f.view.is_some(),
        f.column.is_some(),
        f.constraint.is_some(),
        f.index.is_some(),
        f.rls.is_some(),
        f.policy.is_some(),
        f.function.is_some(),
        f.views_queryable.is_some(),
        f.columns_absent.is_some(),
        f.foreign_key.is_some(),
        f.unique.is_some(),
        f.check.is_some(),
    ];
    if objects.iter().filter(|b| **b).count() != 1 {
        v.at(
            at,
            "schema",
            "name exactly one object: table, view, column, constraint, index, rls, policy, function, \
             views_queryable, columns_absent, foreign_key, unique or check",
        );
        return None;
    }
    let view_kind = match f.kind.as_deref() {
        None => None,
        Some(k @ ("view" | "materialized")) => Some(k.to_string()),
        Some(other) => {
            v.at(
                at,
                "schema.kind",
                format!("`{other}`: write \"view\" or \"materialized\""),
            );
            None
        }
    };
    let expect = FactExpect {
        exists: f.exists,
        data_type: f.data_type.clone(),
        nullable: f.nullable,
        validated: f.validated,
        valid: f.valid,
        enabled: f.enabled,
        view_kind,
        populated: f.populated,
    };
    let allowed: &[&str];
    let object = if let Some(t) = &f.table {
        allowed = &["exists"];
        FactObject::Table(v.relation(line, name, "schema.table", t)?)
    } else if let Some(x) = &f.view {
        allowed = &["exists", "kind", "populated"];
        FactObject::View(v.relation(line, name, "schema.view", x)?)
    } else if let Some(c) = &f.column {
        allowed = &["exists", "type", "nullable"];
        let (t, col) = v.column_ref(line, name, "schema.column", c)?;
        FactObject::Column(t, col)
    } else if let Some(c) = &f.constraint {
        allowed = &["exists", "validated"];
        let (t, con) = v.column_ref(line, name, "schema.constraint", c)?;
        FactObject::Constraint(t, con)
    } else if let Some(i) = &f.index {
        allowed = &["exists", "valid"];
        FactObject::Index(v.relation(line, name, "schema.index", i)?)
    } else if let Some(t) = &f.rls {
        allowed = &["enabled"];
        FactObject::Rls(v.relation(line, name, "schema.rls", t)?)
    } else if let Some(p) = &f.policy {
        allowed = &["exists"];
        let (t, pol) = v.column_ref(line, name, "schema.policy", p)?;
        FactObject::Policy(t, pol)
    } else if let Some(func) = &f.function {
        allowed = &["exists"];
        FactObject::Function(v.relation(line, name, "schema.function", func)?)
    } else if let Some(list) = &f.columns_absent {
        allowed = &[];
        let mut cols = Vec::new();
        for c in list {
            cols.push(v.column_ref(line, name, "schema.columns_absent", c)?);
        }
        if cols.is_empty() {
            v.at(
                at,
                "schema.columns_absent",
                "list at least one \"table.column\"",
            );
        }
        FactObject::ColumnsAbsent(cols)
    } else if let Some(fk) = &f.foreign_key {
        allowed = &["exists", "validated"];
        let Some((child, parent)) = fk.split_once("->") else {
            v.at(
                at,
                "schema.foreign_key",
                format!("`{fk}`: write \"table(column, ...) -> parent(column, ...)\""),
            );
            return None;
        };
        let (table, columns) = v.column_list(line, name, "schema.foreign_key", child.trim())?;
        let (parent, parent_columns) =
            v.column_list(line, name, "schema.foreign_key", parent.trim())?;
        if columns.len() != parent_columns.len() {
            v.at(
                at,
                "schema.foreign_key",
                "the key and the referenced key need the same number of columns",
            );
        }
        FactObject::ForeignKey {
            table,
            columns,
            parent,
            parent_columns,
        }
    } else if let Some(u) = &f.unique {
        allowed = &["exists", "validated"];
        if !u.contains('(') {
            v.at(
                at,
                "schema.unique",
                format!("`{u}`: write \"table(column, ...)\""),
            );
            return None;
        }
        let (t, cols) = v.column_list(line, name, "schema.unique", u)?;
        FactObject::Unique(t, cols)
    } else if let Some(c) = &f.check {
        allowed = &["exists", "validated"];
        let (t, col) = v.column_ref(line, name, "schema.check", c)?;
        FactObject::CheckOn(t, col)
    } else {
        allowed = &[];
        let mut views = Vec::new();
        for x in f.views_queryable.as_deref().unwrap_or_default() {
            views.push(v.relation(line, name, "schema.views_queryable", x)?);
        }
        if views.is_empty() {
            v.at(at, "schema.views_queryable", "list at least one view");
        }
        FactObject::ViewsQueryable(views)
    };
    let given = [
        ("exists", expect.exists.is_some()),
        ("type", expect.data_type.is_some()),
        ("nullable", expect.nullable.is_some()),
        ("validated", expect.validated.is_some()),
        ("valid", expect.valid.is_some()),
        ("enabled", expect.enabled.is_some()),
        ("kind", expect.view_kind.is_some()),
        ("populated", expect.populated.is_some()),
    ];
    for (key, present) in given {
        if present && !allowed.contains(&key) {
            v.at(
                at,
                &format!("schema.{key}"),
                "does not apply to this kind of object",
            );
        }
    }
    Some((object, expect))
}
