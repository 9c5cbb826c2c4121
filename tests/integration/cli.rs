//! The command line as a DBA uses it: exit codes, messages, files.

use crate::check_kinds::{SHOP, SHOP_CHECKS};
use crate::common::{TestDb, migval, migval_env, p, rt, snapshot_to, status};

fn shop(name: &str) -> TestDb {
    rt().block_on(async {
        let db = TestDb::new(name).await;
        db.exec(SHOP).await;
        db
    })
}

#[test]
fn spec_errors_name_the_file_line_check_and_key() {
    let db = rt().block_on(TestDb::new("cli_spec_errors"));
    let spec = db.file(
        "bad.toml",
        r#"[[check]]
name = "fine"
table = "orders"

[[check]]
name = "typo in tolerance"
table = "orders"
metrics = ["sum(amount)"]
tolerance = { abs = "one cent" }

[[check]]
name = "two kinds"
table = "orders"
null_count = "orders.amount"
"#,
    );
    let r = migval(&[
        "snapshot",
        "--spec",
        p(&spec),
        "--out",
        p(&db.path("b.json")),
        "--db",
        &db.url,
    ]);
    assert_eq!(r.code, 2, "{r}");
    let file = p(&spec);
    assert!(
        r.stderr.contains(&format!(
            "{file}:9: check `typo in tolerance`, key `tolerance.abs`"
        )),
        "{r}"
    );
    assert!(
        r.stderr.contains(&format!("{file}:11: check `two kinds`")),
        "{r}"
    );
    assert!(r.stderr.contains("the spec has 2 errors"), "{r}");

    let unknown = db.file(
        "unknown.toml",
        "[[check]]\nname = \"x\"\ntable = \"orders\"\ngroup = [\"status\"]\n",
    );
    let r = migval(&[
        "snapshot",
        "--spec",
        p(&unknown),
        "--out",
        p(&db.path("b.json")),
        "--db",
        &db.url,
    ]);
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr.contains("unknown.toml:4") && r.stderr.contains("unknown field `group`"),
        "{r}"
    );
}

#[test]
fn one_failing_check_is_an_error_with_sqlstate_and_the_others_still_run() {
    let db = shop("cli_one_error");
    let spec_text = format!(
        "{SHOP_CHECKS}\n[[check]]\nname = \"fragile ratio\"\nsql = \"SELECT 1 AS k, 100 / (count(*) - 100) AS ratio FROM orders WHERE status <> 'gone'\"\nkey = [\"k\"]\n"
    );
    let spec = db.file("checks.toml", &spec_text);
    let base = db.path("base.json");
    // 100 orders at baseline: division by zero already then.
    let r = snapshot_to(&db, &spec, &base);
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr
            .contains("ERROR check `fragile ratio`: division by zero (SQLSTATE 22012)"),
        "{r}"
    );
    assert!(
        base.exists(),
        "the baseline of the other checks is still written"
    );
    let r = migval(&[
        "verify",
        "--spec",
        p(&spec),
        "--baseline",
        p(&base),
        "--db",
        &db.url,
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 2, "{r}");
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(status(&report, "fragile ratio"), "ERROR");
    assert_eq!(
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "fragile ratio")
            .unwrap()["error"]["sqlstate"],
        "22012"
    );
    assert_eq!(
        report["verdict"]["passed"], 16,
        "every other check ran and passed"
    );
    let text = migval(&[
        "verify",
        "--spec",
        p(&spec),
        "--baseline",
        p(&base),
        "--db",
        &db.url,
    ]);
    assert!(
        text.stdout
            .contains("VALIDATION FAILED: 1 of 17 checks (1 could not be evaluated)"),
        "{text}"
    );
}

#[test]
fn a_corrupted_or_truncated_baseline_is_refused() {
    let db = shop("cli_corrupt");
    let spec = db.file("checks.toml", SHOP_CHECKS);
    let base = db.path("base.json");
    let r = snapshot_to(&db, &spec, &base);
    assert_eq!(r.code, 0, "{r}");
    let text = std::fs::read_to_string(&base).unwrap();
    let tampered = text.replacen("\"5000.00\"", "\"5000.01\"", 1);
    assert_ne!(text, tampered, "the baseline holds the exact sum");
    std::fs::write(&base, tampered).unwrap();
    let r = migval(&[
        "verify",
        "--spec",
        p(&spec),
        "--baseline",
        p(&base),
        "--db",
        &db.url,
    ]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("checksum mismatch"), "{r}");
    std::fs::write(&base, &text[..text.len() / 2]).unwrap();
    let r = migval(&[
        "verify",
        "--spec",
        p(&spec),
        "--baseline",
        p(&base),
        "--db",
        &db.url,
    ]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("checksum mismatch"), "{r}");
}

#[test]
fn a_password_in_the_url_is_never_printed_or_stored() {
    let db = shop("cli_password");
    let secret = "S3cr3t-Pa55word-xyz";
    rt().block_on(db.exec(&format!(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'auditor') THEN CREATE ROLE auditor LOGIN SUPERUSER; END IF; END $$;
         ALTER ROLE auditor PASSWORD '{secret}';"
    )));
    let url = db.url.replacen(
        "postgres://postgres@",
        &format!("postgres://auditor:{secret}@"),
        1,
    );
    let spec = db.file("checks.toml", SHOP_CHECKS);
    let base = db.path("base.json");
    let mut outputs = Vec::new();
    outputs.push(migval(&[
        "snapshot",
        "--spec",
        p(&spec),
        "--out",
        p(&base),
        "--db",
        &url,
    ]));
    assert_eq!(outputs[0].code, 0, "{}", outputs[0]);
    for format in ["text", "json", "markdown", "junit"] {
        outputs.push(migval(&[
            "verify",
            "--spec",
            p(&spec),
            "--baseline",
            p(&base),
            "--db",
            &url,
            "--format",
            format,
        ]));
    }
    // Through DATABASE_URL, and a connection error that must still mask it.
    outputs.push(migval_env(
        &["verify", "--spec", p(&spec), "--baseline", p(&base)],
        &[("DATABASE_URL", &url)],
    ));
    let bad = url.replacen(&format!("/{}", db.name), "/no_such_database", 1);
    let r = migval(&[
        "verify",
        "--spec",
        p(&spec),
        "--baseline",
        p(&base),
        "--db",
        &bad,
    ]);
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr.contains("auditor:***@"),
        "the target is shown masked: {r}"
    );
    outputs.push(r);
    outputs.push(migval_env(&["--help"], &[("DATABASE_URL", &url)]));
    outputs.push(migval_env(&["verify", "--help"], &[("DATABASE_URL", &url)]));
    for o in &outputs {
        assert!(!o.all().contains(secret), "password leaked{o}");
    }
    let stored = std::fs::read_to_string(&base).unwrap();
    assert!(!stored.contains(secret), "password stored in the baseline");
    assert!(
        stored.contains("auditor:***@"),
        "the baseline records the masked target"
    );
}

#[test]
fn a_spec_changed_since_the_baseline_names_the_changed_checks() {
    let db = shop("cli_spec_drift");
    let spec = db.file("checks.toml", SHOP_CHECKS);
    let base = db.path("base.json");
    assert_eq!(
        migval(&[
            "snapshot",
            "--spec",
            p(&spec),
            "--out",
            p(&base),
            "--db",
            &db.url
        ])
        .code,
        0
    );
    let changed = SHOP_CHECKS.replace(
        "metrics = [\"count(*)\", \"sum(amount)\"]",
        "metrics = [\"count(*)\", \"max(amount)\"]",
    );
    std::fs::write(&spec, changed).unwrap();
    let r = migval(&[
        "verify",
        "--spec",
        p(&spec),
        "--baseline",
        p(&base),
        "--db",
        &db.url,
    ]);
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stdout.contains(
            "check `revenue per status`: its definition changed since the baseline was taken"
        ),
        "{r}"
    );
    assert!(
        r.stdout
            .contains("the spec changed since the baseline was taken"),
        "{r}"
    );
}

#[test]
fn report_formats_and_diff_of_two_saved_snapshots() {
    let db = shop("cli_formats");
    let spec = db.file("checks.toml", SHOP_CHECKS);
    let base = db.path("base.json");
    let after = db.path("after.json");
    assert_eq!(
        migval(&[
            "snapshot",
            "--spec",
            p(&spec),
            "--out",
            p(&base),
            "--db",
            &db.url
        ])
        .code,
        0
    );
    rt().block_on(db.exec("UPDATE orders SET amount = amount * 2 WHERE id = 7"));
    let junit_path = db.path("report.xml");
    let r = migval(&[
        "verify",
        "--spec",
        p(&spec),
        "--baseline",
        p(&base),
        "--db",
        &db.url,
        "--save-after",
        p(&after),
        "--format",
        "junit",
        "--output",
        p(&junit_path),
    ]);
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.stdout.contains("VALIDATION FAILED: 4 of 16 checks"),
        "{r}"
    );
    let junit = std::fs::read_to_string(&junit_path).unwrap();
    assert!(
        junit.contains("<testsuites name=\"migval\" tests=\"16\" failures=\"4\" errors=\"0\">"),
        "{junit}"
    );
    assert_eq!(junit.matches("<failure ").count(), 4, "{junit}");

    let md = migval(&["diff", p(&base), p(&after), "--format", "markdown"]);
    assert_eq!(md.code, 1, "{md}");
    assert!(
        md.stdout
            .starts_with("## ❌ VALIDATION FAILED: 4 of 16 checks"),
        "{md}"
    );
    assert!(md.stdout.contains("| **FAIL** | order totals |"), "{md}");
    assert!(md.stdout.contains("```sql"), "{md}");

    let text = migval(&["diff", p(&base), p(&after)]);
    assert_eq!(text.code, 1, "{text}");
    assert!(
        text.stdout
            .contains("worst 1 groups by absolute difference"),
        "{text}"
    );
    assert!(
        text.stdout
            .trim_end()
            .ends_with("VALIDATION FAILED: 4 of 16 checks"),
        "{text}"
    );

    // A snapshot is not a spec, and diff without changes passes.
    let same = migval(&["diff", p(&base), p(&base), "--format", "json"]);
    assert_eq!(same.code, 0, "{same}");
    let json: serde_json::Value = serde_json::from_str(&same.stdout).unwrap();
    assert_eq!(json["verdict"]["passed"], 16);
}

#[test]
fn version_names_the_commit_and_the_optional_features() {
    let r = migval(&["--version"]);
    assert_eq!(r.code, 0, "{r}");
    let line = r.stdout.trim();
    assert!(
        line.starts_with(&format!("migval {}", env!("CARGO_PKG_VERSION"))),
        "{r}"
    );
    assert!(line.contains("(commit "), "{r}");
    assert!(line.contains("parquet"), "{r}");
}

#[test]
fn a_reader_that_goes_away_ends_the_report_quietly_with_the_verdicts_exit_code() {
    let db = crate::common::world(
        "cli_broken_pipe",
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10);",
    );
    let (run, _) =
        crate::common::snapshot_then(&db, "[[check]]\nname = \"rows\"\ntable = \"t\"\n", || {
            rt().block_on(db.exec("INSERT INTO t VALUES (11)"))
        });
    assert_eq!(run.code, 1, "{run}");
    // `| true` exits before migval writes: every write meets a closed pipe.
    let bin = env!("CARGO_BIN_EXE_migval");
    let script = format!(
        "set -o pipefail; '{bin}' verify --spec '{}' --baseline '{}' --db '{}' | true",
        p(&db.path("checks.toml")),
        p(&db.path("base.json")),
        db.url
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .env("NO_COLOR", "1")
        .output()
        .expect("bash");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the verdict's code, not 101: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn the_servers_context_line_is_kept_with_sqlstate_detail_and_hint() {
    let db = crate::common::world(
        "cli_server_context",
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);
         CREATE FUNCTION boom(x int) RETURNS int LANGUAGE plpgsql AS $$
         BEGIN
           IF x > 0 THEN RAISE EXCEPTION 'boom %', x USING DETAIL = 'd', HINT = 'h'; END IF;
           RETURN x;
         END $$;",
    );
    let spec = db.file(
        "checks.toml",
        "[[check]]\nname = \"calls boom\"\nsql = \"SELECT boom(id) AS v FROM t\"\n",
    );
    let base = db.path("base.json");
    let r = snapshot_to(&db, &spec, &base);
    assert!(
        r.all()
            .contains("CONTEXT:  PL/pgSQL function boom(integer) line 3 at RAISE"),
        "{r}"
    );
    assert!(r.all().contains("HINT:  h"), "{r}");
    let json = std::fs::read_to_string(&base).unwrap_or_default();
    assert!(
        json.contains("\"server_context\""),
        "kept in the snapshot file too"
    );
}
