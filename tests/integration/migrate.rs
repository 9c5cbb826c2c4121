//! Guarded migrations: rehearsal leaves no trace, --commit only on a passing verdict, rollback
//! rehearsal, lock timeouts with retries and the blocker report, refused scripts, external
//! commands.

use std::time::Duration;

use crate::common::{TestDb, migval, p, rt};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/fee_rename");

const ACCOUNTS: &str = r#"
CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, amount numeric(12,2));
INSERT INTO accounts SELECT g, 'owner ' || g, g * 10.25 FROM generate_series(1, 20) g;
"#;

const ACCOUNT_CHECKS: &str = r#"
[settings]
lock_timeout = "300ms"

[[check]]
name = "balances"
table = "accounts"
metrics = ["count(*)", "sum(amount)"]

[[check]]
name = "per account"
sql = "SELECT id, amount FROM accounts"
key = ["id"]
"#;

fn accounts(name: &str) -> TestDb {
    rt().block_on(async {
        let db = TestDb::new(name).await;
        db.exec(ACCOUNTS).await;
        db
    })
}

async fn one_text(db: &TestDb, sql: &str) -> String {
    let c = db.client().await;
    c.query_one(sql, &[])
        .await
        .expect("query")
        .get::<_, String>(0)
}

async fn fee_world(name: &str) -> TestDb {
    let db = TestDb::new(name).await;
    db.exec(&std::fs::read_to_string(format!("{DIR}/schema.sql")).unwrap())
        .await;
    db.exec("SELECT fee_rename_generate(3000)").await;
    db
}

/// Columns, one view's definition and every row of client_products, whatever the column names.
const STATE: &str = "SELECT (SELECT string_agg(column_name, ',' ORDER BY column_name) FROM information_schema.columns WHERE table_name = 'client_products')
    || '|' || pg_get_viewdef('company_revenue_analytics') || '|' || (SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM client_products t)";

#[test]
fn a_rehearsal_shows_the_verdict_and_leaves_no_trace() {
    let db = rt().block_on(fee_world("migrate_rehearsal"));
    let before = rt().block_on(one_text(&db, STATE));
    let r = migval(&[
        "migrate",
        &format!("{DIR}/migration.sql"),
        "--spec",
        &format!("{DIR}/checks.toml"),
        "--db",
        &db.url,
    ]);
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.stdout.contains("== rehearsal: nothing was committed =="),
        "{r}"
    );
    assert!(r.stdout.contains("VALIDATION PASSED (26 checks)"), "{r}");
    assert!(
        r.stdout
            .contains("lock: ACCESS EXCLUSIVE on public.client_products held"),
        "{r}"
    );
    assert!(r.stdout.contains("rename inferred from the script: client_products.fixed_cost -> client_products.fixed_fee_facilitated") || r.stdout.contains("rename:   client_products.fixed_cost"), "{r}");
    let after = rt().block_on(one_text(&db, STATE));
    assert_eq!(
        before, after,
        "catalog and data unchanged after a rehearsal"
    );
    assert!(
        after.starts_with("client_id,created_at,fixed_cost,"),
        "{after}"
    );
}

#[test]
fn commit_happens_only_when_the_verdict_passes() {
    let db = rt().block_on(fee_world("migrate_commit"));
    let before = rt().block_on(one_text(&db, STATE));
    let artifacts = db.path("runs");
    let spec = format!("{DIR}/checks.toml");
    let broken = migval(&[
        "migrate",
        &format!("{DIR}/migration_broken.sql"),
        "--spec",
        &spec,
        "--db",
        &db.url,
        "--commit",
        "--artifacts",
        p(&artifacts),
    ]);
    assert_eq!(broken.code, 1, "{broken}");
    assert!(
        broken
            .stdout
            .contains("rolled back: the verdict failed, nothing was committed"),
        "{broken}"
    );
    assert_eq!(
        before,
        rt().block_on(one_text(&db, STATE)),
        "the broken migration was not committed"
    );

    let good = migval(&[
        "migrate",
        &format!("{DIR}/migration.sql"),
        "--spec",
        &spec,
        "--db",
        &db.url,
        "--commit",
        "--artifacts",
        p(&artifacts),
    ]);
    assert_eq!(good.code, 0, "{good}");
    assert!(
        good.stdout.contains("committed: the verdict passed"),
        "{good}"
    );
    let after = rt().block_on(one_text(&db, STATE));
    assert!(
        after.contains("fixed_fee_facilitated"),
        "the good migration was committed: {after}"
    );
    let runs: Vec<_> = std::fs::read_dir(&artifacts).unwrap().collect();
    assert_eq!(runs.len(), 2, "one artifact folder per --commit run");
    let any = runs
        .into_iter()
        .map(|e| e.unwrap().path())
        .find(|d| d.join("after.json").exists())
        .expect("a run with a post-snapshot");
    for f in ["baseline.json", "after.json", "report.json", "report.md"] {
        assert!(any.join(f).exists(), "{f} written");
    }
}

#[test]
fn rollback_rehearsal_tells_whether_the_rollback_restores_the_state() {
    let db = accounts("migrate_rollback");
    let spec = db.file("checks.toml", ACCOUNT_CHECKS);
    let migration = db.file("up.sql", "ALTER TABLE accounts RENAME COLUMN amount TO balance;\nDELETE FROM accounts WHERE id = 3;\n");
    let incomplete = db.file(
        "down_bad.sql",
        "ALTER TABLE accounts RENAME COLUMN balance TO amount;\n",
    );
    let complete = db.file(
        "down_good.sql",
        "ALTER TABLE accounts RENAME COLUMN balance TO amount;\nINSERT INTO accounts VALUES (3, 'owner 3', 30.75);\n",
    );
    let bad = migval(&[
        "migrate",
        p(&migration),
        "--spec",
        p(&spec),
        "--db",
        &db.url,
        "--rollback",
        p(&incomplete),
    ]);
    assert_eq!(bad.code, 1, "{bad}");
    assert!(bad.stdout.contains("rehearsal of the rollback: nothing was committed; compared with the baseline for exact equality"), "{bad}");
    let rollback_part = bad
        .stdout
        .split_once("rehearsal of the rollback")
        .map_or("", |x| x.1);
    assert!(
        rollback_part.contains("VALIDATION FAILED: 2 of 3 checks"),
        "{bad}"
    );
    let good = migval(&[
        "migrate",
        p(&migration),
        "--spec",
        p(&spec),
        "--db",
        &db.url,
        "--rollback",
        p(&complete),
    ]);
    let rollback_part = good
        .stdout
        .split_once("rehearsal of the rollback")
        .map_or("", |x| x.1);
    assert!(
        rollback_part.contains("VALIDATION PASSED (3 checks)"),
        "{good}"
    );
    // The migration itself deletes a row: its own verdict fails, whatever the rollback does.
    assert_eq!(good.code, 1, "{good}");
    let count = rt().block_on(async {
        db.client()
            .await
            .query_one("SELECT count(*) FROM accounts", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    });
    assert_eq!(count, 20, "nothing was committed");
}

#[test]
fn a_lock_held_elsewhere_times_out_retries_and_names_the_blocker() {
    let db = accounts("migrate_locks");
    let spec = db.file(
        "checks.toml",
        &format!("{ACCOUNT_CHECKS}\n[schema]\nexpect = [\"add column accounts.note\"]\n"),
    );
    let migration = db.file("up.sql", "ALTER TABLE accounts ADD COLUMN note text;\n");
    rt().block_on(async {
        let holder = db.client().await;
        let pid: i32 = holder.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
        holder
            .batch_execute("SET application_name = 'nightly_report'; BEGIN; SELECT count(*) FROM accounts; -- holds ACCESS SHARE until commit")
            .await
            .unwrap();
        let (url, m, s) = (db.url.clone(), p(&migration).to_string(), p(&spec).to_string());
        let run = tokio::task::spawn_blocking(move || {
            migval(&["migrate", &m, "--spec", &s, "--db", &url, "--lock-timeout", "200ms", "--lock-retries", "2", "--format", "json"])
        })
        .await
        .unwrap();
        assert_eq!(run.code, 2, "{run}");
        let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        let m = &report["migration"];
        assert_eq!(m["statements"][0]["attempts"], 3, "1 try + 2 retries: {m:#}");
        assert_eq!(m["blockers"][0]["pid"], pid, "{m:#}");
        assert_eq!(m["blockers"][0]["application_name"], "nightly_report");
        let q = m["blockers"][0]["query"].as_str().unwrap();
        assert!(q.contains("SELECT count(*) FROM accounts"), "{m:#}");
        let err = &report["checks"][0]["error"];
        assert_eq!(err["sqlstate"], "55P03", "{err:#}");
        assert!(err["hint"].as_str().unwrap().contains("gave up after 3 attempts"), "{err:#}");

        // Released while migval backs off: a retry succeeds.
        let (url, m, s) = (db.url.clone(), p(&migration).to_string(), p(&spec).to_string());
        let run = tokio::task::spawn_blocking(move || {
            migval(&["migrate", &m, "--spec", &s, "--db", &url, "--lock-timeout", "300ms", "--lock-retries", "8", "--format", "json"])
        });
        tokio::time::sleep(Duration::from_millis(1500)).await;
        holder.batch_execute("COMMIT").await.unwrap();
        let run = run.await.unwrap();
        assert_eq!(run.code, 0, "{run}");
        let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        let attempts = report["migration"]["statements"][0]["attempts"].as_u64().unwrap();
        assert!(attempts > 1, "it had to retry: {report:#}");
    });
}

#[test]
fn scripts_that_cannot_be_rehearsed_are_refused_before_anything_runs() {
    let db = accounts("migrate_refused");
    let spec = db.file("checks.toml", ACCOUNT_CHECKS);
    let cases = [
        (
            "cic.sql",
            "ALTER TABLE accounts ADD COLUMN x int;\n-- fast path\ncreate index concurrently accounts_owner on accounts (owner);\n",
            "up.sql:3: CREATE INDEX CONCURRENTLY cannot run inside a transaction block",
        ),
        (
            "meta.sql",
            "ALTER TABLE accounts ADD COLUMN x int;\n\\i other.sql\n",
            "meta.sql",
        ),
        (
            "tx.sql",
            "BEGIN;\nALTER TABLE accounts ADD COLUMN x int;\nCOMMIT;\nALTER TABLE accounts ADD COLUMN y int;\n",
            "tx.sql:3: `COMMIT` in the middle of the file",
        ),
    ];
    for (name, text, expected) in cases {
        let file = db.file(if name == "cic.sql" { "up.sql" } else { name }, text);
        let r = migval(&["migrate", p(&file), "--spec", p(&spec), "--db", &db.url]);
        assert_eq!(r.code, 2, "{r}");
        assert!(r.stderr.contains(expected), "{name}: {r}");
    }
    let meta = migval(&[
        "migrate",
        p(&db.path("meta.sql")),
        "--spec",
        p(&spec),
        "--db",
        &db.url,
    ]);
    assert!(
        meta.stderr.contains("line 2") && meta.stderr.contains("\\i"),
        "the meta-command and its line: {meta}"
    );
    let cols = rt().block_on(async {
        db.client()
            .await
            .query_one(
                "SELECT count(*) FROM information_schema.columns WHERE table_name = 'accounts'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    });
    assert_eq!(cols, 3, "nothing ran");
}

#[test]
fn dollar_quoted_bodies_with_semicolons_run_intact_and_renames_are_inferred() {
    let db = accounts("migrate_dollar");
    let spec = db.file(
        "checks.toml",
        &format!(
            "{ACCOUNT_CHECKS}\n[[check]]\nname = \"fee function\"\nschema = {{ function = \"fee_of\" }}\n\
             [schema]\nexpect = [\"add function fee_of(numeric)\"]\n"
        ),
    );
    let migration = db.file(
        "up.sql",
        r#"CREATE FUNCTION fee_of(a numeric) RETURNS numeric LANGUAGE plpgsql AS $body$
DECLARE
  f numeric := 0;  -- a comment; with a semicolon
BEGIN
  IF a > 100 THEN f := a * 0.01; END IF;
  RETURN f + length('it''s; fine');
END
$body$;
ALTER TABLE accounts RENAME COLUMN amount TO balance;
SELECT fee_of(balance) FROM accounts WHERE id = 1;
"#,
    );
    let r = migval(&[
        "migrate",
        p(&migration),
        "--spec",
        p(&spec),
        "--db",
        &db.url,
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 0, "{r}");
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let m = &report["migration"];
    assert_eq!(m["statements"].as_array().unwrap().len(), 3, "{m:#}");
    assert_eq!(m["statements"][0]["line"], 1);
    assert_eq!(m["statements"][1]["line"], 9);
    assert_eq!(m["statements"][2]["rows"], 1);
    assert_eq!(m["renames_inferred"][0][0], "accounts.amount");
    assert_eq!(m["renames_inferred"][0][1], "accounts.balance");
    assert_eq!(report["verdict"]["passed"], 4);
    let schema = &report["checks"][3];
    assert_eq!(schema["name"], "schema diff");
    assert!(
        schema["summary"]
            .as_str()
            .unwrap()
            .starts_with("4 changes in public, 0 undeclared"),
        "the rename, the function and its two default grants: {schema:#}"
    );
}

#[test]
fn an_external_command_runs_streamed_and_its_failure_is_an_error_with_its_output() {
    let db = accounts("migrate_external");
    let spec = db.file("checks.toml", ACCOUNT_CHECKS);
    let runs = db.path("runs");
    let refused = migval(&[
        "migrate",
        "--spec",
        p(&spec),
        "--db",
        &db.url,
        "--",
        "sh",
        "-c",
        "true",
    ]);
    assert_eq!(refused.code, 2, "{refused}");
    assert!(refused.stderr.contains("add --commit"), "{refused}");

    let ok = migval(&[
        "migrate",
        "--spec",
        p(&spec),
        "--db",
        &db.url,
        "--commit",
        "--artifacts",
        p(&runs),
        "--",
        "sh",
        "-c",
        "echo upgrading to head",
    ]);
    assert_eq!(ok.code, 0, "{ok}");
    assert!(
        ok.stderr.contains("  | upgrading to head"),
        "output streamed: {ok}"
    );
    assert!(ok.stdout.contains("NOT transactional"), "{ok}");

    let failed = migval(&[
        "migrate",
        "--spec",
        p(&spec),
        "--db",
        &db.url,
        "--commit",
        "--artifacts",
        p(&runs),
        "--format",
        "json",
        "--",
        "sh",
        "-c",
        "echo step 1 done; echo boom >&2; exit 3",
    ]);
    assert_eq!(failed.code, 2, "{failed}");
    let report: serde_json::Value = serde_json::from_str(&failed.stdout).unwrap();
    assert_eq!(report["checks"][0]["status"], "ERROR");
    assert!(
        report["checks"][0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exit status: 3"),
        "{report:#}"
    );
    let output = report["migration"]["command_output"].as_str().unwrap();
    assert!(
        output.contains("step 1 done") && output.contains("boom"),
        "{output}"
    );
    assert_eq!(
        report["verdict"]["passed"], 3,
        "the checks still ran on the state it left"
    );
}

/// Every column, view, index, constraint and policy outside the system schemas, one per line:
/// what a migration changes and a rehearsal must leave as it was.
const CATALOG: &str = "SELECT string_agg(x, E'\\n' ORDER BY x) FROM (
    SELECT format('column %s.%s.%s %s %s %s', table_schema, table_name, column_name, data_type,
                  is_nullable, column_default) AS x
      FROM information_schema.columns
     WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
    UNION ALL
    SELECT format('view %s.%s %s', schemaname, viewname, definition) FROM pg_views
     WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
    UNION ALL
    SELECT format('index %s', indexdef) FROM pg_indexes
     WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
    UNION ALL
    SELECT format('constraint %s %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid))
      FROM pg_constraint WHERE connamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
    UNION ALL
    SELECT format('policy %s.%s %s', schemaname, tablename, policyname) FROM pg_policies
    UNION ALL
    SELECT format('relation %s %s', oid::regclass, relkind) FROM pg_class
     WHERE relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace, 'pg_toast'::regnamespace)
) objects";

/// `migval migrate FILE --spec <fixture>/checks.toml --format json`: exit code, JSON report.
fn migrate_json(db: &TestDb, file: &str, spec: &str) -> (crate::common::Run, serde_json::Value) {
    let r = migval(&[
        "migrate", file, "--spec", spec, "--db", &db.url, "--format", "json",
    ]);
    let report = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("migrate did not print JSON ({e}){r}"));
    (r, report)
}

/// (name, status) of every check of a report.
fn statuses(report: &serde_json::Value) -> Vec<(String, String)> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| (c["name"].to_string(), c["status"].to_string()))
        .collect()
}

/// Each of a fixture's migrations (the good one, then the broken one), wrapped in the file's own
/// `begin` ... `commit` as `psql -f` users write them, rehearses with the same exit code and the
/// same per-check statuses as the file as it is, says that the pair became migval's
/// transaction, and leaves the catalog as it was. The checks are read from the fixture at run
/// time.
fn wrapped_rehearses_like_unwrapped(fixture: &str, test: &str, begin: &str, commit: &str) {
    let dir = format!("{}/fixtures/{fixture}", env!("CARGO_MANIFEST_DIR"));
    let spec = format!("{dir}/checks.toml");
    let db = rt().block_on(async {
        let db = TestDb::new(test).await;
        db.exec(&std::fs::read_to_string(format!("{dir}/schema.sql")).unwrap())
            .await;
        db.exec(&format!("SELECT {fixture}_generate(3000)")).await;
        db
    });
    let before = rt().block_on(one_text(&db, CATALOG));
    let mut codes = Vec::new();
    for (file, expected_code) in [("migration.sql", 0), ("migration_broken.sql", 1)] {
        let text = std::fs::read_to_string(format!("{dir}/{file}")).unwrap();
        // BEGIN, the file, an empty line, COMMIT.
        let commit_line = text.lines().count() + 3;
        let wrapped = db.file(
            &format!("wrapped_{file}"),
            &format!("{begin};\n{text}\n{commit};\n"),
        );
        let (plain, plain_report) = migrate_json(&db, &format!("{dir}/{file}"), &spec);
        let (r, report) = migrate_json(&db, p(&wrapped), &spec);
        assert_eq!(r.code, plain.code, "{file}: same exit code{plain}{r}");
        assert_eq!(
            statuses(&report),
            statuses(&plain_report),
            "{file}: same verdict per check{r}"
        );
        let mode = report["migration"]["mode"].as_str().unwrap_or_default();
        let note = format!(
            "the file's own {} (line 1) and {} (line {commit_line}) wrap it: run as migval's transaction",
            begin.to_uppercase(),
            commit.to_uppercase()
        );
        assert!(mode.contains(&note), "{file}: `{note}` in the report{r}");
        assert_eq!(
            report["migration"]["statements"].as_array().map(Vec::len),
            plain_report["migration"]["statements"]
                .as_array()
                .map(Vec::len),
            "{file}: the same statements ran, BEGIN and COMMIT not among them{r}"
        );
        assert_eq!(
            rt().block_on(one_text(&db, CATALOG)),
            before,
            "{file}: the wrapped rehearsal left a trace"
        );
        codes.push((r.code, expected_code));
    }
    // The good and the broken migration must be told apart, or "same verdict" proves nothing.
    assert_eq!(codes, [(0, 0), (1, 1)], "good passes, broken fails");
}

#[test]
fn wrapped_fee_rename_migrations_rehearse_like_unwrapped() {
    wrapped_rehearses_like_unwrapped("fee_rename", "migrate_wrapped_fee", "BEGIN", "COMMIT");
}

#[test]
fn wrapped_subscriber_schema_migrations_rehearse_like_unwrapped() {
    wrapped_rehearses_like_unwrapped(
        "subscriber_schema",
        "migrate_wrapped_subscriber",
        "BEGIN TRANSACTION",
        "END",
    );
}

#[test]
fn wrapped_account_status_migrations_rehearse_like_unwrapped() {
    wrapped_rehearses_like_unwrapped(
        "account_status",
        "migrate_wrapped_account",
        "START TRANSACTION",
        "COMMIT WORK",
    );
}

#[test]
fn wrapped_status_levels_migrations_rehearse_like_unwrapped() {
    wrapped_rehearses_like_unwrapped(
        "status_levels",
        "migrate_wrapped_status",
        "BEGIN WORK",
        "COMMIT",
    );
}

#[test]
fn a_wrapped_file_commits_with_commit_and_other_transaction_control_is_refused_by_line() {
    let db = accounts("migrate_wrapped_control");
    let spec = db.file(
        "checks.toml",
        &format!("{ACCOUNT_CHECKS}\n[schema]\nexpect = [\"add column accounts.note\"]\n"),
    );
    let columns = || {
        rt().block_on(one_text(
            &db,
            "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = 'accounts'",
        ))
    };
    let refused = [
        (
            "mid_commit.sql",
            "BEGIN;\nALTER TABLE accounts ADD COLUMN note text;\nCOMMIT;\nUPDATE accounts SET note = 'x';\n",
            "mid_commit.sql:3: `COMMIT` in the middle of the file",
        ),
        (
            "rollback.sql",
            "BEGIN;\nALTER TABLE accounts ADD COLUMN note text;\n\nROLLBACK;\n",
            "rollback.sql:4: `ROLLBACK` undoes the file's own changes",
        ),
        (
            "serializable.sql",
            "-- 002\nBEGIN ISOLATION LEVEL SERIALIZABLE;\nALTER TABLE accounts ADD COLUMN note text;\nCOMMIT;\n",
            "serializable.sql:2: `BEGIN ISOLATION LEVEL SERIALIZABLE` asks for ISOLATION LEVEL SERIALIZABLE, which cannot apply",
        ),
        (
            "two.sql",
            "BEGIN;\nALTER TABLE accounts ADD COLUMN note text;\nCOMMIT;\nBEGIN;\nUPDATE accounts SET note = 'x';\nCOMMIT;\n",
            "two.sql:3: `COMMIT` in the middle of the file",
        ),
        (
            "open.sql",
            "BEGIN;\nALTER TABLE accounts ADD COLUMN note text;\n",
            "open.sql:1: `BEGIN` has no matching COMMIT",
        ),
        (
            "chain.sql",
            "BEGIN;\nALTER TABLE accounts ADD COLUMN note text;\nCOMMIT AND CHAIN;\n",
            "chain.sql:3: `COMMIT AND CHAIN` starts a new transaction",
        ),
        (
            "empty.sql",
            "BEGIN;\n-- nothing yet\nCOMMIT;\n",
            "empty.sql: the file holds no SQL statement between its BEGIN (line 1) and COMMIT (line 3)",
        ),
    ];
    for (name, text, expected) in refused {
        let file = db.file(name, text);
        let r = migval(&["migrate", p(&file), "--spec", p(&spec), "--db", &db.url]);
        assert_eq!(r.code, 2, "{name}{r}");
        assert!(r.stderr.contains(expected), "{name}: `{expected}`{r}");
    }
    assert_eq!(columns(), "id,owner,amount", "nothing ran");

    let wrapped = db.file(
        "wrapped.sql",
        "BEGIN;\nALTER TABLE accounts ADD COLUMN note text;\nCOMMIT;\n",
    );
    // --no-transaction would drop the atomicity the file asks for: refused, saying what to do.
    let r = migval(&[
        "migrate",
        p(&wrapped),
        "--spec",
        p(&spec),
        "--db",
        &db.url,
        "--no-transaction",
        "--commit",
    ]);
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr
            .contains("wrapped.sql:1: the file wraps itself in BEGIN ... COMMIT (line 3)")
            && r.stderr.contains("Run it without --no-transaction"),
        "{r}"
    );
    assert_eq!(columns(), "id,owner,amount", "nothing ran");

    // A rollback file may be wrapped too.
    let down = db.file(
        "down.sql",
        "START TRANSACTION;\nALTER TABLE accounts DROP COLUMN note;\nEND;\n",
    );
    let r = migval(&[
        "migrate",
        p(&wrapped),
        "--spec",
        p(&spec),
        "--db",
        &db.url,
        "--rollback",
        p(&down),
    ]);
    assert_eq!(r.code, 0, "{r}");
    let rollback_part = r
        .stdout
        .split_once("== rehearsal of the rollback")
        .map_or("", |x| x.1);
    assert!(
        rollback_part.contains("VALIDATION PASSED (3 checks)")
            && rollback_part
                .contains("the file's own START TRANSACTION (line 1) and END (line 3) wrap it"),
        "{r}"
    );
    assert_eq!(columns(), "id,owner,amount", "nothing was committed");

    let r = migval(&[
        "migrate",
        p(&wrapped),
        "--spec",
        p(&spec),
        "--db",
        &db.url,
        "--commit",
        "--artifacts",
        p(&db.path("runs")),
        "--format",
        "markdown",
    ]);
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.stdout.contains("committed: the verdict passed")
            && r.stdout.contains(
                "the file's own BEGIN (line 1) and COMMIT (line 3) wrap it: run as migval's transaction"
            ),
        "{r}"
    );
    assert!(
        r.stdout.contains("\n| 2 | ")
            && r.stdout
                .contains("| `ALTER TABLE accounts ADD COLUMN note text` |")
            && !r.stdout.contains("| `BEGIN` |")
            && !r.stdout.contains("| `COMMIT` |"),
        "only the statement of line 2 ran{r}"
    );
    assert_eq!(columns(), "id,owner,amount,note", "committed");
}

/// Issue 11, defect 12: the post-migration probes ran in the migration's read-write
/// transaction, so a `sql_after` with a data-modifying CTE ran (its savepoint undid it) and
/// `nextval()` advanced a sequence in a rehearsal (sequences ignore rollbacks). They run
/// read-only now, and the migration still commits afterwards.
#[test]
fn post_migration_probes_run_read_only_and_the_migration_still_commits() {
    let db = accounts("migrate_read_only_probes");
    rt().block_on(db.exec("CREATE SEQUENCE invoice_no"));
    let spec = db.file(
        "checks.toml",
        r#"
[[check]]
name = "balances"
table = "accounts"
metrics = ["count(*)", "sum(amount)"]

[[check]]
name = "writes through a CTE"
sql_after = "WITH x AS (UPDATE accounts SET amount = amount + 1 RETURNING 1) SELECT count(*) AS n FROM x"
expect = "may_change"

[[check]]
name = "takes a number"
sql_after = "SELECT nextval('invoice_no') AS n"
expect = "may_change"
"#,
    );
    let migration = db.file("001.sql", "ALTER TABLE accounts ADD COLUMN note text;\n");
    let r = migval(&[
        "migrate",
        p(&migration),
        "--spec",
        p(&spec),
        "--db",
        &db.url,
        "--format",
        "json",
    ]);
    let report: serde_json::Value =
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("no JSON report ({e}){r}"));
    for name in ["writes through a CTE", "takes a number"] {
        let c = crate::common::check(&report, name);
        assert_eq!(c["status"], "ERROR", "{name}{r}");
        let text = c.to_string();
        assert!(text.contains("read-only transaction"), "{name}: {text}");
        assert!(text.contains("25006"), "{name}: {text}");
    }
    assert_eq!(crate::common::status(&report, "balances"), "PASS", "{r}");
    let seq = rt().block_on(one_text(
        &db,
        "SELECT last_value::text || ':' || is_called::text FROM invoice_no",
    ));
    assert_eq!(seq, "1:false", "nextval() never ran");
    let total = rt().block_on(one_text(&db, "SELECT sum(amount)::text FROM accounts"));
    assert_eq!(total, "2152.50", "the CTE's UPDATE never ran");

    // The probes' read-only mode ends with their savepoint: the migration commits.
    let clean = db.file(
        "clean.toml",
        "[schema]\nexpect = [\"add column public.accounts.note\"]\n\n\
         [[check]]\nname = \"balances\"\ntable = \"accounts\"\nmetrics = [\"count(*)\", \"sum(amount)\"]\n",
    );
    let two = db.file(
        "002.sql",
        "ALTER TABLE accounts ADD COLUMN note text;\nUPDATE accounts SET note = 'n';\n",
    );
    let r = migval(&[
        "migrate",
        p(&two),
        "--spec",
        p(&clean),
        "--db",
        &db.url,
        "--commit",
        "--artifacts",
        p(&db.path("runs")),
    ]);
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("committed: the verdict passed"), "{r}");
    let notes = rt().block_on(one_text(
        &db,
        "SELECT count(*)::text FROM accounts WHERE note = 'n'",
    ));
    assert_eq!(notes, "20", "committed");
}

/// Fault catalogue: statement k of n fails under --commit. Nothing of statements 1..k-1 stays
/// (the catalog is exactly as before), statement k+1 never ran, and no lock is left behind.
#[test]
fn a_failure_at_statement_k_of_n_leaves_the_catalog_unchanged_and_no_lock() {
    let db = accounts("migrate_fails_at_k");
    const CATALOG: &str = "SELECT md5(string_agg(c.relname || ':' || coalesce(a.attname, '') || ':' \
        || coalesce(format_type(a.atttypid, a.atttypmod), ''), ',' ORDER BY c.relname, a.attnum)) \
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
        LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
        WHERE n.nspname = 'public'";
    let before = rt().block_on(one_text(&db, CATALOG));
    let data_before = rt().block_on(one_text(&db, "SELECT sum(amount)::text FROM accounts"));
    let spec = db.file("checks.toml", ACCOUNT_CHECKS);
    let migration = db.file(
        "001.sql",
        "CREATE TABLE audit (id int PRIMARY KEY);\n\
         ALTER TABLE accounts ADD COLUMN cents bigint;\n\
         UPDATE accounts SET amount = amount * 2;\n\
         UPDATE accounts SET cents = (amount * 100)::bigint / (id - id);\n\
         CREATE INDEX accounts_cents ON accounts (cents);\n",
    );
    let r = migval(&[
        "migrate",
        p(&migration),
        "--spec",
        p(&spec),
        "--db",
        &db.url,
        "--commit",
        "--artifacts",
        p(&db.path("runs")),
    ]);
    assert_eq!(r.code, 2, "{r}");
    let out = r.all();
    assert!(
        out.contains("line 4"),
        "the failing statement is named by line{r}"
    );
    assert!(out.contains("division by zero"), "{r}");
    assert!(out.contains("22012"), "{r}");
    assert!(!out.contains("committed: the verdict passed"), "{r}");
    assert_eq!(
        before,
        rt().block_on(one_text(&db, CATALOG)),
        "statements 1-3 were rolled back, 5 never ran"
    );
    assert_eq!(
        data_before,
        rt().block_on(one_text(&db, "SELECT sum(amount)::text FROM accounts")),
        "statement 3's UPDATE was rolled back"
    );
    // No session left: the server ends migval's backends as it exits (within a moment on a
    // loaded machine), then no lock is left: another session gets ACCESS EXCLUSIVE at once.
    rt().block_on(async {
        let c = db.client().await;
        let t0 = std::time::Instant::now();
        loop {
            let left: i64 = c
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                     AND application_name = 'migval' AND pid <> pg_backend_pid()",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if left == 0 {
                break;
            }
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(3),
                "{left} migval session(s) still there 3 s after it exited{r}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        c.batch_execute(
            "SET lock_timeout = '200ms'; BEGIN; LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE; ROLLBACK",
        )
        .await
        .unwrap_or_else(|e| panic!("a lock was left behind: {}", migval::db::failure(&e, None)));
    });
}
