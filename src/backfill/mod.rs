//! Batched backfills (`migval backfill`): a declared, resumable, verified data change.
//!
//! ```text
//!   spec        backfill.toml -> BackfillSpec (table, key, pending guard, set/update,
//!               ambiguity rule, batching, the checks run afterwards)
//!   statements  the batch's SQL, from quoted identifiers; key values bound as text
//!   prepare     connect, resolve the table and key, prepare every statement, count rows
//!   guard       lease row + per-batch advisory xact lock (one run at a time, pooler-safe),
//!               progress table, claim: open / resume / abandon a run
//!   runner      the batch loop: pacing, cancellation, acting on the policy's decision, the
//!               outcome (the types the loop reports are `model::backfill`'s)
//!   batch       one batch in one transaction: bound, ambiguous rows, change, log, progress row
//!   policy      pure: failure class -> retry / shrink / reconnect / bisect / stop, the
//!               bisection's work list, the adaptive batch size (unit tested)
//!   isolate     a batch that failed on a bad row, bisected down to that row
//!   session     the connection: open, BEGIN + SET LOCAL, one query alone, reconnect
//!   lag         the replication-lag ceiling: check it can be read, wait before a batch
//!   log         CSV of the rows left alone: ambiguous, no match, errors
//! ```
//! The engine returns data and reports progress through [`Event`]s (`model::backfill`); the
//! words are `report::backfill`'s, and the CLI prints them.

mod batch;
mod guard;
mod isolate;
mod lag;
pub mod log;
mod policy;
mod prepare;
pub mod runner;
mod session;
pub mod spec;
pub mod statements;

pub use guard::RunStart;
pub use runner::{Backfill, BackfillError, Counters, Event, Options, Outcome};
pub use spec::BackfillSpec;
