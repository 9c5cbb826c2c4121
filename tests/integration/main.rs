//! migval's integration tests: one binary, a throwaway PostgreSQL cluster (or
//! MIGVAL_TEST_DATABASE_URL), a fresh database per test.

// Tests: a panic is a failed test, and printing goes to the test log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

/// `migval backfill`: dry-run, exactly-once commit, kill -9 / Ctrl-C / lost connection and resume.
mod backfill;
/// `--backup FILE`: pg_dump before the first write, restorable, refused on failure, no password shown.
mod backup;
/// Capture under hostile input and interruptions: thousands of metrics, comments in
/// fragments, Ctrl-C / SIGTERM of snapshot and verify cancelling the server-side work.
mod capture_faults;
/// Every query of the catalogue in queries/ prepares against a real server, its header naming its columns.
mod catalogue;
/// `--changes-out`: every differing value of every check, exact, as CSV (and Parquet).
mod changes_out;
/// Each check kind captures the right numbers and catches what it should.
mod check_kinds;
/// The command line: exit codes, spec errors, corrupted baselines, passwords, formats, diff.
mod cli;
/// One snapshot shared by parallel connections; time zones normalised to UTC.
mod consistency;
/// The seed-000 story end to end, and `migval demo`.
mod fee_rename;
/// Golden files of a real run (the broken fee_rename migration) in JSON, text, Markdown, JUnit.
mod golden;
/// Hostile data (terminal escapes, bidi overrides) shown escaped, kept exact in JSON.
mod hostile;
/// `--format html` rendered in headless Chromium.
mod html;
/// `migval init`: generated specs tried on every fixture.
mod init;
/// Baseline integrity (recorded hash, HMAC signature) and input files read with a bound.
mod integrity;
/// The intent-native spec: after-only checks, before/after forms, facts by what they are.
mod intents;
/// `migval migrate`: rehearsal, --commit, --rollback, lock timeouts, refused scripts, external commands.
mod migrate;
/// Hostile names, key shapes, read-only databases and hot standbys through the binary.
mod names_and_keys;
/// Network faults through a TCP proxy (freeze, reset), multi-host URLs, channel binding, standbys.
mod network;
/// Runbook 001 end to end: two files in one transaction, --backup, rollback verified exactly.
mod org_customers;
/// PgBouncer in transaction pooling mode: snapshot and verify through it.
mod pgbouncer;
/// Progress on stderr: plain lines, indicatif on a pty, --quiet.
mod progress;
/// [rename] applied to the post-state; missing objects reported before anything runs.
mod renames;
/// The text report fitted to 80 and 120 columns; check names never cut.
mod report_width;
/// Row proof: a fingerprint per row, compared key by key.
mod rows;
/// Row proof streamed: merged as the post-state arrives, key ranges, no temporary file left.
mod rows_stream;
/// Tolerance (per group, total, both), every intent, group keys, exact numerics.
mod rules;
/// The catalog-wide schema diff: dropped indexes, disabled RLS, lost grants, hazards.
mod schema_diff;
/// Passwords with `@:/%?` through every path: never printed, never stored.
mod secrets;
/// Seeds 002/003/004 (subscriber_schema, account_status, status_levels) rehearsed with migrate.
mod seeds;
/// The sizes check kind: heap, indexes, TOAST, total before and after, in pg_size_pretty units.
mod sizes;
/// Large grouped and keyed custom results streamed through sections: exact changes, same report as in memory.
mod streamed_groups;
/// TLS against a real server with ssl=on: sslmode require / verify-ca / verify-full.
mod tls;
/// `verify --every/--until`: the watch after go-live, a writer, Ctrl-C, a lost connection.
mod watch;
