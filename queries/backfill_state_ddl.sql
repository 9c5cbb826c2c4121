-- Purpose: the backfill progress table and the lease table (created by `migval backfill
--          --commit` only). backfill_runs: one row per run; each batch updates its row in the
--          batch's own transaction, so the row always says exactly which batches are committed:
--          that is what makes a resume exact. backfill_leases: one row per backfill with a run
--          in progress (the run-level single-run guard; see backfill_lease_take.sql).
-- Binds: none. Several statements (run with the simple protocol, not prepared).
-- Identifier slots: none.
-- Returns: nothing.
CREATE SCHEMA IF NOT EXISTS migval;
CREATE TABLE IF NOT EXISTS migval.backfill_runs (
    run_id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    backfill          text NOT NULL,
    table_name        text NOT NULL,
    fingerprint       text NOT NULL,
    status            text NOT NULL
        CHECK (status IN ('running', 'interrupted', 'failed', 'done', 'abandoned')),
    last_key          text[],
    batches           bigint NOT NULL DEFAULT 0,
    rows_checked      bigint NOT NULL DEFAULT 0,
    rows_updated      bigint NOT NULL DEFAULT 0,
    rows_already_done bigint NOT NULL DEFAULT 0,
    rows_no_match     bigint NOT NULL DEFAULT 0,
    rows_ambiguous    bigint NOT NULL DEFAULT 0,
    rows_errors       bigint NOT NULL DEFAULT 0,
    client            text NOT NULL DEFAULT '',
    message           text,
    started_at        timestamptz NOT NULL DEFAULT now(),
    heartbeat_at      timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz
);
CREATE INDEX IF NOT EXISTS backfill_runs_backfill_idx ON migval.backfill_runs (backfill, run_id);
CREATE TABLE IF NOT EXISTS migval.backfill_leases (
    backfill   text PRIMARY KEY,
    token      text NOT NULL,
    client     text NOT NULL,
    taken_at   timestamptz NOT NULL,
    renewed_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
