//! The seed-002/003/004 fixtures rehearsed with `migval migrate`: each good migration passes
//! and leaves no trace, each rollback restores the baseline exactly, and each broken migration
//! is caught by the check its README names (for schema-only breaks, the schema diff alone).

use crate::common::{Run, TestDb, migval, rt, status};

/// Rows generated per fixture: enough for every edge case of the generators.
const ROWS: i32 = 3000;

struct Fixture {
    name: &'static str,
    dir: String,
}

impl Fixture {
    fn new(name: &'static str) -> Fixture {
        Fixture {
            name,
            dir: format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR")),
        }
    }

    fn path(&self, file: &str) -> String {
        format!("{}/{file}", self.dir)
    }

    fn text(&self, file: &str) -> String {
        std::fs::read_to_string(self.path(file)).expect("fixture file")
    }

    /// A fresh database loaded with schema.sql and `<name>_generate(ROWS)`.
    fn world(&self, test: &str) -> TestDb {
        rt().block_on(async {
            let db = TestDb::new(test).await;
            db.exec(&self.text("schema.sql")).await;
            db.exec(&format!("SELECT {}_generate({ROWS})", self.name))
                .await;
            db
        })
    }

    /// `migval migrate <file> --spec checks.toml --format json [extra...]`.
    fn migrate(&self, db: &TestDb, file: &str, extra: &[&str]) -> (Run, Vec<serde_json::Value>) {
        let (script, spec) = (self.path(file), self.path("checks.toml"));
        let mut args = vec![
            "migrate", &script, "--spec", &spec, "--db", &db.url, "--format", "json",
        ];
        args.extend_from_slice(extra);
        let r = migval(&args);
        // With --rollback the output holds two reports, one after the other.
        let reports = serde_json::Deserializer::from_str(&r.stdout)
            .into_iter::<serde_json::Value>()
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_else(|e| panic!("migrate did not print JSON ({e}){r}"));
        assert!(!reports.is_empty(), "no report{r}");
        (r, reports)
    }
}

/// One text value from the test database.
fn probe(db: &TestDb, sql: &str) -> String {
    rt().block_on(async {
        db.client()
            .await
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get::<_, String>(0)
    })
}

/// Run `file` in a transaction, read `sql`, roll back: what the migration leaves behind
/// before migval's own rollback.
fn probe_inside(db: &TestDb, file: &str, sql: &str) -> String {
    rt().block_on(async {
        let c = db.client().await;
        c.batch_execute("BEGIN").await.unwrap();
        c.batch_execute(file).await.expect("migration runs");
        let v = c
            .query_one(sql, &[])
            .await
            .expect("probe")
            .get::<_, String>(0);
        c.batch_execute("ROLLBACK").await.unwrap();
        v
    })
}

/// Names of the checks of a report that did not pass.
fn not_passed(report: &serde_json::Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["status"] != "PASS")
        .map(|c| format!("{} ({})", c["name"], c["status"]))
        .collect()
}

/// Good migration: exit 0, every check PASS, nothing left behind (`trace` reads something the
/// migration changes and must read the same before and after the rehearsal). Then the same
/// migration with --rollback: the rollback report passes the exact comparison.
fn good_and_rollback(fx: &Fixture, db: &TestDb, trace: &str) {
    let before = probe(db, trace);
    let (r, reports) = fx.migrate(db, "migration.sql", &[]);
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(
        not_passed(&reports[0]),
        Vec::<String>::new(),
        "good migration{r}"
    );
    assert_eq!(probe(db, trace), before, "the rehearsal left a trace");

    let rollback = fx.path("rollback.sql");
    let (r, reports) = fx.migrate(db, "migration.sql", &["--rollback", &rollback]);
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(reports.len(), 2, "migration and rollback reports{r}");
    assert_eq!(reports[1]["command"], "migrate --rollback", "{r}");
    assert_eq!(
        not_passed(&reports[1]),
        Vec::<String>::new(),
        "rollback restores the baseline exactly{r}"
    );
    assert_eq!(
        probe(db, trace),
        before,
        "the rollback rehearsal left a trace"
    );
}

/// Broken migration whose break is schema-only: every data check passes, and the schema diff
/// fails naming exactly the one undeclared change.
fn schema_only_break_fails_the_schema_diff(fx: &Fixture, db: &TestDb, change: &str) {
    let (r, reports) = fx.migrate(db, "migration_broken.sql", &[]);
    assert_eq!(r.code, 1, "{r}");
    assert_eq!(
        not_passed(&reports[0]),
        vec!["\"schema diff\" (\"FAIL\")".to_string()],
        "only the schema diff notices{r}"
    );
    let summary = crate::common::check(&reports[0], "schema diff")["summary"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        summary.contains(&format!(", 1 undeclared: {change}")),
        "{summary}"
    );
}

const SUBSCRIBER_TRACE: &str = "SELECT string_agg(column_name, ',' ORDER BY ordinal_position)
    || '|' || (SELECT string_agg(version_num, ',') FROM alembic_version)
    FROM information_schema.columns WHERE table_name = 'plan_subscriptions'";

#[test]
fn subscriber_schema_good_migration_passes_leaves_no_trace_and_rollback_restores_exactly() {
    let fx = Fixture::new("subscriber_schema");
    let db = fx.world("seeds_subscriber_schema_good");
    good_and_rollback(&fx, &db, SUBSCRIBER_TRACE);
    let trace = probe(&db, SUBSCRIBER_TRACE);
    assert!(
        !trace.contains("subscriber_id") && trace.ends_with("|c6b208ba7659"),
        "{trace}"
    );
}

#[test]
fn subscriber_schema_broken_migration_drops_the_customer_index_caught_by_the_schema_diff_only() {
    let fx = Fixture::new("subscriber_schema");
    let db = fx.world("seeds_subscriber_schema_broken");
    let indexes = "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes
        WHERE tablename = 'plan_subscriptions'";
    let inside = probe_inside(&db, &fx.text("migration_broken.sql"), indexes);
    assert!(
        !inside.contains("ix_plan_subscriptions_customer_id")
            && inside.contains("ix_plan_subscriptions_subscriber_id"),
        "the broken migration drops the customer_id index: {inside}"
    );
    schema_only_break_fails_the_schema_diff(
        &fx,
        &db,
        "drop index public.ix_plan_subscriptions_customer_id",
    );
    assert!(probe(&db, indexes).contains("ix_plan_subscriptions_customer_id"));
}

const ACCOUNT_TRACE: &str = "SELECT string_agg(column_name, ',' ORDER BY ordinal_position)
    || '|' || coalesce(to_regclass('accounts_status_backup_020')::text, '-')
    || '|' || pg_get_viewdef('active_accounts_view')
    FROM information_schema.columns WHERE table_name = 'accounts'";

#[test]
fn account_status_good_migration_passes_leaves_no_trace_and_rollback_restores_exactly() {
    let fx = Fixture::new("account_status");
    let db = fx.world("seeds_account_status_good");
    good_and_rollback(&fx, &db, ACCOUNT_TRACE);
    let trace = probe(&db, ACCOUNT_TRACE);
    assert!(
        trace.contains(",license_status,account_type,is_trial|-|")
            && !trace.contains("account_status"),
        "{trace}"
    );
}

#[test]
fn account_status_broken_migration_maps_expired_null_trial_accounts_to_on_hold() {
    let fx = Fixture::new("account_status");
    let db = fx.world("seeds_account_status_broken");
    let (r, reports) = fx.migrate(&db, "migration_broken.sql", &[]);
    assert_eq!(r.code, 1, "{r}");
    let report = &reports[0];
    assert_eq!(
        status(
            report,
            "account_status per account follows the runbook mapping"
        ),
        "FAIL",
        "{r}"
    );
    assert_eq!(
        status(report, "accounts per account_status (distribution)"),
        "FAIL",
        "{r}"
    );
    assert_eq!(
        not_passed(report).len(),
        2,
        "only the two mapping checks fail{r}"
    );
    // Exactly the expired accounts with is_trial NULL (and not churned) moved to on_hold.
    let expected = probe(
        &db,
        "SELECT count(*)::text FROM accounts WHERE license_status = 'expired'
           AND is_trial IS NULL AND account_type <> 'churned'",
    );
    let dist = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "accounts per account_status (distribution)")
        .unwrap();
    let on_hold = dist["worst"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["key"][0] == "on_hold" && w["metric"] == "count(*)")
        .unwrap_or_else(|| panic!("on_hold among the worst groups: {dist:#}"));
    assert_eq!(
        on_hold["difference"].as_str(),
        Some(expected.as_str()),
        "{on_hold:#}"
    );
    assert_ne!(expected, "0", "the generator makes such accounts");
}

const STATUS_TRACE: &str = "SELECT coalesce(to_regclass('organization_status_levels')::text, '-')
    || '|' || (SELECT string_agg(polname, ',' ORDER BY polname) FROM pg_policy
               WHERE polrelid = 'organizations'::regclass)
    || '|' || (SELECT max(version) FROM schema_migrations)";

#[test]
fn status_levels_good_migration_passes_leaves_no_trace_and_rollback_restores_exactly() {
    let fx = Fixture::new("status_levels");
    let db = fx.world("seeds_status_levels_good");
    good_and_rollback(&fx, &db, STATUS_TRACE);
    assert_eq!(
        probe(&db, STATUS_TRACE),
        "-|members_update,public_read|0026"
    );
}

#[test]
fn status_levels_broken_migration_drops_the_organizations_read_policy_caught_by_the_schema_diff_only()
 {
    let fx = Fixture::new("status_levels");
    let db = fx.world("seeds_status_levels_broken");
    let policies = "SELECT string_agg(polname, ',' ORDER BY polname) FROM pg_policy
        WHERE polrelid = 'organizations'::regclass";
    let inside = probe_inside(&db, &fx.text("migration_broken.sql"), policies);
    assert_eq!(
        inside, "members_update",
        "the broken migration drops organizations.public_read"
    );
    schema_only_break_fails_the_schema_diff(
        &fx,
        &db,
        "drop policy public.organizations.public_read",
    );
    assert_eq!(probe(&db, policies), "members_update,public_read");
}
