//! `migval backfill --commit` on the normal path: every resolvable row filled exactly once,
//! ambiguous and unmatched rows logged, composite and sparse keys, a statement timeout halving
//! the batch, the seed-002 steps, and a run that finishes while inserts keep arriving.

use super::*;

#[test]
fn commit_fills_every_resolvable_row_once_and_logs_ambiguous_rows() {
    let db = rt().block_on(world("backfill_commit", 3000));
    let spec = spec_with(&db, "bf.toml", "size = 400");
    let r = run(&db, &spec, &["--commit"]);
    assert_eq!(r.code, 2, "no terminal and no --yes: refused{r}");
    assert!(r.stderr.contains("add --yes"), "{r}");
    assert_eq!(
        rt().block_on(int(&db, "SELECT count(*) FROM update_counts")),
        0
    );

    let r = run(&db, &spec, &["--commit", "--yes"]);
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("VALIDATION PASSED"), "{r}");
    rt().block_on(assert_filled_exactly_once(&db));

    // The CSV names each ambiguous row with its reason and candidate count.
    let csv = std::fs::read_to_string(db.path("rows.csv")).expect("row log");
    let ambiguous = rt().block_on(int(&db, AMBIGUOUS));
    let lines: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(i64::try_from(lines.len()).unwrap(), ambiguous, "{csv}");
    assert!(
        csv.starts_with("run,batch,kind,id,reason,candidates\n"),
        "{csv}"
    );
    // Customer 1 has two active subscribers created together; customer 50 none active.
    assert!(
        csv.contains(",ambiguous,1,several active subscribers share the oldest created_at,2\n"),
        "{csv}"
    );
    assert!(
        csv.contains(",ambiguous,100,no active subscriber,0\n"),
        "{csv}"
    );

    // A re-run only does what is left: nothing. With --format json, stdout is the report alone
    // (the summary moves to stderr).
    let again = run(&db, &spec, &["--commit", "--yes", "--format", "json"]);
    assert_eq!(again.code, 0, "{again}");
    let report: serde_json::Value = serde_json::from_str(&again.stdout)
        .unwrap_or_else(|e| panic!("stdout is not the JSON report ({e}){again}"));
    assert_eq!(report["command"], "verify", "{again}");
    let updated = again
        .stderr
        .lines()
        .find(|l| l.starts_with("Updated successfully"))
        .and_then(|l| l.split_whitespace().last());
    assert_eq!(updated, Some("0"), "{again}");
    rt().block_on(assert_filled_exactly_once(&db));
}

const KEYS: &str = r#"
CREATE TABLE events (
    tenant int NOT NULL,
    id bigint NOT NULL,
    label text,
    PRIMARY KEY (tenant, id)
);
INSERT INTO events SELECT t, i, NULL FROM generate_series(1, 3) t, generate_series(1, 250) i;
CREATE TABLE sparse (id bigint PRIMARY KEY, doubled bigint);
INSERT INTO sparse VALUES (1, NULL), (2, NULL), (1000000, NULL), (1000000000000, NULL);
"#;

#[test]
fn composite_and_sparse_keys_terminate_and_cover_every_row() {
    let db = rt().block_on(async {
        let db = TestDb::new("backfill_keys").await;
        db.exec(KEYS).await;
        db
    });
    let composite = db.file(
        "events.toml",
        "name = \"events_label\"\ntable = \"events\"\nkey = [\"tenant\", \"id\"]\n\
         pending = \"label IS NULL\"\nset = \"label = tenant || '/' || id\"\n[batch]\nsize = 7\n",
    );
    let r = run(&db, &composite, &["--commit", "--yes"]);
    assert_eq!(r.code, 0, "{r}");
    // 750 rows in batches of 7: 108 batches, then one that finds no key.
    assert!(r.stdout.contains("Batches: 108 "), "{r}");
    let left = rt().block_on(int(
        &db,
        "SELECT count(*) FROM events WHERE label IS DISTINCT FROM tenant || '/' || id",
    ));
    assert_eq!(left, 0);

    // Sparse keys with a whole UPDATE statement and its two placeholders.
    let sparse = db.file(
        "sparse.toml",
        "name = \"sparse\"\ntable = \"sparse\"\nkey = [\"id\"]\npending = \"doubled IS NULL\"\n\
         update = \"UPDATE sparse SET doubled = id * 2 WHERE id BETWEEN $1 AND $2 AND doubled IS NULL\"\n\
         [batch]\nsize = 1\n",
    );
    let r = run(&db, &sparse, &["--commit", "--yes"]);
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("Batches: 4 "), "{r}");
    let left = rt().block_on(int(
        &db,
        "SELECT count(*) FROM sparse WHERE doubled IS DISTINCT FROM id * 2",
    ));
    assert_eq!(left, 0);
}

#[test]
fn a_statement_timeout_halves_the_batch_until_it_fits() {
    let db = rt().block_on(world("backfill_shrink", 600));
    // 3 ms per row: 400 rows take 1.2 s, over the 500 ms statement_timeout; 100 rows fit.
    rt().block_on(db.exec(
        "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN PERFORM pg_sleep(0.003); RETURN NEW; END $$; \
         CREATE TRIGGER slow BEFORE UPDATE ON plan_subscriptions FOR EACH ROW EXECUTE FUNCTION slow();",
    ));
    let spec = spec_with(&db, "bf.toml", "size = 400\nstatement_timeout = \"500ms\"");
    let r = run(&db, &spec, &["--commit", "--yes"]);
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stderr.contains("batch size 400 -> 200"), "{r}");
    assert!(r.stderr.contains("SQLSTATE 57014"), "{r}");
    rt().block_on(assert_filled_exactly_once(&db));
}

#[test]
fn seed_002_step_1_then_step_2_on_the_subscriber_schema_world() {
    let schema_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/subscriber_schema");
    let db = rt().block_on(async {
        let db = TestDb::new("backfill_seed_002_steps").await;
        db.exec(&std::fs::read_to_string(format!("{schema_dir}/schema.sql")).expect("schema"))
            .await;
        db.exec("SELECT subscriber_schema_generate(3000)").await;
        // Step 1: the migration adds the nullable subscriber_id.
        db.exec(
            &std::fs::read_to_string(format!("{schema_dir}/migration.sql")).expect("migration"),
        )
        .await;
        db
    });
    let spec = format!("{DIR}/after_subscriber_schema.toml");
    let spec = std::path::Path::new(&spec);
    let dry = run(&db, spec, &[]);
    assert_eq!(dry.code, 0, "{dry}");
    let r = run(&db, spec, &["--commit", "--yes"]);
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("VALIDATION PASSED"), "{r}");
    // The NULLs left are exactly the logged rows, and both kinds of ambiguity occur.
    let nulls = rt().block_on(int(
        &db,
        "SELECT count(*) FROM plan_subscriptions WHERE subscriber_id IS NULL",
    ));
    let csv = std::fs::read_to_string(db.path("rows.csv")).expect("row log");
    // The dry-run wrote its own lines first (run `dry-run`); the commit appended run 1's.
    let committed = csv.lines().filter(|l| l.starts_with("1,")).count();
    assert_eq!(i64::try_from(committed).unwrap(), nulls, "{csv}");
    assert!(csv.contains(",no active subscriber,0\n"), "{csv}");
    assert!(
        csv.contains(",several active subscribers share the oldest created_at,2\n"),
        "{csv}"
    );
    assert_eq!(
        summary(&dry, "Updated successfully"),
        summary(&r, "Updated successfully")
    );
}

#[test]
fn rows_the_change_cannot_fill_are_counted_and_logged_as_no_match() {
    let db = rt().block_on(world("backfill_no_match", 1000));
    let spec = spec_with(&db, "bf.toml", "size = 250");
    let text = std::fs::read_to_string(&spec).unwrap();
    // Without the [ambiguity] rule, customers with no active subscriber get no value.
    let cut = text.find("[ambiguity]").expect("[ambiguity]");
    let batch = text.find("[batch]").expect("[batch]");
    let spec = db.file(
        "no_rule.toml",
        &format!("{}{}", &text[..cut], &text[batch..]).replace("checks = ", "# checks = "),
    );
    let r = run(&db, &spec, &["--commit", "--yes"]);
    assert_eq!(r.code, 0, "{r}");
    let expected = rt().block_on(int(
        &db,
        "SELECT count(*) FROM plan_subscriptions WHERE customer_id % 50 = 0 AND subscriber_id IS NULL",
    ));
    assert!(expected > 0);
    assert_eq!(
        summary(&r, "Skipped (no match)"),
        expected.to_string(),
        "{r}"
    );
    let csv = std::fs::read_to_string(db.path("rows.csv")).expect("row log");
    let logged = csv.lines().filter(|l| l.contains(",no_match,")).count();
    assert_eq!(i64::try_from(logged).unwrap(), expected, "{csv}");
}

/// Issue 11, defect 11: a `pending` guard ending in a `-- comment` swallowed the rest of the
/// generated statement and the spec was refused.
#[test]
fn a_pending_guard_ending_in_a_comment_runs() {
    let db = rt().block_on(async {
        let db = TestDb::new("backfill_pending_comment").await;
        db.exec(
            "CREATE TABLE items (id int PRIMARY KEY, label text);
             INSERT INTO items SELECT g, NULL FROM generate_series(1, 100) g;",
        )
        .await;
        db
    });
    let spec = db.file(
        "items.toml",
        "name = \"items_label\"\ntable = \"items\"\nkey = [\"id\"]\n\
         pending = \"label IS NULL -- still to do\"\nset = \"label = 'x' || id -- the new label\"\n\
         [batch]\nsize = 30\n",
    );
    let r = run(&db, &spec, &["--commit", "--yes"]);
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(summary(&r, "Updated successfully:"), "100", "{r}");
    let wrong = rt().block_on(int(
        &db,
        "SELECT count(*) FROM items WHERE label IS DISTINCT FROM 'x' || id",
    ));
    assert_eq!(wrong, 0);
}

/// Issue 11, defect 4: an application inserting pending rows above the cursor faster than the
/// batches go kept the run going (batch 241, `100% 12,050 / 2,380 rows`). The run is bounded by
/// the largest key when it started; later rows are reported, not chased.
#[test]
fn steady_inserts_do_not_keep_a_backfill_running_and_progress_stays_within_100_percent() {
    let db = rt().block_on(async {
        let db = TestDb::new("backfill_steady_inserts").await;
        db.exec(
            "CREATE TABLE items (id bigserial PRIMARY KEY, label text);
             INSERT INTO items (label) SELECT NULL FROM generate_series(1, 1500);",
        )
        .await;
        db
    });
    let spec = db.file(
        "items.toml",
        "name = \"items_label\"\ntable = \"items\"\nkey = [\"id\"]\n\
         pending = \"label IS NULL\"\nset = \"label = 'x' || id\"\n\
         [batch]\nsize = 50\npause = \"30ms\"\n",
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let inserter = {
        let (url, stop) = (db.url.clone(), stop.clone());
        std::thread::spawn(move || {
            rt().block_on(async {
                let c = crate::common::connect(&url).await;
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // 200 pending rows every 10 ms: far faster than batches of 50 every 30 ms.
                    c.batch_execute(
                        "INSERT INTO items (label) SELECT NULL FROM generate_series(1, 200)",
                    )
                    .await
                    .expect("insert");
                    n += 200;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                n
            })
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let before_start = rt().block_on(int(&db, "SELECT max(id) FROM items"));
    let mut child = spawn(&db, &spec, &["--commit", "--yes"]);
    let t0 = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if t0.elapsed() > Duration::from_secs(40) {
            let _ = child.kill();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = inserter.join();
            panic!("the backfill chased the inserts for 40 s{}", finish(child));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let inserted = inserter.join().expect("inserter");
    let r = finish(child);
    assert!(
        inserted > 2000,
        "the application really inserted ({inserted} rows)"
    );
    assert_eq!(r.code, 0, "{r}");
    // Every row there when the run began is done; only rows inserted since are left.
    let left_old = rt().block_on(int(
        &db,
        &format!("SELECT count(*) FROM items WHERE id <= {before_start} AND label IS NULL"),
    ));
    assert_eq!(left_old, 0, "{r}");
    let updated: i64 = summary(&r, "Updated successfully:")
        .replace(',', "")
        .parse()
        .unwrap();
    let labelled = rt().block_on(int(
        &db,
        "SELECT count(*) FROM items WHERE label IS NOT NULL",
    ));
    assert_eq!(updated, labelled, "{r}");
    let new_since: i64 = summary(&r, "New since the run began (not chased):")
        .replace(',', "")
        .parse()
        .unwrap();
    assert!(new_since > 0, "{r}");
    for line in r.stderr.lines().filter(|l| l.starts_with("progress:")) {
        let pct: u64 = line["progress:".len()..]
            .trim_start()
            .split('%')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no percentage in `{line}`"));
        assert!(pct <= 100, "{line}");
        let counts: Vec<u64> = line
            .split("  ")
            .nth(1)
            .unwrap_or("")
            .split(" / ")
            .map(|n| {
                n.trim_end_matches(" rows")
                    .replace(',', "")
                    .parse()
                    .unwrap_or_else(|_| panic!("`{line}`"))
            })
            .collect();
        assert!(
            counts[0] <= counts[1],
            "done never exceeds the total: {line}"
        );
    }
}
