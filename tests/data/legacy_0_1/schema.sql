-- A small deterministic world for the compatibility test: every value is computed from
-- generate_series, so the same script gives the same numbers on any server.
CREATE TABLE companies (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE products (
    id int PRIMARY KEY,
    company_id int REFERENCES companies(id),
    price numeric(12,2),
    status text NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE INDEX products_company_idx ON products (company_id);
CREATE VIEW product_totals AS
    SELECT company_id, sum(price) AS revenue, count(*) AS n FROM products GROUP BY company_id;
ALTER TABLE products ENABLE ROW LEVEL SECURITY;
CREATE POLICY products_all ON products USING (true);
CREATE FUNCTION price_with_tax(p numeric) RETURNS numeric LANGUAGE sql IMMUTABLE AS 'SELECT p * 1.2';
INSERT INTO companies SELECT g, 'company ' || g FROM generate_series(1, 20) g;
INSERT INTO products
SELECT g, 1 + g % 20,
       CASE WHEN g % 17 = 0 THEN NULL ELSE round((g % 97) * 1.25 + 0.5, 2) END,
       CASE WHEN g % 3 = 0 THEN 'archived' ELSE 'active' END,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour'
FROM generate_series(1, 2000) g;
