//! Runbook 001 (fixtures/org_customers) end to end: baseline, the two migration files rehearsed
//! as one transaction with the runbook's two-file rollback, committed with a pg_dump backup,
//! verified, rolled back for real (selective, then schema) and verified against the baseline
//! exactly; the broken data migration failing by name; the same files through an external
//! command standing in for `supabase db push`.

use crate::common::{Run, TestDb, migval, p, rt, status};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/org_customers");

/// Enough organisations for every edge case of the generator (no contacts, two Account
/// Owners, created_at ties, NULL and partial addresses, projects without an organisation).
const ORGS: i32 = 1500;

fn fx(file: &str) -> String {
    format!("{DIR}/{file}")
}

pub fn world(test: &str) -> TestDb {
    rt().block_on(async {
        let db = TestDb::new(test).await;
        db.exec(&std::fs::read_to_string(fx("schema.sql")).expect("schema.sql"))
            .await;
        db.exec(&format!("SELECT org_customers_generate({ORGS})"))
            .await;
        db
    })
}

fn int(db: &TestDb, sql: &str) -> i64 {
    rt().block_on(async {
        db.client()
            .await
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get::<_, i64>(0)
    })
}

/// Columns the migration adds that exist now (0 before, 9 after).
pub const NEW_COLUMNS: &str = "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public' \
     AND (table_name, column_name) IN (('organizations', 'address'), ('organizations', 'city'), \
     ('organizations', 'state'), ('organizations', 'country'), ('organizations', 'postal_code'), \
     ('contacts', 'role'), ('contacts', 'is_primary_contact'), ('contacts', 'description'), \
     ('projects', 'customer_organization_id'))";

/// Every report printed (with --rollback, two follow each other).
fn reports(r: &Run) -> Vec<serde_json::Value> {
    let v = serde_json::Deserializer::from_str(&r.stdout)
        .into_iter::<serde_json::Value>()
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("not JSON ({e}){r}"));
    assert!(!v.is_empty(), "no report{r}");
    v
}

fn not_passed(report: &serde_json::Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["status"] != "PASS")
        .map(|c| {
            let text = |k: &str| c[k].as_str().unwrap_or("?").to_string();
            format!("{} ({})", text("name"), text("status"))
        })
        .collect()
}

fn snapshot(db: &TestDb, spec: &str, out: &str) {
    let r = migval(&[
        "snapshot",
        "--spec",
        &fx(spec),
        "--out",
        p(&db.path(out)),
        "--db",
        &db.url,
    ]);
    assert_eq!(r.code, 0, "{r}");
}

#[test]
fn runbook_001_rehearsed_committed_with_a_backup_verified_and_rolled_back_exactly() {
    let db = world("org_customers_story");
    let base = db.path("base.json");
    let restored_base = db.path("restored_base.json");
    snapshot(&db, "checks.toml", "base.json");
    snapshot(&db, "checks_restored.toml", "restored_base.json");
    let (schema, data) = (fx("01_schema.sql"), fx("02_data.sql"));
    let (rb_data, rb_schema) = (fx("rollback_data.sql"), fx("rollback_schema.sql"));
    let spec = fx("checks.toml");

    // 1. Rehearsal of both files in one transaction, and of the runbook's two-file rollback.
    let r = migval(&[
        "migrate",
        &schema,
        &data,
        "--spec",
        &spec,
        "--baseline",
        p(&base),
        "--rollback",
        &rb_data,
        "--rollback",
        &rb_schema,
        "--db",
        &db.url,
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 0, "{r}");
    let rs = reports(&r);
    assert_eq!(rs.len(), 2, "{r}");
    assert_eq!(not_passed(&rs[0]), Vec::<String>::new(), "{r}");
    assert_eq!(
        not_passed(&rs[1]),
        Vec::<String>::new(),
        "the rollback restores it{r}"
    );
    let m = &rs[0]["migration"];
    assert_eq!(m["script"], format!("{schema} + {data}"), "{r}");
    let files: Vec<&str> = m["statements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["file"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(files.first(), Some(&schema.as_str()), "{files:?}");
    assert_eq!(files.last(), Some(&data.as_str()), "{files:?}");
    assert_eq!(files.len(), 11, "6 schema + 5 data statements: {files:?}");
    assert_eq!(
        rs[1]["migration"]["script"],
        format!("{rb_data} + {rb_schema}")
    );
    assert_eq!(int(&db, NEW_COLUMNS), 0, "the rehearsal left nothing");

    // 2. Commit, with a backup taken before the first write.
    let dump = db.path("pre_migration.dump");
    let artifacts = db.path("runs");
    let r = migval(&[
        "migrate",
        &schema,
        &data,
        "--spec",
        &spec,
        "--baseline",
        p(&base),
        "--commit",
        "--backup",
        p(&dump),
        "--artifacts",
        p(&artifacts),
        "--db",
        &db.url,
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 0, "{r}");
    let report = &reports(&r)[0];
    assert_eq!(not_passed(report), Vec::<String>::new(), "{r}");
    assert_eq!(report["backup"]["file"], p(&dump), "{r}");
    let bytes = std::fs::metadata(&dump).expect("the dump exists").len();
    assert_eq!(report["backup"]["bytes"], bytes, "{r}");
    assert!(r.stderr.contains("backup: pg_dump --format=custom"), "{r}");
    assert_eq!(int(&db, NEW_COLUMNS), 9, "committed");
    // The dump is of the database before the migration: its tables, none of the new one.
    let list = std::process::Command::new("pg_restore")
        .args(["--list", p(&dump)])
        .output()
        .expect("pg_restore");
    let list = String::from_utf8_lossy(&list.stdout);
    for t in ["organizations", "contacts", "projects"] {
        assert!(list.contains(&format!("TABLE public {t} ")), "{t}: {list}");
    }
    assert!(!list.contains("project_contact_points"), "{list}");
    // The artifacts name it too.
    let saved = std::fs::read_dir(&artifacts)
        .expect("artifacts")
        .next()
        .expect("one run")
        .expect("entry")
        .path();
    let md = std::fs::read_to_string(saved.join("report.md")).expect("report.md");
    assert!(md.contains("- backup: pg_dump --format=custom"), "{md}");

    // 3. Verify after go-live: the same spec, the same baseline.
    let r = migval(&[
        "verify",
        "--spec",
        &spec,
        "--baseline",
        p(&base),
        "--db",
        &db.url,
    ]);
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("VALIDATION PASSED (36 checks)"), "{r}");
    assert!(
        r.stdout
            .contains("table sizes `table sizes: organizations, contacts, projects`"),
        "the runbook's monitor-table-sizes view{r}"
    );

    // 4. The selective rollback alone does not restore the baseline: the schema diff and the
    //    columns-absent fact say what is left (rehearsal, nothing committed).
    let restored_spec = fx("checks_restored.toml");
    let r = migval(&[
        "migrate",
        &rb_data,
        "--spec",
        &restored_spec,
        "--baseline",
        p(&restored_base),
        "--db",
        &db.url,
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 1, "{r}");
    let report = &reports(&r)[0];
    assert_eq!(status(report, "schema diff"), "FAIL", "{r}");
    assert_eq!(
        status(report, "the migration's columns are gone"),
        "FAIL",
        "{r}"
    );
    assert_eq!(status(report, "every project row as before"), "PASS", "{r}");

    // 5. Selective rollback then schema rollback, for real, committed only because migval
    //    finds the baseline exactly (rows, totals and catalog).
    let r = migval(&[
        "migrate",
        &rb_data,
        &rb_schema,
        "--spec",
        &restored_spec,
        "--baseline",
        p(&restored_base),
        "--commit",
        "--artifacts",
        p(&artifacts),
        "--db",
        &db.url,
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 0, "{r}");
    let report = &reports(&r)[0];
    assert_eq!(not_passed(report), Vec::<String>::new(), "{r}");
    let diff = crate::common::check(report, "schema diff")["summary"]
        .as_str()
        .unwrap_or("");
    assert!(diff.starts_with("no schema change in public"), "{diff}{r}");
    assert_eq!(int(&db, NEW_COLUMNS), 0, "rolled back");

    // 6. Back at the baseline, the broken data migration fails, naming the checks.
    let r = migval(&[
        "migrate",
        &schema,
        &fx("02_data_broken.sql"),
        "--spec",
        &spec,
        "--baseline",
        p(&base),
        "--db",
        &db.url,
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 1, "{r}");
    let report = &reports(&r)[0];
    assert_eq!(
        not_passed(report),
        vec![
            "exactly one primary contact per organisation that has contacts (FAIL)",
            "the primary contact is the first Account Owner, else the first contact (FAIL)",
            "contact points per project (FAIL)",
        ],
        "{r}"
    );
    let two = &crate::common::check(
        report,
        "exactly one primary contact per organisation that has contacts",
    )["values"][0]["after"];
    assert!(
        two.as_str().is_some_and(|v| v != "0") || two.as_i64().is_some_and(|v| v > 0),
        "organisations with two primaries are counted: {two}"
    );
    assert_eq!(int(&db, NEW_COLUMNS), 0, "nothing committed");
}

#[test]
fn a_failure_in_the_second_file_names_it_and_undoes_the_first() {
    let db = world("org_customers_second_fails");
    let bad = db.file(
        "02_bad.sql",
        "UPDATE public.contacts SET role = 'x';\n\nUPDATE public.projects SET customer_organization_id = 999999;\n",
    );
    // A file that cannot be rehearsed is refused before the first file runs.
    let meta = db.file(
        "02_meta.sql",
        "UPDATE public.contacts SET role = 'x';\n\\i more.sql\n",
    );
    let r = migval(&[
        "migrate",
        &fx("01_schema.sql"),
        p(&meta),
        "--spec",
        &fx("checks.toml"),
        "--db",
        &db.url,
    ]);
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr.contains(&format!("{}: line 2: `\\i`", p(&meta))),
        "names the file and line{r}"
    );
    assert_eq!(int(&db, NEW_COLUMNS), 0, "nothing ran");

    let r = migval(&[
        "migrate",
        &fx("01_schema.sql"),
        p(&bad),
        "--spec",
        &fx("checks.toml"),
        "--db",
        &db.url,
        "--commit",
        "--artifacts",
        p(&db.path("runs")),
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 2, "{r}");
    let report = &reports(&r)[0];
    let failed = &report["checks"][0];
    assert_eq!(failed["name"], p(&bad), "{r}");
    assert_eq!(
        failed["error"]["sqlstate"], "23503",
        "the foreign key refuses it{r}"
    );
    let context = failed["error"]["context"].as_str().unwrap_or("");
    assert!(
        context.starts_with(&format!("{}: statement 2 of 2, line 3", p(&bad))),
        "{context}"
    );
    assert!(
        report["banner"]
            .as_str()
            .is_some_and(|b| b.contains("nothing of any file was committed")),
        "{r}"
    );
    let last = report["migration"]["statements"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["file"], p(&bad), "{r}");
    assert_eq!(last["ok"], false, "{r}");
    assert_eq!(int(&db, NEW_COLUMNS), 0, "01_schema.sql was undone too");
}

#[test]
fn the_two_files_through_an_external_command_like_supabase_db_push() {
    let db = world("org_customers_external");
    snapshot(&db, "checks.toml", "base.json");
    let base = db.path("base.json");
    // No connection argument: the command gets PGHOST, PGPORT, PGUSER, PGDATABASE ... of
    // migval's target in its environment (migval's own environment has none of them).
    let script = format!(
        "psql -q -v ON_ERROR_STOP=1 -f {} && psql -q -v ON_ERROR_STOP=1 -f \"$0\"",
        fx("01_schema.sql")
    );
    let run = |data: &str| {
        migval(&[
            "migrate",
            "--spec",
            &fx("checks.toml"),
            "--baseline",
            p(&base),
            "--commit",
            "--artifacts",
            p(&db.path("runs")),
            "--db",
            &db.url,
            "--format",
            "json",
            "--",
            "sh",
            "-c",
            &script,
            data,
        ])
    };
    // The broken data file first: the command succeeds, the verdict fails by name (not
    // transactional: the report says the changes were applied as it ran).
    let r = run(&fx("02_data_broken.sql"));
    assert_eq!(r.code, 1, "{r}");
    let report = &reports(&r)[0];
    assert_eq!(
        status(
            report,
            "exactly one primary contact per organisation that has contacts"
        ),
        "FAIL",
        "{r}"
    );
    assert!(
        report["banner"]
            .as_str()
            .is_some_and(|b| b.contains("NOT transactional")),
        "{r}"
    );
    assert_eq!(
        int(&db, NEW_COLUMNS),
        9,
        "an external command is applied as it runs"
    );

    // The runbook's rollback, then the good files through the same command: PASS.
    rt().block_on(async {
        for f in ["rollback_data.sql", "rollback_schema.sql"] {
            db.exec(&std::fs::read_to_string(fx(f)).unwrap()).await;
        }
    });
    let r = run(&fx("02_data.sql"));
    assert_eq!(r.code, 0, "{r}");
    let report = &reports(&r)[0];
    assert_eq!(not_passed(report), Vec::<String>::new(), "{r}");
    assert!(
        report["migration"]["script"]
            .as_str()
            .is_some_and(|s| s.starts_with("sh -c psql")),
        "{r}"
    );

    // A failing command is an error carrying its output: pushed again, psql stops at the
    // first column that already exists.
    let r = run(&fx("02_data.sql"));
    assert_eq!(r.code, 2, "{r}");
    let report = &reports(&r)[0];
    let first = &report["checks"][0];
    assert_eq!(first["status"], "ERROR", "{r}");
    assert!(
        report["migration"]["command_output"]
            .as_str()
            .is_some_and(|o| o.contains("already exists")),
        "{r}"
    );
}

#[test]
fn files_wrapped_in_their_own_begin_commit_run_as_the_one_transaction() {
    // Migration tools often write each file as BEGIN; ... COMMIT; for psql -f. Both pairs
    // become migval's single transaction: rehearsed together, nothing left behind.
    let db = world("org_customers_wrapped");
    let wrap = |name: &str| {
        let text = std::fs::read_to_string(fx(name)).unwrap();
        db.file(name, &format!("BEGIN;\n{text}\nCOMMIT;\n"))
    };
    let (schema, data) = (wrap("01_schema.sql"), wrap("02_data.sql"));
    let r = migval(&[
        "migrate",
        p(&schema),
        p(&data),
        "--spec",
        &fx("checks.toml"),
        "--db",
        &db.url,
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 0, "{r}");
    let report = &reports(&r)[0];
    assert_eq!(not_passed(report), Vec::<String>::new(), "{r}");
    let mode = report["migration"]["mode"].as_str().unwrap_or("");
    for file in [&schema, &data] {
        assert!(
            mode.contains(&format!("{}: the file's own BEGIN (line 1)", p(file))),
            "{mode}"
        );
    }
    assert_eq!(int(&db, NEW_COLUMNS), 0, "a rehearsal: nothing committed");
}

#[test]
fn without_a_transaction_the_files_before_a_failure_stay_applied_and_the_report_says_where() {
    let db = world("org_customers_no_transaction");
    let bad = db.file(
        "02_bad.sql",
        "SELECT 1;\nSELECT no_such_column FROM projects;\n",
    );
    let r = migval(&[
        "migrate",
        &fx("01_schema.sql"),
        p(&bad),
        "--spec",
        &fx("checks.toml"),
        "--no-transaction",
        "--commit",
        "--artifacts",
        p(&db.path("runs")),
        "--db",
        &db.url,
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 2, "{r}");
    let report = &reports(&r)[0];
    let context = report["checks"][0]["error"]["context"]
        .as_str()
        .unwrap_or("");
    assert!(
        context.starts_with(&format!("{}: statement 2 of 2, line 2", p(&bad))),
        "{context}{r}"
    );
    let mode = report["migration"]["mode"].as_str().unwrap_or("");
    assert!(
        mode.contains("the statements before it are committed"),
        "{mode}"
    );
    assert_eq!(
        int(&db, NEW_COLUMNS),
        9,
        "01_schema.sql was committed statement by statement"
    );
}
