//! Check fingerprints: what tells a baseline's check from a changed definition.
//!
//! The fingerprint is a SHA-256 over a canonical, versioned text of the definition, written
//! `v2:<hex>`: a JSON object with sorted keys in which every optional field left at its
//! default is omitted, so adding a field to the spec (with a default) or refactoring the types
//! changes no fingerprint. migval 0.1 hashed the derived `Debug` text instead; `legacy` gives
//! that hash for a definition 0.1 could express, so its baselines still match.

use serde_json::{Map, Value, json};

use super::{
    CheckKind, Expect, FactExpect, FactObject, GroupKey, KeyExpr, MetricArg, Rule, Scope, Sided,
    Tolerance, legacy, sha256_hex,
};
use crate::sql::ident::Name;

const VERSION: &str = "v2";

/// The fingerprint of a check as this version writes it.
pub(super) fn of(name: &str, kind: &CheckKind, after_only: bool) -> String {
    let mut o = Map::new();
    o.insert("name".into(), json!(name));
    o.insert("check".into(), canonical(kind));
    if after_only {
        o.insert("after_only".into(), json!(true));
    }
    let text = Value::Object(o).to_string();
    format!(
        "{VERSION}:{}",
        sha256_hex(format!("migval-check-{VERSION}\n{text}").as_bytes())
    )
}

/// The fingerprint migval 0.1 gave the same check, when it could be written then.
pub(super) fn legacy(name: &str, kind: &CheckKind, after_only: bool) -> Option<String> {
    if after_only {
        return None;
    }
    let old = legacy_kind(kind)?;
    Some(sha256_hex(format!("{name}\u{0}{old:?}").as_bytes()))
}

/// Insert `v` under `k` unless it is the default (`None`, `false`, empty).
fn put(o: &mut Map<String, Value>, k: &str, v: Value) {
    let default = match &v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    };
    if !default {
        o.insert(k.into(), v);
    }
}

fn name(n: &Name) -> Value {
    json!(n.to_string())
}

fn sided(s: &Option<Sided>) -> Value {
    match s {
        None => Value::Null,
        Some(Sided {
            before,
            after: None,
        }) => json!(before),
        Some(Sided {
            before,
            after: Some(a),
        }) => json!({ "before": before, "after": a }),
    }
}

fn rule(r: &Rule) -> Value {
    let mut o = Map::new();
    let tol = match r.tolerance {
        Tolerance::Exact => Value::Null,
        Tolerance::Abs(d) => json!({ "abs": d.normalize().to_string() }),
        Tolerance::Rel(d) => json!({ "rel": d.normalize().to_string() }),
    };
    put(&mut o, "tolerance", tol);
    let exp = match r.expect {
        Expect::Unchanged => Value::Null,
        Expect::Zero => json!("zero"),
        Expect::MayChange => json!("may_change"),
        Expect::Equals(d) => json!({ "equals": d.normalize().to_string() }),
        Expect::ChangesBy(d) => json!({ "changes_by": d.normalize().to_string() }),
        Expect::Between(a, b) => {
            json!({ "between": [a.normalize().to_string(), b.normalize().to_string()] })
        }
    };
    put(&mut o, "expect", exp);
    let scope = match r.scope {
        Scope::Group => Value::Null,
        Scope::Total => json!("total"),
        Scope::Both => json!("both"),
    };
    put(&mut o, "scope", scope);
    Value::Object(o)
}

fn group_key(g: &GroupKey) -> Value {
    match (&g.before, &g.after) {
        (KeyExpr::Column(c), None) if *c == g.label => json!(c),
        (before, after) => {
            let mut o = Map::new();
            o.insert("as".into(), json!(g.label));
            let b = match before {
                KeyExpr::Column(c) => json!({ "column": c }),
                KeyExpr::Expr(e) => json!(e),
            };
            o.insert("before".into(), b);
            put(&mut o, "after", json!(after));
            Value::Object(o)
        }
    }
}

fn canonical(kind: &CheckKind) -> Value {
    let mut o = Map::new();
    match kind {
        CheckKind::Metrics(m) => {
            o.insert("kind".into(), json!("metrics"));
            o.insert("table".into(), name(&m.table));
            put(&mut o, "where", sided(&m.filter));
            put(
                &mut o,
                "group_by",
                Value::Array(m.group_by.iter().map(group_key).collect()),
            );
            let metrics = m
                .metrics
                .iter()
                .map(|x| {
                    let mut mo = Map::new();
                    mo.insert("metric".into(), json!(x.label));
                    put(&mut mo, "rule", rule(&x.rule));
                    put(&mut mo, "after", json!(x.after));
                    Value::Object(mo)
                })
                .collect();
            o.insert("metrics".into(), Value::Array(metrics));
        }
        CheckKind::NullCount(n) => {
            o.insert("kind".into(), json!("null_count"));
            o.insert("table".into(), name(&n.table));
            o.insert("column".into(), json!(n.column));
            put(&mut o, "where", sided(&n.filter));
            put(&mut o, "rule", rule(&n.rule));
        }
        CheckKind::Orphans(x) => {
            o.insert("kind".into(), json!("orphans"));
            o.insert("child".into(), name(&x.child));
            o.insert("child_columns".into(), json!(x.child_columns));
            o.insert("parent".into(), name(&x.parent));
            o.insert("parent_columns".into(), json!(x.parent_columns));
            put(&mut o, "rule", rule(&x.rule));
        }
        CheckKind::Custom(c) => {
            o.insert("kind".into(), json!("sql"));
            put(&mut o, "sql", json!(c.sql));
            put(&mut o, "sql_after", json!(c.sql_after));
            put(&mut o, "key", json!(c.key));
            put(&mut o, "rule", rule(&c.rule));
        }
        CheckKind::Rows(r) => {
            o.insert("kind".into(), json!("rows"));
            o.insert("table".into(), name(&r.table));
            o.insert("key".into(), json!(r.key));
            put(&mut o, "columns", json!(r.columns));
            put(&mut o, "exclude", json!(r.exclude));
            put(&mut o, "allow_changes", json!(r.allow_changes));
            put(&mut o, "keep", json!(r.keep_values.then_some("values")));
        }
        CheckKind::Sizes(s) => {
            o.insert("kind".into(), json!("sizes"));
            o.insert(
                "tables".into(),
                Value::Array(s.tables.iter().map(name).collect()),
            );
            o.insert(
                "judge".into(),
                json!(s.judge.iter().map(|p| p.label()).collect::<Vec<_>>()),
            );
            put(
                &mut o,
                "grows_at_most",
                json!(s.grows_at_most.map(|g| match g {
                    crate::spec::Growth::Fraction(f) => format!("{}", f.normalize()),
                    crate::spec::Growth::Bytes(b) => format!("{b} bytes"),
                })),
            );
        }
        CheckKind::Schema(s) => {
            o.insert("kind".into(), json!("schema"));
            o.insert("object".into(), fact_object(&s.object));
            put(&mut o, "expect", fact_expect(&s.expect));
            put(&mut o, "may_change", json!(s.may_change));
            put(&mut o, "compare_only", json!(s.compare_only));
            // Default true: only the exception is written.
            put(&mut o, "literal_names", json!(!s.follow_rename));
        }
    }
    Value::Object(o)
}

fn fact_object(f: &FactObject) -> Value {
    let pair = |t: &Name, c: &str| json!(format!("{t}.{c}"));
    match f {
        FactObject::Table(n) => json!({ "table": name(n) }),
        FactObject::View(n) => json!({ "view": name(n) }),
        FactObject::Column(t, c) => json!({ "column": pair(t, c) }),
        FactObject::Constraint(t, c) => json!({ "constraint": pair(t, c) }),
        FactObject::Index(n) => json!({ "index": name(n) }),
        FactObject::Rls(n) => json!({ "rls": name(n) }),
        FactObject::Policy(t, p) => json!({ "policy": pair(t, p) }),
        FactObject::Function(n) => json!({ "function": name(n) }),
        FactObject::ViewsQueryable(vs) => {
            json!({ "views_queryable": vs.iter().map(name).collect::<Vec<_>>() })
        }
        FactObject::ColumnsAbsent(cs) => {
            json!({ "columns_absent": cs.iter().map(|(t, c)| pair(t, c)).collect::<Vec<_>>() })
        }
        FactObject::ForeignKey {
            table,
            columns,
            parent,
            parent_columns,
        } => json!({ "foreign_key": {
            "table": name(table), "columns": columns,
            "parent": name(parent), "parent_columns": parent_columns } }),
        FactObject::Unique(t, cols) => json!({ "unique": { "table": name(t), "columns": cols } }),
        FactObject::CheckOn(t, c) => json!({ "check": pair(t, c) }),
    }
}

fn fact_expect(e: &FactExpect) -> Value {
    let mut o = Map::new();
    put(&mut o, "exists", json!(e.exists));
    put(&mut o, "type", json!(e.data_type));
    put(&mut o, "nullable", json!(e.nullable));
    put(&mut o, "validated", json!(e.validated));
    put(&mut o, "valid", json!(e.valid));
    put(&mut o, "enabled", json!(e.enabled));
    put(&mut o, "view_kind", json!(e.view_kind));
    put(&mut o, "populated", json!(e.populated));
    // `put` drops `false`; an asserted `false` must still count.
    for (k, v) in [
        ("exists", e.exists),
        ("nullable", e.nullable),
        ("validated", e.validated),
        ("valid", e.valid),
        ("enabled", e.enabled),
        ("populated", e.populated),
    ] {
        if v == Some(false) {
            o.insert(k.into(), json!(false));
        }
    }
    Value::Object(o)
}

/// The definition as migval 0.1's types, when it uses nothing newer.
fn legacy_kind(kind: &CheckKind) -> Option<legacy::CheckKind> {
    let plain = |s: &Option<Sided>| -> Option<Option<String>> {
        match s {
            None => Some(None),
            Some(Sided {
                before,
                after: None,
            }) => Some(Some(before.clone())),
            Some(_) => None,
        }
    };
    Some(match kind {
        CheckKind::Metrics(m) => legacy::CheckKind::Metrics(legacy::MetricsCheck {
            table: m.table.clone(),
            filter: plain(&m.filter)?,
            group_by: m
                .group_by
                .iter()
                .map(|g| match (&g.before, &g.after) {
                    (KeyExpr::Column(c), None) if *c == g.label => Some(c.clone()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?,
            metrics: m
                .metrics
                .iter()
                .map(|x| {
                    x.after.is_none().then(|| legacy::Metric {
                        label: x.label.clone(),
                        func: x.func,
                        arg: match &x.arg {
                            MetricArg::Star => MetricArg::Star,
                            MetricArg::Column(c) => MetricArg::Column(c.clone()),
                            MetricArg::Expr(e) => MetricArg::Expr(e.clone()),
                        },
                        rule: x.rule,
                    })
                })
                .collect::<Option<Vec<_>>>()?,
        }),
        CheckKind::NullCount(n) => legacy::CheckKind::NullCount(legacy::NullCheck {
            table: n.table.clone(),
            column: n.column.clone(),
            filter: plain(&n.filter)?,
            rule: n.rule,
        }),
        CheckKind::Orphans(o) => legacy::CheckKind::Orphans(o.clone()),
        CheckKind::Rows(_) | CheckKind::Sizes(_) => return None,
        CheckKind::Custom(c) => {
            if c.key.is_empty() {
                return None;
            }
            legacy::CheckKind::Custom(legacy::CustomCheck {
                sql: c.sql.clone()?,
                sql_after: c.sql_after.clone(),
                key: c.key.clone(),
                rule: c.rule,
            })
        }
        CheckKind::Schema(s) => {
            let e = &s.expect;
            let new_object = matches!(
                s.object,
                FactObject::ColumnsAbsent(_)
                    | FactObject::ForeignKey { .. }
                    | FactObject::Unique(..)
                    | FactObject::CheckOn(..)
            );
            if new_object || !s.follow_rename || e.view_kind.is_some() || e.populated.is_some() {
                return None;
            }
            legacy::CheckKind::Schema(legacy::SchemaCheck {
                object: s.object.clone(),
                expect: legacy::FactExpect {
                    exists: e.exists,
                    data_type: e.data_type.clone(),
                    nullable: e.nullable,
                    validated: e.validated,
                    valid: e.valid,
                    enabled: e.enabled,
                },
                may_change: s.may_change,
                compare_only: s.compare_only,
            })
        }
    })
}
