//! `migval verify --every 10m --until 48h`: keep re-running, after go-live, the checks that
//! must hold while the application writes (see `engine::watch` for which), one line per run
//! on stderr, the full report on stdout when the watch ends.
//!
//! ```text
//!   t=0        every     2*every   ...   until
//!   run 1 ---- run 2 ---- run 3 ---- ... last run      exit 0, last report
//!                         FAIL                          exit 1 at once, that run's report
//!   a run that cannot connect (after a first good one): said, retried at the next tick;
//!   3 in a row, or the very first run: exit 2.   Ctrl-C: probes cancelled, exit 130.
//! ```
//!
//! A run that outlasts the interval starts the next one at once (missed ticks are skipped,
//! not queued). Between runs migval holds no connection.

use std::time::{Duration, Instant};

use anyhow::Context;

use super::snapshot::unless_stopping;
use super::verify::VerifyArgs;
use crate::db::conninfo::ConnInfo;
use crate::engine::{self, Limits};
use crate::model::{Report, Snapshot};
use crate::report::escape;
use crate::spec::{Spec, parse_duration_ms};

/// Consecutive runs that could not capture before the watch gives up (exit 2).
const MAX_LOST_RUNS: u32 = 3;

/// The interval and the length of the watch.
pub(super) struct Schedule {
    pub every: Duration,
    pub until: Option<Duration>,
}

impl Schedule {
    pub(super) fn from_args(a: &VerifyArgs) -> anyhow::Result<Option<Schedule>> {
        let Some(every) = &a.every else {
            return Ok(None);
        };
        let ms = |s: &str, flag: &str| -> anyhow::Result<Duration> {
            parse_duration_ms(s)
                .map(Duration::from_millis)
                .map_err(anyhow::Error::msg)
                .context(flag.to_string())
        };
        let every = ms(every, "--every")?;
        anyhow::ensure!(
            every >= Duration::from_secs(1),
            "--every must be at least 1s (e.g. 30s, 10m, 2h)"
        );
        let until = a.until.as_deref().map(|u| ms(u, "--until")).transpose()?;
        Ok(Some(Schedule { every, until }))
    }
}

/// Run the watch; the result is the exit code.
pub(super) async fn run(
    a: &VerifyArgs,
    schedule: &Schedule,
    info: &ConnInfo,
    spec: &Spec,
    baseline: &Snapshot,
    limits: Limits,
) -> anyhow::Result<u8> {
    let (watched, left_out) = if a.watch_all {
        (spec.clone(), Vec::new())
    } else {
        engine::watch::watch_spec(spec)
    };
    for (name, why) in &left_out {
        eprintln!(
            "watch: check `{}` left out: {why} (--watch-all to include it)",
            escape::line(name)
        );
    }
    anyhow::ensure!(
        !watched.checks.is_empty(),
        "nothing to watch: no check of {} has an intent that judges the post-state alone \
         (expect = \"zero\", {{ equals = ... }}, {{ between = ... }}, schema facts); add one, or \
         give --watch-all",
        spec.path
    );
    eprintln!(
        "watch: {} check{} every {}{}",
        watched.checks.len(),
        if watched.checks.len() == 1 { "" } else { "s" },
        human(schedule.every),
        schedule
            .until
            .map(|u| format!(" for {}", human(u)))
            .unwrap_or_else(|| " until a check fails or Ctrl-C".into())
    );
    let start = Instant::now();
    let mut runs: u32 = 0;
    let mut lost: u32 = 0;
    let mut last: Option<(Report, Snapshot)> = None;
    loop {
        runs += 1;
        let began = Instant::now();
        let verified = engine::verify(info, &watched, baseline, limits).await;
        unless_stopping().await;
        let took = began.elapsed().as_millis();
        match verified {
            Ok((mut report, after)) => {
                lost = 0;
                // The checks left out are not "no longer in the spec": say why instead.
                report.spec_changes.retain(|s| {
                    !left_out
                        .iter()
                        .any(|(n, _)| s.starts_with(&format!("check `{n}` is in the baseline")))
                });
                report.spec_changes.extend(
                    left_out
                        .iter()
                        .map(|(n, why)| format!("check `{n}` left out of the watch: {why}")),
                );
                let v = &report.verdict;
                eprintln!(
                    "{} run {runs}: {} passed, {} failed, {} errors of {} checks in {took} ms",
                    after.origin.captured_at, v.passed, v.failed, v.errored, v.total
                );
                if !v.passed() {
                    report.banner = Some(format!(
                        "watch: run {runs} failed after {} (runs before it passed)",
                        human(start.elapsed())
                    ));
                    return finish(a, &report, &after);
                }
                last = Some((report, after));
            }
            Err(e) if last.is_some() && lost + 1 < MAX_LOST_RUNS => {
                lost += 1;
                eprintln!(
                    "+{} run {runs}: could not capture ({}); retrying at the next tick ({lost} of {MAX_LOST_RUNS} in a row)",
                    human(start.elapsed()),
                    escape::line(&format!("{e:#}"))
                );
            }
            Err(e) => {
                return Err(e).context(if last.is_some() {
                    format!("watch: {MAX_LOST_RUNS} runs in a row could not capture")
                } else {
                    "watch: the first run could not capture".to_string()
                });
            }
        }
        // The next tick on the schedule (start + runs * every), or now if it has passed.
        let next = start + schedule.every.saturating_mul(runs);
        if let Some(until) = schedule.until
            && next.duration_since(start) > until
        {
            break;
        }
        tokio::time::sleep_until(tokio::time::Instant::from_std(next.max(Instant::now()))).await;
    }
    let (mut report, after) = last.context("watch: no run captured")?;
    report.banner = Some(format!(
        "watch: all {runs} runs passed over {}",
        human(start.elapsed())
    ));
    finish(a, &report, &after)
}

fn finish(a: &VerifyArgs, report: &Report, after: &Snapshot) -> anyhow::Result<u8> {
    if let Some(path) = &a.save_after {
        crate::store::write_signed(path, after, a.checks.signing.key()?.as_ref())
            .context("saving the post-migration snapshot")?;
    }
    a.output.emit(report)
}

/// "90s" as "1m30s", "48h", "250ms".
fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_back() {
        use std::time::Duration;
        assert_eq!(super::human(Duration::from_secs(90)), "1m30s");
        assert_eq!(super::human(Duration::from_secs(48 * 3600)), "48h");
        assert_eq!(super::human(Duration::from_millis(250)), "250ms");
    }
}
