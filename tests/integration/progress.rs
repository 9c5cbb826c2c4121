//! Progress on stderr: plain lines when stderr is not a terminal (one per phase and finished
//! probe with its duration, one every 10 s for a probe still running), indicatif bars on a
//! terminal (a real pty through `script`), nothing under `--quiet`, stdout left to the report.

use crate::common::{TestDb, migval, p, world};

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
    let r = migval(&[
        "snapshot",
        "--spec",
        p(&spec),
        "--out",
        p(&base),
        "--db",
        &db.url,
    ]);
    assert_eq!(r.code, 0, "{r}");
    let still: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("probe still running after 10 s: `eleven seconds`"))
        .collect();
    assert_eq!(still.len(), 1, "{r}");
}

#[test]
fn on_an_80_column_terminal_the_bars_fit_and_name_the_running_probe() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("`script` (util-linux) is needed for the terminal test");
    }
    let db = orders("progress_tty");
    let long = "slow custom query with a name long enough to overflow eighty columns";
    let spec = db.file(
        "checks.toml",
        &SPEC
            .replace("slow custom query", long)
            .replace("1.2", "2.5"),
    );
    let base = db.path("base.json");
    let transcript = db.path("tty.txt");
    let command = format!(
        "stty cols 80 rows 24; '{}' snapshot --spec '{}' --out '{}' --db '{}'",
        env!("CARGO_BIN_EXE_migval"),
        p(&spec),
        p(&base),
        db.url
    );
    let out = std::process::Command::new("script")
        .args(["-qefc", &command, p(&transcript)])
        .env_remove("NO_COLOR")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run script");
    let raw = std::fs::read(&transcript).expect("transcript");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&raw));
    // What the pty received, without the header and footer lines `script` adds to the file.
    let text = String::from_utf8_lossy(&raw);
    let body: &str = text.split_once('\n').map_or(&text, |(_, rest)| rest);
    let body = body.rsplit_once("\nScript done").map_or(body, |(b, _)| b);

    // Replayed on an 80x24 terminal, redraw by redraw: at any moment one bar, one phase line,
    // and no leftovers of earlier draws (a line wider than the terminal would wrap and leave
    // its tail behind at every redraw).
    let size = |n: u16| std::num::NonZeroU16::new(n).expect("non-zero");
    let mut term = vt100::Parser::new(size(24), size(80), 0);
    let (mut saw_probe_line, mut saw_long_name, mut saw_bar) = (false, false, false);
    for chunk in body.split_inclusive('\r') {
        term.process(chunk.as_bytes());
        let rows: Vec<String> = term.screen().rows(0, 80).collect();
        let bars = rows.iter().filter(|r| r.contains("ETA")).count();
        assert!(bars <= 1, "{bars} bars on the screen:\n{}", rows.join("\n"));
        let probe_lines = rows
            .iter()
            .filter(|r| r.contains("connection 0: `"))
            .count();
        assert!(
            probe_lines <= 1,
            "one line per running probe:\n{}",
            rows.join("\n")
        );
        saw_bar |= bars == 1;
        saw_probe_line |= probe_lines == 1;
        saw_long_name |= rows
            .iter()
            .any(|r| r.contains("connection 0: `slow custom query with a name long"));
    }
    assert!(saw_bar && saw_probe_line && saw_long_name, "{text}");
    // At the end, the bars are gone and the command's own lines are on the screen.
    let screen = term.screen().contents();
    assert!(
        !screen.contains("ETA") && !screen.contains("connection 0:"),
        "{screen}"
    );
    assert!(screen.contains("baseline sha256"), "{screen}");
    assert!(
        !text.contains("phase: "),
        "no plain lines on a terminal:\n{text}"
    );
}
