-- Reference for benches/run.sh: the checks of fixtures/fee_rename/checks.toml written by hand,
-- one query per check, the way runbook "Migration 001" does it (Phase 1:
-- `psql $DATABASE_URL -f 001_pre_migration_baseline.sql > baseline_output_<date>.txt`,
-- Phase 3: the same queries again after the migration, compared with the saved output).
--
-- Run as: psql -X -q -v ON_ERROR_STOP=1 -d URL -f benches/psql_checks.sql > output.txt
-- (psql's default aligned format, output to a file, as in the runbook).
-- Pre-migration names; run.sh derives the post-migration file with
-- `sed s/fixed_cost/fixed_fee_facilitated/g` (the only name the migration changes).
-- Grouped and keyed results are ORDERed so that two outputs can be compared with diff;
-- migval sorts its captures too. Output column names avoid the renamed column, so the
-- before and after outputs are textually identical when the migration preserves the data.

-- ---------------------------------------------------------------------------
-- Row counts
-- ---------------------------------------------------------------------------
\echo '== client_products: total row count'
SELECT count(*) AS total_products FROM client_products;

\echo '== client_products: row count per status'
SELECT status, count(*) AS products
FROM client_products
GROUP BY status
ORDER BY status;

-- ---------------------------------------------------------------------------
-- Revenue totals (runbook Appendix A "Quick Revenue Check")
-- ---------------------------------------------------------------------------
\echo '== active products: count, total fixed fees, total percentage fees'
SELECT count(*)             AS active_products,
       sum(fixed_cost)      AS total_fixed_fees,
       sum(percentage_fee)  AS total_percentage_fees,
       sum(portfolio_value) AS total_portfolio_value
FROM client_products
WHERE status = 'active';

\echo '== fixed fees per status: non-NULL count, sum, min, max'
SELECT status,
       count(fixed_cost) AS with_fixed_fee,
       sum(fixed_cost)   AS fixed_fees,
       min(fixed_cost)   AS min_fixed_fee,
       max(fixed_cost)   AS max_fixed_fee
FROM client_products
GROUP BY status
ORDER BY status;

\echo '== credit notes (negative fixed fees) preserved'
SELECT count(*) AS credit_notes, sum(fixed_cost) AS credit_note_total
FROM client_products
WHERE fixed_cost < 0;

\echo '== zero fixed fees preserved'
SELECT count(*) AS zero_fee_products
FROM client_products
WHERE fixed_cost = 0;

-- ---------------------------------------------------------------------------
-- NULL handling (runbook "Check for NULL Values")
-- ---------------------------------------------------------------------------
\echo '== products with no fixed fee (NULL), all statuses'
SELECT count(*) AS null_fixed_fee
FROM client_products
WHERE fixed_cost IS NULL;

\echo '== active products with no fixed fee (NULL)'
SELECT count(*) AS active_null_fixed_fee
FROM client_products
WHERE fixed_cost IS NULL
  AND status = 'active';

-- ---------------------------------------------------------------------------
-- Per-product revenue (runbook post_migration_revenue_comparison): one line per
-- active product, saved so the post-migration run can be compared line by line.
-- ---------------------------------------------------------------------------
\echo '== per-product revenue (active products)'
SELECT id AS product_id,
       coalesce(fixed_cost, 0) AS fixed_revenue,
       round(coalesce(percentage_fee, 0) * coalesce(portfolio_value, 0) / 100, 2) AS percentage_revenue,
       coalesce(fixed_cost, 0)
         + round(coalesce(percentage_fee, 0) * coalesce(portfolio_value, 0) / 100, 2) AS total_revenue,
       fixed_cost IS NULL AS fixed_fee_missing
FROM client_products
WHERE status = 'active'
ORDER BY id;

-- ---------------------------------------------------------------------------
-- Company totals from the base tables (runbook post_migration_company_comparison)
-- ---------------------------------------------------------------------------
\echo '== company revenue recomputed from base tables (not via views)'
SELECT c.company_id,
       count(*) AS active_products,
       sum(coalesce(cp.fixed_cost, 0)) AS fixed_revenue,
       round(sum(coalesce(cp.percentage_fee, 0) * coalesce(cp.portfolio_value, 0) / 100), 2) AS percentage_revenue
FROM client_products cp
JOIN clients c ON c.id = cp.client_id
WHERE cp.status = 'active'
GROUP BY c.company_id
ORDER BY c.company_id;

-- ---------------------------------------------------------------------------
-- The three recreated views
-- ---------------------------------------------------------------------------
\echo '== company revenue per company (company_revenue_analytics view)'
SELECT company_id,
       count(*)                          AS view_rows,
       sum(active_product_count)         AS active_products,
       sum(total_fixed_revenue)          AS fixed_revenue,
       sum(total_percentage_revenue)     AS percentage_revenue,
       sum(total_revenue)                AS total_revenue
FROM company_revenue_analytics
GROUP BY company_id
ORDER BY company_id;

\echo '== product list totals (products_list_view)'
SELECT count(*)                   AS products,
       count(fixed_cost)          AS with_fixed_fee,
       sum(fixed_cost)            AS fixed_fees,
       sum(percentage_fee)        AS percentage_fees,
       count(DISTINCT client_id)  AS clients,
       count(DISTINCT company_id) AS companies
FROM products_list_view;

\echo '== client fixed-fee summary per company (revenue_analytics_optimized view)'
SELECT company_id,
       count(*)                        AS clients,
       sum(product_count)              AS products,
       sum(total_fixed_revenue)        AS fixed_revenue,
       sum(products_missing_fixed_fee) AS products_missing_fixed_fee
FROM revenue_analytics_optimized
GROUP BY company_id
ORDER BY company_id;

\echo '== all three dependent views still queryable'
SELECT 1 AS queryable FROM company_revenue_analytics LIMIT 1;
SELECT 1 AS queryable FROM products_list_view LIMIT 1;
SELECT 1 AS queryable FROM revenue_analytics_optimized LIMIT 1;

-- ---------------------------------------------------------------------------
-- Referential integrity
-- ---------------------------------------------------------------------------
\echo '== no orphan products (client_products.client_id without a client)'
SELECT count(*) AS orphan_products
FROM client_products cp
WHERE cp.client_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM clients c WHERE c.id = cp.client_id);

\echo '== no orphan clients (clients.company_id without a company)'
SELECT count(*) AS orphan_clients
FROM clients c
WHERE c.company_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM companies co WHERE co.id = c.company_id);

-- ---------------------------------------------------------------------------
-- Schema facts
-- ---------------------------------------------------------------------------
\echo '== fee column type and nullability'
SELECT format_type(a.atttypid, a.atttypmod) AS type, NOT a.attnotnull AS nullable
FROM pg_attribute a
WHERE a.attrelid = 'public.client_products'::regclass
  AND a.attname = 'fixed_cost'
  AND NOT a.attisdropped;

\echo '== client_products primary key present and validated'
SELECT conname, convalidated FROM pg_constraint
WHERE conrelid = 'public.client_products'::regclass AND conname = 'client_products_pkey';

\echo '== client_products -> clients foreign key present and validated'
SELECT conname, convalidated FROM pg_constraint
WHERE conrelid = 'public.client_products'::regclass AND conname = 'client_products_client_id_fkey';

\echo '== client_products status check constraint present and validated'
SELECT conname, convalidated FROM pg_constraint
WHERE conrelid = 'public.client_products'::regclass AND conname = 'client_products_status_check';

\echo '== index on client_products(client_id) valid'
SELECT indexrelid::regclass AS index, indisvalid AND indisready AS valid FROM pg_index
WHERE indexrelid = 'public.idx_client_products_client_id'::regclass;

\echo '== index on client_products(status) valid'
SELECT indexrelid::regclass AS index, indisvalid AND indisready AS valid FROM pg_index
WHERE indexrelid = 'public.idx_client_products_status'::regclass;

\echo '== views exist'
SELECT relname AS view FROM pg_class
WHERE relnamespace = 'public'::regnamespace AND relkind IN ('v', 'm') AND relname = 'company_revenue_analytics';
SELECT relname AS view FROM pg_class
WHERE relnamespace = 'public'::regnamespace AND relkind IN ('v', 'm') AND relname = 'products_list_view';
SELECT relname AS view FROM pg_class
WHERE relnamespace = 'public'::regnamespace AND relkind IN ('v', 'm') AND relname = 'revenue_analytics_optimized';
