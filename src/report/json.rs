//! JSON report: the whole [`Report`], every check's SQL included, for machines and audits.

use crate::model::Report;

pub fn render(r: &Report) -> String {
    // Serializing plain data cannot fail; fall back to an error object rather than panic.
    serde_json::to_string_pretty(r)
        .unwrap_or_else(|e| format!("{{\"error\":\"cannot serialize the report: {e}\"}}"))
        + "\n"
}
