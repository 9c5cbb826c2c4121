//! `migval init`: a spec generated from the catalog and the migration script, tried as it is
//! on every fixture: the good migration must pass, the broken one should fail.

use crate::common::{migval, p, world};

fn fixture(name: &str, file: &str) -> String {
    format!("{}/fixtures/{name}/{file}", env!("CARGO_MANIFEST_DIR"))
}

/// Generate a spec from `migration.sql`, then rehearse the good and the broken migrations
/// with it: (good exit code, broken exit code, the spec text).
fn generated(name: &str) -> (i32, i32, String) {
    let schema = std::fs::read_to_string(fixture(name, "schema.sql")).unwrap();
    let db = world(
        &format!("init_{name}"),
        &format!("{schema}\nSELECT {name}_generate(2000);"),
    );
    let spec = db.path("generated.toml");
    let r = migval(&[
        "init",
        "--db",
        &db.url,
        "--migration",
        &fixture(name, "migration.sql"),
        "-o",
        p(&spec),
    ]);
    assert_eq!(r.code, 0, "{r}");
    let text = std::fs::read_to_string(&spec).unwrap();
    let run = |file: &str| {
        let r = migval(&[
            "migrate",
            &fixture(name, file),
            "--spec",
            p(&spec),
            "--db",
            &db.url,
        ]);
        assert_ne!(r.code, 2, "the generated spec runs{r}\n{text}");
        r.code
    };
    (run("migration.sql"), run("migration_broken.sql"), text)
}

#[test]
fn a_generated_spec_passes_the_good_fee_rename_migration_and_catches_the_broken_view() {
    let (good, broken, text) = generated("fee_rename");
    assert_eq!(good, 0, "{text}");
    assert_eq!(broken, 1, "{text}");
    assert!(
        text.contains("\"client_products.fixed_cost\" = \"client_products.fixed_fee_facilitated\""),
        "the rename is inferred: {text}"
    );
    assert!(
        text.contains("alter view public.company_revenue_analytics"),
        "{text}"
    );
    assert!(text.contains("# why:"), "every check says why");
}

#[test]
fn a_generated_spec_for_seed_002_checks_the_new_key_after_only() {
    let (good, broken, text) = generated("subscriber_schema");
    assert_eq!(good, 0, "{text}");
    assert_eq!(broken, 1, "the dropped index is caught: {text}");
    assert!(
        text.contains("add column public.plan_subscriptions.subscriber_id"),
        "{text}"
    );
    assert!(
        text.contains("plan_subscriptions.subscriber_id: no orphan"),
        "{text}"
    );
}

#[test]
fn a_generated_spec_for_seed_004_declares_functions_policies_and_new_tables() {
    let (good, broken, text) = generated("status_levels");
    assert_eq!(good, 0, "{text}");
    assert_eq!(broken, 1, "the dropped policy is caught: {text}");
    assert!(
        text.contains("add table public.organization_status_levels"),
        "{text}"
    );
}

#[test]
fn a_generated_spec_for_seed_003_passes_but_cannot_know_the_value_mapping() {
    // The broken migration maps some accounts to the wrong status: only a check that states
    // the mapping (fixtures/account_status/checks.toml) sees it; init declares the schema
    // change and checks rows and totals, which the broken mapping leaves intact.
    let (good, broken, text) = generated("account_status");
    assert_eq!(good, 0, "{text}");
    assert_eq!(broken, 0, "the measured miss (README: migval init){text}");
    assert!(
        text.contains("drop column public.accounts.license_status"),
        "{text}"
    );
    assert!(
        text.contains("drop constraint public.accounts.accounts_license_status_check"),
        "a dropped column's constraint is declared: {text}"
    );
}

#[test]
fn init_on_a_thousand_tables_is_bounded_and_never_writes() {
    let db = world(
        "init_thousand",
        "DO $$ BEGIN FOR i IN 1..1000 LOOP
            EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, owner_id int, amount numeric, at date)', i);
         END LOOP; END $$;
         CREATE TABLE owners (id int PRIMARY KEY);",
    );
    let list: Vec<String> = (1..=1000).map(|i| format!("t{i}")).collect();
    let list = list.join(",");
    let r = migval(&["init", "--db", &db.url, "--tables", &list]);
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.stdout.contains("Not checked (more than 200 tables)"),
        "bounded"
    );
    assert!(r.stdout.contains("name = \"t1: rows and column totals\""));
    assert!(r.stdout.contains("sum(amount)") && r.stdout.contains("min(at)"));
    assert!(!r.stdout.contains("sum(owner_id)"), "no sums of keys");
    // `owners` is not in scope: no likely key is guessed to a table not asked for.
    assert!(
        !r.stdout.contains("owners.id"),
        "{}",
        &r.stdout[..2000.min(r.stdout.len())]
    );
    let spec = db.file("big.toml", &r.stdout);
    let r = migval(&[
        "snapshot",
        "--spec",
        p(&spec),
        "--out",
        p(&db.path("b.json")),
        "--db",
        &db.url,
    ]);
    assert_eq!(r.code, 0, "the generated spec snapshots{r}");
}

#[test]
fn a_generated_spec_for_runbook_001_passes_both_files_but_cannot_count_primary_contacts() {
    // Two --migration files, as the runbook has them. The broken data migration marks two
    // primary contacts in some organisations: a rule between rows of the new columns, which
    // no generated check states (fixtures/org_customers/checks.toml does: "exactly one
    // primary contact per organisation that has contacts").
    let name = "org_customers";
    let schema = std::fs::read_to_string(fixture(name, "schema.sql")).unwrap();
    let db = world(
        "init_org_customers",
        &format!("{schema}\nSELECT org_customers_generate(1000);"),
    );
    let spec = db.path("generated.toml");
    let (schema_file, data) = (fixture(name, "01_schema.sql"), fixture(name, "02_data.sql"));
    let r = migval(&[
        "init",
        "--db",
        &db.url,
        "--migration",
        &schema_file,
        "--migration",
        &data,
        "-o",
        p(&spec),
    ]);
    assert_eq!(r.code, 0, "{r}");
    let text = std::fs::read_to_string(&spec).unwrap();
    for line in [
        "add column public.projects.customer_organization_id",
        "add table public.project_contact_points",
        // The column's inline `CONSTRAINT ... REFERENCES` adds a constraint to declare.
        "add constraint public.projects.*",
        "projects.customer_organization_id: no orphan",
        "contacts.is_primary_contact: no NULL",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    let run = |data_file: &str| {
        let r = migval(&[
            "migrate",
            &schema_file,
            &fixture(name, data_file),
            "--spec",
            p(&spec),
            "--db",
            &db.url,
        ]);
        assert_ne!(r.code, 2, "the generated spec runs{r}\n{text}");
        r
    };
    let good = run("02_data.sql");
    assert_eq!(good.code, 0, "{good}\n{text}");
    let broken = run("02_data_broken.sql");
    assert_eq!(
        broken.code, 0,
        "the measured miss (README: migval init){broken}"
    );
}
