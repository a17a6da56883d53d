//! The `shipshape` binary: parse the CLI, load config, set up logging, run, and
//! map the result to an exit code. Errors are one line on stderr.

use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::Parser;
use shipshape::cli::Cli;
use shipshape::error::Error;
use shipshape::exit::EXIT_USAGE;
use shipshape::telemetry::{LogFormat, LogLevel};
use shipshape::telemetry::{LogSink, LogTarget};

/// The name under which the binary is a Docker credential helper (a link to it).
const CREDENTIAL_HELPER: &str = "docker-credential-shipshape";

fn main() -> ExitCode {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if std::path::Path::new(&argv0).file_name() == Some(CREDENTIAL_HELPER.as_ref()) {
        return credential_helper();
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage(&e),
    };
    let level = cli.log_level.unwrap_or(LogLevel::Info);
    let format = cli.log_format.unwrap_or(LogFormat::Text);
    let daemon = matches!(cli.command, shipshape::cli::Command::Daemon(_));
    // Every command: under systemd (bootstrap, gc units) `JOURNAL_STREAM` matches stderr and
    // the journal gets real priorities and fields; from a shell it never matches.
    let target = LogTarget::JournalWhenAttached;
    match shipshape::telemetry::init(level, format, target) {
        Ok(sink) => {
            let _ = SINK.set(sink);
        }
        Err(e) => return fail(&Error::Telemetry(e.to_string())),
    }
    let loaded = match shipshape::config::load(cli.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(e) => return fail(&e.into()),
    };
    // The daemon runs on one thread: its work is waiting (events, pings, scrapes, a job's
    // API calls), and every worker thread costs a stack and a malloc arena of its own
    // (README, Benchmarks: idle RSS). One-shot commands keep a worker per core.
    let mut builder = if daemon {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&Error::Output(e)),
    };
    // Signal handlers only for the daemon: a handler replaces the default action, and a
    // one-shot command must keep dying on SIGTERM as it always did.
    let signals = if daemon {
        match runtime.block_on(async { shipshape::shutdown::install() }) {
            Ok(signals) => Some(signals),
            Err(e) => return fail(&Error::Output(e)),
        }
    } else {
        None
    };
    match runtime.block_on(shipshape::app::run(cli, loaded, signals)) {
        Ok(status) => ExitCode::from(status.exit_code()),
        Err(e) => fail(&e),
    }
}

/// Where logs went, once telemetry is up.
static SINK: std::sync::OnceLock<LogSink> = std::sync::OnceLock::new();

fn fail(e: &Error) -> ExitCode {
    // When stderr is the journal, `<3>` makes journald file the line at PRIORITY=3 (its
    // SyslogLevelPrefix=, on by default) instead of the stream's 6; the prefix is stripped.
    let prefix = match SINK.get() {
        Some(LogSink::Journald) => "<3>",
        _ => "",
    };
    eprintln!("{prefix}shipshape: error: {e}");
    ExitCode::from(e.exit_code())
}

/// Help and version go to stdout as clap prints them; every other parse error is one
/// line, exit 2. A value that does not parse is named by its flag with the parser's
/// reason — never echoed, since it may be a secret typed in the wrong place.
fn usage(e: &clap::Error) -> ExitCode {
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => Some(arg.clone()),
        _ => None,
    };
    let reason = std::error::Error::source(e).map(ToString::to_string);
    let line = match (e.kind(), arg, reason) {
        (ErrorKind::ValueValidation, Some(arg), Some(reason)) => {
            format!("invalid {arg}: {reason}")
        }
        _ => e
            .to_string()
            .lines()
            .next()
            .unwrap_or("invalid command line")
            .trim_start_matches("error: ")
            .to_owned(),
    };
    eprintln!("shipshape: error: {line}; see --help");
    ExitCode::from(EXIT_USAGE)
}

/// `docker-credential-shipshape get|list|store|erase`: the input on stdin, the answer
/// (or the error text, as the protocol wants) on stdout; warnings on stderr.
fn credential_helper() -> ExitCode {
    use std::io::{Read, Write};
    let args: Vec<String> = std::env::args().skip(1).collect();
    let action = args.first().map(String::as_str).unwrap_or_default();
    if shipshape::telemetry::init(LogLevel::Warn, LogFormat::Text, LogTarget::Stderr).is_err() {
        return ExitCode::from(shipshape::exit::EXIT_RUNTIME);
    }
    let mut input = String::new();
    if matches!(action, "get" | "store" | "erase") {
        let _ = std::io::stdin().read_to_string(&mut input);
    }
    let config = std::env::var_os("SHIPSHAPE_CONFIG").map(std::path::PathBuf::from);
    let loaded = match shipshape::config::load(config.as_deref()) {
        Ok(loaded) => loaded,
        Err(e) => {
            println!("{e}");
            return ExitCode::from(Error::from(e).exit_code());
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&Error::Output(e)),
    };
    match runtime.block_on(shipshape::app::credential_helper(action, &input, &loaded)) {
        Ok(answer) => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", answer.stdout);
            let _ = out.flush();
            ExitCode::from(answer.code)
        }
        Err(e) => {
            println!("{e}");
            ExitCode::from(e.exit_code())
        }
    }
}
