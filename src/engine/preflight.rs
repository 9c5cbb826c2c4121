//! Before anything runs: resolve every relation and column the checks read, against the live
//! catalog, with the [rename] map applied on the post-migration side. A missing table or
//! column is reported by name, with a hint when a rename would explain it, and the capture
//! does not start.

use std::collections::{BTreeMap, BTreeSet};

use tokio_postgres::Client;

use crate::db;
use crate::model::DbFailure;
use crate::spec::{CheckKind, FactObject, MetricArg, Spec};
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

/// Why the capture did not start.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("{}", .0.join("\n"))]
    Missing(Vec<String>),
    #[error("reading the catalog failed: {0}")]
    Db(DbFailure),
}

/// Relations the checks read (after renames for the post side), plus views that must only be
/// looked up (views_queryable reports them itself).
fn referenced(spec: &Spec, naming: &Naming) -> (Vec<(String, Name)>, Vec<Name>) {
    let mut must = Vec::new();
    let mut soft = Vec::new();
    for c in &spec.checks {
        match &c.kind {
            CheckKind::Metrics(m) => must.push((c.name.clone(), naming.rel(&m.table))),
            CheckKind::NullCount(n) => must.push((c.name.clone(), naming.rel(&n.table))),
            CheckKind::Orphans(o) => {
                must.push((c.name.clone(), naming.rel(&o.child)));
                must.push((c.name.clone(), naming.rel(&o.parent)));
            }
            CheckKind::Schema(s) => {
                if let FactObject::ViewsQueryable(vs) = &s.object {
                    soft.extend(vs.iter().map(|v| naming.rel(v)));
                }
            }
            CheckKind::Custom(_) => {}
        }
    }
    (must, soft)
}

/// Read the catalog for the checks of `spec` and report what is missing.
/// `previous`: the baseline's catalog, used to explain a column that disappeared.
pub async fn run(
    client: &Client,
    spec: &Spec,
    naming: &Naming,
    previous: Option<&BTreeMap<String, Vec<String>>>,
) -> Result<Catalog, PreflightError> {
    let schemas = match &spec.settings.schemas {
        Some(s) => s.clone(),
        None => {
            let row = client
                .query_one(sql::SEARCH_PATH.sql, &[])
                .await
                .map_err(|e| {
                    PreflightError::Db(db::failure(&e, Some("reading search_path".into())))
                })?;
            row.try_get::<_, Vec<String>>(0)
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
            schema: r.try_get(0).map_err(get)?,
            name: r.try_get(1).map_err(get)?,
            kind: r.try_get(2).map_err(get)?,
            est_rows: r.try_get(3).map_err(get)?,
            columns: r.try_get(4).map_err(get)?,
        });
    }
    let catalog = Catalog { schemas, relations };

    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for (check, n) in &must {
        if catalog.resolve(n).is_none() && seen.insert((check.clone(), n.clone())) {
            let mut msg = format!(
                "check `{check}`: table or view `{n}` does not exist (searched schemas: {})",
                catalog.search(n).join(", ")
            );
            if naming.after && spec.renames.tables.iter().all(|(_, new)| new != &n.name) {
                msg.push_str("\n    hint: if the migration renamed it, add it to [rename]: \"old_name\" = \"new_name\"");
            }
            problems.push(msg);
        }
    }
    for c in &spec.checks {
        for (table, cols) in columns_used(&c.kind, naming) {
            let Some(rel) = catalog.resolve(&table) else {
                continue;
            };
            for col in cols {
                if rel.columns.iter().any(|x| x == &col) {
                    continue;
                }
                let mut msg = format!(
                    "check `{}`: column `{col}` does not exist in `{}`",
                    c.name,
                    rel.qualified()
                );
                msg.push_str(&rename_hint(rel, &col, naming, spec, previous));
                problems.push(msg);
            }
        }
    }
    if problems.is_empty() {
        Ok(catalog)
    } else {
        Err(PreflightError::Missing(problems))
    }
}

/// (relation as queried, columns as queried) for the plain column references of a check.
fn columns_used(kind: &CheckKind, naming: &Naming) -> Vec<(Name, Vec<String>)> {
    match kind {
        CheckKind::Metrics(m) => {
            let mut cols: Vec<String> =
                m.group_by.iter().map(|g| naming.col(&m.table, g)).collect();
            for metric in &m.metrics {
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
        CheckKind::Custom(_) | CheckKind::Schema(_) => Vec::new(),
    }
}

fn rename_hint(
    rel: &Relation,
    col: &str,
    naming: &Naming,
    spec: &Spec,
    previous: Option<&BTreeMap<String, Vec<String>>>,
) -> String {
    if !naming.after {
        // The baseline is taken under the old names: a renamed column here means the
        // migration already ran.
        if let Some((_, _, new)) = spec
            .renames
            .columns
            .iter()
            .find(|(_, old, new)| old == col && rel.columns.contains(new))
        {
            return format!(
                "\n    hint: `{}` has `{new}`, which [rename] maps `{col}` to: was the migration already applied? Take the baseline before migrating",
                rel.name
            );
        }
        return "\n    hint: check the spelling; names are case-folded unless written in double quotes".into();
    }
    if let Some((_, old, _)) = spec.renames.columns.iter().find(|(_, _, new)| new == col) {
        if rel.columns.contains(old) {
            return format!(
                "\n    hint: `{}` still has `{old}`, which [rename] maps to `{col}`: has the migration been applied yet?",
                rel.name
            );
        }
        return format!(
            "\n    hint: [rename] maps `{old}` to `{col}`, but `{col}` is not there either: check the [rename] entry"
        );
    }
    let before = previous.and_then(|p| p.get(&rel.qualified()));
    let new_cols: Vec<&String> = match before {
        Some(b) => rel.columns.iter().filter(|c| !b.contains(c)).collect(),
        None => Vec::new(),
    };
    match new_cols.as_slice() {
        [one] => format!(
            "\n    hint: the migration added `{one}`; if `{col}` was renamed, add to [rename]: \"{}.{col}\" = \"{}.{one}\"",
            rel.name, rel.name
        ),
        [] => format!(
            "\n    hint: if the migration renamed `{col}`, add to [rename]: \"{}.{col}\" = \"{}.new_name\"",
            rel.name, rel.name
        ),
        many => format!(
            "\n    hint: columns new since the baseline: {}; if `{col}` was renamed to one of them, add it to [rename]",
            many.iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
