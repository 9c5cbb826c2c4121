//! migval: a migration validation engine for PostgreSQL.
//!
//! The pipeline, one module per stage:
//!
//! ```text
//!   spec      the checks file, parsed and validated once (spec::Spec)
//!   engine    plan    checks -> fused probes (one scan per table), renames applied after
//!             capture one exported snapshot shared by a pool of read-only connections
//!             compare merge on sorted keys, tolerance and intent rules -> CheckResult
//!   backfill  batched data changes: keyset batches, exactly-once resume, ambiguous rows logged,
//!             then the checks of `engine` as usual
//!   store     snapshot files: atomic, checksummed; JSON line + binary sections (section)
//!   report    text | json | markdown | junit, from model::Report only
//!   cli       one module per subcommand; main.rs maps the verdict to the exit code
//! ```
//!
//! Supporting modules: `db` (connections like libpq, TLS, exact decoding, error mapping),
//! `sql` (the query catalogue in `queries/` and identifier quoting), `model` (plain data),
//! `cluster` (throwaway PostgreSQL for the demo and tests), `redact` (passwords masked in
//! echoed command lines).
//!
//! Unix only (tested on Linux): signals (SIGTERM), file modes for `.pgpass` and client keys,
//! and `cluster`'s process handling are Unix APIs, so no code has a non-Unix branch.

#[cfg(not(unix))]
compile_error!(
    "migval builds on Unix only (tested on Linux); on Windows use WSL, see the README's Install"
);

pub mod backfill;
pub mod cli;
pub mod cluster;
pub mod db;
pub mod engine;
pub mod input;
pub mod integrity;
pub mod model;
pub mod redact;
pub mod report;
pub mod section;
pub mod spec;
pub mod sql;
pub mod store;
pub mod trace;
