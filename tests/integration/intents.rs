//! The intent-native spec: checks on what the migration creates (after-only), before/after
//! forms of metrics, filters and group keys, schema facts as DBAs think of them, and the
//! verdict when a migration drops what a check reads. Every test takes the baseline BEFORE the
//! schema change, applies a migration, and verifies: once the good way, once broken.

use crate::common::{TestDb, check, migval, p, rt, snapshot_then, status, verify_again, world};

/// Baseline, `migration`, verify: the verify run and its JSON report.
fn verify_after(
    db: &TestDb,
    spec: &str,
    migration: &str,
) -> (crate::common::Run, serde_json::Value) {
    snapshot_then(db, spec, || rt().block_on(db.exec(migration)))
}

fn summary<'a>(report: &'a serde_json::Value, name: &str) -> &'a str {
    check(report, name)["summary"].as_str().unwrap_or("")
}

// --- seed 002: a new foreign key column, filled by a backfill ---------------------------

const SUBSCRIPTIONS: &str = r#"
CREATE TABLE subscribers (id int PRIMARY KEY, customer_id int NOT NULL);
CREATE TABLE plan_subscriptions (id int PRIMARY KEY, customer_id int NOT NULL, status text NOT NULL);
INSERT INTO subscribers SELECT g, g FROM generate_series(1, 50) g;
INSERT INTO plan_subscriptions
SELECT g, 1 + g % 60, CASE WHEN g % 4 = 0 THEN 'cancelled' ELSE 'active' END
FROM generate_series(1, 200) g;
"#;

/// Taken before `subscriber_id` exists: the checks on it are after-only, declared either by
/// the `add column` line or by `new = true`.
const SUBSCRIPTION_CHECKS: &str = r#"
[schema]
expect = ["add column public.plan_subscriptions.subscriber_id", "add constraint *", "add index *"]

[[check]]
name = "every resolvable subscription has a subscriber"
null_count = "plan_subscriptions.subscriber_id"
where = "customer_id <= 50"
expect = "zero"

[[check]]
name = "no orphan subscriber_id"
orphans = { child = "plan_subscriptions.subscriber_id", parent = "subscribers.id" }
expect = "zero"

[[check]]
name = "linked subscriptions per status"
new = true
table = "plan_subscriptions"
group_by = ["status"]
metrics = [{ metric = "count(subscriber_id)", expect = { between = ["1", "1000"] } }]

[[check]]
name = "resolvable subscriptions all linked"
new = true
table = "plan_subscriptions"
where = "customer_id <= 50"
metrics = [{ metric = "count(subscriber_id)", expect = { equals = "170" } }]

[[check]]
name = "subscriptions unchanged"
table = "plan_subscriptions"
metrics = ["count(*)"]

[[check]]
name = "the new key is a real foreign key"
schema = { foreign_key = "plan_subscriptions(subscriber_id) -> subscribers(id)", validated = true }
"#;

#[test]
fn after_only_checks_judge_a_new_column_by_their_intent() {
    let db = world("intent_new_column", SUBSCRIPTIONS);
    let good = r#"
ALTER TABLE plan_subscriptions ADD COLUMN subscriber_id int REFERENCES subscribers(id);
UPDATE plan_subscriptions ps SET subscriber_id = s.id FROM subscribers s WHERE s.customer_id = ps.customer_id;
"#;
    let (run, report) = verify_after(&db, SUBSCRIPTION_CHECKS, good);
    assert_eq!(run.code, 0, "{run}");
    for name in [
        "every resolvable subscription has a subscriber",
        "no orphan subscriber_id",
        "linked subscriptions per status",
        "resolvable subscriptions all linked",
    ] {
        assert_eq!(status(&report, name), "PASS", "{name}{run}");
        assert_eq!(check(&report, name)["after_only"], true, "{name}{run}");
    }
    assert_eq!(
        status(&report, "the new key is a real foreign key"),
        "PASS",
        "{run}"
    );
    let text = migval(&[
        "diff",
        p(&db.path("base.json")),
        p(&db.path("base.json")),
        "--spec",
        p(&db.path("checks.toml")),
    ]);
    // The baseline recorded the new checks as absent, not as errors.
    let base = std::fs::read_to_string(db.path("base.json")).unwrap();
    assert!(base.contains("\"absent\""), "{base}");
    assert_ne!(
        text.code, 2,
        "a baseline with new checks diffs against itself{text}"
    );
}

#[test]
fn after_only_checks_fail_when_the_backfill_left_nulls_and_orphans() {
    let db = world("intent_new_column_broken", SUBSCRIPTIONS);
    // No constraint, one orphan, and NULLs left for resolvable rows.
    let broken = r#"
ALTER TABLE plan_subscriptions ADD COLUMN subscriber_id int;
UPDATE plan_subscriptions ps SET subscriber_id = s.id FROM subscribers s
 WHERE s.customer_id = ps.customer_id AND ps.id % 10 <> 0;
UPDATE plan_subscriptions SET subscriber_id = 9999 WHERE id = 3;
"#;
    let (run, report) = verify_after(&db, SUBSCRIPTION_CHECKS, broken);
    assert_eq!(run.code, 1, "{run}");
    let nulls = "every resolvable subscription has a subscriber";
    assert_eq!(status(&report, nulls), "FAIL", "{run}");
    assert!(summary(&report, nulls).contains("null_count = "), "{run}");
    assert_eq!(status(&report, "no orphan subscriber_id"), "FAIL", "{run}");
    assert!(
        summary(&report, "no orphan subscriber_id").contains("orphans = 1"),
        "{run}"
    );
    assert_eq!(
        status(&report, "the new key is a real foreign key"),
        "FAIL",
        "{run}"
    );
    assert_eq!(status(&report, "subscriptions unchanged"), "PASS", "{run}");
    // `new = true` without an `add` line: judged by its intent alone, and failing here.
    assert_eq!(
        status(&report, "resolvable subscriptions all linked"),
        "FAIL",
        "{run}"
    );
    assert_eq!(
        check(&report, "resolvable subscriptions all linked")["after_only"],
        true
    );
    // The text report shows the baseline of a new check as "(new)".
    let text = verify_again(&db, &[]);
    assert!(text.stdout.contains("(new)"), "{text}");
}

#[test]
fn a_new_check_that_is_never_created_fails_naming_the_column() {
    let db = world("intent_new_never_created", SUBSCRIPTIONS);
    let (run, report) = verify_after(&db, SUBSCRIPTION_CHECKS, "SELECT 1");
    assert_eq!(run.code, 1, "{run}");
    let s = summary(&report, "no orphan subscriber_id");
    assert!(
        s.contains("declared new") && s.contains("subscriber_id"),
        "{run}"
    );
    // The schema diff says the declared column was not added.
    assert_eq!(status(&report, "schema diff"), "FAIL", "{run}");
}

#[test]
fn spec_errors_for_after_only_checks_say_what_to_write() {
    let db = world("intent_spec_errors", SUBSCRIPTIONS);
    let cases = [
        (
            "[[check]]\nname = \"n\"\nnew = true\nnull_count = \"plan_subscriptions.x\"\n",
            "nothing to be unchanged against",
        ),
        (
            "[[check]]\nname = \"q\"\nsql_after = \"SELECT count(*) AS n FROM plan_subscriptions\"\n",
            "`sql_after` alone is an after-only query",
        ),
        (
            "[[check]]\nname = \"g\"\ntable = \"plan_subscriptions\"\ngroup_by = [\"lower(status)\"]\n",
            "{ as = \"label\", expr = \"lower(status)\" }",
        ),
        (
            "[[check]]\nname = \"c\"\nnew = true\ntable = \"plan_subscriptions\"\nmetrics = [{ metric = \"count(*)\", expect = { changes_by = \"1\" } }]\n",
            "`changes_by` needs a baseline value",
        ),
    ];
    for (spec, want) in cases {
        let path = db.file("bad.toml", spec);
        let r = migval(&[
            "snapshot",
            "--spec",
            p(&path),
            "--out",
            p(&db.path("b.json")),
            "--db",
            &db.url,
        ]);
        assert_eq!(r.code, 2, "{r}");
        assert!(r.all().contains(want), "want {want:?}{r}");
        assert!(r.all().contains("bad.toml:"), "{r}");
    }
    // A missing column NOT declared new: today's error, with a hint on how to declare it.
    let path = db.file(
        "missing.toml",
        "[[check]]\nname = \"m\"\nnull_count = \"plan_subscriptions.subscriber_id\"\nexpect = \"zero\"\n",
    );
    let r = migval(&[
        "snapshot",
        "--spec",
        p(&path),
        "--out",
        p(&db.path("b.json")),
        "--db",
        &db.url,
    ]);
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.all().contains("column `subscriber_id` does not exist"),
        "{r}"
    );
    assert!(r.all().contains("new = true"), "{r}");
}

#[test]
fn wrong_value_types_name_the_check_and_the_key() {
    let db = world("intent_wrong_type", SUBSCRIPTIONS);
    let path = db.file(
        "t.toml",
        "[[check]]\nname = \"ok\"\ntable = \"plan_subscriptions\"\n\n[[check]]\nname = \"per status\"\ntable = \"plan_subscriptions\"\nmetrics = \"count(*)\"\n",
    );
    let r = migval(&[
        "snapshot",
        "--spec",
        p(&path),
        "--out",
        p(&db.path("b.json")),
        "--db",
        &db.url,
    ]);
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.all()
            .contains("t.toml:8: check `per status`, key `metrics`: invalid type"),
        "{r}"
    );
}

#[test]
fn an_after_only_query_needs_no_fake_baseline() {
    let db = world("intent_sql_after", SUBSCRIPTIONS);
    let spec = r#"
[schema]
expect = ["add column plan_subscriptions.state"]

[[check]]
name = "no subscription without a state"
sql_after = "SELECT count(*) AS missing FROM plan_subscriptions WHERE state IS NULL"
expect = "zero"

[[check]]
name = "states in range"
sql_after = "SELECT count(DISTINCT state) AS states, min(id) AS first_id FROM plan_subscriptions"
expect = { between = ["1", "3"] }
"#;
    let good = "ALTER TABLE plan_subscriptions ADD COLUMN state text; UPDATE plan_subscriptions SET state = status;";
    let (run, report) = verify_after(&db, spec, good);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(
        status(&report, "no subscription without a state"),
        "PASS",
        "{run}"
    );
    assert!(
        summary(&report, "no subscription without a state").contains("missing = 0"),
        "{run}"
    );
    let db2 = world("intent_sql_after_broken", SUBSCRIPTIONS);
    let broken = "ALTER TABLE plan_subscriptions ADD COLUMN state text; UPDATE plan_subscriptions SET state = status WHERE id > 5;";
    let (run, report) = verify_after(&db2, spec, broken);
    assert_eq!(run.code, 1, "{run}");
    assert!(
        summary(&report, "no subscription without a state").contains("missing = 5"),
        "{run}"
    );
    // Both values of the one row (2 states, first id 1) are inside 1..3.
    assert_eq!(status(&report, "states in range"), "PASS", "{run}");
}

// --- unit conversion: prices to cents, flags to one status -------------------------------

const PRICES: &str = r#"
CREATE TABLE products (id int PRIMARY KEY, company_id int NOT NULL, price numeric(12,2) NOT NULL,
                       is_enabled boolean NOT NULL, is_archived boolean NOT NULL,
                       ordered_at timestamptz NOT NULL);
INSERT INTO products
SELECT g, 1 + g % 7, round(g * 1.37, 2), g % 3 <> 0, g % 11 = 0,
       timestamptz '2025-01-15 00:00+00' + (g % 90) * interval '1 day'
FROM generate_series(1, 700) g;
"#;

const PRICE_CHECKS: &str = r#"
[schema]
expect = ["add column products.price_cents", "add column products.state",
          "drop column products.price", "drop column products.is_enabled", "drop column products.is_archived",
          "add constraint products.products_state_valid"]

[[check]]
name = "revenue per company, in cents after"
table = "products"
where = { before = "is_enabled AND NOT is_archived", after = "state = 'enabled'" }
group_by = ["company_id"]
metrics = ["count(*)", { metric = "sum(price)", after = "sum(price_cents) / 100.0", tolerance = { abs = "0.01" } }]
tolerance = { abs = "0.01", scope = "both" }

[[check]]
name = "ungrouped revenue of archived products"
table = "products"
where = { before = "is_archived", after = "state = 'archived'" }
metrics = [{ metric = "sum(price)", after = "sum(price_cents) / 100.0" }]

[[check]]
name = "products per status"
table = "products"
group_by = [{ as = "status", before = "CASE WHEN is_archived THEN 'archived' WHEN is_enabled THEN 'enabled' ELSE 'disabled' END", after = "state" }]
metrics = ["count(*)"]

[[check]]
name = "revenue per month"
table = "products"
group_by = [{ as = "month_utc", expr = "date_trunc('month', ordered_at AT TIME ZONE 'UTC')" }]
metrics = [{ metric = "sum(price)", after = "sum(price_cents) / 100.0" }]

[[check]]
name = "old columns gone"
schema = { columns_absent = ["products.price", "products.is_enabled", "products.is_archived"] }

[[check]]
name = "cents are integers"
schema = { column = "products.price_cents", type = "bigint", nullable = false }

[[check]]
name = "a state is always valid"
schema = { check = "products.state", validated = true }
"#;

const TO_CENTS: &str = r#"
ALTER TABLE products ADD COLUMN price_cents bigint, ADD COLUMN state text;
UPDATE products SET price_cents = (price * 100)::bigint,
       state = CASE WHEN is_archived THEN 'archived' WHEN is_enabled THEN 'enabled' ELSE 'disabled' END;
ALTER TABLE products ALTER COLUMN price_cents SET NOT NULL,
    ADD CONSTRAINT products_state_valid CHECK (state IN ('enabled', 'disabled', 'archived')),
    DROP COLUMN price, DROP COLUMN is_enabled, DROP COLUMN is_archived;
"#;

#[test]
fn before_and_after_forms_validate_a_unit_conversion() {
    let db = world("intent_cents", PRICES);
    let (run, report) = verify_after(&db, PRICE_CHECKS, TO_CENTS);
    assert_eq!(run.code, 0, "{run}");
    for c in report["checks"].as_array().unwrap() {
        assert_eq!(c["status"], "PASS", "{c:#}{run}");
    }
    // Where the tolerance applied is said.
    assert!(
        check(&report, "revenue per company, in cents after")["tolerance"]
            .as_str()
            .unwrap()
            .contains("per group and total"),
        "{run}"
    );
    assert_eq!(
        check(&report, "products per status")["groups"]["after_groups"],
        3,
        "{run}"
    );
    assert_eq!(
        check(&report, "revenue per month")["groups"]["after_groups"],
        4,
        "{run}"
    );
    // Text, Markdown and JUnit say where each grouped check's tolerance applied too.
    for format in ["text", "markdown", "junit"] {
        let r = verify_again(&db, &["--format", format]);
        assert_eq!(r.code, 0, "{r}");
        assert!(r.stdout.contains("exact per group"), "{format}{r}");
    }
}

#[test]
fn before_and_after_forms_catch_a_wrong_conversion() {
    let db = world("intent_cents_broken", PRICES);
    // Company 3's prices converted with a factor 10, one enabled product archived by mistake,
    // the old flag left behind, and no CHECK on the state.
    let broken = r#"
ALTER TABLE products ADD COLUMN price_cents bigint, ADD COLUMN state text;
UPDATE products SET price_cents = (price * CASE WHEN company_id = 3 THEN 10 ELSE 100 END)::bigint,
       state = CASE WHEN is_archived OR id = 1 THEN 'archived' WHEN is_enabled THEN 'enabled' ELSE 'disabled' END;
ALTER TABLE products DROP COLUMN price, DROP COLUMN is_archived;
"#;
    let (run, report) = verify_after(&db, PRICE_CHECKS, broken);
    assert_eq!(run.code, 1, "{run}");
    let revenue = check(&report, "revenue per company, in cents after");
    assert_eq!(revenue["status"], "FAIL", "{run}");
    let worst: Vec<&str> = revenue["worst"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["ok"] == false)
        .filter_map(|w| w["key"][0].as_str())
        .collect();
    assert!(worst.contains(&"3"), "company 3 is named: {worst:?}{run}");
    assert_eq!(status(&report, "products per status"), "FAIL", "{run}");
    // The month key is an expression on both sides: company 3's wrong cents show per month.
    assert_eq!(status(&report, "revenue per month"), "FAIL", "{run}");
    assert_eq!(
        status(&report, "ungrouped revenue of archived products"),
        "FAIL",
        "{run}"
    );
    assert_eq!(status(&report, "old columns gone"), "FAIL", "{run}");
    assert!(
        summary(&report, "old columns gone").contains("is_enabled"),
        "{run}"
    );
    assert_eq!(
        status(&report, "cents are integers"),
        "FAIL",
        "nullable{run}"
    );
    assert_eq!(status(&report, "a state is always valid"), "FAIL", "{run}");
}

// --- partitions ------------------------------------------------------------------------

const EVENTS: &str = r#"
CREATE TABLE events (id int NOT NULL, ts timestamptz NOT NULL, kind text, legacy int)
    PARTITION BY RANGE (ts);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE events_other PARTITION OF events DEFAULT;
INSERT INTO events
SELECT g, timestamptz '2024-06-01 00:00+00' + g * interval '1 day', 'k' || g % 3, g
FROM generate_series(1, 600) g;
"#;

#[test]
fn grouped_by_partition_and_a_column_fact_over_every_partition() {
    let db = world("intent_partitions", EVENTS);
    let spec = r#"
[schema]
expect = ["drop column events.legacy", "alter column *"]

[[check]]
name = "rows per partition"
table = "events"
group_by = ["tableoid"]
metrics = ["count(*)"]

[[check]]
name = "kind is text everywhere"
schema = { column = "events.kind", type = "text", nullable = true }

[[check]]
name = "legacy gone"
schema = { columns_absent = ["events.legacy"] }
"#;
    // Good: the column dropped on the parent (and so on every partition).
    let (run, report) = verify_after(&db, spec, "ALTER TABLE events DROP COLUMN legacy");
    assert_eq!(run.code, 0, "{run}");
    let groups = check(&report, "rows per partition")["groups"].clone();
    assert_eq!(groups["after_groups"], 3, "{run}");
    assert_eq!(status(&report, "kind is text everywhere"), "PASS", "{run}");
    assert_eq!(status(&report, "legacy gone"), "PASS", "{run}");

    // Broken: a partition detached, changed and re-attached is impossible for a type, but a
    // NOT NULL dropped on one partition only is not; rows moved between partitions.
    let db = world("intent_partitions_broken", EVENTS);
    let broken = r#"
ALTER TABLE events_2025 ALTER COLUMN kind SET NOT NULL;
UPDATE events SET ts = ts + interval '1 year' WHERE id = 100;
"#;
    let (run, report) = verify_after(&db, spec, broken);
    assert_eq!(run.code, 1, "{run}");
    assert_eq!(status(&report, "rows per partition"), "FAIL", "{run}");
    let worst = check(&report, "rows per partition")["worst"].to_string();
    assert!(
        worst.contains("events_2024") && worst.contains("events_2025"),
        "{worst}{run}"
    );
    assert_eq!(status(&report, "kind is text everywhere"), "FAIL", "{run}");
    assert!(
        summary(&report, "kind is text everywhere").contains("events_2025"),
        "{run}"
    );
    assert_eq!(status(&report, "legacy gone"), "FAIL", "{run}");
}

// --- a dropped view ----------------------------------------------------------------------

#[test]
fn a_view_the_migration_dropped_fails_its_checks_and_the_rest_still_run() {
    let db = world(
        "intent_dropped_view",
        &format!(
            "{PRICES}\nCREATE VIEW revenue_by_company AS SELECT company_id, sum(price) AS revenue FROM products GROUP BY 1;"
        ),
    );
    let spec = r#"
[schema]
undeclared = "warn"

[[check]]
name = "revenue via the view"
table = "revenue_by_company"
metrics = ["sum(revenue)"]

[[check]]
name = "view rows"
sql = "SELECT company_id, revenue FROM revenue_by_company"
key = ["company_id"]

[[check]]
name = "products"
table = "products"
metrics = ["count(*)"]
"#;
    let (run, report) = verify_after(&db, spec, "DROP VIEW revenue_by_company");
    assert_eq!(
        run.code, 1,
        "a dropped view is a failed check, not a tool error{run}"
    );
    assert_eq!(status(&report, "revenue via the view"), "FAIL", "{run}");
    assert!(
        summary(&report, "revenue via the view").contains("`revenue_by_company` no longer exists"),
        "{run}"
    );
    assert_eq!(status(&report, "view rows"), "FAIL", "{run}");
    assert_eq!(status(&report, "products"), "PASS", "{run}");
}

// --- schema facts --------------------------------------------------------------------------

#[test]
fn schema_facts_by_what_they_are() {
    let db = world(
        "intent_facts",
        r#"
CREATE DOMAIN cents AS bigint CHECK (VALUE >= 0);
CREATE TABLE customers (id int PRIMARY KEY);
CREATE TABLE orders (id int PRIMARY KEY, customer_id int, tenant int NOT NULL, number int NOT NULL,
                     fixed_cost numeric, total cents);
INSERT INTO customers SELECT generate_series(1, 5);
INSERT INTO orders SELECT g, 1 + g % 5, g % 2, g, g, g FROM generate_series(1, 20) g;
"#,
    );
    let spec = r#"
[rename]
"orders.fixed_cost" = "orders.fixed_fee"

[schema]
undeclared = "warn"

[[check]]
name = "fk by columns"
schema = { foreign_key = "orders(customer_id) -> customers(id)", validated = true }

[[check]]
name = "unique per tenant"
schema = { unique = "orders(number, tenant)" }

[[check]]
name = "old fee name gone"
schema = { column = "orders.fixed_cost", exists = false, follow_rename = false }

[[check]]
name = "total is the domain"
schema = { column = "orders.total", type = "public.cents" }

[[check]]
name = "total is the domain, unqualified"
schema = { column = "orders.total", type = "cents" }

[[check]]
name = "summary view is materialized and populated"
schema = { view = "order_summary", kind = "materialized", populated = true }

[[check]]
name = "summary view exists"
schema = { view = "order_summary" }
"#;
    let good = r#"
ALTER TABLE orders RENAME COLUMN fixed_cost TO fixed_fee;
ALTER TABLE orders ADD FOREIGN KEY (customer_id) REFERENCES customers(id);
ALTER TABLE orders ADD UNIQUE (tenant, number);
CREATE MATERIALIZED VIEW order_summary AS SELECT customer_id, count(*) FROM orders GROUP BY 1;
"#;
    let (run, report) = verify_after(&db, spec, good);
    assert_eq!(run.code, 0, "{run}");
    for c in report["checks"].as_array().unwrap() {
        assert_ne!(c["status"], "FAIL", "{c:#}{run}");
    }
    let db = world(
        "intent_facts_broken",
        r#"
CREATE DOMAIN cents AS bigint CHECK (VALUE >= 0);
CREATE TABLE customers (id int PRIMARY KEY);
CREATE TABLE orders (id int PRIMARY KEY, customer_id int, tenant int NOT NULL, number int NOT NULL,
                     fixed_cost numeric, total cents);
"#,
    );
    // NOT VALID key, a partial unique index, the old column kept next to the new one, a
    // matview shipped WITH NO DATA.
    let broken = r#"
ALTER TABLE orders ADD COLUMN fixed_fee numeric;
ALTER TABLE orders ADD FOREIGN KEY (customer_id) REFERENCES customers(id) NOT VALID;
CREATE UNIQUE INDEX orders_tenant_number ON orders (tenant, number) WHERE number > 0;
CREATE MATERIALIZED VIEW order_summary AS SELECT customer_id, count(*) FROM orders GROUP BY 1 WITH NO DATA;
ALTER TABLE orders ALTER COLUMN total TYPE bigint;
"#;
    let (run, report) = verify_after(&db, spec, broken);
    assert_eq!(run.code, 1, "{run}");
    assert_eq!(status(&report, "fk by columns"), "FAIL", "{run}");
    assert!(
        summary(&report, "fk by columns").contains("validated"),
        "{run}"
    );
    assert_eq!(status(&report, "unique per tenant"), "FAIL", "{run}");
    assert_eq!(status(&report, "old fee name gone"), "FAIL", "{run}");
    assert_eq!(
        status(&report, "summary view is materialized and populated"),
        "FAIL",
        "{run}"
    );
    // Unpopulated is not "missing".
    assert_eq!(status(&report, "summary view exists"), "PASS", "{run}");
    // The domain replaced by its base type: both spellings of the declared type catch it.
    assert_eq!(status(&report, "total is the domain"), "FAIL", "{run}");
    assert_eq!(
        status(&report, "total is the domain, unqualified"),
        "FAIL",
        "{run}"
    );
}

// --- reports -------------------------------------------------------------------------------

#[test]
fn one_row_queries_show_their_values_and_integer_columns_are_exact() {
    let db = world("intent_one_row", SUBSCRIPTIONS);
    let spec = r#"
[[check]]
name = "totals"
sql = "SELECT 'all' AS scope, count(*) AS subscriptions, sum(customer_id)::numeric AS weight FROM plan_subscriptions"
key = ["scope"]
tolerance = { abs = "5" }

[[check]]
name = "no key"
sql = "SELECT count(*) AS n FROM subscribers"
tolerance = { abs = "5" }
"#;
    let (run, report) = verify_after(
        &db,
        spec,
        "UPDATE plan_subscriptions SET customer_id = customer_id + 1 WHERE id = 1; INSERT INTO subscribers VALUES (51, 51);",
    );
    assert_eq!(run.code, 1, "{run}");
    let totals = summary(&report, "totals");
    assert!(!totals.contains("groups"), "{totals}{run}");
    assert_eq!(
        status(&report, "totals"),
        "PASS",
        "weight within 5, count unchanged{run}"
    );
    // An integer column of a custom query is exact whatever the tolerance.
    assert_eq!(status(&report, "no key"), "FAIL", "{run}");
    assert!(summary(&report, "no key").contains("n: 50 -> 51"), "{run}");
}

// --- compatibility ---------------------------------------------------------------------------

/// tests/data/legacy_0_1: a spec using every construct of migval 0.1 and the baseline that
/// version wrote for it (the data is generated deterministically by schema.sql).
fn legacy(name: &str) -> (TestDb, std::path::PathBuf, std::path::PathBuf) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/legacy_0_1");
    let schema = std::fs::read_to_string(dir.join("schema.sql")).unwrap();
    (
        world(name, &schema),
        dir.join("checks.toml"),
        dir.join("baseline.json"),
    )
}

#[test]
fn a_baseline_made_by_migval_0_1_verifies_without_false_definition_changes() {
    let (db, spec, base) = legacy("intent_legacy");
    let r = migval(&[
        "verify",
        "--spec",
        p(&spec),
        "--baseline",
        p(&base),
        "--db",
        &db.url,
        "--format",
        "json",
    ]);
    let report: serde_json::Value =
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}{r}"));
    assert_eq!(r.code, 0, "{r}");
    assert!(
        report
            .get("spec_changes")
            .is_none_or(|c| c.as_array().is_some_and(|a| a.is_empty())),
        "no check reads as changed: {}",
        report["spec_changes"]
    );
    assert_eq!(report["checks"].as_array().unwrap().len(), 18, "{r}");
    // The comparison is real: a changed price fails the revenue checks.
    rt().block_on(db.exec("UPDATE products SET price = price + 1 WHERE id = 5"));
    let r = migval(&[
        "verify",
        "--spec",
        p(&spec),
        "--baseline",
        p(&base),
        "--db",
        &db.url,
        "--format",
        "json",
    ]);
    assert_eq!(r.code, 1, "{r}");
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(status(&report, "row counts and revenue"), "FAIL", "{r}");
    // A definition edited since the old baseline is still told apart.
    let edited = std::fs::read_to_string(&spec).unwrap().replace(
        "expect = { equals = \"117\" }",
        "expect = { equals = \"118\" }",
    );
    let edited = db.file("edited.toml", &edited);
    let r = migval(&[
        "verify",
        "--spec",
        p(&edited),
        "--baseline",
        p(&base),
        "--db",
        &db.url,
        "--format",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        status(&report, "prices never NULL except the known ones"),
        "ERROR",
        "{r}"
    );
    assert_eq!(status(&report, "no orphan products"), "PASS", "{r}");
}
