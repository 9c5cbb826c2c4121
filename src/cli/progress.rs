//! Progress of snapshot, verify and migrate on stderr, rendered from the engine's
//! [`progress`](crate::engine::progress) events. Never on stdout (a JSON report there stays
//! machine-readable); nothing at all under `--quiet`.
//!
//! - On a terminal (indicatif): the phases as they pass, one line per running probe (its
//!   checks, connection, elapsed time) and a bar of the probes done, weighted by the planner's
//!   estimate, with an ETA. Every line is fitted to the terminal's width.
//! - Otherwise (CI, `| tee`, cron): plain lines, one per phase and per finished probe with its
//!   duration, and one every 10 s for each probe still running.
//! - `migrate`: each statement as it starts (file, index, line, text), then its duration; on a
//!   terminal a line with its elapsed time, otherwise a line every 10 s while it runs.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::progress::{self, Event, Installed, Observer};
use crate::report::escape;

/// How often a still-running probe is mentioned when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(10);

/// `--quiet`, for the renderers of their own (backfill's batches).
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, std::sync::atomic::Ordering::Relaxed);
}

/// Whether `--quiet` was given.
pub fn quiet() -> bool {
    QUIET.load(std::sync::atomic::Ordering::Relaxed)
}

/// Start rendering progress for the life of the returned guard.
pub fn start() -> Guard {
    let terminal = std::io::stderr().is_terminal();
    let renderer = Arc::new(Renderer {
        state: Mutex::new(State::default()),
        bars: terminal.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
    });
    let ticker = (!terminal).then(|| {
        let (stop, stopped) = mpsc::channel::<()>();
        let r = renderer.clone();
        let thread = std::thread::spawn(move || {
            // Ends when the guard drops the sender.
            while let Err(mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(Duration::from_millis(500))
            {
                r.still_running();
            }
        });
        (stop, thread)
    });
    let installed = progress::observe(renderer.clone());
    Guard {
        _installed: installed,
        renderer,
        ticker,
    }
}

/// Stops the rendering (and clears the terminal's bars) when dropped.
pub struct Guard {
    _installed: Installed,
    renderer: Arc<Renderer>,
    ticker: Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.ticker.take() {
            drop(stop);
            let _ = thread.join();
        }
        self.renderer.clear();
    }
}

#[derive(Default)]
struct State {
    /// Checks and weight of each probe, from `Planned`.
    probes: Vec<(String, f64)>,
    total_weight: f64,
    done: usize,
    done_weight: f64,
    /// Running probes: started, last plain line, their terminal line.
    running: BTreeMap<(usize, usize), Running>,
    bar: Option<ProgressBar>,
    phase: Option<ProgressBar>,
    /// The migration statement running, if any.
    statement: Option<Running>,
    /// Its place and text.
    statement_label: String,
}

struct Running {
    started: Instant,
    mentioned: Instant,
    line: Option<ProgressBar>,
}

struct Renderer {
    state: Mutex<State>,
    /// `Some` on a terminal.
    bars: Option<MultiProgress>,
}

/// Weights as bar positions: the planner's cost units, at least 1 a probe.
fn units(w: f64) -> u64 {
    // Saturating float-to-int conversion; weights are positive and far below u64::MAX.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let u = w.round().max(1.0) as u64;
    u
}

impl State {
    fn name(&self, probe: usize) -> String {
        self.probes.get(probe).map_or_else(
            || format!("probe {}", probe + 1),
            |(n, _)| format!("`{}`", escape::line(n)),
        )
    }

    fn count(&self) -> String {
        if self.probes.is_empty() {
            format!("{}", self.done)
        } else {
            format!("{} of {}", self.done, self.probes.len())
        }
    }
}

impl Observer for Renderer {
    fn event(&self, event: &Event) {
        let Ok(mut s) = self.state.lock() else { return };
        match event {
            Event::Phase(name) => self.phase(&mut s, name),
            Event::Finished => {
                drop(s);
                self.clear();
            }
            Event::StatementStarted { place, sql } => {
                let now = Instant::now();
                let label = format!("{}: {}", escape::line(place), escape::line(sql));
                let line = match &self.bars {
                    Some(m) => {
                        let line = m.add(ProgressBar::new_spinner());
                        line.set_style(
                            ProgressStyle::with_template("  {elapsed:>4} {wide_msg}")
                                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                        );
                        line.set_message(label.clone());
                        line.enable_steady_tick(Duration::from_millis(250));
                        Some(line)
                    }
                    None => {
                        eprintln!("{label}");
                        None
                    }
                };
                if let Some(old) = s.statement.replace(Running {
                    started: now,
                    mentioned: now,
                    line,
                }) && let Some(l) = old.line
                {
                    l.finish_and_clear();
                }
                s.statement_label = label;
            }
            Event::StatementFinished { elapsed, ok } => {
                if let Some(r) = s.statement.take()
                    && let Some(l) = r.line
                {
                    l.finish_and_clear();
                }
                if self.bars.is_none() {
                    eprintln!(
                        "  {} in {:.3} s",
                        if *ok { "done" } else { "failed" },
                        elapsed.as_secs_f64()
                    );
                }
            }
            Event::Planned { probes } => {
                s.total_weight = probes.iter().map(|(_, w)| w.max(1.0)).sum();
                s.probes = probes.clone();
                s.done = 0;
                s.done_weight = 0.0;
                if let Some(m) = &self.bars {
                    let bar = m.add(ProgressBar::new(units(s.total_weight)));
                    bar.set_style(
                        ProgressStyle::with_template("{wide_bar} {percent:>3}% {msg} ETA {eta}")
                            .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    bar.set_message(format!("probes {}", s.count()));
                    if let Some(old) = s.bar.replace(bar) {
                        old.finish_and_clear();
                    }
                }
            }
            Event::ProbeStarted { probe, connection } => {
                let now = Instant::now();
                let line = self.bars.as_ref().map(|m| {
                    let line = m.add(ProgressBar::new_spinner());
                    line.set_style(
                        ProgressStyle::with_template("  {elapsed:>4} {wide_msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    line.set_message(format!("connection {connection}: {}", s.name(*probe)));
                    line.enable_steady_tick(Duration::from_millis(250));
                    line
                });
                s.running.insert(
                    (*probe, *connection),
                    Running {
                        started: now,
                        mentioned: now,
                        line,
                    },
                );
            }
            Event::ProbeFinished {
                probe,
                connection,
                elapsed,
                ok,
            } => {
                if let Some(r) = s.running.remove(&(*probe, *connection))
                    && let Some(line) = r.line
                {
                    line.finish_and_clear();
                }
                s.done += 1;
                let w = s.probes.get(*probe).map_or(1.0, |(_, w)| w.max(1.0));
                s.done_weight += w;
                let name = s.name(*probe);
                let count = s.count();
                match &s.bar {
                    // The capture is over: clear its lines before the next step prints.
                    Some(_) if s.done >= s.probes.len() && s.running.is_empty() => {
                        drop(s);
                        self.clear();
                    }
                    Some(bar) => {
                        bar.set_position(units(s.done_weight).min(units(s.total_weight)));
                        bar.set_message(format!("probes {count}"));
                    }
                    None if self.bars.is_none() => eprintln!(
                        "probe {count} {} in {:.3} s: {name} on connection {connection}",
                        if *ok { "done" } else { "ended with an error" },
                        elapsed.as_secs_f64()
                    ),
                    None => {}
                }
            }
        }
    }
}

impl Renderer {
    fn phase(&self, s: &mut State, name: &str) {
        match &self.bars {
            Some(m) => {
                let line = s.phase.get_or_insert_with(|| {
                    let line = m.insert(0, ProgressBar::new_spinner());
                    line.set_style(
                        ProgressStyle::with_template("{spinner} {wide_msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    line.enable_steady_tick(Duration::from_millis(120));
                    line
                });
                line.set_message(name.to_string());
            }
            None => eprintln!("phase: {name}"),
        }
        if name != "probes" {
            // A new capture (or the next step after one): the bar of the last one is done.
            if let Some(bar) = s.bar.take() {
                bar.finish_and_clear();
            }
        }
    }

    /// Plain mode: a line for each probe running for another 10 s.
    fn still_running(&self) {
        let Ok(mut s) = self.state.lock() else { return };
        let now = Instant::now();
        let mut lines = Vec::new();
        for (&(probe, connection), r) in &s.running {
            if now.duration_since(r.mentioned) >= PLAIN_EVERY {
                lines.push((probe, connection, now.duration_since(r.started)));
            }
        }
        if let Some(r) = &mut s.statement
            && now.duration_since(r.mentioned) >= PLAIN_EVERY
        {
            r.mentioned = now;
            let secs = now.duration_since(r.started).as_secs();
            eprintln!("  still running after {secs} s: {}", s.statement_label);
        }
        for (probe, connection, elapsed) in lines {
            eprintln!(
                "probe still running after {} s: {} on connection {connection}",
                elapsed.as_secs(),
                s.name(probe)
            );
            if let Some(r) = s.running.get_mut(&(probe, connection)) {
                r.mentioned = now;
            }
        }
    }

    fn clear(&self) {
        if let Ok(mut s) = self.state.lock() {
            for (_, r) in std::mem::take(&mut s.running) {
                if let Some(line) = r.line {
                    line.finish_and_clear();
                }
            }
            if let Some(bar) = s.bar.take() {
                bar.finish_and_clear();
            }
            if let Some(p) = s.phase.take() {
                p.finish_and_clear();
            }
            if let Some(line) = s.statement.take().and_then(|r| r.line) {
                line.finish_and_clear();
            }
        }
        if let Some(m) = &self.bars {
            let _ = m.clear();
        }
    }
}
