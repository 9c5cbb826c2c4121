//! The seed-000 story: rename client_products.fixed_cost with three dependent views.

use crate::common::{TestDb, migval, p, rt, snapshot_to, status};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/fee_rename");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{DIR}/{name}")).expect("fixture file")
}

async fn apply(db: &TestDb, file: &str) {
    db.exec(&format!("BEGIN;\n{}\nCOMMIT;", fixture(file)))
        .await;
}

#[test]
fn good_migration_passes_broken_one_fails_on_the_view_and_rollback_restores_exactly() {
    let db = rt().block_on(async {
        let db = TestDb::new("fee_rename_story").await;
        db.exec(&fixture("schema.sql")).await;
        db.exec("SELECT fee_rename_generate(5000)").await;
        db
    });
    let spec = format!("{DIR}/checks.toml");
    let base = db.path("base.json");
    let r = migval(&[
        "snapshot",
        "--spec",
        &spec,
        "--out",
        p(&base),
        "--db",
        &db.url,
    ]);
    assert_eq!(r.code, 0, "{r}");

    rt().block_on(apply(&db, "migration.sql"));
    let good = migval(&[
        "verify",
        "--spec",
        &spec,
        "--baseline",
        p(&base),
        "--db",
        &db.url,
    ]);
    assert_eq!(good.code, 0, "{good}");
    assert!(
        good.stdout.contains("VALIDATION PASSED (26 checks)"),
        "{good}"
    );
    assert!(
        good.stdout.contains(
            "rename:   client_products.fixed_cost -> client_products.fixed_fee_facilitated"
        ),
        "{good}"
    );

    rt().block_on(apply(&db, "rollback.sql"));
    let no_rename = fixture("checks.toml")
        .lines()
        .filter(|l| {
            !l.starts_with("\"client_products.fixed_cost\"")
                && !l.starts_with("\"products_list_view.fixed_cost\"")
        })
        .collect::<Vec<_>>()
        .join("\n");
    let rollback_spec = db.file("rollback.toml", &no_rename);
    let after_rollback = db.path("after_rollback.json");
    let r = snapshot_to(&db, &rollback_spec, &after_rollback);
    assert_eq!(r.code, 0, "{r}");
    let exact = migval(&["diff", p(&base), p(&after_rollback), "--format", "json"]);
    assert_eq!(
        exact.code, 0,
        "rollback restores the baseline exactly{exact}"
    );
    let report: serde_json::Value = serde_json::from_str(&exact.stdout).unwrap();
    for c in report["checks"].as_array().unwrap() {
        assert_eq!(c["status"], "PASS", "{c:#}");
        for v in c["values"].as_array().unwrap() {
            if let (Some(b), Some(a)) = (v["baseline"].as_str(), v["after"].as_str()) {
                assert_eq!(b, a, "exact equality, not just within tolerance: {v:#}");
            }
        }
    }

    rt().block_on(apply(&db, "migration_broken.sql"));
    let broken = migval(&[
        "verify",
        "--spec",
        &spec,
        "--baseline",
        p(&base),
        "--db",
        &db.url,
        "--format",
        "json",
    ]);
    assert_eq!(broken.code, 1, "{broken}");
    let report: serde_json::Value = serde_json::from_str(&broken.stdout).unwrap();
    let failing: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "FAIL")
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        failing,
        vec![
            "company revenue per company (company_revenue_analytics view)",
            "schema diff"
        ]
    );
    let schema = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "schema diff")
        .unwrap();
    assert!(
        schema["summary"]
            .as_str()
            .unwrap()
            .contains("1 undeclared: alter view public.company_revenue_analytics (definition"),
        "the recreated view's new definition is not declared: {schema:#}"
    );
    assert_eq!(
        status(
            &report,
            "company revenue recomputed from base tables (not via views)"
        ),
        "PASS"
    );
    let view = &report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["status"] == "FAIL")
        .unwrap()["worst"][0];
    assert_eq!(view["metric"], "sum(total_fixed_revenue)", "{view:#}");
    assert_eq!(view["ok"], false);
}

#[test]
fn demo_runs_on_a_throwaway_cluster_and_explains_the_verdicts() {
    let html = std::env::temp_dir().join(format!("migval-demo-test-{}.html", std::process::id()));
    let r = migval(&["demo", "--rows", "3000", "--html", p(&html)]);
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.stdout
            .contains("good migration:    VALIDATION PASSED (26 checks)"),
        "{r}"
    );
    assert!(
        r.stdout
            .contains("rollback:          VALIDATION PASSED (26 checks)"),
        "{r}"
    );
    assert!(
        r.stdout
            .contains("broken migration:  VALIDATION FAILED: 2 of 26 checks"),
        "{r}"
    );
    assert!(
        r.stdout
            .contains("caught by `company revenue per company (company_revenue_analytics view)`"),
        "{r}"
    );
    // The broken migration's page for the change board, its path printed.
    assert!(
        r.stdout.contains(&format!(
            "HTML report of the broken migration: {}",
            html.display()
        )),
        "{r}"
    );
    let page = std::fs::read_to_string(&html).expect("the demo wrote the HTML report");
    assert!(page.contains("VALIDATION FAILED: 2 of 26 checks"), "{page}");
    let _ = std::fs::remove_file(&html);
}
