//! `migval backfill` in words: the summary after the batches, the progress line and the
//! one-line notices while they run (retries, a shrunk batch, a reconnect, a row left alone).
//! Pure functions of the model's backfill types; the CLI decides where and how often to print.

use std::fmt::Write as _;

use super::Format;
use crate::model::backfill::{BackfillOutcome, BatchStat, Counters, Event};

/// 1234567 -> "1,234,567".
pub fn group(n: u64) -> String {
    crate::model::grouped_digits(&n.to_string())
}

/// A duration for reading: milliseconds below 10 s, else seconds with one decimal.
fn seconds(ms: u64) -> String {
    if ms < 10_000 {
        format!("{ms} ms")
    } else {
        format!("{}.{:01} s", ms / 1000, (ms % 1000) / 100)
    }
}

/// Updated rows among those the change was tried on (updated, no match, ambiguous, errors),
/// rounded to a tenth of a percent, in integers; `n/a` when none was tried.
pub fn success_rate(c: &Counters) -> String {
    let attempted = c.updated + c.no_match + c.ambiguous + c.errors;
    if attempted == 0 {
        return "n/a".to_string();
    }
    let tenths = (u128::from(c.updated) * 1000 + u128::from(attempted) / 2) / u128::from(attempted);
    format!("{}.{}%", tenths / 10, tenths % 10)
}

/// The summary printed after the last batch (`Backfill summary: ...`, one labelled line per
/// counter, durations, the plan of a dry-run's first batch).
pub fn summary_text(o: &BackfillOutcome) -> String {
    let mut out = String::new();
    let c: &Counters = &o.counters;
    let title = match (o.committed, o.run_id) {
        (true, Some(r)) => format!(
            "Backfill summary: `{}` on {} (run {r})",
            o.backfill, o.table
        ),
        _ => format!(
            "Backfill summary (DRY-RUN, rolled back): `{}` on {}",
            o.backfill, o.table
        ),
    };
    let _ = writeln!(out, "{title}");
    let _ = writeln!(out, "{}", "=".repeat(title.chars().count()));
    let rows = [
        ("Total rows checked:", c.checked),
        ("Updated successfully:", c.updated),
        ("Skipped (already done):", c.already_done),
        ("Skipped (no match):", c.no_match),
        ("Ambiguous (logged, left untouched):", c.ambiguous),
        ("Errors (logged, left untouched):", c.errors),
    ];
    for (label, n) in rows {
        let _ = writeln!(out, "{label:<37}{:>12}", group(n));
    }
    let _ = writeln!(out, "{:<37}{:>12}", "Success rate:", success_rate(c));
    let _ = writeln!(
        out,
        "{:<37}{:>12}",
        "Duration (this invocation):",
        seconds(o.elapsed_ms)
    );
    if let Some(est) = o.estimated_total_ms {
        let _ = writeln!(
            out,
            "{:<37}{:>12}",
            "Estimated duration with --commit:",
            seconds(est)
        );
    }
    let _ = writeln!(
        out,
        "Batches: {} (this invocation {}), duration p50 {} ms, p95 {} ms, max {} ms",
        c.batches,
        o.batch_ms.len(),
        o.batch_percentile(50),
        o.batch_percentile(95),
        o.batch_ms.iter().max().copied().unwrap_or(0)
    );
    if o.new_since_start > 0 {
        let _ = writeln!(
            out,
            "{:<37}{:>12}",
            "New since the run began (not chased):",
            group(o.new_since_start)
        );
        let _ = writeln!(
            out,
            "  pending rows above key ({}), the largest when the run started; run the backfill \
             again to include them",
            o.ceiling.as_ref().map(|k| k.join(", ")).unwrap_or_default()
        );
    }
    if let Some(plan) = &o.first_batch_plan {
        let _ = writeln!(
            out,
            "Plan of batch 1's change (EXPLAIN ANALYZE, rolled back):"
        );
        for line in plan {
            let _ = writeln!(out, "  {line}");
        }
    }
    if c.no_match + c.ambiguous + c.errors > 0 {
        let _ = writeln!(out, "Rows left alone are listed in {}", o.log_path);
    }
    if !o.finished && !o.interrupted && !o.committed {
        let _ = writeln!(
            out,
            "(sampled: the dry-run stopped after the batches asked for with --sample)"
        );
    }
    out
}

/// The outcome alone in `format`, for a backfill that has no report of checks (a dry-run, a
/// spec without `checks`, an interrupted run): the same `backfill` object as in a report's
/// JSON, the Markdown **Backfill** section, a JUnit suite of no test cases with the
/// `backfill_*` properties. `None` for text (the summary is the text) and HTML.
pub fn render(o: &BackfillOutcome, format: Format) -> Option<String> {
    let mut o = o.clone();
    match format {
        Format::Text | Format::Html => None,
        Format::Json => {
            let doc = serde_json::json!({ "command": "backfill", "backfill": o });
            Some(
                serde_json::to_string_pretty(&doc).unwrap_or_else(|e| {
                    format!("{{\"error\":\"cannot serialize the outcome: {e}\"}}")
                }) + "\n",
            )
        }
        Format::Markdown => {
            super::escape::backfill_outcome(&mut o);
            let mut out = format!("## migval backfill `{}`\n", o.backfill);
            super::markdown::backfill(&mut out, &o);
            Some(out)
        }
        Format::Junit => {
            super::escape::backfill_outcome(&mut o);
            let xml = super::junit::xml;
            let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
            out.push_str("<testsuites name=\"migval\" tests=\"0\" failures=\"0\" errors=\"0\">\n");
            out.push_str(&format!(
                "  <testsuite name=\"migval backfill {}\" tests=\"0\" failures=\"0\" errors=\"0\" skipped=\"0\" time=\"{}.{:03}\">\n    <properties>",
                xml(&o.backfill),
                o.elapsed_ms / 1000,
                o.elapsed_ms % 1000
            ));
            for (name, value) in super::junit::backfill(&o) {
                out.push_str(&format!(
                    "<property name=\"{name}\" value=\"{}\"/>",
                    xml(&value)
                ));
            }
            out.push_str("</properties>\n  </testsuite>\n</testsuites>\n");
            Some(out)
        }
    }
}

/// The outcome's counts, labelled, in the order every format shows them.
pub fn counts(o: &BackfillOutcome) -> [(&'static str, u64); 8] {
    let c = &o.counters;
    [
        ("batches", c.batches),
        ("rows checked", c.checked),
        ("updated", c.updated),
        ("already done", c.already_done),
        ("no match", c.no_match),
        ("ambiguous", c.ambiguous),
        ("errors", c.errors),
        ("new since the run began", o.new_since_start),
    ]
}

/// `name on table (run 3): finished` (a dry-run says so).
pub fn title(o: &BackfillOutcome, quote: &str) -> String {
    format!(
        "{quote}{}{quote} on {quote}{}{quote}{}: {}{}",
        o.backfill,
        o.table,
        o.run_id.map(|r| format!(" (run {r})")).unwrap_or_default(),
        o.end(),
        if o.committed {
            ""
        } else {
            " (dry-run, rolled back)"
        }
    )
}

/// The outcome in one line, for a report's facts: `name on table (run 3): finished; 3
/// batches, 1,200 rows checked, 1,044 updated, ...`.
pub fn describe(o: &BackfillOutcome) -> String {
    let counts: Vec<String> = counts(o)
        .iter()
        .map(|(label, n)| format!("{} {label}", group(*n)))
        .collect();
    format!("{}; {}", title(o, ""), counts.join(", "))
}

/// What was committed before a run stopped on an error, and what to do next.
pub fn stopped_text(counters: &Counters, run_id: Option<i64>) -> String {
    format!(
        "committed before the failure (run {}): {} batches, {} rows checked, {} updated; \
         fix the cause and rerun the same command: it resumes after the last committed batch",
        run_id.map_or_else(|| "-".into(), |r| r.to_string()),
        counters.batches,
        group(counters.checked),
        group(counters.updated)
    )
}

/// Where the run is after a batch, for a progress bar or line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Rows checked by the whole run (earlier invocations included).
    pub done: u64,
    /// Rows to check: never below `done`.
    pub total: u64,
    /// 0..=100.
    pub percent: u128,
    /// `done / total rows  rate rows/s  ETA s  batch n (rows, ms)`.
    pub text: String,
}

/// The progress after batch `b`: the rate is this invocation's rows over its elapsed time, the
/// ETA the rows left at that rate.
pub fn progress(b: &BatchStat) -> Progress {
    let done = b.run_checked.max(b.counters.checked);
    // Rows inserted below the ceiling after the count (a non-increasing key) are visited too:
    // the total grows with them, it is never left behind.
    let total = b.total_rows.max(done);
    let secs = b.elapsed.as_millis().max(1);
    let rate = u128::from(b.counters.checked) * 1000 / secs;
    let left = total.saturating_sub(done);
    let eta = u128::from(left)
        .checked_div(rate)
        .map_or_else(|| "?".to_string(), |s| format!("{s} s"));
    let percent = if total > 0 {
        (u128::from(done) * 100 / u128::from(total)).min(100)
    } else {
        100
    };
    let text = format!(
        "{} / {} rows  {rate} rows/s  ETA {eta}  batch {} ({} rows, {} ms)",
        group(done),
        group(total),
        b.number,
        b.rows,
        b.duration_ms
    );
    Progress {
        done,
        total,
        percent,
        text,
    }
}

/// The line for an event worth a line of its own (`None` for a batch: see [`progress`]).
pub fn event_line(e: &Event) -> Option<String> {
    Some(match e {
        Event::Batch(_) => return None,
        Event::Retry {
            batch,
            attempt,
            wait_ms,
            failure,
        } => format!(
            "batch {batch}: attempt {attempt} failed ({}{}); retrying in {wait_ms} ms",
            failure.message,
            failure
                .sqlstate
                .as_ref()
                .map(|s| format!(", SQLSTATE {s}"))
                .unwrap_or_default()
        ),
        Event::Shrunk { from, to } => format!("statement timeout: batch size {from} -> {to}"),
        Event::Reconnected { attempt } => {
            format!("reconnected (attempt {attempt}); resuming after the last committed batch")
        }
        Event::Waiting(what) => what.clone(),
        Event::Isolated { key, failure } => format!(
            "row ({}) fails on its own and is left untouched (logged): {}",
            key.join(", "),
            failure.to_string().replace('\n', " ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1234567), "1,234,567");
    }

    fn stat(run_checked: u64, checked: u64, total_rows: u64, elapsed_ms: u64) -> BatchStat {
        BatchStat {
            number: 3,
            rows: 400,
            duration_ms: 25,
            size: 400,
            counters: Counters {
                checked,
                ..Counters::default()
            },
            run_checked,
            total_rows,
            elapsed: Duration::from_millis(elapsed_ms),
        }
    }

    #[test]
    fn progress_counts_the_whole_run_and_rates_this_invocation() {
        // A resumed run: 2,000 rows done before, 1,200 now in 2 s -> 600 rows/s, 800 left.
        let p = progress(&stat(3200, 1200, 4000, 2000));
        assert_eq!((p.done, p.total, p.percent), (3200, 4000, 80));
        assert_eq!(
            p.text,
            "3,200 / 4,000 rows  600 rows/s  ETA 1 s  batch 3 (400 rows, 25 ms)"
        );
        // Rows inserted after the count: the total follows, the percentage stays <= 100.
        let p = progress(&stat(4500, 4500, 4000, 1000));
        assert_eq!((p.done, p.total, p.percent), (4500, 4500, 100));
        // Nothing checked yet this invocation: no rate, no ETA.
        let p = progress(&stat(100, 0, 4000, 1000));
        assert!(p.text.contains("0 rows/s  ETA ?"), "{}", p.text);
    }

    #[test]
    fn success_rate_is_exact_to_a_tenth_and_na_when_nothing_was_tried() {
        let c = Counters {
            updated: 2,
            ambiguous: 1,
            ..Counters::default()
        };
        assert_eq!(success_rate(&c), "66.7%");
        assert_eq!(success_rate(&Counters::default()), "n/a");
    }
}
