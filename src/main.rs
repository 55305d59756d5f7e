//! The `orderflow` binary: parses the command line, sets up logging, runs one command, and
//! on failure prints one readable line and exits non-zero.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = orderflow::cli::Cli::parse();
    orderflow::telemetry::init(cli.common.log_format, cli.command.default_log_filter());
    match orderflow::cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
