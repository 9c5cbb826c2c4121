//! Opt-in timing lines on standard error, to see where a run spends its time.
//!
//! `MIGVAL_TRACE=1 migval verify ...` prints one line per phase and per probe (which connection
//! ran it, when it started, how long it took). Off by default; costs one atomic load when off.

// Tracing is, by design, lines on standard error.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::OnceLock;
use std::time::Instant;

static STATE: OnceLock<Option<Instant>> = OnceLock::new();

/// Whether `MIGVAL_TRACE` is set (to anything but empty or `0`).
pub fn enabled() -> bool {
    STATE
        .get_or_init(|| {
            let on = std::env::var("MIGVAL_TRACE").is_ok_and(|v| !v.is_empty() && v != "0");
            on.then(Instant::now)
        })
        .is_some()
}

/// Print `msg` with the time since tracing started. Use the [`trace!`](crate::trace!) macro.
pub fn line(msg: std::fmt::Arguments<'_>) {
    if let Some(Some(start)) = STATE.get() {
        eprintln!("[trace {:>8.3}s] {msg}", start.elapsed().as_secs_f64());
    }
}

/// `trace!("probe {i} done")`: a timing line when `MIGVAL_TRACE` is set, nothing otherwise.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => {
        if $crate::trace::enabled() {
            $crate::trace::line(format_args!($($arg)*));
        }
    };
}
