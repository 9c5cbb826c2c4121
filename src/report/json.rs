//! JSON report: the whole [`Report`], every check's SQL included, for machines and audits.

use crate::model::Report;

pub fn render(r: &Report) -> String {
    // Serializing plain data cannot fail; fall back to an error object rather than panic.
    // Each side also says in words what `in_recovery` means ("primary (not in recovery)" or "standby (in
    // recovery)").
    let mut value = serde_json::to_value(r).unwrap_or(serde_json::Value::Null);
    for side in ["baseline", "after"] {
        if let Some(origin) = value.get_mut(side).and_then(|o| o.as_object_mut()) {
            let standby = origin.get("in_recovery") == Some(&serde_json::Value::Bool(true));
            let role = if standby {
                "standby (in recovery)"
            } else {
                "primary (not in recovery)"
            };
            origin.insert("server_role".into(), role.into());
        }
    }
    serde_json::to_string_pretty(&value)
        .unwrap_or_else(|e| format!("{{\"error\":\"cannot serialize the report: {e}\"}}"))
        + "\n"
}
