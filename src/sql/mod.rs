//! The query catalogue: every fixed statement migval runs is a file in `queries/`, pulled in
//! here so that a DBA can review the SQL without reading Rust. Generated statements (fused
//! metric scans, orphan counts, custom-query wrappers) are built in `engine::plan` from
//! quoted identifiers only; values are always bound.

pub mod ident;

/// A named query from `queries/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    pub name: &'static str,
    pub sql: &'static str,
}

macro_rules! queries {
    ($($id:ident => $file:literal),* $(,)?) => {
        $(pub const $id: Query = Query { name: $file, sql: include_str!(concat!("../../queries/", $file)) };)*
        /// Every query of the catalogue (a test prepares each one against PostgreSQL).
        pub const ALL: &[Query] = &[$($id),*];
    };
}

queries! {
    SNAPSHOT_EXPORT => "snapshot_export.sql",
    TRANSACTION_ORIGIN => "transaction_origin.sql",
    BLOCKERS => "blockers.sql",
    LOCKS_HELD => "locks_held.sql",
    SEARCH_PATH => "search_path.sql",
    RELATIONS => "relations.sql",
    FACT_TABLE => "fact_table.sql",
    FACT_VIEW => "fact_view.sql",
    FACT_COLUMN => "fact_column.sql",
    FACT_CONSTRAINT => "fact_constraint.sql",
    FACT_INDEX => "fact_index.sql",
    FACT_RLS => "fact_rls.sql",
    FACT_POLICY => "fact_policy.sql",
    FACT_FUNCTION => "fact_function.sql",
    SCHEMA_CATALOG => "schema_catalog.sql",
}
