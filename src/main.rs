//! migval's entry point: parse the command line, run it, map the outcome to the exit-code
//! contract (0 pass, 1 a check failed, 2 migval could not do its job).

// The entry point reports to the user on stdout/stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = migval::cli::Cli::parse();
    migval::trace!("start");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(migval::cli::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // Error messages carry server text and names from the data: shown escaped.
            let message = format!("{e:#}");
            eprintln!("error: {}", migval::report::escape::block(&message));
            if let Some(hint) = pooler_hint(&message) {
                eprintln!("{hint}");
            }
            ExitCode::from(2)
        }
    }
}

/// The errors that betray a pooler in transaction mode in front of the server: a prepared
/// statement of this process found on, or missing from, the server connection a statement was
/// handed to (PgBouncer before 1.21, or without `max_prepared_statements`).
fn pooler_hint(message: &str) -> Option<&'static str> {
    let prepared = message.contains("prepared statement \"s")
        && (message.contains("SQLSTATE 42P05") || message.contains("SQLSTATE 26000"));
    prepared.then_some(
        "  the connection goes through a pooler in transaction mode (e.g. PgBouncer \
         pool_mode = transaction), which hands each statement to any server connection: \
         migval's prepared statements and session settings do not survive that, and results read \
         through it cannot be trusted. Connect migval to PostgreSQL directly, or through a \
         session-mode pool (pool_mode = session).",
    )
}
