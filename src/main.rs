//! The `orderflow` binary: parses the command line, sets up logging, runs one command, and
//! on failure prints one readable line and exits non-zero.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = orderflow::cli::Cli::parse();
    let telemetry = match orderflow::telemetry::init(
        cli.common.log_format,
        cli.command.default_log_filter(),
        cli.common.otlp().as_ref(),
    ) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            return ExitCode::FAILURE;
        }
    };
    let result = orderflow::cli::run(cli).await;
    // The roles have stopped: what they traced goes out before the process ends.
    telemetry.shutdown().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, `outer: inner: root`, leaving out a cause whose text
/// its parent already printed (many library errors repeat their source in their message).
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
