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
            "BEGIN;\nALTER TABLE accounts ADD COLUMN x int;\nCOMMIT;\n",
            "manages the transaction itself",
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
