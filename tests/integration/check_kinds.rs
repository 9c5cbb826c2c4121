//! The shop world: customers, orders without a foreign key (so orphans exist), an index, a
//! check constraint, row level security with a policy, a function and a view.

use crate::common::{TestDb, check, rt, snapshot_then, status};

pub const SHOP: &str = r#"
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, region text);
CREATE TABLE orders (
    id bigint PRIMARY KEY,
    customer_id int,
    amount numeric(12,2),
    status text NOT NULL,
    placed_at timestamptz NOT NULL
);
INSERT INTO customers
SELECT g, 'customer ' || g, CASE WHEN g % 2 = 0 THEN 'north' ELSE 'south' END
FROM generate_series(1, 10) g;
INSERT INTO orders
SELECT g,
       CASE WHEN g <= 2 THEN 100 + g ELSE g % 10 + 1 END,
       CASE WHEN g % 5 = 0 THEN NULL ELSE g * 1.25 END,
       CASE WHEN g % 3 = 0 THEN 'shipped' ELSE 'open' END,
       timestamptz '2025-01-01 00:00+00' + g * interval '1 hour'
FROM generate_series(1, 100) g;
CREATE INDEX orders_status_idx ON orders (status);
ALTER TABLE orders ADD CONSTRAINT orders_amount_positive CHECK (amount > 0);
ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
CREATE POLICY orders_visible ON orders USING (true);
CREATE FUNCTION order_total(c int) RETURNS numeric LANGUAGE sql
    AS $$ SELECT sum(amount) FROM orders WHERE customer_id = c; $$;
CREATE VIEW open_orders AS SELECT * FROM orders WHERE status = 'open';
-- Queryable only while some customer has a region (division by zero otherwise).
CREATE VIEW region_ratio AS
SELECT id FROM customers WHERE 1 / (SELECT count(*) FROM customers WHERE region IS NOT NULL) > 0;
"#;

pub const SHOP_CHECKS: &str = r#"
[[check]]
name = "order totals"
table = "orders"
metrics = ["count(*)", "sum(amount)", "min(amount)", "max(amount)", "avg(amount)", "count(amount)", "count(distinct customer_id)"]

[[check]]
name = "revenue per status"
table = "orders"
group_by = ["status"]
metrics = ["count(*)", "sum(amount)"]

[[check]]
name = "open orders via the view"
table = "open_orders"
where = "amount > 10"
metrics = ["count(*)"]

[[check]]
name = "orders without amount"
null_count = "orders.amount"

[[check]]
name = "orders without a customer"
orphans = { child = "orders.customer_id", parent = "customers.id" }

[[check]]
name = "revenue per region"
sql = "SELECT c.region, count(*) AS orders, sum(o.amount) AS revenue FROM orders o JOIN customers c ON c.id = o.customer_id GROUP BY c.region"
key = ["region"]

[[check]]
name = "orders table"
schema = { table = "orders" }

[[check]]
name = "open_orders view"
schema = { view = "open_orders" }

[[check]]
name = "amount column"
schema = { column = "orders.amount", type = "numeric(12,2)", nullable = true }

[[check]]
name = "amount check constraint"
schema = { constraint = "orders.orders_amount_positive", validated = true }

[[check]]
name = "status index"
schema = { index = "orders_status_idx", valid = true }

[[check]]
name = "orders RLS"
schema = { rls = "orders", enabled = true }

[[check]]
name = "orders policy"
schema = { policy = "orders.orders_visible" }

[[check]]
name = "order_total function"
schema = { function = "order_total" }

[[check]]
name = "views queryable"
schema = { views_queryable = ["open_orders", "region_ratio"] }
"#;

fn value<'a>(
    report: &'a serde_json::Value,
    check_name: &str,
    metric: &str,
) -> &'a serde_json::Value {
    check(report, check_name)["values"]
        .as_array()
        .and_then(|a| a.iter().find(|v| v["metric"] == metric))
        .map(|v| &v["after"])
        .unwrap_or_else(|| panic!("no value {metric} in {check_name}"))
}

#[test]
fn every_check_kind_captures_exact_values_and_passes_when_nothing_changed() {
    let db = rt().block_on(async {
        let db = TestDb::new("kinds_unchanged").await;
        db.exec(SHOP).await;
        db
    });
    let (run, report) = snapshot_then(&db, SHOP_CHECKS, || {});
    assert_eq!(run.code, 0, "{run}");
    for c in report["checks"].as_array().unwrap() {
        assert_eq!(c["status"], "PASS", "{c:#}");
    }
    assert_eq!(value(&report, "order totals", "count(*)"), 100);
    assert_eq!(value(&report, "order totals", "sum(amount)"), "5000.00");
    assert_eq!(value(&report, "order totals", "count(amount)"), 80);
    assert_eq!(value(&report, "order totals", "min(amount)"), "1.25");
    assert_eq!(value(&report, "orders without amount", "null_count"), 20);
    assert_eq!(value(&report, "orders without a customer", "orphans"), 2);
    assert_eq!(
        check(&report, "revenue per region")["groups"]["after_groups"],
        2
    );
    assert_eq!(report["verdict"]["passed"], 16);
}

#[test]
fn data_changes_fail_the_checks_that_see_them_and_only_those() {
    let db = rt().block_on(async {
        let db = TestDb::new("kinds_data").await;
        db.exec(SHOP).await;
        db
    });
    let (run, report) = snapshot_then(&db, SHOP_CHECKS, || {
        rt().block_on(db.exec(
            "UPDATE orders SET amount = amount + 0.01 WHERE id = 1;
             UPDATE orders SET customer_id = 999 WHERE id = 50;",
        ))
    });
    assert_eq!(run.code, 1, "{run}");
    assert_eq!(status(&report, "order totals"), "FAIL");
    assert_eq!(status(&report, "revenue per status"), "FAIL");
    assert_eq!(status(&report, "orders without a customer"), "FAIL");
    assert_eq!(value(&report, "orders without a customer", "orphans"), 3);
    assert_eq!(status(&report, "revenue per region"), "FAIL");
    assert_eq!(status(&report, "orders without amount"), "PASS");
    assert_eq!(status(&report, "status index"), "PASS");
    let totals = &check(&report, "order totals")["values"];
    let sum = totals
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["metric"] == "sum(amount)")
        .unwrap();
    assert_eq!(sum["difference"], "0.01");
    assert_eq!(sum["ok"], false);
    assert!(
        run.stdout.contains("\"after_sql\""),
        "the JSON report carries the SQL"
    );
}

#[test]
fn schema_facts_catch_dropped_index_disabled_rls_lost_policy_and_not_valid_constraint() {
    let db = rt().block_on(async {
        let db = TestDb::new("kinds_schema").await;
        db.exec(SHOP).await;
        db
    });
    let (run, report) = snapshot_then(&db, SHOP_CHECKS, || {
        rt().block_on(db.exec(
            "DROP INDEX orders_status_idx;
             ALTER TABLE orders DISABLE ROW LEVEL SECURITY;
             DROP POLICY orders_visible ON orders;
             ALTER TABLE orders DROP CONSTRAINT orders_amount_positive;
             ALTER TABLE orders ADD CONSTRAINT orders_amount_positive CHECK (amount > 0) NOT VALID;
             DROP FUNCTION order_total(int);
             UPDATE customers SET region = NULL;",
        ))
    });
    assert_eq!(run.code, 1, "{run}");
    for name in [
        "status index",
        "orders RLS",
        "orders policy",
        "amount check constraint",
        "order_total function",
        "views queryable",
    ] {
        assert_eq!(status(&report, name), "FAIL", "{name}: {report:#}");
    }
    assert_eq!(status(&report, "order totals"), "PASS");
    assert_eq!(status(&report, "amount column"), "PASS");
    assert_eq!(status(&report, "open_orders view"), "PASS");
    let views = check(&report, "views queryable")["values"]
        .as_array()
        .unwrap()
        .clone();
    let ratio = views
        .iter()
        .find(|v| v["metric"] == "region_ratio queryable")
        .unwrap();
    assert_eq!(ratio["ok"], false);
    assert!(
        ratio["note"].as_str().unwrap().contains("division by zero"),
        "{ratio:#}"
    );
    let idx = &check(&report, "status index")["summary"];
    assert!(idx.as_str().unwrap().contains("exists"), "{idx}");
}

/// 20,000 accounts and 200,000 entries, no foreign key: 40 entries point at missing
/// accounts and 1,000 have no account at all (NULL is not an orphan).
const LEDGER: &str = r#"
CREATE TABLE accounts (id int PRIMARY KEY, name text NOT NULL)
    WITH (autovacuum_enabled = off);
CREATE TABLE entries (id bigint PRIMARY KEY, account_id int, amount numeric(12,2))
    WITH (autovacuum_enabled = off);
INSERT INTO accounts SELECT g, 'account ' || g FROM generate_series(1, 20000) g;
INSERT INTO entries
SELECT g,
       CASE WHEN g % 200 = 0 THEN NULL
            WHEN g % 5000 = 1 THEN 20000 + g % 97
            ELSE 1 + (g * 7919) % 20000 END,
       g % 1000 * 0.01
FROM generate_series(1, 200000) g;
CREATE INDEX entries_account_idx ON entries (account_id);
"#;

const LEDGER_CHECKS: &str = r#"
[[check]]
name = "entries without an account"
orphans = { child = "entries.account_id", parent = "accounts.id" }
"#;

/// VACUUM (ANALYZE) `table` until pg_class counts 99% of its pages all-visible (a page with a
/// few dead rows left for the next index vacuum is not). A VACUUM that
/// runs while the inserting transaction is the newest one, or while another test's transaction
/// is open, may leave them unmarked: take an xid and vacuum again.
async fn vacuum(db: &TestDb, table: &str) {
    let c = db.client().await;
    for _ in 0..20 {
        c.batch_execute("SELECT txid_current()").await.expect("xid");
        c.batch_execute(&format!("VACUUM (ANALYZE) {table}"))
            .await
            .expect("vacuum");
        let row = c
            .query_one(
                "SELECT relallvisible >= 0.99 * relpages FROM pg_class WHERE relname = $1",
                &[&table],
            )
            .await
            .expect("pg_class");
        if row.get::<_, bool>(0) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{table}: VACUUM did not mark its pages all-visible");
}

/// The orphan count written another way (LEFT JOIN), to check migval's against.
async fn ledger_orphans(db: &TestDb) -> i64 {
    db.client()
        .await
        .query_one(
            "SELECT count(*) FROM entries e LEFT JOIN accounts a ON a.id = e.account_id \
             WHERE e.account_id IS NOT NULL AND a.id IS NULL",
            &[],
        )
        .await
        .expect("count orphans")
        .get(0)
}

#[test]
fn orphans_on_indexed_vacuumed_tables_are_counted_by_an_ordered_merge_with_the_same_result() {
    let db = rt().block_on(async {
        let db = TestDb::new("kinds_orphan_merge").await;
        db.exec(LEDGER).await;
        vacuum(&db, "accounts").await;
        vacuum(&db, "entries").await;
        db
    });
    let before = rt().block_on(ledger_orphans(&db));
    assert_eq!(before, 40);
    let (run, report) = snapshot_then(&db, LEDGER_CHECKS, || {
        rt().block_on(async {
            db.exec("UPDATE entries SET account_id = 30001 WHERE id IN (7, 8, 9)")
                .await;
            vacuum(&db, "entries").await;
        })
    });
    let after = rt().block_on(ledger_orphans(&db));
    assert_eq!(after, 43);
    assert_eq!(run.code, 1, "three new orphans fail the check{run}");
    let c = check(&report, "entries without an account");
    assert_eq!(
        value(&report, "entries without an account", "orphans"),
        after
    );
    let base = c["values"][0]["baseline"].clone();
    assert_eq!(base, before, "{c:#}");
    // Both captures ran under the setting, and the audit trail says so.
    for side in ["baseline_sql", "after_sql"] {
        assert_eq!(c[side][0], "SET LOCAL enable_hashjoin = off;", "{c:#}");
        assert!(c[side][1].as_str().unwrap().contains("NOT EXISTS"), "{c:#}");
    }
}

#[test]
fn orphans_keep_the_default_plan_without_a_child_index_or_before_a_vacuum() {
    let db = rt().block_on(async {
        let db = TestDb::new("kinds_orphan_hash").await;
        db.exec(LEDGER).await;
        // Never vacuumed: an index-only scan would visit the heap for every row.
        db
    });
    let expected = rt().block_on(ledger_orphans(&db));
    let spec = format!(
        "{LEDGER_CHECKS}\n[schema]\nexpect = [\"drop index public.entries_account_idx\"]\n"
    );
    let (run, report) = snapshot_then(&db, &spec, || {
        rt().block_on(async {
            // Vacuumed now, but the child has no index on the key any more.
            db.exec("DROP INDEX entries_account_idx").await;
            vacuum(&db, "accounts").await;
            vacuum(&db, "entries").await;
        })
    });
    assert_eq!(run.code, 0, "{run}");
    let c = check(&report, "entries without an account");
    assert_eq!(
        value(&report, "entries without an account", "orphans"),
        expected
    );
    for side in ["baseline_sql", "after_sql"] {
        let sql = c[side].as_array().unwrap();
        assert_eq!(sql.len(), 1, "{c:#}");
        assert!(
            sql[0].as_str().unwrap().starts_with("SELECT count(*)"),
            "{c:#}"
        );
    }
}
