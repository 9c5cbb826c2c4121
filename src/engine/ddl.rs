//! What a migration script does to the schema, read from its statements (for `migval init`):
//! the tables it touches, the columns, tables, indexes and foreign keys it adds, what it drops,
//! and whether a new column ends up NOT NULL. Like `script.rs`, this reads leading keywords
//! and the shapes DBAs write (`ALTER TABLE t ADD COLUMN c type [NOT NULL] [REFERENCES p(x)]`,
//! `CREATE [UNIQUE] INDEX ... ON t`, `DROP ...`, `UPDATE t`, ...); anything else is skipped,
//! never guessed.

use std::collections::BTreeSet;

use super::script::{Cursor, Statement, Tok, Token, tokenize};
use crate::sql::ident::Name;

/// A column the script adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedColumn {
    pub table: Name,
    pub column: String,
    /// Declared NOT NULL, or SET NOT NULL later in the script.
    pub not_null: bool,
    /// `REFERENCES parent (columns)` on the column, or a later `ADD FOREIGN KEY (column)`.
    pub references: Option<(Name, Vec<String>)>,
}

/// Everything read from the script.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScriptFacts {
    /// Relations named by DDL or DML, in order of first appearance.
    pub touched: Vec<Name>,
    pub created_tables: Vec<Name>,
    pub added_columns: Vec<AddedColumn>,
    pub dropped_columns: Vec<(Name, String)>,
    /// (table, columns, parent, parent columns) added by `ADD [CONSTRAINT n] FOREIGN KEY`.
    pub foreign_keys: Vec<(Name, Vec<String>, Name, Vec<String>)>,
    /// (index name, table).
    pub created_indexes: Vec<(String, Name)>,
    /// (kind as in `[schema] expect`: table, view, index; name).
    pub dropped: Vec<(&'static str, Name)>,
    /// Views (re)created: `CREATE [OR REPLACE] [MATERIALIZED] VIEW`.
    pub views: Vec<Name>,
    /// Constraints added on existing tables (names as written; may be empty).
    pub added_constraints: Vec<(Name, Option<String>)>,
    /// `ALTER TABLE t DROP CONSTRAINT name`.
    pub dropped_constraints: Vec<(Name, String)>,
    /// Tables the script writes rows to (INSERT, UPDATE, DELETE): their data changes on purpose.
    pub written: Vec<Name>,
    /// `CREATE [OR REPLACE] FUNCTION|PROCEDURE name`.
    pub functions: Vec<Name>,
    /// (kind: policy or trigger, table) created by `CREATE POLICY|TRIGGER ... ON table`.
    pub created_on: Vec<(&'static str, Name)>,
}

impl ScriptFacts {
    fn touch(&mut self, n: &Name) {
        if !self.touched.contains(n) {
            self.touched.push(n.clone());
        }
    }
}

/// Read every statement; one that does not lex or does not read as a known shape adds nothing.
pub fn read(statements: &[Statement]) -> ScriptFacts {
    let mut f = ScriptFacts::default();
    for s in statements {
        let Ok(tokens) = tokenize(&s.sql) else {
            continue;
        };
        statement(&mut f, &tokens);
    }
    // A foreign key added after its column: the column references the parent.
    let fks = f.foreign_keys.clone();
    for (t, cols, p, pcols) in fks {
        if let [c] = cols.as_slice()
            && let Some(a) = f
                .added_columns
                .iter_mut()
                .find(|a| a.table == t && &a.column == c)
        {
            a.references.get_or_insert((p, pcols));
        }
    }
    let mut seen = BTreeSet::new();
    f.added_columns
        .retain(|a| seen.insert((a.table.clone(), a.column.clone())));
    f
}

fn name(p: &mut Cursor) -> Option<Name> {
    let mut parts = vec![p.ident()?];
    while p.eat_punct(b'.') {
        parts.push(p.ident()?);
    }
    Some(Name::from_parts(&parts))
}

/// `( a, b )` as identifiers.
fn column_list(p: &mut Cursor) -> Option<Vec<String>> {
    if !p.eat_punct(b'(') {
        return None;
    }
    let mut cols = vec![p.ident()?];
    while p.eat_punct(b',') {
        cols.push(p.ident()?);
    }
    p.eat_punct(b')').then_some(cols)
}

/// The tokens of `tokens[from..]` split at commas outside parentheses.
fn split_top<'t, 'a>(tokens: &'t [Token<'a>]) -> Vec<&'t [Token<'a>]> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, t) in tokens.iter().enumerate() {
        match t.tok {
            Tok::Punct(b'(') => depth += 1,
            Tok::Punct(b')') => depth -= 1,
            Tok::Punct(b',') if depth == 0 => {
                out.push(&tokens[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&tokens[start..]);
    out
}

/// NOT NULL and REFERENCES parent [(cols)] at depth 0 of a column definition.
fn column_traits(def: &[Token]) -> (bool, Option<(Name, Vec<String>)>) {
    let mut not_null = false;
    let mut refs = None;
    let mut depth = 0i32;
    for i in 0..def.len() {
        match def[i].tok {
            Tok::Punct(b'(') => depth += 1,
            Tok::Punct(b')') => depth -= 1,
            _ if depth != 0 => {}
            _ if def[i].is_kw("not") && def.get(i + 1).is_some_and(|t| t.is_kw("null")) => {
                not_null = true;
            }
            _ if def[i].is_kw("primary") => not_null = true,
            _ if def[i].is_kw("references") => {
                let mut p = Cursor {
                    tokens: def,
                    i: i + 1,
                };
                if let Some(parent) = name(&mut p) {
                    let cols = column_list(&mut p).unwrap_or_else(|| vec!["id".into()]);
                    refs = Some((parent, cols));
                }
            }
            _ => {}
        }
    }
    (not_null, refs)
}

/// Whether a column definition carries a constraint of its own (at depth 0).
fn has_inline_constraint(def: &[Token]) -> bool {
    let mut depth = 0i32;
    def.iter().any(|t| {
        match t.tok {
            Tok::Punct(b'(') => depth += 1,
            Tok::Punct(b')') => depth -= 1,
            _ => {}
        }
        depth == 0
            && ["references", "check", "unique", "primary"]
                .iter()
                .any(|k| t.is_kw(k))
    })
}

fn statement(f: &mut ScriptFacts, tokens: &[Token]) {
    let mut p = Cursor { tokens, i: 0 };
    if p.eat("alter") {
        if p.eat("table") {
            if p.eat("if") {
                p.eat("exists");
            }
            p.eat("only");
            if let Some(t) = name(&mut p) {
                p.eat_punct(b'*');
                f.touch(&t);
                for action in split_top(&tokens[p.i..]) {
                    alter_action(f, &t, action);
                }
            }
        }
        return;
    }
    if p.eat("create") {
        p.eat("or");
        p.eat("replace");
        p.eat("unique");
        if p.eat("unlogged") || p.eat("temporary") || p.eat("temp") {
            // temporary tables are not the schema
            if p.peek_kw("table") {
                return;
            }
        }
        if p.eat("table") {
            if p.eat("if") {
                p.eat("not");
                p.eat("exists");
            }
            if let Some(t) = name(&mut p) {
                f.touch(&t);
                f.created_tables.push(t);
            }
        } else if p.eat("index") {
            p.eat("concurrently");
            if p.eat("if") {
                p.eat("not");
                p.eat("exists");
            }
            let idx = if p.peek_kw("on") { None } else { p.ident() };
            if p.eat("on") {
                p.eat("only");
                if let Some(t) = name(&mut p) {
                    f.touch(&t);
                    if let Some(i) = idx {
                        f.created_indexes.push((i, t));
                    }
                }
            }
        } else if p.eat("function") || p.eat("procedure") {
            if let Some(n) = name(&mut p) {
                f.functions.push(n);
            }
        } else if p.eat("policy") || p.peek_kw("trigger") || p.peek_kw("constraint") {
            let kind = if p.peek_kw("trigger") || p.peek_kw("constraint") {
                "trigger"
            } else {
                "policy"
            };
            // Skip to ON <table>.
            while p.i < tokens.len() && !p.peek_kw("on") {
                p.i += 1;
            }
            if p.eat("on")
                && let Some(t) = name(&mut p)
            {
                f.touch(&t);
                f.created_on.push((kind, t));
            }
        } else if (p.eat("materialized") || p.peek_kw("view")) && p.eat("view") {
            if p.eat("if") {
                p.eat("not");
                p.eat("exists");
            }
            if let Some(v) = name(&mut p) {
                f.views.push(v);
            }
        }
        return;
    }
    if p.eat("drop") {
        let kind = if p.eat("table") {
            "table"
        } else if p.eat("materialized") && p.eat("view") || p.eat("view") {
            "view"
        } else if p.eat("index") {
            p.eat("concurrently");
            "index"
        } else {
            return;
        };
        if p.eat("if") {
            p.eat("exists");
        }
        while let Some(n) = name(&mut p) {
            f.dropped.push((kind, n));
            if !p.eat_punct(b',') {
                break;
            }
        }
        return;
    }
    let target = if p.eat("update") {
        p.eat("only");
        name(&mut p)
    } else if p.eat("insert") {
        p.expect("into").and_then(|()| name(&mut p))
    } else if p.eat("delete") {
        p.expect("from").and_then(|()| {
            p.eat("only");
            name(&mut p)
        })
    } else {
        None
    };
    if let Some(t) = target {
        f.touch(&t);
        if !f.written.contains(&t) {
            f.written.push(t);
        }
    }
}

fn alter_action(f: &mut ScriptFacts, t: &Name, action: &[Token]) {
    let mut p = Cursor {
        tokens: action,
        i: 0,
    };
    if p.eat("add") {
        let constraint = if p.eat("constraint") { p.ident() } else { None };
        if p.eat("foreign") {
            if p.expect("key").is_none() {
                return;
            }
            let Some(cols) = column_list(&mut p) else {
                return;
            };
            if p.expect("references").is_none() {
                return;
            }
            if let Some(parent) = name(&mut p) {
                let pcols = column_list(&mut p).unwrap_or_else(|| vec!["id".into()]);
                f.foreign_keys.push((t.clone(), cols, parent, pcols));
            }
            f.added_constraints.push((t.clone(), constraint));
            return;
        }
        if constraint.is_some()
            || ["primary", "unique", "check", "exclude"]
                .iter()
                .any(|k| p.peek_kw(k))
        {
            f.added_constraints.push((t.clone(), constraint));
            return;
        }
        p.eat("column");
        if p.eat("if") {
            p.eat("not");
            p.eat("exists");
        }
        if let Some(column) = p.ident() {
            let (not_null, references) = column_traits(&action[p.i..]);
            // `ADD COLUMN c int REFERENCES p (id)` (or CHECK, UNIQUE, PRIMARY KEY on the column)
            // adds a constraint too: the schema diff sees it, so the spec must declare it.
            if has_inline_constraint(&action[p.i..]) {
                f.added_constraints.push((t.clone(), None));
            }
            f.added_columns.push(AddedColumn {
                table: t.clone(),
                column,
                not_null,
                references,
            });
        }
    } else if p.eat("drop") {
        if p.eat("constraint") {
            if p.eat("if") {
                p.eat("exists");
            }
            if let Some(c) = p.ident() {
                f.dropped_constraints.push((t.clone(), c));
            }
            return;
        }
        p.eat("column");
        if p.eat("if") {
            p.eat("exists");
        }
        if let Some(c) = p.ident() {
            f.dropped_columns.push((t.clone(), c));
        }
    } else if p.eat("alter") {
        p.eat("column");
        let Some(c) = p.ident() else { return };
        if p.eat("set")
            && p.eat("not")
            && p.eat("null")
            && let Some(a) = f
                .added_columns
                .iter_mut()
                .find(|a| &a.table == t && a.column == c)
        {
            a.not_null = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::script::split;

    fn facts(sql: &str) -> ScriptFacts {
        read(&split(sql).unwrap())
    }

    #[test]
    fn columns_keys_indexes_and_drops_are_read() {
        let f = facts(
            "BEGIN;\n\
             ALTER TABLE public.plan_subscriptions ADD COLUMN subscriber_id bigint REFERENCES subscribers (id), ADD COLUMN note text;\n\
             ALTER TABLE orders ADD COLUMN price_cents bigint;\n\
             UPDATE orders SET price_cents = price * 100;\n\
             ALTER TABLE orders ALTER COLUMN price_cents SET NOT NULL, DROP COLUMN price;\n\
             ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id) NOT VALID;\n\
             CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS ix_orders_number ON orders (number);\n\
             CREATE TABLE audit_log (id bigint PRIMARY KEY);\n\
             DROP VIEW IF EXISTS old_view, other_view CASCADE;\n\
             CREATE OR REPLACE VIEW order_totals AS SELECT 1;\n\
             COMMIT;",
        );
        let sub = &f.added_columns[0];
        assert_eq!(sub.column, "subscriber_id");
        assert_eq!(sub.table.schema.as_deref(), Some("public"));
        assert_eq!(
            sub.references,
            Some((Name::from_parts(&["subscribers".into()]), vec!["id".into()]))
        );
        assert!(!sub.not_null);
        let cents = f
            .added_columns
            .iter()
            .find(|a| a.column == "price_cents")
            .unwrap();
        assert!(cents.not_null, "SET NOT NULL later in the script");
        assert_eq!(
            f.dropped_columns,
            vec![(Name::from_parts(&["orders".into()]), "price".into())]
        );
        assert_eq!(f.foreign_keys.len(), 1);
        // The inline REFERENCES adds a constraint (a regression: runbook 001's
        // `ADD COLUMN customer_organization_id integer CONSTRAINT ... REFERENCES ...`), and
        // `note text` none.
        let constrained: Vec<&str> = f
            .added_constraints
            .iter()
            .map(|(t, _)| t.name.as_str())
            .collect();
        assert_eq!(constrained, ["plan_subscriptions", "orders"]);
        assert_eq!(f.created_indexes[0].0, "ix_orders_number");
        assert_eq!(f.created_tables[0].name, "audit_log");
        assert_eq!(f.dropped.len(), 2);
        assert_eq!(f.views[0].name, "order_totals");
        let touched: Vec<&str> = f.touched.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(touched, ["plan_subscriptions", "orders", "audit_log"]);
    }
}
