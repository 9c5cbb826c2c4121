//! `--changes-out FILE`: every differing value of every check, one line each (the report shows
//! only the worst ones), so that a DBA can feed the full list to a spreadsheet or a repair
//! script. CSV always; Parquet when built with the `parquet` feature (through polars).
//!
//! One line per differing value: a rows check's changed, appeared and disappeared keys, a
//! grouped check's differing groups (one line per group and metric), and the ungrouped values,
//! totals and schema facts whose baseline and post-state differ or whose rule fails. Values
//! are written as text, exactly as captured (NUMERIC keeps every digit; never a float), with
//! NULL as `NULL` and a side that has no value (a group that appeared) left empty.

use std::path::Path;

use crate::model::{CheckResult, Comparison, Report, Value, ValueScope};

/// The columns, in file order.
pub const COLUMNS: [&str; 10] = [
    "check",
    "scope",
    "key",
    "metric",
    "baseline",
    "after",
    "difference",
    "rule",
    "ok",
    "note",
];

/// One line of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub check: String,
    /// "value", "total", "group", "changed", "appeared", "disappeared", or a schema change.
    pub scope: ValueScope,
    /// The key: its value for a one-column key, a JSON array of the values for a composite key
    /// (a value holding ", " cannot pass for two), empty for ungrouped values and totals.
    pub key: String,
    pub metric: String,
    /// `None`: this side has no value (not the same as NULL, which is `Some("NULL")`).
    pub baseline: Option<String>,
    pub after: Option<String>,
    pub difference: Option<String>,
    pub rule: String,
    pub ok: bool,
    /// Why it failed; for a rows check, the post-migration values when the report read them.
    pub note: Option<String>,
}

/// Why the file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ChangesError {
    #[error(transparent)]
    Csv(#[from] csv::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[cfg(feature = "parquet")]
    #[error("Parquet: {0}")]
    Parquet(#[from] polars::error::PolarsError),
    #[error(
        "{0}: writing Parquet needs migval built with the `parquet` feature \
         (cargo install --path . --features parquet); write a .csv file instead"
    )]
    ParquetNotBuilt(String),
}

/// Whether `path` names a Parquet file (by its extension).
#[must_use]
pub fn is_parquet(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

/// Every differing value of `report`, in check order.
#[must_use]
pub fn collect(report: &Report) -> Vec<Change> {
    let mut out = Vec::new();
    for c in &report.checks {
        for v in c.values.iter().filter(|v| differs(v)) {
            out.push(line(c, v));
        }
        for ch in &c.all_changes {
            out.push(line(c, ch));
        }
    }
    out
}

/// Write the file (CSV, or Parquet for a `.parquet` path); returns how many lines were written.
pub fn write(report: &Report, path: &Path) -> Result<usize, ChangesError> {
    let changes = collect(report);
    if is_parquet(path) {
        write_parquet(&changes, path)?;
    } else {
        write_csv(&changes, path)?;
    }
    Ok(changes.len())
}

fn write_csv(changes: &[Change], path: &Path) -> Result<(), ChangesError> {
    let mut w = csv::Writer::from_path(path)?;
    w.write_record(COLUMNS)?;
    for c in changes {
        let o = |v: &Option<String>| v.clone().unwrap_or_default();
        w.write_record([
            c.check.as_str(),
            c.scope.as_str(),
            &c.key,
            &c.metric,
            &o(&c.baseline),
            &o(&c.after),
            &o(&c.difference),
            &c.rule,
            if c.ok { "true" } else { "false" },
            &o(&c.note),
        ])?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(not(feature = "parquet"))]
fn write_parquet(_: &[Change], path: &Path) -> Result<(), ChangesError> {
    Err(ChangesError::ParquetNotBuilt(path.display().to_string()))
}

/// Text columns (nullable where a side may have no value) and a boolean `ok`: the values keep
/// every digit, whatever their type in the database.
#[cfg(feature = "parquet")]
fn write_parquet(changes: &[Change], path: &Path) -> Result<(), ChangesError> {
    use polars::prelude::*;
    let text = |name: &str, f: &dyn Fn(&Change) -> Option<&str>| {
        Column::new(name.into(), changes.iter().map(f).collect::<Vec<_>>())
    };
    let mut df = DataFrame::new_infer_height(vec![
        text("check", &|c| Some(c.check.as_str())),
        text("scope", &|c| Some(c.scope.as_str())),
        text("key", &|c| Some(c.key.as_str())),
        text("metric", &|c| Some(c.metric.as_str())),
        text("baseline", &|c| c.baseline.as_deref()),
        text("after", &|c| c.after.as_deref()),
        text("difference", &|c| c.difference.as_deref()),
        text("rule", &|c| Some(c.rule.as_str())),
        Column::new(
            "ok".into(),
            changes.iter().map(|c| c.ok).collect::<Vec<_>>(),
        ),
        text("note", &|c| c.note.as_deref()),
    ])?;
    let file = std::fs::File::create(path)?;
    ParquetWriter::new(file).finish(&mut df)?;
    Ok(())
}

/// A value whose two sides differ, or whose rule fails.
fn differs(v: &Comparison) -> bool {
    !v.ok
        || match (&v.baseline, &v.after) {
            (Some(b), Some(a)) => !b.same(a),
            (None, None) => false,
            _ => true,
        }
}

/// The key in one cell: see [`Change::key`].
fn key_cell(key: &[String]) -> String {
    match key {
        [] => String::new(),
        [one] => one.clone(),
        many => serde_json::to_string(many).unwrap_or_else(|_| many.join(", ")),
    }
}

fn line(c: &CheckResult, v: &Comparison) -> Change {
    let text = |x: &Option<Value>| x.as_ref().map(ToString::to_string);
    // A rows check's report carries the post-migration values of the keys it lists.
    let note = c
        .worst
        .iter()
        .find(|w| w.key == v.key && w.scope == v.scope && w.metric == v.metric)
        .and_then(|w| w.note.clone())
        .or_else(|| v.note.clone());
    Change {
        check: c.name.clone(),
        scope: v.scope,
        key: key_cell(&v.key),
        metric: v.metric.clone(),
        baseline: text(&v.baseline),
        after: text(&v.after),
        difference: v.difference.clone(),
        rule: v.rule.clone(),
        ok: v.ok,
        note,
    }
}
