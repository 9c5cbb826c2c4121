//! `migval init`: a commented spec from the catalog (and the migration scripts), so that a DBA
//! edits checks instead of writing them. Read-only: three catalog queries, no table scanned.
//!
//! ```text
//!   tables (--tables, and every table the scripts touch)
//!     -> per table: row count + non-NULL counts of nullable columns + sums of numeric columns
//!                   + min/max of dates, in one fused check
//!     -> per foreign key (declared, or a likely `x_id -> x.id`): an orphan check
//!     -> per view reading them: its numeric totals grouped by its first column
//!     -> keys, constraints and indexes: schema facts
//!   scripts -> [rename] (RENAME), [schema] expect (ADD / DROP / CREATE INDEX / views), and
//!              after-only checks for the columns they add (NOT NULL: zero NULLs;
//!              REFERENCES: zero orphans)
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use tokio_postgres::Client;

use super::ddl::ScriptFacts;
use super::script::InferredRename;
use crate::db;
use crate::model::DbFailure;
use crate::sql::{self, ident::Name};

/// How much one generated check may read: wider tables get a comment saying what was left out.
const MAX_METRICS: usize = 40;
/// Tables beyond this many are listed in a comment, not checked (a 1,000-table catalog).
pub const MAX_TABLES: usize = 200;

pub struct InitInput {
    /// Schemas searched for the names, in order.
    pub schemas: Vec<String>,
    /// Tables named on the command line (unqualified or schema-qualified).
    pub tables: Vec<Name>,
    pub facts: ScriptFacts,
    pub renames: Vec<InferredRename>,
    /// For the header: where the spec came from.
    pub source: String,
}

#[derive(Debug, Clone)]
struct Column {
    name: String,
    category: String,
    not_null: bool,
}

#[derive(Debug, Clone)]
struct Table {
    schema: String,
    name: String,
    kind: String,
    rows: f64,
    columns: Vec<Column>,
}

#[derive(Debug, Clone)]
struct Constraint {
    table: String,
    what: String,
    name: String,
    columns: Vec<String>,
    parent: Option<(String, String)>,
    parent_columns: Vec<String>,
}

/// Quote a TOML basic string.
fn q(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A name as a spec writes it: plain when PostgreSQL would fold it to itself, else quoted.
fn ident(s: &str) -> String {
    let plain = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        s.to_string()
    } else {
        crate::sql::ident::quote(s)
    }
}

/// Column names as a spec writes them, comma separated.
fn idents(cols: &[String]) -> String {
    cols.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ")
}

fn failure(e: tokio_postgres::Error, what: &str) -> DbFailure {
    db::failure(&e, Some(what.into()))
}

/// Generate the spec text.
pub async fn generate(client: &Client, input: &InitInput) -> Result<String, DbFailure> {
    // The tables: named, plus the ones the scripts touch and do not create.
    let created: BTreeSet<&str> = input
        .facts
        .created_tables
        .iter()
        .map(|n| n.name.as_str())
        .collect();
    let mut names: Vec<String> = Vec::new();
    for n in input.tables.iter().chain(input.facts.touched.iter()) {
        if !created.contains(n.name.as_str()) && !names.contains(&n.name) {
            names.push(n.name.clone());
        }
    }
    let mut schemas = input.schemas.clone();
    for n in input.tables.iter().chain(input.facts.touched.iter()) {
        if let Some(s) = &n.schema
            && !schemas.contains(s)
        {
            schemas.push(s.clone());
        }
    }
    let skipped: Vec<String> = names.iter().skip(MAX_TABLES).cloned().collect();
    names.truncate(MAX_TABLES);

    let rows = client
        .query(sql::INIT_COLUMNS.sql, &[&schemas, &names])
        .await
        .map_err(|e| failure(e, "reading the columns"))?;
    let mut tables: Vec<Table> = Vec::new();
    for r in rows {
        let get = |e| failure(e, "reading the columns");
        let (schema, name): (String, String) = (
            r.try_get("schema").map_err(get)?,
            r.try_get("table").map_err(get)?,
        );
        if tables
            .last()
            .is_none_or(|t| t.name != name || t.schema != schema)
        {
            tables.push(Table {
                schema,
                name,
                kind: r.try_get("kind").map_err(get)?,
                rows: r.try_get("est_rows").map_err(get)?,
                columns: Vec::new(),
            });
        }
        if let Some(t) = tables.last_mut() {
            t.columns.push(Column {
                name: r.try_get("column").map_err(get)?,
                category: r.try_get("category").map_err(get)?,
                not_null: r.try_get("not_null").map_err(get)?,
            });
        }
    }
    let rows = client
        .query(sql::INIT_CONSTRAINTS.sql, &[&schemas, &names])
        .await
        .map_err(|e| failure(e, "reading the constraints"))?;
    let mut constraints = Vec::new();
    for r in rows {
        let get = |e| failure(e, "reading the constraints");
        let parent = match (
            r.try_get::<_, Option<String>>("parent_schema")
                .map_err(get)?,
            r.try_get::<_, Option<String>>("parent").map_err(get)?,
        ) {
            (Some(s), Some(t)) => Some((s, t)),
            _ => None,
        };
        constraints.push(Constraint {
            table: r.try_get("table").map_err(get)?,
            what: r.try_get("what").map_err(get)?,
            name: r.try_get("name").map_err(get)?,
            columns: r.try_get("columns").map_err(get)?,
            parent,
            parent_columns: r
                .try_get::<_, Option<Vec<String>>>("parent_columns")
                .map_err(get)?
                .unwrap_or_default(),
        });
    }
    let rows = client
        .query(sql::INIT_VIEWS.sql, &[&schemas, &names])
        .await
        .map_err(|e| failure(e, "reading the views"))?;
    let mut views: BTreeMap<(String, String), Vec<Column>> = BTreeMap::new();
    for r in rows {
        let get = |e| failure(e, "reading the views");
        views
            .entry((
                r.try_get("schema").map_err(get)?,
                r.try_get("view").map_err(get)?,
            ))
            .or_default()
            .push(Column {
                name: r.try_get("column").map_err(get)?,
                category: r.try_get("category").map_err(get)?,
                not_null: false,
            });
    }
    // Every table name in scope, for likely foreign keys.
    let known: BTreeSet<String> = tables.iter().map(|t| t.name.clone()).collect();
    Ok(render(
        input,
        &tables,
        &constraints,
        &views,
        &known,
        &skipped,
    ))
}

fn render(
    input: &InitInput,
    tables: &[Table],
    constraints: &[Constraint],
    views: &BTreeMap<(String, String), Vec<Column>>,
    known: &BTreeSet<String>,
    skipped: &[String],
) -> String {
    let f = &input.facts;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Generated by `migval init` from {}.\n# Review it: every check says why it is there; delete what does not matter, tighten what does.\n# Checks are written with the names as they are BEFORE the migration ([rename] maps them).",
        input.source
    );
    out.push_str("\n[settings]\n");
    let _ = writeln!(
        out,
        "schemas = [{}]",
        input
            .schemas
            .iter()
            .map(|s| q(&ident(s)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let dropped_col = |t: &str, c: &str| {
        f.dropped_columns
            .iter()
            .any(|(n, col)| n.name == t && col == c)
    };
    let renamed: Vec<&InferredRename> = input.renames.iter().collect();
    // A view the script recreates, with a column named like a renamed column of a table:
    // recreated with the new name, as DBAs do.
    let mut view_renames: Vec<(String, String, String)> = Vec::new();
    for ((_, view), cols) in views {
        if !f.views.iter().any(|v| v.name == *view) {
            continue;
        }
        for r in &renamed {
            if let Some(c) = &r.column
                && cols.iter().any(|x| x.name == *c)
                && !view_renames.iter().any(|(v, o, _)| v == view && o == c)
            {
                view_renames.push((view.clone(), c.clone(), r.new_name.clone()));
            }
        }
    }
    if !renamed.is_empty() {
        out.push_str("\n[rename]                   # from the scripts' RENAME statements\n");
        for r in &renamed {
            match &r.column {
                Some(c) => {
                    let _ = writeln!(
                        out,
                        "{} = {}",
                        q(&format!("{}.{}", ident(&r.table), ident(c))),
                        q(&format!("{}.{}", ident(&r.table), ident(&r.new_name)))
                    );
                }
                None => {
                    let _ = writeln!(out, "{} = {}", q(&ident(&r.table)), q(&ident(&r.new_name)));
                }
            }
        }
        for (v, o, n) in &view_renames {
            let _ = writeln!(
                out,
                "{} = {}   # inferred: the script recreates the view, the column renamed like its table's",
                q(&format!("{}.{}", ident(v), ident(o))),
                q(&format!("{}.{}", ident(v), ident(n)))
            );
        }
    }
    let schema_of = |t: &Name| {
        t.schema.clone().unwrap_or_else(|| {
            tables
                .iter()
                .find(|x| x.name == t.name)
                .map(|x| x.schema.clone())
                .or_else(|| input.schemas.first().cloned())
                .unwrap_or_else(|| "public".into())
        })
    };
    let mut expect: Vec<String> = Vec::new();
    for a in &f.added_columns {
        expect.push(format!(
            "add column {}.{}.{}",
            schema_of(&a.table),
            a.table.name,
            a.column
        ));
    }
    for (t, c) in &f.dropped_columns {
        expect.push(format!("drop column {}.{}.{c}", schema_of(t), t.name));
    }
    for t in &f.created_tables {
        expect.push(format!("add table {}.{}", schema_of(t), t.name));
    }
    for (i, t) in &f.created_indexes {
        expect.push(format!("add index {}.{i}", schema_of(t)));
    }
    for (t, _) in &f.added_constraints {
        let line = format!("add constraint {}.{}.*", schema_of(t), t.name);
        if !expect.contains(&line) {
            expect.push(line);
        }
    }
    for (t, c) in &f.dropped_constraints {
        expect.push(format!("drop constraint {}.{}.{c}", schema_of(t), t.name));
    }
    // A dropped column takes its constraints and indexes with it.
    for c in constraints {
        if c.columns.iter().any(|x| dropped_col(&c.table, x)) {
            let s = schema_of(&Name::from_parts(std::slice::from_ref(&c.table)));
            let line = if c.what == "i" {
                format!("drop index {s}.{}", c.name)
            } else {
                format!("drop constraint {s}.{}.{}", c.table, c.name)
            };
            if !expect.contains(&line) {
                expect.push(line);
            }
        }
    }
    for n in &f.functions {
        let s = n.schema.clone().unwrap_or_else(|| {
            input
                .schemas
                .first()
                .cloned()
                .unwrap_or_else(|| "public".into())
        });
        for line in [
            format!("change function {s}.{}(*", n.name),
            format!("change grant {s}.{}(*", n.name),
        ] {
            if !expect.contains(&line) {
                expect.push(line);
            }
        }
    }
    for (kind, t) in &f.created_on {
        let line = format!("add {kind} {}.{}.*", schema_of(t), t.name);
        if !expect.contains(&line) {
            expect.push(line);
        }
    }
    for (kind, n) in &f.dropped {
        // Dropped and created again by the script: the net change is an alter (below).
        let recreated = f.views.iter().any(|v| v.name == n.name)
            || f.created_tables.iter().any(|t| t.name == n.name)
            || f.created_indexes.iter().any(|(i, _)| *i == n.name);
        if !recreated {
            expect.push(format!("drop {kind} {}.{}", schema_of(n), n.name));
        }
    }
    for v in &f.views {
        let existed = views.keys().any(|(_, name)| *name == v.name);
        expect.push(format!(
            "{} view {}.{}",
            if existed { "alter" } else { "add" },
            schema_of(v),
            v.name
        ));
    }
    if !expect.is_empty() || !input.renames.is_empty() {
        out.push_str("\n[schema]                   # the changes the scripts make; any other change fails\nexpect = [\n");
        for e in &expect {
            let _ = writeln!(out, "  {},", q(e));
        }
        out.push_str("]\n");
    }
    if !skipped.is_empty() {
        let _ = writeln!(
            out,
            "\n# Not checked (more than {MAX_TABLES} tables): {}",
            skipped.join(", ")
        );
    }

    for t in tables {
        let _ = writeln!(
            out,
            "\n# ---- {}.{} ({}, about {} rows) ----",
            t.schema,
            t.name,
            match t.kind.as_str() {
                "v" => "view",
                "m" => "materialized view",
                "p" => "partitioned table",
                "f" => "foreign table",
                _ => "table",
            },
            t.rows.max(0.0).round()
        );
        let table = ident(&t.name);
        // One fused check: counts, non-NULL counts of nullable columns, sums, date ranges.
        let mut metrics = vec!["count(*)".to_string()];
        let key_cols: BTreeSet<String> = constraints
            .iter()
            .filter(|c| c.table == t.name && matches!(c.what.as_str(), "p" | "u" | "f"))
            .flat_map(|c| c.columns.iter().cloned())
            .collect();
        let mut left_out = Vec::new();
        let mut dropped = Vec::new();
        for c in &t.columns {
            if dropped_col(&t.name, &c.name) {
                dropped.push(c.name.clone());
                continue;
            }
            let col = ident(&c.name);
            let mut add = Vec::new();
            if !c.not_null {
                add.push(format!("count({col})"));
            }
            let key_like = c.name == "id" || c.name.ends_with("_id") || key_cols.contains(&c.name);
            match c.category.as_str() {
                "N" if !key_like => add.push(format!("sum({col})")),
                "D" => {
                    add.push(format!("min({col})"));
                    add.push(format!("max({col})"));
                }
                _ => {}
            }
            for m in add {
                if metrics.len() < MAX_METRICS {
                    metrics.push(m);
                } else {
                    left_out.push(m);
                }
            }
        }
        let written = f.written.iter().any(|w| w.name == t.name);
        if written {
            out.push_str("\n[[check]]\n# why: the script writes rows here (INSERT/UPDATE/DELETE): the totals are reported, not\n#      judged; say what must happen, e.g. expect = { changes_by = \"1\" } on count(*)\n");
        } else {
            out.push_str("\n[[check]]\n# why: the migration must not lose, duplicate or alter rows: the row count, the\n#      non-NULL count of every nullable column, sums of numbers and date ranges stay as they are\n");
        }
        if !dropped.is_empty() {
            let _ = writeln!(
                out,
                "# (left out: {}, dropped by the migration)",
                dropped.join(", ")
            );
        }
        if !left_out.is_empty() {
            let _ = writeln!(
                out,
                "# (left out, to keep one scan light: {})",
                left_out.join(", ")
            );
        }
        let _ = writeln!(
            out,
            "name = {}\ntable = {}\nmetrics = [{}]",
            q(&format!("{}: rows and column totals", t.name)),
            q(&table),
            metrics.iter().map(|m| q(m)).collect::<Vec<_>>().join(", ")
        );
        if written {
            out.push_str("expect = \"may_change\"\n");
        } else if metrics.iter().any(|m| m.starts_with("sum(")) {
            out.push_str(
                "tolerance = { abs = \"0.01\" }    # money: within a cent; counts stay exact\n",
            );
        }

        // Foreign keys: declared, then likely ones.
        let mut fk_cols: BTreeSet<String> = BTreeSet::new();
        for c in constraints
            .iter()
            .filter(|c| c.table == t.name && c.what == "f")
        {
            let Some((_, parent)) = &c.parent else {
                continue;
            };
            fk_cols.extend(c.columns.iter().cloned());
            let _ = writeln!(
                out,
                "\n[[check]]\n# why: foreign key {} must keep every child row's parent\nname = {}\norphans = {{ child = {}, parent = {} }}",
                c.name,
                q(&format!("{}: no orphan {}", t.name, c.columns.join(", "))),
                q(&format!("{}({})", table, idents(&c.columns))),
                q(&format!("{}({})", ident(parent), idents(&c.parent_columns)))
            );
        }
        for c in &t.columns {
            let Some(stem) = c.name.strip_suffix("_id") else {
                continue;
            };
            if fk_cols.contains(&c.name) || dropped_col(&t.name, &c.name) {
                continue;
            }
            let parent = [stem.to_string(), format!("{stem}s"), format!("{stem}es")]
                .into_iter()
                .find(|p| known.contains(p) && *p != t.name);
            if let Some(parent) = parent {
                let _ = writeln!(
                    out,
                    "\n[[check]]\n# why: LIKELY foreign key (no constraint): {}.{} -> {}.id by its name; delete if it is not one\nname = {}\norphans = {{ child = {}, parent = {} }}",
                    t.name,
                    c.name,
                    parent,
                    q(&format!("{}: no orphan {} (likely key)", t.name, c.name)),
                    q(&format!("{}.{}", table, ident(&c.name))),
                    q(&format!("{}.id", ident(&parent)))
                );
            }
        }
        // Facts that must survive.
        for c in constraints.iter().filter(|c| c.table == t.name) {
            let gone = f
                .dropped
                .iter()
                .any(|(k, n)| *k == "index" && n.name == c.name);
            if gone || c.columns.iter().any(|x| dropped_col(&t.name, x)) {
                let _ = writeln!(
                    out,
                    "\n# (not checked: {} is dropped by the migration)",
                    c.name
                );
                continue;
            }
            let (why, fact) = match c.what.as_str() {
                "p" => (
                    "the primary key",
                    format!(
                        "{{ constraint = {}, validated = true }}",
                        q(&format!("{table}.{}", ident(&c.name)))
                    ),
                ),
                "u" => (
                    "a unique key",
                    format!(
                        "{{ unique = {} }}",
                        q(&format!("{table}({})", idents(&c.columns)))
                    ),
                ),
                "f" => (
                    "a foreign key",
                    format!(
                        "{{ constraint = {}, validated = true }}",
                        q(&format!("{table}.{}", ident(&c.name)))
                    ),
                ),
                "c" => (
                    "a CHECK constraint",
                    format!(
                        "{{ constraint = {}, validated = true }}",
                        q(&format!("{table}.{}", ident(&c.name)))
                    ),
                ),
                _ => (
                    "an index (queries depend on it)",
                    format!("{{ index = {}, valid = true }}", q(&ident(&c.name))),
                ),
            };
            let _ = writeln!(
                out,
                "\n[[check]]\n# why: {why} must survive, valid\nname = {}\nschema = {fact}",
                q(&format!("{}: {} present", t.name, c.name))
            );
        }
    }

    // Views that read the tables: their totals, grouped by their first column.
    for ((schema, view), cols) in views {
        let numeric: Vec<String> = cols
            .iter()
            .skip(1)
            .filter(|c| c.category == "N" && c.name != "id" && !c.name.ends_with("_id"))
            .take(MAX_METRICS)
            .map(|c| format!("sum({})", ident(&c.name)))
            .collect();
        let Some(first) = cols.first() else { continue };
        let dropped = f
            .dropped
            .iter()
            .any(|(k, n)| *k == "view" && n.name == *view)
            && !f.views.iter().any(|v| v.name == *view);
        if dropped {
            let _ = writeln!(
                out,
                "\n# (view {schema}.{view} is dropped by the migration: not checked)"
            );
            continue;
        }
        let mut metrics = vec!["count(*)".to_string()];
        metrics.extend(numeric);
        let _ = writeln!(
            out,
            "\n# ---- view {schema}.{view} ----\n[[check]]\n# why: the view reads the tables above; its totals per {} must stay the same\nname = {}\ntable = {}\ngroup_by = [{}]\nmetrics = [{}]",
            first.name,
            q(&format!("{view}: totals per {}", first.name)),
            q(&ident(view)),
            q(&ident(&first.name)),
            metrics.iter().map(|m| q(m)).collect::<Vec<_>>().join(", ")
        );
        if metrics.len() > 1 {
            out.push_str("tolerance = { abs = \"0.01\", scope = \"both\" }\n");
        }
    }

    // What the scripts add: judged on the post-state alone.
    for a in &f.added_columns {
        let table = ident(&a.table.name);
        let col = ident(&a.column);
        if a.not_null {
            let _ = writeln!(
                out,
                "\n[[check]]\n# why: the migration adds {}.{} NOT NULL: no row may be left without a value\n# (after-only: declared `add column` above)\nname = {}\nnull_count = {}\nexpect = \"zero\"",
                a.table.name,
                a.column,
                q(&format!("{}.{}: no NULL", a.table.name, a.column)),
                q(&format!("{table}.{col}"))
            );
        } else {
            let _ = writeln!(
                out,
                "\n[[check]]\n# why: the migration adds {}.{}: how many rows it fills (edit to expect = \"zero\" when every row must have one)\nname = {}\nnull_count = {}\nexpect = \"may_change\"",
                a.table.name,
                a.column,
                q(&format!(
                    "{}.{}: NULLs after the migration",
                    a.table.name, a.column
                )),
                q(&format!("{table}.{col}"))
            );
        }
        if let Some((parent, pcols)) = &a.references {
            let _ = writeln!(
                out,
                "\n[[check]]\n# why: the new key must point at existing rows\nname = {}\norphans = {{ child = {}, parent = {} }}\nexpect = \"zero\"",
                q(&format!("{}.{}: no orphan", a.table.name, a.column)),
                q(&format!("{table}({col})")),
                q(&format!("{}({})", ident(&parent.name), idents(pcols)))
            );
        }
    }
    for (t, cols, parent, pcols) in &f.foreign_keys {
        if cols.len() == 1
            && f.added_columns
                .iter()
                .any(|a| &a.table == t && a.column == cols[0])
        {
            continue; // checked with its column above
        }
        let _ = writeln!(
            out,
            "\n[[check]]\n# why: the migration adds this foreign key: no row may break it\nname = {}\norphans = {{ child = {}, parent = {} }}\nexpect = \"zero\"",
            q(&format!(
                "{}({}): no orphan (new key)",
                t.name,
                cols.join(", ")
            )),
            q(&format!("{}({})", ident(&t.name), idents(cols))),
            q(&format!("{}({})", ident(&parent.name), idents(pcols)))
        );
        let _ = writeln!(
            out,
            "\n[[check]]\n# why: NOT VALID foreign keys check nothing: the new key must be validated\nname = {}\nschema = {{ foreign_key = {}, validated = true }}",
            q(&format!(
                "{}({}): foreign key validated",
                t.name,
                cols.join(", ")
            )),
            q(&format!(
                "{}({}) -> {}({})",
                ident(&t.name),
                idents(cols),
                ident(&parent.name),
                idents(pcols)
            ))
        );
    }
    for t in &f.created_tables {
        let _ = writeln!(
            out,
            "\n[[check]]\n# why: the migration creates {}: it must be there after it\nname = {}\nschema = {{ table = {} }}",
            t.name,
            q(&format!("{}: created", t.name)),
            q(&ident(&t.name))
        );
    }
    out
}
