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
    pub table: Option<String>,
    #[serde(rename = "where")]
    pub filter: Option<String>,
    pub group_by: Option<Vec<String>>,
    pub metrics: Option<Vec<RawMetric>>,
    pub null_count: Option<String>,
    pub orphans: Option<RawOrphans>,
    pub sql: Option<String>,
    pub sql_after: Option<String>,
    pub key: Option<Vec<String>>,
    pub schema: Option<RawSchemaFact>,
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
    pub tolerance: Option<RawTolerance>,
    pub expect: Option<RawExpect>,
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpectTable {
    pub equals: Option<RawNumber>,
    pub changes_by: Option<RawNumber>,
    pub between: Option<(RawNumber, RawNumber)>,
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
    pub exists: Option<bool>,
    #[serde(rename = "type")]
    pub data_type: Option<String>,
    pub nullable: Option<bool>,
    pub validated: Option<bool>,
    pub valid: Option<bool>,
    pub enabled: Option<bool>,
}
