//! Logging set-up: text or JSON on stderr (journald when the daemon is attached to
//! it, see `daemon`). Dependencies log at `warn` at most unless `RUST_LOG` says
//! otherwise, so that `--log-level trace` shows our reasoning, never SDK wire dumps.

use tracing_subscriber::EnvFilter;

use crate::cli::{LogFormat, LogLevel};

/// Directive string for our crate at `level`, everything else at `warn`.
pub fn filter_directives(level: LogLevel) -> String {
    let lvl = match level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
    };
    format!("warn,shipshape={lvl}")
}

/// `RUST_LOG` when set, else [`filter_directives`] for `level`.
pub fn env_filter(level: LogLevel) -> Result<EnvFilter, String> {
    match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(v).map_err(|e| e.to_string()),
        _ => Ok(EnvFilter::new(filter_directives(level))),
    }
}

/// Install the global subscriber writing to stderr.
pub fn init_stderr(level: LogLevel, format: LogFormat) -> Result<(), String> {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter(level)?)
        .with_writer(std::io::stderr)
        .with_target(false);
    let result = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| e.to_string())
}
