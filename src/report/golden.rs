//! Golden files of every report format (insta snapshots in `src/report/snapshots/`), rendered
//! from reports built here: one that fails with every kind of line a renderer lays out
//! (a failing total, worst groups that appeared and disappeared, a WARN, an after-only check,
//! an ERROR with the server's fields, a schema diff with an expected change that did not
//! happen, table sizes, a rows check, a migration with a lock and a blocker, a standby, a
//! backup, a hostile value with control characters), one that passes, and a backfill's outcome
//! (in a report, alone, as the text summary). A renderer change
//! shows as a diff of these files to review (`cargo insta review`, or `INSTA_UPDATE=always
//! cargo test` and `git diff`); CI (`CI=true`) never writes them, it fails on a difference.
//!
//! The reports are fixed data, so times, hosts, pids, versions and ids are fixed too; the JSON
//! golden redacts them anyway (insta redactions), as a real run's report has to be.

use rust_decimal::Decimal;

use super::{Format, changes, render, render_text};
use crate::model::backfill::{BackfillOutcome, Counters};
use crate::model::{
    Backup, Blocker, CheckResult, Comparison, DbFailure, GroupStats, LockHeld, MigrationSummary,
    Origin, Report, ResultKind, StatementRun, Status, Value, ValueScope, Verdict,
};

fn dec(s: &str) -> Value {
    Value::Dec(s.parse::<Decimal>().unwrap_or_default())
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

fn origin(standby: bool, at: &str, snapshot: &str, lsn: &str) -> Origin {
    Origin {
        target: "migval@db-prod-1.internal:5432".into(),
        database: "shop".into(),
        server_version: "17.2".into(),
        snapshot_id: snapshot.into(),
        lsn: lsn.into(),
        in_recovery: standby,
        captured_at: at.into(),
        connections: 4,
        duration_ms: 1234,
    }
}

#[allow(clippy::too_many_arguments)]
fn cmp(
    key: &[&str],
    metric: &str,
    scope: ValueScope,
    baseline: Option<Value>,
    after: Option<Value>,
    difference: Option<&str>,
    rule: &str,
    ok: bool,
    note: Option<&str>,
) -> Comparison {
    Comparison {
        key: key.iter().map(ToString::to_string).collect(),
        metric: metric.into(),
        scope,
        baseline,
        after,
        difference: difference.map(Into::into),
        rule: rule.into(),
        ok,
        note: note.map(Into::into),
    }
}

fn result(name: &str, kind: ResultKind, status: Status, summary: &str) -> CheckResult {
    CheckResult {
        name: name.into(),
        kind,
        tolerance: "exact".into(),
        expect: "unchanged".into(),
        baseline_sql: vec![format!("SELECT count(*) FROM products -- {name}")],
        after_sql: vec![format!("SELECT count(*) FROM products -- {name}")],
        ..CheckResult::bare(status, summary.into())
    }
}

/// A failing report that carries every kind of line.
fn failing() -> Report {
    let row_count = CheckResult {
        values: vec![cmp(
            &[],
            "count",
            ValueScope::Value,
            Some(Value::Int(100_000)),
            Some(Value::Int(100_000)),
            Some("0"),
            "unchanged",
            true,
            None,
        )],
        ..result(
            "products row count",
            ResultKind::Metrics,
            Status::Pass,
            "unchanged",
        )
    };
    let revenue = CheckResult {
        tolerance: "|diff| <= 0.01 per group and on the total".into(),
        values: vec![cmp(
            &[],
            "sum(revenue)",
            ValueScope::Total,
            Some(dec("1234567.8900")),
            Some(dec("1234689.2300")),
            Some("121.3400"),
            "unchanged, |diff| <= 0.01",
            false,
            Some("the total moved by 121.3400"),
        )],
        groups: Some(GroupStats {
            baseline_groups: 1200,
            after_groups: 1200,
            changed: 3,
            appeared: 1,
            disappeared: 1,
            failing: 3,
        }),
        worst: vec![
            cmp(
                &["acme"],
                "sum(revenue)",
                ValueScope::Group,
                Some(dec("1000.00")),
                Some(dec("2000.00")),
                Some("1000.00"),
                "unchanged, |diff| <= 0.01",
                false,
                None,
            ),
            cmp(
                &["globex"],
                "sum(revenue)",
                ValueScope::Appeared,
                None,
                Some(dec("12.50")),
                None,
                "unchanged, |diff| <= 0.01",
                false,
                None,
            ),
            cmp(
                &["initech"],
                "sum(revenue)",
                ValueScope::Disappeared,
                Some(dec("-90.00")),
                None,
                None,
                "unchanged, |diff| <= 0.01",
                false,
                None,
            ),
        ],
        ..result(
            "revenue per company",
            ResultKind::Metrics,
            Status::Fail,
            "3 of 1,200 groups differ beyond the tolerance; the total moved by 121.3400",
        )
    };
    let may_change = CheckResult {
        expect: "may_change".into(),
        tolerance: "any change allowed".into(),
        values: vec![cmp(
            &[],
            "count",
            ValueScope::Value,
            Some(Value::Int(10)),
            Some(Value::Int(12)),
            Some("2"),
            "may change",
            true,
            None,
        )],
        ..result(
            "audit rows",
            ResultKind::Metrics,
            Status::Warn,
            "changed, as allowed",
        )
    };
    let new_column = CheckResult {
        after_only: true,
        expect: "zero".into(),
        values: vec![cmp(
            &[],
            "nulls(fixed_fee_facilitated)",
            ValueScope::Value,
            None,
            Some(Value::Int(0)),
            None,
            "zero",
            true,
            None,
        )],
        ..result(
            "fee column has no NULLs",
            ResultKind::NullCount,
            Status::Pass,
            "0 NULLs, as expected",
        )
    };
    let errored = CheckResult {
        error: Some(DbFailure {
            message: "column \"fixed_cost\" does not exist".into(),
            sqlstate: Some("42703".into()),
            detail: Some("the view reads it".into()),
            hint: Some("Perhaps you meant to reference the column \"fixed_fee\".".into()),
            server_context: Some(Box::new("PL/pgSQL function f() line 3".into())),
            context: Some("check `margin` on connection 2".into()),
        }),
        ..result(
            "margin",
            ResultKind::CustomSql,
            Status::Error,
            "the query failed on the post-state",
        )
    };
    let schema = CheckResult {
        tolerance: "declared changes only".into(),
        expect: "[schema] expect".into(),
        values: vec![
            cmp(
                &["index", "public.products_sku_idx"],
                "dropped",
                ValueScope::Drop,
                Some(text("btree (sku)")),
                None,
                None,
                "undeclared",
                false,
                None,
            ),
            cmp(
                &["column", "public.client_products.fixed_fee_facilitated"],
                "added",
                ValueScope::Add,
                None,
                Some(text("type: numeric(12,2)")),
                None,
                "declared: \"add column client_products.fixed_fee_facilitated\"",
                true,
                None,
            ),
            cmp(
                &["view", "public.company_revenue"],
                "definition",
                ValueScope::Alter,
                Some(text("SELECT sum(fixed_cost) ...")),
                Some(text("SELECT sum(fixed_fee_facilitated) ...")),
                None,
                "follows rename column client_products.fixed_cost",
                true,
                None,
            ),
            cmp(
                &["expected", "drop policy tenant_isolation"],
                "did not happen",
                ValueScope::Missing,
                None,
                None,
                None,
                "declared: \"drop policy tenant_isolation\"",
                false,
                Some("the spec expects this change and the migration did not make it"),
            ),
        ],
        baseline_sql: vec!["schema_catalog".into()],
        after_sql: vec!["schema_catalog".into()],
        ..result(
            "schema",
            ResultKind::SchemaDiff,
            Status::Fail,
            "1 undeclared change, 1 expected change missing",
        )
    };
    let mut size_values = Vec::new();
    for (part, b, a) in [
        ("table", 8_192_000i64, 9_830_400i64),
        ("indexes", 2_048_000, 2_048_000),
        ("toast", 8192, 8192),
        ("total", 10_248_192, 11_886_592),
    ] {
        size_values.push(cmp(
            &["public", "client_products"],
            part,
            ValueScope::Value,
            Some(Value::Int(b)),
            Some(Value::Int(a)),
            Some(&(a - b).to_string()),
            "may grow 10%",
            part != "table" && part != "total",
            None,
        ));
    }
    size_values.push(cmp(
        &["public", "fees"],
        "total",
        ValueScope::Appeared,
        None,
        Some(Value::Int(16_384)),
        None,
        "may grow 10%",
        true,
        None,
    ));
    let sizes = CheckResult {
        tolerance: "growth <= 10%".into(),
        expect: "may grow 10%".into(),
        values: size_values,
        ..result(
            "table sizes",
            ResultKind::Sizes,
            Status::Fail,
            "`public.client_products` table grew 7.8 MB -> 9.4 MB (+20%)",
        )
    };
    let changed_row = cmp(
        &["42"],
        "row",
        ValueScope::Changed,
        Some(text("9f2c")),
        Some(text("77a1")),
        None,
        "unchanged",
        false,
        Some("before: (42,acme,10.00)"),
    );
    let rows = CheckResult {
        groups: Some(GroupStats {
            baseline_groups: 100_000,
            after_groups: 100_000,
            changed: 1,
            appeared: 0,
            disappeared: 0,
            failing: 1,
        }),
        worst: vec![changed_row.clone()],
        all_changes: vec![changed_row],
        ..result(
            "products rows",
            ResultKind::Rows,
            Status::Fail,
            "1 of 100,000 rows changed",
        )
    };
    // Data a migration wrote: an escape sequence, a bidi override, a carriage return, a tab,
    // and characters each format must quote (| < & ").
    let hostile_value = "ok\x1b[2J\u{202e}evil\r\nnext\tline | <b>&\"";
    let hostile = CheckResult {
        values: vec![cmp(
            &[],
            "max(label)",
            ValueScope::Value,
            Some(text("plain")),
            Some(text(hostile_value)),
            None,
            "unchanged",
            false,
            None,
        )],
        ..result(
            "labels \x07unchanged",
            ResultKind::Metrics,
            Status::Fail,
            "changed: \x1b[31mred\x1b[0m",
        )
    };
    let checks = vec![
        row_count, revenue, may_change, new_column, errored, schema, sizes, rows, hostile,
    ];
    Report {
        command: "migrate".into(),
        banner: Some("rehearsal: nothing was committed".into()),
        spec_path: "checks.toml".into(),
        baseline: origin(
            true,
            "2026-12-03 09:00:00.123456+00",
            "00000004-0000001A-1",
            "0/1A2B3C4",
        ),
        after: origin(
            false,
            "2026-12-03 09:05:00.654321+00",
            "00000005-0000002B-1",
            "0/1A2B9F0",
        ),
        renames: vec![(
            "client_products.fixed_cost".into(),
            "client_products.fixed_fee_facilitated".into(),
        )],
        spec_changes: vec!["check `margin` changed since the baseline".into()],
        verdict: Verdict::from_results(&checks),
        checks,
        migration: Some(MigrationSummary {
            statements: vec![
                StatementRun {
                    file: Some("01_schema.sql".into()),
                    line: 3,
                    sql: "ALTER TABLE client_products RENAME COLUMN fixed_cost TO fixed_fee_facilitated".into(),
                    duration_ms: 12,
                    rows: None,
                    attempts: 2,
                    ok: true,
                },
                StatementRun {
                    file: Some("02_data.sql".into()),
                    line: 24,
                    sql: "UPDATE client_products SET fixed_fee_facilitated = 0 WHERE ...".into(),
                    duration_ms: 340,
                    rows: Some(1500),
                    attempts: 1,
                    ok: true,
                },
            ],
            locks: vec![LockHeld {
                relation: "public.client_products".into(),
                mode: "ACCESS EXCLUSIVE".into(),
                held_ms: 1234,
            }],
            renames_inferred: vec![(
                "client_products.fixed_cost".into(),
                "client_products.fixed_fee_facilitated".into(),
            )],
            blockers: vec![Blocker {
                pid: 4242,
                user: "app".into(),
                application_name: "billing".into(),
                state: "idle in transaction".into(),
                transaction_seconds: "12.3".into(),
                query: "SELECT * FROM client_products FOR UPDATE".into(),
            }],
            ..MigrationSummary::new(
                "01_schema.sql + 02_data.sql",
                "rehearsal: nothing was committed",
            )
        }),
        backup: Some(Backup {
            file: "pre.dump".into(),
            bytes: 1_258_291,
            format: "custom".into(),
            database: "shop".into(),
            duration_ms: 340,
        }),
        backfill: None,
    }
}

/// A passing report: one check passes, one changed as allowed (WARN), both sides primaries.
fn passing() -> Report {
    let checks = vec![
        CheckResult {
            values: vec![cmp(
                &[],
                "sum(fixed_fee_facilitated)",
                ValueScope::Value,
                Some(dec("98765.43")),
                Some(dec("98765.43")),
                Some("0.00"),
                "unchanged",
                true,
                None,
            )],
            ..result("total fees", ResultKind::Metrics, Status::Pass, "unchanged")
        },
        CheckResult {
            expect: "may_change".into(),
            values: vec![cmp(
                &[],
                "count",
                ValueScope::Value,
                Some(Value::Int(5)),
                Some(Value::Int(6)),
                Some("1"),
                "may change",
                true,
                None,
            )],
            ..result(
                "sessions",
                ResultKind::Metrics,
                Status::Warn,
                "changed, as allowed",
            )
        },
    ];
    Report {
        command: "verify".into(),
        banner: None,
        spec_path: "checks.toml".into(),
        baseline: origin(
            false,
            "2026-12-03 09:00:00+00",
            "00000004-0000001A-1",
            "0/1A2B3C4",
        ),
        after: origin(
            false,
            "2026-12-03 09:05:00+00",
            "00000005-0000002B-1",
            "0/1A2B9F0",
        ),
        renames: Vec::new(),
        spec_changes: Vec::new(),
        verdict: Verdict::from_results(&checks),
        checks,
        migration: None,
        backup: None,
        backfill: None,
    }
}

/// A backfill's outcome: 3,000 rows in 8 batches, ambiguous rows logged, some inserted since
/// the run began; committed (run 42) or a dry-run (with the first batch's plan).
fn backfill(committed: bool) -> BackfillOutcome {
    let counters = Counters {
        batches: 8,
        checked: 3_000,
        updated: 2_640,
        already_done: 240,
        no_match: 0,
        ambiguous: 120,
        errors: 0,
    };
    BackfillOutcome {
        backfill: "subscriber_fk".into(),
        table: "public.plan_subscriptions".into(),
        committed,
        run_id: committed.then_some(42),
        counters,
        this_invocation: counters,
        finished: true,
        interrupted: false,
        elapsed_ms: 1_234,
        estimated_total_ms: (!committed).then_some(1_234),
        total_rows: 3_000,
        pending_rows: 2_760,
        batch_ms: vec![90, 120, 150, 110, 100, 130, 140, 95],
        log_path: "subscriber_fk-rows.csv".into(),
        ceiling: Some(vec!["3000".into()]),
        new_since_start: 17,
        first_batch_plan: (!committed).then(|| {
            vec![
                "Update on plan_subscriptions (actual rows=0 loops=1)".into(),
                "  ->  Index Scan using plan_subscriptions_pkey on plan_subscriptions".into(),
            ]
        }),
    }
}

/// The JSON report with what differs between runs redacted, as a real run's report has to be.
/// The rendered text is also checked to be the plain pretty printing of that value (keys
/// sorted, two-space indent), so the golden value pins the bytes too.
fn json_snapshot(name: &str, r: &Report) {
    let raw = render(r, Format::Json, false);
    let json: serde_json::Value = serde_json::from_str(&raw).unwrap_or_default();
    assert_eq!(
        raw,
        serde_json::to_string_pretty(&json).unwrap_or_default() + "\n"
    );
    insta::assert_json_snapshot!(name, json, {
        ".*.captured_at" => "[time]",
        ".*.duration_ms" => "[ms]",
        ".*.target" => "[target]",
        ".*.server_version" => "[version]",
        ".*.snapshot_id" => "[snapshot]",
        ".*.lsn" => "[lsn]",
        ".migration.blockers[].pid" => "[pid]",
    });
}

/// The `--changes-out` CSV of `r`, as written to a file, with its control characters (kept
/// exact in the file) written out as the text report shows them (`\x1b`, `\r`, `\u{202e}`),
/// so that the golden file stays plain text a reviewer can read.
fn changes_csv(r: &Report) -> String {
    let path = std::env::temp_dir().join(format!(
        "migval-golden-{}-{}.csv",
        std::process::id(),
        r.command
    ));
    let written = changes::write(r, &path).map(|_| std::fs::read_to_string(&path));
    let _ = std::fs::remove_file(&path);
    match written {
        Ok(Ok(csv)) => super::escape::block(&csv),
        other => panic!("writing the changes CSV: {other:?}"),
    }
}

#[test]
fn a_failing_report_in_every_format() {
    let r = failing();
    insta::assert_snapshot!("failing.txt", render(&r, Format::Text, false));
    insta::assert_snapshot!("failing_80_columns.txt", render_text(&r, false, Some(80)));
    insta::assert_snapshot!("failing.md", render(&r, Format::Markdown, false));
    insta::assert_snapshot!("failing.junit.xml", render(&r, Format::Junit, false));
    insta::assert_snapshot!("failing.html", render(&r, Format::Html, false));
    insta::assert_snapshot!("failing.changes.csv", changes_csv(&r));
    json_snapshot("failing.json", &r);
}

#[test]
fn a_passing_report_in_every_format() {
    let r = passing();
    insta::assert_snapshot!("passing.txt", render(&r, Format::Text, false));
    insta::assert_snapshot!("passing.md", render(&r, Format::Markdown, false));
    insta::assert_snapshot!("passing.junit.xml", render(&r, Format::Junit, false));
    insta::assert_snapshot!("passing.html", render(&r, Format::Html, false));
    json_snapshot("passing.json", &r);
}

#[test]
fn the_text_report_paints_statuses_only_when_asked() {
    // Colour is the one thing the plain golden file cannot show.
    let r = passing();
    let painted = render(&r, Format::Text, true);
    assert!(painted.contains("\x1b[1;32mPASS\x1b[0m"), "{painted}");
    assert!(painted.contains("\x1b[1;33mWARN\x1b[0m"), "{painted}");
    assert!(!render(&r, Format::Text, false).contains('\x1b'));
}

#[test]
fn a_backfill_outcome_in_every_format() {
    // In the report of `migval backfill --commit` with checks.
    let mut r = passing();
    r.command = "backfill".into();
    r.backfill = Some(backfill(true));
    insta::assert_snapshot!("backfill.md", render(&r, Format::Markdown, false));
    insta::assert_snapshot!("backfill.junit.xml", render(&r, Format::Junit, false));
    insta::assert_snapshot!("backfill.html", render(&r, Format::Html, false));
    json_snapshot("backfill.json", &r);
    // Alone (a dry-run has no report of checks), and the text summary.
    let dry = backfill(false);
    insta::assert_snapshot!("backfill_summary.txt", super::backfill::summary_text(&dry));
    for (name, format) in [
        ("backfill_alone.md", Format::Markdown),
        ("backfill_alone.junit.xml", Format::Junit),
        ("backfill_alone.json", Format::Json),
    ] {
        let text = super::backfill::render(&dry, format).unwrap_or_default();
        insta::assert_snapshot!(name, text);
    }
    assert_eq!(super::backfill::render(&dry, Format::Text), None);
}
