//! Progress on stderr: plain lines when stderr is not a terminal (one per phase and finished
//! probe with its duration, one every 10 s for a probe still running), indicatif bars on a
//! terminal (a real pty through `script`), nothing under `--quiet`, stdout left to the report.

use crate::common::{TestDb, migval, p, rt, snapshot_to, world};

const SPEC: &str = r#"
[[check]]
name = "orders by region"
table = "orders"
group_by = ["region"]
metrics = ["count(*)", "sum(amount)"]

[[check]]
name = "slow custom query"
sql = "SELECT count(*) AS n FROM orders, pg_sleep(1.2)"
"#;

fn orders(name: &str) -> TestDb {
    world(
        name,
        "CREATE TABLE orders (id int PRIMARY KEY, region text, amount numeric(12,2));
         INSERT INTO orders SELECT g, 'r' || g % 7, g * 1.25 FROM generate_series(1, 5000) g;",
    )
}

/// The plain progress lines of a run: `probe i of n done in s.sss s: `check` on connection c`.
fn finished_probes(stderr: &str) -> Vec<(String, f64)> {
    stderr
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("probe ")?;
            let (_, rest) = rest.split_once(" done in ")?;
            let (secs, rest) = rest.split_once(" s: `")?;
            let (name, _) = rest.split_once("` on connection ")?;
            Some((name.to_string(), secs.parse().ok()?))
        })
        .collect()
}

#[test]
fn plain_lines_name_every_probe_with_its_duration_and_quiet_silences_them() {
    let db = orders("progress_plain");
    let spec = db.file("checks.toml", SPEC);
    let base = db.path("base.json");
    let args = [
        "snapshot",
        "--spec",
        p(&spec),
        "--out",
        p(&base),
        "--db",
        &db.url,
    ];
    let r = migval(&args);
    assert_eq!(r.code, 0, "{r}");
    for phase in [
        "phase: lock",
        "phase: export snapshot",
        "phase: probes",
        "phase: write file",
    ] {
        assert!(r.stderr.contains(phase), "{phase}{r}");
    }
    let probes = finished_probes(&r.stderr);
    let slow = probes
        .iter()
        .find(|(n, _)| n == "slow custom query")
        .unwrap_or_else(|| panic!("no line for the slow probe{r}"));
    assert!(
        slow.1 >= 1.2,
        "the slow probe's duration is its own: {slow:?}{r}"
    );
    assert!(probes.iter().any(|(n, _)| n == "orders by region"), "{r}");
    assert!(
        !r.stdout.contains("probe "),
        "progress never goes to stdout{r}"
    );

    // verify --format json: stdout is the report alone, progress on stderr.
    let verify = [
        "verify",
        "--spec",
        p(&spec),
        "--baseline",
        p(&base),
        "--db",
        &db.url,
        "--format",
        "json",
    ];
    let r = migval(&verify);
    assert_eq!(r.code, 0, "{r}");
    let report: serde_json::Value =
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("stdout is not JSON: {e}{r}"));
    assert_eq!(report["verdict"]["failed"], 0, "{r}");
    assert!(
        report["checks"].as_array().is_some_and(|c| c.len() >= 2),
        "{r}"
    );
    assert!(r.stderr.contains("phase: compare"), "{r}");
    assert_eq!(finished_probes(&r.stderr).len(), probes.len(), "{r}");

    // --quiet: nothing but what the command itself says.
    let mut quiet = verify.to_vec();
    quiet.push("--quiet");
    let r = migval(&quiet);
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stderr.trim().is_empty(), "--quiet prints no progress{r}");
    serde_json::from_str::<serde_json::Value>(&r.stdout).expect("JSON report");
}

#[test]
fn a_probe_still_running_is_mentioned_every_10_seconds() {
    let db = orders("progress_slow");
    let spec = db.file(
        "checks.toml",
        "[[check]]\nname = \"eleven seconds\"\nsql = \"SELECT 1 AS n FROM pg_sleep(10.8)\"\n",
    );
    let base = db.path("base.json");
    let r = snapshot_to(&db, &spec, &base);
    assert_eq!(r.code, 0, "{r}");
    let still: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("probe still running after 10 s: `eleven seconds`"))
        .collect();
    assert_eq!(still.len(), 1, "{r}");
}

/// `migrate` names each statement as it starts (index, line, text) and says how long it took;
/// a statement still running is mentioned every 10 s, so a DBA watching a long ALTER TABLE
/// through a CI log knows what migval is waiting for.
#[test]
fn migrate_names_each_statement_as_it_runs() {
    let db = orders("progress_migrate");
    let spec = db.file(
        "checks.toml",
        "[schema]\nexpect = [\"add column orders.note\"]\n\n\
         [[check]]\nname = \"orders\"\ntable = \"orders\"\nmetrics = [\"count(*)\"]\n",
    );
    let migration = db.file(
        "m.sql",
        "ALTER TABLE orders ADD COLUMN note text;\n\nSELECT pg_sleep(10.5);\n",
    );
    let r = migval(&[
        "migrate",
        p(&migration),
        "--spec",
        p(&spec),
        "--db",
        &db.url,
    ]);
    assert_eq!(r.code, 0, "{r}");
    let lines: Vec<&str> = r.stderr.lines().collect();
    let at = |prefix: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line `{prefix}`{r}"))
    };
    let first = at("statement 1 of 2, line 1: ALTER TABLE orders ADD COLUMN note text");
    let second = at("statement 2 of 2, line 3: SELECT pg_sleep(10.5)");
    assert!(first < second, "{r}");
    assert!(lines[first + 1].starts_with("  done in "), "{r}");
    assert!(
        lines[second + 1].starts_with("  still running after 10 s: statement 2 of 2"),
        "{r}"
    );
    let took: f64 = lines[second + 2]
        .strip_prefix("  done in ")
        .and_then(|t| t.strip_suffix(" s"))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no duration after the statement{r}"));
    assert!(took >= 10.5, "{took}{r}");
    assert!(
        !r.stdout.contains("still running"),
        "progress stays off stdout{r}"
    );
}

/// Run `migval args...` on a pseudo-terminal of 80x24 (util-linux `script`); returns what
/// the terminal received.
fn on_a_terminal(db: &TestDb, args: &[&str]) -> String {
    let transcript = db.path("tty.txt");
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    let command = format!(
        "stty cols 80 rows 24; '{}' {}",
        env!("CARGO_BIN_EXE_migval"),
        quoted.join(" ")
    );
    let out = std::process::Command::new("script")
        .args(["-qefc", &command, p(&transcript)])
        .env_remove("NO_COLOR")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("`script` (util-linux) runs the command on a pty");
    let raw = std::fs::read(&transcript).expect("transcript");
    let text = String::from_utf8_lossy(&raw).to_string();
    assert!(out.status.success(), "{text}");
    // Without the header and footer lines `script` adds to the file.
    let body: &str = text.split_once('\n').map_or(&text, |(_, rest)| rest);
    body.rsplit_once("\nScript done")
        .map_or(body, |(b, _)| b)
        .to_string()
}

/// The connection named by a running probe's line (`connection 2: `check` ...`), if it is one.
fn probe_connection(row: &str) -> Option<&str> {
    let (_, rest) = row.split_once("connection ")?;
    let (n, after) = rest.split_once(": `")?;
    (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && !after.is_empty()).then_some(n)
}

/// Replay `output` on an 80x24 terminal, redraw by redraw, calling `look` with the screen's
/// rows after each; returns the final screen.
fn replay(output: &str, mut look: impl FnMut(&[String])) -> String {
    let size = |n: u16| std::num::NonZeroU16::new(n).expect("non-zero");
    let mut term = vt100::Parser::new(size(24), size(80), 0);
    for chunk in output.split_inclusive('\r') {
        term.process(chunk.as_bytes());
        let rows: Vec<String> = term.screen().rows(0, 80).collect();
        look(&rows);
    }
    term.screen().contents()
}

#[test]
fn on_an_80_column_terminal_the_bars_fit_and_name_the_running_probe() {
    let db = orders("progress_tty");
    let long = "slow custom query with a name long enough to overflow eighty columns";
    let spec = db.file(
        "checks.toml",
        &SPEC
            .replace("slow custom query", long)
            .replace("1.2", "2.5"),
    );
    let base = db.path("base.json");
    let output = on_a_terminal(
        &db,
        &[
            "snapshot",
            "--spec",
            p(&spec),
            "--out",
            p(&base),
            "--db",
            &db.url,
        ],
    );
    // At any moment one bar and one line per running probe, and no leftovers of earlier draws
    // (a line wider than the terminal would wrap and leave its tail behind at every redraw).
    let (mut saw_probe_line, mut saw_long_name, mut saw_bar) = (false, false, false);
    let screen = replay(&output, |rows| {
        let bars = rows.iter().filter(|r| r.contains("ETA")).count();
        assert!(bars <= 1, "{bars} bars on the screen:\n{}", rows.join("\n"));
        // Which connection runs the slow probe depends on scheduling: count per connection.
        let connections: Vec<&str> = rows.iter().filter_map(|r| probe_connection(r)).collect();
        let mut distinct = connections.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(
            distinct.len() == connections.len(),
            "one line per running probe:\n{}",
            rows.join("\n")
        );
        saw_bar |= bars == 1;
        saw_probe_line |= !connections.is_empty();
        saw_long_name |= rows.iter().any(|r| {
            probe_connection(r).is_some() && r.contains(": `slow custom query with a name long")
        });
    });
    assert!(saw_bar && saw_probe_line && saw_long_name, "{output}");
    // At the end, the bars are gone and the command's own lines are on the screen.
    assert!(
        !screen.contains("ETA") && !screen.lines().any(|l| probe_connection(l).is_some()),
        "{screen}"
    );
    assert!(screen.contains("baseline sha256"), "{screen}");
    assert!(
        !output.contains("phase: "),
        "no plain lines on a terminal:\n{output}"
    );
}

/// The backfill's bar (hand-drawn before, and broken below about 112 columns) at 80 columns.
#[test]
fn on_an_80_column_terminal_the_backfill_bar_fits() {
    const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/subscriber_fk");
    let db = rt().block_on(async {
        let db = TestDb::new("progress_backfill_tty").await;
        db.exec(&std::fs::read_to_string(format!("{DIR}/schema.sql")).expect("schema.sql"))
            .await;
        db.exec("SELECT subscriber_fk_generate(6000); ANALYZE")
            .await;
        db
    });
    let text = std::fs::read_to_string(format!("{DIR}/backfill.toml")).expect("backfill.toml");
    let head = text.split("[batch]").next().expect("has [batch]").replace(
        "checks = \"checks.toml\"",
        &format!("checks = \"{DIR}/checks.toml\""),
    );
    let spec = db.file(
        "bf.toml",
        &format!("{head}[batch]\nsize = 100\npause = \"40ms\"\n"),
    );
    let log = db.path("rows.csv");
    let output = on_a_terminal(
        &db,
        &["backfill", p(&spec), "--db", &db.url, "--log", p(&log)],
    );
    let mut saw_bar = false;
    let screen = replay(&output, |rows| {
        let bars = rows.iter().filter(|r| r.contains(" rows/s ")).count();
        assert!(bars <= 1, "{bars} bars on the screen:\n{}", rows.join("\n"));
        saw_bar |= bars == 1;
    });
    assert!(saw_bar, "{output}");
    assert!(
        !screen.contains(" rows/s "),
        "the bar is cleared at the end:\n{screen}"
    );
    assert!(screen.contains("DRY-RUN"), "{screen}");
}
