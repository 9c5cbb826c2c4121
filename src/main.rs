//! migval's entry point: parse the command line, run it, map the outcome to the exit-code
//! contract (0 pass, 1 a check failed, 2 migval could not do its job).

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
            eprintln!(
                "error: {}",
                migval::report::escape::block(&format!("{e:#}"))
            );
            ExitCode::from(2)
        }
    }
}
