//! The TOML file as written, mirrored with serde (`deny_unknown_fields` everywhere so a typo
//! is an error, not a silently ignored key). Nothing here is trusted: `spec::validate` turns it
//! into a [`crate::spec::Spec`].

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpec {
    #[serde(default)]
    pub settings: Option<RawSettings>,
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    #[serde(default, rename = "check")]
    pub checks: Vec<Spanned<RawCheck>>,
    /// The catalog-wide schema diff: expected changes and what an undeclared one does.
    #[serde(default)]
    pub schema: Option<Spanned<RawSchemaDiff>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchemaDiff {
    /// `false` turns the schema diff off.
    pub diff: Option<bool>,
    /// "fail" (the default) or "warn".
    pub undeclared: Option<String>,
    /// "fail" (the default) or "warn".
    pub hazards: Option<String>,
    /// "add column public.accounts.status", "drop index *_old", "change function public.*".
    #[serde(default)]
    pub expect: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    pub schemas: Option<Vec<String>>,
    pub statement_timeout: Option<String>,
    pub lock_timeout: Option<String>,
    pub parallel: Option<u32>,
    /// PostgreSQL parallel workers per probe query (max_parallel_workers_per_gather).
    pub query_workers: Option<u32>,
    /// How many worst groups a grouped check lists.
    pub worst_groups: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    pub name: Option<String>,
    /// The check reads what the migration creates: nothing to capture at baseline.
    pub new: Option<bool>,
    pub table: Option<String>,
    #[serde(rename = "where")]
    pub filter: Option<RawSided>,
    pub group_by: Option<Vec<RawGroupKey>>,
    pub metrics: Option<Vec<RawMetric>>,
    pub null_count: Option<String>,
    pub orphans: Option<RawOrphans>,
    pub sql: Option<String>,
    pub sql_after: Option<String>,
    pub key: Option<Vec<String>>,
    pub schema: Option<RawSchemaFact>,
    /// Row proof: a fingerprint per row, compared key by key.
    pub rows: Option<RawRows>,
    /// Relation sizes: `sizes = { tables = ["t"] }`.
    pub sizes: Option<RawSizes>,
    pub tolerance: Option<RawTolerance>,
    /// Where the tolerance applies in a grouped check; may also be given inside `tolerance`.
    pub scope: Option<String>,
    pub expect: Option<RawExpect>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawMetric {
    Plain(String),
    Detailed(RawMetricDetail),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetricDetail {
    pub metric: String,
    /// The post-migration expression: `sum(price_cents) / 100.0`.
    pub after: Option<String>,
    pub tolerance: Option<RawTolerance>,
    pub expect: Option<RawExpect>,
}

/// A fragment as one string, or with a post-migration form.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawSided {
    Plain(String),
    Forms(RawForms),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForms {
    pub before: String,
    pub after: String,
}

/// `"company_id"` or `{ as = "month", expr = "..." }` or `{ as = "s", before = "...", after = "..." }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawGroupKey {
    Column(String),
    Labelled(RawGroupExpr),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroupExpr {
    #[serde(rename = "as")]
    pub label: Option<String>,
    pub expr: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// `rows = { table = "t", key = ["id"], exclude = ["updated_at"], allow_changes = "..." }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRows {
    pub table: String,
    pub key: Option<Vec<String>>,
    pub columns: Option<Vec<String>>,
    pub exclude: Option<Vec<String>>,
    pub allow_changes: Option<String>,
    /// `keep = "values"`: the baseline keeps every row's values too (compressed).
    pub keep: Option<String>,
}

/// `sizes = { tables = ["orders"], judge = ["total"] }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSizes {
    pub tables: Option<Vec<String>>,
    /// Which parts the intent judges: "table", "indexes", "toast", "total".
    pub judge: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOrphans {
    pub child: String,
    pub parent: String,
}

/// A number written as a string ("0.01", exact) or as a TOML integer/float.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawNumber {
    Text(String),
    Int(i64),
    Float(f64),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawTolerance {
    Word(String),
    Table(RawToleranceTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToleranceTable {
    pub abs: Option<RawNumber>,
    pub rel: Option<RawNumber>,
    pub scope: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawExpect {
    Word(String),
    Table(RawExpectTable),
    Growth(RawGrowth),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpectTable {
    pub equals: Option<RawNumber>,
    pub changes_by: Option<RawNumber>,
    pub between: Option<(RawNumber, RawNumber)>,
}

/// A sizes check's limit: `{ grows_at_most = "20%" }` or `{ grows_at_most = "50 MB" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGrowth {
    pub grows_at_most: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchemaFact {
    pub table: Option<String>,
    pub view: Option<String>,
    pub column: Option<String>,
    pub constraint: Option<String>,
    pub index: Option<String>,
    pub rls: Option<String>,
    pub policy: Option<String>,
    pub function: Option<String>,
    pub views_queryable: Option<Vec<String>>,
    /// `["orders.legacy_flag", "orders.old_status"]`: all gone.
    pub columns_absent: Option<Vec<String>>,
    /// `"orders(customer_id) -> customers(id)"`.
    pub foreign_key: Option<String>,
    /// `"orders(tenant_id, number)"`.
    pub unique: Option<String>,
    /// `"orders.amount"`: a CHECK constraint reading this column.
    pub check: Option<String>,
    pub exists: Option<bool>,
    /// A view's kind: "view" or "materialized".
    pub kind: Option<String>,
    pub populated: Option<bool>,
    /// `false`: the name as written, not through [rename] (assert that an old name is gone).
    pub follow_rename: Option<bool>,
    #[serde(rename = "type")]
    pub data_type: Option<String>,
    pub nullable: Option<bool>,
    pub validated: Option<bool>,
    pub valid: Option<bool>,
    pub enabled: Option<bool>,
}
