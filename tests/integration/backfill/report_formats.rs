//! The backfill's outcome in the report: after `migval backfill --commit` with checks,
//! `--format json|markdown|junit|html` carry the run, how it ended and its exact counters (the text
//! summary alone did before), checked against the progress table and the update counter; a
//! dry-run, with no report of checks, prints its outcome alone in the chosen format.

use super::*;

/// The committed run as the database records it, cross-checked against the table itself.
struct Recorded {
    run_id: i64,
    batches: i64,
    checked: i64,
    updated: i64,
    already_done: i64,
    ambiguous: i64,
}

async fn recorded(db: &TestDb) -> Recorded {
    let c = db.client().await;
    let r = c
        .query_one(
            "SELECT run_id, batches, rows_checked, rows_updated, rows_already_done, \
             rows_no_match, rows_ambiguous, rows_errors, status \
             FROM migval.backfill_runs ORDER BY run_id DESC LIMIT 1",
            &[],
        )
        .await
        .expect("the run's row");
    assert_eq!(r.get::<_, String>(8), "done");
    assert_eq!(
        (r.get::<_, i64>(5), r.get::<_, i64>(7)),
        (0, 0),
        "no_match, errors"
    );
    let rec = Recorded {
        run_id: r.get(0),
        batches: r.get(1),
        checked: r.get(2),
        updated: r.get(3),
        already_done: r.get(4),
        ambiguous: r.get(6),
    };
    // The progress row agrees with what happened to the table.
    assert_eq!(
        rec.updated,
        int(db, "SELECT count(*) FROM update_counts").await
    );
    assert_eq!(rec.ambiguous, int(db, AMBIGUOUS).await);
    assert_eq!(
        rec.checked,
        int(db, "SELECT count(*) FROM plan_subscriptions").await
    );
    assert_eq!(
        rec.already_done,
        int(
            db,
            "SELECT count(*) FROM plan_subscriptions WHERE id % 10 = 0 AND customer_id % 50 > 1"
        )
        .await
    );
    assert!(rec.batches >= 3, "1,200 rows in batches of at most 400");
    rec
}

fn committed(name: &str, format: &str) -> (TestDb, Run, Recorded) {
    let db = rt().block_on(world(name, 1200));
    let spec = spec_with(&db, "bf.toml", "size = 400");
    let r = run(&db, &spec, &["--commit", "--yes", "--format", format]);
    assert_eq!(r.code, 0, "{r}");
    let rec = rt().block_on(recorded(&db));
    (db, r, rec)
}

#[test]
fn backfill_format_json_carries_the_outcome_with_exact_counts() {
    let (_db, r, rec) = committed("backfill_report_json", "json");
    let report: serde_json::Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("stdout is not the JSON report ({e}){r}"));
    assert_eq!(report["verdict"]["failed"], 0, "{r}");
    let b = &report["backfill"];
    assert_eq!(b["backfill"], "subscriber_fk", "{report:#}");
    assert_eq!(b["run_id"], rec.run_id, "{report:#}");
    assert_eq!(b["committed"], true, "{report:#}");
    assert_eq!(b["finished"], true, "{report:#}");
    assert_eq!(b["interrupted"], false, "{report:#}");
    assert_eq!(b["new_since_start"], 0, "{report:#}");
    let c = &b["counters"];
    assert_eq!(c["batches"], rec.batches, "{report:#}");
    assert_eq!(c["checked"], rec.checked, "{report:#}");
    assert_eq!(c["updated"], rec.updated, "{report:#}");
    assert_eq!(c["already_done"], rec.already_done, "{report:#}");
    assert_eq!(c["ambiguous"], rec.ambiguous, "{report:#}");
    assert_eq!(
        (c["no_match"].as_i64(), c["errors"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(
        b["batch_ms"].as_array().map(Vec::len),
        usize::try_from(rec.batches).ok(),
        "one duration per batch of this invocation{report:#}"
    );
}

#[test]
fn backfill_format_markdown_carries_the_outcome_with_exact_counts() {
    let (_db, r, rec) = committed("backfill_report_markdown", "markdown");
    let g = |n: i64| migval::report::backfill::group(u64::try_from(n).unwrap());
    assert!(
        r.stdout
            .contains(&format!("(run {}): finished\n", rec.run_id)),
        "{r}"
    );
    assert!(r.stdout.contains("**Backfill** `subscriber_fk` on "), "{r}");
    let row = format!(
        "| {} | {} | {} | {} | 0 | {} | 0 | 0 |\n",
        g(rec.batches),
        g(rec.checked),
        g(rec.updated),
        g(rec.already_done),
        g(rec.ambiguous)
    );
    assert!(r.stdout.contains(&row), "no counters row `{row}`{r}");
    assert!(
        r.stdout.contains("- rows left alone are listed in `"),
        "{r}"
    );
}

#[test]
fn backfill_format_junit_carries_the_outcome_with_exact_counts() {
    let (_db, r, rec) = committed("backfill_report_junit", "junit");
    let prop = |name: &str, value: &str| {
        let p = format!("<property name=\"{name}\" value=\"{value}\"/>");
        assert!(r.stdout.contains(&p), "no {p}{r}");
    };
    prop("backfill", "subscriber_fk");
    prop("backfill_run_id", &rec.run_id.to_string());
    prop("backfill_end", "finished");
    prop("backfill_committed", "true");
    prop("backfill_batches", &rec.batches.to_string());
    prop("backfill_checked", &rec.checked.to_string());
    prop("backfill_updated", &rec.updated.to_string());
    prop("backfill_already_done", &rec.already_done.to_string());
    prop("backfill_ambiguous", &rec.ambiguous.to_string());
    prop("backfill_errors", "0");
    // One properties element for the suite (the test cases have their own).
    let suite = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("    <properties>"))
        .count();
    assert_eq!(suite, 1, "{r}");
}

#[test]
fn backfill_format_html_carries_the_outcome_with_exact_counts() {
    let (_db, r, rec) = committed("backfill_report_html", "html");
    let g = |n: i64| migval::report::backfill::group(u64::try_from(n).unwrap());
    let line = format!(
        "(run {}): finished; {} batches, {} rows checked, {} updated, {} already done, 0 no \
         match, {} ambiguous, 0 errors, 0 new since the run began</td></tr>",
        rec.run_id,
        g(rec.batches),
        g(rec.checked),
        g(rec.updated),
        g(rec.already_done),
        g(rec.ambiguous)
    );
    assert!(
        r.stdout
            .contains("<tr><th>backfill</th><td>subscriber_fk on "),
        "{r}"
    );
    assert!(r.stdout.contains(&line), "no `{line}`{r}");
}

/// A dry-run has no report of checks: `--format json|markdown|junit` print the outcome alone,
/// with what --commit would do, and nothing is changed.
#[test]
fn a_dry_run_prints_its_outcome_alone_in_the_chosen_format() {
    let db = rt().block_on(world("backfill_report_dry_run", 1200));
    let before = rt().block_on(text(&db, STATE));
    let spec = spec_with(&db, "bf.toml", "size = 400");
    let would_update = rt().block_on(int(
        &db,
        "SELECT count(*) FROM plan_subscriptions WHERE customer_id % 50 > 1 AND id % 10 <> 0",
    ));
    let ambiguous = rt().block_on(int(&db, AMBIGUOUS));
    let total = rt().block_on(int(&db, "SELECT count(*) FROM plan_subscriptions"));

    let r = run(&db, &spec, &["--format", "json"]);
    assert_eq!(r.code, 0, "{r}");
    let doc: serde_json::Value =
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}){r}"));
    assert_eq!(doc["command"], "backfill", "{doc:#}");
    let b = &doc["backfill"];
    assert_eq!(b["committed"], false, "{doc:#}");
    assert_eq!(b["run_id"], serde_json::Value::Null, "{doc:#}");
    assert_eq!(b["finished"], true, "{doc:#}");
    assert_eq!(b["counters"]["checked"], total, "{doc:#}");
    assert_eq!(b["counters"]["updated"], would_update, "{doc:#}");
    assert_eq!(b["counters"]["ambiguous"], ambiguous, "{doc:#}");
    assert_eq!(
        b["counters"]["batches"], 3,
        "1,200 rows in batches of 400{doc:#}"
    );
    assert!(
        r.stderr.contains("Backfill summary (DRY-RUN"),
        "the summary moves to stderr{r}"
    );

    let r = run(&db, &spec, &["--format", "markdown", "--sample", "1"]);
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.stdout
            .contains("**Backfill** `subscriber_fk` on `public.plan_subscriptions`: sampled (dry-run, rolled back)"),
        "{r}"
    );
    assert!(
        r.stdout.contains("\n| 1 | 400 | "),
        "one batch of 400 rows{r}"
    );

    let out = db.path("outcome.xml");
    let r = run(&db, &spec, &["--format", "junit", "--output", p(&out)]);
    assert_eq!(r.code, 0, "{r}");
    let xml = std::fs::read_to_string(&out).expect("the JUnit file");
    assert!(
        xml.contains("<testsuites name=\"migval\" tests=\"0\""),
        "{xml}"
    );
    for (name, value) in [
        ("backfill_end", "finished".to_string()),
        ("backfill_committed", "false".to_string()),
        ("backfill_updated", would_update.to_string()),
        ("backfill_ambiguous", ambiguous.to_string()),
    ] {
        let prop = format!("<property name=\"{name}\" value=\"{value}\"/>");
        assert!(xml.contains(&prop), "no {prop}{xml}");
    }
    assert_eq!(before, rt().block_on(text(&db, STATE)), "data unchanged");
}
