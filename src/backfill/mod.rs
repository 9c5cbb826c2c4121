//! Batched backfills (`migval backfill`): a declared, resumable, verified data change.
//!
//! ```text
//!   spec        backfill.toml -> BackfillSpec (table, key, pending guard, set/update,
//!               ambiguity rule, batching, the checks run afterwards)
//!   statements  the batch's SQL, from quoted identifiers; key values bound as text
//!   prepare     resolve the table and key, prepare every statement, count rows
//!   guard       lease row + per-batch advisory xact lock (one run at a time, pooler-safe),
//!               progress table, open / resume / abandon a run
//!   runner      the batch loop: one transaction per batch, retries, bisection, reconnects
//!   policy      pure: failure class -> retry / shrink / reconnect / bisect / stop, the
//!               bisection's work list, the adaptive batch size (unit tested)
//!   log         CSV of the rows left alone: ambiguous, no match, errors
//! ```
//! The engine returns data and reports progress through [`Event`]s (`model::backfill`); the
//! words are `report::backfill`'s, and the CLI prints them.

mod guard;
pub mod log;
mod policy;
mod prepare;
pub mod runner;
pub mod spec;
pub mod statements;

pub use guard::RunStart;
pub use runner::{Backfill, BackfillError, Counters, Event, Options, Outcome};
pub use spec::BackfillSpec;
