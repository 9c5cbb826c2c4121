//! The terminal report: a header saying what was compared, one row per check, details for
//! every check that did not pass (values, worst groups, the server's error), and the verdict.

use tabled::builder::Builder;
use tabled::settings::Style;

use super::{show, verdict_line};
use crate::engine::schema_diff::KIND as SCHEMA_DIFF;
use crate::model::{CheckResult, Report, Status};

fn paint(text: &str, status: Status, color: bool) -> String {
    if !color {
        return text.to_string();
    }
    let code = match status {
        Status::Pass => "32",
        Status::Warn => "33",
        Status::Fail => "31",
        Status::Error => "35",
    };
    format!("\x1b[1;{code}m{text}\x1b[0m")
}

fn cell(text: &str, max: usize) -> String {
    let one_line = text.replace('\n', " ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// Baseline / after / difference for the overview row; an after-only check's baseline reads
/// "(new)".
fn overview(c: &CheckResult) -> (String, String, String) {
    let (base, after, diff) = overview_values(c);
    if c.after_only {
        return ("(new)".into(), after, String::new());
    }
    (base, after, diff)
}

fn overview_values(c: &CheckResult) -> (String, String, String) {
    if c.kind == SCHEMA_DIFF {
        let n = c.values.iter().filter(|v| v.scope != "missing").count();
        return (
            String::new(),
            String::new(),
            format!("{n} change{}", if n == 1 { "" } else { "s" }),
        );
    }
    if c.kind == super::sizes::KIND {
        return super::sizes::totals(c);
    }
    if let Some(g) = &c.groups {
        return (
            format!("{} groups", g.baseline_groups),
            format!("{} groups", g.after_groups),
            format!("{} changed", g.changed),
        );
    }
    match c.values.as_slice() {
        [one] => (
            show(&one.baseline),
            show(&one.after),
            one.difference.clone().unwrap_or_default(),
        ),
        [] => (String::new(), String::new(), String::new()),
        many => {
            let changed = many
                .iter()
                .filter(|v| {
                    v.baseline
                        .as_ref()
                        .zip(v.after.as_ref())
                        .is_none_or(|(b, a)| !b.same(a))
                })
                .count();
            (
                format!("{} values", many.len()),
                format!("{} values", many.len()),
                format!("{changed} changed"),
            )
        }
    }
}

pub fn render(r: &Report, color: bool) -> String {
    let mut out = String::new();
    if let Some(b) = &r.banner {
        out.push_str(&format!("== {b} ==\n"));
    }
    out.push_str(&format!("migval {} — spec {}\n", r.command, r.spec_path));
    out.push_str(&format!(
        "  baseline: {} db {}{} at {} (snapshot {}, lsn {})\n",
        r.baseline.target,
        super::standby_note(&r.baseline),
        r.baseline.database,
        r.baseline.captured_at,
        r.baseline.snapshot_id,
        r.baseline.lsn
    ));
    out.push_str(&format!(
        "  after:    {} db {}{} at {} (snapshot {}, lsn {})\n",
        r.after.target,
        r.after.database,
        super::standby_note(&r.after),
        r.after.captured_at,
        r.after.snapshot_id,
        r.after.lsn
    ));
    for (o, n) in &r.renames {
        out.push_str(&format!("  rename:   {o} -> {n}\n"));
    }
    for s in &r.spec_changes {
        out.push_str(&format!("  spec:     {s}\n"));
    }
    if let Some(b) = &r.backup {
        out.push_str(&format!("  backup:   {}\n", b.describe()));
    }
    out.push('\n');
    if let Some(m) = &r.migration {
        out.push_str(&migration(m));
    }

    let mut b = Builder::default();
    b.push_record([
        "status",
        "check",
        "baseline",
        "after",
        "difference",
        "tolerance",
        "result",
    ]);
    for c in &r.checks {
        let (base, after, diff) = overview(c);
        b.push_record([
            paint(&c.status.to_string(), c.status, color),
            cell(&c.name, 40),
            cell(&base, 22),
            cell(&after, 22),
            cell(&diff, 16),
            cell(&c.tolerance, 24),
            cell(&c.summary, 70),
        ]);
    }
    let mut t = b.build();
    t.with(Style::psql());
    out.push_str(&t.to_string());
    out.push('\n');
    for c in r.checks.iter().filter(|c| c.kind == SCHEMA_DIFF) {
        out.push_str(&schema_changes(c, color));
    }
    for c in r.checks.iter().filter(|c| c.kind == super::sizes::KIND) {
        out.push_str(&table_sizes(c, color));
    }

    for c in r.checks.iter().filter(|c| c.status != Status::Pass) {
        out.push_str(&format!(
            "\n{} {} ({})\n",
            paint(&c.status.to_string(), c.status, color),
            c.name,
            c.kind
        ));
        out.push_str(&format!("  {}\n", c.summary));
        if let Some(e) = &c.error {
            for line in e.to_string().lines() {
                out.push_str(&format!("  {line}\n"));
            }
            if let Some(ctx) = &e.context {
                out.push_str(&format!("  CONTEXT:  {ctx}\n"));
            }
        }
        let details: Vec<_> = c
            .values
            .iter()
            .filter(|v| c.kind != SCHEMA_DIFF && (!v.ok || v.scope == "total"))
            .collect();
        if !details.is_empty() {
            let mut b = Builder::default();
            b.push_record([
                "value",
                "scope",
                "baseline",
                "after",
                "difference",
                "rule",
                "ok",
                "note",
            ]);
            for v in details {
                // A keyed value (a table of a sizes check) says which key it is.
                let what = if v.key.is_empty() {
                    v.metric.clone()
                } else {
                    format!("{} {}", v.key.join(", "), v.metric)
                };
                b.push_record([
                    cell(&what, 40),
                    v.scope.clone(),
                    cell(&show(&v.baseline), 30),
                    cell(&show(&v.after), 30),
                    v.difference.clone().unwrap_or_default(),
                    cell(&v.rule, 30),
                    if v.ok { "yes".into() } else { "NO".into() },
                    cell(v.note.as_deref().unwrap_or(""), 60),
                ]);
            }
            let mut t = b.build();
            t.with(Style::psql());
            for line in t.to_string().lines() {
                out.push_str(&format!("  {line}\n"));
            }
        }
        if !c.worst.is_empty() {
            out.push_str(&format!(
                "  worst {} groups by absolute difference:\n",
                c.worst.len()
            ));
            let mut b = Builder::default();
            b.push_record([
                "group",
                "value",
                "baseline",
                "after",
                "difference",
                "change",
                "ok",
            ]);
            for w in &c.worst {
                b.push_record([
                    cell(&w.key.join(", "), 40),
                    cell(&w.metric, 30),
                    cell(&show(&w.baseline), 30),
                    cell(&show(&w.after), 30),
                    w.difference.clone().unwrap_or_default(),
                    w.scope.clone(),
                    if w.ok { "yes".into() } else { "NO".into() },
                ]);
            }
            let mut t = b.build();
            t.with(Style::psql());
            for line in t.to_string().lines() {
                out.push_str(&format!("  {line}\n"));
            }
        }
    }
    out.push('\n');
    let status = if r.verdict.passed() {
        Status::Pass
    } else {
        Status::Fail
    };
    out.push_str(&paint(&verdict_line(r), status, color));
    out.push('\n');
    out
}

/// Every schema change, declared or not, one line per changed attribute.
fn schema_changes(c: &CheckResult, color: bool) -> String {
    if c.values.is_empty() {
        return String::new();
    }
    let mut b = Builder::default();
    b.push_record([
        "ok",
        "change",
        "object",
        "what",
        "before",
        "after",
        "declared by",
    ]);
    for v in &c.values {
        let status = if v.ok { Status::Pass } else { c.status };
        b.push_record([
            paint(if v.ok { "yes" } else { "NO" }, status, color),
            v.scope.clone(),
            cell(&v.key.join(" "), 60),
            cell(&v.metric, 20),
            cell(&show(&v.baseline), 40),
            cell(&show(&v.after), 40),
            cell(&v.rule, 50),
        ]);
    }
    let mut t = b.build();
    t.with(Style::psql());
    let mut out = format!("\nschema changes ({}):\n", c.summary);
    for line in t.to_string().lines() {
        out.push_str(&format!("  {line}\n"));
    }
    out
}

/// A sizes check, one row per table, in human units (as pg_size_pretty prints them).
fn table_sizes(c: &CheckResult, color: bool) -> String {
    let mut b = Builder::default();
    let mut head = vec!["ok", "table"];
    head.extend(super::sizes::PARTS);
    b.push_record(head);
    for row in super::sizes::rows(c) {
        let status = if row.ok { Status::Pass } else { c.status };
        let mut record = vec![
            paint(if row.ok { "yes" } else { "NO" }, status, color),
            cell(&row.table, 40),
        ];
        record.extend(row.cells.iter().map(|x| cell(x, 40)));
        b.push_record(record);
    }
    let mut t = b.build();
    t.with(Style::psql());
    let mut out = format!("\ntable sizes `{}` ({}):\n", c.name, c.expect);
    for line in t.to_string().lines() {
        out.push_str(&format!("  {line}\n"));
    }
    out
}

fn migration(m: &crate::model::MigrationSummary) -> String {
    let mut out = format!("migration {}: {}\n", m.script, m.mode);
    for (o, n) in &m.renames_inferred {
        out.push_str(&format!("  rename inferred from the script: {o} -> {n}\n"));
    }
    if !m.statements.is_empty() {
        let mut b = Builder::default();
        b.push_record(["line", "ms", "rows", "tries", "ok", "statement"]);
        for s in &m.statements {
            b.push_record([
                s.location(),
                s.duration_ms.to_string(),
                s.rows.map(|r| r.to_string()).unwrap_or_default(),
                s.attempts.to_string(),
                if s.ok { "yes".into() } else { "NO".into() },
                cell(&s.sql, 90),
            ]);
        }
        let mut t = b.build();
        t.with(Style::psql());
        for line in t.to_string().lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    for l in &m.locks {
        out.push_str(&format!(
            "  lock: {} on {} held {:.1} s\n",
            l.mode,
            l.relation,
            std::time::Duration::from_millis(l.held_ms).as_secs_f64()
        ));
    }
    for b in &m.blockers {
        out.push_str(&format!(
            "  blocked by pid {} ({}@{}, {}, transaction open {} s): {}\n",
            b.pid,
            b.user,
            b.application_name,
            b.state,
            b.transaction_seconds,
            cell(&b.query, 120)
        ));
    }
    out.push('\n');
    out
}
