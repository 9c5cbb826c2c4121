//! Markdown report, for a change ticket: verdict first, a table of checks, then the details of
//! what did not pass.

use super::{grouped, readable, show, verdict_line};
use crate::model::{BackfillOutcome, Report, ResultKind, Status, ValueScope};

fn esc(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let icon = if r.verdict.passed() { "✅" } else { "❌" };
    out.push_str(&format!("## {icon} {}\n\n", verdict_line(r)));
    if let Some(b) = &r.banner {
        out.push_str(&format!("> **{b}**\n\n"));
    }
    out.push_str(&format!("- spec: `{}`\n", r.spec_path));
    if let Some(b) = &r.backup {
        out.push_str(&format!("- backup: {}\n", esc(&b.describe())));
    }
    out.push_str(&format!(
        "- baseline: `{}` database `{}`{}, {} (snapshot `{}`, LSN `{}`)\n",
        r.baseline.target,
        r.baseline.database,
        super::standby_note(&r.baseline),
        r.baseline.captured_at,
        r.baseline.snapshot_id,
        r.baseline.lsn
    ));
    out.push_str(&format!(
        "- after: `{}` database `{}`{}, {} (snapshot `{}`, LSN `{}`)\n",
        r.after.target,
        r.after.database,
        super::standby_note(&r.after),
        r.after.captured_at,
        r.after.snapshot_id,
        r.after.lsn
    ));
    for (o, n) in &r.renames {
        out.push_str(&format!("- rename: `{o}` → `{n}`\n"));
    }
    for s in &r.spec_changes {
        out.push_str(&format!("- spec change: {}\n", esc(s)));
    }
    if let Some(m) = &r.migration {
        out.push_str(&format!("\n**Migration** `{}`: {}\n", m.script, m.mode));
        for (o, n) in &m.renames_inferred {
            out.push_str(&format!("- rename inferred: `{o}` → `{n}`\n"));
        }
        if !m.statements.is_empty() {
            out.push_str(
                "\n| line | ms | rows | tries | ok | statement |\n|---|---|---|---|---|---|\n",
            );
            for s in &m.statements {
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {} | `{}` |\n",
                    esc(&s.location()),
                    s.duration_ms,
                    s.rows.map(|r| r.to_string()).unwrap_or_default(),
                    s.attempts,
                    if s.ok { "yes" } else { "**no**" },
                    esc(&s.sql)
                ));
            }
        }
        for l in &m.locks {
            out.push_str(&format!(
                "- lock **{}** on `{}` held {} ms\n",
                l.mode, l.relation, l.held_ms
            ));
        }
        for b in &m.blockers {
            out.push_str(&format!(
                "- blocked by pid {} ({}, {}): `{}`\n",
                b.pid,
                b.user,
                b.state,
                esc(&b.query)
            ));
        }
    }
    if let Some(b) = &r.backfill {
        backfill(&mut out, b);
    }
    out.push_str("\n| status | check | tolerance | result |\n|---|---|---|---|\n");
    for c in &r.checks {
        out.push_str(&format!(
            "| **{}** | {} | {} | {} |\n",
            c.status,
            esc(&c.name),
            esc(&c.tolerance),
            esc(&if c.after_only {
                format!("baseline: (new); {}", c.summary)
            } else {
                c.summary.clone()
            })
        ));
    }
    for c in r
        .checks
        .iter()
        .filter(|c| c.kind == ResultKind::SchemaDiff && !c.values.is_empty())
    {
        out.push_str(&format!(
            "\n### Schema changes\n\n{}\n\n| ok | change | object | what | before | after | declared by |\n|---|---|---|---|---|---|---|\n",
            esc(&c.summary)
        ));
        for v in &c.values {
            out.push_str(&format!(
                "| {} | {} | `{}` | {} | {} | {} | {} |\n",
                if v.ok { "yes" } else { "**no**" },
                v.scope,
                esc(&v.key.join(" ")),
                esc(&v.metric),
                esc(&show(&v.baseline)),
                esc(&show(&v.after)),
                esc(&v.rule)
            ));
        }
    }
    for c in r.checks.iter().filter(|c| c.kind == ResultKind::Sizes) {
        out.push_str(&format!(
            "\n### Table sizes — {}\n\n{} ({})\n\n| ok | table | {} |\n|---|---|---|---|---|---|\n",
            esc(&c.name),
            esc(&c.summary),
            esc(&c.expect),
            super::sizes::PARTS.join(" | ")
        ));
        for row in super::sizes::rows(c) {
            out.push_str(&format!(
                "| {} | `{}` | {} |\n",
                if row.ok { "yes" } else { "**no**" },
                esc(&row.table),
                row.cells
                    .iter()
                    .map(|x| esc(x))
                    .collect::<Vec<_>>()
                    .join(" | ")
            ));
        }
    }
    for c in r
        .checks
        .iter()
        .filter(|c| c.status != Status::Pass && c.kind != ResultKind::SchemaDiff)
    {
        out.push_str(&format!(
            "\n### {} — {}\n\n{}\n",
            c.status,
            esc(&c.name),
            esc(&c.summary)
        ));
        if let Some(e) = &c.error {
            out.push_str(&format!("\n```\n{e}\n```\n"));
        }
        let rows: Vec<_> = c
            .values
            .iter()
            .filter(|v| !v.ok || v.scope == ValueScope::Total)
            .collect();
        if !rows.is_empty() {
            out.push_str("\n| value | scope | baseline | after | difference | rule | ok |\n|---|---|---|---|---|---|---|\n");
            for v in rows {
                let what = if v.key.is_empty() {
                    v.metric.clone()
                } else {
                    format!("{} {}", v.key.join(", "), v.metric)
                };
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} | {} |\n",
                    esc(&what),
                    v.scope,
                    esc(&readable(&v.baseline)),
                    esc(&readable(&v.after)),
                    v.difference.as_deref().map(grouped).unwrap_or_default(),
                    esc(&v.rule),
                    if v.ok { "yes" } else { "**no**" }
                ));
            }
        }
        if !c.worst.is_empty() {
            out.push_str("\nWorst groups:\n\n| group | value | baseline | after | difference | change |\n|---|---|---|---|---|---|\n");
            for w in &c.worst {
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} |\n",
                    esc(&w.key.join(", ")),
                    esc(&w.metric),
                    esc(&readable(&w.baseline)),
                    esc(&readable(&w.after)),
                    w.difference.as_deref().map(grouped).unwrap_or_default(),
                    w.scope
                ));
            }
        }
        if !c.after_sql.is_empty() {
            out.push_str(&format!(
                "\n<details><summary>SQL</summary>\n\n```sql\n{}\n```\n</details>\n",
                c.after_sql.join(";\n\n")
            ));
        }
    }
    out
}

/// What `migval backfill` did before the checks: the run, how it ended, its counters.
pub(super) fn backfill(out: &mut String, b: &BackfillOutcome) {
    let c = &b.counters;
    let counts = super::backfill::counts(b);
    out.push_str(&format!(
        "\n**Backfill** {}\n\n",
        super::backfill::title(b, "`")
    ));
    let cells =
        |f: &dyn Fn(&(&str, u64)) -> String| counts.iter().map(f).collect::<Vec<_>>().join(" | ");
    out.push_str(&format!(
        "| {} |\n",
        cells(&|(label, _)| (*label).to_string())
    ));
    out.push_str(&format!("|{}\n", "---|".repeat(counts.len())));
    out.push_str(&format!(
        "| {} |\n",
        cells(&|(_, n)| super::backfill::group(*n))
    ));
    out.push_str(&format!(
        "\n- success rate {}; {} ms, {} batches this invocation (p50 {} ms, p95 {} ms)\n",
        super::backfill::success_rate(c),
        b.elapsed_ms,
        b.batch_ms.len(),
        b.batch_percentile(50),
        b.batch_percentile(95)
    ));
    if c.no_match + c.ambiguous + c.errors > 0 {
        out.push_str(&format!(
            "- rows left alone are listed in `{}`\n",
            b.log_path
        ));
    }
}
