//! The "table sizes" section shared by the text, Markdown and HTML reports: one row per table
//! of a sizes check, each part (table, indexes, toast, total) as "before -> after (growth)" in
//! the units `pg_size_pretty` prints, as the DBA's "monitor table sizes" query reads. JSON keeps
//! the exact bytes in the check's values.

use crate::model::{CheckResult, Value, growth_text, pretty_bytes};

/// The parts in the order the section shows them (the values' `metric`).
pub const PARTS: [&str; 4] = ["table", "indexes", "toast", "total"];

/// One table of the section.
pub struct Row {
    pub table: String,
    /// Per part of [`PARTS`]: "before → after (growth)".
    pub cells: Vec<String>,
    pub ok: bool,
}

fn bytes(v: Option<&Value>) -> Option<i64> {
    match v {
        Some(Value::Int(b)) => Some(*b),
        _ => None,
    }
}

/// "before → after (growth)", "(new) → after", "before → (gone)".
pub fn change(before: Option<i64>, after: Option<i64>) -> String {
    match (before, after) {
        (Some(b), Some(a)) => format!(
            "{} → {} ({})",
            pretty_bytes(b),
            pretty_bytes(a),
            growth_text(b, a)
        ),
        (None, Some(a)) => format!("(new) → {}", pretty_bytes(a)),
        (Some(b), None) => format!("{} → (gone)", pretty_bytes(b)),
        (None, None) => "(no storage)".into(),
    }
}

/// The section's rows, in the order the check lists its tables.
pub fn rows(c: &CheckResult) -> Vec<Row> {
    let mut out: Vec<Row> = Vec::new();
    for v in &c.values {
        let table = v.key.join(".");
        let i = match out.iter().position(|r| r.table == table) {
            Some(i) => i,
            None => {
                out.push(Row {
                    table: table.clone(),
                    cells: vec![String::new(); PARTS.len()],
                    ok: true,
                });
                out.len() - 1
            }
        };
        let row = &mut out[i];
        if let Some(p) = PARTS.iter().position(|p| *p == v.metric) {
            row.cells[p] = change(bytes(v.baseline.as_ref()), bytes(v.after.as_ref()));
        }
        row.ok &= v.ok;
    }
    out
}

/// The overview's baseline, after and difference for a sizes check: the totals summed.
pub fn totals(c: &CheckResult) -> (String, String, String) {
    let (mut b, mut a) = (0i64, 0i64);
    for v in c.values.iter().filter(|v| v.metric == "total") {
        b = b.saturating_add(bytes(v.baseline.as_ref()).unwrap_or(0));
        a = a.saturating_add(bytes(v.after.as_ref()).unwrap_or(0));
    }
    (pretty_bytes(b), pretty_bytes(a), growth_text(b, a))
}
