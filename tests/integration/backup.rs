//! `--backup FILE` on `migrate --commit` and `backfill --commit`: a pg_dump taken before the
//! first write, restorable; a dump that fails stops the run with nothing written; the password
//! reaches pg_dump through its environment only and is shown nowhere.

use crate::common::{Run, TestDb, migval, migval_env, p, rt};
use crate::org_customers::{NEW_COLUMNS, world};
use crate::secrets::{ROLE, assert_not_in_files, assert_not_in_output, encoded};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/org_customers");

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

fn migrate_with_backup(db: &TestDb, url: &str, backup: &str, env: &[(&str, &str)]) -> Run {
    migval_env(
        &[
            "migrate",
            &format!("{DIR}/01_schema.sql"),
            &format!("{DIR}/02_data.sql"),
            "--spec",
            &format!("{DIR}/checks.toml"),
            "--commit",
            "--backup",
            backup,
            "--artifacts",
            p(&db.path("runs")),
            "--db",
            url,
        ],
        env,
    )
}

#[test]
fn a_dump_that_cannot_be_written_stops_the_commit_before_anything_is_applied() {
    let db = world("backup_unwritable");
    let r = migrate_with_backup(&db, &db.url, "/nonexistent-dir/pre.dump", &[]);
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr
            .contains("--backup /nonexistent-dir/pre.dump: pg_dump failed"),
        "{r}"
    );
    assert!(
        r.stderr.contains("could not open output file"),
        "pg_dump's own message is shown{r}"
    );
    assert!(
        r.stderr.contains("nothing was written to the database"),
        "{r}"
    );
    assert_eq!(int(&db, NEW_COLUMNS), 0, "nothing applied");
    assert!(
        !db.path("runs").exists(),
        "no artifacts of a run that did not happen"
    );

    // An existing file is never overwritten.
    let existing = db.file("taken.dump", "an older backup");
    let r = migrate_with_backup(&db, &db.url, p(&existing), &[]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("the file exists"), "{r}");
    assert_eq!(
        std::fs::read_to_string(&existing).unwrap(),
        "an older backup"
    );
    assert_eq!(int(&db, NEW_COLUMNS), 0, "nothing applied");

    // Without --commit there is nothing to back up: refused, not ignored.
    let r = migval(&[
        "migrate",
        &format!("{DIR}/01_schema.sql"),
        "--spec",
        &format!("{DIR}/checks.toml"),
        "--backup",
        p(&db.path("x.dump")),
        "--db",
        &db.url,
    ]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("--commit"), "{r}");
}

#[test]
fn the_password_reaches_pg_dump_in_its_environment_only_and_is_shown_nowhere() {
    let db = world("backup_password");
    rt().block_on(crate::secrets::require_password_for_role(&db));
    let url = db.url.replacen(
        "postgres://postgres@",
        &format!("postgres://{ROLE}:{}@", encoded()),
        1,
    );
    // A pg_dump that records its arguments and whether it got a password, then runs the real
    // one (which must authenticate with scram: the role has no trust line).
    let argv = db.path("argv.txt");
    let got = db.path("env.txt");
    let wrapper = db.file(
        "pg_dump",
        &format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {}\n[ -n \"$PGPASSWORD\" ] && echo PGPASSWORD set > {}\nexec pg_dump \"$@\"\n",
            p(&argv),
            p(&got)
        ),
    );
    std::process::Command::new("chmod")
        .args(["+x", p(&wrapper)])
        .status()
        .expect("chmod");
    let out = db.path("out");
    std::fs::create_dir_all(&out).unwrap();
    let dump = out.join("pre.dump");
    let r = migrate_with_backup(&db, &url, p(&dump), &[("MIGVAL_PG_DUMP", p(&wrapper))]);
    assert_eq!(r.code, 0, "{r}");
    assert!(std::fs::metadata(&dump).is_ok_and(|m| m.len() > 0), "{r}");
    let args = std::fs::read_to_string(&argv).expect("the wrapper ran");
    assert!(args.contains("--format=custom"), "{args}");
    assert!(
        !args.contains("x9-secret") && !args.contains(&encoded()) && !args.contains(ROLE),
        "no connection setting on pg_dump's command line: {args}"
    );
    assert_eq!(
        std::fs::read_to_string(&got).unwrap_or_default().trim(),
        "PGPASSWORD set"
    );
    assert_not_in_output(std::slice::from_ref(&r));
    assert_not_in_files(&db.path("runs"));

    // pg_dump failing with the password in its message (as a hostile or chatty wrapper
    // might): migval shows the message, masked, and stops.
    let leaky = db.file(
        "leaky_pg_dump",
        "#!/bin/sh\necho \"pg_dump: error: password \\\"$PGPASSWORD\\\" rejected\" >&2\nexit 1\n",
    );
    std::process::Command::new("chmod")
        .args(["+x", p(&leaky)])
        .status()
        .expect("chmod");
    let r = migrate_with_backup(
        &db,
        &url,
        p(&out.join("second.dump")),
        &[("MIGVAL_PG_DUMP", p(&leaky))],
    );
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr
            .contains("pg_dump: error: password \"***\" rejected"),
        "{r}"
    );
    assert_not_in_output(std::slice::from_ref(&r));
}

const ITEMS: &str = "CREATE TABLE items (id int PRIMARY KEY, flag boolean);
INSERT INTO items SELECT g, NULL FROM generate_series(1, 300) g;";

#[test]
fn a_backfill_backup_is_taken_before_the_first_batch_and_restores_the_old_rows() {
    let db = rt().block_on(async {
        let db = TestDb::new("backup_backfill").await;
        db.exec(ITEMS).await;
        db
    });
    let checks = db.file(
        "checks.toml",
        "[[check]]\nname = \"every item flagged\"\nnull_count = \"items.flag\"\nexpect = \"zero\"\n",
    );
    let spec = db.file(
        "flags.toml",
        &format!(
            "table = \"items\"\nkey = [\"id\"]\npending = \"flag IS NULL\"\nset = \"flag = (id % 2 = 0)\"\nchecks = \"{}\"\n[batch]\nsize = 100\n",
            p(&checks)
        ),
    );
    let dump = db.path("before_backfill.dump");
    let r = migval(&[
        "backfill",
        p(&spec),
        "--commit",
        "--yes",
        "--backup",
        p(&dump),
        "--log",
        p(&db.path("rows.csv")),
        "--db",
        &db.url,
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 0, "{r}");
    let json_start = r.stdout.find('{').expect("a JSON report");
    let report: serde_json::Value =
        serde_json::from_str(&r.stdout[json_start..]).unwrap_or_else(|e| panic!("{e}{r}"));
    assert_eq!(report["backup"]["file"], p(&dump), "{r}");
    assert!(r.all().contains("Backup: pg_dump --format=custom"), "{r}");
    assert_eq!(int(&db, "SELECT count(*) FROM items WHERE flag IS NULL"), 0);

    // Restored into an empty database, the dump has every row as it was before the backfill,
    // and no progress table (it was taken before migval created one).
    let restored = rt().block_on(TestDb::new("backup_backfill_restored"));
    let out = std::process::Command::new("pg_restore")
        .args(["--no-owner", "-d", &restored.url, p(&dump)])
        .output()
        .expect("pg_restore");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        int(&restored, "SELECT count(*) FROM items WHERE flag IS NULL"),
        300
    );
    assert_eq!(
        int(
            &restored,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'migval'"
        ),
        0
    );

    // A dry-run writes nothing, so --backup is refused there.
    let r = migval(&[
        "backfill",
        p(&spec),
        "--backup",
        p(&db.path("y.dump")),
        "--db",
        &db.url,
    ]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("--commit"), "{r}");
}

#[test]
fn an_external_command_connects_through_its_environment_and_never_shows_the_password() {
    let db = rt().block_on(async {
        let db = TestDb::new("external_env_password").await;
        db.exec(ITEMS).await;
        crate::secrets::require_password_for_role(&db).await;
        db
    });
    let url = db.url.replacen(
        "postgres://postgres@",
        &format!("postgres://{ROLE}:{}@", encoded()),
        1,
    );
    let spec = db.file(
        "checks.toml",
        "[[check]]\nname = \"every item flagged\"\nnull_count = \"items.flag\"\nexpect = \"zero\"\n",
    );
    let r = migval(&[
        "migrate",
        "--spec",
        p(&spec),
        "--commit",
        "--artifacts",
        p(&db.path("runs")),
        "--db",
        &url,
        "--format",
        "json",
        "--",
        "sh",
        "-c",
        // A chatty tool printing its environment, then psql with no connection argument: it
        // must authenticate (scram) with the password migval put in PGPASSWORD.
        "echo \"password: $PGPASSWORD user: $PGUSER\"; psql -v ON_ERROR_STOP=1 -c 'UPDATE items SET flag = true'",
    ]);
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.stderr.contains(&format!("password: *** user: {ROLE}")),
        "{r}"
    );
    assert_eq!(int(&db, "SELECT count(*) FROM items WHERE flag"), 300);
    assert_not_in_output(std::slice::from_ref(&r));
    assert_not_in_files(&db.path("runs"));
}

#[test]
fn every_report_format_names_the_backup_and_its_size() {
    let db = rt().block_on(async {
        let db = TestDb::new("backup_formats").await;
        db.exec(ITEMS).await;
        db
    });
    let spec = db.file(
        "checks.toml",
        "[[check]]\nname = \"items\"\ntable = \"items\"\nmetrics = [\"count(*)\"]\n",
    );
    let script = db.file("noop.sql", "UPDATE items SET flag = flag;\n");
    for format in ["text", "markdown", "junit", "html", "json"] {
        let dump = db.path(&format!("{format}.dump"));
        let r = migval(&[
            "migrate",
            p(&script),
            "--spec",
            p(&spec),
            "--commit",
            "--backup",
            p(&dump),
            "--artifacts",
            p(&db.path("runs")),
            "--db",
            &db.url,
            "--format",
            format,
        ]);
        assert_eq!(r.code, 0, "{r}");
        let bytes = std::fs::metadata(&dump).expect("dump").len();
        assert!(
            r.stdout.contains(p(&dump)),
            "{format}: the file is named{r}"
        );
        // Binary units for people (human_bytes has its own unit test), the exact byte count
        // where machines read it.
        let size = migval::model::human_bytes(bytes);
        let shown = match format {
            "junit" => format!("name=\"backup_bytes\" value=\"{bytes}\""),
            "json" => format!("\"bytes\": {bytes}"),
            _ => size,
        };
        assert!(r.stdout.contains(&shown), "{format}: {shown}{r}");
    }
}
