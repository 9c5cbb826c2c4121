//! Golden files of a real run: the seed-000 broken migration (fee_rename, the recreated view
//! double-counting some companies) captured on PostgreSQL (`verify --save-after`), then `migval diff` of the two files
//! rendered as JSON, text, Markdown and JUnit. Everything the engine writes into the report
//! (check kinds, scopes, rules, summaries, SQL) is pinned; what differs between runs (times,
//! the server's address and version, snapshot ids, LSNs, durations, the spec's path) is
//! redacted: insta redactions for the JSON (which also leaves out the SQL text, pinned by the
//! unit golden files), [`normalise`] for the text formats. The snapshots
//! are in `tests/integration/snapshots/`; review a change with `cargo insta review`.

use crate::common::{TestDb, migval, p, rt, snapshot_to};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/fee_rename");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{DIR}/{name}")).expect("fixture file")
}

/// `text` with every value that differs between runs replaced by a placeholder, the values
/// taken from the JSON report of the same two files.
fn normalise(text: &str, report: &serde_json::Value) -> String {
    let mut out = text.to_string();
    let spec = report["spec_path"].as_str().unwrap_or_default();
    if !spec.is_empty() {
        out = out.replace(spec, "[spec]");
    }
    for side in ["baseline", "after"] {
        let o = &report[side];
        // Durations first: "1234 ms on 4 connection(s)" (HTML) and JUnit's time="1.234".
        if let Some(ms) = o["duration_ms"].as_u64() {
            let seconds = format!("time=\"{}.{:03}\"", ms / 1000, ms % 1000);
            out = out.replace(&seconds, "time=\"[seconds]\"");
        }
        for (field, placeholder) in [
            ("captured_at", "[time]"),
            ("target", "[target]"),
            ("server_version", "[version]"),
            ("snapshot_id", "[snapshot]"),
            ("lsn", "[lsn]"),
        ] {
            if let Some(v) = o[field].as_str().filter(|v| !v.is_empty()) {
                out = out.replace(v, placeholder);
            }
        }
    }
    out
}

#[test]
fn the_broken_fee_rename_migration_reads_the_same_in_every_format() {
    let db = rt().block_on(async {
        let db = TestDb::new("golden_fee_rename").await;
        db.exec(&fixture("schema.sql")).await;
        db.exec("SELECT fee_rename_generate(300)").await;
        db
    });
    let spec = format!("{DIR}/checks.toml");
    let base = db.path("base.json");
    let r = snapshot_to(&db, std::path::Path::new(&spec), &base);
    assert_eq!(r.code, 0, "{r}");
    rt().block_on(db.exec(&format!(
        "BEGIN;\n{}\nCOMMIT;",
        fixture("migration_broken.sql")
    )));
    // The post-state, renames applied, kept in a file: every format renders the same two.
    let after = db.path("after.json");
    let r = migval(&[
        "verify",
        "--spec",
        &spec,
        "--baseline",
        p(&base),
        "--db",
        &db.url,
        "--save-after",
        p(&after),
    ]);
    assert_eq!(r.code, 1, "the broken migration fails{r}");

    let diff = |format: &str| {
        let r = migval(&["diff", p(&base), p(&after), "--format", format]);
        assert_eq!(r.code, 1, "the broken migration fails{r}");
        r.stdout
    };
    let json_text = diff("json");
    let report: serde_json::Value = serde_json::from_str(&json_text).expect("a JSON report");
    insta::assert_json_snapshot!("fee_rename_broken.json", report, {
        ".spec_path" => "[spec]",
        ".*.captured_at" => "[time]",
        ".*.duration_ms" => "[ms]",
        ".*.connections" => "[connections]",
        ".*.target" => "[target]",
        ".*.server_version" => "[version]",
        ".*.snapshot_id" => "[snapshot]",
        ".*.lsn" => "[lsn]",
        // The queries' text changes with every edit of queries/*.sql: pinned elsewhere (the
        // unit golden files and the catalogue test), not here.
        ".checks[].baseline_sql" => "[sql]",
        ".checks[].after_sql" => "[sql]",
    });
    for (format, name) in [
        ("text", "fee_rename_broken.txt"),
        ("markdown", "fee_rename_broken.md"),
        ("junit", "fee_rename_broken.junit.xml"),
    ] {
        insta::assert_snapshot!(name, normalise(&diff(format), &report));
    }
}
