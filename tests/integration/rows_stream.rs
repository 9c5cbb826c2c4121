//! Row proof, streamed: verify merges the post-state against the baseline's section while the
//! rows arrive (nothing written unless the post-state is saved), big tables are read in key
//! ranges on several connections of the one snapshot with the same result as one connection,
//! and no temporary file outlives migval, not even after `kill -9`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::{TestDb, check, migval_env, p, rt, snapshot_to, world};

/// A private temporary directory for migval's spill files (TMPDIR), empty to begin with.
fn private_tmp(db: &TestDb, name: &str) -> PathBuf {
    let dir = db.path(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect()
}

/// `migval verify` with TMPDIR and MIGVAL_TRACE set, JSON report; `extra` arguments appended.
fn verify_traced(
    db: &TestDb,
    spec: &Path,
    base: &Path,
    tmp: &Path,
    extra: &[&str],
) -> (crate::common::Run, serde_json::Value) {
    let mut args = vec![
        "verify",
        "--spec",
        p(spec),
        "--baseline",
        p(base),
        "--db",
        &db.url,
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    let r = migval_env(&args, &[("TMPDIR", p(tmp)), ("MIGVAL_TRACE", "1")]);
    let json = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("verify did not print JSON ({e}){r}"));
    (r, json)
}

/// The lines of a `--changes-out` file after its header, sorted.
fn change_lines(path: &Path) -> Vec<String> {
    let csv = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = csv.lines().skip(1).map(str::to_string).collect();
    lines.sort();
    lines
}

#[test]
fn verify_merges_the_post_state_as_it_arrives_and_writes_no_section() {
    let db = world(
        "rows_stream_arrive",
        r#"
CREATE TABLE products (id bigint PRIMARY KEY, company int NOT NULL, cost numeric(12,2), status text);
INSERT INTO products SELECT g, g % 10, CASE WHEN g % 50 = 0 THEN NULL ELSE g * 1.25 END, 'active'
FROM generate_series(1, 3000) g;
"#,
    );
    let spec = db.file(
        "checks.toml",
        "[[check]]\nname = \"products\"\nrows = { table = \"products\", key = [\"id\"] }\n",
    );
    let base = db.path("base.json");
    let r = snapshot_to(&db, &spec, &base);
    assert_eq!(r.code, 0, "{r}");
    rt().block_on(db.exec(
        "UPDATE products SET cost = cost + 250 WHERE id = 11; \
         UPDATE products SET cost = cost - 250 WHERE id = 21; \
         UPDATE products SET cost = 5 WHERE id = 50; \
         DELETE FROM products WHERE id IN (1, 3000); \
         INSERT INTO products VALUES (0, 1, 1, 'new'), (9999, 1, 1, 'new');",
    ));
    let tmp = private_tmp(&db, "tmp");
    let out = db.path("changes.csv");
    let (r, report) = verify_traced(&db, &spec, &base, &tmp, &["--changes-out", p(&out)]);
    assert_eq!(r.code, 1, "{r}");
    let c = check(&report, "products");
    assert_eq!(c["status"], "FAIL", "{r}");
    assert_eq!(
        (
            &c["groups"]["changed"],
            &c["groups"]["appeared"],
            &c["groups"]["disappeared"],
            &c["groups"]["baseline_groups"],
            &c["groups"]["after_groups"],
        ),
        (
            &serde_json::json!(3),
            &serde_json::json!(2),
            &serde_json::json!(2),
            &serde_json::json!(3000),
            &serde_json::json!(3000),
        ),
        "{r}"
    );
    assert_eq!(
        change_lines(&out)
            .iter()
            .map(|l| l.split(',').take(3).collect::<Vec<_>>().join(","))
            .collect::<Vec<_>>(),
        [
            "products,appeared,0",
            "products,appeared,9999",
            "products,changed,11",
            "products,changed,21",
            "products,changed,50",
            "products,disappeared,1",
            "products,disappeared,3000",
        ],
        "{r}"
    );
    // The new path: compared while the rows arrived, nothing of the post-state written.
    assert!(
        r.stderr.contains("merged as they arrived, nothing written"),
        "{r}"
    );
    assert!(!r.stderr.contains("written to a section"), "{r}");
    assert_eq!(files_in(&tmp), Vec::<String>::new(), "{r}");

    // --save-after keeps the post-state as well: the saved snapshot compares the same way.
    let after = db.path("after.json");
    let (r, saved_report) = verify_traced(&db, &spec, &base, &tmp, &["--save-after", p(&after)]);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("merged as they arrived, and kept"), "{r}");
    assert_eq!(
        check(&saved_report, "products")["groups"],
        c["groups"],
        "{r}"
    );
    let d = migval_env(
        &["diff", p(&base), p(&after), "--format", "json"],
        &[("TMPDIR", p(&tmp))],
    );
    assert_eq!(d.code, 1, "{d}");
    let diffed: serde_json::Value = serde_json::from_str(&d.stdout).unwrap();
    assert_eq!(check(&diffed, "products")["groups"], c["groups"], "{d}");
    assert_eq!(files_in(&tmp), Vec::<String>::new(), "{d}");
}

/// Rows: a bigint-keyed table and a (text, int)-keyed one with mixed-case texts (whose order
/// under the database's collation differs from byte order), both above the size at which a
/// rows check is read in key ranges.
const BIG: &str = r#"
CREATE TABLE big (id bigint PRIMARY KEY, v int NOT NULL, note text);
INSERT INTO big SELECT g * 2, g % 1000, 'n' || g FROM generate_series(1, 120000) g;
CREATE TABLE coded (code text NOT NULL, n int NOT NULL, v int NOT NULL, PRIMARY KEY (code, n));
INSERT INTO coded
SELECT CASE WHEN g % 3 = 0 THEN upper(substr(md5(g::text), 1, 6)) ELSE substr(md5(g::text), 1, 6) END
       || CASE WHEN g % 5 = 0 THEN '_x' ELSE '' END, g % 4, g
FROM generate_series(1, 110000) g
ON CONFLICT DO NOTHING;
ANALYZE big, coded;
"#;

const BIG_CHECKS: &str = r#"
[[check]]
name = "big"
rows = { table = "big", key = ["id"] }

[[check]]
name = "coded"
rows = { table = "coded", key = ["code", "n"] }
"#;

/// The parts' lower bounds of check `name`'s section in a baseline file (its JSON line).
fn part_bounds(base: &Path, name: &str) -> Vec<Option<String>> {
    let bytes = std::fs::read(base).unwrap();
    let end = bytes.iter().position(|&b| b == b'\n').unwrap();
    let json: serde_json::Value = serde_json::from_slice(&bytes[..end]).unwrap();
    let text = json.to_string();
    let snap = &json["snapshot"];
    let checks = if snap.is_null() {
        &json["checks"]
    } else {
        &snap["checks"]
    };
    let c = checks
        .as_array()
        .unwrap_or_else(|| panic!("no checks in {text:.400}"))
        .iter()
        .find(|c| c["name"] == name)
        .unwrap();
    c["outcome"]["streamed"]["parts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| p["from"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_table_read_in_key_ranges_gives_the_one_connection_result_at_every_boundary() {
    let db = world("rows_stream_ranges", BIG);
    let tmp = private_tmp(&db, "tmp");
    let ranged = db.file(
        "ranged.toml",
        &format!("[settings]\nparallel = 3\n{BIG_CHECKS}"),
    );
    let single = db.file(
        "single.toml",
        &format!("[settings]\nparallel = 1\n{BIG_CHECKS}"),
    );
    let (base3, base1) = (db.path("base3.json"), db.path("base1.json"));
    let r = migval_env(
        &[
            "snapshot",
            "--spec",
            p(&ranged),
            "--out",
            p(&base3),
            "--db",
            &db.url,
        ],
        &[("TMPDIR", p(&tmp)), ("MIGVAL_TRACE", "1")],
    );
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stderr.contains("key range 3 of 3"), "{r}");
    let r = snapshot_to(&db, &single, &base1);
    assert_eq!(r.code, 0, "{r}");
    let bounds = part_bounds(&base3, "big");
    assert_eq!(bounds.len(), 3, "three parts: {bounds:?}");
    assert_eq!(bounds[0], None);
    assert!(
        part_bounds(&base1, "big").is_empty(),
        "one connection: one piece"
    );
    let coded_bounds = part_bounds(&base3, "coded");
    assert_eq!(coded_bounds.len(), 3, "{coded_bounds:?}");

    // Changes on both sides of every bound: the bound's own row (the first of its range), the
    // row before it (the last of the range before), one deleted just after it; the first and
    // last rows of the table; rows appearing before the first and after the last key.
    let mut change = String::new();
    for b in bounds.iter().flatten() {
        let b: i64 = b.parse().unwrap();
        change.push_str(&format!(
            "UPDATE big SET v = -1 WHERE id IN ({b}, (SELECT max(id) FROM big WHERE id < {b}));\n\
             DELETE FROM big WHERE id = (SELECT min(id) FROM big WHERE id > {b});\n"
        ));
    }
    change.push_str(
        "UPDATE big SET note = NULL WHERE id IN (2, 240000);\n\
         INSERT INTO big VALUES (1, 0, 'first'), (240001, 0, 'last');\n",
    );
    for b in coded_bounds.iter().flatten() {
        change.push_str(&format!(
            "UPDATE coded SET v = -v WHERE code = '{b}';\n\
             UPDATE coded SET v = -v WHERE code = (SELECT max(code COLLATE \"C\") FROM coded WHERE code COLLATE \"C\" < '{b}');\n\
             INSERT INTO coded VALUES ('{b}', 99, 0);\n"
        ));
    }
    rt().block_on(db.exec(&change));

    let mut results = Vec::new();
    for (base, spec, extra) in [
        (&base3, &ranged, None),
        (&base1, &single, None),
        (&base3, &ranged, Some("--save-after")),
    ] {
        let out = db.path("changes.csv");
        let after = db.path("after.json");
        let mut args = vec!["--changes-out", p(&out)];
        if let Some(flag) = extra {
            args.extend([flag, p(&after)]);
        }
        let (r, report) = verify_traced(&db, spec, base, &tmp, &args);
        assert_eq!(r.code, 1, "{r}");
        if base == &base3 {
            assert!(r.stderr.contains("key range 2 of 3"), "{r}");
        }
        let groups: Vec<serde_json::Value> = ["big", "coded"]
            .iter()
            .map(|n| check(&report, n)["groups"].clone())
            .collect();
        results.push((groups, change_lines(&out), r));
    }
    let (groups, lines, r) = &results[0];
    // big: 2 per bound changed + 2 (first, last), 1 per bound deleted, 2 appeared.
    assert_eq!(groups[0]["changed"], 2 * 2 + 2, "{r}");
    assert_eq!(groups[0]["disappeared"], 2, "{r}");
    assert_eq!(groups[0]["appeared"], 2, "{r}");
    assert_eq!(groups[0]["baseline_groups"], 120_000, "{r}");
    let keys: BTreeSet<&str> = lines
        .iter()
        .filter(|l| l.starts_with("big,"))
        .map(|l| l.split(',').nth(2).unwrap())
        .collect();
    for b in bounds.iter().flatten() {
        assert!(keys.contains(b.as_str()), "bound {b} changed: {keys:?}");
    }
    assert!(keys.contains("2") && keys.contains("240000") && keys.contains("240001"));
    // coded: every row of each bound's code and of the code before it changed, one appeared
    // per bound.
    assert_eq!(groups[1]["appeared"], 2, "{r}");
    assert!(groups[1]["changed"].as_u64().unwrap() >= 4, "{}", groups[1]);
    // The same counts and the same keys, one connection or three, merged as they arrived or
    // kept and compared afterwards.
    for (g, l, r) in &results[1..] {
        assert_eq!(g, groups, "{r}");
        assert_eq!(l, lines, "{r}");
    }
    // The saved post-state was read in the baseline's ranges; two sections of three parts each
    // compare the same way read whole, from their files.
    let after = db.path("after.json");
    assert_eq!(part_bounds(&after, "big"), bounds);
    let d = migval_env(
        &["diff", p(&base3), p(&after), "--format", "json"],
        &[("TMPDIR", p(&tmp))],
    );
    assert_eq!(d.code, 1, "{d}");
    let diffed: serde_json::Value = serde_json::from_str(&d.stdout).unwrap();
    assert_eq!(check(&diffed, "big")["groups"], groups[0], "{d}");
    assert_eq!(check(&diffed, "coded")["groups"], groups[1], "{d}");
    assert_eq!(files_in(&tmp), Vec::<String>::new());
}

#[test]
fn kill_9_during_a_capture_leaves_no_temporary_file() {
    let db = world(
        "rows_stream_kill",
        r#"
CREATE TABLE wide (id bigint PRIMARY KEY, a text, b text);
INSERT INTO wide SELECT g, repeat(md5(g::text), 4), md5((g * 7)::text) FROM generate_series(1, 400000) g;
"#,
    );
    let spec = db.file(
        "checks.toml",
        "[[check]]\nname = \"wide\"\nrows = { table = \"wide\", key = [\"id\"] }\n",
    );
    let tmp = private_tmp(&db, "tmp");
    let out = db.path("base.json");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_migval"))
        .args([
            "snapshot",
            "--spec",
            p(&spec),
            "--out",
            p(&out),
            "--db",
            &db.url,
        ])
        .env("TMPDIR", &tmp)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let fds = PathBuf::from(format!("/proc/{}/fd", child.id()));
    let started = Instant::now();
    // Wait until migval has a spill file open in the temporary directory: mid-capture.
    let spill = loop {
        let open: Vec<String> = std::fs::read_dir(&fds)
            .map(|d| {
                d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                    .map(|t| t.to_string_lossy().to_string())
                    // Unlinked at once (or created without a name, O_TMPFILE): a name seen
                    // between tempfile's create and unlink is not the moment to kill.
                    .filter(|t| t.starts_with(p(&tmp)) && t.ends_with("(deleted)"))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(f) = open.into_iter().next() {
            break f;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the snapshot ended ({status}) before a spill file was seen open");
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no spill file seen"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(spill.ends_with("(deleted)"), "{spill}");
    assert_eq!(
        files_in(&tmp),
        Vec::<String>::new(),
        "left behind after kill -9"
    );
    assert!(!out.exists(), "no baseline from a killed snapshot");

    // Named spill files left by a killed migval of an earlier version are removed by the next
    // run when their process is gone; a live process's, and other files, stay.
    let dead = tmp.join("migval-4294967295-0.section");
    let alive = tmp.join(format!("migval-{}-3.section", std::process::id()));
    let other = tmp.join("migval-12-notes.txt");
    for f in [&dead, &alive, &other] {
        std::fs::write(f, b"x").unwrap();
    }
    let r = migval_env(
        &[
            "snapshot",
            "--spec",
            p(&spec),
            "--out",
            p(&out),
            "--db",
            &db.url,
        ],
        &[("TMPDIR", p(&tmp))],
    );
    assert_eq!(r.code, 0, "{r}");
    assert!(!dead.exists(), "{r}");
    assert!(alive.exists() && other.exists(), "{r}");
}
