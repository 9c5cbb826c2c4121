//! `--changes-out FILE`: every differing key of every rows check, one CSV line each, so that
//! a DBA can feed the full list to a repair script (the report shows only the first ones).

use std::path::Path;

use crate::model::Report;

/// Write the CSV; returns how many lines were written (without the header).
pub fn write_csv(report: &Report, path: &Path) -> Result<usize, csv::Error> {
    let mut w = csv::Writer::from_path(path)?;
    w.write_record([
        "check",
        "change",
        "key",
        "baseline_fingerprint",
        "after_fingerprint",
        "allowed",
        "after_values",
    ])?;
    let mut n = 0;
    for c in &report.checks {
        for ch in &c.all_changes {
            let fp = |v: &Option<crate::model::Value>| {
                v.as_ref().map(ToString::to_string).unwrap_or_default()
            };
            let note = c
                .worst
                .iter()
                .find(|w| w.key == ch.key && w.scope == ch.scope)
                .and_then(|w| w.note.clone())
                .or_else(|| ch.note.clone())
                .unwrap_or_default();
            w.write_record([
                c.name.as_str(),
                ch.scope.as_str(),
                &ch.key.join(", "),
                &fp(&ch.baseline),
                &fp(&ch.after),
                if ch.ok { "true" } else { "false" },
                &note,
            ])?;
            n += 1;
        }
    }
    w.flush()?;
    Ok(n)
}
