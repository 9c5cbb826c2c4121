//! Secrets through every path: a password with `@:/%?` in it never reaches standard output,
//! standard error or any file migval writes.

use std::path::Path;

use crate::common::{Run, TestDb, migval, p, rt};

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
