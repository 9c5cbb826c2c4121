//! Row proof (`rows = { table, key }`): a fingerprint per row at baseline, compared key by key
//! at verify. Catches what aggregates cannot see (a +250 / -250 pair in one company), NULL ->
//! value, appeared and disappeared rows; a rename alone changes nothing.

use crate::common::{
    check, migval, p, rt, snapshot_then, snapshot_to, status, verify_again, world,
};

const PRODUCTS: &str = r#"
CREATE TABLE client_products (
    id bigint PRIMARY KEY,
    company_id int NOT NULL,
    fixed_cost numeric(12,2),
    status text NOT NULL,
    note json,
    updated_at timestamptz NOT NULL DEFAULT '2025-01-01 00:00+00'
);
INSERT INTO client_products (id, company_id, fixed_cost, status, note)
SELECT g, 1 + g % 10, CASE WHEN g % 50 = 0 THEN NULL ELSE g * 2.50 END,
       CASE WHEN g % 7 = 0 THEN 'archived' ELSE 'active' END,
       json_build_object('g', g)
FROM generate_series(1, 2000) g;
CREATE TABLE control AS SELECT * FROM client_products;
ALTER TABLE control ADD PRIMARY KEY (id);
"#;

fn keys(report: &serde_json::Value, name: &str, scope: &str) -> Vec<String> {
    check(report, name)["worst"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["scope"] == scope)
        .map(|w| w["key"][0].as_str().unwrap_or("").to_string())
        .collect()
}

const SPEC: &str = r#"
[[check]]
name = "every product row"
rows = { table = "client_products", key = ["id"] }

[[check]]
name = "revenue per company"
table = "client_products"
group_by = ["company_id"]
metrics = ["count(*)", "sum(fixed_cost)", "count(fixed_cost)"]

[[check]]
name = "control rows"
rows = { table = "control", key = ["id"] }
"#;

#[test]
fn a_compensating_pair_invisible_to_aggregates_is_caught_with_both_keys() {
    let db = world("rows_compensating", PRODUCTS);
    // +250 on product 11, -250 on product 21: both company 2, totals unchanged. Product 50's
    // NULL cost gets a value and product 60's value becomes NULL (counts unchanged too, as
    // 60 and 50 are both in company 1), product 7 changes status.
    let change = r#"
UPDATE client_products SET fixed_cost = fixed_cost + 250 WHERE id = 11;
UPDATE client_products SET fixed_cost = fixed_cost - 250 WHERE id = 21;
UPDATE client_products SET fixed_cost = 125.00 WHERE id = 50;
UPDATE client_products SET fixed_cost = NULL WHERE id = 60;
UPDATE client_products SET status = 'active' WHERE id = 7;
"#;
    let (run, report) = snapshot_then(&db, SPEC, || rt().block_on(db.exec(change)));
    assert_eq!(run.code, 1, "{run}");
    let rows = check(&report, "every product row");
    assert_eq!(rows["status"], "FAIL", "{run}");
    assert_eq!(rows["groups"]["changed"], 5, "{run}");
    assert_eq!(rows["groups"]["appeared"], 0, "{run}");
    assert_eq!(rows["groups"]["disappeared"], 0, "{run}");
    let mut changed = keys(&report, "every product row", "changed");
    changed.sort();
    assert_eq!(changed, ["11", "21", "50", "60", "7"], "{run}");
    // The aggregates alone would have passed the +250/-250 pair: company 2 is unchanged.
    let revenue = check(&report, "revenue per company");
    let worst = revenue["worst"].to_string();
    assert!(
        !worst.contains("\"2\""),
        "company 2's totals are unchanged: {worst}"
    );
    // The control copy reports no change.
    assert_eq!(status(&report, "control rows"), "PASS", "{run}");
}

#[test]
fn a_rename_alone_changes_nothing_and_an_excluded_column_may_change() {
    let db = world("rows_rename", PRODUCTS);
    let spec = r#"
[rename]
"client_products.fixed_cost" = "client_products.fixed_fee"

[schema]
undeclared = "warn"

[[check]]
name = "rows, every column"
rows = { table = "client_products", key = ["id"], exclude = ["updated_at"] }

[[check]]
name = "rows, two columns"
rows = { table = "client_products", key = ["id"], columns = ["fixed_cost", "status"] }

[[check]]
name = "archived rows may change"
rows = { table = "client_products", key = ["id"], allow_changes = "status = 'archived'" }
"#;
    // The rename, a rewrite of updated_at everywhere, a new column (not fingerprinted: it
    // was not there at baseline), and product 14 (archived) edited.
    let change = r#"
ALTER TABLE client_products RENAME COLUMN fixed_cost TO fixed_fee;
ALTER TABLE client_products ADD COLUMN created_by text DEFAULT 'migration';
UPDATE client_products SET updated_at = now();
UPDATE client_products SET note = '{"g": "edited"}' WHERE id = 14;
"#;
    let (run, report) = snapshot_then(&db, spec, || rt().block_on(db.exec(change)));
    let every = check(&report, "rows, every column");
    assert_eq!(every["groups"]["changed"], 1, "only product 14's note{run}");
    assert_eq!(
        keys(&report, "rows, every column", "changed"),
        ["14"],
        "{run}"
    );
    assert_eq!(status(&report, "rows, two columns"), "PASS", "{run}");
    // updated_at changed on every row: allowed only for archived rows, so the others fail.
    let allowed = check(&report, "archived rows may change");
    assert_eq!(allowed["status"], "FAIL", "{run}");
    assert!(
        allowed["summary"]
            .as_str()
            .unwrap()
            .contains("allowed by allow_changes"),
        "{run}"
    );
    // The post-state values of a listed row are shown.
    let note = every["worst"][0]["note"].as_str().unwrap_or("");
    assert!(note.contains("edited"), "{note}{run}");
    assert_eq!(run.code, 1, "{run}");
}

#[test]
fn appeared_and_disappeared_rows_and_changes_out_lists_every_key() {
    let db = world("rows_appeared", PRODUCTS);
    let change = r#"
DELETE FROM client_products WHERE id IN (3, 4);
INSERT INTO client_products (id, company_id, fixed_cost, status) VALUES (5001, 1, 1, 'active');
UPDATE client_products SET status = 'x' WHERE id BETWEEN 100 AND 129;
"#;
    let spec = "[settings]\nworst_groups = 5\n\n[[check]]\nname = \"rows\"\nrows = { table = \"client_products\", key = [\"id\"] }\n";
    let (run, report) = snapshot_then(&db, spec, || rt().block_on(db.exec(change)));
    assert_eq!(run.code, 1, "{run}");
    let r = check(&report, "rows");
    assert_eq!(r["groups"]["disappeared"], 2, "{run}");
    assert_eq!(r["groups"]["appeared"], 1, "{run}");
    assert_eq!(r["groups"]["changed"], 30, "{run}");
    assert_eq!(
        r["worst"].as_array().unwrap().len(),
        5,
        "the report lists the first 5"
    );
    // --changes-out has all 33.
    let out = db.path("changes.csv");
    let run = verify_again(&db, &["--changes-out", p(&out)]);
    assert_eq!(run.code, 1, "{run}");
    let csv = std::fs::read_to_string(&out).unwrap();
    assert_eq!(csv.lines().count(), 1 + 33, "{csv}");
    assert!(csv.contains("rows,disappeared,3,"), "{csv}");
    assert!(csv.contains("rows,appeared,5001,"), "{csv}");
}

#[test]
fn composite_and_text_keys_and_refused_keys() {
    let db = world(
        "rows_keys",
        r#"
CREATE TABLE lines (tenant text NOT NULL, number int NOT NULL, amount numeric, PRIMARY KEY (tenant, number));
INSERT INTO lines SELECT 't' || g % 3, g, g FROM generate_series(1, 60) g;
CREATE TABLE dup (k int NOT NULL, v int);
INSERT INTO dup VALUES (1, 1), (1, 2), (2, 3);
CREATE TABLE nullkey (k int, v int);
INSERT INTO nullkey VALUES (1, 1), (NULL, 2);
"#,
    );
    let spec = r#"
[[check]]
name = "lines"
rows = { table = "lines", key = ["tenant", "number"] }
"#;
    let (run, report) = snapshot_then(&db, spec, || {
        rt().block_on(db.exec("UPDATE lines SET amount = 0 WHERE tenant = 't1' AND number = 4"))
    });
    assert_eq!(run.code, 1, "{run}");
    let worst = &check(&report, "lines")["worst"][0];
    assert_eq!(worst["key"], serde_json::json!(["t1", "4"]), "{run}");
    // The post-state values of a composite key, found through the key's own types.
    assert_eq!(
        worst["note"], "after: {\"tenant\":\"t1\",\"number\":4,\"amount\":0}",
        "{run}"
    );

    for (table, want) in [
        ("dup", "do not identify rows uniquely"),
        ("nullkey", "a key column has NULLs"),
    ] {
        let spec = db.file(
            "bad.toml",
            &format!(
                "[[check]]\nname = \"bad\"\nrows = {{ table = \"{table}\", key = [\"k\"] }}\n"
            ),
        );
        let r = migval(&[
            "snapshot",
            "--spec",
            p(&spec),
            "--out",
            p(&db.path("bad.json")),
            "--db",
            &db.url,
        ]);
        assert!(r.all().contains(want), "{table}: {want}{r}");
    }
    // No key at all: a spec error with a hint.
    let spec = db.file(
        "nokey.toml",
        "[[check]]\nname = \"nokey\"\nrows = { table = \"lines\" }\n",
    );
    let r = migval(&[
        "snapshot",
        "--spec",
        p(&spec),
        "--out",
        p(&db.path("n.json")),
        "--db",
        &db.url,
    ]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.all().contains("unique NOT NULL column"), "{r}");
}

/// Where the content of an unsigned snapshot file starts (after `{"checksum":"sha256:HEX",`).
const CONTENT: usize = "{\"checksum\":\"sha256:".len() + 66;

/// Rewrite the checksum of an unsigned snapshot file after editing it (as anyone can).
fn rechecksum(bytes: &mut [u8]) {
    use sha2::{Digest, Sha256};
    let sum = migval::integrity::hex(&Sha256::digest(&bytes[CONTENT..]));
    bytes[CONTENT - 66..CONTENT - 2].copy_from_slice(sum.as_bytes());
}

#[test]
fn a_baseline_cut_short_or_tampered_is_refused() {
    let db = world("rows_tampered", PRODUCTS);
    let spec = "[[check]]\nname = \"rows\"\nrows = { table = \"control\", key = [\"id\"] }\n";
    let (run, _) = snapshot_then(&db, spec, || {});
    assert_eq!(run.code, 0, "{run}");
    let base = db.path("base.json");
    let bytes = std::fs::read(&base).unwrap();
    // The fingerprints are a binary section after the JSON line, not JSON cells.
    let json_end = bytes.iter().position(|&b| b == b'\n').unwrap();
    assert!(
        bytes.len() - json_end > 2000 * 18,
        "2,000 rows of key + fingerprint follow the JSON"
    );
    let verify = || {
        migval(&[
            "verify",
            "--spec",
            p(&db.path("checks.toml")),
            "--baseline",
            p(&base),
            "--db",
            &db.url,
        ])
    };
    // Cut short: in the JSON, and in the middle of the section.
    for cut in [json_end / 2, json_end + (bytes.len() - json_end) / 2] {
        std::fs::write(&base, &bytes[..cut]).unwrap();
        let r = verify();
        assert_eq!(r.code, 2, "{r}");
        assert!(r.stderr.contains("checksum mismatch"), "{r}");
    }
    // One byte of a fingerprint edited, the checksum left as it was.
    let mut edited = bytes.clone();
    let last = edited.len() - 1;
    edited[last] ^= 1;
    std::fs::write(&base, &edited).unwrap();
    let r = verify();
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("checksum mismatch"), "{r}");
    // The same edit with the file's checksum recomputed: the section's own SHA-256 (in the
    // JSON) still refuses it, naming the check.
    rechecksum(&mut edited);
    std::fs::write(&base, &edited).unwrap();
    let r = verify();
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stdout
            .contains("the section of check `rows` is cut short or damaged"),
        "{r}"
    );
    // Cut short exactly after the JSON line, checksum recomputed: refused as cut short.
    let mut cut = bytes[..json_end].to_vec();
    rechecksum(&mut cut);
    std::fs::write(&base, &cut).unwrap();
    let r = verify();
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("without its sections"), "{r}");
    // The genuine file still verifies.
    std::fs::write(&base, &bytes).unwrap();
    let r = verify();
    assert_eq!(r.code, 0, "{r}");
}

#[test]
fn a_sectioned_baseline_is_signed_and_hashed_over_every_byte() {
    let db = world("rows_signed", PRODUCTS);
    let spec = db.file(
        "checks.toml",
        "[[check]]\nname = \"rows\"\nrows = { table = \"control\", key = [\"id\"] }\n",
    );
    let base = db.path("base.json");
    let key = "0123456789abcdef0123456789abcdef";
    let key_file = db.file("key", key);
    let snap = migval(&[
        "snapshot",
        "--spec",
        p(&spec),
        "--out",
        p(&base),
        "--db",
        &db.url,
        "--signing-key-file",
        p(&key_file),
    ]);
    assert_eq!(snap.code, 0, "{snap}");
    let printed = snap
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("baseline sha256 "))
        .map(|h| h[..64].to_string())
        .unwrap_or_else(|| panic!("the hash is printed{snap}"));
    let verify = |extra: &[&str]| {
        let mut args = vec![
            "verify",
            "--spec",
            p(&spec),
            "--baseline",
            p(&base),
            "--db",
            &db.url,
        ];
        args.extend_from_slice(extra);
        migval(&args)
    };
    let whole = {
        use sha2::{Digest, Sha256};
        migval::integrity::hex(&Sha256::digest(std::fs::read(&base).unwrap()))
    };
    for extra in [
        vec!["--baseline-sha256", printed.as_str()],
        vec!["--baseline-sha256", whole.as_str()],
        vec!["--signing-key-file", p(&key_file)],
    ] {
        let r = verify(&extra);
        assert_eq!(r.code, 0, "{extra:?}{r}");
    }
    // A section byte edited and the checksum recomputed (signed header: content starts
    // after the signature): the expected hash and the signature both refuse it.
    let mut bytes = std::fs::read(&base).unwrap();
    let content = CONTENT + "\"signature\":\"hmac-sha256:".len() + 66;
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    {
        use sha2::{Digest, Sha256};
        let sum = migval::integrity::hex(&Sha256::digest(&bytes[content..]));
        bytes[CONTENT - 66..CONTENT - 2].copy_from_slice(sum.as_bytes());
    }
    std::fs::write(&base, &bytes).unwrap();
    let r = verify(&["--baseline-sha256", &printed]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("as given with --baseline-sha256"), "{r}");
    let r = verify(&["--signing-key-file", p(&key_file)]);
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr
            .contains("the signature does not match the content"),
        "{r}"
    );
}

#[test]
fn text_keys_under_a_non_c_collation_and_uuid_keys_merge_in_one_order() {
    // Under und-x-icu, 'a' < 'B' < 'c'; byte order (COLLATE "C") is 'B' < 'a' < 'c'. Both
    // sides are read in byte order, so no key is seen as appeared or disappeared.
    let db = world(
        "rows_collation",
        r#"
CREATE TABLE words (w text COLLATE "und-x-icu" PRIMARY KEY, n int);
INSERT INTO words SELECT w, g FROM unnest(ARRAY['a', 'B', 'c', 'D', 'é', 'E', 'ß', 'z', 'Z'])
    WITH ORDINALITY AS x(w, g);
INSERT INTO words SELECT 'w' || g || CASE WHEN g % 2 = 0 THEN 'A' ELSE 'a' END, g
    FROM generate_series(1, 500) g;
CREATE TABLE tokens (id uuid PRIMARY KEY, amount numeric);
INSERT INTO tokens SELECT md5(g::text)::uuid, g FROM generate_series(1, 500) g;
"#,
    );
    let spec = r#"
[[check]]
name = "words"
rows = { table = "words", key = ["w"] }

[[check]]
name = "tokens"
rows = { table = "tokens", key = ["id"] }
"#;
    let (run, report) = snapshot_then(&db, spec, || {
        rt().block_on(db.exec(
            "UPDATE words SET n = 0 WHERE w IN ('B', 'é');
             DELETE FROM words WHERE w = 'c';
             INSERT INTO words VALUES ('Ab', 1);
             UPDATE tokens SET amount = -1 WHERE id = md5('7')::uuid;",
        ))
    });
    assert_eq!(run.code, 1, "{run}");
    let words = check(&report, "words");
    assert_eq!(words["groups"]["changed"], 2, "{run}");
    assert_eq!(words["groups"]["appeared"], 1, "{run}");
    assert_eq!(words["groups"]["disappeared"], 1, "{run}");
    assert_eq!(keys(&report, "words", "changed"), ["B", "é"], "byte order");
    assert_eq!(keys(&report, "words", "appeared"), ["Ab"]);
    assert_eq!(keys(&report, "words", "disappeared"), ["c"]);
    let tokens = check(&report, "tokens");
    assert_eq!(tokens["groups"]["changed"], 1, "{run}");
    assert_eq!(tokens["groups"]["appeared"], 0, "{run}");
    let md5_7 = "8f14e45f-ceea-167a-5a36-dedd4bea2543";
    assert_eq!(keys(&report, "tokens", "changed"), [md5_7]);
    // Post-state values found by uuid and by ICU text keys (a failed lookup would be a note).
    let note = |name: &str| check(&report, name)["worst"][0]["note"].clone();
    assert_eq!(
        note("tokens"),
        format!("after: {{\"id\":\"{md5_7}\",\"amount\":-1}}")
    );
    assert_eq!(
        note("words"),
        "after: {\"w\":\"Ab\",\"n\":1}",
        "first in byte order"
    );
}

#[test]
fn a_rows_check_inside_a_migrate_rehearsal() {
    let db = world("rows_migrate", PRODUCTS);
    let spec = db.file(
        "checks.toml",
        "[schema]\nundeclared = \"warn\"\n\n[[check]]\nname = \"rows\"\nrows = { table = \"client_products\", key = [\"id\"] }\n",
    );
    let good = db.file(
        "good.sql",
        "ALTER TABLE client_products ADD COLUMN x int;\n",
    );
    let r = migval(&["migrate", p(&good), "--spec", p(&spec), "--db", &db.url]);
    assert_eq!(r.code, 0, "a new column is not fingerprinted{r}");
    let bad = db.file(
        "bad.sql",
        "UPDATE client_products SET fixed_cost = fixed_cost * 100 WHERE id = 9;\n",
    );
    let r = migval(&[
        "migrate",
        p(&bad),
        "--spec",
        p(&spec),
        "--db",
        &db.url,
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stdout.contains("\"changed\": 1"), "{r}");
}

#[test]
fn a_baseline_of_the_json_format_still_verifies_against_a_streamed_post_state() {
    use migval::model::{Outcome, Snapshot};
    let db = world("rows_json_baseline", PRODUCTS);
    let spec =
        "[[check]]\nname = \"rows\"\nrows = { table = \"client_products\", key = [\"id\"] }\n";
    let (run, _) = snapshot_then(&db, spec, || {});
    assert_eq!(run.code, 0, "{run}");
    // Rewrite the baseline as migval before sections wrote it: format 1, cells in the JSON.
    let base = db.path("base.json");
    let mut snap = migval::store::read(&base).unwrap();
    assert_eq!(snap.format, Snapshot::FORMAT_SECTIONS);
    for c in &mut snap.checks {
        if let Outcome::Streamed(s) = &c.outcome {
            c.outcome = Outcome::Captured(migval::section::to_table(s, &c.name).unwrap());
        }
    }
    snap.format = Snapshot::FORMAT;
    migval::store::write(&base, &snap).unwrap();
    drop(snap);
    let text = std::fs::read_to_string(&base).unwrap();
    assert!(
        text.contains("\"captured\"") && text.ends_with("}\n"),
        "plain JSON"
    );
    rt().block_on(db.exec("UPDATE client_products SET status = 'x' WHERE id = 17"));
    let r = verify_again(&db, &["--format", "json"]);
    assert_eq!(r.code, 1, "{r}");
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(keys(&report, "rows", "changed"), ["17"], "{r}");
    assert_eq!(check(&report, "rows")["groups"]["changed"], 1, "{r}");
}

/// The fingerprints come from the one exported snapshot like every other probe: with a writer
/// inserting rows throughout the snapshot, the rows that verify finds appeared are exactly the
/// rows the count check (another probe, maybe another connection) saw added, and no row is
/// reported changed.
#[test]
fn a_writer_during_the_snapshot_produces_no_false_changes() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let db = world(
        "rows_consistency",
        "CREATE TABLE accounts (id bigint PRIMARY KEY, balance numeric(12,2) NOT NULL);
         INSERT INTO accounts SELECT g, g % 1000 FROM generate_series(1, 200000) g;
         CREATE SEQUENCE more START 1000001;",
    );
    let spec = db.file(
        "checks.toml",
        r#"
[settings]
parallel = 2

[[check]]
name = "rows"
rows = { table = "accounts", key = ["id"] }

[[check]]
name = "count"
table = "accounts"
metrics = ["count(*)"]
expect = "may_change"
"#,
    );
    let base = db.path("base.json");
    let stop = Arc::new(AtomicBool::new(false));
    let runtime = rt();
    let writer = {
        let url = db.url.clone();
        let stop = stop.clone();
        runtime.spawn(async move {
            let c = crate::common::connect(&url).await;
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                c.batch_execute("INSERT INTO accounts VALUES (nextval('more'), 1)")
                    .await
                    .expect("writer");
                n += 1;
            }
            n
        })
    };
    let snap = snapshot_to(&db, &spec, &base);
    stop.store(true, Ordering::Relaxed);
    let inserted = runtime.block_on(writer).unwrap();
    assert_eq!(snap.code, 0, "{snap}");
    assert!(inserted > 10, "the writer ran ({inserted} rows)");
    let r = verify_again(&db, &["--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let rows = check(&report, "rows");
    let count = &check(&report, "count")["values"][0];
    let added = count["after"].as_i64().unwrap() - count["baseline"].as_i64().unwrap();
    assert!(added > 0, "rows were inserted after the snapshot{r}");
    assert_eq!(rows["groups"]["appeared"], added, "{r}");
    assert_eq!(rows["groups"]["changed"], 0, "{r}");
    assert_eq!(rows["groups"]["disappeared"], 0, "{r}");
    assert_eq!(
        rows["groups"]["baseline_groups"], count["baseline"],
        "the section holds the rows the count saw{r}"
    );
}

#[test]
fn keep_values_shows_each_changed_row_before_and_after() {
    let db = world("rows_keep_values", PRODUCTS);
    let spec = r#"
[settings]
worst_groups = 1

[[check]]
name = "rows"
rows = { table = "client_products", key = ["id"], keep = "values" }
"#;
    let (run, report) = snapshot_then(&db, spec, || {
        rt().block_on(db.exec(
            "UPDATE client_products SET fixed_cost = 1234.56 WHERE id = 8;
             UPDATE client_products SET status = 'gone' WHERE id = 9;
             DELETE FROM client_products WHERE id = 10;",
        ))
    });
    assert_eq!(run.code, 1, "{run}");
    // The baseline's section of values is compressed: smaller than its JSON text.
    let base = std::fs::read(db.path("base.json")).unwrap();
    let json_end = base.iter().position(|&b| b == b'\n').unwrap();
    let head = String::from_utf8_lossy(&base[..json_end]);
    assert!(head.contains("\"compressed\":true"), "{head}");
    assert!(
        base.len() - json_end < 2000 * 60,
        "2,000 rows of values in {} bytes",
        base.len() - json_end
    );
    let worst = &check(&report, "rows")["worst"][0];
    let note = worst["note"].as_str().unwrap_or("");
    assert_eq!(worst["key"], serde_json::json!(["8"]), "{run}");
    assert!(
        note.starts_with("before: {\"id\":8,") && note.contains("\"fixed_cost\":20.00"),
        "{note}"
    );
    assert!(
        note.contains(" -> after: {\"id\":8,") && note.contains("1234.56"),
        "{note}"
    );
    // Past the report's worst 1: --changes-out shows the baseline values of every change.
    let out = db.path("changes.csv");
    let r = verify_again(&db, &["--changes-out", p(&out)]);
    assert_eq!(r.code, 1, "{r}");
    let csv = std::fs::read_to_string(&out).unwrap();
    let line = |id: &str| {
        csv.lines()
            .find(|l| l.contains(&format!(",{id},")))
            .unwrap_or_else(|| panic!("no line for {id}: {csv}"))
            .to_string()
    };
    assert!(line("9").contains("\"\"status\"\":\"\"active\"\""), "{csv}");
    assert!(line("10").starts_with("rows,disappeared,10,"), "{csv}");
    assert!(line("10").contains("before: {\"\"id\"\":10,"), "{csv}");

    // Anything else to keep is refused with what to write.
    let bad = db.file(
        "bad.toml",
        "[[check]]\nname = \"r\"\nrows = { table = \"control\", key = [\"id\"], keep = \"rows\" }\n",
    );
    let r = migval(&[
        "snapshot",
        "--spec",
        p(&bad),
        "--out",
        p(&db.path("b.json")),
        "--db",
        &db.url,
    ]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.all().contains("keep = \"values\""), "{r}");
}
