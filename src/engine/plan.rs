//! From validated checks to probes: the SQL statements a capture runs.
//!
//! Checks that read the same relation are fused so that N checks cost about one scan:
//!
//! ```text
//!   ungrouped metrics + NULL counts on T      ->  SELECT agg1 FILTER (WHERE f1), agg2, ...
//!                                                FROM T                      (1 scan of T)
//!   grouped metrics on (T, where, group_by)   ->  SELECT g.., aggs.. FROM T WHERE .. GROUP BY ..
//!   orphans, custom SQL, schema facts          ->  one probe each
//! ```
//!
//! On the post-migration side every name goes through the [rename] map (`Naming`), while the
//! labels of the captured values keep the pre-migration names, so both sides line up.

use std::collections::BTreeMap;

use crate::model::Absence;
use crate::spec::{
    CheckKind, FactObject, Func, GroupKey, KeyExpr, Metric, MetricArg, Renames, Sided, Spec,
    parse_metric,
};
use crate::sql::ident::{Name, quote, quote_qualified, rename_identifiers};
use crate::sql::{self, Query};

use super::preflight::Catalog;

/// A user's SQL fragment as it is embedded in generated SQL: followed by a newline, so that a
/// trailing `-- comment` ends there instead of swallowing the parenthesis, FILTER clause or
/// fused metrics that follow it (`where = "status = 'active' -- note"`).
pub fn embed(fragment: &str) -> String {
    let mut s = String::with_capacity(fragment.len() + 1);
    s.push_str(fragment);
    s.push('\n');
    s
}

/// Which side of the migration a capture is for.
#[derive(Debug, Clone)]
pub struct Naming {
    pub after: bool,
    renames: Renames,
    /// The baseline's catalog (`schema.table` -> columns), on the post side: a rows check
    /// fingerprints the columns the baseline had, not the ones the migration added.
    baseline: Option<BTreeMap<String, Vec<String>>>,
}

impl Naming {
    pub fn baseline() -> Naming {
        Naming {
            after: false,
            renames: Renames::default(),
            baseline: None,
        }
    }

    pub fn after(renames: &Renames) -> Naming {
        Naming {
            after: true,
            renames: renames.clone(),
            baseline: None,
        }
    }

    /// The post side, knowing the baseline's catalog (see [`Naming::baseline_columns`]).
    pub fn with_baseline(mut self, catalog: &BTreeMap<String, Vec<String>>) -> Naming {
        self.baseline = Some(catalog.clone());
        self
    }

    /// The columns a rows check fingerprints, under their pre-migration names, key and
    /// `exclude` left out: its `columns`, else (post side) the ones the baseline had, else
    /// `current` (the table's columns as the catalog has them, mapped back through [rename]).
    pub fn rows_columns(
        &self,
        r: &crate::spec::RowsCheck,
        current: Option<&[String]>,
    ) -> Vec<String> {
        let listed: Vec<String> = match &r.columns {
            Some(c) => c.clone(),
            None => self
                .baseline_columns(&r.table)
                .filter(|_| self.after)
                .or_else(|| {
                    let back = self.renames.columns_of(&r.table.name);
                    current.map(|cols| {
                        cols.iter()
                            .map(|c| {
                                back.iter()
                                    .find(|(_, new)| self.after && new == c)
                                    .map_or_else(|| c.clone(), |(old, _)| old.clone())
                            })
                            .collect()
                    })
                })
                .unwrap_or_default(),
        };
        listed
            .into_iter()
            .filter(|c| !r.key.contains(c) && !r.exclude.contains(c))
            .collect()
    }

    /// The columns `table` (named as before the migration) had at baseline, when known.
    pub fn baseline_columns(&self, table: &Name) -> Option<Vec<String>> {
        let cat = self.baseline.as_ref()?;
        cat.iter()
            .find(|(q, _)| match q.split_once('.') {
                Some((s, t)) => t == table.name && table.schema.as_deref().is_none_or(|x| x == s),
                None => false,
            })
            .map(|(_, c)| c.clone())
    }

    pub fn renames(&self) -> &Renames {
        &self.renames
    }

    /// A relation as it is named on this side.
    pub fn rel(&self, n: &Name) -> Name {
        match self.renames.table(&n.name) {
            Some(new) if self.after => Name {
                schema: n.schema.clone(),
                name: new.to_string(),
            },
            _ => n.clone(),
        }
    }

    /// A column of `table` (named as before the migration) as it is named on this side.
    pub fn col(&self, table: &Name, col: &str) -> String {
        match self.renames.column(&table.name, col) {
            Some(new) if self.after => new.to_string(),
            _ => col.to_string(),
        }
    }

    /// A SQL fragment over `table`'s columns, with renamed columns substituted, ready to be
    /// embedded (see [`embed`]).
    pub fn fragment(&self, table: &Name, sql: &str) -> String {
        if !self.after {
            return embed(sql);
        }
        embed(&rename_identifiers(
            sql,
            &self.renames.columns_of(&table.name),
        ))
    }

    /// A fragment with a post-migration form: that form as written on the post side, else
    /// the pre-migration form through [rename]. Ready to be embedded (see [`embed`]).
    pub fn sided(&self, table: &Name, s: &Sided) -> String {
        match (&s.after, self.after) {
            (Some(a), true) => embed(a),
            _ => self.fragment(table, &s.before),
        }
    }

    /// The SQL of a group key on this side. A plain `tableoid` groups by partition and is
    /// shown by the partition's name.
    pub fn key(&self, table: &Name, g: &GroupKey) -> String {
        match (&g.after, self.after) {
            (Some(a), true) => format!("({})", embed(a)),
            _ => match &g.before {
                KeyExpr::Column(c) if c == "tableoid" => "tableoid::regclass::text".into(),
                KeyExpr::Column(c) => quote(&self.col(table, c)),
                KeyExpr::Expr(e) => format!("({})", self.fragment(table, e)),
            },
        }
    }

    /// The same naming with renames ignored (a fact asserted about the name as written).
    pub fn literal(&self) -> Naming {
        Naming {
            after: self.after,
            renames: Renames::default(),
            baseline: self.baseline.clone(),
        }
    }

    /// A whole query: every renamed column and table substituted.
    pub fn query(&self, sql: &str) -> String {
        if !self.after {
            return sql.to_string();
        }
        let mut pairs: Vec<(String, String)> = self.renames.tables.clone();
        for (_, o, n) in &self.renames.columns {
            if !pairs.iter().any(|(x, _)| x == o) {
                pairs.push((o.clone(), n.clone()));
            }
        }
        rename_identifiers(sql, &pairs)
    }
}

/// What a probe's result feeds.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Result columns `key` then `values` become check `check`'s table, with these labels.
    Columns {
        check: usize,
        /// Which part of the check's values this is: a check with more metrics than one
        /// fused scan may select is split over several scans (parts 0, 1, ...), whose one-row
        /// tables are put side by side again in part order.
        part: usize,
        key: Vec<(usize, String)>,
        values: Vec<(usize, String)>,
    },
    /// Custom SQL: key columns by name, every other column is a value. `relabel` maps result
    /// column names back to their pre-migration names (a renamed column selected as is comes
    /// back under its new name).
    Custom {
        check: usize,
        key: Vec<String>,
        relabel: Vec<(String, String)>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProbeKind {
    /// A generated or user-written query, streamed.
    Query {
        sql: String,
        outputs: Vec<Output>,
        /// An orphan count: the child and parent relations (quoted), whose indexes may serve
        /// an ordered merge instead of hashing the parent (see `capture::orphan_plan`).
        orphans: Option<(String, String)>,
    },
    /// A rows check: `(key..., fingerprint[, allowed])` of every row, streamed in key order
    /// into a section of the snapshot file (see `rowstream`).
    Rows {
        check: usize,
        /// `SELECT keys, fingerprint[, allowed] FROM t`, without its ORDER BY: the capture adds
        /// it once the prepared statement tells the key columns' types.
        sql: String,
        /// The key columns as the spec names them (the labels of the section's key columns).
        keys: Vec<String>,
        /// Where a big table may be cut into key ranges (see `rowstream`): its schema, name,
        /// first key column (names on this side) and estimated rows; `None` when it must be
        /// read in one piece (`keep = "values"`: one compressed stream).
        split: Option<RowsSplit>,
        /// The key range this probe reads (set by the capture), `None`: every row.
        range: Option<super::rowstream::Range>,
    },
    /// A catalog fact from `queries/`, bound parameters, result row becomes the check's table.
    Fact {
        check: usize,
        query: Query,
        params: Vec<FactParam>,
        attributes: &'static [(&'static str, crate::model::Kind)],
    },
    /// Relation sizes (`queries/relation_sizes.sql`): one row per table, keyed by the table
    /// as the spec names it (`labels`), read from `schemas[i].names[i]` on this side.
    Sizes {
        check: usize,
        labels: Vec<String>,
        schemas: Vec<String>,
        names: Vec<String>,
    },
    /// `SELECT 1 FROM view LIMIT 1` for each view.
    ViewsQueryable {
        check: usize,
        views: Vec<(String, Option<String>)>,
    },
}

/// What the capture needs to cut a rows check into key ranges.
#[derive(Debug, Clone, PartialEq)]
pub struct RowsSplit {
    pub schema: String,
    pub table: String,
    pub column: String,
    pub est_rows: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FactParam {
    Schemas(Vec<String>),
    Text(String),
    /// A text[] of names.
    List(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub kind: ProbeKind,
    /// Estimated rows read: bigger probes start first.
    pub cost: f64,
    /// Checks fed by this probe.
    pub checks: Vec<usize>,
}

impl Probe {
    /// The SQL for the audit trail.
    pub fn sql_text(&self) -> Vec<String> {
        match &self.kind {
            ProbeKind::Query { sql, .. } => vec![sql.clone()],
            // Once per check: the ranges of one all read the same SQL.
            ProbeKind::Rows { range: Some(r), .. } if r.part > 0 => Vec::new(),
            ProbeKind::Rows {
                sql, keys, range, ..
            } => vec![format!(
                "{sql}\nORDER BY {} -- text keys COLLATE \"C\"{}",
                (1..=keys.len())
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                match range {
                    Some(r) => format!(
                        "\n-- read in {} key ranges of the first key column, on several \
                         connections of the one snapshot",
                        r.parts
                    ),
                    None => String::new(),
                }
            )],
            ProbeKind::Fact { query, params, .. } => {
                let binds: Vec<String> = params
                    .iter()
                    .enumerate()
                    .map(|(i, p)| match p {
                        FactParam::Schemas(s) => format!("${} = {{{}}}", i + 1, s.join(",")),
                        FactParam::Text(t) => format!("${} = '{t}'", i + 1),
                        FactParam::List(l) => format!("${} = {{{}}}", i + 1, l.join(",")),
                    })
                    .collect();
                vec![format!(
                    "-- {} with {}\n{}",
                    query.name,
                    binds.join(", "),
                    query.sql.trim()
                )]
            }
            ProbeKind::Sizes {
                labels,
                schemas,
                names,
                ..
            } => vec![format!(
                "-- {} with $1 = {{{}}}, $2 = {{{}}}, $3 = {{{}}}\n{}",
                sql::RELATION_SIZES.name,
                labels.join(","),
                schemas.join(","),
                names.join(","),
                sql::RELATION_SIZES.sql.trim()
            )],
            ProbeKind::ViewsQueryable { views, .. } => views
                .iter()
                .map(|(label, q)| match q {
                    Some(q) => format!("SELECT 1 FROM {q} LIMIT 1"),
                    None => format!("-- view `{label}` not found"),
                })
                .collect(),
        }
    }
}

use crate::model::Kind;

const EXISTS: &[(&str, Kind)] = &[("exists", Kind::Bool)];
const COLUMN: &[(&str, Kind)] = &[
    ("exists", Kind::Bool),
    ("type", Kind::Text),
    ("nullable", Kind::Bool),
    ("partitions", Kind::Text),
];
const VIEW: &[(&str, Kind)] = &[
    ("exists", Kind::Bool),
    ("kind", Kind::Text),
    ("populated", Kind::Bool),
];
/// Found by what it is: the names are reported, never judged.
const KEYED: &[(&str, Kind)] = &[
    ("exists", Kind::Bool),
    ("validated", Kind::Bool),
    ("name", Kind::Text),
];
const ABSENT: &[(&str, Kind)] = &[("present", Kind::Text)];
const CONSTRAINT: &[(&str, Kind)] = &[("exists", Kind::Bool), ("validated", Kind::Bool)];
const INDEX: &[(&str, Kind)] = &[("exists", Kind::Bool), ("valid", Kind::Bool)];
const RLS: &[(&str, Kind)] = &[("exists", Kind::Bool), ("enabled", Kind::Bool)];

fn qualified(catalog: &Catalog, n: &Name) -> String {
    match catalog.resolve(n) {
        Some(r) => quote_qualified(&r.schema, &r.name),
        // Preflight guarantees resolution for the relations planned here; keep a sane fallback.
        None => match &n.schema {
            Some(s) => quote_qualified(s, &n.name),
            None => quote(&n.name),
        },
    }
}

fn aggregate(func: Func, arg: &str) -> String {
    match func {
        Func::CountStar => "count(*)".into(),
        Func::Count => format!("count({arg})"),
        Func::CountDistinct => format!("count(DISTINCT {arg})"),
        Func::Sum => format!("sum({arg})"),
        Func::Min => format!("min({arg})"),
        Func::Max => format!("max({arg})"),
        Func::Avg => format!("avg({arg})"),
    }
}

/// The SQL of one metric on this side, and whether it is a single aggregate call (which a
/// FILTER clause can follow).
fn metric_sql(naming: &Naming, table: &Name, metric: &Metric) -> (String, bool) {
    if let (Some(after), true) = (&metric.after, naming.after) {
        return match parse_metric(after) {
            Ok((_, func, arg)) => {
                let arg = match arg {
                    MetricArg::Star => "*".to_string(),
                    MetricArg::Column(c) => quote(&c),
                    MetricArg::Expr(e) => format!("({})", embed(&e)),
                };
                (aggregate(func, &arg), true)
            }
            Err(_) => (format!("({})", embed(after)), false),
        };
    }
    let arg = match &metric.arg {
        MetricArg::Star => "*".to_string(),
        MetricArg::Column(c) => quote(&naming.col(table, c)),
        MetricArg::Expr(e) => format!("({})", naming.fragment(table, e)),
    };
    (aggregate(metric.func, &arg), true)
}

/// The most values one fused scan selects. PostgreSQL refuses a target list of more than
/// 1664 entries (SQLSTATE 54011, "target lists can have at most 1664 entries"), which would
/// fail every check fused into it; this leaves a wide margin and keeps each statement a size
/// a DBA can still read in the audit trail.
pub const MAX_SELECT: usize = 1000;

/// Plan every check of `spec` for one side; checks in `absent` have nothing to read here.
pub fn plan(
    spec: &Spec,
    naming: &Naming,
    catalog: &Catalog,
    absent: &BTreeMap<usize, Absence>,
) -> Vec<Probe> {
    // Fused scans: (relation, filter, group_by) -> columns and outputs.
    struct Scan {
        rel: String,
        cost: f64,
        grouped: Option<(Option<String>, Vec<String>)>,
        select: Vec<String>,
        outputs: Vec<Output>,
        checks: Vec<usize>,
    }
    let mut scans: Vec<Scan> = Vec::new();
    let mut probes = Vec::new();
    let cost_of = |n: &Name| catalog.resolve(n).map_or(0.0, |r| r.est_rows.max(0.0));

    for (ci, check) in spec.checks.iter().enumerate() {
        if absent.contains_key(&ci) {
            continue;
        }
        match &check.kind {
            CheckKind::Metrics(m) => {
                let rel_name = naming.rel(&m.table);
                let rel = qualified(catalog, &rel_name);
                let filter = m.filter.as_ref().map(|f| naming.sided(&m.table, f));
                let (exprs, plain): (Vec<String>, Vec<bool>) = m
                    .metrics
                    .iter()
                    .map(|metric| metric_sql(naming, &m.table, metric))
                    .unzip();
                // An expression over aggregates cannot take a FILTER clause: such a check
                // gets a scan of its own with the filter in WHERE.
                let own_scan = filter.is_some() && plain.iter().any(|p| !p);
                if m.group_by.is_empty() && !own_scan {
                    let items: Vec<(&Metric, String)> = m.metrics.iter().zip(exprs).collect();
                    for (part, chunk) in items.chunks(MAX_SELECT).enumerate() {
                        let scan = find_or_add(&mut scans, &rel, None, cost_of(&rel_name), |s| {
                            s.grouped.is_none() && s.select.len() + chunk.len() <= MAX_SELECT
                        });
                        let mut values = Vec::new();
                        for (metric, e) in chunk {
                            let e = match &filter {
                                Some(f) => format!("{e} FILTER (WHERE {f})"),
                                None => e.clone(),
                            };
                            values.push((scan.select.len(), metric.label.clone()));
                            scan.select.push(e);
                        }
                        scan.outputs.push(Output::Columns {
                            check: ci,
                            part,
                            key: Vec::new(),
                            values,
                        });
                        scan.checks.push(ci);
                    }
                } else {
                    let group: Vec<String> =
                        m.group_by.iter().map(|g| naming.key(&m.table, g)).collect();
                    let key_sig = (filter.clone(), group.clone());
                    // More metrics than one scan selects: split over several scans, each with
                    // the group key first, joined back on the key (`capture::join_parts`). All
                    // scans read the one exported snapshot, so they see the same groups.
                    let per_scan = MAX_SELECT.saturating_sub(group.len()).max(1);
                    let key: Vec<(usize, String)> = m
                        .group_by
                        .iter()
                        .enumerate()
                        .map(|(i, g)| (i, g.label.clone()))
                        .collect();
                    let items: Vec<(&Metric, String)> = m.metrics.iter().zip(exprs).collect();
                    for (part, chunk) in items.chunks(per_scan).enumerate() {
                        let room = chunk.len();
                        let scan = find_or_add(
                            &mut scans,
                            &rel,
                            Some(key_sig.clone()),
                            cost_of(&rel_name),
                            |s| {
                                s.grouped.as_ref() == Some(&key_sig)
                                    && s.select.len() + room <= MAX_SELECT
                            },
                        );
                        if scan.select.is_empty() {
                            scan.select.extend(group.iter().cloned());
                        }
                        let mut values = Vec::new();
                        for (metric, e) in chunk {
                            values.push((scan.select.len(), metric.label.clone()));
                            scan.select.push(e.clone());
                        }
                        scan.outputs.push(Output::Columns {
                            check: ci,
                            part,
                            key: key.clone(),
                            values,
                        });
                        scan.checks.push(ci);
                    }
                }
            }
            CheckKind::NullCount(n) => {
                let rel_name = naming.rel(&n.table);
                let rel = qualified(catalog, &rel_name);
                let col = quote(&naming.col(&n.table, &n.column));
                let cond = match &n.filter {
                    Some(f) => format!("{col} IS NULL AND ({})", naming.sided(&n.table, f)),
                    None => format!("{col} IS NULL"),
                };
                let scan = find_or_add(&mut scans, &rel, None, cost_of(&rel_name), |s| {
                    s.grouped.is_none() && s.select.len() < MAX_SELECT
                });
                scan.outputs.push(Output::Columns {
                    check: ci,
                    part: 0,
                    key: Vec::new(),
                    values: vec![(scan.select.len(), "null_count".into())],
                });
                scan.select.push(format!("count(*) FILTER (WHERE {cond})"));
                scan.checks.push(ci);
            }
            CheckKind::Orphans(o) => {
                let child = qualified(catalog, &naming.rel(&o.child));
                let parent = qualified(catalog, &naming.rel(&o.parent));
                let cc: Vec<String> = o
                    .child_columns
                    .iter()
                    .map(|c| quote(&naming.col(&o.child, c)))
                    .collect();
                let pc: Vec<String> = o
                    .parent_columns
                    .iter()
                    .map(|c| quote(&naming.col(&o.parent, c)))
                    .collect();
                let not_null: Vec<String> =
                    cc.iter().map(|c| format!("c.{c} IS NOT NULL")).collect();
                let join: Vec<String> = cc
                    .iter()
                    .zip(&pc)
                    .map(|(c, p)| format!("p.{p} = c.{c}"))
                    .collect();
                let sql = format!(
                    "SELECT count(*) AS orphans\nFROM {child} AS c\nWHERE {}\n  AND NOT EXISTS (SELECT 1 FROM {parent} AS p WHERE {})",
                    not_null.join(" AND "),
                    join.join(" AND ")
                );
                probes.push(Probe {
                    kind: ProbeKind::Query {
                        sql,
                        outputs: vec![Output::Columns {
                            check: ci,
                            part: 0,
                            key: Vec::new(),
                            values: vec![(0, "orphans".into())],
                        }],
                        orphans: Some((child, parent)),
                    },
                    cost: cost_of(&naming.rel(&o.child)) + cost_of(&naming.rel(&o.parent)),
                    checks: vec![ci],
                });
            }
            CheckKind::Custom(c) => {
                let sql = match (&c.sql_after, &c.sql, naming.after) {
                    (Some(after), _, true) => after.clone(),
                    (_, Some(sql), _) => naming.query(sql),
                    // After-only on the pre-migration side: absent, never planned.
                    (Some(after), None, false) => after.clone(),
                    (None, None, _) => continue,
                };
                probes.push(Probe {
                    kind: ProbeKind::Query {
                        sql,
                        outputs: vec![Output::Custom {
                            check: ci,
                            key: c.key.clone(),
                            relabel: if naming.after && c.sql_after.is_none() {
                                naming
                                    .renames()
                                    .columns
                                    .iter()
                                    .map(|(_, old, new)| (new.clone(), old.clone()))
                                    .collect()
                            } else {
                                Vec::new()
                            },
                        }],
                        orphans: None,
                    },
                    cost: f64::MAX / 2.0,
                    checks: vec![ci],
                });
            }
            CheckKind::Rows(r) => {
                let rel_name = naming.rel(&r.table);
                probes.push(Probe {
                    kind: rows_probe(ci, r, naming, catalog),
                    cost: cost_of(&rel_name) * 2.0,
                    checks: vec![ci],
                });
            }
            CheckKind::Sizes(s) => {
                let (mut labels, mut schemas, mut names) = (Vec::new(), Vec::new(), Vec::new());
                for t in &s.tables {
                    let here = naming.rel(t);
                    // Preflight resolved every table (or recorded the check as absent).
                    let (schema, name) = match catalog.resolve(&here) {
                        Some(r) => (r.schema.clone(), r.name.clone()),
                        None => (here.schema.clone().unwrap_or_default(), here.name.clone()),
                    };
                    labels.push(t.to_string());
                    schemas.push(schema);
                    names.push(name);
                }
                probes.push(Probe {
                    kind: ProbeKind::Sizes {
                        check: ci,
                        labels,
                        schemas,
                        names,
                    },
                    cost: 0.0,
                    checks: vec![ci],
                });
            }
            CheckKind::Schema(s) => {
                let naming = if s.follow_rename {
                    naming.clone()
                } else {
                    naming.literal()
                };
                probes.push(fact_probe(ci, &s.object, &naming, catalog));
            }
        }
    }
    for s in scans {
        let mut sql = format!("SELECT {}\nFROM {}", s.select.join(",\n       "), s.rel);
        if let Some((filter, group)) = &s.grouped {
            if let Some(f) = filter {
                sql.push_str(&format!("\nWHERE {f}"));
            }
            if !group.is_empty() {
                sql.push_str(&format!("\nGROUP BY {}", group.join(", ")));
            }
        }
        probes.push(Probe {
            kind: ProbeKind::Query {
                sql,
                outputs: s.outputs,
                orphans: None,
            },
            cost: s.cost,
            checks: s.checks,
        });
    }
    probes.sort_by(|a, b| b.cost.total_cmp(&a.cost));
    return probes;

    fn find_or_add<'a>(
        scans: &'a mut Vec<Scan>,
        rel: &str,
        grouped: Option<(Option<String>, Vec<String>)>,
        cost: f64,
        same: impl Fn(&Scan) -> bool,
    ) -> &'a mut Scan {
        let pos = scans.iter().position(|s| s.rel == rel && same(s));
        let i = match pos {
            Some(i) => i,
            None => {
                scans.push(Scan {
                    rel: rel.to_string(),
                    cost,
                    grouped,
                    select: Vec::new(),
                    outputs: Vec::new(),
                    checks: Vec::new(),
                });
                scans.len() - 1
            }
        };
        &mut scans[i]
    }
}

/// The row-proof probe: every row's key and a fingerprint of its values, in key order.
///
/// ```text
///   SELECT k1, k2, hash_record_extended(ROW(c1, c2::text, ...), 0) AS fingerprint
///          [, coalesce((allow_changes), false) AS allowed]          post side only
///          [, row_to_json(migval_row.*)::text AS row_values]          keep = "values", baseline
///   FROM t [AS migval_row]     ORDER BY k1, k2 added at capture (`rowstream`)
/// ```
///
/// `hash_record_extended` hashes each value by value (numeric 1.50 = 1.5, timestamptz as the
/// instant, NULL distinct from every value); a type without an extended hash function (json,
/// geometric types, ...) is fingerprinted by its text. On the post side the columns are the
/// ones the baseline had, through [rename], so a rename alone changes no fingerprint.
fn rows_probe(
    ci: usize,
    r: &crate::spec::RowsCheck,
    naming: &Naming,
    catalog: &Catalog,
) -> ProbeKind {
    let rel_name = naming.rel(&r.table);
    let resolved = catalog.resolve(&rel_name);
    let cols = naming.rows_columns(r, resolved.map(|rel| rel.columns.as_slice()));
    let exprs: Vec<String> = cols
        .iter()
        .map(|c| {
            let name = naming.col(&r.table, c);
            let hashable = resolved
                .and_then(|rel| {
                    let i = rel.columns.iter().position(|x| *x == name)?;
                    rel.hashable.get(i).copied()
                })
                .unwrap_or(false);
            if hashable {
                quote(&name)
            } else {
                format!("{}::text", quote(&name))
            }
        })
        .collect();
    let keys: Vec<String> = r
        .key
        .iter()
        .map(|k| quote(&naming.col(&r.table, k)))
        .collect();
    let fingerprint = if exprs.is_empty() {
        "0::bigint".to_string()
    } else {
        format!("hash_record_extended(ROW({}), 0)", exprs.join(", "))
    };
    let mut select = keys;
    select.push(format!("{fingerprint} AS fingerprint"));
    if let (Some(allow), true) = (&r.allow_changes, naming.after) {
        select.push(format!("coalesce(({allow}\n), false) AS allowed"));
    }
    // keep = "values": the baseline keeps the whole row, as the report shows it after. The
    // alias only there: an allow_changes predicate (post side) may name the table itself.
    let mut from = qualified(catalog, &rel_name);
    if r.keep_values && !naming.after {
        select.push(format!(
            "row_to_json(migval_row.*)::text AS {}",
            super::rowstream::VALUES
        ));
        from.push_str(" AS migval_row");
    }
    let split = match (resolved, r.key.first()) {
        (Some(rel), Some(k)) if !r.keep_values || naming.after => Some(RowsSplit {
            schema: rel.schema.clone(),
            table: rel.name.clone(),
            column: naming.col(&r.table, k),
            est_rows: rel.est_rows,
        }),
        _ => None,
    };
    ProbeKind::Rows {
        check: ci,
        sql: format!("SELECT {}\nFROM {from}", select.join(",\n       ")),
        keys: r.key.clone(),
        split,
        range: None,
    }
}

fn fact_probe(ci: usize, object: &FactObject, naming: &Naming, catalog: &Catalog) -> Probe {
    let fact = |query: Query, params: Vec<FactParam>, attributes| Probe {
        kind: ProbeKind::Fact {
            check: ci,
            query,
            params,
            attributes,
        },
        cost: 0.0,
        checks: vec![ci],
    };
    let rel_params = |n: &Name| {
        let n = naming.rel(n);
        vec![
            FactParam::Schemas(catalog.search(&n)),
            FactParam::Text(n.name),
        ]
    };
    match object {
        FactObject::Table(n) => fact(sql::FACT_TABLE, rel_params(n), EXISTS),
        FactObject::View(n) => fact(sql::FACT_VIEW, rel_params(n), VIEW),
        FactObject::Function(n) => fact(sql::FACT_FUNCTION, rel_params(n), EXISTS),
        FactObject::Index(n) => fact(sql::FACT_INDEX, rel_params(n), INDEX),
        FactObject::Rls(n) => fact(sql::FACT_RLS, rel_params(n), RLS),
        FactObject::Column(t, c) => {
            let mut p = rel_params(t);
            p.push(FactParam::Text(naming.col(t, c)));
            fact(sql::FACT_COLUMN, p, COLUMN)
        }
        FactObject::Constraint(t, c) => {
            let mut p = rel_params(t);
            p.push(FactParam::Text(c.clone()));
            fact(sql::FACT_CONSTRAINT, p, CONSTRAINT)
        }
        FactObject::Policy(t, p) => {
            let mut ps = rel_params(t);
            ps.push(FactParam::Text(p.clone()));
            fact(sql::FACT_POLICY, ps, EXISTS)
        }
        FactObject::ColumnsAbsent(cols) => {
            let mut schemas = catalog.schemas.clone();
            let (mut sch, mut tbl, mut col) = (Vec::new(), Vec::new(), Vec::new());
            for (t, c) in cols {
                let t2 = naming.rel(t);
                sch.push(t2.schema.clone().unwrap_or_default());
                if let Some(s) = &t2.schema
                    && !schemas.contains(s)
                {
                    schemas.push(s.clone());
                }
                col.push(naming.col(t, c));
                tbl.push(t2.name);
            }
            fact(
                sql::FACT_COLUMNS_ABSENT,
                vec![
                    FactParam::Schemas(schemas),
                    FactParam::List(sch),
                    FactParam::List(tbl),
                    FactParam::List(col),
                ],
                ABSENT,
            )
        }
        FactObject::ForeignKey {
            table,
            columns,
            parent,
            parent_columns,
        } => {
            let mut p = rel_params(table);
            p.push(FactParam::List(
                columns.iter().map(|c| naming.col(table, c)).collect(),
            ));
            p.extend(rel_params(parent));
            p.push(FactParam::List(
                parent_columns
                    .iter()
                    .map(|c| naming.col(parent, c))
                    .collect(),
            ));
            fact(sql::FACT_FOREIGN_KEY, p, KEYED)
        }
        FactObject::Unique(t, cols) => {
            let mut p = rel_params(t);
            p.push(FactParam::List(
                cols.iter().map(|c| naming.col(t, c)).collect(),
            ));
            fact(sql::FACT_UNIQUE, p, KEYED)
        }
        FactObject::CheckOn(t, c) => {
            let mut p = rel_params(t);
            p.push(FactParam::Text(naming.col(t, c)));
            fact(sql::FACT_CHECK, p, KEYED)
        }
        FactObject::ViewsQueryable(views) => Probe {
            kind: ProbeKind::ViewsQueryable {
                check: ci,
                views: views
                    .iter()
                    .map(|v| {
                        let target = naming.rel(v);
                        let q = catalog
                            .resolve(&target)
                            .map(|r| quote_qualified(&r.schema, &r.name));
                        (v.to_string(), q)
                    })
                    .collect(),
            },
            cost: 0.0,
            checks: vec![ci],
        },
    }
}
