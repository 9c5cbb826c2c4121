//! The HTML report, for the change-approval board: one self-contained file (no script, font
//! or stylesheet from elsewhere; it opens offline from a ticket). Verdict banner, run facts,
//! the table of checks in status colours, for every grouped or rows check that did not pass a
//! chart of its worst groups (inline SVG: one bar per listed group, its length the absolute
//! difference), the schema changes, and every check's SQL in a collapsible block.

use std::fmt::Write as _;

use rust_decimal::Decimal;

use super::{show, verdict_line};
use crate::model::{
    CheckResult, Comparison, Origin, Report, ResultKind, Status, Value, ValueScope,
};

/// Text for an HTML text node or a quoted attribute.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters from data are shown, never interpreted.
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn status_class(s: Status) -> &'static str {
    match s {
        Status::Pass => "pass",
        Status::Warn => "warn",
        Status::Fail => "fail",
        Status::Error => "error",
    }
}

const STYLE: &str = "
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 0 16px 40px; color: #1d2330; }
header.verdict { padding: 18px 22px; margin: 16px 0; border-radius: 6px; font-size: 22px; font-weight: 700; color: #fff; }
header.verdict.pass { background: #1d7f3c; } header.verdict.fail { background: #b42318; }
.banner { font-weight: 600; margin: 0 0 12px; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 18px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #e3e6ec; vertical-align: top; }
th { background: #f4f6f9; }
td.status { font-weight: 700; white-space: nowrap; }
tr.pass td.status { color: #1d7f3c; } tr.warn td.status { color: #a15c00; }
tr.fail td.status { color: #b42318; } tr.error td.status { color: #7a1fa2; }
tr.fail, tr.error { background: #fff4f2; } tr.warn { background: #fffaf0; }
article.check { border: 1px solid #e3e6ec; border-radius: 6px; padding: 10px 16px; margin: 14px 0; }
article.check h3 { margin: 4px 0 6px; }
svg.chart { max-width: 100%; height: auto; } svg.chart text { font-size: 12px; fill: #1d2330; }
svg.chart rect.up { fill: #b42318; } svg.chart rect.down { fill: #2f6fbf; } svg.chart rect.other { fill: #8a93a6; }
pre { background: #f4f6f9; padding: 8px; overflow-x: auto; white-space: pre-wrap; }
code { font-family: ui-monospace, monospace; }
";

pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let verdict = verdict_line(r);
    let class = if r.verdict.passed() { "pass" } else { "fail" };
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>migval {}: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        esc(&r.command),
        esc(&verdict)
    );
    let _ = writeln!(
        out,
        "<header class=\"verdict {class}\" id=\"verdict\">{}</header>",
        esc(&verdict)
    );
    if let Some(b) = &r.banner {
        let _ = writeln!(out, "<p class=\"banner\">{}</p>", esc(b));
    }
    facts(&mut out, r);
    let _ = writeln!(
        out,
        "<h2>Checks</h2>\n<table class=\"checks\" id=\"checks\">\n<tr><th>status</th><th>check</th><th>kind</th><th>tolerance</th><th>result</th></tr>"
    );
    for (i, c) in r.checks.iter().enumerate() {
        let name = if c.status == Status::Pass {
            esc(&c.name)
        } else {
            format!("<a href=\"#check-{i}\">{}</a>", esc(&c.name))
        };
        let summary = if c.after_only {
            format!("baseline: (new); {}", c.summary)
        } else {
            c.summary.clone()
        };
        let _ = writeln!(
            out,
            "<tr class=\"{}\"><td class=\"status\">{}</td><td class=\"name\">{name}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            status_class(c.status),
            c.status,
            esc(c.kind.as_str()),
            esc(&c.tolerance),
            esc(&summary)
        );
    }
    out.push_str("</table>\n");
    for c in r
        .checks
        .iter()
        .filter(|c| c.kind == ResultKind::SchemaDiff && !c.values.is_empty())
    {
        schema_changes(&mut out, c);
    }
    for (i, c) in r
        .checks
        .iter()
        .enumerate()
        .filter(|(_, c)| c.kind == ResultKind::Sizes)
    {
        table_sizes(&mut out, i, c);
    }
    for (i, c) in r.checks.iter().enumerate() {
        if c.status != Status::Pass && c.kind != ResultKind::SchemaDiff {
            detail(&mut out, i, c);
        }
    }
    out.push_str("<h2>SQL of every check</h2>\n");
    for c in &r.checks {
        if c.baseline_sql.is_empty() && c.after_sql.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "<details class=\"sql\"><summary>{}</summary><h4>baseline</h4><pre><code>{}</code></pre><h4>after</h4><pre><code>{}</code></pre></details>",
            esc(&c.name),
            esc(&c.baseline_sql.join(";\n\n")),
            esc(&c.after_sql.join(";\n\n"))
        );
    }
    out.push_str("</body>\n</html>\n");
    out
}

fn origin_row(out: &mut String, label: &str, o: &Origin) {
    let standby = if o.in_recovery {
        " (standby, in recovery)"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "<tr><th>{label}</th><td><code>{}</code>{standby}, database <code>{}</code>, {} UTC, snapshot <code>{}</code>, LSN <code>{}</code>, PostgreSQL {}, {} ms on {} connection(s)</td></tr>",
        esc(&o.target),
        esc(&o.database),
        esc(&o.captured_at),
        esc(&o.snapshot_id),
        esc(&o.lsn),
        esc(&o.server_version),
        o.duration_ms,
        o.connections
    );
}

fn facts(out: &mut String, r: &Report) {
    out.push_str("<h2>Run</h2>\n<table class=\"facts\" id=\"facts\">\n");
    let _ = writeln!(
        out,
        "<tr><th>spec</th><td><code>{}</code></td></tr>",
        esc(&r.spec_path)
    );
    origin_row(out, "baseline", &r.baseline);
    origin_row(out, "after", &r.after);
    if let Some(b) = &r.backup {
        let _ = writeln!(
            out,
            "<tr><th>backup</th><td>{}</td></tr>",
            esc(&b.describe())
        );
    }
    if let Some(b) = &r.backfill {
        let _ = writeln!(
            out,
            "<tr><th>backfill</th><td>{}</td></tr>",
            esc(&super::backfill::describe(b))
        );
    }
    for (o, n) in &r.renames {
        let _ = writeln!(
            out,
            "<tr><th>rename</th><td><code>{}</code> → <code>{}</code></td></tr>",
            esc(o),
            esc(n)
        );
    }
    for s in &r.spec_changes {
        let _ = writeln!(out, "<tr><th>spec change</th><td>{}</td></tr>", esc(s));
    }
    if let Some(m) = &r.migration {
        let _ = writeln!(
            out,
            "<tr><th>migration</th><td><code>{}</code>: {}</td></tr>",
            esc(&m.script),
            esc(&m.mode)
        );
        for l in &m.locks {
            let _ = writeln!(
                out,
                "<tr><th>lock</th><td>{} on <code>{}</code> held {} ms</td></tr>",
                esc(&l.mode),
                esc(&l.relation),
                l.held_ms
            );
        }
    }
    out.push_str("</table>\n");
}

fn schema_changes(out: &mut String, c: &CheckResult) {
    let _ = writeln!(
        out,
        "<h2>Schema changes</h2>\n<p>{}</p>\n<table class=\"schema\" id=\"schema-changes\"><tr><th>ok</th><th>change</th><th>object</th><th>what</th><th>before</th><th>after</th><th>declared by</th></tr>",
        esc(&c.summary)
    );
    for v in &c.values {
        let _ = writeln!(
            out,
            "<tr class=\"{}\"><td class=\"status\">{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if v.ok { "pass" } else { "fail" },
            if v.ok { "yes" } else { "no" },
            esc(v.scope.as_str()),
            esc(&v.key.join(" ")),
            esc(&v.metric),
            esc(&show(&v.baseline)),
            esc(&show(&v.after)),
            esc(&v.rule)
        );
    }
    out.push_str("</table>\n");
}

/// A sizes check, one row per table, in human units (as pg_size_pretty prints them).
fn table_sizes(out: &mut String, i: usize, c: &CheckResult) {
    let _ = writeln!(
        out,
        "<h2>Table sizes — {}</h2>\n<p>{} ({})</p>\n<table class=\"sizes\" id=\"sizes-{i}\"><tr><th>ok</th><th>table</th>{}</tr>",
        esc(&c.name),
        esc(&c.summary),
        esc(&c.expect),
        super::sizes::PARTS
            .iter()
            .map(|p| format!("<th>{p}</th>"))
            .collect::<String>()
    );
    for row in super::sizes::rows(c) {
        let _ = writeln!(
            out,
            "<tr class=\"{}\"><td class=\"status\">{}</td><td><code>{}</code></td>{}</tr>",
            if row.ok { "pass" } else { "fail" },
            if row.ok { "yes" } else { "no" },
            esc(&row.table),
            row.cells
                .iter()
                .map(|x| format!("<td>{}</td>", esc(x)))
                .collect::<String>()
        );
    }
    out.push_str("</table>\n");
}

fn detail(out: &mut String, i: usize, c: &CheckResult) {
    let _ = writeln!(
        out,
        "<article class=\"check {}\" id=\"check-{i}\">\n<h3>{} — {}</h3>\n<p>{}</p>",
        status_class(c.status),
        c.status,
        esc(&c.name),
        esc(&c.summary)
    );
    if let Some(e) = &c.error {
        let _ = writeln!(out, "<pre class=\"error\">{}</pre>", esc(&e.to_string()));
    }
    let rows: Vec<&Comparison> = c
        .values
        .iter()
        .filter(|v| !v.ok || v.scope == ValueScope::Total)
        .collect();
    if !rows.is_empty() {
        out.push_str("<table class=\"values\"><tr><th>value</th><th>scope</th><th>baseline</th><th>after</th><th>difference</th><th>rule</th><th>ok</th></tr>\n");
        for v in rows {
            let _ = writeln!(
                out,
                "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                if v.ok { "pass" } else { "fail" },
                esc(&v.metric),
                esc(v.scope.as_str()),
                esc(&show(&v.baseline)),
                esc(&show(&v.after)),
                esc(v.difference.as_deref().unwrap_or("")),
                esc(&v.rule),
                if v.ok { "yes" } else { "no" }
            );
        }
        out.push_str("</table>\n");
    }
    if !c.worst.is_empty() {
        chart(out, c);
        out.push_str("<table class=\"worst\"><tr><th>group</th><th>value</th><th>baseline</th><th>after</th><th>difference</th><th>change</th><th>note</th></tr>\n");
        for w in &c.worst {
            let _ = writeln!(
                out,
                "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                if w.ok { "pass" } else { "fail" },
                esc(&w.key.join(", ")),
                esc(&w.metric),
                esc(&show(&w.baseline)),
                esc(&show(&w.after)),
                esc(w.difference.as_deref().unwrap_or("")),
                esc(w.scope.as_str()),
                esc(w.note.as_deref().unwrap_or(""))
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str("</article>\n");
}

/// One horizontal bar per listed group: its length the absolute difference (or the value
/// itself for a group on one side only, or a fixed length for a row whose fingerprint
/// changed), red for an increase, blue for a decrease, grey otherwise.
fn chart(out: &mut String, c: &CheckResult) {
    let magnitude = |w: &Comparison| -> Option<Decimal> {
        if let Some(d) = w
            .difference
            .as_deref()
            .and_then(|d| d.parse::<Decimal>().ok())
        {
            return Some(d);
        }
        w.after
            .as_ref()
            .or(w.baseline.as_ref())
            .and_then(Value::as_decimal)
    };
    let mags: Vec<Option<Decimal>> = c.worst.iter().map(magnitude).collect();
    let max = mags
        .iter()
        .flatten()
        .map(|d| d.abs())
        .max()
        .filter(|m| !m.is_zero())
        .unwrap_or(Decimal::ONE);
    let (label_w, bar_w, row_h) = (260usize, 640usize, 22usize);
    let height = row_h * c.worst.len() + 8;
    let _ = writeln!(
        out,
        "<svg class=\"chart\" role=\"img\" aria-label=\"worst groups of {}\" width=\"{}\" height=\"{height}\" viewBox=\"0 0 {} {height}\" xmlns=\"http://www.w3.org/2000/svg\">",
        esc(&c.name),
        label_w + bar_w + 120,
        label_w + bar_w + 120
    );
    for (i, (w, m)) in c.worst.iter().zip(&mags).enumerate() {
        let y = i * row_h + 4;
        // The bar's length: its share of the largest magnitude, at least 2 px.
        let scaled = |d: &Decimal| {
            let frac = (d.abs() / max).min(Decimal::ONE);
            (frac * Decimal::from(bar_w))
                .round()
                .to_string()
                .parse::<usize>()
                .unwrap_or(0)
                .max(2)
        };
        let (len, class) = match m {
            Some(d) if w.difference.is_some() => {
                (scaled(d), if d.is_sign_negative() { "down" } else { "up" })
            }
            Some(d) => (scaled(d), "other"),
            None => (bar_w / 4, "other"),
        };
        let label = format!("{} {}", w.key.join(", "), w.metric);
        let value = w.difference.clone().unwrap_or_else(|| w.scope.to_string());
        let _ = writeln!(
            out,
            "<g class=\"bar\" data-key=\"{}\"><text x=\"0\" y=\"{}\">{}</text><rect class=\"{class}\" x=\"{label_w}\" y=\"{y}\" width=\"{len}\" height=\"{}\"/><text x=\"{}\" y=\"{}\">{}</text></g>",
            esc(&w.key.join(", ")),
            y + 15,
            esc(&label),
            row_h - 6,
            label_w + len + 6,
            y + 15,
            esc(&value)
        );
    }
    out.push_str("</svg>\n");
}
