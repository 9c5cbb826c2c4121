//! The terminal report: a header saying what was compared, one row per check, details for
//! every check that did not pass (values, worst groups, the server's error), and the verdict.
//! Fitted to a width when given ([`fit`](super::fit)); a check name is never cut.

use super::fit;
use super::{count, grouped, readable, show, verdict_line};
use crate::model::{CheckResult, Report, ResultKind, Status, ValueScope};

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
    if c.kind == ResultKind::SchemaDiff {
        let n = c
            .values
            .iter()
            .filter(|v| v.scope != ValueScope::Missing)
            .count();
        return (
            String::new(),
            String::new(),
            format!("{n} change{}", if n == 1 { "" } else { "s" }),
        );
    }
    if c.kind == ResultKind::Sizes {
        return super::sizes::totals(c);
    }
    if let Some(g) = &c.groups {
        return (
            format!("{} groups", count(g.baseline_groups)),
            format!("{} groups", count(g.after_groups)),
            format!("{} changed", count(g.changed)),
        );
    }
    match c.values.as_slice() {
        [one] => (
            readable(&one.baseline),
            readable(&one.after),
            one.difference.as_deref().map(grouped).unwrap_or_default(),
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

/// Push `text` as one line, word-wrapped to `width` (continuation lines indented by `hang`).
fn push_line(out: &mut String, text: &str, width: Option<usize>, hang: usize) {
    out.push_str(&fit::line(text, width, hang));
    out.push('\n');
}

/// Rows as owned strings, for [`fit::table`].
fn rows<const N: usize>(header: [&str; N]) -> Vec<Vec<String>> {
    vec![header.iter().map(ToString::to_string).collect()]
}

pub fn render(r: &Report, color: bool, width: Option<usize>) -> String {
    let mut out = String::new();
    if let Some(b) = &r.banner {
        push_line(&mut out, &format!("== {b} =="), width, 3);
    }
    push_line(
        &mut out,
        &format!("migval {} — spec {}", r.command, r.spec_path),
        width,
        2,
    );
    let mut header = String::new();
    header.push_str(&format!(
        "  baseline: {} db {}{} at {} (snapshot {}, lsn {})\n",
        r.baseline.target,
        r.baseline.database,
        super::standby_note(&r.baseline),
        r.baseline.captured_at,
        r.baseline.snapshot_id,
        r.baseline.lsn
    ));
    header.push_str(&format!(
        "  after:    {} db {}{} at {} (snapshot {}, lsn {})\n",
        r.after.target,
        r.after.database,
        super::standby_note(&r.after),
        r.after.captured_at,
        r.after.snapshot_id,
        r.after.lsn
    ));
    for (o, n) in &r.renames {
        header.push_str(&format!("  rename:   {o} -> {n}\n"));
    }
    for s in &r.spec_changes {
        header.push_str(&format!("  spec:     {s}\n"));
    }
    for l in header.lines() {
        push_line(&mut out, l, width, 12);
    }
    if let Some(b) = &r.backup {
        push_line(
            &mut out,
            &format!("  backup:   {}", b.describe()),
            width,
            12,
        );
    }
    out.push('\n');
    if let Some(m) = &r.migration {
        out.push_str(&migration(m, width));
    }

    let mut t = rows([
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
        t.push(vec![
            paint(&c.status.to_string(), c.status, color),
            c.name.replace('\n', " "),
            cell(&base, 22),
            cell(&after, 22),
            cell(&diff, 16),
            cell(&c.tolerance, 24),
            cell(&c.summary, 70),
        ]);
    }
    // Status and check name keep their width: a name is never cut.
    out.push_str(&fit::table(t, width, 0, &[0, 1]));
    for c in r.checks.iter().filter(|c| c.kind == ResultKind::SchemaDiff) {
        out.push_str(&schema_changes(c, color, width));
    }
    for c in r.checks.iter().filter(|c| c.kind == ResultKind::Sizes) {
        out.push_str(&table_sizes(c, color, width));
    }

    for c in r.checks.iter().filter(|c| c.status != Status::Pass) {
        out.push('\n');
        push_line(
            &mut out,
            &format!(
                "{} {} ({})",
                paint(&c.status.to_string(), c.status, color),
                c.name,
                c.kind
            ),
            None,
            2,
        );
        push_line(&mut out, &format!("  {}", c.summary), width, 4);
        if let Some(e) = &c.error {
            for line in e.to_string().lines() {
                push_line(&mut out, &format!("  {line}"), width, 4);
            }
            if let Some(ctx) = &e.context {
                push_line(&mut out, &format!("  CONTEXT:  {ctx}"), width, 12);
            }
        }
        let details: Vec<_> = c
            .values
            .iter()
            .filter(|v| c.kind != ResultKind::SchemaDiff && (!v.ok || v.scope == ValueScope::Total))
            .collect();
        if !details.is_empty() {
            let mut t = rows([
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
                t.push(vec![
                    cell(&what, 40),
                    v.scope.to_string(),
                    cell(&readable(&v.baseline), 30),
                    cell(&readable(&v.after), 30),
                    v.difference.as_deref().map(grouped).unwrap_or_default(),
                    cell(&v.rule, 30),
                    if v.ok { "yes".into() } else { "NO".into() },
                    cell(v.note.as_deref().unwrap_or(""), 60),
                ]);
            }
            out.push_str(&fit::table(t, width, 2, &[]));
        }
        if !c.worst.is_empty() {
            out.push_str(&format!(
                "  worst {} groups by absolute difference:\n",
                c.worst.len()
            ));
            let mut t = rows([
                "group",
                "value",
                "baseline",
                "after",
                "difference",
                "change",
                "ok",
            ]);
            for w in &c.worst {
                t.push(vec![
                    cell(&w.key.join(", "), 40),
                    cell(&w.metric, 30),
                    cell(&readable(&w.baseline), 30),
                    cell(&readable(&w.after), 30),
                    w.difference.as_deref().map(grouped).unwrap_or_default(),
                    w.scope.to_string(),
                    if w.ok { "yes".into() } else { "NO".into() },
                ]);
            }
            out.push_str(&fit::table(t, width, 2, &[]));
        }
    }
    out.push('\n');
    let status = if r.verdict.passed() {
        Status::Pass
    } else {
        Status::Fail
    };
    push_line(&mut out, &paint(&verdict_line(r), status, color), width, 2);
    out
}

/// Every schema change, declared or not, one line per changed attribute.
fn schema_changes(c: &CheckResult, color: bool, width: Option<usize>) -> String {
    if c.values.is_empty() {
        return String::new();
    }
    let mut t = rows([
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
        t.push(vec![
            paint(if v.ok { "yes" } else { "NO" }, status, color),
            v.scope.to_string(),
            cell(&v.key.join(" "), 60),
            cell(&v.metric, 20),
            cell(&show(&v.baseline), 40),
            cell(&show(&v.after), 40),
            cell(&v.rule, 50),
        ]);
    }
    let mut out = String::from("\n");
    push_line(
        &mut out,
        &format!("schema changes ({}):", c.summary),
        width,
        2,
    );
    out.push_str(&fit::table(t, width, 2, &[]));
    out
}

/// A sizes check, one row per table, in human units (as pg_size_pretty prints them).
fn table_sizes(c: &CheckResult, color: bool, width: Option<usize>) -> String {
    let mut head = vec!["ok", "table"];
    head.extend(super::sizes::PARTS);
    let mut t: Vec<Vec<String>> = vec![head.into_iter().map(String::from).collect()];
    for row in super::sizes::rows(c) {
        let status = if row.ok { Status::Pass } else { c.status };
        let mut record = vec![
            paint(if row.ok { "yes" } else { "NO" }, status, color),
            row.table.clone(),
        ];
        record.extend(row.cells.iter().map(|x| cell(x, 40)));
        t.push(record);
    }
    let mut out = String::new();
    out.push('\n');
    push_line(
        &mut out,
        &format!("table sizes `{}` ({}):", c.name, c.expect),
        width,
        2,
    );
    out.push_str(&fit::table(t, width, 2, &[0, 1]));
    out
}

fn migration(m: &crate::model::MigrationSummary, width: Option<usize>) -> String {
    let mut out = String::new();
    push_line(
        &mut out,
        &format!("migration {}: {}", m.script, m.mode),
        width,
        2,
    );
    for (o, n) in &m.renames_inferred {
        push_line(
            &mut out,
            &format!("  rename inferred from the script: {o} -> {n}"),
            width,
            4,
        );
    }
    if !m.statements.is_empty() {
        let mut t = rows(["line", "ms", "rows", "tries", "ok", "statement"]);
        for s in &m.statements {
            t.push(vec![
                s.location(),
                s.duration_ms.to_string(),
                s.rows.map(|r| r.to_string()).unwrap_or_default(),
                s.attempts.to_string(),
                if s.ok { "yes".into() } else { "NO".into() },
                cell(&s.sql, 90),
            ]);
        }
        out.push_str(&fit::table(t, width, 2, &[]));
    }
    for l in &m.locks {
        let text = format!(
            "  lock: {} on {} held {:.1} s",
            l.mode,
            l.relation,
            std::time::Duration::from_millis(l.held_ms).as_secs_f64()
        );
        push_line(&mut out, &text, width, 4);
    }
    for b in &m.blockers {
        let text = format!(
            "  blocked by pid {} ({}@{}, {}, transaction open {} s): {}",
            b.pid,
            b.user,
            b.application_name,
            b.state,
            b.transaction_seconds,
            cell(&b.query, 120)
        );
        push_line(&mut out, &text, width, 4);
    }
    out.push('\n');
    out
}
