//! The `shipshape` binary: parse the CLI, load config, set up logging, run, and
//! map the result to an exit code. Errors are one line on stderr.

use std::process::ExitCode;

use clap::Parser;
use shipshape::cli::{Cli, LogFormat, LogLevel};
use shipshape::error::Error;
use shipshape::telemetry::LogTarget;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = cli.log_level.unwrap_or(LogLevel::Info);
    let format = cli.log_format.unwrap_or(LogFormat::Text);
    // Only the daemon logs to the journal; one-shot commands keep to their stderr.
    let target = match cli.command {
        shipshape::cli::Command::Daemon(_) => LogTarget::JournalWhenAttached,
        _ => LogTarget::Stderr,
    };
    if let Err(e) = shipshape::telemetry::init(level, format, target) {
        return fail(&Error::Telemetry(e.to_string()));
    }
    let (raw, source) = match shipshape::app::load_config(&cli) {
        Ok(loaded) => loaded,
        Err(e) => return fail(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&Error::Output(e)),
    };
    match runtime.block_on(shipshape::app::run(cli, raw, source)) {
        Ok(status) => ExitCode::from(status.exit_code()),
        Err(e) => fail(&e),
    }
}

fn fail(e: &Error) -> ExitCode {
    eprintln!("shipshape: error: {e}");
    ExitCode::from(e.exit_code())
}
