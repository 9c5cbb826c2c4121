//! Before anything runs: resolve every relation and column the checks read, against the live
//! catalog, with the [rename] map applied on the post-migration side. A missing table or
//! column is reported by name, with a hint when a rename would explain it, and the capture
//! does not start.

use std::collections::{BTreeMap, BTreeSet};

use tokio_postgres::Client;

use crate::db;
use crate::model::{Absence, AbsenceReason, DbFailure, MissingObject};
use crate::spec::{CheckKind, FactObject, KeyExpr, MetricArg, Spec};
use crate::sql::{self, ident::Name};

use super::plan::Naming;

/// A relation as found in the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    pub schema: String,
    pub name: String,
    /// pg_class.relkind: r, p, v, m, f.
    pub kind: String,
    pub est_rows: f64,
    pub columns: Vec<String>,
    /// Per column: hash_record_extended hashes its type by value (else a row fingerprint
    /// casts it to text).
    pub hashable: Vec<bool>,
}

impl Relation {
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

/// The relations in scope, and the schema search order used to resolve unqualified names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    pub schemas: Vec<String>,
    pub relations: Vec<Relation>,
}

impl Catalog {
    pub fn resolve(&self, n: &Name) -> Option<&Relation> {
        match &n.schema {
            Some(s) => self
                .relations
                .iter()
                .find(|r| &r.schema == s && r.name == n.name),
            None => self.schemas.iter().find_map(|s| {
                self.relations
                    .iter()
                    .find(|r| &r.schema == s && r.name == n.name)
            }),
        }
    }

    /// Schemas to search for `n` (its own when qualified).
    pub fn search(&self, n: &Name) -> Vec<String> {
        match &n.schema {
            Some(s) => vec![s.clone()],
            None => self.schemas.clone(),
        }
    }

    /// `schema.table` -> columns, as stored in snapshots.
    pub fn to_map(&self) -> BTreeMap<String, Vec<String>> {
        self.relations
            .iter()
            .map(|r| (r.qualified(), r.columns.clone()))
            .collect()
    }
}

/// What preflight found: the catalog, and the checks that have nothing to capture on this
/// side (by index into `spec.checks`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Preflight {
    pub catalog: Catalog,
    pub absent: BTreeMap<usize, Absence>,
}

/// Why the capture did not start.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("{}", .0.join("\n"))]
    Missing(Vec<String>),
    #[error("reading the catalog failed: {0}")]
    Db(DbFailure),
}

/// Columns that every table has without declaring them (`tableoid` names a row's partition).
pub const SYSTEM_COLUMNS: &[&str] = &["tableoid", "ctid", "xmin", "xmax", "cmin", "cmax"];

/// Relations the checks read (after renames for the post side), per check index, plus views
/// that must only be looked up (views_queryable reports them itself). After-only checks on the
/// pre-migration side read nothing.
fn referenced(spec: &Spec, naming: &Naming) -> (Vec<(usize, Name)>, Vec<Name>) {
    let mut must = Vec::new();
    let mut soft = Vec::new();
    for (i, c) in spec.checks.iter().enumerate() {
        if c.after_only && !naming.after {
            continue;
        }
        match &c.kind {
            CheckKind::Metrics(m) => must.push((i, naming.rel(&m.table))),
            CheckKind::NullCount(n) => must.push((i, naming.rel(&n.table))),
            CheckKind::Orphans(o) => {
                must.push((i, naming.rel(&o.child)));
                must.push((i, naming.rel(&o.parent)));
            }
            CheckKind::Schema(s) => {
                if let FactObject::ViewsQueryable(vs) = &s.object {
                    soft.extend(vs.iter().map(|v| naming.rel(v)));
                }
            }
            CheckKind::Rows(r) => must.push((i, naming.rel(&r.table))),
            // A table declared `add table` is not there yet at baseline: reported as new.
            CheckKind::Sizes(s) => must.extend(
                s.tables
                    .iter()
                    .filter(|t| naming.after || !spec.schema.declares_added("table", t, None))
                    .map(|t| (i, naming.rel(t))),
            ),
            CheckKind::Custom(_) => {}
        }
    }
    (must, soft)
}

/// Read the catalog for the checks of `spec`. On the pre-migration side a missing object is
/// an error (the spec names something that is not there: exit 2, with a hint); after-only
/// checks are recorded as new. On the post-migration side a missing object is the
/// migration's result: the check is recorded as absent, and compare fails it with the reason.
pub async fn run(
    client: &Client,
    spec: &Spec,
    naming: &Naming,
) -> Result<Preflight, PreflightError> {
    let schemas = match &spec.settings.schemas {
        Some(s) => s.clone(),
        None => {
            let row = client
                .query_one(sql::SEARCH_PATH.sql, &[])
                .await
                .map_err(|e| {
                    PreflightError::Db(db::failure(&e, Some("reading search_path".into())))
                })?;
            row.try_get::<_, Vec<String>>("schemas")
                .map_err(|e| PreflightError::Db(db::failure(&e, None)))?
        }
    };
    let (must, soft) = referenced(spec, naming);
    let mut all_schemas: BTreeSet<String> = schemas.iter().cloned().collect();
    let mut names: BTreeSet<String> = BTreeSet::new();
    for n in must.iter().map(|(_, n)| n).chain(soft.iter()) {
        if let Some(s) = &n.schema {
            all_schemas.insert(s.clone());
        }
        names.insert(n.name.clone());
    }
    let schema_list: Vec<String> = all_schemas.into_iter().collect();
    let name_list: Vec<String> = names.into_iter().collect();
    let rows = client
        .query(sql::RELATIONS.sql, &[&schema_list, &name_list])
        .await
        .map_err(|e| PreflightError::Db(db::failure(&e, Some("reading the catalog".into()))))?;
    let mut relations = Vec::new();
    for r in rows {
        let get = |e: tokio_postgres::Error| PreflightError::Db(db::failure(&e, None));
        relations.push(Relation {
            schema: r.try_get("schema").map_err(get)?,
            name: r.try_get("name").map_err(get)?,
            kind: r.try_get("kind").map_err(get)?,
            est_rows: r.try_get("est_rows").map_err(get)?,
            columns: r.try_get("columns").map_err(get)?,
            hashable: r.try_get("hashable").map_err(get)?,
        });
    }
    let catalog = Catalog { schemas, relations };
    let missing = find_missing(spec, naming, &catalog, &must);

    let mut absent = BTreeMap::new();
    if !naming.after {
        for (i, c) in spec.checks.iter().enumerate() {
            if c.after_only {
                absent.insert(
                    i,
                    Absence {
                        reason: AbsenceReason::New,
                        missing: Vec::new(),
                    },
                );
            }
        }
        if !missing.is_empty() {
            let mut problems = Vec::new();
            for (i, objects) in &missing {
                for m in objects {
                    problems.push(format!(
                        "check `{}`: {m}{}",
                        spec.checks[*i].name,
                        explain_baseline(m, &catalog, spec)
                    ));
                }
            }
            return Err(PreflightError::Missing(problems));
        }
    } else {
        for (i, objects) in missing {
            absent.insert(
                i,
                Absence {
                    reason: AbsenceReason::Missing,
                    missing: objects,
                },
            );
        }
    }
    Ok(Preflight { catalog, absent })
}

/// Per check (in spec order), the relations and columns it reads that are not there.
fn find_missing(
    spec: &Spec,
    naming: &Naming,
    catalog: &Catalog,
    must: &[(usize, Name)],
) -> BTreeMap<usize, Vec<MissingObject>> {
    let mut out: BTreeMap<usize, Vec<MissingObject>> = BTreeMap::new();
    for (i, n) in must {
        if catalog.resolve(n).is_none() {
            let m = MissingObject::Relation {
                name: n.to_string(),
                searched: catalog.search(n),
            };
            let list = out.entry(*i).or_default();
            if !list.contains(&m) {
                list.push(m);
            }
        }
    }
    for (i, c) in spec.checks.iter().enumerate() {
        if c.after_only && !naming.after {
            continue;
        }
        for (table, cols) in columns_used(&c.kind, naming) {
            let Some(rel) = catalog.resolve(&table) else {
                continue;
            };
            for col in cols {
                if rel.columns.iter().any(|x| x == &col) || is_system_column(rel, &col) {
                    continue;
                }
                out.entry(i).or_default().push(MissingObject::Column {
                    relation: rel.qualified(),
                    column: col,
                });
            }
        }
    }
    out
}

/// System columns exist on tables, partitioned tables, materialized views and foreign tables,
/// not on views.
fn is_system_column(rel: &Relation, col: &str) -> bool {
    SYSTEM_COLUMNS.contains(&col) && rel.kind != "v"
}

/// The hint for a missing object on the pre-migration side.
fn explain_baseline(m: &MissingObject, catalog: &Catalog, spec: &Spec) -> String {
    let declare = "\n    hint: if the migration creates it, mark the check `new = true` (or declare it in [schema] expect, e.g. \"add column public.orders.price_cents\"): it is then judged on the post-state alone; otherwise check the spelling (names are case-folded unless written in double quotes)";
    let MissingObject::Column { relation, column } = m else {
        return declare.into();
    };
    let Some(rel) = catalog
        .relations
        .iter()
        .find(|r| &r.qualified() == relation)
    else {
        return declare.into();
    };
    // The baseline is taken under the old names: a renamed column here means the migration
    // already ran.
    if let Some((_, _, new)) = spec
        .renames
        .columns
        .iter()
        .find(|(_, old, new)| old == column && rel.columns.contains(new))
    {
        return format!(
            "\n    hint: `{}` has `{new}`, which [rename] maps `{column}` to: was the migration already applied? Take the baseline before migrating",
            rel.name
        );
    }
    declare.into()
}

/// The hint for an object missing after the migration, worded with both catalogs: the
/// baseline's (`before`, when known) and the post-state's (`after`), `schema.table` ->
/// columns as snapshots store them.
pub fn explain_after(
    m: &MissingObject,
    spec: &Spec,
    before: Option<&BTreeMap<String, Vec<String>>>,
    after: &BTreeMap<String, Vec<String>>,
) -> String {
    match m {
        MissingObject::Relation { name, .. } => {
            let bare = name.rsplit('.').next().unwrap_or(name);
            if spec.renames.tables.iter().any(|(_, new)| new == bare) {
                String::new()
            } else {
                "; if the migration renamed it, add it to [rename]: \"old_name\" = \"new_name\""
                    .into()
            }
        }
        MissingObject::Column { relation, column } => {
            let table = relation.rsplit('.').next().unwrap_or(relation);
            let cols = after.get(relation).cloned().unwrap_or_default();
            if let Some((_, old, _)) = spec
                .renames
                .columns
                .iter()
                .find(|(_, _, new)| new == column)
            {
                if cols.contains(old) {
                    return format!(
                        "; `{table}` still has `{old}`, which [rename] maps to `{column}`: has the migration been applied yet?"
                    );
                }
                return format!(
                    "; [rename] maps `{old}` to `{column}`, but `{column}` is not there either: check the [rename] entry"
                );
            }
            let was = before.and_then(|b| b.get(relation));
            let new_cols: Vec<&String> = match was {
                Some(b) => cols.iter().filter(|c| !b.contains(c)).collect(),
                None => Vec::new(),
            };
            match new_cols.as_slice() {
                [one] => format!(
                    "; the migration added `{one}`: if `{column}` was renamed, add to [rename]: \"{table}.{column}\" = \"{table}.{one}\""
                ),
                [] => format!(
                    "; if the migration renamed `{column}`, add to [rename]: \"{table}.{column}\" = \"{table}.new_name\""
                ),
                many => format!(
                    "; columns new since the baseline: {}; if `{column}` was renamed to one of them, add it to [rename]",
                    many.iter()
                        .map(|c| format!("`{c}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
    }
}

/// (relation as queried, columns as queried) for the plain column references of a check.
fn columns_used(kind: &CheckKind, naming: &Naming) -> Vec<(Name, Vec<String>)> {
    match kind {
        CheckKind::Metrics(m) => {
            // A key or metric with a post-migration form reads an expression there.
            let mut cols: Vec<String> = m
                .group_by
                .iter()
                .filter(|g| !(naming.after && g.after.is_some()))
                .filter_map(|g| match &g.before {
                    KeyExpr::Column(c) => Some(naming.col(&m.table, c)),
                    KeyExpr::Expr(_) => None,
                })
                .collect();
            for metric in &m.metrics {
                if naming.after && metric.after.is_some() {
                    continue;
                }
                if let MetricArg::Column(c) = &metric.arg {
                    let c = naming.col(&m.table, c);
                    // Once per column, however many metrics use it.
                    if !cols.contains(&c) {
                        cols.push(c);
                    }
                }
            }
            vec![(naming.rel(&m.table), cols)]
        }
        CheckKind::NullCount(n) => {
            vec![(naming.rel(&n.table), vec![naming.col(&n.table, &n.column)])]
        }
        CheckKind::Orphans(o) => vec![
            (
                naming.rel(&o.child),
                o.child_columns
                    .iter()
                    .map(|c| naming.col(&o.child, c))
                    .collect(),
            ),
            (
                naming.rel(&o.parent),
                o.parent_columns
                    .iter()
                    .map(|c| naming.col(&o.parent, c))
                    .collect(),
            ),
        ],
        CheckKind::Rows(r) => {
            let mut cols: Vec<String> = r.key.iter().map(|k| naming.col(&r.table, k)).collect();
            // The fingerprinted columns as the baseline had them (on the post side): one that
            // is gone is a missing column, not a silently shorter fingerprint.
            for c in naming.rows_columns(r, None) {
                cols.push(naming.col(&r.table, &c));
            }
            vec![(naming.rel(&r.table), cols)]
        }
        CheckKind::Custom(_) | CheckKind::Schema(_) | CheckKind::Sizes(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rename: &str) -> Spec {
        Spec::parse(
            "checks.toml",
            &format!(
                "{rename}\n[[check]]\nname = \"fees\"\ntable = \"fees\"\nmetrics = [\"count(*)\"]\n"
            ),
        )
        .expect("parses")
    }

    fn catalog(cols: &[&str]) -> BTreeMap<String, Vec<String>> {
        BTreeMap::from([(
            "public.fees".to_string(),
            cols.iter().map(|c| c.to_string()).collect(),
        )])
    }

    fn column(c: &str) -> MissingObject {
        MissingObject::Column {
            relation: "public.fees".into(),
            column: c.into(),
        }
    }

    #[test]
    fn a_missing_column_is_worded_against_the_baseline_catalog() {
        let plain = spec("");
        let before = catalog(&["id", "amount"]);
        // One column new since the baseline: it is the likely new name.
        assert_eq!(
            explain_after(
                &column("amount"),
                &plain,
                Some(&before),
                &catalog(&["id", "amount_cents"])
            ),
            "; the migration added `amount_cents`: if `amount` was renamed, add to [rename]: \"fees.amount\" = \"fees.amount_cents\""
        );
        // Several: listed, none guessed.
        assert_eq!(
            explain_after(
                &column("amount"),
                &plain,
                Some(&before),
                &catalog(&["id", "a", "b"])
            ),
            "; columns new since the baseline: `a`, `b`; if `amount` was renamed to one of them, add it to [rename]"
        );
        // Without the baseline's catalog nothing counts as new.
        assert_eq!(
            explain_after(&column("amount"), &plain, None, &catalog(&["id", "a"])),
            "; if the migration renamed `amount`, add to [rename]: \"fees.amount\" = \"fees.new_name\""
        );
        // [rename] points at a column that is not there, while the old one still is.
        let renamed = spec("[rename]\n\"fees.amount\" = \"fees.amount_cents\"\n");
        assert_eq!(
            explain_after(
                &column("amount_cents"),
                &renamed,
                Some(&before),
                &catalog(&["id", "amount"])
            ),
            "; `fees` still has `amount`, which [rename] maps to `amount_cents`: has the migration been applied yet?"
        );
    }

    #[test]
    fn a_missing_table_suggests_a_rename_unless_one_explains_it() {
        let missing = MissingObject::Relation {
            name: "public.fees".into(),
            searched: vec!["public".into()],
        };
        let after = BTreeMap::new();
        assert!(
            explain_after(&missing, &spec(""), None, &after)
                .contains("add it to [rename]: \"old_name\" = \"new_name\"")
        );
        let renamed = spec("[rename]\n\"charges\" = \"fees\"\n");
        assert_eq!(explain_after(&missing, &renamed, None, &after), "");
    }
}
