//! Renderers: one per format, each a pure function from [`Report`] to text. They depend on
//! the model only.

pub mod changes;
pub mod escape;
mod html;
mod json;
mod junit;
mod markdown;
pub mod sizes;
mod terminal;

use crate::model::{Origin, Report, Value};

/// ", standby (in recovery)" for a snapshot read on a hot standby (what it saw may lag the
/// primary), else nothing.
#[must_use]
pub fn standby_note(origin: &Origin) -> &'static str {
    if origin.in_recovery {
        ", standby (in recovery)"
    } else {
        ""
    }
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Tables for a terminal (colour when writing to a terminal).
    Text,
    /// Machine-readable, with every check's SQL, for audit trails.
    Json,
    /// For a change ticket or pull request.
    Markdown,
    /// JUnit XML for CI systems.
    Junit,
    /// One self-contained page for the change board (charts of the worst groups, every SQL).
    Html,
}

/// Render `report`. `color` only affects the text format.
///
/// The formats for people (text, Markdown, JUnit) render a copy whose strings have their
/// control characters written out ([`escape`]): data must not drive the terminal. JSON keeps
/// the exact values.
pub fn render(report: &Report, format: Format, color: bool) -> String {
    match format {
        Format::Json => json::render(report),
        Format::Text => terminal::render(&escape::report(report), color),
        Format::Markdown => markdown::render(&escape::report(report)),
        Format::Junit => junit::render(&escape::report(report)),
        Format::Html => html::render(&escape::report(report)),
    }
}

/// The last line: `VALIDATION PASSED` or `VALIDATION FAILED: k of n checks`.
pub fn verdict_line(report: &Report) -> String {
    let v = &report.verdict;
    if v.passed() {
        let warn = if v.warned > 0 {
            format!(", {} with allowed changes", v.warned)
        } else {
            String::new()
        };
        format!("VALIDATION PASSED ({} checks{warn})", v.total)
    } else {
        let mut s = format!(
            "VALIDATION FAILED: {} of {} checks",
            v.failed + v.errored,
            v.total
        );
        if v.errored > 0 {
            s.push_str(&format!(" ({} could not be evaluated)", v.errored));
        }
        s
    }
}

fn show(v: &Option<Value>) -> String {
    match v {
        None => "(none)".into(),
        Some(v) => v.to_string(),
    }
}
