//! What `migval backfill` checks before it writes anything: the dry run changes nothing and
//! reports what would happen; spec mistakes, an INVALID unique index as the key and a broken
//! pending guard are refused before any batch.

use super::*;

#[test]
fn dry_run_changes_nothing_and_reports_what_would_happen() {
    let db = rt().block_on(world("backfill_dry_run", 2000));
    let before = rt().block_on(text(&db, STATE));
    // No replica here: the lag ceiling reads 0 and never holds a batch back.
    let spec = spec_with(&db, "bf.toml", "size = 300\nmax_replication_lag = \"1s\"");
    let r = run(&db, &spec, &[]);
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stderr.contains("DRY-RUN"), "{r}");
    assert!(r.stdout.contains("DRY-RUN: nothing was changed"), "{r}");
    let ambiguous = rt().block_on(int(&db, AMBIGUOUS));
    assert_eq!(summary(&r, "Ambiguous"), ambiguous.to_string(), "{r}");
    assert_eq!(summary(&r, "Total rows checked"), "2,000", "{r}");
    assert!(
        r.stdout.contains("Estimated duration with --commit:"),
        "{r}"
    );
    // The dry-run's own log lists the rows that would be left alone.
    let csv = std::fs::read_to_string(db.path("rows.csv")).expect("dry-run log");
    assert_eq!(
        i64::try_from(csv.lines().count() - 1).unwrap(),
        ambiguous,
        "{csv}"
    );
    assert_eq!(before, rt().block_on(text(&db, STATE)), "data unchanged");
    assert_eq!(
        rt().block_on(int(&db, "SELECT count(*) FROM update_counts")),
        0
    );
    let schema = rt().block_on(int(
        &db,
        "SELECT count(*) FROM pg_namespace WHERE nspname = 'migval'",
    ));
    assert_eq!(schema, 0, "a dry-run creates no progress table");
}

#[test]
fn spec_mistakes_are_reported_before_any_batch() {
    let db = rt().block_on(world("backfill_bad_spec", 100));
    let spec = spec_with(&db, "bf.toml", "size = 10");
    let text = std::fs::read_to_string(&spec).unwrap();
    let typo = db.file(
        "typo.toml",
        &text.replace(
            "pending = \"subscriber_id IS NULL\"",
            "pending = \"subscriber IS NULL\"",
        ),
    );
    let r = run(&db, &typo, &["--commit", "--yes"]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("key `pending` does not run"), "{r}");
    assert!(r.stderr.contains("42703"), "{r}");
    let not_unique = db.file(
        "nu.toml",
        &text.replace("key = [\"id\"]", "key = [\"customer_id\"]"),
    );
    let r = run(&db, &not_unique, &[]);
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr
            .contains("is not the primary key or a unique constraint"),
        "{r}"
    );
    let schema = rt().block_on(int(
        &db,
        "SELECT count(*) FROM pg_namespace WHERE nspname = 'migval'",
    ));
    assert_eq!(schema, 0, "nothing written");
}

/// Issue 11, defect 8: a failed `CREATE UNIQUE INDEX CONCURRENTLY` on duplicate data leaves an
/// INVALID unique index that enforces nothing; batching on it would skip or miscount rows.
#[test]
fn an_invalid_unique_index_is_refused_as_a_backfill_key() {
    let db = rt().block_on(async {
        let db = TestDb::new("backfill_invalid_index").await;
        db.exec(
            "CREATE TABLE items (id int PRIMARY KEY, code int NOT NULL, label text);
             INSERT INTO items SELECT g, g % 75, NULL FROM generate_series(1, 100) g;",
        )
        .await;
        let c = db.client().await;
        let failed = c
            .batch_execute("CREATE UNIQUE INDEX CONCURRENTLY items_code_key ON items (code)")
            .await;
        assert!(failed.is_err(), "duplicate codes make the build fail");
        db
    });
    let valid = rt().block_on(int(
        &db,
        "SELECT count(*) FROM pg_index WHERE indexrelid = 'items_code_key'::regclass AND indisvalid",
    ));
    assert_eq!(valid, 0, "the index is left INVALID");
    let spec = db.file(
        "items.toml",
        "name = \"items_label\"\ntable = \"items\"\nkey = [\"code\"]\n\
         pending = \"label IS NULL\"\nset = \"label = 'x' || id\"\n[batch]\nsize = 10\n",
    );
    let r = run(&db, &spec, &["--commit", "--yes"]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("items_code_key"), "{r}");
    assert!(r.stderr.contains("INVALID"), "{r}");
    assert!(r.stderr.contains("DROP INDEX"), "{r}");
    let touched = rt().block_on(int(
        &db,
        "SELECT count(*) FROM items WHERE label IS NOT NULL",
    ));
    assert_eq!(touched, 0, "nothing was changed");
    // Once rebuilt on unique data, the same key is accepted and every row is done once.
    rt().block_on(db.exec(
        "DROP INDEX items_code_key; UPDATE items SET code = id; \
         CREATE UNIQUE INDEX items_code_key ON items (code)",
    ));
    let r = run(&db, &spec, &["--commit", "--yes"]);
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(summary(&r, "Updated successfully:"), "100", "{r}");
}

/// An unterminated `/*` in `pending` would swallow the rest of every generated statement: the
/// spec is refused naming the key and the position, before connecting; a nested comment runs.
#[test]
fn a_pending_guard_with_an_unterminated_block_comment_is_refused() {
    let db = rt().block_on(async {
        let db = TestDb::new("backfill_pending_block_comment").await;
        db.exec(
            "CREATE TABLE items (id int PRIMARY KEY, label text);
             INSERT INTO items SELECT g, NULL FROM generate_series(1, 100) g;",
        )
        .await;
        db
    });
    let spec_for = |pending: &str| {
        db.file(
            "items.toml",
            &format!(
                "name = \"items_label\"\ntable = \"items\"\nkey = [\"id\"]\n\
                 pending = \"{pending}\"\nset = \"label = 'x' || id\"\n[batch]\nsize = 30\n"
            ),
        )
    };
    let bad = run(
        &db,
        &spec_for("label IS NULL /* to do"),
        &["--commit", "--yes"],
    );
    assert_eq!(bad.code, 2, "{bad}");
    assert!(
        bad.stderr.contains("pending")
            && bad
                .stderr
                .contains("opened at character 15 is never closed"),
        "{bad}"
    );
    assert_eq!(
        rt().block_on(int(
            &db,
            "SELECT count(*) FROM items WHERE label IS NOT NULL"
        )),
        0,
        "nothing changed"
    );
    let good = run(
        &db,
        &spec_for("label IS NULL /* to /* still */ do */"),
        &["--commit", "--yes"],
    );
    assert_eq!(good.code, 0, "{good}");
    assert_eq!(summary(&good, "Updated successfully:"), "100", "{good}");
}
