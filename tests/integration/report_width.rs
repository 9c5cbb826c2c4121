//! The text report fits the terminal: at `--width 80`, 120 and 160 no line exceeds the width
//! and every check name appears whole (big numbers grouped, exact in JSON); the overview table wraps its long columns where that is
//! enough (160) and becomes one block per check where it is not (80, 120).

use crate::common::{check, rt, snapshot_then, verify_again, world};

const WORLD: &str = r#"
CREATE TABLE client_products (id int PRIMARY KEY, company_id int, fixed_cost numeric(14,2), status text);
INSERT INTO client_products
SELECT g, g % 12, g * 10.25, CASE WHEN g % 5 = 0 THEN 'archived' ELSE 'active' END
FROM generate_series(1, 600) g;
"#;

const NAMES: [&str; 3] = [
    "monthly fixed cost per company after the fee rename",
    "active and archived products by status",
    "fixed cost nulls",
];

fn spec() -> String {
    format!(
        r#"
[[check]]
name = "{}"
table = "client_products"
group_by = ["company_id"]
metrics = ["count(*)", "sum(fixed_cost)", "max(fixed_cost)"]

[[check]]
name = "{}"
table = "client_products"
group_by = ["status"]
metrics = ["count(*)"]

[[check]]
name = "{}"
null_count = "client_products.fixed_cost"
"#,
        NAMES[0], NAMES[1], NAMES[2]
    )
}

#[test]
fn the_text_report_fits_80_and_120_columns_and_never_cuts_a_check_name() {
    let db = world("report_width", WORLD);
    let (run, report) = snapshot_then(&db, &spec(), || {
        rt().block_on(db.exec(
            "UPDATE client_products SET fixed_cost = fixed_cost + 0.01 WHERE id % 3 = 0;
             UPDATE client_products SET fixed_cost = NULL WHERE id = 7;",
        ))
    });
    assert_eq!(run.code, 1, "{run}");
    assert_eq!(check(&report, NAMES[0])["status"], "FAIL", "{run}");

    // Big numbers are grouped for reading in the text report, exact digits in JSON.
    let exact = check(&report, NAMES[0])["worst"][0]["baseline"]
        .as_str()
        .expect("a numeric text in JSON")
        .to_string();
    let (int, frac) = exact.split_once('.').unwrap_or((&exact, ""));
    assert!(int.len() > 3 && !exact.contains(','), "{exact}");
    let mut readable = String::new();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            readable.push(',');
        }
        readable.push(ch);
    }
    let readable = format!("{readable}.{frac}");
    let text = verify_again(&db, &["--format", "text"]);
    assert!(text.stdout.contains(&readable), "{readable}{text}");
    let md = verify_again(&db, &["--format", "markdown"]);
    assert!(md.stdout.contains(&readable), "{readable}{md}");

    // Not a terminal and no --width: tables at their natural width, names whole.
    let natural = verify_again(&db, &["--format", "text"]);
    let widest = natural.stdout.lines().map(|l| l.chars().count()).max();
    assert!(
        widest > Some(120),
        "the natural report is wider than 120{natural}"
    );

    for width in [80usize, 120, 160] {
        let w = width.to_string();
        let r = verify_again(&db, &["--format", "text", "--width", &w]);
        assert_eq!(r.code, 1, "{r}");
        for line in r.stdout.lines() {
            assert!(
                line.chars().count() <= width,
                "{} > {width} columns: {line:?}{r}",
                line.chars().count()
            );
        }
        for name in NAMES {
            assert!(
                r.stdout.lines().any(|l| l.contains(name)),
                "`{name}` is not whole on a line at {width} columns{r}"
            );
        }
        // The verdict and the worst groups are still there.
        assert!(r.stdout.contains("VALIDATION FAILED"), "{r}");
        assert!(r.stdout.contains("worst "), "{r}");
        let expanded = r.stdout.contains("-[ 1 ]");
        let table = r
            .stdout
            .lines()
            .any(|l| l.contains("status ") && l.contains("| check"));
        assert!(expanded || table, "{r}");
        if width == 160 {
            // Wide enough for the table once its long result column wraps.
            assert!(table && !expanded, "{r}");
        } else {
            // Too narrow for seven columns next to a 51-character name: one block per check.
            assert!(expanded, "{r}");
            assert!(
                r.stdout
                    .lines()
                    .any(|l| l.starts_with("check ") && l.contains(NAMES[0])),
                "{r}"
            );
        }
    }
}

/// The one-line summaries are read by people too: their counts and values are grouped in text
/// and Markdown, while the JSON values keep their plain digits.
#[test]
fn summaries_group_big_counts_and_values_for_reading() {
    let db = world(
        "report_summaries",
        "CREATE TABLE ledger (id int PRIMARY KEY, account int, amount numeric(14,2));
         INSERT INTO ledger SELECT g, g, 1000 + g FROM generate_series(1, 1500) g;",
    );
    let spec = r#"
[[check]]
name = "amount per account"
table = "ledger"
group_by = ["account"]
metrics = ["sum(amount)"]

[[check]]
name = "ledger total"
table = "ledger"
metrics = ["sum(amount)"]
"#;
    let (run, report) = snapshot_then(&db, spec, || {
        rt().block_on(db.exec("UPDATE ledger SET amount = amount + 1"))
    });
    assert_eq!(run.code, 1, "{run}");
    let grouped = check(&report, "amount per account");
    assert_eq!(grouped["groups"]["changed"], 1500, "{run}");
    let total = check(&report, "ledger total");
    assert_eq!(total["values"][0]["baseline"], "2625750.00", "{run}");

    for format in ["text", "markdown"] {
        let r = verify_again(&db, &["--format", format]);
        assert_eq!(r.code, 1, "{r}");
        assert!(
            r.stdout.contains("1,500 groups: 1,500 changed"),
            "{format}: the grouped summary's counts are grouped{r}"
        );
        assert!(
            r.stdout.contains("2,625,750.00 -> 2,627,250.00"),
            "{format}: the total's summary shows grouped values{r}"
        );
    }
}
