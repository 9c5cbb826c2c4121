//! Batched backfills (`migval backfill`): a declared, resumable, verified data change.
//!
//! ```text
//!   spec        backfill.toml -> BackfillSpec (table, key, pending guard, set/update,
//!               ambiguity rule, batching, the checks run afterwards)
//!   statements  the batch's SQL, from quoted identifiers; key values bound as text
//!   runner      prepare (resolve, check SQL, lock, open or resume the run) -> batches
//!   log         CSV of the rows left alone: ambiguous, no match, errors
//! ```
//! The engine returns data and reports progress through [`runner::Event`]s; the CLI prints.

pub mod log;
pub mod runner;
pub mod spec;
pub mod statements;

pub use runner::{Backfill, BackfillError, Counters, Event, Options, Outcome};
pub use spec::BackfillSpec;
