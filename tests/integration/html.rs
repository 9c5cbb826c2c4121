//! `--format html` as a reader sees it: the report of the broken fee_rename migration opened in
//! headless Chromium (Debian's `chromium`; .ci/run installs it), its rendered DOM read back and
//! a screenshot written under the test's directory; and a sizes check's table, read back from
//! the rendered DOM.

use std::process::Command;

use crate::common::{TestDb, migval, p, rt};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/fee_rename");

fn chromium() -> String {
    for c in ["chromium", "/usr/bin/chromium", "chromium-browser"] {
        if Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return c.to_string();
        }
    }
    panic!(
        "headless Chromium is needed for the HTML report test: apt-get install chromium (.ci/run does)"
    );
}

/// Chromium as the probe runs it as root on this closed network.
fn headless(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ])
    .arg(format!(
        "--user-data-dir={}",
        dir.join("chromium-profile").display()
    ));
    cmd
}

/// The page as Chromium renders it (its DOM after layout and any script: there is none).
fn dump_dom(dir: &std::path::Path, html: &std::path::Path) -> String {
    let dom = headless(dir)
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("run chromium");
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    String::from_utf8_lossy(&dom.stdout).to_string()
}

#[test]
fn the_html_report_of_a_broken_migration_shows_the_fail_banner_the_check_and_its_chart() {
    let db = rt().block_on(async {
        let db = TestDb::new("html_report").await;
        db.exec(&std::fs::read_to_string(format!("{DIR}/schema.sql")).unwrap())
            .await;
        db.exec("SELECT fee_rename_generate(3000)").await;
        db
    });
    let spec = format!("{DIR}/checks.toml");
    let html = db.path("report.html");
    let json = db.path("report.json");
    let script = format!("{DIR}/migration_broken.sql");
    let r = migval(&[
        "migrate",
        &script,
        "--spec",
        &spec,
        "--db",
        &db.url,
        "--format",
        "html",
        "-o",
        p(&html),
    ]);
    assert_eq!(r.code, 1, "{r}");
    let r = migval(&[
        "migrate",
        &script,
        "--spec",
        &spec,
        "--db",
        &db.url,
        "--format",
        "json",
        "-o",
        p(&json),
    ]);
    assert_eq!(r.code, 1, "{r}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let failing = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["status"] == "FAIL" && c["kind"] != "schema diff")
        .expect("a failing data check");
    let name = failing["name"].as_str().unwrap();
    let listed = failing["worst"].as_array().map_or(0, Vec::len);
    assert!(listed > 0, "the failing check lists its worst groups");

    // Self-contained: nothing is fetched from elsewhere.
    let page = std::fs::read_to_string(&html).unwrap();
    for outside in ["<script", "<link", "@import", "https://", "url("] {
        assert!(!page.contains(outside), "{outside} in the page");
    }
    assert_eq!(
        page.matches("http://").count(),
        page.matches("xmlns=\"http://www.w3.org/2000/svg\"").count(),
        "the only URL is the SVG namespace"
    );

    let dom = dump_dom(&db.dir, &html);
    assert!(
        dom.contains("class=\"verdict fail\"") && dom.contains("VALIDATION FAILED"),
        "the FAIL banner: {dom}"
    );
    assert!(
        dom.contains(&name.replace('&', "&amp;")),
        "the failing check {name}"
    );
    // The chart of the failing check, one bar per listed group.
    let article = dom
        .split("<article")
        .skip(1)
        .find(|a| a.contains(&name.replace('&', "&amp;")))
        .expect("the failing check's details");
    assert!(article.contains("<svg class=\"chart\""), "{article}");
    assert_eq!(
        article.matches("class=\"bar\"").count(),
        listed,
        "{article}"
    );

    let shot = db.path("report.png");
    let r = headless(&db.dir)
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1280,1800")
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("run chromium");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real picture of the page"
    );
}

/// The sizes section as Chromium renders it: one row per table, the failing one marked, each
/// part "before → after" in the units pg_size_pretty prints.
#[test]
fn the_html_sizes_section_shows_each_table_in_human_units_and_marks_the_one_that_grew() {
    use crate::sizes::{DOUBLING, WORLD, pretty, server_sizes};
    let db = crate::common::world("html_sizes", WORLD);
    let spec = r#"
[[check]]
name = "table growth"
sizes = { tables = ["products", "customers"] }
expect = { grows_at_most = "20%" }
"#;
    let before = server_sizes(&db, "products");
    let (r, _) = crate::common::snapshot_then(&db, spec, || rt().block_on(db.exec(DOUBLING)));
    assert_eq!(r.code, 1, "{r}");
    let after = server_sizes(&db, "products");
    let html = db.path("report.html");
    let r = crate::common::verify_again(&db, &["--format", "html", "-o", p(&html)]);
    assert_eq!(r.code, 1, "{r}");
    let dom = dump_dom(&db.dir, &html);
    let section = dom
        .split("<table class=\"sizes\"")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .unwrap_or_else(|| panic!("no sizes table in the page: {dom}"));
    let row = |table: &str| {
        section
            .split("<tr")
            .find(|r| r.contains(&format!("<code>{table}</code>")))
            .unwrap_or_else(|| panic!("no row for {table}: {section}"))
            .to_string()
    };
    let products = row("products");
    assert!(products.starts_with(" class=\"fail\""), "{products}");
    let total = format!("{} → {}", pretty(&db, before.3), pretty(&db, after.3));
    assert!(products.contains(&total), "wants `{total}`: {products}");
    let customers = row("customers");
    assert!(customers.starts_with(" class=\"pass\""), "{customers}");
}
