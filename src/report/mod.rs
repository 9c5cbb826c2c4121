//! Renderers: one per format, each a pure function from [`Report`] to text. They depend on
//! the model only.

pub mod backfill;
pub mod changes;
pub mod escape;
mod fit;
#[cfg(test)]
mod golden;
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
        Format::Text => terminal::render(&escape::report(report), color, None),
        Format::Markdown => markdown::render(&escape::report(report)),
        Format::Junit => junit::render(&escape::report(report)),
        Format::Html => html::render(&escape::report(report)),
    }
}

/// The text report fitted to `width` columns (`None`: tables at their natural width). A check
/// name is never cut; a table too wide even with its long columns wrapped becomes one block
/// per row.
pub fn render_text(report: &Report, color: bool, width: Option<usize>) -> String {
    terminal::render(&escape::report(report), color, width)
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

/// A value for reading (text and Markdown): numbers with their thousands grouped
/// (`1,234,567.8900`, every digit kept); JSON keeps the plain digits.
fn readable(v: &Option<Value>) -> String {
    match v {
        Some(Value::Int(_) | Value::Dec(_) | Value::BigNum(_)) => grouped(&show(v)),
        _ => show(v),
    }
}

fn grouped(text: &str) -> String {
    crate::model::grouped_digits(text)
}

/// A count for reading: `1,234,567`.
fn count(n: usize) -> String {
    grouped(&n.to_string())
}

fn show(v: &Option<Value>) -> String {
    match v {
        None => "(none)".into(),
        Some(v) => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::grouped;

    #[test]
    fn big_numbers_are_grouped_and_keep_every_digit() {
        assert_eq!(grouped("999"), "999");
        assert_eq!(grouped("1000"), "1,000");
        assert_eq!(grouped("-1234567.8900"), "-1,234,567.8900");
        assert_eq!(grouped("123456789012345.6789"), "123,456,789,012,345.6789");
        assert_eq!(grouped("NaN"), "NaN");
        assert_eq!(grouped("1e5"), "1e5");
        assert_eq!(grouped("acct-12345"), "acct-12345");
    }
}
