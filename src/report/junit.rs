//! JUnit XML: one test case per check; FAIL is a <failure>, ERROR an <error>, WARN passes with
//! the change in <system-out>.

use crate::model::{BackfillOutcome, Report, Status};

pub(super) fn xml(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .collect::<String>()
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

pub fn render(r: &Report) -> String {
    let v = &r.verdict;
    let seconds = |ms: u64| format!("{}.{:03}", ms / 1000, ms % 1000);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites name=\"migval\" tests=\"{}\" failures=\"{}\" errors=\"{}\">\n",
        v.total, v.failed, v.errored
    ));
    out.push_str(&format!(
        "  <testsuite name=\"migval {} {}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"0\" time=\"{}\">\n",
        xml(&r.command),
        xml(&r.spec_path),
        v.total,
        v.failed,
        v.errored,
        seconds(r.after.duration_ms)
    ));
    let mut properties: Vec<(&str, String)> = Vec::new();
    if let Some(b) = &r.backup {
        properties.push(("backup", b.file.clone()));
        properties.push(("backup_bytes", b.bytes.to_string()));
    }
    if let Some(b) = &r.backfill {
        properties.extend(backfill(b));
    }
    if !properties.is_empty() {
        out.push_str("    <properties>");
        for (name, value) in &properties {
            out.push_str(&format!(
                "<property name=\"{name}\" value=\"{}\"/>",
                xml(value)
            ));
        }
        out.push_str("</properties>\n");
    }
    for c in &r.checks {
        out.push_str(&format!(
            "    <testcase classname=\"migval.{}\" name=\"{}\">\n",
            xml(&c.kind.as_str().replace(' ', "_")),
            xml(&c.name)
        ));
        // Which reading was applied (per group / on the total / both), for every check.
        if !c.tolerance.is_empty() {
            out.push_str(&format!(
                "      <properties><property name=\"tolerance\" value=\"{}\"/><property name=\"expect\" value=\"{}\"/></properties>\n",
                xml(&c.tolerance),
                xml(&c.expect)
            ));
        }
        match c.status {
            Status::Fail => out.push_str(&format!(
                "      <failure message=\"{}\">{}</failure>\n",
                xml(&c.summary),
                xml(&format!(
                    "tolerance: {}\nexpect: {}\nSQL:\n{}",
                    c.tolerance,
                    c.expect,
                    c.after_sql.join("\n")
                ))
            )),
            Status::Error => out.push_str(&format!(
                "      <error message=\"{}\">{}</error>\n",
                xml(&c.summary),
                xml(&c
                    .error
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default())
            )),
            Status::Warn => out.push_str(&format!(
                "      <system-out>{}</system-out>\n",
                xml(&c.summary)
            )),
            Status::Pass => {}
        }
        out.push_str("    </testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// What `migval backfill` did before the checks, as testsuite properties (`backfill_*`).
pub(super) fn backfill(b: &BackfillOutcome) -> Vec<(&'static str, String)> {
    let c = &b.counters;
    let mut p = vec![
        ("backfill", b.backfill.clone()),
        ("backfill_table", b.table.clone()),
    ];
    if let Some(run) = b.run_id {
        p.push(("backfill_run_id", run.to_string()));
    }
    p.extend([
        ("backfill_end", b.end().to_string()),
        ("backfill_committed", b.committed.to_string()),
        ("backfill_batches", c.batches.to_string()),
        ("backfill_checked", c.checked.to_string()),
        ("backfill_updated", c.updated.to_string()),
        ("backfill_already_done", c.already_done.to_string()),
        ("backfill_no_match", c.no_match.to_string()),
        ("backfill_ambiguous", c.ambiguous.to_string()),
        ("backfill_errors", c.errors.to_string()),
        ("backfill_new_since_start", b.new_since_start.to_string()),
    ]);
    p
}
