//! What a backfill reports: its counters, its progress events while the batches run, and its
//! outcome (`migval backfill`'s summary, and the `backfill` part of a [`Report`](super::Report)).
//! Plain data: the batch loop (`backfill::runner`) fills it, `report::backfill` words it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::DbFailure;

/// What the loop has done so far (for a resumed run: since the run started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Committed batch transactions (a bisected batch counts each committed part).
    pub batches: u64,
    pub checked: u64,
    pub updated: u64,
    pub already_done: u64,
    pub no_match: u64,
    pub ambiguous: u64,
    pub errors: u64,
}

impl Counters {
    pub fn add(&mut self, o: &Counters) {
        self.batches += o.batches;
        self.checked += o.checked;
        self.updated += o.updated;
        self.already_done += o.already_done;
        self.no_match += o.no_match;
        self.ambiguous += o.ambiguous;
        self.errors += o.errors;
    }

    /// What was added since `earlier` (each counter at least 0): after a reconnect, what the
    /// server committed beyond what this invocation had counted.
    pub fn since(&self, earlier: &Counters) -> Counters {
        Counters {
            batches: self.batches.saturating_sub(earlier.batches),
            checked: self.checked.saturating_sub(earlier.checked),
            updated: self.updated.saturating_sub(earlier.updated),
            already_done: self.already_done.saturating_sub(earlier.already_done),
            no_match: self.no_match.saturating_sub(earlier.no_match),
            ambiguous: self.ambiguous.saturating_sub(earlier.ambiguous),
            errors: self.errors.saturating_sub(earlier.errors),
        }
    }
}

/// Something the CLI may show while the loop runs.
#[derive(Debug, Clone)]
pub enum Event {
    Batch(BatchStat),
    Retry {
        batch: u64,
        attempt: u32,
        wait_ms: u64,
        failure: DbFailure,
    },
    Shrunk {
        from: u64,
        to: u64,
    },
    Reconnected {
        attempt: u32,
    },
    Waiting(String),
    Isolated {
        key: Vec<String>,
        failure: DbFailure,
    },
}

#[derive(Debug, Clone)]
pub struct BatchStat {
    pub number: u64,
    pub rows: u64,
    pub duration_ms: u64,
    pub size: u64,
    /// Cumulative, this invocation (for the rate).
    pub counters: Counters,
    /// Rows checked by the whole run, earlier invocations included (for done / total).
    pub run_checked: u64,
    pub total_rows: u64,
    pub elapsed: Duration,
}

/// The result of the batch loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackfillOutcome {
    pub backfill: String,
    pub table: String,
    pub committed: bool,
    pub run_id: Option<i64>,
    /// Counters of the whole run (a resumed run includes the earlier attempts).
    pub counters: Counters,
    /// Counters of this invocation only.
    pub this_invocation: Counters,
    pub finished: bool,
    pub interrupted: bool,
    pub elapsed_ms: u64,
    /// Dry-run: how long --commit should take (with --sample: extrapolated to the whole table).
    pub estimated_total_ms: Option<u64>,
    pub total_rows: u64,
    pub pending_rows: u64,
    pub batch_ms: Vec<u64>,
    pub log_path: String,
    /// The largest key when the run started: no batch went above it.
    pub ceiling: Option<Vec<String>>,
    /// Pending rows above the ceiling at the end (inserted since the run began): not chased;
    /// the next run takes them.
    pub new_since_start: u64,
    /// Dry-run: EXPLAIN ANALYZE of the first batch's change (rolled back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_batch_plan: Option<Vec<String>>,
}

impl BackfillOutcome {
    /// Percentile of batch durations (p in 0..=100).
    pub fn batch_percentile(&self, p: u64) -> u64 {
        if self.batch_ms.is_empty() {
            return 0;
        }
        let mut v = self.batch_ms.clone();
        v.sort_unstable();
        let n = u64::try_from(v.len()).unwrap_or(u64::MAX);
        let idx = (n.saturating_sub(1) * p.min(100) + 50) / 100;
        v[usize::try_from(idx).unwrap_or(0).min(v.len() - 1)]
    }

    /// How the loop ended, in words: `finished`, `interrupted` (Ctrl-C / SIGTERM), or
    /// `sampled` (a dry-run stopped after `--sample` batches).
    pub fn end(&self) -> &'static str {
        if self.finished {
            "finished"
        } else if self.interrupted {
            "interrupted"
        } else {
            "sampled"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Counters;

    #[test]
    fn since_is_what_was_added_and_never_negative() {
        let earlier = Counters {
            batches: 2,
            checked: 800,
            updated: 700,
            ambiguous: 100,
            ..Counters::default()
        };
        let now = Counters {
            batches: 3,
            checked: 1200,
            updated: 1044,
            ambiguous: 48,
            ..Counters::default()
        };
        let d = now.since(&earlier);
        assert_eq!((d.batches, d.checked, d.updated), (1, 400, 344));
        assert_eq!(d.ambiguous, 0, "saturates");
        let mut back = earlier;
        back.add(&now.since(&back));
        assert_eq!((back.batches, back.checked, back.updated), (3, 1200, 1044));
    }
}
