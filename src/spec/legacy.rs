//! The check definitions exactly as migval 0.1 wrote them, frozen, for one purpose: baselines
//! taken by that version fingerprinted each check as `sha256(name NUL {kind:?})`, the derived
//! `Debug` text of these types. A check that can still be written this way gets the same
//! fingerprint again, so an old baseline verifies without a false "definition changed". Never
//! edit these types: any change (a field, a name, an order) changes the old fingerprints.

// The fields exist to be printed by `Debug` (the 0.1 fingerprint), never read.
#![allow(dead_code)]

use crate::sql::ident::Name;

use super::{FactObject, Func, MetricArg, OrphanCheck, Rule};

#[derive(Debug)]
pub struct Metric {
    pub label: String,
    pub func: Func,
    pub arg: MetricArg,
    pub rule: Rule,
}

#[derive(Debug)]
pub struct MetricsCheck {
    pub table: Name,
    pub filter: Option<String>,
    pub group_by: Vec<String>,
    pub metrics: Vec<Metric>,
}

#[derive(Debug)]
pub struct NullCheck {
    pub table: Name,
    pub column: String,
    pub filter: Option<String>,
    pub rule: Rule,
}

#[derive(Debug)]
pub struct CustomCheck {
    pub sql: String,
    pub sql_after: Option<String>,
    pub key: Vec<String>,
    pub rule: Rule,
}

#[derive(Debug, Default)]
pub struct FactExpect {
    pub exists: Option<bool>,
    pub data_type: Option<String>,
    pub nullable: Option<bool>,
    pub validated: Option<bool>,
    pub valid: Option<bool>,
    pub enabled: Option<bool>,
}

#[derive(Debug)]
pub struct SchemaCheck {
    pub object: FactObject,
    pub expect: FactExpect,
    pub may_change: bool,
    pub compare_only: bool,
}

#[derive(Debug)]
pub enum CheckKind {
    Metrics(MetricsCheck),
    NullCount(NullCheck),
    Orphans(OrphanCheck),
    Custom(CustomCheck),
    Schema(SchemaCheck),
}
