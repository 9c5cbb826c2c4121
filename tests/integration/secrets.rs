//! Secrets through every path: a password with `@:/%?` in it never reaches standard output,
//! standard error or any file migval writes.

use std::path::Path;

use crate::common::{Run, TestDb, migval, migval_env, p, rt};

/// Every special character a URL or a conninfo string gives a meaning to.
pub const SECRET: &str = "Pw@:/%?x9-secret";

/// Percent-encoded for a URL.
pub fn encoded() -> String {
    SECRET
        .chars()
        .map(|c| match c {
            '@' | ':' | '/' | '%' | '?' => format!("%{:02X}", u32::from(c)),
            c => c.to_string(),
        })
        .collect()
}

/// The password (raw or percent-encoded) is in none of `runs`' output.
pub fn assert_not_in_output(runs: &[Run]) {
    let enc = encoded();
    for r in runs {
        assert!(
            !r.all().contains(SECRET) && !r.all().contains(&enc),
            "password leaked{r}"
        );
    }
}

/// The password is in no file under `dir`.
pub fn assert_not_in_files(dir: &Path) {
    let enc = encoded();
    let mut seen = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains(SECRET) && !text.contains(&enc),
                "password stored in {}:\n{text}",
                path.display()
            );
            seen += 1;
        }
    }
    assert!(seen > 0, "no file written under {}", dir.display());
}

#[test]
fn a_password_in_an_external_commands_line_is_masked_on_screen_in_the_report_and_artifacts() {
    let db = rt().block_on(async {
        let db = TestDb::new("secrets_external_command").await;
        db.exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2);")
            .await;
        db
    });
    let spec = db.file(
        "checks.toml",
        "[[check]]\nname = \"rows\"\ntable = \"t\"\nmetrics = [\"count(*)\"]\n",
    );
    let runs = db.path("runs");
    let url_arg = format!("postgres://app:{SECRET}@db.example.com/shop");
    let kv_arg = format!("host=db.example.com password='{SECRET}' dbname=shop");
    let r = migval(&[
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
        // The tool echoes its own arguments, as migration tools' verbose modes do.
        "echo \"migrating $0 / $1\"",
        &url_arg,
        &kv_arg,
    ]);
    assert_eq!(r.code, 0, "{r}");
    assert_not_in_output(std::slice::from_ref(&r));
    assert!(
        r.stderr.contains("postgres://app:***@db.example.com/shop"),
        "the command line is shown, masked{r}"
    );
    assert!(
        r.stderr
            .contains("  | migrating postgres://app:***@db.example.com/shop"),
        "the command's output is shown, masked{r}"
    );
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let script = report["migration"]["script"].as_str().unwrap_or_default();
    assert!(
        script.contains("postgres://app:***@db.example.com/shop")
            && script.contains("password=*** dbname=shop"),
        "the JSON `script` names the command, masked: {script}"
    );
    assert_not_in_files(&runs);
}

pub const ROLE: &str = "migval_secret_role";

/// Make the test server ask `ROLE` for its password (scram) from 127.0.0.1: the cluster trusts
/// everyone else. The line goes first in pg_hba.conf, then the configuration is reloaded.
pub async fn require_password_for_role(db: &TestDb) {
    // One test at a time: two concurrent ALTER ROLEs of the same role fail with "tuple
    // concurrently updated", and pg_hba.conf is read, changed and written back.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one = ONE_AT_A_TIME.lock().await;
    let admin = db.client().await;
    admin
        .batch_execute(&format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') THEN \
             CREATE ROLE {ROLE} LOGIN SUPERUSER; END IF; END $$;
             SET password_encryption = 'scram-sha-256';
             ALTER ROLE {ROLE} PASSWORD '{SECRET}';"
        ))
        .await
        .expect("role with a password");
    let hba: String = admin
        .query_one("SHOW hba_file", &[])
        .await
        .expect("hba_file")
        .get(0);
    let text = std::fs::read_to_string(&hba).unwrap_or_else(|e| panic!("read {hba}: {e}"));
    let line = format!("host all {ROLE} 127.0.0.1/32 scram-sha-256\n");
    if !text.contains(&line) {
        std::fs::write(&hba, format!("{line}{text}")).unwrap_or_else(|e| panic!("{hba}: {e}"));
        admin
            .batch_execute("SELECT pg_reload_conf()")
            .await
            .expect("reload");
    }
    // The reload is asynchronous: wait until a wrong password is refused.
    let wrong = db.url.replacen(
        "postgres://postgres@",
        &format!("postgres://{ROLE}:wrong@"),
        1,
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while migval::db::connect(&crate::common::info(&wrong))
        .await
        .is_ok()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "pg_hba.conf reload not applied"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

const ITEMS: &str = "CREATE TABLE items (id int PRIMARY KEY, flag boolean);
INSERT INTO items SELECT g, NULL FROM generate_series(1, 50) g;";

const ITEM_CHECKS: &str =
    "[[check]]\nname = \"items\"\ntable = \"items\"\nmetrics = [\"count(*)\"]\n";

#[test]
fn a_password_with_special_characters_never_leaks_through_any_path() {
    let db = rt().block_on(async {
        let db = TestDb::new("secrets_every_path").await;
        db.exec(ITEMS).await;
        require_password_for_role(&db).await;
        db
    });
    let url = db.url.replacen(
        "postgres://postgres@",
        &format!("postgres://{ROLE}:{}@", encoded()),
        1,
    );
    let out = db.path("out");
    std::fs::create_dir_all(&out).unwrap();
    let spec = db.file("checks.toml", ITEM_CHECKS);
    let base = out.join("base.json");
    let mut runs = Vec::new();

    // The URL, percent-encoded: snapshot, verify in every format, --save-after.
    let r = migval(&[
        "snapshot",
        "--spec",
        p(&spec),
        "--out",
        p(&base),
        "--db",
        &url,
    ]);
    assert_eq!(r.code, 0, "{r}");
    runs.push(r);
    for format in ["text", "json", "markdown", "junit"] {
        let after = out.join(format!("after-{format}.json"));
        let report = out.join(format!("report.{format}"));
        let r = migval(&[
            "verify",
            "--spec",
            p(&spec),
            "--baseline",
            p(&base),
            "--db",
            &url,
            "--format",
            format,
            "--save-after",
            p(&after),
            "-o",
            p(&report),
        ]);
        assert_eq!(r.code, 0, "{r}");
        runs.push(r);
    }

    // Authentication failure: the password given (wrong for the role) is not echoed.
    let wrong_role = url.replacen(ROLE, "postgres_no_such_role", 1);
    let r = migval(&[
        "verify",
        "--spec",
        p(&spec),
        "--baseline",
        p(&base),
        "--db",
        &wrong_role,
    ]);
    assert_eq!(r.code, 2, "{r}");
    runs.push(r);
    let wrong_password = db.url.replacen(
        "postgres://postgres@",
        &format!("postgres://{ROLE}:{}@", encoded().replacen("x9", "y8", 1)),
        1,
    );
    let r = migval(&[
        "verify",
        "--spec",
        p(&spec),
        "--baseline",
        p(&base),
        "--db",
        &wrong_password,
    ]);
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr.contains("password authentication failed") && r.stderr.contains(":***@"),
        "the failure is named, the target masked{r}"
    );
    assert!(
        !r.all().contains("y8-secret"),
        "the wrong password is not echoed either{r}"
    );
    runs.push(r);

    // DNS failure.
    let (_, tail) = url.split_once('@').unwrap();
    let port_and_db = tail.split_once(':').map(|(_, rest)| rest).unwrap();
    let dns = format!(
        "postgres://{ROLE}:{}@no-such-host.invalid:{port_and_db}",
        encoded()
    );
    let r = migval(&[
        "verify",
        "--spec",
        p(&spec),
        "--baseline",
        p(&base),
        "--db",
        &dns,
    ]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("no-such-host.invalid"), "{r}");
    runs.push(r);

    // PGPASSWORD, and ~/.pgpass (through PGPASSFILE), raw special characters.
    let host_port = tail.split('/').next().unwrap();
    let (host, port) = host_port.rsplit_once(':').unwrap();
    let dbname = db.name.as_str();
    let pg_env = [
        ("PGHOST", host),
        ("PGPORT", port),
        ("PGUSER", ROLE),
        ("PGDATABASE", dbname),
        ("PGSSLMODE", "disable"),
    ];
    let mut with_password = pg_env.to_vec();
    with_password.push(("PGPASSWORD", SECRET));
    let r = migval_env(
        &[
            "snapshot",
            "--spec",
            p(&spec),
            "--out",
            p(&out.join("env.json")),
        ],
        &with_password,
    );
    assert_eq!(r.code, 0, "PGPASSWORD works{r}");
    runs.push(r);
    let pgpass = db.path("pgpass");
    let escaped = SECRET.replace('\\', "\\\\").replace(':', "\\:");
    std::fs::write(&pgpass, format!("{host}:{port}:*:{ROLE}:{escaped}\n")).unwrap();
    std::fs::set_permissions(&pgpass, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut with_pgpass = pg_env.to_vec();
    with_pgpass.push(("PGPASSFILE", p(&pgpass)));
    let r = migval_env(
        &[
            "snapshot",
            "--spec",
            p(&spec),
            "--out",
            p(&out.join("pgpass.json")),
        ],
        &with_pgpass,
    );
    assert_eq!(r.code, 0, ".pgpass works{r}");
    runs.push(r);

    // migrate --commit: artifacts, and an external command given the URL.
    let migration = db.file("001.sql", "ALTER TABLE items ADD COLUMN note text;");
    let migrate_spec = db.file(
        "migrate.toml",
        &format!("{ITEM_CHECKS}\n[schema]\nexpect = [\"add column items.note\"]\n"),
    );
    let r = migval(&[
        "migrate",
        p(&migration),
        "--spec",
        p(&migrate_spec),
        "--db",
        &url,
        "--commit",
        "--artifacts",
        p(&out.join("runs")),
    ]);
    assert_eq!(r.code, 0, "{r}");
    runs.push(r);
    let raw_url = url.replacen(&encoded(), SECRET, 1);
    let r = migval(&[
        "migrate",
        "--spec",
        p(&spec),
        "--db",
        &url,
        "--commit",
        "--artifacts",
        p(&out.join("runs-external")),
        "--",
        "sh",
        "-c",
        "echo \"using $0\"",
        &raw_url,
    ]);
    assert_eq!(r.code, 0, "{r}");
    runs.push(r);

    // A backfill: its log, its summary, its state table.
    let checks = db.file("backfill-checks.toml", ITEM_CHECKS);
    let backfill = db.file(
        "fill.toml",
        &format!(
            "name = \"fill_flag\"\ntable = \"items\"\nkey = [\"id\"]\npending = \"flag IS NULL\"\n\
             set = \"flag = (id % 2 = 0)\"\nchecks = \"{}\"\n\n[ambiguity]\n\
             sql = \"SELECT id, 'id three' AS reason, 2 AS candidates FROM items WHERE id = 3\"\n\n\
             [batch]\nsize = 10\n",
            p(&checks)
        ),
    );
    let r = migval(&[
        "backfill",
        p(&backfill),
        "--db",
        &url,
        "--commit",
        "--yes",
        "--log",
        p(&out.join("rows.csv")),
        "--summary-json",
        p(&out.join("summary.json")),
    ]);
    assert_eq!(r.code, 0, "{r}");
    assert!(
        std::fs::read_to_string(out.join("rows.csv"))
            .unwrap()
            .contains("id three")
    );
    runs.push(r);
    let state: String = rt().block_on(async {
        db.client()
            .await
            .query_one(
                "SELECT string_agg(r::text, E'\\n') FROM migval.backfill_runs r",
                &[],
            )
            .await
            .expect("state table")
            .get(0)
    });
    assert!(state.contains("fill_flag"), "{state}");
    assert!(
        !state.contains(SECRET) && !state.contains(&encoded()),
        "password in migval.backfill_runs: {state}"
    );

    assert_not_in_output(&runs);
    // Every file migval wrote: baselines, after-snapshots, reports, artifacts, log, summary.
    assert_not_in_files(&out);
}

/// `--db service=NAME` connects where the service file's entry says, with the password kept
/// there (as `psql service=NAME` does); `PGSERVICE` names it too. The password is on no
/// output and in no file; a name the file lacks stops with exit 2 naming the file.
#[test]
fn a_service_file_entry_connects_and_its_password_stays_secret() {
    let db = rt().block_on(async {
        let db = TestDb::new("secrets_service").await;
        db.exec(ITEMS).await;
        require_password_for_role(&db).await;
        db
    });
    let (_, tail) = db.url.split_once('@').unwrap();
    let (hostport, rest) = tail.split_once('/').unwrap();
    let (host, port) = hostport.rsplit_once(':').unwrap();
    let dbname = rest.split('?').next().unwrap();
    let services = db.file(
        "pg_service.conf",
        &format!(
            "# the test server\n[audit]\nhost={host}\nport={port}\ndbname={dbname}\n\
             user={ROLE}\npassword={SECRET}\nsslmode=disable\n\n[other]\nhost=nowhere.invalid\n"
        ),
    );
    let out = db.path("out");
    std::fs::create_dir_all(&out).unwrap();
    let spec = db.file("checks.toml", ITEM_CHECKS);
    let base = out.join("base.json");
    let env = [("PGSERVICEFILE", p(&services))];
    let snapshot = migval_env(
        &[
            "snapshot",
            "--spec",
            p(&spec),
            "--out",
            p(&base),
            "--db",
            "service=audit",
        ],
        &env,
    );
    assert_eq!(snapshot.code, 0, "{snapshot}");
    let baseline = std::fs::read_to_string(&base).unwrap();
    assert!(baseline.contains(dbname), "the baseline names the database");
    let verify = migval_env(
        &["verify", "--spec", p(&spec), "--baseline", p(&base)],
        &[env[0], ("PGSERVICE", "audit")],
    );
    assert_eq!(verify.code, 0, "{verify}");
    assert!(
        verify.stdout.contains(ROLE),
        "connected as the entry's user{verify}"
    );
    let missing = migval_env(
        &[
            "verify",
            "--spec",
            p(&spec),
            "--baseline",
            p(&base),
            "--db",
            "service=nope",
        ],
        &env,
    );
    assert_eq!(missing.code, 2, "{missing}");
    assert!(
        missing
            .stderr
            .contains("definition of service \"nope\" not found")
            && missing.stderr.contains(p(&services)),
        "{missing}"
    );
    assert_not_in_output(&[snapshot, verify, missing]);
    assert_not_in_files(&out);
}
