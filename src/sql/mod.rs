//! The query catalogue: every fixed statement migval runs is a file in `queries/`, pulled in
//! here so that a DBA can review the SQL without reading Rust. Generated statements (fused
//! metric scans, orphan counts, custom-query wrappers) are built in `engine::plan` from
//! quoted identifiers only; values are always bound.

pub mod ident;
pub mod lex;

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
    RELATION_ALL_VISIBLE => "relation_all_visible.sql",
    RELATION_SIZES => "relation_sizes.sql",
    ROWS_BOUNDS => "rows_bounds.sql",
    FACT_TABLE => "fact_table.sql",
    FACT_VIEW => "fact_view.sql",
    FACT_COLUMN => "fact_column.sql",
    FACT_CONSTRAINT => "fact_constraint.sql",
    FACT_INDEX => "fact_index.sql",
    FACT_RLS => "fact_rls.sql",
    FACT_POLICY => "fact_policy.sql",
    FACT_FUNCTION => "fact_function.sql",
    FACT_COLUMNS_ABSENT => "fact_columns_absent.sql",
    FACT_FOREIGN_KEY => "fact_foreign_key.sql",
    FACT_UNIQUE => "fact_unique.sql",
    FACT_CHECK => "fact_check.sql",
    INIT_COLUMNS => "init_columns.sql",
    INIT_CONSTRAINTS => "init_constraints.sql",
    INIT_VIEWS => "init_views.sql",
    SCHEMA_CATALOG => "schema_catalog.sql",
    BACKFILL_TARGET => "backfill_target.sql",
    BACKFILL_LOCK => "backfill_lock.sql",
    BACKFILL_BATCH_LOCK => "backfill_batch_lock.sql",
    BACKFILL_LOCK_HOLDER => "backfill_lock_holder.sql",
    BACKFILL_TERMINATE => "backfill_terminate.sql",
    BACKFILL_REPLICATION_LAG => "backfill_replication_lag.sql",
    BACKFILL_ESTIMATE => "backfill_estimate.sql",
}

/// The backfill progress table (several statements, run with the simple protocol).
pub const BACKFILL_STATE_DDL: Query = Query {
    name: "backfill_state_ddl.sql",
    sql: include_str!("../../queries/backfill_state_ddl.sql"),
};

macro_rules! state_queries {
    ($($id:ident => $file:literal),* $(,)?) => {
        $(pub const $id: Query = Query { name: $file, sql: include_str!(concat!("../../queries/", $file)) };)*
        /// The statements on the progress table: they prepare only once [`BACKFILL_STATE_DDL`]
        /// has run, so they are kept out of [`ALL`] (the backfill tests prepare them).
        pub const BACKFILL_STATE: &[Query] = &[$($id),*];
    };
}

state_queries! {
    BACKFILL_RUN_OPEN => "backfill_run_open.sql",
    BACKFILL_RUN_GET => "backfill_run_get.sql",
    BACKFILL_RUN_START => "backfill_run_start.sql",
    BACKFILL_RUN_PROGRESS => "backfill_run_progress.sql",
    BACKFILL_RUN_STATUS => "backfill_run_status.sql",
    BACKFILL_LEASE_HOLDER => "backfill_lease_holder.sql",
    BACKFILL_LEASE_TAKE => "backfill_lease_take.sql",
    BACKFILL_LEASE_RENEW => "backfill_lease_renew.sql",
    BACKFILL_LEASE_RELEASE => "backfill_lease_release.sql",
}
