//! What the batch loop does after a failure, as pure functions: the failure's class (from its
//! SQLSTATE), the next action for this attempt (back off and retry, halve the batch,
//! reconnect, bisect, stop), the words of a stop, the bisection's work list and the adaptive
//! batch size. No I/O here: the loop in `runner` performs the action.
//!
//! ```text
//!   class     40P01 deadlock, 40001 serialization, 55P03 lock timeout   Retry
//!             57014 statement timeout                                   Timeout
//!             connection gone (closed, 08xxx, 57P01..03)                Lost
//!             22xxx data / 23xxx constraint, in the change only         Poison
//!             anything else (25006 read-only standby, 42xxx, ...)       Fatal
//!   action    Retry    attempt <= retries            back off 200 ms * 2^(attempt-1) <= 5 s
//!             Timeout  size > 1, attempt <= retries+8 halve the batch, at once
//!             Lost     attempt <= max(retries, 10)   back off, reconnect (a restart takes ~30 s)
//!             Poison   always                        bisect the batch's keys
//!             else                                   stop (a lock timeout names the blocker)
//! ```

use std::ops::Range;

use crate::db;
use crate::model::{Blocker, DbFailure};

/// How a batch failed, and so what to do about it.
#[derive(Debug)]
pub(super) enum Fail {
    /// Deadlock, serialization failure, lock timeout: try the same batch again after a while.
    Retry(DbFailure),
    /// Statement timeout: the batch is too big.
    Timeout(DbFailure),
    /// The connection is gone.
    Lost(DbFailure),
    /// A data or constraint error in the change: one row (or a few) is bad.
    Poison(DbFailure),
    Fatal(DbFailure),
    Log(String),
}

impl Fail {
    pub(super) fn of(e: &tokio_postgres::Error, context: &str, in_change: bool) -> Fail {
        Fail::classify(
            db::failure(e, Some(context.to_string())),
            db::is_connection_lost(e),
            in_change,
        )
    }

    /// The class of a failure: `lost` when the connection itself is gone, `in_change` when it
    /// came from the change statement (where a data or constraint error means a bad row).
    pub(super) fn classify(f: DbFailure, lost: bool, in_change: bool) -> Fail {
        if lost {
            return Fail::Lost(f);
        }
        match f.sqlstate.as_deref() {
            Some("40P01" | "40001" | "55P03") => Fail::Retry(f),
            Some("57014") => Fail::Timeout(f),
            Some(s) if in_change && (s.starts_with("23") || s.starts_with("22")) => Fail::Poison(f),
            _ => Fail::Fatal(f),
        }
    }

    /// The server's failure (a log write's error as one with no SQLSTATE).
    pub(super) fn into_failure(self) -> DbFailure {
        match self {
            Fail::Retry(f)
            | Fail::Timeout(f)
            | Fail::Lost(f)
            | Fail::Poison(f)
            | Fail::Fatal(f) => f,
            Fail::Log(message) => DbFailure::message_only(message),
        }
    }

    /// A failure of migval's own making (no SQLSTATE) that no retry helps.
    pub(super) fn fatal(message: String) -> Fail {
        Fail::Fatal(DbFailure::message_only(message))
    }

    pub(super) fn failure(&self) -> String {
        match self {
            Fail::Retry(f)
            | Fail::Timeout(f)
            | Fail::Lost(f)
            | Fail::Poison(f)
            | Fail::Fatal(f) => f.to_string(),
            Fail::Log(m) => m.clone(),
        }
    }
}

/// What the loop does next about a failed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    /// Bisect the batch's keys: commit the parts that succeed, log each row that fails alone.
    Isolate,
    /// Wait, then run the same batch again. `watch_blockers`: a lock timeout, so the next
    /// attempts ask who holds the lock (the stop message names them).
    Retry { wait_ms: u64, watch_blockers: bool },
    /// Run the same batch again at once, this many rows.
    Shrink { to: u64 },
    /// Wait, reconnect (re-lock, re-read the committed progress), run the batch again.
    Reconnect { wait_ms: u64 },
    /// Give up: the run is marked failed, the committed batches stay.
    Stop,
}

/// The action after `fail` on the `attempt`-th try (1-based) of a batch of `size` rows, with
/// `retries` the spec's `[batch] retries`.
pub(super) fn decide(fail: &Fail, attempt: u32, size: u64, retries: u32) -> Action {
    match fail {
        Fail::Poison(_) => Action::Isolate,
        Fail::Retry(f) if attempt <= retries => Action::Retry {
            wait_ms: db::backoff_ms(attempt),
            watch_blockers: is_lock_timeout(f),
        },
        Fail::Timeout(_) if size > 1 && attempt <= retries.saturating_add(8) => Action::Shrink {
            to: (size / 2).max(1),
        },
        // A server restart takes a while: at least 10 attempts (~30 s).
        Fail::Lost(_) if attempt <= reconnects(retries) => Action::Reconnect {
            wait_ms: db::backoff_ms(attempt),
        },
        _ => Action::Stop,
    }
}

/// How many reconnects in a row a lost connection gets, in a batch or in a wait for the
/// replicas.
pub(super) fn reconnects(retries: u32) -> u32 {
    retries.max(10)
}

fn is_lock_timeout(f: &DbFailure) -> bool {
    f.sqlstate.as_deref() == Some("55P03")
}

/// The error of a run that stopped on batch `batch` after `attempt` tries: the failure, what
/// the batch was doing, and for a lock timeout who held the lock (`blockers`, as last seen).
pub(super) fn stop_message(
    backfill: &str,
    batch: u64,
    attempt: u32,
    fail: &Fail,
    blockers: &[Blocker],
    lock_timeout_ms: u64,
) -> String {
    let f = match fail {
        Fail::Log(m) => return m.clone(),
        Fail::Retry(f) | Fail::Timeout(f) | Fail::Lost(f) | Fail::Fatal(f) | Fail::Poison(f) => f,
    };
    let blocked = if is_lock_timeout(f) {
        blocked_by(blockers, lock_timeout_ms)
    } else {
        String::new()
    };
    format!(
        "batch {batch} of backfill `{backfill}` failed after {attempt} attempt{}: {f}{}{blocked}",
        if attempt == 1 { "" } else { "s" },
        f.context
            .as_ref()
            .map(|c| format!("\n  (while {c})"))
            .unwrap_or_default()
    )
}

/// The end of the error of a batch that gave up on a lock: who held it, and what to do.
fn blocked_by(blockers: &[Blocker], lock_timeout_ms: u64) -> String {
    let mut out = String::new();
    if blockers.is_empty() {
        out.push_str(
            "\n  the session holding the lock could not be identified (it released it between \
             attempts?)",
        );
    }
    for b in blockers {
        out.push_str(&format!(
            "\n  blocked by pid {} (user {}, application `{}`, {}, transaction open {} s): {}",
            b.pid,
            b.user,
            b.application_name,
            b.state,
            b.transaction_seconds,
            b.query.split_whitespace().collect::<Vec<_>>().join(" ")
        ));
    }
    out.push_str(&format!(
        "\n  hint: wait for that session to end its transaction, or end it \
         (pg_terminate_backend) if it is safe to; then rerun: the backfill resumes after the last \
         committed batch. Or raise [batch] lock_timeout ({lock_timeout_ms} ms) / retries"
    ));
    out
}

/// The bisection of a batch whose change failed on a bad row, over the indexes of its keys:
///
/// ```text
///   [k1 .. k8] fails -> [k1 .. k4] ok, commit | [k5 .. k8] fails
///                    -> [k5 k6] ok | [k7] ok | [k8] fails alone: logged, skipped
/// ```
/// Slices come leftmost first, so the keys commit in order (the progress row's `last_key`
/// only moves forward).
pub(super) struct Bisect {
    /// Work stack of slices still to try, leftmost on top.
    stack: Vec<Range<usize>>,
}

impl Bisect {
    pub(super) fn new(keys: usize) -> Bisect {
        Bisect {
            stack: std::iter::once(0..keys).collect(),
        }
    }

    /// The next slice of keys to run as one sub-batch.
    pub(super) fn next(&mut self) -> Option<Range<usize>> {
        while let Some(r) = self.stack.pop() {
            if !r.is_empty() {
                return Some(r);
            }
        }
        None
    }

    /// `slice` failed on a bad row: `Some(i)` when it was the one key `i` (log and skip it),
    /// else its halves are queued.
    pub(super) fn failed(&mut self, slice: Range<usize>) -> Option<usize> {
        if slice.len() == 1 {
            return Some(slice.start);
        }
        let mid = slice.start + slice.len() / 2;
        self.stack.push(mid..slice.end);
        self.stack.push(slice.start..mid);
        None
    }
}

/// Adaptive size: halfway toward the size that would take `target_ms`, at most doubling.
pub(super) fn next_size(size: u64, rows: u64, ms: u64, target_ms: u64, min: u64, max: u64) -> u64 {
    if rows == 0 {
        return size.saturating_mul(2).clamp(min, max);
    }
    let ideal = u128::from(rows) * u128::from(target_ms) / u128::from(ms.max(1));
    let ideal = u64::try_from(ideal).unwrap_or(u64::MAX);
    let next = size / 2 + ideal / 2;
    next.min(size.saturating_mul(2)).clamp(min, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(sqlstate: &str) -> DbFailure {
        DbFailure {
            message: format!("server said {sqlstate}"),
            sqlstate: Some(sqlstate.into()),
            detail: None,
            hint: None,
            server_context: None,
            context: Some("running the change (set)".into()),
        }
    }

    fn class(sqlstate: &str, lost: bool, in_change: bool) -> Fail {
        Fail::classify(failure(sqlstate), lost, in_change)
    }

    #[test]
    fn sqlstates_fall_into_the_classes_the_loop_acts_on() {
        for s in ["40P01", "40001", "55P03"] {
            assert!(matches!(class(s, false, true), Fail::Retry(_)), "{s}");
        }
        assert!(matches!(class("57014", false, true), Fail::Timeout(_)));
        for s in ["23505", "23502", "22003", "22P02"] {
            assert!(matches!(class(s, false, true), Fail::Poison(_)), "{s}");
            // Outside the change (finding the range, the progress row) it is not a bad row.
            assert!(matches!(class(s, false, false), Fail::Fatal(_)), "{s}");
        }
        // A standby or a read-only transaction, a missing column: no retry helps.
        for s in ["25006", "42703", "42501"] {
            assert!(matches!(class(s, false, true), Fail::Fatal(_)), "{s}");
        }
        // The connection is gone whatever the SQLSTATE said.
        assert!(matches!(class("57P01", true, true), Fail::Lost(_)));
        assert!(matches!(class("23505", true, true), Fail::Lost(_)));
    }

    #[test]
    fn a_deadlock_is_retried_with_a_growing_backoff_until_the_retries_run_out() {
        let f = class("40P01", false, true);
        assert_eq!(
            decide(&f, 1, 1000, 3),
            Action::Retry {
                wait_ms: 200,
                watch_blockers: false
            }
        );
        assert_eq!(
            decide(&f, 3, 1000, 3),
            Action::Retry {
                wait_ms: 800,
                watch_blockers: false
            }
        );
        assert_eq!(decide(&f, 4, 1000, 3), Action::Stop);
        assert_eq!(decide(&f, 1, 1000, 0), Action::Stop);
        let serialization = class("40001", false, true);
        assert_eq!(
            decide(&serialization, 2, 1000, 3),
            Action::Retry {
                wait_ms: 400,
                watch_blockers: false
            }
        );
    }

    #[test]
    fn a_lock_timeout_is_retried_watching_the_blocker_then_stops_naming_it() {
        let f = class("55P03", false, false);
        assert_eq!(
            decide(&f, 2, 1000, 2),
            Action::Retry {
                wait_ms: 400,
                watch_blockers: true
            }
        );
        assert_eq!(decide(&f, 3, 1000, 2), Action::Stop);
        let blocker = Blocker {
            pid: 4242,
            user: "app".into(),
            application_name: "psql".into(),
            state: "idle in transaction".into(),
            transaction_seconds: "12".into(),
            query: "UPDATE plan_subscriptions\n   SET note = 'x'".into(),
        };
        let m = stop_message("subscriber_fk", 7, 3, &f, &[blocker], 500);
        assert!(
            m.starts_with("batch 7 of backfill `subscriber_fk` failed after 3 attempts: "),
            "{m}"
        );
        assert!(
            m.contains(
                "blocked by pid 4242 (user app, application `psql`, idle in transaction, \
                 transaction open 12 s): UPDATE plan_subscriptions SET note = 'x'"
            ),
            "{m}"
        );
        assert!(m.contains("lock_timeout (500 ms)"), "{m}");
        let unknown = stop_message("subscriber_fk", 7, 3, &f, &[], 500);
        assert!(unknown.contains("could not be identified"), "{unknown}");
        // Other failures do not talk about locks.
        let deadlock = stop_message("b", 1, 1, &class("40P01", false, true), &[], 500);
        assert!(deadlock.contains("failed after 1 attempt: "), "{deadlock}");
        assert!(!deadlock.contains("blocked"), "{deadlock}");
        assert!(
            deadlock.contains("(while running the change (set))"),
            "{deadlock}"
        );
    }

    #[test]
    fn a_statement_timeout_halves_the_batch_down_to_one_row() {
        let f = class("57014", false, true);
        assert_eq!(decide(&f, 1, 1000, 3), Action::Shrink { to: 500 });
        assert_eq!(decide(&f, 5, 3, 3), Action::Shrink { to: 1 });
        // The halving has retries + 8 attempts, then stops; a single row cannot shrink.
        assert_eq!(decide(&f, 11, 1000, 3), Action::Shrink { to: 500 });
        assert_eq!(decide(&f, 12, 1000, 3), Action::Stop);
        assert_eq!(decide(&f, 1, 1, 3), Action::Stop);
    }

    #[test]
    fn a_lost_connection_reconnects_at_least_ten_times() {
        let f = class("08006", true, false);
        assert_eq!(decide(&f, 1, 1000, 3), Action::Reconnect { wait_ms: 200 });
        assert_eq!(
            decide(&f, 10, 1000, 3),
            Action::Reconnect { wait_ms: 5_000 }
        );
        assert_eq!(decide(&f, 11, 1000, 3), Action::Stop);
        assert_eq!(
            decide(&f, 20, 1000, 20),
            Action::Reconnect { wait_ms: 5_000 }
        );
        assert_eq!(decide(&f, 21, 1000, 20), Action::Stop);
    }

    #[test]
    fn a_bad_row_is_bisected_and_anything_else_stops_at_once() {
        let poison = class("23502", false, true);
        assert_eq!(decide(&poison, 1, 1000, 0), Action::Isolate);
        assert_eq!(decide(&poison, 99, 1, 0), Action::Isolate);
        let standby = class("25006", false, false);
        assert_eq!(decide(&standby, 1, 1000, 10), Action::Stop);
        let log = Fail::Log("cannot write rows.csv: disk full".into());
        assert_eq!(decide(&log, 1, 1000, 10), Action::Stop);
        assert_eq!(
            stop_message("b", 1, 1, &log, &[], 500),
            "cannot write rows.csv: disk full"
        );
    }

    /// Runs the bisection against `bad` keys: the slices that commit, and the keys logged.
    fn bisect(keys: usize, bad: &[usize]) -> (Vec<Range<usize>>, Vec<usize>) {
        let mut b = Bisect::new(keys);
        let (mut committed, mut isolated) = (Vec::new(), Vec::new());
        while let Some(slice) = b.next() {
            if bad.iter().any(|k| slice.contains(k)) {
                if let Some(k) = b.failed(slice) {
                    isolated.push(k);
                }
            } else {
                committed.push(slice);
            }
        }
        (committed, isolated)
    }

    #[test]
    fn bisection_narrows_a_failing_batch_down_to_the_one_bad_key_committing_in_order() {
        let (committed, isolated) = bisect(8, &[7]);
        assert_eq!(isolated, vec![7]);
        assert_eq!(committed, vec![0..4, 4..6, 6..7]);

        let (committed, isolated) = bisect(10, &[0, 5]);
        assert_eq!(isolated, vec![0, 5]);
        // Every good key committed exactly once, in key order.
        let keys: Vec<usize> = committed.iter().flat_map(Clone::clone).collect();
        assert_eq!(keys, vec![1, 2, 3, 4, 6, 7, 8, 9]);

        // No key left (the rows were done meanwhile): nothing to try.
        assert_eq!(bisect(0, &[]), (vec![], vec![]));
    }

    #[test]
    fn adaptive_size_moves_toward_the_target_within_bounds() {
        // 1000 rows in 100 ms, target 200 ms: ideal 2000, halfway 1500.
        assert_eq!(next_size(1000, 1000, 100, 200, 100, 10_000), 1500);
        // Very slow batch: shrinks, not below min.
        assert_eq!(next_size(1000, 1000, 100_000, 200, 100, 10_000), 501);
        assert_eq!(next_size(150, 150, 100_000, 200, 100, 10_000), 100);
        // Very fast: at most doubles, never above max.
        assert_eq!(next_size(1000, 1000, 1, 200, 100, 10_000), 2000);
        assert_eq!(next_size(8000, 8000, 1, 200, 100, 10_000), 10_000);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(db::backoff_ms(1), 200);
        assert_eq!(db::backoff_ms(2), 400);
        assert_eq!(db::backoff_ms(10), 5_000);
    }
}
