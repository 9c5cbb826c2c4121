//! Hostile data through the real binary: values that try to drive the terminal.

use crate::common::{TestDb, migval, p, rt, snapshot_to};

/// A group key that clears the screen, homes the cursor and paints a green PASS, then a
/// carriage return and a right-to-left override to hide what follows.
const FORGED: &str = "\u{1b}[2J\u{1b}[H\u{1b}[32m PASS all checks\u{1b}[0m\r\u{202e}\u{7}";

fn has_raw_controls(s: &str) -> Option<char> {
    s.chars().find(|&c| {
        matches!(c, '\u{0}'..='\u{8}' | '\u{b}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    })
}

#[test]
fn terminal_escapes_in_a_group_key_are_shown_escaped_and_json_keeps_them_exact() {
    let db = rt().block_on(async {
        let db = TestDb::new("hostile_group_key").await;
        db.exec(
            r"CREATE TABLE accounts (grp text, amount numeric);
              INSERT INTO accounts VALUES
                (E'\x1b[2J\x1b[H\x1b[32m PASS all checks\x1b[0m\r\u202e\x07', 10),
                ('plain', 5);",
        )
        .await;
        db
    });
    let spec = db.file(
        "checks.toml",
        r#"[[check]]
name = "amount per group"
table = "accounts"
group_by = ["grp"]
metrics = ["sum(amount)"]
"#,
    );
    let base = db.path("base.json");
    let r = snapshot_to(&db, &spec, &base);
    assert_eq!(r.code, 0, "{r}");
    rt().block_on(db.exec("UPDATE accounts SET amount = amount + 1"));
    let verify = |format: &str, color: &str| {
        migval(&[
            "verify",
            "--spec",
            p(&spec),
            "--baseline",
            p(&base),
            "--db",
            &db.url,
            "--format",
            format,
            "--color",
            color,
        ])
    };

    let text = verify("text", "never");
    assert_eq!(text.code, 1, "{text}");
    assert_eq!(has_raw_controls(&text.stdout), None, "{text}");
    assert!(
        text.stdout
            .contains(r"\x1b[2J\x1b[H\x1b[32m PASS all checks"),
        "the key is shown, escaped{text}"
    );
    assert!(text.stdout.contains("VALIDATION FAILED"), "{text}");

    // With colour on, migval's own colour codes are the only escape sequences.
    let colored = verify("text", "always");
    assert_eq!(colored.code, 1, "{colored}");
    assert!(colored.stdout.contains("\u{1b}[1;31m"), "{colored}");
    for forged in [
        "\u{1b}[2J",
        "\u{1b}[H",
        "\u{1b}[32m",
        "\r",
        "\u{202e}",
        "\u{7}",
    ] {
        assert!(
            !colored.stdout.contains(forged),
            "raw {forged:?} from the data reached the terminal{colored}"
        );
    }

    let md = verify("markdown", "never");
    assert_eq!(md.code, 1, "{md}");
    assert_eq!(has_raw_controls(&md.stdout), None, "{md}");
    assert!(
        md.stdout
            .contains(r"\x1b[2J\x1b[H\x1b[32m PASS all checks\x1b[0m\r\u{202e}\x07"),
        "{md}"
    );

    let junit = verify("junit", "never");
    assert_eq!(has_raw_controls(&junit.stdout), None, "{junit}");

    let json = verify("json", "never");
    assert_eq!(json.code, 1, "{json}");
    let report: serde_json::Value =
        serde_json::from_str(&json.stdout).unwrap_or_else(|e| panic!("{e}{json}"));
    let keys: Vec<&str> = report["checks"][0]["worst"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["key"][0].as_str())
        .collect();
    assert!(
        keys.contains(&FORGED),
        "the JSON report keeps the exact key: {keys:?}{json}"
    );
}
