//! Progress of long work (snapshot, verify, migrate) as events: the engine sends them, the
//! command line renders them on stderr (a bar on a terminal, plain lines otherwise; see
//! `cli::progress`). The engine never prints; without an observer installed, events go
//! nowhere and cost a read of an empty lock.
//!
//! ```text
//!   engine:   emit(Phase) ... emit(Planned{weights}) ... emit(ProbeStarted) .. emit(ProbeFinished)
//!             migrate: emit(StatementStarted) .. emit(StatementFinished), one statement at a time
//!                 |
//!   observer: installed by the CLI for the life of the command (none under --quiet)
//! ```

use std::sync::{Arc, RwLock};
use std::time::Duration;

/// One step of long work.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A phase begins: "connect", "lock", "export snapshot", "probes", "write file",
    /// "compare", "migration", ...
    Phase(&'static str),
    /// The probes about to run, in probe order: each one's checks (names joined) and its
    /// weight (the planner's estimate from EXPLAIN; 1 for a probe without one).
    Planned { probes: Vec<(String, f64)> },
    /// Probe `probe` (index into `Planned`) started on connection `connection`.
    ProbeStarted { probe: usize, connection: usize },
    /// Probe `probe` ended (`ok`: it produced a result).
    ProbeFinished {
        probe: usize,
        connection: usize,
        elapsed: Duration,
        ok: bool,
    },
    /// A migration statement started: `place` says which ("02_data.sql: statement 3 of 5,
    /// line 12" or "statement 3 of 5, line 12"), `sql` is its text on one line, abbreviated.
    StatementStarted { place: String, sql: String },
    /// The statement started last ended (`ok`: it ran; a lock timeout that is retried ends it
    /// too, and it starts again).
    StatementFinished { elapsed: Duration, ok: bool },
    /// The long work is over (the report or summary follows on stdout): clear the lines.
    Finished,
}

/// Receives the events; called from the engine's tasks, so it must be cheap and thread-safe.
pub trait Observer: Send + Sync {
    fn event(&self, event: &Event);
}

static OBSERVER: RwLock<Option<Arc<dyn Observer>>> = RwLock::new(None);

/// Send `event` to the installed observer, if any.
pub fn emit(event: Event) {
    let observer = OBSERVER.read().ok().and_then(|o| o.clone());
    if let Some(o) = observer {
        o.event(&event);
    }
}

/// Install `observer` until the returned guard is dropped.
#[must_use = "the observer is removed when the guard is dropped"]
pub fn observe(observer: Arc<dyn Observer>) -> Installed {
    if let Ok(mut o) = OBSERVER.write() {
        *o = Some(observer);
    }
    Installed(())
}

/// Removes the observer when dropped.
pub struct Installed(());

impl Drop for Installed {
    fn drop(&mut self) {
        if let Ok(mut o) = OBSERVER.write() {
            *o = None;
        }
    }
}
